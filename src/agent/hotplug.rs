//! What wakes the token watcher, the most event-driven way each module allows:
//! - SoftHSM2: inotify on its token directory (the only way its set of tokens changes);
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
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which source wakes the watcher now; the log names it (and the tests look for that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    TokenDirectory,
    SlotEvents,
    PcscChanges,
    Polling,
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

    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = (&self.pipe.1).write_all(&[1]);
        if let Some(c) = self.pcsc.lock().expect("stopper").take() {
            let _ = c.cancel();
        }
        if let Some(m) = self.module.lock().expect("stopper").take() {
            m.finalize();
        }
    }

    fn fd(&self) -> std::os::fd::RawFd {
        self.pipe.0.as_raw_fd()
    }
}

/// Waits until `fd` is readable or the stopper's pipe is, at most `timeout`. True: `fd` is ready.
fn poll_or_stop(fd: Option<std::os::fd::RawFd>, stopper: &Stopper, timeout: Duration) -> bool {
    let mut fds = vec![libc::pollfd {
        fd: stopper.fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    if let Some(fd) = fd {
        fds.push(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
    }
    let ms = timeout.as_millis().min(libc::c_int::MAX as u128) as libc::c_int;
    // SAFETY: `fds` holds valid descriptors owned by the stopper and the caller for the call.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    ready > 0 && fds.get(1).is_some_and(|p| p.revents & libc::POLLIN != 0)
}

pub struct Wake {
    inotify: Option<inotify::Inotify>,
    /// Signals from the event thread; closed when it gave up (then: polling).
    events: Option<Receiver<Source>>,
    source: Source,
    /// An event from `source` arrived (the module's wait really blocks and wakes).
    confirmed: bool,
    stopper: Stopper,
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
        }
    }

    /// Chooses the source for a newly loaded `module`. For SoftHSM2 `token_dir` is its token
    /// directory; for any other module an event thread is started.
    pub fn arm(&mut self, module: &Arc<Module>, token_dir: Option<&Path>) {
        if token_dir.is_some() {
            self.source = Source::TokenDirectory;
            return;
        }
        let (tx, rx) = channel();
        *self.stopper.module.lock().expect("stopper") = Some(module.clone());
        let module = module.clone();
        let stopper = self.stopper.clone();
        let spawned = std::thread::Builder::new()
            .name("slot-events".into())
            .spawn(move || slot_events(module, stopper, tx));
        match spawned {
            Ok(_) => {
                self.events = Some(rx);
                self.confirmed = false;
                // The thread says which source it settled on with its first message.
                self.source = Source::SlotEvents;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the slot-event thread: polling");
                self.source = Source::Polling;
            }
        }
    }

    /// Waits for the next reason to list the tokens again.
    pub fn wait(&mut self, interval: Duration, token_dir: Option<&Path>) {
        if let Some(dir) = token_dir {
            return self.wait_dir(interval, dir);
        }
        let Some(rx) = &self.events else {
            poll_or_stop(None, &self.stopper, interval);
            return;
        };
        match rx.recv_timeout(Self::SAFETY_NET) {
            Ok(Source::Polling) | Err(RecvTimeoutError::Disconnected) if self.stopper.stopped() => {
                self.events = None;
            }
            Ok(Source::Polling) | Err(RecvTimeoutError::Disconnected) => {
                tracing::info!(
                    "hot-plug: the module passes no events and PC/SC is not available; polling every {} ms",
                    interval.as_millis()
                );
                self.events = None;
                self.source = Source::Polling;
            }
            Ok(source) => {
                if !std::mem::replace(&mut self.confirmed, true) || source != self.source {
                    tracing::info!(?source, "hot-plug: event-driven");
                    self.source = source;
                }
                std::thread::sleep(Self::SETTLE);
                while rx.try_recv().is_ok() {}
            }
            Err(RecvTimeoutError::Timeout) => {}
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

    fn wait_dir(&mut self, interval: Duration, dir: &Path) {
        if self.inotify.is_none() {
            match inotify::Inotify::init() {
                Ok(ino) => self.inotify = Some(ino),
                Err(e) => {
                    tracing::debug!(error = %e, "no inotify: polling the token directory");
                    poll_or_stop(None, &self.stopper, interval);
                    return;
                }
            }
        }
        let ino = self.inotify.as_mut().expect("set above");
        Self::watch_all(ino, dir);
        let ready = poll_or_stop(Some(ino.as_raw_fd()), &self.stopper, Self::SAFETY_NET);
        if ready {
            std::thread::sleep(Self::SETTLE.min(interval));
            let mut buf = [0u8; 4096];
            while ino
                .read_events(&mut buf)
                .is_ok_and(|mut events| events.next().is_some())
            {}
        }
    }
}

/// The event thread: a blocking `C_WaitForSlotEvent` loop; if the module cannot wait, PC/SC
/// changes; if neither works, it says "poll" and ends.
fn slot_events(module: Arc<Module>, stopper: Stopper, tx: Sender<Source>) {
    loop {
        match module.wait_for_slot_event() {
            Ok(Some(_slot)) => {
                if tx.send(Source::SlotEvents).is_err() {
                    return;
                }
            }
            Ok(None) => break,
            Err(e) => {
                // Finalized by the stopper, or the module failed: either way, stop here.
                tracing::debug!(error = %e, "slot-event wait ended");
                let _ = tx.send(Source::Polling);
                return;
            }
        }
    }
    // Nothing to interrupt in the module now; finalizing it at exit is the process's business.
    drop(module);
    stopper.module.lock().expect("stopper").take();
    tracing::debug!("the module cannot wait for slot events: watching PC/SC instead");
    if let Err(e) = pcsc_changes(&stopper.pcsc, &tx) {
        tracing::debug!(error = %e, "PC/SC watch ended");
    }
    let _ = tx.send(Source::Polling);
}

/// Sends a signal whenever a reader comes or goes or a card is inserted or removed in one.
fn pcsc_changes(
    slot: &Mutex<Option<pcsc::Context>>,
    tx: &Sender<Source>,
) -> Result<(), pcsc::Error> {
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
        if !first && tx.send(Source::PcscChanges).is_err() {
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
            if tx.send(Source::PcscChanges).is_err() {
                return Ok(());
            }
        }
    }
}
