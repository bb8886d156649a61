"""Rig scenarios hostile-back and hostile-front (run in dom0 by dom0.py, with its helpers).

hostile-back: selftests/hostile/netpeer.py plays a hostile backend in dom0 for new vifs of the
  domU (the xen-backend bus' drivers_autoprobe is off, so the real netback leaves them alone);
  the domU's frontend (the driver under test) is observed through the console agent.
hostile-front: the domU gets a second vif from the real backend (xl network-attach) with the
  xen bus' drivers_autoprobe off in the domU, so no frontend driver binds it; netpeer.py runs in
  the domU as its hostile frontend; dom0 checks its own kernel log, the vif's carrier, that its
  kernel did not oops, and that the healthy frontends are still served: the domU's first vif and
  a second domU (domu2, booted first).

Each case gives one RIG-CHECK (hb-<case> / hf-<case>); every case's RESULT line is kept in
/out/hostile-<side>.jsonl.
"""
import json, os, re, subprocess, sys, threading, time

sys.path.insert(0, "/rig")
import netpeer  # noqa: E402

# cases after which the C netfront cannot be torn down go last (see WEDGE below)
BACK_CASES_ORDER = [c for c in netpeer.BACK_CASES if not netpeer.BACK_CASES[c].get("wedges_c")] + \
    [c for c in netpeer.BACK_CASES if netpeer.BACK_CASES[c].get("wedges_c")]
# Measured (run hostile-back-c-c-b1): when the C netfront marks itself broken inside xennet_poll()
# (RX producer overflow, RX grant still in use) it returns without napi_complete_done(); NAPI stays
# scheduled and the teardown's napi_synchronize() (xennet_disconnect_backend, on unbind or device
# removal: an msleep(1) loop, wchan process_timeout) never returns. So for the C frontend these cases leave the device in place, except the last one, which
# tries the rebind (detached) to record the hang; reported as a known C failure.
WEDGE_REASON = ("C netfront 7.3: xennet_poll() returns 0 without napi_complete_done() after setting "
                "broken, so napi_synchronize() in xennet_disconnect_backend() waits forever")
# Checks the C reference driver fails, measured: (side, case, check) -> (driver, reason). Reported,
# not counted against that driver (the Rust drivers must pass them).
KNOWN = {
    ("backend", "tx-page-leak", "no-leak-before-data"): ("c", "C netfront bounce_skb() copies the original skb's "
                                                         "headroom (uninitialised) into the zeroed bounce page"),
    ("backend", "rx-rsp-prod-jump", "fresh-connect"): ("c", WEDGE_REASON),
    ("backend", "rx-rsp-prod-back", "fresh-connect"): ("c", WEDGE_REASON),
    ("backend", "rx-grant-kept", "fresh-connect"): ("c", WEDGE_REASON),
}
# Measured (run hostile-front-c-c-f2): the C netback's connect() is void; after xenbus_dev_fatal()
# (state Closing) set_backend_state() goes on with backend_switch_state(Connected), so the backend
# ends up advertising Connected with no data path. Its log has the refusal; the state lies.
for _c in ("xs-queues-0", "xs-queues-huge", "xs-no-ring-ref", "xs-ring-ref-junk", "xs-ring-ref-bad", "xs-no-evtchn",
           "xs-evtchn-bad", "xs-ring-attach-overflow", "xs-ctrl-ring-bad"):
    KNOWN[("frontend", _c, "backend-state-closing")] = (
        "c", "C netback: connect() failure (xenbus_dev_fatal -> Closing) is followed by backend_switch_state(Connected)")


def apply_known(d, r):
    drv = d.FRONT if r["side"] == "backend" else d.BACK
    for c in r["checks"]:
        k = KNOWN.get((r["side"], r["case"], c["name"]))
        if k and k[0] == drv and not c["pass"]:
            c["pass"] = True
            c["known"] = True
            c["detail"] = "KNOWN (%s driver): %s | %s" % (drv, k[1], c["detail"])
    r["pass"] = bool(r["checks"]) and all(c["pass"] for c in r["checks"])
    return r
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
    known = [c for c in r["checks"] if c.get("known")]
    if not bad:
        return "%s; %s%s" % (r.get("expect") or r.get("kind"), ", ".join(c["name"] for c in r["checks"]),
                             "".join(" | %s: %s" % (c["name"], c["detail"][:300]) for c in known))
    return "; ".join("%s: %s" % (c["name"], c["detail"][:220]) for c in bad)


