//! Path validation of a signer's certificate, as a CA would do it: `tokenroll verify --trust`,
//! the simulator's `--trust`, and later the relay's `org_ca` all call [`verify_chain`]. Every
//! certificate in the trust file is a trust anchor as it is — self-signed or not, as
//! `openssl verify -partial_chain` treats it — so a trust file may name an intermediate CA, or
//! the signer's own certificate.
//!
//! Built on rustls-webpki (signatures, validity of the end entity and intermediates,
//! basicConstraints cA and pathLenConstraint, name constraints), with what webpki leaves to its
//! caller for signing certificates: any extended key usage is accepted (the signer's keyUsage is
//! the token's check), an issuer whose keyUsage is present must allow keyCertSign, and the trust
//! anchor itself must be within its validity and, when it issued others, a CA.
//!
//! Owns: trust decisions about certificate paths. Does not own: CMS (see `cms`), TLS server
//! certificates (rustls does those).

use der::{Decode, Encode};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};
use webpki::{EndEntityCert, KeyPurposeIdIter};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, KeyUsages};
use x509_cert::Certificate;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChainError {
    #[error("the signer's certificate is not trusted: {0}")]
    Untrusted(String),
    #[error("a certificate cannot be read for path validation: {0}")]
    Malformed(String),
}

const ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384_ABSENT_PARAMS,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512_ABSENT_PARAMS,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// A signing certificate may carry any extended key usage (emailProtection, clientAuth, a
/// vendor's document signing): none is required.
struct AnyPurpose;

impl webpki::ExtendedKeyUsageValidator for AnyPurpose {
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for purpose in iter {
            purpose?;
        }
        Ok(())
    }
}

fn within_validity(c: &Certificate, now: SystemTime) -> Result<(), String> {
    let v = &c.tbs_certificate.validity;
    if now < v.not_before.to_system_time() || now > v.not_after.to_system_time() {
        return Err(format!(
            "{} is outside its validity period ({} .. {})",
            c.tbs_certificate.subject, v.not_before, v.not_after
        ));
    }
    Ok(())
}

fn extension<'c, T: Decode<'c>>(c: &'c Certificate, oid: const_oid::ObjectIdentifier) -> Option<T> {
    c.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == oid)
        .and_then(|e| T::from_der(e.extn_value.as_bytes()).ok())
}

/// An issuer's own checks: a CA, allowed to sign certificates when it has a keyUsage, and with
/// no more CA certificates below it (`cas_below`) than its pathLenConstraint allows. For the trust
/// anchor (`anchor`), as OpenSSL's non-strict `X509_check_ca`: a self-signed certificate without
/// extensions (an X.509 v1 root) or one whose keyUsage allows keyCertSign counts as a CA too.
fn fit_to_issue(c: &Certificate, cas_below: usize, anchor: bool) -> Result<(), String> {
    use const_oid::db::rfc5280::{ID_CE_BASIC_CONSTRAINTS, ID_CE_KEY_USAGE};
    let subject = &c.tbs_certificate.subject;
    let bc = extension::<BasicConstraints>(c, ID_CE_BASIC_CONSTRAINTS);
    let ku = extension::<KeyUsage>(c, ID_CE_KEY_USAGE);
    let v1_root = c.tbs_certificate.extensions.is_none()
        && c.tbs_certificate.issuer == c.tbs_certificate.subject;
    let ku_ca = ku.is_some_and(|k| k.0.contains(KeyUsages::KeyCertSign));
    let ca = match &bc {
        Some(b) => b.ca,
        None => anchor && (v1_root || ku_ca),
    };
    if !ca {
        return Err(format!(
            "{subject} issued a certificate but is not a CA (no basicConstraints cA)"
        ));
    }
    if bc
        .and_then(|b| b.path_len_constraint)
        .is_some_and(|n| cas_below > usize::from(n))
    {
        return Err(format!(
            "the chain is longer than {subject}'s pathLenConstraint allows"
        ));
    }
    if let Some(ku) = ku {
        if !ku.0.contains(KeyUsages::KeyCertSign) {
            return Err(format!(
                "{subject} issued a certificate but its keyUsage does not allow keyCertSign"
            ));
        }
    }
    Ok(())
}

fn explain(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => "no certificate in the trust file issued it (directly, or through \
                             the certificates the PKCS#7 carries)"
            .into(),
        E::CertExpired { .. } | E::CertNotValidYet { .. } | E::InvalidCertValidity => {
            "a certificate in its chain is outside its validity period".into()
        }
        E::EndEntityUsedAsCa => "a certificate in its chain that is not a CA (basicConstraints) \
                                 issued another: not a valid chain"
            .into(),
        E::CaUsedAsEndEntity => "the signer's certificate is a CA certificate, not an end \
                                 entity; put that certificate itself in the trust file to trust \
                                 it as it is"
            .into(),
        E::PathLenConstraintViolated => {
            "the chain is longer than an issuer's pathLenConstraint allows".into()
        }
        E::NameConstraintViolation => "an issuer's name constraints exclude it".into(),
        E::CertRevoked => "it is revoked (listed in a CRL of org_crl)".into(),
        E::InvalidCrlSignatureForPublicKey | E::UnsupportedCrlSignatureAlgorithmContext(_) => {
            "a CRL of its issuer does not verify: check org_crl".into()
        }
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a certificate in its chain is signed with an algorithm tokenroll does not accept \
             (SHA-1 or an unknown one)"
                .into()
        }
        E::InvalidSignatureForPublicKey => {
            "a signature in its chain does not verify: the chain is forged or damaged".into()
        }
        other => format!("path validation failed ({other:?})"),
    }
}

