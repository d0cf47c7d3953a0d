//! Opening a store whose only segment holds arbitrary bytes after a valid header: open and every read return
//! Ok or Err, never panic, never allocate without bound; whatever opens can be appended to and reopened.
#![no_main]

use annals::format::segment_header::SegmentHeader;
use annals::format::store_file::StoreFile;
use annals::format::FORMAT_VERSION;
use annals::{ExpectedVersion, NewEvent, Options, Position};
use libfuzzer_sys::fuzz_target;

const SEGMENT_BYTES: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let store_file = StoreFile { format_version: FORMAT_VERSION, created_us: 0 };
    std::fs::write(dir.path().join("ANNALS"), store_file.encode()).unwrap();
    let salt = data.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let header = SegmentHeader {
        format_version: FORMAT_VERSION,
        segment_number: 0,
        first_position: 0,
        salt,
        segment_bytes: SEGMENT_BYTES,
        created_us: 0,
    };
    let mut file = vec![0u8; SEGMENT_BYTES as usize];
    file[..64].copy_from_slice(&header.encode());
    let body = data.get(8..).unwrap_or_default();
    let n = body.len().min(file.len() - 64);
    file[64..64 + n].copy_from_slice(&body[..n]);
    std::fs::write(dir.path().join("00000000000000000000.seg"), &file).unwrap();

    let options = Options::new().segment_size(SEGMENT_BYTES);
    let Ok(store) = options.open(dir.path()) else { return };
    let head = store.head();
    let mut count = 0u64;
    for e in store.read_all(Position::START) {
        let Ok(e) = e else { return };
        let _ = (e.stream(), e.event_type(), e.payload().len(), e.metadata().len());
        count += 1;
    }
    assert_eq!(count, head.as_u64(), "read_all returns every event below the head");
    store.append("fuzz", ExpectedVersion::Any, &[NewEvent::new("E", "x")]).unwrap();
    drop(store);
    let store = options.open(dir.path()).expect("a store that opened and was appended to reopens");
    assert_eq!(store.head().as_u64(), head.as_u64() + 1);
});
