# SPDX-License-Identifier: GPL-2.0
"""Result files shared by every test step: build/results/<name>.json and <name>.txt.

A result is a list of checks (name, passed, detail) and metrics (name, value, unit).
"""
import json
import os
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(TOP, "build")
RESULTS = os.path.join(BUILD, "results")


class Result:
    def __init__(self, name, **meta):
        self.name = name
        self.meta = dict(meta)
        self.checks = []
        self.metrics = []
        self.started = time.time()

    def check(self, name, passed, detail=""):
        self.checks.append({"name": name, "passed": bool(passed), "detail": str(detail)})
        print(f"  [{'PASS' if passed else 'FAIL'}] {name}{': ' + str(detail) if detail else ''}",
              flush=True)
        return bool(passed)

    def check_none(self, name, found, sep="; ", show=5):
        """A check that passes when `found` (a list of problems) is empty; the detail lists the
        first `show` of them."""
        return self.check(name, not found, sep.join(found[:show]) + (" ..." if len(found) > show else ""))

    def finish(self):
        """Saves the result, prints its table and returns the step's exit code."""
        self.save()
        print(self.table())
        return 0 if self.passed else 1

    def metric(self, name, value, unit=""):
        self.metrics.append({"name": name, "value": value, "unit": unit})

    @property
    def passed(self):
        return bool(self.checks) and all(c["passed"] for c in self.checks)

    def table(self):
        lines = [f"== {self.name} " + " ".join(f"{k}={v}" for k, v in self.meta.items())]
        w = max([len(c["name"]) for c in self.checks] + [len(m["name"]) for m in self.metrics] + [10])
        for c in self.checks:
            lines.append(f"  {'PASS' if c['passed'] else 'FAIL'}  {c['name']:<{w}}  {c['detail']}")
        for m in self.metrics:
            v = m["value"]
            v = f"{v:.3g}" if isinstance(v, float) else str(v)
            lines.append(f"  {'':4}  {m['name']:<{w}}  {v} {m['unit']}")
        n_ok = sum(c["passed"] for c in self.checks)
        lines.append(f"  {n_ok} passed, {len(self.checks) - n_ok} failed")
        return "\n".join(lines)

    def save(self):
        os.makedirs(RESULTS, exist_ok=True)
        doc = {"name": self.name, **self.meta, "passed": self.passed,
               "duration_s": round(time.time() - self.started, 1),
               "checks": self.checks, "metrics": self.metrics}
        with open(os.path.join(RESULTS, self.name + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
        with open(os.path.join(RESULTS, self.name + ".txt"), "w") as f:
            f.write(self.table() + "\n")
        return doc
