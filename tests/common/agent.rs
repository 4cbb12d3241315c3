//! The agent under test: started headless against a simulator with the scripted pinentry,
//! waited on, and stopped (or killed, if a test fails first).

use super::*;

/// A running `tokenroll agent --headless` and its log.
pub struct Agent {
    pub child: Child,
    pub log: PathBuf,
}

impl Agent {
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child, "the agent", 10)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A test that fails before `stop` must not leave its agent running.
impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The scripted pinentry's answers, one per line ("CANCEL" cancels).
pub fn pins(env: &TestEnv, lines: &[&str]) -> PathBuf {
    let p = env.path("pins.txt");
    std::fs::write(
        &p,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    p
}

/// `tokenroll agent --headless` with `extra` flags; `wire` adjusts the command first.
pub fn start_agent_with(
    env: &TestEnv,
    sim: &Sim,
    extra: &[&str],
    wire: impl FnOnce(&mut Command),
) -> Agent {
    start_agent_as(env, sim, ADMIN, extra, wire)
}

/// As `start_agent_with`, for the CENTAGATE admin `admin`.
pub fn start_agent_as(
    env: &TestEnv,
    sim: &Sim,
    admin: &str,
    extra: &[&str],
    wire: impl FnOnce(&mut Command),
) -> Agent {
    let mut cmd = env.agent_cmd_as(sim, admin);
    wire(&mut cmd);
    let child = cmd
        .arg("--headless")
        .args(extra)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .spawn()
        .unwrap();
    Agent {
        child,
        log: env.path("state/tokenroll/agent.log"),
    }
}

/// Waits up to 30 s for `done`, failing with the agent's log.
pub fn wait_for(agent: &Agent, what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}; the agent's log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn start_agent(env: &TestEnv, sim: &Sim, extra: &[&str]) -> Agent {
    start_agent_with(env, sim, extra, |_| {})
}
