//! What the CPU can do that the standard library cannot tell on every target: AES
//! instructions on 32-bit ARM (the auxiliary vector's HWCAP2, as OpenSSL reads it).

/// Whether this 32-bit ARM CPU has the ARMv8 AES instructions (Cortex-A53 and newer
/// running 32-bit code; no ARMv7 router SoC has them).
#[cfg(target_arch = "arm")]
pub(crate) fn arm_has_aes() -> bool {
    /// `HWCAP2_AES` of Linux's arch/arm/include/uapi/asm/hwcap.h.
    const HWCAP2_AES: libc::c_ulong = 1;
    // SAFETY: getauxval only reads the process's auxiliary vector; an unknown type
    // returns 0.
    let caps = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    caps & HWCAP2_AES != 0
}
