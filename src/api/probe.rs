//! A TLS handshake and nothing else, for the doctor: the chain the server presents and whether
//! tokenroll's own verifier — the system roots, `--ca-file`, the pin — accepts it, and if not,
//! why, in a form a person can act on. The verdict is recorded and the handshake let go on, so a
//! refused chain can still be shown; the connection is then dropped unused.
//!
//! Owns: the name lookup and TCP connection before it, the handshake, the classification of a refusal, and which way (proxy or direct) a
//! request to a host goes. Does not own: trust itself (see `tls`) or HTTP (see `client`).

use super::client::{trust_anchors, HttpOptions};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// What the handshake showed: the chain, and tokenroll's verdict on it.
#[derive(Debug, Default)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    refused: Option<rustls::Error>,
}

/// tokenroll's verifier, asked and recorded; the handshake goes on whatever it says (the
/// handshake's signatures are still checked by it). Only for a connection that carries nothing.
#[derive(Debug)]
struct Judge {
    ours: Arc<dyn ServerCertVerifier>,
    seen: Mutex<Seen>,
}

impl ServerCertVerifier for Judge {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .ours
            .verify_server_cert(end_entity, intermediates, name, ocsp, now);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.chain.push(end_entity.clone().into_owned());
        seen.chain
            .extend(intermediates.iter().map(|c| c.clone().into_owned()));
        seen.refused = verdict.err();
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ours.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.ours.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.ours.supported_verify_schemes()
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

/// The addresses `host` resolves to, within `limit`.
pub async fn resolve(host: &str, port: u16, limit: Duration) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(limit, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(a)) => {
            let a: Vec<SocketAddr> = a.collect();
            if a.is_empty() {
                Err("no address".into())
            } else {
                Ok(a)
            }
        }
    }
}

/// The first of `addrs` that accepts a TCP connection (closed at once), within `limit` each.
pub async fn connect(addrs: &[SocketAddr], limit: Duration) -> Result<SocketAddr, String> {
    let mut last = String::new();
    for a in addrs {
        match tokio::time::timeout(limit, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(_)) => return Ok(*a),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = format!("no answer within {} s", limit.as_secs()),
        }
    }
    Err(last)
}

/// Shakes hands with `host` at `addr`, recording the chain and tokenroll's verdict on it.
pub async fn probe(addr: SocketAddr, host: &str, opts: &HttpOptions) -> Result<Probe, ProbeError> {
    let anchors = trust_anchors(opts).map_err(|e| ProbeError::Trust(e.to_string()))?;
    let judge = Arc::new(Judge {
        ours: super::tls::verifier(anchors, opts.server_cert_sha256).map_err(ProbeError::Trust)?,
        seen: Mutex::new(Seen::default()),
    });
    let config = super::tls::config_with(judge.clone()).map_err(ProbeError::Trust)?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| ProbeError::Handshake(format!("'{host}' is not a host name TLS can check")))?;
    let done = handshake(config, addr, name, opts)
        .await
        .map_err(|e| ProbeError::Handshake(e.to_string()))?;
    let version = match done.get_ref().1.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        _ => "TLS",
    }
    .to_string();
    drop(done);
    let seen = std::mem::take(&mut *judge.seen.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(Probe {
        chain: seen.chain,
        version,
        refused: seen.refused.as_ref().map(classify),
    })
}

fn classify(tls: &rustls::Error) -> (Refusal, String) {
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
