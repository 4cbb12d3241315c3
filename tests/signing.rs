//! Signing on real SoftHSM2 tokens: every digest with RSA and EC keys, each output decoded,
//! verified by tokenroll and cross-verified by `openssl cms -verify`.

mod common;
use common::*;

fn sign_and_check(env: &TestEnv, label: &str, cert: &std::path::Path, alg: &str) {
    let out_file = env.path(&format!("{label}-{alg}.p7"));
    let challenge = format!("challenge for {label} with {alg}");
    let o = env.run(&[
        "sign",
        "--token",
        label,
        "--pin-env",
        "TOKENROLL_PIN",
        "--algorithm",
        alg,
        "--challenge",
        &challenge,
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "sign {label} {alg}: {}", stderr(&o));
    if alg == "sha1" {
        assert!(stderr(&o).contains("SHA-1 is weak"), "{}", stderr(&o));
    }
    // openssl: signature, certificate chain to itself, and the attached content.
    assert_eq!(openssl_verify(&out_file, cert), challenge.as_bytes());
    let printed = openssl_print(&out_file);
    assert!(printed.contains("eContentType: pkcs7-data"), "{printed}");
    assert!(
        printed.contains("OBJECT:pkcs7-data"),
        "content-type attribute missing:\n{printed}"
    );
    assert!(printed.contains("object: signingTime"), "{printed}");
    assert!(printed.contains("object: messageDigest"), "{printed}");
    let digest_line = format!("algorithm: {} ", openssl_digest_name(alg));
    assert!(
        printed.contains(&digest_line),
        "digest {alg} not in:\n{printed}"
    );
    // tokenroll's own verifier agrees.
    let v = env.run(&[
        "verify",
        out_file.to_str().unwrap(),
        "--json",
        "--trust",
        cert.to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}", stdout(&v));
    let j = json(&v);
    assert_eq!(j["digest"], alg);
    assert_eq!(j["content"], challenge);
    assert_eq!(j["chain_verified"], true);
}

fn every_digest(key_type: &str) {
    let env = TestEnv::new();
    let cert = env.provision(
        key_type,
        true,
        key_type,
        "01",
        &format!("CN={key_type} user"),
        &[],
    );
    for alg in ["sha1", "sha256", "sha384", "sha512"] {
        sign_and_check(&env, key_type, &cert, alg);
    }
}

#[test]
fn rsa2048_signs_with_every_digest() {
    every_digest("rsa2048");
}

#[test]
fn p256_signs_with_every_digest() {
    every_digest("p256");
}

#[test]
fn p384_signs_with_every_digest() {
    every_digest("p384");
}

#[test]
fn rsa4096_and_always_authenticate_keys_sign() {
    let env = TestEnv::new();
    let cert = env.provision("big", true, "rsa4096", "01", "CN=Big RSA", &[]);
    sign_and_check(&env, "big", &cert, "sha512");
    let cert = env.provision(
        "strict",
        true,
        "p256",
        "01",
        "CN=Always Auth",
        &["--always-authenticate"],
    );
    sign_and_check(&env, "strict", &cert, "sha256");
}

#[test]
fn base64_output_and_stdout_der() {
    let env = TestEnv::new();
    let cert = env.alice();
    let o = env.run(&[
        "sign",
        "--token",
        "alice",
        "--pin-env",
        "TOKENROLL_PIN",
        "--challenge",
        "abc",
        "--base64",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(stdout(&o).trim())
        .unwrap();
    let p = env.path("b64.p7");
    std::fs::write(&p, der).unwrap();
    assert_eq!(openssl_verify(&p, &cert), b"abc");
    // Default challenge: 64 hex characters from the CSPRNG.
    let o = env.run(&[
        "sign",
        "--token",
        "alice",
        "--pin-env",
        "TOKENROLL_PIN",
        "--json",
    ]);
    let j = json(&o);
    let challenge = j["challenge"].as_str().unwrap();
    assert_eq!(challenge.len(), 64);
    assert!(challenge.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn tampered_pkcs7_does_not_verify() {
    let env = TestEnv::new();
    env.alice();
    let p = env.path("t.p7");
    let o = env.sign_to(&["--token", "alice"], "hello-world", &p);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut der = std::fs::read(&p).unwrap();
    let at = der.windows(11).position(|w| w == b"hello-world").unwrap();
    der[at] ^= 1;
    std::fs::write(&p, der).unwrap();
    let v = env.run(&["verify", p.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    assert!(stderr(&v).contains("message-digest"), "{}", stderr(&v));
}

#[test]
fn out_and_base64_come_from_the_config_too() {
    let env = TestEnv::new();
    let cert = env.alice();
    let p = env.path("from-env.b64");
    let cfg = env.path("cfg.toml");
    std::fs::write(
        &cfg,
        "token = \"alice\"\npin_env = \"TOKENROLL_PIN\"\nbase64 = true\nalgorithm = \"sha512\"\n",
    )
    .unwrap();
    let o = env
        .cmd()
        .args(["sign", "--challenge", "cfg", "--config"])
        .arg(&cfg)
        .env("TOKENROLL_OUT", &p)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(std::fs::read_to_string(&p).unwrap().trim())
        .unwrap();
    let d = env.path("from-env.p7");
    std::fs::write(&d, der).unwrap();
    assert_eq!(openssl_verify(&d, &cert), b"cfg");
    assert!(openssl_print(&d).contains("algorithm: sha512 "));
}

#[test]
fn bad_arguments_still_give_one_json_object() {
    let env = TestEnv::new();
    let o = env.run(&["enroll", "--json", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let j = json(&o);
    assert_eq!(j["outcome"], "failed");
    assert!(
        j["message"].as_str().unwrap().contains("--no-such-flag"),
        "{j}"
    );
    let o = env.run(&[
        "enroll",
        "--json",
        "--algorithm",
        "md5",
        "--server",
        "https://x",
        "--admin",
        "a",
        "--user",
        "u",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(json(&o)["message"]
        .as_str()
        .unwrap()
        .contains("unknown algorithm"));
}

/// A CKA_ALWAYS_AUTHENTICATE key through the p11-kit proxy: the proxy gives each caller of
/// C_GetFunctionList its own instance, so the one raw C_Sign cannot reach the session; tokenroll
/// says so and how to go round it (exit 3) instead of a bare CKR code.
#[test]
fn an_always_authenticate_key_through_the_proxy_says_to_name_the_module() {
    let env = TestEnv::new();
    env.provision(
        "aa",
        true,
        "p256",
        "01",
        "CN=aa",
        &["--always-authenticate"],
    );
    let proxy = p11_kit_proxy();
    let o = env.run(&[
        "sign",
        "--pin-env",
        "TOKENROLL_PIN",
        "--challenge",
        "x",
        "--json",
        "--module",
        proxy.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    let m = json(&o)["message"].as_str().unwrap().to_string();
    assert!(
        m.contains("CKA_ALWAYS_AUTHENTICATE") && m.contains("--module"),
        "{m}"
    );
}
