//! The scan at open: walks a segment's frames with `pread`, keeps only complete appends, and gathers what the
//! store needs to tell a torn tail from corruption (RELIABILITY.md rule 7; the table is in docs/DESIGN.md).
//!
//! The scan itself decides nothing about the store: it reports where valid data ends, why it stopped, whether a
//! later valid frame vouches that the stopping point was durable, and where the last nonzero byte is. The
//! caller ([`crate::store`]) turns that into "cut the torn tail" or "report corruption". Reading goes through
//! `pread` (never the mapping), so a disk error during recovery is an `Err`, not a SIGBUS.

use std::io;

use crate::format::frame::{self, Frame, FrameKind, HEADER_BYTES};
use crate::format::{segment_header, FRAME_ALIGN_BYTES};
use crate::fs::FileHandle;
use crate::limits;
use crate::log::segment::Segment;

const WINDOW_BYTES: usize = 4 << 20;

/// A sliding `pread` buffer over a file.
struct Window<'a> {
    file: &'a dyn FileHandle,
    file_len: u64,
    buf: Vec<u8>,
    start: u64,
}

impl<'a> Window<'a> {
    fn new(file: &'a dyn FileHandle, file_len: u64) -> Window<'a> {
        Window { file, file_len, buf: Vec::new(), start: 0 }
    }

    /// Up to `n` bytes at `offset` (fewer only at the end of the file).
    fn get(&mut self, offset: u64, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.file_len.saturating_sub(offset) as usize);
        let have = offset >= self.start && offset + n as u64 <= self.start + self.buf.len() as u64;
        if !have {
            let want = n.max(WINDOW_BYTES).min(self.file_len.saturating_sub(offset) as usize);
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, offset)?;
            self.start = offset;
        }
        let at = (offset - self.start) as usize;
        Ok(&self.buf[at..at + n])
    }
}

/// Why the scan of a segment stopped before a footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// No frame here: the length field is zero.
    Empty,
    /// The bytes here are not a valid frame (bad length, layout or checksum; runs past the file end).
    Invalid(String),
    /// A frame with a valid checksum that does not belong here (wrong position, batch, or kind). Always
    /// corruption (RELIABILITY.md rule 3).
    Misplaced(String),
}

/// What the scan of one segment found.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Offset just past the last complete append, marker or footer: where the next frame goes.
    pub end_offset: u64,
    /// The position the next event gets.
    pub next_position: u64,
    /// A footer ended the segment.
    pub sealed: bool,
    /// Number of events kept.
    pub events: u64,
    /// Why and where the scan stopped, if not at a footer.
    pub stop: Option<(u64, Stop)>,
    /// End of the last 16-byte slot at or after `end_offset` that holds a nonzero byte (`end_offset` if none).
    pub nonzero_end: u64,
    /// A valid frame after `end_offset` that says `next_position` was durable: (its offset, its watermark).
    pub vouched_by: Option<(u64, u64)>,
}

/// One event of a complete append, handed to the caller in log order.
pub struct ScannedEvent<'a> {
    pub frame: &'a Frame,
    pub stream: &'a str,
    pub offset: u64,
}

