//! Frame decoding from arbitrary bytes: never panics, never reads out of bounds; a frame that decodes
//! re-encodes to exactly the same bytes; the index's peek at an event frame agrees with its full decode; the
//! readers' verification of an event frame accepts exactly what the full decode accepts as an event with UTF-8
//! names.
#![no_main]

use annals::format::frame::{self, EventFields, FrameKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let salt = u64::from_le_bytes(data[..8].try_into().unwrap());
    let bytes = &data[8..];
    let peeked = frame::peek_event(bytes);
    if let Ok(f) = frame::decode_unverified(bytes) {
        // The index's peek reads the same fields as the full decode of every event frame that decodes.
        if f.kind == FrameKind::Event {
            let (peek, name) = peeked.expect("an event frame that decodes can be peeked");
            assert_eq!((peek.position, peek.version, peek.id), (f.position, f.version, f.id));
            assert_eq!(name, &bytes[f.stream_at()..f.type_at()]);
        }
    }
    let verified = frame::verify_event(bytes, &frame::FrameHasher::new(salt));
    let decoded = frame::decode(bytes, salt);
    let reader_accepts = decoded.as_ref().is_ok_and(|f| {
        let (stream, event_type) = bytes[f.stream_at()..f.metadata_at()].split_at(f.stream_bytes as usize);
        f.kind == FrameKind::Event && std::str::from_utf8(stream).is_ok() && std::str::from_utf8(event_type).is_ok()
    });
    assert_eq!(verified.is_ok(), reader_accepts, "the readers' verification disagrees with the full decode");
    if let (Ok((header, len)), Ok(f)) = (verified, &decoded) {
        assert_eq!((len, header.position(), header.version()), (f.frame_bytes as usize, f.position, f.version));
    }
    let Ok(f) = decoded else { return };
    let whole = &bytes[..f.frame_bytes as usize];
    let mut again = Vec::new();
    match f.kind {
        FrameKind::Event => {
            let stream = &whole[f.stream_at()..f.type_at()];
            let event_type = &whole[f.type_at()..f.metadata_at()];
            let metadata = &whole[f.metadata_at()..f.metadata_at() + f.metadata_bytes as usize];
            let payload = &whole[f.payload_at()..f.payload_at() + f.payload_bytes as usize];
            if f.durable > f.position {
                return; // the encoder refuses these; the decoder accepts them and recovery checks them
            }
            frame::encode_event(
                &mut again,
                salt,
                &EventFields {
                    position: f.position,
                    batch_end: f.batch_end,
                    durable: f.durable,
                    version: f.version,
                    timestamp_us: f.timestamp_us,
                    id: f.id,
                    stream,
                    event_type,
                    metadata,
                    payload,
                },
            );
        }
        kind => {
            if f.batch_end != f.position || f.durable != f.position || f.id != [0; 16] {
                return; // fields the encoder sets from the position; a checksum-valid variant is still harmless
            }
            frame::encode_marker(&mut again, salt, kind, f.position, f.version, f.timestamp_us);
        }
    }
    assert_eq!(&again[..], whole, "a decoded frame re-encodes to the same bytes");
});
