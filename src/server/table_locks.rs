//! Tables some session holds a `LOCK TABLES ... WRITE` on. On a server,
//! another session's read of such a table waits until the lock is
//! released, so it never sees the locking session's work half done; a
//! replica takes no such lock, and there the read would see each of the
//! locking session's statements as it is applied. Reads of these tables
//! therefore run on the primary, where they wait as on a server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The write-locked tables of every session, by unqualified name (a name
/// locked in one database also sends reads of the same name in others to
/// the primary, which is right either way).
#[derive(Debug, Default)]
pub struct WriteLocks {
    /// Locks held, all names together: zero on the common path, read with
    /// one atomic load per statement.
    held: AtomicUsize,
    names: Mutex<HashMap<String, usize>>,
}

impl WriteLocks {
    /// Whether any session holds a write lock now.
    pub fn any(&self) -> bool {
        self.held.load(Ordering::Relaxed) > 0
    }

    /// Whether a table of this unqualified name is write-locked now.
    pub fn holds(&self, name: &str) -> bool {
        self.names.lock().expect("write locks").contains_key(name)
    }

    /// Registers `names` as write-locked until the returned value drops
    /// (UNLOCK TABLES, another LOCK TABLES, the session's end).
    pub fn hold(self: &Arc<Self>, names: Vec<String>) -> HeldWriteLocks {
        let mut held = self.names.lock().expect("write locks");
        for name in &names {
            *held.entry(name.clone()).or_insert(0) += 1;
        }
        self.held.fetch_add(names.len(), Ordering::Relaxed);
        HeldWriteLocks { locks: self.clone(), names }
    }
}

/// One session's write-locked tables, registered while this lives.
#[derive(Debug)]
pub struct HeldWriteLocks {
    locks: Arc<WriteLocks>,
    names: Vec<String>,
}

impl Drop for HeldWriteLocks {
    fn drop(&mut self) {
        let mut held = self.locks.names.lock().expect("write locks");
        for name in &self.names {
            if let Some(count) = held.get_mut(name) {
                *count -= 1;
                if *count == 0 {
                    held.remove(name);
                }
            }
        }
        self.locks.held.fetch_sub(self.names.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_held_while_any_session_holds_it() {
        let locks = Arc::new(WriteLocks::default());
        assert!(!locks.any());
        let a = locks.hold(vec!["t".into(), "u".into()]);
        let b = locks.hold(vec!["t".into()]);
        assert!(locks.any() && locks.holds("t") && locks.holds("u"));
        drop(a);
        assert!(locks.holds("t") && !locks.holds("u"));
        drop(b);
        assert!(!locks.any() && !locks.holds("t"));
        drop(locks.hold(Vec::new()));
        assert!(!locks.any());
    }
}
