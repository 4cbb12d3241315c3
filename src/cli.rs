//! The command line: argument parsing, the `--json` rendering and the stable exit codes.
//!
//! Owns: argv → raw config, printing. Does not own: any step of an enrollment (see `enroll`).

use crate::config::{RawConfig, RegisterOptions, SignOptions};
use crate::enroll::{
    self, EnrollError, Pkcs11Side, Plan, Registration, Report, Request, Step, UserPolicy,
};
use crate::ui::pin::CliPin;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "tokenroll",
    version,
    about = "Enroll PKCS#11 hardware tokens with a CENTAGATE identity server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Sign a challenge on the token and register the token with CENTAGATE.
    Enroll(EnrollArgs),
    /// Sign a challenge on the token and write the PKCS#7; nothing is registered.
    Sign(SignArgs),
    /// List slots, tokens and signing pairs with their pkcs11: URIs.
    Tokens(TokensArgs),
    /// Decode and verify a PKCS#7 SignedData (DER or base64).
    Verify(VerifyArgs),
    /// List the enrollment journal: every registration sent, and what came of it.
    Journal(JournalArgs),
    /// Run the CENTAGATE simulator on loopback over TLS.
    Simulate(SimulateArgs),
    /// Run in the desktop session: notice tokens, ask for the PIN, enroll, tell the person.
    Agent(AgentArgs),
    /// Run a whole enrollment on a throw-away SoftHSM2 token against the built-in simulator.
    Demo,
    /// Test tooling: put a key pair and a self-signed certificate on a (SoftHSM2) token.
    #[command(hide = true)]
    Provision(ProvisionArgs),
}

/// What signing needs besides the PIN: shared by `enroll`, `sign` and `agent`.
#[derive(Args, Debug, Default)]
pub struct SourceArgs {
    /// PKCS#11 module (default: p11-kit proxy, else OpenSC, else SoftHSM2).
    #[arg(long, env = "TOKENROLL_MODULE")]
    pub module: Option<PathBuf>,
    /// Select the signing pair by PKCS#11 URI (RFC 7512), e.g. pkcs11:token=alice;id=%01.
    #[arg(long, env = "TOKENROLL_KEY")]
    pub key: Option<String>,
    /// Digest: sha1, sha256, sha384, sha512 or CENTAGATE's 0-3 [default: sha256].
    #[arg(long, env = "TOKENROLL_ALGORITHM")]
    pub algorithm: Option<String>,
    /// Sign this text instead of a local random challenge.
    #[arg(long, env = "TOKENROLL_CHALLENGE", conflicts_with = "challenge_url")]
    pub challenge: Option<String>,
    /// Fetch the challenge from this URL (JSON {"challenge"}, CENTAGATE object.randomString, or text/plain).
    #[arg(long, env = "TOKENROLL_CHALLENGE_URL")]
    pub challenge_url: Option<String>,
    /// Extra trusted CA certificates (PEM) for HTTPS; never disables verification.
    #[arg(long, env = "TOKENROLL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Seconds to wait for a connection [default: 10].
    #[arg(long, env = "TOKENROLL_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<u64>,
    /// Seconds to wait for a whole request [default: 30].
    #[arg(long, env = "TOKENROLL_TIMEOUT")]
    pub timeout: Option<u64>,
    /// Config file to read instead of $XDG_CONFIG_HOME/tokenroll/config.toml.
    #[arg(long, env = "TOKENROLL_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Token, PIN and output flags of the one-shot commands.
#[derive(Args, Debug, Default)]
pub struct TokenArgs {
    /// Select the token by label.
    #[arg(long, env = "TOKENROLL_TOKEN")]
    pub token: Option<String>,
    /// Read the PIN from this environment variable (its name, not its value).
    #[arg(long, env = "TOKENROLL_PIN_ENV", conflicts_with = "pin_stdin")]
    pub pin_env: Option<String>,
    /// Read the PIN from the first line of stdin.
    #[arg(long, env = "TOKENROLL_PIN_STDIN")]
    pub pin_stdin: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long, env = "TOKENROLL_JSON")]
    pub json: bool,
    #[command(flatten)]
    pub source: SourceArgs,
}

