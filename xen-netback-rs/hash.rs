// SPDX-License-Identifier: GPL-2.0

//! The control ring's hash configuration and the multicast filter (C: `hash.c`, the ctrl and
//! mcast parts of `netback.c`).
//!
//! Everything here is plain data and arithmetic: the frontend's parameters are checked before
//! anything is written (XSA-270: `off + len` of a mapping update is overflow-checked and bounded
//! by the table size, a new table is staged and only installed once every entry is a valid
//! queue). Reading the granted key or mapping page is left to a closure, so that the checks run
//! without Xen (KUnit).
//!
//! The multicast filter (towards the frontend, with `request-multicast-control` on) is C's: it
//! applies to frames that came in as multicast on another port of the bridge (`PACKET_MULTICAST`,
//! see `VifShared::mcast_pass`), whose group must have been added with `MCAST_ADD`; 64 addresses,
//! duplicates kept, one copy removed per `MCAST_DEL`, the list cleared at disconnect.
//!
//! Where this differs from C:
//!
//! - The hash input: as C's flow dissector, IPv4 options and IPv6 hop-by-hop, routing and
//!   destination options headers are skipped, fragments are hashed on their addresses, IP-in-IP
//!   (protocol or next header 4 and 41) and GRE (version 0 with its optional fields, Ethernet and
//!   VLAN tags inside `ETH_P_TEB`; PPTP) are looked into, at most `MAX_FLOW_DISSECT_HDRS` headers
//!   deep: the innermost addresses and TCP ports are hashed, in the format of the outer type with
//!   C's union of the addresses (IPv6-in-IPv4 hashes 8 bytes of the inner source address). The
//!   headers must lie in the first `HASH_HEADER_BYTES` (256) bytes (C reads as far as needed):
//!   past them there is no hash, as C gives for a packet that ends there, except that a TCP
//!   header past them gives the address hash (C: the TCP hash, ports 0 if the packet ends).
//!   PPPoE, TIPC, batman-adv and HSR/PRP inside a tunnel are not looked into: no hash (C hashes
//!   them). One in-band 802.1Q tag is looked past.

use kernel::{
    prelude::*,
    xen::{
        grant::GrantRef,
        netif::{
            toeplitz_hash,
            CtrlRequest,
            CtrlResponse,
            CtrlStatus,
            CtrlType,
            HashAlgorithm,
            HashType,
            HashTypeFlag, //
        },
        PAGE_SIZE,
    },
};

/// Size of the Toeplitz key (`XEN_NETBK_MAX_HASH_KEY_SIZE`).
pub(crate) const MAX_HASH_KEY_SIZE: usize = 40;

/// Most entries of the queue mapping table (`XEN_NETBK_MAX_HASH_MAPPING_SIZE`).
pub(crate) const MAX_HASH_MAPPING_SIZE: usize = 128;

/// Most multicast addresses a frontend may register (`XEN_NETBK_MCAST_MAX`).
pub(crate) const MCAST_MAX: usize = 64;

/// Every hash type this backend computes.
const ALL_TYPES: u32 = HashTypeFlag::Ipv4 as u32
    | HashTypeFlag::Ipv4Tcp as u32
    | HashTypeFlag::Ipv6 as u32
    | HashTypeFlag::Ipv6Tcp as u32;

/// The hash state a frontend sets through its control ring (C: `struct xenvif_hash`).
#[derive(Clone)]
pub(crate) struct HashConfig {
    pub(crate) alg: HashAlgorithm,
    /// `XEN_NETIF_CTRL_HASH_TYPE_*` bits.
    pub(crate) flags: u32,
    pub(crate) key: [u8; MAX_HASH_KEY_SIZE],
    /// Number of entries of `mapping` in use (0: hash modulo the number of queues).
    pub(crate) size: usize,
    pub(crate) mapping: [u32; MAX_HASH_MAPPING_SIZE],
}

impl HashConfig {
    /// No hashing (C: `xenvif_init_hash`).
    pub(crate) const fn new() -> Self {
        Self {
            alg: HashAlgorithm::None,
            flags: 0,
            key: [0; MAX_HASH_KEY_SIZE],
            size: 0,
            mapping: [0; MAX_HASH_MAPPING_SIZE],
        }
    }

    /// `SET_HASH_ALGORITHM`.
    fn set_alg(&mut self, alg: u32) -> CtrlStatus {
        match HashAlgorithm::try_from(alg) {
            Ok(a) => {
                self.alg = a;
                CtrlStatus::Success
            }
            Err(_) => CtrlStatus::InvalidParameter,
        }
    }

    /// `GET_HASH_FLAGS`.
    fn get_flags(&self) -> (CtrlStatus, u32) {
        if self.alg == HashAlgorithm::None {
            return (CtrlStatus::NotSupported, 0);
        }
        (CtrlStatus::Success, ALL_TYPES)
    }

    /// `SET_HASH_FLAGS`.
    fn set_flags(&mut self, flags: u32) -> CtrlStatus {
        if flags & !ALL_TYPES != 0 || self.alg == HashAlgorithm::None {
            return CtrlStatus::InvalidParameter;
        }
        self.flags = flags;
        CtrlStatus::Success
    }

    /// `SET_HASH_KEY`: `len` bytes from the start of the granted page `gref`; the rest of the key
    /// is zero.
    fn set_key(
        &mut self,
        gref: u32,
        len: u32,
        copy: &mut impl FnMut(GrantRef, &mut [u8]) -> Result,
    ) -> CtrlStatus {
        let Ok(len) = usize::try_from(len) else {
            return CtrlStatus::InvalidParameter;
        };
        if len > MAX_HASH_KEY_SIZE {
            return CtrlStatus::InvalidParameter;
        }
        let mut key = [0u8; MAX_HASH_KEY_SIZE];
        if len != 0 && copy(GrantRef(gref), &mut key[..len]).is_err() {
            return CtrlStatus::InvalidParameter;
        }
        self.key = key;
        CtrlStatus::Success
    }

    /// `SET_HASH_MAPPING_SIZE`: the table is cleared.
    fn set_mapping_size(&mut self, size: u32) -> CtrlStatus {
        match usize::try_from(size) {
            Ok(size) if size <= MAX_HASH_MAPPING_SIZE => {
                self.size = size;
                self.mapping = [0; MAX_HASH_MAPPING_SIZE];
                CtrlStatus::Success
            }
            _ => CtrlStatus::InvalidParameter,
        }
    }

    /// `SET_HASH_MAPPING`: entries `off..off + len` from the start of the granted page `gref`,
    /// each a queue below `num_queues` (XSA-270).
    fn set_mapping(
        &mut self,
        gref: u32,
        len: u32,
        off: u32,
        num_queues: u32,
        copy: &mut impl FnMut(GrantRef, &mut [u8]) -> Result,
    ) -> CtrlStatus {
        let end = match off.checked_add(len) {
            Some(end) => end as usize,
            None => return CtrlStatus::InvalidParameter,
        };
        let (off, len) = (off as usize, len as usize);
        if end > self.size || len > PAGE_SIZE / 4 {
            return CtrlStatus::InvalidParameter;
        }
        if len == 0 {
            return CtrlStatus::Success;
        }
        // `end <= size <= MAX_HASH_MAPPING_SIZE`: staged, checked, then installed.
        let mut raw = [0u8; MAX_HASH_MAPPING_SIZE * 4];
        if copy(GrantRef(gref), &mut raw[..len * 4]).is_err() {
            return CtrlStatus::InvalidParameter;
        }
        let mut staged = self.mapping;
        for (i, chunk) in raw[..len * 4].chunks_exact(4).enumerate() {
            let q = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            if q >= num_queues {
                return CtrlStatus::InvalidParameter;
            }
            staged[off + i] = q;
        }
        self.mapping = staged;
        CtrlStatus::Success
    }

