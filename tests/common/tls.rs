//! Server certificates made the way administrators make them, with `openssl req -x509`.

use super::*;

/// `openssl req -x509` with its defaults (basicConstraints CA:TRUE), for `localhost`, with or
/// without a subjectAltName; `days` may be negative for an expired certificate.
pub fn openssl_cert(env: &TestEnv, name: &str, cn: &str, san: Option<&str>) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        env.path(&format!("{name}.pem")),
        env.path(&format!("{name}.key")),
    );
    let mut c = std::process::Command::new("openssl");
    c.args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ])
    .args(["-days", "2", "-subj", &format!("/CN={cn}")])
    .arg("-keyout")
    .arg(&key)
    .arg("-out")
    .arg(&cert);
    if let Some(s) = san {
        c.args(["-addext", &format!("subjectAltName={s}")]);
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        stdout(&text).contains("CA:TRUE"),
        "openssl's default marks it a CA"
    );
    (cert, key)
}
