//! The relay's rule tokens: the fixed names of every refusal, shared by the HTTP answers
//! (`{"error": "<rule>", ...}`), the audit trail and the metrics. Clients and dashboards depend
//! on them: a token is never renamed, only added.
//!
//! Owns: the token set, each token's HTTP status and its message's advice. Does not own: when a
//! rule applies (see the checks) or how an answer is written (see the HTTP front).

/// Why the relay refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rule {
    /// Not the protocol's JSON: bad JSON, other keys, bad base64, not a PKCS#7.
    Malformed,
    /// The body is over 64 KiB.
    TooLarge,
    /// Not exactly one signer, or the content is not attached.
    SignerCount,
    /// SHA-1 (or weaker): SHA-256 or stronger is required.
    WeakDigest,
    /// The signature does not verify with the signer's certificate.
    BadSignature,
    /// The signer's certificate does not chain to the organisation's CA (or is expired,
    /// revoked, or may not sign).
    UntrustedChain,
    /// The certificate yields no username, or several, or one outside `allowed_domains`.
    NoUsername,
    /// The certificate's username is not the request's.
    UsernameMismatch,
    /// The statement is not a tokenroll enrollment statement (its `typ`, its keys).
    BadStatement,
    /// The statement names another relay.
    WrongRelay,
    /// The statement's `iat` is more than 5 minutes from the relay's clock.
    StaleIat,
    /// The statement's username is not the request's.
    StatementUsername,
    /// The challenge was not issued by this relay deployment.
    UnknownChallenge,
    /// The challenge was issued for another username.
    OtherUsersChallenge,
    /// The challenge has expired.
    ChallengeExpired,
    /// The challenge was used already.
    ChallengeUsed,
    /// The same request is being handled right now.
    InProgress,
    /// Too many requests from this address, for this user or with this certificate.
    RateLimited,
    /// CENTAGATE cannot be reached, or the relay has no session with it.
    CentagateUnavailable,
    /// CENTAGATE's answer was lost and could not be reconciled: the outcome is unknown.
    CentagateAnswerLost,
    /// The relay itself cannot serve (its database does not answer).
    RelayUnavailable,
    /// No request with this SHA-256 reached CENTAGATE through this relay (a lookup).
    NotFound,
}

impl Rule {
    pub const ALL: [Rule; 22] = [
        Rule::Malformed,
        Rule::TooLarge,
        Rule::SignerCount,
        Rule::WeakDigest,
        Rule::BadSignature,
        Rule::UntrustedChain,
        Rule::NoUsername,
        Rule::UsernameMismatch,
        Rule::BadStatement,
        Rule::WrongRelay,
        Rule::StaleIat,
        Rule::StatementUsername,
        Rule::UnknownChallenge,
        Rule::OtherUsersChallenge,
        Rule::ChallengeExpired,
        Rule::ChallengeUsed,
        Rule::InProgress,
        Rule::RateLimited,
        Rule::CentagateUnavailable,
        Rule::CentagateAnswerLost,
        Rule::RelayUnavailable,
        Rule::NotFound,
    ];

