//! The contract as the simulator judges it, in the order a strict server would.

use crate::api::{
    CODE_BAD_API_SIGNATURE, CODE_CRYPTO, CODE_INVALID_INPUT, CODE_PERMISSION, CODE_SUCCESS,
    CODE_USER_BOUND, CODE_USER_INACTIVE, CODE_USER_NOT_FOUND, TIMESTAMP_WINDOW_MS,
};
use crate::secret::AdminSecrets;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Digest;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_cert::Certificate;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    Active,
    Inactive,
    Bound,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    #[serde(default = "active")]
    pub state: UserState,
}

fn active() -> UserState {
    UserState::Active
}

/// The users file: `[[user]]` tables with `name` and `state` (active, inactive, bound), and
/// `[[admin]]` tables for the accounts that may log in (`name`, `password`, `role`, `group`).
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Users {
    #[serde(default)]
    pub user: Vec<User>,
    #[serde(default)]
    pub admin: Vec<super::sessions::AdminAccount>,
}

impl Users {
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

pub struct Rules {
    pub admin: String,
    pub secrets: AdminSecrets,
    pub users: BTreeMap<String, UserState>,
    /// The server expects seconds rather than milliseconds (as the vendor's samples send).
    pub timestamp_in_seconds: bool,
    /// Issuers the tenant trusts; empty trusts any certificate.
    pub trust: Vec<Certificate>,
    /// The server's clock minus the machine's, in milliseconds (a fault for the tests).
    pub clock_offset_ms: i64,
    /// Sessions opened by admin logins, besides the static secrets.
    pub sessions: super::sessions::Sessions,
    /// The certificate each user was bound to here (users bound in the users file have one
    /// the simulator never saw).
    pub bound: BTreeMap<String, serde_json::Value>,
}

impl Rules {
    pub fn new(admin: String, secrets: AdminSecrets, users: Users) -> Self {
        Self {
            admin,
            secrets,
            users: users.user.into_iter().map(|u| (u.name, u.state)).collect(),
            timestamp_in_seconds: false,
            trust: Vec::new(),
            clock_offset_ms: 0,
            sessions: super::sessions::Sessions::new(None, users.admin),
            bound: BTreeMap::new(),
        }
    }

