//! Bench (c): enrollments through the relay against enrollments sent to the simulator directly,
//! in one run, on one machine. Concurrent clients with software P-256 keys under a bench CA;
//! through the relay each enrollment is a challenge, a signed statement and the enrollment (the
//! relay checks it, keeps its records, and registers it with the simulator under its own admin
//! session); directly it is a signed challenge registered with the simulator under static
//! secrets. Keep-alive connections; rate limits raised; durability on (SQLite WAL with
//! `synchronous = FULL`; PostgreSQL with `synchronous_commit` on); a fresh simulator and user
//! set per run. Prints enrollments per second and p50/p99 latency, and the p50 the relay adds.
//!
//! Run: `benches/relay.sh` (starts a private PostgreSQL cluster, then this), or
//! `cargo bench --bench relay` for SQLite alone. `TOKENROLL_BENCH_PG=postgres://...` names a
//! PostgreSQL server (a fresh database is made on it per run); `TOKENROLL_BENCH_N` (enrollments
//! per run, default 3000) and `TOKENROLL_BENCH_CLIENTS` (default 64) size it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenroll::relay::soft::SoftKey;

const ADMIN: &str = "bench-admin";
const APP_KEY: &str = "IK-bench";
const APP_SECRET: &str = "SK-bench";
const PASSWORD: &str = "PW-bench";

struct Run {
    label: String,
    took: Duration,
    latencies: Vec<Duration>,
    failures: usize,
}

/// One mode measured twice: one client alone (its latency is the path's own), then many at once
/// (throughput, and latency under load).
struct Measured {
    alone: Run,
    loaded: Run,
}

/// Enrollments measured with one client, before the loaded run.
const ALONE: usize = 300;

impl Run {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.took.as_secs_f64()
    }

    fn pct(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A fresh simulator trusting the bench CA, with `n` users named `{prefix}{i}`.
async fn simulator(
    ca: &SoftKey,
    prefix: &str,
    n: usize,
) -> (tokenroll::simulator::Running, tempfile::TempDir) {
    use tokenroll::secret::{AdminSecrets, AppSecret, AuthToken, SecretCode};
    let mut users = String::new();
    for i in 0..n {
        users.push_str(&format!("[[user]]\nname = \"{prefix}{i}\"\n"));
    }
    users.push_str(&format!(
        "[[admin]]\nname = \"{ADMIN}\"\npassword = \"{PASSWORD}\"\n"
    ));
    let users = tokenroll::simulator::Users::parse(&users).unwrap();
    let mut rules = tokenroll::simulator::Rules::new(
        ADMIN.into(),
        AdminSecrets {
            auth_token: AuthToken::new("AT-bench".into()),
            secret_code: SecretCode::new("SC-bench".into()),
        },
        users,
    );
    rules.sessions.app = Some((APP_KEY.into(), AppSecret::new(APP_SECRET.into())));
    rules.trust = vec![ca.cert.clone()];
    let running = tokenroll::simulator::start(tokenroll::simulator::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        rules,
        faults: Default::default(),
        record: None,
        bad_tls: None,
        tls_files: None,
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sim.pem"), &running.cert_pem).unwrap();
    (running, dir)
}

/// Runs `n` enrollments with `clients` tasks; `one(i)` does enrollment `i`.
async fn drive<F, Fut>(label: String, n: usize, clients: usize, one: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let one = Arc::new(one);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (next, one) = (next.clone(), one.clone());
        tasks.spawn(async move {
            let mut mine = (vec![], 0usize);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return mine;
                }
                let t = Instant::now();
                if one(i).await {
                    mine.0.push(t.elapsed());
                } else {
                    mine.1 += 1;
                }
            }
        });
    }
    let mut run = Run {
        label,
        took: Duration::ZERO,
        latencies: vec![],
        failures: 0,
    };
    while let Some(r) = tasks.join_next().await {
        let (l, f) = r.unwrap();
        run.latencies.extend(l);
        run.failures += f;
    }
    run.took = started.elapsed();
    run
}

/// `one(i)` for i in 0..ALONE with one client, then for ALONE..ALONE+n with `clients`.
async fn measure<F, Fut>(label: &str, n: usize, clients: usize, one: F) -> Measured
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let first = one.clone();
    let alone = drive(label.into(), ALONE, 1, first).await;
    let loaded = drive(label.into(), n, clients, move |i| one(i + ALONE)).await;
    Measured { alone, loaded }
}

