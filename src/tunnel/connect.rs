//! Opening the TLS WebSocket to the tunneling service: DNS on a lookup thread, TCP,
//! TLS 1.2+ with SNI and host-name verification (and before it the CONNECT exchange
//! with a web proxy), then the upgrade request of protocol.md §1.3 with every header the
//! service expects.
//!
//! One deadline bounds the whole attempt ([`Target::timeout`], websocket.connect_timeout_ms):
//! the lookup and each TCP connect wait at most until it (and at most [`DNS_TIMEOUT`] /
//! [`TCP_TIMEOUT`]), and every read and write of the handshakes first sets the socket
//! timeout to the time left ([`Tcp`]), so a server that trickles bytes cannot stretch an
//! attempt. What to do after a failure (retry, wait, give up) is the caller's business:
//! [`ConnectError`] only says whether retrying can help. Tokens go on the wire and
//! nowhere else.

use super::proxy::{self, WebProxy};
use crate::config::{Mode, Secret};
use crate::protocol::{Version, MAX_WS_FRAME};
use native_tls::{HandshakeError as TlsHandshakeError, TlsConnector, TlsStream};
use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::WebSocket;

/// Name lookup of the endpoint, at most (within the attempt's deadline).
pub(crate) const DNS_TIMEOUT: Duration = Duration::from_secs(10);
/// One TCP connect to one address of the endpoint, at most (within the deadline).
pub(crate) const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// The TCP socket under everything a connect attempt reads and writes. While a
/// deadline is set, each read and write first sets the socket's timeout to the time
/// left, and fails with `TimedOut` once none is left: a server that sends one byte at a
/// time cannot stretch the handshakes past the deadline. Cleared once the WebSocket is
/// open (the socket is non-blocking from then on).
pub(crate) struct Tcp {
    sock: TcpStream,
    deadline: Option<Instant>,
}

impl Tcp {
    pub(crate) fn new(sock: TcpStream, deadline: Option<Instant>) -> Tcp {
        Tcp { sock, deadline }
    }

    pub(crate) fn get_ref(&self) -> &TcpStream {
        &self.sock
    }

    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// The time left until the deadline, `None` without one; an error once it passed.
    fn left(&self) -> io::Result<Option<Duration>> {
        let Some(d) = self.deadline else {
            return Ok(None);
        };
        let left = d.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the connect attempt's deadline passed",
            ));
        }
        Ok(Some(left))
    }
}

impl io::Read for Tcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(left) = self.left()? {
            self.sock.set_read_timeout(Some(left))?;
        }
        self.sock.read(buf)
    }
}

impl io::Write for Tcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(left) = self.left()? {
            self.sock.set_write_timeout(Some(left))?;
        }
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// What TLS to the service runs over: TCP, or TLS to an https:// proxy.
pub(crate) enum Stream {
    Plain(Tcp),
    Tls(Box<TlsStream<Tcp>>),
}

impl Stream {
    /// The TCP socket underneath, for poll and socket options.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s.get_ref(),
            Stream::Tls(s) => s.get_ref().get_ref(),
        }
    }

    fn tcp_mut(&mut self) -> &mut Tcp {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_mut(),
        }
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl io::Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// The TLS stream the WebSocket runs on. OpenSSL writes one record (16 KiB) per call
/// in partial-write mode, and tungstenite moves the rest of its output buffer to the
/// front after every call; writing until the socket is full before returning makes
/// that one move per flush instead of one per record.
pub(crate) struct Tls {
    inner: TlsStream<Stream>,
    /// Set once the socket is non-blocking: only then may a read go on to the next
    /// record, because a blocking read would wait for data that has not been sent.
    fill: bool,
}

