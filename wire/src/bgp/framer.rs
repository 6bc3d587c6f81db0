//! Splits a TCP byte stream into whole BGP messages.

use super::notification::{code, header_subcode};
use super::{BgpError, HEADER_LEN, MAX_MESSAGE_LEN, check_marker};
use bytes::{Bytes, BytesMut};

/// A streaming framer: push whatever `read()` returned, then take whole
/// messages out. Handles partial reads and several messages in one read, and
/// reports a bad marker or length as soon as the header arrives (without
/// waiting for a body that may never come). After an error it stays failed:
/// the stream cannot be resynchronised and the session must close.
#[derive(Debug)]
pub struct Framer {
    buffer: BytesMut,
    failed: Option<BgpError>,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Framer {
            buffer: BytesMut::with_capacity(MAX_MESSAGE_LEN),
            failed: None,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed.is_none() {
            self.buffer.extend_from_slice(data);
        }
    }

    /// Bytes held that do not yet form a whole message.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next whole message (header included), `Ok(None)` if more bytes
    /// are needed, or the error that ends the session.
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, BgpError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let checked = self.buffer.len().min(16);
        if let Err(err) = check_marker(&self.buffer[..checked]) {
            return Err(self.fail(err));
        }
        if self.buffer.len() < HEADER_LEN {
            return Ok(None);
        }
        let length = usize::from(u16::from_be_bytes([self.buffer[16], self.buffer[17]]));
        if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&length) {
            let err = BgpError::new(
                code::MESSAGE_HEADER,
                header_subcode::BAD_MESSAGE_LENGTH,
                (length as u16).to_be_bytes(),
                format!("header length {length} is outside 19..=4096"),
            );
            return Err(self.fail(err));
        }
        if self.buffer.len() < length {
            return Ok(None);
        }
        Ok(Some(self.buffer.split_to(length).freeze()))
    }

    fn fail(&mut self, err: BgpError) -> BgpError {
        self.buffer.clear();
        self.failed = Some(err.clone());
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::{MARKER, Message, SessionParams};

    fn keepalive() -> Vec<u8> {
        Message::Keepalive.encode(&SessionParams::default()).expect("encodes")
    }

    #[test]
    fn partial_reads_and_several_messages_per_read() {
        let notification = Message::Notification(crate::bgp::Notification::new(6, 2, vec![]))
            .encode(&SessionParams::default())
            .expect("encodes");
        let mut stream = keepalive();
        stream.extend_from_slice(&notification);
        stream.extend_from_slice(&keepalive());

        // One byte at a time.
        let mut f = Framer::new();
        let mut frames = Vec::new();
        for b in &stream {
            f.push(&[*b]);
            while let Some(frame) = f.next_frame().expect("valid stream") {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(&frames[1][..], &notification[..]);

        // All at once.
        let mut f = Framer::new();
        f.push(&stream);
        let mut n = 0;
        while f.next_frame().expect("valid").is_some() {
            n += 1;
        }
        assert_eq!((n, f.buffered()), (3, 0));
    }

    #[test]
    fn bad_marker_is_reported_before_the_header_completes() {
        let mut f = Framer::new();
        f.push(&[0xff, 0xff, 0x00]);
        let err = f.next_frame().expect_err("bad marker");
        assert_eq!((err.notification.code, err.notification.subcode), (1, 1));
        f.push(&keepalive());
        assert!(f.next_frame().is_err(), "a failed framer stays failed");
    }

    #[test]
    fn oversize_and_undersize_lengths() {
        for length in [18u16, 4097, 65535] {
            let mut f = Framer::new();
            f.push(&MARKER);
            f.push(&length.to_be_bytes());
            f.push(&[4]);
            let err = f.next_frame().expect_err("bad length");
            assert_eq!((err.notification.code, err.notification.subcode), (1, 2));
            assert_eq!(err.notification.data, length.to_be_bytes().to_vec());
        }
    }
}
