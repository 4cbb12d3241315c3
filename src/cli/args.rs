//! The command line's shape: subcommands and the flags that are not configuration keys. The
//! keys themselves are declared once, in `config::keys`, and flattened in here.
//!
//! Owns: argv's structure. Does not own: what any value means (see `config`).

use crate::config::keys::{
    AgentKeys, ConfigFlag, HttpKeys, JournalKeys, LoginKeys, ModuleKeys, OutputKeys, PinKeys,
    RelayClientKeys, ServerKeys, SignOutKeys, SigningKeys,
};
use crate::config::RawConfig;
use clap::{Args, Parser, Subcommand};
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
    /// Log in (or take the static secrets), check the session with the server, log out.
    Session(SessionArgs),
    /// A user's PKI token status and the certificates bound to them.
    Status(SessionArgs),
    /// Run the CENTAGATE simulator on loopback over TLS.
    Simulate(SimulateArgs),
    /// Run the enrollment relay: the one service that holds the CENTAGATE admin session, so
    /// that desks enroll with none.
    Relay(RelayArgs),
    /// Run in the desktop session: notice tokens, ask for the PIN, enroll, tell the person.
    Agent(AgentArgs),
    /// The helpdesk enrollment station: many tokens for many people in one sitting, with a
    /// report for the auditor.
    Station(StationArgs),
    /// Show the configuration: every key's value and where it came from.
    Config(ConfigArgs),
    /// Check this desk: modules, pcscd and readers, tokens and PINs, the configuration, the
    /// server or relay (DNS, TCP, TLS, clock, session) and the agent; OK, WARN, FAIL or SKIP
    /// with what to do. Registers nothing. Exit 0 when nothing failed, 1 when a check failed.
    Doctor(AllKeys),
    /// Run a whole enrollment on a throw-away SoftHSM2 token against the built-in simulator.
    Demo,
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Packaging: write the man pages (tokenroll.1, tokenroll-SUBCOMMAND.1) into DIR.
    #[command(hide = true)]
    Manpages { dir: PathBuf },
    /// Test tooling: put a key pair and a self-signed certificate on a (SoftHSM2) token.
    #[command(hide = true)]
    Provision(ProvisionArgs),
}

/// What the one-shot commands (`enroll`, `sign`) share: the token, the signature, the PIN, HTTP
/// (for a fetched challenge), output and the config file.
#[derive(Args, Debug)]
pub struct OneShotArgs {
    #[command(flatten)]
    pub module: ModuleKeys,
    #[command(flatten)]
    pub signing: SigningKeys,
    #[command(flatten)]
    pub pin: PinKeys,
    #[command(flatten)]
    pub http: HttpKeys,
    #[command(flatten)]
    pub output: OutputKeys,
    #[command(flatten)]
    pub config: ConfigFlag,
}

