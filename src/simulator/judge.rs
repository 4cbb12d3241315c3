//! The simulator's own judgement of a PKCS#7, written apart from `crate::cms` on purpose: it
//! verifies signatures with `ring` (RustCrypto only for the digest/curve pairs ring lacks), so a
//! mistake in the client's verifier cannot also bless the client's output here.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use const_oid::db::{rfc5911, rfc5912};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use sha2::Digest;
use x509_cert::Certificate;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Some(match *oid {
            rfc5912::ID_SHA_1 => Hash::Sha1,
            rfc5912::ID_SHA_256 => Hash::Sha256,
            rfc5912::ID_SHA_384 => Hash::Sha384,
            rfc5912::ID_SHA_512 => Hash::Sha512,
            _ => return None,
        })
    }

    /// CENTAGATE's `algorithm` code for this digest.
    pub fn code(self) -> &'static str {
        match self {
            Hash::Sha1 => "0",
            Hash::Sha256 => "1",
            Hash::Sha384 => "2",
            Hash::Sha512 => "3",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha1 => "sha1",
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

pub struct Judged {
    pub content: Vec<u8>,
    pub hash: Hash,
    pub signer: Certificate,
}

/// Verifies `sig` over `msg` by the key in `cert` with `hash`.
fn verify(cert: &Certificate, hash: Hash, msg: &[u8], sig: &[u8]) -> Result<(), String> {
    use ring::signature as rs;
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let key = spki.subject_public_key.raw_bytes();
    let alg: &dyn rs::VerificationAlgorithm = if spki.algorithm.oid == rfc5912::RSA_ENCRYPTION {
        match hash {
            Hash::Sha1 => &rs::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => &rs::RSA_PKCS1_2048_8192_SHA256,
            Hash::Sha384 => &rs::RSA_PKCS1_2048_8192_SHA384,
            Hash::Sha512 => &rs::RSA_PKCS1_2048_8192_SHA512,
        }
    } else if spki.algorithm.oid == rfc5912::ID_EC_PUBLIC_KEY {
        let curve: ObjectIdentifier = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as().ok())
            .ok_or("EC key without a named curve")?;
        match (curve, hash) {
            (rfc5912::SECP_256_R_1, Hash::Sha256) => &rs::ECDSA_P256_SHA256_ASN1,
            (rfc5912::SECP_256_R_1, Hash::Sha384) => &rs::ECDSA_P256_SHA384_ASN1,
            (rfc5912::SECP_384_R_1, Hash::Sha256) => &rs::ECDSA_P384_SHA256_ASN1,
            (rfc5912::SECP_384_R_1, Hash::Sha384) => &rs::ECDSA_P384_SHA384_ASN1,
            (c, h) => return verify_ecdsa_prehash(c, key, &h.digest(msg), sig),
        }
    } else {
        return Err(format!("unsupported key algorithm {}", spki.algorithm.oid));
    };
    rs::UnparsedPublicKey::new(alg, key)
        .verify(msg, sig)
        .map_err(|_| "signature does not verify".to_string())
}

/// ECDSA over a digest ring has no pairing for (SHA-1, SHA-512). The digest becomes the integer
/// ECDSA signs: cut to the field size, or zero-extended on the left when shorter (same value).
fn verify_ecdsa_prehash(
    curve: ObjectIdentifier,
    key: &[u8],
    digest: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    use signature::hazmat::PrehashVerifier;
    let fit = |n: usize| -> Vec<u8> {
        let mut v = vec![0u8; n.saturating_sub(digest.len())];
        v.extend_from_slice(&digest[..digest.len().min(n)]);
        v
    };
    let bad = |_| "signature does not verify".to_string();
    match curve {
        rfc5912::SECP_256_R_1 => {
            let k = p256::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| "bad P-256 key")?;
            let s = p256::ecdsa::Signature::from_der(sig)
                .map_err(|_| "bad ECDSA signature encoding")?;
            k.verify_prehash(&fit(32), &s).map_err(bad)
        }
        rfc5912::SECP_384_R_1 => {
            let k = p384::ecdsa::VerifyingKey::from_sec1_bytes(key).map_err(|_| "bad P-384 key")?;
            let s = p384::ecdsa::Signature::from_der(sig)
                .map_err(|_| "bad ECDSA signature encoding")?;
            k.verify_prehash(&fit(48), &s).map_err(bad)
        }
        c => Err(format!("unsupported curve {c}")),
    }
}

