#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Every test of the project (make check; .ci/run calls exactly `make check`).
#
# 1. virtme-ng, no Xen: the KUnit suites (kernel crate doctests and the project's suites) and
#    loading/unloading both Rust modules outside Xen; make rustdoc without warnings; the static
#    checks (no unsafe in the drivers; the kernel's clippy lints without warnings, make clippy).
# 2. The Xen-in-QEMU rig: the scenarios for each driver pairing that carries traffic today.
# CHECK_REFERENCE=1 adds the runs that test only the environment and the C drivers (the rig's
# FPU-state self-test, basic C/C, the hostile backend against the C netfront).
# Every step writes build/results/<step>.json; the summary below counts their checks.
#
# Two rig lanes: after the builds, the rig scenarios run as two lanes of boots at once. QEMU's
# TCG with thread=single keeps a rig on one host core, and a rig waits on its guests' timers
# much of the time: two at once took 1.17 and 1.22 times as long each as alone (features rs/c
# and c/rs, both passing), about 1.4 times the work per hour on two cores. The checks with a
# time in them leave room for that (the hostile cases wait 3 to 15 s for what takes
# milliseconds; the RX-stall flood is judged against its own volume). Kernel, Xen and image
# builds never overlap a rig boot. CHECK_LANES=1 runs everything one at a time.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
results=build/results
mkdir -p "$results"
start=$(date +%s)
stepfile=build/check-steps.txt
: > "$stepfile"
step() { # name cmd...
	local name=$1; shift
	echo "=== $name: $*"
	local t0=$(date +%s)
	"$@"
	local rc=$?
	local secs=$(( $(date +%s) - t0 ))
	echo "=== $name: rc=$rc ($secs s)"
	echo "$name:$rc:$secs" >> "$stepfile"
}

rm -f "$results"/*.json "$results"/*.txt
# The rig's images (cached; on a fresh machine two mmdebstrap root filesystems, mostly downloads
# and unpacking, and the patched Xen 4.17 of scripts/xen.sh with its bookworm image) build beside
# the checks that boot no rig; the lanes start once both are there. (Measured: the same builds
# beside the lanes at nice 19 and idle I/O priority slowed the rigs two to three times while
# they ran, and the check as a whole by more than they took here.)
images_all() {
	step images bash selftests/rig/images.sh
	step images-4.17 bash selftests/rig/images.sh 4.17
}
imageslog=build/check-images.log
images_all > "$imageslog" 2>&1 &
imagespid=$!
step kunit python3 selftests/vng/kunit.py
step rustdoc python3 selftests/rustdoc-check.py
step static python3 selftests/static-check.py
# The kselftests both lanes ship to their guests (cached; run.py would build them on first use).
step ksft-build bash selftests/ksft/build.sh
wait "$imagespid"
echo "=== images (built beside the steps above)"
cat "$imageslog"
ref=${CHECK_REFERENCE:-0}
# The rig's own FPU-state self-test (selftests/rig/README.md: the TCG XSAVE bug): FPU/AVX
# register state survives vCPU switches under the QEMU/Xen flags the rig uses. It tests the
# environment, not our code, and every scenario's crash scan would see the corruption it looks
# for: CI time keeps it to CHECK_REFERENCE=1.
[ "$ref" = 1 ] && step fpstress python3 selftests/rig/run.py fpstress
# PV MMU patches (patches/01xx): the basic runs check the default census (no global kernel
# entry, user entries global, superpages refused cleanly by stock Xen, direct map all 4k); this
# boot checks that the kernel parameters turn both features off (dom0), and that the domU asking
# for the 2 MiB direct map too (xen_superpages=all) falls back cleanly on stock Xen (no 2 MiB entry).
pvmmu_off() {
	local off="xen_superpages=off xen_global_pages=off"
	step pvmmu-off python3 selftests/rig/run.py boot --tag pvmmu-off --dom0-append "$off" \
		--domu-append "xen_superpages=all xen_global_pages=off"
}
# A hostile backend (selftests/hostile) against the frontend: malformed responses, grants kept,
# event storms; the frontend must mark itself broken, never crash, and reconnect afterwards.
# The C netfront is the reference the cases were validated on (selftests/hostile/README.md);
# xen-netfront-rs runs them once selftests/rust-ready lists it. The C drivers alone (hostile-back
# with the C netfront, basic C/C) test nothing of ours: CI time keeps them to CHECK_REFERENCE=1
# (and to a tree whose Rust drivers are not ready yet).
ready=$(sed 's/#.*//' selftests/rust-ready 2>/dev/null | tr -s '\n\t' '  ')
fronts=c
case " $ready " in *" front "*) fronts=rs; [ "$ref" = 1 ] && fronts="c rs";; esac
hostile_back() {
	local f
	for f in $fronts; do
		step "hostile-back-$f" python3 selftests/rig/run.py hostile-back --front "$f" --back c
	done
}
# Driver pairings (front/back): C against C always; each Rust driver joins, against the C peer
# and against the other Rust driver, once selftests/rust-ready says it carries traffic.
pairs="c/c"
case " $ready " in *" front "*|*" back "*) [ "$ref" = 1 ] || pairs="";; esac
case " $ready " in *" front "*) pairs="$pairs rs/c";; esac
case " $ready " in *" back "*) pairs="$pairs c/rs";; esac
case " $ready " in *" front "*) case " $ready " in *" back "*) pairs="$pairs rs/rs";; esac;; esac
pairs=${pairs# }
last=${CHECK_PAIRS:-$pairs}; last=${last##* }
# The hostile frontend (selftests/hostile, run in the domU) against the Rust backend: every case,
# one fresh vif each (malformed requests, slot counts, extras, XSA-270 ctrl-ring bounds, xenstore
# garbage, event and watch storms, grants not owned, an RX stall under a flood; and frontends
# without SG/GSO/checksum offload or without rx-notify, which must still be served); dom0 disables
# only that vif and keeps serving the domU's healthy vif and a second domU; then the guest-TX
# data-path cases again with the backend reloaded in map mode (tx_mode=1). One step in lane 1:
# each case in one netpeer.py process in the domU, the toolstack's attach/detach beside the
# cases (guest/scen_hostile.py; about 11 s a case, 25 before, when the xenstore cases had to run
# in lane 2 for the lanes to end together). run.py shortens the backend's RX stall and drain
# timeouts for this scenario (the rx-stall case, XSA-392).
hostile_front() {
	case " $ready " in *" back "*) step hostile-front python3 selftests/rig/run.py hostile-front \
		--front c --back rs;; esac
}
# The Rust backend's user-visible features (guest/scen_back.py, about 4 min): ethtool -S and
# module parameters with the C names, rate=, 2 and 4 queues, guest to guest with a second domU.
back_features() {
	case " $ready " in *" back "*) step back-features python3 selftests/rig/run.py back-features --front c --back rs;; esac
}

