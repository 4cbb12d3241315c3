//! The administrator's policy: `/etc/tokenroll/policy.toml`, keys fixed for every user of the
//! machine. A flag, variable or config file that sets a policy key to another value is refused
//! (compared as parsed values: `--status 1` agrees with `status = "pending"`); one that agrees is
//! accepted. `min_algorithm` is a floor for `algorithm`. `TOKENROLL_POLICY_FILE` may name one more
//! policy file (for tests and staged roll-outs): it only adds constraints — a key the system
//! policy fixes it can only repeat, and a floor it can only raise.
//!
//! Owns: the policy files (their keys and who may own them) and the comparison. Does not own:
//! the layers it is applied to (see the parent module).

use super::{ConfigError, RawConfig};
use std::path::{Path, PathBuf};

pub const SYSTEM_POLICY: &str = "/etc/tokenroll/policy.toml";

/// The keys a policy may fix (besides `min_algorithm`).
pub const KEYS: [&str; 9] = [
    "server",
    "relay",
    "ca_file",
    "relay_ca_file",
    "server_cert_sha256",
    "user_must_match",
    "status",
    "enroll_on_insert",
    "proxy",
];

/// The policy in force: each fixed key with the file that fixed it.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Key → (value as written, the file).
    pub fixed: std::collections::BTreeMap<String, (serde_json::Value, PathBuf)>,
    /// The weakest digest allowed, and the file that set it.
    pub min_algorithm: Option<(crate::digest::DigestAlg, PathBuf)>,
}

fn err<T>(s: String) -> Result<T, ConfigError> {
    Err(ConfigError(s))
}

/// Reads one policy file. `owner`: the uid the file and its folder must belong to (the system
/// policy: root's, or whoever owns it could change or remove it); an additional one may also be
/// the user's own (it can only add constraints).
fn read(path: &Path, owner: Option<u32>) -> Result<Option<toml::Table>, ConfigError> {
    use std::os::unix::fs::MetadataExt;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && owner.is_some() => return Ok(None),
        Err(e) => {
            return err(format!(
                "cannot read the policy file {}: {e}",
                path.display()
            ))
        }
    };
    if let Some(uid) = owner {
        for p in [Some(path), path.parent()].into_iter().flatten() {
            let meta = std::fs::metadata(p)
                .map_err(|e| ConfigError(format!("the policy file {}: {e}", path.display())))?;
            if meta.uid() != uid {
                return err(format!(
                    "the policy file {} is refused: {} is owned by uid {}, not root, and whoever \
                     owns it could change or remove the policy; run `chown root:root {}`",
                    path.display(),
                    p.display(),
                    meta.uid(),
                    p.display()
                ));
            }
        }
    }
    crate::paths::check_config(path).map_err(|e| {
        ConfigError(format!(
            "the policy file {} is refused: {e}; run `chmod go-w {0}`",
            path.display()
        ))
    })?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError(format!("the policy file {}: {e}", path.display())))?;
    if let Some(k) = table
        .keys()
        .find(|k| !KEYS.contains(&k.as_str()) && k.as_str() != "min_algorithm")
    {
        return err(format!(
            "the policy file {}: '{k}' is not a key a policy may fix; the keys are {} and \
             min_algorithm",
            path.display(),
            KEYS.join(", ")
        ));
    }
    Ok(Some(table))
}

impl Policy {
    /// The system policy, with the additional file's constraints added.
    pub fn load(extra: Option<&Path>) -> Result<Self, ConfigError> {
        let mut p = Policy::default();
        let system = Path::new(SYSTEM_POLICY);
        if let Some(t) = read(system, Some(0))? {
            p.add(t, system, false)?;
        }
        if let Some(extra) = extra {
            if !extra.is_absolute() {
                return err(format!(
                    "TOKENROLL_POLICY_FILE must name a policy file by its absolute path, not \
                     '{}'",
                    extra.display()
                ));
            }
            let t = read(extra, None)?.unwrap_or_default();
            p.add(t, extra, true)?;
        }
        Ok(p)
    }

    fn add(&mut self, table: toml::Table, file: &Path, only_add: bool) -> Result<(), ConfigError> {
        for (k, v) in table {
            // Every policy key is text in the configuration (`status = 1` is "1").
            let v = match v {
                toml::Value::String(s) => serde_json::Value::String(s),
                toml::Value::Integer(i) => serde_json::Value::String(i.to_string()),
                _ => {
                    return err(format!(
                        "the policy file {}: {k} must be text",
                        file.display()
                    ))
                }
            };
            if let Some(why) = invalid(&k, &v) {
                return err(format!(
                    "the policy file {}: {k} = {v} {why}",
                    file.display()
                ));
            }
            if k == "min_algorithm" {
                let alg: crate::digest::DigestAlg =
                    v.as_str().unwrap_or_default().parse().map_err(|e| {
                        ConfigError(format!("the policy file {}: {e}", file.display()))
                    })?;
                match &self.min_algorithm {
                    Some((floor, _)) if strength(*floor) >= strength(alg) => {}
                    _ => self.min_algorithm = Some((alg, file.to_path_buf())),
                }
                continue;
            }
            if let Some((fixed, by)) = self.fixed.get(&k) {
                if only_add && !agrees(&k, &v, fixed) {
                    return err(format!(
                        "the policy file {} sets {k} = {v}, but {} fixes it to {fixed}: an \
                         additional policy can only add constraints",
                        file.display(),
                        by.display()
                    ));
                }
                continue;
            }
            self.fixed.insert(k, (v, file.to_path_buf()));
        }
        Ok(())
    }

