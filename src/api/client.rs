//! The HTTP client: TLS policy, timeouts, the registration PUT and answer classification.

use super::contract::{Answer, RegisterBody, REGISTER_PATH, WEB_ROOT};
use super::ApiError;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Answers larger than this are not read further: no CENTAGATE answer comes near it.
pub const MAX_BODY: usize = 1 << 20;

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    /// Trust exactly the server certificate with this SHA-256 (host name and dates checked).
    pub server_cert_sha256: Option<[u8; 32]>,
    pub proxy: Proxy,
}

/// How requests reach the server.
#[derive(Clone, Debug, Default)]
pub enum Proxy {
    #[default]
    Direct,
    /// Tunnelled with CONNECT through this proxy (its URL without credentials).
    Via {
        url: String,
        credentials: Option<(String, crate::secret::ProxyPassword)>,
        /// Hosts reached directly (`NO_PROXY`'s syntax); none for an explicit `--proxy`.
        no_proxy: Option<String>,
    },
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            server_cert_sha256: None,
            proxy: Proxy::Direct,
        }
    }
}

/// Whether plain http may go to `url`'s host: a loopback IP literal, or `localhost` when every
/// address it resolves to is loopback (a hosts file may point it elsewhere).
fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            use std::net::ToSocketAddrs;
            (d, url.port_or_known_default().unwrap_or(80))
                .to_socket_addrs()
                .is_ok_and(all_loopback)
        }
        Some(url::Host::Domain(_)) => false,
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// True when there is at least one address and every one is loopback.
fn all_loopback(addrs: impl Iterator<Item = std::net::SocketAddr>) -> bool {
    let mut any = false;
    for a in addrs {
        if !a.ip().is_loopback() {
            return false;
        }
        any = true;
    }
    any
}

/// Parses a URL and enforces the transport rule: https, or plain http to loopback only.
pub fn checked_url(text: &str, what: &str) -> Result<reqwest::Url, ApiError> {
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| ApiError::Config(format!("{what} '{text}' is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(ApiError::Config(format!(
                "{what} '{text}' uses plain http to a host that is not loopback; use https"
            )))
        }
        s => {
            return Err(ApiError::Config(format!(
                "{what} '{text}' has scheme '{s}'; use https"
            )))
        }
    }
    if url.host().is_none() {
        return Err(ApiError::Config(format!("{what} '{text}' has no host")));
    }
    Ok(url)
}

/// The origin of `--server`, which may also end in the web-services root (never doubled).
pub fn server_origin(text: &str) -> Result<String, ApiError> {
    let url = checked_url(text, "--server")?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::Config(format!(
            "--server '{text}' must not carry a query or fragment"
        )));
    }
    let path = url.path().trim_end_matches('/');
    if !(path.is_empty() || path == WEB_ROOT) {
        return Err(ApiError::Config(format!(
            "--server '{text}' should be the origin (https://host[:port]), optionally ending in {WEB_ROOT}"
        )));
    }
    Ok(url.origin().ascii_serialization())
}

/// The registration URL for `admin` (a percent-encoded path segment).
pub fn register_url(origin: &str, admin: &str) -> String {
    format!(
        "{origin}{REGISTER_PATH}{}",
        utf8_percent_encode(admin, SEGMENT)
    )
}

/// Builds the shared client: system roots plus `--ca-file` (see `tls`), TLS 1.2 minimum, no
/// redirects.
/// The certificates `--ca-file` adds to the system's roots (none without it).
pub fn trust_anchors(
    opts: &HttpOptions,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ApiError> {
    let mut extra = Vec::new();
    if let Some(path) = &opts.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            ApiError::Config(format!("cannot read --ca-file {}: {e}", path.display()))
        })?;
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                ApiError::Config(format!(
                    "--ca-file {} holds no PEM certificate: {e}",
                    path.display()
                ))
            })?;
        if certs.is_empty() {
            return Err(ApiError::Config(format!(
                "--ca-file {} holds no PEM certificate",
                path.display()
            )));
        }
        extra = certs;
    }
    Ok(extra)
}

