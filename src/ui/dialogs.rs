//! The agent's ways of talking to the person: GnuPG's pinentry for the PIN and the username,
//! desktop notifications.
//!
//! Owns: the dialogs' wording and the caps on what they show. Does not own: the pinentry
//! protocol (see `pinentry`) or when a dialog is shown (see `agent`).

use super::pinentry::{Answer, Session};
use crate::secret::{AdminPassword, Pin};

pub use super::pinentry::Cancel;

/// What the PIN dialog shows.
#[derive(Clone, Debug, Default)]
pub struct PinRequest {
    pub token: String,
    pub serial: String,
    pub subject: String,
    pub user: String,
    /// What the signature is for and where it goes, ending the sentence "... the certificate
    /// <subject> ": "for alice with CENTAGATE.", or the relay's statement.
    pub purpose: String,
    /// Shown when a previous PIN was refused.
    pub error: Option<String>,
    /// The token says few tries are left, or this is the last one.
    pub warning: Option<String>,
}

/// Asks for a PIN, and for the username when the agent is set to ask the person. `Ok(None)`
/// means the person cancelled, or `cancel` ended the dialog (its process is then gone too).
pub trait PinDialog: Send + Sync + 'static {
    fn ask(&self, req: &PinRequest, cancel: &Cancel) -> Result<Option<Pin>, String>;
    fn ask_user(
        &self,
        token: &str,
        subject: &str,
        cancel: &Cancel,
    ) -> Result<Option<String>, String>;

    /// The CENTAGATE admin's password for a login (hidden as typed); `Ok(None)`: declined or
    /// cancelled.
    fn ask_password(&self, admin: &str, cancel: &Cancel) -> Result<Option<AdminPassword>, String> {
        let _ = (admin, cancel);
        Err("this dialog cannot ask for a password".into())
    }

    /// The PIN of the admin's own token `token`, for a token login as `admin`; `note` says why
    /// it is asked again. `Ok(None)`: declined or cancelled.
    fn ask_admin_pin(
        &self,
        admin: &str,
        token: &str,
        note: Option<&str>,
        cancel: &Cancel,
    ) -> Result<Option<Pin>, String> {
        let _ = (admin, token, note, cancel);
        Err("this dialog cannot ask for the admin token's PIN".into())
    }
}

/// Shows a notification.
pub trait Notifier: Send + Sync + 'static {
    fn notify(&self, summary: &str, body: &str);
}

/// GnuPG's pinentry (the program from `--pinentry`, else `pinentry` on PATH).
pub struct Pinentry {
    pub program: Option<String>,
}

/// Caps for what pinentry shows, counted as sent (see `text::pinentry`): one field, a title,
/// and a whole description or error line.
const FIELD: usize = 120;
const TITLE: usize = 200;
const LINE: usize = 900;

impl Pinentry {
    /// One dialog: the SET lines, then GETPIN.
    fn run(
        &self,
        cancel: &Cancel,
        lines: &[(&str, &str)],
    ) -> Result<Option<zeroize::Zeroizing<String>>, String> {
        let program = self.program.as_deref().unwrap_or("pinentry");
        let mut session = match Session::start(program, cancel) {
            Ok(s) => s,
            Err(_) if cancel.is_cancelled() => return Ok(None),
            Err(e) => return Err(e),
        };
        for (command, value) in lines {
            session.request(command, value)?;
        }
        Ok(match session.get_pin()? {
            Answer::Value(v) => Some(v),
            Answer::Cancelled => None,
        })
    }
}

impl PinDialog for Pinentry {
    fn ask(&self, req: &PinRequest, cancel: &Cancel) -> Result<Option<Pin>, String> {
        use crate::text::pinentry as safe;
        let title = safe(
            &format!("tokenroll — token '{}'", safe(&req.token, FIELD)),
            TITLE,
        );
        let mut description = format!(
            "Enter the PIN of token '{}' (serial {}) to register the certificate\n{}\n{}",
            safe(&req.token, FIELD),
            safe(&req.serial, FIELD),
            safe(&req.subject, 2 * FIELD),
            safe(&req.purpose, 2 * FIELD)
        );
        if let Some(w) = &req.warning {
            description = format!("{w}\n\n{description}");
        }
        let description = safe(&description, LINE);
        let error = req.error.as_deref().map(|e| safe(e, LINE));
        let mut lines = vec![
            ("SETTITLE", title.as_str()),
            ("SETDESC", description.as_str()),
            ("SETPROMPT", "PIN:"),
        ];
        if let Some(e) = &error {
            lines.push(("SETERROR", e));
        }
        let pin = self.run(cancel, &lines)?.map(|v| Pin::new(v.to_string()));
        Ok(pin.filter(|p| !p.is_empty()))
    }

