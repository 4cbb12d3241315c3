//! A real smart-card stack: a private pcscd with the vpcd reader and a software OpenPGP card
//! (`tests/vcard/vcard.sh`), reached through OpenSC's opensc-pkcs11.so. The card shows as two
//! tokens with one serial and logs the user out after every signature, as real cards do.

mod common;
use common::*;
use std::time::Duration;

/// The CLI on the card: the one signing pair is found though OpenSC shows the certificate on
/// both of the card's tokens, and the PKCS#7 verifies with openssl against the card's CA.
#[test]
fn enroll_signs_on_the_card_through_opensc() {
    let mut env = TestEnv::new();
    let card = VCard::personalized(&env, "Carol Card", "carol@example.com");
    let sim = env.simulator(&[]);
    let mut c = env.enroll_base(&sim.origin, "carol@example.com");
    card.wire(&mut c);
    let out = c
        .args(["--pin-env", "CARD_PIN", "--ca-file"])
        .arg(&sim.ca)
        .env("CARD_PIN", CARD_PIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let j = json(&out);
    assert_eq!(j["outcome"], "registered");
    assert_eq!(j["token"]["label"], "OpenPGP card (User PIN (sig))");
    let rec = &sim.records()[0];
    assert_eq!(rec["answer_code"], 0);
    assert_eq!(rec["signer_subject"], "CN=Carol Card");

    // The same card signs again: it asked for the PIN anew (it logs out after each signature).
    let p7 = env.path("again.p7");
    let mut c = env.cmd();
    card.wire(&mut c);
    let out = c
        .args([
            "sign",
            "--pin-env",
            "CARD_PIN",
            "--challenge",
            "second",
            "--out",
        ])
        .arg(&p7)
        .env("CARD_PIN", CARD_PIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(openssl_verify(&p7, &card.ca()), b"second");
}

/// The agent on the card: inserted while it runs, it is enrolled (with the user from the
/// certificate's e-mail); removed, it is gone; inserted again, it is known as enrolled. The
/// insertion is noticed through OpenSC's slot events, not by polling.
#[test]
fn the_agent_enrolls_the_card_when_it_is_inserted() {
    enrolled_on_insert(None, "SlotEvents");
}

/// The same through the p11-kit proxy, which passes no slot events: pcscd's reader changes
/// wake the agent instead.
#[test]
fn through_the_p11_kit_proxy_pcsc_changes_wake_the_agent() {
    enrolled_on_insert(Some(p11_kit_proxy()), "PcscChanges");
}

/// `module`: instead of OpenSC directly; `source`: what must have woken the agent.
fn enrolled_on_insert(module: Option<std::path::PathBuf>, source: &str) {
    let mut env = TestEnv::new();
    let card = VCard::personalized(&env, "Carol Card", "carol@example.com");
    card.remove();
    let sim = env.simulator(&[]);
    pins(&env, &[CARD_PIN]);
    // A poll interval far longer than the test: only an event can make it see the card in time.
    let agent = start_agent_with(
        &env,
        &sim,
        &["--user-from", "email", "--poll-ms", "600000"],
        |c| {
            card.wire(c);
            if let Some(m) = &module {
                c.env("TOKENROLL_MODULE", m);
            }
        },
    );
    wait_for(&agent, "the agent to start", || {
        agent.log().contains("agent starting")
    });
    std::thread::sleep(Duration::from_millis(300));
    card.insert();
    wait_for(&agent, "the card's registration", || {
        sim.records()
            .iter()
            .any(|r| r["answer_code"] == 0 && r["username"] == "carol@example.com")
    });
    let rec = &sim.records()[0];
    assert_eq!(rec["signer_subject"], "CN=Carol Card");
    wait_for(&agent, "the log to name the card once", || {
        agent.log().contains("Token OpenPGP card registered")
    });
    assert!(
        agent.log().contains(&format!("source={source}")),
        "{}",
        agent.log()
    );
    let dialog = std::fs::read_to_string(env.path("pinentry.log")).unwrap();
    assert_eq!(dialog.matches("GETPIN").count(), 1, "{dialog}");
    assert!(dialog.contains("Carol Card"), "{dialog}");

    let empty = |a: &Agent| a.log().matches("No token inserted").count();
    let before = empty(&agent);
    card.remove();
    wait_for(&agent, "the removal", || empty(&agent) > before);
    card.insert();
    wait_for(&agent, "the card to be known as enrolled", || {
        agent.log().contains("already enrolled")
    });
    assert_eq!(sim.records().len(), 1, "nothing is sent again");
    let log = agent.log();
    let status = agent.stop();
    assert!(
        status.success(),
        "SIGTERM ends the agent, event threads and all: {status:?}\n{log}"
    );
}

/// Pulling the card out while the PIN dialog is open cancels the enrollment and says so; the
/// PIN typed afterwards is never sent to a card that is not there.
#[test]
fn removing_the_card_mid_flow_cancels_the_enrollment() {
    let mut env = TestEnv::new();
    let card = VCard::personalized(&env, "Carol Card", "carol@example.com");
    let sim = env.simulator(&[]);
    // The scripted pinentry holds the dialog open until this file appears.
    let gate = env.path("gate");
    pins(&env, &[&format!("WAIT {}", gate.display()), CARD_PIN]);
    let agent = start_agent_with(&env, &sim, &["--user-from", "email"], |c| {
        card.wire(c);
    });
    wait_for(&agent, "the PIN dialog", || {
        std::fs::read_to_string(env.path("pinentry.log"))
            .unwrap_or_default()
            .contains("GETPIN")
    });
    let dialog_pid: i32 = std::fs::read_to_string(env.path("pinentry.pids"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    card.remove();
    wait_for(&agent, "the cancellation", || {
        agent
            .log()
            .contains("cancelled because the token was removed")
    });
    // The dialog the person was told was cancelled is gone with its process: nothing typed
    // into it can outlive the request.
    wait_for(&agent, "the withdrawn dialog's process to end", || {
        std::fs::read_to_string(format!("/proc/{dialog_pid}/stat"))
            .map_or(true, |s| s.split(' ').nth(2) == Some("Z"))
    });
    std::fs::write(&gate, "").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(sim.records().is_empty(), "nothing was registered");
    // Inserted again: a new request with a new dialog, which the PIN answers.
    card.insert();
    wait_for(&agent, "the registration after re-insertion", || {
        sim.records().iter().any(|r| r["answer_code"] == 0)
    });
    assert!(agent.stop().success());
}

/// The card pulled out in the middle of the signature: OpenSC's C_Sign fails with
/// CKR_GENERAL_ERROR, and tokenroll, looking at the slot, says the token was removed (exit 3);
/// nothing is sent. Inserted again, the same command works.
#[test]
fn a_card_pulled_out_mid_signature_is_reported_as_removed() {
    let mut env = TestEnv::new();
    let card = VCard::personalized(&env, "Carol Card", "carol@example.com");
    let sim = env.simulator(&[]);
    card.pull_mid_signature();
    let enroll = || {
        let mut c = env.enroll_base(&sim.origin, "carol@example.com");
        card.wire(&mut c);
        c.args(["--pin-env", "CARD_PIN", "--ca-file"])
            .arg(&sim.ca)
            .env("CARD_PIN", CARD_PIN)
            .output()
            .unwrap()
    };
    let o = enroll();
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(
        m.contains("the token was removed") && m.contains("insert it again"),
        "{m}"
    );
    assert!(sim.records().is_empty(), "nothing was sent");
    card.insert();
    let o = enroll();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}
