#!/usr/bin/python3
"""Hostile Xen PV-net peers: a hostile backend (dom0, against a netfront) and a hostile frontend
(a domU, against a netback), both in userspace.

  netpeer.py backend  --case CASE --domid D [--handle H] [--peer-cmd 'ssh root@domu']
  netpeer.py frontend --case CASE [--handle H]
  netpeer.py list [backend|frontend]
  netpeer.py serve [--dir D]      (requests like the above from the FIFO D/in: serve())

backend: runs in dom0 with the xen-backend bus' drivers_autoprobe off (or no netback loaded for
that vif). It creates the xenstore nodes of a new vif <H> for domain D (backend and frontend
directories), plays the backend side (feature keys, state machine), maps the frontend's rings with
/dev/xen/gntdev, binds its event channel with /dev/xen/evtchn, and then misbehaves as CASE says.
With --peer-cmd (a command prefix that runs a shell command in the domU) it also observes the
domU: its kernel log, the netdev counters, and a fresh connect (unbind and rebind of the frontend).

frontend: runs as root in a domU whose vif <H> has no frontend driver bound (drivers_autoprobe off
on the xen bus, or the netfront module not loaded). It shares its rings with /dev/xen/gntalloc,
allocates an event channel with /dev/xen/evtchn, writes the frontend keys and misbehaves as CASE
says. Its own assertions are what a frontend can see (the backend's state, responses, silence);
the expected dom0 kernel log is printed in the result (peer_log) for the caller to check.

Each case prints one line:  RESULT {"side", "case", "pass", "checks": [...], "xsa", ...}
Exit status 0 iff the case passed, 2 on a setup error (no connection). Python 3 standard library.
"""
import argparse, fnmatch, json, os, re, shlex, struct, subprocess, sys, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from xenproto import *  # noqa: E402,F401,F403
import xenproto as xp  # noqa: E402

OOPS_RE = re.compile(r"\bOops\b|\bBUG:|Kernel panic|general protection|Unable to handle|\bWARNING: (?!g\.e\. )|"
                     r"soft lockup|blocked for more than|stack-protector|double free|refcount_t")
KNOWN_RE = re.compile(r"WARNING: include/linux/mm\.h:\d+ at get_page\+.*\[xen_netfront\]|WARNING: g\.e\. ")


def log(msg):
    print("netpeer: " + msg, file=sys.stderr, flush=True)


class Result:
    def __init__(self, side, case, meta):
        self.d = {"side": side, "case": case, "xsa": meta.get("xsa", ""), "desc": meta.get("desc", ""),
                  "expect": meta.get("expect", ""), "checks": [], "info": {}}
        self.t0 = time.time()   # each check records its time since here ("t")

    def check(self, name, ok, detail=""):
        t = round(time.time() - self.t0, 2)
        self.d["checks"].append({"name": name, "pass": bool(ok), "detail": str(detail)[:600], "t": t})
        log("  %-28s %s %s (%.2f s)" % (name, "ok" if ok else "FAIL", str(detail)[:200], t))
        return bool(ok)

    def info(self, k, v):
        self.d["info"][k] = v

    def emit(self):
        self.d["pass"] = bool(self.d["checks"]) and all(c["pass"] for c in self.d["checks"])
        print("RESULT " + json.dumps(self.d), flush=True)
        return self.d


