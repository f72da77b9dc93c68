//! The byte stream of a backend connection: the one seam through which the HTTP and pipe
//! code, and the pools, touch a backend's socket.
//!
//! It is an enum with one variant, TCP, in the worker as built: dispatch is a match the
//! compiler sees through, with no allocation, no indirect call and no system call of its own.
//! Test builds add an in-memory variant ([`super::memory`]), so the protocols are unit-tested
//! without sockets.

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

#[cfg(test)]
use super::memory::MemStream;

/// A connection to a backend.
#[derive(Debug)]
pub enum BackStream {
    Tcp(TcpStream),
    #[cfg(test)]
    Memory(MemStream),
}

// The worker as built pays nothing for the seam.
#[cfg(not(test))]
const _: () = assert!(std::mem::size_of::<BackStream>() == std::mem::size_of::<TcpStream>());

impl BackStream {
    /// A non-blocking connect to `address`.
    pub fn connect(address: SocketAddr) -> io::Result<BackStream> {
        TcpStream::connect(address).map(BackStream::Tcp)
    }

    /// The socket's pending error (`SO_ERROR`), cleared by reading it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            BackStream::Tcp(s) => s.take_error(),
            #[cfg(test)]
            BackStream::Memory(m) => m.take_error(),
        }
    }

    /// The peer's address: `NotConnected` while the connect is under way.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            BackStream::Tcp(s) => s.peer_addr(),
            #[cfg(test)]
            BackStream::Memory(m) => m.peer_addr(),
        }
    }

    pub fn set_nodelay(&self) {
        match self {
            BackStream::Tcp(s) => {
                let _ = s.set_nodelay(true);
            }
            #[cfg(test)]
            BackStream::Memory(_) => {}
        }
    }

    /// What a read would say, without taking anything.
    pub fn peek(&self, dst: &mut [u8]) -> io::Result<usize> {
        match self {
            BackStream::Tcp(s) => s.peek(dst),
            #[cfg(test)]
            BackStream::Memory(m) => m.peek(dst),
        }
    }

    /// Ends what we send (a half-close).
    pub fn shutdown_write(&mut self) {
        match self {
            BackStream::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            #[cfg(test)]
            BackStream::Memory(m) => m.shutdown_write(),
        }
    }
}

impl Read for BackStream {
    #[inline]
    fn read(&mut self, dst: &mut [u8]) -> io::Result<usize> {
        match self {
            BackStream::Tcp(s) => s.read(dst),
            #[cfg(test)]
            BackStream::Memory(m) => m.read(dst),
        }
    }
}

impl Write for BackStream {
    #[inline]
    fn write(&mut self, src: &[u8]) -> io::Result<usize> {
        match self {
            BackStream::Tcp(s) => s.write(src),
            #[cfg(test)]
            BackStream::Memory(m) => m.write(src),
        }
    }

    /// Forwarded, not left to the default (which would write only the first slice).
    #[inline]
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            BackStream::Tcp(s) => s.write_vectored(bufs),
            #[cfg(test)]
            BackStream::Memory(m) => m.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for BackStream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            BackStream::Tcp(s) => s.register(registry, token, interests),
            #[cfg(test)]
            BackStream::Memory(m) => {
                m.register(token);
                Ok(())
            }
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            BackStream::Tcp(s) => s.reregister(registry, token, interests),
            #[cfg(test)]
            BackStream::Memory(m) => {
                m.register(token);
                Ok(())
            }
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            BackStream::Tcp(s) => s.deregister(registry),
            #[cfg(test)]
            BackStream::Memory(m) => {
                m.deregister();
                Ok(())
            }
        }
    }
}
