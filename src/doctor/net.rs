//! The doctor's checks of the way to the server (CENTAGATE, or the relay on a desk that uses
//! one): its name, a TCP connection, TLS (the chain, who issued it, its dates, the pin), the
//! server's clock against ours, and a session when the configuration holds credentials. The
//! clock and login checks are the station's preflight's too.
//!
//! Owns: the order of these checks and their verdicts. Does not own: the lookup, connection and
//! handshake (see `api::probe`), TLS trust, HTTP or logins (see `api`, `enroll::Session`).

use super::{Check, Status};
use crate::api::probe::{Probe, ProbeError, Refusal};
use crate::api::{CentagateClient, HttpOptions};
use crate::config::RawConfig;
use crate::enroll::Registrar;
use std::net::SocketAddr;
use std::sync::Arc;

/// A certificate that ends within this many days is said so.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// The server the desk talks to, as configured.
struct Target {
    what: &'static str,
    origin: String,
    http: HttpOptions,
}

fn target(raw: &RawConfig, env: &crate::secret::EnvSecrets) -> Result<Option<Target>, String> {
    let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let origin = |url: &str| crate::api::client::server_origin(url).map_err(|e| e.to_string());
    match (set(&raw.server.server), set(&raw.relay_client.relay)) {
        (Some(_), Some(_)) => Err(
            "both server and relay are set; a desk enrolls either with CENTAGATE or through the \
             relay"
                .into(),
        ),
        (Some(server), None) => Ok(Some(Target {
            what: "server",
            origin: origin(&server)?,
            http: crate::config::http_options(raw, env).map_err(|e| e.to_string())?,
        })),
        (None, Some(relay)) => Ok(Some(Target {
            what: "relay",
            origin: origin(&relay)?,
            http: crate::config::relay_http(raw, env).map_err(|e| e.to_string())?,
        })),
        (None, None) => Ok(None),
    }
}

