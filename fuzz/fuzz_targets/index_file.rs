//! The index file decoders on arbitrary bytes: `decode_chunk_header` (with and without the checksum check) and
//! `DirectoryHeader::decode` never panic, and what they accept is safe to use as the store uses it: every stream
//! entry of a chunk, its event offsets when the entry says they are in range, the sparse map, and the slots of a
//! directory. Each input is also tried with its checksums made valid, so the checks behind them are reached.
#![no_main]

use annals::format::index::{
    chunk_stream, chunk_stream_hash, decode_chunk_header, read_slot, seal_slot, write_slot, DirectoryHeader,
    SlotRead, CHUNK_HEADER_BYTES, CHUNK_STREAM_BYTES, DIRECTORY_HEADER_BYTES, DIRECTORY_VERSION, SLOT_BYTES,
    SLOT_NAME_MAX,
};
use libfuzzer_sys::fuzz_target;

/// Directories claiming up to this many slots (log2) are built at their full size from the input.
const MAX_SLOTS_LOG2: u32 = 14;

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn chunk(b: &[u8]) {
    let unverified = decode_chunk_header(b, false);
    let verified = decode_chunk_header(b, true);
    if let Ok(h) = &verified {
        assert_eq!(unverified.as_ref(), Ok(h), "a checksum-valid chunk decodes the same without the check");
    }
    let Ok(h) = unverified else { return };
    let l = h.layout();
    let (streams_at, offsets_at, recent_at, sparse_at, end) = (l.streams, l.offsets, l.recent, l.sparse, l.end);
    assert_eq!(end as u64, h.file_bytes);
    assert_eq!(end, b.len(), "an accepted chunk header describes exactly the file");
    assert_eq!(streams_at, CHUNK_HEADER_BYTES);
    assert!(streams_at + h.stream_count as usize * CHUNK_STREAM_BYTES <= offsets_at);
    assert!(h.stream_count as u64 <= h.events() && h.events() > 0);
    for i in 0..h.stream_count as usize {
        let s = chunk_stream(b, i);
        assert_eq!(chunk_stream_hash(b, i), s.hash);
        // The store reads an entry's offsets only when they are inside the offsets array (chunks::find_stream).
        if s.count > 0 && s.events_at as u64 + s.count as u64 <= h.events() {
            for k in 0..s.count as usize {
                let _ = read_u32(b, offsets_at + (s.events_at as usize + k) * 4);
            }
        }
    }
    for k in 0..h.recent_count as usize {
        let _ = u64::from_le_bytes(b[recent_at + k * 8..recent_at + k * 8 + 8].try_into().unwrap());
    }
    for k in 0..h.sparse_count() as usize {
        let _ = read_u32(b, sparse_at + k * 4);
    }
}

fn directory(b: &[u8]) {
    let Ok(h) = DirectoryHeader::decode(b) else { return };
    assert_eq!(h.file_bytes(), b.len() as u64, "an accepted directory header describes exactly the file");
    assert!(h.used <= h.slot_count() && h.synced_through <= h.applied_through);
    let slots = &b[DIRECTORY_HEADER_BYTES..];
    let mut one = vec![0u8; SLOT_BYTES];
    for i in 0..h.slot_count() as usize {
        // A slot that passes its checksum holds a name of at most SLOT_NAME_MAX bytes, and writing what was read
        // gives the same slot back.
        if let SlotRead::Used(s) = read_slot(slots, i) {
            assert!(s.name().is_none_or(|n| n.len() <= SLOT_NAME_MAX));
            write_slot(&mut one, 0, &s);
            assert_eq!(read_slot(&one, 0), SlotRead::Used(s), "slot {i} round-trips");
        }
    }
    let mut again = b.to_vec();
    h.encode_into(&mut again[..DIRECTORY_HEADER_BYTES]);
    assert_eq!(DirectoryHeader::decode(&again), Ok(h), "a decoded header re-encodes to the same header");
}

/// Writes the CRC-32 of `b[12..end]` at offset 8, as the encoders do.
fn fix_checksum(b: &mut [u8], end: usize) {
    let crc = crc32fast::hash(&b[12..end]);
    b[8..12].copy_from_slice(&crc.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    chunk(data);
    directory(data);
    if data.len() >= CHUNK_HEADER_BYTES {
        let mut b = data.to_vec();
        fix_checksum(&mut b, data.len());
        chunk(&b);
    }
    // A directory built from the input: its header page (zero-padded), at the size the header claims if that is
    // small enough, with the current version and the header checksum made valid; the rest of the input fills the
    // slots, each with its checksum made valid too.
    if data.len() >= 24 {
        let log2 = read_u32(data, 16);
        let slots = if (4..=MAX_SLOTS_LOG2).contains(&log2) { 1usize << log2 } else { 16 };
        let mut b = vec![0u8; DIRECTORY_HEADER_BYTES + slots * SLOT_BYTES];
        let n = data.len().min(b.len());
        b[..n].copy_from_slice(&data[..n]);
        b[12..16].copy_from_slice(&DIRECTORY_VERSION.to_le_bytes());
        fix_checksum(&mut b, 128);
        for i in 0..slots {
            seal_slot(&mut b[DIRECTORY_HEADER_BYTES..], i);
        }
        directory(&b);
    }
});
