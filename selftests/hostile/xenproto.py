"""Raw Xen PV-net protocol layouts and the userspace Xen device interfaces, in one place.

Every byte layout the hostile peers use is defined here (struct formats, ioctl numbers, xenstore
wire types) and nowhere else. `python3 selftests/hostile/check_layouts.py` compiles a small C
program against the kernel's own headers (include/xen/interface/io/{netif,ring,xs_wire}.h,
include/uapi/xen/{gntdev,gntalloc,evtchn}.h) and compares every size, offset and constant below.

Python 3 standard library only (runs in the rig's dom0 and domU).
"""
import errno, fcntl, mmap, os, select, struct, threading, time

PAGE = 4096

# --- ring.h: struct <name>_sring { RING_IDX req_prod, req_event, rsp_prod, rsp_event; u8 __pad[48]; union ring[] }
SRING_HDR = struct.Struct("<IIII48x")          # 64 bytes
SRING_REQ_PROD, SRING_REQ_EVENT, SRING_RSP_PROD, SRING_RSP_EVENT = 0, 4, 8, 12


def ring_size(entry_size, page=PAGE):
    """__RING_SIZE: entries that fit after the header, rounded down to a power of two."""
    n = (page - SRING_HDR.size) // entry_size
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


# --- netif.h
TX_REQ = struct.Struct("<IHHHH")    # gref, offset, flags, id, size                        (12)
TX_RSP = struct.Struct("<Hh")       # id, status                                            (4)
RX_REQ = struct.Struct("<HHI")      # id, pad, gref                                         (8)
RX_RSP = struct.Struct("<HHHh")     # id, offset, flags, status                             (8)
EXTRA = struct.Struct("<BB6s")      # type, flags, union u                                  (8)
EXTRA_GSO = struct.Struct("<BBHBBH")  # type, flags, u.gso.size, u.gso.type, u.gso.pad, u.gso.features
CTRL_REQ = struct.Struct("<HH3I")   # id, type, data[3]                                     (16)
CTRL_RSP = struct.Struct("<HHII")   # id, type, status, data                                (12)
TX_ENTRY = max(TX_REQ.size, TX_RSP.size)      # union size in the shared ring
RX_ENTRY = max(RX_REQ.size, RX_RSP.size)
CTRL_ENTRY = max(CTRL_REQ.size, CTRL_RSP.size)
TX_RING_SIZE = ring_size(TX_ENTRY)            # 256
RX_RING_SIZE = ring_size(RX_ENTRY)            # 256
CTRL_RING_SIZE = ring_size(CTRL_ENTRY)        # 128

NR_SLOTS_MIN = 18                 # XEN_NETIF_NR_SLOTS_MIN
MAX_TX_SIZE = 0xFFFF
NETTXF_csum_blank, NETTXF_data_validated, NETTXF_more_data, NETTXF_extra_info = 1, 2, 4, 8
NETRXF_data_validated, NETRXF_csum_blank, NETRXF_more_data, NETRXF_extra_info, NETRXF_gso_prefix = 1, 2, 4, 8, 16
EXTRA_TYPE_NONE, EXTRA_TYPE_GSO, EXTRA_TYPE_MCAST_ADD, EXTRA_TYPE_MCAST_DEL, EXTRA_TYPE_HASH, EXTRA_TYPE_XDP, EXTRA_TYPE_MAX = range(7)
EXTRA_FLAG_MORE = 1
GSO_TYPE_NONE, GSO_TYPE_TCPV4, GSO_TYPE_TCPV6 = 0, 1, 2
RSP_DROPPED, RSP_ERROR, RSP_OKAY, RSP_NULL = -2, -1, 0, 1
CTRL_TYPE_INVALID, CTRL_GET_HASH_FLAGS, CTRL_SET_HASH_FLAGS, CTRL_SET_HASH_KEY = 0, 1, 2, 3
CTRL_GET_HASH_MAPPING_SIZE, CTRL_SET_HASH_MAPPING_SIZE, CTRL_SET_HASH_MAPPING, CTRL_SET_HASH_ALGORITHM = 4, 5, 6, 7
CTRL_STATUS_SUCCESS, CTRL_STATUS_NOT_SUPPORTED, CTRL_STATUS_INVALID_PARAMETER, CTRL_STATUS_BUFFER_OVERFLOW = 0, 1, 2, 3
HASH_ALGORITHM_NONE, HASH_ALGORITHM_TOEPLITZ = 0, 1

