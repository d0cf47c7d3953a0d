//! The index files: per-chunk index files (`{first_position:020}.idx`) and the stream directory (`streams.dir`).
//! Layouts in docs/FORMAT.md.
//!
//! A **chunk** is a run of positions `[first, end)` inside one segment. Its index file lists, for every stream
//! with events in the chunk, sorted by stream hash: the hash, the stream's first version in the chunk, its last
//! position in the chunk, the position of the stream's previous event (in an earlier chunk), and where its event
//! offsets are; then the segment offset of every event, grouped by stream; then a sparse position -> offset map
//! (one entry per [`SPARSE_EVERY`] positions). Written once, checksummed, never changed or merged.
//!
//! The **directory** is an open-addressing hash table of fixed 128-byte slots (stream hash, last position, last
//! version, segment offset, id and chunk entry of the last event, and the stream's name when it fits), each with
//! its own checksum, after a 4 KiB header page. It is used in place through a shared mapping: nothing of it is
//! read at open but the header.

use crate::format::{read_u32, read_u64, write_u32, write_u64};

/// The first bytes of every chunk index file.
pub const CHUNK_MAGIC: [u8; 8] = *b"ANNALSIX";
/// The first bytes of the directory file.
pub const DIRECTORY_MAGIC: [u8; 8] = *b"ANNALSDR";
/// Version of the chunk index file layout.
pub const INDEX_VERSION: u32 = 1;
/// Version of the directory layout. Version 1 had 32-byte slots without names, ids or checksums; a directory of
/// another version is invalid, so the open rebuilds the index from the log (docs/FORMAT.md, "Versioning").
pub const DIRECTORY_VERSION: u32 = 2;
/// Bytes of a chunk index file's header.
pub const CHUNK_HEADER_BYTES: usize = 96;
/// Bytes of one stream entry of a chunk index file.
pub const CHUNK_STREAM_BYTES: usize = 64;
/// Most locations of earlier events a chunk stream entry carries (see [`ChunkStream::recent_count`]).
pub const RECENT_MAX: usize = 16;
/// One sparse (position -> offset) entry per this many positions of a chunk.
pub const SPARSE_EVERY: u64 = 64;
/// "No previous chunk" in a stream entry.
pub const NO_CHUNK: u64 = u64::MAX;
/// "Search the previous chunk for the stream" in a stream entry's `prev_entry` (none, or it was not found when
/// the entry was written).
pub const NO_ENTRY: u32 = u32::MAX;
/// Bytes of the directory's header page; slots start here.
pub const DIRECTORY_HEADER_BYTES: usize = 4096;
/// Bytes the directory header's checksum covers (from offset 12).
const DIRECTORY_HEADER_USED: usize = 128;
/// Bytes of one directory slot.
pub const SLOT_BYTES: usize = 128;
/// Longest stream name a directory slot holds (longer names are confirmed against the stream's newest frame).
pub const SLOT_NAME_MAX: usize = SLOT_ENTRY_AT - SLOT_NAME_AT;
/// Where the name starts in a slot; the byte before it is the name's length.
const SLOT_NAME_AT: usize = 49;
/// A slot's name length byte when the name is longer than [`SLOT_NAME_MAX`].
const SLOT_NAME_LONG: u8 = u8::MAX;
/// Where a slot's `last_entry` is.
const SLOT_ENTRY_AT: usize = 120;
/// Where a slot's checksum is: the low 32 bits of XXH3-64 (seed 0) of the slot's first 124 bytes. Not crc32,
/// as everywhere else: every lookup checks a slot, and XXH3 takes a fifth of crc32fast's instructions on 124
/// bytes (callgrind) while still catching damage that is not crafted.
const SLOT_CHECKSUM_AT: usize = SLOT_BYTES - 4;

/// The hash of a stream name used by every index file: XXH3-64 (a published, stable function: the values are
/// stored on disk) keyed by the store's random key, keeping the low `bits` bits. Fewer bits than 64 exist only
/// for tests that force collisions.
pub fn stream_hash(name: &str, key: u64, bits: u32) -> u64 {
    let h = xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), key);
    if bits >= 64 {
        h
    } else {
        h & ((1u64 << bits) - 1)
    }
}

