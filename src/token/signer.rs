//! The token's private key as a RustCrypto signer, so `cms` (and the x509 builder) sign with it directly.
//!
//! Owns: hashing on the host, the DigestInfo / ECDSA-input shaping, r||s → DER, and carrying the
//! token's own error past builders that flatten every signer error. Does not own: sessions or login.

use super::{Curve, KeyHandle, KeyKind, TokenError, TokenSession};
use crate::digest::DigestAlg;
use der::asn1::BitString;
use der::Encode;
use signature::{Keypair, SignatureEncoding};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};
use std::cell::RefCell;

/// A signature as the token made it: PKCS#1 v1.5 bytes, or a DER Ecdsa-Sig-Value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSignature(pub Vec<u8>);

impl TryFrom<&[u8]> for TokenSignature {
    type Error = signature::Error;
    fn try_from(b: &[u8]) -> Result<Self, Self::Error> {
        Ok(Self(b.to_vec()))
    }
}

impl From<TokenSignature> for Box<[u8]> {
    fn from(s: TokenSignature) -> Self {
        s.0.into_boxed_slice()
    }
}

impl SignatureEncoding for TokenSignature {
    type Repr = Box<[u8]>;
}

impl SignatureBitStringEncoding for TokenSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

/// The public half, as the certificate states it.
#[derive(Clone, Debug)]
pub struct TokenPublicKey(pub SubjectPublicKeyInfoOwned);

impl EncodePublicKey for TokenPublicKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::try_from(self.0.to_der()?)?)
    }
}

/// What a signature is made from; kept apart from the session so it can be computed in tests.
pub fn signing_input(kind: KeyKind, digest: DigestAlg, msg: &[u8]) -> Vec<u8> {
    match kind {
        KeyKind::Rsa { .. } => digest.digest_info(msg),
        KeyKind::Ec(curve) => {
            let mut h = digest.hash(msg);
            // FIPS 186-4 §6.4: use the leftmost bits of the hash, as many as the order has.
            h.truncate(curve.order_len());
            h
        }
    }
}

/// The raw CKM_ECDSA output r||s as a DER Ecdsa-Sig-Value.
pub fn ecdsa_raw_to_der(curve: Curve, raw: &[u8]) -> Result<Vec<u8>, TokenError> {
    let bad = |e: ecdsa::Error| {
        TokenError::SelfVerify(format!("malformed ECDSA signature from the token: {e}"))
    };
    Ok(match curve {
        Curve::P256 => ecdsa::Signature::<p256::NistP256>::from_slice(raw)
            .map_err(bad)?
            .to_der()
            .to_bytes()
            .to_vec(),
        Curve::P384 => ecdsa::Signature::<p384::NistP384>::from_slice(raw)
            .map_err(bad)?
            .to_der()
            .to_bytes()
            .to_vec(),
    })
}

/// The signature algorithm identifier for `kind` hashed with `digest`.
pub fn signature_algorithm(kind: KeyKind, digest: DigestAlg) -> AlgorithmIdentifierOwned {
    use const_oid::db::rfc5912;
    let (oid, null_params) = match (kind, digest) {
        (KeyKind::Rsa { .. }, DigestAlg::Sha1) => (rfc5912::SHA_1_WITH_RSA_ENCRYPTION, true),
        (KeyKind::Rsa { .. }, DigestAlg::Sha256) => (rfc5912::SHA_256_WITH_RSA_ENCRYPTION, true),
        (KeyKind::Rsa { .. }, DigestAlg::Sha384) => (rfc5912::SHA_384_WITH_RSA_ENCRYPTION, true),
        (KeyKind::Rsa { .. }, DigestAlg::Sha512) => (rfc5912::SHA_512_WITH_RSA_ENCRYPTION, true),
        // const-oid has no name for ecdsa-with-SHA1.
        (KeyKind::Ec(_), DigestAlg::Sha1) => (
            const_oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.1"),
            false,
        ),
        (KeyKind::Ec(_), DigestAlg::Sha256) => (rfc5912::ECDSA_WITH_SHA_256, false),
        (KeyKind::Ec(_), DigestAlg::Sha384) => (rfc5912::ECDSA_WITH_SHA_384, false),
        (KeyKind::Ec(_), DigestAlg::Sha512) => (rfc5912::ECDSA_WITH_SHA_512, false),
    };
    AlgorithmIdentifierOwned {
        oid,
        parameters: null_params.then(|| der::asn1::Null.into()),
    }
}