# xenbus states (include/xen/interface/io/xenbus.h)
XB_UNKNOWN, XB_INITIALISING, XB_INITWAIT, XB_INITIALISED, XB_CONNECTED, XB_CLOSING, XB_CLOSED, XB_RECONFIGURING, XB_RECONFIGURED = range(9)
STATE_NAMES = {0: "Unknown", 1: "Initialising", 2: "InitWait", 3: "Initialised", 4: "Connected", 5: "Closing",
               6: "Closed", 7: "Reconfiguring", 8: "Reconfigured"}

# --- xs_wire.h
XS_HDR = struct.Struct("<IIII")    # type, req_id, tx_id, len
(XS_CONTROL, XS_DIRECTORY, XS_READ, XS_GET_PERMS, XS_WATCH, XS_UNWATCH, XS_TRANSACTION_START,
 XS_TRANSACTION_END, XS_INTRODUCE, XS_RELEASE, XS_GET_DOMAIN_PATH, XS_WRITE, XS_MKDIR, XS_RM,
 XS_SET_PERMS, XS_WATCH_EVENT, XS_ERROR) = range(17)
XENSTORE_PAYLOAD_MAX = 4096


# --- ioctls: _IOC(_IOC_NONE, type, nr, size) = size << 16 | type << 8 | nr
def _ioc_none(t, nr, size):
    return (size << 16) | (ord(t) << 8) | nr


GNTDEV_GRANT_REF = struct.Struct("<II")                       # domid, ref
GNTDEV_MAP = struct.Struct("<IIQII")                          # count, pad, index, refs[1] (24)
GNTDEV_UNMAP = struct.Struct("<QII")                          # index, count, pad (16)
GNTDEV_GRANT_COPY_SEG = struct.Struct("<QQHHh2x")             # source, dest (unions of 8), len, flags, status (24)
GNTDEV_GRANT_COPY = struct.Struct("<I4xQ")                    # count, segments (16)
GNTALLOC_ALLOC = struct.Struct("<HHIQI4x")                    # domid, flags, count, index, gref_ids[1] (24)
GNTALLOC_DEALLOC = struct.Struct("<QI4x")                     # index, count (16)
EVTCHN_BIND_INTERDOMAIN = struct.Struct("<II")                # remote_domain, remote_port
EVTCHN_BIND_UNBOUND = struct.Struct("<I")
EVTCHN_PORT = struct.Struct("<I")                             # unbind / notify
IOCTL_GNTDEV_MAP_GRANT_REF = _ioc_none("G", 0, GNTDEV_MAP.size)
IOCTL_GNTDEV_UNMAP_GRANT_REF = _ioc_none("G", 1, GNTDEV_UNMAP.size)
IOCTL_GNTDEV_GRANT_COPY = _ioc_none("G", 8, GNTDEV_GRANT_COPY.size)
IOCTL_GNTALLOC_ALLOC_GREF = _ioc_none("G", 5, GNTALLOC_ALLOC.size)
IOCTL_GNTALLOC_DEALLOC_GREF = _ioc_none("G", 6, GNTALLOC_DEALLOC.size)
IOCTL_EVTCHN_BIND_INTERDOMAIN = _ioc_none("E", 1, EVTCHN_BIND_INTERDOMAIN.size)
IOCTL_EVTCHN_BIND_UNBOUND_PORT = _ioc_none("E", 2, EVTCHN_BIND_UNBOUND.size)
IOCTL_EVTCHN_UNBIND = _ioc_none("E", 3, EVTCHN_PORT.size)
IOCTL_EVTCHN_NOTIFY = _ioc_none("E", 4, EVTCHN_PORT.size)
GNTALLOC_FLAG_WRITABLE = 1

