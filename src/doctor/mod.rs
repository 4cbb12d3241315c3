//! `tokenroll doctor`: one desk's diagnosis, a check at a time — the configuration, the PKCS#11
//! modules, pcscd and its readers, the tokens and their PINs, the server or relay (name, TCP,
//! TLS, clock, session) and the agent (running, tray, autostart). Each check says OK, WARN, FAIL
//! or SKIP, what it found, and what to do. Nothing is registered and no secret is shown; a login
//! is made only with credentials the configuration already holds (no one is asked).
//! The station's preflight runs the clock and login checks from here.
//!
//! Owns: the checks' model, their order and their verdicts. Does not own: printing or exit codes
//! (see `cli::doctor`), how a module loads, a certificate is verified or a login is made (see
//! `token`, `api`, `enroll`).

mod desk;
mod local;
mod net;

pub use net::{clock_check, login_check};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Skip,
    Warn,
    Fail,
}

/// One finding: `detail` is what was found, `fix` what to do (empty when there is nothing to do).
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    pub fix: String,
}

impl Check {
    pub fn new(name: &str, status: Status, detail: impl Into<String>, fix: &str) -> Self {
        Check {
            name: name.to_string(),
            status,
            detail: detail.into(),
            fix: if status == Status::Ok {
                String::new()
            } else {
                fix.to_string()
            },
        }
    }

    pub fn ok(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, detail, "")
    }

    pub fn skip(name: &str, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Skip, detail, "")
    }

    /// A check as one line for a person (its exit escapes it: see `text`).
    pub fn line(&self) -> String {
        let status = match self.status {
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        if self.fix.is_empty() {
            format!("{status} {}: {}", self.name, self.detail)
        } else {
            format!("{status} {}: {} — {}", self.name, self.detail, self.fix)
        }
    }
}

/// The whole diagnosis, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// What the doctor looks at, resolved once by the command line.
pub struct Inputs<'a> {
    /// Every layer of the configuration, or why one could not be read.
    pub layers: Result<crate::config::Layers, crate::config::ConfigError>,
    /// The flags and variables alone: what the later checks use when the files cannot be merged.
    pub flags_and_env: crate::config::RawConfig,
    pub env: &'a crate::secret::EnvSecrets,
    pub paths: &'a crate::paths::Paths,
    /// `PCSCLITE_CSOCK_NAME`, when set: a private pcscd's socket.
    pub pcsc_socket: Option<std::path::PathBuf>,
}

/// Runs every check in order; one that fails never stops the later ones. The configuration is
/// merged and the login resolved first, while this is the process's one thread (a login may take
/// a variable out of the environment); then the modules are loaded; then the network is asked,
/// on a runtime that is shut down with a bound, so a lookup that hangs cannot hold the command.
pub fn run(inputs: Inputs<'_>) -> Report {
    let merged = match &inputs.layers {
        Ok(l) => l.merge(),
        Err(e) => Err(crate::config::ConfigError(e.to_string())),
    };
    let mut checks = desk::config_checks(&inputs.layers, &merged);
    let raw = merged.unwrap_or(inputs.flags_and_env);
    let session = net::session_plan(&raw, inputs.env);
    checks.extend(local::checks(&raw, inputs.pcsc_socket.as_deref()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    checks.extend(rt.block_on(net::checks(&raw, inputs.env, session)));
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    checks.extend(desk::agent_checks(inputs.paths));
    Report {
        ok: checks.iter().all(|c| c.status != Status::Fail),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_shows_the_fix_only_when_there_is_one_and_stays_on_one_line() {
        let ok = Check::new("tls", Status::Ok, "fine", "never shown");
        assert_eq!(ok.line(), "OK   tls: fine");
        let bad = Check::new("token", Status::Fail, "label 'a\nb'", "unblock it");
        assert_eq!(
            crate::text::plain(&bad.line()),
            "FAIL token: label 'a\\x0ab' — unblock it"
        );
        let json = serde_json::to_value(&bad).unwrap();
        assert_eq!(json["status"], "fail");
        assert_eq!(json["fix"], "unblock it");
    }
}
