//! `tokenroll relay --config FILE`: runs the enrollment relay until SIGTERM or Ctrl-C. Audit
//! records go to stdout (one JSON line each), the log to stderr.
//!
//! Owns: the command's process concerns (its runtime, its signals, exit codes). Does not own:
//! the relay (see `relay`).

use super::args::RelayArgs;
use super::exit;
use crate::relay::config::RelayConfig;
use crate::relay::http::{self, Bound};
use crate::relay::service::Relay;
use std::sync::Arc;

pub fn relay_cmd(
    args: RelayArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    let mut cfg = match RelayConfig::load(&args.config, env, paths) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "tokenroll relay: {}",
                crate::text::plain_lines(&e.to_string())
            );
            return exit::USAGE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokenroll relay: cannot start its runtime: {e}");
            return exit::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let relay = Relay::open(&mut cfg).await?;
        let bound = Bound::bind(&cfg).await?;
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let addr = bound.public.local_addr().map_err(|e| e.to_string())?;
        if cfg.tls.is_none() {
            tracing::warn!("no tls_cert/tls_key: serving plain HTTP, for use behind a TLS-terminating load balancer only");
            if cfg.trusted_proxies.is_empty() {
                tracing::warn!("no trusted_proxies: behind a load balancer every desk would share its address's rate limit; name the balancer in trusted_proxies");
            }
        }
        if args.check {
            relay.store.close().await;
            println!(
                "relay configuration {} is usable: {scheme}://{addr}, database open",
                cfg.file.display()
            );
            return Ok(());
        }
        let metrics = bound.metrics.as_ref().and_then(|m| m.local_addr().ok());
        tracing::info!(
            listen = %format!("{scheme}://{addr}"),
            metrics = %metrics.map_or_else(|| "off".to_string(), |m| format!("http://{m}/metrics")),
            "relay listening"
        );
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        http::run(Arc::new(relay), &cfg, bound, shutdown).await
    });
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("tokenroll relay: {}", crate::text::plain_lines(&e));
            exit::FAILURE
        }
    }
}
