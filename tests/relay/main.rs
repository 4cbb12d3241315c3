//! The relay as it runs: `tokenroll relay` in front of the simulator, with its store on SQLite
//! and on a private PostgreSQL cluster (a fresh database per test), clients that sign with
//! software keys under an organisation CA made here, and `tokenroll enroll --relay` on SoftHSM.

mod client;
#[path = "../common/mod.rs"]
mod common;
mod faults;
use common::relay::*;
use common::*;
use tokenroll::relay::soft::SoftKey;
use tokenroll::relay::store::{Begun, NewRequest, Store};

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The simulator, trusting only certificates of the organisation's CA.
pub fn simulator(env: &mut TestEnv, org_ca: &std::path::Path, extra: &[&str]) -> Sim {
    let mut args = vec!["--trust", org_ca.to_str().unwrap()];
    args.extend_from_slice(extra);
    env.simulator(&args)
}

/// The PKCS#7 inside an enrollment body, written to a file (for openssl).
pub fn pkcs7_of(env: &TestEnv, body: &[u8], name: &str) -> std::path::PathBuf {
    use base64::Engine;
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(v["signature"].as_str().unwrap())
        .unwrap();
    let p = env.path(name);
    std::fs::write(&p, der).unwrap();
    p
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    tokenroll::certinfo::fingerprint(bytes)
}