/// The CENTAGATE side: shared by `enroll` and `agent`.
#[derive(Args, Debug, Default)]
pub struct ServerArgs {
    /// CENTAGATE origin, https://host[:port] (may end in /CentagateWS/webresources).
    #[arg(long, env = "TOKENROLL_SERVER")]
    pub server: Option<String>,
    /// The CENTAGATE admin who registers the token.
    #[arg(long, env = "TOKENROLL_ADMIN")]
    pub admin: Option<String>,
    /// The user the token is registered to (for the agent: every token; default see --user-from).
    #[arg(long, env = "TOKENROLL_USER")]
    pub user: Option<String>,
    /// Without --user: the certificate's cn, email or upn, the login name, or ask (a dialog; agent
    /// only) [agent's default: login].
    #[arg(long, env = "TOKENROLL_USER_FROM")]
    pub user_from: Option<String>,
    /// pending, valid, temp-deactivated, deactivated or 1-4 [default: pending].
    #[arg(long, env = "TOKENROLL_STATUS")]
    pub status: Option<String>,
    /// ms or s [default: ms].
    #[arg(long, env = "TOKENROLL_TIMESTAMP_UNIT")]
    pub timestamp_unit: Option<String>,
    /// Retries after a transport failure before any answer, 0-10 [default: 2].
    #[arg(long, env = "TOKENROLL_RETRIES")]
    pub retries: Option<u32>,
    /// The enrollment journal [default: $XDG_STATE_HOME/tokenroll/journal.jsonl].
    #[arg(long, env = "TOKENROLL_JOURNAL")]
    pub journal: Option<PathBuf>,
    /// The username must equal this field of the certificate: cn, email, upn or none [default: none].
    #[arg(long, env = "TOKENROLL_USER_MUST_MATCH")]
    pub user_must_match: Option<String>,
}

#[derive(Args, Debug)]
pub struct JournalArgs {
    /// The journal file [default: $XDG_STATE_HOME/tokenroll/journal.jsonl].
    #[arg(long, env = "TOKENROLL_JOURNAL")]
    pub journal: Option<PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long, env = "TOKENROLL_JSON")]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub token: TokenArgs,
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The pinentry program for the PIN dialog [default: pinentry].
    #[arg(long, env = "TOKENROLL_PINENTRY")]
    pub pinentry: Option<String>,
    /// ask (notification and menu item), auto (PIN dialog at once) or never [default: ask; auto with --headless].
    #[arg(long, env = "TOKENROLL_ENROLL_ON_INSERT")]
    pub enroll_on_insert: Option<String>,
    /// No tray icon: for kiosks and enrollment stations.
    #[arg(long, env = "TOKENROLL_HEADLESS")]
    pub headless: bool,
    /// How often to look for tokens, in milliseconds [default: 500].
    #[arg(long, env = "TOKENROLL_POLL_MS")]
    pub poll_ms: Option<u64>,
    #[command(flatten)]
    pub source: SourceArgs,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// Write the PKCS#7 here instead of stdout.
    #[arg(long, env = "TOKENROLL_OUT")]
    pub out: Option<PathBuf>,
    /// Write base64 instead of DER.
    #[arg(long, env = "TOKENROLL_BASE64")]
    pub base64: bool,
    #[command(flatten)]
    pub token: TokenArgs,
}

