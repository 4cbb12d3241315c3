//! Talking to the person: PIN prompts now; the tray and notifications live here too.
//!
//! Owns: terminal PIN entry (no echo), stdin and environment PIN sources.
//! Does not own: what the PIN unlocks (see `token`), or when to ask (see `enroll`).

pub mod pin;
