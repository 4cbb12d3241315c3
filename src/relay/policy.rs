//! What the relay checks of an enrollment request before anything reaches CENTAGATE, in the
//! protocol's order: the body's size and form, one signer with the content attached, a digest of
//! SHA-256 or stronger, the signature, the signer's chain to the organisation's CA, the username
//! the certificate yields, the signed statement, and the challenge inside it. Pure: the store's
//! parts (the replay lookup, rate counters, the challenge's claim) come around it.
//!
//! Owns: those checks and the refusal each one gives. Does not own: CMS or path validation
//! themselves (see `cms`, `chain`), the store, or the HTTP front.

use super::challenge::{self, ChallengeKey};
use super::identity::{same_user, UserRule};
use super::statement::Statement;
use super::Rule;
use crate::digest::DigestAlg;
use base64::Engine;
use serde::Deserialize;
use x509_cert::Certificate;

/// The largest request body the relay reads.
pub const MAX_BODY: usize = 64 * 1024;

/// A refusal: the rule that decided and what to tell the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub rule: Rule,
    pub message: String,
}

impl Refusal {
    pub fn new(rule: Rule, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

/// `POST /v1/enroll`'s body: exactly these two keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    username: String,
    signature: String,
}

/// A request's form checked: the username it names and its PKCS#7.
#[derive(Debug)]
pub struct Parsed {
    pub username: String,
    pub pkcs7: Vec<u8>,
    /// SHA-256 of the PKCS#7 DER, hex: the request's identity for replays and lookups.
    pub sha256: String,
}

/// The body's size, JSON and base64.
pub fn parse(body: &[u8]) -> Result<Parsed, Refusal> {
    if body.len() > MAX_BODY {
        return Err(Refusal::new(
            Rule::TooLarge,
            format!(
                "the request is {} bytes; at most {MAX_BODY} are read",
                body.len()
            ),
        ));
    }
    let b: EnrollBody = serde_json::from_slice(body).map_err(|e| {
        Refusal::new(
            Rule::Malformed,
            format!(
                "the body must be exactly {{\"username\": ..., \"signature\": ...}} ({})",
                crate::text::cap(&e.to_string(), 200)
            ),
        )
    })?;
    let pkcs7 = base64::engine::general_purpose::STANDARD
        .decode(b.signature.trim())
        .map_err(|_| Refusal::new(Rule::Malformed, "the signature is not base64"))?;
    if b.username.trim().is_empty() {
        return Err(Refusal::new(Rule::Malformed, "the username is empty"));
    }
    let sha256 = crate::certinfo::fingerprint(&pkcs7);
    Ok(Parsed {
        username: b.username,
        pkcs7,
        sha256,
    })
}

/// The relay's rules for signers.
pub struct Policy {
    pub org_ca: Vec<Certificate>,
    pub org_crl: Vec<crate::chain::Crl>,
    pub user: UserRule,
    pub public_urls: Vec<String>,
}

/// What a request's content established: signed by a trusted certificate that names the
/// request's user, over a statement for this relay and this user. Its freshness (the
/// statement's time, the challenge) is checked apart: a request seen before is answered from its
/// record whatever its age.
#[derive(Debug)]
pub struct Verified {
    /// The username the certificate yields: the one sent to CENTAGATE.
    pub username: String,
    pub digest: DigestAlg,
    pub signer: Certificate,
    pub statement: Statement,
}

/// A request every check passed: what the relay registers, and what the audit trail records.
#[derive(Debug)]
pub struct Accepted {
    pub verified: Verified,
    pub challenge: challenge::Valid,
}

fn ms(now: std::time::SystemTime) -> i64 {
    now.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Policy {
    /// Every check, the challenge against `keys` at `now`; the challenge is not claimed here.
    pub fn check(
        &self,
        req: &Parsed,
        keys: &[ChallengeKey],
        now: std::time::SystemTime,
    ) -> Result<Accepted, Refusal> {
        let verified = self.verify(req, now)?;
        let challenge = self.fresh(&verified, keys, now)?;
        Ok(Accepted {
            verified,
            challenge,
        })
    }

    /// The checks of the request's content, in the protocol's order: one signer with the
    /// content attached, the digest, the signature, the chain (validity and revocation at
    /// `now`), the certificate's username, the statement's form.
    pub fn verify(&self, req: &Parsed, now: std::time::SystemTime) -> Result<Verified, Refusal> {
        use crate::cms::CmsError;
        let weak = || {
            Refusal::new(
                Rule::WeakDigest,
                "the PKCS#7 is signed with SHA-1; SHA-256 or stronger is required",
            )
        };
        let v = crate::cms::verify(&req.pkcs7).map_err(|e| match e {
            CmsError::SignerCount(_) | CmsError::Detached => {
                Refusal::new(Rule::SignerCount, e.to_string())
            }
            // The digest is judged before the signature.
            CmsError::BadSignature(_)
                if crate::cms::signer_digest(&req.pkcs7) == Some(DigestAlg::Sha1) =>
            {
                weak()
            }
            CmsError::BadSignature(_) => Refusal::new(Rule::BadSignature, e.to_string()),
            e => Refusal::new(Rule::Malformed, e.to_string()),
        })?;
        if v.digest == DigestAlg::Sha1 {
            return Err(weak());
        }
        crate::chain::verify_chain_with_crls(
            &v.signer,
            &v.certificates,
            &self.org_ca,
            &self.org_crl,
            now,
        )
        .map_err(|e| Refusal::new(Rule::UntrustedChain, e.to_string()))?;
        let username = self
            .user
            .username(&v.signer)
            .map_err(|(rule, m)| Refusal::new(rule, m))?;
        if !same_user(&username, &req.username) {
            return Err(Refusal::new(
                Rule::UsernameMismatch,
                format!(
                    "the certificate names '{}', not '{}'",
                    crate::text::cap(&username, 120),
                    crate::text::cap(&req.username, 120)
                ),
            ));
        }
        let statement = Statement::parse(&v.content).map_err(|r| {
            Refusal::new(
                r,
                "the signed content is not a tokenroll enrollment statement",
            )
        })?;
        statement
            .check_form(&self.public_urls, &req.username)
            .map_err(|r| Refusal::new(r, statement_message(r)))?;
        Ok(Verified {
            username,
            digest: v.digest,
            signer: v.signer,
            statement,
        })
    }

    /// The request's freshness at `now`: the statement's time, then its challenge (issued by
    /// this deployment with one of `keys`, for this user, unexpired).
    pub fn fresh(
        &self,
        v: &Verified,
        keys: &[ChallengeKey],
        now: std::time::SystemTime,
    ) -> Result<challenge::Valid, Refusal> {
        let now_ms = ms(now);
        v.statement
            .check_iat(now_ms)
            .map_err(|r| Refusal::new(r, statement_message(r)))?;
        challenge::check(keys, &v.statement.challenge, &v.username, now_ms)
            .map_err(|r| Refusal::new(r, challenge_message(r)))
    }
}

fn statement_message(r: Rule) -> &'static str {
    match r {
        Rule::WrongRelay => "the statement was signed for another relay",
        Rule::StatementUsername => "the statement names another username than the request",
        Rule::StaleIat => "the statement's time is more than 5 minutes from the relay's clock",
        _ => "the statement is not a tokenroll enrollment statement",
    }
}

fn challenge_message(r: Rule) -> &'static str {
    match r {
        Rule::ChallengeExpired => "the challenge has expired",
        Rule::OtherUsersChallenge => "the challenge was issued for another username",
        _ => "the challenge was not issued by this relay",
    }
}

#[cfg(test)]
mod tests;
