//! One enrollment, step by step: select a signing pair, obtain the challenge, ask for the PIN,
//! sign, verify our own PKCS#7, register. The only place that knows this order.
//!
//! Owns: the order, the self-verification gate, the request body and the outcome report.
//! Does not own: how tokens, PINs or servers are reached — those sit behind the traits below, so
//! the same flow runs from the CLI, the agent, and tests with fakes.

use crate::api::{cen_token, Answer, ApiError, RegisterBody, TimestampUnit, TokenStatus};
use crate::digest::DigestAlg;
use crate::secret::{AdminSecrets, Pin};
use crate::token::{KeyKind, TokenError};
use base64::Engine;
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_cert::Certificate;

/// What a person needs to know about the chosen pair, without any PKCS#11 handle.
#[derive(Clone, Debug)]
pub struct PairSummary {
    pub module: String,
    pub token_label: String,
    pub token_serial: String,
    pub pin_pad: bool,
    pub pin_count_low: bool,
    pub pin_final_try: bool,
    pub pin_locked: bool,
    pub uri: String,
    pub subject: String,
    pub kind: KeyKind,
    pub cert: Certificate,
    pub cert_der: Vec<u8>,
}

impl PairSummary {
    /// The progress step that announces this pair.
    pub fn found_step(&self) -> Step {
        Step::TokenFound {
            module: self.module.clone(),
            token: self.token_label.clone(),
            serial: self.token_serial.clone(),
            uri: self.uri.clone(),
            subject: self.subject.clone(),
        }
    }

    pub fn certificate_info(&self) -> CertificateInfo {
        let tbs = &self.cert.tbs_certificate;
        CertificateInfo {
            subject: tbs.subject.to_string(),
            issuer: tbs.issuer.to_string(),
            serial: hex::encode(tbs.serial_number.as_bytes()),
            sha256: crate::certinfo::fingerprint(&self.cert_der),
        }
    }
}

/// How the user authenticates to the token.
pub enum PinInput {
    Pin(Pin),
    /// The reader's PIN pad.
    ProtectedPath,
}

/// The token side: find the pair (no PIN), then log in and produce an attached PKCS#7.
pub trait TokenSide {
    fn select(&mut self) -> Result<PairSummary, TokenError>;
    fn sign_cms(
        &mut self,
        login: PinInput,
        content: &[u8],
        digest: DigestAlg,
    ) -> Result<Vec<u8>, TokenError>;
}

/// Asks the person for the PIN of the chosen pair's token.
pub trait PinPrompt {
    fn pin(&mut self, pair: &PairSummary) -> Result<Pin, TokenError>;
}

/// Sends a registration to CENTAGATE.
#[allow(async_fn_in_trait)]
pub trait Registrar {
    async fn register(&self, admin: &str, body: &RegisterBody) -> Result<Answer, ApiError>;

    /// The server's clock minus ours in milliseconds, if it can be learnt.
    async fn clock_offset_ms(&self) -> Option<i64> {
        None
    }
}

impl Registrar for crate::api::CentagateClient {
    async fn register(&self, admin: &str, body: &RegisterBody) -> Result<Answer, ApiError> {
        crate::api::CentagateClient::register(self, admin, body).await
    }

    async fn clock_offset_ms(&self) -> Option<i64> {
        crate::api::CentagateClient::clock_offset_ms(self).await
    }
}

/// Progress as it happens, for the demo, the CLI's stderr and the agent's tray.
#[derive(Clone, Debug)]
pub enum Step {
    TokenFound {
        module: String,
        token: String,
        serial: String,
        uri: String,
        subject: String,
    },
    /// The token reports few PIN tries left (or the final one) before we log in.
    PinWarning {
        final_try: bool,
    },
    ChallengeReady {
        source: &'static str,
        len: usize,
    },
    PinPad,
    Signed {
        algorithm: DigestAlg,
        kind: String,
        bytes: usize,
    },
    SelfVerified,
    /// The local clock is off by more than a minute: the timestamp follows the server's clock.
    ClockSkew {
        offset_ms: i64,
    },
    Sending {
        url: String,
    },
    /// A transport failure before any answer: the same PKCS#7 goes again after `after`.
    Retrying {
        after: std::time::Duration,
        reason: String,
    },
    Answered {
        code: i64,
        message: String,
    },
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TokenRef {
    pub label: String,
    pub serial: String,
}

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeKind {
    Registered,
    Rejected,
    Failed,
}

/// The record of one attempt: what `--json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub outcome: OutcomeKind,
    pub code: Option<i64>,
    pub message: String,
    pub user: Option<String>,
    pub admin: Option<String>,
    pub algorithm: String,
    pub token: Option<TokenRef>,
    pub certificate: Option<CertificateInfo>,
    pub timestamp: Option<i64>,
    #[serde(skip)]
    pub exit_code: i32,
}

