//! The simulator's TLS identity: a fresh self-signed P-256 certificate for localhost per start,
//! or on purpose a bad one (expired, or for another host) for the clients' TLS tests.

use der::{Encode, EncodePem};
use p256::pkcs8::EncodePrivateKey;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

fn ip(a: IpAddr) -> GeneralName {
    let bytes = match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    };
    GeneralName::IpAddress(der::asn1::OctetString::new(bytes).expect("short"))
}

/// What is wrong with the certificate, on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadTls {
    /// Expired a week ago.
    Expired,
    /// Issued for centagate.invalid, not localhost.
    WrongHost,
}

fn validity(bad: Option<BadTls>) -> Result<Validity, String> {
    if bad != Some(BadTls::Expired) {
        // 90 days, as a public CA's: long enough that `doctor` sees nothing about to end.
        return Validity::from_now(Duration::from_secs(90 * 86400)).map_err(|e| e.to_string());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let at = |days_ago: u64| -> Result<x509_cert::time::Time, String> {
        let t = der::DateTime::from_unix_duration(now - Duration::from_secs(days_ago * 86400))
            .map_err(|e| e.to_string())?;
        Ok(x509_cert::time::Time::UtcTime(
            der::asn1::UtcTime::from_date_time(t).map_err(|e| e.to_string())?,
        ))
    };
    Ok(Validity {
        not_before: at(30)?,
        not_after: at(7)?,
    })
}

/// Returns the rustls config and the certificate's PEM (for clients' --ca-file).
pub fn server_config(bad: Option<BadTls>) -> Result<(rustls::ServerConfig, String), String> {
    let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let spki = spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key())
        .map_err(|e| e.to_string())?;
    let host = if bad == Some(BadTls::WrongHost) {
        "centagate.invalid"
    } else {
        "localhost"
    };
    let subject = Name::from_str(&format!("CN={host},O=tokenroll CENTAGATE simulator"))
        .map_err(|e| e.to_string())?;
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] &= 0x7f;
    let e = |e: x509_cert::builder::Error| e.to_string();
    let mut b = CertificateBuilder::new(
        Profile::Manual { issuer: None },
        SerialNumber::new(&serial).map_err(|e| e.to_string())?,
        validity(bad)?,
        subject,
        spki,
        &key,
    )
    .map_err(e)?;
    b.add_extension(&BasicConstraints {
        ca: false,
        path_len_constraint: None,
    })
    .map_err(e)?;
    b.add_extension(&KeyUsage(KeyUsages::DigitalSignature.into()))
        .map_err(e)?;
    b.add_extension(&ExtendedKeyUsage(vec![
        const_oid::db::rfc5280::ID_KP_SERVER_AUTH,
    ]))
    .map_err(e)?;
    let mut names = vec![GeneralName::DnsName(
        der::asn1::Ia5String::new(host).expect("ascii"),
    )];
    if bad != Some(BadTls::WrongHost) {
        names.push(ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        names.push(ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    }
    b.add_extension(&SubjectAltName(names)).map_err(e)?;
    let cert = b.build::<p256::ecdsa::DerSignature>().map_err(e)?;
    let cert_der = cert.to_der().map_err(|e| e.to_string())?;
    let cert_pem = cert
        .to_pem(der::pem::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    let key_der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert_der)],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.as_bytes().to_vec().into()),
        )
        .map_err(|e| e.to_string())?;
    Ok((config, cert_pem))
}

/// A server configuration from a certificate and a key in PEM files (a hand-made certificate).
pub fn server_config_from_files(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(rustls::ServerConfig, String), String> {
    use rustls::pki_types::pem::PemObject;
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| e.to_string())?;
    Ok((config, String::from_utf8_lossy(&cert_pem).into_owned()))
}
