//! Every configuration key, declared once. Each group is one struct that serves both the command
//! line (clap: `--ca-file`, `TOKENROLL_CA_FILE`) and the config files (serde: `ca_file`); a
//! subcommand flattens the groups it uses, and [`RawConfig`] flattens them all for the files.
//! The set of known keys is read off the same structs, so a key cannot be known to one side
//! and not the other.
//!
//! Owns: key names, types, flag help and variables. Does not own: what the values mean (see the
//! parent module's typed options) or action flags such as `--yes`, which are never keys.

use clap::builder::BoolishValueParser;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The PKCS#11 module.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ModuleKeys {
    /// PKCS#11 module (default: p11-kit proxy, else OpenSC, else SoftHSM2).
    #[arg(long, env = "TOKENROLL_MODULE")]
    pub module: Option<PathBuf>,
}

/// What is signed, with which pair and digest.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SigningKeys {
    /// Select the signing pair by PKCS#11 URI (RFC 7512), e.g. pkcs11:token=alice;id=%01.
    #[arg(long, env = "TOKENROLL_KEY")]
    pub key: Option<String>,
    /// Digest: sha1, sha256, sha384, sha512 or CENTAGATE's 0-3 [default: sha256].
    #[arg(long, env = "TOKENROLL_ALGORITHM")]
    pub algorithm: Option<String>,
    /// Sign this text instead of a local random challenge.
    #[arg(long, env = "TOKENROLL_CHALLENGE")]
    pub challenge: Option<String>,
    /// Fetch the challenge from this URL (JSON {"challenge"}, CENTAGATE object.randomString, or text/plain).
    #[arg(long, env = "TOKENROLL_CHALLENGE_URL")]
    pub challenge_url: Option<String>,
}

/// How HTTPS is spoken.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpKeys {
    /// Extra trusted CA certificates (PEM) for HTTPS; never disables verification.
    #[arg(long, env = "TOKENROLL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seconds to wait for a connection [default: 10].
    #[arg(long, env = "TOKENROLL_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<u64>,
    /// Seconds to wait for a whole request [default: 30].
    #[arg(long, env = "TOKENROLL_TIMEOUT")]
    pub timeout: Option<u64>,
    /// Trust exactly the server certificate with this SHA-256 fingerprint (hex, colons allowed);
    /// its host name and dates are still checked. With --ca-file too, the pin decides.
    #[arg(long, env = "TOKENROLL_SERVER_CERT_SHA256")]
    pub server_cert_sha256: Option<String>,
    /// An HTTP proxy to tunnel through (CONNECT), even to loopback; "none" for no proxy
    /// [default: HTTPS_PROXY / ALL_PROXY with NO_PROXY]. Credentials never here: see
    /// proxy_credentials_file.
    #[arg(long, env = "TOKENROLL_PROXY")]
    pub proxy: Option<String>,
}

/// Which token, and where its PIN comes from, in the one-shot commands.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PinKeys {
    /// Select the token by label.
    #[arg(long, env = "TOKENROLL_TOKEN")]
    pub token: Option<String>,
    /// Read the PIN from this environment variable (its name, not its value).
    #[arg(long, env = "TOKENROLL_PIN_ENV")]
    pub pin_env: Option<String>,
    /// Read the PIN from the first line of stdin.
    #[arg(long, env = "TOKENROLL_PIN_STDIN", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub pin_stdin: Option<bool>,
}

/// Machine-readable output.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct OutputKeys {
    /// Print exactly one JSON object on stdout.
    #[arg(long, env = "TOKENROLL_JSON", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub json: Option<bool>,
}

/// Where `sign` writes the PKCS#7.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SignOutKeys {
    /// Write the PKCS#7 here instead of stdout.
    #[arg(long, env = "TOKENROLL_OUT")]
    pub out: Option<PathBuf>,
    /// Write base64 instead of DER.
    #[arg(long, env = "TOKENROLL_BASE64", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub base64: Option<bool>,
}

/// The CENTAGATE side of a registration.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerKeys {
    /// CENTAGATE origin, https://host[:port] (may end in /CentagateWS/webresources).
    #[arg(long, env = "TOKENROLL_SERVER")]
    pub server: Option<String>,
    /// The CENTAGATE admin who registers the token.
    #[arg(long, env = "TOKENROLL_ADMIN")]
    pub admin: Option<String>,
    /// The user the token is registered to (for the agent: every token; default see --user-from).
    #[arg(long, env = "TOKENROLL_USER")]
    pub user: Option<String>,
    /// Without --user: the certificate's cn, email or upn, the login name, or ask (a dialog; agent
    /// only) [agent's default: login].
    #[arg(long, env = "TOKENROLL_USER_FROM")]
    pub user_from: Option<String>,
    /// pending, valid, temp-deactivated, deactivated or 1-4 [default: pending].
    #[arg(long, env = "TOKENROLL_STATUS")]
    pub status: Option<String>,
    /// ms or s [default: ms].
    #[arg(long, env = "TOKENROLL_TIMESTAMP_UNIT")]
    pub timestamp_unit: Option<String>,
    /// Retries after a transport failure before any answer, 0-10 [default: 2].
    #[arg(long, env = "TOKENROLL_RETRIES")]
    pub retries: Option<u32>,
    /// The username must equal this field of the certificate: cn, email, upn or none [default: none].
    #[arg(long, env = "TOKENROLL_USER_MUST_MATCH")]
    pub user_must_match: Option<String>,
}