/// Enrollments sent to the simulator directly (static secrets, as a desk with the admin's
/// session does).
async fn direct(ca: &SoftKey, keys: Arc<Vec<SoftKey>>, n: usize, clients: usize) -> Measured {
    use tokenroll::secret::{AdminSecrets, AuthToken, SecretCode};
    let (sim, dir) = simulator(ca, "d", n + ALONE).await;
    let opts = tokenroll::api::HttpOptions {
        ca_file: Some(dir.path().join("sim.pem")),
        connect_timeout: Duration::from_secs(5),
        timeout: Duration::from_secs(30),
        server_cert_sha256: None,
        proxy: tokenroll::api::client::Proxy::Direct,
    };
    let client = Arc::new(tokenroll::api::CentagateClient::new(&sim.origin(), opts).unwrap());
    let secrets = Arc::new(AdminSecrets {
        auth_token: AuthToken::new("AT-bench".into()),
        secret_code: SecretCode::new("SC-bench".into()),
    });
    let one = move |i: usize| {
        let (client, keys, secrets) = (client.clone(), keys.clone(), secrets.clone());
        async move {
            let reg = tokenroll::enroll::Registration {
                admin: ADMIN,
                status: tokenroll::api::TokenStatus::Pending,
                timestamp_unit: tokenroll::api::TimestampUnit::Millis,
                url_for_display: String::new(),
                journal: None,
                retries: 0,
                run: None,
            };
            let mut challenge = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut challenge);
            let pkcs7 = keys[i].sign(&challenge, tokenroll::digest::DigestAlg::Sha256);
            let body = tokenroll::enroll::register_body(
                &reg,
                &secrets,
                &format!("d{i}"),
                &pkcs7,
                tokenroll::digest::DigestAlg::Sha256,
                tokenroll::enroll::now_timestamp(tokenroll::api::TimestampUnit::Millis),
            );
            matches!(client.register(ADMIN, &body).await, Ok(a) if a.code == 0)
        }
    };
    let run = measure("direct to the simulator", n, clients, one).await;
    drop(dir);
    sim.task.abort();
    run
}

/// Enrollments through an in-process relay on `database`.
async fn through_relay(
    label: &str,
    ca: &SoftKey,
    keys: Arc<Vec<SoftKey>>,
    database: String,
    n: usize,
    clients: usize,
) -> Measured {
    let (sim, dir) = simulator(ca, "r", n + ALONE).await;
    std::fs::write(dir.path().join("org-ca.pem"), ca.cert_pem()).unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"https://relay.bench\"\norg_ca = \"{}\"\n\
         database = \"{database}\"\nserver = \"{}\"\nca_file = \"{}\"\nadmin = \"{ADMIN}\"\n\
         login = \"password\"\napp_key = \"{APP_KEY}\"\nproxy = \"none\"\n\
         rate_per_address = \"100000000/min\"\nrate_per_user = \"1000/min\"\n\
         rate_per_certificate = \"1000/min\"\ncentagate_concurrency = {clients}\n",
        dir.path().join("org-ca.pem").display(),
        sim.origin(),
        dir.path().join("sim.pem").display(),
    );
    let env = tokenroll::secret::EnvSecrets {
        app_secret: Some(tokenroll::secret::AppSecret::new(APP_SECRET.into())),
        admin_password: Some(tokenroll::secret::AdminPassword::new(PASSWORD.into())),
        ..Default::default()
    };
    let mut cfg = tokenroll::relay::config::RelayConfig::parse(
        &text,
        &env,
        &tokenroll::paths::Paths::from_env(),
    )
    .unwrap();
    let relay = Arc::new(
        tokenroll::relay::service::Relay::open(&mut cfg)
            .await
            .unwrap(),
    );
    let bound = tokenroll::relay::http::Bound::bind(&cfg).await.unwrap();
    let url = format!("http://{}", bound.public.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        tokenroll::relay::http::run(relay, &cfg, bound, async {
            let _ = stop_rx.await;
        })
        .await
    });
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let one = move |i: usize| {
        let (http, keys, url) = (http.clone(), keys.clone(), url.clone());
        async move {
            let user = format!("r{i}");
            let Ok(c) = http
                .post(format!("{url}/v1/challenge"))
                .body(serde_json::json!({ "username": user }).to_string())
                .send()
                .await
            else {
                return false;
            };
            let Ok(c) = c.json::<serde_json::Value>().await else {
                return false;
            };
            let body = keys[i].enroll_body(
                c["relay"].as_str().unwrap_or(""),
                &user,
                c["challenge"].as_str().unwrap_or(""),
            );
            let Ok(r) = http
                .post(format!("{url}/v1/enroll"))
                .body(body)
                .send()
                .await
            else {
                return false;
            };
            r.status() == 200
                && r.json::<serde_json::Value>()
                    .await
                    .is_ok_and(|v| v["outcome"] == "registered")
        }
    };
    let run = measure(&format!("through the relay ({label})"), n, clients, one).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    sim.task.abort();
    drop(dir);
    run
}

