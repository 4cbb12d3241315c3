//! A client for GnuPG's pinentry programs (the Assuan protocol), with what the agent needs and
//! the `pinentry` crate lacks: a dialog can be ended from another thread (the token was removed,
//! the agent is quitting), its process is killed and reaped, and no line it is sent can exceed
//! the protocol's limit (the caller caps the text, see `text::pinentry`).
//!
//! Owns: the pinentry child process and the protocol. Does not own: the dialog's wording (see
//! `dialogs`).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use zeroize::Zeroizing;

/// Ends a dialog from another thread: its pinentry is killed, and its answer (if one still comes)
/// is a cancel.
#[derive(Debug, Default)]
pub struct Cancel {
    state: Mutex<CancelState>,
}

#[derive(Debug, Default)]
struct CancelState {
    cancelled: bool,
    /// The running pinentry, while there is one (cleared before it is reaped, so a reused pid is
    /// never signalled).
    pid: Option<u32>,
}

impl Cancel {
    fn lock(&self) -> std::sync::MutexGuard<'_, CancelState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Cancels the dialog and ends its process, now or as soon as it starts.
    pub fn cancel(&self) {
        let mut s = self.lock();
        s.cancelled = true;
        if let Some(pid) = s.pid {
            kill(pid);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Records the running process; false (and it is killed) if the dialog was already cancelled.
    fn attach(&self, pid: u32) -> bool {
        let mut s = self.lock();
        if s.cancelled {
            kill(pid);
            return false;
        }
        s.pid = Some(pid);
        true
    }

    fn detach(&self) {
        self.lock().pid = None;
    }
}

fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SIGKILL: a pinentry that ignores SIGTERM must not keep the worker (or the agent's exit)
        // waiting. SAFETY: kill(2) on a child of ours not yet reaped (see `CancelState::pid`).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// What a dialog ended with.
pub enum Answer {
    /// The text typed (percent-decoded), zeroized when dropped.
    Value(Zeroizing<String>),
    Cancelled,
}

/// One pinentry session: spawn, a few SET commands, GETPIN, BYE.
pub struct Session<'c> {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    cancel: &'c Cancel,
}

/// GPG_ERR_CANCELED and GPG_ERR_TIMEOUT, in the low 16 bits of an ERR code.
const CANCELED: u32 = 99;
const TIMEOUT: u32 = 62;

impl<'c> Session<'c> {
    /// Starts `program` and reads its greeting.
    pub fn start(program: &str, cancel: &'c Cancel) -> Result<Self, String> {
        let mut child = Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start the pinentry program '{program}' ({e}): install one (Debian: \
                     pinentry-gnome3, pinentry-qt, pinentry-gtk2 or pinentry-curses), or name it \
                     with --pinentry"
                )
            })?;
        let (Some(to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the pinentry program's pipes could not be opened".into());
        };
        let attached = cancel.attach(child.id());
        let mut s = Session {
            child,
            to,
            from: BufReader::new(from),
            cancel,
        };
        if !attached {
            return Err("cancelled".into());
        }
        s.response()?;
        if let Ok(tty) = std::env::var("GPG_TTY") {
            s.request("OPTION", &format!("ttyname={tty}"))?;
        }
        if let Ok(term) = std::env::var("TERM") {
            s.request("OPTION", &format!("ttytype={term}"))?;
        }
        Ok(s)
    }

    /// Sends `command value` (percent-escaped) and waits for OK.
    pub fn request(&mut self, command: &str, value: &str) -> Result<(), String> {
        let mut line = String::with_capacity(command.len() + value.len() + 2);
        line.push_str(command);
        line.push(' ');
        for c in value.chars() {
            match c {
                '%' => line.push_str("%25"),
                '\n' => line.push_str("%0A"),
                '\r' => line.push_str("%0D"),
                c => line.push(c),
            }
        }
        if line.len() >= 1000 {
            return Err(format!("{command} is too long for the pinentry protocol"));
        }
        line.push('\n');
        self.send(&line)?;
        self.response().map(drop)
    }

    /// GETPIN: the text typed, or a cancel (the person's, a timeout, or `Cancel::cancel`).
    pub fn get_pin(&mut self) -> Result<Answer, String> {
        self.send("GETPIN\n")?;
        match self.response() {
            Ok(data) => Ok(Answer::Value(data)),
            Err(_) if self.cancel.is_cancelled() => Ok(Answer::Cancelled),
            Err(e) if e == "cancelled" => Ok(Answer::Cancelled),
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        self.to
            .write_all(line.as_bytes())
            .and_then(|()| self.to.flush())
            .map_err(|e| self.ended(&e.to_string()))
    }

    fn ended(&self, why: &str) -> String {
        if self.cancel.is_cancelled() {
            "cancelled".into()
        } else {
            format!("the pinentry program ended unexpectedly ({why})")
        }
    }

    /// Reads up to OK (returning any D data, decoded) or ERR.
    fn response(&mut self) -> Result<Zeroizing<String>, String> {
        // Room enough that a PIN never makes the buffer move (and leave a copy behind).
        let mut data = Zeroizing::new(String::with_capacity(1024));
        loop {
            let mut line = Zeroizing::new(String::with_capacity(1024));
            match self.from.read_line(&mut line) {
                Ok(0) => return Err(self.ended("no answer")),
                Ok(_) => {}
                Err(e) => return Err(self.ended(&e.to_string())),
            }
            let l = line.trim_end_matches(['\n', '\r']);
            if l == "OK" || l.starts_with("OK ") {
                return Ok(data);
            }
            if let Some(d) = l.strip_prefix("D ") {
                let decoded: Zeroizing<Vec<u8>> =
                    Zeroizing::new(percent_encoding::percent_decode_str(d).collect());
                let text = std::str::from_utf8(&decoded)
                    .map_err(|_| "the pinentry program sent text that is not UTF-8".to_string())?;
                data.push_str(text);
                continue;
            }
            if let Some(e) = l.strip_prefix("ERR ") {
                let code: u32 = e
                    .split(' ')
                    .next()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(0);
                if matches!(code & 0xffff, CANCELED | TIMEOUT) {
                    return Err("cancelled".into());
                }
                return Err(format!(
                    "the pinentry program refused: {}",
                    crate::text::plain(e)
                ));
            }
            if l.starts_with("INQUIRE") {
                return Err(
                    "the pinentry program asked for something tokenroll cannot give".into(),
                );
            }
            // "S" status and "#" comment lines carry nothing we need.
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self.to.write_all(b"BYE\n");
        // Whatever state it is in, the process ends here and is reaped: no dialog outlives
        // its request.
        self.cancel.detach();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
