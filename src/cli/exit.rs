//! The stable exit codes: 0 registered or signed, 1 other failure, 2 usage/config, 3 token/PIN,
//! 4 refused by CENTAGATE, 5 network/TLS/protocol. The one place that knows them.
//!
//! Owns: mapping outcomes and errors to process exit codes. Does not own: the outcomes.

use crate::api::ApiError;
use crate::enroll::{EnrollError, OutcomeKind, Report};
use crate::token::TokenError;

pub const OK: i32 = 0;
pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const TOKEN: i32 = 3;
pub const REFUSED: i32 = 4;
pub const NETWORK: i32 = 5;

pub fn for_error(e: &EnrollError) -> i32 {
    match e {
        EnrollError::Usage(_) => USAGE,
        EnrollError::Token(TokenError::Ambiguous(_)) => USAGE,
        EnrollError::Token(_) => TOKEN,
        EnrollError::AdminToken(TokenError::Ambiguous(_)) => USAGE,
        EnrollError::AdminToken(_) => TOKEN,
        EnrollError::Api(ApiError::Config(_)) => USAGE,
        // The server answered the login: refused, like a registration it refuses.
        EnrollError::Api(ApiError::LoginRefused { .. }) => REFUSED,
        // The relay's policy refused it, as CENTAGATE would.
        EnrollError::Api(ApiError::RelayRefused { status: 403, .. }) => REFUSED,
        EnrollError::Api(_) => NETWORK,
        EnrollError::Journal(_) => FAILURE,
    }
}

/// A report's exit code; `err` is the error of a failed one.
pub fn for_report(r: &Report, err: Option<&EnrollError>) -> i32 {
    match (r.outcome, err) {
        (OutcomeKind::Registered, _) => OK,
        (OutcomeKind::Rejected, _) => REFUSED,
        (OutcomeKind::Failed, Some(e)) => for_error(e),
        (OutcomeKind::Failed, None) => FAILURE,
    }
}
