//! The admin's own signing pair for `login = token`: found and logged in when the first login
//! needs it, then kept logged in for the life of the process (a session held open on its
//! token), so its PIN is not kept. Each login signs the server's random string with it as an
//! attached SHA-256 PKCS#7, through the same token → cms path as a registration, verified
//! before it leaves.
//!
//! Owns: that pair, its kept login, and where its PIN comes from when the token must be logged
//! in (again), never trying a refused PIN twice. Does not own: the login calls (see
//! `api::login`), when a login happens (see `session`) or PKCS#11 itself (see `token`).

use super::{PinInput, Pkcs11Pair, Pkcs11Side, SelectedPair, TokenSide};
use crate::config::{AdminKeyOptions, AdminPin};
use crate::digest::DigestAlg;
use crate::secret::{AdminPassword, Pin};
use crate::token::{KeptLogin, Selector, TokenError};

/// How a session asks the person for what no file or variable gives (`Ok(None)`: declined).
/// Each answer is used for one login and dropped.
pub trait AskAdmin: Send + Sync {
    /// The admin's password, for a password login.
    fn password(&self, admin: &str) -> Result<Option<AdminPassword>, String>;

    /// The PIN of the admin's own token `token`, for a token login; `note` says why it is
    /// asked again.
    fn token_pin(
        &self,
        admin: &str,
        token: &str,
        note: Option<&str>,
    ) -> Result<Option<Pin>, String>;
}

/// For faces that have no one to ask (the demo, tests): every question is declined with why.
pub struct NoOneToAsk;

impl AskAdmin for NoOneToAsk {
    fn password(&self, _: &str) -> Result<Option<AdminPassword>, String> {
        Err(
            "there is no one to ask for the admin's password here: give it in \
             TOKENROLL_ADMIN_PASSWORD or admin_password_file"
                .into(),
        )
    }

    fn token_pin(&self, _: &str, _: &str, _: Option<&str>) -> Result<Option<Pin>, String> {
        Err(
            "there is no one to ask for the admin token's PIN here: give --admin-pin-env VAR \
             or admin_pin_file"
                .into(),
        )
    }
}

struct Held {
    pair: Pkcs11Pair,
    /// Declared after `pair`, dropped after it: the last session, whose closing ends the login.
    kept: KeptLogin,
}

/// The admin's pair, logged in at most once per login of its token.
pub struct AdminKey {
    options: AdminKeyOptions,
    held: Option<Held>,
    /// The `admin_pin_file` (size, modified, inode) whose PIN the token refused: not tried again
    /// until the file changes, so a wrong PIN there cannot lock the admin's token.
    refused_file: Option<(u64, std::time::SystemTime, u64)>,
}

const DIGEST: DigestAlg = DigestAlg::Sha256;

impl AdminKey {
    pub fn new(options: AdminKeyOptions) -> Self {
        Self {
            options,
            held: None,
            refused_file: None,
        }
    }

    /// Signs `content` (the server's random string) and verifies the PKCS#7. With the token's
    /// login kept from an earlier call no PIN is needed; otherwise it comes from the options,
    /// else `ask`.
    pub fn sign(
        &mut self,
        admin: &str,
        content: &[u8],
        ask: &dyn AskAdmin,
    ) -> Result<Vec<u8>, TokenError> {
        let mut note = None;
        if let Some(h) = self.held.as_mut() {
            let kept = if h.kept.logged_in() {
                match h.pair.sign_cms(PinInput::Kept, content, DIGEST) {
                    Err(TokenError::PinEverySignature) => {
                        let summary = h.pair.summary().clone();
                        let pin = self.pin(admin, &summary.token_label, None, ask)?;
                        let h = self.held.as_mut().expect("held above");
                        let signed = h.pair.sign_cms(PinInput::Pin(pin), content, DIGEST);
                        Some(self.refusal_noted(signed))
                    }
                    // Logged out between the check and the signature: as if it had been seen.
                    Err(TokenError::LoggedOut) => None,
                    other => Some(other),
                }
            } else {
                None
            };
            if let Some(result) = kept {
                let der = result?;
                let cert = &self.held.as_ref().expect("held above").pair.summary().cert;
                super::self_verify(&der, content, DIGEST, cert)?;
                return Ok(der);
            }
            tracing::info!(
                "the admin token's login has ended (the token was removed, its module reloaded, \
                 or the card logged itself out): it is logged in again"
            );
            self.held = None;
            note =
                Some("Its earlier login has ended (the token was removed or its module reloaded).");
        }
        let mut side = Pkcs11Side::load(
            self.options.module.as_deref(),
            Selector {
                uri: Some(self.options.uri.clone()),
                ..Default::default()
            },
        )?;
        let mut pair = side.select()?;
        // Opened before the signing session logs in, so the login outlives that session.
        let kept = pair.keep_login()?;
        let summary = pair.summary().clone();
        if summary.pin_locked {
            return Err(TokenError::PinLocked);
        }
        let input = if summary.pin_pad {
            PinInput::ProtectedPath
        } else {
            PinInput::Pin(self.pin(admin, &summary.token_label, note, ask)?)
        };
        let der = self.refusal_noted(pair.sign_cms(input, content, DIGEST))?;
        super::self_verify(&der, content, DIGEST, &summary.cert)?;
        if kept.logged_in() {
            self.held = Some(Held { pair, kept });
        } else {
            tracing::debug!("the admin token does not keep its login; its PIN is needed each time");
        }
        Ok(der)
    }

    /// The PIN for one login of the token: the variable's (its first login only), the file's
    /// (unless the token refused that very file), else asked.
    fn pin(
        &mut self,
        admin: &str,
        token: &str,
        note: Option<&str>,
        ask: &dyn AskAdmin,
    ) -> Result<Pin, TokenError> {
        match &self.options.pin {
            AdminPin::Given(once) => {
                if let Some(pin) = once.take() {
                    return Ok(pin);
                }
            }
            AdminPin::File(path) => {
                if self.refused_file.is_some() && self.refused_file == file_stamp(path) {
                    return Err(TokenError::PinSource(format!(
                        "the admin token refused the PIN in admin_pin_file {}, so it is not \
                         tried again: correct the file (the token counts every wrong PIN)",
                        path.display()
                    )));
                }
                let text = crate::paths::read_secret_file(path, "admin_pin_file")
                    .map_err(TokenError::PinSource)?;
                return Ok(Pin::new(text.as_str().to_string()));
            }
            AdminPin::Ask => {}
        }
        ask.token_pin(admin, token, note)
            .map_err(TokenError::PinSource)?
            .filter(|p| !p.is_empty())
            .ok_or(TokenError::PinCancelled)
    }

    /// Passes `result` on, remembering the file whose PIN the token refused.
    fn refusal_noted<T>(&mut self, result: Result<T, TokenError>) -> Result<T, TokenError> {
        if let (Err(TokenError::PinIncorrect { .. }), AdminPin::File(path)) =
            (&result, &self.options.pin)
        {
            self.refused_file = file_stamp(path);
        }
        result
    }
}

/// What tells one version of a file from the next: size, modification time and inode.
fn file_stamp(path: &std::path::Path) -> Option<(u64, std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?, m.ino()))
}
