//! `tokenroll station`: resolves the options and the batch, runs the preflight, then the station
//! with its face (the terminal UI, or `--headless`), writes the HTML report, and returns the
//! exit code, the first that applies: 2 a bad batch or configuration; 5 a row failed on the
//! network; 3 a row failed on its token; 4 a row was rejected; 1 a row left unsettled (never
//! inserted, or skipped); 0 every row registered.
//!
//! Owns: this command's process concerns. Does not own: the station (see `station`).

use super::args::StationArgs;
use super::exit;
use crate::config::{Face as ConfigFace, RegisterOptions, SignOptions};
use crate::enroll::{Session, UserFrom};
use crate::station::events::{Event, Face};
use crate::station::lane::{Ctx, EnvPin, OnBound};
use crate::station::preflight::{self, Status};
use crate::station::queue::Settled;
use crate::station::{self as st, Control, StationConfig};
use crate::ui::pin::PinSource;
use std::sync::Arc;
use std::time::Duration;

/// Everything resolved before anything is touched.
struct Resolved {
    sign: SignOptions,
    reg: RegisterOptions,
    api: crate::api::login::AuthApi,
    batch: Option<st::batch::Batch>,
    report: std::path::PathBuf,
    lanes: usize,
    on_bound: OnBound,
    headless: bool,
    pinentry: Option<String>,
    poll: Duration,
}

