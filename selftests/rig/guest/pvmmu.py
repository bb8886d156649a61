"""Issue 6 rig step (runs in dom0, imported by dom0.py): PV superpages and global mappings.

Reads the page-table census of patches/0103 (/sys/kernel/debug/xen_pt_census) and the superpage
state of patches/0101 (/sys/kernel/debug/xen_kernel_large_pages) in dom0 and in the domU (both run
the same kernel), and asserts what each domain must show given its own kernel command line
(xen_superpages=, xen_global_pages=) and the hypervisor's (pv-superpages, patched Xen 4.17 only):

  always            kernel_global == 0 (no global kernel mapping in a 64-bit PV guest),
                    direct_1g == 0, user_present > 0
  direct map        direct_2m == 0 unless stage A2 is asked for (xen_superpages=all, or no
                    xen_superpages= in a domU: the default there) on a Xen that accepts
                    superpages; then (patches/0104) direct_2m > 0, between the 2M counts of
                    /sys/kernel/debug/xen_direct_large_pages read before and after the census,
                    and again > 0 after the network traffic (final(), basic and run); in the domU
                    an LDT (tools/ldttest.c: modify_ldt) and CPA (debugfs "cpa": set_memory_ro of
                    a page in a 2M chunk) each split a chunk, as /sys/kernel/debug/xen_direct_splits
                    (the caller of each split) shows; around a module load (front reload, basic)
                    the counters stay consistent; across xl save/restore (save_restore_before/
                    after) every chunk is split and the domU keeps working
  superpages off    image_2m == 0, large-pages file "0 0 0", dmesg "disabled (xen_superpages=off)"
  on, Xen refuses   image_2m == 0, large-pages file "0 0 N" (N > 0 candidates), dmesg "refuses"
  on, Xen accepts   image_2m == mapped > 0, large=1; debugfs revert to 4k and back works;
                    a CPA split of one superpage leaves image_2m one lower, kernel_global 0
  globals on        user_global == user_present, user_b52 == 0 (Xen makes user PTEs global)
  globals off       user_global == 0, user_b52 == user_present (bit 52 stops adjust_guest_l1e)

Checks are named pvmmu-<dom>-<what>; metrics pvmmu-<dom>-<census field>. See patches/README.md 9.1.
"""
import json
import re

CENSUS = "/sys/kernel/debug/xen_pt_census"
KLP = "/sys/kernel/debug/xen_kernel_large_pages"
DLP = "/sys/kernel/debug/xen_direct_large_pages"
SPLITS = "/sys/kernel/debug/xen_direct_splits"
FIELDS = ["image_2m", "image_4k", "direct_1g", "direct_2m", "direct_4k", "modules_4k",
          "kernel_global", "user_present", "user_global", "user_b52"]


def param(cmdline, name):
    """Last value of name= on a command line (the kernel's early_param sees the last one)."""
    v = None
    for w in cmdline.split():
        if w.startswith(name + "="):
            v = w.split("=", 1)[1]
    return v


def wants_direct(cmdline, dom):
    """Stage A2 (the 2 MiB direct map) asked for: xen_superpages=all, or no xen_superpages= at all
    in a domU (the default there; dom0's default is text, patches/0104)."""
    v = param(cmdline, "xen_superpages")
    return v == "all" or (v is None and dom == "domu")


def is_off(v):
    return v is not None and (v.lower() in ("off", "no", "false") or v[:1] in ("0", "n", "N"))


def xen_accepts_superpages(xen_cmdline):
    """pv-superpages is a boolean Xen option of the patched 4.17 (default off); stock Xen has none."""
    v = None
    for w in xen_cmdline.split():
        if w == "pv-superpages":
            v = True
        elif w.startswith("pv-superpages="):
            v = not is_off(w.split("=", 1)[1])
        elif w == "no-pv-superpages":
            v = False
    return bool(v)


def parse_census(text):
    c = {}
    for line in text.splitlines():
        m = re.match(r"(\w+) (\d+)$", line.strip())
        if m and m.group(1) in FIELDS:
            c[m.group(1)] = int(m.group(2))
    return c


def census(run):
    rc, out = run("cat %s" % CENSUS, 60, True)
    return (parse_census(out) if rc == 0 else {}), out


def klp_state(run):
    rc, out = run("cat %s" % KLP, 30, True)
    m = re.match(r"\s*(\d+) (\d+) (\d+)\s*$", out) if rc == 0 else None
    return tuple(int(x) for x in m.groups()) if m else None


