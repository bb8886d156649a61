#!/usr/bin/python3
"""domU command agent on the PV console (hvc0), driven by dom0 through xenconsoled's pty.

It does not use the network under test. Protocol (one request at a time, lines, ASCII):
  dom0 -> domU  @@REQ <id> <timeout_s> <base64(shell command)>
                @@RESEND <id>            (repeat the answer of <id>, e.g. after a checksum error)
                @@PING <id>
  domU -> dom0  @@OUT <id> <seq> <base64(chunk)>   (stdout+stderr, in order)
                @@END <id> <rc> <len> <crc32>      (rc: exit code, 128+N killed by signal N, 124 timeout)
                @@PONG <id>
Kernel messages may be interleaved on the console: the client ignores every line that does not
parse and verifies length and CRC32 of the whole output.
"""
import base64, os, signal, subprocess, sys, termios, tty, zlib

CHUNK = 384
answers = {}


def out(line):
    os.write(1, (line + "\n").encode())


def run(cmd, timeout):
    p = subprocess.Popen(["/bin/sh", "-c", cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        data, _ = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        data, _ = p.communicate()
        data += b"\n[agent: timeout after %ss]\n" % str(timeout).encode()
        rc = 124
    if rc < 0:
        rc = 128 - rc
    return rc, data


def send(rid):
    rc, data = answers[rid]
    for seq, i in enumerate(range(0, len(data), CHUNK)):
        out("@@OUT %s %d %s" % (rid, seq, base64.b64encode(data[i:i + CHUNK]).decode()))
    out("@@END %s %d %d %08x" % (rid, rc, len(data), zlib.crc32(data) & 0xffffffff))


def main():
    try:
        tty.setraw(0)
        attrs = termios.tcgetattr(0)
        attrs[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON)
        termios.tcsetattr(0, termios.TCSANOW, attrs)
    except termios.error:
        pass
    out("@@READY")
    buf = b""
    while True:
        b = os.read(0, 4096)
        if not b:
            return
        buf += b.replace(b"\r", b"\n")
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            parts = line.decode("ascii", "replace").strip().split()
            if not parts:
                continue
            try:
                if parts[0] == "@@REQ" and len(parts) == 4:
                    rid, timeout = parts[1], float(parts[2])
                    if rid not in answers:
                        answers[rid] = run(base64.b64decode(parts[3]).decode(), timeout)
                    send(rid)
                elif parts[0] == "@@RESEND" and len(parts) == 2 and parts[1] in answers:
                    send(parts[1])
                elif parts[0] == "@@PING" and len(parts) == 2:
                    out("@@PONG %s" % parts[1])
                    out("@@READY")
            except Exception as e:  # a bad request must not kill the agent
                out("@@ERR %r" % (e,))


if __name__ == "__main__":
    main()