pub async fn checks(
    raw: &RawConfig,
    env: &crate::secret::EnvSecrets,
    session: SessionPlan,
) -> Vec<Check> {
    let t = match target(raw, env) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return vec![Check::skip(
                "server",
                "no server or relay configured, so there is nothing to reach (set server, or \
                 relay, in the configuration)",
            )]
        }
        Err(e) => {
            return vec![Check::new(
                "server",
                Status::Fail,
                e,
                "correct the server or relay settings the message names (keep one of the two)",
            )]
        }
    };
    let mut out = Vec::new();
    let url = match url::Url::parse(&t.origin) {
        Ok(u) => u,
        Err(e) => {
            return vec![Check::new(
                "server",
                Status::Fail,
                e.to_string(),
                "correct the server or relay URL",
            )]
        }
    };
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let (dial_host, dial_port, via) = match &t.http.proxy {
        crate::api::client::Proxy::Via { url, no_proxy, .. }
            if !crate::api::probe::bypasses_proxy(no_proxy.as_deref(), &host) =>
        {
            match url::Url::parse(url) {
                Ok(p) => (
                    p.host_str().unwrap_or_default().to_string(),
                    p.port_or_known_default().unwrap_or(8080),
                    true,
                ),
                Err(e) => {
                    return vec![Check::new(
                        "proxy",
                        Status::Fail,
                        format!("the proxy's URL cannot be read: {e}"),
                        "correct proxy (or HTTPS_PROXY) to http://HOST:PORT",
                    )]
                }
            }
        }
        _ => (host.clone(), port, false),
    };
    let who = if via {
        "the proxy".to_string()
    } else {
        format!("the {}", t.what)
    };
    let addrs =
        match crate::api::probe::resolve(&dial_host, dial_port, t.http.connect_timeout).await {
            Ok(a) => {
                out.push(Check::ok(
                    "dns",
                    format!(
                        "{dial_host} ({who}) is {}",
                        a.iter()
                            .map(|s| s.ip().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
                a
            }
            Err(e) => {
                out.push(Check::new(
                    "dns",
                    Status::Fail,
                    format!("{dial_host} ({who}) does not resolve: {e}"),
                    "check the host name in the configuration and this computer's DNS (is it on \
                 the organisation's network or VPN?)",
                ));
                return out;
            }
        };
    let addr = match crate::api::probe::connect(&addrs, t.http.connect_timeout).await {
        Ok(a) => {
            out.push(Check::ok(
                "tcp",
                format!("{who} accepts connections at {a}"),
            ));
            a
        }
        Err(e) => {
            out.push(Check::new(
                "tcp",
                Status::Fail,
                format!("{who} at {dial_host} port {dial_port} refuses or does not answer: {e}"),
                "check that the server runs and that no firewall blocks the port",
            ));
            return out;
        }
    };
    if url.scheme() != "https" {
        out.push(Check::skip(
            "tls",
            "plain HTTP (allowed to this computer only)",
        ));
    } else if via {
        out.push(Check::skip(
            "tls",
            "through the proxy: the HTTPS check below goes through it",
        ));
    } else {
        out.push(tls(addr, &host, &t.http).await);
    }
    let client = match CentagateClient::new(&t.origin, t.http.clone()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            out.push(Check::new(
                "https",
                Status::Fail,
                e.to_string(),
                "correct the settings the message names",
            ));
            return out;
        }
    };
    match client.reachable().await {
        Ok(()) => out.push(Check::ok("https", format!("{} answers", t.origin))),
        Err(e) => out.push(Check::new(
            "https",
            Status::Fail,
            e,
            "see the TLS check above; check ca_file, server_cert_sha256 and the proxy",
        )),
    }
    if t.what == "relay" {
        out.push(Check::skip(
            "clock",
            "the relay keeps CENTAGATE's time; this desk's clock is not used",
        ));
        out.push(Check::skip(
            "session",
            "the relay holds the CENTAGATE session; this desk holds no admin secret",
        ));
        return out;
    }
    out.push(clock_check(&client).await);
    out.push(self::session(session, client).await);
    out
}

/// The certificate the server presents, described: subject, issuer, end, days left, SHA-256.
struct Leaf {
    described: String,
    sha256: String,
    days_left: i64,
    not_after: String,
}

fn leaf(p: &Probe) -> Option<Leaf> {
    use der::Decode;
    let der = p.chain.first()?;
    let cert = x509_cert::Certificate::from_der(der.as_ref()).ok()?;
    let v = &cert.tbs_certificate.validity;
    let end = v.not_after.to_unix_duration().as_secs() as i64;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    Some(Leaf {
        described: format!(
            "{} issued by {}",
            cert.tbs_certificate.subject, cert.tbs_certificate.issuer
        ),
        sha256: crate::certinfo::fingerprint(der.as_ref()),
        days_left: (end - now).div_euclid(86_400),
        not_after: crate::token::fmt_time(&v.not_after),
    })
}

async fn tls(addr: SocketAddr, host: &str, http: &HttpOptions) -> Check {
    let p = match crate::api::probe::probe(addr, host, http).await {
        Ok(p) => p,
        Err(ProbeError::Trust(e)) => {
            return Check::new(
                "tls",
                Status::Fail,
                e,
                "correct ca_file (--ca-file): a readable PEM file of the CA that issued the \
                 server's certificate",
            )
        }
        Err(ProbeError::Handshake(e)) => {
            return Check::new(
                "tls",
                Status::Fail,
                format!("no TLS handshake with {host}: {e}"),
                "check that the port serves HTTPS and that no proxy intercepts it",
            )
        }
    };
    let Some(l) = leaf(&p) else {
        return Check::new(
            "tls",
            Status::Fail,
            format!("{host} presented no readable certificate"),
            "ask the server's administrator to check its TLS certificate",
        );
    };
    let shown = format!(
        "{}; {}, valid until {} (SHA-256 {})",
        p.version, l.described, l.not_after, l.sha256
    );
    match &p.refused {
        None if l.days_left < EXPIRY_WARNING_DAYS => Check::new(
            "tls",
            Status::Warn,
            format!("trusted, but ends in {} day(s): {shown}", l.days_left),
            "ask the server's administrator to renew the certificate before it ends",
        ),
        None => Check::ok(
            "tls",
            format!(
                "trusted{}: {shown}",
                if http.server_cert_sha256.is_some() {
                    " (it is the pinned certificate, server_cert_sha256)"
                } else {
                    ""
                }
            ),
        ),
        Some((why, said)) => {
            let (detail, fix) = match why {
                Refusal::Expired => (
                    format!("the server's certificate expired on {}", l.not_after),
                    "the server's administrator must renew it; no enrollment reaches the server \
                     until then (do not work around it)"
                        .to_string(),
                ),
                Refusal::NotYetValid => (
                    "the server's certificate is not valid yet".into(),
                    "check this computer's date and time, then the certificate's start date".into(),
                ),
                Refusal::UnknownIssuer => (
                    "the certificate's issuer is not trusted here".into(),
                    "set ca_file (--ca-file) to the organisation's CA certificate (PEM) that \
                     issued it"
                        .into(),
                ),
                Refusal::WrongHost => (
                    format!("the certificate is not for {host}"),
                    "use the host name the certificate names in the server URL, or have it \
                     reissued for this name"
                        .into(),
                ),
                Refusal::NotPinned => (
                    "the certificate is not the one server_cert_sha256 pins".into(),
                    format!(
                        "if the server's certificate was renewed, confirm with its administrator \
                         and set server_cert_sha256 to {}",
                        l.sha256
                    ),
                ),
                Refusal::Other(_) => (
                    format!("refused: {said}"),
                    "ask the server's administrator to check its TLS certificate and settings"
                        .into(),
                ),
            };
            Check::new("tls", Status::Fail, format!("{detail}: {shown}"), &fix)
        }
    }
}

/// The server's clock against ours, from its `Date` header. tokenroll corrects its timestamps
/// by the difference, so a large one is a warning, not a failure.
pub async fn clock_check(client: &CentagateClient) -> Check {
    match client.clock_offset_ms().await {
        Some(o) if o.abs() > crate::enroll::CLOCK_SKEW_LIMIT_MS => Check::new(
            "clock",
            Status::Warn,
            format!(
                "the server's clock is {:.1} s {} this computer's; tokenroll corrects its \
                 timestamps by that much",
                o.abs() as f64 / 1000.0,
                if o > 0 { "ahead of" } else { "behind" }
            ),
            "set this computer's clock from the network (NTP: timedatectl set-ntp true)",
        ),
        Some(o) => Check::ok(
            "clock",
            format!("within {:.1} s of the server's", o.abs() as f64 / 1000.0),
        ),
        None => Check::new(
            "clock",
            Status::Warn,
            "the server sent no Date header to compare with",
            "timestamps use this computer's clock: keep it set by NTP",
        ),
    }
}

/// A login (or the static secrets) and the server's session check, under `name`.
pub async fn login_check(
    name: &str,
    client: &CentagateClient,
    session: &crate::enroll::Session,
    api: crate::api::login::AuthApi,
    admin: &str,
) -> Check {
    let login = async {
        let secrets = session.secrets(&mut |_| {}).await?;
        Ok::<_, crate::enroll::EnrollError>(client.session_check(api, admin, &secrets).await?)
    }
    .await;
    match login {
        Ok(a) if a.code == crate::api::CODE_SUCCESS => {
            Check::ok(name, format!("the session of {admin} is alive"))
        }
        Ok(a) => Check::new(
            name,
            Status::Fail,
            format!(
                "the server refused the session (code {}): {}",
                a.code, a.message
            ),
            "check the admin's credentials and that the account may register tokens",
        ),
        Err(e) => Check::new(
            name,
            Status::Fail,
            e.to_string(),
            "check admin, login and the admin's credentials",
        ),
    }
}

/// What the session check will do, decided before any thread exists (resolving a login may
/// take a variable out of the environment).
pub enum SessionPlan {
    Skip(String),
    /// Credentials are configured but cannot be used: why, with what to do.
    Broken(String),
    Login(Box<PlannedLogin>),
}

pub struct PlannedLogin {
    admin: String,
    api: crate::api::login::AuthApi,
    login: crate::config::LoginOptions,
}

pub fn session_plan(raw: &RawConfig, env: &crate::secret::EnvSecrets) -> SessionPlan {
    use crate::config::{AdminPin, LoginOptions};
    let Some(admin) = raw.server.admin.clone().filter(|a| !a.trim().is_empty()) else {
        return SessionPlan::Skip("no admin configured on this desk".into());
    };
    let f = &raw.secret_files;
    let configured = env.auth_token.is_some()
        || env.secret_code.is_some()
        || env.app_secret.is_some()
        || env.admin_password.is_some()
        || f.auth_token_file.is_some()
        || f.secret_code_file.is_some()
        || f.app_secret_file.is_some()
        || f.admin_password_file.is_some()
        || f.admin_pin_file.is_some()
        || raw.login.admin_pin_env.is_some();
    let login = match crate::config::login_options(raw, env) {
        Ok(l) => l,
        Err(e) if configured => return SessionPlan::Broken(e.to_string()),
        Err(e) => {
            return SessionPlan::Skip(format!(
                "no admin credentials on this desk to log in with ({e})"
            ))
        }
    };
    let asks = match &login {
        LoginOptions::Password { password, .. } => password.is_none(),
        LoginOptions::Token { key, .. } => matches!(key.pin, AdminPin::Ask),
        _ => false,
    };
    if asks {
        return SessionPlan::Skip(
            "the admin's password or PIN is asked at enrollment; the doctor asks no one".into(),
        );
    }
    match crate::config::auth_api(raw) {
        Ok(api) => SessionPlan::Login(Box::new(PlannedLogin { admin, api, login })),
        Err(e) => SessionPlan::Broken(e.to_string()),
    }
}

/// A login and the server's session check, then a logout, as the plan says.
async fn session(plan: SessionPlan, client: Arc<CentagateClient>) -> Check {
    let (admin, api, login) = match plan {
        SessionPlan::Skip(why) => return Check::skip("session", why),
        SessionPlan::Broken(why) => {
            return Check::new(
                "session",
                Status::Fail,
                why,
                "correct the admin's credentials as the message says",
            )
        }
        SessionPlan::Login(p) => (p.admin, p.api, p.login),
    };
    let session = crate::enroll::Session::new(
        client.clone(),
        login,
        admin.clone(),
        Arc::new(crate::enroll::NoOneToAsk),
    );
    let c = login_check("session", &client, &session, api, &admin).await;
    session.logout().await;
    c
}
