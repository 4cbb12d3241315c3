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
