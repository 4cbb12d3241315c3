//! The station without a UI (`--headless`): events as JSON lines on stdout (`--jsonl`) or as
//! plain lines on stderr, and the questions put through pinentry (the token's PIN, a username,
//! the admin's password). Nothing is confirmed interactively; a user bound to another
//! certificate is not replaced unless `--on-bound replace` says so.
//!
//! Owns: how headless events are written — each line whole, under one lock, with untrusted text
//! escaped for the terminal. Does not own: the events (see `events`) or pinentry (see `ui`).

use super::events::{Confirm, Event, Face, TokenName};
use crate::secret::{AdminPassword, Pin};
use crate::text::plain;
use crate::ui::dialogs::{Cancel, PinDialog, PinRequest};
use std::io::Write;
use std::sync::Mutex;

pub struct Headless {
    pub jsonl: bool,
    pub dialog: Box<dyn PinDialog>,
    /// Serialises whole lines from the lanes and the loop.
    pub out: Mutex<()>,
}

/// An event as one plain line for a person reading the log.
pub fn line(e: &Event) -> String {
    let who = |t: &TokenName| format!("'{}' (serial {})", plain(&t.label), plain(&t.serial));
    match e {
        Event::Seen {
            token,
            username,
            line,
            ..
        } => match (username, line) {
            (Some(u), Some(l)) => format!("token {} seen: for {} (batch line {l})", who(token), plain(u)),
            _ => format!("token {} seen in {}", who(token), plain(&token.reader)),
        },
        Event::WaitingPin {
            token, username, ..
        } => format!("token {}: waiting for the PIN ({})", who(token), plain(username)),
        Event::Signing { token, .. } => format!("token {}: signing", who(token)),
        Event::Registering { token, .. } => format!("token {}: registering", who(token)),
        Event::Done { row } => {
            let code = row.code.map(|c| format!(" (code {c})")).unwrap_or_default();
            let tail = if row.outcome == "registered" || row.code.is_some() {
                " — remove the token"
            } else {
                ""
            };
            format!(
                "token '{}' (serial {}): {} {}{code}: {}{tail}",
                plain(&row.token_label),
                plain(&row.token_serial),
                row.outcome,
                plain(&row.username),
                plain(&row.message)
            )
        }
        Event::Removed { token, .. } => format!(
            "token {} was removed before it finished: it is not reported; insert it again",
            who(token)
        ),
        Event::Locked { admin, .. } => format!(
            "locked: the session of {} needs a new login; tokens wait",
            plain(admin)
        ),
        Event::Unlocked { admin, .. } => format!("unlocked: {} logged in again", plain(admin)),
        Event::Log { message, .. } => plain(message).into_owned(),
        Event::Summary { summary: s, .. } => format!(
            "summary: {} registered, {} rejected, {} failed, {} skipped, {} rows unsettled; {} tokens/hour{}",
            s.registered,
            s.rejected,
            s.failed,
            s.skipped,
            s.unsettled,
            s.tokens_per_hour,
            s.slowest_phase
                .as_ref()
                .map(|p| format!("; slowest phase: {} ({:.3} s on average)", p.phase, p.seconds))
                .unwrap_or_default()
        ),
    }
}

impl Face for Headless {
    fn event(&self, e: &Event) {
        let _one_at_a_time = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if self.jsonl {
            if let Ok(text) = serde_json::to_string(e) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
        } else {
            eprintln!("tokenroll station: {}", line(e));
        }
    }

    fn pin(&self, req: &PinRequest, cancel: &Cancel) -> Result<Option<Pin>, String> {
        self.dialog.ask(req, cancel)
    }

    fn user(
        &self,
        token: &TokenName,
        subject: &str,
        cancel: &Cancel,
    ) -> Result<Option<String>, String> {
        self.dialog.ask_user(&token.label, subject, cancel)
    }

    fn confirm(&self, _: &Confirm, _: &Cancel) -> Result<bool, String> {
        Ok(true)
    }

    fn replace_bound(&self, _: &str, _: &str, _: &Cancel) -> Result<bool, String> {
        Ok(false)
    }

    fn password(&self, admin: &str, cancel: &Cancel) -> Result<Option<AdminPassword>, String> {
        self.dialog.ask_password(admin, cancel)
    }

    fn admin_pin(
        &self,
        admin: &str,
        token: &str,
        note: Option<&str>,
        cancel: &Cancel,
    ) -> Result<Option<Pin>, String> {
        self.dialog.ask_admin_pin(admin, token, note, cancel)
    }
}

/// The session's questions, through the face; the station is locked while one is open.
pub struct FaceAsk {
    pub face: std::sync::Arc<dyn Face>,
    pub quit: std::sync::Arc<Cancel>,
}

impl crate::enroll::AskAdmin for FaceAsk {
    fn password(&self, admin: &str) -> Result<Option<AdminPassword>, String> {
        self.locked(admin, || self.face.password(admin, &self.quit))
    }

    fn token_pin(
        &self,
        admin: &str,
        token: &str,
        note: Option<&str>,
    ) -> Result<Option<Pin>, String> {
        self.locked(admin, || {
            self.face.admin_pin(admin, token, note, &self.quit)
        })
    }
}

impl FaceAsk {
    fn locked<T>(&self, admin: &str, ask: impl FnOnce() -> T) -> T {
        self.face.event(&Event::Locked {
            time: super::events::now(),
            admin: admin.to_string(),
        });
        let answer = ask();
        self.face.event(&Event::Unlocked {
            time: super::events::now(),
            admin: admin.to_string(),
        });
        answer
    }
}
