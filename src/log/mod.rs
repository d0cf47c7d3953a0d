//! The append-only segmented log: segment files, the writer that appends batches to them, the readers that
//! walk them through memory mappings, and the recovery that decides at open how much of the log is valid.
//!
//! - [`segment`]: one segment file: creation (preallocated, zero-filled), its header, its read-only mapping.
//! - [`recovery`]: the scan at open: validates frames and batches, tells a torn tail from corruption.
//! - [`writer`]: encodes appends into the tail segment, rolls and seals segments, writes the clean-close marker.
//! - [`commit`]: group commit: one `fdatasync` for every append written while the previous one ran.
//! - [`reader`]: `read_all` over the segments, and the position -> offset map it starts from.

pub mod commit;
pub mod preparer;
pub mod reader;
pub mod recovery;
pub mod segment;
pub mod writer;

/// Where an event's frame is: segment number and byte offset within that segment. Packed into 8 bytes so the
/// stream index stays small.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Location(u64);

impl Location {
    pub fn new(segment: u32, offset: u32) -> Location {
        Location(((segment as u64) << 32) | offset as u64)
    }

    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}
