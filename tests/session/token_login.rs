//! `--login token`: the admin's own pair on a second SoftHSM token signs the server's random
//! string; its token stays logged in (its PIN asked once) and is never enrolled; a refused or
//! missing admin token PIN stops before anything is sent.

use super::{logouts, pins, start_agent_as, wait_for};
use crate::common::*;

/// A second SoftHSM token "admintoken" holding the admin's own pair (CKA_ID 07), and the
/// simulator's account "tokenadmin" that logs in with its certificate.
fn token_admin(env: &TestEnv) -> String {
    let admin_cert = env.provision("admintoken", true, "p256", "07", "CN=helpdesk admin", &[]);
    let fp = openssl_fingerprint(&admin_cert, "-sha256");
    format!("[[admin]]\nname = \"tokenadmin\"\ncert_sha256 = \"{fp}\"\n")
}

const ADMIN_KEY: &str = "pkcs11:token=admintoken;id=%07";

fn pkcs7_logins(sim: &Sim) -> Vec<serde_json::Value> {
    sim.all_records()
        .into_iter()
        .filter(|r| r["login"] == "pkcs7")
        .collect()
}

/// `tokenroll enroll --login token` as "tokenadmin", the App secret in the environment.
fn enroll_with_token_login(env: &TestEnv, sim: &Sim, extra: &[&str]) -> std::process::Command {
    let mut c = env.cmd();
    c.args([
        "enroll",
        "--server",
        &sim.origin,
        "--admin",
        "tokenadmin",
        "--user",
        "alice",
    ])
    .args(["--pin-env", "TOKENROLL_PIN", "--json"])
    .args([
        "--login",
        "token",
        "--app-key",
        APP_KEY,
        "--admin-key",
        ADMIN_KEY,
    ])
    .arg("--ca-file")
    .arg(&sim.ca)
    .args(extra)
    .env("TOKENROLL_APP_SECRET", APP_SECRET);
    c
}

/// `--login token`: the admin's own pair, on a second SoftHSM token, signs the server's random
/// string; the simulator checks the PKCS#7 against the admin account's certificate; registered.
/// No `--token` is needed: the admin's own pair is never the one enrolled.
#[test]
fn a_token_login_with_the_admins_own_pair_on_a_second_token() {
    let mut env = TestEnv::new();
    env.alice();
    let account = token_admin(&env);
    let sim = env.simulator_with(&[], &account);
    let o = enroll_with_token_login(&env, &sim, &["--admin-pin-env", "ADMIN_TOKEN_PIN"])
        .env("ADMIN_TOKEN_PIN", PIN)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let logins = pkcs7_logins(&sim);
    assert_eq!(
        (logins.len(), logins[0]["answer_code"].as_i64()),
        (1, Some(0))
    );
    let records = sim.records();
    assert_eq!(
        (
            records[0]["answer_code"].as_i64(),
            records[0]["username"].as_str()
        ),
        (Some(0), Some("alice"))
    );
    assert_eq!(
        json(&o)["token"]["label"],
        "alice",
        "the admin's token is not enrolled"
    );
    // The one-shot command logged out of the session its token login opened.
    assert_eq!(logouts(&sim).len(), 1);
}

/// The admin token refuses the PIN in `admin_pin_file`: exit 3 with `"step": "login"`, nothing
/// registered; and with no PIN given and no terminal to ask, the error names both ways to give it.
#[test]
fn a_refused_or_missing_admin_token_pin_stops_before_anything_is_sent() {
    let mut env = TestEnv::new();
    env.alice();
    let account = token_admin(&env);
    let sim = env.simulator_with(&[], &account);
    let file = env.path("admin-pin");
    std::fs::write(&file, "999999\n").unwrap();
    let owner_only = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&file, owner_only).unwrap();
    let config = env.path("tokenroll.toml");
    std::fs::write(&config, format!("admin_pin_file = {:?}\n", file)).unwrap();
    let o = enroll_with_token_login(&env, &sim, &["--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    assert_eq!(v["step"], "login", "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("admin's own token") && message.contains("wrong PIN"),
        "{message}"
    );
    assert!(pkcs7_logins(&sim).is_empty() && sim.records().is_empty());

    let o = enroll_with_token_login(&env, &sim, &[])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    let message = json(&o)["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("--admin-pin-env") && message.contains("admin_pin_file"),
        "{message}"
    );
    assert!(sim.records().is_empty());
}

/// The agent with `--login token` and no PIN for the admin's token in a file or variable: the
/// dialog asks for it once; the token stays logged in, so the second login (the server ended
/// the first session) signs without asking again; the admin's own token is never enrolled.
#[test]
fn the_agent_keeps_the_admin_token_logged_in_and_never_enrolls_it() {
    let mut env = TestEnv::new();
    let account = token_admin(&env);
    env.provision("alice", true, "p256", "01", "CN=alice", &[]);
    env.provision("bob", true, "p256", "01", "CN=bob", &[]);
    let sim = env.simulator_with(&["--end-sessions-after", "1"], &account);
    // Alice's, Bob's and the admin token's PINs are the same: the dialogs may come in any order.
    pins(&env, &[PIN, PIN, PIN]);
    let agent = start_agent_as(
        &env,
        &sim,
        "tokenadmin",
        &[
            "--user-from",
            "cn",
            "--login",
            "token",
            "--app-key",
            APP_KEY,
        ],
        |c| {
            c.args(["--admin-key", ADMIN_KEY])
                .env_remove("TOKENROLL_AUTH_TOKEN")
                .env_remove("TOKENROLL_SECRET_CODE")
                .env("TOKENROLL_APP_SECRET", APP_SECRET);
        },
    );
    wait_for(&agent, "both registrations", || {
        sim.records()
            .iter()
            .filter(|r| r["answer_code"] == 0)
            .count()
            == 2
    });
    let logins = pkcs7_logins(&sim);
    assert_eq!(logins.len(), 2, "logged in again after the session ended");
    assert!(logins.iter().all(|l| l["answer_code"] == 0), "{logins:?}");
    let dialog = std::fs::read_to_string(env.path("pinentry.log")).unwrap();
    assert_eq!(
        dialog.matches("SETTITLE tokenroll — admin token").count(),
        1,
        "the admin token's PIN was asked once: {dialog}"
    );
    let mut users: Vec<_> = sim
        .records()
        .iter()
        .map(|r| r["username"].as_str().unwrap_or_default().to_string())
        .collect();
    users.sort();
    users.dedup();
    assert_eq!(
        users,
        ["alice", "bob"],
        "the admin's token is never enrolled"
    );
    assert!(
        agent.log().contains("admin's own signing pair"),
        "said in the log"
    );
    assert!(agent.stop().success());
    assert_eq!(
        logouts(&sim).last().unwrap()["answer_code"],
        0,
        "logged out at SIGTERM"
    );
}
