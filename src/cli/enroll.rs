//! `tokenroll enroll` and `tokenroll sign`: resolve the options, load the module, and hand the
//! one flow (`enroll::run`) a registration plan or the sign-only plan.
//!
//! Owns: these commands' process concerns (what is printed, written and returned). Does not own:
//! any step of the enrollment.

use super::args::{EnrollArgs, SignArgs};
use super::exit;
use super::render::{emit_error, emit_report, print_step, usage_error};
use crate::config::{RegisterOptions, SignOptions};
use crate::enroll::{self, Pkcs11Side, Plan, Registration, Request, Step, UserPolicy};
use crate::ui::pin::{CliPin, PinSource};
use std::io::Write;

pub fn enroll_cmd(
    args: EnrollArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    let json = args.common.output.json.unwrap_or(false);
    let raw = crate::config::resolve(args.layer(), args.common.config.config.as_deref(), paths);
    // Through the relay: another plan, and no admin secret read.
    if let Ok(raw) = &raw {
        match crate::config::RelayOptions::from_raw(raw, crate::config::Face::Cli, env, paths) {
            Ok(Some(relay)) => return super::enroll_relay::enroll_via_relay(raw, relay, env),
            Ok(None) => {}
            Err(e) => {
                return usage_error(
                    raw.output.json.unwrap_or(json),
                    e.to_string(),
                    raw.signing.algorithm.as_deref().unwrap_or("sha256"),
                )
            }
        }
    }
    let resolved = raw.and_then(|raw| {
        Ok((
            SignOptions::from_raw(&raw, env)?,
            RegisterOptions::from_raw(&raw, crate::config::Face::Cli, env, paths)?,
            raw.output.json.unwrap_or(false),
        ))
    });
    let (mut sign, reg, json) = match resolved {
        Ok(v) => v,
        Err(e) => {
            return usage_error(
                json,
                e.to_string(),
                args.common.signing.algorithm.as_deref().unwrap_or("sha256"),
            )
        }
    };
    let algorithm = sign.algorithm.name();
    let client = match crate::api::CentagateClient::new(&reg.server, sign.http.clone()) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => return emit_error(e.into(), algorithm, json),
    };
    // A password or admin token PIN not given in a file or variable is asked at the terminal.
    let session = enroll::Session::new(
        client.clone(),
        reg.login.clone(),
        reg.admin.clone(),
        std::sync::Arc::new(super::TerminalAsk),
    );
    let journal = match crate::journal::Journal::open(&reg.journal) {
        Ok(j) => j,
        Err(e) => return emit_error(e.into(), algorithm, json),
    };
    let registration = Registration::new(&reg, client.origin(), Some(&journal));
    // The admin's own pair signs the logins: it is never the one enrolled.
    let selector = crate::token::Selector {
        not: match &reg.login {
            crate::config::LoginOptions::Token { key, .. } => Some(key.uri.clone()),
            _ => None,
        },
        ..sign.selector.clone()
    };
    let mut side = match Pkcs11Side::load(sign.module.as_deref(), selector) {
        Ok(s) => s,
        Err(e) => return emit_error(e.into(), algorithm, json),
    };
    let mut stderr = std::io::stderr();
    let mut on = |s: Step| print_step(&mut stderr, &s);
    let request = Request {
        digest: sign.algorithm,
        challenge: &sign.challenge,
        http: &sign.http,
    };
    let plan = Plan::Register {
        registrar: &session,
        registration: &registration,
        user: UserPolicy {
            from: &reg.user,
            asked: None,
            must_match: reg.user_must_match,
        },
    };
    // Moved, not copied: no second copy of a --pin-env PIN stays behind in the options.
    let mut prompt = CliPin::new(std::mem::replace(&mut sign.pin, PinSource::Terminal));
    let rt = super::runtime();
    let mut result = rt.block_on(enroll::run(&mut side, &mut prompt, &request, plan, &mut on));
    // --replace: the user is bound to another certificate; with the person's yes, unbind it and
    // register this PKCS#7 again (no second PIN).
    if let Ok(done) = &mut result {
        let other = done.report.as_ref().and_then(|r| r.bound_to_other.clone());
        if let (true, Some(other), Some(user)) = (
            args.replace,
            other,
            done.report.as_ref().and_then(|r| r.user.clone()),
        ) {
            if args.yes || confirm_replace(&user, &other) {
                let replaced = rt.block_on(enroll::replace(
                    &session,
                    &registration,
                    &user,
                    &other,
                    &done.pair,
                    &done.pkcs7,
                    sign.algorithm,
                    &mut on,
                ));
                match replaced {
                    Ok(r) => done.report = Some(r),
                    Err(e) => {
                        rt.block_on(session.logout());
                        std::mem::forget(side);
                        let r = enroll::failure_report(
                            &e,
                            Some(&done.pair),
                            Some(&user),
                            Some(&registration),
                            sign.algorithm,
                        );
                        return emit_report(&r, Some(&e), json);
                    }
                }
            }
        }
    }
    // A one-shot command logs out of the session it opened, whatever came of the registration.
    rt.block_on(session.logout());
    // A one-shot process leaves C_Finalize to the exit (see `sign_cmd`).
    std::mem::forget(side);
    match result {
        Ok(done) => {
            let report = done.report.expect("a registration plan reports");
            emit_report(&report, None, json)
        }
        Err(f) => emit_report(
            &f.report(Some(&registration), sign.algorithm),
            Some(&f.error),
            json,
        ),
    }
}

