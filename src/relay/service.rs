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
    /// `host[:port]` of each public URL, in the same order, for matching a Host header.
    authorities: Vec<String>,
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

mod decide;
mod lookup;

/// `host[:port]` of a URL as a Host header names it (empty when it does not parse).
fn authority(url: &str) -> String {
    url::Url::parse(url).map_or_else(
        |_| String::new(),
        |p| match p.port() {
            Some(port) => format!("{}:{port}", p.host_str().unwrap_or("")),
            None => p.host_str().unwrap_or("").to_string(),
        },
    )
}

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
            authorities: cfg.public_urls.iter().map(|u| authority(u)).collect(),
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
        host.and_then(|h| {
            self.authorities
                .iter()
                .position(|a| a.eq_ignore_ascii_case(h))
        })
        .map_or(&self.policy.public_urls[0], |i| &self.policy.public_urls[i])
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
}
