// SPDX-License-Identifier: GPL-2.0

//! Guest TX: packets from the frontend to dom0 (C: `netback.c`, `xenvif_tx_action`).
//!
//! Each request is copied once from the ring and validated. By default (`tx_mode=0`) the whole
//! packet is then grant-copied into a local buffer: up to [`LINEAR_MAX`] bytes in the linear area
//! (so every header is there), the rest in page fragments, never empty ones; one batch of copies
//! per poll. With `tx_mode=1` ([`crate::zerocopy`]) only the first
//! [`TX_COPY_LEN`](crate::zerocopy::TX_COPY_LEN) bytes are copied and the rest of each request is
//! grant-mapped and attached as a zero-copy fragment, one batch of maps per poll; the responses of
//! mapped requests are deferred until their pages are unmapped.

use crate::{
    interface::Core,
    zerocopy::{
        self,
        TX_COPY_LEN, //
    },
};
use kernel::{
    net::{
        napi::PollContext,
        skb::{
            GsoType as SkbGso,
            SkBuff,
            ZeroCopySkb,
            ETH_HLEN,
            MAX_FRAGS, //
        },
    },
    page::Page,
    prelude::*,
    sync::atomic::{
        Acquire,
        Relaxed, //
    },
    time::{
        Instant,
        Monotonic, //
    },
    xen::{
        grant::{
            CopyBatch,
            GrantRef,
            SlotState, //
        },
        netif::{
            Checksum,
            Extra,
            ExtraInfo,
            Gso,
            GsoType,
            Status,
            TxFlag,
            TxRequest,
            TxResponse,
            TxSlot,
            EXTRA_TYPE_MAX, //
        },
        PAGE_SIZE,
    },
};

/// Most packets handled per poll (bounds the copy batch).
pub(crate) const MAX_PACKETS_PER_POLL: usize = 64;

/// Packets up to this size are copied into the linear area of their buffer; larger ones have
/// their first bytes there (all the headers) and the rest in page fragments.
pub(crate) const LINEAR_MAX: usize = 2048;

/// Most page fragments of a packet: `(MAX_TX_SIZE - LINEAR_MAX) / PAGE_SIZE`, rounded up.
pub(crate) const MAX_PAGES: usize = (0xffff - LINEAR_MAX).div_ceil(PAGE_SIZE);

/// Most requests of a packet that is not fatal: the first and `FATAL_SKB_SLOTS_MAX` follow-on.
const MAX_SLOTS: usize = crate::FATAL_SKB_SLOTS_MAX + 1;

/// Smallest burst the credit scheduler allows: a 64 KiB GSO packet always fits (C: `tx_add_credit`).
pub(crate) const CREDIT_MIN_BURST: u64 = 131072;

/// The credit scheduler of guest TX (the `rate` limit; C: `tx_credit_exceeded`, `tx_add_credit`).
///
/// The frontend may send `bytes` per window of `usec` microseconds. Unused credit carries over up to
/// a window's worth plus one largest packet (at least [`CREDIT_MIN_BURST`]): the C driver keeps at
/// most a window's worth, so the bytes left when the next packet does not fit are lost at each
/// window (up to 10 % of a 100 Mbit/s limit with 64 KiB packets); here the average rate is the
/// limit. Times are microseconds on any monotonic clock.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Credit {
    bytes: u64,
    usec: u64,
    remaining: u64,
    window_start: u64,
}

impl Credit {
    /// No limit.
    pub(crate) const UNLIMITED: Self = Self {
        bytes: u64::MAX,
        usec: 0,
        remaining: u64::MAX,
        window_start: 0,
    };

    /// A limit of `bytes` per `usec` microseconds (`u64::MAX` bytes or 0 µs: no limit); the
    /// first window starts at `now` with a full window's credit.
    pub(crate) fn new(bytes: u64, usec: u64, now: u64) -> Self {
        if bytes == u64::MAX || usec == 0 {
            return Self::UNLIMITED;
        }
        Self {
            bytes,
            usec,
            remaining: bytes,
            window_start: now,
        }
    }

    /// Changes the limit (the `rate` node changed), keeping at most a window's credit.
    pub(crate) fn set(&mut self, bytes: u64, usec: u64, now: u64) {
        if self.is_unlimited() {
            *self = Self::new(bytes, usec, now);
            return;
        }
        let remaining = self.remaining.min(bytes);
        *self = Self::new(bytes, usec, now);
        if !self.is_unlimited() {
            self.remaining = remaining;
        }
    }

    pub(crate) fn is_unlimited(&self) -> bool {
        self.usec == 0
    }

    /// Bytes per window, window (µs), credit left: for debugfs.
    pub(crate) fn describe(&self) -> (u64, u64, u64) {
        (self.bytes, self.usec, self.remaining)
    }

    fn refill(&mut self) {
        let max_burst = self
            .bytes
            .saturating_add(u64::from(kernel::xen::netif::MAX_TX_SIZE))
            .max(CREDIT_MIN_BURST);
        self.remaining = self.remaining.saturating_add(self.bytes).min(max_burst);
    }

    /// Charges a packet of `size` bytes at time `now`: `Ok` if it may go now, else `Err` with the
    /// number of microseconds to wait before asking again.
    pub(crate) fn take(&mut self, size: u64, now: u64) -> Result<(), u64> {
        if self.is_unlimited() {
            return Ok(());
        }
        if size > self.remaining {
            let next = self.window_start.saturating_add(self.usec);
            if now < next {
                return Err(next - now);
            }
            // A new window: it starts where the last one ended, so that late wake-ups do not
            // lower the rate, unless the queue was idle for more than a window.
            self.window_start = if now - next < self.usec { next } else { now };
            self.refill();
            if size > self.remaining {
                return Err(self.usec);
            }
        }
        self.remaining -= size;
        Ok(())
    }
}