impl Tls {
    /// The TCP socket underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        self.inner.get_ref().tcp()
    }

    /// Makes the socket non-blocking without deadline or timeouts, as the tunnel thread
    /// uses it.
    fn set_nonblocking(&mut self) -> io::Result<()> {
        self.inner.get_mut().tcp_mut().set_deadline(None);
        let tcp = self.tcp();
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(None)?;
        tcp.set_nonblocking(true)?;
        self.fill = true;
        Ok(())
    }

    /// Makes the socket blocking with a read timeout (for tests that read the tunnel
    /// step by step); reads then return after one record again.
    pub(crate) fn set_blocking(&mut self, read_timeout: Duration) -> io::Result<()> {
        let tcp = self.tcp();
        tcp.set_nonblocking(false)?;
        tcp.set_read_timeout(Some(read_timeout))?;
        self.fill = false;
        Ok(())
    }
}

/// Once non-blocking, reads fill the buffer from as many TLS records as are there:
/// tungstenite zero-fills its whole read chunk before every call, so a call that brings
/// back half a chunk, or nothing, costs as much as a full one.
impl io::Read for Tls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.fill {
            return self.inner.read(buf);
        }
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                // What was read counts; the error (or WouldBlock) comes back next call.
                Err(_) if filled > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

impl io::Write for Tls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.inner.write(&buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                // What was written counts; the error comes back on the next call.
                Err(_) if done > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) type Ws = WebSocket<Tls>;

/// Largest chunk tungstenite reads at once. It zero-fills the chunk before every read,
/// and the last read of every wake-up finds nothing (WouldBlock): half a TLS record
/// keeps that waste small while reads still fill it.
pub(crate) const READ_CHUNK: usize = 8 * 1024;

/// Everything needed for one connect attempt.
pub(crate) struct Target<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) mode: Mode,
    pub(crate) access_token: &'a Secret,
    pub(crate) client_token: Option<&'a Secret>,
    pub(crate) subprotocol: &'a str,
    pub(crate) tls: &'a TlsConnector,
    pub(crate) ws_config: WebSocketConfig,
    /// A web proxy to CONNECT through.
    pub(crate) proxy: Option<&'a WebProxy>,
    /// Bound of the whole attempt: lookup, TCP, proxy CONNECT, TLS and upgrade
    /// (websocket.connect_timeout_ms).
    pub(crate) timeout: Duration,
}

/// An open, upgraded WebSocket, switched to non-blocking mode.
pub(crate) struct Opened {
    pub(crate) ws: Ws,
    pub(crate) version: Version,
    pub(crate) channel_id: Option<String>,
}

/// Why a connect attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    Resolve(String),
    Tcp(String),
    Tls(String),
    /// The web proxy failed or refused CONNECT.
    Proxy(String),
    /// The service answered the upgrade with 4xx: bad, used or wrong-mode token.
    Rejected {
        status: u16,
        detail: String,
    },
    /// The service answered the upgrade with another status (5xx, 3xx).
    Status {
        status: u16,
        detail: String,
    },
    Handshake(String),
    /// The attempt's deadline passed during this phase.
    TimedOut {
        during: &'static str,
        limit: Duration,
    },
}

impl ConnectError {
    /// Whether the same request can succeed later. 4xx never does.
    pub(crate) fn retryable(&self) -> bool {
        !matches!(self, ConnectError::Rejected { .. })
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve(e) => write!(f, "name lookup failed: {e}"),
            ConnectError::Tcp(e) => write!(f, "TCP connect failed: {e}"),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectError::Proxy(e) => write!(f, "{e}"),
            ConnectError::Rejected { status, detail } => write!(
                f,
                "the service refused the access token (HTTP {status}{detail}); the token may be \
                 wrong, expired, for the other mode, or already used without a client token: \
                 open a new tunnel or rotate the tokens"
            ),
            ConnectError::Status { status, detail } => {
                write!(f, "the service answered HTTP {status}{detail}")
            }
            ConnectError::Handshake(e) => write!(f, "WebSocket upgrade failed: {e}"),
            ConnectError::TimedOut { during, limit } => write!(
                f,
                "timed out during the {during}: the connect attempt may take {:.1} s \
                 (websocket.connect_timeout_ms)",
                limit.as_secs_f64()
            ),
        }
    }
}

