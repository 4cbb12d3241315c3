//! PKCS#11 URIs (RFC 7512): parsing the selectors tokenroll understands and printing a pair's URI.
//!
//! Owns: the text form. Does not own: matching against real tokens (see `token::Pkcs11Token`).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::fmt;

/// Everything but RFC 3986 unreserved characters is encoded, which is always valid in a pk11 value.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub serial: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub id: Option<Vec<u8>>,
    pub object: Option<String>,
    pub object_type: Option<String>,
    /// `pin-value` or `pin-source` was present; the caller decides whether that is acceptable.
    pub carries_pin: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum UriError {
    #[error("a PKCS#11 URI starts with 'pkcs11:'")]
    Scheme,
    #[error("'{0}' in the PKCS#11 URI is not an attribute=value pair")]
    Malformed(String),
    #[error("the PKCS#11 URI attribute '{0}' is not valid percent-encoded UTF-8")]
    Encoding(String),
    #[error("the PKCS#11 URI attribute '{0}' appears twice")]
    Duplicate(String),
    #[error("the PKCS#11 URI type '{0}' is not one of private, cert, public, secret-key, data")]
    Type(String),
}

impl Pkcs11Uri {
    /// Whether `other` names an object this URI names too: every attribute this one gives,
    /// `other` gives with the same value.
    pub fn narrows(&self, other: &Pkcs11Uri) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| want.is_none() || want == have;
        eq(&self.token, &other.token)
            && eq(&self.serial, &other.serial)
            && eq(&self.manufacturer, &other.manufacturer)
            && eq(&self.model, &other.model)
            && eq(&self.object, &other.object)
            && (self.id.is_none() || self.id == other.id)
    }

    pub fn parse(text: &str) -> Result<Self, UriError> {
        let rest = text
            .strip_prefix("pkcs11:")
            .or_else(|| text.strip_prefix("PKCS11:"))
            .ok_or(UriError::Scheme)?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        for part in path.split(';').filter(|p| !p.is_empty()) {
            let (name, raw) = part
                .split_once('=')
                .ok_or_else(|| UriError::Malformed(part.to_string()))?;
            let text = || -> Result<String, UriError> {
                percent_decode_str(raw)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| UriError::Encoding(name.to_string()))
            };
            let slot: &mut Option<String> = match name {
                "token" => &mut uri.token,
                "serial" => &mut uri.serial,
                "manufacturer" => &mut uri.manufacturer,
                "model" => &mut uri.model,
                "object" => &mut uri.object,
                "type" => &mut uri.object_type,
                "id" => {
                    if uri.id.is_some() {
                        return Err(UriError::Duplicate(name.into()));
                    }
                    uri.id = Some(percent_decode_str(raw).collect());
                    continue;
                }
                // A PIN is a query attribute, but one in the path is no less a PIN.
                n if is_pin_attribute(n) => {
                    uri.carries_pin = true;
                    continue;
                }
                // Library and slot attributes and vendor extensions narrow nothing we select on.
                _ => continue,
            };
            if slot.is_some() {
                return Err(UriError::Duplicate(name.into()));
            }
            *slot = Some(text()?);
        }
        if let Some(t) = &uri.object_type {
            if !["private", "cert", "public", "secret-key", "data"].contains(&t.as_str()) {
                return Err(UriError::Type(t.clone()));
            }
        }
        for part in query.into_iter().flat_map(|q| q.split('&')) {
            let name = part.split_once('=').map_or(part, |(n, _)| n);
            if is_pin_attribute(name) {
                uri.carries_pin = true;
            }
        }
        Ok(uri)
    }
}

/// `pin-value` or `pin-source`, however spelt (case, percent-encoding).
fn is_pin_attribute(name: &str) -> bool {
    let name = percent_decode_str(name)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    name == "pin-value" || name == "pin-source"
}

