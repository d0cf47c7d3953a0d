//! The stream index: for every stream, its last version and where each of its events is in the log.
//!
//! Three layers, newest first (docs/DESIGN.md, "The stream index"):
//! - the **active memtable** (heap): the events appended since the last checkpoint, per stream;
//! - at most one **frozen memtable** (heap, immutable): the previous checkpoint's events, being written to disk by
//!   the indexer thread;
//! - the **chunk index files** (mapped, immutable: stream -> versions -> segment offsets, per chunk of positions)
//!   and the **stream directory** (mapped hash table: stream -> last version, last position).
//!
//! A lookup tries the layers in that order; a stream read walks back from the newest layer holding the stream
//! through the chunks that hold it (each chunk entry names the position of the stream's previous event), so it
//! touches only chunks that hold the stream. The heap holds only the memtables, which a checkpoint empties
//! every [`CHECKPOINT_LOG_BYTES`] of log: memory does not grow with the number of events or streams.

pub mod chunks;
pub mod directory;
pub mod memtable;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::format::frame::{self, EventPeek};
use crate::format::index::{
    self as layout, ChunkHeader, ChunkStream, Slot, SlotEvent, SlotRead, NO_CHUNK, NO_ENTRY, SPARSE_EVERY,
};
use crate::fs::{self, FileSystem};
use crate::log::reader::LogMap;
use crate::log::segment::Segment;
use crate::log::Location;
use crate::{Error, Result};

use chunks::{Chunk, Expect, SearchFloor};
use directory::Directory;
pub use memtable::MemTable;
use memtable::StreamId;

/// By default the active memtable is frozen and written to disk once it covers this many bytes of log. This
/// bounds the heap memory of the index and the log an open re-reads after a crash.
pub const CHECKPOINT_LOG_BYTES: u64 = 8 << 20;
/// Appends wait for the indexer once the memtables cover this many checkpoints of log while it still writes the
/// frozen one (a burst faster than the indexer). The memtables then hold at most that much log's events (plus
/// the appends in flight), and an open after a crash re-reads at most that much log.
pub const STALL_CHECKPOINTS: u64 = 3;
/// The directory is synced (so a power loss does not need the chunks applied since) after this much log.
const DIRECTORY_SYNC_LOG_BYTES: u64 = 256 << 20;

/// A file whose presence makes the next open rebuild the index from the log: written when damage to an index
/// file is found after open (a chunk is verified on first use).
pub const REBUILD_MARKER: &str = "index.rebuild";

/// What the append path needs to know of a stream, from one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTail {
    /// The stream's last version.
    pub version: u64,
    /// The position of its newest event.
    pub position: u64,
    /// The id of its newest event.
    pub id: [u8; 16],
    /// The stream's entry in the chunk holding `position`, if the directory said ([`NO_ENTRY`] otherwise).
    pub entry: u32,
}

/// What the directory said of a stream that no memtable holds, and the directory's generation at the time: a
/// later lookup in the same generation answers from it without reading the directory and the frame again.
#[derive(Debug, Clone, Copy)]
pub struct DirectoryHint {
    generation: u64,
    tail: Option<StreamTail>,
}

/// Why an event could not be recorded.
#[derive(Debug)]
pub enum PushError {
    /// Its version does not follow the stream's last one.
    Gap { expected: u64, found: u64 },
    /// The index itself is damaged.
    Corrupt(Error),
}

/// What the append path's lookup of a stream found ([`StreamIndex::lookup`]).
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// The stream's newest event, `None` if it has none.
    pub tail: Option<StreamTail>,
    /// Where the active memtable holds the stream, if it does: that memtable (by its first position, which no
    /// later active memtable shares) and the stream's place in it, so that [`StreamIndex::push`] need not look it
    /// up again.
    active: Option<(u64, StreamId)>,
}

/// What [`StreamIndex::push`] is told of the stream's newest event before the run.
pub enum PrevEvent<'a> {
    /// What a lookup found, since the last change to the index (the append path looks up under the writer
    /// lock).
    Known(Lookup),
    /// Not looked up: `push` looks it up, through `log` if no memtable holds the stream, and checks the run's
    /// first version against it (recovery).
    LookUp(&'a LogMap),
}

/// One event for [`StreamIndex::push`]: its id, where its frame is, and the frame's length.
pub struct PushedFrame {
    pub id: [u8; 16],
    pub location: Location,
    pub bytes: u32,
}

/// A stream's entry in a chunk, as the next entry of the stream needs it.
struct PrevEntry {
    /// The entry's newest event, and the entry's index in its chunk.
    position: u64,
    entry: u32,
    /// Its own events' locations, and its recent locations, oldest first.
    own: Vec<Location>,
    recent: Vec<Location>,
    /// Its continuation and previous-entry pointers (position, entry index).
    cont: (u64, u32),
    prev: (u64, u32),
}

/// A chunk file built from a memtable, ready to write.
pub struct BuiltChunk {
    pub header: ChunkHeader,
    pub bytes: Vec<u8>,
    /// Each stream of the memtable with an entry here, and that entry's index.
    entries: Vec<(StreamId, u32)>,
}

/// Where recovery must start reading the log: everything before is in the index files.
#[derive(Debug, Clone, Copy)]
pub struct ScanStart {
    pub position: u64,
    /// The segment (number) and offset where the last indexed event ends, if anything is indexed (else the scan
    /// starts at the segment that begins at `position`).
    pub at: Option<(u32, u64)>,
}

pub struct StreamIndex {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    hash_key: u64,
    hash_bits: u32,
    boot_id: [u8; 16],
    active: MemTable,
    frozen: Option<Arc<MemTable>>,
    /// The last memtable written to disk, kept to reuse its buffers for the next active one once the indexer has
    /// let go of it.
    retired: Option<Arc<MemTable>>,
    chunks: Vec<Arc<Chunk>>,
    /// The chunks' first positions, contiguous for the search of [`StreamIndex::chunk_for`].
    chunk_firsts: Vec<u64>,
    directory: Directory,
    /// Changes whenever the directory may answer differently for a stream that no memtable holds (see
    /// [`DirectoryHint`]).
    directory_generation: u64,
    log_since_directory_sync: u64,
    rebuild_marked: std::sync::atomic::AtomicBool,
    checkpoint_bytes: u64,
}

/// How many frames of one piece of a stream read (a chunk entry's own events, or its recent locations) the walk
/// asks the CPU for. The read itself asks for each frame 16 events ahead of the one it checks, so more would
/// only repeat those requests: a 100-event stream written in one run is one piece of 100 frames, whose 400
/// cache-line requests at once stalled the walk (perf, W5).
const PREFETCH_PIECE_FRAMES: usize = 16;

/// Starts loading the oldest frames of a piece (`locations`, newest first) into the cache while the walk
/// through the chunks goes on: a long stream's frames are scattered over the log, and their misses then overlap
/// the walk's own.
fn prefetch_oldest_frames(log: &LogMap, locations: &[Location]) {
    for at in &locations[locations.len().saturating_sub(PREFETCH_PIECE_FRAMES)..] {
        if let Some(segment) = log.segment(at.segment()) {
            segment.prefetch(at.offset() as usize);
        }
    }
}

