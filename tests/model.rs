//! Model-based property test: random sequences of operations run against a store (1 MiB segments, so segments
//! roll) and against a small in-memory model written from API.md alone. Every answer of the store (results,
//! errors with their fields, reads, versions, head) must equal the model's.
//!
//! Cases: 64 by default; set PROPTEST_CASES for more. On a failure proptest prints the (shrunk) sequence of
//! operations, and the message names the operation that diverged and how.
//!
//! Rules the model implements (API.md):
//! - positions are gapless from 0 in commit order; a stream's versions are gapless from 0;
//! - `Exact(n)` / `NoStream` (start s = n+1 / 0): if s is the stream's next version, append; else if the k
//!   events at versions s..s+k carry the k ids in order, return the original result; else conflict;
//! - `Any` / `StreamExists`: `StreamExists` on a missing stream is a conflict; if the stream's newest k events
//!   carry the k ids in order, return the original result; else append;
//! - `append_many`: invalid input (empty list, a part without events, a stream named twice, an id twice) is
//!   `InvalidInput`; otherwise every part is decided, the first conflicting part is reported and nothing is
//!   written; otherwise the parts to write are written in part order.

use std::collections::HashMap;
use std::fmt;

use annals::{Durability, Error, ExpectedVersion, NewEvent, Options, Position, Store, StreamAppend, Uuid};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};

const STREAMS: [&str; 5] = ["a", "b", "c", "ü-d", "e/5"];
const TYPES: [&str; 3] = ["Created", "Updated", "Déleted"];

// ---------------------------------------------------------------------------------------------------------
// Operations

#[derive(Clone, Copy, Debug)]
enum Exp {
    Any,
    NoStream,
    StreamExists,
    /// `Exact` of the stream's current version (of 0 if it has none).
    ExactCurrent,
    /// `Exact` of the current version plus this offset (at least 0).
    ExactOff(i8),
}

#[derive(Clone, Debug)]
struct Ev {
    ty: u8,
    payload: Vec<u8>,
    metadata: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
enum Invalid {
    DuplicateId,
    EmptyBatch,
    StreamTwice,
    EmptyType,
    DollarStream,
    EmptyAppendMany,
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        stream: usize,
        exp: Exp,
        batch: Vec<Ev>,
    },
    /// One event of `kib` KiB, to make segments roll.
    AppendLarge {
        stream: usize,
        exp: Exp,
        kib: usize,
        seed: u8,
    },
    AppendMany {
        parts: Vec<(usize, Exp, Vec<Ev>)>,
    },
    /// The same parts (same events, same ids) as an earlier append, with the same expected versions, or with
    /// this kind of expected version instead.
    Retry {
        idx: usize,
        exp: Option<Exp>,
    },
    /// An earlier append's first part, its events plus a new one (a partial overlap).
    RetryExtended {
        idx: usize,
        exp: Option<Exp>,
    },
    /// An earlier append's first part's events (same ids) appended to another stream with `Any`.
    ReuseIdsElsewhere {
        idx: usize,
        stream: usize,
    },
    Invalid {
        kind: Invalid,
        stream: usize,
        exp: Exp,
    },
    ReadStream {
        stream: usize,
        from: u8,
    },
    ReadAll {
        from: u16,
    },
    StreamVersion {
        stream: usize,
    },
    Head,
    Sync,
    Reopen,
}

fn exp_strategy() -> impl Strategy<Value = Exp> {
    prop_oneof![
        3 => Just(Exp::Any),
        2 => Just(Exp::NoStream),
        2 => Just(Exp::StreamExists),
        4 => Just(Exp::ExactCurrent),
        2 => (-3i8..=3).prop_map(Exp::ExactOff),
    ]
}

fn ev_strategy() -> impl Strategy<Value = Ev> {
    (0..TYPES.len() as u8, prop::collection::vec(any::<u8>(), 0..48), prop::collection::vec(any::<u8>(), 0..12))
        .prop_map(|(ty, payload, metadata)| Ev { ty, payload, metadata })
}