    /// The token, as it appears in answers, the audit trail and metrics.
    pub fn token(self) -> &'static str {
        match self {
            Rule::Malformed => "malformed",
            Rule::TooLarge => "too_large",
            Rule::SignerCount => "signer_count",
            Rule::WeakDigest => "weak_digest",
            Rule::BadSignature => "bad_signature",
            Rule::UntrustedChain => "untrusted_chain",
            Rule::NoUsername => "no_username",
            Rule::UsernameMismatch => "username_mismatch",
            Rule::BadStatement => "bad_statement",
            Rule::WrongRelay => "wrong_relay",
            Rule::StaleIat => "stale_iat",
            Rule::StatementUsername => "statement_username",
            Rule::UnknownChallenge => "unknown_challenge",
            Rule::OtherUsersChallenge => "other_users_challenge",
            Rule::ChallengeExpired => "challenge_expired",
            Rule::ChallengeUsed => "challenge_used",
            Rule::InProgress => "in_progress",
            Rule::RateLimited => "rate_limited",
            Rule::CentagateUnavailable => "centagate_unavailable",
            Rule::CentagateAnswerLost => "centagate_answer_lost",
            Rule::RelayUnavailable => "relay_unavailable",
            Rule::NotFound => "not_found",
        }
    }

    /// The HTTP status of a refusal by this rule.
    pub fn status(self) -> u16 {
        match self {
            Rule::Malformed | Rule::SignerCount => 400,
            Rule::TooLarge => 413,
            Rule::WeakDigest
            | Rule::BadSignature
            | Rule::UntrustedChain
            | Rule::NoUsername
            | Rule::UsernameMismatch
            | Rule::BadStatement
            | Rule::WrongRelay
            | Rule::StaleIat
            | Rule::StatementUsername
            | Rule::UnknownChallenge
            | Rule::OtherUsersChallenge => 403,
            Rule::ChallengeExpired | Rule::ChallengeUsed | Rule::InProgress => 409,
            Rule::RateLimited => 429,
            Rule::NotFound => 404,
            Rule::CentagateAnswerLost => 502,
            Rule::CentagateUnavailable | Rule::RelayUnavailable => 503,
        }
    }

    /// What the person at the desk can do about it.
    pub fn advice(self) -> &'static str {
        match self {
            Rule::Malformed | Rule::SignerCount => {
                "the request is not the relay protocol's; update tokenroll on this desk"
            }
            Rule::TooLarge => "the request is over 64 KiB; the token's certificate chain is too big",
            Rule::WeakDigest => "sign with SHA-256 or stronger (--algorithm sha256)",
            Rule::BadSignature => {
                "the token's signature does not match its certificate; the token or its driver is faulty"
            }
            Rule::UntrustedChain => {
                "the token's certificate is not one the organisation's CA issued, or it expired or was revoked; ask the PKI team"
            }
            Rule::NoUsername => {
                "the token's certificate does not name one user the relay accepts; ask the PKI team"
            }
            Rule::UsernameMismatch | Rule::StatementUsername => {
                "the token's certificate belongs to another user; enroll your own token, or give your own username"
            }
            Rule::BadStatement | Rule::WrongRelay => {
                "the signed statement is not for this relay; check the relay URL on this desk"
            }
            Rule::StaleIat => "this desk's clock is off by more than 5 minutes; correct it and retry",
            Rule::UnknownChallenge | Rule::OtherUsersChallenge => {
                "the challenge was not issued by this relay for this user; retry, which fetches a new one"
            }
            Rule::ChallengeExpired | Rule::ChallengeUsed => "retry, which fetches a new challenge",
            Rule::InProgress => {
                "the same request is being handled; in a few minutes `tokenroll journal --reconcile` says how it ended"
            }
            Rule::RateLimited => "too many requests; wait as Retry-After says, then retry",
            Rule::CentagateUnavailable => {
                "nothing was registered; retry later, and if it persists tell the relay's operator (its log says why)"
            }
            Rule::CentagateAnswerLost => {
                "CENTAGATE's answer was lost and the relay settles it itself: in a few minutes `tokenroll journal --reconcile` says how it ended; do not enroll again before that"
            }
            Rule::RelayUnavailable => "the relay cannot serve now; nothing was registered, retry later",
            Rule::NotFound => {
                "nothing with this SHA-256 reached CENTAGATE through this relay: it was not registered"
            }
        }
    }

    /// The rule with this token, for clients reading an answer.
    pub fn from_token(token: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.token() == token)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_read_back() {
        let mut seen = std::collections::HashSet::new();
        for r in Rule::ALL {
            assert!(seen.insert(r.token()), "{} twice", r.token());
            assert_eq!(Rule::from_token(r.token()), Some(r));
            assert!(r
                .token()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!((400..=503).contains(&r.status()));
        }
        assert_eq!(Rule::from_token("nonsense"), None);
    }
}
