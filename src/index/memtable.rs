//! A memtable: the index of a run of positions on the heap, per stream (the events appended since the last
//! checkpoint, or the frozen run the indexer is writing to disk).
//!
//! Laid out for the append path, which adds one event to one stream at a time, millions of times a second:
//! - the events are one vector, one entry per position (where the frame is, and the position of the stream's
//!   event before it in this memtable), so adding an event allocates nothing once the vector has grown; a
//!   stream's events are a chain through it, newest first, which is the order reads collect them in;
//! - the streams are vectors of fixed-size records, their names one byte buffer, and the hash table holds only
//!   (hash, index) pairs, so a new stream allocates nothing either (a `HashMap<Box<str>, _>` cost an allocation
//!   per stream and a pointer chase to the name on every lookup); what an append reads and writes of a stream
//!   (its newest event, the first bytes of its name) is one cache line, the indexer's fields another vector;
//! - a retired memtable's buffers are reused by the next one ([`MemTable::reset`]), so a steady stream of
//!   appends does not fault in fresh heap pages at every checkpoint.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use smallvec::SmallVec;

use super::{PushedFrame, StreamTail};
use crate::log::Location;

/// A stream's place in its memtable.
pub type StreamId = usize;

/// The chain link of a stream's oldest event in the memtable.
const NO_EVENT: u64 = u64::MAX;

/// A memtable whose buffers hold more than this is not kept for reuse: a burst that outran the indexer must not
/// pin its peak memory for the life of the store.
const REUSE_BYTES_MAX: usize = 64 << 20;

/// The events of a run of positions `[first_position, end_position)`, per stream.
pub struct MemTable {
    pub(super) first_position: u64,
    pub(super) end_position: u64,
    pub(super) log_bytes: u64,
    hasher: RandomState,
    /// (the table's hash of the name, index into `hot` and `cold`), by name. The hash is kept here so that a
    /// probe rules out other streams, and the table grows, without touching their records.
    table: HashTable<(u64, StreamId)>,
    /// What a lookup and an append touch of each stream: one cache line.
    hot: Vec<HotStream>,
    /// The rest of each stream's record, for the indexer.
    cold: Vec<ColdStream>,
    /// Every stream's name, back to back.
    names: String,
    /// One per position from `first_position`.
    events: Vec<MemEvent>,
    /// Each segment the memtable's events are in, with the offset just past its last event there.
    pub(super) segment_ends: SmallVec<[(u32, u64); 2]>,
}

/// How many leading bytes of a stream's name its [`HotStream`] holds.
const NAME_HEAD_BYTES: usize = 15;

/// The part of a stream's record that the append path reads and writes (the name to compare, the newest
/// event), laid out in one 64-byte cache line. With 10,000 streams or more the records do not stay in the
/// core's cache between two appends to a stream, so each line a lookup touches is a miss: the whole record
/// in one line, the name's head included, makes a lookup of a short name one miss after the table's.
#[repr(C, align(64))]
struct HotStream {
    first_version: u64,
    /// Its newest event's position, and how many events it has here.
    last_position: u64,
    count: u64,
    last_id: [u8; 16],
    /// Its name: `names[name_at..name_at + name_len]`, of which the first bytes (up to
    /// [`NAME_HEAD_BYTES`]) are also in `name_head`, zero-padded.
    name_at: u64,
    name_len: u8,
    name_head: [u8; NAME_HEAD_BYTES],
}

const _: () = assert!(std::mem::size_of::<HotStream>() == 64);
const _: () = assert!(crate::limits::STREAM_NAME_BYTES_MAX <= u8::MAX as usize);

/// The part of a stream's record that only the indexer reads.
struct ColdStream {
    hash: u64,
    prev_position: u64,
    prev_entry: u32,
}

/// One stream's events in a memtable, as the indexer and the readers see them (a copy of its record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemStream {
    /// The stream's hash as the index files record it.
    pub hash: u64,
    pub first_version: u64,
    /// Position of the stream's last event before this memtable, or [`super::NO_CHUNK`].
    pub prev_position: u64,
    /// The stream's entry in the chunk holding `prev_position`, as the directory said, or [`super::NO_ENTRY`]:
    /// the indexer links to it without searching that chunk.
    pub prev_entry: u32,
    /// Its newest event's position, and how many events it has here.
    pub last_position: u64,
    pub count: u64,
    pub last_id: [u8; 16],
}

