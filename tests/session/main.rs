//! The admin session against the simulator: a password login before the registration and a
//! logout after it, a refused password (exit 4, one login, nothing sent), a session that ends
//! while the agent runs (it logs in again and registers), and no login secret anywhere.

#[path = "../common/mod.rs"]
mod common;
mod token_login;
use common::*;

fn logins(sim: &Sim) -> Vec<serde_json::Value> {
    sim.all_records()
        .into_iter()
        .filter(|r| r["login"] == "password")
        .collect()
}

fn logouts(sim: &Sim) -> Vec<serde_json::Value> {
    sim.all_records()
        .into_iter()
        .filter(|r| r["logout"] == true)
        .collect()
}

/// The headless agent with a password login through the App (no static secrets); the admin's
/// password in the environment when `password` is given, else asked in the dialog.
fn start_password_agent(env: &TestEnv, sim: &Sim, password: Option<&str>) -> Agent {
    start_agent_with(
        env,
        sim,
        &[
            "--user-from",
            "cn",
            "--login",
            "password",
            "--app-key",
            APP_KEY,
        ],
        |c| {
            c.env_remove("TOKENROLL_AUTH_TOKEN")
                .env_remove("TOKENROLL_SECRET_CODE")
                .env("TOKENROLL_APP_SECRET", APP_SECRET);
            if let Some(p) = password {
                c.env("TOKENROLL_ADMIN_PASSWORD", p);
            }
        },
    )
}

/// `tokenroll enroll --login password` with the App and the admin's password in the
/// environment, and no static secrets at all.
fn enroll_with_login(
    env: &TestEnv,
    sim: &Sim,
    password: &str,
    extra: &[&str],
) -> std::process::Output {
    login_cmd(env, sim, password, extra).output().unwrap()
}

fn login_cmd(env: &TestEnv, sim: &Sim, password: &str, extra: &[&str]) -> std::process::Command {
    let mut c = env.cmd();
    c.args([
        "enroll",
        "--server",
        &sim.origin,
        "--admin",
        ADMIN,
        "--user",
        "alice",
    ])
    .args([
        "--pin-env",
        "TOKENROLL_PIN",
        "--json",
        "--login",
        "password",
    ])
    .args(["--app-key", APP_KEY, "--ca-file"])
    .arg(&sim.ca)
    .args(extra)
    .env("TOKENROLL_APP_SECRET", APP_SECRET)
    .env("TOKENROLL_ADMIN_PASSWORD", password)
    .env("RUST_LOG", "trace");
    c
}

#[test]
fn a_password_login_opens_the_session_and_a_logout_ends_it() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let o = enroll_with_login(&env, &sim, ADMIN_PASSWORD, &[]);
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert_eq!(json(&o)["outcome"], "registered");
    let l = logins(&sim);
    assert_eq!(l.len(), 1, "{l:?}");
    assert_eq!(
        (l[0]["admin"].as_str(), l[0]["answer_code"].as_i64()),
        (Some(ADMIN), Some(0))
    );
    let put = &sim.records()[0];
    assert_eq!(
        (
            put["answer_code"].as_i64(),
            put["cen_token_valid"].as_bool()
        ),
        (Some(0), Some(true))
    );
    assert_eq!(logouts(&sim).len(), 1, "the one-shot command logged out");
    assert_eq!(logouts(&sim)[0]["answer_code"], 0);
    assert!(
        stderr(&o).contains("logged in as helpdesk"),
        "{}",
        stderr(&o)
    );
    // At trace level, no login secret in the output, the journal or the simulator's record.
    let dir = env.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("stdout"), &o.stdout).unwrap();
    std::fs::write(dir.join("stderr"), &o.stderr).unwrap();
    let mut files = files_under(&dir);
    files.extend(files_under(&env.path("home/.local/state")));
    files.push(sim.record.clone());
    assert_no_secret_in(&files, &[]);
}

#[test]
fn a_refused_password_is_exit_4_with_one_login_and_nothing_sent() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let o = enroll_with_login(&env, &sim, "not-the-password", &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(
        (j["outcome"].as_str(), j["step"].as_str()),
        (Some("failed"), Some("login"))
    );
    let m = j["message"].as_str().unwrap();
    assert!(
        m.contains("23001") && m.contains("does not try again"),
        "{m}"
    );
    assert!(!m.contains("not-the-password"));
    assert_eq!(logins(&sim).len(), 1, "never retried automatically");
    assert!(sim.records().is_empty(), "no registration was sent");
    // A wrong App secret is its own message.
    let o = login_cmd(&env, &sim, ADMIN_PASSWORD, &[])
        .env("TOKENROLL_APP_SECRET", "SK-wrong")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    assert!(
        json(&o)["message"]
            .as_str()
            .unwrap()
            .contains("App secret does not match"),
        "{}",
        stdout(&o)
    );
}