/// How the admin's session is obtained.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LoginKeys {
    /// static (authToken and secretCode given), password or token (an admin login) [default: static].
    #[arg(long, env = "TOKENROLL_LOGIN")]
    pub login: Option<String>,
    /// The App's integrationKey for logins (its secretKey from TOKENROLL_APP_SECRET or app_secret_file).
    #[arg(long, env = "TOKENROLL_APP_KEY")]
    pub app_key: Option<String>,
    /// The login calls' paths: v2 (current documents) or 2018 (the 2018 manual) [default: v2].
    #[arg(long, env = "TOKENROLL_AUTH_API")]
    pub auth_api: Option<String>,
    /// For login = token: the admin's own signing pair, as a PKCS#11 URI (RFC 7512).
    #[arg(long, env = "TOKENROLL_ADMIN_KEY")]
    pub admin_key: Option<String>,
    /// For login = token: read the admin token's PIN from this variable (its name).
    #[arg(long, env = "TOKENROLL_ADMIN_PIN_ENV")]
    pub admin_pin_env: Option<String>,
}

/// The relay a desk enrolls through, instead of a CENTAGATE server and an admin session.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RelayClientKeys {
    /// Enroll through this tokenroll relay (https://...): no CENTAGATE server, admin or secret on
    /// this machine; not with --server.
    #[arg(long, env = "TOKENROLL_RELAY")]
    pub relay: Option<String>,
    /// Extra trusted CA certificates (PEM) for the relay's HTTPS; never disables verification.
    #[arg(long, env = "TOKENROLL_RELAY_CA_FILE")]
    pub relay_ca_file: Option<PathBuf>,
}

/// The enrollment journal.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JournalKeys {
    /// The enrollment journal [default: $XDG_STATE_HOME/tokenroll/journal.jsonl].
    #[arg(long, env = "TOKENROLL_JOURNAL")]
    pub journal: Option<PathBuf>,
}

/// The desktop agent.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentKeys {
    /// The pinentry program for the PIN dialog [default: pinentry].
    #[arg(long, env = "TOKENROLL_PINENTRY")]
    pub pinentry: Option<String>,
    /// ask (notification and menu item), auto (PIN dialog at once) or never [default: ask; auto with --headless].
    #[arg(long, env = "TOKENROLL_ENROLL_ON_INSERT")]
    pub enroll_on_insert: Option<String>,
    /// No tray icon: for kiosks and enrollment stations.
    #[arg(long, env = "TOKENROLL_HEADLESS", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", value_parser = BoolishValueParser::new())]
    pub headless: Option<bool>,
    /// How often to look for tokens, in milliseconds [default: 500].
    #[arg(long, env = "TOKENROLL_POLL_MS")]
    pub poll_ms: Option<u64>,
}

/// Files holding the admin's secrets: config keys only, never flags (a command line is visible
/// to every user of the machine).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretFileKeys {
    pub auth_token_file: Option<PathBuf>,
    pub secret_code_file: Option<PathBuf>,
    pub app_secret_file: Option<PathBuf>,
    pub admin_password_file: Option<PathBuf>,
    /// `user:password` for the proxy, owner-only.
    pub proxy_credentials_file: Option<PathBuf>,
    /// The admin token's PIN (login = token, for a service), owner-only.
    pub admin_pin_file: Option<PathBuf>,
}

/// `--config`: which user config file to read. A flag about the files, not a key in them.
#[derive(Args, Clone, Debug, Default)]
pub struct ConfigFlag {
    /// Config file to read instead of $XDG_CONFIG_HOME/tokenroll/config.toml.
    #[arg(long, env = "TOKENROLL_CONFIG")]
    pub config: Option<PathBuf>,
}

/// One layer of configuration (a file, or the flags and variables); every key optional.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    #[serde(flatten)]
    pub module: ModuleKeys,
    #[serde(flatten)]
    pub signing: SigningKeys,
    #[serde(flatten)]
    pub http: HttpKeys,
    #[serde(flatten)]
    pub pin: PinKeys,
    #[serde(flatten)]
    pub output: OutputKeys,
    #[serde(flatten)]
    pub sign_out: SignOutKeys,
    #[serde(flatten)]
    pub server: ServerKeys,
    #[serde(flatten)]
    pub journal: JournalKeys,
    #[serde(flatten)]
    pub relay_client: RelayClientKeys,
    #[serde(flatten)]
    pub login: LoginKeys,
    #[serde(flatten)]
    pub agent: AgentKeys,
    #[serde(flatten)]
    pub secret_files: SecretFileKeys,
}

impl RawConfig {
    /// Every key a config file may hold, read off the structs themselves.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(RawConfig::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => unreachable!("RawConfig serializes to an object"),
        }
    }

    /// Keeps `self`'s values and fills the gaps from `lower`, key by key. Fails only for a path
    /// that is not UTF-8 (from argv or the environment; files are UTF-8 by definition).
    pub fn over(self, lower: RawConfig) -> Result<RawConfig, super::ConfigError> {
        let object = |c: RawConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(super::ConfigError(
                "a file name given is not valid UTF-8; rename the file or give another path".into(),
            )),
        };
        let (mut high, low) = (object(self)?, object(lower)?);
        for (k, v) in low {
            let slot = high.entry(k).or_insert(serde_json::Value::Null);
            if slot.is_null() {
                *slot = v;
            }
        }
        serde_json::from_value(serde_json::Value::Object(high))
            .map_err(|e| super::ConfigError(format!("merging the configuration: {e}")))
    }
}
