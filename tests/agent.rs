//! The agent, headless, on real SoftHSM2 tokens against the simulator: tokens present at start and
//! plugged in later are enrolled, the registry remembers them, wrong PINs re-open the dialog, one
//! agent per session, SIGTERM ends it.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn enrolls_present_and_plugged_tokens_and_remembers_them() {
    let mut env = TestEnv::new();
    env.provision("alice", true, "rsa2048", "01", "CN=alice", &[]);
    let sim = env.simulator(&[]);
    pins(&env, &[PIN, PIN]);
    let agent = start_agent(&env, &sim, &["--user-from", "cn"]);
    wait_for(&agent, "alice's registration", || {
        sim.records()
            .iter()
            .any(|r| r["answer_code"] == 0 && r["username"] == "alice")
    });

    // Plugged in while the agent runs: SoftHSM2 needs a reload to see it.
    env.provision("bob", true, "p256", "01", "CN=bob", &[]);
    wait_for(&agent, "bob's registration", || {
        sim.records()
            .iter()
            .any(|r| r["answer_code"] == 0 && r["username"] == "bob")
    });
    wait_for(&agent, "the log to say so", || {
        agent.log().contains("Token bob registered")
    });

    // One agent per session.
    let second = env
        .cmd()
        .args([
            "agent",
            "--headless",
            "--server",
            &sim.origin,
            "--admin",
            ADMIN,
        ])
        .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
        .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
        .env("XDG_STATE_HOME", env.path("state"))
        .env("XDG_RUNTIME_DIR", env.path("run"))
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("already running"),
        "{}",
        stderr(&second)
    );

    assert!(agent.stop().success(), "SIGTERM ends the agent cleanly");
    let registry = std::fs::read_to_string(env.path("state/tokenroll/enrolled.json")).unwrap();
    assert_eq!(registry.matches("\"user\"").count(), 2, "{registry}");

    // Restarted, it knows both tokens are enrolled and sends nothing.
    let before = sim.records().len();
    let agent = start_agent(&env, &sim, &["--user-from", "cn"]);
    wait_for(&agent, "the tokens to be seen", || {
        agent.log().matches("already enrolled").count() >= 2
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sim.records().len(), before);
    agent.stop();
}

#[test]
fn a_wrong_pin_reopens_the_dialog_and_is_never_resent() {
    let mut env = TestEnv::new();
    env.provision("carol", true, "p256", "01", "CN=bob", &[]);
    let sim = env.simulator(&[]);
    // Wrong, the same wrong again (refused locally, not sent), then right.
    pins(&env, &["000000", "000000", PIN]);
    let agent = start_agent(&env, &sim, &["--user", "bob"]);
    wait_for(&agent, "the registration", || {
        sim.records().iter().any(|r| r["answer_code"] == 0)
    });
    let dialog = std::fs::read_to_string(env.path("pinentry.log")).unwrap();
    assert_eq!(dialog.matches("GETPIN").count(), 3, "{dialog}");
    assert!(dialog.contains("SETERROR wrong PIN"), "{dialog}");
    assert!(dialog.contains("already refused by the token"), "{dialog}");
    assert!(
        dialog.contains("SETDESC") && dialog.contains("carol"),
        "{dialog}"
    );
    assert!(
        !agent.log().contains(PIN) && !agent.log().contains("000000"),
        "no PIN in the log"
    );
    agent.stop();
}

#[test]
fn cancelling_the_dialog_sends_nothing() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    pins(&env, &["CANCEL"]);
    let agent = start_agent(&env, &sim, &["--user", "alice"]);
    wait_for(&agent, "the dialog", || {
        std::fs::read_to_string(env.path("pinentry.log"))
            .unwrap_or_default()
            .contains("GETPIN")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(sim.records().is_empty());
    assert!(agent.stop().success());
}
