#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Build the kernel crate's documentation (make rustdoc) and assert it has no warnings.

Writes build/results/rustdoc.json: one check for the build, one for warnings (each warning's
location in the detail).
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from results import BUILD, Result  # noqa: E402


def main():
    r = Result("rustdoc")
    cmd = ["make", "-s", "-C", os.path.join(BUILD, "src", "linux"), "O=" + os.path.join(BUILD, "kernel"),
           "CC=ccache gcc", "LIBCLANG_PATH=/usr/lib/llvm-19/lib", "rustdoc"]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       stdin=subprocess.DEVNULL)
    log = os.path.join(BUILD, "rustdoc.log")
    open(log, "w").write(p.stdout)
    r.check("make rustdoc builds", p.returncode == 0, f"rc={p.returncode}, log {log}")
    where = re.findall(r"^warning: (.*)\n\s*--> (\S+)", p.stdout, flags=re.M)
    r.check_none("make rustdoc has no warnings", [f"{loc}: {msg}" for msg, loc in where])
    r.metric("warnings", len(where))
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
