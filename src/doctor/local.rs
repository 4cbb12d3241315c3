//! The doctor's checks of what is plugged into this desk: the PKCS#11 modules found (p11-kit's
//! registered ones, OpenSC, SoftHSM2) and whether they load, pcscd and its readers, and the
//! tokens of the module in use — their PIN state, signing pairs and certificates' dates.
//!
//! Owns: the verdicts on the modules, pcscd and the tokens. Does not own: finding, opening or
//! loading a module, or reading a token (see `token`).

use super::{Check, Status};
use crate::token::{Module, TokenDesc, Validity};
use std::path::Path;

pub fn checks(raw: &crate::config::RawConfig, pcsc_socket: Option<&Path>) -> Vec<Check> {
    let mut out = Vec::new();
    let configured = raw.module.module.clone();
    let in_use = configured
        .clone()
        .or_else(|| crate::token::discover_module().ok());
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let in_use_canonical = in_use.as_deref().map(canonical);
    for path in crate::token::installed_modules() {
        if Some(canonical(&path)) != in_use_canonical {
            out.push(opens(&path));
        }
    }
    let module = match &in_use {
        None => {
            out.push(Check::new(
                "module",
                Status::Fail,
                "no PKCS#11 module found (p11-kit, OpenSC or SoftHSM2)",
                "install the token's module (sudo apt install opensc p11-kit-modules), or name \
                 it with the module key / --module",
            ));
            None
        }
        Some(path) => match Module::load(Some(path)) {
            Ok(m) => {
                out.push(Check::ok(
                    "module",
                    format!(
                        "{} loads ({}); tokenroll uses it{}",
                        path.display(),
                        m.library_description(),
                        if configured.is_some() {
                            " (configured)"
                        } else {
                            ""
                        }
                    ),
                ));
                Some(m)
            }
            Err(e) => {
                out.push(Check::new(
                    "module",
                    Status::Fail,
                    format!("the module tokenroll uses does not load: {e}"),
                    "install the token's module, or correct the module key / --module",
                ));
                None
            }
        },
    };
    let software_only = in_use
        .as_deref()
        .is_some_and(|p| p.to_string_lossy().contains("softhsm"));
    out.push(pcscd(pcsc_socket, software_only));
    match module {
        Some(m) => {
            out.extend(tokens(&m));
            m.close();
        }
        None => out.push(Check::skip(
            "tokens",
            "no module loads, so no token is read",
        )),
    }
    out
}

/// Whether a module other than the one in use can be opened (without initialising it: another
/// module's tokens are not this desk's business, and a module can be initialised once).
fn opens(path: &Path) -> Check {
    match crate::token::open_module(path) {
        Ok(true) => Check::ok("module", format!("{} opens", path.display())),
        Ok(false) => Check::new(
            "module",
            Status::Warn,
            format!(
                "{} is not a PKCS#11 module (no C_GetFunctionList)",
                path.display()
            ),
            "remove its p11-kit registration or reinstall it",
        ),
        Err(e) => Check::new(
            "module",
            Status::Warn,
            format!("{} does not open: {e}", path.display()),
            "reinstall the package it belongs to, or remove its p11-kit registration",
        ),
    }
}

/// pcscd answers, and its readers. A software token needs no pcscd, so then only a warning.
fn pcscd(socket: Option<&Path>, software_only: bool) -> Check {
    let place = match socket {
        Some(s) => format!("at {} (PCSCLITE_CSOCK_NAME)", s.display()),
        None => "at its usual socket".to_string(),
    };
    let down = if software_only {
        Status::Warn
    } else {
        Status::Fail
    };
    let ctx = match pcsc::Context::establish(pcsc::Scope::User) {
        Ok(c) => c,
        Err(e) => {
            return Check::new(
                "pcscd",
                down,
                format!("pcscd does not answer {place}: {e}"),
                "smart cards and USB tokens need it: sudo apt install pcscd, then sudo \
                 systemctl enable --now pcscd.socket",
            )
        }
    };
    let mut buf = vec![0u8; 16 * 1024];
    match ctx.list_readers(&mut buf) {
        Ok(readers) => {
            let names: Vec<String> = readers.map(|r| r.to_string_lossy().into_owned()).collect();
            if names.is_empty() {
                Check::new(
                    "pcscd",
                    Status::Warn,
                    format!("pcscd runs {place} but sees no reader"),
                    "plug in the reader or USB token; if it is plugged in, its driver may be \
                     missing (sudo apt install libccid)",
                )
            } else {
                Check::ok(
                    "pcscd",
                    format!("runs {place}; reader(s): {}", names.join("; ")),
                )
            }
        }
        Err(pcsc::Error::NoReadersAvailable) => Check::new(
            "pcscd",
            Status::Warn,
            format!("pcscd runs {place} but sees no reader"),
            "plug in the reader or USB token; if it is plugged in, its driver may be missing \
             (sudo apt install libccid)",
        ),
        Err(e) => Check::new(
            "pcscd",
            down,
            format!("pcscd {place} does not list its readers: {e}"),
            "restart it: sudo systemctl restart pcscd",
        ),
    }
}

