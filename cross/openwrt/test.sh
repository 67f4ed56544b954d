#!/bin/sh
# Runtime test for the openwrt/packages CI, run on the target after the package is
# installed: test.sh PKG_NAME PKG_VERSION (both also in the environment). It checks the
# version and that `localproxy --check` accepts a complete configuration (exit 0) and
# refuses an incomplete one (exit 2); --check uses no network. Matches are printed, not
# hidden with grep -q, so they show in the CI log.

name=${1:-${PKG_NAME:-}}
version=${2:-${PKG_VERSION:-}}

case "$name" in
localproxy-rs|localproxy)
	[ -n "$version" ] || { echo "FAIL: no version given"; exit 1; }
	localproxy --version | grep -F "localproxy $version" ||
		{ echo "FAIL: localproxy --version does not say $version"; exit 1; }

	tok=$(mktemp) || exit 1
	trap 'rm -f "$tok"' EXIT
	echo 'test-access-token' >"$tok"

	localproxy --check -r us-east-1 -d 22 --access-token-file "$tok" |
		grep -F 'destination-app = 127.0.0.1:22' ||
		{ echo "FAIL: --check refused a valid destination configuration"; exit 1; }

	localproxy --check -d 22 --access-token-file "$tok" >/dev/null 2>&1
	rc=$?
	[ "$rc" -eq 2 ] ||
		{ echo "FAIL: --check without region or endpoint exited $rc, not 2"; exit 1; }
	echo "ok: --check without region or endpoint exits 2"
	;;
*)
	echo "FAIL: test.sh does not know package '$name'"
	exit 1
	;;
esac