/// A packet read from the TX ring, validated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Packet {
    /// The data requests; `reqs[0].size` is the total length.
    pub(crate) reqs: [TxRequest; MAX_SLOTS],
    pub(crate) nr_reqs: usize,
    /// Number of extra-info slots after the first request.
    pub(crate) nr_extras: usize,
    pub(crate) gso: Option<Gso>,
    /// Bytes of data in the first slot.
    pub(crate) first_len: usize,
    /// Response status if the packet is not delivered (dropped at validation).
    pub(crate) drop: Option<Status>,
    /// Bytes of the packet in the linear area of its buffer.
    pub(crate) lin_len: usize,
    /// Pages holding the rest, in the poll's page array from `pages_start`.
    pub(crate) pages_start: usize,
    pub(crate) nr_pages: usize,
    /// Map mode: the first [`Packet::lin_len`] bytes are copied, the rest of each request is
    /// mapped at the slot in [`Packet::slots`].
    pub(crate) map: bool,
    /// Map mode: the slot each request's rest is mapped at ([`NO_SLOT`]: none) ...
    pub(crate) slots: [u16; MAX_SLOTS],
    /// ... and the index of its map operation.
    pub(crate) map_ops: [u16; MAX_SLOTS],
    /// A multicast filter update (`MCAST_ADD`/`MCAST_DEL` extra): the request carries no packet.
    pub(crate) mcast: Option<Extra>,
}

/// No slot: the request's data was all copied (or it carries none).
pub(crate) const NO_SLOT: u16 = u16::MAX;

impl Packet {
    /// Map mode: the number of bytes to copy into the linear area so that the rest of the packet
    /// fits in the fragments of one buffer: [`TX_COPY_LEN`], or more whole requests when there
    /// are more pieces than [`MAX_FRAGS`] (the C driver chains a second buffer instead). `None`
    /// if the packet is better copied whole (small, or that would copy more than a page).
    pub(crate) fn map_lin_len(&self) -> Option<usize> {
        let total = usize::from(self.reqs[0].size);
        if total <= TX_COPY_LEN {
            return None;
        }
        let mut probe = *self;
        probe.lin_len = TX_COPY_LEN;
        let mut end = 0usize;
        let mut r = 0;
        while probe.mapped_pieces().count() > MAX_FRAGS {
            // Copy one more whole request.
            let len = if r == 0 {
                self.first_len
            } else {
                usize::from(self.reqs.get(r)?.size)
            };
            end += len;
            r += 1;
            probe.lin_len = end.max(TX_COPY_LEN);
            if probe.lin_len > PAGE_SIZE + TX_COPY_LEN || r > self.nr_reqs {
                return None;
            }
        }
        Some(probe.lin_len)
    }

    /// Map mode: the piece of each request that is not copied into the linear area, as
    /// (request index, offset in its page, length), for non-empty pieces only (XSA-448).
    fn mapped_pieces(&self) -> impl Iterator<Item = (usize, u16, usize)> + '_ {
        let lin = self.lin_len;
        let mut pos = 0usize;
        self.reqs[..self.nr_reqs]
            .iter()
            .enumerate()
            .filter_map(move |(r, req)| {
                let len = if r == 0 {
                    self.first_len
                } else {
                    usize::from(req.size)
                };
                let copied = len.min(lin.saturating_sub(pos));
                pos += len;
                let rest = len - copied;
                (rest > 0).then(|| (r, req.offset + copied as u16, rest))
            })
    }
}

/// Why reading the TX ring must stop: the frontend broke the protocol. Displayed with the
/// wording of the C driver's log lines, which tools look for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fatal {
    /// The producer index is behind the consumer index or too far ahead of it.
    Impossible { prod: u32, cons: u32 },
    /// The first request announces an extra that is not there.
    MissingExtra,
    /// An extra of an unknown type (or of type none).
    InvalidExtraType(u8),
    /// A chain of more extras than there are types.
    TooManyExtras,
    /// A GSO extra with a size of 0.
    GsoSizeZero,
    /// A GSO extra of an unknown type.
    BadGsoType(u8),
    /// A packet using `fatal_skb_slots` slots or more.
    TooManySlots(usize),
    /// A packet whose chain of requests runs past the producer index.
    SlotsBeyondProducer(usize),
    /// A request whose data crosses a page boundary.
    CrossPage { offset: u16, size: usize },
}

impl kernel::fmt::Display for Fatal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::Impossible { prod, cons } => write!(
                f,
                "Impossible number of requests. req_prod {prod}, req_cons {cons}, size {}",
                kernel::xen::netif::TX_RING_SIZE
            ),
            Self::MissingExtra => write!(f, "Missing extra info"),
            Self::InvalidExtraType(t) => write!(f, "Invalid extra type: {t}"),
            Self::TooManyExtras => write!(f, "Too many extra info slots"),
            Self::GsoSizeZero => write!(f, "GSO size must not be zero."),
            Self::BadGsoType(t) => write!(f, "Bad GSO type {t}."),
            Self::TooManySlots(n) => write!(
                f,
                "Malicious frontend using {n} slots, threshold {}",
                crate::fatal_skb_slots()
            ),
            Self::SlotsBeyondProducer(n) => {
                write!(f, "Asked for {n} slots but exceeds this limit")
            }
            Self::CrossPage { offset, size } => write!(
                f,
                "Cross page boundary, txreq.offset: {offset}, size: {size}"
            ),
        }
    }
}

/// Checks an extra-info slot and returns its GSO content, if it is a GSO extra (C:
/// `xenvif_get_extras`, `xenvif_set_skb_gso`).
pub(crate) fn check_extra(extra: &ExtraInfo) -> Result<Option<Gso>, Fatal> {
    let t = extra.type_;
    if t == 0 || t >= EXTRA_TYPE_MAX {
        return Err(Fatal::InvalidExtraType(t));
    }
    if t != 1 {
        // No multicast control, hash or XDP on the TX ring: ignored.
        return Ok(None);
    }
    let size = u16::from_ne_bytes([extra.data[0], extra.data[1]]);
    if size == 0 {
        return Err(Fatal::GsoSizeZero);
    }
    let kind = GsoType::try_from(extra.data[2]).map_err(|_| Fatal::BadGsoType(extra.data[2]))?;
    Gso::new(size, kind)
        .map(Some)
        .map_err(|_| Fatal::GsoSizeZero)
}