/// Builds the TLS connector once: TLS 1.2 or newer, the trust store `trust` (see
/// [`crate::trust`]; `None` leaves native-tls's own probe, for in-process tests) plus
/// every certificate found in `capath`, or no verification at all with `insecure`.
/// With `Some(trust)` it sets environment variables: call it before spawning threads.
pub(crate) fn tls_connector(
    trust: Option<&crate::trust::Choice>,
    capath: Option<&Path>,
    insecure: bool,
) -> Result<TlsConnector, String> {
    let mut b = TlsConnector::builder();
    b.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    if let Some(t) = trust {
        t.apply(&mut b)?;
    }
    if let Some(dir) = capath {
        let n = add_ca_dir(&mut b, dir)?;
        log::info!("trusting {n} extra certificate(s) from {}", dir.display());
    }
    if insecure {
        // config/validate.rs already warned at start (one loud line, also shown by --check).
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    b.build()
        .map_err(|e| format!("cannot set up TLS: {e}; check the OpenSSL installation"))
}

/// Adds every certificate in the PEM files of `dir` (OpenSSL hashed layout or plain
/// files); files without certificates are skipped.
fn add_ca_dir(b: &mut native_tls::TlsConnectorBuilder, dir: &Path) -> Result<usize, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        format!(
            "--capath: cannot read {}: {e}; give a directory of PEM certificates",
            dir.display()
        )
    })?;
    let mut n = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Ok(certs) = openssl::x509::X509::stack_from_pem(&bytes) else {
            log::debug!("--capath: no certificate in {}", path.display());
            continue;
        };
        for c in certs {
            let der = c.to_der().map_err(|e| e.to_string())?;
            let cert = native_tls::Certificate::from_der(&der).map_err(|e| e.to_string())?;
            b.add_root_certificate(cert);
            n += 1;
        }
    }
    if n == 0 {
        return Err(format!(
            "--capath: no PEM certificate found in {}; put the CA certificates there",
            dir.display()
        ));
    }
    Ok(n)
}

/// The handshake error, with the fix when the server's certificate is not trusted.
fn tls_failure(e: &native_tls::Error) -> String {
    let text = e.to_string();
    if text.contains("certificate verify failed") {
        format!(
            "{text}; the server's certificate is not signed by a CA in the trust store \
             (see the \"trust store\" line): add that CA with --capath DIR"
        )
    } else {
        text
    }
}

/// Resolves `host` on a lookup thread; waits at most DNS_TIMEOUT and until `deadline`.
fn resolve(
    host: &str,
    port: u16,
    deadline: Instant,
    limit: Duration,
) -> Result<Vec<SocketAddr>, ConnectError> {
    if let Some(ip) = crate::resolve::ip_literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    crate::resolve::spawn(host, port, move |r| {
        // A late answer finds nobody waiting.
        let _ = tx.send(r);
    })
    .map_err(|e| ConnectError::Resolve(e.to_string()))?;
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(DNS_TIMEOUT.min(left)) {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => Err(ConnectError::Resolve(format!("{host}: {e}"))),
        Err(_) if left <= DNS_TIMEOUT => Err(ConnectError::TimedOut {
            during: "name lookup",
            limit,
        }),
        Err(_) => Err(ConnectError::Resolve(format!(
            "{host}: no answer within {} s",
            DNS_TIMEOUT.as_secs()
        ))),
    }
}

/// Connects to the first address that answers, each try at most TCP_TIMEOUT and none
/// past `deadline`.
fn tcp_connect(
    addrs: &[SocketAddr],
    deadline: Instant,
    limit: Duration,
) -> Result<TcpStream, ConnectError> {
    let mut last = String::new();
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(a, TCP_TIMEOUT.min(left)) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    if Instant::now() >= deadline {
        return Err(ConnectError::TimedOut {
            during: "TCP connect",
            limit,
        });
    }
    Err(ConnectError::Tcp(last))
}

