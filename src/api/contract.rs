//! Constants and shapes of the CENTAGATE registration call, shared by the client and the simulator
//! (the simulator shares only these facts, never the client's validation code).

use serde::Serialize;

pub const WEB_ROOT: &str = "/CentagateWS/webresources";
pub const REGISTER_PATH: &str = "/CentagateWS/webresources/cert/register/pkcs7/";
/// What is bound to a user: `PUT …/user/auth/list/{admin}`.
pub const BOUND_LIST_PATH: &str = "/CentagateWS/webresources/user/auth/list/";
/// A user's PKI token status: `PUT …/token/getStatus/{admin}`.
pub const TOKEN_STATUS_PATH: &str = "/CentagateWS/webresources/token/getStatus/";
/// Unbind a user's PKI token: `PUT …/token/unregisterActiveToken/{admin}`.
pub const UNBIND_PATH: &str = "/CentagateWS/webresources/token/unregisterActiveToken/";
/// Change a user's PKI token status: `PUT …/token/update/token/status/{admin}`.
pub const STATUS_UPDATE_PATH: &str = "/CentagateWS/webresources/token/update/token/status/";
/// The server's tolerance around its own clock.
pub const TIMESTAMP_WINDOW_MS: i64 = 5 * 60 * 1000;

pub const CODE_SUCCESS: i64 = 0;
pub const CODE_PERMISSION: i64 = 10001;
pub const CODE_INVALID_INPUT: i64 = 10002;
pub const CODE_DB_PROTECTION: i64 = 10003;
pub const CODE_DB: i64 = 10004;
pub const CODE_CRYPTO: i64 = 10011;
pub const CODE_USER_NOT_FOUND: i64 = 22002;
pub const CODE_USER_INACTIVE: i64 = 22004;
pub const CODE_USER_BOUND: i64 = 22027;
pub const CODE_IP_NOT_TRUSTED: i64 = 23020;
pub const CODE_BAD_API_SIGNATURE: i64 = 23022;
pub const CODE_REQUEST_EXPIRED: i64 = 23023;

/// What a code means and what the person should do next; None for codes the contract does not list.
pub fn explain(code: i64) -> Option<(&'static str, &'static str)> {
    Some(match code {
        CODE_SUCCESS => ("Success", "the token is registered"),
        CODE_PERMISSION => ("Permission not allowed", "the admin account may not register tokens; ask a CENTAGATE administrator to grant it the right"),
        CODE_INVALID_INPUT => ("Invalid input", "a field was rejected, or the timestamp is more than 5 minutes from the server's clock; check this machine's clock (or try --timestamp-unit s) and the values sent"),
        CODE_DB_PROTECTION => ("DB protection error", "a fault on the server; try again later, and tell the CENTAGATE administrator if it persists"),
        CODE_DB => ("DB error", "a fault on the server; try again later, and tell the CENTAGATE administrator if it persists"),
        CODE_CRYPTO => ("Crypto error", "the server could not verify the PKCS#7 or does not trust the certificate's issuer; ask the administrator to add the issuing CA to the tenant's trusted CAs"),
        CODE_USER_NOT_FOUND => ("User not found", "check the username; it must exist in CENTAGATE"),
        CODE_USER_INACTIVE => ("User is not active", "activate the user in CENTAGATE first"),
        CODE_USER_BOUND => ("User already bound with a token", "the user already has a registered token; unbind it in CENTAGATE before registering another"),
        CODE_IP_NOT_TRUSTED => ("IP not in trusted list", "add this machine's address to the admin's trusted IP list in CENTAGATE"),
        CODE_BAD_API_SIGNATURE => ("Invalid API signature", "the cenToken was rejected; check the admin name, authToken and secretCode"),
        CODE_REQUEST_EXPIRED => ("Request expired", "the request's timestamp is too old; check this machine's clock"),
        _ => return None,
    })
}

/// The wire body: every value a JSON string, as the vendor's Java sample sends it. The cenToken
/// is a secret type, zeroized when the body is dropped.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBody {
    pub username: String,
    pub signature: String,
    pub algorithm: String,
    pub timestamp: String,
    pub status: String,
    pub cen_token: crate::secret::CenToken,
}

