#!/usr/bin/python3
"""Boot Xen 4.20 in QEMU (TCG) with a dom0 and a PV domU and run one rig scenario.

  selftests/rig/run.py SCENARIO [--front c|rs] [--back c|rs] [--tag T] [--cpu MODEL] [--icount]

Scenarios: basic (make check), run (make run), fpstress (FPU/AVX register-state stress, rig
reliability), boot (dom0 + domU up, agent answers; nothing else).
Needs: build/rig (selftests/rig/images.sh), the kernel in build/kernel (scripts/kernel.sh) and,
for rs, build/modules/xen-net{front,back}-rs/*.ko.
Writes build/runs/<scenario>-<front>-<back>[-T]-<timestamp>/ (console log, domU log, dom0 logs,
QEMU command) and build/results/<scenario>-<front>-<back>[-T].json + .txt; appends one line to
build/results/history.jsonl. Exit code 0 iff every check passed.
Python 3 standard library only.
"""
import argparse, datetime, fcntl, json, os, re, shutil, signal, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "guest"))
import pvmmu   # noqa: E402 (guest/pvmmu.py: which kernel command line asks for which PV MMU stage)
sys.path.insert(0, os.path.join(HERE, "..", "hostile"))
import netpeer  # noqa: E402 (the hostile cases --cases selects)
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("BUILD", os.path.join(TOP, "build"))
RIG = os.path.join(BUILD, "rig")
XENVER = "4.20"

# Rig reliability, see selftests/rig/README.md: QEMU's TCG does not raise #NM for XSAVE/XRSTOR/
# XSAVEOPT when CR0.TS=1, and Xen (on the AMD-vendor CPU QEMU shows) switches vCPU FPU state lazily
# (CR0.TS + #NM), so with XSAVE exposed PV guests save/restore another vCPU's registers: user
# processes crash. Either fix alone avoids it (tools/fpstress.c shows the corruption in one run):
#  - no XSAVE in the guest CPU (the kernels use FXSAVE/FXRSTOR, which TCG does trap on TS);
#  - Xen with fully eager FPU switching (never relies on #NM).
# The rig uses both by default; --lazy-fpu drops the Xen option (to reproduce with --cpu max).
DEFAULT_CPU = "max,-xsave"
XEN_EAGER_FPU = "spec-ctrl=eager-fpu"
ICOUNT_CPU = "max,-xsave,-x2apic"   # x2APIC + icount: QEMU aborts in Xen's timer check

COMMON_REQUIRED = ["xenstored", "toolstack", "backend-load", "domu-create", "agent-connect", "domu-boot", "domu-agent"]
NET_REQUIRED = ["frontend-load", "link-up", "ping-dom0-to-domu", "ping-domu-to-dom0", "iperf-tx", "iperf-rx",
                "offloads-domu", "offloads-dom0"]
# the PV MMU census (issue 6, guest/pvmmu.py) runs in boot, run and basic
PVMMU_REQUIRED = ["pvmmu-xen-info", "pvmmu-dom0-census", "pvmmu-domu-census",
                  "pvmmu-dom0-no-kernel-global", "pvmmu-domu-no-kernel-global"]
FEATURES_REQUIRED = [
    "ft-ping-v4-dom0-to-domu", "ft-ping-v4-domu-to-dom0", "ft-ping-v6-dom0-to-domu", "ft-ping-v6-domu-to-dom0",
    "ft-iperf-v6-tx", "ft-ping-65000-dom0-to-domu", "ft-ping-65000-domu-to-dom0", "ft-mtu-9000",
    "ft-ping-9000-dom0-to-domu", "ft-ping-9000-domu-to-dom0", "ft-offloads-off", "ft-traffic-offloads-off",
    "ft-offloads-on", "ft-traffic-offloads-on", "ft-xdp-mtu-9000-refused", "ft-xdp-attach", "ft-xdp-drop",
    "ft-xdp-detach", "ft-xdp-ping-after-detach", "ft-rxbuf-sysfs", "ft-max-queues-1", "ft-traffic-max-queues-1", "ft-max-queues-4",
    "ft-traffic-max-queues-4", "ft-trusted-0-reload", "ft-trusted-0", "ft-trusted-key-0-reload", "ft-trusted-key-0",
    "ft-netconsole", "ft-traffic-after-netconsole",
    "ft-reload-under-traffic", "ft-traffic-after-reload", "ft-final-ping-dom0-to-domu"]
