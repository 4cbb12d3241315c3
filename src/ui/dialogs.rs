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
}

/// Asks for a PIN. `Ok(None)` means the person cancelled.
pub trait PinDialog: Send + Sync + 'static {
    fn ask(&self, req: &PinRequest) -> Result<Option<Pin>, String>;
}

/// Shows a notification.
pub trait Notifier: Send + Sync + 'static {
    fn notify(&self, summary: &str, body: &str);
}

/// GnuPG's pinentry (the program from `--pinentry`, else `pinentry` on PATH).
pub struct Pinentry {
    pub program: Option<String>,
}

impl PinDialog for Pinentry {
    fn ask(&self, req: &PinRequest) -> Result<Option<Pin>, String> {
        let program = self.program.as_deref().unwrap_or("pinentry");
        let mut input = pinentry::PassphraseInput::with_binary(program).ok_or_else(|| {
            format!(
                "no pinentry program '{program}' found: install one (Debian: pinentry-gnome3, pinentry-qt, pinentry-gtk2 \
                 or pinentry-curses), or name it with --pinentry"
            )
        })?;
        let title = format!("tokenroll — token '{}'", req.token);
        let description = format!(
            "Enter the PIN of token '{}' (serial {}) to register the certificate\n{}\nfor {} with CENTAGATE.",
            req.token, req.serial, req.subject, req.user
        );
        input
            .with_title(&title)
            .with_description(&description)
            .with_prompt("PIN:");
        if let Some(e) = &req.error {
            input.with_error(e);
        }
        match input.interact() {
            Ok(secret) => {
                use secrecy::ExposeSecret;
                let pin = Pin::new(secret.expose_secret().to_string());
                Ok((!pin.is_empty()).then_some(pin))
            }
            Err(pinentry::Error::Cancelled) | Err(pinentry::Error::Timeout) => Ok(None),
            Err(e) => Err(format!("the PIN dialog failed: {e}")),
        }
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
        let shown = notify_rust::Notification::new()
            .appname("tokenroll")
            .icon("tokenroll")
            .summary(summary)
            .body(body)
            .show();
        if let Err(e) = shown {
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(error = %e, "no desktop notification service; messages go to the log only");
            }
        }
    }
}
