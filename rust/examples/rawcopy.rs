//! The machine's floor for the C-STORE benchmarks: the same files copied over one
//! loopback TCP connection into new files, with no DICOM at all (no association, no
//! PDUs, no responses, no meta group, no rename). Each file goes as an 8-byte length
//! and its bytes, sent with sendfile(2) and spliced socket -> pipe -> file on the other
//! side, one new file per file sent: the least work any storage SCU/SCP pair on this
//! machine can do for that data. Linux only.
//!
//! ```text
//! rawcopy recv PORT OUTDIR          # prints "listening", then {"files": n, "bytes": b}
//! rawcopy send PORT PATH...         # files or folders (recursive); prints {"elapsed": s, ...}
//! ```
//! The sender's clock runs from the first byte sent to the receiver's acknowledgement
//! that the last file is closed.

#[cfg(target_os = "linux")]
mod imp {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    const END: u64 = u64::MAX;

    fn fail(what: &str, e: impl std::fmt::Display) -> ! {
        eprintln!("rawcopy: {what}: {e}");
        std::process::exit(1)
    }

    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .unwrap_or_else(|e| fail("read_dir", e))
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            for e in entries {
                walk(&e, out);
            }
        } else {
            out.push(p.to_path_buf());
        }
    }

    pub fn recv(port: u16, outdir: &Path) {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| fail("bind", e));
        println!("listening");
        let (mut sock, _) = listener.accept().unwrap_or_else(|e| fail("accept", e));
        let _ = sock.set_nodelay(true);
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            fail("pipe2", std::io::Error::last_os_error());
        }
        let (pr, pw) = (fds[0], fds[1]);
        // SAFETY: pw is our pipe; failure keeps the default size.
        unsafe { libc::fcntl(pw, libc::F_SETPIPE_SZ, 1 << 20) };
        let (mut files, mut bytes) = (0u64, 0u64);
        loop {
            let mut hdr = [0u8; 8];
            sock.read_exact(&mut hdr).unwrap_or_else(|e| fail("read length", e));
            let len = u64::from_le_bytes(hdr);
            if len == END {
                break;
            }
            let f = File::create(outdir.join(format!("{files}.raw"))).unwrap_or_else(|e| fail("create", e));
            let mut left = len as usize;
            while left > 0 {
                // SAFETY: open descriptors, null offsets = current positions.
                let n = unsafe {
                    libc::splice(sock.as_raw_fd(), std::ptr::null_mut(), pw, std::ptr::null_mut(), left, libc::SPLICE_F_MOVE)
                };
                if n <= 0 {
                    fail("splice from socket", std::io::Error::last_os_error());
                }
                let mut m = n as usize;
                while m > 0 {
                    // SAFETY: as above.
                    let k = unsafe {
                        libc::splice(pr, std::ptr::null_mut(), f.as_raw_fd(), std::ptr::null_mut(), m, libc::SPLICE_F_MOVE)
                    };
                    if k <= 0 {
                        fail("splice to file", std::io::Error::last_os_error());
                    }
                    m -= k as usize;
                }
                left -= n as usize;
            }
            drop(f);
            files += 1;
            bytes += len;
        }
        sock.write_all(b"!").unwrap_or_else(|e| fail("ack", e));
        println!("{{\"files\": {files}, \"bytes\": {bytes}}}");
    }

    pub fn send(port: u16, paths: &[PathBuf]) {
        let mut files = Vec::new();
        for p in paths {
            walk(p, &mut files);
        }
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| fail("connect", e));
        let _ = sock.set_nodelay(true);
        let t0 = Instant::now();
        let mut bytes = 0u64;
        for path in &files {
            let f = File::open(path).unwrap_or_else(|e| fail("open", e));
            let len = f.metadata().unwrap_or_else(|e| fail("stat", e)).len();
            let hdr = len.to_le_bytes();
            // SAFETY: `hdr` is 8 live bytes; MSG_MORE lets it leave with the data.
            if unsafe { libc::send(sock.as_raw_fd(), hdr.as_ptr().cast(), 8, libc::MSG_MORE) } != 8 {
                fail("send length", std::io::Error::last_os_error());
            }
            let mut off: libc::off_t = 0;
            while (off as u64) < len {
                // SAFETY: open descriptors; `off` is ours.
                let n = unsafe { libc::sendfile(sock.as_raw_fd(), f.as_raw_fd(), &mut off, (len - off as u64) as usize) };
                if n <= 0 {
                    fail("sendfile", std::io::Error::last_os_error());
                }
            }
            bytes += len;
        }
        sock.write_all(&END.to_le_bytes()).unwrap_or_else(|e| fail("send end", e));
        let mut ack = [0u8; 1];
        sock.read_exact(&mut ack).unwrap_or_else(|e| fail("read ack", e));
        let elapsed = t0.elapsed().as_secs_f64();
        println!("{{\"elapsed\": {elapsed}, \"files\": {}, \"bytes\": {bytes}}}", files.len());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: rawcopy recv PORT OUTDIR | rawcopy send PORT PATH...";
    if args.len() < 4 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let port: u16 = args[2].parse().unwrap_or_else(|_| {
        eprintln!("{usage}");
        std::process::exit(2)
    });
    #[cfg(target_os = "linux")]
    match args[1].as_str() {
        "recv" => imp::recv(port, std::path::Path::new(&args[3])),
        "send" => imp::send(port, &args[3..].iter().map(std::path::PathBuf::from).collect::<Vec<_>>()),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = port;
        eprintln!("rawcopy: Linux only");
        std::process::exit(3);
    }
}
