use super::*;
use crate::api::{TimestampUnit, TokenStatus, CODE_USER_BOUND};
use crate::secret::{AdminSecrets, AuthToken, SecretCode};
use std::cell::RefCell;

/// A token with a software P-256 key: real CMS, no hardware.
struct FakeToken {
    key: p256::ecdsa::SigningKey,
    cert: Certificate,
    /// Signs with this key instead, as a faulty token would.
    wrong_key: Option<p256::ecdsa::SigningKey>,
    locked: bool,
    /// CKF_USER_PIN_TO_BE_CHANGED.
    change_pin: bool,
    pin_pad: bool,
    /// One entry per login: true for the PIN pad.
    logins: std::rc::Rc<RefCell<Vec<bool>>>,
}

impl FakeToken {
    fn new() -> Self {
        Self::with_subject("Fake")
    }

    fn with_subject(cn: &str) -> Self {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let cert = crate::token::tests::software_cert(cn, &key, 30);
        Self {
            key,
            cert,
            wrong_key: None,
            locked: false,
            change_pin: false,
            pin_pad: false,
            logins: Default::default(),
        }
    }
}

struct FakePair {
    summary: PairSummary,
    key: p256::ecdsa::SigningKey,
    logins: std::rc::Rc<RefCell<Vec<bool>>>,
}

impl TokenSide for FakeToken {
    type Pair = FakePair;

    fn select(&mut self) -> Result<FakePair, TokenError> {
        Ok(FakePair {
            summary: PairSummary {
                module: "fake".into(),
                token_label: "fake".into(),
                token_serial: "0001".into(),
                pin_pad: self.pin_pad,
                pin_count_low: false,
                pin_final_try: false,
                pin_locked: self.locked,
                pin_to_be_changed: self.change_pin,
                uri: "pkcs11:token=fake".into(),
                subject: "CN=Fake".into(),
                kind: KeyKind::Ec(crate::token::Curve::P256),
                cert: self.cert.clone(),
                cert_der: der::Encode::to_der(&self.cert).unwrap(),
            },
            key: self.wrong_key.clone().unwrap_or(self.key.clone()),
            logins: self.logins.clone(),
        })
    }
}

impl SelectedPair for FakePair {
    fn summary(&self) -> &PairSummary {
        &self.summary
    }

    fn log_in(&mut self, login: &PinInput) -> Result<(), TokenError> {
        self.logins
            .borrow_mut()
            .push(matches!(login, PinInput::ProtectedPath));
        Ok(())
    }

    fn sign_cms(
        &mut self,
        login: PinInput,
        content: &[u8],
        digest: DigestAlg,
    ) -> Result<Vec<u8>, TokenError> {
        self.logins
            .borrow_mut()
            .push(matches!(login, PinInput::ProtectedPath));
        Ok(crate::cms::build_attached::<_, p256::ecdsa::DerSignature>(
            &self.key,
            &self.summary.cert,
            content,
            digest,
        )
        .unwrap())
    }
}

struct CountingPrompt(usize);
impl PinPrompt for CountingPrompt {
    fn pin(&mut self, _: &PairSummary) -> Result<Pin, TokenError> {
        self.0 += 1;
        Ok(Pin::new("1234".into()))
    }
}

struct FakeRegistrar {
    code: i64,
    bodies: RefCell<Vec<RegisterBody>>,
    /// Answers given before `code`, one per registration.
    first: RefCell<Vec<i64>>,
    /// Whether a refused session can be replaced by a fresh login.
    can_log_in: bool,
    logins: std::cell::Cell<u32>,
    /// Transport failures met before any answer, one per registration.
    errors: RefCell<Vec<ApiError>>,
    /// How often the server was asked what is bound (it cannot say here).
    asked_bound: std::cell::Cell<u32>,
}

impl FakeRegistrar {
    fn answering(code: i64) -> Self {
        Self {
            code,
            bodies: RefCell::new(vec![]),
            first: RefCell::new(vec![]),
            can_log_in: false,
            logins: Default::default(),
            errors: RefCell::new(vec![]),
            asked_bound: Default::default(),
        }
    }
}

impl Registrar for FakeRegistrar {
    async fn secrets(
        &self,
        _: &mut (dyn FnMut(Step) + Send),
    ) -> Result<AdminSecrets, super::EnrollError> {
        self.logins.set(self.logins.get() + 1);
        Ok(secrets())
    }

