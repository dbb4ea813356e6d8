//! An opt-in, short-lived cache of serialized profiles in front of the database, for the read
//! path. Off by default: every profile read goes to the database unless `USER_CACHE_TTL` is set.
//!
//! A profile read is answered from here when a copy younger than the TTL exists; writes through
//! this process drop the copy at once. Only found users are cached, so a user created elsewhere is
//! visible on the next read.
//!
//! Limitation: a profile changed through another replica may be served as it was for up to the
//! TTL (`USER_CACHE_TTL`, 0 by default, which turns the cache off).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;

/// Serialized profiles by user id, each with the moment it stops being fresh.
pub struct UserCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<i64, (Instant, Bytes)>>,
    /// Bumped by every write, so that a read that raced a write does not cache what it read.
    writes: AtomicU64,
}

/// What a reader must hand back when caching what it read: the write count before it read.
#[derive(Clone, Copy, Debug)]
pub struct ReadTicket(u64);

impl UserCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
            writes: AtomicU64::new(0),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero() && self.capacity > 0
    }

    /// A fresh copy of the profile, if one is cached.
    pub fn get(&self, id: i64) -> Option<Bytes> {
        if !self.enabled() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&id)
            .filter(|(fresh_until, _)| Instant::now() < *fresh_until)
            .map(|(_, body)| body.clone())
    }

    /// Taken before reading the database.
    pub fn ticket(&self) -> ReadTicket {
        ReadTicket(self.writes.load(Ordering::Acquire))
    }

    /// Caches what was read, unless a write happened since the ticket was taken.
    pub fn put(&self, id: i64, body: Bytes, ticket: ReadTicket) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.writes.load(Ordering::Acquire) != ticket.0 {
            return;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&id) {
            entries.retain(|_, (fresh_until, _)| now < *fresh_until);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(id, (now + self.ttl, body));
    }

    /// Drops the copy of a profile that was just written.
    pub fn invalidate(&self, id: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.writes.fetch_add(1, Ordering::AcqRel);
        entries.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &'static str) -> Bytes {
        Bytes::from_static(text.as_bytes())
    }

    #[test]
    fn a_cached_profile_is_served_until_it_expires() {
        let cache = UserCache::new(Duration::from_millis(50), 10);
        cache.put(7, body("seven"), cache.ticket());
        assert_eq!(cache.get(7), Some(body("seven")));
        assert_eq!(cache.get(8), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(7), None);
    }

    #[test]
    fn a_write_drops_the_copy_and_refuses_reads_that_raced_it() {
        let cache = UserCache::new(Duration::from_secs(60), 10);
        cache.put(7, body("old"), cache.ticket());
        let before_write = cache.ticket();
        cache.invalidate(7);
        assert_eq!(cache.get(7), None);

        cache.put(7, body("read before the write"), before_write);
        assert_eq!(cache.get(7), None);
        cache.put(7, body("new"), cache.ticket());
        assert_eq!(cache.get(7), Some(body("new")));
    }

    #[test]
    fn a_full_cache_makes_room_only_from_expired_copies() {
        let cache = UserCache::new(Duration::from_millis(40), 2);
        cache.put(1, body("1"), cache.ticket());
        cache.put(2, body("2"), cache.ticket());
        cache.put(3, body("3"), cache.ticket());
        assert_eq!(cache.get(3), None);

        std::thread::sleep(Duration::from_millis(50));
        cache.put(3, body("3"), cache.ticket());
        assert_eq!(cache.get(3), Some(body("3")));
    }

    #[test]
    fn a_zero_ttl_turns_the_cache_off() {
        let cache = UserCache::new(Duration::ZERO, 10);
        cache.put(7, body("seven"), cache.ticket());
        assert_eq!(cache.get(7), None);
    }
}
