//! The login side of CENTAGATE (see the contract's "Admin sessions"): the App's hmac over each
//! login-side body, the password login, the random string and the PKCS#7 login, and logout —
//! in either the current documents' `/v2` paths or the 2018 manual's.
//!
//! Owns: those bodies, their paths and reading a login's answer into secret types. Does not own:
//! when to log in, keeping a session or what to do with a refusal (see `enroll::session`).

use super::{ApiError, CentagateClient};
use crate::secret::{AdminPassword, AdminSecrets, AppSecret, AuthToken, SecretCode};
use hmac::{Hmac, Mac};

/// Which documents' paths the server follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthApi {
    /// The current developer documentation: `/v2/CentagateWS/...` for the login calls.
    #[default]
    V2,
    /// The 2018 API manual: no `/v2`.
    Y2018,
}

impl std::str::FromStr for AuthApi {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v2" => Ok(Self::V2),
            "2018" => Ok(Self::Y2018),
            _ => Err(format!("unknown auth_api '{s}': use v2 or 2018")),
        }
    }
}

impl AuthApi {
    fn prefix(self) -> &'static str {
        match self {
            Self::V2 => "/v2",
            Self::Y2018 => "",
        }
    }

    pub fn password_login(self) -> String {
        format!("{}/CentagateWS/webresources/auth/authBasic", self.prefix())
    }

    pub fn pkcs7_login(self) -> String {
        format!(
            "{}/CentagateWS/webresources/auth/authPkiPkcs7",
            self.prefix()
        )
    }

    pub fn random_string(self) -> String {
        match self {
            Self::V2 => "/v2/CentagateWS/webresources/req/requestRandomString".into(),
            Self::Y2018 => "/CentagateWS/webresources/auth/requestRandomString".into(),
        }
    }
}

/// Logout has no `/v2` in either document.
pub const LOGOUT_PATH: &str = "/CentagateWS/webresources/auth/logout";

impl AuthApi {
    /// The session check's method and path prefix (the admin and the cenToken follow): `PUT
    /// …/session/check/` in the current documents, `GET …/auth/sessioncheck/` in the 2018 manual.
    pub fn session_check(self) -> (reqwest::Method, &'static str) {
        match self {
            Self::V2 => (
                reqwest::Method::PUT,
                "/CentagateWS/webresources/session/check/",
            ),
            Self::Y2018 => (
                reqwest::Method::GET,
                "/CentagateWS/webresources/auth/sessioncheck/",
            ),
        }
    }
}

/// The App registered in CENTAGATE that authorises login calls.
#[derive(Clone, Debug)]
pub struct App {
    /// The integrationKey: an identifier, not a secret.
    pub key: String,
    pub secret: AppSecret,
}

