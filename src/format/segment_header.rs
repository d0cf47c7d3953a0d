//! The 64-byte header at the start of every segment file.
//!
//! ```text
//! offset size field
//!  0      8   magic            b"ANNALSEG"
//!  8      4   format_version   u32
//! 12      4   header_bytes     u32, always 64
//! 16      8   segment_number   u64, 0 for the first segment, +1 for each next one
//! 24      8   first_position   u64, position of the segment's first event
//! 32      8   salt             u64, random per segment file; seeds every frame checksum in it
//! 40      8   segment_bytes    u64, the file's preallocated length
//! 48      8   created_us       u64, microseconds since the Unix epoch
//! 56      4   reserved         zero
//! 60      4   checksum         crc32 of bytes 0..60
//! 64          first frame
//! ```

use super::{read_u32, read_u64, write_u32, write_u64};

/// Magic bytes at the start of every segment file.
pub const MAGIC: [u8; 8] = *b"ANNALSEG";
/// Size of the segment header in bytes; the first frame starts here.
pub const SIZE_BYTES: usize = 64;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const HEADER_BYTES_AT: usize = VERSION_AT + 4;
const SEGMENT_NUMBER_AT: usize = HEADER_BYTES_AT + 4;
const FIRST_POSITION_AT: usize = SEGMENT_NUMBER_AT + 8;
const SALT_AT: usize = FIRST_POSITION_AT + 8;
const SEGMENT_BYTES_AT: usize = SALT_AT + 8;
const CREATED_AT: usize = SEGMENT_BYTES_AT + 8;
const CHECKSUM_AT: usize = CREATED_AT + 8 + 4;
const _: () = assert!(CHECKSUM_AT + 4 == SIZE_BYTES);
const _: () = assert!(SIZE_BYTES.is_multiple_of(super::FRAME_ALIGN_BYTES));

/// The decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub format_version: u32,
    pub segment_number: u64,
    pub first_position: u64,
    pub salt: u64,
    pub segment_bytes: u64,
    pub created_us: u64,
}

/// Why a segment header could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentHeaderError {
    TooShort,
    BadMagic,
    BadChecksum,
    /// Written by a newer format version than this build reads.
    NewerVersion(u32),
    /// The checksum holds but a field is impossible (header size, version 0).
    BadField(&'static str),
}

impl std::fmt::Display for SegmentHeaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentHeaderError::TooShort => write!(f, "segment header: file shorter than {SIZE_BYTES} bytes"),
            SegmentHeaderError::BadMagic => write!(f, "segment header: wrong magic bytes"),
            SegmentHeaderError::BadChecksum => write!(f, "segment header: checksum mismatch"),
            SegmentHeaderError::NewerVersion(v) => {
                write!(f, "segment header: format version {v} is newer than this build")
            }
            SegmentHeaderError::BadField(which) => write!(f, "segment header: invalid {which}"),
        }
    }
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SIZE_BYTES] {
        let mut b = [0u8; SIZE_BYTES];
        b[MAGIC_AT..MAGIC_AT + 8].copy_from_slice(&MAGIC);
        write_u32(&mut b, VERSION_AT, self.format_version);
        write_u32(&mut b, HEADER_BYTES_AT, SIZE_BYTES as u32);
        write_u64(&mut b, SEGMENT_NUMBER_AT, self.segment_number);
        write_u64(&mut b, FIRST_POSITION_AT, self.first_position);
        write_u64(&mut b, SALT_AT, self.salt);
        write_u64(&mut b, SEGMENT_BYTES_AT, self.segment_bytes);
        write_u64(&mut b, CREATED_AT, self.created_us);
        let crc = crc32fast::hash(&b[..CHECKSUM_AT]);
        write_u32(&mut b, CHECKSUM_AT, crc);
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, SegmentHeaderError> {
        if bytes.len() < SIZE_BYTES {
            return Err(SegmentHeaderError::TooShort);
        }
        let bytes = &bytes[..SIZE_BYTES];
        if bytes[MAGIC_AT..MAGIC_AT + 8] != MAGIC {
            return Err(SegmentHeaderError::BadMagic);
        }
        if crc32fast::hash(&bytes[..CHECKSUM_AT]) != read_u32(bytes, CHECKSUM_AT) {
            return Err(SegmentHeaderError::BadChecksum);
        }
        let format_version = read_u32(bytes, VERSION_AT);
        if format_version > super::FORMAT_VERSION {
            return Err(SegmentHeaderError::NewerVersion(format_version));
        }
        if format_version == 0 {
            return Err(SegmentHeaderError::BadField("format version"));
        }
        if read_u32(bytes, HEADER_BYTES_AT) as usize != SIZE_BYTES {
            return Err(SegmentHeaderError::BadField("header size"));
        }
        Ok(SegmentHeader {
            format_version,
            segment_number: read_u64(bytes, SEGMENT_NUMBER_AT),
            first_position: read_u64(bytes, FIRST_POSITION_AT),
            salt: read_u64(bytes, SALT_AT),
            segment_bytes: read_u64(bytes, SEGMENT_BYTES_AT),
            created_us: read_u64(bytes, CREATED_AT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentHeader {
        SegmentHeader {
            format_version: super::super::FORMAT_VERSION,
            segment_number: 3,
            first_position: 1_000_000,
            salt: 0xdead_beef_0bad_f00d,
            segment_bytes: 64 << 20,
            created_us: 42,
        }
    }

    #[test]
    fn round_trip() {
        assert_eq!(SegmentHeader::decode(&sample().encode()), Ok(sample()));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let b = sample().encode();
        for bit in 0..SIZE_BYTES * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&c).is_err(), "bit {bit} flipped went unnoticed");
        }
    }

    #[test]
    fn newer_version_is_reported_as_such() {
        let mut h = sample();
        h.format_version = super::super::FORMAT_VERSION + 1;
        assert_eq!(SegmentHeader::decode(&h.encode()), Err(SegmentHeaderError::NewerVersion(h.format_version)));
    }

    #[test]
    fn short_input_is_rejected() {
        assert_eq!(SegmentHeader::decode(&[0u8; 10]), Err(SegmentHeaderError::TooShort));
    }
}
