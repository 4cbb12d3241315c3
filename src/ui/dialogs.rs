//! The agent's ways of talking to the person: GnuPG's pinentry for the PIN, desktop notifications.

use crate::secret::Pin;

/// What the PIN dialog shows.
#[derive(Clone, Debug, Default)]
pub struct PinRequest {
    pub token: String,
    pub serial: String,
    pub subject: String,
    pub user: String,
    /// Shown when a previous PIN was refused.
    pub error: Option<String>,
    /// The token says few tries are left, or this is the last one.
    pub warning: Option<String>,
}

/// Asks for a PIN, and for the username when the agent is set to ask the person.
/// `Ok(None)` means the person cancelled.
pub trait PinDialog: Send + Sync + 'static {
    fn ask(&self, req: &PinRequest) -> Result<Option<Pin>, String>;
    fn ask_user(&self, token: &str, subject: &str) -> Result<Option<String>, String>;
}

/// Shows a notification.
pub trait Notifier: Send + Sync + 'static {
    fn notify(&self, summary: &str, body: &str);
}

/// GnuPG's pinentry (the program from `--pinentry`, else `pinentry` on PATH).
pub struct Pinentry {
    pub program: Option<String>,
}

impl Pinentry {
    fn input(&self) -> Result<pinentry::PassphraseInput<'static>, String> {
        let program = self.program.as_deref().unwrap_or("pinentry");
        pinentry::PassphraseInput::with_binary(program).ok_or_else(|| {
            format!(
                "no pinentry program '{program}' found: install one (Debian: pinentry-gnome3, pinentry-qt, pinentry-gtk2 \
                 or pinentry-curses), or name it with --pinentry"
            )
        })
    }
}

/// What pinentry's answer means: a value, a cancel, or a failure to report.
fn answer(r: Result<secrecy::SecretString, pinentry::Error>) -> Result<Option<String>, String> {
    use secrecy::ExposeSecret;
    match r {
        Ok(secret) => Ok(Some(secret.expose_secret().to_string())),
        Err(pinentry::Error::Cancelled) | Err(pinentry::Error::Timeout) => Ok(None),
        Err(e) => Err(format!("the dialog failed: {e}")),
    }
}

/// Caps for what pinentry shows, counted as sent (see `text::pinentry`): one field, a title,
/// and a whole description or error line.
const FIELD: usize = 120;
const TITLE: usize = 200;
const LINE: usize = 900;

impl PinDialog for Pinentry {
    fn ask(&self, req: &PinRequest) -> Result<Option<Pin>, String> {
        use crate::text::pinentry as safe;
        let mut input = self.input()?;
        let title = safe(
            &format!("tokenroll — token '{}'", safe(&req.token, FIELD)),
            TITLE,
        );
        let mut description = format!(
            "Enter the PIN of token '{}' (serial {}) to register the certificate\n{}\nfor {} with CENTAGATE.",
            safe(&req.token, FIELD),
            safe(&req.serial, FIELD),
            safe(&req.subject, 2 * FIELD),
            safe(&req.user, FIELD)
        );
        if let Some(w) = &req.warning {
            description = format!("{w}\n\n{description}");
        }
        let description = safe(&description, LINE);
        input
            .with_title(&title)
            .with_description(&description)
            .with_prompt("PIN:");
        let error = req.error.as_deref().map(|e| safe(e, LINE));
        if let Some(e) = &error {
            input.with_error(e);
        }
        let pin = answer(input.interact())?.map(Pin::new);
        Ok(pin.filter(|p| !p.is_empty()))
    }

    /// pinentry hides what is typed, as for a PIN; the description says so.
    fn ask_user(&self, token: &str, subject: &str) -> Result<Option<String>, String> {
        use crate::text::pinentry as safe;
        let mut input = self.input()?;
        let (token, subject) = (safe(token, FIELD), safe(subject, 2 * FIELD));
        let title = safe(&format!("tokenroll — token '{token}'"), TITLE);
        let description = safe(
            &format!(
                "Who is token '{token}' to be registered to with CENTAGATE?\nCertificate: {subject}\n\n\
                 Type the CENTAGATE username (the dialog hides what you type)."
            ),
            LINE,
        );
        input
            .with_title(&title)
            .with_description(&description)
            .with_prompt("Username:");
        Ok(answer(input.interact())?
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
