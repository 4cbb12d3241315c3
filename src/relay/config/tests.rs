use super::*;

fn paths(state: Option<&str>) -> Paths {
    let mut p = Paths::from_env();
    p.service_state = state.map(PathBuf::from);
    p.credentials = None;
    p
}

fn env_with_password() -> EnvSecrets {
    EnvSecrets {
        app_secret: Some(crate::secret::AppSecret::new("SK".into())),
        admin_password: Some(crate::secret::AdminPassword::new("pw".into())),
        ..Default::default()
    }
}

/// A CA certificate in a file, for org_ca.
fn ca_file(dir: &tempfile::TempDir) -> String {
    let pem = crate::relay::soft::SoftKey::ca("Acme Users CA").cert_pem();
    let p = dir.path().join("ca.pem");
    std::fs::write(&p, pem).unwrap();
    p.display().to_string()
}

fn minimal(ca: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\npublic_url = \"https://relay.example\"\norg_ca = \"{ca}\"\n\
         server = \"https://cg.example\"\nadmin = \"relay-admin\"\nlogin = \"password\"\n\
         app_key = \"IK\"\ndatabase = \"sqlite::memory:\"\n"
    )
}

#[test]
fn a_minimal_file_resolves_with_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let c =
        RelayConfig::parse(&minimal(&ca_file(&dir)), &env_with_password(), &paths(None)).unwrap();
    assert_eq!(c.public_urls, ["https://relay.example"]);
    assert_eq!(c.org_ca.len(), 1);
    assert_eq!(c.status, TokenStatus::Pending);
    assert_eq!(c.centagate_concurrency, 8);
    assert_eq!(c.rates.user, Rates::default().user);
    assert!(c.tls.is_none() && c.metrics_listen.is_none());
    assert!(matches!(
        c.login,
        LoginOptions::Password {
            password: Some(_),
            ..
        }
    ));
}

#[test]
fn every_refusal_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_file(&dir);
    let base = minimal(&ca);
    let cases: &[(&str, &str, &str)] = &[
        ("", "sever = \"x\"\n", "unknown key 'sever'"),
        ("", "user = \"alice\"\n", "unknown key 'user'"),
        (
            "",
            "auth_token_file = \"/x\"\n",
            "unknown key 'auth_token_file'",
        ),
        (
            "login = \"password\"",
            "login = \"static\"",
            "login must be password or token",
        ),
        (
            "listen = \"127.0.0.1:0\"",
            "listen = \"everywhere\"",
            "listen",
        ),
        (
            "public_url = \"https://relay.example\"",
            "public_url = []",
            "public_url is required",
        ),
        (
            "public_url = \"https://relay.example\"",
            "public_url = \"relay\"",
            "public_url 'relay'",
        ),
        ("", "tls_cert = \"/c.pem\"\n", "tls_key"),
        ("", "user_from = \"email-local-part\"\n", "allowed_domains"),
        ("", "user_from = \"nickname\"\n", "user_from"),
        ("", "rate_per_user = \"lots\"\n", "rate_per_user"),
        ("", "centagate_concurrency = 0\n", "centagate_concurrency"),
        (
            "",
            "trusted_proxies = [\"10.0.0.0/99\"]\n",
            "trusted_proxies",
        ),
        ("", "status = \"great\"\n", "status"),
        ("", "org_crl = \"/nonexistent.crl\"\n", "org_crl"),
        ("database = \"sqlite::memory:\"", "", "database is required"),
    ];
    for (from, to, expect) in cases {
        let text = if from.is_empty() {
            format!("{base}{to}")
        } else {
            base.replace(from, to)
        };
        let e = match RelayConfig::parse(&text, &env_with_password(), &paths(None)) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e,
        };
        assert!(e.contains(expect), "{to}: {e}");
    }
    let no_password = RelayConfig::parse(
        &base,
        &EnvSecrets {
            app_secret: Some(crate::secret::AppSecret::new("SK".into())),
            ..Default::default()
        },
        &paths(None),
    )
    .err()
    .unwrap();
    assert!(no_password.contains("admin_password_file"), "{no_password}");
}

#[test]
fn the_database_defaults_to_the_service_state_folder() {
    let dir = tempfile::tempdir().unwrap();
    let text = minimal(&ca_file(&dir)).replace("database = \"sqlite::memory:\"\n", "");
    let c = RelayConfig::parse(
        &text,
        &env_with_password(),
        &paths(Some("/var/lib/tokenroll-relay")),
    )
    .unwrap();
    assert_eq!(c.database, "sqlite:/var/lib/tokenroll-relay/relay.db");
}

#[test]
fn secrets_systemd_hands_over_stand_in_for_the_files_left_out() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    for (name, value) in [("app_secret", "SK-cred\n"), ("admin_password", "pw-cred\n")] {
        let f = creds.join(name);
        std::fs::write(&f, value).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut p = paths(None);
    p.credentials = Some(creds);
    let c = RelayConfig::parse(&minimal(&ca_file(&dir)), &EnvSecrets::default(), &p).unwrap();
    match c.login {
        LoginOptions::Password {
            app,
            password: Some(pw),
            ..
        } => {
            assert_eq!(app.secret.expose(), "SK-cred");
            assert_eq!(pw.expose(), "pw-cred");
        }
        other => panic!("{other:?}"),
    }
    // Without the unit's credentials, the relay says which key is missing.
    let e = RelayConfig::parse(
        &minimal(&ca_file(&dir)),
        &EnvSecrets::default(),
        &paths(None),
    )
    .err()
    .unwrap();
    assert!(e.contains("app_secret_file"), "{e}");
}

#[test]
fn trusted_networks_match_addresses() {
    let n: Net = "10.1.0.0/16".parse().unwrap();
    assert!(n.contains("10.1.200.3".parse().unwrap()));
    assert!(!n.contains("10.2.0.1".parse().unwrap()));
    assert!(n.contains("::ffff:10.1.0.9".parse().unwrap()), "v4-mapped");
    let one: Net = "127.0.0.1".parse().unwrap();
    assert!(
        one.contains("127.0.0.1".parse().unwrap()) && !one.contains("127.0.0.2".parse().unwrap())
    );
    let v6: Net = "fd00::/8".parse().unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()) && !v6.contains("10.0.0.1".parse().unwrap()));
    let all: Net = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("192.0.2.1".parse().unwrap()));
}

/// The example names every key a relay file may hold, and only those.
#[test]
fn the_example_names_every_relay_key() {
    let example = include_str!("../../../packaging/relay.example.toml");
    let named: Vec<String> = example
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.to_string()))
        .filter(|k| {
            k.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    let mut known = keys_of(&RelayKeys::default());
    known.extend(CENTAGATE_KEYS.iter().map(|s| s.to_string()));
    known.sort();
    let mut named_sorted = named.clone();
    named_sorted.sort();
    named_sorted.dedup();
    assert_eq!(named_sorted, known);
}
