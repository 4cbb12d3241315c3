//! A lane's PIN: the `--pin-env` PIN's trial through the run (one token tries it first; once a
//! token refuses it, no further token is given it) and the PIN a token's holder types, never
//! one the token already refused; and the lane's clock of its phases.
//!
//! Owns: those rules. Does not own: asking (the face does) or logging in (see `enroll`).

use super::events::Event;
use super::lane::{Ctx, Job};
use crate::enroll::{PairSummary, PinPrompt};
use crate::secret::Pin;
use crate::token::TokenError;
use crate::ui::dialogs::{Cancel, PinRequest};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// The `--pin-env` PIN through the run: tried by one token at a time until a token accepts it;
/// once a token refuses it, it is gone (the rest wait for a typed PIN).
enum Shared {
    None,
    Untried(Pin),
    /// A lane is trying it now; the others wait for the verdict.
    Trying(Pin),
    Accepted(Pin),
    Refused,
}

pub struct EnvPin {
    state: Mutex<Shared>,
    changed: Condvar,
}

/// A lane's use of the env PIN: whether it is the trial.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    None,
    Trial,
    Known,
}

impl EnvPin {
    pub fn new(pin: Option<Pin>) -> Self {
        Self {
            state: Mutex::new(pin.map_or(Shared::None, Shared::Untried)),
            changed: Condvar::new(),
        }
    }