/// A desk with no CENTAGATE secret enrolls through the relay: the simulator records the
/// registration under the relay's admin, with the certificate's username; the PKCS#7 verifies
/// with openssl against the organisation's CA; the audit trail, the lookup, health and metrics
/// say so.
#[test]
fn an_enrollment_through_the_relay_registers_and_is_recorded() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let sim = simulator(&mut env, &ca_pem, &[]);
    let relay = Relay::start(&env, &sim, &ca_pem, RelaySetup::default());
    let client = Client::new(None);
    let alice = ca.issue("alice", None, 11, (-60, 3600));
    let c = client.challenge(&relay.url, "Alice");
    assert_eq!(c["relay"], relay.url.as_str());
    assert!(c["expires_ms"].as_i64().unwrap() > 0);
    assert_eq!(c["challenge_id"].as_str().unwrap().len(), 32);
    let body = alice.enroll_body(&relay.url, "Alice", c["challenge"].as_str().unwrap());
    let p7 = pkcs7_of(&env, &body, "alice.p7");
    let statement = openssl_verify(&p7, &ca_pem);
    assert!(String::from_utf8(statement)
        .unwrap()
        .contains("\"typ\":\"tokenroll-enroll-v1\""));
    let a = client.post(&format!("{}/v1/enroll", relay.url), body.clone());
    assert_eq!(a.status, 200, "{a:?}\n{}", relay.log_text());
    assert_eq!(a.body["outcome"], "registered");
    assert_eq!(a.body["code"], 0);
    let recs = sim.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["username"], "alice", "the certificate's spelling");
    assert_eq!(recs[0]["answer_code"], 0);
    assert_eq!(recs[0]["signer_subject"], "CN=alice,O=Acme");
    // The lookup a client without the answer makes.
    let sha = sha256_hex(&std::fs::read(&p7).unwrap());
    let l = client.get(&format!("{}/v1/enroll/{sha}", relay.url));
    assert_eq!(
        (l.status, l.body["outcome"].as_str()),
        (200, Some("registered"))
    );
    let none = client.get(&format!("{}/v1/enroll/{}", relay.url, "0".repeat(64)));
    assert_eq!(
        (none.status, none.body["error"].as_str()),
        (404, Some("not_found"))
    );
    let bad = client.get(&format!("{}/v1/enroll/xyz", relay.url));
    assert_eq!(
        (bad.status, bad.body["error"].as_str()),
        (400, Some("malformed"))
    );
    // One audit line, and its row.
    let audit = relay.audit_wait(1);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["decision"], "registered");
    assert_eq!(audit[0]["username"], "alice");
    assert_eq!(audit[0]["sha256"], sha.as_str());
    assert_eq!(audit[0]["client"], "127.0.0.1");
    assert_eq!(audit[0]["code"], 0);
    assert_eq!(audit[0]["serial"], "0b");
    // Health and metrics.
    let h = client.get(&format!("{}/v1/health", relay.url));
    assert_eq!(h.status, 200, "{h:?}");
    assert_eq!(h.body["centagate"]["reachable"], true);
    let m = client.get(relay.metrics.as_deref().unwrap());
    assert_eq!(m.status, 200);
    assert!(m.text.contains(
        "tokenroll_relay_requests_total{endpoint=\"enroll\",outcome=\"registered\",rule=\"\"} 1"
    ), "{}", m.text);
    assert!(m
        .text
        .contains("tokenroll_relay_centagate_registrations_total{code=\"0\"} 1"));
    assert!(m.text.contains("tokenroll_relay_centagate_logins_total 1"));
    assert_eq!(
        client.get(&format!("{}/metrics", relay.url)).status,
        404,
        "metrics are not served on the public listener"
    );
    let st = relay.stop();
    assert!(st.success(), "{st}");
    // The relay logged out at exit.
    assert!(sim.all_records().iter().any(|r| r["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("/auth/logout"))));
    let rows = rt().block_on(async {
        let s = Store::open(&format!("sqlite:{}", env.path("relay.db").display()))
            .await
            .unwrap();
        s.audit_of(&sha).await.unwrap()
    });
    assert_eq!(rows, vec![("registered".to_string(), String::new())]);
}

/// Every refusal before CENTAGATE, with its rule: nothing reaches the simulator.
#[test]
fn requests_that_break_a_rule_are_refused_before_centagate() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let sim = simulator(&mut env, &ca_pem, &[]);
    let relay = Relay::start(&env, &sim, &ca_pem, RelaySetup::default());
    let client = Client::new(None);
    let enroll = |body: Vec<u8>| client.post(&format!("{}/v1/enroll", relay.url), body);
    let refused = |a: Http, status: u16, rule: &str| {
        assert_eq!(
            (a.status, a.body["error"].as_str()),
            (status, Some(rule)),
            "{a:?}"
        );
        assert!(a.body["message"].as_str().unwrap().contains(" — "), "{a:?}");
    };
    let bob = ca.issue("bob", None, 21, (-60, 3600));
    let challenge = |user: &str| {
        client.challenge(&relay.url, user)["challenge"]
            .as_str()
            .unwrap()
            .to_string()
    };
    // Another CA's certificate with the same name.
    let other = SoftKey::ca("Other CA").issue("bob", None, 1, (-60, 3600));
    refused(
        enroll(other.enroll_body(&relay.url, "bob", &challenge("bob"))),
        403,
        "untrusted_chain",
    );
    // Expired.
    let old = ca.issue("bob", None, 22, (-7200, -3600));
    refused(
        enroll(old.enroll_body(&relay.url, "bob", &challenge("bob"))),
        403,
        "untrusted_chain",
    );
    // The certificate names bob; the request says alice.
    refused(
        enroll(bob.enroll_body(&relay.url, "alice", &challenge("alice"))),
        403,
        "username_mismatch",
    );
    // SHA-1.
    let st =
        tokenroll::relay::statement::Statement::new(&relay.url, "bob", &challenge("bob"), now_ms());
    let sha1 = tokenroll::relay::soft::body(
        "bob",
        &bob.sign(&st.to_bytes(), tokenroll::digest::DigestAlg::Sha1),
    );
    refused(enroll(sha1), 403, "weak_digest");
    // A statement for another relay.
    refused(
        enroll(bob.enroll_body("https://relay.evil.example", "bob", &challenge("bob"))),
        403,
        "wrong_relay",
    );
    // A challenge issued for another username.
    refused(
        enroll(bob.enroll_body(&relay.url, "bob", &challenge("alice"))),
        403,
        "other_users_challenge",
    );
    // A challenge no relay of this deployment issued.
    let foreign = tokenroll::relay::challenge::issue(
        &tokenroll::relay::challenge::ChallengeKey::generate(1),
        "bob",
        now_ms(),
    );
    refused(
        enroll(bob.enroll_body(&relay.url, "bob", &foreign.challenge)),
        403,
        "unknown_challenge",
    );
    // An expired challenge: issued, as another replica would, with the deployment's key.
    let keys = rt().block_on(async {
        let s = Store::open(&format!("sqlite:{}", env.path("relay.db").display()))
            .await
            .unwrap();
        s.challenge_keys(0).await.unwrap()
    });
    let expired = tokenroll::relay::challenge::issue(&keys[0], "bob", now_ms() - 3 * 60_000);
    refused(
        enroll(bob.enroll_body(&relay.url, "bob", &expired.challenge)),
        409,
        "challenge_expired",
    );
    // Malformed and too large.
    refused(enroll(b"{\"username\":\"bob\"}".to_vec()), 400, "malformed");
    refused(enroll(vec![b' '; 70 * 1024]), 413, "too_large");
    refused(
        client.post(
            &format!("{}/v1/challenge", relay.url),
            b"{\"user\":\"bob\"}".to_vec(),
        ),
        400,
        "malformed",
    );
    assert!(sim.records().is_empty(), "nothing reached CENTAGATE");
    // One challenge, two requests (signed at different moments): the second finds it used.
    let c = challenge("bob");
    let first = bob.enroll_body(&relay.url, "bob", &c);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let second = bob.enroll_body(&relay.url, "bob", &c);
    assert_ne!(first, second);
    assert_eq!(enroll(first.clone()).body["outcome"], "registered");
    refused(enroll(second), 409, "challenge_used");
    // The same request again: its stored outcome, and no second registration.
    let again = enroll(first);
    assert_eq!(
        (again.status, again.body["outcome"].as_str()),
        (200, Some("registered"))
    );
    assert_eq!(sim.records().len(), 1);
    // Twelve decisions went through the checks (the oversized body was refused unread).
    let decisions: Vec<String> = relay
        .audit_wait(12)
        .iter()
        .map(|a| {
            format!(
                "{}/{}",
                a["decision"].as_str().unwrap(),
                a["rule"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(decisions.last().unwrap(), "replayed/");
    assert!(
        decisions.contains(&"refused/challenge_used".to_string()),
        "{decisions:?}"
    );
    assert_no_secret_in(&[relay.audit.clone(), relay.log.clone()], &[]);
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Both kinds of database the relay runs on, each fresh.
fn databases(env: &TestEnv) -> Vec<String> {
    vec![
        common::postgres::fresh_database(),
        format!("sqlite:{}", env.path("relay.db").display()),
    ]
}

/// Two replicas racing for one challenge, many times at once: exactly one claim wins; and the
/// replicas agree on the deployment's challenge key.
#[test]
fn two_stores_share_keys_and_a_challenge_has_one_winner() {
    let env = TestEnv::new();
    for url in databases(&env) {
        rt().block_on(async {
            let (a, b) = (
                Store::open(&url).await.unwrap(),
                Store::open(&url).await.unwrap(),
            );
            let (ka, kb) = tokio::join!(a.challenge_keys(1), b.challenge_keys(2));
            assert_eq!(ka.unwrap()[0].expose(), kb.unwrap()[0].expose(), "{url}");
            let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
            let mut begun = tokio::task::JoinSet::new();
            for i in 0..20 {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                begun.spawn(async move {
                    let sha = format!("request-{i}");
                    let new = NewRequest {
                        sha256: &sha,
                        username: "alice",
                        cert_sha1: "c",
                        challenge_id: "challenge-1",
                    };
                    store.begin(&new, 100, 1).await.unwrap()
                });
            }
            let won = begun.join_all().await;
            let winners = won.iter().filter(|w| **w == Begun::New).count();
            assert_eq!(winners, 1, "{url}: {won:?}");
            assert!(
                won.iter()
                    .all(|w| matches!(w, Begun::New | Begun::ChallengeUsed)),
                "{url}: {won:?}"
            );
            let new = NewRequest {
                sha256: "r",
                username: "alice",
                cert_sha1: "c",
                challenge_id: "ch",
            };
            assert_eq!(a.begin(&new, 100, 1).await.unwrap(), Begun::New);
            match b.begin(&new, 100, 2).await.unwrap() {
                Begun::Seen(seen) => assert_eq!(
                    seen.state, "in_progress",
                    "{url}: the other replica sees it"
                ),
                other => panic!("{url}: {other:?}"),
            }
            a.close().await;
            b.close().await;
        });
    }
}

/// `org_crl`: a certificate the CA revoked (a CRL made by `openssl ca -gencrl`) is refused as
/// untrusted; one it did not revoke registers.
#[test]
fn a_revoked_certificate_is_refused_with_org_crl() {
    let mut env = TestEnv::new();
    let (ca, ca_pem) = org_ca(&env);
    let (bob, carol) = (
        ca.issue("bob", None, 91, (-60, 3600)),
        ca.issue("alice", None, 92, (-60, 3600)),
    );
    // The CA's own records, as `openssl ca` keeps them: bob revoked, then the CRL.
    let d = env.path("ca");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("index.txt"), "").unwrap();
    std::fs::write(d.join("crlnumber"), "01\n").unwrap();
    std::fs::write(d.join("ca.key"), ca.key_pem()).unwrap();
    std::fs::write(d.join("bob.pem"), bob.cert_pem()).unwrap();
    std::fs::write(
        d.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\ncrlnumber = {0}/crlnumber\n\
             default_md = sha256\ndefault_crl_days = 1\n",
            d.display()
        ),
    )
    .unwrap();
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(["ca", "-config"])
            .arg(d.join("ca.cnf"))
            .arg("-keyfile")
            .arg(d.join("ca.key"))
            .arg("-cert")
            .arg(&ca_pem)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl ca {args:?}: {}",
            stderr(&out)
        );
    };
    openssl(&["-revoke", d.join("bob.pem").to_str().unwrap()]);
    let crl = d.join("org.crl");
    openssl(&["-gencrl", "-out", crl.to_str().unwrap()]);
    let sim = simulator(&mut env, &ca_pem, &[]);
    let relay = Relay::start(
        &env,
        &sim,
        &ca_pem,
        RelaySetup {
            extra: format!("org_crl = \"{}\"\n", crl.display()),
            ..Default::default()
        },
    );
    let client = Client::new(None);
    let r = client.enroll(&relay.url, &bob, "bob");
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (403, Some("untrusted_chain")),
        "{r:?}"
    );
    assert!(
        r.body["message"].as_str().unwrap().contains("revoked"),
        "{r:?}"
    );
    let r = client.enroll(&relay.url, &carol, "alice");
    assert_eq!(
        (r.status, r.body["outcome"].as_str()),
        (200, Some("registered")),
        "{r:?}"
    );
    assert_eq!(sim.records().len(), 1);
}

/// `tokenroll relay --check`: a usable configuration says so (exit 0) without serving; an
/// unknown key is exit 2, naming the key and the file; a static login is refused.
#[test]
fn relay_check_validates_the_configuration() {
    let env = TestEnv::new();
    let (_, ca_pem) = org_ca(&env);
    let good = format!(
        "listen = \"127.0.0.1:{}\"\npublic_url = \"https://relay.example\"\norg_ca = \"{}\"\n\
         database = \"sqlite:{}\"\nserver = \"https://cg.example\"\nadmin = \"{ADMIN}\"\n\
         login = \"password\"\napp_key = \"{APP_KEY}\"\n",
        free_port(),
        ca_pem.display(),
        env.path("check.db").display()
    );
    let run = |text: &str, name: &str| {
        let p = env.path(name);
        std::fs::write(&p, text).unwrap();
        env.cmd()
            .args(["relay", "--check", "--config"])
            .arg(&p)
            .env("TOKENROLL_APP_SECRET", APP_SECRET)
            .env("TOKENROLL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .output()
            .unwrap()
    };
    let out = run(&good, "good.toml");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("is usable"), "{}", stdout(&out));
    assert!(stderr(&out).contains("trusted_proxies"), "{}", stderr(&out));
    let out = run(&format!("{good}sever = \"x\"\n"), "typo.toml");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("'sever'") && stderr(&out).contains("typo.toml"),
        "{}",
        stderr(&out)
    );
    let out = run(&good.replace("\"password\"", "\"static\""), "static.toml");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("login must be password or token"),
        "{}",
        stderr(&out)
    );
    assert_no_secret_in(&[env.path("good.toml")], &[]);
}
