//! The agent's blocking work: the dialogs before an enrollment, and the enrollment itself through
//! the one flow (`enroll::run`). Each job carries everything it needs and reports back with the
//! generation of the request it served, so the event loop — the one owner of per-token state —
//! can drop an answer to a request it withdrew.
//!
//! Owns: what a worker does. Does not own: any state that outlives a job (see the parent module).

use super::backend::{Backend, Destination};
use super::state::TokenKey;
use super::watcher::PairRef;
use super::Shared;
use crate::enroll::{
    self, EnrollError, PairSummary, PinPrompt, Pkcs11Side, Plan, Registration, RelayPlan, Request,
    Step, UserFrom, UserPolicy,
};
use crate::secret::Pin;
use crate::token::uri::Pkcs11Uri;
use crate::token::{Selector, TokenError};
use crate::ui::dialogs::{Cancel, PinRequest};
use tokio::sync::mpsc::UnboundedSender;

/// What a worker tells the event loop. `generation` names the request it served.
pub enum Report {
    /// The dialogs ended.
    Asked {
        key: TokenKey,
        generation: u64,
        answer: Asked,
    },
    /// The PKCS#7 is made (the tray says "registering").
    Signed { key: TokenKey, generation: u64 },
    /// The enrollment ended.
    Enrolled {
        key: TokenKey,
        generation: u64,
        outcome: Enrolled,
    },
}

pub enum Asked {
    /// `pin` is `None` for a PIN pad; `user` is what the person typed (with `user_from = ask`).
    Entered {
        pin: Option<Pin>,
        user: Option<String>,
    },
    Cancelled,
    Failed(String),
}

pub enum Enrolled {
    /// The server's answer; `certificate` (SHA-256 and user) when it registered.
    Answered {
        code: i64,
        message: String,
        certificate: Option<(String, String)>,
    },
    /// The token refused the PIN.
    PinRejected(String),
    Failed(String),
}

/// The token as a job needs it: its key, pairs and the pair the person chose.
#[derive(Clone)]
pub struct Target {
    pub key: TokenKey,
    pub generation: u64,
    pub pairs: Vec<PairRef>,
    pub chosen: Option<String>,
    pub pin_pad: bool,
    /// What the person typed as the username earlier, for this insertion.
    pub asked_user: Option<String>,
}

impl Target {
    fn pair(&self) -> Option<&PairRef> {
        self.pairs
            .iter()
            .find(|p| Some(&p.uri) == self.chosen.as_ref())
            .or(self.pairs.first())
    }
}

/// The dialogs before an enrollment: the username when the person is asked for it, then the PIN
/// (unless the reader has a PIN pad), warning when the token is close to locking.
pub fn ask(s: &Shared, t: &Target, error: Option<String>, cancel: &Cancel) -> Asked {
    let key = &t.key;
    let subject = t.pair().map(|p| p.subject.clone()).unwrap_or_default();
    let mut typed = None;
    let user = match (s.cfg.destination.user(), &t.asked_user) {
        (UserFrom::Ask, Some(u)) => u.clone(),
        (UserFrom::Ask, None) => match s.dialog.ask_user(&key.label, &subject, cancel) {
            Ok(Some(u)) => {
                typed = Some(u.clone());
                u
            }
            Ok(None) => return Asked::Cancelled,
            Err(message) => return Asked::Failed(format!("the username dialog failed: {message}")),
        },
        (from, _) => from.describe(),
    };
    if t.pin_pad {
        // The reader asks for the PIN itself when the core logs in.
        s.notifier.notify(
            &format!("Token {}", key.label),
            "Enter your PIN on the reader's PIN pad.",
        );
        return Asked::Entered {
            pin: None,
            user: typed,
        };
    }
    // The token's counter flags now (they change with every wrong PIN).
    let token_label = t
        .pair()
        .and_then(|p| Pkcs11Uri::parse(&p.uri).ok())
        .and_then(|u| u.token);
    let state = s.module.lock().ok().and_then(|m| m.clone()).and_then(|m| {
        let tokens = m.tokens().ok()?;
        tokens
            .iter()
            .filter(|d| d.serial == key.serial && d.slot_description == key.reader)
            .find(|d| token_label.is_none() || token_label.as_ref() == Some(&d.label))
            .cloned()
    });
    if state.as_ref().is_some_and(|d| d.pin_locked) {
        return Asked::Failed(TokenError::PinLocked.to_string());
    }
    let warning = state.and_then(|d| {
        if d.pin_final_try {
            Some("FINAL TRY: one more wrong PIN locks this token.".to_string())
        } else if d.pin_count_low {
            Some("Few tries left: the PIN was entered wrongly before.".to_string())
        } else {
            None
        }
    });
    let req = PinRequest {
        token: key.label.clone(),
        serial: key.serial.clone(),
        subject,
        purpose: s.cfg.destination.purpose(&user),
        user,
        error,
        warning,
    };
    match s.dialog.ask(&req, cancel) {
        Ok(Some(pin)) => Asked::Entered {
            pin: Some(pin),
            user: typed,
        },
        Ok(None) => Asked::Cancelled,
        // Failed, with the reason (the machine tells the person): not a cancel, and not stuck.
        Err(message) => Asked::Failed(format!("the PIN dialog failed: {message}")),
    }
}

