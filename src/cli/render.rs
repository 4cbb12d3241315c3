//! What a person or a script reads: progress lines on stderr, the report (one JSON object with
//! `--json`), and the exit code that goes with it. Untrusted text (token labels, subjects, server
//! messages) is made plain here, where it leaves for the terminal.
//!
//! Owns: wording and layout of the one-shot commands' output. Does not own: exit codes (see
//! `exit`) or what happened (see `enroll`).

use super::exit;
use crate::enroll::{self, EnrollError, Report, Step};
use crate::text::{plain, plain_lines};
use std::io::Write;

/// Prints progress for a person on stderr (stdout stays for results and --json).
pub fn print_step(out: &mut dyn Write, step: &Step) {
    let line = match step {
        Step::TokenFound { module, token, serial, uri, subject } => format!(
            "module loaded: {}\ntoken found: '{}' (serial {})\nsigning pair: {}\ncertificate: {}",
            plain(module), plain(token), plain(serial), plain(uri), plain(subject)
        ),
        Step::WeakDigest => "warning: SHA-1 is weak; use it only for a server that requires it".into(),
        Step::UserResolved { user } => format!("registering to user '{}'", plain(user)),
        Step::ChallengeReady { source, len } => format!("challenge ready ({source}, {len} bytes)"),
        Step::PinPad => "enter your PIN on the reader's PIN pad".into(),
        Step::PinWarning { final_try: true } => {
            "warning: this is the FINAL PIN try — a wrong PIN now locks the token".into()
        }
        Step::PinWarning { final_try: false } => "warning: the token reports few PIN tries left".into(),
        Step::Signed { algorithm, kind, bytes } => {
            format!("logged in; signed with {} ({kind}): PKCS#7 of {bytes} bytes", algorithm.label())
        }
        Step::SelfVerified => "PKCS#7 verified locally with the certificate's public key".into(),
        Step::LoggedIn { admin, timeout_ms } => match timeout_ms {
            Some(ms) => format!(
                "logged in as {}: session {} min",
                plain(admin),
                ms / 60_000
            ),
            None => format!("logged in as {}", plain(admin)),
        },
        Step::Sending { url } => format!("sending registration to {}", plain(url)),
        Step::ClockSkew { offset_ms } => format!(
            "warning: this computer's clock is {:.0} s {} the server's; sending a timestamp by the server's clock (fix the clock: CENTAGATE refuses timestamps 5 minutes off)",
            (*offset_ms as f64 / 1000.0).abs(),
            if *offset_ms > 0 { "behind" } else { "ahead of" }
        ),
        Step::Retrying { after, reason } => format!(
            "{}\nretrying in {:.1} s with the same signature",
            plain_lines(reason),
            after.as_secs_f64()
        ),
        Step::Answered { code, message } => {
            format!("server answered: code {code} ({})", plain(message))
        }
    };
    let _ = writeln!(out, "{line}");
}

/// Prints a report (one JSON object with `--json`) and returns its exit code.
pub(crate) fn emit_report(report: &Report, err: Option<&EnrollError>, json: bool) -> i32 {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("report serializes")
        );
    } else {
        match report.outcome {
            enroll::OutcomeKind::Registered => {
                println!("registered: {}", plain_lines(&report.message))
            }
            _ => eprintln!("tokenroll: {}", plain_lines(&report.message)),
        }
    }
    exit::for_report(report, err)
}

/// Prints an error that ended a run before it started (no pair, no user).
pub(crate) fn emit_error(err: EnrollError, algorithm: &str, json: bool) -> i32 {
    let mut r = enroll::failure_report(&err, None, None, None, crate::digest::DigestAlg::Sha256);
    r.algorithm = algorithm.to_string();
    emit_report(&r, Some(&err), json)
}

pub(crate) fn usage_error(json: bool, message: String, algorithm: &str) -> i32 {
    emit_error(EnrollError::Usage(message), algorithm, json)
}