    fn ask_password(&self, admin: &str, cancel: &Cancel) -> Result<Option<AdminPassword>, String> {
        use crate::text::pinentry as safe;
        let admin = safe(admin, FIELD);
        let description = safe(
            &format!(
                "tokenroll logs in to CENTAGATE as the admin '{admin}' to register the token.\n\n\
                 Enter that admin's password (it is used for this login only and not kept)."
            ),
            LINE,
        );
        let lines = [
            ("SETTITLE", "tokenroll — CENTAGATE admin login"),
            ("SETDESC", description.as_str()),
            ("SETPROMPT", "Password:"),
        ];
        Ok(self
            .run(cancel, &lines)?
            .map(|p| AdminPassword::new(p.to_string()))
            .filter(|p| !p.is_empty()))
    }

    fn ask_admin_pin(
        &self,
        admin: &str,
        token: &str,
        note: Option<&str>,
        cancel: &Cancel,
    ) -> Result<Option<Pin>, String> {
        use crate::text::pinentry as safe;
        let (admin, token) = (safe(admin, FIELD), safe(token, FIELD));
        let title = safe(&format!("tokenroll — admin token '{token}'"), TITLE);
        let mut description = format!(
            "tokenroll logs in to CENTAGATE as the admin '{admin}' with that admin's own token \
             '{token}'.\n\nEnter the PIN of token '{token}'. The token stays logged in while \
             tokenroll runs; the PIN is not kept."
        );
        if let Some(n) = note {
            description = format!("{}\n\n{description}", safe(n, LINE));
        }
        let description = safe(&description, LINE);
        let lines = [
            ("SETTITLE", title.as_str()),
            ("SETDESC", description.as_str()),
            ("SETPROMPT", "PIN:"),
        ];
        Ok(self
            .run(cancel, &lines)?
            .map(|p| Pin::new(p.to_string()))
            .filter(|p| !p.is_empty()))
    }

    /// pinentry hides what is typed, as for a PIN; the description says so.
    fn ask_user(
        &self,
        token: &str,
        subject: &str,
        cancel: &Cancel,
    ) -> Result<Option<String>, String> {
        use crate::text::pinentry as safe;
        let (token, subject) = (safe(token, FIELD), safe(subject, 2 * FIELD));
        let title = safe(&format!("tokenroll — token '{token}'"), TITLE);
        let description = safe(
            &format!(
                "Who is token '{token}' to be registered to with CENTAGATE?\nCertificate: {subject}\n\n\
                 Type the CENTAGATE username (the dialog hides what you type)."
            ),
            LINE,
        );
        let lines = [
            ("SETTITLE", title.as_str()),
            ("SETDESC", description.as_str()),
            ("SETPROMPT", "Username:"),
        ];
        Ok(self
            .run(cancel, &lines)?
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty()))
    }
}

/// Desktop notifications over D-Bus; when there is no notification service the message goes to
/// the log instead (said once).
pub struct DesktopNotifier {
    warned: std::sync::atomic::AtomicBool,
}

impl DesktopNotifier {
    pub fn new() -> Self {
        Self {
            warned: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Default for DesktopNotifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier for DesktopNotifier {
    fn notify(&self, summary: &str, body: &str) {
        tracing::info!(%summary, %body, "notification");
        // Notification servers render a subset of HTML in the body: a token label or a server
        // message must not become markup. The summary is plain text; both are capped.
        let shown = notify_rust::Notification::new()
            .appname("tokenroll")
            .icon("tokenroll")
            .summary(&crate::text::plain(&crate::text::cap(summary, 200)))
            .body(&crate::text::markup(body, 1000))
            .show();
        if let Err(e) = shown {
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(error = %e, "no desktop notification service; messages go to the log only");
            }
        }
    }
}
