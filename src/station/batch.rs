//! The station's batch file: which user each token is for. RFC 4180 CSV (quoted fields, CRLF or
//! LF, a UTF-8 BOM from spreadsheet exports) with a header row naming the columns in any order:
//! `username` (required), `serial` and `status` (optional).
//!
//! Owns: reading and validating the file — every bad line is found and named by its line number
//! before anything starts. Does not own: which token takes which row (see `queue`).

use crate::api::TokenStatus;

/// One row of the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The row's line in the file (1 is the header), for messages and the report.
    pub line: u64,
    pub username: String,
    /// The token serial this row is for, as written (trimmed).
    pub serial: Option<String>,
    /// The row's status; `None`: the run's `--status`.
    pub status: Option<TokenStatus>,
}

/// A validated batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub rows: Vec<Row>,
    /// True when the file has a `serial` column: tokens go to the row of their serial.
    pub by_serial: bool,
}

/// A batch file that cannot be used: every problem, each with its line.
#[derive(Debug, thiserror::Error)]
#[error("the batch file {file} cannot be used; nothing was started:\n{}\nFix these lines and start again", .problems.join("\n"))]
pub struct BatchError {
    pub file: String,
    pub problems: Vec<String>,
}

/// How serials compare: case-insensitively, with surrounding spaces trimmed.
pub fn serial_key(serial: &str) -> String {
    serial.trim().to_lowercase()
}

/// Reads and validates the batch file at `path`.
pub fn read(path: &std::path::Path) -> Result<Batch, BatchError> {
    let fail = |p: String| BatchError {
        file: crate::text::plain(&path.display().to_string()).into_owned(),
        problems: vec![p],
    };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    parse(&bytes).map_err(|problems| BatchError {
        file: crate::text::plain(&path.display().to_string()).into_owned(),
        problems,
    })
}

/// Parses and validates a batch; `Err` holds every problem found, each naming its line.
pub fn parse(bytes: &[u8]) -> Result<Batch, Vec<String>> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut records = reader.records();
    let header = match records.next() {
        None => {
            return Err(vec![
            "line 1: the file is empty; it needs a header row naming at least the username column"
                .into(),
        ])
        }
        Some(Err(e)) => return Err(vec![csv_problem(bytes, &e)]),
        Some(Ok(h)) => h,
    };
    let mut problems = Vec::new();
    let (mut user_col, mut serial_col, mut status_col) = (None, None, None);
    for (i, name) in header.iter().enumerate() {
        let slot = match name.trim().to_ascii_lowercase().as_str() {
            "username" => &mut user_col,
            "serial" => &mut serial_col,
            "status" => &mut status_col,
            other => {
                problems.push(format!(
                    "line 1: unknown column '{}'; the columns are username, serial and status",
                    crate::text::plain(other)
                ));
                continue;
            }
        };
        if slot.replace(i).is_some() {
            problems.push(format!(
                "line 1: the column '{}' is named twice",
                name.trim()
            ));
        }
    }
    let Some(user_col) = user_col else {
        problems.push("line 1: no username column; the header row must name it".into());
        return Err(problems);
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut users: std::collections::HashMap<String, u64> = Default::default();
    let mut serials: std::collections::HashMap<String, u64> = Default::default();
    for record in records {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                problems.push(csv_problem(bytes, &e));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| line_at(bytes, p.byte()));
        if record.iter().all(|f| f.trim().is_empty()) {
            // A blank line (spreadsheets end files with some): not a row.
            continue;
        }
        if record.len() > header.len() {
            problems.push(format!(
                "line {line}: {} fields, but the header names {}",
                record.len(),
                header.len()
            ));
            continue;
        }
        let cell = |c: Option<usize>| c.and_then(|c| record.get(c)).map(str::trim);
        let username = cell(Some(user_col)).unwrap_or_default().to_string();
        if username.is_empty() {
            problems.push(format!("line {line}: the username is empty"));
        } else if username.chars().any(char::is_control) {
            problems.push(format!(
                "line {line}: the username holds a control character"
            ));
        } else if let Some(first) = users.insert(username.to_lowercase(), line) {
            problems.push(format!(
                "line {line}: the username '{}' is already on line {first}",
                crate::text::plain(&username)
            ));
        }
        let serial = cell(serial_col).map(str::to_string);
        match serial.as_deref() {
            Some("") => problems.push(format!(
                "line {line}: the serial is empty (with a serial column, every row names its token)"
            )),
            Some(s) => {
                if let Some(first) = serials.insert(serial_key(s), line) {
                    problems.push(format!(
                        "line {line}: the serial '{}' is already on line {first}",
                        crate::text::plain(s)
                    ));
                }
            }
            None => {}
        }
        let status = match cell(status_col) {
            None | Some("") => None,
            Some(s) => match s.parse::<TokenStatus>() {
                Ok(st) => Some(st),
                Err(e) => {
                    problems.push(format!("line {line}: {}", crate::text::plain(&e)));
                    None
                }
            },
        };
        rows.push(Row {
            line,
            username,
            serial,
            status,
        });
    }
    if rows.is_empty() && problems.is_empty() {
        problems.push("the file has a header but no rows: nothing to enroll".into());
    }
    if problems.is_empty() {
        Ok(Batch {
            rows,
            by_serial: serial_col.is_some(),
        })
    } else {
        Err(problems)
    }
}

