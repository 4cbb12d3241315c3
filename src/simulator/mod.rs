//! A CENTAGATE simulator on loopback over TLS, for the demo, the tests and integrators without a
//! server. It enforces the contract as the vendor documents it and records every request.
//!
//! Owns: the server, its users, its rules and its TLS certificate. Does not own: any of the
//! client's code paths — it shares only the contract's constants with `api`, and judges the
//! cenToken, timestamp, fields and the PKCS#7 (with `ring`, see `judge`) with its own code, so a
//! bug copied into both cannot hide.

mod judge;
mod rules;
mod tls;

pub use rules::{Rules, User, UserState, Users};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Request, Response, StatusCode};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Deliberate misbehaviour, so clients can be tested against it.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer every registration with this code (after the request was checked and recorded).
    pub force_code: Option<i64>,
    /// Send `code` as a JSON string.
    pub code_as_string: bool,
    /// Answer HTTP 500 with an HTML error page, as a proxy would.
    pub html_500: bool,
}

pub struct SimConfig {
    pub listen: SocketAddr,
    pub rules: Rules,
    pub faults: Faults,
    pub record: Option<PathBuf>,
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
}

impl State {
    /// Appends one JSON line to the record, if one is kept.
    fn write_record(&self, line: serde_json::Value) {
        if let Some(file) = &self.record {
            let mut f = file.lock().expect("record lock");
            let _ = writeln!(f, "{line}");
            let _ = f.flush();
        }
    }
}

/// Binds and serves in a background task.
pub async fn start(cfg: SimConfig) -> std::io::Result<Running> {
    let (tls_config, cert_pem) = tls::server_config().map_err(std::io::Error::other)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let record = match &cfg.record {
        Some(p) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        )),
        None => None,
    };
    let state = Arc::new(State {
        rules: Mutex::new(cfg.rules),
        faults: cfg.faults,
        record,
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

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn json_answer(code: i64, message: &str, as_string: bool) -> Response<Full<Bytes>> {
    let code = if as_string {
        serde_json::json!(code.to_string())
    } else {
        serde_json::json!(code)
    };
    let body = serde_json::json!({ "code": code, "message": message, "object": "" });
    reply(StatusCode::OK, "application/json", body.to_string())
}

async fn handle(
    state: Arc<State>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if method == hyper::Method::GET && path.starts_with("/challenge") {
        let r = rules::challenge_reply(&path);
        return Ok(reply(StatusCode::OK, r.0, r.1));
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
    let (code, message, record) =
        state
            .rules
            .lock()
            .expect("rules lock")
            .judge(&admin, &content_type, &body);
    let code = state.faults.force_code.unwrap_or(code);
    let mut line = record;
    line["method"] = serde_json::json!("PUT");
    line["path"] = serde_json::json!(path);
    line["answer_code"] = serde_json::json!(code);
    state.write_record(line);
    if state.faults.html_500 {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/html",
            "<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>".into(),
        ));
    }
    let message = if state.faults.force_code.is_some() {
        format!("Forced answer {code}")
    } else {
        message
    };
    Ok(json_answer(code, &message, state.faults.code_as_string))
}
