//! Configuration, resolved once: raw layers (all `Option`) from `/etc/tokenroll/config.toml`, the
//! user's file (or `--config`), the environment and the flags are merged key by key, then
//! validated into the typed options each command needs. No globals.
//!
//! Owns: config files, which source each admin secret comes from, the typed options. Does not
//! own: the folders or how secret files are opened (see `paths`), nor taking secrets out of the
//! environment (see `secret`).
//! Does not own: parsing argv (see `cli`), networks or tokens.

use crate::api::{HttpOptions, TimestampUnit, TokenStatus};
use crate::challenge::ChallengeSource;
use crate::digest::DigestAlg;
use crate::enroll::UserFrom;
use crate::paths::Paths;
use crate::secret::{AdminSecrets, AuthToken, EnvSecrets, SecretCode};
use crate::token::uri::Pkcs11Uri;
use crate::token::Selector;
use crate::ui::pin::PinSource;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(s: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(s.into()))
}

pub mod keys;
mod login;
pub mod policy;
mod relay;
pub use keys::RawConfig;
use login::proxy;
pub use login::{auth_api, login_options, AdminKeyOptions, AdminPin, LoginOptions};
pub use relay::{relay_http, RelayOptions};

pub const SYSTEM_CONFIG: &str = "/etc/tokenroll/config.toml";

/// The journal's default place: `journal.jsonl` in the state folder.
pub fn journal_path(paths: &Paths) -> Result<PathBuf, ConfigError> {
    Ok(paths
        .state_dir()
        .map_err(|e| ConfigError(e.to_string()))?
        .join("journal.jsonl"))
}

/// `retries`: 0-10, default 2.
pub fn retries(raw: &RawConfig) -> Result<u32, ConfigError> {
    match raw.server.retries.unwrap_or(2) {
        r @ 0..=10 => Ok(r),
        _ => err("--retries must be 0-10"),
    }
}

/// `journal`, else the default in the state folder.
pub fn journal(raw: &RawConfig, paths: &Paths) -> Result<PathBuf, ConfigError> {
    match &raw.journal.journal {
        Some(j) => Ok(j.clone()),
        None => journal_path(paths),
    }
}

/// `user_must_match`, default none.
pub fn user_must_match(raw: &RawConfig) -> Result<crate::enroll::MustMatch, ConfigError> {
    raw.server
        .user_must_match
        .as_deref()
        .unwrap_or("none")
        .parse()
        .map_err(ConfigError)
}

/// `status` (default pending) and `timestamp_unit` (default ms).
pub fn status_and_unit(raw: &RawConfig) -> Result<(TokenStatus, TimestampUnit), ConfigError> {
    Ok((
        raw.server
            .status
            .as_deref()
            .unwrap_or("pending")
            .parse()
            .map_err(|e: String| ConfigError(format!("status: {e}")))?,
        raw.server
            .timestamp_unit
            .as_deref()
            .unwrap_or("ms")
            .parse()
            .map_err(|e: String| ConfigError(format!("timestamp_unit: {e}")))?,
    ))
}

/// Parses a config file's text. An unknown key is refused, naming the known ones.
pub fn parse_text(text: &str) -> Result<RawConfig, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
    let known = RawConfig::keys();
    if let Some(k) = table.keys().find(|k| !known.contains(k)) {
        let mut known = known;
        known.sort();
        return err(format!(
            "unknown key '{k}'; the keys are: {}",
            known.join(", ")
        ));
    }
    RawConfig::deserialize(table).map_err(|e| ConfigError(e.to_string()))
}

/// Reads a config file; a missing optional file is an empty layer.
/// A file (or folder) that another user could change is refused: it could name another server.
pub fn read_file(path: &Path, required: bool) -> Result<RawConfig, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            crate::paths::check_config(path)
                .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
            parse_text(&text)
                .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(RawConfig::default()),
        Err(e) => err(format!("cannot read config file {}: {e}", path.display())),
    }
}

