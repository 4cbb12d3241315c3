//! `tokenroll doctor`: a healthy desk (a SoftHSM2 token, a private pcscd with a reader, the
//! simulator over TLS with a session) has no FAIL and exit 0; a missing module, a stopped pcscd,
//! an expired server certificate and a locked PIN (the virtual OpenPGP card after three wrong
//! PINs) each FAIL with what to do; the server's clock ten minutes off is a WARN that names the
//! correction. `--json` has the documented shape, and no secret is ever printed.

mod common;
use common::*;
use std::process::{Command, Output};

/// `tokenroll doctor` against `sim` with the static admin secrets and this test's folders.
fn doctor_cmd(env: &TestEnv, sim: &Sim) -> Command {
    let mut c = env.cmd();
    c.args([
        "doctor",
        "--server",
        &sim.origin,
        "--admin",
        ADMIN,
        "--ca-file",
    ])
    .arg(&sim.ca)
    .env("TOKENROLL_AUTH_TOKEN", AUTH_TOKEN)
    .env("TOKENROLL_SECRET_CODE", SECRET_CODE)
    .env("XDG_RUNTIME_DIR", env.path("run"))
    .env_remove("PCSCLITE_CSOCK_NAME");
    std::fs::create_dir_all(env.path("run")).unwrap();
    c
}

/// `doctor_cmd` with `--json` and `extra`; `wire` adjusts the command first.
fn doctor(env: &TestEnv, sim: &Sim, extra: &[&str], wire: impl FnOnce(&mut Command)) -> Output {
    let mut c = doctor_cmd(env, sim);
    c.arg("--json").args(extra);
    wire(&mut c);
    c.output().unwrap()
}

/// The checks named `name` (several for modules and tokens).
fn named<'a>(report: &'a serde_json::Value, name: &str) -> Vec<&'a serde_json::Value> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"].as_str().unwrap().starts_with(name))
        .collect()
}

/// The first check named `name`, which must have `status`.
fn check_is<'a>(report: &'a serde_json::Value, name: &str, status: &str) -> &'a serde_json::Value {
    let c = named(report, name)[0];
    assert_eq!(c["status"], status, "{report}");
    c
}

fn status_of(report: &serde_json::Value, name: &str) -> String {
    let found = named(report, name);
    assert_eq!(found.len(), 1, "one {name} check in {report}");
    found[0]["status"].as_str().unwrap().to_string()
}

/// The JSON report; every failed check says what to do.
fn report(o: &Output) -> serde_json::Value {
    let r = json(o);
    for c in r["checks"].as_array().unwrap() {
        if c["status"] == "fail" {
            assert!(
                !c["fix"].as_str().unwrap().is_empty(),
                "a failure says what to do: {c}"
            );
        }
    }
    r
}

fn no_secret(o: &Output) {
    let all = format!("{}{}", stdout(o), stderr(o));
    for s in [AUTH_TOKEN, SECRET_CODE, PIN, SO_PIN] {
        assert!(!all.contains(s), "a secret in the doctor's output: {all}");
    }
}

#[test]
fn a_healthy_desk_has_no_failure_and_the_json_has_its_shape() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let card = VCard::up(&env);
    let o = doctor(&env, &sim, &[], |c| {
        c.env("PCSCLITE_CSOCK_NAME", &card.socket);
    });
    no_secret(&o);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let r = report(&o);
    assert_eq!(r["ok"], true);
    for c in r["checks"].as_array().unwrap() {
        let keys: Vec<&String> = c.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["detail", "fix", "name", "status"], "{c}");
        let s = c["status"].as_str().unwrap();
        assert!(["ok", "warn", "skip"].contains(&s), "{c}");
        if s == "warn" {
            assert!(
                !c["fix"].as_str().unwrap().is_empty(),
                "a warning says what to do: {c}"
            );
        }
    }
    let used = named(&r, "module")
        .into_iter()
        .find(|c| c["detail"].as_str().unwrap().contains("tokenroll uses it"))
        .expect("the module in use");
    assert!(
        used["detail"].as_str().unwrap().contains("SoftHSM"),
        "{used}"
    );
    assert_eq!(status_of(&r, "pcscd"), "ok");
    assert!(
        named(&r, "pcscd")[0]["detail"]
            .as_str()
            .unwrap()
            .contains("reader(s): tokenroll test reader"),
        "{r}"
    );
    let token = named(&r, "token");
    assert_eq!(token.len(), 1, "{r}");
    assert_eq!(token[0]["status"], "ok");
    assert!(
        token[0]["name"].as_str().unwrap().contains("'alice'"),
        "{r}"
    );
    assert!(
        token[0]["detail"]
            .as_str()
            .unwrap()
            .contains("CN=Alice Example"),
        "{r}"
    );
    for name in ["config", "dns", "tcp", "tls", "https", "clock", "session"] {
        assert_eq!(status_of(&r, name), "ok", "{name}: {r}");
    }
    assert_eq!(status_of(&r, "policy"), "skip");
    // The same as text: a line per check, then the counts.
    let text = doctor_cmd(&env, &sim)
        .env("PCSCLITE_CSOCK_NAME", &card.socket)
        .output()
        .unwrap();
    no_secret(&text);
    let out = stdout(&text);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        r["checks"].as_array().unwrap().len() + 1,
        "{out}"
    );
    assert!(lines
        .iter()
        .any(|l| l.starts_with("OK   session: the session of helpdesk is alive")));
    assert!(lines.last().unwrap().contains(" failed"), "{out}");
}

