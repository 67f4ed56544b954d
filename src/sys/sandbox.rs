//! The sandbox's OS side: `PR_SET_NO_NEW_PRIVS`, a seccomp allow-list written as a
//! classic BPF program, and a Landlock ruleset that leaves the process read access to a
//! given list of paths and nothing else. What to allow (which paths, whether `--user`
//! still has to switch ids) is decided by `crate::sandbox`; this file only builds and
//! installs the filters, and answers what the kernel supports.
//!
//! Seccomp: every system call the main thread, the tunnel and local threads, the name
//! lookup threads and the libraries under them (std, OpenSSL, glibc's or musl's resolver)
//! make after start is on [`allowed`], by name and by this target's number. A call that
//! is not there fails with EPERM (clone3 with ENOSYS, so libc falls back to clone, whose
//! flags the filter can see) instead of killing the process: the proxy on a remote device
//! is often the only way in, every system call of ours already has an error path that
//! logs a line, and a call we missed on a rare path (a reconnect, a resolver module)
//! should cost that one operation, not the tunnel. A call made under another ABI than the
//! binary's own (the x32 ABI or `int 0x80` on x86_64) is never made by this program, so
//! it kills the process (SIGSYS). A few calls are allowed only with some arguments:
//! `clone` only for threads, `socket` only for Unix, IPv4/IPv6 stream and datagram
//! sockets and the routing netlink socket glibc's getaddrinfo uses, `ioctl` only for
//! FIONBIO, FIONREAD, FIOCLEX and TCGETS (so never TIOCSTI on the console), `prctl` only
//! to name a thread, `kill`/`tgkill` only to this process.
//!
//! Landlock limits file access for the calling thread and the threads it starts later,
//! so [`install`] must run before the I/O threads are spawned; seccomp is synchronised to
//! every thread (TSYNC).

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set while the installed filter still allows the setuid family (`--user` pending).
static SETID_OPEN: AtomicBool = AtomicBool::new(false);

/// What to install.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Files and directories the rest of the run may read (directories: what is beneath).
    pub read: Vec<PathBuf>,
    /// `--user` is still to be applied by another thread: allow the setuid family (and
    /// one more filter, see [`forbid_setid`]) until then.
    pub allow_setid: bool,
}

/// What [`install`] achieved, for the start-up log line.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// Number of calls on the allow-list, or why no filter is installed.
    pub seccomp: Result<usize, String>,
    /// Landlock ABI version and number of paths given read access, or why not.
    pub landlock: Result<(u32, usize), String>,
}

// Classic BPF, the parts seccomp uses (linux/filter.h, linux/bpf_common.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x05 | 0x10;
#[cfg(target_arch = "x86_64")] // the x32 check only
const BPF_JGE_K: u16 = 0x05 | 0x30;
const BPF_JSET_K: u16 = 0x05 | 0x40;
const BPF_AND_K: u16 = 0x04 | 0x50;
const BPF_RET_K: u16 = 0x06;

// struct seccomp_data: nr, arch, instruction pointer, six 64-bit arguments. The low 32
// bits of an argument come first on every target here (all little-endian).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const fn off_arg(i: u32) -> u32 {
    16 + 8 * i
}

const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const RET_KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const RET_EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const RET_ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E); // EM_X86_64 | 64BIT | LE
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7); // EM_AARCH64 | 64BIT | LE
#[cfg(target_arch = "arm")]
const AUDIT_ARCH: Option<u32> = Some(0x4000_0028); // EM_ARM | LE
#[cfg(all(target_arch = "mips", target_endian = "little"))]
const AUDIT_ARCH: Option<u32> = Some(0x4000_0008); // EM_MIPS | LE
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "arm",
    all(target_arch = "mips", target_endian = "little")
)))]
const AUDIT_ARCH: Option<u32> = None;