/// The HTTP client for `opts`: tokenroll's TLS trust, the timeouts, the proxy (HTTPS through
/// CONNECT only), no redirects.
pub fn http_client(opts: &HttpOptions) -> Result<reqwest::Client, ApiError> {
    let extra = trust_anchors(opts)?;
    let tls =
        super::tls::client_config(extra, opts.server_cert_sha256).map_err(ApiError::Config)?;
    // The environment's proxy settings were read once, at start (see `config`): reqwest reads
    // none of its own.
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .https_only(false)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(opts.connect_timeout)
        .timeout(opts.timeout)
        .no_proxy()
        .user_agent(concat!("tokenroll/", env!("CARGO_PKG_VERSION")));
    if let Proxy::Via {
        url,
        credentials,
        no_proxy,
    } = &opts.proxy
    {
        // HTTPS only, always through CONNECT: plain http goes only to loopback, never to a
        // proxy (which would see it in clear).
        let mut p = reqwest::Proxy::https(url.as_str())
            .map_err(|e| ApiError::Config(format!("the proxy '{url}' cannot be used: {e}")))?;
        if let Some((user, password)) = credentials {
            p = p.basic_auth(user, password.expose());
        }
        p = p.no_proxy(no_proxy.as_deref().and_then(reqwest::NoProxy::from_string));
        b = b.proxy(p);
    }
    b.build()
        .map_err(|e| ApiError::Config(format!("cannot set up HTTPS: {e}")))
}

/// Turns a transport failure into the error a person can act on.
pub fn classify(url: &str, timeout: Duration, e: reqwest::Error) -> ApiError {
    // Refused, unresolvable, a failed handshake: the request never left. Anything later may
    // have reached the server.
    let maybe_sent = !e.is_connect();
    if e.is_timeout() {
        return ApiError::Timeout(timeout.as_secs());
    }
    let mut src: Option<&dyn std::error::Error> = Some(&e);
    while let Some(s) = src {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return tls_error(tls);
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return tls_error(tls);
            }
        }
        src = s.source();
    }
    let mut reason = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        reason = format!("{reason}: {s}");
        src = s.source();
    }
    // hyper-util boxes the connector's error so the rustls::Error is not always reachable by
    // downcasting; rustls' own wording is the fallback.
    if let Some(at) = reason.find("invalid peer certificate") {
        return ApiError::Tls(with_advice(&reason[at..]));
    }
    if let Some(at) = reason.find("received fatal alert") {
        return ApiError::TlsHandshake(reason[at..].to_string());
    }
    ApiError::Network {
        url: url.to_string(),
        reason,
        maybe_sent,
    }
}

/// A certificate problem, or a handshake that found nothing in common (old TLS, old ciphers).
fn tls_error(e: &rustls::Error) -> ApiError {
    match e {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            ApiError::Tls(with_advice(&e.to_string()))
        }
        _ => ApiError::TlsHandshake(e.to_string()),
    }
}

/// A certificate refusal with the fix for its real reason — never advice the person already
/// followed (a server certificate in `--ca-file` is trusted as the server's, see `tls`).
fn with_advice(reason: &str) -> String {
    let advice = if reason.contains("NotPinned") {
        "the server's certificate is not the one server_cert_sha256 names: if the server's \
         certificate was replaced on purpose, pin the new one ('openssl x509 -noout -fingerprint \
         -sha256'); otherwise something else answers for this server"
    } else if reason.contains("CaUsedAsEndEntity") {
        "the server presents a CA certificate as its own: put that certificate itself in \
         --ca-file to trust it as this server's, or give the server a server certificate"
    } else if reason.contains("expired") || reason.contains("Expired") {
        "the server's certificate has expired: renew it on the server (or check this machine's \
         clock)"
    } else if reason.contains("NotValidYet") || reason.contains("not valid yet") {
        "the server's certificate is not valid yet: check this machine's clock, or its dates"
    } else if reason.contains("not valid for name") || reason.contains("NotValidForName") {
        "the certificate is for another host name: give --server the name it was issued for, or \
         reissue it with this name in its subjectAltName"
    } else if reason.contains("UnknownIssuer") || reason.contains("unknown issuer") {
        "its issuer is not trusted: put the CA that issued it (or the server's own certificate) \
         in --ca-file"
    } else {
        "if your organisation uses a private CA, put it in --ca-file"
    };
    format!("{reason}; {advice}")
}

