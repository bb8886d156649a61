#!/usr/bin/python3
"""Benchmark driver pairs on the rig: N runs per pair, interleaved, medians, spread, ratios to c/c.

  selftests/rig/bench.py [-n 5] [--scenario run] [--pairs c/c,rs/c,c/rs,c/rs-map,rs/rs] [--plain] [--cpu MODEL]
  selftests/rig/bench.py --pvmmu [-n 3] [--pairs rs/rs]      (issue 6: PV MMU patches on vs off)
  selftests/rig/bench.py --pool build/results/bench-A.json build/results/bench-B.json ...

--pvmmu compares the guest-kernel PV MMU features on and off (dom0 and domU booted with
xen_superpages=off xen_global_pages=off for "off"; "on" is the defaults plus xen_superpages=all in
the domU: 2 MiB kernel image and direct map, patches/0104) for one driver pair, with iperf3 and the TLB
microbenchmark (tools/tlbbench.c) in the domU; on our patched Xen 4.17 (build/rig417, made by
`selftests/rig/images.sh 4.17`) with pv-superpages when it exists, else on stock Xen 4.20 (which
refuses superpages: only user-global mappings differ). Ratios are on/off.

Default mode is QEMU icount (-icount shift=3,sleep=off, -cpu max,-xsave,-x2apic): guest time
advances per guest instruction, so Mbit/s measured in the guest (iperf3's receiver totals) does
not depend on host load (about +-2 % between runs, see selftests/rig/README.md). --plain uses
plain TCG (wall-clock; 1.3-1.7x run-to-run swings, needs more repeats).
Pairs default to c/c plus every pair whose Rust modules exist in build/modules/. A backend
"rs-map" is the Rust backend with tx_mode=1 (guest TX by grant map, like the C backend; "rs"
copies), so both guest-TX strategies are measured against the C backend.
Each run is a normal selftests/rig/run.py run (its own run dir); this script collects
build/results/<scenario>-<front>-<back>-<tag>.json and writes build/results/bench-<ts>.json + .txt.
Exit code: 0 if every run passed, 1 otherwise (statistics use the passing runs only).

For the throughput metrics (iperf-*-mbps) each variant's line below the table gives the ratio of
medians with a 95 % interval (bootstrap, resampling each side's runs) and P(better): the chance
that one of its runs beats one of the reference's (Mann-Whitney; 0.5 = no difference). A ratio
whose interval holds 1.0 is not distinguishable from the reference with these runs. --pool runs
nothing: it reports the runs of earlier benches (same variants) together.
"""
import argparse, datetime, fcntl, json, os, random, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("BUILD", os.path.join(TOP, "build"))
# (metric, higher is better)
METRICS = [("iperf-tx-mbps", True), ("iperf-rx-mbps", True), ("dom0-loopback-mbps", True),
           ("ping-dom0-to-domu-rtt", False), ("ping-domu-to-dom0-rtt", False),
           ("time-domu-ready", False), ("time-total", False),
           ("tlb-user-ns", False), ("tlb-kernel-ns", False), ("tlb-direct-ns", False),
           ("pvmmu-domu-image_2m", True), ("pvmmu-domu-direct_2m", True), ("pvmmu-domu-direct_2m-after-traffic", True),
           ("pvmmu-domu-kernel_global", True), ("pvmmu-domu-user_global", True)]
# How the drivers batch (guest/dom0.py net_counts): packets and interrupts per MB carried.
METRICS += [("%s-%s-per-mb" % (d, k), False) for d in ("iperf-tx", "iperf-rx")
            for k in ("domu-tx-pkts", "domu-rx-pkts", "domu-irqs", "domu-tx-irqs", "domu-rx-irqs", "dom0-vif-irqs",
                      "dom0-vif-tx-irqs", "dom0-vif-rx-irqs")]