/// The header of a chunk index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    pub file_bytes: u64,
    pub segment_number: u64,
    pub segment_first_position: u64,
    pub segment_salt: u64,
    pub first_position: u64,
    pub end_position: u64,
    /// Offset in the segment just past the chunk's last event: where the next frame starts.
    pub end_offset: u64,
    pub hash_key: u64,
    pub hash_bits: u32,
    pub stream_count: u32,
    /// Locations in the recent array (all entries' `recent_count` together).
    pub recent_count: u32,
}

/// One stream's entry in a chunk index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkStream {
    pub hash: u64,
    pub first_version: u64,
    pub last_position: u64,
    /// Position of the stream's last event before this chunk, or [`NO_CHUNK`] (the chunk holding it is found by
    /// position).
    pub prev_position: u64,
    /// Index of the stream's entry in that chunk (a stream read follows the chain without searching), or
    /// [`NO_ENTRY`].
    pub prev_entry: u32,
    /// Index of the stream's first offset in the offsets array.
    pub events_at: u32,
    pub count: u32,
    /// The locations (segment << 32 | offset) of the stream's `recent_count` events just before this chunk's
    /// first, oldest first, at `recent_at` in the recent array: a read of the stream's newest events takes them
    /// from here instead of visiting the chunks that hold them. At most [`RECENT_MAX`]; they start where an
    /// earlier entry's own events start.
    pub recent_at: u32,
    pub recent_count: u32,
    /// Where a read continues after the recent locations: the entry holding the event just before the oldest
    /// of them (its newest event's position, or [`NO_CHUNK`], and its index). The previous entry if there are
    /// no recent locations.
    pub cont_position: u64,
    pub cont_entry: u32,
}

impl ChunkHeader {
    pub fn events(&self) -> u64 {
        self.end_position - self.first_position
    }

    pub fn sparse_count(&self) -> u64 {
        self.events().div_ceil(SPARSE_EVERY)
    }

    /// Offsets of the parts of the file.
    pub fn layout(&self) -> ChunkLayout {
        let streams = CHUNK_HEADER_BYTES;
        let offsets = streams + self.stream_count as usize * CHUNK_STREAM_BYTES;
        let recent = offsets + self.events() as usize * 4;
        let sparse = recent + self.recent_count as usize * 8;
        let end = sparse + self.sparse_count() as usize * 4;
        ChunkLayout { streams, offsets, recent, sparse, end }
    }
}

/// Where the parts of a chunk index file start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLayout {
    pub streams: usize,
    pub offsets: usize,
    pub recent: usize,
    pub sparse: usize,
    pub end: usize,
}

/// Why a chunk index file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexFileError {
    #[error("not an annals index file")]
    NotIndex,
    #[error("index file version {0} is not supported")]
    Version(u32),
    #[error("index file checksum mismatch")]
    Checksum,
    #[error("index file is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// Encodes a chunk index file. `streams` must be sorted by hash; `offsets`, `recent` and `sparse` as described
