//! Name lookups off the I/O threads. getaddrinfo blocks for as long as the resolver
//! takes (a black-holed DNS server: tens of seconds), so [`spawn`] runs it on a throwaway
//! thread that hands the answer to a callback. The local thread's callback sends it
//! through its own command channel; the tunnel's connect waits for it with a deadline.
//! IP literals need no lookup: check [`ip_literal`] first.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// The address `host` spells, if it is an IP literal (IPv6 with or without brackets).
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = match host.strip_prefix('[') {
        Some(rest) => rest.strip_suffix(']')?,
        None => host,
    };
    bare.parse().ok()
}

/// Looks `host` up on a new thread named "lookup" and calls `done` there with the
/// addresses for `port` (never an empty list: a name without addresses is an error).
/// Fails only if the thread cannot be started; `done` is then never called.
pub(crate) fn spawn<F>(host: &str, port: u16, done: F) -> io::Result<()>
where
    F: FnOnce(io::Result<Vec<SocketAddr>>) + Send + 'static,
{
    let name = host.to_string();
    std::thread::Builder::new()
        .name("lookup".into())
        .spawn(move || done(lookup(&name, port)))
        .map(|_| ())
}

/// The blocking lookup itself.
fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the name has no address",
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn literals() {
        assert_eq!(ip_literal("127.0.0.1"), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(ip_literal("::1"), "::1".parse().ok());
        assert_eq!(ip_literal("[::1]"), "::1".parse().ok());
        for not in ["localhost", "[::1", "::1]", "[127.0.0.1", ""] {
            assert_eq!(ip_literal(not), None, "{not}");
        }
    }

    #[test]
    fn answers_arrive_through_the_callback() {
        let (tx, rx) = mpsc::channel();
        spawn("localhost", 7, move |r| tx.send(r).unwrap()).unwrap();
        let addrs = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap()
            .unwrap();
        // localhost comes from /etc/hosts: no query leaves the machine.
        assert!(addrs.iter().all(|a| a.port() == 7 && a.ip().is_loopback()));
    }
}