# The sending socket's RTT in the guest TX run (TCP sizes its TSO packets by it).
METRICS += [("iperf-tx-mean-rtt", False), ("iperf-tx-min-rtt", False)]
# How busy each domain's CPUs were during the runs (guest/dom0.py net_counts): which side bounds it.
METRICS += [("%s-%s-busy" % (d, k), False) for d in ("iperf-tx", "iperf-rx") for k in ("domu", "dom0")]
PVMMU_OFF = "xen_superpages=off xen_global_pages=off"


def available_pairs(mdir):
    have = {"c": True, "rs_front": os.path.exists(os.path.join(mdir, "xen-netfront-rs", "xen-netfront-rs.ko")),
            "rs_back": os.path.exists(os.path.join(mdir, "xen-netback-rs", "xen-netback-rs.ko"))}
    pairs = [("c", "c")]
    if have["rs_front"]:
        pairs.append(("rs", "c"))
    if have["rs_back"]:
        pairs.append(("c", "rs"))
        # the Rust backend's zero-copy guest TX (tx_mode=1), against the C backend (always maps)
        pairs.append(("c", "rs-map"))
    if have["rs_front"] and have["rs_back"]:
        pairs.append(("rs", "rs"))
    return pairs


def stats(vals):
    if not vals:
        return None
    med = statistics.median(vals)
    return {"n": len(vals), "median": round(med, 3), "min": round(min(vals), 3), "max": round(max(vals), 3),
            "spread_pct": round(100.0 * (max(vals) - min(vals)) / med, 1) if med else None,
            "values": [round(v, 3) for v in vals]}


# The metrics whose ratio gets an interval and P(better).
TESTED = ["iperf-tx-mbps", "iperf-rx-mbps"]


def compare(vals, ref, higher_better=True, rounds=4000):
    """(95 % bootstrap interval of the ratio of medians, P(a run of vals beats one of ref))."""
    rnd = random.Random(1)      # reproducible: the same runs give the same interval
    ratios = sorted(statistics.median(rnd.choices(vals, k=len(vals))) / statistics.median(rnd.choices(ref, k=len(ref)))
                    for _ in range(rounds))
    wins = sum((x > y if higher_better else x < y) + 0.5 * (x == y) for x in vals for y in ref)
    return (ratios[int(rounds * 0.025)], ratios[int(rounds * 0.975) - 1]), wins / (len(vals) * len(ref))


def report(runs, variants, meta):
    """The summary of `runs` per variant label (the first is the reference) and its text."""
    summary = {}
    for label in variants:
        ok = [r for r in runs if r["pair"] == label and r["pass"]]
        summary[label] = {"runs": sum(r["pair"] == label for r in runs), "passed": len(ok),
                          "metrics": {m: stats([r["metrics"][m] for r in ok if m in r["metrics"]]) for m, _ in METRICS}}
    refname = variants[0]
    ref = summary[refname]
    for p, s in summary.items():
        s["ratio"], s["ratio_ci95"], s["p_better"] = {}, {}, {}
        for m, hib in METRICS:
            if ref["metrics"].get(m) and s["metrics"].get(m) and ref["metrics"][m]["median"]:
                s["ratio"][m] = round(s["metrics"][m]["median"] / ref["metrics"][m]["median"], 3)
                if p != refname and m in TESTED and min(len(s["metrics"][m]["values"]), len(ref["metrics"][m]["values"])) >= 3:
                    ci, pb = compare(s["metrics"][m]["values"], ref["metrics"][m]["values"], hib)
                    s["ratio_ci95"][m], s["p_better"][m] = [round(ci[0], 3), round(ci[1], 3)], round(pb, 2)
    lines = ["bench %s  scenario=%s  n=%s per variant  mode=%s  (medians; spread = (max-min)/median; xR = ratio to %s)"
             % (meta["started"], meta["scenario"], meta["n"], meta["mode"], refname)]
    lines.append("  %-22s" % "metric" + "".join("  %-26s" % p for p in summary))
    for m, hib in METRICS:
        if not any(s["metrics"].get(m) for s in summary.values()):
            continue
        row = "  %-22s" % m
        for p, s in summary.items():
            st = s["metrics"].get(m)
            cell = "-" if not st else "%.4g (±%s%%)" % (st["median"], st["spread_pct"])
            if st and p != refname and m in s["ratio"]:
                cell += " x%.2f" % s["ratio"][m]
            row += "  %-26s" % cell
        lines.append(row)
    lines.append("  %-22s" % "runs passed" + "".join("  %-26s" % ("%d/%d" % (s["passed"], s["runs"])) for s in summary.values()))
    for p, s in summary.items():
        for m in TESTED:
            if m in s["ratio_ci95"]:
                lines.append("  %s %s: x%.3f, 95%% interval %.3f-%.3f, P(better than %s) %.2f (%d vs %d runs)"
                             % (p, m, s["ratio"][m], s["ratio_ci95"][m][0], s["ratio_ci95"][m][1], refname,
                                s["p_better"][m], s["metrics"][m]["n"], ref["metrics"][m]["n"]))
    return summary, lines


