//! Servers as they are deployed: a certificate made the usual way (`openssl req -x509`, which
//! marks it CA:TRUE) and passed with `--ca-file` is trusted as that server's certificate; one
//! with only a CN works too, with a warning; the host name and the dates are still checked.

mod common;
use common::tls::openssl_cert;
use common::*;
use std::path::Path;

fn serve(env: &mut TestEnv, cert: &Path, key: &Path) -> Sim {
    env.simulator(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ])
}

fn enroll_trusting(env: &TestEnv, sim: &Sim, ca: &Path) -> std::process::Output {
    let mut c = env.enroll_base(&sim.origin, "alice");
    c.args(["--pin-env", "TOKENROLL_PIN", "--ca-file"]).arg(ca);
    c.output().unwrap()
}

#[test]
fn a_ca_true_server_certificate_in_ca_file_is_trusted_as_the_servers() {
    let mut env = TestEnv::new();
    env.alice();
    let (cert, key) = openssl_cert(
        &env,
        "server",
        "localhost",
        Some("DNS:localhost,IP:127.0.0.1"),
    );
    let sim = serve(&mut env, &cert, &key);
    let o = enroll_trusting(&env, &sim, &cert);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(sim.records().len(), 1);
}

#[test]
fn a_server_certificate_with_only_a_cn_works_with_a_warning() {
    let mut env = TestEnv::new();
    env.alice();
    let (cert, key) = openssl_cert(&env, "server", "localhost", None);
    let sim = serve(&mut env, &cert, &key);
    let o = enroll_trusting(&env, &sim, &cert);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stderr(&o).contains("subjectAltName"), "{}", stderr(&o));
}

#[test]
fn the_host_name_is_still_checked_and_each_refusal_names_its_fix() {
    let mut env = TestEnv::new();
    env.alice();
    let (cert, key) = openssl_cert(
        &env,
        "other",
        "centagate.example.com",
        Some("DNS:centagate.example.com"),
    );
    let sim = serve(&mut env, &cert, &key);
    let o = enroll_trusting(&env, &sim, &cert);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(
        m.contains("another host name") && !m.contains("put the CA"),
        "{m}"
    );
    assert!(sim.all_records().is_empty());
    // Not in --ca-file at all: the advice is to put it there.
    let (unrelated, _) = openssl_cert(&env, "unrelated", "localhost", Some("DNS:localhost"));
    let (cert, key) = openssl_cert(&env, "server", "localhost", Some("DNS:localhost"));
    let sim = serve(&mut env, &cert, &key);
    let o = enroll_trusting(&env, &sim, &unrelated);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(m.contains("--ca-file"), "{m}");
}

/// `--server-cert-sha256`: exactly that certificate is trusted (no --ca-file needed), its host
/// name still checked; another certificate is refused, naming the pin.
#[test]
fn a_pinned_fingerprint_decides() {
    let mut env = TestEnv::new();
    env.alice();
    let (cert, key) = openssl_cert(&env, "server", "localhost", Some("DNS:localhost"));
    let sim = serve(&mut env, &cert, &key);
    let fp = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let fp = stdout(&fp).trim().rsplit('=').next().unwrap().to_string();
    let o = env
        .enroll_base(&sim.origin, "alice")
        .args(["--pin-env", "TOKENROLL_PIN", "--server-cert-sha256", &fp])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let wrong = "00".repeat(32);
    let o = env
        .enroll_base(&sim.origin, "alice")
        .args([
            "--pin-env",
            "TOKENROLL_PIN",
            "--server-cert-sha256",
            &wrong,
            "--ca-file",
        ])
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(m.contains("server_cert_sha256 names"), "{m}");
    assert_eq!(sim.records().len(), 1, "the refused one sent nothing");
}

