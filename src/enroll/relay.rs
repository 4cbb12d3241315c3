//! One enrollment through the relay, in its order: select → username policy → PIN and a kept
//! token login → the relay's challenge → the signed statement → self-verify → journal intent →
//! send. The PIN comes before the challenge, so a slow PIN entry cannot expire it; a 409 for an
//! expired challenge gets one fresh challenge, signed in the same login. Transport failures are
//! retried with the same PKCS#7: the relay answers a request it has seen from its record, so a
//! retry never registers twice. No admin secret is read or sent.
//!
//! Owns: that order and the report of it. Does not own: the relay's HTTP (see `api::relay`) or
//! what the relay checks (see `relay`).

use super::{
    self_verify, EnrollError, Enrolled, Failure, OutcomeKind, PairSummary, PinInput, PinPrompt,
    Report, SelectedPair, Step, TokenSide, UserPolicy,
};
use crate::api::relay::{RelayAnswer, RelayChallenge, RelayClient};
use crate::api::ApiError;
use crate::digest::DigestAlg;
use crate::relay::statement::Statement;
use crate::token::TokenError;

/// The relay, as the flow needs it.
#[allow(async_fn_in_trait)]
pub trait RelaySide {
    /// The enrollment URL, for messages and the journal.
    fn enroll_url(&self) -> String;
    async fn challenge(&self, user: &str) -> Result<RelayChallenge, ApiError>;
    async fn enroll(&self, user: &str, pkcs7: &[u8]) -> Result<RelayAnswer, ApiError>;
}

impl RelaySide for RelayClient {
    fn enroll_url(&self) -> String {
        RelayClient::enroll_url(self)
    }

    async fn challenge(&self, user: &str) -> Result<RelayChallenge, ApiError> {
        RelayClient::challenge(self, user).await
    }

    async fn enroll(&self, user: &str, pkcs7: &[u8]) -> Result<RelayAnswer, ApiError> {
        RelayClient::enroll(self, user, pkcs7).await
    }
}

/// What an enrollment through the relay needs besides the token.
pub struct RelayPlan<'a> {
    pub user: UserPolicy<'a>,
    /// SHA-256 or stronger (the relay refuses SHA-1).
    pub digest: DigestAlg,
    pub journal: Option<&'a crate::journal::Journal>,
    /// Transport failures before any answer are retried this many times.
    pub retries: u32,
}

