//! One enrollment, step by step: select a signing pair, apply the username policy, obtain the
//! challenge, ask for the PIN, sign, verify our own PKCS#7, register. [`run`] is the only place
//! that knows this order; the CLI, the agent and the demo call it with a [`Plan`].
//!
//! Owns: the order, the username policy (`user_from`, `user_must_match`), the self-verification
//! gate, the request body and the outcome report. Does not own: how tokens, PINs or servers are
//! reached — those sit behind the traits below, so the same flow runs from every face and from
//! tests with fakes — nor process exit codes (see `cli`).

mod admin_key;
mod pkcs11;
mod register;
mod relay;
mod replace;
mod session;
#[cfg(test)]
mod tests;
mod user;

pub use admin_key::{AdminKey, AskAdmin, NoOneToAsk};
pub use pkcs11::{Pkcs11Pair, Pkcs11Side};
pub use register::{
    backoff, failure_report, now_timestamp, register, register_body, Registration, Signer,
    CLOCK_SKEW_LIMIT_MS,
};
pub use relay::{relay_failure_report, run_relay, RelayPlan, RelaySide};
pub use replace::replace;
pub use session::Session;
pub use user::{MustMatch, UserFrom};

use crate::api::{Answer, ApiError, HttpOptions, RegisterBody};
use crate::challenge::ChallengeSource;
use crate::digest::DigestAlg;
use crate::secret::{AdminSecrets, Pin};
use crate::token::{KeyKind, TokenError};
use serde::Serialize;
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
    /// The token wants its PIN changed first (CKF_USER_PIN_TO_BE_CHANGED): nothing is tried.
    pub pin_to_be_changed: bool,
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

    pub fn token_ref(&self) -> TokenRef {
        TokenRef {
            label: self.token_label.clone(),
            serial: self.token_serial.clone(),
        }
    }
}

/// How the user authenticates to the token.
pub enum PinInput {
    Pin(Pin),
    /// The reader's PIN pad.
    ProtectedPath,
    /// No PIN: the token is logged in already by a session kept open (`token::KeptLogin`).
    /// Refused for a key that wants its PIN for every signature.
    Kept,
}

/// The token side: finds the pair (no PIN). Selecting returns the pair that then signs, so there
/// is no "nothing selected yet" state to get wrong.
pub trait TokenSide {
    type Pair: SelectedPair;
    fn select(&mut self) -> Result<Self::Pair, TokenError>;
}

/// A selected signing pair: logs in and produces an attached PKCS#7.
pub trait SelectedPair {
    fn summary(&self) -> &PairSummary;
    /// Logs in now and keeps the token's login for later `sign_cms(PinInput::Kept, ..)` calls
    /// of this pair, until it is dropped (the relay flow logs in before it fetches its
    /// challenge, so a slow PIN entry cannot expire it).
    fn log_in(&mut self, login: &PinInput) -> Result<(), TokenError>;
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

/// Sends a registration to CENTAGATE, under the admin's session.
#[allow(async_fn_in_trait)]
pub trait Registrar {
    /// The session's authToken and secretCode, logging in first when the session needs one
    /// (called after the PKCS#7 is verified, just before the registration).
    async fn secrets(&self, on: &mut (dyn FnMut(Step) + Send))
        -> Result<AdminSecrets, EnrollError>;

    /// The server refused the session `refused` (10001): forget it (if it is still the one
    /// held). True when a fresh login can follow.
    async fn session_refused(&self, refused: &AdminSecrets) -> bool {
        let _ = refused;
        false
    }

    async fn register(&self, admin: &str, body: &RegisterBody) -> Result<Answer, ApiError>;

    /// Unbinds `user`'s PKI token.
    async fn unbind(
        &self,
        admin: &str,
        user: &str,
        secrets: &AdminSecrets,
    ) -> Result<Answer, ApiError> {
        let _ = (admin, user, secrets);
        Err(ApiError::Config("this registrar cannot unbind".into()))
    }

    /// The certificates bound to `user`, when the server can say.
    async fn bound(
        &self,
        admin: &str,
        user: &str,
        secrets: &AdminSecrets,
    ) -> Result<Vec<crate::api::login::BoundCert>, ApiError> {
        let _ = (admin, user, secrets);
        Err(ApiError::Config(
            "this registrar cannot list bound certificates".into(),
        ))
    }

