//! The PKCS#11 boundary: module discovery and loading, slots and tokens, signing pairs, PIN login,
//! raw signing, and the mapping of every `CKR_*` code to a domain error a person can act on.
//!
//! Owns: everything `cryptoki` — no other module names it. Does not own: CMS (see `cms`), where a
//! PIN comes from (see `ui`), or the order of an enrollment (see `enroll`).

pub mod provision;
pub mod signer;
pub mod uri;

use crate::secret::Pin;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, Rv, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use der::Decode;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use uri::Pkcs11Uri;
use x509_cert::Certificate;

pub use signer::{TokenSignature, TokenSigner};

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

/// Where PKCS#11 modules live on Linux distributions, most specific first.
fn library_dirs() -> Vec<PathBuf> {
    let multiarch = format!("/usr/lib/{}-linux-gnu", std::env::consts::ARCH);
    [
        multiarch.as_str(),
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
    ]
    .iter()
    .map(PathBuf::from)
    .collect()
}

/// The p11-kit proxy (every registered module), else OpenSC, else SoftHSM2.
pub fn discover_module() -> Result<PathBuf, TokenError> {
    let names = [
        "p11-kit-proxy.so",
        "pkcs11/p11-kit-proxy.so",
        "opensc-pkcs11.so",
        "pkcs11/opensc-pkcs11.so",
        "softhsm/libsofthsm2.so",
        "libsofthsm2.so",
    ];
    for name in names {
        for dir in library_dirs() {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(TokenError::NoModule(names.join(", ")))
}

/// SoftHSM2's module, which the demo and the test tooling need specifically.
pub fn softhsm_module() -> Option<PathBuf> {
    library_dirs()
        .into_iter()
        .flat_map(|d| [d.join("softhsm/libsofthsm2.so"), d.join("libsofthsm2.so")])
        .find(|p| p.is_file())
}

/// A slot (a reader, or a software token's place), as `tokens` reports it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SlotDesc {
    pub description: String,
    pub manufacturer: String,
    pub token_present: bool,
    pub removable: bool,
    pub hardware: bool,
}

/// A token as found in a slot; identified by label and serial, never by slot id.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenDesc {
    pub label: String,
    pub serial: String,
    pub manufacturer: String,
    pub model: String,
    #[serde(skip)]
    pub slot: Slot,
    pub slot_description: String,
    pub pin_pad: bool,
    pub login_required: bool,
    pub pin_count_low: bool,
    pub pin_final_try: bool,
    pub pin_locked: bool,
}

impl TokenDesc {
    /// Whether `other` is another token of the same card (OpenSC shows an OpenPGP card as two
    /// tokens with one serial).
    pub fn same_card(&self, other: &TokenDesc) -> bool {
        self.serial == other.serial
            && self.manufacturer == other.manufacturer
            && self.model == other.model
    }

    pub fn display_name(&self) -> String {
        format!("'{}' (serial {})", self.label, self.serial)
    }