/// above.
pub fn encode_chunk(
    mut header: ChunkHeader,
    streams: &[ChunkStream],
    offsets: &[u32],
    recent: &[u64],
    sparse: &[u32],
) -> Vec<u8> {
    header.stream_count = streams.len() as u32;
    header.recent_count = recent.len() as u32;
    let l = header.layout();
    let (s_at, o_at, r_at, p_at, end) = (l.streams, l.offsets, l.recent, l.sparse, l.end);
    header.file_bytes = end as u64;
    debug_assert_eq!(offsets.len() as u64, header.events());
    debug_assert_eq!(sparse.len() as u64, header.sparse_count());
    let mut b = vec![0u8; end];
    b[0..8].copy_from_slice(&CHUNK_MAGIC);
    write_u32(&mut b, 12, INDEX_VERSION);
    write_u64(&mut b, 16, header.file_bytes);
    write_u64(&mut b, 24, header.segment_number);
    write_u64(&mut b, 32, header.segment_first_position);
    write_u64(&mut b, 40, header.segment_salt);
    write_u64(&mut b, 48, header.first_position);
    write_u64(&mut b, 56, header.end_position);
    write_u64(&mut b, 64, header.end_offset);
    write_u64(&mut b, 72, header.hash_key);
    write_u32(&mut b, 80, header.hash_bits);
    write_u32(&mut b, 84, header.stream_count);
    write_u32(&mut b, 88, SPARSE_EVERY as u32);
    write_u32(&mut b, 92, header.recent_count);
    for (i, s) in streams.iter().enumerate() {
        let at = s_at + i * CHUNK_STREAM_BYTES;
        write_u64(&mut b, at, s.hash);
        write_u64(&mut b, at + 8, s.first_version);
        write_u64(&mut b, at + 16, s.last_position);
        write_u64(&mut b, at + 24, s.prev_position);
        write_u64(&mut b, at + 32, s.cont_position);
        write_u32(&mut b, at + 40, s.events_at);
        write_u32(&mut b, at + 44, s.count);
        write_u32(&mut b, at + 48, s.prev_entry);
        write_u32(&mut b, at + 52, s.cont_entry);
        write_u32(&mut b, at + 56, s.recent_at);
        write_u32(&mut b, at + 60, s.recent_count);
    }
    for (i, o) in offsets.iter().enumerate() {
        write_u32(&mut b, o_at + i * 4, *o);
    }
    for (i, r) in recent.iter().enumerate() {
        write_u64(&mut b, r_at + i * 8, *r);
    }
    for (i, o) in sparse.iter().enumerate() {
        write_u32(&mut b, p_at + i * 4, *o);
    }
    let crc = crc32fast::hash(&b[12..]);
    write_u32(&mut b, 8, crc);
    b
}

/// Decodes a chunk header and checks the file's shape; with `verify`, also its checksum (reads every byte).
pub fn decode_chunk_header(b: &[u8], verify: bool) -> Result<ChunkHeader, IndexFileError> {
    if b.len() < CHUNK_HEADER_BYTES || b[0..8] != CHUNK_MAGIC {
        return Err(IndexFileError::NotIndex);
    }
    let version = read_u32(b, 12);
    if version != INDEX_VERSION {
        return Err(IndexFileError::Version(version));
    }
    let h = ChunkHeader {
        file_bytes: read_u64(b, 16),
        segment_number: read_u64(b, 24),
        segment_first_position: read_u64(b, 32),
        segment_salt: read_u64(b, 40),
        first_position: read_u64(b, 48),
        end_position: read_u64(b, 56),
        end_offset: read_u64(b, 64),
        hash_key: read_u64(b, 72),
        hash_bits: read_u32(b, 80),
        stream_count: read_u32(b, 84),
        recent_count: read_u32(b, 92),
    };
    if h.file_bytes != b.len() as u64 {
        return Err(IndexFileError::Inconsistent("length"));
    }
    if verify && crc32fast::hash(&b[12..]) != read_u32(b, 8) {
        return Err(IndexFileError::Checksum);
    }
    let events = h.end_position.checked_sub(h.first_position).ok_or(IndexFileError::Inconsistent("positions"))?;
    if events == 0
        || events > u32::MAX as u64
        || h.first_position < h.segment_first_position
        || h.stream_count as u64 > events
        || read_u32(b, 88) as u64 != SPARSE_EVERY
        || h.hash_bits == 0
        || h.hash_bits > 64
    {
        return Err(IndexFileError::Inconsistent("counts"));
    }
    if h.recent_count as u64 > events * RECENT_MAX as u64 {
        return Err(IndexFileError::Inconsistent("counts"));
    }
    if h.layout().end as u64 != h.file_bytes {
        return Err(IndexFileError::Inconsistent("layout"));
    }
    Ok(h)
}

/// The `i`-th stream entry of a decoded chunk (`i < stream_count`).
pub fn chunk_stream(b: &[u8], i: usize) -> ChunkStream {
    let at = CHUNK_HEADER_BYTES + i * CHUNK_STREAM_BYTES;
    ChunkStream {
        hash: read_u64(b, at),
        first_version: read_u64(b, at + 8),
        last_position: read_u64(b, at + 16),
        prev_position: read_u64(b, at + 24),
        cont_position: read_u64(b, at + 32),
        events_at: read_u32(b, at + 40),
        count: read_u32(b, at + 44),
        prev_entry: read_u32(b, at + 48),
        cont_entry: read_u32(b, at + 52),
        recent_at: read_u32(b, at + 56),
        recent_count: read_u32(b, at + 60),
    }
}