pair_steps() { # front/back
	local pair=$1
	# The Rust backend's guest TX by grant map (tx_mode=1, issue 5: the C driver's zero-copy
	# mode) gets its basic run with the C frontend: it requires the zero-copy counters to move
	# (back-tx-zerocopy) and reloads the backend with buffers completed. The default copy mode
	# carries every other run with the Rust backend (basic rs/rs, ksft, features, hostile-front).
	if [ "$pair" = c/rs ]; then
		step "basic-$pair-map" python3 selftests/rig/run.py basic --front c --back rs --back-append tx_mode=1 --tag map
	else
		step "basic-$pair" python3 selftests/rig/run.py basic --front "${pair%/*}" --back "${pair#*/}"
	fi
	# The 7.3 driver kselftests (selftests/ksft) with a Rust driver as the device under test and
	# the C driver as its peer: in the domU (eth0) for the frontend, in dom0 (vif1.0) for the
	# backend, against the C results in selftests/ksft/expected-c.txt (both phases of every
	# pairing pass: `run.py ksft --front F --back B`, about 3.5 min each; CI time keeps it to these,
	# and leaves out the files no sub-test of which passes with C: selftests/ksft/README.md).
	case $pair in
	rs/c) step "ksft-$pair-domu" python3 selftests/rig/run.py ksft --front rs --back c --ksft-phases domu --tag domu ;;
	c/rs) step "ksft-$pair-dom0" python3 selftests/rig/run.py ksft --front c --back rs --ksft-phases dom0 --tag dom0 ;;
	esac
	# What a user of the frontend tries (guest/scen_features.py): v4/v6, big pings, MTU 9000,
	# offload toggles, native XDP (drop, XDP_TX, redirect), max_queues, trusted=0, reload under traffic.
	# (c/c validated the scenario, 34/34; CI time keeps it to the pairings with a Rust driver)
	[ "$pair" = c/c ] || step "features-$pair" python3 selftests/rig/run.py features --front "${pair%/*}" --back "${pair#*/}"
}

