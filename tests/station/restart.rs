//! A station killed mid-run (`kill -9` while a registration is on the wire) and started again
//! with the same batch and report: what was in flight is settled by asking CENTAGATE, the report
//! ends complete, and no token is registered twice.

use super::*;

#[test]
fn killed_mid_run_and_restarted_registers_nothing_twice() {
    let mut env = TestEnv::new();
    // Answers come 3 s after the registration is made: time to kill the station meanwhile.
    let sim = env.simulator(&["--delay-ms", "3000"]);
    let mut certs = std::collections::HashMap::new();
    certs.insert("First", token(&env, "first", "First"));
    std::fs::write(env.path("batch.csv"), "username\nuser1\nuser2\n").unwrap();
    // The same report, named relative to the station's folder (before it exists), then by its
    // absolute path: one run.
    let cmd = |report: &std::path::Path| {
        let mut c =
            station_cmd_reporting_to(&env, &sim, report, &[PIN_ENV[0], PIN_ENV[1], "--batch"]);
        c.arg(env.path("batch.csv")).current_dir(env.dir.path());
        c
    };
    let mut station = start(cmd(std::path::Path::new("report.csv")));
    let t = Instant::now();
    while station.named("registering").is_empty() || registrations(&sim).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no registration on the wire"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    station.child.kill().unwrap();
    station.child.wait().unwrap();
    drop(station);
    assert!(
        report(&env).is_empty(),
        "killed before its answer: no row yet"
    );

    // Started again: the first token's registration is settled from the server, then a second
    // token comes for the second row.
    let station = start(cmd(&env.path("report.csv")));
    let t = Instant::now();
    while report(&env).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "nothing settled at the restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    certs.insert("Second", token(&env, "second", "Second"));
    let (code, events) = station.end();
    assert_eq!(code, 0, "{events:#?}");
    let rows = report(&env);
    let registered: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r["outcome"] == "registered")
        .map(|r| (r["username"].as_str(), r["token_label"].as_str()))
        .collect();
    assert_eq!(
        registered,
        [("user1", "first"), ("user2", "second")],
        "{rows:?}"
    );
    assert!(rows[0]["message"].contains("confirms"), "{rows:?}");
    // The first token, still in its reader, was not enrolled again.
    let regs = verified_registrations(&env, &sim, &certs);
    assert_eq!(regs.len(), 2, "{regs:?}");
    let first = rows.iter().rfind(|r| r["token_label"] == "first").unwrap();
    assert!(
        first["outcome"] == "registered" || first["message"].contains("already registered"),
        "{rows:?}"
    );
}