#[test]
fn a_missing_module_fails_with_what_to_do() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    let o = doctor(&env, &sim, &[], |c| {
        c.env("TOKENROLL_MODULE", "/nonexistent/libtoken-pkcs11.so");
    });
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let r = report(&o);
    assert_eq!(r["ok"], false);
    let failed: Vec<_> = named(&r, "module")
        .into_iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1, "{r}");
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/libtoken-pkcs11.so")
            && failed[0]["fix"].as_str().unwrap().contains("--module"),
        "{r}"
    );
    assert_eq!(status_of(&r, "tokens"), "skip");
    // The rest is still checked.
    assert_eq!(status_of(&r, "session"), "ok", "{r}");
}

#[test]
fn pcscd_stopped_fails_for_a_smart_card_module_and_warns_for_a_software_token() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let nowhere = env.path("no-pcscd.comm");
    let o = doctor(&env, &sim, &[], |c| {
        c.env("PCSCLITE_CSOCK_NAME", &nowhere);
    });
    let r = report(&o);
    assert_eq!(status_of(&r, "pcscd"), "warn", "{r}");
    assert_eq!(o.status.code(), Some(0), "{r}");
    let o = doctor(&env, &sim, &[], |c| {
        c.env("PCSCLITE_CSOCK_NAME", &nowhere)
            .env("TOKENROLL_MODULE", opensc_module());
    });
    let r = report(&o);
    let pcscd = check_is(&r, "pcscd", "fail");
    assert!(
        pcscd["detail"]
            .as_str()
            .unwrap()
            .contains(nowhere.to_str().unwrap())
            && pcscd["fix"].as_str().unwrap().contains("pcscd"),
        "{pcscd}"
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_server_clock_ten_minutes_off_is_a_warning_that_names_the_correction() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&["--clock-offset-secs", "600"]);
    let o = doctor(&env, &sim, &[], |_| {});
    let r = report(&o);
    let clock = check_is(&r, "clock", "warn");
    let detail = clock["detail"].as_str().unwrap();
    assert!(
        detail.contains("ahead of this computer's") && detail.contains("corrects"),
        "{detail}"
    );
    let secs: f64 = detail
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .expect("the size of the correction");
    assert!((598.0..=602.0).contains(&secs), "{detail}");
    assert!(clock["fix"].as_str().unwrap().contains("NTP"), "{clock}");
    assert_eq!(r["ok"], true, "{r}");
}

#[test]
fn an_expired_server_certificate_fails_and_says_who_must_renew_it() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&["--bad-tls", "expired"]);
    let o = doctor(&env, &sim, &[], |_| {});
    assert_eq!(o.status.code(), Some(1));
    let r = report(&o);
    assert_eq!(status_of(&r, "dns"), "ok");
    assert_eq!(status_of(&r, "tcp"), "ok");
    let tls = check_is(&r, "tls", "fail");
    let detail = tls["detail"].as_str().unwrap();
    assert!(
        detail.contains("expired on") && detail.contains("SHA-256"),
        "{detail}"
    );
    assert!(tls["fix"].as_str().unwrap().contains("renew"), "{tls}");
    assert_eq!(status_of(&r, "https"), "fail");
}

#[test]
fn a_token_whose_pin_is_locked_fails_with_how_to_unblock_it() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    let card = VCard::personalized(&env, "Carol Card", "carol@example.com");
    // Three wrong PINs lock the OpenPGP card's PW1.
    for _ in 0..3 {
        let o = Command::new("pkcs11-tool")
            .arg("--module")
            .arg(opensc_module())
            .args(["--login", "--pin", "999999", "--list-objects"])
            .env("PCSCLITE_CSOCK_NAME", &card.socket)
            .output()
            .unwrap();
        assert!(!o.status.success(), "a wrong PIN was taken");
    }
    let o = doctor(&env, &sim, &[], |c| card.wire(c));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let r = report(&o);
    let locked: Vec<_> = named(&r, "token")
        .into_iter()
        .filter(|c| c["status"] == "fail")
        .collect();
    assert!(!locked.is_empty(), "{r}");
    for c in locked {
        assert!(
            c["detail"].as_str().unwrap().contains("PIN is locked"),
            "{c}"
        );
        assert!(c["fix"].as_str().unwrap().contains("unblock"), "{c}");
    }
    assert_eq!(status_of(&r, "pcscd"), "ok", "{r}");
}