/// The stored hash of the `i`-th stream entry, without decoding the rest.
pub fn chunk_stream_hash(b: &[u8], i: usize) -> u64 {
    read_u64(b, CHUNK_HEADER_BYTES + i * CHUNK_STREAM_BYTES)
}

/// The directory's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryHeader {
    pub slot_count_log2: u32,
    pub hash_bits: u32,
    pub hash_key: u64,
    /// Slots in use.
    pub used: u64,
    /// Every chunk below this position is applied to the slots, and the slots are durable.
    pub synced_through: u64,
    /// Every chunk below this position is applied to the slots (in the page cache; trusted within one boot).
    pub applied_through: u64,
    /// The boot during which `applied_through` was written.
    pub boot_id: [u8; 16],
}

impl DirectoryHeader {
    pub fn slot_count(&self) -> u64 {
        1u64 << self.slot_count_log2
    }

    pub fn file_bytes(&self) -> u64 {
        DIRECTORY_HEADER_BYTES as u64 + self.slot_count() * SLOT_BYTES as u64
    }

    pub fn encode_into(&self, b: &mut [u8]) {
        b[..DIRECTORY_HEADER_USED].fill(0);
        b[0..8].copy_from_slice(&DIRECTORY_MAGIC);
        write_u32(b, 12, DIRECTORY_VERSION);
        write_u32(b, 16, self.slot_count_log2);
        write_u32(b, 20, self.hash_bits);
        write_u64(b, 24, self.hash_key);
        write_u64(b, 32, self.used);
        write_u64(b, 40, self.synced_through);
        write_u64(b, 48, self.applied_through);
        b[56..72].copy_from_slice(&self.boot_id);
        let crc = crc32fast::hash(&b[12..DIRECTORY_HEADER_USED]);
        write_u32(b, 8, crc);
    }

    pub fn decode(b: &[u8]) -> Result<DirectoryHeader, IndexFileError> {
        if b.len() < DIRECTORY_HEADER_BYTES || b[0..8] != DIRECTORY_MAGIC {
            return Err(IndexFileError::NotIndex);
        }
        if crc32fast::hash(&b[12..DIRECTORY_HEADER_USED]) != read_u32(b, 8) {
            return Err(IndexFileError::Checksum);
        }
        let version = read_u32(b, 12);
        if version != DIRECTORY_VERSION {
            return Err(IndexFileError::Version(version));
        }
        let mut boot_id = [0u8; 16];
        boot_id.copy_from_slice(&b[56..72]);
        let h = DirectoryHeader {
            slot_count_log2: read_u32(b, 16),
            hash_bits: read_u32(b, 20),
            hash_key: read_u64(b, 24),
            used: read_u64(b, 32),
            synced_through: read_u64(b, 40),
            applied_through: read_u64(b, 48),
            boot_id,
        };
        if !(4..=40).contains(&h.slot_count_log2)
            || h.hash_bits == 0
            || h.hash_bits > 64
            || h.used > h.slot_count()
            || h.synced_through > h.applied_through
            || h.file_bytes() != b.len() as u64
        {
            return Err(IndexFileError::Inconsistent("directory header"));
        }
        Ok(h)
    }
}

/// One directory slot: where a stream's newest event is, and which stream it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub hash: u64,
    pub last_position: u64,
    pub last_version: u64,
    /// Where the stream's newest event is: segment number and offset.
    pub last_segment: u32,
    pub last_offset: u32,
    /// The id of the stream's newest event.
    pub last_id: [u8; 16],
    /// The index of the stream's entry in the chunk holding `last_position`, or [`NO_ENTRY`] (search it).
    pub last_entry: u32,
    /// The stream name's length if it is held in `name`, else [`SLOT_NAME_LONG`].
    name_len: u8,
    name: [u8; SLOT_NAME_MAX],
}

impl Slot {
    /// A slot for the stream `name` (kept if it fits, else only its hash is).
    pub fn new(name: &str, hash: u64, last: SlotEvent) -> Slot {
        let mut slot = Slot {
            hash,
            last_position: last.position,
            last_version: last.version,
            last_segment: last.segment,
            last_offset: last.offset,
            last_id: last.id,
            last_entry: last.entry,
            name_len: SLOT_NAME_LONG,
            name: [0; SLOT_NAME_MAX],
        };
        if let Some(into) = slot.name.get_mut(..name.len()) {
            into.copy_from_slice(name.as_bytes());
            slot.name_len = name.len() as u8;
        }
        slot
    }

