"""Rig scenario `features` (run in dom0 by dom0.py, with its helpers as `d`).

What a user of the frontend would try (issue 4's list, as far as the rig can do it), for any
driver pairing: every check asserts what the user sees (ping answers, iperf3 bytes, `ethtool -k`,
xenstore keys), never a driver's internals.

  ft-ping-v4-*          10 pings each way
  ft-ping-v6-*          ULA addresses (fd00::1 dom0 bridge, fd00::2 domU), 5 pings each way
  ft-iperf-v6-tx        3 s TCP over IPv6 from the domU (TSO6 path)
  ft-ping-65000-*       65000-byte pings (45 IP fragments each) both ways
  ft-mtu-9000           MTU 9000 on the domU netdev, the vif and the bridge, accepted by each
  ft-ping-9000-*        unfragmented 9000-byte frames (ping -M do -s 8972) both ways
  ft-offloads-off       ethtool -K <if> tso off sg off tx off: ethtool -k reports them off
  ft-traffic-offloads-off   ping + 3 s iperf3 TX with them off
  ft-offloads-on        back on: ethtool -k reports the state from before
  ft-traffic-offloads-on
  ft-xdp-mtu-9000-refused  with MTU 9000, attaching an XDP program natively fails (both drivers:
                        PAGE_SIZE - XDP_PACKET_HEADROOM is the limit)
  ft-xdp-attach         ip link set <if> xdpdrv obj xdp_drop.bpf.o (tools/): attached in driver
                        mode, the frontend's xenstore xdp-headroom is 256 (backend reconfigured)
  ft-xdp-drop           10 pings dom0 -> domU all lost, the domU's rx dropped+errors grow by >= 10
  ft-xdp-kept-over-reconnect  (rs frontend) the first ethtool -L reconnect (below) runs with the
                        drop program attached: afterwards it is still attached natively, the
                        xdp-headroom handshake ran again (256), it drops every ping (the C
                        netfront loses its program on a reconnect); then detached
  ft-xdp-detach         xdpdrv off: no program, xdp-headroom 0
  ft-xdp-ping-after-detach  pings answered again
  ft-xdp-tx             xdp_reflect.bpf.o attached: 40 frames of EtherType 0x88b5 from dom0 come
                        back MAC-swapped (XDP_TX through the frontend's TX ring; >= 38), then
                        detached and pings answered
  ft-ethtool-info       ethtool: link detected, driver vif, software TX/RX timestamping, the C
                        statistic rx_gso_checksum_fixup
  ft-tx-timestamp       10 UDP datagrams to dom0 from a socket with SO_TIMESTAMPING (TX_SOFTWARE):
                        10 SCM_TSTAMP_SND timestamps on its error queue (skb_tx_timestamp())
  ft-xdp-redirect       the same with xdp_redirect.bpf.o: the frames are redirected (XDP_REDIRECT,
                        bpf_redirect to the ingress interface) and leave through the frontend's
                        ndo_xdp_xmit
  ft-max-queues-1/-4    frontend reloaded with max_queues=N: xenstore multi-queue-num-queues (when
                        the backend offers multi-queue) = min(N, backend's multi-queue-max-queues),
                        queue-<i> directories, the domU's netdev has that many TX queues; traffic
  ft-rss-ctrl-ring      (rs frontend) with max_queues=4: the frontend connected a control ring
                        (ctrl-ring-ref, event-channel-ctrl in xenstore) and set up RSS (its log)
  ft-rss-spread         (rs frontend) 64 TCP flows dom0 -> domU (guest/flows.py): the domU's
                        per-queue counters (ethtool -S rx_queue_<i>_packets) show more than one
                        queue carrying them
  ft-mcast-joined       (rs frontend) the domU joins 239.1.2.3; 30 datagrams to it from a veth
                        port of dom0's bridge (snooping off, so the bridge floods): received
  ft-mcast-filtered     ... and 30 to 239.1.2.4, not joined: none reaches the domU's netdev (the
                        backend filters, request-multicast-control=1)
  ft-mcast-local-passes ... while 30 to 239.1.2.4 sent by dom0's own stack (xenbr0's address)
                        reach it: the filter applies to frames forwarded from another port
                        (PACKET_MULTICAST), as the C backend's
  ft-mcast-unfiltered   control: request-multicast-control=0 written from dom0 (the backend's
                        watch): the datagrams to 239.1.2.4 reach the domU
                        The C frontend has no control ring and no multicast filter: these six
                        are skipped for it (RIG-SKIP line with the reason).
  ft-ethtool-L-1/-N     xen-netfront-rs: ethtool -L combined 1, then N = min(4, backend max):
                        the frontend reconnects with that many queues (xenstore, sysfs,
                        ethtool -l), traffic after each (the C driver refuses: ft-ethtool-L)
  ft-rxbuf-sysfs        /sys/class/net/<if>/rxbuf_{min,max,cur} read 256 (the RX ring), a number
                        written is accepted and ignored, garbage refused (as the C driver)
  ft-netconsole         netconsole on the domU's netdev towards dom0 (netpoll transmits with
                        interrupts disabled and polls with budget 0): 18 of 20 kernel messages
                        reach a UDP listener in dom0; traffic after (ft-traffic-after-netconsole)
  ft-trusted-0          frontend reloaded with trusted=0 (bounce every TX packet): traffic,
                        including 65000-byte pings
  ft-trusted-key-0      default parameters, but the device's xenstore key trusted=0: traffic
  ft-reload-under-traffic   unbind + unload + load while dom0 pings the domU and the domU runs
                        iperf3: the device comes back and carries traffic
"""
import os, re, subprocess, time

DOM0_IP6, DOMU_IP6 = "fd00::1", "fd00::2"


