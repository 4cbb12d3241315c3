//! `TestEnv`: a fresh SoftHSM2 token directory per test, the real tokenroll binary with a clean
//! environment, a simulator child process, and the openssl cross-checks.
#![allow(dead_code)]

mod agent;
#[allow(unused_imports)] // not every test binary runs the agent
pub use agent::*;
pub mod postgres;
pub mod proxy;
pub mod relay;
pub mod tls;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PIN: &str = "246810";
pub const SO_PIN: &str = "13579111";
pub const AUTH_TOKEN: &str = "AT-secret-7f3a9c";
pub const SECRET_CODE: &str = "SC-secret-51d2e8";
pub const ADMIN: &str = "helpdesk";
/// The simulator's App and the admin's password, for admin logins.
pub const APP_KEY: &str = "IK-test";
pub const APP_SECRET: &str = "SK-secret-0b7d21";
pub const ADMIN_PASSWORD: &str = "PW-secret-9c44e0";

/// The first of `paths` that exists; a missing one fails the suite rather than skipping it.
fn installed(paths: &[&str], missing: &str) -> PathBuf {
    paths
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{missing}"))
}

pub fn softhsm_module() -> PathBuf {
    installed(
        &[
            "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
            "/usr/lib/softhsm/libsofthsm2.so",
            "/usr/lib64/softhsm/libsofthsm2.so",
        ],
        "SoftHSM2 is not installed (apt-get install softhsm2)",
    )
}

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    sims: Vec<Child>,
}

pub struct Sim {
    pub origin: String,
    pub ca: PathBuf,
    pub record: PathBuf,
}

impl Sim {
    /// Every request the simulator recorded.
    pub fn all_records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line is JSON"))
            .collect()
    }

    /// The registrations (PUTs) among them.
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.all_records()
            .into_iter()
            .filter(|r| r["method"] == "PUT" && r["bound_list"] != true)
            .collect()
    }
}

