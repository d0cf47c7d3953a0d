//! Reading the log: the map from positions to segments and offsets, and the `read_all` iterator.
//!
//! [`LogMap`] lists the mapped segments (segment number = index in the list) and, per segment, a sparse list of
//! (position, offset) pairs, one every [`SPARSE_EVERY`] events, so `read_all` from any position starts at most
//! that many frames before it. The map is updated by the store after each append, under its state lock.

use std::sync::Arc;

use crate::event::RecordedEvent;
use crate::format::frame::FrameKind;
use crate::format::segment_header;
use crate::log::segment::Segment;
use crate::store::Shared;
use crate::{Error, Result};

/// One sparse (position, offset) entry per this many events of a segment.
pub const SPARSE_EVERY: u64 = 64;

/// The mapped segments, and where positions are in them.
#[derive(Default)]
pub struct LogMap {
    segments: Vec<Arc<Segment>>,
    sparse: Vec<Vec<(u64, u32)>>,
}

impl LogMap {
    /// Adds the next segment. Segment numbers run from 0 without gaps.
    pub fn push_segment(&mut self, segment: Arc<Segment>) {
        assert_eq!(segment.number(), self.segments.len() as u64, "segments are added in order");
        self.segments.push(segment);
        self.sparse.push(Vec::new());
    }

    /// Drops the segments numbered `len` and up (recovery, removing empty leftovers).
    pub fn truncate(&mut self, len: usize) {
        self.segments.truncate(len);
        self.sparse.truncate(len);
    }

    pub fn segments(&self) -> &[Arc<Segment>] {
        &self.segments
    }

    pub fn segment(&self, number: u32) -> Option<&Arc<Segment>> {
        self.segments.get(number as usize)
    }

    /// Notes that the event at `position` is at `offset` of segment `number`.
    pub fn note_event(&mut self, number: u32, position: u64, offset: u32) {
        let Some(sparse) = self.sparse.get_mut(number as usize) else { return };
        match sparse.last() {
            Some(&(p, _)) if position < p + SPARSE_EVERY => {}
            _ => sparse.push((position, offset)),
        }
    }

    /// The segment holding `position`, and an offset at or before its frame from which to scan forward.
    pub fn seek(&self, position: u64) -> Option<(Arc<Segment>, usize)> {
        let i = self.segments.partition_point(|s| s.first_position() <= position).checked_sub(1)?;
        let segment = &self.segments[i];
        let sparse = &self.sparse[i];
        let offset = match sparse.partition_point(|&(p, _)| p <= position).checked_sub(1) {
            Some(j) => sparse[j].1 as usize,
            None => segment_header::SIZE_BYTES,
        };
        Some((segment.clone(), offset))
    }
}

/// Every event from a position on, in commit order, up to the head as of the iterator's creation. Returned by
/// [`crate::Store::read_all`].
///
/// ```
/// use annals::{ExpectedVersion, NewEvent, Position, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("a", ExpectedVersion::Any, &[NewEvent::new("E", "1"), NewEvent::new("E", "2")])?;
/// store.append("b", ExpectedVersion::Any, &[NewEvent::new("E", "3")])?;
/// let payloads: Vec<Vec<u8>> = store.read_all(Position::from_u64(1)).map(|e| e.map(|e| e.payload().to_vec())).collect::<Result<_, _>>()?;
/// assert_eq!(payloads, vec![b"2".to_vec(), b"3".to_vec()]);
/// # Ok::<(), annals::Error>(())
/// ```
pub struct ReadAll {
    shared: Arc<Shared>,
    segment: Option<Arc<Segment>>,
    offset: usize,
    position: u64,
    end: u64,
    failed: bool,
}

impl ReadAll {
    pub(crate) fn new(shared: Arc<Shared>, from: u64, end: u64) -> ReadAll {
        ReadAll { shared, segment: None, offset: 0, position: from, end, failed: false }
    }

    /// Moves the end on to a newer head: a subscription reads on from where it stopped.
    pub(crate) fn extend_to(&mut self, end: u64) {
        debug_assert!(end >= self.end, "the head never moves back");
        self.end = self.end.max(end);
    }

    /// The position of the next event this iterator would return.
    pub(crate) fn next_position(&self) -> u64 {
        self.position
    }

    fn step(&mut self) -> Result<RecordedEvent> {
        if self.segment.is_none() {
            let found = self.shared.state().seek(self.position);
            let (segment, offset) = found.ok_or_else(|| {
                Error::corrupt(self.shared.dir(), 0, format!("no segment holds position {}", self.position))
            })?;
            self.segment = Some(segment);
            self.offset = offset;
        }
        loop {
            let Some(segment) = self.segment.as_ref() else { unreachable!("set above") };
            if segment.says_event(self.offset) {
                let (header, len) = segment.verified_event(self.offset)?;
                let position = header.position();
                if position < self.position {
                    self.offset += len;
                    continue;
                }
                if position != self.position {
                    return Err(Error::corrupt(
                        segment.path(),
                        self.offset as u64,
                        format!("event frame has position {position}, expected {}", self.position),
                    ));
                }
                let event = RecordedEvent::new(segment.clone(), self.offset, len);
                self.offset += len;
                self.position += 1;
                return Ok(event);
            }
            let f = segment.frame_at(self.offset)?;
            match f.kind {
                // Only if the file changed under the mapping between the two reads of its kind byte.
                FrameKind::Event => {
                    return Err(Error::corrupt(segment.path(), self.offset as u64, "frame changed while read"));
                }
                FrameKind::CloseMarker => self.offset += f.frame_bytes as usize,
                FrameKind::Footer => {
                    let next = u32::try_from(segment.number() + 1).unwrap_or(u32::MAX);
                    let next = self.shared.state().log.segment(next).cloned();
                    let next = next.ok_or_else(|| {
                        Error::corrupt(segment.path(), self.offset as u64, "sealed segment has no successor")
                    })?;
                    self.segment = Some(next);
                    self.offset = segment_header::SIZE_BYTES;
                }
            }
        }
    }
}

impl Iterator for ReadAll {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.position >= self.end {
            return None;
        }
        let r = self.step();
        self.failed = r.is_err();
        Some(r)
    }
}
