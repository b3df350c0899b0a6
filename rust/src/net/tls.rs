//! TLS (rustls, ring provider) on the PS3.15 B.9 profile, BCP 195 (RFC 9325): TLS 1.2
//! and 1.3 only, AEAD cipher suites with forward secrecy. A [`TlsStream`] is a
//! [`Transport`] with no socket for the zero-copy paths (`raw_fd` None), so splice and
//! sendfile fall back to buffered reads and writes.
//!
//! The handshake runs inside connect / accept, bounded by the ACSE timeout (the connect
//! timeout when there is none). Its failures are told apart so that each says what is
//! wrong: a certificate (unknown CA, expired, issued for another name, missing), the
//! peer refusing ours (the alert it sent), or a peer that does not speak TLS at all
//! (a plaintext DICOM port answering our ClientHello, a plaintext A-ASSOCIATE-RQ on our
//! TLS port). The other direction (a TLS record where a PDU should be) is recognised by
//! [`plaintext_saw_tls`] on the plaintext side.

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{AlertDescription, CertificateError, ClientConnection, ConnectionCommon, DigitallySignedStruct, RootCertStore, ServerConnection, SideData, SignatureScheme, StreamOwned};

use super::{NetError, Transport};
use crate::pdu::PduError;

/// TLS settings as the user gives them (paths to PEM files).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// Our certificate chain (the server's; the client's for mutual TLS).
    pub cert: Option<String>,
    pub key: Option<String>,
    /// The CA bundle the peer's certificate is verified against.
    pub ca: Option<String>,
    /// Server: refuse clients without a certificate signed by `ca`.
    pub require_client_cert: bool,
    /// Client: check that the server's certificate names the host (or `server_name`).
    pub verify_hostname: bool,
    /// Client: the name sent as SNI and checked against the certificate (default: the host).
    pub server_name: Option<String>,
}

fn bad(what: impl std::fmt::Display) -> NetError {
    NetError::Tls(what.to_string())
}

/// The BCP 195 provider: ring, TLS 1.3 suites and the ECDHE AES-GCM suites of TLS 1.2.
fn provider() -> Arc<CryptoProvider> {
    let mut p = ring::default_provider();
    p.cipher_suites = vec![
        ring::cipher_suite::TLS13_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS13_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ];
    Arc::new(p)
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn certs(path: &str) -> Result<Vec<CertificateDer<'static>>, NetError> {
    if !Path::new(path).is_file() {
        return Err(bad(format!("certificate file {path} does not exist")));
    }
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(format!("cannot read certificates from {path}: {e}")))?;
    if certs.is_empty() {
        return Err(bad(format!("{path} holds no PEM certificate")));
    }
    Ok(certs)
}

fn key(path: &str) -> Result<PrivateKeyDer<'static>, NetError> {
    if !Path::new(path).is_file() {
        return Err(bad(format!("key file {path} does not exist")));
    }
    PrivateKeyDer::from_pem_file(path).map_err(|e| bad(format!("cannot read a private key from {path}: {e}")))
}

