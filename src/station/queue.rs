//! Which user each token is for, and what is settled: the station's decisions, apart from any
//! I/O. Pure — tokens and outcomes in, decisions out — so every rule is unit-tested.
//!
//! With a batch that names serials, a token takes the row of its serial; without serials, the
//! next free row in file order. Either way a certificate already registered in this run never
//! takes a row again (a re-inserted token cannot bind one certificate to two users), and a
//! token that failed comes back to its own row, not a new one.
//!
//! Owns: the rows' states and the assignment rules. Does not own: reading the batch (see
//! `batch`) or running a lane (see `lane`).

use super::batch::{serial_key, Batch, Row};
use std::collections::HashMap;

/// How a row (or, without a batch, a token) ended, for the summary and the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    Registered,
    Rejected,
    /// Failed on the network, the server or the protocol.
    FailedNetwork,
    /// Failed on the token (PIN, removal, the token's state).
    FailedToken,
    /// Skipped (already bound and `--on-bound skip`, the operator skipped it, a PIN to change).
    Skipped,
}

impl Settled {
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Rejected => "rejected",
            Self::FailedNetwork | Self::FailedToken => "failed",
            Self::Skipped => "skipped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Pending,
    /// In a lane with the token of this key.
    Busy(String),
    Settled(Settled),
}

/// What a token is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// This batch row (its index).
    Row(usize),
    /// No batch: the username is typed, scanned or taken from the certificate.
    Free,
    /// Not enrolled, and why (a report row with outcome `skipped` says it).
    Refused(String),
}

/// The rows and what is settled in this run.
pub struct Queue {
    batch: Option<Batch>,
    states: Vec<State>,
    /// Certificate SHA-256 → the row it took (or `usize::MAX` without a batch).
    cert_rows: HashMap<String, usize>,
    /// Certificates registered in this run, with their user.
    registered: HashMap<String, String>,
}

impl Queue {
    pub fn new(batch: Option<Batch>) -> Self {
        let n = batch.as_ref().map_or(0, |b| b.rows.len());
        Self {
            batch,
            states: vec![State::Pending; n],
            cert_rows: HashMap::new(),
            registered: HashMap::new(),
        }
    }

    pub fn rows(&self) -> &[Row] {
        self.batch.as_ref().map_or(&[], |b| &b.rows)
    }

    pub fn has_batch(&self) -> bool {
        self.batch.is_some()
    }

    fn row_of_user(&self, user: &str) -> Option<usize> {
        self.rows()
            .iter()
            .position(|r| r.username.eq_ignore_ascii_case(user))
    }

    /// What an earlier run (or this one, before a restart) recorded: `user` ended as `settled`
    /// with the certificate `cert`. Only a registration settles a row for good on a restart —
    /// a failure or refusal is tried again when its token comes back — but every certificate
    /// keeps the row it took.
    pub fn restore(&mut self, user: &str, cert: &str, settled: Settled) {
        let row = self.row_of_user(user);
        if !cert.is_empty() {
            if let Some(i) = row {
                self.cert_rows.insert(cert.to_string(), i);
            }
            if settled == Settled::Registered {
                self.registered.insert(cert.to_string(), user.to_string());
            }
        }
        if let (Some(i), Settled::Registered) = (row, settled) {
            self.states[i] = State::Settled(settled);
        }
    }

    /// An attempt for `user` whose outcome stays unknown: its row is not enrolled again in this
    /// run (a second registration could bind the user twice).
    pub fn hold(&mut self, user: &str) {
        if let Some(i) = self.row_of_user(user) {
            self.states[i] = State::Settled(Settled::FailedNetwork);
        }
    }

    /// The row (or refusal) for a token with `serial` and signing certificates `certs`,
    /// marked busy with `token` when it is a row.
    pub fn assign(&mut self, token: &str, serial: &str, certs: &[String]) -> Assignment {
        if let Some((cert, user)) = certs
            .iter()
            .find_map(|c| self.registered.get(c).map(|u| (c, u)))
        {
            return Assignment::Refused(format!(
                "this token's certificate ({}…) is already registered to {user} in this run; \
                 remove the token",
                &cert[..cert.len().min(16)]
            ));
        }
        let Some(batch) = &self.batch else {
            return Assignment::Free;
        };
        let row = if batch.by_serial {
            let key = serial_key(serial);
            match batch
                .rows
                .iter()
                .position(|r| r.serial.as_deref().map(serial_key) == Some(key.clone()))
            {
                Some(i) => i,
                None => {
                    return Assignment::Refused(format!(
                        "the token's serial '{serial}' is not in the batch; set this token \
                         aside, or add its row to the batch file"
                    ))
                }
            }
        } else if let Some(i) = certs.iter().find_map(|c| self.cert_rows.get(c).copied()) {
            // A token seen before comes back to its own row.
            i
        } else {
            match self.states.iter().position(|s| *s == State::Pending) {
                Some(i) => i,
                None => {
                    return Assignment::Refused(
                        "every row of the batch is taken; this token has no user".into(),
                    )
                }
            }
        };
        match &self.states[row] {
            State::Busy(other) if other != token => Assignment::Refused(format!(
                "the row for {} (line {}) is being enrolled with another token",
                batch.rows[row].username, batch.rows[row].line
            )),
            State::Settled(Settled::Registered) => Assignment::Refused(format!(
                "{} (line {}) is already registered in this run; remove the token",
                batch.rows[row].username, batch.rows[row].line
            )),
            _ => {
                self.states[row] = State::Busy(token.to_string());
                for c in certs {
                    self.cert_rows.insert(c.clone(), row);
                }
                Assignment::Row(row)
            }
        }
    }

