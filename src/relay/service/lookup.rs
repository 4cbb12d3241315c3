//! What the relay says of requests after the fact: lookups by SHA-256 (settling an unknown one
//! first when CENTAGATE can say), housekeeping, health, and the logout at exit.
//!
//! Owns: settling unknown outcomes. Does not own: the decision on a request (see `decide`).

use super::*;

impl Relay {
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
