//! [`Store`]: the facade. It orchestrates; the work is done by the log ([`crate::log`]), the stream index
//! ([`crate::index`]) and the format ([`crate::format`]).
//!
//! Threads and ownership: appends serialize on the writer mutex only while they are checked and copied into
//! the log; they wait for durability outside it, in the group commit ([`crate::log::commit`]), so concurrent
//! appends share one `fdatasync`. Readers share the [`State`] (mapped segments and stream index) behind a
//! read-write lock that the writer holds for writing only while it records an append. The index runs ahead of
//! what readers may see: it holds every written event (the expected-version check needs them), while readers
//! stop at the head, which the commit publishes (`Release`, read with `Acquire`) once the events are durable
//! (`Sync`) or written (`Buffered`).
//!
//! Invariants: every event below the head is durable under the store's durability mode; the index holds, for
//! every stream, versions 0..=last without gaps, in position order; nothing is written after the store is
//! poisoned.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use smallvec::SmallVec;

use crate::event::{AppendResult, ExpectedVersion, NewEvent, Position, RecordedEvent, StreamAppend};
use crate::format::store_file::{self, StoreFile, StoreFileError};
use crate::format::{frame, segment_header, FORMAT_VERSION};
use crate::fs::{self, FileSystem, LockGuard};
use crate::index::{DirectoryHint, Lookup, PrevEvent, PushError, PushedFrame, StreamIndex};
use crate::indexer::Indexer;
use crate::limits;
use crate::log::commit::{Commit, Flusher};
use crate::log::reader::{LogMap, ReadAll};
use crate::log::recovery::{self, Stop};
use crate::log::segment::{self, Segment};
use crate::log::writer::{PlannedPart, Unflushed, WriteFailure, Writer};
use crate::log::Location;
use crate::options::{Durability, Options};
use crate::subscription::{Subscription, SubscriptionOptions};
use crate::{Error, Result};

/// Name of the lock file inside the store folder.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// An open event store: a cheap, cloneable handle (`Send + Sync`).
///
/// The store closes when the last handle and the last iterator made from it are dropped: a `Buffered` store
/// syncs first, then a clean-close marker is written, and the folder lock is released, so the folder can be
/// opened again at once.
///
/// ```
/// use annals::{ExpectedVersion, NewEvent, Position, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let r = store.append("account-42", ExpectedVersion::NoStream, &[NewEvent::new("Opened", "")])?;
/// assert_eq!((r.first_version, r.last_version, r.position), (0, 0, Position::START));
/// for ev in store.read_stream("account-42", 0)? {
///     let ev = ev?;
///     assert_eq!(ev.event_type(), "Opened");
/// }
/// drop(store);
/// let store = Store::open(dir.path())?; // reopens with everything there
/// assert_eq!(store.stream_version("account-42"), Some(0));
/// # Ok::<(), annals::Error>(())
/// ```
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

/// What readers share: the mapped log and the stream index.
pub(crate) struct State {
    pub(crate) log: LogMap,
    pub(crate) index: StreamIndex,
}

/// What an append waits for once its events are written, before it is acknowledged.
#[derive(Debug, Clone, Copy)]
struct AfterWrite {
    /// Every position below this must be durable first (`Sync`).
    durable: Option<u64>,
    /// The memtables were over their bound: wait until the indexer brings them under it.
    index: bool,
}

/// How often an append waiting for the indexer looks again even if not woken (a safety net: it is woken).
const INDEX_STALL_POLL: std::time::Duration = std::time::Duration::from_millis(100);

pub(crate) struct Shared {
    dir: PathBuf,
    durability: Durability,
    /// Shared with the commit's flusher (`Sync` mode), which writes the appends the writer holds before a sync.
    writer: Arc<Mutex<Writer>>,
    state: Arc<RwLock<State>>,
    commit: Arc<Commit>,
    indexer: Indexer,
    committer: Mutex<Option<JoinHandle<()>>>,
    _lock: Box<dyn LockGuard>,
}

impl State {
    /// The segment holding `position` and an offset at or before its frame, from the log's sparse map or, for
    /// segments indexed before this open, the chunk files' sparse maps.
    pub(crate) fn seek(&self, position: u64) -> Option<(Arc<Segment>, usize)> {
        let (segment, offset) = self.log.seek(position)?;
        if offset == segment_header::SIZE_BYTES {
            if let Some((number, at)) = self.index.seek(&self.log, position) {
                if number as u64 == segment.number() {
                    return Some((segment, at as usize));
                }
            }
        }
        Some((segment, offset))
    }
}

impl Shared {
    pub(crate) fn state(&self) -> RwLockReadGuard<'_, State> {
        // A panic while the state was written is a bug; the index may be behind the log but never ahead.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let w = self.writer.lock().map_err(|_| Error::Poisoned)?;
        self.checked_writer(w)
    }

    /// The writer lock if it is free now; `None` if another appender holds it.
    fn try_writer(&self) -> Option<Result<MutexGuard<'_, Writer>>> {
        match self.writer.try_lock() {
            Ok(w) => Some(self.checked_writer(w)),
            Err(std::sync::TryLockError::Poisoned(_)) => Some(Err(Error::Poisoned)),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    fn checked_writer<'a>(&self, w: MutexGuard<'a, Writer>) -> Result<MutexGuard<'a, Writer>> {
        if self.commit.is_poisoned() {
            return Err(self.commit.refusal());
        }
        Ok(w)
    }

    pub(crate) fn head(&self) -> u64 {
        self.commit.head()
    }

    /// Waits for what an append must wait for once written: its durability, then the indexer if the memtables
    /// are over their bound (backpressure; docs/DESIGN.md). Durability comes first: the indexer waits for it.
    fn wait_after_write(&self, after: AfterWrite) -> Result<()> {
        if let Some(target) = after.durable {
            self.commit.wait_durable(target)?;
        }
        if after.index {
            loop {
                let seen = self.indexer.published();
                if !self.index_must_stall() {
                    break;
                }
                self.indexer.wait_progress(seen, INDEX_STALL_POLL);
            }
        }
        Ok(())
    }

    /// Whether appends must wait for the indexer now: the memtables are over their bound and it is making
    /// progress (while it fails to write, or after it stopped, the memtables grow instead).
    fn index_must_stall(&self) -> bool {
        self.indexer.is_working() && !self.commit.is_poisoned() && self.state().index.must_stall()
    }

    /// The ring on which the commit publishes each new head (for subscriptions).
    pub(crate) fn notify(&self) -> &crate::notify::Ring {
        self.commit.notify()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.commit.shutdown();
        if let Some(t) = self.committer.get_mut().ok().and_then(|t| t.take()) {
            let _ = t.join();
        }
        self.indexer.stop();
        if self.commit.is_poisoned() {
            return;
        }
        if let Ok(mut w) = self.writer.lock() {
            // Nothing can report an error from a drop; a failed close only means the next open does a little
            // more work to tell a torn tail from corruption. `close` syncs, so Buffered appends are durable.
            if w.close().is_ok() {
                // Everything is durable: index the rest, so the next open reads no log at all. A failure here
                // only leaves more log for the next open to read.
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                let State { log, index } = &mut *state;
                let _ = index.checkpoint_now(log, true);
            }
        }
    }
}

/// The results of an append, one per part; no allocation for the common single-part append.
type Results = SmallVec<[AppendResult; 1]>;

