//! Pure encoding and decoding of every on-disk structure: no I/O happens here.
//!
//! This module mirrors `docs/FORMAT.md`; change one and you change the other. Everything is little-endian with
//! explicit widths. Decoders take untrusted bytes: they bound every length by the bytes actually present before
//! using it, never panic, and never allocate in proportion to a length read from disk.
//!
//! - [`store_file`](crate::format::store_file): the `ANNALS` file that marks a folder as a store and records its format version.
//! - [`segment_header`](crate::format::segment_header): the 64-byte header at the start of every segment file.
//! - [`frame`](crate::format::frame): record frames (events, clean-close markers, segment footers), 16-byte aligned, checksummed.
//! - [`index`](crate::format::index): the chunk index files and the stream directory.

pub mod frame;
pub mod index;
pub mod segment_header;
pub mod store_file;

/// The on-disk format version this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Frames and payloads start at multiples of this many bytes within a segment file.
pub const FRAME_ALIGN_BYTES: usize = 16;

/// Rounds `n` up to the next multiple of [`FRAME_ALIGN_BYTES`].
#[inline]
pub const fn align_up(n: usize) -> usize {
    (n + FRAME_ALIGN_BYTES - 1) & !(FRAME_ALIGN_BYTES - 1)
}

#[inline]
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

#[inline]
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[inline]
pub(crate) fn write_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[inline]
pub(crate) fn write_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_to_sixteen() {
        assert_eq!(align_up(0), 0);
        assert_eq!(align_up(1), 16);
        assert_eq!(align_up(16), 16);
        assert_eq!(align_up(17), 32);
    }
}
