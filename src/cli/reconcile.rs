//! `tokenroll journal --reconcile`: asks the server of every entry the journal leaves unknown
//! (a killed process, an answer lost when the server could not be asked) what is bound to its
//! user, and appends the answer — the journal stays append-only. Exit 0 when every entry is
//! settled, 5 when some stay unknown (a server unreachable), 2 without credentials.
//!
//! Owns: the command. Does not own: the list call (see `api::login`) or the session (see
//! `enroll::session`).

use super::exit;
use crate::config::RawConfig;
use crate::enroll::{Registrar, Session};
use crate::journal::{Entry, Outcome};
use crate::text::{plain, plain_lines};
use std::path::Path;

/// What became of one entry.
#[derive(serde::Serialize)]
struct Settled {
    id: String,
    user: String,
    /// registered, failed (confirmed not registered) or unknown.
    state: &'static str,
    message: String,
}

/// The origin and the admin of an entry's registration URL.
fn server_of(e: &Entry) -> Option<(String, String)> {
    let url = url::Url::parse(&e.intent.server).ok()?;
    Some((url.origin().ascii_serialization(), e.intent.admin.clone()))
}

/// Appends the settled outcome of `e`.
fn record(
    journal: &crate::journal::Journal,
    e: &Entry,
    state: &str,
    message: &str,
) -> Result<(), crate::journal::JournalError> {
    journal.outcome(&Outcome {
        id: e.intent.id.clone(),
        time: crate::journal::now(),
        outcome: state.into(),
        code: None,
        message: message.into(),
        attempts: e.outcome.as_ref().map_or(1, |o| o.attempts),
    })
}

/// What the relay that took `e` says of it, by the request's SHA-256.
async fn ask_relay(e: &Entry, http: &crate::api::HttpOptions) -> (&'static str, String) {
    let i = &e.intent;
    let (Some(sha), Some(base)) = (
        i.request_sha256.as_deref(),
        i.server.strip_suffix("/v1/enroll"),
    ) else {
        return (
            "unknown",
            "the entry names no relay request that can be asked".into(),
        );
    };
    let client = match crate::api::relay::RelayClient::new(base, http) {
        Ok(c) => c,
        Err(err) => return ("unknown", err.to_string()),
    };
    match client.lookup(sha).await {
        Ok(Some(a)) => match a.outcome.as_str() {
            "registered" => (
                "registered",
                format!("confirmed by the relay: {}", a.message.unwrap_or_default()),
            ),
            "rejected" => (
                "rejected",
                format!(
                    "confirmed by the relay: CENTAGATE refused it (code {}): {}",
                    a.code.map_or_else(|| "-".into(), |c| c.to_string()),
                    a.message.unwrap_or_default()
                ),
            ),
            _ => (
                "unknown",
                "the relay has not settled it yet; run this again later".into(),
            ),
        },
        Ok(None) => (
            "failed",
            "confirmed by the relay: the request never reached CENTAGATE; enrolling again is safe"
                .into(),
        ),
        Err(err) => ("unknown", format!("the relay could not be asked: {err}")),
    }
}

