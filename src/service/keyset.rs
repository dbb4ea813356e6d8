//! The key set the service trusts right now, and the poller that reloads it from a mounted
//! AuthKeyRing Secret or JWKS ConfigMap.
//!
//! Kubernetes updates a mounted volume by writing a new timestamped directory and renaming a
//! `..data` symlink over the old one; `jwks.json` is a symlink through `..data`. Opening the path
//! afresh on every poll therefore reads either the whole old file or the whole new one, and
//! comparing a digest of the content (not the mtime, which the swap may not change) tells whether
//! it changed. A swap replaces the whole `Arc<KeySet>` at once, so a request verifies against one
//! set from start to end.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::digest;
use tokio::sync::watch;

use super::metrics::{Metrics, ReloadResult};
use crate::token::{KeySet, KeySetError};

/// The file read from `AUTH_KEYRING_DIR`.
pub const JWKS_FILE: &str = "jwks.json";

/// The current key set, swapped whole.
pub struct LiveKeys {
    current: RwLock<Arc<KeySet>>,
}

impl LiveKeys {
    pub fn new(set: KeySet) -> Self {
        Self {
            current: RwLock::new(Arc::new(set)),
        }
    }

    /// The key set as of now; later swaps do not affect the returned one.
    pub fn get(&self) -> Arc<KeySet> {
        // NB: a poisoned lock still holds a complete Arc: swaps only ever assign a whole value.
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn swap(&self, set: KeySet) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

/// Why a poll could not load the key ring directory's `jwks.json`.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a usable JWK Set")]
    Parse {
        path: PathBuf,
        #[source]
        source: KeySetError,
    },
}

/// What one poll found.
#[derive(Debug)]
pub enum Poll {
    /// The content is the same as last time (good or bad).
    Unchanged,
    /// New content was loaded and swapped in; the number of keys it holds.
    Reloaded(usize),
    /// New content could not be used; the previous key set stays.
    Failed(ReloadError),
}

/// Watches one `jwks.json` by content.
pub struct DirReloader {
    path: PathBuf,
    memo_capacity: usize,
    last_seen: Option<digest::Digest>,
    last_error_kind: Option<io::ErrorKind>,
}

impl DirReloader {
    /// Watches `dir/jwks.json`; each loaded key set remembers up to `memo_capacity` tokens.
    pub fn new(dir: &Path, memo_capacity: usize) -> Self {
        Self {
            path: dir.join(JWKS_FILE),
            memo_capacity,
            last_seen: None,
            last_error_kind: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file and swaps in its key set if the content changed and parses.
    pub fn poll(&mut self, keys: &LiveKeys) -> Poll {
        let read = std::fs::read(&self.path);
        self.apply(read, keys)
    }

    /// Swaps in the key set of freshly read content if it changed and parses.
    fn apply(&mut self, read: io::Result<Vec<u8>>, keys: &LiveKeys) -> Poll {
        let content = match read {
            Ok(content) => zeroize::Zeroizing::new(content),
            Err(source) => {
                // The same unreadable state is reported once, not at every poll.
                if self.last_error_kind == Some(source.kind()) {
                    return Poll::Unchanged;
                }
                self.last_error_kind = Some(source.kind());
                self.last_seen = None;
                return Poll::Failed(ReloadError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        self.last_error_kind = None;

        let seen = digest::digest(&digest::SHA256, &content);
        if self.last_seen.is_some_and(|last| last.as_ref() == seen.as_ref()) {
            return Poll::Unchanged;
        }
        self.last_seen = Some(seen);

        match KeySet::from_jwks(&content) {
            Ok(set) => {
                let set = set.with_memo_capacity(self.memo_capacity);
                let count = set.len();
                keys.swap(set);
                Poll::Reloaded(count)
            }
            Err(source) => Poll::Failed(ReloadError::Parse {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Polls every `interval` until `stop` changes, logging and counting what each poll finds.
    pub async fn run(
        mut self,
        keys: Arc<LiveKeys>,
        metrics: Arc<Metrics>,
        interval: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            let read = tokio::fs::read(&self.path).await;
            let outcome = self.apply(read, &keys);
            report(&outcome, &keys, &metrics);
        }
    }
}

/// Logs and counts the outcome of one poll.
pub fn report(outcome: &Poll, keys: &LiveKeys, metrics: &Metrics) {
    match outcome {
        Poll::Unchanged => {}
        Poll::Reloaded(count) => {
            let set = keys.get();
            let kids: Vec<&str> = set.describe().into_iter().filter_map(|(kid, _)| kid).collect();
            tracing::info!(keys = count, kids = ?kids, "key set loaded");
            metrics.key_reload(ReloadResult::Success);
            metrics.set_keys_loaded(*count);
        }
        Poll::Failed(error) => {
            tracing::warn!(error = %error, cause = %error_cause(error), "key set not reloaded; keeping the last good one");
            metrics.key_reload(ReloadResult::Error);
        }
    }
}

fn error_cause(error: &ReloadError) -> String {
    match error {
        ReloadError::Read { source, .. } => source.to_string(),
        ReloadError::Parse { source, .. } => source.to_string(),
    }
}
