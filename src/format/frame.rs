//! Record frames: the unit of the log. Every frame starts at a 16-byte aligned offset of its segment, carries
//! its own length and position, and a checksum over all its bytes seeded with the segment's salt.
//!
//! ```text
//! offset size field
//!  0      4   checksum        crc32 of bytes[4..frame_bytes], initial value = salt ^ (salt >> 32), low 32 bits
//!  4      4   frame_bytes     u32, whole frame incl. padding; a multiple of 16, >= 80
//!  8      1   kind            1 = event, 2 = clean-close marker, 3 = segment footer
//!  9      1   stream_bytes    u8, 1..=255 for events, 0 otherwise
//! 10      1   type_bytes      u8, 1..=255 for events, 0 otherwise
//! 11      1   reserved        zero
//! 12      4   metadata_bytes  u32
//! 16      4   payload_bytes   u32
//! 20      4   reserved        zero
//! 24      8   position        event: its position; marker and footer: the position the next event gets
//! 32      8   batch_end       event: the position just past the last event of its append; others: = position
//! 40      8   durable         every position below this was durable when the frame was written
//! 48      8   version         event: its version in its stream; footer: events in the segment; marker: 0
//! 56      8   timestamp_us    microseconds since the Unix epoch, set at append
//! 64     16   event_id        UUID bytes (events), zero otherwise
//! 80          stream name, event type, metadata, zero padding to 16, payload, zero padding to 16
//! ```
//!
//! An append of several events is written as consecutive event frames that all carry the same `batch_end`;
//! recovery keeps an append only if every one of its frames is present and valid, which makes appends
//! all-or-nothing after a crash. The payload starts at a 16-byte aligned offset, so typed zero-copy access to
//! it from a page-aligned mapping needs no copy.

use super::{align_up, read_u32, read_u64, write_u32, write_u64};
use crate::limits;

/// Size of the fixed frame header in bytes.
pub const HEADER_BYTES: usize = 80;

const CHECKSUM_AT: usize = 0;
const LEN_AT: usize = CHECKSUM_AT + 4;
const KIND_AT: usize = LEN_AT + 4;
const STREAM_LEN_AT: usize = KIND_AT + 1;
const TYPE_LEN_AT: usize = STREAM_LEN_AT + 1;
const METADATA_LEN_AT: usize = TYPE_LEN_AT + 1 + 1;
const PAYLOAD_LEN_AT: usize = METADATA_LEN_AT + 4;
const POSITION_AT: usize = PAYLOAD_LEN_AT + 4 + 4;
const BATCH_END_AT: usize = POSITION_AT + 8;
const DURABLE_AT: usize = BATCH_END_AT + 8;
const VERSION_AT: usize = DURABLE_AT + 8;
const TIMESTAMP_AT: usize = VERSION_AT + 8;
const ID_AT: usize = TIMESTAMP_AT + 8;
const _: () = assert!(ID_AT + 16 == HEADER_BYTES);
const _: () = assert!(HEADER_BYTES.is_multiple_of(super::FRAME_ALIGN_BYTES));

/// Largest frame this build writes or accepts: one event at the body limit with the longest names.
pub const FRAME_BYTES_MAX: usize = align_up(
    align_up(
        HEADER_BYTES + limits::STREAM_NAME_BYTES_MAX + limits::EVENT_TYPE_BYTES_MAX + limits::EVENT_BODY_BYTES_MAX,
    ) + super::FRAME_ALIGN_BYTES,
);
const _: () = assert!(FRAME_BYTES_MAX < u32::MAX as usize);

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// One event of an append.
    Event = 1,
    /// Written at a clean close: everything before it was durable.
    CloseMarker = 2,
    /// The last frame of a sealed segment.
    Footer = 3,
}

impl FrameKind {
    fn from_u8(v: u8) -> Option<FrameKind> {
        match v {
            1 => Some(FrameKind::Event),
            2 => Some(FrameKind::CloseMarker),
            3 => Some(FrameKind::Footer),
            _ => None,
        }
    }
}

/// The fields of an event frame, borrowed from the caller, for encoding.
#[derive(Debug, Clone, Copy)]
pub struct EventFields<'a> {
    pub position: u64,
    pub batch_end: u64,
    pub durable: u64,
    pub version: u64,
    pub timestamp_us: u64,
    pub id: [u8; 16],
    pub stream: &'a [u8],
    pub event_type: &'a [u8],
    pub metadata: &'a [u8],
    pub payload: &'a [u8],
}

/// Bytes the event frame for these lengths takes, including padding.
#[inline]
pub const fn event_frame_bytes(stream: usize, event_type: usize, metadata: usize, payload: usize) -> usize {
    align_up(align_up(HEADER_BYTES + stream + event_type + metadata) + payload)
}

