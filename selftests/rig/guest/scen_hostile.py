"""Rig scenarios hostile-back and hostile-front (run in dom0 by dom0.py, with its helpers).

hostile-back: selftests/hostile/netpeer.py plays a hostile backend in dom0 for new vifs of the
  domU (the xen-backend bus' drivers_autoprobe is off, so the real netback leaves them alone);
  the domU's frontend (the driver under test) is observed through the console agent.
hostile-front: the domU gets a second vif from the real backend (xl network-attach) with the
  xen bus' drivers_autoprobe off in the domU, so no frontend driver binds it; netpeer.py runs in
  the domU as its hostile frontend; dom0 checks its own kernel log, the vif's carrier, that its
  kernel did not oops, and that the domU's first vif (healthy frontend) is still served.

Each case gives one RIG-CHECK (hb-<case> / hf-<case>); every case's RESULT line is kept in
/out/hostile-<side>.jsonl.
"""
import json, os, re, subprocess, sys, threading, time

sys.path.insert(0, "/rig")
import netpeer  # noqa: E402

HOSTILE_MAC = "00:16:3e:00:01:01"    # the hostile-front vif (devid 1)
BACK_CASES_ORDER = list(netpeer.BACK_CASES)
FRONT_CASES_ORDER = list(netpeer.FRONT_CASES)


def kmsg_mark(what):
    m = "rig-hostile-%s-%.3f" % (re.sub(r"[^\w.-]", "_", what), time.time())
    try:
        with open("/dev/kmsg", "w") as f:
            f.write(m + "\n")
    except OSError:
        pass
    return m