/// Reads one packet from `slots`, given its first request (C: `xenvif_tx_build_gops`,
/// `xenvif_get_extras`, `xenvif_count_requests`).
///
/// Returns [`Fatal`] for what the C driver treats as fatal; a packet that is only dropped has
/// [`Packet::drop`] set. Every request is read once, from `slots`.
pub(crate) fn read_packet(
    first: TxRequest,
    slots: &mut impl Iterator<Item = TxSlot>,
    fatal_slots: usize,
) -> Result<Packet, Fatal> {
    let mut pkt = Packet {
        reqs: [TxRequest::default(); MAX_SLOTS],
        nr_reqs: 1,
        nr_extras: 0,
        gso: None,
        first_len: 0,
        drop: None,
        lin_len: 0,
        pages_start: 0,
        nr_pages: 0,
        map: false,
        slots: [NO_SLOT; MAX_SLOTS],
        map_ops: [0; MAX_SLOTS],
        mcast: None,
    };
    pkt.reqs[0] = first;

    if first.flags.contains(TxFlag::ExtraInfo) {
        loop {
            let slot = slots.next().ok_or(Fatal::MissingExtra)?;
            pkt.nr_extras += 1;
            if pkt.nr_extras >= usize::from(EXTRA_TYPE_MAX) {
                return Err(Fatal::TooManyExtras);
            }
            let extra = slot.extra();
            if let Some(gso) = check_extra(&extra)? {
                pkt.gso = Some(gso);
            }
            match extra.type_ {
                2 => pkt.mcast = Some(Extra::McastAdd(extra.data)),
                3 if !matches!(pkt.mcast, Some(Extra::McastAdd(_))) => {
                    pkt.mcast = Some(Extra::McastDel(extra.data))
                }
                _ => {}
            }
            if !extra.more() {
                break;
            }
        }
    }
    if pkt.mcast.is_some() {
        // As C: answered on its own, the requests after it are not part of it.
        return Ok(pkt);
    }

    // As the C driver counts: the follow-on requests, after the first.
    let fatal_slots = fatal_slots.clamp(crate::LEGACY_SLOTS_MAX, crate::FATAL_SKB_SLOTS_MAX);
    let total = usize::from(first.size);
    let mut more = first.flags.contains(TxFlag::MoreData);
    let mut follow_len: usize = 0;
    let mut drop = false;
    while more {
        let follow = pkt.nr_reqs - 1;
        let Some(slot) = slots.next() else {
            return Err(Fatal::SlotsBeyondProducer(follow + 1));
        };
        if follow >= fatal_slots {
            return Err(Fatal::TooManySlots(follow));
        }
        if follow >= crate::LEGACY_SLOTS_MAX {
            // "Too many slots": dropped.
            drop = true;
        }
        let req = slot.request();
        if !drop && follow_len + usize::from(req.size) > total {
            // "Invalid tx request, slot size > remaining size": dropped.
            drop = true;
        }
        follow_len += usize::from(req.size);
        if usize::from(req.offset) + usize::from(req.size) > PAGE_SIZE {
            return Err(Fatal::CrossPage {
                offset: req.offset,
                size: usize::from(req.size),
            });
        }
        more = req.flags.contains(TxFlag::MoreData);
        // Kept (for the id of its response) even when the packet is dropped: the array has
        // room for `FATAL_SKB_SLOTS_MAX` follow-on requests.
        pkt.reqs[pkt.nr_reqs] = req;
        pkt.nr_reqs += 1;
    }

    if drop {
        pkt.drop = Some(Status::Error);
        return Ok(pkt);
    }
    pkt.first_len = total - follow_len;
    if total < ETH_HLEN as usize {
        // "Bad packet size".
        pkt.drop = Some(Status::Error);
        return Ok(pkt);
    }
    if usize::from(first.offset) + pkt.first_len > PAGE_SIZE {
        return Err(Fatal::CrossPage {
            offset: first.offset,
            size: pkt.first_len,
        });
    }
    Ok(pkt)
}

/// Pushes the responses of `pkt` (the first request, a null one per extra, then the others).
fn respond(
    ring: &mut kernel::xen::netif::TxBackRing<kernel::xen::grant::MappedRing>,
    pkt: &Packet,
    status: Status,
) {
    let _ = ring.push_response(TxResponse {
        id: pkt.reqs[0].id,
        status: status as i16,
    });
    for _ in 0..pkt.nr_extras {
        let _ = ring.push_response(TxResponse {
            id: 0,
            status: Status::Null as i16,
        });
    }
    for req in &pkt.reqs[1..pkt.nr_reqs] {
        let _ = ring.push_response(TxResponse {
            id: req.id,
            status: status as i16,
        });
    }
}

/// Adds the copies of `pkt` to `batch`: the first [`Packet::lin_len`] bytes into `lin`, the rest
/// into `pages`, packed. Returns the number of operations.
fn add_copies<'a>(
    batch: &mut CopyBatch<'a>,
    core: &Core,
    pkt: &Packet,
    lin: &'a mut [u8],
    pages: &'a [Page],
) -> Result<usize> {
    let lin_len = lin.len();
    let mut lin_rest = lin;
    let mut pos = 0usize;
    let mut ops = 0;
    for (i, req) in pkt.reqs[..pkt.nr_reqs].iter().enumerate() {
        let mut left = if i == 0 {
            pkt.first_len
        } else {
            usize::from(req.size)
        };
        let mut offset = req.offset;
        let gref = GrantRef(req.gref);
        if pkt.map {
            // Only the linear area is copied; the rest is mapped.
            left = left.min(lin_len.saturating_sub(pos));
        }
        while left > 0 {
            let n = if pos < lin_len {
                // Local side: never across a page.
                let room = PAGE_SIZE - (lin_rest.as_ptr() as usize % PAGE_SIZE);
                let n = left.min(lin_rest.len()).min(room);
                let (a, b) = core::mem::take(&mut lin_rest).split_at_mut(n);
                lin_rest = b;
                batch.copy_from_peer(core.domid, gref, offset, a)?;
                n
            } else {
                let p = pos - lin_len;
                let page = pages.get(p / PAGE_SIZE).ok_or(EINVAL)?;
                let poff = p % PAGE_SIZE;
                let n = left.min(PAGE_SIZE - poff);
                batch.copy_from_peer_to_page(core.domid, gref, offset, page, poff as u16, n)?;
                n
            };
            ops += 1;
            pos += n;
            left -= n;
            offset += n as u16;
        }
    }
    Ok(ops)
}