#[derive(Args, Debug)]
pub struct TokensArgs {
    #[arg(long, env = "TOKENROLL_MODULE")]
    pub module: Option<PathBuf>,
    #[arg(long, env = "TOKENROLL_JSON")]
    pub json: bool,
    #[arg(long, env = "TOKENROLL_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub file: PathBuf,
    /// Trusted certificates (PEM): also verify the signer's chain.
    #[arg(long)]
    pub trust: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Users file: [[user]] tables with name and state (active, inactive, bound).
    #[arg(long)]
    pub users: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// Write the simulator's TLS certificate (PEM) here, for clients' --ca-file.
    #[arg(long)]
    pub cert_out: Option<PathBuf>,
    /// Append a JSON line per request here.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// The admin allowed to register (secrets from TOKENROLL_AUTH_TOKEN / TOKENROLL_SECRET_CODE).
    #[arg(long, env = "TOKENROLL_ADMIN")]
    pub admin: String,
    /// Only trust signers issued by these certificates (PEM); by default any certificate is trusted.
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// Expect timestamps in seconds (as the vendor's samples send them).
    #[arg(long)]
    pub timestamp_seconds: bool,
    /// Fault: answer every registration with this code.
    #[arg(long)]
    pub force_code: Option<i64>,
    /// Fault: send code as a JSON string.
    #[arg(long)]
    pub code_as_string: bool,
    /// Fault: answer HTTP 500 with an HTML page (same as --html-status 500).
    #[arg(long)]
    pub html_500: bool,
    /// Fault: answer with an HTML error page and this HTTP status (4xx or 5xx).
    #[arg(long)]
    pub html_status: Option<u16>,
    /// Fault: answer 200 with a body that is not JSON.
    #[arg(long)]
    pub not_json: bool,
    /// Fault: send `object` as null, empty (""), string or object.
    #[arg(long, value_parser = ["null", "empty", "string", "object"])]
    pub object: Option<String>,
    /// Fault: send part of the answer, then reset the connection.
    #[arg(long)]
    pub cut_body: bool,
    /// Fault: wait this many milliseconds before answering.
    #[arg(long)]
    pub delay_ms: Option<u64>,
    /// Fault: answer with a 2 MiB body.
    #[arg(long)]
    pub huge_body: bool,
    /// Fault: answer 307 to this URL.
    #[arg(long)]
    pub redirect: Option<String>,
    /// Fault: close the connection without an answer for the first N registrations.
    #[arg(long, default_value_t = 0)]
    pub drop_first: u32,
    /// Fault: register, then close without answering, for the first N registrations.
    #[arg(long, default_value_t = 0)]
    pub lose_answers: u32,
    /// Fault: the server's clock is this many seconds ahead (negative: behind).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub clock_offset_secs: i64,
    /// Fault: serve an expired TLS certificate, or one for another host name.
    #[arg(long, value_parser = ["expired", "wrong-host"])]
    pub bad_tls: Option<String>,
    #[arg(long, env = "TOKENROLL_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ProvisionArgs {
    #[arg(long, env = "TOKENROLL_MODULE")]
    pub module: Option<PathBuf>,
    #[arg(long)]
    pub label: String,
    /// Initialise a free slot as this token first (SO PIN from --so-pin-env).
    #[arg(long)]
    pub init: bool,
    #[arg(long, default_value = "TOKENROLL_SO_PIN")]
    pub so_pin_env: String,
    #[arg(long, default_value = "TOKENROLL_PIN")]
    pub pin_env: String,
    /// rsa2048, rsa3072, rsa4096, p256 or p384.
    #[arg(long, default_value = "rsa2048")]
    pub key_type: String,
    /// CKA_ID as hex.
    #[arg(long, default_value = "01")]
    pub id: String,
    #[arg(long, default_value = "CN=Test User,O=tokenroll")]
    pub subject: String,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub expired: bool,
    #[arg(long)]
    pub not_yet_valid: bool,
    /// A keyEncipherment-only certificate (not a signing pair).
    #[arg(long)]
    pub no_sign_usage: bool,
    #[arg(long)]
    pub always_authenticate: bool,
    /// Write the certificate (PEM) here.
    #[arg(long)]
    pub cert_out: Option<PathBuf>,
}

impl SourceArgs {
    pub fn raw(&self) -> RawConfig {
        RawConfig {
            module: self.module.clone(),
            key: self.key.clone(),
            algorithm: self.algorithm.clone(),
            challenge: self.challenge.clone(),
            challenge_url: self.challenge_url.clone(),
            ca_file: self.ca_file.clone(),
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            ..Default::default()
        }
    }
}

impl TokenArgs {
    fn raw(&self) -> RawConfig {
        RawConfig {
            token: self.token.clone(),
            pin_env: self.pin_env.clone(),
            pin_stdin: self.pin_stdin.then_some(true),
            json: self.json.then_some(true),
            ..self.source.raw()
        }
    }
}

impl ServerArgs {
    /// These flags over `rest`.
    pub fn over(&self, rest: RawConfig) -> RawConfig {
        RawConfig {
            server: self.server.clone(),
            admin: self.admin.clone(),
            user: self.user.clone(),
            user_from: self.user_from.clone(),
            status: self.status.clone(),
            timestamp_unit: self.timestamp_unit.clone(),
            retries: self.retries,
            journal: self.journal.clone(),
            user_must_match: self.user_must_match.clone(),
            ..Default::default()
        }
        .over(rest)
    }
}

