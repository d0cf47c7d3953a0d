//! Helpers shared by the crash-recovery, corruption, lock and bad-input tests: a seeded PRNG, snapshots and
//! copies of a store folder's bytes, frame walking with the (doc-hidden) format module, and a model of what was
//! appended to check a recovered store against.
//!
//! Crash states are made from copies: a copy of the folder's files taken while a store is open is what a crash
//! of the process leaves behind at that moment (no clean-close marker; with `Durability::Sync` every
//! acknowledged byte is in it). Mixing two such copies sector by sector gives the states a power loss can leave.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use annals::format::frame::{self, Frame, FrameKind};
use annals::format::segment_header::{self, SegmentHeader};
use annals::{Error, ExpectedVersion, NewEvent, Position, Store, Uuid};

/// Sector size of the crash model.
pub const SECTOR: usize = 512;

// ---------------------------------------------------------------------------------------------------------
// Seeded randomness

/// splitmix64: small, fast, good enough to pick damage; replays exactly from its seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `ANNALS_SEED` if set, else from the clock. Prints the seed.
    pub fn from_env(test: &str) -> Rng {
        let seed = match std::env::var("ANNALS_SEED") {
            Ok(s) => s.trim().parse().expect("ANNALS_SEED must be a u64"),
            Err(_) => {
                let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
                (t as u64) ^ ((std::process::id() as u64) << 32)
            }
        };
        let target = env!("CARGO_CRATE_NAME");
        println!("{test}: seed {seed} (replay: ANNALS_SEED={seed} cargo test --test {target} -- --exact {test})");
        Rng(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform in `lo..hi` (`lo < hi`).
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below((hi - lo) as u64) as usize
    }

    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// Random bytes, none of them zero (so that every byte of a payload counts when damage is looked for).
    pub fn nonzero_bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() % 255) as u8 + 1).collect()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Number of cases for a randomised test: `ANNALS_CASES` if set, else `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("ANNALS_CASES").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------------------
// Folder bytes

/// Every regular file of a folder, by name, with its bytes.
pub type Snapshot = BTreeMap<String, Vec<u8>>;

pub fn snapshot(dir: &Path) -> Snapshot {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(name, std::fs::read(entry.path()).expect("read file"));
        }
    }
    files
}

/// Writes `snap` into `dir` (created if needed), which must hold nothing else.
pub fn restore(dir: &Path, snap: &Snapshot) {
    std::fs::create_dir_all(dir).expect("create dir");
    for (name, bytes) in snap {
        std::fs::write(dir.join(name), bytes).expect("write file");
    }
}

/// The state a crash of the process would leave right now: a copy of every file of `src` into a new folder.
/// Temporary files (`*.tmp`, such as a segment being prepared in the background) are left out: every open
/// removes them, so they would only make "a failed open changes no file" depend on timing. Their removal is
/// tested on its own.
pub fn crash_copy(src: &Path, dst: &Path) {
    let mut snap = snapshot(src);
    snap.retain(|name, _| !name.ends_with(".tmp"));
    restore(dst, &snap);
}

/// Asserts two snapshots are identical, naming the first difference.
pub fn assert_same_files(before: &Snapshot, after: &Snapshot, what: &str) {
    let names_before: Vec<_> = before.keys().collect();
    let names_after: Vec<_> = after.keys().collect();
    assert_eq!(names_before, names_after, "{what}: the set of files changed (left: before, right: after)");
    for (name, a) in before {
        let b = &after[name];
        assert_eq!(a.len(), b.len(), "{what}: {name} changed length");
        if let Some(i) = a.iter().zip(b.iter()).position(|(x, y)| x != y) {
            panic!("{what}: {name} changed at byte {i} ({:#04x} -> {:#04x})", a[i], b[i]);
        }
    }
}

/// The segment files of a store folder, oldest first.
pub fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

pub fn newest_segment(dir: &Path) -> PathBuf {
    segment_paths(dir).pop().expect("the store has a segment")
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

/// Writes `bytes` at `offset` of an existing file, in place (the file's length does not change).
pub fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open for writing");
    f.write_all_at(bytes, offset).expect("write_at");
    f.sync_data().expect("sync");
}

pub fn zero_range(path: &Path, from: u64, to: u64) {
    write_at(path, from, &vec![0u8; (to - from) as usize]);
}

// ---------------------------------------------------------------------------------------------------------
// Frames

/// A valid frame found in a segment file, and where.
#[derive(Debug, Clone, Copy)]
pub struct FrameAt {
    pub offset: u64,
    pub frame: Frame,
}

impl FrameAt {
    pub fn end(&self) -> u64 {
        self.offset + self.frame.frame_bytes as u64
    }
    pub fn is_event(&self) -> bool {
        self.frame.kind == FrameKind::Event
    }
}

pub fn header_of(bytes: &[u8]) -> SegmentHeader {
    SegmentHeader::decode(bytes).expect("valid segment header")
}

/// The valid frames of a segment file's bytes, from its first one up to the first invalid or empty one.
pub fn frames_of(bytes: &[u8]) -> Vec<FrameAt> {
    let salt = header_of(bytes).salt;
    let mut out = Vec::new();
    let mut at = segment_header::SIZE_BYTES;
    while at < bytes.len() {
        match frame::decode(&bytes[at..], salt) {
            Ok(f) => {
                out.push(FrameAt { offset: at as u64, frame: f });
                at += f.frame_bytes as usize;
            }
            Err(_) => break,
        }
    }
    out
}

pub fn frames(path: &Path) -> Vec<FrameAt> {
    frames_of(&read(path))
}

/// The event frames grouped by append (consecutive frames with the same `batch_end`).
pub fn appends_of(frames: &[FrameAt]) -> Vec<Vec<FrameAt>> {
    let mut out: Vec<Vec<FrameAt>> = Vec::new();
    for f in frames.iter().filter(|f| f.is_event()) {
        match out.last_mut() {
            Some(a) if a[0].frame.batch_end == f.frame.batch_end && f.frame.position < f.frame.batch_end => a.push(*f),
            _ => out.push(vec![*f]),
        }
    }
    out
}

/// The offset of the frame (from `frames`) that holds byte `at`.
pub fn frame_holding(frames: &[FrameAt], at: u64) -> Option<FrameAt> {
    frames.iter().copied().find(|f| f.offset <= at && at < f.end())
}

/// Offset of the first byte where `a` and `b` differ.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b.iter()).position(|(x, y)| x != y)
}

// ---------------------------------------------------------------------------------------------------------
// What was appended

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub stream: String,
    pub version: u64,
    pub id: Uuid,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub metadata: Vec<u8>,
}

/// Every acknowledged event in position order, and the appends as ranges of positions.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub events: Vec<Expected>,
    pub appends: Vec<std::ops::Range<usize>>,
}

impl Model {
    /// Appends one event per payload to `stream` (`ExpectedVersion::Exact` of what the model knows), checks
    /// the result and records it.
    pub fn append(&mut self, store: &Store, stream: &str, payloads: &[Vec<u8>]) {
        let first_version = self.version_of(stream).map_or(0, |v| v + 1);
        let expected = match first_version {
            0 => ExpectedVersion::NoStream,
            v => ExpectedVersion::Exact(v - 1),
        };
        let new: Vec<NewEvent> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| NewEvent::new(format!("Type{}", i % 3), p.clone()).with_metadata(format!("m{i}")))
            .collect();
        let r = store.append(stream, expected, &new).expect("append");
        let start = self.events.len();
        assert_eq!(r.first_version, first_version);
        assert_eq!(r.position.as_u64(), (start + payloads.len() - 1) as u64);
        for (i, e) in new.iter().enumerate() {
            self.events.push(Expected {
                stream: stream.to_owned(),
                version: first_version + i as u64,
                id: e.id(),
                event_type: e.event_type().to_owned(),
                payload: e.payload().to_vec(),
                metadata: e.metadata().to_vec(),
            });
        }
        self.appends.push(start..self.events.len());
    }

    pub fn version_of(&self, stream: &str) -> Option<u64> {
        self.events.iter().rev().find(|e| e.stream == stream).map(|e| e.version)
    }

    /// The model with only its first `appends` appends.
    pub fn prefix(&self, appends: usize) -> Model {
        let end = if appends == 0 { 0 } else { self.appends[appends - 1].end };
        Model { events: self.events[..end].to_vec(), appends: self.appends[..appends].to_vec() }
    }

    pub fn streams(&self) -> Vec<String> {
        let mut s: Vec<String> = self.events.iter().map(|e| e.stream.clone()).collect();
        s.sort();
        s.dedup();
        s
    }
}

fn check_event(ev: &annals::RecordedEvent, want: &Expected, position: usize, what: &str) {
    assert_eq!(ev.position(), Position::from_u64(position as u64), "{what}: position");
    assert_eq!(ev.stream(), want.stream, "{what}: stream at {position}");
    assert_eq!(ev.version(), want.version, "{what}: version at {position}");
    assert_eq!(ev.id(), want.id, "{what}: id at {position}");
    assert_eq!(ev.event_type(), want.event_type, "{what}: type at {position}");
    assert!(ev.payload() == &want.payload[..], "{what}: payload at {position} differs");
    assert!(ev.metadata() == &want.metadata[..], "{what}: metadata at {position} differs");
}

/// Asserts the store holds exactly the model's events: head, `read_all`, every stream's `read_stream` and
/// `stream_version`, and streams the model does not know (`extra_streams`) read as empty.
pub fn assert_holds(store: &Store, model: &Model, what: &str) {
    assert_eq!(store.head(), Position::from_u64(model.events.len() as u64), "{what}: head");
    let all: Vec<_> =
        store.read_all(Position::START).collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{what}: read_all: {e}"));
    assert_eq!(all.len(), model.events.len(), "{what}: read_all length");
    for (i, (ev, want)) in all.iter().zip(&model.events).enumerate() {
        check_event(ev, want, i, what);
    }
    for stream in model.streams() {
        let want: Vec<(usize, &Expected)> =
            model.events.iter().enumerate().filter(|(_, e)| e.stream == stream).collect();
        let got: Vec<_> = store
            .read_stream(&stream, 0)
            .expect("read_stream")
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{what}: read_stream {stream}: {e}"));
        assert_eq!(got.len(), want.len(), "{what}: events in {stream}");
        for (ev, (p, w)) in got.iter().zip(&want) {
            check_event(ev, w, *p, what);
        }
        assert_eq!(store.stream_version(&stream), model.version_of(&stream), "{what}: stream_version {stream}");
    }
}

/// Asserts the damage at `file` and `offset` is reported as `Error::Corrupt` naming both: by `open` if it is in
/// the part of the log open reads (past the stream index), otherwise by `Store::verify` (open does not re-read
/// indexed segments), and then the store must have opened with nothing cut (its head is `head`).
pub fn assert_corrupt(result: Result<Store, Error>, file: &Path, offset: u64, what: &str) {
    match result {
        Err(Error::Corrupt { file: f, offset: o, reason }) => {
            assert_eq!(f, file, "{what}: Corrupt names the wrong file ({reason})");
            assert_eq!(o, offset, "{what}: Corrupt names the wrong offset ({reason})");
        }
        Err(e) => panic!("{what}: expected Error::Corrupt in {} at {offset}, got {e:?}", file.display()),
        Ok(s) => match s.verify() {
            Err(Error::Corrupt { file: f, offset: o, reason }) => {
                assert_eq!(f, file, "{what}: verify's Corrupt names the wrong file ({reason})");
                assert_eq!(o, offset, "{what}: verify's Corrupt names the wrong offset ({reason})");
            }
            other => panic!(
                "{what}: expected Error::Corrupt in {} at {offset} from open or verify, but the store opened with head {:?} and verify said {other:?} (silent truncation?)",
                file.display(),
                s.head()
            ),
        },
    }
}

/// Random nonzero payloads of the given sizes.
pub fn payloads(rng: &mut Rng, sizes: &[usize]) -> Vec<Vec<u8>> {
    sizes.iter().map(|&n| rng.nonzero_bytes(n)).collect()
}