/// x86_64's x32 ABI: the same arch value with this bit set in the number.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// The 32-bit `_time64` calls musl makes (asm-generic numbering; o32 MIPS adds 4000).
/// The libc crate does not name them for these targets.
#[cfg(target_pointer_width = "32")]
mod time64 {
    #[cfg(target_arch = "mips")]
    const BASE: i64 = 4000;
    #[cfg(not(target_arch = "mips"))]
    const BASE: i64 = 0;
    pub const CLOCK_GETTIME64: i64 = BASE + 403;
    pub const CLOCK_GETRES_TIME64: i64 = BASE + 406;
    pub const CLOCK_NANOSLEEP_TIME64: i64 = BASE + 407;
    pub const PPOLL_TIME64: i64 = BASE + 414;
    pub const RT_SIGTIMEDWAIT_TIME64: i64 = BASE + 421;
    pub const FUTEX_TIME64: i64 = BASE + 422;
}

macro_rules! calls {
    ($($name:ident),* $(,)?) => {
        [$((stringify!($name), libc::$name as i64)),*]
    };
}

/// The calls allowed whatever their arguments, by name (without `SYS_`) and number.
pub(crate) fn allowed() -> Vec<(&'static str, i64)> {
    let mut v: Vec<(&'static str, i64)> = Vec::new();
    // Reading and writing sockets, eventfds, files opened at start, stderr.
    v.extend(calls![
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_close,
        SYS_lseek,
        SYS_fcntl,
        SYS_ppoll,
        SYS_eventfd2,
    ]);
    // Opening files (Landlock says which), their metadata.
    v.extend(calls![
        SYS_openat,
        SYS_fstat,
        SYS_statx,
        SYS_faccessat,
        SYS_faccessat2,
    ]);
    // Memory: the allocator, thread stacks, releasing start-up pages (sys::memory).
    v.extend(calls![
        SYS_munmap,
        SYS_mremap,
        SYS_mprotect,
        SYS_madvise,
        SYS_brk,
    ]);
    // Threads (clone itself is checked below): locks, thread set-up and exit.
    v.extend(calls![
        SYS_futex,
        SYS_set_robust_list,
        SYS_set_tid_address,
        SYS_sigaltstack,
        SYS_membarrier,
        SYS_sched_yield,
        SYS_sched_getaffinity,
        SYS_exit,
        SYS_exit_group,
        SYS_gettid,
        SYS_getpid,
    ]);
    // Signals: the masks, sigwait on the main thread, handlers (abort's), returns.
    v.extend(calls![
        SYS_rt_sigprocmask,
        SYS_rt_sigaction,
        SYS_rt_sigreturn,
        SYS_rt_sigtimedwait,
        SYS_restart_syscall,
    ]);
    // Time and randomness (OpenSSL, backoff jitter, std's hash seeds).
    v.extend(calls![
        SYS_clock_gettime,
        SYS_clock_getres,
        SYS_clock_nanosleep,
        SYS_nanosleep,
        SYS_gettimeofday,
        SYS_getrandom,
        SYS_uname,
    ]);
    // Sockets (socket itself is checked below): TCP to the service and the targets,
    // listeners, UDP and netlink for the resolver, Unix-socket targets.
    v.extend(calls![
        SYS_connect,
        SYS_bind,
        SYS_listen,
        SYS_accept,
        SYS_accept4,
        SYS_getsockname,
        SYS_getpeername,
        SYS_setsockopt,
        SYS_getsockopt,
        SYS_shutdown,
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        SYS_sendmmsg,
    ]);
    // Who we are (--user's check, glibc's NSS).
    v.extend(calls![SYS_getuid, SYS_geteuid, SYS_getgid, SYS_getegid]);
    // The same jobs under the names a target has for them.
    // glibc registers rseq in every thread and its ld.so reads with pread64 when it
    // loads an NSS module; 32-bit ARM has only mmap2.
    #[cfg(target_pointer_width = "64")]
    v.extend(calls![SYS_newfstatat, SYS_rseq, SYS_mmap, SYS_pread64]);
    #[cfg(target_arch = "arm")]
    v.extend(calls![SYS_pread64, SYS_fstatat64]);
    // o32 numbers the libc crate does not name (the kernel's syscall_o32.tbl).
    #[cfg(target_arch = "mips")]
    v.extend([
        ("pread64", 4000 + 200),
        ("fstatat64", 4000 + 293),
        ("mmap", libc::SYS_mmap as i64),
    ]);
    #[cfg(not(target_arch = "aarch64"))]
    v.extend(calls![SYS_poll, SYS_open, SYS_stat, SYS_lstat]);
    #[cfg(target_pointer_width = "32")]
    {
        v.extend(calls![
            SYS_mmap2,
            SYS_fcntl64,
            SYS__llseek,
            SYS_fstat64,
            SYS_stat64,
            SYS_lstat64,
            SYS_sigreturn,
        ]);
        v.extend([
            ("clock_gettime64", time64::CLOCK_GETTIME64),
            ("clock_getres_time64", time64::CLOCK_GETRES_TIME64),
            ("clock_nanosleep_time64", time64::CLOCK_NANOSLEEP_TIME64),
            ("ppoll_time64", time64::PPOLL_TIME64),
            ("rt_sigtimedwait_time64", time64::RT_SIGTIMEDWAIT_TIME64),
            ("futex_time64", time64::FUTEX_TIME64),
        ]);
    }
    #[cfg(target_arch = "arm")]
    v.extend(calls![
        SYS_getuid32,
        SYS_geteuid32,
        SYS_getgid32,
        SYS_getegid32
    ]);
    #[cfg(target_arch = "mips")]
    v.extend(calls![SYS_set_thread_area]);
    for (name, _) in &mut v {
        *name = name.strip_prefix("SYS_").unwrap_or(name);
    }
    v
}

/// The calls `--user` needs to switch ids from any thread (glibc signals every thread
/// with tgkill, musl with tkill, and each thread makes the call), and `seccomp` to
/// install [`forbid_setid`]'s filter afterwards.
fn setid_calls() -> Vec<(&'static str, i64)> {
    let mut v: Vec<(&'static str, i64)> = calls![
        SYS_setuid,
        SYS_setgid,
        SYS_setgroups,
        SYS_setresuid,
        SYS_setresgid,
        SYS_setreuid,
        SYS_setregid,
        SYS_tkill,
        SYS_seccomp,
    ]
    .to_vec();
    #[cfg(target_arch = "arm")]
    v.extend(calls![
        SYS_setuid32,
        SYS_setgid32,
        SYS_setgroups32,
        SYS_setresuid32,
        SYS_setresgid32,
        SYS_setreuid32,
        SYS_setregid32,
    ]);
    for (name, _) in &mut v {
        *name = name.strip_prefix("SYS_").unwrap_or(name);
    }
    v
}

/// The allow-list as this target has it, for the debug log and the README: names with
/// their numbers, the calls with checked arguments last.
pub(crate) fn describe_list(setid: bool) -> String {
    let mut list = allowed();
    if setid {
        list.extend(setid_calls());
    }
    let mut out: Vec<String> = list.iter().map(|(n, nr)| format!("{n}({nr})")).collect();
    out.extend(CHECKED.iter().map(|n| format!("{n}[args checked]")));
    out.join(" ")
}

/// The calls allowed with some arguments only (see the file's head).
pub(crate) const CHECKED: &[&str] = &["clone", "socket", "ioctl", "prctl", "kill", "tgkill"];

/// A tiny assembler: jumps name labels, resolved into the relative offsets BPF wants.
struct Asm {
    code: Vec<(u16, Jump, Jump, u32)>,
    labels: Vec<Option<usize>>,
}

#[derive(Clone, Copy)]
enum Jump {
    Next,
    To(usize),
}

impl Asm {
    fn new() -> Asm {
        Asm {
            code: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }
    fn here(&mut self, l: usize) {
        self.labels[l] = Some(self.code.len());
    }
    fn load(&mut self, offset: u32) {
        self.code
            .push((BPF_LD_W_ABS, Jump::Next, Jump::Next, offset));
    }
    fn jeq(&mut self, k: u32, t: Jump, f: Jump) {
        self.code.push((BPF_JEQ_K, t, f, k));
    }
    fn jump(&mut self, op: u16, k: u32, t: Jump, f: Jump) {
        self.code.push((op, t, f, k));
    }
    fn and(&mut self, k: u32) {
        self.code.push((BPF_AND_K, Jump::Next, Jump::Next, k));
    }
    fn ret(&mut self, k: u32) {
        self.code.push((BPF_RET_K, Jump::Next, Jump::Next, k));
    }
    fn finish(self) -> io::Result<Vec<libc::sock_filter>> {
        let mut out = Vec::with_capacity(self.code.len());
        for (i, &(code, t, f, k)) in self.code.iter().enumerate() {
            let rel = |j: Jump| -> io::Result<u8> {
                match j {
                    Jump::Next => Ok(0),
                    Jump::To(l) => {
                        let at = self.labels[l].ok_or_else(|| bad("unplaced label"))?;
                        at.checked_sub(i + 1)
                            .and_then(|d| u8::try_from(d).ok())
                            .ok_or_else(|| bad("jump out of range"))
                    }
                }
            };
            out.push(libc::sock_filter {
                code,
                jt: rel(t)?,
                jf: rel(f)?,
                k,
            });
        }
        if out.len() > 4096 {
            return Err(bad("filter too long"));
        }
        Ok(out)
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("seccomp filter: {what}"),
    )
}

/// The main filter: arch check, x32 refused, the allow-list, the argument checks.
fn main_filter(
    arch: u32,
    allow_setid: bool,
    pid: u32,
) -> io::Result<(Vec<libc::sock_filter>, usize)> {
    use Jump::{Next, To};
    let mut a = Asm::new();
    let allow = a.label();
    let eperm = a.label();
    let enosys = a.label();
    let (clone, socket, inet, netlink, ioctl, prctl, own_pid) = (
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
        a.label(),
    );

    // BPF jumps only forward: the shared returns come last.
    a.load(OFF_ARCH);
    let arch_ok = a.label();
    a.jeq(arch, To(arch_ok), Next);
    a.ret(RET_KILL);
    a.here(arch_ok);
    a.load(OFF_NR);
    #[cfg(target_arch = "x86_64")]
    {
        let native = a.label();
        a.jump(BPF_JGE_K, X32_SYSCALL_BIT, Next, To(native));
        a.ret(RET_KILL);
        a.here(native);
    }
    let mut list = allowed();
    if allow_setid {
        list.extend(setid_calls());
    }
    for &(_, nr) in &list {
        a.jeq(nr as u32, To(allow), Next);
    }
    let checked = [
        (libc::SYS_clone, clone),
        (libc::SYS_socket, socket),
        (libc::SYS_ioctl, ioctl),
        (libc::SYS_prctl, prctl),
        (libc::SYS_kill, own_pid),
        (libc::SYS_tgkill, own_pid),
    ];
    for &(nr, l) in &checked {
        a.jeq(nr as u32, To(l), Next);
    }
    a.jeq(libc::SYS_clone3 as u32, To(enosys), Next);
    a.ret(RET_EPERM);

    // clone: threads only (no fork, no new namespaces without a thread).
    a.here(clone);
    a.load(off_arg(0));
    a.jump(BPF_JSET_K, libc::CLONE_THREAD as u32, To(allow), To(eperm));
    // socket: the families and types above.
    a.here(socket);
    a.load(off_arg(0));
    a.jeq(libc::AF_UNIX as u32, To(allow), Next);
    a.jeq(libc::AF_INET as u32, To(inet), Next);
    a.jeq(libc::AF_INET6 as u32, To(inet), Next);
    a.jeq(libc::AF_NETLINK as u32, To(netlink), To(eperm));
    a.here(inet);
    a.load(off_arg(1));
    a.and(0xf); // the type without SOCK_NONBLOCK / SOCK_CLOEXEC
    a.jeq(libc::SOCK_STREAM as u32, To(allow), Next);
    a.jeq(libc::SOCK_DGRAM as u32, To(allow), To(eperm));
    a.here(netlink);
    a.load(off_arg(2));
    a.jeq(libc::NETLINK_ROUTE as u32, To(allow), To(eperm));
    // ioctl: non-blocking mode, bytes readable, close-on-exec, "is this a terminal".
    a.here(ioctl);
    a.load(off_arg(1));
    a.jeq(libc::FIONBIO as u32, To(allow), Next);
    a.jeq(libc::FIONREAD as u32, To(allow), Next);
    a.jeq(libc::FIOCLEX as u32, To(allow), Next);
    a.jeq(libc::TCGETS as u32, To(allow), To(eperm));
    // prctl: naming a thread.
    a.here(prctl);
    a.load(off_arg(0));
    a.jeq(libc::PR_SET_NAME as u32, To(allow), Next);
    a.jeq(libc::PR_GET_NAME as u32, To(allow), To(eperm));
    // kill, tgkill: this process only (signal_self, glibc's raise and setxid).
    a.here(own_pid);
    a.load(off_arg(0));
    a.jeq(pid, To(allow), To(eperm));

    a.here(allow);
    a.ret(RET_ALLOW);
    a.here(eperm);
    a.ret(RET_EPERM);
    a.here(enosys);
    a.ret(RET_ENOSYS);

    let n = list.len() + CHECKED.len();
    Ok((a.finish()?, n))
}

/// The filter stacked once `--user` is applied: the setuid family, tkill and seccomp
/// itself fail from then on (the first filter has already checked the arch).
fn setid_filter() -> io::Result<Vec<libc::sock_filter>> {
    use Jump::{Next, To};
    let mut a = Asm::new();
    let eperm = a.label();
    a.load(OFF_NR);
    for (_, nr) in setid_calls() {
        a.jeq(nr as u32, To(eperm), Next);
    }
    a.ret(RET_ALLOW);
    a.here(eperm);
    a.ret(RET_EPERM);
    a.finish()
}

/// Installs `filter` for every thread of the process.
fn load_filter(filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as libc::c_ushort,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `prog` points at `filter`, which lives across the call; the kernel copies
    // the program. TSYNC applies it to every thread (returning a thread id if one cannot
    // take it, which cannot happen here: no thread has a filter of its own).
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_long,
            libc::SECCOMP_FILTER_FLAG_TSYNC as libc::c_long,
            &prog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if r > 0 {
        return Err(io::Error::other(format!(
            "thread {r} could not take the filter"
        )));
    }
    if e.raw_os_error() != Some(libc::ENOSYS) {
        return Err(e);
    }
    // A kernel before seccomp(2) (3.17): prctl, for this thread only. No other thread
    // exists yet (install runs before the I/O threads are spawned).
    // SAFETY: as above; PR_SET_SECCOMP copies the program.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn no_new_privs() -> io::Result<()> {
    // SAFETY: plain integer arguments; the result is checked.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets no_new_privs, then Landlock (this thread and its later threads), then the
/// seccomp filter (every thread). Never fails the run: what could not be installed is
/// in the report, for one warning line.
pub(crate) fn install(plan: &Plan) -> Report {
    if let Err(e) = no_new_privs() {
        let why = format!("PR_SET_NO_NEW_PRIVS failed: {e}");
        return Report {
            seccomp: Err(why.clone()),
            landlock: Err(why),
        };
    }
    let landlock = landlock_restrict(&plan.read);
    let seccomp = match AUDIT_ARCH {
        None => Err("no seccomp filter for this architecture".to_string()),
        // SAFETY: getpid has no arguments and cannot fail.
        Some(arch) => main_filter(arch, plan.allow_setid, unsafe { libc::getpid() } as u32)
            .and_then(|(f, n)| load_filter(&f).map(|()| n))
            .map_err(|e| explain_seccomp(&e)),
    };
    if seccomp.is_ok() && plan.allow_setid {
        SETID_OPEN.store(true, Ordering::SeqCst);
    }
    Report { seccomp, landlock }
}

fn explain_seccomp(e: &io::Error) -> String {
    match e.raw_os_error() {
        // qemu-user refuses PR_SET_SECCOMP with EINVAL; a kernel without
        // CONFIG_SECCOMP_FILTER does too.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            format!(
                "seccomp filters unavailable here ({e}: no CONFIG_SECCOMP_FILTER, or qemu-user)"
            )
        }
        _ => format!("seccomp filter not installed: {e}"),
    }
}

/// After `--user` took effect: no more id changes (and no more filters) for any thread.
/// Does nothing when no filter was installed with the setuid family allowed.
pub(crate) fn forbid_setid() -> io::Result<()> {
    if !SETID_OPEN.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    setid_filter().and_then(|f| load_filter(&f))
}

/// What `--check` can say without installing anything: whether seccomp filters and
/// which Landlock ABI this kernel offers.
pub(crate) fn kernel_support() -> (bool, Result<u32, String>) {
    let action = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 from a live local.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL as libc::c_long,
            0 as libc::c_long,
            &action as *const u32,
        )
    };
    (r == 0 && AUDIT_ARCH.is_some(), landlock_abi())
}

