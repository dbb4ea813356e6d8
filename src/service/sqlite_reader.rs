//! The profile read on SQLite: a few read-only connections, read from directly.
//!
//! sqlx's SQLite driver runs every connection on its own thread and passes each query and row
//! across threads, which costs several times the lookup itself. Here a read takes an idle
//! connection, runs the cached prepared statement and puts the connection back. Writes,
//! migrations and the readiness check stay on sqlx; this module only reads.
//!
//! Starting and ending a read transaction takes WAL locks, which cost more than the lookup:
//! system calls, and a process-wide mutex the request threads contend for. So a connection
//! keeps its read transaction (its snapshot) across reads, and starts a new one when
//!
//! - this process has written to the database since the snapshot began ([`SqliteReader::wrote`]):
//!   writes through the service are seen by the very next read;
//! - the snapshot is [`SNAPSHOT_MAX_AGE`] old: a write by another process to the same file is
//!   seen within that time.
//!
//! An idle connection's snapshot is ended once it is that old by a sweep every
//! [`SWEEP_INTERVAL`], so that a quiet reader never holds a checkpoint back for long.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;

use super::store::{StoreError, User};

/// The profile read, the same SQL as on PostgreSQL.
const USER_SQL: &str = "SELECT id, username, email FROM users WHERE id = ?1";

/// The longest a read may go on seeing a snapshot that misses another process's write.
// Limitation: a profile changed in the same SQLite file by another process (a second replica on
// a shared volume, or a manual edit) may be served as it was for up to this long.
pub const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(10);

/// How often idle connections give up snapshots older than [`SNAPSHOT_MAX_AGE`].
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Read-only connections to one SQLite file, opened on first need and at most `max` at a time.
#[derive(Debug)]
pub struct SqliteReader {
    path: PathBuf,
    idle: Mutex<Vec<ReadConnection>>,
    permits: Arc<Semaphore>,
    wait: Duration,
    /// Counts this process's writes, so that a snapshot taken before one is not read again.
    writes: AtomicU64,
}

/// A connection and the read transaction it holds open, if any.
#[derive(Debug)]
struct ReadConnection {
    connection: Connection,
    snapshot: Option<Snapshot>,
}

