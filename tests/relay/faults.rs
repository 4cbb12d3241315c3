//! The relay when things go wrong or come at once: two replicas on one PostgreSQL database,
//! CENTAGATE down, its answer lost, the relay killed mid-request, rate limits, and its admin
//! session ending.

use super::*;
use std::time::Duration;

fn enroll_url(relay: &Relay) -> String {
    format!("{}/v1/enroll", relay.url)
}

/// Two relays on one PostgreSQL database behind one public URL: a challenge issued by one is
/// redeemed at the other, and two requests racing with one challenge at both: one wins.
#[test]
fn two_replicas_on_postgresql_share_challenges_and_a_race_has_one_winner() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let sim = simulator(&mut env, &ca_pem, &[]);
    let db = common::postgres::fresh_database();
    let setup = || RelaySetup {
        database: Some(db.clone()),
        public_url: Some("https://relay.example".into()),
        ..Default::default()
    };
    let a = Relay::start(&env, &sim, &ca_pem, setup());
    let b = Relay::start(&env, &sim, &ca_pem, setup());
    let client = Client::new(None);
    let user1 = ca.issue("user1", None, 31, (-60, 3600));
    let c = client.challenge(&a.url, "user1");
    assert_eq!(c["relay"], "https://relay.example");
    let body = user1.enroll_body(
        "https://relay.example",
        "user1",
        c["challenge"].as_str().unwrap(),
    );
    let r = client.post(&enroll_url(&b), body);
    assert_eq!(
        (r.status, r.body["outcome"].as_str()),
        (200, Some("registered")),
        "{r:?}"
    );

    let user2 = ca.issue("user2", None, 32, (-60, 3600));
    let c = client.challenge(&b.url, "user2");
    let ch = c["challenge"].as_str().unwrap().to_string();
    let first = user2.enroll_body("https://relay.example", "user2", &ch);
    std::thread::sleep(Duration::from_millis(3));
    let second = user2.enroll_body("https://relay.example", "user2", &ch);
    let (ua, ub) = (enroll_url(&a), enroll_url(&b));
    let racers = [(ua, first), (ub, second)]
        .map(|(url, body)| std::thread::spawn(move || Client::new(None).post(&url, body)));
    let mut answers: Vec<Http> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    answers.sort_by_key(|h| h.status);
    assert_eq!(answers[0].status, 200, "{answers:?}");
    assert_eq!(
        (answers[1].status, answers[1].body["error"].as_str()),
        (409, Some("challenge_used")),
        "{answers:?}"
    );
    let users: Vec<_> = sim
        .records()
        .iter()
        .map(|r| r["username"].clone())
        .collect();
    assert_eq!(users, ["user1", "user2"], "one registration each");
}

/// CENTAGATE unreachable: 503 with Retry-After and nothing kept, so the same request goes
/// through once CENTAGATE is back (here: the relay restarted with the right address).
#[test]
fn centagate_down_answers_503_and_loses_nothing() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let sim = simulator(&mut env, &ca_pem, &[]);
    let port = free_port();
    let down = format!("https://localhost:{}", free_port());
    let relay = Relay::start(
        &env,
        &sim,
        &ca_pem,
        RelaySetup {
            server: Some(down),
            port: Some(port),
            extra: "retries = 0\n".into(),
            ..Default::default()
        },
    );
    let client = Client::new(None);
    let bob = ca.issue("bob", None, 41, (-60, 3600));
    let c = client.challenge(&relay.url, "bob");
    let body = bob.enroll_body(&relay.url, "bob", c["challenge"].as_str().unwrap());
    let r = client.post(&enroll_url(&relay), body.clone());
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (503, Some("centagate_unavailable")),
        "{r:?}"
    );
    assert!(r.retry_after.is_some(), "{r:?}");
    let h = client.get(&format!("{}/v1/health", relay.url));
    assert_eq!(
        (h.status, &h.body["centagate"]["reachable"]),
        (200, &serde_json::json!(false))
    );
    assert_eq!(relay.audit_wait(1)[0]["decision"], "unavailable");
    assert!(relay.stop().success());
    let relay = Relay::start(
        &env,
        &sim,
        &ca_pem,
        RelaySetup {
            port: Some(port),
            ..Default::default()
        },
    );
    // A new client: the old one's pooled connection went with the old relay.
    let client = Client::new(None);
    let r = client.post(&enroll_url(&relay), body);
    assert_eq!(
        (r.status, r.body["outcome"].as_str()),
        (200, Some("registered")),
        "{r:?}"
    );
}

