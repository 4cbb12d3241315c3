//! How tokenroll reaches the admin's session and the server: the `login` key and its secrets
//! (static, password, token), and the proxy.
//!
//! Owns: turning those keys and the environment's secrets into typed options. Does not own:
//! logging in (see `enroll::session`) or HTTP (see `api`).

use super::{admin_secrets, err, ConfigError, RawConfig};
use crate::api::client::Proxy;
use crate::api::login::{App, AuthApi};
use crate::secret::{AdminPassword, AdminSecrets, AppSecret, EnvSecrets, ProxyPassword};
use crate::token::uri::Pkcs11Uri;
use std::path::PathBuf;

/// How the admin's session is obtained: the `login` key.
#[derive(Clone, Debug)]
pub enum LoginOptions {
    /// The authToken and secretCode of a session opened elsewhere (today's deployments).
    Static(AdminSecrets),
    /// A password login through the App; `password: None` asks for it when it is needed.
    Password {
        api: AuthApi,
        app: App,
        password: Option<AdminPassword>,
    },
    /// A PKCS#7 login: the admin's own pair signs the server's random string.
    Token {
        api: AuthApi,
        app: App,
        key: AdminKeyOptions,
    },
}

/// The admin's own signing pair, for `login = token`.
#[derive(Clone, Debug)]
pub struct AdminKeyOptions {
    /// The module it is on (`--module`, else discovered).
    pub module: Option<PathBuf>,
    pub uri: Pkcs11Uri,
    pub pin: AdminPin,
}

/// Where the admin token's PIN comes from when the token must be logged in. The login is kept
/// for the life of the process, so the PIN is needed once — again only if the login is lost
/// (the token removed, its module reloaded).
#[derive(Clone, Debug)]
pub enum AdminPin {
    /// From `--admin-pin-env VAR`, taken at start: for the first login only, then asked.
    Given(crate::secret::OneUse<crate::secret::Pin>),
    /// `admin_pin_file` (a service's): read again for each login of the token.
    File(PathBuf),
    /// Asked (the terminal, the agent's dialog) for each login of the token.
    Ask,
}

/// A secret from the environment (taken at start) or its owner-only file, if either is given.
fn optional_secret(
    from_env: Option<&str>,
    file: Option<&PathBuf>,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    if let Some(v) = from_env {
        return Ok(Some(v.to_string()));
    }
    match file {
        Some(p) => crate::paths::read_secret_file(p, key)
            .map(|t| Some(t.as_str().to_string()))
            .map_err(ConfigError),
        None => Ok(None),
    }
}

/// `auth_api`: which documents' paths the login-side calls take (default v2).
pub fn auth_api(raw: &RawConfig) -> Result<AuthApi, ConfigError> {
    raw.login
        .auth_api
        .as_deref()
        .unwrap_or("v2")
        .parse()
        .map_err(ConfigError)
}

/// The App that authorises `login = {kind}`: its integrationKey and its secretKey.
fn app(raw: &RawConfig, env: &EnvSecrets, kind: &str) -> Result<App, ConfigError> {
    let key = match raw.login.app_key.as_deref().map(str::trim) {
        Some(k) if !k.is_empty() => k.to_string(),
        _ => {
            return err(format!(
                "login = {kind} needs the App's integrationKey: give --app-key (or app_key, \
                 TOKENROLL_APP_KEY)"
            ))
        }
    };
    let secret = optional_secret(
        env.app_secret.as_ref().map(|s| s.expose()),
        raw.secret_files.app_secret_file.as_ref(),
        "app_secret_file",
    )?
    .ok_or_else(|| {
        ConfigError(format!(
            "login = {kind} needs the App's secretKey: export TOKENROLL_APP_SECRET or set \
             app_secret_file"
        ))
    })?;
    Ok(App {
        key,
        secret: AppSecret::new(secret),
    })
}

