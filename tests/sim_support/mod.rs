//! Helpers shared by the tests that run a store on the simulated file system (`annals::fs::sim`): seeds and
//! counts from the environment, a randomised workload that records what it wrote and what was acknowledged
//! (and at which operation of the file system), and the checks of a recovered store against that record.
//!
//! The record is the written log: every append attempted, in order, with its events. A store recovered from
//! a crash must hold an exact prefix of it that ends on an append boundary (all-or-nothing), contains every
//! append acknowledged before the crash, and nothing started after the crash.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use annals::fs::sim::{CrashMode, CrashPoint, DataCrash, Rng, SimFs};
use annals::{Durability, Error, ExpectedVersion, NewEvent, Options, Position, Store, StreamAppend, Uuid};

/// The store folder inside the simulated file system.
pub const DIR: &str = "/data/store";

pub fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

/// A seed from `ANNALS_SEED`, or a fresh one; printed with the command that replays it.
pub fn seed(test: &str) -> u64 {
    let seed = match std::env::var("ANNALS_SEED") {
        Ok(s) => s.trim().parse().expect("ANNALS_SEED must be a u64"),
        Err(_) => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
            (t as u64) ^ ((std::process::id() as u64) << 32)
        }
    };
    let target = env!("CARGO_CRATE_NAME");
    println!("{test}: seed {seed} (replay: ANNALS_SEED={seed} cargo test --test {target} -- --exact {test})");
    seed
}

