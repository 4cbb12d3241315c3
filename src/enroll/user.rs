//! The username policy: who a token is registered to (`user` / `user_from`), and which field of
//! the signer's certificate that username must equal (`user_must_match`).
//!
//! Owns: the two value sets and their checks. Does not own: where the values come from (see
//! `config`), or asking the person (the faces do, and pass the answer in).

use super::EnrollError;
use x509_cert::Certificate;

/// Who a token is registered to. One set of values for every face: a face that cannot use one
/// (the CLI cannot `ask`) refuses it when its configuration is resolved, naming itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserFrom {
    /// `--user`: this username, whatever the certificate says.
    Fixed(String),
    /// The desktop session's login name.
    Login,
    Cn,
    Email,
    Upn,
    /// The person types it when enrolling.
    Ask,
}

impl std::str::FromStr for UserFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "login" => Self::Login,
            "cn" => Self::Cn,
            "email" => Self::Email,
            "upn" => Self::Upn,
            "ask" => Self::Ask,
            _ => {
                return Err(format!(
                    "unknown user_from '{text}': use login, cn, email, upn or ask (or give --user)"
                ))
            }
        })
    }
}

impl UserFrom {
    /// The value's name in the config (`user_from = ...`); `Fixed` has none.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Fixed(_) => "user",
            Self::Login => "login",
            Self::Cn => "cn",
            Self::Email => "email",
            Self::Upn => "upn",
            Self::Ask => "ask",
        }
    }

    /// Who the PIN dialog says the token will be registered to, before the certificate is read.
    pub fn describe(&self) -> String {
        match self {
            Self::Fixed(u) => u.clone(),
            Self::Login => login_name().unwrap_or_default(),
            Self::Cn => "the certificate's common name".into(),
            Self::Email => "the certificate's e-mail address".into(),
            Self::Upn => "the certificate's UPN".into(),
            Self::Ask => "the username you type".into(),
        }
    }

    /// The username for `cert`; `asked` is what the person typed (with `Ask`).
    pub fn resolve(&self, cert: &Certificate, asked: Option<&str>) -> Result<String, EnrollError> {
        let found = match self {
            Self::Fixed(u) => Some(u.clone()),
            Self::Ask => asked.map(str::to_string),
            Self::Login => login_name(),
            Self::Cn => crate::certinfo::common_name(cert),
            Self::Email => crate::certinfo::email(cert),
            Self::Upn => crate::certinfo::upn(cert),
        };
        let found = found.map(|u| u.trim().to_string());
        found.filter(|u| !u.is_empty()).ok_or_else(|| {
            EnrollError::Usage(match self {
                Self::Fixed(_) => "the username is empty; give --user".to_string(),
                Self::Login => "the login name is unknown ($USER is not set); set --user".into(),
                Self::Ask => "no username was typed; enroll again and type one".into(),
                other => format!(
                    "the certificate has no {} to use as the username; set --user",
                    other.describe().trim_start_matches("the certificate's ")
                ),
            })
        })
    }
}

fn login_name() -> Option<String> {
    std::env::var("USER")
        .ok()
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|u| !u.is_empty())
}

/// Which field of the signer's certificate the username must equal (`--user-must-match`): a
/// typed or configured username could otherwise bind a trusted certificate to someone else.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MustMatch {
    #[default]
    None,
    Cn,
    Email,
    Upn,
}

impl std::str::FromStr for MustMatch {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "none" => Self::None,
            "cn" => Self::Cn,
            "email" => Self::Email,
            "upn" => Self::Upn,
            _ => {
                return Err(format!(
                    "unknown user_must_match '{s}': use cn, email, upn or none"
                ))
            }
        })
    }
}

impl MustMatch {
    /// Compares case-insensitively; a mismatch is a usage error (exit 2), found before anything
    /// is signed or sent.
    pub fn check(self, user: &str, cert: &Certificate) -> Result<(), EnrollError> {
        let (field, value) = match self {
            Self::None => return Ok(()),
            Self::Cn => ("common name", crate::certinfo::common_name(cert)),
            Self::Email => ("e-mail address", crate::certinfo::email(cert)),
            Self::Upn => ("UPN", crate::certinfo::upn(cert)),
        };
        match value {
            Some(v) if v.eq_ignore_ascii_case(user) => Ok(()),
            Some(v) => Err(EnrollError::Usage(format!(
                "the username '{user}' is not the certificate's {field} '{v}', and user_must_match \
                 requires it; register the token to '{v}', or use this person's own token"
            ))),
            None => Err(EnrollError::Usage(format!(
                "the certificate has no {field}, which user_must_match requires to equal the \
                 username; use a token whose certificate has one, or change user_must_match"
            ))),
        }
    }
}
