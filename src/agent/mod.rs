//! The desktop agent: a token watcher, an enrollment worker and the UI, joined by channels, with
//! one state machine per token deciding what the tray shows and what happens next.
//!
//! Owns: the wiring, the per-token state machine, who the registered user is, and the record of
//! what was enrolled. Does not own: any enrollment step (it drives `enroll`), PKCS#11 (see `token`,
//! reached through the watcher's shared module), or drawing and dialogs (see `ui`).

pub mod hotplug;
pub mod registry;
pub mod state;
pub mod watcher;

use crate::api::{CentagateClient, HttpOptions};
use crate::challenge::ChallengeSource;
use crate::config::RegisterOptions;
use crate::digest::DigestAlg;
use crate::enroll::{
    self, EnrollError, PairSummary, PinPrompt, Pkcs11Side, Plan, Registration, Request, Step,
    UserFrom, UserPolicy,
};
use crate::secret::Pin;
use crate::token::uri::Pkcs11Uri;
use crate::token::{Selector, TokenError};
use crate::ui::dialogs::{Notifier, PinDialog, PinRequest};
use state::{Action, EnrollOnInsert, Event, Machine, TokenKey};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

pub struct AgentConfig {
    pub module: Option<PathBuf>,
    /// Narrows which pair of a token is used (from --key).
    pub key: Option<Pkcs11Uri>,
    pub algorithm: DigestAlg,
    pub challenge: ChallengeSource,
    pub http: HttpOptions,
    pub register: RegisterOptions,
    pub policy: EnrollOnInsert,
    pub poll: Duration,
    pub state_dir: PathBuf,
}

/// The one PIN a dialog gave, handed to the core exactly once.
struct GivenPin(Option<Pin>);

impl PinPrompt for GivenPin {
    fn pin(&mut self, _: &PairSummary) -> Result<Pin, TokenError> {
        self.0.take().ok_or(TokenError::PinCancelled)
    }
}

/// What the agent knows about a token beyond its state: for dialogs and the registry.
#[derive(Clone, Debug, Default)]
struct TokenInfo {
    pairs: Vec<watcher::PairRef>,
    pin_pad: bool,
}

struct Shared {
    cfg: AgentConfig,
    module: watcher::SharedModule,
    client: CentagateClient,
    dialog: Box<dyn PinDialog>,
    notifier: Box<dyn Notifier>,
    pins: Mutex<HashMap<TokenKey, Pin>>,
    /// Hashes (salted per process) of PINs a token refused: such a PIN is never sent again.
    wrong_pins: Mutex<HashMap<TokenKey, Vec<[u8; 32]>>>,
    salt: [u8; 32],
    /// The pair a person chose for a token with several.
    chosen: Mutex<HashMap<TokenKey, String>>,
    /// The certificate each token was last enrolled with, for the registry.
    enrolled_cert: Mutex<HashMap<TokenKey, (String, String)>>,
    /// The username the person typed for each token (with `user_from = ask`), until it leaves.
    asked_users: Mutex<HashMap<TokenKey, String>>,
    journal: crate::journal::Journal,
}

impl Shared {
    fn pin_hash(&self, pin: &Pin) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.salt);
        h.update(pin.expose().as_bytes());
        h.finalize().into()
    }
}

/// "Enroll" from the menu: a token, and the pair chosen when it holds several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrollRequest {
    pub key: TokenKey,
    pub uri: Option<String>,
}

/// The agent's view for the tray: a status line, the icon, and what the menu may offer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub status: String,
    pub icon: state::Mood,
    /// Tokens that can be enrolled, each with its usable pairs (a choice when more than one).
    pub enrollable: Vec<(TokenKey, Vec<watcher::PairRef>)>,
}

