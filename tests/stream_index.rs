//! The persistent stream index (chunk index files `{first_position:020}.idx` and the stream directory
//! `streams.dir`): lookups with forced hash collisions, directory growth, what a clean or crashed open reads,
//! opening stores whose index files are missing or damaged (the upgrade path and the rebuild marker), and
//! `read_all` seeking through the chunks' sparse maps.
//!
//! Randomised tests print their seed; `ANNALS_SEED=<seed>` replays one.
//!
//! Two tests cover a bug they found (a damaged chunk file met by the indexer or by recovery, rather than by a
//! read, poisoned the store or failed the open): now such an entry leaves the reader to search.

mod sim_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use annals::format::index::{
    decode_chunk_header, read_slot, seal_slot, ChunkHeader, DirectoryHeader, SlotRead, DIRECTORY_HEADER_BYTES,
    SLOT_BYTES, SLOT_NAME_MAX,
};
use annals::format::{frame, segment_header};
use annals::fs::sim::{CrashMode, Rng, SimFs};
use annals::fs::{FileHandle, FileSystem, LockGuard, Mapping, MappingMut, OpenMode, StdFileSystem};
use annals::{
    AppendResult, Durability, Error, ExpectedVersion, NewEvent, Options, Position, RecordedEvent, Store, StreamAppend,
    Uuid,
};
use sim_support::seed;

const DIRECTORY: &str = "streams.dir";
const MARKER: &str = "index.rebuild";

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn new_event(rng: &mut Rng, max_payload: u64) -> NewEvent {
    let n = rng.below(max_payload + 1) as usize;
    let payload = bytes(rng, n);
    let id = Uuid::from_u64_pair(rng.next_u64(), rng.next_u64());
    NewEvent::new(format!("T{}", rng.below(3)), payload).with_id(id)
}

// ---------------------------------------------------------------------------------------------------------
// What was written

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    stream: String,
    version: u64,
    position: u64,
    id: Uuid,
    event_type: String,
    payload: Vec<u8>,
}

fn ev_of(e: &RecordedEvent) -> Ev {
    Ev {
        stream: e.stream().to_owned(),
        version: e.version(),
        position: e.position().as_u64(),
        id: e.id(),
        event_type: e.event_type().to_owned(),
        payload: e.payload().to_vec(),
    }
}

/// One acknowledged append (a part of one): retrying it with the same events must return `result`.
#[derive(Debug, Clone)]
struct Done {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    result: AppendResult,
}

#[derive(Debug, Default)]
struct Model {
    /// Every event, by position.
    events: Vec<Ev>,
    /// The positions of each stream's events, in version order.
    streams: BTreeMap<String, Vec<u64>>,
    appends: Vec<Done>,
    /// If set, the index checkpoint size of the store: after the append whose events reach it, wait until the
    /// indexer has written them, so that every checkpoint makes a chunk (otherwise a busy indexer lets the next
    /// memtable grow past the checkpoint size). Requires the store's memtables to be empty when set.
    throttle: Option<u64>,
    /// The log bytes (frames) appended since the memtables were last empty.
    unindexed: u64,
}

impl Model {
    fn version(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).map(|p| p.len() as u64 - 1)
    }

    fn stream_events(&self, stream: &str) -> Vec<Ev> {
        self.streams
            .get(stream)
            .map_or_else(Vec::new, |ps| ps.iter().map(|&p| self.events[p as usize].clone()).collect())
    }

    /// Appends the parts in one call, checks the results against the model and records them.
    fn append_many(&mut self, store: &Store, parts: Vec<(String, ExpectedVersion, Vec<NewEvent>)>, what: &str) {
        let calls: Vec<StreamAppend<'_>> = parts.iter().map(|(s, x, e)| StreamAppend::new(s, *x, e)).collect();
        let results = store.append_many(&calls).unwrap_or_else(|e| panic!("{what}: append_many: {e}"));
        assert_eq!(results.len(), parts.len());
        for ((stream, expected, events), r) in parts.into_iter().zip(results) {
            self.record(stream, expected, events, r, what);
        }
        self.throttle(store);
    }

    /// A store was (re)opened with empty memtables: the throttle counts from here.
    fn opened(&mut self, store: &Store) {
        assert_eq!(store.stats().index_memtable_events, 0, "the memtables are empty after a clean reopen");
        self.unindexed = 0;
    }

    /// With a throttle: the append that brought the memtable to the checkpoint size (counted exactly as the store
    /// does) froze everything, the memtables being empty before it, so waiting until they are empty again
    /// cannot hang.
    fn throttle(&mut self, store: &Store) {
        if self.throttle.is_some_and(|t| self.unindexed >= t) {
            wait_until_indexed(store);
            self.unindexed = 0;
        }
    }

    fn append(&mut self, store: &Store, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>, what: &str) {
        let r = store
            .append(stream, expected, &events)
            .unwrap_or_else(|e| panic!("{what}: append to {stream:?} expecting {expected:?}: {e}"));
        self.record(stream.to_owned(), expected, events, r, what);
        self.throttle(store);
    }

    fn record(
        &mut self,
        stream: String,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        r: AppendResult,
        what: &str,
    ) {
        let first = self.version(&stream).map_or(0, |v| v + 1);
        let n = events.len() as u64;
        let want = AppendResult {
            first_version: first,
            last_version: first + n - 1,
            position: Position::from_u64(self.events.len() as u64 + n - 1),
        };
        assert_eq!(r, want, "{what}: result of the append to {stream:?} expecting {expected:?}");
        for (i, e) in events.iter().enumerate() {
            let (t, m, p) = (e.event_type().len(), e.metadata().len(), e.payload().len());
            self.unindexed += frame::event_frame_bytes(stream.len(), t, m, p) as u64;
            let position = self.events.len() as u64;
            self.events.push(Ev {
                stream: stream.clone(),
                version: first + i as u64,
                position,
                id: e.id(),
                event_type: e.event_type().to_owned(),
                payload: e.payload().to_vec(),
            });
            self.streams.entry(stream.clone()).or_default().push(position);
        }
        self.appends.push(Done { stream, expected, events, result: r });
    }

    /// Whether retrying `d` must be recognised: always for an exact expectation; for `Any`/`StreamExists` only
    /// if it is still the stream's newest append (the id of its last event is the stream's newest).
    fn retryable(&self, d: &Done) -> bool {
        match d.expected {
            ExpectedVersion::Exact(_) | ExpectedVersion::NoStream => true,
            _ => self.version(&d.stream) == Some(d.result.last_version),
        }
    }
}

fn read_stream(store: &Store, stream: &str, from: u64) -> Result<Vec<Ev>, Error> {
    store.read_stream(stream, from)?.map(|e| e.map(|e| ev_of(&e))).collect()
}

fn read_all_from(store: &Store, from: u64, limit: usize) -> Vec<Ev> {
    store
        .read_all(Position::from_u64(from))
        .take(limit)
        .map(|e| ev_of(&e.unwrap_or_else(|e| panic!("read_all from {from}: {e}"))))
        .collect()
}

/// Every stream reads back exactly its events (from version 0, from a random middle version, from past its
/// end), and `stream_version` and `head` agree with the model.
fn check_streams(store: &Store, model: &Model, rng: &mut Rng, what: &str) {
    assert_eq!(store.head().as_u64(), model.events.len() as u64, "{what}: head");
    for stream in model.streams.keys() {
        let want = model.stream_events(stream);
        let got = read_stream(store, stream, 0).unwrap_or_else(|e| panic!("{what}: read_stream({stream:?}, 0): {e}"));
        assert!(got == want, "{what}: read_stream({stream:?}, 0)\n got {:?}\nwant {:?}", brief(&got), brief(&want));
        let mid = rng.below(want.len() as u64 + 1);
        let got =
            read_stream(store, stream, mid).unwrap_or_else(|e| panic!("{what}: read_stream({stream:?}, {mid}): {e}"));
        assert!(got[..] == want[mid as usize..], "{what}: read_stream({stream:?}, {mid})");
        assert_eq!(store.stream_version(stream), Some(want.len() as u64 - 1), "{what}: stream_version({stream:?})");
    }
}