pub fn sign_cmd(
    args: SignArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    let resolved =
        crate::config::resolve(args.layer(), args.common.config.config.as_deref(), paths)
            .and_then(|raw| Ok((SignOptions::from_raw(&raw, env)?, raw)));
    let (mut opts, raw) = match resolved {
        Ok(v) => v,
        Err(e) => {
            return usage_error(
                args.common.output.json.unwrap_or(false),
                e.to_string(),
                args.common.signing.algorithm.as_deref().unwrap_or("sha256"),
            )
        }
    };
    let (json, base64, out) = (
        raw.output.json.unwrap_or(false),
        raw.sign_out.base64.unwrap_or(false),
        raw.sign_out.out,
    );
    let mut side = match Pkcs11Side::load(opts.module.as_deref(), opts.selector.clone()) {
        Ok(s) => s,
        Err(e) => return emit_error(e.into(), opts.algorithm.name(), json),
    };
    let mut stderr = std::io::stderr();
    let mut on = |s: Step| print_step(&mut stderr, &s);
    let request = Request {
        digest: opts.algorithm,
        challenge: &opts.challenge,
        http: &opts.http,
    };
    let mut prompt = CliPin::new(std::mem::replace(&mut opts.pin, PinSource::Terminal));
    let result = super::runtime().block_on(enroll::run(
        &mut side,
        &mut prompt,
        &request,
        Plan::SIGN_ONLY,
        &mut on,
    ));
    // A one-shot process leaves C_Finalize to the exit, as OpenSSL's engine does: the module's
    // finalisation costs a measurable part of a one-shot run and the OS reclaims everything anyway.
    std::mem::forget(side);
    let done = match result {
        Ok(d) => d,
        Err(f) => return emit_report(&f.report(None, opts.algorithm), Some(&f.error), json),
    };
    use base64::Engine;
    let der = &done.pkcs7;
    let bytes = if base64 {
        let mut s = base64::engine::general_purpose::STANDARD.encode(der);
        s.push('\n');
        s.into_bytes()
    } else {
        der.clone()
    };
    let written = match &out {
        Some(p) => {
            std::fs::write(p, &bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None if json => Ok(()),
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = written {
        eprintln!("tokenroll: {e}");
        return exit::FAILURE;
    }
    if json {
        let v = serde_json::json!({
            "outcome": "signed",
            "algorithm": opts.algorithm.name(),
            "challenge": done.challenge,
            "token": done.pair.token_ref(),
            "certificate": done.pair.certificate_info(),
            "pkcs7": base64::engine::general_purpose::STANDARD.encode(der),
        });
        println!("{v}");
    }
    exit::OK
}

/// Asks on the terminal whether to unbind `other` from `user`. No terminal: no (use --yes).
fn confirm_replace(user: &str, other: &crate::api::login::BoundCert) -> bool {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "tokenroll: --replace would unbind {}'s token; there is no terminal to ask — add \
             --yes to confirm in a script",
            crate::text::plain(user)
        );
        return false;
    }
    eprint!(
        "{} is bound to {} (serial {}). Unbind it and register this token instead? [y/N] ",
        crate::text::plain(user),
        crate::text::plain(&other.subject),
        crate::text::plain(&other.serial)
    );
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES")
}
