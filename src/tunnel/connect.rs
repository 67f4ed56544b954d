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

pub use super::error::ConnectError;
use super::proxy::{self, WebProxy};
use super::upgrade;
pub(crate) use super::wire::Tcp;
use crate::config::{Mode, Secret};
use crate::protocol::Version;
use openssl::ssl::{HandshakeError as TlsHandshakeError, SslConnector, SslMethod, SslStream};
use openssl::ssl::{SslVerifyMode, SslVersion};
use openssl::x509::X509VerifyResult;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Name lookup of the endpoint, at most (within the attempt's deadline).
pub(crate) const DNS_TIMEOUT: Duration = Duration::from_secs(10);
/// One TCP connect to one address of the endpoint, at most (within the deadline).
pub(crate) const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// What TLS to the service runs over: TCP, or TLS to an https:// proxy.
pub(crate) enum Stream {
    Plain(Tcp),
    Tls(Box<SslStream<Tcp>>),
}

impl Stream {
    /// The TCP socket underneath, for poll and socket options.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s.get_ref(),
            Stream::Tls(s) => s.get_ref().get_ref(),
        }
    }

    /// Ciphertext waiting for the socket (data phase).
    pub(crate) fn pending(&self) -> usize {
        match self {
            Stream::Plain(s) => s.pending(),
            Stream::Tls(s) => s.get_ref().pending(),
        }
    }

    /// Bytes handed to the socket in the data phase, in total.
    pub(crate) fn sent(&self) -> u64 {
        match self {
            Stream::Plain(s) => s.sent(),
            Stream::Tls(s) => s.get_ref().sent(),
        }
    }

    /// Poll said the socket is readable.
    pub(crate) fn mark_readable(&mut self) {
        self.tcp_mut().mark_readable();
    }

    pub(crate) fn tcp_mut(&mut self) -> &mut Tcp {
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

/// The TLS session to the service, over [`Stream`].
pub(crate) type Tls = SslStream<Stream>;

/// How this process opens TLS sessions: OpenSSL's connector, built once.
pub(crate) struct TlsConnector {
    connector: SslConnector,
    /// `-k`: no certificate or host name check.
    insecure: bool,
    /// Certificates `--capath` added, for the start-up lines.
    pub(crate) extra_cas: usize,
}

impl TlsConnector {
    /// A TLS session over `stream` to `domain` (SNI, and the name the certificate must
    /// carry unless `-k`).
    fn connect<S: io::Read + io::Write>(
        &self,
        domain: &str,
        stream: S,
    ) -> Result<SslStream<S>, TlsHandshakeError<S>> {
        let mut c = self.connector.configure()?;
        if self.insecure {
            c.set_verify(SslVerifyMode::NONE);
            c.set_verify_hostname(false);
        }
        c.connect(domain, stream)
    }
}

/// Whether this build's OpenSSL encrypts AES in hardware on this CPU. Without it (MIPS,
/// and 32-bit ARM, where OpenSSL built for ARMv7 does not use the ARMv8 AES instructions
/// even on a CPU that has them) ChaCha20-Poly1305 costs a fraction of AES-GCM
/// (`cipher-cost`), so the proxy offers it first; the service chooses.
pub(crate) fn cpu_has_aes() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    return std::arch::is_x86_feature_detected!("aes");
    #[cfg(target_arch = "aarch64")]
    return std::arch::is_aarch64_feature_detected!("aes");
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    return false;
}

/// TLS 1.3 suites and TLS 1.2 ciphers in the order we offer them: AES-GCM first where
/// the CPU has AES instructions, ChaCha20-Poly1305 first where it has not.
pub(crate) fn cipher_order(aes: bool) -> (&'static str, &'static str) {
    if aes {
        (
            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256",
            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
             ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:\
             ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305",
        )
    } else {
        (
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
             ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
             ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384",
        )
    }
}

/// One line on the cipher order, for the log and `--check`.
pub(crate) fn describe_cipher_order() -> &'static str {
    if cpu_has_aes() {
        "AES-GCM first (AES instructions), then ChaCha20-Poly1305"
    } else {
        "ChaCha20-Poly1305 first (no AES instructions), then AES-GCM"
    }
}

/// Everything needed for one connect attempt.
pub(crate) struct Target<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) mode: Mode,
    pub(crate) access_token: &'a Secret,
    pub(crate) client_token: Option<&'a Secret>,
    pub(crate) subprotocol: &'a str,
    pub(crate) tls: &'a TlsConnector,
    /// A web proxy to CONNECT through.
    pub(crate) proxy: Option<&'a WebProxy>,
    /// Bound of the whole attempt: lookup, TCP, proxy CONNECT, TLS and upgrade
    /// (websocket.connect_timeout_ms).
    pub(crate) timeout: Duration,
}