def run(d, ag, domid, ifn, vif):
    if not (ifn and vif):
        d.check("ft-setup", False, "no link: domU netdev=%s, dom0 vif=%s" % (ifn, vif))
        return
    fdir = "/local/domain/%d/device/vif/0" % domid
    bdir = "/local/domain/0/backend/vif/%d/0" % domid
    srv = subprocess.Popen(["iperf3", "-s"], stdout=open(os.path.join(d.OUT, "iperf3-server.log"), "w"),
                           stderr=subprocess.STDOUT)
    # a second server for the background load of the reload step (its client may be left hanging)
    srv2 = subprocess.Popen(["iperf3", "-s", "-p", "5202"], stdout=open(os.path.join(d.OUT, "iperf3-server2.log"), "w"),
                            stderr=subprocess.STDOUT)
    time.sleep(1)
    try:
        state = {"ifn": ifn, "vif": vif}
        steps(d, ag, domid, fdir, bdir, state)
    finally:
        for p in (srv, srv2):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def warm(d, ag):
    """First packets after a (re)connect may wait for ARP and bridge learning."""
    d.wait_for(lambda: d.sh("ping -c 1 -W 1 %s" % d.DOMU_IP, 10, True)[0] == 0, 30, 1)


def traffic(d, ag, name, iperf_secs=3, big=False):
    """Ping both ways (and 65000-byte pings if big) and a short iperf3 TX; one check."""
    res = []
    ok = True
    for who, runner, dst, extra in (("dom0->domU", d.sh, d.DOMU_IP, ""), ("domU->dom0", ag.run, d.DOM0_IP, "")) + (
            (("dom0->domU 65000", d.sh, d.DOMU_IP, "-s 65000"), ("domU->dom0 65000", ag.run, d.DOM0_IP, "-s 65000"))
            if big else ()):
        rc, out = runner("ping -c 5 -i 0.2 -W 2 %s %s" % (extra, dst), 60)
        loss, rtt = d.parse_ping(out)
        good = rc == 0 and loss == 0.0
        ok &= good
        res.append("%s loss=%s%%" % (who, loss))
    if iperf_secs:
        rc, out = ag.run("iperf3 -c %s -t %d --json >/tmp/ft.json 2>/tmp/ft.err; rc=$?; python3 /rig/iperfsum.py /tmp/ft.json; "
                         "cat /tmp/ft.err; exit $rc" % (d.DOM0_IP, iperf_secs), iperf_secs + 60)
        m = re.search(r"IPERFSUM (\{.*\})", out)
        s = __import__("json").loads(m.group(1)) if m else {}
        good = rc == 0 and s.get("recv_bytes", 0) > 0
        ok &= good
        res.append("iperf3 TX %s bytes %.1f Mbit/s" % (s.get("recv_bytes", 0), s.get("recv_bps", 0) / 1e6))
        if good:
            d.metric(name + "-iperf-tx-mbps", round(s["recv_bps"] / 1e6, 2), "Mbit/s")
    d.check(name, ok, "; ".join(res))
    if not ok:
        d.diagnose(name)
    return ok


def reload_front(d, ag, domid, state, params="", under_traffic=False):
    """Unbind the device, unload the frontend, load it with params; returns (ok, detail)."""
    ifn = state["ifn"]
    if ifn and not under_traffic:
        ag.run("ip link set %s down" % ifn, 20)
    ag.run(d.UNBIND % "xen", 60)
    gone = d.wait_for(lambda: d.domu_ifname(ag) is None, 30, 0.3)
    rc1, out1 = ag.run("modprobe -r %s" % d.modname("front"), 60)
    unloaded = not d.loaded_in(ag.run, "front")
    rc2, out2 = ag.run("modprobe %s %s && grep -q '^%s ' /proc/modules" % (d.modname("front"), params, d.modname("front")), 60)
    ifn = d.domu_net_up(ag)
    vif = d.vif_up(60)
    state["ifn"], state["vif"] = ifn, vif
    ok = gone and rc1 == 0 and unloaded and rc2 == 0 and ifn is not None and vif is not None
    if ok:
        warm(d, ag)
    return ok, ("netdev gone=%s, unload rc=%s unloaded=%s, load(%s) rc=%s, domU netdev=%s, vif=%s, xenstore: %s %s %s" %
                (gone, rc1, unloaded, params or "defaults", rc2, ifn, vif, d.xs_states(domid), out1[-200:], out2[-200:]))


MCAST_RX = r"""
import socket, struct, sys, time
ifn, addr, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
j = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
j.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton("239.1.2.3") + socket.inet_aton(addr))
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
p.bind((ifn, 0))
p.settimeout(0.2)
print("MCRX-READY", flush=True)
n = {"a": 0, "b": 0}
end = time.time() + secs
while time.time() < end:
    try:
        f = p.recv(2048)
    except socket.timeout:
        continue
    if f[:6] == bytes([1, 0, 0x5e, 1, 2, 3]):
        n["a"] += 1
    elif f[:6] == bytes([1, 0, 0x5e, 1, 2, 4]):
        n["b"] += 1
print("MCRX joined=%d other=%d" % (n["a"], n["b"]), flush=True)
"""

MCAST_TX = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1] if sys.argv[1:] else "192.168.77.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for i in range(30):
    for g in ("239.1.2.3", "239.1.2.4"):
        s.sendto(b"x" * 64, (g, 5353 + 1000))
    time.sleep(0.05)