/// `--proxy`: the registration goes through the proxy's CONNECT tunnel, even to loopback;
/// credentials come from the owner-only file, never from the flag, or from the proxy variable;
/// at trace level they appear in no output and no journal; NO_PROXY and `--proxy none` go direct.
#[test]
fn a_registration_goes_through_a_connect_proxy() {
    let mut env = TestEnv::new();
    env.alice();
    let sim = env.simulator(&[]);
    let proxy = common::proxy::ConnectProxy::start();
    let o = env
        .enroll_base(&sim.origin, "alice")
        .args([
            "--pin-env",
            "TOKENROLL_PIN",
            "--proxy",
            &proxy.url,
            "--ca-file",
        ])
        .arg(&sim.ca)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let port = sim.origin.rsplit(':').next().unwrap().to_string();
    let t = proxy.tunnels();
    assert!(
        t.iter().any(|l| l == &format!("CONNECT localhost:{port}")),
        "{t:?}"
    );
    // Credentials in the flag are refused; from the file they reach the proxy.
    let with_creds = proxy.url.replace("http://", "http://user:pw@");
    let o = env
        .enroll_base(&sim.origin, "bob")
        .args(["--pin-env", "TOKENROLL_PIN", "--proxy", &with_creds])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(!stdout(&o).contains("pw@"), "{}", stdout(&o));
    let creds = env.path("proxy-credentials");
    std::fs::write(&creds, format!("user:{PROXY_PASSWORD}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = env.path("proxy.toml");
    std::fs::write(
        &conf,
        format!(
            "proxy_credentials_file = {:?}\n",
            creds.display().to_string()
        ),
    )
    .unwrap();
    let o = env
        .enroll_base(&sim.origin, "bob")
        .args([
            "--pin-env",
            "TOKENROLL_PIN",
            "--proxy",
            &proxy.url,
            "--config",
        ])
        .arg(&conf)
        .arg("--ca-file")
        .arg(&sim.ca)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let basic = |user_pass: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };
    let from_file = basic(&format!("user:{PROXY_PASSWORD}"));
    let t = proxy.tunnels();
    assert!(
        t.iter().any(|l| l.ends_with(&format!(" auth {from_file}"))),
        "{t:?}"
    );
    // From the variable, as curl reads it: the credentials reach the proxy, and neither they
    // nor the variable's URL reach a child, a log line or the journal.
    let with_creds = proxy
        .url
        .replace("http://", &format!("http://carol:{PROXY_PASSWORD}@"));
    let o2 = env
        .enroll_base(&sim.origin, "user1")
        .args(["--pin-env", "TOKENROLL_PIN", "--ca-file"])
        .arg(&sim.ca)
        .env("HTTPS_PROXY", &with_creds)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(o2.status.code(), Some(0), "{}{}", stdout(&o2), stderr(&o2));
    let from_variable = basic(&format!("carol:{PROXY_PASSWORD}"));
    let t = proxy.tunnels();
    assert!(
        t.iter()
            .any(|l| l.ends_with(&format!(" auth {from_variable}"))),
        "{t:?}"
    );
    // NO_PROXY, and `--proxy none`, go direct: no new tunnel.
    let before = proxy.tunnels().len();
    for (user, extra, no_proxy) in [
        ("user2", &[][..], Some("localhost")),
        ("user3", &["--proxy", "none"][..], None),
    ] {
        let mut c = env.enroll_base(&sim.origin, user);
        c.args(["--pin-env", "TOKENROLL_PIN", "--ca-file"])
            .arg(&sim.ca)
            .args(extra)
            .env("HTTPS_PROXY", &with_creds);
        if let Some(n) = no_proxy {
            c.env("NO_PROXY", n);
        }
        let o = c.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{user}: {}{}",
            stdout(&o),
            stderr(&o)
        );
    }
    assert_eq!(proxy.tunnels().len(), before, "{:?}", proxy.tunnels());
    let dir = env.path("out");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, out) in [&o, &o2].iter().enumerate() {
        std::fs::write(dir.join(format!("stdout{i}")), &out.stdout).unwrap();
        std::fs::write(dir.join(format!("stderr{i}")), &out.stderr).unwrap();
    }
    let mut files = files_under(&dir);
    files.extend(files_under(&env.path("home/.local/state")));
    assert_no_secret_in(
        &files,
        &[
            PROXY_PASSWORD,
            from_file.trim_start_matches("Basic "),
            from_variable.trim_start_matches("Basic "),
        ],
    );
}

const PROXY_PASSWORD: &str = "pr0xy-S3cret";