/// The event frame at `at` (its position, version and id) and its stream name, read without verifying the
/// checksum or the frame's layout beyond the name (the callers compare the name and the position and version it
/// claims; a damaged frame fails those or the read that follows).
fn frame_at(segments: &[Arc<Segment>], at: Location) -> Result<(EventPeek, &[u8])> {
    let segment = segments
        .get(at.segment() as usize)
        .ok_or_else(|| Error::corrupt(PathBuf::new(), 0, format!("index names missing segment {}", at.segment())))?;
    let bytes = segment.bytes().get(at.offset() as usize..).unwrap_or_default();
    frame::peek_event(bytes)
        .map_err(|e| Error::corrupt(segment.path(), at.offset() as u64, format!("index points at no event frame: {e}")))
}

/// Whether `slot`, which carries `stream`'s hash but not its name (too long for a slot), is `stream`'s: the
/// frame it points at names the stream. A frame that cannot be read, or a valid frame elsewhere's, is noted in
/// `unreadable` (reported if no other slot matches); the stream's frame at the wrong position or version is an
/// error (a misplaced frame, RELIABILITY.md rule 3, or a wrong slot: both are named).
fn confirm_by_frame(log: &LogMap, stream: &str, slot: &Slot, unreadable: &mut Option<Error>) -> Result<bool> {
    let at = Location::new(slot.last_segment, slot.last_offset);
    let (f, name) = match frame_at(log.segments(), at) {
        Ok(x) => x,
        Err(e) => {
            unreadable.get_or_insert(e);
            return Ok(false);
        }
    };
    if name != stream.as_bytes() {
        // Another stream with the same hash (its frame valid and where its slot says), or this stream's newest
        // frame damaged (checksum) or overwritten by a valid frame from elsewhere (rule 3).
        if let Some(segment) = log.segment(at.segment()) {
            match segment.frame_at(at.offset() as usize) {
                Err(e) => {
                    unreadable.get_or_insert(e);
                }
                Ok(v) if v.position != slot.last_position || v.version != slot.last_version => {
                    unreadable.get_or_insert(Error::corrupt(
                        segment.path(),
                        u64::from(at.offset()),
                        format!(
                            "a valid frame at position {} where the stream directory expects position {}",
                            v.position, slot.last_position
                        ),
                    ));
                }
                Ok(_) => {}
            }
        }
        return Ok(false);
    }
    if f.position != slot.last_position || f.version != slot.last_version || f.id != slot.last_id {
        // A damaged frame is reported as such. A valid frame of the stream at the wrong place is corruption of
        // the log (RELIABILITY.md rule 3), unless the slot itself is wrong: name the frame, and say both.
        let Some(segment) = log.segment(at.segment()) else { unreachable!("frame_at found it") };
        segment.event_at(at.offset() as usize)?;
        return Err(Error::corrupt(
            segment.path(),
            u64::from(at.offset()),
            format!(
                "the frame here is {stream:?} version {} at position {}; the stream directory expects version {} at position {} here (a misplaced frame, or a damaged {})",
                f.version,
                f.position,
                slot.last_version,
                slot.last_position,
                directory::FILE_NAME
            ),
        ));
    }
    Ok(true)
}

/// The chunk among `chunks` (with their first positions `firsts`) that holds `position`, if any.
fn chunk_holding<'a>(chunks: &'a [Arc<Chunk>], firsts: &[u64], position: u64) -> Option<&'a Arc<Chunk>> {
    let i = firsts.partition_point(|&f| f <= position).checked_sub(1)?;
    let c = &chunks[i];
    (position < c.end_position()).then_some(c)
}

/// For verifying a chunk file: the first position and salt of segment `number`.
fn segment_of(segments: &[Arc<Segment>]) -> impl Fn(u64) -> Option<(u64, u64)> + '_ {
    |number| {
        let s = segments.get(usize::try_from(number).ok()?)?;
        Some((s.first_position(), s.salt()))
    }
}

/// Writes the marker that makes the next open rebuild the index: damage to an index file was found. Best
/// effort: if even this fails, the damage is still reported, and found again next time.
pub(crate) fn mark_for_rebuild(fs: &dyn FileSystem, dir: &Path) {
    let _ = fs::write_file_atomic(fs, dir, REBUILD_MARKER, b"an index file is damaged\n");
}

/// The error of a stream's chain of chunk entries broken at `position`.
fn broken_chain(dir: &Path, stream: &str, position: u64) -> Error {
    Error::corrupt(dir, 0, format!("the index has no entry for {stream:?} in the chunk holding position {position}"))
}

/// What building chunk files needs of the index and the log: taken under the state lock
/// ([`StreamIndex::build_view`]) and used without it, so appends and reads go on while the indexer builds. Only
/// the indexer adds chunks, and segments are only added, so the view stays true for what it is used for.
pub struct BuildView {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    hash_key: u64,
    hash_bits: u32,
    chunks: Vec<Arc<Chunk>>,
    chunk_firsts: Vec<u64>,
    segments: Vec<Arc<Segment>>,
}

impl BuildView {
    fn chunk_for(&self, position: u64) -> Option<&Arc<Chunk>> {
        chunk_holding(&self.chunks, &self.chunk_firsts, position)
    }