pub fn reconcile(
    raw: &RawConfig,
    policy: &crate::config::policy::Policy,
    env: &crate::secret::EnvSecrets,
    path: &Path,
    json: bool,
) -> i32 {
    let fail = |code: i32, message: String| {
        if json {
            println!("{}", serde_json::json!({"error": message}));
        } else {
            eprintln!("tokenroll: {}", plain_lines(&message));
        }
        code
    };
    let contents = match crate::journal::read(path) {
        Ok(c) => c,
        Err(e) => return fail(exit::FAILURE, e.to_string()),
    };
    let unknown: Vec<&Entry> = contents
        .entries
        .iter()
        .filter(|e| e.state().starts_with("unknown"))
        .collect();
    if unknown.is_empty() {
        if json {
            println!(
                "{}",
                serde_json::json!({"journal": path.display().to_string(), "reconciled": [], "still_unknown": 0})
            );
        } else {
            println!("nothing to reconcile: every entry is settled");
        }
        return exit::OK;
    }
    // The journal is the user's file: an entry naming a server or relay other than the one the
    // administrator's policy fixes is not asked (the admin's login would go there).
    let mut settled = Vec::new();
    let unknown: Vec<&Entry> = unknown
        .into_iter()
        .filter(|e| {
            let i = &e.intent;
            let allowed = if i.via.as_deref() == Some("relay") {
                policy.allows(
                    "relay",
                    i.server.strip_suffix("/v1/enroll").unwrap_or(&i.server),
                )
            } else {
                server_of(e).map_or(Ok(()), |(origin, _)| policy.allows("server", &origin))
            };
            match allowed {
                Ok(()) => true,
                Err(why) => {
                    settled.push(Settled {
                        id: i.id.clone(),
                        user: i.user.clone(),
                        state: "unknown",
                        message: format!("not asked: {why}"),
                    });
                    false
                }
            }
        })
        .collect();
    // Entries sent through the relay are settled by asking the relay: no admin credentials.
    let (via_relay, direct): (Vec<&Entry>, Vec<&Entry>) = unknown
        .into_iter()
        .partition(|e| e.intent.via.as_deref() == Some("relay"));
    let (login, http) = match crate::config::login_options(raw, env)
        .and_then(|l| Ok((l, crate::config::http_options(raw, env)?)))
    {
        Ok(v) => (Some(v.0), v.1),
        Err(e) if !direct.is_empty() => {
            return fail(
                exit::USAGE,
                format!("reconciling needs the admin's credentials: {e}"),
            )
        }
        Err(_) => match crate::config::http_options(raw, env) {
            Ok(h) => (None, h),
            Err(e) => return fail(exit::USAGE, e.to_string()),
        },
    };
    let journal = match crate::journal::Journal::open(path) {
        Ok(j) => j,
        Err(e) => return fail(exit::FAILURE, e.to_string()),
    };
    let rt = super::runtime();
    let mut sessions: Vec<((String, String), Session)> = Vec::new();

    let mut relay_http = http.clone();
    relay_http.ca_file = raw.relay_client.relay_ca_file.clone();
    relay_http.server_cert_sha256 = None;
    for e in via_relay {
        let (state, message) = rt.block_on(ask_relay(e, &relay_http));
        if state != "unknown" {
            if let Err(err) = record(&journal, e, state, &message) {
                return fail(exit::FAILURE, err.to_string());
            }
        }
        settled.push(Settled {
            id: e.intent.id.clone(),
            user: e.intent.user.clone(),
            state,
            message,
        });
    }
    for e in direct {
        let login = login
            .as_ref()
            .expect("credentials were required above for entries sent directly");
        let Some(key) = server_of(e) else {
            settled.push(Settled {
                id: e.intent.id.clone(),
                user: e.intent.user.clone(),
                state: "unknown",
                message: "the entry names no server that can be asked".into(),
            });
            continue;
        };
        if !sessions.iter().any(|(k, _)| *k == key) {
            let client = match crate::api::CentagateClient::new(&key.0, http.clone()) {
                Ok(c) => std::sync::Arc::new(c),
                Err(err) => return fail(exit::USAGE, err.to_string()),
            };
            sessions.push((
                key.clone(),
                Session::new(
                    client,
                    login.clone(),
                    key.1.clone(),
                    std::sync::Arc::new(super::TerminalAsk),
                ),
            ));
        }
        let session = &sessions
            .iter()
            .find(|(k, _)| *k == key)
            .expect("added above")
            .1;
        let answer = rt.block_on(async {
            let secrets = session.secrets(&mut |_| {}).await?;
            Ok::<_, crate::enroll::EnrollError>(
                session.bound(&key.1, &e.intent.user, &secrets).await?,
            )
        });
        let i = &e.intent;
        let (state, message) = match answer {
            Ok(list) => {
                let ours = list.iter().any(|c| {
                    c.is(&i.certificate_sha1)
                        || (i.certificate_sha1.is_empty()
                            && !i.certificate_serial.is_empty()
                            && c.serial.eq_ignore_ascii_case(&i.certificate_serial)
                            && c.issuer == i.certificate_issuer)
                });
                if ours {
                    (
                        "registered",
                        format!(
                            "confirmed by the server: {} is bound to this certificate",
                            i.user
                        ),
                    )
                } else {
                    ("failed", format!("confirmed by the server: this certificate is not bound to {}; enrolling again is safe", i.user))
                }
            }
            Err(err) => ("unknown", format!("the server could not be asked: {err}")),
        };
        if state != "unknown" {
            if let Err(err) = record(&journal, e, state, &message) {
                return fail(exit::FAILURE, err.to_string());
            }
        }
        settled.push(Settled {
            id: i.id.clone(),
            user: i.user.clone(),
            state,
            message,
        });
    }
    for (_, s) in &sessions {
        rt.block_on(s.logout());
    }
    let still = settled.iter().filter(|s| s.state == "unknown").count();
    if json {
        println!(
            "{}",
            serde_json::json!({"journal": path.display().to_string(), "reconciled": settled, "still_unknown": still})
        );
    } else {
        for s in &settled {
            println!(
                "{}  {}: {} — {}",
                plain(&s.id),
                plain(&s.user),
                s.state,
                plain(&s.message)
            );
        }
    }
    if still > 0 {
        exit::NETWORK
    } else {
        exit::OK
    }
}
