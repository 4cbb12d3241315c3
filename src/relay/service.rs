//! What the relay does with each request, in the protocol's order: issue a challenge; for an
//! enrollment, the rate limit per address, the body, the content checks (signature, chain,
//! username, statement), the limits per user and per certificate, the replay lookup, the
//! freshness checks, the challenge's single-use claim, and only then the registration with
//! CENTAGATE under the relay's own admin session (`enroll::register`, the desks' code: retries,
//! re-login after 10001, reconciliation of a lost answer). Every decision is audited and counted.
//!
//! Owns: that order and what each outcome leaves in the store. Does not own: HTTP (see `http`),
//! the checks themselves (see `policy`), the queries (see `store`) or the CENTAGATE calls (see
//! `enroll` and `api`).

use super::audit::Audit;
use super::challenge::ChallengeKey;
use super::config::RelayConfig;
use super::metrics::Metrics;
use super::policy::{self, Policy, Refusal};
use super::rate::{Rate, Rates};
use super::store::{Begun, NewRequest, RequestRecord, Store, StoreError, Unsettled};
use super::Rule;
use crate::api::{CentagateClient, TimestampUnit, TokenStatus};
use crate::enroll::{EnrollError, OutcomeKind, Registrar, Registration, Session, Signer, Step};
use der::Encode;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// An answer for the HTTP front to send.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    pub retry_after: Option<u64>,
}

impl Answer {
    fn ok(body: serde_json::Value) -> Self {
        Self {
            status: 200,
            body,
            retry_after: None,
        }
    }

    /// A refusal: `{"error": <rule>, "message": ...}` with the rule's status.
    pub fn refused(r: &Refusal, retry_after: Option<u64>) -> Self {
        Self {
            status: r.rule.status(),
            body: json!({
                "error": r.rule.token(),
                "message": format!("{} — {}", r.message, r.rule.advice()),
            }),
            retry_after,
        }
    }
}

/// Why an enrollment ended as it did, for the answer, the audit trail and the metrics.
enum Decision {
    Refused(Refusal, Option<u64>),
    /// CENTAGATE's answer (or the stored one, for a replay).
    Outcome {
        outcome: String,
        code: Option<i64>,
        message: String,
        replayed: bool,
    },
}

impl From<Refusal> for Decision {
    fn from(r: Refusal) -> Self {
        Decision::Refused(r, None)
    }
}

impl From<StoreError> for Decision {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "the relay's database");
        Decision::Refused(
            Refusal::new(
                Rule::RelayUnavailable,
                "the relay's database does not answer",
            ),
            Some(10),
        )
    }
}

/// A request's outcome, recorded just after its answer is sent.
struct Recorded {
    sha256: String,
    state: &'static str,
    outcome: String,
    code: Option<i64>,
    message: String,
    now_ms: i64,
}

/// How long the writes after an answer may take.
const WRITE_WAIT: Duration = Duration::from_secs(10);

/// Enrollments decided at once at most (each holds a permit of `inflight` until it is done).
const INFLIGHT: u32 = 1 << 20;

/// How long to wait before retrying after CENTAGATE was unreachable or its answer lost.
const RETRY_UNAVAILABLE_SECS: u64 = 10;
const RETRY_ANSWER_LOST_SECS: u64 = 30;

/// The relay: its policy, its store, its CENTAGATE session.
pub struct Relay {
    policy: Policy,
    pub store: Store,
    keys: Vec<ChallengeKey>,
    session: Session,
    client: Arc<CentagateClient>,
    admin: String,
    status: TokenStatus,
    timestamp_unit: TimestampUnit,
    retries: u32,
    rates: Rates,
    permits: tokio::sync::Semaphore,
    pub metrics: Metrics,
    /// A request in progress for longer than this has lost its relay (it died mid-request).
    pub stale_after: Duration,
    /// How long a request waits for one of the `centagate_concurrency` permits.
    permit_wait: Duration,
    /// Enrollments being decided; `drain` waits for them at exit.
    inflight: Arc<tokio::sync::Semaphore>,
    health: std::sync::Mutex<Option<(Instant, bool)>>,
}

