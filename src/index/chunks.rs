//! The chunk index files (`{first_position:020}.idx`): immutable, one per chunk of positions within a segment,
//! contiguous from position 0 to the indexed end. A file is mapped and verified (checksum, binding to its
//! segment, hash parameters) the first time it is used, not at open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use crate::format::index::{self, ChunkHeader, ChunkStream};
use crate::fs::{FileSystem, Mapping, OpenMode};
use crate::log::Location;
use crate::{Error, Result};

/// The file name of the chunk starting at `first_position`.
pub fn file_name(first_position: u64) -> String {
    format!("{first_position:020}.idx")
}

/// The first position in a chunk file name, if `name` is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".idx")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// In [`Expect::end_position`]: take the end from the file's header.
pub const ANY_END: u64 = u64::MAX;

/// What a chunk file must say about itself to be trusted.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub first_position: u64,
    pub end_position: u64,
    pub hash_key: u64,
    pub hash_bits: u32,
}

/// A chunk file's mapping and decoded header, or why it was refused.
type Opened = std::result::Result<(Arc<dyn Mapping>, ChunkHeader), String>;

/// One chunk file, mapped on first use.
pub struct Chunk {
    path: PathBuf,
    expect: Expect,
    mapped: OnceLock<Opened>,
}

impl Chunk {
    pub fn new(path: PathBuf, expect: Expect) -> Chunk {
        Chunk { path, expect, mapped: OnceLock::new() }
    }

    /// A chunk whose file was just written or verified: `bytes` is its mapping.
    pub fn verified(path: PathBuf, expect: Expect, map: Arc<dyn Mapping>, header: ChunkHeader) -> Chunk {
        let c = Chunk::new(path, expect);
        let _ = c.mapped.set(Ok((map, header)));
        c
    }

    pub fn first_position(&self) -> u64 {
        self.expect.first_position
    }

    pub fn end_position(&self) -> u64 {
        self.expect.end_position
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mapped, verified file. `segment_of` gives (first position, salt) of a segment by number, for the
    /// binding check.
    pub fn get(
        &self,
        fs: &dyn FileSystem,
        segment_of: impl Fn(u64) -> Option<(u64, u64)>,
    ) -> Result<(&[u8], &ChunkHeader)> {
        let r = self.mapped.get_or_init(|| open_verified(fs, &self.path, self.expect, &segment_of));
        match r {
            Ok((map, h)) => Ok((map.bytes(), h)),
            Err(why) => Err(Error::corrupt(
                &self.path,
                0,
                format!("index file is damaged or stale ({why}); it is rebuilt from the log at the next open"),
            )),
        }
    }
}

/// Maps and checks a chunk file against what the store expects of it.
pub fn open_verified(
    fs: &dyn FileSystem,
    path: &Path,
    expect: Expect,
    segment_of: &dyn Fn(u64) -> Option<(u64, u64)>,
) -> Opened {
    let file = fs.open(path, OpenMode::Read).map_err(|e| e.to_string())?;
    let map = file.map().map_err(|e| e.to_string())?;
    let h = index::decode_chunk_header(map.bytes(), true).map_err(|e| e.to_string())?;
    let end_ok = expect.end_position == ANY_END || h.end_position == expect.end_position;
    if h.first_position != expect.first_position || !end_ok {
        return Err(format!(
            "covers positions {}..{}, expected {}..{}",
            h.first_position, h.end_position, expect.first_position, expect.end_position
        ));
    }
    if h.hash_key != expect.hash_key || h.hash_bits != expect.hash_bits {
        return Err("written with other hash parameters".into());
    }
    match segment_of(h.segment_number) {
        Some((first, salt)) if first == h.segment_first_position && salt == h.segment_salt => {}
        _ => return Err("does not belong to the segment that holds its positions".into()),
    }
    Ok((map, h))
}

/// The stream entry for `hash` in a chunk whose first event is `name` (checked by `is_it` on the entry's first
/// offset), if any.
pub fn find_stream(
    bytes: &[u8],
    h: &ChunkHeader,
    hash: u64,
    mut is_it: impl FnMut(u32) -> Result<bool>,
) -> Result<Option<(u32, ChunkStream)>> {
    let offsets_at = h.layout().offsets;
    find_with_hash(bytes, h, hash, |s| is_it(crate::format::read_u32(bytes, offsets_at + s.events_at as usize * 4)))
}

/// Where the last search of a chunk ended, so that the next search for a hash at least as large starts there:
/// a caller looking up many streams of one chunk in hash order (the indexer, for each stream's previous entry)
/// then moves forward a few entries at a time instead of crossing the whole chunk each time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SearchFloor {
    /// Every entry below `lo` hashes below `hash`.
    lo: usize,
    hash: u64,
}

