//! `tokenroll simulate`: the CENTAGATE simulator as a process, for tests and demos.
//!
//! Owns: the simulator's command-line concerns (loopback-only unless told, the certificate
//! file). Does not own: the simulator (see `simulator`).

use super::args::SimulateArgs;
use super::exit;
use crate::config::RawConfig;
use std::io::Write;

pub fn simulate_cmd(
    args: SimulateArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    if !args.listen.ip().is_loopback() && !args.listen_any {
        eprintln!(
            "tokenroll simulate: {} is not a loopback address; the simulator is for tests and \
             accepts any registration its admin secrets allow, so it listens on loopback only. \
             Use --listen 127.0.0.1:PORT, or add --listen-any on an isolated test network",
            args.listen
        );
        return exit::USAGE;
    }
    let run = || -> Result<(), String> {
        let raw =
            crate::config::resolve(RawConfig::default(), args.config.config.as_deref(), paths)
                .map_err(|e| e.to_string())?;
        let secrets = crate::config::admin_secrets(&raw, env).map_err(|e| e.to_string())?;
        let users_text = std::fs::read_to_string(&args.users)
            .map_err(|e| format!("cannot read {}: {e}", args.users.display()))?;
        let users = crate::simulator::Users::parse(&users_text)
            .map_err(|e| format!("{}: {e}", args.users.display()))?;
        let mut rules = crate::simulator::Rules::new(args.admin.clone(), secrets, users);
        rules.timestamp_in_seconds = args.timestamp_seconds;
        if let Some(key) = &args.app_key {
            let secret = env
                .app_secret
                .clone()
                .ok_or("--app-key needs the App's secretKey in TOKENROLL_APP_SECRET")?;
            rules.sessions.app = Some((key.clone(), secret));
        }
        if let Some(ms) = args.session_timeout_ms {
            rules.sessions.timeout = std::time::Duration::from_millis(ms);
        }
        rules.sessions.force_login_code = args.login_code;
        if let Some(t) = &args.trust {
            let pem = std::fs::read(t).map_err(|e| format!("cannot read {}: {e}", t.display()))?;
            rules.trust = crate::cms::certs_from_pem(&pem).map_err(|e| e.to_string())?;
        }
        let cfg = crate::simulator::SimConfig {
            listen: args.listen,
            rules,
            faults: crate::simulator::Faults {
                force_code: args.force_code,
                code_as_string: args.code_as_string,
                html_status: args.html_status.or(args.html_500.then_some(500)),
                not_json: args.not_json,
                object: args.object.clone(),
                cut_body: args.cut_body,
                delay: args.delay_ms.map(std::time::Duration::from_millis),
                huge_body: args.huge_body,
                redirect: args.redirect.clone(),
                json_status: args.json_status,
                end_sessions_after: args.end_sessions_after,
                drop_first: args.drop_first,
                lose_answers: args.lose_answers,
                lists_unavailable: args.lists_unavailable,
                clock_offset_secs: args.clock_offset_secs,
            },
            bad_tls: match args.bad_tls.as_deref() {
                Some("expired") => Some(crate::simulator::BadTls::Expired),
                Some(_) => Some(crate::simulator::BadTls::WrongHost),
                None => None,
            },
            record: args.record.clone(),
            tls_files: args.tls_cert.clone().zip(args.tls_key.clone()),
        };
        super::runtime().block_on(async {
            let running = crate::simulator::start(cfg)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
            if let Some(p) = &args.cert_out {
                std::fs::write(p, &running.cert_pem)
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            }
            println!("listening on {}", running.origin());
            let _ = std::io::stdout().flush();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|e| e.to_string())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            Ok(())
        })
    };
    match run() {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("tokenroll simulate: {}", crate::text::plain_lines(&e));
            exit::USAGE
        }
    }
}