    /// The stream's name if the slot holds it (`None`: the name is longer than [`SLOT_NAME_MAX`] bytes).
    pub fn name(&self) -> Option<&[u8]> {
        self.name.get(..usize::from(self.name_len))
    }
}

/// A stream's newest event as its directory slot records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotEvent {
    pub position: u64,
    pub version: u64,
    /// Where its frame is.
    pub segment: u32,
    pub offset: u32,
    pub id: [u8; 16],
    /// The stream's entry in the chunk holding the event, or [`NO_ENTRY`].
    pub entry: u32,
}

/// What a directory slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRead {
    Empty,
    /// The checksum does not match (a write torn by a power loss, or damage): nothing in it is trusted.
    Damaged,
    Used(Slot),
}

/// The stream hash slot `i` says it holds, if it is not empty; not verified (see [`read_slot`]).
#[inline]
pub fn slot_hash(slots: &[u8], i: usize) -> Option<u64> {
    let at = i * SLOT_BYTES;
    (read_u32(slots, at + 24) != 0).then(|| read_u64(slots, at))
}

/// Reads and verifies slot `i`.
pub fn read_slot(slots: &[u8], i: usize) -> SlotRead {
    let at = i * SLOT_BYTES;
    let b = &slots[at..at + SLOT_BYTES];
    let segment_plus_one = read_u32(b, 24);
    if segment_plus_one == 0 {
        return SlotRead::Empty;
    }
    if slot_checksum(b) != read_u32(b, SLOT_CHECKSUM_AT) {
        return SlotRead::Damaged;
    }
    let name_len = b[SLOT_NAME_AT - 1];
    if name_len != SLOT_NAME_LONG && usize::from(name_len) > SLOT_NAME_MAX {
        return SlotRead::Damaged;
    }
    let mut slot = Slot {
        hash: read_u64(b, 0),
        last_position: read_u64(b, 8),
        last_version: read_u64(b, 16),
        last_segment: segment_plus_one - 1,
        last_offset: read_u32(b, 28),
        last_id: [0; 16],
        last_entry: read_u32(b, SLOT_ENTRY_AT),
        name_len,
        name: [0; SLOT_NAME_MAX],
    };
    slot.last_id.copy_from_slice(&b[32..48]);
    slot.name.copy_from_slice(&b[SLOT_NAME_AT..SLOT_ENTRY_AT]);
    SlotRead::Used(slot)
}

/// Writes slot `i`, with its checksum.
pub fn write_slot(slots: &mut [u8], i: usize, s: &Slot) {
    let at = i * SLOT_BYTES;
    let b = &mut slots[at..at + SLOT_BYTES];
    write_u64(b, 0, s.hash);
    write_u64(b, 8, s.last_position);
    write_u64(b, 16, s.last_version);
    write_u32(b, 24, s.last_segment + 1);
    write_u32(b, 28, s.last_offset);
    b[32..48].copy_from_slice(&s.last_id);
    b[SLOT_NAME_AT - 1] = s.name_len;
    b[SLOT_NAME_AT..SLOT_ENTRY_AT].copy_from_slice(&s.name);
    write_u32(b, SLOT_ENTRY_AT, s.last_entry);
    seal_slot(slots, i);
}

/// Makes slot `i`'s checksum match its bytes as they are, whatever they hold: [`write_slot`]'s last step, and
/// for the fuzzer and for tests that build slots with chosen fields.
pub fn seal_slot(slots: &mut [u8], i: usize) {
    let b = &mut slots[i * SLOT_BYTES..(i + 1) * SLOT_BYTES];
    let crc = slot_checksum(b);
    write_u32(b, SLOT_CHECKSUM_AT, crc);
}

