//! The desktop agent: a token watcher, blocking workers (dialogs, enrollments) and the UI,
//! joined by channels, with one state machine per token deciding what the tray shows and what
//! happens next.
//!
//! Owns: the wiring, and — in the event loop alone — every piece of per-token state (the
//! machine's, and each token's [`Record`]); workers get what a step needs in their job and
//! answer with the generation of the request they served, so what they share is immutable (but
//! for the watcher's module slot, which the watcher alone replaces). It
//! tracks every worker and joins them, and the watcher, at exit. Does not own: any enrollment
//! step (see `work`, which drives `enroll`), PKCS#11 (see `token`, reached through the watcher's
//! shared module), or drawing and dialogs (see `ui`).

pub mod backend;
pub mod hotplug;
pub mod registry;
pub mod state;
pub mod watcher;
mod work;
pub use work::panic_text;

use crate::api::HttpOptions;
use crate::challenge::ChallengeSource;
use crate::digest::DigestAlg;
use crate::secret::Pin;
use crate::token::uri::Pkcs11Uri;
use crate::ui::dialogs::{Cancel, Notifier, PinDialog};
use backend::{Backend, Destination};
use state::{Action, EnrollOnInsert, Event, Machine, TokenKey};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use work::{Asked, Enrolled, Report, Target};

pub struct AgentConfig {
    pub module: Option<PathBuf>,
    /// Narrows which pair of a token is used (from --key).
    pub key: Option<Pkcs11Uri>,
    pub algorithm: DigestAlg,
    pub challenge: ChallengeSource,
    pub http: HttpOptions,
    /// A CENTAGATE server (with the admin's session here) or the relay.
    pub destination: Destination,
    pub policy: EnrollOnInsert,
    pub poll: Duration,
    pub state_dir: PathBuf,
}

/// What workers share: set at start, never changed.
struct Shared {
    cfg: AgentConfig,
    module: watcher::SharedModule,
    /// The server and the admin's session, or the relay, for the agent's life.
    backend: Backend,
    dialog: Arc<dyn PinDialog>,
    notifier: Box<dyn Notifier>,
    journal: crate::journal::Journal,
}

/// Everything the agent knows about one present token besides the machine's state. Only the
/// event loop holds these; a token's record goes when the token does.
#[derive(Default)]
struct Record {
    pairs: Vec<watcher::PairRef>,
    pin_pad: bool,
    /// The pair the person chose for a token with several.
    chosen: Option<String>,
    /// The username the person typed (with `user_from = ask`), for this insertion.
    asked_user: Option<String>,
    /// Hashes (salted per process) of PINs the token refused: such a PIN is never sent again.
    wrong_pins: Vec<[u8; 32]>,
    /// The PIN of the current request, from its dialog to its enrollment worker.
    pin: Option<Pin>,
    /// The hash of the PIN the current request tried, to remember it if the token refuses it.
    tried: Option<[u8; 32]>,
    /// The current request; an answer to any other is dropped.
    generation: u64,
    /// Withdraws the current request — its dialog (and pinentry process) and its enrollment,
    /// which then never uses the PIN — when the token leaves or a new request replaces it.
    request: Option<Arc<Cancel>>,
    /// The certificate (SHA-256) and user of a registration, until the registry has them.
    registered: Option<(String, String)>,
}

impl Record {
    fn target(&self, key: &TokenKey) -> Target {
        Target {
            key: key.clone(),
            generation: self.generation,
            pairs: self.pairs.clone(),
            chosen: self.chosen.clone(),
            pin_pad: self.pin_pad,
            asked_user: self.asked_user.clone(),
        }
    }