impl MemStream {
    /// The stream's newest version here.
    pub fn last_version(&self) -> u64 {
        self.first_version + self.count - 1
    }
}

/// One position's event: where its frame is, and the position of its stream's previous event in this memtable
/// ([`NO_EVENT`] for the stream's oldest here).
#[derive(Clone, Copy)]
struct MemEvent {
    location: Location,
    prev: u64,
}

impl MemTable {
    pub fn new(first_position: u64) -> MemTable {
        MemTable {
            first_position,
            end_position: first_position,
            log_bytes: 0,
            hasher: RandomState::default(),
            table: HashTable::new(),
            hot: Vec::new(),
            cold: Vec::new(),
            names: String::new(),
            events: Vec::new(),
            segment_ends: SmallVec::new(),
        }
    }

    /// Empties the memtable for a run from `first_position`, keeping its buffers; `None` if they are too large to
    /// keep ([`REUSE_BYTES_MAX`]).
    pub fn reset(mut self, first_position: u64) -> Option<MemTable> {
        if self.heap_bytes() > REUSE_BYTES_MAX {
            return None;
        }
        self.first_position = first_position;
        self.end_position = first_position;
        self.log_bytes = 0;
        self.table.clear();
        self.hot.clear();
        self.cold.clear();
        self.names.clear();
        self.events.clear();
        self.segment_ends.clear();
        Some(self)
    }

    /// The heap the memtable's buffers hold.
    fn heap_bytes(&self) -> usize {
        self.table.capacity() * std::mem::size_of::<(u64, StreamId)>()
            + self.hot.capacity() * std::mem::size_of::<HotStream>()
            + self.cold.capacity() * std::mem::size_of::<ColdStream>()
            + self.names.capacity()
            + self.events.capacity() * std::mem::size_of::<MemEvent>()
    }

    pub fn end_position(&self) -> u64 {
        self.end_position
    }

    pub fn is_empty(&self) -> bool {
        self.end_position == self.first_position
    }

    /// How many streams have events here.
    pub fn stream_count(&self) -> usize {
        self.hot.len()
    }

    /// The stream named `name`, if it has events here.
    pub fn find(&self, name: &str) -> Option<StreamId> {
        let key = self.hasher.hash_one(name);
        let (hot, names) = (&self.hot, &self.names);
        self.table.find(key, |&(k, id)| k == key && name_is(names, &hot[id], name)).map(|&(_, id)| id)
    }

    /// A copy of the stream's record.
    pub fn stream(&self, id: StreamId) -> MemStream {
        let (h, c) = (&self.hot[id], &self.cold[id]);
        MemStream {
            hash: c.hash,
            first_version: h.first_version,
            prev_position: c.prev_position,
            prev_entry: c.prev_entry,
            last_position: h.last_position,
            count: h.count,
            last_id: h.last_id,
        }
    }

    pub fn name(&self, id: StreamId) -> &str {
        let h = &self.hot[id];
        &self.names[h.name_at as usize..h.name_at as usize + h.name_len as usize]
    }

