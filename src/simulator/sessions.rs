//! The simulator's admin sessions: the App that authorises logins, admin accounts with
//! passwords, password login, logout, and sessions that end after an idle timeout — judged with
//! the simulator's own code (its own hmac), never the client's.
//!
//! Owns: the live sessions and the login-side rules. Does not own: registrations (see `rules`).

use crate::api::{CODE_BAD_API_SIGNATURE, CODE_INVALID_INPUT, CODE_REQUEST_EXPIRED, CODE_SUCCESS};
use crate::secret::AppSecret;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const CODE_INVALID_CREDENTIAL: i64 = 23001;

/// An admin account in the users file: `[[admin]]` with `name`, `password`, `role`, `group`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAccount {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default = "company_admin")]
    pub role: i64,
    #[serde(default)]
    pub group: Option<String>,
    /// The SHA-256 (hex) of the certificate this admin logs in with (a PKCS#7 login).
    #[serde(default)]
    pub cert_sha256: Option<String>,
}

fn company_admin() -> i64 {
    2
}

struct Session {
    admin: String,
    auth_token: String,
    secret_code: String,
    last_used: Instant,
}

/// What a cenToken is to the server.
#[derive(Debug, PartialEq, Eq)]
pub enum CenTokenIs {
    /// Made from a live session of this admin (now used again).
    Live,
    /// Made from a session that timed out or was ended.
    Expired,
    Unknown,
}

pub struct Sessions {
    /// The App's integrationKey and secretKey; without one, no login is possible.
    pub app: Option<(String, AppSecret)>,
    pub admins: Vec<AdminAccount>,
    pub timeout: Duration,
    /// Fault: answer every login with this code.
    pub force_login_code: Option<i64>,
    live: Vec<Session>,
    ended: Vec<(String, String, String)>,
    /// Random strings issued for PKI logins and not used yet.
    issued: Vec<String>,
}