/// The one PIN a dialog gave, handed to the core exactly once — unless its request was
/// withdrawn meanwhile (the token left): then it is dropped unused.
struct GivenPin<'c>(Option<Pin>, &'c Cancel);

impl PinPrompt for GivenPin<'_> {
    fn pin(&mut self, _: &PairSummary) -> Result<Pin, TokenError> {
        let pin = self.0.take();
        if self.1.is_cancelled() {
            return Err(TokenError::PinCancelled);
        }
        pin.ok_or(TokenError::PinCancelled)
    }
}

/// One enrollment through the core, on the watcher's module.
pub fn enroll(
    s: &Shared,
    t: &Target,
    pin: Option<Pin>,
    withdrawn: &Cancel,
    rt: &tokio::runtime::Handle,
    reports: &UnboundedSender<Report>,
) -> Enrolled {
    let key = &t.key;
    let Some(module) = s.module.lock().ok().and_then(|m| m.clone()) else {
        return Enrolled::Failed("the PKCS#11 module is not loaded".into());
    };
    // The pair: the one chosen in the menu, else the token's only usable one, else whichever
    // --key names on this card (a card may span several tokens: match it by serial).
    let only = (t.pairs.len() == 1 && s.cfg.key.is_none()).then(|| t.pairs[0].uri.clone());
    let uri = match t.chosen.clone().or(only).map(|u| Pkcs11Uri::parse(&u)) {
        Some(Ok(u)) => u,
        Some(Err(e)) => return Enrolled::Failed(e.to_string()),
        None => Pkcs11Uri {
            serial: Some(key.serial.clone()),
            ..s.cfg.key.clone().unwrap_or_default()
        },
    };
    let mut side = Pkcs11Side::with_module(
        module,
        Selector {
            token_label: None,
            uri: Some(uri),
            // The card the person was asked about, in its reader: never a copy in another.
            reader: Some(key.reader.clone()),
            ..Default::default()
        },
    );
    let mut on = |step: Step| match step {
        Step::Signed { .. } => {
            let _ = reports.send(Report::Signed {
                key: key.clone(),
                generation: t.generation,
            });
        }
        Step::Retrying { after, reason } => {
            tracing::warn!(token = %key.label, %reason, retry_in = ?after, "no answer; retrying with the same signature");
        }
        Step::ClockSkew { offset_ms } => {
            tracing::warn!(
                offset_ms,
                "this computer's clock is off; the timestamp follows the server's clock"
            );
        }
        _ => {}
    };
    let user = UserPolicy {
        from: s.cfg.destination.user(),
        asked: t.asked_user.as_deref(),
        must_match: s.cfg.destination.user_must_match(),
    };
    let mut prompt = GivenPin(pin, withdrawn);
    let result = match (&s.backend, &s.cfg.destination) {
        (Backend::Server { client, session }, Destination::Server(reg)) => {
            let registration = Registration::new(reg, client.origin(), Some(&s.journal));
            let request = Request {
                digest: s.cfg.algorithm,
                challenge: &s.cfg.challenge,
                http: &s.cfg.http,
            };
            let plan = Plan::Register {
                registrar: session.as_ref(),
                registration: &registration,
                user,
            };
            rt.block_on(enroll::run(&mut side, &mut prompt, &request, plan, &mut on))
        }
        (Backend::Relay(relay), Destination::Relay(r)) => {
            let plan = RelayPlan {
                user,
                digest: s.cfg.algorithm,
                journal: Some(&s.journal),
                retries: r.retries,
            };
            rt.block_on(enroll::run_relay(
                &mut side,
                &mut prompt,
                relay,
                &plan,
                &mut on,
            ))
        }
        _ => unreachable!("the backend is opened from the destination"),
    };
    match result {
        Ok(done) => {
            let report = done.report.expect("a registration plan reports");
            let user = report.user.clone().unwrap_or_default();
            // Registered also when settled after a lost answer, or already bound to this very
            // certificate (22027), or replayed by the relay (no code then).
            let registered = report.outcome == enroll::OutcomeKind::Registered;
            Enrolled::Answered {
                code: report.code.unwrap_or(-1),
                message: if registered {
                    format!("Registered to {user} with CENTAGATE.")
                } else {
                    report.message
                },
                certificate: registered
                    .then(|| report.certificate.map(|c| (c.sha256, user)))
                    .flatten(),
            }
        }
        Err(f) => match f.error {
            EnrollError::Token(e @ TokenError::PinIncorrect { .. }) => {
                Enrolled::PinRejected(e.to_string())
            }
            e => Enrolled::Failed(e.to_string()),
        },
    }
}

/// What a caught panic said, for the person.
pub fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no reason given".into())
}
