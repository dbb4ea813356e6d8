//! The profile read on SQLite: a few read-only connections, read from directly.
//!
//! sqlx's SQLite driver runs every connection on its own thread and passes each query and row
//! across threads, which costs several times the lookup itself. Here a read takes an idle
//! connection, runs the cached prepared statement and puts the connection back. Writes,
//! migrations and the readiness check stay on sqlx; this module only reads.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;

use super::store::{StoreError, User};

/// The profile read, the same SQL as on PostgreSQL.
const USER_SQL: &str = "SELECT id, username, email FROM users WHERE id = ?1";

/// Read-only connections to one SQLite file, opened on first need and at most `max` at a time.
#[derive(Debug)]
pub struct SqliteReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    wait: Duration,
}

/// No read connection became free in time.
#[derive(Debug, thiserror::Error)]
#[error("no SQLite read connection free within {0:?}")]
struct NoFreeConnection(Duration);

impl SqliteReader {
    /// Reads `path` with up to `max` connections; a read waits at most `wait` for one, and a busy
    /// database as long.
    pub fn new(path: PathBuf, max: u32, wait: Duration) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max as usize)),
            wait,
        }
    }

    pub async fn user(self: &Arc<Self>, id: i64) -> Result<Option<User>, StoreError> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::Unavailable(Box::new(NoFreeConnection(self.wait))))?
            .map_err(|closed| StoreError::Unavailable(Box::new(closed)))?;

        // NB: a read by primary key from cached pages takes a few microseconds, less than handing
        // it to a blocking thread (measured: about 25 000 against 16 000 reads a second through
        // the whole service), so it runs on this thread, but never waits for a lock here: a read
        // that finds the database busy is retried on a blocking thread, which may wait.
        match self.read(id, Duration::ZERO) {
            Err(error) if is_busy(&error) => {}
            done => return done.map_err(StoreError::from),
        }
        let reader = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            reader.read(id, reader.wait)
        })
        .await
        .map_err(|e| StoreError::Query(Box::new(e)))?
        .map_err(StoreError::from)
    }

    /// Drops the idle connections; reads in flight finish on theirs.
    pub fn close(&self) {
        self.permits.close();
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn take_idle(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// One read on an idle or new connection, waiting at most `busy_wait` for a lock.
    fn read(&self, id: i64, busy_wait: Duration) -> rusqlite::Result<Option<User>> {
        let connection = match self.take_idle() {
            Some(connection) => connection,
            None => self.open()?,
        };
        connection.busy_timeout(busy_wait)?;
        let user = read_user(&connection, id);

        // NB: a connection that failed other than by finding the database busy is dropped
        // rather than reused; the next read opens a fresh one.
        if user.as_ref().map_or_else(is_busy, |_| true) {
            self.put_back(connection);
        }
        user
    }

    fn put_back(&self, connection: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(&self.path, flags)
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn read_user(connection: &Connection, id: i64) -> rusqlite::Result<Option<User>> {
    let mut statement = connection.prepare_cached(USER_SQL)?;
    statement
        .query_row([id], |row| {
            Ok(User {
                id: row.get(0)?,
                username: row.get(1)?,
                email: row.get(2)?,
            })
        })
        .optional()
}

#[cfg(test)]
mod tests {
    use super::super::config::Backend;
    use super::super::store::Store;

    async fn file_store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("users.db").display());
        Store::connect(&url, Backend::Sqlite, 2).await.unwrap()
    }

    #[tokio::test]
    async fn reads_see_every_committed_write_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        assert!(matches!(&store, Store::Sqlite(_, Some(_))));
        assert_eq!(store.user(1).await.unwrap(), None);

        let created = store.create_user("ada", "ada@example.com").await.unwrap();
        assert_eq!(store.user(created.id).await.unwrap(), Some(created.clone()));

        store
            .update_user(created.id, None, Some("ada@example.org"))
            .await
            .unwrap();
        let read = store.user(created.id).await.unwrap().unwrap();
        assert_eq!(read.email, "ada@example.org");
        store.close().await;
    }

    #[tokio::test]
    async fn concurrent_reads_share_at_most_the_configured_connections() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        store.create_demo_users(50).await.unwrap();

        let reads = (1..=50).map(|id| {
            let store = store.clone();
            tokio::spawn(async move { store.user(id).await })
        });
        for (id, read) in (1..=50).zip(futures::future::join_all(reads).await) {
            assert_eq!(read.unwrap().unwrap().unwrap().id, id);
        }
        let Store::Sqlite(_, Some(reader)) = &store else {
            unreachable!("a SQLite file has a reader")
        };
        assert!(reader.idle.lock().unwrap().len() <= 2);
        store.close().await;
    }

    #[tokio::test]
    async fn an_in_memory_database_is_read_through_sqlx() {
        let store = Store::connect("sqlite::memory:", Backend::Sqlite, 1)
            .await
            .unwrap();
        assert!(matches!(&store, Store::Sqlite(_, None)));
        let created = store.create_user("ada", "ada@example.com").await.unwrap();
        assert_eq!(store.user(created.id).await.unwrap(), Some(created));
    }
}
