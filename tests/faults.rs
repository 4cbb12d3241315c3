//! Server and network faults, driven for real through the simulator's fault switches: each gets
//! a clear message, the right exit code and outcome, and a journal entry; transport failures
//! before any answer are retried with the same PKCS#7; a clock off by ten minutes is corrected;
//! bad TLS certificates are refused; a process killed mid-request leaves a readable journal.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// `tokenroll enroll --json` for alice against a simulator started with `faults`.
fn enroll_with(faults: &[&str], extra: &[&str]) -> (TestEnv, Sim, std::process::Output) {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(faults);
    let o = env.enroll(&sim, "alice", &[&["--json"], extra].concat());
    (env, sim, o)
}

fn message(o: &std::process::Output) -> String {
    json(o)["message"].as_str().unwrap_or_default().to_string()
}

fn journal(env: &TestEnv) -> serde_json::Value {
    json(&env.run(&["journal", "--json"]))
}

#[test]
fn html_error_pages_and_non_json_answers_are_protocol_errors() {
    for (faults, expect) in [
        (&["--html-status", "404"][..], "HTTP 404"),
        (&["--not-json"][..], "HTTP 200, text/plain"),
    ] {
        let (env, sim, o) = enroll_with(faults, &[]);
        assert_eq!(o.status.code(), Some(5), "{faults:?}: {}", stdout(&o));
        assert_eq!(json(&o)["outcome"], "failed");
        let m = message(&o);
        assert!(
            m.contains(expect) && m.contains("not the CENTAGATE API"),
            "{m}"
        );
        assert_eq!(
            sim.records().len(),
            1,
            "an answer, however bad, is not retried"
        );
        let j = journal(&env);
        assert_eq!(j["entries"][0]["state"], "failed", "{j}");
    }
}

/// A gateway's 502 (HTML or JSON) leaves open whether the server behind it acted: tokenroll
/// asks the server's list of bound certificates before reporting. Here the server did register.
#[test]
fn a_gateways_502_is_settled_by_asking_the_server() {
    for faults in [&["--html-status", "502"][..], &["--json-status", "502"][..]] {
        let (env, sim, o) = enroll_with(faults, &[]);
        assert_eq!(o.status.code(), Some(0), "{faults:?}: {}", stdout(&o));
        let j = json(&o);
        assert_eq!(
            (j["outcome"].as_str(), j["step"].as_str()),
            (Some("registered"), Some("reconcile")),
            "{j}"
        );
        assert_eq!(sim.records().len(), 1, "not resent");
        assert_eq!(journal(&env)["entries"][0]["state"], "registered");
    }
}

#[test]
fn a_reset_mid_answer_is_reconciled_with_the_server_and_not_retried() {
    let (env, sim, o) = enroll_with(&["--cut-body"], &[]);
    // The answer was cut off after the server registered: the list call settles it.
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(
        (j["outcome"].as_str(), j["step"].as_str()),
        (Some("registered"), Some("reconcile"))
    );
    assert!(
        message(&o).contains("the answer was lost"),
        "{}",
        message(&o)
    );
    assert_eq!(sim.records().len(), 1, "not resent");
    let j = journal(&env);
    assert_eq!(j["entries"][0]["outcome"]["attempts"], 1);
    assert_eq!(j["entries"][0]["state"], "registered", "{j}");
}

/// The answer is lost and the server's list cannot be asked either: the journal keeps the entry
/// unknown — without retries (exit 5), and with them (the resent request meets 22027, exit 4:
/// "probably registered by the earlier attempt"); `journal --reconcile` later asks the list,
/// which confirms the registration.
#[test]
fn a_lost_answer_the_list_cannot_settle_is_reconciled_later_from_the_journal() {
    for (retries, exit) in [("0", 5), ("2", 4)] {
        let (env, sim, o) = enroll_with(
            &["--lose-answers", "1", "--lists-unavailable", "1"],
            &["--retries", retries],
        );
        assert_eq!(o.status.code(), Some(exit), "{}", stdout(&o));
        let j = journal(&env);
        assert_eq!(j["entries"][0]["state"], "unknown: check the server", "{j}");
        let o = env
            .cmd()
            .args(["journal", "--reconcile", "--json", "--ca-file"])
            .arg(&sim.ca)
            .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
            .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        let r = json(&o);
        assert_eq!(r["reconciled"][0]["state"], "registered", "{r}");
        assert_eq!(journal(&env)["entries"][0]["state"], "registered");
    }
}

