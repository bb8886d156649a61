# SPDX-License-Identifier: GPL-2.0
#
# xen-netrs: Rust Xen PV network drivers (xen-netfront-rs, xen-netback-rs).
#
#   make run      install what is missing, build kernel + modules + VM images, boot Xen in QEMU
#                 with dom0 (backend) and a PV domU (frontend), show traffic flowing
#   make check    every test (what .ci/run runs)
#   make bench    driver pairs compared, interleaved, medians and ratios; then PV MMU patches on/off
#
# Variables: KSRC=<linux 7.3 tree> (default: Debian's linux-source-7.3 under build/),
# FRONT=c|rs BACK=c|rs (drivers for make run), RUNS=N (make bench), CPU=<qemu -cpu model>.
# Kbuild (not this file) describes the modules to the kernel build system.

TOP     := $(CURDIR)
BUILD   := $(TOP)/build
KTREE   := $(BUILD)/src/linux
KOUT    := $(BUILD)/kernel
MODOUT  := $(BUILD)/modules
export KSRC
RS_READY := $(shell sed 's/\#.*//' selftests/rust-ready 2>/dev/null)
FRONT   ?= $(if $(filter front,$(RS_READY)),rs,c)
BACK    ?= $(if $(filter back,$(RS_READY)),rs,c)
KMAKE    = $(MAKE) -C $(KTREE) O=$(KOUT) CC="ccache gcc" LIBCLANG_PATH=/usr/lib/llvm-19/lib \
	   CCACHE_DIR=$${CCACHE_DIR:-$$HOME/.cache/xen-netrs-ccache}

.PHONY: all deps kernel kernel-bench modules images run check bench rustdoc clippy clean distclean help

all: modules

help:
	@sed -n '3,13p' Makefile

deps:
	@bash scripts/deps.sh

kernel: deps
	@bash scripts/kernel.sh test

kernel-bench: deps
	@bash scripts/kernel.sh bench

modules: kernel
	@mkdir -p $(MODOUT)
	+@$(KMAKE) -s M=$(TOP) MO=$(MODOUT) modules
	@ls $(MODOUT)/xen-netfront-rs/xen-netfront-rs.ko $(MODOUT)/xen-netback-rs/xen-netback-rs.ko >/dev/null

images: modules
	@bash selftests/rig/images.sh

run: images
	@$(if $(RS_READY),,echo "NOTE: the Rust drivers do not carry traffic yet; this runs the stock C drivers (xen-netfront, xen-netback).")
	@python3 selftests/rig/run.py run --front $(FRONT) --back $(BACK) $(if $(CPU),--cpu $(CPU))

check: modules
	@bash selftests/check.sh

# Benchmarks boot the -O2 kernel; the Rust modules are rebuilt against it (a Rust module links
# against the exact kernel crate it was compiled with).
bench: images kernel-bench
	@mkdir -p $(BUILD)/modules-bench
	+@$(MAKE) -C $(KTREE) O=$(BUILD)/kernel-bench CC="ccache gcc" LIBCLANG_PATH=/usr/lib/llvm-19/lib \
		-s M=$(TOP) MO=$(BUILD)/modules-bench modules
	@python3 selftests/rig/bench.py --kernel-dir $(BUILD)/kernel-bench $(if $(RUNS),-n $(RUNS))
	@bash selftests/rig/images.sh 4.17
	@python3 selftests/rig/bench.py --pvmmu --plain --kernel-dir $(BUILD)/kernel-bench -n $(or $(RUNS),3)

rustdoc: kernel
	+@$(KMAKE) -s rustdoc

# The kernel's Rust lints (make CLIPPY=1) over the kernel crate and both drivers, in a copy of
# the kernel's output tree; fails on any warning.
clippy: kernel
	@bash scripts/clippy.sh

clean:
	rm -rf $(MODOUT) $(BUILD)/modules-clippy $(BUILD)/runs $(BUILD)/results

distclean:
	rm -rf $(BUILD)
