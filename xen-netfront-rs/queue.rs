// SPDX-License-Identifier: GPL-2.0

//! One queue pair: the TX and RX rings shared with the backend, their buffers, the event
//! channel and the NAPI poll that reaps TX completions and receives packets.
//!
//! The backend is not trusted: every response is copied out of the ring once (the ring
//! abstraction only hands out copies), every index, id and length is checked, and any
//! protocol violation marks the queue broken (no further traffic) instead of crashing.

use kernel::{
    alloc::flags::{
        __GFP_ZERO, //
        GFP_ATOMIC,
    },
    net::{
        dev::Device,
        napi::{
            Napi,
            PollContext,
            Poller, //
        },
        page_pool::{
            PagePool,
            PoolPage, //
        },
        skb::{
            self,
            DropReason,
            SkBuff,
            SkBuffList, //
        },
        stats::QueueStats,
        xdp::{
            self,
            Frame,
            Prog,
            RxqInfo,
            Verdict, //
        },
    },
    page::Page,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Full,
            Relaxed, //
        },
        new_spinlock_bh,
        new_spinlock_irq,
        Arc,
        SpinLockBh,
        SpinLockIrq, //
    },
    xen::{
        evtchn::{
            self,
            Eoi, //
        },
        grant::{
            Access,
            Grant,
            GrantedSkb,
            RefPool,
            RingPages,
            SkbLayout,
            SKB_MAX_GRANTS, //
        },
        netif::{
            self,
            Extra,
            ExtraInfo,
            RxFlag,
            RxFrontRing,
            RxRequest,
            Status,
            TxFlag,
            TxFlags,
            TxFrontRing,
            TxRequest, //
        },
        DomId,
        PAGE_SIZE, //
    },
};

/// Entries of each ring.
pub(crate) const TX_RING: usize = netif::TX_RING_SIZE as usize;
pub(crate) const RX_RING: usize = netif::RX_RING_SIZE as usize;

/// The most ring slots one TX packet takes: 16 data pages for 64 KiB plus one GSO extra.
/// The queue is stopped unless this many (plus one, as the C driver) slots are free.
const TX_MAX_SLOTS: u32 = netif::NR_SLOTS_MIN + 1;

/// Linear part of a received skb (`RX_COPY_THRESHOLD`).
const RX_COPY_THRESHOLD: u32 = 256;

/// Most data slots of one received packet (`XEN_NETIF_NR_SLOTS_MIN`, + 1 for a small head).
const RX_MAX_SLOTS: u32 = netif::NR_SLOTS_MIN + 1;

/// Number of bytes of a packet the TX slot `index` carries.
pub(crate) fn tx_piece(len: usize, index: usize) -> usize {
    let start = index * PAGE_SIZE;
    len.saturating_sub(start).min(PAGE_SIZE)
}

/// Number of data slots a packet of `len` bytes takes when bounced into whole pages.
pub(crate) fn tx_data_slots(len: usize) -> usize {
    len.div_ceil(PAGE_SIZE).max(1)
}

/// An event channel of a queue; its handler schedules the queue's NAPI poll.
pub(crate) type Evtchn = evtchn::Registration<Irq>;

/// The event channels of a queue: one for both rings, or one per ring when the backend offers
/// `feature-split-event-channels` (C: `setup_netfront_single`/`setup_netfront_split`).
pub(crate) struct Channels {
    /// The TX ring's channel; also the RX ring's without `rx`.
    pub(crate) tx: Pin<KBox<Evtchn>>,
    /// The RX ring's own channel (split).
    pub(crate) rx: Option<Pin<KBox<Evtchn>>>,
}

/// Which rings an event channel serves.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rings {
    /// Both rings (one channel per queue).
    Both,
    /// The TX ring only (split event channels).
    Tx,
    /// The RX ring only (split event channels).
    Rx,
}

/// Interrupt handler. TX completions on a TX-only channel are reaped right here, as C's
/// `xennet_tx_interrupt` does; everything else (and its EOI) is deferred to NAPI.
pub(crate) struct Irq {
    pub(crate) queue: Arc<Napi<Queue>>,
    pub(crate) rings: Rings,
}

impl evtchn::Handler for Irq {
    fn handle(&self) -> Eoi {
        if self.queue.broken.load(Relaxed) != 0 {
            // A broken backend gets no more service: the channel stays masked.
            return Eoi::Deferred;
        }
        match self.rings {
            Rings::Tx => {
                if let Some(work) = self.queue.tx_gc_irq(self.queue.device()) {
                    return if work { Eoi::Done } else { Eoi::Spurious };
                }
                self.queue.eoi_pending.store(1, Relaxed);
            }
            Rings::Both => self.queue.eoi_pending.store(1, Relaxed),
            Rings::Rx => self.queue.eoi_pending_rx.store(1, Relaxed),
        }
        self.queue.schedule();
        Eoi::Deferred
    }
}

/// What a TX id carries while its request is in flight.
enum Slot {
    /// Not in flight.
    Free,
    /// A copy of part of a packet, in a page of ours granted read-only (untrusted backend).
    Bounce(Grant<Page>),
    /// Grant `piece` of the packet `Tx::packets[pkt]`, whose own data is granted read-only.
    Skb { pkt: u16, piece: u8 },
    /// A multicast filter update (`MCAST_ADD`/`MCAST_DEL` extra): no data.
    Mcast,
    /// An XDP frame (`XDP_TX` or `ndo_xdp_xmit`) granted in place, returned when answered.
    Xdp(Grant<Frame>),
}

/// TX side of a queue.
struct Tx {
    ring: TxFrontRing<RingPages>,
    /// One reference per id: every id in flight holds exactly one.
    refs: RefPool,
    /// Ids not in flight.
    free_ids: KVec<u16>,
    /// What each id carries.
    slots: KVec<Slot>,
    /// Packets sent without copying, kept (with their grants) until every request is answered.
    packets: KVec<Option<GrantedSkb>>,
    /// Indices of `packets` not in use.
    free_pkts: KVec<u16>,
    /// Indices of `packets` in use, oldest first.
    pending: KVec<u16>,
    /// Bounce pages given back, reused before allocating.
    spare: KVec<Page>,
    /// XDP frames in flight: their memory goes back to its page pool, which only NAPI (or
    /// process) context may do, so their completions are not reaped in the interrupt handler.
    xdp_inflight: u16,
}

