//! PKCS#7 / CMS SignedData: building the attached signature tokenroll sends, and decoding and
//! verifying one (our own output before it leaves, `tokenroll verify`, and the simulator).
//!
//! Owns: CMS structure, signed attributes, signature and chain verification on the host.
//! Does not own: where the signature comes from — any `signature::Signer` will do (see `token::signer`).

use crate::digest::DigestAlg;
use cms::builder::{create_signing_time_attribute, SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::ContentInfo;
use cms::signed_data::{EncapsulatedContentInfo, SignedData, SignerIdentifier};
use const_oid::db::{rfc5911, rfc5912};
use const_oid::ObjectIdentifier;
use der::referenced::OwnedToRef;
use der::{Decode, Encode};
use signature::{Keypair, Signer};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SignatureBitStringEncoding,
    SubjectPublicKeyInfoOwned,
};
use x509_cert::Certificate;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CmsError {
    #[error("could not build the PKCS#7: {0}")]
    Build(String),
    #[error("not a DER PKCS#7 SignedData: {0}")]
    Malformed(String),
    #[error("the PKCS#7 {0}")]
    Invalid(String),
    #[error("the PKCS#7 has {0} signers; exactly one is expected")]
    SignerCount(usize),
    #[error("the PKCS#7 is detached: the content is not attached")]
    Detached,
    /// The message digest or the signature does not verify with the signer's certificate.
    #[error("the PKCS#7 {0}")]
    BadSignature(String),
}

fn invalid(s: impl Into<String>) -> CmsError {
    CmsError::Invalid(s.into())
}

/// Builds an attached SignedData over `content` (eContentType id-data) with content-type,
/// message-digest and signing-time signed attributes and `cert` included. Returns DER.
pub fn build_attached<S, Sig>(
    signer: &S,
    cert: &Certificate,
    content: &[u8],
    digest: DigestAlg,
) -> Result<Vec<u8>, CmsError>
where
    S: Keypair + DynSignatureAlgorithmIdentifier + Signer<Sig>,
    Sig: SignatureBitStringEncoding,
{
    fn build(e: impl std::fmt::Display) -> CmsError {
        CmsError::Build(e.to_string())
    }
    let econtent = der::Any::new(der::Tag::OctetString, content).map_err(build)?;
    let eci = EncapsulatedContentInfo {
        econtent_type: rfc5911::ID_DATA,
        econtent: Some(econtent),
    };
    let digest_alg = AlgorithmIdentifierOwned {
        oid: digest.oid(),
        parameters: None,
    };
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    });
    let mut sib =
        SignerInfoBuilder::new(signer, sid, digest_alg.clone(), &eci, None).map_err(build)?;
    sib.add_signed_attribute(create_signing_time_attribute().map_err(build)?)
        .map_err(build)?;
    let ci = SignedDataBuilder::new(&eci)
        .add_digest_algorithm(digest_alg)
        .map_err(build)?
        .add_certificate(CertificateChoices::Certificate(cert.clone()))
        .map_err(build)?
        .add_signer_info::<S, Sig>(sib)
        .map_err(build)?
        .build()
        .map_err(build)?;
    ci.to_der().map_err(build)
}

/// What a verified SignedData says.
#[derive(Clone, Debug)]
pub struct Verified {
    pub content: Vec<u8>,
    pub digest: DigestAlg,
    pub signer: Certificate,
    pub certificates: Vec<Certificate>,
}

fn attr_value(
    attrs: &cms::signed_data::SignedAttributes,
    oid: ObjectIdentifier,
) -> Result<&der::Any, CmsError> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    let attr = found
        .next()
        .ok_or_else(|| invalid(format!("has no signed attribute {oid}")))?;
    if found.next().is_some() || attr.values.len() != 1 {
        return Err(invalid(format!("has a repeated signed attribute {oid}")));
    }
    Ok(attr.values.get(0).expect("one value"))
}