fn hex_hmac(key: &str, parts: &[&str]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("any key");
    for p in parts {
        mac.update(p.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

type Judged = (i64, String, serde_json::Value);

impl Sessions {
    pub fn new(app: Option<(String, AppSecret)>, admins: Vec<AdminAccount>) -> Self {
        Self {
            app,
            admins,
            timeout: Duration::from_secs(30 * 60),
            force_login_code: None,
            live: Vec::new(),
            ended: Vec::new(),
            issued: Vec::new(),
        }
    }

    fn expire_idle(&mut self) {
        let timeout = self.timeout;
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.live)
            .into_iter()
            .partition(|s| s.last_used.elapsed() > timeout);
        self.live = kept;
        self.ended.extend(
            gone.into_iter()
                .map(|s| (s.admin, s.auth_token, s.secret_code)),
        );
    }

    /// Opens a session for `a` after a successful login; its answer's `object`.
    fn open(&mut self, a: AdminAccount) -> serde_json::Value {
        let (auth_token, secret_code) = (random_hex(16), random_hex(16));
        self.live.push(Session {
            admin: a.name,
            auth_token: auth_token.clone(),
            secret_code: secret_code.clone(),
            last_used: Instant::now(),
        });
        serde_json::json!({"authToken": auth_token, "secretCode": secret_code,
            "sessionTimeout": self.timeout.as_millis() as u64,
            "role": a.role, "groupId": a.group.unwrap_or_default(), "multiStepAuth": false})
    }

    /// Ends every session (a fault: the server restarted, or an operator logged everyone out).
    pub fn end_all(&mut self) {
        for s in std::mem::take(&mut self.live) {
            self.ended.push((s.admin, s.auth_token, s.secret_code));
        }
    }

    /// Whether `cen_token` was made from a session of `admin`.
    pub fn cen_token(&mut self, admin: &str, cen_token: &str) -> CenTokenIs {
        self.expire_idle();
        let matches =
            |a: &str, at: &str, sc: &str| a == admin && hex_hmac(sc, &[admin, at]) == cen_token;
        if let Some(s) = self
            .live
            .iter_mut()
            .find(|s| matches(&s.admin, &s.auth_token, &s.secret_code))
        {
            s.last_used = Instant::now();
            return CenTokenIs::Live;
        }
        if self.ended.iter().any(|(a, at, sc)| matches(a, at, sc)) {
            return CenTokenIs::Expired;
        }
        CenTokenIs::Unknown
    }

    /// The fields of a login-side body, all strings; the hmac and the timestamp checked.
    fn fields(
        &self,
        body: &[u8],
        names: &[&str],
        hmac_of: &[&str],
    ) -> Result<Vec<String>, (i64, String)> {
        let v: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| (CODE_INVALID_INPUT, "Invalid Input: not JSON".to_string()))?;
        let get = |n: &str| match v.get(n) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(x)) => Some(x.to_string()),
            _ => None,
        };
        let Some((key, secret)) = &self.app else {
            return Err((
                CODE_INVALID_INPUT,
                "Invalid Input: no App is registered".into(),
            ));
        };
        if get("integrationKey").as_deref() != Some(key.as_str()) {
            return Err((CODE_BAD_API_SIGNATURE, "Invalid API signature".into()));
        }
        let ts = get("unixTimestamp")
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or((
                CODE_INVALID_INPUT,
                "Invalid Input: unixTimestamp".to_string(),
            ))?;
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
        )
        .unwrap_or(i64::MAX);
        if now.checked_sub(ts).is_none_or(|d| d.unsigned_abs() > 300) {
            return Err((CODE_REQUEST_EXPIRED, "Request expired".into()));
        }
        let parts: Vec<String> = hmac_of.iter().map(|n| get(n).unwrap_or_default()).collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        if get("hmac").as_deref() != Some(hex_hmac(secret.expose(), &refs).as_str()) {
            return Err((CODE_BAD_API_SIGNATURE, "Invalid API signature".into()));
        }
        names
            .iter()
            .map(|n| get(n).ok_or((CODE_INVALID_INPUT, format!("Invalid Input: {n}"))))
            .collect()
    }

    /// `auth/authBasic`. The record never holds the password or the session's secrets.
    pub fn login_password(&mut self, body: &[u8]) -> Judged {
        let mut record = serde_json::json!({"login": "password"});
        let fields = self.fields(
            body,
            &["username", "password"],
            &["username", "password", "integrationKey", "unixTimestamp"],
        );
        let (code, message, object) = match fields {
            Err((code, m)) => (code, m, serde_json::Value::Null),
            Ok(f) => {
                record["admin"] = serde_json::json!(f[0]);
                let account = self
                    .admins
                    .iter()
                    .find(|a| a.name == f[0] && a.password.as_deref() == Some(f[1].as_str()))
                    .cloned();
                match (self.force_login_code, account) {
                    (Some(code), _) => (
                        code,
                        format!("Forced login answer {code}"),
                        serde_json::Value::Null,
                    ),
                    (None, None) => (
                        CODE_INVALID_CREDENTIAL,
                        "Invalid credential".into(),
                        serde_json::Value::Null,
                    ),
                    (None, Some(a)) => (CODE_SUCCESS, "Success".into(), self.open(a)),
                }
            }
        };
        record["answer_code"] = serde_json::json!(code);
        (
            code,
            message,
            serde_json::json!({"object": object, "record": record}),
        )
    }

    /// `requestRandomString`: a single-use string for a PKI login.
    pub fn random_string(&mut self, body: &[u8]) -> Judged {
        let fields = self.fields(
            body,
            &["username"],
            &["username", "integrationKey", "unixTimestamp"],
        );
        let (code, message, object) = match fields {
            Err((code, m)) => (code, m, serde_json::Value::Null),
            Ok(_) => {
                let s = random_hex(16);
                self.issued.push(s.clone());
                (
                    CODE_SUCCESS,
                    "Success".into(),
                    serde_json::json!({"randomString": s}),
                )
            }
        };
        let record = serde_json::json!({"random_string": true, "answer_code": code});
        (
            code,
            message,
            serde_json::json!({"object": object, "record": record}),
        )
    }

    /// `authPkiPkcs7`: an attached PKCS#7 over an issued random string, by the certificate of
    /// an admin account (judged with the simulator's own verifier).
    pub fn login_pkcs7(&mut self, body: &[u8]) -> Judged {
        use base64::Engine;
        let mut record = serde_json::json!({"login": "pkcs7"});
        let fields = self.fields(
            body,
            &["username", "signature", "plainText"],
            &[
                "username",
                "signature",
                "algorithm",
                "plainText",
                "integrationKey",
                "unixTimestamp",
            ],
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let outcome = fields.and_then(|f| {
            record["admin"] = serde_json::json!(f[0]);
            let bad = |m: &str| (CODE_INVALID_CREDENTIAL, m.to_string());
            let der = b64
                .decode(&f[1])
                .map_err(|_| bad("signature is not base64"))?;
            let plain = b64
                .decode(&f[2])
                .map_err(|_| bad("plainText is not base64"))?;
            let judged = super::judge::judge(&der).map_err(|e| bad(&format!("PKCS#7: {e}")))?;
            if judged.content != plain {
                return Err(bad("the PKCS#7 does not sign plainText"));
            }
            let plain = String::from_utf8(plain).map_err(|_| bad("plainText"))?;
            let Some(i) = self.issued.iter().position(|s| *s == plain) else {
                return Err(bad("the random string was not issued, or was used already"));
            };
            self.issued.remove(i);
            let cert = der::Encode::to_der(&judged.signer).unwrap_or_default();
            let fp = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&cert));
            self.admins
                .iter()
                .find(|a| {
                    a.name == f[0]
                        && a.cert_sha256
                            .as_deref()
                            .is_some_and(|c| c.eq_ignore_ascii_case(&fp))
                })
                .cloned()
                .ok_or_else(|| bad("Invalid credential"))
        });
        let (code, message, object) = match outcome {
            Err((code, m)) => (code, m, serde_json::Value::Null),
            Ok(a) => (CODE_SUCCESS, "Success".into(), self.open(a)),
        };
        record["answer_code"] = serde_json::json!(code);
        (
            code,
            message,
            serde_json::json!({"object": object, "record": record}),
        )
    }

    /// `auth/logout`: ends the session of that authToken.
    pub fn logout(&mut self, body: &[u8]) -> Judged {
        let mut record = serde_json::json!({"logout": true});
        let fields = self.fields(
            body,
            &["username", "authToken"],
            &["username", "integrationKey", "unixTimestamp", "authToken"],
        );
        let (code, message) = match fields {
            Err(e) => e,
            Ok(f) => {
                record["admin"] = serde_json::json!(f[0]);
                match self
                    .live
                    .iter()
                    .position(|s| s.admin == f[0] && s.auth_token == f[1])
                {
                    Some(i) => {
                        let s = self.live.remove(i);
                        self.ended.push((s.admin, s.auth_token, s.secret_code));
                        (CODE_SUCCESS, "Success".into())
                    }
                    None => (CODE_INVALID_CREDENTIAL, "No such session".into()),
                }
            }
        };
        record["answer_code"] = serde_json::json!(code);
        (
            code,
            message,
            serde_json::json!({"object": serde_json::Value::Null, "record": record}),
        )
    }
}