/// A count from the environment variable `var`, else `default`.
pub fn count(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

pub fn options(sim: &SimFs, durability: Durability) -> Options {
    Options::new()
        .segment_size(1 << 20)
        .durability(durability)
        .sync_interval(None)
        // Small index checkpoints, so the workloads cross many of them (chunk files, the indexer, recovery).
        .index_checkpoint_bytes(8 << 10)
        .file_system(Arc::new(sim.clone()) as Arc<dyn annals::fs::FileSystem>)
}

/// A file system holding an empty folder `/data` whose entry is durable (the store creates `store` in it).
pub fn new_sim() -> SimFs {
    use annals::fs::FileSystem;
    let sim = SimFs::new();
    sim.create_dir_all(Path::new("/data")).unwrap();
    sim.sync_dir(Path::new("/")).unwrap();
    sim
}

// ---------------------------------------------------------------------------------------------------------
// The record of what was written

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ev {
    pub stream: String,
    pub version: u64,
    pub id: Uuid,
    pub event_type: String,
    pub payload: Vec<u8>,
    pub metadata: Vec<u8>,
}

/// One append attempted: its events are `events[start..end]` of the log.
#[derive(Debug, Clone)]
pub struct Batch {
    pub start: usize,
    pub end: usize,
    /// File-system operations done when the append was called.
    pub start_op: u64,
    /// When it returned `Ok`: the operation count then.
    pub acked_op: Option<u64>,
    /// When it became known to be durable (a `Sync` append returned, a `sync()` or a clean close covered it).
    pub durable_op: Option<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct Log {
    pub events: Vec<Ev>,
    pub batches: Vec<Batch>,
}

impl Log {
    pub fn last_version(&self, stream: &str) -> Option<u64> {
        self.events.iter().rev().find(|e| e.stream == stream).map(|e| e.version)
    }

    /// Appends a crash at `at` must keep: those known to be durable when it happened and, when the crash keeps
    /// all written data (a crash of the process), those acknowledged before it.
    pub fn required_at(&self, at: CrashPoint, mode: CrashMode) -> usize {
        let written_kept = mode.data == DataCrash::KeepAll;
        let c = at.ops_done;
        // An append acknowledged with the count at `c` made its stores after operation `c` began: before the
        // next operation, but maybe after operation `c` ended.
        let acked = |a: u64| a < c || (at.before_next && a == c);
        self.batches
            .iter()
            .take_while(|b| b.durable_op.is_some_and(|d| d <= c) || (written_kept && b.acked_op.is_some_and(acked)))
            .count()
    }

    /// Appends started before the crash at `at`: it can hold no other.
    pub fn possible_at(&self, at: CrashPoint) -> usize {
        self.batches.iter().take_while(|b| b.start_op <= at.ops_done).count()
    }

    /// Marks every acknowledged append durable as of `op`.
    pub fn all_durable(&mut self, op: u64) {
        for b in &mut self.batches {
            if b.acked_op.is_some() && b.durable_op.is_none() {
                b.durable_op = Some(op);
            }
        }
    }

    /// The log of the first `batches` appends.
    pub fn prefix(&self, batches: usize) -> Log {
        let end = if batches == 0 { 0 } else { self.batches[batches - 1].end };
        Log { events: self.events[..end].to_vec(), batches: self.batches[..batches].to_vec() }
    }

    pub fn streams(&self) -> Vec<String> {
        let mut s: Vec<String> = self.events.iter().map(|e| e.stream.clone()).collect();
        s.sort();
        s.dedup();
        s
    }
}

/// Reads everything a store holds.
pub fn read_everything(store: &Store, what: &str) -> Vec<Ev> {
    store
        .read_all(Position::START)
        .map(|e| {
            let e = e.unwrap_or_else(|e| panic!("{what}: read_all: {e}"));
            Ev {
                stream: e.stream().to_owned(),
                version: e.version(),
                id: e.id(),
                event_type: e.event_type().to_owned(),
                payload: e.payload().to_vec(),
                metadata: e.metadata().to_vec(),
            }
        })
        .collect()
}

/// Checks a recovered store against the written log: it holds an exact prefix of it that ends on an append
/// boundary, with at least `required` and at most `possible` appends; `read_stream`, `stream_version` and
/// `head` agree. Returns the number of appends it holds.
pub fn check_recovered(store: &Store, log: &Log, required: usize, possible: usize, what: &str) -> usize {
    let got = read_everything(store, what);
    assert_eq!(store.head(), Position::from_u64(got.len() as u64), "{what}: head vs read_all");
    assert!(got.len() <= log.events.len(), "{what}: {} events recovered, only {} written", got.len(), log.events.len());
    for (i, (g, w)) in got.iter().zip(&log.events).enumerate() {
        assert!(g == w, "{what}: event at position {i} differs from what was written:\n got {g:?}\nwant {w:?}");
    }
    let batches = if got.is_empty() {
        0
    } else {
        match log.batches.iter().position(|b| b.end == got.len()) {
            Some(i) => i + 1,
            None => panic!("{what}: {} events recovered: not an append boundary (an append cut in two)", got.len()),
        }
    };
    assert!(
        batches >= required,
        "{what}: acknowledged appends lost: {batches} appends recovered, {required} were acknowledged ({} events)",
        log.batches.get(required.max(1) - 1).map_or(0, |b| b.end)
    );
    assert!(batches <= possible, "{what}: {batches} appends recovered, only {possible} were started before the crash");
    let prefix = log.prefix(batches);
    for stream in prefix.streams() {
        let want: Vec<&Ev> = prefix.events.iter().filter(|e| e.stream == stream).collect();
        let got: Vec<(u64, Uuid)> = store
            .read_stream(&stream, 0)
            .unwrap_or_else(|e| panic!("{what}: read_stream {stream}: {e}"))
            .map(|e| e.map(|e| (e.version(), e.id())).unwrap_or_else(|e| panic!("{what}: read_stream {stream}: {e}")))
            .collect();
        let want_ids: Vec<(u64, Uuid)> = want.iter().map(|e| (e.version, e.id)).collect();
        assert_eq!(got, want_ids, "{what}: read_stream {stream}");
        assert_eq!(store.stream_version(&stream), prefix.last_version(&stream), "{what}: stream_version {stream}");
    }
    for stream in log.streams() {
        if prefix.last_version(&stream).is_none() {
            assert_eq!(store.stream_version(&stream), None, "{what}: stream {stream} should not exist");
        }
    }
    batches
}

// ---------------------------------------------------------------------------------------------------------
// The workload

/// Shapes of the randomised workload.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Out of 100: an append of one large event (tens to hundreds of KiB), so 1 MiB segments roll.
    pub large_pct: u64,
    /// Out of 100: a clean close and reopen.
    pub reopen_pct: u64,
    /// Out of 100 (`Buffered` only): a `sync()`.
    pub sync_pct: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Shape { large_pct: 6, reopen_pct: 3, sync_pct: 12 }
    }
}

/// A randomised workload on a store on the simulated file system, recording everything in a [`Log`].
pub struct Workload {
    pub rng: Rng,
    pub sim: SimFs,
    pub durability: Durability,
    pub store: Option<Store>,
    pub log: Log,
    pub shape: Shape,
    streams: Vec<String>,
}

impl Workload {
    /// Opens a store on `sim` at [`DIR`].
    pub fn open(sim: SimFs, seed: u64, durability: Durability) -> Result<Workload, Error> {
        let mut rng = Rng::new(seed);
        // The last name is too long for a directory slot, which then holds only its hash (docs/FORMAT.md).
        let long = "-long".repeat(20);
        let streams =
            (0..5).map(|i| format!("stream-{i}-{}{}", rng.below(1000), if i == 4 { &long[..] } else { "" })).collect();
        let store = options(&sim, durability).open(dir())?;
        Ok(Workload { rng, sim, durability, store: Some(store), log: Log::default(), shape: Shape::default(), streams })
    }

