//! The real token side of the flow: a loaded PKCS#11 module through `token`, signing with `cms`.
//!
//! Owns: turning a selector into a selected pair and a selected pair into an attached PKCS#7.
//! Does not own: PKCS#11 itself (see `token`) or CMS encoding (see `cms`).

use super::{PairSummary, PinInput, SelectedPair, TokenSide};
use crate::digest::DigestAlg;
use crate::token::{Module, Selector, SigningPair, TokenError};
use std::sync::Arc;

/// A loaded module and what to select on it.
pub struct Pkcs11Side {
    module: Arc<Module>,
    selector: Selector,
}

impl Pkcs11Side {
    /// Loads the module (`None`: discover it) for a one-shot command.
    pub fn load(path: Option<&std::path::Path>, selector: Selector) -> Result<Self, TokenError> {
        Ok(Self::with_module(Arc::new(Module::load(path)?), selector))
    }

    /// Signs through a module that is already loaded (the agent's watcher shares its own).
    pub fn with_module(module: Arc<Module>, selector: Selector) -> Self {
        Self { module, selector }
    }
}

impl TokenSide for Pkcs11Side {
    type Pair = Pkcs11Pair;

    fn select(&mut self) -> Result<Pkcs11Pair, TokenError> {
        let module = &self.module;
        let pair = module.select(&self.selector)?;
        let summary = PairSummary {
            module: format!(
                "{} ({})",
                module.path().display(),
                module.library_description()
            ),
            token_label: pair.token.label.clone(),
            token_serial: pair.token.serial.clone(),
            pin_pad: pair.token.pin_pad,
            pin_count_low: pair.token.pin_count_low,
            pin_final_try: pair.token.pin_final_try,
            pin_locked: pair.token.pin_locked,
            pin_to_be_changed: pair.token.pin_to_be_changed,
            uri: pair.uri().to_string(),
            subject: pair.subject(),
            kind: pair.kind,
            cert: pair.cert.clone(),
            cert_der: pair.cert_der.clone(),
        };
        Ok(Pkcs11Pair {
            module: module.clone(),
            pair,
            summary,
            kept: None,
        })
    }
}

/// A signing pair found on a token of a loaded module.
pub struct Pkcs11Pair {
    module: Arc<Module>,
    pair: SigningPair,
    summary: PairSummary,
    /// The login kept by `log_in`, until the pair is dropped.
    kept: Option<crate::token::KeptLogin>,
}

impl Pkcs11Pair {
    /// A session on this pair's token that keeps its login, once one is made, until dropped.
    pub fn keep_login(&self) -> Result<crate::token::KeptLogin, TokenError> {
        self.module.keep_login(&self.pair.token)
    }
}

impl SelectedPair for Pkcs11Pair {
    fn summary(&self) -> &PairSummary {
        &self.summary
    }

    fn log_in(&mut self, login: &PinInput) -> Result<(), TokenError> {
        // The kept session first: the login made on the other lasts while it is open.
        let kept = self.module.keep_login(&self.pair.token)?;
        let mut session = self.module.open(&self.pair)?;
        match login {
            PinInput::Pin(pin) => session.login(crate::token::Login::Pin(pin))?,
            PinInput::ProtectedPath => session.login(crate::token::Login::ProtectedPath)?,
            PinInput::Kept if !session.logged_in() => return Err(TokenError::LoggedOut),
            PinInput::Kept => {}
        }
        self.kept = Some(kept);
        Ok(())
    }

    fn sign_cms(
        &mut self,
        login: PinInput,
        content: &[u8],
        digest: DigestAlg,
    ) -> Result<Vec<u8>, TokenError> {
        let pair = &self.pair;
        let mut session = self.module.open(pair)?;
        match &login {
            PinInput::Pin(pin) => session.login(crate::token::Login::Pin(pin))?,
            PinInput::ProtectedPath => session.login(crate::token::Login::ProtectedPath)?,
            PinInput::Kept if !session.logged_in() => return Err(TokenError::LoggedOut),
            PinInput::Kept => {}
        }
        let key = session.find_key(pair)?;
        if matches!(login, PinInput::Kept) && key.wants_pin_every_signature() {
            return Err(TokenError::PinEverySignature);
        }
        let signer = crate::token::TokenSigner::new(
            &session,
            key,
            pair.kind,
            digest,
            pair.cert.tbs_certificate.subject_public_key_info.clone(),
        );
        crate::cms::build_attached::<_, crate::token::TokenSignature>(
            &signer, &pair.cert, content, digest,
        )
        .map_err(|e| {
            signer.take_error().unwrap_or(TokenError::Device {
                op: "building the PKCS#7".into(),
                rv: e.to_string(),
            })
        })
    }
}
