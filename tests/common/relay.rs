//! The relay under test: `tokenroll relay` started against a simulator, with an organisation CA
//! made here (its key kept, to issue users' certificates), its audit lines (stdout) and log
//! (stderr) in files; and a small HTTP client for the protocol.

use super::*;
use tokenroll::relay::soft::SoftKey;

/// A running relay.
pub struct Relay {
    pub child: Child,
    /// `http(s)://127.0.0.1:PORT`.
    pub url: String,
    pub config: PathBuf,
    pub audit: PathBuf,
    pub log: PathBuf,
    pub metrics: Option<String>,
}

/// What a relay is started with.
pub struct RelaySetup {
    /// Extra config lines.
    pub extra: String,
    /// The database URL; default a SQLite file in the environment.
    pub database: Option<String>,
    /// With a metrics listener.
    pub metrics: bool,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The public URL statements must name; default the relay's own address.
    pub public_url: Option<String>,
    /// A fixed port (for a restart on the same address); default a free one.
    pub port: Option<u16>,
    /// CENTAGATE's origin; default the simulator's.
    pub server: Option<String>,
    /// Log at trace level (for the secret scans).
    pub trace: bool,
}

impl Default for RelaySetup {
    fn default() -> Self {
        Self {
            extra: String::new(),
            database: None,
            metrics: true,
            tls: None,
            public_url: None,
            port: None,
            server: None,
            trace: false,
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The organisation's CA (written to `org-ca.pem`), for the relay's `org_ca` and the
/// simulator's `--trust`.
pub fn org_ca(env: &TestEnv) -> (SoftKey, PathBuf) {
    let ca = SoftKey::ca("Acme Users CA");
    let p = env.path("org-ca.pem");
    std::fs::write(&p, ca.cert_pem()).unwrap();
    (ca, p)
}

impl Relay {
    /// Starts `tokenroll relay` for `sim` with `setup`; waits until it listens.
    pub fn start(env: &TestEnv, sim: &Sim, org_ca: &Path, setup: RelaySetup) -> Relay {
        let n = std::fs::read_dir(env.dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("relay-"))
            })
            .count();
        let port = setup.port.unwrap_or_else(free_port);
        let scheme = if setup.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let database = setup
            .database
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", env.path("relay.db").display()));
        let metrics_port = free_port();
        let mut text = format!(
            "listen = \"127.0.0.1:{port}\"\npublic_url = \"{}\"\norg_ca = \"{}\"\n\
             database = \"{database}\"\nserver = \"{}\"\nca_file = \"{}\"\nadmin = \"{ADMIN}\"\n\
             login = \"password\"\napp_key = \"{APP_KEY}\"\ntimeout = 5\nconnect_timeout = 2\n",
            setup.public_url.clone().unwrap_or_else(|| url.clone()),
            org_ca.display(),
            setup.server.as_deref().unwrap_or(&sim.origin),
            sim.ca.display(),
        );
        if setup.metrics {
            text.push_str(&format!("metrics_listen = \"127.0.0.1:{metrics_port}\"\n"));
        }
        if let Some((c, k)) = &setup.tls {
            text.push_str(&format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                c.display(),
                k.display()
            ));
        }
        text.push_str(&setup.extra);
        let config = env.path(&format!("relay-{n}.toml"));
        std::fs::write(&config, text).unwrap();
        let audit = env.path(&format!("relay-{n}.audit.jsonl"));
        let log = env.path(&format!("relay-{n}.log"));
        let child = env
            .cmd()
            .args(["relay", "--config"])
            .arg(&config)
            .env("TOKENROLL_APP_SECRET", APP_SECRET)
            .env("TOKENROLL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", if setup.trace { "trace" } else { "info" })
            .stdout(std::fs::File::create(&audit).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut relay = Relay {
            child,
            url,
            config,
            audit,
            log,
            metrics: setup
                .metrics
                .then(|| format!("http://127.0.0.1:{metrics_port}/metrics")),
        };
        let t = Instant::now();
        while !relay.log_text().contains("relay listening") {
            if let Some(s) = relay.child.try_wait().unwrap() {
                panic!("the relay exited ({s}): {}", relay.log_text());
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the relay did not start: {}",
                relay.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        relay
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The audit trail's first `n` lines, waiting for them (a line is written just after its
    /// answer is sent).
    pub fn audit_wait(&self, n: usize) -> Vec<serde_json::Value> {
        let t = Instant::now();
        loop {
            let lines = self.audit_lines();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{} audit lines, not {n}: {lines:?}",
                lines.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The audit trail's JSON lines so far.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit line is JSON"))
            .collect()
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child, "the relay", 15)
    }

    /// SIGKILL: no graceful anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// An HTTP answer: status, Retry-After, JSON body (or text as a string).
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: serde_json::Value,
    pub text: String,
}

/// A blocking HTTP client for the tests (reqwest on a private runtime), trusting `ca` if given.
pub struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Client {
    pub fn new(ca: Option<&Path>) -> Self {
        let mut b = reqwest::Client::builder().no_proxy();
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).unwrap();
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        Self {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: b.build().unwrap(),
        }
    }

    fn send(&self, req: reqwest::RequestBuilder) -> Http {
        self.rt.block_on(async {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let text = r.text().await.unwrap();
            let body =
                serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text.clone()));
            Http {
                status,
                retry_after,
                body,
                text,
            }
        })
    }

    pub fn get(&self, url: &str) -> Http {
        self.send(self.http.get(url))
    }

    pub fn post(&self, url: &str, body: Vec<u8>) -> Http {
        self.send(
            self.http
                .post(url)
                .header("content-type", "application/json")
                .body(body),
        )
    }

    /// A challenge for `username` from the relay at `url`.
    pub fn challenge(&self, url: &str, username: &str) -> serde_json::Value {
        let a = self.post(
            &format!("{url}/v1/challenge"),
            serde_json::to_vec(&serde_json::json!({ "username": username })).unwrap(),
        );
        assert_eq!(a.status, 200, "{a:?}");
        a.body
    }

    /// A whole enrollment by `key` for `username`: challenge, statement, signature, POST.
    pub fn enroll(&self, url: &str, key: &SoftKey, username: &str) -> Http {
        let c = self.challenge(url, username);
        let body = key.enroll_body(
            c["relay"].as_str().unwrap(),
            username,
            c["challenge"].as_str().unwrap(),
        );
        self.post(&format!("{url}/v1/enroll"), body)
    }
}