/// CENTAGATE registers but its answer is lost: the relay asks CENTAGATE's list and answers
/// registered. When the list cannot say either, 502 (unknown), and the lookup settles it later.
#[test]
fn a_lost_answer_is_reconciled_now_or_later() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let sim = simulator(
        &mut env,
        &ca_pem,
        &["--lose-answers", "2", "--lists-unavailable", "1"],
    );
    let relay = Relay::start(
        &env,
        &sim,
        &ca_pem,
        RelaySetup {
            extra: "retries = 0\n".into(),
            ..Default::default()
        },
    );
    let client = Client::new(None);
    // First: the answer is lost and the list is unavailable: unknown.
    let user3 = ca.issue("user3", None, 51, (-60, 3600));
    let c = client.challenge(&relay.url, "user3");
    let body = user3.enroll_body(&relay.url, "user3", c["challenge"].as_str().unwrap());
    let r = client.post(&enroll_url(&relay), body.clone());
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (502, Some("centagate_answer_lost")),
        "{r:?}"
    );
    assert!(r.retry_after.is_some());
    assert_eq!(relay.audit_wait(1)[0]["decision"], "unknown");
    // Sent again, it is not registered twice: the record says unknown.
    let again = client.post(&enroll_url(&relay), body.clone());
    assert_eq!(again.status, 502, "{again:?}");
    assert_eq!(sim.records().len(), 1);
    // The lookup asks CENTAGATE, which now says: registered.
    let sha = sha256_hex(&std::fs::read(pkcs7_of(&env, &body, "u3.p7")).unwrap());
    let l = client.get(&format!("{}/v1/enroll/{sha}", relay.url));
    assert_eq!(
        (l.status, l.body["outcome"].as_str()),
        (200, Some("registered")),
        "{l:?}"
    );
    // Second: the answer is lost, the list answers at once: registered.
    let user4 = ca.issue("user4", None, 52, (-60, 3600));
    let c = client.challenge(&relay.url, "user4");
    let body = user4.enroll_body(&relay.url, "user4", c["challenge"].as_str().unwrap());
    let r = client.post(&enroll_url(&relay), body);
    assert_eq!(
        (r.status, r.body["outcome"].as_str()),
        (200, Some("registered")),
        "{r:?}"
    );
    assert!(
        r.body["message"].as_str().unwrap().contains("lost"),
        "{r:?}"
    );
    assert_eq!(sim.records().len(), 2);
}

