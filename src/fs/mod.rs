//! The seam between annals and the file system: every file operation the store performs goes through
//! [`FileSystem`] and [`FileHandle`].
//!
//! The production implementation is [`StdFileSystem`]. The fault-injection layer of the reliability tests
//! implements the same traits to track which bytes and directory entries are durable, to drop unsynced data at
//! a simulated crash and to fail chosen operations. Keep the surface small: every method here is a place where
//! a fault can be injected, so the store must treat each one's failure correctly.
//!
//! Also here: the helpers built on the seam (atomic file creation: tmp, write, sync, rename, sync directory).

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[doc(hidden)]
pub mod sim;

/// What the offset of a writable mapping must be a multiple of: a multiple of every page size Linux uses for
/// file mappings (4, 16 and 64 KiB).
pub const MAP_ALIGN_BYTES: u64 = 64 << 10;

/// A read-only view of a whole file, usually a memory mapping.
pub trait Mapping: Send + Sync {
    /// The mapped bytes. Their length is the file length at the time of mapping.
    fn bytes(&self) -> &[u8];
}

/// A writable shared view of a range of a file: stores into it reach the page cache at once (so they survive a
/// crash of the process) and become durable with [`FileHandle::sync_data`] of the same file.
pub trait MappingMut: Send + Sync {
    /// The mapped bytes, writable.
    fn bytes_mut(&mut self) -> &mut [u8];
}

/// An open file.
pub trait FileHandle: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the file's data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// The file's length in bytes.
    fn len_bytes(&self) -> io::Result<u64>;
    /// Maps the whole file read-only. The file's length must not change while the mapping lives.
    fn map(&self) -> io::Result<Arc<dyn Mapping>>;
    /// Maps `len` bytes from `offset` read-write and shared. `offset` is a multiple of [`MAP_ALIGN_BYTES`] and
    /// the range lies within the file, whose length must not change while the mapping lives.
    fn map_mut(&self, offset: u64, len: usize) -> io::Result<Box<dyn MappingMut>>;
}

/// How [`FileSystem::open`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, read only.
    Read,
    /// An existing file, read and write.
    ReadWrite,
    /// A new file, read and write; fails if the name exists.
    CreateNew,
}

/// An exclusive lock on a lock file, released when dropped.
pub trait LockGuard: Send + Sync + Debug {}

/// The file-system operations annals performs.
pub trait FileSystem: Send + Sync + Debug {
    /// Creates a folder and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries of a folder.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a file.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>>;
    /// Renames a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes a folder's entries durable (fsync of the folder).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Takes an exclusive, non-blocking lock on `path` (created if missing). `Ok(None)` if someone holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>>;
    /// An id of the current boot of the operating system: the page cache (and so every write not yet synced)
    /// survives exactly as long as this stays the same. All zeros if unknown (then nothing is trusted across
    /// opens that a sync did not make durable).
    fn boot_id(&self) -> [u8; 16] {
        linux_boot_id().unwrap_or([0; 16])
    }
}

/// Linux's boot id (`/proc/sys/kernel/random/boot_id`, a UUID made at each boot).
fn linux_boot_id() -> Option<[u8; 16]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = uuid::Uuid::parse_str(text.trim()).ok()?;
    Some(*id.as_bytes()).filter(|b| *b != [0; 16])
}

/// The operating system's file system, with `memmap2` for mappings.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFileSystem;

#[derive(Debug)]
struct StdFile(File);

struct StdMapping(memmap2::Mmap);