/// (version, position) pairs: short enough to print.
fn brief(evs: &[Ev]) -> Vec<(u64, u64)> {
    evs.iter().map(|e| (e.version, e.position)).collect()
}

#[track_caller]
fn assert_conflict(
    r: Result<AppendResult, Error>,
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<u64>,
    what: &str,
) {
    match r {
        Err(Error::WrongExpectedVersion { stream: s, expected: x, actual: a }) => {
            assert_eq!((s.as_str(), x, a), (stream, expected, actual), "{what}: the conflict reported");
        }
        other => panic!("{what}: append to {stream:?} expecting {expected:?} (actual {actual:?}): got {other:?}"),
    }
}

/// Conflicting appends to written and never-written streams (all of them colliding when the hash keeps few
/// bits) report the stream's real version, and retries of earlier appends return their original results;
/// none of it writes anything.
fn check_conflicts_and_retries(store: &Store, model: &Model, rng: &mut Rng, ghosts: &[String], what: &str) {
    let head = store.head();
    let names: Vec<&String> = model.streams.keys().collect();
    for _ in 0..60 {
        let stream = names[rng.below(names.len() as u64) as usize];
        let v = model.version(stream).expect("written");
        let ahead = ExpectedVersion::Exact(v + 1 + rng.below(3));
        assert_conflict(store.append(stream, ahead, &[new_event(rng, 8)]), stream, ahead, Some(v), what);
        let none = ExpectedVersion::NoStream;
        assert_conflict(store.append(stream, none, &[new_event(rng, 8)]), stream, none, Some(v), what);
        if v > 0 {
            // Behind: the new ids do not match the events at those versions, so this is no retry.
            let behind = ExpectedVersion::Exact(rng.below(v));
            assert_conflict(store.append(stream, behind, &[new_event(rng, 8)]), stream, behind, Some(v), what);
        }
    }
    for ghost in ghosts {
        assert_eq!(store.stream_version(ghost), None, "{what}: {ghost:?} was never written");
        assert_eq!(read_stream(store, ghost, 0).expect("read a ghost").len(), 0, "{what}: {ghost:?}");
        let exact = ExpectedVersion::Exact(rng.below(4));
        assert_conflict(store.append(ghost, exact, &[new_event(rng, 8)]), ghost, exact, None, what);
        let exists = ExpectedVersion::StreamExists;
        assert_conflict(store.append(ghost, exists, &[new_event(rng, 8)]), ghost, exists, None, what);
    }
    let retryable: Vec<&Done> = model.appends.iter().filter(|d| model.retryable(d)).collect();
    for _ in 0..60 {
        let d = retryable[rng.below(retryable.len() as u64) as usize];
        let r = store.append(&d.stream, d.expected, &d.events);
        assert_eq!(r.ok(), Some(d.result), "{what}: a retry of {d:?}");
    }
    assert_eq!(store.head(), head, "{what}: conflicts and retries wrote nothing");
}

// ---------------------------------------------------------------------------------------------------------
// The folder's index files

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// The chunk files' first positions, in order (the names are zero-padded, so sorting by name is by position).
fn chunk_firsts(names: &[String]) -> Vec<u64> {
    names.iter().filter_map(|n| n.strip_suffix(".idx")).map(|n| n.parse().expect("a chunk file name")).collect()
}

fn chunk_name(first: u64) -> String {
    format!("{first:020}.idx")
}

fn segment_names(names: &[String]) -> Vec<String> {
    names.iter().filter(|n| n.ends_with(".seg")).cloned().collect()
}

fn directory_header(dir: &Path) -> DirectoryHeader {
    let b = std::fs::read(dir.join(DIRECTORY)).expect("read streams.dir");
    DirectoryHeader::decode(&b).expect("a valid directory header")
}

/// After a clean close: the chunk files are valid, written with the directory's hash parameters, contiguous from
/// position 0, and cover every event; the directory says so.
fn assert_index_complete(dir: &Path, events: u64, what: &str) {
    let d = directory_header(dir);
    assert_eq!((d.applied_through, d.synced_through), (events, events), "{what}: the directory covers every event");
    let mut end = 0;
    for first in chunk_firsts(&names_in(dir)) {
        let b = std::fs::read(dir.join(chunk_name(first))).unwrap();
        let h = decode_chunk_header(&b, true).unwrap_or_else(|e| panic!("{what}: chunk {first}: {e}"));
        assert_eq!(h.first_position, end, "{what}: chunk files are contiguous");
        assert_eq!((h.hash_key, h.hash_bits), (d.hash_key, d.hash_bits), "{what}: chunk {first} hash parameters");
        end = h.end_position;
    }
    assert_eq!(end, events, "{what}: the chunk files cover every event");
}

fn copy_dir(from: &Path, to: &Path) {
    for name in names_in(from) {
        std::fs::copy(from.join(&name), to.join(&name)).unwrap();
    }
}

/// Flips bits of one byte of a file in place.
fn flip_byte(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x5a;
    std::fs::write(path, b).unwrap();
}

fn disk_options() -> Options {
    Options::new().segment_size(1 << 20).durability(Durability::Buffered)
}

/// The name of stream `i` of [`build_store`]: every third one longer than a directory slot holds.
fn stream_name(i: usize) -> String {
    if i.is_multiple_of(3) {
        format!("acct-{i}-{}", "long".repeat(SLOT_NAME_MAX / 4))
    } else {
        format!("acct-{i}")
    }
}

/// A store of `appends` appends of 1 to 3 events (payloads up to `max_payload` bytes) over 60 streams, indexed
/// in chunks of `checkpoint` bytes of log; closed cleanly, so everything is in chunk files.
fn build_store(dir: &Path, rng: &mut Rng, appends: usize, max_payload: u64, checkpoint: u64) -> Model {
    let store = disk_options().index_checkpoint_bytes(checkpoint).open(dir).unwrap();
    // A third of the names are too long for a directory slot (confirmed against the stream's newest frame).
    let streams: Vec<String> = (0..60).map(stream_name).collect();
    let mut model = Model { throttle: Some(checkpoint), ..Model::default() };
    for _ in 0..appends {
        // A few hot streams cross many chunks; the others hold a few events each.
        let stream = if rng.chance(1, 3) { &streams[rng.below(4) as usize] } else { &streams[rng.below(60) as usize] };
        let events: Vec<NewEvent> = (0..1 + rng.below(3)).map(|_| new_event(rng, max_payload)).collect();
        let expected = model.version(stream).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        model.append(&store, stream, expected, events, "build");
    }
    drop(store);
    let names = names_in(dir);
    assert!(segment_names(&names).len() >= 2, "the store spans segments: {names:?}");
    assert!(chunk_firsts(&names).len() >= 8, "the store has many chunk files: {names:?}");
    assert_index_complete(dir, model.events.len() as u64, "build");
    model
}

// ---------------------------------------------------------------------------------------------------------
// 1. Forced hash collisions