# Backend module parameters for the hostile-frontend scenario (rx-stall: selftests/hostile/README.md).
HOSTILE_FRONT_TIMEOUTS = (("rx_stall_timeout_msecs", 4000), ("rx_drain_timeout_msecs", 2000))
SCENARIOS = {
    "boot": {"timeout": 600, "required": COMMON_REQUIRED + PVMMU_REQUIRED},
    "run": {"timeout": 900, "required": COMMON_REQUIRED + PVMMU_REQUIRED + NET_REQUIRED},
    "basic": {"timeout": 1200, "required": COMMON_REQUIRED + PVMMU_REQUIRED + NET_REQUIRED + [
        "front-unload", "front-reload", "front-reconnect", "ping-after-front-reload",
        "back-reload", "back-reattach", "ping-after-back-reload",
        "final-ping-dom0-to-domu", "final-ping-domu-to-dom0"]},
    # what a user of the frontend tries (guest/scen_features.py), for any driver pairing
    "features": {"timeout": 1500, "required": COMMON_REQUIRED + ["frontend-load", "link-up"] + FEATURES_REQUIRED},
    "save-restore": {"timeout": 1500, "required": COMMON_REQUIRED + ["frontend-load", "link-up", "sr-ping-before", "sr-save",
                                                                       "sr-restore", "sr-agent", "sr-reconnect",
                                                                       "sr-traffic-after-restore"]},
    "fpstress": {"timeout": 900, "required": COMMON_REQUIRED + ["fpstress-dom0", "fpstress-domu", "fpstress-dom0-concurrent"]},
    # hostile peers (selftests/hostile/netpeer.py, guest/scen_hostile.py). "expected": log lines that
    # the misbehaving peer provokes on purpose (not crashes); listed as known issues, not counted.
    "hostile-back": {"timeout": 2400, "required": COMMON_REQUIRED + ["frontend-load", "link-up", "hostile-back-final-ping"],
                     "expected": [(r"WARNING: g\.e\. 0x[0-9a-f]+ still in use!",
                                   "gnttab_end_foreign_access_ref() warns when the hostile backend keeps a grant mapped (XSA-396 cases)")]},
    # the 7.3 kselftests (selftests/ksft, guest/scen_ksft.py): one check per test file and side
    "ksft": {"timeout": 1800, "required": COMMON_REQUIRED + ["frontend-load", "link-up", "ksft-setup", "ksft-ssh", "ksft-summary"]},
    # backend features (guest/scen_back.py): ethtool -S and module parameters with the C names, the
    # rate limit, 2 and 4 queues, guest to guest through the bridge (a second domU on its own overlay)
    "back-features": {"timeout": 1500, "domu2": True, "required": COMMON_REQUIRED + ["frontend-load", "link-up",
                      "back-ethtool-stats", "back-module-params", "back-rate-limit", "back-rate-removed",
                      "back-mq2-negotiated", "back-mq2-tx", "back-mq2-rx", "back-mq4-negotiated", "back-mq4-tx", "back-mq4-rx",
                      "back-uevents", "back-g2g-ping", "back-g2g-iperf", "back-netconsole", "back-final-ping"]},
    "hostile-front": {"timeout": 2400, "domu2": True, "required": COMMON_REQUIRED + ["frontend-load", "link-up", "hostile-front-setup",
                                                                     "hostile-front-domu2", "hostile-front-final-ping"]},
}

# Lines that mean something crashed. Scanned in every log of the run.
# ("Call Trace" is not listed: every trace follows one of these lines.)
CRASH_PATTERNS = [
    r"\bOops\b", r"\bBUG:", r"\bWARNING:", r"Kernel panic", r"segfault", r"general protection",
    r"corrupted", r"double free", r"RIG-CRASH", r"Attempted to kill init",
    r"\btraps: ", r"invalid opcode", r"soft lockup", r"blocked for more than", r"\(XEN\).*(FATAL|Panic)",
    r"Unable to handle", r"stack-protector", r"RIG-MARK FATAL",
]
# Known bugs outside this project that match a pattern above: (regex, applies to front/back, reason).
# They are listed in the result (known_issues) but do not fail no-crash unless --strict.
KNOWN_ISSUES = [
    (r"WARNING: include/linux/mm\.h:\d+ at get_page\+.*\[xen_netfront\]", ("c", None),
     "C xen-netfront (7.3): xennet_release_tx_bufs() calls get_page() on a slab page (kmalloc'ed skb head) "
     "when torn down with TX still granted (xl network-detach); the rig quiesces the link first"),
]


def log(msg):
    print("run: " + msg, flush=True)


def die(msg):
    print("run: ERROR: " + msg, file=sys.stderr, flush=True)
    sys.exit(2)


