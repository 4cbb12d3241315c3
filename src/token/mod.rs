//! The PKCS#11 boundary: module discovery and loading, slots and tokens, signing pairs, PIN login,
//! raw signing, and the mapping of every `CKR_*` code to a domain error a person can act on.
//!
//! Owns: everything `cryptoki` — no other module names it. Does not own: CMS (see `cms`), where a
//! PIN comes from (see `ui`), or the order of an enrollment (see `enroll`).

mod discovery;
mod error;
mod module;
mod pair;
pub mod provision;
mod raw;
mod select;
mod session;
pub mod signer;
pub mod uri;

pub use cryptoki::slot::Slot;
pub use discovery::{discover_module, installed_modules, library, softhsm_module};
pub use error::{map_ck, TokenError};
pub use module::{open_module, Module};
pub(crate) use pair::validity_at;
pub use pair::{
    fmt_time, key_usage_allows_signing, unix_time, Curve, KeyKind, SigningPair, SlotDesc,
    TokenDesc, Validity,
};
pub use select::{choose_pair, merge_card_copies, Selector};
pub use session::{KeptLogin, KeyHandle, Login, TokenSession};
pub use signer::{TokenSignature, TokenSigner};

#[cfg(test)]
pub(crate) mod tests;