/// Random appends (single, multi-event, and several streams at once) with every kind of expected version, plus
/// conflicting appends and retries mixed in.
fn collision_workload(store: &Store, model: &mut Model, rng: &mut Rng, names: &[String], steps: usize, what: &str) {
    for _ in 0..steps {
        match rng.below(100) {
            0..=9 => {
                // Several distinct streams in one append, each with an exact expectation.
                let mut parts = Vec::new();
                for _ in 0..2 + rng.below(3) {
                    let stream = names[rng.below(names.len() as u64) as usize].clone();
                    if parts.iter().any(|(s, _, _): &(String, ExpectedVersion, Vec<NewEvent>)| *s == stream) {
                        continue;
                    }
                    let expected = model.version(&stream).map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let events = (0..1 + rng.below(2)).map(|_| new_event(rng, 300)).collect();
                    parts.push((stream, expected, events));
                }
                model.append_many(store, parts, what);
            }
            10..=17 => {
                let stream = &names[rng.below(names.len() as u64) as usize];
                let wrong = match model.version(stream) {
                    Some(v) => ExpectedVersion::Exact(v + 1),
                    None => ExpectedVersion::Exact(0),
                };
                let r = store.append(stream, wrong, &[new_event(rng, 8)]);
                assert_conflict(r, stream, wrong, model.version(stream), what);
            }
            18..=22 if !model.appends.is_empty() => {
                let d = &model.appends[rng.below(model.appends.len() as u64) as usize];
                if model.retryable(d) {
                    assert_eq!(store.append(&d.stream, d.expected, &d.events).ok(), Some(d.result), "{what}: retry");
                }
            }
            _ => {
                // Hot streams get long, crossing many chunks.
                let stream = if rng.chance(1, 4) {
                    &names[rng.below(8) as usize]
                } else {
                    &names[rng.below(names.len() as u64) as usize]
                };
                let expected = match (model.version(stream), rng.below(4)) {
                    (_, 0) => ExpectedVersion::Any,
                    (None, _) => ExpectedVersion::NoStream,
                    (Some(_), 1) => ExpectedVersion::StreamExists,
                    (Some(v), _) => ExpectedVersion::Exact(v),
                };
                let events = (0..1 + rng.below(3)).map(|_| new_event(rng, 700)).collect();
                model.append(store, stream, expected, events, what);
            }
        }
    }
}

fn forced_collisions(bits: u32, test: &str) {
    let mut rng = Rng::new(seed(test));
    let dir = tempfile::tempdir().unwrap();
    let options = disk_options().stream_hash_bits(bits).index_checkpoint_bytes(4 << 10);
    // Every other name is too long for a directory slot: those slots are confirmed against the frame.
    let long = "x".repeat(SLOT_NAME_MAX);
    let names: Vec<String> =
        (0..300).map(|i| format!("c-{i}-{}{}", rng.below(1000), if i % 2 == 0 { "" } else { &long })).collect();
    let ghosts: Vec<String> = (0..20).map(|i| format!("ghost-{i}")).collect();
    let mut model = Model { throttle: Some(4 << 10), ..Model::default() };

    let store = options.open(dir.path()).unwrap();
    assert_eq!(directory_header(dir.path()).hash_bits, bits, "the directory keeps {bits} bits of each hash");
    collision_workload(&store, &mut model, &mut rng, &names, 1500, "first session");
    check_streams(&store, &model, &mut rng, "after the appends");
    check_conflicts_and_retries(&store, &model, &mut rng, &ghosts, "after the appends");
    drop(store);
    assert_index_complete(dir.path(), model.events.len() as u64, "after the first close");
    let segments = segment_names(&names_in(dir.path())).len();
    assert!(segments >= 2, "the log spans segments (memtables that span two make two chunks): {segments}");
    let chunks = chunk_firsts(&names_in(dir.path())).len();
    assert!(chunks >= 20, "many chunk files: {chunks}");

    let store = options.open(dir.path()).unwrap();
    model.opened(&store);
    check_streams(&store, &model, &mut rng, "after a clean reopen");
    check_conflicts_and_retries(&store, &model, &mut rng, &ghosts, "after a clean reopen");
    collision_workload(&store, &mut model, &mut rng, &names, 300, "second session");
    check_streams(&store, &model, &mut rng, "after more appends");
    drop(store);

    let key = directory_header(dir.path()).hash_key;
    std::fs::remove_file(dir.path().join(DIRECTORY)).unwrap();
    let store = options.open(dir.path()).unwrap();
    let rebuilt = directory_header(dir.path());
    assert_ne!(rebuilt.hash_key, key, "without streams.dir the index is rebuilt (with a new hash key)");
    assert_eq!(rebuilt.hash_bits, bits);
    check_streams(&store, &model, &mut rng, "after a rebuild");
    check_conflicts_and_retries(&store, &model, &mut rng, &ghosts, "after a rebuild");
    drop(store);
    assert_index_complete(dir.path(), model.events.len() as u64, "after the rebuild's close");

    // (Reopened first: the throttle needs empty memtables, and a rebuild may leave some of the log in them.)
    let store = options.open(dir.path()).unwrap();
    model.opened(&store);
    collision_workload(&store, &mut model, &mut rng, &names, 300, "fourth session");
    check_streams(&store, &model, &mut rng, "after appends to the rebuilt index");
    drop(store);

    let store = options.open(dir.path()).unwrap();
    check_streams(&store, &model, &mut rng, "after the last reopen");
    let report = store.verify().expect("verify");
    let n = model.events.len() as u64;
    assert_eq!((report.events, report.indexed_events), (n, n), "verify checks every event against the index");
    assert!(report.copied_locations > 0, "verify checks the locations copied into later entries");
}

#[test]
fn colliding_stream_hashes_of_two_bits_are_told_apart() {
    forced_collisions(2, "colliding_stream_hashes_of_two_bits_are_told_apart");
}

#[test]
fn colliding_stream_hashes_of_one_bit_are_told_apart() {
    forced_collisions(1, "colliding_stream_hashes_of_one_bit_are_told_apart");
}

// ---------------------------------------------------------------------------------------------------------
// A file system that records reads and renames (around the real one or the simulated one)

#[derive(Debug, Clone, PartialEq, Eq)]
enum Io {
    Read { path: PathBuf, offset: u64, len: usize },
    Rename { to: PathBuf },
}

#[derive(Debug, Clone)]
struct Recorder {
    inner: Arc<dyn FileSystem>,
    log: Arc<Mutex<Vec<Io>>>,
}

impl Recorder {
    fn new(inner: Arc<dyn FileSystem>) -> Recorder {
        Recorder { inner, log: Arc::default() }
    }

    fn take(&self) -> Vec<Io> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    fn options(&self) -> Options {
        Options::new().file_system(Arc::new(self.clone()) as Arc<dyn FileSystem>)
    }
}

#[derive(Debug)]
struct RecordedFile {
    inner: Box<dyn FileHandle>,
    path: PathBuf,
    log: Arc<Mutex<Vec<Io>>>,
}

impl FileHandle for RecordedFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.log.lock().unwrap().push(Io::Read { path: self.path.clone(), offset, len: buf.len() });
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn len_bytes(&self) -> std::io::Result<u64> {
        self.inner.len_bytes()
    }
    fn map(&self) -> std::io::Result<Arc<dyn Mapping>> {
        self.inner.map()
    }
    fn map_mut(&self, offset: u64, len: usize) -> std::io::Result<Box<dyn MappingMut>> {
        self.inner.map_mut(offset, len)
    }
}