/// The line (1-based) of byte `offset`: counted by hand, as the reader counts CRLF files' lines
/// its own way
/// (the LF of a CRLF can start the next record).
fn line_at(bytes: &[u8], offset: u64) -> u64 {
    let mut end = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    // A record's position can point at the line end before it (the LF of a CRLF).
    while end < bytes.len() && matches!(bytes[end], b'\r' | b'\n') {
        end += 1;
    }
    1 + bytes[..end].iter().filter(|b| **b == b'\n').count() as u64
}

fn csv_problem(bytes: &[u8], e: &csv::Error) -> String {
    let line = e.position().map_or(0, |p| line_at(bytes, p.byte()));
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => {
            format!("line {line}: not UTF-8 text; save the file as CSV UTF-8")
        }
        _ => format!("line {line}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_in_any_order_quotes_crlf_and_a_bom() {
        let text = "\u{feff}status,Username,serial\r\n,alice,AB 01\r\n\"2\",\"bob, jr\",\" cd02 \"\r\n\r\n";
        let b = parse(text.as_bytes()).unwrap();
        assert!(b.by_serial);
        assert_eq!(b.rows.len(), 2);
        assert_eq!(b.rows[0].username, "alice");
        assert_eq!(b.rows[0].status, None);
        assert_eq!(b.rows[1].username, "bob, jr");
        assert_eq!(b.rows[1].serial.as_deref(), Some("cd02"));
        assert_eq!(b.rows[1].status, Some(TokenStatus::Valid));
        assert_eq!((b.rows[0].line, b.rows[1].line), (2, 3));
        assert_eq!(serial_key(" AB 01 "), "ab 01");
    }

    #[test]
    fn without_serials_rows_keep_their_order() {
        let b = parse(b"username\ncarol\ndave\n").unwrap();
        assert!(!b.by_serial);
        let names: Vec<_> = b.rows.iter().map(|r| r.username.as_str()).collect();
        assert_eq!(names, ["carol", "dave"]);
    }

    #[test]
    fn every_bad_line_is_named() {
        let text = "username,serial,status,colour\n";
        let e = parse(text.as_bytes()).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("line 1: unknown column 'colour'"), "{e:?}");

        let text = "username,serial,status\nalice,1,\n,2,\nAlice,3,\nbob,1,\ncarol,4,sometimes\n";
        let e = parse(text.as_bytes()).unwrap_err();
        let expected = [
            "line 3: the username is empty",
            "line 4: the username 'Alice' is already on line 2",
            "line 5: the serial '1' is already on line 2",
            "line 6: unknown status 'sometimes'",
        ];
        assert_eq!(e.len(), expected.len(), "{e:?}");
        for (got, want) in e.iter().zip(expected) {
            assert!(got.starts_with(want), "{got} / {want}");
        }
        let e = parse(b"serial\n1\n").unwrap_err();
        assert!(e[0].contains("no username column"), "{e:?}");
        let e = parse(b"").unwrap_err();
        assert!(e[0].contains("empty"), "{e:?}");
        let e = parse(b"username\n").unwrap_err();
        assert!(e[0].contains("no rows"), "{e:?}");
        let e = parse(b"username,serial\nalice,\n").unwrap_err();
        assert!(e[0].starts_with("line 2: the serial is empty"), "{e:?}");
        let e = parse(b"username\nalice,extra\n").unwrap_err();
        assert!(e[0].starts_with("line 2: 2 fields"), "{e:?}");
        let e = parse(b"username\n\xff\xfe\n").unwrap_err();
        assert!(e[0].contains("UTF-8"), "{e:?}");
    }
}