/// The server ends every session after the first registration: the agent's second enrollment
/// meets 10001, logs in again (the password is in the environment) and registers; at SIGTERM it
/// logs out of the session it holds.
#[test]
fn a_session_that_ends_while_the_agent_runs_is_opened_again() {
    let mut env = TestEnv::new();
    env.provision("alice", true, "p256", "01", "CN=alice", &[]);
    env.provision("bob", true, "p256", "01", "CN=bob", &[]);
    let sim = env.simulator(&["--end-sessions-after", "1"]);
    pins(&env, &[PIN, PIN]);
    let agent = start_password_agent(&env, &sim, Some(ADMIN_PASSWORD));
    wait_for(&agent, "both registrations", || {
        sim.records()
            .iter()
            .filter(|r| r["answer_code"] == 0)
            .count()
            == 2
    });
    let expired: Vec<_> = sim
        .records()
        .into_iter()
        .filter(|r| r["session_expired"] == true)
        .collect();
    assert_eq!(expired.len(), 1, "one registration met the ended session");
    assert_eq!(logins(&sim).len(), 2, "logged in again once");
    assert!(agent.stop().success());
    // The refused session was logged out first (the server had ended it already), then the
    // fresh one at SIGTERM.
    let out = logouts(&sim);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[1]["answer_code"], 0, "logged out at SIGTERM");
}

/// `tokenroll session`: with a password login it logs in, checks, describes and logs out; with
/// static secrets it checks them; with a wrong password it is exit 4. The cenToken in the
/// check's URL appears nowhere.
#[test]
fn the_session_command_checks_and_describes_the_session() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    let run_at = |server: &str, login: &[&str], password: &str| {
        env.cmd()
            .args([
                "session",
                "--server",
                server,
                "--admin",
                ADMIN,
                "--json",
                "--ca-file",
            ])
            .arg(&sim.ca)
            .args(login)
            .env("TOKENROLL_APP_SECRET", APP_SECRET)
            .env("TOKENROLL_ADMIN_PASSWORD", password)
            .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
            .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap()
    };
    let run = |login: &[&str], password: &str| run_at(&sim.origin, login, password);
    let password_login = ["--login", "password", "--app-key", APP_KEY];
    let o = run(&password_login, ADMIN_PASSWORD);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let j = json(&o);
    assert_eq!(j["alive"], true, "{j}");
    assert_eq!(
        (j["role"].as_i64(), j["group"].as_str()),
        (Some(2), Some("g-1"))
    );
    assert_eq!(j["session_timeout_ms"], 1_800_000);
    assert_eq!(logouts(&sim).len(), 1);
    let cen = cen_token();
    assert!(!stderr(&o).contains(&cen) && !stdout(&o).contains(&cen));
    // Static secrets: checked as they are; role and group unknown.
    let o = run(&[], "");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(
        (j["alive"].as_bool(), j["role"].is_null()),
        (Some(true), true)
    );
    assert!(
        !stderr(&o).contains(&cen),
        "the static cenToken stays out of the log"
    );
    let checks = sim
        .all_records()
        .into_iter()
        .filter(|r| r["session_check"] == true)
        .count();
    assert_eq!(checks, 2);
    // A refused password: exit 4.
    let o = run(&password_login, "wrong");
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    assert_no_secret_in(std::slice::from_ref(&sim.record), &[]);
    // A server that drops every connection: the HTTP client's error names the check's URL,
    // which carries the cenToken; the message shows it without.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    std::thread::spawn(move || dead.incoming().for_each(drop));
    let o = run_at(&format!("https://localhost:{port}"), &[], "");
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    assert!(
        json(&o)["error"].as_str().unwrap().contains("localhost"),
        "{}",
        stdout(&o)
    );
    assert!(!stderr(&o).contains(&cen) && !stdout(&o).contains(&cen));
}

