//! A CENTAGATE simulator on loopback over TLS, for the demo, the tests and integrators without a
//! server. It enforces the contract as the vendor documents it and records every request.
//!
//! Owns: the server, its users, its rules and its TLS certificate. Does not own: any of the
//! client's code paths — it shares only the contract's constants with `api`, and judges the
//! cenToken, timestamp, fields and the PKCS#7 (with `ring`, see `judge`) with its own code, so a
//! bug copied into both cannot hide.

mod judge;
mod rules;
mod sessions;
mod tls;

pub use rules::{Rules, User, UserState, Users};
pub use sessions::{AdminAccount, Sessions};
pub use tls::BadTls;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Deliberate misbehaviour, one switch per fault, so clients can be tested against it. Every
/// registration is still judged and recorded unless the fault says otherwise.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer every registration with this code.
    pub force_code: Option<i64>,
    /// Send `code` as a JSON string.
    pub code_as_string: bool,
    /// Answer with an HTML error page and this HTTP status, as a proxy would.
    pub html_status: Option<u16>,
    /// Answer 200 with a body that is not JSON.
    pub not_json: bool,
    /// Send `object` as null, "" (empty), a JSON string or an object.
    pub object: Option<String>,
    /// Send the headers and part of the body, then reset the connection.
    pub cut_body: bool,
    /// Wait this long before answering.
    pub delay: Option<std::time::Duration>,
    /// Answer with a body of 2 MiB.
    pub huge_body: bool,
    /// Answer 307 to this URL instead of judging (with a JSON body saying code 0, as some
    /// servers send: it must not be taken for an answer).
    pub redirect: Option<String>,
    /// Answer the judged CENTAGATE JSON with this HTTP status instead of 200.
    pub json_status: Option<u16>,
    /// Close the connection without judging or answering, for the first N registrations.
    pub drop_first: u32,
    /// Judge (and so register) but close without answering, for the first N registrations:
    /// an answer lost on the way back.
    pub lose_answers: u32,
    /// The server's clock runs this many seconds ahead (negative: behind) of the machine's.
    pub clock_offset_secs: i64,
    /// End every admin session after this many registrations (a server restart, say).
    pub end_sessions_after: Option<u32>,
    /// Answer the first N `user/auth/list` calls with HTTP 503 (the list is unavailable).
    pub lists_unavailable: u32,
}

pub struct SimConfig {
    pub listen: SocketAddr,
    pub rules: Rules,
    pub faults: Faults,
    pub record: Option<PathBuf>,
    /// Serve a bad certificate on purpose.
    pub bad_tls: Option<tls::BadTls>,
    /// Serve this certificate and key (PEM files) instead of a fresh one, as a deployed server
    /// whose certificate was made by hand would.
    pub tls_files: Option<(PathBuf, PathBuf)>,
}

/// The independent PKCS#7 judge on its own (for the fuzzer).
pub fn judge_pkcs7(der: &[u8]) -> Result<(), String> {
    judge::judge(der).map(|_| ())
}

/// One registration body judged by a fresh rule set (for the fuzzer).
pub fn judge_request(body: &[u8]) {
    use crate::secret::{AdminSecrets, AuthToken, SecretCode};
    let secrets = AdminSecrets {
        auth_token: AuthToken::new("fuzz".into()),
        secret_code: SecretCode::new("fuzz".into()),
    };
    let users = Users {
        user: vec![User {
            name: "alice".into(),
            state: UserState::Active,
        }],
        admin: vec![],
    };
    let mut rules = Rules::new("helpdesk".into(), secrets, users);
    let _ = rules.judge("helpdesk", "application/json", body);
}

/// A running simulator: its address and the PEM of its self-signed certificate.
pub struct Running {
    pub addr: SocketAddr,
    pub cert_pem: String,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }
}

struct State {
    rules: Mutex<Rules>,
    faults: Faults,
    record: Option<Mutex<std::fs::File>>,
    /// Registrations seen so far, for the faults that apply to the first N.
    registrations: std::sync::atomic::AtomicU32,
    /// `user/auth/list` calls seen so far.
    lists: std::sync::atomic::AtomicU32,
}

