//! What the station tells its face as tokens move through their lanes: the `--jsonl` events
//! (one JSON object per line on stdout, each with `"event"` and `"time"`), the terminal UI's
//! updates and the headless log lines, all from one type. The names and fields are part of the
//! command line's contract (README: "The station's events").
//!
//! Owns: the events, the run's summary and the face trait (what the station shows and asks).
//! Does not own: drawing or dialogs (the faces: `tui`, `headless`).

use super::report::Row;
use crate::secret::Pin;
use crate::ui::dialogs::{Cancel, PinRequest};
use serde::Serialize;

/// A token as events name it (`reader`, `token_label`, `token_serial`): never by a reader's
/// index.
pub use crate::agent::state::TokenKey as TokenName;

/// The slowest phase on average over the tokens that went through it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Slowest {
    pub phase: String,
    pub seconds: f64,
}

/// The run's counts (over every row of the report, earlier runs of the batch included) and pace
/// (this process's).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub registered: usize,
    pub rejected: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Batch rows not settled (never inserted, or left when the run was stopped).
    pub unsettled: usize,
    pub tokens_per_hour: f64,
    pub slowest_phase: Option<Slowest>,
    /// How long this process ran, in seconds.
    pub seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A token arrived; `username` and `line` when a batch row was given to it.
    Seen {
        time: String,
        #[serde(flatten)]
        token: TokenName,
        username: Option<String>,
        line: Option<u64>,
    },
    /// Its lane waits for the PIN (typed, or on the reader's PIN pad).
    WaitingPin {
        time: String,
        #[serde(flatten)]
        token: TokenName,
        username: String,
    },
    Signing {
        time: String,
        #[serde(flatten)]
        token: TokenName,
        username: String,
    },
    Registering {
        time: String,
        #[serde(flatten)]
        token: TokenName,
        username: String,
    },
    /// The token's report row (the same fields as the CSV).
    Done {
        #[serde(flatten)]
        row: Row,
    },
    /// The token left before its lane finished: nothing is reported for it, and its row waits
    /// for it again.
    Removed {
        time: String,
        #[serde(flatten)]
        token: TokenName,
        username: Option<String>,
    },
    /// The admin session needs the operator (a login with a typed password): lanes wait.
    Locked {
        time: String,
        admin: String,
    },
    Unlocked {
        time: String,
        admin: String,
    },
    /// A line for the log (warnings, the preflight's results).
    Log {
        time: String,
        message: String,
    },
    Summary {
        time: String,
        #[serde(flatten)]
        summary: Summary,
    },
}

/// Now as RFC 3339 UTC to the millisecond.
pub fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = der::DateTime::from_unix_duration(std::time::Duration::from_secs(d.as_secs()))
        .map(|t| t.to_string())
        .unwrap_or_default();
    // "2026-12-03T10:00:00Z" → "2026-12-03T10:00:00.123Z"
    match secs.strip_suffix('Z') {
        Some(s) => format!("{s}.{:03}Z", d.subsec_millis()),
        None => secs,
    }
}

/// What the station asks the operator before an enrollment, in interactive faces.
#[derive(Clone, Debug)]
pub struct Confirm {
    pub token: TokenName,
    pub username: String,
    pub subject: String,
    pub cert_serial: String,
}

/// The station's face: shows events and asks the operator. Called from lanes (blocking
/// threads) as well as the owner; an implementation hands work to its own thread.
pub trait Face: Send + Sync + 'static {
    fn event(&self, event: &Event);
    /// The token's PIN, typed by its holder. `Ok(None)`: cancelled.
    fn pin(&self, req: &PinRequest, cancel: &Cancel) -> Result<Option<Pin>, String>;
    /// The username for a token, typed or scanned. `Ok(None)`: cancelled.
    fn user(
        &self,
        token: &TokenName,
        subject: &str,
        cancel: &Cancel,
    ) -> Result<Option<String>, String>;
    /// Whether to go on with this enrollment (interactive faces ask; headless goes on).
    fn confirm(&self, c: &Confirm, cancel: &Cancel) -> Result<bool, String>;
    /// Whether to unbind `user`'s other certificate and register this one (`--on-bound ask`).
    fn replace_bound(&self, user: &str, other: &str, cancel: &Cancel) -> Result<bool, String>;
    /// The admin's password for a login, when none is stored (the station is locked meanwhile).
    fn password(
        &self,
        admin: &str,
        cancel: &Cancel,
    ) -> Result<Option<crate::secret::AdminPassword>, String>;
    /// The PIN of the operator's own token, for a token login.
    fn admin_pin(
        &self,
        admin: &str,
        token: &str,
        note: Option<&str>,
        cancel: &Cancel,
    ) -> Result<Option<Pin>, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_name_time_and_flat_fields() {
        let token = TokenName {
            reader: "r".into(),
            label: "alice".into(),
            serial: "01".into(),
        };
        let v = serde_json::to_value(Event::Seen {
            time: now(),
            token,
            username: Some("alice".into()),
            line: Some(2),
        })
        .unwrap();
        assert_eq!(v["event"], "seen");
        assert_eq!(v["token_serial"], "01");
        assert_eq!(v["line"], 2);
        let t = v["time"].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 24, "{t}");
        let v = serde_json::to_value(Event::Done {
            row: Row::default(),
        })
        .unwrap();
        assert_eq!(v["event"], "done");
        assert!(v.get("cert_sha256").is_some() && v.get("seconds").is_some());
    }
}
