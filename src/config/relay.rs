//! A desk that enrolls through the relay (`relay` / `--relay`): the relay's URL and its TLS
//! trust, and the checks that keep the two ways apart — no `server`, and none of the keys the
//! relay decides itself (the challenge, the status) or refuses (SHA-1). No admin secret is read.
//!
//! Owns: turning those keys into typed options. Does not own: the relay protocol (see
//! `api::relay`) or the flow (see `enroll`).

use super::{err, http_options, ConfigError, RawConfig};
use crate::api::HttpOptions;
use crate::digest::DigestAlg;
use crate::enroll::{MustMatch, UserFrom};
use crate::paths::Paths;
use crate::secret::EnvSecrets;
use std::path::PathBuf;

/// What an enrollment through the relay needs.
pub struct RelayOptions {
    pub url: String,
    /// HTTPS to the relay: `relay_ca_file` as the extra trust, the CENTAGATE pin left out.
    pub http: HttpOptions,
    pub user: UserFrom,
    pub user_must_match: MustMatch,
    pub retries: u32,
    pub journal: PathBuf,
}

impl RelayOptions {
    /// `None` when no relay is configured. `face` says who may ask for a username.
    pub fn from_raw(
        raw: &RawConfig,
        face: super::Face,
        env: &EnvSecrets,
        paths: &Paths,
    ) -> Result<Option<Self>, ConfigError> {
        let Some(url) = raw.relay_client.relay.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if raw.server.server.is_some() {
            return err(
                "give either --relay (enroll through the organisation's relay) or --server (a \
                 CENTAGATE server with an admin session on this machine), not both",
            );
        }
        if raw.signing.challenge.is_some() || raw.signing.challenge_url.is_some() {
            return err("--challenge and --challenge-url do not apply with --relay: the relay issues the challenge");
        }
        if raw.server.status.is_some() {
            return err(
                "--status does not apply with --relay: the relay's policy sets the token status",
            );
        }
        if let Some(a) = &raw.signing.algorithm {
            if a.parse::<DigestAlg>().map_err(ConfigError)? == DigestAlg::Sha1 {
                return err(
                    "the relay refuses SHA-1: use --algorithm sha256 (the default) or stronger",
                );
            }
        }
        crate::api::client::checked_url(url, "--relay").map_err(|e| ConfigError(e.to_string()))?;
        let user = match (&raw.server.user, &raw.server.user_from) {
            (Some(u), _) if !u.trim().is_empty() => UserFrom::Fixed(u.trim().to_string()),
            (Some(_), _) => return err("--user is empty"),
            (None, Some(f)) => f.parse().map_err(ConfigError)?,
            (None, None) if face == super::Face::Agent => UserFrom::Login,
            (None, None) => {
                return err("--user is required with --relay (or user_from = cn, email or upn)")
            }
        };
        if face == super::Face::Cli && user == UserFrom::Ask {
            return err("user_from = ask works only in the agent; give --user");
        }
        Ok(Some(Self {
            url: url.to_string(),
            http: relay_http(raw, env)?,
            user,
            user_must_match: super::user_must_match(raw)?,
            retries: super::retries(raw)?,
            journal: super::journal(raw, paths)?,
        }))
    }
}

/// HTTPS to the relay: `relay_ca_file` as the extra trust, the CENTAGATE pin left out.
pub fn relay_http(raw: &RawConfig, env: &EnvSecrets) -> Result<HttpOptions, ConfigError> {
    let mut http = http_options(raw, env)?;
    http.ca_file = raw.relay_client.relay_ca_file.clone();
    http.server_cert_sha256 = None;
    Ok(http)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Face;

    fn raw(text: &str) -> RawConfig {
        crate::config::parse_text(text).unwrap()
    }

    #[test]
    fn the_relay_excludes_the_server_and_what_the_relay_decides() {
        let env = EnvSecrets::default();
        let paths = Paths::from_env();
        let base = "relay = \"https://relay.example\"\nuser = \"alice\"\njournal = \"/tmp/j\"\n";
        let ok = RelayOptions::from_raw(&raw(base), Face::Cli, &env, &paths)
            .unwrap()
            .unwrap();
        assert_eq!(ok.url, "https://relay.example");
        assert_eq!(ok.user, UserFrom::Fixed("alice".into()));
        for (extra, expect) in [
            ("server = \"https://cg\"\n", "not both"),
            ("challenge = \"x\"\n", "--challenge"),
            ("status = \"valid\"\n", "--status"),
            ("algorithm = \"sha1\"\n", "SHA-1"),
        ] {
            let e =
                RelayOptions::from_raw(&raw(&format!("{base}{extra}")), Face::Cli, &env, &paths)
                    .err()
                    .unwrap()
                    .to_string();
            assert!(e.contains(expect), "{extra}: {e}");
        }
        let e = RelayOptions::from_raw(
            &raw("relay = \"http://relay.example\"\nuser = \"a\"\n"),
            Face::Cli,
            &env,
            &paths,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("plain http"), "{e}");
        assert!(
            RelayOptions::from_raw(&raw("user = \"a\"\n"), Face::Cli, &env, &paths)
                .unwrap()
                .is_none()
        );
    }
}
