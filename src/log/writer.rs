//! The log writer: encodes an append into one buffer, writes it with one `write`, syncs it, rolls and seals
//! segments, and writes the clean-close marker.
//!
//! The writer is owned by the store behind a mutex; it is the only code that writes segment files. It knows
//! nothing of streams or expected versions: the store decides what to write, the writer decides where.
//! Failures come in two kinds (RELIABILITY.md rule 5): preparing a new segment fails before any byte of the
//! append is written ([`WriteFailure::NotWritten`], the store stays usable), while a failed write or sync of
//! log data leaves the outcome unknown ([`WriteFailure::Poisoning`], the store must be reopened).

use std::path::PathBuf;
use std::sync::Arc;

use crate::event::NewEvent;
use crate::format::frame::{self, EventFields, FrameKind, HEADER_BYTES};
use crate::format::segment_header;
use crate::fs::FileSystem;
use crate::limits::SEGMENT_FILL_CHUNK_BYTES;
use crate::log::segment::Segment;
use crate::log::Location;
use crate::Error;

/// Bytes kept free at the end of every segment: room for a clean-close marker and a footer.
pub const TAIL_RESERVE_BYTES: u64 = 2 * HEADER_BYTES as u64;

/// How an append failed.
#[derive(Debug)]
pub enum WriteFailure {
    /// Nothing of the append was written; the store is still usable.
    NotWritten(Error),
    /// A write or sync of log data failed: the outcome is unknown and the store must be poisoned.
    Poisoning(Error),
}

/// One stream's events in an append, with the version its first event gets.
pub struct PlannedPart<'a> {
    pub stream: &'a str,
    pub first_version: u64,
    pub events: &'a [NewEvent],
}

/// Where an append's events went.
pub struct Written {
    /// The position of the append's first event.
    pub first_position: u64,
    /// One location per event, in the order of the parts and their events.
    pub locations: Vec<Location>,
    /// A segment created for this append, which readers must be told about.
    pub new_segment: Option<Arc<Segment>>,
}

