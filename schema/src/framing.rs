//! Length-delimited framing of protobuf messages: each message preceded by its length as a
//! protobuf varint, the standard `writeDelimitedTo` form, both ways on every channel.
//!
//! Two shapes of the same rules: [`read_frame`] / [`write_frame`] for blocking streams (the CLI,
//! the reconciler), and [`FrameDecoder`] / [`FrameEncoder`] for non-blocking sockets driven by
//! an event loop, which see partial reads and partial writes. A frame longer than the limit or
//! a length prefix that is not a valid varint is a [`FrameError`]; the caller closes that one
//! connection, nothing else.

use std::io::{self, Read, Write};

use prost::Message;

/// Largest message accepted by default: a full state with thousands of certificates fits.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// A varint length prefix is at most 10 bytes.
const MAX_VARINT_LEN: usize = 10;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge { len: u64, max: usize },
    #[error("frame length prefix is not a valid varint")]
    BadLength,
    #[error("frame does not decode as the expected message: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `message` with its length prefix.
pub fn encode_frame<M: Message>(message: &M) -> Vec<u8> {
    message.encode_length_delimited_to_vec()
}

/// Decodes a varint length prefix from the start of `buf`: `Ok(None)` if more bytes are needed,
/// otherwise the length and the prefix's size.
fn decode_length(buf: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(MAX_VARINT_LEN) {
        let low = u64::from(byte & 0x7f);
        if i == MAX_VARINT_LEN - 1 && *byte > 1 {
            return Err(FrameError::BadLength);
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(FrameError::BadLength)
    } else {
        Ok(None)
    }
}

/// Writes one framed message to a blocking stream.
pub fn write_frame<M: Message, W: Write>(writer: &mut W, message: &M) -> Result<(), FrameError> {
    writer.write_all(&encode_frame(message))?;
    writer.flush()?;
    Ok(())
}

/// Reads one framed message from a blocking stream. `Ok(None)` on a clean end of stream
/// (between frames); [`FrameError::Truncated`] if it ends inside one.
pub fn read_frame<M: Message + Default, R: Read>(
    reader: &mut R,
    max: usize,
) -> Result<Option<M>, FrameError> {
    let mut prefix = [0u8; MAX_VARINT_LEN];
    let mut filled = 0;
    let (len, _) = loop {
        let mut byte = [0u8; 1];
        match reader.read(&mut byte) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(_) => {
                prefix[filled] = byte[0];
                filled += 1;
                if let Some(found) = decode_length(&prefix[..filled])? {
                    break found;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let len_usize = usize::try_from(len).map_err(|_| FrameError::TooLarge { len, max })?;
    if len_usize > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len_usize];
    reader.read_exact(&mut body).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    Ok(Some(M::decode(body.as_slice())?))
}

/// Accumulates bytes from a non-blocking socket and yields whole messages.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out as messages. Consumed bytes are dropped only when
    /// more arrive, once per read rather than once per message: a read holding thousands of
    /// small frames would otherwise move the rest of the buffer after every one of them.
    start: usize,
    max: usize,
}

impl FrameDecoder {
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max,
        }
    }

    /// Adds bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Reads from `reader` until it would block (or ends). Returns `Ok(true)` if the peer
    /// closed its side.
    pub fn read_from<R: Read>(&mut self, reader: &mut R) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(n) => self.extend(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The next whole message, if one has arrived.
    // Not `Iterator::next`: it is generic over the message type and can fail.
    #[allow(clippy::should_implement_trait)]
    pub fn next<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        let unread = &self.buf[self.start..];
        let Some((len, prefix)) = decode_length(unread)? else {
            return Ok(None);
        };
        let max = self.max;
        let len_usize = usize::try_from(len).map_err(|_| FrameError::TooLarge { len, max })?;
        if len_usize > max {
            return Err(FrameError::TooLarge { len, max });
        }
        if unread.len() < prefix + len_usize {
            return Ok(None);
        }
        let message = M::decode(&unread[prefix..prefix + len_usize])?;
        self.start += prefix + len_usize;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(message))
    }

    /// Bytes received but not yet part of a whole message.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Queues framed messages for a non-blocking socket and writes as much as it takes.
#[derive(Debug, Default)]
pub struct FrameEncoder {
    buf: Vec<u8>,
    written: usize,
}

impl FrameEncoder {
    pub fn new() -> FrameEncoder {
        FrameEncoder::default()
    }

    pub fn push<M: Message>(&mut self, message: &M) {
        if self.written == self.buf.len() {
            self.buf.clear();
            self.written = 0;
        }
        message
            .encode_length_delimited(&mut self.buf)
            .unwrap_or_else(|_| unreachable!("a Vec grows to fit"));
    }

    /// Writes queued bytes until done or the socket would block. Returns `Ok(true)` when
    /// everything queued has been written.
    pub fn write_to<W: Write>(&mut self, writer: &mut W) -> io::Result<bool> {
        while self.written < self.buf.len() {
            match writer.write(&self.buf[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.buf.clear();
        self.written = 0;
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        self.written == self.buf.len()
    }
}
