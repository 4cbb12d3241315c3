//! Making untrusted text safe for the place it leaves through. Token labels, certificate
//! subjects, serials and server messages come from tokens and servers we do not control; each exit
//! (terminal, log, notification, pinentry) calls the one function made for it.
//!
//! Owns: the escaping rules and the length caps. Does not own: deciding what is untrusted (the
//! callers at each exit do) or the exits themselves.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` is a C0 or C1 control character or DEL.
fn is_control(c: char) -> bool {
    let u = c as u32;
    u < 0x20 || (0x7f..=0x9f).contains(&u)
}

/// For a terminal or a log line: every C0/C1 control and DEL (escape sequences, newlines, CR)
/// is written as `\x..`, and a backslash as `\\`, so one value stays on one line and cannot move
/// the cursor, recolour the screen or forge a log record.
pub fn plain(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_control(c) || c == '\\') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if is_control(c) {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A multi-line message of ours that quotes untrusted text: each line is made [`plain`] and the
/// lines are kept (for the terminal, where our own messages may span lines).
pub fn plain_lines(s: &str) -> String {
    s.split('\n')
        .map(|l| plain(l.strip_suffix('\r').unwrap_or(l)).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// At most `max` bytes of `s`, cut at a character boundary, with "…" when cut.
pub fn cap(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

/// For a desktop notification's body or summary: servers render a subset of HTML markup in
/// bodies, so `& < >` are escaped; controls other than newline are dropped; at most `max` bytes.
pub fn markup(s: &str, max: usize) -> String {
    let kept: String = s.chars().filter(|&c| c == '\n' || !is_control(c)).collect();
    let mut out = String::with_capacity(kept.len());
    for c in cap(&kept, max).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// For pinentry's SETDESC, SETTITLE, SETPROMPT and SETERROR: controls become spaces (our own
/// line breaks, given as `\n`, are kept) and the text is capped so that, once the Assuan protocol
/// has percent-escaped it (`%` and `\n` take three bytes), it is at most `max` bytes — well
/// under the protocol's 1000-byte line, on which the pinentry crate asserts.
pub fn pinentry(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut encoded = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let c = if c != '\n' && is_control(c) { ' ' } else { c };
        let cost = if c == '%' || c == '\n' {
            3
        } else {
            c.len_utf8()
        };
        // Room for the "…" (3 bytes) that says the text was cut.
        let reserve = if chars.peek().is_some() { 3 } else { 0 };
        if encoded + cost + reserve > max {
            out.push('…');
            return out;
        }
        encoded += cost;
        out.push(c);
    }
    out
}

/// A writer for log records (stderr, `agent.log`, and through stderr journald): each record is
/// one line, whatever the values in it hold — newlines, CR and escape sequences inside a record
/// are written as `\x..`, so untrusted text (a token label in an error) can neither forge a
/// record nor drive a terminal.
pub struct OneLine<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (&*text, ""),
        };
        let mut line = String::with_capacity(buf.len() + 8);
        for c in body.chars() {
            if c != '\t' && is_control(c) {
                let _ = write!(line, "\\x{:02x}", c as u32);
            } else {
                line.push(c);
            }
        }
        line.push_str(end);
        self.0.write_all(line.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_text_loses_its_controls() {
        assert_eq!(plain("alice"), "alice");
        assert_eq!(
            plain("evil\x1b[2J\r\nforged: ok\u{9b}31m\x7f\\"),
            "evil\\x1b[2J\\x0d\\x0aforged: ok\\x9b31m\\x7f\\\\"
        );
        assert_eq!(plain_lines("a\x1b\nb\r\n"), "a\\x1b\nb\n");
    }

    #[test]
    fn notification_markup_is_escaped_and_capped() {
        assert_eq!(markup("<b>A&B</b>\x1b", 100), "&lt;b&gt;A&amp;B&lt;/b&gt;");
        let long = "é".repeat(500);
        let m = markup(&long, 101);
        assert!(m.len() <= 101 && m.ends_with('…'), "{}", m.len());
    }

    #[test]
    fn pinentry_text_is_one_safe_short_value() {
        let subject = format!("CN={}\r\x00", "x".repeat(5000));
        let p = pinentry(&subject, 300);
        assert!(p.len() <= 300 && p.ends_with('…'));
        assert!(!p.chars().any(|c| c.is_control()), "{p:?}");
        assert_eq!(pinentry("a\nb", 10), "a\nb");
        // Counted as the protocol will send it: every % becomes three bytes.
        let encoded = |s: &str| {
            s.chars()
                .map(|c| {
                    if c == '%' || c == '\n' {
                        3
                    } else {
                        c.len_utf8()
                    }
                })
                .sum::<usize>()
        };
        let p = pinentry(&"%".repeat(1000), 900);
        assert!(encoded(&p) <= 900, "{}", encoded(&p));
    }

    #[test]
    fn a_log_record_stays_one_line() {
        use std::io::Write;
        let mut out = OneLine(Vec::new());
        out.write_all(b"WARN token=evil\nERROR forged\x1b[2J done\n")
            .unwrap();
        let s = String::from_utf8(out.0).unwrap();
        assert_eq!(s, "WARN token=evil\\x0aERROR forged\\x1b[2J done\n");
        assert_eq!(s.lines().count(), 1);
    }
}