    /// The server's clock minus ours in milliseconds, if it can be learnt.
    async fn clock_offset_ms(&self) -> Option<i64> {
        None
    }
}

/// The registrar of a sign-only plan: a type with no values, so a sign-only run provably never
/// reaches a server.
pub enum NoServer {}

impl Registrar for NoServer {
    async fn secrets(&self, _: &mut (dyn FnMut(Step) + Send)) -> Result<AdminSecrets, EnrollError> {
        match *self {}
    }

    async fn register(&self, _: &str, _: &RegisterBody) -> Result<Answer, ApiError> {
        match *self {}
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
    /// SHA-1 was chosen: allowed for servers that require it, and said so.
    WeakDigest,
    /// The username the token will be registered to, after the policy allowed it.
    UserResolved {
        user: String,
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
    /// An admin login opened the session the registration goes under.
    LoggedIn {
        admin: String,
        timeout_ms: Option<u64>,
    },
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
    /// Set when the outcome is not a plain registration's: `login` for a refused admin login,
    /// so its codes cannot be mistaken for a registration's; `reconcile` when the outcome was
    /// settled by asking the server after the answer was lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<&'static str>,
    /// True when a 22027 turned out to be this token's own certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub already_bound: Option<bool>,
    /// With a 22027 for another certificate: that certificate (what `--replace` would unbind).
    #[serde(skip)]
    pub bound_to_other: Option<crate::api::login::BoundCert>,
    /// The answer stands, but whether this token is registered is not settled: a 22027 after a
    /// retried attempt that the server's list could not attribute (the journal keeps it unknown).
    #[serde(skip)]
    pub unsettled: bool,
    /// `relay` for an enrollment through the relay (`--relay`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    /// Through the relay: the rule token of its refusal, if it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// Errors that end an enrollment before the server has said yes or no.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// A value given by the person or the config does not fit (a username the policy refuses).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The admin's own token, for a token login (nothing of the registration was sent).
    #[error("the admin's own token, for the CENTAGATE login: {0}")]
    AdminToken(TokenError),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

/// What one run needs besides the token and the plan.
pub struct Request<'a> {
    pub digest: DigestAlg,
    pub challenge: &'a ChallengeSource,
    /// For a challenge fetched from a URL.
    pub http: &'a HttpOptions,
}

/// The username policy of a registration.
pub struct UserPolicy<'a> {
    pub from: &'a UserFrom,
    /// What the person typed, with `user_from = ask`.
    pub asked: Option<&'a str>,
    pub must_match: MustMatch,
}

/// What a run ends with.
pub enum Plan<'a, R: Registrar> {
    /// Sign and self-verify; nothing is sent (`tokenroll sign`).
    SignOnly,
    /// Then register the token with CENTAGATE.
    Register {
        registrar: &'a R,
        registration: &'a Registration<'a>,
        user: UserPolicy<'a>,
    },
}

impl Plan<'static, NoServer> {
    /// The sign-only plan, with the registrar type fixed.
    pub const SIGN_ONLY: Self = Plan::SignOnly;
}

/// A run that reached its end: signed, and for a registration plan, answered.
#[derive(Debug)]
pub struct Enrolled {
    pub pair: PairSummary,
    pub challenge: String,
    pub pkcs7: Vec<u8>,
    /// With a registration plan: the server's answer.
    pub report: Option<Report>,
}

/// A run that ended before an answer, with what was known by then (for the report).
#[derive(Debug)]
pub struct Failure {
    pub error: EnrollError,
    pub pair: Option<PairSummary>,
    pub user: Option<String>,
}

impl Failure {
    /// A failure with what was known when it happened.
    pub(crate) fn boxed(
        error: EnrollError,
        pair: Option<&PairSummary>,
        user: Option<&str>,
    ) -> Box<Self> {
        Box::new(Failure {
            error,
            pair: pair.cloned(),
            user: user.map(str::to_string),
        })
    }

    /// The `--json` record of this failure.
    pub fn report(&self, registration: Option<&Registration<'_>>, digest: DigestAlg) -> Report {
        failure_report(
            &self.error,
            self.pair.as_ref(),
            self.user.as_deref(),
            registration,
            digest,
        )
    }
}

