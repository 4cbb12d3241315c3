//! Entry points for the fuzz targets (`fuzz/`) and for the regression test that replays their
//! saved corpus and crashes (`tests/fuzz_corpus.rs`): each takes untrusted bytes the way tokenroll
//! meets them and must return without panicking, whatever the bytes.
//!
//! Owns: nothing but this list. Does not own: any parser (each lives in its own module).

/// A target's name (as its fuzz target and corpus folder are named) and its entry point.
pub type Target = (&'static str, fn(&[u8]));

pub const TARGETS: &[Target] = &[
    ("answer", answer),
    ("challenge", challenge),
    ("pkcs11_uri", pkcs11_uri),
    ("config", config),
    ("cms_verify", cms_verify),
    ("sim_cms", sim_cms),
    ("sim_json", sim_json),
    ("journal", journal),
];

/// The server's answer to a registration.
pub fn answer(data: &[u8]) {
    if let Some(a) = crate::api::Answer::parse(data) {
        let _ = a.explain();
    }
}

/// A fetched challenge, under each content type the fetcher tells apart.
pub fn challenge(data: &[u8]) {
    for ct in ["application/json", "text/plain; charset=utf-8", ""] {
        let _ = crate::challenge::parse_answer(ct, data);
    }
}

/// A PKCS#11 URI from --key or a config file.
pub fn pkcs11_uri(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(uri) = crate::token::uri::Pkcs11Uri::parse(text) {
            // What is printed must parse back.
            let printed = uri.to_string();
            crate::token::uri::Pkcs11Uri::parse(&printed).expect("a printed URI parses");
        }
    }
}

/// A config file, then the options resolved from it (no files are read: secrets come from the
/// environment, which the fuzzer does not set).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(mut raw) = crate::config::parse_text(text) {
            // Resolving `pin_env` takes that variable out of the environment, which must not
            // happen in a process with other threads (the test harness's).
            raw.pin.pin_env = None;
            let env = crate::secret::EnvSecrets::default();
            let _ = crate::config::SignOptions::from_raw(&raw, &env);
            let _ = crate::config::http_options(&raw, &env);
        }
    }
}

/// A PKCS#7 given to `tokenroll verify` (and our own self-verification).
pub fn cms_verify(data: &[u8]) {
    let _ = crate::cms::verify(data);
}

/// A PKCS#7 as the simulator's independent judge reads it.
pub fn sim_cms(data: &[u8]) {
    let _ = crate::simulator::judge_pkcs7(data);
}

/// A registration request body as the simulator reads it.
pub fn sim_json(data: &[u8]) {
    crate::simulator::judge_request(data);
}

/// A journal file, possibly torn or damaged.
pub fn journal(data: &[u8]) {
    let _ = crate::journal::parse(data);
}