/// Prints progress for a person on stderr (stdout stays for results and --json).
pub fn print_step(out: &mut dyn Write, step: &Step) {
    let line = match step {
        Step::TokenFound { module, token, serial, uri, subject } => format!(
            "module loaded: {module}\ntoken found: '{token}' (serial {serial})\nsigning pair: {uri}\ncertificate: {subject}"
        ),
        Step::WeakDigest => "warning: SHA-1 is weak; use it only for a server that requires it".into(),
        Step::UserResolved { user } => format!("registering to user '{user}'"),
        Step::ChallengeReady { source, len } => format!("challenge ready ({source}, {len} bytes)"),
        Step::PinPad => "enter your PIN on the reader's PIN pad".into(),
        Step::PinWarning { final_try: true } => {
            "warning: this is the FINAL PIN try — a wrong PIN now locks the token".into()
        }
        Step::PinWarning { final_try: false } => "warning: the token reports few PIN tries left".into(),
        Step::Signed { algorithm, kind, bytes } => {
            format!("logged in; signed with {} ({kind}): PKCS#7 of {bytes} bytes", algorithm.label())
        }
        Step::SelfVerified => "PKCS#7 verified locally with the certificate's public key".into(),
        Step::Sending { url } => format!("sending registration to {url}"),
        Step::ClockSkew { offset_ms } => format!(
            "warning: this computer's clock is {:.0} s {} the server's; sending a timestamp by the server's clock (fix the clock: CENTAGATE refuses timestamps 5 minutes off)",
            (*offset_ms as f64 / 1000.0).abs(),
            if *offset_ms > 0 { "behind" } else { "ahead of" }
        ),
        Step::Retrying { after, reason } => format!(
            "{reason}\nretrying in {:.1} s with the same signature",
            after.as_secs_f64()
        ),
        Step::Answered { code, message } => format!("server answered: code {code} ({message})"),
    };
    let _ = writeln!(out, "{line}");
}

/// The stable exit codes of an enrollment or a signing: 0 registered or signed, 1 other failure,
/// 2 usage/config, 3 token/PIN, 4 refused by CENTAGATE, 5 network/TLS/protocol.
pub mod exit {
    use crate::api::ApiError;
    use crate::enroll::{EnrollError, OutcomeKind, Report};
    use crate::token::TokenError;

    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const TOKEN: i32 = 3;
    pub const REFUSED: i32 = 4;
    pub const NETWORK: i32 = 5;

    pub fn for_error(e: &EnrollError) -> i32 {
        match e {
            EnrollError::Usage(_) => USAGE,
            EnrollError::Token(TokenError::Ambiguous(_)) => USAGE,
            EnrollError::Token(_) => TOKEN,
            EnrollError::Api(ApiError::Config(_)) => USAGE,
            EnrollError::Api(_) => NETWORK,
            EnrollError::Journal(_) => FAILURE,
        }
    }

    /// A report's exit code; `err` is the error of a failed one.
    pub fn for_report(r: &Report, err: Option<&EnrollError>) -> i32 {
        match (r.outcome, err) {
            (OutcomeKind::Registered, _) => OK,
            (OutcomeKind::Rejected, _) => REFUSED,
            (OutcomeKind::Failed, Some(e)) => for_error(e),
            (OutcomeKind::Failed, None) => FAILURE,
        }
    }
}

/// Prints a report (one JSON object with `--json`) and returns its exit code.
fn emit_report(report: &Report, err: Option<&EnrollError>, json: bool) -> i32 {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("report serializes")
        );
    } else {
        match report.outcome {
            enroll::OutcomeKind::Registered => println!("registered: {}", report.message),
            _ => eprintln!("tokenroll: {}", report.message),
        }
    }
    exit::for_report(report, err)
}

/// Prints an error that ended a run before it started (no pair, no user).
fn emit_error(err: EnrollError, algorithm: &str, json: bool) -> i32 {
    let mut r = enroll::failure_report(&err, None, None, None, crate::digest::DigestAlg::Sha256);
    r.algorithm = algorithm.to_string();
    emit_report(&r, Some(&err), json)
}

fn usage_error(json: bool, message: String, algorithm: &str) -> i32 {
    emit_error(EnrollError::Usage(message), algorithm, json)
}