impl OneShotArgs {
    /// These flags and variables as one configuration layer.
    fn layer(&self) -> RawConfig {
        RawConfig {
            module: self.module.clone(),
            signing: self.signing.clone(),
            pin: self.pin.clone(),
            http: self.http.clone(),
            output: self.output.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct EnrollArgs {
    /// When the user is bound to another certificate (22027): unbind it and register this one
    /// (asks first on a terminal).
    #[arg(long)]
    pub replace: bool,
    /// With --replace: do not ask (for scripts).
    #[arg(long, requires = "replace")]
    pub yes: bool,
    #[command(flatten)]
    pub server: ServerKeys,
    #[command(flatten)]
    pub login: LoginKeys,
    #[command(flatten)]
    pub journal: JournalKeys,
    #[command(flatten)]
    pub relay: RelayClientKeys,
    #[command(flatten)]
    pub common: OneShotArgs,
}

impl EnrollArgs {
    /// The flags and variables as one configuration layer.
    pub fn layer(&self) -> RawConfig {
        RawConfig {
            server: self.server.clone(),
            login: self.login.clone(),
            journal: self.journal.clone(),
            relay_client: self.relay.clone(),
            ..self.common.layer()
        }
    }
}

#[derive(Args, Debug)]
pub struct SignArgs {
    #[command(flatten)]
    pub out: SignOutKeys,
    #[command(flatten)]
    pub common: OneShotArgs,
}

impl SignArgs {
    pub fn layer(&self) -> RawConfig {
        RawConfig {
            sign_out: self.out.clone(),
            ..self.common.layer()
        }
    }
}

#[derive(Args, Debug)]
pub struct SessionArgs {
    #[command(flatten)]
    pub server: ServerKeys,
    #[command(flatten)]
    pub login: LoginKeys,
    #[command(flatten)]
    pub http: HttpKeys,
    #[command(flatten)]
    pub output: OutputKeys,
    #[command(flatten)]
    pub config: ConfigFlag,
}

impl SessionArgs {
    pub fn layer(&self) -> RawConfig {
        RawConfig {
            server: self.server.clone(),
            login: self.login.clone(),
            http: self.http.clone(),
            output: self.output.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    pub server: ServerKeys,
    #[command(flatten)]
    pub login: LoginKeys,
    #[command(flatten)]
    pub journal: JournalKeys,
    #[command(flatten)]
    pub agent: AgentKeys,
    #[command(flatten)]
    pub relay: RelayClientKeys,
    #[command(flatten)]
    pub module: ModuleKeys,
    #[command(flatten)]
    pub signing: SigningKeys,
    #[command(flatten)]
    pub http: HttpKeys,
    #[command(flatten)]
    pub config: ConfigFlag,
}

impl AgentArgs {
    pub fn layer(&self) -> RawConfig {
        RawConfig {
            server: self.server.clone(),
            login: self.login.clone(),
            journal: self.journal.clone(),
            agent: self.agent.clone(),
            relay_client: self.relay.clone(),
            module: self.module.clone(),
            signing: self.signing.clone(),
            http: self.http.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct StationArgs {
    /// The batch (CSV): a header row naming username and optionally serial and status, then a
    /// row per user.
    #[arg(long, value_name = "FILE.csv")]
    pub batch: Option<PathBuf>,
    /// The report (CSV) to append a row to as each token finishes; a restart with the same
    /// report goes on where the last run ended.
    #[arg(long, value_name = "FILE.csv")]
    pub report: Option<PathBuf>,
    /// At the end, write a printable HTML report of the run here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Events as JSON lines on stdout (with --headless).
    #[arg(long)]
    pub jsonl: bool,
    /// How many tokens enroll at the same time [default: 4].
    #[arg(long, value_name = "N")]
    pub lanes: Option<usize>,
    /// A user bound to another certificate (22027): skip, ask, or replace (unbind it and register
    /// this one) [default: ask with the terminal UI, skip with --headless].
    #[arg(long, value_name = "WHAT")]
    pub on_bound: Option<String>,
    /// Run the preflight (module, readers, server, clock, login, batch) and exit.
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub server: ServerKeys,
    #[command(flatten)]
    pub login: LoginKeys,
    #[command(flatten)]
    pub journal: JournalKeys,
    #[command(flatten)]
    pub agent: AgentKeys,
    #[command(flatten)]
    pub module: ModuleKeys,
    #[command(flatten)]
    pub signing: SigningKeys,
    #[command(flatten)]
    pub pin: PinKeys,
    #[command(flatten)]
    pub http: HttpKeys,
    #[command(flatten)]
    pub config: ConfigFlag,
}

impl StationArgs {
    pub fn layer(&self) -> RawConfig {
        RawConfig {
            server: self.server.clone(),
            login: self.login.clone(),
            journal: self.journal.clone(),
            agent: self.agent.clone(),
            module: self.module.clone(),
            signing: self.signing.clone(),
            pin: self.pin.clone(),
            http: self.http.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Every key's resolved value and its origin: policy, system, user, env, flag or default.
    #[arg(long)]
    pub show: bool,
    #[command(flatten)]
    pub keys: AllKeys,
}

/// Every configuration key as a flag and variable: what `config --show` and `doctor` take.
#[derive(Args, Debug)]
pub struct AllKeys {
    #[command(flatten)]
    pub module: ModuleKeys,
    #[command(flatten)]
    pub signing: SigningKeys,
    #[command(flatten)]
    pub http: HttpKeys,
    #[command(flatten)]
    pub pin: PinKeys,
    #[command(flatten)]
    pub output: OutputKeys,
    #[command(flatten)]
    pub sign_out: SignOutKeys,
    #[command(flatten)]
    pub server: ServerKeys,
    #[command(flatten)]
    pub journal: JournalKeys,
    #[command(flatten)]
    pub relay: RelayClientKeys,
    #[command(flatten)]
    pub login: LoginKeys,
    #[command(flatten)]
    pub agent: AgentKeys,
    #[command(flatten)]
    pub config: ConfigFlag,
}

impl AllKeys {
    /// Every key's flag and variable, as one layer.
    pub fn layer(&self) -> RawConfig {
        RawConfig {
            module: self.module.clone(),
            signing: self.signing.clone(),
            http: self.http.clone(),
            pin: self.pin.clone(),
            output: self.output.clone(),
            sign_out: self.sign_out.clone(),
            server: self.server.clone(),
            journal: self.journal.clone(),
            relay_client: self.relay.clone(),
            login: self.login.clone(),
            agent: self.agent.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct TokensArgs {
    #[command(flatten)]
    pub module: ModuleKeys,
    #[command(flatten)]
    pub output: OutputKeys,
    #[command(flatten)]
    pub config: ConfigFlag,
}

impl TokensArgs {
    pub fn layer(&self) -> RawConfig {
        RawConfig {
            module: self.module.clone(),
            output: self.output.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct JournalArgs {
    /// Ask each unknown entry's server what became of it, and record the answer.
    #[arg(long)]
    pub reconcile: bool,
    #[command(flatten)]
    pub journal: JournalKeys,
    #[command(flatten)]
    pub login: LoginKeys,
    #[command(flatten)]
    pub http: HttpKeys,
    #[command(flatten)]
    pub relay: RelayClientKeys,
    #[command(flatten)]
    pub output: OutputKeys,
    #[command(flatten)]
    pub config: ConfigFlag,
}

impl JournalArgs {
    pub fn layer(&self) -> RawConfig {
        RawConfig {
            journal: self.journal.clone(),
            relay_client: self.relay.clone(),
            login: self.login.clone(),
            http: self.http.clone(),
            output: self.output.clone(),
            ..Default::default()
        }
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    pub file: PathBuf,
    /// Trusted certificates (PEM): also verify the signer's chain.
    #[arg(long)]
    pub trust: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputKeys,
}

#[derive(Args, Debug)]
pub struct RelayArgs {
    /// The relay's configuration file (its own: the desktop config files are not read).
    #[arg(long, env = "TOKENROLL_RELAY_CONFIG")]
    pub config: PathBuf,
    /// Check the configuration, the TLS files, the database and the listeners, then exit.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// Users file: [[user]] tables with name and state (active, inactive, bound).
    #[arg(long)]
    pub users: PathBuf,
    /// The address to listen on: loopback only, unless --listen-any is given.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub listen: std::net::SocketAddr,
    /// Allow a --listen address that is not loopback (the simulator accepts any admin secret
    /// configured for it: never expose it beyond a test network).
    #[arg(long)]
    pub listen_any: bool,
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
    /// The App's integrationKey for admin logins (its secretKey from TOKENROLL_APP_SECRET);
    /// accounts that may log in are the users file's [[admin]] tables.
    #[arg(long)]
    pub app_key: Option<String>,
    /// An admin session ends after this many milliseconds without use [default: 1800000].
    #[arg(long)]
    pub session_timeout_ms: Option<u64>,
    /// Fault: answer every admin login with this code.
    #[arg(long)]
    pub login_code: Option<i64>,
    /// Fault: end every admin session after this many registrations.
    #[arg(long)]
    pub end_sessions_after: Option<u32>,
    /// Fault: answer the judged CENTAGATE JSON with this HTTP status instead of 200.
    #[arg(long)]
    pub json_status: Option<u16>,
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
    /// Fault: answer the first N user/auth/list calls with HTTP 503.
    #[arg(long, default_value_t = 0)]
    pub lists_unavailable: u32,
    /// Fault: the server's clock is this many seconds ahead (negative: behind).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub clock_offset_secs: i64,
    /// Serve this TLS certificate (PEM) instead of a fresh one (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Fault: serve an expired TLS certificate, or one for another host name.
    #[arg(long, value_parser = ["expired", "wrong-host"])]
    pub bad_tls: Option<String>,
    #[command(flatten)]
    pub config: ConfigFlag,
}

#[derive(Args, Debug)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub module: ModuleKeys,
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
    /// Have this CA certificate (PEM) issue the certificate, with --issuer-key.
    #[arg(long, requires = "issuer_key")]
    pub issuer_cert: Option<PathBuf>,
    /// The issuing CA's P-256 private key (PKCS#8 PEM).
    #[arg(long, requires = "issuer_cert")]
    pub issuer_key: Option<PathBuf>,
}