    /// Withdraws the current request: its dialog ends, its PIN is dropped (zeroized).
    fn withdraw(&mut self) {
        if let Some(c) = self.request.take() {
            c.cancel();
        }
        self.pin = None;
        self.tried = None;
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

/// The event loop's own state: the machine, the records, and the workers it must join.
struct Owner {
    shared: Arc<Shared>,
    machine: Machine,
    records: HashMap<TokenKey, Record>,
    registry: registry::Registry,
    salt: [u8; 32],
    next_generation: u64,
    workers: tokio::task::JoinSet<()>,
    reports: mpsc::UnboundedSender<Report>,
    /// Cancelled at exit: closes an admin login's dialog (password, admin token PIN).
    quit: Arc<Cancel>,
}

/// The session's questions, put to the person in the agent's dialog; `quit` closes an open one
/// when the agent ends.
struct DialogAsk {
    dialog: Arc<dyn PinDialog>,
    quit: Arc<Cancel>,
}

impl crate::enroll::AskAdmin for DialogAsk {
    fn password(&self, admin: &str) -> Result<Option<crate::secret::AdminPassword>, String> {
        self.dialog.ask_password(admin, &self.quit)
    }

    fn token_pin(
        &self,
        admin: &str,
        token: &str,
        note: Option<&str>,
    ) -> Result<Option<crate::secret::Pin>, String> {
        self.dialog.ask_admin_pin(admin, token, note, &self.quit)
    }
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
    // Credentials from files or variables log in again silently; a password that is not given
    // is asked in the dialog each time a login is needed, and never kept (nor is the admin
    // token's PIN: its login is).
    let dialog: Arc<dyn PinDialog> = Arc::from(dialog);
    let quit = Arc::new(Cancel::default());
    let backend = Backend::open(
        &cfg.destination,
        &cfg.http,
        Arc::new(DialogAsk {
            dialog: dialog.clone(),
            quit: quit.clone(),
        }),
    )?;
    let registry = registry::Registry::open(&cfg.state_dir).map_err(|e| e.to_string())?;
    let journal =
        crate::journal::Journal::open(cfg.destination.journal()).map_err(|e| e.to_string())?;
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
        admin_key: cfg.destination.admin_key(),
    };
    let watcher_thread = std::thread::Builder::new()
        .name("token-watcher".into())
        .spawn(move || w.run(change_tx))
        .map_err(|e| e.to_string())?;
    let (report_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let mut owner = Owner {
        machine: Machine::new(cfg.policy),
        shared: Arc::new(Shared {
            cfg,
            module,
            backend,
            dialog,
            notifier,
            journal,
        }),
        records: HashMap::new(),
        registry,
        salt,
        next_generation: 0,
        workers: tokio::task::JoinSet::new(),
        reports: report_tx,
        quit,
    };
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            _ = &mut stop => break,
            Some(change) = changes.recv() => match owner.change(change) {
                Some(e) => e,
                None => continue,
            },
            Some(request) = requests.recv() => {
                let EnrollRequest { key, uri } = request;
                if let Some(r) = owner.records.get_mut(&key) {
                    r.chosen = uri;
                }
                Event::EnrollRequested { key }
            }
            Some(report) = reports.recv() => match owner.accept(report) {
                Some(e) => e,
                None => continue,
            },
            Some(joined) = owner.workers.join_next(), if !owner.workers.is_empty() => {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "a worker ended abnormally");
                }
                continue;
            }
        };
        tracing::debug!(?event, "agent event");
        for action in owner.machine.handle(event) {
            owner.execute(action);
        }
        view.send_replace(owner.view());
    }
    owner.shut_down(stopper, watcher_thread).await;
    Ok(())
}

/// How long workers in flight (an enrollment waiting for the server) may take to finish at exit.
const DRAIN: Duration = Duration::from_secs(10);

impl Owner {
    fn view(&self) -> View {
        let m = &self.machine;
        View {
            status: m.status_line(),
            icon: m.mood(),
            enrollable: m
                .tokens()
                .filter(|(k, _)| m.can_enroll(k))
                .map(|(k, _)| {
                    let pairs = self.records.get(k).map(|r| r.pairs.clone());
                    (k.clone(), pairs.unwrap_or_default())
                })
                .collect(),
        }
    }

