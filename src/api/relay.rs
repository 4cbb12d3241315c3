//! The desk's side of the relay protocol (`tokenroll enroll --relay`, the agent, `journal
//! --reconcile`): `POST /v1/challenge`, `POST /v1/enroll`, `GET /v1/enroll/<sha256>`. The same
//! HTTP policy as CENTAGATE's client (TLS roots and `relay_ca_file`, timeouts, proxies, no
//! redirects, bounded answers); no admin secret ever travels this way.
//!
//! Owns: those calls and reading their answers, refusals included. Does not own: the order of
//! an enrollment (see `enroll`) or what the relay decides (see `relay`).

use super::client::{classify, content_type, http_client, read_limited, snippet, HttpOptions};
use super::ApiError;
use serde::Deserialize;

/// A challenge as the relay issued it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct RelayChallenge {
    pub challenge_id: String,
    pub challenge: String,
    /// The relay URL the statement must name.
    pub relay: String,
    pub expires_ms: i64,
}

/// The relay's answer to an enrollment (or a lookup): CENTAGATE's outcome as the relay saw it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct RelayAnswer {
    /// `registered`, `rejected`, `failed`, or (a lookup only) `unknown`.
    pub outcome: String,
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize)]
struct Refusal {
    error: String,
    #[serde(default)]
    message: String,
}

/// A client for one relay.
pub struct RelayClient {
    http: reqwest::Client,
    base: String,
    timeout: std::time::Duration,
}

impl RelayClient {
    /// `url`: the relay's base URL (`https://relay.example`, or with a path prefix).
    pub fn new(url: &str, opts: &HttpOptions) -> Result<Self, ApiError> {
        let parsed = super::client::checked_url(url, "--relay")?;
        Ok(Self {
            http: http_client(opts)?,
            base: parsed.as_str().trim_end_matches('/').to_string(),
            timeout: opts.timeout,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The enrollment URL, for messages and the journal.
    pub fn enroll_url(&self) -> String {
        format!("{}/v1/enroll", self.base)
    }

    pub async fn challenge(&self, username: &str) -> Result<RelayChallenge, ApiError> {
        let url = format!("{}/v1/challenge", self.base);
        let body = serde_json::to_vec(&serde_json::json!({ "username": username }))
            .map_err(|e| ApiError::Config(e.to_string()))?;
        let (status, bytes) = self.send(self.http.post(&url).body(body), &url).await?;
        parse_ok(&url, status, &bytes)
    }

    /// Sends the PKCS#7 (DER) for `username`.
    pub async fn enroll(&self, username: &str, pkcs7: &[u8]) -> Result<RelayAnswer, ApiError> {
        use base64::Engine;
        let url = self.enroll_url();
        let body = serde_json::to_vec(&serde_json::json!({
            "username": username,
            "signature": base64::engine::general_purpose::STANDARD.encode(pkcs7),
        }))
        .map_err(|e| ApiError::Config(e.to_string()))?;
        let (status, bytes) = self.send(self.http.post(&url).body(body), &url).await?;
        parse_ok(&url, status, &bytes)
    }

    /// The stored outcome of the request whose PKCS#7 has this SHA-256: `None` when it never
    /// reached CENTAGATE through the relay (404); `outcome` `unknown` while not settled (202).
    pub async fn lookup(&self, sha256: &str) -> Result<Option<RelayAnswer>, ApiError> {
        let url = format!("{}/v1/enroll/{sha256}", self.base);
        match self.send(self.http.get(&url), &url).await {
            // The relay's own "never reached CENTAGATE" — not a proxy's 404 page.
            Err(ApiError::RelayRefused {
                status: 404, rule, ..
            }) if rule == "not_found" => Ok(None),
            Err(e) => Err(e),
            Ok((status, bytes)) => parse_ok(&url, status, &bytes).map(Some),
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let resp = req
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .send()
            .await
            .map_err(|e| classify(url, self.timeout, e.without_url()))?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(ApiError::Redirect { status, location });
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let ct = content_type(&resp);
        let (bytes, truncated) = read_limited(url, self.timeout, resp).await?;
        if status >= 400 {
            return Err(match serde_json::from_slice::<Refusal>(&bytes) {
                Ok(r) if !truncated && ct.starts_with("application/json") => {
                    ApiError::RelayRefused {
                        status,
                        rule: r.error,
                        message: r.message,
                        retry_after,
                    }
                }
                _ => ApiError::Protocol {
                    status,
                    content_type: ct,
                    snippet: snippet(&bytes, truncated),
                },
            });
        }
        Ok((status, bytes))
    }
}

fn parse_ok<T: for<'de> Deserialize<'de>>(
    url: &str,
    status: u16,
    bytes: &[u8],
) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Protocol {
        status,
        content_type: "application/json".into(),
        snippet: format!(
            "not the relay protocol's answer from {url} ({}): {}",
            crate::text::cap(&e.to_string(), 120),
            snippet(bytes, false)
        ),
    })
}