    /// Applies the policy to `layers` (name and layer, highest first: flags and variables, the
    /// user's file, /etc's): a layer that sets a fixed key to another value is refused; the
    /// merged configuration `merged` then holds the policy's values.
    pub fn apply(
        &self,
        layers: &[(&str, &RawConfig)],
        merged: RawConfig,
    ) -> Result<RawConfig, ConfigError> {
        let object = |c: &RawConfig| match serde_json::to_value(c) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        for (key, (value, file)) in &self.fixed {
            for (from, layer) in layers {
                let Some(set) = object(layer).get(key).filter(|v| !v.is_null()).cloned() else {
                    continue;
                };
                if !agrees(key, &set, value) {
                    return err(format!(
                        "{key} = \"{}\" ({from}) is not allowed: the administrator's policy {} \
                         fixes {key} = {value}; remove it, or ask the administrator",
                        without_credentials(set.as_str().unwrap_or_default()),
                        file.display()
                    ));
                }
            }
        }
        let mut m = object(&merged);
        for (key, (value, _)) in &self.fixed {
            m.insert(key.clone(), value.clone());
        }
        let merged: RawConfig = serde_json::from_value(serde_json::Value::Object(m))
            .map_err(|e| ConfigError(format!("applying the policy: {e}")))?;
        let mut merged = merged;
        if let Some((floor, file)) = &self.min_algorithm {
            // No algorithm set: the default, raised to the floor.
            let alg: crate::digest::DigestAlg = match merged.signing.algorithm.as_deref() {
                Some(a) => a.parse().map_err(ConfigError)?,
                None if strength(*floor) > strength(crate::digest::DigestAlg::Sha256) => {
                    merged.signing.algorithm = Some(floor.name().to_string());
                    *floor
                }
                None => crate::digest::DigestAlg::Sha256,
            };
            if strength(alg) < strength(*floor) {
                return err(format!(
                    "algorithm {alg} is not allowed: the administrator's policy {} sets \
                     min_algorithm = {floor}; use {floor} or stronger",
                    file.display()
                ));
            }
        }
        Ok(merged)
    }

    /// Whether `value` agrees with what the policy fixes for `key` (nothing fixed: yes); the
    /// refusal names the file.
    pub fn allows(&self, key: &str, value: &str) -> Result<(), String> {
        match self.fixed.get(key) {
            Some((fixed, file)) if !agrees(key, &value.into(), fixed) => Err(format!(
                "{key} {} is not the one the administrator's policy {} fixes ({fixed})",
                without_credentials(value),
                file.display()
            )),
            _ => Ok(()),
        }
    }

    /// The status the policy fixes, if it does (for the station's batch rows).
    pub fn status(&self) -> Option<(crate::api::TokenStatus, &Path)> {
        let (v, file) = self.fixed.get("status")?;
        Some((v.as_str()?.parse().ok()?, file))
    }
}

/// Why a policy value cannot be used, if it cannot (the file is then refused, naming it).
fn invalid(key: &str, v: &serde_json::Value) -> Option<String> {
    let s = v.as_str().unwrap_or_default();
    let bad = |e: String| Some(format!("is not a value it can take: {e}"));
    match key {
        "status" => s.parse::<crate::api::TokenStatus>().err().and_then(bad),
        "user_must_match" => s.parse::<crate::enroll::MustMatch>().err().and_then(bad),
        "enroll_on_insert" => s
            .parse::<crate::agent::state::EnrollOnInsert>()
            .err()
            .and_then(bad),
        "min_algorithm" => s.parse::<crate::digest::DigestAlg>().err().and_then(bad),
        "server" => crate::api::client::server_origin(s)
            .err()
            .and_then(|e| bad(e.to_string())),
        "relay" => url::Url::parse(s).err().and_then(|e| bad(e.to_string())),
        "server_cert_sha256" => {
            let hex: String = s
                .chars()
                .filter(|c| *c != ':' && !c.is_whitespace())
                .collect();
            (hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| "is not a SHA-256 fingerprint (64 hex digits)".into())
        }
        "ca_file" | "relay_ca_file" if !Path::new(s).is_absolute() => {
            Some("must be an absolute path".into())
        }
        _ => None,
    }
}

/// A URL for comparison: parsed (so case, default ports and a final slash do not count), with
/// `http://` assumed as the proxy settings assume it.
fn url_key(s: &str) -> String {
    let s = s.trim();
    let with_scheme = if s.contains("://") || s == "none" {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    url::Url::parse(&with_scheme)
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .unwrap_or_else(|_| s.to_ascii_lowercase())
}

/// `text` with any user and password in a URL in it removed, for messages.
pub fn without_credentials(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => text.to_string(),
    }
}

