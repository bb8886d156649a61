#!/usr/bin/python3
"""Rig scenario driver, runs in dom0 (child of the PID-1 reaper, output on the serial console).

Reads /rig/rig.json (written by selftests/rig/run.py on the host), brings up the Xen toolstack,
the bridge and the chosen backend, starts the PV domU, drives it through the console agent and
reports on the console:
  RIG-MARK <what> <uptime>        progress markers (the host waits for them)
  RIG-CHECK {"name","pass","detail"}
  RIG-METRIC {"name","value","unit"}
  RIG-CRASH <what>                a process died by a signal (the host fails no-crash)
Every wait has a timeout; a failed step fails its check and the scenario goes on where it can.
"""
import base64, json, os, re, select, subprocess, sys, termios, threading, time, tty, zlib

CONF = json.load(open("/rig/rig.json"))
FRONT, BACK, SCEN = CONF["front"], CONF["back"], CONF["scenario"]
MAC = "00:16:3e:00:00:02"
DOM0_IP, DOMU_IP = "10.0.0.1", "10.0.0.2"
XENBIN = "/usr/lib/xen-%s/bin" % CONF.get("xenver", "4.20")
OUT = "/out" if os.path.ismount("/out") else "/tmp"
cmdlog = open(os.path.join(OUT, "dom0-commands.log"), "a")
T0 = time.time()
results = {"checks": [], "metrics": []}


def up():
    return float(open("/proc/uptime").read().split()[0])


LOG = open(os.path.join(OUT, "dom0.log"), "a")


def say(s):
    for f in (sys.stdout, LOG):
        f.write(s + "\n")
        f.flush()


def mark(what):
    say("RIG-MARK %s %.1f" % (what, up()))


def check(name, ok, detail=""):
    ok = bool(ok)
    d = {"name": name, "pass": ok, "detail": str(detail)[:1500]}
    results["checks"].append(d)
    say("RIG-CHECK " + json.dumps(d))
    return ok


def metric(name, value, unit):
    d = {"name": name, "value": value, "unit": unit}
    results["metrics"].append(d)
    say("RIG-METRIC " + json.dumps(d))


def logcmd(where, cmd, rc, out, dt):
    cmdlog.write("### [%s] %.1f $ %s\n### rc=%s (%.2fs)\n%s\n" % (where, up(), cmd, rc, dt, out))
    cmdlog.flush()
    if rc is not None and rc >= 128 and rc != 255 and rc - 128 in (4, 6, 7, 8, 11):
        say("RIG-CRASH %s command died by signal %d: %s" % (where, rc - 128, cmd[:200]))


