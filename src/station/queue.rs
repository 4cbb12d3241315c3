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
    /// An attempt whose outcome is unknown (CENTAGATE could not be asked at a restart): not
    /// enrolled again in this run.
    Held,
}

/// What a token is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// This batch row (its index).
    Row(usize),
    /// No batch: the username is typed, scanned or taken from the certificate.
    Free,
    /// Not enrolled, and why; `record`: the report gets a `skipped` row for it (a token that
    /// has its row already — registered in this run — gets none).
    Refused { why: String, record: bool },
}

/// The rows and what is settled in this run.
pub struct Queue {
    batch: Option<Batch>,
    states: Vec<State>,
    /// Certificate SHA-256 → the row it took (or `usize::MAX` without a batch).
    cert_rows: HashMap<String, usize>,
    /// Certificates registered in this run, with their user.
    registered: HashMap<String, String>,
    /// Certificates of attempts whose outcome is unknown.
    held: std::collections::HashSet<String>,
}

impl Queue {
    pub fn new(batch: Option<Batch>) -> Self {
        let n = batch.as_ref().map_or(0, |b| b.rows.len());
        Self {
            batch,
            states: vec![State::Pending; n],
            cert_rows: HashMap::new(),
            registered: HashMap::new(),
            held: Default::default(),
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
    /// with the certificate `cert`. Only a registration settles a row for good: a row that was
    /// refused, failed or skipped is open again (a restart is how an operator tries those again,
    /// with `--on-bound replace`, a fixed server, the right PIN), and its token comes back to it.
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
    pub fn hold(&mut self, user: &str, cert: &str) {
        if !cert.is_empty() {
            self.held.insert(cert.to_string());
        }
        if let Some(i) = self.row_of_user(user) {
            self.states[i] = State::Held;
        }
    }

    /// The row (or refusal) for a token with `serial` and signing certificates `certs`,
    /// marked busy with `token` when it is a row.
    pub fn assign(&mut self, token: &str, serial: &str, certs: &[String]) -> Assignment {
        let refused = |why: String, record: bool| Assignment::Refused { why, record };
        if let Some((cert, user)) = certs
            .iter()
            .find_map(|c| self.registered.get(c).map(|u| (c, u)))
        {
            return refused(
                format!(
                    "this token's certificate ({}…) is already registered to {user} in this run; \
                     remove the token",
                    &cert[..cert.len().min(16)]
                ),
                false,
            );
        }
        if certs.iter().any(|c| self.held.contains(c)) {
            return refused(
                "this token's registration in an earlier run has an unknown outcome; it is not \
                 enrolled again: run `tokenroll journal --reconcile` once CENTAGATE answers"
                    .into(),
                false,
            );
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
                    return refused(
                        format!(
                            "the token's serial '{serial}' is not in the batch; set this token \
                             aside, or add its row to the batch file"
                        ),
                        true,
                    )
                }
            }
        } else {
            // A token seen before comes back to its own row, while that row is still its own.
            let own = certs
                .iter()
                .find_map(|c| self.cert_rows.get(c).copied())
                .filter(|&i| match &self.states[i] {
                    State::Pending => true,
                    State::Busy(t) => t == token,
                    State::Settled(s) => *s != Settled::Registered,
                    State::Held => false,
                });
            match own.or_else(|| self.states.iter().position(|s| *s == State::Pending)) {
                Some(i) => i,
                None => {
                    return refused(
                        "every row of the batch is taken; this token has no user".into(),
                        true,
                    )
                }
            }
        };
        let r = &batch.rows[row];
        match &self.states[row] {
            State::Busy(other) if other != token => refused(
                format!(
                    "the row for {} (line {}) is being enrolled with another token",
                    r.username, r.line
                ),
                true,
            ),
            State::Settled(Settled::Registered) => refused(
                format!(
                    "{} (line {}) is already registered in this run with another token",
                    r.username, r.line
                ),
                true,
            ),
            State::Held => refused(
                format!(
                    "{} (line {}) has a registration of unknown outcome from an earlier run; \
                     run `tokenroll journal --reconcile` once CENTAGATE answers",
                    r.username, r.line
                ),
                true,
            ),
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
            // Free for any token: the one that left takes the next free row if this is gone.
            self.cert_rows.retain(|_, r| *r != row);
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

    /// Rows not settled yet (pending or in a lane); a held row is not open: nothing in this run
    /// will settle it.
    pub fn open_rows(&self) -> usize {
        self.states
            .iter()
            .filter(|s| matches!(s, State::Pending | State::Busy(_)))
            .count()
    }

    /// Every row's end so far: `None` for one never settled.
    pub fn row_states(&self) -> Vec<Option<Settled>> {
        self.states
            .iter()
            .map(|s| match s {
                State::Settled(x) => Some(*x),
                // Unknown: settled only by asking the server, as a network failure is.
                State::Held => Some(Settled::FailedNetwork),
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

    fn refused(a: Assignment) -> (String, bool) {
        match a {
            Assignment::Refused { why, record } => (why, record),
            a => panic!("refused, not {a:?}"),
        }
    }

    #[test]
    fn by_serial_each_token_gets_its_row_and_an_unknown_serial_is_refused() {
        let mut q = Queue::new(Some(batch("username,serial\nalice,AA01\nbob,bb02\n")));
        assert_eq!(q.assign("t2", " BB02", &certs("c2")), Assignment::Row(1));
        assert_eq!(q.assign("t1", "aa01", &certs("c1")), Assignment::Row(0));
        let (why, record) = refused(q.assign("t3", "cc03", &certs("c3")));
        assert!(why.contains("not in the batch") && record, "{why}");
        q.finish(Some(0), Settled::Registered, "c1", "alice");
        assert_eq!(q.open_rows(), 1);
        // Alice's row is done: another token with her serial is refused, and recorded.
        let (why, record) = refused(q.assign("t4", "AA01", &certs("c4")));
        assert!(why.contains("already registered") && record, "{why}");
    }

    #[test]
    fn in_order_a_reinserted_token_never_takes_a_second_row() {
        let mut q = Queue::new(Some(batch("username\ncarol\ndave\nerin\nfay\n")));
        assert_eq!(q.assign("t1", "1", &certs("c1")), Assignment::Row(0));
        q.finish(Some(0), Settled::Registered, "c1", "carol");
        let (why, record) = refused(q.assign("t1", "1", &certs("c1")));
        assert!(
            why.contains("already registered to carol") && !record,
            "{why}"
        );
        // A token that failed comes back to its own row.
        assert_eq!(q.assign("t2", "2", &certs("c2")), Assignment::Row(1));
        q.finish(Some(1), Settled::FailedToken, "", "dave");
        assert_eq!(q.assign("t3", "3", &certs("c3")), Assignment::Row(2));
        assert_eq!(q.assign("t2", "2", &certs("c2")), Assignment::Row(1));
        // A token pulled out: its row is free for the next token, and when it comes back it
        // takes the next free row rather than being refused.
        q.release(2);
        assert_eq!(q.assign("t4", "4", &certs("c4")), Assignment::Row(2));
        assert_eq!(q.assign("t3", "3", &certs("c3")), Assignment::Row(3));
        let (why, record) = refused(q.assign("t5", "5", &certs("c5")));
        assert!(why.contains("every row") && record, "{why}");
    }

    #[test]
    fn a_restart_skips_what_registered_retries_the_rest_and_holds_the_unknown() {
        let mut q = Queue::new(Some(batch("username\ncarol\ndave\nerin\n")));
        q.restore("Carol", "c1", Settled::Registered);
        q.restore("dave", "c2", Settled::FailedNetwork);
        q.hold("erin", "c3");
        assert_eq!(q.open_rows(), 1, "dave's row is open again");
        assert_eq!(
            q.row_states(),
            vec![
                Some(Settled::Registered),
                None,
                Some(Settled::FailedNetwork)
            ]
        );
        assert!(!refused(q.assign("t1", "1", &certs("c1"))).1);
        // A failed row is tried again when its token comes back.
        assert_eq!(q.assign("t2", "2", &certs("c2")), Assignment::Row(1));
        let (why, _) = refused(q.assign("t3", "3", &certs("c3")));
        assert!(why.contains("journal --reconcile"), "{why}");
    }

    #[test]
    fn without_a_batch_only_certificates_are_remembered() {
        let mut q = Queue::new(None);
        assert_eq!(q.assign("t1", "1", &certs("c1")), Assignment::Free);
        q.finish(None, Settled::Registered, "c1", "zoe");
        assert!(!refused(q.assign("t1", "1", &certs("c1"))).1);
        q.hold("", "c9");
        assert!(refused(q.assign("t9", "9", &certs("c9")))
            .0
            .contains("unknown outcome"));
        assert_eq!(q.open_rows(), 0);
    }
}