fn resolve(
    args: &StationArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> Result<Resolved, String> {
    let layers = crate::config::layers(args.layer(), args.config.config.as_deref(), paths)
        .map_err(|e| e.to_string())?;
    let mut raw = layers.merge().map_err(|e| e.to_string())?;
    if raw.server.user.is_some() {
        return Err(
            "--user (or the user key) names one user for every token, and the station \
                    enrolls many: give a --batch, --user-from cn|email|upn, or type each \
                    username"
                .into(),
        );
    }
    if raw.relay_client.relay.is_some() {
        return Err(
            "the station registers under the operator's own CENTAGATE session: give \
                    --server and the admin login, not --relay"
                .into(),
        );
    }
    if raw.pin.pin_stdin == Some(true) {
        return Err(
            "--pin-stdin gives one PIN, and the station enrolls many tokens: use \
                    --pin-env VAR for a shared transport PIN, or let each holder type theirs"
                .into(),
        );
    }
    // The station asks for each username unless told where else to take it from.
    raw.server.user_from.get_or_insert_with(|| "ask".into());
    let sign = SignOptions::from_raw(&raw, env).map_err(|e| e.to_string())?;
    let reg = RegisterOptions::from_raw(&raw, ConfigFace::Agent, env, paths)
        .map_err(|e| e.to_string())?;
    if reg.user == UserFrom::Login {
        return Err(
            "user_from = login takes the station's own login name for every token: \
                    use --batch, --user-from cn|email|upn, or ask"
                .into(),
        );
    }
    let api = crate::config::auth_api(&raw).map_err(|e| e.to_string())?;
    let batch = match &args.batch {
        Some(p) => Some(st::batch::read(p).map_err(|e| e.to_string())?),
        None => None,
    };
    // A batch row is one more place a policy key can be set: its status must agree too.
    if let (Some(b), Some((fixed, file))) = (&batch, layers.policy.status()) {
        let refused: Vec<String> = b
            .rows
            .iter()
            .filter(|r| r.status.is_some_and(|s| s != fixed))
            .map(|r| {
                format!(
                    "line {}: status {} is not allowed: the administrator's policy {} fixes \
                     status = {}",
                    r.line,
                    r.status.map(|s| s.name()).unwrap_or_default(),
                    file.display(),
                    fixed.name()
                )
            })
            .collect();
        if !refused.is_empty() {
            return Err(format!(
                "the batch file cannot be used; nothing was started:\n{}",
                refused.join("\n")
            ));
        }
    }
    // The preflight alone touches no token and writes no report.
    let report = args
        .report
        .clone()
        .or_else(|| args.check.then(std::path::PathBuf::new));
    let report = report.ok_or(
        "--report FILE.csv is required: the station's record of every token (a restart with the \
         same file goes on where the run ended)",
    )?;
    let headless = raw.agent.headless.unwrap_or(false);
    let on_bound = match args.on_bound.as_deref() {
        Some(s) => s.parse()?,
        None if headless => OnBound::Skip,
        None => OnBound::Ask,
    };
    if headless && on_bound == OnBound::Ask {
        return Err(
            "--on-bound ask needs the terminal UI to ask in; with --headless use skip \
                    or replace"
                .into(),
        );
    }
    if args.jsonl && !headless {
        return Err(
            "--jsonl writes events on stdout, where the terminal UI draws: add --headless".into(),
        );
    }
    let lanes = match args.lanes {
        Some(0) => return Err("--lanes must be at least 1".into()),
        Some(n) => n.min(64),
        None => 4,
    };
    Ok(Resolved {
        sign,
        reg,
        api,
        batch,
        report,
        lanes,
        on_bound,
        headless,
        pinentry: raw.agent.pinentry.clone(),
        poll: Duration::from_millis(raw.agent.poll_ms.unwrap_or(500).max(50)),
    })
}

pub fn station_cmd(
    args: StationArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    let mut r = match resolve(&args, env, paths) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokenroll station: {}", crate::text::plain_lines(&e));
            return exit::USAGE;
        }
    };
    let (control_tx, control) = tokio::sync::mpsc::unbounded_channel::<Control>();
    let (quit_tx, mut quit_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    // The preflight alone (`--check`) prints its lines; it needs no UI.
    let (face, tui): (Arc<dyn Face>, Option<st::tui::Tui>) = if r.headless || args.check {
        let face = st::headless::Headless {
            jsonl: args.jsonl,
            dialog: Box::new(crate::ui::dialogs::Pinentry {
                program: r.pinentry.clone(),
            }),
            out: Default::default(),
        };
        (Arc::new(face), None)
    } else {
        let rows = r
            .batch
            .as_ref()
            .map(|b| b.rows.iter().map(|r| r.username.clone()).collect())
            .unwrap_or_default();
        let title = format!("{} @ {}", r.reg.admin, r.reg.server);
        match st::tui::start(rows, title, control_tx.clone(), quit_tx.clone()) {
            Ok((face, tui)) => (face, Some(tui)),
            Err(e) => {
                eprintln!("tokenroll station: {}", crate::text::plain_lines(&e));
                return exit::USAGE;
            }
        }
    };
    // Ends the terminal UI (restoring the terminal) before anything more is printed.
    let end_ui = |tui: Option<st::tui::Tui>| {
        if let Some(t) = tui {
            if let Err(e) = t.end() {
                eprintln!(
                    "tokenroll station: the terminal UI: {}",
                    crate::text::plain(&e)
                );
            }
        }
    };
    let fail = |code: i32, message: String| {
        eprintln!("tokenroll station: {}", crate::text::plain_lines(&message));
        code
    };
    let client = match crate::api::CentagateClient::new(&r.reg.server, r.sign.http.clone()) {
        Ok(c) => Arc::new(c),
        Err(e) => return fail(exit::USAGE, e.to_string()),
    };
    let quit = Arc::new(crate::ui::dialogs::Cancel::default());
    let session = Arc::new(Session::new(
        client.clone(),
        r.reg.login.clone(),
        r.reg.admin.clone(),
        Arc::new(st::headless::FaceAsk {
            face: face.clone(),
            quit: quit.clone(),
        }),
    ));
    let journal = match crate::journal::Journal::open(&r.reg.journal) {
        Ok(j) => j,
        Err(e) => return fail(exit::FAILURE, e.to_string()),
    };
    let rt = super::runtime();
    let checks = rt.block_on(preflight::run(&preflight::Preflight {
        module: r.sign.module.as_deref(),
        client: &client,
        session: &session,
        api: r.api,
        admin: &r.reg.admin,
        batch_rows: r.batch.as_ref().map(|b| b.rows.len()),
    }));
    for c in &checks {
        face.event(&Event::Log {
            time: st::events::now(),
            message: c.line(),
        });
    }
    let failed = checks.iter().find(|c| c.status == Status::Fail);
    if args.check || failed.is_some() {
        if tui.is_some() {
            end_ui(tui);
            for c in &checks {
                eprintln!("{}", crate::text::plain(&c.line()));
            }
        }
        if !args.check {
            eprintln!("tokenroll station: the preflight failed; nothing was touched");
        }
        rt.block_on(session.logout());
        return match failed.map(|c| c.name.as_str()) {
            None => exit::OK,
            Some("module" | "slots") => exit::TOKEN,
            Some("login") => exit::REFUSED,
            Some(_) => exit::NETWORK,
        };
    }
    let env_pin = match std::mem::replace(&mut r.sign.pin, PinSource::Terminal) {
        PinSource::Env { var, pin: None } => {
            return fail(
                exit::USAGE,
                format!("the variable {var} named by --pin-env is not set"),
            )
        }
        PinSource::Env { pin, .. } => pin,
        _ => None,
    };
    let key = r.sign.selector.uri.clone();
    let origin = client.origin().to_string();
    let server_shown = crate::api::client::register_url(&origin, &r.reg.admin);
    let admin = r.reg.admin.clone();
    let ctx = Ctx {
        module: Default::default(),
        session,
        origin,
        digest: r.sign.algorithm,
        challenge: r.sign.challenge.clone(),
        http: r.sign.http.clone(),
        key,
        journal,
        face: face.clone(),
        env_pin: EnvPin::new(env_pin),
        on_bound: r.on_bound,
        run: st::run_id(&r.report),
        interactive: !r.headless,
        quit: quit.clone(),
        reg: r.reg,
    };
    let cfg = StationConfig {
        module: r.sign.module.clone(),
        poll: r.poll,
        end_when_settled: r.headless && r.batch.is_some(),
        batch: r.batch,
        report: r.report.clone(),
        lanes: r.lanes,
    };
    let ended =
        rt.block_on(async { st::run(cfg, ctx, control, super::stopped(&mut quit_rx)).await });
    quit.cancel();
    rt.shutdown_timeout(Duration::from_millis(200));
    end_ui(tui);
    let ended = match ended {
        Ok(e) => e,
        Err(e) => return fail(exit::FAILURE, e),
    };
    if let Some(path) = &args.html {
        if let Err(e) = write_html(path, &r.report, &admin, &server_shown, &ended.summary) {
            return fail(exit::FAILURE, e);
        }
    }
    if !r.headless {
        // The summary stays on the terminal once the UI is gone.
        eprintln!(
            "{}",
            st::headless::line(&Event::Summary {
                time: st::events::now(),
                summary: ended.summary.clone(),
            })
        );
    }
    if let Some(e) = &ended.report_error {
        return fail(exit::FAILURE, e.clone());
    }
    exit_code(&ended.settled)
}