/// Hands a copied packet to the stack (C: `xenvif_tx_submit`).
fn deliver(
    ctx: &PollContext<'_, Core>,
    core: &Core,
    pkt: &Packet,
    mut skb: SkBuff,
    pages: &mut impl Iterator<Item = Page>,
) {
    let dev = ctx.device();
    let mut rest = usize::from(pkt.reqs[0].size).saturating_sub(pkt.lin_len);
    let mut frags_ok = true;
    for _ in 0..pkt.nr_pages {
        let Some(page) = pages.next() else {
            frags_ok = false;
            break;
        };
        let size = rest.min(PAGE_SIZE);
        rest -= size;
        if frags_ok
            && (size == 0
                || skb
                    .add_rx_frag(page, 0, size as u32, PAGE_SIZE as u32)
                    .is_err())
        {
            frags_ok = false;
        }
    }
    if !frags_ok || rest != 0 {
        core.from_guest.errors.inc();
        return;
    }
    let flags = pkt.reqs[0].flags;
    if skb.eth_type_trans(dev).is_err() {
        core.from_guest.errors.inc();
        return;
    }
    skb.reset_network_header();
    let csum = flags.checksum();
    let ok = match (csum, pkt.gso) {
        (Checksum::Partial, _) => skb.checksum_setup(false).is_ok(),
        (_, Some(_)) => {
            // A GSO packet must have a partial checksum: fix it up (C: `checksum_setup`).
            core.gso_checksum_fixup.inc();
            skb.checksum_setup(true).is_ok()
        }
        (Checksum::Unnecessary, None) => {
            let _ = skb.set_ip_summed(kernel::net::skb::Checksum::Unnecessary);
            true
        }
        (Checksum::None, None) => true,
    };
    if !ok {
        core.from_guest.errors.inc();
        return;
    }
    if let Some(gso) = pkt.gso {
        let kind = match gso.type_() {
            GsoType::TcpV4 => SkbGso::TCPV4,
            GsoType::TcpV6 => SkbGso::TCPV6,
            #[allow(unreachable_patterns)]
            _ => {
                core.from_guest.errors.inc();
                return;
            }
        };
        skb.set_gso(gso.size(), kind | SkbGso::DODGY);
    }
    core.from_guest.packet(skb.len() + ETH_HLEN);
    skb.netif_receive();
}

/// Map mode: pushes the responses of the requests of a delivered packet whose data was all
/// copied; the others are answered when their slot is unmapped.
fn respond_copied(
    ring: &mut kernel::xen::netif::TxBackRing<kernel::xen::grant::MappedRing>,
    pkt: &Packet,
) {
    for (r, req) in pkt.reqs[..pkt.nr_reqs].iter().enumerate() {
        if pkt.slots[r] != NO_SLOT {
            continue;
        }
        let _ = ring.push_response(TxResponse {
            id: req.id,
            status: Status::Okay as i16,
        });
        if r == 0 {
            for _ in 0..pkt.nr_extras {
                let _ = ring.push_response(TxResponse {
                    id: 0,
                    status: Status::Null as i16,
                });
            }
        }
    }
}

