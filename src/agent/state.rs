//! The per-token state machine: the single source of what the tray shows and what the agent does
//! next. Pure: events in, actions out, no I/O — so every rule is unit-tested.
//!
//! absent → present (enrolled / not enrolled) → awaiting PIN → signing → submitting →
//! registered | rejected (code) | failed (reason)

use std::collections::BTreeMap;
use std::fmt;

/// A token is known by label, serial and reader (slot description), never by slot id: a token
/// in another reader that copies a card's label and serial is another token, and never gets
/// that card's PIN.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct TokenKey {
    /// As the station's events and report name it.
    #[serde(rename = "token_label")]
    pub label: String,
    #[serde(rename = "token_serial")]
    pub serial: String,
    pub reader: String,
}

impl TokenKey {
    /// One string per token (the station's lanes and the terminal UI's keys).
    pub fn id(&self) -> String {
        format!("{}\u{1f}{}\u{1f}{}", self.reader, self.label, self.serial)
    }
}

impl fmt::Display for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}' (serial {})", self.label, self.serial)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum EnrollOnInsert {
    /// A notification and the menu item.
    #[default]
    Ask,
    /// The PIN dialog opens at once for a token not yet enrolled.
    Auto,
    Never,
}

impl std::str::FromStr for EnrollOnInsert {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ask" => Ok(Self::Ask),
            "auto" => Ok(Self::Auto),
            "never" => Ok(Self::Never),
            _ => Err(format!(
                "unknown enroll_on_insert '{s}': use ask, auto or never"
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenState {
    /// A token without a signing pair (yet): nothing to enroll.
    NoPair,
    Present {
        enrolled: bool,
    },
    AwaitingPin,
    Signing,
    Submitting,
    Registered,
    Rejected {
        code: i64,
        message: String,
    },
    Failed {
        reason: String,
    },
}

impl TokenState {
    fn busy(&self) -> bool {
        matches!(self, Self::AwaitingPin | Self::Signing | Self::Submitting)
    }

    /// What the tray's status line says for a token in this state.
    pub fn describe(&self) -> String {
        match self {
            Self::NoPair => "no signing certificate".into(),
            Self::Present { enrolled: true } => "enrolled".into(),
            Self::Present { enrolled: false } => "not enrolled".into(),
            Self::AwaitingPin => "waiting for the PIN".into(),
            Self::Signing => "signing".into(),
            Self::Submitting => "registering".into(),
            Self::Registered => "registered".into(),
            Self::Rejected { code, .. } => format!("refused by the server (code {code})"),
            Self::Failed { reason } => format!("failed: {reason}"),
        }
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Inserted {
        key: TokenKey,
        enrolled: bool,
        has_pair: bool,
    },
    Removed {
        key: TokenKey,
    },
    /// The person chose "Enroll this token…" (or the policy did).
    EnrollRequested {
        key: TokenKey,
    },
    PinEntered {
        key: TokenKey,
    },
    PinCancelled {
        key: TokenKey,
    },
    /// A wrong PIN: the dialog may open again with the error; never with the same PIN.
    PinRejected {
        key: TokenKey,
        message: String,
    },
    Signed {
        key: TokenKey,
    },
    Answered {
        key: TokenKey,
        code: i64,
        message: String,
    },
    Failed {
        key: TokenKey,
        reason: String,
    },
}

/// What the agent must do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Notify {
        summary: String,
        body: String,
    },
    /// Open the PIN dialog; `error` is shown when a previous PIN was wrong.
    AskPin {
        key: TokenKey,
        error: Option<String>,
    },
    /// Sign and register with the PIN just entered.
    Enroll {
        key: TokenKey,
    },
    /// Abandon a flow whose token went away.
    Cancel {
        key: TokenKey,
    },
    /// Remember that this token's certificate is registered.
    RememberEnrolled {
        key: TokenKey,
    },
}

/// The one icon for all tokens: the most pressing state wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mood {
    /// No token, or none that can be enrolled.
    #[default]
    Idle,
    /// Everything inserted is enrolled.
    Ok,
    /// A token waits to be enrolled.
    Present,
    /// A refusal or failure the person should look at.
    Error,
    /// Waiting for the PIN, signing or registering.
    Busy,
}

#[derive(Debug, Default)]
pub struct Machine {
    policy: EnrollOnInsert,
    tokens: BTreeMap<TokenKey, TokenState>,
}

fn notify(summary: impl Into<String>, body: impl Into<String>) -> Action {
    Action::Notify {
        summary: summary.into(),
        body: body.into(),
    }
}

impl Machine {
    pub fn new(policy: EnrollOnInsert) -> Self {
        Self {
            policy,
            tokens: BTreeMap::new(),
        }
    }