    /// The PIN for a lane, waiting while another lane tries it; `None` once it was refused.
    pub(super) fn take(&self, cancel: &Cancel) -> Option<(Pin, Use)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match &*s {
                Shared::None | Shared::Refused => return None,
                Shared::Accepted(p) => return Some((p.clone(), Use::Known)),
                Shared::Untried(p) => {
                    let p = p.clone();
                    *s = Shared::Trying(p.clone());
                    return Some((p, Use::Trial));
                }
                Shared::Trying(_) if cancel.is_cancelled() => return None,
                Shared::Trying(_) => {
                    s = self
                        .changed
                        .wait_timeout(s, Duration::from_millis(200))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// The trial's verdict: `Some(true)` accepted, `Some(false)` refused, `None` not tried
    /// after all (the lane ended before the token saw it).
    pub(super) fn settle(&self, verdict: Option<bool>) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Shared::Trying(p) = std::mem::replace(&mut *s, Shared::None) {
            *s = match verdict {
                Some(true) => Shared::Accepted(p),
                Some(false) => {
                    tracing::warn!("a token refused the --pin-env PIN: it is not tried on any further token; their PINs are asked instead");
                    Shared::Refused
                }
                None => Shared::Untried(p),
            };
        }
        self.changed.notify_all();
    }

    pub(super) fn refused(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s = Shared::Refused;
        self.changed.notify_all();
    }
}

/// Time spent in each phase, for the summary's slowest phase.
#[derive(Default)]
pub(super) struct Clock {
    phase: Option<(&'static str, Instant)>,
    pub(super) spent: Vec<(&'static str, Duration)>,
}

impl Clock {
    pub(super) fn enter(&mut self, phase: &'static str) {
        self.leave();
        self.phase = Some((phase, Instant::now()));
    }

    pub(super) fn leave(&mut self) {
        if let Some((p, t)) = self.phase.take() {
            self.spent.push((p, t.elapsed()));
        }
    }
}

/// The lane's PIN: the `--pin-env` PIN while it is good, else typed by the token's holder —
/// never one the token already refused.
pub(super) struct LanePin<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) job: &'a Job,
    pub(super) user: &'a str,
    pub(super) error: Option<String>,
    pub(super) refused: &'a [[u8; 32]],
    /// The lane's salt for `refused`.
    pub(super) salt: &'a [u8; 32],
    pub(super) used: Use,
    pub(super) tried: Option<[u8; 32]>,
    /// The env PIN's trial, as the lane judged it: settled when the prompt is dropped (also
    /// when the lane panics: then as not tried, so other lanes do not wait for ever).
    pub(super) verdict: Option<bool>,
    pub(super) clock: &'a Mutex<Clock>,
}

impl PinPrompt for LanePin<'_> {
    fn pin(&mut self, pair: &PairSummary) -> Result<Pin, TokenError> {
        let (job, ctx) = (self.job, self.ctx);
        ctx.face.event(&Event::WaitingPin {
            time: super::events::now(),
            token: job.name(),
            username: self.user.to_string(),
        });
        lock(self.clock).enter("waiting_pin");
        if job.cancel.is_cancelled() {
            return Err(TokenError::PinCancelled);
        }
        // The shared PIN, but never for a token close to locking, nor one that refused it.
        let close_to_locking = pair.pin_final_try || pair.pin_count_low;
        let env = match (!close_to_locking)
            .then(|| ctx.env_pin.take(&job.cancel))
            .flatten()
        {
            Some((p, used)) if self.refused.contains(&p.salted_hash(self.salt)) => {
                if used == Use::Trial {
                    ctx.env_pin.settle(None);
                }
                None
            }
            other => other,
        };
        let pin = match env {
            Some((p, used)) => {
                self.used = used;
                p
            }
            None => {
                let warning = if pair.pin_final_try {
                    Some("FINAL TRY: one more wrong PIN locks this token.".to_string())
                } else if pair.pin_count_low {
                    Some("Few tries left: the PIN was entered wrongly before.".to_string())
                } else {
                    None
                };
                let mut error = self.error.take();
                loop {
                    let req = PinRequest {
                        token: job.key.label.clone(),
                        serial: job.key.serial.clone(),
                        subject: pair.subject.clone(),
                        user: self.user.to_string(),
                        purpose: format!("for {} with CENTAGATE.", self.user),
                        error: error.take(),
                        warning: warning.clone(),
                    };
                    match ctx.face.pin(&req, &job.cancel) {
                        // Asked again: a PIN this token refused is never sent to it again.
                        Ok(Some(p)) if self.refused.contains(&p.salted_hash(self.salt)) => {
                            error = Some(
                                "That PIN was already refused by this token; it was not sent \
                                 again. Type another."
                                    .into(),
                            );
                        }
                        Ok(Some(p)) => break p,
                        Ok(None) => return Err(TokenError::PinCancelled),
                        Err(e) => return Err(TokenError::PinSource(e)),
                    }
                }
            }
        };
        self.tried = Some(pin.salted_hash(self.salt));
        lock(self.clock).enter("signing");
        ctx.face.event(&Event::Signing {
            time: super::events::now(),
            token: job.name(),
            username: self.user.to_string(),
        });
        Ok(pin)
    }
}

impl Drop for LanePin<'_> {
    fn drop(&mut self) {
        if self.used == Use::Trial {
            self.ctx.env_pin.settle(self.verdict);
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_pin_is_tried_by_one_token_and_never_again_once_refused() {
        let env = EnvPin::new(Some(Pin::new("123456".into())));
        let cancel = Cancel::default();
        let (_, first) = env.take(&cancel).unwrap();
        assert!(first == Use::Trial);
        // While the trial runs, another lane waits; a withdrawn one gives up.
        let gone = Cancel::default();
        gone.cancel();
        assert!(env.take(&gone).is_none());
        env.settle(Some(false));
        assert!(
            env.take(&cancel).is_none(),
            "refused: no further token gets it"
        );

        let env = EnvPin::new(Some(Pin::new("123456".into())));
        let _ = env.take(&cancel).unwrap();
        env.settle(None);
        assert!(
            env.take(&cancel).unwrap().1 == Use::Trial,
            "not tried after all: tried again"
        );
        env.settle(Some(true));
        assert!(env.take(&cancel).unwrap().1 == Use::Known);
        env.refused();
        assert!(env.take(&cancel).is_none());
        assert!(EnvPin::new(None).take(&cancel).is_none());
    }
}
