//! Software signers for the relay's bench and tests: an organisation CA, users' P-256 keys with
//! certificates it issued, and enrollment requests they sign — what a desk with a token sends,
//! made without a token so that many clients can run at once.
//!
//! Owns: those keys, certificates and request bodies. Does not own: anything the relay decides,
//! and nothing of a real enrollment (a desk signs on its token, see `enroll`).

use super::statement::Statement;
use crate::digest::DigestAlg;
use base64::Engine;
use der::EncodePem;
use p256::ecdsa::{DerSignature, SigningKey};
use std::str::FromStr;
use std::time::Duration;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// A key with its certificate.
pub struct SoftKey {
    pub cert: Certificate,
    pub key: SigningKey,
}

fn validity(from_secs: i64, to_secs: i64) -> x509_cert::time::Validity {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    let at = |offset: i64| {
        let t = if offset >= 0 {
            now + Duration::from_secs(offset.unsigned_abs())
        } else {
            now - Duration::from_secs(offset.unsigned_abs())
        };
        x509_cert::time::Time::UtcTime(
            der::asn1::UtcTime::from_unix_duration(Duration::from_secs(t.as_secs()))
                .expect("a time in UTCTime's range"),
        )
    };
    x509_cert::time::Validity {
        not_before: at(from_secs),
        not_after: at(to_secs),
    }
}

impl SoftKey {
    /// A self-signed CA, valid from an hour ago for a day.
    pub fn ca(cn: &str) -> Self {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let spki = spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key())
            .expect("a P-256 key encodes");
        let cert = CertificateBuilder::new(
            Profile::Root,
            x509_cert::serial_number::SerialNumber::from(1u32),
            validity(-3600, 86400),
            x509_cert::name::Name::from_str(&format!("CN={cn}")).expect("a name"),
            spki,
            &key,
        )
        .expect("a CA certificate")
        .build::<DerSignature>()
        .expect("signed");
        Self { cert, key }
    }

    /// A user's key and certificate issued by `self` (a CA): subject `CN=cn,O=Acme`, the
    /// e-mail address in the subject alternative name when given, valid between the two
    /// offsets from now (seconds).
    pub fn issue(&self, cn: &str, email: Option<&str>, serial: u32, valid: (i64, i64)) -> SoftKey {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let spki = spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key())
            .expect("a P-256 key encodes");
        let mut b = CertificateBuilder::new(
            Profile::Leaf {
                issuer: self.cert.tbs_certificate.subject.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
                include_subject_key_identifier: true,
            },
            x509_cert::serial_number::SerialNumber::from(serial),
            validity(valid.0, valid.1),
            x509_cert::name::Name::from_str(&format!("CN={cn},O=Acme")).expect("a name"),
            spki,
            &self.key,
        )
        .expect("a user certificate");
        if let Some(e) = email {
            let ia5 = der::asn1::Ia5String::new(e).expect("an ASCII address");
            b.add_extension(&SubjectAltName(vec![GeneralName::Rfc822Name(ia5)]))
                .expect("a SAN");
        }
        let cert = b.build::<DerSignature>().expect("signed");
        SoftKey { cert, key }
    }

    /// The certificate as PEM.
    pub fn cert_pem(&self) -> String {
        self.cert
            .to_pem(der::pem::LineEnding::LF)
            .expect("a certificate encodes")
    }

    /// The private key as PKCS#8 PEM (for test tooling that issues with this CA).
    pub fn key_pem(&self) -> String {
        use p256::pkcs8::EncodePrivateKey;
        self.key
            .to_pkcs8_pem(der::pem::LineEnding::LF)
            .expect("a P-256 key encodes")
            .to_string()
    }

    /// An attached PKCS#7 of `content`, signed with `digest`.
    pub fn sign(&self, content: &[u8], digest: DigestAlg) -> Vec<u8> {
        crate::cms::build_attached::<_, DerSignature>(&self.key, &self.cert, content, digest)
            .expect("a software signature")
    }

    /// `POST /v1/enroll`'s body: the statement for `relay`, `username` and `challenge`, signed
    /// now with SHA-256.
    pub fn enroll_body(&self, relay: &str, username: &str, challenge: &str) -> Vec<u8> {
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let statement = Statement::new(relay, username, challenge, iat).to_bytes();
        body(username, &self.sign(&statement, DigestAlg::Sha256))
    }
}

/// `POST /v1/enroll`'s body for a PKCS#7.
pub fn body(username: &str, pkcs7: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "username": username,
        "signature": base64::engine::general_purpose::STANDARD.encode(pkcs7),
    }))
    .expect("a body serializes")
}