    pub fn state(&self, key: &TokenKey) -> Option<&TokenState> {
        self.tokens.get(key)
    }

    pub fn tokens(&self) -> impl Iterator<Item = (&TokenKey, &TokenState)> {
        self.tokens.iter()
    }

    /// Can "Enroll this token…" be offered for `key` right now?
    pub fn can_enroll(&self, key: &TokenKey) -> bool {
        matches!(
            self.tokens.get(key),
            Some(
                TokenState::Present { enrolled: false }
                    | TokenState::Rejected { .. }
                    | TokenState::Failed { .. }
            )
        )
    }

    pub fn mood(&self) -> Mood {
        self.tokens
            .values()
            .map(|s| match s {
                TokenState::NoPair => Mood::Idle,
                TokenState::Present { enrolled: true } | TokenState::Registered => Mood::Ok,
                TokenState::Present { enrolled: false } => Mood::Present,
                TokenState::Rejected { .. } | TokenState::Failed { .. } => Mood::Error,
                TokenState::AwaitingPin | TokenState::Signing | TokenState::Submitting => {
                    Mood::Busy
                }
            })
            .max()
            .unwrap_or(Mood::Idle)
    }

    /// One line for the tray: the token, its state (and the user, added by the caller).
    pub fn status_line(&self) -> String {
        match self.tokens.iter().next() {
            None => "No token inserted".into(),
            Some((k, s)) if self.tokens.len() == 1 => format!("{}: {}", k.label, s.describe()),
            Some(_) => format!("{} tokens inserted", self.tokens.len()),
        }
    }

