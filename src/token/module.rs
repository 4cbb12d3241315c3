//! A loaded and initialized PKCS#11 module: slots, tokens, pairs, sessions, slot events and
//! finalisation.
//!
//! Owns: the module's `cryptoki` context. Does not own: login and signing on a session (see
//! `session`) or the choice of a pair (see `select`).

use super::raw::RawFunctions;
use super::session::TokenSession;
use super::{
    choose_pair, discover_module, key_usage_allows_signing, map_ck, merge_card_copies, validity_at,
    KeyKind, Selector, SigningPair, SlotDesc, TokenDesc, TokenError,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass};
use cryptoki::session::Session;
use cryptoki::slot::Slot;
use der::Decode;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use x509_cert::Certificate;

/// A loaded and initialized PKCS#11 module.
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
    /// The raw function list, for the one call cryptoki has no wrapper for (see `sign_raw`).
    pub(super) raw: RawFunctions,
}

/// Whether the library at `path` opens and is a PKCS#11 module (has `C_GetFunctionList`),
/// without initialising it: `Err` is the loader's reason.
pub fn open_module(path: &Path) -> Result<bool, String> {
    // SAFETY: opening a PKCS#11 module runs its constructors, as loading it for use would; the
    // library is dropped at once and no symbol is called.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    // SAFETY: only the symbol's presence is checked; it is never called.
    Ok(unsafe {
        lib.get::<unsafe extern "C" fn()>(b"C_GetFunctionList\0")
            .is_ok()
    })
}