    /// Answers one control request (C: `process_ctrl_request`). `copy(gref, buf)` fills `buf`
    /// from the start of the page the frontend granted with `gref`.
    pub(crate) fn process(
        &mut self,
        req: &CtrlRequest,
        num_queues: u32,
        mut copy: impl FnMut(GrantRef, &mut [u8]) -> Result,
    ) -> CtrlResponse {
        let d = req.data;
        let (status, data) = match CtrlType::try_from(req.type_) {
            Ok(CtrlType::SetHashAlgorithm) => (self.set_alg(d[0]), 0),
            Ok(CtrlType::GetHashFlags) => self.get_flags(),
            Ok(CtrlType::SetHashFlags) => (self.set_flags(d[0]), 0),
            Ok(CtrlType::SetHashKey) => (self.set_key(d[0], d[1], &mut copy), 0),
            Ok(CtrlType::GetHashMappingSize) => (CtrlStatus::Success, MAX_HASH_MAPPING_SIZE as u32),
            Ok(CtrlType::SetHashMappingSize) => (self.set_mapping_size(d[0]), 0),
            Ok(CtrlType::SetHashMapping) => {
                (self.set_mapping(d[0], d[1], d[2], num_queues, &mut copy), 0)
            }
            Ok(CtrlType::Invalid) | Err(_) => (CtrlStatus::NotSupported, 0),
        };
        CtrlResponse {
            id: req.id,
            type_: req.type_,
            status: status as u32,
            data,
        }
    }

    /// The hash of a frame and what it covers, if hashing is on and an enabled type applies
    /// (C: `xenvif_set_skb_hash`).
    pub(crate) fn hash(&self, frame: &[u8]) -> Option<(u32, HashType)> {
        self.hash_cached(frame, &mut HashCache::none())
    }

    /// As [`HashConfig::hash`], looking the hash up in `cache` first and remembering it there
    /// when it had to be computed (C: `xenvif_find_hash`, `xenvif_new_hash`). `cache` must hold
    /// hashes computed with this configuration's key only.
    pub(crate) fn hash_cached(
        &self,
        frame: &[u8],
        cache: &mut HashCache,
    ) -> Option<(u32, HashType)> {
        if self.alg == HashAlgorithm::None || self.flags == 0 {
            return None;
        }
        let (kind, input, n) = hash_input(frame, self.flags)?;
        let input = &input[..n];
        if let Some(val) = cache.find(input) {
            return Some((val, kind));
        }
        let val = toeplitz_hash(&self.key, input);
        cache.insert(input, val);
        Some((val, kind))
    }

    /// The queue of a frame's hash (C: `xenvif_select_queue`).
    pub(crate) fn queue(&self, hash: u32, real_num_queues: u32) -> u32 {
        if self.size == 0 {
            hash % real_num_queues.max(1)
        } else {
            self.mapping[(hash as usize) % self.size.min(MAX_HASH_MAPPING_SIZE)]
        }
    }
}

/// Most entries of the hash cache, whatever `hash_cache_size` asks for (C has no bound; each
/// lookup walks the entries under a lock, as C's list walk).
pub(crate) const HASH_CACHE_MAX: usize = 1024;

/// Longest hash input: two IPv6 addresses and two ports.
const HASH_INPUT_MAX: usize = 36;

/// One computed hash and the bytes it was computed from (C: `struct xenvif_hash_cache_entry`).
#[derive(Clone, Copy)]
struct CacheEntry {
    tag: [u8; HASH_INPUT_MAX],
    len: u8,
    val: u32,
    /// Stamp of the last use: the entry with the smallest is evicted first.
    seq: u64,
}

/// The Toeplitz hashes computed last, keyed by the bytes hashed (C: `struct xenvif_hash_cache`,
/// `xenvif_find_hash`, `xenvif_add_hash`, `xenvif_flush_hash`): at most `capacity` entries, the
/// least recently used one replaced when full. Capacity 0: nothing is cached.
///
/// The entries are valid for one key only: [`HashCache::flush`] when the key changes.
pub(crate) struct HashCache {
    entries: KVec<CacheEntry>,
    capacity: usize,
    seq: u64,
}

impl HashCache {
    /// An empty cache without room (`hash_cache_size=0`).
    pub(crate) const fn none() -> Self {
        Self {
            entries: KVec::new(),
            capacity: 0,
            seq: 0,
        }
    }

    /// A cache of `capacity` entries (at most [`HASH_CACHE_MAX`]), allocated now so that filling
    /// it later does not allocate.
    pub(crate) fn new(capacity: usize) -> Result<Self> {
        let capacity = capacity.min(HASH_CACHE_MAX);
        Ok(Self {
            entries: KVec::with_capacity(capacity, GFP_KERNEL)?,
            capacity,
            seq: 0,
        })
    }

