//! What wakes the token watcher, the most event-driven way each module allows:
//! - SoftHSM2, directly or behind the p11-kit proxy: inotify on its token directory (the only way
//!   its set of tokens changes);
//! - a module that implements a blocking `C_WaitForSlotEvent` (OpenSC): a thread blocked in it;
//! - one that does not (the p11-kit proxy): PC/SC reader and card changes from pcscd
//!   (`SCardGetStatusChange`), the readers the proxied smart-card modules sit on;
//! - otherwise, polling at the configured interval.
//!
//! Every event source also has a slow safety-net timeout (a minute), so a missed event is not
//! missed forever. Owns: the threads and their shutdown. Does not own: what a wake-up leads to (the
//! watcher lists the tokens again) or the module itself (`token::Module`).

use crate::token::Module;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which source wakes the watcher now; the log names it (and the tests look for that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Source {
    TokenDirectory = 0,
    SlotEvents = 1,
    PcscChanges = 2,
    Polling = 3,
}

/// Ends the watcher and its event threads: C_Finalize ends a blocked `C_WaitForSlotEvent`
/// (nothing else does), SCardCancel a blocked `SCardGetStatusChange`, and a byte on a pipe any
/// other wait. The agent then joins the watcher, so no PKCS#11 call is in flight while the
/// process exits (libpcsclite's exit handlers crash a thread still inside it).
#[derive(Clone)]
pub struct Stopper {
    module: Arc<Mutex<Option<Arc<Module>>>>,
    pcsc: Arc<Mutex<Option<pcsc::Context>>>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    pipe: Arc<(UnixStream, UnixStream)>,
}

impl Stopper {
    pub fn new() -> std::io::Result<Self> {
        let (r, w) = UnixStream::pair()?;
        r.set_nonblocking(true)?;
        Ok(Stopper {
            module: Arc::default(),
            pcsc: Arc::default(),
            stopped: Arc::default(),
            pipe: Arc::new((r, w)),
        })
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops the watcher: wakes its poll, cancels a PC/SC wait, and finalises the module it may
    /// be blocked in (`C_WaitForSlotEvent`). Call only when no other thread uses the module.
    pub fn stop(&self) {
        self.stop_without_finalize();
        let module = self
            .module
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(m) = module {
            m.finalize();
        }
    }

    /// Stops the watcher without finalising the module (a worker may still be inside it).
    pub fn stop_without_finalize(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = (&self.pipe.1).write_all(&[1]);
        let pcsc = self
            .pcsc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(c) = pcsc {
            let _ = c.cancel();
        }
    }

    fn fd(&self) -> std::os::fd::RawFd {
        self.pipe.0.as_raw_fd()
    }
}

/// Waits until one of `fds` or the stopper's pipe is readable, at most `timeout`. Returns which
/// of `fds` are ready.
fn poll_or_stop(fds: &[std::os::fd::RawFd], stopper: &Stopper, timeout: Duration) -> Vec<bool> {
    let mut all: Vec<libc::pollfd> = std::iter::once(stopper.fd())
        .chain(fds.iter().copied())
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: `all` holds valid descriptors owned by the stopper and the caller for the call.
    let ready = unsafe { libc::poll(all.as_mut_ptr(), all.len() as libc::nfds_t, ms) };
    all[1..]
        .iter()
        .map(|p| ready > 0 && p.revents & (libc::POLLIN | libc::POLLHUP) != 0)
        .collect()
}

/// The event thread's end of a socket pair: one byte per wake-up, naming its source.
struct EventTx(UnixStream);

impl EventTx {
    /// False when the watcher is gone.
    fn send(&self, source: Source) -> bool {
        (&self.0).write_all(&[source as u8]).is_ok()
    }
}

impl Source {
    fn from_byte(b: u8) -> Source {
        [
            Source::TokenDirectory,
            Source::SlotEvents,
            Source::PcscChanges,
            Source::Polling,
        ]
        .into_iter()
        .find(|s| *s as u8 == b)
        .unwrap_or(Source::Polling)
    }
}

pub struct Wake {
    inotify: Option<inotify::Inotify>,
    /// The event thread's signals; `None` when there is no thread or it gave up.
    events: Option<UnixStream>,
    source: Source,
    /// An event from `source` arrived (the module's wait really blocks and wakes).
    confirmed: bool,
    stopper: Stopper,
    /// The event thread, joined when the watcher ends (see `Drop`).
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Wake {
    /// The watcher ends only after the stopper ran: a PC/SC wait was cancelled, and a wait in
    /// `C_WaitForSlotEvent` was released by `C_Finalize` — unless the stopper had to leave the
    /// module alone (a worker still in it), in which case the blocked thread is left to the
    /// process exit rather than joined forever.
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let still_waiting_in_module = self
            .stopper
            .module
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some();
        if still_waiting_in_module || !self.stopper.stopped() {
            tracing::warn!("the slot-event thread may still be waiting; leaving it to the exit");
            return;
        }
        if thread.join().is_err() {
            tracing::error!("the slot-event thread panicked");
        }
    }
}

impl Wake {
    /// Every source is trusted to wake the watcher; this only bounds the cost of a missed event.
    /// A listing through the p11-kit proxy costs tens of milliseconds of CPU, so it is rare.
    const SAFETY_NET: Duration = Duration::from_secs(60);
    /// Coalesces a burst (a new SoftHSM2 token is several files; a card insertion is several
    /// slot events) into one listing.
    const SETTLE: Duration = Duration::from_millis(50);

    pub fn new(stopper: Stopper) -> Self {
        Wake {
            inotify: None,
            events: None,
            source: Source::Polling,
            confirmed: false,
            stopper,
            thread: None,
        }
    }

    /// Chooses the sources for a newly loaded `module`. `token_dir` is SoftHSM2's token directory
    /// when the module is SoftHSM2 or a p11-kit proxy that holds it (inotify then wakes the
    /// watcher). Any module but SoftHSM2 itself also gets an event thread (slot events, else
    /// PC/SC), started once: it outlives reloads of the proxy, which it does not hold.
    pub fn arm(&mut self, module: &Arc<Module>, token_dir: Option<&Path>) {
        if token_dir.is_some() {
            self.source = Source::TokenDirectory;
        }
        let softhsm_itself = super::watcher::is_softhsm(module.path());
        if softhsm_itself || self.events.is_some() {
            return;
        }
        let pair = UnixStream::pair().and_then(|(r, w)| {
            r.set_nonblocking(true)?;
            Ok((r, w))
        });
        let (rx, tx) = match pair {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot set up slot events: polling");
                return;
            }
        };
        *self.stopper.module.lock().expect("stopper") = Some(module.clone());
        let module = module.clone();
        let stopper = self.stopper.clone();
        let spawned = std::thread::Builder::new()
            .name("slot-events".into())
            .spawn(move || slot_events(module, stopper, EventTx(tx)));
        match spawned {
            Ok(handle) => {
                self.events = Some(rx);
                self.confirmed = false;
                self.thread = Some(handle);
            }
            Err(e) => tracing::warn!(error = %e, "cannot start the slot-event thread: polling"),
        }
    }

    /// Waits for the next reason to list the tokens again.
    /// `soon`: something is pending (a card read half-written, a module just reloaded): come
    /// back within `interval` even when events are watched — a change made before a new token's
    /// folder was watched sends no event, and would otherwise wait for the safety net.
    pub fn wait(&mut self, interval: Duration, token_dir: Option<&Path>, soon: bool) {
        if let Some(dir) = token_dir {
            if self.inotify.is_none() {
                match inotify::Inotify::init() {
                    Ok(ino) => self.inotify = Some(ino),
                    Err(e) => tracing::debug!(error = %e, "no inotify for the token directory"),
                }
            }
            if let Some(ino) = self.inotify.as_mut() {
                Self::watch_all(ino, dir);
            }
        }
        let ino_fd = token_dir.and(self.inotify.as_ref()).map(|i| i.as_raw_fd());
        let ev_fd = self.events.as_ref().map(|e| e.as_raw_fd());
        let fds: Vec<_> = ino_fd.into_iter().chain(ev_fd).collect();
        let timeout = if fds.is_empty() || soon {
            interval
        } else {
            Self::SAFETY_NET
        };
        let ready = poll_or_stop(&fds, &self.stopper, timeout);
        let (ino_ready, ev_ready) = match (ino_fd, ev_fd) {
            (Some(_), Some(_)) => (ready[0], ready[1]),
            (Some(_), None) => (ready[0], false),
            (None, Some(_)) => (false, ready[0]),
            (None, None) => (false, false),
        };
        if ino_ready || ev_ready {
            std::thread::sleep(Self::SETTLE.min(interval));
        }
        if ino_ready {
            if let Some(ino) = self.inotify.as_mut() {
                let mut buf = [0u8; 4096];
                while ino
                    .read_events(&mut buf)
                    .is_ok_and(|mut events| events.next().is_some())
                {}
            }
        }
        if ev_ready {
            self.take_events(interval, token_dir.is_some());
        }
    }

    /// Reads what the event thread sent; its end (or a "poll" message) falls back to polling.
    fn take_events(&mut self, interval: Duration, has_dir: bool) {
        let Some(rx) = self.events.as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        let mut ended = false;
        let mut last = None;
        loop {
            match std::io::Read::read(rx, &mut buf) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(n) => {
                    for b in &buf[..n] {
                        match Source::from_byte(*b) {
                            Source::Polling => ended = true,
                            s => last = Some(s),
                        }
                    }
                }
                Err(_) => break, // WouldBlock: all read
            }
        }
        if let Some(source) = last {
            if !std::mem::replace(&mut self.confirmed, true) || source != self.source {
                tracing::info!(?source, "hot-plug: event-driven");
                self.source = source;
            }
        }
        if ended {
            self.events = None;
            if !self.stopper.stopped() && !has_dir {
                tracing::info!(
                    "hot-plug: the module passes no events and PC/SC is not available; polling every {} ms",
                    interval.as_millis()
                );
                self.source = Source::Polling;
            }
        }
    }

    fn watch_all(ino: &mut inotify::Inotify, dir: &Path) {
        use inotify::WatchMask;
        let mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVE
            | WatchMask::CLOSE_WRITE
            | WatchMask::MODIFY
            | WatchMask::DELETE_SELF;
        let _ = ino.watches().add(dir, mask);
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = ino.watches().add(e.path(), mask);
            }
        }
    }
}