impl Tx {
    /// The fewest responses after which a packet in flight can be complete: the fewest grants
    /// left to any packet sent without copying. Waiting for fewer responses would only wake
    /// the frontend for a response that frees nothing the stack waits for (the C backend
    /// answers a packet's header, which it copies, long before the pages it maps). One when
    /// anything else is in flight (copies, XDP frames, multicast updates) or nothing is.
    fn completion_batch(&self) -> u32 {
        let mut fewest = u32::MAX;
        let mut live = 0;
        for &pkt in self.pending.iter() {
            if let Some(Some(granted)) = self.packets.get(usize::from(pkt)) {
                let n = granted.live_count();
                live += n;
                fewest = fewest.min(n);
            }
        }
        // Every id in flight is a live grant of a pending packet, or something else.
        let in_flight = (TX_RING - self.free_ids.len()) as u32;
        if fewest == u32::MAX || fewest == 0 || in_flight != live {
            1
        } else {
            fewest
        }
    }
}

/// A received packet being assembled across slots.
struct Partial {
    skb: SkBuff,
    /// The first data slot (page, offset, size), held back until the packet is complete or a
    /// second data slot arrives: its XDP headroom comes in an extra after it, and a
    /// single-slot packet goes through the XDP program as a page.
    head: Option<(PoolPage, usize, usize)>,
    /// Headroom the backend says it left before the data (`XDP` extra).
    xdp_headroom: Option<u16>,
    /// Flags of the first slot.
    csum_blank: bool,
    data_validated: bool,
    /// Extras still expected.
    want_extra: bool,
    /// More data slots expected.
    more_data: bool,
    gso: Option<netif::Gso>,
    /// The backend's hash of the packet (`HASH` extra, once RSS is set up on the control ring).
    hash: Option<netif::Hash>,
    slots: u32,
    /// The packet is dropped once complete (a bad slot was seen).
    bad: bool,
}

/// What became of a complete received packet.
enum Done {
    /// For the stack.
    Skb(SkBuff),
    /// `XDP_TX`: to send back to the backend.
    Tx(Frame),
    /// `XDP_REDIRECT`: flush at the end of the poll.
    Redirected,
    /// Dropped (and counted).
    Dropped,
}

/// RX side of a queue.
struct Rx {
    ring: RxFrontRing<RingPages>,
    refs: RefPool,
    /// The buffer posted at each ring position (pages of the queue's page pool, to which pages
    /// not passed on go back, e.g. those of extra slots).
    bufs: KVec<Option<Grant<PoolPage>>>,
    partial: Option<Partial>,
}

/// Per-queue state, embedded in its NAPI context.
#[pin_data]
pub(crate) struct Queue {
    domid: DomId,
    /// Copy every TX packet into pages of ours instead of granting its memory: the backend is
    /// not trusted with whatever else shares those pages (XSA-403).
    bounce: bool,
    /// Index of the queue (netdev TX queue and `queue-N` in xenstore).
    index: u16,
    /// Interrupt-safe (as C's `tx_lock`): netpoll (netconsole) transmits and reaps with
    /// interrupts disabled.
    #[pin]
    tx: SpinLockIrq<Tx>,
    #[pin]
    rx: SpinLockBh<Rx>,
    /// The event channels; taken out (breaking the reference cycle) on disconnect.
    /// Interrupt-safe: the transmit path notifies through them (netpoll included), with the
    /// TX lock held; so this lock is taken inside the TX lock, never the other way round.
    #[pin]
    pub(crate) evtchn: SpinLockIrq<Option<Channels>>,
    /// An event of the TX (or only) channel waits for its EOI.
    eoi_pending: Atomic<u32>,
    /// An event of the RX ring's own channel waits for its EOI.
    eoi_pending_rx: Atomic<u32>,
    pub(crate) broken: Atomic<u32>,
    pub(crate) tx_stats: QueueStats,
    pub(crate) rx_stats: QueueStats,
    pub(crate) rx_gso_checksum_fixup: kernel::net::stats::Counter,
    /// Packets the XDP program dropped (or aborted on), sent back out, redirected.
    pub(crate) xdp_drop: kernel::net::stats::Counter,
    pub(crate) xdp_tx: kernel::net::stats::Counter,
    pub(crate) xdp_redirect: kernel::net::stats::Counter,
    /// The XDP program, run on single-slot packets; a copy of the device's.
    #[pin]
    xdp_prog: SpinLockBh<Option<Prog>>,
    /// XDP information of the RX queue, with the page pool of its buffers.
    #[pin]
    xdp_rxq: RxqInfo,
    tx_ring_refs: u32,
    rx_ring_refs: u32,
}