fn roots(path: &str) -> Result<Arc<RootCertStore>, NetError> {
    let mut store = RootCertStore::empty();
    for c in certs(path)? {
        store.add(c).map_err(|e| bad(format!("CA certificate in {path} is not usable: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// Our chain and key, from `cert` and `key` (both or neither).
fn identity(s: &TlsSettings) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, NetError> {
    match (&s.cert, &s.key) {
        (Some(c), Some(k)) => Ok(Some((certs(c)?, key(k)?))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(bad("a certificate needs its private key (key=)")),
        (None, Some(_)) => Err(bad("a private key needs its certificate (cert=)")),
    }
}

/// The TLS side of an SCU: one client configuration for every association.
#[derive(Debug)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

/// Verifies the chain like webpki but accepts a certificate issued for another name
/// (`verify_hostname=False`, for peers known only by address).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain (and validity dates) before the name: a name error
        // means the rest passed.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl TlsClient {
    pub fn new(s: &TlsSettings) -> Result<TlsClient, NetError> {
        let ca = s.ca.as_deref().ok_or_else(|| bad("a CA bundle (ca=) is needed to verify the server's certificate"))?;
        let provider = provider();
        let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca)?, provider.clone()).build().map_err(bad)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider).with_protocol_versions(VERSIONS).map_err(bad)?;
        let builder = if s.verify_hostname {
            builder.with_webpki_verifier(verifier)
        } else {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
        };
        let config = match identity(s)? {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| bad(format!("our certificate and key do not fit: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(TlsClient { config: Arc::new(config), server_name: s.server_name.clone() })
    }

    /// Run the client handshake over `tcp` to `addr` ("host:port"), within `timeout`.
    pub fn connect(&self, tcp: TcpStream, addr: &str, timeout: Option<Duration>) -> Result<TlsStream<ClientConnection>, NetError> {
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => {
                let h = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                h.trim_start_matches('[').trim_end_matches(']').to_string()
            }
        };
        let name = ServerName::try_from(host.clone()).map_err(|_| bad(format!("'{host}' is not a valid server name for TLS")))?;
        let conn = ClientConnection::new(self.config.clone(), name).map_err(bad)?;
        handshake(conn, tcp, timeout, Side::Client(host))
    }
}

/// The TLS side of an SCP.
#[derive(Debug)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
}

impl TlsServer {
    pub fn new(s: &TlsSettings) -> Result<TlsServer, NetError> {
        let (chain, key) = identity(s)?.ok_or_else(|| bad("a TLS server needs its certificate and key (cert=, key=)"))?;
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(VERSIONS).map_err(bad)?;
        let builder = match (&s.ca, s.require_client_cert) {
            (None, true) => return Err(bad("require_client_cert needs the CA bundle (ca=) client certificates are verified against")),
            (None, false) => builder.with_no_client_auth(),
            (Some(ca), required) => {
                let v = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider);
                let v = if required { v } else { v.allow_unauthenticated() };
                builder.with_client_cert_verifier(v.build().map_err(bad)?)
            }
        };
        let config = builder.with_single_cert(chain, key).map_err(|e| bad(format!("our certificate and key do not fit: {e}")))?;
        Ok(TlsServer { config: Arc::new(config) })
    }

    /// Run the server handshake on an accepted connection, within `timeout`.
    pub fn accept(&self, tcp: TcpStream, timeout: Option<Duration>) -> Result<TlsStream<ServerConnection>, NetError> {
        let conn = ServerConnection::new(self.config.clone()).map_err(bad)?;
        handshake(conn, tcp, timeout, Side::Server)
    }
}

enum Side {
    Client(String),
    Server,
}

/// The socket during the handshake, remembering the first byte the peer sent (what it
/// speaks, when the handshake fails).
struct Watch<'a> {
    sock: &'a mut TcpStream,
    first: Option<u8>,
}

impl Read for Watch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        if self.first.is_none() && n > 0 {
            self.first = buf.first().copied();
        }
        Ok(n)
    }
}

impl Write for Watch<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

fn handshake<C, S>(mut conn: C, mut sock: TcpStream, timeout: Option<Duration>, side: Side) -> Result<TlsStream<C>, NetError>
where
    C: std::ops::DerefMut<Target = ConnectionCommon<S>> + Send,
    S: SideData,
{
    let peer = sock.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut w = Watch { sock: &mut sock, first: None };
    while conn.is_handshaking() {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::Timeout { what: "the TLS handshake", after: timeout.unwrap_or_default() });
            }
            w.sock.set_read_timeout(Some(left))?;
            w.sock.set_write_timeout(Some(left))?;
        }
        if let Err(e) = conn.complete_io(&mut w) {
            let first = w.first;
            linger_close(w.sock);
            return Err(handshake_error(e, first, &side, timeout));
        }
    }
    sock.set_read_timeout(None)?;
    sock.set_write_timeout(None)?;
    let _ = sock.set_nodelay(true);
    log::debug!(
        "{peer}: TLS established ({:?}, {:?})",
        conn.protocol_version().map_or("?".into(), |v| format!("{v:?}")),
        conn.negotiated_cipher_suite().map_or("?".into(), |c| format!("{:?}", c.suite()))
    );
    let client = matches!(side, Side::Client(_));
    Ok(TlsStream { s: RefCell::new(StreamOwned::new(conn, sock)), peer, client })
}