impl Mapping for StdMapping {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

struct StdMappingMut(memmap2::MmapMut);

impl MappingMut for StdMappingMut {
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

/// An `flock` lock on the lock file, released when dropped.
#[derive(Debug)]
struct StdLock(File);

impl LockGuard for StdLock {}

impl Drop for StdLock {
    fn drop(&mut self) {
        // Unlock before the file is closed. An `flock` lock belongs to the open file description, which a child
        // process shares from its fork until its `exec` (or for good, if it never calls one): closing only this
        // descriptor would leave the folder locked while another thread of this process spawns a process, and
        // an open right after the drop would fail with `Locked`. Unlocking releases it for every sharer. A
        // failure leaves the lock to the close, as before.
        let _ = self.0.unlock();
    }
}

impl FileHandle for StdFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn len_bytes(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn map(&self) -> io::Result<Arc<dyn Mapping>> {
        map_file(&self.0)
    }

    fn map_mut(&self, offset: u64, len: usize) -> io::Result<Box<dyn MappingMut>> {
        map_file_mut(&self.0, offset, len)
    }
}

/// Maps `file` read-only and shared: the one place (with [`map_file_mut`]) where annals maps a file. The
/// simulated file system of [`sim`] maps its in-memory files through here too.
#[allow(unsafe_code, reason = "mapping a file is unsafe in memmap2; the contract is upheld as stated")]
fn map_file(file: &File) -> io::Result<Arc<dyn Mapping>> {
    // SAFETY: the mapping is read-only and annals upholds the mmap contract of `crate::log::segment`: the
    // store holds the exclusive lock on its folder, never truncates or shrinks a mapped file, and only
    // writes past the length it has published to readers, so the bytes a reader is given never change.
    // Another process that ignores the lock and modifies the files breaks this contract (as with every
    // mmap-based engine); a disk error on a mapped page raises SIGBUS (documented on `Store::open`). The
    // simulated file system refuses to change the length of a file once it has been mapped.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(Arc::new(StdMapping(map)))
}

/// Maps `len` bytes of `file` from `offset` read-write and shared; see [`map_file`].
#[allow(unsafe_code, reason = "mapping a file is unsafe in memmap2; the contract is upheld as stated")]
fn map_file_mut(file: &File, offset: u64, len: usize) -> io::Result<Box<dyn MappingMut>> {
    let file_len = file.metadata()?.len();
    if !offset.is_multiple_of(MAP_ALIGN_BYTES) || offset.checked_add(len as u64).is_none_or(|end| end > file_len) {
        let message = format!("cannot map {len} bytes at {offset} of a file of {file_len} bytes");
        return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    }
    // SAFETY: as for `map_file`. The writable mappings of a segment belong to the log writer, which stores
    // only past the length it has published to readers and never changes the file's length.
    let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map_mut(file)? };
    Ok(Box::new(StdMappingMut(map)))
}

impl FileSystem for StdFileSystem {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn FileHandle>> {
        let mut o = OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
        };
        Ok(Box::new(StdFile(o.open(path)?)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(StdLock(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// Creates the folder `dir` and its missing parents durably: after each new folder is created, its parent is
/// synced, so the new entry survives a power loss (RELIABILITY.md rule 1: a file, or a folder, is not there
/// until its directory entry is durable). Folders that exist already are left as they are.
pub fn create_dir_all_durable(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    for at in dir.ancestors() {
        match fs.list_dir(at) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(at),
            // It exists (or cannot be listed, which a folder we create never is): stop here.
            _ => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    fs.create_dir_all(dir)?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Creates `dir/name` holding exactly `bytes`, atomically: written to a temporary name, synced, renamed,
/// and the folder synced. Either the old file (or none) or the complete new one is there after a crash.
pub fn write_file_atomic(fs: &dyn FileSystem, dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    if let Err(e) = write_and_sync_new(fs, &tmp, bytes).and_then(|()| fs.sync_dir(dir)) {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    // The temporary file's creation is durable (above) before the rename, so no crash can rename an older
    // file of the same temporary name into place.
    fs.rename(&tmp, &target)?;
    fs.sync_dir(dir)
}

fn write_and_sync_new(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> io::Result<()> {
    match fs.remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let f = fs.open(path, OpenMode::CreateNew)?;
    f.write_all_at(bytes, 0)?;
    f.sync_data()
}

/// Reads a whole small file (at most `max_bytes`; longer files are an error).
pub fn read_small_file(fs: &dyn FileSystem, path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    let f = fs.open(path, OpenMode::Read)?;
    let len = f.len_bytes()?;
    if len > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {len} bytes, more than {max_bytes}", path.display()),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// The path of a file inside the store folder.
pub fn child(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