/// When a read transaction began, and how many writes this process had made by then.
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    writes: u64,
    began: Instant,
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
            writes: AtomicU64::new(0),
        }
    }

    /// Records that this process committed a write: every later read starts a new snapshot.
    pub fn wrote(&self) {
        // NB: called after the commit, so a snapshot begun after this load sees the write.
        self.writes.fetch_add(1, Ordering::Release);
    }

    /// Ends idle connections' old snapshots every [`SWEEP_INTERVAL`] until the reader is closed
    /// or dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let reader: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(SWEEP_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                match reader.upgrade() {
                    Some(reader) if !reader.permits.is_closed() => reader.end_old_snapshots(Instant::now()),
                    _ => return,
                }
            }
        });
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

    /// Ends the snapshots of idle connections that are [`SNAPSHOT_MAX_AGE`] old at `now`.
    fn end_old_snapshots(&self, now: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain_mut(|read| {
            let old = read
                .snapshot
                .is_some_and(|s| now.saturating_duration_since(s.began) >= SNAPSHOT_MAX_AGE);
            // NB: a connection whose transaction cannot be ended is dropped, which ends it.
            !old || read.end_snapshot().is_ok()
        });
    }

    fn take_idle(&self) -> Option<ReadConnection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// One read on an idle or new connection, waiting at most `busy_wait` for a lock.
    fn read(&self, id: i64, busy_wait: Duration) -> rusqlite::Result<Option<User>> {
        let mut read = match self.take_idle() {
            Some(read) => read,
            None => ReadConnection {
                connection: self.open()?,
                snapshot: None,
            },
        };
        let user = read.user(id, self.writes.load(Ordering::Acquire), busy_wait);

        // NB: a connection that failed other than by finding the database busy is dropped
        // rather than reused; the next read opens a fresh one.
        if user.as_ref().map_or_else(is_busy, |_| true) {
            self.put_back(read);
        }
        user
    }

    fn put_back(&self, connection: ReadConnection) {
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

impl ReadConnection {
    /// Reads a user in a snapshot that has seen `writes` of this process's writes and is younger
    /// than [`SNAPSHOT_MAX_AGE`], beginning a new one when the held one is not.
    fn user(&mut self, id: i64, writes: u64, busy_wait: Duration) -> rusqlite::Result<Option<User>> {
        let now = Instant::now();
        let current = self
            .snapshot
            .is_some_and(|s| s.writes == writes && now.saturating_duration_since(s.began) < SNAPSHOT_MAX_AGE);
        if !current {
            self.end_snapshot()?;
            self.connection.busy_timeout(busy_wait)?;
            // The transaction takes its snapshot at the first read below, after `writes` was
            // loaded, so it holds at least those writes.
            self.connection.execute_batch("BEGIN DEFERRED")?;
            self.snapshot = Some(Snapshot { writes, began: now });
        }
        let user = read_user(&self.connection, id);
        if user.is_err() {
            // NB: the transaction is ended so that a retry starts from a clean state; if even
            // that fails, the connection is dropped by the caller or on the next error.
            let _ = self.end_snapshot();
        }
        user
    }

    /// Ends the read transaction, if one is open.
    fn end_snapshot(&mut self) -> rusqlite::Result<()> {
        self.snapshot = None;
        if self.connection.is_autocommit() {
            return Ok(());
        }
        self.connection.execute_batch("ROLLBACK")
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
    use std::time::{Duration, Instant};

    use super::super::config::Backend;
    use super::super::store::Store;
    use super::{SNAPSHOT_MAX_AGE, SWEEP_INTERVAL};

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

    /// A read-write connection of its own, as another process would have.
    fn outside_writer(dir: &tempfile::TempDir) -> rusqlite::Connection {
        rusqlite::Connection::open(dir.path().join("users.db")).unwrap()
    }

    fn rename_outside(writer: &rusqlite::Connection, id: i64, email: &str) {
        let changed = writer
            .execute(
                "UPDATE users SET email = ?1 WHERE id = ?2",
                rusqlite::params![email, id],
            )
            .unwrap();
        assert_eq!(changed, 1);
    }

    /// The first column of `PRAGMA wal_checkpoint(TRUNCATE)`: 1 when a reader held it back.
    fn checkpoint_blocked(writer: &rusqlite::Connection) -> bool {
        writer.busy_timeout(Duration::ZERO).unwrap();
        let blocked: i64 = writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .unwrap();
        blocked == 1
    }

    #[tokio::test]
    async fn a_write_from_outside_the_service_is_read_once_the_snapshot_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        store.create_demo_users(3).await.unwrap();
        assert_eq!(store.user(2).await.unwrap().unwrap().email, "user2@example.com");

        rename_outside(&outside_writer(&dir), 2, "two@example.org");
        tokio::time::sleep(2 * SNAPSHOT_MAX_AGE).await;
        assert_eq!(store.user(2).await.unwrap().unwrap().email, "two@example.org");
        store.close().await;
    }

    #[tokio::test]
    async fn an_idle_snapshot_is_ended_so_checkpoints_complete() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(&dir).await;
        store.create_demo_users(3).await.unwrap();
        let writer = outside_writer(&dir);
        assert!(!checkpoint_blocked(&writer), "nothing reads yet");

        // The read leaves its connection idle, holding a snapshot older than the next write.
        store.user(1).await.unwrap();
        rename_outside(&writer, 1, "one@example.org");
        assert!(checkpoint_blocked(&writer), "the held snapshot pins the log");

        let deadline = Instant::now() + 5 * SWEEP_INTERVAL;
        while checkpoint_blocked(&writer) {
            assert!(
                Instant::now() < deadline,
                "the sweep never ended the idle snapshot"
            );
            tokio::time::sleep(SWEEP_INTERVAL / 10).await;
        }
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