    fn stamp(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The cached hash of `data`, if any; a hit makes the entry the most recently used.
    pub(crate) fn find(&mut self, data: &[u8]) -> Option<u32> {
        let seq = self.stamp();
        let e = self
            .entries
            .iter_mut()
            .find(|e| usize::from(e.len) == data.len() && e.tag[..data.len()] == *data)?;
        e.seq = seq;
        Some(e.val)
    }

    /// Remembers that `data` hashes to `val`, in place of the least recently used entry when
    /// full. Inputs longer than an entry's tag are not cached.
    pub(crate) fn insert(&mut self, data: &[u8], val: u32) {
        if self.capacity == 0 || data.len() > HASH_INPUT_MAX {
            return;
        }
        let mut tag = [0u8; HASH_INPUT_MAX];
        tag[..data.len()].copy_from_slice(data);
        let entry = CacheEntry {
            tag,
            len: data.len() as u8,
            val,
            seq: self.stamp(),
        };
        if self.entries.len() < self.capacity {
            // Within the capacity allocated by `new`: does not allocate.
            let _ = self.entries.push(entry, GFP_ATOMIC);
        } else if let Some(oldest) = self.entries.iter_mut().min_by_key(|e| e.seq) {
            *oldest = entry;
        }
    }

    /// Forgets every entry (C: `xenvif_flush_hash`).
    pub(crate) fn flush(&mut self) {
        self.entries.clear();
    }

    /// Number of entries cached.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Most entries.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Ethernet types (`ETH_P_*`) the flow dissector looks at.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_TEB: u16 = 0x6558;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_RARP: u16 = 0x8035;
const ETH_P_MPLS_UC: u16 = 0x8847;
const ETH_P_MPLS_MC: u16 = 0x8848;
const ETH_P_1588: u16 = 0x88f7;
const ETH_P_CFM: u16 = 0x8902;
const ETH_P_FCOE: u16 = 0x8906;
/// `sizeof(struct ptp_header)`, `FCOE_HEADER_LEN`.
const PTP_HEADER_LEN: usize = 34;
const FCOE_HEADER_LEN: usize = 38;
/// IP protocols (`IPPROTO_*`).
const IPPROTO_IPIP: u8 = 4;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_IPV6: u8 = 41;
const IPPROTO_GRE: u8 = 47;
/// IPv6 extension headers the flow dissector looks past (`NEXTHDR_*`).
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_DEST: u8 = 60;
/// GRE header flags (`GRE_*`, host order) and the PPTP payload type (`GRE_PROTO_PPP`).
const GRE_CSUM: u16 = 0x8000;
const GRE_ROUTING: u16 = 0x4000;
const GRE_KEY: u16 = 0x2000;
const GRE_SEQ: u16 = 0x1000;
const GRE_ACK: u16 = 0x0080;
const GRE_VERSION: u16 = 0x0007;
const GRE_PROTO_PPP: u16 = 0x880b;
/// PPP protocols (`PPP_IP`, `PPP_IPV6`).
const PPP_IP: u16 = 0x21;
const PPP_IPV6: u16 = 0x57;
/// Most headers the flow dissector goes on to after the first (`MAX_FLOW_DISSECT_HDRS`).
const MAX_FLOW_DISSECT_HDRS: usize = 15;

/// The part of C's `struct flow_keys` that `xenvif_set_skb_hash` reads, as
/// `skb_flow_dissect_flow_keys(skb, &flow, 0)` leaves it.
struct FlowKeys {
    /// `flow.addrs`: in C a union of the IPv4 (bytes 0..8) and IPv6 (0..32) addresses, written
    /// by every IP header dissected: an inner IPv4 header overwrites only the first 8 bytes of
    /// the IPv6 addresses an outer one left.
    addrs: [u8; 32],
    /// `flow.basic.ip_proto`.
    ip_proto: u8,
    /// `FLOW_DIS_IS_FRAGMENT`.
    frag: bool,
    /// Offset in the frame of the header after the last one dissected (C: `nhoff`), where the
    /// ports are read.
    thoff: usize,
}

/// C's `skb_flow_dissect_allowed`: counts one more header, true while within the limit.
fn another_header(hdrs: &mut usize) -> bool {
    *hdrs += 1;
    *hdrs <= MAX_FLOW_DISSECT_HDRS
}

/// Where a GRE header leads (C: `__skb_flow_dissect_gre`).
enum Gre {
    /// The encapsulated protocol and the offset of its header.
    Inner(u16, usize),
    /// Not looked into (routing present, version above 1, version 1 but not PPTP): the
    /// enclosing header's addresses are the flow's.
    Stop,
}

/// The GRE header at `off` of `frame`; `None` if a field the dissector reads is cut off.
fn gre(frame: &[u8], off: usize) -> Option<Gre> {
    let hdr = frame.get(off..off + 4)?;
    let flags = u16::from_be_bytes([hdr[0], hdr[1]]);
    let mut proto = u16::from_be_bytes([hdr[2], hdr[3]]);
    let ver = flags & GRE_VERSION;
    if flags & GRE_ROUTING != 0 || ver > 1 {
        return Some(Gre::Stop);
    }
    // Version 1 must be PPTP: PPP with a key (call id).
    if ver == 1 && (proto != GRE_PROTO_PPP || flags & GRE_KEY == 0) {
        return Some(Gre::Stop);
    }
    let mut off = off + 4;
    if flags & GRE_CSUM != 0 {
        // Checksum and reserved1, not read.
        off += 4;
    }
    if flags & GRE_KEY != 0 {
        // C reads the key (for `FLOW_DISSECTOR_KEY_GRE_KEYID`, which is not hashed): it must
        // be there.
        frame.get(off..off + 4)?;
        off += 4;
    }
    if flags & GRE_SEQ != 0 {
        off += 4;
    }
    if ver == 0 {
        if proto == ETH_P_TEB {
            let eth = frame.get(off..off + 14)?;
            proto = u16::from_be_bytes([eth[12], eth[13]]);
            off += 14;
        }
    } else {
        if flags & GRE_ACK != 0 {
            off += 4;
        }
        // Address, control, protocol. Other PPP protocols stay `GRE_PROTO_PPP`, which the
        // dissector does not know: no hash.
        let ppp = frame.get(off..off + 4)?;
        match u16::from_be_bytes([ppp[2], ppp[3]]) {
            PPP_IP => proto = ETH_P_IP,
            PPP_IPV6 => proto = ETH_P_IPV6,
            _ => {}
        }
        off += 4;
    }
    Some(Gre::Inner(proto, off))
}

/// C's flow dissector (`__skb_flow_dissect` with `flow_keys_dissector`, no flags) from the
/// network header of type `proto` at `off` of `frame`, `hdrs` headers already counted
/// against `MAX_FLOW_DISSECT_HDRS`, for what the hash needs: the addresses of the innermost IP
/// header reached through IP-in-IP, GRE (version 0, with an Ethernet header for `ETH_P_TEB`, and
/// PPTP) and VLAN tags, and its transport protocol.
///
/// `None` where C's dissector fails (a header it reads is not within `frame`, an Ethernet type
/// it does not know), and for the encapsulations it knows that this does not walk (PPPoE, TIPC,
/// batman-adv, HSR/PRP).
fn dissect(frame: &[u8], mut proto: u16, mut off: usize, mut hdrs: usize) -> Option<FlowKeys> {
    let mut flow = FlowKeys {
        addrs: [0; 32],
        ip_proto: 0,
        frag: false,
        thoff: 0,
    };
    // C: `proto_again`.
    'network: loop {
        match proto {
            ETH_P_IP => {
                let hdr = frame.get(off..off + 20)?;
                let ihl = usize::from(hdr[0] & 0xf) * 4;
                if ihl < 20 {
                    return None;
                }
                off += ihl;
                flow.ip_proto = hdr[9];
                flow.addrs[..8].copy_from_slice(&hdr[12..20]);
                // A fragment, first or not: these addresses, no ports.
                if u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff != 0 {
                    flow.frag = true;
                    break 'network;
                }
            }
            ETH_P_IPV6 => {
                let hdr = frame.get(off..off + 40)?;
                off += 40;
                flow.ip_proto = hdr[6];
                flow.addrs.copy_from_slice(&hdr[8..40]);
            }
            ETH_P_8021Q | ETH_P_8021AD => {
                let tag = frame.get(off..off + 4)?;
                proto = u16::from_be_bytes([tag[2], tag[3]]);
                off += 4;
                if another_header(&mut hdrs) {
                    continue 'network;
                }
                break 'network;
            }
            // Headers the dissector ends at without changing the addresses (with the keys
            // `flow_keys` asks for).
            ETH_P_ARP | ETH_P_RARP | ETH_P_MPLS_UC | ETH_P_MPLS_MC | ETH_P_CFM => break 'network,
            ETH_P_1588 => {
                frame.get(off..off + PTP_HEADER_LEN)?;
                break 'network;
            }
            ETH_P_FCOE => {
                frame.get(off..off + FCOE_HEADER_LEN)?;
                break 'network;
            }
            _ => return None,
        }
        // C: `ip_proto_again`.
        loop {
            match flow.ip_proto {
                IPPROTO_IPIP | IPPROTO_IPV6 => {
                    proto = if flow.ip_proto == IPPROTO_IPIP {
                        ETH_P_IP
                    } else {
                        ETH_P_IPV6
                    };
                    if another_header(&mut hdrs) {
                        continue 'network;
                    }
                    break 'network;
                }
                IPPROTO_GRE => match gre(frame, off)? {
                    Gre::Inner(inner, at) => {
                        (proto, off) = (inner, at);
                        if another_header(&mut hdrs) {
                            continue 'network;
                        }
                        break 'network;
                    }
                    Gre::Stop => break 'network,
                },
                NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST if proto == ETH_P_IPV6 => {
                    let opt = frame.get(off..off + 2)?;
                    flow.ip_proto = opt[0];
                    off += (usize::from(opt[1]) + 1) * 8;
                    // Out of headers: C still reads the ports of the protocol just found.
                    if !another_header(&mut hdrs) {
                        break 'network;
                    }
                }
                NEXTHDR_FRAGMENT if proto == ETH_P_IPV6 => {
                    let frag = frame.get(off..off + 8)?;
                    flow.ip_proto = frag[0];
                    flow.frag = true;
                    off += 8;
                    break 'network;
                }
                _ => break 'network,
            }
        }
    }
    flow.thoff = off;
    Some(flow)
}

/// The input of the Toeplitz hash for an Ethernet frame: source and destination addresses, then
/// (for the TCP types) source and destination ports, in network order, for the first enabled type
/// in `flags` that applies, the TCP one first (C: `xenvif_set_skb_hash` with the flow dissector).
///
/// The frame's Ethernet type (past one 802.1Q tag) picks IPv4 or IPv6 (C: `skb->protocol`);
/// the addresses and ports are those of the innermost header [`dissect`] reaches, in that
/// format. `frame` is the first `HASH_HEADER_BYTES` of the packet: headers the dissector would
/// read past it give no hash, as C for a packet that ends there; a TCP header past it gives the
/// address type.
pub(crate) fn hash_input(frame: &[u8], flags: u32) -> Option<(HashType, [u8; 36], usize)> {
    let mut off = 12;
    let mut proto = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    off += 2;
    // C's dissector counts a VLAN tag as a header.
    let mut hdrs = 0;
    if proto == ETH_P_8021Q {
        proto = u16::from_be_bytes([*frame.get(off + 2)?, *frame.get(off + 3)?]);
        off += 4;
        hdrs = 1;
    }
    let on = |f: HashTypeFlag| flags & f as u32 != 0;
    let (addr_len, l3, l4) = match proto {
        ETH_P_IP => (8, HashTypeFlag::Ipv4, HashTypeFlag::Ipv4Tcp),
        ETH_P_IPV6 => (32, HashTypeFlag::Ipv6, HashTypeFlag::Ipv6Tcp),
        _ => return None,
    };
    if !on(l3) && !on(l4) {
        return None;
    }
    let flow = dissect(frame, proto, off, hdrs)?;
    let mut out = [0u8; 36];
    out[..addr_len].copy_from_slice(&flow.addrs[..addr_len]);
    let (l3_type, l4_type) = if addr_len == 8 {
        (HashType::Ipv4, HashType::Ipv4Tcp)
    } else {
        (HashType::Ipv6, HashType::Ipv6Tcp)
    };
    if on(l4) && flow.ip_proto == IPPROTO_TCP && !flow.frag {
        if let Some(ports) = frame.get(flow.thoff..flow.thoff + 4) {
            out[addr_len..addr_len + 4].copy_from_slice(ports);
            return Some((l4_type, out, addr_len + 4));
        }
    }
    on(l3).then_some((l3_type, out, addr_len))
}

/// The multicast addresses a frontend subscribed to (C: `fe_mcast_addr`, `fe_mcast_count`).
pub(crate) struct McastList {
    addrs: [[u8; 6]; MCAST_MAX],
    count: usize,
}

impl McastList {
    pub(crate) const fn new() -> Self {
        Self {
            addrs: [[0; 6]; MCAST_MAX],
            count: 0,
        }
    }

