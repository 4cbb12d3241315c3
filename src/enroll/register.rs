//! Sending one registration: the request body, the journal record around it, retries of
//! transport failures before any answer, the clock-skew correction, and the outcome report.
//!
//! Owns: the body builder (the one place a registration body is made) and the report. Does not
//! own: HTTP (see `api`) or the order of the enrollment (see the parent module).

use super::{
    CertificateInfo, EnrollError, OutcomeKind, PairSummary, Registrar, Report, Step, TokenRef,
};
use crate::api::{cen_token, RegisterBody, TimestampUnit, TokenStatus};
use crate::config::RegisterOptions;
use crate::digest::DigestAlg;
use crate::secret::AdminSecrets;
use base64::Engine;
use std::time::{SystemTime, UNIX_EPOCH};

/// What one registration needs besides the token and the user.
pub struct Registration<'a> {
    pub admin: &'a str,
    pub status: TokenStatus,
    pub timestamp_unit: TimestampUnit,
    pub url_for_display: String,
    /// Where every attempt is recorded before it is sent; `None` records nothing (tests, demo).
    pub journal: Option<&'a crate::journal::Journal>,
    /// How many times a transport failure before any answer is retried.
    pub retries: u32,
    /// The station run its journal entries are tagged with.
    pub run: Option<String>,
}

impl<'a> Registration<'a> {
    /// The registration the resolved options describe, sent to `origin`.
    pub fn new(
        opts: &'a RegisterOptions,
        origin: &str,
        journal: Option<&'a crate::journal::Journal>,
    ) -> Self {
        Self {
            admin: &opts.admin,
            status: opts.status,
            timestamp_unit: opts.timestamp_unit,
            url_for_display: crate::api::client::register_url(origin, &opts.admin),
            journal,
            retries: opts.retries,
            run: None,
        }
    }
}

/// What a registration binds, as the journal and the report name it: the signer's certificate,
/// and the token it is on when the registering side knows it (a relay does not).
#[derive(Clone, Debug)]
pub struct Signer {
    pub token: Option<TokenRef>,
    pub certificate: CertificateInfo,
    /// The certificate's SHA-1, hex: how CENTAGATE's list names bound certificates.
    pub sha1: String,
}

impl Signer {
    /// The certificate `der` (decoded as `cert`), on no known token.
    pub fn of_certificate(cert: &x509_cert::Certificate, der: &[u8]) -> Self {
        use sha1::Digest;
        let tbs = &cert.tbs_certificate;
        Self {
            token: None,
            certificate: CertificateInfo {
                subject: tbs.subject.to_string(),
                issuer: tbs.issuer.to_string(),
                serial: hex::encode(tbs.serial_number.as_bytes()),
                sha256: crate::certinfo::fingerprint(der),
            },
            sha1: hex::encode(sha1::Sha1::digest(der)),
        }
    }
}

impl Signer {
    /// The journal's intent to register this certificate for `user` through `server`.
    pub fn intent(
        &self,
        id: &str,
        server: &str,
        admin: &str,
        user: &str,
        digest: DigestAlg,
        status: &str,
    ) -> crate::journal::Intent {
        let cert = &self.certificate;
        crate::journal::Intent {
            id: id.to_string(),
            action: "register".into(),
            time: crate::journal::now(),
            server: server.to_string(),
            admin: admin.to_string(),
            user: user.to_string(),
            token_label: self.token.as_ref().map_or("", |t| &t.label).to_string(),
            token_serial: self.token.as_ref().map_or("", |t| &t.serial).to_string(),
            certificate_sha256: cert.sha256.clone(),
            certificate_subject: cert.subject.clone(),
            certificate_sha1: self.sha1.clone(),
            certificate_serial: cert.serial.clone(),
            certificate_issuer: cert.issuer.clone(),
            algorithm: digest.name().to_string(),
            status: status.to_string(),
            via: None,
            request_sha256: None,
            run: None,
        }
    }
}

