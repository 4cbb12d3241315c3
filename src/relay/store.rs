//! The relay's state, in one database the replicas share: SQLite (`sqlite:PATH`, WAL, for one
//! relay) or PostgreSQL (`postgres://...`, for several). Issued-challenge keys, the claims that
//! make challenges single-use, request records, rate counters and the audit trail live here;
//! replicas hold nothing of their own. One schema and one set of queries serve both (sqlx's Any
//! driver, `$N` placeholders, plain TEXT and BIGINT columns), checked at run time so builds need
//! no database.
//!
//! Owns: the schema and its migrations, and every query. Does not own: what is decided with them
//! (see `policy` and the HTTP front).

use super::challenge::ChallengeKey;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the relay's database {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("the relay's database: {0}")]
    Query(String),
}

fn query_err(e: sqlx::Error) -> StoreError {
    StoreError::Query(e.to_string())
}

/// The schema, in order. Each entry is applied once and recorded (sqlx's migrator).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "relay state",
    "CREATE TABLE challenge_keys (id BIGINT PRIMARY KEY, key_hex TEXT NOT NULL, created_ms BIGINT NOT NULL);
     CREATE TABLE claims (challenge_id TEXT PRIMARY KEY, request_sha256 TEXT NOT NULL,
                          claimed_ms BIGINT NOT NULL, expires_ms BIGINT NOT NULL);
     CREATE TABLE requests (sha256 TEXT PRIMARY KEY, state TEXT NOT NULL, username TEXT NOT NULL,
                            outcome TEXT, code BIGINT, message TEXT, updated_ms BIGINT NOT NULL);
     CREATE TABLE rate_counts (bucket TEXT NOT NULL, window_start BIGINT NOT NULL, hits BIGINT NOT NULL,
                               PRIMARY KEY (bucket, window_start));
     CREATE TABLE audit (request_id TEXT PRIMARY KEY, time_ms BIGINT NOT NULL, client TEXT NOT NULL,
                         username TEXT NOT NULL, subject TEXT NOT NULL, issuer TEXT NOT NULL,
                         serial TEXT NOT NULL, sha256 TEXT NOT NULL, challenge_id TEXT NOT NULL,
                         decision TEXT NOT NULL, rule TEXT NOT NULL, code BIGINT, latency_ms BIGINT NOT NULL);",
    ),
    (
        2,
        "requests settle later",
        "ALTER TABLE requests ADD COLUMN cert_sha1 TEXT;
         ALTER TABLE requests ADD COLUMN challenge_id TEXT;
         CREATE INDEX requests_state ON requests (state, updated_ms);
         CREATE INDEX audit_time ON audit (time_ms);",
    ),
    (
        3,
        "the audit names the certificate's SHA-256",
        "ALTER TABLE audit ADD COLUMN cert_sha256 TEXT;",
    ),
];

#[derive(Debug)]
struct Embedded;

impl<'s> sqlx::migrate::MigrationSource<'s> for Embedded {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
                > + Send
                + 's,
        >,
    > {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(v, d, sql)| {
                    sqlx::migrate::Migration::new(
                        *v,
                        (*d).into(),
                        sqlx::migrate::MigrationType::Simple,
                        (*sql).into(),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// A request about to be handled: what its record keeps for settling it later.
#[derive(Clone, Copy, Debug)]
pub struct NewRequest<'a> {
    /// SHA-256 of the PKCS#7 DER, hex.
    pub sha256: &'a str,
    /// The username the certificate yields (the one sent to CENTAGATE).
    pub username: &'a str,
    /// The signer certificate's SHA-1, hex (how CENTAGATE's list names it).
    pub cert_sha1: &'a str,
    pub challenge_id: &'a str,
}

/// A request whose outcome is not known: what asking CENTAGATE about it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsettled {
    pub sha256: String,
    pub username: String,
    pub cert_sha1: String,
    pub challenge_id: String,
}

/// A request's record: `in_progress` (claimed, not answered yet), `unknown` (CENTAGATE's answer
/// was lost) or `final`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub state: String,
    pub username: String,
    pub outcome: Option<String>,
    pub code: Option<i64>,
    pub message: Option<String>,
}

pub struct Store {
    /// Durable commits: request records and claims, before anything reaches CENTAGATE.
    pool: AnyPool,
    /// Commits that need not wait for the disk: outcomes (CENTAGATE's list is the truth a lost
    /// one is settled from), rate counters and audit rows (PostgreSQL's
    /// `synchronous_commit = off`, SQLite's `synchronous = NORMAL` in WAL: a crash of the machine
    /// may lose the last few, never corrupt them; the audit's stdout line is written anyway).
    fast: AnyPool,
    /// SQLite (one writer, no data-modifying WITH) rather than PostgreSQL.
    sqlite: bool,
}

/// What starting a request found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begun {
    /// Recorded in progress, its challenge claimed: it may go to CENTAGATE.
    New,
    /// The same request has a record already.
    Seen(RequestRecord),
    /// Its challenge was claimed by another request (nothing was recorded).
    ChallengeUsed,
}