    /// As `StreamIndex::chunk_bytes`: damage marks the index for a rebuild at the next open.
    fn chunk_bytes<'a>(&self, chunk: &'a Chunk) -> Result<(&'a [u8], &'a ChunkHeader)> {
        let r = chunk.get(&*self.fs, segment_of(&self.segments));
        if r.is_err() {
            mark_for_rebuild(&*self.fs, &self.dir);
        }
        r
    }

    fn broken_chain(&self, stream: &str, position: u64) -> Error {
        broken_chain(&self.dir, stream, position)
    }

    /// Builds the chunk files of a memtable: one per segment its events are in.
    pub fn build_chunks(&self, m: &MemTable) -> Result<Vec<BuiltChunk>> {
        let mut out = Vec::new();
        // Each stream's entry in the last chunk built here that holds it.
        let mut built: HashMap<StreamId, PrevEntry, RandomState> = HashMap::default();
        // The streams in hash order, so that the previous entries looked up in each earlier chunk (sorted by hash
        // too) are found moving forward through it: at a million streams, a search from scratch per stream
        // was a third of the indexer's time, nearly all of it cache and TLB misses.
        let mut by_hash: Vec<(u64, StreamId)> = (0..m.stream_count()).map(|id| (m.hash(id), id)).collect();
        by_hash.sort_unstable();
        // One stream's events at a time, oldest first.
        let mut events: Vec<(u64, Location)> = Vec::new();
        for (k, &(segment_number, end_offset)) in m.segment_ends.iter().enumerate() {
            let segment = self
                .segments
                .get(segment_number as usize)
                .ok_or_else(|| Error::corrupt(&self.dir, 0, "memtable names a missing segment"))?;
            let first = m.first_position.max(segment.first_position());
            let end = match m.segment_ends.get(k + 1) {
                Some(&(next, _)) => self.segments.get(next as usize).map_or(m.end_position, |s| s.first_position()),
                None => m.end_position,
            };
            let count = (end - first) as usize;
            struct Pending {
                entry: ChunkStream,
                first_position: u64,
                own: Vec<Location>,
                recent: Vec<Location>,
                id: StreamId,
            }
            let mut entries: Vec<Pending> = Vec::new();
            let mut by_position = vec![u32::MAX; count];
            // Where the last search of each earlier chunk ended, by the chunk's first position.
            let mut floors: HashMap<u64, SearchFloor, RandomState> = HashMap::default();
            for &(_, id) in &by_hash {
                let s = m.stream(id);
                m.events_oldest_first(id, &mut events);
                let i0 = events.partition_point(|e| e.1.segment() < segment_number);
                let i1 = events.partition_point(|e| e.1.segment() <= segment_number);
                if i0 == i1 {
                    continue;
                }
                let evs = &events[i0..i1];
                for &(p, at) in evs {
                    by_position[(p - first) as usize] = at.offset();
                }
                let prev_position = if i0 == 0 { s.prev_position } else { events[i0 - 1].0 };
                // The stream's previous entry: built just above, or in an earlier chunk file. A damaged or
                // missing earlier chunk must not stop the index (its damage is reported to the reads that need
                // it, and marked for a rebuild): the entry then names no index there, and readers search.
                let prev = if i0 > 0 {
                    built.remove(&id)
                } else if prev_position != NO_CHUNK {
                    self.prev_entry(m.name(id), s.hash, prev_position, s.prev_entry, &mut floors).ok()
                } else {
                    None
                };
                let (prev_entry, recent, cont) = match &prev {
                    None => (NO_ENTRY, Vec::new(), (prev_position, NO_ENTRY)),
                    Some(p) => {
                        let (recent, cont) = if p.recent.len() + p.own.len() <= layout::RECENT_MAX {
                            ([&p.recent[..], &p.own[..]].concat(), p.cont)
                        } else if p.own.len() <= layout::RECENT_MAX {
                            (p.own.clone(), p.prev)
                        } else {
                            (Vec::new(), (p.position, p.entry))
                        };
                        (p.entry, recent, cont)
                    }
                };
                let entry = ChunkStream {
                    hash: s.hash,
                    first_version: s.first_version + i0 as u64,
                    last_position: evs[evs.len() - 1].0,
                    prev_position,
                    prev_entry,
                    events_at: 0,
                    count: evs.len() as u32,
                    recent_at: 0,
                    recent_count: recent.len() as u32,
                    cont_position: cont.0,
                    cont_entry: cont.1,
                };
                let own = evs.iter().map(|e| e.1).collect();
                entries.push(Pending { entry, first_position: evs[0].0, own, recent, id });
            }
            if by_position.contains(&u32::MAX) {
                return Err(Error::corrupt(&self.dir, 0, "memtable has a hole in its positions"));
            }
            entries.sort_unstable_by_key(|e| (e.entry.hash, e.first_position));
            let mut streams = Vec::with_capacity(entries.len());
            let mut offsets = Vec::with_capacity(count);
            let mut recent_all: Vec<u64> = Vec::new();
            let mut entry_of = Vec::with_capacity(entries.len());
            // Only a chunk of a later segment of this memtable links to the entries built here.
            let more_segments = k + 1 < m.segment_ends.len();
            for (i, mut p) in entries.into_iter().enumerate() {
                entry_of.push((p.id, i as u32));
                p.entry.events_at = offsets.len() as u32;
                offsets.extend(p.own.iter().map(|l| l.offset()));
                p.entry.recent_at = recent_all.len() as u32;
                recent_all.extend(p.recent.iter().map(|l| (u64::from(l.segment()) << 32) | u64::from(l.offset())));
                if !more_segments {
                    streams.push(p.entry);
                    continue;
                }
                built.insert(
                    p.id,
                    PrevEntry {
                        position: p.entry.last_position,
                        entry: i as u32,
                        own: p.own,
                        recent: p.recent,
                        cont: (p.entry.cont_position, p.entry.cont_entry),
                        prev: (p.entry.prev_position, p.entry.prev_entry),
                    },
                );
                streams.push(p.entry);
            }
            let sparse: Vec<u32> = by_position.iter().step_by(SPARSE_EVERY as usize).copied().collect();
            let header = ChunkHeader {
                file_bytes: 0,
                segment_number: segment.number(),
                segment_first_position: segment.first_position(),
                segment_salt: segment.salt(),
                first_position: first,
                end_position: end,
                end_offset,
                hash_key: self.hash_key,
                hash_bits: self.hash_bits,
                stream_count: 0,
                recent_count: 0,
            };
            let bytes = layout::encode_chunk(header, &streams, &offsets, &recent_all, &sparse);
            let header = layout::decode_chunk_header(&bytes, false).expect("just encoded");
            out.push(BuiltChunk { header, bytes, entries: entry_of });
        }
        Ok(out)
    }

    /// The entry of `stream` in the chunk holding `position` (its newest event there). `floors`: where the last
    /// search of each chunk ended (see [`SearchFloor`]).
    fn prev_entry(
        &self,
        stream: &str,
        hash: u64,
        position: u64,
        known: u32,
        floors: &mut HashMap<u64, SearchFloor, RandomState>,
    ) -> Result<PrevEntry> {
        let chunk = self.chunk_for(position).ok_or_else(|| self.broken_chain(stream, position))?;
        let (bytes, h) = self.chunk_bytes(chunk)?;
        // `position` is the stream's own event (the memtable took it from the stream's tail), so the entry whose
        // newest event it is must be the stream's: no frame is read to compare names. The directory's slot
        // names the entry; it is searched for only if the slot did not, or named another.
        let found = match chunks::entry_at(bytes, h, known, hash, position) {
            Some(e) => Some((known, e)),
            None => chunks::find_entry(bytes, h, hash, position, floors.entry(chunk.first_position()).or_default())?,
        };
        match found {
            Some((i, e)) => {
                let mut own = Vec::with_capacity(e.count as usize);
                chunks::locations(bytes, h, &e, 0, &mut own);
                let mut recent = Vec::with_capacity(e.recent_count as usize);
                chunks::recent(bytes, h, &e, 0, &mut recent);
                Ok(PrevEntry {
                    position,
                    entry: i,
                    own,
                    recent,
                    cont: (e.cont_position, e.cont_entry),
                    prev: (e.prev_position, e.prev_entry),
                })
            }
            _ => Err(self.broken_chain(stream, position)),
        }
    }
}

impl StreamIndex {
    fn hash(&self, stream: &str) -> u64 {
        layout::stream_hash(stream, self.hash_key, self.hash_bits)
    }

