//! The relay's HTTP front: HTTPS (or plain HTTP behind a TLS-terminating load balancer) with
//! keep-alive, the routes of the protocol, request bodies read up to the limit and no further,
//! the client's address (a trusted proxy's `X-Forwarded-For` believed), and `/metrics` on its
//! own plain listener. A graceful stop: no new connections, in-flight requests finish, then the
//! housekeeping task and the CENTAGATE session end.
//!
//! Owns: sockets, TLS, routing and the answers' HTTP form. Does not own: any decision (see
//! `service`).

use super::config::{Net, RelayConfig};
use super::policy::{Refusal, MAX_BODY};
use super::service::{Answer, Relay};
use super::Rule;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

type Body = Full<Bytes>;

/// How long a stop waits for the requests in flight.
const DRAIN: Duration = Duration::from_secs(45);

/// How often housekeeping runs (unsettled requests, expired claims, old rate windows).
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(30);

fn respond(a: Answer) -> Response<Body> {
    let mut b = Response::builder()
        .status(a.status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store");
    if let Some(s) = a.retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(Full::new(Bytes::from(a.body.to_string())))
        .expect("static response parts")
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the nearest address
/// in `X-Forwarded-For` that is not one.
pub fn client_address(peer: IpAddr, forwarded: Option<&str>, trusted: &[Net]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(list) = forwarded else {
        return peer;
    };
    let mut client = peer;
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

async fn read_body(body: hyper::body::Incoming) -> Result<Bytes, Answer> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Answer::refused(
                &Refusal::new(
                    Rule::TooLarge,
                    format!("the request is over {MAX_BODY} bytes"),
                ),
                None,
            ))
        }
        Err(e) => Err(Answer::refused(
            &Refusal::new(Rule::Malformed, format!("the body could not be read: {e}")),
            None,
        )),
    }
}

async fn route(
    relay: Arc<Relay>,
    trusted: Arc<Vec<Net>>,
    peer: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    // Every X-Forwarded-For line, in order: a proxy may add its own line rather than append.
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!forwarded.is_empty()).then(|| forwarded.join(","));
    let answer = match (method.as_str(), path.as_str()) {
        ("POST", "/v1/challenge") => match read_body(body).await {
            Ok(b) => relay.challenge(&b, header("host")),
            Err(a) => a,
        },
        ("POST", "/v1/enroll") => {
            // A declared length over the limit is refused before anything is read.
            let declared = header("content-length").and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|n| n > MAX_BODY) {
                Answer::refused(
                    &Refusal::new(
                        Rule::TooLarge,
                        format!("the request is over {MAX_BODY} bytes"),
                    ),
                    None,
                )
            } else {
                match read_body(body).await {
                    Ok(b) => {
                        let client = client_address(peer.ip(), forwarded.as_deref(), &trusted);
                        relay.enroll_detached(b, client).await
                    }
                    Err(a) => a,
                }
            }
        }
        ("GET", p) if p.starts_with("/v1/enroll/") => relay.lookup(&p["/v1/enroll/".len()..]).await,
        ("GET", "/v1/health") => relay.health().await,
        _ => Answer {
            status: if matches!(path.as_str(), "/v1/challenge" | "/v1/enroll" | "/v1/health") {
                405
            } else {
                404
            },
            body: serde_json::json!({
                "error": "not_found",
                "message": "the relay serves POST /v1/challenge, POST /v1/enroll, GET /v1/enroll/<sha256> and GET /v1/health",
            }),
            retry_after: None,
        },
    };
    // A body left unread ends the connection: say so, so the client does not reuse it.
    let close = answer.status == 413;
    let mut resp = respond(answer);
    if close {
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    Ok(resp)
}