fn seal(frame: &mut [u8], salt: u64) {
    let crc = checksum_of(frame, salt);
    write_u32(frame, CHECKSUM_AT, crc);
}

/// The frame checksum: CRC-32 of every byte after the checksum field, one contiguous run, with the segment's
/// salt folded to 32 bits as the initial value.
fn checksum_of(frame: &[u8], salt: u64) -> u32 {
    FrameHasher::new(salt).checksum(frame)
}

/// The checksum of one segment's frames, set up once. Making a CRC hasher asks which CPU features are there;
/// a segment keeps one of these so that reading a frame only copies it.
#[derive(Clone)]
pub struct FrameHasher(crc32fast::Hasher);

impl FrameHasher {
    /// The hasher for frames sealed with `salt`.
    pub fn new(salt: u64) -> FrameHasher {
        FrameHasher(crc32fast::Hasher::new_with_initial(fold_salt(salt)))
    }

    /// The checksum of `frame` (the whole frame; its checksum field is not covered).
    #[inline]
    fn checksum(&self, frame: &[u8]) -> u32 {
        let mut h = self.0.clone();
        h.update(&frame[LEN_AT..]);
        h.finalize()
    }
}

impl std::fmt::Debug for FrameHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameHasher")
    }
}

/// The 32-bit checksum seed of a segment salt.
#[inline]
pub const fn fold_salt(salt: u64) -> u32 {
    (salt ^ (salt >> 32)) as u32
}

/// Appends one event frame to `out`. The caller has checked the limits; they are asserted here.
pub fn encode_event(out: &mut Vec<u8>, salt: u64, e: &EventFields<'_>) {
    let start = out.len();
    assert!(start.is_multiple_of(super::FRAME_ALIGN_BYTES), "frames start 16-byte aligned");
    let total = event_frame_bytes(e.stream.len(), e.event_type.len(), e.metadata.len(), e.payload.len());
    out.resize(start + total, 0);
    encode_event_into(&mut out[start..], salt, e);
}

/// Encodes one event frame into `out`, which must be exactly [`event_frame_bytes`] long for these fields.
/// Every byte of `out` is written (padding included), so it need not be zeroed first.
pub fn encode_event_into(out: &mut [u8], salt: u64, e: &EventFields<'_>) {
    encode_event_with(out, &FrameHasher::new(salt), e);
}

/// [`encode_event_into`] with the segment's hasher made beforehand (the append path).
pub fn encode_event_with(out: &mut [u8], hasher: &FrameHasher, e: &EventFields<'_>) {
    assert!(!e.stream.is_empty() && e.stream.len() <= limits::STREAM_NAME_BYTES_MAX);
    assert!(!e.event_type.is_empty() && e.event_type.len() <= limits::EVENT_TYPE_BYTES_MAX);
    assert!(e.metadata.len() + e.payload.len() <= limits::EVENT_BODY_BYTES_MAX);
    assert!(e.position < e.batch_end && e.durable <= e.position);
    let total = event_frame_bytes(e.stream.len(), e.event_type.len(), e.metadata.len(), e.payload.len());
    assert_eq!(out.len(), total, "the frame buffer has the frame's exact size");
    let names_at = HEADER_BYTES;
    let type_at = names_at + e.stream.len();
    let metadata_at = type_at + e.event_type.len();
    let metadata_end = metadata_at + e.metadata.len();
    let payload_at = align_up(metadata_end);
    let payload_end = payload_at + e.payload.len();
    {
        let h = &mut out[..HEADER_BYTES];
        write_u32(h, LEN_AT, total as u32);
        write_u32(h, CHECKSUM_AT, 0);
        h[KIND_AT] = FrameKind::Event as u8;
        h[STREAM_LEN_AT] = e.stream.len() as u8;
        h[TYPE_LEN_AT] = e.event_type.len() as u8;
        h[TYPE_LEN_AT + 1] = 0;
        write_u32(h, METADATA_LEN_AT, e.metadata.len() as u32);
        write_u32(h, PAYLOAD_LEN_AT, e.payload.len() as u32);
        write_u32(h, PAYLOAD_LEN_AT + 4, 0);
        write_u64(h, POSITION_AT, e.position);
        write_u64(h, BATCH_END_AT, e.batch_end);
        write_u64(h, DURABLE_AT, e.durable);
        write_u64(h, VERSION_AT, e.version);
        write_u64(h, TIMESTAMP_AT, e.timestamp_us);
        h[ID_AT..ID_AT + 16].copy_from_slice(&e.id);
    }
    out[names_at..type_at].copy_from_slice(e.stream);
    out[type_at..metadata_at].copy_from_slice(e.event_type);
    out[metadata_at..metadata_end].copy_from_slice(e.metadata);
    out[metadata_end..payload_at].fill(0);
    out[payload_at..payload_end].copy_from_slice(e.payload);
    out[payload_end..].fill(0);
    let crc = hasher.checksum(out);
    write_u32(out, CHECKSUM_AT, crc);
}