impl FileSystem for Recorder {
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn FileHandle>> {
        let inner = self.inner.open(path, mode)?;
        Ok(Box::new(RecordedFile { inner, path: path.to_path_buf(), log: self.log.clone() }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.log.lock().unwrap().push(Io::Rename { to: to.to_path_buf() });
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.inner.remove_file(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn try_lock(&self, path: &Path) -> std::io::Result<Option<Box<dyn LockGuard>>> {
        self.inner.try_lock(path)
    }
    fn boot_id(&self) -> [u8; 16] {
        self.inner.boot_id()
    }
}

/// Waits until the indexer has written every frozen memtable and the active one is empty.
fn wait_until_indexed(store: &Store) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.stats().index_memtable_events > 0 {
        assert!(Instant::now() < deadline, "the indexer made no progress for a minute: {:?}", store.stats());
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------------------------
// 2. Many streams: the directory grows

#[test]
fn twenty_thousand_streams_grow_the_directory_five_times() {
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new(Arc::new(StdFileSystem));
    let options =
        recorder.options().segment_size(1 << 20).durability(Durability::Buffered).index_checkpoint_bytes(4 << 10);
    let store = options.open(dir.path()).unwrap();
    // Each append is larger than a checkpoint: with the throttle, each is one memtable.
    let mut model = Model { throttle: Some(4 << 10), ..Model::default() };
    let name = |i: usize| format!("stream-{i:05}");
    // 250 new streams per append, each append one memtable (it is larger than a checkpoint, and the previous
    // one is indexed before it is written): the directory gets at most 250 streams at a time, so it grows one
    // doubling at a time, from 1024 slots to the 32768 that 20,000 streams need at most 71.7% load.
    for batch in 0..80 {
        let parts = (0..250)
            .map(|i| (name(batch * 250 + i), ExpectedVersion::NoStream, vec![NewEvent::new("Created", format!("{i}"))]))
            .collect();
        model.append_many(&store, parts, "create");
    }
    // A second event for every tenth stream: those streams span two chunks.
    for batch in 0..8 {
        let parts = (0..250)
            .map(|i| (name((batch * 250 + i) * 10), ExpectedVersion::Exact(0), vec![NewEvent::new("Touched", "x")]))
            .collect();
        model.append_many(&store, parts, "touch");
    }
    drop(store);
    let renames =
        recorder.take().iter().filter(|io| matches!(io, Io::Rename { to } if to.ends_with(DIRECTORY))).count();
    assert_eq!(renames, 6, "streams.dir is written once at creation and once per growth (1024 -> 32768 slots)");
    let h = directory_header(dir.path());
    assert_eq!((h.slot_count_log2, h.used), (15, 20_000), "the directory's size and load");
    let events = model.events.len() as u64;
    assert_eq!(events, 22_000);
    assert_index_complete(dir.path(), events, "after the close");

    let store = Options::new().segment_size(1 << 20).open(dir.path()).unwrap();
    for i in 0..20_000 {
        let want = if i % 10 == 0 { 1 } else { 0 };
        assert_eq!(store.stream_version(&name(i)), Some(want), "stream_version of {}", name(i));
    }
    for i in (0..20_000).step_by(7) {
        let got = read_stream(&store, &name(i), 0).unwrap();
        assert_eq!(got, model.stream_events(&name(i)), "read_stream of {}", name(i));
    }
    assert_eq!(store.stream_version(&name(20_000)), None);
    let report = store.verify().expect("verify");
    let names = names_in(dir.path());
    assert_eq!((report.events, report.indexed_events), (events, events), "every event is checked against the index");
    assert_eq!(report.index_chunks, chunk_firsts(&names).len() as u64);
    assert_eq!(report.segments, segment_names(&names).len() as u64);
}

// ---------------------------------------------------------------------------------------------------------
// 3. What an open reads of the log

const SIM_DIR: &str = "/data/store";

fn sim_names(sim: &SimFs) -> Vec<String> {
    let dir = Path::new(SIM_DIR);
    let mut names: Vec<String> = sim
        .paths()
        .into_iter()
        .filter(|(p, is_dir)| !is_dir && p.parent() == Some(dir))
        .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The header of the newest chunk file of the store on `sim`.
fn last_chunk(sim: &SimFs) -> ChunkHeader {
    let first = *chunk_firsts(&sim_names(sim)).last().expect("chunk files");
    let bytes = sim.read_file(&Path::new(SIM_DIR).join(chunk_name(first))).expect("the chunk file");
    decode_chunk_header(&bytes, true).expect("a valid chunk file")
}

/// Checks that every read of a segment file during an open was of a segment header or of the log past the end
/// of the chunk `last` (in its segment, or in a later segment), and that the scan started exactly there.
fn assert_reads_only_past(reads: &[Io], segments: &[String], last: &ChunkHeader, what: &str) {
    let mut headers = 0;
    let mut resumed = false;
    for io in reads {
        let Io::Read { path, offset, len } = io else { continue };
        let name = path.file_name().unwrap().to_string_lossy();
        if !name.ends_with(".seg") {
            continue;
        }
        let number = segments.iter().position(|s| *s == name).expect("a segment of the store") as u64;
        if (*offset, *len) == (0, segment_header::SIZE_BYTES) {
            headers += 1;
            continue;
        }
        let past = number > last.segment_number || (number == last.segment_number && *offset >= last.end_offset);
        assert!(
            past,
            "{what}: read {len} bytes at offset {offset} of segment {number}: the index holds everything before \
             offset {} of segment {}",
            last.end_offset, last.segment_number
        );
        resumed |= number == last.segment_number && *offset == last.end_offset;
    }
    assert_eq!(headers, segments.len(), "{what}: one header read per segment");
    assert!(resumed, "{what}: the scan resumes where the last chunk ends: {reads:?}");
}

fn check_sim_store(store: &Store, model: &Model, what: &str) {
    let all = read_all_from(store, 0, usize::MAX);
    assert!(all == model.events, "{what}: read_all returns exactly what was written");
    let mut rng = Rng::new(1);
    check_streams(store, model, &mut rng, what);
}

#[test]
fn a_clean_reopen_reads_no_event_and_a_crashed_one_only_the_unindexed_tail() {
    let mut rng = Rng::new(seed("a_clean_reopen_reads_no_event_and_a_crashed_one_only_the_unindexed_tail"));
    let sim = SimFs::new();
    sim.create_dir_all(Path::new("/data")).unwrap();
    sim.sync_dir(Path::new("/")).unwrap();
    let on = |fs: &SimFs, checkpoint: u64| {
        let recorder = Recorder::new(Arc::new(fs.clone()));
        let options = recorder.options().segment_size(1 << 20).sync_interval(None).index_checkpoint_bytes(checkpoint);
        (recorder, options)
    };
    let streams: Vec<String> = (0..12).map(|i| format!("s-{i}")).collect();
    let mut model = Model { throttle: Some(64 << 10), ..Model::default() };
    let write = |store: &Store, model: &mut Model, rng: &mut Rng, appends: usize| {
        for _ in 0..appends {
            let stream = &streams[rng.below(streams.len() as u64) as usize];
            let events = (0..1 + rng.below(2)).map(|_| new_event(rng, 3000)).collect();
            model.append(store, stream, ExpectedVersion::Any, events, "write");
        }
    };

    // About 1.2 MiB: two segments, chunk files of about 64 KiB.
    let (_, options) = on(&sim, 64 << 10);
    let store = options.open(SIM_DIR).unwrap();
    write(&store, &mut model, &mut rng, 520);
    drop(store);
    let names = sim_names(&sim);
    let segments = segment_names(&names);
    assert!(segments.len() >= 2, "two segments at least: {names:?}");
    let last = last_chunk(&sim);
    assert_eq!(last.end_position, model.events.len() as u64, "a clean close indexes everything");

    let (recorder, options) = on(&sim, 64 << 10);
    let store = options.open(SIM_DIR).unwrap();
    let reads = recorder.take();
    assert_reads_only_past(&reads, &segments, &last, "a clean reopen");
    assert_eq!(store.stats().index_memtable_events, 0);
    check_sim_store(&store, &model, "after a clean reopen");
    drop(store);

    // Appends that stay in the memtable (no checkpoint is due), then a crash of the process.
    model.throttle = None;
    let (_, options) = on(&sim, 1 << 30);
    let store = options.open(SIM_DIR).unwrap();
    let indexed = model.events.len() as u64;
    write(&store, &mut model, &mut rng, 150);
    let image = sim.crash(CrashMode::PROCESS, rng.next_u64());
    drop(store);
    assert_eq!(last_chunk(&image), last, "nothing was indexed since the clean close");
    let segments = segment_names(&sim_names(&image));
    let (recorder, options) = on(&image, 64 << 10);
    let store = options.open(SIM_DIR).unwrap();
    let reads = recorder.take();
    assert_reads_only_past(&reads, &segments, &last, "an open after a crash");
    assert!(model.events.len() as u64 > indexed);
    check_sim_store(&store, &model, "after a crash of the process");
    let report = store.verify().expect("verify after the crash");
    assert_eq!(report.events, model.events.len() as u64);
    drop(store);

    // A crash while the indexer is busy (small checkpoints): whatever state the index files are in, the store
    // opens with everything.
    let (_, options) = on(&image, 4 << 10);
    let store = options.open(SIM_DIR).unwrap();
    write(&store, &mut model, &mut rng, 100);
    let crashed = image.crash(CrashMode::PROCESS, rng.next_u64());
    drop(store);
    let (_, options) = on(&crashed, 4 << 10);
    let store = options.open(SIM_DIR).unwrap();
    check_sim_store(&store, &model, "after a crash during indexing");
    store.verify().expect("verify after a crash during indexing");
}

// ---------------------------------------------------------------------------------------------------------
// 4. The upgrade path: missing or invalid index files

/// Everything reads back, verify passes; after a clean close the index covers everything.
fn check_disk_store(dir: &Path, model: &Model, rng: &mut Rng, what: &str) {
    let store = disk_options().open(dir).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    check_streams(&store, model, rng, what);
    assert!(read_all_from(&store, 0, usize::MAX) == model.events, "{what}: read_all");
    let report = store.verify().unwrap_or_else(|e| panic!("{what}: verify: {e}"));
    assert_eq!(report.events, model.events.len() as u64, "{what}: verify");
    assert!(!dir.join(MARKER).exists(), "{what}: no rebuild marker");
    drop(store);
    assert_index_complete(dir, model.events.len() as u64, what);
}

/// Opens a damaged copy: the open must rebuild the index (a new hash key), and then hold everything.
fn assert_rebuilt_at_open(base: &Path, model: &Model, rng: &mut Rng, what: &str, damage: impl FnOnce(&Path)) {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(base, copy.path());
    damage(copy.path());
    let old_key = directory_header(base).hash_key;
    let store = disk_options().open(copy.path()).unwrap_or_else(|e| panic!("{what}: open: {e}"));
    assert_ne!(directory_header(copy.path()).hash_key, old_key, "{what}: the open rebuilt the index");
    drop(store);
    check_disk_store(copy.path(), model, rng, what);
}

/// The streams with an event among the positions `[from, to)`, and those whose newest event is among them.
fn streams_touching(model: &Model, from: u64, to: u64) -> (Vec<String>, Vec<String>) {
    let inside = |p: &u64| (from..to).contains(p);
    let any = model.streams.iter().filter(|(_, ps)| ps.iter().any(inside)).map(|(s, _)| s.clone()).collect();
    let newest = model.streams.iter().filter(|(_, ps)| inside(ps.last().unwrap())).map(|(s, _)| s.clone()).collect();
    (any, newest)
}

/// With the index damaged in positions `[from, to)` (reported as damage to `file`): a read of a stream returns
/// `Err(Corrupt)` naming `file` only when it needs an event in that range, and is right otherwise;
/// `stream_version` (the directory) is right for every stream; the rebuild marker is written.
fn assert_damage_seen_by_reads(store: &Store, dir: &Path, model: &Model, from: u64, to: u64, file: &Path, what: &str) {
    assert!(!dir.join(MARKER).exists(), "{what}: the damage is not found at open");
    let (touching, newest) = streams_touching(model, from, to);
    assert!(!touching.is_empty());
    for (stream, ps) in &model.streams {
        let last = ps.len() as u64 - 1;
        for (from_version, bad) in [(0, touching.contains(stream)), (last, newest.contains(stream))] {
            match read_stream(store, stream, from_version) {
                Err(Error::Corrupt { file: f, .. }) if bad => assert_eq!(f, file, "{what}: the file named"),
                // A read that needs the damaged chunk's events may still not visit it: later entries carry
                // copies of a stream's recent locations. Then it must be right.
                Ok(got) => assert!(got[..] == model.stream_events(stream)[from_version as usize..]),
                other => panic!(
                    "{what}: read_stream({stream:?}, {from_version}) (events at {} positions, damage in {from}..{to}): \
                     {:?}",
                    ps.len(),
                    other.map(|evs| evs.len())
                ),
            }
        }
        assert_eq!(store.stream_version(stream), Some(last), "{what}: stream_version({stream:?})");
    }
    // read_all does not need the chunk: the log is intact.
    assert!(
        read_all_from(store, from, 100)[..]
            == model.events[from as usize..(from as usize + 100).min(model.events.len())]
    );
    match store.verify() {
        Err(Error::Corrupt { file: f, .. }) => assert_eq!(f, file, "{what}: verify names the file"),
        other => panic!("{what}: verify: {other:?}"),
    }
    assert!(dir.join(MARKER).exists(), "{what}: the rebuild marker is written");
}

/// Rewrites `streams.dir` as the build before directory version 2 wrote it (docs/FORMAT.md, "Versioning"): the
/// same header with `index_version` 1, and 32-byte slots (hash, last position, last version, last segment + 1,
/// last offset) in the same places, without names, ids or checksums.
fn write_version_1_directory(dir: &Path) {
    let path = dir.join(DIRECTORY);
    let v2 = std::fs::read(&path).unwrap();
    let h = DirectoryHeader::decode(&v2).unwrap();
    let mut v1 = vec![0u8; DIRECTORY_HEADER_BYTES + h.slot_count() as usize * 32];
    v1[..DIRECTORY_HEADER_BYTES].copy_from_slice(&v2[..DIRECTORY_HEADER_BYTES]);
    v1[12..16].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32fast::hash(&v1[12..128]);
    v1[8..12].copy_from_slice(&crc.to_le_bytes());
    let slots = &v2[DIRECTORY_HEADER_BYTES..];
    for i in 0..h.slot_count() as usize {
        if let SlotRead::Used(s) = read_slot(slots, i) {
            let at = DIRECTORY_HEADER_BYTES + i * 32;
            v1[at..at + 8].copy_from_slice(&s.hash.to_le_bytes());
            v1[at + 8..at + 16].copy_from_slice(&s.last_position.to_le_bytes());
            v1[at + 16..at + 24].copy_from_slice(&s.last_version.to_le_bytes());
            v1[at + 24..at + 28].copy_from_slice(&(s.last_segment + 1).to_le_bytes());
            v1[at + 28..at + 32].copy_from_slice(&s.last_offset.to_le_bytes());
        }
    }
    std::fs::write(&path, v1).unwrap();
}

/// The index of the directory slot that holds `stream` (by its name, or for a long name by its newest event's
/// position).
fn slot_of(dir: &Path, stream: &str, model: &Model) -> usize {
    let b = std::fs::read(dir.join(DIRECTORY)).unwrap();
    let h = DirectoryHeader::decode(&b).unwrap();
    let last = *model.streams[stream].last().unwrap();
    (0..h.slot_count() as usize)
        .find(|&i| match read_slot(&b[DIRECTORY_HEADER_BYTES..], i) {
            SlotRead::Used(s) => s.name().map_or(s.last_position == last, |n| n == stream.as_bytes()),
            _ => false,
        })
        .unwrap_or_else(|| panic!("no slot holds {stream:?}"))
}

/// The next open rebuilds the index (and removes the marker); everything reads back.
fn assert_rebuilt_after_marker(dir: &Path, model: &Model, rng: &mut Rng, what: &str) {
    let old_key = directory_header(dir).hash_key;
    let store = disk_options().open(dir).unwrap();
    assert!(!dir.join(MARKER).exists(), "{what}: the marker is removed by the rebuild");
    assert_ne!(directory_header(dir).hash_key, old_key, "{what}: the open rebuilt the index");
    drop(store);
    check_disk_store(dir, model, rng, what);
}

#[test]
fn missing_or_invalid_index_files_are_rebuilt_from_the_log() {
    let mut rng = Rng::new(seed("missing_or_invalid_index_files_are_rebuilt_from_the_log"));
    let base = tempfile::tempdir().unwrap();
    // About 1.4 MiB (two segments), chunks of about 16 KiB.
    let model = build_store(base.path(), &mut rng, 1000, 900, 16 << 10);
    let firsts = chunk_firsts(&names_in(base.path()));
    let n = firsts.len();

    // A store written before the index existed: no index file at all.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(base.path(), copy.path());
    for name in names_in(copy.path()) {
        if name.ends_with(".idx") || name == DIRECTORY {
            std::fs::remove_file(copy.path().join(name)).unwrap();
        }
    }
    check_disk_store(copy.path(), &model, &mut rng, "no index files");

    let set_len = |len: u64| {
        move |dir: &Path| std::fs::File::options().write(true).open(dir.join(DIRECTORY)).unwrap().set_len(len).unwrap()
    };
    assert_rebuilt_at_open(base.path(), &model, &mut rng, "streams.dir empty", set_len(0));
    assert_rebuilt_at_open(base.path(), &model, &mut rng, "streams.dir shorter than its header", set_len(100));
    assert_rebuilt_at_open(base.path(), &model, &mut rng, "streams.dir cut after its header", set_len(4096 + 7 * 32));
    for offset in [0, 8, 16, 20, 40, 48, 100] {
        let what = format!("streams.dir header byte {offset} damaged");
        assert_rebuilt_at_open(base.path(), &model, &mut rng, &what, |dir| flip_byte(&dir.join(DIRECTORY), offset));
    }
    assert_rebuilt_at_open(base.path(), &model, &mut rng, "streams.dir of version 1", write_version_1_directory);
    let remove = |first: u64| move |dir: &Path| std::fs::remove_file(dir.join(chunk_name(first))).unwrap();
    assert_rebuilt_at_open(base.path(), &model, &mut rng, "the first chunk file missing", remove(firsts[0]));
    assert_rebuilt_at_open(base.path(), &model, &mut rng, "the last chunk file missing", remove(firsts[n - 1]));
    assert_rebuilt_at_open(base.path(), &model, &mut rng, "every chunk file missing", |dir| {
        for first in &firsts {
            std::fs::remove_file(dir.join(chunk_name(*first))).unwrap();
        }
    });
    // The newest chunk is the one open verifies (the scan resumes where it ends).
    assert_rebuilt_at_open(base.path(), &model, &mut rng, "the last chunk file damaged", |dir| {
        let path = dir.join(chunk_name(firsts[n - 1]));
        flip_byte(&path, std::fs::metadata(&path).unwrap().len() / 2);
    });

    // A middle chunk missing: the open trusts the directory (it verifies only the newest chunk); the chunk
    // before the gap now seems to cover the gap too, and is refused when first used.
    let k = 1 + rng.below(n as u64 - 2) as usize;
    let what = format!("chunk {k} of {n} missing");
    let copy = tempfile::tempdir().unwrap();
    copy_dir(base.path(), copy.path());
    std::fs::remove_file(copy.path().join(chunk_name(firsts[k]))).unwrap();
    let old_key = directory_header(copy.path()).hash_key;
    let store = disk_options().open(copy.path()).unwrap();
    assert_eq!(directory_header(copy.path()).hash_key, old_key, "{what}: no rebuild at open");
    let file = copy.path().join(chunk_name(firsts[k - 1]));
    assert_damage_seen_by_reads(&store, copy.path(), &model, firsts[k - 1], firsts[k + 1], &file, &what);
    drop(store);
    assert_rebuilt_after_marker(copy.path(), &model, &mut rng, &what);
}

// ---------------------------------------------------------------------------------------------------------
// 5. A damaged chunk file

#[test]
fn a_damaged_chunk_file_is_reported_and_rebuilt_at_the_next_open() {
    let mut rng = Rng::new(seed("a_damaged_chunk_file_is_reported_and_rebuilt_at_the_next_open"));
    let dir = tempfile::tempdir().unwrap();
    let model = build_store(dir.path(), &mut rng, 1000, 900, 16 << 10);
    let firsts = chunk_firsts(&names_in(dir.path()));
    let k = rng.below(firsts.len() as u64 - 1) as usize;
    let path = dir.path().join(chunk_name(firsts[k]));
    let len = std::fs::metadata(&path).unwrap().len();
    let offset = len / 2 + rng.below(len / 4);
    let what = format!("chunk {k} of {} damaged at byte {offset} of {len}", firsts.len());
    flip_byte(&path, offset);

    let store = disk_options().open(dir.path()).unwrap();
    assert_damage_seen_by_reads(&store, dir.path(), &model, firsts[k], firsts[k + 1], &path, &what);
    drop(store);
    assert_rebuilt_after_marker(dir.path(), &model, &mut rng, &what);
}

// ---------------------------------------------------------------------------------------------------------
// 6. A damaged directory slot

/// A slot whose checksum fails is never trusted: the stream's appends and lookups report the damage (saying "no
/// such stream" would let an append start it again at version 0), the rebuild marker is written, and the next
/// open rebuilds the index. Other streams are unaffected.
#[test]
fn a_damaged_directory_slot_is_reported_and_rebuilt_at_the_next_open() {
    let mut rng = Rng::new(seed("a_damaged_directory_slot_is_reported_and_rebuilt_at_the_next_open"));
    let dir = tempfile::tempdir().unwrap();
    let model = build_store(dir.path(), &mut rng, 1000, 900, 16 << 10);
    let stream = stream_name(1 + rng.below(59) as usize);
    let byte = rng.below(SLOT_BYTES as u64);
    let slot = slot_of(dir.path(), &stream, &model);
    let what = format!("slot {slot} ({stream:?}) damaged at its byte {byte}");
    flip_byte(&dir.path().join(DIRECTORY), (DIRECTORY_HEADER_BYTES + slot * SLOT_BYTES) as u64 + byte);

    let store = disk_options().open(dir.path()).unwrap();
    assert!(!dir.path().join(MARKER).exists(), "{what}: the damage is not found at open");
    let last = model.streams[&stream].len() as u64 - 1;
    match store.append(&stream, ExpectedVersion::Exact(last), &[NewEvent::new("E", "x")]) {
        Err(Error::Corrupt { file, .. }) => assert_eq!(file, dir.path().join(DIRECTORY), "{what}: the file named"),
        other => panic!("{what}: append: {other:?}"),
    }
    match store.append(&stream, ExpectedVersion::Any, &[NewEvent::new("E", "x")]) {
        Err(Error::Corrupt { .. }) => {}
        other => panic!("{what}: append Any: {other:?}"),
    }
    assert_eq!(store.stream_version(&stream), None, "{what}: a damaged index answers None");
    assert!(dir.path().join(MARKER).exists(), "{what}: the rebuild marker is written");
    match store.verify() {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert_eq!(
                (file, offset),
                (dir.path().join(DIRECTORY), (DIRECTORY_HEADER_BYTES + slot * SLOT_BYTES) as u64)
            )
        }
        other => panic!("{what}: verify: {other:?}"),
    }
    for (other, ps) in model.streams.iter().filter(|(s, _)| **s != stream) {
        // Streams whose probe passes the damaged slot and finds theirs after it are still answered.
        if let Some(v) = store.stream_version(other) {
            assert_eq!(v, ps.len() as u64 - 1, "{what}: stream_version({other:?})");
        }
    }
    drop(store);
    assert_rebuilt_after_marker(dir.path(), &model, &mut rng, &what);
}

/// A slot whose checksum is right but which says the wrong thing (damage that a checksum cannot see, or a bug)
/// is found by `verify`, which compares every slot with the event it names.
#[test]
fn verify_compares_every_directory_slot_with_the_log() {
    let mut rng = Rng::new(seed("verify_compares_every_directory_slot_with_the_log"));
    let dir = tempfile::tempdir().unwrap();
    let mut model = build_store(dir.path(), &mut rng, 1000, 900, 16 << 10);
    let report = disk_options().open(dir.path()).unwrap().verify().unwrap();
    assert_eq!(report.directory_slots, model.streams.len() as u64, "every stream's slot is checked");
    for (field, at) in [
        ("last_position", 8),
        ("last_version", 16),
        ("last_offset", 28),
        ("last_id", 40),
        ("name", 50),
        ("last_entry", 120),
    ] {
        let stream = stream_name(1 + 3 * rng.below(19) as usize);
        let slot = slot_of(dir.path(), &stream, &model);
        let what = format!("slot {slot} ({stream:?}) with a wrong {field}");
        let copy = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), copy.path());
        let path = copy.path().join(DIRECTORY);
        let mut b = std::fs::read(&path).unwrap();
        b[DIRECTORY_HEADER_BYTES + slot * SLOT_BYTES + at] ^= 1;
        seal_slot(&mut b[DIRECTORY_HEADER_BYTES..], slot);
        std::fs::write(&path, b).unwrap();
        match disk_options().open(copy.path()).unwrap().verify() {
            Err(Error::Corrupt { file, offset, .. }) => assert_eq!(
                (file, offset),
                (path.clone(), (DIRECTORY_HEADER_BYTES + slot * SLOT_BYTES) as u64),
                "{what}: verify names the slot"
            ),
            other => panic!("{what}: verify: {other:?}"),
        }
        if field == "last_entry" {
            // (The last case: the model follows this copy from here.) Only a hint: a read, and the indexer's link
            // from the stream's next entry, search the chunk when the entry named is not the stream's.
            let store = disk_options().index_checkpoint_bytes(16 << 10).open(copy.path()).unwrap();
            assert_eq!(read_stream(&store, &stream, 0).unwrap(), model.stream_events(&stream), "{what}: read");
            let last = model.streams[&stream].len() as u64 - 1;
            let events = vec![new_event(&mut rng, 100)];
            model.append(&store, &stream, ExpectedVersion::Exact(last), events, &what);
            drop(store);
            let store = disk_options().open(copy.path()).unwrap();
            assert_eq!(read_stream(&store, &stream, 0).unwrap(), model.stream_events(&stream), "{what}: read after");
        }
    }
}

/// `verify` while the indexer works: it applies a memtable's slots before it lists the memtable's chunks, so a
/// slot may name an entry of a chunk that verify's view of the index does not have yet. That is no damage.
#[test]
fn verify_runs_while_appends_and_the_indexer_go_on() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let store = disk_options().index_checkpoint_bytes(8 << 10).open(dir.path()).unwrap();
    let (stop, appended) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (store, stop, appended) = (store.clone(), stop.clone(), appended.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let n = appended.load(Ordering::Relaxed);
                let stream = format!("s-{}", n % 500);
                store.append(&stream, ExpectedVersion::Any, &[NewEvent::new("E", vec![1u8; 100])]).unwrap();
                appended.store(n + 1, Ordering::Relaxed);
            }
        })
    };
    // Until the writer has crossed a few hundred checkpoints, with verifications all along.
    let mut verifications = 0;
    while verifications < 30 || appended.load(Ordering::Relaxed) < 20_000 {
        store.verify().unwrap_or_else(|e| panic!("verify {verifications} while writing: {e}"));
        verifications += 1;
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    drop(store);
    // A clean close applies everything: one slot per stream.
    let report = disk_options().open(dir.path()).unwrap().verify().unwrap();
    assert_eq!(report.directory_slots, 500, "every stream's slot");
}