/// One check per token: its PIN, its signing pairs and their certificates.
fn tokens(m: &Module) -> Vec<Check> {
    let tokens = match m.tokens() {
        Ok(t) => t,
        Err(e) => {
            return vec![Check::new(
                "tokens",
                Status::Fail,
                format!("the module does not list its tokens: {e}"),
                "unplug and plug the token in again; restart pcscd if it persists",
            )]
        }
    };
    if tokens.is_empty() {
        return vec![Check::skip(
            "tokens",
            "no token is plugged in (plug one in and run the doctor again to check it)",
        )];
    }
    tokens.iter().map(|t| token(m, t)).collect()
}

fn token(m: &Module, t: &TokenDesc) -> Check {
    let name = format!("token {}", t.display_name());
    let (mut status, pin, mut fix) = pin_state(t);
    let mut parts = vec![pin];
    match m.pairs(t) {
        Ok(pairs) if pairs.is_empty() => {
            status = status.max(Status::Warn);
            parts.push("no signing pair (a private key with its certificate)".into());
            if fix.is_empty() {
                fix = "put a key and its certificate on the token (the issuing CA or helpdesk \
                       does this) before enrolling it"
                    .into();
            }
        }
        Ok(pairs) => {
            for p in &pairs {
                let until = crate::token::fmt_time(&p.cert.tbs_certificate.validity.not_after);
                match &p.validity {
                    Validity::Valid => {
                        parts.push(format!("{} valid until {until}", p.subject()));
                    }
                    Validity::Expired(when) | Validity::NotYetValid(when) => {
                        status = status.max(Status::Warn);
                        parts.push(format!("{}: {when}", p.subject()));
                        if fix.is_empty() {
                            fix = "renew the certificate before enrolling this token".into();
                        }
                    }
                }
            }
        }
        Err(e) => {
            status = status.max(Status::Warn);
            parts.push(format!("its objects could not be read: {e}"));
        }
    }
    Check::new(&name, status, parts.join("; "), &fix)
}

/// What the token's flags say of its user PIN.
fn pin_state(t: &TokenDesc) -> (Status, String, String) {
    let (status, what, fix) = if t.pin_locked {
        (
            Status::Fail,
            "the PIN is locked",
            "unblock it with the token's PUK or SO PIN (ask your helpdesk); no enrollment can \
             use this token until then",
        )
    } else if t.pin_final_try {
        (
            Status::Warn,
            "one more wrong PIN locks it",
            "type the PIN with care, or have the helpdesk reset it first",
        )
    } else if t.pin_to_be_changed {
        (
            Status::Warn,
            "its PIN must be changed before use",
            "change the PIN with the token's own tool (e.g. pkcs11-tool --change-pin)",
        )
    } else if t.pin_count_low {
        (
            Status::Warn,
            "a wrong PIN was typed recently (tries left are low)",
            "type the PIN with care",
        )
    } else {
        (Status::Ok, "PIN not locked", "")
    };
    (status, what.to_string(), fix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_no_module_is_said_so() {
        let c = opens(Path::new("/nonexistent/libnothing.so"));
        assert_eq!(c.status, Status::Warn);
        assert!(
            c.detail.contains("does not open") && !c.fix.is_empty(),
            "{c:?}"
        );
    }
}
