//! A memtable: the index of a run of positions on the heap, per stream (the events appended since the last
//! checkpoint, or the frozen run the indexer is writing to disk).
//!
//! Laid out for the append path, which adds one event to one stream at a time, millions of times a second:
//! - the events are one vector, one entry per position (where the frame is, and the position of the stream's
//!   event before it in this memtable), so adding an event allocates nothing once the vector has grown; a
//!   stream's events are a chain through it, newest first, which is the order reads collect them in;
//! - the streams are one vector of fixed-size records, their names one byte buffer, and the hash table holds
//!   only indices into the records, so a new stream allocates nothing either (a `HashMap<Box<str>, _>` cost an
//!   allocation per stream and a pointer chase to the name on every lookup);
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
    /// Indices into `streams`, by name.
    table: HashTable<StreamId>,
    streams: Vec<MemStream>,
    /// Every stream's name, back to back.
    names: String,
    /// One per position from `first_position`.
    events: Vec<MemEvent>,
    /// Each segment the memtable's events are in, with the offset just past its last event there.
    pub(super) segment_ends: SmallVec<[(u32, u64); 2]>,
}

/// One stream's events in a memtable.
pub struct MemStream {
    /// The table's hash of the name.
    key: u64,
    /// The stream's hash as the index files record it.
    pub hash: u64,
    pub first_version: u64,
    /// Position of the stream's last event before this memtable, or [`super::NO_CHUNK`].
    pub prev_position: u64,
    /// The stream's entry in the chunk holding `prev_position`, as the directory said, or [`super::NO_ENTRY`]:
    /// the indexer links to it without searching that chunk.
    pub prev_entry: u32,
    /// Its name: `names[name_at..name_at + name_len]`.
    name_at: usize,
    name_len: usize,
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
            streams: Vec::new(),
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
        self.streams.clear();
        self.names.clear();
        self.events.clear();
        self.segment_ends.clear();
        Some(self)
    }

    /// The heap the memtable's buffers hold.
    fn heap_bytes(&self) -> usize {
        self.table.capacity() * std::mem::size_of::<StreamId>()
            + self.streams.capacity() * std::mem::size_of::<MemStream>()
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
        self.streams.len()
    }

    /// The stream named `name`, if it has events here.
    pub fn find(&self, name: &str) -> Option<StreamId> {
        let key = self.hasher.hash_one(name);
        let (streams, names) = (&self.streams, &self.names);
        self.table.find(key, |&id| streams[id].key == key && name_of(names, &streams[id]) == name).copied()
    }

    pub fn stream(&self, id: StreamId) -> &MemStream {
        &self.streams[id]
    }

    pub fn name(&self, id: StreamId) -> &str {
        name_of(&self.names, &self.streams[id])
    }

    /// Every stream here, by id.
    pub fn streams(&self) -> impl ExactSizeIterator<Item = (StreamId, &MemStream)> {
        self.streams.iter().enumerate()
    }

    /// The stream's newest event.
    pub fn tail(&self, id: StreamId) -> StreamTail {
        let s = &self.streams[id];
        StreamTail { version: s.last_version(), position: s.last_position, id: s.last_id, entry: super::NO_ENTRY }
    }

    /// Where the stream's newest event is.
    pub fn last_location(&self, id: StreamId) -> Location {
        self.event(self.streams[id].last_position).location
    }

    fn event(&self, position: u64) -> MemEvent {
        self.events[(position - self.first_position) as usize]
    }

    /// The stream's events here, newest first: (position, location), following the chain.
    fn newest_first(&self, id: StreamId) -> impl Iterator<Item = (u64, Location)> + '_ {
        let s = &self.streams[id];
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
        let s = &self.streams[id];
        debug_assert!(version >= s.first_version);
        if version > s.last_version() {
            return Some(version);
        }
        // Versions from the newest down, with their positions: the first at or below `version` that is visible.
        let versions = (s.first_version..=s.last_version()).rev();
        versions
            .zip(self.newest_first(id))
            .skip_while(|&(v, _)| v > version)
            .find(|&(_, (p, _))| p < head)
            .map(|(v, _)| v)
    }

    /// Appends the locations of the stream's events from `from_version` on to `out`, newest first.
    pub fn locations_newest_first(&self, id: StreamId, from_version: u64, out: &mut Vec<Location>) {
        let s = &self.streams[id];
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
        let s = &self.streams[id];
        let (mut last, mut count, mut last_id) = (s.last_position, s.count, s.last_id);
        self.add_frames(&mut last, &mut count, &mut last_id, first_position, frames);
        let s = &mut self.streams[id];
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
        let id = self.streams.len();
        let name_at = self.names.len();
        self.names.push_str(name);
        self.streams.push(MemStream {
            key,
            hash,
            first_version,
            prev_position,
            prev_entry,
            name_at,
            name_len: name.len(),
            last_position: last,
            count,
            last_id,
        });
        let streams = &self.streams;
        self.table.insert_unique(key, id, |&i| streams[i].key);
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

fn name_of<'a>(names: &'a str, s: &MemStream) -> &'a str {
    &names[s.name_at..s.name_at + s.name_len]
}

#[cfg(test)]
mod tests {
    use super::*;

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