/// What the store decides for one part of an append.
enum Decision {
    /// An idempotent retry: the events are already there; this is the original result.
    Retry(AppendResult),
    /// Append the part; its first event gets version `first_version`; `prev` is what the index said of the
    /// stream. The index is told, so it need not look the stream up again.
    Write { first_version: u64, prev: Lookup },
}

impl Store {
    /// Opens the store in the folder `path` with default [`Options`], creating the folder and an empty store
    /// if needed.
    ///
    /// Fails with [`Error::Locked`] if another open store (in this process or another) holds the folder,
    /// [`Error::Incompatible`] if the folder is not an annals store or was written by a newer format,
    /// [`Error::Corrupt`] if acknowledged data is damaged (a torn tail from a crash is cut silently).
    ///
    /// Reads are served from read-only memory mappings of the segment files (see the mmap contract in the
    /// crate docs): do not modify the files of an open store, and note that a disk error on a mapped page
    /// raises SIGBUS, as in every mmap-based engine.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Options::new().open(path)
    }

    pub(crate) fn open_with(dir: &Path, options: Options) -> Result<Store> {
        options.validate()?;
        let chunk = limits::SEGMENT_FILL_CHUNK_BYTES as u64;
        let segment_bytes = options.segment_bytes.div_ceil(chunk) * chunk;
        let fs = options.file_system.clone();
        fs::create_dir_all_durable(&*fs, dir)?;
        let lock_path = dir.join(LOCK_FILE_NAME);
        let lock_existed = fs.list_dir(dir)?.iter().any(|n| n == LOCK_FILE_NAME);
        let lock = fs.try_lock(&lock_path)?.ok_or_else(|| Error::Locked { path: lock_path.clone() })?;
        let names = match open_store_file(&*fs, dir) {
            Ok(names) => names,
            Err(e) => {
                // A folder refused as not a store is left as it was found.
                if matches!(e, Error::Incompatible { .. }) && !lock_existed {
                    let _ = fs.remove_file(&lock_path);
                }
                return Err(e);
            }
        };
        let recovered = recover(&fs, dir, &names, &options)?;
        let writer = Writer::new(
            fs.clone(),
            dir.to_path_buf(),
            segment_bytes,
            recovered.tail,
            recovered.next_position,
            recovered.next_segment_number,
            options.durability == Durability::Buffered,
        )?;
        let buffered = options.durability == Durability::Buffered;
        let tail = writer.tail_segment().cloned();
        let writer = Arc::new(Mutex::new(writer));
        let flusher = (!buffered).then(|| {
            let writer = writer.clone();
            Box::new(move || {
                let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                w.flush()?;
                Ok((w.next_position(), w.tail_segment().cloned()))
            }) as Flusher
        });
        let commit = Arc::new(Commit::new(recovered.next_position, tail, buffered, flusher, options.spin_wait));
        let interval = if buffered { options.sync_interval } else { None };
        let committer = {
            let commit = commit.clone();
            std::thread::Builder::new().name("annals-commit".into()).spawn(move || commit.run_committer(interval))?
        };
        let state = Arc::new(RwLock::new(recovered.state));
        let indexer = Indexer::start(state.clone(), commit.clone(), fs.clone(), dir.to_path_buf(), buffered)?;
        let shared = Shared {
            dir: dir.to_path_buf(),
            durability: options.durability,
            writer,
            state,
            commit,
            indexer,
            committer: Mutex::new(Some(committer)),
            _lock: lock,
        };
        Ok(Store { shared: Arc::new(shared) })
    }

    /// Appends `events` to `stream` if the stream is at `expected`, atomically (all or none, after any crash).
    ///
    /// Returns when the events are durable ([`Durability::Sync`]) or handed to the OS
    /// ([`Durability::Buffered`]). A retry with the same event ids returns the original result and writes
    /// nothing (see the crate docs for the exact rules). Errors: [`Error::WrongExpectedVersion`] on a
    /// conflict, [`Error::InvalidInput`] for a bad name, type, size or duplicate id (nothing written),
    /// [`Error::Io`] and then [`Error::Poisoned`] if a write or sync fails.
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let events = [NewEvent::new("Deposited", "10"), NewEvent::new("Deposited", "20")];
    /// let r = store.append("account-7", ExpectedVersion::NoStream, &events)?;
    /// assert_eq!((r.first_version, r.last_version), (0, 1));
    /// // The same events again (same ids): an idempotent retry, nothing written.
    /// assert_eq!(store.append("account-7", ExpectedVersion::NoStream, &events)?, r);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn append(&self, stream: &str, expected: ExpectedVersion, events: &[NewEvent]) -> Result<AppendResult> {
        let (mut results, after) = self.write_parts(&[StreamAppend::new(stream, expected, events)])?;
        self.shared.wait_after_write(after)?;
        Ok(results.pop().expect("one result per part"))
    }

    /// Appends to several streams atomically: every part's expected version is checked, then all parts are
    /// written as one append, or none is. Results come in the order of the parts. A conflict reports the first
    /// conflicting part; an empty list or a stream named twice is [`Error::InvalidInput`].
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Store, StreamAppend};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let a = [NewEvent::new("Placed", "")];
    /// let b = [NewEvent::new("Reserved", "")];
    /// let rs = store.append_many(&[
    ///     StreamAppend::new("order-7", ExpectedVersion::NoStream, &a),
    ///     StreamAppend::new("stock-9", ExpectedVersion::Any, &b),
    /// ])?;
    /// assert_eq!(rs[0].position.as_u64() + 1, rs[1].position.as_u64());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn append_many(&self, parts: &[StreamAppend<'_>]) -> Result<Vec<AppendResult>> {
        let (results, after) = self.write_parts(parts)?;
        self.shared.wait_after_write(after)?;
        Ok(results.into_vec())
    }

    /// The async form of [`Store::append`]: the events are checked and written when this is called (dropping
    /// the future does not undo the append); the future completes when they are durable, woken by the
    /// store's committer thread, so no executor thread ever blocks on a sync. Works with any executor.
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Store};
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     use std::task::{Context, Poll, Wake, Waker};
    /// #     struct Unpark(std::thread::Thread);
    /// #     impl Wake for Unpark { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop {
    /// #         if let Poll::Ready(v) = f.as_mut().poll(&mut Context::from_waker(&waker)) { return v; }
    /// #         std::thread::park();
    /// #     }
    /// # }
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let r = block_on(store.append_async("account-1", ExpectedVersion::NoStream, &[NewEvent::new("Opened", "")]))?;
    /// assert_eq!(r.last_version, 0);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn append_async(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: &[NewEvent],
    ) -> AppendFuture<AppendResult> {
        match self.write_parts(&[StreamAppend::new(stream, expected, events)]) {
            Ok((mut results, after)) => {
                AppendFuture::waiting(self.shared.clone(), after, results.pop().expect("one result per part"))
            }
            Err(e) => AppendFuture::failed(e),
        }
    }

    /// The async form of [`Store::append_many`]; see [`Store::append_async`].
    pub fn append_many_async(&self, parts: &[StreamAppend<'_>]) -> AppendFuture<Vec<AppendResult>> {
        match self.write_parts(parts) {
            Ok((results, after)) => AppendFuture::waiting(self.shared.clone(), after, results.into_vec()),
            Err(e) => AppendFuture::failed(e),
        }
    }

    /// Checks and writes an append. Returns the results and what the caller must wait for before acknowledging.
    fn write_parts(&self, parts: &[StreamAppend<'_>]) -> Result<(Results, AfterWrite)> {
        validate_append(parts)?;
        let shared = &*self.shared;
        let sync = shared.durability == Durability::Sync;
        // If another appender holds the writer lock, look each stream up before waiting for it: with millions of
        // streams, a stream's directory slot and newest frame are rarely in the CPU's caches, and every other
        // appender would wait for those misses under the lock. What the directory said is kept as a hint, which
        // the check under the lock uses unless the directory changed in between. A free lock is taken at once:
        // nobody waits.
        let mut hints: SmallVec<[Option<DirectoryHint>; 1]> = SmallVec::new();
        let mut writer = match shared.try_writer() {
            Some(w) => w?,
            None => {
                {
                    let state = shared.state();
                    for p in parts {
                        hints.push(state.index.directory_hint(&state.log, p.stream));
                    }
                }
                shared.writer()?
            }
        };
        // Plain loops: the iterator-collect forms into SmallVec cost several hundred instructions per append.
        let mut decisions: SmallVec<[Decision; 1]> = SmallVec::new();
        let mut planned: SmallVec<[PlannedPart<'_>; 1]> = SmallVec::new();
        let mut planned_prev: SmallVec<[Lookup; 1]> = SmallVec::new();
        {
            let state = shared.state();
            for (i, p) in parts.iter().enumerate() {
                let d = match decide(&state, writer.unflushed(), p, hints.get(i).copied().flatten()) {
                    Ok(d) => d,
                    Err(e) => {
                        // A conflict with events still waiting for their sync: answer only once they are
                        // visible, so that a caller who rereads the stream sees the version the error reports
                        // (otherwise read-then-append loops spin until the sync completes).
                        let pending = match state.index.tail(&state.log, p.stream) {
                            Ok(t) => t.map(|t| t.position).filter(|&at| at >= shared.head()),
                            Err(_) => None,
                        };
                        drop(state);
                        drop(writer);
                        if let (Some(at), Error::WrongExpectedVersion { .. }) = (pending, &e) {
                            shared.commit.wait_durable(at + 1)?;
                        }
                        return Err(e);
                    }
                };
                if let Decision::Write { first_version, prev } = d {
                    planned.push(PlannedPart { stream: p.stream, first_version, events: p.events });
                    planned_prev.push(prev);
                }
                decisions.push(d);
            }
        }
        if planned.is_empty() {
            drop(writer);
            let results: Results = decisions
                .into_iter()
                .map(|d| match d {
                    Decision::Retry(r) => r,
                    Decision::Write { .. } => unreachable!("no part is written"),
                })
                .collect();
            // A retry of an append still waiting for its sync must not be acknowledged before it.
            let end = results.iter().map(|r| r.position.as_u64() + 1).max().unwrap_or(0);
            let durable = (sync && end > shared.commit.durable()).then_some(end);
            return Ok((results, AfterWrite { durable, index: false }));
        }
        let written = match writer.append(&planned, shared.commit.durable()) {
            Ok(w) => w,
            Err(WriteFailure::NotWritten(e)) => return Err(e),
            Err(WriteFailure::Poisoning(e)) => {
                shared.commit.poison(&e);
                return Err(Error::Io(e));
            }
        };
        let end = writer.next_position();
        let stall;
        {
            let mut state = shared.state_mut();
            if let Some(segment) = written.new_segment {
                state.log.push_segment(segment);
            }
            let segment = written.first.segment();
            let mut offset = written.first.offset();
            let mut position = written.first_position;
            for (part, found) in planned.iter().zip(&planned_prev) {
                let State { log, index } = &mut *state;
                let first_position = position;
                let frames = part.events.iter().map(|e| {
                    let bytes = frame::event_frame_bytes(
                        part.stream.len(),
                        e.event_type().len(),
                        e.metadata().len(),
                        e.payload().len(),
                    ) as u32;
                    log.note_event(segment, position, offset);
                    let frame = PushedFrame { id: *e.id().as_bytes(), location: Location::new(segment, offset), bytes };
                    offset += bytes;
                    position += 1;
                    frame
                });
                let pushed =
                    index.push(part.stream, part.first_version, first_position, PrevEvent::Known(*found), frames);
                if let Err(e) = pushed {
                    // The checks above read the same index under the writer lock: only damage found since (by
                    // another lookup) can get here. Nothing more may be written.
                    drop(state);
                    let e = io::Error::other(format!("the stream index refused a checked event: {e:?}"));
                    shared.commit.poison(&e);
                    return Err(Error::Io(e));
                }
            }
            debug_assert_eq!(position, end);
            if state.index.wants_checkpoint() && state.index.freeze().is_some() {
                shared.indexer.wake();
            }
            stall = state.index.must_stall();
        }
        let tail = writer.tail_segment().expect("an append leaves a tail segment");
        shared.commit.note_written(end, tail);
        drop(writer);

        let mut position = written.first_position;
        let mut results = Results::new();
        for (p, d) in parts.iter().zip(decisions) {
            results.push(match d {
                Decision::Retry(r) => r,
                Decision::Write { first_version, .. } => {
                    let n = p.events.len() as u64;
                    position += n;
                    AppendResult {
                        first_version,
                        last_version: first_version + n - 1,
                        position: Position::from_u64(position - 1),
                    }
                }
            });
        }
        Ok((results, AfterWrite { durable: sync.then_some(end), index: stall }))
    }

    /// Makes every event appended so far durable. With [`Durability::Sync`] there is nothing to do; with
    /// [`Durability::Buffered`] this is the point after which an OS crash loses nothing appended before.
    ///
    /// ```
    /// use annals::{Durability, ExpectedVersion, NewEvent, Options};
    /// let dir = tempfile::tempdir()?;
    /// let store = Options::new().durability(Durability::Buffered).open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "")])?;
    /// store.sync()?;
    /// assert_eq!(store.stats().durable, 1);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn sync(&self) -> Result<()> {
        if self.shared.commit.is_poisoned() {
            return Err(self.shared.commit.refusal());
        }
        self.shared.commit.sync_all()
    }

    /// The events of `stream` from version `from_version` (inclusive), oldest first, up to the stream's last
    /// version at the time of the call. An unknown stream reads as empty.
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, &[NewEvent::new("A", "0"), NewEvent::new("B", "1")])?;
    /// let types: Vec<String> = store.read_stream("s", 1)?.map(|e| e.map(|e| e.event_type().to_owned())).collect::<Result<_, _>>()?;
    /// assert_eq!(types, ["B"]);
    /// assert_eq!(store.read_stream("nope", 0)?.count(), 0);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn read_stream(&self, stream: &str, from_version: u64) -> Result<ReadStream> {
        if stream.is_empty() || stream.len() > limits::STREAM_NAME_BYTES_MAX {
            return Err(Error::invalid(format!(
                "stream names are 1 to {} bytes, got {}",
                limits::STREAM_NAME_BYTES_MAX,
                stream.len()
            )));
        }
        let end = self.shared.head();
        let (locations, segments) = {
            let state = self.shared.state();
            let mut locations = state.index.locations_from(&state.log, stream, from_version)?;
            // The newest events may be written but not visible yet (waiting for their sync).
            if let Some(last) = (locations.len() as u64).checked_sub(1) {
                let visible = state.index.newest_visible(stream, from_version + last, end);
                locations.truncate(visible.map_or(0, |v| (v + 1).saturating_sub(from_version)) as usize);
            }
            // The segments the read visits, in order (locations are in position order): taken once here, so
            // the read takes no lock per segment and can prefetch frames ahead.
            let mut segments: Vec<Arc<Segment>> = Vec::new();
            for at in &locations {
                if segments.last().is_none_or(|s| s.number() != at.segment() as u64) {
                    let segment = state.log.segment(at.segment()).ok_or_else(|| {
                        Error::corrupt(self.shared.dir(), 0, format!("index names missing segment {}", at.segment()))
                    })?;
                    segments.push(segment.clone());
                }
            }
            for at in locations.iter().take(PREFETCH_AHEAD) {
                if let Some(s) = segments.iter().find(|s| s.number() == at.segment() as u64) {
                    s.prefetch(at.offset() as usize);
                }
            }
            (locations, segments)
        };
        Ok(ReadStream {
            shared: self.shared.clone(),
            end,
            stream: stream.into(),
            locations,
            next: 0,
            version: from_version,
            segments,
            segment_at: 0,
            failed: false,
        })
    }

    /// Every event from `from` (inclusive) in commit order, up to the head at the time of the call. Items are
    /// `Result`s: a damaged frame is reported as [`Error::Corrupt`] and ends the iteration.
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Position, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("a", ExpectedVersion::Any, &[NewEvent::new("E", "1")])?;
    /// store.append("b", ExpectedVersion::Any, &[NewEvent::new("E", "2")])?;
    /// let streams: Vec<String> = store.read_all(Position::START).map(|e| e.map(|e| e.stream().to_owned())).collect::<Result<_, _>>()?;
    /// assert_eq!(streams, ["a", "b"]);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn read_all(&self, from: Position) -> ReadAll {
        ReadAll::new(self.shared.clone(), from.as_u64(), self.shared.head())
    }

    /// A live subscription to every event from `from` (inclusive), in commit order: first the events already
    /// in the store, then each new one as soon as readers can see it. See [`Subscription`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use annals::{ExpectedVersion, NewEvent, Position, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let mut sub = store.subscribe_all(Position::START);
    /// store.append("a", ExpectedVersion::Any, &[NewEvent::new("E", "1")])?;
    /// let ev = sub.next_timeout(Duration::from_secs(5))?.expect("the event");
    /// assert_eq!(ev.payload(), b"1");
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn subscribe_all(&self, from: Position) -> Subscription {
        self.subscribe(SubscriptionOptions::new().from(from))
    }

    /// A live subscription with filters (stream-name prefix, event types) and checkpoints; see
    /// [`SubscriptionOptions`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use annals::{ExpectedVersion, NewEvent, Store, SubscriptionOptions};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("order-1", ExpectedVersion::Any, &[NewEvent::new("Placed", "")])?;
    /// store.append("account-1", ExpectedVersion::Any, &[NewEvent::new("Opened", "")])?;
    /// let mut sub = store.subscribe(SubscriptionOptions::new().stream_prefix("account-"));
    /// assert_eq!(sub.next_timeout(Duration::from_secs(5))?.expect("one").stream(), "account-1");
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn subscribe(&self, options: SubscriptionOptions) -> Subscription {
        Subscription::all(self.clone(), options)
    }

    /// A live subscription to the events of one stream from `from_version` (inclusive), in version order:
    /// read through the stream index, so catching up does not scan the rest of the log.
    ///
    /// ```
    /// use std::time::Duration;
    /// use annals::{ExpectedVersion, NewEvent, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("account-1", ExpectedVersion::Any, &[NewEvent::new("Opened", ""), NewEvent::new("Deposited", "5")])?;
    /// store.append("account-2", ExpectedVersion::Any, &[NewEvent::new("Opened", "")])?;
    /// let mut sub = store.subscribe_stream("account-1", 1)?;
    /// let ev = sub.next_timeout(Duration::from_secs(5))?.expect("version 1");
    /// assert_eq!((ev.version(), ev.event_type()), (1, "Deposited"));
    /// assert!(sub.next_timeout(Duration::from_millis(5))?.is_none());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn subscribe_stream(&self, stream: &str, from_version: u64) -> Result<Subscription> {
        if stream.is_empty() || stream.len() > limits::STREAM_NAME_BYTES_MAX {
            return Err(Error::invalid(format!(
                "stream names are 1 to {} bytes, got {}",
                limits::STREAM_NAME_BYTES_MAX,
                stream.len()
            )));
        }
        Ok(Subscription::stream(self.clone(), stream, from_version))
    }

    /// The shared state behind the handle (for subscriptions).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The last version of `stream`, `None` if the stream has no events.
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.stream_version("s"), None);
    /// store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", ""), NewEvent::new("E", "")])?;
    /// assert_eq!(store.stream_version("s"), Some(1));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        let head = self.shared.head();
        let state = self.shared.state();
        // A damaged index answers `None` here; appends and reads of the stream report the damage.
        let tail = state.index.tail(&state.log, stream).ok()??;
        if tail.position < head {
            return Some(tail.version);
        }
        // The index also holds written events not yet visible (waiting for their sync): step back past them.
        state.index.newest_visible(stream, tail.version, head)
    }

    /// Reads the whole log and checks it: every frame's checksum, position and batch, every sealed segment's
    /// footer, every index file's checksum, that the index puts every event where it is, and that the locations
    /// of earlier events copied into later index entries are right. Returns what it
    /// checked, or the first damage found as [`Error::Corrupt`] (file, offset, what was expected).
    ///
    /// Open does not re-read the indexed part of the log (that would make it proportional to the size of the
    /// store); run this after a hardware incident, on a schedule, or from `annals verify`. It reads with `pread`,
    /// so a disk error is an [`Error::Io`], and runs alongside appends and reads.
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "x"), NewEvent::new("E", "y")])?;
    /// let report = store.verify()?;
    /// assert_eq!((report.segments, report.events), (1, 2));
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn verify(&self) -> Result<crate::VerifyReport> {
        crate::verify::verify(&self.shared)
    }

    /// The position the next event will get: just past the last committed event.
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Position, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.head(), Position::START);
    /// let r = store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "")])?;
    /// assert_eq!(store.head().as_u64(), r.position.as_u64() + 1);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn head(&self) -> Position {
        Position::from_u64(self.shared.head())
    }

    /// Figures about the store since it was opened: positions, segments, and how well group commit groups.
    ///
    /// ```
    /// use annals::{ExpectedVersion, NewEvent, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "")])?;
    /// let stats = store.stats();
    /// assert_eq!((stats.head, stats.durable, stats.segments), (1, 1, 1));
    /// assert!(stats.syncs >= 1 && stats.synced_appends >= 1);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn stats(&self) -> StoreStats {
        let (syncs, synced_appends, sync_average) = self.shared.commit.counters();
        let state = self.shared.state();
        StoreStats {
            head: self.shared.head(),
            durable: self.shared.commit.durable(),
            segments: state.log.segments().len() as u64,
            syncs,
            synced_appends,
            sync_average_us: sync_average.as_micros() as u64,
            index_chunks: state.index.chunk_count() as u64,
            index_memtable_events: state.index.memtable_events(),
            index_pending_events: state.index.frozen_events(),
        }
    }

    /// The folder of the store.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = annals::Store::open(dir.path())?;
    /// assert_eq!(store.path(), dir.path());
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// The store's durability mode.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = annals::Store::open(dir.path())?;
    /// assert_eq!(store.durability(), annals::Durability::Sync);
    /// # Ok::<(), annals::Error>(())
    /// ```
    pub fn durability(&self) -> Durability {
        self.shared.durability
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.shared.dir).field("head", &self.head()).finish()
    }
}

