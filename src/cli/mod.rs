//! The command line: argument structs (`args`), one file per subcommand, rendering (`render`)
//! and the stable exit codes (`exit`).
//!
//! Owns: argv → raw config layer, printing, exit codes. Does not own: any step of an enrollment
//! (see `enroll`) or what a configuration value means (see `config`).

pub mod agent;
pub mod args;
mod config_show;
mod doctor;
mod enroll;
mod enroll_relay;
pub mod exit;
mod journal;
mod manuals;
mod provision;
mod reconcile;
mod relay;
pub mod render;
mod session;
mod simulate;
mod station;
mod status;
mod tokens;
mod verify;

pub use args::{Cli, Command};
pub use render::print_step;

/// Runs one parsed command line with what the environment said at start (its secrets, taken out
/// of it, and its folders); returns the process exit code.
pub fn run(cli: Cli, env: &crate::secret::EnvSecrets, paths: &crate::paths::Paths) -> i32 {
    match cli.command {
        Command::Enroll(a) => enroll::enroll_cmd(a, env, paths),
        Command::Sign(a) => enroll::sign_cmd(a, env, paths),
        Command::Tokens(a) => tokens::tokens_cmd(a, paths),
        Command::Verify(a) => verify::verify_cmd(a),
        Command::Journal(a) => journal::journal_cmd(a, env, paths),
        Command::Session(a) => session::session_cmd(a, env, paths),
        Command::Status(a) => status::status_cmd(a, env, paths),
        Command::Simulate(a) => simulate::simulate_cmd(a, env, paths),
        Command::Relay(a) => relay::relay_cmd(a, env, paths),
        Command::Agent(a) => agent::run(a, env, paths),
        Command::Station(a) => station::station_cmd(a, env, paths),
        Command::Config(a) => config_show::config_cmd(a, env, paths),
        Command::Doctor(a) => doctor::doctor_cmd(a, env, paths),
        Command::Demo => crate::demo::run(),
        Command::Completions { shell } => manuals::completions(shell),
        Command::Manpages { dir } => manuals::manpages(&dir),
        Command::Provision(a) => provision::provision_cmd(a),
    }
}

/// A command line clap refused. With `--json` among the arguments the one JSON object is still
/// printed, so scripts never have to parse clap's text; help and version print as usual.
pub fn argument_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let wants_json = std::env::args().any(|a| {
        a == "--json" || (a.starts_with("--json=") && !a.eq_ignore_ascii_case("--json=false"))
    });
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !wants_json {
        e.exit();
    }
    let message = e
        .render()
        .to_string()
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    render::usage_error(true, message, "sha256")
}

/// Resolves at SIGTERM, at Ctrl-C, or when the face asks to quit (`quit`): how the long-running
/// faces (the agent, the station) are told to end.
pub(crate) async fn stopped(quit: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = quit.recv() => {}
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What no file or variable gives, asked at the terminal without echo, for the one-shot
/// commands: the admin's password, the admin token's PIN.
pub(crate) struct TerminalAsk;

impl crate::enroll::AskAdmin for TerminalAsk {
    fn password(&self, admin: &str) -> Result<Option<crate::secret::AdminPassword>, String> {
        rpassword::prompt_password(format!(
            "Password of the CENTAGATE admin '{}': ",
            crate::text::plain(admin)
        ))
        .map(|p| (!p.is_empty()).then(|| crate::secret::AdminPassword::new(p)))
        .map_err(|e| {
            format!(
                "no terminal to ask for the admin's password ({e}); give it in \
                 TOKENROLL_ADMIN_PASSWORD or admin_password_file"
            )
        })
    }

    fn token_pin(
        &self,
        admin: &str,
        token: &str,
        note: Option<&str>,
    ) -> Result<Option<crate::secret::Pin>, String> {
        if let Some(n) = note {
            eprintln!("tokenroll: {}", crate::text::plain(n));
        }
        rpassword::prompt_password(format!(
            "PIN of token '{}', for the CENTAGATE login as '{}': ",
            crate::text::plain(token),
            crate::text::plain(admin)
        ))
        .map(|p| (!p.is_empty()).then(|| crate::secret::Pin::new(p)))
        .map_err(|e| {
            format!(
                "no terminal to ask for the admin token's PIN ({e}); give --admin-pin-env VAR \
                 or admin_pin_file"
            )
        })
    }
}