/// Reads at most `MAX_BODY` bytes of a response.
pub async fn read_limited(
    url: &str,
    timeout: Duration,
    mut resp: reqwest::Response,
) -> Result<(Vec<u8>, bool), ApiError> {
    let mut body = Vec::new();
    // The server has started to answer: a failure now is not a failure "before any answer".
    let cut = |e: reqwest::Error| ApiError::Incomplete {
        url: url.to_string(),
        reason: match classify(url, timeout, e.without_url()) {
            ApiError::Timeout(s) => format!("no more data within {s} s"),
            ApiError::Network { reason, .. } => reason,
            other => other.to_string(),
        },
    };
    while let Some(chunk) = resp.chunk().await.map_err(cut)? {
        let room = MAX_BODY - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The response's Content-Type, lowercased ("" when absent).
pub fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// A client for one CENTAGATE server.
pub struct CentagateClient {
    http: reqwest::Client,
    origin: String,
    opts: HttpOptions,
    /// The server's clock minus ours, learnt once per process (`None` inside: no Date header).
    clock_offset: tokio::sync::OnceCell<Option<i64>>,
}

impl CentagateClient {
    pub fn new(server: &str, opts: HttpOptions) -> Result<Self, ApiError> {
        Ok(Self {
            http: http_client(&opts)?,
            origin: server_origin(server)?,
            opts,
            clock_offset: tokio::sync::OnceCell::new(),
        })
    }

    /// How far the server's clock is ahead of ours, in milliseconds, from the `Date` header of a
    /// HEAD request to the server's origin; asked once per process. `None` when the server sent
    /// no usable Date (the timestamp is then sent as it is).
    pub async fn clock_offset_ms(&self) -> Option<i64> {
        *self
            .clock_offset
            .get_or_init(|| async {
                let sent = SystemTime::now();
                let resp = self.http.head(&self.origin).send().await.ok()?;
                let received = SystemTime::now();
                let date = resp.headers().get(reqwest::header::DATE)?.to_str().ok()?;
                // Date is truncated to the second: the server's clock read, on average, half a
                // second later than it says. Compare with the middle of the exchange.
                let server = httpdate::parse_http_date(date).ok()? + Duration::from_millis(500);
                let ours = sent + received.duration_since(sent).unwrap_or_default() / 2;
                Some(signed_ms(server, ours))
            })
            .await
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the server answers at all (any HTTP answer to a HEAD of its origin, over TLS as
    /// configured): the relay's health check. The reason when it does not, without URLs.
    pub async fn reachable(&self) -> Result<(), String> {
        self.http
            .head(&self.origin)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(&self.origin, self.opts.timeout, e).to_string())
    }

    /// PUTs one registration. Returns the server's answer whatever its code; an answer that is
    /// not the API's (HTML error page, proxy, garbage) is a protocol error.
    pub async fn register(&self, admin: &str, body: &RegisterBody) -> Result<Answer, ApiError> {
        let url = register_url(&self.origin, admin);
        tracing::debug!(%url, ?body, "registering");
        // Serialised into a buffer that is zeroized when the HTTP stack drops the body.
        let json = serde_json::to_vec(body).map_err(|e| ApiError::Config(e.to_string()))?;
        let answer = self.call(reqwest::Method::PUT, &url, json).await?;
        tracing::debug!(code = answer.code, "answer");
        Ok(answer)
    }

    /// One call of the API: `body` (JSON, holding a secret as likely as not) sent from a buffer
    /// zeroized when dropped; only a 2xx answer in CENTAGATE's shape is an answer. The answer's
    /// `object` may hold secrets (a login's): it is never logged here.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Answer, ApiError> {
        self.call_shown(method, url, url, body, true).await
    }

    /// A login-side call: its answer may hold the session's secrets, so an answer that is not
    /// the API's is never quoted.
    pub(crate) async fn call_secret(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Answer, ApiError> {
        self.call_shown(method, url, url, body, false).await
    }

    /// `call`, with `shown` in every message instead of `url` (a URL that carries a secret, as
    /// the session check's does). Errors of the HTTP client lose their own copy of the URL.
    pub(crate) async fn call_shown(
        &self,
        method: reqwest::Method,
        url: &str,
        shown: &str,
        body: Vec<u8>,
        quote_body: bool,
    ) -> Result<Answer, ApiError> {
        let owned = bytes::Bytes::from_owner(crate::secret::ZeroizingBytes(body));
        let resp = self
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(owned)
            .send()
            .await
            .map_err(|e| classify(shown, self.opts.timeout, e.without_url()))?;
        let url = shown;
        let status = resp.status();
        let content_type = content_type(&resp);
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_else(|| "nowhere".into());
            return Err(ApiError::Redirect {
                status: status.as_u16(),
                location,
            });
        }
        let (bytes, truncated) = read_limited(url, self.opts.timeout, resp).await?;
        let bytes = zeroize::Zeroizing::new(bytes);
        let answer = if truncated {
            None
        } else {
            Answer::parse(&bytes)
        };
        tracing::debug!(status = status.as_u16(), code = ?answer.as_ref().map(|a| a.code), "HTTP answer");
        if !status.is_success() {
            return Err(ApiError::HttpStatus {
                status: status.as_u16(),
                code: answer.as_ref().map(|a| a.code),
                message: answer.map(|a| a.message),
                content_type,
                snippet: quoted(&bytes, truncated, quote_body),
            });
        }
        answer.ok_or_else(|| ApiError::Protocol {
            status: status.as_u16(),
            content_type,
            snippet: quoted(&bytes, truncated, quote_body),
        })
    }
}

fn quoted(bytes: &[u8], truncated: bool, quote: bool) -> String {
    if quote {
        snippet(bytes, truncated)
    } else {
        format!(
            "{} bytes, not quoted (a login answer may hold secrets)",
            bytes.len()
        )
    }
}

/// `a - b` in milliseconds, negative when `a` is earlier.
fn signed_ms(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// The first line or so of a body, printable, for an error message.
pub fn snippet(bytes: &[u8], truncated: bool) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(160)]);
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        s = "(empty body)".into();
    }
    if truncated {
        s.push_str(" … (larger than 1 MiB; not read further)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(checked_url("http://localhost:8080", "--server").is_ok());
        assert!(checked_url("http://localhost.example.com", "--server").is_err());
        // A localhost that a hosts file also points at another address is not loopback.
        let mixed = ["127.0.0.1:80", "192.0.2.7:80"].map(|a| a.parse().unwrap());
        assert!(!all_loopback(mixed.into_iter()));
        assert!(!all_loopback(std::iter::empty()));
        assert!(all_loopback(["[::1]:80".parse().unwrap()].into_iter()));
    }

    #[test]
    fn server_is_an_origin_with_an_optional_root() {
        assert_eq!(
            server_origin("https://cg.example.com").unwrap(),
            "https://cg.example.com"
        );
        assert_eq!(
            server_origin("https://cg.example.com:8443/").unwrap(),
            "https://cg.example.com:8443"
        );
        assert_eq!(
            server_origin("https://cg.example.com/CentagateWS/webresources/").unwrap(),
            "https://cg.example.com"
        );
        assert!(server_origin("https://cg.example.com/other").is_err());
        assert!(server_origin("http://cg.example.com").is_err());
        assert!(server_origin("ftp://cg.example.com").is_err());
        assert_eq!(
            server_origin("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            server_origin("http://[::1]:8080").unwrap(),
            "http://[::1]:8080"
        );
        assert_eq!(
            server_origin("http://localhost:1").unwrap(),
            "http://localhost:1"
        );
    }

    #[test]
    fn admin_is_one_encoded_segment() {
        assert_eq!(
            register_url("https://h", "help desk/1"),
            "https://h/CentagateWS/webresources/cert/register/pkcs7/help%20desk%2F1"
        );
    }
}
