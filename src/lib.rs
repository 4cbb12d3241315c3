//! tokenroll: enrolls PKCS#11 tokens with a CENTAGATE identity server.
//!
//! The flow runs one way — token → cms → api — and `enroll` is the only place that knows the order.
//! `cli` is one face of it; the tray agent is another.

pub mod agent;
pub mod api;
pub mod certinfo;
pub mod chain;
pub mod challenge;
pub mod cli;
pub mod cms;
pub mod config;
pub mod demo;
pub mod digest;
pub mod doctor;
pub mod enroll;
#[doc(hidden)]
pub mod fuzzing;
pub mod journal;
pub mod paths;
pub mod relay;
pub mod secret;
pub mod simulator;
pub mod station;
pub mod text;
pub mod token;
pub mod ui;
