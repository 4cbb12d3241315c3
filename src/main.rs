use clap::Parser;
use tokenroll::cli::{self, Cli, Command};
use tokenroll::text::OneLine;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// The agent log, shared by every record's writer.
struct LockedFile(std::sync::Arc<std::sync::Mutex<std::fs::File>>);

impl std::io::Write for LockedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut f = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flush()
    }
}

/// The agent also logs to `$XDG_STATE_HOME/tokenroll/agent.log` (owner-only, never through a
/// link), which "Open log" shows; the station's terminal UI to `station.log` there only (the
/// screen is the UI's). Without a usable state folder the agent refuses to start (see
/// `cli::agent`), so the reason is said there.
fn state_log(paths: &tokenroll::paths::Paths, name: &str) -> Option<std::fs::File> {
    let dir = paths.state_dir().ok()?;
    tokenroll::paths::private_dir(dir).ok()?;
    tokenroll::paths::open_append(&dir.join(name)).ok()
}

/// No core dumps: a PIN, the admin's authToken and secretCode or a cenToken may be in memory, and a
/// core file would keep them on disk. Also makes the process unreadable by ptrace from other
/// processes of the same user.
fn no_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls with valid arguments; failure leaves the defaults in place.
    unsafe {
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

fn main() {
    // Before anything else, while the process has one thread: no child (pinentry, xdg-open, the
    // log viewer) may inherit an admin secret.
    let env = tokenroll::secret::EnvSecrets::take();
    // The folders, resolved once and handed down.
    let paths = tokenroll::paths::Paths::from_env();
    no_core_dumps();
    let parsed = Cli::try_parse();
    let is_agent = matches!(
        &parsed,
        Ok(Cli {
            command: Command::Agent(_)
        })
    );
    // The long-running faces log what they do; one-shot commands only what goes wrong.
    let is_service = matches!(
        &parsed,
        Ok(Cli {
            command: Command::Relay(_)
        })
    );
    // The station's terminal UI owns the screen: its log goes to a file alone.
    let station_ui = matches!(
        &parsed,
        Ok(Cli {
            command: Command::Station(a)
        }) if a.agent.headless != Some(true) && !a.check
    );
    let default_level = if is_agent || is_service || station_ui {
        "info"
    } else {
        "warn"
    };
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| default_level.into())
    };
    // Every record is one line (untrusted text inside it escaped), and no colour codes.
    let stderr = || OneLine(std::io::stderr());
    if let Some(file) = station_ui
        .then(|| state_log(&paths, "station.log"))
        .flatten()
    {
        let file = std::sync::Arc::new(std::sync::Mutex::new(file));
        tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(false)
            .with_writer(move || OneLine(LockedFile(file.clone())))
            .init();
    } else {
        match is_agent.then(|| state_log(&paths, "agent.log")).flatten() {
            Some(file) => {
                let file = std::sync::Arc::new(std::sync::Mutex::new(file));
                let to_file = move || OneLine(LockedFile(file.clone()));
                tracing_subscriber::fmt()
                    .with_env_filter(filter())
                    .with_ansi(false)
                    .with_writer(stderr.and(to_file))
                    .init()
            }
            None => tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .with_writer(stderr)
                .init(),
        }
    }
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => std::process::exit(cli::argument_error(e)),
    };
    let code = cli::run(cli, &env, &paths);
    drop(env);
    std::process::exit(code);
}