/// Errors that end an enrollment before the server has said yes or no.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

impl EnrollError {
    /// The stable exit codes: 2 usage/config, 3 token/PIN, 5 network/TLS/protocol.
    pub fn exit_code(&self) -> i32 {
        match self {
            EnrollError::Usage(_) => 2,
            EnrollError::Token(TokenError::Ambiguous(_)) => 2,
            EnrollError::Token(_) => 3,
            EnrollError::Api(ApiError::Config(_)) => 2,
            EnrollError::Api(_) => 5,
            EnrollError::Journal(_) => 1,
        }
    }
}

/// What one registration needs besides the token.
pub struct Registration<'a> {
    pub admin: &'a str,
    pub user: &'a str,
    pub status: TokenStatus,
    pub timestamp_unit: TimestampUnit,
    pub secrets: &'a AdminSecrets,
    pub url_for_display: String,
    /// Where every attempt is recorded before it is sent; `None` records nothing (tests, demo).
    pub journal: Option<&'a crate::journal::Journal>,
    /// How many times a transport failure before any answer is retried.
    pub retries: u32,
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

/// The local clock may be this far off before the timestamp follows the server's.
pub const CLOCK_SKEW_LIMIT_MS: i64 = 60_000;

/// Backoff before retry `n` (1-based): 0.5 s, 1 s, 2 s, ... capped at 8 s, each ±50 % at random
/// so that many stations cut off together do not all come back at once.
pub fn backoff(n: u32) -> std::time::Duration {
    let base = 500u64 << n.saturating_sub(1).min(4);
    let mut r = [0u8; 2];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
    let jitter = u16::from_le_bytes(r) as u64 * base / u16::MAX as u64; // 0..=base
    std::time::Duration::from_millis(base / 2 + jitter)
}

/// Selects, asks for the PIN, signs and self-verifies. Returns the pair and the PKCS#7 DER.
pub fn sign_challenge(
    token: &mut impl TokenSide,
    prompt: &mut impl PinPrompt,
    challenge: &[u8],
    digest: DigestAlg,
    pair: &PairSummary,
    on: &mut dyn FnMut(Step),
) -> Result<Vec<u8>, EnrollError> {
    if pair.pin_locked {
        return Err(TokenError::PinLocked.into());
    }
    if pair.pin_count_low || pair.pin_final_try {
        on(Step::PinWarning {
            final_try: pair.pin_final_try,
        });
    }
    let login = if pair.pin_pad {
        on(Step::PinPad);
        PinInput::ProtectedPath
    } else {
        PinInput::Pin(prompt.pin(pair)?)
    };
    let der = token.sign_cms(login, challenge, digest)?;
    on(Step::Signed {
        algorithm: digest,
        kind: pair.kind.describe(),
        bytes: der.len(),
    });
    self_verify(&der, challenge, digest, &pair.cert)?;
    on(Step::SelfVerified);
    Ok(der)
}

/// The gate before anything is sent: our own PKCS#7 must decode and verify, with the content,
/// digest and certificate we meant. A failure is a token error — a faulty token or driver.
pub fn self_verify(
    der: &[u8],
    content: &[u8],
    digest: DigestAlg,
    cert: &Certificate,
) -> Result<(), TokenError> {
    let v = crate::cms::verify(der).map_err(|e| TokenError::SelfVerify(e.to_string()))?;
    if v.content != content {
        return Err(TokenError::SelfVerify(
            "the signed content is not the challenge".into(),
        ));
    }
    if v.digest != digest {
        return Err(TokenError::SelfVerify(format!(
            "digest {} instead of {digest}",
            v.digest
        )));
    }
    if v.signer != *cert {
        return Err(TokenError::SelfVerify(
            "the signer is not the selected certificate".into(),
        ));
    }
    Ok(())
}

