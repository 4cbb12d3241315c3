//! Making test tokens: initialise a SoftHSM2 token, generate a key pair on it and store a
//! self-signed certificate made by that very key (through `TokenSigner`).
//!
//! Owns: token initialisation and key-pair generation, for the demo and the test tooling.
//! Does not own: anything an enrollment does; real deployments load keys with their CA's tools.

use super::signer::TokenSigner;
use super::{map_ck, Curve, KeyHandle, KeyKind, Module, TokenDesc, TokenError, TokenSession};
use crate::digest::DigestAlg;
use crate::secret::Pin;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, CertificateType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use der::referenced::OwnedToRef;
use der::{Decode, Encode};
use spki::SubjectPublicKeyInfoOwned;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, KeyUsage, KeyUsages, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

/// What to put on a token.
#[derive(Clone, Debug)]
pub struct KeySpec {
    pub kind: KeyKind,
    pub id: Vec<u8>,
    pub label: String,
    /// RFC 4514 text, e.g. "CN=alice,O=Acme".
    pub subject: String,
    pub email: Option<String>,
    /// Seconds relative to now: negative `not_after` makes an expired certificate.
    pub not_before: i64,
    pub not_after: i64,
    /// false gives a keyEncipherment-only certificate, which is not a signing pair.
    pub signing_usage: bool,
    pub always_authenticate: bool,
    /// Issued by this CA instead of self-signed.
    pub issuer: Option<Issuer>,
}

/// A software CA that issues the token's certificate (test tooling: an organisation's CA).
#[derive(Clone)]
pub struct Issuer {
    pub cert: x509_cert::Certificate,
    pub key: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Issuer({}, <key>)", self.cert.tbs_certificate.subject)
    }
}

/// The extensions of a token's certificate.
fn extensions<S>(
    builder: &mut CertificateBuilder<'_, S>,
    spec: &KeySpec,
    spki: &SubjectPublicKeyInfoOwned,
) -> Result<(), TokenError>
where
    S: signature::Keypair + spki::DynSignatureAlgorithmIdentifier,
    S::VerifyingKey: spki::EncodePublicKey,
{
    let ext_err =
        |e: x509_cert::builder::Error| TokenError::UnsupportedKey(format!("certificate: {e}"));
    builder
        .add_extension(&BasicConstraints {
            ca: false,
            path_len_constraint: None,
        })
        .map_err(ext_err)?;
    let usage = if spec.signing_usage {
        KeyUsages::DigitalSignature | KeyUsages::NonRepudiation
    } else {
        KeyUsages::KeyEncipherment.into()
    };
    builder.add_extension(&KeyUsage(usage)).map_err(ext_err)?;
    builder
        .add_extension(
            &SubjectKeyIdentifier::try_from(spki.owned_to_ref()).map_err(|e| ext_err(e.into()))?,
        )
        .map_err(ext_err)?;
    if let Some(email) = &spec.email {
        let ia5 = der::asn1::Ia5String::new(email)
            .map_err(|e| TokenError::UnsupportedKey(e.to_string()))?;
        builder
            .add_extension(&SubjectAltName(vec![GeneralName::Rfc822Name(ia5)]))
            .map_err(ext_err)?;
    }
    Ok(())
}

impl KeySpec {
    pub fn new(kind: KeyKind, id: u8, subject: &str) -> Self {
        Self {
            kind,
            id: vec![id],
            label: format!("key{id:02x}"),
            subject: subject.into(),
            email: None,
            not_before: -3600,
            not_after: 365 * 86400,
            signing_usage: true,
            always_authenticate: false,
            issuer: None,
        }
    }
}

fn auth(pin: &Pin) -> AuthPin {
    AuthPin::from(pin.expose().to_string())
}