    /// The stream's newest event as the directory records it.
    ///
    /// A slot is the stream's if it holds the stream's name. For a name too long for a slot, it is the stream's
    /// if the frame it points at names the stream, at the slot's position and version; a slot with the stream's
    /// hash that points at no valid frame is passed over, and if nothing else matches, that frame is reported:
    /// the stream's newest event is damaged. A damaged slot (its checksum) is never trusted: if the probe passed
    /// one and did not find the stream, the lookup fails and the index is marked for a rebuild. In both cases
    /// saying "no such stream" would let an append restart the stream at version 0. (A slot torn by a power loss
    /// is rewritten by the open, which applies again every chunk the directory may not hold durably.)
    fn directory_tail(&self, log: &LogMap, stream: &str) -> Result<Option<(StreamTail, Location)>> {
        let hash = self.hash(stream);
        let mut unreadable: Option<Error> = None;
        let probe = self.directory.find(hash, |slot| match slot.name() {
            Some(name) => Ok(name == stream.as_bytes()),
            None => confirm_by_frame(log, stream, slot, &mut unreadable),
        })?;
        if let Some((_, slot)) = probe.found {
            let tail = StreamTail {
                version: slot.last_version,
                position: slot.last_position,
                id: slot.last_id,
                entry: slot.last_entry,
            };
            return Ok(Some((tail, Location::new(slot.last_segment, slot.last_offset))));
        }
        if let Some(i) = probe.damaged {
            return Err(self.damaged_slot(i));
        }
        match unreadable {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// The error for damaged slot `i` of the directory, marking the index for a rebuild at the next open.
    #[cold]
    fn damaged_slot(&self, i: usize) -> Error {
        if !self.rebuild_marked.swap(true, std::sync::atomic::Ordering::Relaxed) {
            mark_for_rebuild(&*self.fs, &self.dir);
        }
        self.slot_error(i, "damaged (checksum mismatch); the next open rebuilds the index".into())
    }

    /// An error naming slot `i` of the directory: the file, the slot's offset, and `why`.
    #[cold]
    fn slot_error(&self, i: usize, why: String) -> Error {
        let offset = (layout::DIRECTORY_HEADER_BYTES + i * layout::SLOT_BYTES) as u64;
        Error::corrupt(self.dir.join(directory::FILE_NAME), offset, format!("slot {i} of the stream directory: {why}"))
    }

    /// The stream's newest event, `None` if it has none.
    pub fn tail(&self, log: &LogMap, stream: &str) -> Result<Option<StreamTail>> {
        self.tail_hinted(log, stream, None)
    }

    /// As [`StreamIndex::tail`], answering from `hint` instead of the directory if the directory has not changed
    /// since the hint was taken.
    pub fn tail_hinted(&self, log: &LogMap, stream: &str, hint: Option<DirectoryHint>) -> Result<Option<StreamTail>> {
        self.lookup(log, stream, hint).map(|l| l.tail)
    }

    /// As [`StreamIndex::tail_hinted`], also saying where the active memtable holds the stream, for
    /// [`StreamIndex::push`].
    pub fn lookup(&self, log: &LogMap, stream: &str, hint: Option<DirectoryHint>) -> Result<Lookup> {
        if let Some((m, id)) = self.memtable_stream(stream) {
            let active = std::ptr::eq(m, &self.active).then_some((m.first_position, id));
            return Ok(Lookup { tail: Some(m.tail(id)), active });
        }
        let tail = match hint {
            Some(h) if h.generation == self.directory_generation => h.tail,
            _ => self.directory_tail(log, stream)?.map(|(t, _)| t),
        };
        Ok(Lookup { tail, active: None })
    }

    /// Whether `hint` would still be used by a lookup (the directory has not changed since it was taken).
    #[cfg(test)]
    pub fn hint_is_current(&self, hint: &DirectoryHint) -> bool {
        hint.generation == self.directory_generation
    }

    /// Looks the stream up as [`StreamIndex::tail`] does and forgets the answer, keeping only a hint if the
    /// directory gave it. The append path does this before it takes the writer lock, so that the cache misses
    /// of a large directory are not taken under the lock, and passes the hint to the check under the lock.
    pub fn directory_hint(&self, log: &LogMap, stream: &str) -> Option<DirectoryHint> {
        if self.memtable_tail(stream).is_some() {
            return None;
        }
        let tail = self.directory_tail(log, stream).ok()?.map(|(t, _)| t);
        Some(DirectoryHint { generation: self.directory_generation, tail })
    }

    /// The stream in the newest memtable that holds it (the active one, else the frozen one).
    fn memtable_stream(&self, stream: &str) -> Option<(&MemTable, StreamId)> {
        fn found<'a>(m: &'a MemTable, stream: &str) -> Option<(&'a MemTable, StreamId)> {
            m.find(stream).map(|id| (m, id))
        }
        found(&self.active, stream).or_else(|| self.frozen.as_deref().and_then(|f| found(f, stream)))
    }

    /// The stream's newest event if a memtable holds it.
    fn memtable_tail(&self, stream: &str) -> Option<StreamTail> {
        self.memtable_stream(stream).map(|(m, id)| m.tail(id))
    }

    /// The chunk holding `position` (below the indexed end).
    fn chunk_for(&self, position: u64) -> Option<&Arc<Chunk>> {
        chunk_holding(&self.chunks, &self.chunk_firsts, position)
    }

    fn push_chunk(&mut self, chunk: Arc<Chunk>) {
        self.chunk_firsts.push(chunk.first_position());
        self.chunks.push(chunk);
    }

    /// A chunk's mapped, verified bytes. Damage found here is reported, and marks the index for a rebuild at the
    /// next open.
    fn chunk_bytes<'a>(&self, log: &LogMap, chunk: &'a Chunk) -> Result<(&'a [u8], &'a ChunkHeader)> {
        let r = chunk.get(&*self.fs, segment_of(log.segments()));
        if r.is_err() && !self.rebuild_marked.swap(true, std::sync::atomic::Ordering::Relaxed) {
            mark_for_rebuild(&*self.fs, &self.dir);
        }
        r
    }

    /// The locations of the stream's events from `from_version` on, oldest first.
    pub fn locations_from(&self, log: &LogMap, stream: &str, from_version: u64) -> Result<Vec<Location>> {
        // Pieces newest first; each piece oldest first.
        // Newest first, each piece reversed: one vector, reversed once at the end.
        let mut out: Vec<Location> = Vec::new();
        let mut prev = NO_CHUNK;
        let from_mem = |m: &MemTable, id: StreamId, out: &mut Vec<Location>| {
            m.locations_newest_first(id, from_version, out);
            let s = m.stream(id);
            if s.first_version > from_version {
                s.prev_position
            } else {
                NO_CHUNK
            }
        };
        let frozen = self.frozen.as_deref();
        let mut directory_entry = None;
        if let Some((m, id)) = self.memtable_stream(stream) {
            prev = from_mem(m, id, &mut out);
        } else if let Some((t, _)) = self.directory_tail(log, stream)? {
            if t.version >= from_version {
                prev = t.position;
                directory_entry = Some(t.entry);
            }
        }
        let hash = self.hash(stream);
        // The entry index in the chunk holding `prev`, once known: each entry names its predecessor's, and the
        // directory names the newest, so a chunk is searched only where an index is missing or wrong.
        let mut prev_entry: Option<u32> = directory_entry;
        while prev != NO_CHUNK {
            if let Some(f) = frozen.filter(|f| prev >= f.first_position) {
                let id = f.find(stream).ok_or_else(|| self.broken_chain(stream, prev))?;
                prev = from_mem(f, id, &mut out);
                continue;
            }
            let chunk = self.chunk_for(prev).ok_or_else(|| self.broken_chain(stream, prev))?;
            let (bytes, h) = self.chunk_bytes(log, chunk)?;
            // `prev` is always the newest event of the stream's entry in that chunk (the memtable's or the
            // directory's checked tail, or an entry's link), and a position names one event: the entry is found by
            // hash and position, with no frame read to compare names (the reads check every event's name).
            // An index that names another entry (the directory's slot is checked only by its checksum) is passed
            // over for a search.
            let entry = match prev_entry.and_then(|i| chunks::entry_at(bytes, h, i, hash, prev)) {
                Some(e) => Some(e),
                None => chunks::find_entry(bytes, h, hash, prev, &mut SearchFloor::default())?.map(|(_, e)| e),
            }
            .ok_or_else(|| self.broken_chain(stream, prev))?;
            // The walk's misses are dependent (entry, then its arrays, then the next chunk's entry): start the
            // ones known now together, the recent locations and the entry the walk goes on to, if it goes on.
            chunks::prefetch_recent(bytes, h, &entry);
            if entry.first_version - u64::from(entry.recent_count) > from_version {
                self.prefetch_entry(log, entry.cont_position, entry.cont_entry);
            }
            out.reserve(entry.count as usize + entry.recent_count as usize);
            let start = out.len();
            chunks::locations(bytes, h, &entry, from_version, &mut out);
            out[start..].reverse();
            prefetch_oldest_frames(log, &out[start..]);
            if entry.first_version <= from_version {
                break;
            }
            // The locations of the events just before the chunk, copied into the entry: no visit to the chunks
            // holding them.
            let start = out.len();
            chunks::recent(bytes, h, &entry, from_version, &mut out);
            out[start..].reverse();
            prefetch_oldest_frames(log, &out[start..]);
            if entry.first_version - u64::from(entry.recent_count) <= from_version {
                break;
            }
            prev = entry.cont_position;
            prev_entry = Some(entry.cont_entry);
        }
        out.reverse();
        Ok(out)
    }