/// An open, upgraded WebSocket: the TLS session (its socket still blocking, with the
/// attempt's deadline), what the service sent behind its answer, and what it agreed to.
pub(crate) struct Opened {
    pub(crate) tls: Tls,
    /// The first bytes of the data phase, read with the answer.
    pub(crate) tail: Vec<u8>,
    pub(crate) version: Version,
    pub(crate) channel_id: Option<String>,
}

/// Builds the TLS connector once: TLS 1.2 or newer, the cipher order for this CPU,
/// the trust store `trust` (see [`crate::trust`]; `None` leaves OpenSSL's own default
/// paths, for in-process tests) plus every certificate found in `capath`, or no
/// verification at all with `insecure`. With `Some(trust)` it sets environment
/// variables: call it before spawning threads.
pub(crate) fn tls_connector(
    trust: Option<&crate::trust::Choice>,
    capath: Option<&Path>,
    insecure: bool,
) -> Result<TlsConnector, String> {
    let fail = |e: openssl::error::ErrorStack| {
        format!("cannot set up TLS: {e}; check the OpenSSL installation")
    };
    if let Some(t) = trust {
        // Before the builder: it reads SSL_CERT_FILE / SSL_CERT_DIR.
        t.set_env();
    }
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(fail)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(fail)?;
    let (suites, ciphers) = cipher_order(cpu_has_aes());
    b.set_ciphersuites(suites).map_err(fail)?;
    b.set_cipher_list(ciphers).map_err(fail)?;
    if let Some(t) = trust {
        t.add_builtin(b.cert_store_mut())?;
    }
    let mut extra_cas = 0;
    if let Some(dir) = capath {
        extra_cas = add_ca_dir(b.cert_store_mut(), dir)?;
    }
    // With -k, config/validate.rs already warned at start (one loud line, also shown
    // by --check); verification is switched off per connection.
    Ok(TlsConnector {
        connector: b.build(),
        insecure,
        extra_cas,
    })
}