    async fn session_refused(&self, _: &AdminSecrets) -> bool {
        self.can_log_in
    }

    async fn bound(
        &self,
        _: &str,
        _: &str,
        _: &AdminSecrets,
    ) -> Result<Vec<crate::api::login::BoundCert>, ApiError> {
        self.asked_bound.set(self.asked_bound.get() + 1);
        Err(ApiError::Config("the list cannot be asked here".into()))
    }

    async fn register(&self, _: &str, body: &RegisterBody) -> Result<Answer, ApiError> {
        self.bodies.borrow_mut().push(body.clone());
        if !self.errors.borrow().is_empty() {
            return Err(self.errors.borrow_mut().remove(0));
        }
        let mut first = self.first.borrow_mut();
        let code = if first.is_empty() {
            self.code
        } else {
            first.remove(0)
        };
        Ok(Answer {
            code,
            message: "m".into(),
            object: serde_json::Value::Null,
        })
    }
}

fn secrets() -> AdminSecrets {
    AdminSecrets {
        auth_token: AuthToken::new("AT-123".into()),
        secret_code: SecretCode::new("S3cr3t".into()),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

fn sign_only(
    t: &mut FakeToken,
    p: &mut CountingPrompt,
    digest: DigestAlg,
    steps: &mut Vec<Step>,
) -> Result<Enrolled, Box<Failure>> {
    let http = HttpOptions::default();
    let request = Request {
        digest,
        challenge: &ChallengeSource::Given("c".into()),
        http: &http,
    };
    block_on(run(t, p, &request, Plan::SIGN_ONLY, &mut |s| steps.push(s)))
}

#[test]
fn a_locked_pin_is_never_asked_for_or_tried() {
    let mut t = FakeToken::new();
    t.locked = true;
    let mut p = CountingPrompt(0);
    let e = sign_only(&mut t, &mut p, DigestAlg::Sha256, &mut vec![]).unwrap_err();
    assert!(matches!(e.error, EnrollError::Token(TokenError::PinLocked)));
    assert_eq!(e.pair.map(|p| p.token_label).as_deref(), Some("fake"));
    assert_eq!(p.0, 0);
    assert!(t.logins.borrow().is_empty());
}

#[test]
fn a_pin_that_must_be_changed_first_is_never_asked_for_or_tried() {
    let mut t = FakeToken::new();
    t.change_pin = true;
    let mut p = CountingPrompt(0);
    let e = sign_only(&mut t, &mut p, DigestAlg::Sha256, &mut vec![]).unwrap_err();
    assert!(matches!(
        e.error,
        EnrollError::Token(TokenError::PinToBeChanged)
    ));
    assert!(e.error.to_string().contains("change-pin"), "{}", e.error);
    assert_eq!(p.0, 0);
    assert!(t.logins.borrow().is_empty());
}

#[test]
fn a_pin_pad_token_is_not_asked_for_a_pin() {
    let mut t = FakeToken::new();
    t.pin_pad = true;
    let mut p = CountingPrompt(0);
    let mut steps = vec![];
    let done = sign_only(&mut t, &mut p, DigestAlg::Sha256, &mut steps).unwrap();
    assert_eq!(p.0, 0);
    assert_eq!(*t.logins.borrow(), vec![true]);
    assert!(steps.iter().any(|s| matches!(s, Step::PinPad)));
    assert_eq!(done.challenge, "c");
    assert!(done.report.is_none(), "sign-only sends nothing");
}

#[test]
fn a_faulty_token_never_reaches_the_server() {
    let mut t = FakeToken::new();
    t.wrong_key = Some(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng));
    let e = sign_only(
        &mut t,
        &mut CountingPrompt(0),
        DigestAlg::Sha256,
        &mut vec![],
    )
    .unwrap_err();
    assert!(
        matches!(e.error, EnrollError::Token(TokenError::SelfVerify(_))),
        "{}",
        e.error
    );
}

#[test]
fn a_signer_that_hashes_with_another_digest_is_caught() {
    // p256's software key always hashes with SHA-256, whatever the SignerInfo declares.
    let mut t = FakeToken::new();
    let e = sign_only(
        &mut t,
        &mut CountingPrompt(0),
        DigestAlg::Sha384,
        &mut vec![],
    )
    .unwrap_err();
    assert!(
        matches!(e.error, EnrollError::Token(TokenError::SelfVerify(_))),
        "{}",
        e.error
    );
}

fn registration() -> Registration<'static> {
    Registration {
        admin: "helpdesk",
        status: TokenStatus::Valid,
        timestamp_unit: TimestampUnit::Millis,
        url_for_display: "u".into(),
        journal: None,
        retries: 1,
        run: None,
    }
}

