//! Reloading the configuration when its files change, without a signal
//! (`[reload] watch`): an editor's save, a ConfigMap update, a rotated
//! certificate.
//!
//! The files are read whole every interval and compared by a hash of their
//! contents (an mtime can stay the same across a quick rewrite, and a
//! swapped symlink keeps the path). A change is reloaded only once it has
//! stayed the same for one interval, so a file caught half-written is
//! neither reloaded nor reported; a reload that is refused is reported
//! once, and tried again when the files change again.

use super::Shared;
use crate::config::Config;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A hash of the contents of every file a load of `config` reads (an
/// unreadable file counts by its error).
pub fn fingerprint(config: &Config) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for path in config.files_read() {
        path.hash(&mut hasher);
        match std::fs::read(&path) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(e) => e.kind().hash(&mut hasher),
        }
    }
    hasher.finish()
}

/// How often the files are looked at while watching is off, to notice a
/// reload (by SIGHUP) that turns it on.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// What the watcher remembers between looks at the files.
#[derive(Debug, Default)]
struct Looks {
    /// The fingerprint at the previous look.
    seen: Option<u64>,
    /// The last change whose reload was refused.
    refused: Option<u64>,
}

impl Looks {
    /// Whether the files, whose fingerprint is `now`, are to be reloaded
    /// when the running config was loaded from `loaded`: they changed,
    /// held still since the previous look, and were not refused already.
    fn reload_wanted(&mut self, now: u64, loaded: u64) -> bool {
        let settled = self.seen.replace(now) == Some(now);
        now != loaded && settled && self.refused != Some(now)
    }

    /// A look while watching is off: the next change starts afresh.
    fn forget(&mut self) {
        self.seen = None;
    }
}

/// Reloads the configuration whenever its files change and then hold
/// still for one `[reload] watch` interval. Runs for as long as the proxy.
pub async fn watch_files(shared: Arc<Shared>) {
    let mut looks = Looks::default();
    loop {
        let config = shared.config.load_full();
        let every = config.reload.watch;
        if every.is_zero() || config.source.is_none() {
            looks.forget();
            tokio::time::sleep(IDLE_LOOK).await;
            continue;
        }
        tokio::time::sleep(every).await;
        // Off the runtime's thread: a slow file system must not hold up
        // the listeners and the admin port that share it.
        let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&config)).await else {
            continue;
        };
        if !looks.reload_wanted(now, shared.files_loaded.load(Ordering::Relaxed)) {
            continue;
        }
        match shared.reload() {
            Ok(()) => {
                looks.refused = None;
                tracing::info!("configuration files changed: reloaded");
            }
            Err(e) => {
                looks.refused = Some(now);
                tracing::warn!(error = %e, "configuration files changed, reload refused; the running configuration stays");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_reloaded_once_it_holds_still_for_one_look() {
        let mut looks = Looks::default();
        assert!(!looks.reload_wanted(1, 1), "unchanged");
        assert!(!looks.reload_wanted(2, 1), "half-written: seen once");
        assert!(!looks.reload_wanted(3, 1), "still being written");
        assert!(looks.reload_wanted(3, 1), "held still");
        // Reloaded: the files' fingerprint is now the loaded one.
        assert!(!looks.reload_wanted(3, 3));
    }

    #[test]
    fn a_refused_change_is_not_tried_again_until_the_files_change() {
        let mut looks = Looks::default();
        looks.reload_wanted(2, 1);
        assert!(looks.reload_wanted(2, 1));
        looks.refused = Some(2);
        assert!(!looks.reload_wanted(2, 1), "the same refused content");
        assert!(!looks.reload_wanted(2, 1));
        assert!(!looks.reload_wanted(4, 1));
        assert!(looks.reload_wanted(4, 1), "new content is tried");
        // Put back as it was loaded: nothing to do.
        looks.reload_wanted(1, 1);
        assert!(!looks.reload_wanted(1, 1));
    }

    #[test]
    fn after_watching_was_off_a_change_waits_one_more_look() {
        let mut looks = Looks::default();
        looks.reload_wanted(2, 1);
        looks.forget();
        assert!(!looks.reload_wanted(2, 1));
        assert!(looks.reload_wanted(2, 1));
    }
}