/// Encodes a header-only frame (clean-close marker or segment footer) into `out` (exactly
/// [`HEADER_BYTES`] long).
pub fn encode_marker_into(
    out: &mut [u8],
    salt: u64,
    kind: FrameKind,
    next_position: u64,
    count: u64,
    timestamp_us: u64,
) {
    assert!(kind != FrameKind::Event);
    assert_eq!(out.len(), HEADER_BYTES);
    out.fill(0);
    write_u32(out, LEN_AT, HEADER_BYTES as u32);
    out[KIND_AT] = kind as u8;
    write_u64(out, POSITION_AT, next_position);
    write_u64(out, BATCH_END_AT, next_position);
    write_u64(out, DURABLE_AT, next_position);
    write_u64(out, VERSION_AT, count);
    write_u64(out, TIMESTAMP_AT, timestamp_us);
    seal(out, salt);
}

/// Appends a header-only frame (clean-close marker or segment footer) to `out`.
pub fn encode_marker(out: &mut Vec<u8>, salt: u64, kind: FrameKind, next_position: u64, count: u64, timestamp_us: u64) {
    let start = out.len();
    assert!(start.is_multiple_of(super::FRAME_ALIGN_BYTES), "frames start 16-byte aligned");
    out.resize(start + HEADER_BYTES, 0);
    encode_marker_into(&mut out[start..], salt, kind, next_position, count, timestamp_us);
}

/// A frame decoded from untrusted bytes: every field checked against the bytes present and the checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub frame_bytes: u32,
    pub position: u64,
    pub batch_end: u64,
    pub durable: u64,
    /// Event: its stream version. Footer: number of events in the segment. Marker: zero.
    pub version: u64,
    pub timestamp_us: u64,
    pub id: [u8; 16],
    pub stream_bytes: u8,
    pub type_bytes: u8,
    pub metadata_bytes: u32,
    pub payload_bytes: u32,
}

impl Frame {
    /// Offset of the stream name from the frame start.
    #[inline]
    pub fn stream_at(&self) -> usize {
        HEADER_BYTES
    }
    #[inline]
    pub fn type_at(&self) -> usize {
        HEADER_BYTES + self.stream_bytes as usize
    }
    #[inline]
    pub fn metadata_at(&self) -> usize {
        self.type_at() + self.type_bytes as usize
    }
    #[inline]
    pub fn payload_at(&self) -> usize {
        align_up(self.metadata_at() + self.metadata_bytes as usize)
    }
}

/// The header of an event frame that has already been verified ([`decode`]), read in place: what a
/// [`crate::RecordedEvent`] keeps instead of a decoded copy.
#[derive(Clone, Copy)]
pub struct EventHeader<'a>(&'a [u8; HEADER_BYTES]);

impl<'a> EventHeader<'a> {
    /// The header at the start of `frame`, which holds a verified event frame.
    #[inline]
    pub fn new(frame: &'a [u8]) -> EventHeader<'a> {
        EventHeader(frame.first_chunk::<HEADER_BYTES>().expect("a verified frame holds its header"))
    }
    /// The event's position in the store.
    #[inline]
    pub fn position(self) -> u64 {
        read_u64(self.0, POSITION_AT)
    }
    /// The event's version in its stream.
    #[inline]
    pub fn version(self) -> u64 {
        read_u64(self.0, VERSION_AT)
    }
    /// When the event was appended, in microseconds since the Unix epoch.
    #[inline]
    pub fn timestamp_us(self) -> u64 {
        read_u64(self.0, TIMESTAMP_AT)
    }
    /// The event id's bytes.
    #[inline]
    pub fn id(self) -> [u8; 16] {
        *self.0[ID_AT..].first_chunk::<16>().expect("the header ends with the id")
    }
    /// Where the stream name is, from the frame start, and its length.
    #[inline]
    pub fn stream(self) -> (usize, usize) {
        (HEADER_BYTES, self.0[STREAM_LEN_AT] as usize)
    }
    /// Where the event type is, from the frame start, and its length.
    #[inline]
    pub fn event_type(self) -> (usize, usize) {
        (HEADER_BYTES + self.0[STREAM_LEN_AT] as usize, self.0[TYPE_LEN_AT] as usize)
    }
    /// Where the metadata is, from the frame start, and its length.
    #[inline]
    pub fn metadata(self) -> (usize, usize) {
        let (at, len) = self.event_type();
        (at + len, read_u32(self.0, METADATA_LEN_AT) as usize)
    }
    /// Where the payload is, from the frame start (16-byte aligned), and its length.
    #[inline]
    pub fn payload(self) -> (usize, usize) {
        let (at, len) = self.metadata();
        (align_up(at + len), read_u32(self.0, PAYLOAD_LEN_AT) as usize)
    }
}

/// Why bytes at an offset are not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is zero: nothing was ever written here (preallocated space), or it was zeroed.
    Empty,
    /// Fewer bytes remain than the frame's header or its length claims.
    Truncated,
    /// The length or a field is impossible (not aligned, over the limits, inconsistent lengths, unknown kind).
    BadLayout(&'static str),
    /// The checksum does not match the bytes.
    BadChecksum,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Empty => write!(f, "no frame (zero length)"),
            FrameError::Truncated => write!(f, "frame runs past the end of the segment"),
            FrameError::BadLayout(why) => write!(f, "invalid frame: {why}"),
            FrameError::BadChecksum => write!(f, "frame checksum mismatch"),
        }
    }
}