    /// The lane of `row` ended without an outcome (its token was removed, or skipped before
    /// anything was tried): the row waits for a token again.
    pub fn release(&mut self, row: usize) {
        if matches!(self.states.get(row), Some(State::Busy(_))) {
            self.states[row] = State::Pending;
        }
    }

    /// The lane of `row` (or a row-less token) ended as `settled`; `cert` is the certificate
    /// it registered, and `user` whom to.
    pub fn finish(&mut self, row: Option<usize>, settled: Settled, cert: &str, user: &str) {
        if settled == Settled::Registered && !cert.is_empty() {
            self.registered.insert(cert.to_string(), user.to_string());
        }
        if let Some(s) = row.and_then(|r| self.states.get_mut(r)) {
            *s = State::Settled(settled);
        }
    }

    /// Rows not settled yet (pending or in a lane).
    pub fn open_rows(&self) -> usize {
        self.states
            .iter()
            .filter(|s| !matches!(s, State::Settled(_)))
            .count()
    }

    /// Every row's end so far: `None` for one never settled.
    pub fn row_states(&self) -> Vec<Option<Settled>> {
        self.states
            .iter()
            .map(|s| match s {
                State::Settled(x) => Some(*x),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(text: &str) -> Batch {
        super::super::batch::parse(text.as_bytes()).unwrap()
    }

    fn certs(c: &str) -> Vec<String> {
        vec![c.to_string()]
    }

    #[test]
    fn by_serial_each_token_gets_its_row_and_an_unknown_serial_is_refused() {
        let mut q = Queue::new(Some(batch("username,serial\nalice,AA01\nbob,bb02\n")));
        assert_eq!(q.assign("t2", " BB02", &certs("c2")), Assignment::Row(1));
        assert_eq!(q.assign("t1", "aa01", &certs("c1")), Assignment::Row(0));
        match q.assign("t3", "cc03", &certs("c3")) {
            Assignment::Refused(why) => assert!(why.contains("not in the batch"), "{why}"),
            a => panic!("{a:?}"),
        }
        q.finish(Some(0), Settled::Registered, "c1", "alice");
        assert_eq!(q.open_rows(), 1);
        // Alice's row is done: another token with her serial is refused.
        assert!(matches!(
            q.assign("t4", "AA01", &certs("c4")),
            Assignment::Refused(_)
        ));
    }

    #[test]
    fn in_order_a_reinserted_token_never_takes_a_second_row() {
        let mut q = Queue::new(Some(batch("username\ncarol\ndave\nerin\n")));
        assert_eq!(q.assign("t1", "1", &certs("c1")), Assignment::Row(0));
        q.finish(Some(0), Settled::Registered, "c1", "carol");
        match q.assign("t1", "1", &certs("c1")) {
            Assignment::Refused(why) => assert!(why.contains("already registered to carol")),
            a => panic!("{a:?}"),
        }
        // A token that failed comes back to its own row.
        assert_eq!(q.assign("t2", "2", &certs("c2")), Assignment::Row(1));
        q.finish(Some(1), Settled::FailedToken, "", "dave");
        assert_eq!(q.assign("t3", "3", &certs("c3")), Assignment::Row(2));
        assert_eq!(q.assign("t2", "2", &certs("c2")), Assignment::Row(1));
        // A removed token's row waits for a token again.
        q.release(2);
        assert_eq!(q.assign("t4", "4", &certs("c4")), Assignment::Row(2));
        assert!(matches!(
            q.assign("t5", "5", &certs("c5")),
            Assignment::Refused(_)
        ));
    }

    #[test]
    fn a_restart_skips_what_was_registered_and_retries_the_rest() {
        let mut q = Queue::new(Some(batch("username\ncarol\ndave\n")));
        q.restore("Carol", "c1", Settled::Registered);
        q.restore("dave", "c2", Settled::FailedNetwork);
        assert_eq!(q.open_rows(), 1);
        assert!(matches!(
            q.assign("t1", "1", &certs("c1")),
            Assignment::Refused(_)
        ));
        assert_eq!(q.assign("t2", "2", &certs("c2")), Assignment::Row(1));
        assert_eq!(q.row_states(), vec![Some(Settled::Registered), None]);
    }

    #[test]
    fn without_a_batch_only_certificates_are_remembered() {
        let mut q = Queue::new(None);
        assert_eq!(q.assign("t1", "1", &certs("c1")), Assignment::Free);
        q.finish(None, Settled::Registered, "c1", "zoe");
        assert!(matches!(
            q.assign("t1", "1", &certs("c1")),
            Assignment::Refused(_)
        ));
        assert_eq!(q.open_rows(), 0);
    }
}
