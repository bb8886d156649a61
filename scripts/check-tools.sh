#!/bin/bash
# Check that every tool the build and the rig need is present and recent enough.
# Prints one line per problem and exits 1 if there is any.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/versions.sh"
BUILD=${BUILD:-$top/build}
bad=0
ver_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }
need() { # name have min
	if [ -z "$2" ]; then echo "missing: $1 (need >= $3)"; bad=1
	elif ! ver_ge "$2" "$3"; then echo "too old: $1 $2 (need >= $3)"; bad=1; fi
}
first_ver() { grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -1; }
need rustc "$(rustc --version 2>/dev/null | first_ver)" "$RUST_MIN"
need bindgen "$(bindgen --version 2>/dev/null | first_ver)" "$BINDGEN_MIN"
[ -d "$(rustc --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library/core" ] || { echo "missing: rust-src (rustup component add rust-src)"; bad=1; }
command -v clippy-driver >/dev/null || { echo "missing: clippy (rustup component add clippy)"; bad=1; }
command -v rustfmt >/dev/null || { echo "missing: rustfmt (rustup component add rustfmt)"; bad=1; }
need libclang "$(ls /usr/lib/llvm-$LLVM_MAJOR/lib/ 2>/dev/null | grep -oE '^libclang-[0-9]+\.[0-9]+\.[0-9]+\.so$' | first_ver)" "$LLVM_MIN"
need gcc "$(gcc -dumpfullversion 2>/dev/null)" 8.1
need ccache "$(ccache --version 2>/dev/null | first_ver)" 3.7
need qemu-system-x86_64 "$(qemu-system-x86_64 --version 2>/dev/null | first_ver)" "$QEMU_MIN"
need mmdebstrap "$(mmdebstrap --version 2>/dev/null | first_ver)" "$MMDEBSTRAP_MIN"
need virtme-ng "$("$BUILD/vng-venv/bin/vng" --version 2>/dev/null | first_ver)" "$VNG_VERSION"
for t in flex bison bc cpio jq mkfs.ext4 busybox depmod make python3 zstd xz; do
	command -v $t >/dev/null || { echo "missing: $t"; bad=1; }
done
[ -f /usr/include/libelf.h ] || { echo "missing: libelf-dev"; bad=1; }
[ -f /usr/include/openssl/ssl.h ] || { echo "missing: libssl-dev"; bad=1; }
exit $bad