/// A command line clap refused. With `--json` among the arguments the one JSON object is still
/// printed, so scripts never have to parse clap's text; help and version print as usual.
pub fn argument_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let wants_json = std::env::args().any(|a| a == "--json");
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !wants_json {
        e.exit();
    }
    let message = e
        .render()
        .to_string()
        .lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    usage_error(true, message, "sha256")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn enroll_cmd(args: EnrollArgs) -> i32 {
    let json = args.token.json;
    let flags = args.server.over(args.token.raw());
    let resolved =
        crate::config::resolve(flags, args.token.source.config.as_deref()).and_then(|raw| {
            Ok((
                SignOptions::from_raw(&raw)?,
                RegisterOptions::from_raw(&raw, crate::config::Face::Cli)?,
                raw.json.unwrap_or(false),
            ))
        });
    let (sign, reg, json) = match resolved {
        Ok(v) => v,
        Err(e) => {
            return usage_error(
                json,
                e.to_string(),
                args.token.source.algorithm.as_deref().unwrap_or("sha256"),
            )
        }
    };
    let algorithm = sign.algorithm.name();
    let client = match crate::api::CentagateClient::new(&reg.server, sign.http.clone()) {
        Ok(c) => c,
        Err(e) => return emit_error(e.into(), algorithm, json),
    };
    let journal = match crate::journal::Journal::open(&reg.journal) {
        Ok(j) => j,
        Err(e) => return emit_error(e.into(), algorithm, json),
    };
    let registration = Registration::new(&reg, client.origin(), Some(&journal));
    let mut side = match Pkcs11Side::load(sign.module.as_deref(), sign.selector.clone()) {
        Ok(s) => s,
        Err(e) => return emit_error(e.into(), algorithm, json),
    };
    let mut stderr = std::io::stderr();
    let mut on = |s: Step| print_step(&mut stderr, &s);
    let request = Request {
        digest: sign.algorithm,
        challenge: &sign.challenge,
        http: &sign.http,
    };
    let plan = Plan::Register {
        registrar: &client,
        registration: &registration,
        user: UserPolicy {
            from: &reg.user,
            asked: None,
            must_match: reg.user_must_match,
        },
    };
    let mut prompt = CliPin::new(sign.pin.clone());
    let result = runtime().block_on(enroll::run(&mut side, &mut prompt, &request, plan, &mut on));
    // A one-shot process leaves C_Finalize to the exit (see `sign_cmd`).
    std::mem::forget(side);
    match result {
        Ok(done) => {
            let report = done.report.expect("a registration plan reports");
            emit_report(&report, None, json)
        }
        Err(f) => emit_report(
            &f.report(Some(&registration), sign.algorithm),
            Some(&f.error),
            json,
        ),
    }
}

