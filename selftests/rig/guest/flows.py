#!/usr/bin/python3
"""Many TCP flows at once, each a fixed number of bytes, for the checks that need traffic spread
over a vif's queues (RSS, multi-queue): every connection has its own ports, so its own flow hash.
Unlike iperf3 -P, there is no control connection and no timer: each flow is done when its bytes
have arrived, however slow the host. Prints one line:
  FLOWS {"role": ..., "conns": N, "done": D, "bytes": B, "secs": S, "error": ...}
and exits 0 when all N flows carried all their bytes.
Usage: flows.py sink PORT CONNS BYTES TIMEOUT        (accepts CONNS connections, reads each to EOF)
       flows.py send HOST PORT CONNS BYTES TIMEOUT   (waits for the sink to listen)"""
import errno, json, selectors, socket, sys, time

CHUNK = 1 << 16


def report(role, conns, done, nbytes, t0, error=None):
    print("FLOWS " + json.dumps({"role": role, "conns": conns, "done": done, "bytes": nbytes,
                                 "secs": round(time.time() - t0, 3), "error": error}), flush=True)
    return 0 if done == conns and error is None else 1


def sink(port, conns, want, timeout):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(conns)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    end = time.time() + timeout
    t0 = None
    accepted = done = total = 0
    short = []
    while done < conns and time.time() < end:
        for key, _ in sel.select(1):
            if key.data is None:
                c, _ = ls.accept()
                c.setblocking(False)
                t0 = t0 or time.time()
                accepted += 1
                sel.register(c, selectors.EVENT_READ, [0])
                if accepted == conns:
                    sel.unregister(ls)
                continue
            b = key.fileobj.recv(CHUNK)
            if b:
                key.data[0] += len(b)
                total += len(b)
                continue
            sel.unregister(key.fileobj)
            key.fileobj.close()
            done += 1
            if key.data[0] != want:
                short.append(key.data[0])
    error = None
    if done < conns:
        error = "timeout: %d of %d connections accepted, %d finished" % (accepted, conns, done)
    elif short:
        error = "%d connections ended short of %d bytes: %s" % (len(short), want, short[:4])
    return report("sink", conns, done - len(short), total, t0 or time.time(), error)


def send(host, port, conns, nbytes, timeout):
    end = time.time() + timeout
    socks = []
    while len(socks) < conns:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.connect((host, port))
        except OSError as e:
            s.close()
            # the sink may not listen yet: only the first connection waits for it
            if socks or e.errno != errno.ECONNREFUSED or time.time() > end:
                return report("send", conns, 0, 0, time.time(), "connect %d: %r" % (len(socks), e))
            time.sleep(0.2)
            continue
        socks.append(s)
    t0 = time.time()
    buf = memoryview(bytes(CHUNK))
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_WRITE, [nbytes])
    done = total = 0
    while done < conns and time.time() < end:
        for key, ev in sel.select(1):
            s, left = key.fileobj, key.data
            if ev & selectors.EVENT_READ:
                # the sink closes once it has read everything
                if not s.recv(CHUNK):
                    sel.unregister(s)
                    s.close()
                    done += 1
                continue
            try:
                n = s.send(buf[:min(CHUNK, left[0])])
            except BlockingIOError:
                continue
            left[0] -= n
            total += n
            if left[0] == 0:
                s.shutdown(socket.SHUT_WR)
                sel.modify(s, selectors.EVENT_READ, left)
    return report("send", conns, done, total, t0, None if done == conns else "timeout: %d of %d finished" % (done, conns))


def main(argv):
    if argv[:1] == ["sink"] and len(argv) == 5:
        return sink(int(argv[1]), int(argv[2]), int(argv[3]), float(argv[4]))
    if argv[:1] == ["send"] and len(argv) == 6:
        return send(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), float(argv[5]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