/// The NAPI poll of a queue: handles up to `budget` packets of the TX ring.
pub(crate) fn poll(ctx: &PollContext<'_, Core>, budget: u32) -> u32 {
    let core: &Core = ctx;
    if budget == 0 {
        // netpoll (netconsole on the bridge), interrupts disabled: guest TX waits for the next
        // real poll (C's poll does no work with budget 0 either).
        return 0;
    }
    if core.is_disabled() {
        ctx.complete_done(0);
        return 0;
    }
    let limit = (budget as usize).min(MAX_PACKETS_PER_POLL);
    let fatal_slots = crate::fatal_skb_slots();

    let mut tx = core.tx.lock();
    let mut pkts = core::mem::take(&mut tx.pkts);
    pkts.clear();

    // Map mode: unmap what the stack gave back and answer it first (C: the dealloc thread).
    let mut answered = 0;
    let pool = {
        let st = &mut *tx;
        match st.map.as_mut() {
            Some(ms) => {
                answered = zerocopy::dealloc(&mut st.ring, ms, true);
                Some((ms.pool.clone(), ms.shared.clone()))
            }
            None => None,
        }
    };

    // The `rate` limit: pick up a change, read the clock.
    let now = (Instant::<Monotonic>::now() - tx.clock_base)
        .as_nanos()
        .max(0) as u64
        / 1000;
    let gen = core.shared.rate_gen.load(Acquire);
    if gen != tx.rate_gen {
        tx.rate_gen = gen;
        let bytes = core.shared.rate_bytes.load(Relaxed);
        let usec = core.shared.rate_usec.load(Relaxed);
        tx.credit.set(bytes, usec, now);
    }

    // 1. Read and validate the requests of up to `limit` packets; a packet beyond the credit
    // is held until the credit is back (C: `tx_credit_exceeded`). In map mode, stop while fewer
    // slots are free than a packet may need (C: `nr_pending_reqs`): the completions poll again.
    let mut fatal = None;
    let mut limited = None;
    let mut short = false;
    let st = &mut *tx;
    let free_slots = st.map.as_ref().map(|m| m.nr_free());
    let mut reserved = 0usize;
    match st.ring.requests() {
        Err(e) => {
            fatal = Some(Fatal::Impossible {
                prod: e.prod,
                cons: e.cons,
            })
        }
        Ok(mut reqs) => {
            while pkts.len() < limit {
                if free_slots.is_some_and(|free| free < reserved + MAX_SLOTS) {
                    short = true;
                    break;
                }
                // The packet held back by the credit goes first, then the ring's.
                let pkt = match st.held.take() {
                    Some(pkt) => pkt,
                    None => {
                        let Some(first) = reqs.next() else { break };
                        match read_packet(first.request(), &mut reqs, fatal_slots) {
                            Ok(mut pkt) if pkt.mcast.is_some() => {
                                pkt.drop = Some(crate::interface::apply_mcast(
                                    ctx.device(),
                                    &core.shared,
                                    pkt.mcast,
                                ));
                                let _ = pkts.push(pkt, GFP_ATOMIC);
                                continue;
                            }
                            Ok(pkt) => pkt,
                            Err(why) => {
                                fatal = Some(why);
                                break;
                            }
                        }
                    }
                };
                match st.credit.take(u64::from(pkt.reqs[0].size), now) {
                    Ok(()) => {
                        reserved += pkt.nr_reqs;
                        let _ = pkts.push(pkt, GFP_ATOMIC);
                    }
                    Err(wait) => {
                        st.held = Some(pkt);
                        limited = Some(wait);
                        break;
                    }
                }
            }
        }
    }
    if let Some(what) = fatal {
        tx.pkts = pkts;
        drop(tx);
        core.fatal(ctx.device(), fmt!("{what}"));
        ctx.complete_done(0);
        return 0;
    }

    // 2. Buffers for the packets to deliver.
    // Room for one per packet was reserved when the queue was created.
    let map_mode = pool.is_some();
    let mut skbs = core::mem::take(&mut tx.skbs);
    skbs.clear();
    let mut pages = core::mem::take(&mut tx.pages);
    pages.clear();
    for pkt in pkts.iter_mut() {
        let mut skb = None;
        pkt.pages_start = pages.len();
        pkt.nr_pages = 0;
        if pkt.drop.is_none() {
            let total = usize::from(pkt.reqs[0].size);
            // Map mode: headers copied, the rest mapped (see `Packet::map_lin_len`).
            let map_lin = if map_mode { pkt.map_lin_len() } else { None };
            pkt.map = map_lin.is_some();
            pkt.lin_len = map_lin.unwrap_or(total.min(LINEAR_MAX));
            let want = if pkt.map {
                0
            } else {
                (total - pkt.lin_len).div_ceil(PAGE_SIZE)
            };
            if let Ok(mut s) = ctx.alloc_skb(pkt.lin_len as u32) {
                if s.put_zero(pkt.lin_len as u32).is_ok() {
                    skb = Some(s);
                }
            }
            while skb.is_some() && pkt.nr_pages < want {
                let pushed = match Page::alloc_page(GFP_ATOMIC) {
                    Ok(page) => pages.push(page, GFP_ATOMIC).is_ok(),
                    Err(_) => false,
                };
                if pushed {
                    pkt.nr_pages += 1;
                } else {
                    skb = None;
                }
            }
            if skb.is_none() {
                pkt.drop = Some(Status::Dropped);
            }
        }
        if skbs.push(skb, GFP_ATOMIC).is_err() {
            // Cannot happen (capacity reserved); keep both arrays aligned anyway.
            pkt.drop = Some(Status::Dropped);
            let _ = skbs.push(None, GFP_ATOMIC);
        }
    }

    // 3. One batch of copies for all of them, and one batch of maps (map mode).
    let mut ranges: [(usize, usize); MAX_PACKETS_PER_POLL] = [(0, 0); MAX_PACKETS_PER_POLL];
    {
        let nr_ops: usize = pkts.iter().map(|p| p.nr_reqs * 3 + 2).sum();
        let all_pages: &[Page] = &pages;
        let mut batch = match CopyBatch::with_capacity(nr_ops, GFP_ATOMIC) {
            Ok(b) => b,
            Err(_) => CopyBatch::new(),
        };
        for (i, (pkt, skb)) in pkts.iter_mut().zip(skbs.iter_mut()).enumerate() {
            let Some(skb) = skb.as_mut() else { continue };
            let start = batch.len();
            let my_pages = all_pages
                .get(pkt.pages_start..pkt.pages_start + pkt.nr_pages)
                .unwrap_or(&[]);
            let added = match skb.data_mut() {
                Ok(data) => add_copies(&mut batch, core, pkt, data, my_pages),
                Err(e) => Err(e),
            };
            match added {
                Ok(n) => ranges[i] = (start, start + n),
                Err(_) => pkt.drop = Some(Status::Error),
            }
        }
        if let Some(ms) = tx.map.as_mut() {
            map_packets(core, ms, &mut pkts);
        }
        batch.submit();
        for (i, pkt) in pkts.iter_mut().enumerate() {
            if pkt.drop.is_some() {
                continue;
            }
            let (start, end) = ranges[i];
            if (start..end).any(|op| batch.status(op).is_err()) {
                pkt.drop = Some(Status::Error);
            }
        }
    }

    // 4. Responses, in ring order; in map mode, a dropped packet's mapped slots are unmapped
    // first, and the mapped requests of a delivered one are answered later.
    {
        let st = &mut *tx;
        for pkt in pkts.iter_mut() {
            if pkt.map {
                if let Some(ms) = st.map.as_mut() {
                    if pkt.drop.is_some() {
                        let mut slots = [0u16; MAX_SLOTS];
                        let mut n = 0;
                        for s in pkt.slots[..pkt.nr_reqs].iter_mut() {
                            if *s != NO_SLOT {
                                slots[n] = *s;
                                n += 1;
                                *s = NO_SLOT;
                            }
                        }
                        zerocopy::unmap_and_answer(&mut st.ring, ms, &slots[..n], false);
                    } else {
                        for (r, req) in pkt.reqs[..pkt.nr_reqs].iter().enumerate() {
                            let slot = usize::from(pkt.slots[r]);
                            if let Some(p) = ms.pending.get_mut(slot) {
                                *p = zerocopy::Pending {
                                    id: req.id,
                                    extras: if r == 0 { pkt.nr_extras as u8 } else { 0 },
                                    error: false,
                                };
                            }
                        }
                        respond_copied(&mut st.ring, pkt);
                        continue;
                    }
                }
            }
            respond(&mut st.ring, pkt, pkt.drop.unwrap_or(Status::Okay));
        }
    }
    let notify = tx.ring.push_responses_and_check_notify();
    drop(tx);
    let pkts = pkts;
    if notify {
        core.notify_tx();
    }

    // 5. Deliver.
    let work = pkts.len() as u32;
    let mut orphans: [u16; MAX_SLOTS] = [NO_SLOT; MAX_SLOTS];
    let mut nr_orphans = 0;
    {
        let mut page_iter = pages.drain_all();
        for (pkt, skb) in pkts.iter().zip(skbs.drain_all()) {
            match (pkt.drop, skb, pool.as_ref()) {
                (None, Some(skb), Some((pool, shared))) if pkt.map => {
                    let Ok(mut z) = ZeroCopySkb::new(skb, pool).map_err(|(skb, _)| drop(skb))
                    else {
                        core.from_guest.errors.inc();
                        continue;
                    };
                    let mut ok = true;
                    for (r, offset, len) in pkt.mapped_pieces() {
                        let slot = pkt.slots[r];
                        if !ok
                            || z.add_frag(usize::from(slot), u32::from(offset), len as u32)
                                .is_err()
                        {
                            // Cannot happen (validated pieces, mapped slots): the slots not
                            // lent are unmapped below.
                            ok = false;
                            if nr_orphans < MAX_SLOTS {
                                orphans[nr_orphans] = slot;
                                nr_orphans += 1;
                            }
                        }
                    }
                    if !ok {
                        core.from_guest.errors.inc();
                        drop(z);
                        continue;
                    }
                    let skb = z.finish();
                    shared.sent.inc();
                    let mut whole = *pkt;
                    whole.lin_len = usize::from(pkt.reqs[0].size);
                    whole.nr_pages = 0;
                    deliver(ctx, core, &whole, skb, &mut core::iter::empty());
                }
                (None, Some(skb), _) => deliver(ctx, core, pkt, skb, &mut page_iter),
                (status, skb, _) => {
                    for _ in 0..pkt.nr_pages {
                        drop(page_iter.next());
                    }
                    if status == Some(Status::Okay) {
                        // A multicast filter update.
                    } else if status == Some(Status::Dropped) {
                        core.from_guest.dropped.inc();
                    } else {
                        core.from_guest.errors.inc();
                    }
                    drop(skb);
                }
            }
        }
    }

    // Keep the arrays for the next poll.
    {
        let mut tx = core.tx.lock();
        tx.pkts = pkts;
        tx.skbs = skbs;
        tx.pages = pages;
        tx.work_since_eoi = tx.work_since_eoi.saturating_add(work);
        if nr_orphans != 0 {
            let st = &mut *tx;
            if let Some(ms) = st.map.as_mut() {
                for &slot in &orphans[..nr_orphans] {
                    if let Some(p) = ms.pending.get_mut(usize::from(slot)) {
                        p.error = true;
                    }
                }
                zerocopy::unmap_and_answer(&mut st.ring, ms, &orphans[..nr_orphans], true);
                if st.ring.push_responses_and_check_notify() {
                    drop(tx);
                    core.notify_tx();
                }
            }
        }
    }
    let work = work.max(u32::from(answered != 0)).min(budget);

    if short {
        // Polled again by the completions of the buffers holding the slots.
        if work < budget {
            ctx.complete_done(work);
        }
        return work;
    }
    if let Some(wait) = limited {
        // Polled again when the credit is back; the frontend's notifications are not needed
        // meanwhile (C: `rate_limited`).
        let me = core.me.lock().clone();
        if work < budget {
            ctx.complete_done(work);
        }
        if let Some(queue) = me {
            queue.credit_later(wait);
        }
        return work;
    }
    if work < budget && ctx.complete_done(work) {
        let more = match core.tx.lock().ring.final_check_for_requests() {
            Ok(more) => more,
            Err(e) => {
                let why = Fatal::Impossible {
                    prod: e.prod,
                    cons: e.cons,
                };
                core.fatal(ctx.device(), fmt!("{why}"));
                false
            }
        };
        if more {
            ctx.napi().schedule();
        } else {
            let spurious = {
                let mut tx = core.tx.lock();
                core::mem::take(&mut tx.work_since_eoi) == 0
            };
            core.eoi_tx(spurious);
        }
    }
    work
}