/// The checksum of a slot (see [`SLOT_CHECKSUM_AT`]).
#[inline]
fn slot_checksum(b: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(&b[..SLOT_CHECKSUM_AT]) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ChunkHeader {
        ChunkHeader {
            file_bytes: 0,
            segment_number: 2,
            segment_first_position: 100,
            segment_salt: 7,
            first_position: 130,
            end_position: 133,
            end_offset: 4096,
            hash_key: 9,
            hash_bits: 64,
            stream_count: 0,
            recent_count: 0,
        }
    }

    #[test]
    fn chunk_round_trips_and_detects_damage() {
        let streams = [
            ChunkStream {
                hash: 1,
                first_version: 0,
                last_position: 131,
                prev_entry: 0,
                prev_position: NO_CHUNK,
                events_at: 0,
                count: 2,
                recent_at: 0,
                recent_count: 0,
                cont_position: NO_CHUNK,
                cont_entry: NO_ENTRY,
            },
            ChunkStream {
                hash: 5,
                first_version: 3,
                last_position: 132,
                prev_position: 64,
                prev_entry: 9,
                events_at: 2,
                count: 1,
                recent_at: 0,
                recent_count: 2,
                cont_position: 40,
                cont_entry: 3,
            },
        ];
        let b = encode_chunk(header(), &streams, &[64, 160, 320], &[(1 << 32) | 64, (1 << 32) | 96], &[64]);
        let h = decode_chunk_header(&b, true).unwrap();
        assert_eq!(h.stream_count, 2);
        assert_eq!(h.recent_count, 2);
        assert_eq!(h.file_bytes, b.len() as u64);
        assert_eq!(chunk_stream(&b, 1), streams[1]);
        assert_eq!(chunk_stream_hash(&b, 0), 1);
        for i in 0..b.len() {
            let mut d = b.clone();
            d[i] ^= 0x40;
            assert!(decode_chunk_header(&d, true).is_err(), "flip at {i} not detected");
        }
        assert_eq!(decode_chunk_header(&b[..b.len() - 4], false), Err(IndexFileError::Inconsistent("length")));
    }

    #[test]
    fn directory_header_round_trips() {
        let h = DirectoryHeader {
            slot_count_log2: 4,
            hash_bits: 64,
            hash_key: 3,
            used: 2,
            synced_through: 10,
            applied_through: 20,
            boot_id: [7; 16],
        };
        let mut b = vec![0u8; h.file_bytes() as usize];
        h.encode_into(&mut b);
        assert_eq!(DirectoryHeader::decode(&b), Ok(h));
        b[40] ^= 1;
        assert_eq!(DirectoryHeader::decode(&b), Err(IndexFileError::Checksum));
    }

    #[test]
    fn slots_round_trip_hold_short_names_and_detect_damage() {
        let event = |id| SlotEvent { position: 2, version: 3, segment: 0, offset: 4, id, entry: 5 };
        let slot = Slot::new("account-7", 1, event([9; 16]));
        assert_eq!(slot.name(), Some(&b"account-7"[..]));
        let mut slots = vec![0u8; 2 * SLOT_BYTES];
        assert_eq!(read_slot(&slots, 1), SlotRead::Empty);
        write_slot(&mut slots, 1, &slot);
        assert_eq!(read_slot(&slots, 1), SlotRead::Used(slot));
        assert_eq!(slot_hash(&slots, 1), Some(1));
        assert_eq!(slot_hash(&slots, 0), None);
        for i in SLOT_BYTES..2 * SLOT_BYTES {
            // (A used slot's segment field is at least 1, so no single flip makes it read as empty.)
            let mut d = slots.clone();
            d[i] ^= 0x10;
            assert_eq!(read_slot(&d, 1), SlotRead::Damaged, "flip at slot byte {}", i - SLOT_BYTES);
        }
        let exact = "x".repeat(SLOT_NAME_MAX);
        let long = "x".repeat(SLOT_NAME_MAX + 1);
        assert_eq!(Slot::new(&exact, 1, event([0; 16])).name(), Some(exact.as_bytes()));
        let long_slot = Slot::new(&long, 1, event([0; 16]));
        assert_eq!(long_slot.name(), None);
        write_slot(&mut slots, 0, &long_slot);
        assert_eq!(read_slot(&slots, 0), SlotRead::Used(long_slot));
    }

    #[test]
    fn hash_bits_mask_the_hash() {
        assert!(stream_hash("a", 1, 3) < 8);
        assert_ne!(stream_hash("a", 1, 64), stream_hash("a", 2, 64));
    }
}