pub fn sign_cmd(args: SignArgs) -> i32 {
    let flags = RawConfig {
        out: args.out.clone(),
        base64: args.base64.then_some(true),
        ..args.token.raw()
    };
    let resolved = crate::config::resolve(flags, args.token.source.config.as_deref())
        .and_then(|raw| Ok((SignOptions::from_raw(&raw)?, raw)));
    let (opts, raw) = match resolved {
        Ok(v) => v,
        Err(e) => {
            return usage_error(
                args.token.json,
                e.to_string(),
                args.token.source.algorithm.as_deref().unwrap_or("sha256"),
            )
        }
    };
    let (json, base64, out) = (
        raw.json.unwrap_or(false),
        raw.base64.unwrap_or(false),
        raw.out,
    );
    let mut side = match Pkcs11Side::load(opts.module.as_deref(), opts.selector.clone()) {
        Ok(s) => s,
        Err(e) => return emit_error(e.into(), opts.algorithm.name(), json),
    };
    let mut stderr = std::io::stderr();
    let mut on = |s: Step| print_step(&mut stderr, &s);
    let request = Request {
        digest: opts.algorithm,
        challenge: &opts.challenge,
        http: &opts.http,
    };
    let mut prompt = CliPin::new(opts.pin.clone());
    let result = runtime().block_on(enroll::run(
        &mut side,
        &mut prompt,
        &request,
        Plan::SIGN_ONLY,
        &mut on,
    ));
    // A one-shot process leaves C_Finalize to the exit, as OpenSSL's engine does: the module's
    // finalisation costs a measurable part of a one-shot run and the OS reclaims everything anyway.
    std::mem::forget(side);
    let done = match result {
        Ok(d) => d,
        Err(f) => return emit_report(&f.report(None, opts.algorithm), Some(&f.error), json),
    };
    use base64::Engine;
    let der = &done.pkcs7;
    let bytes = if base64 {
        let mut s = base64::engine::general_purpose::STANDARD.encode(der);
        s.push('\n');
        s.into_bytes()
    } else {
        der.clone()
    };
    let written = match &out {
        Some(p) => {
            std::fs::write(p, &bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
        }
        None if json => Ok(()),
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = written {
        eprintln!("tokenroll: {e}");
        return exit::FAILURE;
    }
    if json {
        let v = serde_json::json!({
            "outcome": "signed",
            "algorithm": opts.algorithm.name(),
            "challenge": done.challenge,
            "token": done.pair.token_ref(),
            "certificate": done.pair.certificate_info(),
            "pkcs7": base64::engine::general_purpose::STANDARD.encode(der),
        });
        println!("{v}");
    }
    exit::OK
}

pub fn tokens_cmd(args: TokensArgs) -> i32 {
    let flags = RawConfig {
        module: args.module.clone(),
        json: args.json.then_some(true),
        ..Default::default()
    };
    let raw = match crate::config::resolve(flags, args.config.as_deref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokenroll: {e}");
            return 2;
        }
    };
    let json = raw.json.unwrap_or(false);
    let module = match crate::token::Module::load(raw.module.as_deref()) {
        Ok(m) => m,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"module": null, "error": e.to_string(), "tokens": []})
                );
            } else {
                eprintln!("tokenroll: {e}");
            }
            return 3;
        }
    };
    let tokens = match module.tokens() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tokenroll: {e}");
            return 3;
        }
    };
    let slots = module.slots().unwrap_or_default();
    let mut out = Vec::new();
    for t in &tokens {
        let pairs = module.pairs(t).unwrap_or_default();
        let pairs: Vec<serde_json::Value> = pairs
            .iter()
            .map(|p| {
                let v = &p.cert.tbs_certificate.validity;
                serde_json::json!({
                    "uri": p.uri().to_string(),
                    "id": hex::encode(&p.id),
                    "label": p.object_label,
                    "key": p.kind.describe(),
                    "subject": p.subject(),
                    "issuer": p.cert.tbs_certificate.issuer.to_string(),
                    "not_before": crate::token::fmt_time(&v.not_before),
                    "not_after": crate::token::fmt_time(&v.not_after),
                    "valid": p.validity == crate::token::Validity::Valid,
                })
            })
            .collect();
        let mut tv = serde_json::to_value(t).expect("token serializes");
        tv["pairs"] = serde_json::Value::Array(pairs);
        out.push(tv);
    }
    if json {
        println!(
            "{}",
            serde_json::json!({"module": module.path().display().to_string(), "slots": slots, "tokens": out})
        );
        return 0;
    }
    println!(
        "module: {} ({})",
        module.path().display(),
        module.library_description()
    );
    for s in slots.iter().filter(|s| !s.token_present) {
        println!("slot '{}': no token", s.description);
    }
    if out.is_empty() {
        println!("no token present");
    }
    for t in &out {
        let flags: Vec<&str> = [
            ("pin_pad", "PIN pad"),
            ("pin_count_low", "PIN count low"),
            ("pin_final_try", "PIN final try"),
            ("pin_locked", "PIN LOCKED"),
        ]
        .iter()
        .filter(|(k, _)| t[*k] == true)
        .map(|(_, n)| *n)
        .collect();
        println!(
            "token '{}' serial {} ({} {}){}",
            t["label"].as_str().unwrap_or(""),
            t["serial"].as_str().unwrap_or(""),
            t["manufacturer"].as_str().unwrap_or(""),
            t["model"].as_str().unwrap_or(""),
            if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.join(", "))
            }
        );
        let pairs = t["pairs"].as_array().cloned().unwrap_or_default();
        if pairs.is_empty() {
            println!("  no signing pair");
        }
        for p in pairs {
            println!(
                "  {}\n    {}  {}  valid {} .. {}{}",
                p["uri"].as_str().unwrap_or(""),
                p["key"].as_str().unwrap_or(""),
                p["subject"].as_str().unwrap_or(""),
                p["not_before"].as_str().unwrap_or(""),
                p["not_after"].as_str().unwrap_or(""),
                if p["valid"] == true {
                    ""
                } else {
                    "  (NOT VALID NOW)"
                }
            );
        }
    }
    0
}