    fn expected_cen_token(&self, admin: &str) -> String {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(self.secrets.secret_code.expose().as_bytes())
                .expect("any key");
        mac.update(format!("{admin}{}", self.secrets.auth_token.expose()).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// What `cen_token` is for `admin`: the static secrets' (always live), or a session's.
    pub fn session_state(&mut self, admin: &str, cen_token: &str) -> super::sessions::CenTokenIs {
        if admin == self.admin && cen_token == self.expected_cen_token(admin) {
            return super::sessions::CenTokenIs::Live;
        }
        self.sessions.cen_token(admin, cen_token)
    }

    /// `user/auth/list/{admin}`: the certificates bound to `username`, for a live session.
    pub fn bound_list(&mut self, admin: &str, body: &[u8]) -> (i64, String, serde_json::Value) {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let (Some(user), Some(cen)) = (
            v.get("username").and_then(|u| u.as_str()),
            v.get("cenToken").and_then(|c| c.as_str()),
        ) else {
            return (
                CODE_INVALID_INPUT,
                "Invalid Input".into(),
                serde_json::Value::Null,
            );
        };
        match self.session_state(admin, cen) {
            super::sessions::CenTokenIs::Live => {}
            super::sessions::CenTokenIs::Expired => {
                return (
                    CODE_PERMISSION,
                    "Permission not allowed".into(),
                    serde_json::Value::Null,
                )
            }
            super::sessions::CenTokenIs::Unknown => {
                return (
                    CODE_BAD_API_SIGNATURE,
                    "Invalid API signature".into(),
                    serde_json::Value::Null,
                )
            }
        }
        let certs: Vec<serde_json::Value> = match self.users.get(user) {
            None => {
                return (
                    CODE_USER_NOT_FOUND,
                    "User not found".into(),
                    serde_json::Value::Null,
                )
            }
            Some(UserState::Bound) => self.bound.get(user).cloned().into_iter().collect(),
            Some(_) => vec![],
        };
        (
            CODE_SUCCESS,
            "Success".into(),
            serde_json::json!({"certList": certs, "tokenList": []}),
        )
    }

    /// `token/unregisterActiveToken/{admin}`: unbinds the user's PKI token.
    pub fn unbind(&mut self, admin: &str, body: &[u8]) -> (i64, String, serde_json::Value) {
        let (code, message, object) = self.bound_list(admin, body);
        if code != CODE_SUCCESS {
            return (code, message, object);
        }
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let user = v["username"].as_str().unwrap_or_default().to_string();
        if self.users.get(&user) != Some(&UserState::Bound) {
            return (29001, "Token not found".into(), serde_json::Value::Null);
        }
        self.users.insert(user.clone(), UserState::Active);
        self.bound.remove(&user);
        (CODE_SUCCESS, "Success".into(), serde_json::json!(""))
    }

    /// `token/update/token/status/{admin}`: sets the user's PKI token status (1-4).
    pub fn update_status(&mut self, admin: &str, body: &[u8]) -> (i64, String, serde_json::Value) {
        let (code, message, object) = self.bound_list(admin, body);
        if code != CODE_SUCCESS {
            return (code, message, object);
        }
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let user = v["username"].as_str().unwrap_or_default().to_string();
        let status = v["status"]
            .as_str()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| (1..=4).contains(s));
        let Some(status) = status else {
            return (
                CODE_INVALID_INPUT,
                "Invalid Input: status must be 1-4".into(),
                serde_json::Value::Null,
            );
        };
        match self.bound.get_mut(&user) {
            Some(c) => {
                c["status"] = serde_json::json!(status);
                (CODE_SUCCESS, "Success".into(), serde_json::json!(""))
            }
            None => (29001, "Token not found".into(), serde_json::Value::Null),
        }
    }

    /// `token/getStatus/{admin}`: the user's PKI token status ("" when the user has none).
    pub fn token_status(&mut self, admin: &str, body: &[u8]) -> (i64, String, serde_json::Value) {
        let (code, message, object) = self.bound_list(admin, body);
        if code != CODE_SUCCESS {
            return (code, message, object);
        }
        let status = object["certList"]
            .get(0)
            .and_then(|c| c.get("status"))
            .map_or(serde_json::json!(""), |s| serde_json::json!(s.to_string()));
        (CODE_SUCCESS, "Success".into(), status)
    }

    /// Judges one registration. Returns the code, the message and a record (never a secret).
    pub fn judge(
        &mut self,
        admin: &str,
        content_type: &str,
        body: &[u8],
    ) -> (i64, String, serde_json::Value) {
        let mut record = serde_json::json!({
            "time_ms": SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
            "admin": admin,
            "content_type": content_type,
        });
        let (code, msg) = self.judge_inner(admin, content_type, body, &mut record);
        (code, msg, record)
    }

    fn judge_inner(
        &mut self,
        admin: &str,
        content_type: &str,
        body: &[u8],
        record: &mut serde_json::Value,
    ) -> (i64, String) {
        let invalid = |m: &str| (CODE_INVALID_INPUT, format!("Invalid Input: {m}"));
        if !content_type
            .to_ascii_lowercase()
            .starts_with("application/json")
        {
            return invalid("Content-Type must be application/json");
        }
        let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(body)
        else {
            return invalid("body is not a JSON object");
        };
        // Every value as a JSON string (numbers are tolerated, and recorded as such).
        let mut field = |name: &str| -> Option<String> {
            let v = obj.get(name)?;
            record[format!("{name}_type")] =
                serde_json::json!(if v.is_string() { "string" } else { "other" });
            match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let fields: Vec<Option<String>> = [
            "username",
            "signature",
            "algorithm",
            "timestamp",
            "status",
            "cenToken",
        ]
        .iter()
        .map(|f| field(f))
        .collect();
        let [username, signature, algorithm, timestamp, status, cen_token] =
            <[Option<String>; 6]>::try_from(fields).expect("six fields");
        record["username"] = serde_json::json!(username);
        record["algorithm"] = serde_json::json!(algorithm);
        record["timestamp"] = serde_json::json!(timestamp);
        record["status"] = serde_json::json!(status);
        record["signature_len"] = serde_json::json!(signature.as_ref().map(|s| s.len()));
        // The PKCS#7 itself (no secret: a signature and a public certificate), so that tests
        // can cross-verify what reached the server with openssl.
        record["signature"] = serde_json::json!(signature);
        // The static secrets (the admin of `--admin`), or a session an admin login opened.
        let session = match cen_token.as_deref() {
            Some(c) if admin == self.admin && c == self.expected_cen_token(admin) => {
                super::sessions::CenTokenIs::Live
            }
            Some(c) => self.sessions.cen_token(admin, c),
            None => super::sessions::CenTokenIs::Unknown,
        };
        record["cen_token_valid"] = serde_json::json!(session == super::sessions::CenTokenIs::Live);

        let admin_known =
            admin == self.admin || self.sessions.admins.iter().any(|a| a.name == admin);
        if !admin_known {
            return (CODE_PERMISSION, "Permission not allowed".into());
        }
        let (Some(username), Some(signature), Some(timestamp), Some(status), Some(_)) =
            (username, signature, timestamp, status, cen_token)
        else {
            return invalid("a required field is missing");
        };
        match session {
            super::sessions::CenTokenIs::Live => {}
            // Undocumented; the contract's choice: the registration's own 10001.
            super::sessions::CenTokenIs::Expired => {
                record["session_expired"] = serde_json::json!(true);
                return (CODE_PERMISSION, "Permission not allowed".into());
            }
            super::sessions::CenTokenIs::Unknown => {
                return (CODE_BAD_API_SIGNATURE, "Invalid API signature".into())
            }
        }
        let Ok(ts) = timestamp.parse::<i64>() else {
            return invalid("timestamp is not an integer");
        };
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(i64::MAX)
        .saturating_add(self.clock_offset_ms);
        let ts_ms = if self.timestamp_in_seconds {
            ts.saturating_mul(1000)
        } else {
            ts
        };
        // Checked: a timestamp at either end of i64 is outside the window, never an overflow.
        let off_by = now.checked_sub(ts_ms).map(i64::unsigned_abs);
        if off_by.is_none_or(|d| d > TIMESTAMP_WINDOW_MS.unsigned_abs()) {
            return invalid("timestamp is outside the 5-minute window");
        }
        if !["1", "2", "3", "4"].contains(&status.as_str()) {
            return invalid("status must be 1-4");
        }
        if algorithm
            .as_deref()
            .is_some_and(|a| !["0", "1", "2", "3"].contains(&a))
        {
            return invalid("algorithm must be 0-3");
        }
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(signature.as_bytes()) else {
            return invalid("signature is not standard base64");
        };
        record["signature_sha256"] = serde_json::json!(hex::encode(sha2::Sha256::digest(&der)));
        let judged = match super::judge::judge(&der) {
            Ok(v) => v,
            Err(e) => return (CODE_CRYPTO, format!("Crypto error: {e}")),
        };
        record["signed_content"] = serde_json::json!(String::from_utf8_lossy(&judged.content));
        record["digest"] = serde_json::json!(judged.hash.name());
        record["signer_subject"] =
            serde_json::json!(judged.signer.tbs_certificate.subject.to_string());
        if let Some(code) = algorithm.as_deref() {
            if code != judged.hash.code() {
                return (
                    CODE_CRYPTO,
                    format!(
                        "Crypto error: algorithm {code} but the PKCS#7 uses {}",
                        judged.hash.name()
                    ),
                );
            }
        }
        if !self.trust.is_empty() && !super::judge::trusted(&judged.signer, &self.trust) {
            return (
                CODE_CRYPTO,
                "Crypto error: the certificate's issuer is not trusted".into(),
            );
        }
        match self.users.get(&username) {
            None => (CODE_USER_NOT_FOUND, "User not found".into()),
            Some(UserState::Inactive) => (CODE_USER_INACTIVE, "User is not active".into()),
            Some(UserState::Bound) => (CODE_USER_BOUND, "User already bound with a token".into()),
            Some(UserState::Active) => {
                let tbs = &judged.signer.tbs_certificate;
                let der = der::Encode::to_der(&judged.signer).unwrap_or_default();
                self.bound.insert(
                    username.clone(),
                    serde_json::json!({
                        "sn": hex::encode(tbs.serial_number.as_bytes()),
                        "fingerprint": hex::encode_upper(sha1::Sha1::digest(&der)),
                        "subjectDn": tbs.subject.to_string(),
                        "issuerDn": tbs.issuer.to_string(),
                        "revoked": false,
                        "validFrom": tbs.validity.not_before.to_unix_duration().as_millis() as u64,
                        "validTo": tbs.validity.not_after.to_unix_duration().as_millis() as u64,
                        "status": status.parse::<i64>().unwrap_or(1),
                    }),
                );
                self.users.insert(username, UserState::Bound);
                (CODE_SUCCESS, "Success".into())
            }
        }
    }
}

/// GET /challenge (JSON), /challenge/centagate (CENTAGATE style), /challenge/text (text/plain).
pub fn challenge_reply(path: &str) -> (&'static str, String) {
    let c = crate::challenge::local();
    match path.trim_end_matches('/') {
        "/challenge/centagate" => (
            "application/json",
            serde_json::json!({"code": 0, "message": "Success", "object": {"randomString": c}})
                .to_string(),
        ),
        "/challenge/text" => ("text/plain", format!("{c}\n")),
        _ => (
            "application/json",
            serde_json::json!({ "challenge": c }).to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{AuthToken, SecretCode};

    fn rules() -> Rules {
        let secrets = AdminSecrets {
            auth_token: AuthToken::new("AT-123".into()),
            secret_code: SecretCode::new("S3cr3t".into()),
        };
        Rules::new(
            "helpdesk".into(),
            secrets,
            Users::parse("[[user]]\nname = \"alice\"\n").unwrap(),
        )
    }

    fn body(pkcs7: &[u8], algorithm: &str, cen: &str) -> Vec<u8> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            .to_string();
        serde_json::json!({
            "username": "alice", "signature": base64::engine::general_purpose::STANDARD.encode(pkcs7),
            "algorithm": algorithm, "timestamp": now, "status": "1", "cenToken": cen,
        })
        .to_string()
        .into_bytes()
    }

    fn pkcs7() -> Vec<u8> {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let cert = crate::token::tests::software_cert("Alice", &key, 30);
        crate::cms::build_attached::<_, p256::ecdsa::DerSignature>(
            &key,
            &cert,
            b"c",
            crate::digest::DigestAlg::Sha256,
        )
        .unwrap()
    }

    const CEN: &str = "6f1433106d2466c15b4d324c3009375249e72162f223b63bd3e5d157e9813499";

    /// A timestamp at the ends of i64, in milliseconds or seconds, is refused as outside the
    /// window: no overflow, no panic.
    #[test]
    fn extreme_timestamps_are_outside_the_window() {
        let p = pkcs7();
        for seconds in [false, true] {
            let mut r = rules();
            r.timestamp_in_seconds = seconds;
            let cases = [
                (0, i64::MIN),
                (0, i64::MIN + 1),
                (0, -1),
                (0, i64::MAX),
                (i64::MAX, i64::MIN),
                (i64::MIN, i64::MAX),
                (i64::MIN, 0),
            ];
            for (offset, ts) in cases {
                r.clock_offset_ms = offset;
                let mut b: serde_json::Value = serde_json::from_slice(&body(&p, "1", CEN)).unwrap();
                b["timestamp"] = serde_json::json!(ts.to_string());
                let (code, message, _) =
                    r.judge("helpdesk", "application/json", b.to_string().as_bytes());
                assert_eq!(code, CODE_INVALID_INPUT, "{ts}: {message}");
                assert!(message.contains("window"), "{message}");
            }
        }
    }

    /// A bound user's token status reads back, changes (token/update/token/status) and goes
    /// with an unbinding.
    #[test]
    fn a_bound_users_status_can_be_read_changed_and_unbound() {
        let p = pkcs7();
        let mut r = rules();
        assert_eq!(
            r.judge("helpdesk", "application/json", &body(&p, "1", CEN))
                .0,
            CODE_SUCCESS
        );
        let q =
            serde_json::json!({"username": "alice", "type": "4", "cenToken": CEN, "status": "3"})
                .to_string();
        let q = q.as_bytes();
        assert_eq!(
            r.token_status("helpdesk", q),
            (CODE_SUCCESS, "Success".into(), serde_json::json!("1"))
        );
        assert_eq!(r.update_status("helpdesk", q).0, CODE_SUCCESS);
        assert_eq!(r.token_status("helpdesk", q).2, serde_json::json!("3"));
        assert_eq!(r.unbind("helpdesk", q).0, CODE_SUCCESS);
        assert_eq!(r.token_status("helpdesk", q).2, serde_json::json!(""));
        assert_eq!(
            r.update_status("helpdesk", q).0,
            29001,
            "nothing bound any more"
        );
    }

    #[test]
    fn judges_in_contract_order() {
        let p = pkcs7();
        let mut r = rules();
        assert_eq!(
            r.judge("helpdesk", "text/plain", &body(&p, "1", CEN)).0,
            CODE_INVALID_INPUT
        );
        assert_eq!(
            r.judge("other", "application/json", &body(&p, "1", CEN)).0,
            CODE_PERMISSION
        );
        assert_eq!(
            r.judge("helpdesk", "application/json", &body(&p, "1", "00"))
                .0,
            CODE_BAD_API_SIGNATURE
        );
        assert_eq!(
            r.judge("helpdesk", "application/json", &body(&p, "7", CEN))
                .0,
            CODE_INVALID_INPUT
        );
        // `algorithm` must name the SignerInfo's digest.
        assert_eq!(
            r.judge("helpdesk", "application/json", &body(&p, "3", CEN))
                .0,
            CODE_CRYPTO
        );
        let mut tampered = p.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            r.judge("helpdesk", "application/json", &body(&tampered, "1", CEN))
                .0,
            CODE_CRYPTO
        );
        let (code, _, rec) = r.judge("helpdesk", "application/json", &body(&p, "1", CEN));
        assert_eq!(code, CODE_SUCCESS);
        assert_eq!(rec["cen_token_valid"], true);
        assert!(
            !rec.to_string().contains(CEN),
            "the record never holds the cenToken"
        );
        assert_eq!(
            r.judge("helpdesk", "application/json", &body(&p, "1", CEN))
                .0,
            CODE_USER_BOUND
        );
    }
}
