#!/usr/bin/env bash
# cross/board.sh: boot the static router build on an emulated board and measure it there.
#
#   cross/board.sh TARGET [--mem MB] [--no-build]
#
# Targets: armv7-unknown-linux-musleabihf (qemu-system-arm -M virt, Debian's armmp
# kernel) and mipsel-unknown-linux-musl (qemu-system-mipsel -M malta, Debian's
# 4kc-malta kernel). --mem is the board's RAM (default 64 MB); --no-build uses the
# binaries already in target/cross/TARGET/release instead of running
# `cross/build.sh --with-testbed TARGET` first.
#
# What it does: builds an initramfs (cpio, newc) holding Debian's static BusyBox as PID 1
# with cross/board/inittab, cross/busybox/localproxy.init as /etc/init.d/localproxy (so
# the destination proxy starts as on a router), the static localproxy and testbed of
# TARGET, and cross/board/board-check. The whole tunnel (testbed as the service and an
# echo server, the destination through the init script, a source proxy) runs inside the
# guest on 127.0.0.1: the board has no network (-nic none). The guest prints BOARD lines
# on its serial console; this script reads them and prints one summary line.
# Two boots of the same kernel and initramfs: the first measures the idle and peak
# memory, a 16 MiB echo and the respawn after kill -9, then the power is cut (qemu
# killed) during a transfer; the second shows the proxy coming up and tunnelling again,
# then powers off and checks the proxy got SIGTERM and exited 0. Exit 0 when every check
# passed, 1 otherwise. Kernel and BusyBox come from Debian's archive as .debs
# (apt-get download; cached in target/board/debs); nothing is fetched from elsewhere.
# Needs root (apt, dpkg --add-architecture, mknod for /dev/console in the image).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEBS="$ROOT/target/board/debs"

die() { echo "cross/board.sh: $*" >&2; exit 1; }
say() { echo "cross/board.sh: $*" >&2; }

target="" mem=64 build=1
while [ $# -gt 0 ]; do
    case $1 in
        --mem) [ $# -ge 2 ] || die "--mem needs a size in MB, e.g. --mem 32"; mem=$2; shift ;;
        --no-build) build=0 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        -*) die "unknown option $1; see cross/board.sh --help" ;;
        *) [ -z "$target" ] || die "one target at a time; see cross/board.sh --help"; target=$1 ;;
    esac
    shift
done
[ -n "$target" ] || die "name a target: armv7-unknown-linux-musleabihf or mipsel-unknown-linux-musl"
case $mem in ''|*[!0-9]*) die "--mem takes a whole number of MB, e.g. --mem 32" ;; esac

case $target in
    armv7-unknown-linux-musleabihf)
        arch=armhf qemu=qemu-system-arm qpkg=qemu-system-arm flavour=armmp console=ttyAMA0
        # Debian's armmp kernel reserves 16 MB of CMA (contiguous DMA for displays and
        # GPUs); a router's kernel does not, and socket buffers cannot use that memory:
        # with it a 64 MB board runs out of memory for TCP during the echo.
        kargs="cma=0"
        machine=(-M virt -cpu cortex-a15) ;;
    mipsel-unknown-linux-musl)
        arch=mipsel qemu=qemu-system-mipsel qpkg=qemu-system-mips flavour=4kc-malta console=ttyS0
        kargs=""
        machine=(-M malta -vga none) ;;
    *) die "no board for $target; use armv7-unknown-linux-musleabihf or mipsel-unknown-linux-musl" ;;
esac
[ "$(id -u)" = 0 ] || die "run as root: it installs packages and makes device nodes for the image"

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# qemu-system from Debian. Where the machine's qemu-utils comes from bookworm-backports
# (it Breaks the 7.2 qemu-system-common), take qemu-system from there too.
ensure_host_tools() {
    if ! command -v "$qemu" >/dev/null 2>&1; then
        say "installing $qpkg (apt)"
        apt-get update -qq || die "apt-get update failed; are Debian's mirrors reachable?"
        if ! apt_install "$qpkg" 2>/dev/null; then
            local f=/etc/apt/sources.list.d/bookworm-backports.sources
            if [ ! -f "$f" ]; then
                say "$qpkg conflicts with the installed qemu packages; adding bookworm-backports"
                printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" \
                    "Suites: bookworm-backports" "Components: main" \
                    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" >"$f"
                apt-get update -qq || die "apt-get update failed"
            fi
            apt_install -t bookworm-backports "$qpkg" || die "apt-get install $qpkg failed"
        fi
    fi
    local need=""
    command -v cpio >/dev/null 2>&1 || need="$need cpio"
    command -v gzip >/dev/null 2>&1 || need="$need gzip"
    if [ -n "$need" ]; then
        say "installing$need (apt)"
        # shellcheck disable=SC2086 # one word per package
        apt_install $need || die "apt-get install$need failed"
    fi
}

