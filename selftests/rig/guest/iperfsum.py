#!/usr/bin/python3
"""Print one IPERFSUM line with the receiver totals of an iperf3 --json result."""
import json, sys
try:
    j = json.load(open(sys.argv[1]))
    e = j.get("end", {})
    r, s = e.get("sum_received", {}), e.get("sum_sent", {})
    # the sending socket's smoothed and minimum RTT (TCP_INFO, microseconds; only when this end sent)
    snd = [x.get("sender", {}) for x in e.get("streams", [])]
    rtt = {k: snd[0][k] for k in ("mean_rtt", "min_rtt") if len(snd) == 1 and snd[0].get(k)}
    print("IPERFSUM " + json.dumps(dict({"recv_bytes": r.get("bytes", 0), "recv_bps": r.get("bits_per_second", 0),
                                         "sent_bytes": s.get("bytes", 0), "retransmits": s.get("retransmits"),
                                         "seconds": r.get("seconds"), "error": j.get("error")}, **rtt)))
except Exception as ex:
    print("IPERFSUM-ERROR %r" % (ex,))
