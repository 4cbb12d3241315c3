//! The enrollment statement a desk signs for the relay: the UTF-8 bytes of
//! `{"typ":"tokenroll-enroll-v1","relay":"<relay>","username":"<user>","challenge":"<challenge>","iat":<unix ms>}`.
//! Built by the client in exactly that form, parsed by the relay strictly: exactly these five
//! keys, each once, of these types.
//!
//! Owns: the statement's form and its own checks (type, relay, username, age). Does not own:
//! the challenge inside it (see `challenge`) or the signature over it (see `cms`).

use super::Rule;
use serde::{Deserialize, Serialize};

pub const TYP: &str = "tokenroll-enroll-v1";

/// How far `iat` may be from the relay's clock.
pub const IAT_WINDOW_MS: i64 = 5 * 60 * 1000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub typ: String,
    pub relay: String,
    pub username: String,
    pub challenge: String,
    pub iat: i64,
}

impl Statement {
    /// The statement a client signs.
    pub fn new(relay: &str, username: &str, challenge: &str, iat: i64) -> Self {
        Self {
            typ: TYP.into(),
            relay: relay.into(),
            username: username.into(),
            challenge: challenge.into(),
            iat,
        }
    }

    /// The exact bytes to sign (the keys in the protocol's order).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement serializes")
    }

    /// Parses signed content: a JSON object with exactly the five keys (a duplicate, a missing
    /// or an extra key, a wrong type: refused).
    pub fn parse(content: &[u8]) -> Result<Self, Rule> {
        serde_json::from_slice(content).map_err(|_| Rule::BadStatement)
    }

    /// The statement's own checks for a request by `username` to a relay reachable at
    /// `public_urls`, at `now_ms`.
    pub fn check(&self, public_urls: &[String], username: &str, now_ms: i64) -> Result<(), Rule> {
        self.check_form(public_urls, username)?;
        self.check_iat(now_ms)
    }

    /// What does not change with time: its type, its relay, its username.
    pub fn check_form(&self, public_urls: &[String], username: &str) -> Result<(), Rule> {
        if self.typ != TYP {
            return Err(Rule::BadStatement);
        }
        if !public_urls.contains(&self.relay) {
            return Err(Rule::WrongRelay);
        }
        if self.username.trim().to_lowercase() != username.trim().to_lowercase() {
            return Err(Rule::StatementUsername);
        }
        Ok(())
    }

    /// Its time, within 5 minutes of `now_ms`.
    pub fn check_iat(&self, now_ms: i64) -> Result<(), Rule> {
        if self.iat.abs_diff(now_ms) > IAT_WINDOW_MS as u64 {
            return Err(Rule::StaleIat);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn urls() -> Vec<String> {
        vec![
            "https://relay.example".into(),
            "https://relay.internal".into(),
        ]
    }

    #[test]
    fn the_client_form_is_exactly_the_protocols() {
        let s = Statement::new("https://relay.example", "alice", "c-1", NOW);
        assert_eq!(
            String::from_utf8(s.to_bytes()).unwrap(),
            r#"{"typ":"tokenroll-enroll-v1","relay":"https://relay.example","username":"alice","challenge":"c-1","iat":1800000000000}"#
        );
        assert_eq!(Statement::parse(&s.to_bytes()), Ok(s));
    }

    #[test]
    fn anything_but_the_five_keys_is_refused() {
        let bad = [
            r#"{"typ":"tokenroll-enroll-v1","relay":"r","username":"a","challenge":"c"}"#,
            r#"{"typ":"tokenroll-enroll-v1","relay":"r","username":"a","challenge":"c","iat":1,"x":1}"#,
            r#"{"typ":"tokenroll-enroll-v1","relay":"r","username":"a","username":"b","challenge":"c","iat":1}"#,
            r#"{"typ":"tokenroll-enroll-v1","relay":"r","username":"a","challenge":"c","iat":"1"}"#,
            r#"{"typ":"tokenroll-enroll-v1","relay":"r","username":"a","challenge":"c","iat":1.5}"#,
            r#"["typ"]"#,
            "not json",
        ];
        for b in bad {
            assert_eq!(
                Statement::parse(b.as_bytes()),
                Err(Rule::BadStatement),
                "{b}"
            );
        }
    }

    #[test]
    fn type_relay_username_and_age_are_checked() {
        let ok = Statement::new("https://relay.internal", "Alice", "c", NOW - 60_000);
        assert_eq!(ok.check(&urls(), "alice", NOW), Ok(()));
        let with = |f: &dyn Fn(&mut Statement)| {
            let mut s = ok.clone();
            f(&mut s);
            s.check(&urls(), "alice", NOW)
        };
        assert_eq!(with(&|s| s.typ = "other".into()), Err(Rule::BadStatement));
        assert_eq!(
            with(&|s| s.relay = "https://evil.example".into()),
            Err(Rule::WrongRelay)
        );
        assert_eq!(
            with(&|s| s.username = "bob".into()),
            Err(Rule::StatementUsername)
        );
        assert_eq!(
            with(&|s| s.iat = NOW - IAT_WINDOW_MS - 1),
            Err(Rule::StaleIat)
        );
        assert_eq!(
            with(&|s| s.iat = NOW + IAT_WINDOW_MS + 1),
            Err(Rule::StaleIat)
        );
        assert_eq!(with(&|s| s.iat = NOW + IAT_WINDOW_MS), Ok(()));
        assert_eq!(with(&|s| s.iat = i64::MIN), Err(Rule::StaleIat));
    }
}
