//! One token's lane: its username, the operator's confirmation, its PIN, then the one flow
//! (`enroll::run`) with the row's status, and what to do when the user is already bound
//! (22027: skip, ask, or `enroll::replace`). Runs on a blocking thread of its own and ends with
//! the token's report row — or, when the token left before the server answered, with nothing
//! reported, so that its row waits for it again.
//!
//! Owns: what a lane does, the `--pin-env` PIN's trial (one token tries it first; once a token
//! refuses it, no further token is given it), and the lane's phase times. Does not own: which
//! row a token takes (see `queue`), writing the report (the owner does, see the parent module),
//! or any enrollment step.

use super::events::{Confirm, Event, Face, TokenName};
pub use super::pin::EnvPin;
use super::pin::{lock, Clock, LanePin, Use};
use super::queue::Settled;
use super::report::Row;
use crate::agent::state::TokenKey;
use crate::agent::watcher::{PairRef, SharedModule};
use crate::api::{ApiError, TokenStatus};
use crate::enroll::{
    self, EnrollError, OutcomeKind, Pkcs11Side, Plan, Registration, Request, Session, Step,
    UserFrom, UserPolicy,
};
use crate::token::uri::Pkcs11Uri;
use crate::token::{Selector, TokenError};
use crate::ui::dialogs::Cancel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `--on-bound`: what to do when the user is bound to another certificate (22027).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnBound {
    Skip,
    Ask,
    Replace,
}

impl std::str::FromStr for OnBound {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "skip" => Ok(Self::Skip),
            "ask" => Ok(Self::Ask),
            "replace" => Ok(Self::Replace),
            _ => Err(format!(
                "unknown --on-bound '{s}': use skip, ask or replace"
            )),
        }
    }
}

/// What every lane shares, set at start.
pub struct Ctx {
    pub module: SharedModule,
    pub session: Arc<Session>,
    pub reg: crate::config::RegisterOptions,
    pub origin: String,
    pub digest: crate::digest::DigestAlg,
    pub challenge: crate::challenge::ChallengeSource,
    pub http: crate::api::HttpOptions,
    pub key: Option<Pkcs11Uri>,
    pub journal: crate::journal::Journal,
    pub face: Arc<dyn Face>,
    pub env_pin: EnvPin,
    pub on_bound: OnBound,
    /// The journal tag of this run (see `run_id`).
    pub run: String,
    /// Ask the operator to confirm each enrollment.
    pub interactive: bool,
    /// Cancelled when the run ends: closes a login's question (the station locked), so that
    /// lanes waiting on it end.
    pub quit: Arc<Cancel>,
}

/// One token's job.
pub struct Job {
    pub key: TokenKey,
    pub pairs: Vec<PairRef>,
    pub pin_pad: bool,
    /// Where the watcher saw it.
    pub slots: Vec<crate::token::Slot>,
    pub row: Option<usize>,
    /// The batch row's username.
    pub username: Option<String>,
    pub status: TokenStatus,
    pub arrived: Instant,
    /// Withdrawn when the token leaves, or the operator skips it.
    pub cancel: Arc<Cancel>,
}

impl Job {
    pub fn name(&self) -> TokenName {
        self.key.clone()
    }
}