/// Judges an attached SignedData as CENTAGATE would before binding its certificate.
pub fn judge(der: &[u8]) -> Result<Judged, String> {
    let ci = ContentInfo::from_der(der).map_err(|e| format!("not a PKCS#7: {e}"))?;
    if ci.content_type != rfc5911::ID_SIGNED_DATA {
        return Err("not SignedData".into());
    }
    let sd: SignedData = ci
        .content
        .decode_as()
        .map_err(|e| format!("bad SignedData: {e}"))?;
    if sd.encap_content_info.econtent_type != rfc5911::ID_DATA {
        return Err("content is not id-data".into());
    }
    let content = match &sd.encap_content_info.econtent {
        Some(any) => any
            .decode_as::<der::asn1::OctetString>()
            .map_err(|e| e.to_string())?
            .into_bytes(),
        None => return Err("content is not attached".into()),
    };
    let si = sd.signer_infos.0.iter().next().ok_or("no SignerInfo")?;
    let hash = Hash::from_oid(&si.digest_alg.oid).ok_or("unsupported digest")?;
    let SignerIdentifier::IssuerAndSerialNumber(ias) = &si.sid else {
        return Err("signer not identified by issuer and serial".into());
    };
    let signer = sd
        .certificates
        .as_ref()
        .ok_or("no certificate in the PKCS#7")?
        .0
        .iter()
        .find_map(|c| match c {
            CertificateChoices::Certificate(c)
                if c.tbs_certificate.issuer == ias.issuer
                    && c.tbs_certificate.serial_number == ias.serial_number =>
            {
                Some(c.clone())
            }
            _ => None,
        })
        .ok_or("the signer's certificate is not in the PKCS#7")?;
    let attrs = si.signed_attrs.as_ref().ok_or("no signed attributes")?;
    let one = |oid: ObjectIdentifier| -> Result<der::Any, String> {
        let a = attrs
            .iter()
            .find(|a| a.oid == oid)
            .ok_or(format!("signed attribute {oid} missing"))?;
        a.values
            .iter()
            .next()
            .cloned()
            .ok_or(format!("signed attribute {oid} empty"))
    };
    let ct: ObjectIdentifier = one(rfc5911::ID_CONTENT_TYPE)?
        .decode_as()
        .map_err(|e| e.to_string())?;
    if ct != rfc5911::ID_DATA {
        return Err("content-type attribute is not id-data".into());
    }
    let md: der::asn1::OctetString = one(rfc5911::ID_MESSAGE_DIGEST)?
        .decode_as()
        .map_err(|e| e.to_string())?;
    if md.as_bytes() != hash.digest(&content) {
        return Err("message digest does not match the content".into());
    }
    let signed = attrs.to_der().map_err(|e| e.to_string())?;
    verify(&signer, hash, &signed, si.signature.as_bytes())?;
    Ok(Judged {
        content,
        hash,
        signer,
    })
}

/// True when the signer's certificate is trusted: it is in `trust` itself (dates checked), or
/// a valid path leads from it to a CA in `trust`.
pub fn trusted(signer: &Certificate, trust: &[Certificate]) -> bool {
    // The same path validation as `tokenroll verify --trust` (rustls-webpki underneath).
    crate::chain::verify_chain(signer, &[], trust, std::time::SystemTime::now()).is_ok()
}
