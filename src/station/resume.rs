//! A run started again with the same report: what is done is skipped, and what was in flight
//! when the last run ended is settled before any token is touched — from the report, then from
//! the journal entries tagged with this run (see `run_id`), asking CENTAGATE about any whose
//! outcome is unknown (issue 6's reconciliation), so no token is registered twice and the
//! report ends complete.
//!
//! Owns: that order. Does not own: the journal's format (see `journal`) or the list call (see
//! `enroll::Registrar::bound`).

use super::lane::Ctx;
use super::queue::{Queue, Settled};
use super::report::{Report, Row};
use crate::enroll::Registrar;
use crate::journal::Entry;

fn settled_of(outcome: &str) -> Settled {
    match outcome {
        "registered" => Settled::Registered,
        "rejected" => Settled::Rejected,
        "skipped" => Settled::Skipped,
        _ => Settled::FailedNetwork,
    }
}

/// The report row for a journal entry settled at start.
fn row_of(e: &Entry, outcome: &str, message: String) -> Row {
    let i = &e.intent;
    Row {
        time: super::events::now(),
        reader: String::new(),
        token_label: i.token_label.clone(),
        token_serial: i.token_serial.clone(),
        username: i.user.clone(),
        cert_subject: i.certificate_subject.clone(),
        cert_serial: i.certificate_serial.clone(),
        cert_sha256: i.certificate_sha256.clone(),
        status: i
            .status
            .parse::<crate::api::TokenStatus>()
            .map(|s| s.name().to_string())
            .unwrap_or_default(),
        outcome: outcome.into(),
        code: e.outcome.as_ref().and_then(|o| o.code),
        message,
        seconds: 0.0,
    }
}

/// Restores `queue` from the report's `rows` and this run's journal entries; appends the rows
/// the report lacks. Returns the report and all its rows.
pub async fn restore(
    ctx: &Ctx,
    queue: &mut Queue,
    mut report: Report,
    mut rows: Vec<Row>,
) -> Result<(Report, Vec<Row>), String> {
    for r in &rows {
        if !r.username.is_empty() {
            queue.restore(&r.username, &r.cert_sha256, settled_of(&r.outcome));
        }
    }
    let contents = crate::journal::read(&ctx.reg.journal).map_err(|e| e.to_string())?;
    let ours = contents.entries.iter().filter(|e| {
        e.intent.run.as_deref() == Some(ctx.run.as_str()) && e.intent.action == "register"
    });
    let in_report = |rows: &[Row], e: &Entry| {
        rows.iter().any(|r| {
            r.outcome == "registered"
                && r.cert_sha256 == e.intent.certificate_sha256
                && r.username.eq_ignore_ascii_case(&e.intent.user)
        })
    };
    let mut added = Vec::new();
    let mut unknown = Vec::new();
    for e in ours {
        if in_report(&rows, e) || in_report(&added, e) {
            continue;
        }
        let (outcome, message) = match e.state() {
            "registered" => (
                "registered",
                "registered before the last run ended (from the journal)".to_string(),
            ),
            s if s.starts_with("unknown") => settle(ctx, e).await,
            _ => continue,
        };
        let i = &e.intent;
        if outcome == "failed" && message.starts_with("not registered") {
            // Confirmed not registered: the row waits for its token again.
            tracing::info!(user = %i.user, "{message}");
            continue;
        }
        if outcome != "registered" {
            // Unknown still: held, not reported (the journal keeps it unknown; a later start
            // asks again).
            tracing::warn!(user = %i.user, "{message}");
            queue.hold(&i.user, &i.certificate_sha256);
            unknown.push(message);
            continue;
        }
        queue.restore(&i.user, &i.certificate_sha256, settled_of(outcome));
        added.push(row_of(e, outcome, message));
    }
    for r in added {
        report.append(&r).map_err(|e| e.to_string())?;
        rows.push(r);
    }
    for message in unknown {
        ctx.face.event(&super::events::Event::Log {
            time: super::events::now(),
            message,
        });
    }
    Ok((report, rows))
}

/// Asks CENTAGATE whether the entry's certificate is bound to its user, and journals the answer.
async fn settle(ctx: &Ctx, e: &Entry) -> (&'static str, String) {
    let i = &e.intent;
    let answer = async {
        let secrets = ctx
            .session
            .secrets(&mut |_| {})
            .await
            .map_err(|e| e.to_string())?;
        ctx.session
            .bound(&i.admin, &i.user, &secrets)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    let (state, message) = match answer {
        Ok(list) if list.iter().any(|c| c.is(&i.certificate_sha1)) => (
            "registered",
            format!(
                "registered — the last run ended before the answer was recorded; CENTAGATE \
                 confirms this certificate is bound to {}",
                i.user
            ),
        ),
        Ok(_) => (
            "failed",
            format!(
                "not registered — the last run ended before the answer; CENTAGATE confirms this \
                 certificate is not bound to {}, so the row is enrolled again",
                i.user
            ),
        ),
        Err(why) => {
            return (
                "failed",
                format!(
                    "unknown — the last run ended before the answer, and CENTAGATE could not be \
                     asked ({why}); this row is not enrolled again in this run: run `tokenroll \
                     journal --reconcile` once the server answers"
                ),
            )
        }
    };
    crate::journal::record_outcome(Some(&ctx.journal), &i.id, state, None, &message, 1);
    (state, message)
}
