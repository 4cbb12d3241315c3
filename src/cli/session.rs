//! `tokenroll session`: logs in (or takes the static secrets), asks the server whether the
//! session is alive, prints what it knows of it, and logs out if it logged in. Exit 0 when the
//! session works, 4 when the server refuses it.
//!
//! Owns: the command's output. Does not own: logins or sessions (see `enroll::session`).

use super::args::SessionArgs;
use super::exit;
use crate::enroll::{Registrar, Step};
use crate::text::{plain, plain_lines};
use serde::Serialize;

#[derive(Serialize)]
struct SessionView {
    admin: String,
    alive: bool,
    role: Option<i64>,
    group: Option<String>,
    session_timeout_ms: Option<u64>,
}

pub fn session_cmd(
    args: SessionArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    let json = args.output.json.unwrap_or(false);
    let fail = |code: i32, message: String| {
        if json {
            println!("{}", serde_json::json!({"alive": false, "error": message}));
        } else {
            eprintln!("tokenroll: {}", plain_lines(&message));
        }
        code
    };
    let (admin, api, client, session) = match open_session(&args, env, paths) {
        Ok(v) => v,
        Err(e) => return fail(exit::USAGE, e),
    };
    let admin = admin.name;
    let rt = super::runtime();
    let result = rt.block_on(async {
        let mut stderr = std::io::stderr();
        let mut on = |s: Step| super::print_step(&mut stderr, &s);
        let secrets = session.secrets(&mut on).await?;
        let answer = client.session_check(api, &admin, &secrets).await;
        let described = session.described().await;
        session.logout().await;
        Ok::<_, crate::enroll::EnrollError>((answer?, described))
    });
    match result {
        Ok((answer, described)) => {
            let (role, group, timeout) = described.unwrap_or((None, None, None));
            let view = SessionView {
                admin,
                alive: answer.code == crate::api::CODE_SUCCESS,
                role,
                group,
                session_timeout_ms: timeout,
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&view).expect("the view serializes")
                );
            } else if view.alive {
                println!(
                    "session of {} is alive{}{}{}",
                    plain(&view.admin),
                    view.role.map(|r| format!("; role {r}")).unwrap_or_default(),
                    view.group
                        .as_deref()
                        .map(|g| format!("; group {}", plain(g)))
                        .unwrap_or_default(),
                    view.session_timeout_ms
                        .map(|t| format!("; idle timeout {} min", t / 60_000))
                        .unwrap_or_default()
                );
            } else {
                eprintln!(
                    "tokenroll: the server refused the session of {} (code {}): {}",
                    plain(&view.admin),
                    answer.code,
                    plain(&answer.message)
                );
            }
            if view.alive {
                exit::OK
            } else {
                exit::REFUSED
            }
        }
        Err(e) => fail(exit::for_error(&e), e.to_string()),
    }
}

/// The server, the admin and their session as `session` and `status` resolve them.
pub(super) struct Admin {
    pub name: String,
    /// `--user`, when given.
    pub user: Option<String>,
}

pub(super) fn open_session(
    args: &SessionArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> Result<
    (
        Admin,
        crate::api::login::AuthApi,
        std::sync::Arc<crate::api::CentagateClient>,
        crate::enroll::Session,
    ),
    String,
> {
    let raw = crate::config::resolve(args.layer(), args.config.config.as_deref(), paths)
        .map_err(|e| e.to_string())?;
    let need = |v: &Option<String>, flag: &str| match v.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => Ok(s.to_string()),
        _ => Err(format!(
            "{flag} is required (or its config key / TOKENROLL_ variable)"
        )),
    };
    let api = crate::config::auth_api(&raw).map_err(|e| e.to_string())?;
    let server = need(&raw.server.server, "--server")?;
    let admin = need(&raw.server.admin, "--admin")?;
    let login = crate::config::login_options(&raw, env).map_err(|e| e.to_string())?;
    let http = crate::config::http_options(&raw, env).map_err(|e| e.to_string())?;
    let client = std::sync::Arc::new(
        crate::api::CentagateClient::new(&server, http).map_err(|e| e.to_string())?,
    );
    let session = crate::enroll::Session::new(
        client.clone(),
        login,
        admin.clone(),
        std::sync::Arc::new(super::TerminalAsk),
    );
    let user = raw.server.user.clone().filter(|u| !u.trim().is_empty());
    Ok((Admin { name: admin, user }, api, client, session))
}