/// How a lane ended.
pub enum End {
    /// The token's report row.
    Done {
        row: Box<Row>,
        settled: Settled,
        phases: Vec<(&'static str, Duration)>,
    },
    /// The token left (or was withdrawn) before the server answered: nothing to report.
    Removed,
}

/// Runs one token's lane to its end.
pub fn run(ctx: &Ctx, job: &Job, rt: &tokio::runtime::Handle) -> End {
    let clock = Mutex::new(Clock::default());
    let name = job.name();
    // The pair that will sign: the one --key names among the token's, else its only one.
    let pair = match &ctx.key {
        Some(key) => job
            .pairs
            .iter()
            .find(|p| Pkcs11Uri::parse(&p.uri).is_ok_and(|u| key.narrows(&u))),
        None => job.pairs.first(),
    };
    let subject = pair.map(|p| p.subject.clone()).unwrap_or_default();
    // Who the token is for: the batch row's user, else typed or scanned, else the certificate's.
    let typed;
    let from = match (&job.username, &ctx.reg.user) {
        (Some(u), _) => UserFrom::Fixed(u.clone()),
        (None, UserFrom::Ask) => match ctx.face.user(&name, &subject, &job.cancel) {
            Ok(Some(u)) => {
                typed = u;
                UserFrom::Fixed(typed.clone())
            }
            Ok(None) if job.cancel.is_cancelled() => return End::Removed,
            Ok(None) => {
                return skipped(job, "", "no username was given for the token", &clock);
            }
            Err(e) => return skipped(job, "", &format!("the username dialog failed: {e}"), &clock),
        },
        (None, other) => other.clone(),
    };
    let shown_user = from.describe();
    if ctx.interactive {
        let c = Confirm {
            token: name.clone(),
            username: shown_user.clone(),
            subject: subject.clone(),
            cert_serial: pair.map(|p| p.cert_serial.clone()).unwrap_or_default(),
        };
        match ctx.face.confirm(&c, &job.cancel) {
            Ok(true) => {}
            _ if job.cancel.is_cancelled() => return End::Removed,
            Ok(false) => return skipped(job, &shown_user, "the operator did not confirm", &clock),
            Err(e) => return skipped(job, &shown_user, &e, &clock),
        }
    }
    let Some(module) = lock(&ctx.module).clone() else {
        return finished(
            job,
            failure(job, &shown_user, "the PKCS#11 module is not loaded".into()),
            Settled::FailedToken,
            &clock,
        );
    };
    let uri = match pair.map(|p| Pkcs11Uri::parse(&p.uri)) {
        Some(Ok(u)) => u,
        _ => Pkcs11Uri {
            serial: Some(job.key.serial.clone()),
            ..ctx.key.clone().unwrap_or_default()
        },
    };
    let registration = Registration {
        status: job.status,
        run: Some(ctx.run.clone()),
        ..Registration::new(&ctx.reg, &ctx.origin, Some(&ctx.journal))
    };
    let request = Request {
        digest: ctx.digest,
        challenge: &ctx.challenge,
        http: &ctx.http,
    };
    let mut refused: Vec<[u8; 32]> = Vec::new();
    let mut salt = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    let mut error = None;
    loop {
        let mut side = Pkcs11Side::with_module(
            module.clone(),
            Selector {
                uri: Some(uri.clone()),
                // The card in its reader, never a copy in another.
                reader: Some(job.key.reader.clone()),
                slots: Some(job.slots.clone()),
                ..Default::default()
            },
        );
        let mut prompt = LanePin {
            ctx,
            job,
            user: &shown_user,
            error: error.take(),
            refused: &refused,
            salt: &salt,
            used: Use::None,
            tried: None,
            verdict: None,
            clock: &clock,
        };
        let mut signed = false;
        let mut on = |step: Step| match step {
            Step::PinPad => {
                ctx.face.event(&Event::WaitingPin {
                    time: super::events::now(),
                    token: job.name(),
                    username: shown_user.clone(),
                });
                lock(&clock).enter("waiting_pin");
            }
            Step::Signed { .. } => {
                signed = true;
                lock(&clock).enter("registering");
                ctx.face.event(&Event::Registering {
                    time: super::events::now(),
                    token: job.name(),
                    username: shown_user.clone(),
                });
            }
            Step::Retrying { after, reason } => {
                tracing::warn!(token = %job.key, %reason, retry_in = ?after, "no answer; retrying with the same signature");
            }
            _ => {}
        };
        let user = UserPolicy {
            from: &from,
            asked: None,
            must_match: ctx.reg.user_must_match,
        };
        let plan = Plan::Register {
            registrar: ctx.session.as_ref(),
            registration: &registration,
            user,
        };
        let result = rt.block_on(enroll::run(&mut side, &mut prompt, &request, plan, &mut on));
        let (used, tried) = (prompt.used, prompt.tried);
        let pin_refused = matches!(
            &result,
            Err(f) if matches!(f.error, EnrollError::Token(TokenError::PinIncorrect { .. } | TokenError::PinInvalid))
        );
        prompt.verdict = if signed {
            Some(true)
        } else if pin_refused {
            Some(false)
        } else {
            None
        };
        drop(prompt);
        if used == Use::Known && pin_refused {
            ctx.env_pin.refused();
        }
        match result {
            Ok(mut done) => {
                let mut report = done.report.take().expect("a registration plan reports");
                if let Some(other) = report.bound_to_other.clone() {
                    report = bound(ctx, job, &registration, report, &other, &done, rt, &clock);
                }
                let settled = match report.outcome {
                    OutcomeKind::Registered => Settled::Registered,
                    OutcomeKind::Rejected
                        if report.code == Some(crate::api::CODE_USER_BOUND)
                            && ctx.on_bound != OnBound::Replace
                            && report.step.is_none() =>
                    {
                        Settled::Skipped
                    }
                    OutcomeKind::Rejected => Settled::Rejected,
                    OutcomeKind::Failed => Settled::FailedNetwork,
                };
                let mut row = row_of(job, &report);
                if settled == Settled::Skipped {
                    row.outcome = "skipped".into();
                }
                return finished(job, row, settled, &clock);
            }
            Err(f) if pin_refused && !job.cancel.is_cancelled() => {
                // Asked again (never by itself with the same PIN): the holder types another.
                refused.extend(tried);
                error = Some(f.error.to_string());
                tracing::info!(token = %job.key, "the token refused the PIN");
                continue;
            }
            Err(f) => {
                let removed = job.cancel.is_cancelled()
                    || matches!(f.error, EnrollError::Token(TokenError::TokenRemoved));
                if removed && !matches!(f.error, EnrollError::Api(_)) {
                    return End::Removed;
                }
                let report = f.report(Some(&registration), ctx.digest);
                let settled = match &f.error {
                    EnrollError::Token(TokenError::PinToBeChanged | TokenError::PinCancelled) => {
                        Settled::Skipped
                    }
                    EnrollError::Token(_) | EnrollError::AdminToken(_) | EnrollError::Usage(_) => {
                        Settled::FailedToken
                    }
                    EnrollError::Api(ApiError::LoginRefused { .. }) => Settled::Rejected,
                    _ => Settled::FailedNetwork,
                };
                let mut row = row_of(job, &report);
                if row.username.is_empty() {
                    row.username = shown_user.clone();
                }
                row.outcome = settled.outcome().into();
                return finished(job, row, settled, &clock);
            }
        }
    }
}

/// 22027 for another certificate: skip, ask the operator, or replace it (journaled).
#[allow(clippy::too_many_arguments)]
fn bound(
    ctx: &Ctx,
    job: &Job,
    registration: &Registration<'_>,
    report: enroll::Report,
    other: &crate::api::login::BoundCert,
    done: &enroll::Enrolled,
    rt: &tokio::runtime::Handle,
    clock: &Mutex<Clock>,
) -> enroll::Report {
    let user = report.user.clone().unwrap_or_default();
    let replace = match ctx.on_bound {
        OnBound::Skip => false,
        OnBound::Replace => true,
        OnBound::Ask => {
            let shown = format!("{} (serial {})", other.subject, other.serial);
            ctx.face
                .replace_bound(&user, &shown, &job.cancel)
                .unwrap_or(false)
        }
    };
    if !replace {
        return enroll::Report {
            message: format!("{} — skipped (--on-bound)", report.message),
            ..report
        };
    }
    lock(clock).enter("registering");
    let mut on = |_: Step| {};
    match rt.block_on(enroll::replace(
        ctx.session.as_ref(),
        registration,
        &user,
        other,
        &done.pair,
        &done.pkcs7,
        ctx.digest,
        &mut on,
    )) {
        Ok(r) => r,
        Err(e) => enroll::failure_report(
            &e,
            Some(&done.pair),
            Some(&user),
            Some(registration),
            ctx.digest,
        ),
    }
}

/// The report row of an enrollment report.
fn row_of(job: &Job, r: &enroll::Report) -> Row {
    let cert = r.certificate.as_ref();
    Row {
        time: super::events::now(),
        reader: job.key.reader.clone(),
        token_label: job.key.label.clone(),
        token_serial: job.key.serial.clone(),
        username: r.user.clone().unwrap_or_default(),
        cert_subject: cert.map(|c| c.subject.clone()).unwrap_or_default(),
        cert_serial: cert.map(|c| c.serial.clone()).unwrap_or_default(),
        cert_sha256: cert.map(|c| c.sha256.clone()).unwrap_or_default(),
        status: job.status.name().into(),
        outcome: match r.outcome {
            OutcomeKind::Registered => "registered",
            OutcomeKind::Rejected => "rejected",
            OutcomeKind::Failed => "failed",
        }
        .into(),
        code: r.code,
        message: r.message.clone(),
        seconds: 0.0,
    }
}

/// A row for a token that ended before the flow could say more.
fn failure(job: &Job, user: &str, message: String) -> Row {
    let pair = job.pairs.first();
    Row {
        time: super::events::now(),
        reader: job.key.reader.clone(),
        token_label: job.key.label.clone(),
        token_serial: job.key.serial.clone(),
        username: user.to_string(),
        cert_subject: pair.map(|p| p.subject.clone()).unwrap_or_default(),
        cert_serial: pair.map(|p| p.cert_serial.clone()).unwrap_or_default(),
        cert_sha256: pair.map(|p| p.sha256.clone()).unwrap_or_default(),
        status: job.status.name().into(),
        outcome: "failed".into(),
        code: None,
        message,
        seconds: 0.0,
    }
}

fn skipped(job: &Job, user: &str, why: &str, clock: &Mutex<Clock>) -> End {
    let mut row = failure(job, user, why.to_string());
    row.outcome = "skipped".into();
    finished(job, row, Settled::Skipped, clock)
}

fn finished(job: &Job, mut row: Row, settled: Settled, clock: &Mutex<Clock>) -> End {
    let mut c = lock(clock);
    c.leave();
    row.seconds = (job.arrived.elapsed().as_millis() as f64) / 1000.0;
    End::Done {
        row: Box::new(row),
        settled,
        phases: std::mem::take(&mut c.spent),
    }
}
