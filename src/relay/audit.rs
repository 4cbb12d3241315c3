//! The relay's audit trail: one record per decision — a JSON line on stdout (journald under
//! systemd) and a row in the database — with the time, the request's id, the client's address,
//! the username, the certificate (subject, issuer, serial, SHA-256), the challenge's id, the
//! decision, the rule that decided (the answers' rule tokens), CENTAGATE's code and the latency.
//! Never a secret: the PKCS#7 itself, PINs and the admin's session are not in it.
//!
//! Owns: the record's shape and its JSON line. Does not own: the row (see `store`) or what is
//! decided (see `service`).

use serde::Serialize;
use std::io::Write;

/// One decision.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Audit {
    /// RFC 3339 UTC.
    pub time: String,
    #[serde(skip)]
    pub time_ms: i64,
    pub request_id: String,
    pub client: String,
    /// `challenge` or `enroll`.
    pub endpoint: &'static str,
    pub username: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    /// SHA-256 of the request's PKCS#7 (its identity for replays and lookups).
    pub sha256: String,
    /// SHA-256 of the signer's certificate.
    pub cert_sha256: String,
    pub challenge_id: String,
    /// `issued`, `registered`, `rejected`, `refused`, `unavailable`, `unknown`, `replayed`.
    pub decision: &'static str,
    /// The rule token that decided; empty when none did.
    pub rule: String,
    pub code: Option<i64>,
    pub latency_ms: i64,
}

impl Audit {
    /// The JSON line, written whole (one `write` of one line, so replicas' and tasks' lines
    /// never interleave) to stdout. Text from certificates and clients is JSON-escaped.
    pub fn emit(&self) {
        let mut line = serde_json::to_string(self).expect("an audit record serializes");
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// A fresh request id (the journal's kind of id: 16 random bytes, hex).
pub fn request_id() -> String {
    crate::journal::new_id()
}

/// `ms` as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    let secs = u64::try_from(ms.div_euclid(1000)).unwrap_or(0);
    let whole = der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
    format!(
        "{}.{:03}Z",
        whole.trim_end_matches('Z'),
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc_and_ids_unique() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_900_000_123), "2026-11-28T21:06:40.123Z");
        assert_ne!(request_id(), request_id());
        assert_eq!(request_id().len(), 32);
    }
}