/// After a crash the open applies again every chunk the directory may not hold durably, and a slot torn by the
/// crash belongs to one of the streams applied again: the open takes the damaged slot over, and nothing is
/// reported or rebuilt.
#[test]
fn a_torn_directory_slot_of_a_stream_applied_again_is_repaired_at_open() {
    let mut rng = Rng::new(seed("a_torn_directory_slot_of_a_stream_applied_again_is_repaired_at_open"));
    let dir = tempfile::tempdir().unwrap();
    let model = build_store(dir.path(), &mut rng, 1000, 900, 16 << 10);
    let firsts = chunk_firsts(&names_in(dir.path()));
    // Say the directory is durable only up to chunk k, as if the process or the machine had stopped after the
    // slots of the later chunks were written but before the directory was synced (another boot: the open trusts
    // only `synced_through`); and tear the slot of a stream whose newest event is in a later chunk.
    let k = 1 + rng.below(firsts.len() as u64 - 2) as usize;
    let (_, newest) = streams_touching(&model, firsts[k], u64::MAX);
    let stream = newest[rng.below(newest.len() as u64) as usize].clone();
    let slot = slot_of(dir.path(), &stream, &model);
    let what = format!("directory synced through chunk {k}, slot {slot} ({stream:?}) torn");
    let path = dir.path().join(DIRECTORY);
    let mut b = std::fs::read(&path).unwrap();
    let mut h = DirectoryHeader::decode(&b).unwrap();
    h.synced_through = firsts[k];
    h.applied_through = firsts[k];
    h.boot_id = [0; 16];
    h.encode_into(&mut b[..DIRECTORY_HEADER_BYTES]);
    let at = DIRECTORY_HEADER_BYTES + slot * SLOT_BYTES;
    b[at + 40..at + SLOT_BYTES].fill(0xA5);
    std::fs::write(&path, b).unwrap();

    let key = directory_header(dir.path()).hash_key;
    let store = disk_options().open(dir.path()).unwrap();
    assert_eq!(directory_header(dir.path()).hash_key, key, "{what}: no rebuild at open");
    let last = model.streams[&stream].len() as u64 - 1;
    assert_eq!(store.stream_version(&stream), Some(last), "{what}: stream_version");
    assert_eq!(read_stream(&store, &stream, 0).unwrap(), model.stream_events(&stream), "{what}: read_stream");
    drop(store);
    check_disk_store(dir.path(), &model, &mut rng, &what);
    assert_eq!(directory_header(dir.path()).used, model.streams.len() as u64, "{what}: one slot per stream");
}

