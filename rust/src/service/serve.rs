//! Serving one accepted connection: negotiation (or the busy rejection), then each
//! request to a [`ServiceHandler`] until release or abort.

use std::net::TcpStream;

use log::{debug, warn};

use crate::dimse::Command;
use crate::net::{Association, DataSink, MessageData, NetError, Received, Timeouts};
use crate::ul::{AcceptorConfig, Negotiated};

/// Serves the DIMSE messages of one association. Called on the association's thread.
pub trait ServiceHandler: Send + Sync {
    /// Where the data set of an incoming request goes (default: memory). Called when its
    /// command has arrived, before the first data fragment.
    fn data_sink(&self, _negotiated: &Negotiated, _context_id: u8, _command: &Command) -> DataSink {
        DataSink::Memory
    }

    /// Handle one request. The handler sends its response(s) with
    /// `assoc.send_message`; an error aborts the association.
    fn on_message(
        &self,
        assoc: &mut Association,
        context_id: u8,
        command: Command,
        data: MessageData,
    ) -> Result<(), NetError>;
}

/// Settings of a server.
#[derive(Clone)]
pub struct ServerConfig {
    pub acceptor: AcceptorConfig,
    pub timeouts: Timeouts,
    /// Most associations served at once; further connections are rejected
    /// (A-ASSOCIATE-RJ transient, service-provider (presentation), local limit exceeded).
    pub max_associations: usize,
    /// Serve over TLS (the handshake on the association's thread, within the ACSE timeout).
    pub tls: Option<std::sync::Arc<crate::net::TlsServer>>,
}

/// Serve the association on `stream`; `busy` rejects it (the server is at its limit).
pub fn serve_connection(stream: TcpStream, config: &ServerConfig, handler: &dyn ServiceHandler, busy: bool) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    debug!("connection from {peer}");
    let reject = busy.then_some(crate::ul::reject::LOCAL_LIMIT_EXCEEDED);
    let accepted = match &config.tls {
        None => Association::accept(stream, &config.acceptor, config.timeouts, reject),
        Some(tls) => match tls.accept(stream, config.timeouts.acse) {
            Ok(t) => Association::accept_over(Box::new(t), &config.acceptor, config.timeouts, reject),
            Err(e) => {
                warn!("connection from {peer} refused: {e}");
                return;
            }
        },
    };
    let mut assoc = match accepted {
        Ok(a) => a,
        Err(NetError::Rejected(_)) => return, // logged by accept()
        Err(e) => {
            warn!("association from {peer} failed during negotiation: {e}");
            return;
        }
    };
    let negotiated = assoc.negotiated().clone();
    loop {
        let received = assoc.receive_with(
            config.timeouts.network,
            "waiting for the next request (network timeout)",
            &mut |ctx, cmd| handler.data_sink(&negotiated, ctx, cmd),
        );
        match received {
            Ok(Received::Message { context_id, command, data }) => {
                if let Err(e) = handler.on_message(&mut assoc, context_id, command, data) {
                    warn!("association from {peer} ended: {e}");
                    let _ = assoc.abort();
                    return;
                }
            }
            Ok(Received::ReleaseRequested) => {
                if let Err(e) = assoc.release_response() {
                    debug!("release response to {peer} failed: {e}");
                }
                return;
            }
            Err(NetError::Aborted { .. }) => return, // logged by the association
            Err(e) => {
                warn!("association from {peer} ended: {e}");
                return;
            }
        }
    }
}