def dlp_state(run):
    """patches/0104: (installed, 2M now, splits, candidates), or None."""
    rc, out = run("cat %s" % DLP, 30, True)
    m = re.match(r"\s*(\d+) (\d+) (\d+) (\d+)\s*$", out) if rc == 0 else None
    return tuple(int(x) for x in m.groups()) if m else None


def direct_map(dom, run, check, metric, cmdline, accepts, dm, when=""):
    """The direct map's 2M entries (stage A2): present exactly with xen_superpages=all on a Xen
    that accepts superpages.  Splits are one-way and happen at any time (a new page table in a
    2M chunk), so the census must lie between the 2M counts read just before and after it."""
    d0 = dlp_state(run)
    c, raw = census(run)
    d1 = dlp_state(run)
    if not c:
        check("pvmmu-%s-direct-map%s" % (dom, when), False, raw[:300])
        return
    if when:
        metric("pvmmu-%s-direct_2m%s" % (dom, when), c["direct_2m"], "entries")
    if d1:
        metric("pvmmu-%s-direct_installed%s" % (dom, when), d1[0], "chunks")
        metric("pvmmu-%s-direct_splits%s" % (dom, when), d1[2], "chunks")
        metric("pvmmu-%s-direct_candidates%s" % (dom, when), d1[3], "chunks")
    detail = "cmdline xen_superpages=%s, Xen pv-superpages=%s, census direct_2m=%d direct_4k=%d " \
             "direct_1g=%d, %s before/after (installed, 2M, splits, candidates): %s / %s | %s" % (
                 param(cmdline, "xen_superpages"), accepts, c["direct_2m"], c["direct_4k"], c["direct_1g"],
                 DLP, d0, d1, dm[:200])
    if wants_direct(cmdline, dom) and accepts:
        ok = (d0 is not None and d1 is not None and c["direct_1g"] == 0 and c["direct_4k"] > 0 and
              d1[0] > 0 and d1[1] <= c["direct_2m"] <= d0[1] and c["direct_2m"] > 0 and
              d1[0] == d1[1] + d1[2] and c["kernel_global"] == 0 and "direct map:" in dm)
        check("pvmmu-%s-direct-2m%s" % (dom, when), ok, detail)
    else:
        ok = (c["direct_1g"] == 0 and c["direct_2m"] == 0 and c["direct_4k"] > 0 and
              (d1 is None or d1[:3] == (0, 0, 0)))
        if wants_direct(cmdline, dom):   # stock Xen: the probe must have failed cleanly
            ok = ok and "direct map: hypervisor refuses PV superpages" in dm
        check("pvmmu-%s-direct-map-4k%s" % (dom, when), ok, detail)


def dmesg_pvmmu(run):
    _, dm = run("dmesg | grep -E 'xen: (PV superpages|hypervisor refuses|kernel text/rodata|no kernel text|"
                "PV superpage install|user mappings kept|direct map)'", 20, True)
    return dm.strip()


def debugfs(run):
    """Mounts debugfs; returns the domain's kernel command line."""
    run("grep -q ' /sys/kernel/debug ' /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug", 30, True)
    return run("cat /proc/cmdline", 20, True)[1]


def split_callers(run):
    """The last splits of the direct map (patches/0104): [(split number, chunk, caller)]."""
    rc, out = run("cat %s" % SPLITS, 30, True)
    return [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in
            re.finditer(r"^(\d+) (\d+) (\S+)", out if rc == 0 else "", re.M)]


def callers_since(run, n):
    """Callers of the splits after split number n, as one string for a check's detail."""
    return ", ".join("%d:%s" % (i, c.split("/")[0]) for i, _, c in split_callers(run) if i > n)


def ldt(run, check, metric):
    """modify_ldt with the 2 MiB direct map (tools/ldttest.c): the LDT page's direct-map alias must
    become read-only, so set_aliased_prot() splits its chunk first; the segment must work."""
    rc, out = run("/rig/ldttest -n 32", 120)
    m = re.search(r"LDTTEST (\{.*\})", out)
    r = json.loads(m.group(1)) if m else {}
    if r:
        metric("pvmmu-domu-ldt-children", r["children"], "processes")
    ok = rc == 0 and r.get("segment_ok") == 1 and bool(r.get("ldt_split"))
    check("pvmmu-domu-ldt", ok,
          "%s; %s: split by an LDT path: %s" % (out.strip()[-400:], SPLITS, r.get("ldt_split") or "none"))


