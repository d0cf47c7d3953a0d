//! One segment file: created preallocated and zero-filled, named by its first position, mapped read-only.
//!
//! # The mmap contract
//! Readers borrow event bytes straight from a read-only shared mapping of the whole segment file. That is
//! sound only because annals guarantees, for as long as any mapping of the file lives:
//! 1. the store holds an exclusive lock on its folder, so no other annals instance writes the files;
//! 2. a segment file's length never changes after creation (it is preallocated), so no page of the mapping
//!    can disappear;
//! 3. bytes are handed to readers only below the published head, and the writer only writes past it; bytes
//!    once published are never rewritten (a torn tail is zeroed at open, before anything is mapped for readers).
//!
//! A process that ignores the lock and changes the files, or a disk error on a mapped page (SIGBUS), is outside
//! what a mapping can defend against; recovery and verification read with `pread` and report such errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::frame::{self, EventHeader, Frame, FrameKind};
use crate::format::segment_header::{self, SegmentHeader};
use crate::fs::{FileHandle, FileSystem, Mapping, OpenMode};
use crate::limits::SEGMENT_FILL_CHUNK_BYTES;
use crate::{Error, Result};

/// File-name suffix of segment files.
pub const SUFFIX: &str = ".seg";

/// The file name of the segment whose first event has `first_position`: 20 decimal digits, so names sort
/// in log order.
pub fn file_name(first_position: u64) -> String {
    format!("{first_position:020}{SUFFIX}")
}

/// Parses a segment file name back into its first position.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A preallocated, zero-filled, synced file under a temporary name, ready to become a segment.
pub struct BlankFile {
    pub path: PathBuf,
    pub file: Box<dyn FileHandle>,
    pub bytes: u64,
}

/// When [`prepare_blank`] syncs the zeros it writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroSync {
    /// Once, at the end: the least work. For `Buffered` stores, whose appends wait for no sync.
    AtEnd,
    /// After every [`ZERO_SYNC_BYTES`]. A device's cache flush writes out everything sent to the device before
    /// it, so a `Sync` append whose sync runs while a whole file's zeros are being written back waits for all
    /// of them: 28-30 ms for a 64 MiB segment here, about 3 ms for one slice (docs/PERFORMANCE.md). The zeros
    /// cost the device the same time either way; pacing them shares it out over more appends, in smaller
    /// pieces. Not for `Buffered` stores: the extra syncs slowed the preparer enough to cost W4 about 6%.
    Paced,
}

/// How many bytes of zeros [`prepare_blank`] writes between two syncs with [`ZeroSync::Paced`]: the most that
/// an append's sync, made while a blank file is being prepared, can find still to be written back. Smaller
/// slices lower that wait further but delay more appends (1 MiB doubled W2's p99), and each costs a flush.
pub const ZERO_SYNC_BYTES: u64 = 4 << 20;

/// Creates `dir/tmp_name` zero-filled to `segment_bytes` with 4 KiB-multiple writes and syncs it (when:
/// `zero_sync`), so that later `fdatasync`s of the segment carry data only (RELIABILITY.md rule 2). The name
/// must end in `.tmp`: a crash leaves at most a temporary file, which the next open removes. On failure the
/// file is removed.
pub fn prepare_blank(
    fs: &dyn FileSystem,
    dir: &Path,
    tmp_name: &str,
    segment_bytes: u64,
    zero_sync: ZeroSync,
) -> Result<BlankFile> {
    assert!(tmp_name.ends_with(".tmp"));
    assert!(segment_bytes.is_multiple_of(SEGMENT_FILL_CHUNK_BYTES as u64));
    assert!(segment_bytes >= segment_header::SIZE_BYTES as u64);
    let path = dir.join(tmp_name);
    let result = (|| -> std::io::Result<Box<dyn FileHandle>> {
        match fs.remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let f = fs.open(&path, OpenMode::CreateNew)?;
        const ZERO_WRITE_BYTES: usize = 64 * SEGMENT_FILL_CHUNK_BYTES;
        let zeros = vec![0u8; ZERO_WRITE_BYTES];
        let mut at = 0u64;
        let mut unsynced = 0u64;
        while at < segment_bytes {
            let n = (segment_bytes - at).min(ZERO_WRITE_BYTES as u64) as usize;
            f.write_all_at(&zeros[..n], at)?;
            at += n as u64;
            unsynced += n as u64;
            let slice_done = zero_sync == ZeroSync::Paced && unsynced >= ZERO_SYNC_BYTES;
            if slice_done || at == segment_bytes {
                f.sync_data()?;
                unsynced = 0;
            }
        }
        // Make the removal of any older file of this name and the creation of this one durable before the
        // rename that installs it: a crash that kept the rename but not the creation would otherwise put an
        // older blank file (without a header) under the segment's name.
        fs.sync_dir(dir)?;
        Ok(f)
    })();
    match result {
        Ok(file) => Ok(BlankFile { path, file, bytes: segment_bytes }),
        Err(e) => {
            let _ = fs.remove_file(&path);
            Err(Error::Io(e))
        }
    }
}

