//! The terminal UI as an operator uses it, driven in tmux (`send-keys`, `capture-pane`) on an
//! 80×24 terminal: a token arrives, the username is typed, the enrollment confirmed, the PIN typed
//! in the masked field, the result read off the screen, and `q` quits.

use super::*;

/// A tmux server of the test's own, its one window running `script`.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(env: &TestEnv, script: &std::path::Path) -> Self {
        let socket = env.path("tmux.sock");
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["new-session", "-d", "-x", "80", "-y", "24"])
            .arg(script)
            // CI has no terminal of its own: tmux is told what its clients are.
            .env("TERM", "xterm-256color")
            .output()
            .expect("tmux is installed");
        assert!(out.status.success(), "{}", stderr(&out));
        Tmux { socket }
    }

    fn keys(&self, keys: &[&str]) {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("send-keys")
            .args(keys)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }

    /// The screen as text (`escapes`: with its colours, for the README's screenshot).
    fn screen(&self, escapes: bool) -> String {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(["capture-pane", "-p"]);
        if escapes {
            c.arg("-e");
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout).into_owned()
    }

    /// Waits up to 30 s for `text` on the screen.
    fn wait_for(&self, text: &str) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen(false);
            if s.contains(text) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no '{text}' on:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn running(&self) -> bool {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("has-session")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn the_terminal_ui_enrolls_a_token_with_a_typed_username_and_pin() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    let cert = token(&env, "alice", "Alice Example");
    // The station as the operator starts it: no batch, usernames typed, PINs typed.
    let script = env.path("station.sh");
    let cmd = env.cmd();
    let mut text = String::from("#!/bin/sh\n");
    for (k, v) in cmd.get_envs() {
        if let (k, Some(v)) = (k.to_string_lossy(), v) {
            text.push_str(&format!("export {k}='{}'\n", v.to_string_lossy()));
        }
    }
    text.push_str(&format!(
        "export TOKENROLL_AUTH_TOKEN='{AUTH_TOKEN}' TOKENROLL_SECRET_CODE='{SECRET_CODE}' \
         TOKENROLL_POLL_MS=100 XDG_STATE_HOME='{}' TERM=xterm-256color\n\
         exec '{}' station --server '{}' --admin {ADMIN} --ca-file '{}' --report '{}' \
         2>'{}'\n",
        env.path("state").display(),
        env!("CARGO_BIN_EXE_tokenroll"),
        sim.origin,
        sim.ca.display(),
        env.path("report.csv").display(),
        env.path("station.err").display(),
    ));
    std::fs::write(&script, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
    let tmux = Tmux::start(&env, &script);
    let s = tmux.wait_for("Username for token 'alice'");
    assert!(
        s.contains("OK   login: the session of helpdesk is alive"),
        "{s}"
    );
    tmux.keys(&["user1", "Enter"]);
    let s = tmux.wait_for("Enroll this token?");
    assert!(
        s.contains("user:        user1") && s.contains("CN=Alice Example"),
        "{s}"
    );
    tmux.keys(&["Enter"]);
    tmux.wait_for("PIN of token 'alice'");
    tmux.keys(&[PIN]);
    let s = tmux.wait_for("••••••");
    assert!(!s.contains(PIN), "the PIN is masked:\n{s}");
    // This screen is the README's screenshot (rendered by ImageMagick, see the README).
    if let Ok(dir) = std::env::var("TOKENROLL_SCREENSHOT_DIR") {
        std::fs::write(std::path::Path::new(&dir).join("station.txt"), &s).unwrap();
    }
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("no batch · 1 registered");
    assert!(s.contains("registered user1"), "{s}");
    assert!(!s.contains(PIN) && !s.contains(AUTH_TOKEN));
    // A second token for the same user: 22027, and the UI asks (--on-bound ask, its default);
    // y replaces the first token's binding.
    let second = token(&env, "alice2", "Alice Two");
    tmux.wait_for("Username for token 'alice2'");
    tmux.keys(&["user1", "Enter"]);
    tmux.wait_for("Enroll this token?");
    tmux.keys(&["Enter"]);
    tmux.wait_for("PIN of token 'alice2'");
    tmux.keys(&[PIN, "Enter"]);
    let s = tmux.wait_for("user1 is bound to another token");
    assert!(
        s.contains("CN=Alice Example"),
        "the binding it would replace: {s}"
    );
    tmux.keys(&["y"]);
    tmux.wait_for("no batch · 2 registered");
    tmux.keys(&["q"]);
    let t = Instant::now();
    while tmux.running() {
        assert!(t.elapsed() < Duration::from_secs(10), "q did not quit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rows = report(&env);
    let outcomes: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["token_label"].as_str(),
                r["username"].as_str(),
                r["outcome"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("alice", "user1", "registered"),
            ("alice2", "user1", "registered")
        ]
    );
    assert_eq!(
        sim.all_records()
            .iter()
            .filter(|r| r["unbind"] == true)
            .count(),
        1
    );
    let certs = [("Alice Example", cert), ("Alice Two", second)]
        .into_iter()
        .collect();
    let regs = verified_registrations(&env, &sim, &certs);
    assert_eq!(
        regs.len(),
        3,
        "the first, the refused one (22027), the replacement"
    );
    assert_eq!(
        regs[2],
        ("user1".to_string(), "CN=Alice Two,O=Acme".to_string())
    );
    let err = std::fs::read_to_string(env.path("station.err")).unwrap();
    assert!(
        err.contains("summary: 2 registered"),
        "the summary stays on the terminal: {err}"
    );
}
