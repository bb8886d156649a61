#!/usr/bin/python3
"""Software transmit timestamps, as a user asks for them (Documentation/networking/timestamping.rst):
a UDP socket with SO_TIMESTAMPING (TX_SOFTWARE, SOFTWARE, OPT_ID, OPT_TSONLY) sends N datagrams to
DST port 9; the driver that transmits them must call skb_tx_timestamp(), which puts one
SCM_TSTAMP_SND timestamp per datagram on the socket's error queue (nothing else in the stack makes
them). Prints one line:
  TXTSTAMP sent=N snd=<SND timestamps with distinct ids> sane=<of them within the send window>
Usage: txtstamp.py DST [N]"""
import socket, struct, sys, time

SO_TIMESTAMPING = 37                 # also the cmsg type SCM_TIMESTAMPING
SOF_TX_SOFTWARE, SOF_SOFTWARE = 1 << 1, 1 << 4
SOF_OPT_ID, SOF_OPT_TSONLY = 1 << 7, 1 << 11
IP_RECVERR = 11
SO_EE_ORIGIN_TIMESTAMPING, SCM_TSTAMP_SND = 4, 0

dst, n = sys.argv[1], int(sys.argv[2]) if sys.argv[2:] else 10
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, SOF_TX_SOFTWARE | SOF_SOFTWARE | SOF_OPT_ID | SOF_OPT_TSONLY)
t0 = time.time()
for i in range(n):
    s.sendto(b"rig-txtstamp %d" % i, (dst, 9))
    time.sleep(0.02)
ids, sane, end = set(), 0, time.time() + 3
while len(ids) < n and time.time() < end:
    try:
        _, anc, _, _ = s.recvmsg(64, 1024, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
    except BlockingIOError:
        time.sleep(0.05)
        continue
    ts, err = None, None
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPING and len(data) >= 16:
            sec, nsec = struct.unpack_from("qq", data)      # ts[0]: the software timestamp
            ts = sec + nsec / 1e9
        elif level == socket.IPPROTO_IP and typ == IP_RECVERR and len(data) >= 16:
            err = struct.unpack_from("IBBBBII", data)       # struct sock_extended_err
    if ts is None or err is None or err[1] != SO_EE_ORIGIN_TIMESTAMPING or err[5] != SCM_TSTAMP_SND:
        continue
    if err[6] not in ids:
        ids.add(err[6])
        sane += t0 - 1 <= ts <= time.time() + 1
print("TXTSTAMP sent=%d snd=%d sane=%d" % (n, len(ids), sane), flush=True)
