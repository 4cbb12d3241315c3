//! `tokenroll tokens`: slots, tokens and signing pairs, as text or one JSON object.
//!
//! Owns: the listing's view structs and layout. Does not own: discovery (see `token`).

use super::args::TokensArgs;
use super::exit;
use crate::text::plain;
use crate::token::{Module, SigningPair, SlotDesc, TokenDesc};
use serde::Serialize;

/// The whole listing, as `--json` prints it.
#[derive(Serialize)]
struct Listing {
    module: String,
    slots: Vec<SlotDesc>,
    tokens: Vec<TokenView>,
}

#[derive(Serialize)]
struct TokenView {
    #[serde(flatten)]
    token: TokenDesc,
    pairs: Vec<PairView>,
}

#[derive(Serialize)]
struct PairView {
    uri: String,
    id: String,
    label: String,
    key: String,
    subject: String,
    issuer: String,
    not_before: String,
    not_after: String,
    valid: bool,
}

impl PairView {
    fn new(p: &SigningPair) -> Self {
        let v = &p.cert.tbs_certificate.validity;
        Self {
            uri: p.uri().to_string(),
            id: hex::encode(&p.id),
            label: p.object_label.clone(),
            key: p.kind.describe(),
            subject: p.subject(),
            issuer: p.cert.tbs_certificate.issuer.to_string(),
            not_before: crate::token::fmt_time(&v.not_before),
            not_after: crate::token::fmt_time(&v.not_after),
            valid: p.validity == crate::token::Validity::Valid,
        }
    }
}

fn listing(module: &Module) -> Result<Listing, crate::token::TokenError> {
    let tokens = module
        .tokens()?
        .into_iter()
        .map(|t| {
            let pairs = module.pairs(&t).unwrap_or_default();
            TokenView {
                pairs: pairs.iter().map(PairView::new).collect(),
                token: t,
            }
        })
        .collect();
    Ok(Listing {
        module: module.path().display().to_string(),
        slots: module.slots().unwrap_or_default(),
        tokens,
    })
}

pub fn tokens_cmd(args: TokensArgs, paths: &crate::paths::Paths) -> i32 {
    let raw = match crate::config::resolve(args.layer(), args.config.config.as_deref(), paths) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokenroll: {}", plain(&e.to_string()));
            return exit::USAGE;
        }
    };
    let json = raw.output.json.unwrap_or(false);
    let result = Module::load(raw.module.module.as_deref())
        .and_then(|m| Ok((listing(&m)?, m.library_description())));
    let (listing, library) = match result {
        Ok(v) => v,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"module": null, "error": e.to_string(), "tokens": []})
                );
            } else {
                eprintln!("tokenroll: {}", plain(&e.to_string()));
            }
            return exit::TOKEN;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string(&listing).expect("the listing serializes")
        );
        return exit::OK;
    }
    print!("{}", text(&listing, &library));
    exit::OK
}

/// The listing for a person; every value from the module or a token is made plain.
fn text(l: &Listing, library: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "module: {} ({})", plain(&l.module), plain(library));
    for s in l.slots.iter().filter(|s| !s.token_present) {
        let _ = writeln!(out, "slot '{}': no token", plain(&s.description));
    }
    if l.tokens.is_empty() {
        let _ = writeln!(out, "no token present");
    }
    for t in &l.tokens {
        let d = &t.token;
        let flags: Vec<&str> = [
            (d.pin_pad, "PIN pad"),
            (d.pin_count_low, "PIN count low"),
            (d.pin_final_try, "PIN final try"),
            (d.pin_locked, "PIN LOCKED"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        let _ = writeln!(
            out,
            "token '{}' serial {} ({} {}){}",
            plain(&d.label),
            plain(&d.serial),
            plain(&d.manufacturer),
            plain(&d.model),
            if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.join(", "))
            }
        );
        if t.pairs.is_empty() {
            let _ = writeln!(out, "  no signing pair");
        }
        for p in &t.pairs {
            let _ = writeln!(
                out,
                "  {}\n    {}  {}  valid {} .. {}{}",
                plain(&p.uri),
                p.key,
                plain(&p.subject),
                p.not_before,
                p.not_after,
                if p.valid { "" } else { "  (NOT VALID NOW)" }
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token whose label carries an escape sequence and a newline cannot reach the terminal
    /// raw: the listing shows it escaped, on one line.
    #[test]
    fn a_hostile_label_is_listed_escaped() {
        let token = crate::token::tests::token("evil\x1b]0;pwned\x07\nforged line");
        let l = Listing {
            module: "m.so".into(),
            slots: vec![],
            tokens: vec![TokenView {
                token,
                pairs: vec![],
            }],
        };
        let t = text(&l, "lib");
        assert!(!t.contains('\x1b') && !t.contains('\x07'), "{t:?}");
        assert!(
            t.contains("token 'evil\\x1b]0;pwned\\x07\\x0aforged line'"),
            "{t}"
        );
        assert!(!t.lines().any(|l| l.starts_with("forged")), "{t}");
    }
}
