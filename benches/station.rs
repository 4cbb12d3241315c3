//! Bench (d): the station against one-shot `tokenroll enroll` processes, in one run, on the same
//! 50 pre-made SoftHSM2 tokens. Each set gets a fresh simulator with fresh users, so no set meets
//! another's bindings: 50 one-shot processes one after another (each loads the module, logs in
//! to nothing — static secrets —, signs and registers over a fresh TLS connection); then a
//! headless station with a 50-row batch, with one lane and with two (one process: the module
//! loaded once, the session and the connection kept warm). Prints tokens per minute for each,
//! the station's time per token against the one-shot's, and two lanes' against one lane's.
//!
//! Each is measured twice in the run: with a simulator that answers at once (this machine's
//! costs alone: the station's per-token work is a few milliseconds, and with two cores shared by
//! the station, the simulator and SoftHSM2 there is little for a second lane to overlap), and
//! with one that answers each registration after 50 ms, as a CENTAGATE across a network does
//! (what lanes are for: one token's wait overlaps another's work).
//!
//! Run: `cargo bench --bench station`. `TOKENROLL_BENCH_TOKENS` sizes it (default 50).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ADMIN: &str = "bench-admin";
const AUTH_TOKEN: &str = "AT-bench";
const SECRET_CODE: &str = "SC-bench";
const PIN: &str = "246810";
const SO_PIN: &str = "13579111";

fn softhsm_module() -> PathBuf {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .expect("SoftHSM2 is installed")
}

struct Bench {
    dir: tempfile::TempDir,
    conf: PathBuf,
    module: PathBuf,
}

impl Bench {
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tokenroll"));
        for (k, _) in std::env::vars() {
            if k.starts_with("TOKENROLL_") || k == "RUST_LOG" {
                c.env_remove(k);
            }
        }
        c.env("SOFTHSM2_CONF", &self.conf)
            .env("TOKENROLL_MODULE", &self.module)
            .env("TOKENROLL_PIN", PIN)
            .env("TOKENROLL_SO_PIN", SO_PIN)
            .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
            .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A simulator whose users are `prefix-1` .. `prefix-n`; killed when dropped.
struct Sim {
    child: Child,
    origin: String,
    ca: PathBuf,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn simulator(b: &Bench, prefix: &str, n: usize, delay_ms: u64) -> Sim {
    let users = b.path(&format!("{prefix}-users.toml"));
    let text: String = (1..=n)
        .map(|i| format!("[[user]]\nname = \"{prefix}-{i}\"\nstate = \"active\"\n"))
        .collect();
    std::fs::write(&users, text).unwrap();
    let ca = b.path(&format!("{prefix}-ca.pem"));
    let mut child = b
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
        .args(["--delay-ms", &delay_ms.to_string()])
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
        .expect("the simulator says where it listens")
        .to_string();
    Sim { child, origin, ca }
}

fn check(out: std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn one_shot(b: &Bench, n: usize, delay_ms: u64) -> Duration {
    let prefix = format!("oneshot{delay_ms}");
    let sim = simulator(b, &prefix, n, delay_ms);
    let t = Instant::now();
    for i in 1..=n {
        let out = b
            .cmd()
            .args(["enroll", "--server", &sim.origin, "--admin", ADMIN])
            .args(["--user", &format!("{prefix}-{i}")])
            .args(["--token", &format!("t{i}"), "--pin-env", "TOKENROLL_PIN"])
            .arg("--ca-file")
            .arg(&sim.ca)
            .output()
            .unwrap();
        check(out, "a one-shot enroll");
    }
    t.elapsed()
}

fn station(b: &Bench, n: usize, lanes: usize, delay_ms: u64) -> Duration {
    let prefix = format!("station{lanes}-{delay_ms}");
    let sim = simulator(b, &prefix, n, delay_ms);
    let batch = b.path(&format!("{prefix}.csv"));
    let rows: String = (1..=n).map(|i| format!("{prefix}-{i}\n")).collect();
    std::fs::write(&batch, format!("username\n{rows}")).unwrap();
    let report = b.path(&format!("{prefix}-report.csv"));
    let t = Instant::now();
    let out = b
        .cmd()
        .args([
            "station",
            "--headless",
            "--server",
            &sim.origin,
            "--admin",
            ADMIN,
        ])
        .args(["--pin-env", "TOKENROLL_PIN", "--lanes", &lanes.to_string()])
        .arg("--ca-file")
        .arg(&sim.ca)
        .arg("--batch")
        .arg(&batch)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let took = t.elapsed();
    check(out, "the station");
    let registered = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .filter(|l| l.contains(",registered,"))
        .count();
    assert_eq!(registered, n, "every row registered");
    took
}

fn per_minute(n: usize, d: Duration) -> f64 {
    n as f64 * 60.0 / d.as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("TOKENROLL_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::Builder::new()
        .prefix("tokenroll-bench-station-")
        .tempdir()
        .unwrap();
    let conf = tokenroll::demo::softhsm_conf(dir.path()).unwrap();
    let b = Bench {
        dir,
        conf,
        module: softhsm_module(),
    };
    let made = Instant::now();
    for i in 1..=n {
        let out = b
            .cmd()
            .args(["provision", "--init", "--label", &format!("t{i}")])
            .args([
                "--key-type",
                "p256",
                "--subject",
                &format!("CN=Bench {i},O=tokenroll"),
            ])
            .output()
            .unwrap();
        check(out, "provision");
    }
    eprintln!("{n} tokens made in {:.1} s", made.elapsed().as_secs_f64());
    println!("{n} tokens per set; a fresh simulator and users for each set");
    for delay_ms in [0, 50] {
        let once = one_shot(&b, n, delay_ms);
        let one = station(&b, n, 1, delay_ms);
        let two = station(&b, n, 2, delay_ms);
        let row = |what: &str, d: Duration| {
            println!(
                "  {what:<28} {:>8.2} s {:>10.1} tokens/min {:>8.1} ms/token",
                d.as_secs_f64(),
                per_minute(n, d),
                d.as_secs_f64() * 1000.0 / n as f64
            )
        };
        println!("the server answers after {delay_ms} ms:");
        row("one-shot enroll processes", once);
        row("station, 1 lane", one);
        row("station, 2 lanes", two);
        let r1 = one.as_secs_f64() / once.as_secs_f64();
        let r2 = two.as_secs_f64() / one.as_secs_f64();
        let verdict = |r: f64, bound: f64| if r <= bound { "met" } else { "NOT met" };
        println!(
            "  station (1 lane) / one-shot: {r1:.2}x per token (target <= 0.5) {}",
            verdict(r1, 0.5)
        );
        println!(
            "  2 lanes / 1 lane:            {r2:.2}x (target <= 0.6) {}",
            verdict(r2, 0.6)
        );
    }
}