fn batch_strategy() -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec(ev_strategy(), 1..=5)
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let stream = 0..STREAMS.len();
    let parts = prop::sample::subsequence((0..STREAMS.len()).collect::<Vec<_>>(), 2..=3)
        .prop_shuffle()
        .prop_flat_map(|streams| {
            let n = streams.len();
            (Just(streams), prop::collection::vec(exp_strategy(), n), prop::collection::vec(batch_strategy(), n))
        })
        .prop_map(|(streams, exps, batches)| {
            streams.into_iter().zip(exps).zip(batches).map(|((s, e), b)| (s, e, b)).collect::<Vec<_>>()
        });
    let invalid = prop_oneof![
        Just(Invalid::DuplicateId),
        Just(Invalid::EmptyBatch),
        Just(Invalid::StreamTwice),
        Just(Invalid::EmptyType),
        Just(Invalid::DollarStream),
        Just(Invalid::EmptyAppendMany),
    ];
    prop_oneof![
        12 => (stream.clone(), exp_strategy(), batch_strategy()).prop_map(|(stream, exp, batch)| Op::Append { stream, exp, batch }),
        2 => (stream.clone(), exp_strategy(), 100usize..700, any::<u8>())
            .prop_map(|(stream, exp, kib, seed)| Op::AppendLarge { stream, exp, kib, seed }),
        4 => parts.prop_map(|parts| Op::AppendMany { parts }),
        5 => (any::<usize>(), prop::option::of(exp_strategy())).prop_map(|(idx, exp)| Op::Retry { idx, exp }),
        2 => (any::<usize>(), prop::option::of(exp_strategy())).prop_map(|(idx, exp)| Op::RetryExtended { idx, exp }),
        1 => (any::<usize>(), stream.clone()).prop_map(|(idx, stream)| Op::ReuseIdsElsewhere { idx, stream }),
        1 => (invalid, stream.clone(), exp_strategy()).prop_map(|(kind, stream, exp)| Op::Invalid { kind, stream, exp }),
        3 => (stream.clone(), any::<u8>()).prop_map(|(stream, from)| Op::ReadStream { stream, from }),
        3 => any::<u16>().prop_map(|from| Op::ReadAll { from }),
        2 => stream.prop_map(|stream| Op::StreamVersion { stream }),
        1 => Just(Op::Head),
        1 => Just(Op::Sync),
        2 => Just(Op::Reopen),
    ]
}

// ---------------------------------------------------------------------------------------------------------
// What is compared

/// An event as read (from the store) or as it must read (from the model). Payloads are printed by length and
/// checksum so a failure message stays readable.
#[derive(Clone, PartialEq, Eq)]
struct Seen {
    stream: String,
    version: u64,
    position: u64,
    id: Uuid,
    event_type: String,
    payload: Vec<u8>,
    metadata: Vec<u8>,
}

fn digest(bytes: &[u8]) -> String {
    let sum = bytes.iter().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(*b as u32));
    let head: Vec<u8> = bytes.iter().take(6).copied().collect();
    format!("{} bytes {head:?}.. #{sum:08x}", bytes.len())
}

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{{:?}@{} pos {} id {} type {:?} payload {} metadata {}}}",
            self.stream,
            self.version,
            self.position,
            self.id.as_u128(),
            self.event_type,
            digest(&self.payload),
            digest(&self.metadata)
        )
    }
}

/// The outcome of an append, as comparable values.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// (first_version, last_version, position) per part.
    Ok(Vec<(u64, u64, u64)>),
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    Invalid,
    Other(String),
}

fn outcome(r: annals::Result<Vec<annals::AppendResult>>) -> Outcome {
    match r {
        Ok(rs) => Outcome::Ok(rs.iter().map(|r| (r.first_version, r.last_version, r.position.as_u64())).collect()),
        Err(Error::WrongExpectedVersion { stream, expected, actual }) => Outcome::Conflict { stream, expected, actual },
        Err(Error::InvalidInput { .. }) => Outcome::Invalid,
        Err(e) => Outcome::Other(format!("{e:?}")),
    }
}