/// Accepts DER, PEM ("-----BEGIN PKCS7-----" or "CMS") or bare base64.
fn decode_pkcs7_file(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use base64::Engine;
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "neither DER nor text".to_string())?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| format!("neither DER nor base64: {e}"))
}

pub fn journal_cmd(args: JournalArgs) -> i32 {
    let path = args.journal.unwrap_or_else(crate::journal::default_path);
    let contents = match crate::journal::read(&path) {
        Ok(c) => c,
        Err(e) => {
            if args.json {
                println!("{}", serde_json::json!({"error": e.to_string()}));
            } else {
                eprintln!("error: {e}");
            }
            return 1;
        }
    };
    if args.json {
        let entries: Vec<serde_json::Value> = contents
            .entries
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(e).expect("entries serialize");
                v["state"] = serde_json::json!(e.state());
                v
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"journal": path.display().to_string(), "entries": entries,
                "skipped_lines": contents.skipped_lines})
        );
        return 0;
    }
    if contents.entries.is_empty() {
        println!("no registrations in {}", path.display());
    }
    for e in &contents.entries {
        let i = &e.intent;
        let answer = match &e.outcome {
            Some(o) => format!(
                "{}{}: {}",
                o.outcome,
                o.code.map(|c| format!(" (code {c})")).unwrap_or_default(),
                o.message
            ),
            None => e.state().to_string(),
        };
        println!(
            "{}  {} -> {}  token '{}' ({})  {}  by {}\n    {answer}",
            i.time,
            i.certificate_subject,
            i.user,
            i.token_label,
            i.token_serial,
            i.algorithm,
            i.admin
        );
    }
    if contents.skipped_lines > 0 {
        eprintln!(
            "warning: {} line(s) of {} could not be read (a write cut short by a crash, or damage)",
            contents.skipped_lines,
            path.display()
        );
    }
    0
}

pub fn verify_cmd(args: VerifyArgs) -> i32 {
    let result = (|| -> Result<(crate::cms::Verified, bool), String> {
        let bytes = std::fs::read(&args.file)
            .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
        let der = decode_pkcs7_file(&bytes)?;
        let v = crate::cms::verify(&der).map_err(|e| e.to_string())?;
        let mut chained = false;
        if let Some(t) = &args.trust {
            let pem = std::fs::read(t).map_err(|e| format!("cannot read {}: {e}", t.display()))?;
            let trust = crate::cms::certs_from_pem(&pem).map_err(|e| e.to_string())?;
            crate::cms::verify_chain(
                &v.signer,
                &v.certificates,
                &trust,
                std::time::SystemTime::now(),
            )
            .map_err(|e| e.to_string())?;
            chained = true;
        }
        Ok((v, chained))
    })();
    match result {
        Ok((v, chained)) => {
            let content =
                String::from_utf8(v.content.clone()).unwrap_or_else(|_| hex::encode(&v.content));
            let signer = v.signer.tbs_certificate.subject.to_string();
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": true, "signer": signer, "issuer": v.signer.tbs_certificate.issuer.to_string(),
                        "digest": v.digest.name(), "content": content, "chain_verified": chained})
                );
            } else {
                println!("valid: signed by {signer} with {}", v.digest.label());
                println!("content: {content}");
                if chained {
                    println!("chain: trusted");
                }
            }
            0
        }
        Err(e) => {
            if args.json {
                println!("{}", serde_json::json!({"valid": false, "error": e}));
            } else {
                eprintln!("not valid: {e}");
            }
            1
        }
    }
}