impl State {
    /// The rules, also after a request panicked while it held them: a panic answers that one
    /// request with an error and never takes the simulator down for the next.
    fn rules(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one JSON line to the record, if one is kept.
    fn write_record(&self, line: serde_json::Value) {
        if let Some(file) = &self.record {
            let mut f = file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
    }
}

/// Binds and serves in a background task.
pub async fn start(cfg: SimConfig) -> std::io::Result<Running> {
    let (tls_config, cert_pem) = match &cfg.tls_files {
        Some((cert, key)) => tls::server_config_from_files(cert, key),
        None => tls::server_config(cfg.bad_tls),
    }
    .map_err(std::io::Error::other)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let record = match &cfg.record {
        Some(p) => Some(Mutex::new({
            use std::os::unix::fs::OpenOptionsExt;
            // The record holds usernames and signed content: owner-only, and never through
            // a symbolic link planted in its place.
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p)?
        })),
        None => None,
    };
    let mut rules = cfg.rules;
    rules.clock_offset_ms = cfg.faults.clock_offset_secs.saturating_mul(1000);
    let state = Arc::new(State {
        rules: Mutex::new(rules),
        faults: cfg.faults,
        record,
        registrations: Default::default(),
        lists: Default::default(),
    });
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok(Running {
        addr,
        cert_pem,
        task,
    })
}

type Body = BoxBody<Bytes, std::io::Error>;

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(full(body))
        .expect("static response parts")
}

fn json_answer(code: i64, message: &str, as_string: bool) -> Response<Body> {
    answer_with_object(code, message, as_string, None)
}

fn answer_with_object(
    code: i64,
    message: &str,
    as_string: bool,
    object: Option<&str>,
) -> Response<Body> {
    let code = if as_string {
        serde_json::json!(code.to_string())
    } else {
        serde_json::json!(code)
    };
    let object = match object {
        None | Some("empty") => serde_json::json!(""),
        Some("null") => serde_json::Value::Null,
        Some("string") => serde_json::json!("a string, not an object"),
        Some(_) => serde_json::json!({"tokenId": "T-1", "extra": [1, 2, 3]}),
    };
    let body = serde_json::json!({ "code": code, "message": message, "object": object });
    reply(StatusCode::OK, "application/json", body.to_string())
}

/// A body that sends one chunk, waits for it to be on the wire, then fails: hyper resets the
/// connection mid-response.
struct CutBody {
    sent: bool,
    wait: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl CutBody {
    fn new() -> Self {
        CutBody {
            sent: false,
            wait: Box::pin(tokio::time::sleep(std::time::Duration::from_millis(200))),
        }
    }
}

impl hyper::body::Body for CutBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::future::Future;
        use std::task::Poll;
        if !std::mem::replace(&mut self.sent, true) {
            let part = Bytes::from_static(b"{\"code\": 0, \"message\": \"Succ");
            return Poll::Ready(Some(Ok(hyper::body::Frame::data(part))));
        }
        match self.wait.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::other("cut")))),
        }
    }
}

