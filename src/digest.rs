//! The SHA variants tokenroll signs with, and every fact that follows from the choice of one.
//!
//! Owns: names, OIDs, CENTAGATE's `algorithm` codes, host-side hashing, PKCS#1 DigestInfo prefixes.
//! Does not own: signing (see `token::signer`) or CMS structure (see `cms`).

use const_oid::ObjectIdentifier;
use sha2::Digest;
use std::fmt;
use std::str::FromStr;

/// One digest choice drives the SignerInfo's digestAlgorithm, the hash the token signs and the
/// `algorithm` code sent to the server, so they can never disagree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DigestAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlg {
    pub const ALL: [DigestAlg; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
            Self::Sha384 => "sha384",
            Self::Sha512 => "sha512",
        }
    }

    /// Human-facing name, as in "signed with SHA-256".
    pub fn label(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA-1",
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }

    /// CENTAGATE's `algorithm` field: 0 SHA-1, 1 SHA-256, 2 SHA-384, 3 SHA-512.
    pub fn centagate_code(self) -> u8 {
        match self {
            Self::Sha1 => 0,
            Self::Sha256 => 1,
            Self::Sha384 => 2,
            Self::Sha512 => 3,
        }
    }

    pub fn oid(self) -> ObjectIdentifier {
        use const_oid::db::rfc5912;
        match self {
            Self::Sha1 => rfc5912::ID_SHA_1,
            Self::Sha256 => rfc5912::ID_SHA_256,
            Self::Sha384 => rfc5912::ID_SHA_384,
            Self::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.oid() == *oid)
    }

    pub fn output_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    pub fn is_weak(self) -> bool {
        self == Self::Sha1
    }

    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => sha1::Sha1::digest(data).to_vec(),
            Self::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// DER prefix of the PKCS#1 v1.5 DigestInfo (RFC 8017 §9.2 note 1), hash appended after it.
    pub fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Self::Sha1 => &[
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ],
            Self::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            Self::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            Self::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    /// The PKCS#1 DigestInfo of `data`: what `CKM_RSA_PKCS` signs.
    pub fn digest_info(self, data: &[u8]) -> Vec<u8> {
        let mut out = self.digest_info_prefix().to_vec();
        out.extend_from_slice(&self.hash(data));
        out
    }
}

impl fmt::Display for DigestAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DigestAlg {
    type Err = String;
    /// Accepts the names (`sha256`, `SHA-256`) and CENTAGATE's codes (`0`-`3`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "");
        Self::ALL
            .into_iter()
            .find(|a| a.name() == norm || a.centagate_code().to_string() == norm)
            .ok_or_else(|| {
                format!("unknown algorithm '{s}': use sha1, sha256, sha384, sha512 or 0-3")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{asn1::OctetString, Encode, Sequence};
    use spki::AlgorithmIdentifierOwned;

    #[derive(Sequence)]
    struct DigestInfo {
        alg: AlgorithmIdentifierOwned,
        digest: OctetString,
    }

    #[test]
    fn digest_info_prefixes_match_der_encoding() {
        for alg in DigestAlg::ALL {
            let hash = alg.hash(b"abc");
            let expect = DigestInfo {
                alg: AlgorithmIdentifierOwned {
                    oid: alg.oid(),
                    parameters: Some(der::asn1::Null.into()),
                },
                digest: OctetString::new(hash).unwrap(),
            }
            .to_der()
            .unwrap();
            assert_eq!(alg.digest_info(b"abc"), expect, "{alg}");
            assert_eq!(alg.hash(b"").len(), alg.output_len());
        }
    }

    #[test]
    fn parses_names_and_codes() {
        assert_eq!("sha384".parse::<DigestAlg>().unwrap(), DigestAlg::Sha384);
        assert_eq!("SHA-512".parse::<DigestAlg>().unwrap(), DigestAlg::Sha512);
        assert_eq!("0".parse::<DigestAlg>().unwrap(), DigestAlg::Sha1);
        assert_eq!("1".parse::<DigestAlg>().unwrap(), DigestAlg::Sha256);
        assert!("md5".parse::<DigestAlg>().is_err());
        assert!("4".parse::<DigestAlg>().is_err());
    }
}
