//! Every bound annals enforces, in one place, with the compile-time assertions that tie them together.
//!
//! A limit exists so that nothing read from a caller or from disk can make annals allocate without bound or
//! overflow an on-disk field. Public calls check these before anything is written and answer
//! `Error::InvalidInput` when one is exceeded. Decoders check the same bounds again on the read path.

/// Longest stream name, in bytes of UTF-8. Names must be at least one byte long.
pub const STREAM_NAME_BYTES_MAX: usize = 255;

/// Longest event type, in bytes of UTF-8. Types must be at least one byte long.
pub const EVENT_TYPE_BYTES_MAX: usize = 255;

/// Largest payload plus metadata of one event, in bytes (16 MiB).
pub const EVENT_BODY_BYTES_MAX: usize = 16 << 20;

/// Most events in one append (or one `append_many`, all parts together).
pub const BATCH_EVENTS_MAX: usize = 10_000;

/// Largest sum of payload and metadata bytes of one append (32 MiB). Names, types and frame headers come on
/// top (at most about 6 MiB more at the event limit); the segment an append goes to is sized to fit it.
pub const BATCH_BODY_BYTES_MAX: usize = 32 << 20;

/// Most parts in one `append_many`.
pub const BATCH_STREAMS_MAX: usize = BATCH_EVENTS_MAX;

/// Smallest configurable segment size (1 MiB).
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;

/// Largest configurable segment size (1 GiB). Frame offsets inside a segment are stored in 32 bits.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 30;

/// Default segment size (64 MiB).
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;

/// Segment files are sized (and zero-filled) in multiples of this many bytes.
pub const SEGMENT_FILL_CHUNK_BYTES: usize = 4096;

const _: () = assert!(SEGMENT_BYTES_MIN <= SEGMENT_BYTES_DEFAULT && SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!(SEGMENT_BYTES_MAX <= u32::MAX as u64);
const _: () = assert!(EVENT_BODY_BYTES_MAX <= BATCH_BODY_BYTES_MAX);
const _: () = assert!(STREAM_NAME_BYTES_MAX <= u8::MAX as usize && EVENT_TYPE_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(SEGMENT_BYTES_MIN.is_multiple_of(SEGMENT_FILL_CHUNK_BYTES as u64));