# ============================================================================================
#  Peer: how the tool observes the other domain (optional)
# ============================================================================================
class Peer:
    """run(cmd, timeout) -> (rc, output) in the other domain, or None (blind)."""

    def __init__(self, run=None):
        self.run_fn = run
        self.n = 0

    @classmethod
    def from_cmd(cls, prefix):
        if not prefix:
            return cls(None)

        def run(cmd, timeout=60, quiet=True):
            try:
                p = subprocess.run(shlex.split(prefix) + [cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   timeout=timeout)
                return p.returncode, p.stdout.decode(errors="replace")
            except subprocess.TimeoutExpired:
                return 124, ""
        return cls(run)

    @property
    def blind(self):
        return self.run_fn is None

    def run(self, cmd, timeout=60):
        if self.run_fn is None:
            return None, ""
        return self.run_fn(cmd, timeout, True)

    def mark(self, what):
        """Put a marker into the peer's kernel log; log_since(marker) returns what follows it."""
        self.n += 1
        m = "netpeer-mark-%d-%s" % (self.n, re.sub(r"[^\w.-]", "_", what))
        self.run("echo %s > /dev/kmsg" % m, 20)
        return m

    def log_since(self, marker):
        rc, out = self.run("dmesg", 30)
        if rc != 0:
            return None
        lines = out.splitlines()
        for i in range(len(lines) - 1, -1, -1):
            if marker in lines[i]:
                return lines[i + 1:]
        return lines

    def ifname(self, mac):
        rc, out = self.run("for d in /sys/class/net/*; do [ \"$(cat $d/address 2>/dev/null)\" = %s ] && basename $d; done; true" % mac, 20)
        out = (out or "").strip().split("\n")[0] if rc == 0 else ""
        return out or None

    def stat(self, ifn, name):
        rc, out = self.run("cat /sys/class/net/%s/statistics/%s" % (ifn, name), 20)
        try:
            return int(out.strip()) if rc == 0 else None
        except ValueError:
            return None

    def wait_stat(self, ifn, name, want, timeout=3.0):
        """Polls a counter until it reads `want` (at most `timeout` seconds); the last value read."""
        end = time.time() + timeout
        while True:
            v = self.stat(ifn, name)
            if v == want or time.time() >= end:
                return v
            time.sleep(0.2)

    def alive(self):
        rc, out = self.run("echo alive", 30)
        return rc == 0 and "alive" in out


def scan_log(lines, want_res, forbid_res=()):
    """(all wanted regexes found, missing list, oops lines, forbidden hits)"""
    text = "\n".join(lines or [])
    missing = [w for w in want_res if not re.search(w, text)]
    oops = [ln for ln in (lines or []) if OOPS_RE.search(ln) and not KNOWN_RE.search(ln)]
    forb = [f for f in forbid_res if re.search(f, text)]
    return not missing, missing, oops, forb


# ============================================================================================
#  Hostile backend (dom0) against a netfront
# ============================================================================================
class Backend:
    """Plays the backend of vif <handle> of domain <domid>: xenstore nodes, state machine (a
    thread reacting to the frontend's state), ring mapping, event channel."""

    def __init__(self, domid, handle, mac):
        self.domid, self.handle, self.mac = domid, handle, mac
        self.bep = "/local/domain/0/backend/vif/%d/%d" % (domid, handle)
        self.fep = "/local/domain/%d/device/vif/%d" % (domid, handle)
        self.xs = Xenstore()
        self.gd = Gntdev()
        self.ev = Evtchn()
        self.lock = threading.RLock()
        self.connected = threading.Event()
        self.connects = 0
        self.tx = self.rx = None
        self.port = None
        self.ring_idx = []
        self.kept = []          # gntdev indexes kept mapped on purpose (XSA-396 cases)
        self.ctrl_mode = None   # control-ring behaviour (CTRL_MODES) when feature-ctrl-ring is offered
        self.ctrl = self.ctrl_port = self.ctrl_thread = None
        self.ctrl_idx = None
        self.ctrl_log = []      # (id, type, data0, status answered) of each control request seen
        self.keep_rings = False
        self.stop = False
        self.events = []
        self.thread = None

    # -- xenstore nodes, as the toolstack would write them
    def create(self, features=None, fe_keys=None, ctrl_mode=None):
        d, h = self.domid, self.handle
        feats = {"feature-sg": 1, "feature-gso-tcpv4": 1, "feature-gso-tcpv6": 1, "feature-ipv6-csum-offload": 1,
                 "feature-rx-copy": 1, "feature-rx-flip": 0, "feature-split-event-channels": 0}
        feats.update(features or {})
        self.ctrl_mode = ctrl_mode
        if ctrl_mode:
            feats["feature-ctrl-ring"] = 1
        self.xs.rm(self.bep)
        self.xs.rm(self.fep)

        def nodes(t):
            self.xs.mkdir(self.bep, t)
            self.xs.set_perms(self.bep, ["n0", "r%d" % d], t)
            for k, v in dict(feats, **{"frontend": self.fep, "frontend-id": d, "online": 1, "state": XB_INITIALISING,
                                       "handle": h, "mac": self.mac, "script": "/bin/true", "hotplug-status": "connected",
                                       "type": "vif"}).items():
                if v is not None:
                    self.xs.write("%s/%s" % (self.bep, k), v, t)
            self.xs.mkdir(self.fep, t)
            self.xs.set_perms(self.fep, ["n%d" % d, "r0"], t)
            for k, v in [("backend", self.bep), ("backend-id", 0), ("handle", h), ("mac", self.mac)] + \
                    sorted((fe_keys or {}).items()) + [("state", XB_INITIALISING)]:
                self.xs.write("%s/%s" % (self.fep, k), v, t)
        self.xs.transact(nodes)
        self.xs.watch(self.fep + "/state", "fe")
        self.thread = threading.Thread(target=self._machine, daemon=True)
        self.thread.start()

    def set_state(self, s):
        self.xs.write(self.bep + "/state", s)

    def fe_state(self):
        return self.xs.state(self.fep)

    def be_state(self):
        return self.xs.state(self.bep)

    # -- state machine (thread)
    def _machine(self):
        while not self.stop:
            ev = self.xs.wait_event(0.5)
            if ev is None and not self.stop:
                pass
            try:
                self.step()
            except Exception as e:  # keep serving; report
                self.events.append("machine: %r" % (e,))
                time.sleep(0.2)

    def step(self):
        with self.lock:
            fe, be = self.fe_state(), self.be_state()
            if fe == XB_INITIALISING and be in (XB_INITIALISING, XB_CLOSED, XB_CLOSING):
                self._disconnect()
                self.set_state(XB_INITWAIT)
                self.events.append("fe Initialising -> be InitWait")
            elif fe == XB_CONNECTED and be == XB_INITWAIT:
                self._connect()
            elif fe == XB_CLOSING and be not in (XB_CLOSING, XB_CLOSED):
                self._disconnect()
                self.set_state(XB_CLOSING)
                self.events.append("fe Closing -> be Closing")
            elif fe == XB_CLOSED and be != XB_CLOSED:
                self._disconnect()
                self.set_state(XB_CLOSED)
                self.events.append("fe Closed -> be Closed")

    def _connect(self):
        f = self.fep
        txr = int(self.xs.read(f + "/tx-ring-ref"))
        rxr = int(self.xs.read(f + "/rx-ring-ref"))
        evt = self.xs.read(f + "/event-channel", "") or self.xs.read(f + "/event-channel-tx", "")
        ti, tm = self.gd.map(self.domid, txr, True)
        ri, rm = self.gd.map(self.domid, rxr, True)
        self.ring_idx = [ti, ri]
        self.tx = Ring(tm, TX_ENTRY, TX_RING_SIZE)
        self.rx = Ring(rm, RX_ENTRY, RX_RING_SIZE)
        self.port = self.ev.bind_interdomain(self.domid, int(evt))
        self.tx_cons = self.tx.rsp_prod      # fresh rings: nothing consumed or answered yet
        self.tx_rsp = self.tx.rsp_prod
        self.rx_cons = self.rx.rsp_prod
        self.rx_rsp = self.rx.rsp_prod
        cref = self.xs.read(f + "/ctrl-ring-ref", "")
        if self.ctrl_mode and cref:
            cevt = self.xs.read(f + "/event-channel-ctrl", "")
            self.ctrl_idx, cm = self.gd.map(self.domid, int(cref), True)
            self.ctrl = Ring(cm, CTRL_ENTRY, CTRL_RING_SIZE)
            self.ctrl_port = self.ev.bind_interdomain(self.domid, int(cevt))
            self.ctrl_thread = threading.Thread(target=self._ctrl_serve, args=(self.ctrl,), daemon=True)
            self.ctrl_thread.start()
        self.set_state(XB_CONNECTED)
        self.connects += 1
        self.events.append("fe Connected -> be Connected (tx-ring-ref %d rx-ring-ref %d evtchn %s -> port %d)" % (txr, rxr, evt, self.port))
        self.connected.set()

    def _disconnect(self):
        self.connected.clear()
        if self.port is not None:
            self.ev.unbind(self.port)
            self.port = None
        if self.ctrl is not None:
            ring, self.ctrl = self.ctrl, None
            self.ctrl_thread.join(2)
            self.ev.unbind(self.ctrl_port)
            self.gd.unmap(self.ctrl_idx)
            self.ctrl_port = self.ctrl_idx = self.ctrl_thread = None
        if not self.keep_rings:
            for i in self.ring_idx:
                self.gd.unmap(i)
            self.ring_idx = []
        self.tx = self.rx = None

    def _ctrl_answer(self, rid, rtype, data):
        """The response (id, type, status, data) to one control request in self.ctrl_mode, or
        None to leave it unanswered."""
        m = self.ctrl_mode
        if m == "silent":
            return None
        if m == "bad-id":
            return (rid ^ 0x5a5a, rtype, CTRL_STATUS_SUCCESS, 0)
        if m == "bad-status":
            return (rid, rtype, 0x1234, 0)
        value = 0
        if rtype == CTRL_GET_HASH_FLAGS:
            value = 0xffffffff if m == "garbage" else 0xf      # IPv4, IPv4+TCP, IPv6, IPv6+TCP
        elif rtype == CTRL_GET_HASH_MAPPING_SIZE:
            value = 0xffffffff if m == "garbage" else 128
        elif rtype == CTRL_SET_HASH_KEY and m == "arg-kept":
            idx, _ = self.gd.map(self.domid, data[0], False)    # XSA-396: never unmapped until release_kept()
            self.kept.append(idx)
        return (rid, rtype, CTRL_STATUS_SUCCESS, value)

    def _ctrl_serve(self, ring):
        """Answers the frontend's control requests (polled) until the ring is disconnected."""
        cons = 0   # a fresh ring: the frontend starts at 0
        rsp = 0
        while self.ctrl is ring and not self.stop:
            prod = ring.req_prod
            while cons != prod and (prod - cons) & 0xffffffff <= CTRL_RING_SIZE:
                rid, rtype, d0, d1, d2 = ring.get(cons, CTRL_REQ)
                cons = (cons + 1) & 0xffffffff
                a = self._ctrl_answer(rid, rtype, (d0, d1, d2))
                self.ctrl_log.append((rid, rtype, d0, None if a is None else a[2]))
                if a is None:
                    continue
                ring.put(rsp, CTRL_RSP, *a)
                rsp = (rsp + 1) & 0xffffffff
                ring.rsp_prod = (rsp + 1000) & 0xffffffff if self.ctrl_mode == "prod-jump" else rsp
                self.ev.notify(self.ctrl_port)
            time.sleep(0.005)

    def release_kept(self):
        for i in self.kept:
            self.gd.unmap(i)
        self.kept = []

    def wait_connected(self, timeout):
        return self.connected.wait(timeout)

    def destroy(self, timeout=30):
        """Orderly close (Closing, wait for the frontend to close), then remove the nodes."""
        self.release_kept()
        with self.lock:
            self.set_state(XB_CLOSING)
        st = self.xs.wait_state(self.fep, {XB_CLOSED, XB_UNKNOWN}, timeout)
        self.stop = True
        if self.thread:
            self.thread.join(5)
        with self.lock:
            self._disconnect()
            self.set_state(XB_CLOSED)
            self.xs.unwatch(self.fep + "/state", "fe")
            self.xs.rm(self.fep)
            self.xs.rm(self.bep)
        return st

    def leave(self, timeout=15):
        """Stop serving without removing the device (its frontend may not survive a teardown)."""
        self.release_kept()
        with self.lock:
            self.set_state(XB_CLOSING)
        st = self.xs.wait_state(self.fep, {XB_CLOSED, XB_UNKNOWN}, timeout)
        self.stop = True
        if self.thread:
            self.thread.join(5)
        with self.lock:
            self._disconnect()
            self.xs.unwatch(self.fep + "/state", "fe")
        return st

    def close(self):
        self.stop = True
        for o in (self.gd, self.ev, self.xs):
            try:
                o.close()
            except Exception:
                pass

    # -- ring helpers
    def notify(self):
        if self.port is not None:
            self.ev.notify(self.port)

    def tx_unconsumed(self):
        return (self.tx.req_prod - self.tx_cons) & 0xffffffff

    def wait_tx(self, n, timeout):
        end = time.time() + timeout
        while time.time() < end:
            if self.tx and self.tx_unconsumed() >= n:
                return True
            time.sleep(0.05)
        return False

    def take_tx(self):
        """Consume all posted TX requests: list of slots (idx, kind, tuple) with kind req/extra."""
        slots, extra_next = [], False
        prod = self.tx.req_prod
        while self.tx_cons != prod:
            i = self.tx_cons
            if extra_next:
                e = self.tx.get(i, EXTRA)
                slots.append((i, "extra", e))
                extra_next = bool(e[1] & EXTRA_FLAG_MORE)
            else:
                r = self.tx.get(i, TX_REQ)
                slots.append((i, "req", r))
                extra_next = bool(r[2] & NETTXF_extra_info)
            self.tx_cons = (self.tx_cons + 1) & 0xffffffff
        return slots

    def tx_respond(self, slots, status=RSP_OKAY, push=True):
        for i, kind, v in slots:
            if kind == "extra":
                self.tx.put(self.tx_rsp, TX_RSP, 0, RSP_NULL)
            else:
                self.tx.put(self.tx_rsp, TX_RSP, v[3], status)
            self.tx_rsp = (self.tx_rsp + 1) & 0xffffffff
        if push:
            self.tx.rsp_prod = self.tx_rsp
            self.notify()

    def serve_tx(self):
        s = self.take_tx()
        self.tx_respond(s)
        return s

    def rx_posted(self):
        return (self.rx.req_prod - self.rx_cons) & 0xffffffff

    def rx_take(self):
        """Next posted RX request (id, gref) or None."""
        if not self.rx_posted():
            return None
        rid, _, gref = self.rx.get(self.rx_cons, RX_REQ)
        self.rx_cons = (self.rx_cons + 1) & 0xffffffff
        return rid, gref

    def rx_fill(self, gref, data, offset=0, keep=False):
        idx, m = self.gd.map(self.domid, gref, True)
        m[offset:offset + len(data)] = data
        if keep:
            self.kept.append(idx)
        else:
            self.gd.unmap(idx)

    def rx_put(self, rid, offset, flags, status):
        self.rx.put(self.rx_rsp, RX_RSP, rid & 0xffff, offset, flags, status)
        self.rx_rsp = (self.rx_rsp + 1) & 0xffffffff

    def rx_put_extra(self, raw):
        self.rx.put_raw(self.rx_rsp, raw.ljust(RX_ENTRY, b"\0"))
        self.rx_rsp = (self.rx_rsp + 1) & 0xffffffff

    def rx_push(self):
        self.rx.rsp_prod = self.rx_rsp
        self.notify()

    def rx_deliver(self, frame, keep=False, flags=0):
        """One good single-slot RX packet; returns the request used."""
        r = self.rx_take()
        if r is None:
            return None
        self.rx_fill(r[1], frame, 0, keep)
        self.rx_put(r[0], 0, flags, len(frame))
        self.rx_push()
        return r


FE_MAC_SRC = "00:16:3e:5e:ee:01"   # the source MAC of frames the hostile backend sends


def good_frame(mac):
    return eth_frame(b"\xff" * 6, mac_bytes(FE_MAC_SRC), b"netpeer-good")


# --- backend cases: each gets (be, res, ctx) and returns nothing; ctx has send_tx(n) --------------
def bc_good(be, res, ctx):
    """control: a correct backend. TX answered OKAY, RX delivered."""
    ctx.send_tx(3)
    ok = be.wait_tx(1, 20)
    s = be.serve_tx() if ok else []
    res.check("tx-requests-seen", ok, "%d slots" % len(s))
    res.check("rx-delivered", be.rx_deliver(good_frame(be.mac)) is not None, "posted rx %d" % be.rx_posted())


def _need_tx(be, res, ctx, n=1):
    ctx.send_tx(max(n, 2))
    ok = be.wait_tx(n, 20)
    res.check("tx-requests-seen", ok, "unconsumed %d" % (be.tx_unconsumed() if be.tx else -1))
    return ok


def bc_tx_rsp_prod_jump(be, res, ctx):
    if not _need_tx(be, res, ctx):
        return
    be.take_tx()
    be.tx.rsp_prod = (be.tx_rsp + TX_RING_SIZE + 44) & 0xffffffff
    be.notify()


def bc_tx_rsp_prod_back(be, res, ctx):
    if not _need_tx(be, res, ctx):
        return
    s = be.take_tx()
    be.tx_respond(s)           # a correct batch first, so the frontend's rsp_cons moves
    time.sleep(1)
    be.tx.rsp_prod = (be.tx_rsp - 5) & 0xffffffff
    be.notify()


def bc_tx_bad_id(be, res, ctx):
    if not _need_tx(be, res, ctx):
        return
    s = be.take_tx()
    be.tx.put(be.tx_rsp, TX_RSP, 0x1234, RSP_OKAY)
    be.tx_rsp += 1
    be.tx.rsp_prod = be.tx_rsp
    be.notify()
    res.info("slots", len(s))


def bc_tx_inactive_id(be, res, ctx):
    if not _need_tx(be, res, ctx):
        return
    s = be.take_tx()
    used = {v[3] for _, k, v in s if k == "req"}
    bogus = next(i for i in range(TX_RING_SIZE - 1, 0, -1) if i not in used)
    be.tx.put(be.tx_rsp, TX_RSP, bogus, RSP_OKAY)
    be.tx_rsp += 1
    be.tx.rsp_prod = be.tx_rsp
    be.notify()
    res.info("bogus_id", bogus)


def bc_tx_dup_id(be, res, ctx):
    if not _need_tx(be, res, ctx):
        return
    s = be.take_tx()
    first = [x for x in s if x[1] == "req"][:1]
    be.tx_respond(first, push=False)
    be.tx_respond(first, push=True)      # the same id again
    res.info("dup_id", first[0][2][3])


def bc_tx_grant_kept(be, res, ctx):
    """XSA-396 (CVE-2022-23037): the backend still maps a TX grant when it answers."""
    if not _need_tx(be, res, ctx):
        return
    s = be.take_tx()
    req = [x for x in s if x[1] == "req"][0][2]
    idx, _ = be.gd.map(be.domid, req[0], False)     # TX grants are read-only
    be.kept.append(idx)
    be.tx_respond(s)
    res.info("kept_gref", req[0])


def bc_tx_page_leak(be, res, ctx):
    """XSA-403: with trusted=0 in its xenstore directory the frontend must bounce TX data into
    zeroed pages: nothing but the packet may be readable in a granted page."""
    if not _need_tx(be, res, ctx, 2):
        return
    s = be.take_tx()
    before, after, checked, follower = [], [], 0, False
    for _, kind, v in s:
        if kind != "req":
            continue
        multi = follower or (v[2] & NETTXF_more_data)
        follower = bool(v[2] & NETTXF_more_data)
        if multi:      # the first slot's size is the packet's: check single-slot packets only
            continue
        checked += 1
        idx, m = be.gd.map(be.domid, v[0], False)
        page = bytes(m[0:PAGE])
        be.gd.unmap(idx)
        off, size = v[1], v[4]
        nb = [i for i in range(off) if page[i]]
        na = [i for i in range(off + size, PAGE) if page[i]]
        if nb:
            before.append("gref %d off %d size %d: %d non-zero bytes before the data (%s)" % (v[0], off, size, len(nb), page[:off].hex()[:64]))
        if na:
            after.append("gref %d off %d size %d: %d non-zero bytes after the data, first at %d" % (v[0], off, size, len(na), na[0]))
    be.tx_respond(s)
    res.check("no-leak-after-data", checked and not after,
              "; ".join(after[:3]) or "%d single-slot packets: zeros after the data" % checked)
    res.check("no-leak-before-data", checked and not before,
              "; ".join(before[:3]) or "%d single-slot packets: zeros before the data" % checked)


def bc_rx_rsp_prod_jump(be, res, ctx):
    be.rx.rsp_prod = (be.rx_rsp + RX_RING_SIZE + 44) & 0xffffffff
    be.notify()


def bc_rx_rsp_prod_back(be, res, ctx):
    be.rx_deliver(good_frame(be.mac))
    time.sleep(1)
    be.rx.rsp_prod = (be.rx_rsp - 3) & 0xffffffff
    be.notify()


def bc_rx_offset_size(be, res, ctx):
    r = be.rx_take()
    be.rx_fill(r[1], good_frame(be.mac), 0)
    be.rx_put(r[0], 4000, 0, 200)        # 4000 + 200 > 4096
    be.rx_push()


def bc_rx_status_negative(be, res, ctx):
    r = be.rx_take()
    be.rx_put(r[0], 0, 0, RSP_ERROR)
    be.rx_push()


def bc_rx_bad_id(be, res, ctx):
    """ids never posted and repeated (the C frontend locates buffers by ring index, not id)."""
    f = good_frame(be.mac)
    for rid in (0xffff, 0xffff, 0x7777):
        r = be.rx_take()
        be.rx_fill(r[1], f, 0)
        be.rx_put(rid, 0, 0, len(f))
    be.rx_push()


def bc_rx_extra_bad_type(be, res, ctx):
    f = good_frame(be.mac)
    r = be.rx_take()
    be.rx_fill(r[1], f, 0)
    be.rx_put(r[0], 0, NETRXF_extra_info, len(f))
    be.rx_take()
    be.rx_put_extra(extra_raw(9))
    be.rx_push()


def bc_rx_extra_missing(be, res, ctx):
    f = good_frame(be.mac)
    r = be.rx_take()
    be.rx_fill(r[1], f, 0)
    be.rx_put(r[0], 0, NETRXF_extra_info, len(f))    # and no extra slot follows
    be.rx_push()


def _rx_gso(be, size, gtype):
    f = good_frame(be.mac)
    r = be.rx_take()
    be.rx_fill(r[1], f, 0)
    be.rx_put(r[0], 0, NETRXF_extra_info, len(f))
    be.rx_take()
    be.rx_put_extra(extra_gso(size, gtype))
    be.rx_push()


def bc_rx_gso_zero(be, res, ctx):
    _rx_gso(be, 0, GSO_TYPE_TCPV4)


def bc_rx_gso_bad_type(be, res, ctx):
    _rx_gso(be, 1400, 7)


def bc_rx_too_many_slots(be, res, ctx):
    f = good_frame(be.mac)
    n = NR_SLOTS_MIN + 4
    for k in range(n):
        r = be.rx_take()
        be.rx_fill(r[1], f, 0)
        be.rx_put(r[0], 0, NETRXF_more_data if k < n - 1 else 0, len(f))
    be.rx_push()


def bc_rx_need_more_slots(be, res, ctx):
    f = good_frame(be.mac)
    r = be.rx_take()
    be.rx_fill(r[1], f, 0)
    be.rx_put(r[0], 0, NETRXF_more_data, len(f))     # more_data on the last response
    be.rx_push()


def bc_rx_grant_kept(be, res, ctx):
    """XSA-396 (CVE-2022-23042): the backend keeps an RX grant mapped after answering."""
    r = be.rx_deliver(good_frame(be.mac), keep=True)
    res.info("kept_gref", r[1] if r else None)


def bc_event_storm(be, res, ctx):
    """XSA-391 (CVE-2021-28712): event storm from the backend."""
    n, t0 = 0, time.time()
    while time.time() - t0 < ctx.storm_secs:
        for _ in range(200):
            be.notify()
        n += 200
    res.info("events_sent", n)
    res.info("events_per_s", round(n / (time.time() - t0)))


def bc_ctrl(be, res, ctx):
    """Control-ring cases (the attack happened at connect time, when the frontend set up RSS):
    wait until the frontend is done with the ring, and record what it asked and got."""
    end = time.time() + 15
    while time.time() < end and not (ctx.peer.blind or ctx.rss_logged()):
        time.sleep(0.5)
    res.info("ctrl_requests", be.ctrl_log[:16])
    res.check("ctrl-requests-seen", len(be.ctrl_log) > 0, "%d control requests, first %s"
              % (len(be.ctrl_log), be.ctrl_log[:1]))


# Control-ring behaviours of the hostile backend (feature-ctrl-ring offered; Backend._ctrl_answer).
# The C netfront has no control ring: these cases run against frontends that use it (front=rs).
CTRL_RSS_ON = r"RSS: Toeplitz, hash types 0xf, 128 mapping entries"
# the error's name, or its number where the kernel has no CONFIG_SYMBOLIC_ERRNAME (the rig's)
CTRL_RSS_OFF = r"RSS setup failed \((%s)\): RSS stays off"
CTRL_ETIMEDOUT, CTRL_EPROTO = r"ETIMEDOUT|Error\(-?110\)", r"EPROTO|Error\(-?71\)"
CTRL_CASES = {
    "ctrl-good": dict(ctrl_mode="good", desc="control ring answered correctly (control case)", log=[CTRL_RSS_ON]),
    "ctrl-silent": dict(ctrl_mode="silent", desc="control requests never answered",
                        log=[CTRL_RSS_OFF % CTRL_ETIMEDOUT]),
    "ctrl-bad-id": dict(ctrl_mode="bad-id", desc="control response with another request's id",
                        log=[CTRL_RSS_OFF % CTRL_EPROTO]),
    "ctrl-bad-status": dict(ctrl_mode="bad-status", desc="control response with an unknown status",
                            log=[CTRL_RSS_OFF % CTRL_EPROTO]),
    "ctrl-prod-jump": dict(ctrl_mode="prod-jump", xsa="XSA-391 hardening",
                           desc="control rsp_prod beyond rsp_cons + ring size", log=[CTRL_RSS_OFF % CTRL_EPROTO]),
    "ctrl-garbage": dict(ctrl_mode="garbage", desc="GET_HASH_FLAGS and GET_HASH_MAPPING_SIZE answer 0xffffffff",
                         log=[CTRL_RSS_ON]),
    "ctrl-arg-kept": dict(ctrl_mode="arg-kept", xsa="XSA-396",
                          desc="the backend keeps the SET_HASH_KEY argument page mapped", log=[CTRL_RSS_ON]),
}

# expect: broken = the frontend must mark itself broken (and ignore the device until reconnect);
#         drop = the packet is dropped, the device keeps working; survive = no crash, keeps working
BACK_CASES = {
    "good": dict(fn=bc_good, expect="works", desc="a correct backend (control)", log=[]),
    "tx-rsp-prod-jump": dict(fn=bc_tx_rsp_prod_jump, expect="broken", xsa="XSA-391 hardening",
                             desc="TX rsp_prod beyond rsp_cons + ring size", log=[r"Illegal number of responses", r"Disabled for further use"]),
    "tx-rsp-prod-back": dict(fn=bc_tx_rsp_prod_back, expect="broken", xsa="XSA-391 hardening",
                             desc="TX rsp_prod moved backwards", log=[r"Illegal number of responses", r"Disabled for further use"]),
    "tx-bad-id": dict(fn=bc_tx_bad_id, expect="broken", xsa="XSA-391 hardening",
                      desc="TX response id >= ring size", log=[r"Response has incorrect id", r"Disabled for further use"]),
    "tx-inactive-id": dict(fn=bc_tx_inactive_id, expect="broken", xsa="XSA-391 hardening",
                           desc="TX response for an id never posted", log=[r"Response for inactive request", r"Disabled for further use"]),
    "tx-dup-id": dict(fn=bc_tx_dup_id, expect="broken", xsa="XSA-391 hardening",
                      desc="two TX responses with the same id", log=[r"Response for inactive request", r"Disabled for further use"]),
    "tx-grant-kept": dict(fn=bc_tx_grant_kept, expect="broken", xsa="XSA-396",
                          desc="TX grant still mapped by the backend when it answers",
                          log=[r"Grant still in use by backend domain", r"Disabled for further use"]),
    "tx-page-leak": dict(fn=bc_tx_page_leak, expect="works", xsa="XSA-403", fe_keys={"trusted": 0},
                         desc="trusted=0: granted TX pages hold nothing but the packet", log=[]),
    "rx-rsp-prod-jump": dict(fn=bc_rx_rsp_prod_jump, expect="broken", wedges_c=True, xsa="XSA-391 hardening",
                             desc="RX rsp_prod beyond rsp_cons + ring size", log=[r"Illegal number of responses"]),
    "rx-rsp-prod-back": dict(fn=bc_rx_rsp_prod_back, expect="broken", wedges_c=True, xsa="XSA-391 hardening",
                             desc="RX rsp_prod moved backwards",
                             log=[r"Illegal number of responses|RX producer index going backwards"]),
    "rx-offset-size": dict(fn=bc_rx_offset_size, expect="drop", xsa="XSA-391 hardening",
                           desc="RX offset + size > 4096", log=[r"rx->offset: 4000, size: 200"]),
    "rx-status-negative": dict(fn=bc_rx_status_negative, expect="drop", desc="RX status < 0 (error)",
                               log=[r"rx->offset: 0, size: -1"]),
    "rx-bad-id": dict(fn=bc_rx_bad_id, expect="survive", xsa="XSA-391 hardening",
                      desc="RX responses with ids never posted / repeated", log=[]),
    "rx-extra-bad-type": dict(fn=bc_rx_extra_bad_type, expect="drop", desc="RX extra of type 9",
                              log=[r"Invalid extra type: 9"]),
    "rx-extra-missing": dict(fn=bc_rx_extra_missing, expect="drop", desc="RX extra_info flag, no extra slot",
                             log=[r"Missing extra info"]),
    "rx-gso-zero": dict(fn=bc_rx_gso_zero, expect="drop", desc="RX GSO extra with size 0",
                        log=[r"GSO size must not be zero"]),
    "rx-gso-bad-type": dict(fn=bc_rx_gso_bad_type, expect="drop", desc="RX GSO extra of type 7",
                            log=[r"Bad GSO type 7"]),
    "rx-too-many-slots": dict(fn=bc_rx_too_many_slots, expect="drop", desc="RX packet of 22 slots",
                              log=[r"Too many slots"]),
    "rx-need-more-slots": dict(fn=bc_rx_need_more_slots, expect="drop", desc="RX more_data on the last response",
                               log=[r"Need more slots"]),
    "rx-grant-kept": dict(fn=bc_rx_grant_kept, expect="broken", wedges_c=True, xsa="XSA-396",
                          desc="RX grant still mapped by the backend after its response",
                          log=[r"Grant still in use by backend domain", r"Disabled for further use"]),
    "event-storm": dict(fn=bc_event_storm, expect="survive", xsa="XSA-391",
                        desc="event channel storm from the backend", log=[]),
}
for _c, _m in CTRL_CASES.items():
    BACK_CASES[_c] = dict(_m, fn=bc_ctrl, expect="works", front="rs")


class BackCtx:
    def __init__(self, peer, be, storm_secs=5):
        self.peer, self.be, self.storm_secs = peer, be, storm_secs
        self.ifn = None
        self.connect_marker = None

    def rss_logged(self):
        """Whether the frontend logged the outcome of its RSS setup since the device was created."""
        lines = self.peer.log_since(self.connect_marker) or []
        return any(re.search(r"RSS: Toeplitz|RSS setup failed", ln) for ln in lines)

    def send_tx(self, n):
        """Make the domU transmit n frames on the hostile vif (AF_PACKET, no IP needed)."""
        if self.peer.blind or not self.ifn:
            return
        py = ("import socket;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);s.bind(('%s',0));"
              "f=b'\\xff'*6+bytes.fromhex('%s')+b'\\x88\\xb5'+b'netpeer-tx'.ljust(46,b'\\0');"
              "[s.send(f) for _ in range(%d)]") % (self.ifn, self.be.mac.replace(":", ""), n)
        self.peer.run("python3 -c \"%s\"" % py, 30)


def run_backend_case(case, domid, handle, peer, storm_secs=5, rebind="yes", connect_timeout=90):
    """rebind: "yes" = unbind + bind the frontend afterwards and check it works again (fresh
    connect); "leave" = do not tear the device down at all (for a frontend known to hang in its
    teardown: the device is left in place, Closed)."""
    meta = BACK_CASES[case]
    res = Result("backend", case, meta)
    mac = "00:16:3e:5e:%02x:%02x" % ((handle >> 8) & 0xff, handle & 0xff)
    be = Backend(domid, handle, mac)
    ctx = BackCtx(peer, be, storm_secs)
    res.info("vif", "%d/%d mac %s" % (domid, handle, mac))
    try:
        if meta.get("ctrl_mode") and not peer.blind:
            # the control ring is attacked while the frontend connects: its log counts from here
            ctx.connect_marker = peer.mark("backend-connect-" + case)
        be.create(fe_keys=meta.get("fe_keys"), ctrl_mode=meta.get("ctrl_mode"))
        ok = be.wait_connected(connect_timeout)
        if not res.check("connect", ok, "fe state %d be state %d; %s" % (be.fe_state(), be.be_state(), be.events[-3:])):
            res.info("exit", 2)
            return res.emit()
        if not peer.blind:
            ctx.ifn = peer.ifname(mac)
            peer.run("ip link set %s up" % ctx.ifn, 20)
            res.info("ifname", ctx.ifn)
            # baseline: the link works before we misbehave
            rxp0 = peer.stat(ctx.ifn, "rx_packets")
            be.rx_deliver(good_frame(mac))
            rxp1 = peer.wait_stat(ctx.ifn, "rx_packets", None if rxp0 is None else rxp0 + 1)
            res.check("baseline-rx", rxp0 is not None and rxp1 == rxp0 + 1, "rx_packets %s -> %s" % (rxp0, rxp1))
            ctx.send_tx(2)
            be.wait_tx(1, 10)
            be.serve_tx()
            marker = peer.mark("backend-" + case)
            errs0 = peer.stat(ctx.ifn, "rx_errors")
        with be.lock:
            meta["fn"](be, res, ctx)
        time.sleep(2)
        if peer.blind:
            res.check("frontend-state", be.fe_state() in (XB_CONNECTED,), "fe state %d (blind: no peer log)" % be.fe_state())
            return res.emit()
        lines = peer.log_since(ctx.connect_marker or marker)
        want = list(meta.get("log", []))
        found, missing, oops, forb = scan_log(lines, want, [r"Disabled for further use"] if meta["expect"] != "broken" else [])
        res.check("peer-alive", peer.alive(), "domU answers")
        res.check("peer-log", found, "missing %s; got: %s" % (missing, " | ".join((lines or [])[-6:])) if not found else "found %s" % want)
        res.check("peer-no-oops", not oops, " | ".join(oops[:3]) or "none")
        if meta["expect"] != "broken":
            res.check("not-broken", not forb, "frontend marked itself broken" if forb else "not disabled")
        # probe: is the device still served? (a broken frontend ignores the backend until reconnect)
        if be.tx is not None:
            with be.lock:
                be.serve_tx()
                rxp0 = peer.stat(ctx.ifn, "rx_packets")
                r = be.rx_deliver(good_frame(mac))
            if meta["expect"] == "broken" or rxp0 is None:
                time.sleep(1.5)   # nothing may arrive: give it the time to
                rxp1 = peer.stat(ctx.ifn, "rx_packets")
            else:
                rxp1 = peer.wait_stat(ctx.ifn, "rx_packets", rxp0 + 1)
            if meta["expect"] == "broken":
                res.check("ignores-backend", r is None or rxp1 == rxp0, "rx_packets %s -> %s after a good packet" % (rxp0, rxp1))
            else:
                res.check("still-works", r is not None and rxp0 is not None and rxp1 == rxp0 + 1,
                          "rx_packets %s -> %s after a good packet" % (rxp0, rxp1))
            if meta["expect"] == "drop":
                errs1 = peer.stat(ctx.ifn, "rx_errors")
                res.info("rx_errors", "%s -> %s" % (errs0, errs1))
        be.release_kept()
        if rebind == "yes":
            # fresh connect of the same device: unbind and rebind the frontend driver. Detached in
            # the domU, polled: a frontend that hangs in its teardown must not take the agent along.
            n0 = be.connects
            tag = "/tmp/netpeer-rebind-%d" % handle
            peer.run("rm -f %s.*; setsid sh -c 'echo $$ > %s.pid; echo vif-%d > /sys/bus/xen/drivers/vif/unbind && "
                     "echo vif-%d > /sys/bus/xen/drivers/vif/bind; echo $? > %s.rc' </dev/null >%s.log 2>&1 &"
                     % (tag, tag, handle, handle, tag, tag), 20)
            end, rc = time.time() + 60, None
            while time.time() < end:
                rc_, out = peer.run("cat %s.rc 2>/dev/null" % tag, 20)
                if out.strip():
                    rc = int(out.strip()) if out.strip().isdigit() else -1
                    break
                time.sleep(0.5)
            if rc is None:
                _, ev = peer.run("p=$(cat %s.pid); for t in /proc/$p/task/* /proc/$(pgrep -P $p | head -1)/task/*; do "
                                 "echo \"$t $(cat $t/comm 2>/dev/null) wchan=$(cat $t/wchan 2>/dev/null)\"; cat $t/stack 2>/dev/null | head -12; done" % tag, 30)
                res.check("fresh-connect", False, "unbind/bind of vif-%d did not finish in 60 s (frontend teardown hangs): %s"
                          % (handle, " | ".join(ev.strip().splitlines()[:16])))
                res.info("wedged", True)
            else:
                ok = rc == 0 and be.wait_connected(60) and be.connects > n0
                ifn = peer.ifname(mac) if ok else None
                works = False
                if ifn:
                    peer.run("ip link set %s up" % ifn, 20)
                    rxp0 = peer.stat(ifn, "rx_packets")
                    with be.lock:
                        be.rx_deliver(good_frame(mac))
                    rxp1 = peer.wait_stat(ifn, "rx_packets", None if rxp0 is None else rxp0 + 1)
                    works = rxp0 is not None and rxp1 == rxp0 + 1
                res.check("fresh-connect", ok and works, "rebind rc=%s reconnected=%s netdev=%s rx works=%s" % (rc, ok, ifn, works))
            lines2 = peer.log_since(marker)
            _, _, oops2, _ = scan_log(lines2, [])
            res.check("peer-no-oops-after-reconnect", not oops2, " | ".join(oops2[:3]) or "none")
        elif rebind == "leave":
            res.info("fresh_connect", "not attempted: device left in place (rebind=leave)")
    except Exception as e:
        import traceback
        res.check("exception", False, traceback.format_exc()[-500:])
    finally:
        try:
            st = be.leave() if rebind == "leave" or res.d["info"].get("wedged") else be.destroy()
            res.info("teardown_fe_state", st)
        except Exception as e:
            res.info("teardown_error", repr(e))
        res.info("machine_events", be.events[-8:])
        be.close()
    return res.emit()


# ============================================================================================
#  Hostile frontend (domU) against a netback
# ============================================================================================
class Frontend:
    def __init__(self, handle):
        self.handle = handle
        self.xs = Xenstore()
        self.domid = int(self.xs.read("domid").strip("\0"))
        self.fep = "/local/domain/%d/device/vif/%d" % (self.domid, handle)
        self.bep = self.xs.read(self.fep + "/backend").strip("\0")
        self.beid = int(self.xs.read(self.fep + "/backend-id", "0").strip("\0") or 0)
        self.mac = self.xs.read(self.fep + "/mac", "00:16:3e:00:00:99").strip("\0")
        self.ga = Gntalloc()
        self.ev = Evtchn()
        self.port = None
        self.idx = []
        self.tx = self.rx = self.ctrl = None
        self.data = []   # (gref, mmap, index)

    def be_state(self):
        return self.xs.state(self.bep)

    def set_state(self, s):
        self.xs.write(self.fep + "/state", s)

    def phase(self, name):
        """Tell an observer in dom0 where we are (<frontend dir>/netpeer-phase)."""
        try:
            self.xs.write(self.fep + "/netpeer-phase", name)
        except XsError:
            pass

    def reset(self, timeout=60):
        """Close the connection if there is one (Closing/Closed handshake), free everything, and
        bring the pair to (FE Initialising, BE InitWait). Returns the backend state."""
        if not (self.be_state() == XB_INITWAIT and self.xs.state(self.fep) == XB_INITIALISING):
            if self.be_state() not in (XB_CLOSING, XB_CLOSED):
                self.set_state(XB_CLOSING)
                self.xs.wait_state(self.bep, {XB_CLOSING, XB_CLOSED}, timeout)
            self.set_state(XB_CLOSED)
            self.xs.wait_state(self.bep, {XB_CLOSED}, timeout)
        self.free()
        self.set_state(XB_INITIALISING)
        return self.xs.wait_state(self.bep, {XB_INITWAIT}, timeout)

    def setup(self, ndata=24, nrx=16, ctrl=False, tx_req_prod=None):
        """Share rings + data pages, allocate the event channel."""
        g, m, i = self.ga.alloc(self.beid)
        self.idx.append(i)
        self.tx = Ring(m, TX_ENTRY, TX_RING_SIZE)
        self.tx.init()
        self.tx_ref = g
        g, m, i = self.ga.alloc(self.beid)
        self.idx.append(i)
        self.rx = Ring(m, RX_ENTRY, RX_RING_SIZE)
        self.rx.init()
        self.rx_ref = g
        if ctrl:
            g, m, i = self.ga.alloc(self.beid)
            self.idx.append(i)
            self.ctrl = Ring(m, CTRL_ENTRY, CTRL_RING_SIZE)
            self.ctrl.init()
            self.ctrl_ref = g
            self.ctrl_port = self.ev.bind_unbound(self.beid)
        for _ in range(ndata):
            g, m, i = self.ga.alloc(self.beid)
            self.idx.append(i)
            self.data.append((g, m, i))
        self.port = self.ev.bind_unbound(self.beid)
        self.tx_pvt, self.tx_rsp_cons, self.next_id = 0, 0, 0
        if tx_req_prod is not None:
            self.tx.req_prod = tx_req_prod
        # RX buffers: the last pages of the pool
        self.rx_pvt = self.rx_rsp_cons = 0
        self.post_rx(nrx)

    def post_rx(self, n):
        """Posts n RX buffers (the last 16 pages of the pool, reused: their content is not read)."""
        for _ in range(n):
            k = self.rx_pvt % 16
            gref = self.data[len(self.data) - 1 - k][0]
            self.rx.put(self.rx_pvt, RX_REQ, k, 0, gref)
            self.rx_pvt = (self.rx_pvt + 1) & 0xffffffff
        self.rx.req_prod = self.rx_pvt

    def keys(self):
        k = {"tx-ring-ref": self.tx_ref, "rx-ring-ref": self.rx_ref, "event-channel": self.port,
             "request-rx-copy": 1, "feature-rx-notify": 1, "feature-sg": 1, "feature-gso-tcpv4": 1,
             "feature-gso-tcpv6": 1, "feature-ipv6-csum-offload": 1}
        if self.ctrl is not None:
            k.update({"ctrl-ring-ref": self.ctrl_ref, "event-channel-ctrl": self.ctrl_port})
        return k

    STALE = ("tx-ring-ref", "rx-ring-ref", "event-channel", "event-channel-tx", "event-channel-rx",
             "multi-queue-num-queues", "ctrl-ring-ref", "event-channel-ctrl", "request-multicast-control",
             "xdp-headroom")

    def publish(self, keys, remove=(), state=XB_CONNECTED):
        """Write the frontend keys in one transaction (keys of earlier cases removed first)."""
        def write(t):
            for r in set(remove) | set(self.STALE):
                self.xs.rm("%s/%s" % (self.fep, r), t)
            for k, v in keys.items():
                self.xs.write("%s/%s" % (self.fep, k), v, t)
        self.xs.transact(write)
        self.set_state(state)

    def connect(self, timeout=60, keys=None, **kw):
        self.setup(**kw)
        k = self.keys()
        k.update(keys or {})
        self.publish(k)
        return self.xs.wait_state(self.bep, {XB_CONNECTED, XB_CLOSING, XB_CLOSED}, timeout)

    def notify(self):
        self.ev.notify(self.port)

    # TX
    def page(self, k):
        return self.data[k % (len(self.data) - 16 if len(self.data) > 16 else len(self.data))]

    def put_req(self, page_k, offset, flags, size, data=None, rid=None, gref=None):
        g, m, _ = self.page(page_k)
        g = g if gref is None else gref
        data = (data or b"")[:max(0, PAGE - offset)]
        if data:
            m[offset:offset + len(data)] = data
        if rid is None:
            rid = self.next_id
            self.next_id = (self.next_id + 1) % TX_RING_SIZE
        self.tx.put(self.tx_pvt, TX_REQ, g, offset, flags, rid, size & 0xffff)
        self.tx_pvt = (self.tx_pvt + 1) & 0xffffffff
        return rid

    def put_extra(self, raw):
        self.tx.put_raw(self.tx_pvt, raw.ljust(TX_ENTRY, b"\0"))
        self.tx_pvt = (self.tx_pvt + 1) & 0xffffffff

    def push(self, prod=None):
        self.tx.req_prod = self.tx_pvt if prod is None else prod
        self.notify()

    def send_good(self, page_k=0):
        f = eth_frame(b"\xff" * 6, mac_bytes(self.mac), b"netpeer-fe-good")
        self.put_req(page_k, 0, 0, len(f), f)
        self.push()

    def wait_rx_rsp(self, prod0, n, timeout):
        """Waits until the RX response producer is n past prod0; how far past it is."""
        end = time.time() + timeout
        while time.time() < end and ((self.rx.rsp_prod - prod0) & 0xffffffff) < n:
            time.sleep(0.1)
        return (self.rx.rsp_prod - prod0) & 0xffffffff

    def wait_rsp(self, n, timeout):
        """Wait until n more responses arrived; returns the new responses (id, status)."""
        end = time.time() + timeout
        while time.time() < end:
            if ((self.tx.rsp_prod - self.tx_rsp_cons) & 0xffffffff) >= n:
                break
            time.sleep(0.05)
        out = []
        prod = self.tx.rsp_prod
        while self.tx_rsp_cons != prod and len(out) < 4 * TX_RING_SIZE:
            out.append(self.tx.get(self.tx_rsp_cons, TX_RSP))
            self.tx_rsp_cons = (self.tx_rsp_cons + 1) & 0xffffffff
        return out

    def free(self):
        if self.port is not None:
            self.ev.unbind(self.port)
            self.port = None
        if self.ctrl is not None:
            self.ev.unbind(self.ctrl_port)
        for i in self.idx:
            self.ga.free(i)
        self.idx, self.data = [], []
        self.tx = self.rx = self.ctrl = None

    def close(self):
        self.free()
        for o in (self.ga, self.ev, self.xs):
            try:
                o.close()
            except Exception:
                pass


# --- frontend cases ---------------------------------------------------------------------------
# kind: fatal = the vif must be disabled (no response to anything after it); drop = error
#       responses for the bad packet, the vif keeps working; connect = the backend must refuse the
#       connection (state Closing); survive = no crash, the vif keeps working; ctrl = ctrl-ring statuses
def fc_req_prod_jump(fe, res):
    fe.send_good(1)
    fe.push(fe.tx_pvt + TX_RING_SIZE + 44)


def fc_req_prod_back(fe, res):
    fe.push((fe.tx_pvt - 7) & 0xffffffff)


def fc_size_zero(fe, res):
    fe.put_req(1, 0, 0, 0)
    fe.push()


def _multi(fe, n, size_each=60, first_total=None, frag_override=None):
    """A packet of n slots: first slot carries the total size."""
    total = first_total if first_total is not None else size_each * n
    f = eth_frame(b"\xff" * 6, mac_bytes(fe.mac), b"netpeer-multi", size=max(total, 60))
    fe.put_req(1, 0, NETTXF_more_data if n > 1 else 0, total, f[:size_each])
    for k in range(1, n):
        off, size = 0, size_each
        if frag_override and k in frag_override:
            off, size = frag_override[k]
        fe.put_req(2 + k, off, NETTXF_more_data if k < n - 1 else 0, size, f[k * size_each:(k + 1) * size_each] or b"\0")
    fe.push()


def fc_slots_20(fe, res):
    _multi(fe, 20)


def fc_slots_24(fe, res):
    _multi(fe, 24)


def fc_slots_beyond_prod(fe, res):
    fe.put_req(1, 0, NETTXF_more_data, 120, b"\xff" * 60)
    fe.put_req(2, 0, NETTXF_more_data, 60, b"\0" * 60)   # more_data but nothing follows
    fe.push()


def fc_slot_size_over(fe, res):
    _multi(fe, 2, size_each=60, first_total=100, frag_override={1: (0, 120)})


def fc_cross_page_first(fe, res):
    fe.put_req(1, 4000, 0, 200, b"\xff" * 60)
    fe.push()


def fc_cross_page_frag(fe, res):
    _multi(fe, 3, frag_override={2: (4050, 60)})


def fc_extra_bad_type(fe, res):
    fe.put_req(1, 0, NETTXF_extra_info, 60, eth_frame(b"\xff" * 6, mac_bytes(fe.mac)))
    fe.put_extra(extra_raw(9))
    fe.push()


def fc_extra_type_none(fe, res):
    fe.put_req(1, 0, NETTXF_extra_info, 60, eth_frame(b"\xff" * 6, mac_bytes(fe.mac)))
    fe.put_extra(extra_raw(0))
    fe.push()


def fc_extra_missing(fe, res):
    fe.put_req(1, 0, NETTXF_extra_info, 60, eth_frame(b"\xff" * 6, mac_bytes(fe.mac)))
    fe.push()


def _gso(fe, size, gtype):
    f = ipv4_udp_frame(mac_bytes(fe.mac), b"\xff" * 6, "10.9.9.2", "10.9.9.255", b"g" * 200)
    fe.put_req(1, 0, NETTXF_extra_info | NETTXF_csum_blank, len(f), f)
    fe.put_extra(extra_gso(size, gtype))
    fe.push()


def fc_gso_zero(fe, res):
    _gso(fe, 0, GSO_TYPE_TCPV4)


def fc_gso_bad_type(fe, res):
    _gso(fe, 1400, 7)


BAD_GREF = 1048575    # beyond any grant table of the domain: the hypervisor answers GNTST_bad_gntref


def fc_gref_bad_first(fe, res):
    """The first slot's grant is not ours: the copy (or map) fails, the packet is answered with
    an error, the vif goes on."""
    fe.put_req(1, 0, 0, 60, b"\xff" * 60, gref=BAD_GREF)
    fe.push()


def fc_gref_bad_frag(fe, res):
    """A frag's grant is not ours (in the backend's map mode, the failing map of a frag)."""
    f = eth_frame(b"\xff" * 6, mac_bytes(fe.mac), b"netpeer-gref", size=600)
    fe.put_req(1, 0, NETTXF_more_data, 600, f[:200])
    fe.put_req(2, 0, NETTXF_more_data, 200, f[200:400], gref=BAD_GREF)
    fe.put_req(3, 0, 0, 200, f[400:600])
    fe.push()


def _rx_take(fe, seen):
    """The RX responses since the last call: [(slot id, offset, flags, status)] (each entry read once)."""
    out = []
    prod = fe.rx.rsp_prod
    while fe.rx_rsp_cons != prod and len(out) < RX_RING_SIZE:
        rid, off, flags, st = fe.rx.get(fe.rx_rsp_cons, RX_RSP)
        out.append((rid, off, flags, st))
        fe.rx_rsp_cons = (fe.rx_rsp_cons + 1) & 0xffffffff
    seen.extend(out)
    return out


def fc_rx_no_offloads(fe, res):
    """A frontend without feature-sg, feature-gso-tcpv4/v6, with feature-no-csum-offload: dom0
    (scen_hostile.py) sends one 64 KiB TCP GSO frame with a partial checksum through the bridge;
    the backend's vif has no SG/TSO/checksum offload then, so dom0 segments and checksums in
    software and the frontend must see clean single-slot packets, checksums complete (C:
    xenvif_connect's features from the frontend's keys). RX buffers are posted 16 at a time
    (the pool reuses 16 pages) and each batch is checked before the next."""
    seen, segs, bad, payload = [], 0, [], 0
    end = time.time() + 15
    while time.time() < end:
        got = _rx_take(fe, seen)
        for rid, off, flags, st in got:
            if st <= 0 or flags & (NETRXF_more_data | NETRXF_extra_info | NETRXF_csum_blank) or st > 1514:
                bad.append((rid, off, flags, st))
                continue
            m = fe.data[len(fe.data) - 1 - (rid % 16)][1]
            f = bytes(m[off:off + st])
            if f[12:14] != b"\x08\x00" or f[23] != 6:
                continue                  # not the test's TCP/IPv4 (an IPv6 ND, ...)
            ihl = (f[14] & 15) * 4
            ip, tcp = f[14:14 + ihl], f[14 + ihl:14 + struct.unpack("!H", f[16:18])[0]]
            pseudo = ip[12:20] + struct.pack("!HH", 6, len(tcp))
            if ones_sum(ip) != 0xffff or ones_sum(pseudo + tcp) != 0xffff:
                bad.append(("checksum", rid, st))
                continue
            segs += 1
            payload += len(tcp) - (tcp[12] >> 4) * 4
        if got:
            fe.post_rx(len(got))
            fe.notify()
            end = max(end, time.time() + 3)
        elif payload >= 60000:
            break
        time.sleep(0.1)
    res.info("rx_responses", len(seen))
    res.check("rx-segmented", segs >= 40 and payload >= 60000 and not bad,
              "%d TCP segments, %d payload bytes (64000 sent as one GSO frame), malformed or bad checksum: %s"
              % (segs, payload, bad[:6]))


def fc_rx_no_notify(fe, res):
    """A frontend without feature-rx-notify, no buffer posted for 6 s while dom0 sends it a frame
    every 0.5 s: no stall is declared for such a frontend (C: stall_timeout 0; dom0 checks the
    carrier stays on); then 16 buffers posted without an event: the backend must find them by
    itself (C polls them every 30 ms) and deliver the frames that keep coming."""
    time.sleep(6)
    prod0 = fe.rx.rsp_prod
    fe.post_rx(16)                     # no notify
    n = fe.wait_rx_rsp(prod0, 3, 5)
    res.check("rx-without-notify", n >= 3, "%d RX responses within 5 s of posting 16 buffers without an event "
              "(dom0 sends a frame every 0.5 s)" % n)


STALL_WAIT = 10      # rx-stall: dom0 floods for 4 to 8 s; the rig's stall timeout is 4 s, the drain 2 s


def fc_rx_stall(fe, res):
    """XSA-392 (and XSA-424, its drop path): no RX buffer posted while dom0 floods this vif
    (scen_hostile.py floods from the "attacked" phase on, then keeps sending a frame every 0.5 s).
    The backend must bound what it queues (checked in dom0), declare the stall, drop what waited
    too long, stay connected, and deliver again once buffers are posted."""
    time.sleep(STALL_WAIT)
    st = fe.be_state()
    res.check("backend-state-connected", st == XB_CONNECTED, "state %d after %d s without RX buffers" % (st, STALL_WAIT))
    prod0 = fe.rx.rsp_prod
    fe.post_rx(16)
    fe.notify()
    n = fe.wait_rx_rsp(prod0, 1, 10)
    res.check("rx-resumes", n >= 1, "RX responses %d -> %d within 10 s of posting 16 buffers" % (prod0, prod0 + n))


def fc_double_fetch(fe, res):
    """XSA-155: rewrite posted requests while the backend reads them."""
    f = eth_frame(b"\xff" * 6, mac_bytes(fe.mac), b"netpeer-df", size=120)
    base = fe.tx_pvt
    fe.put_req(1, 0, NETTXF_more_data, 120, f[:60])
    fe.put_req(2, 0, 0, 60, f[60:])
    fe.push()
    t0, n = time.time(), 0
    good1 = TX_REQ.pack(fe.page(1)[0], 0, NETTXF_more_data, 0, 120)
    bad1 = TX_REQ.pack(fe.page(1)[0], 4090, NETTXF_more_data | NETTXF_extra_info, 0, 0xffff)
    good2 = TX_REQ.pack(fe.page(2)[0], 0, 0, 1, 60)
    bad2 = TX_REQ.pack(fe.page(2)[0], 4000, NETTXF_more_data, 1, 4000)
    while time.time() - t0 < 2:
        for a, b in ((bad1, bad2), (good1, good2)):
            fe.tx.put_raw(base, a)
            fe.tx.put_raw(base + 1, b)
        n += 1
    res.info("rewrites", n)


def fc_split_headers(fe, res):
    """XSA-423/432: a UDP/IPv4 packet cut in 19 slots (the most the C netback accepts), all
    headers spread across slots, total below the copy length."""
    f = ipv4_udp_frame(mac_bytes(fe.mac), b"\xff" * 6, "10.9.9.2", "10.9.9.255", b"s" * 48)
    n = 19
    cuts = [4] * (n - 1)
    cuts.append(len(f) - sum(cuts))       # 90-byte frame: 18 x 4 bytes + 18
    pos = 0
    for k, c in enumerate(cuts):     # all pieces in one page, 64 bytes apart
        piece = f[pos:pos + c]
        fe.put_req(1, 64 * k, NETTXF_more_data if k < n - 1 else 0, len(f) if k == 0 else c, piece)
        pos += c
    fe.push()


def fc_empty_frags(fe, res):
    """XSA-448: a packet whose frags are all zero-length."""
    f = eth_frame(b"\xff" * 6, mac_bytes(fe.mac), b"netpeer-empty", size=60)
    fe.put_req(1, 0, NETTXF_more_data, 60, f)
    for k in range(4):
        fe.put_req(2 + k, 0, NETTXF_more_data if k < 3 else 0, 0)
    fe.push()


def fc_event_storm(fe, res):
    """XSA-332: event storm from the frontend."""
    n, t0 = 0, time.time()
    while time.time() - t0 < 5:
        for _ in range(200):
            fe.notify()
        n += 200
    res.info("events_sent", n)


def fc_watch_storm(fe, res):
    """XSA-349: rewrite a node netback watches (request-multicast-control) as fast as we can."""
    n, t0 = 0, time.time()
    while time.time() - t0 < 5:
        fe.xs.write(fe.fep + "/request-multicast-control", n & 1)
        n += 1
    res.info("writes", n)


def fc_ctrl_hash_overflow(fe, res):
    """XSA-270: SET_HASH_MAPPING with off + len overflowing; the backend must refuse each."""
    c = fe.ctrl
    g = fe.page(5)[0]
    reqs = [(CTRL_SET_HASH_ALGORITHM, (HASH_ALGORITHM_TOEPLITZ, 0, 0), CTRL_STATUS_SUCCESS),
            (CTRL_SET_HASH_MAPPING_SIZE, (64, 0, 0), CTRL_STATUS_SUCCESS),
            (CTRL_SET_HASH_MAPPING, (g, 0x20, 0xfffffff0), CTRL_STATUS_INVALID_PARAMETER),   # off + len wraps
            (CTRL_SET_HASH_MAPPING, (g, 64, 1), CTRL_STATUS_INVALID_PARAMETER),              # off + len > size
            (CTRL_SET_HASH_MAPPING, (g, 0xffffffff, 0), CTRL_STATUS_INVALID_PARAMETER),      # len huge
            (CTRL_SET_HASH_MAPPING_SIZE, (100000, 0, 0), CTRL_STATUS_INVALID_PARAMETER),     # size > 128
            (CTRL_SET_HASH_KEY, (g, 0x10000, 0), None),                                      # key len > 40
            (CTRL_SET_HASH_MAPPING, (g, 8, 0), CTRL_STATUS_SUCCESS)]                         # sane (zeros)
    for k, (t, data, _) in enumerate(reqs):
        c.put(k, CTRL_REQ, k, t, *data)
    c.req_prod = len(reqs)
    fe.ev.notify(fe.ctrl_port)
    end = time.time() + 15
    while time.time() < end and c.rsp_prod < len(reqs):
        time.sleep(0.1)
    got = [c.get(k, CTRL_RSP) for k in range(min(c.rsp_prod, len(reqs)))]
    res.info("ctrl_responses", got)
    ok = len(got) == len(reqs)
    bad = []
    for (t, data, want), r in zip(reqs, got):
        if want is not None and r[2] != want:
            bad.append("type %d data %s: status %d, want %d" % (t, data, r[2], want))
        if want is None and r[2] == CTRL_STATUS_SUCCESS:
            bad.append("type %d data %s accepted" % (t, data))
    res.check("ctrl-statuses", ok and not bad, "%d/%d responses; %s" % (len(got), len(reqs), bad or "all as expected"))


FRONT_CASES = {
    "good": dict(kind="good", desc="a correct frontend (control)", peer_log=[]),
    "req-prod-jump": dict(fn=fc_req_prod_jump, kind="fatal", xsa="XSA-39 / rule 2", desc="req_prod beyond req_cons + ring size",
                          peer_log=[r"Impossible number of requests", r"fatal error; disabling device"]),
    "req-prod-back": dict(fn=fc_req_prod_back, kind="fatal", xsa="XSA-39 / rule 2", desc="req_prod moved backwards",
                          peer_log=[r"Impossible number of requests", r"fatal error; disabling device"]),
    "size-zero": dict(fn=fc_size_zero, kind="drop", desc="a 0-byte packet (fewer bytes than an Ethernet header)",
                      peer_log=[]),
    "slots-20": dict(fn=fc_slots_20, kind="drop", xsa="XSA-39", desc="20-slot packet (over 18+1: dropped)", peer_log=[]),
    "slots-24": dict(fn=fc_slots_24, kind="fatal", xsa="XSA-39", desc="24-slot packet (over fatal_skb_slots)",
                     peer_log=[r"Malicious frontend using \d+ slots", r"fatal error; disabling device"]),
    "slots-beyond-prod": dict(fn=fc_slots_beyond_prod, kind="fatal", xsa="XSA-39",
                              desc="more_data chain running past req_prod",
                              peer_log=[r"Asked for \d+ slots but exceeds this limit", r"fatal error; disabling device"]),
    "slot-size-over": dict(fn=fc_slot_size_over, kind="drop", xsa="XSA-39", desc="a frag larger than the remaining size",
                           peer_log=[]),
    "cross-page-first": dict(fn=fc_cross_page_first, kind="fatal", desc="first slot offset + size > 4096",
                             peer_log=[r"Cross page boundary", r"fatal error; disabling device"]),
    "cross-page-frag": dict(fn=fc_cross_page_frag, kind="fatal", desc="frag offset + size > 4096",
                            peer_log=[r"Cross page boundary", r"fatal error; disabling device"]),
    "extra-bad-type": dict(fn=fc_extra_bad_type, kind="fatal", desc="extra of type 9",
                           peer_log=[r"Invalid extra type: 9", r"fatal error; disabling device"]),
    "extra-type-none": dict(fn=fc_extra_type_none, kind="fatal", desc="extra of type 0 (NONE)",
                            peer_log=[r"Invalid extra type: 0", r"fatal error; disabling device"]),
    "extra-missing": dict(fn=fc_extra_missing, kind="fatal", desc="extra_info flag, no extra slot",
                          peer_log=[r"Missing extra info", r"fatal error; disabling device"]),
    "gso-zero": dict(fn=fc_gso_zero, kind="fatal", desc="GSO extra with size 0",
                     peer_log=[r"GSO size must not be zero", r"fatal error; disabling device"]),
    "gso-bad-type": dict(fn=fc_gso_bad_type, kind="fatal", desc="GSO extra of type 7",
                         peer_log=[r"Bad GSO type 7", r"fatal error; disabling device"]),
    "gref-bad-first": dict(fn=fc_gref_bad_first, kind="drop", desc="first slot with a grant reference not granted",
                           peer_log=[]),
    "gref-bad-frag": dict(fn=fc_gref_bad_frag, kind="drop", ok_slots=True, desc="a frag with a grant reference not granted",
                          peer_log=[]),
    "rx-no-offloads": dict(fn=fc_rx_no_offloads, kind="survive", inject="gso",
                           keys={"feature-sg": 0, "feature-gso-tcpv4": 0, "feature-gso-tcpv6": 0,
                                 "feature-ipv6-csum-offload": 0, "feature-no-csum-offload": 1},
                           desc="frontend without SG, GSO and checksum offload: dom0 segments and checksums",
                           peer_log=[]),
    "rx-no-notify": dict(fn=fc_rx_no_notify, kind="survive", inject="trickle", nrx=0, carrier_on=True,
                         keys={"feature-rx-notify": 0},
                         desc="frontend without feature-rx-notify: no stall declared, buffers posted without an event",
                         peer_log=[]),
    "rx-stall": dict(fn=fc_rx_stall, kind="survive", nrx=0, inject="flood", xsa="XSA-392, XSA-424",
                     desc="no RX buffers while dom0 floods the vif (stall detection, bounded queue, drain)",
                     peer_log=[r"Guest Rx stalled", r"Guest Rx ready"]),
    "double-fetch": dict(fn=fc_double_fetch, kind="survive-any", xsa="XSA-155",
                         desc="requests rewritten (valid <-> invalid) after posting", peer_log=[]),
    "split-headers": dict(fn=fc_split_headers, kind="survive", xsa="XSA-423, XSA-432",
                          desc="UDP/IPv4 headers cut across 19 slots", peer_log=[]),
    "empty-frags": dict(fn=fc_empty_frags, kind="survive", xsa="XSA-448", desc="zero-length frags", peer_log=[]),
    "event-storm": dict(fn=fc_event_storm, kind="survive", xsa="XSA-332", desc="event storm from the frontend",
                        peer_log=[]),
    "watch-storm": dict(fn=fc_watch_storm, kind="survive", xsa="XSA-349",
                        desc="rapid rewrites of request-multicast-control", peer_log=[]),
    "ctrl-hash-overflow": dict(fn=fc_ctrl_hash_overflow, kind="ctrl", xsa="XSA-270",
                               desc="ctrl ring: SET_HASH_MAPPING/SIZE/KEY out of bounds", peer_log=[]),
    # connect-time xenstore garbage: the backend must refuse (Closing) and log why
    "xs-queues-0": dict(kind="connect", xsa="2026 num-queues=0 fix", keys={"multi-queue-num-queues": 0},
                        desc="multi-queue-num-queues = 0", peer_log=[r"guest requested 0 queues"]),
    "xs-queues-huge": dict(kind="connect", keys={"multi-queue-num-queues": 4294967295},
                           desc="multi-queue-num-queues = 2^32-1", peer_log=[r"guest requested 4294967295 queues"]),
    "xs-queues-junk": dict(kind="connect-any", keys={"multi-queue-num-queues": "abc"},
                           desc="multi-queue-num-queues non-numeric", peer_log=[]),
    "xs-no-ring-ref": dict(kind="connect", remove=["tx-ring-ref"], desc="tx-ring-ref missing",
                           peer_log=[r"reading .*ring-ref"]),
    "xs-ring-ref-junk": dict(kind="connect", keys={"rx-ring-ref": "xyz"}, desc="rx-ring-ref non-numeric",
                             peer_log=[r"reading .*ring-ref"]),
    "xs-ring-ref-bad": dict(kind="connect", keys={"tx-ring-ref": 1048575}, desc="tx-ring-ref not a granted ref",
                            peer_log=[r"mapping shared-frames"]),
    "xs-no-evtchn": dict(kind="connect", remove=["event-channel"], desc="event-channel missing",
                         peer_log=[r"reading .*event-channel"]),
    "xs-evtchn-bad": dict(kind="connect", keys={"event-channel": 65000}, desc="event-channel not allocated",
                          peer_log=[r"mapping shared-frames"]),
    "xs-ring-attach-overflow": dict(kind="connect", tx_req_prod=1000, xsa="rule 2",
                                    desc="TX ring with req_prod - rsp_prod > ring size at attach",
                                    peer_log=[r"mapping shared-frames"]),
    "xs-bad-state": dict(kind="connect", state=99, desc="frontend state 99", peer_log=[r"saw state 99 at frontend"]),
    "xs-ctrl-ring-bad": dict(kind="connect", ctrl=True, keys={"ctrl-ring-ref": 1048575}, desc="ctrl-ring-ref not granted",
                             peer_log=[r"mapping shared-frame|connecting control ring"]),
}

# The frontend cases the rig runs a second time against xen-netback-rs in map mode (tx_mode=1):
# the guest-TX data path (slot sizes, frags, grants, requests rewritten after posting) is the
# part that differs there.
MAP_CASES = ["slots-20", "cross-page-frag", "split-headers", "double-fetch", "gref-bad-frag"]


def select_cases(spec, names):
    """The `names` (in their order) that `spec` selects: comma-separated case names or fnmatch
    patterns, `!pattern` leaving cases out; "" or "all" is every case, and a spec of exclusions
    only starts from every case. ValueError for an entry that matches nothing (a typo would
    otherwise quietly run fewer cases)."""
    entries = [e for e in spec.split(",") if e and e != "all"]
    inc = [e for e in entries if not e.startswith("!")]
    exc = [e[1:] for e in entries if e.startswith("!")]
    for p in inc + exc:
        if not fnmatch.filter(names, p):
            raise ValueError("no case matches %r" % p)
    return [n for n in names if (not inc or any(fnmatch.fnmatchcase(n, p) for p in inc))
            and not any(fnmatch.fnmatchcase(n, p) for p in exc)]


def run_frontend_case(case, handle, hold=1.0):
    meta = FRONT_CASES[case]
    res = Result("frontend", case, meta)
    res.d["peer_log"] = meta.get("peer_log", [])
    res.d["kind"] = meta["kind"]
    fe = Frontend(handle)
    try:
        st = fe.reset()
        if not res.check("reset", st == XB_INITWAIT, "backend state %d (%s)" % (st, STATE_NAMES.get(st))):
            res.info("exit", 2)
            return res.emit()
        kind = meta["kind"]
        if kind.startswith("connect"):
            fe.setup(ctrl=meta.get("ctrl", False), tx_req_prod=meta.get("tx_req_prod"))
            keys = fe.keys()
            keys.update(meta.get("keys", {}))
            for r in meta.get("remove", []):
                keys.pop(r, None)
            fe.publish(keys, remove=meta.get("remove", []), state=meta.get("state", XB_CONNECTED))
            seen = set()
            # sample for 4 s (a refusal may show Closing only briefly), or 1 s past a refusal
            end, refused = time.time() + 4, False
            while time.time() < end:
                st = fe.be_state()
                seen.add(st)
                if st in (XB_CLOSING, XB_CLOSED) and not refused:
                    refused, end = True, min(end, time.time() + 1)
                time.sleep(0.03)
            if not refused:
                time.sleep(1)
            st = fe.be_state()
            seen.add(st)
            res.info("backend_states_seen", sorted(seen))
            # does the backend serve the rings we offered? (a good packet on our TX ring)
            served = None
            if fe.tx is not None:
                fe.tx_pvt = 0
                fe.tx.req_prod = 0
                fe.send_good(0)
                # a refused connection has no rings mapped: 1.5 s is ample for an answer
                served = [x[1] for x in fe.wait_rsp(1, 1.5 if refused else 3)] == [RSP_OKAY]
            if kind == "connect":
                res.check("backend-refuses", served is False,
                          "good packet on the offered rings answered: %s; states seen %s" % (served, sorted(seen)))
                res.check("backend-state-closing", st in (XB_CLOSING, XB_CLOSED),
                          "backend state %d (%s) after the refusal" % (st, STATE_NAMES.get(st)))
            else:
                res.check("backend-sane", st in (XB_CONNECTED, XB_CLOSING, XB_CLOSED),
                          "backend state %d (%s), good packet answered: %s" % (st, STATE_NAMES.get(st), served))
        else:
            st = fe.connect(ctrl=(kind == "ctrl"), nrx=meta.get("nrx", 16), keys=meta.get("keys"))
            if not res.check("connect", st == XB_CONNECTED, "backend state %d (%s)" % (st, STATE_NAMES.get(st))):
                res.info("exit", 2)
                return res.emit()
            # baseline: a good packet is answered OKAY
            fe.send_good(0)
            r = fe.wait_rsp(1, 15)
            res.check("baseline-tx", [x[1] for x in r] == [RSP_OKAY], "responses %s" % r)
            if kind != "good":
                fe.phase("attacked")
                meta["fn"](fe, res)
                time.sleep(hold)
                bad_rsp = fe.wait_rsp(0, 0.5)
                res.info("responses_to_bad", bad_rsp[:30])
                # probe with a good packet
                fe.send_good(0)
                after = fe.wait_rsp(1, 3 if kind == "fatal" else 15)
                res.info("responses_after", after[:30])
                if kind == "fatal":
                    res.check("backend-stops", not after,
                              "no response to a good packet after the bad one (vif disabled)" if not after else "answered: %s" % after)
                    res.check("backend-state-connected", fe.be_state() == XB_CONNECTED,
                              "state %d: a fatal TX error disables the vif without a xenstore change" % fe.be_state())
                elif kind == "drop":
                    errs = [s for _, s in bad_rsp if s in (RSP_ERROR, RSP_DROPPED)]
                    # ok_slots: the good slots of the dropped packet may be answered OKAY (C
                    # answers ERROR only for the slot whose grant operation failed)
                    res.check("error-responses", errs and (meta.get("ok_slots") or all(s != RSP_OKAY for _, s in bad_rsp)),
                              "%d error responses for the bad packet: %s" % (len(errs), bad_rsp[:24]))
                    res.check("still-serves", [s for _, s in after] == [RSP_OKAY], "good packet after: %s" % after)
                elif kind in ("survive", "ctrl"):
                    res.check("still-serves", [s for _, s in after] == [RSP_OKAY] and fe.be_state() == XB_CONNECTED, "good packet after: %s, state %d" % (after, fe.be_state()))
                elif kind == "survive-any":
                    res.info("outcome", "served" if after else "disabled")
                    res.check("backend-sane", fe.be_state() in (XB_CONNECTED, XB_CLOSING), "state %d, good packet after: %s" % (fe.be_state(), after))
    except Exception:
        import traceback
        res.check("exception", False, traceback.format_exc()[-500:])
    finally:
        try:
            fe.phase("closing")
            st = fe.reset(30)
            res.check("reconnectable", st == XB_INITWAIT, "backend back to state %d (%s) after close" % (st, STATE_NAMES.get(st)))
            if st == XB_INITWAIT and meta["kind"] == "fatal":
                # information: does the backend serve this vif again after a reconnect? (the C
                # netback does not: vif->disabled is only cleared when the backend device is created)
                st2 = fe.connect()
                fe.send_good(0)
                r = fe.wait_rsp(1, 5) if st2 == XB_CONNECTED else []
                res.info("serves_after_reconnect", [x[1] for x in r] == [RSP_OKAY])
                fe.reset(30)
        except Exception as e:
            res.check("reconnectable", False, repr(e))
        fe.close()
    return res.emit()


# ============================================================================================
def serve(d):
    """Runs requests (each one command line of this tool) one after the other in this process,
    from the FIFO d/in; each request's output, then `NETPEER-RC <exit status>`, goes to the FIFO
    d/out. In a PV domU under TCG starting Python costs seconds; a server starts it once for all
    the cases of a run. A client: `echo 'frontend --case good --handle 1' > d/in; cat d/out`."""
    import traceback
    os.makedirs(d, exist_ok=True)
    fin, fout = os.path.join(d, "in"), os.path.join(d, "out")
    for f in (fin, fout):
        if not os.path.exists(f):
            os.mkfifo(f)
    with open(os.path.join(d, "pid"), "w") as f:
        f.write("%d\n" % os.getpid())
    while True:
        with open(fin) as f:
            line = f.readline().strip()
        if not line:
            continue
        if line == "quit":
            return 0
        with open(fout, "w") as o:
            saved = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = o
            try:
                rc = main(shlex.split(line))
            except SystemExit as e:
                rc = e.code
            except Exception:
                o.write(traceback.format_exc())
                rc = 1
            finally:
                sys.stdout, sys.stderr = saved
            o.write("NETPEER-RC %s\n" % rc)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="side", required=True)
    b = sub.add_parser("backend", help="hostile backend (run in dom0)")
    b.add_argument("--case", required=True, help="case names or patterns, !pattern to leave out; 'all'")
    b.add_argument("--domid", type=int, required=True)
    b.add_argument("--handle", type=int, default=10)
    b.add_argument("--peer-cmd", default="", help="command prefix running one shell command in the domU")
    b.add_argument("--storm-secs", type=float, default=5)
    b.add_argument("--rebind", choices=["yes", "leave", "no"], default="yes",
                   help="after the case: rebind the frontend (yes), leave the device in place (leave), remove it (no)")
    f = sub.add_parser("frontend", help="hostile frontend (run in a domU)")
    f.add_argument("--case", required=True, help="case names or patterns, !pattern to leave out; 'all'")
    f.add_argument("--handle", type=int, default=1)
    f.add_argument("--hold", type=float, default=1.0)
    ls = sub.add_parser("list")
    ls.add_argument("which", nargs="?", default="")
    sv = sub.add_parser("serve", help="run requests from the FIFO DIR/in, answers to DIR/out (see serve())")
    sv.add_argument("--dir", default="/tmp/netpeer")
    a = ap.parse_args(argv)
    if a.side == "serve":
        return serve(a.dir)
    if a.side == "list":
        for side, cases in (("backend", BACK_CASES), ("frontend", FRONT_CASES)):
            if a.which in ("", side):
                for n, m in cases.items():
                    print("%-9s %-24s %-12s %-22s %s" % (side, n, m.get("expect", m.get("kind")), m.get("xsa", ""), m["desc"]))
        return 0
    if a.side == "backend":
        names = select_cases(a.case, list(BACK_CASES))
        peer = Peer.from_cmd(a.peer_cmd)
        rs = [run_backend_case(n, a.domid, a.handle + k, peer, a.storm_secs, a.rebind) for k, n in enumerate(names)]
    else:
        names = select_cases(a.case, list(FRONT_CASES))
        rs = [run_frontend_case(n, a.handle, a.hold) for n in names]
    if any(r["info"].get("exit") == 2 for r in rs):
        return 2
    return 0 if all(r["pass"] for r in rs) else 1


if __name__ == "__main__":
    sys.exit(main())
