//! Users: whether we run as root, `NAME[:GROUP]` to ids, and dropping privileges for
//! the whole process.

use std::io;

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Resolves `NAME[:GROUP]` to (uid, gid); without a group, the user's primary group.
pub(crate) fn lookup_user(spec: &str) -> io::Result<(u32, u32)> {
    let (name, group) = match spec.split_once(':') {
        Some((n, g)) => (n, Some(g)),
        None => (spec, None),
    };
    let not_found =
        |what: &str| io::Error::new(io::ErrorKind::NotFound, format!("no {what} named {name}"));
    let cname = std::ffi::CString::new(name).map_err(|_| not_found("user"))?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: passwd is plain data; getpwnam_r fills it and points its strings into
    // `buf`, which outlives every use of `pw`; `result` tells whether it found one.
    let (uid, mut gid) = unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwnam_r(
            cname.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        if result.is_null() {
            return Err(not_found("user"));
        }
        (pw.pw_uid, pw.pw_gid)
    };
    if let Some(g) = group {
        let cg = std::ffi::CString::new(g)
            .map_err(|_| io::Error::new(io::ErrorKind::NotFound, "bad group name"))?;
        // SAFETY: as above, for group and getgrnam_r.
        gid = unsafe {
            let mut gr: libc::group = std::mem::zeroed();
            let mut result: *mut libc::group = std::ptr::null_mut();
            let r = libc::getgrnam_r(
                cg.as_ptr(),
                &mut gr,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            if result.is_null() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no group named {g}"),
                ));
            }
            gr.gr_gid
        };
    }
    Ok((uid, gid))
}

/// Switches the whole process (every thread) to `uid`/`gid` and drops supplementary
/// groups; checks that root cannot be regained. Under the sandbox, the setuid family is
/// then refused for good (a second seccomp filter).
pub(crate) fn drop_privileges(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: setgroups reads one gid from a live local; setgid/setuid take plain ids.
    // glibc and musl apply them to every thread of the process.
    unsafe {
        if libc::setgroups(1, &gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setgid(gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::setuid(uid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if uid != 0 && libc::setuid(0) == 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "root could be regained",
            ));
        }
    }
    super::sandbox::forbid_setid()
}