/// Map mode: takes a slot for each piece of each map-mode packet that is not copied, and maps
/// the frontend's pages there in one batch (C: `xenvif_tx_create_map_op`, `gnttab_map_refs`).
/// A packet whose maps fail is dropped; its slots are unmapped when it is answered.
fn map_packets(core: &Core, ms: &mut zerocopy::MapState, pkts: &mut [Packet]) {
    let zerocopy::MapState { pool, free, .. } = ms;
    let pages = &pool.pages().pages;
    let nr: usize = pkts.iter().filter(|p| p.map).map(|p| p.nr_reqs).sum();
    if nr == 0 {
        return;
    }
    let Ok(mut batch) = pages.map_batch(nr, GFP_ATOMIC) else {
        for pkt in pkts.iter_mut().filter(|p| p.map) {
            pkt.drop.get_or_insert(Status::Dropped);
        }
        return;
    };
    for pkt in pkts.iter_mut() {
        if !pkt.map || pkt.drop.is_some() {
            continue;
        }
        let mut pieces = [(0usize, 0u16, 0usize); MAX_SLOTS];
        let mut n = 0;
        for piece in pkt.mapped_pieces() {
            pieces[n] = piece;
            n += 1;
        }
        for &(r, _, _) in &pieces[..n] {
            let Some(slot) = free.pop() else {
                pkt.drop = Some(Status::Dropped);
                break;
            };
            match batch.add(usize::from(slot), core.domid, GrantRef(pkt.reqs[r].gref)) {
                Ok(op) => {
                    pkt.slots[r] = slot;
                    pkt.map_ops[r] = op as u16;
                }
                Err(_) => {
                    let _ = free.push(slot, GFP_ATOMIC);
                    pkt.drop = Some(Status::Dropped);
                    break;
                }
            }
        }
    }
    batch.submit();
    for pkt in pkts.iter_mut().filter(|p| p.map) {
        for r in 0..pkt.nr_reqs {
            let slot = pkt.slots[r];
            if slot == NO_SLOT {
                continue;
            }
            if batch.status(usize::from(pkt.map_ops[r])).is_err() {
                pkt.drop = Some(Status::Error);
                if pages.state(usize::from(slot)) == Some(SlotState::Free) {
                    // Nothing mapped: the slot is free again at once.
                    let _ = free.push(slot, GFP_ATOMIC);
                    pkt.slots[r] = NO_SLOT;
                }
            }
        }
    }
}

