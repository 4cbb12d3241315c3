//! The station's preflight, run before any token is touched (and alone by `--check`): the
//! module loads, its readers and slots, the server over TLS, the server's clock, the admin's
//! login, the batch. Each check says what it found and, when it fails, what to do.
//!
//! Owns: the station's own checks (module, slots, server, batch) and the order. Does not own:
//! the clock and login checks or the check model (see `doctor`), how a module is loaded, a login
//! made or a batch read (see `token`, `enroll::Session`, `batch`).

pub use crate::doctor::{Check, Status};

/// What the preflight looks at.
pub struct Preflight<'a> {
    pub module: Option<&'a std::path::Path>,
    pub client: &'a crate::api::CentagateClient,
    pub session: &'a crate::enroll::Session,
    pub api: crate::api::login::AuthApi,
    pub admin: &'a str,
    /// The batch's row count, when there is one (a bad batch never gets this far).
    pub batch_rows: Option<usize>,
}

/// Runs every check in order; a failed module or server check does not stop the later ones.
pub async fn run(p: &Preflight<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    let module = p.module.map(std::path::Path::to_path_buf);
    let listed = tokio::task::spawn_blocking(move || {
        let m = crate::token::Module::load(module.as_deref())?;
        let described = format!("{} ({})", m.path().display(), m.library_description());
        let slots = m.slots();
        let tokens = m.tokens();
        m.close();
        Ok::<_, crate::token::TokenError>((described, slots?, tokens?))
    })
    .await;
    match listed {
        Ok(Ok((described, slots, tokens))) => {
            out.push(Check::new(
                "module",
                Status::Ok,
                crate::text::plain(&described).into_owned(),
                "",
            ));
            let readers: Vec<String> = slots
                .iter()
                .map(|s| crate::text::plain(&s.description).into_owned())
                .collect();
            out.push(Check::new(
                "slots",
                if slots.is_empty() {
                    Status::Warn
                } else {
                    Status::Ok
                },
                format!(
                    "{} slot(s) with {} token(s){}",
                    slots.len(),
                    tokens.len(),
                    if readers.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", readers.join("; "))
                    }
                ),
                "no reader or slot: plug in a reader (and start pcscd), or check the module",
            ));
        }
        Ok(Err(e)) => out.push(Check::new(
            "module",
            Status::Fail,
            e.to_string(),
            "install the token's PKCS#11 module, or name it with --module",
        )),
        Err(e) => out.push(Check::new("module", Status::Fail, e.to_string(), "")),
    }
    match p.client.reachable().await {
        Ok(()) => out.push(Check::new(
            "server",
            Status::Ok,
            format!("{} answers over TLS", p.client.origin()),
            "",
        )),
        Err(e) => out.push(Check::new(
            "server",
            Status::Fail,
            e,
            "check --server, the network and --ca-file / --server-cert-sha256",
        )),
    }
    out.push(crate::doctor::clock_check(p.client).await);
    out.push(crate::doctor::login_check("login", p.client, p.session, p.api, p.admin).await);
    if let Some(n) = p.batch_rows {
        out.push(Check::new("batch", Status::Ok, format!("{n} row(s)"), ""));
    }
    out
}
