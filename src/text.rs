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

/// For pinentry's SETDESC, SETTITLE and SETPROMPT: controls become spaces (our own line breaks,
/// given as `\n`, are kept) and the text is capped at `max` bytes, well under the protocol's
/// 1000-byte line (after the percent-escaping of the Assuan protocol, which can triple a byte).
pub fn pinentry(s: &str, max: usize) -> String {
    let kept: String = s
        .chars()
        .map(|c| if c != '\n' && is_control(c) { ' ' } else { c })
        .collect();
    cap(&kept, max).into_owned()
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
        assert!(p.len() <= 300);
        assert!(!p.chars().any(|c| c.is_control()), "{p:?}");
        assert_eq!(pinentry("a\nb", 10), "a\nb");
    }
}
