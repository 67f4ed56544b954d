#!/usr/bin/env bash
# cross/build.sh: fully static, stripped localproxy binaries for routers.
#
#   cross/build.sh TARGET... | all        build
#   cross/build.sh --test TARGET... | all build, then run each under qemu-user
#                                          (--version and a real tunnel, tests/cross.rs)
#   cross/build.sh --cipher-cost TARGET...  also build cipher-cost with the same OpenSSL
#                                          and run it under qemu-user: the time per MiB of
#                                          AES-GCM and ChaCha20-Poly1305 in that build
#   cross/build.sh --testbed TARGET...      also build the static service double,
#   (or --with-testbed)                    target/cross/TARGET/release/testbed (cargo
#                                          feature `testbed`, built in a second cargo run
#                                          so the localproxy binary stays without it), for
#                                          cross/board.sh
#
# Targets: armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl
#          mipsel-unknown-linux-musl x86_64-unknown-linux-musl
#
# How (see shared notes in README "Building for a router"): Debian's rustc-web builds
# std from source (-Zbuild-std, there is no prebuilt musl std to download here), zig
# (ziglang from PyPI) is the C compiler, musl libc and linker through cargo-zigbuild,
# and the vendored OpenSSL is configured with only what a TLS 1.2/1.3 client needs.
# Everything is installed on first use, idempotently: apt (rustc-web cargo-web
# rust-web-src qemu-user-static), a venv under target/cross-tools (ziglang), cargo
# (cargo-zigbuild). Binaries land in target/cross/TARGET/release/localproxy.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/target/cross-tools"
ALL="armv7-unknown-linux-musleabihf aarch64-unknown-linux-musl mipsel-unknown-linux-musl x86_64-unknown-linux-musl"

die() { echo "cross/build.sh: $*" >&2; exit 1; }
say() { echo "cross/build.sh: $*" >&2; }

# OpenSSL options for a TLS client (what the proxy uses); each was checked to keep the
# openssl crate building and a TLS + WebSocket echo working under qemu. TLS 1.2 and 1.3
# only, ECDHE only (no finite-field DH), key exchange on P-256/P-384 (no X25519). The
# last line saved 239 KB on armv7 (2,737,740 -> 2,498,836 bytes); no-filenames (no
# source file names in OpenSSL's error records, which the proxy never shows) another
# 32 KB (2,500,068 -> 2,467,748). no-deprecated breaks
# the openssl crate; no-async and no-tls1-method change nothing (the linker drops that
# code already). The last two lines (no-err: the TLS errors users see are the proxy's
# own lines, made from OpenSSL's codes, src/tunnel/connect.rs) together with
# position-dependent code (no-pic -fno-pic here, relocation-model=static in
# .cargo/config.toml) took armv7 from 2,375,828 to 2,247,620 bytes and mipsel from
# 3,704,772 to 3,209,084; the position-dependent code is 52 KB of that on armv7 and
# 333 KB on mipsel, no-err's strings about 45 KB on armv7.
OSSL_COMMON="no-legacy no-dso no-dtls no-srp no-psk no-srtp no-ocsp no-cms no-ts no-cmp \
no-ct no-rfc3779 no-quic no-http no-ui-console no-ssl-trace no-nextprotoneg \
no-autoload-config no-des no-rc2 no-rc4 no-md4 no-mdc2 no-bf no-cast no-aria no-sm2 \
no-sm3 no-sm4 no-whirlpool no-rmd160 no-scrypt no-siphash no-blake2 no-ec2m no-gost \
no-ocb no-siv no-multiblock no-tls-deprecated-ec no-ml-kem no-ml-dsa no-slh-dsa \
no-dsa no-dh no-camellia no-seed no-idea no-engine no-tls1 no-tls1_1 no-ecx no-filenames \
no-err no-argon2 no-cmac no-dgram no-thread-pool no-default-thread-pool \
no-integrity-only-ciphers no-secure-memory no-sm2-precomp no-atexit"

ensure_tools() {
    local need=""
    [ -x /usr/bin/rustc ] && /usr/bin/rustc --version | grep -q . || need="$need rustc-web cargo-web"
    [ -d /usr/lib/rustlib/src/rust/library ] || need="$need rust-web-src"
    command -v qemu-arm-static >/dev/null 2>&1 || need="$need qemu-user-static"
    command -v file >/dev/null 2>&1 || need="$need file"
    command -v python3 >/dev/null 2>&1 || need="$need python3 python3-venv"
    if [ -n "$need" ]; then
        say "installing$need (apt)"
        apt-get update -qq || die "apt-get update failed; are Debian's mirrors reachable?"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null \
            || die "apt-get install$need failed"
    fi
    if [ ! -x "$TOOLS/venv/bin/python3" ] || ! "$TOOLS/venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
        say "installing ziglang (PyPI) into $TOOLS/venv"
        mkdir -p "$TOOLS"
        python3 -m venv "$TOOLS/venv" || die "python3 -m venv failed; apt-get install python3-venv"
        "$TOOLS/venv/bin/pip" install -q ziglang || die "pip install ziglang failed"
    fi
    if ! command -v cargo-zigbuild >/dev/null 2>&1; then
        say "installing cargo-zigbuild (crates.io)"
        cargo install --locked -q cargo-zigbuild || die "cargo install cargo-zigbuild failed"
    fi
}