/// Reads only the length field of the frame at the start of `bytes`, if the bytes reach that far.
#[inline]
pub fn peek_frame_bytes(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= LEN_AT + 4).then(|| read_u32(bytes, LEN_AT))
}

/// Decodes the frame at the start of `bytes` (which may extend past the frame) and verifies its checksum.
pub fn decode(bytes: &[u8], salt: u64) -> Result<Frame, FrameError> {
    decode_with(bytes, &FrameHasher::new(salt))
}

/// [`decode`] with the segment's hasher made beforehand (the read paths).
#[inline]
pub fn decode_with(bytes: &[u8], hasher: &FrameHasher) -> Result<Frame, FrameError> {
    let frame = decode_unverified(bytes)?;
    let whole = &bytes[..frame.frame_bytes as usize];
    if hasher.checksum(whole) != read_u32(whole, CHECKSUM_AT) {
        return Err(FrameError::BadChecksum);
    }
    Ok(frame)
}

/// Whether the frame at the start of `bytes` says it is an event: its kind byte only, nothing else is checked.
/// The read paths ask this before [`verify_event`], which refuses every other kind.
#[inline]
pub fn says_event(bytes: &[u8]) -> bool {
    bytes.get(KIND_AT) == Some(&(FrameKind::Event as u8))
}

/// Verifies the event frame at the start of `bytes` for a reader and returns its header, read in place, and
/// its length. It checks what [`decode_with`] checks of an event (every length against the others and against
/// `bytes`, reserved and padding bytes zero, position below batch end, the checksum) and also that the stream
/// name and event type are UTF-8; a frame of another kind is refused.
///
/// The read paths call this once per event, so it copies nothing and folds the header's checks into one test.
#[inline]
pub fn verify_event<'a>(bytes: &'a [u8], hasher: &FrameHasher) -> Result<(EventHeader<'a>, usize), FrameError> {
    let Some(header) = bytes.first_chunk::<HEADER_BYTES>() else { return Err(FrameError::Truncated) };
    let len = read_u32(header, LEN_AT) as usize;
    if len > bytes.len() {
        return Err(FrameError::Truncated);
    }
    let (stream, event_type) = (header[STREAM_LEN_AT] as usize, header[TYPE_LEN_AT] as usize);
    let (metadata, payload) = (read_u32(header, METADATA_LEN_AT) as usize, read_u32(header, PAYLOAD_LEN_AT) as usize);
    // Bitwise `|`, not `||`: every test is cheap and none guards another, so one branch serves them all. The
    // body limit comes first in meaning: it bounds the sum below, which cannot overflow with it in place.
    let bad = (header[KIND_AT] != FrameKind::Event as u8)
        | (header[TYPE_LEN_AT + 1] != 0)
        | (read_u32(header, PAYLOAD_LEN_AT + 4) != 0)
        | (stream == 0)
        | (event_type == 0)
        | (metadata + payload > limits::EVENT_BODY_BYTES_MAX)
        | (read_u64(header, POSITION_AT) >= read_u64(header, BATCH_END_AT));
    if bad || event_frame_bytes(stream, event_type, metadata, payload) != len {
        // The slow path says which test failed.
        return Err(decode_unverified(bytes).err().unwrap_or(FrameError::BadLayout("not an event frame")));
    }
    // `len` is a multiple of 16 of at least HEADER_BYTES: it equals the aligned size computed from the lengths.
    let frame = &bytes[..len];
    let names_end = HEADER_BYTES + stream + event_type + metadata;
    if !zero_from(frame, names_end) || !zero_from(frame, align_up(names_end) + payload) {
        return Err(FrameError::BadLayout("padding bytes not zero"));
    }
    if hasher.checksum(frame) != read_u32(frame, CHECKSUM_AT) {
        return Err(FrameError::BadChecksum);
    }
    if !names_are_utf8(frame, stream, event_type) {
        return Err(FrameError::BadLayout("stream name or event type is not UTF-8"));
    }
    Ok((EventHeader(header), len))
}

