//! The token watcher: owns the PKCS#11 module on its own thread and reports tokens coming and going.
//!
//! It lists the tokens again whenever `hotplug` wakes it (slot events, PC/SC changes, inotify, or
//! polling where nothing else works). SoftHSM2 never sees a token created or deleted by another
//! process until the module is finalised and initialised again, so when its token directory changes
//! the watcher reloads the module — only while no enrollment holds it. A token's certificates are
//! read when it first appears (and again after a reload), not on every wake-up: idle costs little.

use super::hotplug::{Stopper, Wake};
use super::state::TokenKey;
use crate::token::{Module, TokenDesc};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender as Sender;

/// A token as the agent needs it: its key, and the SHA-256 of each signing certificate on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub key: TokenKey,
    /// SHA-256 of every signing certificate on the token (valid or not), for the registry.
    pub certificates: Vec<String>,
    /// The pairs that may be used now, for the PIN dialog and the "Choose certificate" menu.
    pub pairs: Vec<PairRef>,
    /// A PIN pad: the PIN is entered on the reader, not in a dialog.
    pub pin_pad: bool,
    /// The token holds the admin's own signing pair (`admin_key`): never enrolled.
    pub admin_token: bool,
    /// The slots of the card's tokens as this module listed them.
    pub slots: Vec<crate::token::Slot>,
}

/// A usable signing pair, as the menu names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairRef {
    pub uri: String,
    pub subject: String,
    /// The certificate's serial (hex) and SHA-256, for confirmations and reports.
    pub cert_serial: String,
    pub sha256: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Inserted(Seen),
    Removed(TokenKey),
    /// The module could not be loaded or listed; the watcher keeps trying.
    Trouble(String),
}

/// The module currently in use, shared with the enrollment worker.
pub type SharedModule = Arc<Mutex<Option<Arc<Module>>>>;

/// Whether `module` is SoftHSM2 itself.
pub fn is_softhsm(module: &Path) -> bool {
    module.to_string_lossy().contains("softhsm")
}

/// The token directory of SoftHSM2 as its configuration names it, if `module` is SoftHSM2 or a
/// p11-kit proxy that loads it.
pub fn softhsm_token_dir(module: &Path) -> Option<PathBuf> {
    if !is_softhsm(module) && !proxies_softhsm(module) {
        return None;
    }
    let conf = std::env::var_os("SOFTHSM2_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/softhsm/softhsm2.conf"));
    let text = std::fs::read_to_string(conf).ok()?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "directories.tokendir")
        .map(|(_, v)| PathBuf::from(v.trim()))
}

/// Whether `module` is the p11-kit proxy and p11-kit registers SoftHSM2 (system or user config).
fn proxies_softhsm(module: &Path) -> bool {
    let is_proxy = module
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("p11-kit-proxy"));
    if !is_proxy {
        return false;
    }
    let user = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|c| c.join("pkcs11/modules"));
    ["/usr/share/p11-kit/modules", "/etc/pkcs11/modules"]
        .into_iter()
        .map(PathBuf::from)
        .chain(user)
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.path().extension().is_some_and(|x| x == "module"))
        .any(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.trim_start().starts_with("module:") && l.contains("softhsm"))
            })
        })
}

fn dir_listing(dir: &Path) -> BTreeSet<String> {
    fn entries(d: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
                    .collect()
            })
            .unwrap_or_default()
    }
    // SoftHSM2 rewrites a token's `generation` file (its cross-process change counter) on every
    // module load after a login on the token, with the same count: by its time, every reload
    // would look like a change and the watcher reload the module again and again. It counts by
    // its content, which changes when an object does; `.lock` files count not at all (one is
    // made with each object, whose own file shows it).
    let stamp = |p: &Path, m: &std::fs::Metadata| {
        if p.file_name().is_some_and(|n| n == "generation") {
            let count = std::fs::read(p).unwrap_or_default();
            return format!("{}:{}", p.display(), hex::encode(count));
        }
        let t = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        format!("{}:{}:{}", p.display(), m.len(), t.as_nanos())
    };
    let counted = |p: &Path| {
        p.file_name()
            .is_some_and(|n| !n.to_string_lossy().ends_with(".lock"))
    };
    let mut out = BTreeSet::new();
    for (path, meta) in entries(dir).into_iter().filter(|(p, _)| counted(p)) {
        out.insert(stamp(&path, &meta));
        if meta.is_dir() {
            out.extend(
                entries(&path)
                    .iter()
                    .filter(|(p, _)| counted(p))
                    .map(|(p, m)| stamp(p, m)),
            );
        }
    }
    out
}