/// Adds every certificate in the PEM files of `dir` (OpenSSL hashed layout or plain
/// files); files without certificates are skipped.
fn add_ca_dir(
    store: &mut openssl::x509::store::X509StoreBuilderRef,
    dir: &Path,
) -> Result<usize, String> {
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
            // The same certificate twice (a hashed link and its file) is not an error.
            let _ = store.add_cert(c);
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

/// One short line for a failed TLS handshake with `host`, made from OpenSSL's codes
/// rather than its strings: the router builds may leave the strings out (OpenSSL's
/// `no-err`), and a person needs the cause and what to do, not OpenSSL's function and
/// file names.
fn tls_failure<S>(e: &TlsHandshakeError<S>, host: &str) -> String {
    let (stack, verify, io_error) = match e {
        TlsHandshakeError::SetupFailure(s) => (Some(s), X509VerifyResult::OK, None),
        TlsHandshakeError::Failure(m) | TlsHandshakeError::WouldBlock(m) => (
            m.error().ssl_error(),
            m.ssl().verify_result(),
            m.error().io_error(),
        ),
    };
    if verify != X509VerifyResult::OK {
        return certificate_failure(verify, host);
    }
    if let Some(io) = io_error {
        return format!("{io}");
    }
    match stack.and_then(|s| s.errors().first()) {
        None => "the server closed the connection during the handshake".to_string(),
        Some(e) => openssl_failure(e),
    }
}

/// The certificate check's verdict, with what to do about it, short enough for one
/// console line.
fn certificate_failure(verify: X509VerifyResult, host: &str) -> String {
    // X509_V_ERR_* numbers (OpenSSL's x509_vfy.h).
    let fix = match verify.as_raw() {
        2 | 18 | 19 | 20 | 21 => "add its CA with -c".to_string(),
        9 | 10 => "check the clock (date -u)".to_string(),
        62 => format!("not for {host}: check -e or -r"),
        _ => "check -e or -r and the trust store".to_string(),
    };
    format!("{}; {fix}", verify.error_string())
}

/// One OpenSSL error as a line: the cases a user meets by name, any other by its code
/// (and OpenSSL's reason where the build has the strings).
fn openssl_failure(e: &openssl::error::Error) -> String {
    /// OpenSSL's SSL library, and where its reasons for a received alert start.
    const LIB_SSL: i32 = 20;
    const ALERT_BASE: i32 = 1000;
    let reason = e.reason_code();
    if e.library_code() == LIB_SSL {
        // SSL_R_* numbers (OpenSSL's sslerr.h).
        let known = match reason {
            258 | 191 | 1070 => {
                Some("the server offers no TLS version we speak (TLS 1.2 or 1.3)".to_string())
            }
            267 | 156 | 198 => Some(
                "the server does not speak TLS on this port (check -e and the web proxy)"
                    .to_string(),
            ),
            193 | 181 | 118 | 1040 => Some(
                "no cipher or signature algorithm in common with the server (we offer \
                 AES-GCM and ChaCha20-Poly1305 with ECDHE)"
                    .to_string(),
            ),
            294 => Some("the server closed the connection during the handshake".to_string()),
            r if r > ALERT_BASE => Some(format!(
                "the server refused the handshake (TLS alert {})",
                alert_name(r - ALERT_BASE)
            )),
            _ => None,
        };
        if let Some(line) = known {
            return line;
        }
    }
    match e.reason() {
        Some(text) => format!("{text} (OpenSSL error {:08X})", e.code()),
        None => format!(
            "OpenSSL error {:08X} (library {}, reason {reason}; `openssl errstr {:08X}` \
             names it)",
            e.code(),
            e.library_code(),
            e.code()
        ),
    }
}

/// A TLS alert's name (RFC 8446 6), or its number.
fn alert_name(alert: i32) -> String {
    let name = match alert {
        10 => "unexpected_message",
        20 => "bad_record_mac",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => return alert.to_string(),
    };
    format!("{name}, {alert}")
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
    .map_err(|e| ConnectError::Resolve(format!("{host}: cannot start a lookup thread: {e}")))?;
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(DNS_TIMEOUT.min(left)) {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => {
            // std's prefix says nothing the line does not say already.
            let e = e.to_string();
            let e = e
                .strip_prefix("failed to lookup address information: ")
                .unwrap_or(&e);
            // The host is in the "connecting to" line just before.
            Err(ConnectError::Resolve(e.to_string()))
        }
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
    let addrs = resolve(dial_host, dial_port, deadline, limit).map_err(|e| match e {
        ConnectError::Resolve(m) if t.proxy.is_some() => {
            ConnectError::Resolve(format!("(the web proxy {dial_host}) {m}"))
        }
        e => e,
    })?;
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
                    Err(e) => {
                        return Err(ConnectError::Proxy(format!(
                            "TLS to the proxy {p} failed: {}",
                            tls_failure(&e, &p.host)
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
        Err(e) => return Err(ConnectError::Tls(tls_failure(&e, t.host))),
    };

    let mut tls = tls;
    let agent = user_agent();
    let request = upgrade::Request {
        host: t.host,
        port: t.port,
        mode: t.mode,
        access_token: t.access_token,
        client_token: t.client_token,
        subprotocol: t.subprotocol,
        user_agent: &agent,
    };
    let up = match upgrade::upgrade(&mut tls, &request) {
        Ok(Ok(up)) => up,
        // An answer is an answer, however late; any other failure after the deadline is
        // the deadline's doing.
        Ok(Err(e @ (ConnectError::Rejected { .. } | ConnectError::Status { .. }))) => {
            return Err(e)
        }
        Ok(Err(_)) if late() => return Err(timed_out("WebSocket upgrade")),
        Ok(Err(e)) => return Err(e),
        Err(e) if is_timeout(&e) || late() => return Err(timed_out("WebSocket upgrade")),
        Err(e) => return Err(ConnectError::Handshake(e.to_string())),
    };
    Ok(Opened {
        tls,
        tail: up.tail,
        version: up.version,
        channel_id: up.channel_id,
    })
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

    #[test]
    fn tls_alerts_are_named_and_unknown_ones_numbered() {
        assert_eq!(alert_name(70), "protocol_version, 70");
        assert_eq!(alert_name(48), "unknown_ca, 48");
        assert_eq!(alert_name(199), "199");
    }

    #[test]
    fn both_cipher_orders_are_valid_and_lead_with_the_right_cipher() {
        for aes in [true, false] {
            let (suites, ciphers) = cipher_order(aes);
            let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
            b.set_ciphersuites(suites).unwrap();
            b.set_cipher_list(ciphers).unwrap();
            let lead = if aes { "AES" } else { "CHACHA20" };
            assert!(suites.split(':').next().unwrap().contains(lead), "{suites}");
            assert!(
                ciphers.split(':').next().unwrap().contains(lead),
                "{ciphers}"
            );
            // Every suite of both lists, only AEAD with forward secrecy.
            assert_eq!(suites.split(':').count(), 3);
            assert!(ciphers.split(':').all(|c| c.starts_with("ECDHE-")));
        }
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