/// The entry of the stream whose newest event in the chunk is at `last_position`, given that stream's `hash`.
/// A position names one event, so the entry is told apart from other streams with the same hash without
/// reading any frame. `floor` is where the previous search of this chunk ended (start with the default); it
/// speeds up searches in ascending hash order and is ignored by one for a smaller hash.
pub fn find_entry(
    bytes: &[u8],
    h: &ChunkHeader,
    hash: u64,
    last_position: u64,
    floor: &mut SearchFloor,
) -> Result<Option<(u32, ChunkStream)>> {
    find_with_hash_from(bytes, h, hash, floor, |s| Ok(s.last_position == last_position))
}

/// The first entry with `hash` for which `is_it` holds, trying each entry with that hash in turn.
fn find_with_hash(
    bytes: &[u8],
    h: &ChunkHeader,
    hash: u64,
    is_it: impl FnMut(&ChunkStream) -> Result<bool>,
) -> Result<Option<(u32, ChunkStream)>> {
    find_with_hash_from(bytes, h, hash, &mut SearchFloor::default(), is_it)
}

fn find_with_hash_from(
    bytes: &[u8],
    h: &ChunkHeader,
    hash: u64,
    floor: &mut SearchFloor,
    mut is_it: impl FnMut(&ChunkStream) -> Result<bool>,
) -> Result<Option<(u32, ChunkStream)>> {
    let n = h.stream_count as usize;
    let start = if floor.hash <= hash && floor.lo <= n { *floor } else { SearchFloor::default() };
    let mut i =
        first_hash_at_least_from(|i| index::chunk_stream_hash(bytes, i), n, h.hash_bits, hash, start.lo, start.hash);
    *floor = SearchFloor { lo: i, hash };
    while i < n && index::chunk_stream_hash(bytes, i) == hash {
        let s = index::chunk_stream(bytes, i);
        if !fits(h, &s) {
            return Err(Error::corrupt(PathBuf::new(), 0, "index file stream entry out of range"));
        }
        if is_it(&s)? {
            return Ok(Some((i as u32, s)));
        }
        i += 1;
    }
    Ok(None)
}

/// [`first_hash_at_least_from`] over the whole chunk.
#[cfg(test)]
fn first_hash_at_least(hash_at: impl Fn(usize) -> u64, n: usize, hash_bits: u32, hash: u64) -> usize {
    first_hash_at_least_from(hash_at, n, hash_bits, hash, 0, 0)
}

