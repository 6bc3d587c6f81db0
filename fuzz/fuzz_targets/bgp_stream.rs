//! BGP stream framer: fed arbitrary chunks, it never panics, never yields a
//! frame that breaks the header rules, and fails for good after an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshlb_wire::bgp::{Framer, Message, SessionParams};

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::new();
    let mut failed = false;
    // Chunk sizes come from the data itself: byte % 64 + 1.
    let mut rest = data;
    while let Some((size, tail)) = rest.split_first() {
        let n = (usize::from(*size) % 64 + 1).min(tail.len());
        framer.push(&tail[..n]);
        rest = &tail[n..];
        loop {
            match framer.next_frame() {
                Ok(Some(frame)) => {
                    assert!(!failed, "a failed framer yielded a frame");
                    assert!((19..=4096).contains(&frame.len()));
                    assert!(frame[..16].iter().all(|b| *b == 0xff));
                    let _ = Message::decode(&frame, &SessionParams::FOUR_OCTET_AS);
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    }
});
