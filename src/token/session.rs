//! An open session on one token: login (PIN or PIN pad), finding the pair's key, and the raw
//! signature (`CKM_RSA_PKCS` over a DigestInfo, raw `CKM_ECDSA`).
//!
//! Owns: the session's life and the context-specific login of CKA_ALWAYS_AUTHENTICATE keys.
//! Does not own: hashing or DigestInfo (see `signer`).

use super::{map_ck, KeyKind, Module, SigningPair, TokenDesc, TokenError};
use crate::secret::Pin;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};

/// How the PIN for a login is supplied.
pub enum Login<'p> {
    Pin(&'p Pin),
    /// PIN pad or other protected authentication path: the module asks the reader.
    ProtectedPath,
}

/// An open session on one token, with the key found after login.
pub struct TokenSession<'m> {
    pub(super) module: &'m Module,
    pub(super) session: Session,
    pub(super) token: TokenDesc,
    /// Kept only for keys with CKA_ALWAYS_AUTHENTICATE, which need it again for every signature.
    pub(super) context_pin: Option<Pin>,
}

/// A private key on the token, ready to sign.
#[derive(Clone, Copy, Debug)]
pub struct KeyHandle {
    pub(super) handle: ObjectHandle,
    pub(super) always_authenticate: bool,
}

/// A session held open so that the token's login outlives the sessions that sign with it: a
/// PKCS#11 login belongs to the application and lasts while any of its sessions on that token
/// is open. For a pair one process signs with again and again (the admin's own, for token
/// logins), so that its PIN need not be kept. Dropping it closes the session, and with the last
/// one the login.
pub struct KeptLogin {
    session: Session,
}

impl KeptLogin {
    pub(super) fn new(session: Session) -> Self {
        Self { session }
    }

    /// Whether the token is still logged in: not once it was removed, its module finalised, or
    /// the card logged itself out.
    pub fn logged_in(&self) -> bool {
        logged_in(&self.session)
    }
}

fn logged_in(session: &Session) -> bool {
    session.get_session_info().is_ok_and(|i| {
        matches!(
            i.session_state(),
            SessionState::RoUser | SessionState::RwUser
        )
    })
}

impl KeyHandle {
    /// CKA_ALWAYS_AUTHENTICATE: the key wants its PIN again for every signature.
    pub fn wants_pin_every_signature(&self) -> bool {
        self.always_authenticate
    }
}

impl TokenSession<'_> {
    /// Whether the token is logged in already (by a `KeptLogin`, or another session of ours).
    pub fn logged_in(&self) -> bool {
        logged_in(&self.session)
    }

    /// The token's PIN state right now (count low, final try, locked).
    pub fn pin_state(&self) -> Result<TokenDesc, TokenError> {
        self.module.refresh(&self.token)
    }

    /// Logs the user in. A locked PIN is refused before any attempt; after a wrong PIN the
    /// counter flags are read again so the error can say how close the token is to locking.
    pub fn login(&mut self, login: Login<'_>) -> Result<(), TokenError> {
        let state = self.pin_state()?;
        if state.pin_locked {
            return Err(TokenError::PinLocked);
        }
        let result = match &login {
            Login::Pin(pin) => {
                let auth = cryptoki::types::AuthPin::from(pin.expose().to_string());
                self.session.login(UserType::User, Some(&auth))
            }
            Login::ProtectedPath => self.session.login(UserType::User, None),
        };
        match result {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
                if let Login::Pin(pin) = login {
                    self.context_pin = Some((*pin).clone());
                }
                Ok(())
            }
            Err(e) => match map_ck("login", e) {
                TokenError::PinIncorrect { .. } => {
                    let after = self.pin_state()?;
                    if after.pin_locked {
                        Err(TokenError::PinLocked)
                    } else {
                        Err(TokenError::PinIncorrect {
                            count_low: after.pin_count_low,
                            final_try: after.pin_final_try,
                        })
                    }
                }
                other => Err(other),
            },
        }
    }

    /// Finds the private key of `pair` (after login, since private keys are usually private objects).
    pub fn find_key(&mut self, pair: &SigningPair) -> Result<KeyHandle, TokenError> {
        let found = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(pair.id.clone()),
            ])
            .map_err(|e| map_ck("finding the private key", e))?;
        let handle = *found
            .first()
            .ok_or_else(|| TokenError::MissingPrivateKey(pair.subject()))?;
        let attrs = self
            .session
            .get_attributes(
                handle,
                &[
                    AttributeType::Sign,
                    AttributeType::AlwaysAuthenticate,
                    AttributeType::KeyType,
                ],
            )
            .map_err(|e| map_ck("reading the private key", e))?;
        let mut always_authenticate = false;
        for a in attrs {
            match a {
                Attribute::Sign(false) => {
                    return Err(TokenError::KeyNotPermitted("CKA_SIGN is false".into()))
                }
                Attribute::AlwaysAuthenticate(v) => always_authenticate = v,
                Attribute::KeyType(kt) => {
                    let expected = match pair.kind {
                        KeyKind::Rsa { .. } => KeyType::RSA,
                        KeyKind::Ec(_) => KeyType::EC,
                    };
                    if kt != expected {
                        return Err(TokenError::UnsupportedKey(format!(
                            "the private key is {kt} but the certificate holds {}",
                            pair.kind.describe()
                        )));
                    }
                }
                _ => {}
            }
        }
        if !always_authenticate {
            self.context_pin = None;
        }
        Ok(KeyHandle {
            handle,
            always_authenticate,
        })
    }

    /// One raw signature: `CKM_RSA_PKCS` over a DigestInfo or `CKM_ECDSA` over a hash.
    pub fn sign_raw(
        &self,
        key: KeyHandle,
        kind: KeyKind,
        input: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        self.sign_once(key, kind, input).map_err(|e| match e {
            // A card pulled out mid-signature fails with CKR_GENERAL_ERROR first (and only
            // later with CKR_DEVICE_REMOVED): look at the slot before calling it a device fault.
            TokenError::Device { .. } if self.module.gone(&self.token) => TokenError::TokenRemoved,
            e => e,
        })
    }

    fn sign_once(
        &self,
        key: KeyHandle,
        kind: KeyKind,
        input: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        let mech = match kind {
            KeyKind::Rsa { .. } => Mechanism::RsaPkcs,
            KeyKind::Ec(_) => Mechanism::Ecdsa,
        };
        if !key.always_authenticate {
            return self
                .session
                .sign(&mech, key.handle, input)
                .map_err(|e| map_ck("signing", e));
        }
        // CKA_ALWAYS_AUTHENTICATE: C_SignInit, then a context-specific login, then C_Sign.
        // cryptoki's `sign` fuses init and sign, so the last call goes through the raw list.
        self.session
            .sign_init(&mech, key.handle)
            .map_err(|e| map_ck("signing", e))?;
        let auth = self
            .context_pin
            .as_ref()
            .map(|pin| cryptoki::types::AuthPin::from(pin.expose().to_string()));
        self.session
            .login(UserType::ContextSpecific, auth.as_ref())
            .map_err(|e| map_ck("the key's own PIN check", e))?;
        self.module
            .raw
            .sign(self.session.handle(), input)
            .map_err(|e| match e {
                // The p11-kit proxy gives every C_GetFunctionList caller its own instance, so
                // this one call cannot reach cryptoki's sessions through it.
                CkError::Pkcs11(RvError::CryptokiNotInitialized, _) => {
                    TokenError::AlwaysAuthenticateThroughProxy
                }
                e => map_ck("signing", e),
            })
    }
}