# Lane 1: the hostile frontend, then the first pairing (rs/c), with xl save / xl restore on Xen
# 4.20 unless it is also the last pairing (which runs it on 4.17 below): the frontend against the
# C backend across a restore; the backend's features.
lane1() {
	hostile_front
	local pair
	for pair in ${CHECK_PAIRS:-$pairs}; do
		pair_steps "$pair"
		[ "$pair" = "$last" ] || step "save-restore-$pair" python3 selftests/rig/run.py save-restore \
			--front "${pair%/*}" --back "${pair#*/}"
		break
	done
	back_features
}

# Lane 2: the PV MMU switches, the hostile backend, the other pairings (c/rs, rs/rs) and the
# PV-superpage runs.
lane2() {
	pvmmu_off
	hostile_back
	local k=0 pair
	for pair in ${CHECK_PAIRS:-$pairs}; do
		[ $((k++)) = 0 ] || pair_steps "$pair"
	done
	# PV superpages (issue 6): our patched Xen 4.17 with pv-superpages: dom0 and domU map kernel
	# text/rodata with 2 MiB pages (census, revert and split checks required), the domU its direct
	# map too (its default, patches/0104: 2 MiB entries present before and after the traffic;
	# modify_ldt, CPA and a module load split chunks through the hook; the balloon), no global
	# kernel entry, and the network scenario passes on it with the last pairing above (Rust
	# against Rust once both are ready).
	step "pvmmu-4.17-basic-$last" python3 selftests/rig/run.py basic --xen 4.17 --xen-append pv-superpages --tag pvsp \
		--front "${last%/*}" --back "${last#*/}"
	# xl save / xl restore of the domU (guest/scen_features.py run_save_restore): the frontend
	# reconnects after restore and carries traffic; with the last pairing (both Rust drivers once
	# ready). On the patched 4.17 with pv-superpages, so that the save also demotes the domU's
	# 2 MiB direct map (every chunk split before the save, none after the restore:
	# pvmmu.save_restore_*); the frontend's suspend/resume is the same on 4.20 (`run.py
	# save-restore` without --xen runs it there).
	step "save-restore-4.17-$last" python3 selftests/rig/run.py save-restore --xen 4.17 --xen-append pv-superpages \
		--tag pvsp --front "${last%/*}" --back "${last#*/}"
}

if [ "${CHECK_LANES:-2}" = 1 ]; then
	lane1
	lane2
else
	# Lane 2 under a heavy-job lock of its own (run.py waits on $HEAVY_LOCK), its output after
	# lane 1's.
	lane2log=build/check-lane2.log
	( export HEAVY_LOCK=${HEAVY_LOCK:-/tmp/xen-netrs-heavy.lock}.lane2; lane2 ) > "$lane2log" 2>&1 &
	lane2pid=$!
	lane1
	wait "$lane2pid"
	echo "=== lane 2 (run beside the steps above)"
	cat "$lane2log"
fi

echo
echo "=== summary ($(( $(date +%s) - start )) s)"
python3 - "$results" $(cat "$stepfile") <<'PY'
import json, os, sys
res, steps = sys.argv[1], sys.argv[2:]
npass = nfail = 0
for f in sorted(os.listdir(res)):
    if not f.endswith(".json") or f.startswith("bench"):
        continue
    d = json.load(open(os.path.join(res, f)))
    name = d.get("name") or f[:-len(".json")]
    for c in d.get("checks", []):
        if c.get("passed", c.get("pass")):
            npass += 1
        else:
            nfail += 1
            print(f"FAILED: {name}: {c['name']}: {c.get('detail', '')}")
times = []
for s in steps:
    name, rc, secs = s.rsplit(":", 2)
    times.append(f"{name} {secs}")
    if rc != "0":
        # A step that failed without writing a failed check still fails the run.
        nfail += 1
        print(f"FAILED: step {name} exited {rc}")
# in the last lines, which are what a CI log's tail shows
print("step seconds (in order of ending; the lanes overlap): " + ", ".join(times))
print(f"{npass} passed, {nfail} failed")
sys.exit(1 if nfail or not npass else 0)
PY
