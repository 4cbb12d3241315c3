//! The station's other ways to run: the preflight alone (`--check`), and without a batch (the
//! username from the certificate, ended by SIGTERM).

use super::*;

#[test]
fn check_runs_the_preflight_alone() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    token(&env, "alice", "Alice");
    let out = station_cmd(&env, &sim, &["--check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let said: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    for want in [
        "OK   module:",
        "OK   slots: 2 slot(s) with 1 token(s)",
        "OK   server:",
        "OK   clock:",
        "OK   login:",
    ] {
        assert!(
            said.iter().any(|s| s.starts_with(want)),
            "{want}: {said:#?}"
        );
    }
    assert!(!env.path("report.csv").exists(), "no token was touched");
    assert!(registrations(&sim).is_empty());

    // A server that does not answer: FAIL, with what to do, and exit 5.
    let mut cmd = env.cmd();
    cmd.args([
        "station",
        "--headless",
        "--check",
        "--server",
        "https://127.0.0.1:9",
        "--admin",
        ADMIN,
    ])
    .arg("--report")
    .arg(env.path("report.csv"))
    .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
    .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
    .env("XDG_STATE_HOME", env.path("state"));
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("FAIL server:") && err.contains("check --server"),
        "{err}"
    );
}

#[test]
fn without_a_batch_the_certificate_names_the_user_and_sigterm_ends_the_run() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    let mut cmd = station_cmd(&env, &sim, &[PIN_ENV[0], PIN_ENV[1], "--user-from", "cn"]);
    cmd.arg("--html").arg(env.path("r.html"));
    let mut station = start(cmd);
    let cert = token(&env, "u6", "user6");
    station.wait_done(1);
    let status = terminate(&mut station.child, "the station", 20);
    assert!(status.success(), "{status:?}");
    let (_, events) = station.end();
    assert_eq!(events.last().unwrap()["event"], "summary", "{events:#?}");
    let rows = report(&env);
    assert_eq!(
        (rows[0]["username"].as_str(), rows[0]["outcome"].as_str()),
        ("user6", "registered")
    );
    let certs = [("user6", cert)].into_iter().collect();
    assert_eq!(verified_registrations(&env, &sim, &certs).len(), 1);
    assert!(std::fs::read_to_string(env.path("r.html"))
        .unwrap()
        .contains("user6"));
}

/// The operator logs in with their own token (`--login token`, its pair named by `--admin-key`),
/// which sits in a reader beside the tokens being enrolled: it signs the login, is recognised,
/// and is never offered for enrollment nor reported.
#[test]
fn the_operators_own_token_logs_in_and_is_never_enrolled() {
    let mut env = TestEnv::new();
    let admin_cert = env.provision("operator", true, "p256", "07", "CN=helpdesk operator", &[]);
    let fp = openssl_fingerprint(&admin_cert, "-sha256");
    let sim = env.simulator_with(
        &[],
        &format!("[[admin]]\nname = \"tokenadmin\"\ncert_sha256 = \"{fp}\"\n"),
    );
    let cert = token(&env, "user", "user1");
    std::fs::write(env.path("batch.csv"), "username\nuser1\n").unwrap();
    let mut cmd = env.cmd();
    cmd.args(["station", "--headless", "--jsonl", "--server", &sim.origin])
        .args([
            "--admin",
            "tokenadmin",
            "--login",
            "token",
            "--app-key",
            APP_KEY,
        ])
        .args(["--admin-key", "pkcs11:token=operator;id=%07"])
        .args(["--admin-pin-env", "OPERATOR_PIN", PIN_ENV[0], PIN_ENV[1]])
        .arg("--ca-file")
        .arg(&sim.ca)
        .arg("--report")
        .arg(env.path("report.csv"))
        .arg("--batch")
        .arg(env.path("batch.csv"))
        .env("OPERATOR_PIN", PIN)
        .env("TOKENROLL_APP_SECRET", APP_SECRET)
        .env("TOKENROLL_POLL_MS", "100")
        .env("XDG_STATE_HOME", env.path("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let (code, events) = start(cmd).end();
    assert_eq!(code, 0, "{events:#?}");
    let rows = report(&env);
    assert_eq!(
        rows.len(),
        1,
        "the operator's token is not reported: {rows:?}"
    );
    assert_eq!(
        (
            rows[0]["token_label"].as_str(),
            rows[0]["username"].as_str()
        ),
        ("user", "user1")
    );
    assert!(
        !events
            .iter()
            .any(|e| e["event"] == "seen" && e["token_label"] == "operator"),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| e["event"] == "log"
        && e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("operator's own signing pair")));
    let logins = sim
        .all_records()
        .into_iter()
        .filter(|r| r["login"] == "pkcs7")
        .count();
    assert_eq!(logins, 1, "one login for the run");
    let certs = [("user1", cert)].into_iter().collect();
    assert_eq!(
        verified_registrations(&env, &sim, &certs),
        [("user1".to_string(), "CN=user1,O=Acme".to_string())]
    );
}
