//! Prepares the next segment file in the background, so that rolling to a new segment costs a header write,
//! a sync of one page and a rename instead of zero-filling (and syncing) a whole segment under the writer
//! lock, a stall of tens of milliseconds for every writer.
//!
//! One blank file at a time, under a temporary name (`next-segment.tmp`): a crash leaves at most that file,
//! which the next open removes. Preparation starts when the tail segment is half full; if it fails (a full
//! disk, say) the writer falls back to creating the segment itself, which reports the error without
//! poisoning the store (RELIABILITY.md rule 5).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::fs::FileSystem;
use crate::log::segment::{prepare_blank, BlankFile, ZeroSync};

/// The temporary name of the blank file being prepared.
pub const BLANK_FILE_NAME: &str = "next-segment.tmp";

enum Slot {
    Idle,
    Working,
    Ready(BlankFile),
    Failed,
}

pub struct Preparer {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    slot: Arc<Mutex<Slot>>,
    thread: Option<JoinHandle<()>>,
    zero_sync: ZeroSync,
}

impl Preparer {
    pub fn new(fs: Arc<dyn FileSystem>, dir: PathBuf, zero_sync: ZeroSync) -> Preparer {
        Preparer { fs, dir, slot: Arc::new(Mutex::new(Slot::Idle)), thread: None, zero_sync }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts preparing a blank file of `bytes` unless one is ready or on its way.
    pub fn start(&mut self, bytes: u64) {
        match &*self.slot() {
            Slot::Working => return,
            Slot::Ready(b) if b.bytes == bytes => return,
            _ => {}
        }
        self.join();
        let old = std::mem::replace(&mut *self.slot(), Slot::Working);
        if let Slot::Ready(b) = old {
            let _ = self.fs.remove_file(&b.path);
        }
        let (fs, dir, slot, zero_sync) = (self.fs.clone(), self.dir.clone(), self.slot.clone(), self.zero_sync);
        let spawned = std::thread::Builder::new().name("annals-prepare".into()).spawn(move || {
            let result = prepare_blank(&*fs, &dir, BLANK_FILE_NAME, bytes, zero_sync);
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = match result {
                Ok(b) => Slot::Ready(b),
                Err(_) => Slot::Failed,
            };
        });
        match spawned {
            Ok(t) => self.thread = Some(t),
            Err(_) => *self.slot() = Slot::Idle,
        }
    }

    /// The prepared blank file, if one of `bytes` is ready or being prepared (then this waits for it).
    pub fn take(&mut self, bytes: u64) -> Option<BlankFile> {
        if matches!(*self.slot(), Slot::Working) {
            self.join();
        }
        let mut slot = self.slot();
        match std::mem::replace(&mut *slot, Slot::Idle) {
            Slot::Ready(b) if b.bytes == bytes => Some(b),
            Slot::Ready(b) => {
                let _ = self.fs.remove_file(&b.path);
                None
            }
            _ => None,
        }
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        self.join();
        if let Slot::Ready(b) = std::mem::replace(&mut *self.slot(), Slot::Idle) {
            drop(b.file);
            let _ = self.fs.remove_file(&b.path);
        }
    }
}
