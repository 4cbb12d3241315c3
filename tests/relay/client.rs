//! `tokenroll enroll --relay` on a SoftHSM token whose certificate the organisation's CA issued,
//! through a relay serving HTTPS with a certificate made by `openssl req -x509`; and `journal
//! --reconcile` settling a lost answer through the relay.

use super::*;

/// The token "alice" with a P-256 pair whose certificate the organisation's CA issued.
fn alice_token(env: &TestEnv, ca: &SoftKey, ca_pem: &std::path::Path) -> std::path::PathBuf {
    let key = env.path("org-ca.key");
    std::fs::write(&key, ca.key_pem()).unwrap();
    env.provision(
        "alice",
        true,
        "p256",
        "01",
        "CN=alice,O=Acme",
        &[
            "--issuer-cert",
            ca_pem.to_str().unwrap(),
            "--issuer-key",
            key.to_str().unwrap(),
        ],
    )
}

/// A certificate and key for the relay's HTTPS, as an administrator makes them with openssl
/// (CA:TRUE, as `openssl req -x509` marks them).
fn relay_tls(env: &TestEnv) -> (std::path::PathBuf, std::path::PathBuf) {
    common::tls::openssl_cert(
        env,
        "relay-tls",
        "localhost",
        Some("DNS:localhost,IP:127.0.0.1"),
    )
}

/// A relay serving HTTPS with `relay_tls`'s certificate (and `extra` config lines); the
/// certificate's file, for the desks' `--relay-ca-file`.
fn https_relay(
    env: &TestEnv,
    sim: &Sim,
    ca_pem: &std::path::Path,
    extra: &str,
) -> (Relay, std::path::PathBuf) {
    let (tls, tls_key) = relay_tls(env);
    let relay = Relay::start(
        env,
        sim,
        ca_pem,
        RelaySetup {
            tls: Some((tls.clone(), tls_key)),
            extra: extra.into(),
            ..Default::default()
        },
    );
    (relay, tls)
}

fn enroll_via(
    env: &TestEnv,
    relay: &Relay,
    tls: &std::path::Path,
    user: &str,
) -> std::process::Command {
    let mut c = env.cmd();
    c.args(["enroll", "--json", "--relay", &relay.url, "--relay-ca-file"])
        .arg(tls)
        .args(["--user", user, "--pin-env", "TOKENROLL_PIN", "--journal"])
        .arg(env.path("journal.jsonl"));
    c
}