/// Whether the stream name (`stream` bytes from [`HEADER_BYTES`]) and the event type after it are UTF-8, in
/// the event frame `frame`, whose lengths have been checked.
#[inline]
pub fn names_are_utf8(frame: &[u8], stream: usize, event_type: usize) -> bool {
    // Names are almost always ASCII. The frame is whole 16-byte blocks from a 16-byte boundary, so the blocks
    // that hold the names can be read whole, the bytes past the names masked off: one OR per block.
    let end = HEADER_BYTES + stream + event_type;
    let block_at = |at: usize| u128::from_le_bytes(*frame[at..].first_chunk::<16>().expect("whole 16-byte blocks"));
    let mut high_bits = 0u128;
    let mut at = HEADER_BYTES;
    while at + 16 <= end {
        high_bits |= block_at(at);
        at += 16;
    }
    if at < end {
        high_bits |= block_at(at) & (u128::MAX >> (8 * (16 - (end - at))));
    }
    high_bits & u128::from_le_bytes([0x80; 16]) == 0 || names_are_utf8_slow(&frame[HEADER_BYTES..end], stream)
}

/// [`names_are_utf8`] for names with a byte outside ASCII.
#[cold]
fn names_are_utf8_slow(names: &[u8], stream: usize) -> bool {
    let (stream, event_type) = names.split_at(stream);
    std::str::from_utf8(stream).is_ok() && std::str::from_utf8(event_type).is_ok()
}

/// What [`peek_event`] reads of an event frame.
#[derive(Debug, Clone, Copy)]
pub struct EventPeek {
    pub position: u64,
    pub version: u64,
    pub id: [u8; 16],
}

/// The position, version, id and stream name of the event frame at the start of `bytes`, with only the checks
/// that slicing the name needs: no checksum, no check of the other lengths or of the padding. For the stream
/// index, which compares the name, position and version with what it expects of the frame (a damaged frame
/// that still matches all three is no more trusted by [`decode_unverified`], which skips the checksum too).
#[inline]
pub fn peek_event(bytes: &[u8]) -> Result<(EventPeek, &[u8]), FrameError> {
    let Some(header) = bytes.first_chunk::<HEADER_BYTES>() else { return Err(FrameError::Truncated) };
    let len = read_u32(header, LEN_AT) as usize;
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if header[KIND_AT] != FrameKind::Event as u8 {
        return Err(FrameError::BadLayout("not an event frame"));
    }
    let name_end = HEADER_BYTES + header[STREAM_LEN_AT] as usize;
    if name_end == HEADER_BYTES || name_end > len {
        return Err(FrameError::BadLayout("stream name length"));
    }
    let name = bytes.get(HEADER_BYTES..name_end).ok_or(FrameError::Truncated)?;
    let peek = EventPeek {
        position: read_u64(header, POSITION_AT),
        version: read_u64(header, VERSION_AT),
        id: *header[ID_AT..].first_chunk::<16>().expect("the header ends with the id"),
    };
    Ok((peek, name))
}