/// The first difference between two event lists, in words.
fn diff(actual: &[Seen], expected: &[Seen]) -> Option<String> {
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        if a != e {
            return Some(format!("item {i} differs:\n  store: {a:?}\n  model: {e:?}"));
        }
    }
    if actual.len() != expected.len() {
        let (n, m) = (actual.len(), expected.len());
        let extra =
            if n > m { format!("store has extra {:?}", actual[m]) } else { format!("model has {:?}", expected[n]) };
        return Some(format!("store gave {n} items, model {m}; first missing/extra: {extra}"));
    }
    None
}

// ---------------------------------------------------------------------------------------------------------
// The model

struct ModelEvent {
    seen: Seen,
    /// The timestamp the store reported the first time the event was read; later reads must agree.
    timestamp: Option<u64>,
}

#[derive(Default)]
struct Model {
    events: Vec<ModelEvent>,
    /// Stream -> positions of its events, by version.
    streams: HashMap<String, Vec<u64>>,
}

enum Decision {
    Write(u64),
    Retry((u64, u64, u64)),
}

impl Model {
    fn len(&self, stream: &str) -> u64 {
        self.streams.get(stream).map_or(0, |v| v.len() as u64)
    }

    fn version(&self, stream: &str) -> Option<u64> {
        self.len(stream).checked_sub(1)
    }

    fn head(&self) -> u64 {
        self.events.len() as u64
    }

    /// The original result if the stream's versions start..start+k carry exactly `ids`.
    fn matches_at(&self, stream: &str, start: u64, ids: &[Uuid]) -> Option<(u64, u64, u64)> {
        let positions = self.streams.get(stream)?;
        let k = ids.len() as u64;
        let end = start.checked_add(k)?;
        if end > positions.len() as u64 {
            return None;
        }
        let window = &positions[start as usize..end as usize];
        let all_match = window.iter().zip(ids).all(|(p, id)| self.events[*p as usize].seen.id == *id);
        all_match.then(|| (start, end - 1, *window.last().expect("k >= 1")))
    }

    fn decide(&self, stream: &str, expected: ExpectedVersion, ids: &[Uuid]) -> Result<Decision, Outcome> {
        let len = self.len(stream);
        let conflict = || Outcome::Conflict { stream: stream.to_owned(), expected, actual: self.version(stream) };
        match expected {
            ExpectedVersion::NoStream | ExpectedVersion::Exact(_) => {
                let start = match expected {
                    ExpectedVersion::Exact(n) => n + 1,
                    _ => 0,
                };
                if start == len {
                    Ok(Decision::Write(start))
                } else {
                    self.matches_at(stream, start, ids).map(Decision::Retry).ok_or_else(conflict)
                }
            }
            ExpectedVersion::Any | ExpectedVersion::StreamExists => {
                if expected == ExpectedVersion::StreamExists && len == 0 {
                    return Err(conflict());
                }
                let k = ids.len() as u64;
                match len.checked_sub(k).and_then(|start| self.matches_at(stream, start, ids)) {
                    Some(r) => Ok(Decision::Retry(r)),
                    None => Ok(Decision::Write(len)),
                }
            }
        }
    }