/// Close after a failed handshake so that the alert rustls sent arrives: end our side,
/// then read what the peer still sends (briefly) before closing. Closing with unread
/// bytes would reset the connection, and the peer would see a reset, not our alert.
fn linger_close(sock: &mut TcpStream) {
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        if !matches!(sock.read(&mut buf), Ok(n) if n > 0) {
            break;
        }
    }
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

/// Whether `b` can start a TLS record (content types 20..=23).
fn is_tls_record(b: u8) -> bool {
    (0x14..=0x17).contains(&b)
}

fn handshake_error(e: io::Error, first: Option<u8>, side: &Side, timeout: Option<Duration>) -> NetError {
    log::debug!("TLS handshake failed: {e:?} (first byte {first:?})");
    let tls_err = e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()).cloned();
    let not_tls = first.is_some_and(|b| !is_tls_record(b));
    match (side, tls_err) {
        (Side::Server, _) if first == Some(crate::pdu::pdu_type::ASSOCIATE_RQ) => {
            bad("a plaintext DICOM peer on the TLS port (it sent an A-ASSOCIATE-RQ without TLS)")
        }
        (Side::Server, _) if not_tls => bad("the client does not speak TLS (a plaintext peer on the TLS port?)"),
        (Side::Client(_), _) if not_tls => bad("the peer does not speak TLS (a plaintext port?)"),
        (side, Some(err)) => bad(describe(&err, side)),
        (_, None) => match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => NetError::Timeout { what: "the TLS handshake", after: timeout.unwrap_or_default() },
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => match side {
                Side::Client(_) if first.is_none() => bad("the peer closed the connection during the TLS handshake without answering (a plaintext port?)"),
                Side::Client(_) => bad("the peer closed the connection during the TLS handshake (it refused it?)"),
                // (a client that refuses our certificate does not always get its alert
                // to us before its close)
                Side::Server => bad("the client closed the connection during the TLS handshake (did it refuse our certificate?)"),
            },
            _ => NetError::Io(e),
        },
    }
}

/// One clear sentence for a rustls error, from our side's point of view.
fn describe(e: &rustls::Error, side: &Side) -> String {
    let whose = match side {
        Side::Client(_) => "the server's certificate",
        Side::Server => "the client's certificate",
    };
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => format!("{whose} is not signed by a trusted CA (unknown issuer; check ca=)"),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!("{whose} has expired"),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!("{whose} is not valid yet"),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                let host = match side {
                    Side::Client(h) => h.as_str(),
                    Side::Server => "?",
                };
                format!("{whose} is not valid for the name {host} (hostname mismatch; verify_hostname=False accepts a peer known only by address)")
            }
            CertificateError::BadSignature => format!("{whose} has a bad signature"),
            CertificateError::Revoked => format!("{whose} is revoked"),
            other => format!("{whose} is not acceptable: {other:?}"),
        },
        rustls::Error::NoCertificatesPresented => "the client sent no certificate and one is required (require_client_cert)".into(),
        rustls::Error::AlertReceived(a) => refused(*a),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } | rustls::Error::InappropriateHandshakeMessage { .. } => {
            match side {
                Side::Client(_) => "the peer does not speak TLS (a plaintext port?)".into(),
                Side::Server => "the client does not speak TLS (a plaintext peer on the TLS port?)".into(),
            }
        }
        rustls::Error::PeerIncompatible(x) => format!("no TLS version or cipher suite in common with the peer (BCP 195: TLS 1.2 or 1.3): {x:?}"),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// The peer's fatal alert, said as what it means for us.
fn refused(a: AlertDescription) -> String {
    let why = match a {
        AlertDescription::UnknownCA => "it does not trust the CA of our certificate",
        AlertDescription::CertificateExpired => "it says our certificate has expired",
        AlertDescription::CertificateRequired => "it requires a client certificate (cert=, key=)",
        AlertDescription::BadCertificate | AlertDescription::CertificateUnknown | AlertDescription::UnsupportedCertificate => {
            "it refused our certificate"
        }
        AlertDescription::AccessDenied => "access denied",
        AlertDescription::ProtocolVersion | AlertDescription::HandshakeFailure | AlertDescription::InsufficientSecurity => {
            "no TLS version or cipher suite in common (BCP 195: TLS 1.2 or 1.3)"
        }
        _ => "",
    };
    if why.is_empty() {
        format!("the peer refused the TLS connection (alert {a:?})")
    } else {
        format!("the peer refused the TLS connection: {why} (alert {a:?})")
    }
}