def krel_of(kdir):
    p = os.path.join(kdir, "include/config/kernel.release")
    if not os.path.exists(p):
        die("no %s: build the kernel first (scripts/kernel.sh)" % p)
    return open(p).read().strip()


def modinfo_name(ko):
    r = subprocess.run(["modinfo", "-F", "name", ko], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return r.stdout.decode().strip() if r.returncode == 0 else None


def tool_bin(name):
    """A static helper binary from tools/<name>.c for the guests, built on the host (cached)."""
    src = os.path.join(HERE, "tools", name + ".c")
    out = os.path.join(RIG, name)
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        tmp = "%s.%d.tmp" % (out, os.getpid())   # two rig lanes may build it at once
        r = subprocess.run(["gcc", "-static", "-O2", "-o", tmp, src])
        if r.returncode:
            die("cannot build %s" % src)
        os.rename(tmp, out)
    return out


def bpf_obj(name):
    """A BPF object from tools/<name>.c for the guests (clang -target bpf, cached)."""
    src = os.path.join(HERE, "tools", name + ".c")
    out = os.path.join(RIG, name + ".o")
    deps = [src, os.path.join(HERE, "tools", "xdp_rig.h")]   # what the programs include
    if not os.path.exists(out) or os.path.getmtime(out) < max(os.path.getmtime(p) for p in deps):
        clang = shutil.which("clang-19") or shutil.which("clang") or "clang-19"
        tmp = "%s.%d.tmp" % (out, os.getpid())
        r = subprocess.run([clang, "-target", "bpf", "-O2", "-c", src, "-o", tmp])
        if r.returncode:
            die("cannot build %s (clang-19 comes with scripts/deps.sh)" % src)
        os.rename(tmp, out)
    return out


def make_rig_disk(run_dir, conf, kdir, krel, kos):
    """The per-run rig disk: scripts, modules of the current build (+ Rust .ko), the domU kernel."""
    st = os.path.join(run_dir, "rigdisk")
    os.makedirs(st)
    for f in ("init-dom0", "init-domu", "dom0.py", "agent.py", "iperfsum.py", "txtstamp.py", "flows.py", "block-rig", "vif-rig", "scen_hostile.py", "scen_back.py", "scen_features.py", "pvmmu.py"):
        shutil.copy(os.path.join(HERE, "guest", f), st)
    if conf["scenario"] == "ksft":   # the kselftests, built on the host (cached), and the C reference
        shutil.copy(os.path.join(HERE, "guest", "scen_ksft.py"), st)
        if subprocess.run(["bash", os.path.join(TOP, "selftests", "ksft", "build.sh")]).returncode:
            die("selftests/ksft/build.sh failed")
        shutil.copytree(os.path.join(BUILD, "ksft", "install"), os.path.join(st, "ksft"), symlinks=True)
        shutil.copy(os.path.join(TOP, "selftests", "ksft", "expected-c.txt"), os.path.join(st, "ksft-expected-c.txt"))
    for f in ("netpeer.py", "xenproto.py"):   # hostile peers, for dom0 and the domU
        shutil.copy(os.path.join(HERE, "..", "hostile", f), st)
    for tool in ("fpstress", "tlbbench", "ldttest", "rawflood", "ksample"):
        shutil.copy(tool_bin(tool), os.path.join(st, tool))
    for prog in ("xdp_drop.bpf", "xdp_reflect.bpf", "xdp_redirect.bpf"):
        shutil.copy(bpf_obj(prog), os.path.join(st, prog + ".o"))
    shutil.copy(os.path.join(kdir, "arch/x86/boot/bzImage"), os.path.join(st, "bzImage"))
    mods_src = os.path.join(kdir, "mods/lib/modules", krel)
    if not os.path.isdir(mods_src):
        die("no installed modules in %s (scripts/kernel.sh installs them)" % mods_src)
    tmp = os.path.join(run_dir, "depmod")
    mdir = os.path.join(tmp, "lib/modules", krel)
    shutil.copytree(mods_src, mdir, symlinks=True, ignore=shutil.ignore_patterns("build", "source"))
    if kos:
        os.makedirs(os.path.join(mdir, "extra"), exist_ok=True)
        for ko in kos:
            shutil.copy(ko, os.path.join(mdir, "extra"))
    r = subprocess.run(["depmod", "-b", tmp, krel], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode:
        die("depmod failed: %s" % r.stdout.decode())
    os.makedirs(os.path.join(st, "modules"))
    os.rename(mdir, os.path.join(st, "modules", krel))
    shutil.rmtree(tmp)
    json.dump(conf, open(os.path.join(st, "rig.json"), "w"), indent=1)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(st) for f in fs)
    img = os.path.join(run_dir, "rig.img")
    mb = size * 3 // 2 // 2**20 + 32
    r = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "rig", "-d", st, img, "%dM" % mb],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode:
        die("mkfs.ext4 rig.img: %s" % r.stdout.decode())
    return img


