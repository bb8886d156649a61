#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The kernel's own Rust lints over the project's Rust code (make clippy).
#
#   scripts/clippy.sh [LOG]
#
# Builds the kernel crate (with the kernel::xen and kernel::net abstractions of rust/) and both
# drivers with `make CLIPPY=1`, i.e. with clippy-driver and the lints the kernel's Makefile
# enables (clippy::undocumented_unsafe_blocks, unnecessary_safety_comment, ptr_as_ptr, ...).
# The build runs in a copy of the kernel's output tree, build/kernel-clippy (refreshed from
# build/kernel, so every run lints everything again and build/kernel is never touched), and the
# modules go to build/modules-clippy. The whole output goes to LOG (default
# build/clippy.log); the warnings are listed at the end.
#
# Exit status: 0 without warnings, 1 with warnings, 2 if the build failed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/versions.sh"
BUILD=${BUILD:-$top/build}
log=${1:-$BUILD/clippy.log}
src=$BUILD/src/linux
kout=$BUILD/kernel
cout=$BUILD/kernel-clippy
mout=$BUILD/modules-clippy
die() { echo "clippy: ERROR: $*" >&2; exit 2; }

command -v clippy-driver >/dev/null || die "clippy-driver is missing (rustup component add clippy; make deps does it)"
[ -f "$kout/.config" ] && [ -f "$kout/vmlinux" ] || die "$kout is not a built kernel: run make kernel first"

export LIBCLANG_PATH=/usr/lib/llvm-$LLVM_MAJOR/lib
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/xen-netrs-ccache}
KMAKE=(make -s -j"${JOBS:-$(nproc)}" CC="ccache gcc" -C "$src" O="$cout" CLIPPY=1)

# A kernel build: one heavy job at a time on this machine (see scripts/kernel.sh).
exec 9>"${HEAVY_LOCK:-/tmp/xen-netrs-heavy.lock}"
flock 9

mkdir -p "$cout"
# The copy's Rust objects come back to those of build/kernel (built by rustc), so CLIPPY=1
# (another command line) rebuilds, and lints, all of them.
rsync -a --delete "$kout"/ "$cout"/
rm -rf "$mout" && mkdir -p "$mout"
{
	echo "### make CLIPPY=1 rust/ (kernel crate)"
	"${KMAKE[@]}" rust/ && {
		echo "### make CLIPPY=1 M=$top modules (drivers)"
		"${KMAKE[@]}" M="$top" MO="$mout" modules
	}
} >"$log" 2>&1
rc=$?

# A warning is "warning: <what>" followed by its location " --> file:line:col"; the summary lines
# ("warning: N warnings emitted") have no location.
python3 - "$log" "$rc" <<'PY'
import re, sys
log, rc = sys.argv[1], int(sys.argv[2])
text = open(log, errors="replace").read()
found = re.findall(r"^(warning|error)(?:\[\S+\])?: (.*)\n\s*--> (\S+)", text, flags=re.M)
warnings = [(msg, loc) for kind, msg, loc in found if kind == "warning"]
errors = [(msg, loc) for kind, msg, loc in found if kind == "error"]
for kind, items in (("warning", warnings), ("error", errors)):
    for msg, loc in items:
        print(f"clippy: {kind}: {loc}: {msg}")
print(f"clippy: {len(warnings)} warnings, {len(errors)} errors, build rc={rc} (log {log})")
sys.exit(2 if rc or errors else 1 if warnings else 0)
PY