/// Scans `segment` from the frame at `from_offset`, which must hold position `from_position` (the segment's
/// first frame and position, or where the stream index ends). `on_event` receives every event of every complete
/// append, in order; an error it returns stops the scan and is returned as is.
pub fn scan_segment(
    segment: &Segment,
    from_offset: u64,
    from_position: u64,
    mut on_event: impl FnMut(ScannedEvent<'_>) -> crate::Result<()>,
) -> crate::Result<Scan> {
    let file_len = segment.len_bytes();
    let salt = segment.salt();
    let first_position = segment.first_position();
    let mut window = Window::new(segment.file(), file_len);
    let mut offset = from_offset.max(segment_header::SIZE_BYTES as u64);
    let mut position = from_position;
    let mut scan = Scan {
        end_offset: offset,
        next_position: position,
        sealed: false,
        events: 0,
        stop: None,
        nonzero_end: offset,
        vouched_by: None,
    };
    // The append being read: its batch end and its events so far (frame, stream name, offset).
    let mut batch_end: Option<u64> = None;
    let mut pending: Vec<(Frame, String, u64)> = Vec::new();

    let stop = loop {
        if offset + HEADER_BYTES as u64 > file_len {
            break Stop::Invalid("no room for a frame before the end of the file".into());
        }
        let len = match frame::peek_frame_bytes(window.get(offset, HEADER_BYTES)?) {
            Some(0) => break Stop::Empty,
            Some(len) => len as usize,
            None => break Stop::Invalid("short read".into()),
        };
        if len > frame::FRAME_BYTES_MAX || offset + len as u64 > file_len {
            break Stop::Invalid(format!("frame length {len} runs past the end of the segment"));
        }
        let bytes = window.get(offset, len)?;
        let f = match frame::decode(bytes, salt) {
            Ok(f) => f,
            Err(e) => break Stop::Invalid(e.to_string()),
        };
        if f.position != position {
            break Stop::Misplaced(format!("frame has position {}, expected {position}", f.position));
        }
        match f.kind {
            FrameKind::Event => {
                match batch_end {
                    None => {
                        if f.batch_end - f.position > limits::BATCH_EVENTS_MAX as u64 {
                            break Stop::Misplaced(format!(
                                "append of {} events is over the limit",
                                f.batch_end - f.position
                            ));
                        }
                        if f.durable > f.position {
                            break Stop::Misplaced(format!(
                                "durable watermark {} is past the frame's position",
                                f.durable
                            ));
                        }
                        batch_end = Some(f.batch_end);
                    }
                    Some(end) if end != f.batch_end => {
                        break Stop::Misplaced(format!(
                            "frame has batch end {}, its append ends at {end}",
                            f.batch_end
                        ));
                    }
                    Some(_) => {}
                }
                let names = &bytes[f.stream_at()..f.metadata_at()];
                let (stream, event_type) = names.split_at(f.stream_bytes as usize);
                let stream = match (std::str::from_utf8(stream), std::str::from_utf8(event_type)) {
                    (Ok(s), Ok(_)) => s.to_owned(),
                    _ => break Stop::Misplaced("stream name or event type is not UTF-8".into()),
                };
                pending.push((f, stream, offset));
                position += 1;
                offset += len as u64;
                if Some(position) == batch_end {
                    for (frame, stream, at) in pending.drain(..) {
                        on_event(ScannedEvent { frame: &frame, stream: &stream, offset: at })?;
                    }
                    scan.events += position - scan.next_position;
                    batch_end = None;
                    scan.end_offset = offset;
                    scan.next_position = position;
                }
            }
            FrameKind::CloseMarker | FrameKind::Footer => {
                if batch_end.is_some() {
                    break Stop::Misplaced(format!("{:?} inside an append", f.kind));
                }
                offset += len as u64;
                scan.end_offset = offset;
                if f.kind == FrameKind::Footer {
                    if f.version != position - first_position {
                        break Stop::Misplaced(format!(
                            "footer counts {} events, the segment holds {}",
                            f.version,
                            position - first_position
                        ));
                    }
                    scan.sealed = true;
                    scan.nonzero_end = offset;
                    return Ok(scan);
                }
            }
        }
    };
    // `offset` is where the damage or the end was met; an incomplete append before it is cut from
    // `end_offset`. Look past `end_offset` for vouching frames and for the extent of nonzero bytes.
    scan.stop = Some((offset, stop));
    let (nonzero_end, vouched_by) = look_past(&mut window, scan.end_offset, file_len, salt, scan.next_position)?;
    scan.nonzero_end = nonzero_end;
    scan.vouched_by = vouched_by;
    Ok(scan)
}

/// True if every byte is zero (eight at a time).
fn is_zero(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let mut acc = 0u64;
    for w in words.by_ref() {
        acc |= u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    }
    acc == 0 && words.remainder().iter().all(|&b| b == 0)
}

/// Walks every 16-byte slot from `from` to the end of the file: returns the end of the last slot holding a
/// nonzero byte, and the first valid frame whose durable watermark is above `position`.
fn look_past(
    window: &mut Window<'_>,
    from: u64,
    file_len: u64,
    salt: u64,
    position: u64,
) -> io::Result<(u64, Option<(u64, u64)>)> {
    let mut nonzero_end = from;
    let mut vouched_by = None;
    let mut candidates: Vec<u64> = Vec::new();
    let mut at = from;
    const CHUNK_BYTES: u64 = WINDOW_BYTES as u64;
    const BLOCK_BYTES: usize = 4096;
    while at < file_len {
        let n = (file_len - at).min(CHUNK_BYTES) as usize;
        candidates.clear();
        {
            let chunk = window.get(at, n)?;
            // Whole zero blocks are the common case (preallocated space): skip them a block at a time.
            for (b, block) in chunk.chunks(BLOCK_BYTES).enumerate() {
                if is_zero(block) {
                    continue;
                }
                for (i, slot) in block.chunks(FRAME_ALIGN_BYTES).enumerate() {
                    if is_zero(slot) {
                        continue;
                    }
                    let slot_at = at + (b * BLOCK_BYTES + i * FRAME_ALIGN_BYTES) as u64;
                    nonzero_end = slot_at + slot.len() as u64;
                    let len = frame::peek_frame_bytes(slot).unwrap_or(0) as usize;
                    let plausible = len >= HEADER_BYTES
                        && len.is_multiple_of(FRAME_ALIGN_BYTES)
                        && len <= frame::FRAME_BYTES_MAX
                        && slot_at + len as u64 <= file_len;
                    if plausible && vouched_by.is_none() {
                        candidates.push(slot_at);
                    }
                }
            }
        }
        for &slot_at in &candidates {
            if vouched_by.is_some() {
                break;
            }
            let len = frame::peek_frame_bytes(window.get(slot_at, FRAME_ALIGN_BYTES)?).unwrap_or(0) as usize;
            if let Ok(f) = frame::decode(window.get(slot_at, len)?, salt) {
                if f.durable > position {
                    vouched_by = Some((slot_at, f.durable));
                }
            }
        }
        at += n as u64;
    }
    Ok((nonzero_end, vouched_by))
}