#[kunit_tests(xen_netback_rs_tx)]
mod tests {
    use super::*;
    use kernel::xen::netif::TxFlags;

    fn slot(size: u16, offset: u16, more: bool, id: u16) -> TxSlot {
        let mut flags = TxFlags::empty();
        if more {
            flags |= TxFlag::MoreData;
        }
        TxSlot::from(TxRequest {
            gref: 8,
            offset,
            flags,
            id,
            size,
        })
    }

    /// A packet of `n` slots of 100 bytes each (first slot carries the total).
    fn packet(n: usize) -> KVec<TxSlot> {
        let mut v = KVec::new();
        for i in 0..n {
            let size = if i == 0 { (100 * n) as u16 } else { 100 };
            v.push(slot(size, 0, i + 1 < n, i as u16), GFP_KERNEL)
                .unwrap();
        }
        v
    }

    fn read(slots: &[TxSlot]) -> Result<Packet, Fatal> {
        let mut it = slots.iter().copied();
        let first = it.next().unwrap().request();
        read_packet(first, &mut it, crate::FATAL_SKB_SLOTS)
    }

    #[test]
    fn credit() {
        let mut c = Credit::UNLIMITED;
        assert!(c.take(65535, 0).is_ok());
        // 100 Mbit/s as libxl writes it: 625000 bytes per 50 ms.
        let mut c = Credit::new(625_000, 50_000, 1_000);
        let mut sent = 0u64;
        let mut now = 1_000;
        // Over one second of back-to-back 64 KiB packets, the rate holds (+ the first window, +
        // at most one packet of carried-over credit).
        while now < 1_001_000 {
            match c.take(65_535, now) {
                Ok(()) => sent += 65_535,
                Err(wait) => {
                    assert!(wait > 0 && wait <= 50_000);
                    // Woken up late (a jiffy), as the credit timer is.
                    now += wait + 4_000;
                }
            }
        }
        assert!((12_500_000 - 65_535..=12_500_000 + 625_000 + 65_535).contains(&sent));
        // Small windows: a 64 KiB packet still goes, after the credit has built up.
        let mut c = Credit::new(1_000, 1_000, 0);
        let mut now = 0;
        let mut tries = 0;
        while c.take(65_535, now).is_err() {
            now += 1_000;
            tries += 1;
            assert!(tries < 200);
        }
        // A change keeps at most the new window's credit; unlimited again with 0 us.
        let mut c = Credit::new(1_000_000, 50_000, 0);
        c.set(10_000, 50_000, 10);
        assert!(c.take(10_001, 10).is_err());
        assert!(c.take(10_000, 10).is_ok());
        c.set(u64::MAX, 0, 20);
        assert!(c.is_unlimited());
        assert!(c.take(u64::MAX, 20).is_ok());
    }

    #[test]
    fn rate_node() {
        use crate::xenbus::parse_rate;
        assert_eq!(parse_rate(b"625000,50000"), Some((625_000, 50_000)));
        assert_eq!(parse_rate(b"0,0"), Some((0, 0)));
        for bad in [
            &b""[..],
            b",",
            b"1,",
            b",1",
            b"1 ,2",
            b"1,2,3",
            b"-1,2",
            b"99999999999999999999,1",
        ] {
            assert_eq!(parse_rate(bad), None);
        }
    }

    #[test]
    fn one_slot() {
        let pkt = read(&[slot(60, 100, false, 7)]).unwrap();
        assert_eq!(pkt.nr_reqs, 1);
        assert_eq!(pkt.first_len, 60);
        assert!(pkt.drop.is_none());
        assert!(pkt.gso.is_none());
    }

    #[test]
    fn slot_counts() {
        // Up to 18 follow-on requests (19 slots): fine.
        let pkt = read(&packet(19)).unwrap();
        assert_eq!(pkt.nr_reqs, 19);
        assert!(pkt.drop.is_none());
        assert_eq!(pkt.first_len, 100);
        // 19 to fatal_skb_slots follow-on requests: dropped, every request kept for its response.
        for n in [20, 21] {
            let pkt = read(&packet(n)).unwrap();
            assert_eq!(pkt.drop, Some(Status::Error));
            assert_eq!(pkt.nr_reqs, n);
        }
        // More: fatal.
        assert_eq!(read(&packet(22)), Err(Fatal::TooManySlots(20)));
        assert_eq!(read(&packet(40)), Err(Fatal::TooManySlots(20)));
    }

    #[test]
    fn truncated_chain_is_fatal() {
        let p = packet(4);
        // The count in the error is diagnostic only; what matters is that it is fatal.
        assert!(matches!(read(&p[..3]), Err(Fatal::SlotsBeyondProducer(_))));
    }

