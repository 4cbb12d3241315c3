//! `tokenroll enroll --relay URL`: the desk's enrollment through the organisation's relay. No
//! CENTAGATE server, admin or secret is read; the journal records the attempt like a direct
//! one, with the request's SHA-256 for `journal --reconcile`.
//!
//! Owns: this command's process concerns. Does not own: any step of the enrollment (see
//! `enroll::run_relay`).

use super::render::{emit_error, emit_report, print_step, usage_error};
use crate::config::{RawConfig, RelayOptions, SignOptions};
use crate::enroll::{self, Pkcs11Side, RelayPlan, Step, UserPolicy};
use crate::ui::pin::{CliPin, PinSource};

pub fn enroll_via_relay(
    raw: &RawConfig,
    opts: RelayOptions,
    env: &crate::secret::EnvSecrets,
) -> i32 {
    let json = raw.output.json.unwrap_or(false);
    let algorithm_text = raw.signing.algorithm.as_deref().unwrap_or("sha256");
    let mut sign = match SignOptions::from_raw(raw, env) {
        Ok(s) => s,
        Err(e) => return usage_error(json, e.to_string(), algorithm_text),
    };
    let digest = sign.algorithm;
    let algorithm = digest.name();
    let client = match crate::api::relay::RelayClient::new(&opts.url, &opts.http) {
        Ok(c) => c,
        Err(e) => return emit_error(e.into(), algorithm, json),
    };
    let journal = match crate::journal::Journal::open(&opts.journal) {
        Ok(j) => j,
        Err(e) => return emit_error(e.into(), algorithm, json),
    };
    let mut side = match Pkcs11Side::load(sign.module.as_deref(), sign.selector.clone()) {
        Ok(s) => s,
        Err(e) => return emit_error(e.into(), algorithm, json),
    };
    let mut stderr = std::io::stderr();
    let mut on = |s: Step| print_step(&mut stderr, &s);
    let plan = RelayPlan {
        user: UserPolicy {
            from: &opts.user,
            asked: None,
            must_match: opts.user_must_match,
        },
        digest,
        journal: Some(&journal),
        retries: opts.retries,
    };
    let mut prompt = CliPin::new(std::mem::replace(&mut sign.pin, PinSource::Terminal));
    let result = super::runtime().block_on(enroll::run_relay(
        &mut side,
        &mut prompt,
        &client,
        &plan,
        &mut on,
    ));
    // A one-shot process leaves C_Finalize to the exit (see `sign_cmd`).
    std::mem::forget(side);
    match result {
        Ok(done) => emit_report(&done.report.expect("a relay plan reports"), None, json),
        Err(f) => emit_report(
            &enroll::relay_failure_report(&f, digest),
            Some(&f.error),
            json,
        ),
    }
}