def cpa(run, check, metric):
    """CPA on a direct-map superpage (patches/0104 debugfs test hook): set_memory_ro() of a free
    page in a 2M chunk must split the chunk (the hook in __change_page_attr) and leave a read-only
    4k PTE; set_memory_rw() then."""
    d0 = dlp_state(run)
    rc, out = run("echo cpa > %s" % DLP, 60, True)
    d1 = dlp_state(run)
    _, dm = run("dmesg | grep 'direct map: CPA test' | tail -1", 20, True)
    who = callers_since(run, d0[2] if d0 else 0)
    ok = (rc == 0 and None not in (d0, d1) and d1[2] > d0[2] and d1[0] == d1[1] + d1[2] and
          "chunk split 1" in dm and "read-only 4k PTE 1" in dm and "change_page_attr" in who)
    check("pvmmu-domu-cpa", ok, "rc %s %s; %s: %s -> %s; splits by: %s | %s" % (
        rc, out.strip()[:100], DLP, d0, d1, who, dm.strip()[:300]))


def module_load(run, check, metric, before):
    """Around a module load (the frontend reload of basic): module text and rodata made RO/ROX by
    CPA also change their direct-map alias (cpa_process_alias), which splits a chunk if one is 2M; the
    counters stay consistent and no kernel entry becomes global."""
    d1 = dlp_state(run)
    c, _ = census(run)
    d2 = dlp_state(run)
    who = callers_since(run, before[2] if before else 0)
    if d1 and before:
        metric("pvmmu-domu-module-load-splits", d1[2] - before[2], "chunks")
    ok = (None not in (before, d1, d2) and d1[2] >= before[2] and d2[0] == d2[1] + d2[2] and
          d2[1] <= c.get("direct_2m", -1) <= d1[1] and c.get("kernel_global") == 0)
    check("pvmmu-domu-module-load", ok, "%s before/after the frontend reload: %s -> %s; census direct_2m=%s "
          "kernel_global=%s; splits by: %s" % (DLP, before, d1, c.get("direct_2m"), c.get("kernel_global"),
                                             who or "none (the module's pages lay in split chunks)"))


def one_domain(dom, run, check, metric, xen_cmdline):
    cmdline = debugfs(run)
    rc, _ = run("test -r %s" % CENSUS, 20, True)
    if not check("pvmmu-%s-census" % dom, rc == 0, "%s readable (patches/0103 in the kernel, debugfs)" % CENSUS):
        return
    c, raw = census(run)
    if not check("pvmmu-%s-census-parse" % dom, all(f in c for f in FIELDS), raw.strip().replace("\n", ", ")[:400]):
        return
    for f in FIELDS:
        metric("pvmmu-%s-%s" % (dom, f), c[f], "entries")
    klp = klp_state(run)
    dm = dmesg_pvmmu(run)
    summary = ", ".join("%s=%d" % (f, c[f]) for f in FIELDS)

    # always
    check("pvmmu-%s-no-kernel-global" % dom, c["kernel_global"] == 0, summary)

    # superpages
    sp_off = param(cmdline, "xen_superpages") == "off"
    accepts = xen_accepts_superpages(xen_cmdline)
    direct_map(dom, run, check, metric, cmdline, accepts, dm)
    if dom == "domu" and accepts and wants_direct(cmdline, dom):
        ldt(run, check, metric)
        cpa(run, check, metric)
    detail = "cmdline xen_superpages=%s, Xen pv-superpages=%s, large-pages file %s, image_2m=%d image_4k=%d | %s" % (
        param(cmdline, "xen_superpages"), accepts, klp, c["image_2m"], c["image_4k"], dm[:300])
    if sp_off:
        ok = c["image_2m"] == 0 and klp == (0, 0, 0) and "disabled (xen_superpages=off)" in dm
        check("pvmmu-%s-superpages-off" % dom, ok, detail)
    elif not accepts:
        ok = (c["image_2m"] == 0 and klp is not None and klp[:2] == (0, 0) and klp[2] > 0 and
              "xen: hypervisor refuses PV superpages" in dm)
        check("pvmmu-%s-superpages-refused" % dom, ok, detail)
    else:
        ok = klp is not None and klp[0] == 1 and klp[1] > 0 and c["image_2m"] == klp[1] and "2M chunks mapped" in dm
        if check("pvmmu-%s-superpages-on" % dom, ok, detail):
            # same-boot revert to the 4k L1 tables and back (patches/0101 debugfs switch)
            rc0, _ = run("echo 0 > %s" % KLP, 30, True)
            c0, _ = census(run)
            rc1, _ = run("echo 1 > %s" % KLP, 30, True)
            c1, _ = census(run)
            check("pvmmu-%s-superpages-revert" % dom,
                  rc0 == 0 and rc1 == 0 and c0.get("image_2m") == 0 and c1.get("image_2m") == klp[1] and
                  c0.get("kernel_global") == 0 and c1.get("kernel_global") == 0,
                  "4k: image_2m=%s image_4k=%s; 2M again: image_2m=%s (rc %s/%s)" % (
                      c0.get("image_2m"), c0.get("image_4k"), c1.get("image_2m"), rc0, rc1))
            # hazard H4: a CPA split of a kernel superpage must not yield global kernel PTEs
            rc2, _ = run("echo split > %s" % KLP, 30, True)
            c2, _ = census(run)
            check("pvmmu-%s-superpage-split" % dom,
                  rc2 == 0 and c2.get("image_2m") == klp[1] - 1 and c2.get("kernel_global") == 0,
                  "after split: image_2m=%s image_4k=%s kernel_global=%s (rc %s)" % (
                      c2.get("image_2m"), c2.get("image_4k"), c2.get("kernel_global"), rc2))

    # user global mappings
    g_off = is_off(param(cmdline, "xen_global_pages"))
    detail = "cmdline xen_global_pages=%s: user_present=%d user_global=%d user_b52=%d" % (
        param(cmdline, "xen_global_pages"), c["user_present"], c["user_global"], c["user_b52"])
    if g_off:
        ok = (c["user_present"] > 0 and c["user_global"] == 0 and c["user_b52"] == c["user_present"] and
              "user mappings kept non-global" in dm)
        check("pvmmu-%s-user-global-off" % dom, ok, detail)
    else:
        ok = c["user_present"] > 0 and c["user_global"] == c["user_present"] and c["user_b52"] == 0
        check("pvmmu-%s-user-global-on" % dom, ok, detail)


