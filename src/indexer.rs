//! The indexer thread: turns each frozen memtable into chunk index files and applies it to the stream directory,
//! off the append path (docs/DESIGN.md, "The stream index", has the protocol and its crash cases).
//!
//! The protocol for one memtable, whose events end at position `end`:
//! 1. wait until every position below `end` is durable (the index never vouches for events a crash can lose);
//! 2. build its chunk files under the state read lock, write each durably (tmp, sync, rename, sync folder) with
//!    no lock held;
//! 3. grow the directory if needed: build the larger file from a snapshot with no lock held, swap it in under the
//!    write lock;
//! 4. apply the memtable's streams to the directory under the write lock, a batch at a time (readers look in the
//!    frozen memtable first, so a half-applied directory is never consulted for those streams);
//! 5. under the write lock: list the chunks, drop the frozen memtable, record `applied_through = end`;
//! 6. every so much log, sync the directory and record `synced_through` (what survives a power loss).
//!
//! A failed write of an index file (a full disk, say) does not fail appends: nothing acknowledged depends on it.
//! The memtables stay in memory (reads and version checks use them), the indexer tries again after
//! [`RETRY_AFTER`], and an open after a crash reads a longer tail of the log. A failed sync of the directory is
//! different: its pages may have been dropped from the page cache (the fsyncgate study), so the file is removed
//! (the next open rebuilds the index from the log) and the store is poisoned.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::task::Waker;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::fs::FileSystem;
use crate::index::StreamIndex;
use crate::log::commit::Commit;
use crate::store::State;

/// Streams applied to the directory per hold of the state write lock. Appends and reads wait while it is held:
/// at a million streams a slot costs about 170 ns to apply (a cache and TLB miss, and often a page's first
/// write since the last sync), so 1,024 held the lock for 170-190 us, long enough for a group commit to
/// leave a stalled appender behind; 64 hold it for about 12 us, 8 with their slots prefetched first
/// (docs/PERFORMANCE.md, "The stream index at scale").
const APPLY_BATCH: usize = 64;
/// After a failed index write, the indexer waits this long before it tries again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How flushing a memtable failed.
enum Failure {
    /// Writing an index file failed: nothing changed; try again later.
    Retry,
    /// The directory could not be made durable, or the index is damaged: stop.
    Fatal(crate::Error),
}

#[derive(Default)]
struct Flags {
    pending: bool,
    stop: bool,
    /// Memtables written and applied so far (appends waiting for the indexer watch it move).
    published: u64,
    /// The last attempt to write index files failed; the indexer will try again.
    failing: bool,
    /// The thread has returned.
    exited: bool,
    /// Async appends waiting for the indexer.
    wakers: Vec<Waker>,
}

#[derive(Default)]
struct Control {
    flags: Mutex<Flags>,
    cv: Condvar,
    /// Signalled whenever `published`, `failing` or `exited` change.
    progress_cv: Condvar,
}

