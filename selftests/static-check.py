#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Static checks of the Rust code: what review would refuse, checked on every make check.

1. The drivers (xen-netfront-rs/, xen-netback-rs/) contain no `unsafe` (blocks, functions,
   impls, traits, extern blocks, attributes such as `#[unsafe(no_mangle)]`): all unsafe code
   belongs in the kernel-crate abstractions under rust/. Comments and string literals do not
   count. Each driver's crate root (the object its Kbuild links) also says
   `#![forbid(unsafe_code)]`, so that the compiler refuses unsafe code as well.
2. Every `unsafe` block of the abstractions (rust/kernel/) has its `// SAFETY:` comment
   immediately above it (or above the statement it starts in): the last tagged line (`// SAFETY:`,
   `// CAST:`, `// INVARIANT:`, ...) of the comment right before is the `SAFETY:` one. Clippy's
   undocumented_unsafe_blocks checks this too, but not in code that a macro expands
   (`try_pin_init!`, `#[pinned_drop]`, ...), and it accepts any comment block that contains a
   `SAFETY:` somewhere.
3. The Rust files are formatted as the kernel's `make rustfmtcheck` wants: rustfmt of the pinned
   toolchain with the settings of the kernel's .rustfmt.toml (edition 2021, Unix newlines);
   imports stay one per line with the kernel's trailing `//` marker.
4. The kernel's own Rust lints (`make CLIPPY=1`, scripts/clippy.sh) report no warning over the
   kernel crate with the project's abstractions and over both drivers.

Writes build/results/static.json. Options: --no-clippy (checks 1-3 only), --root DIR (check the
drivers under DIR instead of this tree).
"""
import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from results import BUILD, TOP, Result  # noqa: E402

DRIVERS = ("xen-netfront-rs", "xen-netback-rs")

# Rust tokens that hide words: comments (line, nested block), strings (plain, byte, C, raw) and
# character literals. A lifetime ('a) is not a character literal.
TOKEN = re.compile(r"""
    (?P<line>//[^\n]*)
  | (?P<block>/\*)
  | (?P<raw>[bc]?r(?P<hashes>\#*)")
  | (?P<str>[bc]?"(?:[^"\\]|\\.)*")
  | (?P<char>b?'(?:[^'\\\n]|\\[^\n]{1,10}?)')
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
""", re.X | re.S)


def code_words(text):
    """Yields (line, word) for every identifier or keyword outside comments and literals."""
    i = 0
    n = len(text)
    while i < n:
        m = TOKEN.search(text, i)
        if not m:
            return
        start = m.start()
        if m.group("block"):
            depth, j = 1, m.end()
            while depth and j < n:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = j
        elif m.group("raw") is not None:
            end = text.find('"' + m.group("hashes"), m.end())
            i = n if end < 0 else end + 1 + len(m.group("hashes"))
        elif m.group("word"):
            yield text.count("\n", 0, start) + 1, m.group("word")
            i = m.end()
        else:
            i = m.end()


def unsafe_uses(root):
    """Returns "file:line" for every `unsafe` keyword in the drivers' Rust files under root."""
    found = []
    for d in DRIVERS:
        for dirpath, _, files in os.walk(os.path.join(root, d)):
            for f in sorted(files):
                if not f.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, f)
                for line, word in code_words(open(path, errors="replace").read()):
                    if word == "unsafe":
                        found.append(f"{os.path.relpath(path, root)}:{line}")
    return found


def crate_roots_without_forbid(root):
    """Returns the drivers' crate roots (from their Kbuild) that lack #![forbid(unsafe_code)]."""
    missing = []
    for d in DRIVERS:
        kbuild = open(os.path.join(root, d, "Kbuild")).read()
        objs = re.findall(r"^\S+-y\s*[:+]?=(.*)$", kbuild, flags=re.M)
        for obj in re.findall(r"(\S+)\.o\b", " ".join(objs)):
            rs = os.path.join(root, d, obj + ".rs")
            text = open(rs).read() if os.path.exists(rs) else ""
            if not re.search(r"^#!\[forbid\(unsafe_code\)\]", text, flags=re.M):
                missing.append(os.path.relpath(rs, root))
    return missing