pub fn now_timestamp(unit: TimestampUnit) -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    match unit {
        TimestampUnit::Millis => d.as_millis() as i64,
        TimestampUnit::Seconds => d.as_secs() as i64,
    }
}

/// Builds the request body for a signed PKCS#7.
pub fn register_body(
    reg: &Registration<'_>,
    pkcs7: &[u8],
    digest: DigestAlg,
    timestamp: i64,
) -> RegisterBody {
    RegisterBody {
        username: reg.user.to_string(),
        signature: base64::engine::general_purpose::STANDARD.encode(pkcs7),
        algorithm: digest.centagate_code().to_string(),
        timestamp: timestamp.to_string(),
        status: reg.status.code().to_string(),
        cen_token: cen_token(reg.admin, reg.secrets).expose().to_string(),
    }
}

/// Sends the registration and turns the answer into a report. The attempt is journaled (intent
/// on disk before anything leaves, outcome after); transport failures before any answer are
/// retried with backoff, with a fresh timestamp and the same PKCS#7 (no second PIN); a local clock
/// more than a minute off the server's is corrected from the server's `Date`.
pub async fn register(
    registrar: &impl Registrar,
    reg: &Registration<'_>,
    pair: &PairSummary,
    pkcs7: &[u8],
    digest: DigestAlg,
    on: &mut dyn FnMut(Step),
) -> Result<Report, EnrollError> {
    use crate::journal::{Intent, Outcome};
    let id = crate::journal::new_id();
    if let Some(j) = reg.journal {
        j.intent(&Intent {
            id: id.clone(),
            time: crate::journal::now(),
            server: reg.url_for_display.clone(),
            admin: reg.admin.to_string(),
            user: reg.user.to_string(),
            token_label: pair.token_label.clone(),
            token_serial: pair.token_serial.clone(),
            certificate_sha256: pair.certificate_info().sha256,
            certificate_subject: pair.subject.clone(),
            algorithm: digest.name().to_string(),
            status: reg.status.code().to_string(),
        })?;
    }
    let offset_ms = match registrar.clock_offset_ms().await {
        Some(o) if o.abs() > CLOCK_SKEW_LIMIT_MS => {
            on(Step::ClockSkew { offset_ms: o });
            o
        }
        _ => 0,
    };
    let mut attempts = 0u32;
    let result = loop {
        attempts += 1;
        let timestamp = corrected_timestamp(reg.timestamp_unit, offset_ms);
        let body = register_body(reg, pkcs7, digest, timestamp);
        on(Step::Sending {
            url: reg.url_for_display.clone(),
        });
        match registrar.register(reg.admin, &body).await {
            Ok(answer) => break Ok((answer, timestamp)),
            Err(e) if e.before_any_answer() && attempts <= reg.retries => {
                let after = backoff(attempts);
                on(Step::Retrying {
                    after,
                    reason: e.to_string(),
                });
                tokio::time::sleep(after).await;
            }
            Err(e) => break Err(e),
        }
    };
    let outcome = |outcome: &str, code: Option<i64>, message: &str| Outcome {
        id: id.clone(),
        time: crate::journal::now(),
        outcome: outcome.into(),
        code,
        message: message.into(),
        attempts,
    };
    let record = |o: Outcome| {
        if let Some(j) = reg.journal {
            if let Err(e) = j.outcome(&o) {
                // The answer stands; the journal will show this attempt as unknown.
                tracing::error!(error = %e, "the outcome could not be journaled");
            }
        }
    };
    let (answer, timestamp) = match result {
        Ok(v) => v,
        Err(e) => {
            record(outcome("failed", None, &e.to_string()));
            return Err(e.into());
        }
    };
    on(Step::Answered {
        code: answer.code,
        message: answer.message.clone(),
    });
    let registered = answer.code == crate::api::CODE_SUCCESS;
    let message = if answer.code == crate::api::CODE_USER_BOUND && attempts > 1 {
        // The usual advice (unbind first) would be wrong here: the binding is most likely ours.
        format!(
            "{} (code {}) — probably registered by the earlier attempt, whose answer was lost to \
             a transport failure: check in CENTAGATE that this token is the one bound to {}; do \
             not unbind it or enroll again before that",
            answer.message, answer.code, reg.user
        )
    } else {
        answer.explain()
    };
    let kind = if registered {
        OutcomeKind::Registered
    } else {
        OutcomeKind::Rejected
    };
    record(outcome(
        if registered { "registered" } else { "rejected" },
        Some(answer.code),
        &message,
    ));
    Ok(Report {
        outcome: kind,
        code: Some(answer.code),
        message,
        user: Some(reg.user.to_string()),
        admin: Some(reg.admin.to_string()),
        algorithm: digest.name().to_string(),
        token: Some(TokenRef {
            label: pair.token_label.clone(),
            serial: pair.token_serial.clone(),
        }),
        certificate: Some(pair.certificate_info()),
        timestamp: Some(timestamp),
        exit_code: if registered { 0 } else { 4 },
    })
}