def sh(cmd, timeout=60, quiet=False):
    """Run a shell command in dom0; returns (rc, output). rc 124 = timeout, 128+N = signal N."""
    t = time.time()
    try:
        p = subprocess.run(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        rc, out = p.returncode, p.stdout.decode("utf-8", "replace")
        if rc < 0:
            rc = 128 - rc
    except subprocess.TimeoutExpired as e:
        rc, out = 124, (e.stdout or b"").decode("utf-8", "replace") + "\n[timeout after %ss]" % timeout
    logcmd("dom0", cmd, rc, out, time.time() - t)
    if not quiet:
        say("[dom0] $ %s -> rc=%d" % (cmd, rc))
    return rc, out


class progress:
    """`with progress(label):` says every `every` s that `label` is still running, so that a
    command silent for minutes (a kselftest file may run 5 min, longer on a slow host) is not
    taken for a hung rig by run.py's console watchdog. A hung kernel still trips it: this thread
    stops with it. The command's own timeout bounds the body."""

    def __init__(self, label, every=60):
        self.label, self.every, self.stop = label, every, threading.Event()

    def __enter__(self):
        t0 = time.time()

        def tick():
            while not self.stop.wait(self.every):
                say("[dom0] %s: running for %.0f s" % (self.label, time.time() - t0))
        threading.Thread(target=tick, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


def wait_for(fn, timeout, interval=0.5):
    """Poll fn() until it returns a true value or timeout seconds pass; returns the last value."""
    end = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > end:
            return v
        time.sleep(interval)


# --- the domU console agent -----------------------------------------------------------------
class Agent:
    def __init__(self, domid):
        self.domid = domid
        self.fd = None
        self.n = 0
        self.buf = b""

    def connect(self, timeout=60):
        def tty_path():
            rc, out = sh("xenstore-read /local/domain/%d/console/tty" % self.domid, 10, True)
            return out.strip() if rc == 0 and out.strip().startswith("/dev/") else ""
        path = wait_for(tty_path, timeout)
        if not path:
            return False
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        a = termios.tcgetattr(self.fd)
        a[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON)
        termios.tcsetattr(self.fd, termios.TCSANOW, a)
        return True

    def _lines(self, deadline):
        while time.time() < deadline:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                yield line.decode("ascii", "replace").strip()
            r, _, _ = select.select([self.fd], [], [], max(0.0, min(1.0, deadline - time.time())))
            if r:
                try:
                    self.buf += os.read(self.fd, 65536).replace(b"\r", b"\n")
                except BlockingIOError:
                    pass
                except OSError:
                    time.sleep(0.2)
        return

    def _send(self, s):
        data = (s + "\n").encode()
        while data:
            try:
                n = os.write(self.fd, data)
                data = data[n:]
            except BlockingIOError:
                time.sleep(0.05)

    def ping(self, timeout):
        """Wait until the agent answers (the domU has booted to its agent)."""
        end = time.time() + timeout
        while time.time() < end:
            self.n += 1
            rid = "p%d" % self.n
            self._send("@@PING " + rid)
            for line in self._lines(min(end, time.time() + 3)):
                if line.endswith("@@PONG " + rid):
                    return True
        return False

    def run(self, cmd, timeout=60, quiet=False):
        """Run cmd with /bin/sh -c in the domU; returns (rc, output). rc None: no answer."""
        self.n += 1
        rid = "r%d" % self.n
        t = time.time()
        rc, out = None, "[agent: no answer]"
        req = "@@REQ %s %s %s" % (rid, timeout, base64.b64encode(cmd.encode()).decode())
        self._send(req)
        end = time.time() + timeout + 30
        for attempt in range(4):
            chunks = {}
            got = None
            for line in self._lines(end):
                m = re.search(r"@@OUT %s (\d+) (\S*)$" % rid, line)
                if m:
                    try:
                        chunks[int(m.group(1))] = base64.b64decode(m.group(2))
                    except Exception:
                        pass
                    continue
                m = re.search(r"@@END %s (\d+) (\d+) ([0-9a-f]{8})$" % rid, line)
                if m:
                    got = (int(m.group(1)), int(m.group(2)), m.group(3))
                    break
            if got is None:
                break
            data = b"".join(chunks[k] for k in sorted(chunks))
            if len(data) == got[1] and "%08x" % (zlib.crc32(data) & 0xffffffff) == got[2]:
                rc, out = got[0], data.decode("utf-8", "replace")
                break
            out = "[agent: garbled answer, attempt %d]" % attempt
            self._send("@@RESEND " + rid)
            end = time.time() + 30
        logcmd("domU", cmd, rc, out, time.time() - t)
        if not quiet:
            say("[domU] $ %s -> rc=%s" % (cmd, rc))
        return rc, out


# --- drivers ------------------------------------------------------------------------------
MOD = {("front", "c"): "xen_netfront", ("front", "rs"): "xen_netfront_rs",
       ("back", "c"): "xen_netback", ("back", "rs"): "xen_netback_rs"}


def modname(side):
    return MOD[(side, FRONT if side == "front" else BACK)]


def load_cmd(side):
    # rs modules are installed under /lib/modules/<krel>/extra by the host (depmod'ed): modprobe
    # resolves their dependencies. Refuse to run if the other driver of the pair is loaded.
    other = [m for (s, v), m in MOD.items() if s == side and m != modname(side)][0]
    return "if grep -q '^%s ' /proc/modules; then echo 'other driver %s loaded'; exit 3; fi; modprobe %s && grep -q '^%s ' /proc/modules" % (
        other, other, modname(side), modname(side))


def loaded_in(runner, side):
    rc, out = runner("grep -q '^%s ' /proc/modules" % modname(side), 20, True)
    return rc == 0


def module_kunit(runner, module, where):
    """Run the KUnit suites of a loaded driver module through debugfs and check each.

    The rig boots with kunit.autorun=0 and the module suites only run by themselves when the
    module loads with autorun on; xen-netfront-rs refuses to load outside Xen (ENODEV, as C),
    so its suites cannot run in the virtme-ng boot: they run here, in the domU that has it
    loaded. One check per suite ("<where>-kunit-<suite>") from its KTAP results file.
    """
    prefix = module.replace("-", "_") + "_"
    rc, out = runner("grep -q ' /sys/kernel/debug ' /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug; "
                     "cd /sys/kernel/debug/kunit || exit 2; for s in %s*; do [ -d \"$s\" ] || continue; "
                     "echo 1 > \"$s/run\"; echo \"KSUITE $s\"; cat \"$s/results\"; done" % prefix, 300, True)
    suites = re.split(r"^KSUITE (\S+)$", out, flags=re.M)[1:]
    if not check("%s-kunit" % where, rc == 0 and len(suites) > 0,
                 "%d suites of %s run through debugfs (rc=%s)" % (len(suites) // 2, module, rc)):
        return
    for name, res in zip(suites[0::2], suites[1::2]):
        cases = re.findall(r"^\s+(ok|not ok) \d+ (\S+)", res, re.M)
        bad = [c for st, c in cases if st != "ok"]
        top = re.search(r"^(ok|not ok) \d+ %s\b" % re.escape(name), res, re.M)
        check("%s-kunit-%s" % (where, name), bool(cases) and not bad and top is not None and top.group(1) == "ok",
              "%d cases, failed: %s" % (len(cases), ", ".join(bad) or "none"))


# --- dom0 bring-up --------------------------------------------------------------------------
def toolstack():
    sh("modprobe -a xenfs xen-evtchn xen-gntdev xen-gntalloc xen-privcmd 2>/dev/null; true", 30, True)
    if not os.path.exists("/proc/xen/capabilities"):
        sh("mount -t xenfs xenfs /proc/xen", 30)
    rc, _ = sh("XENSTORED_ROOTDIR=/run/xenstored %s/xenstored --pid-file /run/xen/xenstored.pid" % XENBIN, 30)
    ok = wait_for(lambda: sh("xenstore-read -s /", 5, True)[0] == 0 or None, 60)
    if not check("xenstored", ok, "xenstored rc=%d" % rc):
        return False
    rc1, o1 = sh("%s/xen-init-dom0" % XENBIN, 60)
    rc2, o2 = sh("%s/xenconsoled --log=guest --log-dir=/var/log/xen/console" % XENBIN, 30)
    rc3, o3 = sh("ip link add xenbr0 type bridge stp_state 0 forward_delay 0 && ip addr add %s/24 dev xenbr0 && "
                 "ip link set xenbr0 up && ip link set lo up" % DOM0_IP, 30)
    return check("toolstack", rc1 == 0 and rc2 == 0 and rc3 == 0,
                 "xen-init-dom0 rc=%d, xenconsoled rc=%d, bridge rc=%d %s%s%s" % (rc1, rc2, rc3, o1[-300:], o2[-300:], o3[-300:]))


def domu_config(name, mac, root, memory, vcpus, cmdline=""):
    """The xl configuration of a rig domU: our kernel, its root overlay on dom0's disk `root`, the
    shared read-only rig disk, one vif on xenbr0."""
    return """name = "%s"
type = "pv"
kernel = "/rig/bzImage"
cmdline = "root=/dev/xvda rw console=hvc0 init=/sbin/rig-init rig.role=domu rig.disk=/dev/xvdb loglevel=4 kunit.autorun=0 %s"
memory = %d
vcpus = %d
disk = [ 'format=raw, vdev=xvda, access=rw, script=/rig/block-rig, target=%s',
         'format=raw, vdev=xvdb, access=ro, script=/rig/block-rig, target=/dev/vdb' ]
vif = [ 'bridge=xenbr0,mac=%s' ]
on_poweroff = "destroy"
on_reboot = "destroy"
on_crash = "preserve"
""" % (name, cmdline, memory, vcpus, root, mac)


def start_domu():
    cfg = domu_config("domu", MAC, "/dev/vdc", CONF.get("domu_mem", 512), CONF.get("domu_vcpus", 1),
                      CONF.get("domu_cmdline", ""))
    open("/run/domu.cfg", "w").write(cfg)
    sh("modprobe xen-blkback", 30)
    # the domU console, without the agent's protocol lines, onto dom0's console
    # (straight to the console: a child holding the tee pipe would keep PID 1 waiting)
    global TAIL
    TAIL = subprocess.Popen("exec >/dev/hvc0 2>&1; tail -n +1 -F /var/log/xen/console/guest-domu.log 2>/dev/null | "
                            "grep --line-buffered -av '@@' | sed -u 's/\\r$//; s/^/[domU] /'", shell=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    rc, out = sh("xl -v create /run/domu.cfg", 120)
    errs = [l for l in out.splitlines() if "error" in l.lower()]
    if not check("domu-create", rc == 0, "xl create rc=%d%s" % (rc, (": " + " | ".join(errs[-6:]))[:800] if rc else "")):
        return None
    rc, out = sh("xl domid domu", 20)
    return int(out.strip()) if rc == 0 and out.strip().isdigit() else None


# --- network helpers ------------------------------------------------------------------------
def vifs():
    return sorted(n for n in os.listdir("/sys/class/net") if n.startswith("vif"))


def mac_bytes(mac):
    """An Ethernet address written "aa:bb:cc:dd:ee:ff" as 6 bytes; ValueError if it is not one."""
    b = bytes(int(x, 16) for x in mac.strip().split(":"))
    if len(b) != 6:
        raise ValueError("not a MAC address: %r" % mac)
    return b


def bridge_mac():
    """The MAC of dom0's bridge xenbr0, as 6 bytes."""
    return mac_bytes(open("/sys/class/net/xenbr0/address").read())


def bridge_socket(ethertype=0x88b5, opts=()):
    """A raw socket on dom0's bridge xenbr0 for frames of `ethertype`; `opts` are
    (level, option, value) set before it is bound."""
    import socket
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
    for level, opt, value in opts:
        s.setsockopt(level, opt, value)
    s.bind(("xenbr0", ethertype))
    return s


def domu_ifname(ag, mac=MAC):
    rc, out = ag.run("for d in /sys/class/net/*; do [ \"$(cat $d/address 2>/dev/null)\" = %s ] && basename $d; done; true" % mac, 20, True)
    return out.strip().split("\n")[0] if rc == 0 and out.strip() else None


def domu_net_up(ag, timeout=90, mac=MAC, ip=DOMU_IP):
    """Wait for the netfront netdev with `mac` in the domU of `ag`, give it `ip`; returns its
    name or None."""
    ifn = wait_for(lambda: domu_ifname(ag, mac), timeout, 1)
    if not ifn:
        return None
    ag.run("ip addr flush dev %s; ip addr add %s/24 dev %s && ip link set %s up" % (ifn, ip, ifn, ifn), 30)
    return ifn


def vif_up(timeout=60):
    """Wait until a vif is on the bridge and up (carrier); returns its name or None."""
    def f():
        for v in vifs():
            try:
                if (os.path.exists("/sys/class/net/%s/brport" % v) and
                        open("/sys/class/net/%s/operstate" % v).read().strip() in ("up", "unknown")):
                    return v
            except OSError:
                pass
        return None
    return wait_for(f, timeout, 0.5)


DOMU2_MAC, DOMU2_IP = "00:16:3e:00:00:03", "10.0.0.3"


def second_domu(disk="/dev/vde", memory=384):
    """Boots a second domU `domu2` (the same image on its own overlay `disk`, which run.py gives
    the scenarios marked domu2) with the frontend under test, at DOMU2_IP on the bridge.
    Returns (stage reached: "create", "boot", "link" or "up", domid, agent, netdev, detail)."""
    if not os.path.exists(disk):
        return "create", None, None, None, "no %s (run.py gives it to the scenarios marked domu2)" % disk
    open("/run/domu2.cfg", "w").write(domu_config("domu2", DOMU2_MAC, disk, memory, 1))
    rc, out = sh("xl -v create /run/domu2.cfg", 120)
    rc2, o2 = sh("xl domid domu2", 20)
    domid2 = int(o2.strip()) if rc2 == 0 and o2.strip().isdigit() else None
    if rc != 0 or domid2 is None:
        return "create", domid2, None, None, "xl create rc=%d %s" % (rc, out[-300:])
    ag2 = Agent(domid2)
    if not (ag2.connect(60) and ag2.ping(240)):
        return "boot", domid2, None, None, "agent of domain %s does not answer" % domid2
    rc, out = ag2.run(load_cmd("front"), 60)
    ifn2 = domu_net_up(ag2, mac=DOMU2_MAC, ip=DOMU2_IP) if rc == 0 else None
    vif2 = "vif%d.0" % domid2
    on_br = wait_for(lambda: os.path.exists("/sys/class/net/%s/brport" % vif2), 60, 0.5)
    detail = "domU2 netdev=%s, %s on the bridge=%s, xenstore: %s" % (ifn2, vif2, on_br, xs_states(domid2))
    return ("up" if ifn2 and on_br else "link"), domid2, ag2, ifn2, detail


def xs_states(domid):
    """(backend state, frontend state) of vif devid(s) of the domU, as text."""
    _, out = sh("for d in $(xenstore-list /local/domain/0/backend/vif/%d 2>/dev/null); do "
                "echo \"dev $d back $(xenstore-read /local/domain/0/backend/vif/%d/$d/state) "
                "front $(xenstore-read /local/domain/%d/device/vif/$d/state 2>/dev/null)\"; done" % (domid, domid, domid), 20, True)
    return out.strip()


def parse_ping(out):
    loss = re.search(r"([\d.]+)% packet loss", out)
    rtt = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)", out)
    return (float(loss.group(1)) if loss else None), (float(rtt.group(2)) if rtt else None)


def ping_check(name, runner, dst, count=10):
    rc, out = runner("ping -c %d -i 0.2 -W 2 %s" % (count, dst), 60)
    loss, rtt = parse_ping(out)
    ok = rc == 0 and loss == 0.0
    check(name, ok, "rc=%s loss=%s%% avg_rtt=%s ms" % (rc, loss, rtt) + ("" if ok else " | " + out[-400:]))
    if rtt is not None:
        metric(name + "-rtt", rtt, "ms")
    if not ok:
        diagnose(name)
    return ok


def txtstamp_check(name, runner, dst, n=10):
    """A UDP socket with SO_TIMESTAMPING sends n datagrams to dst (guest/txtstamp.py): every one
    gets its software TX timestamp (SCM_TSTAMP_SND, made by the transmitting driver)."""
    _, out = runner("python3 /rig/txtstamp.py %s %d" % (dst, n), 60, True)
    check(name, "TXTSTAMP sent=%d snd=%d sane=%d" % (n, n, n) in out,
          "SO_TIMESTAMPING UDP to %s: %s" % (dst, out.strip()[-200:]))


def flows_run(ag, to_domu, conns=64, nbytes=128 << 10, timeout=120):
    """`conns` TCP flows of `nbytes` each (guest/flows.py) between dom0 and the domU behind `ag`,
    towards it (to_domu) or from it: every flow its own ports, so its own hash. Returns (rc,
    Mbit/s at the receiver, detail); rc 0 when every flow delivered all its bytes."""
    port = 5301
    if to_domu:
        sink_run, send_run, dst = ag.run, sh, DOMU_IP
    else:
        sink_run, send_run, dst = sh, ag.run, DOM0_IP
    box = {}
    th = threading.Thread(target=lambda: box.update(
        sink=sink_run("python3 /rig/flows.py sink %d %d %d %d" % (port, conns, nbytes, timeout), timeout + 30, True)))
    th.start()
    rc, out = send_run("python3 /rig/flows.py send %s %d %d %d %d" % (dst, port, conns, nbytes, timeout), timeout + 30, True)
    th.join(timeout + 40)
    rck, outk = box.get("sink", (None, ""))
    m = re.search(r"^FLOWS (\{.*\})", outk, re.M)
    k = json.loads(m.group(1)) if m else {}
    mbps = k["bytes"] * 8 / k["secs"] / 1e6 if k.get("secs") else 0.0
    detail = "%d flows of %d KiB %s: %.1f Mbit/s | sink rc=%s %s | sender rc=%s %s" % (
        conns, nbytes >> 10, "dom0 -> domU" if to_domu else "domU -> dom0", mbps,
        rck, outk.strip()[-200:], rc, out.strip()[-200:])
    return (0 if rc == 0 and rck == 0 else 1), mbps, detail


NC_RX = r"""
import os, re, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 6666))
s.settimeout(0.3)
print("NCRX ready", flush=True)
n, stop = int(sys.argv[2]), sys.argv[3]
got, end = set(), time.time() + 120
while len(got) < n and not os.path.exists(stop) and time.time() < end:
    try:
        b = s.recv(4096)
    except socket.timeout:
        continue
    got.update(int(m) for m in re.findall(rb"rig-netconsole-(\d+)", b))
print("NCRX got=%d missing=%s" % (len(got), sorted(set(range(1, n + 1)) - got)), flush=True)
"""


def netconsole_check(name, tx_run, rx_run, dev, local_ip, remote_ip, remote_mac, n=20):
    """netconsole (netpoll: transmits with interrupts disabled, polls with budget 0) on `dev` of
    the domain `tx_run` runs in, towards a UDP listener in the other one: at least n-2 of n
    kernel messages must arrive; the target is removed afterwards. The listener runs until it
    has them all or the sender is done (2 s after its last message), not for a fixed time: on a
    slow host the setup alone took most of a fixed window. The first message goes out only once
    the listener is bound (on a loaded host its Python took over a second to start, and the
    first messages of a run were lost before it listened). One check; True if passed."""
    rx_run("rm -f /tmp/ncrx.stop; cat > /tmp/ncrx.py <<'EOF'\n%sEOF\n"
           "(python3 /tmp/ncrx.py %s %d /tmp/ncrx.stop >/tmp/ncrx.log 2>&1 &); "
           "for i in $(seq 150); do grep -q 'NCRX ready' /tmp/ncrx.log && break; sleep 0.2; done"
           % (NC_RX, remote_ip, n), 60)
    t = "/sys/kernel/config/netconsole/rig"
    rc, out = tx_run("grep -q ' /sys/kernel/config ' /proc/mounts || mount -t configfs configfs /sys/kernel/config; "
                     "modprobe netconsole && mkdir -p {t} && echo {dev} > {t}/dev_name && echo {l} > {t}/local_ip && "
                     "echo {r} > {t}/remote_ip && echo 6666 > {t}/remote_port && echo {m} > {t}/remote_mac && "
                     "echo 1 > {t}/enabled && for i in $(seq {n}); do echo \"<3>rig-netconsole-$i\" > /dev/kmsg; sleep 0.05; done; "
                     "sleep 2; echo 0 > {t}/enabled; rmdir {t}".format(t=t, dev=dev, l=local_ip, r=remote_ip, m=remote_mac, n=n), 60)
    _, log = rx_run("touch /tmp/ncrx.stop; for i in $(seq 50); do grep -q 'NCRX got' /tmp/ncrx.log && break; sleep 0.2; done; "
                    "cat /tmp/ncrx.log", 30)
    m = re.search(r"NCRX got=(\d+) missing=(.*)", log)
    got = int(m.group(1)) if m else None
    return check(name, rc == 0 and got is not None and got >= n - 2,
                 "netconsole on %s (%s -> %s): %s of %d messages received (missing %s); setup rc=%s %s"
                 % (dev, local_ip, remote_ip, got, n, m.group(2).strip() if m else "?", rc,
                    "" if rc == 0 else out.strip()[-300:]))


DIAGNOSED = set()


def diagnose(why):
    """After a failed traffic check, log what an administrator would look at (once per check)."""
    if why in DIAGNOSED or len(DIAGNOSED) >= 3:
        return
    DIAGNOSED.add(why)
    say("RIG-DIAG after %s" % why)
    sh("ip -s link show; bridge link; bridge fdb show br xenbr0; ip neigh; "
       "for v in $(ls /sys/class/net | grep '^vif'); do ethtool -S $v; done; "
       "grep -i xen /proc/interrupts; dmesg | tail -40", 60)
    if AG is not None:
        AG.run("ip -s link show; ip neigh; for i in $(ls /sys/class/net | grep -v lo); do ethtool -S $i; done; "
               "grep -i xen /proc/interrupts; dmesg | tail -60", 60)


def net_counts(ag):
    """What the iperf metrics per MB compare: the domU's eth0 packets (/proc/net/dev) and
    interrupts (its event channels: eth0-qN-* for xen-netfront-rs, vif0-qN-* for C's), and
    dom0's vif interrupts (all, and per channel of split event channels)."""
    def irqs(text, names, suffix=""):
        """Interrupts on all CPUs of the /proc/interrupts lines naming one of `names` (and
        ending with `suffix`: "-tx"/"-rx", the channels of split event channels)."""
        total = 0
        for line in text.splitlines():
            f = line.split()
            if f and f[0].endswith(":") and any(n in line for n in names) and f[-1].endswith(suffix):
                total += sum(int(x) for x in f[1:] if x.isdigit())
        return total

    def cpu(text):
        """(busy, total) jiffies of the first "cpu" line of /proc/stat: busy is all but idle,
        iowait and steal (the time Xen gave the other domain)."""
        for line in text.splitlines():
            f = line.split()
            if f and f[0] == "cpu":
                v = [int(x) for x in f[1:9]]
                return sum(v) - v[3] - v[4] - v[7], sum(v)
        return 0, 0

    _, out = ag.run("cat /proc/net/dev /proc/interrupts /proc/stat", 20, True)
    c = {"domu-rx-pkts": 0, "domu-tx-pkts": 0}
    for f in (line.split() for line in out.splitlines()):
        if f and f[0] == "eth0:" and len(f) > 10:
            c["domu-rx-pkts"], c["domu-tx-pkts"] = int(f[2]), int(f[10])
    c["domu-irqs"] = irqs(out, ("eth0-q", "vif0-q"))
    c["domu-tx-irqs"] = irqs(out, ("eth0-q", "vif0-q"), "-tx")
    c["domu-rx-irqs"] = irqs(out, ("eth0-q", "vif0-q"), "-rx")
    dom0 = open("/proc/interrupts").read()
    c["dom0-vif-irqs"] = irqs(dom0, ("vif",))
    # the backend's channels: -tx, the frontend's new TX requests; -rx, its new RX buffers
    c["dom0-vif-tx-irqs"] = irqs(dom0, ("vif",), "-tx")
    c["dom0-vif-rx-irqs"] = irqs(dom0, ("vif",), "-rx")
    c["domu-cpu"] = cpu(out)
    c["dom0-cpu"] = cpu(open("/proc/stat").read())
    return c


def profile_metrics(name, dom, out):
    """Metrics of a tools/ksample.c profile (`out` holds its KSAMPLE line): the share of the busy
    samples per module and of the busiest functions, and the whole profile in the run's log."""
    m = re.search(r"KSAMPLE (\{.*\})", out)
    if not m:
        say("no profile of %s: %s" % (dom, out[-300:]))
        return
    p = json.loads(m.group(1))
    busy = p["samples"] - p["idle"]
    say("PROFILE %s %s %s" % (name, dom, m.group(1)))
    if busy <= 0:
        return
    metric("%s-prof-%s-samples" % (name, dom), busy, "count")
    for mod, n in sorted(p["mods"].items()):
        metric("%s-prof-%s-mod-%s" % (name, dom, mod), round(100.0 * n / busy, 2), "%")
    metric("%s-prof-%s-mod-user" % (name, dom), round(100.0 * p["user"] / busy, 2), "%")
    for sym, mod, n in p["top"][:25]:
        metric("%s-prof-%s-fn-%s" % (name, dom, sym), round(100.0 * n / busy, 2), "%")
    for sym, mod, n in p["hypercalls"][:15]:   # time in Xen, by the function that called it
        metric("%s-prof-%s-hv-%s" % (name, dom, sym), round(100.0 * n / busy, 2), "%")


def iperf(ag, name, reverse, secs):
    before = net_counts(ag)
    cmd = ("iperf3 -c %s -t %d %s --json >/tmp/ip.json 2>/tmp/ip.err; rc=$?; "
           "python3 /rig/iperfsum.py /tmp/ip.json; cat /tmp/ip.err") % (DOM0_IP, secs, "-R" if reverse else "")
    prof = None
    if CONF.get("profile"):
        # both kernels, over the middle of the transfer (TCP's ramp-up and the end left out)
        psecs = max(1, secs - 4)
        cmd = "(sleep 2; /rig/ksample %d 60 >/tmp/ks.out 2>&1) & %s; wait; cat /tmp/ks.out" % (psecs, cmd)
        prof = subprocess.Popen("sleep 3; exec /rig/ksample %d 60" % psecs, shell=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rc, out = ag.run(cmd + "; exit $rc", secs + 60)
    if prof is not None:
        profile_metrics(name, "domu", out)
        profile_metrics(name, "dom0", prof.communicate(timeout=60)[0])
    m = re.search(r"IPERFSUM (\{.*\})", out)
    s = json.loads(m.group(1)) if m else {}
    nbytes, bps = s.get("recv_bytes", 0), s.get("recv_bps", 0)
    ok = rc == 0 and nbytes > 0
    check(name, ok, "rc=%s receiver %d bytes, %.1f Mbit/s%s" % (rc, nbytes, bps / 1e6, "" if ok else " | " + out[-500:]))
    if ok:
        metric(name + "-mbps", round(bps / 1e6, 2), "Mbit/s")
        if s.get("retransmits") is not None:
            metric(name + "-retransmits", s["retransmits"], "count")
        # TCP sizes its TSO packets by the RTT (tcp_tso_autosize): the latency each driver adds
        for k in ("mean_rtt", "min_rtt"):
            if k in s:
                metric("%s-%s" % (name, k.replace("_", "-")), s[k], "us")
        # how the drivers batch: packets and interrupts per MB carried (bench compares them)
        after = net_counts(ag)
        for k in sorted(after):
            if k.endswith("-cpu"):
                # which domain the transfer keeps busy (the other one's share is steal time)
                busy, total = (a - b for a, b in zip(after[k], before[k]))
                if total > 0:
                    metric("%s-%s-busy" % (name, k[:-4]), round(100.0 * busy / total, 1), "%")
            else:
                metric("%s-%s-per-mb" % (name, k), round((after[k] - before[k]) * 1e6 / nbytes, 2), "per MB")
    return ok


def ethtool_k(runner, ifn):
    for _ in range(5):   # just after the vif appears ethtool may fail once: retry
        rc, out = runner("ethtool -k %s" % ifn, 20)
        if rc == 0:
            break
        time.sleep(1)
    feats = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\w-]+): (on|off)( \[.*\])?", line)
        if m:
            feats[m.group(1)] = m.group(2)
    return rc, feats


EXPECT_ON = ["scatter-gather", "tcp-segmentation-offload", "tx-checksumming", "rx-checksumming"]


def zerocopy_stats(vif):
    """Guest-TX zero-copy counters of the backend (ethtool -S; C netback and xen-netback-rs with
    tx_mode=1 map the frontend's pages). With tx_mode=1 on the Rust backend, the iperf run must
    have gone through the zero-copy path and every buffer must have completed."""
    rc, out = sh("ethtool -S %s" % vif, 30, True)
    st = {}
    for line in out.splitlines():
        k, _, v = line.strip().partition(":")
        if k.startswith("tx_zerocopy_") or k == "tx_frag_overflow":
            try:
                st[k] = int(v)
            except ValueError:
                pass
    for k, v in sorted(st.items()):
        metric("back-%s" % k, v, "count")
    params = CONF.get("back_params", "").split()
    if "tx_mode=1" in params:
        rc2, mode = sh("cat /sys/module/xen_netback_rs/parameters/tx_mode", 10, True)
        sent = st.get("tx_zerocopy_sent", 0)
        done = st.get("tx_zerocopy_success", 0) + st.get("tx_zerocopy_fail", 0)
        check("back-tx-zerocopy", rc2 == 0 and mode.strip() == "1" and sent >= 100 and 0 < done <= sent,
              "tx_mode=%s sent=%d success=%d fail=%d" % (mode.strip(), sent, st.get("tx_zerocopy_success", 0),
                                                        st.get("tx_zerocopy_fail", 0)))
    return st


def offloads(ag, ifn, vif):
    res = {}
    for side, runner, dev in (("domu", ag.run, ifn), ("dom0", sh, vif)):
        rc, feats = ethtool_k(runner, dev)
        res[side] = feats
        on = {k: feats.get(k) for k in EXPECT_ON}
        check("offloads-%s" % side, rc == 0 and all(v == "on" for v in on.values()),
              "%s: %s" % (dev, ", ".join("%s=%s" % kv for kv in on.items())))
        for k in EXPECT_ON + ["generic-segmentation-offload", "generic-receive-offload"]:
            if k in feats:
                metric("offload-%s-%s" % (side, k), 1 if feats[k] == "on" else 0, "bool")
    json.dump(res, open(os.path.join(OUT, "ethtool-k.json"), "w"), indent=1)
    return res


# --- module reload --------------------------------------------------------------------------
UNBIND = ("for d in /sys/bus/%s/devices/vif-*; do [ -e $d/driver ] && echo \"unbind $(basename $d) from $(basename $(readlink $d/driver))\" "
          "&& echo $(basename $d) > $d/driver/unbind; done; true")


def reload_front(ag, domid, ifn):
    """Unload and reload the frontend module with the domU running.
    Measured with the C driver: xenbus_dev_probe() holds a reference on the driver's module per bound
    device, so `modprobe -r` says "in use" while vif-0 is bound; unbinding the device through sysfs
    closes the connection (frontend state Closed), then the module unloads. Loading it again
    re-probes vif-0, which reconnects to the waiting backend."""
    mark("FRONT-RELOAD")
    ag.run("ip link set %s down" % ifn, 20)
    rc, out = ag.run("modprobe -r %s" % modname("front"), 60)
    refused = rc != 0 and loaded_in(ag.run, "front")
    metric("front-rmmod-while-bound-refused", 1 if refused else 0, "bool")
    if FRONT == "c":
        check("front-rmmod-busy-refused", refused, "modprobe -r rc=%s: %s" % (rc, out.strip()[-300:]))
    if refused:
        rc, out = ag.run(UNBIND % "xen", 60)
        ok = wait_for(lambda: domu_ifname(ag) is None, 30, 1)
        check("front-unbind", rc == 0 and ok, "netdev gone=%s, xenstore: %s | %s" % (ok, xs_states(domid), out.strip()[-300:]))
        rc, out = ag.run("modprobe -r %s" % modname("front"), 60)
    gone = wait_for(lambda: domu_ifname(ag) is None, 30, 1)
    check("front-unload", rc == 0 and gone and not loaded_in(ag.run, "front"),
          "modprobe -r rc=%s, netdev gone=%s, xenstore: %s %s" % (rc, gone, xs_states(domid), out[-300:]))
    rc, out = ag.run(load_cmd("front"), 60)
    check("front-reload", rc == 0, "rc=%s %s" % (rc, out[-300:]))
    ifn = domu_net_up(ag)
    vif = vif_up(60)
    check("front-reconnect", ifn is not None and vif is not None,
          "domU netdev=%s, dom0 vif=%s, xenstore: %s" % (ifn, vif, xs_states(domid)))
    if ifn and vif:
        wait_for(lambda: ag.run("ping -c 1 -W 1 %s" % DOM0_IP, 10, True)[0] == 0, 30, 1)
        ping_check("ping-after-front-reload", sh, DOMU_IP, 5)
    return ifn, vif


def reload_back(ag, domid, ifn, vif):
    mark("BACK-RELOAD")
    # 1. With a vif connected: does the backend module refuse to unload?
    rc, out = sh("rmmod %s" % modname("back"), 30)
    busy_refused = rc != 0 and loaded_in(sh, "back")
    metric("back-rmmod-with-vif-refused", 1 if busy_refused else 0, "bool")
    if BACK == "c":
        # Measured: xen-netback holds a module reference per vif, rmmod says "in use".
        check("back-rmmod-busy-refused", busy_refused, "rmmod rc=%d: %s" % (rc, out.strip()[-300:]))
    else:
        check("back-rmmod-busy-safe", busy_refused or not vifs(), "rmmod rc=%d: %s; vifs now %s" % (rc, out.strip()[-300:], vifs()))
    # 2. detach the vif, unload, load, attach again
    if loaded_in(sh, "back"):
        # Quiesce the domU side first: C xen-netfront 7.3 WARNs (get_page() on a slab page in
        # xennet_release_tx_bufs) when it is torn down with TX buffers still granted.
        if ifn:
            ag.run("ip link set %s down" % ifn, 20)
        rc, out = sh("xl network-detach domu %s" % MAC, 60)
        gone = wait_for(lambda: not vifs() and domu_ifname(ag) is None, 60, 1)
        check("back-detach", rc == 0 and gone, "rc=%d vifs=%s domU netdev gone=%s %s" % (rc, vifs(), gone, out[-300:]))
        rc, out = sh("rmmod %s" % modname("back"), 30)
        check("back-unload", rc == 0 and not loaded_in(sh, "back"), "rc=%d %s" % (rc, out[-300:]))
    rc, out = sh(load_cmd("back"), 60)
    check("back-reload", rc == 0, "rc=%d %s" % (rc, out[-300:]))
    rc, out = sh("xl network-attach domu bridge=xenbr0 mac=%s" % MAC, 60)
    vif = vif_up(60)
    ifn = domu_net_up(ag) if rc == 0 else None
    check("back-reattach", rc == 0 and vif is not None and ifn is not None,
          "rc=%d vif=%s domU netdev=%s xenstore: %s %s" % (rc, vif, ifn, xs_states(domid), out[-300:]))
    if ifn and vif:
        wait_for(lambda: ag.run("ping -c 1 -W 1 %s" % DOM0_IP, 10, True)[0] == 0, 30, 1)
        ping_check("ping-after-back-reload", sh, DOMU_IP, 5)
    return ifn, vif


# --- scenarios ------------------------------------------------------------------------------
def scenario():
    mark("SCENARIO-START %s front=%s back=%s" % (SCEN, FRONT, BACK))
    sh("uname -a; cat /proc/cmdline; xl info 2>/dev/null | head -40", 30, True)
    if not toolstack():
        return
    rc, out = sh(load_cmd("back"), 60)
    check("backend-load", rc == 0, "%s: rc=%d %s" % (modname("back"), rc, out[-300:]))
    mark("DOM0-READY")
    if CONF.get("loopback"):
        # control measurement for benchmarks: dom0's own TCP loopback, before the domU exists
        srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        time.sleep(1)
        rc, out = sh("iperf3 -c 127.0.0.1 -t %d --json >/tmp/lo.json; rc=$?; python3 /rig/iperfsum.py /tmp/lo.json; exit $rc"
                     % CONF.get("secs", 10), CONF.get("secs", 10) + 60)
        m = re.search(r"IPERFSUM (\{.*\})", out)
        if rc == 0 and m:
            metric("dom0-loopback-mbps", round(json.loads(m.group(1))["recv_bps"] / 1e6, 2), "Mbit/s")
        check("dom0-loopback", rc == 0 and m is not None, out[-300:])
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
    if SCEN == "fpstress":
        rc, out = sh("/rig/fpstress -p 4 -t %d -m avx" % CONF.get("secs", 30), CONF.get("secs", 30) + 120)
        check("fpstress-dom0", rc == 0, out[-600:])
    domid = start_domu()
    if domid is None:
        return
    metric("domu-domid", domid, "id")
    ag = Agent(domid)
    if not check("agent-connect", ag.connect(60), "console pty of domain %d" % domid):
        return
    if not check("domu-boot", ag.ping(CONF.get("boot_timeout", 240)), "agent answered"):
        return
    mark("DOMU-READY")
    metric("domu-ready", round(up(), 1), "s dom0 uptime")
    rc, out = ag.run("uname -r; cat /proc/cmdline; nproc; grep MemTotal /proc/meminfo", 30)
    check("domu-agent", rc == 0 and CONF["krel"] in out, out.strip()[:300])
    if SCEN in ("boot", "run", "basic") and os.path.exists("/rig/pvmmu.py"):  # issue 6 (pvmmu.py)
        import pvmmu
        pvmmu.step(sh, ag.run, check, metric)
    global AG
    AG = ag
    if CONF.get("tlbbench"):   # make bench, issue 6: TLB-heavy microbenchmark in the domU
        rc, out = ag.run("/rig/tlbbench -s 3", 120)
        m = re.search(r"TLBBENCH (\{.*\})", out)
        if check("tlbbench", rc == 0 and m is not None, out[-300:]):
            r = json.loads(m.group(1))
            metric("tlb-user-ns", r["user_ns"], "ns/access")
            metric("tlb-kernel-ns", r["kernel_ns"], "ns/iteration")
            if "direct_ns" in r:
                metric("tlb-direct-ns", r["direct_ns"], "ns/read")
    if SCEN == "boot":
        return
    if SCEN == "fpstress":
        secs = CONF.get("secs", 30)
        p = subprocess.Popen("/rig/fpstress -p 2 -t %d -m avx > /tmp/fp0.log 2>&1" % secs, shell=True)
        rc, out = ag.run("/rig/fpstress -p 2 -t %d -m avx" % secs, secs + 120)
        p.wait(secs + 120)
        check("fpstress-domu", rc == 0, out[-600:])
        check("fpstress-dom0-concurrent", p.returncode == 0, open("/tmp/fp0.log").read()[-600:])
        return
    rc, out = ag.run(load_cmd("front"), 60)
    check("frontend-load", rc == 0, "%s: rc=%s %s" % (modname("front"), rc, out[-300:]))
    if SCEN == "basic" and FRONT == "rs" and rc == 0:
        module_kunit(ag.run, modname("front"), "domu")
    ifn = domu_net_up(ag)
    vif = vif_up(60)
    check("link-up", ifn is not None and vif is not None,
          "domU netdev=%s, dom0 vif=%s, xenstore: %s" % (ifn, vif, xs_states(domid)))
    mark("NET-READY")
    if SCEN.startswith("hostile-"):   # selftests/rig/guest/scen_hostile.py
        import scen_hostile
        if ifn and vif:
            wait_for(lambda: sh("ping -c 1 -W 1 %s" % DOMU_IP, 10, True)[0] == 0, 30, 1)
            ping_check("ping-dom0-to-domu", sh, DOMU_IP)
        scen_hostile.run(sys.modules[__name__], ag, domid, ifn, vif)
        return
    if SCEN == "ksft":   # selftests/rig/guest/scen_ksft.py: the kselftests (issues 4, 5)
        import scen_ksft
        scen_ksft.run(sys.modules[__name__], ag, domid, ifn, vif)
        return
    if SCEN == "back-features":   # selftests/rig/guest/scen_back.py
        import scen_back
        scen_back.run(sys.modules[__name__], ag, domid, ifn, vif)
        return
    if SCEN in ("features", "save-restore"):   # selftests/rig/guest/scen_features.py
        import scen_features
        (scen_features.run if SCEN == "features" else scen_features.run_save_restore)(
            sys.modules[__name__], ag, domid, ifn, vif)
        return
    if ifn and vif:
        # first packets may wait for ARP / bridge learning: allow a warm-up
        wait_for(lambda: sh("ping -c 1 -W 1 %s" % DOMU_IP, 10, True)[0] == 0, 30, 1)
        ping_check("ping-dom0-to-domu", sh, DOMU_IP)
        ping_check("ping-domu-to-dom0", ag.run, DOM0_IP)
        srv = subprocess.Popen(["iperf3", "-s", "-B", DOM0_IP], stdout=open(os.path.join(OUT, "iperf3-server.log"), "w"),
                               stderr=subprocess.STDOUT)
        time.sleep(1)
        secs = CONF.get("secs", 10)
        mark("IPERF-TX")
        iperf(ag, "iperf-tx", False, secs)
        mark("IPERF-RX")
        iperf(ag, "iperf-rx", True, secs)
        srv.terminate()
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            srv.kill()
        if srv.returncode is not None and srv.returncode < 0 and -srv.returncode not in (15, 9):
            say("RIG-CRASH dom0 iperf3 server died by signal %d" % -srv.returncode)
        zerocopy_stats(vif)
        offloads(ag, ifn, vif)
        if SCEN == "basic":
            pv = None
            if os.path.exists("/rig/pvmmu.py"):  # issue 6: the direct map around a module load
                import pvmmu
                pv = pvmmu.dlp_state(ag.run) if pvmmu.direct_active(ag.run) else None
            ifn, vif = reload_front(ag, domid, ifn)
            if pv:
                pvmmu.module_load(ag.run, check, metric, pv)
            ifn, vif = reload_back(ag, domid, ifn, vif)
            mark("FINAL-PING")
            if ifn and vif:
                ping_check("final-ping-dom0-to-domu", sh, DOMU_IP)
                ping_check("final-ping-domu-to-dom0", ag.run, DOM0_IP)
            else:
                check("final-ping-dom0-to-domu", False, "no link after reloads")
        if SCEN in ("run", "basic") and os.path.exists("/rig/pvmmu.py"):  # issue 6: after traffic
            import pvmmu
            pvmmu.final(ag.run, check, metric, sh)


AG = None
TAIL = None


def main():
    try:
        scenario()
    except Exception as e:
        import traceback
        check("scenario-exception", False, traceback.format_exc()[-1200:])
    if AG:
        rc, out = AG.run("dmesg", 30, True)
        open(os.path.join(OUT, "domu-dmesg.txt"), "w").write(out)
    mark("SCENARIO-END")
    sh("xl list; xl destroy domu", 60)
    sh("cp /var/log/xen/console/guest-domu.log %s/domu-console.log" % OUT, 30, True)
    json.dump(results, open(os.path.join(OUT, "dom0-results.json"), "w"), indent=1)
    if TAIL:
        time.sleep(1)
        os.killpg(TAIL.pid, 9)


main()
