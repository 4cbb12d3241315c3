use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn sqlite(dir: &tempfile::TempDir) -> Store {
    Store::open(&format!("sqlite:{}", dir.path().join("relay.db").display()))
        .await
        .unwrap()
}

#[test]
fn the_schema_is_made_once_and_the_first_key_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = sqlite(&dir).await;
        let k1 = s.challenge_keys(1).await.unwrap();
        assert_eq!(k1.len(), 1);
        s.close().await;
        // Opened again: the migration is not run twice, the key is the same.
        let s = sqlite(&dir).await;
        let k2 = s.challenge_keys(2).await.unwrap();
        assert_eq!(k2[0].expose(), k1[0].expose());
    });
}

#[test]
fn a_challenge_is_claimed_once_and_a_released_claim_can_be_made_again() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = sqlite(&dir).await;
        assert!(s.claim("c1", "r1", 0, 10).await.unwrap());
        assert!(!s.claim("c1", "r2", 1, 10).await.unwrap(), "used");
        s.release("c1", "r2").await.unwrap();
        assert!(
            !s.claim("c1", "r3", 1, 10).await.unwrap(),
            "only its own claimant releases"
        );
        s.release("c1", "r1").await.unwrap();
        assert!(s.claim("c1", "r3", 2, 10).await.unwrap());
        assert_eq!(s.forget_claims_before(11).await.unwrap(), 1);
    });
}

#[test]
fn rate_counts_and_request_records_read_back() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = sqlite(&dir).await;
        for n in 1..=3 {
            assert_eq!(s.hit("addr:127.0.0.1", 60_000).await.unwrap(), n);
        }
        assert_eq!(
            s.hit("addr:127.0.0.1", 120_000).await.unwrap(),
            1,
            "a new window"
        );
        let new = NewRequest {
            sha256: "h1",
            username: "alice",
            cert_sha1: "c1",
            challenge_id: "ch1",
        };
        assert_eq!(s.begin_request(&new, 5).await.unwrap(), None);
        let again = s.begin_request(&new, 6).await.unwrap().unwrap();
        assert_eq!(again.state, "in_progress");
        assert_eq!(s.unsettled(5).await.unwrap(), vec![], "not stale yet");
        assert_eq!(s.unsettled(6).await.unwrap()[0].cert_sha1, "c1", "stale");
        s.finish_request("h1", "final", "registered", Some(0), "ok", 7)
            .await
            .unwrap();
        let r = s.request("h1").await.unwrap().unwrap();
        assert_eq!(
            (r.state.as_str(), r.outcome.as_deref(), r.code),
            ("final", Some("registered"), Some(0))
        );
        s.forget_request("h1").await.unwrap();
        assert!(
            s.request("h1").await.unwrap().is_some(),
            "a final record stays"
        );
        assert_eq!(s.request("h2").await.unwrap(), None);
    });
}

#[test]
fn a_url_that_is_neither_is_refused_and_passwords_are_not_shown() {
    let e = rt()
        .block_on(Store::open("mysql://x"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("sqlite:PATH or postgres://"), "{e}");
    assert_eq!(
        shown("postgres://relay:hunter2@db:5432/relay"),
        "postgres://relay:REDACTED@db:5432/relay"
    );
}

#[test]
fn beginning_records_and_claims_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = sqlite(&dir).await;
        let a = NewRequest {
            sha256: "ra",
            username: "alice",
            cert_sha1: "c",
            challenge_id: "ch",
        };
        assert_eq!(s.begin(&a, 100, 1).await.unwrap(), Begun::New);
        match s.begin(&a, 100, 2).await.unwrap() {
            Begun::Seen(r) => assert_eq!(r.state, "in_progress"),
            other => panic!("{other:?}"),
        }
        // Another request with the same challenge: refused, and nothing of it recorded.
        let b = NewRequest { sha256: "rb", ..a };
        assert_eq!(s.begin(&b, 100, 3).await.unwrap(), Begun::ChallengeUsed);
        assert_eq!(s.request("rb").await.unwrap(), None);
        // A final outcome is not overwritten.
        assert!(s
            .finish_request("ra", "final", "registered", Some(0), "ok", 4)
            .await
            .unwrap());
        assert!(!s
            .finish_request("ra", "unknown", "unknown", None, "x", 5)
            .await
            .unwrap());
        assert_eq!(
            s.request("ra").await.unwrap().unwrap().outcome.as_deref(),
            Some("registered")
        );
    });
}