    fn broken_chain(&self, stream: &str, position: u64) -> Error {
        broken_chain(&self.dir, stream, position)
    }

    /// Starts loading entry `entry` of the chunk holding `position`, if a chunk file holds it and is verified.
    fn prefetch_entry(&self, log: &LogMap, position: u64, entry: u32) {
        if entry == NO_ENTRY {
            return;
        }
        if let Some(chunk) = self.chunk_for(position) {
            if let Ok((bytes, h)) = self.chunk_bytes(log, chunk) {
                chunks::prefetch_entry(bytes, h, entry);
            }
        }
    }

    /// The newest version of `stream`, at or below `version`, whose event is visible (its position is below
    /// `head`); `None` if none is. Events not yet visible (written, waiting for their sync) are all in a
    /// memtable, which knows their positions, so no frame is read: the frames may not even be in the file yet
    /// (the writer holds them until the sync).
    pub fn newest_visible(&self, stream: &str, version: u64, head: u64) -> Option<u64> {
        let mut version = version;
        for m in [Some(&self.active), self.frozen.as_deref()].into_iter().flatten() {
            let Some(id) = m.find(stream) else { continue };
            let first = m.first_version(id);
            if version < first {
                continue;
            }
            match m.newest_visible(id, version, head) {
                Some(v) => return Some(v),
                None => version = first.checked_sub(1)?,
            }
        }
        Some(version)
    }

    /// An offset at or before `position`'s frame in the segment holding it, from the chunk files.
    pub fn seek(&self, log: &LogMap, position: u64) -> Option<(u32, u32)> {
        let chunk = self.chunk_for(position)?;
        let (bytes, h) = self.chunk_bytes(log, chunk).ok()?;
        Some((h.segment_number as u32, chunks::seek(bytes, h, position)?))
    }

    /// Records a run of `stream`'s events: versions from `first_version`, positions from `first_position`, one
    /// frame each, back to back in one segment. Versions must follow the stream's last one; positions arrive in
    /// order without gaps. One lookup of the stream serves the whole run.
    pub fn push(
        &mut self,
        stream: &str,
        first_version: u64,
        first_position: u64,
        prev: PrevEvent<'_>,
        frames: impl IntoIterator<Item = PushedFrame>,
    ) -> std::result::Result<(), PushError> {
        debug_assert_eq!(first_position, self.active.end_position);
        let active = match &prev {
            PrevEvent::Known(Lookup { active: Some((memtable, id)), .. })
                if *memtable == self.active.first_position =>
            {
                debug_assert_eq!(self.active.name(*id), stream);
                Some(*id)
            }
            PrevEvent::Known(Lookup { active: Some(_), .. }) | PrevEvent::LookUp(_) => self.active.find(stream),
            // The lookup found no such stream in the active memtable, and the caller has kept the index from
            // changing since.
            PrevEvent::Known(Lookup { active: None, .. }) => None,
        };
        if let Some(id) = active {
            let expected = self.active.last_version(id) + 1;
            if expected != first_version {
                return Err(PushError::Gap { expected, found: first_version });
            }
            self.active.add(id, first_position, frames);
        } else {
            let prev = match prev {
                PrevEvent::Known(found) => found.tail.map_or((NO_CHUNK, NO_ENTRY), |t| (t.position, t.entry)),
                PrevEvent::LookUp(log) => {
                    // The active memtable does not hold the stream (looked up above), so this answers from the
                    // frozen one, else the directory.
                    let before = self.lookup(log, stream, None).map_err(PushError::Corrupt)?.tail;
                    let expected = before.map_or(0, |t| t.version + 1);
                    if expected != first_version {
                        return Err(PushError::Gap { expected, found: first_version });
                    }
                    before.map_or((NO_CHUNK, NO_ENTRY), |t| (t.position, t.entry))
                }
            };
            let hash = self.hash(stream);
            self.active.insert(stream, hash, first_version, prev, first_position, frames);
        }
        Ok(())
    }

    /// True if the active memtable is due for a checkpoint.
    pub fn wants_checkpoint(&self) -> bool {
        self.active.log_bytes >= self.checkpoint_bytes
    }

    /// True if appends must wait for the indexer: while it writes the frozen memtable, the two memtables have
    /// come to cover [`STALL_CHECKPOINTS`] checkpoints of log. This bounds their heap.
    pub fn must_stall(&self) -> bool {
        self.frozen
            .as_ref()
            .is_some_and(|f| f.log_bytes + self.active.log_bytes >= STALL_CHECKPOINTS * self.checkpoint_bytes)
    }

    /// Freezes the active memtable for the indexer, if it has events and no other is frozen. Returns the frozen
    /// memtable's end position if it froze one.
    pub fn freeze(&mut self) -> Option<u64> {
        if self.frozen.is_some() || self.active.is_empty() {
            return None;
        }
        let end = self.active.end_position;
        let next = self.retired.take().and_then(|r| Arc::try_unwrap(r).ok()).and_then(|r| r.reset(end));
        let m = std::mem::replace(&mut self.active, next.unwrap_or_else(|| MemTable::new(end)));
        self.frozen = Some(Arc::new(m));
        Some(end)
    }

    /// The frozen memtable, if any.
    pub fn frozen(&self) -> Option<Arc<MemTable>> {
        self.frozen.clone()
    }

    /// What building chunk files needs, taken under the state lock for use without it.
    pub fn build_view(&self, log: &LogMap) -> BuildView {
        BuildView {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            hash_key: self.hash_key,
            hash_bits: self.hash_bits,
            chunks: self.chunks.clone(),
            chunk_firsts: self.chunk_firsts.clone(),
            segments: log.segments().to_vec(),
        }
    }

    /// Writes built chunk files durably (no lock needed: nothing reads them before [`StreamIndex::publish`]).
    pub fn write_chunks(fs: &dyn FileSystem, dir: &Path, built: &[BuiltChunk]) -> io::Result<()> {
        for c in built {
            fs::write_file_atomic(fs, dir, &chunks::file_name(c.header.first_position), &c.bytes)?;
        }
        Ok(())
    }