/// The reason a connection is closed without an answer (hyper closes it when the service fails).
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn handle(
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Dropped> {
    let mut resp = respond(&state, req).await?;
    // The server's own clock, shifted when the fault says so.
    let now = std::time::SystemTime::now();
    let shifted = if state.faults.clock_offset_secs >= 0 {
        now + std::time::Duration::from_secs(state.faults.clock_offset_secs as u64)
    } else {
        now - std::time::Duration::from_secs(state.faults.clock_offset_secs.unsigned_abs())
    };
    if let Ok(v) = hyper::header::HeaderValue::from_str(&httpdate::fmt_http_date(shifted)) {
        resp.headers_mut().insert(hyper::header::DATE, v);
    }
    Ok(resp)
}

async fn respond(
    state: &State,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Dropped> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // The session check: the cenToken is in the path, so the record names neither.
    for api in [
        crate::api::login::AuthApi::V2,
        crate::api::login::AuthApi::Y2018,
    ] {
        let (m, prefix) = api.session_check();
        let Some(rest) = path
            .strip_prefix(prefix)
            .filter(|_| method.as_str() == m.as_str())
        else {
            continue;
        };
        let (admin, cen) = rest.split_once('/').unwrap_or((rest, ""));
        let admin = percent_encoding::percent_decode_str(admin)
            .decode_utf8_lossy()
            .into_owned();
        let alive = state.rules().session_state(&admin, cen);
        let (code, message) = match alive {
            sessions::CenTokenIs::Live => (crate::api::CODE_SUCCESS, "Success"),
            sessions::CenTokenIs::Expired => (crate::api::CODE_PERMISSION, "Session expired"),
            sessions::CenTokenIs::Unknown => {
                (crate::api::CODE_BAD_API_SIGNATURE, "Invalid API signature")
            }
        };
        state.write_record(
            serde_json::json!({"method": method.as_str(), "path": prefix,
            "session_check": true, "admin": admin, "answer_code": code}),
        );
        let body = serde_json::json!({"code": code, "message": message, "object": ""});
        return Ok(reply(StatusCode::OK, "application/json", body.to_string()));
    }
    if method == hyper::Method::POST {
        let v2 = crate::api::login::AuthApi::V2;
        let y2018 = crate::api::login::AuthApi::Y2018;
        let login = [v2.password_login(), y2018.password_login()].contains(&path);
        let pkcs7 = [v2.pkcs7_login(), y2018.pkcs7_login()].contains(&path);
        let random = [v2.random_string(), y2018.random_string()].contains(&path);
        if login || pkcs7 || random || path == crate::api::login::LOGOUT_PATH {
            let body = match Limited::new(req.into_body(), 64 << 10).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Err(Dropped),
            };
            let judged = {
                let mut rules = state.rules();
                if login {
                    rules.sessions.login_password(&body)
                } else if pkcs7 {
                    rules.sessions.login_pkcs7(&body)
                } else if random {
                    rules.sessions.random_string(&body)
                } else {
                    rules.sessions.logout(&body)
                }
            };
            let (code, message, mut out) = judged;
            let mut line = out["record"].take();
            line["method"] = serde_json::json!("POST");
            line["path"] = serde_json::json!(path);
            state.write_record(line);
            let body = serde_json::json!({"code": code, "message": message, "object": out["object"].take()});
            return Ok(reply(StatusCode::OK, "application/json", body.to_string()));
        }
    }
    if method != hyper::Method::PUT {
        state.write_record(serde_json::json!({"method": method.as_str(), "path": path}));
    }
    if method == hyper::Method::GET && path.starts_with("/challenge") {
        let r = rules::challenge_reply(&path);
        return Ok(reply(StatusCode::OK, r.0, r.1));
    }
    let listing = path.starts_with(crate::api::BOUND_LIST_PATH)
        || path.starts_with(crate::api::TOKEN_STATUS_PATH)
        || path.starts_with(crate::api::UNBIND_PATH)
        || path.starts_with(crate::api::STATUS_UPDATE_PATH);
    if listing {
        let update = path.starts_with(crate::api::STATUS_UPDATE_PATH);
        let status = path.starts_with(crate::api::TOKEN_STATUS_PATH);
        let unbind = path.starts_with(crate::api::UNBIND_PATH);
        let admin = path
            .strip_prefix(crate::api::BOUND_LIST_PATH)
            .or_else(|| path.strip_prefix(crate::api::TOKEN_STATUS_PATH))
            .or_else(|| path.strip_prefix(crate::api::UNBIND_PATH))
            .or_else(|| path.strip_prefix(crate::api::STATUS_UPDATE_PATH))
            .unwrap_or_default();
        let admin = percent_encoding::percent_decode_str(admin)
            .decode_utf8_lossy()
            .into_owned();
        let body = match Limited::new(req.into_body(), 64 << 10).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return Err(Dropped),
        };
        let list = !(update || unbind || status);
        if list
            && state
                .lists
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                < state.faults.lists_unavailable
        {
            state.write_record(serde_json::json!({"method": method.as_str(), "path": path,
                "bound_list": true, "unavailable": true}));
            return Ok(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                "unavailable".into(),
            ));
        }
        let (code, message, object) = if update {
            state.rules().update_status(&admin, &body)
        } else if unbind {
            state.rules().unbind(&admin, &body)
        } else if status {
            state.rules().token_status(&admin, &body)
        } else {
            state.rules().bound_list(&admin, &body)
        };
        state.write_record(serde_json::json!({"method": method.as_str(), "path": path,
            "bound_list": true, "unbind": unbind, "answer_code": code}));
        let body = serde_json::json!({"code": code, "message": message, "object": object});
        return Ok(reply(StatusCode::OK, "application/json", body.to_string()));
    }
    let Some(admin) = path.strip_prefix(crate::api::REGISTER_PATH) else {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "text/html",
            "<html><body><h1>404 Not Found</h1></body></html>".into(),
        ));
    };
    if method != hyper::Method::PUT {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/html",
            "<html><body><h1>405 Method Not Allowed</h1></body></html>".into(),
        ));
    }
    let faults = &state.faults;
    let n = state
        .registrations
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if n < faults.drop_first {
        return Err(Dropped);
    }
    if let Some(to) = &faults.redirect {
        return Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("location", to)
            .header("content-type", "application/json")
            .body(full(r#"{"code": 0, "message": "Success", "object": ""}"#))
            .expect("static response parts"));
    }
    let admin = percent_encoding::percent_decode_str(admin)
        .decode_utf8_lossy()
        .into_owned();
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(json_answer(
                crate::api::CODE_INVALID_INPUT,
                "Invalid Input: body too large",
                false,
            ))
        }
    };
    let judged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        state.rules().judge(&admin, &content_type, &body)
    }));
    let (code, message, record) = judged.unwrap_or_else(|_| {
        (
            crate::api::CODE_INVALID_INPUT,
            "Invalid Input: the simulator failed on this request".into(),
            serde_json::json!({"panicked": true}),
        )
    });
    let code = faults.force_code.unwrap_or(code);
    // Once, after the Nth registration (a restart of the server ends every session).
    if faults.end_sessions_after == Some(n + 1) {
        state.rules().sessions.end_all();
    }
    let mut line = record;
    line["method"] = serde_json::json!("PUT");
    line["path"] = serde_json::json!(path);
    line["answer_code"] = serde_json::json!(code);
    state.write_record(line);
    if let Some(d) = faults.delay {
        tokio::time::sleep(d).await;
    }
    if n < faults.drop_first + faults.lose_answers {
        return Err(Dropped);
    }
    if let Some(status) = faults.html_status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = status.canonical_reason().unwrap_or("Error");
        return Ok(reply(
            status,
            "text/html",
            format!("<html><head><title>{} {reason}</title></head><body><h1>{reason}</h1></body></html>", status.as_u16()),
        ));
    }
    if faults.not_json {
        return Ok(reply(
            StatusCode::OK,
            "text/plain",
            "OK registered (not JSON)".into(),
        ));
    }
    if faults.cut_body {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("content-length", "200")
            .body(CutBody::new().boxed())
            .expect("static response parts"));
    }
    if faults.huge_body {
        let mut big = br#"{"code": 0, "message": "Success", "object": ""#.to_vec();
        big.resize(2 << 20, b'x');
        big.extend_from_slice(b"\"}");
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(full(big))
            .expect("static response parts"));
    }
    let message = if faults.force_code.is_some() {
        format!("Forced answer {code}")
    } else {
        message
    };
    let mut answer = answer_with_object(
        code,
        &message,
        faults.code_as_string,
        faults.object.as_deref(),
    );
    if let Some(s) = faults.json_status {
        *answer.status_mut() = StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{AdminSecrets, AuthToken, SecretCode};

    /// A request that panicked while it held the rules leaves them usable for the next.
    #[test]
    fn a_panic_in_one_request_does_not_poison_the_next() {
        let secrets = AdminSecrets {
            auth_token: AuthToken::new("AT".into()),
            secret_code: SecretCode::new("SC".into()),
        };
        let users = Users::parse("[[user]]\nname = \"alice\"\n").unwrap();
        let state = Arc::new(State {
            rules: Mutex::new(Rules::new("helpdesk".into(), secrets, users)),
            faults: Faults::default(),
            record: None,
            registrations: Default::default(),
            lists: Default::default(),
        });
        let s = state.clone();
        let panicked = std::thread::spawn(move || {
            let _held = s.rules.lock().unwrap();
            panic!("a request fails while it holds the rules");
        })
        .join();
        assert!(panicked.is_err() && state.rules.is_poisoned());
        let (code, _, _) = state.rules().judge("helpdesk", "application/json", b"{}");
        assert_eq!(code, crate::api::CODE_INVALID_INPUT);
    }
}