/// Decodes and bounds-checks the frame at the start of `bytes` without verifying its checksum. Every length is
/// still checked against the bytes present, so the result can be sliced without panicking.
#[inline]
pub fn decode_unverified(bytes: &[u8]) -> Result<Frame, FrameError> {
    let Some(header) = bytes.first_chunk::<HEADER_BYTES>() else {
        return if bytes.len() >= LEN_AT + 4 && read_u32(bytes, LEN_AT) == 0 {
            Err(FrameError::Empty)
        } else {
            Err(FrameError::Truncated)
        };
    };
    let frame_bytes = read_u32(header, LEN_AT);
    if frame_bytes == 0 {
        return Err(FrameError::Empty);
    }
    let len = frame_bytes as usize;
    if !len.is_multiple_of(super::FRAME_ALIGN_BYTES) || !(HEADER_BYTES..=FRAME_BYTES_MAX).contains(&len) {
        return Err(FrameError::BadLayout("frame length"));
    }
    if len > bytes.len() {
        return Err(FrameError::Truncated);
    }
    let kind = FrameKind::from_u8(header[KIND_AT]).ok_or(FrameError::BadLayout("frame kind"))?;
    // Reserved fields are zero in this format version: a frame with anything there was not written by it.
    if header[TYPE_LEN_AT + 1] != 0 || read_u32(header, PAYLOAD_LEN_AT + 4) != 0 {
        return Err(FrameError::BadLayout("reserved bytes not zero"));
    }
    let frame = Frame {
        kind,
        frame_bytes,
        position: read_u64(header, POSITION_AT),
        batch_end: read_u64(header, BATCH_END_AT),
        durable: read_u64(header, DURABLE_AT),
        version: read_u64(header, VERSION_AT),
        timestamp_us: read_u64(header, TIMESTAMP_AT),
        id: *header[ID_AT..].first_chunk::<16>().expect("the header ends with the id"),
        stream_bytes: header[STREAM_LEN_AT],
        type_bytes: header[TYPE_LEN_AT],
        metadata_bytes: read_u32(header, METADATA_LEN_AT),
        payload_bytes: read_u32(header, PAYLOAD_LEN_AT),
    };
    match kind {
        FrameKind::Event => {
            if frame.stream_bytes == 0 || frame.type_bytes == 0 {
                return Err(FrameError::BadLayout("empty stream name or event type"));
            }
            let body = frame.metadata_bytes as u64 + frame.payload_bytes as u64;
            if body > limits::EVENT_BODY_BYTES_MAX as u64 {
                return Err(FrameError::BadLayout("event body over the limit"));
            }
            let expected = event_frame_bytes(
                frame.stream_bytes as usize,
                frame.type_bytes as usize,
                frame.metadata_bytes as usize,
                frame.payload_bytes as usize,
            );
            if expected != len {
                return Err(FrameError::BadLayout("frame length disagrees with field lengths"));
            }
            if frame.position >= frame.batch_end {
                return Err(FrameError::BadLayout("position not below batch end"));
            }
            // The alignment padding (before the payload, and after it to the frame's end) is zero as written.
            let names_end = frame.metadata_at() + frame.metadata_bytes as usize;
            let payload_end = frame.payload_at() + frame.payload_bytes as usize;
            if !zero_from(&bytes[..len], names_end) || !zero_from(&bytes[..len], payload_end) {
                return Err(FrameError::BadLayout("padding bytes not zero"));
            }
        }
        FrameKind::CloseMarker | FrameKind::Footer => {
            if len != HEADER_BYTES
                || frame.stream_bytes != 0
                || frame.type_bytes != 0
                || frame.metadata_bytes != 0
                || frame.payload_bytes != 0
            {
                return Err(FrameError::BadLayout("marker with a body"));
            }
        }
    }
    Ok(frame)
}