    fn uri_base(&self) -> Pkcs11Uri {
        Pkcs11Uri {
            token: Some(self.label.clone()),
            serial: Some(self.serial.clone()),
            manufacturer: Some(self.manufacturer.clone()),
            model: Some(self.model.clone()),
            ..Default::default()
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    /// Bytes in the group order: an ECDSA input longer than this is cut to its leftmost bytes.
    pub fn order_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { bits: usize },
    Ec(Curve),
}

impl KeyKind {
    pub fn describe(self) -> String {
        match self {
            KeyKind::Rsa { bits } => format!("RSA-{bits}"),
            KeyKind::Ec(Curve::P256) => "EC P-256".into(),
            KeyKind::Ec(Curve::P384) => "EC P-384".into(),
        }
    }

    /// The kind of key a certificate's SubjectPublicKeyInfo holds, if tokenroll can sign with it.
    pub fn from_spki(spki: &spki::SubjectPublicKeyInfoOwned) -> Result<Self, TokenError> {
        use const_oid::db::rfc5912;
        let oid = spki.algorithm.oid;
        if oid == rfc5912::RSA_ENCRYPTION {
            let key = rsa::pkcs1::RsaPublicKey::from_der(spki.subject_public_key.raw_bytes())
                .map_err(|e| TokenError::UnsupportedKey(format!("bad RSA public key: {e}")))?;
            let bytes = key.modulus.as_bytes();
            let lead = bytes.iter().take_while(|b| **b == 0).count();
            let bits = (bytes.len() - lead) * 8
                - bytes.get(lead).map_or(8, |b| b.leading_zeros() as usize);
            if !(2048..=4096).contains(&bits) {
                return Err(TokenError::UnsupportedKey(format!("RSA-{bits}")));
            }
            Ok(KeyKind::Rsa { bits })
        } else if oid == rfc5912::ID_EC_PUBLIC_KEY {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<const_oid::ObjectIdentifier>().ok());
            match curve {
                Some(c) if c == rfc5912::SECP_256_R_1 => Ok(KeyKind::Ec(Curve::P256)),
                Some(c) if c == rfc5912::SECP_384_R_1 => Ok(KeyKind::Ec(Curve::P384)),
                Some(c) => Err(TokenError::UnsupportedKey(format!("EC curve {c}"))),
                None => Err(TokenError::UnsupportedKey(
                    "EC key without a named curve".into(),
                )),
            }
        } else {
            Err(TokenError::UnsupportedKey(format!(
                "public key algorithm {oid}"
            )))
        }
    }
}

/// Whether a certificate may be used now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validity {
    Valid,
    Expired(String),
    NotYetValid(String),
}

/// A certificate on a token whose key may sign: the unit a person chooses.
#[derive(Clone, Debug)]
pub struct SigningPair {
    pub token: TokenDesc,
    pub id: Vec<u8>,
    pub object_label: String,
    pub cert: Certificate,
    pub cert_der: Vec<u8>,
    pub kind: KeyKind,
    pub validity: Validity,
    /// The public key object with the pair's CKA_ID may verify but not encrypt: a signature key.
    /// Decides between copies of one certificate that a card shows on several tokens.
    pub signature_key: bool,
}

impl SigningPair {
    pub fn uri(&self) -> Pkcs11Uri {
        Pkcs11Uri {
            id: Some(self.id.clone()),
            object: (!self.object_label.is_empty()).then(|| self.object_label.clone()),
            ..self.token.uri_base()
        }
    }

    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    pub fn describe(&self) -> String {
        format!(
            "{}  {}  {}",
            self.uri(),
            self.subject(),
            self.kind.describe()
        )
    }
}

pub fn unix_time(t: &x509_cert::time::Time) -> SystemTime {
    UNIX_EPOCH + t.to_unix_duration()
}

pub fn fmt_time(t: &x509_cert::time::Time) -> String {
    t.to_date_time().to_string()
}

fn validity_at(cert: &Certificate, now: SystemTime) -> Validity {
    let v = &cert.tbs_certificate.validity;
    if now < unix_time(&v.not_before) {
        Validity::NotYetValid(fmt_time(&v.not_before))
    } else if now > unix_time(&v.not_after) {
        Validity::Expired(fmt_time(&v.not_after))
    } else {
        Validity::Valid
    }
}

/// digitalSignature or nonRepudiation, or no keyUsage extension at all.
pub fn key_usage_allows_signing(cert: &Certificate) -> bool {
    use x509_cert::ext::pkix::{KeyUsage, KeyUsages};
    let ku = cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_KEY_USAGE);
    match ku.and_then(|e| KeyUsage::from_der(e.extn_value.as_bytes()).ok()) {
        None => ku.is_none(),
        Some(ku) => {
            ku.0.contains(KeyUsages::DigitalSignature) || ku.0.contains(KeyUsages::NonRepudiation)
        }
    }
}

/// What the person asked for: a token label and/or a URI. Both empty selects anything.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub token_label: Option<String>,
    pub uri: Option<Pkcs11Uri>,
}