/// A fresh database on the PostgreSQL server at `server` (no database in the URL).
async fn fresh_pg(server: &str, n: usize) -> String {
    use sqlx::Connection;
    let base = server.trim_end_matches('/');
    let mut admin = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap();
    let name = format!("relay_bench_{}_{n}", std::process::id());
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{base}/{name}")
}

fn main() {
    // TOKENROLL_BENCH_TRACE=1: the relay's per-request timing (to stderr).
    if std::env::var_os("TOKENROLL_BENCH_TRACE").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter("tokenroll::relay::timing=debug")
            .with_writer(std::io::stderr)
            .init();
    }
    let n: usize = std::env::var("TOKENROLL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let clients: usize = std::env::var("TOKENROLL_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let pg = std::env::var("TOKENROLL_BENCH_PG").ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = SoftKey::ca("Bench CA");
    // Keys made before any clock starts (one per enrollment, as one token per user).
    let keys: Arc<Vec<SoftKey>> = Arc::new(
        (0..n + ALONE)
            .map(|i| ca.issue(&format!("r{i}"), None, i as u32 + 2, (-60, 3600)))
            .collect(),
    );
    let dkeys: Arc<Vec<SoftKey>> = Arc::new(
        (0..n + ALONE)
            .map(|i| ca.issue(&format!("d{i}"), None, i as u32 + 2, (-60, 3600)))
            .collect(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let runs = rt.block_on(async {
        let mut runs = vec![direct(&ca, dkeys, n, clients).await];
        let sqlite = format!("sqlite:{}", tmp.path().join("relay.db").display());
        runs.push(through_relay("SQLite", &ca, keys.clone(), sqlite, n, clients).await);
        match &pg {
            Some(server) => {
                let db = fresh_pg(server, n).await;
                runs.push(through_relay("PostgreSQL", &ca, keys, db, n, clients).await);
            }
            None => eprintln!(
                "TOKENROLL_BENCH_PG is not set: PostgreSQL skipped (benches/relay.sh sets it)"
            ),
        }
        runs
    });
    println!(
        "relay bench: {n} enrollments per run, {clients} concurrent clients, P-256, keep-alive, loopback, 2 cores shared by clients, relay, database and simulator"
    );
    println!(
        "{:<36} {:>14} {:>9} {:>9} {:>13} {:>13} {:>9}",
        "run", "enrollments/s", "p50 ms", "p99 ms", "alone p50 ms", "added p50 ms", "failures"
    );
    let base = runs[0].alone.pct(0.5);
    for (k, m) in runs.iter().enumerate() {
        let added = if k == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", ms(m.alone.pct(0.5)) - ms(base))
        };
        println!(
            "{:<36} {:>14.0} {:>9.2} {:>9.2} {:>13.2} {:>13} {:>9}",
            m.loaded.label,
            m.loaded.rate(),
            ms(m.loaded.pct(0.5)),
            ms(m.loaded.pct(0.99)),
            ms(m.alone.pct(0.5)),
            added,
            m.loaded.failures + m.alone.failures
        );
    }
    if let Some(pg) = runs.iter().find(|m| m.loaded.label.contains("PostgreSQL")) {
        let added = ms(pg.alone.pct(0.5)) - ms(base);
        println!(
            "targets: >= 500 enrollments/s with PostgreSQL: {:.0} ({}); p50 added by the relay <= 2 ms: {added:.2} ms ({})",
            pg.loaded.rate(),
            if pg.loaded.rate() >= 500.0 { "met" } else { "NOT met" },
            if added <= 2.0 { "met" } else { "NOT met" },
        );
    }
}