    #[test]
    fn sizes() {
        // Too short for Ethernet: dropped.
        assert_eq!(
            read(&[slot(10, 0, false, 1)]).unwrap().drop,
            Some(Status::Error)
        );
        // Crossing a page: fatal.
        assert_eq!(
            read(&[slot(200, 4000, false, 1)]),
            Err(Fatal::CrossPage {
                offset: 4000,
                size: 200
            })
        );
        let s = [slot(300, 0, true, 1), slot(200, 3900, false, 2)];
        assert!(read(&s).is_err());
        // Follow-on slots bigger than the frame: dropped.
        let s = [slot(100, 0, true, 1), slot(200, 0, false, 2)];
        assert_eq!(read(&s).unwrap().drop, Some(Status::Error));
        // Zero-size follow-on slot: accepted, carries nothing.
        let s = [slot(100, 0, true, 1), slot(0, 0, false, 2)];
        let pkt = read(&s).unwrap();
        assert!(pkt.drop.is_none());
        assert_eq!(pkt.first_len, 100);
    }

    /// A packet of a first slot of `first` bytes and follow-on slots of `sizes`.
    fn sized(first: u16, sizes: &[u16]) -> Packet {
        let total = first + sizes.iter().sum::<u16>();
        let mut v = KVec::new();
        v.push(slot(total, 10, !sizes.is_empty(), 0), GFP_KERNEL)
            .unwrap();
        for (i, &s) in sizes.iter().enumerate() {
            v.push(slot(s, 0, i + 1 < sizes.len(), i as u16 + 1), GFP_KERNEL)
                .unwrap();
        }
        read(&v).unwrap()
    }

    fn pieces(pkt: &Packet) -> KVec<(usize, u16, usize)> {
        let mut v = KVec::new();
        for p in pkt.mapped_pieces() {
            v.push(p, GFP_KERNEL).unwrap();
        }
        v
    }

    #[test]
    fn map_split() {
        // Small packets are copied whole.
        assert_eq!(sized(128, &[]).map_lin_len(), None);
        assert_eq!(sized(60, &[68]).map_lin_len(), None);
        // One slot: the headers copied, the rest mapped from the same page.
        let mut p = sized(1000, &[]);
        p.lin_len = p.map_lin_len().unwrap();
        assert_eq!(p.lin_len, TX_COPY_LEN);
        assert_eq!(&pieces(&p)[..], &[(0, 10 + 128, 872)]);
        // Headers across slots (XSA-423): the first 128 bytes come from two requests.
        let mut p = sized(60, &[1000, 0, 500]);
        p.lin_len = p.map_lin_len().unwrap();
        assert_eq!(&pieces(&p)[..], &[(1, 68, 932), (3, 0, 500)]);
        // A zero-size slot (request 2) is never a fragment (XSA-448); it is answered at once.
        assert!(pieces(&p).iter().all(|&(_, _, len)| len > 0));
        // 17 pieces fit; with 18 the first follow-on request is copied too.
        let mut p = sized(60, &[3800; 17]);
        assert_eq!(p.map_lin_len(), Some(TX_COPY_LEN));
        p.lin_len = TX_COPY_LEN;
        assert_eq!(pieces(&p).len(), MAX_FRAGS);
        let mut p = sized(60, &[3000; 18]);
        let lin = p.map_lin_len().unwrap();
        assert_eq!(lin, 3060);
        p.lin_len = lin;
        let v = pieces(&p);
        assert_eq!(v.len(), MAX_FRAGS);
        assert_eq!(v[0], (2, 0, 3000));
        // Every byte is either copied or mapped once.
        let mapped: usize = v.iter().map(|&(_, _, len)| len).sum();
        assert_eq!(lin + mapped, usize::from(p.reqs[0].size));
    }

    #[test]
    fn extras() {
        let first = TxSlot::from(TxRequest {
            gref: 8,
            offset: 0,
            flags: TxFlag::ExtraInfo | TxFlag::CsumBlank,
            id: 1,
            size: 1000,
        });
        let gso = ExtraInfo::new(Extra::Gso(Gso::new(1448, GsoType::TcpV4).unwrap()));
        let pkt = read(&[first, TxSlot::from(gso)]).unwrap();
        assert_eq!(pkt.nr_extras, 1);
        assert_eq!(pkt.gso.map(|g| g.size()), Some(1448));

        // Missing extra: fatal.
        assert!(read(&[first]).is_err());
        // GSO size 0 or an unknown type: fatal.
        let mut bad = TxSlot::from(gso).extra();
        bad.type_ = 9;
        assert!(read(&[first, TxSlot::from(bad)]).is_err());
        let zero = TxSlot::from(ExtraInfo {
            data: [0, 0, 1, 0, 0, 0],
            ..gso
        });
        assert!(read(&[first, zero]).is_err());
        // An endless chain of extras: fatal.
        let more = TxSlot::from(gso.with_more(true));
        assert_eq!(
            read(&[first, more, more, more, more, more, more, more]),
            Err(Fatal::TooManyExtras)
        );
    }

    #[test]
    fn mcast_extras() {
        // A request without data carrying a multicast filter update: not a packet, and the
        // request after it is not part of it (C: `xenvif_tx_build_gops`).
        let first = TxSlot::from(TxRequest {
            gref: 0,
            offset: 0,
            flags: TxFlag::ExtraInfo.into(),
            id: 5,
            size: 0,
        });
        let group = [0x01, 0x00, 0x5e, 0x01, 0x02, 0x03];
        let next = slot(100, 0, false, 6);
        let mut it = [TxSlot::from(ExtraInfo::new(Extra::McastAdd(group))), next].into_iter();
        let pkt = read_packet(first.request(), &mut it, crate::FATAL_SKB_SLOTS).unwrap();
        assert_eq!(pkt.mcast, Some(Extra::McastAdd(group)));
        assert_eq!((pkt.nr_reqs, pkt.nr_extras, pkt.reqs[0].id), (1, 1, 5));
        assert_eq!(it.next(), Some(next));
        let del = read(&[first, TxSlot::from(ExtraInfo::new(Extra::McastDel(group)))]).unwrap();
        assert_eq!(del.mcast, Some(Extra::McastDel(group)));
        // A packet with a GSO extra only has none.
        assert_eq!(read(&[slot(100, 0, false, 1)]).unwrap().mcast, None);
    }
}
