//! A TLS handshake and nothing else, for the doctor: the chain the server presents (read once
//! with a verifier that only records it, the connection then dropped unused) and whether
//! tokenroll's own verifier — the system roots, `--ca-file`, the pin — accepts it, and if not,
//! why, in a form a person can act on.
//!
//! Owns: the two handshakes, the classification of a refusal, and which way (proxy or direct) a
//! request to a host goes. Does not own: trust itself (see `tls`) or HTTP (see `client`).

use super::client::{trust_anchors, HttpOptions};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Why tokenroll's verifier refused the server's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Expired,
    NotYetValid,
    /// Not issued by the system's roots or `--ca-file`.
    UnknownIssuer,
    /// Issued for another host name.
    WrongHost,
    /// `server_cert_sha256` names another certificate.
    NotPinned,
    Other(String),
}

/// Why no verdict could be reached.
#[derive(Debug)]
pub enum ProbeError {
    /// tokenroll's own trust could not be set up (`--ca-file` unreadable or empty).
    Trust(String),
    /// No handshake completed (the reason, with no URL in it).
    Handshake(String),
}

/// What one probe found.
pub struct Probe {
    /// The server's certificates, its own first (empty when the handshake did not get that far).
    pub chain: Vec<CertificateDer<'static>>,
    /// "TLS 1.3" or "TLS 1.2".
    pub version: String,
    /// `None`: tokenroll trusts the server.
    pub refused: Option<(Refusal, String)>,
}

/// Takes the chain and accepts it, so that a chain tokenroll would refuse can still be shown.
/// Only for a connection that carries nothing.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn handshake(
    config: rustls::ClientConfig,
    addr: SocketAddr,
    name: ServerName<'static>,
    opts: &HttpOptions,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, std::io::Error> {
    let go = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
    };
    tokio::time::timeout(opts.connect_timeout, go)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no TLS handshake within {} s",
                    opts.connect_timeout.as_secs()
                ),
            ))
        })
}

/// Shakes hands with `host` at `addr` twice: once to read its chain, once as tokenroll trusts.
pub async fn probe(addr: SocketAddr, host: &str, opts: &HttpOptions) -> Result<Probe, ProbeError> {
    let anchors = trust_anchors(opts).map_err(|e| ProbeError::Trust(e.to_string()))?;
    let ours =
        super::tls::client_config(anchors, opts.server_cert_sha256).map_err(ProbeError::Trust)?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| ProbeError::Handshake(format!("'{host}' is not a host name TLS can check")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let reading = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ProbeError::Handshake(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let read = handshake(reading, addr, name.clone(), opts)
        .await
        .map_err(|e| ProbeError::Handshake(e.to_string()))?;
    let version = match read.get_ref().1.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        _ => "TLS",
    }
    .to_string();
    drop(read);
    let chain = std::mem::take(&mut *recorder.chain.lock().unwrap_or_else(|e| e.into_inner()));
    let refused = match handshake(ours, addr, name, opts).await {
        Ok(_) => None,
        Err(e) => Some(classify(&e)),
    };
    Ok(Probe {
        chain,
        version,
        refused,
    })
}

fn classify(e: &std::io::Error) -> (Refusal, String) {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return (Refusal::Other(e.to_string()), e.to_string());
    };
    let kind = match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Refusal::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Refusal::NotYetValid
            }
            CertificateError::UnknownIssuer => Refusal::UnknownIssuer,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Refusal::WrongHost
            }
            CertificateError::Other(o) if o.0.downcast_ref::<super::tls::NotPinned>().is_some() => {
                Refusal::NotPinned
            }
            other => Refusal::Other(format!("{other:?}")),
        },
        other => Refusal::Other(other.to_string()),
    };
    (kind, tls.to_string())
}

/// Whether `NO_PROXY`'s list (`host`, `.domain`, `*.domain`, `*`; ports ignored) sends `host`
/// directly. Addresses match only as written (no networks): what the doctor needs to know
/// which way a request goes, as reqwest decides it for the requests themselves.
pub fn bypasses_proxy(no_proxy: Option<&str>, host: &str) -> bool {
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    no_proxy.unwrap_or_default().split(',').any(|entry| {
        let e = entry.trim().to_ascii_lowercase();
        let e = match e.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => {
                h.to_string()
            }
            _ => e,
        };
        let e = e.trim_start_matches("*.").trim_start_matches('.');
        e == "*" || (!e.is_empty() && (host == e || host.ends_with(&format!(".{e}"))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_proxy_entries_match_the_host_and_its_subdomains_only() {
        let list = Some(" .corp.example, cg.internal:443 ,10.1.2.3");
        assert!(bypasses_proxy(list, "cg.corp.example"));
        assert!(bypasses_proxy(list, "CG.INTERNAL"));
        assert!(bypasses_proxy(list, "10.1.2.3"));
        assert!(!bypasses_proxy(list, "corp.example.evil"));
        assert!(!bypasses_proxy(list, "notcg.internal"));
        assert!(bypasses_proxy(Some("*"), "anything"));
        assert!(!bypasses_proxy(None, "cg.internal"));
        assert!(bypasses_proxy(Some("*.corp.example"), "a.corp.example"));
    }
}