#[test]
fn a_slow_server_times_out_and_a_huge_answer_is_not_read() {
    let (_env, sim, o) = enroll_with(
        &["--delay-ms", "3000"],
        &["--timeout", "1", "--retries", "0"],
    );
    // The server registered, then answered too late: asked, it confirms the binding.
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(json(&o)["step"], "reconcile", "{}", stdout(&o));
    assert_eq!(sim.records().len(), 1);

    let (_env, _sim, o) = enroll_with(&["--huge-body"], &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(message(&o).contains("larger than 1 MiB"), "{}", message(&o));
}

#[test]
fn a_redirect_is_not_followed_and_the_other_host_gets_nothing() {
    let mut env = TestEnv::new();
    env.alice();
    let elsewhere = env.simulator(&[]);
    let target = format!(
        "{}/CentagateWS/webresources/RegisterToken/helpdesk",
        elsewhere.origin
    );
    let sim = env.simulator(&["--redirect", &target]);
    let o = env.enroll(&sim, "alice", &["--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(message(&o).contains("HTTP 307"), "{}", message(&o));
    assert!(
        elsewhere.all_records().is_empty(),
        "the redirect's target was never contacted, so the cenToken went nowhere else"
    );
}

#[test]
fn every_shape_of_object_is_accepted_with_code_0() {
    for shape in ["null", "empty", "string", "object"] {
        let (_env, _sim, o) = enroll_with(&["--object", shape], &[]);
        assert_eq!(o.status.code(), Some(0), "object {shape}: {}", stdout(&o));
        assert_eq!(json(&o)["outcome"], "registered");
    }
}

#[test]
fn a_dropped_connection_is_retried_with_the_same_signature() {
    let (env, sim, o) = enroll_with(&["--drop-first", "2"], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let e = stderr(&o);
    assert_eq!(e.matches("retrying in").count(), 2, "{e}");
    assert_eq!(
        sim.records().len(),
        1,
        "the dropped requests were never judged"
    );
    let j = journal(&env);
    assert_eq!(j["entries"][0]["outcome"]["attempts"], 3, "{j}");
    assert_eq!(j["entries"][0]["state"], "registered");

    // More failures than retries: the last error is reported.
    let (env, _sim, o) = enroll_with(&["--drop-first", "5"], &["--retries", "1"]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(
        message(&o).contains("could not reach the server"),
        "{}",
        message(&o)
    );
    // The connection was made each time: the server may have had the request, so the journal
    // says to check rather than "failed".
    // The server, asked, confirms nothing was registered: failed, safe to enroll again.
    let j = journal(&env);
    assert_eq!(j["entries"][0]["state"], "failed", "{j}");
    assert!(
        message(&o).contains("not bound to alice"),
        "{}",
        message(&o)
    );
    assert_eq!(j["entries"][0]["outcome"]["attempts"], 2);
}

/// The first answer is lost after the server registered the token: the retry meets 22027, which
/// is reported as probably registered by the earlier attempt — same PKCS#7, fresh timestamp.
#[test]
fn a_lost_answer_then_22027_for_our_certificate_is_registered() {
    let (_env, sim, o) = enroll_with(&["--lose-answers", "1"], &[]);
    // The retry meets 22027; the server's list shows this token's certificate: success.
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(
        (
            j["outcome"].as_str(),
            j["code"].as_i64(),
            j["already_bound"].as_bool()
        ),
        (Some("registered"), Some(22027), Some(true)),
        "{j}"
    );
    let r = sim.records();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0]["answer_code"].as_i64(), r[1]["answer_code"].as_i64()),
        (Some(0), Some(22027))
    );
    assert_eq!(
        r[0]["signature_sha256"], r[1]["signature_sha256"],
        "the same PKCS#7"
    );
    assert_ne!(r[0]["timestamp"], r[1]["timestamp"], "a fresh timestamp");
}

#[test]
fn a_clock_ten_minutes_off_is_corrected_from_the_servers_date() {
    for (offset, word) in [("600", "behind"), ("-600", "ahead of")] {
        let (_env, sim, o) = enroll_with(&["--clock-offset-secs", offset], &[]);
        assert_eq!(o.status.code(), Some(0), "offset {offset}: {}", stdout(&o));
        let e = stderr(&o);
        let said = e
            .split("clock is ")
            .nth(1)
            .and_then(|r| r.split_once(&format!(" s {word} the server's")))
            .and_then(|(n, _)| n.parse::<i64>().ok());
        assert!(said.is_some_and(|n| (599..=601).contains(&n)), "{e}");
        let heads = sim
            .all_records()
            .iter()
            .filter(|r| r["method"] == "HEAD")
            .count();
        assert_eq!(heads, 1, "the server's clock is asked once");
    }
    // Within a minute nothing is said or changed.
    let (_env, _sim, o) = enroll_with(&["--clock-offset-secs", "20"], &[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!stderr(&o).contains("clock"), "{}", stderr(&o));
}

#[test]
fn expired_and_wrong_host_certificates_are_refused() {
    for (bad, expect) in [("expired", "expired"), ("wrong-host", "not valid for")] {
        let (_env, sim, o) = enroll_with(&["--bad-tls", bad], &[]);
        assert_eq!(o.status.code(), Some(5), "{bad}: {}", stdout(&o));
        let m = message(&o);
        assert!(
            m.contains("TLS certificate was refused") && m.contains(expect),
            "{m}"
        );
        assert!(sim.all_records().is_empty(), "nothing reached the server");
    }
}

/// kill -9 while the request is in flight: the intent is on disk; the journal reads back with
/// that attempt as unknown.
#[test]
fn a_process_killed_mid_request_leaves_a_journal_that_reads_back() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&["--delay-ms", "20000"]);
    let mut child = env
        .enroll_base(&sim.origin, "alice")
        .args(["--pin-env", "TOKENROLL_PIN", "--ca-file"])
        .arg(&sim.ca)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let path = env.path("home/.local/state/tokenroll/journal.jsonl");
    let t = Instant::now();
    while !std::fs::read_to_string(&path)
        .unwrap_or_default()
        .contains("intent")
        || sim.records().is_empty()
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no intent was journaled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let j = journal(&env);
    assert_eq!(j["entries"].as_array().unwrap().len(), 1, "{j}");
    assert_eq!(j["entries"][0]["state"], "unknown: check the server");
    assert_eq!(j["entries"][0]["user"], "alice");
    assert_eq!(j["skipped_lines"], 0);
    let text = stdout(&env.run(&["journal"]));
    assert!(text.contains("unknown: check the server"), "{text}");

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the journal is readable by its owner only");

    // `journal --reconcile`: without credentials it says what is missing (exit 2); with them
    // it asks the server, which had registered the token, and appends that answer.
    let o = env.run(&["journal", "--reconcile", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let o = env
        .cmd()
        .args(["journal", "--reconcile", "--json", "--ca-file"])
        .arg(&sim.ca)
        .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
        .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let r = json(&o);
    assert_eq!(
        (
            r["reconciled"][0]["state"].as_str(),
            r["still_unknown"].as_i64()
        ),
        (Some("registered"), Some(0)),
        "{r}"
    );
    let j = journal(&env);
    assert_eq!(j["entries"][0]["state"], "registered", "{j}");
    assert_eq!(
        j["entries"].as_array().unwrap().len(),
        1,
        "appended, not a new entry"
    );
    // Nothing left to reconcile.
    let o = env.run(&["journal", "--reconcile"]);
    assert_eq!(o.status.code(), Some(0));
}

/// A server that speaks only TLS 1.1 (openssl s_server): refused, with TLS 1.2 named.
#[test]
fn a_server_offering_only_tls_1_1_is_refused() {
    let env = TestEnv::new();
    env.alice();
    let (cert, key) =
        common::tls::openssl_cert(&env, "old", "localhost", Some("DNS:localhost,IP:127.0.0.1"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-tls1_1",
            "-cipher",
            "DEFAULT:@SECLEVEL=0",
        ])
        .args(["-accept", &format!("127.0.0.1:{port}"), "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "openssl s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = env
        .enroll_base(&format!("https://localhost:{port}"), "alice")
        .args(["--pin-env", "TOKENROLL_PIN", "--retries", "0", "--ca-file"])
        .arg(&cert)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    let m = message(&o);
    assert!(m.contains("TLS handshake") && m.contains("TLS 1.2"), "{m}");
}

/// Only a 2xx answer is CENTAGATE's answer: a 4xx/5xx carrying a CENTAGATE-shaped body is an
/// error that quotes the code (exit 5, not retried); a gateway's 502/504 says the request may
/// have gone through.
#[test]
fn an_error_status_with_a_json_body_is_not_an_answer() {
    for (faults, expect) in [
        (
            &["--json-status", "500"][..],
            "HTTP 500 with CENTAGATE code 0",
        ),
        (
            &["--json-status", "401", "--force-code", "10001"][..],
            "CENTAGATE code 10001",
        ),
    ] {
        let (env, sim, o) = enroll_with(faults, &[]);
        assert_eq!(o.status.code(), Some(5), "{faults:?}: {}", stdout(&o));
        assert_eq!(json(&o)["outcome"], "failed");
        let m = message(&o);
        assert!(m.contains(expect), "{faults:?}: {m}");
        assert_eq!(sim.records().len(), 1, "an answer arrived: not retried");
        assert_eq!(journal(&env)["entries"][0]["state"], "failed", "{faults:?}");
    }
}
