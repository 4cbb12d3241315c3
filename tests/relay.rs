//! The relay's store on the real databases: a private PostgreSQL cluster (a fresh database per
//! test) and SQLite files. Two stores on one database stand for two relay replicas.

mod common;
use common::*;
use tokenroll::relay::store::{NewRequest, Store};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
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
fn two_replicas_share_keys_and_a_challenge_has_one_winner() {
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
            let mut claims = tokio::task::JoinSet::new();
            for i in 0..20 {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                claims.spawn(async move {
                    store
                        .claim("challenge-1", &format!("request-{i}"), 1, 100)
                        .await
                        .unwrap()
                });
            }
            let won = claims.join_all().await;
            let winners = won.iter().filter(|w| **w).count();
            assert_eq!(winners, 1, "{url}: {won:?}");
            let new = NewRequest {
                sha256: "r",
                username: "alice",
                cert_sha1: "c",
                challenge_id: "ch",
            };
            assert_eq!(a.begin_request(&new, 1).await.unwrap(), None);
            let seen = b.begin_request(&new, 2).await.unwrap().unwrap();
            assert_eq!(
                seen.state, "in_progress",
                "{url}: the other replica sees it"
            );
            a.close().await;
            b.close().await;
        });
    }
}