/// Lowercase hex HMAC-SHA256 (key: the App's secretKey as UTF-8) over the concatenated values.
pub fn hmac(secret: &AppSecret, values: &[&str]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    for v in values {
        mac.update(v.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// A certificate the server has bound to a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundCert {
    pub serial: String,
    /// SHA-1 of the certificate, hex as the server prints it.
    pub sha1: String,
    pub subject: String,
    pub issuer: String,
    pub revoked: bool,
    /// Milliseconds since the epoch.
    pub valid_from: Option<i64>,
    pub valid_to: Option<i64>,
}

impl BoundCert {
    /// Whether this is the certificate with SHA-1 `sha1` (hex, compared without separators or
    /// case).
    pub fn is(&self, sha1: &str) -> bool {
        let norm = |s: &str| -> String {
            s.chars()
                .filter(|c| c.is_ascii_hexdigit())
                .map(|c| c.to_ascii_lowercase())
                .collect()
        };
        !sha1.is_empty() && norm(&self.sha1) == norm(sha1)
    }
}

/// What a login gives: the session's secrets and what the server says about it.
#[derive(Clone, Debug)]
pub struct LoggedIn {
    pub secrets: AdminSecrets,
    /// The idle timeout, when the server says it.
    pub session_timeout_ms: Option<u64>,
    pub role: Option<i64>,
    pub group: Option<String>,
}

fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A login's answer: code 0 with an authToken and a secretCode, else the refusal explained.
fn logged_in(mut answer: super::Answer) -> Result<LoggedIn, ApiError> {
    let result = read_login(&answer);
    wipe(&mut answer.object);
    result
}

fn read_login(answer: &super::Answer) -> Result<LoggedIn, ApiError> {
    if answer.code != super::CODE_SUCCESS {
        return Err(ApiError::LoginRefused {
            code: answer.code,
            explanation: explain_login(answer.code, &answer.message),
        });
    }
    let o = &answer.object;
    let auth = o.get("authToken").and_then(text).unwrap_or_default();
    let code = o.get("secretCode").and_then(text).unwrap_or_default();
    if code.is_empty() {
        return Err(ApiError::LoginRefused {
            code: answer.code,
            explanation: "this account needs multi-step authentication, which tokenroll cannot \
                          do — use an admin account without it"
                .into(),
        });
    }
    if auth.is_empty() {
        return Err(ApiError::LoginRefused {
            code: answer.code,
            explanation: "the server's login answer holds no authToken; check --server and \
                          auth_api (v2 or 2018)"
                .into(),
        });
    }
    Ok(LoggedIn {
        secrets: AdminSecrets {
            auth_token: AuthToken::new(auth),
            secret_code: SecretCode::new(code),
        },
        session_timeout_ms: o
            .get("sessionTimeout")
            .and_then(text)
            .and_then(|t| t.parse().ok()),
        role: o.get("role").and_then(text).and_then(|t| t.parse().ok()),
        group: o.get("groupId").and_then(text).filter(|g| !g.is_empty()),
    })
}

/// What a login-side code means and what to do next.
pub fn explain_login(code: i64, message: &str) -> String {
    let advice = match code {
        23001 => {
            "the admin's username or password (or certificate) was refused; check them — \
                  tokenroll does not try again by itself"
        }
        23007 => "the authentication is still pending on the server; complete it, then try again",
        23012 => "the admin's certificate is revoked; use another admin token",
        23017 => "this login method is not enabled for the admin account; choose another --login",
        23020 => "this machine's address is not in the account's trusted IP list",
        23021 => "the admin's group may not log in through this App",
        super::CODE_BAD_API_SIGNATURE => "the App secret does not match the App key (app_key)",
        super::CODE_REQUEST_EXPIRED => {
            "this machine's clock is off: the login's timestamp was refused; fix the clock"
        }
        super::CODE_PERMISSION => {
            "the App or the account may not log in; ask a CENTAGATE administrator"
        }
        super::CODE_USER_NOT_FOUND => "no such admin account; check --admin",
        super::CODE_USER_INACTIVE => "the admin account is not active",
        _ => return format!("the login was refused with code {code}: {message}"),
    };
    format!("the login was refused (code {code}): {advice}")
}

impl CentagateClient {
    fn login_url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// The random string a PKI login signs (single-use, from the server).
    pub async fn random_string(
        &self,
        api: AuthApi,
        app: &App,
        admin: &str,
        unix_seconds: i64,
    ) -> Result<String, ApiError> {
        let ts = unix_seconds.to_string();
        let mac = hmac(&app.secret, &[admin, &app.key, &ts]);
        let body = serde_json::json!({
            "username": admin, "integrationKey": app.key, "unixTimestamp": ts, "hmac": mac,
        });
        let answer = self
            .call(
                reqwest::Method::POST,
                &self.login_url(&api.random_string()),
                serde_json::to_vec(&body).expect("a JSON value serializes"),
            )
            .await?;
        if answer.code != super::CODE_SUCCESS {
            return Err(ApiError::LoginRefused {
                code: answer.code,
                explanation: explain_login(answer.code, &answer.message),
            });
        }
        answer
            .object
            .get("randomString")
            .and_then(text)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::LoginRefused {
                code: answer.code,
                explanation: "the server's random string answer holds no randomString".into(),
            })
    }

    /// The PKCS#7 login: `pkcs7` signs `plain` (the random string) with the admin's own key.
    #[allow(clippy::too_many_arguments)]
    pub async fn login_pkcs7(
        &self,
        api: AuthApi,
        app: &App,
        admin: &str,
        pkcs7: &[u8],
        algorithm: &str,
        plain: &[u8],
        unix_seconds: i64,
    ) -> Result<LoggedIn, ApiError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (signature, plain_text) = (b64.encode(pkcs7), b64.encode(plain));
        let ts = unix_seconds.to_string();
        let mac = hmac(
            &app.secret,
            &[admin, &signature, algorithm, &plain_text, &app.key, &ts],
        );
        let body = serde_json::json!({
            "username": admin, "signature": signature, "algorithm": algorithm,
            "plainText": plain_text, "integrationKey": app.key, "unixTimestamp": ts, "hmac": mac,
        });
        tracing::debug!(admin, "PKCS#7 login");
        let answer = self
            .call_secret(
                reqwest::Method::POST,
                &self.login_url(&api.pkcs7_login()),
                serde_json::to_vec(&body).expect("a JSON value serializes"),
            )
            .await?;
        logged_in(answer)
    }

    /// The password login.
    pub async fn login_password(
        &self,
        api: AuthApi,
        app: &App,
        admin: &str,
        password: &AdminPassword,
        unix_seconds: i64,
    ) -> Result<LoggedIn, ApiError> {
        let ts = unix_seconds.to_string();
        let mac = hmac(&app.secret, &[admin, password.expose(), &app.key, &ts]);
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'b> {
            username: &'b str,
            password: &'b str,
            integration_key: &'b str,
            unix_timestamp: &'b str,
            hmac: &'b str,
        }
        // Serialised straight into the buffer `call` zeroizes: no other copy of the password.
        let body = serde_json::to_vec(&Body {
            username: admin,
            password: password.expose(),
            integration_key: &app.key,
            unix_timestamp: &ts,
            hmac: &mac,
        })
        .expect("a login body serializes");
        tracing::debug!(admin, "password login");
        let answer = self
            .call_secret(
                reqwest::Method::POST,
                &self.login_url(&api.password_login()),
                body,
            )
            .await?;
        logged_in(answer)
    }

    /// Asks the server whether the session of `secrets` is alive. The cenToken is in the URL:
    /// no message names that URL.
    pub async fn session_check(
        &self,
        api: AuthApi,
        admin: &str,
        secrets: &AdminSecrets,
    ) -> Result<super::Answer, ApiError> {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let (method, prefix) = api.session_check();
        let admin_seg = utf8_percent_encode(admin, NON_ALPHANUMERIC).to_string();
        let cen = super::cen_token(admin, secrets);
        let url = zeroize::Zeroizing::new(format!(
            "{}{prefix}{admin_seg}/{}",
            self.origin(),
            cen.expose()
        ));
        let shown = format!("{}{prefix}{admin_seg}/<cenToken>", self.origin());
        self.call_shown(method, &url, &shown, Vec::new(), false)
            .await
    }

    /// The certificates bound to `user` (`user/auth/list`), for reconciling a lost answer and
    /// telling our own binding from another's.
    pub async fn bound_certificates(
        &self,
        admin: &str,
        user: &str,
        secrets: &AdminSecrets,
    ) -> Result<Vec<BoundCert>, ApiError> {
        let answer = self
            .user_call(super::BOUND_LIST_PATH, admin, user, None, secrets)
            .await?;
        if answer.code != super::CODE_SUCCESS {
            return Err(ApiError::LoginRefused {
                code: answer.code,
                explanation: format!(
                    "the server would not list what is bound to {user} (code {}): {}",
                    answer.code, answer.message
                ),
            });
        }
        let list = answer
            .object
            .get("certList")
            .and_then(|l| l.as_array())
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .map(|c| BoundCert {
                serial: c.get("sn").and_then(text).unwrap_or_default(),
                sha1: c.get("fingerprint").and_then(text).unwrap_or_default(),
                subject: c.get("subjectDn").and_then(text).unwrap_or_default(),
                issuer: c.get("issuerDn").and_then(text).unwrap_or_default(),
                revoked: c.get("revoked").is_some_and(|r| {
                    r.as_bool() == Some(true) || text(r).as_deref() == Some("true")
                }),
                valid_from: c
                    .get("validFrom")
                    .and_then(text)
                    .and_then(|t| t.parse().ok()),
                valid_to: c.get("validTo").and_then(text).and_then(|t| t.parse().ok()),
            })
            .collect())
    }

    /// The user's PKI token status (`token/getStatus`, type 4): `None` when the user has none,
    /// else 1 Pending, 2 Valid, 3 Temp Deactivated, 4 Deactivated, 5 Suspended.
    pub async fn token_status(
        &self,
        admin: &str,
        user: &str,
        secrets: &AdminSecrets,
    ) -> Result<Option<i64>, ApiError> {
        let answer = self
            .user_call(super::TOKEN_STATUS_PATH, admin, user, Some("4"), secrets)
            .await?;
        if answer.code != super::CODE_SUCCESS {
            return Err(ApiError::LoginRefused {
                code: answer.code,
                explanation: format!(
                    "the server would not tell {user}'s token status (code {}): {}",
                    answer.code, answer.message
                ),
            });
        }
        Ok(text(&answer.object).and_then(|t| t.trim().parse().ok()))
    }

    /// Unbinds the user's PKI token (`token/unregisterActiveToken`, type 4). The answer as the
    /// server gave it.
    pub async fn unbind(
        &self,
        admin: &str,
        user: &str,
        secrets: &AdminSecrets,
    ) -> Result<super::Answer, ApiError> {
        self.user_call(super::UNBIND_PATH, admin, user, Some("4"), secrets)
            .await
    }

    /// `PUT {path}{admin}` with `username`, the token `type` when given, and the cenToken.
    async fn user_call(
        &self,
        path: &str,
        admin: &str,
        user: &str,
        kind: Option<&str>,
        secrets: &AdminSecrets,
    ) -> Result<super::Answer, ApiError> {
        use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
        let url = format!(
            "{}{path}{}",
            self.origin(),
            utf8_percent_encode(admin, NON_ALPHANUMERIC)
        );
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'b> {
            username: &'b str,
            #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
            kind: Option<&'b str>,
            cen_token: &'b str,
        }
        let cen = super::cen_token(admin, secrets);
        let body = serde_json::to_vec(&Body {
            username: user,
            kind,
            cen_token: cen.expose(),
        })
        .expect("a body of strings serializes");
        self.call(reqwest::Method::PUT, &url, body).await
    }

    /// Ends the session (the 2018 manual's call; a server without it answers an error, which
    /// the caller only logs).
    pub async fn logout(
        &self,
        app: &App,
        admin: &str,
        auth_token: &AuthToken,
        unix_seconds: i64,
    ) -> Result<(), ApiError> {
        let ts = unix_seconds.to_string();
        let mac = hmac(&app.secret, &[admin, &app.key, &ts, auth_token.expose()]);
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'b> {
            username: &'b str,
            integration_key: &'b str,
            unix_timestamp: &'b str,
            auth_token: &'b str,
            hmac: &'b str,
        }
        let body = serde_json::to_vec(&Body {
            username: admin,
            integration_key: &app.key,
            unix_timestamp: &ts,
            auth_token: auth_token.expose(),
            hmac: &mac,
        })
        .expect("a logout body serializes");
        let answer = self
            .call_secret(reqwest::Method::POST, &self.login_url(LOGOUT_PATH), body)
            .await?;
        match answer.code {
            super::CODE_SUCCESS => Ok(()),
            code => Err(ApiError::LoginRefused {
                code,
                explanation: format!("the logout was refused with code {code}"),
            }),
        }
    }
}

