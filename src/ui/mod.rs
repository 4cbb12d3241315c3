//! Talking to the person: PIN prompts (terminal, stdin, environment; GnuPG's pinentry for the
//! agent), desktop notifications, and the tray.
//!
//! Owns: pinentry processes, `notify-rust` and the terminal. Does not own: what the PIN unlocks (see
//! `token`), or when to ask (see `enroll` and `agent`).

pub mod dialogs;
pub mod pin;
pub mod pinentry;
pub mod tray;