/// Figures about an open store, from [`Store::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoreStats {
    /// The position the next event gets (what readers see up to).
    pub head: u64,
    /// Every position below this is durable.
    pub durable: u64,
    /// Segment files in the log.
    pub segments: u64,
    /// `fdatasync`s of the log completed since open.
    pub syncs: u64,
    /// Appends those syncs made durable: `synced_appends / syncs` is the average group size.
    pub synced_appends: u64,
    /// Moving average of the duration of recent syncs, in microseconds.
    pub sync_average_us: u64,
    /// Chunk index files: the stream index on disk.
    pub index_chunks: u64,
    /// Events held in the index's memtables (heap) until the next index checkpoint writes them to disk.
    pub index_memtable_events: u64,
    /// Of those, the events of the checkpoint the indexer is writing now (0 when it is idle). While appends
    /// outpace the indexer this grows; appends wait once the memtables cover three checkpoints of log.
    pub index_pending_events: u64,
}

/// The events of one stream, oldest first, up to the head as of its creation. Returned by
/// [`Store::read_stream`]. Each item is a `Result`: a damaged frame is reported as [`Error::Corrupt`] and ends
/// the iteration.
///
/// ```
/// use annals::{ExpectedVersion, NewEvent, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "a"), NewEvent::new("E", "b")])?;
/// let mut events = store.read_stream("s", 0)?;
/// store.append("s", ExpectedVersion::Any, &[NewEvent::new("E", "c")])?; // after the read began: not seen
/// assert_eq!(events.by_ref().count(), 2);
/// # Ok::<(), annals::Error>(())
/// ```
pub struct ReadStream {
    shared: Arc<Shared>,
    /// The head when the read began: events at or past it are not returned.
    end: u64,
    stream: Box<str>,
    locations: Vec<Location>,
    next: usize,
    version: u64,
    /// The segments of `locations`, in order, and the one holding the next location.
    segments: Vec<Arc<Segment>>,
    segment_at: usize,
    failed: bool,
}