    /// The directory needs to grow before `m`'s streams are applied: returns what the indexer needs to build the
    /// larger table outside the lock.
    pub fn directory_needs_growth(&self, m: &MemTable) -> bool {
        self.directory.needs_growth(m.stream_count() as u64)
    }

    /// The directory slot each stream hash starts its probe at, for [`StreamIndex::apply_order`].
    pub fn directory_homes(&self) -> impl Fn(u64) -> u64 + Copy + use<> {
        self.directory.homes()
    }

    /// The directory as it is now, to grow it from (see [`directory::Snapshot`]).
    pub fn directory_snapshot(&self) -> directory::Snapshot {
        self.directory.snapshot()
    }

    /// The directory file, to sync it without holding the state lock.
    pub fn directory_file(&self) -> Arc<dyn crate::fs::FileHandle> {
        self.directory.file()
    }

    /// Records that the directory is durable through `applied` (after a sync of [`StreamIndex::directory_file`]).
    pub fn directory_synced(&mut self, applied: u64) {
        self.directory.set_synced(applied);
        self.log_since_directory_sync = 0;
    }

    /// Every chunk below this position is applied to the directory.
    pub fn applied_through(&self) -> u64 {
        self.directory.header().applied_through
    }

    pub fn install_directory(&mut self, d: Directory) {
        self.directory = d;
        self.directory_generation += 1;
    }

    /// A memtable's streams, for applying it in batches, in the order of their directory slots: at millions of
    /// streams the directory is far larger than the CPU's caches, and slots visited in file order share pages
    /// and cache lines where a random order misses on every one (under the state lock appends need). `homes` is
    /// [`StreamIndex::directory_homes`], taken after any growth of the directory.
    pub fn apply_order(m: &MemTable, homes: impl Fn(u64) -> u64) -> Vec<StreamId> {
        let mut order: Vec<(u64, StreamId)> = m.streams().map(|(id, s)| (homes(s.hash), id)).collect();
        order.sort_unstable_by_key(|&(home, _)| home);
        order.into_iter().map(|(_, id)| id).collect()
    }

    /// Each stream of `m`, by its id: the index of its entry in the chunk built from `m` that holds its newest
    /// event (the last chunk with an entry for it), for the directory's slot.
    pub fn newest_entries(m: &MemTable, built: &[BuiltChunk]) -> Vec<u32> {
        let mut entries = vec![NO_ENTRY; m.stream_count()];
        for (id, i) in built.iter().flat_map(|c| &c.entries) {
            entries[*id] = *i;
        }
        entries
    }

    /// Starts loading the directory slots that [`StreamIndex::apply`] of these streams will probe first. The
    /// indexer asks for them under the state read lock just before it takes the write lock for the batch: at a
    /// million streams nearly every slot is a cache miss, and the misses then overlap each other and the wait
    /// for the lock instead of following one another while appends wait (a batch of 64 held the lock for a
    /// mean 11.0-12.5 us without, 7.7-8.8 us with, W2 at a million streams).
    pub fn prefetch_directory_slots(&self, m: &MemTable, streams: &[StreamId]) {
        for &id in streams {
            self.directory.prefetch_home(m.hash(id));
        }
    }

    /// Applies the newest event of each of the given streams of `m` to the directory.
    ///
    /// The directory's generation does not change here: every stream whose slot this sets is in `m`, which stays
    /// the frozen memtable until [`StreamIndex::publish`], so until then a memtable answers for it before any
    /// hint; and the answer for a stream that no memtable holds stays what it was (its slot is not touched, and a
    /// hint holds the answer, not the slot). The indexer applies in small batches between appends, and a change
    /// per batch would send the hints of every appender waiting for the writer lock back to the directory.
    pub fn apply(&mut self, log: &LogMap, m: &MemTable, streams: &[StreamId], entries: &[u32]) -> Result<()> {
        for &id in streams {
            let s = m.stream(id);
            let at = m.last_location(id);
            let name = m.name(id);
            let last = SlotEvent {
                position: s.last_position,
                version: s.last_version(),
                segment: at.segment(),
                offset: at.offset(),
                id: s.last_id,
                entry: entries.get(id).copied().unwrap_or(NO_ENTRY),
            };
            let slot = Slot::new(name, s.hash, last);
            self.apply_slot(log, name, slot, s.prev_position, false)?;
        }
        Ok(())
    }

    /// Sets the directory slot of `name` to `slot` unless it already records a later event. `prev_position`:
    /// the stream's newest event before the memtable, or [`NO_CHUNK`].
    ///
    /// `repair` is for the open, which applies again every chunk the directory may not hold durably: a slot
    /// written since the directory's last sync may have been torn by a power loss (or by a kill in the middle of
    /// its write), and every such slot belongs to a stream applied again then. So a stream not found takes the
    /// first damaged slot on its probe, if there is one (perhaps its own). Otherwise a damaged slot on the probe
    /// of a stream not found is an error: it may be the stream's.
    fn apply_slot(&mut self, log: &LogMap, name: &str, slot: Slot, prev_position: u64, repair: bool) -> Result<()> {
        let probe = self.directory.find(slot.hash, |s| {
            if prev_position != NO_CHUNK && s.last_position == prev_position {
                // The slot names the stream's own previous event (a position names one event), as the lookup
                // that found it when the memtable took the stream had checked: no name compared.
                return Ok(true);
            }
            Ok::<bool, Error>(match s.name() {
                Some(n) => n == name.as_bytes(),
                None => frame_at(log.segments(), Location::new(s.last_segment, s.last_offset))
                    .is_ok_and(|(_, n)| n == name.as_bytes()),
            })
        })?;
        match (probe.found, probe.damaged) {
            (None, Some(i)) if probe.full => return Err(self.damaged_slot(i)),
            (Some((_, s)), _) if s.last_position >= slot.last_position => {}
            (Some((i, _)), _) => self.directory.set(i, &slot, false),
            (None, Some(i)) if repair => self.directory.set(i, &slot, false),
            (None, Some(i)) => return Err(self.damaged_slot(i)),
            (None, None) => self.directory.set(probe.empty, &slot, true),
        }
        Ok(())
    }

    /// Makes the written chunks of `m` part of the index and drops `m`. Returns true if the directory is due for
    /// a sync.
    pub fn publish(&mut self, m: &MemTable, built: &[BuiltChunk]) -> bool {
        for c in built {
            let h = c.header;
            let expect = Expect {
                first_position: h.first_position,
                end_position: h.end_position,
                hash_key: self.hash_key,
                hash_bits: self.hash_bits,
            };
            let path = self.dir.join(chunks::file_name(h.first_position));
            self.push_chunk(Arc::new(Chunk::new(path, expect)));
        }
        if self.frozen.as_ref().is_some_and(|f| f.first_position == m.first_position) {
            self.retired = self.frozen.take();
        }
        // The streams of `m` are answered by the directory from now on.
        self.directory_generation += 1;
        self.directory.set_applied(m.end_position, self.boot_id);
        self.log_since_directory_sync += m.log_bytes;
        self.log_since_directory_sync >= DIRECTORY_SYNC_LOG_BYTES
    }

    /// Syncs the directory (with no other thread using the index).
    pub fn sync_directory(&mut self) -> io::Result<()> {
        self.directory.sync()?;
        self.log_since_directory_sync = 0;
        Ok(())
    }