/// Runs the agent until `stop` resolves. `view` receives every change of what the tray shows.
pub async fn run(
    cfg: AgentConfig,
    dialog: Box<dyn PinDialog>,
    notifier: Box<dyn Notifier>,
    mut requests: mpsc::UnboundedReceiver<EnrollRequest>,
    view: tokio::sync::watch::Sender<View>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let client =
        CentagateClient::new(&cfg.register.server, cfg.http.clone()).map_err(|e| e.to_string())?;
    let mut registry = registry::Registry::open(&cfg.state_dir).map_err(|e| e.to_string())?;
    let journal =
        crate::journal::Journal::open(&cfg.register.journal).map_err(|e| e.to_string())?;
    let mut salt = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    let module: watcher::SharedModule = Arc::new(Mutex::new(None));
    let (change_tx, mut changes) = mpsc::unbounded_channel();
    let stopper = hotplug::Stopper::new().map_err(|e| e.to_string())?;
    let w = watcher::Watcher {
        module_path: cfg.module.clone(),
        interval: cfg.poll,
        shared: module.clone(),
        stopper: stopper.clone(),
    };
    let watcher_thread = std::thread::Builder::new()
        .name("token-watcher".into())
        .spawn(move || w.run(change_tx))
        .map_err(|e| e.to_string())?;
    let mut machine = Machine::new(cfg.policy);
    let shared = Arc::new(Shared {
        cfg,
        module,
        client,
        dialog,
        notifier,
        pins: Mutex::new(HashMap::new()),
        wrong_pins: Mutex::new(HashMap::new()),
        salt,
        chosen: Mutex::new(HashMap::new()),
        enrolled_cert: Mutex::new(HashMap::new()),
        asked_users: Mutex::new(HashMap::new()),
        journal,
    });
    let mut infos: HashMap<TokenKey, TokenInfo> = HashMap::new();
    let (event_tx, mut events) = mpsc::unbounded_channel::<Event>();
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            Some(change) = changes.recv() => match change {
                watcher::Change::Inserted(seen) => {
                    let enrolled = registry.contains_any(&seen.certificates);
                    let has_pair = !seen.pairs.is_empty();
                    infos.insert(seen.key.clone(), TokenInfo { pairs: seen.pairs, pin_pad: seen.pin_pad });
                    Event::Inserted { key: seen.key, enrolled, has_pair }
                }
                watcher::Change::Removed(key) => {
                    infos.remove(&key);
                    shared.pins.lock().expect("pins").remove(&key);
                    shared.asked_users.lock().expect("users").remove(&key);
                    Event::Removed { key }
                }
                watcher::Change::Trouble(message) => {
                    shared.notifier.notify("tokenroll cannot read tokens", &message);
                    continue;
                }
            },
            Some(request) = requests.recv() => {
                let EnrollRequest { key, uri } = request;
                let mut chosen = shared.chosen.lock().expect("chosen");
                match uri {
                    Some(u) => chosen.insert(key.clone(), u),
                    None => chosen.remove(&key),
                };
                Event::EnrollRequested { key }
            }
            Some(event) = events.recv() => event,
        };
        tracing::debug!(?event, "agent event");
        for action in machine.handle(event) {
            execute(&shared, &infos, &mut registry, action, &event_tx);
        }
        let enrollable = machine
            .tokens()
            .filter(|(k, _)| machine.can_enroll(k))
            .map(|(k, _)| {
                (
                    k.clone(),
                    infos.get(k).map(|i| i.pairs.clone()).unwrap_or_default(),
                )
            })
            .collect();
        view.send_replace(View {
            status: machine.status_line(),
            icon: machine.mood(),
            enrollable,
        });
    }
    // No PKCS#11 or PC/SC call may still run while the process exits: end the watcher first
    // (bounded, in case a module hangs in a call).
    stopper.stop();
    let joined = tokio::task::spawn_blocking(move || watcher_thread.join());
    if tokio::time::timeout(Duration::from_secs(5), joined)
        .await
        .is_err()
    {
        tracing::warn!("the token watcher did not stop within 5 s");
    }
    Ok(())
}

