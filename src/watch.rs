//! The file trigger of reloads: watches the *directories* of the config file (and of the files
//! it names), debounces, and asks the one `reload()` to check the file.
//!
//! Why directories: an editor that replaces the file by rename, and a Kubernetes ConfigMap
//! (`fulcrum.toml -> ..data/fulcrum.toml`, `..data` re-pointed by an atomic rename), both leave
//! a watch on the file itself pointing at an inode that no longer is the config. Watching the
//! parent directory (and the directory of the resolved target, re-resolved after each event)
//! sees all three kinds of update; the path is read afresh on each reload, and unchanged bytes
//! (a touch, another file in the directory) are skipped by hash.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::reload::{Reloader, Trigger};

/// Quiet time after the last event before the file is read.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// The running watcher; dropping it stops watching.
#[derive(Debug)]
pub struct ConfigWatcher(AbortHandle);

impl Drop for ConfigWatcher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts watching the reloader's files on its control runtime.
pub fn spawn(reloader: Arc<Reloader>) -> notify::Result<ConfigWatcher> {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    let mut dirs = Dirs {
        watcher,
        watched: HashSet::new(),
    };
    dirs.update(&reloader.watched_files());
    let rt = reloader.control().clone();
    let task = rt.spawn(run(reloader, dirs, rx));
    Ok(ConfigWatcher(task.abort_handle()))
}

struct Dirs {
    watcher: notify::RecommendedWatcher,
    watched: HashSet<PathBuf>,
}

impl Dirs {
    /// Watches the directory of every file and of its resolved target (symlinks re-resolved).
    fn update(&mut self, files: &[PathBuf]) {
        for file in files {
            let resolved = std::fs::canonicalize(file).ok();
            let dirs = [Some(file.as_path()), resolved.as_deref()]
                .into_iter()
                .flatten()
                .filter_map(parent);
            for dir in dirs {
                if self.watched.contains(&dir) {
                    continue;
                }
                match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        tracing::debug!(dir = %dir.display(), "watching");
                        self.watched.insert(dir);
                    }
                    Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch"),
                }
            }
        }
    }
}

fn parent(file: &Path) -> Option<PathBuf> {
    match file.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(p) => Some(p.to_path_buf()),
        None => None,
    }
}

async fn run(reloader: Arc<Reloader>, mut dirs: Dirs, mut events: mpsc::UnboundedReceiver<()>) {
    loop {
        if events.recv().await.is_none() {
            return;
        }
        // Debounce: wait until the directory has been quiet for DEBOUNCE.
        loop {
            match tokio::time::timeout(DEBOUNCE, events.recv()).await {
                Ok(Some(())) => continue,
                Ok(None) => return,
                Err(_) => break,
            }
        }
        let r = Arc::clone(&reloader);
        // Errors are logged and recorded by reload() itself.
        let _ = tokio::task::spawn_blocking(move || r.reload_if_changed(Trigger::File)).await;
        dirs.update(&reloader.watched_files());
    }
}
