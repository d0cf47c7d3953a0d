//! The log writer: encodes an append straight into a writable shared mapping of the tail segment (a window that
//! moves forward as appends go), rolls and seals segments, and writes the clean-close marker.
//!
//! The writer is owned by the store behind a mutex; it is the only code that writes segment files. It knows
//! nothing of streams or expected versions (the store decides what to write) nor of syncing (the group commit
//! in [`super::commit`] decides when). Copying into a shared mapping of a pre-zeroed segment puts the bytes in
//! the page cache at once, so they survive a crash of the process, without a system call per append.
//!
//! Failures come in two kinds (RELIABILITY.md rule 5): preparing a new segment fails before any byte of the
//! append is written ([`WriteFailure::NotWritten`], the store stays usable), while a failed write or sync of
//! log data leaves the outcome unknown ([`WriteFailure::Poisoning`], the store must be reopened). Stores into
//! the mapping cannot fail (the blocks were allocated by the zero fill); a device error surfaces at the sync.

use std::path::PathBuf;
use std::sync::Arc;

use crate::event::NewEvent;
use crate::format::frame::{self, EventFields, FrameKind, HEADER_BYTES};
use crate::format::segment_header;
use crate::fs::{FileSystem, MappingMut};
use crate::limits::{self, SEGMENT_FILL_CHUNK_BYTES};
use crate::log::preparer::Preparer;
use crate::log::segment::{Segment, ZeroSync};
use crate::log::Location;
use crate::{Error, Result};

/// Bytes kept free at the end of every segment: room for a clean-close marker and a footer.
pub const TAIL_RESERVE_BYTES: u64 = 2 * HEADER_BYTES as u64;

/// How an append failed.
#[derive(Debug)]
pub enum WriteFailure {
    /// Nothing of the append was written; the store is still usable.
    NotWritten(Error),
    /// A write or sync of log data failed: the outcome is unknown and the store must be poisoned.
    Poisoning(std::io::Error),
}

/// One stream's events in an append, with the version its first event gets.
pub struct PlannedPart<'a> {
    pub stream: &'a str,
    pub first_version: u64,
    pub events: &'a [NewEvent],
}

/// Where an append's events went: its frames lie back to back from `first`, in the order of the parts and
/// their events, each [`frame::event_frame_bytes`] long.
pub struct Written {
    /// The position of the append's first event.
    pub first_position: u64,
    /// The location of the append's first frame.
    pub first: Location,
    /// A segment created for this append, which readers must be told about.
    pub new_segment: Option<Arc<Segment>>,
}

/// The segment appends go to, with its writable window.
struct Tail {
    segment: Arc<Segment>,
    /// A writable mapping of [`WRITE_WINDOW_BYTES`] (or more) of the segment, with the offset of its first byte:
    /// mapped on first use and moved forward as the appends go.
    ///
    /// Not the whole segment: a sync must write-protect every page of a writable mapping that it cleans, one TLB
    /// shootdown (an interprocessor interrupt) per page while another thread of the process runs on another
    /// core. Pages the writer has moved past are unmapped (one shootdown for the whole window), so a sync of
    /// them finds no mapping to clean. Measured here: a quarter of W4's time went to those shootdowns.
    window: Option<Window>,
}

/// A writable mapping of `len` bytes of a segment from offset `at`.
struct Window {
    at: u64,
    len: u64,
    map: Box<dyn MappingMut>,
}

/// The size (and alignment) of the writer's writable window.
const WRITE_WINDOW_BYTES: u64 = 1 << 20;

const _: () = assert!(WRITE_WINDOW_BYTES.is_multiple_of(crate::fs::MAP_ALIGN_BYTES));

impl Tail {
    fn new(segment: Arc<Segment>) -> Tail {
        Tail { segment, window: None }
    }
}