impl From<&PairSummary> for Signer {
    fn from(pair: &PairSummary) -> Self {
        Self {
            token: Some(pair.token_ref()),
            ..Self::of_certificate(&pair.cert, &pair.cert_der)
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
    secrets: &AdminSecrets,
    user: &str,
    pkcs7: &[u8],
    digest: DigestAlg,
    timestamp: i64,
) -> RegisterBody {
    RegisterBody {
        username: user.to_string(),
        signature: base64::engine::general_purpose::STANDARD.encode(pkcs7),
        algorithm: digest.centagate_code().to_string(),
        timestamp: timestamp.to_string(),
        status: reg.status.code().to_string(),
        cen_token: cen_token(reg.admin, secrets),
    }
}

/// Sends the registration and turns the answer into a report. The attempt is journaled (intent
/// on disk before anything leaves, outcome after); transport failures before any answer are
/// retried with backoff, with a fresh timestamp and the same PKCS#7 (no second PIN); a local clock
/// more than a minute off the server's is corrected from the server's `Date`.
pub async fn register(
    registrar: &impl Registrar,
    reg: &Registration<'_>,
    user: &str,
    signer: &Signer,
    pkcs7: &[u8],
    digest: DigestAlg,
    on: &mut (dyn FnMut(Step) + Send),
) -> Result<Report, EnrollError> {
    // The session first (a login, when one is needed): nothing is journaled or sent for a
    // registration the admin cannot make.
    let mut secrets = registrar.secrets(on).await?;
    let mut logged_in_again = false;
    // Static secrets: a 10001 cannot be answered with a fresh login.
    let mut cannot_log_in = false;
    let cert = &signer.certificate;
    let sha1 = &signer.sha1;
    let id = crate::journal::new_id();
    if let Some(j) = reg.journal {
        j.intent(&crate::journal::Intent {
            run: reg.run.clone(),
            ..signer.intent(
                &id,
                &reg.url_for_display,
                reg.admin,
                user,
                digest,
                &reg.status.code().to_string(),
            )
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
    // An earlier attempt that may have reached the server keeps the outcome unknown, whatever
    // the later attempts meet (a retry that cannot even connect proves nothing).
    let mut maybe_sent_before = false;
    let result = loop {
        attempts += 1;
        let timestamp = corrected_timestamp(reg.timestamp_unit, offset_ms);
        let body = register_body(reg, &secrets, user, pkcs7, digest, timestamp);
        on(Step::Sending {
            url: reg.url_for_display.clone(),
        });
        match registrar.register(reg.admin, &body).await {
            // The session ended on the server (its idle timeout, a restart): with login
            // credentials, log in once more and resend — same PKCS#7, fresh timestamp and
            // cenToken, one more attempt on the same journal intent.
            Ok(answer) if answer.code == crate::api::CODE_PERMISSION && !logged_in_again => {
                if !registrar.session_refused(&secrets).await {
                    cannot_log_in = true;
                    break Ok((answer, timestamp));
                }
                logged_in_again = true;
                tracing::info!("the server refused the admin session (10001): logging in again");
                match registrar.secrets(on).await {
                    Ok(s) => secrets = s,
                    Err(e) => break Err(e),
                }
            }
            Ok(answer) => break Ok((answer, timestamp)),
            Err(e) if e.before_any_answer() && attempts <= reg.retries => {
                maybe_sent_before |= e.may_have_gone_through();
                let after = backoff(attempts);
                on(Step::Retrying {
                    after,
                    reason: e.to_string(),
                });
                tokio::time::sleep(after).await;
            }
            Err(e) => break Err(EnrollError::Api(e)),
        }
    };
    let record = |outcome: &str, code: Option<i64>, message: &str| {
        crate::journal::record_outcome(reg.journal, &id, outcome, code, message, attempts)
    };
    let report = |outcome: OutcomeKind, code: Option<i64>, message: String, timestamp| Report {
        outcome,
        code,
        message,
        user: Some(user.to_string()),
        admin: Some(reg.admin.to_string()),
        algorithm: digest.name().to_string(),
        token: signer.token.clone(),
        certificate: Some(cert.clone()),
        timestamp,
        step: None,
        already_bound: None,
        bound_to_other: None,
        unsettled: false,
        via: None,
        rule: None,
    };
    let (answer, timestamp) = match result {
        Ok(v) => v,
        Err(EnrollError::Api(e)) if e.may_have_gone_through() || maybe_sent_before => {
            // The answer was lost: ask the server what is bound to the user before reporting.
            match registrar.bound(reg.admin, user, &secrets).await {
                Ok(list) if list.iter().any(|c| c.is(sha1)) => {
                    let message = format!(
                        "registered — the answer was lost, but the server confirms this token's \
                         certificate is bound to {user}"
                    );
                    record("registered", None, &message);
                    let mut r = report(OutcomeKind::Registered, None, message, None);
                    r.step = Some("reconcile");
                    return Ok(r);
                }
                Ok(_) => {
                    let message = format!(
                        "not registered — {e}; the server confirms this token's certificate is \
                         not bound to {user}, so enrolling again is safe"
                    );
                    record("failed", e.centagate_code(), &message);
                    return Err(crate::api::ApiError::ConfirmedNotRegistered(message).into());
                }
                Err(_) => {
                    // "unknown": the journal says to check the server.
                    record("unknown", e.centagate_code(), &e.to_string());
                    return Err(crate::api::ApiError::Unsettled(Box::new(e)).into());
                }
            }
        }
        Err(e) => {
            let code = match &e {
                EnrollError::Api(a) => a.centagate_code(),
                _ => None,
            };
            record("failed", code, &e.to_string());
            return Err(e);
        }
    };
    on(Step::Answered {
        code: answer.code,
        message: answer.message.clone(),
    });
    // 22027: our own certificate already bound is success; another's names that certificate.
    let bound_here = if answer.code == crate::api::CODE_USER_BOUND {
        registrar.bound(reg.admin, user, &secrets).await.ok()
    } else {
        None
    };
    if let Some(list) = &bound_here {
        if list.iter().any(|c| c.is(sha1)) {
            let message = format!(
                "already registered: {user} is bound to this token's certificate (code {})",
                answer.code
            );
            record("registered", Some(answer.code), &message);
            let mut r = report(
                OutcomeKind::Registered,
                Some(answer.code),
                message,
                Some(timestamp),
            );
            r.already_bound = Some(true);
            return Ok(r);
        }
    }
    let registered = answer.code == crate::api::CODE_SUCCESS;
    let other = bound_here.as_ref().and_then(|l| l.first());
    let message = if let Some(c) = other {
        format!(
            "{} (code {}): {user} is bound to another certificate, {} (serial {}); unbind it in \
             CENTAGATE first if this token is to replace it",
            answer.message, answer.code, c.subject, c.serial
        )
    } else if answer.code == crate::api::CODE_USER_BOUND && attempts > 1 {
        // The usual advice (unbind first) would be wrong here: the binding is most likely ours.
        format!(
            "{} (code {}) — probably registered by the earlier attempt, whose answer was lost to \
             a transport failure: check in CENTAGATE that this token is the one bound to {}; do \
             not unbind it or enroll again before that",
            answer.message, answer.code, user
        )
    } else if answer.code == crate::api::CODE_PERMISSION && cannot_log_in {
        // CENTAGATE answers an ended session as it answers a missing right.
        format!(
            "{} (code {}): the admin session has probably expired (CENTAGATE ends a session \
             after its idle timeout, and then answers 10001); get a fresh authToken and \
             secretCode for {} (TOKENROLL_AUTH_TOKEN / TOKENROLL_SECRET_CODE), or let tokenroll \
             log in itself with --login password or --login token. If a fresh session is \
             refused too, the account may not register tokens",
            answer.message, answer.code, reg.admin
        )
    } else {
        answer.explain()
    };
    let kind = if registered {
        OutcomeKind::Registered
    } else {
        OutcomeKind::Rejected
    };
    // A 22027 after a retried attempt, when the list could not say whose binding it is: the
    // earlier attempt may have registered this token, so the journal keeps it unknown (for
    // `journal --reconcile`) rather than refused.
    let maybe_ours =
        answer.code == crate::api::CODE_USER_BOUND && attempts > 1 && bound_here.is_none();
    record(
        if registered {
            "registered"
        } else if maybe_ours {
            "unknown"
        } else {
            "rejected"
        },
        Some(answer.code),
        &message,
    );
    let mut r = report(kind, Some(answer.code), message, Some(timestamp));
    r.bound_to_other = other.cloned();
    r.unsettled = maybe_ours;
    Ok(r)
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
    user: Option<&str>,
    reg: Option<&Registration<'_>>,
    digest: DigestAlg,
) -> Report {
    Report {
        outcome: OutcomeKind::Failed,
        code: None,
        message: err.to_string(),
        user: user.map(str::to_string),
        admin: reg.map(|r| r.admin.to_string()),
        algorithm: digest.name().to_string(),
        token: pair.map(PairSummary::token_ref),
        certificate: pair.map(PairSummary::certificate_info),
        timestamp: None,
        already_bound: None,
        bound_to_other: None,
        unsettled: false,
        via: None,
        rule: None,
        step: matches!(
            err,
            EnrollError::Api(crate::api::ApiError::LoginRefused { .. })
                | EnrollError::AdminToken(_)
        )
        .then_some("login"),
    }
}
