//! The station's preflight, run before any token is touched (and alone by `--check`): the
//! module loads, its readers and slots, the server over TLS, the server's clock, the admin's
//! login, the batch. Each check says what it found and, when it fails, what to do.
//!
//! Owns: the checks and their order. Does not own: how a module is loaded, a login made or a
//! batch read (see `token`, `enroll::Session`, `batch`).

use crate::enroll::Registrar;
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do, when it is not OK.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

fn check(name: &'static str, status: Status, detail: String, fix: &str) -> Check {
    Check {
        name,
        status,
        detail,
        fix: if status == Status::Ok {
            String::new()
        } else {
            fix.to_string()
        },
    }
}

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
            out.push(check(
                "module",
                Status::Ok,
                crate::text::plain(&described).into_owned(),
                "",
            ));
            let readers: Vec<String> = slots
                .iter()
                .map(|s| crate::text::plain(&s.description).into_owned())
                .collect();
            out.push(check(
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
        Ok(Err(e)) => out.push(check(
            "module",
            Status::Fail,
            e.to_string(),
            "install the token's PKCS#11 module, or name it with --module",
        )),
        Err(e) => out.push(check("module", Status::Fail, e.to_string(), "")),
    }
    match p.client.reachable().await {
        Ok(()) => out.push(check(
            "server",
            Status::Ok,
            format!("{} answers over TLS", p.client.origin()),
            "",
        )),
        Err(e) => out.push(check(
            "server",
            Status::Fail,
            e,
            "check --server, the network and --ca-file / --server-cert-sha256",
        )),
    }
    match p.client.clock_offset_ms().await {
        Some(o) if o.abs() > crate::enroll::CLOCK_SKEW_LIMIT_MS => out.push(check(
            "clock",
            Status::Warn,
            format!(
                "this computer's clock is {:.1} s {} the server's; timestamps follow the server's clock",
                o.abs() as f64 / 1000.0,
                if o > 0 { "behind" } else { "ahead of" }
            ),
            "set this computer's clock (NTP)",
        )),
        Some(o) => out.push(check(
            "clock",
            Status::Ok,
            format!("within {:.1} s of the server's", o.abs() as f64 / 1000.0),
            "",
        )),
        None => out.push(check(
            "clock",
            Status::Warn,
            "the server sent no Date header to compare with".into(),
            "timestamps use this computer's clock: keep it set by NTP",
        )),
    }
    let login = async {
        let secrets = p.session.secrets(&mut |_| {}).await?;
        Ok::<_, crate::enroll::EnrollError>(p.client.session_check(p.api, p.admin, &secrets).await?)
    }
    .await;
    match login {
        Ok(a) if a.code == crate::api::CODE_SUCCESS => out.push(check(
            "login",
            Status::Ok,
            format!("the session of {} is alive", crate::text::plain(p.admin)),
            "",
        )),
        Ok(a) => out.push(check(
            "login",
            Status::Fail,
            format!(
                "the server refused the session (code {}): {}",
                a.code,
                crate::text::plain(&a.message)
            ),
            "check the admin's credentials and that the account may register tokens",
        )),
        Err(e) => out.push(check(
            "login",
            Status::Fail,
            e.to_string(),
            "check --admin, --login and the admin's credentials",
        )),
    }
    if let Some(n) = p.batch_rows {
        out.push(check("batch", Status::Ok, format!("{n} row(s)"), ""));
    }
    out
}

/// A check as one line for a person.
pub fn line(c: &Check) -> String {
    let status = match c.status {
        Status::Ok => "OK  ",
        Status::Warn => "WARN",
        Status::Fail => "FAIL",
    };
    if c.fix.is_empty() {
        format!("{status} {}: {}", c.name, c.detail)
    } else {
        format!("{status} {}: {} — {}", c.name, c.detail, c.fix)
    }
}