fn execute(
    shared: &Arc<Shared>,
    infos: &HashMap<TokenKey, TokenInfo>,
    registry: &mut registry::Registry,
    action: Action,
    events: &mpsc::UnboundedSender<Event>,
) {
    match action {
        Action::Notify { summary, body } => {
            let s = shared.clone();
            tokio::task::spawn_blocking(move || s.notifier.notify(&summary, &body));
        }
        Action::AskPin { key, error } => {
            let info = infos.get(&key).cloned().unwrap_or_default();
            let s = shared.clone();
            let events = events.clone();
            tokio::task::spawn_blocking(move || {
                // A dialog that panics (a bug in it, or in a crate under it) ends this token's
                // flow as failed, with the reason: never a token stuck "waiting for the PIN".
                let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    ask_pin(&s, key.clone(), &info, error)
                }));
                let event = asked.unwrap_or_else(|panic| Event::Failed {
                    key,
                    reason: format!(
                        "the PIN dialog failed unexpectedly ({}); enroll again from the menu",
                        panic_text(&*panic)
                    ),
                });
                let _ = events.send(event);
            });
        }
        Action::Enroll { key } => {
            let s = shared.clone();
            let events = events.clone();
            let handle = tokio::runtime::Handle::current();
            let pairs = infos.get(&key).map(|i| i.pairs.clone()).unwrap_or_default();
            tokio::task::spawn_blocking(move || {
                let outcome = enroll_token(&s, &key, &pairs, &handle, &events);
                let _ = events.send(outcome);
            });
        }
        Action::Cancel { key } => {
            // The worker's next token call fails on the removed token; its late answer is ignored.
            shared.pins.lock().expect("pins").remove(&key);
        }
        Action::RememberEnrolled { key } => {
            let Some((cert, user)) = shared.enrolled_cert.lock().expect("certs").remove(&key)
            else {
                return;
            };
            let entry = registry::Entry {
                user,
                token: key.label.clone(),
                registered_at: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            };
            if let Err(e) = registry.add(cert, entry) {
                tracing::warn!(error = %e, "cannot record the enrollment");
            }
        }
    }
}

/// The dialogs before an enrollment: the username when the person is asked for it, then the PIN
/// (unless the reader has a PIN pad), warning when the token is close to locking. Returns the
/// event that follows.
fn ask_pin(s: &Shared, key: TokenKey, info: &TokenInfo, error: Option<String>) -> Event {
    let chosen = s.chosen.lock().expect("chosen").get(&key).cloned();
    let pair = info
        .pairs
        .iter()
        .find(|p| Some(&p.uri) == chosen.as_ref())
        .or(info.pairs.first());
    let subject = pair.map(|p| p.subject.clone()).unwrap_or_default();
    let user = if s.cfg.register.user == UserFrom::Ask {
        let known = s.asked_users.lock().expect("users").get(&key).cloned();
        match known {
            Some(u) => u,
            None => match s.dialog.ask_user(&key.label, &subject) {
                Ok(Some(u)) => {
                    s.asked_users
                        .lock()
                        .expect("users")
                        .insert(key.clone(), u.clone());
                    u
                }
                Ok(None) => return Event::PinCancelled { key },
                Err(message) => {
                    return Event::Failed {
                        key,
                        reason: format!("the username dialog failed: {message}"),
                    }
                }
            },
        }
    } else {
        s.cfg.register.user.describe()
    };
    if info.pin_pad {
        // The reader asks for the PIN itself when the core logs in.
        s.notifier.notify(
            &format!("Token {}", key.label),
            "Enter your PIN on the reader's PIN pad.",
        );
        return Event::PinEntered { key };
    }
    // The token's counter flags now (they change with every wrong PIN).
    let token_label = pair
        .and_then(|p| Pkcs11Uri::parse(&p.uri).ok())
        .and_then(|u| u.token);
    let state = s.module.lock().expect("module").clone().and_then(|m| {
        let tokens = m.tokens().ok()?;
        tokens
            .iter()
            .filter(|t| t.serial == key.serial && t.slot_description == key.reader)
            .find(|t| token_label.is_none() || token_label.as_ref() == Some(&t.label))
            .cloned()
    });
    if state.as_ref().is_some_and(|t| t.pin_locked) {
        return Event::Failed {
            key,
            reason: TokenError::PinLocked.to_string(),
        };
    }
    let warning = state.and_then(|t| {
        if t.pin_final_try {
            Some("FINAL TRY: one more wrong PIN locks this token.".to_string())
        } else if t.pin_count_low {
            Some("Few tries left: the PIN was entered wrongly before.".to_string())
        } else {
            None
        }
    });
    let req = PinRequest {
        token: key.label.clone(),
        serial: key.serial.clone(),
        subject,
        user,
        error,
        warning,
    };
    match s.dialog.ask(&req) {
        Ok(Some(pin)) => {
            let hash = s.pin_hash(&pin);
            let known_wrong = s
                .wrong_pins
                .lock()
                .expect("wrong pins")
                .get(&key)
                .is_some_and(|v| v.contains(&hash));
            if known_wrong {
                // Never send a PIN the token already refused: ask again instead.
                Event::PinRejected {
                    key,
                    message: "That PIN was already refused by the token; it was not sent again."
                        .into(),
                }
            } else {
                s.pins.lock().expect("pins").insert(key.clone(), pin);
                Event::PinEntered { key }
            }
        }
        Ok(None) => Event::PinCancelled { key },
        // Failed, with the reason (the machine tells the person): not a cancel, and not stuck.
        Err(message) => Event::Failed {
            key,
            reason: format!("the PIN dialog failed: {message}"),
        },
    }
}

