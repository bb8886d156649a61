#!/bin/bash
# EXPERIMENT (issue 6), not part of make check: the rig on the patched Xen 4.17 with a bookworm
# rootfs holding xen-utils-4.17, without touching run.py/images.sh (owned by the rig's maintainer).
# Stopgap until run.py/images.sh get a real --xen 4.17 variant (patches/README.md 5.7):
#   - a separate build dir $RIG417 (default build/rig417) whose rig/xen-4.20.elf is OUR 4.17 ELF
#     and whose rig/base.img is a bookworm rootfs (bookworm main only: xen-utils-4.17 4.17.5+72,
#     the same version as the hypervisor source of scripts/xen.sh);
#   - /usr/lib/xen-4.20 -> xen-4.17 in that rootfs, because dom0.py takes the toolstack path from
#     rig.json's xenver, which run.py hard-codes to 4.20.
# Then: BUILD=$RIG417 selftests/rig/run.py boot --xen-append pv-superpages --kernel-dir ...
#
#   selftests/rig/pvmmu-rig417.sh image      build $RIG417/rig (needs scripts/xen.sh output)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-$top/build}
RIG417=${RIG417:-$BUILD/rig417}
R=$RIG417/rig
die() { echo "rig417: ERROR: $*" >&2; exit 1; }
log() { echo "rig417: $*" >&2; }
MIRROR=$(cat "$BUILD/.mirror" 2>/dev/null) || die "no $BUILD/.mirror: run scripts/deps.sh first"
xen=$BUILD/xen/xen-4.17-pvsp.elf
[ -s "$xen" ] || die "no $xen: run scripts/xen.sh"
mkdir -p "$R"
cp "$BUILD/.mirror" "$RIG417/.mirror"
cp "$xen" "$R/xen-4.20.elf"    # the name run.py looks for; the content is the patched 4.17
echo "4.17.5+72-g01140da4e8-1 + patches/xen" >"$R/xen.version"
if [ ! -s "$R/base.img" ]; then
	PKGS="xen-utils-4.17,xen-utils-common,xenstore-utils,iproute2,iperf3,ethtool,python3,kmod,busybox,procps,socat,iputils-ping"
	rootfs=$R/rootfs
	rm -rf "$rootfs"
	log "mmdebstrap bookworm rootfs"
	mmdebstrap --variant=essential --mode=root --include="$PKGS" \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		bookworm "$rootfs" "deb $MIRROR bookworm main" >"$R/mmdebstrap.log" 2>&1 ||
		{ tail -20 "$R/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
	rm -rf "$rootfs/usr/lib/modules" "$rootfs/lib/modules"
	ln -s /rig/modules "$rootfs/usr/lib/modules"
	[ -e "$rootfs/lib/modules" ] || [ -L "$rootfs/lib/modules" ] || ln -s /rig/modules "$rootfs/lib/modules"
	install -m 0755 "$here/guest/rig-init" "$rootfs/sbin/rig-init"
	echo rig >"$rootfs/etc/hostname"
	printf '127.0.0.1 localhost\n10.0.0.1 dom0\n10.0.0.2 domu\n' >"$rootfs/etc/hosts"
	: >"$rootfs/etc/fstab"
	mkdir -p "$rootfs/rig" "$rootfs/out" "$rootfs/var/log/xen/console" "$rootfs/run/xen"
	sed -i 's/^#\?autoballoon=.*/autoballoon="off"/' "$rootfs/etc/xen/xl.conf"
	grep -q '^autoballoon="off"' "$rootfs/etc/xen/xl.conf" || echo 'autoballoon="off"' >>"$rootfs/etc/xen/xl.conf"
	ln -sfn xen-4.17 "$rootfs/usr/lib/xen-4.20"
	ls "$rootfs"/usr/lib/xen-4.17/bin/ >"$R/xen-bin.txt"
	chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' >"$R/rootfs.packages"
	mkfs.ext4 -q -F -L rigroot -d "$rootfs" "$R/base.img.tmp" 1536M
	mv "$R/base.img.tmp" "$R/base.img"
	rm -rf "$rootfs"
fi
log "ready: BUILD=$RIG417 python3 $here/run.py boot --xen-append pv-superpages --kernel-dir <kernel>"