/// The rate bucket of a client address: the address for IPv4, its /64 for IPv6 (one host
/// usually holds a whole /64).
fn address_bucket(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("addr:{v4}"),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("addr:{v4}"),
            None => {
                let s = v6.segments();
                format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Claims are kept this long after their challenge expired: a replica whose clock is behind
/// still refuses the challenge as used.
const CLAIM_MARGIN_MS: i64 = 10 * 60 * 1000;

fn now_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Relay {
    /// Opens the store (its schema brought up to date, the challenge keys made on first use)
    /// and the CENTAGATE client. No login yet: the first enrollment logs in. The CRLs move
    /// into the relay.
    pub async fn open(cfg: &mut RelayConfig) -> Result<Self, String> {
        let store = Store::open(&cfg.database)
            .await
            .map_err(|e| e.to_string())?;
        let keys = store
            .challenge_keys(now_ms(SystemTime::now()))
            .await
            .map_err(|e| e.to_string())?;
        let client = Arc::new(
            CentagateClient::new(&cfg.server, cfg.http.clone()).map_err(|e| e.to_string())?,
        );
        let session = Session::new(
            client.clone(),
            cfg.login.clone(),
            cfg.admin.clone(),
            Arc::new(crate::enroll::NoOneToAsk),
        );
        // Every attempt may take the whole timeout, with up to 8 s of backoff between them; a
        // login (two calls for a token login), a fresh login and resend after 10001, and a list
        // call come on top.
        let per_try = cfg.http.timeout + Duration::from_secs(8);
        let stale_after = per_try * (cfg.retries + 7) + Duration::from_secs(120);
        Ok(Self {
            policy: Policy {
                org_ca: cfg.org_ca.clone(),
                org_crl: std::mem::take(&mut cfg.org_crl),
                user: cfg.user.clone(),
                public_urls: cfg.public_urls.clone(),
            },
            store,
            keys,
            session,
            client,
            admin: cfg.admin.clone(),
            status: cfg.status,
            timestamp_unit: cfg.timestamp_unit,
            retries: cfg.retries,
            rates: cfg.rates,
            permits: tokio::sync::Semaphore::new(cfg.centagate_concurrency),
            metrics: Metrics::default(),
            stale_after,
            permit_wait: cfg.http.timeout * 2,
            inflight: Arc::new(tokio::sync::Semaphore::new(INFLIGHT as usize)),
            health: std::sync::Mutex::new(None),
        })
    }

    /// `POST /v1/challenge`: a challenge for the username, bound to it, for the relay URL the
    /// client reached (`host`, from its Host header). Writes nothing.
    pub fn challenge(&self, body: &[u8], host: Option<&str>) -> Answer {
        let started = Instant::now();
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Asked {
            username: String,
        }
        let answer = match serde_json::from_slice::<Asked>(body) {
            Ok(a) if !a.username.trim().is_empty() && a.username.len() <= 256 => {
                let issued =
                    super::challenge::issue(&self.keys[0], &a.username, now_ms(SystemTime::now()));
                Answer::ok(json!({
                    "challenge_id": issued.id,
                    "challenge": issued.challenge,
                    "relay": self.public_url_for(host),
                    "expires_ms": issued.expires_ms,
                }))
            }
            _ => Answer::refused(
                &Refusal::new(
                    Rule::Malformed,
                    "the body must be exactly {\"username\": \"...\"} with a username",
                ),
                None,
            ),
        };
        let outcome = if answer.status == 200 {
            "ok"
        } else {
            "refused"
        };
        let rule = answer.body["error"].as_str().unwrap_or("");
        self.metrics
            .request("challenge", outcome, rule, started.elapsed());
        answer
    }

    /// The public URL whose host the client named, else the first.
    fn public_url_for(&self, host: Option<&str>) -> &str {
        let urls = &self.policy.public_urls;
        host.and_then(|h| {
            urls.iter().find(|u| {
                url::Url::parse(u).is_ok_and(|p| {
                    let authority = match p.port() {
                        Some(port) => format!("{}:{port}", p.host_str().unwrap_or("")),
                        None => p.host_str().unwrap_or("").to_string(),
                    };
                    authority.eq_ignore_ascii_case(h)
                })
            })
        })
        .unwrap_or(&urls[0])
    }

    /// `POST /v1/enroll` from `client`, decided in a task of its own: a client that goes away
    /// does not cut a registration off midway, and `drain` waits for it at exit.
    pub async fn enroll_detached(
        self: &Arc<Self>,
        body: bytes::Bytes,
        client: std::net::IpAddr,
    ) -> Answer {
        let Ok(permit) = self.inflight.clone().acquire_owned().await else {
            return Answer::refused(
                &Refusal::new(Rule::RelayUnavailable, "the relay is stopping"),
                Some(RETRY_UNAVAILABLE_SECS),
            );
        };
        let me = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // The answer goes back as soon as it is decided; the outcome (recorded without waiting
        // for the disk either way) and the audit row are written just after it.
        tokio::spawn(async move {
            let (answer, audit, after) = me.decide_enrollment(&body, client).await;
            let _ = tx.send(answer);
            // The audit line before the writes: it is there whatever becomes of them.
            audit.emit();
            me.finish(after, &audit).await;
            drop(permit);
        });
        match rx.await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "an enrollment task ended abnormally");
                Answer::refused(
                    &Refusal::new(Rule::RelayUnavailable, "the relay failed on this request"),
                    Some(RETRY_UNAVAILABLE_SECS),
                )
            }
        }
    }

    /// Waits (up to `limit`) for the enrollments being decided; new ones are refused after.
    pub async fn drain(&self, limit: Duration) {
        let all = self.inflight.acquire_many(INFLIGHT);
        match tokio::time::timeout(limit, all).await {
            Ok(Ok(permits)) => permits.forget(),
            _ => tracing::warn!(
                "enrollments still in flight at exit: housekeeping settles them at the next start"
            ),
        }
        self.inflight.close();
    }

    /// `POST /v1/enroll` from `client`: the answer, its audit record written.
    pub async fn enroll(&self, body: &[u8], client: std::net::IpAddr) -> Answer {
        let (answer, audit, after) = self.decide_enrollment(body, client).await;
        audit.emit();
        self.finish(after, &audit).await;
        answer
    }

    /// What follows an answer (its audit line written): the request's outcome and the audit row,
    /// together, each given at most `WRITE_WAIT` (a database that hangs cannot hold a stop).
    async fn finish(&self, after: Option<Recorded>, audit: &Audit) {
        let outcome = async {
            if let Some(r) = &after {
                if tokio::time::timeout(WRITE_WAIT, self.keep(r))
                    .await
                    .is_err()
                {
                    tracing::error!(sha256 = %r.sha256, "the outcome was not recorded in time; housekeeping settles it later");
                }
            }
        };
        let row = async {
            match tokio::time::timeout(WRITE_WAIT, self.store.audit(audit)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "an audit row could not be written"),
                Err(_) => tracing::error!("an audit row was not written in time"),
            }
        };
        tokio::join!(outcome, row);
    }

    /// The answer to `POST /v1/enroll`, its audit record and the request's outcome to record
    /// (neither written yet).
    async fn decide_enrollment(
        &self,
        body: &[u8],
        client: std::net::IpAddr,
    ) -> (Answer, Audit, Option<Recorded>) {
        let started = Instant::now();
        let mut audit = Audit {
            request_id: super::audit::request_id(),
            client: client.to_string(),
            endpoint: "enroll",
            ..Default::default()
        };
        let mut after = None;
        let decision = self.decide(body, client, &mut audit, &mut after).await;
        let (answer, outcome) = match decision {
            Decision::Refused(r, retry) => {
                audit.decision = match r.rule {
                    Rule::CentagateAnswerLost => "unknown",
                    Rule::CentagateUnavailable | Rule::RelayUnavailable => "unavailable",
                    _ => "refused",
                };
                audit.rule = r.rule.token().into();
                (Answer::refused(&r, retry), "refused")
            }
            Decision::Outcome {
                outcome,
                code,
                message,
                replayed,
            } => {
                audit.decision = if replayed {
                    "replayed"
                } else {
                    match outcome.as_str() {
                        "registered" => "registered",
                        "rejected" => "rejected",
                        _ => "failed",
                    }
                };
                audit.code = code;
                let answer = Answer::ok(json!({
                    "outcome": outcome,
                    "code": code,
                    "message": message,
                }));
                (answer, audit.decision)
            }
        };
        let took = started.elapsed();
        let now = now_ms(SystemTime::now());
        audit.time_ms = now;
        audit.time = super::audit::rfc3339(now);
        audit.latency_ms = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        self.metrics.request("enroll", outcome, &audit.rule, took);
        (answer, audit, after)
    }

    /// Counts a hit against each `(bucket, rate)` (one statement); refused if any is over.
    async fn limit(&self, limits: &[(&str, Rate)], now: i64) -> Result<(), Decision> {
        let buckets: Vec<(&str, i64)> = limits.iter().map(|(b, r)| (*b, r.window(now))).collect();
        let hits = self.store.hits(&buckets).await?;
        for ((_, rate), hits) in limits.iter().zip(hits) {
            if rate.exceeded_by(hits) {
                return Err(Decision::Refused(
                    Refusal::new(
                        Rule::RateLimited,
                        format!(
                            "more than {} requests in {} s",
                            rate.count,
                            rate.window_ms / 1000
                        ),
                    ),
                    Some(rate.retry_after_secs(now)),
                ));
            }
        }
        Ok(())
    }

    async fn decide(
        &self,
        body: &[u8],
        client: std::net::IpAddr,
        audit: &mut Audit,
        after: &mut Option<Recorded>,
    ) -> Decision {
        match self.decide_inner(body, client, audit, after).await {
            Ok(d) | Err(d) => d,
        }
    }

    async fn decide_inner(
        &self,
        body: &[u8],
        client: std::net::IpAddr,
        audit: &mut Audit,
        after: &mut Option<Recorded>,
    ) -> Result<Decision, Decision> {
        let now = SystemTime::now();
        let now_ms = now_ms(now);
        let started = Instant::now();
        // The address's limit decides first (counted before the signature is looked at, so
        // nobody can lock a user out by naming them); the body is checked while its count is
        // on its way to the database.
        let bucket = address_bucket(client);
        let address = [(bucket.as_str(), self.rates.address)];
        let (limited, checked) = tokio::join!(self.limit(&address, now_ms), async {
            let parsed = policy::parse(body)?;
            let v = self.policy.verify(&parsed, now);
            Ok::<_, Refusal>((parsed, v))
        });
        limited?;
        let t_rate = started.elapsed();
        let (parsed, v) = checked?;
        audit.sha256 = parsed.sha256.clone();
        audit.username = crate::text::cap(&parsed.username, 256).into_owned();
        let v = v?;
        let t_verify = started.elapsed();
        let cert_der = v
            .signer
            .to_der()
            .map_err(|e| Refusal::new(Rule::Malformed, e.to_string()))?;
        let signer = Signer::of_certificate(&v.signer, &cert_der);
        audit.username = v.username.clone();
        audit.subject = signer.certificate.subject.clone();
        audit.issuer = signer.certificate.issuer.clone();
        audit.serial = signer.certificate.serial.clone();
        audit.cert_sha256 = signer.certificate.sha256.clone();
        let (user_bucket, cert_bucket) = (
            format!("user:{}", v.username.to_lowercase()),
            format!("cert:{}", signer.certificate.sha256),
        );
        let limits = [
            (user_bucket.as_str(), self.rates.user),
            (cert_bucket.as_str(), self.rates.certificate),
        ];
        // A request seen before is answered from its record, whatever its age: never a
        // second registration.
        let fresh = self.policy.fresh(&v, &self.keys, now);
        if let Ok(c) = fresh.as_ref() {
            audit.challenge_id = c.id.clone();
        }
        // Stale: still answered from its record if it has one. Fresh: `begin` finds the record.
        let challenge = match fresh {
            Ok(c) => c,
            Err(refusal) => {
                self.limit(&limits, now_ms).await?;
                return Err(match self.store.request(&parsed.sha256).await? {
                    Some(rec) => self.stored(self.awaited(&parsed.sha256, rec).await?),
                    None => refusal.into(),
                });
            }
        };
        // The permit first, so that a record in progress is one being sent (its age bounds
        // how long a live request can take: see `stale_after`).
        let _permit = match tokio::time::timeout(self.permit_wait, self.permits.acquire()).await {
            Ok(p) => p.expect("the semaphore is never closed"),
            Err(_) => {
                // A request seen before is still answered from its record.
                if let Some(rec) = self.store.request(&parsed.sha256).await? {
                    return Err(self.stored(self.awaited(&parsed.sha256, rec).await?));
                }
                return Err(Decision::Refused(
                    Refusal::new(
                        Rule::CentagateUnavailable,
                        "the relay is busy: too many registrations are waiting for CENTAGATE",
                    ),
                    Some(RETRY_UNAVAILABLE_SECS),
                ));
            }
        };
        let new = NewRequest {
            sha256: &parsed.sha256,
            username: &v.username,
            cert_sha1: &signer.sha1,
            challenge_id: &challenge.id,
        };
        let now_ms = self::now_ms(SystemTime::now());
        let t_limits = started.elapsed();
        // The user's and the certificate's counts travel while the record and the claim are
        // committed; over a limit, what was recorded is given back (nothing was sent yet).
        let (limited, begun) = tokio::join!(
            self.limit(&limits, now_ms),
            self.store.begin(&new, challenge.expires_ms, now_ms)
        );
        let begun = begun?;
        if let Err(refused) = limited {
            if begun == Begun::New {
                if let Err(e) = self.store.give_back(&challenge.id, &parsed.sha256).await {
                    // Still the limit's refusal; the record goes when housekeeping sees it stale.
                    tracing::error!(error = %e, "a request refused by a limit could not be given back");
                }
            }
            return Err(refused);
        }
        match begun {
            Begun::New => {}
            Begun::Seen(rec) => {
                // A duplicate waits for its original without holding a CENTAGATE permit.
                drop(_permit);
                return Err(self.stored(self.awaited(&parsed.sha256, rec).await?));
            }
            Begun::ChallengeUsed => {
                return Err(
                    Refusal::new(Rule::ChallengeUsed, "the challenge was used already").into(),
                )
            }
        }
        let registration = Registration {
            admin: &self.admin,
            status: self.status,
            timestamp_unit: self.timestamp_unit,
            url_for_display: crate::api::client::register_url(self.client.origin(), &self.admin),
            journal: None,
            retries: self.retries,
        };
        let metrics = &self.metrics;
        let mut on = |s: Step| {
            if let Step::LoggedIn { admin, .. } = &s {
                metrics.login();
                tracing::info!(admin = %crate::text::plain(admin), "logged in to CENTAGATE");
            }
        };
        let sent = Instant::now();
        let t_begun = started.elapsed();
        let result = crate::enroll::register(
            &self.session,
            &registration,
            &v.username,
            &signer,
            &parsed.pkcs7,
            v.digest,
            &mut on,
        )
        .await;
        let now_ms = now_ms + i64::try_from(sent.elapsed().as_millis()).unwrap_or(0);
        // Where a request's time goes (cumulative), for an operator tuning the database.
        tracing::debug!(
            target: "tokenroll::relay::timing",
            rate = ?t_rate,
            verified = ?t_verify,
            limits_and_permit = ?t_limits,
            recorded = ?t_begun,
            registered = ?started.elapsed(),
            "enrollment timing"
        );
        match result {
            Ok(report) if report.unsettled => {
                // A 22027 after a retry that CENTAGATE's list could not attribute: probably
                // this request's own earlier attempt, but not known; settled later.
                self.metrics.centagate(report.code, sent.elapsed());
                *after = Some(Recorded {
                    sha256: parsed.sha256.clone(),
                    state: "unknown",
                    outcome: "unknown".to_string(),
                    code: report.code,
                    message: report.message.clone(),
                    now_ms,
                });
                Err(Decision::Refused(
                    Refusal::new(Rule::CentagateAnswerLost, report.message),
                    Some(RETRY_ANSWER_LOST_SECS),
                ))
            }
            Ok(report) => {
                self.metrics.centagate(report.code, sent.elapsed());
                let outcome = match report.outcome {
                    OutcomeKind::Registered => "registered",
                    OutcomeKind::Rejected => "rejected",
                    OutcomeKind::Failed => "failed",
                };
                *after = Some(Recorded {
                    sha256: parsed.sha256.clone(),
                    state: "final",
                    outcome: outcome.to_string(),
                    code: report.code,
                    message: report.message.clone(),
                    now_ms,
                });
                Ok(Decision::Outcome {
                    outcome: outcome.into(),
                    code: report.code,
                    message: report.message,
                    replayed: false,
                })
            }
            Err(EnrollError::Api(e)) if e.may_have_gone_through() => {
                self.metrics.centagate(None, sent.elapsed());
                let message = e.to_string();
                *after = Some(Recorded {
                    sha256: parsed.sha256.clone(),
                    state: "unknown",
                    outcome: "unknown".to_string(),
                    code: e.centagate_code(),
                    message: message.clone(),
                    now_ms,
                });
                tracing::warn!(sha256 = %parsed.sha256, error = %message, "CENTAGATE's answer was lost: the relay settles it later");
                Err(Decision::Refused(
                    Refusal::new(Rule::CentagateAnswerLost, "CENTAGATE's answer was lost"),
                    Some(RETRY_ANSWER_LOST_SECS),
                ))
            }
            Err(e) => {
                // Nothing reached CENTAGATE (or it confirmed nothing was registered): the claim
                // goes back, so the client may send the same request again.
                // The reason stays in the relay's log: it may name internal addresses.
                tracing::warn!(error = %e, "nothing was registered: CENTAGATE could not be reached, or refused the relay's login");
                self.store.give_back(&challenge.id, &parsed.sha256).await?;
                Err(Decision::Refused(
                    Refusal::new(
                        Rule::CentagateUnavailable,
                        "CENTAGATE could not be reached, or refused the relay's own login (its \
                         operator finds why in the relay's log)",
                    ),
                    Some(RETRY_UNAVAILABLE_SECS),
                ))
            }
        }
    }

    /// Records what became of a request that reached CENTAGATE. A database failure here does not
    /// change the answer: the record stays in progress, and housekeeping settles it through
    /// CENTAGATE's list once it is stale.
    async fn keep(&self, r: &Recorded) {
        match self
            .store
            .finish_request(&r.sha256, r.state, &r.outcome, r.code, &r.message, r.now_ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(sha256 = %r.sha256, outcome = %r.outcome, "the request's record was gone or final already: this outcome is not recorded")
            }
            Err(e) => {
                tracing::error!(sha256 = %r.sha256, error = %e, "the outcome could not be recorded; housekeeping settles it later")
            }
        }
    }

    /// A record in progress, given a moment to end: the same request sent again while the first
    /// is answered gets that answer rather than `in_progress` (up to 2 s).
    async fn awaited(
        &self,
        sha256: &str,
        mut rec: RequestRecord,
    ) -> Result<Option<RequestRecord>, StoreError> {
        let until = Instant::now() + Duration::from_secs(2);
        while rec.state == "in_progress" && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
            match self.store.request(sha256).await? {
                Some(r) => rec = r,
                // Given back meanwhile (nothing reached CENTAGATE): it may be sent again.
                None => return Ok(None),
            }
        }
        Ok(Some(rec))
    }

    /// The answer to a request that has a record already (`None`: it was given back meanwhile).
    fn stored(&self, rec: Option<RequestRecord>) -> Decision {
        let Some(rec) = rec else {
            return Decision::Refused(
                Refusal::new(
                    Rule::CentagateUnavailable,
                    "the same request was given back unregistered while this one waited",
                ),
                Some(1),
            );
        };
        match rec.state.as_str() {
            "final" => Decision::Outcome {
                outcome: rec.outcome.unwrap_or_else(|| "failed".into()),
                code: rec.code,
                message: rec.message.unwrap_or_default(),
                replayed: true,
            },
            "in_progress" => Refusal::new(
                Rule::InProgress,
                "the same request is being handled right now",
            )
            .into(),
            _ => Decision::Refused(
                Refusal::new(
                    Rule::CentagateAnswerLost,
                    "CENTAGATE's answer to this request was lost; the relay is settling it",
                ),
                Some(RETRY_ANSWER_LOST_SECS),
            ),
        }
    }

    /// `GET /v1/enroll/<sha256>`: the stored final outcome; an unsettled one is settled first
    /// if CENTAGATE can say.
    pub async fn lookup(&self, sha256: &str) -> Answer {
        let started = Instant::now();
        let answer = self.lookup_inner(sha256).await;
        let outcome = answer.body["outcome"]
            .as_str()
            .unwrap_or("refused")
            .to_string();
        let rule = answer.body["error"].as_str().unwrap_or("").to_string();
        self.metrics
            .request("lookup", &outcome, &rule, started.elapsed());
        answer
    }

    async fn lookup_inner(&self, sha256: &str) -> Answer {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Answer::refused(
                &Refusal::new(
                    Rule::Malformed,
                    "give the SHA-256 of the PKCS#7 DER, 64 hex digits",
                ),
                None,
            );
        }
        let sha256 = sha256.to_ascii_lowercase();
        let unavailable = |e: StoreError| match Decision::from(e) {
            Decision::Refused(r, retry) => Answer::refused(&r, retry),
            Decision::Outcome { .. } => unreachable!("a store error is a refusal"),
        };
        let mut rec = match self.store.request(&sha256).await {
            Ok(r) => r,
            Err(e) => return unavailable(e),
        };
        if rec.as_ref().is_some_and(|r| r.state != "final") {
            let stale = now_ms(SystemTime::now())
                - i64::try_from(self.stale_after.as_millis()).unwrap_or(i64::MAX);
            if let Ok(Some(u)) = self.store.unsettled_one(&sha256, stale).await {
                if let Err(e) = self.settle(&u).await {
                    tracing::info!(%sha256, error = %e, "a lookup could not settle its request yet");
                }
            }
            rec = match self.store.request(&sha256).await {
                Ok(r) => r,
                Err(e) => return unavailable(e),
            };
        }
        match rec {
            Some(r) if r.state == "final" => Answer::ok(json!({
                "outcome": r.outcome,
                "code": r.code,
                "message": r.message,
            })),
            Some(_) => Answer {
                status: 202,
                body: json!({
                    "outcome": "unknown",
                    "code": null,
                    "message": "the request reached the relay, and CENTAGATE's answer is not known \
                                yet; ask again later",
                }),
                retry_after: Some(RETRY_ANSWER_LOST_SECS),
            },
            None => Answer::refused(
                &Refusal::new(Rule::NotFound, "no request with this SHA-256"),
                None,
            ),
        }
    }

    /// Asks CENTAGATE whether `u`'s certificate is bound to its user: if so the request is
    /// registered; if not it never was, and its record and claim go (the client may send it
    /// again). `Err` when CENTAGATE cannot say.
    pub async fn settle(&self, u: &Unsettled) -> Result<(), String> {
        let mut on = |s: Step| {
            if matches!(s, Step::LoggedIn { .. }) {
                self.metrics.login();
            }
        };
        let secrets = self
            .session
            .secrets(&mut on)
            .await
            .map_err(|e| e.to_string())?;
        let list = self
            .session
            .bound(&self.admin, &u.username, &secrets)
            .await
            .map_err(|e| e.to_string())?;
        let now = now_ms(SystemTime::now());
        if list.iter().any(|c| c.is(&u.cert_sha1)) {
            self.store
                .finish_request(
                    &u.sha256,
                    "final",
                    "registered",
                    None,
                    &format!(
                        "registered — CENTAGATE's answer was lost, and it confirms that the \
                         certificate is bound to {}",
                        u.username
                    ),
                    now,
                )
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(sha256 = %u.sha256, "settled: registered");
        } else {
            self.store
                .give_back(&u.challenge_id, &u.sha256)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(sha256 = %u.sha256, "settled: not registered (the record goes)");
        }
        Ok(())
    }

    /// One round of housekeeping: unsettled requests asked about, expired claims and old rate
    /// windows forgotten.
    pub async fn housekeeping(&self) {
        let now = now_ms(SystemTime::now());
        let stale = now - i64::try_from(self.stale_after.as_millis()).unwrap_or(i64::MAX);
        match self.store.unsettled(stale).await {
            Ok(list) => {
                for u in &list {
                    if let Err(e) = self.settle(u).await {
                        tracing::warn!(sha256 = %u.sha256, error = %e, "an unsettled request stays unknown for now");
                        break;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "housekeeping"),
        }
        if let Err(e) = self.store.forget_claims_before(now - CLAIM_MARGIN_MS).await {
            tracing::warn!(error = %e, "forgetting expired claims");
        }
        if let Err(e) = self.store.forget_rate_counts_before(now - 86_400_000).await {
            tracing::warn!(error = %e, "forgetting old rate windows");
        }
    }

    /// `GET /v1/health`: 200 while the database answers, with whether CENTAGATE does (asked at
    /// most every 5 s).
    pub async fn health(&self) -> Answer {
        let db = self.store.ping().await;
        let cached = *self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reachable = match cached {
            Some((at, r)) if at.elapsed() < Duration::from_secs(5) => r,
            _ => {
                // Asked without holding the cache: a slow CENTAGATE never queues the probes.
                let r = match self.client.reachable().await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(error = %e, "health: CENTAGATE does not answer");
                        false
                    }
                };
                *self
                    .health
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Instant::now(), r));
                r
            }
        };
        Answer {
            status: if db.is_ok() { 200 } else { 503 },
            body: json!({
                "status": if db.is_ok() { "ok" } else { "unavailable" },
                "database": if db.is_ok() { "ok" } else { "unavailable" },
                "centagate": { "reachable": reachable },
            }),
            retry_after: None,
        }
    }

    /// Ends the relay's CENTAGATE session (at exit).
    pub async fn logout(&self) {
        self.session.logout().await;
    }
}