/// An error reading or writing an established TLS stream: the peer's alert (TLS 1.3
/// reports a refused client certificate only after the handshake) or a broken record.
fn io_error(e: io::Error, side: Side) -> io::Error {
    match e.get_ref().and_then(|x| x.downcast_ref::<rustls::Error>()) {
        Some(err) => io::Error::new(ErrorKind::InvalidData, TlsFailure(describe(err, &side))),
        None => e,
    }
}

/// An I/O error that is a TLS failure (see [`tls_failure`]).
#[derive(Debug)]
struct TlsFailure(String);

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsFailure {}

/// A TLS failure met after the handshake, as [`NetError::Tls`]; any other I/O error as it is.
pub(super) fn tls_failure(e: io::Error) -> NetError {
    match e.get_ref().and_then(|x| x.downcast_ref::<TlsFailure>()) {
        Some(f) => NetError::Tls(f.0.clone()),
        None => NetError::Io(e),
    }
}

/// On a plaintext association: a TLS record where the first PDU should be means the
/// peer speaks TLS. Say so, rather than "unrecognized PDU type 0x16". A peer that closes
/// without a word after our A-ASSOCIATE-RQ is what a TLS-only port does (dcmtk's): hint.
pub(super) fn plaintext_saw_tls(e: NetError, requestor: bool) -> NetError {
    match e {
        NetError::Closed(w) if requestor && w.starts_with("waiting for A-ASSOCIATE-AC") => {
            NetError::Closed("waiting for A-ASSOCIATE-AC, without answering (a TLS-only port? then connect with TLS)")
        }
        NetError::Pdu(PduError::UnrecognizedPduType(t)) if is_tls_record(t) => NetError::Tls(if requestor {
            format!("the peer answered with TLS (a TLS port? connect with TLS); unrecognized PDU type 0x{t:02X}")
        } else {
            format!("a TLS client on a plaintext port (a TLS record, unrecognized PDU type 0x{t:02X}, where an A-ASSOCIATE-RQ should be)")
        }),
        e => e,
    }
}

/// An established TLS connection. The cell lets the `&self` controls of [`Transport`]
/// (close_notify on shutdown, the readable check) reach the connection; the stream is
/// used by one thread at a time.
pub struct TlsStream<C> {
    s: RefCell<StreamOwned<C, TcpStream>>,
    peer: String,
    client: bool,
}

impl<C> TlsStream<C> {
    fn side(&self) -> Side {
        if self.client {
            Side::Client(String::new())
        } else {
            Side::Server
        }
    }
}

impl<C, S> Read for TlsStream<C>
where
    C: std::ops::DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.s.get_mut().read(buf) {
            // A peer that closes the TCP connection without close_notify (many do after
            // A-RELEASE-RP): an end of stream like any other.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(0),
            r => r.map_err(|e| io_error(e, self.side())),
        }
    }
}

impl<C, S> Write for TlsStream<C>
where
    C: std::ops::DerefMut<Target = ConnectionCommon<S>>,
    S: SideData,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.s.get_mut().write(buf).map_err(|e| io_error(e, self.side()))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.s.get_mut().flush().map_err(|e| io_error(e, self.side()))
    }
}