def pool(files):
    """Reports the runs of earlier benches together (--pool)."""
    benches = [json.load(open(f)) for f in files]
    variants = benches[0]["variants"]
    runs = [r for b in benches for r in b["runs"] if r["pair"] in variants]
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    meta = {"started": "pool-" + ts, "scenario": benches[0]["scenario"],
            "n": "%d (%d benches)" % (sum(r["pair"] == variants[0] for r in runs), len(benches)),
            "mode": benches[0]["mode"]}
    if any(b["mode"] != meta["mode"] or b["scenario"] != meta["scenario"] for b in benches):
        sys.exit("bench: --pool: the benches differ in mode or scenario")
    summary, lines = report(runs, variants, meta)
    lines.insert(1, "  pooled: " + " ".join("%s (n=%d)" % (b["started"], b["n"]) for b in benches))
    return meta, summary, runs, variants, lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=int(os.environ.get("N", 5)), help="runs per pair (default 5)")
    ap.add_argument("--scenario", default="run")
    ap.add_argument("--pairs", default=None, help="comma list of front/back, e.g. c/c,rs/c (default: available)")
    ap.add_argument("--plain", action="store_true", help="plain TCG instead of icount")
    ap.add_argument("--cpu", default=None)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--kernel-dir", default=None, help="e.g. build/kernel-bench (-O2 kernel)")
    ap.add_argument("--modules-dir", default=None,
                    help="where xen-net{front,back}-rs.ko are (default build/modules, build/modules-bench with a kernel-bench dir)")
    ap.add_argument("--scenario-args", default="", help="extra run.py arguments, e.g. '--xen-append spec-ctrl=eager-fpu'")
    ap.add_argument("--pvmmu", action="store_true", help="PV MMU patches on vs off (issue 6), see above")
    ap.add_argument("--pool", nargs="+", metavar="BENCH_JSON", help="report earlier benches together, run nothing")
    ap.add_argument("--hold-lock", action="store_true",
                    help="take the heavy lock once for the whole series (no kernel build in between; blocks others longer)")
    a = ap.parse_args()
    if a.pool:
        meta, summary, runs, variants, lines = pool(a.pool)
        write(meta, summary, runs, variants, {}, lines, "bench-%s" % meta["started"])
        return

    mdir = a.modules_dir or os.path.join(BUILD, "modules-bench" if a.kernel_dir and
                                         os.path.basename(os.path.normpath(a.kernel_dir)) == "kernel-bench" else "modules")
    pairs = [tuple(p.split("/")) for p in a.pairs.split(",")] if a.pairs else available_pairs(mdir)
    # variants: (label, front, back, extra run.py arguments); the first is the reference of the ratios
    if a.pvmmu:
        front, back = pairs[-1]
        xen = ["--xen", "4.17", "--xen-append", "pv-superpages"] if os.path.exists(
            os.path.join(BUILD, "rig417", "base.img")) else []
        variants = [("pvmmu-off", front, back, xen + ["--tlbbench", "--dom0-append", PVMMU_OFF, "--domu-append", PVMMU_OFF]),
                    ("pvmmu-on", front, back, xen + ["--tlbbench", "--domu-append", "xen_superpages=all"])]
    else:
        # a backend "X-map" is backend X with tx_mode=1 (guest TX by grant map, issue 5)
        variants = [("%s/%s" % (f, b), f, b.split("-")[0], ["--back-append", "tx_mode=1"] if b.endswith("-map") else [])
                    for f, b in pairs]
    env = dict(os.environ)
    if a.hold_lock:
        lock = os.open(os.environ.get("HEAVY_LOCK", "/tmp/xen-netrs-heavy.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        print("bench: waiting for the heavy lock", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)
        env["RIG_LOCK_HELD"] = "1"
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    runs = []
    for i in range(a.n):
        for label, front, back, extra in variants:      # interleaved: c/c, rs/c, ... then again
            tag = "bench%s-%d%s" % (ts, i, "-" + label.replace("/", "-") if a.pvmmu or "-" in label else "")
            cmd = [sys.executable, os.path.join(HERE, "run.py"), a.scenario, "--front", front, "--back", back,
                   "--tag", tag, "--secs", str(a.secs), "--loopback"] + extra
            if not a.plain:
                cmd.append("--icount")
            if a.cpu:
                cmd += ["--cpu", a.cpu]
            if a.kernel_dir:
                cmd += ["--kernel-dir", a.kernel_dir]
            cmd += ["--front-ko", os.path.join(mdir, "xen-netfront-rs", "xen-netfront-rs.ko"), "--back-ko", os.path.join(mdir, "xen-netback-rs", "xen-netback-rs.ko")]
            cmd += a.scenario_args.split()
            print("bench: [%d/%d] %s" % (i + 1, a.n, label), flush=True)
            t = time.time()
            rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL if not os.environ.get("V") else None).returncode
            rf = os.path.join(BUILD, "results", "%s-%s-%s-%s.json" % (a.scenario, front, back, tag))
            res = json.load(open(rf)) if os.path.exists(rf) else None
            runs.append({"pair": label, "i": i, "rc": rc, "pass": bool(res and res["pass"]),
                         "run_dir": res["run_dir"] if res else None,
                         "metrics": {m["name"]: m["value"] for m in (res["metrics"] if res else [])}})
            print("bench:   %s in %.0fs %s" % ("ok" if runs[-1]["pass"] else "FAILED", time.time() - t,
                                               " ".join("%s=%s" % (k, runs[-1]["metrics"].get(k)) for k in ("iperf-tx-mbps", "iperf-rx-mbps", "tlb-user-ns", "tlb-kernel-ns") if k in runs[-1]["metrics"])), flush=True)

    meta = {"started": ts, "scenario": a.scenario, "n": a.n, "mode": "plain" if a.plain else "icount shift=3,sleep=off",
            "cpu": a.cpu}
    summary, lines = report(runs, [v[0] for v in variants], meta)
    if a.pvmmu:
        lines.append("  (QEMU TCG keeps a soft TLB flushed on every CR3 write: global and 2 MiB entries cannot show "
                     "their hardware gain here; ratios near 1.0 are expected, patches/README.md 9.3)")
    write(meta, summary, runs, [v[0] for v in variants], {v[0]: v[3] for v in variants}, lines, "bench-%s" % ts)
    sys.exit(0 if all(r["pass"] for r in runs) else 1)


def write(meta, summary, runs, variants, args, lines, name):
    """Prints the report and writes build/results/<name>.json and .txt."""
    if "icount" in meta["mode"]:
        lines.append("  (icount: Mbit/s are per guest time; guest instructions per byte = 1000 / (Mbit/s) at shift=3)")
    out = dict(meta, variants=variants, args=args, ratio_to=variants[0], summary=summary, runs=runs)
    txt = "\n".join(lines)
    rdir = os.path.join(BUILD, "results")
    os.makedirs(rdir, exist_ok=True)
    json.dump(out, open(os.path.join(rdir, name + ".json"), "w"), indent=1)
    open(os.path.join(rdir, name + ".txt"), "w").write(txt + "\n")
    print(txt)
    print("bench: build/results/%s.json" % name)


if __name__ == "__main__":
    main()