    /// `MCAST_ADD` (C: `xenvif_mcast_add`: duplicates are kept). Fails when full.
    pub(crate) fn add(&mut self, addr: [u8; 6]) -> Result {
        if self.count == MCAST_MAX {
            return Err(ENOMEM);
        }
        self.addrs[self.count] = addr;
        self.count += 1;
        Ok(())
    }

    /// `MCAST_DEL`: removes one copy of `addr`, if any (C: `xenvif_mcast_del`).
    pub(crate) fn del(&mut self, addr: [u8; 6]) {
        if let Some(i) = self.addrs[..self.count].iter().position(|a| *a == addr) {
            self.addrs.copy_within(i + 1..self.count, i);
            self.count -= 1;
        }
    }

    /// Whether `addr` was added (C: `xenvif_mcast_match`).
    pub(crate) fn contains(&self, addr: &[u8]) -> bool {
        self.addrs[..self.count].iter().any(|a| a[..] == *addr)
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn clear(&mut self) {
        self.count = 0;
    }
}

#[kunit_tests(xen_netback_rs_hash)]
mod tests {
    use super::*;
    use crate::interface::HASH_HEADER_BYTES;

    fn req(type_: CtrlType, data: [u32; 3]) -> CtrlRequest {
        CtrlRequest {
            id: 7,
            type_: type_ as u16,
            data,
        }
    }

    /// A "granted page" of 4096 bytes holding `content` at its start.
    fn page(content: &[u8]) -> impl FnMut(GrantRef, &mut [u8]) -> Result + '_ {
        move |gref, buf| {
            if gref.0 != 5 || buf.len() > PAGE_SIZE {
                return Err(EINVAL);
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = content.get(i).copied().unwrap_or(0);
            }
            Ok(())
        }
    }

    fn status(c: &mut HashConfig, r: CtrlRequest, nq: u32, content: &[u8]) -> u32 {
        c.process(&r, nq, page(content)).status
    }

