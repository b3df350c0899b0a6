//! What a [`Connection`](super::Connection) hands up and takes down besides PDUs: where the
//! data set of an incoming message goes ([`DataSink`], [`Sink`]), the received message
//! ([`Received`], [`MessageData`]), and responses given later than their request
//! ([`Deferred`]). No I/O on the network here; a sink is the user's writer (a file).

use std::io::Write;

use crate::dimse::Command;

/// Where the data set of an incoming message goes, chosen when its command arrives.
pub enum DataSink {
    /// Collect it in memory (small identifiers, C-FIND).
    Memory,
    /// Stream each fragment to this writer as it arrives (C-STORE to a file).
    Writer(Box<dyn Sink>),
    /// Read and drop it.
    Discard,
}

/// A writer that can be handed back to its creator (who knows its concrete type).
pub trait Sink: Write + Send {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;

    /// A file descriptor that data may be spliced into directly (after anything buffered
    /// has been flushed), or None (the default) to get every byte through `write`.
    fn splice_fd(&mut self) -> Option<i32> {
        None
    }

    /// `n` bytes were spliced into `splice_fd` behind the writer's back.
    fn spliced(&mut self, _n: u64) {}

    /// How many more bytes the sink would like through `write` before any are spliced
    /// (a header it reads from memory later); 0 (the default) = none.
    fn prefix_wanted(&self) -> usize {
        0
    }
}

/// The data set of a received message.
pub enum MessageData {
    /// The command announced no data set.
    None,
    /// Collected in memory.
    Memory(Vec<u8>),
    /// Streamed into the sink; `error` is the first write error, if any (later fragments
    /// were then read and dropped so that the association stays in step).
    Sink { sink: Box<dyn Sink>, error: Option<std::io::Error> },
    /// Read and dropped.
    Discarded,
}

impl MessageData {
    /// The bytes, if collected in memory.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            MessageData::Memory(v) => Some(v),
            _ => None,
        }
    }
}

/// A response given later than its request was handled: a C-STORE-RSP held until the
/// instance is committed to the index ("acknowledged means findable"). The association
/// keeps reading requests while responses wait (a peer with an asynchronous operations
/// window keeps sending), and settles them, in order, before it would block waiting for
/// the peer, before it sends anything else, and before it answers a release.
pub trait Deferred: Send {
    /// The response, if it can be given now without waiting.
    fn ready(&mut self) -> Option<Command>;
    /// Wait for the response (the implementation bounds the wait).
    fn wait(self: Box<Self>) -> Command;
}

/// A complete DIMSE message, or the peer's release request.
#[allow(clippy::large_enum_variant)] // one per message; boxing the command buys nothing
pub enum Received {
    /// A complete DIMSE message: its command and its data set.
    Message { context_id: u8, command: Command, data: MessageData },
    /// The peer asked to release; answer with a release response.
    ReleaseRequested,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Received::Message { context_id, command, .. } => write!(f, "Message({context_id}, {command})"),
            Received::ReleaseRequested => write!(f, "ReleaseRequested"),
        }
    }
}

/// The message being received: its command and where its data set goes.
#[derive(Default)]
pub(super) struct Inbox {
    pub current: Option<(u8, Command)>,
    pub sink: Option<DataSink>,
    pub mem: Vec<u8>,
    pub sink_error: Option<std::io::Error>,
}

impl Inbox {
    /// A command with a data set arrived: its fragments go to `sink`.
    pub fn start(&mut self, context_id: u8, command: Command, sink: DataSink) {
        self.current = Some((context_id, command));
        self.sink = Some(sink);
        self.mem.clear();
        self.sink_error = None;
    }

    /// Route one data fragment (dropped once the sink failed).
    pub fn write(&mut self, data: &[u8]) {
        match self.sink.as_mut() {
            Some(DataSink::Memory) => self.mem.extend_from_slice(data),
            Some(DataSink::Writer(w)) if self.sink_error.is_none() => {
                if let Err(e) = w.write_all(data) {
                    self.sink_error = Some(e);
                }
            }
            _ => {}
        }
    }

    /// The sink file descriptor data may be spliced into now, if any.
    pub fn splice_fd(&mut self) -> Option<i32> {
        match self.sink.as_mut() {
            Some(DataSink::Writer(w)) if self.sink_error.is_none() => w.splice_fd(),
            _ => None,
        }
    }

    /// Bytes the sink wants through `write` before any are spliced.
    pub fn prefix_wanted(&self) -> usize {
        match self.sink.as_ref() {
            Some(DataSink::Writer(w)) if self.sink_error.is_none() => w.prefix_wanted(),
            _ => 0,
        }
    }

    /// `moved` bytes reached the sink behind its back; `error`: the sink failed after that.
    pub fn spliced(&mut self, moved: usize, error: Option<std::io::Error>) {
        if let Some(DataSink::Writer(w)) = self.sink.as_mut() {
            w.spliced(moved as u64);
        }
        if let Some(e) = error {
            self.sink_error.get_or_insert(e);
        }
    }

    /// The last fragment came: the whole message.
    pub fn finish(&mut self) -> Option<Received> {
        let (context_id, command) = self.current.take()?;
        let data = match self.sink.take() {
            Some(DataSink::Memory) | None => MessageData::Memory(std::mem::take(&mut self.mem)),
            Some(DataSink::Writer(sink)) => MessageData::Sink { sink, error: self.sink_error.take() },
            Some(DataSink::Discard) => MessageData::Discarded,
        };
        Some(Received::Message { context_id, command, data })
    }
}