/// `tokenroll status`: after an enrollment with status valid, the user's PKI token is valid and
/// the bound certificate is this token's (its SHA-1 as openssl computes it); a user without a
/// token has none.
#[test]
fn the_status_command_shows_the_token_and_its_certificate() {
    let mut env = TestEnv::new();
    let cert = env.alice();
    let sim = env.simulator(&[]);
    let o = env.enroll(&sim, "alice", &["--json", "--status", "valid"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let status = |user: &str| {
        env.cmd()
            .args([
                "status",
                "--server",
                &sim.origin,
                "--admin",
                ADMIN,
                "--user",
                user,
            ])
            .args(["--json", "--ca-file"])
            .arg(&sim.ca)
            .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
            .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
            .output()
            .unwrap()
    };
    let o = status("alice");
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let j = json(&o);
    assert_eq!(j["token_status"], "valid", "{j}");
    let fp = openssl_fingerprint(&cert, "-sha1");
    assert!(
        j["certificates"][0]["sha1"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(&fp),
        "{j}"
    );
    assert!(j["certificates"][0]["subject"]
        .as_str()
        .unwrap()
        .contains("Alice Example"));
    let o = status("bob");
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let j = json(&o);
    assert!(
        j["token_status"].is_null() && j["certificates"].as_array().unwrap().is_empty(),
        "{j}"
    );
}

/// `enroll --replace`: the user is bound to another token's certificate; without a terminal
/// and without --yes nothing is unbound (exit 4); with --yes the old token is unbound (its own
/// journal entry) and this token registered.
#[test]
fn replace_unbinds_the_other_certificate_and_registers_this_one() {
    let mut env = TestEnv::new();
    env.alice();
    env.provision("other", true, "p256", "01", "CN=Other Token", &[]);
    let sim = env.simulator(&[]);
    let o = env.enroll(&sim, "alice", &["--json", "--token", "alice"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = env.enroll(&sim, "alice", &["--json", "--token", "other", "--replace"]);
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    assert!(stderr(&o).contains("--yes"), "{}", stderr(&o));
    let unbinds = |sim: &Sim| {
        sim.all_records()
            .into_iter()
            .filter(|r| r["unbind"] == true)
            .count()
    };
    assert_eq!(unbinds(&sim), 0, "nothing unbound without a yes");
    let o = env.enroll(
        &sim,
        "alice",
        &["--json", "--token", "other", "--replace", "--yes"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(
        (j["outcome"].as_str(), j["step"].as_str()),
        (Some("registered"), Some("unbind")),
        "{j}"
    );
    assert_eq!(j["token"]["label"], "other");
    assert_eq!(unbinds(&sim), 1);
    let journal = json(&env.run(&["journal", "--json"]));
    let entries = journal["entries"].as_array().unwrap();
    let unbind = entries
        .iter()
        .find(|e| e["action"] == "unbind")
        .expect("an unbind entry");
    assert_eq!(unbind["state"], "unbound", "{journal}");
    assert!(unbind["certificate_subject"]
        .as_str()
        .unwrap()
        .contains("Alice Example"));
    assert_eq!(entries.last().unwrap()["state"], "registered");
}

/// The agent with a password login and no password in a file or variable: after the token's PIN,
/// the same pinentry asks for the admin's password, and the token is registered.
#[test]
fn the_agent_asks_for_the_admin_password_in_a_dialog() {
    let mut env = TestEnv::new();
    env.provision("alice", true, "p256", "01", "CN=alice", &[]);
    let sim = env.simulator(&[]);
    pins(&env, &[PIN, ADMIN_PASSWORD]);
    let agent = start_password_agent(&env, &sim, None);
    wait_for(&agent, "the registration", || {
        sim.records().iter().any(|r| r["answer_code"] == 0)
    });
    let dialog = std::fs::read_to_string(env.path("pinentry.log")).unwrap();
    assert!(dialog.contains("CENTAGATE admin login"), "{dialog}");
    assert_eq!(logins(&sim).len(), 1);
    assert!(agent.stop().success());
    let log = std::fs::read_to_string(env.path("state/tokenroll/agent.log")).unwrap();
    assert!(!log.contains(ADMIN_PASSWORD), "the password is in no log");
}

/// Quitting while the admin login's password dialog is open: the dialog's process ends with
/// the agent, which stops cleanly; nothing is logged in or sent.
#[test]
fn quitting_with_the_admin_password_dialog_open_ends_the_dialog() {
    let mut env = TestEnv::new();
    env.provision("alice", true, "p256", "01", "CN=alice", &[]);
    let sim = env.simulator(&[]);
    let gate = env.path("gate");
    pins(&env, &[PIN, &format!("WAIT {}", gate.display())]);
    let agent = start_password_agent(&env, &sim, None);
    wait_for(&agent, "the password dialog", || {
        let log = std::fs::read_to_string(env.path("pinentry.log")).unwrap_or_default();
        log.contains("CENTAGATE admin login") && log.matches("GETPIN").count() == 2
    });
    let pids = std::fs::read_to_string(env.path("pinentry.pids")).unwrap();
    let pid: i32 = pids.lines().last().unwrap().trim().parse().unwrap();
    assert!(agent.stop().success(), "SIGTERM ends the agent cleanly");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the dialog's process ended with the agent"
    );
    assert!(logins(&sim).is_empty() && sim.records().is_empty());
}

/// The session's idle timeout passes while the agent waits: the next enrollment logs in again
/// by itself (no 10001 needed) and registers.
#[test]
fn an_idle_session_is_opened_again_when_work_arrives() {
    let mut env = TestEnv::new();
    env.provision("alice", true, "p256", "01", "CN=alice", &[]);
    let sim = env.simulator(&["--session-timeout-ms", "1500"]);
    pins(&env, &[PIN, PIN]);
    let agent = start_password_agent(&env, &sim, Some(ADMIN_PASSWORD));
    wait_for(&agent, "alice's registration", || {
        sim.records().iter().any(|r| r["answer_code"] == 0)
    });
    std::thread::sleep(std::time::Duration::from_millis(2000));
    env.provision("bob", true, "p256", "01", "CN=bob", &[]);
    wait_for(&agent, "bob's registration", || {
        sim.records()
            .iter()
            .filter(|r| r["answer_code"] == 0)
            .count()
            == 2
    });
    assert_eq!(
        logins(&sim).len(),
        2,
        "a second login after the idle timeout"
    );
    assert!(
        !sim.records().iter().any(|r| r["session_expired"] == true),
        "the agent did not wait for a 10001"
    );
    assert!(agent.log().contains("idle timeout"), "said in the log");
    assert!(agent.stop().success());
}