    /// Every stream here, by id.
    pub fn streams(&self) -> impl ExactSizeIterator<Item = (StreamId, MemStream)> + '_ {
        (0..self.hot.len()).map(|id| (id, self.stream(id)))
    }

    /// The stream's newest event.
    pub fn tail(&self, id: StreamId) -> StreamTail {
        let h = &self.hot[id];
        StreamTail { version: self.last_version(id), position: h.last_position, id: h.last_id, entry: super::NO_ENTRY }
    }

    /// The stream's newest version here.
    pub fn last_version(&self, id: StreamId) -> u64 {
        let h = &self.hot[id];
        h.first_version + h.count - 1
    }

    /// The stream's hash as the index files record it.
    pub fn hash(&self, id: StreamId) -> u64 {
        self.cold[id].hash
    }

    /// The stream's first version here.
    pub fn first_version(&self, id: StreamId) -> u64 {
        self.hot[id].first_version
    }

    /// Where the stream's newest event is.
    pub fn last_location(&self, id: StreamId) -> Location {
        self.event(self.hot[id].last_position).location
    }

    fn event(&self, position: u64) -> MemEvent {
        self.events[(position - self.first_position) as usize]
    }

    /// The stream's events here, newest first: (position, location), following the chain.
    fn newest_first(&self, id: StreamId) -> impl Iterator<Item = (u64, Location)> + '_ {
        let s = &self.hot[id];
        let mut position = s.last_position;
        (0..s.count).map(move |_| {
            let e = self.event(position);
            let here = position;
            position = e.prev;
            (here, e.location)
        })
    }

    /// The newest version at or below `version` (which must be at or above the stream's first version here)
    /// whose position is below `head`, walking back through the stream's events here; `None` if none of them
    /// from `version` down is. A version past the newest is returned as it is.
    pub fn newest_visible(&self, id: StreamId, version: u64, head: u64) -> Option<u64> {
        let (first, last) = (self.first_version(id), self.last_version(id));
        debug_assert!(version >= first);
        if version > last {
            return Some(version);
        }
        // Versions from the newest down, with their positions: the first at or below `version` that is visible.
        let versions = (first..=last).rev();
        versions
            .zip(self.newest_first(id))
            .skip_while(|&(v, _)| v > version)
            .find(|&(_, (p, _))| p < head)
            .map(|(v, _)| v)
    }

    /// Appends the locations of the stream's events from `from_version` on to `out`, newest first.
    pub fn locations_newest_first(&self, id: StreamId, from_version: u64, out: &mut Vec<Location>) {
        let s = &self.hot[id];
        let skip = from_version.saturating_sub(s.first_version).min(s.count);
        out.extend(self.newest_first(id).take((s.count - skip) as usize).map(|(_, at)| at));
    }

    /// Replaces `out` with the stream's events here (position and location), oldest first.
    pub fn events_oldest_first(&self, id: StreamId, out: &mut Vec<(u64, Location)>) {
        out.clear();
        out.extend(self.newest_first(id));
        out.reverse();
    }

    /// Adds frames to a stream that has events here, from `first_position` on (the memtable's end).
    #[inline]
    pub fn add(&mut self, id: StreamId, first_position: u64, frames: impl IntoIterator<Item = PushedFrame>) {
        let s = &self.hot[id];
        let (mut last, mut count, mut last_id) = (s.last_position, s.count, s.last_id);
        self.add_frames(&mut last, &mut count, &mut last_id, first_position, frames);
        let s = &mut self.hot[id];
        (s.last_position, s.count, s.last_id) = (last, count, last_id);
    }

    /// Adds a stream with its first frames here, from `first_position` on (the memtable's end); nothing if
    /// `frames` is empty. `hash` is its hash in the index files.
    pub fn insert(
        &mut self,
        name: &str,
        hash: u64,
        first_version: u64,
        (prev_position, prev_entry): (u64, u32),
        first_position: u64,
        frames: impl IntoIterator<Item = PushedFrame>,
    ) {
        let (mut last, mut count, mut last_id) = (NO_EVENT, 0, [0u8; 16]);
        self.add_frames(&mut last, &mut count, &mut last_id, first_position, frames);
        if count == 0 {
            return;
        }
        let key = self.hasher.hash_one(name);
        let id = self.hot.len();
        let name_at = self.names.len() as u64;
        self.names.push_str(name);
        let mut name_head = [0u8; NAME_HEAD_BYTES];
        let head = name.len().min(NAME_HEAD_BYTES);
        name_head[..head].copy_from_slice(&name.as_bytes()[..head]);
        let name_len = u8::try_from(name.len()).expect("stream names are checked to fit a byte");
        self.hot.push(HotStream { first_version, last_position: last, count, last_id, name_at, name_len, name_head });
        self.cold.push(ColdStream { hash, prev_position, prev_entry });
        self.table.insert_unique(key, (key, id), |&(k, _)| k);
    }

    /// Appends `frames`, from `first_position` (the memtable's end) on, to the events, chained to a stream's
    /// newest event `last` (its position, or [`NO_EVENT`]), updating its newest position, count and id, and
    /// moves the memtable's end past them. Always inlined: left to itself the compiler called it, about 50 more
    /// instructions per single-event append (callgrind, W4).
    #[inline(always)]
    fn add_frames(
        &mut self,
        last: &mut u64,
        count: &mut u64,
        last_id: &mut [u8; 16],
        first_position: u64,
        frames: impl IntoIterator<Item = PushedFrame>,
    ) {
        // Positions are implicit (the index into `events`): they must arrive in order, without gaps.
        debug_assert_eq!(first_position, self.end_position);
        debug_assert_eq!(self.end_position, self.first_position + self.events.len() as u64);
        for f in frames {
            self.events.push(MemEvent { location: f.location, prev: *last });
            *last = self.end_position;
            *count += 1;
            *last_id = f.id;
            self.end_position += 1;
            self.log_bytes += u64::from(f.bytes);
            let (segment, end) = (f.location.segment(), f.location.offset() as u64 + u64::from(f.bytes));
            match self.segment_ends.last_mut() {
                Some((s, e)) if *s == segment => *e = end,
                _ => self.segment_ends.push((segment, end)),
            }
        }
    }
}