"""


def mcast_round(d, ag, ifn, secs, src=""):
    """The domU counts for `secs` s the datagrams to 239.1.2.3 (joined) and 239.1.2.4 (not) that
    reach its netdev while dom0 sends 30 to each, from the veth port or from `src`'s interface.
    Returns (joined, other, the listener's output); the counts are None if it printed none."""
    ag.run("(python3 /tmp/mcrx.py %s %s %d >/tmp/mcrx.log 2>&1 &); "
           "for i in $(seq 50); do grep -q MCRX-READY /tmp/mcrx.log && break; sleep 0.1; done" % (ifn, d.DOMU_IP, secs), 30)
    d.sh(("python3 /tmp/mctx.py %s" % src).strip(), 30)
    # the listener prints its counts when its `secs` are over
    _, out = ag.run("for i in $(seq %d); do grep -q \"MCRX joined\" /tmp/mcrx.log && break; sleep 0.2; done; "
                    "cat /tmp/mcrx.log" % (5 * secs), 30)
    m = re.search(r"MCRX joined=(\d+) other=(\d+)", out)
    return (int(m.group(1)), int(m.group(2)), out) if m else (None, None, out)


def pings_dropped(d, ag, ifn, n):
    """n pings dom0 -> domU: (loss %, how much the domU netdev's rx dropped+errors moved)."""
    before = rx_drop_counters(ag, ifn)
    _, out = d.sh("ping -c %d -i 0.2 -W 1 %s" % (n, d.DOMU_IP), 60, True)
    loss, _ = d.parse_ping(out)
    after = rx_drop_counters(ag, ifn)
    return loss, ((after - before) if None not in (before, after) else None)


def rx_queue_packets(ag, ifn):
    """Per-queue RX packet counters of the domU netdev (ethtool -S rx_queue_<i>_packets)."""
    rc, out = ag.run("ethtool -S %s" % ifn, 20, True)
    return {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"rx_queue_(\d+)_packets:\s+(\d+)", out)}


def ctrl_checks(d, ag, domid, fdir, state, nq):
    """Control ring (RSS) and multicast filter, for frontends that have them."""
    ifn = state["ifn"]
    if d.FRONT == "c":
        d.say("RIG-SKIP ft-rss-ctrl-ring ft-rss-spread ft-mcast-joined ft-mcast-filtered ft-mcast-local-passes ft-mcast-unfiltered: the C frontend "
              "has no control ring and no multicast filter")
        return
    d.mark("FT-RSS")
    ref, port = xs(d, "%s/ctrl-ring-ref" % fdir), xs(d, "%s/event-channel-ctrl" % fdir)
    _, log = ag.run("dmesg | grep -E 'RSS' | tail -3", 20, True)
    d.check("ft-rss-ctrl-ring", ref is not None and port is not None and "RSS: Toeplitz" in log,
            "ctrl-ring-ref=%s event-channel-ctrl=%s; domU log: %s" % (ref, port, log.strip()[-300:]))
    before = rx_queue_packets(ag, ifn)
    rc, _, detail = d.flows_run(ag, True)
    after = rx_queue_packets(ag, ifn)
    delta = {q: after.get(q, 0) - before.get(q, 0) for q in after}
    busy = [q for q, v in delta.items() if v >= 50]
    d.check("ft-rss-spread", rc == 0 and nq > 1 and len(busy) > 1,
            "%d queues; packets per RX queue %s (queues with >= 50: %s) | %s" % (nq, delta, busy, detail))

    d.mark("FT-MCAST")
    d.sh("echo 0 > /sys/class/net/xenbr0/bridge/multicast_snooping; "
         "ip link add mc0 type veth peer name mc1; ip link set mc1 master xenbr0; ip link set mc1 up; "
         "ip link set mc0 up; ip addr add 192.168.77.1/24 dev mc0", 20)
    with open("/tmp/mctx.py", "w") as f:
        f.write(MCAST_TX)
    ag.run("cat > /tmp/mcrx.py <<'EOF'\n%sEOF" % MCAST_RX, 30)
    _, mctl = d.sh("xenstore-read %s/request-multicast-control" % fdir, 10, True)
    joined, other, out = mcast_round(d, ag, ifn, 8)
    d.check("ft-mcast-joined", joined is not None and joined >= 25,
            "30 datagrams to the joined group 239.1.2.3: %s reached the domU netdev; request-multicast-control=%s %s"
            % (joined, mctl.strip(), "" if joined is not None else out[-300:]))
    d.check("ft-mcast-filtered", other == 0 and mctl.strip() == "1",
            "30 datagrams to 239.1.2.4 (not joined): %s reached the domU netdev; request-multicast-control=%s"
            % (other, mctl.strip()))
    # As C, the filter applies to frames the bridge forwards from another port (PACKET_MULTICAST):
    # what dom0's own stack sends through the bridge passes, whatever the group.
    _, local, out = mcast_round(d, ag, ifn, 8, d.DOM0_IP)
    d.check("ft-mcast-local-passes", local is not None and local >= 25,
            "filter on, sent by dom0's own stack from %s: %s of 30 datagrams to 239.1.2.4 reached the domU netdev %s"
            % (d.DOM0_IP, local, "" if local is not None else out[-300:]))
    # Control: the same path delivers the other group once the filter is off (the backend's
    # request-multicast-control watch), so the check above cannot pass for another reason.
    d.sh("xenstore-write %s/request-multicast-control 0" % fdir, 10)
    _, other2, out = mcast_round(d, ag, ifn, 8)
    d.check("ft-mcast-unfiltered", other2 is not None and other2 >= 25,
            "request-multicast-control=0 (written by dom0): %s of 30 datagrams to 239.1.2.4 reached the domU netdev %s"
            % (other2, "" if other2 is not None else out[-300:]))
    d.sh("xenstore-write %s/request-multicast-control 1" % fdir, 10)
    d.sh("ip link del mc0", 20, True)


EVTCHN_KEYS = ("event-channel", "event-channel-tx", "event-channel-rx")


