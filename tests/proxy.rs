//! The proxy through a web proxy: `https_proxy`/`HTTPS_PROXY` with http:// and https://
//! proxy URLs, basic authorisation, NO_PROXY, a refusing proxy, a bad URL. The CONNECT
//! proxy is written here: it reads the request head, checks the credentials, dials the
//! target (always on loopback) and relays bytes with poll(2).

mod common;

use common::*;
use localproxy::sys::{Interest, PollSet};
use localproxy::testbed::certs;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

struct WebProxy {
    port: u16,
    connects: Arc<Mutex<Vec<String>>>,
    refused: Arc<AtomicUsize>,
}

/// What the test proxy requires and does.
#[derive(Clone)]
struct Rules {
    /// Expected `Proxy-Authorization` value.
    auth: Option<String>,
    /// Answer every CONNECT with this status line instead.
    refuse: Option<&'static str>,
    tls: Option<Arc<native_tls::TlsAcceptor>>,
}

fn web_proxy(rules: Rules) -> WebProxy {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let connects = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let (c2, r2) = (connects.clone(), refused.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let (rules, c, r) = (rules.clone(), c2.clone(), r2.clone());
            std::thread::spawn(move || serve(s, rules, c, r));
        }
    });
    WebProxy {
        port,
        connects,
        refused,
    }
}

enum Client {
    Plain(TcpStream),
    Tls(Box<native_tls::TlsStream<TcpStream>>),
}

impl Client {
    fn tcp(&self) -> &TcpStream {
        match self {
            Client::Plain(s) => s,
            Client::Tls(s) => s.get_ref(),
        }
    }
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Client::Plain(s) => s.read(b),
            Client::Tls(s) => s.read(b),
        }
    }
    fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Client::Plain(s) => s.write_all(b),
            Client::Tls(s) => s.write_all(b),
        }
    }
}

fn serve(s: TcpStream, rules: Rules, connects: Arc<Mutex<Vec<String>>>, refused: Arc<AtomicUsize>) {
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut c = match &rules.tls {
        Some(acc) => match acc.accept(s) {
            Ok(t) => Client::Tls(Box::new(t)),
            Err(_) => return,
        },
        None => Client::Plain(s),
    };
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match c.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let target = head
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("")
        .to_string();
    let auth = head
        .lines()
        .find_map(|l| l.strip_prefix("Proxy-Authorization: "))
        .map(str::to_string);
    if let Some(status) = rules.refuse {
        refused.fetch_add(1, Ordering::SeqCst);
        let _ = c.write_all(format!("HTTP/1.1 {status}\r\n\r\n").as_bytes());
        return;
    }
    if rules.auth.is_some() && auth != rules.auth {
        refused.fetch_add(1, Ordering::SeqCst);
        let _ = c.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n");
        return;
    }
    // Loopback only: the target must be this machine.
    let port: u16 = target
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", port)) else {
        let _ = c.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
        return;
    };
    connects.lock().unwrap().push(target);
    if c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    relay(&mut c, &mut up);
}

