//! The station's record for an auditor: a CSV file with one header row, then one row per token,
//! appended and synced to disk as each token finishes, one line each. A restart appends to the
//! same file, and reads back what it holds to skip what is done.
//!
//! Owns: the file, its columns, RFC 4180 quoting and the spreadsheet-formula guard (a cell that
//! starts with `= + - @`, a tab or a carriage return is prefixed with `'`, as is one that starts
//! with `'` itself, so reading back is exact). Does not own: what a row says (see `lane`).

use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The columns, in order.
pub const COLUMNS: [&str; 13] = [
    "time",
    "reader",
    "token_label",
    "token_serial",
    "username",
    "cert_subject",
    "cert_serial",
    "cert_sha256",
    "status",
    "outcome",
    "code",
    "message",
    "seconds",
];

/// One token's row.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Row {
    /// RFC 3339 UTC.
    pub time: String,
    pub reader: String,
    pub token_label: String,
    pub token_serial: String,
    pub username: String,
    pub cert_subject: String,
    pub cert_serial: String,
    pub cert_sha256: String,
    /// The status registered with, by name.
    pub status: String,
    /// registered, rejected, failed or skipped.
    pub outcome: String,
    pub code: Option<i64>,
    pub message: String,
    /// From the token's arrival to its end, to the millisecond.
    pub seconds: f64,
}

impl Row {
    fn cells(&self) -> [String; 13] {
        [
            self.time.clone(),
            self.reader.clone(),
            self.token_label.clone(),
            self.token_serial.clone(),
            self.username.clone(),
            self.cert_subject.clone(),
            self.cert_serial.clone(),
            self.cert_sha256.clone(),
            self.status.clone(),
            self.outcome.clone(),
            self.code.map(|c| c.to_string()).unwrap_or_default(),
            self.message.clone(),
            format!("{:.3}", self.seconds),
        ]
    }

    fn from_cells(cells: &csv::StringRecord) -> Option<Self> {
        let c = |i: usize| cells.get(i).map(unguard);
        Some(Row {
            time: c(0)?,
            reader: c(1)?,
            token_label: c(2)?,
            token_serial: c(3)?,
            username: c(4)?,
            cert_subject: c(5)?,
            cert_serial: c(6)?,
            cert_sha256: c(7)?,
            status: c(8)?,
            outcome: c(9)?,
            code: c(10)?.parse().ok(),
            message: c(11)?,
            seconds: c(12)?.parse().ok()?,
        })
    }
}

/// A cell a spreadsheet will not run as a formula, on one line: a line break inside a cell
/// becomes " | ", so every row is one line and a row cut by a crash is always the last line.
pub fn guard(cell: &str) -> String {
    let cell = cell.replace("\r\n", " | ").replace(['\n', '\r'], " | ");
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\'') => format!("'{cell}"),
        _ => cell,
    }
}

fn unguard(cell: &str) -> String {
    cell.strip_prefix('\'').unwrap_or(cell).to_string()
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("cannot write the report {path}: {reason}; free disk space or fix the folder's permissions, or name another file with --report")]
    Write { path: String, reason: String },
    #[error("the report {path} is not a tokenroll station report (its first line is not the header {}); name a new file or the report of this batch's earlier run", COLUMNS.join(","))]
    NotAReport { path: String },
}

/// The report file, open for appending.
pub struct Report {
    path: PathBuf,
    file: std::fs::File,
}

