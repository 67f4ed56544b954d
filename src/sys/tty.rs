//! Terminals for the tests of a serial console: open a pty pair and stop or restart its
//! output the way Ctrl-S / Ctrl-Q does. The proxy itself never opens a terminal; this is
//! here so the integration tests need no `unsafe` of their own.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Opens a pty: (master, slave). Neither becomes anyone's controlling terminal.
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty writes two fds into the ints; name, termios and winsize are null,
    // which it accepts.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just returned by openpty and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) })
}

/// Stops (`false`, as XOFF does) or restarts (`true`, XON) output on the terminal `fd`
/// is open on: while stopped, a write(2) to it blocks.
pub fn set_output_flow(fd: &OwnedFd, on: bool) -> io::Result<()> {
    let action = if on { libc::TCOON } else { libc::TCOOFF };
    // SAFETY: tcflow on an open fd has no memory effects; the result is checked.
    if unsafe { libc::tcflow(fd.as_raw_fd(), action) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
