//! Token errors, and the one mapping of every `CKR_*` code to a domain error a person can act on.
//!
//! Owns: `TokenError` and `map_ck`. Does not own: when a call is made.

use cryptoki::error::{Error as CkError, RvError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("no PKCS#11 module found (looked for {0}); install p11-kit, OpenSC or SoftHSM2, or name one with --module")]
    NoModule(String),
    #[error("could not load the PKCS#11 module {path}: {reason}; check the path, or name another with --module")]
    ModuleLoad { path: String, reason: String },
    #[error("no token {0} is present; insert it, or check the label with 'tokenroll tokens'")]
    NoToken(String),
    #[error("token '{0}' holds no signing pair (a private key and a certificate with the same CKA_ID that allows signing); load one onto the token first")]
    NoSigningPair(String),
    #[error("{0}; renew the certificate on the token, or select another pair with --key")]
    CertificateNotValid(String),
    #[error("several signing pairs match; choose one with --key:\n{}", .0.join("\n"))]
    Ambiguous(Vec<String>),
    #[error("the certificate {0} has no private key with its CKA_ID on the token; the token is incomplete — re-import the key pair")]
    MissingPrivateKey(String),
    #[error("unsupported key: {0}; tokenroll signs with RSA 2048-4096 and EC P-256/P-384 keys")]
    UnsupportedKey(String),
    #[error("wrong PIN{}; nothing was sent. Try again with the right PIN", pin_warning(*.count_low, *.final_try))]
    PinIncorrect { count_low: bool, final_try: bool },
    #[error("the token's PIN is locked; nothing was tried. Ask your administrator to unblock it with the SO PIN or PUK")]
    PinLocked,
    #[error("the token's PIN must be changed before the token is used (it still has its initial or transport PIN); nothing was tried. Change it with the token's own tool (for example pkcs11-tool --change-pin), then insert the token again")]
    PinToBeChanged,
    #[error("the PIN has expired; change it with the token's own tool, then try again")]
    PinExpired,
    #[error("the PIN has an invalid length or characters; check it and try again")]
    PinInvalid,
    #[error("PIN entry was cancelled; nothing was signed or sent")]
    PinCancelled,
    #[error("could not read the PIN: {0}")]
    PinSource(String),
    #[error("the token was removed; insert it again and retry")]
    TokenRemoved,
    #[error("this key wants its PIN again for every signature (CKA_ALWAYS_AUTHENTICATE), which tokenroll cannot do through the p11-kit proxy; name the token's own module with --module (for example opensc-pkcs11.so)")]
    AlwaysAuthenticateThroughProxy,
    #[error("this key wants its PIN again for every signature (CKA_ALWAYS_AUTHENTICATE), and no PIN was given for this one")]
    PinEverySignature,
    #[error("the token logged the session out (smart cards do after each signature, or when another program used them); retry, and enter the PIN again")]
    LoggedOut,
    #[error("the token has no user PIN yet; set one with the token's own tool (for example pkcs11-tool --init-pin), then retry")]
    PinNotInitialized,
    #[error("the token or its middleware ran out of memory during {0}; close other programs using the token, re-insert it and retry")]
    OutOfMemory(String),
    #[error("the key may not sign ({0}); choose a key whose CKA_SIGN is set")]
    KeyNotPermitted(String),
    #[error("the token failed during {op}: {rv}; re-insert the token and retry, and if it persists check the middleware's log")]
    Device { op: String, rv: String },
    #[error("the token's signature did not verify with its certificate ({0}); nothing was sent. The token or its driver is faulty, or the certificate does not belong to the key")]
    SelfVerify(String),
}

fn pin_warning(count_low: bool, final_try: bool) -> &'static str {
    match (count_low, final_try) {
        (_, true) => " — one more wrong PIN will LOCK the token",
        (true, false) => " — the token reports few tries left",
        _ => "",
    }
}

/// The one place that turns a `CKR_*` into a domain error. `op` names the step for the message.
pub fn map_ck(op: &str, err: CkError) -> TokenError {
    let rv = match err {
        CkError::Pkcs11(rv, _) => rv,
        CkError::LibraryLoading(e) => {
            return TokenError::ModuleLoad {
                path: String::new(),
                reason: e.to_string(),
            }
        }
        other => {
            return TokenError::Device {
                op: op.into(),
                rv: other.to_string(),
            }
        }
    };
    match rv {
        RvError::PinIncorrect => TokenError::PinIncorrect {
            count_low: false,
            final_try: false,
        },
        RvError::PinLocked => TokenError::PinLocked,
        RvError::PinExpired => TokenError::PinExpired,
        RvError::PinInvalid | RvError::PinLenRange => TokenError::PinInvalid,
        RvError::FunctionCanceled | RvError::Cancel => TokenError::PinCancelled,
        RvError::DeviceRemoved
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::SessionClosed
        | RvError::SessionHandleInvalid
        | RvError::SlotIdInvalid
        // A token deleted under us (SoftHSM2 keeps listing it) or swapped for another.
        | RvError::ObjectHandleInvalid
        | RvError::KeyHandleInvalid => TokenError::TokenRemoved,
        RvError::UserNotLoggedIn => TokenError::LoggedOut,
        RvError::UserPinNotInitialized => TokenError::PinNotInitialized,
        RvError::DeviceMemory | RvError::HostMemory => TokenError::OutOfMemory(op.into()),
        RvError::TokenWriteProtected => TokenError::Device {
            op: op.into(),
            rv: "the token is write-protected".into(),
        },
        RvError::KeyFunctionNotPermitted | RvError::KeyTypeInconsistent => {
            TokenError::KeyNotPermitted(rv.to_string())
        }
        RvError::MechanismInvalid | RvError::KeySizeRange => {
            TokenError::UnsupportedKey(format!("{op}: {rv}"))
        }
        other => TokenError::Device {
            op: op.into(),
            rv: other.to_string(),
        },
    }
}
