//! The relay's metrics, in the Prometheus text format (served on `metrics_listen` only): requests
//! by endpoint, outcome and rule (the same rule tokens as the answers and the audit trail),
//! request latency, CENTAGATE calls by code and their latency, and admin logins.
//!
//! Owns: the counters, the histograms and their text form. Does not own: when something is
//! counted (see `service`) or serving them (see `http`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in BUCKETS.iter().zip(self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Default)]
struct Inner {
    /// (endpoint, outcome, rule) → count.
    requests: BTreeMap<(&'static str, String, String), u64>,
    /// endpoint → latency.
    latency: BTreeMap<&'static str, Histogram>,
    /// CENTAGATE code (or "error") → count.
    centagate: BTreeMap<String, u64>,
    centagate_latency: Histogram,
    logins: u64,
}

/// Every metric the relay keeps.
#[derive(Default)]
pub struct Metrics(Mutex<Inner>);

impl Metrics {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One request answered: `outcome` is the answer's (`ok`, `registered`, `rejected`,
    /// `refused`, ...), `rule` the rule token that decided (empty for none).
    pub fn request(&self, endpoint: &'static str, outcome: &str, rule: &str, took: Duration) {
        let mut m = self.inner();
        *m.requests
            .entry((endpoint, outcome.to_string(), rule.to_string()))
            .or_default() += 1;
        m.latency.entry(endpoint).or_default().observe(took);
    }

    /// One registration sent to CENTAGATE: its code, or `None` for no answer.
    pub fn centagate(&self, code: Option<i64>, took: Duration) {
        let mut m = self.inner();
        let key = code.map_or_else(|| "error".to_string(), |c| c.to_string());
        *m.centagate.entry(key).or_default() += 1;
        m.centagate_latency.observe(took);
    }

    pub fn login(&self) {
        self.inner().logins += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let m = self.inner();
        let mut out = String::new();
        out.push_str("# HELP tokenroll_relay_requests_total Requests answered, by endpoint, outcome and rule.\n");
        out.push_str("# TYPE tokenroll_relay_requests_total counter\n");
        for ((endpoint, outcome, rule), n) in &m.requests {
            let _ = writeln!(
                out,
                "tokenroll_relay_requests_total{{endpoint=\"{endpoint}\",outcome=\"{}\",rule=\"{}\"}} {n}",
                label(outcome),
                label(rule)
            );
        }
        out.push_str("# HELP tokenroll_relay_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE tokenroll_relay_request_duration_seconds histogram\n");
        for (endpoint, h) in &m.latency {
            h.render(
                &mut out,
                "tokenroll_relay_request_duration_seconds",
                &format!("endpoint=\"{endpoint}\""),
            );
        }
        out.push_str("# HELP tokenroll_relay_centagate_registrations_total Registrations sent to CENTAGATE, by its answer's code (error: no answer).\n");
        out.push_str("# TYPE tokenroll_relay_centagate_registrations_total counter\n");
        for (code, n) in &m.centagate {
            let _ = writeln!(
                out,
                "tokenroll_relay_centagate_registrations_total{{code=\"{}\"}} {n}",
                label(code)
            );
        }
        out.push_str("# HELP tokenroll_relay_centagate_duration_seconds Time CENTAGATE took to answer a registration.\n");
        out.push_str("# TYPE tokenroll_relay_centagate_duration_seconds histogram\n");
        m.centagate_latency
            .render(&mut out, "tokenroll_relay_centagate_duration_seconds", "");
        out.push_str(
            "# HELP tokenroll_relay_centagate_logins_total Admin logins the relay made.\n",
        );
        out.push_str("# TYPE tokenroll_relay_centagate_logins_total counter\n");
        let _ = writeln!(out, "tokenroll_relay_centagate_logins_total {}", m.logins);
        out
    }
}

/// A label value, escaped as the text format wants.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_histograms_render_in_the_text_format() {
        let m = Metrics::default();
        m.request("enroll", "registered", "", Duration::from_millis(3));
        m.request(
            "enroll",
            "refused",
            "bad_signature",
            Duration::from_millis(1),
        );
        m.request(
            "enroll",
            "refused",
            "bad_signature",
            Duration::from_millis(1),
        );
        m.centagate(Some(0), Duration::from_millis(2));
        m.centagate(None, Duration::from_secs(20));
        m.login();
        let t = m.render();
        assert!(t.contains(
            "tokenroll_relay_requests_total{endpoint=\"enroll\",outcome=\"refused\",rule=\"bad_signature\"} 2"
        ), "{t}");
        assert!(t.contains("tokenroll_relay_request_duration_seconds_bucket{endpoint=\"enroll\",le=\"0.001\"} 2"), "{t}");
        assert!(t.contains("tokenroll_relay_request_duration_seconds_bucket{endpoint=\"enroll\",le=\"+Inf\"} 3"), "{t}");
        assert!(t.contains("tokenroll_relay_request_duration_seconds_count{endpoint=\"enroll\"} 3"));
        assert!(t.contains("tokenroll_relay_centagate_registrations_total{code=\"error\"} 1"));
        assert!(
            t.contains("tokenroll_relay_centagate_duration_seconds_bucket{le=\"10\"} 1"),
            "{t}"
        );
        assert!(t.contains("tokenroll_relay_centagate_duration_seconds_count 2"));
        assert!(t.contains("tokenroll_relay_centagate_logins_total 1"));
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
