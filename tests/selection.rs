//! Choosing a token and a signing pair: by label, by URI, several pairs, expired and unusable
//! certificates, and the PIN rules.

mod common;
use common::*;

#[test]
fn tokens_lists_pairs_with_uris() {
    let env = TestEnv::new();
    env.alice();
    env.provision("alice", false, "p256", "02", "CN=Alice EC", &[]);
    let o = env.run(&["tokens", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert!(j["module"].as_str().unwrap().ends_with("libsofthsm2.so"));
    let tokens = j["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    // SoftHSM2 always offers one more, empty slot for the next token.
    let slots = j["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2, "{j}");
    assert_eq!(
        slots.iter().filter(|s| s["token_present"] == true).count(),
        2,
        "SoftHSM2 reports a token in every slot"
    );
    assert_eq!(tokens[0]["label"], "alice");
    let pairs = tokens[0]["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 2);
    let uris: Vec<&str> = pairs.iter().map(|p| p["uri"].as_str().unwrap()).collect();
    assert!(
        uris.iter()
            .any(|u| u.contains("token=alice") && u.contains("id=%01")),
        "{uris:?}"
    );
    assert!(uris.iter().any(|u| u.contains("id=%02")), "{uris:?}");
    let human = env.run(&["tokens"]);
    assert!(
        stdout(&human).contains("token 'alice'"),
        "{}",
        stdout(&human)
    );
}

#[test]
fn several_pairs_need_a_choice_and_a_uri_makes_it() {
    let env = TestEnv::new();
    let c1 = env.alice();
    let c2 = env.provision("alice", false, "p256", "02", "CN=Alice EC", &[]);
    let o = env.run(&[
        "sign",
        "--token",
        "alice",
        "--pin-env",
        "TOKENROLL_PIN",
        "--challenge",
        "x",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["outcome"], "failed");
    let msg = j["message"].as_str().unwrap();
    assert!(
        msg.contains("id=%01") && msg.contains("id=%02") && msg.contains("--key"),
        "{msg}"
    );

    for (id, cert) in [("%02", &c2), ("%01", &c1)] {
        let p = env.path(&format!("pick{id}.p7"));
        let uri = format!("pkcs11:token=alice;id={id}");
        let o = env.sign_to(&["--key", &uri], "pick", &p);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(openssl_verify(&p, cert), b"pick");
    }
    // The object label selects too.
    let o = env.run(&[
        "sign",
        "--key",
        "pkcs11:object=key02",
        "--pin-env",
        "TOKENROLL_PIN",
        "--challenge",
        "x",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&o)["certificate"]["subject"], "CN=Alice EC");
}

#[test]
fn selects_among_tokens_by_label_and_uri() {
    let env = TestEnv::new();
    env.alice();
    let bob = env.provision("bob", true, "p256", "07", "CN=Bob", &[]);
    let o = env.run(&[
        "sign",
        "--pin-env",
        "TOKENROLL_PIN",
        "--challenge",
        "x",
        "--json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "two tokens, no choice: {}",
        stdout(&o)
    );
    let p = env.path("bob.p7");
    let o = env.sign_to(&["--token", "bob"], "b", &p);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(openssl_verify(&p, &bob), b"b");
    let o = env.run(&[
        "sign",
        "--key",
        "pkcs11:token=b%6Fb",
        "--pin-env",
        "TOKENROLL_PIN",
        "--challenge",
        "x",
        "--json",
    ]);
    assert!(o.status.success(), "percent-decoded label: {}", stderr(&o));
    let o = env.run(&[
        "sign",
        "--token",
        "carol",
        "--pin-env",
        "TOKENROLL_PIN",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(json(&o)["message"]
        .as_str()
        .unwrap()
        .contains("no token labelled 'carol'"));
}

#[test]
fn pin_in_a_command_line_uri_is_refused() {
    let env = TestEnv::new();
    env.alice();
    let o = env.run(&[
        "sign",
        "--key",
        "pkcs11:token=alice?pin-value=246810",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(text.contains("--pin-env"), "{text}");
    assert!(!text.contains(PIN), "the PIN was echoed: {text}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_never_used() {
    let env = TestEnv::new();
    env.provision("old", true, "rsa2048", "01", "CN=Old", &["--expired"]);
    let o = env.run(&[
        "sign",
        "--token",
        "old",
        "--pin-env",
        "TOKENROLL_PIN",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        json(&o)["message"].as_str().unwrap().contains("expired"),
        "{}",
        stdout(&o)
    );

    env.provision(
        "future",
        true,
        "p256",
        "01",
        "CN=Future",
        &["--not-yet-valid"],
    );
    let o = env.run(&[
        "sign",
        "--token",
        "future",
        "--pin-env",
        "TOKENROLL_PIN",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        json(&o)["message"]
            .as_str()
            .unwrap()
            .contains("not valid before"),
        "{}",
        stdout(&o)
    );

    // An expired pair beside a valid one: the valid one is chosen without asking.
    let fresh = env.provision("old", false, "p256", "02", "CN=Renewed", &[]);
    let p = env.path("renewed.p7");
    let o = env.sign_to(&["--token", "old"], "r", &p);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(openssl_verify(&p, &fresh), b"r");
}

#[test]
fn certificates_that_may_not_sign_are_not_pairs() {
    let env = TestEnv::new();
    env.provision(
        "enc",
        true,
        "rsa2048",
        "01",
        "CN=Encrypt Only",
        &["--no-sign-usage"],
    );
    let o = env.run(&[
        "sign",
        "--token",
        "enc",
        "--pin-env",
        "TOKENROLL_PIN",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        json(&o)["message"]
            .as_str()
            .unwrap()
            .contains("no signing pair"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn wrong_pin_is_a_token_error_and_is_not_retried() {
    let env = TestEnv::new();
    env.alice();
    let o = env
        .cmd()
        .args(["sign", "--token", "alice", "--pin-env", "BAD_PIN", "--json"])
        .env("BAD_PIN", "000000")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let j = json(&o);
    let msg = j["message"].as_str().unwrap();
    assert!(msg.contains("wrong PIN"), "{msg}");
    // SoftHSM2 sets COUNT_LOW after a failure; tokenroll reads it back and says so.
    assert!(msg.contains("few tries left"), "{msg}");
    let listed = json(&env.run(&["tokens", "--json"]));
    assert_eq!(listed["tokens"][0]["pin_count_low"], true);
    // A PIN from stdin works, and a good login clears the flag.
    let mut c = env.cmd();
    c.args([
        "sign",
        "--token",
        "alice",
        "--pin-stdin",
        "--challenge",
        "s",
        "--json",
    ])
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PIN}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("few PIN tries left"),
        "warned before the login: {}",
        stderr(&o)
    );
    assert_eq!(
        json(&env.run(&["tokens", "--json"]))["tokens"][0]["pin_count_low"],
        false
    );
}

#[test]
fn the_default_module_is_the_p11_kit_proxy() {
    // Debian registers SoftHSM2 with p11-kit; the proxy loads it in-process with our SOFTHSM2_CONF.
    let env = TestEnv::new();
    let cert = env.alice();
    let o = env
        .cmd()
        .env_remove("TOKENROLL_MODULE")
        .args(["tokens", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    assert!(
        j["module"].as_str().unwrap().ends_with("p11-kit-proxy.so"),
        "{j}"
    );
    assert!(
        j["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["label"] == "alice"),
        "{j}"
    );
    let p = env.path("proxy.p7");
    let o = env
        .cmd()
        .env_remove("TOKENROLL_MODULE")
        .args([
            "sign",
            "--token",
            "alice",
            "--pin-env",
            "TOKENROLL_PIN",
            "--challenge",
            "via proxy",
            "--out",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("p11-kit-proxy.so"),
        "says which module: {}",
        stderr(&o)
    );
    assert_eq!(openssl_verify(&p, &cert), b"via proxy");
}

#[test]
fn a_module_that_cannot_load_is_reported() {
    let env = TestEnv::new();
    let o = env.run(&[
        "sign",
        "--module",
        "/nonexistent/module.so",
        "--pin-env",
        "TOKENROLL_PIN",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(json(&o)["message"]
        .as_str()
        .unwrap()
        .contains("could not load the PKCS#11 module"));
    let o = env.run(&["tokens", "--module", "/etc/hostname"]);
    assert_eq!(o.status.code(), Some(3));
}

#[test]
fn the_terminal_prompt_does_not_echo_the_pin() {
    // `script` (util-linux) gives the binary a real terminal and forwards our stdin to it.
    let env = TestEnv::new();
    let cert = env.alice();
    let p = env.path("tty.p7");
    let inner = format!(
        "{} sign --token alice --challenge tty --out {}",
        env!("CARGO_BIN_EXE_tokenroll"),
        p.display()
    );
    let mut script = std::process::Command::new("script");
    script.args(["-q", "-e", "-c", &inner, "/dev/null"]);
    // The same environment the test binary gets, less the PIN variable.
    for (k, v) in env.cmd().get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let mut run = script
        .env_remove("TOKENROLL_PIN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    // Give the prompt a moment to switch echo off before the PIN arrives.
    std::thread::sleep(std::time::Duration::from_millis(700));
    run.stdin
        .take()
        .unwrap()
        .write_all(format!("{PIN}\n").as_bytes())
        .unwrap();
    let o = run.wait_with_output().unwrap();
    let screen = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{screen}");
    assert!(screen.contains("PIN for token 'alice'"), "{screen}");
    assert!(!screen.contains(PIN), "the PIN was echoed: {screen}");
    assert_eq!(openssl_verify(&p, &cert), b"tty");
}

/// A token whose key lost its certificate has no signing pair; one whose certificate lost its key
/// is incomplete. Both say so (exit 3) and send nothing.
#[test]
fn incomplete_tokens_say_what_is_missing() {
    let mut env = TestEnv::new();
    env.provision("hal", true, "p256", "01", "CN=hal", &[]);
    env.provision("ida", true, "p256", "01", "CN=ida", &[]);
    let delete = |token: &str, kind: &str| {
        let o = std::process::Command::new("pkcs11-tool")
            .args(["--module"])
            .arg(softhsm_module())
            .args(["--token-label", token, "--login", "--pin", PIN])
            .args(["--delete-object", "--type", kind, "--id", "01"])
            .env("SOFTHSM2_CONF", &env.conf)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    delete("hal", "cert");
    delete("ida", "privkey");
    let sim = env.simulator(&[]);
    let o = env.enroll(&sim, "alice", &["--json", "--token", "hal"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(
        m.contains("holds no signing pair") && m.contains("load one onto the token"),
        "{m}"
    );
    let o = env.enroll(&sim, "alice", &["--json", "--token", "ida"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(
        m.contains("has no private key") && m.contains("re-import"),
        "{m}"
    );
    assert!(sim.records().is_empty());
}
