//! The `ANNALS` file: marks a folder as an annals store and records the format version that wrote it.
//!
//! ```text
//! offset size field
//!  0      8   magic            b"ANNALSDB"
//!  8      4   format_version   u32
//! 12      4   reserved         zero
//! 16      8   created_us       u64, microseconds since the Unix epoch
//! 24      4   reserved         zero
//! 28      4   checksum         crc32 of bytes 0..28
//! 32          (end)
//! ```

use super::{read_u32, read_u64, write_u32, write_u64};

/// Name of the store file inside the store folder.
pub const FILE_NAME: &str = "ANNALS";
/// Magic bytes at the start of the store file.
pub const MAGIC: [u8; 8] = *b"ANNALSDB";
/// Size of the store file in bytes.
pub const SIZE_BYTES: usize = 32;

const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 8;
const CREATED_AT: usize = VERSION_AT + 4 + 4;
const CHECKSUM_AT: usize = CREATED_AT + 8 + 4;
const _: () = assert!(CHECKSUM_AT + 4 == SIZE_BYTES);

/// The decoded store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFile {
    pub format_version: u32,
    pub created_us: u64,
}

/// Why a store file could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreFileError {
    /// Too short, or the magic bytes are wrong: not an annals store file.
    NotAStore,
    /// The magic is right but the checksum is not.
    BadChecksum,
}

impl StoreFile {
    pub fn encode(&self) -> [u8; SIZE_BYTES] {
        let mut b = [0u8; SIZE_BYTES];
        b[MAGIC_AT..MAGIC_AT + 8].copy_from_slice(&MAGIC);
        write_u32(&mut b, VERSION_AT, self.format_version);
        write_u64(&mut b, CREATED_AT, self.created_us);
        let crc = crc32fast::hash(&b[..CHECKSUM_AT]);
        write_u32(&mut b, CHECKSUM_AT, crc);
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<StoreFile, StoreFileError> {
        if bytes.len() != SIZE_BYTES || bytes[MAGIC_AT..MAGIC_AT + 8] != MAGIC {
            return Err(StoreFileError::NotAStore);
        }
        if crc32fast::hash(&bytes[..CHECKSUM_AT]) != read_u32(bytes, CHECKSUM_AT) {
            return Err(StoreFileError::BadChecksum);
        }
        Ok(StoreFile { format_version: read_u32(bytes, VERSION_AT), created_us: read_u64(bytes, CREATED_AT) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = StoreFile { format_version: 1, created_us: 1_700_000_000_000_000 };
        assert_eq!(StoreFile::decode(&f.encode()), Ok(f));
    }

    #[test]
    fn rejects_wrong_magic_short_input_and_bad_checksum() {
        let f = StoreFile { format_version: 1, created_us: 5 };
        let mut b = f.encode();
        assert_eq!(StoreFile::decode(&b[..10]), Err(StoreFileError::NotAStore));
        b[17] ^= 1;
        assert_eq!(StoreFile::decode(&b), Err(StoreFileError::BadChecksum));
        b[0] = b'X';
        assert_eq!(StoreFile::decode(&b), Err(StoreFileError::NotAStore));
    }
}