/// A stream read asks the CPU for the frame this many events ahead while it checks the current one, so the
/// cache misses of frames spread over a large log overlap instead of queueing.
const PREFETCH_AHEAD: usize = 16;

impl ReadStream {
    fn read(&mut self, at: Location) -> Result<RecordedEvent> {
        while self.segments.get(self.segment_at).is_some_and(|s| s.number() != at.segment() as u64) {
            self.segment_at += 1;
        }
        if let Some(ahead) = self.locations.get(self.next + PREFETCH_AHEAD) {
            let segment = self.segments[self.segment_at..].iter().find(|s| s.number() == ahead.segment() as u64);
            if let Some(segment) = segment {
                segment.prefetch(ahead.offset() as usize);
            }
        }
        let Some(segment) = self.segments.get(self.segment_at) else {
            return Err(Error::corrupt(self.shared.dir(), 0, format!("index names missing segment {}", at.segment())));
        };
        let offset = at.offset() as usize;
        let (_, len) = segment.verified_event(offset)?;
        let event = RecordedEvent::new(segment.clone(), offset, len);
        // The bytes, not `stream()`: equal bytes are the UTF-8 name asked for, with no UTF-8 check per event.
        if event.stream_bytes() != self.stream.as_bytes() || event.version() != self.version {
            return Err(Error::corrupt(
                segment.path(),
                offset as u64,
                format!(
                    "expected {:?} version {}, found {:?} version {}",
                    self.stream,
                    self.version,
                    event.stream(),
                    event.version()
                ),
            ));
        }
        Ok(event)
    }
}

