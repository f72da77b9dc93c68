//! A bounded pool of fixed-size traffic buffers.
//!
//! Every byte a worker moves goes through a [`Buf`] taken from the [`BufferPool`]. A session
//! takes a buffer when bytes arrive and gives it back as soon as it is empty again, so an idle
//! keep-alive connection holds no buffer at all. The pool never grows past `max` buffers:
//! when it is exhausted, [`BufferPool::get`] returns `None` and the caller answers `503` or
//! closes, instead of queueing (the memory bound of DESIGN.md's "Memory").

use std::io::{self, Read, Write};

/// One traffic buffer: pending bytes are `data[start..end]`.
#[derive(Debug)]
pub struct Buf {
    data: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Buf {
    /// The bytes received and not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// The pending bytes, to be rewritten in place (a chunked body made canonical).
    pub fn pending_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Drops `n` bytes from the end of the pending bytes (left over by a rewrite that made
    /// them shorter).
    pub fn drop_tail(&mut self, n: usize) {
        self.end -= n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether no more bytes fit, even after compaction.
    pub fn is_full(&self) -> bool {
        self.len() == self.data.len()
    }

    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Drops `n` bytes from the front of the pending bytes.
    pub fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Appends bytes (as many as fit) and returns how many were taken.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        self.compact_if_needed();
        let n = bytes.len().min(self.data.len() - self.end);
        self.data[self.end..self.end + n].copy_from_slice(&bytes[..n]);
        self.end += n;
        n
    }

    /// The free tail, compacted first, to write into in place; [`Buf::commit`] then says how
    /// much of it now holds bytes.
    pub fn spare_mut(&mut self) -> &mut [u8] {
        self.compact_if_needed();
        &mut self.data[self.end..]
    }

    /// Marks the first `n` bytes of [`Buf::spare_mut`] as pending.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.data.len());
    }

    /// Moves pending bytes to the front when the free tail is too small to be useful.
    fn compact_if_needed(&mut self) {
        if self.start > 0 && self.data.len() - self.end < self.data.len() / 4 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// One `read` from `reader` into the free tail. `Ok(0)` means end of stream; a full buffer
    /// is the caller's to avoid (it would also read 0).
    pub fn read_from(&mut self, reader: &mut impl Read) -> io::Result<usize> {
        self.read_some(reader).map(|(n, _)| n)
    }

    /// Like [`Buf::read_from`], also saying whether the read filled all the room it had. A
    /// read that did not means the socket had nothing more at that moment: with edge-triggered
    /// readiness the caller may wait for the next event instead of reading again just to see
    /// `WouldBlock` (one system call per request saved).
    pub fn read_some(&mut self, reader: &mut impl Read) -> io::Result<(usize, bool)> {
        self.compact_if_needed();
        let room = self.data.len() - self.end;
        loop {
            match reader.read(&mut self.data[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok((n, n == room));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes up to `limit` pending bytes once; consumes what was written.
    pub fn write_to(&mut self, writer: &mut impl Write, limit: usize) -> io::Result<usize> {
        let n = limit.min(self.len());
        loop {
            match writer.write(&self.data[self.start..self.start + n]) {
                Ok(written) => {
                    self.consume(written);
                    return Ok(written);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Free buffers plus the count of those handed out; never more than `max` in all.
#[derive(Debug)]
pub struct BufferPool {
    free: Vec<Box<[u8]>>,
    size: usize,
    max: usize,
    in_use: usize,
    /// How many times a buffer was refused because the pool was empty.
    pub exhausted: u64,
}

impl BufferPool {
    pub fn new(size: usize, max: usize) -> BufferPool {
        BufferPool {
            free: Vec::new(),
            size: size.max(1024),
            max: max.max(1),
            in_use: 0,
            exhausted: 0,
        }
    }

    /// A buffer, or `None` when `max` are already in use.
    pub fn get(&mut self) -> Option<Buf> {
        if self.in_use >= self.max {
            self.exhausted += 1;
            return None;
        }
        self.in_use += 1;
        let data = self
            .free
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice());
        Some(Buf {
            data,
            start: 0,
            end: 0,
        })
    }

    /// Returns a buffer. Free buffers are kept for reuse up to a small reserve, so a burst
    /// does not leave its peak allocated forever.
    pub fn put(&mut self, buf: Buf) {
        self.in_use = self.in_use.saturating_sub(1);
        if self.free.len() < 1024 {
            self.free.push(buf.data);
        }
    }

    /// Returns `slot`'s buffer if it holds one with no pending bytes.
    pub fn release_if_empty(&mut self, slot: &mut Option<Buf>) {
        if slot.as_ref().is_some_and(Buf::is_empty) {
            if let Some(buf) = slot.take() {
                self.put(buf);
            }
        }
    }

    /// Returns `slot`'s buffer whatever it holds.
    pub fn release(&mut self, slot: &mut Option<Buf>) {
        if let Some(buf) = slot.take() {
            self.put(buf);
        }
    }

    /// The cap on buffers in use.
    pub fn max(&self) -> usize {
        self.max
    }

    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Whether [`BufferPool::get`] would give a buffer now.
    pub fn has_free(&self) -> bool {
        self.in_use < self.max
    }

    pub fn buffer_size(&self) -> usize {
        self.size
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn pool_is_bounded_and_reuses_buffers() {
        let mut pool = BufferPool::new(1024, 2);
        let a = pool.get().unwrap();
        let b = pool.get().unwrap();
        assert!(pool.get().is_none(), "third buffer refused");
        assert_eq!(pool.exhausted, 1);
        pool.put(a);
        assert_eq!(pool.in_use(), 1);
        let c = pool.get().unwrap();
        assert_eq!(c.capacity(), 1024);
        pool.put(b);
        pool.put(c);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn buffer_consumes_and_compacts() {
        let mut pool = BufferPool::new(1024, 1);
        let mut buf = pool.get().unwrap();
        assert_eq!(buf.push(&[1u8; 1000]), 1000);
        buf.consume(900);
        assert_eq!(buf.len(), 100);
        // The tail has 24 bytes free; pushing compacts first and takes everything that fits.
        assert_eq!(buf.push(&[2u8; 2000]), 924);
        assert!(buf.is_full());
        assert_eq!(buf.pending()[99], 1);
        assert_eq!(buf.pending()[100], 2);
        buf.consume(5000);
        assert!(buf.is_empty());
    }

    #[test]
    fn release_if_empty_keeps_pending_bytes() {
        let mut pool = BufferPool::new(1024, 2);
        let mut slot = pool.get();
        if let Some(b) = slot.as_mut() {
            b.push(b"x");
        }
        pool.release_if_empty(&mut slot);
        assert!(slot.is_some());
        if let Some(b) = slot.as_mut() {
            b.consume(1);
        }
        pool.release_if_empty(&mut slot);
        assert!(slot.is_none());
        assert_eq!(pool.in_use(), 0);
    }
}