/// How much of a frame [`Segment::prefetch`] asks for: four cache lines, a frame with a 128-byte payload and
/// short names (240 bytes) whole. Prefetching only the first line left a spread-out stream read waiting on the
/// other three of each frame (scale run: p50 18.2 us, 12.8 us with the whole frame).
const PREFETCH_BYTES: usize = 256;

/// An open, mapped segment file.
pub struct Segment {
    path: PathBuf,
    header: SegmentHeader,
    file: Box<dyn FileHandle>,
    /// The read-only mapping of the whole file, held as `Bytes` so that reaching its bytes is a field read, not
    /// a call through the file system's `Mapping` trait (every read of every frame does it).
    map: bytes::Bytes,
    hasher: frame::FrameHasher,
}

/// Lends a mapping's bytes to `Bytes::from_owner`, which keeps the mapping alive as long as the `Bytes`.
struct MappedBytes(Arc<dyn Mapping>);

impl AsRef<[u8]> for MappedBytes {
    fn as_ref(&self) -> &[u8] {
        // A mapping's bytes stay where they are for as long as it lives, which `from_owner` relies on.
        self.0.bytes()
    }
}

impl Segment {
    /// Creates a new segment: a blank file prepared by [`prepare_blank`], then installed by [`Segment::install`].
    pub fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        segment_number: u64,
        first_position: u64,
        segment_bytes: u64,
        salt: u64,
        zero_sync: ZeroSync,
    ) -> Result<Segment> {
        let blank = prepare_blank(fs, dir, &format!("{}.tmp", file_name(first_position)), segment_bytes, zero_sync)?;
        Segment::install(fs, dir, blank, segment_number, first_position, salt)
    }

    /// Turns a blank file into the segment `segment_number` starting at `first_position`: writes the header,
    /// syncs, renames it to its segment name and syncs the folder. On failure the blank file is removed.
    pub fn install(
        fs: &dyn FileSystem,
        dir: &Path,
        blank: BlankFile,
        segment_number: u64,
        first_position: u64,
        salt: u64,
    ) -> Result<Segment> {
        let header = SegmentHeader {
            format_version: crate::format::FORMAT_VERSION,
            segment_number,
            first_position,
            salt,
            segment_bytes: blank.bytes,
            created_us: super::now_us(),
        };
        let path = dir.join(file_name(first_position));
        let result = blank.file.write_all_at(&header.encode(), 0).and_then(|()| blank.file.sync_data());
        drop(blank.file);
        if let Err(e) = result {
            let _ = fs.remove_file(&blank.path);
            return Err(Error::Io(e));
        }
        fs.rename(&blank.path, &path)?;
        let segment = fs.sync_dir(dir).map_err(Error::Io).and_then(|()| Segment::open(fs, &path));
        if segment.is_err() {
            // The append that needed this segment fails without writing; left here, the file would name a
            // position the log moves past. Recovery removes such an empty segment too, if this does not last.
            let _ = fs.remove_file(&path);
            let _ = fs.sync_dir(dir);
        }
        segment
    }

    /// Opens and maps an existing segment file, checking its header.
    pub fn open(fs: &dyn FileSystem, path: &Path) -> Result<Segment> {
        let file = fs.open(path, OpenMode::ReadWrite)?;
        let len = file.len_bytes()?;
        let mut head = [0u8; segment_header::SIZE_BYTES];
        if len < head.len() as u64 {
            return Err(Error::corrupt(path, 0, format!("segment file is {len} bytes, shorter than its header")));
        }
        file.read_exact_at(&mut head, 0)?;
        let header = match SegmentHeader::decode(&head) {
            Ok(h) => h,
            Err(segment_header::SegmentHeaderError::NewerVersion(v)) => {
                return Err(Error::Incompatible {
                    path: path.to_path_buf(),
                    reason: format!(
                        "segment written by format version {v}; this build reads up to {}",
                        crate::format::FORMAT_VERSION
                    ),
                })
            }
            Err(e) => return Err(Error::corrupt(path, 0, e.to_string())),
        };
        if header.segment_bytes != len {
            return Err(Error::corrupt(path, 0, format!("header says {} bytes, file has {len}", header.segment_bytes)));
        }
        let map = file.map()?;
        if map.bytes().len() as u64 != len {
            return Err(Error::corrupt(path, 0, "mapping length differs from file length"));
        }
        let map = bytes::Bytes::from_owner(MappedBytes(map));
        let hasher = frame::FrameHasher::new(header.salt);
        Ok(Segment { path: path.to_path_buf(), header, file, map, hasher })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    pub fn number(&self) -> u64 {
        self.header.segment_number
    }

    pub fn first_position(&self) -> u64 {
        self.header.first_position
    }

    pub fn salt(&self) -> u64 {
        self.header.salt
    }

    /// The checksum of this segment's frames, set up once.
    pub fn hasher(&self) -> &frame::FrameHasher {
        &self.hasher
    }

    /// The file's length (fixed at creation).
    pub fn len_bytes(&self) -> u64 {
        self.header.segment_bytes
    }

    /// The whole mapped file. Only bytes below what the writer has published may be read as data.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn file(&self) -> &dyn FileHandle {
        &*self.file
    }

    /// Asks the CPU to start loading the frame at `offset` into the cache: its first [`PREFETCH_BYTES`] (a
    /// small event's whole frame, which its checksum reads). A hint: nothing is read, and bytes past the end of
    /// the file are left out.
    #[inline]
    pub fn prefetch(&self, offset: usize) {
        crate::prefetch::range(self.bytes(), offset, PREFETCH_BYTES);
    }

    /// Reads and verifies the event frame at `offset`, checking that its names are UTF-8.
    pub fn event_at(&self, offset: usize) -> Result<Frame> {
        let frame = self.frame_at(offset)?;
        self.check_event(offset, &frame)?;
        Ok(frame)
    }

    /// Reads and verifies (checksum, bounds) the frame at `offset`, of any kind.
    #[inline]
    pub fn frame_at(&self, offset: usize) -> Result<Frame> {
        let Some(bytes) = self.bytes().get(offset..) else {
            return Err(self.corrupt_at(offset, "offset past the end of the segment"));
        };
        frame::decode_with(bytes, &self.hasher).map_err(|e| self.corrupt_at(offset, e))
    }

    #[cold]
    fn corrupt_at(&self, offset: usize, why: impl ToString) -> Error {
        Error::corrupt(&self.path, offset as u64, why.to_string())
    }

    /// Checks that a verified frame is an event whose stream name and type are UTF-8.
    pub fn check_event(&self, offset: usize, frame: &Frame) -> Result<()> {
        if frame.kind != FrameKind::Event {
            return Err(Error::corrupt(
                &self.path,
                offset as u64,
                format!("expected an event frame, found {:?}", frame.kind),
            ));
        }
        let bytes = &self.bytes()[offset..offset + frame.frame_bytes as usize];
        if !frame::names_are_utf8(bytes, frame.stream_bytes as usize, frame.type_bytes as usize) {
            return Err(Error::corrupt(&self.path, offset as u64, "stream name or event type is not UTF-8"));
        }
        Ok(())
    }

    /// Whether the frame at `offset` says it is an event (its kind byte; nothing is verified).
    #[inline]
    pub fn says_event(&self, offset: usize) -> bool {
        frame::says_event(self.bytes().get(offset..).unwrap_or_default())
    }

    /// Verifies the event frame at `offset` for a reader ([`frame::verify_event`]: checksum, bounds, UTF-8
    /// names) and returns its header, read in place, and its length in bytes.
    #[inline]
    pub fn verified_event(&self, offset: usize) -> Result<(EventHeader<'_>, usize)> {
        let bytes = self.bytes().get(offset..).unwrap_or_default();
        frame::verify_event(bytes, &self.hasher).map_err(|e| self.corrupt_at(offset, e))
    }
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("path", &self.path).field("header", &self.header).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::sim::{CrashMode, Op, SimFs};
    use crate::fs::FileSystem;

    #[test]
    fn a_blank_file_is_zero_and_durable_synced_at_the_end_or_a_slice_at_a_time() {
        let slice = ZERO_SYNC_BYTES;
        // (how, size, syncs of its data): paced, a sync per whole slice and one for the rest.
        for (zero_sync, bytes, syncs) in [
            (ZeroSync::AtEnd, 3 * slice, 1),
            (ZeroSync::Paced, 3 * slice, 3),
            (ZeroSync::Paced, 2 * slice + 8192, 3),
            (ZeroSync::Paced, 8192, 1),
        ] {
            let fs = SimFs::new();
            let dir = Path::new("/store");
            fs.create_dir_all(dir).unwrap();
            fs.sync_dir(Path::new("/")).unwrap();
            let before = fs.ops_of(Op::SyncData);
            let blank = prepare_blank(&fs, dir, "next.tmp", bytes, zero_sync).unwrap();
            assert_eq!(fs.ops_of(Op::SyncData) - before, syncs, "{zero_sync:?}, {bytes} bytes");
            assert_eq!(blank.bytes, bytes);
            assert_eq!(fs.unsynced_sectors(), 0, "{zero_sync:?}, {bytes} bytes");
            let crashed = fs.crash(CrashMode::POWER_LOSS, 7);
            let kept = crashed.read_file(&dir.join("next.tmp")).expect("the blank file survives a power loss");
            assert_eq!(kept.len() as u64, bytes);
            assert!(kept.iter().all(|&b| b == 0), "{zero_sync:?}, {bytes} bytes");
        }
    }

    #[test]
    fn file_names_round_trip_and_sort() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("0000000000000000004x.seg"), None);
        assert!(file_name(9) < file_name(10));
    }
}