    /// The stream count a memtable adds at most to the directory.
    pub fn memtable_streams(m: &MemTable) -> u64 {
        m.stream_count() as u64
    }

    /// Freezes, builds, writes and applies everything in the active memtable at once (recovery and close, with
    /// no other thread using the index; every event in it must be durable).
    pub fn checkpoint_now(&mut self, log: &LogMap, sync_directory: bool) -> Result<()> {
        loop {
            let m = match self.frozen.clone() {
                Some(m) => m,
                None => {
                    if self.freeze().is_none() {
                        break;
                    }
                    self.frozen.clone().expect("just frozen")
                }
            };
            let built = self.build_view(log).build_chunks(&m)?;
            StreamIndex::write_chunks(&*self.fs, &self.dir, &built)?;
            if self.directory_needs_growth(&m) {
                let d = self.directory.snapshot().grown(&*self.fs, &self.dir, m.stream_count() as u64)?;
                self.install_directory(d);
            }
            let order = StreamIndex::apply_order(&m, self.directory.homes());
            self.apply(log, &m, &order, &StreamIndex::newest_entries(&m, &built))?;
            self.publish(&m, &built);
        }
        if sync_directory {
            self.sync_directory()?;
        }
        Ok(())
    }

    /// The chunks, oldest first (for verification).
    pub fn chunks(&self) -> Vec<Arc<Chunk>> {
        self.chunks.clone()
    }

    /// For [`crate::Store::verify`]: checks directory slots `from..from + count` (clipped to the table), and
    /// returns how many are used and the table's size (which changes when the directory grows). A used slot
    /// must pass its checksum and point at a valid event frame (its checksum verified) of the stream it names
    /// (its name and hash), with the slot's position, version and id. A damaged slot also marks the index for
    /// a rebuild.
    pub fn check_slots(&self, log: &LogMap, from: usize, count: usize) -> Result<(u64, usize)> {
        let slot_count = self.directory.header().slot_count() as usize;
        // The indexer applies a memtable's slots before it lists the memtable's chunks: a slot may name an entry of
        // a chunk not listed yet.
        let listed_end = self.chunks.last().map_or(0, |c| c.end_position());
        let mut used = 0;
        for i in from..slot_count.min(from.saturating_add(count)) {
            let s = match self.directory.slot(i) {
                SlotRead::Empty => continue,
                SlotRead::Damaged => return Err(self.damaged_slot(i)),
                SlotRead::Used(s) => s,
            };
            used += 1;
            let at = Location::new(s.last_segment, s.last_offset);
            let wrong = |why: String| {
                self.slot_error(
                    i,
                    format!("disagrees with the log at segment {} offset {}: {why}", at.segment(), at.offset()),
                )
            };
            let segment = log.segment(at.segment()).ok_or_else(|| wrong("no such segment".into()))?;
            // One read of the frame, verified whole (checksum, layout, UTF-8 names).
            let offset = at.offset() as usize;
            let (f, _) = segment.verified_event(offset).map_err(|e| wrong(e.to_string()))?;
            let (name_at, name_len) = f.stream();
            let name = &segment.bytes()[offset + name_at..offset + name_at + name_len];
            let name = std::str::from_utf8(name).map_err(|_| wrong("the stream name is not UTF-8".into()))?;
            if self.hash(name) != s.hash || s.name().is_some_and(|n| n != name.as_bytes()) {
                return Err(wrong(format!("the frame is {name:?}'s")));
            }
            if (f.position(), f.version(), f.id()) != (s.last_position, s.last_version, s.last_id) {
                return Err(wrong(format!(
                    "the frame is version {} at position {}; the slot says version {} at position {}, or another id",
                    f.version(),
                    f.position(),
                    s.last_version,
                    s.last_position
                )));
            }
            if s.last_entry != NO_ENTRY && s.last_position < listed_end {
                let chunk = self.chunk_for(s.last_position).ok_or_else(|| wrong("no chunk holds the event".into()))?;
                let (bytes, h) = self.chunk_bytes(log, chunk)?;
                if chunks::entry_at(bytes, h, s.last_entry, s.hash, s.last_position).is_none() {
                    return Err(wrong(format!(
                        "entry {} of {} is not the stream's",
                        s.last_entry,
                        chunk.path().display()
                    )));
                }
            }
        }
        Ok((used, slot_count))
    }

    /// Checks the copied locations of every entry of `chunk`: each must hold the entry's stream at the version
    /// just before the next (read through the mapping, after the log itself was checked). Returns the number
    /// checked, or an explanation of the first wrong one.
    pub fn check_recent(&self, log: &LogMap, chunk: &Chunk) -> Result<std::result::Result<u64, String>> {
        let (bytes, h) = self.chunk_bytes(log, chunk)?;
        let offsets_at = h.layout().offsets;
        let mut checked = 0;
        let mut locations = Vec::new();
        for i in 0..h.stream_count as usize {
            let e = layout::chunk_stream(bytes, i);
            if e.recent_count == 0 {
                continue;
            }
            if chunks::entry_at(bytes, h, i as u32, e.hash, e.last_position).is_none() {
                return Ok(Err(format!("entry {i} is out of bounds")));
            }
            let first = crate::format::read_u32(bytes, offsets_at + e.events_at as usize * 4);
            let stream = frame_at(log.segments(), Location::new(h.segment_number as u32, first))?.1;
            locations.clear();
            chunks::recent(bytes, h, &e, 0, &mut locations);
            let first_version = e.first_version - u64::from(e.recent_count);
            for (k, at) in locations.iter().enumerate() {
                let (f, name) = frame_at(log.segments(), *at)?;
                if name != stream || f.version != first_version + k as u64 {
                    return Ok(Err(format!("entry {i}'s copied location {k} points at another event")));
                }
                checked += 1;
            }
        }
        Ok(Ok(checked))
    }

    /// Checks that the chunk holding `position` says the event there (`stream`, `version`) is at `offset`: its
    /// sparse map and its stream entry. Returns an explanation if not.
    pub fn check_event(
        &self,
        log: &LogMap,
        chunk: &Chunk,
        position: u64,
        stream: &str,
        version: u64,
        location: Location,
    ) -> Result<Option<String>> {
        let (bytes, h) = self.chunk_bytes(log, chunk)?;
        if h.segment_number != location.segment() as u64 {
            return Ok(Some(format!(
                "position {position} is in segment {}, the index says {}",
                location.segment(),
                h.segment_number
            )));
        }
        if (position - h.first_position).is_multiple_of(SPARSE_EVERY)
            && chunks::seek(bytes, h, position) != Some(location.offset())
        {
            return Ok(Some(format!("the sparse map is wrong at position {position}")));
        }
        let segment = location.segment();
        let entry = chunks::find_stream(bytes, h, self.hash(stream), |offset| {
            Ok(frame_at(log.segments(), Location::new(segment, offset))?.1 == stream.as_bytes())
        })?;
        let Some((_, e)) = entry else { return Ok(Some(format!("no entry for {stream:?}"))) };
        if version < e.first_version || version - e.first_version >= e.count as u64 {
            return Ok(Some(format!("the entry of {stream:?} does not hold version {version}")));
        }
        let mut at = Vec::new();
        chunks::locations(bytes, h, &e, version, &mut at);
        if at.first() != Some(&location) {
            return Ok(Some(format!("the entry of {stream:?} puts version {version} elsewhere")));
        }
        Ok(None)
    }

