//! Framing: every request kind survives encoding, framing, split reads and decoding; bad
//! frames are typed errors.
#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

mod common;

use std::io::{self, Cursor, Read, Write};

use prost::Message;
use weir_schema::framing::{
    encode_frame, read_frame, write_frame, FrameDecoder, FrameEncoder, FrameError,
    DEFAULT_MAX_FRAME,
};
use weir_schema::{proto, Request};

fn to_wire(requests: &[Request]) -> Vec<proto::Request> {
    requests.iter().map(proto::Request::from).collect()
}

fn from_wire(messages: &[proto::Request]) -> Vec<Request> {
    messages
        .iter()
        .map(|m| Request::try_from(m).expect("decodes to a domain request"))
        .collect()
}

#[test]
fn every_request_kind_is_covered() {
    let kinds: std::collections::BTreeSet<String> = to_wire(&common::one_request_of_each_kind())
        .iter()
        .map(|r| {
            format!("{:?}", r.kind.as_ref().unwrap())
                .split('(')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    // proto::request::Kind has 25 members; this fails when a new one is not added above.
    assert_eq!(kinds.len(), 25, "{kinds:?}");
}

#[test]
fn every_request_kind_round_trips_through_the_nonblocking_codec() {
    let requests = common::one_request_of_each_kind();
    let mut encoder = FrameEncoder::new();
    for m in to_wire(&requests) {
        encoder.push(&m);
    }
    let mut bytes = Vec::new();
    assert!(encoder.write_to(&mut bytes).unwrap());
    assert!(encoder.is_empty());

    // All at once.
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    decoder.extend(&bytes);
    let mut decoded = Vec::new();
    while let Some(m) = decoder.next::<proto::Request>().unwrap() {
        decoded.push(m);
    }
    assert_eq!(from_wire(&decoded), requests);
    assert_eq!(decoder.pending(), 0);
}

#[test]
fn byte_by_byte_reads_yield_the_same_messages() {
    let requests = common::one_request_of_each_kind();
    let bytes: Vec<u8> = to_wire(&requests).iter().flat_map(encode_frame).collect();
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut decoded = Vec::new();
    for byte in &bytes {
        decoder.extend(std::slice::from_ref(byte));
        while let Some(m) = decoder.next::<proto::Request>().unwrap() {
            decoded.push(m);
        }
    }
    assert_eq!(from_wire(&decoded), requests);
}

#[test]
fn chunks_that_split_frames_after_consumed_ones_yield_the_same_messages() {
    // Every chunk size leaves a consumed prefix plus a partial frame in the decoder at some
    // point, which the next `extend` must keep in order.
    let requests = common::one_request_of_each_kind();
    let bytes: Vec<u8> = to_wire(&requests).iter().flat_map(encode_frame).collect();
    for size in 2..40 {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
        let mut decoded = Vec::new();
        for chunk in bytes.chunks(size) {
            decoder.extend(chunk);
            while let Some(m) = decoder.next::<proto::Request>().unwrap() {
                decoded.push(m);
            }
        }
        assert_eq!(from_wire(&decoded), requests, "chunks of {size} bytes");
        assert_eq!(decoder.pending(), 0);
    }
}

/// A reader that hands out at most one byte per call and says WouldBlock every other call,
/// like a non-blocking socket under load.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    block_next: bool,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.block_next {
            self.block_next = false;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.block_next = true;
        if self.at == self.data.len() {
            return Ok(0);
        }
        buf[0] = self.data[self.at];
        self.at += 1;
        Ok(1)
    }
}

#[test]
fn read_from_handles_would_block_and_end_of_stream() {
    let requests = common::one_request_of_each_kind();
    let data: Vec<u8> = to_wire(&requests).iter().flat_map(encode_frame).collect();
    let mut socket = Trickle {
        data,
        at: 0,
        block_next: false,
    };
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    let mut decoded = Vec::new();
    let mut closed = false;
    for _ in 0..100_000 {
        closed = decoder.read_from(&mut socket).unwrap();
        while let Some(m) = decoder.next::<proto::Request>().unwrap() {
            decoded.push(m);
        }
        if closed {
            break;
        }
    }
    assert!(closed);
    assert_eq!(from_wire(&decoded), requests);
}

