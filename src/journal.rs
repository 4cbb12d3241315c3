//! The enrollment journal: every registration tokenroll sends, append-only, as JSON lines in
//! `$XDG_STATE_HOME/tokenroll/journal.jsonl` (owner-only). An intent line is written and synced
//! to disk before the request leaves; an outcome line follows the answer. A process killed at any
//! point leaves a journal that reads back: an intent without an outcome reads as
//! "unknown: check the server", and a torn last line is skipped and counted.
//!
//! Owns: the file, its format and its durability. Does not own: what an attempt is or when it
//! is made (see `enroll`). Never holds a secret: no PIN, authToken, secretCode or cenToken.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error("cannot write the enrollment journal {path}: {reason}; nothing was sent (free disk space or fix the folder's permissions, or name another file with --journal)")]
    Write { path: String, reason: String },
    #[error("cannot read the enrollment journal {path}: {reason}")]
    Read { path: String, reason: String },
}

/// What is about to be sent.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Intent {
    pub id: String,
    /// register (the default, and all entries written before this field) or unbind.
    #[serde(default = "register_action", skip_serializing_if = "is_register")]
    pub action: String,
    pub time: String,
    pub server: String,
    pub admin: String,
    pub user: String,
    pub token_label: String,
    pub token_serial: String,
    pub certificate_sha256: String,
    pub certificate_subject: String,
    /// For matching the server's list of bound certificates (by SHA-1, or serial and issuer);
    /// empty in entries written before these were recorded.
    #[serde(default)]
    pub certificate_sha1: String,
    #[serde(default)]
    pub certificate_serial: String,
    #[serde(default)]
    pub certificate_issuer: String,
    pub algorithm: String,
    pub status: String,
    /// `relay` when the registration went through the relay (`server` is then the relay's
    /// enrollment URL and `admin` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Through the relay: the SHA-256 of the PKCS#7 sent, by which the relay answers lookups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
    /// The station run the attempt belongs to (its report file's SHA-256 name, see `station`),
    /// by which a restarted run finds what it had in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

fn register_action() -> String {
    "register".into()
}

fn is_register(a: &str) -> bool {
    a == "register"
}

/// What came of it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    pub id: String,
    pub time: String,
    /// registered, rejected, failed, or unknown (the server may have acted on it).
    pub outcome: String,
    pub code: Option<i64>,
    pub message: String,
    /// How many times the request was sent (transport failures are retried).
    pub attempts: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase")]
enum Line {
    Intent(Box<Intent>),
    Outcome(Outcome),
}

/// One attempt as read back.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Entry {
    #[serde(flatten)]
    pub intent: Intent,
    /// `None`: the process ended before the answer was recorded.
    pub outcome: Option<Outcome>,
}

impl Entry {
    /// The outcome in words; "unknown: check the server" when there is none, or when the answer
    /// was lost in a way that leaves open whether the server acted (cut off, a gateway's error).
    pub fn state(&self) -> &str {
        match self.outcome.as_ref().map(|o| o.outcome.as_str()) {
            None | Some("unknown") => "unknown: check the server",
            Some(o) => o,
        }
    }
}

/// What `read` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Contents {
    pub entries: Vec<Entry>,
    /// Lines that do not parse: a line torn by a crash mid-write, or damage.
    pub skipped_lines: usize,
}