/// Initialises the first uninitialised slot as a token called `label`, with its SO and user PINs.
pub fn init_token(
    module: &Module,
    label: &str,
    so_pin: &Pin,
    user_pin: &Pin,
) -> Result<TokenDesc, TokenError> {
    let ctx = module.ctx();
    let free = ctx
        .get_all_slots()
        .map_err(|e| map_ck("listing slots", e))?
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|t| !t.token_initialized()))
        .ok_or_else(|| TokenError::NoToken("with a free slot to initialise".into()))?;
    ctx.init_token(free, &auth(so_pin), label)
        .map_err(|e| map_ck("initialising the token", e))?;
    // SoftHSM2 moves an initialised token to a new slot id: find it again by label.
    let token = module
        .tokens()?
        .into_iter()
        .find(|t| t.label == label)
        .ok_or_else(|| TokenError::NoToken(format!("labelled '{label}' after initialising it")))?;
    let session = ctx
        .open_rw_session(token.slot)
        .map_err(|e| map_ck("opening a session", e))?;
    session
        .login(UserType::So, Some(&auth(so_pin)))
        .map_err(|e| map_ck("SO login", e))?;
    session
        .init_pin(&auth(user_pin))
        .map_err(|e| map_ck("setting the user PIN", e))?;
    Ok(token)
}

fn time_at(offset_secs: i64) -> Result<Time, TokenError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let t = Duration::from_secs((now + offset_secs).max(0) as u64);
    let dt = der::DateTime::from_unix_duration(t)
        .map_err(|e| TokenError::UnsupportedKey(e.to_string()))?;
    Time::try_from(dt.to_system_time()).map_err(|e| TokenError::UnsupportedKey(e.to_string()))
}

fn spki_from_token(
    session: &cryptoki::session::Session,
    public: cryptoki::object::ObjectHandle,
    kind: KeyKind,
) -> Result<SubjectPublicKeyInfoOwned, TokenError> {
    use const_oid::db::rfc5912;
    let bad = |e: String| TokenError::UnsupportedKey(format!("reading the new public key: {e}"));
    match kind {
        KeyKind::Rsa { .. } => {
            let attrs = session
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(|e| map_ck("reading the public key", e))?;
            let (mut n, mut e) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Modulus(v) => n = v,
                    Attribute::PublicExponent(v) => e = v,
                    _ => {}
                }
            }
            let key = rsa::pkcs1::RsaPublicKey {
                modulus: der::asn1::UintRef::new(&n).map_err(|e| bad(e.to_string()))?,
                public_exponent: der::asn1::UintRef::new(&e).map_err(|e| bad(e.to_string()))?,
            };
            let bits = key.to_der().map_err(|e| bad(e.to_string()))?;
            Ok(SubjectPublicKeyInfoOwned {
                algorithm: spki::AlgorithmIdentifierOwned {
                    oid: rfc5912::RSA_ENCRYPTION,
                    parameters: Some(der::asn1::Null.into()),
                },
                subject_public_key: der::asn1::BitString::from_bytes(&bits)
                    .map_err(|e| bad(e.to_string()))?,
            })
        }
        KeyKind::Ec(curve) => {
            let attrs = session
                .get_attributes(public, &[AttributeType::EcPoint])
                .map_err(|e| map_ck("reading the public key", e))?;
            let Some(Attribute::EcPoint(point)) = attrs.into_iter().next() else {
                return Err(bad("no CKA_EC_POINT".into()));
            };
            // SoftHSM2 (and the standard) wrap the point in a DER OCTET STRING; some tokens do not.
            let point = der::asn1::OctetString::from_der(&point)
                .map(|o| o.into_bytes())
                .unwrap_or(point);
            let curve_oid = match curve {
                Curve::P256 => rfc5912::SECP_256_R_1,
                Curve::P384 => rfc5912::SECP_384_R_1,
            };
            Ok(SubjectPublicKeyInfoOwned {
                algorithm: spki::AlgorithmIdentifierOwned {
                    oid: rfc5912::ID_EC_PUBLIC_KEY,
                    parameters: Some(der::Any::from(&curve_oid)),
                },
                subject_public_key: der::asn1::BitString::from_bytes(&point)
                    .map_err(|e| bad(e.to_string()))?,
            })
        }
    }
}

fn curve_params(curve: Curve) -> Vec<u8> {
    let oid = match curve {
        Curve::P256 => const_oid::db::rfc5912::SECP_256_R_1,
        Curve::P384 => const_oid::db::rfc5912::SECP_384_R_1,
    };
    oid.to_der().expect("OID encodes")
}

