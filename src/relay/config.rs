//! The relay's own configuration: one TOML file (`tokenroll relay --config FILE`) plus the
//! secret variables and owner-only files; never the desktop layers (`/etc/tokenroll/config.toml`,
//! the user's file), which are about desks. The CENTAGATE side takes the same keys, secret
//! sources and validation as `enroll` (declared once, in `config::keys`); the relay's own keys
//! are declared here. Unknown keys are refused, and every error names the key and the file.
//!
//! Owns: the relay's keys, their defaults and what they mean. Does not own: the CENTAGATE keys'
//! meaning (see `config`), or what the relay does with them.

use super::identity::{Field, UserRule};
use super::rate::{Rate, Rates};
use crate::api::{HttpOptions, TimestampUnit, TokenStatus};
use crate::config::{LoginOptions, RawConfig};
use crate::paths::Paths;
use crate::secret::EnvSecrets;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use x509_cert::Certificate;

#[derive(Debug, thiserror::Error)]
#[error("relay config {file}: {message}")]
pub struct RelayConfigError {
    pub file: String,
    pub message: String,
}

/// One value or a list of them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The relay's own keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayKeys {
    /// ADDR:PORT of the public listener.
    pub listen: Option<String>,
    /// ADDR:PORT of a plain-HTTP listener for `/metrics` (an internal address).
    pub metrics_listen: Option<String>,
    /// The relay's URL as desks reach it: one or a list (each a statement may name).
    pub public_url: Option<OneOrMany>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Addresses (or ADDR/PREFIX networks) whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<Vec<String>>,
    /// PEM files of the CAs that issue the organisation's token certificates.
    pub org_ca: Option<OneOrMany>,
    /// CRL files (PEM or DER).
    pub org_crl: Option<OneOrMany>,
    /// cn, email, upn, email-local-part or upn-local-part.
    pub user_from: Option<String>,
    pub allowed_domains: Option<Vec<String>>,
    /// sqlite:PATH or postgres://...
    pub database: Option<String>,
    pub rate_per_address: Option<String>,
    pub rate_per_user: Option<String>,
    pub rate_per_certificate: Option<String>,
    pub centagate_concurrency: Option<usize>,
}

/// The CENTAGATE side's keys a relay file may hold: `enroll`'s, less those about desks (the
/// user, the token, the journal) and the static secrets (refused for a relay).
const CENTAGATE_KEYS: &[&str] = &[
    "server",
    "admin",
    "status",
    "timestamp_unit",
    "retries",
    "ca_file",
    "connect_timeout",
    "timeout",
    "server_cert_sha256",
    "proxy",
    "login",
    "app_key",
    "auth_api",
    "admin_key",
    "module",
    "app_secret_file",
    "admin_password_file",
    "proxy_credentials_file",
    "admin_pin_file",
];

/// A network of trusted proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Net {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not an address or ADDR/PREFIX network");
        let (a, p) = text.trim().split_once('/').unwrap_or((text.trim(), ""));
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>().ok().filter(|n| *n <= max).ok_or_else(bad)?
        };
        Ok(Net { addr, prefix })
    }
}

impl Net {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v) => u128::from(u32::from(v)) << 96,
                IpAddr::V6(v) => u128::from(v),
            }
        };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let prefix = u32::from(self.prefix);
        let mask = if prefix == 0 {
            0
        } else {
            u128::MAX << (128 - prefix)
        };
        bits(self.addr) & mask == bits(ip) & mask
    }
}

/// The relay's configuration, resolved.
pub struct RelayConfig {
    pub file: PathBuf,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub public_urls: Vec<String>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trusted_proxies: Vec<Net>,
    pub org_ca: Vec<Certificate>,
    pub org_crl: Vec<crate::chain::Crl>,
    pub user: UserRule,
    pub status: TokenStatus,
    pub database: String,
    pub rates: Rates,
    pub centagate_concurrency: usize,
    pub server: String,
    pub admin: String,
    pub http: HttpOptions,
    pub login: LoginOptions,
    pub timestamp_unit: TimestampUnit,
    pub retries: u32,
}