pub struct Journal {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

/// Now as RFC 3339 UTC, to the second.
pub fn now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    der::DateTime::from_unix_duration(std::time::Duration::from_secs(since.as_secs()))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Appends the outcome of attempt `id` to `journal`, if there is one. A failure to write is
/// logged, not returned: the answer stands, and the journal shows the attempt as unknown.
pub fn record_outcome(
    journal: Option<&Journal>,
    id: &str,
    outcome: &str,
    code: Option<i64>,
    message: &str,
    attempts: u32,
) {
    let Some(j) = journal else { return };
    if let Err(e) = j.outcome(&Outcome {
        id: id.to_string(),
        time: now(),
        outcome: outcome.into(),
        code,
        message: message.into(),
        attempts,
    }) {
        tracing::error!(error = %e, "the outcome could not be journaled");
    }
}

/// A fresh attempt id: 16 random bytes, hex.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

impl Journal {
    /// Opens (creating it owner-only, in an owner-only folder) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let err = |e: crate::paths::PathError| JournalError::Write {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::paths::private_dir(dir).map_err(err)?;
        }
        let file = crate::paths::open_append(path).map_err(err)?;
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Appends one line and waits until it is on disk.
    fn append(&self, line: &Line) -> Result<(), JournalError> {
        let mut text = serde_json::to_string(line).expect("journal lines serialize");
        text.push('\n');
        let mut f = self.file.lock().expect("journal lock");
        // One write per line: O_APPEND keeps concurrent writers' lines whole.
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| JournalError::Write {
                path: self.path.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Records what is about to be sent; on disk before this returns.
    pub fn intent(&self, intent: &Intent) -> Result<(), JournalError> {
        self.append(&Line::Intent(Box::new(intent.clone())))
    }

    pub fn outcome(&self, outcome: &Outcome) -> Result<(), JournalError> {
        self.append(&Line::Outcome(outcome.clone()))
    }
}

/// Reads a journal back, oldest first. A missing file is an empty journal.
pub fn read(path: &Path) -> Result<Contents, JournalError> {
    let text = match crate::paths::read_nofollow(path) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(Contents::default()),
        Err(e) => {
            return Err(JournalError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
        }
    };
    Ok(parse(&text))
}

/// The entries in `bytes`; lines that do not parse are counted, not fatal.
pub fn parse(bytes: &[u8]) -> Contents {
    let mut out = Contents::default();
    let mut index = std::collections::HashMap::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Line>(line) {
            Ok(Line::Intent(i)) => {
                let i = *i;
                index.insert(i.id.clone(), out.entries.len());
                out.entries.push(Entry {
                    intent: i,
                    outcome: None,
                });
            }
            Ok(Line::Outcome(o)) => match index.get(&o.id) {
                Some(&n) => out.entries[n].outcome = Some(o),
                None => out.skipped_lines += 1,
            },
            Err(_) => out.skipped_lines += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(id: &str) -> Intent {
        Intent {
            id: id.into(),
            action: "register".into(),
            time: now(),
            server: "https://centagate.example".into(),
            admin: "helpdesk".into(),
            user: "alice".into(),
            token_label: "alice".into(),
            token_serial: "1234".into(),
            certificate_sha256: "ab".repeat(32),
            certificate_subject: "CN=alice".into(),
            certificate_sha1: "cd".repeat(20),
            certificate_serial: "01".into(),
            certificate_issuer: "CN=alice".into(),
            algorithm: "sha256".into(),
            status: "1".into(),
            via: None,
            request_sha256: None,
            run: None,
        }
    }

    /// Entries written before the SHA-1, serial and issuer were recorded still read.
    #[test]
    fn older_entries_without_the_matching_fields_read() {
        let old = r#"{"record":"intent","id":"1","time":"t","server":"s","admin":"a","user":"u","token_label":"l","token_serial":"s","certificate_sha256":"h","certificate_subject":"CN=x","algorithm":"sha256","status":"1"}"#;
        let c = parse(format!("{old}\n").as_bytes());
        assert_eq!((c.entries.len(), c.skipped_lines), (1, 0));
        assert!(c.entries[0].intent.certificate_sha1.is_empty());
    }

    #[test]
    fn reads_back_what_it_wrote_with_an_unfinished_attempt_as_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/journal.jsonl");
        let j = Journal::open(&path).unwrap();
        j.intent(&intent("a")).unwrap();
        j.outcome(&Outcome {
            id: "a".into(),
            time: now(),
            outcome: "registered".into(),
            code: Some(0),
            message: "Success".into(),
            attempts: 1,
        })
        .unwrap();
        j.intent(&intent("b")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let c = read(&path).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.entries[0].state(), "registered");
        assert_eq!(c.entries[1].state(), "unknown: check the server");
        assert_eq!(c.skipped_lines, 0);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_counted() {
        let good = serde_json::to_string(&Line::Intent(Box::new(intent("a")))).unwrap();
        let torn = format!("{good}\n{}", &good[..good.len() / 2]);
        let c = parse(torn.as_bytes());
        assert_eq!(c.entries.len(), 1);
        assert_eq!(c.skipped_lines, 1);
        // Garbage and an outcome with no intent are counted too.
        let c = parse(b"\x00\xff garbage\n{\"record\":\"outcome\",\"id\":\"zz\",\"time\":\"\",\"outcome\":\"failed\",\"code\":null,\"message\":\"\",\"attempts\":1}\n");
        assert_eq!((c.entries.len(), c.skipped_lines), (0, 2));
    }
}