// Landlock (linux/landlock.h).
const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
const ACCESS_FS_READ_FILE: u64 = 1 << 2;
const ACCESS_FS_READ_DIR: u64 = 1 << 3;

/// Every file-system right the ABI knows, so all of them but reading are refused.
fn handled_for(abi: u32) -> u64 {
    match abi {
        1 => (1 << 13) - 1,     // execute ... make_sym
        2 => (1 << 14) - 1,     // + refer
        3 | 4 => (1 << 15) - 1, // + truncate (4 added only network rights)
        _ => (1 << 16) - 1,     // + ioctl_dev (5); 6 and 7 add no file-system right
    }
}

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

fn landlock_abi() -> Result<u32, String> {
    // SAFETY: the version query takes no attribute (null, size 0).
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0 as libc::size_t,
            LANDLOCK_CREATE_RULESET_VERSION as libc::c_long,
        )
    };
    if r >= 1 {
        return Ok(r as u32);
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no Landlock (before 5.13, or qemu-user)".into(),
        Some(libc::EOPNOTSUPP) => "Landlock is built but not enabled (add landlock to lsm=)".into(),
        _ => format!("Landlock unavailable: {e}"),
    })
}

struct Fd(libc::c_int);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: closes a descriptor this value owns.
        unsafe { libc::close(self.0) };
    }
}