/// Moves bytes both ways until either side closes.
fn relay(c: &mut Client, up: &mut TcpStream) {
    c.tcp().set_nonblocking(true).unwrap();
    up.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut set = PollSet::new();
    loop {
        set.clear();
        set.push(c.tcp().as_raw_fd(), Interest::READ);
        set.push(up.as_raw_fd(), Interest::READ);
        if set.wait(None).is_err() {
            return;
        }
        loop {
            match c.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if write_nb(up, &buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
        loop {
            match up.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if write_client(c, &buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
    }
}

fn write_nb(s: &mut TcpStream, mut b: &[u8]) -> std::io::Result<()> {
    while !b.is_empty() {
        match s.write(b) {
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut set = PollSet::new();
                set.push(s.as_raw_fd(), Interest::WRITE);
                set.wait(None)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_client(c: &mut Client, b: &[u8]) -> std::io::Result<()> {
    match c {
        Client::Plain(s) => write_nb(s, b),
        Client::Tls(s) => loop {
            match s.write_all(b) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let mut set = PollSet::new();
                    set.push(s.get_ref().as_raw_fd(), Interest::WRITE);
                    set.wait(None)?;
                }
                Err(e) => return Err(e),
            }
        },
    }
}

struct Through {
    r: Rig,
    _dst: Proxy,
    port: u16,
}

/// A testbed, a destination (direct) and a port for the source.
fn rig(tag: &str, extra: &[(&str, &str)]) -> Through {
    let r = Rig::new(tag, &["A"], extra);
    let echo = echo_server();
    let dst = r.destination(&format!("A={}", echo.port), &[]);
    Through {
        r,
        _dst: dst,
        port: free_port(),
    }
}

impl Through {
    /// The source, through whatever proxy `env` names (not waited for).
    fn source(&self, env: &[(&str, &str)]) -> Proxy {
        let m = format!("A={}", self.port);
        self.r
            .start(&["-s", &m, "-b", "127.0.0.1"], &self.r.t.source_token, env)
    }
}

#[test]
fn http_proxy_without_and_with_credentials() {
    watchdog(LIMIT, || {
        let r = rig("proxy-http", &[]);
        let open = web_proxy(Rules {
            auth: None,
            refuse: None,
            tls: None,
        });
        let url = format!("http://127.0.0.1:{}", open.port);
        let src = r.source(&[("https_proxy", &url), ("HTTPS_PROXY", "http://127.0.0.1:9")]);
        src.wait_line(&format!("web proxy: {url}"));
        src.wait_line("via the web proxy");
        src.wait_line("listening on");
        echo_check(r.port, &pattern(200_000, 1));
        let want = format!("localhost:{}", r.r.tb.port());
        assert_eq!(*open.connects.lock().unwrap(), vec![want.clone()]);
        drop(src);

        // user "user", password "p@ss w" written percent-encoded and with +.
        let authed = web_proxy(Rules {
            auth: Some("Basic dXNlcjpwQHNzIHc=".into()),
            refuse: None,
            tls: None,
        });
        let url = format!("http://us%65r:p%40ss+w@127.0.0.1:{}", authed.port);
        r.r.tb.single_use_tokens(false);
        let src = r.source(&[("HTTPS_PROXY", &url)]);
        src.wait_line("listening on");
        echo_check(r.port, &pattern(200_000, 2));
        assert_eq!(*authed.connects.lock().unwrap(), vec![want]);
        assert_eq!(authed.refused.load(Ordering::SeqCst), 0);
        let log = src.log().join("\n");
        assert!(
            !log.contains("p@ss") && !log.contains("p%40ss"),
            "the password leaked: {log}"
        );
        assert!(
            log.contains(&format!("http://***@127.0.0.1:{}", authed.port)),
            "{log}"
        );
    });
}

#[test]
fn no_proxy_bypasses_the_proxy() {
    watchdog(LIMIT, || {
        let r = rig("proxy-no", &[]);
        let p = web_proxy(Rules {
            auth: None,
            refuse: None,
            tls: None,
        });
        let url = format!("http://127.0.0.1:{}", p.port);
        let src = r.source(&[("https_proxy", &url), ("NO_PROXY", "example.com,localhost")]);
        src.wait_line("listening on");
        echo_check(r.port, &pattern(10_000, 3));
        assert!(p.connects.lock().unwrap().is_empty());
        assert!(!src.log().join("\n").contains("web proxy"));
    });
}

#[test]
fn https_proxy_runs_tls_inside_tls() {
    watchdog(LIMIT, || {
        let r = rig("proxy-tls", &[]);
        // The proxy's certificate comes from another CA, added to the -c directory.
        let pdir = r.r.dir.join("proxy-certs");
        let pc = certs::make(&pdir).unwrap();
        std::fs::copy(&pc.ca_pem, r.r.tb.ca_dir().join("proxy-ca.pem")).unwrap();
        let identity = native_tls::Identity::from_pkcs8(
            &pc.leaf.to_pem().unwrap(),
            &pc.leaf_key.private_key_to_pem_pkcs8().unwrap(),
        )
        .unwrap();
        let acc = native_tls::TlsAcceptor::new(identity).unwrap();
        let p = web_proxy(Rules {
            auth: None,
            refuse: None,
            tls: Some(Arc::new(acc)),
        });
        let url = format!("https://localhost:{}", p.port);
        let src = r.source(&[("https_proxy", &url)]);
        src.wait_line("listening on");
        echo_check(r.port, &pattern(1 << 20, 4));
        assert_eq!(p.connects.lock().unwrap().len(), 1);
    });
}

#[test]
fn a_refusing_proxy_is_named_with_its_status_and_gives_up_with_exit_4() {
    watchdog(LIMIT, || {
        let r = rig("proxy-refuse", &[("websocket.connect_retry_count", "0")]);
        let p = web_proxy(Rules {
            auth: None,
            refuse: Some("403 Forbidden"),
            tls: None,
        });
        let url = format!("http://127.0.0.1:{}", p.port);
        let mut src = r.source(&[("https_proxy", &url)]);
        assert_eq!(src.exit_code(), 4);
        let line = src.wait_line("giving up");
        assert!(
            line.contains("refused CONNECT") && line.contains("403 Forbidden"),
            "{line}"
        );
        assert_eq!(p.refused.load(Ordering::SeqCst), 1);
    });
}

#[test]
fn a_bad_proxy_url_is_a_usage_error() {
    watchdog(LIMIT, || {
        let r = rig("proxy-bad", &[]);
        let mut src = r.source(&[("HTTPS_PROXY", "proxy.example:3128")]);
        assert_eq!(src.exit_code(), 2);
        let line = src.wait_line("HTTPS_PROXY");
        assert!(line.contains("no scheme"), "{line}");
    });
}