/// The WebSocket limits: frames and messages we accept of at most `max_frame` bytes
/// (websocket.max_frame_size; the service sends at most [`MAX_WS_FRAME`]).
pub(crate) fn ws_config(
    read_buffer: usize,
    write_buffer: usize,
    max_frame: usize,
) -> WebSocketConfig {
    let mut c = WebSocketConfig::default();
    // tungstenite zero-fills this chunk on every read call (see READ_CHUNK).
    c.read_buffer_size = read_buffer.clamp(4096, READ_CHUNK);
    c.write_buffer_size = write_buffer.clamp(4096, MAX_WS_FRAME);
    // Room for the buffer plus two of the largest messages: the tunnel thread stops
    // queueing once a flush would block, so this bound is never reached in practice.
    c.max_write_buffer_size = c.write_buffer_size + 2 * (MAX_WS_FRAME + 16);
    // A message may span frames: it is held whole, so it gets the same bound.
    c.max_message_size = Some(max_frame);
    c.max_frame_size = Some(max_frame);
    c
}

/// One connect attempt, blocking, bounded by `t.timeout` as a whole.
pub(crate) fn connect(t: &Target<'_>) -> Result<Opened, ConnectError> {
    let limit = t.timeout;
    let deadline = Instant::now() + limit;
    let timed_out = |during| ConnectError::TimedOut { during, limit };
    let late = || Instant::now() >= deadline;
    let (dial_host, dial_port) = match t.proxy {
        Some(p) => (p.host.as_str(), p.port),
        None => (t.host, t.port),
    };
    let addrs = resolve(dial_host, dial_port, deadline, limit)?;
    let tcp = tcp_connect(&addrs, deadline, limit)?;
    let _ = tcp.set_nodelay(true);
    let tcp = Tcp::new(tcp, Some(deadline));

    let inner = match t.proxy {
        None => Stream::Plain(tcp),
        Some(p) => {
            let mut s = if p.tls {
                match t.tls.connect(&p.host, tcp) {
                    Ok(s) => Stream::Tls(Box::new(s)),
                    Err(TlsHandshakeError::WouldBlock(_)) => {
                        return Err(timed_out("TLS handshake with the proxy"))
                    }
                    Err(_) if late() => return Err(timed_out("TLS handshake with the proxy")),
                    Err(TlsHandshakeError::Failure(e)) => {
                        return Err(ConnectError::Proxy(format!(
                            "TLS to the proxy {p} failed: {e}"
                        )))
                    }
                }
            } else {
                Stream::Plain(tcp)
            };
            if let Err(e) = proxy::connect_through(&mut s, p, t.host, t.port, limit) {
                return Err(if late() {
                    timed_out("CONNECT exchange with the proxy")
                } else {
                    ConnectError::Proxy(e)
                });
            }
            s
        }
    };

    let sni = t.host.trim_start_matches('[').trim_end_matches(']');
    let tls = match t.tls.connect(sni, inner) {
        Ok(s) => s,
        // The socket blocks: WouldBlock only comes from its timeout.
        Err(TlsHandshakeError::WouldBlock(_)) => return Err(timed_out("TLS handshake")),
        Err(_) if late() => return Err(timed_out("TLS handshake")),
        Err(TlsHandshakeError::Failure(e)) => return Err(ConnectError::Tls(tls_failure(&e))),
    };

    let uri = if t.port == 443 {
        format!(
            "wss://{}/tunnel?local-proxy-mode={}",
            t.host,
            t.mode.as_str()
        )
    } else {
        format!(
            "wss://{}:{}/tunnel?local-proxy-mode={}",
            t.host,
            t.port,
            t.mode.as_str()
        )
    };
    let mut req = uri
        .into_client_request()
        .map_err(|e| ConnectError::Handshake(format!("bad endpoint: {e}")))?;
    let h = req.headers_mut();
    let value = |s: &str| {
        HeaderValue::from_str(s).map_err(|_| {
            ConnectError::Handshake("a header value has characters HTTP does not allow".into())
        })
    };
    let mut token = value(t.access_token.expose())?;
    token.set_sensitive(true);
    h.insert("access-token", token);
    if let Some(ct) = t.client_token {
        let mut v = value(ct.expose())?;
        v.set_sensitive(true);
        h.insert("client-token", v);
    }
    h.insert("Sec-WebSocket-Protocol", value(t.subprotocol)?);
    h.insert("User-Agent", value(&user_agent())?);

    let (mut ws, response) = match tungstenite::client::client_with_config(
        req,
        Tls {
            inner: tls,
            fill: false,
        },
        Some(t.ws_config),
    ) {
        Ok(x) => x,
        Err(HandshakeError::Interrupted(_)) => return Err(timed_out("WebSocket upgrade")),
        Err(HandshakeError::Failure(tungstenite::Error::Io(e))) if is_timeout(&e) => {
            return Err(timed_out("WebSocket upgrade"))
        }
        // An answer is an answer, however late; any other failure after the deadline is
        // the deadline's doing.
        Err(HandshakeError::Failure(e)) => {
            return Err(match handshake_error(e) {
                e @ (ConnectError::Rejected { .. } | ConnectError::Status { .. }) => e,
                _ if late() => timed_out("WebSocket upgrade"),
                e => e,
            })
        }
    };
    let version = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(Version::from_subprotocol)
        .ok_or_else(|| {
            ConnectError::Handshake("the service accepted no known subprotocol".into())
        })?;
    let channel_id = response
        .headers()
        .get("channel-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    ws.get_mut()
        .set_nonblocking()
        .map_err(|e| ConnectError::Tcp(e.to_string()))?;
    Ok(Opened {
        ws,
        version,
        channel_id,
    })
}

fn handshake_error(e: tungstenite::Error) -> ConnectError {
    match e {
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            let reason = status.canonical_reason().unwrap_or("");
            let body = resp
                .body()
                .as_ref()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim()
                        .chars()
                        .take(200)
                        .collect::<String>()
                })
                .unwrap_or_default();
            let mut detail = String::new();
            if !reason.is_empty() {
                detail.push(' ');
                detail.push_str(reason);
            }
            if !body.is_empty() {
                detail.push_str(": ");
                detail.push_str(&body);
            }
            if status.is_client_error() {
                ConnectError::Rejected {
                    status: status.as_u16(),
                    detail,
                }
            } else {
                ConnectError::Status {
                    status: status.as_u16(),
                    detail,
                }
            }
        }
        other => ConnectError::Handshake(other.to_string()),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Our own User-Agent: name, version, OS and CPU.