pub struct Writer {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment_bytes: u64,
    /// The segment appends go to; `None` before the first segment exists or after the tail was sealed.
    tail: Option<Arc<Segment>>,
    /// Where the next frame goes in `tail`.
    offset: u64,
    /// The position the next event gets.
    next_position: u64,
    /// Every position below this is durable.
    durable: u64,
    /// The number the next segment gets.
    next_segment_number: u64,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

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
    ) -> Writer {
        let (tail, offset) = match tail {
            Some((s, o)) => (Some(s), o),
            None => (None, 0),
        };
        Writer {
            fs,
            dir,
            segment_bytes,
            tail,
            offset,
            next_position,
            durable: next_position,
            next_segment_number,
            buf: Vec::new(),
        }
    }

    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// Writes the parts as one append (all-or-nothing after a crash) with one `write`, then syncs it if `sync`.
    pub fn append(&mut self, parts: &[PlannedPart<'_>], sync: bool) -> Result<Written, WriteFailure> {
        let batch_bytes = encoded_bytes(parts);
        let count: u64 = parts.iter().map(|p| p.events.len() as u64).sum();
        assert!(count > 0, "an append writes at least one event");
        let new_segment = self.make_room(batch_bytes)?;
        let Some(tail) = self.tail.clone() else { unreachable!("make_room leaves a tail segment") };
        assert!(self.offset + batch_bytes + TAIL_RESERVE_BYTES <= tail.len_bytes());

        let first_position = self.next_position;
        let batch_end = first_position + count;
        let timestamp_us = super::now_us();
        let segment_number = u32::try_from(tail.number()).expect("segment numbers fit in 32 bits");
        let mut locations = Vec::with_capacity(count as usize);
        self.buf.clear();
        let mut position = first_position;
        for part in parts {
            for (i, e) in part.events.iter().enumerate() {
                let at = self.offset + self.buf.len() as u64;
                locations.push(Location::new(segment_number, at as u32));
                frame::encode_event(
                    &mut self.buf,
                    tail.salt(),
                    &EventFields {
                        position,
                        batch_end,
                        durable: self.durable,
                        version: part.first_version + i as u64,
                        timestamp_us,
                        id: *e.id().as_bytes(),
                        stream: part.stream.as_bytes(),
                        event_type: e.event_type().as_bytes(),
                        metadata: e.metadata(),
                        payload: e.payload(),
                    },
                );
                position += 1;
            }
        }
        debug_assert_eq!(self.buf.len() as u64, batch_bytes);
        tail.file().write_all_at(&self.buf, self.offset).map_err(|e| WriteFailure::Poisoning(e.into()))?;
        self.offset += batch_bytes;
        self.next_position = batch_end;
        if sync {
            self.sync().map_err(WriteFailure::Poisoning)?;
        }
        if self.buf.capacity() > 4 << 20 {
            self.buf = Vec::new();
        }
        Ok(Written { first_position, locations, new_segment })
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> Result<(), Error> {
        if self.durable == self.next_position {
            return Ok(());
        }
        if let Some(tail) = &self.tail {
            tail.file().sync_data()?;
        }
        self.durable = self.next_position;
        Ok(())
    }

    /// Ensures the tail segment has room for `batch_bytes` plus the reserve, creating a new segment (and
    /// sealing the old one) if not. Returns the new segment, if one was made.
    fn make_room(&mut self, batch_bytes: u64) -> Result<Option<Arc<Segment>>, WriteFailure> {
        if let Some(tail) = &self.tail {
            if self.offset + batch_bytes + TAIL_RESERVE_BYTES <= tail.len_bytes() {
                return Ok(None);
            }
        }
        let needed = segment_header::SIZE_BYTES as u64 + batch_bytes + TAIL_RESERVE_BYTES;
        let chunk = SEGMENT_FILL_CHUNK_BYTES as u64;
        let size = self.segment_bytes.max(needed.div_ceil(chunk) * chunk);
        let salt = random_salt();
        // Preparing the new segment writes nothing of the log: its failure (ENOSPC, say) leaves the store usable.
        let segment = Segment::create(&*self.fs, &self.dir, self.next_segment_number, self.next_position, size, salt)
            .map_err(WriteFailure::NotWritten)?;
        let segment = Arc::new(segment);
        // Sealing the old segment writes log data: its failure poisons.
        self.seal_tail().map_err(WriteFailure::Poisoning)?;
        self.tail = Some(segment.clone());
        self.offset = segment_header::SIZE_BYTES as u64;
        self.next_segment_number += 1;
        Ok(Some(segment))
    }

    /// Writes the footer to the tail segment and syncs it. The tail is then sealed and immutable.
    fn seal_tail(&mut self) -> Result<(), Error> {
        let Some(tail) = self.tail.take() else { return Ok(()) };
        let count = self.next_position - tail.first_position();
        self.buf.clear();
        frame::encode_marker(&mut self.buf, tail.salt(), FrameKind::Footer, self.next_position, count, super::now_us());
        let result = tail.file().write_all_at(&self.buf, self.offset).and_then(|()| tail.file().sync_data());
        if let Err(e) = result {
            self.tail = Some(tail);
            return Err(e.into());
        }
        self.durable = self.next_position;
        Ok(())
    }

    /// Writes the clean-close marker (everything before it is durable) and syncs. Called once, at close.
    pub fn close(&mut self) -> Result<(), Error> {
        self.sync()?;
        let Some(tail) = &self.tail else { return Ok(()) };
        assert!(self.offset + HEADER_BYTES as u64 <= tail.len_bytes(), "room for a footer is always kept");
        if self.offset + TAIL_RESERVE_BYTES > tail.len_bytes() {
            // No room for a marker and a later footer: seal instead; the footer vouches just the same.
            return self.seal_tail();
        }
        self.buf.clear();
        frame::encode_marker(
            &mut self.buf,
            tail.salt(),
            FrameKind::CloseMarker,
            self.next_position,
            0,
            super::now_us(),
        );
        tail.file().write_all_at(&self.buf, self.offset)?;
        tail.file().sync_data()?;
        self.offset += HEADER_BYTES as u64;
        Ok(())
    }
}

/// A fresh random salt for a new segment file.
fn random_salt() -> u64 {
    let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
    high ^ low
}