impl Selector {
    fn matches_token(&self, t: &TokenDesc) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.token_label, &t.label)
            && self.uri.as_ref().is_none_or(|u| {
                eq(&u.token, &t.label)
                    && eq(&u.serial, &t.serial)
                    && eq(&u.manufacturer, &t.manufacturer)
                    && eq(&u.model, &t.model)
            })
    }

    fn matches_pair(&self, p: &SigningPair) -> bool {
        self.matches_token(&p.token)
            && self.uri.as_ref().is_none_or(|u| {
                u.id.as_ref().is_none_or(|id| *id == p.id)
                    && u.object.as_ref().is_none_or(|o| *o == p.object_label)
                    && u.object_type
                        .as_deref()
                        .is_none_or(|t| t == "private" || t == "cert")
            })
    }

    pub fn describe(&self) -> String {
        match (&self.token_label, &self.uri) {
            (_, Some(u)) => format!("matching {u}"),
            (Some(l), None) => format!("labelled '{l}'"),
            (None, None) => "at all".into(),
        }
    }
}

/// Picks the one signing pair the selector means. Pure, so every rule is unit-tested.
pub fn choose_pair(
    tokens: &[TokenDesc],
    pairs: Vec<SigningPair>,
    sel: &Selector,
) -> Result<SigningPair, TokenError> {
    let matching_tokens: Vec<&TokenDesc> = tokens.iter().filter(|t| sel.matches_token(t)).collect();
    if matching_tokens.is_empty() {
        return Err(TokenError::NoToken(sel.describe()));
    }
    let matching: Vec<SigningPair> = pairs.into_iter().filter(|p| sel.matches_pair(p)).collect();
    if matching.is_empty() {
        let names: Vec<String> = matching_tokens.iter().map(|t| t.display_name()).collect();
        return Err(TokenError::NoSigningPair(names.join(", ")));
    }
    let (valid, invalid): (Vec<_>, Vec<_>) = matching
        .into_iter()
        .partition(|p| p.validity == Validity::Valid);
    match valid.len() {
        1 => Ok(valid.into_iter().next().expect("one")),
        0 => {
            let why: Vec<String> = invalid
                .iter()
                .map(|p| match &p.validity {
                    Validity::Expired(t) => {
                        format!("the certificate {} expired on {t}", p.subject())
                    }
                    Validity::NotYetValid(t) => {
                        format!("the certificate {} is not valid before {t}", p.subject())
                    }
                    Validity::Valid => unreachable!(),
                })
                .collect();
            Err(TokenError::CertificateNotValid(why.join("; ")))
        }
        _ => Err(TokenError::Ambiguous(
            valid
                .iter()
                .map(|p| format!("  {}", p.describe()))
                .collect(),
        )),
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

/// One card can show the same certificate on several of its tokens: OpenSC presents an OpenPGP
/// card as a "User PIN" token and a "User PIN (sig)" token with one serial, and copies the card's
/// certificate to each key slot, though only the signature key exists. Keeps one copy of each
/// certificate per card — the one whose public key is a signature key, else the first.
pub fn merge_card_copies(pairs: Vec<SigningPair>) -> Vec<SigningPair> {
    let mut out: Vec<SigningPair> = Vec::with_capacity(pairs.len());
    for p in pairs {
        let same = out
            .iter()
            .position(|q| q.cert_der == p.cert_der && q.token.same_card(&p.token));
        match same {
            Some(i) if p.signature_key && !out[i].signature_key => out[i] = p,
            Some(_) => {}
            None => out.push(p),
        }
    }
    out
}

/// A loaded and initialized PKCS#11 module.
pub struct Module {
    ctx: Pkcs11,
    path: PathBuf,
    /// The raw function list, for the one call cryptoki has no wrapper for (see `sign_raw`).
    raw: RawFunctions,
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
        let mut out = Vec::new();
        for slot in self.slots_with_token()? {
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
            });
        }
        Ok(out)
    }

    /// The token's flags now, read from its slot; a different token there means ours was removed.
    fn refresh(&self, token: &TokenDesc) -> Result<TokenDesc, TokenError> {
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
            ..token.clone()
        })
    }

    /// Whether `token` left its slot, watched for up to a second: after a removal the reader
    /// may take a polling interval to say so. (C_GetSessionInfo is no presence check: it can
    /// keep answering OK for seconds after the card is gone.)
    fn gone(&self, token: &TokenDesc) -> bool {
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
                continue;
            };
            let Ok(cert) = Certificate::from_der(&der) else {
                tracing::warn!(token = %token.label, "skipping a certificate that does not parse");
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
        Ok(out)
    }

    /// All tokens' pairs, and the one the selector means.
    pub fn select(&self, sel: &Selector) -> Result<SigningPair, TokenError> {
        let tokens = self.tokens()?;
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
        if let Err(e) = self.raw.finalize() {
            tracing::debug!(error = %e, "C_Finalize");
        }
    }

    /// For provisioning only.
    pub(crate) fn ctx(&self) -> &Pkcs11 {
        &self.ctx
    }
}

