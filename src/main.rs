use clap::Parser;
use tokenroll::cli::{self, Cli, Command};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => std::process::exit(cli::argument_error(e)),
    };
    let code = match cli.command {
        Command::Enroll(a) => cli::enroll_cmd(a),
        Command::Sign(a) => cli::sign_cmd(a),
        Command::Tokens(a) => cli::tokens_cmd(a),
        Command::Verify(a) => cli::verify_cmd(a),
        Command::Simulate(a) => cli::simulate_cmd(a),
        Command::Demo => tokenroll::demo::run(),
        Command::Provision(a) => cli::provision_cmd(a),
    };
    std::process::exit(code);
}