/// Every layer of the configuration, as read: what `resolve` merges and `config --show` shows.
pub struct Layers {
    /// Flags and variables (merged by clap, flags winning).
    pub flags_and_env: RawConfig,
    pub user: RawConfig,
    /// The user's file (`--config`, else the XDG one), whether or not it exists.
    pub user_path: Option<std::path::PathBuf>,
    pub system: RawConfig,
    pub policy: policy::Policy,
}

/// Reads every layer: the user file, the system file and the administrator's policy.
pub fn layers(
    flags_and_env: RawConfig,
    config_flag: Option<&Path>,
    paths: &Paths,
) -> Result<Layers, ConfigError> {
    let user_path = config_flag
        .map(Path::to_path_buf)
        .or_else(|| paths.user_config.clone());
    let user = match (config_flag, &user_path) {
        (Some(p), _) => read_file(p, true)?,
        (None, Some(p)) => read_file(p, false)?,
        (None, None) => RawConfig::default(),
    };
    Ok(Layers {
        flags_and_env,
        user,
        user_path,
        system: read_file(Path::new(SYSTEM_CONFIG), false)?,
        policy: policy::Policy::load(paths.extra_policy.as_deref())?,
    })
}

impl Layers {
    /// flags+env over the user file over the system file, then the administrator's policy over
    /// all (a layer that disagrees with it is refused).
    pub fn merge(&self) -> Result<RawConfig, ConfigError> {
        let merged = self
            .flags_and_env
            .clone()
            .over(self.user.clone())?
            .over(self.system.clone())?;
        let user_name = self
            .user_path
            .as_ref()
            .map(|p| format!("the config file {}", p.display()))
            .unwrap_or_default();
        self.policy.apply(
            &[
                ("a flag or variable", &self.flags_and_env),
                (&user_name, &self.user),
                (SYSTEM_CONFIG, &self.system),
            ],
            merged,
        )
    }
}

/// The configuration a command runs with: every layer read, merged, the policy applied.
pub fn resolve(
    flags_and_env: RawConfig,
    config_flag: Option<&Path>,
    paths: &Paths,
) -> Result<RawConfig, ConfigError> {
    layers(flags_and_env, config_flag, paths)?.merge()
}

/// A secret from the environment (taken at start) or else from its owner-only file.
fn secret(
    from_env: Option<&str>,
    env: &str,
    file: Option<&PathBuf>,
    key: &str,
) -> Result<String, ConfigError> {
    if let Some(v) = from_env {
        return Ok(v.to_string());
    }
    match file {
        Some(p) => crate::paths::read_secret_file(p, key)
            .map(|text| text.as_str().to_string())
            .map_err(ConfigError),
        None => err(format!(
            "the admin's {} is not set: export {env} or set {key} in the config file",
            &key[..key.len() - 5]
        )),
    }
}

/// The admin's authToken and secretCode: from the environment (as taken at start) or owner-only
/// files, never flags.
pub fn admin_secrets(raw: &RawConfig, env: &EnvSecrets) -> Result<AdminSecrets, ConfigError> {
    Ok(AdminSecrets {
        auth_token: AuthToken::new(secret(
            env.auth_token.as_ref().map(|s| s.expose()),
            "TOKENROLL_AUTH_TOKEN",
            raw.secret_files.auth_token_file.as_ref(),
            "auth_token_file",
        )?),
        secret_code: SecretCode::new(secret(
            env.secret_code.as_ref().map(|s| s.expose()),
            "TOKENROLL_SECRET_CODE",
            raw.secret_files.secret_code_file.as_ref(),
            "secret_code_file",
        )?),
    })
}

/// What signing needs: module, selection, PIN source, digest, challenge, HTTP policy.
#[derive(Clone, Debug)]
pub struct SignOptions {
    pub module: Option<PathBuf>,
    pub selector: Selector,
    pub pin: PinSource,
    pub algorithm: DigestAlg,
    pub challenge: ChallengeSource,
    pub http: HttpOptions,
}

