//! Who a certificate names, for the relay: the username its `user_from` field yields — `cn`,
//! `email`, `upn`, or the local part of an e-mail address or UPN in one of `allowed_domains`.
//! The username sent to CENTAGATE is this one, never the client's spelling.
//!
//! Owns: that rule and its refusals (no value, several values, a domain not allowed). Does not
//! own: reading the fields (see `certinfo`) or whether the certificate is trusted (see `chain`).

use super::Rule;
use x509_cert::Certificate;

/// Which field of the certificate names the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Cn,
    Email,
    Upn,
    EmailLocalPart,
    UpnLocalPart,
}

impl std::str::FromStr for Field {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "cn" => Self::Cn,
            "email" => Self::Email,
            "upn" => Self::Upn,
            "email-local-part" => Self::EmailLocalPart,
            "upn-local-part" => Self::UpnLocalPart,
            _ => {
                return Err(format!(
                    "unknown user_from '{text}': use cn, email, upn, email-local-part or \
                     upn-local-part"
                ))
            }
        })
    }
}

/// `user_from` with the domains a local part may come from.
#[derive(Clone, Debug)]
pub struct UserRule {
    field: Field,
    /// Lowercase.
    allowed_domains: Vec<String>,
}

impl UserRule {
    /// A `*-local-part` field needs `allowed_domains`: otherwise `alice@partner.example` would
    /// become `alice`.
    pub fn new(field: Field, allowed_domains: &[String]) -> Result<Self, String> {
        let local = matches!(field, Field::EmailLocalPart | Field::UpnLocalPart);
        if local && allowed_domains.is_empty() {
            return Err(
                "user_from = email-local-part or upn-local-part needs allowed_domains (the \
                 domains whose addresses name your users), so that an address of another \
                 domain cannot name one of them"
                    .into(),
            );
        }
        Ok(Self {
            field,
            allowed_domains: allowed_domains
                .iter()
                .map(|d| d.trim().trim_start_matches('@').to_lowercase())
                .collect(),
        })
    }

    /// The username `cert` yields, or why it yields none.
    pub fn username(&self, cert: &Certificate) -> Result<String, (Rule, String)> {
        let values = match self.field {
            Field::Cn => crate::certinfo::common_names(cert),
            Field::Email | Field::EmailLocalPart => crate::certinfo::emails(cert),
            Field::Upn | Field::UpnLocalPart => crate::certinfo::upns(cert),
        };
        let mut distinct: Vec<String> = Vec::new();
        for v in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            if !distinct.iter().any(|d| d.eq_ignore_ascii_case(v)) {
                distinct.push(v.to_string());
            }
        }
        let what = match self.field {
            Field::Cn => "common name",
            Field::Email | Field::EmailLocalPart => "e-mail address",
            Field::Upn | Field::UpnLocalPart => "UPN",
        };
        let value = match distinct.as_slice() {
            [] => return Err((Rule::NoUsername, format!("the certificate has no {what}"))),
            [one] => one.clone(),
            _ => {
                return Err((
                    Rule::NoUsername,
                    format!(
                        "the certificate has {} values for its {what}, so it names no one user",
                        distinct.len()
                    ),
                ))
            }
        };
        if !matches!(self.field, Field::EmailLocalPart | Field::UpnLocalPart) {
            return Ok(value);
        }
        match value.rsplit_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && self
                        .allowed_domains
                        .iter()
                        .any(|d| d.eq_ignore_ascii_case(domain)) =>
            {
                Ok(local.to_string())
            }
            Some((_, domain)) => Err((
                Rule::NoUsername,
                format!("the certificate's {what} is in the domain {domain}, which allowed_domains does not list"),
            )),
            None => Err((Rule::NoUsername, format!("the certificate's {what} has no domain"))),
        }
    }
}

/// Whether the request's username is the certificate's (case-insensitively).
pub fn same_user(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::SubjectAltName;

    fn cert(subject: &str, emails: &[&str]) -> Certificate {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let spki = spki::SubjectPublicKeyInfoOwned::from_key(*key.verifying_key()).unwrap();
        let mut b = CertificateBuilder::new(
            Profile::Manual { issuer: None },
            x509_cert::serial_number::SerialNumber::new(&[1]).unwrap(),
            x509_cert::time::Validity::from_now(std::time::Duration::from_secs(3600)).unwrap(),
            x509_cert::name::Name::from_str(subject).unwrap(),
            spki,
            &key,
        )
        .unwrap();
        if !emails.is_empty() {
            let names = emails
                .iter()
                .map(|e| GeneralName::Rfc822Name(der::asn1::Ia5String::new(e).unwrap()))
                .collect();
            b.add_extension(&SubjectAltName(names)).unwrap();
        }
        b.build::<p256::ecdsa::DerSignature>().unwrap()
    }

    fn rule(field: &str, domains: &[&str]) -> UserRule {
        let d: Vec<String> = domains.iter().map(|s| s.to_string()).collect();
        UserRule::new(field.parse().unwrap(), &d).unwrap()
    }

    #[test]
    fn one_value_names_the_user_and_several_name_no_one() {
        let c = cert("CN=Alice,O=Acme", &["alice@acme.example"]);
        assert_eq!(rule("cn", &[]).username(&c).unwrap(), "Alice");
        assert_eq!(
            rule("email", &[]).username(&c).unwrap(),
            "alice@acme.example"
        );
        let two = cert(
            "CN=Alice+CN=Mallory,O=Acme",
            &["a@acme.example", "m@acme.example"],
        );
        for f in ["cn", "email"] {
            let (r, m) = rule(f, &[]).username(&two).unwrap_err();
            assert_eq!(r, Rule::NoUsername);
            assert!(m.contains("2 values"), "{m}");
        }
        // The same address twice (case aside) is one value.
        let same = cert("CN=Alice", &["alice@acme.example", "Alice@ACME.example"]);
        assert!(rule("email", &[]).username(&same).is_ok());
        let (r, _) = rule("upn", &[]).username(&c).unwrap_err();
        assert_eq!(r, Rule::NoUsername);
    }

    #[test]
    fn a_local_part_needs_an_allowed_domain() {
        assert!(UserRule::new(Field::EmailLocalPart, &[]).is_err());
        let r = rule("email-local-part", &["@Acme.example"]);
        let ours = cert("CN=x", &["alice@acme.example"]);
        assert_eq!(r.username(&ours).unwrap(), "alice");
        let theirs = cert("CN=x", &["alice@partner.example"]);
        let (rule_hit, m) = r.username(&theirs).unwrap_err();
        assert_eq!(rule_hit, Rule::NoUsername);
        assert!(m.contains("partner.example"), "{m}");
        assert!(r.username(&cert("CN=x", &["@acme.example"])).is_err());
    }

    #[test]
    fn usernames_compare_case_insensitively() {
        assert!(same_user(" Alice ", "alice"));
        assert!(!same_user("alice", "alice2"));
        assert!("nonsense".parse::<Field>().is_err());
    }
}
