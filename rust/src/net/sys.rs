//! Every `unsafe` of the driver: socket options (buffer sizes, TCP_QUICKACK), a readiness
//! check without waiting, splice(2) through a pipe held as owned descriptors, send with
//! MSG_MORE, and sendfile(2). Linux only where the call is; elsewhere the callers fall back.

use std::io::{Error, ErrorKind, Result};
use std::os::fd::RawFd;

/// Socket buffer size asked for where the system allows it (see [`tune_buffers`]).
const SOCKET_BUFFER: usize = 4 << 20;

/// Where the system lets a process have socket buffers of [`SOCKET_BUFFER`] or more
/// (`net.core.rmem_max` / `wmem_max`), ask for them: a sender can then stream on while the
/// receiver finalises an instance (file, rename, response), instead of stalling on a
/// buffer that autotuning is still growing. Where the limits are lower (the kernel's
/// defaults), nothing is set and autotuning, which may go further, stays in charge.
/// `FASTDIMSE_SOCKET_BUFFER=0` turns this off; another value sets the size.
pub fn tune_buffers(fd: RawFd) {
    static SIZES: std::sync::OnceLock<(Option<i32>, Option<i32>)> = std::sync::OnceLock::new();
    let (snd, rcv) = *SIZES.get_or_init(|| {
        let want = std::env::var("FASTDIMSE_SOCKET_BUFFER").ok().and_then(|v| v.trim().parse::<usize>().ok()).unwrap_or(SOCKET_BUFFER);
        let allowed = |file: &str| {
            std::fs::read_to_string(file).ok().and_then(|v| v.trim().parse::<usize>().ok()).filter(|max| want > 0 && *max >= want)
        };
        let size = i32::try_from(want).ok();
        (allowed("/proc/sys/net/core/wmem_max").and(size), allowed("/proc/sys/net/core/rmem_max").and(size))
    });
    for (opt, size) in [(libc::SO_SNDBUF, snd), (libc::SO_RCVBUF, rcv)] {
        if let Some(n) = size {
            set_int_option(fd, libc::SOL_SOCKET, opt, n);
        }
    }
}

/// setsockopt(2) with an `int` value; a failure only leaves the option as it was.
fn set_int_option(fd: RawFd, level: i32, opt: i32, value: i32) {
    // SAFETY: `fd` is an open socket for the duration of the call; the option value is a
    // 4-byte int on our stack that outlives the call, and its size is passed with it.
    unsafe { libc::setsockopt(fd, level, opt, (&value as *const i32).cast(), std::mem::size_of::<i32>() as libc::socklen_t) };
}

/// Peers that leave Nagle's algorithm on, and our delayed ACKs.
///
/// dcmtk (unless `TCP_NODELAY=1` is in its environment), pynetdicom and many PACS keep
/// Nagle on, and write a PDU in two calls: its 12 header bytes (PDU + PDV header), then
/// the rest. The first small segment leaves at once; Nagle holds the second until the
/// first is acknowledged. Linux, on our side, delays that ACK (by at least 40 ms) whenever
/// the connection looks interactive ("pingpong" mode, entered each time we send soon
/// after receiving: every request/response exchange), in the hope of carrying it on data
/// of ours; but we have nothing to send until the peer's PDU is complete. So every
/// C-STORE-RQ from storescu, and every C-STORE-RSP that storescp or getscu sends us (our
/// SCU, our C-MOVE and C-GET sub-operations), waited one delayed ACK: ~22 instances/s.
/// Our own writes do not stall the peer: we set TCP_NODELAY, and a small message leaves
/// in one write (command and data PDU), a large one's command with its first data PDU.
///
/// TCP_QUICKACK, set after each read from the socket, sends an ACK that is pending now
/// and leaves pingpong mode, so that the next segment is acknowledged as soon as we read
/// it. The kernel does not keep the option (it re-enters pingpong mode on our next
/// send), hence after every read, not once. One setsockopt per read.
/// `FASTDIMSE_NO_QUICKACK=1` turns it off (for comparison: the benchmark's "before").
pub fn quick_ack(fd: RawFd) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("FASTDIMSE_NO_QUICKACK").is_none()) {
        set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1);
    }
}

/// Whether bytes (or an end of stream) can be read from `fd` without waiting.
pub fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd that outlives the call; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents != 0
}

