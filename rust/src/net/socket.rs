//! Socket options and socket-level calls of the driver: buffer sizes, TCP_QUICKACK,
//! a readiness check without waiting, and connecting. Every `unsafe` of these is here.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::NetError;

/// Socket buffer size asked for where the system allows it (see [`tune_buffers`]).
const SOCKET_BUFFER: usize = 4 << 20;

/// Where the system lets a process have socket buffers of [`SOCKET_BUFFER`] or more
/// (`net.core.rmem_max` / `wmem_max`), ask for them: a sender can then stream on while the
/// receiver finalises an instance (file, rename, response), instead of stalling on a
/// buffer that autotuning is still growing. Where the limits are lower (the kernel's
/// defaults), nothing is set and autotuning, which may go further, stays in charge.
/// `FASTDIMSE_SOCKET_BUFFER=0` turns this off; another value sets the size.
#[cfg(target_os = "linux")]
pub(super) fn tune_buffers(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
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
            set_int_option(stream.as_raw_fd(), libc::SOL_SOCKET, opt, n);
        }
    }
}

/// setsockopt(2) with an `int` value; a failure only leaves the option as it was.
#[cfg(target_os = "linux")]
fn set_int_option(fd: i32, level: i32, opt: i32, value: i32) {
    // SAFETY: `fd` is an open socket for the duration of the call; the option value is a
    // 4-byte int on our stack that outlives the call, and its size is passed with it.
    unsafe {
        libc::setsockopt(fd, level, opt, (&value as *const i32).cast(), std::mem::size_of::<i32>() as libc::socklen_t)
    };
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
#[cfg(target_os = "linux")]
pub(super) fn quick_ack(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("FASTDIMSE_NO_QUICKACK").is_none()) {
        set_int_option(stream.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_QUICKACK, 1);
    }
}

#[cfg(not(target_os = "linux"))]
pub(super) fn quick_ack(_stream: &TcpStream) {}

/// Whether bytes (or an end of stream) can be read from the socket without waiting.
pub(super) fn socket_readable(stream: &TcpStream) -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        let mut p = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd that outlives the call; a zero timeout never blocks.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents != 0
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        false
    }
}

pub(super) fn connect(addr: &str, timeout: Option<Duration>) -> Result<TcpStream, NetError> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| NetError::Connect { addr: addr.to_string(), source: e })?
        .collect();
    let mut last = None;
    for a in addrs {
        let r = match timeout {
            Some(t) => TcpStream::connect_timeout(&a, t),
            None => TcpStream::connect(a),
        };
        match r {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let source = last.unwrap_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no address"));
    if source.kind() == ErrorKind::TimedOut || source.kind() == ErrorKind::WouldBlock {
        return Err(NetError::Timeout { what: "connecting (connect timeout)", after: timeout.unwrap_or_default() });
    }
    Err(NetError::Connect { addr: addr.to_string(), source })
}