/// How many challenges one run signs at most (the first, and one after it expired).
const ROUNDS: u32 = 2;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether two URLs share scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (url::Url::parse(a), url::Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// The report of a run through the relay that ended before an answer.
pub fn relay_failure_report(f: &Failure, digest: DigestAlg) -> Report {
    let mut r = f.report(None, digest);
    r.via = Some("relay");
    if let EnrollError::Api(ApiError::RelayRefused { rule, .. }) = &f.error {
        r.rule = Some(rule.clone());
    }
    r
}

/// Signs with the kept login; a key that wants its PIN for every signature, or a card that
/// logged itself out after the last one, gets the login input again (the same accepted PIN,
/// or the PIN pad).
fn sign_kept(
    selected: &mut impl SelectedPair,
    login: &PinInput,
    content: &[u8],
    digest: DigestAlg,
) -> Result<Vec<u8>, TokenError> {
    match selected.sign_cms(PinInput::Kept, content, digest) {
        Err(TokenError::PinEverySignature | TokenError::LoggedOut) => {
            let again = match login {
                PinInput::Pin(p) => PinInput::Pin(p.clone()),
                PinInput::ProtectedPath => PinInput::ProtectedPath,
                PinInput::Kept => PinInput::Kept,
            };
            selected.sign_cms(again, content, digest)
        }
        other => other,
    }
}

/// Runs one enrollment through `relay`. Token and PIN calls block the calling thread (see
/// [`super::run`]).
pub async fn run_relay<T: TokenSide, C: RelaySide>(
    token: &mut T,
    prompt: &mut impl PinPrompt,
    relay: &C,
    plan: &RelayPlan<'_>,
    on: &mut (dyn FnMut(Step) + Send),
) -> Result<Enrolled, Box<Failure>> {
    let fail = Failure::boxed;
    let (mut selected, pair, user) = super::select_and_resolve(token, Some(&plan.user), on)?;
    let user = user.expect("a username policy was given");
    let failed = |e: EnrollError| fail(e, Some(&pair), Some(&user));
    // The PIN and the login before the challenge.
    let login = super::login_input(&pair, prompt, on).map_err(failed)?;
    selected.log_in(&login).map_err(|e| failed(e.into()))?;
    let mut round = 0;
    loop {
        round += 1;
        let challenge = relay.challenge(&user).await.map_err(|e| failed(e.into()))?;
        if !same_origin(&challenge.relay, &relay.enroll_url()) {
            return Err(failed(
                ApiError::Config(format!(
                    "the relay asked for a statement naming '{}', which is not the relay this \
                     desk uses ({}): nothing was signed; its operator must list the URL desks \
                     use in public_url",
                    crate::text::cap(&challenge.relay, 200),
                    relay.enroll_url().trim_end_matches("/v1/enroll")
                ))
                .into(),
            ));
        }
        on(Step::ChallengeReady {
            source: "relay",
            len: challenge.challenge.len(),
        });
        let iat = now_ms();
        let statement = Statement::new(&challenge.relay, &user, &challenge.challenge, iat);
        let content = statement.to_bytes();
        let pkcs7 = sign_kept(&mut selected, &login, &content, plan.digest)
            .map_err(|e| failed(e.into()))?;
        on(Step::Signed {
            algorithm: plan.digest,
            kind: pair.kind.describe(),
            bytes: pkcs7.len(),
        });
        self_verify(&pkcs7, &content, plan.digest, &pair.cert).map_err(|e| failed(e.into()))?;
        on(Step::SelfVerified);
        match send(relay, plan, &user, &pair, &pkcs7, iat, on).await {
            Err(EnrollError::Api(ApiError::RelayRefused {
                status: 409, rule, ..
            })) if rule == "challenge_expired" && round < ROUNDS => {
                tracing::info!("the relay's challenge expired: fetching a fresh one");
                continue;
            }
            Err(e) => return Err(failed(e)),
            Ok(report) => {
                return Ok(Enrolled {
                    pair,
                    challenge: challenge.challenge,
                    pkcs7,
                    report: Some(report),
                })
            }
        }
    }
}

/// Journals and sends one PKCS#7, retrying transport failures before any answer.
async fn send<C: RelaySide>(
    relay: &C,
    plan: &RelayPlan<'_>,
    user: &str,
    pair: &PairSummary,
    pkcs7: &[u8],
    iat: i64,
    on: &mut (dyn FnMut(Step) + Send),
) -> Result<Report, EnrollError> {
    let signer = super::Signer::from(pair);
    let id = crate::journal::new_id();
    let url = relay.enroll_url();
    if let Some(j) = plan.journal {
        j.intent(&crate::journal::Intent {
            via: Some("relay".into()),
            request_sha256: Some(crate::certinfo::fingerprint(pkcs7)),
            ..signer.intent(&id, &url, "", user, plan.digest, "")
        })?;
    }
    let mut attempts = 0u32;
    // An attempt that may have reached the relay leaves the outcome open whatever the resend
    // meets short of a final answer (the first may still be in progress there).
    let mut maybe_sent_before = false;
    let result = loop {
        attempts += 1;
        on(Step::Sending { url: url.clone() });
        match relay.enroll(user, pkcs7).await {
            Err(e) if e.before_any_answer() && attempts <= plan.retries => {
                maybe_sent_before |= e.may_have_gone_through();
                let after = super::backoff(attempts);
                on(Step::Retrying {
                    after,
                    reason: e.to_string(),
                });
                tokio::time::sleep(after).await;
            }
            other => break other,
        }
    };
    let record = |outcome: &str, code: Option<i64>, message: &str| {
        crate::journal::record_outcome(plan.journal, &id, outcome, code, message, attempts)
    };
    let report = |outcome, code, message: String, rule: Option<String>| Report {
        outcome,
        code,
        message,
        user: Some(user.to_string()),
        admin: None,
        algorithm: plan.digest.name().to_string(),
        token: signer.token.clone(),
        certificate: Some(signer.certificate.clone()),
        timestamp: Some(iat),
        step: None,
        already_bound: None,
        bound_to_other: None,
        unsettled: false,
        via: Some("relay"),
        rule,
    };
    match result {
        Ok(a) => {
            let message = a.message.clone().unwrap_or_default();
            if let Some(code) = a.code {
                on(Step::Answered {
                    code,
                    message: message.clone(),
                });
            }
            let kind = match a.outcome.as_str() {
                "registered" => OutcomeKind::Registered,
                "rejected" => OutcomeKind::Rejected,
                _ => {
                    record("failed", a.code, &message);
                    return Err(ApiError::RelayFailed(message).into());
                }
            };
            record(&a.outcome, a.code, &message);
            Ok(report(kind, a.code, message, None))
        }
        // A policy refusal: the relay said no, as CENTAGATE would.
        Err(ApiError::RelayRefused {
            status: 403,
            rule,
            message,
            ..
        }) => {
            let message = format!("the relay refused it ({rule}): {message}");
            record("rejected", None, &message);
            Ok(report(OutcomeKind::Rejected, None, message, Some(rule)))
        }
        Err(e) => {
            let in_progress =
                matches!(&e, ApiError::RelayRefused { rule, .. } if rule == "in_progress");
            let open = e.may_have_gone_through() || maybe_sent_before || in_progress;
            record(
                if open { "unknown" } else { "failed" },
                None,
                &e.to_string(),
            );
            Err(e.into())
        }
    }
}