def qemu_img(*args):
    r = subprocess.run(["qemu-img"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode:
        die("qemu-img %s: %s" % (" ".join(args), r.stdout.decode()))


def take_lock(timeout):
    """The heavy-job lock (kernel builds, rig boots), blocking: a polling waiter would starve behind
    blocked flock(1) waiters."""
    path = os.environ.get("HEAVY_LOCK", "/tmp/xen-netrs-heavy.lock")  # shared with scripts/kernel.sh
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        log("waiting for %s (another build or rig run holds it)" % path)

    def alarm(*_):
        raise TimeoutError()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(timeout)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except TimeoutError:
        die("could not take %s within %ds" % (path, timeout))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    log("got %s" % path)
    return fd


def scan_crashes(files, front, back):
    """Returns (crash lines, known-issue lines)."""
    hits, known = [], []
    pats = [re.compile(p) for p in CRASH_PATTERNS]
    kn = [(re.compile(p), fb, why) for p, fb, why in KNOWN_ISSUES
          if (fb[0] in (None, front)) and (fb[1] in (None, back))]
    for f in files:
        try:
            lines = open(f, errors="replace").read().splitlines()
        except OSError:
            continue
        for i, line in enumerate(lines):
            if any(p.search(line) for p in pats):
                where = "%s:%d: %s" % (os.path.relpath(f, BUILD), i + 1, line.strip()[:240])
                k = [why for p, _, why in kn if p.search(line)]
                (known if k else hits).append(where + (" [known: %s]" % k[0][:80] if k else ""))
    return hits, known


def table(res):
    w = max([len(c["name"]) for c in res["checks"]] + [len(m["name"]) for m in res["metrics"]] + [20])
    out = ["%s  front=%s back=%s  cpu=%s%s  %s  (%s)" % (res["scenario"], res["front"], res["back"], res["cpu"],
                                                       " icount" if res.get("icount") else "",
                                                       "PASS" if res["pass"] else "FAIL", res["run_dir"])]
    out.append("  drivers: frontend %s, backend %s" % (res["drivers"]["front"], res["drivers"]["back"]))
    out.append("  %-*s  %s" % (w, "check", "result  detail"))
    for c in res["checks"]:
        out.append("  %-*s  %-6s  %s" % (w, c["name"], "ok" if c["pass"] else "FAIL", c["detail"].replace("\n", " ")[:150]))
    if res["metrics"]:
        out.append("  %-*s  %s" % (w, "metric", "value"))
        for m in res["metrics"]:
            out.append("  %-*s  %s %s" % (w, m["name"], m["value"], m["unit"]))
    return "\n".join(out)


def summary_table(res):
    """The short table of `make run`."""
    m = {x["name"]: x["value"] for x in res["metrics"]}
    def f(k, fmt="%s"):
        return fmt % m[k] if k in m else "-"
    offl = ["scatter-gather", "tcp-segmentation-offload", "generic-segmentation-offload", "tx-checksumming",
            "rx-checksumming", "generic-receive-offload"]
    short = {"scatter-gather": "sg", "tcp-segmentation-offload": "tso", "generic-segmentation-offload": "gso",
             "tx-checksumming": "tx-csum", "rx-checksumming": "rx-csum", "generic-receive-offload": "gro"}
    def side(s):
        return " ".join("%s=%s" % (short[k], {1: "on", 0: "off"}.get(m.get("offload-%s-%s" % (s, k)), "?")) for k in offl)
    rows = [
        ("drivers", "frontend (domU) %s, backend (dom0) %s" % (res["drivers"]["front"], res["drivers"]["back"])),
        ("ping RTT dom0->domU", f("ping-dom0-to-domu-rtt", "%.2f ms")),
        ("ping RTT domU->dom0", f("ping-domu-to-dom0-rtt", "%.2f ms")),
        ("TCP TX domU->dom0", f("iperf-tx-mbps", "%.1f Mbit/s")),
        ("TCP RX dom0->domU", f("iperf-rx-mbps", "%.1f Mbit/s")),
        ("offloads domU eth0", side("domu")),
        ("offloads dom0 vif", side("dom0")),
        ("result", "%s (%d/%d checks passed)%s" % ("PASS" if res["pass"] else "FAIL",
                                                   sum(c["pass"] for c in res["checks"]), len(res["checks"]),
                                                   "" if res["pass"] else ": " + ", ".join(c["name"] for c in res["checks"] if not c["pass"]))),
    ]
    note = ""
    if res["front"] == "c" and res["back"] == "c":
        note = "(C drivers xen-netfront/xen-netback: the reference, not the Rust drivers)"
    return "\n".join(["  %-20s %s" % r for r in rows] + (["  " + note] if note else []))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    ap.add_argument("--front", choices=["c", "rs"], default=os.environ.get("FRONT", "c"))
    ap.add_argument("--back", choices=["c", "rs"], default=os.environ.get("BACK", "c"))
    ap.add_argument("--tag", default="")
    ap.add_argument("--cpu", default=None, help="QEMU -cpu (default %s; %s with --icount)" % (DEFAULT_CPU, ICOUNT_CPU))
    ap.add_argument("--icount", action="store_true", help="-icount shift=3,sleep=off (load-independent guest time)")
    ap.add_argument("--kernel-dir", default=os.environ.get("KDIR", os.path.join(BUILD, "kernel")))
    ap.add_argument("--front-ko", default=os.path.join(BUILD, "modules", "xen-netfront-rs", "xen-netfront-rs.ko"))
    ap.add_argument("--back-ko", default=os.path.join(BUILD, "modules", "xen-netback-rs", "xen-netback-rs.ko"))
    ap.add_argument("--secs", type=int, default=10, help="iperf3/fpstress duration (s)")
    ap.add_argument("--profile", action="store_true",
                    help="sample both domains' kernels during each iperf3 run (tools/ksample.c): metrics *-prof-*")
    ap.add_argument("--loopback", action="store_true", help="also measure dom0's TCP loopback (benchmark control)")
    ap.add_argument("--xen", choices=(XENVER, "4.17"), default=XENVER,
                    help="hypervisor: Debian's Xen %s (default) or our patched 4.17 with a bookworm "
                    "dom0 (PV superpages, issue 6; selftests/rig/images.sh 4.17)" % XENVER)
    ap.add_argument("--xen-append", default="", help="extra Xen command line")
    ap.add_argument("--ksft-phases", default="domu,dom0",
                    help="ksft: where the device under test is, domU (eth0) and/or dom0 (vif1.0)")
    ap.add_argument("--tlbbench", action="store_true",
                    help="run the TLB microbenchmark (tools/tlbbench.c) in the domU (make bench, issue 6)")
    ap.add_argument("--lazy-fpu", action="store_true", help="do not pass %s to Xen (reproduces the TCG XSAVE bug with --cpu max)" % XEN_EAGER_FPU)
    ap.add_argument("--dom0-append", default="", help="extra dom0 kernel command line")
    ap.add_argument("--domu-append", default="", help="extra domU kernel command line")
    ap.add_argument("--back-append", default="",
                    help="backend module parameters, e.g. 'tx_mode=1' (passed as <module>.<param>=<value> on "
                         "dom0's command line, which modprobe applies when it loads the backend)")
    ap.add_argument("--timeout", type=int, default=None, help="overall QEMU timeout (s)")
    ap.add_argument("--silence-timeout", type=int, default=300, help="kill QEMU after this long without console output")
    ap.add_argument("--lock-timeout", type=int, default=3600)
    ap.add_argument("--strict", action="store_true", help="known issues (KNOWN_ISSUES) fail no-crash too")
    ap.add_argument("--keep", action="store_true", help="keep the run's disk images")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo the whole console")
    ap.add_argument("--ksft-all", action="store_true",
                    help="ksft: also the test files that fail with the C drivers for environment reasons (guest/scen_ksft.py ENV_FAIL)")
    ap.add_argument("--cases", default="", help="hostile-back/-front: comma-separated netpeer.py cases or patterns, !pattern to leave out (default: all)")
    a = ap.parse_args()
    cases = []   # the hostile cases --cases selects
    if a.scenario.startswith("hostile-"):
        try:
            cases = netpeer.select_cases(a.cases, list(netpeer.FRONT_CASES if a.scenario == "hostile-front"
                                                       else netpeer.BACK_CASES))
        except ValueError as e:
            ap.error("--cases: %s" % e)

    sc = SCENARIOS[a.scenario]
    cpu = a.cpu or (ICOUNT_CPU if a.icount else DEFAULT_CPU)
    timeout = a.timeout or sc["timeout"] * (2 if a.icount else 1)
    rig = RIG if a.xen == XENVER else os.path.join(BUILD, "rig417")
    xen = os.path.join(rig, "xen-%s.elf" % a.xen)
    base = os.path.join(rig, "base.img")
    for p in (xen, base):
        if not os.path.exists(p):
            die("%s missing: run selftests/rig/images.sh%s" % (p, "" if a.xen == XENVER else " " + a.xen))
    kdir = os.path.abspath(a.kernel_dir)
    krel = krel_of(kdir)
    bz = os.path.join(kdir, "arch/x86/boot/bzImage")
    if not os.path.exists(bz):
        die("no %s" % bz)
    kos, drivers = [], {}
    for side, want, ko, cname in (("front", a.front, a.front_ko, "xen_netfront"), ("back", a.back, a.back_ko, "xen_netback")):
        if want == "rs":
            if not os.path.exists(ko):
                die("--%s rs: %s missing (build the Rust modules first)" % (side, ko))
            name = modinfo_name(ko)
            if name != cname + "_rs":
                die("%s: module name is %r, expected %s_rs" % (ko, name, cname))
            kos.append(ko)
            drivers[side] = "%s (rs, %s)" % (name, os.path.relpath(ko, TOP))
        else:
            drivers[side] = "%s (C, in-tree module)" % cname

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    name = "%s-%s-%s%s" % (a.scenario, a.front, a.back, "-" + a.tag if a.tag else "")
    run_dir = os.path.join(BUILD, "runs", "%s-%s" % (name, stamp))
    os.makedirs(run_dir)
    conf = {"scenario": a.scenario, "front": a.front, "back": a.back, "krel": krel, "xenver": a.xen,
            "secs": a.secs, "profile": a.profile, "loopback": a.loopback, "hostile_cases": a.cases, "tlbbench": a.tlbbench, "ksft_phases": a.ksft_phases, "ksft_all": a.ksft_all, "domu_cmdline": a.domu_append, "domu_mem": 512, "domu_vcpus": 1,
            "back_params": a.back_append}
    rig_img = make_rig_disk(run_dir, conf, kdir, krel, kos)
    dom0_disk = os.path.join(run_dir, "dom0.qcow2")
    domu_disk = os.path.join(run_dir, "domu.qcow2")
    out_img = os.path.join(run_dir, "out.img")
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", dom0_disk)
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", domu_disk)
    # a second domU (same image, its own overlay): /dev/vde in dom0
    domu2_disk = os.path.join(run_dir, "domu2.qcow2") if sc.get("domu2") else None
    if domu2_disk:
        qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", domu2_disk)
    with open(out_img, "wb") as f:
        f.truncate(256 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "out", out_img], check=True)

    xen_cmd = ("console=com1 com1=115200,8n1 dom0_mem=1536M,max:1536M loglvl=all guest_loglvl=all noreboot " +
               ("" if a.lazy_fpu else XEN_EAGER_FPU + " ") + a.xen_append).strip()
    back_mod = "xen_netback_rs" if a.back == "rs" else "xen_netback"
    back_params = " ".join("%s.%s" % (back_mod, p) for p in a.back_append.split())
    if a.scenario == "hostile-front":
        # the rx-stall case (XSA-392) needs the RX stall and drain timeouts shortened (60 s and
        # 10 s by default; same names in both backends), unless given
        back_params += "".join(" %s.%s=%d" % (back_mod, p, v) for p, v in HOSTILE_FRONT_TIMEOUTS
                               if p + "=" not in a.back_append)
    dom0_cmd = ("root=/dev/vda rw console=hvc0 earlyprintk=xen init=/sbin/rig-init rig.role=dom0 rig.disk=/dev/vdb "
                "kunit.autorun=0 " + back_params + " " + a.dom0_append).strip()
    if "," in dom0_cmd:
        die("the dom0 command line cannot contain ',' (QEMU -initrd separator)")
    cmd = ["qemu-system-x86_64", "-accel", "tcg,thread=single"]
    if a.icount:
        cmd += ["-icount", "shift=3,sleep=off"]
    cmd += ["-cpu", cpu, "-smp", "2", "-m", "3072", "-nographic", "-nic", "none", "-no-reboot",
            "-kernel", xen, "-append", xen_cmd.strip(), "-initrd", "%s %s" % (bz, dom0_cmd),
            "-drive", "file=%s,if=virtio,format=qcow2,cache=unsafe" % dom0_disk,
            "-drive", "file=%s,if=virtio,format=raw,readonly=on" % rig_img,
            "-drive", "file=%s,if=virtio,format=qcow2,cache=unsafe" % domu_disk,
            "-drive", "file=%s,if=virtio,format=raw" % out_img]
    if domu2_disk:
        cmd += ["-drive", "file=%s,if=virtio,format=qcow2,cache=unsafe" % domu2_disk]
    open(os.path.join(run_dir, "qemu-cmdline.txt"), "w").write(" ".join("'%s'" % c if " " in c else c for c in cmd) + "\n")

    # RIG_LOCK_HELD=1: the caller (bench.py --hold-lock) already holds the heavy lock for a series.
    lock = None if os.environ.get("RIG_LOCK_HELD") == "1" else take_lock(a.lock_timeout)
    log("%s: front=%s back=%s cpu=%s%s, logs in %s" % (a.scenario, a.front, a.back, cpu, " icount" if a.icount else "",
                                                       os.path.relpath(run_dir, TOP)))
    console = os.path.join(run_dir, "console.log")
    t0 = time.time()
    qemu = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(console, "wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    open(os.path.join(run_dir, "qemu.pid"), "w").write("%d\n" % qemu.pid)
    checks, metrics, marks = [], [], {}
    pos, last_out, buf, why = 0, time.time(), b"", None
    with open(console, "rb") as cf:
        while True:
            data = cf.read()
            if data:
                last_out = time.time()
                buf += data
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace").rstrip("\r")
                    if a.verbose:
                        print("  | " + line, flush=True)
                    m = re.search(r"RIG-(CHECK|METRIC) (\{.*\})\s*$", line)
                    if m:
                        try:
                            d = json.loads(m.group(2))
                        except ValueError:
                            continue
                        (checks if m.group(1) == "CHECK" else metrics).append(d)
                        if m.group(1) == "CHECK" and not a.verbose:
                            print("  %-32s %s %s" % (d["name"], "ok" if d["pass"] else "FAIL",
                                                     "" if d["pass"] else d["detail"][:200]), flush=True)
                        continue
                    m = re.search(r"RIG-MARK (\S+)", line)
                    if m:
                        marks.setdefault(m.group(1), round(time.time() - t0, 1))
                        if not a.verbose:
                            print("  [%6.1fs] %s" % (time.time() - t0, line[line.index("RIG-MARK") + 9:][:100]), flush=True)
                        if m.group(1) == "DONE":
                            why = "done"
            if why:
                break
            if qemu.poll() is not None:
                why = "qemu exited rc=%d" % qemu.returncode
                break
            if time.time() - t0 > timeout:
                why = "timeout after %ds" % timeout
                break
            if time.time() - last_out > a.silence_timeout:
                why = "no console output for %ds" % a.silence_timeout
                break
            time.sleep(0.2)
    elapsed = time.time() - t0
    if qemu.poll() is None:
        time.sleep(1 if why == "done" else 0)
        qemu.terminate()
        try:
            qemu.wait(15)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait(15)
    if lock is not None:
        os.close(lock)
    log("QEMU ended (%s) after %.0fs" % (why, elapsed))

    # dom0's /out disk: logs and results
    odir = os.path.join(run_dir, "out")
    os.makedirs(odir)
    r = subprocess.run(["debugfs", "-R", "rdump / %s" % odir, out_img], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    extracted = [os.path.join(d, f) for d, _, fs in os.walk(odir) for f in fs]

    if why != "done":
        checks.append({"name": "rig-complete", "pass": False, "detail": why})
    seen = {c["name"] for c in checks}
    required = list(sc["required"])
    if a.back == "rs" and "tx_mode=1" in a.back_append.split() and a.scenario in ("basic", "run"):
        required.append("back-tx-zerocopy")
    if a.xen != XENVER and "pv-superpages" in a.xen_append.split():
        # our patched Xen with superpages on: each kernel that did not turn them off must use them
        for dom, append in (("dom0", a.dom0_append), ("domu", a.domu_append)):
            a2 = pvmmu.wants_direct(append, dom)   # stage A2: the direct map too
            if "pvmmu-domu-census" in required:   # boot, run, basic
                if pvmmu.param(append, "xen_superpages") != "off":
                    required += ["pvmmu-%s-superpages-on" % dom, "pvmmu-%s-superpages-revert" % dom]
                if a2:
                    required += ["pvmmu-%s-direct-2m" % dom]
                if a2 and dom == "domu":
                    required += ["pvmmu-domu-ldt", "pvmmu-domu-cpa"]
                if a2 and dom == "domu" and a.scenario in ("basic", "run"):
                    required += ["pvmmu-domu-direct-2m-after-traffic", "pvmmu-domu-direct-2m-balloon"]
                if a2 and dom == "domu" and a.scenario == "basic":
                    required += ["pvmmu-domu-module-load"]
            if a2 and dom == "domu" and a.scenario == "save-restore":   # every chunk split by the save
                required += ["pvmmu-domu-sr-before", "pvmmu-domu-sr-split"]
    if a.scenario == "features" and a.front == "rs":
        # the control ring (RSS) and the multicast filter: frontends that have them (scen_features.py)
        required += ["ft-rss-ctrl-ring", "ft-rss-spread", "ft-mcast-joined", "ft-mcast-filtered",
                     "ft-mcast-local-passes", "ft-mcast-unfiltered", "ft-xdp-kept-over-reconnect", "ft-ethtool-L-1", "ft-traffic-ethtool-L-1"]
    elif a.scenario == "features":
        required += ["ft-ethtool-L"]   # the C frontend refuses ethtool -L
    if a.scenario == "hostile-front" and a.back == "rs" and set(netpeer.MAP_CASES) & set(cases):
        required.append("hostile-front-map-mode")   # the map-mode pass (guest/scen_hostile.py)
    missing = [n for n in required if n not in seen]
    if a.scenario == "basic" and a.back == "c" and "back-rmmod-busy-refused" not in seen:
        missing.append("back-rmmod-busy-refused")
    checks.append({"name": "all-steps-ran", "pass": not missing and "SCENARIO-END" in marks,
                   "detail": "missing: " + ", ".join(missing) if missing else "all %d required checks reported" % len(required)})
    hits, known = scan_crashes([console] + extracted, a.front, a.back)
    for pat, reason in sc.get("expected", []):
        exp = [h for h in hits if re.search(pat, h)]
        hits = [h for h in hits if h not in exp]
        known += [h + " [expected: %s]" % reason[:80] for h in exp]
    if a.strict:
        hits, known = hits + known, []
    open(os.path.join(run_dir, "crash-scan.txt"), "w").write("\n".join(hits + known) + "\n")
    checks.append({"name": "no-crash", "pass": not hits,
                   "detail": ("%d suspicious lines: %s" % (len(hits), " | ".join(hits[:4])) if hits else
                              "logs scanned: %d files" % (1 + len(extracted))) +
                   ("; %d known-issue lines (not counted): %s" % (len(known), known[0]) if known else "")})
    for k, n in (("DOM0-READY", "time-dom0-ready"), ("DOMU-READY", "time-domu-ready"), ("SCENARIO-END", "time-scenario-end")):
        if k in marks:
            metrics.append({"name": n, "value": marks[k], "unit": "s"})
    metrics.append({"name": "time-total", "value": round(elapsed, 1), "unit": "s"})

    res = {"scenario": a.scenario, "front": a.front, "back": a.back, "tag": a.tag, "pass": all(c["pass"] for c in checks),
           "cpu": cpu, "icount": a.icount, "xen": a.xen, "xen_append": a.xen_append, "xen_cmdline": xen_cmd, "krel": krel, "drivers": drivers,
           "started": stamp, "run_dir": os.path.relpath(run_dir, TOP), "end": why,
           "checks": checks, "metrics": metrics, "marks": marks, "known_issues": known}
    rdir = os.path.join(BUILD, "results")
    os.makedirs(rdir, exist_ok=True)
    txt = table(res)
    if a.scenario == "run":
        txt += "\n\n" + summary_table(res)
    for d in (rdir, run_dir):
        json.dump(res, open(os.path.join(d, name + ".json" if d == rdir else "result.json"), "w"), indent=1)
        open(os.path.join(d, name + ".txt" if d == rdir else "result.txt"), "w").write(txt + "\n")
    with open(os.path.join(rdir, "history.jsonl"), "a") as h:
        h.write(json.dumps({k: res[k] for k in ("started", "scenario", "front", "back", "tag", "cpu", "icount", "xen", "xen_append", "pass", "run_dir")}
                           | {"failed": [c["name"] for c in checks if not c["pass"]], "crash_lines": len(hits), "known_issue_lines": len(known)}) + "\n")
    if not a.keep:
        for f in (rig_img, dom0_disk, domu_disk, out_img) + ((domu2_disk,) if domu2_disk else ()):
            try:
                os.unlink(f)
            except OSError:
                pass
        shutil.rmtree(os.path.join(run_dir, "rigdisk"), ignore_errors=True)
    print(txt)
    print("run: results in %s" % os.path.relpath(os.path.join(rdir, name + ".json"), TOP))
    sys.exit(0 if res["pass"] else 1)


if __name__ == "__main__":
    main()
