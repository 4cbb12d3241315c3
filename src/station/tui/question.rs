//! The operator's questions as the terminal UI puts them: what each says, whether what is typed
//! is shown, and the answers.
//!
//! Owns: the questions' text (every value from a token or a server made printable). Does not
//! own: drawing them or the keys (see `view`).

use crate::station::events::{Confirm, TokenName};
use crate::text::plain;
use crate::ui::dialogs::PinRequest;
use zeroize::Zeroizing;

/// A question for the operator.
pub enum Question {
    Pin(PinRequest),
    User {
        token: TokenName,
        subject: String,
    },
    Confirm(Confirm),
    Replace {
        user: String,
        other: String,
    },
    Password {
        admin: String,
    },
    AdminPin {
        admin: String,
        token: String,
        note: Option<String>,
    },
}

impl Question {
    /// Whether what is typed is shown as dots.
    pub(super) fn masked(&self) -> bool {
        matches!(
            self,
            Self::Pin(_) | Self::Password { .. } | Self::AdminPin { .. }
        )
    }

    pub(super) fn typed(&self) -> bool {
        !matches!(self, Self::Confirm(_) | Self::Replace { .. })
    }

    /// The token the question is about, by `TokenName::id`.
    pub(super) fn token_id(&self) -> Option<String> {
        match self {
            Self::User { token, .. } => Some(token.id()),
            Self::Confirm(c) => Some(c.token.id()),
            _ => None,
        }
    }

    pub(super) fn title_and_text(&self) -> (String, Vec<String>) {
        match self {
            Self::Pin(r) => (
                format!("PIN of token '{}'", plain(&r.token)),
                [
                    Some(format!(
                        "serial {} · {}",
                        plain(&r.serial),
                        plain(&r.subject)
                    )),
                    Some(format!("signs {}", plain(&r.purpose))),
                    r.warning.as_deref().map(|w| plain(w).into_owned()),
                    r.error.as_deref().map(|e| format!("! {}", plain(e))),
                    Some("The token's holder types the PIN; Enter signs, Esc cancels.".into()),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
            Self::User { token, subject } => (
                format!("Username for token '{}'", plain(&token.label)),
                vec![
                    format!("serial {} · {}", plain(&token.serial), plain(subject)),
                    "Type or scan the username; Enter takes it, Esc skips the token.".into(),
                ],
            ),
            Self::Confirm(c) => (
                "Enroll this token?".into(),
                vec![
                    format!("user:        {}", plain(&c.username)),
                    format!(
                        "token:       '{}' serial {}",
                        plain(&c.token.label),
                        plain(&c.token.serial)
                    ),
                    format!("certificate: {}", plain(&c.subject)),
                    format!("cert serial: {}", plain(&c.cert_serial)),
                    "Enter confirms; n or Esc skips the token.".into(),
                ],
            ),
            Self::Replace { user, other } => (
                format!("{} is bound to another token", plain(user)),
                vec![
                    format!("bound now: {}", plain(other)),
                    "y unbinds it and registers this token instead; n or Esc skips.".into(),
                ],
            ),
            Self::Password { admin } => (
                format!("Password of the CENTAGATE admin '{}'", plain(admin)),
                vec!["The session ended: tokens wait until you log in again.".into()],
            ),
            Self::AdminPin { admin, token, note } => (
                format!("PIN of your token '{}'", plain(token)),
                [
                    Some(format!("for the CENTAGATE login as '{}'", plain(admin))),
                    note.as_deref().map(|n| format!("! {}", plain(n))),
                ]
                .into_iter()
                .flatten()
                .collect(),
            ),
        }
    }
}

/// An answer.
pub enum Answer {
    Text(Zeroizing<String>),
    Yes,
    No,
    Cancel,
}
