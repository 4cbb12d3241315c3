//! `tokenroll station`: the helpdesk enrollment station. An operator logs in once; tokens come
//! one after another or several at once in several readers; each gets its user (a batch row,
//! typed or scanned, or the certificate's), goes through the one flow in a lane of its own, and
//! ends as a row of a CSV report an auditor can take.
//!
//! Owns: the wiring and the event loop, which alone decides — it holds the queue (which row each
//! token takes), the lanes in flight, and writes the report; lanes (see `lane`) do the token and
//! server I/O on blocking threads and answer with their end. Does not own: any enrollment step
//! (see `enroll`), the watcher (shared with the agent, see `agent::watcher`), drawing or
//! dialogs (the faces: `headless`, `tui`), or exit codes (see `cli::station`).

pub mod batch;
pub mod events;
pub mod headless;
pub mod html;
pub mod lane;
pub mod pin;
pub mod preflight;
pub mod queue;
pub mod report;
mod resume;
pub mod tui;

use crate::agent::state::TokenKey;
use crate::agent::watcher::{self, Change, Seen};
use events::{Event, Slowest, Summary};
use lane::{End, Job};
use queue::{Assignment, Queue, Settled};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a run is given, resolved by the command line.
pub struct StationConfig {
    pub module: Option<std::path::PathBuf>,
    pub poll: Duration,
    pub batch: Option<batch::Batch>,
    pub report: std::path::PathBuf,
    /// How many tokens enroll at the same time.
    pub lanes: usize,
    /// End when every batch row is settled (headless with a batch).
    pub end_when_settled: bool,
}

/// What the operator's face may ask of the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Start no new lane (lanes in flight finish).
    Pause(bool),
    /// Withdraw this token's lane (by `TokenName::id`): reported as skipped.
    Skip(String),
}

/// How a run ended.
pub struct Ended {
    pub summary: Summary,
    /// The end of each batch row (`None`: never settled), or without a batch, of each token.
    pub settled: Vec<Option<Settled>>,
    /// The report could not be written: the run stopped (the journal holds what was sent).
    pub report_error: Option<String>,
}

/// The journal tag of the run whose report is `path`: the same report, the same run.
/// Named by its folder (canonical) and file name, so the same report is the same run however
/// its path is written, and whether or not the file exists yet.
pub fn run_id(path: &std::path::Path) -> String {
    use sha2::Digest;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let folder = std::fs::canonicalize(&folder).unwrap_or(folder);
    let canonical = folder.join(path.file_name().unwrap_or_default());
    let h = sha2::Sha256::digest(canonical.to_string_lossy().as_bytes());
    format!("station-{}", &hex::encode(h)[..16])
}

struct Lane {
    cancel: Arc<crate::ui::dialogs::Cancel>,
    row: Option<usize>,
    username: Option<String>,
    key: TokenKey,
}

struct Owner {
    ctx: Arc<lane::Ctx>,
    queue: Queue,
    report: report::Report,
    /// Every row in the report file (earlier runs of this report included), for the summary.
    rows: Vec<report::Row>,
    waiting: VecDeque<Job>,
    lanes: HashMap<String, Lane>,
    running: tokio::task::JoinSet<(String, End)>,
    /// Tokens the operator skipped: a lane withdrawn for them is reported as skipped.
    skipped: std::collections::HashSet<String>,
    /// Tokens inserted again while their withdrawn lane was still ending: queued once it has.
    reinserted: HashMap<String, Seen>,
    /// Without a batch: how each token ended, in order.
    tokens: Vec<Settled>,
    phases: BTreeMap<&'static str, (Duration, u32)>,
    paused: bool,
    done_here: usize,
    started: Instant,
    report_error: Option<String>,
}

