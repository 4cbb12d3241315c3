//! `tokenroll demo`: a whole enrollment with nothing configured — a throw-away SoftHSM2 token with
//! a fresh key pair and certificate, the simulator in-process, and each step printed as it happens.
//!
//! Owns: the demo's setup and narration. Does not own: any step of the enrollment itself, which is
//! the same `enroll` code the CLI runs.

use crate::api::{CentagateClient, HttpOptions, TimestampUnit, TokenStatus};
use crate::challenge::ChallengeSource;
use crate::config::RegisterOptions;
use crate::digest::DigestAlg;
use crate::enroll::{
    self, MustMatch, PairSummary, PinPrompt, Pkcs11Side, Plan, Registration, Request, Step,
    UserFrom, UserPolicy,
};
use crate::secret::{AdminPassword, AdminSecrets, AppSecret, AuthToken, Pin, SecretCode};
use crate::token::{provision, KeyKind, TokenError};
use std::io::Write;

pub const SOFTHSM_TEMPLATE: &str = include_str!("../softhsm-config/softhsm2.conf.in");

/// Writes a SoftHSM2 config for a fresh token directory under `dir`; returns the config's path.
pub fn softhsm_conf(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        SOFTHSM_TEMPLATE.replace("@TOKENDIR@", &tokens.display().to_string()),
    )?;
    Ok(conf)
}

struct KnownPin(Pin);

impl PinPrompt for KnownPin {
    fn pin(&mut self, _: &PairSummary) -> Result<Pin, TokenError> {
        Ok(self.0.clone())
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

pub fn run() -> i32 {
    match run_inner() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo failed: {e}");
            1
        }
    }
}

fn run_inner() -> Result<i32, String> {
    let say = |s: String| {
        println!("{s}");
        let _ = std::io::stdout().flush();
    };
    let module_path = crate::token::softhsm_module()
        .ok_or("SoftHSM2 is not installed: run 'apt-get install softhsm2' (the README's first command does)")?;
    let dir = tempfile::Builder::new()
        .prefix("tokenroll-demo-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let conf = softhsm_conf(dir.path()).map_err(|e| e.to_string())?;
    // Set before any thread exists: SoftHSM2 reads it at C_Initialize.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    say(format!(
        "[setup] throw-away SoftHSM2 token in {}",
        dir.path().display()
    ));

    let pin = Pin::new(random_hex(4));
    {
        let module = crate::token::Module::load(Some(&module_path)).map_err(|e| e.to_string())?;
        let so = Pin::new(random_hex(8));
        let token = provision::init_token(&module, "tokenroll-demo", &so, &pin)
            .map_err(|e| e.to_string())?;
        let spec = provision::KeySpec::new(
            KeyKind::Rsa { bits: 2048 },
            1,
            "CN=Demo User,O=tokenroll demo",
        );
        provision::add_key(&module, &token, &pin, &spec).map_err(|e| e.to_string())?;
        say("[setup] RSA-2048 key pair generated on the token, self-signed certificate CN=Demo User stored".into());
    }

    let secrets = AdminSecrets {
        auth_token: AuthToken::new(random_hex(16)),
        secret_code: SecretCode::new(random_hex(16)),
    };
    // An App and an admin account with a password: the demo logs in as a deployment does.
    let (app_key, app_secret, password) = (random_hex(8), random_hex(16), random_hex(8));
    let users = crate::simulator::Users::parse(&format!(
        "[[user]]\nname = \"demo-user\"\nstate = \"active\"\n\n\
         [[admin]]\nname = \"demo-admin\"\npassword = \"{password}\"\n"
    ))
    .expect("static");
    // The static secrets of the simulator's own admin are never used by the demo.
    let mut rules = crate::simulator::Rules::new("static-admin".into(), secrets, users);
    rules.sessions.app = Some((app_key.clone(), AppSecret::new(app_secret.clone())));
    let rt = crate::cli::runtime();
    let sim = rt
        .block_on(crate::simulator::start(crate::simulator::SimConfig {
            listen: "127.0.0.1:0".parse().expect("static"),
            rules,
            faults: Default::default(),
            record: None,
            bad_tls: None,
            tls_files: None,
        }))
        .map_err(|e| format!("cannot start the simulator: {e}"))?;
    let ca = dir.path().join("simulator.pem");
    std::fs::write(&ca, &sim.cert_pem).map_err(|e| e.to_string())?;
    say(format!(
        "[setup] CENTAGATE simulator listening on {} (TLS, certificate trusted for this run)",
        sim.origin()
    ));

    let http = HttpOptions {
        ca_file: Some(ca),
        ..Default::default()
    };
    let client = std::sync::Arc::new(
        CentagateClient::new(&sim.origin(), http.clone()).map_err(|e| e.to_string())?,
    );
    let options = RegisterOptions {
        server: sim.origin(),
        admin: "demo-admin".into(),
        user: UserFrom::Fixed("demo-user".into()),
        status: TokenStatus::Pending,
        timestamp_unit: TimestampUnit::Millis,
        login: crate::config::LoginOptions::Password {
            api: crate::api::login::AuthApi::V2,
            app: crate::api::login::App {
                key: app_key,
                secret: AppSecret::new(app_secret),
            },
            password: Some(AdminPassword::new(password)),
        },
        retries: 2,
        journal: dir.path().join("journal.jsonl"),
        user_must_match: MustMatch::None,
    };
    // The demo leaves nothing behind, not even a journal entry.
    let registration = Registration::new(&options, client.origin(), None);
    let mut side = Pkcs11Side::load(Some(&module_path), crate::token::Selector::default())
        .map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout();
    let mut on = |s: Step| crate::cli::print_step(&mut stdout, &s);
    let request = Request {
        digest: DigestAlg::Sha256,
        challenge: &ChallengeSource::Local,
        http: &http,
    };
    let session = enroll::Session::new(
        client.clone(),
        options.login.clone(),
        options.admin.clone(),
        std::sync::Arc::new(crate::enroll::NoOneToAsk),
    );
    let plan = Plan::Register {
        registrar: &session,
        registration: &registration,
        user: UserPolicy {
            from: &options.user,
            asked: None,
            must_match: options.user_must_match,
        },
    };
    let done = rt
        .block_on(enroll::run(
            &mut side,
            &mut KnownPin(pin),
            &request,
            plan,
            &mut on,
        ))
        .map_err(|f| f.error.to_string())?;
    rt.block_on(session.logout());
    say("logged out of the admin session".into());
    let report = done.report.expect("a registration plan reports");
    sim.task.abort();
    match report.code {
        Some(0) => say(format!(
            "registered: code 0 — token '{}' is bound to demo-user",
            done.pair.token_label
        )),
        _ => say(format!("not registered: {}", report.message)),
    }
    say("[cleanup] token and simulator removed".into());
    Ok(crate::cli::exit::for_report(&report, None))
}
