//! Whole enrollments against the simulator over TLS: every documented code, unknown codes, codes as
//! strings, HTML error pages, refused connections, untrusted TLS, server challenges, and secrets
//! that never leak.

mod common;
use common::*;

#[test]
fn enrolls_and_sends_the_contract_shape() {
    let mut env = TestEnv::new();
    let cert = env.alice();
    let sim = env.simulator(&[]);
    let o = env.enroll(
        &sim,
        "alice",
        &[
            "--json",
            "--algorithm",
            "sha384",
            "--status",
            "valid",
            "--challenge",
            "verbatim challenge",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["outcome"], "registered");
    assert_eq!(j["code"], 0);
    assert_eq!(j["user"], "alice");
    assert_eq!(j["admin"], ADMIN);
    assert_eq!(j["algorithm"], "sha384");
    assert_eq!(j["token"]["label"], "alice");
    assert_eq!(j["certificate"]["subject"], "CN=Alice Example,O=Acme");
    let pem = std::fs::read_to_string(&cert).unwrap();
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    use sha2::Digest;
    assert_eq!(
        j["certificate"]["sha256"],
        hex::encode(sha2::Sha256::digest(&der))
    );
    let ts = j["timestamp"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now - ts).abs() < 60_000, "timestamp in ms: {ts}");

    let rec = sim.records();
    assert_eq!(rec.len(), 1);
    let r = &rec[0];
    assert_eq!(r["answer_code"], 0);
    assert_eq!(r["cen_token_valid"], true);
    assert_eq!(r["content_type"], "application/json");
    for f in [
        "username",
        "signature",
        "algorithm",
        "timestamp",
        "status",
        "cenToken",
    ] {
        assert_eq!(
            r[format!("{f}_type")],
            "string",
            "{f} sent as a JSON string"
        );
    }
    assert_eq!(r["algorithm"], "2");
    assert_eq!(r["status"], "2");
    assert_eq!(r["digest"], "sha384");
    assert_eq!(r["signed_content"], "verbatim challenge");

    // The same token for the same user again: 22027, but with this token's own certificate,
    // which is success.
    let o = env.enroll(&sim, "alice", &["--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(
        (
            j["outcome"].as_str(),
            j["code"].as_i64(),
            j["already_bound"].as_bool()
        ),
        (Some("registered"), Some(22027), Some(true))
    );
    // Another token for the same user: 22027 for another certificate, named.
    env.provision("other", true, "p256", "01", "CN=Other Token", &[]);
    let o = env.enroll(&sim, "alice", &["--json", "--token", "other"]);
    assert_eq!(o.status.code(), Some(4), "{}", stdout(&o));
    let j = json(&o);
    assert_eq!(
        (j["outcome"].as_str(), j["code"].as_i64()),
        (Some("rejected"), Some(22027))
    );
    let m = j["message"].as_str().unwrap();
    assert!(
        m.contains("another certificate") && m.contains("Alice Example") && m.contains("unbind"),
        "{m}"
    );
}

#[test]
fn each_documented_refusal_has_its_code_and_advice() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    for (user, code, advice) in [
        ("nobody", 22002, "check the username"),
        ("ivan", 22004, "activate the user"),
        ("bella", 22027, "already has a registered token"),
    ] {
        let o = env.enroll(&sim, user, &["--json"]);
        assert_eq!(o.status.code(), Some(4), "{user}: {}", stderr(&o));
        let j = json(&o);
        assert_eq!(j["code"], code);
        assert_eq!(j["outcome"], "rejected");
        assert!(j["message"].as_str().unwrap().contains(advice), "{j}");
    }
    // Seconds to a server that wants milliseconds: outside the window, 10002.
    let o = env.enroll(&sim, "bob", &["--json", "--timestamp-unit", "s"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(json(&o)["code"], 10002);
    // A wrong admin secret: the cenToken does not verify.
    let mut c = env.enroll_base(&sim.origin, "bob");
    c.args(["--pin-env", "TOKENROLL_PIN", "--ca-file"])
        .arg(&sim.ca)
        .env("TOKENROLL_SECRET_CODE", "wrong");
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(json(&o)["code"], 23022);
}

#[test]
fn seconds_server_and_untrusted_issuer() {
    let mut env = TestEnv::new();
    env.alice();
    let other = env.provision("other", true, "p256", "01", "CN=Some CA", &[]);
    let sim = env.simulator(&["--timestamp-seconds", "--trust", other.to_str().unwrap()]);
    let o = env.enroll(
        &sim,
        "bob",
        &["--json", "--timestamp-unit", "s", "--token", "alice"],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let j = json(&o);
    assert_eq!(j["code"], 10011, "{j}");
    assert!(
        j["message"].as_str().unwrap().contains("trusted CAs"),
        "{j}"
    );
    // With seconds accepted and the signer trusted, it registers.
    let alice = env.path("alice-01.pem");
    let sim2 = env.simulator(&["--timestamp-seconds", "--trust", alice.to_str().unwrap()]);
    let o = env.enroll(
        &sim2,
        "bob",
        &["--json", "--timestamp-unit", "s", "--token", "alice"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let ts = json(&o)["timestamp"].as_i64().unwrap();
    assert!(ts < 10_000_000_000, "seconds, not ms: {ts}");
}

#[test]
fn unknown_codes_and_codes_as_strings() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&["--force-code", "99999"]);
    let o = env.enroll(&sim, "alice", &["--json"]);
    assert_eq!(o.status.code(), Some(4));
    let j = json(&o);
    assert_eq!(j["code"], 99999);
    assert_eq!(
        j["message"],
        "the server refused with code 99999: Forced answer 99999"
    );
    let sim = env.simulator(&["--force-code", "10002", "--code-as-string"]);
    let o = env.enroll(&sim, "alice", &["--json"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(json(&o)["code"], 10002);
    let sim = env.simulator(&["--force-code", "0", "--code-as-string"]);
    let o = env.enroll(&sim, "bob", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("registered"));
}

#[test]
fn html_500_is_a_protocol_error() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&["--html-500"]);
    let o = env.enroll(&sim, "alice", &["--json"]);
    assert_eq!(o.status.code(), Some(5));
    let j = json(&o);
    assert_eq!(j["outcome"], "failed");
    assert!(j["code"].is_null());
    let m = j["message"].as_str().unwrap();
    assert!(
        m.contains("HTTP 500")
            && m.contains("Internal Server Error")
            && m.contains("not the CENTAGATE API"),
        "{m}"
    );
}

#[test]
fn refused_connection_and_untrusted_tls_are_network_errors() {
    let mut env = TestEnv::new();
    env.alice();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("https://127.0.0.1:{port}");
    let o = env
        .enroll_base(&dead, "alice")
        .args(["--pin-env", "TOKENROLL_PIN"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    assert!(json(&o)["message"]
        .as_str()
        .unwrap()
        .contains("could not reach the server"));

    let sim = env.simulator(&[]);
    let o = env
        .enroll_base(&sim.origin, "alice")
        .args(["--pin-env", "TOKENROLL_PIN"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(
        m.contains("TLS certificate was refused") && m.contains("--ca-file"),
        "{m}"
    );
    assert!(sim.records().is_empty(), "nothing reached the server");
}

#[test]
fn wrong_pin_sends_nothing() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let o = env
        .enroll_base(&sim.origin, "alice")
        .args(["--pin-env", "BAD", "--ca-file"])
        .arg(&sim.ca)
        .env("BAD", "999999")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let j = json(&o);
    assert_eq!(j["outcome"], "failed");
    assert_eq!(j["token"]["label"], "alice");
    assert!(sim.records().is_empty());
}

#[test]
fn server_challenges_are_signed_verbatim() {
    let mut env = TestEnv::new();
    let cert = env.alice();
    let sim = env.simulator(&[]);
    for path in ["/challenge", "/challenge/centagate", "/challenge/text"] {
        let url = format!("{}{path}", sim.origin);
        let o = env
            .cmd()
            .args([
                "sign",
                "--token",
                "alice",
                "--pin-env",
                "TOKENROLL_PIN",
                "--json",
                "--challenge-url",
                &url,
                "--ca-file",
            ])
            .arg(&sim.ca)
            .output()
            .unwrap();
        assert!(o.status.success(), "{path}: {}", stderr(&o));
        let j = json(&o);
        let challenge = j["challenge"].as_str().unwrap();
        assert_eq!(
            challenge.len(),
            64,
            "{path}: the newline of text/plain is removed"
        );
        use base64::Engine;
        let p = env.path("c.p7");
        std::fs::write(
            &p,
            base64::engine::general_purpose::STANDARD
                .decode(j["pkcs7"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(openssl_verify(&p, &cert), challenge.as_bytes());
    }
    let o = env.enroll(
        &sim,
        "alice",
        &[
            "--json",
            "--challenge-url",
            &format!("{}/challenge", sim.origin),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let signed = sim.records()[0]["signed_content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(signed.len(), 64);
    // A challenge service that fails is a network/protocol error, before any PIN is asked.
    let o = env.enroll(
        &sim,
        "bob",
        &[
            "--json",
            "--challenge-url",
            &format!("{}/nothing-here", sim.origin),
        ],
    );
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
}

#[test]
fn plain_http_only_to_loopback_and_config_layers() {
    let env = TestEnv::new();
    env.alice();
    let o = env
        .enroll_base("http://cg.example.com", "a")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(json(&o)["message"].as_str().unwrap().contains("plain http"));

    // Secrets from owner-only files named in the config; a group-readable one is refused.
    use std::os::unix::fs::PermissionsExt;
    let at = env.path("auth_token");
    let sc = env.path("secret_code");
    std::fs::write(&at, AUTH_TOKEN).unwrap();
    std::fs::write(&sc, SECRET_CODE).unwrap();
    std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&sc, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = env.path("home/.config/tokenroll/config.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "server = \"https://127.0.0.1:1\"\nadmin = \"{ADMIN}\"\nuser = \"alice\"\npin_env = \"TOKENROLL_PIN\"\nauth_token_file = \"{}\"\nsecret_code_file = \"{}\"\n",
            at.display(),
            sc.display()
        ),
    )
    .unwrap();
    let o = env.run(&["enroll", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(m.contains("chmod 600") && !m.contains(SECRET_CODE), "{m}");
    std::fs::set_permissions(&sc, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Now the config is complete: it gets as far as the (closed) server: exit 5.
    let o = env.run(&["enroll", "--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    // A flag beats the environment, which beats the file.
    let o = env
        .cmd()
        .args(["enroll", "--json", "--user", "flag-user"])
        .env("TOKENROLL_USER", "env-user")
        .output()
        .unwrap();
    assert_eq!(json(&o)["user"], "flag-user");
    let o = env
        .cmd()
        .args(["enroll", "--json"])
        .env("TOKENROLL_USER", "env-user")
        .output()
        .unwrap();
    assert_eq!(json(&o)["user"], "env-user");
}

#[test]
fn no_secret_appears_anywhere_at_trace_level() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let o = env
        .enroll_base(&sim.origin, "alice")
        .args(["--pin-env", "TOKENROLL_PIN", "--ca-file"])
        .arg(&sim.ca)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("TRACE") || stderr(&o).contains("DEBUG"),
        "trace logging was on"
    );
    let outputs = env.path("outputs");
    std::fs::write(&outputs, [o.stdout.as_slice(), &o.stderr].concat()).unwrap();
    // Every output stream, the simulator's record and every file tokenroll wrote (the journal
    // among them).
    let mut files = files_under(&env.path("home"));
    assert!(
        files.iter().any(|p| p.ends_with("journal.jsonl")),
        "{files:?}"
    );
    files.push(outputs);
    files.push(sim.record.clone());
    assert_no_secret_in(&files, &[]);
}

#[test]
fn the_simulator_accepts_every_key_and_digest() {
    let mut env = TestEnv::new();
    env.provision("ec", true, "p256", "01", "CN=EC256", &[]);
    env.provision("ec384", true, "p384", "01", "CN=EC384", &[]);
    let sim = env.simulator(&[]);
    let cases = [
        ("ec", "sha1", "user1"),
        ("ec", "sha512", "user2"),
        ("ec", "sha384", "user3"),
        ("ec384", "sha1", "user4"),
        ("ec384", "sha512", "user5"),
        ("ec384", "sha256", "user6"),
    ];
    for (token, alg, user) in cases {
        let o = env.enroll(
            &sim,
            user,
            &["--json", "--token", token, "--algorithm", alg],
        );
        assert_eq!(o.status.code(), Some(0), "{token} {alg}: {}", stdout(&o));
    }
    let rec = sim.records();
    assert_eq!(rec.len(), cases.len());
    for (r, (_, alg, _)) in rec.iter().zip(cases) {
        assert_eq!(r["digest"], alg);
    }
}

/// With --user-must-match the username must be the certificate's field (case-insensitively);
/// a mismatch stops before the PIN is asked or anything is sent, with exit 2.
#[test]
fn the_username_must_match_the_certificate_when_asked_to() {
    let mut env = TestEnv::new();
    env.provision(
        "gil",
        true,
        "p256",
        "01",
        "CN=bob",
        &["--email", "Bob@Example.com"],
    );
    let sim = env.simulator(&[]);
    let o = env.enroll(&sim, "alice", &["--json", "--user-must-match", "cn"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(
        m.contains("'alice' is not the certificate's common name 'bob'"),
        "{m}"
    );
    assert!(sim.all_records().is_empty(), "nothing was sent");
    assert!(
        !stderr(&o).contains("logged in"),
        "the token was not even used"
    );

    // The same field, other case: accepted.
    let o = env.enroll(&sim, "BOB", &["--json", "--user-must-match", "cn"]);
    assert_ne!(o.status.code(), Some(2), "{}", stdout(&o));
    // No e-mail in the certificate to match... here there is one; a UPN there is not.
    let o = env.enroll(&sim, "bob", &["--json", "--user-must-match", "upn"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(json(&o)["message"].as_str().unwrap().contains("has no UPN"));
    // From the config file too.
    std::fs::write(env.path("c.toml"), "user_must_match = \"email\"\n").unwrap();
    let o = env.enroll(
        &sim,
        "alice",
        &["--json", "--config", env.path("c.toml").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(json(&o)["message"]
        .as_str()
        .unwrap()
        .contains("e-mail address 'Bob@Example.com'"));
}

/// The simulator takes any registration its admin secrets allow: it listens on loopback only
/// unless `--listen-any` says otherwise.
#[test]
fn the_simulator_listens_on_loopback_only_unless_told() {
    let env = TestEnv::new();
    let users = env.users_file();
    let o = env
        .cmd()
        .args([
            "simulate",
            "--listen",
            "0.0.0.0:0",
            "--admin",
            ADMIN,
            "--users",
        ])
        .arg(&users)
        .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
        .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--listen-any"), "{}", stderr(&o));
}

/// Without HOME and XDG_STATE_HOME there is no state folder: tokenroll refuses, and writes
/// nothing under the current directory. A state folder others may write is refused with the
/// chmod that fixes it, and a journal that is a symbolic link is not followed.
#[test]
fn state_folders_must_be_the_users_own() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let agent = [
        "agent",
        "--headless",
        "--server",
        &sim.origin,
        "--admin",
        ADMIN,
    ];
    for args in [&["journal"][..], &agent[..]] {
        let o = env
            .cmd()
            .args(args)
            .env_remove("HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
            .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
            .current_dir(&cwd)
            .output()
            .unwrap();
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {e}");
        assert!(e.contains("HOME") && e.contains("current directory"), "{e}");
    }
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "nothing written in cwd"
    );

    use std::os::unix::fs::PermissionsExt;
    let state = env.path("shared-state");
    std::fs::create_dir_all(state.join("tokenroll")).unwrap();
    std::fs::set_permissions(
        state.join("tokenroll"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let o = env
        .enroll_base(&sim.origin, "alice")
        .args(["--pin-env", "TOKENROLL_PIN", "--ca-file"])
        .arg(&sim.ca)
        .env("XDG_STATE_HOME", &state)
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(m.contains("chmod go-w"), "{m}");
    assert!(sim.records().is_empty(), "nothing was sent");

    let journal = env.path("journal-link");
    std::os::unix::fs::symlink(env.path("elsewhere.jsonl"), &journal).unwrap();
    let o = env.enroll(
        &sim,
        "alice",
        &["--json", "--journal", journal.to_str().unwrap()],
    );
    assert_ne!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("symbolic link"), "{}", stdout(&o));
    assert!(!env.path("elsewhere.jsonl").exists());
    assert!(sim.records().is_empty(), "nothing was sent");
}
