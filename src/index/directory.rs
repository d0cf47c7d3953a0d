//! The stream directory (`streams.dir`): stream -> its newest event (position, version, where its frame is, its
//! id and its chunk entry), an open-addressing hash table with linear probing, used in place through shared
//! mappings.
//!
//! Nothing of the table is read at open: a lookup touches one or two slots (a page of the page cache). A slot
//! holds the stream's hash, and its name if the name fits ([`SLOT_NAME_MAX`] bytes); the caller confirms a match
//! against that name, or for a longer name against the stream name in the event frame the slot points to, so two
//! names with the same hash are told apart exactly (they simply occupy two slots). Each slot has its own
//! checksum: a slot torn by a power loss, or damaged, is never trusted (see [`Probe`]).
//!
//! Concurrency: lookups read through a read-only mapping under the store's state read lock; the indexer thread
//! changes slots through a writable mapping of the same file only under the state write lock, so no reader ever
//! sees a slot being written. Growth builds a new file from the old one (only the indexer changes slots, so the
//! copy is consistent), then the two are swapped under the write lock.

use std::io;
use std::path::Path;
use std::sync::Arc;

#[cfg(doc)]
use crate::format::index::SLOT_NAME_MAX;
use crate::format::index::{self, DirectoryHeader, Slot, SlotRead, DIRECTORY_HEADER_BYTES, SLOT_BYTES};
use crate::fs::{FileHandle, FileSystem, Mapping, MappingMut, OpenMode};

/// The directory's file name inside the store folder.
pub const FILE_NAME: &str = "streams.dir";
/// A new directory starts with this many slots (log2).
const INITIAL_SLOTS_LOG2: u32 = 10;
/// The table grows when more than this fraction (per 1024) of its slots would be in use.
const MAX_LOAD_PER_1024: u64 = 717;

pub struct Directory {
    file: Arc<dyn FileHandle>,
    read: Arc<dyn Mapping>,
    write: Box<dyn MappingMut>,
    header: DirectoryHeader,
    mask: u64,
}

impl Directory {
    /// Creates an empty directory file atomically (replacing any other), durable when this returns.
    pub fn create(fs: &dyn FileSystem, dir: &Path, hash_key: u64, hash_bits: u32) -> io::Result<Directory> {
        let header = DirectoryHeader {
            slot_count_log2: INITIAL_SLOTS_LOG2,
            hash_bits,
            hash_key,
            used: 0,
            synced_through: 0,
            applied_through: 0,
            boot_id: [0; 16],
        };
        write_new(fs, dir, header, |_| Ok(()))?;
        Directory::open(fs, dir)?.map_err(|e| io::Error::other(format!("the directory just written is invalid: {e}")))
    }

