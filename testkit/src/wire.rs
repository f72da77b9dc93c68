//! HTTP/1.1 framing as both ends of a test read it: a head up to its empty line, a body by
//! Content-Length or chunks, a field looked up in a head. It checks little: it reads what the
//! proxy sends, and the proxy's own parser is what the tests are about.

use std::io::{self, Read};

/// Reads a head up to and including its empty line.
pub(crate) fn read_head(r: &mut impl Read) -> io::Result<String> {
    let head = read_through(r, b"\r\n\r\n")?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The value of the first field `name` (any case) in `head`, trimmed. The first line of a head
/// is the request or status line, never a field.
pub(crate) fn field<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads the body `head` frames, by Content-Length or chunked; `None` when it frames none
/// (a request without a body, or an answer that runs until the connection closes).
pub(crate) fn read_framed_body(r: &mut impl Read, head: &str) -> io::Result<Option<Vec<u8>>> {
    if let Some(len) = field(head, "content-length").and_then(|l| l.parse::<usize>().ok()) {
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        Ok(Some(body))
    } else if field(head, "transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(r).map(Some)
    } else {
        Ok(None)
    }
}

fn read_chunked(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        read_line(r)?;
    }
}

/// One line, without its CRLF.
fn read_line(r: &mut impl Read) -> io::Result<String> {
    let mut line = read_through(r, b"\r\n")?;
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Reads up to and including `end`. One byte at a time, so nothing after it is consumed: the
/// next answer on a keep-alive connection, a body the caller reads later, or the first bytes
/// of an upgraded pipe.
fn read_through(r: &mut impl Read, end: &[u8]) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(end) {
        if r.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    Ok(buf)
}

/// A reader that keeps a copy of every byte read through it: what came on the wire, framing
/// included.
pub(crate) struct Tee<'a, R> {
    inner: &'a mut R,
    copy: Vec<u8>,
}

impl<'a, R: Read> Tee<'a, R> {
    pub(crate) fn new(inner: &'a mut R) -> Tee<'a, R> {
        Tee {
            inner,
            copy: Vec::new(),
        }
    }

    pub(crate) fn into_copy(self) -> Vec<u8> {
        self.copy
    }
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}