/// What registration needs on top.
pub struct RegisterOptions {
    pub server: String,
    pub admin: String,
    /// Who the token is registered to.
    pub user: UserFrom,
    pub status: TokenStatus,
    pub timestamp_unit: TimestampUnit,
    /// How the admin's session is obtained.
    pub login: LoginOptions,
    /// Transport failures before any answer are retried this many times.
    pub retries: u32,
    /// The enrollment journal's file.
    pub journal: PathBuf,
    /// Which certificate field the username must equal.
    pub user_must_match: crate::enroll::MustMatch,
}

pub fn http_options(raw: &RawConfig, env: &EnvSecrets) -> Result<HttpOptions, ConfigError> {
    let secs = |v: Option<u64>, d: u64, name: &str| match v.unwrap_or(d) {
        0 => err(format!("--{name} must be at least 1 second")),
        s => Ok(Duration::from_secs(s)),
    };
    let pin = match &raw.http.server_cert_sha256 {
        None => None,
        Some(text) => {
            let hex_text: String = text
                .chars()
                .filter(|c| *c != ':' && !c.is_whitespace())
                .collect();
            let bytes = hex::decode(&hex_text)
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| {
                    ConfigError(format!(
                    "server_cert_sha256 '{text}' is not a SHA-256 fingerprint: give the 64 hex \
                     digits (colons allowed) that 'openssl x509 -noout -fingerprint -sha256' prints"
                ))
                })?;
            let mut pin = [0u8; 32];
            pin.copy_from_slice(&bytes);
            Some(pin)
        }
    };
    Ok(HttpOptions {
        ca_file: raw.http.ca_file.clone(),
        connect_timeout: secs(raw.http.connect_timeout, 10, "connect-timeout")?,
        timeout: secs(raw.http.timeout, 30, "timeout")?,
        server_cert_sha256: pin,
        proxy: proxy(raw, env)?,
    })
}

pub fn selector(raw: &RawConfig) -> Result<Selector, ConfigError> {
    let uri = match &raw.signing.key {
        None => None,
        Some(text) => {
            let uri = Pkcs11Uri::parse(text).map_err(|e| ConfigError(format!("--key: {e}")))?;
            if uri.carries_pin {
                return err(
                    "--key carries pin-value or pin-source; a command line is visible to every user, so give the PIN with --pin-env VAR or --pin-stdin",
                );
            }
            Some(uri)
        }
    };
    Ok(Selector {
        token_label: raw.pin.token.clone(),
        uri,
        ..Default::default()
    })
}

impl SignOptions {
    pub fn from_raw(raw: &RawConfig, env: &EnvSecrets) -> Result<Self, ConfigError> {
        let pin = match (&raw.pin.pin_env, raw.pin.pin_stdin.unwrap_or(false)) {
            (Some(_), true) => {
                return err("give the PIN with either --pin-env or --pin-stdin, not both")
            }
            // Read now, while the process has one thread, and taken out of the environment.
            (Some(var), false) => PinSource::Env {
                var: var.clone(),
                pin: crate::secret::take_env(var).map(crate::secret::Pin::new),
            },
            (None, true) => PinSource::Stdin,
            (None, false) => PinSource::Terminal,
        };
        let challenge = match (&raw.signing.challenge, &raw.signing.challenge_url) {
            (Some(_), Some(_)) => {
                return err("give either --challenge or --challenge-url, not both")
            }
            (Some(t), None) if t.is_empty() => return err("--challenge is empty"),
            (Some(t), None) => ChallengeSource::Given(t.clone()),
            (None, Some(u)) => ChallengeSource::Url(u.clone()),
            (None, None) => ChallengeSource::Local,
        };
        let algorithm = match &raw.signing.algorithm {
            Some(a) => a.parse().map_err(ConfigError)?,
            None => DigestAlg::Sha256,
        };
        Ok(Self {
            module: raw.module.module.clone(),
            selector: selector(raw)?,
            pin,
            algorithm,
            challenge,
            http: http_options(raw, env)?,
        })
    }
}

/// Which face resolves a registration: the faces differ in the usernames they can obtain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Face {
    /// `tokenroll enroll`: no one to ask; `--user` or a certificate field.
    Cli,
    /// `tokenroll agent`: may ask in a dialog; defaults to the login name.
    Agent,
}