# The kernel and BusyBox .debs for the board's Debian architecture, in $DEBS.
fetch_debs() {
    if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        say "adding Debian architecture $arch (dpkg --add-architecture)"
        dpkg --add-architecture "$arch"
    fi
    if ! apt-cache show "busybox-static:$arch" >/dev/null 2>&1; then
        apt-get update -qq || die "apt-get update failed; are Debian's mirrors reachable?"
    fi
    kpkg=$(apt-cache depends "linux-image-$flavour:$arch" 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^:]*\).*/\1/p' | head -n 1)
    [ -n "$kpkg" ] || die "apt knows no kernel for linux-image-$flavour:$arch; run apt-get update"
    mkdir -p "$DEBS"
    local p
    for p in "$kpkg" busybox-static; do
        if ! ls "$DEBS/${p}_"*"_$arch.deb" >/dev/null 2>&1; then
            say "downloading $p:$arch (apt-get download)"
            (cd "$DEBS" && apt-get download -qq "$p:$arch" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2) || true
            ls "$DEBS/${p}_"*"_$arch.deb" >/dev/null 2>&1 || die "apt-get download $p:$arch failed"
        fi
    done
}

# The initramfs: $work/initramfs.cpio.gz, and the kernel at $kernel.
build_image() {
    local bin="$ROOT/target/cross/$target/release" r="$work/root" d
    for d in localproxy testbed; do
        [ -x "$bin/$d" ] || die "no $bin/$d; run cross/build.sh --with-testbed $target"
    done
    rm -rf "$work/kernel" "$work/busybox" "$r"
    mkdir -p "$work/kernel" "$work/busybox"
    # Only /boot of the kernel package: the modules are not needed (everything the board
    # uses is built in: serial console, initramfs, devtmpfs, tmpfs, seccomp, Landlock).
    dpkg-deb --fsys-tarfile "$(ls "$DEBS/${kpkg}_"*"_$arch.deb" | tail -n 1)" \
        | tar -x -C "$work/kernel" ./boot
    dpkg-deb -x "$(ls "$DEBS/busybox-static_"*"_$arch.deb" | tail -n 1)" "$work/busybox"
    kernel=$(ls "$work/kernel/boot/vmlinuz-"* | head -n 1)
    kver=${kernel##*/vmlinuz-}
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,etc/rc.d,etc/default,dev,proc,sys,tmp,root,var/run,var/log}
    cp "$work/busybox/bin/busybox" "$r/bin/busybox"
    ln -s busybox "$r/bin/sh"
    ln -s bin/busybox "$r/init"
    install -m 644 "$ROOT/cross/board/inittab" "$r/etc/inittab"
    install -m 755 "$ROOT/cross/board/rcS" "$r/etc/init.d/rcS"
    install -m 755 "$ROOT/cross/board/S40testbed" "$r/etc/rc.d/S40testbed"
    install -m 755 "$ROOT/cross/busybox/localproxy.init" "$r/etc/init.d/localproxy"
    ln -s ../init.d/localproxy "$r/etc/rc.d/S50localproxy"
    install -m 755 "$ROOT/cross/busybox/localproxy-service" "$r/usr/sbin/localproxy-service"
    install -m 644 "$ROOT/cross/board/localproxy.conf" "$r/etc/default/localproxy"
    install -m 755 "$ROOT/cross/board/board-check" "$r/sbin/board-check"
    install -m 755 "$bin/localproxy" "$r/usr/bin/localproxy"
    install -m 755 "$bin/testbed" "$r/usr/bin/testbed"
    printf '127.0.0.1 localhost router\n::1 localhost\n' >"$r/etc/hosts"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$r/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
    # The kernel opens /dev/console for init before anything is mounted.
    mknod -m 600 "$r/dev/console" c 5 1 || die "mknod failed (needs root)"
    mknod -m 666 "$r/dev/null" c 1 3
    (cd "$r" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -9 >"$work/initramfs.cpio.gz"
}

# boot PLAN: one boot; the console goes to $work/console-PLAN.log and to stdout.
# Sets cut=1 when the power was cut at the guest's cut-point, powered_off=1 when the
# guest powered itself off, t_ready_host to the seconds from start to its ready line.
boot() {
    local plan=$1 log="$work/console-$1.log" limit=900
    : >"$log"
    cut=0 powered_off=0 t_ready_host="" boot_note=""
    local start=$SECONDS
    "$qemu" "${machine[@]}" -m "$mem" -smp 1 -kernel "$kernel" -initrd "$work/initramfs.cpio.gz" \
        -append "console=$console quiet panic=-1 $kargs lpboard.plan=$plan" \
        -nic none -display none -monitor none -serial "file:$log" -no-reboot &
    local qpid=$!
    tail -n +1 -F --pid="$qpid" "$log" 2>/dev/null | tr -d '\r' &
    local tpid=$!
    while kill -0 "$qpid" 2>/dev/null; do
        if [ -z "$t_ready_host" ] && grep -q '^BOARD ready' "$log"; then
            t_ready_host=$((SECONDS - start))
        fi
        if [ "$plan" = full ] && grep -q '^BOARD cut-point' "$log"; then
            kill -9 "$qpid"
            cut=1
            break
        fi
        # A board too small for the kernel and the initramfs ends in silence or a panic.
        if grep -a -q 'Kernel panic' "$log"; then
            boot_note=$(tr -d '\r' <"$log" | grep -a -m 1 -o 'Kernel panic.*')
            say "boot $plan: $boot_note"
            kill -9 "$qpid"
            break
        fi
        if [ ! -s "$log" ] && [ $((SECONDS - start)) -gt 120 ]; then
            boot_note="the kernel printed nothing in 120 s: with $mem MB it does not get to its console (too little RAM for it and the initramfs)"
            say "boot $plan: $boot_note"
            kill -9 "$qpid"
            break
        fi
        if [ $((SECONDS - start)) -gt $limit ]; then
            boot_note="no end after $limit s"
            say "boot $plan: $boot_note; killing qemu"
            kill -9 "$qpid"
            break
        fi
        sleep 0.5
    done
    local rc=0
    # (braces: bash's "Killed" notice for the power cut is not news)
    { wait "$qpid"; } 2>/dev/null || rc=$?
    wait "$tpid" 2>/dev/null || true
    # A panic with panic=-1 ends qemu (-no-reboot) before the loop above may see it.
    [ -n "$boot_note" ] || boot_note=$(tr -d '\r' <"$log" | grep -a -m 1 -o 'Kernel panic.*' || true)
    [ $cut = 0 ] && [ $rc = 0 ] && grep -q '^BOARD halt' "$log" && powered_off=1
    echo "cross/board.sh: boot $plan ended after $((SECONDS - start)) s (qemu exit $rc, power cut $cut)" >&2
    return 0
}

# line PLAN STEP: the guest's last `BOARD STEP ...` line of that boot ("" if none).
line() { tr -d '\r' <"$work/console-$1.log" | grep "^BOARD $2" | tail -n 1 || true; }
# val LINE KEY: KEY's value in a BOARD line.
val() { printf '%s\n' "$1" | sed -n "s/.* $2=\([^ ]*\).*/\1/p"; }
mb() { awk "BEGIN { printf \"%.2f\", ${1:-0} / 1024 }"; }

ensure_host_tools
if [ $build = 1 ]; then
    "$ROOT/cross/build.sh" --with-testbed "$target" || die "the build failed"
fi
fetch_debs
work="$ROOT/target/board/$target-${mem}m"
mkdir -p "$work"
build_image
say "booting $target: $qemu ${machine[*]} -m $mem, Linux $kver, initramfs $(stat -c %s "$work/initramfs.cpio.gz") bytes"

all=$SECONDS
boot full
r1=$t_ready_host c1=$cut n1=$boot_note
r2="" p2=0
if [ "$c1" = 1 ]; then
    boot after-cut
    r2=$t_ready_host p2=$powered_off
else
    say "the first boot did not reach the power cut; no second boot"
    : >"$work/console-after-cut.log"
fi

ready=$(line full ready) idle=$(line full idle) echo1=$(line full 'echo ok=[01] mib=16')
resp=$(line full respawn) sb=$(line full sandbox)
ready2=$(line after-cut ready) echo2=$(line after-cut 'echo ok=[01] mib=4') halt=$(line after-cut halt)
fails=$( (line full fail; line after-cut fail) | sed 's/^BOARD fail //' | tr '\n' ';')

ok=1
check() { # check NAME CONDITION-RESULT
    if [ "$2" != 1 ]; then ok=0; failed="$failed $1"; fi
}
failed=""
check ready "$(val "$ready" ok)"
check echo "$(val "$echo1" ok)"
check respawn "$(val "$resp" ok)"
check power-cut "$([ "$c1" = 1 ] && [ "$(val "$ready2" ok)" = 1 ] && [ "$(val "$echo2" ok)" = 1 ] && echo 1)"
check halt "$([ "$(val "$halt" ok)" = 1 ] && [ "$p2" = 1 ] && echo 1)"

if [ -z "$ready" ]; then
    echo "board $target ${mem} MB, Linux $kver: FAIL (no tunnel on the first boot): ${n1:-no ready line on the console}${fails:+; guest said: $fails}"
    exit 1
fi
before=$(val "$idle" memavail_before_kb) after=$(val "$idle" memavail_after_kb)
size=$(stat -c %s "$ROOT/target/cross/$target/release/localproxy")
summary="board $target ${mem} MB, Linux $kver, localproxy $size bytes: $([ $ok = 1 ] && echo PASS || echo "FAIL (${failed# })")"
summary="$summary | ready $(val "$ready" uptime_s) s after boot (${r1:-?} s from qemu start)"
summary="$summary | echo 16 MiB $([ "$(val "$echo1" ok)" = 1 ] && echo intact || echo FAILED) at $(val "$echo1" mibps) MiB/s"
summary="$summary | destination idle VmRSS $(mb "$(val "$idle" vmrss_kb)") MB (anon $(mb "$(val "$idle" rssanon_kb)"), file $(mb "$(val "$idle" rssfile_kb)"), shmem $(mb "$(val "$idle" rssshmem_kb)"))"
summary="$summary, peak VmRSS $(mb "$(val "$echo1" peak_vmrss_kb)") MB (anon $(mb "$(val "$echo1" peak_rssanon_kb)"), file $(mb "$(val "$echo1" peak_rssfile_kb)"), shmem $(mb "$(val "$echo1" peak_rssshmem_kb)")), VmHWM $(mb "$(val "$echo1" vmhwm_kb)") MB"
summary="$summary | MemAvailable $(mb "$before") -> $(mb "$after") MB ($(mb "$(( ${before:-0} - ${after:-0} ))") MB used; testbed VmRSS $(mb "$(val "$idle" testbed_rss_before_kb)") -> $(mb "$(val "$idle" testbed_rss_after_kb)") MB)"
summary="$summary | respawn after kill -9: $([ "$(val "$resp" ok)" = 1 ] && echo ok || echo FAILED), back in $(val "$resp" back_s) s (delay $(val "$resp" respawn_delay_s) s), tunnel ready in $(val "$resp" ready_s) s"
summary="$summary | power cut mid-transfer: $([ "$c1" = 1 ] && echo cut || echo 'not reached'), next boot ready $(val "$ready2" uptime_s) s after boot (${r2:-?} s from qemu start) and echo $([ "$(val "$echo2" ok)" = 1 ] && echo intact || echo FAILED)"
summary="$summary | poweroff: $([ "$(val "$halt" ok)" = 1 ] && echo "SIGTERM, exit $(val "$halt" exit)" || echo "FAILED (sigterm lines $(val "$halt" sigterm_logged), exit $(val "$halt" exit))")$([ "$p2" = 1 ] || echo ', guest did not power off')"
summary="$summary | sandbox: $(val "$sb" line | tr '_' ' ')"
summary="$summary | $((SECONDS - all)) s for both boots"
[ -z "$fails" ] || summary="$summary | guest said: $fails"
echo "$summary"
[ $ok = 1 ]