LAYOUTS = {  # name -> size, compared with the C headers by check_layouts.py
    "xen_netif_tx_request": TX_REQ.size, "xen_netif_tx_response": TX_RSP.size,
    "xen_netif_rx_request": RX_REQ.size, "xen_netif_rx_response": RX_RSP.size,
    "xen_netif_extra_info": EXTRA.size, "xen_netif_ctrl_request": CTRL_REQ.size,
    "xen_netif_ctrl_response": CTRL_RSP.size, "xsd_sockmsg": XS_HDR.size,
    "ioctl_gntdev_map_grant_ref": GNTDEV_MAP.size, "ioctl_gntdev_unmap_grant_ref": GNTDEV_UNMAP.size,
    "gntdev_grant_copy_segment": GNTDEV_GRANT_COPY_SEG.size, "ioctl_gntdev_grant_copy": GNTDEV_GRANT_COPY.size,
    "ioctl_gntalloc_alloc_gref": GNTALLOC_ALLOC.size, "ioctl_gntalloc_dealloc_gref": GNTALLOC_DEALLOC.size,
    "ioctl_evtchn_bind_interdomain": EVTCHN_BIND_INTERDOMAIN.size,
    "ioctl_evtchn_bind_unbound_port": EVTCHN_BIND_UNBOUND.size, "ioctl_evtchn_notify": EVTCHN_PORT.size,
}
OFFSETS = {  # (struct, field) -> offset
    ("xen_netif_tx_request", "gref"): 0, ("xen_netif_tx_request", "offset"): 4, ("xen_netif_tx_request", "flags"): 6,
    ("xen_netif_tx_request", "id"): 8, ("xen_netif_tx_request", "size"): 10,
    ("xen_netif_tx_response", "status"): 2,
    ("xen_netif_rx_request", "gref"): 4,
    ("xen_netif_rx_response", "offset"): 2, ("xen_netif_rx_response", "flags"): 4, ("xen_netif_rx_response", "status"): 6,
    ("xen_netif_extra_info", "u.gso.size"): 2, ("xen_netif_extra_info", "u.gso.type"): 4,
    ("xen_netif_extra_info", "u.gso.features"): 6,
    ("xen_netif_ctrl_request", "data"): 4, ("xen_netif_ctrl_response", "status"): 4, ("xen_netif_ctrl_response", "data"): 8,
    ("xen_netif_tx_sring", "rsp_prod"): SRING_RSP_PROD, ("xen_netif_tx_sring", "rsp_event"): SRING_RSP_EVENT,
    ("xen_netif_tx_sring", "ring"): SRING_HDR.size, ("xen_netif_rx_sring", "ring"): SRING_HDR.size,
    ("ioctl_gntdev_map_grant_ref", "index"): 8, ("ioctl_gntdev_map_grant_ref", "refs"): 16,
    ("ioctl_gntalloc_alloc_gref", "index"): 8, ("ioctl_gntalloc_alloc_gref", "gref_ids"): 16,
    ("gntdev_grant_copy_segment", "len"): 16, ("gntdev_grant_copy_segment", "status"): 20,
}
CONSTANTS = {
    "TX_RING_SIZE": TX_RING_SIZE, "RX_RING_SIZE": RX_RING_SIZE, "CTRL_RING_SIZE": CTRL_RING_SIZE,
    "IOCTL_GNTDEV_MAP_GRANT_REF": IOCTL_GNTDEV_MAP_GRANT_REF, "IOCTL_GNTDEV_UNMAP_GRANT_REF": IOCTL_GNTDEV_UNMAP_GRANT_REF,
    "IOCTL_GNTDEV_GRANT_COPY": IOCTL_GNTDEV_GRANT_COPY, "IOCTL_GNTALLOC_ALLOC_GREF": IOCTL_GNTALLOC_ALLOC_GREF,
    "IOCTL_GNTALLOC_DEALLOC_GREF": IOCTL_GNTALLOC_DEALLOC_GREF, "IOCTL_EVTCHN_BIND_INTERDOMAIN": IOCTL_EVTCHN_BIND_INTERDOMAIN,
    "IOCTL_EVTCHN_BIND_UNBOUND_PORT": IOCTL_EVTCHN_BIND_UNBOUND_PORT, "IOCTL_EVTCHN_UNBIND": IOCTL_EVTCHN_UNBIND,
    "IOCTL_EVTCHN_NOTIFY": IOCTL_EVTCHN_NOTIFY, "XEN_NETIF_NR_SLOTS_MIN": NR_SLOTS_MIN,
    "XEN_NETIF_EXTRA_TYPE_MAX": EXTRA_TYPE_MAX, "XEN_NETIF_RSP_NULL": RSP_NULL, "XEN_NETIF_RSP_ERROR": RSP_ERROR,
    "XEN_NETTXF_extra_info": NETTXF_extra_info, "XEN_NETTXF_more_data": NETTXF_more_data,
    "XEN_NETRXF_more_data": NETRXF_more_data, "XEN_NETRXF_extra_info": NETRXF_extra_info,
    "XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING": CTRL_SET_HASH_MAPPING,
    "XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER": CTRL_STATUS_INVALID_PARAMETER,
    "XS_WATCH_EVENT": XS_WATCH_EVENT, "XS_ERROR": XS_ERROR, "XS_SET_PERMS": XS_SET_PERMS,
    "XenbusStateReconfigured": XB_RECONFIGURED,
}