/// Opens `path` with O_PATH; whether it is a directory. None if it does not exist.
fn open_path(path: &Path) -> Option<(Fd, bool)> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a NUL-terminated path alive across the call.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let fd = Fd(fd);
    // SAFETY: fstat fills the zeroed struct for a descriptor we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.0, &mut st) } != 0 {
        return None;
    }
    Some((fd, st.st_mode & libc::S_IFMT == libc::S_IFDIR))
}

/// Refuses every file-system access but reading `read` (and what is beneath its
/// directories). Returns the ABI and the number of paths that exist and were added.
fn landlock_restrict(read: &[PathBuf]) -> Result<(u32, usize), String> {
    let abi = landlock_abi()?;
    let attr = RulesetAttr {
        handled_access_fs: handled_for(abi),
    };
    // SAFETY: `attr` is a live struct of the size given; the result is checked.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>() as libc::size_t,
            0 as libc::c_long,
        )
    };
    if r < 0 {
        return Err(format!(
            "Landlock ruleset refused: {}",
            io::Error::last_os_error()
        ));
    }
    let ruleset = Fd(r as libc::c_int);
    let mut added = 0;
    for path in read {
        let Some((fd, is_dir)) = open_path(path) else {
            continue;
        };
        let rule = PathBeneath {
            allowed_access: if is_dir {
                ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR
            } else {
                ACCESS_FS_READ_FILE
            },
            parent_fd: fd.0,
        };
        // SAFETY: `rule` is a live packed struct as the ABI defines it; the kernel
        // takes a reference on the file behind `fd` before we close it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.0 as libc::c_long,
                LANDLOCK_RULE_PATH_BENEATH as libc::c_long,
                &rule as *const PathBeneath,
                0 as libc::c_long,
            )
        };
        if r != 0 {
            return Err(format!(
                "Landlock rule for {} refused: {}",
                path.display(),
                io::Error::last_os_error()
            ));
        }
        added += 1;
    }
    // SAFETY: plain descriptor and flags; the result is checked.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_restrict_self,
            ruleset.0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    if r != 0 {
        return Err(format!(
            "Landlock not applied: {}",
            io::Error::last_os_error()
        ));
    }
    Ok((abi, added))
}

