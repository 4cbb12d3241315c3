//! The relay's challenges: stateless and single-use. Issuing one writes nothing: the challenge
//! carries its own expiry and the username it is bound to, authenticated with a key the
//! replicas share (kept in the database), so a flood of challenge requests cannot grow any
//! table. Only redeeming one writes (the claim of its id, in the store).
//!
//! Owns: the challenge's encoding, its MAC and what checking one says. Does not own: the shared
//! key's storage or the claim (see the store), or the order of the checks (see the policy).

use super::Rule;
use base64::Engine;
use hmac::{Hmac, Mac};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// How long a challenge lives at most.
pub const LIFETIME_MS: i64 = 2 * 60 * 1000;

const VERSION: u8 = 1;
const NONCE: usize = 16;
const USER_TAG: usize = 8;
const MAC: usize = 32;
/// version, key id, nonce, expiry (ms, big-endian), user tag, MAC.
const LEN: usize = 1 + 1 + NONCE + 8 + USER_TAG + MAC;

/// A MAC key the replicas share, with the id that names it in the challenges it signs (so keys
/// can be rotated: a challenge names its key).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ChallengeKey {
    #[zeroize(skip)]
    pub id: u8,
    bytes: [u8; 32],
}

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChallengeKey({}, <redacted>)", self.id)
    }
}

impl ChallengeKey {
    pub fn new(id: u8, bytes: [u8; 32]) -> Self {
        Self { id, bytes }
    }

    /// A fresh random key.
    pub fn generate(id: u8) -> Self {
        let mut bytes = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        Self { id, bytes }
    }

    /// The key itself, for the store.
    pub fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// HMAC-SHA256 over `label` and each part with its length before it.
    fn hmac(&self, label: &[u8], parts: &[&[u8]]) -> Hmac<sha2::Sha256> {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(&self.bytes).expect("any key length");
        m.update(label);
        for p in parts {
            m.update(&(p.len() as u32).to_be_bytes());
            m.update(p);
        }
        m
    }

    fn mac(&self, label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        self.hmac(label, parts).finalize().into_bytes().into()
    }

    fn user_tag(&self, username: &str) -> [u8; USER_TAG] {
        let full = self.mac(b"tokenroll-relay-user", &[normalise(username).as_bytes()]);
        full[..USER_TAG].try_into().expect("8 bytes")
    }
}

/// Usernames are compared case-insensitively.
fn normalise(username: &str) -> String {
    username.trim().to_lowercase()
}

/// A challenge as the relay hands it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// Names the challenge in the store's claims and the audit trail (its nonce, hex).
    pub id: String,
    /// What the client puts into its statement (base64url, no padding).
    pub challenge: String,
    pub expires_ms: i64,
}

/// Issues a challenge for `username`, valid until `now_ms + LIFETIME_MS`.
pub fn issue(key: &ChallengeKey, username: &str, now_ms: i64) -> Issued {
    let mut nonce = [0u8; NONCE];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let expires_ms = now_ms.saturating_add(LIFETIME_MS);
    let mut raw = Vec::with_capacity(LEN);
    raw.extend_from_slice(&[VERSION, key.id]);
    raw.extend_from_slice(&nonce);
    raw.extend_from_slice(&expires_ms.to_be_bytes());
    raw.extend_from_slice(&key.user_tag(username));
    let mac = key.mac(b"tokenroll-relay-challenge", &[&raw]);
    raw.extend_from_slice(&mac);
    Issued {
        id: hex::encode(nonce),
        challenge: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw),
        expires_ms,
    }
}

/// A challenge that this deployment issued, for this username, not yet expired: its id, for the
/// claim that makes it single-use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Valid {
    pub id: String,
    pub expires_ms: i64,
}

/// Checks `challenge` for `username` at `now_ms` with the deployment's keys (`keys`: the
/// current one and any still honoured after a rotation).
pub fn check(
    keys: &[ChallengeKey],
    challenge: &str,
    username: &str,
    now_ms: i64,
) -> Result<Valid, Rule> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(challenge.as_bytes())
        .map_err(|_| Rule::UnknownChallenge)?;
    if raw.len() != LEN || raw[0] != VERSION {
        return Err(Rule::UnknownChallenge);
    }
    let key = keys
        .iter()
        .find(|k| k.id == raw[1])
        .ok_or(Rule::UnknownChallenge)?;
    let (body, mac) = raw.split_at(LEN - MAC);
    // Compared in constant time.
    key.hmac(b"tokenroll-relay-challenge", &[body])
        .verify_slice(mac)
        .map_err(|_| Rule::UnknownChallenge)?;
    let nonce = &body[2..2 + NONCE];
    let expires_ms = i64::from_be_bytes(body[2 + NONCE..2 + NONCE + 8].try_into().expect("8"));
    let tag = &body[2 + NONCE + 8..];
    if tag != key.user_tag(username) {
        return Err(Rule::OtherUsersChallenge);
    }
    if now_ms > expires_ms {
        return Err(Rule::ChallengeExpired);
    }
    Ok(Valid {
        id: hex::encode(nonce),
        expires_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn an_issued_challenge_checks_for_its_user_until_it_expires() {
        let key = ChallengeKey::generate(1);
        let c = issue(&key, "Alice", NOW);
        assert_eq!(c.expires_ms, NOW + LIFETIME_MS);
        let keys = [key];
        let v = check(&keys, &c.challenge, "alice", NOW + 1000).unwrap();
        assert_eq!((v.id.as_str(), v.expires_ms), (c.id.as_str(), c.expires_ms));
        assert_eq!(
            check(&keys, &c.challenge, " ALICE ", c.expires_ms),
            Ok(v),
            "case and spaces do not matter; valid up to its expiry"
        );
        assert_eq!(
            check(&keys, &c.challenge, "alice", c.expires_ms + 1),
            Err(Rule::ChallengeExpired)
        );
        assert_eq!(
            check(&keys, &c.challenge, "bob", NOW),
            Err(Rule::OtherUsersChallenge)
        );
        assert_ne!(
            issue(&keys[0], "alice", NOW).id,
            c.id,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn a_challenge_of_another_deployment_or_altered_is_unknown() {
        let ours = [ChallengeKey::generate(1)];
        let theirs = ChallengeKey::generate(1);
        let c = issue(&theirs, "alice", NOW);
        assert_eq!(
            check(&ours, &c.challenge, "alice", NOW),
            Err(Rule::UnknownChallenge)
        );
        // Moving the expiry (or anything else) breaks the MAC.
        let mine = issue(&ours[0], "alice", NOW);
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&mine.challenge)
            .unwrap();
        raw[2 + NONCE] ^= 0x40;
        let altered = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(
            check(&ours, &altered, "alice", NOW),
            Err(Rule::UnknownChallenge)
        );
        for junk in ["", "!!!", "AAAA", &"A".repeat(200)] {
            assert_eq!(
                check(&ours, junk, "alice", NOW),
                Err(Rule::UnknownChallenge)
            );
        }
    }

    #[test]
    fn a_rotated_key_is_honoured_while_listed() {
        let (old, new) = (ChallengeKey::generate(1), ChallengeKey::generate(2));
        let c = issue(&old, "alice", NOW);
        assert!(check(&[new.clone(), old], &c.challenge, "alice", NOW).is_ok());
        assert_eq!(
            check(&[new], &c.challenge, "alice", NOW),
            Err(Rule::UnknownChallenge)
        );
    }

    #[test]
    fn the_key_is_redacted() {
        let k = ChallengeKey::new(3, [0xab; 32]);
        assert_eq!(format!("{k:?}"), "ChallengeKey(3, <redacted>)");
    }
}