# --- shared rings ---------------------------------------------------------------------------
class Ring:
    """A view of one shared ring page (an mmap): raw access to indices and entries, no checks."""

    def __init__(self, mem, entry, size):
        self.mem, self.entry, self.size = mem, entry, size

    def _u32(self, off):
        return struct.unpack_from("<I", self.mem, off)[0]

    def _set32(self, off, v):
        struct.pack_into("<I", self.mem, off, v & 0xffffffff)

    req_prod = property(lambda s: s._u32(SRING_REQ_PROD), lambda s, v: s._set32(SRING_REQ_PROD, v))
    req_event = property(lambda s: s._u32(SRING_REQ_EVENT), lambda s, v: s._set32(SRING_REQ_EVENT, v))
    rsp_prod = property(lambda s: s._u32(SRING_RSP_PROD), lambda s, v: s._set32(SRING_RSP_PROD, v))
    rsp_event = property(lambda s: s._u32(SRING_RSP_EVENT), lambda s, v: s._set32(SRING_RSP_EVENT, v))

    def init(self):
        """SHARED_RING_INIT"""
        self.mem[0:PAGE] = bytes(PAGE)
        self.req_event = 1
        self.rsp_event = 1

    def slot(self, idx):
        return SRING_HDR.size + (idx % self.size) * self.entry

    def get(self, idx, st):
        return st.unpack_from(self.mem, self.slot(idx))

    def put(self, idx, st, *vals):
        off = self.slot(idx)
        self.mem[off:off + self.entry] = bytes(self.entry)
        st.pack_into(self.mem, off, *vals)

    def put_raw(self, idx, data):
        off = self.slot(idx)
        self.mem[off:off + len(data)] = data


def extra_gso(size, gso_type, more=False, etype=EXTRA_TYPE_GSO):
    return EXTRA_GSO.pack(etype, EXTRA_FLAG_MORE if more else 0, size, gso_type, 0, 0)


def extra_raw(etype, flags=0, payload=b""):
    return EXTRA.pack(etype, flags, payload.ljust(6, b"\0")[:6])


# --- xenstore over /dev/xen/xenbus ----------------------------------------------------------
class XsError(Exception):
    pass