/// Decodes `der` and checks everything a relying party checks except trust: one signer, attached
/// id-data content, content-type and message-digest attributes, and the signature by the
/// included certificate's key.
pub fn verify(der: &[u8]) -> Result<Verified, CmsError> {
    let malformed = |e: der::Error| CmsError::Malformed(e.to_string());
    let ci = ContentInfo::from_der(der).map_err(malformed)?;
    if ci.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(invalid(format!(
            "is of type {}, not SignedData",
            ci.content_type
        )));
    }
    let sd: SignedData = ci.content.decode_as().map_err(malformed)?;
    if sd.encap_content_info.econtent_type != rfc5911::ID_DATA {
        return Err(invalid("content type is not id-data"));
    }
    let content = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or(CmsError::Detached)?
        .decode_as::<der::asn1::OctetString>()
        .map_err(malformed)?
        .into_bytes();
    if sd.signer_infos.0.len() != 1 {
        return Err(CmsError::SignerCount(sd.signer_infos.0.len()));
    }
    let si = sd.signer_infos.0.get(0).expect("one signer");
    let digest = DigestAlg::from_oid(&si.digest_alg.oid)
        .ok_or_else(|| invalid(format!("uses an unsupported digest {}", si.digest_alg.oid)))?;
    let certificates: Vec<Certificate> = sd
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let signer = certificates
        .iter()
        .find(|c| match &si.sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => {
                c.tbs_certificate.issuer == ias.issuer
                    && c.tbs_certificate.serial_number == ias.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                subject_key_id(c).as_deref() == Some(ski.0.as_bytes())
            }
        })
        .cloned()
        .ok_or_else(|| invalid("does not include the signer's certificate"))?;
    let attrs = si
        .signed_attrs
        .as_ref()
        .ok_or_else(|| invalid("has no signed attributes"))?;
    let ct: ObjectIdentifier = attr_value(attrs, rfc5911::ID_CONTENT_TYPE)?
        .decode_as()
        .map_err(malformed)?;
    if ct != rfc5911::ID_DATA {
        return Err(invalid("content-type attribute is not id-data"));
    }
    let md = attr_value(attrs, rfc5911::ID_MESSAGE_DIGEST)?
        .decode_as::<der::asn1::OctetString>()
        .map_err(malformed)?;
    if md.as_bytes() != digest.hash(&content).as_slice() {
        return Err(CmsError::BadSignature(
            "message-digest attribute does not match the content".into(),
        ));
    }
    let signed = attrs.to_der().map_err(malformed)?;
    verify_signature(
        &signer.tbs_certificate.subject_public_key_info,
        &si.signature_algorithm,
        Some(digest),
        &signed,
        si.signature.as_bytes(),
    )
    .map_err(|e| match e {
        CmsError::Invalid(m) => CmsError::BadSignature(m),
        e => e,
    })?;
    Ok(Verified {
        content,
        digest,
        signer,
        certificates,
    })
}

/// The digest of the one signer of `der`, read without verifying anything (for a policy that
/// refuses a weak digest before a signature's failure is reported).
pub fn signer_digest(der: &[u8]) -> Option<DigestAlg> {
    let ci = ContentInfo::from_der(der).ok()?;
    let sd: SignedData = ci.content.decode_as().ok()?;
    match sd.signer_infos.0.as_slice() {
        [si] => DigestAlg::from_oid(&si.digest_alg.oid),
        _ => None,
    }
}

fn subject_key_id(c: &Certificate) -> Option<Vec<u8>> {
    c.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
        .and_then(|e| der::asn1::OctetString::from_der(e.extn_value.as_bytes()).ok())
        .map(|o| o.into_bytes())
}

/// The digest a signature algorithm implies, if it names one (rsaEncryption does not).
fn digest_of_signature_alg(oid: &ObjectIdentifier) -> Option<DigestAlg> {
    Some(match *oid {
        rfc5912::SHA_1_WITH_RSA_ENCRYPTION => DigestAlg::Sha1,
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION | rfc5912::ECDSA_WITH_SHA_256 => DigestAlg::Sha256,
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION | rfc5912::ECDSA_WITH_SHA_384 => DigestAlg::Sha384,
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION | rfc5912::ECDSA_WITH_SHA_512 => DigestAlg::Sha512,
        _ if oid.to_string() == "1.2.840.10045.4.1" => DigestAlg::Sha1,
        _ => return None,
    })
}