def dmesg_since(marker):
    out = subprocess.run(["dmesg"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode(errors="replace")
    lines = out.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if marker in lines[i]:
            return lines[i + 1:]
    return lines


def summary(r):
    bad = [c for c in r["checks"] if not c["pass"]]
    if not bad:
        return "%s; %s" % (r.get("expect") or r.get("kind"), ", ".join(c["name"] for c in r["checks"]))
    return "; ".join("%s: %s" % (c["name"], c["detail"][:220]) for c in bad)


# --------------------------------------------------------------------------------------------
def hostile_back(d, ag, domid):
    d.mark("HOSTILE-BACK")
    out = open(os.path.join(d.OUT, "hostile-back.jsonl"), "w")
    d.sh("echo 0 > /sys/bus/xen-backend/drivers_autoprobe", 10)
    peer = netpeer.Peer(ag.run)
    cases = [c for c in d.CONF.get("hostile_cases", "").split(",") if c] or BACK_CASES_ORDER
    npass = setup_fail = 0
    try:
        for k, case in enumerate(cases):
            d.mark("HB %s" % case)
            t = time.time()
            r = netpeer.run_backend_case(case, domid, 10 + k, peer, storm_secs=5)
            r["secs"] = round(time.time() - t, 1)
            out.write(json.dumps(r) + "\n")
            out.flush()
            npass += r["pass"]
            d.check("hb-" + case, r["pass"], summary(r))
            setup_fail = setup_fail + 1 if r["info"].get("exit") == 2 else 0
            if setup_fail >= 2:
                d.check("hostile-back-aborted", False, "two cases in a row could not connect; stopping")
                break
    finally:
        d.sh("echo 1 > /sys/bus/xen-backend/drivers_autoprobe", 10)
    d.metric("hostile-back-cases-passed", npass, "of %d" % len(cases))
    # the domU's own vif (real backend) still works after all that
    d.ping_check("hostile-back-final-ping", d.sh, d.DOMU_IP, 5)


# --------------------------------------------------------------------------------------------
def hostile_front(d, ag, domid):
    d.mark("HOSTILE-FRONT")
    out = open(os.path.join(d.OUT, "hostile-front.jsonl"), "w")
    rc, o = ag.run("echo 0 > /sys/bus/xen/drivers_autoprobe && cat /sys/bus/xen/drivers_autoprobe", 20)
    rc2, o2 = d.sh("xl network-attach domu bridge=xenbr0 mac=%s" % HOSTILE_MAC, 90)
    bep = "/local/domain/0/backend/vif/%d/1" % domid
    ok = d.wait_for(lambda: d.sh("xenstore-read %s/state" % bep, 10, True)[1].strip() == "2", 60, 1)
    vif = "vif%d.1" % domid
    rc3, o3 = ag.run("ls -d /sys/bus/xen/devices/vif-1 && ! [ -e /sys/bus/xen/devices/vif-1/driver ]", 20)
    if not d.check("hostile-front-setup", rc == 0 and rc2 == 0 and ok and rc3 == 0,
                   "autoprobe off rc=%s; network-attach rc=%s %s; backend InitWait=%s; vif-1 unbound in domU rc=%s %s"
                   % (rc, rc2, o2.strip()[-200:], ok, rc3, o3.strip()[-200:])):
        return
    cases = [c for c in d.CONF.get("hostile_cases", "").split(",") if c] or FRONT_CASES_ORDER
    npass = setup_fail = 0
    for case in cases:
        d.mark("HF %s" % case)
        meta = netpeer.FRONT_CASES[case]
        marker = kmsg_mark(case)
        box = {}

        def work():
            box["rc"], box["out"] = ag.run("python3 /rig/netpeer.py frontend --case %s --handle 1" % case, 180, True)
        th = threading.Thread(target=work)
        t = time.time()
        th.start()
        carrier = set()     # carrier values seen while the tool said it was attacking
        fep = "/local/domain/%d/device/vif/1/netpeer-phase" % domid
        while th.is_alive():
            ph = subprocess.run(["xenstore-read", fep], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
            if ph == "attacked":
                try:
                    carrier.add(open("/sys/class/net/%s/carrier" % vif).read().strip())
                except OSError:
                    carrier.add("gone")
            th.join(0.3)
        m = re.search(r"^RESULT (\{.*\})\s*$", box.get("out", ""), re.M)
        r = json.loads(m.group(1)) if m else {"side": "frontend", "case": case, "pass": False, "checks": [
            {"name": "tool", "pass": False, "detail": "no RESULT line; rc=%s %s" % (box.get("rc"), box.get("out", "")[-400:])}]}
        lines = dmesg_since(marker)
        found, missing, oops, _ = netpeer.scan_log(lines, meta.get("peer_log", []))

        def add(name, okk, detail):
            r["checks"].append({"name": name, "pass": bool(okk), "detail": detail})
        add("dom0-log", found, "found %s" % meta.get("peer_log") if found else "missing %s; got: %s" % (missing, " | ".join(lines[-6:])))
        add("dom0-no-oops", not oops, " | ".join(oops[:3]) or "none")
        if meta["kind"] == "fatal":
            add("vif-carrier-off", "0" in carrier, "carrier values seen while the tool attacked: %s" % sorted(carrier))
        # the healthy frontend (domU's first vif) is still served
        rcp, op = d.sh("ping -c 2 -i 0.3 -W 2 %s" % d.DOMU_IP, 20, True)
        add("healthy-vif-served", rcp == 0, "ping dom0 -> domU eth0 rc=%d" % rcp)
        r["pass"] = all(c["pass"] for c in r["checks"])
        r["secs"] = round(time.time() - t, 1)
        r["dom0_log"] = [ln for ln in lines if "rig-hostile" not in ln][-12:]
        out.write(json.dumps(r) + "\n")
        out.flush()
        npass += r["pass"]
        d.check("hf-" + case, r["pass"], summary(r))
        setup_fail = setup_fail + 1 if r.get("info", {}).get("exit") == 2 or not m else 0
        if setup_fail >= 2:
            d.check("hostile-front-aborted", False, "two cases in a row could not connect; stopping")
            break
    d.metric("hostile-front-cases-passed", npass, "of %d" % len(cases))
    ag.run("echo 1 > /sys/bus/xen/drivers_autoprobe", 20)


def run(d, ag, domid, ifn, vif):
    """d: the dom0.py module (helpers: sh, check, metric, mark, ping_check, wait_for, CONF, OUT)."""
    if d.SCEN == "hostile-back":
        hostile_back(d, ag, domid)
    elif d.SCEN == "hostile-front":
        hostile_front(d, ag, domid)