impl Queue {
    /// Creates the queue with freshly granted ring pages, for RX queue `index` of `dev`, with
    /// the device's XDP program if any.
    pub(crate) fn new<'a>(
        dev: &'a Device,
        domid: DomId,
        index: u16,
        bounce: bool,
        tx_ring: RingPages,
        rx_ring: RingPages,
        prog: Option<Prog>,
    ) -> Result<impl PinInit<Self, Error> + 'a> {
        let tx_ring_refs = tx_ring.grefs()[0].0;
        let rx_ring_refs = rx_ring.grefs()[0].0;
        let mut free_ids = KVec::with_capacity(TX_RING, GFP_KERNEL)?;
        let mut free_pkts = KVec::with_capacity(TX_RING, GFP_KERNEL)?;
        let mut slots = KVec::with_capacity(TX_RING, GFP_KERNEL)?;
        let mut packets = KVec::with_capacity(TX_RING, GFP_KERNEL)?;
        for id in (0..TX_RING).rev() {
            free_ids.push(id as u16, GFP_KERNEL)?;
            free_pkts.push(id as u16, GFP_KERNEL)?;
        }
        for _ in 0..TX_RING {
            slots.push(Slot::Free, GFP_KERNEL)?;
            packets.push(None, GFP_KERNEL)?;
        }
        let mut bufs = KVec::with_capacity(RX_RING, GFP_KERNEL)?;
        for _ in 0..RX_RING {
            bufs.push(None, GFP_KERNEL)?;
        }
        let tx = Tx {
            ring: TxFrontRing::new(tx_ring)?,
            refs: RefPool::new(TX_RING as u16)?,
            free_ids,
            slots,
            packets,
            free_pkts,
            pending: KVec::with_capacity(TX_RING, GFP_KERNEL)?,
            spare: KVec::with_capacity(if bounce { TX_RING } else { 0 }, GFP_KERNEL)?,
            xdp_inflight: 0,
        };
        let rx = Rx {
            ring: RxFrontRing::new(rx_ring)?,
            refs: RefPool::new(RX_RING as u16)?,
            bufs,
            partial: None,
        };
        let rxq_index = u32::from(index);
        // As many pages as the ring holds are kept for recycling (as C's page pool).
        let pool = PagePool::new(dev, RX_RING as u32)?;
        Ok(try_pin_init!(Self {
            domid,
            bounce,
            index,
            tx <- new_spinlock_irq!(tx),
            rx <- new_spinlock_bh!(rx),
            evtchn <- new_spinlock_irq!(None),
            eoi_pending: Atomic::new(0),
            eoi_pending_rx: Atomic::new(0),
            broken: Atomic::new(0),
            tx_stats: QueueStats::new(),
            rx_stats: QueueStats::new(),
            rx_gso_checksum_fixup: kernel::net::stats::Counter::new(),
            xdp_drop: kernel::net::stats::Counter::new(),
            xdp_tx: kernel::net::stats::Counter::new(),
            xdp_redirect: kernel::net::stats::Counter::new(),
            xdp_prog <- new_spinlock_bh!(prog),
            xdp_rxq <- RxqInfo::new(dev, rxq_index, 0, pool),
            tx_ring_refs,
            rx_ring_refs,
        }? Error))
    }

    /// Replaces the XDP program (`None`: detach); the old one is released here.
    pub(crate) fn set_xdp_prog(&self, prog: Option<Prog>) {
        let old = core::mem::replace(&mut *self.xdp_prog.lock(), prog);
        drop(old);
    }

    /// Sends XDP frames (`xennet_xdp_xmit`): each one in a single request, granted in place
    /// (read-only) to a trusted backend, copied into a page of ours for an untrusted one. A frame
    /// that does not fit in one page or is shorter than an Ethernet header is dropped. Returns
    /// the number of frames taken (sent or dropped); stops, leaving the rest, when the ring is
    /// full.
    pub(crate) fn xdp_xmit(&self, dev: &Device, mut next: impl FnMut() -> Option<Frame>) -> usize {
        let mut taken = 0;
        if self.is_broken() {
            return 0;
        }
        let mut sent: u32 = 0;
        let mut bytes: u64 = 0;
        let notify = {
            let mut guard = self.tx.lock();
            let tx = &mut *guard;
            // Keep the room one packet of the stack needs, as `send_mcast`.
            while tx.ring.free_requests() > TX_MAX_SLOTS && !tx.free_ids.is_empty() {
                let Some(frame) = next() else {
                    break;
                };
                taken += 1;
                let len = frame.len();
                if frame.has_frags() || !frame.in_one_page() || len < skb::ETH_HLEN as usize {
                    self.tx_stats.dropped.inc();
                    continue;
                }
                let Ok(gref) = tx.refs.claim() else {
                    self.tx_stats.dropped.inc();
                    continue;
                };
                let Some(id) = tx.free_ids.pop() else {
                    tx.refs.release(gref);
                    self.tx_stats.dropped.inc();
                    continue;
                };
                let (slot, gref, offset) = if self.bounce {
                    // XSA-403: nothing but the packet in what the backend sees.
                    let mut page = match tx.spare.pop() {
                        Some(p) => p,
                        None => match Page::alloc_page(GFP_ATOMIC | __GFP_ZERO) {
                            Ok(p) => p,
                            Err(_) => {
                                tx.refs.release(gref);
                                let _ = tx.free_ids.push(id, GFP_ATOMIC);
                                self.tx_stats.dropped.inc();
                                continue;
                            }
                        },
                    };
                    if frame.copy_to_page_zero_rest(&mut page).is_err() {
                        let _ = tx.spare.push(page, GFP_ATOMIC);
                        tx.refs.release(gref);
                        let _ = tx.free_ids.push(id, GFP_ATOMIC);
                        self.tx_stats.dropped.inc();
                        continue;
                    }
                    // The copy is sent: the frame goes back to its owner now.
                    drop(frame);
                    let grant = Grant::new(gref, self.domid, page, Access::ReadOnly);
                    let gref = grant.gref().0;
                    (Slot::Bounce(grant), gref, 0)
                } else {
                    let offset = frame.offset_in_page() % PAGE_SIZE;
                    let grant = Grant::new(gref, self.domid, frame, Access::ReadOnly);
                    let gref = grant.gref().0;
                    tx.xdp_inflight += 1;
                    (Slot::Xdp(grant), gref, offset)
                };
                tx.slots[usize::from(id)] = slot;
                let req = TxRequest {
                    gref,
                    offset: offset as u16,
                    flags: TxFlags::empty(),
                    id,
                    size: len as u16,
                };
                let _ = tx.ring.push_request(req.into());
                sent += 1;
                bytes += len as u64;
            }
            sent > 0 && tx.ring.push_requests_and_check_notify()
        };
        if notify {
            self.notify_tx();
        }
        // Counted as packets of the queue, as the C driver does.
        self.tx_stats.packets.add(u64::from(sent));
        self.tx_stats.bytes.add(bytes);
        let _ = dev;
        taken
    }

    /// Grant references of the TX and RX ring pages, for xenstore.
    pub(crate) fn ring_refs(&self) -> (u32, u32) {
        (self.tx_ring_refs, self.rx_ring_refs)
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Relaxed) != 0
    }

    /// Stops all service to a backend that broke the protocol. `why` is worded as the C driver
    /// logs it, as is the final "Disabled for further use" (log monitoring relies on them).
    fn mark_broken(&self, dev: &Device, why: &str) {
        if self.broken.xchg(1, Full) == 0 {
            pr_err!(
                "{:?}: backend misbehaved: {}; Disabled for further use\n",
                dev.name(),
                why
            );
            dev.carrier_off();
        }
    }

    /// Logs a malformed packet of the backend, rate-limited (the packet is dropped).
    fn warn_rx(dev: &Device, args: core::fmt::Arguments<'_>) {
        if kernel::net::dev::ratelimit() {
            pr_warn!("{:?}: {}\n", dev.name(), args);
        }
    }

    /// Notifies the backend of new TX requests.
    fn notify_tx(&self) {
        if let Some(ch) = self.evtchn.lock().as_ref() {
            ch.tx.notify();
        }
    }

    /// Notifies the backend of new RX requests.
    fn notify_rx(&self) {
        if let Some(ch) = self.evtchn.lock().as_ref() {
            ch.rx.as_ref().unwrap_or(&ch.tx).notify();
        }
    }

    /// Posts RX buffers into every free slot of the RX ring and notifies the backend if it
    /// asked for it.
    pub(crate) fn refill_rx(&self) {
        if self.is_broken() {
            return;
        }
        let notify = {
            let mut guard = self.rx.lock();
            let rx = &mut *guard;
            let mut posted = false;
            while rx.ring.free_requests() > 0 {
                let idx = (rx.ring.req_prod_pvt() as usize) & (RX_RING - 1);
                if rx.bufs[idx].is_some() {
                    // The slot's previous buffer was never answered; do not overwrite it.
                    break;
                }
                // Fresh pages are zeroed; recycled ones hold what the backend wrote into them,
                // possibly changed in place by the stack: cleared for an untrusted backend.
                let Ok(mut page) = self.xdp_rxq.pool().alloc(GFP_ATOMIC | __GFP_ZERO) else {
                    break;
                };
                if self.bounce {
                    page.fill_zero();
                }
                let Ok(gref) = rx.refs.claim() else {
                    break;
                };
                let grant = Grant::new(gref, self.domid, page, Access::ReadWrite);
                let req = RxRequest::new(idx as u16, grant.gref().0);
                if rx.ring.push_request(req).is_err() {
                    break;
                }
                rx.bufs[idx] = Some(grant);
                posted = true;
            }
            posted && rx.ring.push_requests_and_check_notify()
        };
        if notify {
            self.notify_rx();
        }
    }

    /// Transmits `skb` (`xennet_start_xmit`).
    ///
    /// With a trusted backend the packet's own memory is granted read-only, one request per
    /// piece of a Xen page of the linear area and of each fragment, and the packet is kept until
    /// every request is answered. With an untrusted backend (or a packet that cannot be granted
    /// as it is) it is copied into whole pages of ours instead. The first request carries the
    /// length of the packet and its checksum flags, followed by a GSO extra if any.
    pub(crate) fn xmit(&self, dev: &Device, mut skb: SkBuff) -> Result<(), SkBuff> {
        let len = skb.len() as usize;
        if self.is_broken() || len == 0 || len > netif::MAX_TX_SIZE as usize {
            self.tx_stats.dropped.inc();
            skb.drop_reason(DropReason::DevReady);
            return Ok(());
        }
        let gso = if skb.is_gso() {
            match netif::GsoType::from_skb_gso_type(skb.gso_type().bits())
                .and_then(|t| netif::Gso::new(skb.gso_size(), t).ok())
            {
                Some(g) => Some(g),
                None => {
                    self.tx_stats.dropped.inc();
                    skb.drop_reason(DropReason::NotSpecified);
                    return Ok(());
                }
            }
        } else {
            None
        };
        // Zero copy, with this layout of grants, unless the backend is untrusted, a fragment is not
        // in a page, or the first piece is too short for the Ethernet header (netback drops such
        // packets).
        let mut zero_copy = None;
        let mut data_slots = tx_data_slots(len);
        if !self.bounce {
            let mut layout = GrantedSkb::layout(&skb);
            if layout.grants > SKB_MAX_GRANTS {
                // "skb rides the rocket": too many pieces for the backend.
                if skb.linearize().is_err() {
                    self.tx_stats.dropped.inc();
                    skb.drop_reason(DropReason::Nomem);
                    return Ok(());
                }
                layout = GrantedSkb::layout(&skb);
            }
            if layout.grantable
                && layout.grants <= SKB_MAX_GRANTS
                && layout.first_len >= skb::ETH_HLEN as usize
            {
                data_slots = layout.grants;
                zero_copy = Some(layout);
            }
        }
        let needed = (data_slots + usize::from(gso.is_some())) as u32;
        let mut first_flags = TxFlags::from_checksum(match skb.ip_summed() {
            skb::Checksum::Partial => netif::Checksum::Partial,
            skb::Checksum::Unnecessary => netif::Checksum::Unnecessary,
            _ => netif::Checksum::None,
        });
        if gso.is_some() {
            first_flags |= TxFlag::ExtraInfo;
        }

        {
            let mut guard = self.tx.lock();
            let tx = &mut *guard;
            if tx.ring.free_requests() < needed
                || tx.free_ids.len() < data_slots
                || tx.free_pkts.is_empty()
            {
                if let Some(q) = dev.tx_queue(u32::from(self.index)) {
                    q.stop();
                }
                return Err(skb);
            }
            let sent = if let Some(layout) = &zero_copy {
                Self::push_granted(tx, self.domid, skb, layout, len, first_flags, gso)
            } else {
                Self::push_bounced(tx, self.domid, skb, len, data_slots, first_flags, gso)
            };
            match sent {
                Ok(()) => {}
                Err(Some(skb)) => {
                    if let Some(q) = dev.tx_queue(u32::from(self.index)) {
                        q.stop();
                    }
                    return Err(skb);
                }
                Err(None) => {
                    self.tx_stats.dropped.inc();
                    return Ok(());
                }
            }
            // Notified under the TX lock, as C does: interrupts go off once per packet, not
            // a second time for the event channel's lock (nested in this section, it does not
            // toggle them).
            if tx.ring.push_requests_and_check_notify() {
                self.notify_tx();
            }
            // Stop under the lock, so that a completion cannot miss the stopped queue.
            if tx.ring.free_requests() < TX_MAX_SLOTS {
                if let Some(q) = dev.tx_queue(u32::from(self.index)) {
                    q.stop();
                }
            }
        }
        self.tx_stats.packet(len as u32);
        Ok(())
    }

    /// Sends a multicast filter update to the backend: a request without data followed by the
    /// `MCAST_ADD` or `MCAST_DEL` extra (the protocol's way; the backend answers it like a
    /// packet). Fails with [`EBUSY`] while the ring has no room.
    pub(crate) fn send_mcast(&self, extra: Extra) -> Result {
        if !matches!(extra, Extra::McastAdd(_) | Extra::McastDel(_)) {
            return Err(EINVAL);
        }
        if self.is_broken() {
            return Err(EIO);
        }
        let notify = {
            let mut guard = self.tx.lock();
            let tx = &mut *guard;
            // Leave the room a packet needs, so that the transmit path is not starved.
            if tx.ring.free_requests() < TX_MAX_SLOTS + 2 {
                return Err(EBUSY);
            }
            let Some(id) = tx.free_ids.pop() else {
                return Err(EBUSY);
            };
            tx.slots[usize::from(id)] = Slot::Mcast;
            let req = TxRequest {
                gref: 0,
                offset: 0,
                flags: TxFlag::ExtraInfo.into(),
                id,
                size: 0,
            };
            let _ = tx.ring.push_request(req.into());
            let _ = tx.ring.push_request(ExtraInfo::new(extra).into());
            tx.ring.push_requests_and_check_notify()
        };
        if notify {
            self.notify_tx();
        }
        Ok(())
    }

    /// Queues the requests of `skb`, granting its own memory. The caller checked that enough
    /// ids, ring slots and a packet entry are free. On failure, gives the packet back if it may
    /// be retried, or drops it.
    fn push_granted(
        tx: &mut Tx,
        domid: DomId,
        skb: SkBuff,
        layout: &SkbLayout,
        len: usize,
        first_flags: TxFlags,
        gso: Option<netif::Gso>,
    ) -> Result<(), Option<SkBuff>> {
        let Some(pkt) = tx.free_pkts.pop() else {
            return Err(Some(skb));
        };
        let granted = match GrantedSkb::new(skb, layout, domid, &mut tx.refs) {
            Ok(g) => g,
            Err((skb, e)) => {
                let _ = tx.free_pkts.push(pkt, GFP_ATOMIC);
                if e == ENOSPC {
                    return Err(Some(skb));
                }
                skb.drop_reason(DropReason::NotSpecified);
                return Err(None);
            }
        };
        // Before the requests are pushed: the completion may come right after.
        granted.skb().tx_timestamp();
        let pieces = granted.grants();
        for (i, piece) in pieces.iter().enumerate() {
            // Cannot fail: the caller checked there are enough free ids.
            let Some(id) = tx.free_ids.pop() else {
                break;
            };
            tx.slots[usize::from(id)] = Slot::Skb {
                pkt,
                piece: i as u8,
            };
            let mut flags = if i == 0 {
                first_flags
            } else {
                TxFlags::empty()
            };
            if i + 1 < pieces.len() {
                flags |= TxFlag::MoreData;
            }
            let req = TxRequest {
                gref: piece.gref.0,
                offset: piece.offset,
                flags,
                id,
                // The first request has the length of the packet.
                size: if i == 0 { len as u16 } else { piece.len },
            };
            let _ = tx.ring.push_request(req.into());
            if i == 0 {
                if let Some(g) = gso {
                    let _ = tx.ring.push_request(ExtraInfo::new(Extra::Gso(g)).into());
                }
            }
        }
        tx.packets[usize::from(pkt)] = Some(granted);
        // Cannot fail: there are as many packet entries as its capacity.
        let _ = tx.pending.push(pkt, GFP_ATOMIC);
        Ok(())
    }

    /// Queues the requests of `skb` copied into whole pages of ours (`bounce_skb`), one per
    /// page, and frees the packet. The caller checked that enough ids and ring slots are free.
    fn push_bounced(
        tx: &mut Tx,
        domid: DomId,
        skb: SkBuff,
        len: usize,
        data_slots: usize,
        first_flags: TxFlags,
        gso: Option<netif::Gso>,
    ) -> Result<(), Option<SkBuff>> {
        if data_slots > netif::NR_SLOTS_MIN as usize {
            skb.drop_reason(DropReason::NotSpecified);
            return Err(None);
        }
        // Get every page and copy first, so that nothing is queued unless all of it can be.
        let mut pages: [Option<Page>; netif::NR_SLOTS_MIN as usize] =
            [const { None }; netif::NR_SLOTS_MIN as usize];
        for (i, slot) in pages.iter_mut().take(data_slots).enumerate() {
            let page = match tx.spare.pop() {
                Some(p) => p,
                None => match Page::alloc_page(GFP_ATOMIC | __GFP_ZERO) {
                    Ok(p) => p,
                    Err(_) => {
                        for p in pages.iter_mut().filter_map(Option::take) {
                            let _ = tx.spare.push(p, GFP_ATOMIC);
                        }
                        skb.drop_reason(DropReason::Nomem);
                        return Err(None);
                    }
                },
            };
            let mut page = page;
            // Nothing but the packet in the page, even a reused one (XSA-403).
            if skb
                .copy_to_page_zero_rest((i * PAGE_SIZE) as u32, &mut page, tx_piece(len, i))
                .is_err()
            {
                let _ = tx.spare.push(page, GFP_ATOMIC);
                for p in pages.iter_mut().filter_map(Option::take) {
                    let _ = tx.spare.push(p, GFP_ATOMIC);
                }
                skb.drop_reason(DropReason::NotSpecified);
                return Err(None);
            }
            *slot = Some(page);
        }
        // The copies are what the backend gets: the sender's packet is done with.
        skb.tx_timestamp();
        skb.consume();
        for (i, page) in pages.iter_mut().take(data_slots).enumerate() {
            let (Some(page), Some(id)) = (page.take(), tx.free_ids.pop()) else {
                break;
            };
            let gref = match tx.refs.claim() {
                Ok(r) => r,
                Err(_) => {
                    // Cannot happen: every free id has its reference in the pool.
                    let _ = tx.free_ids.push(id, GFP_ATOMIC);
                    let _ = tx.spare.push(page, GFP_ATOMIC);
                    break;
                }
            };
            let grant = Grant::new(gref, domid, page, Access::ReadOnly);
            let mut flags = if i == 0 {
                first_flags
            } else {
                TxFlags::empty()
            };
            if i + 1 < data_slots {
                flags |= TxFlag::MoreData;
            }
            let req = TxRequest {
                gref: grant.gref().0,
                offset: 0,
                flags,
                id,
                size: if i == 0 {
                    len as u16
                } else {
                    tx_piece(len, i) as u16
                },
            };
            tx.slots[usize::from(id)] = Slot::Bounce(grant);
            let _ = tx.ring.push_request(req.into());
            if i == 0 {
                if let Some(g) = gso {
                    let _ = tx.ring.push_request(ExtraInfo::new(Extra::Gso(g)).into());
                }
            }
        }
        Ok(())
    }

    /// Reaps TX responses (`xennet_tx_buf_gc`): checks each id, ends its grant, frees the id,
    /// and frees a packet once all its requests are answered. Returns whether there were any.
    fn tx_gc(&self, dev: &Device) -> bool {
        let (work, bad) = {
            let mut tx = self.tx.lock();
            self.reap_tx(&mut tx, dev)
        };
        if let Some(why) = bad {
            self.mark_broken(dev, why);
        }
        work
    }

    /// [`Self::tx_gc`] in hard interrupt context, as C's `xennet_tx_interrupt`; `None` while XDP
    /// frames are in flight (they may only be returned from NAPI: the caller defers to it).
    fn tx_gc_irq(&self, dev: &Device) -> Option<bool> {
        let (work, bad) = {
            let mut tx = self.tx.lock();
            if tx.xdp_inflight != 0 {
                return None;
            }
            self.reap_tx(&mut tx, dev)
        };
        if let Some(why) = bad {
            self.mark_broken(dev, why);
        }
        Some(work)
    }

    /// The loop of [`Self::tx_gc`], under the TX lock: whether there were responses, and why
    /// the backend is to be marked broken, if it is.
    fn reap_tx(&self, tx: &mut Tx, dev: &Device) -> (bool, Option<&'static str>) {
        let mut work = false;
        let mut bad: Option<&'static str> = None;
        'outer: loop {
            let responses = match tx.ring.responses() {
                Ok(r) => r,
                Err(_) => {
                    bad = Some("TX: Illegal number of responses");
                    break;
                }
            };
            for rsp in responses {
                work = true;
                match Status::try_from(rsp.status) {
                    Ok(Status::Null) => continue,
                    Ok(Status::Okay) => {}
                    _ => self.tx_stats.errors.inc(),
                }
                let id = usize::from(rsp.id);
                let Some(slot) = tx.slots.get_mut(id) else {
                    bad = Some("TX: Response has incorrect id");
                    break 'outer;
                };
                match core::mem::replace(slot, Slot::Free) {
                    Slot::Free => {
                        bad = Some("TX: Response for inactive request");
                        break 'outer;
                    }
                    Slot::Bounce(grant) => match grant.end() {
                        Ok((gref, page)) => {
                            tx.refs.release(gref);
                            if tx.spare.len() < TX_RING {
                                let _ = tx.spare.push(page, GFP_ATOMIC);
                            }
                        }
                        Err(grant) => {
                            // Still mapped by the backend: the page stays out of reuse.
                            drop(grant);
                            bad = Some("TX: Grant still in use by backend domain");
                            break 'outer;
                        }
                    },
                    Slot::Mcast => {}
                    Slot::Xdp(grant) => match grant.end() {
                        Ok((gref, frame)) => {
                            tx.xdp_inflight -= 1;
                            tx.refs.release(gref);
                            // Returns the frame's memory to its owner.
                            drop(frame);
                        }
                        Err(grant) => {
                            // Still mapped: the frame is leaked, never returned.
                            tx.xdp_inflight -= 1;
                            drop(grant);
                            bad = Some("TX: Grant still in use by backend domain");
                            break 'outer;
                        }
                    },
                    Slot::Skb { pkt, piece } => {
                        let pkt = usize::from(pkt);
                        let Some(granted) = tx.packets.get_mut(pkt).and_then(Option::as_mut) else {
                            bad = Some("TX: Response for inactive request (no packet)");
                            break 'outer;
                        };
                        if granted.end(usize::from(piece), &mut tx.refs).is_err() {
                            // Still mapped: the packet is leaked when the queue goes away.
                            bad = Some("TX: Grant still in use by backend domain");
                            break 'outer;
                        }
                        if granted.is_done() {
                            if let Some(Ok(skb)) = tx.packets[pkt].take().map(GrantedSkb::into_skb)
                            {
                                skb.consume();
                            }
                            if let Some(i) = tx.pending.iter().position(|&p| usize::from(p) == pkt)
                            {
                                let _ = tx.pending.remove(i);
                            }
                            let _ = tx.free_pkts.push(pkt as u16, GFP_ATOMIC);
                        }
                    }
                }
                let _ = tx.free_ids.push(rsp.id, GFP_ATOMIC);
            }
            // Low on ring space, the queue needs every response; otherwise the next event is of
            // use only once a packet can be complete.
            let batch = if tx.ring.free_requests() < 2 * TX_MAX_SLOTS {
                1
            } else {
                tx.completion_batch()
            };
            match tx.ring.final_check_for_responses_after(batch) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(_) => {
                    bad = Some("TX: Illegal number of responses");
                    break;
                }
            }
        }
        if bad.is_none() && tx.ring.free_requests() >= TX_MAX_SLOTS && dev.carrier_ok() {
            if let Some(q) = dev.tx_queue(u32::from(self.index)) {
                if q.is_stopped() {
                    q.wake();
                }
            }
        }
        (work, bad)
    }

    /// Receives at most `budget` packets.
    fn rx_poll(&self, ctx: &PollContext<'_, Self>, budget: u32) -> (u32, bool) {
        if budget == 0 {
            // netpoll: transmit completions only, with interrupts disabled.
            return (0, false);
        }
        let dev = ctx.device();
        let mut done = 0u32;
        let mut work = false;
        let mut bad: Option<&str> = None;
        // Handed to GRO after the RX lock is dropped; linked through the buffers, no allocation.
        let mut ready = SkBuffList::new();
        let mut xdp_tx: KVec<Frame> = KVec::new();
        let mut redirected = false;
        // The program for this poll: our own reference, so that a detach meanwhile frees it
        // only after this poll.
        let prog = self.xdp_prog.lock().clone();
        {
            let mut guard = self.rx.lock();
            let rx = &mut *guard;
            'outer: while done < budget {
                let start_cons = rx.ring.rsp_cons();
                let responses = match rx.ring.responses() {
                    Ok(r) => r,
                    Err(_) => {
                        bad = Some("RX: Illegal number of responses");
                        break;
                    }
                };
                let mut cons = start_cons;
                let mut any = false;
                for slot in responses {
                    any = true;
                    work = true;
                    let idx = (cons as usize) & (RX_RING - 1);
                    cons = cons.wrapping_add(1);
                    let Some(grant) = rx.bufs[idx].take() else {
                        bad = Some("RX response without a posted buffer");
                        break 'outer;
                    };
                    let page = match grant.end() {
                        Ok((gref, page)) => {
                            rx.refs.release(gref);
                            page
                        }
                        Err(grant) => {
                            drop(grant);
                            bad = Some("RX: Grant still in use by backend domain");
                            break 'outer;
                        }
                    };
                    match rx.partial.as_mut() {
                        Some(p) if p.want_extra => {
                            drop(page);
                            let extra = slot.extra();
                            p.want_extra = extra.more();
                            match extra.check() {
                                Ok(Extra::Gso(g)) => p.gso = Some(g),
                                Ok(Extra::Hash(h)) => p.hash = Some(h),
                                Ok(Extra::Xdp { headroom }) => p.xdp_headroom = Some(headroom),
                                Ok(_) => {}
                                Err(e) => {
                                    Self::warn_rx(dev, format_args!("{e}"));
                                    p.bad = true;
                                }
                            }
                        }
                        Some(p) => {
                            let rsp = slot.response();
                            p.more_data = rsp.flags.contains(RxFlag::MoreData);
                            p.slots += 1;
                            Self::flush_head(p);
                            Self::add_data(dev, p, page, &rsp);
                            if p.slots == RX_MAX_SLOTS + 1 {
                                Self::warn_rx(dev, format_args!("Too many slots"));
                                p.bad = true;
                            }
                        }
                        None => {
                            let rsp = slot.response();
                            let skb = match ctx.alloc_skb(RX_COPY_THRESHOLD) {
                                Ok(s) => s,
                                Err(_) => {
                                    // Account the drop; the rest of the packet is consumed
                                    // by a partial marked bad once we have an skb again.
                                    drop(page);
                                    self.rx_stats.dropped.inc();
                                    continue;
                                }
                            };
                            let mut p = Partial {
                                skb,
                                head: None,
                                xdp_headroom: None,
                                csum_blank: rsp.flags.contains(RxFlag::CsumBlank),
                                data_validated: rsp.flags.contains(RxFlag::DataValidated),
                                want_extra: rsp.flags.contains(RxFlag::ExtraInfo),
                                more_data: rsp.flags.contains(RxFlag::MoreData),
                                gso: None,
                                hash: None,
                                slots: 1,
                                bad: false,
                            };
                            Self::hold_head(dev, &mut p, page, &rsp);
                            rx.partial = Some(p);
                        }
                    }
                    let complete = rx
                        .partial
                        .as_ref()
                        .is_some_and(|p| !p.want_extra && !p.more_data);
                    if complete {
                        if let Some(p) = rx.partial.take() {
                            match self.complete(dev, p, prog.as_ref()) {
                                Done::Skb(skb) => ready.push_back(skb),
                                Done::Tx(frame) => {
                                    if xdp_tx.push(frame, GFP_ATOMIC).is_err() {
                                        self.tx_stats.dropped.inc();
                                    }
                                }
                                Done::Redirected => redirected = true,
                                Done::Dropped => {}
                            }
                            done += 1;
                            if done >= budget {
                                break;
                            }
                        }
                    }
                }
                if !any {
                    break;
                }
                // The backend publishes whole packets: one cut short is dropped, as in C.
                if let Some(p) = rx.partial.take_if(|p| p.want_extra || p.more_data) {
                    Self::warn_rx(
                        dev,
                        format_args!(
                            "{}",
                            if p.want_extra {
                                "Missing extra info"
                            } else {
                                "Need more slots"
                            }
                        ),
                    );
                    self.rx_stats.errors.inc();
                    p.skb.drop_reason(DropReason::NotSpecified);
                }
            }
        }
        if let Some(why) = bad {
            self.mark_broken(dev, why);
        }
        while let Some(skb) = ready.pop_front() {
            ctx.gro_receive(skb);
        }
        if !xdp_tx.is_empty() {
            let n = xdp_tx.len();
            let mut frames = xdp_tx.drain_all();
            let taken = self.xdp_xmit(dev, || frames.next());
            // The frames the ring had no room for are dropped (returned) with `frames`.
            self.tx_stats.dropped.add((n - taken) as u64);
        }
        if redirected {
            xdp::flush();
        }
        drop(prog);
        if !self.is_broken() {
            self.refill_rx();
        }
        (done, work)
    }

    /// Keeps the first data slot of a packet aside (see [`Partial::head`]).
    fn hold_head(dev: &Device, p: &mut Partial, page: PoolPage, rsp: &netif::RxResponse) {
        if let Some((page, offset, size)) = Self::slot_data(dev, p, page, rsp) {
            p.head = Some((page, offset, size));
        }
    }

    /// The data of a response's slot, with its page, if it has any. The page of an empty slot
    /// goes back to the pool (no empty frags: XSA-448), as does that of a bad one, which is
    /// logged and makes the packet bad.
    fn slot_data(
        dev: &Device,
        p: &mut Partial,
        page: PoolPage,
        rsp: &netif::RxResponse,
    ) -> Option<(PoolPage, usize, usize)> {
        match rsp.data() {
            Ok((offset, size)) if size > 0 => return Some((page, offset, size)),
            Ok(_) => {}
            Err(_) => {
                Self::warn_rx(
                    dev,
                    format_args!("rx->offset: {}, size: {}", rsp.offset, rsp.status),
                );
                p.bad = true;
            }
        }
        drop(page);
        None
    }

    /// Where the data of the first slot really is: a backend that announces an XDP headroom
    /// and answers with offset 0 (the C netback) counts the headroom in the size; the C
    /// netfront takes the offset from the extra the same way. [`None`] if nothing is left.
    fn head_data(p: &Partial, offset: usize, size: usize) -> Option<(usize, usize)> {
        match p.xdp_headroom.map(usize::from) {
            Some(h) if h > 0 && offset == 0 => (size > h).then(|| (h, size - h)),
            _ => Some((offset, size)),
        }
    }

    /// Adds the held first slot to the packet, once it is known not to go through XDP.
    fn flush_head(p: &mut Partial) {
        if let Some((page, offset, size)) = p.head.take() {
            let added = match Self::head_data(p, offset, size) {
                Some((offset, size)) => p
                    .skb
                    .add_rx_pool_frag(page, offset as u32, size as u32, PAGE_SIZE as u32)
                    .is_ok(),
                None => false,
            };
            if !added {
                p.bad = true;
            }
        }
    }

    /// Runs the XDP program on a complete single-slot packet, if one is attached
    /// (`xennet_run_xdp`); otherwise, or if it passes the packet, prepares it for the stack.
    /// While a program is attached, packets of several slots are dropped, as in C.
    fn complete(&self, dev: &Device, mut p: Partial, prog: Option<&Prog>) -> Done {
        if let Some(prog) = prog {
            let head = if p.slots == 1 && !p.bad {
                p.head
                    .take()
                    .and_then(|(page, o, s)| Self::head_data(&p, o, s).map(|(o, s)| (page, o, s)))
            } else {
                None
            };
            let Some((page, offset, size)) = head else {
                self.rx_stats.dropped.inc();
                p.skb.drop_reason(DropReason::NotSpecified);
                return Done::Dropped;
            };
            let verdict = self.xdp_rxq.run(prog, page, offset, size);
            if matches!(
                verdict,
                Ok(Verdict::Drop { .. } | Verdict::Tx(_) | Verdict::Redirected)
            ) {
                // Received as far as the device is concerned: XDP is the first layer of the
                // stack (netdev qstats semantics). A passed packet is counted by `finish`.
                self.rx_stats.packet(size as u32);
            }
            match verdict {
                Ok(Verdict::Pass { page, offset, len }) => {
                    // The program may have moved the data: this is where it is now.
                    p.head = Some((page, offset, len));
                    p.xdp_headroom = None;
                }
                Ok(Verdict::Drop { page, .. }) => {
                    // Back to the pool, as in C (cleared before reuse for an untrusted backend).
                    drop(page);
                    self.xdp_drop.inc();
                    self.rx_stats.dropped.inc();
                    p.skb.consume();
                    return Done::Dropped;
                }
                Ok(Verdict::Tx(frame)) => {
                    self.xdp_tx.inc();
                    p.skb.consume();
                    return Done::Tx(frame);
                }
                Ok(Verdict::Redirected) => {
                    self.xdp_redirect.inc();
                    p.skb.consume();
                    return Done::Redirected;
                }
                Err((page, _)) => {
                    drop(page);
                    self.rx_stats.errors.inc();
                    p.skb.drop_reason(DropReason::NotSpecified);
                    return Done::Dropped;
                }
            }
        }
        Self::flush_head(&mut p);
        match self.finish(dev, p) {
            Some(skb) => Done::Skb(skb),
            None => Done::Dropped,
        }
    }

    fn add_data(dev: &Device, p: &mut Partial, page: PoolPage, rsp: &netif::RxResponse) {
        if let Some((page, offset, size)) = Self::slot_data(dev, p, page, rsp) {
            if p.skb
                .add_rx_pool_frag(page, offset as u32, size as u32, PAGE_SIZE as u32)
                .is_err()
            {
                p.bad = true;
            }
        }
    }

    /// Checks a complete packet and prepares it for the stack.
    fn finish(&self, dev: &Device, p: Partial) -> Option<SkBuff> {
        let Partial {
            mut skb,
            csum_blank,
            data_validated,
            gso,
            hash,
            bad,
            ..
        } = p;
        let len = skb.len();
        if bad || len < skb::ETH_HLEN {
            self.rx_stats.errors.inc();
            skb.drop_reason(DropReason::PktTooSmall);
            return None;
        }
        let pull = len.clamp(skb::ETH_HLEN, RX_COPY_THRESHOLD);
        if !skb.may_pull(pull) {
            self.rx_stats.dropped.inc();
            skb.drop_reason(DropReason::HdrTrunc);
            return None;
        }
        if skb.eth_type_trans(dev).is_err() {
            self.rx_stats.errors.inc();
            skb.drop_reason(DropReason::DevHdr);
            return None;
        }
        skb.reset_network_header();
        if let Some(h) = hash {
            // The backend's Toeplitz hash of the flow (as `xenvif_tx_submit` does for the other
            // direction): RPS and the socket layer use it as is.
            let kind = match h.type_ {
                netif::HashType::Ipv4Tcp | netif::HashType::Ipv6Tcp => skb::HashType::L4,
                netif::HashType::Ipv4 | netif::HashType::Ipv6 => skb::HashType::L3,
            };
            skb.set_hash(h.value, kind);
        }
        if let Some(g) = gso {
            skb.set_gso(
                g.size(),
                kernel::net::skb::GsoType::from_bits(g.type_().skb_gso_type()),
            );
        }
        if csum_blank {
            if skb.checksum_setup(false).is_err() {
                self.rx_stats.errors.inc();
                skb.drop_reason(DropReason::NotSpecified);
                return None;
            }
        } else if gso.is_some() {
            // The backend forgot the blank checksum of a GSO packet: fix it up.
            self.rx_gso_checksum_fixup.inc();
            if skb.checksum_setup(true).is_err() {
                self.rx_stats.errors.inc();
                skb.drop_reason(DropReason::NotSpecified);
                return None;
            }
        } else if data_validated {
            let _ = skb.set_ip_summed(skb::Checksum::Unnecessary);
        }
        // `len` counts the Ethernet header, as the C driver does.
        self.rx_stats.packet(len);
        Some(skb)
    }
}

