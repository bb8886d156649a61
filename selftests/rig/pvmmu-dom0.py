#!/usr/bin/python3
"""Issue 6: boot any Xen (e.g. the patched 4.17 of scripts/xen.sh) with our kernel as PV dom0 only,
and dump the page-table census there. No toolstack, no domU: this works with a hypervisor whose
major.minor differs from the rig rootfs's xen-utils (the rig's base.img has 4.20's), which is
exactly the situation of the patched 4.17 until a 4.17 rootfs exists.

  selftests/rig/pvmmu-dom0.py --xen build/xen/xen-4.17-pvsp.elf --xen-append pv-superpages \
      [--kernel-dir build/kernel] [--dom0-append "xen_superpages=off"] [--tag T]

Needs build/rig/base.img (selftests/rig/images.sh; BUILD= to use another build dir).
dom0 runs /rig/init-dom0 from a throw-away rig disk: census, superpage state and its debugfs
revert, the kernel's xen: lines, ptdump's PSE/GLB lines, a little user-space load, census again,
poweroff. Writes build/runs/pvmmu-dom0[-T]-<stamp>/console.log and prints the interesting part.
Takes the machine-wide heavy-job lock like scripts/kernel.sh and run.py.
"""
import argparse, datetime, os, re, shutil, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("BUILD", os.path.join(TOP, "build"))

INIT = r"""# dom0 PID 1 for selftests/rig/pvmmu-dom0.py (busybox sh, started by /sbin/rig-init)
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mkdir -p /tmp /run; mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug
D=/sys/kernel/debug
census() { echo "== census ($1) $(cat $D/xen_pt_census | tr '\n' ' ')"; }
echo "PVMMU-BEGIN"
echo "== cmdline $(cat /proc/cmdline)"
dmesg | grep -E 'xen: (PV superpages|hypervisor refuses|kernel text/rodata|no kernel text|PV superpage install|user mappings kept|direct map)|Write protecting|Freeing unused kernel image' | sed 's/^/== dmesg /'
census boot
echo "== klp $(cat $D/xen_kernel_large_pages)"
echo "== dlp (installed, 2M, splits, candidates) $(cat $D/xen_direct_large_pages 2>&1)"
echo "== ptdump-kernel-image"
sed -n '/High Kernel Mapping/,/Modules/p' $D/page_tables/kernel 2>&1 | head -30
echo "== ptdump-GLB-lines $(grep -c GLB $D/page_tables/kernel)"
set -- $(cat $D/xen_kernel_large_pages)
if [ "$1" = 1 ]; then
	echo 0 >$D/xen_kernel_large_pages; echo "== klp after echo 0: rc=$? $(cat $D/xen_kernel_large_pages)"
	census 4k
	echo 1 >$D/xen_kernel_large_pages; echo "== klp after echo 1: rc=$? $(cat $D/xen_kernel_large_pages)"
	census 2M
	echo split >$D/xen_kernel_large_pages; echo "== klp after echo split: rc=$? $(cat $D/xen_kernel_large_pages)"
	census split
	echo "== ptdump-GLB-lines-after-split $(grep -c GLB $D/page_tables/kernel)"
	sed -n '/High Kernel Mapping/,/Modules/p' $D/page_tables/kernel 2>&1 | head -8
fi
echo "== load"
i=0; while [ $i -lt 20 ]; do ls -R /usr/lib >/dev/null 2>&1; python3 -c 'import json,re,zlib; print(sum(range(10**5)))' >/dev/null || echo "== load: python3 rc=$?"; i=$((i + 1)); done
census after-load
echo "== dmesg-crash-lines $(dmesg | grep -cE 'BUG:|Oops|WARNING:|general protection|Kernel panic|segfault')"
dmesg | grep -E 'BUG:|Oops|WARNING:|general protection|Kernel panic|segfault' | head -20
echo "PVMMU-END"
sync
busybox poweroff -f
sleep 3600
"""


