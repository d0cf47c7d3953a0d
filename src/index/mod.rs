//! The stream index: for every stream, where each of its events is in the log.
//!
//! This is the only module that knows how streams are found. Its interface is narrow on purpose (look up a
//! stream's last version, the location of one version, the locations from a version on; record a new event)
//! so that the persistent, memory-mapped index of a later issue can replace this in-memory one without
//! touching the rest of the store. For now the index is rebuilt by the scan at open and kept on the heap:
//! eight bytes per event plus the stream name and a hash-map entry per stream.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::log::Location;

/// One stream: the location of each of its versions, and the position of its newest event.
#[derive(Default)]
struct StreamEntry {
    locations: Vec<Location>,
    last_position: u64,
    last_id: [u8; 16],
}

/// What the append path needs to know of a stream, from one lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTail {
    /// The stream's last version.
    pub version: u64,
    /// The position of its newest event.
    pub position: u64,
    /// The id of its newest event.
    pub id: [u8; 16],
}

/// Stream name -> the location of each of its versions. Hashed with foldhash (randomly seeded per index, so
/// stream names chosen by an attacker cannot force collisions cheaply), several times faster than SipHash on
/// short names, which matters on the append path.
#[derive(Default)]
pub struct StreamIndex {
    streams: HashMap<Box<str>, StreamEntry, RandomState>,
}

/// The index was asked to record an event whose version does not follow the stream's last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionGap {
    pub expected: u64,
    pub found: u64,
}

impl StreamIndex {
    pub fn new() -> StreamIndex {
        StreamIndex::default()
    }

    /// The stream's last version, `None` if it has no events.
    pub fn last_version(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).and_then(|e| (e.locations.len() as u64).checked_sub(1))
    }

    /// Where the event `version` of `stream` is.
    pub fn location(&self, stream: &str, version: u64) -> Option<Location> {
        let e = self.streams.get(stream)?;
        e.locations.get(usize::try_from(version).ok()?).copied()
    }

    /// The locations of the stream's events from `from_version` on (empty if none).
    pub fn locations_from(&self, stream: &str, from_version: u64) -> &[Location] {
        let Some(e) = self.streams.get(stream) else { return &[] };
        let from = usize::try_from(from_version).unwrap_or(usize::MAX).min(e.locations.len());
        &e.locations[from..]
    }

    /// The stream's newest event, `None` if it has none.
    pub fn tail(&self, stream: &str) -> Option<StreamTail> {
        let e = self.streams.get(stream)?;
        let version = (e.locations.len() as u64).checked_sub(1)?;
        Some(StreamTail { version, position: e.last_position, id: e.last_id })
    }

    /// The position of the stream's newest event, `None` if it has none.
    pub fn last_position(&self, stream: &str) -> Option<u64> {
        self.streams.get(stream).filter(|e| !e.locations.is_empty()).map(|e| e.last_position)
    }

    /// Records that `stream`'s event `version`, at `position`, is at `location`. Versions must arrive in order
    /// from 0, and positions in increasing order.
    pub fn push(
        &mut self,
        stream: &str,
        version: u64,
        position: u64,
        id: [u8; 16],
        location: Location,
    ) -> Result<(), VersionGap> {
        let entry = match self.streams.get_mut(stream) {
            Some(v) => v,
            None => self.streams.entry(stream.into()).or_default(),
        };
        if entry.locations.len() as u64 != version {
            return Err(VersionGap { expected: entry.locations.len() as u64, found: version });
        }
        debug_assert!(entry.locations.is_empty() || position > entry.last_position);
        entry.locations.push(location);
        entry.last_position = position;
        entry.last_id = id;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_recorded_in_order() {
        let mut ix = StreamIndex::new();
        assert_eq!(ix.last_version("a"), None);
        ix.push("a", 0, 0, [1; 16], Location::new(0, 64)).unwrap();
        ix.push("b", 0, 1, [2; 16], Location::new(0, 200)).unwrap();
        ix.push("a", 1, 2, [3; 16], Location::new(1, 64)).unwrap();
        assert_eq!(ix.last_position("a"), Some(2));
        assert_eq!(ix.last_position("c"), None);
        assert_eq!(ix.tail("a"), Some(StreamTail { version: 1, position: 2, id: [3; 16] }));
        assert_eq!(ix.tail("c"), None);
        assert_eq!(ix.last_version("a"), Some(1));
        assert_eq!(ix.location("a", 1), Some(Location::new(1, 64)));
        assert_eq!(ix.location("a", 2), None);
        assert_eq!(ix.locations_from("a", 1), &[Location::new(1, 64)]);
        assert!(ix.locations_from("a", u64::MAX).is_empty());
        assert_eq!(ix.push("a", 5, 3, [4; 16], Location::new(1, 99)), Err(VersionGap { expected: 2, found: 5 }));
        assert_eq!(ix.last_version("b"), Some(0));
    }
}