impl Poller for Queue {
    fn poll(ctx: &PollContext<'_, Self>, budget: u32) -> u32 {
        let dev = ctx.device();
        if ctx.is_broken() {
            ctx.complete_done(0);
            return 0;
        }
        // TX completions belong to the TX channel's handler when there is one (as in C, whose
        // poll never reaps them): taken here first, they would leave it events with nothing to
        // do, which late EOI counts as spurious and answers by delaying the channel's EOI, up to
        // a second. So only what the handler deferred to us (one channel for both rings, XDP
        // frames in flight), and for netpoll (budget 0, interrupts off).
        let tx_work = if budget == 0 || ctx.eoi_pending.load(Relaxed) != 0 {
            ctx.tx_gc(dev)
        } else {
            false
        };
        let (done, rx_work) = ctx.rx_poll(ctx, budget);
        if done < budget {
            if ctx.complete_done(done) {
                // Re-arm notifications; if work slipped in, poll again.
                let more = {
                    let mut rx = ctx.rx.lock();
                    rx.ring.final_check_for_responses().unwrap_or(false)
                };
                if more {
                    ctx.napi().schedule();
                }
            }
            let tx_eoi = ctx.eoi_pending.xchg(0, Full) != 0;
            let rx_eoi = ctx.eoi_pending_rx.xchg(0, Full) != 0;
            if let Some(ch) = ctx.evtchn.lock().as_ref() {
                let rx_did = rx_work || done > 0;
                match &ch.rx {
                    // One channel for both rings: spurious if neither had work.
                    None if tx_eoi => ch.tx.lateeoi(!(tx_work || rx_did)),
                    None => {}
                    Some(rx) => {
                        if tx_eoi {
                            ch.tx.lateeoi(!tx_work);
                        }
                        if rx_eoi {
                            rx.lateeoi(!rx_did);
                        }
                    }
                }
            }
        }
        done
    }
}

#[kernel::macros::kunit_tests(xen_netfront_rs_queue)]
mod tests {
    use super::*;

    #[test]
    fn tx_slot_counting() {
        assert_eq!(tx_data_slots(1), 1);
        assert_eq!(tx_data_slots(PAGE_SIZE), 1);
        assert_eq!(tx_data_slots(PAGE_SIZE + 1), 2);
        assert_eq!(tx_data_slots(netif::MAX_TX_SIZE as usize), 16);
        // The largest packet plus its GSO extra fits the slots the queue keeps free.
        assert!(tx_data_slots(netif::MAX_TX_SIZE as usize) < TX_MAX_SLOTS as usize);
    }

    #[test]
    fn tx_pieces_cover_the_packet() {
        for len in [1usize, 14, 4095, 4096, 4097, 9000, 65535] {
            let slots = tx_data_slots(len);
            let total: usize = (0..slots).map(|i| tx_piece(len, i)).sum();
            assert_eq!(total, len);
            for i in 0..slots {
                assert!(tx_piece(len, i) > 0 && tx_piece(len, i) <= PAGE_SIZE);
            }
            assert_eq!(tx_piece(len, slots), 0);
        }
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(TX_RING, 256);
        assert_eq!(RX_RING, 256);
    }
}