def evtchn_dir(d, fdir):
    """Where the frontend's per-queue keys are: its directory, or queue-0/ with several queues."""
    n = xs(d, "%s/multi-queue-num-queues" % fdir)
    return "%s/queue-0" % fdir if n and n.isdigit() and int(n) > 1 else fdir


def evtchn_keys(d, fdir):
    """The event-channel keys of the frontend's (first) queue."""
    qdir = evtchn_dir(d, fdir)
    return [k for k in EVTCHN_KEYS if xs(d, "%s/%s" % (qdir, k)) is not None]


def xs(d, path):
    rc, out = d.sh("xenstore-read %s" % path, 10, True)
    return out.strip() if rc == 0 else None


def rx_drop_counters(ag, ifn):
    """rx dropped + rx errors of the domU netdev (the C netfront counts XDP verdicts other than
    pass as errors, the Rust one XDP drops as dropped), or None."""
    rc, out = ag.run("ip -s -j link show %s" % ifn, 20, True)
    try:
        rx = __import__("json").loads(out)[0]["stats64"]["rx"]
        return rx.get("dropped", 0) + rx.get("errors", 0)
    except Exception:
        return None


def xdp_checks(d, ag, fdir, state):
    """Native XDP with a drop program: refused above the MTU limit, attached (xdp-headroom 256
    in xenstore), pings from dom0 all lost and counted as dropped, detached (headroom 0), pings
    answered again."""
    ifn = state["ifn"]
    if not ifn:
        d.check("ft-xdp-attach", False, "no link")
        return
    obj = "/rig/xdp_drop.bpf.o"
    # Above PAGE_SIZE - XDP_PACKET_HEADROOM (3840) both drivers refuse a program.
    rc, out = ag.run("ip link set %s mtu 9000 && ip link set dev %s xdpdrv obj %s sec xdp; rc=$?; "
                     "ip link set %s mtu 1500; exit $rc" % (ifn, ifn, obj, ifn), 30, True)
    d.check("ft-xdp-mtu-9000-refused", rc not in (0, None), "rc=%s %s" % (rc, out.strip()[-200:]))
    rc, out = ag.run("ip link set dev %s xdpdrv obj %s sec xdp" % (ifn, obj), 60, True)
    mode = xdp_mode(ag, ifn)
    headroom = xs(d, "%s/xdp-headroom" % fdir)
    # mode 1: XDP_ATTACHED_DRV (native)
    d.check("ft-xdp-attach", rc == 0 and mode == 1 and headroom == "256",
            "rc=%s xdp mode=%s xdp-headroom=%s %s" % (rc, mode, headroom, "" if rc == 0 else out.strip()[-300:]))
    n = 10
    loss, moved = pings_dropped(d, ag, ifn, n)
    d.check("ft-xdp-drop", loss == 100.0 and moved is not None and moved >= n,
            "dom0->domU loss=%s%% (want 100), rx dropped+errors moved by %s (want >= %d)" % (loss, moved, n))
    rc, out = ag.run("ip link set dev %s xdpdrv off && ip -d -j link show %s" % (ifn, ifn), 60, True)
    headroom = xs(d, "%s/xdp-headroom" % fdir)
    d.check("ft-xdp-detach", rc == 0 and '"xdp"' not in out and headroom == "0",
            "rc=%s xdp-headroom=%s %s" % (rc, headroom, "" if rc == 0 else out.strip()[-300:]))
    warm(d, ag)
    d.ping_check("ft-xdp-ping-after-detach", d.sh, d.DOMU_IP, 5)


def xdp_tx_check(d, ag, state, name="ft-xdp-tx", prog="xdp_reflect", n=40):
    """Native XDP_TX (xdp_reflect.bpf.o) or XDP_REDIRECT back to the same interface through its
    ndo_xdp_xmit (xdp_redirect.bpf.o): frames of EtherType 0x88b5 that dom0 sends to the domU
    through its bridge come back with the MACs swapped; other traffic passes (a ping after it)."""
    import socket
    ifn = state["ifn"]
    if not ifn:
        d.check(name, False, "no link")
        return
    rc, out = ag.run("ip link set dev %s xdpdrv obj /rig/%s.bpf.o sec xdp && cat /sys/class/net/%s/address"
                     % (ifn, prog, ifn), 60, True)
    mac = out.strip().splitlines()[-1] if rc == 0 and out.strip() else ""
    got, err, warm = 0, None, None
    try:
        dst, src = d.mac_bytes(mac), d.bridge_mac()
        s = d.bridge_socket()
        s.settimeout(0.2)

        def frame(i):
            return dst + src + b"\x88\xb5" + (b"rig-xdp-tx %03d" % i).ljust(100, b"\0")

        def returned(f):
            """The number of a test frame that came back MAC-swapped, or None."""
            ok = f[:6] == src and f[6:12] == dst and f[14:25] == b"rig-xdp-tx "
            return f[25:28] if ok else None
        # the attach may still be settling (the Reconfiguring handshake with the backend): one
        # frame at a time until the first comes back, at most 10 s
        t0, warm = time.time(), None
        while warm is None and time.time() - t0 < 10:
            s.send(frame(999))
            try:
                f = s.recv(2048)
                if returned(f) == b"999":
                    warm = time.time() - t0
            except socket.timeout:
                pass
        err = None if warm is not None else "no frame back within 10 s of the attach"
        for i in range(n):
            s.send(frame(i))
            time.sleep(0.02)
        seen, end = set(), time.time() + 5
        while time.time() < end and len(seen) < n:
            try:
                f = s.recv(2048)
            except socket.timeout:
                continue
            num = returned(f)
            if num not in (None, b"999"):
                seen.add(num)
        got = len(seen)
        s.close()
    except (OSError, ValueError) as e:
        err = repr(e)
    rc2, _ = ag.run("ip link set dev %s xdpdrv off" % ifn, 60, True)
    loss, _ = d.parse_ping(d.sh("ping -c 3 -i 0.3 -W 2 %s" % d.DOMU_IP, 30, True)[1])
    d.check(name, rc == 0 and got >= n - 2 and rc2 == 0 and loss == 0.0,
            "%s.bpf.o attach rc=%s (domU MAC %s); first frame back after %s s; %d of %d frames came back; "
            "detach rc=%s; ping after: loss=%s%%%s"
            % (prog, rc, mac, None if warm is None else round(warm, 1), got, n, rc2, loss, "; " + err if err else ""))