    /// Opens the directory file: `Ok(Err(why))` if it is missing or invalid (then the index is rebuilt).
    pub fn open(fs: &dyn FileSystem, dir: &Path) -> io::Result<Result<Directory, String>> {
        let file = match fs.open(&dir.join(FILE_NAME), OpenMode::ReadWrite) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err("no directory file".into())),
            Err(e) => return Err(e),
        };
        let len = file.len_bytes()?;
        if len < DIRECTORY_HEADER_BYTES as u64 {
            return Ok(Err(format!("directory file is {len} bytes")));
        }
        let read = file.map()?;
        let header = match DirectoryHeader::decode(read.bytes()) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let write = file.map_mut(0, usize::try_from(len).map_err(io::Error::other)?)?;
        let mask = header.slot_count() - 1;
        Ok(Ok(Directory { file: file.into(), read, write, header, mask }))
    }

    pub fn header(&self) -> &DirectoryHeader {
        &self.header
    }

    fn slots(&self) -> &[u8] {
        &self.read.bytes()[DIRECTORY_HEADER_BYTES..]
    }

    /// Probes for the stream with hash `hash`: its slot is the first with that hash for which `is_it` says yes
    /// (other streams with the same hash are passed over). Only slots that carry the hash are read and verified
    /// on the way; if the stream is not found, every slot passed is verified too, since a damaged one may have
    /// been the stream's. A table with no empty slot (growth keeps it under 70% full, so only a damaged file has
    /// one) ends the probe once it has gone round, with its home slot reported as damaged.
    pub fn find<E>(&self, hash: u64, mut is_it: impl FnMut(&Slot) -> Result<bool, E>) -> Result<Probe, E> {
        let slots = self.slots();
        let mask = self.mask as usize;
        let home = (spread(hash) & self.mask) as usize;
        let mut damaged = None;
        let mut i = home;
        while let Some(h) = index::slot_hash(slots, i) {
            if h == hash {
                match index::read_slot(slots, i) {
                    SlotRead::Used(s) => {
                        if is_it(&s)? {
                            return Ok(Probe { found: Some((i, s)), damaged, empty: i, full: false });
                        }
                    }
                    SlotRead::Damaged => {
                        damaged.get_or_insert(i);
                    }
                    SlotRead::Empty => unreachable!("slot_hash said it is used"),
                }
            }
            i = (i + 1) & mask;
            if i == home {
                return Ok(Probe { found: None, damaged: Some(home), empty: home, full: true });
            }
        }
        if damaged.is_none() {
            let mut j = home;
            while j != i && damaged.is_none() {
                if index::read_slot(slots, j) == SlotRead::Damaged {
                    damaged = Some(j);
                }
                j = (j + 1) & mask;
            }
        }
        Ok(Probe { found: None, damaged, empty: i, full: false })
    }

    /// Slot `i` as it is, verified (for [`crate::Store::verify`]).
    pub fn slot(&self, i: usize) -> SlotRead {
        index::read_slot(self.slots(), i)
    }

    /// The slot each hash's probe sequence starts at, as a function to use without the directory (it holds while
    /// the directory keeps its size).
    pub fn homes(&self) -> impl Fn(u64) -> u64 + Copy + use<> {
        let mask = self.mask;
        move |hash| spread(hash) & mask
    }

    /// Starts loading the slot where `hash`'s probe starts into the CPU's cache, for an update that comes soon.
    pub fn prefetch_home(&self, hash: u64) {
        let i = (spread(hash) & self.mask) as usize;
        crate::prefetch::range(self.slots(), i * SLOT_BYTES, SLOT_BYTES);
    }

    /// Writes slot `i` (`new`: it was empty). Only under the store's state write lock.
    pub fn set(&mut self, i: usize, slot: &Slot, new: bool) {
        index::write_slot(&mut self.write.bytes_mut()[DIRECTORY_HEADER_BYTES..], i, slot);
        if new {
            self.header.used += 1;
        }
    }

    /// Records in the header that every chunk below `position` is applied (in the page cache, during `boot_id`).
    /// Only under the store's state write lock.
    pub fn set_applied(&mut self, position: u64, boot_id: [u8; 16]) {
        self.header.applied_through = position;
        self.header.boot_id = boot_id;
        self.write_header();
    }

    fn write_header(&mut self) {
        let h = self.header;
        h.encode_into(&mut self.write.bytes_mut()[..DIRECTORY_HEADER_BYTES]);
    }

    /// Makes the slots durable, then records that everything applied is durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.header.synced_through = self.header.applied_through;
        self.write_header();
        self.file.sync_data()
    }

    /// True if `extra` more streams would load the table past its limit.
    pub fn needs_growth(&self, extra: u64) -> bool {
        (self.header.used + extra) * 1024 > self.header.slot_count() * MAX_LOAD_PER_1024
    }

    /// What [`Snapshot::grown`] needs, taken under the state lock and used without it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { read: self.read.clone(), header: self.header }
    }

    /// The file, to sync it without holding the state lock.
    pub fn file(&self) -> Arc<dyn FileHandle> {
        self.file.clone()
    }

    /// Records that every slot applied through `applied` is durable (after a sync of [`Directory::file`]).
    pub fn set_synced(&mut self, applied: u64) {
        self.header.synced_through = applied;
        self.write_header();
    }
}

/// What [`Directory::find`] found.
#[derive(Debug)]
pub struct Probe {
    /// The stream's slot and what it holds.
    pub found: Option<(usize, Slot)>,
    /// A damaged slot the probe passed (a write torn by a power loss, or damage), if any. Looked for among the
    /// slots with the stream's hash, and among all the slots passed if the stream was not found: then the
    /// stream's own slot may be the damaged one.
    pub damaged: Option<usize>,
    /// If the stream was not found and no slot is damaged: the empty slot where the probe stopped.
    pub empty: usize,
    /// The probe went round the whole table without meeting an empty slot (a damaged file).
    pub full: bool,
}

/// The directory as of one moment: only the indexer changes slots, so it stays as it was while the indexer builds
/// a grown copy from it.
pub struct Snapshot {
    read: Arc<dyn Mapping>,
    header: DirectoryHeader,
}

