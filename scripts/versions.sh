# Pinned versions of everything the build and the rig use. Sourced by scripts.
KVER=7.3                 # Debian's linux-source-$KVER (trixie-backports)
XENVER=4.20              # xen-hypervisor-$XENVER-amd64 and xen-utils-$XENVER (trixie)
RUST_VERSION=1.95.0      # rustc the kernel's Rust is built with (rustup)
RUST_MIN=1.85.0          # scripts/min-tool-version.sh of 7.3
BINDGEN_VERSION=0.73.2   # bindgen-cli from the crate registry, --locked
BINDGEN_MIN=0.71.1
LLVM_MAJOR=19            # libclang-19 (bookworm main); 7.3 needs >= 17
LLVM_MIN=17
VNG_VERSION=1.42         # virtme-ng from PyPI
QEMU_MIN=10.0
MMDEBSTRAP_MIN=1.5
