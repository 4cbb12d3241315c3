//! The operator's session ends (its idle timeout) and no password is stored: the station locks —
//! the next token waits while the operator is asked to log in again — then goes on.

use super::*;

#[test]
fn the_station_locks_when_the_session_expires_and_goes_on_after_a_login() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&["--session-timeout-ms", "1500"]);
    // The password, typed twice: at the preflight, and after the session expired.
    pins(&env, &[ADMIN_PASSWORD, ADMIN_PASSWORD]);
    std::fs::write(env.path("batch.csv"), "username\nuser1\nuser2\n").unwrap();
    let mut cmd = station_cmd(
        &env,
        &sim,
        &[
            PIN_ENV[0],
            PIN_ENV[1],
            "--login",
            "password",
            "--app-key",
            APP_KEY,
            "--batch",
        ],
    );
    cmd.arg(env.path("batch.csv"))
        .env_remove("TOKENROLL_AUTH_TOKEN")
        .env_remove("TOKENROLL_SECRET_CODE")
        .env("TOKENROLL_APP_SECRET", APP_SECRET);
    let station = start(cmd);
    let mut certs = std::collections::HashMap::new();
    certs.insert("First", token(&env, "first", "First"));
    station.wait_done(1);
    // Past the idle timeout: the next token's registration needs a new login.
    std::thread::sleep(Duration::from_millis(2500));
    certs.insert("Second", token(&env, "second", "Second"));
    let (code, events) = station.end();
    assert_eq!(code, 0, "{events:#?}");
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| **n == "locked").count(),
        2,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "unlocked").count(),
        2,
        "{names:?}"
    );
    // The second lock comes after the first token was done, and the second token's
    // registration waited for it (its PKCS#7 was made before the session was needed).
    let first_done = names.iter().position(|n| *n == "done").unwrap();
    let second_lock = names
        .iter()
        .enumerate()
        .filter(|(_, n)| **n == "locked")
        .nth(1)
        .unwrap()
        .0;
    let second_done = names.iter().rposition(|n| *n == "done").unwrap();
    assert!(
        first_done < second_lock && second_lock < second_done,
        "{names:?}"
    );
    assert_eq!(events[second_done]["token_label"], "second");

    let logins = sim
        .all_records()
        .into_iter()
        .filter(|r| r["login"] == "password")
        .count();
    assert_eq!(logins, 2);
    assert_eq!(verified_registrations(&env, &sim, &certs).len(), 2);
    let out = std::fs::read_to_string(env.path("station.err")).unwrap_or_default();
    assert!(!out.contains(ADMIN_PASSWORD));
    assert!(!events
        .iter()
        .any(|e| e.to_string().contains(ADMIN_PASSWORD)));
}