/// A pool on `url`: SQLite in WAL, waiting for a writer instead of failing at once, with a full
/// sync per commit when `durable`; PostgreSQL with `synchronous_commit` off when not.
async fn connect(url: &str, sqlite: bool, durable: bool) -> Result<AnyPool, sqlx::Error> {
    AnyPoolOptions::new()
        .max_connections(if sqlite { 4 } else { 16 })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                let pragmas: &[&str] = match (sqlite, durable) {
                    (true, true) => &[
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA busy_timeout = 5000",
                    ],
                    (true, false) => &[
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA busy_timeout = 5000",
                    ],
                    (false, true) => &[],
                    (false, false) => &["SET synchronous_commit = off"],
                };
                for p in pragmas {
                    sqlx::query(p).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
}

impl Store {
    /// Opens (creating, for SQLite) the database at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let open_err = |reason: String| StoreError::Open {
            url: shown(url),
            reason,
        };
        let sqlite = url.starts_with("sqlite:");
        if !sqlite && !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(open_err(
                "give sqlite:PATH or postgres://USER@HOST:PORT/DATABASE".into(),
            ));
        }
        let url_opened = if sqlite && !url.contains('?') {
            format!("{url}?mode=rwc")
        } else {
            url.to_string()
        };
        let pool = connect(&url_opened, sqlite, true)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        let migrator = sqlx::migrate::Migrator::new(Embedded)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        migrator
            .run(&pool)
            .await
            .map_err(|e| open_err(format!("bringing the schema up to date: {e}")))?;
        let fast = connect(&url_opened, sqlite, false)
            .await
            .map_err(|e| open_err(e.to_string()))?;
        Ok(Self { pool, fast, sqlite })
    }

    /// The challenge keys (the newest first), made on first use. Replicas racing to make the
    /// first key agree on one: the insert of key 1 happens once.
    pub async fn challenge_keys(&self, now_ms: i64) -> Result<Vec<ChallengeKey>, StoreError> {
        let fresh = ChallengeKey::generate(1);
        sqlx::query(
            "INSERT INTO challenge_keys (id, key_hex, created_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(1i64)
        .bind(hex::encode(fresh.expose()))
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(query_err)?;
        let rows = sqlx::query("SELECT id, key_hex FROM challenge_keys ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await
            .map_err(query_err)?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.try_get(0).map_err(query_err)?;
                let text: String = r.try_get(1).map_err(query_err)?;
                let bytes = zeroize::Zeroizing::new(
                    hex::decode(&text).map_err(|e| StoreError::Query(e.to_string()))?,
                );
                let arr: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Query("a challenge key is not 32 bytes".into()))?;
                let id = u8::try_from(id)
                    .map_err(|_| StoreError::Query("a challenge key id over 255".into()))?;
                Ok(ChallengeKey::new(id, arr))
            })
            .collect()
    }

    /// Gives a request back (nothing reached CENTAGATE, or CENTAGATE confirms nothing was
    /// registered): its record and its challenge's claim go together, in one transaction, so the
    /// same request may come again.
    pub async fn give_back(&self, challenge_id: &str, sha256: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(query_err)?;
        sqlx::query("DELETE FROM requests WHERE sha256 = $1 AND state <> 'final'")
            .bind(sha256)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        sqlx::query("DELETE FROM claims WHERE challenge_id = $1 AND request_sha256 = $2")
            .bind(challenge_id)
            .bind(sha256)
            .execute(&mut *tx)
            .await
            .map_err(query_err)?;
        tx.commit().await.map_err(query_err)
    }

    /// Claims older than their challenges' lifetime say nothing any more: a challenge that old
    /// is refused as expired before its claim is looked at.
    pub async fn forget_claims_before(&self, now_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM claims WHERE expires_ms < $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(query_err)?;
        Ok(done.rows_affected())
    }

    /// Rate windows that started before `before_ms` count nothing any more.
    pub async fn forget_rate_counts_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM rate_counts WHERE window_start < $1")
            .bind(before_ms)
            .execute(&self.fast)
            .await
            .map_err(query_err)?;
        Ok(done.rows_affected())
    }

    /// Counts one hit in each `(bucket, window_start)`, in one statement; the counts after it,
    /// in the order given.
    pub async fn hits(&self, buckets: &[(&str, i64)]) -> Result<Vec<i64>, StoreError> {
        let values: Vec<String> = (0..buckets.len())
            .map(|i| format!("(${}, ${}, 1)", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO rate_counts (bucket, window_start, hits) VALUES {} \
             ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_counts.hits + 1 \
             RETURNING bucket, window_start, hits",
            values.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (b, w) in buckets {
            q = q.bind(*b).bind(*w);
        }
        let rows = q.fetch_all(&self.fast).await.map_err(query_err)?;
        let mut counted = Vec::with_capacity(rows.len());
        for r in &rows {
            let b: String = r.try_get(0).map_err(query_err)?;
            let w: i64 = r.try_get(1).map_err(query_err)?;
            let h: i64 = r.try_get(2).map_err(query_err)?;
            counted.push((b, w, h));
        }
        buckets
            .iter()
            .map(|(b, w)| {
                counted
                    .iter()
                    .find(|(cb, cw, _)| cb == b && cw == w)
                    .map(|c| c.2)
                    .ok_or_else(|| StoreError::Query(format!("no count came back for {b}")))
            })
            .collect()
    }

    /// Starts request `new` and claims its challenge (valid until `expires_ms`), in one durable
    /// transaction: either both are recorded, or neither.
    pub async fn begin(
        &self,
        new: &NewRequest<'_>,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<Begun, StoreError> {
        if !self.sqlite {
            return self.begin_in_one(new, expires_ms, now_ms).await;
        }
        let mut tx = self.pool.begin().await.map_err(query_err)?;
        let recorded = sqlx::query(
            "INSERT INTO requests (sha256, state, username, cert_sha1, challenge_id, updated_ms) \
             VALUES ($1, 'in_progress', $2, $3, $4, $5) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(new.sha256)
        .bind(new.username)
        .bind(new.cert_sha1)
        .bind(new.challenge_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
        if recorded.rows_affected() == 0 {
            tx.rollback().await.map_err(query_err)?;
            return Ok(match self.request(new.sha256).await? {
                Some(r) => Begun::Seen(r),
                // Forgotten in between (its relay gave it back): as if its challenge were used.
                None => Begun::ChallengeUsed,
            });
        }
        let claimed = sqlx::query(
            "INSERT INTO claims (challenge_id, request_sha256, claimed_ms, expires_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (challenge_id) DO NOTHING",
        )
        .bind(new.challenge_id)
        .bind(new.sha256)
        .bind(now_ms)
        .bind(expires_ms)
        .execute(&mut *tx)
        .await
        .map_err(query_err)?;
        if claimed.rows_affected() == 0 {
            tx.rollback().await.map_err(query_err)?;
            return Ok(Begun::ChallengeUsed);
        }
        tx.commit().await.map_err(query_err)?;
        Ok(Begun::New)
    }

    /// `begin` on PostgreSQL in one statement (one round trip, one commit): the claim first,
    /// and the record only where the claim was made. The same request again finds its claim
    /// made already, and its record.
    async fn begin_in_one(
        &self,
        new: &NewRequest<'_>,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<Begun, StoreError> {
        let row: Option<AnyRow> = sqlx::query(
            "WITH claimed AS (INSERT INTO claims (challenge_id, request_sha256, claimed_ms, \
             expires_ms) SELECT $4, $1, $5, $6 WHERE NOT EXISTS \
             (SELECT 1 FROM requests WHERE sha256 = $1) \
             ON CONFLICT (challenge_id) DO NOTHING RETURNING challenge_id) \
             INSERT INTO requests (sha256, state, username, cert_sha1, challenge_id, updated_ms) \
             SELECT $1, 'in_progress', $2, $3, challenge_id, $5 FROM claimed \
             ON CONFLICT (sha256) DO NOTHING RETURNING sha256",
        )
        .bind(new.sha256)
        .bind(new.username)
        .bind(new.cert_sha1)
        .bind(new.challenge_id)
        .bind(now_ms)
        .bind(expires_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err)?;
        if row.is_some() {
            return Ok(Begun::New);
        }
        Ok(match self.request(new.sha256).await? {
            Some(r) => Begun::Seen(r),
            None => Begun::ChallengeUsed,
        })
    }

    /// Records the final (or unknown) outcome of request `sha256`, unless it is final already;
    /// false when there was no such record to change.
    pub async fn finish_request(
        &self,
        sha256: &str,
        state: &str,
        outcome: &str,
        code: Option<i64>,
        message: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE requests SET state = $2, outcome = $3, code = $4, message = $5, \
             updated_ms = $6 WHERE sha256 = $1 AND state <> 'final'",
        )
        .bind(sha256)
        .bind(state)
        .bind(outcome)
        .bind(code)
        .bind(message)
        .bind(now_ms)
        // Without waiting for the disk: an outcome a crash loses leaves the record in progress,
        // and housekeeping settles it from CENTAGATE's own list.
        .execute(&self.fast)
        .await
        .map_err(query_err)?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn request(&self, sha256: &str) -> Result<Option<RequestRecord>, StoreError> {
        let row: Option<AnyRow> = sqlx::query(
            "SELECT state, username, outcome, code, message FROM requests WHERE sha256 = $1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err)?;
        row.map(|r| {
            Ok(RequestRecord {
                state: r.try_get(0).map_err(query_err)?,
                username: r.try_get(1).map_err(query_err)?,
                outcome: r.try_get(2).map_err(query_err)?,
                code: r.try_get(3).map_err(query_err)?,
                message: r.try_get(4).map_err(query_err)?,
            })
        })
        .transpose()
    }

    /// Requests to ask CENTAGATE about: those whose answer was lost, and those still in progress
    /// since before `stale_before_ms` (their relay died mid-request).
    pub async fn unsettled(&self, stale_before_ms: i64) -> Result<Vec<Unsettled>, StoreError> {
        let rows = sqlx::query(
            "SELECT sha256, username, cert_sha1, challenge_id FROM requests \
             WHERE (state = 'unknown' OR (state = 'in_progress' AND updated_ms < $1)) \
             AND cert_sha1 IS NOT NULL ORDER BY updated_ms LIMIT 100",
        )
        .bind(stale_before_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err)?;
        rows.iter().map(unsettled_row).collect()
    }

    /// Request `sha256`, if it is unsettled (see `unsettled`).
    pub async fn unsettled_one(
        &self,
        sha256: &str,
        stale_before_ms: i64,
    ) -> Result<Option<Unsettled>, StoreError> {
        let row: Option<AnyRow> = sqlx::query(
            "SELECT sha256, username, cert_sha1, challenge_id FROM requests WHERE sha256 = $1 \
             AND (state = 'unknown' OR (state = 'in_progress' AND updated_ms < $2)) \
             AND cert_sha1 IS NOT NULL",
        )
        .bind(sha256)
        .bind(stale_before_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_err)?;
        row.as_ref().map(unsettled_row).transpose()
    }

    /// One decision of the audit trail.
    pub async fn audit(&self, a: &super::audit::Audit) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (request_id, time_ms, client, username, subject, issuer, serial, \
             sha256, challenge_id, decision, rule, code, latency_ms, cert_sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&a.request_id)
        .bind(a.time_ms)
        .bind(&a.client)
        .bind(&a.username)
        .bind(&a.subject)
        .bind(&a.issuer)
        .bind(&a.serial)
        .bind(&a.sha256)
        .bind(&a.challenge_id)
        .bind(a.decision)
        .bind(&a.rule)
        .bind(a.code)
        .bind(a.latency_ms)
        .bind(&a.cert_sha256)
        .execute(&self.fast)
        .await
        .map_err(query_err)?;
        Ok(())
    }

    /// The audit rows of one request (by its SHA-256), oldest first: for tests and operators.
    pub async fn audit_of(&self, sha256: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT decision, rule FROM audit WHERE sha256 = $1 ORDER BY time_ms, request_id",
        )
        .bind(sha256)
        .fetch_all(&self.pool)
        .await
        .map_err(query_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0).map_err(query_err)?,
                    r.try_get(1).map_err(query_err)?,
                ))
            })
            .collect()
    }

    /// Whether the database answers (the health check).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .fetch_one(&self.pool)
            .await
            .map(|_| ())
            .map_err(query_err)
    }

    pub async fn close(&self) {
        self.fast.close().await;
        self.pool.close().await;
    }
}

/// An `Unsettled` from a row of `sha256, username, cert_sha1, challenge_id`.
fn unsettled_row(r: &AnyRow) -> Result<Unsettled, StoreError> {
    Ok(Unsettled {
        sha256: r.try_get(0).map_err(query_err)?,
        username: r.try_get(1).map_err(query_err)?,
        cert_sha1: r.try_get(2).map_err(query_err)?,
        challenge_id: r
            .try_get::<Option<String>, _>(3)
            .map_err(query_err)?
            .unwrap_or_default(),
    })
}

/// A database URL for messages: without a password.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