def xdp_mode(ag, ifn):
    """The XDP attach mode of the domU netdev (1: native), or None."""
    rc, out = ag.run("ip -d -j link show %s" % ifn, 30, True)
    try:
        return __import__("json").loads(out[out.index("["):])[0].get("xdp", {}).get("mode")
    except Exception:
        return None


def xdp_kept_check(d, ag, fdir, ifn, n=10):
    """xen-netfront-rs keeps its XDP program over a reconnect (the C netfront drops it): after
    the reconnect the program is attached natively, the Reconfiguring handshake ran again
    (xdp-headroom 256) and it drops every ping; then it is detached. The reconnect may have
    cost dom0 its neighbour entry: what the program drops is then dom0's ARP requests (one a
    second), so at least 3 frames, not n."""
    mode, headroom = xdp_mode(ag, ifn), xs(d, "%s/xdp-headroom" % fdir)
    loss, moved = pings_dropped(d, ag, ifn, n)
    rc, _ = ag.run("ip link set dev %s xdpdrv off" % ifn, 60, True)
    d.check("ft-xdp-kept-over-reconnect", mode == 1 and headroom == "256" and loss == 100.0 and moved is not None
            and moved >= 3 and rc == 0,
            "after the reconnect: xdp mode=%s, xdp-headroom=%s; %d pings dom0->domU: loss=%s%% (want 100), "
            "rx dropped+errors moved by %s (want >= 3); detach rc=%s" % (mode, headroom, n, loss, moved, rc))