build() {
    local t=$1 extra="" cflags="-Os" drop_nistz256=0
    case $t in
        mipsel-unknown-linux-musl)
            # zig's clang and OpenSSL's MIPS assembly give "bad record mac" under qemu;
            # OpenSSL's atomics need the fallback on mipsel.
            extra="no-asm no-pic"; cflags="-Os -DBROKEN_CLANG_ATOMICS -fno-pic" ;;
        armv7-unknown-linux-musleabihf)
            # The P-256 assembly's 150 KB table out (cross/openssl-configure).
            extra="no-pic"; cflags="-Os -fno-pic"; drop_nistz256=1 ;;
        aarch64-unknown-linux-musl|x86_64-unknown-linux-musl) ;;
        *) die "unknown target $t; use one of: $ALL (or all)" ;;
    esac
    local tdir="$ROOT/target/cross"
    mkdir -p "$tdir"
    local stamp="$tdir/$t/.openssl-options" opts="$OSSL_COMMON $extra"
    local seen="$opts $cflags nistz256-dropped=$drop_nistz256"
    # Cargo does not see OSSL_EXTRA: rebuild OpenSSL when the options change.
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$seen" ]; then
        rm -rf "$tdir/$t/release/build/"openssl-sys-*
        mkdir -p "$tdir/$t"
        printf '%s' "$seen" >"$stamp"
    fi
    local var="CFLAGS_${t//-/_}"
    say "building $t"
    local start=$SECONDS
    (
        cd "$ROOT"
        export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$tdir"
        export CARGO_ZIGBUILD_PYTHON_PATH="$TOOLS/venv/bin/python3"
        export OPENSSL_SRC_PERL="$ROOT/cross/openssl-configure" OSSL_EXTRA="$opts"
        export OSSL_DROP_NISTZ256=$drop_nistz256
        export "$var=$cflags"
        # shellcheck disable=SC2086 # one word per option
        /usr/bin/cargo zigbuild -q --release --locked --bin localproxy $EXTRA_BINS --target "$t" \
            -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size \
            2>&1 | tee "$tdir/build-$t.log"
        [ "${PIPESTATUS[0]}" = 0 ] || exit 1
        if [ "$testbed" = 1 ]; then
            /usr/bin/cargo zigbuild -q --release --locked --features testbed --bin testbed \
                --target "$t" -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size \
                2>&1 | tee -a "$tdir/build-$t.log"
            exit "${PIPESTATUS[0]}"
        fi
    ) || die "the build for $t failed (see the compiler output above)"
    # Code that only this target compiles (no 64-bit atomics, musl) is not linted by the
    # host's clippy: a warning here fails the build.
    if grep -q '^warning' "$tdir/build-$t.log"; then
        die "the build for $t has warnings (above); fix them"
    fi
    local bin="$tdir/$t/release/localproxy"
    [ -f "$bin" ] || die "no binary at $bin after the build"
    local desc
    desc=$(file -b "$bin")
    case $desc in
        *"statically linked"*|*"static-pie linked"*) ;;
        *) die "$bin is not static: $desc" ;;
    esac
    echo "$t: $bin"
    echo "  size: $(stat -c %s "$bin") bytes; built in $((SECONDS - start)) s"
    echo "  file: $desc"
    if [ "$testbed" = 1 ]; then
        [ -f "$tdir/$t/release/testbed" ] || die "no testbed at $tdir/$t/release/testbed"
        echo "  testbed: $tdir/$t/release/testbed"
    fi
}

qemu_for() {
    case $1 in
        armv7-*) echo qemu-arm-static ;;
        aarch64-*) echo qemu-aarch64-static ;;
        mipsel-*) echo qemu-mipsel-static ;;
        x86_64-*) echo "" ;;
    esac
}

run_cipher_cost() {
    local t=$1 q
    q=$(qemu_for "$t")
    say "cipher costs in the $t build's OpenSSL ${q:+(under $q: emulated time, compare the rows)}"
    ${q:+$q} "$ROOT/target/cross/$t/release/cipher-cost" 2 || die "$t: cipher-cost failed"
}

run_test() {
    local t=$1 bin="$ROOT/target/cross/$1/release/localproxy" q
    q=$(qemu_for "$t")
    say "testing $t ${q:+under $q}"
    ${q:+$q} "$bin" --version || die "$t: --version failed${q:+ under $q}"
    (cd "$ROOT" && LOCALPROXY_CROSS_BIN="$bin" LOCALPROXY_QEMU="$q" \
        cargo test -q --test cross -- --ignored --nocapture) || die "$t: the tunnel test failed"
}

test=0
cipher=0
testbed=0
EXTRA_BINS=""
targets=()
for a in "$@"; do
    case $a in
        --test) test=1 ;;
        --cipher-cost) cipher=1; EXTRA_BINS="--bin cipher-cost" ;;
        --testbed|--with-testbed) testbed=1 ;;
        all) targets+=($ALL) ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) targets+=("$a") ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || die "name a target or all; see cross/build.sh --help"
ensure_tools
for t in "${targets[@]}"; do build "$t"; done
if [ $test = 1 ]; then
    for t in "${targets[@]}"; do run_test "$t"; done
fi
if [ $cipher = 1 ]; then
    for t in "${targets[@]}"; do run_cipher_cost "$t"; done
fi