pub fn simulate_cmd(args: SimulateArgs) -> i32 {
    let run = || -> Result<(), String> {
        let raw = crate::config::resolve(RawConfig::default(), args.config.as_deref())
            .map_err(|e| e.to_string())?;
        let secrets = crate::config::admin_secrets(&raw).map_err(|e| e.to_string())?;
        let users_text = std::fs::read_to_string(&args.users)
            .map_err(|e| format!("cannot read {}: {e}", args.users.display()))?;
        let users = crate::simulator::Users::parse(&users_text)
            .map_err(|e| format!("{}: {e}", args.users.display()))?;
        let mut rules = crate::simulator::Rules::new(args.admin.clone(), secrets, users);
        rules.timestamp_in_seconds = args.timestamp_seconds;
        if let Some(t) = &args.trust {
            let pem = std::fs::read(t).map_err(|e| format!("cannot read {}: {e}", t.display()))?;
            rules.trust = crate::cms::certs_from_pem(&pem).map_err(|e| e.to_string())?;
        }
        let cfg = crate::simulator::SimConfig {
            listen: args.listen,
            rules,
            faults: crate::simulator::Faults {
                force_code: args.force_code,
                code_as_string: args.code_as_string,
                html_status: args.html_status.or(args.html_500.then_some(500)),
                not_json: args.not_json,
                object: args.object.clone(),
                cut_body: args.cut_body,
                delay: args.delay_ms.map(std::time::Duration::from_millis),
                huge_body: args.huge_body,
                redirect: args.redirect.clone(),
                drop_first: args.drop_first,
                lose_answers: args.lose_answers,
                clock_offset_secs: args.clock_offset_secs,
            },
            bad_tls: match args.bad_tls.as_deref() {
                Some("expired") => Some(crate::simulator::BadTls::Expired),
                Some(_) => Some(crate::simulator::BadTls::WrongHost),
                None => None,
            },
            record: args.record.clone(),
        };
        runtime().block_on(async {
            let running = crate::simulator::start(cfg)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
            if let Some(p) = &args.cert_out {
                std::fs::write(p, &running.cert_pem)
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            }
            println!("listening on {}", running.origin());
            let _ = std::io::stdout().flush();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .map_err(|e| e.to_string())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            Ok(())
        })
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tokenroll simulate: {e}");
            2
        }
    }
}

pub fn provision_cmd(args: ProvisionArgs) -> i32 {
    use crate::secret::Pin;
    use crate::token::{provision, Curve, KeyKind};
    let run = || -> Result<(), String> {
        let kind = match args.key_type.as_str() {
            "rsa2048" => KeyKind::Rsa { bits: 2048 },
            "rsa3072" => KeyKind::Rsa { bits: 3072 },
            "rsa4096" => KeyKind::Rsa { bits: 4096 },
            "p256" => KeyKind::Ec(Curve::P256),
            "p384" => KeyKind::Ec(Curve::P384),
            k => return Err(format!("unknown --key-type {k}")),
        };
        let pin = Pin::new(
            std::env::var(&args.pin_env).map_err(|_| format!("{} is not set", args.pin_env))?,
        );
        let module =
            crate::token::Module::load(args.module.as_deref()).map_err(|e| e.to_string())?;
        let token = if args.init {
            let so = Pin::new(
                std::env::var(&args.so_pin_env)
                    .map_err(|_| format!("{} is not set", args.so_pin_env))?,
            );
            provision::init_token(&module, &args.label, &so, &pin).map_err(|e| e.to_string())?
        } else {
            module
                .tokens()
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|t| t.label == args.label)
                .ok_or_else(|| format!("no token labelled {}", args.label))?
        };
        let id = hex::decode(&args.id).map_err(|e| format!("--id: {e}"))?;
        let mut spec = provision::KeySpec::new(kind, 0, &args.subject);
        spec.label = format!("key{}", args.id);
        spec.id = id;
        spec.email = args.email.clone();
        spec.signing_usage = !args.no_sign_usage;
        spec.always_authenticate = args.always_authenticate;
        if args.expired {
            spec.not_before = -2 * 86400;
            spec.not_after = -86400;
        }
        if args.not_yet_valid {
            spec.not_before = 86400;
            spec.not_after = 2 * 86400;
        }
        let der = provision::add_key(&module, &token, &pin, &spec).map_err(|e| e.to_string())?;
        if let Some(p) = &args.cert_out {
            use der::Decode;
            use der::EncodePem;
            let pem = x509_cert::Certificate::from_der(&der)
                .and_then(|c| c.to_pem(der::pem::LineEnding::LF))
                .map_err(|e| e.to_string())?;
            std::fs::write(p, pem).map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tokenroll provision: {e}");
            1
        }
    }
}
