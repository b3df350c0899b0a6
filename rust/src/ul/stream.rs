//! Streaming a data set from a reader as P-DATA-TF PDUs, sans-I/O on the wire side: the
//! driver pulls the bytes of each write through a [`DataFramer`] and writes them whole.

use std::io::{ErrorKind, Read};

use super::connection::{ConnError, Connection};
use crate::dataset::Transcoder;
use crate::pdu::PDATA_SINGLE_PDV_OVERHEAD as H;

/// Why a framer stopped.
#[derive(Debug)]
pub enum FrameError {
    /// The connection refused a P-DATA (the association is gone).
    Conn(ConnError),
    /// Reading the source failed (the message is left unfinished).
    Read(std::io::Error),
    /// Transcoding the source failed (the message is left unfinished).
    Transcode(String),
}

/// Frames the data set of one message, read from `source`: `len` bytes when known and
/// sent as is (one PDU-sized buffer, zeroed once, each PDU read into it), else until end of
/// input, through the `transcoder` if given. The command PDU(s) at the front of `out` leave
/// with the first data PDU, in one write.
pub struct DataFramer<'a> {
    ctx: u8,
    source: &'a mut dyn Read,
    transcoder: Option<&'a mut Transcoder>,
    /// Known length: the bytes still to send, and where the next PDU starts in `out`.
    known: Option<(u64, usize)>,
    total: u64,
    sent: u64,
    pend: Vec<u8>,
    chunk: Vec<u8>,
    /// Bytes of `out` handed out by the last `next` (cleared before the next one).
    handed: bool,
    done: bool,
}

impl<'a> DataFramer<'a> {
    pub fn new(conn: &Connection, ctx: u8, source: &'a mut dyn Read, len: Option<u64>, transcoder: Option<&'a mut Transcoder>, out: &mut Vec<u8>) -> Self {
        let max = conn.max_pdv_data();
        let known = match (len, &transcoder) {
            (Some(total), None) => Some((total, out.len())),
            _ => None,
        };
        let (pend, chunk) = match known {
            Some((total, at)) => {
                let need = at + H + total.min(max as u64) as usize;
                if out.len() < need {
                    out.resize(need, 0);
                }
                (Vec::new(), Vec::new())
            }
            None => (Vec::with_capacity(max * 2), vec![0u8; max.clamp(4096, 1 << 20)]),
        };
        let total = len.unwrap_or(0);
        DataFramer { ctx, source, transcoder, known, total, sent: 0, pend, chunk, handed: false, done: false }
    }

    /// Data set bytes framed so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The next write: `out[..n]`; None once the data set is complete.
    pub fn next(&mut self, conn: &mut Connection, out: &mut Vec<u8>) -> Result<Option<usize>, FrameError> {
        if self.done {
            return Ok(None);
        }
        if let Some((left, at)) = self.known {
            let n = left.min(conn.max_pdv_data() as u64) as usize;
            let h = conn.data_header(self.ctx, n, left == n as u64).map_err(FrameError::Conn)?;
            out[at..at + H].copy_from_slice(&h);
            self.source.read_exact(&mut out[at + H..at + H + n]).map_err(|e| {
                let total = self.total;
                FrameError::Read(std::io::Error::new(e.kind(), format!("reading the data set ({} of {total} bytes sent): {e}", total - left)))
            })?;
            self.known = Some((left - n as u64, 0));
            self.sent += n as u64;
            self.done = left == n as u64;
            return Ok(Some(at + H + n));
        }
        if std::mem::take(&mut self.handed) {
            out.clear();
        }
        loop {
            let k = loop {
                match self.source.read(&mut self.chunk) {
                    Ok(k) => break k,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(FrameError::Read(e)),
                }
            };
            let transcode_err = |e: crate::dataset::DatasetError| FrameError::Transcode(e.to_string());
            match self.transcoder.as_deref_mut() {
                Some(t) if k == 0 => t.finish(&mut self.pend).map_err(transcode_err)?,
                Some(t) => t.feed(&self.chunk[..k], &mut self.pend).map_err(transcode_err)?,
                None => self.pend.extend_from_slice(&self.chunk[..k]),
            }
            let n = conn.frame_data(self.ctx, &mut self.pend, k == 0, self.sent == 0, out).map_err(FrameError::Conn)?;
            self.sent += n as u64;
            self.done = k == 0;
            if n > 0 || k == 0 {
                self.handed = true;
                return Ok(Some(out.len()));
            }
        }
    }
}