/// Now in `unit`, moved by `offset_ms` (the server's clock minus ours).
fn corrected_timestamp(unit: TimestampUnit, offset_ms: i64) -> i64 {
    match unit {
        TimestampUnit::Millis => now_timestamp(unit) + offset_ms,
        TimestampUnit::Seconds => now_timestamp(unit) + offset_ms / 1000,
    }
}

/// The report for an attempt that ended before an answer.
pub fn failure_report(
    err: &EnrollError,
    pair: Option<&PairSummary>,
    reg: Option<&Registration<'_>>,
    digest: DigestAlg,
) -> Report {
    Report {
        outcome: OutcomeKind::Failed,
        code: None,
        message: err.to_string(),
        user: reg.map(|r| r.user.to_string()),
        admin: reg.map(|r| r.admin.to_string()),
        algorithm: digest.name().to_string(),
        token: pair.map(|p| TokenRef {
            label: p.token_label.clone(),
            serial: p.token_serial.clone(),
        }),
        certificate: pair.map(|p| p.certificate_info()),
        timestamp: None,
        exit_code: err.exit_code(),
    }
}

/// The real token side: a PKCS#11 module through `token`, signing with `cms`.
pub struct Pkcs11Side {
    module_path: Option<std::path::PathBuf>,
    selector: crate::token::Selector,
    module: Option<std::sync::Arc<crate::token::Module>>,
    pair: Option<crate::token::SigningPair>,
}

impl Pkcs11Side {
    /// Signs through a module that is already loaded (the agent's watcher shares its own).
    pub fn with_module(
        module: std::sync::Arc<crate::token::Module>,
        selector: crate::token::Selector,
    ) -> Self {
        Self {
            module_path: None,
            selector,
            module: Some(module),
            pair: None,
        }
    }

    pub fn new(module_path: Option<std::path::PathBuf>, selector: crate::token::Selector) -> Self {
        Self {
            module_path,
            selector,
            module: None,
            pair: None,
        }
    }
}

impl TokenSide for Pkcs11Side {
    fn select(&mut self) -> Result<PairSummary, TokenError> {
        let module = match self.module.take() {
            Some(m) => m,
            None => std::sync::Arc::new(crate::token::Module::load(self.module_path.as_deref())?),
        };
        let pair = module.select(&self.selector)?;
        let summary = PairSummary {
            module: format!(
                "{} ({})",
                module.path().display(),
                module.library_description()
            ),
            token_label: pair.token.label.clone(),
            token_serial: pair.token.serial.clone(),
            pin_pad: pair.token.pin_pad,
            pin_count_low: pair.token.pin_count_low,
            pin_final_try: pair.token.pin_final_try,
            pin_locked: pair.token.pin_locked,
            uri: pair.uri().to_string(),
            subject: pair.subject(),
            kind: pair.kind,
            cert: pair.cert.clone(),
            cert_der: pair.cert_der.clone(),
        };
        self.module = Some(module);
        self.pair = Some(pair);
        Ok(summary)
    }

