//! Path validation against chains built here, each case also given to `openssl verify`: where
//! openssl refuses a chain, so does tokenroll (and the reverse).

use super::*;
use der::EncodePem;
use p256::ecdsa::{DerSignature, SigningKey};
use std::str::FromStr;
use std::time::Duration;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

struct Made {
    cert: Certificate,
    key: SigningKey,
}

fn name(cn: &str) -> Name {
    Name::from_str(&format!("CN={cn},O=tokenroll test")).unwrap()
}

fn validity(days_from: i64, days_to: i64) -> Validity {
    let at = |d: i64| {
        let now = SystemTime::now();
        let t = if d >= 0 {
            now + Duration::from_secs(d as u64 * 86400)
        } else {
            now - Duration::from_secs((-d) as u64 * 86400)
        };
        x509_cert::time::Time::try_from(t).unwrap()
    };
    Validity {
        not_before: at(days_from),
        not_after: at(days_to),
    }
}

/// A certificate for a fresh key, issued by `issuer` (self-signed without one).
fn make(cn: &str, profile: Profile, issuer: Option<&Made>, valid: Validity) -> Made {
    make_with(cn, profile, issuer, valid, |_| {})
}

fn make_with(
    cn: &str,
    profile: Profile,
    issuer: Option<&Made>,
    valid: Validity,
    extra: impl FnOnce(&mut CertificateBuilder<'_, SigningKey>),
) -> Made {
    let key = SigningKey::random(&mut rand_core::OsRng);
    let spki = spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
    let signer = issuer.map_or(&key, |i| &i.key);
    let serial = SerialNumber::from(rand_core::RngCore::next_u32(&mut rand_core::OsRng) | 1);
    let mut b = CertificateBuilder::new(profile, serial, valid, name(cn), spki, signer).unwrap();
    extra(&mut b);
    let cert = b.build::<DerSignature>().unwrap();
    Made { cert, key }
}

fn root(cn: &str) -> Made {
    make(cn, Profile::Root, None, validity(-1, 30))
}

fn leaf_of(cn: &str, issuer: &Made) -> Made {
    make(
        cn,
        Profile::Leaf {
            issuer: issuer.cert.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
            include_subject_key_identifier: true,
        },
        Some(issuer),
        validity(-1, 10),
    )
}

/// tokenroll's answer, checked to agree with `openssl verify`'s.
fn verdict(leaf: &Made, intermediates: &[&Made], trust: &[&Made]) -> Result<(), ChainError> {
    let inter: Vec<Certificate> = intermediates.iter().map(|m| m.cert.clone()).collect();
    let anchors: Vec<Certificate> = trust.iter().map(|m| m.cert.clone()).collect();
    let ours = verify_chain(&leaf.cert, &inter, &anchors, SystemTime::now());
    let dir = tempfile::tempdir().unwrap();
    let pem = |certs: &[Certificate], file: &str| {
        let p = dir.path().join(file);
        let text: String = certs
            .iter()
            .map(|c| c.to_pem(der::pem::LineEnding::LF).unwrap())
            .collect();
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut cmd = std::process::Command::new("openssl");
    cmd.arg("verify")
        .arg("-CAfile")
        .arg(pem(&anchors, "trust.pem"))
        // The trust file's certificates are anchors as they are, as tokenroll treats them.
        .arg("-partial_chain");
    if !inter.is_empty() {
        cmd.arg("-untrusted").arg(pem(&inter, "untrusted.pem"));
    }
    let out = cmd
        .arg(pem(std::slice::from_ref(&leaf.cert), "leaf.pem"))
        .output()
        .expect("openssl is installed (packaging/deps.sh)");
    assert_eq!(
        ours.is_ok(),
        out.status.success(),
        "tokenroll says {ours:?}, openssl verify says {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ours
}

#[test]
fn a_leaf_of_a_trusted_ca_verifies_directly_and_through_an_intermediate() {
    let ca = root("Root CA");
    verdict(&leaf_of("alice", &ca), &[], &[&ca]).unwrap();
    let sub = make(
        "Sub CA",
        Profile::SubCA {
            issuer: ca.cert.tbs_certificate.subject.clone(),
            path_len_constraint: Some(0),
        },
        Some(&ca),
        validity(-1, 20),
    );
    verdict(&leaf_of("bob", &sub), &[&sub], &[&ca]).unwrap();
    // Without the intermediate the path cannot be built.
    let e = verdict(&leaf_of("carol", &sub), &[], &[&ca]).unwrap_err();
    assert!(
        e.to_string().contains("no certificate in the trust file"),
        "{e}"
    );
}

/// The defect this module exists for: an end-entity certificate of a trusted CA issuing a
/// "trusted" certificate for any name.
#[test]
fn an_end_entity_cannot_issue() {
    let ca = root("Root CA");
    let alice = leaf_of("alice", &ca);
    let forged = leaf_of("admin", &alice);
    let e = verdict(&forged, &[&alice], &[&ca]).unwrap_err();
    assert!(e.to_string().contains("not a CA"), "{e}");
}

#[test]
fn path_length_and_key_usage_of_issuers_are_enforced() {
    let ca = make(
        "Short CA",
        Profile::SubCA {
            issuer: name("Short CA"),
            path_len_constraint: Some(0),
        },
        None,
        validity(-1, 30),
    );
    let sub = make(
        "Sub CA",
        Profile::SubCA {
            issuer: ca.cert.tbs_certificate.subject.clone(),
            path_len_constraint: None,
        },
        Some(&ca),
        validity(-1, 20),
    );
    let e = verdict(&leaf_of("dave", &sub), &[&sub], &[&ca]).unwrap_err();
    assert!(e.to_string().contains("pathLenConstraint"), "{e}");

    // A CA whose keyUsage allows signatures but not certificates.
    let no_cert_sign = make_with(
        "Odd CA",
        Profile::Manual { issuer: None },
        None,
        validity(-1, 30),
        |b| {
            b.add_extension(&BasicConstraints {
                ca: true,
                path_len_constraint: None,
            })
            .unwrap();
            b.add_extension(&KeyUsage(KeyUsages::DigitalSignature.into()))
                .unwrap();
        },
    );
    let e = verdict(&leaf_of("erin", &no_cert_sign), &[], &[&no_cert_sign]).unwrap_err();
    assert!(e.to_string().contains("keyCertSign"), "{e}");
}

/// A root without basicConstraints whose keyUsage allows keyCertSign is a CA as an anchor, as
/// OpenSSL's non-strict check has it.
#[test]
fn an_anchor_may_be_a_ca_by_its_key_usage_alone() {
    let ku_root = make_with(
        "KU Root",
        Profile::Manual { issuer: None },
        None,
        validity(-1, 30),
        |b| {
            b.add_extension(&KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))
                .unwrap();
        },
    );
    verdict(&leaf_of("ivan", &ku_root), &[], &[&ku_root]).unwrap();
}

#[test]
fn every_certificate_including_the_anchor_must_be_within_its_validity() {
    let expired_ca = make("Old CA", Profile::Root, None, validity(-30, -1));
    let e = verdict(&leaf_of("frank", &expired_ca), &[], &[&expired_ca]).unwrap_err();
    assert!(e.to_string().contains("validity"), "{e}");
    let ca = root("Root CA");
    let expired_leaf = make(
        "grace",
        Profile::Leaf {
            issuer: ca.cert.tbs_certificate.subject.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
            include_subject_key_identifier: true,
        },
        Some(&ca),
        validity(-10, -2),
    );
    let e = verdict(&expired_leaf, &[], &[&ca]).unwrap_err();
    assert!(e.to_string().contains("validity"), "{e}");
}

/// A trust file holding the signer's own self-signed certificate trusts it as it is — dates
/// checked.
#[test]
fn the_signers_own_certificate_as_the_trust_file() {
    let own = make("heidi", Profile::Root, None, validity(-1, 5));
    verify_chain(
        &own.cert,
        &[],
        std::slice::from_ref(&own.cert),
        SystemTime::now(),
    )
    .unwrap();
    let later = SystemTime::now() + Duration::from_secs(10 * 86400);
    let e = verify_chain(&own.cert, &[], std::slice::from_ref(&own.cert), later).unwrap_err();
    assert!(e.to_string().contains("validity"), "{e}");
    // Another self-signed certificate in the trust file does not make it trusted.
    let other = root("Other");
    assert!(verify_chain(&own.cert, &[], &[other.cert], SystemTime::now()).is_err());
}
