//! Bench (a): CMS signing on a warm, logged-in SoftHSM2 session against the raw `C_Sign` alone,
//! with our self-verification as a separate figure. Prints medians and ratios measured in one run.
//! Run: `cargo bench --bench cms_overhead`.

use std::time::{Duration, Instant};
use tokenroll::digest::DigestAlg;
use tokenroll::secret::Pin;
use tokenroll::token::{
    provision, signer::signing_input, Curve, KeyKind, Login, Module, Selector, TokenSignature,
    TokenSigner,
};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(n: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..n / 10 + 1 {
        f();
    }
    median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let conf = tokenroll::demo::softhsm_conf(dir.path()).unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let module_path = tokenroll::token::softhsm_module().expect("SoftHSM2 installed");
    let pin = Pin::new("1234".into());
    let module = Module::load(Some(&module_path)).unwrap();
    let token =
        provision::init_token(&module, "bench", &Pin::new("12345678".into()), &pin).unwrap();
    for (id, kind) in [
        (1u8, KeyKind::Rsa { bits: 2048 }),
        (2, KeyKind::Ec(Curve::P256)),
    ] {
        provision::add_key(
            &module,
            &token,
            &pin,
            &provision::KeySpec::new(kind, id, "CN=Bench"),
        )
        .unwrap();
    }
    println!(
        "{:<10} {:>12} {:>12} {:>10} {:>14} {:>8}",
        "key", "C_Sign", "CMS sign", "overhead", "self-verify", "target"
    );
    for (id, target) in [(1u8, 5.0), (2, 25.0)] {
        let uri =
            tokenroll::token::uri::Pkcs11Uri::parse(&format!("pkcs11:token=bench;id=%{id:02X}"))
                .unwrap();
        let pair = module
            .select(&Selector {
                uri: Some(uri),
                ..Default::default()
            })
            .unwrap();
        let mut session = module.open(&pair).unwrap();
        session.login(Login::Pin(&pin)).unwrap();
        let key = session.find_key(&pair).unwrap();
        let content = tokenroll::challenge::local();
        let n = if matches!(pair.kind, KeyKind::Rsa { .. }) {
            300
        } else {
            1000
        };
        let input = signing_input(pair.kind, DigestAlg::Sha256, content.as_bytes());
        let raw = time(n, || {
            session.sign_raw(key, pair.kind, &input).unwrap();
        });
        let spki = pair.cert.tbs_certificate.subject_public_key_info.clone();
        let signer = TokenSigner::new(&session, key, pair.kind, DigestAlg::Sha256, spki);
        let mut der = Vec::new();
        let cms = time(n, || {
            der = tokenroll::cms::build_attached::<_, TokenSignature>(
                &signer,
                &pair.cert,
                content.as_bytes(),
                DigestAlg::Sha256,
            )
            .unwrap();
        });
        let verify = time(n, || {
            tokenroll::cms::verify(&der).unwrap();
        });
        let overhead = (cms.as_secs_f64() / raw.as_secs_f64() - 1.0) * 100.0;
        println!(
            "{:<10} {:>10.3}ms {:>10.3}ms {:>9.1}% {:>12.3}ms {:>7}%",
            pair.kind.describe(),
            raw.as_secs_f64() * 1e3,
            cms.as_secs_f64() * 1e3,
            overhead,
            verify.as_secs_f64() * 1e3,
            target
        );
    }
}