// ---------------------------------------------------------------------------------------------------------
// 7. read_all from any position, through the chunks' sparse maps

#[test]
fn read_all_from_any_position_after_a_clean_reopen() {
    let mut rng = Rng::new(seed("read_all_from_any_position_after_a_clean_reopen"));
    let dir = tempfile::tempdir().unwrap();
    // About 2 MiB (two or three segments) of small events, in chunks of about 64 KiB: several hundred events
    // each, so their sparse maps have several entries.
    let model = build_store(dir.path(), &mut rng, 3500, 300, 64 << 10);
    let names = names_in(dir.path());
    let head = model.events.len() as u64;
    let large = chunk_firsts(&names)
        .into_iter()
        .map(|first| decode_chunk_header(&std::fs::read(dir.path().join(chunk_name(first))).unwrap(), true).unwrap())
        .filter(|h| h.sparse_count() >= 3)
        .count();
    assert!(large >= 5, "chunks with several sparse entries: {large}");
    let mut positions: Vec<u64> = vec![0, 1, head - 1, head];
    for first in chunk_firsts(&names) {
        positions.extend([first.saturating_sub(1), first, first + 1, first + 63, first + 64, first + 65, first + 128]);
    }
    for seg in segment_names(&names) {
        let first: u64 = seg.strip_suffix(".seg").unwrap().parse().unwrap();
        positions.extend([first.saturating_sub(1), first, first + 1]);
    }
    positions.extend((0..200).map(|_| rng.below(head + 1)));
    positions.retain(|&p| p <= head);

    let store = disk_options().open(dir.path()).unwrap();
    assert_eq!(store.stats().index_memtable_events, 0, "everything is in the chunk files");
    for &p in &positions {
        let got = read_all_from(&store, p, 40);
        let want = &model.events[p as usize..(p as usize + 40).min(model.events.len())];
        assert!(got[..] == *want, "read_all from {p}: got positions {:?}", brief(&got));
    }
    for _ in 0..3 {
        let p = rng.below(head);
        assert!(read_all_from(&store, p, usize::MAX)[..] == model.events[p as usize..], "read_all from {p} to the end");
    }
    assert_eq!(store.read_all(Position::from_u64(head)).count(), 0);
}