impl RegisterOptions {
    pub fn from_raw(
        raw: &RawConfig,
        face: Face,
        env: &EnvSecrets,
        paths: &Paths,
    ) -> Result<Self, ConfigError> {
        let need = |v: &Option<String>, flag: &str| match v.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => err(format!(
                "{flag} is required (or its config key / TOKENROLL_ variable)"
            )),
        };
        let user = match (&raw.server.user, &raw.server.user_from) {
            (Some(u), _) => UserFrom::Fixed(need(&Some(u.clone()), "--user")?),
            (None, Some(f)) => f.parse().map_err(ConfigError)?,
            (None, None) if face == Face::Agent => UserFrom::Login,
            (None, None) => {
                return err(
                    "--user is required (or user_from = cn, email or upn, its config key \
                            or TOKENROLL_ variable)",
                )
            }
        };
        if face == Face::Cli && user == UserFrom::Ask {
            return err(
                "user_from = ask works only in the agent, which can show a dialog; \
                        `tokenroll enroll` needs --user, or user_from = cn, email, upn or login",
            );
        }
        let server = need(&raw.server.server, "--server")?;
        crate::api::client::server_origin(&server).map_err(|e| ConfigError(e.to_string()))?;
        let (status, timestamp_unit) = status_and_unit(raw)?;
        Ok(Self {
            server,
            admin: need(&raw.server.admin, "--admin")?,
            user,
            status,
            timestamp_unit,
            login: login_options(raw, env)?,
            retries: retries(raw)?,
            journal: journal(raw, paths)?,
            user_must_match: user_must_match(raw)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key the example config shows, uncommented, is a key tokenroll knows.
    #[test]
    fn the_example_config_names_only_real_keys() {
        let example = include_str!("../../packaging/config.example.toml");
        let lines: Vec<String> = example
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            })
            .map(|l| l.split("  #").next().unwrap_or(l).trim().to_string())
            .collect();
        assert!(lines.len() > 20, "{lines:?}");
        let raw: RawConfig = toml::from_str(&lines.join("\n")).expect("example keys parse");
        assert!(
            raw.server.user_must_match.is_some()
                && raw.journal.journal.is_some()
                && raw.server.retries.is_some()
        );
    }

    #[test]
    fn layers_merge_key_by_key() {
        let mut flags = RawConfig::default();
        flags.server.admin = Some("flag-admin".into());
        let user =
            parse_text("admin = \"file-admin\"\nuser = \"alice\"\nheadless = false").unwrap();
        let system =
            parse_text("user = \"bob\"\nserver = \"https://cg\"\nheadless = true\npoll_ms = 9")
                .unwrap();
        let m = flags.over(user).unwrap().over(system).unwrap();
        assert_eq!(m.server.admin.as_deref(), Some("flag-admin"));
        assert_eq!(m.server.user.as_deref(), Some("alice"));
        assert_eq!(m.server.server.as_deref(), Some("https://cg"));
        assert_eq!(
            m.agent.headless,
            Some(false),
            "a lower layer's true does not win"
        );
        assert_eq!(m.agent.poll_ms, Some(9));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = parse_text("sever = \"x\"").unwrap_err().to_string();
        assert!(e.contains("'sever'") && e.contains("server"), "{e}");
        assert!(
            parse_text("retries = \"two\"").is_err(),
            "a wrong type is refused"
        );
        assert!(
            !RawConfig::keys().contains(&"config".to_string()),
            "--config is a flag about files, not a key"
        );
    }

    #[test]
    fn pin_in_key_uri_is_refused() {
        for key in [
            "pkcs11:token=a?pin-value=1234",
            "pkcs11:token=a;pin-value=1234",
        ] {
            let mut raw = RawConfig::default();
            raw.signing.key = Some(key.into());
            let e = selector(&raw).unwrap_err().to_string();
            assert!(e.contains("--pin-env") && !e.contains("1234"), "{e}");
        }
    }
}