/// Overwrites every string in a JSON value (a login answer's `object` holds the session's
/// secrets) before it is dropped.
fn wipe(v: &mut serde_json::Value) {
    use zeroize::Zeroize;
    match v {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(a) => a.iter_mut().for_each(wipe),
        serde_json::Value::Object(o) => o.values_mut().for_each(wipe),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract's worked example.
    #[test]
    fn the_password_login_hmac_matches_the_contract() {
        let secret = AppSecret::new("SK-demo".into());
        assert_eq!(
            hmac(&secret, &["helpdesk", "Pa55word", "IK-123", "1733100000"]),
            "f8e697cc2b5fc782829ed14f6d205800e5c3f87195d8432a7443cdc7df581ff2"
        );
    }

    #[test]
    fn a_login_answer_becomes_secrets_or_a_refusal() {
        let ok = super::super::Answer {
            code: 0,
            message: "Success".into(),
            object: serde_json::json!({"authToken": "AT-9", "secretCode": "SC-9",
                "sessionTimeout": 1800000, "role": "2", "groupId": "g1"}),
        };
        let l = logged_in(ok).unwrap();
        assert_eq!(l.secrets.auth_token.expose(), "AT-9");
        assert_eq!((l.session_timeout_ms, l.role), (Some(1_800_000), Some(2)));
        assert!(!format!("{l:?}").contains("SC-9"), "Debug redacts");
        let multi = super::super::Answer {
            code: 0,
            message: "Success".into(),
            object: serde_json::json!({"authToken": "AT-9", "secretCode": ""}),
        };
        let e = logged_in(multi).unwrap_err().to_string();
        assert!(e.contains("multi-step"), "{e}");
        let wrong = super::super::Answer {
            code: 23001,
            message: "Invalid credential".into(),
            object: serde_json::Value::Null,
        };
        let e = logged_in(wrong).unwrap_err().to_string();
        assert!(
            e.contains("23001") && e.contains("does not try again"),
            "{e}"
        );
        assert!(explain_login(23022, "").contains("App secret does not match"));
        assert!(explain_login(23023, "").contains("clock"));
    }
}
