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
fn a_given_back_request_and_claim_can_be_made_again() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = sqlite(&dir).await;
        let r1 = NewRequest {
            sha256: "r1",
            username: "alice",
            cert_sha1: "c",
            challenge_id: "c1",
        };
        let r2 = NewRequest { sha256: "r2", ..r1 };
        assert_eq!(s.begin(&r1, 10, 0).await.unwrap(), Begun::New);
        assert_eq!(s.begin(&r2, 10, 1).await.unwrap(), Begun::ChallengeUsed);
        s.give_back("c1", "r2").await.unwrap();
        assert_eq!(
            s.begin(&r2, 10, 1).await.unwrap(),
            Begun::ChallengeUsed,
            "only its own claimant gives a claim back"
        );
        s.give_back("c1", "r1").await.unwrap();
        assert_eq!(s.request("r1").await.unwrap(), None, "the record went too");
        assert_eq!(s.begin(&r2, 10, 2).await.unwrap(), Begun::New);
        assert_eq!(s.forget_claims_before(11).await.unwrap(), 1);
    });
}

#[test]
fn rate_counts_and_request_records_read_back() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let s = sqlite(&dir).await;
        for n in 1..=3 {
            assert_eq!(
                s.hits(&[("addr:127.0.0.1", 60_000), ("user:alice", 60_000)])
                    .await
                    .unwrap(),
                vec![n, n]
            );
        }
        assert_eq!(
            s.hits(&[("addr:127.0.0.1", 120_000)]).await.unwrap(),
            vec![1],
            "a new window"
        );
        let new = NewRequest {
            sha256: "h1",
            username: "alice",
            cert_sha1: "c1",
            challenge_id: "ch1",
        };
        assert_eq!(s.begin(&new, 100, 5).await.unwrap(), Begun::New);
        assert_eq!(s.unsettled(5).await.unwrap(), vec![], "not stale yet");
        assert_eq!(s.unsettled(6).await.unwrap()[0].cert_sha1, "c1", "stale");
        assert_eq!(
            s.unsettled_one("h1", 6).await.unwrap().unwrap().sha256,
            "h1"
        );
        s.finish_request("h1", "final", "registered", Some(0), "ok", 7)
            .await
            .unwrap();
        let r = s.request("h1").await.unwrap().unwrap();
        assert_eq!(
            (r.state.as_str(), r.outcome.as_deref(), r.code),
            ("final", Some("registered"), Some(0))
        );
        s.give_back("ch1", "h1").await.unwrap();
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