pub(crate) fn user_agent() -> String {
    format!(
        "localproxy-rs/{} ({}; {})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_peer_that_trickles_bytes_cannot_stretch_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // The scenario, not synchronisation: one byte every 20 ms keeps every read's
            // own wait short, and stops by itself after 100 s at most.
            for _ in 0..5000 {
                if stopped.load(Ordering::SeqCst) || s.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let sock = TcpStream::connect(addr).unwrap();
        let mut t = Tcp::new(sock, Some(Instant::now() + Duration::from_millis(300)));
        let mut buf = [0u8; 16];
        let err = loop {
            match t.read(&mut buf) {
                Ok(0) => panic!("the trickle ended before the deadline stopped the reads"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(is_timeout(&err), "{err}");
        // Past the deadline every call fails at once, writes too.
        assert_eq!(
            t.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        assert_eq!(t.write(b"y").unwrap_err().kind(), io::ErrorKind::TimedOut);
        // Without a deadline the socket is left alone.
        t.set_deadline(None);
        assert!(t.write(b"y").is_ok());
        stop.store(true, Ordering::SeqCst);
        drop(t);
        server.join().unwrap();
    }

    #[test]
    fn the_frame_limit_is_the_setting_for_frames_and_messages() {
        let c = ws_config(131076, 131076, 70000);
        assert_eq!(c.max_frame_size, Some(70000));
        assert_eq!(c.max_message_size, Some(70000));
    }

    #[test]
    fn a_timeout_names_its_phase_and_the_setting_and_is_retried() {
        let e = ConnectError::TimedOut {
            during: "TLS handshake",
            limit: Duration::from_millis(1500),
        };
        assert!(e.retryable());
        let text = e.to_string();
        assert!(
            text.starts_with("timed out during the TLS handshake"),
            "{text}"
        );
        assert!(
            text.contains("1.5 s (websocket.connect_timeout_ms)"),
            "{text}"
        );
    }
}
