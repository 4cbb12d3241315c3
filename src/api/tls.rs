//! How tokenroll trusts a CENTAGATE server: the system roots plus `--ca-file`, verified by
//! rustls' WebPKI verifier — and, as curl, Java and Python do, a server certificate that is
//! itself in `--ca-file` is trusted as that server's certificate even when it is marked CA:TRUE
//! (what `openssl req -x509` makes by default). Its dates and host
//! name are still checked (the subject alternative names; only for such a certificate trusted
//! directly, a CN when it has none, with a warning naming the fix).
//!
//! Owns: the rustls client configuration and the certificate verifier. Does not own: HTTP (see
//! `client`), what a refusal says (see `client::classify`, and `probe` for the doctor).

use der::Decode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A server certificate other than the pinned one.
#[derive(Debug)]
pub(super) struct NotPinned(pub(super) String);

impl std::fmt::Display for NotPinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not the pinned certificate (its SHA-256 is {})", self.0)
    }
}

impl std::error::Error for NotPinned {}

#[derive(Debug)]
struct Verifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    /// The certificates of `--ca-file`, as given: trusted as a server's own certificate too.
    direct: Vec<CertificateDer<'static>>,
    /// `server_cert_sha256`: when set, the one certificate trusted, whatever else is.
    pin: Option<[u8; 32]>,
    warned: AtomicBool,
}

/// The rustls configuration: TLS 1.2 and 1.3, the system roots and `extra` (from `--ca-file`).
pub fn client_config(
    extra: Vec<CertificateDer<'static>>,
    pin: Option<[u8; 32]>,
) -> Result<rustls::ClientConfig, String> {
    config_with(verifier(extra, pin)?)
}

/// A client configuration (TLS 1.3 and 1.2, ring) that trusts what `verifier` accepts.
pub(super) fn config_with(
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// tokenroll's certificate verifier: the system roots and `extra`, a certificate in `extra`
/// trusted directly, and the pin.
pub(super) fn verifier(
    extra: Vec<CertificateDer<'static>>,
    pin: Option<[u8; 32]>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        let _ = roots.add(c);
    }
    for c in &extra {
        // A certificate webpki cannot take as an anchor (a v1 certificate) is still trusted
        // directly, as the server's own.
        let _ = roots.add(c.clone());
    }
    let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| format!("cannot set up certificate verification: {e}"))?;
    Ok(Arc::new(Verifier {
        inner,
        direct: extra,
        pin,
        warned: AtomicBool::new(false),
    }))
}

impl Verifier {
    /// A server certificate that is itself in `--ca-file`: its dates and host name decide.
    fn trusted_directly(
        &self,
        der: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = x509_cert::Certificate::from_der(der.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let v = &cert.tbs_certificate.validity;
        let now = std::time::Duration::from_secs(now.as_secs());
        if now < v.not_before.to_unix_duration() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now > v.not_after.to_unix_duration() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        let has_san = cert
            .tbs_certificate
            .extensions
            .iter()
            .flatten()
            .any(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME);
        if has_san {
            let ee = webpki::EndEntityCert::try_from(der)
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
            return ee
                .verify_is_valid_for_subject_name(server_name)
                .map(|()| ServerCertVerified::assertion())
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName));
        }
        // No subject alternative name: the CN, for this directly trusted certificate only.
        let cn = crate::certinfo::common_name(&cert);
        let host = match server_name {
            ServerName::DnsName(d) => Some(d.as_ref().to_string()),
            _ => None,
        };
        match (cn, host) {
            (Some(cn), Some(host)) if cn.eq_ignore_ascii_case(&host) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        host,
                        "the server's certificate names its host only in the CN; reissue it with \
                         a subjectAltName (DNS:{host}), which clients require"
                    );
                }
                Ok(ServerCertVerified::assertion())
            }
            _ => Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            )),
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = self.pin {
            use sha2::Digest;
            let seen: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
            if seen != pin {
                return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                    rustls::OtherError(Arc::new(NotPinned(hex::encode(seen)))),
                )));
            }
            return self.trusted_directly(end_entity, server_name, now);
        }
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(e)
                if self
                    .direct
                    .iter()
                    .any(|c| c.as_ref() == end_entity.as_ref()) =>
            {
                match self.trusted_directly(end_entity, server_name, now) {
                    Ok(v) => Ok(v),
                    // The direct check's own reason (expired, another host) is the real one.
                    Err(direct) => Err(match e {
                        rustls::Error::InvalidCertificate(CertificateError::Other(_)) => direct,
                        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                            direct
                        }
                        _ => e,
                    }),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
