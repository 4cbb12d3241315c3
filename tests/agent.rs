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
    // The pinentry, a child of the agent, inherited the environment without the admin's secrets
    // (taken out at start), and with what it needs (its own variables, here the test's).
    let child_env = std::fs::read_to_string(env.path("pinentry.env")).unwrap();
    assert!(child_env.contains("TEST_PINS="), "{child_env}");
    for secret in [AUTH_TOKEN, SECRET_CODE] {
        assert!(!child_env.contains(secret), "a secret reached the pinentry");
    }
    assert!(!child_env.contains("TOKENROLL_AUTH_TOKEN"), "{child_env}");

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
    // The token now reports few tries left; the next dialogs say so before anything is typed.
    assert!(dialog.contains("Few tries left"), "{dialog}");
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

#[test]
fn asks_the_person_for_the_username_once_per_insertion() {
    let mut env = TestEnv::new();
    env.provision("dora", true, "p256", "01", "CN=Dora", &[]);
    let sim = env.simulator(&[]);
    // The username, a wrong PIN, then the right one: the username is not asked again.
    pins(&env, &["bob", "000000", PIN]);
    let agent = start_agent(&env, &sim, &["--user-from", "ask"]);
    wait_for(&agent, "the registration", || {
        sim.records()
            .iter()
            .any(|r| r["answer_code"] == 0 && r["username"] == "bob")
    });
    let dialog = std::fs::read_to_string(env.path("pinentry.log")).unwrap();
    assert_eq!(dialog.matches("SETPROMPT Username:").count(), 1, "{dialog}");
    assert_eq!(dialog.matches("SETPROMPT PIN:").count(), 2, "{dialog}");
    assert!(dialog.contains("for bob with CENTAGATE"), "{dialog}");
    assert!(!agent.log().contains("000000"), "no PIN in the log");
    agent.stop();
}

/// SoftHSM2 never reports a token deleted by another process; the agent reloads the module when
/// the token directory changes, so the token disappears from its view.
#[test]
fn a_softhsm_token_deleted_while_the_agent_runs_is_gone() {
    let mut env = TestEnv::new();
    env.provision("erin", true, "p256", "01", "CN=Erin", &[]);
    let sim = env.simulator(&[]);
    let agent = start_agent(
        &env,
        &sim,
        &["--user", "bob", "--enroll-on-insert", "never"],
    );
    wait_for(&agent, "the token", || {
        agent.log().contains("status=erin: ")
    });
    let empty = |a: &Agent| a.log().matches("status=No token inserted").count();
    let before = empty(&agent);
    let out = std::process::Command::new("softhsm2-util")
        .args(["--delete-token", "--token", "erin"])
        .env("SOFTHSM2_CONF", &env.conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(&agent, "the token to be gone", || empty(&agent) > before);
    assert!(sim.records().is_empty());
    assert!(agent.stop().success());
}

/// The agent at trace level, through a wrong PIN and a registration: no PIN, authToken,
/// secretCode or cenToken in its output, its log, its journal or its registry; and it runs with
/// core dumps off.
#[test]
fn no_secret_in_anything_the_agent_writes() {
    let mut env = TestEnv::new();
    env.provision("fay", true, "p256", "01", "CN=Fay", &[]);
    let sim = env.simulator(&[]);
    pins(&env, &["999999", PIN]);
    let out = std::fs::File::create(env.path("agent.out")).unwrap();
    let agent = start_agent_with(&env, &sim, &["--user", "bob"], |c| {
        c.env("RUST_LOG", "trace")
            .stdout(out.try_clone().unwrap())
            .stderr(out);
    });
    wait_for(&agent, "the registration", || {
        sim.records().iter().any(|r| r["answer_code"] == 0)
    });
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.child.id())).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert!(core.split_whitespace().nth(4) == Some("0"), "{core}");
    assert!(agent.stop().success());
    let mut files = files_under(&env.path("state"));
    files.push(env.path("agent.out"));
    files.push(sim.record.clone());
    assert!(
        files.iter().any(|p| p.ends_with("journal.jsonl")),
        "{files:?}"
    );
    let trace = std::fs::read_to_string(env.path("agent.out")).unwrap();
    assert!(
        trace.contains("TRACE") || trace.contains("DEBUG"),
        "trace logging was on"
    );
    assert_no_secret_in(&files, &["999999"]);
}

