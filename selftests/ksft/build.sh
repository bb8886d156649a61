#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build the 7.3 tree's network driver kselftests for the rig (issues 4 and 5), on the host.
#
#   selftests/ksft/build.sh            -> build/ksft/install (cached; rebuilt when the kernel
#                                         tree or this script changes)
#
# The kernel source (build/src/linux) is used read-only: the parts the selftest build writes
# into (tools/, the netlink specs) are copied to build/ksft/src, the UAPI headers are installed
# from the source tree with O= into build/ksft/hdr. Binaries are linked against the host's
# glibc (Debian 12, 2.36), older than the rig's (trixie, 2.41): they run there.
# The install dir is shipped on the per-run rig disk (run.py make_rig_disk) as /rig/ksft.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
B=${BUILD:-$top/build}
KSRC=${KSRC_TREE:-$B/src/linux}
K=$B/ksft
here=$top/selftests/ksft
log() { echo "ksft-build: $*"; }
[ -f "$KSRC/Makefile" ] || { echo "ksft-build: no kernel tree in $KSRC (make kernel)" >&2; exit 2; }

want=$( (cat "$B/kernel/include/config/kernel.release" 2>/dev/null; stat -c %Y "$KSRC/Makefile";
	 cat "$here/build.sh" "$here/netdevice-netif.sed") | sha1sum | cut -c1-40)
if [ "$(cat "$K/stamp" 2>/dev/null)" = "$want" ] && [ -d "$K/install" ]; then
	log "cached ($K/install)"
	exit 0
fi
rm -rf "$K"
mkdir -p "$K/src"
log "copying tools/, scripts/ and the netlink specs of $KSRC"
cp -a "$KSRC/tools" "$KSRC/scripts" "$K/src/"
mkdir -p "$K/src/Documentation/netlink"
cp -a "$KSRC/Documentation/netlink/specs" "$KSRC/Documentation/netlink/"*.yaml "$K/src/Documentation/netlink/"
# UAPI headers (headers_install with O=: writes only under $K/hdr)
log "headers_install"
make -s -C "$KSRC" O="$K/hdr" ARCH=x86_64 headers_install INSTALL_HDR_PATH="$K/hdr/usr" >"$K/headers.log" 2>&1 ||
	{ tail -20 "$K/headers.log" >&2; exit 1; }
mkdir -p "$K/src/usr"
cp -a "$K/hdr/usr/include" "$K/src/usr/include"

T="drivers/net drivers/net/hw net/lib"
# YNL_GEN_FILES= : no YNL C programs (psp_responder, toeplitz, ncdevmem; none is in the issues'
# list, and ynl_gen_c.py took over 7 CPU minutes on psp.yaml here). The Python ynl library and
# the specs are installed (net/lib/ynl), the tests use those.
log "make TARGETS=\"$T\" install (-j2)"
if ! make -C "$K/src/tools/testing/selftests" -j2 TARGETS="$T" KHDR_INCLUDES="-isystem $K/src/usr/include" \
	CLANG=$(command -v clang-19 || echo clang) YNL_GEN_FILES= \
	install INSTALL_PATH="$K/install" >"$K/build.log" 2>&1; then
	grep -E "error|Error|Stop" "$K/build.log" | head -20 >&2 || true
	echo "ksft-build: make failed (log: $K/build.log)" >&2
	exit 1
fi
# net/netdevice.sh (the net target builds far more than this script): copied as is, plus a
# variant that tests $NETIF when it is set (the stock script only finds eth*/enp* devices).
mkdir -p "$K/install/net"
cp "$K/src/tools/testing/selftests/net/netdevice.sh" "$K/install/net/"
sed -f "$here/netdevice-netif.sed" "$K/src/tools/testing/selftests/net/netdevice.sh" >"$K/install/net/netdevice-netif.sh"
chmod +x "$K/install/net/"*.sh
cmp -s "$K/install/net/netdevice.sh" "$K/install/net/netdevice-netif.sh" && { echo "ksft-build: netdevice-netif.sed did not apply" >&2; exit 1; }
for f in drivers/net/ping.py drivers/net/napi_id_helper drivers/net/so_txtime net/lib/csum net/lib/xdp_helper drivers/net/hw/csum.py; do
	[ -e "$K/install/$f" ] || { echo "ksft-build: $f not installed" >&2; exit 1; }
done
# PyYAML for the ynl library (the rig image has no python3-yaml; adding it would rebuild the
# shared base image): the pure-Python modules of the host's PyYAML (no C extension), on
# PYTHONPATH=<install>/pylib in the guests.
ydir=$(python3 -c 'import os, yaml; print(os.path.dirname(yaml.__file__))')
mkdir -p "$K/install/pylib/yaml"
cp "$ydir"/*.py "$K/install/pylib/yaml/"
find "$K/install" -name __pycache__ -prune -exec rm -rf {} +
echo "$want" >"$K/stamp"
log "done: $(du -sh "$K/install" | cut -f1) in $K/install"