/// The tokens of each card, in the order the module lists them. One card can appear as several
/// tokens with one serial (OpenSC shows an OpenPGP card as a "User PIN" and a "User PIN (sig)"
/// token); the agent shows it once.
pub fn cards(tokens: Vec<TokenDesc>) -> Vec<Vec<TokenDesc>> {
    let mut out: Vec<Vec<TokenDesc>> = Vec::new();
    for t in tokens {
        match out.iter_mut().find(|c| c[0].same_card(&t)) {
            Some(card) => card.push(t),
            None => out.push(vec![t]),
        }
    }
    out
}

/// What to call a card: its token's label, or for several tokens what their labels share
/// ("OpenPGP card" for "OpenPGP card (User PIN)" and "OpenPGP card (User PIN (sig))").
pub fn card_name(tokens: &[TokenDesc]) -> String {
    let first = tokens.first().map(|t| t.label.as_str()).unwrap_or_default();
    let mut common = first.to_string();
    for t in &tokens[1..] {
        let n = common
            .char_indices()
            .zip(t.label.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, a), _)| i + a.len_utf8());
        common.truncate(n);
    }
    // Drop an unfinished parenthesis: "OpenPGP card (User PIN" is not a name.
    if common.matches('(').count() > common.matches(')').count() {
        if let Some(i) = common.rfind('(') {
            common.truncate(i);
        }
    }
    let common = common.trim();
    if common.is_empty() {
        first.to_string()
    } else {
        common.to_string()
    }
}

/// The cards present now. A card already in `known` keeps its pairs: reading certificates on
/// every poll would cost the idle CPU the agent must not spend (a reload clears `known`).
/// A card some of whose certificates could not be read (still being written, a read that failed)
/// is read again on up to this many polls before what could be read is taken as the card.
const REREADS: u8 = 10;

/// Whether a reading of `key` with `unreadable` certificates that could not be read is taken as
/// the card: at once when all could be read, else after `REREADS` tries in a row.
fn read_settles(rereads: &mut BTreeMap<TokenKey, u8>, key: &TokenKey, unreadable: usize) -> bool {
    if unreadable == 0 {
        rereads.remove(key);
        return true;
    }
    let n = rereads.entry(key.clone()).or_insert(0);
    *n = n.saturating_add(1);
    *n >= REREADS
}

/// `stale`: the token folder changed since the module was loaded, but the module is in use and
/// cannot be reloaded yet — a card read half-written then is not counted towards `REREADS`
/// (SoftHSM2 shows it whole only after the reload that is due).
fn snapshot(
    module: &Module,
    known: &BTreeMap<TokenKey, Seen>,
    admin_key: Option<&crate::token::Selector>,
    rereads: &mut BTreeMap<TokenKey, u8>,
    stale: bool,
) -> Result<BTreeMap<TokenKey, Seen>, String> {
    let mut out = BTreeMap::new();
    let mut present = std::collections::BTreeSet::new();
    for card in cards(module.tokens().map_err(|e| e.to_string())?) {
        let key = TokenKey {
            label: card_name(&card),
            serial: card[0].serial.clone(),
            reader: card[0].slot_description.clone(),
        };
        present.insert(key.clone());
        let settled = rereads.get(&key).is_none_or(|n| *n >= REREADS);
        if let Some(seen) = known.get(&key).filter(|_| settled) {
            out.insert(key, seen.clone());
            continue;
        }
        let mut pairs = Vec::new();
        let mut unreadable = 0;
        for t in &card {
            match module.pairs_read(t) {
                Ok((p, n)) => {
                    pairs.extend(p);
                    unreadable += n;
                }
                Err(e) => {
                    tracing::debug!(token = %t.label, error = %e, "reading the token's certificates");
                    unreadable += 1;
                }
            }
        }
        // A token with no certificate at all may be one still being written (SoftHSM2 shows an
        // object before all its attributes are set, so a certificate can be missing from the
        // search for a moment): read it again too before it is announced with nothing to enroll.
        if pairs.is_empty() {
            unreadable = unreadable.max(1);
        }
        if (stale && unreadable > 0) || !read_settles(rereads, &key, unreadable) {
            // Not announced half-read (as a card with nothing to enroll): read again on the
            // next poll; a card announced before stays as it was.
            if let Some(old) = known.get(&key) {
                out.insert(key, old.clone());
            }
            continue;
        }
        let mut pairs = crate::token::merge_card_copies(pairs);
        let admin_token = admin_key.is_some_and(|k| pairs.iter().any(|p| k.matches_pair(p)));
        if admin_token {
            pairs.clear();
        }
        let certificates = pairs
            .iter()
            .map(|p| crate::certinfo::fingerprint(&p.cert_der))
            .collect();
        let usable = pairs
            .iter()
            .filter(|p| p.validity == crate::token::Validity::Valid)
            .map(|p| PairRef {
                uri: p.uri().to_string(),
                subject: p.subject(),
                cert_serial: hex::encode(p.cert.tbs_certificate.serial_number.as_bytes()),
                sha256: crate::certinfo::fingerprint(&p.cert_der),
            })
            .collect();
        out.insert(
            key.clone(),
            Seen {
                key,
                certificates,
                pairs: usable,
                pin_pad: card.iter().any(|t| t.pin_pad),
                admin_token,
                slots: card.iter().map(|t| t.slot).collect(),
            },
        );
    }
    rereads.retain(|k, _| present.contains(k));
    Ok(out)
}

