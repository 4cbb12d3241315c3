//! The relay's checks against requests built here: an organisation CA, a user's key and
//! certificate, a statement signed as an attached PKCS#7, and every way such a request is wrong.

use super::*;
use crate::relay::identity::Field;
use std::time::{Duration, SystemTime};

const RELAY: &str = "https://relay.example";

type Made = crate::relay::soft::SoftKey;

fn ca(cn: &str) -> Made {
    Made::ca(cn)
}

/// A user's certificate, valid for the hour from now.
fn user(cn: &str, issuer: &Made) -> Made {
    issuer.issue(cn, None, 7, (0, 3600))
}

struct World {
    org: Made,
    alice: Made,
    keys: Vec<ChallengeKey>,
    policy: Policy,
    now: SystemTime,
}

fn world() -> World {
    let org = ca("Acme Users CA");
    let alice = user("alice", &org);
    World {
        policy: Policy {
            org_ca: vec![org.cert.clone()],
            org_crl: vec![],
            user: UserRule::new(Field::Cn, &[]).unwrap(),
            public_urls: vec![RELAY.into()],
        },
        org,
        alice,
        keys: vec![ChallengeKey::generate(1)],
        now: SystemTime::now(),
    }
}

fn now_ms(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A request body: `signer` signs `content` with `digest`, sent as `username`.
fn body(signer: &Made, content: &[u8], digest: DigestAlg, username: &str) -> Vec<u8> {
    crate::relay::soft::body(username, &signer.sign(content, digest))
}

/// The statement a client signs, with a challenge issued for `for_user`.
fn statement(w: &World, for_user: &str, relay: &str) -> Vec<u8> {
    let c = challenge::issue(&w.keys[0], for_user, now_ms(w.now));
    Statement::new(relay, "alice", &c.challenge, now_ms(w.now)).to_bytes()
}

fn check(w: &World, body: &[u8]) -> Result<Accepted, Refusal> {
    w.policy.check(&parse(body)?, &w.keys, w.now)
}

fn rule(r: Result<Accepted, Refusal>) -> Rule {
    r.expect_err("refused").rule
}

#[test]
fn a_good_request_is_accepted_under_the_certificates_username() {
    let w = world();
    let b = body(
        &w.alice,
        &statement(&w, "alice", RELAY),
        DigestAlg::Sha256,
        "Alice",
    );
    let a = check(&w, &b).unwrap();
    assert_eq!(
        a.verified.username, "alice",
        "the certificate's spelling, not the client's"
    );
    assert_eq!(a.verified.digest, DigestAlg::Sha256);
    assert_eq!(a.challenge.id.len(), 32);
    let p = parse(&b).unwrap();
    assert_eq!(p.sha256, crate::certinfo::fingerprint(&p.pkcs7));
    // openssl agrees: the PKCS#7 verifies against the organisation's CA, content attached.
    let dir = tempfile::tempdir().unwrap();
    let (p7, ca) = (dir.path().join("req.p7"), dir.path().join("ca.pem"));
    std::fs::write(&p7, &p.pkcs7).unwrap();
    use der::EncodePem;
    std::fs::write(&ca, w.org.cert.to_pem(der::pem::LineEnding::LF).unwrap()).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-purpose", "any", "-in"])
        .arg(&p7)
        .arg("-CAfile")
        .arg(&ca)
        .output()
        .expect("openssl is installed (packaging/deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed = Statement::parse(&out.stdout).unwrap();
    assert_eq!(
        (signed.relay.as_str(), signed.username.as_str()),
        (RELAY, "alice")
    );
}

#[test]
fn the_body_must_be_the_protocols() {
    let w = world();
    let big = vec![b' '; MAX_BODY + 1];
    assert_eq!(rule(check(&w, &big)), Rule::TooLarge);
    for bad in [
        r#"{"username":"alice"}"#,
        r#"{"username":"alice","signature":"AA==","status":"1"}"#,
        r#"{"username":"alice","signature":"***"}"#,
        r#"{"username":" ","signature":"AA=="}"#,
        "[]",
    ] {
        assert_eq!(rule(check(&w, bad.as_bytes())), Rule::Malformed, "{bad}");
    }
    let not_cms = br#"{"username":"alice","signature":"AAAA"}"#;
    assert_eq!(rule(check(&w, not_cms)), Rule::Malformed);
}

#[test]
fn signer_chain_digest_and_username_are_the_organisations() {
    let w = world();
    let good = statement(&w, "alice", RELAY);
    // Another CA's certificate with the same name.
    let other = ca("Other CA");
    let mallory = user("alice", &other);
    let r = check(&w, &body(&mallory, &good, DigestAlg::Sha256, "alice"));
    assert_eq!(rule(r), Rule::UntrustedChain);
    // SHA-1.
    let r = check(&w, &body(&w.alice, &good, DigestAlg::Sha1, "alice"));
    assert_eq!(rule(r), Rule::WeakDigest);
    // A username that is not the certificate's.
    let r = check(&w, &body(&w.alice, &good, DigestAlg::Sha256, "bob"));
    assert_eq!(rule(r), Rule::UsernameMismatch);
    // The organisation's certificate, expired (valid for an hour, two hours ago).
    let mut later = world();
    later.now += Duration::from_secs(7200);
    let old = body(
        &later.alice,
        &statement(&later, "alice", RELAY),
        DigestAlg::Sha256,
        "alice",
    );
    assert_eq!(rule(check(&later, &old)), Rule::UntrustedChain);
    assert_eq!(
        w.org.cert.tbs_certificate.issuer,
        w.org.cert.tbs_certificate.subject
    );
}

#[test]
fn the_statement_and_its_challenge_are_checked() {
    let w = world();
    let sign = |content: &[u8]| check(&w, &body(&w.alice, content, DigestAlg::Sha256, "alice"));
    assert_eq!(rule(sign(b"not a statement")), Rule::BadStatement);
    assert_eq!(
        rule(sign(&statement(&w, "alice", "https://evil.example"))),
        Rule::WrongRelay
    );
    assert_eq!(
        rule(sign(&statement(&w, "bob", RELAY))),
        Rule::OtherUsersChallenge
    );
    let foreign = challenge::issue(&ChallengeKey::generate(1), "alice", now_ms(w.now));
    let st = Statement::new(RELAY, "alice", &foreign.challenge, now_ms(w.now)).to_bytes();
    assert_eq!(rule(sign(&st)), Rule::UnknownChallenge);
    let stale = challenge::issue(
        &w.keys[0],
        "alice",
        now_ms(w.now) - challenge::LIFETIME_MS - 1,
    );
    let st = Statement::new(RELAY, "alice", &stale.challenge, now_ms(w.now)).to_bytes();
    assert_eq!(rule(sign(&st)), Rule::ChallengeExpired);
    let c = challenge::issue(&w.keys[0], "alice", now_ms(w.now));
    let st = Statement::new(RELAY, "alice", &c.challenge, now_ms(w.now) - 600_000).to_bytes();
    assert_eq!(rule(sign(&st)), Rule::StaleIat);
}
