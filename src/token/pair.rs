//! What a module shows: slots, tokens, key kinds and signing pairs, with their validity.
//!
//! Owns: these descriptions, their URIs and the certificate checks on them. Does not own: how they
//! are read from a module (see `module`) or which one is chosen (see `select`).

use super::uri::Pkcs11Uri;
use super::TokenError;
use cryptoki::slot::Slot;
use der::Decode;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_cert::Certificate;

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
    /// CKF_USER_PIN_TO_BE_CHANGED: the PIN must be changed before the token may be used.
    #[serde(default)]
    pub pin_to_be_changed: bool,
}

impl TokenDesc {
    /// Whether `other` is another token of the same card (OpenSC shows an OpenPGP card as two
    /// tokens with one serial).
    /// Only tokens in the same reader (slot description) with the same serial are one card: an
    /// impostor that copies a card's serial and certificate into another reader is its own token.
    pub fn same_card(&self, other: &TokenDesc) -> bool {
        self.slot_description == other.slot_description
            && self.serial == other.serial
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
            let significant = &bytes[bytes.iter().take_while(|b| **b == 0).count()..];
            // Checked: a token's certificate may hold any modulus, 0 included.
            let bits = match significant.first() {
                None => 0,
                Some(first) => significant
                    .len()
                    .checked_mul(8)
                    .and_then(|b| b.checked_sub(first.leading_zeros() as usize))
                    .unwrap_or(usize::MAX),
            };
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

pub(crate) fn validity_at(cert: &Certificate, now: SystemTime) -> Validity {
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