/// Runs the station until every batch row is settled (with `end_when_settled`) or `stop`.
pub async fn run(
    cfg: StationConfig,
    ctx: lane::Ctx,
    mut control: tokio::sync::mpsc::UnboundedReceiver<Control>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Ended, String> {
    let (report, rows) = report::Report::open(&cfg.report).map_err(|e| e.to_string())?;
    let ctx = Arc::new(ctx);
    let mut queue = Queue::new(cfg.batch);
    let (report, rows) = resume::restore(&ctx, &mut queue, report, rows).await?;
    let stopper = crate::agent::hotplug::Stopper::new().map_err(|e| e.to_string())?;
    let (change_tx, mut changes) = tokio::sync::mpsc::unbounded_channel();
    let w = watcher::Watcher {
        module_path: cfg.module.clone(),
        interval: cfg.poll,
        shared: ctx.module.clone(),
        stopper: stopper.clone(),
        admin_key: ctx.session_admin_key(),
    };
    let watcher_thread = std::thread::Builder::new()
        .name("token-watcher".into())
        .spawn(move || w.run(change_tx))
        .map_err(|e| e.to_string())?;
    let mut owner = Owner {
        ctx,
        queue,
        report,
        rows,
        waiting: VecDeque::new(),
        lanes: HashMap::new(),
        running: tokio::task::JoinSet::new(),
        skipped: Default::default(),
        reinserted: HashMap::new(),
        tokens: Vec::new(),
        phases: BTreeMap::new(),
        paused: false,
        done_here: 0,
        started: Instant::now(),
        report_error: None,
    };
    tokio::pin!(stop);
    loop {
        if cfg.end_when_settled && owner.queue.open_rows() == 0 && owner.lanes.is_empty() {
            break;
        }
        if owner.report_error.is_some() && owner.lanes.is_empty() {
            break;
        }
        owner.start_lanes(cfg.lanes);
        tokio::select! {
            _ = &mut stop => break,
            Some(change) = changes.recv() => owner.change(change),
            Some(c) = control.recv() => owner.control(c),
            Some(joined) = owner.running.join_next(), if !owner.running.is_empty() => match joined {
                Ok((id, end)) => owner.ended(&id, end),
                Err(e) => tracing::error!(error = %e, "a lane ended abnormally"),
            },
        }
    }
    owner.shut_down().await;
    stopper.stop();
    let _ = tokio::task::spawn_blocking(move || watcher_thread.join()).await;
    let summary = owner.summary();
    owner.ctx.face.event(&Event::Summary {
        time: events::now(),
        summary: summary.clone(),
    });
    owner.ctx.session.logout().await;
    let settled = if owner.queue.has_batch() {
        owner.queue.row_states()
    } else {
        owner.tokens.iter().copied().map(Some).collect()
    };
    Ok(Ended {
        summary,
        settled,
        report_error: owner.report_error,
    })
}

impl lane::Ctx {
    /// The operator's own signing pair (a token login): its token is never enrolled.
    fn session_admin_key(&self) -> Option<crate::token::Selector> {
        match &self.reg.login {
            crate::config::LoginOptions::Token { key, .. } => Some(crate::token::Selector {
                uri: Some(key.uri.clone()),
                ..Default::default()
            }),
            _ => None,
        }
    }
}

impl Owner {
    fn change(&mut self, change: Change) {
        match change {
            Change::Inserted(seen) if seen.admin_token => {
                self.log(format!(
                    "{} holds the operator's own signing pair (admin_key): it is not enrolled",
                    seen.key
                ));
            }
            Change::Inserted(seen) => self.inserted(seen),
            Change::Removed(key) => self.removed(&key),
            Change::Trouble(message) => self.log(format!("cannot read tokens: {message}")),
        }
    }

    fn log(&self, message: String) {
        tracing::info!("{message}");
        self.ctx.face.event(&Event::Log {
            time: events::now(),
            message,
        });
    }

    fn inserted(&mut self, seen: Seen) {
        let name = seen.key.clone();
        let id = name.id();
        if self.lanes.contains_key(&id) {
            // Pulled and put back while its lane ends: it comes again once the lane has ended.
            self.reinserted.insert(id, seen);
            return;
        }
        if self.waiting.iter().any(|j| j.name().id() == id) {
            return;
        }
        let certs: Vec<String> = seen.pairs.iter().map(|p| p.sha256.clone()).collect();
        let assignment = if seen.pairs.is_empty() {
            // Said, not recorded: a token still being written shows whole later (and comes
            // again), and one with nothing to enroll was never a row's.
            Assignment::Refused {
                why: "the token holds no valid signing certificate; load one onto it first".into(),
                record: false,
            }
        } else {
            self.queue.assign(&id, &seen.key.serial, &certs)
        };
        let (row, username, status) = match &assignment {
            Assignment::Row(i) => {
                let r = &self.queue.rows()[*i];
                (Some(*i), Some(r.username.clone()), r.status)
            }
            _ => (None, None, None),
        };
        self.ctx.face.event(&Event::Seen {
            time: events::now(),
            token: name.clone(),
            username: username.clone(),
            line: row.map(|i| self.queue.rows()[i].line),
        });
        match assignment {
            // The token has its row already (registered in this run): said, not recorded again.
            Assignment::Refused { why, record: false } => {
                self.log(format!("token {}: {why}", seen.key));
                return;
            }
            Assignment::Refused { why, record: true } => {
                let pair = seen.pairs.first();
                self.record(report::Row {
                    time: events::now(),
                    reader: name.reader,
                    token_label: name.label,
                    token_serial: name.serial,
                    username: String::new(),
                    cert_subject: pair.map(|p| p.subject.clone()).unwrap_or_default(),
                    cert_serial: pair.map(|p| p.cert_serial.clone()).unwrap_or_default(),
                    cert_sha256: pair.map(|p| p.sha256.clone()).unwrap_or_default(),
                    status: String::new(),
                    outcome: "skipped".into(),
                    code: None,
                    message: why,
                    seconds: 0.0,
                });
                return;
            }
            _ => {}
        }
        self.waiting.push_back(Job {
            key: seen.key,
            pairs: seen.pairs,
            pin_pad: seen.pin_pad,
            slots: seen.slots,
            row,
            username,
            status: status.unwrap_or(self.ctx.reg.status),
            arrived: Instant::now(),
            cancel: Arc::default(),
        });
    }

    fn removed(&mut self, key: &TokenKey) {
        let id = key.id();
        self.reinserted.remove(&id);
        if let Some(lane) = self.lanes.get(&id) {
            // The lane ends as soon as it can; an answer already under way still stands.
            lane.cancel.cancel();
            return;
        }
        if let Some(i) = self.waiting.iter().position(|j| j.name().id() == id) {
            let job = self.waiting.remove(i).expect("found above");
            if let Some(r) = job.row {
                self.queue.release(r);
            }
            self.ctx.face.event(&Event::Removed {
                time: events::now(),
                token: job.name(),
                username: job.username,
            });
        }
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Pause(p) => self.paused = p,
            Control::Skip(id) => {
                if let Some(lane) = self.lanes.get(&id) {
                    self.skipped.insert(id);
                    lane.cancel.cancel();
                } else if let Some(i) = self.waiting.iter().position(|j| j.name().id() == id) {
                    let job = self.waiting.remove(i).expect("found above");
                    self.skipped.insert(id.clone());
                    self.lane_ended(&id, job.row, job.username, &job.key, End::Removed);
                }
            }
        }
    }

    fn start_lanes(&mut self, cap: usize) {
        while !self.paused && self.report_error.is_none() && self.lanes.len() < cap.max(1) {
            let Some(job) = self.waiting.pop_front() else {
                return;
            };
            let id = job.name().id();
            self.lanes.insert(
                id.clone(),
                Lane {
                    cancel: job.cancel.clone(),
                    row: job.row,
                    username: job.username.clone(),
                    key: job.key.clone(),
                },
            );
            let ctx = self.ctx.clone();
            let rt = tokio::runtime::Handle::current();
            self.running.spawn_blocking(move || {
                let end = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    lane::run(&ctx, &job, &rt)
                }))
                .unwrap_or_else(|p| {
                    let why = crate::agent::panic_text(p.as_ref());
                    tracing::error!(token = %job.key, %why, "a lane failed unexpectedly");
                    End::Done {
                        row: Box::new(report::Row {
                            time: events::now(),
                            reader: job.key.reader.clone(),
                            token_label: job.key.label.clone(),
                            token_serial: job.key.serial.clone(),
                            username: job.username.clone().unwrap_or_default(),
                            outcome: "failed".into(),
                            message: format!("the lane failed unexpectedly ({why}); check the journal, then insert the token again"),
                            status: job.status.name().into(),
                            ..Default::default()
                        }),
                        settled: Settled::FailedToken,
                        phases: Vec::new(),
                    }
                });
                (id, end)
            });
        }
    }

    fn ended(&mut self, id: &str, end: End) {
        let Some(lane) = self.lanes.remove(id) else {
            return;
        };
        self.lane_ended(id, lane.row, lane.username, &lane.key, end);
    }

    fn lane_ended(
        &mut self,
        id: &str,
        row: Option<usize>,
        username: Option<String>,
        key: &TokenKey,
        end: End,
    ) {
        let skipped = self.skipped.remove(id);
        match end {
            End::Removed if skipped => {
                self.queue.finish(row, Settled::Skipped, "", "");
                if row.is_none() {
                    self.tokens.push(Settled::Skipped);
                }
                let name = key.clone();
                self.record(report::Row {
                    time: events::now(),
                    reader: name.reader,
                    token_label: name.label,
                    token_serial: name.serial,
                    username: username.unwrap_or_default(),
                    outcome: "skipped".into(),
                    message: "skipped by the operator".into(),
                    ..Default::default()
                });
            }
            End::Removed => {
                if let Some(r) = row {
                    self.queue.release(r);
                }
                self.ctx.face.event(&Event::Removed {
                    time: events::now(),
                    token: key.clone(),
                    username,
                });
                if let Some(seen) = self.reinserted.remove(id) {
                    self.inserted(seen);
                }
            }
            End::Done {
                row: report_row,
                settled,
                phases,
            } => {
                for (p, d) in phases {
                    let e = self.phases.entry(p).or_default();
                    e.0 += d;
                    e.1 += 1;
                }
                self.queue
                    .finish(row, settled, &report_row.cert_sha256, &report_row.username);
                if row.is_none() {
                    self.tokens.push(settled);
                }
                self.done_here += 1;
                self.record(*report_row);
                // Pulled and put back as its lane ended: it is looked at again (a registered
                // one is only said to be done).
                if let Some(seen) = self.reinserted.remove(id) {
                    self.inserted(seen);
                }
            }
        }
    }

    /// Appends a row to the report (synced) and tells the face. A report that cannot be
    /// written stops the run: no token is enrolled without its record.
    fn record(&mut self, row: report::Row) {
        if let Err(e) = self.report.append(&row) {
            tracing::error!(error = %e, "the report cannot be written: the station stops");
            self.report_error.get_or_insert(e.to_string());
            for j in self.waiting.drain(..) {
                j.cancel.cancel();
            }
        }
        self.ctx.face.event(&Event::Done { row: row.clone() });
        self.rows.push(row);
    }

    /// At the end: waiting tokens are withdrawn, lanes waiting for a PIN are cancelled, and
    /// registrations under way finish and are recorded.
    async fn shut_down(&mut self) {
        // A lane waiting for a login (the station locked) ends with the question.
        self.ctx.quit.cancel();
        for j in self.waiting.drain(..) {
            if let Some(r) = j.row {
                self.queue.release(r);
            }
        }
        for lane in self.lanes.values() {
            lane.cancel.cancel();
        }
        while let Some(joined) = self.running.join_next().await {
            match joined {
                Ok((id, end)) => self.ended(&id, end),
                Err(e) => tracing::error!(error = %e, "a lane ended abnormally"),
            }
        }
    }

    fn summary(&self) -> Summary {
        let count = |o: &str| self.rows.iter().filter(|r| r.outcome == o).count();
        let seconds = self.started.elapsed().as_secs_f64();
        Summary {
            registered: count("registered"),
            rejected: count("rejected"),
            failed: count("failed"),
            skipped: count("skipped"),
            unsettled: self.queue.open_rows(),
            tokens_per_hour: if seconds > 0.0 {
                (self.done_here as f64 * 3600.0 / seconds * 10.0).round() / 10.0
            } else {
                0.0
            },
            slowest_phase: self
                .phases
                .iter()
                .map(|(p, (d, n))| (p, d.as_secs_f64() / f64::from((*n).max(1))))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(p, s)| Slowest {
                    phase: p.to_string(),
                    seconds: (s * 1000.0).round() / 1000.0,
                }),
            seconds: (seconds * 1000.0).round() / 1000.0,
        }
    }
}