// ---------------------------------------------------------------------------------------------------------
// A damaged chunk file met by the indexer or by recovery, not by a read

/// A store whose stream "early" has events only among the first 100 positions, closed cleanly, with the chunk
/// file holding early's newest event damaged (not the newest chunk: the open does not look at it). Returns the
/// model and the damaged file.
fn store_with_damaged_early_chunk(dir: &Path) -> (Model, PathBuf) {
    let checkpoint = 16 << 10;
    let store = disk_options().index_checkpoint_bytes(checkpoint).open(dir).unwrap();
    let mut model = Model { throttle: Some(checkpoint), ..Model::default() };
    for i in 0..400u32 {
        let stream = if i < 100 && i % 2 == 0 { "early" } else { "filler" };
        model.append(&store, stream, ExpectedVersion::Any, vec![NewEvent::new("E", vec![i as u8; 200])], "build");
    }
    drop(store);
    let firsts = chunk_firsts(&names_in(dir));
    let newest = *model.streams["early"].last().unwrap();
    let k = firsts.iter().rposition(|&f| f <= newest).unwrap();
    assert!(k + 1 < firsts.len(), "early's newest event is not in the newest chunk");
    let path = dir.join(chunk_name(firsts[k]));
    flip_byte(&path, std::fs::metadata(&path).unwrap().len() / 2);
    (model, path)
}