/// Test hook (see `crate::sandbox::probe`): tries `execve` of a path that does not
/// exist, so that the call does nothing even where it is allowed (ENOENT then, EPERM
/// under the filter).
pub(crate) fn try_execve() -> io::Error {
    let path = c"/nonexistent/localproxy-sandbox-probe";
    let argv = [path.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: NUL-terminated path, null-terminated argv and envp, all alive across the
    // call. The path does not exist, so the call returns in every case.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_assemble_and_every_jump_lands() {
        for setid in [false, true] {
            let (f, n) = main_filter(0xC000_003E, setid, 1).unwrap();
            assert!(n > 50 && f.len() > n);
            // The last instruction of each path is a return: nothing falls off the end.
            assert_eq!(f.last().unwrap().code, BPF_RET_K);
            for (i, ins) in f.iter().enumerate() {
                if ins.code & 0x07 == 0x05 {
                    assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < f.len());
                }
            }
        }
        assert!(setid_filter().unwrap().len() > 9);
    }

    #[test]
    fn names_are_unique_and_numbers_too() {
        let mut all = allowed();
        all.extend(setid_calls());
        let mut names: Vec<_> = all.iter().map(|c| c.0).collect();
        let mut nrs: Vec<_> = all.iter().map(|c| c.1).collect();
        names.sort();
        names.dedup();
        nrs.sort();
        nrs.dedup();
        assert_eq!(names.len(), all.len());
        // Some targets give two names one number (an alias): then it is listed once.
        assert_eq!(nrs.len(), all.len(), "a number appears twice");
        assert!(!names
            .iter()
            .any(|n| n.starts_with("SYS_") || *n == "execve"));
    }

    /// Runs `body` in a forked child (so the filter does not land on the test runner)
    /// and returns how it ended: Ok(exit code) or Err(signal).
    fn in_child(body: impl FnOnce() -> i32) -> Result<i32, i32> {
        // SAFETY: the child makes system calls, allocates (glibc and musl keep malloc
        // usable in a forked child) and ends with _exit; it touches no lock another
        // thread of the test runner may hold (no stdout, no logger).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork");
        if pid == 0 {
            let code = body();
            // SAFETY: ends the child without running the parent's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; status is a live local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        if libc::WIFSIGNALED(status) {
            Err(libc::WTERMSIG(status))
        } else {
            Ok(libc::WEXITSTATUS(status))
        }
    }

    fn errno_of(r: libc::c_long) -> i32 {
        if r >= 0 {
            0
        } else {
            io::Error::last_os_error().raw_os_error().unwrap_or(-1)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_filter_allows_its_list_refuses_the_rest_and_kills_x32() {
        let outcome = in_child(|| {
            // SAFETY: getpid cannot fail.
            let me = unsafe { libc::getpid() } as u32;
            let Ok((filter, _)) = main_filter(AUDIT_ARCH.unwrap_or(0), false, me) else {
                return 90;
            };
            if no_new_privs().is_err() || load_filter(&filter).is_err() {
                return 91;
            }
            let path = c"/nonexistent";
            let argv = [path.as_ptr(), std::ptr::null()];
            // SAFETY (all below): plain system calls with valid or null pointers; the
            // ones expected to be refused never reach the kernel's implementation.
            unsafe {
                // Allowed: getpid, a TCP socket, FIONBIO on it.
                if libc::syscall(libc::SYS_getpid) as u32 != me {
                    return 1;
                }
                let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                if s < 0 {
                    return 2;
                }
                let mut on: libc::c_int = 1;
                if libc::ioctl(s, libc::FIONBIO, &mut on) != 0 {
                    return 3;
                }
                // Refused with EPERM: execve, fork, a raw or packet socket, TIOCSTI,
                // a signal to another process, prctl other than naming.
                let e = errno_of(libc::execve(path.as_ptr(), argv.as_ptr(), std::ptr::null()) as _);
                if e != libc::EPERM {
                    return 10;
                }
                if errno_of(libc::syscall(
                    libc::SYS_clone,
                    libc::SIGCHLD as libc::c_long,
                    0,
                    0,
                    0,
                    0,
                )) != libc::EPERM
                {
                    return 11;
                }
                if errno_of(libc::socket(libc::AF_INET, libc::SOCK_RAW, 1) as _) != libc::EPERM {
                    return 12;
                }
                if errno_of(libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0) as _) != libc::EPERM
                {
                    return 13;
                }
                let c: libc::c_char = 0;
                if errno_of(libc::ioctl(2, libc::TIOCSTI, &c) as _) != libc::EPERM {
                    return 14;
                }
                if errno_of(libc::kill(1, 0) as _) != libc::EPERM {
                    return 15;
                }
                if errno_of(libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) as _) != libc::EPERM {
                    return 16;
                }
                if errno_of(libc::setuid(0) as _) != libc::EPERM {
                    return 17;
                }
                // clone3: ENOSYS, so libc falls back to clone.
                if errno_of(libc::syscall(libc::SYS_clone3, 0, 0)) != libc::ENOSYS {
                    return 18;
                }
                // The x32 ABI: killed.
                libc::syscall(libc::SYS_getpid | X32_SYSCALL_BIT as libc::c_long);
            }
            99
        });
        assert_eq!(
            outcome,
            Err(libc::SIGSYS),
            "exit code = the check that failed"
        );
    }

    #[test]
    fn landlock_leaves_only_reading_the_given_paths() {
        if landlock_abi().is_err() {
            return; // nothing to test on a kernel without Landlock
        }
        let dir = std::env::temp_dir().join(format!("landlock-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "t").unwrap();
        let c_token = std::ffi::CString::new(dir.join("token").as_os_str().as_bytes()).unwrap();
        let c_new = std::ffi::CString::new(dir.join("new").as_os_str().as_bytes()).unwrap();
        let read = vec![dir.clone(), PathBuf::from("/nonexistent/skipped")];
        let outcome = in_child(|| {
            if no_new_privs().is_err() {
                return 90;
            }
            match landlock_restrict(&read) {
                Ok((_, 1)) => {}
                _ => return 91,
            }
            let open = |p: &std::ffi::CStr, flags: libc::c_int| {
                // SAFETY: a NUL-terminated path; the descriptor is closed at once.
                let fd = unsafe { libc::open(p.as_ptr(), flags, 0o600) };
                if fd >= 0 {
                    // SAFETY: our descriptor.
                    unsafe { libc::close(fd) };
                    0
                } else {
                    io::Error::last_os_error().raw_os_error().unwrap_or(-1)
                }
            };
            if open(&c_token, libc::O_RDONLY) != 0 {
                return 1;
            }
            if open(&c_token, libc::O_WRONLY) != libc::EACCES {
                return 2;
            }
            if open(&c_new, libc::O_WRONLY | libc::O_CREAT) != libc::EACCES {
                return 3;
            }
            if open(c"/etc/passwd", libc::O_RDONLY) != libc::EACCES {
                return 4;
            }
            0
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(outcome, Ok(0), "exit code = the check that failed");
    }

    #[test]
    fn landlock_rights_grow_with_the_abi() {
        assert_eq!(handled_for(1), 0x1fff);
        assert!(handled_for(3) & (1 << 14) != 0);
        assert_eq!(handled_for(7), 0xffff);
    }
}