# --------------------------------------------------------------------------------------------
def hostile_back(d, ag, domid):
    d.mark("HOSTILE-BACK")
    out = open(os.path.join(d.OUT, "hostile-back.jsonl"), "w")
    d.sh("echo 0 > /sys/bus/xen-backend/drivers_autoprobe", 10)
    peer = netpeer.Peer(ag.run)
    # cases for a frontend feature the driver under test lacks (the C netfront has no control
    # ring) are left out of the default list
    spec = d.CONF.get("hostile_cases", "")
    cases = netpeer.select_cases(spec, BACK_CASES_ORDER) if spec else \
        [c for c in BACK_CASES_ORDER if netpeer.BACK_CASES[c].get("front", d.FRONT) == d.FRONT]
    npass = setup_fail = 0
    try:
        for k, case in enumerate(cases):
            d.mark("HB %s" % case)
            t = time.time()
            rebind = "yes"
            if d.FRONT == "c" and netpeer.BACK_CASES[case].get("wedges_c"):
                last = case == [c for c in cases if netpeer.BACK_CASES[c].get("wedges_c")][-1]
                rebind = "yes" if last else "leave"
            r = netpeer.run_backend_case(case, domid, 10 + k, peer, storm_secs=5, rebind=rebind)
            if rebind == "leave":
                r["checks"].append({"name": "fresh-connect", "pass": False,
                                    "detail": "not attempted: the frontend would hang in its teardown"})
            r["secs"] = round(time.time() - t, 1)
            apply_known(d, r)
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
def attach(d, domid, k):
    """A fresh backend vif for one case (the C netback keeps a vif disabled after a fatal error
    even across frontend reconnects, until the backend device is re-created), with the rig's
    lean hotplug script (guest/vif-rig: vif-bridge took a third of each case)."""
    mac = "00:16:3e:00:01:%02x" % (k + 1)
    rc, o = d.sh("xl network-attach domu bridge=xenbr0 mac=%s script=/rig/vif-rig" % mac, 90)
    devid = None
    for dv in subprocess.run(["xenstore-list", "/local/domain/0/backend/vif/%d" % domid], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL).stdout.decode().split():
        m = subprocess.run(["xenstore-read", "/local/domain/0/backend/vif/%d/%s/mac" % (domid, dv)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
        if m == mac:
            devid = int(dv)
    ok = devid is not None and d.wait_for(lambda: d.sh("xenstore-read /local/domain/0/backend/vif/%d/%d/state"
                                                       % (domid, devid), 10, True)[1].strip() == "2", 60, 0.2)
    return devid if (rc == 0 and ok) else None, "network-attach rc=%d devid=%s InitWait=%s %s" % (rc, devid, ok, o.strip()[-200:])


def detach(d, domid, devid):
    fe = "/local/domain/%d/device/vif/%d/state" % (domid, devid)
    d.sh("xenstore-write %s 5" % fe, 10, True)
    p = subprocess.Popen(["xl", "network-detach", "domu", str(devid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # the toolstack has asked the backend to close (its state 5 or 6) before the frontend is Closed
    be = "/local/domain/0/backend/vif/%d/%d/state" % (domid, devid)
    d.wait_for(lambda: subprocess.run(["xenstore-read", be], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
               .stdout.decode().strip() in ("5", "6", ""), 2, 0.1)
    d.sh("xenstore-write %s 6" % fe, 10, True)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
    return p.returncode


def meminfo(d):
    """dom0's unreclaimable slab, per-CPU and free memory (KiB), after dropping the caches."""
    d.sh("sync; echo 3 > /proc/sys/vm/drop_caches", 30, True)
    m = dict(re.findall(r"^(\w+):\s+(\d+) kB", open("/proc/meminfo").read(), re.M))
    return {k: int(m.get(k, 0)) for k in ("SUnreclaim", "Percpu", "MemFree")}


class Inject:
    """Traffic from dom0 to the hostile vif's frontend MAC through the bridge, from the attack on
    (netpeer.py cases with `inject`):
      flood   raw frames as fast as dom0 can send them (tools/rawflood.c, 64 per system call)
              for 4 s and until 16 MB went (at most 8 s), then one every 0.5 s until stopped;
              records their volume and how much dom0's used memory grew (rx-stall);
      gso     one 64000-byte TCP/IPv4 GSO frame with a partial checksum (PACKET_VNET_HDR), as
              a TSO-capable stack hands it to the bridge (rx-no-offloads);
      trickle one small frame every 0.5 s until stopped (rx-no-notify)."""
    SECS, MAX_SECS, VOLUME = 4, 8, 16e6

    def __init__(self, d, domid, devid, mode="flood"):
        self.d, self.mode = d, mode
        mac = subprocess.run(["xenstore-read", "/local/domain/0/backend/vif/%d/%d/mac" % (domid, devid)],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
        self.dst = d.mac_bytes(mac) if mac.count(":") == 5 else b"\xff" * 6
        self.src = d.bridge_mac()
        self.vif = "vif%d.%d" % (domid, devid)
        self.vif_stats = self.debug = None
        self.th, self.done = None, threading.Event()
        self.sent_mb, self.secs, self.grew_kb, self.err = 0.0, 0.0, None, None

    def stats(self):
        """The vif's transmit counters (what reached the backend, what it dropped) and its
        qdisc's (what the stopped queue held back or dropped)."""
        c = {}
        for k in ("tx_packets", "tx_dropped"):
            try:
                c[k] = int(open("/sys/class/net/%s/statistics/%s" % (self.vif, k)).read())
            except (OSError, ValueError):
                c[k] = None
        q = subprocess.run(["tc", "-s", "qdisc", "show", "dev", self.vif], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL).stdout.decode()
        m = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+) requeues (\d+)\)", q)
        c["qdisc_sent_dropped"] = (int(m.group(2)), int(m.group(3))) if m else None
        return c

    def backend_debug(self):
        """The backend's own view of the queue (xen-netback-rs and C netback debugfs), if any."""
        if not os.path.isdir("/sys/kernel/debug/xen-netback"):
            subprocess.run("grep -q ' /sys/kernel/debug ' /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug",
                           shell=True)
        for f in ("/sys/kernel/debug/xen-netback/%s/io_ring_q0" % self.vif,):
            try:
                return open(f).read()[-1500:]
            except OSError:
                pass
        return None

    @staticmethod
    def used_kb():
        m = dict(re.findall(r"^(\w+):\s+(\d+) kB", open("/proc/meminfo").read(), re.M))
        return int(m["MemTotal"]) - int(m["MemAvailable"])

    def start(self):
        if self.th is None:
            self.th = threading.Thread(target=self.run)
            self.th.start()

    def run(self):
        try:
            {"flood": self.flood, "gso": self.gso, "trickle": self.trickle}[self.mode]()
        except Exception as e:
            self.err = repr(e)

    def every_half_second(self, s, frame):
        """Sends `frame` on `s` every 0.5 s until stopped; the first error is kept in `err`."""
        import socket
        while not self.done.wait(0.5):
            try:
                s.send(frame, socket.MSG_DONTWAIT)
            except OSError as e:
                self.err = self.err or repr(e)

    def trickle(self):
        s = self.d.bridge_socket()
        self.every_half_second(s, self.dst + self.src + b"\x88\xb5" + b"rig-trickle".ljust(100, b"\0"))
        s.close()

    def gso(self):
        import struct
        ones = netpeer.ones_sum
        sip, dip = bytes([10, 9, 9, 1]), bytes([10, 9, 9, 2])
        payload = bytes(i & 0xff for i in range(64000))
        tcp_len = 20 + len(payload)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + tcp_len, 7, 0x4000, 64, 6, 0, sip, dip)
        ip = ip[:10] + struct.pack("!H", 0xffff - ones(ip)) + ip[12:]
        # partial checksum: the pseudo header's sum (not inverted) in the TCP checksum field
        partial = ones(sip + dip + struct.pack("!HH", 6, tcp_len))
        tcp = struct.pack("!HHIIBBHHH", 40000, 5001, 1, 0, 0x50, 0x18, 65535, partial, 0)
        # struct virtio_net_hdr: NEEDS_CSUM, GSO_TCPV4, hdr_len, gso_size, csum_start, csum_offset
        vnet = struct.pack("<BBHHHH", 1, 1, 54, 1448, 34, 16)
        s = self.d.bridge_socket(0x0800, [(263, 15, 1)])     # SOL_PACKET, PACKET_VNET_HDR
        s.send(vnet + self.dst + self.src + b"\x08\x00" + ip + tcp + payload)
        self.sent_mb = (14 + len(ip) + len(tcp) + len(payload)) / 1e6
        s.close()

    def flood(self):
        # /rig/rawflood (tools/rawflood.c): 64 frames per system call, with a send buffer large
        # enough that only the backend's own bound (or its absence) limits what piles up.
        frame = self.dst + self.src + b"\x88\xb5" + b"rig-flood".ljust(1386, b"\0")
        before, stats0 = self.used_kb(), self.stats()
        p = subprocess.Popen(["/rig/rawflood", "xenbr0", self.dst.hex(":"), self.src.hex(":"),
                              str(len(frame)), str(self.SECS), str(self.MAX_SECS), str(int(self.VOLUME))],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            out = p.communicate(timeout=self.MAX_SECS + 30)[0].decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            p.kill()
            out = p.communicate()[0].decode("utf-8", "replace") + " [killed]"
        m = re.search(r"^RAWFLOOD (\{.*\})\s*$", out, re.M)
        r = json.loads(m.group(1)) if m else {}
        self.secs = r.get("secs", 0.0)
        self.sent_mb = r.get("bytes", 0) / 1e6
        if not m or r.get("errors"):
            self.err = "rawflood rc=%s: %s" % (p.returncode, out.strip()[-300:])
        self.grew_kb = self.used_kb() - before
        stats1, self.debug = self.stats(), self.backend_debug()
        self.vif_stats = {k: (stats1[k] - stats0[k] if isinstance(stats1[k], int) and isinstance(stats0[k], int) else stats1[k])
                          for k in stats1}
        s = self.d.bridge_socket()
        self.every_half_second(s, frame)
        s.close()

    def stop(self):
        self.done.set()
        if self.th is not None:
            self.th.join(10)


NETPEER_DIR = "/tmp/netpeer"
SERVER = {"up": False}


def netpeer_start(ag):
    """Starts `netpeer.py serve` in the domU (one Python for all the cases: starting one costs
    seconds in a PV domU under TCG, a third of a case)."""
    rc, _ = ag.run("rm -rf {d}; mkdir -p {d}; (python3 /rig/netpeer.py serve --dir {d} > /tmp/netpeer.log 2>&1 &); "
                   "for i in $(seq 150); do [ -s {d}/pid ] && break; sleep 0.2; done; [ -s {d}/pid ]"
                   .format(d=NETPEER_DIR), 60, True)
    SERVER["up"] = rc == 0
    return SERVER["up"]


def netpeer_run(ag, args, timeout):
    """netpeer.py ARGS in the domU, by its server if it runs (a process of its own otherwise):
    (exit status, output). A server that is gone or did not answer is killed and restarted."""
    if not SERVER["up"]:
        return ag.run("python3 /rig/netpeer.py " + args, timeout, True)
    rc, out = ag.run("kill -0 $(cat {d}/pid) 2>/dev/null || exit 97; echo '{a}' > {d}/in && cat {d}/out"
                     .format(d=NETPEER_DIR, a=args), timeout, True)
    m = re.search(r"^NETPEER-RC (\S+)\s*$", out or "", re.M)
    if rc == 0 and m:
        return (int(m.group(1)) if m.group(1).isdigit() else 1), out
    ag.run("kill -9 $(cat {d}/pid) 2>/dev/null; rm -rf {d}".format(d=NETPEER_DIR), 20, True)
    netpeer_start(ag)
    return rc, out


def front_case(d, ag, domid, case, devid, out, label):
    """One hostile-frontend case on the fresh vif `devid`; one check (label), reported by the
    finisher this returns with the result: (result, finish), the vif's removal started in the
    background, finish() waits for it, reports the check and returns the result."""
    d.mark("HF %s" % label)
    meta = netpeer.FRONT_CASES[case]
    vif = "vif%d.%d" % (domid, devid)
    marker = kmsg_mark(label)
    box = {}

    def work():
        box["rc"], box["out"] = netpeer_run(ag, "frontend --case %s --handle %d" % (case, devid), 180)
    th = threading.Thread(target=work)
    t = time.time()
    th.start()
    carrier = set()     # carrier values seen while the tool said it was attacking
    fep = "/local/domain/%d/device/vif/%d/netpeer-phase" % (domid, devid)
    inj = Inject(d, domid, devid, meta["inject"]) if meta.get("inject") else None
    while th.is_alive():
        ph = subprocess.run(["xenstore-read", fep], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
        if ph == "attacked":
            try:
                carrier.add(open("/sys/class/net/%s/carrier" % vif).read().strip())
            except OSError:
                carrier.add("gone")
            if inj:
                inj.start()
        th.join(0.3)
    if inj:
        inj.stop()
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
    if inj and inj.err and inj.mode != "flood":
        add("dom0-inject", False, "%s: %s" % (inj.mode, inj.err))
    if meta.get("carrier_on"):
        add("no-stall-carrier-on", "0" not in carrier, "carrier values seen while the tool attacked: %s" % sorted(carrier))
    if inj and inj.mode == "flood":
        # XSA-392: what the backend keeps for a frontend that takes nothing is bounded (C: 512 KB
        # per queue), and the stall turns the carrier off. The flood offers far more: its volume
        # depends on the host's speed (rawflood, 64 frames per system call: 61 MB in 4 s here;
        # one frame per call from Python, each a trap into Xen under TCG, sent 19 to 41 MB alone,
        # 6 MB in a CI run, 3 MB in 8 s beside two other rigs), at least 4 MB, 8 times C's bound. Kept unbounded, frames take more memory than
        # their bytes (a 1400-byte frame's skb has a truesize of about 2.3 KB: 4 MB of them
        # hold over 6.5 MB); the limit is a quarter of the volume, at least 4 MiB (for the
        # queue, the bridge port and the qdisc).
        limit = max(4 * 1024, int(inj.sent_mb * 1e6 / 1024 / 4))
        add("rx-queue-bounded", inj.sent_mb >= 4 and inj.grew_kb is not None and inj.grew_kb < limit,
            "flood of %.0f MB towards the vif in %.1f s: dom0 memory in use grew by %s KiB (limit %d KiB); "
            "the vif meanwhile: %s%s" % (inj.sent_mb, inj.secs, inj.grew_kb, limit, inj.vif_stats,
                                         "; first send error: %s" % inj.err if inj.err else ""))
        add("stall-carrier-off", "0" in carrier, "carrier values seen while the tool attacked: %s" % sorted(carrier))
    # the healthy frontends are still served: the domU's first vif and the second domU (pinged
    # at the same time)
    _, op = d.sh("ping -c 2 -i 0.3 -W 2 %s >/dev/null & a=$!; ping -c 2 -i 0.3 -W 2 %s >/dev/null; b=$?; "
                 "wait $a; echo \"rc $? $b\"" % (d.DOMU_IP, d.DOMU2_IP), 20, True)
    m2 = re.search(r"rc (\d+) (\d+)", op)
    rcs = (int(m2.group(1)), int(m2.group(2))) if m2 else (None, None)
    add("healthy-vif-served", rcs[0] == 0, "ping dom0 -> domU eth0 rc=%s" % rcs[0])
    add("healthy-domu-served", rcs[1] == 0, "ping dom0 -> domU2 rc=%s" % rcs[1])
    r["info"] = dict(r.get("info", {}), devid=devid)
    if inj and inj.debug:
        r["info"]["backend_debug_after_flood"] = inj.debug
    if label != case:
        r["info"]["label"] = label
    r["dom0_log"] = [ln for ln in lines if "rig-hostile" not in ln][-12:]
    r["setup_failed"] = r.get("info", {}).get("exit") == 2 or not m
    det = {}

    def remove():
        det["rc"] = detach(d, domid, devid)
        # the backend unregisters the vif once the toolstack removed its xenstore directory,
        # which may be just after xl returns
        det["gone"] = d.wait_for(lambda: not os.path.exists("/sys/class/net/%s" % vif), 10, 0.2)
        det["end"] = time.time()

    def finish():
        """The vif's removal checked, the case's check reported."""
        th.join()
        add("vif-detach", det.get("rc") == 0 and det.get("gone"),
            "xl network-detach rc=%s, %s gone: %s" % (det.get("rc"), vif, det.get("gone")))
        apply_known(d, r)
        r["secs"] = round(det.get("end", time.time()) - t, 1)   # to the vif's removal
        out.write(json.dumps(r) + "\n")
        out.flush()
        d.check("hf-" + label, r["pass"], summary(r))
        return r
    # the vif goes away while the next case runs (finish() waits for it)
    th = threading.Thread(target=remove)
    th.start()
    return r, finish


class Attach:
    """attach() of the next case's vif in the background, while a case runs."""

    def __init__(self, d, domid, k):
        self.res = (None, "not attached")
        self.th = threading.Thread(target=self.run, args=(d, domid, k))
        self.th.start()

    def run(self, d, domid, k):
        self.res = attach(d, domid, k)

    def result(self):
        self.th.join()
        return self.res


def front_cases(d, ag, domid, cases, out, k0, devid=None, prefix=""):
    """Runs `cases`, each on a fresh vif (MAC index k0 + k; `devid`: the first case's, already
    attached). Returns (cases passed, dom0 memory after the first case, stopped early).
    The toolstack's part overlaps the cases (a third of each case's time when in series): while
    a case runs, the previous case's vif is detached and the next case's attached, except during
    the cases whose dom0 side sends to the vif and measures memory (`inject`), and after the
    first case (dom0's memory is read then, with no vif but the healthy ones)."""
    npass = setup_fail = 0
    mem0 = None
    pending = nxt = None    # the previous case's finisher; the next case's attach

    def settle():
        nonlocal pending, npass
        if pending:
            npass += pending()["pass"]
            pending = None
    for k, case in enumerate(cases):
        quiet = netpeer.FRONT_CASES[case].get("inject")
        if k > 0 or devid is None:
            devid, info = nxt.result() if nxt else attach(d, domid, k0 + k)
            nxt = None
            if devid is None:
                settle()
                d.check("hf-" + prefix + case, False, "no fresh vif: " + info)
                setup_fail += 1
                if setup_fail >= 2:
                    return npass, mem0, True
                continue
        if quiet:
            settle()
        elif k > 0 and k + 1 < len(cases):
            nxt = Attach(d, domid, k0 + k + 1)
        r, fin = front_case(d, ag, domid, case, devid, out, prefix + case)
        settle()
        pending = fin
        if k == 0:
            settle()
            mem0 = meminfo(d)
        setup_fail = setup_fail + 1 if r["setup_failed"] else 0
        if setup_fail >= 2:
            if nxt:
                dv, _ = nxt.result()
                if dv is not None:
                    detach(d, domid, dv)
            settle()
            d.check("hostile-front-aborted", False, "two cases in a row could not connect; stopping")
            return npass, mem0, True
    settle()
    return npass, mem0, False


def backend_map_mode(d, ag, domid, ag2):
    """Reloads xen-netback-rs with tx_mode=1; the healthy vifs (the domU's first, domU2's) are
    detached and attached again around it. True if the domU's healthy vif carries traffic by map
    and domU2 answers again."""
    d.mark("HF-MAP-MODE")
    ag.run("echo 1 > /sys/bus/xen/drivers_autoprobe", 20)
    ifn = d.domu_ifname(ag)
    if ifn:
        ag.run("ip link set %s down" % ifn, 20)
    rc1, o1 = d.sh("xl network-detach domu %s; r=$?; xl network-detach domu2 %s; exit $r" % (d.MAC, d.DOMU2_MAC), 60)
    gone = d.wait_for(lambda: not d.vifs(), 60, 1)
    rc2, o2 = d.sh("rmmod xen_netback_rs && modprobe xen_netback_rs tx_mode=1 && "
                   "cat /sys/module/xen_netback_rs/parameters/tx_mode", 60)
    rc3, o3 = d.sh("xl network-attach domu bridge=xenbr0 mac=%s && xl network-attach domu2 bridge=xenbr0 mac=%s"
                   % (d.MAC, d.DOMU2_MAC), 90)
    vif = d.vif_up(60)
    ifn = d.domu_net_up(ag) if rc3 == 0 else None
    ifn2 = d.domu_net_up(ag2, mac=d.DOMU2_MAC, ip=d.DOMU2_IP) if rc3 == 0 and ag2 else None
    ag.run("echo 0 > /sys/bus/xen/drivers_autoprobe", 20)
    domu2_ok = bool(ifn2) and d.wait_for(lambda: d.sh("ping -c 1 -W 1 %s" % d.DOMU2_IP, 10, True)[0] == 0, 30, 1)
    ok = False
    sent = None
    if vif and ifn:
        d.wait_for(lambda: d.sh("ping -c 1 -W 1 %s" % d.DOMU_IP, 10, True)[0] == 0, 30, 1)
        ag.run("ping -c 5 -i 0.2 -s 1000 %s" % d.DOM0_IP, 30)
        _, st = d.sh("ethtool -S %s" % vif, 20, True)
        m = re.search(r"tx_zerocopy_sent:\s+(\d+)", st)
        sent = int(m.group(1)) if m else None
        ok = sent is not None and sent >= 5
    return d.check("hostile-front-map-mode", rc1 == 0 and gone and rc2 == 0 and o2.strip().endswith("1") and ok
                   and domu2_ok, "detach rc=%s gone=%s; reload rc=%s tx_mode=%s; attach rc=%s vif=%s domU netdev=%s; "
                   "tx_zerocopy_sent=%s after 5 pings of 1000 bytes; domU2 netdev=%s answers=%s"
                   % (rc1, gone, rc2, o2.strip()[-40:], rc3, vif, ifn, sent, ifn2, domu2_ok))


def hostile_front(d, ag, domid):
    d.mark("HOSTILE-FRONT")
    out = open(os.path.join(d.OUT, "hostile-front.jsonl"), "w")
    rc, o = ag.run("echo 0 > /sys/bus/xen/drivers_autoprobe && cat /sys/bus/xen/drivers_autoprobe", 20)
    devid, info = attach(d, domid, 0)
    rc3, o3 = ag.run("ls -d /sys/bus/xen/devices/vif-%s && ! [ -e /sys/bus/xen/devices/vif-%s/driver ]" % (devid, devid), 20)
    if not d.check("hostile-front-setup", rc == 0 and devid is not None and rc3 == 0,
                   "autoprobe off rc=%s; %s; vif-%s unbound in domU rc=%s %s" % (rc, info, devid, rc3, o3.strip()[-200:])):
        return
    # the second, healthy domU every case checks is served
    stage, domid2, ag2, _, detail = d.second_domu()
    up = stage == "up" and d.wait_for(lambda: d.sh("ping -c 1 -W 1 %s" % d.DOMU2_IP, 10, True)[0] == 0, 30, 1)
    if not d.check("hostile-front-domu2", up, detail):
        return
    cases = netpeer.select_cases(d.CONF.get("hostile_cases", ""), FRONT_CASES_ORDER)
    d.check("hostile-front-server", netpeer_start(ag), "netpeer.py serve in the domU")
    npass, mem0, stopped = front_cases(d, ag, domid, cases, out, 0, devid)
    d.metric("hostile-front-cases-passed", npass, "of %d" % len(cases))
    # Leaks: every case created and destroyed a vif; dom0's unreclaimable slab and per-CPU
    # memory must not grow with the number of cases (a vif, its queues and rings leaked per case
    # would add tens of KiB each). Measured from the end of the first case (caches warm).
    if mem0 and len(cases) > 1:
        mem1 = meminfo(d)
        grow = {k: mem1[k] - mem0[k] for k in mem0}
        for k, v in grow.items():
            d.metric("hostile-front-%s-growth" % k, v, "KiB over %d cases" % (len(cases) - 1))
        limit = 1024 + 32 * (len(cases) - 1)
        d.check("hostile-front-no-leak", grow["SUnreclaim"] < limit and grow["Percpu"] < limit,
                "dom0 growth over %d vifs: SUnreclaim %+d KiB, Percpu %+d KiB, MemFree %+d KiB (limit %d KiB)"
                % (len(cases) - 1, grow["SUnreclaim"], grow["Percpu"], grow["MemFree"], limit))
    # the Rust backend's map mode: its own guest-TX data path, a second pass of those cases
    map_cases = [c for c in netpeer.MAP_CASES if c in cases]
    if d.BACK == "rs" and map_cases and not stopped and backend_map_mode(d, ag, domid, ag2):
        n, _, _ = front_cases(d, ag, domid, map_cases, out, len(cases), prefix="map-")
        d.metric("hostile-front-map-cases-passed", n, "of %d" % len(map_cases))
    ag.run("echo 1 > /sys/bus/xen/drivers_autoprobe", 20)
    d.ping_check("hostile-front-final-ping", d.sh, d.DOMU_IP, 5)
    d.sh("xl destroy domu2", 60, True)


def run(d, ag, domid, ifn, vif):
    """d: the dom0.py module (helpers: sh, check, metric, mark, ping_check, wait_for, CONF, OUT)."""
    if d.SCEN == "hostile-back":
        hostile_back(d, ag, domid)
    elif d.SCEN == "hostile-front":
        hostile_front(d, ag, domid)
