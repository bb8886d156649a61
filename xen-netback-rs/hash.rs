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
//! - The hash input: IPv4 options and IPv6 hop-by-hop, routing and destination options headers
//!   are skipped, fragments are hashed on their addresses, as C's flow dissector does; the headers
//!   must lie in the first `HASH_HEADER_BYTES` (256) bytes (C reads as far as needed). One
//!   in-band 802.1Q tag is looked past. C's dissector, called without
//!   `FLOW_DISSECTOR_F_STOP_AT_ENCAP`, hashes the inner addresses of IP-in-IP and GRE packets;
//!   this hashes the outer ones.

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
            Ok(CtrlType::GetHashMappingSize) => {
                (CtrlStatus::Success, MAX_HASH_MAPPING_SIZE as u32)
            }
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

/// `ETH_P_IP`, `ETH_P_IPV6`, `ETH_P_8021Q`.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;
/// IPv6 extension headers the hash input looks past (`NEXTHDR_*`).
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_DEST: u8 = 60;
/// Most IPv6 extension headers walked (the flow dissector's `MAX_FLOW_DISSECT_HDRS`).
const MAX_EXT_HEADERS: usize = 15;

/// The input of the Toeplitz hash for an Ethernet frame: source and destination addresses, then
/// (for the TCP types) source and destination ports, in network order, for the first enabled type
/// in `flags` that applies, the TCP one first (C: `xenvif_set_skb_hash` with the flow dissector).
///
/// IPv6 hop-by-hop, routing and destination options headers are skipped to find the TCP header
/// (within `frame`: the caller passes the first `HASH_HEADER_BYTES` of the packet). IPv4 and IPv6
/// fragments are hashed on their addresses only.
pub(crate) fn hash_input(frame: &[u8], flags: u32) -> Option<(HashType, [u8; 36], usize)> {
    let mut off = 12;
    let mut proto = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
    off += 2;
    if proto == ETH_P_8021Q {
        proto = u16::from_be_bytes([*frame.get(off + 2)?, *frame.get(off + 3)?]);
        off += 4;
    }
    let l3 = frame.get(off..)?;
    let mut out = [0u8; 36];
    let on = |f: HashTypeFlag| flags & f as u32 != 0;
    match proto {
        ETH_P_IP => {
            if !on(HashTypeFlag::Ipv4) && !on(HashTypeFlag::Ipv4Tcp) {
                return None;
            }
            let hdr = l3.get(..20)?;
            if hdr[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(hdr[0] & 0xf) * 4;
            if ihl < 20 {
                return None;
            }
            out[..8].copy_from_slice(&hdr[12..20]);
            let frag = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff != 0;
            if on(HashTypeFlag::Ipv4Tcp) && hdr[9] == IPPROTO_TCP && !frag {
                if let Some(ports) = l3.get(ihl..ihl + 4) {
                    out[8..12].copy_from_slice(ports);
                    return Some((HashType::Ipv4Tcp, out, 12));
                }
            }
            on(HashTypeFlag::Ipv4).then_some((HashType::Ipv4, out, 8))
        }
        ETH_P_IPV6 => {
            if !on(HashTypeFlag::Ipv6) && !on(HashTypeFlag::Ipv6Tcp) {
                return None;
            }
            let hdr = l3.get(..40)?;
            if hdr[0] >> 4 != 6 {
                return None;
            }
            out[..32].copy_from_slice(&hdr[8..40]);
            // The extension headers before the transport header, as the flow dissector walks
            // them (hop-by-hop, routing, destination options; a fragment header ends the walk:
            // no ports for fragments).
            let (mut next, mut l4) = (hdr[6], 40usize);
            let mut frag = false;
            for _ in 0..MAX_EXT_HEADERS {
                match next {
                    NEXTHDR_HOP | NEXTHDR_ROUTING | NEXTHDR_DEST => match l3.get(l4..l4 + 2) {
                        Some(h) => {
                            next = h[0];
                            l4 += (usize::from(h[1]) + 1) * 8;
                        }
                        None => break,
                    },
                    NEXTHDR_FRAGMENT => {
                        frag = true;
                        break;
                    }
                    _ => break,
                }
            }
            if on(HashTypeFlag::Ipv6Tcp) && next == IPPROTO_TCP && !frag {
                if let Some(ports) = l3.get(l4..l4 + 4) {
                    out[32..36].copy_from_slice(ports);
                    return Some((HashType::Ipv6Tcp, out, 36));
                }
            }
            on(HashTypeFlag::Ipv6).then_some((HashType::Ipv6, out, 32))
        }
        _ => None,
    }
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
        assert_eq!(status(&mut c, req(CtrlType::SetHashFlags, [1, 0, 0]), 4, &[]), inval);
        let r = c.process(&req(CtrlType::GetHashFlags, [0; 3]), 4, page(&[]));
        assert_eq!(r.status, CtrlStatus::NotSupported as u32);
        assert_eq!((r.id, r.type_), (7, CtrlType::GetHashFlags as u16));
        assert_eq!(status(&mut c, req(CtrlType::SetHashAlgorithm, [2, 0, 0]), 4, &[]), inval);
        assert_eq!(status(&mut c, req(CtrlType::SetHashAlgorithm, [1, 0, 0]), 4, &[]), ok);
        let r = c.process(&req(CtrlType::GetHashFlags, [0; 3]), 4, page(&[]));
        assert_eq!((r.status, r.data), (ok, 0xf));
        assert_eq!(status(&mut c, req(CtrlType::SetHashFlags, [0x10, 0, 0]), 4, &[]), inval);
        assert_eq!(status(&mut c, req(CtrlType::SetHashFlags, [0xf, 0, 0]), 4, &[]), ok);
        // Mapping size.
        let r = c.process(&req(CtrlType::GetHashMappingSize, [0; 3]), 4, page(&[]));
        assert_eq!((r.status, r.data), (ok, 128));
        assert_eq!(status(&mut c, req(CtrlType::SetHashMappingSize, [129, 0, 0]), 4, &[]), inval);
        assert_eq!(status(&mut c, req(CtrlType::SetHashMappingSize, [64, 0, 0]), 4, &[]), ok);
        // The hostile frontend's cases: wrapping, past the size, huge.
        let mut m = [0u8; 16];
        for (i, q) in [1u32, 2, 3, 0].iter().enumerate() {
            m[i * 4..i * 4 + 4].copy_from_slice(&q.to_ne_bytes());
        }
        for (g, l, o) in [(5, 0xfffffff0, 0x20), (5, 1, 64), (5, 0, 0xffffffff), (5, 0xffffffff, 1)] {
            assert_eq!(status(&mut c, req(CtrlType::SetHashMapping, [g, l, o]), 4, &m), inval);
        }
        assert_eq!(c.mapping, [0; MAX_HASH_MAPPING_SIZE]);
        // A bad gref, an entry beyond the queues: refused, nothing changes.
        assert_eq!(status(&mut c, req(CtrlType::SetHashMapping, [6, 4, 0]), 4, &m), inval);
        assert_eq!(status(&mut c, req(CtrlType::SetHashMapping, [5, 4, 0]), 3, &m), inval);
        assert_eq!(c.mapping, [0; MAX_HASH_MAPPING_SIZE]);
        assert_eq!(status(&mut c, req(CtrlType::SetHashMapping, [5, 4, 60]), 4, &m), ok);
        assert_eq!(&c.mapping[58..64], &[0, 0, 1, 2, 3, 0]);
        assert_eq!(c.queue(61, 4), 2);
        assert_eq!(c.queue(64 + 62, 4), 3);
        // The key: at most 40 bytes, the rest zeroed.
        assert_eq!(status(&mut c, req(CtrlType::SetHashKey, [5, 0x10000, 0]), 4, &[]), inval);
        assert_eq!(status(&mut c, req(CtrlType::SetHashKey, [5, 41, 0]), 4, &[]), inval);
        assert_eq!(status(&mut c, req(CtrlType::SetHashKey, [6, 4, 0]), 4, &[]), inval);
        assert_eq!(status(&mut c, req(CtrlType::SetHashKey, [5, 2, 0]), 4, &[9, 8, 7]), ok);
        assert_eq!(&c.key[..4], &[9, 8, 0, 0]);
        // Unknown operations.
        let r = CtrlRequest { id: 1, type_: 99, data: [0; 3] };
        assert_eq!(c.process(&r, 4, page(&[])).status, CtrlStatus::NotSupported as u32);
        let r = CtrlRequest { id: 1, type_: 0, data: [0; 3] };
        assert_eq!(c.process(&r, 4, page(&[])).status, CtrlStatus::NotSupported as u32);
        // Size 0: modulo the queues.
        assert_eq!(status(&mut c, req(CtrlType::SetHashMappingSize, [0, 0, 0]), 4, &[]), ok);
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