async fn metrics_route(
    relay: Arc<Relay>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let resp = if req.method() == hyper::Method::GET && req.uri().path() == "/metrics" {
        Response::builder()
            .header("content-type", "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(relay.metrics.render())))
    } else {
        Response::builder()
            .status(404)
            .body(Full::new(Bytes::from_static(b"only GET /metrics here\n")))
    };
    Ok(resp.expect("static response parts"))
}

fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("tls_cert {}: no certificate in it", cert.display()));
    }
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("tls_key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("tls_cert and tls_key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Resolves once `stop` says true (or its sender is gone).
async fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Serves one connection until it ends or `stop` says to finish gracefully.
async fn serve<I, S>(io: I, svc: S, stop: tokio::sync::watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response<Body>> + Send,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(20))
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// The relay's listeners, bound: what `run` serves.
pub struct Bound {
    pub public: TcpListener,
    pub metrics: Option<TcpListener>,
}

impl Bound {
    pub async fn bind(cfg: &RelayConfig) -> Result<Self, String> {
        let public = TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
        let metrics = match cfg.metrics_listen {
            Some(a) => Some(
                TcpListener::bind(a)
                    .await
                    .map_err(|e| format!("cannot listen on {a} (metrics_listen): {e}"))?,
            ),
            None => None,
        };
        Ok(Self { public, metrics })
    }
}

/// Serves until `shutdown` resolves; then stops gracefully and logs out of CENTAGATE.
pub async fn run(
    relay: Arc<Relay>,
    cfg: &RelayConfig,
    bound: Bound,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let acceptor = match &cfg.tls {
        Some((c, k)) => Some(tls_acceptor(c, k)?),
        None => None,
    };
    let trusted = Arc::new(cfg.trusted_proxies.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    // Housekeeping, owned here and joined below.
    {
        let relay = relay.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            loop {
                // Interrupted by the stop: a settlement cut off is done again next time.
                tokio::select! {
                    _ = relay.housekeeping() => {}
                    _ = stopped(stop.clone()) => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(HOUSEKEEPING_EVERY) => {}
                    _ = stopped(stop.clone()) => return,
                }
            }
        });
    }
    if let Some(listener) = bound.metrics {
        let relay = relay.clone();
        let stop = stop_rx.clone();
        let stop_conn = stop_rx.clone();
        tasks.spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else {
                            // Out of descriptors, say: wait rather than spin.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        let relay = relay.clone();
                        let svc = hyper::service::service_fn(move |req| metrics_route(relay.clone(), req));
                        conns.spawn(serve(tcp, svc, stop_conn.clone()));
                    }
                    _ = stopped(stop.clone()) => break,
                }
            }
            while conns.join_next().await.is_some() {}
        });
    }
    let listener = bound.public;
    let accept = async {
        let mut conns = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, peer)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let (relay, trusted, acceptor, stop) =
                        (relay.clone(), trusted.clone(), acceptor.clone(), stop_rx.clone());
                    conns.spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            route(relay.clone(), trusted.clone(), peer, req)
                        });
                        match acceptor {
                            Some(a) => {
                                let handshake = tokio::time::timeout(Duration::from_secs(20), a.accept(tcp));
                                if let Ok(Ok(tls)) = handshake.await {
                                    serve(tls, svc, stop).await;
                                }
                            }
                            None => serve(tcp, svc, stop).await,
                        }
                    });
                    // Finished connections are reaped as new ones come.
                    while conns.try_join_next().is_some() {}
                }
                _ = &mut shutdown => break,
            }
        }
        conns
    };
    let mut conns = accept.await;
    tracing::info!("stopping: no new connections; finishing the requests in flight");
    let _ = stop_tx.send(true);
    // Within systemd's 60 s stop timeout: connections, then the enrollments they started.
    let deadline = tokio::time::Instant::now() + DRAIN;
    let drained = tokio::time::timeout_at(deadline, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open at the stop: closing them");
        conns.abort_all();
    }
    relay
        .drain(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await;
    while tasks.join_next().await.is_some() {}
    relay.logout().await;
    relay.store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_are_believed_from_trusted_proxies_only() {
        let lb: Vec<Net> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Not a trusted peer: its header is ignored.
        assert_eq!(
            client_address(ip("192.0.2.7"), Some("203.0.113.9"), &lb),
            ip("192.0.2.7")
        );
        // A trusted load balancer: the nearest untrusted hop.
        assert_eq!(
            client_address(
                ip("10.0.0.2"),
                Some("198.51.100.1, 203.0.113.9, 10.0.0.5"),
                &lb
            ),
            ip("203.0.113.9")
        );
        // Garbage ends the walk at the last good hop.
        assert_eq!(
            client_address(ip("10.0.0.2"), Some("nonsense, 10.0.0.5"), &lb),
            ip("10.0.0.5")
        );
        assert_eq!(client_address(ip("10.0.0.2"), None, &lb), ip("10.0.0.2"));
    }
}