/// Through the p11-kit proxy (Debian's default module) a SoftHSM2 token created by another
/// process is seen too: the proxy is reloaded when SoftHSM2's token directory changes.
#[test]
fn through_the_p11_kit_proxy_a_softhsm_token_created_later_is_enrolled() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    pins(&env, &[PIN]);
    let agent = start_agent_with(&env, &sim, &["--user", "bob"], |c| {
        c.env("TOKENROLL_MODULE", p11_kit_proxy());
    });
    wait_for(&agent, "the agent to start", || {
        agent.log().contains("agent starting")
    });
    std::thread::sleep(Duration::from_millis(500));
    env.provision("kim", true, "p256", "01", "CN=kim", &[]);
    wait_for(&agent, "kim's registration", || {
        sim.records()
            .iter()
            .any(|r| r["answer_code"] == 0 && r["signer_subject"] == "CN=kim")
    });
    assert!(agent.stop().success());
}

/// A token whose certificate carries a subject of over a kilobyte with an escape sequence in it:
/// the PIN dialog still opens (each line it is sent stays under the protocol's 1000 bytes, on
/// which the pinentry crate asserts) and the token is enrolled; the log holds no raw escape.
#[test]
fn hostile_token_text_reaches_the_dialog_and_the_log_safely() {
    let mut env = TestEnv::new();
    let long = format!("CN=bob,OU=\x1b[31mred,O={}", "x".repeat(1200));
    env.provision("long", true, "p256", "01", &long, &[]);
    let sim = env.simulator(&[]);
    pins(&env, &[PIN]);
    let agent = start_agent(&env, &sim, &["--user-from", "cn"]);
    wait_for(&agent, "the registration", || {
        sim.records()
            .iter()
            .any(|r| r["answer_code"] == 0 && r["username"] == "bob")
    });
    let dialog = std::fs::read_to_string(env.path("pinentry.log")).unwrap();
    for line in dialog.lines() {
        assert!(line.len() < 1000, "a pinentry line of {} bytes", line.len());
    }
    assert!(dialog.contains("SETDESC"), "{dialog}");
    assert!(agent.stop().success());
    let log = std::fs::read_to_string(env.path("state/tokenroll/agent.log")).unwrap();
    assert!(!log.contains('\x1b'), "no escape sequence in the log");
}

/// A PIN dialog that cannot be shown ends that token's flow as failed, with the reason — never
/// as a cancel the person did not make, and never stuck.
#[test]
fn a_dialog_that_fails_ends_the_flow_as_failed_with_the_reason() {
    let mut env = TestEnv::new();
    env.provision("dave", true, "p256", "01", "CN=dave", &[]);
    let sim = env.simulator(&[]);
    let agent = start_agent_with(&env, &sim, &["--user-from", "cn"], |c| {
        c.env("PINENTRY_FAIL", "1");
    });
    wait_for(&agent, "the failure to be reported", || {
        let log = agent.log();
        log.contains("not registered") && log.contains("the PIN dialog failed")
    });
    assert!(sim.records().is_empty());
    agent.stop();
}

/// Quitting while a PIN dialog is open: the dialog's process ends with the agent (every worker
/// is joined before the module is finalised), and the agent exits cleanly.
#[test]
fn quitting_with_a_dialog_open_ends_the_dialog() {
    let mut env = TestEnv::new();
    env.provision("fay", true, "p256", "01", "CN=bob", &[]);
    let sim = env.simulator(&[]);
    let gate = env.path("gate");
    pins(&env, &[&format!("WAIT {}", gate.display()), PIN]);
    let agent = start_agent(&env, &sim, &["--user-from", "cn"]);
    wait_for(&agent, "the PIN dialog", || {
        std::fs::read_to_string(env.path("pinentry.log"))
            .unwrap_or_default()
            .contains("GETPIN")
    });
    let pid: i32 = std::fs::read_to_string(env.path("pinentry.pids"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(agent.stop().success(), "SIGTERM ends the agent cleanly");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the dialog's process ended with the agent"
    );
    assert!(sim.records().is_empty());
}