/// A first attempt that may have reached the server, then a retry that cannot even connect:
/// the outcome stays unknown (the server is asked), not failed.
#[test]
fn an_attempt_that_may_have_gone_through_keeps_the_outcome_unknown() {
    let network = |maybe_sent| ApiError::Network {
        url: "u".into(),
        reason: "r".into(),
        maybe_sent,
    };
    // Each run: a registrar whose two attempts meet `errors`, and what came of it.
    let run = |errors: Vec<ApiError>| {
        let r = FakeRegistrar {
            errors: RefCell::new(errors),
            ..FakeRegistrar::answering(0)
        };
        let result = enroll_with(
            &mut FakeToken::new(),
            &mut CountingPrompt(0),
            &r,
            &UserFrom::Fixed("alice".into()),
            MustMatch::None,
            &ChallengeSource::Given("c".into()),
            &mut vec![],
        );
        let sent = r.bodies.borrow().len();
        (result, sent, r.asked_bound.get())
    };
    let (result, sent, asked) = run(vec![network(true), network(false)]);
    let err = result.expect_err("no answer");
    assert!(
        matches!(&err.error, EnrollError::Api(ApiError::Unsettled(e)) if matches!(**e, ApiError::Network { .. })),
        "{}",
        err.error
    );
    assert_eq!((sent, asked), (2, 1));
    // Two attempts that never connected: failed, nothing to ask.
    let (_, sent, asked) = run(vec![network(false), network(false)]);
    assert_eq!((sent, asked), (2, 0));
}

fn enroll_with(
    t: &mut FakeToken,
    p: &mut CountingPrompt,
    registrar: &FakeRegistrar,
    from: &UserFrom,
    must_match: MustMatch,
    challenge: &ChallengeSource,
    steps: &mut Vec<Step>,
) -> Result<Enrolled, Box<Failure>> {
    let reg = registration();
    let http = HttpOptions::default();
    let request = Request {
        digest: DigestAlg::Sha256,
        challenge,
        http: &http,
    };
    let plan = Plan::Register {
        registrar,
        registration: &reg,
        user: UserPolicy {
            from,
            asked: None,
            must_match,
        },
    };
    block_on(run(t, p, &request, plan, &mut |s| steps.push(s)))
}

#[test]
fn registration_body_and_outcomes() {
    let ok = FakeRegistrar::answering(0);
    let alice = UserFrom::Fixed("alice".into());
    let given = ChallengeSource::Given("c".into());
    let mut t = FakeToken::new();
    let done = enroll_with(
        &mut t,
        &mut CountingPrompt(0),
        &ok,
        &alice,
        MustMatch::None,
        &given,
        &mut vec![],
    )
    .unwrap();
    let r = done.report.unwrap();
    assert_eq!(r.outcome, OutcomeKind::Registered);
    let b = ok.bodies.borrow()[0].clone();
    assert_eq!(
        (b.algorithm.as_str(), b.status.as_str(), b.username.as_str()),
        ("1", "2", "alice")
    );
    assert_eq!(
        b.cen_token.expose(),
        "6f1433106d2466c15b4d324c3009375249e72162f223b63bd3e5d157e9813499"
    );
    assert_eq!(b.timestamp, r.timestamp.unwrap().to_string());
    assert!(
        !format!("{b:?}").contains("6f1433"),
        "Debug redacts the cenToken"
    );
    let bound = FakeRegistrar::answering(CODE_USER_BOUND);
    let r = enroll_with(
        &mut t,
        &mut CountingPrompt(0),
        &bound,
        &alice,
        MustMatch::None,
        &given,
        &mut vec![],
    )
    .unwrap()
    .report
    .unwrap();
    assert_eq!(
        (r.outcome, r.code),
        (OutcomeKind::Rejected, Some(CODE_USER_BOUND))
    );
}