/// Whether `s` is the stream named `name`: its length and head from the record, the rest (of a name longer
/// than the head) from `names`.
#[inline]
fn name_is(names: &str, s: &HotStream, name: &str) -> bool {
    let name = name.as_bytes();
    if s.name_len as usize != name.len() {
        return false;
    }
    let head = name.len().min(NAME_HEAD_BYTES);
    short_eq(&s.name_head[..head], &name[..head])
        && (name.len() <= NAME_HEAD_BYTES || {
            let at = s.name_at as usize;
            names.as_bytes()[at + NAME_HEAD_BYTES..at + name.len()] == name[NAME_HEAD_BYTES..]
        })
}

/// `a == b` for two slices of the same length, at most 16 bytes: two overlapping loads from each instead of a
/// call to `memcmp` (which cost a W4 append about 20 ns, perf).
#[inline(always)]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    debug_assert!(a.len() == b.len() && a.len() <= 16);
    let n = a.len();
    let word8 = |x: &[u8], at: usize| u64::from_le_bytes(*x[at..].first_chunk::<8>().expect("8 bytes from at"));
    let word4 = |x: &[u8], at: usize| u32::from_le_bytes(*x[at..].first_chunk::<4>().expect("4 bytes from at"));
    match n {
        8.. => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        4..8 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_eq_is_slice_equality() {
        let a: Vec<u8> = (1..=16).collect();
        for n in 0..=16 {
            assert!(short_eq(&a[..n], &a[..n]));
            for i in 0..n {
                let mut b = a[..n].to_vec();
                b[i] ^= 0x40;
                assert!(!short_eq(&a[..n], &b), "length {n}, byte {i} differs");
            }
        }
    }

    fn frame(segment: u32, offset: u32, id: u8) -> PushedFrame {
        PushedFrame { id: [id; 16], location: Location::new(segment, offset), bytes: 100 }
    }

    #[test]
    fn streams_interleaved_keep_their_own_chains() {
        let mut m = MemTable::new(1000);
        // Positions 1000..1006: a, b, a, a, c, b.
        m.insert("a", 11, 5, (900, super::super::NO_ENTRY), 1000, [frame(0, 0, 1)]);
        m.insert("b", 22, 0, (u64::MAX, super::super::NO_ENTRY), 1001, [frame(0, 100, 2)]);
        let a = m.find("a").unwrap();
        m.add(a, 1002, [frame(0, 200, 3), frame(0, 300, 4)]);
        m.insert("c", 33, 0, (u64::MAX, super::super::NO_ENTRY), 1004, [frame(1, 0, 5)]);
        let b = m.find("b").unwrap();
        m.add(b, 1005, [frame(1, 100, 6)]);
        assert_eq!((m.end_position(), m.log_bytes, m.stream_count()), (1006, 600, 3));
        assert_eq!(&m.segment_ends[..], &[(0, 400), (1, 200)]);
        assert!(m.find("d").is_none());
        assert_eq!(m.name(a), "a");

        assert_eq!(m.tail(a), StreamTail { version: 7, position: 1003, id: [4; 16], entry: super::super::NO_ENTRY });
        assert_eq!(m.last_location(a), Location::new(0, 300));

        let mut out = Vec::new();
        m.locations_newest_first(a, 6, &mut out);
        assert_eq!(out, [Location::new(0, 300), Location::new(0, 200)]);
        out.clear();
        m.locations_newest_first(a, 0, &mut out);
        assert_eq!(out.len(), 3);
        let mut evs = Vec::new();
        m.events_oldest_first(b, &mut evs);
        assert_eq!(evs, [(1001, Location::new(0, 100)), (1005, Location::new(1, 100))]);

        // No frames: no stream.
        m.insert("e", 44, 0, (u64::MAX, super::super::NO_ENTRY), 1006, []);
        assert!(m.find("e").is_none());

        let m = m.reset(2000).expect("small buffers are kept");
        assert!(m.is_empty() && m.find("a").is_none() && m.stream_count() == 0 && m.segment_ends.is_empty());
    }

    #[test]
    fn newest_visible_walks_back_past_unsynced_events() {
        let mut m = MemTable::new(10);
        // Stream "a": versions 3..=6 at positions 10, 12, 13, 15.
        m.insert("a", 1, 3, (2, super::super::NO_ENTRY), 10, [frame(0, 0, 1)]);
        m.insert("b", 2, 0, (u64::MAX, super::super::NO_ENTRY), 11, [frame(0, 10, 2)]);
        let a = m.find("a").unwrap();
        m.add(a, 12, [frame(0, 20, 3), frame(0, 30, 4)]);
        let b = m.find("b").unwrap();
        m.add(b, 14, [frame(0, 40, 5)]);
        m.add(a, 15, [frame(0, 50, 6)]);
        assert_eq!(m.newest_visible(a, 6, 16), Some(6));
        assert_eq!(m.newest_visible(a, 6, 15), Some(5));
        assert_eq!(m.newest_visible(a, 6, 13), Some(4));
        assert_eq!(m.newest_visible(a, 5, 13), Some(4));
        assert_eq!(m.newest_visible(a, 6, 11), Some(3));
        assert_eq!(m.newest_visible(a, 6, 10), None);
        assert_eq!(m.newest_visible(a, 3, 10), None);
        assert_eq!(m.newest_visible(a, 9, 0), Some(9));
    }

    #[test]
    fn names_are_told_apart_past_the_head_kept_in_the_record() {
        let mut m = MemTable::new(0);
        // Same first 15 bytes (the head in the record), different lengths or tails; the longest name allowed.
        let long = "x".repeat(crate::limits::STREAM_NAME_BYTES_MAX);
        let names = [
            "account-0000000",
            "account-00000001",
            "account-00000002",
            "account-0000000-and-more-after-the-head",
            "account-0000000-and-more-after-the-heaD",
            "a",
            long.as_str(),
        ];
        for (i, name) in names.iter().enumerate() {
            assert!(m.find(name).is_none(), "{name} is not there yet");
            m.insert(name, i as u64, 0, (u64::MAX, super::super::NO_ENTRY), i as u64, [frame(0, i as u32 * 16, 1)]);
        }
        for (i, name) in names.iter().enumerate() {
            let id = m.find(name).unwrap_or_else(|| panic!("{name} is found"));
            assert_eq!((m.name(id), m.hash(id)), (*name, i as u64));
        }
        for absent in ["account-000000", "account-00000003", "account-0000000-and-more-after-the-hea", "b", &long[1..]]
        {
            assert!(m.find(absent).is_none(), "{absent} is not there");
        }
        // The table's hashes keep these apart before the names are compared; the comparison itself must too (two
        // names may share a hash).
        let id = m.find(names[3]).expect("found above");
        assert!(name_is(&m.names, &m.hot[id], names[3]));
        assert!(!name_is(&m.names, &m.hot[id], names[4]), "same length and head, different tail");
        assert!(!name_is(&m.names, &m.hot[id], "account-0000000"), "same head, shorter");
        let id = m.find(names[1]).expect("found above");
        assert!(!name_is(&m.names, &m.hot[id], names[2]), "same length, different in the head");
    }

    #[test]
    fn many_streams_are_all_found() {
        let mut m = MemTable::new(0);
        for i in 0..50_000u64 {
            let name = format!("s-{}", i % 20_000);
            let loc = Location::new(0, i as u32);
            match m.find(&name) {
                Some(id) => {
                    m.add(id, i, [PushedFrame { id: [0; 16], location: loc, bytes: 1 }]);
                }
                None => {
                    m.insert(
                        &name,
                        i,
                        0,
                        (u64::MAX, super::super::NO_ENTRY),
                        i,
                        [PushedFrame { id: [0; 16], location: loc, bytes: 1 }],
                    );
                }
            }
        }
        assert_eq!(m.stream_count(), 20_000);
        for i in 0..20_000u64 {
            let id = m.find(&format!("s-{i}")).unwrap();
            let mut evs = Vec::new();
            m.events_oldest_first(id, &mut evs);
            let expect: Vec<u64> = (0..50_000).filter(|p| p % 20_000 == i).collect();
            assert_eq!(evs.iter().map(|e| e.0).collect::<Vec<_>>(), expect);
            assert_eq!(m.stream(id).hash, i);
        }
    }
}
