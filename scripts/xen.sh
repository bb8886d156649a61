#!/bin/bash
# Build the patched Xen 4.17 hypervisor for PV superpages (issue 6, patches/README.md 5.7).
#
#   scripts/xen.sh [fetch|build]     (default: both)
#
# Source: bookworm's xen source package (4.17.5), fetched with apt-get source through a private
# deb-src list (the mirror of build/.mirror, written by scripts/deps.sh); the system's apt
# configuration is not changed. The tree is unpacked fresh under build/xen-src, Debian's own
# patches included (dpkg-source), then patches/xen/*.patch are applied in name order (loudly
# failing). Only the hypervisor is built (make -C xen), with Debian's debian/xen-kconfig
# (CONFIG_DEBUG=n) and otherwise Kconfig defaults.
# Output: build/xen/xen-4.17-pvsp.elf (multiboot ELF for qemu -kernel, like build/rig/xen-4.20.elf),
#         build/xen/xen-syms, build/xen/config, build/xen/build.log, build/xen/VERSION.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
BUILD=${BUILD:-$top/build}
what=${1:-all}
die() { echo "xen: ERROR: $*" >&2; exit 1; }
log() { echo "xen: $*" >&2; }

SUITE=bookworm
PKGVER=${XEN_PKGVER:-4.17.5+72-g01140da4e8-1}  # the version the patches were made against
dl=$BUILD/xen-dl
src=$BUILD/xen-src
out=$BUILD/xen

fetch() {
	local mirror apt
	mirror=$(cat "$BUILD/.mirror" 2>/dev/null) || die "no $BUILD/.mirror: run scripts/deps.sh first"
	mkdir -p "$dl/lists/partial" "$dl/cache/archives/partial"
	echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE main" >"$dl/sources.list"
	apt=(apt-get -q -o Dir::Etc::sourcelist="$dl/sources.list" -o Dir::Etc::sourceparts=-
	     -o Dir::State::lists="$dl/lists" -o Dir::Cache="$dl/cache" -o Dir::Cache::pkgcache=
	     -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root)
	if ! ls "$dl"/xen_"${PKGVER#*:}".dsc >/dev/null 2>&1; then
		log "apt-get source xen=$PKGVER ($SUITE deb-src, private list)"
		"${apt[@]}" update >"$dl/update.log" 2>&1 || { cat "$dl/update.log" >&2; die "apt-get update (private deb-src list) failed"; }
		(cd "$dl" && "${apt[@]}" source --download-only "xen=$PKGVER") >"$dl/source.log" 2>&1 ||
			{ cat "$dl/source.log" >&2; die "apt-get source xen=$PKGVER failed"; }
	fi
	log "unpacking into $src"
	rm -rf "$src"
	dpkg-source -x "$dl"/xen_"${PKGVER#*:}".dsc "$src" >"$dl/unpack.log" 2>&1 ||
		{ cat "$dl/unpack.log" >&2; die "dpkg-source -x failed"; }
	local p n=0
	for p in "$top"/patches/xen/*.patch; do
		[ -f "$p" ] || continue
		patch -d "$src" -p1 -s --no-backup-if-mismatch -i "$p" || die "patch $(basename "$p") does not apply to xen $PKGVER"
		n=$((n + 1))
	done
	[ $n -gt 0 ] || die "no patches/xen/*.patch"
	log "applied $n patch(es) from patches/xen/"
}

build() {
	[ -f "$src/xen/Makefile" ] || die "no $src: run scripts/xen.sh fetch"
	mkdir -p "$out"
	cp "$src/debian/xen-kconfig" "$src/xen/.config"
	# One heavy job at a time on two cores (shared with scripts/kernel.sh and the rig).
	exec 9>"${HEAVY_LOCK:-/tmp/xen-netrs-heavy.lock}"
	flock 9
	log "building the hypervisor in $src/xen (log: $out/build.log)"
	local t0=$SECONDS
	{ make -C "$src/xen" olddefconfig && make -C "$src/xen" -j"$(nproc)"; } >"$out/build.log" 2>&1 ||
		{ tail -40 "$out/build.log" >&2; die "hypervisor build failed (see $out/build.log)"; }
	exec 9>&-
	cp "$src/xen/xen" "$out/xen-4.17-pvsp.elf"
	cp "$src/xen/xen-syms" "$out/xen-syms"
	cp "$src/xen/.config" "$out/config"
	echo "xen $PKGVER + $(cd "$top" && ls patches/xen/*.patch | tr '\n' ' ')" >"$out/VERSION"
	log "done in $((SECONDS - t0)) s: $out/xen-4.17-pvsp.elf ($(file -b "$out/xen-4.17-pvsp.elf" | cut -d, -f1-2))"
}

case $what in
fetch) fetch;;
build) build;;
all) fetch; build;;
*) die "usage: scripts/xen.sh [fetch|build]";;
esac
