//! User storage for the user-service: one `users` table in SQLite or PostgreSQL, migrated at
//! start, read and written with the same SQL on both.
//!
//! Knows nothing of HTTP or tokens. Every query is a prepared statement cached per connection, so
//! the hot read is parsed once per connection, not per request. On a SQLite file the profile read
//! goes through [`SqliteReader`]; everything else goes through sqlx.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

use super::config::Backend;
use super::sqlite_reader::SqliteReader;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a request waits for a free connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Demo users are inserted this many at a time.
const DEMO_BATCH: u32 = 10_000;

/// A user profile as stored and as served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
}

/// What storage can fail with. Messages never include the database URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("connecting to the {0:?} database")]
    Connect(Backend, #[source] sqlx::Error),
    /// A schema migration failed.
    #[error("migrating the {0:?} database schema")]
    Migrate(Backend, #[source] sqlx::migrate::MigrateError),
    /// The username is taken (case-insensitively).
    #[error("username already taken")]
    UsernameTaken,
    /// No connection could be had in time, the database was busy, or the connection broke.
    #[error("database unavailable")]
    Unavailable(#[source] BoxError),
    /// The database refused a query for another reason.
    #[error("database query failed")]
    Query(#[source] BoxError),
}

/// The driver's error behind a [`StoreError`]: sqlx's, or rusqlite's on the SQLite read path.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::UsernameTaken,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(error)),
            _ => StoreError::Query(Box::new(error)),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        match error.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked | CannotOpen | SystemIoFailure | OutOfMemory) => {
                StoreError::Unavailable(Box::new(error))
            }
            _ => StoreError::Query(Box::new(error)),
        }
    }
}

fn pool_options<DB: sqlx::Database>(max_connections: u32) -> PoolOptions<DB> {
    PoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// A connection pool to one of the two supported databases. On a SQLite file, profile reads
/// have their own read-only connections; an in-memory database is read through sqlx.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqlitePool, Option<Arc<SqliteReader>>),
    Postgres(PgPool),
}

/// Runs the same query code against whichever pool the store holds.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            Store::Sqlite($pool, _) => $body,
            Store::Postgres($pool) => $body,
        }
    };
}

impl Store {
    /// Opens a pool and brings the schema up to date.
    pub async fn connect(url: &str, backend: Backend, max_connections: u32) -> Result<Self, StoreError> {
        let connect = |e| StoreError::Connect(backend, e);
        let store = match backend {
            Backend::Sqlite => {
                let mut options = SqliteConnectOptions::from_str(url)
                    .map_err(connect)?
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal);
                // `mode=` in the URL decides on its own; otherwise the file is created.
                if !url.contains("mode=") {
                    options = options.create_if_missing(true);
                }
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let reader = (!in_memory).then(|| {
                    let path = options.get_filename().to_owned();
                    let reader = Arc::new(SqliteReader::new(path, max_connections, ACQUIRE_TIMEOUT));
                    reader.spawn_sweeper();
                    reader
                });
                Store::Sqlite(
                    pool_options(max_connections)
                        .connect_with(options)
                        .await
                        .map_err(connect)?,
                    reader,
                )
            }
            Backend::Postgres => {
                let options = PgConnectOptions::from_str(url).map_err(connect)?;
                Store::Postgres(
                    pool_options(max_connections)
                        .connect_with(options)
                        .await
                        .map_err(connect)?,
                )
            }
        };

        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        with_pool!(&store, pool => migrator.run(pool).await).map_err(|e| StoreError::Migrate(backend, e))?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(..) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop)?);
        Ok(())
    }

    pub async fn user(&self, id: i64) -> Result<Option<User>, StoreError> {
        if let Store::Sqlite(_, Some(reader)) = self {
            return reader.user(id).await;
        }
        const SQL: &str = "SELECT id, username, email FROM users WHERE id = $1";
        let user =
            with_pool!(self, pool => sqlx::query_as::<_, User>(SQL).bind(id).fetch_optional(pool).await?);
        Ok(user)
    }

    /// Tells the SQLite reader that a write was made (or tried), so later reads see it.
    fn wrote(&self) {
        if let Store::Sqlite(_, Some(reader)) = self {
            reader.wrote();
        }
    }

    /// Inserts a user with the next free id.
    pub async fn create_user(&self, username: &str, email: &str) -> Result<User, StoreError> {
        const SQL: &str = "INSERT INTO users (username, email) VALUES ($1, $2) RETURNING id, username, email";
        let user = with_pool!(self, pool => {
            sqlx::query_as::<_, User>(SQL).bind(username).bind(email).fetch_one(pool).await
        });
        self.wrote();
        Ok(user?)
    }

    /// Changes the given fields of a user; `None` when there is no such user.
    pub async fn update_user(
        &self,
        id: i64,
        username: Option<&str>,
        email: Option<&str>,
    ) -> Result<Option<User>, StoreError> {
        const SQL: &str = "UPDATE users SET username = COALESCE($2, username), email = COALESCE($3, email) \
                           WHERE id = $1 RETURNING id, username, email";
        let user = with_pool!(self, pool => {
            sqlx::query_as::<_, User>(SQL).bind(id).bind(username).bind(email).fetch_optional(pool).await
        });
        self.wrote();
        Ok(user?)
    }

    /// Creates users 1 to `count` as the seed simulated them, skipping ids and usernames that
    /// exist. Returns how many were inserted.
    pub async fn create_demo_users(&self, count: u32) -> Result<u64, StoreError> {
        // A recursive CTE generates each batch inside the database, in the SQL both dialects share.
        const SQL: &str = "WITH RECURSIVE seq(n) AS ( \
                               SELECT CAST($1 AS BIGINT) UNION ALL SELECT n + 1 FROM seq WHERE n < $2 \
                           ) \
                           INSERT INTO users (id, username, email) \
                           SELECT n, 'user_' || n, 'user' || n || '@example.com' FROM seq WHERE true \
                           ON CONFLICT DO NOTHING";
        let mut inserted = 0;
        let mut first = 1;
        while first <= count {
            let last = first.saturating_add(DEMO_BATCH - 1).min(count);
            let batch = with_pool!(self, pool => {
                sqlx::query(SQL).bind(i64::from(first)).bind(i64::from(last)).execute(pool).await.map(|done| done.rows_affected())
            });
            self.wrote();
            inserted += batch?;
            first = match last.checked_add(1) {
                Some(next) => next,
                None => break,
            };
        }

        // PostgreSQL's identity sequence does not see explicit ids; move it past them.
        if let Store::Postgres(pool) = self {
            sqlx::query(
                "SELECT setval(pg_get_serial_sequence('users', 'id'), \
                 (SELECT COALESCE(MAX(id), 0) + 1 FROM users), false)",
            )
            .execute(pool)
            .await?;
        }
        Ok(inserted)
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        if let Store::Sqlite(_, Some(reader)) = self {
            reader.close();
        }
        with_pool!(self, pool => pool.close().await);
    }
}