/// A writer that accepts at most 3 bytes per call and blocks every other call.
struct Narrow {
    out: Vec<u8>,
    block_next: bool,
}

impl Write for Narrow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.block_next {
            self.block_next = false;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.block_next = true;
        let n = buf.len().min(3);
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn partial_writes_resume_where_they_stopped() {
    let requests = common::one_request_of_each_kind();
    let wire = to_wire(&requests);
    let mut encoder = FrameEncoder::new();
    for m in &wire {
        encoder.push(m);
    }
    let mut socket = Narrow {
        out: Vec::new(),
        block_next: false,
    };
    let mut done = false;
    for _ in 0..100_000 {
        if encoder.write_to(&mut socket).unwrap() {
            done = true;
            break;
        }
    }
    assert!(done);
    let expected: Vec<u8> = wire.iter().flat_map(encode_frame).collect();
    assert_eq!(socket.out, expected);
}

#[test]
fn blocking_read_and_write_round_trip() {
    let requests = common::one_request_of_each_kind();
    let mut stream = Vec::new();
    for m in to_wire(&requests) {
        write_frame(&mut stream, &m).unwrap();
    }
    let mut reader = Cursor::new(stream);
    let mut decoded = Vec::new();
    while let Some(m) = read_frame::<proto::Request, _>(&mut reader, DEFAULT_MAX_FRAME).unwrap() {
        decoded.push(m);
    }
    assert_eq!(from_wire(&decoded), requests);
}

#[test]
fn a_stream_ending_inside_a_frame_is_truncated() {
    let frame = encode_frame(&proto::Request::from(
        &common::one_request_of_each_kind()[0],
    ));
    let mut reader = Cursor::new(frame[..frame.len() - 1].to_vec());
    let err = read_frame::<proto::Request, _>(&mut reader, DEFAULT_MAX_FRAME).unwrap_err();
    assert!(matches!(err, FrameError::Truncated), "{err:?}");
}

#[test]
fn an_oversized_frame_is_refused_before_it_is_read() {
    let message = proto::Request {
        id: "x".repeat(1000),
        ..Default::default()
    };
    let frame = encode_frame(&message);

    let mut decoder = FrameDecoder::new(100);
    // Only the length prefix has arrived: the frame is refused already.
    decoder.extend(&frame[..2]);
    let err = decoder.next::<proto::Request>().unwrap_err();
    assert!(
        matches!(
            err,
            FrameError::TooLarge {
                len: 1003,
                max: 100
            }
        ),
        "{err:?}"
    );

    let err = read_frame::<proto::Request, _>(&mut Cursor::new(frame), 100).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { .. }), "{err:?}");
}

#[test]
fn a_garbled_length_prefix_is_a_typed_error() {
    // Eleven continuation bytes: no varint is that long.
    let garbage = [0xffu8; 11];
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    decoder.extend(&garbage);
    assert!(matches!(
        decoder.next::<proto::Request>(),
        Err(FrameError::BadLength)
    ));
    let err =
        read_frame::<proto::Request, _>(&mut Cursor::new(garbage.to_vec()), DEFAULT_MAX_FRAME)
            .unwrap_err();
    assert!(matches!(err, FrameError::BadLength), "{err:?}");
}

#[test]
fn a_frame_that_is_not_the_message_is_a_decode_error() {
    // A valid frame whose body is an invalid protobuf (field 0 is never valid).
    let bytes = [2u8, 0x00, 0x00];
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    decoder.extend(&bytes);
    assert!(matches!(
        decoder.next::<proto::Request>(),
        Err(FrameError::Decode(_))
    ));
}

#[test]
fn responses_frame_the_same_way() {
    let response = proto::Response::processing("r1", "3 connections left", 9).with_content(
        proto::response::Content::Drain(proto::DrainProgress {
            cluster_id: "shop".into(),
            backend_id: "blue".into(),
            live_connections: 3,
        }),
    );
    let frame = encode_frame(&response);
    let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME);
    decoder.extend(&frame);
    assert_eq!(
        decoder.next::<proto::Response>().unwrap(),
        Some(response.clone())
    );
    assert_eq!(frame.len(), response.encoded_len() + 1);
}
