//! A connection registered with the reactor for reads only.
//!
//! tokio registers every `UnixStream` for both directions (edge-triggered). On a UNIX socket the
//! kernel signals write space to the sender each time the peer reads, so every time the engine
//! reads a plugin's reply, the plugin's event loop woke up for nothing (a context switch per
//! call, seen as an `EPOLLOUT`-only event after each reply). A plugin's replies are small and
//! almost always fit the socket buffer at once, so this stream writes directly and watches for
//! write space only after a write found the buffer full: then (and from then on, for that
//! connection) through a second registration of a duplicate of the descriptor.
//!
//! Reads go straight into the caller's uninitialised buffer, as tokio's own streams do: hyper
//! hands every read the whole spare capacity of its read buffer (8 KiB and more), and zeroing
//! that first (`ReadBuf::initialize_unfilled`) cost more instructions per api hook than decoding
//! the hook message, and dirtied that much cache in every plugin process.

use std::io::{self, IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// Registers an owned descriptor with the current runtime's reactor for `interest`.
fn register<T: AsRawFd + OwnedDescriptor>(inner: T, interest: Interest) -> io::Result<AsyncFd<T>> {
    // SAFETY: `T` owns its descriptor (a `UnixStream` or an `OwnedFd`): it stays open, and
    // `as_raw_fd` keeps returning it, until the `AsyncFd` that takes `inner` drops it.
    Ok(unsafe { AsyncFd::register_with_interest(inner, interest) }?)
}

/// The descriptor owners [`register`] takes.
trait OwnedDescriptor {}
impl OwnedDescriptor for UnixStream {}
impl OwnedDescriptor for OwnedFd {}

/// See the module documentation.
pub(crate) struct ReadInterestStream {
    read: AsyncFd<UnixStream>,
    /// Registered for write space, made the first time a write would block.
    write: Option<AsyncFd<OwnedFd>>,
}

impl ReadInterestStream {
    /// Takes over a tokio stream (deregistering it) and registers it for reads only.
    pub(crate) fn new(stream: tokio::net::UnixStream) -> io::Result<Self> {
        let std = stream.into_std()?;
        std.set_nonblocking(true)?;
        Ok(Self {
            read: register(std, Interest::READABLE)?,
            write: None,
        })
    }

    /// Writes with `op`; when the buffer is full, waits for write space on the second
    /// registration.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&UnixStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            match op(self.read.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return Poll::Ready(other),
            }
            if self.write.is_none() {
                let dup = self.read.get_ref().try_clone()?;
                self.write = Some(register(OwnedFd::from(dup), Interest::WRITABLE)?);
            }
            let Some(w) = self.write.as_ref() else {
                continue;
            };
            let mut guard = ready!(w.poll_write_ready(cx))?;
            match guard.try_io(|_| op(self.read.get_ref())) {
                Ok(result) => return Poll::Ready(result),
                // Readiness was stale and is cleared: wait again.
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncRead for ReadInterestStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.read.poll_read_ready(cx))?;
            // SAFETY: `read_uninit` only writes into the slice (it never de-initialises a byte).
            let unfilled = unsafe { buf.unfilled_mut() };
            let room = unfilled.len();
            match guard.try_io(|fd| read_uninit(fd.get_ref(), unfilled)) {
                Ok(Ok(n)) => {
                    // A short read emptied the socket: the next read would only find EAGAIN
                    // (one more system call per request), so wait for the next readiness event
                    // instead, as tokio's own streams do. Data that arrived since is not lost:
                    // it raises a new event, which this clearing does not erase.
                    if n > 0 && n < room {
                        guard.clear_ready();
                    }
                    // SAFETY: the kernel wrote the first `n` bytes of the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// `read(2)` into `dst` without initialising it first; returns how many bytes the kernel wrote
/// (from the start of `dst`).
fn read_uninit(stream: &UnixStream, dst: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `dst` is valid for writes of `dst.len()` bytes for the whole call, and the kernel
    // writes at most that many; the descriptor is open (owned by `stream`).
    let n = unsafe { libc::read(stream.as_raw_fd(), dst.as_mut_ptr().cast(), dst.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

impl AsyncWrite for ReadInterestStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut s: &UnixStream| s.write(data))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, |mut s: &UnixStream| s.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.read.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A read initialises only the bytes it received: the rest of the caller's (uninitialised)
    /// buffer is neither written nor reported as initialised (zeroing it cost more than the
    /// hook message's decoding).
    #[tokio::test]
    async fn reads_leave_the_rest_of_the_buffer_alone() {
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let mut a = ReadInterestStream::new(a).unwrap();
        b.write_all(b"abc").await.unwrap();
        let mut storage = [MaybeUninit::<u8>::new(0xAA); 64 << 10];
        let mut buf = ReadBuf::uninit(&mut storage);
        std::future::poll_fn(|cx| Pin::new(&mut a).poll_read(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(buf.filled(), b"abc");
        assert_eq!(
            buf.initialized().len(),
            3,
            "only what was read is initialised"
        );
        // SAFETY: every byte of `storage` was initialised above (0xAA), and the read wrote the
        // first three.
        let all: Vec<u8> = storage.iter().map(|b| unsafe { b.assume_init() }).collect();
        assert_eq!(&all[..3], b"abc");
        assert!(
            all[3..].iter().all(|&b| b == 0xAA),
            "the rest was overwritten"
        );
    }

    /// A short read stops polling the socket until its next event, but an end the peer sent
    /// with its data (or after it) is still seen, and so is data sent after the short read.
    #[tokio::test]
    async fn short_reads_still_see_later_data_and_the_end() {
        let (a, mut b) = tokio::net::UnixStream::pair().unwrap();
        let mut a = ReadInterestStream::new(a).unwrap();
        let mut chunk = vec![0u8; 1 << 16];
        async fn within<T>(f: impl std::future::Future<Output = T>) -> Result<T, ()> {
            tokio::time::timeout(std::time::Duration::from_secs(10), f)
                .await
                .map_err(|_| ())
        }
        b.write_all(b"one").await.unwrap();
        let n = within(a.read(&mut chunk)).await.unwrap().unwrap();
        assert_eq!(&chunk[..n], b"one");
        b.write_all(b"two").await.unwrap();
        let n = within(a.read(&mut chunk))
            .await
            .expect("data after a short read")
            .unwrap();
        assert_eq!(&chunk[..n], b"two");
        b.write_all(b"end").await.unwrap();
        drop(b);
        let n = within(a.read(&mut chunk)).await.unwrap().unwrap();
        assert_eq!(&chunk[..n], b"end");
        let n = within(a.read(&mut chunk))
            .await
            .expect("the end after a short read")
            .unwrap();
        assert_eq!(n, 0);
    }

    /// A write larger than the socket buffer blocks until the peer reads, then completes; reads
    /// see everything the peer sent and then the end.
    #[tokio::test]
    async fn large_writes_wait_for_space_and_reads_see_the_end() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let mut a = ReadInterestStream::new(a).unwrap();
        let mut b = b;
        let big = vec![7u8; 8 << 20];
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            // Let the writer fill the buffer first.
            tokio::task::yield_now().await;
            let mut chunk = vec![0u8; 1 << 16];
            while got.len() < 8 << 20 {
                let n = b.read(&mut chunk).await.unwrap();
                assert!(n > 0, "early end after {} bytes", got.len());
                got.extend_from_slice(&chunk[..n]);
            }
            b.write_all(b"bye").await.unwrap();
            drop(b);
            got
        });
        a.write_all(&big).await.unwrap();
        let got = reader.await.unwrap();
        assert_eq!(got.len(), big.len());
        assert!(
            a.write.is_some(),
            "the 8 MiB write never found the buffer full"
        );
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"bye");
    }
}