/// A call returning a byte count or -1, retried on EINTR.
fn retry(mut call: impl FnMut() -> isize) -> Result<usize> {
    loop {
        let r = call();
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Where splice(2) failed: reading the socket (the association is gone) or writing the
/// file (the rest of the data set is read the ordinary way and dropped).
pub enum SpliceError {
    Socket(Error),
    Closed,
    Sink(Error),
}

/// The pipe that carries spliced bytes from the socket to a file.
pub struct Pipe {
    r: std::os::fd::OwnedFd,
    w: std::os::fd::OwnedFd,
}

impl Pipe {
    pub fn new() -> Result<Pipe> {
        use std::os::fd::FromRawFd;
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Error::last_os_error());
        }
        // SAFETY: both descriptors were just made by pipe2 and are owned by nobody else.
        let (r, w) = unsafe { (std::os::fd::OwnedFd::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: `w` is our open pipe; a failure only keeps the default size.
        unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&w), libc::F_SETPIPE_SZ, 1 << 20) };
        Ok(Pipe { r, w })
    }

    /// Move `len` bytes socket -> pipe -> `fd`, calling `after_read` after each read from the
    /// socket. On error: how many bytes reached `fd`.
    pub fn splice(&self, sock: RawFd, fd: RawFd, len: usize, after_read: impl Fn()) -> std::result::Result<(), (usize, SpliceError)> {
        use std::os::fd::AsRawFd;
        let (pr, pw) = (self.r.as_raw_fd(), self.w.as_raw_fd());
        let null = std::ptr::null_mut();
        let mut done = 0usize;
        while done < len {
            // SAFETY: valid descriptors; null offsets mean "current position".
            let n = retry(|| unsafe { libc::splice(sock, null, pw, null, len - done, libc::SPLICE_F_MOVE) })
                .map_err(|e| (done, SpliceError::Socket(e)))?;
            if n == 0 {
                return Err((done, SpliceError::Closed));
            }
            after_read();
            let mut k = 0usize;
            while k < n {
                // SAFETY: as above.
                let m = retry(|| unsafe { libc::splice(pr, null, fd, null, n - k, libc::SPLICE_F_MOVE) });
                let e = match m {
                    Ok(0) => Error::new(ErrorKind::WriteZero, "file took no bytes"),
                    Ok(m) => {
                        k += m;
                        continue;
                    }
                    Err(e) => e,
                };
                // Bytes stuck in the pipe are lost for the file; drain them and read the rest normally.
                let mut buf = [0u8; 65536];
                let mut left = n - k;
                while left > 0 {
                    // SAFETY: reading into our own buffer from our pipe.
                    match retry(|| unsafe { libc::read(pr, buf.as_mut_ptr().cast(), left.min(buf.len())) }) {
                        Ok(r) if r > 0 => left -= r,
                        _ => break,
                    }
                }
                return Err((done + k, SpliceError::Sink(e)));
            }
            done += n;
        }
        Ok(())
    }
}

/// Send all of `bytes` with MSG_MORE (they leave in the same segment as what follows).
pub fn send_more(sock: RawFd, bytes: &[u8]) -> Result<()> {
    let mut sent = 0;
    while sent < bytes.len() {
        // SAFETY: `bytes` is a live buffer; `sock` is an open socket.
        sent += retry(|| unsafe {
            libc::send(sock, bytes[sent..].as_ptr().cast(), bytes.len() - sent, libc::MSG_MORE | libc::MSG_NOSIGNAL)
        })?;
    }
    Ok(())
}

/// sendfile(2) `len` bytes of `file` from `*offset` to `sock`; Ok(false) when the file ended
/// early (`*offset` tells where).
pub fn sendfile(sock: RawFd, file: RawFd, offset: &mut u64, len: usize) -> Result<bool> {
    let mut off = *offset as libc::off_t;
    let mut rest = len;
    let r = loop {
        if rest == 0 {
            break Ok(true);
        }
        // SAFETY: both descriptors are open for the duration of the call; `off` is ours.
        match retry(|| unsafe { libc::sendfile(sock, file, &mut off, rest) }) {
            Ok(0) => break Ok(false),
            Ok(n) => rest -= n,
            Err(e) => break Err(e),
        }
    };
    *offset = off as u64;
    r
}