fn strength(a: crate::digest::DigestAlg) -> u8 {
    a.centagate_code()
}

/// Whether two values of `key` mean the same, as parsed.
fn agrees(key: &str, a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (a, b) = (text(a), text(b));
    let norm = |s: &str| -> String {
        match key {
            "status" => s
                .parse::<crate::api::TokenStatus>()
                .map(|t| t.name().to_string())
                .unwrap_or_else(|_| s.to_string()),
            "user_must_match" => s
                .parse::<crate::enroll::MustMatch>()
                .map(|m| format!("{m:?}"))
                .unwrap_or_else(|_| s.to_string()),
            "enroll_on_insert" => s
                .parse::<crate::agent::state::EnrollOnInsert>()
                .map(|m| format!("{m:?}"))
                .unwrap_or_else(|_| s.to_string()),
            "server" => crate::api::client::server_origin(s).unwrap_or_else(|_| s.to_string()),
            "relay" | "proxy" => url_key(s),
            "server_cert_sha256" => s
                .chars()
                .filter(|c| *c != ':' && !c.is_whitespace())
                .collect::<String>()
                .to_ascii_lowercase(),
            "ca_file" | "relay_ca_file" => std::fs::canonicalize(s)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| s.to_string()),
            _ => s.trim().to_string(),
        }
    };
    norm(&a) == norm(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        let mut p = Policy::default();
        p.add(
            toml::from_str(text).unwrap(),
            Path::new("/etc/tokenroll/policy.toml"),
            false,
        )
        .unwrap();
        p
    }

    #[test]
    fn a_layer_that_disagrees_is_refused_and_one_that_agrees_accepted() {
        let p = policy(
            "status = \"pending\"\nserver = \"https://cg.example.com\"\nmin_algorithm = \"sha256\"",
        );
        let mut flags = RawConfig::default();
        flags.server.status = Some("1".into());
        flags.server.server = Some("https://CG.example.com:443/".into());
        let merged = p
            .apply(&[("a flag or variable", &flags)], flags.clone())
            .unwrap();
        assert_eq!(merged.server.status.as_deref(), Some("pending"));
        flags.server.status = Some("valid".into());
        let e = p
            .apply(&[("a flag or variable", &flags)], flags.clone())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("status = \"valid\"") && e.contains("/etc/tokenroll/policy.toml"),
            "{e}"
        );
        let mut weak = RawConfig::default();
        weak.signing.algorithm = Some("sha1".into());
        let e = p.apply(&[], weak).unwrap_err().to_string();
        assert!(e.contains("min_algorithm = sha256"), "{e}");
    }

    #[test]
    fn a_policy_file_or_folder_of_another_owner_is_refused_and_values_are_checked() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, "status = \"pending\"\n").unwrap();
        let me = std::fs::metadata(&file).unwrap().uid();
        assert!(read(&file, Some(me)).unwrap().is_some());
        let e = read(&file, Some(me + 1)).unwrap_err().to_string();
        assert!(e.contains("chown root:root"), "{e}");
        let mut p = Policy::default();
        for bad in [
            "status = \"pendng\"",
            "ca_file = \"certs/ca.pem\"",
            "server_cert_sha256 = \"abc\"",
            "min_algorithm = \"md5\"",
        ] {
            let e = p
                .add(toml::from_str(bad).unwrap(), &file, false)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&file.display().to_string()), "{bad}: {e}");
        }
        assert!(agrees(
            "relay",
            &"https://R.example:443/".into(),
            &"https://r.example".into()
        ));
        assert!(agrees(
            "proxy",
            &"proxy.example:3128".into(),
            &"http://proxy.example:3128/".into()
        ));
        assert_eq!(
            without_credentials("http://u:secret@proxy:3128"),
            "http://proxy:3128/"
        );
    }

    #[test]
    fn an_unset_algorithm_takes_the_floor() {
        let p = policy("min_algorithm = \"sha384\"");
        let merged = p.apply(&[], RawConfig::default()).unwrap();
        assert_eq!(merged.signing.algorithm.as_deref(), Some("sha384"));
    }

    #[test]
    fn an_additional_policy_only_adds() {
        let mut p = policy("status = \"pending\"\nmin_algorithm = \"sha384\"");
        let extra = Path::new("/tmp/extra.toml");
        p.add(
            toml::from_str("user_must_match = \"cn\"\nmin_algorithm = \"sha1\"").unwrap(),
            extra,
            true,
        )
        .unwrap();
        assert!(p.fixed.contains_key("user_must_match"));
        assert_eq!(
            p.min_algorithm.as_ref().map(|(a, _)| *a),
            Some(crate::digest::DigestAlg::Sha384),
            "a floor is never lowered"
        );
        let e = p
            .add(toml::from_str("status = \"valid\"").unwrap(), extra, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("can only add constraints"), "{e}");
        p.add(toml::from_str("status = 1").unwrap(), extra, true)
            .expect("repeating the same value is no change");
    }
}