/// How the PIN for a login is supplied.
pub enum Login<'p> {
    Pin(&'p Pin),
    /// PIN pad or other protected authentication path: the module asks the reader.
    ProtectedPath,
}

/// An open session on one token, with the key found after login.
pub struct TokenSession<'m> {
    module: &'m Module,
    session: Session,
    token: TokenDesc,
    /// Kept only for keys with CKA_ALWAYS_AUTHENTICATE, which need it again for every signature.
    context_pin: Option<Pin>,
}

/// A private key on the token, ready to sign.
#[derive(Clone, Copy, Debug)]
pub struct KeyHandle {
    handle: ObjectHandle,
    always_authenticate: bool,
}

impl TokenSession<'_> {
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

/// The module's function list, loaded a second time through the same dlopen handle (same state).
struct RawFunctions {
    _lib: libloading::Library,
    list: *const cryptoki_sys::CK_FUNCTION_LIST,
}

// SAFETY: the function list is immutable after C_GetFunctionList and PKCS#11 functions are
// thread-safe once C_Initialize was called with OS locking.
unsafe impl Send for RawFunctions {}
// SAFETY: as for Send above.
unsafe impl Sync for RawFunctions {}

impl RawFunctions {
    fn load(path: &Path) -> Result<Self, String> {
        // SAFETY: the same library is already loaded and initialized by cryptoki.
        unsafe {
            let lib = libloading::Library::new(path).map_err(|e| e.to_string())?;
            let get: libloading::Symbol<'_, cryptoki_sys::CK_C_GetFunctionList> =
                lib.get(b"C_GetFunctionList").map_err(|e| e.to_string())?;
            let get = (*get).ok_or("C_GetFunctionList is null")?;
            let mut list = std::ptr::null_mut();
            let rv = get(&mut list);
            if rv != cryptoki_sys::CKR_OK || list.is_null() {
                return Err(format!("C_GetFunctionList returned {rv:#x}"));
            }
            Ok(RawFunctions { _lib: lib, list })
        }
    }

    fn sign(
        &self,
        session: cryptoki_sys::CK_SESSION_HANDLE,
        data: &[u8],
    ) -> Result<Vec<u8>, CkError> {
        // SAFETY: `list` came from the module; buffers are sized per the PKCS#11 two-call convention.
        unsafe {
            let f = (*self.list).C_Sign.ok_or(CkError::NullFunctionPointer)?;
            let mut len: cryptoki_sys::CK_ULONG = 0;
            let rv = f(
                session,
                data.as_ptr() as *mut u8,
                data.len() as _,
                std::ptr::null_mut(),
                &mut len,
            );
            Rv::from(rv).into_result(Function::Sign)?;
            let mut out = vec![0u8; len as usize];
            let rv = f(
                session,
                data.as_ptr() as *mut u8,
                data.len() as _,
                out.as_mut_ptr(),
                &mut len,
            );
            Rv::from(rv).into_result(Function::Sign)?;
            out.truncate(len as usize);
            Ok(out)
        }
    }

    fn finalize(&self) -> Result<(), CkError> {
        // SAFETY: `list` came from the module; C_Finalize takes a null reserved pointer.
        unsafe {
            let f = (*self.list)
                .C_Finalize
                .ok_or(CkError::NullFunctionPointer)?;
            Rv::from(f(std::ptr::null_mut())).into_result(Function::Finalize)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
