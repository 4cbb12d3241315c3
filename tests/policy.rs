//! The administrator's policy (`/etc/tokenroll/policy.toml`, and here the additional file
//! `TOKENROLL_POLICY_FILE` names, which only adds constraints): a flag, variable, config file
//! or station batch row that sets a policy key otherwise is refused (exit 2, naming the key and
//! the file); one that agrees as a parsed value is accepted; a policy file others could change is
//! refused. `tokenroll config --show` names where every key came from.

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;

fn policy(env: &TestEnv, text: &str, mode: u32) -> std::path::PathBuf {
    let p = env.path("policy.toml");
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

/// `tokenroll config --show` under the policy file `p`, with `extra` arguments.
fn show_under(env: &TestEnv, p: &std::path::Path, extra: &[&str]) -> std::process::Output {
    env.cmd()
        .args(["config", "--show"])
        .args(extra)
        .env("TOKENROLL_POLICY_FILE", p)
        .output()
        .unwrap()
}

#[test]
fn a_policy_key_set_otherwise_is_refused_and_one_that_agrees_accepted() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let p = policy(
        &env,
        "status = \"pending\"\nmin_algorithm = \"sha256\"\n",
        0o644,
    );
    let enroll = |extra: &[&str], vars: &[(&str, &str)]| {
        let mut c = env.enroll_base(&sim.origin, "alice");
        c.args(["--pin-env", "TOKENROLL_PIN", "--ca-file"])
            .arg(&sim.ca)
            .args(extra)
            .env("TOKENROLL_POLICY_FILE", &p)
            .env("XDG_STATE_HOME", env.path("state"));
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let o = enroll(&["--status", "valid"], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let e = json(&o)["message"].as_str().unwrap_or_default().to_string();
    assert!(
        e.contains("status = \"valid\" (a flag or variable)")
            && e.contains(&p.display().to_string())
            && e.contains("status = \"pending\""),
        "{e}"
    );
    let o = enroll(&[], &[("TOKENROLL_STATUS", "deactivated")]);
    assert_eq!(o.status.code(), Some(2), "a variable is refused too");
    let cfg = env.path("home/.config/tokenroll/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, "status = \"temp-deactivated\"\n").unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = enroll(&[], &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = json(&o)["message"].as_str().unwrap_or_default().to_string();
    assert!(
        e.contains(&format!("the config file {}", cfg.display())),
        "{e}"
    );
    std::fs::remove_file(&cfg).unwrap();
    let o = enroll(&["--algorithm", "sha1"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(json(&o)["message"]
        .as_str()
        .unwrap()
        .contains("min_algorithm = sha256"));
    assert!(
        sim.records().is_empty(),
        "nothing refused reached the server"
    );
    // The same status written another way agrees.
    let o = enroll(&["--status", "1"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(sim.records()[0]["status"], "1");

    // A station batch row is one more place: its status must agree.
    std::fs::write(
        env.path("batch.csv"),
        "username,status\nbob,\nalice,valid\n",
    )
    .unwrap();
    let o = env
        .cmd()
        .args([
            "station",
            "--headless",
            "--server",
            &sim.origin,
            "--admin",
            ADMIN,
        ])
        .arg("--report")
        .arg(env.path("report.csv"))
        .arg("--batch")
        .arg(env.path("batch.csv"))
        .env("TOKENROLL_POLICY_FILE", &p)
        .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
        .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 3: status valid is not allowed"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_policy_file_others_can_change_is_refused() {
    let env = TestEnv::new();
    let p = policy(&env, "status = \"pending\"\n", 0o664);
    let o = show_under(&env, &p, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is refused") && stderr(&o).contains("chmod go-w"),
        "{}",
        stderr(&o)
    );
    let p = policy(&env, "colour = \"red\"\n", 0o644);
    let o = show_under(&env, &p, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("'colour' is not a key a policy may fix"));
}

#[test]
fn config_show_names_where_each_key_came_from() {
    let env = TestEnv::new();
    let p = policy(
        &env,
        "server = \"https://cg.example.com\"\nmin_algorithm = \"sha384\"\n",
        0o644,
    );
    let cfg = env.path("user.toml");
    std::fs::write(
        &cfg,
        "retries = 5\nauth_token_file = \"/nonexistent/token\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = env
        .cmd()
        .args(["config", "--show", "--json", "--user", "alice"])
        .args(["--algorithm", "sha512", "--config"])
        .arg(&cfg)
        .env("TOKENROLL_POLICY_FILE", &p)
        .env("TOKENROLL_ADMIN", "helpdesk")
        .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    let key = |k: &str| {
        j["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["key"] == k)
            .unwrap_or_else(|| panic!("no {k} in {j}"))
            .clone()
    };
    let policy_file = p.display().to_string();
    let (server, floor) = (key("server"), key("min_algorithm"));
    assert_eq!(
        (server["origin"].as_str(), server["file"].as_str()),
        (Some("policy"), Some(policy_file.as_str()))
    );
    assert_eq!(floor["value"], "sha384");
    let retries = key("retries");
    assert_eq!(
        (retries["origin"].as_str(), retries["value"].as_i64()),
        (Some("user"), Some(5))
    );
    assert_eq!(retries["file"], cfg.display().to_string());
    let admin = key("admin");
    assert_eq!(
        (admin["origin"].as_str(), admin["file"].as_str()),
        (Some("env"), Some("TOKENROLL_ADMIN"))
    );
    assert_eq!(key("user")["origin"], "flag");
    let alg = key("algorithm");
    assert_eq!(
        (alg["origin"].as_str(), alg["value"].as_str()),
        (Some("flag"), Some("sha512"))
    );
    let unit = key("timestamp_unit");
    assert_eq!(
        (unit["origin"].as_str(), unit["value"].as_str()),
        (Some("default"), Some("ms"))
    );
    // Secrets: only whether they are set, and from where.
    assert_eq!(key("secret_code")["value"], "<set>");
    assert_eq!(key("secret_code")["origin"], "env");
    assert_eq!(key("auth_token")["value"], "<set>");
    assert_eq!(
        key("auth_token")["origin"],
        "user",
        "its file is set in the user's config"
    );
    assert_eq!(key("admin_password")["value"], "<unset>");
    assert!(!stdout(&o).contains(SECRET_CODE));
    // Below the policy's floor: said, with exit 2, and still listed; unset, it takes the floor.
    let p = policy(&env, "min_algorithm = \"sha512\"\n", 0o644);
    let show = |extra: &[&str]| show_under(&env, &p, extra);
    let o = show(&["--algorithm", "sha256"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).contains("policy") && stderr(&o).contains("min_algorithm = sha512"));
    let o = show(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // A relative TOKENROLL_POLICY_FILE is refused, not ignored.
    let o = env
        .cmd()
        .args(["config", "--show"])
        .env("TOKENROLL_POLICY_FILE", "policy.toml")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("absolute path"), "{}", stderr(&o));
}

/// The journal is the user's file: `journal --reconcile` does not take the admin's login to a
/// server an entry names when the policy fixes another.
#[test]
fn reconcile_asks_no_server_but_the_policys() {
    let env = TestEnv::new();
    let p = policy(&env, "server = \"https://cg.example.com\"\n", 0o644);
    let journal = env.path("journal.jsonl");
    let intent = serde_json::json!({
        "record": "intent", "id": "e1", "time": "2026-12-03T10:00:00Z",
        "server": "https://elsewhere.example/CentagateWS/webresources/cert/register/pkcs7/helpdesk",
        "admin": "helpdesk", "user": "alice", "token_label": "alice", "token_serial": "1",
        "certificate_sha256": "ab", "certificate_subject": "CN=Alice", "algorithm": "sha256",
        "status": "1"
    });
    std::fs::write(&journal, format!("{intent}\n")).unwrap();
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = env
        .cmd()
        .args(["journal", "--reconcile", "--json", "--journal"])
        .arg(&journal)
        .env("TOKENROLL_POLICY_FILE", &p)
        .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
        .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("not asked") && out.contains("https://elsewhere.example"),
        "{out}"
    );
}
