//! `tokenroll relay`: the one service that holds the CENTAGATE admin session, so that desks
//! enroll with none. It issues single-use challenges, checks a signed enrollment statement (the
//! PKCS#7, its chain to the organisation's CA, the username the certificate yields, the
//! challenge) and only then registers with CENTAGATE.
//!
//! Owns: the relay's protocol (its rule tokens, challenges, the statement), its policy checks,
//! its store and audit, and its own configuration. Does not own: the desk-side flow (see
//! `enroll`), CMS or path validation (see `cms`, `chain`), or the CENTAGATE calls (see `api`).

pub mod audit;
pub mod challenge;
pub mod config;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod rate;
pub mod rules;
pub mod service;
pub mod soft;
pub mod statement;
pub mod store;

pub use rules::Rule;