    pub fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }

    fn event(&mut self, i: usize, large: bool) -> NewEvent {
        let size = if large { 60_000 + self.rng.below(300_000) as usize } else { self.rng.below(1500) as usize };
        let seed = self.rng.next_u64();
        let payload: Vec<u8> = (0..size).map(|j| (seed.wrapping_add(j as u64 * 0x9e37) >> 13) as u8 | 1).collect();
        let id = Uuid::from_u64_pair(self.rng.next_u64(), self.rng.next_u64());
        let meta = if self.rng.chance(1, 3) { format!("meta-{i}").into_bytes() } else { Vec::new() };
        NewEvent::new(format!("Type{}", self.rng.below(4)), payload).with_id(id).with_metadata(meta)
    }

    fn expected(&mut self, stream: &str) -> ExpectedVersion {
        match (self.log.last_version(stream), self.rng.below(5)) {
            (_, 0) => ExpectedVersion::Any,
            (None, _) => ExpectedVersion::NoStream,
            (Some(_), 1) => ExpectedVersion::StreamExists,
            (Some(v), _) => ExpectedVersion::Exact(v),
        }
    }

    /// Performs one random step. An error stops the workload: the caller decides what it means.
    pub fn step(&mut self) -> Result<(), Error> {
        let roll = self.rng.below(100);
        if roll < self.shape.reopen_pct {
            return self.reopen();
        }
        if self.durability == Durability::Buffered && roll < self.shape.reopen_pct + self.shape.sync_pct {
            self.store().sync()?;
            let op = self.sim.ops();
            self.log.all_durable(op);
            return Ok(());
        }
        let large = self.rng.below(100) < self.shape.large_pct;
        match self.rng.below(10) {
            0..=4 => self.append_one(1, large),
            5..=7 => {
                let n = 2 + self.rng.below(5) as usize;
                self.append_one(n, large)
            }
            _ => self.append_many(large),
        }
    }

    /// An append of `n` events to one stream.
    pub fn append_one(&mut self, n: usize, large: bool) -> Result<(), Error> {
        let stream = self.streams[self.rng.below(self.streams.len() as u64) as usize].clone();
        let expected = self.expected(&stream);
        let events: Vec<NewEvent> = (0..n).map(|i| self.event(i, large && i == 0)).collect();
        self.write(&[(stream, expected, events)])
    }

    /// One event with exactly `payload` bytes of payload, type `Type0` and no metadata, to a random stream with
    /// `Any`. Returns the stream.
    pub fn append_sized(&mut self, payload: usize) -> Result<String, Error> {
        let stream = self.streams[self.rng.below(self.streams.len() as u64) as usize].clone();
        let id = Uuid::from_u64_pair(self.rng.next_u64(), self.rng.next_u64());
        let event = NewEvent::new("Type0", vec![7u8; payload]).with_id(id);
        self.write(&[(stream.clone(), ExpectedVersion::Any, vec![event])])?;
        Ok(stream)
    }

    /// The longest stream name the workload uses.
    pub fn longest_stream_name(&self) -> usize {
        self.streams.iter().map(String::len).max().unwrap_or(0)
    }

    /// An `append_many` over 2 or 3 streams.
    pub fn append_many(&mut self, large: bool) -> Result<(), Error> {
        let k = 2 + self.rng.below(2) as usize;
        let first = self.rng.below(self.streams.len() as u64) as usize;
        let mut parts = Vec::new();
        for j in 0..k {
            let stream = self.streams[(first + j) % self.streams.len()].clone();
            let expected = self.expected(&stream);
            let n = 1 + self.rng.below(3) as usize;
            let events: Vec<NewEvent> = (0..n).map(|i| self.event(i, large && j == 0 && i == 0)).collect();
            parts.push((stream, expected, events));
        }
        self.write(&parts)
    }

    fn write(&mut self, parts: &[(String, ExpectedVersion, Vec<NewEvent>)]) -> Result<(), Error> {
        let start = self.log.events.len();
        for (stream, _, events) in parts {
            let first = self.log.last_version(stream).map_or(0, |v| v + 1);
            for (i, e) in events.iter().enumerate() {
                self.log.events.push(Ev {
                    stream: stream.clone(),
                    version: first + i as u64,
                    id: e.id(),
                    event_type: e.event_type().to_owned(),
                    payload: e.payload().to_vec(),
                    metadata: e.metadata().to_vec(),
                });
            }
        }
        let end = self.log.events.len();
        self.log.batches.push(Batch { start, end, start_op: self.sim.ops(), acked_op: None, durable_op: None });
        let store = self.store.as_ref().expect("the store is open");
        let results = if parts.len() == 1 {
            let (stream, expected, events) = &parts[0];
            store.append(stream, *expected, events).map(|r| vec![r])
        } else {
            let many: Vec<StreamAppend<'_>> = parts.iter().map(|(s, x, e)| StreamAppend::new(s, *x, e)).collect();
            store.append_many(&many)
        };
        let op = self.sim.ops();
        let results = results?;
        let b = self.log.batches.last_mut().expect("pushed above");
        b.acked_op = Some(op);
        if self.durability == Durability::Sync {
            b.durable_op = Some(op);
        }
        // The results must say where the events went.
        let mut at = start;
        for ((stream, _, events), r) in parts.iter().zip(&results) {
            let first = &self.log.events[at];
            assert_eq!(&first.stream, stream);
            assert_eq!(r.first_version, first.version, "append result: first version");
            assert_eq!(r.last_version, first.version + events.len() as u64 - 1, "append result: last version");
            at += events.len();
            assert_eq!(r.position, Position::from_u64(at as u64 - 1), "append result: position");
        }
        Ok(())
    }

    /// Closes the store cleanly and opens it again.
    pub fn reopen(&mut self) -> Result<(), Error> {
        if !self.close() {
            return Err(Error::Io(std::io::Error::other("the close did not complete")));
        }
        self.store = Some(options(&self.sim, self.durability).open(dir())?);
        Ok(())
    }

    /// Closes the store; true if the close completed (no crash, no injected failure during it), which makes
    /// every acknowledged append durable.
    pub fn close(&mut self) -> bool {
        let failures = self.sim.injected().len();
        drop(self.store.take());
        if self.sim.is_halted() || self.sim.injected().len() != failures {
            return false;
        }
        let op = self.sim.ops();
        self.log.all_durable(op);
        true
    }

    /// Opens the store again after a failure left it closed or poisoned (the handle must be dropped already).
    /// Appends acknowledged before are expected back, so they count as acknowledged again; what the failed
    /// append did is left to the checks.
    pub fn reopen_after_failure(&mut self) -> Result<(), Error> {
        assert!(self.store.is_none(), "drop the failed store first");
        self.sim.clear_faults();
        let store = options(&self.sim, self.durability).open(dir())?;
        // Whatever recovery kept of the failed append is now part of the log: it reads back, so it is
        // acknowledged from here on.
        let kept = read_everything(&store, "reopen after a failure").len();
        for b in &mut self.log.batches {
            if b.acked_op.is_none() && b.end <= kept {
                b.acked_op = Some(self.sim.ops());
            }
        }
        if let Some(b) = self.log.batches.last() {
            if b.acked_op.is_none() {
                self.forget_last_batch();
            }
        }
        self.store = Some(store);
        Ok(())
    }

    /// Forgets the last append attempted (one that failed without writing anything).
    pub fn forget_last_batch(&mut self) {
        let b = self.log.batches.pop().expect("a batch to forget");
        assert!(b.acked_op.is_none(), "an acknowledged append is not forgotten");
        self.log.events.truncate(b.start);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Diagnostics

/// A description of the store files of a simulated file system: names, lengths and, for segments, every
/// valid frame up to the first invalid one and the valid frames after it (for failure messages).
pub fn describe(sim: &SimFs) -> String {
    use annals::format::frame;
    use annals::format::segment_header::{self, SegmentHeader};
    let mut out = String::new();
    for (path, is_dir) in sim.paths() {
        if is_dir || !path.starts_with(DIR) {
            continue;
        }
        let bytes = sim.read_file(&path).unwrap_or_default();
        out += &format!("  {} ({} bytes)", path.display(), bytes.len());
        let Ok(h) = SegmentHeader::decode(&bytes) else {
            out += "\n";
            continue;
        };
        out += &format!(" segment {} first {} salt {:x}\n", h.segment_number, h.first_position, h.salt);
        let mut at = segment_header::SIZE_BYTES;
        let mut in_order = true;
        while at + frame::HEADER_BYTES <= bytes.len() {
            match frame::decode(&bytes[at..], h.salt) {
                Ok(f) => {
                    out += &format!(
                        "    {}{at}: {:?} pos {} batch_end {} durable {} bytes {}\n",
                        if in_order { "" } else { "(after a gap) " },
                        f.kind,
                        f.position,
                        f.batch_end,
                        f.durable,
                        f.frame_bytes
                    );
                    at += f.frame_bytes as usize;
                }
                Err(e) => {
                    if in_order {
                        let nonzero = bytes[at..].iter().any(|&b| b != 0);
                        out += &format!("    {at}: stop: {e} (nonzero bytes after: {nonzero})\n");
                        in_order = false;
                    }
                    at += 16;
                }
            }
        }
    }
    out
}
