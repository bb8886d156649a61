#!/bin/bash
# Install everything the project needs on a Debian 12 (bookworm) host. Idempotent.
#
# - apt sources for trixie, trixie-backports and bookworm-backports, pinned at
#   priority 100 so nothing in the base system is upgraded; the mirror is taken
#   from the machine's own apt configuration (no host name lives in this repo);
# - build, rig and test packages; rust-src; bindgen-cli (pinned); virtme-ng
#   (pinned) in a venv under build/.
# Every tool's version is checked at the end (scripts/check-tools.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/versions.sh"
BUILD=${BUILD:-$top/build}
stamp=$BUILD/.deps-ok
mkdir -p "$BUILD"

log() { echo "deps: $*" >&2; }
die() { echo "deps: ERROR: $*" >&2; exit 1; }

if [ -f "$stamp" ] && "$here/check-tools.sh" >/dev/null 2>&1; then
	exit 0
fi

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

# --- The Debian mirror, read from this machine's apt configuration ----------
mirror() {
	local f uri
	# deb822 stanzas: the URIs of the stanza whose Suites has "bookworm"
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		uri=$(awk 'BEGIN{RS="";FS="\n"}
			/(^|\n)Suites:[^\n]*(^|[ \t])bookworm([ \t]|$|\n)/ {
				for (i=1;i<=NF;i++) if ($i ~ /^URIs:/) { sub(/^URIs:[ \t]*/,"",$i); split($i,a,/[ \t]+/); print a[1]; exit } }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return; }
	done
	# one-line format
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		uri=$(awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1)=="bookworm") { print $i; exit } else break } }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return; }
	done
	return 1
}

MIRROR=$(mirror) || die "no bookworm apt source found in /etc/apt: cannot tell which Debian mirror to use"
echo "$MIRROR" >"$BUILD/.mirror"

src=/etc/apt/sources.list.d/xen-netrs-extra.sources
pin=/etc/apt/preferences.d/xen-netrs-extra
want_src="Types: deb
URIs: $MIRROR
Suites: trixie trixie-backports bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
want_pin="# Added by xen-netrs scripts/deps.sh: never upgrade the base system from these.
Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: *
Pin: release n=trixie-backports
Pin-Priority: 100

Package: *
Pin: release n=bookworm-backports
Pin-Priority: 100"
changed=
if [ "$(cat $src 2>/dev/null)" != "$want_src" ]; then echo "$want_src" | $SUDO tee $src >/dev/null; changed=1; fi
if [ "$(cat $pin 2>/dev/null)" != "$want_pin" ]; then echo "$want_pin" | $SUDO tee $pin >/dev/null; changed=1; fi
lists_age=$(( $(date +%s) - $(stat -c %Y /var/lib/apt/lists/partial 2>/dev/null || echo 0) ))
if [ -n "$changed" ] || [ ! -f "$BUILD/.apt-updated" ] || ! apt-cache show linux-source-$KVER >/dev/null 2>&1; then
	log "apt-get update"
	$SUDO apt-get update -qq
	touch "$BUILD/.apt-updated"
fi

export DEBIAN_FRONTEND=noninteractive
APT="$SUDO apt-get install -y -qq --no-install-recommends"
log "installing build and rig packages"
$APT build-essential flex bison bc libelf-dev libssl-dev cpio kmod rsync xz-utils zstd \
	ccache python3 python3-venv jq e2fsprogs busybox-static file \
	libclang-$LLVM_MAJOR-dev llvm-$LLVM_MAJOR clang-$LLVM_MAJOR lld-$LLVM_MAJOR \
	debian-archive-keyring iproute2 >/dev/null
# QEMU 10 and mmdebstrap 1.5 come from bookworm-backports (bookworm's are too old).
$APT -t bookworm-backports qemu-system-x86 mmdebstrap >/dev/null

# --- Rust ---------------------------------------------------------------------
command -v rustup >/dev/null || die "rustup is missing: install Rust $RUST_VERSION with rustup first"
rustup component list --installed 2>/dev/null | grep -q '^rust-src' || { log "rustup component add rust-src"; rustup component add rust-src; }
# clippy: make clippy (the kernel's Rust lints, CLIPPY=1), part of make check.
rustup component list --installed 2>/dev/null | grep -q '^clippy' || { log "rustup component add clippy"; rustup component add clippy; }
# rustfmt: the static check formats as the kernel's make rustfmtcheck (part of make check).
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || { log "rustup component add rustfmt"; rustup component add rustfmt; }
if ! bindgen --version 2>/dev/null | grep -q " $BINDGEN_VERSION\$"; then
	log "cargo install bindgen-cli $BINDGEN_VERSION (about 3 min)"
	LIBCLANG_PATH=/usr/lib/llvm-$LLVM_MAJOR/lib cargo install --locked bindgen-cli --version "$BINDGEN_VERSION" >/dev/null
fi

# --- virtme-ng in a venv under build/ -----------------------------------------------
venv=$BUILD/vng-venv
if ! "$venv/bin/vng" --version 2>/dev/null | grep -q "$VNG_VERSION"; then
	log "virtme-ng $VNG_VERSION into $venv"
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q "virtme-ng==$VNG_VERSION"
fi

"$here/check-tools.sh"
touch "$stamp"