impl RelayConfig {
    /// Reads `file` (refused if another user could change it) with the secrets the environment
    /// gave at start.
    pub fn load(file: &Path, env: &EnvSecrets, paths: &Paths) -> Result<Self, RelayConfigError> {
        let fail = |message: String| RelayConfigError {
            file: file.display().to_string(),
            message,
        };
        let text =
            std::fs::read_to_string(file).map_err(|e| fail(format!("cannot read it: {e}")))?;
        crate::paths::check_config(file).map_err(|e| fail(e.to_string()))?;
        Self::parse(&text, env, paths).map_err(fail).map(|mut c| {
            c.file = file.to_path_buf();
            c
        })
    }

    /// The file's text, resolved.
    pub fn parse(text: &str, env: &EnvSecrets, paths: &Paths) -> Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let relay_known = keys_of(&RelayKeys::default());
        let (mut ours, mut centagate) = (toml::Table::new(), toml::Table::new());
        for (k, v) in table {
            if relay_known.contains(&k) {
                ours.insert(k, v);
            } else if CENTAGATE_KEYS.contains(&k.as_str()) {
                centagate.insert(k, v);
            } else {
                let mut all: Vec<String> = relay_known
                    .iter()
                    .cloned()
                    .chain(CENTAGATE_KEYS.iter().map(|s| s.to_string()))
                    .collect();
                all.sort();
                return Err(format!(
                    "unknown key '{k}'; a relay's keys are: {}",
                    all.join(", ")
                ));
            }
        }
        let keys = RelayKeys::deserialize(ours).map_err(|e| e.to_string())?;
        let mut raw = RawConfig::deserialize(centagate).map_err(|e| e.to_string())?;
        // Under systemd, a secret the unit hands over (`LoadCredential=NAME:...`) stands in for
        // a `NAME_file` key the file leaves out.
        let files = &mut raw.secret_files;
        for (slot, name) in [
            (&mut files.app_secret_file, "app_secret"),
            (&mut files.admin_password_file, "admin_password"),
            (&mut files.admin_pin_file, "admin_pin"),
            (&mut files.proxy_credentials_file, "proxy_credentials"),
        ] {
            if slot.is_none() {
                *slot = paths.credential(name);
            }
        }
        Self::resolve(keys, raw, env, paths)
    }

    fn resolve(
        keys: RelayKeys,
        raw: RawConfig,
        env: &EnvSecrets,
        paths: &Paths,
    ) -> Result<Self, String> {
        let need = |v: Option<String>, key: &str, what: &str| match v {
            Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(format!("{key} is required: {what}")),
        };
        let addr = |text: String, key: &str| {
            text.parse::<SocketAddr>()
                .map_err(|_| format!("{key} = '{text}' is not ADDR:PORT (e.g. 0.0.0.0:8443)"))
        };
        let listen = addr(
            need(keys.listen, "listen", "the ADDR:PORT to listen on")?,
            "listen",
        )?;
        let metrics_listen = keys
            .metrics_listen
            .map(|m| addr(m, "metrics_listen"))
            .transpose()?;
        let public_urls = keys.public_url.map(OneOrMany::into_vec).unwrap_or_default();
        if public_urls.is_empty() {
            return Err(
                "public_url is required: the relay's URL as desks reach it (one or a list); \
                        statements must name it"
                    .into(),
            );
        }
        for u in &public_urls {
            match url::Url::parse(u) {
                Ok(p) if matches!(p.scheme(), "https" | "http") && p.host().is_some() => {}
                _ => return Err(format!("public_url '{u}' is not an http(s) URL")),
            }
        }
        let tls = match (keys.tls_cert, keys.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("give both tls_cert and tls_key, or neither (plain HTTP behind a TLS-terminating load balancer)".into()),
        };
        let trusted_proxies = keys
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|t| {
                t.parse::<Net>()
                    .map_err(|e| format!("trusted_proxies: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let org_ca_files = keys.org_ca.map(OneOrMany::into_vec).unwrap_or_default();
        if org_ca_files.is_empty() {
            return Err(
                "org_ca is required: the PEM files of the CAs that issue your tokens' certificates"
                    .into(),
            );
        }
        let mut org_ca = vec![];
        for f in &org_ca_files {
            let pem = std::fs::read(f).map_err(|e| format!("org_ca: cannot read {f}: {e}"))?;
            let certs = crate::cms::certs_from_pem(&pem).map_err(|e| format!("org_ca {f}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("org_ca {f}: no certificate in it (PEM expected)"));
            }
            org_ca.extend(certs);
        }
        let mut org_crl = vec![];
        for f in keys.org_crl.map(OneOrMany::into_vec).unwrap_or_default() {
            let bytes = std::fs::read(&f).map_err(|e| format!("org_crl: cannot read {f}: {e}"))?;
            org_crl.extend(
                crate::chain::crls_from_bytes(&bytes).map_err(|e| format!("org_crl {f}: {e}"))?,
            );
        }
        let field: Field = keys
            .user_from
            .as_deref()
            .unwrap_or("cn")
            .parse()
            .map_err(|e: String| format!("user_from: {e}"))?;
        let user = UserRule::new(field, &keys.allowed_domains.unwrap_or_default())?;
        let database = match keys.database {
            Some(d) => d,
            None => match &paths.service_state {
                Some(dir) => format!("sqlite:{}", dir.join("relay.db").display()),
                None => {
                    return Err(
                        "database is required (sqlite:PATH or postgres://...) when the \
                                relay does not run under systemd with StateDirectory="
                            .into(),
                    )
                }
            },
        };
        let rate = |v: Option<String>, key: &str, default: Rate| -> Result<Rate, String> {
            v.map_or(Ok(default), |t| {
                t.parse().map_err(|e| format!("{key}: {e}"))
            })
        };
        let d = Rates::default();
        let rates = Rates {
            address: rate(keys.rate_per_address, "rate_per_address", d.address)?,
            user: rate(keys.rate_per_user, "rate_per_user", d.user)?,
            certificate: rate(
                keys.rate_per_certificate,
                "rate_per_certificate",
                d.certificate,
            )?,
        };
        let centagate_concurrency = match keys.centagate_concurrency.unwrap_or(8) {
            n @ 1..=256 => n,
            _ => return Err("centagate_concurrency must be 1-256".into()),
        };
        let server = need(raw.server.server.clone(), "server", "the CENTAGATE origin")?;
        crate::api::client::server_origin(&server).map_err(|e| format!("server: {e}"))?;
        let admin = need(
            raw.server.admin.clone(),
            "admin",
            "the CENTAGATE admin the relay registers as",
        )?;
        let login = match raw.login.login.as_deref() {
            None | Some("static") => {
                return Err(
                    "login must be password or token: a relay runs for months, and static \
                            authToken/secretCode stop working when their session times out"
                        .into(),
                )
            }
            Some(_) => crate::config::login_options(&raw, env).map_err(|e| e.to_string())?,
        };
        match &login {
            LoginOptions::Password { password: None, .. } => {
                return Err(
                    "login = password needs the password in admin_password_file (or \
                            TOKENROLL_ADMIN_PASSWORD): a service has no one to ask"
                        .into(),
                )
            }
            LoginOptions::Token { key, .. } if matches!(key.pin, crate::config::AdminPin::Ask) => {
                return Err(
                    "login = token needs the admin token's PIN in admin_pin_file: a \
                            service has no one to ask"
                        .into(),
                )
            }
            _ => {}
        }
        let (status, timestamp_unit) =
            crate::config::status_and_unit(&raw).map_err(|e| e.to_string())?;
        Ok(Self {
            file: PathBuf::new(),
            listen,
            metrics_listen,
            public_urls,
            tls,
            trusted_proxies,
            org_ca,
            org_crl,
            user,
            status,
            database,
            rates,
            centagate_concurrency,
            server,
            admin,
            http: crate::config::http_options(&raw, env).map_err(|e| e.to_string())?,
            login,
            timestamp_unit,
            retries: crate::config::retries(&raw).map_err(|e| e.to_string())?,
        })
    }
}

fn keys_of<T: Serialize>(v: &T) -> Vec<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => vec![],
    }
}

#[cfg(test)]
mod tests;
