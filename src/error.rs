//! The one error type of the crate.
//!
//! Bugs panic; everything that can go wrong because of a caller, a disk or another process is an [`Error`].
//! Corruption always names the file, the byte offset and what was expected there.

use std::path::PathBuf;

use crate::ExpectedVersion;

/// Everything that can go wrong in annals.
///
/// ```
/// use annals::{Error, ExpectedVersion, NewEvent, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// store.append("account-1", ExpectedVersion::NoStream, &[NewEvent::new("Opened", "x")])?;
/// match store.append("account-1", ExpectedVersion::NoStream, &[NewEvent::new("Opened", "x")]) {
///     Err(Error::WrongExpectedVersion { actual, .. }) => assert_eq!(actual, Some(0)),
///     other => panic!("expected a conflict, got {other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stream was not at the version the append expected. Nothing was written.
    #[error("wrong expected version for stream {stream:?}: expected {expected:?}, actual {actual:?}")]
    WrongExpectedVersion {
        /// The stream whose check failed (the first such part of an `append_many`).
        stream: String,
        /// What the caller expected.
        expected: ExpectedVersion,
        /// The stream's last version, `None` if the stream does not exist.
        actual: Option<u64>,
    },

    /// Another `Store` (in this process or another) holds the store's lock file.
    #[error("the store at {path:?} is locked by another open store")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// A caller passed something annals does not accept. Nothing was written.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What was wrong, in words.
        reason: String,
    },

    /// A checksum or format check failed on data annals wrote earlier.
    #[error("corrupt data in {file:?} at offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset within the file of the damaged structure.
        offset: u64,
        /// What was expected there and what was found.
        reason: String,
    },

    /// A write or sync of the log failed earlier; the outcome of the appends in flight is unknown. Writes fail
    /// until the store is reopened; reads of durable data keep working.
    #[error("the store is poisoned by an earlier write or sync failure; reopen it")]
    Poisoned,

    /// The folder is not an annals store, or was written by a newer format version.
    #[error("incompatible store at {path:?}: {reason}")]
    Incompatible {
        /// The folder or file that was rejected.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn invalid(reason: impl Into<String>) -> Error {
        Error::InvalidInput { reason: reason.into() }
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt { file: file.into(), offset, reason: reason.into() }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
