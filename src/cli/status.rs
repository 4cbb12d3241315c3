//! `tokenroll status --user NAME [--json]`: the user's PKI token status and the certificates
//! bound to them, asked under the admin's session (logged out after).
//!
//! Owns: the command's output. Does not own: the calls (see `api::login`).

use super::args::SessionArgs;
use super::exit;
use crate::enroll::Registrar;
use crate::text::{plain, plain_lines};
use serde::Serialize;

#[derive(Serialize)]
struct CertView {
    serial: String,
    sha1: String,
    subject: String,
    issuer: String,
    revoked: bool,
    valid_from: Option<i64>,
    valid_to: Option<i64>,
}

#[derive(Serialize)]
struct StatusView {
    user: String,
    /// pending, valid, temp-deactivated, deactivated, suspended, or null for none.
    token_status: Option<&'static str>,
    certificates: Vec<CertView>,
}

fn status_name(code: i64) -> &'static str {
    match code {
        1 => "pending",
        2 => "valid",
        3 => "temp-deactivated",
        4 => "deactivated",
        5 => "suspended",
        _ => "unknown",
    }
}

pub fn status_cmd(
    args: SessionArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    let json = args.output.json.unwrap_or(false);
    let fail = |code: i32, message: String| {
        if json {
            println!("{}", serde_json::json!({"error": message}));
        } else {
            eprintln!("tokenroll: {}", plain_lines(&message));
        }
        code
    };
    let (admin, _, client, session) = match super::session::open_session(&args, env, paths) {
        Ok(v) => v,
        Err(e) => return fail(exit::USAGE, e),
    };
    let Some(user) = admin.user else {
        return fail(
            exit::USAGE,
            "--user is required (or its config key / TOKENROLL_ variable)".into(),
        );
    };
    let admin = admin.name;
    let rt = super::runtime();
    let result = rt.block_on(async {
        let run = async {
            let secrets = session.secrets(&mut |_| {}).await?;
            let status = client.token_status(&admin, &user, &secrets).await?;
            let certs = session.bound(&admin, &user, &secrets).await?;
            Ok::<_, crate::enroll::EnrollError>((status, certs))
        };
        let r = run.await;
        session.logout().await;
        r
    });
    let (status, certs) = match result {
        Ok(v) => v,
        Err(e) => return fail(exit::for_error(&e), e.to_string()),
    };
    let view = StatusView {
        user,
        token_status: status.map(status_name),
        certificates: certs
            .into_iter()
            .map(|c| CertView {
                serial: c.serial,
                sha1: c.sha1,
                subject: c.subject,
                issuer: c.issuer,
                revoked: c.revoked,
                valid_from: c.valid_from,
                valid_to: c.valid_to,
            })
            .collect(),
    };
    if json {
        println!(
            "{}",
            serde_json::to_string(&view).expect("the view serializes")
        );
    } else {
        println!(
            "{}: PKI token {}",
            plain(&view.user),
            view.token_status.unwrap_or("none")
        );
        for c in &view.certificates {
            println!(
                "  {} (serial {}, SHA-1 {}){}\n    issued by {}",
                plain(&c.subject),
                plain(&c.serial),
                plain(&c.sha1),
                if c.revoked { " REVOKED" } else { "" },
                plain(&c.issuer)
            );
        }
    }
    exit::OK
}