class Xenstore:
    """Minimal xenstore client on /dev/xen/xenbus (dom0 and domU alike), with watches.
    A reader thread routes replies by req_id and queues watch events."""

    def __init__(self, path="/dev/xen/xenbus"):
        self.fd = os.open(path, os.O_RDWR)
        self.lock = threading.Lock()
        self.cv = threading.Condition()
        self.replies = {}
        self.events = []
        self.next_id = 1
        self.closed = False
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()

    def _read_exact(self, n):
        b = b""
        while len(b) < n:
            c = os.read(self.fd, n - len(b))
            if not c:
                raise EOFError
            b += c
        return b

    def _reader(self):
        try:
            while True:
                typ, rid, tx, ln = XS_HDR.unpack(self._read_exact(XS_HDR.size))
                body = self._read_exact(ln) if ln else b""
                with self.cv:
                    if typ == XS_WATCH_EVENT:
                        parts = body.split(b"\0")
                        self.events.append((parts[0].decode(), parts[1].decode() if len(parts) > 1 else ""))
                    else:
                        self.replies[rid] = (typ, body)
                    self.cv.notify_all()
        except (OSError, EOFError):
            with self.cv:
                self.closed = True
                self.cv.notify_all()

    def request(self, typ, payload, tx=0, timeout=30):
        with self.lock:
            rid = self.next_id
            self.next_id += 1
            os.write(self.fd, XS_HDR.pack(typ, rid, tx, len(payload)) + payload)
        end = time.time() + timeout
        with self.cv:
            while rid not in self.replies:
                if self.closed or time.time() > end:
                    raise XsError("no reply to xenstore request %d" % typ)
                self.cv.wait(1)
            rtyp, body = self.replies.pop(rid)
        if rtyp == XS_ERROR:
            raise XsError(body.rstrip(b"\0").decode())
        return body

    def read(self, path, default=None, tx=0):
        try:
            return self.request(XS_READ, path.encode() + b"\0", tx).decode(errors="replace")
        except XsError as e:
            if default is not None and "ENOENT" in str(e):
                return default
            if default is not None:
                return default
            raise

    def write(self, path, value, tx=0):
        self.request(XS_WRITE, path.encode() + b"\0" + str(value).encode(), tx)

    def mkdir(self, path, tx=0):
        self.request(XS_MKDIR, path.encode() + b"\0", tx)

    def rm(self, path, tx=0):
        try:
            self.request(XS_RM, path.encode() + b"\0", tx)
        except XsError as e:
            if "ENOENT" not in str(e):
                raise

    def ls(self, path, tx=0):
        try:
            body = self.request(XS_DIRECTORY, path.encode() + b"\0", tx)
        except XsError:
            return []
        return [x for x in body.decode().split("\0") if x]

    def set_perms(self, path, perms, tx=0):
        self.request(XS_SET_PERMS, path.encode() + b"\0" + b"".join(p.encode() + b"\0" for p in perms), tx)

    def watch(self, path, token):
        self.request(XS_WATCH, path.encode() + b"\0" + token.encode() + b"\0")

    def unwatch(self, path, token):
        try:
            self.request(XS_UNWATCH, path.encode() + b"\0" + token.encode() + b"\0")
        except XsError:
            pass

    def tx_start(self):
        return int(self.request(XS_TRANSACTION_START, b"\0").rstrip(b"\0"))

    def tx_end(self, tx, commit=True):
        self.request(XS_TRANSACTION_END, (b"T" if commit else b"F") + b"\0", tx)

    def transact(self, fn, tries=10):
        """Run fn(tx) in a transaction, retried on EAGAIN."""
        for k in range(tries):
            t = self.tx_start()
            try:
                fn(t)
            except Exception:
                try:
                    self.tx_end(t, False)
                except XsError:
                    pass
                raise
            try:
                self.tx_end(t, True)
                return
            except XsError as e:
                if "EAGAIN" not in str(e) or k == tries - 1:
                    raise
                time.sleep(0.05)

    def wait_event(self, timeout):
        """Next watch event (path, token) or None."""
        end = time.time() + timeout
        with self.cv:
            while not self.events:
                left = end - time.time()
                if left <= 0 or self.closed:
                    return None
                self.cv.wait(min(left, 1))
            return self.events.pop(0)

    def state(self, path):
        try:
            return int(self.read(path + "/state", "0").strip("\0") or 0)
        except ValueError:
            return -1

    def wait_state(self, path, want, timeout):
        """Wait until <path>/state is in want (a set); returns the last state seen."""
        end = time.time() + timeout
        st = self.state(path)
        while st not in want and time.time() < end:
            time.sleep(0.05)
            st = self.state(path)
        return st

    def close(self):
        try:
            os.close(self.fd)
        except OSError:
            pass