UNSAFE_BLOCK = re.compile(r"\bunsafe\s*\{")
TAG = re.compile(r"^//\s*([A-Z][A-Z_]+):")


def unsafe_blocks_without_safety(root):
    """Returns "file:line" for every unsafe block under root/rust/kernel whose SAFETY comment is
    missing or not the last tagged comment right above it."""
    found = []
    for dirpath, _, files in os.walk(os.path.join(root, "rust", "kernel")):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            lines = open(path, errors="replace").read().split("\n")
            # Lines that hold an unsafe block, outside comments and literals.
            blocks = set()
            text = "\n".join(lines)
            for line, word in code_words(text):
                if word == "unsafe":
                    blocks.add(line)
            for n in sorted(blocks):
                code = lines[n - 1]
                if not UNSAFE_BLOCK.search(code):
                    continue  # unsafe fn/impl/trait/extern: documented with `# Safety` or SAFETY
                # The comment may stand above the statement: skip the lines that continue it.
                j = n - 2
                for _ in range(4):
                    prev = lines[j].strip() if j >= 0 else ""
                    if not prev or prev.startswith("//") or prev.endswith((";", "}", "{")):
                        break
                    j -= 1
                comment = []
                while j >= 0 and lines[j].strip().startswith("//"):
                    comment.insert(0, lines[j].strip())
                    j -= 1
                tags = [m.group(1) for m in map(TAG.match, comment) if m]
                if not tags or tags[-1] != "SAFETY":
                    found.append(f"{os.path.relpath(path, root)}:{n}")
    return found


# The kernel's .rustfmt.toml (what `make rustfmtcheck` uses), as options.
RUSTFMT = ["rustfmt", "--check", "--edition", "2021", "--config", "newline_style=Unix"]


def rustfmt_diffs(root):
    """The project's Rust files (rust/ and the drivers) rustfmt would change, or why it cannot
    run. Each file is checked alone (rustfmt would also follow a crate root's `mod`s)."""
    files = sorted(os.path.join(d, f) for top in ("rust",) + DRIVERS
                   for d, _, fs in os.walk(os.path.join(root, top)) for f in fs if f.endswith(".rs"))
    bad = []
    for f in files:
        try:
            p = subprocess.run(RUSTFMT + ["--config", "skip_children=true", f], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
        except OSError as e:
            return [f"rustfmt: {e}"], len(files)
        if p.returncode:
            bad.append(os.path.relpath(f, root))
    return bad, len(files)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-clippy", action="store_true", help="skip the clippy build")
    ap.add_argument("--root", default=TOP, help="tree whose drivers are checked")
    args = ap.parse_args()

    r = Result("static")
    n_files = sum(f.endswith(".rs") for d in DRIVERS
                  for _, _, fs in os.walk(os.path.join(args.root, d)) for f in fs)
    found = unsafe_uses(args.root)
    r.check("drivers have Rust files", n_files > 0, f"{n_files} files in {', '.join(DRIVERS)}")
    r.check_none("no unsafe in the drivers", found, ", ", 10)
    r.metric("unsafe in drivers", len(found))
    missing = crate_roots_without_forbid(args.root)
    r.check("driver crate roots forbid unsafe_code", not missing, ", ".join(missing))
    bad = unsafe_blocks_without_safety(args.root)
    r.check_none("every unsafe block in rust/kernel has its SAFETY comment right above", bad, ", ", 10)
    unformatted, n_rs = rustfmt_diffs(args.root)
    r.check_none(f"rustfmt: {n_rs} files formatted as the kernel's rustfmtcheck wants", unformatted, ", ", 10)

    if not args.no_clippy:
        log = os.path.join(BUILD, "clippy.log")
        p = subprocess.run(["bash", os.path.join(TOP, "scripts", "clippy.sh"), log],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           stdin=subprocess.DEVNULL)
        print(p.stdout, end="")
        warnings = re.findall(r"^clippy: warning: (.*)$", p.stdout, flags=re.M)
        r.check("clippy build (CLIPPY=1) succeeds", p.returncode in (0, 1),
                f"rc={p.returncode}, log {log}")
        r.check_none("clippy: no warnings", warnings or ([f"clippy.sh exited {p.returncode}"] if p.returncode else []))
        r.metric("clippy warnings", len(warnings))

    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
