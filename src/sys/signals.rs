//! Signals: block them in every thread, take them with `sigwait` on the main thread,
//! send them (to ourselves, or to a child in tests), and tell whether one was ignored
//! when the process started (`nohup`, a background job of a script).

use std::io;

/// Builds a sigset from `sigs`.
fn sigset(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset only writes into it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks `sigs` in the calling thread; threads spawned afterwards inherit the mask, so
/// only a `sigwait` can take them.
pub fn block_signals(sigs: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(sigs);
    // SAFETY: `set` is a valid sigset; the old mask is not requested (null).
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Runs `f` (a thread spawn) with every signal blocked in the calling thread, then
/// restores its mask: a thread spawned inside inherits the full mask from its first
/// instruction, so a process-directed signal is never delivered to it. For helper
/// threads started before the main thread blocks the set it waits for (the log writer).
pub fn with_all_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: an all-zero sigset_t is a valid (empty) set of plain integers.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigfillset initialises the zeroed set; pthread_sigmask reads it and writes
    // the previous mask into `old`, owned here.
    let blocked = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, &mut old) == 0
    };
    let r = f();
    if blocked {
        // SAFETY: `old` holds the mask pthread_sigmask returned above.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        }
    }
    r
}

/// Whether `sig`'s disposition is SIG_IGN, i.e. what the parent left us (nohup ignores
/// SIGHUP, a shell's `&` ignores SIGINT). Queried only: the disposition is not changed.
pub fn is_ignored(sig: libc::c_int) -> bool {
    // SAFETY: a null new action only reads the current one into `old`, zeroed and owned here.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Waits for one of `sigs` (which must be blocked) and returns it.
pub fn wait_signal(sigs: &[libc::c_int]) -> io::Result<libc::c_int> {
    let set = sigset(sigs);
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` and `sig` are valid for the duration of the call.
    let r = unsafe { libc::sigwait(&set, &mut sig) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(sig)
}

/// Sends `sig` to this process (not to one thread), so the thread in `wait_signal` gets it.
pub(crate) fn signal_self(sig: libc::c_int) {
    // SAFETY: kill with our own pid and a valid signal number has no memory effects.
    unsafe {
        libc::kill(libc::getpid(), sig);
    }
}

/// Sends `sig` to process `pid` (tests and the status helper use it).
pub fn send_signal(pid: u32, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory effects; the result is checked.
    let r = unsafe { libc::kill(pid as libc::pid_t, sig) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
