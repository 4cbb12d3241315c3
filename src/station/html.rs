//! The printable HTML report of a run (`--html FILE`): the operator, the server, the summary,
//! every row of the CSV report, and the SHA-256 of the final CSV so that the two can be matched.
//! One self-contained page with print styles; every value is HTML-escaped.
//!
//! Owns: the page. Does not own: the rows or the summary (see `report`, `events`).

use super::events::Summary;
use super::report::{Row, COLUMNS};

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// What the page says besides the rows.
pub struct Header<'a> {
    pub operator: &'a str,
    pub server: &'a str,
    pub report_path: &'a str,
    pub report_sha256: &'a str,
    pub generated: &'a str,
}

pub fn page(h: &Header<'_>, summary: &Summary, rows: &[Row]) -> String {
    let e = escape;
    let mut out = String::new();
    out.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>tokenroll station report</title>\n<style>\n\
         body{font-family:sans-serif;font-size:11pt;margin:2em}\n\
         table{border-collapse:collapse;width:100%}\n\
         th,td{border:1px solid #888;padding:2px 4px;vertical-align:top;font-size:9pt}\n\
         th{background:#eee}\n\
         td.registered{color:#060}td.rejected,td.failed{color:#a00}\n\
         dt{font-weight:bold;float:left;width:12em}dd{margin-left:12em}\n\
         code{word-break:break-all}\n\
         @media print{body{margin:0}@page{size:A4 landscape;margin:1cm}tr{page-break-inside:avoid}}\n\
         </style>\n</head>\n<body>\n<h1>Token enrollment report</h1>\n<dl>\n",
    );
    let dd = |out: &mut String, k: &str, v: &str| {
        out.push_str(&format!("<dt>{}</dt><dd>{}</dd>\n", e(k), v));
    };
    dd(&mut out, "Operator", &e(h.operator));
    dd(&mut out, "Server", &e(h.server));
    dd(&mut out, "Generated", &e(h.generated));
    dd(
        &mut out,
        "CSV report",
        &format!("<code>{}</code>", e(h.report_path)),
    );
    dd(
        &mut out,
        "CSV SHA-256",
        &format!("<code id=\"csv-sha256\">{}</code>", e(h.report_sha256)),
    );
    out.push_str("</dl>\n<h2>Summary</h2>\n<table id=\"summary\">\n");
    let s = summary;
    let slowest = s
        .slowest_phase
        .as_ref()
        .map(|p| format!("{} ({:.3} s on average)", p.phase, p.seconds))
        .unwrap_or_else(|| "-".into());
    for (k, v) in [
        ("registered", s.registered.to_string()),
        ("rejected", s.rejected.to_string()),
        ("failed", s.failed.to_string()),
        ("skipped", s.skipped.to_string()),
        ("batch rows unsettled", s.unsettled.to_string()),
        ("tokens per hour", format!("{:.1}", s.tokens_per_hour)),
        ("slowest phase", slowest),
    ] {
        out.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>\n", e(k), e(&v)));
    }
    out.push_str("</table>\n<h2>Tokens</h2>\n<table id=\"rows\">\n<thead><tr>");
    for c in COLUMNS {
        out.push_str(&format!("<th>{}</th>", e(c)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        let cells = [
            &r.time,
            &r.reader,
            &r.token_label,
            &r.token_serial,
            &r.username,
            &r.cert_subject,
            &r.cert_serial,
            &r.cert_sha256,
            &r.status,
            &r.outcome,
            &r.code.map(|c| c.to_string()).unwrap_or_default(),
            &r.message,
            &format!("{:.3}", r.seconds),
        ];
        out.push_str("<tr>");
        for (i, c) in cells.iter().enumerate() {
            if i == 9 {
                out.push_str(&format!("<td class=\"{}\">{}</td>", e(c), e(c)));
            } else {
                out.push_str(&format!("<td>{}</td>", e(c)));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_is_escaped() {
        let row = Row {
            username: "<script>alert('x')</script>".into(),
            message: "a & b \"c\"".into(),
            outcome: "registered".into(),
            ..Default::default()
        };
        let h = Header {
            operator: "helpdesk<1>",
            server: "https://cg",
            report_path: "r.csv",
            report_sha256: "ab",
            generated: "now",
        };
        let page = page(&h, &Summary::default(), &[row]);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("a &amp; b &quot;c&quot;"));
        assert!(page.contains("helpdesk&lt;1&gt;"));
        assert!(page.contains("<code id=\"csv-sha256\">ab</code>"));
    }
}