    /// Applies one event; returns what to do. Events for unknown or idle tokens that make no
    /// sense (a late answer after removal, say) change nothing.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::Inserted { key, enrolled, has_pair } => {
                if self.tokens.contains_key(&key) {
                    return vec![];
                }
                if !has_pair {
                    self.tokens.insert(key.clone(), TokenState::NoPair);
                    return vec![notify(
                        format!("Token {} inserted", key.label),
                        "It holds no certificate that can sign, so there is nothing to enroll.",
                    )];
                }
                self.tokens.insert(key.clone(), TokenState::Present { enrolled });
                if enrolled {
                    return vec![notify(format!("Token {} inserted", key.label), "This token is already enrolled.")];
                }
                match self.policy {
                    EnrollOnInsert::Never => vec![],
                    EnrollOnInsert::Ask => vec![notify(
                        format!("Token {} inserted", key.label),
                        format!("It is not enrolled yet: choose \"Enroll token {}…\" in the tokenroll menu.", key.label),
                    )],
                    EnrollOnInsert::Auto => self.handle(Event::EnrollRequested { key }),
                }
            }
            Event::Removed { key } => match self.tokens.remove(&key) {
                Some(s) if s.busy() => vec![
                    Action::Cancel { key: key.clone() },
                    notify(
                        format!("Token {} removed", key.label),
                        "The enrollment was cancelled because the token was removed. Insert it again to retry.",
                    ),
                ],
                _ => vec![],
            },
            Event::EnrollRequested { key } => {
                if !self.can_enroll(&key) {
                    return vec![];
                }
                self.tokens.insert(key.clone(), TokenState::AwaitingPin);
                vec![Action::AskPin { key, error: None }]
            }
            Event::PinEntered { key } => self.step(&key, TokenState::AwaitingPin, TokenState::Signing, Action::Enroll { key: key.clone() }),
            Event::PinCancelled { key } => {
                if self.tokens.get(&key) == Some(&TokenState::AwaitingPin) {
                    self.tokens.insert(key, TokenState::Present { enrolled: false });
                }
                vec![]
            }
            Event::PinRejected { key, message } => {
                // By the token (while signing), or locally before sending (a PIN already refused).
                if !matches!(self.tokens.get(&key), Some(TokenState::Signing | TokenState::AwaitingPin)) {
                    return vec![];
                }
                self.tokens.insert(key.clone(), TokenState::AwaitingPin);
                vec![Action::AskPin { key, error: Some(message) }]
            }
            Event::Signed { key } => {
                if self.tokens.get(&key) == Some(&TokenState::Signing) {
                    self.tokens.insert(key, TokenState::Submitting);
                }
                vec![]
            }
            Event::Answered { key, code, message } => {
                if !matches!(self.tokens.get(&key), Some(TokenState::Signing | TokenState::Submitting)) {
                    return vec![];
                }
                if code == 0 {
                    self.tokens.insert(key.clone(), TokenState::Registered);
                    vec![
                        Action::RememberEnrolled { key: key.clone() },
                        notify(format!("Token {} registered", key.label), message),
                    ]
                } else {
                    self.tokens.insert(key.clone(), TokenState::Rejected { code, message: message.clone() });
                    vec![notify(format!("Token {} not registered", key.label), message)]
                }
            }
            Event::Failed { key, reason } => {
                if !self.tokens.get(&key).is_some_and(TokenState::busy) {
                    return vec![];
                }
                self.tokens.insert(key.clone(), TokenState::Failed { reason: reason.clone() });
                vec![notify(format!("Token {} not registered", key.label), reason)]
            }
        }
    }

    fn step(
        &mut self,
        key: &TokenKey,
        from: TokenState,
        to: TokenState,
        action: Action,
    ) -> Vec<Action> {
        if self.tokens.get(key) != Some(&from) {
            return vec![];
        }
        self.tokens.insert(key.clone(), to);
        vec![action]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey {
            label: "alice".into(),
            serial: "01".into(),
            reader: "r".into(),
        }
    }

    fn notified(actions: &[Action]) -> bool {
        actions.iter().any(|a| matches!(a, Action::Notify { .. }))
    }

    #[test]
    fn ask_policy_offers_then_runs_the_whole_flow() {
        let mut m = Machine::new(EnrollOnInsert::Ask);
        let a = m.handle(Event::Inserted {
            key: key(),
            enrolled: false,
            has_pair: true,
        });
        assert!(notified(&a));
        assert!(m.can_enroll(&key()));
        assert_eq!(m.status_line(), "alice: not enrolled");
        assert_eq!(m.mood(), Mood::Present);
        assert_eq!(
            m.handle(Event::EnrollRequested { key: key() }),
            vec![Action::AskPin {
                key: key(),
                error: None
            }]
        );
        assert_eq!(
            m.handle(Event::PinEntered { key: key() }),
            vec![Action::Enroll { key: key() }]
        );
        assert_eq!(m.state(&key()), Some(&TokenState::Signing));
        m.handle(Event::Signed { key: key() });
        assert_eq!(m.state(&key()), Some(&TokenState::Submitting));
        let a = m.handle(Event::Answered {
            key: key(),
            code: 0,
            message: "registered".into(),
        });
        assert!(a.contains(&Action::RememberEnrolled { key: key() }));
        assert_eq!(m.status_line(), "alice: registered");
        assert_eq!(m.mood(), Mood::Ok);
        assert!(!m.can_enroll(&key()));
    }

    #[test]
    fn auto_policy_asks_for_the_pin_at_once_but_never_for_enrolled_tokens() {
        let mut m = Machine::new(EnrollOnInsert::Auto);
        let a = m.handle(Event::Inserted {
            key: key(),
            enrolled: false,
            has_pair: true,
        });
        assert_eq!(
            a,
            vec![Action::AskPin {
                key: key(),
                error: None
            }]
        );
        let other = TokenKey {
            label: "bob".into(),
            serial: "02".into(),
            reader: "r".into(),
        };
        let a = m.handle(Event::Inserted {
            key: other.clone(),
            enrolled: true,
            has_pair: true,
        });
        assert!(!a.iter().any(|a| matches!(a, Action::AskPin { .. })));
        assert_eq!(
            m.state(&other),
            Some(&TokenState::Present { enrolled: true })
        );
        assert_eq!(m.status_line(), "2 tokens inserted");
    }

    #[test]
    fn a_token_without_a_signing_pair_is_never_enrolled() {
        let mut m = Machine::new(EnrollOnInsert::Auto);
        let a = m.handle(Event::Inserted {
            key: key(),
            enrolled: false,
            has_pair: false,
        });
        assert!(!a.iter().any(|a| matches!(a, Action::AskPin { .. })));
        assert!(!m.can_enroll(&key()));
        assert_eq!(m.status_line(), "alice: no signing certificate");
        assert!(m.handle(Event::EnrollRequested { key: key() }).is_empty());
    }

    #[test]
    fn never_policy_stays_quiet() {
        let mut m = Machine::new(EnrollOnInsert::Never);
        assert!(m
            .handle(Event::Inserted {
                key: key(),
                enrolled: false,
                has_pair: true
            })
            .is_empty());
        assert!(m.can_enroll(&key()), "the menu item still works");
    }

    #[test]
    fn removal_mid_flow_cancels_and_says_so() {
        let mut m = Machine::new(EnrollOnInsert::Auto);
        m.handle(Event::Inserted {
            key: key(),
            enrolled: false,
            has_pair: true,
        });
        m.handle(Event::PinEntered { key: key() });
        let a = m.handle(Event::Removed { key: key() });
        assert!(a.contains(&Action::Cancel { key: key() }));
        assert!(notified(&a));
        assert_eq!(m.state(&key()), None);
        // A late answer for a removed token changes nothing.
        assert!(m
            .handle(Event::Answered {
                key: key(),
                code: 0,
                message: String::new()
            })
            .is_empty());
        assert_eq!(m.status_line(), "No token inserted");
        // Removing an idle token is silent.
        m.handle(Event::Inserted {
            key: key(),
            enrolled: true,
            has_pair: true,
        });
        assert!(m.handle(Event::Removed { key: key() }).is_empty());
    }

    #[test]
    fn wrong_pin_reopens_the_dialog_with_the_error_and_cancel_returns_to_present() {
        let mut m = Machine::new(EnrollOnInsert::Ask);
        m.handle(Event::Inserted {
            key: key(),
            enrolled: false,
            has_pair: true,
        });
        m.handle(Event::EnrollRequested { key: key() });
        m.handle(Event::PinEntered { key: key() });
        let a = m.handle(Event::PinRejected {
            key: key(),
            message: "wrong PIN".into(),
        });
        assert_eq!(
            a,
            vec![Action::AskPin {
                key: key(),
                error: Some("wrong PIN".into())
            }]
        );
        assert!(m.handle(Event::PinCancelled { key: key() }).is_empty());
        assert_eq!(
            m.state(&key()),
            Some(&TokenState::Present { enrolled: false })
        );
    }

    #[test]
    fn refusals_and_failures_can_be_retried() {
        let mut m = Machine::new(EnrollOnInsert::Ask);
        m.handle(Event::Inserted {
            key: key(),
            enrolled: false,
            has_pair: true,
        });
        m.handle(Event::EnrollRequested { key: key() });
        m.handle(Event::PinEntered { key: key() });
        let a = m.handle(Event::Answered {
            key: key(),
            code: 22027,
            message: "already bound".into(),
        });
        assert!(notified(&a));
        assert_eq!(m.status_line(), "alice: refused by the server (code 22027)");
        assert!(m.can_enroll(&key()));
        m.handle(Event::EnrollRequested { key: key() });
        m.handle(Event::PinEntered { key: key() });
        m.handle(Event::Failed {
            key: key(),
            reason: "server unreachable".into(),
        });
        assert_eq!(m.status_line(), "alice: failed: server unreachable");
        // Duplicate events do not restart anything.
        assert!(m.handle(Event::PinEntered { key: key() }).is_empty());
        assert!(m
            .handle(Event::Inserted {
                key: key(),
                enrolled: false,
                has_pair: true
            })
            .is_empty());
    }
}