/// A logged-in key that signs with one digest. The digest is fixed at construction so the
/// SignerInfo's digestAlgorithm and the hash actually signed come from the same value.
pub struct TokenSigner<'s, 'm> {
    session: &'s TokenSession<'m>,
    key: KeyHandle,
    kind: KeyKind,
    digest: DigestAlg,
    public: TokenPublicKey,
    /// The builders turn any signer error into a bare "Failed": the real cause waits here.
    last_error: RefCell<Option<TokenError>>,
}

impl<'s, 'm> TokenSigner<'s, 'm> {
    pub fn new(
        session: &'s TokenSession<'m>,
        key: KeyHandle,
        kind: KeyKind,
        digest: DigestAlg,
        public: SubjectPublicKeyInfoOwned,
    ) -> Self {
        Self {
            session,
            key,
            kind,
            digest,
            public: TokenPublicKey(public),
            last_error: RefCell::new(None),
        }
    }

    /// The token's error behind the last failed signature, if any.
    pub fn take_error(&self) -> Option<TokenError> {
        self.last_error.borrow_mut().take()
    }

    fn sign_checked(&self, msg: &[u8]) -> Result<TokenSignature, TokenError> {
        let input = signing_input(self.kind, self.digest, msg);
        let raw = self.session.sign_raw(self.key, self.kind, &input)?;
        Ok(TokenSignature(match self.kind {
            KeyKind::Rsa { .. } => raw,
            KeyKind::Ec(curve) => ecdsa_raw_to_der(curve, &raw)?,
        }))
    }
}

impl Keypair for TokenSigner<'_, '_> {
    type VerifyingKey = TokenPublicKey;
    fn verifying_key(&self) -> TokenPublicKey {
        self.public.clone()
    }
}

impl DynSignatureAlgorithmIdentifier for TokenSigner<'_, '_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(signature_algorithm(self.kind, self.digest))
    }
}

impl signature::Signer<TokenSignature> for TokenSigner<'_, '_> {
    fn try_sign(&self, msg: &[u8]) -> Result<TokenSignature, signature::Error> {
        self.sign_checked(msg).map_err(|e| {
            tracing::debug!(error = %e, "token signature failed");
            *self.last_error.borrow_mut() = Some(e);
            signature::Error::new()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_input_is_truncated_to_the_order() {
        let m = b"challenge";
        assert_eq!(
            signing_input(KeyKind::Ec(Curve::P256), DigestAlg::Sha512, m),
            DigestAlg::Sha512.hash(m)[..32]
        );
        assert_eq!(
            signing_input(KeyKind::Ec(Curve::P384), DigestAlg::Sha512, m),
            DigestAlg::Sha512.hash(m)[..48]
        );
        assert_eq!(
            signing_input(KeyKind::Ec(Curve::P384), DigestAlg::Sha256, m),
            DigestAlg::Sha256.hash(m)
        );
        assert_eq!(
            signing_input(KeyKind::Ec(Curve::P256), DigestAlg::Sha1, m).len(),
            20
        );
    }

    #[test]
    fn rsa_input_is_a_digest_info() {
        let i = signing_input(KeyKind::Rsa { bits: 2048 }, DigestAlg::Sha256, b"x");
        assert_eq!(i.len(), 19 + 32);
    }

    #[test]
    fn raw_ecdsa_becomes_der() {
        let mut raw = [0u8; 64];
        raw[31] = 1;
        raw[63] = 2;
        let der = ecdsa_raw_to_der(Curve::P256, &raw).unwrap();
        assert_eq!(der, [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02]);
        assert!(ecdsa_raw_to_der(Curve::P256, &raw[..63]).is_err());
    }
}