/// One enrollment through the core, on the watcher's module. Returns the closing event.
fn enroll_token(
    s: &Shared,
    key: &TokenKey,
    pairs: &[watcher::PairRef],
    rt: &tokio::runtime::Handle,
    events: &mpsc::UnboundedSender<Event>,
) -> Event {
    let failed = |reason: String| Event::Failed {
        key: key.clone(),
        reason,
    };
    // None for a PIN-pad token: the core then logs in through the reader.
    let pin = s.pins.lock().expect("pins").remove(key);
    let hash = pin.as_ref().map(|p| s.pin_hash(p));
    let Some(module) = s.module.lock().expect("module").clone() else {
        return failed("the PKCS#11 module is not loaded".into());
    };
    // The pair: the one chosen in the menu, else the token's only usable one, else whichever
    // --key names on this card (a card may span several tokens: match it by serial).
    let chosen = s.chosen.lock().expect("chosen").get(key).cloned();
    let only = (pairs.len() == 1 && s.cfg.key.is_none()).then(|| pairs[0].uri.clone());
    let uri = match chosen.or(only).map(|u| Pkcs11Uri::parse(&u)) {
        Some(Ok(u)) => u,
        Some(Err(e)) => return failed(e.to_string()),
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
        },
    );
    let asked = s.asked_users.lock().expect("users").get(key).cloned();
    let mut on = |step: Step| match step {
        Step::Signed { .. } => {
            let _ = events.send(Event::Signed { key: key.clone() });
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
    let registration = Registration::new(&s.cfg.register, s.client.origin(), Some(&s.journal));
    let request = Request {
        digest: s.cfg.algorithm,
        challenge: &s.cfg.challenge,
        http: &s.cfg.http,
    };
    let plan = Plan::Register {
        registrar: &s.client,
        registration: &registration,
        user: UserPolicy {
            from: &s.cfg.register.user,
            asked: asked.as_deref(),
            must_match: s.cfg.register.user_must_match,
        },
    };
    let result = rt.block_on(enroll::run(
        &mut side,
        &mut GivenPin(pin),
        &request,
        plan,
        &mut on,
    ));
    match result {
        Ok(done) => {
            let report = done.report.expect("a registration plan reports");
            let user = report.user.clone().unwrap_or_default();
            if let Some(c) = &report.certificate {
                s.enrolled_cert
                    .lock()
                    .expect("certs")
                    .insert(key.clone(), (c.sha256.clone(), user.clone()));
            }
            let message = if report.code == Some(0) {
                format!("Registered to {user} with CENTAGATE.")
            } else {
                report.message
            };
            Event::Answered {
                key: key.clone(),
                code: report.code.unwrap_or(-1),
                message,
            }
        }
        Err(f) => match f.error {
            EnrollError::Token(e @ TokenError::PinIncorrect { .. }) => {
                s.wrong_pins
                    .lock()
                    .expect("wrong pins")
                    .entry(key.clone())
                    .or_default()
                    .extend(hash);
                Event::PinRejected {
                    key: key.clone(),
                    message: e.to_string(),
                }
            }
            e => failed(e.to_string()),
        },
    }
}

/// What a caught panic said, for the person.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "no reason given".into())
}
