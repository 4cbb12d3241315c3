//! `tokenroll agent`: resolves the agent's configuration, keeps one agent per session, logs to
//! `$XDG_STATE_HOME/tokenroll/agent.log`, and runs the agent until SIGTERM or Quit.
//!
//! Owns: the agent's process concerns. Does not own: the agent's logic (see `agent`).

use crate::agent::{self, state::EnrollOnInsert, AgentConfig, UserFrom};
use crate::cli::AgentArgs;
use crate::config::{RawConfig, RegisterOptions, SignOptions};
use std::time::Duration;

fn resolve(args: &AgentArgs) -> Result<(AgentConfig, Option<String>, bool), String> {
    let flags = RawConfig {
        server: args.server.clone(),
        admin: args.admin.clone(),
        user: args.user.clone(),
        user_from: args.user_from.clone(),
        status: args.status.clone(),
        timestamp_unit: args.timestamp_unit.clone(),
        module: args.module.clone(),
        key: args.key.clone(),
        algorithm: args.algorithm.clone(),
        challenge: args.challenge.clone(),
        challenge_url: args.challenge_url.clone(),
        ca_file: args.ca_file.clone(),
        connect_timeout: args.connect_timeout,
        timeout: args.timeout,
        pinentry: args.pinentry.clone(),
        enroll_on_insert: args.enroll_on_insert.clone(),
        headless: args.headless.then_some(true),
        poll_ms: args.poll_ms,
        ..Default::default()
    };
    let raw = crate::config::resolve(flags, args.config.as_deref()).map_err(|e| e.to_string())?;
    let sign = SignOptions::from_raw(&raw).map_err(|e| e.to_string())?;
    let user = match (&raw.user, &raw.user_from) {
        (Some(u), _) => UserFrom::Fixed(u.clone()),
        (None, Some(f)) => UserFrom::parse(f)?,
        (None, None) => UserFrom::Login,
    };
    let register = RegisterOptions::without_user(&raw, String::new()).map_err(|e| e.to_string())?;
    let headless = raw.headless.unwrap_or(false);
    let policy = match &raw.enroll_on_insert {
        Some(p) => p.parse()?,
        None if headless => EnrollOnInsert::Auto,
        None => EnrollOnInsert::Ask,
    };
    let cfg = AgentConfig {
        module: sign.module,
        key: sign.selector.uri,
        algorithm: sign.algorithm,
        challenge: sign.challenge,
        http: sign.http,
        register,
        user,
        policy,
        poll: Duration::from_millis(raw.poll_ms.unwrap_or(500).max(50)),
        state_dir: agent::registry::state_dir(),
    };
    Ok((cfg, raw.pinentry, headless))
}

/// Holds the per-session lock; a second agent finds it taken.
fn single_instance(state_dir: &std::path::Path) -> Result<std::fs::File, String> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| state_dir.to_path_buf());
    agent::registry::private_dir(&dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("tokenroll-agent.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(
            "another tokenroll agent is already running in this session; use its tray icon".into(),
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

pub fn run(args: AgentArgs) -> i32 {
    let (cfg, pinentry, headless) = match resolve(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tokenroll agent: {e}");
            return 2;
        }
    };
    let _lock = match single_instance(&cfg.state_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tokenroll agent: {e}");
            return 1;
        }
    };
    if !headless {
        tracing::warn!("the tray icon is not available in this build yet; running headless");
    }
    tracing::info!(policy = ?cfg.policy, user = ?cfg.user, "agent starting");
    let dialog = Box::new(crate::ui::dialogs::Pinentry { program: pinentry });
    let notifier = Box::new(crate::ui::dialogs::DesktopNotifier::new());
    let (_request_tx, requests) = tokio::sync::mpsc::unbounded_channel();
    let (view_tx, mut view_rx) = tokio::sync::watch::channel(agent::View::default());
    let rt = crate::cli::runtime();
    let result = rt.block_on(async move {
        tokio::spawn(async move {
            while view_rx.changed().await.is_ok() {
                let v = view_rx.borrow_and_update().clone();
                tracing::info!(status = %v.status, "status");
            }
        });
        let stop = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        agent::run(cfg, dialog, notifier, requests, view_tx, stop).await
    });
    // Blocking dialogs may still be open; they must not keep the process alive.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => {
            tracing::info!("agent stopped");
            0
        }
        Err(e) => {
            eprintln!("tokenroll agent: {e}");
            1
        }
    }
}
