#!/usr/bin/python3
"""Check the raw layouts of selftests/hostile/xenproto.py against the kernel's C headers.

  python3 selftests/hostile/check_layouts.py [--src build/src/linux]

Compiles (host gcc) a program that prints sizeof/offsetof/constant values from
include/xen/interface/io/{netif,ring,xs_wire}.h and include/uapi/xen/{gntdev,gntalloc,evtchn}.h,
and compares each with xenproto.LAYOUTS / OFFSETS / CONSTANTS. Prints one RESULT line; exit 0 iff
everything matches.
"""
import argparse, json, os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import xenproto as xp  # noqa: E402

PRE = r"""
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/types.h>
#include <sys/ioctl.h>
#include <errno.h>
#define __maybe_unused __attribute__((unused))
#define __user
typedef uint32_t grant_ref_t;
typedef uint16_t domid_t;
#define __XEN_PUBLIC_GRANT_TABLE_H__   /* ring.h/netif.h only need grant_ref_t */
#define virt_mb() do {} while (0)
#define virt_wmb() do {} while (0)
#define virt_rmb() do {} while (0)
#include "%(src)s/include/xen/interface/io/netif.h"
#include "%(src)s/include/xen/interface/io/xs_wire.h"
#include "%(src)s/include/xen/interface/io/xenbus.h"
#include "%(src)s/include/uapi/xen/gntdev.h"
#include "%(src)s/include/uapi/xen/gntalloc.h"
#include "%(src)s/include/uapi/xen/evtchn.h"
int main(void) {
 struct xen_netif_tx_sring *txs = 0; struct xen_netif_rx_sring *rxs = 0; struct xen_netif_ctrl_sring *cs = 0;
 (void)txs; (void)rxs; (void)cs;
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default=os.path.join(TOP, "build", "src", "linux"))
    a = ap.parse_args()
    src = os.path.abspath(a.src)
    body = [PRE % {"src": src}]
    keys = []
    for name in xp.LAYOUTS:
        body.append(' printf("size %s %%zu\\n", sizeof(struct %s));' % (name, name))
        keys.append(("size", name))
    for (st, field) in xp.OFFSETS:
        body.append(' printf("off %s.%s %%zu\\n", offsetof(struct %s, %s));' % (st, field, st, field))
    ring = {"TX_RING_SIZE": "__RING_SIZE(txs, 4096)", "RX_RING_SIZE": "__RING_SIZE(rxs, 4096)",
            "CTRL_RING_SIZE": "__RING_SIZE(cs, 4096)"}
    for c in xp.CONSTANTS:
        expr = ring.get(c, c)
        body.append(' printf("const %s %%lld\\n", (long long)(%s));' % (c, expr))
    body.append(" return 0;\n}\n")
    with tempfile.TemporaryDirectory() as d:
        c = os.path.join(d, "l.c")
        open(c, "w").write("\n".join(body))
        exe = os.path.join(d, "l")
        os.makedirs(os.path.join(d, "xen", "interface"))
        open(os.path.join(d, "xen", "interface", "grant_table.h"), "w").write("/* stub: guard defined */\n")
        r = subprocess.run(["gcc", "-O0", "-w", "-I", d, "-o", exe, c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode:
            print(r.stdout.decode()[-3000:])
            print("RESULT " + json.dumps({"tool": "check_layouts", "pass": False, "detail": "compile failed"}))
            return 1
        out = subprocess.run([exe], stdout=subprocess.PIPE, check=True).stdout.decode().split("\n")
    bad, n = [], 0
    for line in out:
        if not line:
            continue
        kind, name, val = line.split()
        val = int(val)
        if kind == "size":
            want = xp.LAYOUTS[name]
        elif kind == "off":
            st, field = name.split(".", 1)
            want = xp.OFFSETS[(st, field)]
        else:
            want = xp.CONSTANTS[name]
        n += 1
        if val != want:
            bad.append("%s %s: C %d, python %d" % (kind, name, val, want))
        print("%-5s %-50s C=%-10d py=%-10d %s" % (kind, name, val, want, "ok" if val == want else "MISMATCH"))
    print("RESULT " + json.dumps({"tool": "check_layouts", "pass": not bad, "checked": n, "mismatches": bad}))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