impl std::fmt::Debug for RegisterBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterBody")
            .field("username", &self.username)
            .field("algorithm", &self.algorithm)
            .field("timestamp", &self.timestamp)
            .field("status", &self.status)
            .field("signature_len", &self.signature.len())
            .field("cen_token", &"<redacted>")
            .finish()
    }
}

/// Token status to register with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenStatus {
    Pending,
    Valid,
    TempDeactivated,
    Deactivated,
}

impl TokenStatus {
    pub fn code(self) -> u8 {
        match self {
            Self::Pending => 1,
            Self::Valid => 2,
            Self::TempDeactivated => 3,
            Self::Deactivated => 4,
        }
    }

    /// The status's name, as the config and reports write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Valid => "valid",
            Self::TempDeactivated => "temp-deactivated",
            Self::Deactivated => "deactivated",
        }
    }
}

impl std::str::FromStr for TokenStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "pending" | "1" => Self::Pending,
            "valid" | "2" => Self::Valid,
            "temp-deactivated" | "temp_deactivated" | "3" => Self::TempDeactivated,
            "deactivated" | "4" => Self::Deactivated,
            _ => {
                return Err(format!(
                "unknown status '{s}': use pending, valid, temp-deactivated, deactivated or 1-4"
            ))
            }
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampUnit {
    #[default]
    Millis,
    Seconds,
}

impl std::str::FromStr for TimestampUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ms" => Ok(Self::Millis),
            "s" => Ok(Self::Seconds),
            _ => Err(format!("unknown timestamp unit '{s}': use ms or s")),
        }
    }
}

/// The server's answer. `code` arrives as a number or a string; `object` may be anything.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub code: i64,
    pub message: String,
    pub object: serde_json::Value,
}

impl Answer {
    /// Parses a body; None when it is not a CENTAGATE answer at all.
    pub fn parse(body: &[u8]) -> Option<Answer> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let obj = v.as_object()?;
        let code = match obj.get("code")? {
            serde_json::Value::Number(n) => n.as_i64()?,
            serde_json::Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        let message = match obj.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        Some(Answer {
            code,
            message,
            object: obj
                .get("object")
                .cloned()
                .unwrap_or(serde_json::Value::Null),
        })
    }

    /// One line for a person: the meaning and the next step, or the server's words for unknown codes.
    pub fn explain(&self) -> String {
        match explain(self.code) {
            Some((_, advice)) if self.code == CODE_SUCCESS => advice.to_string(),
            Some((meaning, advice)) => format!("{meaning} (code {}): {advice}", self.code),
            None => format!(
                "the server refused with code {}: {}",
                self.code, self.message
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_accept_number_or_string_codes_and_any_object() {
        let a = Answer::parse(br#"{"code":0,"message":"Success","object":null}"#).unwrap();
        assert_eq!((a.code, a.message.as_str()), (0, "Success"));
        let a =
            Answer::parse(br#"{"code":"22027","message":"bound","object":"{\"x\":1}"}"#).unwrap();
        assert_eq!(a.code, 22027);
        assert_eq!(a.object, serde_json::json!("{\"x\":1}"));
        let a = Answer::parse(br#"{"code":10002,"object":{"a":[1]}}"#).unwrap();
        assert_eq!(a.object["a"][0], 1);
        assert!(Answer::parse(b"<html>500</html>").is_none());
        assert!(Answer::parse(br#"{"message":"no code"}"#).is_none());
        assert!(Answer::parse(br#"{"code":"abc"}"#).is_none());
        assert!(Answer::parse(br#"[1,2]"#).is_none());
    }

    #[test]
    fn unknown_codes_are_shown_verbatim() {
        let a = Answer {
            code: 99999,
            message: "Strange thing".into(),
            object: serde_json::Value::Null,
        };
        assert_eq!(
            a.explain(),
            "the server refused with code 99999: Strange thing"
        );
        let a = Answer {
            code: 22027,
            message: "x".into(),
            object: serde_json::Value::Null,
        };
        assert!(a.explain().contains("already has a registered token"));
    }

    #[test]
    fn status_parses_names_and_numbers() {
        assert_eq!("pending".parse::<TokenStatus>().unwrap().code(), 1);
        assert_eq!(
            "3".parse::<TokenStatus>().unwrap(),
            TokenStatus::TempDeactivated
        );
        assert!("5".parse::<TokenStatus>().is_err());
    }
}