impl Snapshot {
    /// A new, larger directory holding every slot of this one, replacing the file atomically. Durable, with
    /// `synced_through` = `applied_through`. A damaged slot fails it with [`io::ErrorKind::InvalidData`]: where
    /// it belongs in the larger table is not known (its hash is not trusted), and a stream whose slot is lost
    /// would start again at version 0.
    pub fn grown(&self, fs: &dyn FileSystem, dir: &Path, extra: u64) -> io::Result<Directory> {
        let mut log2 = self.header.slot_count_log2 + 1;
        while (self.header.used + extra) * 1024 > (1u64 << log2) * MAX_LOAD_PER_1024 {
            log2 += 1;
        }
        let header =
            DirectoryHeader { slot_count_log2: log2, synced_through: self.header.applied_through, ..self.header };
        let old = &self.read.bytes()[DIRECTORY_HEADER_BYTES..];
        let old_count = self.header.slot_count() as usize;
        write_new(fs, dir, header, |slots| {
            let mask = (1u64 << log2) - 1;
            for i in 0..old_count {
                match index::read_slot(old, i) {
                    SlotRead::Empty => {}
                    SlotRead::Damaged => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("slot {i} of {FILE_NAME} is damaged (checksum mismatch)"),
                        ));
                    }
                    SlotRead::Used(s) => {
                        let mut j = (spread(s.hash) & mask) as usize;
                        while index::slot_hash(slots, j).is_some() {
                            j = (j + 1) & mask as usize;
                        }
                        index::write_slot(slots, j, &s);
                    }
                }
            }
            Ok(())
        })?;
        Directory::open(fs, dir)?.map_err(|e| io::Error::other(format!("the grown directory is invalid: {e}")))
    }
}

/// The slot a hash starts probing at comes from its high bits mixed down, so that tests which keep only a few
/// low bits of the hash still spread over the table the way real hashes do.
fn spread(hash: u64) -> u64 {
    hash ^ (hash >> 29) ^ (hash >> 47)
}

/// Writes a directory file with `header` and the slots `fill` makes, through a temporary file, a sync and a
/// rename (then the folder is synced).
fn write_new(
    fs: &dyn FileSystem,
    dir: &Path,
    header: DirectoryHeader,
    fill: impl FnOnce(&mut [u8]) -> io::Result<()>,
) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    match fs.remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let file = fs.open(&tmp, OpenMode::CreateNew)?;
        // Size the file by writing its last byte range; the rest reads as zeros (empty slots).
        let len = header.file_bytes();
        let mut head = vec![0u8; DIRECTORY_HEADER_BYTES];
        header.encode_into(&mut head);
        file.write_all_at(&[0u8; SLOT_BYTES], len - SLOT_BYTES as u64)?;
        {
            let mut map = file.map_mut(0, usize::try_from(len).map_err(io::Error::other)?)?;
            let bytes = map.bytes_mut();
            let used = bytes[DIRECTORY_HEADER_BYTES..].len() / SLOT_BYTES * SLOT_BYTES;
            fill(&mut bytes[DIRECTORY_HEADER_BYTES..DIRECTORY_HEADER_BYTES + used])?;
            bytes[..DIRECTORY_HEADER_BYTES].copy_from_slice(&head);
        }
        file.sync_data()?;
        fs.sync_dir(dir)
    })();
    if let Err(e) = result {
        let _ = fs.remove_file(&tmp);
        return Err(e);
    }
    fs.rename(&tmp, &dir.join(FILE_NAME))?;
    fs.sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::{SlotEvent, NO_ENTRY};
    use crate::fs::StdFileSystem;

    /// A table with no empty slot exists only in a damaged file (growth keeps it under 70% full): a probe goes
    /// round it once and reports it, instead of looping for ever under the state lock.
    #[test]
    fn a_probe_of_a_full_table_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Directory::create(&StdFileSystem, dir.path(), 1, 64).unwrap();
        let event = SlotEvent { position: 0, version: 0, segment: 0, offset: 64, id: [0; 16], entry: NO_ENTRY };
        let count = d.header().slot_count() as usize;
        for i in 0..count {
            // Hashes whose probes start anywhere: none is 42's, so every probe for 42 passes every slot.
            d.set(i, &Slot::new(&format!("s{i}"), 1000 + i as u64, event), true);
        }
        let probe = d.find(42, |_| Ok::<_, ()>(false)).unwrap();
        assert!(probe.full && probe.found.is_none() && probe.damaged.is_some());
        let probe = d.find(1000, |s| Ok::<_, ()>(s.hash == 1000)).unwrap();
        assert_eq!(probe.found.map(|(i, _)| i), Some(0), "a stream in a full table is still found");
    }
}
