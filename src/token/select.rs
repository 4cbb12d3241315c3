//! Choosing the one signing pair a selector means: pure functions over descriptions, so every
//! rule is unit-tested without a module.
//!
//! Owns: `Selector`, `choose_pair`, `merge_card_copies`. Does not own: reading tokens.

use super::uri::Pkcs11Uri;
use super::{SigningPair, TokenDesc, TokenError, Validity};

/// What the person asked for: a token label and/or a URI, and (for the agent, which knows the
/// card it asks a PIN for) the reader it sits in. All empty selects anything.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub token_label: Option<String>,
    pub uri: Option<Pkcs11Uri>,
    /// The slot description (the reader) the token must be in.
    pub reader: Option<String>,
    /// A pair never chosen: the admin's own (`admin_key`), when it signs the logins.
    pub not: Option<Pkcs11Uri>,
    /// Look in these slots first (where the token was seen); the whole list when it is not
    /// found there. Never widens what matches.
    pub slots: Option<Vec<super::Slot>>,
}

impl Selector {
    pub(super) fn matches_token(&self, t: &TokenDesc) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.token_label, &t.label)
            && eq(&self.reader, &t.slot_description)
            && self.uri.as_ref().is_none_or(|u| {
                eq(&u.token, &t.label)
                    && eq(&u.serial, &t.serial)
                    && eq(&u.manufacturer, &t.manufacturer)
                    && eq(&u.model, &t.model)
            })
    }

    pub fn matches_pair(&self, p: &SigningPair) -> bool {
        self.matches_token(&p.token)
            && self.uri.as_ref().is_none_or(|u| {
                u.id.as_ref().is_none_or(|id| *id == p.id)
                    && u.object.as_ref().is_none_or(|o| *o == p.object_label)
                    && u.object_type
                        .as_deref()
                        .is_none_or(|t| t == "private" || t == "cert")
            })
    }

    /// Whether `p` is the pair this selector never chooses.
    pub fn is_not(&self, p: &SigningPair) -> bool {
        self.not.as_ref().is_some_and(|u| {
            Selector {
                uri: Some(u.clone()),
                ..Default::default()
            }
            .matches_pair(p)
        })
    }

    pub fn describe(&self) -> String {
        match (&self.token_label, &self.uri) {
            (_, Some(u)) => format!("matching {u}"),
            (Some(l), None) => format!("labelled '{l}'"),
            (None, None) => "at all".into(),
        }
    }
}

/// Picks the one signing pair the selector means. Pure, so every rule is unit-tested.
pub fn choose_pair(
    tokens: &[TokenDesc],
    pairs: Vec<SigningPair>,
    sel: &Selector,
) -> Result<SigningPair, TokenError> {
    let matching_tokens: Vec<&TokenDesc> = tokens.iter().filter(|t| sel.matches_token(t)).collect();
    if matching_tokens.is_empty() {
        return Err(TokenError::NoToken(sel.describe()));
    }
    let (matching, admins): (Vec<SigningPair>, Vec<SigningPair>) = pairs
        .into_iter()
        .filter(|p| sel.matches_pair(p))
        .partition(|p| !sel.is_not(p));
    if matching.is_empty() {
        let names: Vec<String> = matching_tokens.iter().map(|t| t.display_name()).collect();
        let mut names = names.join(", ");
        if !admins.is_empty() {
            names.push_str(" (besides the admin's own pair, admin_key, which is never enrolled)");
        }
        return Err(TokenError::NoSigningPair(names));
    }
    let (valid, invalid): (Vec<_>, Vec<_>) = matching
        .into_iter()
        .partition(|p| p.validity == Validity::Valid);
    match valid.len() {
        1 => Ok(valid.into_iter().next().expect("one")),
        0 => {
            let why: Vec<String> = invalid
                .iter()
                .map(|p| match &p.validity {
                    Validity::Expired(t) => {
                        format!("the certificate {} expired on {t}", p.subject())
                    }
                    Validity::NotYetValid(t) => {
                        format!("the certificate {} is not valid before {t}", p.subject())
                    }
                    Validity::Valid => unreachable!(),
                })
                .collect();
            Err(TokenError::CertificateNotValid(why.join("; ")))
        }
        _ => Err(TokenError::Ambiguous(
            valid
                .iter()
                .map(|p| format!("  {}", p.describe()))
                .collect(),
        )),
    }
}

/// One card can show the same certificate on several of its tokens: OpenSC presents an OpenPGP
/// card as a "User PIN" token and a "User PIN (sig)" token with one serial, and copies the card's
/// certificate to each key slot, though only the signature key exists. Keeps one copy of each
/// certificate per card — the one whose public key is a signature key, else the first.
pub fn merge_card_copies(pairs: Vec<SigningPair>) -> Vec<SigningPair> {
    let mut out: Vec<SigningPair> = Vec::with_capacity(pairs.len());
    for p in pairs {
        let same = out
            .iter()
            .position(|q| q.cert_der == p.cert_der && q.token.same_card(&p.token));
        match same {
            Some(i) if p.signature_key && !out[i].signature_key => out[i] = p,
            Some(_) => {}
            None => out.push(p),
        }
    }
    out
}