/// The one order: a username the policy refuses ends the run before the challenge is fetched
/// (here: a URL nothing listens on, which would fail differently), before the PIN is asked and
/// before anything is sent.
#[test]
fn the_username_policy_comes_before_the_challenge_and_the_pin() {
    let never = FakeRegistrar::answering(0);
    let unreachable = ChallengeSource::Url("https://127.0.0.1:9/challenge".into());
    let mut t = FakeToken::with_subject("Bob");
    let mut p = CountingPrompt(0);
    let mut steps = vec![];
    let e = enroll_with(
        &mut t,
        &mut p,
        &never,
        &UserFrom::Fixed("alice".into()),
        MustMatch::Cn,
        &unreachable,
        &mut steps,
    )
    .unwrap_err();
    assert!(matches!(e.error, EnrollError::Usage(_)), "{}", e.error);
    assert!(e.error.to_string().contains("'Bob'"), "{}", e.error);
    assert_eq!(p.0, 0, "no PIN asked");
    assert!(never.bodies.borrow().is_empty());
    assert!(!steps
        .iter()
        .any(|s| matches!(s, Step::ChallengeReady { .. })));
    // The same token under a policy that allows it: the user comes from the certificate.
    let done = enroll_with(
        &mut t,
        &mut p,
        &never,
        &UserFrom::Cn,
        MustMatch::Cn,
        &ChallengeSource::Local,
        &mut steps,
    )
    .unwrap();
    assert_eq!(done.report.unwrap().user.as_deref(), Some("Bob"));
    assert_eq!(never.bodies.borrow()[0].username, "Bob");
}

#[test]
fn sha1_is_announced_as_weak() {
    let mut t = FakeToken::new();
    let mut steps = vec![];
    // The software key hashes with SHA-256 whatever is asked, so the self-check then fails;
    // the warning comes first.
    let _ = sign_only(&mut t, &mut CountingPrompt(0), DigestAlg::Sha1, &mut steps);
    assert!(steps.iter().any(|s| matches!(s, Step::WeakDigest)));
}

/// A 10001 while holding login credentials: one fresh login and one resend of the same PKCS#7;
/// with static secrets (no login possible), the 10001 is the answer.
#[test]
fn a_refused_session_logs_in_once_more_and_resends() {
    let given = ChallengeSource::Given("c".into());
    let alice = UserFrom::Fixed("alice".into());
    let r = FakeRegistrar {
        first: RefCell::new(vec![crate::api::CODE_PERMISSION]),
        can_log_in: true,
        ..FakeRegistrar::answering(0)
    };
    let done = enroll_with(
        &mut FakeToken::new(),
        &mut CountingPrompt(0),
        &r,
        &alice,
        MustMatch::None,
        &given,
        &mut vec![],
    )
    .unwrap();
    assert_eq!(done.report.unwrap().outcome, OutcomeKind::Registered);
    assert_eq!((r.logins.get(), r.bodies.borrow().len()), (2, 2));
    let b = r.bodies.borrow();
    assert_eq!(b[0].signature, b[1].signature, "the same PKCS#7");
    // Twice refused: reported, no third try.
    let r = FakeRegistrar {
        first: RefCell::new(vec![
            crate::api::CODE_PERMISSION,
            crate::api::CODE_PERMISSION,
        ]),
        can_log_in: true,
        ..FakeRegistrar::answering(0)
    };
    let done = enroll_with(
        &mut FakeToken::new(),
        &mut CountingPrompt(0),
        &r,
        &alice,
        MustMatch::None,
        &given,
        &mut vec![],
    )
    .unwrap();
    let report = done.report.unwrap();
    assert_eq!(report.code, Some(crate::api::CODE_PERMISSION));
    assert!(
        !report.message.contains("probably expired"),
        "a fresh session refused: {}",
        report.message
    );
    assert_eq!(r.bodies.borrow().len(), 2);
    // Static secrets: the 10001 is the answer, and says the session has probably expired.
    let r = FakeRegistrar::answering(crate::api::CODE_PERMISSION);
    let done = enroll_with(
        &mut FakeToken::new(),
        &mut CountingPrompt(0),
        &r,
        &alice,
        MustMatch::None,
        &given,
        &mut vec![],
    )
    .unwrap();
    let report = done.report.unwrap();
    assert_eq!(report.code, Some(crate::api::CODE_PERMISSION));
    assert!(
        report.message.contains("probably expired")
            && report.message.contains("TOKENROLL_AUTH_TOKEN")
            && report.message.contains("--login password"),
        "{}",
        report.message
    );
    assert_eq!((r.logins.get(), r.bodies.borrow().len()), (1, 1));
}

mod relay;