/// Left-pads or truncates a hash to the curve's field size; the integer ECDSA uses is the same.
fn ecdsa_prehash(hash: &[u8], len: usize) -> Vec<u8> {
    if hash.len() >= len {
        hash[..len].to_vec()
    } else {
        let mut v = vec![0u8; len - hash.len()];
        v.extend_from_slice(hash);
        v
    }
}

/// Verifies `sig` over `msg` with `spki`. `digest` is the SignerInfo's digest (None for a
/// certificate, where the signature algorithm names it).
pub fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    sig_alg: &AlgorithmIdentifierOwned,
    digest: Option<DigestAlg>,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), CmsError> {
    use signature::hazmat::PrehashVerifier;
    let implied = digest_of_signature_alg(&sig_alg.oid);
    let digest = match (digest, implied) {
        (Some(d), Some(i)) if d != i => {
            return Err(invalid(format!(
                "signature algorithm {} disagrees with digest {}",
                sig_alg.oid, d
            )))
        }
        (Some(d), _) | (None, Some(d)) => d,
        (None, None) => {
            return Err(invalid(format!(
                "uses an unknown signature algorithm {}",
                sig_alg.oid
            )))
        }
    };
    let hash = digest.hash(msg);
    let key_oid = spki.algorithm.oid;
    let bad_sig = |what: &str| invalid(format!("signature does not verify ({what})"));
    if key_oid == rfc5912::RSA_ENCRYPTION {
        if sig_alg.oid != rfc5912::RSA_ENCRYPTION && implied.is_none() {
            return Err(invalid(format!(
                "signature algorithm {} does not fit an RSA key",
                sig_alg.oid
            )));
        }
        let key = rsa::RsaPublicKey::try_from(spki.owned_to_ref())
            .map_err(|e| invalid(format!("RSA key: {e}")))?;
        let scheme = match digest {
            DigestAlg::Sha1 => rsa::Pkcs1v15Sign::new::<sha1::Sha1>(),
            DigestAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
            DigestAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
            DigestAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
        };
        key.verify(scheme, &hash, sig)
            .map_err(|_| bad_sig("RSA PKCS#1 v1.5"))
    } else if key_oid == rfc5912::ID_EC_PUBLIC_KEY {
        let curve: ObjectIdentifier = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as().ok())
            .ok_or_else(|| invalid("EC key has no named curve"))?;
        let point = spki.subject_public_key.raw_bytes();
        if curve == const_oid::db::rfc5912::SECP_256_R_1 {
            let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| invalid("bad P-256 key"))?;
            let s = p256::ecdsa::Signature::from_der(sig)
                .map_err(|_| bad_sig("malformed ECDSA signature"))?;
            vk.verify_prehash(&ecdsa_prehash(&hash, 32), &s)
                .map_err(|_| bad_sig("ECDSA P-256"))
        } else if curve == const_oid::db::rfc5912::SECP_384_R_1 {
            let vk = p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| invalid("bad P-384 key"))?;
            let s = p384::ecdsa::Signature::from_der(sig)
                .map_err(|_| bad_sig("malformed ECDSA signature"))?;
            vk.verify_prehash(&ecdsa_prehash(&hash, 48), &s)
                .map_err(|_| bad_sig("ECDSA P-384"))
        } else {
            Err(invalid(format!("EC curve {curve} is not supported")))
        }
    } else {
        Err(invalid(format!("key algorithm {key_oid} is not supported")))
    }
}

/// Reads every certificate from a PEM file's text.
pub fn certs_from_pem(pem: &[u8]) -> Result<Vec<Certificate>, CmsError> {
    let certs = Certificate::load_pem_chain(pem)
        .map_err(|e| CmsError::Malformed(format!("PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(CmsError::Malformed("no certificate in the PEM file".into()));
    }
    Ok(certs)
}