pub struct Watcher {
    pub module_path: Option<PathBuf>,
    pub interval: Duration,
    pub shared: SharedModule,
    /// Shared with the agent, which ends the event threads at exit.
    pub stopper: Stopper,
    /// The admin's own pair, for token logins: its token is never offered for enrollment.
    pub admin_key: Option<crate::token::Selector>,
}

impl Watcher {
    /// Runs until `changes` is closed. Sends the initial tokens as insertions.
    pub fn run(self, changes: Sender<Change>) {
        let mut known: BTreeMap<TokenKey, Seen> = BTreeMap::new();
        let mut rereads: BTreeMap<TokenKey, u8> = BTreeMap::new();
        let mut token_dir: Option<(PathBuf, BTreeSet<String>)> = None;
        let mut reported_trouble = false;
        let mut wake = Wake::new(self.stopper.clone());
        loop {
            let empty = BTreeMap::new();
            let mut reloaded_now = false;
            let now = self
                .current_module(&mut token_dir, !rereads.is_empty())
                .and_then(|(m, reloaded, stale)| {
                    reloaded_now = reloaded;
                    if reloaded {
                        wake.arm(&m, token_dir.as_ref().map(|(d, _)| d.as_path()));
                    }
                    // After a reload every token's pairs are read again; otherwise known ones are kept.
                    snapshot(
                        &m,
                        if reloaded { &empty } else { &known },
                        self.admin_key.as_ref(),
                        &mut rereads,
                        stale,
                    )
                });
            let now = match now {
                Ok(now) => {
                    reported_trouble = false;
                    now
                }
                Err(e) => {
                    // Say it once, not on every poll.
                    if !std::mem::replace(&mut reported_trouble, true)
                        && changes.send(Change::Trouble(e)).is_err()
                    {
                        return;
                    }
                    wake.wait(
                        self.interval,
                        token_dir.as_ref().map(|(d, _)| d.as_path()),
                        true,
                    );
                    if self.stopper.stopped() {
                        return;
                    }
                    continue;
                }
            };
            // Removals first: a token moved to another reader leaves before it arrives.
            for k in known.keys().filter(|k| !now.contains_key(*k)) {
                if changes.send(Change::Removed(k.clone())).is_err() {
                    return;
                }
            }
            for (k, seen) in &now {
                if known.get(k) != Some(seen) {
                    if known.contains_key(k) && changes.send(Change::Removed(k.clone())).is_err() {
                        return;
                    }
                    if changes.send(Change::Inserted(seen.clone())).is_err() {
                        return;
                    }
                }
            }
            known = now;
            // Soon while a card waits to be read again or the module was just reloaded (its
            // token folders may have changed before they were watched).
            wake.wait(
                self.interval,
                token_dir.as_ref().map(|(d, _)| d.as_path()),
                reloaded_now || !rereads.is_empty(),
            );
            if self.stopper.stopped() {
                return;
            }
        }
    }