impl Report {
    /// Opens `path` (created with its header if new or empty) and returns the rows it already
    /// holds. A last line cut by a crash mid-write is dropped from the file, so the next row
    /// starts on a line of its own.
    pub fn open(path: &Path) -> Result<(Self, Vec<Row>), ReportError> {
        let shown = crate::text::plain(&path.display().to_string()).into_owned();
        let write_err = |e: std::io::Error| ReportError::Write {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(write_err)?;
        let text = std::fs::read(path).map_err(write_err)?;
        if text.is_empty() {
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new());
            w.write_record(COLUMNS).map_err(|e| write_err(e.into()))?;
            let bytes = w.into_inner().map_err(|e| write_err(e.into_error()))?;
            file.write_all(&bytes).map_err(write_err)?;
            file.sync_all().map_err(write_err)?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // The new file's name is durable too.
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            return Ok((
                Report {
                    path: path.to_path_buf(),
                    file,
                },
                Vec::new(),
            ));
        }
        // Whole lines only: a row is written in one piece, so a missing newline is a torn row.
        let whole = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            tracing::warn!(report = %shown, "the report's last row was cut off (a crash while it was written): dropped; the journal still holds that token's outcome");
            file.set_len(whole as u64).map_err(write_err)?;
            file.sync_all().map_err(write_err)?;
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&text[..whole]);
        let mut records = reader.records();
        let header_ok = matches!(records.next(), Some(Ok(h)) if h.iter().eq(COLUMNS));
        if !header_ok {
            return Err(ReportError::NotAReport { path: shown });
        }
        let rows = records
            .filter_map(Result::ok)
            .filter_map(|r| Row::from_cells(&r))
            .collect();
        Ok((
            Report {
                path: path.to_path_buf(),
                file,
            },
            rows,
        ))
    }

    /// Appends `row` and syncs it to disk before returning.
    pub fn append(&mut self, row: &Row) -> Result<(), ReportError> {
        let write_err = |e: std::io::Error| ReportError::Write {
            path: crate::text::plain(&self.path.display().to_string()).into_owned(),
            reason: e.to_string(),
        };
        let mut w = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .quote_style(csv::QuoteStyle::Necessary)
            .from_writer(Vec::new());
        w.write_record(row.cells().iter().map(|c| guard(c)))
            .map_err(|e| write_err(e.into()))?;
        let bytes = w.into_inner().map_err(|e| write_err(e.into_error()))?;
        // One write of the whole row: a crash leaves it whole or torn, never interleaved.
        self.file.write_all(&bytes).map_err(write_err)?;
        self.file.sync_data().map_err(write_err)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The SHA-256 (hex) of the file at `path`, for the HTML report.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    Ok(crate::certinfo::fingerprint(&std::fs::read(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, message: &str) -> Row {
        Row {
            time: "2026-12-03T10:00:00Z".into(),
            reader: "r".into(),
            token_label: "=cmd|' /C calc'!A0".into(),
            token_serial: "01".into(),
            username: user.into(),
            cert_subject: "CN=A, O=\"Quoted\"".into(),
            cert_serial: "0a".into(),
            cert_sha256: "ab".repeat(32),
            status: "pending".into(),
            outcome: "registered".into(),
            code: Some(0),
            message: message.into(),
            seconds: 1.5,
        }
    }

    #[test]
    fn rows_are_quoted_guarded_synced_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let (mut r, old) = Report::open(&path).unwrap();
        assert!(old.is_empty());
        let a = row("alice", "line one\nline two, with \"quotes\"");
        let b = Row {
            code: None,
            ..row("-bob", "'already quoted")
        };
        r.append(&a).unwrap();
        r.append(&b).unwrap();
        drop(r);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(&(COLUMNS.join(",") + "\r\n")), "{text}");
        assert!(text.contains(",'=cmd|' /C calc'!A0,"), "{text}");
        assert!(text.contains(",'-bob,"), "{text}");
        assert!(text.contains(",1.500\r\n"), "{text}");
        assert!(text.contains(",\"CN=A, O=\"\"Quoted\"\"\","), "{text}");
        assert!(
            text.contains("line one | line two"),
            "a line break in a cell stays on the row's line: {text}"
        );
        assert_eq!(text.lines().count(), 3);
        let (_, back) = Report::open(&path).unwrap();
        let a = Row {
            message: "line one | line two, with \"quotes\"".into(),
            ..a
        };
        assert_eq!(back, vec![a, b]);
    }

    #[test]
    fn a_torn_last_row_is_dropped_and_a_foreign_file_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        let (mut r, _) = Report::open(&path).unwrap();
        r.append(&row("alice", "ok")).unwrap();
        drop(r);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"2026-12-03T10:00:01Z,r,bob").unwrap();
        drop(f);
        let (mut r, back) = Report::open(&path).unwrap();
        assert_eq!(back.len(), 1);
        r.append(&row("carol", "ok")).unwrap();
        let (_, back) = Report::open(&path).unwrap();
        let users: Vec<_> = back.iter().map(|r| r.username.as_str()).collect();
        assert_eq!(users, ["alice", "carol"]);

        let other = dir.path().join("other.csv");
        std::fs::write(&other, "username\nalice\n").unwrap();
        let e = Report::open(&other).err().unwrap().to_string();
        assert!(e.contains("not a tokenroll station report"), "{e}");
    }
}
