//! The desktop agent: a token watcher, an enrollment worker and the UI, joined by channels, with
//! one state machine per token deciding what the tray shows and what happens next.
//!
//! Owns: the wiring and the per-token state machine. Does not own: any enrollment step (it drives
//! `enroll`), PKCS#11 (see `token`), or drawing (see `ui`).

pub mod state;
pub mod watcher;
pub mod registry;
