//! Unix-socket destination targets (`-d SERVICE=/path/to.sock`): the destination connects
//! to them without blocking its local thread, echoes through them end to end, and
//! retries a socket that is not there yet like a refused TCP connect.
//!
//! Every test runs under a watchdog and waits on log lines and sockets, never on sleeps.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

/// An echo server on a Unix socket at `path`: every connection gets back what it sends.
fn unix_echo_server(path: &Path) {
    let l = UnixListener::bind(path).expect("bind the Unix echo socket");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
}

#[test]
fn a_unix_socket_target_echoes_end_to_end() {
    watchdog(LIMIT, || {
        let r = Rig::new("unix-echo", &["A"], &[]);
        let path = r.dir.join("echo.sock");
        unix_echo_server(&path);
        let dst = r.destination(&format!("A={}", path.display()), &[]);
        let port = free_port();
        let _src = r.source(&format!("A={port}"), &[]);
        // Two connections at once, each through its own Unix-socket connection.
        let first = echo_check(port, &pattern(1 << 20, 1));
        let second = echo_check(port, &pattern(200_000, 2));
        echo_on(&first, &pattern(100_000, 3));
        let opened = format!("opened to {}", path.display());
        dst.wait_nth_line(&opened, 2);
        drop((first, second));
    });
}

#[test]
fn a_missing_unix_socket_is_retried_then_refused_and_works_once_it_exists() {
    watchdog(LIMIT, || {
        let r = Rig::new("unix-missing", &["A"], &[]);
        let path = r.dir.join("later.sock");
        // -v 5: each retry is a debug line; the default level shows only the last.
        let dst = r.destination(&format!("A={}", path.display()), &["-v", "5"]);
        let port = free_port();
        let _src = r.source(&format!("A={port}"), &[]);
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // fast_settings: 2 retries, so 3 attempts, then the connection is refused.
        dst.wait_line(&format!("cannot connect to {}: ", path.display()));
        dst.wait_line(&format!(
            "cannot connect to {} (3 attempts)",
            path.display()
        ));
        assert!(
            closed_by_peer(&mut c),
            "the source kept a connection the destination could not open"
        );
        unix_echo_server(&path);
        echo_check(port, &pattern(50_000, 4));
    });
}
