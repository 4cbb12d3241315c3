//! The CENTAGATE contract (see `shared/centagate-api.md`): the registration request, the
//! cenToken, timestamps, the answer and what each code means for the person at the keyboard.
//!
//! Owns: everything `reqwest` for CENTAGATE, and the HTTP client policy (TLS roots, timeouts,
//! loopback-only plain http, no redirects) that the challenge fetcher shares.
//! Does not own: tokens, CMS internals, or deciding what to do with an answer (see `enroll`).

pub mod client;
pub mod contract;
pub mod login;
pub mod probe;
pub mod relay;
mod tls;

pub use client::{CentagateClient, HttpOptions};
pub use contract::*;

use crate::secret::{AdminSecrets, CenToken};
use hmac::{Hmac, Mac};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    Config(String),
    #[error("could not reach the server at {url}: {reason}; check the address, the network and any proxy")]
    Network {
        url: String,
        reason: String,
        /// The connection was made (the request may have been sent) before it failed.
        maybe_sent: bool,
    },
    /// The reason and its fix (see `client::with_advice`).
    #[error("the server's TLS certificate was refused: {0}")]
    Tls(String),
    #[error("the TLS handshake with the server failed ({0}); tokenroll needs TLS 1.2 or newer with current ciphers: the server, or a proxy in between, must offer them")]
    TlsHandshake(String),
    #[error("the server did not answer within {0} s; try again, or raise --timeout")]
    Timeout(u64),
    #[error("the server's answer from {url} was cut off ({reason}); the registration may have gone through: check it in CENTAGATE (or `tokenroll journal`) before trying again")]
    Incomplete { url: String, reason: String },
    #[error("the server's answer is not the CENTAGATE API's (HTTP {status}{}): {snippet}; check --server, and whether a proxy is in the way", if .content_type.is_empty() { String::new() } else { format!(", {}", .content_type) })]
    Protocol {
        status: u16,
        content_type: String,
        snippet: String,
    },
    /// The answer was lost, and the server then confirmed that nothing was registered.
    #[error("{0}")]
    ConfirmedNotRegistered(String),
    /// The answer was lost (or may have been) and the server could not be asked what is bound:
    /// the registration may or may not have gone through.
    #[error("{0} — the outcome is unknown (the server could not be asked what is bound): `tokenroll journal --reconcile` settles it once the server answers")]
    Unsettled(Box<ApiError>),
    /// The relay refused the request, or could not serve it: its rule token and message.
    #[error("the relay answered HTTP {status} ({rule}): {message}{}", .retry_after.map(|s| format!(" (retry after {s} s)")).unwrap_or_default())]
    RelayRefused {
        status: u16,
        rule: String,
        message: String,
        retry_after: Option<u64>,
    },
    /// The relay answered that CENTAGATE could not register the token (a `failed` outcome).
    #[error("the relay could not register the token: {0}; try again later")]
    RelayFailed(String),
    /// An admin login (or logout) answered with a refusal.
    #[error("{explanation}")]
    LoginRefused { code: i64, explanation: String },
    /// HTTP 3xx: never followed (the cenToken would go to wherever it points).
    #[error("the server answered with a redirect (HTTP {status} to {location}); tokenroll never follows one, so nothing was sent there: if that address is the real server, give it as --server")]
    Redirect { status: u16, location: String },
    /// HTTP 4xx or 5xx: an error, even when its body carries a CENTAGATE-shaped code.
    #[error("{}", http_status_message(*.status, *.code, .message.as_deref(), .content_type, .snippet))]
    HttpStatus {
        status: u16,
        /// The CENTAGATE code the body carried, if it had one (quoted; 10001 is a session
        /// expiry wherever it appears).
        code: Option<i64>,
        message: Option<String>,
        content_type: String,
        snippet: String,
    },
}

/// The message of a 4xx/5xx answer: the CENTAGATE code if the body had one, and for a gateway's
/// 502/504 that the request may have reached the server behind it.
fn http_status_message(
    status: u16,
    code: Option<i64>,
    message: Option<&str>,
    content_type: &str,
    snippet: &str,
) -> String {
    let mut m = match code {
        Some(c) => format!(
            "the server answered HTTP {status} with CENTAGATE code {c} ({}); only an HTTP 2xx \
             answer is a CENTAGATE answer, so nothing is taken as registered or refused",
            message.unwrap_or("")
        ),
        None => format!(
            "the server's answer is not the CENTAGATE API's (HTTP {status}{}): {snippet}; check \
             --server, and whether a proxy is in the way",
            if content_type.is_empty() {
                String::new()
            } else {
                format!(", {content_type}")
            }
        ),
    };
    if matches!(status, 502 | 504) {
        m.push_str(
            "; a gateway answered, so the registration may have reached the server behind it: \
             check it in CENTAGATE (or `tokenroll journal`) before trying again",
        );
    }
    m
}

impl ApiError {
    /// A transport failure before any answer arrived: the request can be sent again.
    pub fn before_any_answer(&self) -> bool {
        matches!(self, ApiError::Network { .. } | ApiError::Timeout(_))
    }

    /// An answer began, or a gateway answered, so the server may have acted on the request:
    /// never retried, and journaled as unknown rather than failed.
    pub fn may_have_gone_through(&self) -> bool {
        matches!(
            self,
            ApiError::Incomplete { .. }
                | ApiError::Unsettled(_)
                | ApiError::RelayRefused { status: 502, .. }
                | ApiError::HttpStatus {
                    status: 502 | 504,
                    ..
                }
                | ApiError::Timeout(_)
                | ApiError::Network {
                    maybe_sent: true,
                    ..
                }
        )
    }

    /// The CENTAGATE code an error answer carried, if any (a 10001 here is a session expiry).
    pub fn centagate_code(&self) -> Option<i64> {
        match self {
            ApiError::HttpStatus { code, .. } => *code,
            ApiError::Unsettled(e) => e.centagate_code(),
            _ => None,
        }
    }
}

/// HMAC-SHA256(key = secretCode, message = admin + authToken) as lowercase hex.
pub fn cen_token(admin: &str, secrets: &AdminSecrets) -> CenToken {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secrets.secret_code.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(admin.as_bytes());
    mac.update(secrets.auth_token.expose().as_bytes());
    CenToken::new(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{AuthToken, SecretCode};

    #[test]
    fn cen_token_matches_the_contract_example() {
        let s = AdminSecrets {
            auth_token: AuthToken::new("AT-123".into()),
            secret_code: SecretCode::new("S3cr3t".into()),
        };
        assert_eq!(
            cen_token("helpdesk", &s).expose(),
            "6f1433106d2466c15b4d324c3009375249e72162f223b63bd3e5d157e9813499"
        );
    }
}