#[test]
fn a_pin_that_names_another_certificate_fails_with_the_one_presented() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let real = openssl_fingerprint(&sim.ca, "-sha256").to_lowercase();
    let o = doctor(
        &env,
        &sim,
        &["--server-cert-sha256", &"ab".repeat(32)],
        |_| {},
    );
    let r = report(&o);
    let tls = check_is(&r, "tls", "fail");
    assert!(tls["detail"].as_str().unwrap().contains("pins"), "{tls}");
    assert!(tls["fix"].as_str().unwrap().contains(&real), "{tls}");
    // The right pin is trusted, and said to be the pinned certificate.
    let o = doctor(&env, &sim, &["--server-cert-sha256", &real], |_| {});
    let r = report(&o);
    let tls = check_is(&r, "tls", "ok");
    assert!(tls["detail"].as_str().unwrap().contains("pinned"), "{tls}");
}

#[test]
fn a_bad_configuration_fails_naming_the_file_and_the_rest_is_still_checked() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let config = env.path("home/.config/tokenroll/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "sever = \"https://cg.example.com\"\n").unwrap();
    let o = doctor(&env, &sim, &[], |_| {});
    assert_eq!(o.status.code(), Some(1));
    let r = report(&o);
    let c = check_is(&r, "config", "fail");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("sever") && detail.contains(config.to_str().unwrap()),
        "{c}"
    );
    // The later checks run on the flags and variables: the server is still reached.
    assert!(!named(&r, "module").is_empty(), "{r}");
    assert_eq!(status_of(&r, "session"), "ok", "{r}");
    // A setting the administrator's policy fixes otherwise.
    std::fs::remove_file(&config).unwrap();
    let policy = env.path("policy.toml");
    std::fs::write(&policy, "server = \"https://cg.example.com\"\n").unwrap();
    let o = doctor(&env, &sim, &[], |c| {
        c.env("TOKENROLL_POLICY_FILE", &policy);
    });
    assert_eq!(o.status.code(), Some(1));
    let r = report(&o);
    let c = check_is(&r, "config", "fail");
    let detail = c["detail"].as_str().unwrap();
    assert!(
        detail.contains("server") && detail.contains(policy.to_str().unwrap()),
        "{c}"
    );
    let p = named(&r, "policy")[0];
    assert!(p["detail"].as_str().unwrap().contains("server"), "{p}");
    // Credentials configured but unusable: a failure with the fix, not a skip.
    let token_file = env.path("auth_token");
    std::fs::write(&token_file, AUTH_TOKEN).unwrap();
    std::fs::write(
        &config,
        format!("auth_token_file = \"{}\"\n", token_file.display()),
    )
    .unwrap();
    let o = doctor(&env, &sim, &[], |c| {
        c.env_remove("TOKENROLL_AUTH_TOKEN");
    });
    no_secret(&o);
    let r = report(&o);
    let s = check_is(&r, "session", "fail");
    assert!(s["detail"].as_str().unwrap().contains("chmod 600"), "{s}");
}

#[test]
fn the_agent_running_is_seen_and_an_autostart_turned_off_by_the_user_is_said() {
    let mut env = TestEnv::new();
    let sim = env.simulator(&[]);
    let agent = start_agent(&env, &sim, &[]);
    let mut last = serde_json::Value::Null;
    wait_for(&agent, "the doctor to see the agent", || {
        last = report(&doctor(&env, &sim, &[], |_| {}));
        named(&last, "agent")[0]["status"] == "ok"
    });
    let autostart = env.path("home/.config/autostart/tokenroll-agent.desktop");
    std::fs::create_dir_all(autostart.parent().unwrap()).unwrap();
    std::fs::write(
        &autostart,
        "[Desktop Entry]\nType=Application\nHidden=true\n",
    )
    .unwrap();
    let r = report(&doctor(&env, &sim, &[], |_| {}));
    let a = check_is(&r, "autostart", "warn");
    assert!(
        a["detail"].as_str().unwrap().contains("turned off")
            && a["fix"]
                .as_str()
                .unwrap()
                .contains(autostart.to_str().unwrap()),
        "{a}"
    );
    agent.stop();
    let r = report(&doctor(&env, &sim, &[], |_| {}));
    assert_eq!(named(&r, "agent")[0]["status"], "warn", "{r}");
}