    /// A token came or went.
    fn change(&mut self, change: watcher::Change) -> Option<Event> {
        match change {
            watcher::Change::Inserted(seen) if seen.admin_token => {
                tracing::info!(token = %seen.key, "this token holds the admin's own signing pair (admin_key) for the CENTAGATE login: it is not offered for enrollment");
                None
            }
            watcher::Change::Inserted(seen) => {
                let enrolled = self.registry.contains_any(&seen.certificates);
                let has_pair = !seen.pairs.is_empty();
                let record = Record {
                    pairs: seen.pairs,
                    pin_pad: seen.pin_pad,
                    ..Default::default()
                };
                if let Some(mut old) = self.records.insert(seen.key.clone(), record) {
                    old.withdraw();
                }
                Some(Event::Inserted {
                    key: seen.key,
                    enrolled,
                    has_pair,
                })
            }
            watcher::Change::Removed(key) => {
                // The request in flight is withdrawn: its dialog closes, its PIN is gone, and
                // any late answer finds no record and is dropped.
                if let Some(mut r) = self.records.remove(&key) {
                    r.withdraw();
                }
                Some(Event::Removed { key })
            }
            watcher::Change::Trouble(message) => {
                self.notify("tokenroll cannot read tokens".into(), message);
                None
            }
        }
    }

    /// A worker's report, if it answers the request now current for its token.
    fn accept(&mut self, report: Report) -> Option<Event> {
        let (key, generation) = match &report {
            Report::Asked {
                key, generation, ..
            }
            | Report::Signed { key, generation }
            | Report::Enrolled {
                key, generation, ..
            } => (key.clone(), *generation),
        };
        let current = self.records.get(&key).map(|r| r.generation);
        if current != Some(generation) {
            // A withdrawn request (the token left, or a newer request replaced it): whatever it
            // carries — a PIN included — is dropped here, and zeroized with it.
            tracing::debug!(token = ?key, generation, "an answer to a withdrawn request dropped");
            return None;
        }
        match report {
            Report::Asked { answer, .. } => {
                let hash = match &answer {
                    Asked::Entered { pin: Some(p), .. } => Some(p.salted_hash(&self.salt)),
                    _ => None,
                };
                let r = self.records.get_mut(&key)?;
                Some(match answer {
                    Asked::Entered { pin, user } => {
                        if let Some(u) = user {
                            r.asked_user = Some(u);
                        }
                        match (pin, hash) {
                            (Some(_), Some(h)) if r.wrong_pins.contains(&h) => {
                                r.pin = None;
                                // Never send a PIN the token already refused: ask again instead.
                                Event::PinRejected {
                                    key,
                                    message: "That PIN was already refused by the token; it \
                                              was not sent again."
                                        .into(),
                                }
                            }
                            (Some(p), Some(h)) => {
                                r.pin = Some(p);
                                r.tried = Some(h);
                                Event::PinEntered { key }
                            }
                            _ => Event::PinEntered { key },
                        }
                    }
                    Asked::Cancelled => Event::PinCancelled { key },
                    Asked::Failed(reason) => Event::Failed { key, reason },
                })
            }
            Report::Signed { .. } => Some(Event::Signed { key }),
            Report::Enrolled { outcome, .. } => {
                let r = self.records.get_mut(&key)?;
                // The request is over: nothing of its PIN stays but the hash of a refused one.
                r.pin = None;
                let tried = r.tried.take();
                Some(match outcome {
                    Enrolled::Answered {
                        code,
                        message,
                        certificate,
                    } => {
                        r.registered = certificate;
                        Event::Answered { key, code, message }
                    }
                    Enrolled::PinRejected(message) => {
                        r.wrong_pins.extend(tried);
                        Event::PinRejected { key, message }
                    }
                    Enrolled::Failed(reason) => Event::Failed { key, reason },
                })
            }
        }
    }