impl<C, S> Transport for TlsStream<C>
where
    C: std::ops::DerefMut<Target = ConnectionCommon<S>> + Send,
    S: SideData,
{
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.s.borrow().sock.set_read_timeout(t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.s.borrow().sock.set_write_timeout(t)
    }
    fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.s.borrow().sock.set_nonblocking(on)
    }
    /// close_notify, then the TCP shutdown.
    fn shutdown(&self) {
        if let Ok(mut s) = self.s.try_borrow_mut() {
            s.conn.send_close_notify();
            let StreamOwned { conn, sock } = &mut *s;
            let _ = sock.set_write_timeout(Some(Duration::from_secs(1)));
            while conn.wants_write() {
                if conn.write_tls(sock).is_err() {
                    break;
                }
            }
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
    }
    fn peer(&self) -> String {
        self.peer.clone()
    }
    /// Plaintext ready, or records waiting on the socket that decrypt to some (a TLS
    /// record that carries no data, such as a session ticket, does not count).
    fn readable(&self) -> bool {
        let Ok(mut s) = self.s.try_borrow_mut() else { return false };
        let StreamOwned { conn, sock } = &mut *s;
        loop {
            match conn.process_new_packets() {
                Ok(st) if st.plaintext_bytes_to_read() > 0 || st.peer_has_closed() => return true,
                Ok(_) => {}
                Err(_) => return true,
            }
            if !sock_readable(sock) {
                return false;
            }
            match conn.read_tls(sock) {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }
    #[cfg(target_os = "linux")]
    fn after_read(&self) {
        if let Ok(s) = self.s.try_borrow() {
            super::sys::quick_ack(std::os::fd::AsRawFd::as_raw_fd(&s.sock));
        }
    }
}

#[cfg(target_os = "linux")]
fn sock_readable(s: &TcpStream) -> bool {
    super::sys::readable(std::os::fd::AsRawFd::as_raw_fd(s))
}

#[cfg(not(target_os = "linux"))]
fn sock_readable(_s: &TcpStream) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_tls_record_where_the_first_pdu_should_be_is_named() {
        for (t, requestor, want) in [(0x16, false, "a TLS client on a plaintext port"), (0x15, true, "the peer answered with TLS")] {
            match plaintext_saw_tls(NetError::Pdu(PduError::UnrecognizedPduType(t)), requestor) {
                NetError::Tls(m) => assert!(m.contains(want), "{m}"),
                other => panic!("{other:?}"),
            }
        }
        // any other unknown PDU type stays what it is
        assert!(matches!(plaintext_saw_tls(NetError::Pdu(PduError::UnrecognizedPduType(0x42)), false), NetError::Pdu(_)));
    }

    #[test]
    fn configuration_errors_say_what_is_missing() {
        let none = TlsSettings { verify_hostname: true, ..Default::default() };
        assert!(matches!(TlsClient::new(&none), Err(NetError::Tls(m)) if m.contains("ca=")));
        assert!(matches!(TlsServer::new(&none), Err(NetError::Tls(m)) if m.contains("cert=, key=")));
        let missing = TlsSettings { ca: Some("/nonexistent/ca.pem".into()), ..none.clone() };
        assert!(matches!(TlsClient::new(&missing), Err(NetError::Tls(m)) if m.contains("does not exist")));
        let half = TlsSettings { cert: Some("/nonexistent/c.pem".into()), ..none };
        assert!(matches!(TlsServer::new(&half), Err(NetError::Tls(m)) if m.contains("private key")));
    }

    /// Our server handshake against a peer that sends `bytes` then closes: the error
    /// names what the peer speaks.
    fn server_error_for(bytes: &'static [u8]) -> String {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let t = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).expect("connect");
            let _ = s.write_all(bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
        let (sock, _) = l.accept().expect("accept");
        let conn = ServerConnection::new(Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(VERSIONS)
                .expect("versions")
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new())),
        ))
        .expect("server connection");
        let r = handshake(conn, sock, Some(Duration::from_secs(5)), Side::Server);
        let _ = t.join();
        match r {
            Err(NetError::Tls(m)) => m,
            Err(e) => format!("not a TLS error: {e}"),
            Ok(_) => "handshake succeeded".into(),
        }
    }

    #[test]
    fn plaintext_peers_on_the_tls_port_are_named() {
        // an A-ASSOCIATE-RQ header (type 1, length 0x44)
        assert!(server_error_for(&[0x01, 0x00, 0x00, 0x00, 0x00, 0x44, 0x00, 0x01]).contains("a plaintext DICOM peer on the TLS port"));
        assert!(server_error_for(b"GET / HTTP/1.0\r\n\r\n").contains("does not speak TLS"));
        assert!(server_error_for(b"").contains("closed the connection during the TLS handshake"));
    }
}