    fn append(&mut self, parts: &[(String, ExpectedVersion, Vec<NewEvent>)]) -> Outcome {
        // Input checks first: these are InvalidInput whatever the state.
        if parts.is_empty() || parts.iter().any(|(_, _, evs)| evs.is_empty()) {
            return Outcome::Invalid;
        }
        let mut names: Vec<&str> = parts.iter().map(|(s, _, _)| s.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Outcome::Invalid;
        }
        let mut ids: Vec<Uuid> = parts.iter().flat_map(|(_, _, evs)| evs.iter().map(|e| e.id())).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Outcome::Invalid;
        }
        for (s, _, evs) in parts {
            if s.is_empty() || s.len() > 255 || s.starts_with('$') {
                return Outcome::Invalid;
            }
            if evs.iter().any(|e| e.event_type().is_empty() || e.event_type().len() > 255) {
                return Outcome::Invalid;
            }
        }
        let mut decisions = Vec::new();
        for (s, exp, evs) in parts {
            let ids: Vec<Uuid> = evs.iter().map(|e| e.id()).collect();
            match self.decide(s, *exp, &ids) {
                Ok(d) => decisions.push(d),
                Err(conflict) => return conflict,
            }
        }
        let mut results = Vec::new();
        for ((s, _, evs), d) in parts.iter().zip(decisions) {
            match d {
                Decision::Retry(r) => results.push(r),
                Decision::Write(first) => {
                    for (i, e) in evs.iter().enumerate() {
                        let position = self.head();
                        self.events.push(ModelEvent {
                            seen: Seen {
                                stream: s.clone(),
                                version: first + i as u64,
                                position,
                                id: e.id(),
                                event_type: e.event_type().to_owned(),
                                payload: e.payload().to_vec(),
                                metadata: e.metadata().to_vec(),
                            },
                            timestamp: None,
                        });
                        self.streams.entry(s.clone()).or_default().push(position);
                    }
                    let n = evs.len() as u64;
                    results.push((first, first + n - 1, self.head() - 1));
                }
            }
        }
        Outcome::Ok(results)
    }

    fn read_stream(&self, stream: &str, from: u64) -> Vec<Seen> {
        let positions = self.streams.get(stream).map(Vec::as_slice).unwrap_or_default();
        positions.iter().skip(from as usize).map(|p| self.events[*p as usize].seen.clone()).collect()
    }

    fn read_all(&self, from: u64) -> Vec<Seen> {
        self.events.iter().skip(from as usize).map(|e| e.seen.clone()).collect()
    }

    /// Checks the timestamp the store reported for the event at `position` against the first one seen.
    fn note_timestamp(&mut self, position: u64, timestamp: u64) -> Result<(), String> {
        let Some(e) = self.events.get_mut(position as usize) else { return Ok(()) };
        if timestamp == 0 {
            return Err(format!("event at position {position} has timestamp 0"));
        }
        match e.timestamp {
            None => e.timestamp = Some(timestamp),
            Some(t) if t != timestamp => {
                return Err(format!("timestamp of position {position} changed from {t} to {timestamp}"))
            }
            Some(_) => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------
// Running a sequence

struct Runner {
    dir: tempfile::TempDir,
    options: Options,
    store: Option<Store>,
    model: Model,
    /// Every valid append attempted so far (successful or not), with the expected versions it used.
    history: Vec<Vec<(String, ExpectedVersion, Vec<NewEvent>)>>,
    next_id: u128,
}

impl Runner {
    fn store(&self) -> &Store {
        self.store.as_ref().expect("store open")
    }

    fn new_event(&mut self, ev: &Ev) -> NewEvent {
        self.next_id += 1;
        NewEvent::new(TYPES[ev.ty as usize], ev.payload.clone())
            .with_metadata(ev.metadata.clone())
            .with_id(Uuid::from_u128(self.next_id))
    }

    fn resolve(&self, stream: &str, exp: Exp) -> ExpectedVersion {
        let current = self.model.version(stream).unwrap_or(0);
        match exp {
            Exp::Any => ExpectedVersion::Any,
            Exp::NoStream => ExpectedVersion::NoStream,
            Exp::StreamExists => ExpectedVersion::StreamExists,
            Exp::ExactCurrent => ExpectedVersion::Exact(current),
            Exp::ExactOff(d) => ExpectedVersion::Exact(current.saturating_add_signed(d as i64)),
        }
    }

    /// Runs one append on both sides and compares the outcomes.
    fn append(&mut self, parts: Vec<(String, ExpectedVersion, Vec<NewEvent>)>, record: bool) -> Result<(), String> {
        let actual = {
            let sa: Vec<StreamAppend<'_>> = parts.iter().map(|(s, exp, evs)| StreamAppend::new(s, *exp, evs)).collect();
            if sa.len() == 1 {
                outcome(self.store().append(sa[0].stream(), sa[0].expected(), sa[0].events()).map(|r| vec![r]))
            } else {
                outcome(self.store().append_many(&sa))
            }
        };
        let expected = self.model.append(&parts);
        if record {
            self.history.push(parts);
        }
        if actual != expected {
            return Err(format!("append outcome differs:\n  store: {actual:?}\n  model: {expected:?}"));
        }
        if self.store().head().as_u64() != self.model.head() {
            return Err(format!("head after the append: store {:?}, model {}", self.store().head(), self.model.head()));
        }
        Ok(())
    }

    fn read_stream(&mut self, stream: &str, from: u64) -> Result<(), String> {
        let mut actual = Vec::new();
        for e in self.store().read_stream(stream, from).map_err(|e| format!("read_stream failed: {e:?}"))? {
            let e = e.map_err(|e| format!("read_stream item failed: {e:?}"))?;
            check_alignment(&e)?;
            actual.push((seen(&e), e.timestamp()));
        }
        for (s, t) in &actual {
            self.model.note_timestamp(s.position, *t)?;
        }
        let actual: Vec<Seen> = actual.into_iter().map(|(s, _)| s).collect();
        match diff(&actual, &self.model.read_stream(stream, from)) {
            Some(d) => Err(format!("read_stream({stream:?}, {from}): {d}")),
            None => Ok(()),
        }
    }

    fn read_all(&mut self, from: u64) -> Result<(), String> {
        let mut actual = Vec::new();
        for e in self.store().read_all(Position::from_u64(from)) {
            let e = e.map_err(|e| format!("read_all item failed: {e:?}"))?;
            check_alignment(&e)?;
            actual.push((seen(&e), e.timestamp()));
        }
        for (s, t) in &actual {
            self.model.note_timestamp(s.position, *t)?;
        }
        let actual: Vec<Seen> = actual.into_iter().map(|(s, _)| s).collect();
        match diff(&actual, &self.model.read_all(from)) {
            Some(d) => Err(format!("read_all({from}): {d}")),
            None => Ok(()),
        }
    }

    fn check_versions(&self) -> Result<(), String> {
        for s in STREAMS {
            let (a, m) = (self.store().stream_version(s), self.model.version(s));
            if a != m {
                return Err(format!("stream_version({s:?}): store {a:?}, model {m:?}"));
            }
        }
        if self.store().head().as_u64() != self.model.head() {
            return Err(format!("head: store {:?}, model {}", self.store().head(), self.model.head()));
        }
        Ok(())
    }

    fn check_everything(&mut self) -> Result<(), String> {
        self.check_versions()?;
        self.read_all(0)?;
        for s in STREAMS {
            self.read_stream(s, 0)?;
        }
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), String> {
        drop(self.store.take());
        self.store = Some(self.options.open(self.dir.path()).map_err(|e| format!("reopen failed: {e:?}"))?);
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Append { stream, exp, batch } => {
                let s = STREAMS[*stream];
                let evs: Vec<NewEvent> = batch.iter().map(|e| self.new_event(e)).collect();
                let exp = self.resolve(s, *exp);
                self.append(vec![(s.to_owned(), exp, evs)], true)
            }
            Op::AppendLarge { stream, exp, kib, seed } => {
                let s = STREAMS[*stream];
                let payload: Vec<u8> = (0..kib * 1024).map(|i| (i as u8).wrapping_mul(*seed | 1)).collect();
                let e = self.new_event(&Ev { ty: 0, payload, metadata: vec![*seed] });
                let exp = self.resolve(s, *exp);
                self.append(vec![(s.to_owned(), exp, vec![e])], true)
            }
            Op::AppendMany { parts } => {
                let parts: Vec<_> = parts
                    .iter()
                    .map(|(stream, exp, batch)| {
                        let s = STREAMS[*stream];
                        let evs: Vec<NewEvent> = batch.iter().map(|e| self.new_event(e)).collect();
                        (s.to_owned(), self.resolve(s, *exp), evs)
                    })
                    .collect();
                self.append(parts, true)
            }
            Op::Retry { idx, exp } => {
                if self.history.is_empty() {
                    return Ok(());
                }
                let mut parts = self.history[idx % self.history.len()].clone();
                if let Some(exp) = exp {
                    for (s, e, _) in &mut parts {
                        *e = self.resolve(s, *exp);
                    }
                }
                self.append(parts, false)
            }
            Op::RetryExtended { idx, exp } => {
                if self.history.is_empty() {
                    return Ok(());
                }
                let (s, e, mut evs) = self.history[idx % self.history.len()][0].clone();
                evs.push(self.new_event(&Ev { ty: 1, payload: b"extra".to_vec(), metadata: vec![] }));
                let e = exp.map_or(e, |exp| self.resolve(&s, exp));
                self.append(vec![(s, e, evs)], true)
            }
            Op::ReuseIdsElsewhere { idx, stream } => {
                if self.history.is_empty() {
                    return Ok(());
                }
                let (_, _, evs) = self.history[idx % self.history.len()][0].clone();
                self.append(vec![(STREAMS[*stream].to_owned(), ExpectedVersion::Any, evs)], true)
            }
            Op::Invalid { kind, stream, exp } => {
                let s = STREAMS[*stream];
                let exp = self.resolve(s, *exp);
                let good = self.new_event(&Ev { ty: 2, payload: b"good".to_vec(), metadata: vec![] });
                let parts = match kind {
                    Invalid::DuplicateId => vec![(s.to_owned(), exp, vec![good.clone(), good])],
                    Invalid::EmptyBatch => vec![(s.to_owned(), exp, vec![])],
                    Invalid::StreamTwice => {
                        let other = self.new_event(&Ev { ty: 2, payload: b"other".to_vec(), metadata: vec![] });
                        vec![(s.to_owned(), exp, vec![good]), (s.to_owned(), ExpectedVersion::Any, vec![other])]
                    }
                    Invalid::EmptyType => {
                        let bad = NewEvent::new("", "x").with_id(Uuid::from_u128(u128::MAX - self.next_id));
                        vec![(s.to_owned(), exp, vec![good, bad])]
                    }
                    Invalid::DollarStream => {
                        let other = self.new_event(&Ev { ty: 2, payload: b"other".to_vec(), metadata: vec![] });
                        vec![(s.to_owned(), exp, vec![good]), (format!("${s}"), ExpectedVersion::Any, vec![other])]
                    }
                    Invalid::EmptyAppendMany => vec![],
                };
                if parts.is_empty() {
                    let actual = outcome(self.store().append_many(&[]));
                    if actual != Outcome::Invalid {
                        return Err(format!("append_many(&[]): store {actual:?}, model Invalid"));
                    }
                    return Ok(());
                }
                self.append(parts, false)
            }
            Op::ReadStream { stream, from } => {
                let s = STREAMS[*stream];
                let from = *from as u64 % (self.model.len(s) + 2);
                self.read_stream(s, from)
            }
            Op::ReadAll { from } => {
                let from = *from as u64 % (self.model.head() + 3);
                self.read_all(from)
            }
            Op::StreamVersion { stream } => {
                let s = STREAMS[*stream];
                let (a, m) = (self.store().stream_version(s), self.model.version(s));
                if a != m {
                    return Err(format!("stream_version({s:?}): store {a:?}, model {m:?}"));
                }
                Ok(())
            }
            Op::Head => {
                let (a, m) = (self.store().head().as_u64(), self.model.head());
                if a != m {
                    return Err(format!("head: store {a}, model {m}"));
                }
                Ok(())
            }
            Op::Sync => self.store().sync().map_err(|e| format!("sync failed: {e:?}")),
            Op::Reopen => {
                self.reopen()?;
                self.check_versions()
            }
        }
    }
}

fn seen(e: &annals::RecordedEvent) -> Seen {
    Seen {
        stream: e.stream().to_owned(),
        version: e.version(),
        position: e.position().as_u64(),
        id: e.id(),
        event_type: e.event_type().to_owned(),
        payload: e.payload().to_vec(),
        metadata: e.metadata().to_vec(),
    }
}

fn check_alignment(e: &annals::RecordedEvent) -> Result<(), String> {
    if !e.payload().is_empty() && !(e.payload().as_ptr() as usize).is_multiple_of(16) {
        return Err(format!("payload of position {} is not 16-byte aligned", e.position()));
    }
    Ok(())
}

fn new_runner(durability: Durability) -> Result<Runner, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let options = Options::new().segment_size(1 << 20).durability(durability);
    let store = options.open(dir.path()).map_err(|e| format!("open: {e:?}"))?;
    Ok(Runner { dir, options, store: Some(store), model: Model::default(), history: Vec::new(), next_id: 0 })
}