impl Window {
    /// Bytes `start..end` of `segment`, writable: through the window in `slot`, moved there first if it does not
    /// cover them.
    fn bytes_mut<'a>(
        slot: &'a mut Option<Window>,
        segment: &Segment,
        start: u64,
        end: u64,
    ) -> std::io::Result<&'a mut [u8]> {
        if !slot.as_ref().is_some_and(|w| w.at <= start && end - w.at <= w.len) {
            // Unmap the old window before mapping the next.
            *slot = None;
            let at = start / WRITE_WINDOW_BYTES * WRITE_WINDOW_BYTES;
            let len = ((end - at).div_ceil(WRITE_WINDOW_BYTES) * WRITE_WINDOW_BYTES).min(segment.len_bytes() - at);
            let map = segment.file().map_mut(at, usize::try_from(len).map_err(std::io::Error::other)?)?;
            *slot = Some(Window { at, len, map });
        }
        let Some(w) = slot.as_mut() else { unreachable!("mapped above") };
        Ok(&mut w.map.bytes_mut()[(start - w.at) as usize..(end - w.at) as usize])
    }
}

pub struct Writer {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment_bytes: u64,
    /// `None` before the first segment exists or after the tail was sealed.
    tail: Option<Tail>,
    /// Where the next frame goes in the tail.
    offset: u64,
    /// The position the next event gets.
    next_position: u64,
    /// The number the next segment gets.
    next_segment_number: u64,
    /// Makes the next segment's file ahead of time.
    preparer: Preparer,
    /// Whether preparation of the next segment was requested for the current tail.
    next_requested: bool,
    /// How appends reach the page cache: stores into the shared mapping (no system call: `Buffered`), or
    /// encoded into a buffer that [`Writer::flush`] writes with one `pwrite` (`Sync`: measured faster here when
    /// every append is followed by a sync, as a store into a page that the last sync cleaned takes a
    /// write-protect fault and the sync must find and clean mapped pages again).
    store_through_map: bool,
    /// The encoding buffer of the `pwrite` path.
    buf: Vec<u8>,
    /// The `pwrite` path's appends not yet written to the file: the frames for the tail segment's bytes
    /// `offset - unflushed..offset`, in `buf[..unflushed]`. Nothing reads them from the file before the sync
    /// that makes them durable, and that sync's leader flushes first ([`Writer::flush`]); the one reader that
    /// may look earlier (an idempotent retry's check, under the writer lock) reads them here
    /// ([`Writer::unflushed`]). So a group of appends costs one `pwrite`, not one each under the writer lock.
    unflushed: usize,
}

/// The appends a [`Writer`] holds that are not yet in the file: the tail segment's number, the offset of the
/// first byte, and the bytes.
#[derive(Clone, Copy)]
pub struct Unflushed<'a> {
    segment: u32,
    offset: u64,
    bytes: &'a [u8],
}

impl<'a> Unflushed<'a> {
    /// The bytes from `offset` of `segment` to the end of what is held, if they are held here.
    pub fn at(&self, segment: u32, offset: u64) -> Option<&'a [u8]> {
        let from = offset.checked_sub(self.offset).filter(|_| segment == self.segment)?;
        self.bytes.get(from as usize..).filter(|b| !b.is_empty())
    }
}

/// The `pwrite` buffer is kept between appends up to this size.
const BUF_KEEP_BYTES: usize = 4 << 20;

