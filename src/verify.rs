//! [`Store::verify`](crate::Store::verify): reads the whole log with `pread` (so a disk error is an `Err`, not a
//! SIGBUS) and checks every frame, every segment's footer, every index file's checksum, and that the index puts
//! every event exactly where it is. Open does not do this for the indexed part of the log (its time would grow
//! with the store); this is the on-demand check.

use crate::format::segment_header;
use crate::log::recovery::{self, Stop};
use crate::log::Location;
use crate::store::Shared;
use crate::{Error, Result};

/// What [`Store::verify`](crate::Store::verify) checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Segment files read.
    pub segments: u64,
    /// Events whose frames were read and checked.
    pub events: u64,
    /// Chunk index files checked.
    pub index_chunks: u64,
    /// Events checked against the index files.
    pub indexed_events: u64,
    /// Locations copied into later index entries (each stream's recent events) checked against the log.
    pub copied_locations: u64,
    /// Stream directory slots checked: each one's checksum, and that the event it names is in the log where it
    /// says, with its stream, position, version and id, and is the newest of the chunk entry it names.
    pub directory_slots: u64,
}

/// Directory slots checked per hold of the state read lock (the indexer changes slots under the write lock, and
/// every append takes it to record its events): a used slot costs a frame's checksum and a few cache misses,
/// about 0.3 us, so appends wait at most some 100 us for a batch.
const SLOTS_PER_LOCK: usize = 256;

pub(crate) fn verify(shared: &Shared) -> Result<VerifyReport> {
    let head = shared.head();
    let (segments, chunks) = {
        let state = shared.state();
        (state.log.segments().to_vec(), state.index.chunks())
    };
    let mut report = VerifyReport {
        segments: 0,
        events: 0,
        index_chunks: chunks.len() as u64,
        indexed_events: 0,
        copied_locations: 0,
        directory_slots: 0,
    };
    let mut position = 0u64;
    let mut chunk_at = 0usize;
    for (i, segment) in segments.iter().enumerate() {
        if segment.first_position() != position {
            return Err(Error::corrupt(
                segment.path(),
                0,
                format!("segment starts at position {}, expected {position}", segment.first_position()),
            ));
        }
        let is_last = i + 1 == segments.len();
        let scan = recovery::scan_segment(segment, segment_header::SIZE_BYTES as u64, position, |ev| {
            let p = ev.frame.position;
            if p >= head {
                return Ok(());
            }
            while chunk_at < chunks.len() && chunks[chunk_at].end_position() <= p {
                chunk_at += 1;
            }
            if let Some(chunk) = chunks.get(chunk_at).filter(|c| c.first_position() <= p) {
                let state = shared.state();
                let at = Location::new(i as u32, ev.offset as u32);
                if let Some(why) = state.index.check_event(&state.log, chunk, p, ev.stream, ev.frame.version, at)? {
                    return Err(Error::corrupt(chunk.path(), 0, format!("index disagrees with the log: {why}")));
                }
                report.indexed_events += 1;
            }
            Ok(())
        })?;
        report.segments += 1;
        report.events += scan.next_position - position;
        position = scan.next_position;
        if !is_last && !scan.sealed {
            let (offset, why) = scan.stop.clone().unwrap_or((scan.end_offset, Stop::Empty));
            return Err(Error::corrupt(segment.path(), offset, format!("segment is not sealed: {why:?}")));
        }
        if is_last && position < head {
            let (offset, why) = scan.stop.clone().unwrap_or((scan.end_offset, Stop::Empty));
            return Err(Error::corrupt(
                segment.path(),
                offset,
                format!("the log holds positions up to {position}, the store has acknowledged up to {head}: {why:?}"),
            ));
        }
    }
    // The copies of earlier locations in each entry: the log is known good now, so they are checked against it.
    for chunk in &chunks {
        let state = shared.state();
        match state.index.check_recent(&state.log, chunk)? {
            Ok(n) => report.copied_locations += n,
            Err(why) => return Err(Error::corrupt(chunk.path(), 0, format!("index disagrees with the log: {why}"))),
        }
    }
    report.directory_slots = verify_directory(shared)?;
    // Chunks past what the scan covered would claim events the log does not hold.
    if let Some(last) = chunks.last() {
        if last.end_position() > position {
            return Err(Error::corrupt(
                last.path(),
                0,
                format!("index covers positions up to {}, the log holds up to {position}", last.end_position()),
            ));
        }
    }
    Ok(report)
}

/// Checks every slot of the stream directory, a batch per hold of the state lock; returns the used slots. The
/// indexer goes on between batches, so slots may be added behind the walk, and growth (a new table copied from
/// the old one) starts the walk again.
fn verify_directory(shared: &Shared) -> Result<u64> {
    let mut used = 0;
    let mut from = 0;
    let mut table = None;
    loop {
        let state = shared.state();
        let (n, slot_count) = state.index.check_slots(&state.log, from, SLOTS_PER_LOCK)?;
        if table.replace(slot_count).is_some_and(|t| t != slot_count) {
            (used, from) = (0, 0);
            continue;
        }
        used += n;
        from += SLOTS_PER_LOCK;
        if from >= slot_count {
            return Ok(used);
        }
    }
}
