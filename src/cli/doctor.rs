//! `tokenroll doctor [--json]`: runs the desk's checks and prints them, one line each (OK, WARN,
//! FAIL, SKIP, with what to do) or as one JSON object `{"ok", "checks": [{"name", "status",
//! "detail", "fix"}]}`. Exit 0 when no check failed, 1 when one did.
//!
//! Owns: this command's output and exit code. Does not own: the checks (see `doctor`).

use super::args::AllKeys;
use super::exit;

pub fn doctor_cmd(
    args: AllKeys,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    let json = args.output.json.unwrap_or(false);
    let report = crate::doctor::run(crate::doctor::Inputs {
        layers: crate::config::layers(args.layer(), args.config.config.as_deref(), paths),
        flags_and_env: args.layer(),
        env,
        paths,
        pcsc_socket: std::env::var_os("PCSCLITE_CSOCK_NAME").map(Into::into),
    });
    if json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("the report serializes")
        );
    } else {
        for c in &report.checks {
            println!("{}", crate::text::plain(&c.line()));
        }
        let count = |s| report.checks.iter().filter(|c| c.status == s).count();
        use crate::doctor::Status;
        println!(
            "{} ok, {} warning(s), {} failed, {} skipped",
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Fail),
            count(Status::Skip)
        );
    }
    if report.ok {
        exit::OK
    } else {
        exit::FAILURE
    }
}