fn run_case(durability: Durability, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut runner = new_runner(durability).map_err(TestCaseError::fail)?;
    for (i, op) in ops.iter().enumerate() {
        runner.run(op).map_err(|why| TestCaseError::fail(format!("op #{i} {op:?} diverged: {why}")))?;
    }
    let end = |r: &mut Runner, when: &str| -> Result<(), TestCaseError> {
        r.check_everything().map_err(|why| TestCaseError::fail(format!("final check ({when}) diverged: {why}")))
    };
    end(&mut runner, "before reopen")?;
    runner.reopen().map_err(TestCaseError::fail)?;
    end(&mut runner, "after reopen")?;
    Ok(())
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(64);
    Config { cases, ..Config::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn store_matches_the_model(
        durability in prop_oneof![4 => Just(Durability::Buffered), 1 => Just(Durability::Sync)],
        ops in prop::collection::vec(op_strategy(), 1..60),
    ) {
        run_case(durability, &ops)?;
    }
}

/// A fixed sequence through the same runner, with the expected end state worked out by hand from API.md, so the
/// model itself is checked on a known history.
#[test]
fn model_runner_on_a_known_sequence() {
    let ev = |p: &[u8]| Ev { ty: 0, payload: p.to_vec(), metadata: vec![] };
    let ops = vec![
        // history 0: "a" NoStream [1, 2] -> versions 0, 1 at positions 0, 1.
        Op::Append { stream: 0, exp: Exp::NoStream, batch: vec![ev(b"1"), ev(b"2")] },
        // Retries: NoStream and Any (its newest events) -> the original result, nothing written.
        Op::Retry { idx: 0, exp: None },
        Op::Retry { idx: 0, exp: Some(Exp::Any) },
        // history 1: "a" Exact(1) [3] -> version 2, position 2.
        Op::Append { stream: 0, exp: Exp::ExactCurrent, batch: vec![ev(b"3")] },
        // NoStream retry of history 0 after the stream grew: still the original result.
        Op::Retry { idx: 0, exp: None },
        // history 2: NoStream [1, 2, extra]: a partial overlap, conflict.
        Op::RetryExtended { idx: 0, exp: None },
        // history 3: "b" NoStream [b] at 3, "c" Any [c, d] at 4, 5.
        Op::AppendMany { parts: vec![(1, Exp::NoStream, vec![ev(b"b")]), (2, Exp::Any, vec![ev(b"c"), ev(b"d")])] },
        Op::Retry { idx: 3, exp: None },
        // history 4, 5: two 700 KiB events in "ü-d" (positions 6, 7): the 1 MiB segments roll.
        Op::AppendLarge { stream: 3, exp: Exp::Any, kib: 700, seed: 3 },
        Op::AppendLarge { stream: 3, exp: Exp::StreamExists, kib: 700, seed: 5 },
        Op::Invalid { kind: Invalid::StreamTwice, stream: 1, exp: Exp::Any },
        Op::Reopen,
        // Exact(1) [3] again after the reopen: the original result.
        Op::Retry { idx: 1, exp: None },
        Op::ReadAll { from: 2 },
        Op::ReadStream { stream: 0, from: 1 },
    ];
    let mut runner = new_runner(Durability::Buffered).unwrap();
    for (i, op) in ops.iter().enumerate() {
        runner.run(op).unwrap_or_else(|why| panic!("op #{i} {op:?}: {why}"));
    }
    runner.check_everything().unwrap();
    assert_eq!(runner.model.head(), 8);
    let versions: Vec<Option<u64>> = STREAMS.iter().map(|s| runner.model.version(s)).collect();
    assert_eq!(versions, [Some(2), Some(0), Some(1), Some(1), None]);
    let payloads: Vec<Vec<u8>> = runner.model.read_stream("a", 0).into_iter().map(|e| e.payload).collect();
    assert_eq!(payloads, [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]);
    assert_eq!(runner.history.len(), 6);
}
