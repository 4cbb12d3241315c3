//! `tokenroll journal`: every registration sent, and what came of it.
//!
//! Owns: the journal listing's view structs and layout. Does not own: the journal's format (see
//! `journal`).

use super::args::JournalArgs;
use super::exit;
use crate::journal::{Contents, Entry};
use crate::text::{plain, plain_lines};
use serde::Serialize;

/// The listing, as `--json` prints it.
#[derive(Serialize)]
struct Listing<'a> {
    journal: String,
    entries: Vec<EntryView<'a>>,
    skipped_lines: usize,
}

#[derive(Serialize)]
struct EntryView<'a> {
    #[serde(flatten)]
    entry: &'a Entry,
    /// registered, rejected, failed, or "unknown: check the server".
    state: &'a str,
}

pub fn journal_cmd(
    args: JournalArgs,
    env: &crate::secret::EnvSecrets,
    paths: &crate::paths::Paths,
) -> i32 {
    let json = args.output.json.unwrap_or(false);
    let fail = |message: String| {
        if json {
            println!("{}", serde_json::json!({"error": message}));
        } else {
            eprintln!("error: {}", plain_lines(&message));
        }
    };
    let layers = crate::config::layers(args.layer(), args.config.config.as_deref(), paths);
    let (raw, policy) = match layers.and_then(|l| Ok((l.merge()?, l.policy))) {
        Ok(r) => r,
        Err(e) => {
            fail(e.to_string());
            return exit::USAGE;
        }
    };
    let json = raw.output.json.unwrap_or(false);
    let path = match raw.journal.journal.clone() {
        Some(p) => p,
        None => match crate::config::journal_path(paths) {
            Ok(p) => p,
            Err(e) => {
                fail(e.to_string());
                return exit::USAGE;
            }
        },
    };
    if args.reconcile {
        return super::reconcile::reconcile(&raw, &policy, env, &path, json);
    }
    let contents = match crate::journal::read(&path) {
        Ok(c) => c,
        Err(e) => {
            fail(e.to_string());
            return exit::FAILURE;
        }
    };
    if json {
        let listing = Listing {
            journal: path.display().to_string(),
            entries: contents
                .entries
                .iter()
                .map(|entry| EntryView {
                    entry,
                    state: entry.state(),
                })
                .collect(),
            skipped_lines: contents.skipped_lines,
        };
        println!(
            "{}",
            serde_json::to_string(&listing).expect("the listing serializes")
        );
        return exit::OK;
    }
    print!("{}", text(&contents, &path));
    if contents.skipped_lines > 0 {
        eprintln!(
            "warning: {} line(s) of {} could not be read (a write cut short by a crash, or damage)",
            contents.skipped_lines,
            plain(&path.display().to_string())
        );
    }
    exit::OK
}

/// The listing for a person; every recorded value is made plain (a journal line may quote a
/// token label or a server message).
fn text(contents: &Contents, path: &std::path::Path) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if contents.entries.is_empty() {
        let _ = writeln!(
            out,
            "no registrations in {}",
            plain(&path.display().to_string())
        );
    }
    for e in &contents.entries {
        let i = &e.intent;
        let answer = match &e.outcome {
            Some(o) => format!(
                "{}{}: {}",
                plain(&o.outcome),
                o.code.map(|c| format!(" (code {c})")).unwrap_or_default(),
                plain(&o.message)
            ),
            None => e.state().to_string(),
        };
        let _ = writeln!(
            out,
            "{}  {} -> {}  token '{}' ({})  {}  by {}\n    {answer}",
            plain(&i.time),
            plain(&i.certificate_subject),
            plain(&i.user),
            plain(&i.token_label),
            plain(&i.token_serial),
            plain(&i.algorithm),
            plain(&i.admin)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_text_is_listed_escaped() {
        let line = serde_json::json!({"record": "intent", "id": "1", "time": "t", "server": "s",
            "admin": "a", "user": "u\x1b[31m", "token_label": "l\nx", "token_serial": "s",
            "certificate_sha256": "h", "certificate_subject": "CN=x", "algorithm": "sha256",
            "status": "1"});
        let contents = crate::journal::parse(format!("{line}\n").as_bytes());
        assert_eq!(contents.entries.len(), 1);
        let t = text(&contents, std::path::Path::new("j"));
        assert!(!t.contains('\x1b'), "{t:?}");
        assert!(
            t.contains("u\\x1b[31m") && t.contains("token 'l\\x0ax'"),
            "{t}"
        );
        assert!(t.contains("unknown: check the server"), "{t}");
    }
}
