//! The decision on one enrollment, in the protocol's order (see the parent module): the rate
//! limits, the checks, the replay lookup, the claim, the registration under the relay's session,
//! and the answer a request with a record already gets.
//!
//! Owns: that order and what each outcome leaves in the store. Does not own: HTTP, the checks
//! themselves (see `policy`) or the queries (see `store`).

use super::*;

impl Relay {
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

    pub(super) async fn decide(
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
            run: None,
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
    pub(super) async fn keep(&self, r: &Recorded) {
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
}