impl Module {
    /// Loads `path`, or the discovered default.
    pub fn load(path: Option<&Path>) -> Result<Self, TokenError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => discover_module()?,
        };
        let load_err = |reason: String| TokenError::ModuleLoad {
            path: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            return Err(load_err("no such file".into()));
        }
        let ctx = Pkcs11::new(&path).map_err(|e| load_err(e.to_string()))?;
        ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .or_else(|e| match e {
                CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _) => Ok(()),
                e => Err(e),
            })
            .map_err(|e| load_err(format!("C_Initialize failed: {e}")))?;
        let raw = RawFunctions::load(&path).map_err(load_err)?;
        Ok(Module { ctx, path, raw })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn library_description(&self) -> String {
        self.ctx
            .get_library_info()
            .map(|i| format!("{} {}", i.manufacturer_id(), i.library_description()))
            .unwrap_or_default()
    }

    fn slots_with_token(&self) -> Result<Vec<Slot>, TokenError> {
        // The slot count can change between C_GetSlotList's two calls.
        let mut last = None;
        for _ in 0..5 {
            match self.ctx.get_slots_with_token() {
                Ok(s) => return Ok(s),
                Err(e @ CkError::Pkcs11(RvError::BufferTooSmall, _)) => last = Some(e),
                Err(e) => return Err(map_ck("listing slots", e)),
            }
        }
        Err(map_ck("listing slots", last.expect("retried")))
    }

    /// Every slot (readers included), with or without a token.
    pub fn slots(&self) -> Result<Vec<SlotDesc>, TokenError> {
        let slots = self
            .ctx
            .get_all_slots()
            .map_err(|e| map_ck("listing slots", e))?;
        Ok(slots
            .into_iter()
            .filter_map(|s| self.ctx.get_slot_info(s).ok())
            .map(|i| SlotDesc {
                description: i.slot_description().trim().to_string(),
                manufacturer: i.manufacturer_id().trim().to_string(),
                token_present: i.token_present(),
                removable: i.removable_device(),
                hardware: i.hardware_slot(),
            })
            .collect())
    }

    pub fn tokens(&self) -> Result<Vec<TokenDesc>, TokenError> {
        Ok(self.tokens_in(&self.slots_with_token()?))
    }

    /// The tokens in `slots` (a slot that holds none now is left out).
    pub fn tokens_in(&self, slots: &[Slot]) -> Vec<TokenDesc> {
        let mut out = Vec::new();
        for &slot in slots {
            let Ok(info) = self.ctx.get_token_info(slot) else {
                continue;
            };
            if !info.token_initialized() {
                continue;
            }
            let slot_description = self
                .ctx
                .get_slot_info(slot)
                .map(|s| s.slot_description().trim().to_string())
                .unwrap_or_default();
            out.push(TokenDesc {
                label: info.label().trim().to_string(),
                serial: info.serial_number().trim().to_string(),
                manufacturer: info.manufacturer_id().trim().to_string(),
                model: info.model().trim().to_string(),
                slot,
                slot_description,
                pin_pad: info.protected_authentication_path(),
                login_required: info.login_required(),
                pin_count_low: info.user_pin_count_low(),
                pin_final_try: info.user_pin_final_try(),
                pin_locked: info.user_pin_locked(),
                pin_to_be_changed: info.user_pin_to_be_changed(),
            });
        }
        out
    }

    /// The token's flags now, read from its slot; a different token there means ours was removed.
    pub(super) fn refresh(&self, token: &TokenDesc) -> Result<TokenDesc, TokenError> {
        let info = self
            .ctx
            .get_token_info(token.slot)
            .map_err(|e| map_ck("reading the token's state", e))?;
        if info.label().trim() != token.label || info.serial_number().trim() != token.serial {
            return Err(TokenError::TokenRemoved);
        }
        Ok(TokenDesc {
            pin_count_low: info.user_pin_count_low(),
            pin_final_try: info.user_pin_final_try(),
            pin_locked: info.user_pin_locked(),
            pin_to_be_changed: info.user_pin_to_be_changed(),
            ..token.clone()
        })
    }

    /// Whether `token` left its slot, watched for up to a second: after a removal the reader
    /// may take a polling interval to say so. (C_GetSessionInfo is no presence check: it can
    /// keep answering OK for seconds after the card is gone.)
    pub(super) fn gone(&self, token: &TokenDesc) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            let present = self
                .ctx
                .get_slot_info(token.slot)
                .is_ok_and(|i| i.token_present());
            if !present || self.refresh(token).is_err() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// Signing pairs visible without logging in: certificates that allow signing, with a key type
    /// tokenroll supports. The private key itself is found after login (it is usually private).
    pub fn pairs(&self, token: &TokenDesc) -> Result<Vec<SigningPair>, TokenError> {
        self.pairs_read(token).map(|(pairs, _)| pairs)
    }

    /// `pairs`, and how many certificate objects could not be read (a token still being
    /// written, a broken object): a caller that caches the answer reads such a token again.
    pub fn pairs_read(&self, token: &TokenDesc) -> Result<(Vec<SigningPair>, usize), TokenError> {
        let session = self
            .ctx
            .open_ro_session(token.slot)
            .map_err(|e| map_ck("opening a session", e))?;
        let certs = session
            .find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::CertificateType(CertificateType::X_509),
            ])
            .map_err(|e| map_ck("finding certificates", e))?;
        let now = SystemTime::now();
        let mut out = Vec::new();
        let mut unreadable = 0;
        for handle in certs {
            let attrs = session
                .get_attributes(
                    handle,
                    &[
                        AttributeType::Id,
                        AttributeType::Label,
                        AttributeType::Value,
                    ],
                )
                .map_err(|e| map_ck("reading a certificate", e))?;
            let (mut id, mut label, mut value) = (None, String::new(), None);
            for a in attrs {
                match a {
                    Attribute::Id(v) => id = Some(v),
                    Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
                    Attribute::Value(v) => value = Some(v),
                    _ => {}
                }
            }
            let (Some(id), Some(der)) = (id, value) else {
                unreadable += 1;
                continue;
            };
            let Ok(cert) = Certificate::from_der(&der) else {
                tracing::warn!(token = %token.label, "skipping a certificate that does not parse");
                unreadable += 1;
                continue;
            };
            if !key_usage_allows_signing(&cert) {
                continue;
            }
            let Ok(kind) = KeyKind::from_spki(&cert.tbs_certificate.subject_public_key_info) else {
                tracing::debug!(token = %token.label, "skipping a certificate with an unsupported key");
                continue;
            };
            let signature_key = public_key_signs_only(&session, &id);
            out.push(SigningPair {
                token: token.clone(),
                signature_key,
                id,
                object_label: label,
                validity: validity_at(&cert, now),
                cert,
                cert_der: der,
                kind,
            });
        }
        Ok((out, unreadable))
    }

    /// All tokens' pairs, and the one the selector means.
    pub fn select(&self, sel: &Selector) -> Result<SigningPair, TokenError> {
        // Where the token was seen first (a station's lane: listing every token for each of
        // many would cost each one the time of all); everywhere when it is not there now.
        if let Some(slots) = &sel.slots {
            let tokens = self.tokens_in(slots);
            if tokens.iter().any(|t| sel.matches_token(t)) {
                return self.select_among(tokens, sel);
            }
        }
        self.select_among(self.tokens()?, sel)
    }

    fn select_among(
        &self,
        tokens: Vec<TokenDesc>,
        sel: &Selector,
    ) -> Result<SigningPair, TokenError> {
        let mut pairs = Vec::new();
        for t in tokens.iter().filter(|t| sel.matches_token(t)) {
            pairs.extend(self.pairs(t)?);
        }
        choose_pair(&tokens, merge_card_copies(pairs), sel)
    }

    pub fn open(&self, pair: &SigningPair) -> Result<TokenSession<'_>, TokenError> {
        let session = self
            .ctx
            .open_ro_session(pair.token.slot)
            .map_err(|e| map_ck("opening a session", e))?;
        Ok(TokenSession {
            module: self,
            session,
            token: pair.token.clone(),
            context_pin: None,
        })
    }

    /// A session on `token` that keeps its login (once one is made) until dropped.
    pub fn keep_login(&self, token: &TokenDesc) -> Result<super::KeptLogin, TokenError> {
        self.ctx
            .open_ro_session(token.slot)
            .map(super::KeptLogin::new)
            .map_err(|e| map_ck("opening a session", e))
    }

    /// Blocks until a slot changes (a token inserted or removed) and returns it. `Ok(None)`: the
    /// module cannot wait (SoftHSM2 and the p11-kit proxy answer CKR_FUNCTION_NOT_SUPPORTED or
    /// CKR_NO_EVENT at once), so the caller must find another trigger. Only `finalize` from
    /// another thread ends a wait early.
    pub fn wait_for_slot_event(&self) -> Result<Option<Slot>, TokenError> {
        match self.ctx.wait_for_slot_event() {
            Ok(slot) => Ok(Some(slot)),
            Err(CkError::Pkcs11(RvError::FunctionNotSupported | RvError::NoEvent, _))
            | Err(CkError::NullFunctionPointer) => Ok(None),
            Err(e) => Err(map_ck("waiting for a token", e)),
        }
    }

    /// C_Finalize through cryptoki's own instance of the module, for a module nobody else holds:
    /// before loading it again (a library that stays loaded keeps its old view otherwise).
    pub fn close(self) {
        if let Err(e) = self.ctx.finalize() {
            tracing::debug!(error = %e, "C_Finalize");
        }
    }

    /// C_Finalize now, from any thread: the one way to end a blocked `wait_for_slot_event`
    /// (PKCS#11 2.40 §5.4). Every later call on this module fails; load it again to go on.
    pub fn finalize(&self) {
        // cryptoki's context is a shared handle: finalizing a clone is C_Finalize on the module.
        if let Err(e) = self.ctx.clone().finalize() {
            tracing::debug!(error = %e, "C_Finalize");
        }
    }

    /// For provisioning only.
    pub(crate) fn ctx(&self) -> &Pkcs11 {
        &self.ctx
    }
}

/// Whether the public key object with CKA_ID `id` is for signing only (CKA_VERIFY without
/// CKA_ENCRYPT). Unknown attributes count as "no".
fn public_key_signs_only(session: &Session, id: &[u8]) -> bool {
    let Ok(keys) = session.find_objects(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::Id(id.to_vec()),
    ]) else {
        return false;
    };
    let Some(&key) = keys.first() else {
        return false;
    };
    let (mut verify, mut encrypt) = (false, false);
    for a in session
        .get_attributes(key, &[AttributeType::Verify, AttributeType::Encrypt])
        .unwrap_or_default()
    {
        match a {
            Attribute::Verify(v) => verify = v,
            Attribute::Encrypt(v) => encrypt = v,
            _ => {}
        }
    }
    verify && !encrypt
}