    /// Events of the frozen memtable: handed to the indexer, not yet on disk (for stats).
    pub fn frozen_events(&self) -> u64 {
        self.frozen.as_ref().map_or(0, |f| f.end_position - f.first_position)
    }

    /// Heap bytes held by the memtables, roughly (for stats).
    pub fn memtable_events(&self) -> u64 {
        let f = self.frozen.as_ref().map_or(0, |f| f.end_position - f.first_position);
        self.active.end_position - self.active.first_position + f
    }

    /// Number of chunk files.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Opens the index of a store whose segments are in `log` (mapped, headers checked). Applies chunk files not
    /// yet in the directory, or rebuilds the index from nothing if its files are missing, stale or invalid.
    /// Returns the index (its active memtable empty) and where the log must be read from.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        names: &[String],
        log: &LogMap,
        new_hash_bits: u32,
        checkpoint_bytes: u64,
    ) -> Result<(StreamIndex, ScanStart)> {
        let boot_id = fs.boot_id();
        let mut firsts: Vec<u64> = names.iter().filter_map(|n| chunks::parse_file_name(n)).collect();
        firsts.sort_unstable();
        let rebuild = names.iter().any(|n| n == REBUILD_MARKER);
        match Directory::open(&*fs, dir)? {
            Ok(_) if rebuild => {}
            Ok(directory) => {
                match Self::open_existing(fs.clone(), dir, &firsts, log, directory, boot_id, checkpoint_bytes)? {
                    Ok(opened) => return Ok(opened),
                    Err(_why) => {}
                }
            }
            Err(_why) => {}
        }
        // Rebuild: nothing of the old index is trusted.
        for first in &firsts {
            fs.remove_file(&dir.join(chunks::file_name(*first)))?;
        }
        if rebuild {
            fs.remove_file(&dir.join(REBUILD_MARKER))?;
        }
        let hash_key = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().expect("8 bytes"));
        let directory = Directory::create(&*fs, dir, hash_key, new_hash_bits)?;
        let ix = StreamIndex::with_directory(fs, dir, directory, boot_id, checkpoint_bytes, 0);
        Ok((ix, ScanStart { position: 0, at: None }))
    }

    /// An index with no chunks and an empty memtable starting at `position`, over `directory`.
    fn with_directory(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        directory: Directory,
        boot_id: [u8; 16],
        checkpoint_bytes: u64,
        position: u64,
    ) -> StreamIndex {
        let h = *directory.header();
        StreamIndex {
            fs,
            dir: dir.to_path_buf(),
            hash_key: h.hash_key,
            hash_bits: h.hash_bits,
            boot_id,
            active: MemTable::new(position),
            frozen: None,
            retired: None,
            chunks: Vec::new(),
            chunk_firsts: Vec::new(),
            directory,
            directory_generation: 0,
            log_since_directory_sync: 0,
            rebuild_marked: Default::default(),
            checkpoint_bytes,
        }
    }

    fn open_existing(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        firsts: &[u64],
        log: &LogMap,
        directory: Directory,
        boot_id: [u8; 16],
        checkpoint_bytes: u64,
    ) -> Result<std::result::Result<(StreamIndex, ScanStart), String>> {
        let h = *directory.header();
        let trusted = if h.boot_id == boot_id && boot_id != [0; 16] { h.applied_through } else { h.synced_through };
        let mut ix = StreamIndex::with_directory(fs.clone(), dir, directory, boot_id, checkpoint_bytes, trusted);
        let expect = |first: u64, end: u64| Expect {
            first_position: first,
            end_position: end,
            hash_key: h.hash_key,
            hash_bits: h.hash_bits,
        };
        // Chunks below the trusted point: listed, verified on first use.
        let below = firsts.partition_point(|&f| f < trusted);
        if below > 0 && firsts[0] != 0 {
            return Ok(Err("the first chunk file is missing".into()));
        }
        if trusted > 0 && below == 0 {
            return Ok(Err("the directory covers positions no chunk file holds".into()));
        }
        for i in 0..below {
            let end = if i + 1 < below { firsts[i + 1] } else { trusted };
            ix.push_chunk(Arc::new(Chunk::new(dir.join(chunks::file_name(firsts[i])), expect(firsts[i], end))));
        }
        let segment_of = segment_of(log.segments());
        // The newest trusted chunk: verified now, for where its segment's scan resumes.
        let mut at = None;
        if let Some(last) = ix.chunks.last() {
            match last.get(&*fs, &segment_of) {
                Ok((_, lh)) => at = Some((lh.segment_number as u32, lh.end_offset)),
                Err(e) => return Ok(Err(e.to_string())),
            }
        }
        // Chunks written after it but not (durably) applied: verify and apply them, in order, while contiguous.
        let mut end = trusted;
        let mut applied = 0;
        for (k, &first) in firsts[below..].iter().enumerate() {
            let path = dir.join(chunks::file_name(first));
            let verified = if first == end {
                chunks::open_verified(&*fs, &path, expect(first, chunks::ANY_END), &segment_of).ok()
            } else {
                None
            };
            let Some((map, ch)) = verified else {
                for f in &firsts[below + k..] {
                    fs.remove_file(&dir.join(chunks::file_name(*f)))?;
                }
                fs.sync_dir(dir)?;
                break;
            };
            let bytes = map.bytes();
            let segment = ch.segment_number as u32;
            for i in 0..ch.stream_count as usize {
                let s = layout::chunk_stream(bytes, i);
                let offsets_at = ch.layout().offsets;
                let last_offset = crate::format::read_u32(bytes, offsets_at + (s.events_at + s.count - 1) as usize * 4);
                let last_version = s.first_version + s.count as u64 - 1;
                let (f, name) = frame_at(log.segments(), Location::new(segment, last_offset))?;
                if (f.position, f.version) != (s.last_position, last_version) {
                    return Err(Error::corrupt(
                        log.segment(segment).map(|s| s.path().to_path_buf()).unwrap_or_default(),
                        u64::from(last_offset),
                        format!(
                            "{} says version {last_version} at position {} is here; the frame is version {} at position {}",
                            path.display(),
                            s.last_position,
                            f.version,
                            f.position
                        ),
                    ));
                }
                let name = std::str::from_utf8(name).map_err(|_| {
                    Error::corrupt(&path, 0, "index file names an event whose stream name is not UTF-8")
                })?;
                let last = SlotEvent {
                    position: s.last_position,
                    version: last_version,
                    segment,
                    offset: last_offset,
                    id: f.id,
                    entry: i as u32,
                };
                let slot = Slot::new(name, s.hash, last);
                // After a crash a slot may be torn: damaged slots met here are taken over.
                ix.apply_slot(log, name, slot, NO_CHUNK, true)?;
            }
            end = ch.end_position;
            at = Some((segment, ch.end_offset));
            ix.push_chunk(Arc::new(Chunk::verified(path, expect(first, end), map, ch)));
            applied += 1;
        }
        if applied > 0 {
            ix.directory.set_applied(end, boot_id);
        }
        ix.active = MemTable::new(end);
        // The scan resumes where the last chunk ends, in its segment: at a footer if that segment is sealed (then
        // it goes on with the next segment), which also tells an empty leftover segment from a real one.
        Ok(Ok((ix, ScanStart { position: end, at })))
    }
}