/// The event thread: a blocking `C_WaitForSlotEvent` loop; if the module cannot wait, PC/SC
/// changes; if neither works, it says "poll" and ends.
fn slot_events(module: Arc<Module>, stopper: Stopper, tx: EventTx) {
    loop {
        match module.wait_for_slot_event() {
            Ok(Some(_slot)) => {
                if !tx.send(Source::SlotEvents) {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                // Finalized by the stopper, or the module failed: either way, stop here.
                tracing::debug!(error = %e, "slot-event wait ended");
                tx.send(Source::Polling);
                return;
            }
        }
    }
    // Nothing to interrupt in the module now (and the watcher may reload it).
    drop(module);
    stopper.module.lock().expect("stopper").take();
    tracing::debug!("the module cannot wait for slot events: watching PC/SC instead");
    if let Err(e) = pcsc_changes(&stopper.pcsc, &tx) {
        tracing::debug!(error = %e, "PC/SC watch ended");
    }
    tx.send(Source::Polling);
}

/// Sends a signal whenever a reader comes or goes or a card is inserted or removed in one.
fn pcsc_changes(slot: &Mutex<Option<pcsc::Context>>, tx: &EventTx) -> Result<(), pcsc::Error> {
    let ctx = pcsc::Context::establish(pcsc::Scope::User)?;
    *slot.lock().expect("stopper") = Some(ctx.clone());
    // The first round only learns the current state; every later one is a change.
    let mut first = true;
    loop {
        let mut states = vec![pcsc::ReaderState::new(
            pcsc::PNP_NOTIFICATION(),
            pcsc::State::UNAWARE,
        )];
        match ctx.list_readers_owned() {
            Ok(names) => states.extend(
                names
                    .into_iter()
                    .map(|n| pcsc::ReaderState::new(n, pcsc::State::UNAWARE)),
            ),
            Err(pcsc::Error::NoReadersAvailable) => {}
            Err(e) => return Err(e),
        }
        ctx.get_status_change(Duration::ZERO, &mut states)
            .or_else(|e| match e {
                pcsc::Error::Timeout => Ok(()),
                e => Err(e),
            })?;
        if !first && !tx.send(Source::PcscChanges) {
            return Ok(());
        }
        first = false;
        loop {
            for s in &mut states {
                s.sync_current_state();
            }
            match ctx.get_status_change(None, &mut states) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => continue,
                Err(e) => return Err(e),
            }
            let readers_changed = states[0].event_state().contains(pcsc::State::CHANGED)
                || states[1..].iter().any(|s| {
                    s.event_state()
                        .intersects(pcsc::State::UNKNOWN | pcsc::State::UNAVAILABLE)
                });
            if readers_changed {
                break; // list the readers again, then report
            }
            if !tx.send(Source::PcscChanges) {
                return Ok(());
            }
        }
    }
}