def steps(d, ag, domid, fdir, bdir, state):
    ifn, vif = state["ifn"], state["vif"]
    warm(d, ag)
    d.mark("FT-PING")
    d.ping_check("ft-ping-v4-dom0-to-domu", d.sh, d.DOMU_IP)
    d.ping_check("ft-ping-v4-domu-to-dom0", ag.run, d.DOM0_IP)

    # IPv6
    d.sh("ip -6 addr add %s/64 dev xenbr0 nodad" % DOM0_IP6, 20)
    ag.run("ip -6 addr add %s/64 dev %s nodad" % (DOMU_IP6, ifn), 20)
    d.wait_for(lambda: d.sh("ping -6 -c 1 -W 1 %s" % DOMU_IP6, 10, True)[0] == 0, 20, 1)
    d.ping_check("ft-ping-v6-dom0-to-domu", lambda c, t, q=False: d.sh(c.replace("ping ", "ping -6 ", 1), t, q), DOMU_IP6, 5)
    d.ping_check("ft-ping-v6-domu-to-dom0", lambda c, t, q=False: ag.run(c.replace("ping ", "ping -6 ", 1), t, q), DOM0_IP6, 5)
    rc, out = ag.run("iperf3 -6 -c %s -t 3 --json >/tmp/ft6.json 2>/tmp/ft6.err; rc=$?; python3 /rig/iperfsum.py /tmp/ft6.json; "
                     "cat /tmp/ft6.err; exit $rc" % DOM0_IP6, 70)
    m = re.search(r"IPERFSUM (\{.*\})", out)
    s = __import__("json").loads(m.group(1)) if m else {}
    d.check("ft-iperf-v6-tx", rc == 0 and s.get("recv_bytes", 0) > 0,
            "rc=%s receiver %s bytes %.1f Mbit/s %s" % (rc, s.get("recv_bytes", 0), s.get("recv_bps", 0) / 1e6,
                                                         "" if rc == 0 else out[-300:]))

    # 65000-byte pings (IP fragments)
    d.mark("FT-BIG")
    for name, runner, dst in (("ft-ping-65000-dom0-to-domu", d.sh, d.DOMU_IP), ("ft-ping-65000-domu-to-dom0", ag.run, d.DOM0_IP)):
        rc, out = runner("ping -c 3 -i 0.3 -W 3 -s 65000 %s" % dst, 60)
        loss, rtt = d.parse_ping(out)
        d.check(name, rc == 0 and loss == 0.0 and "65008 bytes from" in out,
                "rc=%s loss=%s%% rtt=%s %s" % (rc, loss, rtt, "" if rc == 0 else out[-300:]))

    # MTU 9000
    d.mark("FT-MTU")
    rc1, o1 = ag.run("ip link set %s mtu 9000 && ip link show %s" % (ifn, ifn), 20)
    rc2, o2 = d.sh("ip link set %s mtu 9000 && ip link set xenbr0 mtu 9000 && ip link show %s && ip link show xenbr0" % (vif, vif), 20)
    d.check("ft-mtu-9000", rc1 == 0 and rc2 == 0 and "mtu 9000" in o1 and o2.count("mtu 9000") == 2,
            "domU rc=%s, dom0 rc=%s | %s | %s" % (rc1, rc2, o1.strip()[-200:], o2.strip()[-300:]))
    time.sleep(1)
    for name, runner, dst in (("ft-ping-9000-dom0-to-domu", d.sh, d.DOMU_IP), ("ft-ping-9000-domu-to-dom0", ag.run, d.DOM0_IP)):
        rc, out = runner("ping -c 5 -i 0.2 -W 2 -M do -s 8972 %s" % dst, 60)
        loss, rtt = d.parse_ping(out)
        d.check(name, rc == 0 and loss == 0.0 and "8980 bytes from" in out,
                "rc=%s loss=%s%% rtt=%s %s" % (rc, loss, rtt, "" if rc == 0 else out[-300:]))
    ag.run("ip link set %s mtu 1500" % ifn, 20)
    d.sh("ip link set %s mtu 1500; ip link set xenbr0 mtu 1500" % vif, 20)

    # offload toggles
    d.mark("FT-OFFLOADS")
    rc, before = d.ethtool_k(ag.run, ifn)
    keys = ["scatter-gather", "tcp-segmentation-offload", "tx-checksum-ipv6", "tx-checksumming"]
    rc, out = ag.run("ethtool -K %s tso off sg off tx off" % ifn, 30)
    rc2, after = d.ethtool_k(ag.run, ifn)
    off = {k: after.get(k) for k in ("scatter-gather", "tcp-segmentation-offload", "tx-checksum-ipv6")}
    d.check("ft-offloads-off", rc == 0 and rc2 == 0 and all(v == "off" for v in off.values()),
            "ethtool -K rc=%s %s; now %s" % (rc, out.strip()[-200:], off))
    traffic(d, ag, "ft-traffic-offloads-off")
    rc, out = ag.run("ethtool -K %s tso on sg on tx on" % ifn, 30)
    rc2, again = d.ethtool_k(ag.run, ifn)
    same = {k: (before.get(k), again.get(k)) for k in keys}
    d.check("ft-offloads-on", rc == 0 and rc2 == 0 and all(a == b for a, b in same.values()),
            "ethtool -K rc=%s %s; (before, now): %s" % (rc, out.strip()[-200:], same))
    traffic(d, ag, "ft-traffic-offloads-on")

    # native XDP (both netfronts have it)
    d.mark("FT-XDP")
    xdp_checks(d, ag, fdir, state)
    xdp_tx_check(d, ag, state)
    xdp_tx_check(d, ag, state, "ft-xdp-redirect", "xdp_redirect")

    # max_queues
    # sysfs rxbuf_* (C: xennet_dev_group): read as the RX ring size, numbers written are ignored
    d.mark("FT-RXBUF")
    if state["ifn"]:
        cmd = ("cd /sys/class/net/{i} && cat rxbuf_min rxbuf_max rxbuf_cur && (echo 64 > rxbuf_min && echo write-ok); "
               "(echo junk > rxbuf_max) 2>/dev/null || echo junk-refused; cat rxbuf_min").format(i=state["ifn"])
        rc, out = ag.run(cmd, 20, True)
        got = out.split()
        d.check("ft-rxbuf-sysfs", got == ["256", "256", "256", "write-ok", "junk-refused", "256"],
                "want 256 256 256 write-ok junk-refused 256, got: %s" % " ".join(got)[-200:])
    else:
        d.check("ft-rxbuf-sysfs", False, "no link")
    # what ethtool tells a user about the frontend, as with C: link, driver name, software
    # timestamping (ethtool_op_get_ts_info) and the C driver's statistic; and what the software
    # TX timestamping it shows gives an application
    if state["ifn"]:
        rc, out = ag.run("ethtool {i}; ethtool -i {i}; ethtool -T {i}; ethtool -S {i}".format(i=state["ifn"]), 30, True)
        want = ["Link detected: yes", "driver: vif", "software-transmit", "software-receive", "rx_gso_checksum_fixup:"]
        missing = [w for w in want if w not in out]
        d.check("ft-ethtool-info", not missing, "missing: %s | %s" % (missing, out.strip()[-300:]) if missing
                else "link, driver vif, software timestamping, rx_gso_checksum_fixup")
        d.txtstamp_check("ft-tx-timestamp", ag.run, d.DOM0_IP)
    else:
        d.check("ft-ethtool-info", False, "no link")
        d.check("ft-tx-timestamp", False, "no link")

    be_max = xs(d, "%s/multi-queue-max-queues" % bdir)
    for n in (1, 4):
        d.mark("FT-QUEUES-%d" % n)
        ok, detail = reload_front(d, ag, domid, state, "max_queues=%d" % n)
        want = min(n, int(be_max)) if be_max and be_max.isdigit() else 1
        got_xs = xs(d, "%s/multi-queue-num-queues" % fdir)
        _, qdirs = d.sh("xenstore-list %s" % fdir, 10, True)
        qdirs = sorted(l for l in qdirs.split() if l.startswith("queue-"))
        if state["ifn"]:
            _, txq = ag.run("ls /sys/class/net/%s/queues | grep -c tx-" % state["ifn"], 10, True)
        else:
            txq = ""
        # multi-queue-num-queues only exists if the backend offers multi-queue; queue-<i> only for > 1
        xs_ok = (got_xs == str(want)) if be_max is not None else (got_xs in (None, "1"))
        dirs_ok = qdirs == (["queue-%d" % i for i in range(want)] if want > 1 else [])
        # ethtool -l: the C driver has no channel operations ("Operation not supported"); a driver
        # that has them must report the queues in use as combined channels
        combined = None
        if state["ifn"]:
            rc, out = ag.run("ethtool -l %s" % state["ifn"], 20)
            cur = out.split("Current hardware settings:")[-1] if rc == 0 else ""
            m = re.search(r"Combined:\s+(\d+)", cur)
            combined = int(m.group(1)) if m else None
        chan_ok = combined is None or combined == want
        ok = ok and xs_ok and dirs_ok and chan_ok and txq.strip() == str(want)
        d.check("ft-max-queues-%d" % n, ok,
                "backend max=%s want %d: multi-queue-num-queues=%s, dirs=%s, domU tx queues=%s, ethtool -l combined=%s | %s" %
                (be_max, want, got_xs, qdirs, txq.strip(), combined, detail))
        if state["ifn"]:
            traffic(d, ag, "ft-traffic-max-queues-%d" % n)
        if n == 4 and state["ifn"]:
            ctrl_checks(d, ag, domid, fdir, state, want)

    # ethtool -L (beyond the C driver, which has no set_channels): with max_queues=4 loaded,
    # down to 1 queue and back up to what the backend allows, each time a reconnect.
    d.mark("FT-ETHTOOL-L")
    if d.FRONT == "rs" and state["ifn"]:
        top = min(4, int(be_max)) if be_max and be_max.isdigit() else 1
        # the first reconnect runs with an XDP drop program attached (ft-xdp-kept-over-reconnect)
        rcx, ox = ag.run("ip link set dev %s xdpdrv obj /rig/xdp_drop.bpf.o sec xdp" % state["ifn"], 60, True)
        for n in [1, top] if top > 1 else [1]:
            rc, out = ag.run("ethtool -L %s combined %d" % (state["ifn"], n), 30, True)
            want_xs = str(n) if be_max is not None else None
            back = d.wait_for(lambda: xs(d, "%s/multi-queue-num-queues" % fdir) == want_xs
                              and xs(d, "%s/state" % fdir) == "4" and xs(d, "%s/state" % bdir) == "4", 60, 1)
            _, txq = ag.run("ls /sys/class/net/%s/queues | grep -c tx-" % state["ifn"], 10, True)
            rc2, out2 = ag.run("ethtool -l %s" % state["ifn"], 20, True)
            m = re.search(r"Combined:\s+(\d+)", out2.split("Current hardware settings:")[-1])
            combined = int(m.group(1)) if m else None
            d.check("ft-ethtool-L-%d" % n, rc == 0 and bool(back) and combined == n and txq.strip() == str(n),
                    "ethtool -L rc=%s %s; reconnected=%s num-queues=%s tx queues=%s ethtool -l combined=%s" % (
                        rc, out.strip()[-200:], bool(back), xs(d, "%s/multi-queue-num-queues" % fdir), txq.strip(), combined))
            if n == 1:
                if rcx == 0:
                    xdp_kept_check(d, ag, fdir, state["ifn"])
                else:
                    d.check("ft-xdp-kept-over-reconnect", False, "attach rc=%s %s" % (rcx, ox.strip()[-200:]))
            traffic(d, ag, "ft-traffic-ethtool-L-%d" % n)
    elif state["ifn"]:
        rc, out = ag.run("ethtool -L %s combined 1" % state["ifn"], 30, True)
        d.check("ft-ethtool-L", rc != 0 and "not supported" in out,
                "C netfront: ethtool -L refused as expected: rc=%s %s" % (rc, out.strip()[-200:]))

    # event channels: split (one for TX, one for RX per queue) when the backend offers it, as in
    # every connect above; a single one per queue when it does not (the backend's
    # feature-split-event-channels set to 0 by dom0, then a frontend reload).
    d.mark("FT-EVTCHN")
    split_keys = evtchn_keys(d, fdir)
    feat = xs(d, "%s/feature-split-event-channels" % bdir)
    d.sh("xenstore-write %s/feature-split-event-channels 0" % bdir, 10)
    if d.FRONT == "c":
        # The C netfront leaves the keys of earlier split connections in place, and a backend
        # looks for those first (C: connect_data_rings); xen-netfront-rs removes them itself.
        # Here they go from every directory a connection may have used (the number of queues
        # can change with the reload).
        _, sub = d.sh("xenstore-list %s" % fdir, 10, True)
        for qdir in [fdir] + ["%s/%s" % (fdir, q) for q in sub.split() if q.startswith("queue-")]:
            d.sh("xenstore-rm %s/event-channel-tx; xenstore-rm %s/event-channel-rx" % (qdir, qdir), 10, True)
    ok, detail = reload_front(d, ag, domid, state, "")
    single_keys = evtchn_keys(d, fdir)
    d.sh("xenstore-write %s/feature-split-event-channels %s" % (bdir, feat or "0"), 10)
    d.check("ft-evtchn-split-single",
            feat == "1" and split_keys == ["event-channel-tx", "event-channel-rx"] and ok
            and single_keys == ["event-channel"],
            "offered=%s; split connect: %s; single connect: %s | %s" % (feat, split_keys, single_keys, detail))
    if state["ifn"]:
        traffic(d, ag, "ft-traffic-single-evtchn")

    # hot unplug and plug of the vif by the toolstack, the frontend module staying loaded
    d.mark("FT-DETACH-ATTACH")
    if state["ifn"]:
        ag.run("ip link set %s down" % state["ifn"], 20)
    rcd, od = d.sh("xl network-detach domu %s" % d.MAC, 60)
    gone = d.wait_for(lambda: not d.vifs() and d.domu_ifname(ag) is None, 60, 1)
    rca, oa = d.sh("xl network-attach domu bridge=xenbr0 mac=%s" % d.MAC, 60)
    state["vif"] = d.vif_up(60)
    state["ifn"] = d.domu_net_up(ag) if rca == 0 else None
    d.check("ft-detach-attach", rcd == 0 and gone and rca == 0 and state["ifn"] is not None and state["vif"] is not None,
            "xl network-detach rc=%s gone=%s, network-attach rc=%s, domU netdev=%s, vif=%s %s"
            % (rcd, gone, rca, state["ifn"], state["vif"], (od + oa).strip()[-200:]))
    if state["ifn"]:
        warm(d, ag)
        traffic(d, ag, "ft-traffic-after-attach")

    # netconsole on the domU's netdev (netpoll: the frontend transmits with interrupts off and
    # is polled with budget 0), dom0 listening; the device works normally afterwards
    d.mark("FT-NETCONSOLE")
    if state["ifn"]:
        br_mac = open("/sys/class/net/xenbr0/address").read().strip()
        d.netconsole_check("ft-netconsole", ag.run, d.sh, state["ifn"], d.DOMU_IP, d.DOM0_IP, br_mac)
        traffic(d, ag, "ft-traffic-after-netconsole", iperf_secs=0)
    else:
        d.check("ft-netconsole", False, "no link")

    # untrusted backend: module parameter, then the device's xenstore key
    d.mark("FT-TRUSTED")
    ok, detail = reload_front(d, ag, domid, state, "trusted=0")
    d.check("ft-trusted-0-reload", ok, detail)
    if state["ifn"]:
        traffic(d, ag, "ft-trusted-0", big=True)
    d.sh("xenstore-write %s/trusted 0" % fdir, 10)
    ok, detail = reload_front(d, ag, domid, state, "")
    d.check("ft-trusted-key-0-reload", ok, detail + " trusted key=%s" % xs(d, "%s/trusted" % fdir))
    if state["ifn"]:
        traffic(d, ag, "ft-trusted-key-0", big=True)
    d.sh("xenstore-rm %s/trusted" % fdir, 10)

    # reload while traffic flows both ways
    d.mark("FT-RELOAD-TRAFFIC")
    bg = subprocess.Popen("ping -i 0.05 -c 200 -W 1 %s" % d.DOMU_IP, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ag.run("(iperf3 -c %s -p 5202 -t 8 >/tmp/bg-iperf.log 2>&1 &) ; (ping -i 0.05 -c 150 %s >/tmp/bg-ping.log 2>&1 &) ; sleep 2" %
           (d.DOM0_IP, d.DOM0_IP), 30)
    ok, detail = reload_front(d, ag, domid, state, "", under_traffic=True)
    try:
        out = bg.communicate(timeout=60)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        bg.kill()
        out = bg.communicate()[0].decode(errors="replace")
    m = re.search(r"(\d+) received", out)
    d.check("ft-reload-under-traffic", ok, "%s | background dom0 ping received=%s" % (detail, m.group(1) if m else "?"))
    # the background iperf3 (8 s) has usually ended by now: wait for it, at most 16 s
    ag.run("for i in $(seq 32); do pgrep -f 'iperf3 [-]c' >/dev/null || break; sleep 0.5; done; "
           "tail -5 /tmp/bg-iperf.log; tail -3 /tmp/bg-ping.log", 40)
    if state["ifn"]:
        traffic(d, ag, "ft-traffic-after-reload", big=True)
    d.mark("FT-FINAL")
    if state["ifn"] and state["vif"]:
        d.ping_check("ft-final-ping-dom0-to-domu", d.sh, d.DOMU_IP)
    else:
        d.check("ft-final-ping-dom0-to-domu", False, "no link")


def run_save_restore(d, ag, domid, ifn, vif):
    """Scenario `save-restore`: xl save the domU to a file, xl restore it, the frontend reconnects
    (new domain id, new vif) and carries traffic again."""
    if not (ifn and vif):
        d.check("sr-setup", False, "no link: domU netdev=%s, dom0 vif=%s" % (ifn, vif))
        return
    warm(d, ag)
    d.ping_check("sr-ping-before", d.sh, d.DOMU_IP, 5)
    pv = None
    if os.path.exists("/rig/pvmmu.py"):   # issue 6: the 2 MiB direct map across save/restore
        import pvmmu
        pv = pvmmu.save_restore_before(d.sh, ag.run, d.check, d.metric)
    d.mark("SR-SAVE")
    rc, out = d.sh("xl save domu /tmp/domu.save && ls -la /tmp/domu.save", 600)
    d.check("sr-save", rc == 0 and "domu" not in d.sh("xl list", 20, True)[1], "rc=%s %s" % (rc, out[-300:]))
    if rc != 0:
        return
    d.mark("SR-RESTORE")
    rc, out = d.sh("xl restore /tmp/domu.save", 600)
    rc2, out2 = d.sh("xl domid domu", 20)
    newid = int(out2.strip()) if rc2 == 0 and out2.strip().isdigit() else None
    d.check("sr-restore", rc == 0 and newid is not None, "rc=%s new domid=%s %s" % (rc, newid, out[-300:]))
    if newid is None:
        return
    d.sh("rm -f /tmp/domu.save", 60, True)
    ag2 = d.Agent(newid)
    # The domU's agent survived the restore: request ids must not repeat the old session's, or
    # answers still queued for them are taken for the new requests' (measured: c/c and rs/c).
    ag2.n = ag.n + 1000
    ok = ag2.connect(60) and ag2.ping(120)
    d.check("sr-agent", ok, "console agent of domain %d answers" % newid)
    if not ok:
        return
    if pv:
        pvmmu.save_restore_after(ag2.run, d.check, d.metric, pv)
    d.AG = ag2
    vif2 = d.vif_up(90)
    ifn2 = d.wait_for(lambda: d.domu_ifname(ag2), 60, 1)
    _, st = d.sh("xenstore-read /local/domain/0/backend/vif/%d/0/state; xenstore-read /local/domain/%d/device/vif/0/state"
                 % (newid, newid), 20, True)
    d.check("sr-reconnect", ifn2 is not None and vif2 is not None and st.split() == ["4", "4"],
            "domU netdev=%s (same name %s), dom0 vif=%s, states %s" % (ifn2, ifn, vif2, st.split()))
    if ifn2 and vif2:
        d.wait_for(lambda: d.sh("ping -c 1 -W 1 %s" % d.DOMU_IP, 10, True)[0] == 0, 60, 1)
        srv = subprocess.Popen(["iperf3", "-s"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(1)
        try:
            traffic(d, ag2, "sr-traffic-after-restore", big=True)
        finally:
            srv.terminate()
            srv.wait(10)
