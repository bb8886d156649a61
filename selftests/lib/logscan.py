# SPDX-License-Identifier: GPL-2.0
"""Find signs of a crash in kernel, hypervisor and program logs."""
import re

CRASH = re.compile(
    r"(Oops|BUG:|kernel BUG at|WARNING: CPU|------------\[ cut here \]|Kernel panic|"
    r"general protection fault|segfault at|Unable to handle kernel|"
    r"corrupted (double-linked|size|top size)|malloc\(\): |free\(\): |double free|"
    r"stack smashing detected|Call Trace:|RIP: |UBSAN:|KASAN:|kmemleak:.*new suspected|"
    r"\(XEN\) \*\*\*\*\*|\(XEN\) Panic|FATAL PAGE FAULT|rustc panicked|panicked at)")


def crashes(text):
    """Return the lines of `text` that show a crash (at most 20)."""
    out = []
    for line in text.splitlines():
        if CRASH.search(line):
            out.append(line.strip())
            if len(out) >= 20:
                break
    return out
