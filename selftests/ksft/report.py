#!/usr/bin/python3
"""Tables and the C reference from ksft rig runs (selftests/rig/run.py ksft).

  selftests/ksft/report.py [RUN_DIR ...]        # per run: a table of the test files and sub-tests
  selftests/ksft/report.py --expect RUN_DIR     # write selftests/ksft/expected-c.txt from a c/c run

RUN_DIR: build/runs/ksft-<front>-<back>-...; default: the newest run of each pairing.
The scenario's results are in RUN_DIR/out/ksft/results.json (written by guest/scen_ksft.py).
"""
import glob, json, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("BUILD", os.path.join(TOP, "build"))


def load(run):
    p = os.path.join(run, "out", "ksft", "results.json")
    res = json.load(open(p))
    meta = json.load(open(os.path.join(run, "result.json"))) if os.path.exists(os.path.join(run, "result.json")) else {}
    return res, meta


def table(run):
    res, meta = load(run)
    out = ["## %s  front=%s back=%s  %s  (%s s)" % (os.path.basename(run), meta.get("front"), meta.get("back"),
                                                  "PASS" if meta.get("pass") else "FAIL",
                                                  next((m["value"] for m in meta.get("metrics", []) if m["name"] == "time-total"), "?")),
           "", "| test | domU (eth0, dom0 remote) | dom0 (vif, domU remote) |", "|---|---|---|"]
    by = {(r["phase"], r["test"]): r for r in res}
    for t in dict.fromkeys(r["test"] for r in res):
        cells = []
        for ph in ("domu", "dom0"):
            r = by.get((ph, t))
            if not r:
                cells.append("-")
                continue
            n = {k: sum(1 for s in r["subs"] if s["status"] == k) for k in ("pass", "skip", "fail")}
            c = "**%s** (%d/%d/%d)" % (r["status"], n["pass"], n["skip"], n["fail"])
            if r["regressions"]:
                c += " REGRESSION: " + "; ".join(r["regressions"])
            cells.append(c)
        out.append("| %s | %s | %s |" % (t, cells[0], cells[1]))
    out += ["", "(pass/skip/fail sub-tests)"]
    exp = expected()
    diff = []
    for r in res:
        for s in r["subs"]:
            e = exp.get((r["phase"], r["test"], s["name"]))
            if e is None:
                diff.append("- %s %s %s: %s, not in the C reference %s" % (r["phase"], r["test"], s["name"], s["status"], s["reason"][:200]))
            elif e[0] != s["status"]:
                diff.append("- %s %s %s: %s (C: %s) %s" % (r["phase"], r["test"], s["name"], s["status"], e[0], s["reason"][:200]))
            elif s["status"] == "fail" and norm(e[1])[:60] != norm(s["reason"])[:60]:
                diff.append("- %s %s %s: fails as with C, another reason: %s (C: %s)" % (r["phase"], r["test"], s["name"],
                                                                                     s["reason"][:200], e[1][:120]))
    out += ["", "differences from the C reference (status, or the reason of a failure):", ""] + (diff or ["- none"])
    out += ["", "sub-tests not passing:", ""]
    for r in res:
        for s in r["subs"]:
            if s["status"] != "pass":
                out.append("- %s %s %s: %s %s" % (r["phase"], r["test"], s["name"], s["status"], s["reason"][:200]))
    return "\n".join(out)


def norm(reason):
    """A failure reason without what changes from run to run (temp dirs, ports)."""
    return re.sub(r"/tmp/\w+/\w+|\b\d{4,5}\b", "X", reason)


def expected():
    exp = {}
    for ln in open(os.path.join(HERE, "expected-c.txt")):
        if ln.startswith("#") or not ln.strip():
            continue
        body, _, why = ln.rstrip("\n").partition("  # ")
        f = body.split("\t")
        if len(f) == 4:
            exp[(f[0], f[1], f[2])] = (f[3], why)
    return exp


def expect(run):
    res, meta = load(run)
    if (meta.get("front"), meta.get("back")) not in ((None, None), ("c", "c")):
        sys.exit("report: %s is not a c/c run" % run)
    lines = ["# C reference of the ksft rig scenario (selftests/rig/guest/scen_ksft.py): the C drivers",
             "# xen-netfront/xen-netback of 7.3, run %s." % os.path.basename(run),
             "# phase<TAB>test<TAB>sub-test<TAB>status   # reason. The scenario fails a test file when a",
             "# sub-test listed pass here does not pass, or when a sub-test fails that is not listed fail",
             "# (known C failure). Regenerate: selftests/ksft/report.py --expect build/runs/ksft-c-c-..."]
    for r in res:
        for s in r["subs"]:
            lines.append("%s\t%s\t%s\t%s%s" % (r["phase"], r["test"], s["name"], s["status"],
                                               "  # " + s["reason"].replace("\n", " ")[:160] if s["reason"] else ""))
    open(os.path.join(HERE, "expected-c.txt"), "w").write("\n".join(lines) + "\n")
    print("report: wrote selftests/ksft/expected-c.txt (%d sub-tests)" % (len(lines) - 5))


def main():
    a = sys.argv[1:]
    if a[:1] == ["--expect"]:
        return expect(a[1])
    runs = a
    if not runs:
        for pair in ("c-c", "rs-c", "c-rs", "rs-rs"):
            c = sorted(d for d in glob.glob(os.path.join(BUILD, "runs", "ksft-%s-*" % pair))
                       if os.path.exists(os.path.join(d, "out", "ksft", "results.json")))
            runs += c[-1:]
    for r in runs:
        print(table(r))
        print()


if __name__ == "__main__":
    main()