/// The index of the first entry whose hash is at least `hash` (`stream_count` if none).
///
/// Entries are sorted by hash, and hashes are uniform (keyed xxh3), so a few interpolation steps land close
/// to it; a binary search over what is left finishes. Each probe of a chunk of tens of thousands of entries is
/// a cache (and often a TLB) miss: the indexer looks up every stream of a checkpoint in its previous chunk,
/// and at a million streams a binary search's 15 dependent misses were the largest part of its time.
/// `hash_at(i)` is entry `i`'s hash, for `i < n`; every hash fits in `hash_bits` bits.
///
/// The search starts knowing that every entry below `lo` hashes below `hash` and every entry from `lo` on
/// hashes at least `below` (0 and 0 know nothing).
fn first_hash_at_least_from(
    hash_at: impl Fn(usize) -> u64,
    n: usize,
    hash_bits: u32,
    hash: u64,
    lo: usize,
    below: u64,
) -> usize {
    const INTERPOLATION_STEPS: usize = 4;
    const SMALL: usize = 8;
    // Invariant: entries below `lo` hash below `hash`, entries from `hi` on hash at least `hash`; every hash
    // in between lies in [below, above].
    let (mut lo, mut hi) = (lo, n);
    let mut below = below;
    let mut above = if hash_bits >= 64 { u64::MAX } else { (1u64 << hash_bits) - 1 };
    for _ in 0..INTERPOLATION_STEPS {
        if hi - lo <= SMALL || hash <= below || hash > above {
            break;
        }
        let span = (above - below) as u128 + 1;
        let guess = lo + ((hash - below) as u128 * (hi - lo) as u128 / span) as usize;
        let guess = guess.min(hi - 1);
        let g = hash_at(guess);
        if g < hash {
            lo = guess + 1;
            below = g;
        } else {
            hi = guess;
            above = g;
        }
    }
    while lo < hi {
        let mid = (lo + hi) / 2;
        if hash_at(mid) < hash {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The `i`-th stream entry, checked to be in bounds and to be the stream with `hash` whose newest event in the
/// chunk is at `last_position` (what the entry pointing at it says).
pub fn entry_at(bytes: &[u8], h: &ChunkHeader, i: u32, hash: u64, last_position: u64) -> Option<ChunkStream> {
    if i >= h.stream_count {
        return None;
    }
    let s = index::chunk_stream(bytes, i as usize);
    (fits(h, &s) && s.hash == hash && s.last_position == last_position).then_some(s)
}

/// Starts loading the `i`-th stream entry (if the chunk has one), for a walk that reads it next.
pub fn prefetch_entry(bytes: &[u8], h: &ChunkHeader, i: u32) {
    if i < h.stream_count {
        crate::prefetch::range(bytes, index::CHUNK_HEADER_BYTES + i as usize * index::CHUNK_STREAM_BYTES, 1);
    }
}

/// Starts loading the entry's recent locations.
pub fn prefetch_recent(bytes: &[u8], h: &ChunkHeader, s: &ChunkStream) {
    let at = h.layout().recent + s.recent_at as usize * 8;
    crate::prefetch::range(bytes, at, s.recent_count as usize * 8);
}

/// The entry's events and recent locations lie inside the file's arrays.
fn fits(h: &ChunkHeader, s: &ChunkStream) -> bool {
    s.count > 0
        && s.events_at as u64 + s.count as u64 <= h.events()
        && s.recent_count as usize <= index::RECENT_MAX
        && s.recent_count as u64 <= s.first_version
        && s.recent_at as u64 + s.recent_count as u64 <= h.recent_count as u64
}

/// The entry's recent locations (the stream's events just before the chunk, oldest first) with version >=
/// `from_version`.
pub fn recent(bytes: &[u8], h: &ChunkHeader, s: &ChunkStream, from_version: u64, out: &mut Vec<Location>) {
    let recent_at = h.layout().recent;
    let first = s.first_version - s.recent_count as u64;
    let skip = from_version.saturating_sub(first).min(s.recent_count as u64) as usize;
    for i in skip..s.recent_count as usize {
        let l = crate::format::read_u64(bytes, recent_at + (s.recent_at as usize + i) * 8);
        out.push(Location::new((l >> 32) as u32, l as u32));
    }
}

/// The locations of the entry's events with version >= `from_version`.
pub fn locations(bytes: &[u8], h: &ChunkHeader, s: &ChunkStream, from_version: u64, out: &mut Vec<Location>) {
    let offsets_at = h.layout().offsets;
    let skip = from_version.saturating_sub(s.first_version).min(s.count as u64) as usize;
    let segment = h.segment_number as u32;
    for i in skip..s.count as usize {
        let off = crate::format::read_u32(bytes, offsets_at + (s.events_at as usize + i) * 4);
        out.push(Location::new(segment, off));
    }
}

/// The segment offset at or before `position`'s frame, from the chunk's sparse map.
pub fn seek(bytes: &[u8], h: &ChunkHeader, position: u64) -> Option<u32> {
    if position < h.first_position || position >= h.end_position {
        return None;
    }
    let sparse_at = h.layout().sparse;
    let k = ((position - h.first_position) / index::SPARSE_EVERY) as usize;
    Some(crate::format::read_u32(bytes, sparse_at + k * 4))
}

#[cfg(test)]
mod tests {
    use super::{first_hash_at_least, first_hash_at_least_from};

    /// splitmix64, for the test's hashes.
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn the_interpolation_search_finds_what_a_linear_scan_finds() {
        for (n, bits) in
            [(0usize, 64u32), (1, 64), (7, 64), (9, 64), (1000, 64), (35_000, 64), (1000, 2), (500, 0), (3000, 20)]
        {
            let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
            let mut hashes: Vec<u64> = (0..n as u64).map(|i| mix(i * 31 + n as u64) & mask).collect();
            hashes.sort_unstable();
            let mut targets: Vec<u64> =
                hashes.iter().flat_map(|&h| [h, h.wrapping_add(1), h.wrapping_sub(1)]).collect();
            targets.extend([0, 1, mask, mask / 2, u64::MAX]);
            targets.extend((0..200).map(|i| mix(i) & mask));
            for t in targets {
                let expected = hashes.iter().position(|&h| h >= t).unwrap_or(n);
                assert_eq!(first_hash_at_least(|i| hashes[i], n, bits, t), expected, "n {n}, bits {bits}, target {t}");
            }
        }
    }

    #[test]
    fn searches_in_ascending_order_from_the_last_one_find_what_a_linear_scan_finds() {
        for (n, bits, step) in [
            (0usize, 64u32, 1u64),
            (1, 64, 1),
            (9, 64, 1),
            (35_000, 64, 7),
            (35_000, 64, 301),
            (3000, 2, 1),
            (3000, 20, 3),
        ] {
            let mask = if bits >= 64 { u64::MAX } else { (1u64 << bits) - 1 };
            let mut hashes: Vec<u64> = (0..n as u64).map(|i| mix(i * 17 + 3) & mask).collect();
            hashes.sort_unstable();
            // Every `step`-th hash, each also as its neighbours, plus the ends: ascending, with repeats.
            let mut targets: Vec<u64> = hashes
                .iter()
                .step_by(step as usize)
                .flat_map(|&h| [h.saturating_sub(1), h, h, h.saturating_add(1)])
                .collect();
            targets.extend([0, mask]);
            targets.sort_unstable();
            let (mut lo, mut below) = (0usize, 0u64);
            for t in targets {
                let expected = hashes.iter().position(|&h| h >= t).unwrap_or(n);
                let found = first_hash_at_least_from(|i| hashes[i], n, bits, t, lo, below);
                assert_eq!(found, expected, "n {n}, bits {bits}, step {step}, target {t}");
                (lo, below) = (found, t);
            }
        }
    }
}
