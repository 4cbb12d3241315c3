//! `tokenroll config --show [--json]`: every key's resolved value and where it came from —
//! the administrator's policy, /etc's config, the user's config, a variable, a flag or the
//! default — as `git config --show-origin` does. Secrets show only as `<set>` or `<unset>`.
//!
//! Owns: this command's view. Does not own: the layers or their merge (see `config`).

use super::args::ConfigArgs;
use super::exit;
use crate::config::{RawConfig, SYSTEM_CONFIG};
use serde::Serialize;

#[derive(Serialize)]
struct Shown {
    key: String,
    value: serde_json::Value,
    /// policy, system, user, env, flag or default.
    origin: &'static str,
    /// The file it came from (a policy or config file), or the variable for `env`.
    file: Option<String>,
}

/// The defaults the typed options apply when no layer sets a key.
fn default_of(key: &str) -> Option<&'static str> {
    Some(match key {
        "algorithm" => "sha256",
        "status" => "pending",
        "timestamp_unit" => "ms",
        "retries" => "2",
        "connect_timeout" => "10",
        "timeout" => "30",
        "user_must_match" => "none",
        "login" => "static",
        "auth_api" => "v2",
        "poll_ms" => "500 (at least 50)",
        "pinentry" => "pinentry",
        _ => return None,
    })
}

fn object(c: &RawConfig) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(c) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

pub fn config_cmd(
    args: ConfigArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    let json = args.keys.output.json.unwrap_or(false);
    if !args.show {
        eprintln!("tokenroll config: say what to do: --show lists every key, its value and origin");
        return exit::USAGE;
    }
    let layers =
        match crate::config::layers(args.keys.layer(), args.keys.config.config.as_deref(), paths) {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "tokenroll config: {}",
                    crate::text::plain_lines(&e.to_string())
                );
                return exit::USAGE;
            }
        };
    // A layer that breaks the policy is shown, and said, but the command still lists.
    let refused = layers.merge().err();
    // Which flags and variables were given: clap knows each value's source.
    let matches = <super::Cli as clap::CommandFactory>::command()
        .try_get_matches_from(std::env::args_os())
        .ok();
    let sub = matches
        .as_ref()
        .and_then(|m| m.subcommand_matches("config"))
        .cloned();
    let variable = |key: &str| {
        <super::Cli as clap::CommandFactory>::command()
            .find_subcommand("config")
            .and_then(|c| c.get_arguments().find(|a| a.get_id() == key).cloned())
            .and_then(|a| a.get_env().map(|v| v.to_string_lossy().into_owned()))
    };
    let (flags, user, system) = (
        object(&layers.flags_and_env),
        object(&layers.user),
        object(&layers.system),
    );
    let set = |m: &serde_json::Map<String, serde_json::Value>, k: &str| {
        m.get(k).filter(|v| !v.is_null()).cloned()
    };
    let mut keys = RawConfig::keys();
    keys.sort();
    let mut shown = Vec::new();
    for key in keys {
        let (value, origin, file) = if let Some((v, f)) = layers.policy.fixed.get(&key) {
            (v.clone(), "policy", Some(f.display().to_string()))
        } else if let Some(v) = set(&flags, &key) {
            let from_env = sub.as_ref().and_then(|s| s.value_source(&key))
                == Some(clap::parser::ValueSource::EnvVariable);
            if from_env {
                (v, "env", variable(&key))
            } else {
                (v, "flag", None)
            }
        } else if let Some(v) = set(&user, &key) {
            let f = layers.user_path.as_ref().map(|p| p.display().to_string());
            (v, "user", f)
        } else if let Some(v) = set(&system, &key) {
            (v, "system", Some(SYSTEM_CONFIG.to_string()))
        } else if key == "proxy" && env.proxy.is_some() {
            // HTTPS_PROXY / ALL_PROXY, as taken at start (credentials never shown).
            let shown = env
                .proxy
                .as_ref()
                .map(|p| crate::config::policy::without_credentials(p.expose()))
                .unwrap_or_default();
            (shown.into(), "env", Some("HTTPS_PROXY or ALL_PROXY".into()))
        } else if key == "journal" {
            let v = crate::config::journal_path(paths)
                .map_or(serde_json::Value::Null, |p| p.display().to_string().into());
            (v, "default", None)
        } else {
            let v = default_of(&key).map_or(serde_json::Value::Null, |d| d.into());
            (v, "default", None)
        };
        // A URL written with a user and password (never a key's place for them) shows without.
        let value = match value {
            serde_json::Value::String(t) => crate::config::policy::without_credentials(&t).into(),
            v => v,
        };
        shown.push(Shown {
            key,
            value,
            origin,
            file,
        });
    }
    if let Some((alg, f)) = &layers.policy.min_algorithm {
        shown.push(Shown {
            key: "min_algorithm".into(),
            value: alg.name().into(),
            origin: "policy",
            file: Some(f.display().to_string()),
        });
    }
    // The secrets themselves: only whether they are set, from a variable or a file.
    let file_key = |k: &str| {
        shown
            .iter()
            .find(|s| s.key == k && !s.value.is_null())
            .map(|s| (s.origin, s.file.clone()))
    };
    let secrets = [
        (
            "auth_token",
            env.auth_token.is_some(),
            "TOKENROLL_AUTH_TOKEN",
            "auth_token_file",
        ),
        (
            "secret_code",
            env.secret_code.is_some(),
            "TOKENROLL_SECRET_CODE",
            "secret_code_file",
        ),
        (
            "app_secret",
            env.app_secret.is_some(),
            "TOKENROLL_APP_SECRET",
            "app_secret_file",
        ),
        (
            "admin_password",
            env.admin_password.is_some(),
            "TOKENROLL_ADMIN_PASSWORD",
            "admin_password_file",
        ),
        // The admin token's PIN: from the variable admin_pin_env names, or its file.
        ("admin_pin", false, "", "admin_pin_file"),
        ("proxy_credentials", false, "", "proxy_credentials_file"),
    ];
    let secrets: Vec<Shown> = secrets
        .into_iter()
        .map(|(key, in_env, var, file_key_name)| {
            let by_variable = (key == "admin_pin")
                .then(|| file_key("admin_pin_env"))
                .flatten();
            let (value, origin, file) = match (in_env, file_key(file_key_name).or(by_variable)) {
                (true, _) => ("<set>", "env", Some(var.to_string())),
                (false, Some((origin, file))) => ("<set>", origin, file),
                (false, None) => ("<unset>", "default", None),
            };
            Shown {
                key: key.into(),
                value: value.into(),
                origin,
                file,
            }
        })
        .collect();
    shown.extend(secrets);
    if json {
        let mut v = serde_json::json!({ "keys": shown });
        if let Some(e) = &refused {
            v["error"] = e.to_string().into();
        }
        println!("{v}");
    } else {
        for s in &shown {
            let value = match &s.value {
                serde_json::Value::Null => "(unset)".to_string(),
                serde_json::Value::String(t) => format!(
                    "\"{}\"",
                    crate::text::plain(&crate::config::policy::without_credentials(t))
                ),
                other => other.to_string(),
            };
            let file = s
                .file
                .as_deref()
                .map(crate::text::plain)
                .unwrap_or_default();
            println!("{:<8} {:<40} {} = {value}", s.origin, file, s.key);
        }
        if let Some(e) = &refused {
            eprintln!(
                "tokenroll config: {}",
                crate::text::plain_lines(&e.to_string())
            );
        }
    }
    if refused.is_some() {
        exit::USAGE
    } else {
        exit::OK
    }
}
