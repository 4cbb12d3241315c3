//! The content that gets signed: made locally, given by the operator, or fetched from the
//! organisation's challenge service. The bytes signed are exactly the challenge string's bytes.
//!
//! Owns: challenge sources and parsing the service's answer. Does not own: signing, or the HTTP
//! client policy (shared from `api::client`).

use crate::api::client::{
    checked_url, classify, content_type, http_client, read_limited, snippet, HttpOptions,
};
use crate::api::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChallengeSource {
    /// 32 bytes from the OS CSPRNG, hex-encoded.
    Local,
    Given(String),
    Url(String),
}

impl ChallengeSource {
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Local => "local random",
            Self::Given(_) => "given",
            Self::Url(_) => "fetched",
        }
    }
}

pub fn local() -> String {
    let mut b = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// Extracts the challenge from a service's answer: `{"challenge": ...}`, CENTAGATE-style
/// `{"code": 0, "object": {"randomString": ...}}`, or a text/plain body (one trailing newline removed).
pub fn parse_answer(content_type: &str, body: &[u8]) -> Result<String, String> {
    let is_json = content_type.contains("json") || body.first() == Some(&b'{');
    let challenge = if is_json {
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
        if let Some(c) = v.get("challenge") {
            c.as_str()
                .ok_or("\"challenge\" is not a string")?
                .to_string()
        } else if let Some(code) = v.get("code") {
            let code = code
                .as_i64()
                .or_else(|| code.as_str().and_then(|s| s.parse().ok()));
            if code != Some(0) {
                return Err(format!(
                    "the service refused with code {}: {}",
                    v["code"], v["message"]
                ));
            }
            v.pointer("/object/randomString")
                .and_then(|s| s.as_str())
                .ok_or("no object.randomString in the answer")?
                .to_string()
        } else {
            return Err("JSON without \"challenge\" or \"object.randomString\"".into());
        }
    } else if content_type.is_empty() || content_type.starts_with("text/plain") {
        let text = std::str::from_utf8(body).map_err(|_| "the text is not UTF-8")?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(text);
        text.to_string()
    } else {
        return Err(format!("unexpected content type {content_type}"));
    };
    if challenge.is_empty() {
        return Err("the challenge is empty".into());
    }
    Ok(challenge)
}

/// Produces the challenge text for `src`.
pub async fn obtain(src: &ChallengeSource, http: &HttpOptions) -> Result<String, ApiError> {
    let url = match src {
        ChallengeSource::Local => return Ok(local()),
        ChallengeSource::Given(t) => return Ok(t.clone()),
        ChallengeSource::Url(u) => u,
    };
    checked_url(url, "--challenge-url")?;
    let client = http_client(http)?;
    let resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json, text/plain")
        .send()
        .await
        .map_err(|e| classify(url, http.timeout, e))?;
    let status = resp.status();
    let content_type = content_type(&resp);
    let (body, truncated) = read_limited(url, http.timeout, resp).await?;
    let protocol = |why: String| ApiError::Protocol {
        status: status.as_u16(),
        content_type: content_type.clone(),
        snippet: format!("{why}; body: {}", snippet(&body, truncated)),
    };
    if !status.is_success() || truncated {
        return Err(protocol(
            "the challenge service did not answer with a challenge".into(),
        ));
    }
    parse_answer(&content_type, &body).map_err(protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_challenge_is_64_hex_chars_and_fresh() {
        let a = local();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, local());
    }

    #[test]
    fn parses_each_answer_shape() {
        assert_eq!(
            parse_answer("application/json", br#"{"challenge":"abc"}"#).unwrap(),
            "abc"
        );
        assert_eq!(
            parse_answer(
                "application/json",
                br#"{"code":"0","object":{"randomString":"R1"}}"#
            )
            .unwrap(),
            "R1"
        );
        assert_eq!(
            parse_answer("text/plain; charset=utf-8", b"hello world\n").unwrap(),
            "hello world"
        );
        assert_eq!(parse_answer("text/plain", b"two\n\n").unwrap(), "two\n");
        assert!(parse_answer("application/json", br#"{"code":10001,"message":"no"}"#).is_err());
        assert!(parse_answer("application/json", br#"{"challenge":5}"#).is_err());
        assert!(parse_answer("text/html", b"<html>").is_err());
        assert!(parse_answer("text/plain", b"\n").is_err());
    }
}
