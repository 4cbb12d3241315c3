//! The event loop's ownership rules, without a module or a server: answers to withdrawn
//! requests are dropped (a PIN with them), a refused PIN is never handed on again, and a token's
//! record goes with the token.

use super::*;
use crate::secret::{AdminSecrets, AuthToken, SecretCode};
use crate::ui::dialogs::PinRequest;

struct NoDialog;
impl PinDialog for NoDialog {
    fn ask(&self, _: &PinRequest, _: &Cancel) -> Result<Option<Pin>, String> {
        Ok(None)
    }
    fn ask_user(&self, _: &str, _: &str, _: &Cancel) -> Result<Option<String>, String> {
        Ok(None)
    }
}

struct Silent;
impl Notifier for Silent {
    fn notify(&self, _: &str, _: &str) {}
}

fn owner(dir: &std::path::Path) -> Owner {
    let register = crate::config::RegisterOptions {
        server: "https://cg.example.com".into(),
        admin: "helpdesk".into(),
        user: crate::enroll::UserFrom::Fixed("alice".into()),
        status: crate::api::TokenStatus::Pending,
        timestamp_unit: crate::api::TimestampUnit::Millis,
        login: crate::config::LoginOptions::Static(AdminSecrets {
            auth_token: AuthToken::new("AT".into()),
            secret_code: SecretCode::new("SC".into()),
        }),
        retries: 0,
        journal: dir.join("journal.jsonl"),
        user_must_match: crate::enroll::MustMatch::None,
    };
    let cfg = AgentConfig {
        module: None,
        key: None,
        algorithm: DigestAlg::Sha256,
        challenge: ChallengeSource::Local,
        http: HttpOptions::default(),
        policy: EnrollOnInsert::Auto,
        poll: Duration::from_millis(100),
        state_dir: dir.to_path_buf(),
        destination: Destination::Server(register),
    };
    let (reports, _) = mpsc::unbounded_channel();
    Owner {
        shared: Arc::new(Shared {
            backend: Backend::open(
                &cfg.destination,
                &HttpOptions::default(),
                std::sync::Arc::new(crate::enroll::NoOneToAsk),
            )
            .unwrap(),
            journal: crate::journal::Journal::open(cfg.destination.journal()).unwrap(),
            cfg,
            module: Arc::new(Mutex::new(None)),
            dialog: Arc::new(NoDialog),
            notifier: Box::new(Silent),
        }),
        machine: Machine::new(EnrollOnInsert::Never),
        records: HashMap::new(),
        registry: registry::Registry::open(dir).unwrap(),
        salt: [7; 32],
        next_generation: 0,
        workers: tokio::task::JoinSet::new(),
        reports,
        quit: Arc::new(Cancel::default()),
    }
}

fn key() -> TokenKey {
    TokenKey {
        label: "alice".into(),
        serial: "01".into(),
        reader: "Reader A".into(),
    }
}

fn entered(generation: u64, pin: &str) -> Report {
    Report::Asked {
        key: key(),
        generation,
        answer: Asked::Entered {
            pin: Some(Pin::new(pin.into())),
            user: None,
        },
    }
}

#[test]
fn answers_to_withdrawn_requests_are_dropped_with_their_pin() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = owner(dir.path());
    o.records.insert(
        key(),
        Record {
            generation: 2,
            ..Default::default()
        },
    );
    // From the dialog of an earlier request (the person was told it was cancelled).
    assert_eq!(o.accept(entered(1, "1111")), None);
    assert!(o.records[&key()].pin.is_none(), "the stale PIN was dropped");
    // From the current one.
    assert_eq!(
        o.accept(entered(2, "2222")),
        Some(Event::PinEntered { key: key() })
    );
    assert_eq!(
        o.records[&key()]
            .pin
            .as_ref()
            .map(|p| p.expose().to_string()),
        Some("2222".into())
    );
    // The token leaves: its record, PIN included, goes; a late answer finds nothing.
    assert_eq!(
        o.change(watcher::Change::Removed(key())),
        Some(Event::Removed { key: key() })
    );
    assert!(!o.records.contains_key(&key()));
    let late = Report::Enrolled {
        key: key(),
        generation: 2,
        outcome: Enrolled::Answered {
            code: 0,
            message: "ok".into(),
            certificate: Some(("aa".into(), "alice".into())),
        },
    };
    assert_eq!(o.accept(late), None);
}

#[test]
fn a_pin_the_token_refused_is_never_handed_on_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = owner(dir.path());
    o.records.insert(
        key(),
        Record {
            generation: 1,
            ..Default::default()
        },
    );
    assert_eq!(
        o.accept(entered(1, "0000")),
        Some(Event::PinEntered { key: key() })
    );
    let refused = Report::Enrolled {
        key: key(),
        generation: 1,
        outcome: Enrolled::PinRejected("wrong PIN".into()),
    };
    assert!(matches!(o.accept(refused), Some(Event::PinRejected { .. })));
    o.records.get_mut(&key()).unwrap().generation = 2;
    let again = o.accept(entered(2, "0000"));
    assert!(
        matches!(&again, Some(Event::PinRejected { message, .. }) if message.contains("already refused")),
        "{again:?}"
    );
    assert!(o.records[&key()].pin.is_none());
}
