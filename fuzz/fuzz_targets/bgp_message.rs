//! BGP message decoder (the first input byte picks 2- or 4-octet AS
//! numbers): never panics; every error carries a NOTIFICATION; a decoded
//! message without contained errors re-encodes to bytes that decode equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meshlb_wire::bgp::{Message, SessionParams};

fuzz_target!(|data: &[u8]| {
    let Some((first, frame)) = data.split_first() else {
        return;
    };
    let params = SessionParams {
        four_octet_as: first & 1 == 1,
    };
    match Message::decode(frame, &params) {
        Ok(message) => {
            if let Message::Update(u) = &message
                && !u.issues.is_empty()
            {
                return;
            }
            if let Ok(bytes) = message.encode(&params) {
                assert_eq!(Message::decode(&bytes, &params), Ok(message));
            }
        }
        Err(err) => assert!((1..=7).contains(&err.notification.code), "{err}"),
    }
});