/// A certificate revocation list, checked (signature, issuer) when a path is validated with it.
pub type Crl = webpki::CertRevocationList<'static>;

/// Reads CRLs from a file's bytes: PEM (`-----BEGIN X509 CRL-----`, one or more) or one DER CRL.
pub fn crls_from_bytes(bytes: &[u8]) -> Result<Vec<Crl>, ChainError> {
    let ders = if bytes.starts_with(b"-----") || bytes.iter().take(64).all(u8::is_ascii) {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateRevocationListDer::pem_slice_iter(bytes)
            .map(|r| r.map(|d| d.as_ref().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ChainError::Malformed(format!("a CRL's PEM: {e}")))?
    } else {
        vec![bytes.to_vec()]
    };
    if ders.is_empty() {
        return Err(ChainError::Malformed(
            "no CRL in the file (PEM X509 CRL blocks or one DER CRL)".into(),
        ));
    }
    ders.iter()
        .map(|d| {
            webpki::OwnedCertRevocationList::from_der(d)
                .map(Crl::from)
                .map_err(|e| ChainError::Malformed(format!("a CRL: {e:?}")))
        })
        .collect()
}

/// Checks that `leaf` chains to one of `trust` through `intermediates`, as a CA would: see the
/// module header. A trust file that holds `leaf` itself (a self-signed test certificate) trusts
/// it as it is, its dates checked.
pub fn verify_chain(
    leaf: &Certificate,
    intermediates: &[Certificate],
    trust: &[Certificate],
    now: SystemTime,
) -> Result<(), ChainError> {
    verify_chain_with_crls(leaf, intermediates, trust, &[], now)
}

/// [`verify_chain`], and no certificate of the path (but the anchor) is revoked by `crls`. A
/// certificate whose issuer has no CRL among them is not judged by any (the CRLs may cover
/// only some of the organisation's CAs).
pub fn verify_chain_with_crls(
    leaf: &Certificate,
    intermediates: &[Certificate],
    trust: &[Certificate],
    crls: &[Crl],
    now: SystemTime,
) -> Result<(), ChainError> {
    let untrusted = ChainError::Untrusted;
    if trust.contains(leaf) {
        return within_validity(leaf, now).map_err(untrusted);
    }
    let crl_refs: Vec<&Crl> = crls.iter().collect();
    let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
        .ok()
        .map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::Chain)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .build()
        });
    let der = |c: &Certificate| {
        c.to_der()
            .map(CertificateDer::from)
            .map_err(|e| ChainError::Malformed(e.to_string()))
    };
    let leaf_der = der(leaf)?;
    let end_entity =
        EndEntityCert::try_from(&leaf_der).map_err(|e| ChainError::Malformed(format!("{e:?}")))?;
    let trust_der = trust.iter().map(der).collect::<Result<Vec<_>, _>>()?;
    let anchors = trust_der
        .iter()
        .map(|c| {
            webpki::anchor_from_trusted_cert(c)
                .map(|a| a.to_owned())
                .map_err(|e| ChainError::Malformed(format!("a trusted certificate: {e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let others = intermediates
        .iter()
        .filter(|c| *c != leaf)
        .map(der)
        .collect::<Result<Vec<_>, _>>()?;
    let time = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
    // What webpki leaves to us, checked on each path it builds; the first reason is kept.
    let reason = RefCell::new(None::<String>);
    let check_path = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
        let result = (|| {
            // Leaf-first: the n-th intermediate has n CA certificates below it.
            let mut cas = 0;
            for cert in path.intermediate_certificates() {
                let c = Certificate::from_der(cert.der().as_ref()).map_err(|e| e.to_string())?;
                fit_to_issue(&c, cas, false)?;
                cas += 1;
            }
            let anchor = anchors
                .iter()
                .position(|a| std::ptr::eq(a, path.anchor()))
                .and_then(|i| trust.get(i))
                .ok_or("the trust anchor used is not in the trust file")?;
            within_validity(anchor, now)?;
            fit_to_issue(anchor, cas, true)
        })();
        result.map_err(|why| {
            reason.borrow_mut().get_or_insert(why);
            webpki::Error::UnknownIssuer
        })
    };
    end_entity
        .verify_for_usage(
            ALGORITHMS,
            &anchors,
            &others,
            time,
            AnyPurpose,
            revocation,
            Some(&check_path),
        )
        .map(|_| ())
        .map_err(|e| untrusted(reason.into_inner().unwrap_or_else(|| explain(&e))))
}

#[cfg(test)]
mod tests;