impl TestEnv {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tokenroll-test-")
            .tempdir()
            .unwrap();
        let conf = tokenroll::demo::softhsm_conf(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        Self {
            dir,
            conf,
            sims: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary with only the variables a test means to give it.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tokenroll"));
        for (k, _) in std::env::vars() {
            if k.starts_with("TOKENROLL_") || k == "RUST_LOG" || k == "XDG_CONFIG_HOME" {
                c.env_remove(k);
            }
        }
        c.env("SOFTHSM2_CONF", &self.conf)
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("home/.config"))
            .env("TOKENROLL_MODULE", softhsm_module())
            .env("TOKENROLL_PIN", PIN)
            .env("TOKENROLL_SO_PIN", SO_PIN)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `tokenroll sign` of `challenge` into the file `out` with the test PIN; `select` chooses the pair.
    pub fn sign_to(&self, select: &[&str], challenge: &str, out: &Path) -> Output {
        let mut c = self.cmd();
        c.arg("sign")
            .args(select)
            .args([
                "--pin-env",
                "TOKENROLL_PIN",
                "--challenge",
                challenge,
                "--out",
            ])
            .arg(out);
        c.output().unwrap()
    }

    /// Initialises a token (first call per label) and adds a key pair with a certificate.
    pub fn provision(
        &self,
        label: &str,
        init: bool,
        key_type: &str,
        id: &str,
        subject: &str,
        extra: &[&str],
    ) -> PathBuf {
        let cert = self.path(&format!("{label}-{id}.pem"));
        let mut args = vec![
            "provision",
            "--label",
            label,
            "--key-type",
            key_type,
            "--id",
            id,
            "--subject",
            subject,
            "--cert-out",
        ];
        let cert_s = cert.display().to_string();
        args.push(&cert_s);
        if init {
            args.push("--init");
        }
        args.extend_from_slice(extra);
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "provision failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cert
    }

    /// A token "alice" with one RSA-2048 pair; returns its certificate's PEM path.
    pub fn alice(&self) -> PathBuf {
        self.provision(
            "alice",
            true,
            "rsa2048",
            "01",
            "CN=Alice Example,O=Acme",
            &[],
        )
    }

    pub fn users_file(&self) -> PathBuf {
        let p = self.path("users.toml");
        std::fs::write(
            &p,
            "[[user]]\nname = \"alice\"\nstate = \"active\"\n\n[[user]]\nname = \"bob\"\nstate = \"active\"\n\n\
             [[user]]\nname = \"ivan\"\nstate = \"inactive\"\n\n[[user]]\nname = \"bella\"\nstate = \"bound\"\n\n\
             [[user]]\nname = \"user1\"\n[[user]]\nname = \"user2\"\n[[user]]\nname = \"user3\"\n\
             [[user]]\nname = \"user4\"\n[[user]]\nname = \"user5\"\n[[user]]\nname = \"user6\"\n\
             [[user]]\nname = \"carol@example.com\"\n\n\
             [[admin]]\nname = \"helpdesk\"\npassword = \"PW-secret-9c44e0\"\nrole = 2\ngroup = \"g-1\"\n",
        )
        .unwrap();
        p
    }

    /// Starts `tokenroll simulate` on a free loopback port with `extra` flags.
    pub fn simulator(&mut self, extra: &[&str]) -> Sim {
        self.simulator_with(extra, "")
    }

    /// The same, with `more_users` (TOML tables) added to the users file.
    pub fn simulator_with(&mut self, extra: &[&str], more_users: &str) -> Sim {
        let n = self.sims.len();
        let ca = self.path(&format!("sim{n}.pem"));
        let record = self.path(&format!("sim{n}.jsonl"));
        let users = self.users_file();
        if !more_users.is_empty() {
            let mut text = std::fs::read_to_string(&users).unwrap();
            text.push('\n');
            text.push_str(more_users);
            std::fs::write(&users, text).unwrap();
        }
        let mut child = self
            .cmd()
            .args([
                "simulate",
                "--listen",
                "127.0.0.1:0",
                "--admin",
                ADMIN,
                "--users",
            ])
            .arg(&users)
            .arg("--cert-out")
            .arg(&ca)
            .arg("--record")
            .arg(&record)
            .args(["--app-key", APP_KEY])
            .args(extra)
            .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
            .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
            .env("TOKENROLL_APP_SECRET", APP_SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let origin = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("simulator said {line:?}"))
            .to_string();
        self.sims.push(child);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&record).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the simulator's record is owner-only");
        }
        Sim { origin, ca, record }
    }

    /// `tokenroll agent` against `sim` with the scripted pinentry (answers from `pins.txt`, requests
    /// logged to `pinentry.log`), its state and runtime folders in this environment, polling fast
    /// (`TOKENROLL_POLL_MS`, so a test may still pass `--poll-ms`).
    pub fn agent_cmd(&self, sim: &Sim) -> Command {
        self.agent_cmd_as(sim, ADMIN)
    }

    /// As `agent_cmd`, for the CENTAGATE admin `admin`.
    pub fn agent_cmd_as(&self, sim: &Sim, admin: &str) -> Command {
        let mut c = self.agent_cmd_base();
        c.args(["--server", &sim.origin, "--admin", admin, "--ca-file"])
            .arg(&sim.ca)
            .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
            .env("TOKENROLL_SECRET_CODE", SECRET_CODE);
        c
    }

    /// `tokenroll agent` with the scripted pinentry and this environment's folders, and no
    /// destination yet.
    pub fn agent_cmd_base(&self) -> Command {
        std::fs::create_dir_all(self.path("run")).unwrap();
        let mut c = self.cmd();
        c.arg("agent")
            .arg("--pinentry")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/pinentry.sh"
            ))
            .env("TOKENROLL_POLL_MS", "100")
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("TEST_PINS", self.path("pins.txt"))
            .env("PINENTRY_LOG", self.path("pinentry.log"))
            .env("PINENTRY_ENV_LOG", self.path("pinentry.env"))
            .env("PINENTRY_PID_LOG", self.path("pinentry.pids"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    /// `tokenroll enroll --json` to `server` for `user`, the admin's secrets in the environment;
    /// no PIN source and no --ca-file, for the tests that vary those.
    pub fn enroll_base(&self, server: &str, user: &str) -> Command {
        let mut c = self.cmd();
        c.args([
            "enroll", "--server", server, "--admin", ADMIN, "--user", user, "--json",
        ])
        .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
        .env("TOKENROLL_SECRET_CODE", SECRET_CODE);
        c
    }

    /// `tokenroll enroll` against `sim` for `user`, with the admin's secrets in the environment.
    pub fn enroll(&self, sim: &Sim, user: &str, extra: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args([
            "enroll",
            "--server",
            &sim.origin,
            "--admin",
            ADMIN,
            "--user",
            user,
            "--pin-env",
            "TOKENROLL_PIN",
        ])
        .arg("--ca-file")
        .arg(&sim.ca)
        .args(extra)
        .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
        .env("TOKENROLL_SECRET_CODE", SECRET_CODE);
        c.output().unwrap()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        for c in &mut self.sims {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn json(o: &Output) -> serde_json::Value {
    let text = stdout(o);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no JSON on stdout; stderr: {}", stderr(o)));
    assert!(
        lines.next().is_none(),
        "more than one line on stdout: {text}"
    );
    serde_json::from_str(first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"))
}

/// `openssl cms -verify` with the certificate as trust anchor; returns the signed content.
pub fn openssl_verify(p7: &Path, ca: &Path) -> Vec<u8> {
    let content = p7.with_extension("content");
    let out = Command::new("openssl")
        .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
        .arg(p7)
        .arg("-CAfile")
        .arg(ca)
        .arg("-out")
        .arg(&content)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl cms -verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(content).unwrap()
}

/// `openssl cms -cmsout -print`: the structure as openssl reads it.
/// The certificate's fingerprint as `openssl x509 -fingerprint` computes it (`alg`: "-sha1",
/// "-sha256"), hex without colons.
pub fn openssl_fingerprint(cert: &Path, alg: &str) -> String {
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", alg, "-in"])
        .arg(cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl x509: {}", stderr(&o));
    stdout(&o)
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
}

pub fn openssl_print(p7: &Path) -> String {
    let out = Command::new("openssl")
        .args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"])
        .arg(p7)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl cms -print failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The digest algorithm names openssl prints for a SignerInfo.
pub fn openssl_digest_name(alg: &str) -> &'static str {
    match alg {
        "sha1" => "sha1",
        "sha256" => "sha256",
        "sha384" => "sha384",
        "sha512" => "sha512",
        _ => panic!("{alg}"),
    }
}

/// OpenSC's PKCS#11 module, through which the virtual card is reached.
pub fn opensc_module() -> PathBuf {
    installed(
        &[
            "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
            "/usr/lib/aarch64-linux-gnu/opensc-pkcs11.so",
            "/usr/lib64/opensc-pkcs11.so",
        ],
        "OpenSC is not installed (apt-get install opensc-pkcs11)",
    )
}

pub fn p11_kit_proxy() -> PathBuf {
    installed(
        &[
            "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so",
            "/usr/lib/aarch64-linux-gnu/p11-kit-proxy.so",
        ],
        "p11-kit is not installed (apt-get install p11-kit)",
    )
}

/// The virtual smart-card stack of `tests/vcard/vcard.sh` (a private pcscd, the vpcd reader, a
/// software OpenPGP card), one per test; stopped on drop.
pub struct VCard {
    pub dir: PathBuf,
    /// pcscd's socket, for PCSCLITE_CSOCK_NAME.
    pub socket: PathBuf,
}

pub const CARD_PIN: &str = "123456";

impl VCard {
    fn script(args: &[&str]) {
        let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vcard/vcard.sh"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vcard.sh {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the stack with the card out of the reader.
    pub fn up(env: &TestEnv) -> VCard {
        let dir = env.path("vcard");
        let card = VCard {
            socket: dir.join("pcscd.comm"),
            dir,
        };
        Self::script(&["up", card.dir.to_str().unwrap()]);
        card
    }

    /// Up, with a key and a certificate for `cn` / `email` on the card, and the card inserted.
    pub fn personalized(env: &TestEnv, cn: &str, email: &str) -> VCard {
        let card = Self::up(env);
        card.insert();
        Self::script(&["personalize", card.dir.to_str().unwrap(), cn, email]);
        card
    }

    pub fn insert(&self) {
        Self::script(&["insert", self.dir.to_str().unwrap()]);
    }

    pub fn remove(&self) {
        Self::script(&["remove", self.dir.to_str().unwrap()]);
    }

    /// The card will be pulled out when the next signing command reaches it.
    pub fn pull_mid_signature(&self) {
        Self::script(&["pull-mid-sign", self.dir.to_str().unwrap()]);
    }

    /// The CA that issued the card's certificate, for `openssl cms -verify`.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `cmd` pointed at this card through OpenSC.
    pub fn wire(&self, cmd: &mut Command) {
        cmd.env("TOKENROLL_MODULE", opensc_module())
            .env("PCSCLITE_CSOCK_NAME", &self.socket);
    }
}

impl Drop for VCard {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vcard/vcard.sh"))
            .args(["down", self.dir.to_str().unwrap()])
            .stdin(Stdio::null())
            .output();
    }
}

/// Every file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The test admin's cenToken, itself a secret.
pub fn cen_token() -> String {
    let secrets = tokenroll::secret::AdminSecrets {
        auth_token: tokenroll::secret::AuthToken::new(AUTH_TOKEN.into()),
        secret_code: tokenroll::secret::SecretCode::new(SECRET_CODE.into()),
    };
    tokenroll::api::cen_token(ADMIN, &secrets)
        .expose()
        .to_string()
}

/// Fails if any of `files` holds the PIN, the admin's secrets, the cenToken or one of `extra`.
pub fn assert_no_secret_in(files: &[PathBuf], extra: &[&str]) {
    let cen = cen_token();
    let mut secrets = vec![
        PIN,
        AUTH_TOKEN,
        SECRET_CODE,
        cen.as_str(),
        APP_SECRET,
        ADMIN_PASSWORD,
    ];
    secrets.extend_from_slice(extra);
    for p in files {
        let bytes = std::fs::read(p).unwrap();
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s:?} in {}",
                p.display()
            );
        }
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// SIGTERM to `child` (a test's own, not reaped yet), and its exit status; fails naming `what`
/// when it has not stopped within `secs`.
pub fn terminate(child: &mut Child, what: &str, secs: u64) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child's pid; the child has not been reaped yet.
    unsafe { libc_kill(child.id() as i32, 15) };
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{what} did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