XEN_CMDLINE = ""


def mem_total_kb(agent_run):
    rc, out = agent_run("grep MemTotal /proc/meminfo", 20, True)
    m = re.search(r"(\d+) kB", out) if rc == 0 else None
    return int(m.group(1)) if m else None


def balloon(sh, agent_run, check, metric):
    """Stage A2 with the balloon: xl mem-set takes 128 MiB away from the domU and gives it back.
    The balloon driver zaps each page's direct-map PTE (update_va_mapping, which Xen refuses under
    a superpage), so every chunk it takes a page from must be split first by the hook; the domU
    must survive, the split count must grow, and no kernel entry may become global."""
    import time
    d0 = dlp_state(agent_run)
    m0 = mem_total_kb(agent_run)

    def settle(done):
        """MemTotal of the domU once done(MemTotal) holds, or the last value after 60 s."""
        m = None
        for _ in range(60):
            time.sleep(1)
            m = mem_total_kb(agent_run)
            if m is not None and m0 is not None and done(m):
                break
        return m

    rc, out = sh("xl mem-set domu 384m", 30, True)
    m1 = settle(lambda m: m <= m0 - 120 * 1024)
    d1 = dlp_state(agent_run)
    rc2, _ = sh("xl mem-set domu 512m", 30, True)
    m2 = settle(lambda m: m >= m0 - 8 * 1024)
    d2 = dlp_state(agent_run)
    c, _ = census(agent_run)
    if d1:
        metric("pvmmu-domu-direct_splits-balloon", d1[2], "chunks")
    ok = (rc == 0 and rc2 == 0 and None not in (d0, d1, d2, m0, m1, m2) and m1 <= m0 - 120 * 1024 and
          m2 >= m0 - 8 * 1024 and d1[2] > d0[2] and d2[0] == d2[1] + d2[2] and
          c.get("kernel_global") == 0 and c.get("direct_2m") == d2[1])
    check("pvmmu-domu-direct-2m-balloon", ok,
          "MemTotal kB %s -> %s (mem-set 384m, rc %s) -> %s (512m, rc %s); %s (installed, 2M, splits, "
          "candidates): %s -> %s -> %s; census direct_2m=%s kernel_global=%s" % (
              m0, m1, rc, m2, rc2, DLP, d0, d1, d2, c.get("direct_2m"), c.get("kernel_global")))


