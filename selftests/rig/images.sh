#!/bin/bash
# Build (once, cached under build/rig/) what the Xen-in-QEMU rig boots:
#   build/rig/xen-4.20.elf        Xen hypervisor (uncompressed multiboot ELF; the .gz does not boot with -kernel)
#   build/rig/rootfs/             trixie rootfs (mmdebstrap, essential + rig packages)
#   build/rig/base.img            ext4 image of it; dom0 and domU each boot a per-run qcow2 overlay of it
# Per run (selftests/rig/run.py) only a small "rig disk" is made: scripts, the kernel's modules,
# the Rust .ko files and the domU kernel; the base image is not rebuilt when modules change.
#
# Idempotent: each product has a stamp holding the hash of its inputs; delete build/rig to start over.
#
#   selftests/rig/images.sh [4.17]
# With 4.17: the PV-superpage variant of the rig (issue 6, patches/README.md 5.7) in build/rig417/:
#   xen-4.17.elf (our patched Xen 4.17, built by scripts/xen.sh) and a bookworm base.img with
#   xen-utils-4.17 (the hypervisor's own version; 4.20 tools cannot drive a 4.17 hypervisor).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/versions.sh"
BUILD=${BUILD:-$top/build}
VARIANT=${1:-$XENVER}
case "$VARIANT" in
$XENVER) R=$BUILD/rig SUITE=trixie ;;
4.17) R=$BUILD/rig417 SUITE=bookworm XENVER=4.17 ;;
*) echo "images: usage: $0 [4.17]" >&2; exit 2 ;;
esac
mkdir -p "$R/dl"
log() { echo "images: $*" >&2; }
die() { echo "images: ERROR: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap --mode=root, mkfs.ext4 -d of a root-owned tree)"
MIRROR=$(cat "$BUILD/.mirror" 2>/dev/null) || die "no $BUILD/.mirror: run scripts/deps.sh first"
for t in mmdebstrap mkfs.ext4 qemu-img apt-get dpkg; do command -v $t >/dev/null || die "missing $t (scripts/deps.sh)"; done

# --- 1. Xen hypervisor -----------------------------------------------------------------
xen=$R/xen-$XENVER.elf
if [ "$VARIANT" = 4.17 ]; then
	[ -s "$BUILD/xen/xen-4.17-pvsp.elf" ] || BUILD=$BUILD bash "$top/scripts/xen.sh"
	cmp -s "$BUILD/xen/xen-4.17-pvsp.elf" "$xen" || cp "$BUILD/xen/xen-4.17-pvsp.elf" "$xen"
	cp "$BUILD/xen/VERSION" "$R/xen.version"
elif [ ! -s "$xen" ]; then
	log "downloading xen-hypervisor-$XENVER-amd64"
	rm -rf "$R/dl/xen" && mkdir -p "$R/dl/xen"
	(cd "$R/dl/xen" && apt-get download -q -o APT::Sandbox::User=root "xen-hypervisor-$XENVER-amd64" >/dev/null) ||
		die "apt-get download xen-hypervisor-$XENVER-amd64 failed (trixie apt source from scripts/deps.sh?)"
	dpkg -x "$R"/dl/xen/xen-hypervisor-*.deb "$R/dl/xen/x"
	gz=$(ls "$R"/dl/xen/x/boot/xen-$XENVER-amd64.gz 2>/dev/null || ls "$R"/dl/xen/x/boot/xen-*.gz | head -1)
	gunzip -c "$gz" >"$xen.tmp"
	file "$xen.tmp" | grep -q 'ELF 32-bit' || die "$gz did not unpack to a multiboot ELF"
	dpkg-deb -f "$R"/dl/xen/xen-hypervisor-*.deb Version >"$R/xen.version"
	mv "$xen.tmp" "$xen"
	rm -rf "$R/dl/xen/x"
fi
log "xen: $xen ($(cat "$R/xen.version" 2>/dev/null))"

# --- 2. rootfs (shared by dom0 and the domU) --------------------------------------------
PKGS="xen-utils-$XENVER,xen-utils-common,xenstore-utils,iproute2,iperf3,ethtool,python3,kmod,busybox,procps,openssh-server,socat,iputils-ping"
# bookworm's `mount` is not Essential (trixie's util-linux has it)
[ "$SUITE" = trixie ] || PKGS="$PKGS,mount"
rootfs=$R/rootfs
ROOTFS_REV=1   # bump when the customisation below changes
want=$(printf '%s\n' "$PKGS" "$MIRROR" "$ROOTFS_REV" "$(sha1sum <"$here/guest/rig-init")" ${SUITE#trixie} | sha1sum | cut -c1-40)
if [ "$(cat "$R/rootfs.stamp" 2>/dev/null)" != "$want" ] || [ ! -s "$R/base.img" ]; then
	log "mmdebstrap $SUITE rootfs (about 2 min)"
	rm -rf "$rootfs" "$R/base.img" "$R/rootfs.stamp"
	mmdebstrap --variant=essential --mode=root --include="$PKGS" \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--aptopt='Acquire::Retries "3"' \
		"$SUITE" "$rootfs" "deb $MIRROR $SUITE main" >"$R/mmdebstrap.log" 2>&1 ||
		{ tail -20 "$R/mmdebstrap.log" >&2; die "mmdebstrap failed (log: $R/mmdebstrap.log)"; }
	# --- rig customisation: everything run-specific lives on the per-run rig disk (/rig)
	rm -rf "$rootfs/usr/lib/modules"; ln -s /rig/modules "$rootfs/usr/lib/modules"
	[ -L "$rootfs/lib" ] || { rm -rf "$rootfs/lib/modules"; ln -s /rig/modules "$rootfs/lib/modules"; }
	install -m 0755 "$here/guest/rig-init" "$rootfs/sbin/rig-init"
	echo rig >"$rootfs/etc/hostname"
	printf '127.0.0.1 localhost\n10.0.0.1 dom0\n10.0.0.2 domu\n' >"$rootfs/etc/hosts"
	: >"$rootfs/etc/fstab"
	mkdir -p "$rootfs/rig" "$rootfs/out" "$rootfs/var/log/xen/console" "$rootfs/run/xen"
	# dom0 memory is fixed on the Xen command line: no ballooning by xl.
	sed -i 's/^#\?autoballoon=.*/autoballoon="off"/' "$rootfs/etc/xen/xl.conf"
	grep -q '^autoballoon="off"' "$rootfs/etc/xen/xl.conf" || echo 'autoballoon="off"' >>"$rootfs/etc/xen/xl.conf"
	ls "$rootfs/usr/lib/x86_64-linux-gnu/libgcc_s.so.1" >/dev/null 2>&1 || ls "$rootfs/lib/x86_64-linux-gnu/libgcc_s.so.1" >/dev/null || die "rootfs lacks libgcc_s.so.1 (iperf3 needs it)"
	chroot "$rootfs" dpkg-query -W -f '${Package} ${Version}\n' >"$R/rootfs.packages"
	log "base.img (ext4)"
	mkfs.ext4 -q -F -L rigroot -d "$rootfs" "$R/base.img.tmp" 1536M
	mv "$R/base.img.tmp" "$R/base.img"
	echo "$want" >"$R/rootfs.stamp"
fi
log "base: $R/base.img ($(du -h --apparent-size "$R/base.img" | cut -f1) apparent, $(du -h "$R/base.img" | cut -f1) used; $(wc -l <"$R/rootfs.packages") packages)"