/// Appends `events` events of 4 KB to "filler".
fn fill(store: &Store, model: &mut Model, events: usize) {
    for _ in 0..events {
        model.append(store, "filler", ExpectedVersion::Any, vec![NewEvent::new("E", vec![7u8; 4000])], "fill");
    }
}

#[test]
fn a_damaged_chunk_met_by_the_indexer_does_not_stop_appends() {
    let dir = tempfile::tempdir().unwrap();
    let (mut model, damaged) = store_with_damaged_early_chunk(dir.path());
    let store = disk_options().index_checkpoint_bytes(16 << 10).open(dir.path()).unwrap();
    model.opened(&store);
    model.throttle = None;
    // early's next event: the chunk that will hold it names the entry of early's previous event, in the damaged
    // chunk. Then enough to freeze the memtable.
    let v = model.version("early");
    let chunks_before = store.stats().index_chunks;
    model.append(&store, "early", ExpectedVersion::Exact(v.unwrap()), vec![NewEvent::new("E", "late")], "early");
    fill(&store, &mut model, 5);
    assert!(model.unindexed >= 16 << 10, "the memtable is frozen");
    // The indexer writes the frozen memtable (naming no entry in the damaged chunk) and goes on.
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.stats().index_chunks == chunks_before {
        store.sync().expect("a damaged index file does not poison the store");
        assert!(Instant::now() < deadline, "the indexer made no progress for a minute");
        std::thread::sleep(Duration::from_millis(1));
    }
    fill(&store, &mut model, 3);
    assert!(dir.path().join(MARKER).exists(), "the indexer met the damage: the rebuild marker is written");
    match read_stream(&store, "early", 0) {
        Err(Error::Corrupt { file, .. }) => assert_eq!(file, damaged),
        other => panic!("read_stream(early): {:?}", other.map(|e| e.len())),
    }
    drop(store);
    assert_rebuilt_after_marker(dir.path(), &model, &mut Rng::new(3), "after the indexer met a damaged chunk");
}

#[test]
fn an_open_whose_recovery_meets_a_damaged_chunk_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (mut model, _damaged) = store_with_damaged_early_chunk(dir.path());
    // A session that indexes nothing (no checkpoint is due): early's next event, then 1.2 MiB (a sealed segment).
    let store = disk_options().index_checkpoint_bytes(1 << 30).open(dir.path()).unwrap();
    model.throttle = None;
    let v = model.version("early");
    model.append(&store, "early", ExpectedVersion::Exact(v.unwrap()), vec![NewEvent::new("E", "late")], "early");
    fill(&store, &mut model, 300);
    // A crash of the process: a copy of the folder taken while the store is open.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    drop(store);
    let store = disk_options()
        .index_checkpoint_bytes(16 << 10)
        .open(crashed.path())
        .expect("the open after the crash succeeds: the log is intact, the index can be rebuilt");
    assert!(read_all_from(&store, 0, usize::MAX) == model.events, "read_all after the crash");
    assert!(crashed.path().join(MARKER).exists(), "the damage recovery met is marked for a rebuild");
    drop(store);
    check_disk_store(crashed.path(), &model, &mut Rng::new(4), "the open after the one that met the damage");
}

// ---------------------------------------------------------------------------------------------------------
// Copied locations

#[test]
fn wrong_copied_locations_are_reported_by_reads_and_verify() {
    // An entry's copies of earlier locations are data written by the indexer, under the chunk's checksum: a
    // wrong copy (a bug, or damage behind a recomputed checksum) must be reported, never returned as an event.
    let mut rng = Rng::new(seed("wrong_copied_locations_are_reported_by_reads_and_verify"));
    let dir = tempfile::tempdir().unwrap();
    let model = build_store(dir.path(), &mut rng, 700, 2_500, 8 << 10);
    let names = names_in(dir.path());
    // The newest chunk with an entry carrying two or more copies: swap two of them, fix the checksum.
    let mut target = None;
    for first in chunk_firsts(&names).into_iter().rev() {
        let path = dir.path().join(chunk_name(first));
        let mut b = std::fs::read(&path).unwrap();
        let h = decode_chunk_header(&b, true).unwrap();
        let recent_at = h.layout().recent;
        let entry = (0..h.stream_count as usize)
            .map(|i| annals::format::index::chunk_stream(&b, i))
            .find(|e| e.recent_count >= 2);
        if let Some(e) = entry {
            let a = recent_at + e.recent_at as usize * 8;
            let (x, y) = (b[a..a + 8].to_vec(), b[a + 8..a + 16].to_vec());
            b[a..a + 8].copy_from_slice(&y);
            b[a + 8..a + 16].copy_from_slice(&x);
            let crc = crc32fast::hash(&b[12..]);
            b[8..12].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&path, &b).unwrap();
            target = Some((path, e.hash, e.first_version - u64::from(e.recent_count)));
            break;
        }
    }
    let (path, _hash, swapped_version) = target.expect("some entry carries copies of earlier locations");
    let store = disk_options().open(dir.path()).unwrap();
    // Some stream reads through the swapped copies: it gets Corrupt, never a wrong event; every other read is right.
    let mut reported = 0;
    for stream in model.streams.keys() {
        match read_stream(&store, stream, 0) {
            Ok(got) => assert!(got[..] == model.stream_events(stream)[..], "{stream}: a read returned wrong events"),
            Err(Error::Corrupt { .. }) => reported += 1,
            Err(e) => panic!("{stream}: {e}"),
        }
    }
    assert!(reported >= 1, "the read through the swapped copies (version {swapped_version}) is reported");
    match store.verify() {
        Err(Error::Corrupt { file, reason, .. }) => {
            assert_eq!(file, path, "verify names the chunk file ({reason})");
        }
        other => panic!("verify: {other:?}"),
    }
}