def final(agent_run, check, metric, sh=None):
    """After the network traffic (basic, run): the domU's direct map check again (it still has
    2M entries with xen_superpages=all on a Xen that accepts them, no global kernel entry), then,
    with the 2 MiB direct map active, the balloon test (balloon())."""
    try:
        _, cmdline = agent_run("cat /proc/cmdline", 20, True)
        accepts = xen_accepts_superpages(XEN_CMDLINE)
        direct_map("domu", agent_run, check, metric, cmdline, accepts, dmesg_pvmmu(agent_run), "-after-traffic")
        if sh and accepts and wants_direct(cmdline, "domu"):
            balloon(sh, agent_run, check, metric)
    except Exception as e:  # a bug here must not stop the scenario
        check("pvmmu-domu-exception-after-traffic", False, repr(e))


def xen_info(sh):
    """(Xen version or None, Xen command line) from xl info; sets XEN_CMDLINE."""
    global XEN_CMDLINE
    _, info = sh("xl info", 30, True)
    m = re.search(r"^xen_commandline\s*:\s*(.*)$", info, re.M)
    XEN_CMDLINE = m.group(1) if m else ""
    m = re.search(r"^xen_version\s*:\s*(\S+)", info, re.M)
    return (m.group(1) if m else None), XEN_CMDLINE


def direct_active(agent_run):
    """Is stage A2 asked for in the domU, on a Xen that accepts superpages (xen_info() ran)?"""
    return xen_accepts_superpages(XEN_CMDLINE) and wants_direct(debugfs(agent_run), "domu")


def save_restore_before(sh, agent_run, check, metric):
    """Scenario save-restore with the 2 MiB direct map in the domU: before xl save, chunks are
    installed and still 2M. Returns the counters (installed, 2M, splits, candidates), or None when
    stage A2 is not active (stock Xen, or turned off)."""
    xen_info(sh)
    if not direct_active(agent_run):
        return None
    d = dlp_state(agent_run)
    c, _ = census(agent_run)
    ok = d is not None and d[0] > 0 and d[1] > 0 and c.get("direct_2m", 0) > 0 and d[0] == d[1] + d[2]
    check("pvmmu-domu-sr-before", ok, "%s (installed, 2M, splits, candidates): %s; census direct_2m=%s "
          "direct_4k=%s" % (DLP, d, c.get("direct_2m"), c.get("direct_4k")))
    if d:
        metric("pvmmu-domu-direct_2m-before-save", d[1], "chunks")
    return d


def save_restore_after(agent_run, check, metric, before):
    """Right after xl restore: xen_pv_pre_suspend() split every chunk (the save side refuses
    superpages) and nothing is re-installed, so 2M now == 0, splits == installed (grew by the
    chunks that were still 2M), the census has no 2M direct-map entry, no global kernel entry."""
    d = dlp_state(agent_run)
    c, _ = census(agent_run)
    klp = klp_state(agent_run)
    who = split_callers(agent_run)
    if d:
        metric("pvmmu-domu-direct_splits-after-restore", d[2], "chunks")
    if klp:
        metric("pvmmu-domu-image_2m-after-restore", c.get("image_2m", -1), "entries")
    ok = (d is not None and d[0] == before[0] and d[1] == 0 and d[2] == d[0] and d[2] > before[2] and
          c.get("direct_2m") == 0 and c.get("direct_4k", 0) > 0 and c.get("kernel_global") == 0)
    check("pvmmu-domu-sr-split", ok, "%s before save %s, after restore %s; census direct_2m=%s direct_4k=%s "
          "kernel_global=%s image_2m=%s; %s after restore %s; last split by: %s" % (
              DLP, before, d, c.get("direct_2m"), c.get("direct_4k"), c.get("kernel_global"),
              c.get("image_2m"), KLP, klp, who[-1][2] if who else "?"))


def step(sh, agent_run, check, metric):
    """The issue-6 step: dom0 first (sh), then the domU (the console agent's run)."""
    ver, xen_cmdline = xen_info(sh)
    check("pvmmu-xen-info", ver is not None, "xen %s, command line: %s" % (ver or "?", xen_cmdline))
    for dom, run in (("dom0", sh), ("domu", agent_run)):
        try:
            one_domain(dom, run, check, metric, xen_cmdline)
        except Exception as e:  # a bug here must not stop the scenario
            check("pvmmu-%s-exception" % dom, False, repr(e))