/// Registered through the relay while the desk holds no CENTAGATE secret (none in its
/// environment, none in its files); `--json` says so; the journal records it with the
/// request's SHA-256; a certificate of another user is refused with the relay's rule (exit 4).
#[test]
fn a_token_enrolls_through_the_relay_with_no_secret_on_the_desk() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let cert = alice_token(&env, &ca, &ca_pem);
    let sim = simulator(&mut env, &ca_pem, &[]);
    let (relay, tls) = https_relay(&env, &sim, &ca_pem, "");
    let out = enroll_via(&env, &relay, &tls, "alice").output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stderr(&out),
        relay.log_text()
    );
    let j = json(&out);
    assert_eq!(j["outcome"], "registered");
    assert_eq!(j["via"], "relay");
    assert_eq!(j["code"], 0);
    assert_eq!(j["admin"], serde_json::Value::Null);
    assert_eq!(j["token"]["label"], "alice");
    let recs = sim.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["username"], "alice");
    assert_eq!(recs[0]["signer_subject"], "CN=alice,O=Acme");
    assert!(
        stderr(&out).contains("challenge ready (relay"),
        "{}",
        stderr(&out)
    );
    // The journal: via the relay, with the request's SHA-256, registered.
    let journal = std::fs::read_to_string(env.path("journal.jsonl")).unwrap();
    assert!(
        journal.contains("\"via\":\"relay\"") && journal.contains("request_sha256"),
        "{journal}"
    );
    let sha = journal
        .lines()
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l).ok()?["request_sha256"]
                .as_str()
                .map(str::to_string)
        })
        .unwrap();
    // Asked as `journal --reconcile` asks (tokenroll's own client: rustls alone refuses a
    // server certificate marked CA:TRUE, as `openssl req -x509` makes them).
    let opts = tokenroll::api::HttpOptions {
        ca_file: Some(tls.clone()),
        connect_timeout: std::time::Duration::from_secs(5),
        timeout: std::time::Duration::from_secs(5),
        server_cert_sha256: None,
        proxy: Default::default(),
    };
    let (lookup, never) = rt().block_on(async {
        let c = tokenroll::api::relay::RelayClient::new(&relay.url, &opts).unwrap();
        (
            c.lookup(&sha).await.unwrap().unwrap(),
            c.lookup(&"0".repeat(64)).await.unwrap(),
        )
    });
    assert_eq!(lookup.outcome, "registered", "{lookup:?}");
    assert_eq!(never, None, "the relay's 404: never reached CENTAGATE");
    // The token's certificate names alice: asking for bob is the relay's refusal, exit 4.
    let out = enroll_via(&env, &relay, &tls, "bob").output().unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(
        (j["outcome"].as_str(), j["rule"].as_str(), j["via"].as_str()),
        (Some("rejected"), Some("username_mismatch"), Some("relay"))
    );
    assert_eq!(sim.records().len(), 1, "nothing more reached CENTAGATE");
    // --relay with --server, --status or --challenge: exit 2; the relay unreachable: exit 5.
    for extra in [
        &["--server", "https://cg.example"][..],
        &["--status", "valid"],
        &["--challenge", "x"],
    ] {
        let out = enroll_via(&env, &relay, &tls, "alice")
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
    }
    let out = env
        .cmd()
        .args([
            "enroll",
            "--json",
            "--user",
            "alice",
            "--pin-env",
            "TOKENROLL_PIN",
        ])
        .args([
            "--relay",
            &format!("https://127.0.0.1:{}", free_port()),
            "--retries",
            "0",
        ])
        .arg("--journal")
        .arg(env.path("journal.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(json(&out)["outcome"], "failed");
    // No CENTAGATE secret reached the desk's files or output.
    assert_no_secret_in(&[env.path("journal.jsonl"), cert], &[]);
    assert!(!stdout(&out).contains(APP_SECRET) && !stderr(&out).contains(ADMIN_PASSWORD));
}

/// CENTAGATE's answer lost and not yet settled: the desk exits 5 and journals it unknown;
/// `journal --reconcile` asks the relay (no admin credentials on the desk), which settles it.
#[test]
fn journal_reconcile_settles_a_relay_enrollment_through_the_relay() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    alice_token(&env, &ca, &ca_pem);
    let sim = simulator(
        &mut env,
        &ca_pem,
        &["--lose-answers", "1", "--lists-unavailable", "1"],
    );
    let (relay, tls) = https_relay(&env, &sim, &ca_pem, "retries = 0\n");
    let out = enroll_via(&env, &relay, &tls, "alice").output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(
        (j["outcome"].as_str(), j["rule"].as_str()),
        (Some("failed"), Some("centagate_answer_lost"))
    );
    let listed = env
        .cmd()
        .args(["journal", "--json", "--journal"])
        .arg(env.path("journal.jsonl"))
        .output()
        .unwrap();
    assert!(stdout(&listed).contains("unknown"), "{}", stdout(&listed));
    let out = env
        .cmd()
        .args(["journal", "--reconcile", "--json", "--relay-ca-file"])
        .arg(&tls)
        .arg("--journal")
        .arg(env.path("journal.jsonl"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let j = json(&out);
    assert_eq!(j["still_unknown"], 0);
    assert_eq!(j["reconciled"][0]["state"], "registered", "{j}");
    assert_eq!(sim.records().len(), 1, "registered once");
}

/// The agent with `--relay`: the inserted token is enrolled through the relay with no
/// CENTAGATE secret on the desk; the PIN dialog says what is signed and for whom, and the
/// agent's log and journal hold no secret.
#[test]
fn the_agent_enrolls_through_the_relay() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    alice_token(&env, &ca, &ca_pem);
    let sim = simulator(&mut env, &ca_pem, &[]);
    let (relay, tls) = https_relay(&env, &sim, &ca_pem, "");
    pins(&env, &[PIN]);
    let child = env
        .agent_cmd_base()
        .args(["--relay", &relay.url, "--relay-ca-file"])
        .arg(&tls)
        .args(["--user-from", "cn", "--headless"])
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .spawn()
        .unwrap();
    let agent = Agent {
        child,
        log: env.path("state/tokenroll/agent.log"),
    };
    wait_for(&agent, "the registration through the relay", || {
        sim.records().iter().any(|r| r["answer_code"] == 0)
    });
    wait_for(&agent, "the agent to report it", || {
        agent.log().contains("registered")
    });
    assert!(agent.log().contains("via=\"relay\""), "{}", agent.log());
    let dialog = std::fs::read_to_string(env.path("pinentry.log")).unwrap();
    assert!(
        dialog.contains("relay") && dialog.contains(&relay.url) && dialog.contains("alice"),
        "{dialog}"
    );
    let journal = env.path("state/tokenroll/journal.jsonl");
    assert!(std::fs::read_to_string(&journal)
        .unwrap()
        .contains("\"via\":\"relay\""));
    assert!(agent.stop().success());
    assert_eq!(sim.records()[0]["username"], "alice");
    assert_no_secret_in(&[journal, env.path("state/tokenroll/agent.log")], &[]);
}