/// The bytes an append of these parts takes in a segment.
pub fn encoded_bytes(parts: &[PlannedPart<'_>]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.events.iter().map(move |e| (p.stream.len(), e)))
        .map(|(s, e)| frame::event_frame_bytes(s, e.event_type().len(), e.metadata().len(), e.payload().len()) as u64)
        .sum()
}

impl Writer {
    /// A writer continuing after recovery. `tail` is the open segment with its append `offset`, or `None` if the
    /// newest segment is sealed (or there is none).
    pub fn new(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        segment_bytes: u64,
        tail: Option<(Arc<Segment>, u64)>,
        next_position: u64,
        next_segment_number: u64,
        store_through_map: bool,
    ) -> Result<Writer> {
        let (tail, offset) = match tail {
            Some((segment, offset)) => {
                assert!(offset + HEADER_BYTES as u64 <= segment.len_bytes(), "recovery leaves room for a footer");
                (Some(Tail::new(segment)), offset)
            }
            None => (None, 0),
        };
        let preparer = Preparer::new(fs.clone(), dir.clone(), zero_sync(store_through_map));
        let mut w = Writer {
            fs,
            dir,
            segment_bytes,
            tail,
            offset,
            next_position,
            next_segment_number,
            preparer,
            next_requested: false,
            store_through_map,
            buf: Vec::new(),
            unflushed: 0,
        };
        w.maybe_prepare_next();
        Ok(w)
    }

    /// Starts preparing the next segment once the tail is half full.
    /// Without a tail segment (a new store, or a sealed newest segment), starts at once, so the first append
    /// need not wait for a file to be made.
    fn maybe_prepare_next(&mut self) {
        if self.next_requested {
            return;
        }
        let due = match &self.tail {
            Some(tail) => self.offset * 2 >= tail.segment.len_bytes(),
            None => true,
        };
        if due {
            self.next_requested = true;
            self.preparer.start(self.next_segment_bytes());
        }
    }

    /// The size of the next segment: segments start at the minimum size and double up to the configured size,
    /// so a small store stays small and a new store's first segment is quick to make.
    fn next_segment_bytes(&self) -> u64 {
        let previous = self.tail.as_ref().map_or(0, |t| t.segment.len_bytes());
        previous.saturating_mul(2).clamp(limits::SEGMENT_BYTES_MIN, self.segment_bytes.max(limits::SEGMENT_BYTES_MIN))
    }

    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The segment appends currently go to.
    pub fn tail_segment(&self) -> Option<&Arc<Segment>> {
        self.tail.as_ref().map(|t| &t.segment)
    }

    /// Writes the parts as one append (all-or-nothing after a crash), stamping its frames with the durable
    /// watermark `durable`. The bytes are in the page cache when this returns; they are not synced.
    pub fn append(&mut self, parts: &[PlannedPart<'_>], durable: u64) -> Result<Written, WriteFailure> {
        let batch_bytes = encoded_bytes(parts);
        let count: u64 = parts.iter().map(|p| p.events.len() as u64).sum();
        assert!(count > 0, "an append writes at least one event");
        assert!(durable <= self.next_position);
        let new_segment = self.make_room(batch_bytes, durable)?;
        let Some(tail) = self.tail.as_mut() else { unreachable!("make_room leaves a tail segment") };
        let start = self.offset as usize;
        let end = start + batch_bytes as usize;
        assert!(end as u64 + TAIL_RESERVE_BYTES <= tail.segment.len_bytes());

        let first_position = self.next_position;
        let batch_end = first_position + count;
        let timestamp_us = super::now_us();
        let hasher = tail.segment.hasher();
        let segment_number = u32::try_from(tail.segment.number()).expect("segment numbers fit in 32 bits");
        let bytes: &mut [u8] = if self.store_through_map {
            // Nothing is written yet if the window cannot be moved.
            Window::bytes_mut(&mut tail.window, &tail.segment, start as u64, end as u64)
                .map_err(|e| WriteFailure::NotWritten(e.into()))?
        } else {
            // After what is held already. Every byte is encoded below: the buffer is zeroed only when it grows.
            let (from, to) = (self.unflushed, self.unflushed + (end - start));
            if self.buf.len() < to {
                self.buf.resize(to, 0);
            }
            &mut self.buf[from..to]
        };
        let mut at = 0usize;
        let mut position = first_position;
        for part in parts {
            for (i, e) in part.events.iter().enumerate() {
                let len = frame::event_frame_bytes(
                    part.stream.len(),
                    e.event_type().len(),
                    e.metadata().len(),
                    e.payload().len(),
                );
                frame::encode_event_with(
                    &mut bytes[at..at + len],
                    hasher,
                    &EventFields {
                        position,
                        batch_end,
                        durable,
                        version: part.first_version + i as u64,
                        timestamp_us,
                        id: *e.id().as_bytes(),
                        stream: part.stream.as_bytes(),
                        event_type: e.event_type().as_bytes(),
                        metadata: e.metadata(),
                        payload: e.payload(),
                    },
                );
                at += len;
                position += 1;
            }
        }
        debug_assert_eq!(at as u64, batch_bytes);
        if !self.store_through_map {
            self.unflushed += end - start;
        }
        self.offset = end as u64;
        self.next_position = batch_end;
        self.maybe_prepare_next();
        Ok(Written { first_position, first: Location::new(segment_number, start as u32), new_segment })
    }

    /// Ensures the tail segment has room for `batch_bytes` plus the reserve, creating a new segment (and
    /// sealing the old one) if not. Returns the new segment, if one was made. `durable` is the durable
    /// watermark: every position below it is on stable storage.
    fn make_room(&mut self, batch_bytes: u64, durable: u64) -> Result<Option<Arc<Segment>>, WriteFailure> {
        if let Some(tail) = &self.tail {
            if self.offset + batch_bytes + TAIL_RESERVE_BYTES <= tail.segment.len_bytes() {
                return Ok(None);
            }
        }
        let needed = segment_header::SIZE_BYTES as u64 + batch_bytes + TAIL_RESERVE_BYTES;
        let chunk = SEGMENT_FILL_CHUNK_BYTES as u64;
        let size = self.next_segment_bytes().max(needed.div_ceil(chunk) * chunk);
        // Everything written to the old tail must be durable before the next segment exists: recovery takes a
        // later segment as proof that the old one ends where the next begins, so a power loss after the install
        // must not be able to drop the old tail's last appends (Buffered appends, or a concurrent appender's not
        // yet synced). A failed sync of log data poisons. When every position written is durable already (a lone
        // `Sync` writer's roll), there is nothing to sync, and the sync would still cost a cache flush.
        if durable < self.next_position {
            self.sync_tail().map_err(WriteFailure::Poisoning)?;
        }
        // Preparing the new segment writes nothing of the log: its failure (ENOSPC, say) leaves the store usable.
        let (number, first) = (self.next_segment_number, self.next_position);
        let segment = match self.preparer.take(size) {
            Some(blank) => Segment::install(&*self.fs, &self.dir, blank, number, first, random_salt()),
            None => Segment::create(
                &*self.fs,
                &self.dir,
                number,
                first,
                size,
                random_salt(),
                zero_sync(self.store_through_map),
            ),
        }
        .map_err(WriteFailure::NotWritten)?;
        let segment = Arc::new(segment);
        // Sealing the old segment writes log data: its failure poisons.
        self.seal_tail().map_err(WriteFailure::Poisoning)?;
        self.tail = Some(Tail::new(segment.clone()));
        self.offset = segment_header::SIZE_BYTES as u64;
        self.next_segment_number += 1;
        self.next_requested = false;
        Ok(Some(segment))
    }

    /// Writes the appends held in the buffer to the tail segment with one `pwrite` (they are then in the page
    /// cache, not synced). A failure leaves their outcome unknown: the caller poisons the store.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.unflushed == 0 {
            return Ok(());
        }
        let Some(tail) = &self.tail else { unreachable!("held appends belong to the tail segment") };
        let start = self.offset - self.unflushed as u64;
        tail.segment.file().write_all_at(&self.buf[..self.unflushed], start)?;
        self.unflushed = 0;
        if self.buf.capacity() > BUF_KEEP_BYTES {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// The appends held in the buffer, not yet in the file ([`Writer::flush`]).
    pub fn unflushed(&self) -> Option<Unflushed<'_>> {
        let tail = self.tail.as_ref().filter(|_| self.unflushed > 0)?;
        Some(Unflushed {
            segment: u32::try_from(tail.segment.number()).expect("segment numbers fit in 32 bits"),
            offset: self.offset - self.unflushed as u64,
            bytes: &self.buf[..self.unflushed],
        })
    }

    /// Writes a header-only frame at the append offset.
    fn write_marker(&mut self, kind: FrameKind) -> std::io::Result<()> {
        self.flush()?;
        let Some(tail) = self.tail.as_mut() else { return Ok(()) };
        let count = self.next_position - tail.segment.first_position();
        let salt = tail.segment.salt();
        let timestamp_us = super::now_us();
        if self.store_through_map {
            let out =
                Window::bytes_mut(&mut tail.window, &tail.segment, self.offset, self.offset + HEADER_BYTES as u64)?;
            frame::encode_marker_into(out, salt, kind, self.next_position, count, timestamp_us);
        } else {
            // As the frames: mapping a window of the file to store 64 bytes would make the sync that follows
            // write-protect it again.
            let mut out = [0u8; HEADER_BYTES];
            frame::encode_marker_into(&mut out, salt, kind, self.next_position, count, timestamp_us);
            tail.segment.file().write_all_at(&out, self.offset)?;
        }
        self.offset += HEADER_BYTES as u64;
        Ok(())
    }

    /// Makes everything written to the tail segment durable, the appends held in the buffer included.
    fn sync_tail(&mut self) -> std::io::Result<()> {
        self.flush()?;
        match &self.tail {
            Some(tail) => tail.segment.file().sync_data(),
            None => Ok(()),
        }
    }

    /// Writes the footer to the tail segment and syncs it. The tail is then sealed and immutable. Every frame
    /// before the footer must be durable already ([`Writer::sync_tail`]): the footer vouches for them, and a
    /// power loss during one sync can keep the footer and drop an earlier frame.
    fn seal_tail(&mut self) -> std::io::Result<()> {
        if self.tail.is_none() {
            return Ok(());
        }
        self.write_marker(FrameKind::Footer)?;
        let Some(tail) = self.tail.as_ref() else { unreachable!("checked above") };
        tail.segment.file().sync_data()?;
        self.tail = None;
        Ok(())
    }

    /// Writes the clean-close marker (everything before it is durable) and syncs. Called once, at close, when
    /// no append is in flight.
    pub fn close(&mut self) -> std::io::Result<()> {
        let Some(tail) = &self.tail else { return Ok(()) };
        let len = tail.segment.len_bytes();
        assert!(self.offset + HEADER_BYTES as u64 <= len, "room for a footer is always kept");
        // The marker (or footer) vouches for every frame before it: they must be durable before it is written,
        // or a power loss during the one sync could keep the marker and drop an earlier frame, which recovery
        // would then report as corruption.
        self.sync_tail()?;
        if self.offset + TAIL_RESERVE_BYTES > len {
            // No room for a marker and a later footer: seal instead; the footer vouches just the same.
            return self.seal_tail();
        }
        self.write_marker(FrameKind::CloseMarker)?;
        let Some(tail) = &self.tail else { unreachable!("checked above") };
        tail.segment.file().sync_data()
    }
}

/// How blank segment files are synced while they are zero-filled: paced where appends wait for syncs
/// (`Sync`, whose frames the writer stores with `pwrite`), at the end where they do not (`Buffered`, whose frames
/// it stores through the mapping).
fn zero_sync(store_through_map: bool) -> ZeroSync {
    if store_through_map {
        ZeroSync::AtEnd
    } else {
        ZeroSync::Paced
    }
}

/// A fresh random salt for a new segment file.
fn random_salt() -> u64 {
    let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
    high ^ low
}