fn write_html(
    path: &std::path::Path,
    report: &std::path::Path,
    operator: &str,
    server: &str,
    summary: &st::events::Summary,
) -> Result<(), String> {
    let (_, rows) = st::report::Report::open(report).map_err(|e| e.to_string())?;
    let sha = st::report::file_sha256(report)
        .map_err(|e| format!("cannot read the report {}: {e}", report.display()))?;
    let page = st::html::page(
        &st::html::Header {
            operator,
            server,
            report_path: &report.display().to_string(),
            report_sha256: &sha,
            generated: &st::events::now(),
        },
        summary,
        &rows,
    );
    std::fs::write(path, page)
        .map_err(|e| format!("cannot write the HTML report {}: {e}", path.display()))
}

/// The exit code of a run's rows, the first that applies.
fn exit_code(settled: &[Option<Settled>]) -> i32 {
    let any = |s: Settled| settled.contains(&Some(s));
    if any(Settled::FailedNetwork) {
        exit::NETWORK
    } else if any(Settled::FailedToken) {
        exit::TOKEN
    } else if any(Settled::Rejected) {
        exit::REFUSED
    } else if settled
        .iter()
        .any(|s| matches!(s, None | Some(Settled::Skipped)))
    {
        exit::FAILURE
    } else {
        exit::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_exit_code_that_applies() {
        use Settled::*;
        assert_eq!(exit_code(&[Some(Registered), Some(Registered)]), exit::OK);
        assert_eq!(exit_code(&[]), exit::OK);
        assert_eq!(exit_code(&[Some(Registered), None]), exit::FAILURE);
        assert_eq!(exit_code(&[Some(Skipped), Some(Rejected)]), exit::REFUSED);
        assert_eq!(exit_code(&[Some(Rejected), Some(FailedToken)]), exit::TOKEN);
        assert_eq!(
            exit_code(&[Some(FailedToken), Some(FailedNetwork), None]),
            exit::NETWORK
        );
    }
}