pub fn login_options(raw: &RawConfig, env: &EnvSecrets) -> Result<LoginOptions, ConfigError> {
    let files = &raw.secret_files;
    match raw.login.login.as_deref().unwrap_or("static") {
        "static" => Ok(LoginOptions::Static(admin_secrets(raw, env)?)),
        "password" => {
            let app = app(raw, env, "password")?;
            let password = optional_secret(
                env.admin_password.as_ref().map(|s| s.expose()),
                files.admin_password_file.as_ref(),
                "admin_password_file",
            )?;
            Ok(LoginOptions::Password {
                api: auth_api(raw)?,
                app,
                password: password.map(AdminPassword::new),
            })
        }
        "token" => {
            let app = app(raw, env, "token")?;
            let uri = raw.login.admin_key.as_deref().ok_or_else(|| {
                ConfigError(
                    "login = token needs the admin's own signing pair: give --admin-key PKCS11-URI"
                        .into(),
                )
            })?;
            let uri =
                Pkcs11Uri::parse(uri).map_err(|e| ConfigError(format!("--admin-key: {e}")))?;
            if uri.carries_pin {
                return err("--admin-key carries pin-value or pin-source; give the PIN with --admin-pin-env VAR or admin_pin_file");
            }
            // A variable is read now, while the process has one thread, and taken out of the
            // environment; a file is checked now (owner-only) and read when the PIN is needed.
            let pin = match (&raw.login.admin_pin_env, &files.admin_pin_file) {
                (Some(var), _) => crate::secret::take_env(var)
                    .map(|p| {
                        AdminPin::Given(crate::secret::OneUse::new(crate::secret::Pin::new(p)))
                    })
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "the variable {var} named by --admin-pin-env is not set"
                        ))
                    })?,
                (None, Some(file)) => {
                    crate::paths::read_secret_file(file, "admin_pin_file").map_err(ConfigError)?;
                    AdminPin::File(file.clone())
                }
                (None, None) => AdminPin::Ask,
            };
            Ok(LoginOptions::Token {
                api: auth_api(raw)?,
                app,
                key: AdminKeyOptions {
                    module: raw.module.module.clone(),
                    uri,
                    pin,
                },
            })
        }
        other => err(format!(
            "unknown login '{other}': use static, password or token"
        )),
    }
}

/// The proxy: `proxy = "none"`, an explicit URL (credentials refused there: they come from
/// `proxy_credentials_file`), else what the environment said at start.
pub(super) fn proxy(raw: &RawConfig, env: &EnvSecrets) -> Result<Proxy, ConfigError> {
    type Split = (String, Option<(String, String)>);
    let split = |text: &str, what: &str| -> Result<Split, ConfigError> {
        let text = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let mut u = url::Url::parse(&text).map_err(|e| {
            ConfigError(format!("{what} is not a URL ({e}); give http://host:port"))
        })?;
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let creds = (!u.username().is_empty()).then(|| {
            (
                decode(u.username()),
                u.password().map(decode).unwrap_or_default(),
            )
        });
        let _ = u.set_username("");
        let _ = u.set_password(None);
        Ok((u.to_string(), creds))
    };
    let file_credentials = || -> Result<Option<(String, ProxyPassword)>, ConfigError> {
        let Some(p) = &raw.secret_files.proxy_credentials_file else {
            return Ok(None);
        };
        let text =
            crate::paths::read_secret_file(p, "proxy_credentials_file").map_err(ConfigError)?;
        let (user, pass) = text.split_once(':').ok_or_else(|| {
            ConfigError(format!(
                "proxy_credentials_file {} must hold user:password",
                p.display()
            ))
        })?;
        Ok(Some((
            user.to_string(),
            ProxyPassword::new(pass.to_string()),
        )))
    };
    match raw.http.proxy.as_deref().map(str::trim) {
        Some("none") => Ok(Proxy::Direct),
        Some(text) => {
            let (url, creds) = split(text, "--proxy")?;
            if creds.is_some() {
                return err(
                    "--proxy (or proxy) holds credentials, and a command line or config file is \
                     no place for a secret: put user:password in the owner-only \
                     proxy_credentials_file, or use the proxy variables",
                );
            }
            Ok(Proxy::Via {
                url,
                credentials: file_credentials()?,
                no_proxy: None,
            })
        }
        None => match &env.proxy {
            None => Ok(Proxy::Direct),
            Some(v) => {
                let (url, creds) =
                    split(v.expose(), "the proxy variable (HTTPS_PROXY or ALL_PROXY)")?;
                let credentials = match creds {
                    Some((u, p)) => Some((u, ProxyPassword::new(p))),
                    None => file_credentials()?,
                };
                Ok(Proxy::Via {
                    url,
                    credentials,
                    no_proxy: env.no_proxy.clone(),
                })
            }
        },
    }
}
