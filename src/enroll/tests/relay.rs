//! The relay flow with fakes: the PIN before the challenge, one fresh challenge after a 409 for
//! an expired one (in the same login, no second PIN), a policy refusal as a rejection with its
//! rule, and transport failures retried with the same PKCS#7.

use super::*;
use crate::api::relay::{RelayAnswer, RelayChallenge};
use crate::relay::statement::Statement;
use std::rc::Rc;

struct FakeRelay {
    events: Rc<RefCell<Vec<String>>>,
    answers: RefCell<Vec<Result<RelayAnswer, ApiError>>>,
    /// Every PKCS#7 sent.
    sent: RefCell<Vec<Vec<u8>>>,
}

impl FakeRelay {
    fn new(events: &Rc<RefCell<Vec<String>>>, answers: Vec<Result<RelayAnswer, ApiError>>) -> Self {
        Self {
            events: events.clone(),
            answers: RefCell::new(answers),
            sent: Default::default(),
        }
    }
}

impl RelaySide for FakeRelay {
    fn enroll_url(&self) -> String {
        "https://relay.test/v1/enroll".into()
    }

    async fn challenge(&self, _: &str) -> Result<RelayChallenge, ApiError> {
        let n = self
            .events
            .borrow()
            .iter()
            .filter(|e| *e == "challenge")
            .count();
        self.events.borrow_mut().push("challenge".into());
        Ok(RelayChallenge {
            challenge_id: format!("id{n}"),
            challenge: format!("challenge-{n}"),
            relay: "https://relay.test".into(),
            expires_ms: 0,
        })
    }

    async fn enroll(&self, user: &str, pkcs7: &[u8]) -> Result<RelayAnswer, ApiError> {
        let v = crate::cms::verify(pkcs7).unwrap();
        let st = Statement::parse(&v.content).unwrap();
        assert_eq!(
            (st.relay.as_str(), st.username.as_str()),
            ("https://relay.test", user)
        );
        self.events
            .borrow_mut()
            .push(format!("enroll {}", st.challenge));
        self.sent.borrow_mut().push(pkcs7.to_vec());
        self.answers.borrow_mut().remove(0)
    }
}

struct LoggingPrompt(Rc<RefCell<Vec<String>>>);

impl PinPrompt for LoggingPrompt {
    fn pin(&mut self, _: &PairSummary) -> Result<Pin, TokenError> {
        self.0.borrow_mut().push("pin".into());
        Ok(Pin::new("1234".into()))
    }
}

fn registered() -> Result<RelayAnswer, ApiError> {
    Ok(RelayAnswer {
        outcome: "registered".into(),
        code: Some(0),
        message: Some("ok".into()),
    })
}

fn refused(status: u16, rule: &str) -> Result<RelayAnswer, ApiError> {
    Err(ApiError::RelayRefused {
        status,
        rule: rule.into(),
        message: "no".into(),
        retry_after: None,
    })
}

fn run(relay: &FakeRelay, events: &Rc<RefCell<Vec<String>>>) -> Result<Enrolled, Box<Failure>> {
    let from = UserFrom::Fixed("alice".into());
    let plan = RelayPlan {
        user: UserPolicy {
            from: &from,
            asked: None,
            must_match: MustMatch::None,
        },
        digest: DigestAlg::Sha256,
        journal: None,
        retries: 1,
    };
    block_on(run_relay(
        &mut FakeToken::new(),
        &mut LoggingPrompt(events.clone()),
        relay,
        &plan,
        &mut |_| {},
    ))
}

#[test]
fn the_pin_comes_before_the_challenge_and_an_expired_one_is_replaced_once() {
    let events = Rc::new(RefCell::new(vec![]));
    let relay = FakeRelay::new(
        &events,
        vec![refused(409, "challenge_expired"), registered()],
    );
    let done = run(&relay, &events).unwrap();
    let r = done.report.unwrap();
    assert_eq!((r.outcome, r.via), (OutcomeKind::Registered, Some("relay")));
    assert_eq!(
        *events.borrow(),
        [
            "pin",
            "challenge",
            "enroll challenge-0",
            "challenge",
            "enroll challenge-1"
        ],
        "one PIN, then a fresh challenge signed in the same login"
    );
    // Twice expired: the second is reported.
    let events = Rc::new(RefCell::new(vec![]));
    let relay = FakeRelay::new(
        &events,
        vec![
            refused(409, "challenge_expired"),
            refused(409, "challenge_expired"),
        ],
    );
    let f = run(&relay, &events).unwrap_err();
    assert_eq!(
        relay_failure_report(&f, DigestAlg::Sha256).rule.as_deref(),
        Some("challenge_expired")
    );
}

#[test]
fn a_policy_refusal_is_a_rejection_with_its_rule_and_transport_failures_resend_the_same() {
    let events = Rc::new(RefCell::new(vec![]));
    let relay = FakeRelay::new(&events, vec![refused(403, "username_mismatch")]);
    let r = run(&relay, &events).unwrap().report.unwrap();
    assert_eq!(r.outcome, OutcomeKind::Rejected);
    assert_eq!(r.rule.as_deref(), Some("username_mismatch"));
    assert!(r.message.contains("username_mismatch"), "{}", r.message);
    let events = Rc::new(RefCell::new(vec![]));
    let down = Err(ApiError::Network {
        url: "u".into(),
        reason: "refused".into(),
        maybe_sent: false,
    });
    let relay = FakeRelay::new(&events, vec![down, registered()]);
    let r = run(&relay, &events).unwrap().report.unwrap();
    assert_eq!(r.outcome, OutcomeKind::Registered);
    let sent = relay.sent.borrow();
    assert_eq!(
        (sent.len(), &sent[0]),
        (2, &sent[1]),
        "the same PKCS#7 again"
    );
}
