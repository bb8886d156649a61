#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Boot the project kernel without Xen (virtme-ng, TCG), run the KUnit suites and the module
load/unload checks, and assert the results.

Writes build/results/kunit.json (one check per KUnit suite, plus totals) and
build/results/vng-modules.json (both Rust modules load and unload, no harm outside Xen).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from results import BUILD, TOP, Result  # noqa: E402
from logscan import crashes  # noqa: E402

KOUT = os.path.join(BUILD, "kernel")
KTREE = os.path.join(BUILD, "src", "linux")
MODS = {
    "xen_netfront_rs": os.path.join(BUILD, "modules", "xen-netfront-rs", "xen-netfront-rs.ko"),
    "xen_netback_rs": os.path.join(BUILD, "modules", "xen-netback-rs", "xen-netback-rs.ko"),
}

GUEST_SCRIPT = r"""
out=$1
exec >"$out/guest.log" 2>&1
uname -r
echo VNG-START
for m in {mods}; do
    name=${{m%%=*}}; ko=${{m#*=}}
    # Outside Xen a driver may load (and must then unload cleanly) or refuse with ENODEV,
    # like the C drivers do; any other outcome is a failure.
    err=$(insmod "$ko" 2>&1); rc=$?
    echo "$err"
    if [ $rc = 0 ]; then
        echo "VNG-LOAD $name ok loaded"
        if grep -q "^$name " /proc/modules; then echo "VNG-LISTED $name ok"; else echo "VNG-LISTED $name fail"; fi
        if rmmod "$name"; then echo "VNG-UNLOAD $name ok"; else echo "VNG-UNLOAD $name fail"; fi
    elif echo "$err" | grep -q "No such device"; then
        echo "VNG-LOAD $name ok refused-enodev"
        echo "VNG-LISTED $name ok"; echo "VNG-UNLOAD $name ok"
    else
        echo "VNG-LOAD $name fail"
    fi
    if grep -q "^$name " /proc/modules; then echo "VNG-GONE $name fail"; else echo "VNG-GONE $name ok"; fi
done
dmesg >"$out/dmesg.txt"
echo VNG-DONE
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--filter", default="", help="kunit.filter_glob")
    args = ap.parse_args()

    run = os.path.join(BUILD, "runs", "vng-" + time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(run)
    script = os.path.join(run, "guest.sh")
    with open(script, "w") as f:
        f.write(GUEST_SCRIPT.format(mods=" ".join(f"{k}={v}" for k, v in MODS.items())))
    venv = os.path.join(BUILD, "vng-venv", "bin")
    env = dict(os.environ, PATH=venv + ":" + os.environ["PATH"])
    append = "kunit.autorun=1 panic=-1" + (f" kunit.filter_glob={args.filter}" if args.filter else "")
    cmd = [os.path.join(venv, "vng"), "--verbose", "--disable-kvm", "--memory", "2G", "--cpus", "2",
           "--rwdir", run, "--append", append, "--run", KOUT, "--", f"sh {script} {run}"]
    print("vng:", " ".join(cmd), flush=True)
    t0 = time.time()
    with open(os.path.join(run, "console.log"), "w") as log:
        try:
            # vng exits 255 on hosts without udev whatever the guest command returned: the
            # result is read from the files the guest wrote, not from the exit code.
            subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=KOUT,
                           stdin=subprocess.DEVNULL, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            pass
    boot_s = time.time() - t0
    console = open(os.path.join(run, "console.log"), errors="replace").read()
    dmesg_path = os.path.join(run, "dmesg.txt")
    dmesg = open(dmesg_path, errors="replace").read() if os.path.exists(dmesg_path) else ""
    guest_path = os.path.join(run, "guest.log")
    guest = open(guest_path, errors="replace").read() if os.path.exists(guest_path) else ""

    # --- KUnit -----------------------------------------------------------------
    ku = Result("kunit", log=run)
    ku.metric("boot_and_run", round(boot_s, 1), "s")
    ku.check("guest ran to the end", "VNG-DONE" in guest, "" if "VNG-DONE" in guest else f"see {run}")
    parsed = {}
    if dmesg:
        jpath = os.path.join(run, "kunit.json")
        subprocess.run([sys.executable, os.path.join(KTREE, "tools/testing/kunit/kunit.py"), "parse",
                        "--json=" + jpath, dmesg_path], stdout=open(os.path.join(run, "kunit-parse.txt"), "w"),
                       stderr=subprocess.STDOUT)
        if os.path.exists(jpath):
            parsed = json.load(open(jpath))
    def count(group, n):
        for c in group.get("test_cases", []):
            st = c.get("status", "FAILURE")
            n[st] = n.get(st, 0) + 1
        for g in group.get("sub_groups", []):
            count(g, n)
        return n

    totals = {}
    groups = parsed.get("sub_groups", []) if parsed else []
    for s in groups:
        n = count(s, {})
        for k, v in n.items():
            totals[k] = totals.get(k, 0) + v
        bad = sum(v for k, v in n.items() if k not in ("PASS", "SKIPPED"))
        ku.check(f"suite {s['name']}", n.get("PASS", 0) > 0 and not bad,
                 f"{n.get('PASS', 0)} pass, {bad} fail, {n.get('SKIPPED', 0)} skip")
    ku.check("kunit suites found", bool(groups), f"{len(groups)} suites")
    names = {g["name"] for g in groups}
    # Suites inside modules run when the module is loaded, in KTAP blocks of their own that
    # kunit.py does not read: take their top-level result and summary lines.
    summary = {}
    for line in dmesg.splitlines():
        line = re.sub(r"^\[\s*[0-9.]+\] ", "", line)
        m = re.match(r"^# (\S+): pass:(\d+) fail:(\d+) skip:(\d+) total:(\d+)$", line)
        if m and m.group(1) not in names:
            summary[m.group(1)] = tuple(int(x) for x in m.group(2, 3, 4))
        m = re.match(r"^(ok|not ok) \d+ (\S+)", line)
        if m and m.group(2) not in names and m.group(2) != "Totals":
            npass, nfail, nskip = summary.get(m.group(2), (0, 0, 0))
            ok = m.group(1) == "ok" and not nfail
            ku.check(f"suite {m.group(2)}", ok, f"{npass} pass, {nfail} fail, {nskip} skip (module)")
            names.add(m.group(2))
            totals["PASS"] = totals.get("PASS", 0) + npass
            totals["FAILURE"] = totals.get("FAILURE", 0) + nfail
    expected = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected-suites.txt")
    for line in open(expected):
        want = line.strip()
        if want and not want.startswith("#") and want not in names:
            ku.check(f"suite {want}", False, "expected suite did not run")
    for k in ("PASS", "FAILURE", "SKIPPED"):
        ku.metric(f"cases_{k.lower()}", totals.get(k, 0))
    # --- modules outside Xen ---------------------------------------------------------
    mo = Result("vng-modules", log=run)
    for name in MODS:
        for step in ("LOAD", "LISTED", "UNLOAD", "GONE"):
            line = next((l for l in guest.splitlines() if l.startswith(f"VNG-{step} {name} ")), "")
            mo.check(f"{name} {step.lower()}", line.split()[2:3] == ["ok"], " ".join(line.split()[3:]))
    bad = crashes(dmesg) + crashes(console if not dmesg else "")
    mo.check("no oops/BUG/WARN in the guest kernel log", not bad, "; ".join(bad[:3]))

    rc = 0
    for r in (ku, mo):
        r.save()
        print(r.table())
        rc |= 0 if r.passed else 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