sys.path.insert(0, HERE)
# run.py's blocking wait for the heavy-job lock (a polling waiter starved: 50 min behind run.py's)
from run import take_lock  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xen", required=True, help="multiboot ELF of the hypervisor")
    ap.add_argument("--xen-append", default="")
    ap.add_argument("--kernel-dir", default=os.path.join(BUILD, "kernel"))
    ap.add_argument("--dom0-append", default="")
    ap.add_argument("--tag", default="")
    ap.add_argument("--timeout", type=int, default=420)
    a = ap.parse_args()
    base = os.path.join(BUILD, "rig", "base.img")
    bz = os.path.join(a.kernel_dir, "arch/x86/boot/bzImage")
    for p in (a.xen, base, bz):
        if not os.path.exists(p):
            sys.exit("pvmmu-dom0: missing %s" % p)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    rd = os.path.join(BUILD, "runs", "pvmmu-dom0%s-%s" % ("-" + a.tag if a.tag else "", stamp))
    os.makedirs(os.path.join(rd, "rigdisk"))
    open(os.path.join(rd, "rigdisk", "init-dom0"), "w").write(INIT)
    rig = os.path.join(rd, "rig.img")
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "rig", "-d", os.path.join(rd, "rigdisk"), rig, "8M"], check=True)
    disk = os.path.join(rd, "dom0.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", disk], check=True)
    xen_cmd = ("console=com1 com1=115200,8n1 dom0_mem=1536M,max:1536M loglvl=all guest_loglvl=all noreboot " + a.xen_append).strip()
    dom0_cmd = ("root=/dev/vda rw console=hvc0 earlyprintk=xen init=/sbin/rig-init rig.role=dom0 rig.disk=/dev/vdb kunit.autorun=0 " + a.dom0_append).strip()
    cmd = ["qemu-system-x86_64", "-accel", "tcg,thread=single", "-cpu", "max,-xsave", "-smp", "2", "-m", "3072",
           "-nographic", "-nic", "none", "-no-reboot", "-kernel", os.path.abspath(a.xen), "-append", xen_cmd,
           "-initrd", "%s %s" % (bz, dom0_cmd),
           "-drive", "file=%s,if=virtio,format=qcow2,cache=unsafe" % disk,
           "-drive", "file=%s,if=virtio,format=raw,readonly=on" % rig]
    open(os.path.join(rd, "qemu-cmdline.txt"), "w").write(" ".join("'%s'" % c if " " in c else c for c in cmd) + "\n")
    lock = take_lock(3600)
    console = os.path.join(rd, "console.log")
    t0 = time.time()
    q = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(console, "wb"), stderr=subprocess.STDOUT,
                         start_new_session=True)
    why = "timeout"
    while time.time() - t0 < a.timeout:
        if q.poll() is not None:
            why = "qemu exited rc=%d" % q.returncode
            break
        if b"PVMMU-END" in open(console, "rb").read():
            time.sleep(3)
            why = "done"
            break
        time.sleep(1)
    if q.poll() is None:
        q.terminate()
        try:
            q.wait(15)
        except subprocess.TimeoutExpired:
            q.kill()
    os.close(lock)
    for f in (rig, disk):
        os.unlink(f)
    shutil.rmtree(os.path.join(rd, "rigdisk"))
    text = open(console, "rb").read().decode("utf-8", "replace").replace("\r", "")
    print("pvmmu-dom0: %s after %.0fs, console: %s" % (why, time.time() - t0, os.path.relpath(console, TOP)))
    for line in text.splitlines():
        if re.search(r"\(XEN\) (Xen version|Command line)|Bad L2|superpage|Cannot map|PVMMU|^== |PSE|\(XEN\).*(FATAL|Panic|crash)", line):
            print("  " + line[:220])
        elif re.search(r"(Kernel panic|Oops|BUG:|WARNING:)", line):
            print("  !! " + line[:220])
    sys.exit(0 if why == "done" else 1)


if __name__ == "__main__":
    main()
