#!/bin/bash
# Prepare and build the kernel the rig and virtme-ng boot (one kernel for dom0, domU and vng).
#
#   scripts/kernel.sh [test|bench]
#
# Source: KSRC= an existing Linux 7.3 tree (used read-only), else Debian's linux-source-$KVER.
# The tree is copied to build/src/linux, patches/series is applied (loudly failing), the rust/
# overlay is dropped in. Config: tinyconfig + kconfig/*.config (+ kconfig/bench/*.config for
# "bench"); every requested option is then checked in the final .config.
# Output: build/kernel (test) or build/kernel-bench (bench, -O2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/versions.sh"
BUILD=${BUILD:-$top/build}
flavour=${1:-test}
die() { echo "kernel: ERROR: $*" >&2; exit 1; }
log() { echo "kernel: $*" >&2; }

export LIBCLANG_PATH=/usr/lib/llvm-$LLVM_MAJOR/lib
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/xen-netrs-ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
JOBS=${JOBS:-$(nproc)}
KMAKE=(make -s -j"$JOBS" CC="ccache gcc")

# --- 1. pristine source ----------------------------------------------------------
pristine=
if [ -n "${KSRC:-}" ]; then
	[ -f "$KSRC/Makefile" ] && [ -d "$KSRC/rust/kernel" ] || die "KSRC=$KSRC is not a Linux source tree with rust/"
	pristine=$(cd "$KSRC" && pwd)
else
	pristine=$BUILD/dl/linux-source-$KVER
	if [ ! -f "$pristine/Makefile" ]; then
		log "fetching Debian's linux-source-$KVER"
		mkdir -p "$BUILD/dl" && rm -rf "$BUILD/dl/lsrc" "$pristine.tmp"
		(cd "$BUILD/dl" && apt-get download -q -o APT::Sandbox::User=root "linux-source-$KVER" >/dev/null) || die "apt-get download linux-source-$KVER failed (did scripts/deps.sh run?)"
		dpkg -x "$BUILD"/dl/linux-source-"$KVER"_*.deb "$BUILD/dl/lsrc"
		mkdir -p "$pristine.tmp"
		tar -xf "$BUILD"/dl/lsrc/usr/src/linux-source-"$KVER".tar.* -C "$pristine.tmp" --strip-components=1
		rm -rf "$BUILD/dl/lsrc" "$BUILD"/dl/linux-source-"$KVER"_*.deb
		mv "$pristine.tmp" "$pristine"
	fi
fi

# --- 2. patched tree: pristine + patches/series + rust/ overlay ---------------
src=$BUILD/src/linux
want=$( { echo "$pristine"; cat "$top"/patches/series 2>/dev/null;
	  (cd "$top" && find patches rust -type f 2>/dev/null ! -path 'patches/xen/*' -print0 | sort -z | xargs -0 sha1sum); } | sha1sum | cut -d' ' -f1)
if [ "$(cat "$src/.xen-netrs-stamp" 2>/dev/null)" != "$want" ]; then
	log "preparing $src (pristine tree + patches + rust/ overlay)"
	mkdir -p "$src"
	# rsync keeps unchanged files' mtimes, so an incremental kernel build stays incremental.
	rsync -a --delete --exclude=.xen-netrs-stamp "$pristine"/ "$src"/
	if [ -f "$top/patches/series" ]; then
		while read -r p; do
			case "$p" in ''|'#'*) continue;; esac
			patch -d "$src" -p1 -s --no-backup-if-mismatch -i "$top/patches/$p" ||
				die "patch $p does not apply to $pristine"
		done <"$top/patches/series"
	fi
	(cd "$top" && find rust -type f | while read -r f; do
		mkdir -p "$src/$(dirname "$f")"
		cmp -s "$f" "$src/$f" || cp "$f" "$src/$f"
	done)
	echo "$want" >"$src/.xen-netrs-stamp"
fi

# --- 3. config -------------------------------------------------------------------
case $flavour in
test)  out=$BUILD/kernel; frags=("$top"/kconfig/*.config);;
bench) out=$BUILD/kernel-bench; frags=("$top"/kconfig/*.config "$top"/kconfig/bench/*.config);;
*) die "unknown flavour $flavour (test|bench)";;
esac
mkdir -p "$out"
"${KMAKE[@]}" -C "$src" O="$out" rustavailable >/dev/null 2>"$out/rustavailable.log" || {
	cat "$out/rustavailable.log" >&2; die "Rust is not available to the kernel build (see above): run make deps"; }
cfgsum=$(cat "${frags[@]}" | sha1sum | cut -d' ' -f1)
if [ "$(cat "$out/.frag-stamp" 2>/dev/null)" != "$cfgsum" ] || [ ! -f "$out/.config" ]; then
	log "configuring $out: tinyconfig + ${frags[*]##*/}"
	"${KMAKE[@]}" -C "$src" O="$out" tinyconfig >/dev/null
	(cd "$src" && ./scripts/kconfig/merge_config.sh -m -O "$out" "$out/.config" "${frags[@]}" >"$out/merge.log")
	"${KMAKE[@]}" -C "$src" O="$out" olddefconfig >/dev/null
	echo "$cfgsum" >"$out/.frag-stamp"
fi
# Every requested option must be in the final .config (a missing tool silently drops CONFIG_RUST).
missing=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*) opt=${line%%=*}; grep -qxF "$line" "$out/.config" || { echo "kernel: requested $line, got: $(grep -E "^$opt=|^# $opt is not set" "$out/.config" || echo absent)" >&2; missing=1; };;
	"# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}; grep -qE "^$opt=[ym]" "$out/.config" && { echo "kernel: requested $opt off, got it on" >&2; missing=1; };;
	esac
done < <(cat "${frags[@]}")
[ $missing = 0 ] || die "the final .config lacks options the fragments ask for (listed above)"

# --- 4. build --------------------------------------------------------------------
# One heavy job at a time on two cores: kernel builds and rig boots (of every work tree on
# this machine) share this lock.
exec 9>"${HEAVY_LOCK:-/tmp/xen-netrs-heavy.lock}"
flock 9
log "building bzImage and modules in $out"
"${KMAKE[@]}" -C "$src" O="$out" bzImage modules
rm -rf "$out/mods"
"${KMAKE[@]}" -C "$src" O="$out" INSTALL_MOD_PATH="$out/mods" modules_install >/dev/null
log "done: $out/arch/x86/boot/bzImage ($(cat "$out/include/config/kernel.release"))"