    /// The module to list with, reloaded when SoftHSM2's token directory changed and nobody else
    /// holds the module (a reload finalises it, which would end an enrollment's session).
    /// Also says whether the module was (re)loaded just now.
    /// `half_read`: a card waits to be read again — SoftHSM2 keeps an object it once failed to
    /// read invisible until the module is loaded again, so it is reloaded whether or not the
    /// folder's listing shows a change (a last write can keep a file's size and, within the
    /// clock's tick, its time).
    fn current_module(
        &self,
        token_dir: &mut Option<(PathBuf, BTreeSet<String>)>,
        half_read: bool,
    ) -> Result<(Arc<Module>, bool, bool), String> {
        let mut slot = self.shared.lock().expect("module lock");
        let mut stale = false;
        if let (Some(m), Some((dir, listing))) = (slot.as_ref(), token_dir.as_mut()) {
            let fresh = dir_listing(dir);
            let changed = fresh != *listing || half_read;
            stale = changed && Arc::strong_count(m) > 1;
            if changed && Arc::strong_count(m) == 1 {
                tracing::debug!(dir = %dir.display(), "SoftHSM2 token directory changed: reloading the module");
                *listing = fresh;
                // C_Finalize before the next C_Initialize: dropping alone does not finalize, and a
                // library that stays loaded (the p11-kit proxy) would keep its old view.
                if let Some(old) = slot.take().and_then(|m| Arc::try_unwrap(m).ok()) {
                    old.close();
                }
            }
        }
        let reloaded = slot.is_none();
        if reloaded {
            // The listing the new module's view is compared with must be taken before the
            // module reads the tokens: taken after, a file written in between (a certificate
            // finished while it was read half-written) would look unchanged, and SoftHSM2 keeps an
            // object it once failed to read invisible until the next reload.
            let before = token_dir
                .as_ref()
                .map(|(dir, _)| (dir.clone(), dir_listing(dir)));
            match Module::load(self.module_path.as_deref()) {
                Ok(m) => {
                    if let Some(dir) = softhsm_token_dir(m.path()) {
                        let listing = match before {
                            Some((d, l)) if d == dir => l,
                            _ => dir_listing(&dir),
                        };
                        *token_dir = Some((dir, listing));
                    }
                    *slot = Some(Arc::new(m));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok((slot.clone().expect("loaded above"), reloaded, stale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(label: &str, serial: &str) -> TokenDesc {
        TokenDesc {
            serial: serial.into(),
            ..crate::token::tests::token(label)
        }
    }

    fn listed_first() -> TokenDesc {
        token("OpenPGP card (User PIN)", "ffb85cb07b84")
    }

    #[test]
    fn a_half_read_card_is_read_again_before_it_is_announced() {
        let mut rereads = BTreeMap::new();
        let key = TokenKey {
            label: "bob".into(),
            serial: "1".into(),
            reader: "r".into(),
        };
        for _ in 1..REREADS {
            assert!(!read_settles(&mut rereads, &key, 1), "read again");
        }
        assert!(
            read_settles(&mut rereads, &key, 1),
            "then taken as it reads"
        );
        assert!(read_settles(&mut rereads, &key, 0));
        assert!(rereads.is_empty(), "a whole reading ends the count");
        assert!(
            !read_settles(&mut rereads, &key, 2),
            "and a later half reading starts it anew"
        );
    }

    #[test]
    fn an_openpgp_card_is_one_card_named_by_what_its_tokens_share() {
        let listed = vec![
            token("OpenPGP card (User PIN)", "ffb85cb07b84"),
            token("alice", "1234"),
            token("OpenPGP card (User PIN (sig))", "ffb85cb07b84"),
        ];
        let cards = cards(listed);
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[0].len(), 2);
        assert_eq!(card_name(&cards[0]), "OpenPGP card");
        assert_eq!(card_name(&cards[1]), "alice");
        // The same serial in another reader is another card.
        let elsewhere = TokenDesc {
            slot_description: "another reader".into(),
            ..token("OpenPGP card (User PIN)", "ffb85cb07b84")
        };
        assert_eq!(super::cards(vec![listed_first(), elsewhere]).len(), 2);
        // Labels sharing nothing: the first one names the card.
        assert_eq!(card_name(&[token("x", "1"), token("y", "1")]), "x");
    }
}
