//! The station's terminal UI (ratatui): a lane per token with its phase and a spinner, the batch
//! with a progress bar and counts, the last results, the log, and the operator's questions — a
//! token's PIN in a masked field, a username typed or scanned, a confirmation — one at a time.
//! Keys: `p` pause, `s` skip the current token, `q` quit (asks when lanes are busy); in a
//! question, Enter answers and Esc cancels.
//!
//! Owns: the UI thread (the one owner of the terminal, joined by `Tui::end`) and the face the
//! station calls from its lanes, which hands every event and question to that thread. Does not
//! own: what is shown (see `view`) or any decision (the station's loop makes them).

mod question;
mod view;

use super::events::{Confirm, Event, Face, TokenName};
use super::Control;
use crate::secret::{AdminPassword, Pin};
use crate::ui::dialogs::{Cancel, PinRequest};
pub use question::{Answer, Question};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;
use view::{Key, Model};

/// What the UI thread is told.
pub enum ToUi {
    Event(Box<Event>),
    Ask {
        id: u64,
        question: Question,
        reply: mpsc::Sender<Answer>,
    },
    /// The asker gave up (its token left): the question goes.
    Withdraw(u64),
    /// The station's loop has ended.
    End,
}

/// The face the station's lanes call.
pub struct TuiFace {
    tx: Mutex<mpsc::Sender<ToUi>>,
    next: AtomicU64,
}

/// The running UI: its thread, and how it tells the station to pause, skip or quit.
pub struct Tui {
    tx: mpsc::Sender<ToUi>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

/// Starts the UI thread on this terminal. `rows`: the batch's usernames (for the progress);
/// `title`: the operator and server; `controls` and `quit` reach the station's loop.
pub fn start(
    rows: Vec<String>,
    title: String,
    controls: tokio::sync::mpsc::UnboundedSender<Control>,
    quit: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<(std::sync::Arc<TuiFace>, Tui), String> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(
            "the terminal UI needs a terminal; run with --headless (and --jsonl) for automation"
                .into(),
        );
    }
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("station-ui".into())
        .spawn(move || run_ui(Model::new(rows, title), rx, controls, quit))
        .map_err(|e| e.to_string())?;
    Ok((
        std::sync::Arc::new(TuiFace {
            tx: Mutex::new(tx.clone()),
            next: AtomicU64::new(1),
        }),
        Tui { tx, thread },
    ))
}

impl Tui {
    /// Ends the UI: the terminal is restored before this returns.
    pub fn end(self) -> Result<(), String> {
        let _ = self.tx.send(ToUi::End);
        self.thread
            .join()
            .map_err(|p| crate::agent::panic_text(p.as_ref()))?
    }
}

fn run_ui(
    mut model: Model,
    rx: mpsc::Receiver<ToUi>,
    controls: tokio::sync::mpsc::UnboundedSender<Control>,
    quit: tokio::sync::mpsc::UnboundedSender<()>,
) -> Result<(), String> {
    use ratatui::crossterm::event::{self, KeyCode, KeyEventKind, KeyModifiers};
    let mut terminal =
        ratatui::try_init().map_err(|e| format!("cannot start the terminal UI: {e}"))?;
    let result = (|| loop {
        loop {
            match rx.try_recv() {
                Ok(ToUi::End) | Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
                Ok(m) => model.apply(m),
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        terminal
            .draw(|f| view::draw(f, &model))
            .map_err(|e| e.to_string())?;
        model.tick();
        if !event::poll(Duration::from_millis(120)).map_err(|e| e.to_string())? {
            continue;
        }
        let key = match event::read().map_err(|e| e.to_string())? {
            event::Event::Key(k) if k.kind != KeyEventKind::Release => k,
            _ => continue,
        };
        let key = match key.code {
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Key::Interrupt,
            KeyCode::Char(c) => Key::Char(c),
            KeyCode::Enter => Key::Enter,
            KeyCode::Esc => Key::Esc,
            KeyCode::Backspace => Key::Backspace,
            _ => continue,
        };
        match model.key(key) {
            Some(view::Action::Control(c)) => {
                let _ = controls.send(c);
            }
            Some(view::Action::Quit) => {
                let _ = quit.send(());
            }
            None => {}
        }
    })();
    ratatui::restore();
    result
}

impl TuiFace {
    fn send(&self, m: ToUi) -> bool {
        self.tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(m)
            .is_ok()
    }

    /// Puts `question` to the operator and waits for the answer, or for `cancel` (the token
    /// left), which withdraws it.
    fn ask(&self, question: Question, cancel: &Cancel) -> Result<Answer, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (reply, answers) = mpsc::channel();
        if !self.send(ToUi::Ask {
            id,
            question,
            reply,
        }) {
            return Err("the terminal UI has ended".into());
        }
        loop {
            match answers.recv_timeout(Duration::from_millis(100)) {
                Ok(a) => return Ok(a),
                Err(mpsc::RecvTimeoutError::Timeout) if cancel.is_cancelled() => {
                    self.send(ToUi::Withdraw(id));
                    return Ok(Answer::Cancel);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the terminal UI has ended".into())
                }
            }
        }
    }

    fn text(
        &self,
        question: Question,
        cancel: &Cancel,
    ) -> Result<Option<zeroize::Zeroizing<String>>, String> {
        Ok(match self.ask(question, cancel)? {
            Answer::Text(t) if !t.is_empty() => Some(t),
            _ => None,
        })
    }
}

impl Face for TuiFace {
    fn event(&self, e: &Event) {
        self.send(ToUi::Event(Box::new(e.clone())));
    }

    fn pin(&self, req: &PinRequest, cancel: &Cancel) -> Result<Option<Pin>, String> {
        Ok(self
            .text(Question::Pin(req.clone()), cancel)?
            .map(|t| Pin::new(t.to_string())))
    }

    fn user(
        &self,
        token: &TokenName,
        subject: &str,
        cancel: &Cancel,
    ) -> Result<Option<String>, String> {
        Ok(self
            .text(
                Question::User {
                    token: token.clone(),
                    subject: subject.to_string(),
                },
                cancel,
            )?
            .map(|t| t.trim().to_string())
            .filter(|u| !u.is_empty()))
    }

    fn confirm(&self, c: &Confirm, cancel: &Cancel) -> Result<bool, String> {
        Ok(matches!(
            self.ask(Question::Confirm(c.clone()), cancel)?,
            Answer::Yes
        ))
    }

    fn replace_bound(&self, user: &str, other: &str, cancel: &Cancel) -> Result<bool, String> {
        let q = Question::Replace {
            user: user.to_string(),
            other: other.to_string(),
        };
        Ok(matches!(self.ask(q, cancel)?, Answer::Yes))
    }

    fn password(&self, admin: &str, cancel: &Cancel) -> Result<Option<AdminPassword>, String> {
        Ok(self
            .text(
                Question::Password {
                    admin: admin.to_string(),
                },
                cancel,
            )?
            .map(|t| AdminPassword::new(t.to_string())))
    }

    fn admin_pin(
        &self,
        admin: &str,
        token: &str,
        note: Option<&str>,
        cancel: &Cancel,
    ) -> Result<Option<Pin>, String> {
        let q = Question::AdminPin {
            admin: admin.to_string(),
            token: token.to_string(),
            note: note.map(str::to_string),
        };
        Ok(self.text(q, cancel)?.map(|t| Pin::new(t.to_string())))
    }
}