    /// Runs `job` for `target` on a tracked blocking worker and reports its result. A job that
    /// panics (a bug in it, or in a crate under it) reports `failed` with the reason: a token is
    /// never left stuck in a state no answer will end.
    fn spawn<T: 'static>(
        &mut self,
        target: Target,
        job: impl FnOnce(&Shared, &Target, &mpsc::UnboundedSender<Report>) -> T + Send + 'static,
        failed: fn(String) -> T,
        report: fn(TokenKey, u64, T) -> Report,
    ) {
        let (s, reports) = (self.shared.clone(), self.reports.clone());
        self.workers.spawn_blocking(move || {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                job(&s, &target, &reports)
            }));
            let result = done.unwrap_or_else(|panic| failed(work::panic_text(&*panic)));
            let _ = reports.send(report(target.key, target.generation, result));
        });
    }

    fn notify(&mut self, summary: String, body: String) {
        let s = self.shared.clone();
        self.workers
            .spawn_blocking(move || s.notifier.notify(&summary, &body));
    }

    fn execute(&mut self, action: Action) {
        match action {
            Action::Notify { summary, body } => self.notify(summary, body),
            Action::AskPin { key, error } => {
                self.next_generation += 1;
                let generation = self.next_generation;
                let Some(r) = self.records.get_mut(&key) else {
                    return;
                };
                r.withdraw();
                r.generation = generation;
                let cancel = Arc::new(Cancel::default());
                r.request = Some(cancel.clone());
                let target = r.target(&key);
                self.spawn(
                    target,
                    move |s, t, _| work::ask(s, t, error, &cancel),
                    |why| {
                        Asked::Failed(format!(
                            "the PIN dialog failed unexpectedly ({why}); enroll again from the menu"
                        ))
                    },
                    |key, generation, answer| Report::Asked {
                        key,
                        generation,
                        answer,
                    },
                );
            }
            Action::Enroll { key } => {
                let Some(r) = self.records.get_mut(&key) else {
                    return;
                };
                // Handed to the worker: the record keeps only the hash, to remember a refusal.
                let pin = r.pin.take();
                let withdrawn = r.request.clone().unwrap_or_default();
                let target = r.target(&key);
                let handle = tokio::runtime::Handle::current();
                self.spawn(
                    target,
                    move |s, t, reports| work::enroll(s, t, pin, &withdrawn, &handle, reports),
                    |why| Enrolled::Failed(format!("the enrollment failed unexpectedly ({why})")),
                    |key, generation, outcome| Report::Enrolled {
                        key,
                        generation,
                        outcome,
                    },
                );
            }
            Action::Cancel { key } => {
                // The record went with the token (see `change`); a worker still running finds
                // the token gone at its next call, and its answer is dropped.
                tracing::info!(token = %key.label, "enrollment withdrawn: the token was removed");
            }
            Action::RememberEnrolled { key } => {
                let Some((cert, user)) =
                    self.records.get_mut(&key).and_then(|r| r.registered.take())
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
                if let Err(e) = self.registry.add(cert, entry) {
                    tracing::warn!(error = %e, "cannot record the enrollment");
                }
            }
        }
    }

    /// Ends the agent in order: dialogs are closed, workers drain (an enrollment in flight gets
    /// its answer journaled), and only then is the module finalised — the one way to release a
    /// watcher blocked in `C_WaitForSlotEvent` — and the watcher joined.
    async fn shut_down(mut self, stopper: hotplug::Stopper, watcher: std::thread::JoinHandle<()>) {
        for r in self.records.values_mut() {
            r.withdraw();
        }
        self.quit.cancel();
        let drained = tokio::time::timeout(DRAIN, async {
            while let Some(joined) = self.workers.join_next().await {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "a worker ended abnormally");
                }
            }
        })
        .await
        .is_ok();
        // The session this agent opened ends with it (Quit, SIGTERM).
        self.shared.backend.logout().await;
        if drained {
            stopper.stop();
        } else {
            // A worker still inside the module: C_Finalize under it is undefined, so the
            // watcher is told to stop without it and the process exit releases the module.
            tracing::warn!("a worker did not finish within {} s", DRAIN.as_secs());
            stopper.stop_without_finalize();
        }
        let joined = tokio::task::spawn_blocking(move || watcher.join());
        if tokio::time::timeout(Duration::from_secs(5), joined)
            .await
            .is_err()
        {
            tracing::warn!("the token watcher did not stop within 5 s");
        }
    }
}

#[cfg(test)]
mod tests;