/// Generates a key pair on the token and stores a self-signed certificate for it.
/// Returns the certificate's DER.
pub fn add_key(
    module: &Module,
    token: &TokenDesc,
    user_pin: &Pin,
    spec: &KeySpec,
) -> Result<Vec<u8>, TokenError> {
    let ctx = module.ctx();
    let session = ctx
        .open_rw_session(token.slot)
        .map_err(|e| map_ck("opening a session", e))?;
    session
        .login(UserType::User, Some(&auth(user_pin)))
        .map_err(|e| map_ck("login", e))?;
    let label = spec.label.as_bytes().to_vec();
    let common = |extra: Vec<Attribute>| {
        let mut v = vec![
            Attribute::Token(true),
            Attribute::Id(spec.id.clone()),
            Attribute::Label(label.clone()),
        ];
        v.extend(extra);
        v
    };
    let (mech, public_t) = match spec.kind {
        KeyKind::Rsa { bits } => (
            Mechanism::RsaPkcsKeyPairGen,
            common(vec![
                Attribute::ModulusBits((bits as u64).into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Verify(true),
                Attribute::Private(false),
            ]),
        ),
        KeyKind::Ec(curve) => (
            Mechanism::EccKeyPairGen,
            common(vec![
                Attribute::EcParams(curve_params(curve)),
                Attribute::Verify(true),
                Attribute::Private(false),
            ]),
        ),
    };
    let private_t = common(vec![
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Sign(true),
        Attribute::AlwaysAuthenticate(spec.always_authenticate),
    ]);
    let (public, private) = session
        .generate_key_pair(&mech, &public_t, &private_t)
        .map_err(|e| map_ck("generating a key pair", e))?;
    let spki = spki_from_token(&session, public, spec.kind)?;

    let subject = Name::from_str(&spec.subject)
        .map_err(|e| TokenError::UnsupportedKey(format!("subject: {e}")))?;
    let validity = Validity {
        not_before: time_at(spec.not_before)?,
        not_after: time_at(spec.not_after)?,
    };
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] &= 0x7f;
    let tsession = TokenSession {
        module,
        session,
        token: token.clone(),
        context_pin: Some(user_pin.clone()),
    };
    let key = KeyHandle {
        handle: private,
        always_authenticate: spec.always_authenticate,
    };
    let signer = TokenSigner::new(&tsession, key, spec.kind, DigestAlg::Sha256, spki.clone());
    let ext_err =
        |e: x509_cert::builder::Error| TokenError::UnsupportedKey(format!("certificate: {e}"));
    let serial =
        SerialNumber::new(&serial).map_err(|e| TokenError::UnsupportedKey(e.to_string()))?;
    let cert = match &spec.issuer {
        Some(issuer) => {
            let mut builder = CertificateBuilder::new(
                Profile::Manual {
                    issuer: Some(issuer.cert.tbs_certificate.subject.clone()),
                },
                serial,
                validity,
                subject.clone(),
                spki.clone(),
                &issuer.key,
            )
            .map_err(ext_err)?;
            extensions(&mut builder, spec, &spki)?;
            builder
                .build::<p256::ecdsa::DerSignature>()
                .map_err(ext_err)?
        }
        None => {
            let mut builder = CertificateBuilder::new(
                Profile::Manual { issuer: None },
                serial,
                validity,
                subject.clone(),
                spki.clone(),
                &signer,
            )
            .map_err(ext_err)?;
            extensions(&mut builder, spec, &spki)?;
            builder.build::<super::TokenSignature>().map_err(|e| {
                signer
                    .take_error()
                    .unwrap_or_else(|| TokenError::UnsupportedKey(format!("certificate: {e}")))
            })?
        }
    };
    let der = cert
        .to_der()
        .map_err(|e| TokenError::UnsupportedKey(e.to_string()))?;
    tsession
        .session
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(spec.id.clone()),
            Attribute::Label(label.clone()),
            Attribute::Subject(
                subject
                    .to_der()
                    .map_err(|e| TokenError::UnsupportedKey(e.to_string()))?,
            ),
            Attribute::Value(der.clone()),
        ])
        .map_err(|e| map_ck("storing the certificate", e))?;
    Ok(der)
}