/// Runs one enrollment in the one order: select → username policy → challenge → PIN → sign →
/// self-verify → (register). Nothing is sent to CENTAGATE before the PKCS#7 verified, and the
/// username is checked before the challenge is fetched or the PIN asked.
///
/// Token and PIN calls block the calling thread: call it from a blocking context (`block_on` in
/// the CLI, a blocking worker in the agent).
pub async fn run<T: TokenSide, R: Registrar>(
    token: &mut T,
    prompt: &mut impl PinPrompt,
    request: &Request<'_>,
    plan: Plan<'_, R>,
    on: &mut (dyn FnMut(Step) + Send),
) -> Result<Enrolled, Box<Failure>> {
    let fail = Failure::boxed;
    let policy = match &plan {
        Plan::SignOnly => None,
        Plan::Register { user, .. } => Some(user),
    };
    let (mut selected, pair, user) = select_and_resolve(token, policy, on)?;
    if request.digest.is_weak() {
        tracing::warn!("SHA-1 is weak; use it only for servers that require it");
        on(Step::WeakDigest);
    }
    let challenge = crate::challenge::obtain(request.challenge, request.http)
        .await
        .map_err(|e| fail(e.into(), Some(&pair), user.as_deref()))?;
    on(Step::ChallengeReady {
        source: request.challenge.describe(),
        len: challenge.len(),
    });
    let pkcs7 = sign(
        &mut selected,
        prompt,
        challenge.as_bytes(),
        request.digest,
        on,
    )
    .map_err(|e| fail(e, Some(&pair), user.as_deref()))?;
    drop(selected);
    let report = match (plan, user) {
        (
            Plan::Register {
                registrar,
                registration,
                ..
            },
            Some(user),
        ) => Some(
            register(
                registrar,
                registration,
                &user,
                &Signer::from(&pair),
                &pkcs7,
                request.digest,
                on,
            )
            .await
            .map_err(|e| fail(e, Some(&pair), Some(&user)))?,
        ),
        _ => None,
    };
    Ok(Enrolled {
        pair,
        challenge,
        pkcs7,
        report,
    })
}

/// Asks for the PIN (unless the reader has a PIN pad or the PIN is locked), signs and
/// self-verifies. Returns the PKCS#7 DER.
fn sign(
    selected: &mut impl SelectedPair,
    prompt: &mut impl PinPrompt,
    challenge: &[u8],
    digest: DigestAlg,
    on: &mut (dyn FnMut(Step) + Send),
) -> Result<Vec<u8>, EnrollError> {
    let pair = selected.summary().clone();
    let login = login_input(&pair, prompt, on)?;
    let der = selected.sign_cms(login, challenge, digest)?;
    on(Step::Signed {
        algorithm: digest,
        kind: pair.kind.describe(),
        bytes: der.len(),
    });
    self_verify(&der, challenge, digest, &pair.cert)?;
    on(Step::SelfVerified);
    Ok(der)
}

/// How the person logs in to `pair`'s token: never for a locked PIN; a warning when few tries
/// are left; the reader's PIN pad, else the PIN asked once.
fn login_input(
    pair: &PairSummary,
    prompt: &mut impl PinPrompt,
    on: &mut (dyn FnMut(Step) + Send),
) -> Result<PinInput, EnrollError> {
    if pair.pin_locked {
        return Err(TokenError::PinLocked.into());
    }
    if pair.pin_to_be_changed {
        return Err(TokenError::PinToBeChanged.into());
    }
    if pair.pin_count_low || pair.pin_final_try {
        on(Step::PinWarning {
            final_try: pair.pin_final_try,
        });
    }
    Ok(if pair.pin_pad {
        on(Step::PinPad);
        PinInput::ProtectedPath
    } else {
        PinInput::Pin(prompt.pin(pair)?)
    })
}

/// The run's first steps, shared by both orders: select the pair, then the username policy.
fn select_and_resolve<T: TokenSide>(
    token: &mut T,
    user: Option<&UserPolicy<'_>>,
    on: &mut (dyn FnMut(Step) + Send),
) -> Result<(T::Pair, PairSummary, Option<String>), Box<Failure>> {
    let fail = |error: EnrollError, pair: Option<&PairSummary>| Failure::boxed(error, pair, None);
    let selected = token.select().map_err(|e| fail(e.into(), None))?;
    let pair = selected.summary().clone();
    on(pair.found_step());
    let user = match user {
        None => None,
        Some(policy) => {
            let user = policy
                .from
                .resolve(&pair.cert, policy.asked)
                .and_then(|u| policy.must_match.check(&u, &pair.cert).map(|()| u))
                .map_err(|e| fail(e, Some(&pair)))?;
            on(Step::UserResolved { user: user.clone() });
            Some(user)
        }
    };
    Ok((selected, pair, user))
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