fn enc(v: &str) -> impl fmt::Display + '_ {
    utf8_percent_encode(v, ENCODE)
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkcs11:")?;
        let mut sep = "";
        let mut put = |f: &mut fmt::Formatter<'_>, k: &str, v: &dyn fmt::Display| {
            let r = write!(f, "{sep}{k}={v}");
            sep = ";";
            r
        };
        if let Some(v) = &self.model {
            put(f, "model", &enc(v))?;
        }
        if let Some(v) = &self.manufacturer {
            put(f, "manufacturer", &enc(v))?;
        }
        if let Some(v) = &self.serial {
            put(f, "serial", &enc(v))?;
        }
        if let Some(v) = &self.token {
            put(f, "token", &enc(v))?;
        }
        if let Some(v) = &self.id {
            let hex: String = v.iter().map(|b| format!("%{b:02X}")).collect();
            put(f, "id", &hex)?;
        }
        if let Some(v) = &self.object {
            put(f, "object", &enc(v))?;
        }
        if let Some(v) = &self.object_type {
            put(f, "type", &enc(v))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc7512_examples() {
        let u = Pkcs11Uri::parse("pkcs11:token=alice;id=%01").unwrap();
        assert_eq!(u.token.as_deref(), Some("alice"));
        assert_eq!(u.id.as_deref(), Some(&[1u8][..]));

        let u = Pkcs11Uri::parse(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(u.manufacturer.as_deref(), Some("Snake Oil, Inc."));
        assert_eq!(u.model.as_deref(), Some("1.0"));
        assert_eq!(u.object.as_deref(), Some("my-certificate"));
        assert_eq!(u.object_type.as_deref(), Some("cert"));
        assert_eq!(
            u.id.as_deref(),
            Some(&[0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91][..])
        );
        assert_eq!(u.serial.as_deref(), Some(""));
        assert!(!u.carries_pin);
    }

    #[test]
    fn flags_pin_attributes_and_rejects_garbage() {
        assert!(
            Pkcs11Uri::parse("pkcs11:token=a?pin-value=1234")
                .unwrap()
                .carries_pin
        );
        assert!(
            Pkcs11Uri::parse("pkcs11:token=a?module-name=x&pin-source=file:/p")
                .unwrap()
                .carries_pin
        );
        // In the path too, and however spelt: a PIN anywhere in the URI is a PIN.
        for uri in [
            "pkcs11:token=a;pin-value=1234",
            "pkcs11:pin-source=file:/p;token=a",
            "pkcs11:token=a;PIN-VALUE=1234",
            "pkcs11:token=a;pin%2Dvalue=1234",
            "pkcs11:token=a?Pin-Source=x",
        ] {
            assert!(Pkcs11Uri::parse(uri).unwrap().carries_pin, "{uri}");
        }
        assert_eq!(Pkcs11Uri::parse("token=a"), Err(UriError::Scheme));
        assert!(matches!(
            Pkcs11Uri::parse("pkcs11:token"),
            Err(UriError::Malformed(_))
        ));
        assert!(matches!(
            Pkcs11Uri::parse("pkcs11:token=a;token=b"),
            Err(UriError::Duplicate(_))
        ));
        assert!(matches!(
            Pkcs11Uri::parse("pkcs11:type=key"),
            Err(UriError::Type(_))
        ));
        assert!(matches!(
            Pkcs11Uri::parse("pkcs11:object=%FF"),
            Err(UriError::Encoding(_))
        ));
    }

    #[test]
    fn printing_round_trips() {
        let u = Pkcs11Uri {
            token: Some("a b;c=d".into()),
            serial: Some("0011".into()),
            id: Some(vec![0, 0xff]),
            object: Some("sign key".into()),
            object_type: Some("private".into()),
            ..Default::default()
        };
        let s = u.to_string();
        assert_eq!(
            s,
            "pkcs11:serial=0011;token=a%20b%3Bc%3Dd;id=%00%FF;object=sign%20key;type=private"
        );
        assert_eq!(Pkcs11Uri::parse(&s).unwrap(), u);
    }
}