# --- event channels -------------------------------------------------------------------------
class Evtchn:
    def __init__(self):
        self.fd = os.open("/dev/xen/evtchn", os.O_RDWR | os.O_NONBLOCK)
        self.ports = []

    def bind_interdomain(self, domid, rport):
        buf = bytearray(EVTCHN_BIND_INTERDOMAIN.pack(domid, rport))
        port = fcntl.ioctl(self.fd, IOCTL_EVTCHN_BIND_INTERDOMAIN, buf, True)
        self.ports.append(port)
        return port

    def bind_unbound(self, domid):
        buf = bytearray(EVTCHN_BIND_UNBOUND.pack(domid))
        port = fcntl.ioctl(self.fd, IOCTL_EVTCHN_BIND_UNBOUND_PORT, buf, True)
        self.ports.append(port)
        return port

    def notify(self, port):
        fcntl.ioctl(self.fd, IOCTL_EVTCHN_NOTIFY, bytearray(EVTCHN_PORT.pack(port)), True)

    def pending(self, timeout=0):
        """Ports that fired (and unmask them again)."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        try:
            data = os.read(self.fd, 4 * 64)
        except BlockingIOError:
            return []
        ports = [struct.unpack_from("<I", data, i)[0] for i in range(0, len(data) - 3, 4)]
        if ports:
            os.write(self.fd, b"".join(EVTCHN_PORT.pack(p) for p in ports))
        return ports

    def unbind(self, port):
        try:
            fcntl.ioctl(self.fd, IOCTL_EVTCHN_UNBIND, bytearray(EVTCHN_PORT.pack(port)), True)
        except OSError:
            pass
        if port in self.ports:
            self.ports.remove(port)

    def close(self):
        for p in list(self.ports):
            self.unbind(p)
        os.close(self.fd)


# --- grants: map foreign grants (backend side) ------------------------------------------------
class Gntdev:
    def __init__(self):
        self.fd = os.open("/dev/xen/gntdev", os.O_RDWR)
        self.maps = {}   # index -> mmap

    def map(self, domid, ref, writable=True):
        buf = bytearray(GNTDEV_MAP.pack(1, 0, 0, domid, ref))
        fcntl.ioctl(self.fd, IOCTL_GNTDEV_MAP_GRANT_REF, buf, True)
        index = GNTDEV_MAP.unpack(buf)[2]
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        try:
            m = mmap.mmap(self.fd, PAGE, mmap.MAP_SHARED, prot, offset=index)
        except OSError:
            self._unmap_index(index)
            raise
        self.maps[index] = m
        return index, m

    def _unmap_index(self, index):
        try:
            fcntl.ioctl(self.fd, IOCTL_GNTDEV_UNMAP_GRANT_REF, bytearray(GNTDEV_UNMAP.pack(index, 1, 0)), True)
        except OSError:
            pass

    def unmap(self, index):
        m = self.maps.pop(index, None)
        if m is not None:
            m.close()
        self._unmap_index(index)

    def close(self):
        for i in list(self.maps):
            self.unmap(i)
        os.close(self.fd)


# --- grants: share local pages (frontend side) ----------------------------------------------
class Gntalloc:
    def __init__(self):
        self.fd = os.open("/dev/xen/gntalloc", os.O_RDWR)
        self.pages = {}  # index -> (gref, mmap)

    def alloc(self, domid, writable=True):
        buf = bytearray(GNTALLOC_ALLOC.pack(domid, GNTALLOC_FLAG_WRITABLE if writable else 0, 1, 0, 0))
        fcntl.ioctl(self.fd, IOCTL_GNTALLOC_ALLOC_GREF, buf, True)
        _, _, _, index, gref = GNTALLOC_ALLOC.unpack(buf)
        m = mmap.mmap(self.fd, PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=index)
        m[0:PAGE] = bytes(PAGE)
        self.pages[index] = (gref, m)
        return gref, m, index

    def free(self, index):
        g = self.pages.pop(index, None)
        if g:
            g[1].close()
        try:
            fcntl.ioctl(self.fd, IOCTL_GNTALLOC_DEALLOC_GREF, bytearray(GNTALLOC_DEALLOC.pack(index, 1)), True)
        except OSError:
            pass

    def close(self):
        for i in list(self.pages):
            self.free(i)
        os.close(self.fd)


# --- packets --------------------------------------------------------------------------------
ETH_P_TEST = 0x88b5   # IEEE 802 local experimental ethertype: dropped by every stack, counted by drivers


def eth_frame(dst, src, payload=b"hostile-peer", ethertype=ETH_P_TEST, size=60):
    f = bytes(dst) + bytes(src) + struct.pack(">H", ethertype) + payload
    return f.ljust(size, b"\0")


def mac_bytes(s):
    return bytes(int(x, 16) for x in s.split(":"))


def ones_sum(b):
    """The Internet checksum's ones' complement sum of b, folded, not inverted (0xffff over a
    region whose checksum field is right)."""
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s


def ipv4_udp_frame(src_mac, dst_mac, src_ip, dst_ip, payload=b"x" * 32, sport=4321, dport=9):
    def csum(b):
        return ~ones_sum(b) & 0xffff
    sip, dip = bytes(int(x) for x in src_ip.split(".")), bytes(int(x) for x in dst_ip.split("."))
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, sip, dip)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return bytes(dst_mac) + bytes(src_mac) + b"\x08\x00" + ip + udp
