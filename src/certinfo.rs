//! Fields a person is known by in a certificate: the subject's CN, and the e-mail address and UPN
//! from the subject alternative name (e-mail also from the subject's emailAddress).
//!
//! Owns: reading those fields. Does not own: deciding which one names the user (see `agent`).

use const_oid::ObjectIdentifier;
use der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

const EMAIL_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");
const MS_UPN: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.20.2.3");

fn subject_attr(cert: &Certificate, oid: ObjectIdentifier) -> Option<String> {
    subject_attrs(cert, oid).into_iter().next()
}

/// Every value of the subject's attribute `oid` that is a string.
fn subject_attrs(cert: &Certificate, oid: ObjectIdentifier) -> Vec<String> {
    use der::{Tag, Tagged};
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == oid)
        .filter_map(|atv| match atv.value.tag() {
            Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::TeletexString => {
                std::str::from_utf8(atv.value.value())
                    .ok()
                    .map(str::to_string)
            }
            _ => None,
        })
        .collect()
}

fn san(cert: &Certificate) -> Vec<GeneralName> {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
        .and_then(|e| SubjectAltName::from_der(e.extn_value.as_bytes()).ok())
        .map(|s| s.0)
        .unwrap_or_default()
}

/// A certificate's identity for the registry, the journal and reports: SHA-256 of its DER, hex.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

pub fn common_name(cert: &Certificate) -> Option<String> {
    subject_attr(cert, const_oid::db::rfc4519::CN)
}

/// Every common name of the subject, for a policy that refuses a certificate naming several.
pub fn common_names(cert: &Certificate) -> Vec<String> {
    subject_attrs(cert, const_oid::db::rfc4519::CN)
}

/// Every e-mail address: the subject alternative name's, then the subject's emailAddress.
pub fn emails(cert: &Certificate) -> Vec<String> {
    let mut out: Vec<String> = san(cert)
        .into_iter()
        .filter_map(|g| match g {
            GeneralName::Rfc822Name(s) => Some(s.to_string()),
            _ => None,
        })
        .collect();
    out.extend(subject_attrs(cert, EMAIL_ADDRESS));
    out
}

/// Every Microsoft UPN in the subject alternative name.
pub fn upns(cert: &Certificate) -> Vec<String> {
    san(cert)
        .into_iter()
        .filter_map(|g| match g {
            GeneralName::OtherName(o) if o.type_id == MS_UPN => o
                .value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .ok()
                .map(|s| s.as_str().to_string()),
            _ => None,
        })
        .collect()
}

pub fn email(cert: &Certificate) -> Option<String> {
    emails(cert).into_iter().next()
}

/// The Microsoft UPN (otherName 1.3.6.1.4.1.311.20.2.3, a UTF8String).
pub fn upn(cert: &Certificate) -> Option<String> {
    upns(cert).into_iter().next()
}
