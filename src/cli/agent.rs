//! `tokenroll agent`: resolves the agent's configuration, keeps one agent per session, starts
//! the tray, and runs the agent until SIGTERM or Quit (`main` sets up its log,
//! `$XDG_STATE_HOME/tokenroll/agent.log`).
//!
//! Owns: the agent's process concerns. Does not own: the agent's logic (see `agent`).

use super::args::AgentArgs;
use super::exit;
use crate::agent::backend::Destination;
use crate::agent::{self, state::EnrollOnInsert, AgentConfig};
use crate::config::{RegisterOptions, RelayOptions, SignOptions};
use crate::paths::Paths;
use crate::ui::tray::Command;
use std::time::Duration;

fn resolve(
    args: &AgentArgs,
    env: &crate::secret::EnvSecrets,
    paths: &Paths,
) -> Result<(AgentConfig, Option<String>, bool), String> {
    let raw = crate::config::resolve(args.layer(), args.config.config.as_deref(), paths)
        .map_err(|e| e.to_string())?;
    // Through the relay (no admin secret on this desk), or to a server with the admin's session.
    let destination = match RelayOptions::from_raw(&raw, crate::config::Face::Agent, env, paths)
        .map_err(|e| e.to_string())?
    {
        Some(relay) => Destination::Relay(relay),
        None => Destination::Server(
            RegisterOptions::from_raw(&raw, crate::config::Face::Agent, env, paths)
                .map_err(|e| e.to_string())?,
        ),
    };
    let sign = SignOptions::from_raw(&raw, env).map_err(|e| e.to_string())?;
    let headless = raw.agent.headless.unwrap_or(false);
    let policy = match &raw.agent.enroll_on_insert {
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
        destination,
        policy,
        poll: Duration::from_millis(raw.agent.poll_ms.unwrap_or(500).max(50)),
        state_dir: {
            let dir = paths.state_dir().map_err(|e| e.to_string())?;
            crate::paths::private_dir(dir).map_err(|e| e.to_string())?;
            dir.to_path_buf()
        },
    };
    Ok((cfg, raw.agent.pinentry, headless))
}

/// The tray, or None (with the reason logged) where there is no session bus; on a desktop with
/// no tray host (stock GNOME) the icon is still published and the person is told, once, how to
/// see it, while notifications carry on.
fn start_tray(notifier: &crate::ui::dialogs::DesktopNotifier) -> Option<crate::ui::tray::Tray> {
    use crate::ui::dialogs::Notifier;
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
        tracing::warn!("no D-Bus session bus: running without a tray icon");
        return None;
    }
    match crate::ui::tray::Tray::new() {
        Ok(t) => {
            if !crate::ui::tray::tray_host_present() {
                notifier.notify(
                    "tokenroll is running without a tray icon",
                    "This desktop shows no tray. tokenroll keeps working through notifications. \
                     On GNOME, install and enable the AppIndicator extension \
                     (Debian: gnome-shell-extension-appindicator) to see its icon.",
                );
            }
            Some(t)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot show a tray icon: running without one");
            None
        }
    }
}

fn open_log(path: &std::path::Path) {
    if let Err(e) = std::process::Command::new("xdg-open").arg(path).spawn() {
        tracing::warn!(error = %e, log = %path.display(), "cannot open the log; read it with a text editor");
    }
}

/// Holds the per-session lock (in the runtime folder, else the state folder); a second agent
/// finds it taken.
fn single_instance(paths: &Paths) -> Result<std::fs::File, String> {
    let dir = paths.lock_dir().map_err(|e| e.to_string())?;
    crate::paths::private_dir(dir).map_err(|e| e.to_string())?;
    let path = paths.agent_lock().map_err(|e| e.to_string())?;
    let f = crate::paths::open_lock(&path).map_err(|e| e.to_string())?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(
            "another tokenroll agent is already running in this session; use its tray icon".into(),
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

pub fn run(args: AgentArgs, env: &crate::secret::EnvSecrets, paths: &Paths) -> i32 {
    let (cfg, pinentry, headless) = match resolve(&args, env, paths) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tokenroll agent: {}", crate::text::plain_lines(&e));
            return exit::USAGE;
        }
    };
    let _lock = match single_instance(paths) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tokenroll agent: {}", crate::text::plain_lines(&e));
            return exit::FAILURE;
        }
    };
    tracing::info!(
        policy = ?cfg.policy,
        user = ?cfg.destination.user(),
        via = if matches!(cfg.destination, agent::backend::Destination::Relay(_)) { "relay" } else { "server" },
        headless,
        "agent starting"
    );
    let dialog = Box::new(crate::ui::dialogs::Pinentry { program: pinentry });
    let notifier = crate::ui::dialogs::DesktopNotifier::new();
    let log_path = cfg.state_dir.join("agent.log");
    let (request_tx, requests) = tokio::sync::mpsc::unbounded_channel::<agent::EnrollRequest>();
    let (view_tx, mut view_rx) = tokio::sync::watch::channel(agent::View::default());
    let (quit_tx, mut quit_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let rt = crate::cli::runtime();
    let result = rt.block_on(async move {
        let mut tray = if headless {
            None
        } else {
            start_tray(&notifier)
        };
        let (menu_tx, mut menu_rx) = tokio::sync::mpsc::unbounded_channel();
        if tray.is_some() {
            crate::ui::tray::forward_menu_events(menu_tx);
        }
        let stop = super::stopped(&mut quit_rx);
        let ui = async {
            loop {
                tokio::select! {
                    changed = view_rx.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let v = view_rx.borrow_and_update().clone();
                        tracing::info!(status = %v.status, "status");
                        if let Some(t) = tray.as_mut() {
                            t.show(&v);
                        }
                    }
                    Some(event) = menu_rx.recv() => {
                        match tray.as_ref().and_then(|t| t.command(&event)) {
                            Some(Command::Enroll(request)) => { let _ = request_tx.send(request); }
                            Some(Command::OpenLog) => open_log(&log_path),
                            Some(Command::Quit) => { let _ = quit_tx.send(()); }
                            None => {}
                        }
                    }
                }
            }
        };
        let agent = agent::run(cfg, dialog, Box::new(notifier), requests, view_tx, stop);
        tokio::select! {
            r = agent => r,
            _ = ui => Ok(()),
        }
    });
    // Blocking dialogs may still be open; they must not keep the process alive.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => {
            tracing::info!("agent stopped");
            exit::OK
        }
        Err(e) => {
            eprintln!("tokenroll agent: {}", crate::text::plain_lines(&e));
            exit::FAILURE
        }
    }
}