impl Iterator for ReadStream {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let at = *self.locations.get(self.next)?;
        self.next += 1;
        let r = self.read(at);
        if matches!(&r, Ok(e) if e.position().as_u64() >= self.end) {
            self.failed = true;
            return None;
        }
        self.version += 1;
        self.failed = r.is_err();
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.failed { 0 } else { self.locations.len() - self.next };
        (n.min(1), Some(n))
    }
}

/// Checks every limit of an append before anything is locked or written.
fn validate_append(parts: &[StreamAppend<'_>]) -> Result<()> {
    if parts.is_empty() {
        return Err(Error::invalid("an append needs at least one stream"));
    }
    if parts.len() > limits::BATCH_STREAMS_MAX {
        return Err(Error::invalid(format!(
            "an append names at most {} streams, got {}",
            limits::BATCH_STREAMS_MAX,
            parts.len()
        )));
    }
    let mut events = 0usize;
    let mut body_bytes = 0usize;
    for p in parts {
        validate_stream_name(p.stream)?;
        if p.events.is_empty() {
            return Err(Error::invalid(format!("append to {:?} has no events", p.stream)));
        }
        if let ExpectedVersion::Exact(n) = p.expected {
            if n >= u64::MAX - limits::BATCH_EVENTS_MAX as u64 {
                return Err(Error::invalid(format!("expected version {n} is out of range")));
            }
        }
        for e in p.events {
            let t = e.event_type().len();
            if t == 0 || t > limits::EVENT_TYPE_BYTES_MAX {
                return Err(Error::invalid(format!(
                    "event types are 1 to {} bytes, got {t}",
                    limits::EVENT_TYPE_BYTES_MAX
                )));
            }
            let body = e.payload().len() + e.metadata().len();
            if body > limits::EVENT_BODY_BYTES_MAX {
                return Err(Error::invalid(format!(
                    "an event's payload and metadata are at most {} bytes, got {body}",
                    limits::EVENT_BODY_BYTES_MAX
                )));
            }
            body_bytes += body;
        }
        events += p.events.len();
    }
    if events > limits::BATCH_EVENTS_MAX {
        return Err(Error::invalid(format!(
            "an append holds at most {} events, got {events}",
            limits::BATCH_EVENTS_MAX
        )));
    }
    if body_bytes > limits::BATCH_BODY_BYTES_MAX {
        return Err(Error::invalid(format!(
            "an append holds at most {} bytes, got {body_bytes}",
            limits::BATCH_BODY_BYTES_MAX
        )));
    }
    if parts.len() > 1 {
        let mut streams = HashSet::with_capacity_and_hasher(parts.len(), foldhash::fast::RandomState::default());
        if let Some(p) = parts.iter().find(|p| !streams.insert(p.stream)) {
            return Err(Error::invalid(format!("stream {:?} is named twice in one append", p.stream)));
        }
    }
    if events > 1 {
        // foldhash, not SipHash: a tenth of the cost per event of a 100-event append (callgrind, W3).
        let mut ids = HashSet::with_capacity_and_hasher(events, foldhash::fast::RandomState::default());
        if let Some(e) = parts.iter().flat_map(|p| p.events).find(|e| !ids.insert(e.id())) {
            return Err(Error::invalid(format!("event id {} appears twice in one append", e.id())));
        }
    }
    Ok(())
}

fn validate_stream_name(stream: &str) -> Result<()> {
    if stream.is_empty() || stream.len() > limits::STREAM_NAME_BYTES_MAX {
        return Err(Error::invalid(format!(
            "stream names are 1 to {} bytes, got {}",
            limits::STREAM_NAME_BYTES_MAX,
            stream.len()
        )));
    }
    if stream.starts_with('$') {
        return Err(Error::invalid(format!("stream names starting with '$' are reserved: {stream:?}")));
    }
    Ok(())
}

/// Decides one part of an append: the optimistic-concurrency check and the idempotent-retry rules. `hint`: what
/// the directory said of the stream before the writer lock was taken, if it did.
/// `unflushed`: the appends the writer holds that are not in the file yet (a retry's check reads them there).
fn decide(
    state: &State,
    unflushed: Option<Unflushed<'_>>,
    part: &StreamAppend<'_>,
    hint: Option<DirectoryHint>,
) -> Result<Decision> {
    let prev = state.index.lookup(&state.log, part.stream, hint)?;
    let tail = prev.tail;
    let actual = tail.map(|t| t.version);
    let n = part.events.len() as u64;
    let conflict = || Error::WrongExpectedVersion { stream: part.stream.to_owned(), expected: part.expected, actual };
    let next_version = actual.map_or(0, |v| v + 1);
    match part.expected {
        ExpectedVersion::Exact(_) | ExpectedVersion::NoStream => {
            let start = match part.expected {
                ExpectedVersion::Exact(v) => v + 1,
                _ => 0,
            };
            if start == next_version {
                return Ok(Decision::Write { first_version: start, prev });
            }
            match retry_of(state, unflushed, part, start)? {
                Some(r) => Ok(Decision::Retry(r)),
                None => Err(conflict()),
            }
        }
        ExpectedVersion::Any | ExpectedVersion::StreamExists => {
            if actual.is_none() && part.expected == ExpectedVersion::StreamExists {
                return Err(conflict());
            }
            // A retry of the stream's last append ends with the stream's newest event: most appends are told
            // apart from a retry by that one id, without reading the log.
            let last_matches = tail.zip(part.events.last()).is_some_and(|(t, e)| t.id == *e.id().as_bytes());
            match next_version.checked_sub(n).filter(|_| last_matches) {
                Some(start) => match retry_of(state, unflushed, part, start)? {
                    Some(r) => Ok(Decision::Retry(r)),
                    None => Ok(Decision::Write { first_version: next_version, prev }),
                },
                None => Ok(Decision::Write { first_version: next_version, prev }),
            }
        }
    }
}

/// If the stream's events at versions `start..start + n` carry exactly the part's ids, in order, the result of
/// the append that wrote them. Frames the writer still holds (`unflushed`) are read from its buffer. The
/// locations are looked up once for the whole part: one at a time, each lookup would walk the stream's chain of
/// events from its newest, and a retried batch would cost the square of its length.
fn retry_of(
    state: &State,
    unflushed: Option<Unflushed<'_>>,
    part: &StreamAppend<'_>,
    start: u64,
) -> Result<Option<AppendResult>> {
    let locations = state.index.locations_from(&state.log, part.stream, start)?;
    let Some(locations) = locations.get(..part.events.len()) else { return Ok(None) };
    let frame_at = |at: Location, verify: bool| -> Result<frame::Frame> {
        let segment = state
            .log
            .segment(at.segment())
            .ok_or_else(|| Error::corrupt(PathBuf::new(), 0, "index names a missing segment"))?;
        let offset = at.offset() as usize;
        if let Some(bytes) = unflushed.and_then(|u| u.at(at.segment(), offset as u64)) {
            // Encoded by this writer and not yet in the file: bounds and checksum checked as in the file (the
            // names were encoded from `&str`).
            let f = if verify { frame::decode_with(bytes, segment.hasher()) } else { frame::decode_unverified(bytes) };
            return f.map_err(|e| Error::corrupt(segment.path(), offset as u64, e.to_string()));
        }
        if verify {
            return segment.event_at(offset);
        }
        // The hot path of every `Any` append compares ids only: the header is bounds-checked, its checksum is
        // not recomputed. A match is verified below before anything is answered from it.
        let bytes = segment.bytes().get(offset..).unwrap_or_default();
        frame::decode_unverified(bytes).map_err(|e| Error::corrupt(segment.path(), offset as u64, e.to_string()))
    };
    for (&at, e) in locations.iter().zip(part.events) {
        if frame_at(at, false)?.id != *e.id().as_bytes() {
            return Ok(None);
        }
    }
    let mut last_position = 0;
    for ((version, &at), e) in (start..).zip(locations).zip(part.events) {
        let f = frame_at(at, true)?;
        if f.version != version || f.id != *e.id().as_bytes() {
            let path = state.log.segment(at.segment()).map(|s| s.path().to_path_buf()).unwrap_or_default();
            return Err(Error::corrupt(
                path,
                at.offset() as u64,
                format!("the index says version {version} of {:?} is here, the frame says {}", part.stream, f.version),
            ));
        }
        last_position = f.position;
    }
    let n = part.events.len() as u64;
    Ok(Some(AppendResult {
        first_version: start,
        last_version: start + n - 1,
        position: Position::from_u64(last_position),
    }))
}

/// Checks (or, for a new folder, writes) the `ANNALS` file; removes temporary files. Returns the folder's
/// entry names after that.
fn open_store_file(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<String>> {
    let mut names = fs.list_dir(dir)?;
    let store_path = dir.join(store_file::FILE_NAME);
    if names.iter().any(|n| n == store_file::FILE_NAME) {
        let bytes = fs::read_small_file(fs, &store_path, 4096)?;
        match StoreFile::decode(&bytes) {
            Ok(f) if f.format_version > FORMAT_VERSION => {
                return Err(Error::Incompatible {
                    path: store_path,
                    reason: format!(
                        "written by format version {}; this build reads up to {FORMAT_VERSION}",
                        f.format_version
                    ),
                })
            }
            Ok(_) => {}
            Err(StoreFileError::NotAStore) => {
                return Err(Error::Incompatible { path: store_path, reason: "not an annals store file".into() })
            }
            Err(StoreFileError::BadChecksum) => {
                return Err(Error::corrupt(store_path, 0, "store file checksum mismatch"))
            }
        }
    } else {
        let foreign = names.iter().find(|n| *n != LOCK_FILE_NAME && !n.ends_with(".tmp"));
        if let Some(foreign) = foreign {
            return Err(Error::Incompatible {
                path: dir.to_path_buf(),
                reason: format!(
                    "the folder is not empty ({foreign:?}) and holds no {} file: not an annals store",
                    store_file::FILE_NAME
                ),
            });
        }
        let file = StoreFile { format_version: FORMAT_VERSION, created_us: crate::log::now_us() };
        fs::write_file_atomic(fs, dir, store_file::FILE_NAME, &file.encode())?;
        names.push(store_file::FILE_NAME.to_owned());
    }
    let mut removed = false;
    for n in names.iter().filter(|n| n.ends_with(".tmp")) {
        match fs.remove_file(&dir.join(n)) {
            Ok(()) => removed = true,
            // Creating the store file above reuses (and renames away) a leftover `ANNALS.tmp`.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    if removed {
        fs.sync_dir(dir)?;
        names.retain(|n| !n.ends_with(".tmp"));
    }
    Ok(names)
}

/// What recovery hands the store.
struct Recovered {
    state: State,
    tail: Option<(Arc<Segment>, u64)>,
    next_position: u64,
    next_segment_number: u64,
}

/// Opens every segment in order, opens the stream index (or rebuilds it), reads the log past what the index
/// holds, and decides the tail (RELIABILITY.md rule 7; the table of cases is in docs/DESIGN.md). Segments wholly
/// below the indexed end are mapped and their headers checked, not read.
fn recover(fs: &Arc<dyn FileSystem>, dir: &Path, names: &[String], options: &Options) -> Result<Recovered> {
    let mut firsts: Vec<u64> = names.iter().filter_map(|n| segment::parse_file_name(n)).collect();
    firsts.sort_unstable();
    if u32::try_from(firsts.len()).is_err() {
        return Err(Error::corrupt(dir, 0, "more than 2^32 segments"));
    }
    let mut log = LogMap::default();
    for (i, first) in firsts.iter().enumerate() {
        let path = dir.join(segment::file_name(*first));
        let segment = Arc::new(Segment::open(&**fs, &path)?);
        let h = segment.header();
        if h.segment_number != i as u64 || h.first_position != *first {
            return Err(Error::corrupt(
                &path,
                0,
                format!(
                    "segment header says number {} first position {}; expected number {i} (file name says first position {first})",
                    h.segment_number, h.first_position
                ),
            ));
        }
        log.push_segment(segment);
    }
    let (index, start) =
        StreamIndex::open(fs.clone(), dir, names, &log, options.stream_hash_bits, options.index_checkpoint_bytes)?;
    let mut state = State { log, index };
    let (mut i, mut offset) = match start.at {
        Some((segment, offset)) => (segment as usize, offset),
        None => match firsts.iter().position(|&f| f == start.position) {
            Some(i) => (i, segment_header::SIZE_BYTES as u64),
            None if firsts.is_empty() || firsts.last() < Some(&start.position) => (firsts.len(), 0),
            None => {
                return Err(Error::corrupt(
                    dir,
                    0,
                    format!("the index ends at position {}, where no segment starts", start.position),
                ))
            }
        },
    };
    let mut next_position = start.position;
    let mut tail: Option<(Arc<Segment>, u64)> = None;
    while i < firsts.len() {
        let segment = state.log.segments()[i].clone();
        let path = segment.path().to_path_buf();
        if offset == segment_header::SIZE_BYTES as u64 && segment.first_position() != next_position {
            return Err(Error::corrupt(
                &path,
                0,
                format!("segment starts at position {}, expected {next_position}", segment.first_position()),
            ));
        }
        let scan = {
            let State { log, index } = &mut state;
            recovery::scan_segment(&segment, offset, next_position, |ev| {
                let location = Location::new(i as u32, ev.offset as u32);
                log.note_event(i as u32, ev.frame.position, ev.offset as u32);
                let frame = PushedFrame { id: ev.frame.id, location, bytes: ev.frame.frame_bytes };
                index.push(ev.stream, ev.frame.version, ev.frame.position, PrevEvent::LookUp(log), [frame]).map_err(
                    |e| match e {
                        PushError::Gap { expected, found } => Error::corrupt(
                            &path,
                            ev.offset,
                            format!("stream {:?} has version {found}, expected {expected}", ev.stream),
                        ),
                        PushError::Corrupt(e) => e,
                    },
                )
            })?
        };
        next_position = scan.next_position;
        let is_last = i + 1 == firsts.len();
        if scan.sealed {
            // Everything in a sealed segment is durable: the index may take it now, which keeps the memory of a
            // rebuild bounded.
            if state.index.wants_checkpoint() {
                state.index.checkpoint_now(&state.log, false)?;
            }
            i += 1;
            offset = segment_header::SIZE_BYTES as u64;
            continue;
        }
        if !is_last {
            // An unsealed segment followed by others: legitimate only when a crash hit while the next segment
            // was being prepared, before anything was written to it. Then the later segments are empty.
            if !later_segments_empty(&**fs, dir, &firsts[i + 1..], next_position)? {
                let (offset, why) = scan.stop.clone().unwrap_or((scan.end_offset, Stop::Empty));
                return Err(Error::corrupt(
                    &path,
                    offset,
                    format!("segment is not sealed but later segments hold data ({why:?})"),
                ));
            }
            for first in &firsts[i + 1..] {
                fs.remove_file(&dir.join(segment::file_name(*first)))?;
            }
            fs.sync_dir(dir)?;
            state.log.truncate(i + 1);
        }
        tail = Some((segment.clone(), recover_tail(&segment, &scan, offset)?));
        i = firsts.len();
    }
    // The replayed tail is durable now (recover_tail synced it): a large one goes to the indexer at once.
    if state.index.wants_checkpoint() {
        state.index.freeze();
    }
    let next_segment_number = state.log.segments().len() as u64;
    Ok(Recovered { state, tail, next_position, next_segment_number })
}

/// Decides the end of the unsealed newest segment: cuts a torn tail (zeroing it and syncing) or reports
/// corruption. Returns the offset where the next frame goes.
fn recover_tail(segment: &Segment, scan: &recovery::Scan, scanned_from: u64) -> Result<u64> {
    let path = segment.path();
    if let Some((offset, Stop::Misplaced(why))) = &scan.stop {
        return Err(Error::corrupt(path, *offset, why.clone()));
    }
    if let Some((vouch_offset, durable)) = scan.vouched_by {
        let (offset, why) = scan.stop.clone().unwrap_or((scan.end_offset, Stop::Empty));
        return Err(Error::corrupt(
            path,
            offset,
            format!(
                "expected the event at position {} ({why:?}); a valid frame at offset {vouch_offset} says every position below {durable} was durable",
                scan.next_position
            ),
        ));
    }
    if scan.end_offset + frame::HEADER_BYTES as u64 > segment.len_bytes() {
        return Err(Error::corrupt(path, scan.end_offset, "no room left for a segment footer"));
    }
    if scan.nonzero_end > scan.end_offset {
        // A torn tail: an append that never completed. Zero it so it can never be mistaken for data later.
        let len = (scan.nonzero_end - scan.end_offset) as usize;
        segment.file().write_all_at(&vec![0u8; len], scan.end_offset)?;
    }
    // Whatever survived a crash of the process may still be only in the page cache: make it durable before
    // anything new vouches for it. After a failed sync (the fsyncgate study) the page cache may hold bytes marked
    // clean that never reached the disk and that no sync will write: rewrite what is kept first. After a clean
    // close only the marker can be such a byte (close syncs before writing it); otherwise, the whole tail past
    // what the index holds (the indexer takes only events a successful sync made durable).
    let header = scanned_from.max(segment_header::SIZE_BYTES as u64);
    let marker_at = scan.end_offset.saturating_sub(frame::HEADER_BYTES as u64).max(header);
    let closed = segment
        .bytes()
        .get(marker_at as usize..)
        .and_then(|b| frame::decode(b, segment.salt()).ok())
        .is_some_and(|f| f.kind == frame::FrameKind::CloseMarker);
    let mut at = if closed { marker_at } else { header };
    while at < scan.end_offset {
        let n = (scan.end_offset - at).min(1 << 20);
        let bytes = segment.bytes()[at as usize..(at + n) as usize].to_vec();
        segment.file().write_all_at(&bytes, at)?;
        at += n;
    }
    segment.file().sync_data()?;
    debug_assert!(scan.end_offset >= segment_header::SIZE_BYTES as u64);
    Ok(scan.end_offset)
}

/// True if the segments starting at `firsts` hold no frame and no nonzero byte after their headers. Such a
/// segment may also start below `next_position`: made by a roll whose install failed after the rename, whose
/// removal did not survive a crash, while the log went on in the older segment.
fn later_segments_empty(fs: &dyn FileSystem, dir: &Path, firsts: &[u64], next_position: u64) -> Result<bool> {
    for first in firsts {
        let path = dir.join(segment::file_name(*first));
        let segment = Segment::open(fs, &path)?;
        if segment.first_position() > next_position {
            return Ok(false);
        }
        let scan =
            recovery::scan_segment(&segment, segment_header::SIZE_BYTES as u64, segment.first_position(), |_| Ok(()))?;
        if scan.events != 0 || scan.sealed || scan.nonzero_end > segment_header::SIZE_BYTES as u64 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The future of [`Store::append_async`] and [`Store::append_many_async`]: completes with the append's result
/// once its events are durable (at once with [`Durability::Buffered`]). `Send`, `Unpin`, executor-agnostic.
///
/// ```
/// use annals::{AppendFuture, AppendResult, ExpectedVersion, NewEvent, Store};
/// fn assert_send_unpin<T: Send + Unpin>(_: &T) {}
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let future: AppendFuture<AppendResult> = store.append_async("s", ExpectedVersion::Any, &[NewEvent::new("E", "")]);
/// assert_send_unpin(&future);
/// // The append is written already; any executor can wait for its durability.
/// # drop(future);
/// # Ok::<(), annals::Error>(())
/// ```
#[must_use = "the append is written already; the future tells when it is durable"]
pub struct AppendFuture<T> {
    state: FutureState<T>,
}

enum FutureState<T> {
    Failed(Option<Error>),
    Waiting { shared: Arc<Shared>, after: AfterWrite, result: Option<T> },
}

impl<T> AppendFuture<T> {
    fn waiting(shared: Arc<Shared>, after: AfterWrite, result: T) -> AppendFuture<T> {
        AppendFuture { state: FutureState::Waiting { shared, after, result: Some(result) } }
    }

    fn failed(error: Error) -> AppendFuture<T> {
        AppendFuture { state: FutureState::Failed(Some(error)) }
    }
}

impl<T: Unpin> Future for AppendFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match &mut self.get_mut().state {
            FutureState::Failed(e) => Poll::Ready(Err(e.take().expect("polled after completion"))),
            FutureState::Waiting { shared, after, result } => {
                if let Some(t) = after.durable {
                    match shared.commit.poll_durable(t, cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => after.durable = None,
                    }
                }
                if after.index {
                    // Registered before the check, so a publication after it wakes this task.
                    shared.indexer.wake_on_progress(cx.waker());
                    if shared.index_must_stall() {
                        return Poll::Pending;
                    }
                    after.index = false;
                }
                Poll::Ready(Ok(result.take().expect("polled after completion")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hint taken from the directory must not answer after the directory changed: here the stream gains an
    /// event that leaves the memtables (a checkpoint) between the hint and its use, as another appender's event
    /// can while this one waits for the writer lock.
    #[test]
    fn a_directory_hint_is_not_used_after_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        // Checkpoints only when the test asks.
        let store =
            Options::new().durability(Durability::Buffered).index_checkpoint_bytes(1 << 30).open(dir.path()).unwrap();
        let checkpoint = || {
            store.sync().unwrap();
            let mut st = store.shared.state_mut();
            let State { log, index } = &mut *st;
            index.checkpoint_now(log, false).unwrap();
        };
        store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("E", "0")]).unwrap();
        checkpoint();
        let hint = {
            let st = store.shared.state();
            let hint = st.index.directory_hint(&st.log, "s").expect("s is in the directory only");
            assert_eq!(st.index.tail_hinted(&st.log, "s", Some(hint)).unwrap().map(|t| t.version), Some(0));
            hint
        };
        store.append("s", ExpectedVersion::Exact(0), &[NewEvent::new("E", "1")]).unwrap();
        let st = store.shared.state();
        let in_memtable = st.index.tail_hinted(&st.log, "s", Some(hint)).unwrap();
        assert_eq!(in_memtable.map(|t| t.version), Some(1), "a memtable answers before any hint");
        drop(st);
        checkpoint();
        let st = store.shared.state();
        let tail = st.index.tail_hinted(&st.log, "s", Some(hint)).unwrap();
        assert_eq!(tail.map(|t| t.version), Some(1), "the stale hint is not used");
        let fresh = st.index.directory_hint(&st.log, "s").unwrap();
        assert_eq!(st.index.tail_hinted(&st.log, "s", Some(fresh)).unwrap(), tail);
    }

    /// The indexer applies a memtable to the directory in batches, between appends: a hint taken before must
    /// stay usable through the batches (they only touch streams the frozen memtable answers for) and must not be
    /// used once the memtable is published.
    #[test]
    fn a_directory_hint_outlives_the_apply_of_a_memtable_but_not_its_publication() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Options::new().durability(Durability::Buffered).index_checkpoint_bytes(1 << 30).open(dir.path()).unwrap();
        store.append("s", ExpectedVersion::NoStream, &[NewEvent::new("E", "0")]).unwrap();
        store.sync().unwrap();
        {
            let mut st = store.shared.state_mut();
            let State { log, index } = &mut *st;
            index.checkpoint_now(log, false).unwrap();
        }
        let hint = {
            let st = store.shared.state();
            st.index.directory_hint(&st.log, "s").expect("s is in the directory only")
        };
        // Other streams' events, frozen and applied as the indexer does, one stream per batch.
        for name in ["u", "v", "w"] {
            store.append(name, ExpectedVersion::NoStream, &[NewEvent::new("E", "0")]).unwrap();
        }
        store.sync().unwrap();
        let mut st = store.shared.state_mut();
        let State { log, index } = &mut *st;
        index.freeze().expect("the active memtable has events");
        let m = index.frozen().unwrap();
        let built = index.build_view(log).build_chunks(&m).unwrap();
        crate::index::StreamIndex::write_chunks(&crate::fs::StdFileSystem, dir.path(), &built).unwrap();
        let order = crate::index::StreamIndex::apply_order(&m, index.directory_homes());
        let entries = crate::index::StreamIndex::newest_entries(&m, &built);
        for batch in order.chunks(1) {
            index.apply(log, &m, batch, &entries).unwrap();
            assert!(index.hint_is_current(&hint), "applying other streams leaves the hint in use");
            assert_eq!(index.tail_hinted(log, "s", Some(hint)).unwrap().map(|t| t.version), Some(0));
            assert_eq!(index.tail(log, "u").unwrap().map(|t| t.version), Some(0), "the frozen memtable answers");
        }
        index.publish(&m, &built);
        assert!(!index.hint_is_current(&hint), "a published memtable changes what the directory answers");
        for name in ["s", "u", "v", "w"] {
            assert_eq!(index.tail(log, name).unwrap().map(|t| t.version), Some(0), "{name} after the publication");
        }
    }
}
