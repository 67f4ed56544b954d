//! The kernel's clock tick, the unit of the CPU times in /proc/PID/stat (read by the
//! testbed's bench).

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), or 100, Linux's usual value, if
/// the call fails.
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf takes a constant and reads no memory of ours.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}