impl Control {
    fn flags(&self) -> std::sync::MutexGuard<'_, Flags> {
        self.flags.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records what the last round did and wakes the appends waiting for it.
    fn progress(&self, change: impl FnOnce(&mut Flags)) {
        let wakers = {
            let mut f = self.flags();
            change(&mut f);
            self.progress_cv.notify_all();
            std::mem::take(&mut f.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// A handle on the indexer thread.
pub struct Indexer {
    control: Arc<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Indexer {
    pub fn start(
        state: Arc<RwLock<State>>,
        commit: Arc<Commit>,
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        buffered: bool,
    ) -> std::io::Result<Indexer> {
        let control = Arc::new(Control::default());
        let thread = {
            let control = control.clone();
            std::thread::Builder::new().name("annals-index".into()).spawn(move || {
                run(&control, &state, &commit, &*fs, &dir, buffered);
                control.progress(|f| f.exited = true);
            })?
        };
        let indexer = Indexer { control, thread: Mutex::new(Some(thread)) };
        // A large memtable from recovery may be frozen already.
        indexer.wake();
        Ok(indexer)
    }

    /// Tells the indexer a memtable was frozen.
    pub fn wake(&self) {
        let mut f = self.control.flags();
        f.pending = true;
        self.control.cv.notify_one();
    }

    /// How many memtables the indexer has written and applied so far.
    pub fn published(&self) -> u64 {
        self.control.flags().published
    }

    /// False while writing index files fails (the indexer retries) and once the thread has stopped: appends
    /// then do not wait for it, and the memtables grow instead (docs/DESIGN.md, "Backpressure").
    pub fn is_working(&self) -> bool {
        let f = self.control.flags();
        !f.failing && !f.exited
    }

    /// Waits until the indexer publishes a memtable after the `seen`th, fails or stops, or `timeout` passes.
    pub fn wait_progress(&self, seen: u64, timeout: Duration) {
        let f = self.control.flags();
        let _ = self
            .control
            .progress_cv
            .wait_timeout_while(f, timeout, |f| f.published == seen && !f.failing && !f.exited)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// Has `waker` woken at the indexer's next progress (for async appends waiting for it).
    pub fn wake_on_progress(&self, waker: &Waker) {
        let mut f = self.control.flags();
        if !f.wakers.iter().any(|w| w.will_wake(waker)) {
            f.wakers.push(waker.clone());
        }
    }

    /// Lets the indexer finish the memtable it has, then joins it.
    pub fn stop(&self) {
        {
            let mut f = self.control.flags();
            f.stop = true;
            self.control.cv.notify_one();
        }
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run(
    control: &Control,
    state: &RwLock<State>,
    commit: &Commit,
    fs: &dyn FileSystem,
    dir: &std::path::Path,
    buffered: bool,
) {
    loop {
        {
            let mut f = control.flags();
            while !f.pending && !f.stop {
                f = control.cv.wait(f).unwrap_or_else(|e| e.into_inner());
            }
            if !f.pending {
                return;
            }
            f.pending = false;
        }
        if commit.is_poisoned() {
            return;
        }
        match flush_frozen(control, state, commit, fs, dir, buffered) {
            Ok(()) => control.progress(|f| {
                f.published += 1;
                f.failing = false;
            }),
            Err(Failure::Retry) => {
                control.progress(|f| f.failing = true);
                // Try again after a while (earlier only if asked to stop: then the close tries once more).
                let f = control.flags();
                let (mut f, _) =
                    control.cv.wait_timeout_while(f, RETRY_AFTER, |f| !f.stop).unwrap_or_else(|e| e.into_inner());
                if f.stop {
                    return;
                }
                f.pending = true;
            }
            Err(Failure::Fatal(e)) => {
                if !commit.is_poisoned() {
                    commit.poison(&std::io::Error::other(format!("the stream index failed: {e}")));
                }
                return;
            }
        }
    }
}

fn read(state: &RwLock<State>) -> std::sync::RwLockReadGuard<'_, State> {
    state.read().unwrap_or_else(|e| e.into_inner())
}

fn write(state: &RwLock<State>) -> std::sync::RwLockWriteGuard<'_, State> {
    state.write().unwrap_or_else(|e| e.into_inner())
}

/// Steps 1 to 6 of the protocol for the frozen memtable, if there is one.
fn flush_frozen(
    control: &Control,
    state: &RwLock<State>,
    commit: &Commit,
    fs: &dyn FileSystem,
    dir: &std::path::Path,
    buffered: bool,
) -> std::result::Result<(), Failure> {
    let Some(m) = read(state).index.frozen() else { return Ok(()) };
    if buffered {
        // Nobody waits for Buffered appends to be durable: make them so (a failed sync poisons the store, as the
        // interval sync's would). The append that froze the memtable tells the commit it wrote its events just
        // after: until then a sync does not cover them.
        loop {
            commit.sync_all_background().map_err(Failure::Fatal)?;
            if commit.wait_durable_for(m.end_position(), Duration::from_millis(1)).map_err(Failure::Fatal)? {
                break;
            }
        }
    } else {
        // Every Sync append waits for its own sync: wait for theirs rather than run one, so that a failed sync
        // is met (and reported as `Error::Io`) by an append. A close finishes what is left.
        while !commit.wait_durable_for(m.end_position(), Duration::from_millis(50)).map_err(Failure::Fatal)? {
            if control.flags().stop {
                return Ok(());
            }
        }
    }
    // The build reads earlier chunk files and frames (tens of milliseconds for a memtable of many streams):
    // from a view of the index, without holding the state lock that appends need.
    let view = {
        let st = read(state);
        st.index.build_view(&st.log)
    };
    let built = view.build_chunks(&m).map_err(Failure::Fatal)?;
    StreamIndex::write_chunks(fs, dir, &built).map_err(|_| Failure::Retry)?;
    let extra = StreamIndex::memtable_streams(&m);
    let snapshot = {
        let st = read(state);
        st.index.directory_needs_growth(&m).then(|| st.index.directory_snapshot())
    };
    if let Some(snapshot) = snapshot {
        let grown = snapshot.grown(fs, dir, extra).map_err(|e| {
            if e.kind() != std::io::ErrorKind::InvalidData {
                return Failure::Retry;
            }
            // A damaged slot: the directory cannot be grown from, and the open must rebuild it.
            crate::index::mark_for_rebuild(fs, dir);
            Failure::Fatal(crate::Error::corrupt(dir.join(crate::index::directory::FILE_NAME), 0, e.to_string()))
        })?;
        write(state).index.install_directory(grown);
    }
    let homes = read(state).index.directory_homes();
    let order = StreamIndex::apply_order(&m, homes);
    let entries = StreamIndex::newest_entries(&m, &built);
    for batch in order.chunks(APPLY_BATCH) {
        read(state).index.prefetch_directory_slots(&m, batch);
        let mut st = write(state);
        let State { log, index } = &mut *st;
        index.apply(log, &m, batch, &entries).map_err(Failure::Fatal)?;
    }
    let sync_due = {
        let mut st = write(state);
        let sync_due = st.index.publish(&m, &built);
        // Appends that came while this memtable was written may have filled the next one (and waited for this
        // one); freeze it now rather than at the next append, which may be a long time coming.
        if st.index.wants_checkpoint() && st.index.freeze().is_some() {
            control.flags().pending = true;
        }
        sync_due
    };
    if sync_due {
        let (file, applied) = {
            let st = read(state);
            (st.index.directory_file(), st.index.applied_through())
        };
        let synced = file.sync_data().and_then(|()| {
            write(state).index.directory_synced(applied);
            file.sync_data()
        });
        if let Err(e) = synced {
            let _ = fs.remove_file(&dir.join(crate::index::directory::FILE_NAME)).and_then(|()| fs.sync_dir(dir));
            return Err(Failure::Fatal(e.into()));
        }
    }
    Ok(())
}
