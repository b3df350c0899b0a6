//! The listening side: accept TCP connections, each served on its own thread by
//! [`serve_connection`](super::serve::serve_connection). It sits in the service layer
//! (above the `net` driver) because it hands each connection to the services.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use log::{info, warn};

pub use super::serve::{ServerConfig, ServiceHandler};
use crate::net::NetError;

struct Shared {
    stopping: AtomicBool,
    conns: Mutex<HashMap<u64, TcpStream>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
    next_id: AtomicU64,
}

/// A listening SCP. Dropping it stops it.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor_thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind to `addr` (port 0 picks a free port) and start serving in the background.
    pub fn start(addr: &str, config: ServerConfig, handler: Arc<dyn ServiceHandler>) -> Result<Server, NetError> {
        let listener = TcpListener::bind(addr).map_err(|e| NetError::Connect { addr: addr.to_string(), source: e })?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            workers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        });
        let sh = shared.clone();
        let config = Arc::new(config);
        info!("listening on {} as {}", local, config.acceptor.ae_title);
        let t = std::thread::Builder::new()
            .name(format!("fastdimse-scp-{}", local.port()))
            .spawn(move || accept_loop(listener, sh, config, handler))?;
        Ok(Server { addr: local, shared, acceptor_thread: Some(t) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_running(&self) -> bool {
        !self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Number of associations being served now.
    pub fn active_associations(&self) -> usize {
        self.shared.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Stop listening, close every live association, wait for the threads.
    pub fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the blocking accept() with a connection of our own.
        let wake = if self.addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), self.addr.port())
        } else {
            self.addr
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(t) = self.acceptor_thread.take() {
            let _ = t.join();
        }
        if let Ok(conns) = self.shared.conns.lock() {
            for s in conns.values() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        let workers: Vec<_> = self.shared.workers.lock().map(|mut w| w.drain(..).collect()).unwrap_or_default();
        for w in workers {
            let _ = w.join();
        }
        info!("stopped listening on {}", self.addr);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, config: Arc<ServerConfig>, handler: Arc<dyn ServiceHandler>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let busy = shared.conns.lock().map(|c| c.len()).unwrap_or(0) >= config.max_associations;
        if let (Ok(clone), Ok(mut conns)) = (stream.try_clone(), shared.conns.lock()) {
            conns.insert(id, clone);
        }
        let (sh, cfg, h) = (shared.clone(), config.clone(), handler.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("fastdimse-assoc-{id}"))
            .spawn(move || {
                super::serve::serve_connection(stream, &cfg, h.as_ref(), busy);
                if let Ok(mut c) = sh.conns.lock() {
                    c.remove(&id);
                }
            });
        match spawned {
            Ok(j) => {
                if let Ok(mut w) = shared.workers.lock() {
                    w.retain(|j| !j.is_finished());
                    w.push(j);
                }
            }
            Err(e) => {
                warn!("cannot start a thread for a new association: {e}");
                if let Ok(mut c) = shared.conns.lock() {
                    if let Some(s) = c.remove(&id) {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
            }
        }
    }
}