    fn sign_cms(
        &mut self,
        login: PinInput,
        content: &[u8],
        digest: DigestAlg,
    ) -> Result<Vec<u8>, TokenError> {
        let (Some(module), Some(pair)) = (&self.module, &self.pair) else {
            return Err(TokenError::NoToken("selected yet".into()));
        };
        let mut session = module.open(pair)?;
        match &login {
            PinInput::Pin(pin) => session.login(crate::token::Login::Pin(pin))?,
            PinInput::ProtectedPath => session.login(crate::token::Login::ProtectedPath)?,
        }
        let key = session.find_key(pair)?;
        let signer = crate::token::TokenSigner::new(
            &session,
            key,
            pair.kind,
            digest,
            pair.cert.tbs_certificate.subject_public_key_info.clone(),
        );
        crate::cms::build_attached::<_, crate::token::TokenSignature>(
            &signer, &pair.cert, content, digest,
        )
        .map_err(|e| {
            signer.take_error().unwrap_or(TokenError::Device {
                op: "building the PKCS#7".into(),
                rv: e.to_string(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CODE_USER_BOUND;
    use crate::secret::{AuthToken, SecretCode};
    use std::cell::RefCell;

    /// A token with a software P-256 key: real CMS, no hardware.
    struct FakeToken {
        key: p256::ecdsa::SigningKey,
        cert: Certificate,
        /// Signs with this key instead, as a faulty token would.
        wrong_key: Option<p256::ecdsa::SigningKey>,
        locked: bool,
        pin_pad: bool,
        logins: Vec<bool>,
    }

    impl FakeToken {
        fn new() -> Self {
            let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
            let cert = crate::token::tests::software_cert("Fake", &key, 30);
            Self {
                key,
                cert,
                wrong_key: None,
                locked: false,
                pin_pad: false,
                logins: vec![],
            }
        }
    }

    impl TokenSide for FakeToken {
        fn select(&mut self) -> Result<PairSummary, TokenError> {
            Ok(PairSummary {
                module: "fake".into(),
                token_label: "fake".into(),
                token_serial: "0001".into(),
                pin_pad: self.pin_pad,
                pin_count_low: false,
                pin_final_try: false,
                pin_locked: self.locked,
                uri: "pkcs11:token=fake".into(),
                subject: "CN=Fake".into(),
                kind: KeyKind::Ec(crate::token::Curve::P256),
                cert: self.cert.clone(),
                cert_der: der::Encode::to_der(&self.cert).unwrap(),
            })
        }
        fn sign_cms(
            &mut self,
            login: PinInput,
            content: &[u8],
            digest: DigestAlg,
        ) -> Result<Vec<u8>, TokenError> {
            self.logins.push(matches!(login, PinInput::ProtectedPath));
            let key = self.wrong_key.as_ref().unwrap_or(&self.key);
            Ok(crate::cms::build_attached::<_, p256::ecdsa::DerSignature>(
                key, &self.cert, content, digest,
            )
            .unwrap())
        }
    }

    struct CountingPrompt(usize);
    impl PinPrompt for CountingPrompt {
        fn pin(&mut self, _: &PairSummary) -> Result<Pin, TokenError> {
            self.0 += 1;
            Ok(Pin::new("1234".into()))
        }
    }

    struct FakeRegistrar {
        code: i64,
        bodies: RefCell<Vec<RegisterBody>>,
    }
    impl Registrar for FakeRegistrar {
        async fn register(&self, _: &str, body: &RegisterBody) -> Result<Answer, ApiError> {
            self.bodies.borrow_mut().push(body.clone());
            Ok(Answer {
                code: self.code,
                message: "m".into(),
                object: serde_json::Value::Null,
            })
        }
    }

    fn secrets() -> AdminSecrets {
        AdminSecrets {
            auth_token: AuthToken::new("AT-123".into()),
            secret_code: SecretCode::new("S3cr3t".into()),
        }
    }

    #[test]
    fn a_locked_pin_is_never_asked_for_or_tried() {
        let mut t = FakeToken::new();
        t.locked = true;
        let pair = t.select().unwrap();
        let mut p = CountingPrompt(0);
        let e = sign_challenge(&mut t, &mut p, b"c", DigestAlg::Sha256, &pair, &mut |_| {})
            .unwrap_err();
        assert!(matches!(e, EnrollError::Token(TokenError::PinLocked)));
        assert_eq!(e.exit_code(), 3);
        assert_eq!(p.0, 0);
        assert!(t.logins.is_empty());
    }

    #[test]
    fn a_pin_pad_token_is_not_asked_for_a_pin() {
        let mut t = FakeToken::new();
        t.pin_pad = true;
        let pair = t.select().unwrap();
        let mut p = CountingPrompt(0);
        let mut steps = vec![];
        sign_challenge(&mut t, &mut p, b"c", DigestAlg::Sha256, &pair, &mut |s| {
            steps.push(s)
        })
        .unwrap();
        assert_eq!(p.0, 0);
        assert_eq!(t.logins, vec![true]);
        assert!(matches!(steps[0], Step::PinPad));
    }

    #[test]
    fn a_faulty_token_never_reaches_the_server() {
        let mut t = FakeToken::new();
        t.wrong_key = Some(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng));
        let pair = t.select().unwrap();
        let e = sign_challenge(
            &mut t,
            &mut CountingPrompt(0),
            b"c",
            DigestAlg::Sha256,
            &pair,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(e, EnrollError::Token(TokenError::SelfVerify(_))),
            "{e}"
        );
        assert_eq!(e.exit_code(), 3);
    }

    #[test]
    fn a_signer_that_hashes_with_another_digest_is_caught() {
        // p256's software key always hashes with SHA-256, whatever the SignerInfo declares.
        let mut t = FakeToken::new();
        let pair = t.select().unwrap();
        let e = sign_challenge(
            &mut t,
            &mut CountingPrompt(0),
            b"c",
            DigestAlg::Sha384,
            &pair,
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            matches!(e, EnrollError::Token(TokenError::SelfVerify(_))),
            "{e}"
        );
    }

    #[test]
    fn registration_body_and_outcomes() {
        let mut t = FakeToken::new();
        let pair = t.select().unwrap();
        let der = sign_challenge(
            &mut t,
            &mut CountingPrompt(0),
            b"c",
            DigestAlg::Sha256,
            &pair,
            &mut |_| {},
        )
        .unwrap();
        let s = secrets();
        let reg = Registration {
            admin: "helpdesk",
            user: "alice",
            status: TokenStatus::Valid,
            timestamp_unit: TimestampUnit::Millis,
            secrets: &s,
            url_for_display: "u".into(),
            journal: None,
            retries: 0,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ok = FakeRegistrar {
            code: 0,
            bodies: RefCell::new(vec![]),
        };
        let r = rt
            .block_on(register(
                &ok,
                &reg,
                &pair,
                &der,
                DigestAlg::Sha256,
                &mut |_| {},
            ))
            .unwrap();
        assert_eq!((r.outcome, r.exit_code), (OutcomeKind::Registered, 0));
        let b = ok.bodies.borrow()[0].clone();
        assert_eq!(
            (b.algorithm.as_str(), b.status.as_str(), b.username.as_str()),
            ("1", "2", "alice")
        );
        assert_eq!(
            b.cen_token,
            "6f1433106d2466c15b4d324c3009375249e72162f223b63bd3e5d157e9813499"
        );
        assert_eq!(b.timestamp, r.timestamp.unwrap().to_string());
        assert!(
            !format!("{b:?}").contains("6f1433"),
            "Debug redacts the cenToken"
        );
        let bound = FakeRegistrar {
            code: CODE_USER_BOUND,
            bodies: RefCell::new(vec![]),
        };
        let r = rt
            .block_on(register(
                &bound,
                &reg,
                &pair,
                &der,
                DigestAlg::Sha256,
                &mut |_| {},
            ))
            .unwrap();
        assert_eq!(
            (r.outcome, r.exit_code, r.code),
            (OutcomeKind::Rejected, 4, Some(CODE_USER_BOUND))
        );
    }
}