/// Killed with SIGKILL while CENTAGATE is still answering, then restarted on the same
/// database: the request's record reads back (in progress), and the same request is not sent
/// again.
#[test]
fn a_relay_killed_mid_request_reads_its_record_back() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let sim = simulator(&mut env, &ca_pem, &["--delay-ms", "3000"]);
    let port = free_port();
    let setup = || RelaySetup {
        port: Some(port),
        ..Default::default()
    };
    let relay = Relay::start(&env, &sim, &ca_pem, setup());
    let client = Client::new(None);
    let user5 = ca.issue("user5", None, 61, (-60, 3600));
    let c = client.challenge(&relay.url, "user5");
    let body = user5.enroll_body(&relay.url, "user5", c["challenge"].as_str().unwrap());
    let url = enroll_url(&relay);
    let sent = body.clone();
    let inflight = std::thread::spawn(move || {
        let rt = rt();
        rt.block_on(async {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .post(&url)
                .body(sent)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    });
    // Until the registration reaches the simulator (it answers 3 s later).
    let t = std::time::Instant::now();
    while !std::fs::read_to_string(&sim.record)
        .unwrap_or_default()
        .contains("authBasic")
    {
        assert!(t.elapsed() < Duration::from_secs(10), "no login came");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    relay.kill9();
    assert!(
        inflight.join().unwrap().is_err(),
        "the connection died with the relay"
    );
    let relay = Relay::start(&env, &sim, &ca_pem, setup());
    let client = Client::new(None);
    let sha = sha256_hex(&std::fs::read(pkcs7_of(&env, &body, "u5.p7")).unwrap());
    let l = client.get(&format!("{}/v1/enroll/{sha}", relay.url));
    assert_eq!(
        (l.status, l.body["outcome"].as_str()),
        (202, Some("unknown")),
        "{l:?}"
    );
    let again = client.post(&enroll_url(&relay), body);
    assert_eq!(
        (again.status, again.body["error"].as_str()),
        (409, Some("in_progress")),
        "{again:?}"
    );
}

/// Limits per address (before the signature is looked at), per user and per certificate,
/// with Retry-After.
#[test]
fn rate_limits_answer_429_with_retry_after() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let sim = simulator(&mut env, &ca_pem, &[]);
    let relay = Relay::start(
        &env,
        &sim,
        &ca_pem,
        RelaySetup {
            extra: "rate_per_address = \"6/min\"\nrate_per_user = \"2/min\"\n".into(),
            ..Default::default()
        },
    );
    let client = Client::new(None);
    let user6 = ca.issue("user6", None, 71, (-60, 3600));
    // Two requests for user6 (the second replays the first), the third is over its limit.
    let c = client.challenge(&relay.url, "user6");
    let body = user6.enroll_body(&relay.url, "user6", c["challenge"].as_str().unwrap());
    assert_eq!(client.post(&enroll_url(&relay), body.clone()).status, 200);
    assert_eq!(client.post(&enroll_url(&relay), body.clone()).status, 200);
    let r = client.post(&enroll_url(&relay), body);
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (429, Some("rate_limited")),
        "{r:?}"
    );
    let secs: u64 = r.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    // The address's own limit: garbage counts too, and is refused before it is read.
    for _ in 0..3 {
        assert_eq!(client.post(&enroll_url(&relay), b"{}".to_vec()).status, 400);
    }
    let r = client.post(&enroll_url(&relay), b"{}".to_vec());
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (429, Some("rate_limited")),
        "{r:?}"
    );
    assert_eq!(sim.records().len(), 1);
}

/// The relay's admin session ends on the server (after one registration here): the relay logs
/// in again and the next enrollment goes through. Logged at trace level, no secret (password,
/// App secret, the session's authToken and secretCode, a cenToken) is in its log or audit.
#[test]
fn the_relays_session_ending_means_a_fresh_login() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let sim = simulator(&mut env, &ca_pem, &["--end-sessions-after", "1"]);
    let relay = Relay::start(
        &env,
        &sim,
        &ca_pem,
        RelaySetup {
            trace: true,
            ..Default::default()
        },
    );
    let client = Client::new(None);
    for (n, user) in ["alice", "bob"].iter().enumerate() {
        let key = ca.issue(user, None, 80 + n as u32, (-60, 3600));
        let r = client.enroll(&relay.url, &key, user);
        assert_eq!(
            (r.status, r.body["outcome"].as_str()),
            (200, Some("registered")),
            "{r:?}"
        );
    }
    let logins = sim
        .all_records()
        .iter()
        .filter(|r| r["login"] == "password")
        .count();
    assert_eq!(logins, 2, "one login, then one after the session ended");
    let m = client.get(relay.metrics.as_deref().unwrap());
    assert!(
        m.text.contains("tokenroll_relay_centagate_logins_total 2"),
        "{}",
        m.text
    );
    assert!(
        m.text
            .contains("tokenroll_relay_centagate_registrations_total{code=\"0\"} 2"),
        "{}",
        m.text
    );
    let files = vec![relay.audit.clone(), relay.log.clone(), relay.config.clone()];
    assert!(relay.stop().success());
    assert_no_secret_in(&files, &[]);
}
