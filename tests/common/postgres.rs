//! A private PostgreSQL cluster for the tests: one per test binary, started on first use on a
//! free loopback port in a folder of its own, and a fresh database per test. The cluster stops
//! (and its folder goes) when the test binary exits: a watcher shell started beside it waits for
//! this process to end. `initdb` refuses root, so as root it runs as the `postgres` user.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() == 0 }
}

fn as_cluster_user(cmd: &str, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(format!("{BIN}/{cmd}"))
            .args(args);
        c
    } else {
        let mut c = Command::new(format!("{BIN}/{cmd}"));
        c.args(args);
        c
    }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// The watcher shell outlives this process by design: it is what stops the cluster after it.
#[allow(clippy::zombie_processes)]
fn start() -> Cluster {
    assert!(
        std::path::Path::new(&format!("{BIN}/initdb")).exists(),
        "PostgreSQL 15 is not installed (apt-get install postgresql)"
    );
    let dir = PathBuf::from(format!("/tmp/tokenroll-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display().to_string();
    if is_root() {
        let o = Command::new("chown")
            .args(["postgres:postgres", &d])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "chown: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let data = format!("{d}/data");
    let o = as_cluster_user("initdb", &["-D", &data, "-A", "trust", "-U", "postgres"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let port = free_port();
    let o = as_cluster_user(
        "pg_ctl",
        &[
            "-D",
            &data,
            "-o",
            &format!("-p {port} -k {d} -c listen_addresses=127.0.0.1 -c fsync=on"),
            "-l",
            &format!("{d}/log"),
            "-w",
            "start",
        ],
    )
    .output()
    .unwrap();
    assert!(
        o.status.success(),
        "pg_ctl start: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Stops the cluster and removes its folder once this test binary is gone.
    let stop = as_cluster_user("pg_ctl", &["-D", &data, "-m", "immediate", "stop"]);
    let stop: Vec<String> = std::iter::once(stop.get_program())
        .chain(stop.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {} 2>/dev/null; do sleep 0.5; done; {} >/dev/null 2>&1; rm -rf '{d}'",
            std::process::id(),
            stop.join(" ")
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Cluster { port, dir }
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// A fresh, empty database on this binary's cluster; its URL.
pub fn fresh_database() -> String {
    let c = CLUSTER.get_or_init(start);
    let name = format!(
        "t{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let o = Command::new(format!("{BIN}/createdb"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &c.port.to_string(),
            "-U",
            "postgres",
            &name,
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "createdb: {} (cluster in {})",
        String::from_utf8_lossy(&o.stderr),
        c.dir.display()
    );
    format!("postgres://postgres@127.0.0.1:{}/{name}", c.port)
}
