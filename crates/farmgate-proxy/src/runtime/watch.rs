//! Reloading whenever the configuration file or any file it names (certificates, keys, trust
//! bundles, CRLs) changes on disk.
//!
//! Directories are watched, not files, so atomic renames and Kubernetes-style `..data` symlink
//! swaps are seen; events are debounced; a reload happens only when the content of a watched
//! file actually changed; and a slow periodic re-read catches anything the watcher missed.
//! A reload that fails keeps the running generation and is counted.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::server::Server;

/// Quiet time after the last file event before reloading (editors and `cp` write in steps).
const DEBOUNCE: Duration = Duration::from_millis(300);
/// Longest a burst of events may postpone a reload.
const DEBOUNCE_MAX: Duration = Duration::from_secs(2);
/// The safety net: how often files are re-read even without events.
const REREAD: Duration = Duration::from_secs(300);

/// Watch the configuration at `path` and every file it names; reload when their content
/// changes. The returned future runs until the server shuts down.
///
/// The files are fingerprinted and watched when this is called, not when the future first
/// runs, so a change made in between is not missed.
pub fn watch(server: Arc<Server>, path: PathBuf) -> impl Future<Output = ()> + Send {
    let files = watched_files(&server, &path);
    let (tx, events) = mpsc::unbounded_channel();
    let watcher = start_watcher(&files, tx.clone());
    let last = fingerprint(&files);
    let stopping = server.stopping_signal();
    let state = Watch {
        server,
        path,
        files,
        tx,
        events,
        watcher,
        last,
    };
    state.run(stopping)
}

/// What the watch loop keeps between changes.
struct Watch {
    server: Arc<Server>,
    path: PathBuf,
    files: Vec<PathBuf>,
    /// One channel for the loop's whole life: events a replaced watcher sent are not lost.
    tx: mpsc::UnboundedSender<()>,
    events: mpsc::UnboundedReceiver<()>,
    /// Kept alive while its events matter; `None` if the platform watcher failed.
    watcher: Option<notify::RecommendedWatcher>,
    /// The fingerprint of `files` as last loaded (or last found broken).
    last: u64,
}

impl Watch {
    async fn run(mut self, mut stopping: watch::Receiver<bool>) {
        let mut reread = tokio::time::interval(REREAD);
        reread.reset();
        loop {
            if *stopping.borrow_and_update() {
                return;
            }
            tokio::select! {
                event = self.events.recv(), if self.watcher.is_some() => {
                    if event.is_none() {
                        self.watcher = None;
                        continue;
                    }
                    settle(&mut self.events).await;
                }
                _ = reread.tick() => {}
                _ = stopping.changed() => return,
            }
            // Taken before the reload reads the files: a change made while it runs differs
            // from this and is picked up by the next event or re-read.
            let now = fingerprint(&self.files);
            if now == self.last {
                continue;
            }
            // A failed reload is logged and counted; the fingerprint is kept, so the same broken
            // content is not retried until it changes again.
            let _ = self.server.reload_from(&self.path).await;
            let files = watched_files(&self.server, &self.path);
            if files == self.files {
                self.last = now;
            } else {
                // The new generation names other files: watch them too (the old watcher stops
                // only after the new one has started).
                self.watcher = start_watcher(&files, self.tx.clone());
                self.last = fingerprint(&files);
                self.files = files;
            }
        }
    }
}

/// Wait until events stop arriving for [`DEBOUNCE`], or [`DEBOUNCE_MAX`] passed.
async fn settle(events: &mut mpsc::UnboundedReceiver<()>) {
    let deadline = tokio::time::Instant::now() + DEBOUNCE_MAX;
    while let Ok(Some(())) = tokio::time::timeout_at(
        deadline.min(tokio::time::Instant::now() + DEBOUNCE),
        events.recv(),
    )
    .await
    {}
}

/// The configuration file and every file the running generation names.
fn watched_files(server: &Server, path: &Path) -> Vec<PathBuf> {
    let generation = server.generation();
    let mut files: Vec<PathBuf> = vec![path.to_path_buf()];
    files.extend(
        generation
            .config()
            .files()
            .into_iter()
            .map(|f| f.path.clone()),
    );
    files.sort();
    files.dedup();
    files
}

/// Watch the directories holding `files`; each event sends `()` on `tx`. `None` (logged) if
/// the platform watcher cannot start: the periodic re-read still works.
fn start_watcher(
    files: &[PathBuf],
    tx: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
        })
        .collect();
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                let _ = tx.send(());
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    "cannot watch files for changes ({e}); re-reading them every {REREAD:?}"
                );
                return None;
            }
        };
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(
                "cannot watch {} for changes ({e}); re-reading it every {REREAD:?}",
                dir.display()
            );
        }
    }
    Some(watcher)
}

/// A digest of the files' contents (a missing or unreadable file counts as its error).
fn fingerprint(files: &[PathBuf]) -> u64 {
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        match std::fs::read(file) {
            Ok(bytes) => bytes.hash(&mut hasher),
            Err(e) => e.kind().hash(&mut hasher),
        }
    }
    hasher.finish()
}