    #[test]
    fn ctrl_xsa270() {
        let mut c = HashConfig::new();
        let ok = CtrlStatus::Success as u32;
        let inval = CtrlStatus::InvalidParameter as u32;
        // Without an algorithm: no flags.
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashFlags, [1, 0, 0]), 4, &[]),
            inval
        );
        let r = c.process(&req(CtrlType::GetHashFlags, [0; 3]), 4, page(&[]));
        assert_eq!(r.status, CtrlStatus::NotSupported as u32);
        assert_eq!((r.id, r.type_), (7, CtrlType::GetHashFlags as u16));
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashAlgorithm, [2, 0, 0]), 4, &[]),
            inval
        );
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashAlgorithm, [1, 0, 0]), 4, &[]),
            ok
        );
        let r = c.process(&req(CtrlType::GetHashFlags, [0; 3]), 4, page(&[]));
        assert_eq!((r.status, r.data), (ok, 0xf));
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashFlags, [0x10, 0, 0]), 4, &[]),
            inval
        );
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashFlags, [0xf, 0, 0]), 4, &[]),
            ok
        );
        // Mapping size.
        let r = c.process(&req(CtrlType::GetHashMappingSize, [0; 3]), 4, page(&[]));
        assert_eq!((r.status, r.data), (ok, 128));
        assert_eq!(
            status(
                &mut c,
                req(CtrlType::SetHashMappingSize, [129, 0, 0]),
                4,
                &[]
            ),
            inval
        );
        assert_eq!(
            status(
                &mut c,
                req(CtrlType::SetHashMappingSize, [64, 0, 0]),
                4,
                &[]
            ),
            ok
        );
        // The hostile frontend's cases: wrapping, past the size, huge.
        let mut m = [0u8; 16];
        for (i, q) in [1u32, 2, 3, 0].iter().enumerate() {
            m[i * 4..i * 4 + 4].copy_from_slice(&q.to_ne_bytes());
        }
        for (g, l, o) in [
            (5, 0xfffffff0, 0x20),
            (5, 1, 64),
            (5, 0, 0xffffffff),
            (5, 0xffffffff, 1),
        ] {
            assert_eq!(
                status(&mut c, req(CtrlType::SetHashMapping, [g, l, o]), 4, &m),
                inval
            );
        }
        assert_eq!(c.mapping, [0; MAX_HASH_MAPPING_SIZE]);
        // A bad gref, an entry beyond the queues: refused, nothing changes.
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashMapping, [6, 4, 0]), 4, &m),
            inval
        );
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashMapping, [5, 4, 0]), 3, &m),
            inval
        );
        assert_eq!(c.mapping, [0; MAX_HASH_MAPPING_SIZE]);
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashMapping, [5, 4, 60]), 4, &m),
            ok
        );
        assert_eq!(&c.mapping[58..64], &[0, 0, 1, 2, 3, 0]);
        assert_eq!(c.queue(61, 4), 2);
        assert_eq!(c.queue(64 + 62, 4), 3);
        // The key: at most 40 bytes, the rest zeroed.
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashKey, [5, 0x10000, 0]), 4, &[]),
            inval
        );
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashKey, [5, 41, 0]), 4, &[]),
            inval
        );
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashKey, [6, 4, 0]), 4, &[]),
            inval
        );
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashKey, [5, 2, 0]), 4, &[9, 8, 7]),
            ok
        );
        assert_eq!(&c.key[..4], &[9, 8, 0, 0]);
        // Unknown operations.
        let r = CtrlRequest {
            id: 1,
            type_: 99,
            data: [0; 3],
        };
        assert_eq!(
            c.process(&r, 4, page(&[])).status,
            CtrlStatus::NotSupported as u32
        );
        let r = CtrlRequest {
            id: 1,
            type_: 0,
            data: [0; 3],
        };
        assert_eq!(
            c.process(&r, 4, page(&[])).status,
            CtrlStatus::NotSupported as u32
        );
        // Size 0: modulo the queues.
        assert_eq!(
            status(&mut c, req(CtrlType::SetHashMappingSize, [0, 0, 0]), 4, &[]),
            ok
        );
        assert_eq!(c.queue(7, 4), 3);
    }

    fn ipv4_tcp(frag: bool) -> [u8; 54] {
        let mut f = [0u8; 54];
        f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        f[14] = 0x45;
        f[20] = if frag { 0x20 } else { 0x40 };
        f[23] = IPPROTO_TCP;
        f[26..30].copy_from_slice(&[66, 9, 149, 187]);
        f[30..34].copy_from_slice(&[161, 142, 100, 80]);
        f[34..36].copy_from_slice(&2794u16.to_be_bytes());
        f[36..38].copy_from_slice(&1766u16.to_be_bytes());
        f
    }

    #[test]
    fn hash_of_frames() {
        // The Microsoft RSS verification key and its first IPv4 example.
        const KEY: [u8; 40] = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        let mut c = HashConfig::new();
        c.key = KEY;
        let f = ipv4_tcp(false);
        assert_eq!(c.hash(&f), None);
        c.alg = HashAlgorithm::Toeplitz;
        assert_eq!(c.hash(&f), None);
        c.flags = 0xf;
        assert_eq!(c.hash(&f), Some((0x51ccc178, HashType::Ipv4Tcp)));
        c.flags = HashTypeFlag::Ipv4 as u32;
        assert_eq!(c.hash(&f), Some((0x323e8fc2, HashType::Ipv4)));
        // A fragment: addresses only, or nothing if only TCP is on.
        c.flags = 0xf;
        assert_eq!(c.hash(&ipv4_tcp(true)), Some((0x323e8fc2, HashType::Ipv4)));
        c.flags = HashTypeFlag::Ipv4Tcp as u32;
        assert_eq!(c.hash(&ipv4_tcp(true)), None);
        // IPv6 types only: an IPv4 frame has no hash.
        c.flags = HashTypeFlag::Ipv6 as u32 | HashTypeFlag::Ipv6Tcp as u32;
        assert_eq!(c.hash(&f), None);
        // Truncated frames.
        c.flags = 0xf;
        assert_eq!(c.hash(&f[..30]), None);
        assert_eq!(c.hash(&f[..34]), Some((0x323e8fc2, HashType::Ipv4)));
        assert_eq!(c.hash(&[]), None);
        // The first IPv6 example of the specification, with TCP.
        let mut f6 = [0u8; 78];
        f6[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        f6[14] = 0x60;
        f6[20] = IPPROTO_TCP;
        f6[22..38].copy_from_slice(&[
            0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x07,
        ]);
        f6[38..54].copy_from_slice(&[
            0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 0x01,
        ]);
        f6[54..56].copy_from_slice(&2794u16.to_be_bytes());
        f6[56..58].copy_from_slice(&1766u16.to_be_bytes());
        assert_eq!(c.hash(&f6), Some((0x40207d3d, HashType::Ipv6Tcp)));
        c.flags = HashTypeFlag::Ipv6 as u32;
        assert_eq!(c.hash(&f6), Some((0x2cc18cd5, HashType::Ipv6)));
        // Extension headers before TCP: hop-by-hop (8 bytes), then destination options (16
        // bytes): the same input, so the same hash.
        c.flags = 0xf;
        let mut x6 = [0u8; 102];
        x6[..54].copy_from_slice(&f6[..54]);
        x6[20] = NEXTHDR_HOP;
        x6[54] = NEXTHDR_DEST;
        x6[62] = IPPROTO_TCP;
        x6[63] = 1;
        x6[78..82].copy_from_slice(&f6[54..58]);
        assert_eq!(c.hash(&x6), Some((0x40207d3d, HashType::Ipv6Tcp)));
        // The TCP header cut off: addresses only.
        assert_eq!(c.hash(&x6[..80]), Some((0x2cc18cd5, HashType::Ipv6)));
        // A fragment header on the way: addresses only.
        x6[54] = NEXTHDR_FRAGMENT;
        assert_eq!(c.hash(&x6), Some((0x2cc18cd5, HashType::Ipv6)));
        // A header that claims to reach past the frame.
        x6[54] = NEXTHDR_DEST;
        x6[63] = 255;
        assert_eq!(c.hash(&x6), Some((0x2cc18cd5, HashType::Ipv6)));
        c.flags = HashTypeFlag::Ipv6Tcp as u32;
        assert_eq!(c.hash(&x6), None);
    }

    /// The Microsoft RSS verification key.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];
    /// The specification's first IPv4 example (source, destination): hashes 0x323e8fc2 (IPv4),
    /// 0x51ccc178 (IPv4 with ports 2794, 1766).
    const IN_SRC: [u8; 4] = [66, 9, 149, 187];
    const IN_DST: [u8; 4] = [161, 142, 100, 80];
    /// Its second example: hashes 0xd718262a (IPv4), 0xc626b0ea (with ports 14230, 4739).
    const OUT_SRC: [u8; 4] = [199, 92, 111, 2];
    const OUT_DST: [u8; 4] = [65, 69, 140, 83];
    /// Its first IPv6 example: hashes 0x2cc18cd5 (IPv6), 0x40207d3d (with ports 2794, 1766).
    const IN6_SRC: [u8; 16] = [
        0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x07,
    ];
    const IN6_DST: [u8; 16] = [
        0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ];
    const OUT6_SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    const OUT6_DST: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 9, 10, 11, 12, 13, 14, 15, 16,
    ];
    const IPPROTO_UDP: u8 = 17;

    /// A frame built header by header.
    struct Frame {
        buf: [u8; HASH_HEADER_BYTES],
        len: usize,
    }

    impl Frame {
        /// An Ethernet header of type `proto`.
        fn eth(proto: u16) -> Self {
            Self {
                buf: [0; HASH_HEADER_BYTES],
                len: 14,
            }
            .at(12, &proto.to_be_bytes())
        }

        fn put(mut self, bytes: &[u8]) -> Self {
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
            self
        }

        /// Overwrites the bytes at `off`.
        fn at(mut self, off: usize, bytes: &[u8]) -> Self {
            self.buf[off..off + bytes.len()].copy_from_slice(bytes);
            self
        }

        fn ipv4(self, proto: u8, src: [u8; 4], dst: [u8; 4]) -> Self {
            let mut h = [0u8; 20];
            h[0] = 0x45;
            h[9] = proto;
            h[12..16].copy_from_slice(&src);
            h[16..20].copy_from_slice(&dst);
            self.put(&h)
        }

        fn ipv6(self, next: u8, src: [u8; 16], dst: [u8; 16]) -> Self {
            let mut h = [0u8; 40];
            h[0] = 0x60;
            h[6] = next;
            h[8..24].copy_from_slice(&src);
            h[24..40].copy_from_slice(&dst);
            self.put(&h)
        }

        /// The first 8 bytes of a TCP or UDP header.
        fn ports(self, src: u16, dst: u16) -> Self {
            self.put(&src.to_be_bytes())
                .put(&dst.to_be_bytes())
                .put(&[0; 4])
        }

        /// A GRE header: flags and version, protocol, then `words` optional 32-bit fields.
        fn gre(self, flags: u16, proto: u16, words: usize) -> Self {
            let mut f = self.put(&flags.to_be_bytes()).put(&proto.to_be_bytes());
            for _ in 0..words {
                f = f.put(&[0xa5; 4]);
            }
            f
        }

        fn bytes(&self) -> &[u8] {
            &self.buf[..self.len]
        }
    }

    fn ms_config() -> HashConfig {
        let mut c = HashConfig::new();
        c.key = MS_KEY;
        c.alg = HashAlgorithm::Toeplitz;
        c.flags = 0xf;
        c
    }

    /// IPv4 and TCP (the first example) inside IPv4 (the second example), protocol 4: the inner
    /// header at 34, its ports at 54.
    fn ipip_tcp() -> Frame {
        Frame::eth(ETH_P_IP)
            .ipv4(IPPROTO_IPIP, OUT_SRC, OUT_DST)
            .ipv4(IPPROTO_TCP, IN_SRC, IN_DST)
            .ports(2794, 1766)
    }

    #[test]
    fn hash_ip_in_ip() {
        let mut c = ms_config();
        // The plain outer and inner flows, for reference.
        let plain = Frame::eth(ETH_P_IP)
            .ipv4(IPPROTO_TCP, OUT_SRC, OUT_DST)
            .ports(14230, 4739);
        assert_eq!(c.hash(plain.bytes()), Some((0xc626b0ea, HashType::Ipv4Tcp)));
        // IPIP: the inner addresses and ports.
        let f = ipip_tcp();
        assert_eq!(c.hash(f.bytes()), Some((0x51ccc178, HashType::Ipv4Tcp)));
        c.flags = HashTypeFlag::Ipv4 as u32;
        assert_eq!(c.hash(f.bytes()), Some((0x323e8fc2, HashType::Ipv4)));
        c.flags = 0xf;
        // The inner header's options are skipped.
        let opts = Frame::eth(ETH_P_IP)
            .ipv4(IPPROTO_IPIP, OUT_SRC, OUT_DST)
            .ipv4(IPPROTO_TCP, IN_SRC, IN_DST)
            .put(&[1; 8])
            .at(34, &[0x47])
            .ports(2794, 1766);
        assert_eq!(c.hash(opts.bytes()), Some((0x51ccc178, HashType::Ipv4Tcp)));
        // Inner UDP: the inner addresses only.
        let udp = Frame::eth(ETH_P_IP)
            .ipv4(IPPROTO_IPIP, OUT_SRC, OUT_DST)
            .ipv4(IPPROTO_UDP, IN_SRC, IN_DST)
            .ports(2794, 1766);
        assert_eq!(c.hash(udp.bytes()), Some((0x323e8fc2, HashType::Ipv4)));
        // An inner fragment: the inner addresses only; an outer one (first or not): the outer
        // addresses, the inner header is not looked at.
        let inner_frag = ipip_tcp().at(34 + 6, &[0x20, 0]);
        assert_eq!(
            c.hash(inner_frag.bytes()),
            Some((0x323e8fc2, HashType::Ipv4))
        );
        for frag_off in [[0x20, 0], [0, 0x10], [0x20, 0x10]] {
            let f = ipip_tcp().at(14 + 6, &frag_off);
            assert_eq!(c.hash(f.bytes()), Some((0xd718262a, HashType::Ipv4)));
        }
        // The inner header cut off: no hash, as C for a packet that ends there; its ports cut
        // off: the inner addresses.
        assert_eq!(c.hash(&f.bytes()[..34 + 19]), None);
        assert_eq!(
            c.hash(&f.bytes()[..34 + 20]),
            Some((0x323e8fc2, HashType::Ipv4))
        );
        // An inner header length below 5 words: no hash.
        let bad = ipip_tcp().at(34, &[0x44]);
        assert_eq!(c.hash(bad.bytes()), None);

        // 6in4: IPv4 format, so (C's union of the addresses) the first 8 bytes of the inner
        // IPv6 source address, and the inner ports.
        let f = Frame::eth(ETH_P_IP)
            .ipv4(IPPROTO_IPV6, OUT_SRC, OUT_DST)
            .ipv6(IPPROTO_TCP, IN6_SRC, IN6_DST)
            .ports(2794, 1766);
        let (kind, input, n) = hash_input(f.bytes(), 0xf).unwrap();
        assert_eq!((kind, n), (HashType::Ipv4Tcp, 12));
        assert_eq!(&input[..8], &IN6_SRC[..8]);
        assert_eq!(&input[8..12], &[0x0a, 0xea, 0x06, 0xe6]);
        // Toeplitz of those 12 bytes, computed outside the kernel.
        assert_eq!(c.hash(f.bytes()), Some((0xad8dc87e, HashType::Ipv4Tcp)));

        // 6in6: the inner IPv6 flow, the specification's value.
        let f = Frame::eth(ETH_P_IPV6)
            .ipv6(IPPROTO_IPV6, OUT6_SRC, OUT6_DST)
            .ipv6(IPPROTO_TCP, IN6_SRC, IN6_DST)
            .ports(2794, 1766);
        assert_eq!(c.hash(f.bytes()), Some((0x40207d3d, HashType::Ipv6Tcp)));
        c.flags = HashTypeFlag::Ipv6 as u32;
        assert_eq!(c.hash(f.bytes()), Some((0x2cc18cd5, HashType::Ipv6)));
        c.flags = 0xf;
        // Through extension headers of the outer one.
        let f = Frame::eth(ETH_P_IPV6)
            .ipv6(NEXTHDR_DEST, OUT6_SRC, OUT6_DST)
            .put(&[IPPROTO_IPV6, 0, 0, 0, 0, 0, 0, 0])
            .ipv6(IPPROTO_TCP, IN6_SRC, IN6_DST)
            .ports(2794, 1766);
        assert_eq!(c.hash(f.bytes()), Some((0x40207d3d, HashType::Ipv6Tcp)));
        // The same 8 bytes as a fragment header (the first fragment): the outer addresses.
        let f = f.at(14 + 6, &[NEXTHDR_FRAGMENT]);
        let (kind, input, n) = hash_input(f.bytes(), 0xf).unwrap();
        assert_eq!((kind, n), (HashType::Ipv6, 32));
        assert_eq!(
            (&input[..16], &input[16..32]),
            (&OUT6_SRC[..], &OUT6_DST[..])
        );

        // 4in6: IPv6 format, the inner IPv4 addresses over the outer IPv6 ones (C's union).
        let f = Frame::eth(ETH_P_IPV6)
            .ipv6(IPPROTO_IPIP, OUT6_SRC, OUT6_DST)
            .ipv4(IPPROTO_TCP, IN_SRC, IN_DST)
            .ports(2794, 1766);
        let (kind, input, n) = hash_input(f.bytes(), 0xf).unwrap();
        assert_eq!((kind, n), (HashType::Ipv6Tcp, 36));
        assert_eq!((&input[..4], &input[4..8]), (&IN_SRC[..], &IN_DST[..]));
        assert_eq!(
            (&input[8..16], &input[16..32]),
            (&OUT6_SRC[8..], &OUT6_DST[..])
        );
        assert_eq!(&input[32..36], &[0x0a, 0xea, 0x06, 0xe6]);

        // Nesting: IPIP in 6in4 in IPIP.
        let f = Frame::eth(ETH_P_IP)
            .ipv4(IPPROTO_IPIP, [10, 0, 0, 1], [10, 0, 0, 2])
            .ipv4(IPPROTO_IPV6, [10, 0, 0, 3], [10, 0, 0, 4])
            .ipv6(IPPROTO_IPIP, OUT6_SRC, OUT6_DST)
            .ipv4(IPPROTO_TCP, IN_SRC, IN_DST)
            .ports(2794, 1766);
        assert_eq!(c.hash(f.bytes()), Some((0x51ccc178, HashType::Ipv4Tcp)));
    }

    #[test]
    fn hash_gre() {
        let c = ms_config();
        // Version 0, no optional field, each of checksum, key, sequence, all three: the inner
        // flow.
        for (flags, words) in [
            (0, 0),
            (GRE_CSUM, 1),
            (GRE_KEY, 1),
            (GRE_SEQ, 1),
            (GRE_CSUM | GRE_KEY | GRE_SEQ, 3),
        ] {
            let f = Frame::eth(ETH_P_IP)
                .ipv4(IPPROTO_GRE, OUT_SRC, OUT_DST)
                .gre(flags, ETH_P_IP, words)
                .put(&ipip_tcp().bytes()[34..]);
            assert_eq!(c.hash(f.bytes()), Some((0x51ccc178, HashType::Ipv4Tcp)));
            // The fields are skipped, not guessed: one word fewer misplaces the inner header.
            if words > 0 {
                let short = Frame::eth(ETH_P_IP)
                    .ipv4(IPPROTO_GRE, OUT_SRC, OUT_DST)
                    .gre(flags, ETH_P_IP, words - 1)
                    .put(&ipip_tcp().bytes()[34..]);
                assert_ne!(c.hash(short.bytes()), Some((0x51ccc178, HashType::Ipv4Tcp)));
            }
        }
        // GRE over IPv6, carrying IPv6.
        let f = Frame::eth(ETH_P_IPV6)
            .ipv6(IPPROTO_GRE, OUT6_SRC, OUT6_DST)
            .gre(GRE_KEY, ETH_P_IPV6, 1)
            .ipv6(IPPROTO_TCP, IN6_SRC, IN6_DST)
            .ports(2794, 1766);
        assert_eq!(c.hash(f.bytes()), Some((0x40207d3d, HashType::Ipv6Tcp)));
        // The key cut off: no hash (C reads it).
        assert_eq!(c.hash(&f.bytes()[..14 + 40 + 7]), None);
        assert_eq!(c.hash(&f.bytes()[..14 + 40 + 3]), None);
        // The routing bit, or a version above 1: not looked into, the outer addresses (no
        // ports: the protocol is GRE).
        for flags in [0x4000, 2, 7] {
            let f = Frame::eth(ETH_P_IP)
                .ipv4(IPPROTO_GRE, OUT_SRC, OUT_DST)
                .gre(flags, ETH_P_IP, 0)
                .ipv4(IPPROTO_TCP, IN_SRC, IN_DST)
                .ports(2794, 1766);
            assert_eq!(c.hash(f.bytes()), Some((0xd718262a, HashType::Ipv4)));
        }
        // A protocol the dissector does not know: no hash; ARP, MPLS: the outer addresses.
        for (proto, want) in [
            (0x1234, None),
            (ETH_P_ARP, Some((0xd718262a, HashType::Ipv4))),
            (ETH_P_MPLS_UC, Some((0xd718262a, HashType::Ipv4))),
        ] {
            let f = Frame::eth(ETH_P_IP)
                .ipv4(IPPROTO_GRE, OUT_SRC, OUT_DST)
                .gre(0, proto, 0)
                .put(&[0; 28]);
            assert_eq!(c.hash(f.bytes()), want);
        }

        // Transparent Ethernet bridging: an Ethernet header, VLAN tags (802.1Q, 802.1ad), IPv4.
        let teb = |tags: &[u16]| {
            let mut f = Frame::eth(ETH_P_IP)
                .ipv4(IPPROTO_GRE, OUT_SRC, OUT_DST)
                .gre(GRE_KEY, ETH_P_TEB, 1)
                .put(&[0x02; 12]);
            for tpid in tags {
                f = f.put(&tpid.to_be_bytes()).put(&[0, 5]);
            }
            f.put(&ETH_P_IP.to_be_bytes())
                .ipv4(IPPROTO_TCP, IN_SRC, IN_DST)
                .ports(2794, 1766)
        };
        assert_eq!(
            c.hash(teb(&[]).bytes()),
            Some((0x51ccc178, HashType::Ipv4Tcp))
        );
        let f = teb(&[ETH_P_8021AD, ETH_P_8021Q]);
        assert_eq!(c.hash(f.bytes()), Some((0x51ccc178, HashType::Ipv4Tcp)));
        // The inner Ethernet header cut off: no hash.
        assert_eq!(c.hash(&f.bytes()[..14 + 20 + 8 + 13]), None);
        // A tag cut off: no hash.
        assert_eq!(c.hash(&f.bytes()[..14 + 20 + 8 + 12 + 7]), None);
        // ARP inside: the outer addresses.
        let arp = Frame::eth(ETH_P_IP)
            .ipv4(IPPROTO_GRE, OUT_SRC, OUT_DST)
            .gre(0, ETH_P_TEB, 0)
            .put(&[0x02; 12])
            .put(&ETH_P_ARP.to_be_bytes())
            .put(&[0; 28]);
        assert_eq!(c.hash(arp.bytes()), Some((0xd718262a, HashType::Ipv4)));

        // The depth limit: GRE and 14 tags are 15 headers after the first, the inner IPv4 one is
        // dissected; with a 15th tag the dissector stops before it: the outer addresses.
        let tags = [ETH_P_8021Q; 15];
        assert_eq!(
            c.hash(teb(&tags[..14]).bytes()),
            Some((0x51ccc178, HashType::Ipv4Tcp))
        );
        assert_eq!(
            c.hash(teb(&tags).bytes()),
            Some((0xd718262a, HashType::Ipv4))
        );
        // A tagged outer frame counts its tag.
        let tagged = |f: Frame| {
            Frame::eth(ETH_P_8021Q)
                .put(&[0, 5])
                .put(&ETH_P_IP.to_be_bytes())
                .put(&f.bytes()[14..])
        };
        let f = tagged(teb(&tags[..13]));
        assert_eq!(c.hash(f.bytes()), Some((0x51ccc178, HashType::Ipv4Tcp)));
        let f = tagged(teb(&tags[..14]));
        assert_eq!(c.hash(f.bytes()), Some((0xd718262a, HashType::Ipv4)));

        // PPTP (version 1, key, sequence, acknowledgement), PPP carrying IPv4.
        let pptp = |flags: u16, proto: u16, ppp: u16| {
            Frame::eth(ETH_P_IP)
                .ipv4(IPPROTO_GRE, OUT_SRC, OUT_DST)
                .gre(flags | 1, proto, 3)
                .put(&[0xff, 0x03])
                .put(&ppp.to_be_bytes())
                .ipv4(IPPROTO_TCP, IN_SRC, IN_DST)
                .ports(2794, 1766)
        };
        let f = pptp(GRE_KEY | GRE_SEQ | GRE_ACK, GRE_PROTO_PPP, PPP_IP);
        assert_eq!(c.hash(f.bytes()), Some((0x51ccc178, HashType::Ipv4Tcp)));
        // Without the key, or not PPP: not looked into.
        let f = pptp(GRE_CSUM | GRE_SEQ | GRE_ACK, GRE_PROTO_PPP, PPP_IP);
        assert_eq!(c.hash(f.bytes()), Some((0xd718262a, HashType::Ipv4)));
        let f = pptp(GRE_KEY | GRE_SEQ | GRE_ACK, ETH_P_IP, PPP_IP);
        assert_eq!(c.hash(f.bytes()), Some((0xd718262a, HashType::Ipv4)));
        // Another PPP protocol (LCP): no hash.
        let f = pptp(GRE_KEY | GRE_SEQ | GRE_ACK, GRE_PROTO_PPP, 0xc021);
        assert_eq!(c.hash(f.bytes()), None);
        // The PPP header cut off: no hash.
        let f = pptp(GRE_KEY | GRE_SEQ | GRE_ACK, GRE_PROTO_PPP, PPP_IP);
        assert_eq!(c.hash(&f.bytes()[..14 + 20 + 16 + 3]), None);
    }

    #[test]
    fn hash_depth_and_window() {
        let c = ms_config();
        // Outer IPv6 extension headers count too: 16 (C walks the 16th, then stops with the
        // protocol it names), then TCP: the ports are read; 17: not.
        let ext = |n: usize| {
            let mut f = Frame::eth(ETH_P_IPV6).ipv6(NEXTHDR_DEST, IN6_SRC, IN6_DST);
            for i in 0..n {
                let next = if i + 1 == n {
                    IPPROTO_TCP
                } else {
                    NEXTHDR_DEST
                };
                f = f.put(&[next, 0, 0, 0, 0, 0, 0, 0]);
            }
            f.ports(2794, 1766)
        };
        assert_eq!(
            c.hash(ext(16).bytes()),
            Some((0x40207d3d, HashType::Ipv6Tcp))
        );
        assert_eq!(c.hash(ext(17).bytes()), Some((0x2cc18cd5, HashType::Ipv6)));
        // An extension header cut off: no hash (C: the dissection fails).
        assert_eq!(c.hash(&ext(2).bytes()[..14 + 40 + 8 + 1]), None);
        // A fragment header cut off: no hash.
        let frag = ext(1).at(14 + 6, &[NEXTHDR_FRAGMENT]);
        assert_eq!(c.hash(&frag.bytes()[..14 + 40 + 7]), None);
        assert_eq!(
            c.hash(&frag.bytes()[..14 + 40 + 8]),
            Some((0x2cc18cd5, HashType::Ipv6))
        );

        // IPIP nested as deep as the window holds: 11 headers, the innermost hashed.
        let mut f = Frame::eth(ETH_P_IP);
        for _ in 0..10 {
            f = f.ipv4(IPPROTO_IPIP, OUT_SRC, OUT_DST);
        }
        let f = f.ipv4(IPPROTO_TCP, IN_SRC, IN_DST).ports(2794, 1766);
        assert_eq!(f.len, 14 + 11 * 20 + 8);
        assert_eq!(c.hash(f.bytes()), Some((0x51ccc178, HashType::Ipv4Tcp)));
        // Headers with options: 9 and the inner one fit in the window, TCP does not: the inner
        // addresses.
        let deep = |n: usize| {
            let mut f = Frame::eth(ETH_P_IP);
            for i in 0..n {
                f = f
                    .ipv4(IPPROTO_IPIP, OUT_SRC, OUT_DST)
                    .put(&[1; 4])
                    .at(14 + i * 24, &[0x46]);
            }
            f
        };
        let f = deep(9).ipv4(IPPROTO_TCP, IN_SRC, IN_DST);
        assert_eq!(f.len, 250);
        assert_eq!(c.hash(f.bytes()), Some((0x323e8fc2, HashType::Ipv4)));
        // With 10, the inner header ends past the window (`HASH_HEADER_BYTES`): no hash.
        let f = deep(10).put(&[0x45, 0]);
        assert_eq!(f.len, HASH_HEADER_BYTES);
        assert_eq!(c.hash(f.bytes()), None);
    }

    #[test]
    fn hash_cache() -> Result {
        let mut c = HashConfig::new();
        c.alg = HashAlgorithm::Toeplitz;
        c.flags = 0xf;
        c.key[0] = 0x6d;
        let f = ipv4_tcp(false);
        let (want, kind) = c.hash(&f).unwrap();
        assert_eq!(kind, HashType::Ipv4Tcp);
        // Size 0: nothing is kept.
        let mut none = HashCache::new(0)?;
        assert_eq!(c.hash_cached(&f, &mut none), Some((want, kind)));
        assert_eq!(none.len(), 0);
        // A miss computes and remembers the hash (of the 12 bytes hashed); a hit returns it
        // without computing: a wrong value planted in the cache is what comes back.
        let mut cache = HashCache::new(2)?;
        assert_eq!(cache.capacity(), 2);
        assert_eq!(c.hash_cached(&f, &mut cache), Some((want, kind)));
        assert_eq!(cache.len(), 1);
        let input = hash_input(&f, 0xf).unwrap();
        assert_eq!(cache.find(&input.1[..input.2]), Some(want));
        cache.flush();
        cache.insert(&input.1[..input.2], 0x1234);
        assert_eq!(c.hash_cached(&f, &mut cache), Some((0x1234, kind)));
        // The same addresses hashed as IPv4 only are another entry (8 bytes).
        c.flags = HashTypeFlag::Ipv4 as u32;
        let v4 = c.hash(&f);
        assert_eq!(v4.map(|(_, k)| k), Some(HashType::Ipv4));
        assert_eq!(c.hash_cached(&f, &mut cache), v4);
        assert_eq!(cache.len(), 2);
        // Full: the least recently used entry goes. Use the 12-byte one, then add a third.
        assert_eq!(cache.find(&input.1[..input.2]), Some(0x1234));
        cache.insert(&[1, 2, 3], 7);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.find(&input.1[..input.2]), Some(0x1234));
        assert_eq!(cache.find(&input.1[..8]), None);
        assert_eq!(cache.find(&[1, 2, 3]), Some(7));
        // A prefix is not a match, nor a longer input.
        assert_eq!(cache.find(&[1, 2]), None);
        assert_eq!(cache.find(&[1, 2, 3, 0]), None);
        // Inputs longer than a tag are not cached.
        cache.insert(&[0u8; HASH_INPUT_MAX + 1], 9);
        assert_eq!(cache.find(&[0u8; HASH_INPUT_MAX + 1]), None);
        // Flush: the next lookup computes again.
        cache.flush();
        assert_eq!(cache.len(), 0);
        c.flags = 0xf;
        assert_eq!(c.hash_cached(&f, &mut cache), Some((want, kind)));
        // The size is bounded.
        assert_eq!(HashCache::new(usize::MAX / 2)?.capacity(), HASH_CACHE_MAX);
        Ok(())
    }

    #[test]
    fn mcast() {
        let mut l = McastList::new();
        let a = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03];
        let b = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x04];
        assert!(!l.contains(&a));
        l.add(a).unwrap();
        l.add(a).unwrap();
        assert!(l.contains(&a) && !l.contains(&b));
        l.del(a);
        assert!(l.contains(&a));
        l.del(a);
        assert!(!l.contains(&a));
        l.del(b);
        for i in 0..MCAST_MAX {
            l.add([1, 0, 0, 0, 0, i as u8]).unwrap();
        }
        assert_eq!(l.add(b), Err(ENOMEM));
        assert_eq!(l.len(), MCAST_MAX);
        l.del([1, 0, 0, 0, 0, 0]);
        assert!(l.contains(&[1, 0, 0, 0, 0, 63]) && !l.contains(&[1, 0, 0, 0, 0, 0]));
        l.clear();
        assert_eq!(l.len(), 0);
    }
}