/// Whether the bytes of `frame` from `at` up to the next 16-byte boundary (alignment padding) are all zero.
/// `frame` starts at a 16-byte boundary, is a multiple of 16 long, and `at` is at least 16 and within it.
#[inline(always)]
fn zero_from(frame: &[u8], at: usize) -> bool {
    let skip = at % super::FRAME_ALIGN_BYTES;
    if skip == 0 {
        return true;
    }
    // The 16-byte block that holds the padding, read as one little-endian word: byte i is bits 8i..8i+8.
    let block = at - skip;
    let word = u128::from_le_bytes(*frame[block..].first_chunk::<16>().expect("frames are whole 16-byte blocks"));
    word >> (8 * skip) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_frame_with_nonzero_padding_is_refused_even_with_a_valid_checksum() {
        // Found by the frame_decode fuzz target: nonzero alignment padding after the payload decoded, so the
        // frame did not re-encode to its own bytes.
        let mut out = Vec::new();
        let fields = EventFields {
            position: 0,
            batch_end: 1,
            durable: 0,
            version: 0,
            timestamp_us: 0,
            id: [1; 16],
            stream: b"s",
            event_type: b"E",
            metadata: b"",
            payload: b"xyz",
        };
        encode_event(&mut out, 9, &fields);
        assert!(decode(&out, 9).is_ok());
        let last = out.len() - 1;
        out[last] = 0x29;
        let crc = checksum_of(&out, 9);
        out[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&out, 9), Err(FrameError::BadLayout("padding bytes not zero")));
    }

    #[test]
    fn a_frame_with_nonzero_reserved_bytes_is_refused_even_with_a_valid_checksum() {
        // Found by the frame_decode fuzz target: a clean-close marker with a nonzero reserved byte decoded and
        // re-encoded to different bytes.
        for reserved_at in [TYPE_LEN_AT + 1, PAYLOAD_LEN_AT + 4, PAYLOAD_LEN_AT + 7] {
            let mut out = Vec::new();
            encode_marker(&mut out, 9, FrameKind::CloseMarker, 2, 0, 0);
            assert!(decode(&out, 9).is_ok());
            out[reserved_at] = 0x5b;
            let sum = checksum_of(&out, 9);
            out[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_le_bytes());
            assert_eq!(decode(&out, 9), Err(FrameError::BadLayout("reserved bytes not zero")), "byte {reserved_at}");
        }
    }

    #[test]
    fn a_peek_reads_what_was_written_and_refuses_what_it_cannot_slice() {
        let mut out = Vec::new();
        encode_event(&mut out, 9, &fields(b"payload", b"meta"));
        let (peek, name) = peek_event(&out).unwrap();
        assert_eq!((peek.position, peek.version, peek.id, name), (7, 3, [0xab; 16], &b"account-42"[..]));
        // Every prefix too short for the header or the name is refused, never sliced past its end.
        for cut in 0..HEADER_BYTES + 10 {
            assert!(peek_event(&out[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = out.clone();
        bad[STREAM_LEN_AT] = 0;
        assert_eq!(peek_event(&bad).err(), Some(FrameError::BadLayout("stream name length")));
        let mut bad = out.clone();
        bad[LEN_AT..LEN_AT + 4].copy_from_slice(&(HEADER_BYTES as u32 + 4).to_le_bytes());
        assert_eq!(peek_event(&bad).err(), Some(FrameError::BadLayout("stream name length")), "name past the frame");
        let mut bad = out.clone();
        bad[LEN_AT..LEN_AT + 4].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(peek_event(&bad).err(), Some(FrameError::Empty));
        let mut marker = Vec::new();
        encode_marker(&mut marker, 9, FrameKind::Footer, 2, 0, 0);
        assert_eq!(peek_event(&marker).err(), Some(FrameError::BadLayout("not an event frame")));
    }

    fn fields<'a>(payload: &'a [u8], metadata: &'a [u8]) -> EventFields<'a> {
        EventFields {
            position: 7,
            batch_end: 9,
            durable: 5,
            version: 3,
            timestamp_us: 1_700_000_000_123_456,
            id: [0xab; 16],
            stream: b"account-42",
            event_type: b"Deposited",
            metadata,
            payload,
        }
    }

    /// What [`verify_event`] must answer: [`decode`] accepts the frame, it is an event, and its names are UTF-8.
    fn reader_accepts(bytes: &[u8], salt: u64) -> bool {
        decode(bytes, salt).is_ok_and(|f| {
            let names = &bytes[f.stream_at()..f.metadata_at()];
            let (stream, event_type) = names.split_at(f.stream_bytes as usize);
            f.kind == FrameKind::Event && std::str::from_utf8(stream).is_ok() && std::str::from_utf8(event_type).is_ok()
        })
    }

    #[test]
    fn the_readers_verification_agrees_with_the_full_decode() {
        // Names of every length around the 16-byte blocks that the ASCII test reads whole, ASCII or not, valid
        // UTF-8 or not; then every header byte set to values that break one check each, resealed so that the
        // layout checks are what decides. Each case must get the same verdict from both paths.
        let mut names: Vec<Vec<u8>> = (1..=40).map(|n| vec![b'a'; n]).collect();
        names.extend([
            "é".as_bytes().to_vec(),
            "ǅstreäm-ü".as_bytes().to_vec(),
            [vec![b'a'; 15], "é".as_bytes().to_vec()].concat(),
            vec![0xff],
            [vec![b'a'; 16], vec![0xc3]].concat(),
            vec![b'a'; 255],
        ]);
        let mut cases = 0;
        for stream in &names {
            for event_type in [&b"E"[..], "Überwiesen".as_bytes(), &[b'b', 0x80][..]] {
                let mut out = Vec::new();
                let mut f = fields(b"payload-bytes", b"m\xc3");
                f.stream = stream;
                f.event_type = event_type;
                encode_event(&mut out, 9, &f);
                out.extend_from_slice(&[0; 64]); // more bytes after the frame, as in a segment
                let mut check = |bytes: &[u8]| {
                    let verified = verify_event(bytes, &FrameHasher::new(9));
                    assert_eq!(verified.is_ok(), reader_accepts(bytes, 9), "{:?}", &bytes[..HEADER_BYTES]);
                    if let Ok((header, len)) = verified {
                        let whole = decode(bytes, 9).unwrap();
                        assert_eq!(
                            (len, header.position(), header.version()),
                            (whole.frame_bytes as usize, whole.position, whole.version)
                        );
                    }
                    cases += 1;
                };
                check(&out);
                for at in LEN_AT..HEADER_BYTES {
                    for value in [0u8, 1, 2, 3, 0x10, 0x7f, 0xff] {
                        let mut bad = out.clone();
                        bad[at] = value;
                        let sealed = (read_u32(&bad, LEN_AT) as usize).clamp(HEADER_BYTES, bad.len());
                        let sum = checksum_of(&bad[..sealed], 9);
                        bad[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_le_bytes());
                        check(&bad);
                    }
                }
                check(&out[..HEADER_BYTES - 1]);
                check(&out[..read_u32(&out, LEN_AT) as usize - 16]);
            }
        }
        assert!(cases > 10_000, "{cases} cases");
    }

    #[test]
    fn event_round_trip_with_aligned_payload() {
        for (plen, mlen) in [(0usize, 0usize), (1, 0), (128, 3), (15, 17), (4096, 100)] {
            let payload: Vec<u8> = (0..plen).map(|i| i as u8).collect();
            let metadata: Vec<u8> = (0..mlen).map(|i| (i * 7) as u8).collect();
            let mut out = Vec::new();
            let f = fields(&payload, &metadata);
            encode_event(&mut out, 99, &f);
            assert_eq!(out.len(), event_frame_bytes(10, 9, mlen, plen));
            assert_eq!(out.len() % 16, 0);
            let d = decode(&out, 99).expect("valid frame");
            assert_eq!(d.kind, FrameKind::Event);
            assert_eq!((d.position, d.batch_end, d.durable, d.version), (7, 9, 5, 3));
            assert_eq!(d.timestamp_us, f.timestamp_us);
            assert_eq!(d.id, [0xab; 16]);
            assert_eq!(&out[d.stream_at()..d.type_at()], b"account-42");
            assert_eq!(&out[d.type_at()..d.metadata_at()], b"Deposited");
            assert_eq!(&out[d.metadata_at()..d.metadata_at() + mlen], &metadata[..]);
            assert_eq!(d.payload_at() % 16, 0);
            assert_eq!(&out[d.payload_at()..d.payload_at() + plen], &payload[..]);
        }
    }

    #[test]
    fn wrong_salt_fails_the_checksum() {
        let mut out = Vec::new();
        encode_event(&mut out, 1, &fields(b"x", b""));
        assert_eq!(decode(&out, 2), Err(FrameError::BadChecksum));
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let mut out = Vec::new();
        encode_event(&mut out, 5, &fields(b"some payload bytes", b"meta"));
        for bit in 0..out.len() * 8 {
            let mut c = out.clone();
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&c, 5).is_err(), "bit {bit} flipped went unnoticed");
        }
    }

    #[test]
    fn markers_round_trip() {
        for kind in [FrameKind::CloseMarker, FrameKind::Footer] {
            let mut out = Vec::new();
            encode_marker(&mut out, 3, kind, 1234, 77, 9);
            let d = decode(&out, 3).expect("valid marker");
            assert_eq!((d.kind, d.position, d.version, d.durable), (kind, 1234, 77, 1234));
        }
    }

    #[test]
    fn truncated_and_empty_input() {
        let mut out = Vec::new();
        encode_event(&mut out, 5, &fields(b"payload", b""));
        assert_eq!(decode(&out[..out.len() - 16], 5), Err(FrameError::Truncated));
        assert_eq!(decode(&out[..40], 5), Err(FrameError::Truncated));
        assert_eq!(decode(&[0u8; 200], 5), Err(FrameError::Empty));
        assert_eq!(decode(&[0u8; 8], 5), Err(FrameError::Empty));
        assert_eq!(decode(&[], 5), Err(FrameError::Truncated));
    }

    #[test]
    fn absurd_lengths_are_rejected_before_use() {
        let mut b = vec![0u8; 256];
        write_u32(&mut b, LEN_AT, !15);
        assert!(matches!(decode(&b, 0), Err(FrameError::BadLayout(_))));
        write_u32(&mut b, LEN_AT, 33);
        assert!(matches!(decode(&b, 0), Err(FrameError::BadLayout(_))));
        write_u32(&mut b, LEN_AT, 160);
        b[KIND_AT] = 1;
        b[STREAM_LEN_AT] = 1;
        b[TYPE_LEN_AT] = 1;
        write_u32(&mut b, PAYLOAD_LEN_AT, u32::MAX);
        assert!(matches!(decode(&b, 0), Err(FrameError::BadLayout(_))));
    }
}
