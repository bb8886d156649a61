// SPDX-License-Identifier: GPL-2.0

//! The `vif<domid>.<handle>` network device and its queues (C: `interface.c`).

use crate::hash::{
    HashCache,
    HashConfig,
    McastList, //
};
use kernel::{
    net::{
        dev::{
            self,
            Device,
            Features,
            NetdevTx, //
        },
        ethtool,
        napi::{
            Napi,
            PollContext,
            Poller, //
        },
        skb::{
            DropReason,
            PacketType,
            SkBuff,
            SkBuffList,
            SkBuffRef, //
        },
        stats::{
            Counter,
            QueueStats,
            QueueStatsRx,
            QueueStatsTx,
            Stats64, //
        },
    },
    new_work,
    prelude::*,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        new_mutex,
        new_spinlock_bh,
        new_spinlock_irq,
        Arc,
        Mutex,
        SpinLockBh,
        SpinLockIrq, //
    },
    time::{
        msecs_to_jiffies,
        Instant,
        Monotonic, //
    },
    workqueue::{
        self,
        DelayedWork,
        Work,
        WorkItem, //
    },
    xen::{
        evtchn::Notifier,
        grant::{
            CopyBatch,
            MappedRing, //
        },
        netif::{
            HashAlgorithm,
            RxBackRing,
            Status,
            TxBackRing,
            RX_RING_SIZE,
            TX_RING_SIZE, //
        },
        DomId,
    },
};

/// Bytes of packets queued towards the frontend before the netdev queue is stopped
/// (`XENVIF_RX_QUEUE_BYTES`: half a ring of full pages).
pub(crate) const RX_QUEUE_MAX_BYTES: usize = 128 * 4096;

/// Bytes of a frame's headers read to compute its hash: Ethernet, a VLAN tag, IPv6 and up to 180
/// bytes of its extension headers, TCP ports.
pub(crate) const HASH_HEADER_BYTES: usize = 256;

/// Delay before the guest-RX worker looks again at a frontend short of buffers.
pub(crate) const RX_RETRY_MSECS: u32 = 10;

/// Largest packet towards the frontend: what the frontend can take in
/// [`crate::LEGACY_SLOTS_MAX`] - 1 pages (one slot is kept for the GSO extra).
pub(crate) const RX_MAX_PACKET: usize = (crate::LEGACY_SLOTS_MAX - 1) * 4096;

/// What the frontend announced in xenstore.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FrontendFeatures {
    /// `feature-sg`: takes multi-slot packets.
    pub(crate) sg: bool,
    /// `feature-gso-tcpv4`.
    pub(crate) gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub(crate) gso_tcpv6: bool,
    /// Not `feature-no-csum-offload`: takes partial IPv4 checksums.
    pub(crate) ip_csum: bool,
    /// `feature-ipv6-csum-offload`.
    pub(crate) ipv6_csum: bool,
    /// `feature-rx-notify`.
    pub(crate) rx_notify: bool,
}

impl FrontendFeatures {
    const SG: u32 = 1 << 0;
    const GSO4: u32 = 1 << 1;
    const GSO6: u32 = 1 << 2;
    const CSUM4: u32 = 1 << 3;
    const CSUM6: u32 = 1 << 4;
    const NOTIFY: u32 = 1 << 5;

    pub(crate) fn to_bits(self) -> u32 {
        let mut b = 0;
        for (on, bit) in [
            (self.sg, Self::SG),
            (self.gso_tcpv4, Self::GSO4),
            (self.gso_tcpv6, Self::GSO6),
            (self.ip_csum, Self::CSUM4),
            (self.ipv6_csum, Self::CSUM6),
            (self.rx_notify, Self::NOTIFY),
        ] {
            if on {
                b |= bit;
            }
        }
        b
    }

    pub(crate) fn from_bits(b: u32) -> Self {
        Self {
            sg: b & Self::SG != 0,
            gso_tcpv4: b & Self::GSO4 != 0,
            gso_tcpv6: b & Self::GSO6 != 0,
            ip_csum: b & Self::CSUM4 != 0,
            ipv6_csum: b & Self::CSUM6 != 0,
            rx_notify: b & Self::NOTIFY != 0,
        }
    }

    /// The device features this frontend allows (C: `xenvif_fix_features`).
    pub(crate) fn fix(self, features: Features) -> Features {
        kernel::xen::netif::PeerFeatures {
            sg: self.sg,
            gso_tcpv4: self.gso_tcpv4,
            gso_tcpv6: self.gso_tcpv6,
            ip_csum: self.ip_csum,
            ipv6_csum: self.ipv6_csum,
        }
        .fix(features)
    }
}

/// What a vif's queues share with its xenstore watches and its control ring.
#[pin_data]
pub(crate) struct VifShared {
    /// The `rate` limit: bytes per window (`u64::MAX`: none) ...
    pub(crate) rate_bytes: Atomic<u64>,
    /// ... and the window, in microseconds.
    pub(crate) rate_usec: Atomic<u64>,
    /// Changed (with release ordering) after each change of the limit.
    pub(crate) rate_gen: Atomic<u32>,
    /// Number of queues whose frontend stalled (the carrier is off while it is not zero).
    pub(crate) stalled: Atomic<u32>,
    /// Bytes the frontend wants before the data of each packet it receives (`xdp-headroom`; at
    /// most half a page). TSO towards the frontend is off while it is not zero.
    pub(crate) xdp_headroom: Atomic<u32>,
    /// Number of queues the frontend connected (or is connecting): the bound of the entries of
    /// the hash mapping table.
    pub(crate) num_queues: Atomic<u32>,
    /// The hash configuration of the control ring (C: `vif->hash`). The locks of the transmit
    /// path (queue selection, the multicast filter, the queues) are interrupt-safe: netpoll
    /// (netconsole on the bridge) transmits with interrupts disabled.
    #[pin]
    pub(crate) hash: SpinLockIrq<HashConfig>,
    /// The hashes computed with the current key (`hash_cache_size`). Taken under `hash` only.
    #[pin]
    pub(crate) hash_cache: SpinLockIrq<HashCache>,
    /// Non-zero while the frontend asks for multicast filtering (`request-multicast-control`).
    pub(crate) multicast_control: Atomic<u32>,
    /// The multicast addresses the frontend subscribed to (`MCAST_ADD`/`MCAST_DEL`).
    #[pin]
    pub(crate) mcast: SpinLockIrq<McastList>,
}

impl VifShared {
    pub(crate) fn new() -> Result<Arc<Self>> {
        let cache = HashCache::new(crate::hash_cache_size())?;
        Arc::pin_init(
            pin_init!(Self {
                rate_bytes: Atomic::new(u64::MAX),
                rate_usec: Atomic::new(0),
                rate_gen: Atomic::new(0),
                stalled: Atomic::new(0),
                xdp_headroom: Atomic::new(0),
                num_queues: Atomic::new(0),
                hash <- new_spinlock_irq!(HashConfig::new()),
                hash_cache <- new_spinlock_irq!(cache),
                multicast_control: Atomic::new(0),
                mcast <- new_spinlock_irq!(McastList::new()),
            }),
            GFP_KERNEL,
        )
    }

    /// Forgets what the frontend set through its control ring and its multicast extras
    /// (disconnect; C: `xenvif_deinit_hash`, `xenvif_mcast_addr_list_free`).
    pub(crate) fn reset_ctrl(&self) {
        self.set_hash(HashConfig::new());
        self.mcast.lock().clear();
        self.multicast_control.store(0, Relaxed);
    }

    /// Whether a frame towards the frontend passes its multicast filter (C: `xenvif_start_xmit`
    /// with `xenvif_mcast_match`): with filtering on, a frame received as multicast on another
    /// port (`PACKET_MULTICAST`) must be addressed to a group the frontend added. Broadcast and
    /// what dom0's own stack sends (`PACKET_HOST`) pass, as in C.
    pub(crate) fn mcast_pass(&self, skb: &SkBuffRef) -> bool {
        if skb.pkt_type() != PacketType::Multicast || self.multicast_control.load(Relaxed) == 0 {
            return true;
        }
        let mut dst = [0u8; 6];
        skb.copy_bits(0, &mut dst).is_ok() && self.mcast.lock().contains(&dst)
    }

    /// The hash to send with a frame towards the frontend, if it enabled hashing and a type
    /// applies (C: `xenvif_set_skb_hash`, the `HASH` extra of `rx.c`).
    pub(crate) fn hash_of(&self, frame: &[u8]) -> Option<kernel::xen::netif::Hash> {
        let (value, type_) = {
            let cfg = self.hash.lock();
            let mut cache = self.hash_cache.lock();
            cfg.hash_cached(frame, &mut cache)?
        };
        Some(kernel::xen::netif::Hash {
            type_,
            algorithm: kernel::xen::netif::HashAlgorithm::Toeplitz,
            value,
        })
    }

    /// Installs a new hash configuration; the cached hashes go if the key changed (C:
    /// `xenvif_set_hash_key` flushes the cache). Also on a change of the algorithm or the flags:
    /// not needed for correctness (the cache is keyed by the bytes hashed), but it keeps what
    /// `ctrl` in debugfs shows in step with the configuration.
    pub(crate) fn set_hash(&self, new: HashConfig) {
        let mut cfg = self.hash.lock();
        let flush = cfg.key != new.key || cfg.flags != new.flags || cfg.alg != new.alg;
        *cfg = new;
        // Under the `hash` lock: no hash computed with the old key is added after the flush.
        if flush {
            self.hash_cache.lock().flush();
        }
    }

    /// Sets the `rate` limit; the queues pick it up at their next poll.
    pub(crate) fn set_rate(&self, bytes: u64, usec: u64) {
        self.rate_bytes.store(bytes, Relaxed);
        self.rate_usec.store(usec, Relaxed);
        self.rate_gen.fetch_add(1, Release);
    }
}

/// The guest-TX state of a queue, used by its NAPI poll only.
pub(crate) struct TxState {
    pub(crate) ring: TxBackRing<MappedRing>,
    /// A packet read from the ring that waits for credit (the `rate` limit).
    pub(crate) held: Option<crate::tx::Packet>,
    pub(crate) credit: crate::tx::Credit,
    /// The [`VifShared::rate_gen`] the credit was set from.
    pub(crate) rate_gen: u32,
    /// The origin of the credit scheduler's clock.
    pub(crate) clock_base: Instant<Monotonic>,
    /// Packets handled since the last late EOI of the TX event channel.
    pub(crate) work_since_eoi: u32,
    /// The packets of a poll (kept to avoid an allocation per poll).
    pub(crate) pkts: KVec<crate::tx::Packet>,
    /// The buffers of the packets of a poll.
    pub(crate) skbs: KVec<Option<SkBuff>>,
    /// The page fragments of the packets of a poll.
    pub(crate) pages: KVec<kernel::page::Page>,
    /// Map mode (`tx_mode=1`): the mapped pages and their requests.
    pub(crate) map: Option<crate::zerocopy::MapState>,
}

/// The guest-RX state of a queue, used by its worker only.
pub(crate) struct RxState {
    pub(crate) ring: RxBackRing<MappedRing>,
    /// Packets taken with their requests, waiting for the batch's grant copies (at most
    /// [`crate::rx::BATCH_PACKETS`]).
    pub(crate) pending: KVec<crate::rx::RxPacket>,
    /// The grant copy operations of a batch, kept between batches (empty then).
    pub(crate) copy: CopyBatch<'static>,
    /// Since when the head packet waits for buffers of the frontend.
    pub(crate) stalled_since: Option<Instant<Monotonic>>,
    /// When the frontend last had room for the head packet (or the queue was empty).
    pub(crate) last_progress: Instant<Monotonic>,
    /// The frontend is considered stalled (`rx_stall_timeout_msecs`): counted in
    /// [`VifShared::stalled`].
    pub(crate) stalled: bool,
    /// Runs of the worker (debugfs).
    pub(crate) runs: u64,
}

/// The notification side of an event channel once it is published, and whether a notification
/// was due before: the NAPI poll and the workers may push responses as soon as a channel is bound,
/// before `connect` publishes its notifier, and a frontend that waits for the event (C's netfront
/// reaps TX completions only on it) would otherwise wait forever.
#[derive(Clone, Copy, Default)]
pub(crate) struct NotifySlot {
    notifier: Option<Notifier>,
    missed: bool,
}

impl NotifySlot {
    /// The published notifier, if any.
    pub(crate) fn get(&self) -> Option<Notifier> {
        self.notifier
    }

    /// A notification is due: the notifier to send it on, or `None` (then it is remembered and
    /// sent by [`Self::publish`]).
    pub(crate) fn due(&mut self) -> Option<Notifier> {
        self.missed = self.notifier.is_none();
        self.notifier
    }

    /// Publishes `notifier`; returns it if a notification was due before (the caller sends it
    /// once the lock is dropped).
    pub(crate) fn publish(&mut self, notifier: Notifier) -> Option<Notifier> {
        let missed = self.missed;
        *self = Self {
            notifier: Some(notifier),
            missed: false,
        };
        missed.then_some(notifier)
    }
}

/// The notification sides of the event channels of a queue.
#[derive(Clone, Copy, Default)]
pub(crate) struct Notifiers {
    pub(crate) tx: NotifySlot,
    pub(crate) rx: NotifySlot,
}

/// The state of a queue shared by its NAPI poll, its worker and the device operations.
#[pin_data]
pub(crate) struct Core {
    pub(crate) index: u16,
    pub(crate) domid: DomId,
    pub(crate) fe: FrontendFeatures,
    /// Bottom halves off: the NAPI poll takes it, and so do debugfs readers in process context.
    #[pin]
    pub(crate) tx: SpinLockBh<TxState>,
    #[pin]
    pub(crate) rx: Mutex<RxState>,
    /// Packets waiting to be sent to the frontend (interrupt-safe: the transmit path).
    #[pin]
    pub(crate) rxq: SpinLockIrq<SkBuffList>,
    #[pin]
    pub(crate) notify: SpinLockBh<Notifiers>,
    /// Non-zero once the frontend misbehaved: the queue serves it no more.
    pub(crate) disabled: Atomic<u32>,
    /// Non-zero while the TX (RX) event channel waits for its late EOI from the NAPI poll (the RX
    /// worker): split event channels only (C: `eoi_pending`).
    pub(crate) tx_eoi: Atomic<u32>,
    pub(crate) rx_eoi: Atomic<u32>,
    /// Packets from the frontend (the device receives them).
    pub(crate) from_guest: QueueStats,
    /// Packets to the frontend (the device transmits them).
    pub(crate) to_guest: QueueStats,
    pub(crate) gso_checksum_fixup: Counter,
    /// The zero-copy counters (map mode).
    pub(crate) zc: Arc<crate::zerocopy::ZcShared>,
    pub(crate) shared: Arc<VifShared>,
    /// The queue itself, for the NAPI poll to arm the credit timer; set while connected (the
    /// cycle is broken at disconnect).
    #[pin]
    pub(crate) me: SpinLockBh<Option<Arc<Queue>>>,
}

impl Core {
    pub(crate) fn is_disabled(&self) -> bool {
        self.disabled.load(Relaxed) != 0
    }

    pub(crate) fn notify_tx(&self) {
        let n = self.notify.lock().tx.due();
        if let Some(n) = n {
            n.notify();
        }
    }

    pub(crate) fn notify_rx(&self) {
        let n = self.notify.lock().rx.due();
        if let Some(n) = n {
            n.notify();
        }
    }

    /// Publishes the notification sides of the bound channels, and sends the notifications
    /// that were due before.
    pub(crate) fn publish_notifiers(&self, tx: Notifier, rx: Notifier) {
        let missed = {
            let mut g = self.notify.lock();
            [g.tx.publish(tx), g.rx.publish(rx)]
        };
        for n in missed.into_iter().flatten() {
            n.notify();
        }
    }

    /// The late EOI of the TX event channel, if its handler deferred one: the NAPI poll is done
    /// (`spurious`: the event found no work).
    pub(crate) fn eoi_tx(&self, spurious: bool) {
        if self.tx_eoi.xchg(0, Relaxed) != 0 {
            match self.notify.lock().tx.get() {
                Some(n) => n.lateeoi(spurious),
                // An event that came between the binding and the publication of the notifiers
                // (connect): EOI'd by the run that `connect` schedules once they are published.
                None => self.tx_eoi.store(1, Relaxed),
            }
        }
    }

    /// The late EOI of the RX event channel, if its handler deferred one: the worker is done.
    pub(crate) fn eoi_rx(&self, spurious: bool) {
        if self.rx_eoi.xchg(0, Relaxed) != 0 {
            match self.notify.lock().rx.get() {
                Some(n) => n.lateeoi(spurious),
                // An event that came between the binding and the publication of the notifiers
                // (connect): EOI'd by the run that `connect` schedules once they are published.
                None => self.rx_eoi.store(1, Relaxed),
            }
        }
    }

    /// Stops serving a frontend that broke the protocol (C: `xenvif_fatal_tx_err`): the rings
    /// are not touched again and the carrier goes off. The frontend may reconnect.
    pub(crate) fn fatal(&self, dev: &Device, why: core::fmt::Arguments<'_>) {
        if self.disabled.xchg(1, Relaxed) == 0 {
            let name = dev.name().to_str().unwrap_or("vif");
            pr_err!("{name}: {why}\n");
            pr_err!("{name}: fatal error; disabling device\n");
            dev.carrier_off();
        }
    }
}

impl Poller for Core {
    fn poll(ctx: &PollContext<'_, Self>, budget: u32) -> u32 {
        crate::tx::poll(ctx, budget)
    }
}

/// A queue: a TX and an RX ring pair of the frontend.
#[pin_data]
pub(crate) struct Queue {
    #[pin]
    pub(crate) napi: Napi<Core>,
    #[pin]
    work: Work<Queue>,
    /// Runs the worker again later, when the frontend had too few buffers.
    #[pin]
    retry: DelayedWork<Queue, 1>,
    /// Polls the TX ring again when the credit of the `rate` limit is back.
    #[pin]
    credit: DelayedWork<Queue, 2>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Queue { self.work }
}

kernel::impl_has_delayed_work! {
    impl HasDelayedWork<Self, 1> for Queue { self.retry }
}

kernel::impl_has_delayed_work! {
    impl HasDelayedWork<Self, 2> for Queue { self.credit }
}

impl WorkItem<2> for Queue {
    type Pointer = Arc<Queue>;

    fn run(this: Arc<Queue>) {
        // With bottom halves off, so that the poll runs when they are enabled again rather than
        // at the next interrupt.
        let _bh = this.napi.notify.lock();
        this.napi.schedule();
    }
}

impl WorkItem<1> for Queue {
    type Pointer = Arc<Queue>;

    fn run(this: Arc<Queue>) {
        crate::rx::rx_action(&this);
    }
}

impl WorkItem for Queue {
    type Pointer = Arc<Queue>;

    fn run(this: Arc<Queue>) {
        crate::rx::rx_action(&this);
    }
}

impl Queue {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        dev: &Device,
        index: u16,
        domid: DomId,
        fe: FrontendFeatures,
        tx_ring: TxBackRing<MappedRing>,
        rx_ring: RxBackRing<MappedRing>,
        shared: Arc<VifShared>,
        zc: Arc<crate::zerocopy::ZcShared>,
        map: Option<crate::zerocopy::MapState>,
    ) -> Result<Arc<Self>> {
        let now = Instant::<Monotonic>::now();
        let pending = KVec::with_capacity(crate::rx::BATCH_PACKETS, GFP_KERNEL)?;
        let copy = CopyBatch::with_capacity(crate::rx::BATCH_OPS, GFP_KERNEL)?;
        let pkts = KVec::with_capacity(crate::tx::MAX_PACKETS_PER_POLL, GFP_KERNEL)?;
        let skbs = KVec::with_capacity(crate::tx::MAX_PACKETS_PER_POLL, GFP_KERNEL)?;
        let pages = KVec::with_capacity(
            crate::tx::MAX_PACKETS_PER_POLL * crate::tx::MAX_PAGES,
            GFP_KERNEL,
        )?;
        Arc::pin_init(
            try_pin_init!(Queue {
                napi <- Napi::new(
                    dev,
                    pin_init!(Core {
                        index,
                        domid,
                        fe,
                        tx <- new_spinlock_bh!(TxState {
                            ring: tx_ring,
                            held: None,
                            credit: crate::tx::Credit::UNLIMITED,
                            rate_gen: shared.rate_gen.load(Acquire).wrapping_sub(1),
                            clock_base: now,
                            work_since_eoi: 0,
                            pkts,
                            skbs,
                            pages,
                            map,
                        }),
                        rx <- new_mutex!(RxState {
                            ring: rx_ring,
                            pending,
                            copy,
                            stalled_since: None,
                            last_progress: now,
                            stalled: false,
                            runs: 0,
                        }),
                        rxq <- new_spinlock_irq!(SkBuffList::new()),
                        notify <- new_spinlock_bh!(Notifiers::default()),
                        disabled: Atomic::new(0),
                        tx_eoi: Atomic::new(0),
                        rx_eoi: Atomic::new(0),
                        from_guest: QueueStats::new(),
                        to_guest: QueueStats::new(),
                        gso_checksum_fixup: Counter::new(),
                        zc,
                        shared,
                        me <- new_spinlock_bh!(None),
                    })
                ),
                work <- new_work!("xen_netback_rs::rx"),
                retry <- kernel::new_delayed_work!("xen_netback_rs::rx_retry"),
                credit <- kernel::new_delayed_work!("xen_netback_rs::tx_credit"),
            }? Error),
            GFP_KERNEL,
        )
    }

    /// Schedules the guest-RX worker.
    pub(crate) fn kick_rx(self: &Arc<Self>) {
        // Fails only if already queued, which is as good.
        let _ = workqueue::system_long().enqueue::<_, 0>(self.clone());
    }

    /// Schedules the guest-RX worker in a few milliseconds: the frontend had too few buffers
    /// for the head packet and does not notify when it posts more.
    pub(crate) fn kick_rx_later(self: &Arc<Self>, msecs: u32) {
        let _ =
            workqueue::system_long().enqueue_delayed::<_, 1>(self.clone(), msecs_to_jiffies(msecs));
    }

    /// Polls the TX ring again in `usecs` microseconds (at least a jiffy), when the credit
    /// scheduler has credit again.
    pub(crate) fn credit_later(self: &Arc<Self>, usecs: u64) {
        let msecs = usecs.div_ceil(1000).clamp(1, 60_000) as u32;
        let _ =
            workqueue::system_long().enqueue_delayed::<_, 2>(self.clone(), msecs_to_jiffies(msecs));
    }

    /// Waits for the work items of a disconnected queue (disabled, NAPI off, no interrupts):
    /// each runs once more if pending, and does nothing but drop what the queue holds.
    pub(crate) fn flush_work(&self) {
        kernel::xen::work::flush_delayed(&self.credit);
        kernel::xen::work::flush_delayed(&self.retry);
        kernel::xen::work::flush(&self.work);
    }
}

/// The private data of a `vif` network device.
#[pin_data]
pub(crate) struct Vif {
    pub(crate) domid: DomId,
    pub(crate) shared: Arc<VifShared>,
    /// The connected queues; empty while the frontend is not connected (interrupt-safe: the
    /// transmit path).
    #[pin]
    pub(crate) queues: SpinLockIrq<KVec<Arc<Queue>>>,
    /// The [`FrontendFeatures`] of the connected frontend, as bits.
    pub(crate) fe: Atomic<u32>,
    /// Counters of the queues of earlier connections, so that the device totals never go
    /// back when the frontend reconnects.
    old_from_guest: QueueStats,
    old_to_guest: QueueStats,
    old_gso_checksum_fixup: Counter,
}

impl Vif {
    pub(crate) fn new(domid: DomId, shared: Arc<VifShared>) -> impl PinInit<Self> {
        pin_init!(Vif {
            domid,
            shared,
            queues <- new_spinlock_irq!(KVec::new()),
            fe: Atomic::new(0),
            old_from_guest: QueueStats::new(),
            old_to_guest: QueueStats::new(),
            old_gso_checksum_fixup: Counter::new(),
        })
    }

    /// Takes the queues out (under the queue lock, so transmits see none afterwards) and keeps
    /// their counters in the device totals.
    pub(crate) fn take_queues(&self) -> KVec<Arc<Queue>> {
        let mut queues = self.queues.lock();
        for q in queues.iter() {
            self.old_from_guest.absorb(&q.napi.from_guest);
            self.old_to_guest.absorb(&q.napi.to_guest);
            self.old_gso_checksum_fixup
                .add(q.napi.gso_checksum_fixup.get());
        }
        core::mem::take(&mut *queues)
    }

    /// Runs `f` on queue `index`, if connected, under the queue lock.
    fn with_queue(&self, index: u32, f: impl FnOnce(Option<&Core>)) {
        let queues = self.queues.lock();
        f(queues.get(index as usize).map(|q| &*q.napi));
    }

    fn for_each_queue(&self, mut f: impl FnMut(&Core)) {
        let queues = self.queues.lock();
        for q in queues.iter() {
            f(&q.napi);
        }
    }

    /// Runs `f` on the counters (from the guest, to the guest) of every queue and of the earlier
    /// queues, under the queue lock.
    fn for_each_queue_and_old(&self, mut f: impl FnMut(&QueueStats, &QueueStats)) {
        let queues = self.queues.lock();
        f(&self.old_from_guest, &self.old_to_guest);
        for q in queues.iter() {
            f(&q.napi.from_guest, &q.napi.to_guest);
        }
    }
}

/// Outcome of [`Vif`]'s transmit path decided under the queue lock; acted on after.
enum Xmit {
    Queued,
    Drop(SkBuff),
}

#[vtable]
impl dev::Operations for Vif {
    fn start_xmit(dev: &Device, this: Pin<&Self>, skb: SkBuff) -> NetdevTx {
        let index = skb.queue_mapping();
        if !this.shared.mcast_pass(&skb) {
            // Not in the frontend's multicast filter.
            if let Some(q) = this.queues.lock().get(usize::from(index)) {
                q.napi.to_guest.dropped.inc();
            }
            skb.drop_reason(DropReason::NotSpecified);
            return NetdevTx::Ok;
        }
        let outcome = {
            let queues = this.queues.lock();
            match queues.get(usize::from(index)) {
                Some(q) if !q.napi.is_disabled() && skb.len() as usize <= RX_MAX_PACKET => {
                    // Before it is queued: the RX thread may send and free it right after.
                    skb.tx_timestamp();
                    let full = {
                        let mut rxq = q.napi.rxq.lock();
                        rxq.push_back(skb);
                        rxq.bytes() > RX_QUEUE_MAX_BYTES
                    };
                    if full {
                        if let Some(txq) = dev.tx_queue(u32::from(index)) {
                            txq.stop();
                        }
                    }
                    q.kick_rx();
                    Xmit::Queued
                }
                Some(q) => {
                    q.napi.to_guest.dropped.inc();
                    Xmit::Drop(skb)
                }
                None => Xmit::Drop(skb),
            }
        };
        // Never free a packet under the queue lock (XSA-424).
        if let Xmit::Drop(skb) = outcome {
            skb.drop_reason(DropReason::NotSpecified);
        }
        NetdevTx::Ok
    }

    fn select_queue(dev: &Device, this: Pin<&Self>, skb: &SkBuffRef) -> u16 {
        // C: `xenvif_select_queue`: the frontend's hash and mapping if it set an algorithm, the
        // stack's flow hash otherwise.
        let n = dev.real_num_tx_queues().max(1);
        let mut hdr = [0u8; HASH_HEADER_BYTES];
        let len = (skb.len() as usize).min(HASH_HEADER_BYTES);
        let q = {
            let cfg = this.shared.hash.lock();
            if cfg.alg == HashAlgorithm::None {
                None
            } else {
                let hash = match skb.copy_bits(0, &mut hdr[..len]) {
                    Ok(()) => {
                        let mut cache = this.shared.hash_cache.lock();
                        cfg.hash_cached(&hdr[..len], &mut cache)
                            .map_or(0, |(h, _)| h)
                    }
                    Err(_) => 0,
                };
                Some(cfg.queue(hash, n))
            }
        };
        let q = q.unwrap_or_else(|| skb.hash() % n);
        // The mapping only holds queues below the number connected (checked when it was set).
        q.min(n - 1) as u16
    }

    fn get_stats64(_dev: &Device, this: Pin<&Self>, stats: &mut Stats64) {
        // Under the queue lock, as `take_queues`: every packet is counted exactly once.
        this.for_each_queue_and_old(|rx, tx| {
            stats.add_rx(rx);
            stats.add_tx(tx);
        });
    }

    // Beyond the C driver: per-queue statistics (netdev netlink `qstats`). The device
    // receives what the frontend transmits.
    fn get_queue_stats_rx(_dev: &Device, this: Pin<&Self>, index: u32, rx: &mut QueueStatsRx) {
        this.with_queue(index, |q| rx.add_queue(q.map(|q| &q.from_guest)));
    }

    fn get_queue_stats_tx(_dev: &Device, this: Pin<&Self>, index: u32, tx: &mut QueueStatsTx) {
        this.with_queue(index, |q| tx.add_queue(q.map(|q| &q.to_guest)));
    }

    fn get_base_stats(
        _dev: &Device,
        this: Pin<&Self>,
        rx: &mut QueueStatsRx,
        tx: &mut QueueStatsTx,
    ) {
        rx.add(&this.old_from_guest);
        tx.add(&this.old_to_guest);
    }

    fn fix_features(_dev: &Device, this: Pin<&Self>, features: Features) -> Features {
        let mut features = FrontendFeatures::from_bits(this.fe.load(Relaxed)).fix(features);
        if this.shared.xdp_headroom.load(Relaxed) != 0 {
            // A packet must fit in the slots the frontend guarantees, its first slot shortened by
            // the headroom and one slot taken by the XDP extra: segment in dom0.
            features &= !(Features::TSO | Features::TSO6);
        }
        features
    }
}

/// The ethtool statistics, with the names of the C driver.
const STAT_NAMES: &[&CStr] = &[
    c"rx_gso_checksum_fixup",
    c"tx_zerocopy_sent",
    c"tx_zerocopy_success",
    c"tx_zerocopy_fail",
    c"tx_frag_overflow",
];

#[vtable]
impl ethtool::Operations for Vif {
    const STATS: &'static [&'static CStr] = STAT_NAMES;

    fn get_drvinfo(_dev: &Device, _this: Pin<&Self>, info: &mut ethtool::DrvInfo) {
        info.set_driver(c"vif");
    }

    fn get_channels(_dev: &Device, this: Pin<&Self>, ch: &mut ethtool::Channels) {
        // Beyond the C driver: one combined channel per queue the frontend connected.
        ch.max_combined = crate::max_queues();
        ch.combined_count = this.queues.lock().len() as u32;
    }

    fn get_ringparam(_dev: &Device, _this: Pin<&Self>, ring: &mut ethtool::RingParam) {
        // The rings are one page each, sized by the protocol (the frontend's TX ring carries
        // what the device receives).
        ring.rx_max_pending = TX_RING_SIZE;
        ring.rx_pending = TX_RING_SIZE;
        ring.tx_max_pending = RX_RING_SIZE;
        ring.tx_pending = RX_RING_SIZE;
    }

    fn get_stats(_dev: &Device, this: Pin<&Self>, values: &mut [u64]) {
        let mut sums = [0u64; 5];
        // The queues of earlier connections count in `rx_gso_checksum_fixup`, as in the totals.
        sums[0] = this.old_gso_checksum_fixup.get();
        this.for_each_queue(|c| {
            sums[0] += c.gso_checksum_fixup.get();
            sums[1] += c.zc.sent.get();
            sums[2] += c.zc.success.get();
            sums[3] += c.zc.fail.get();
        });
        for (i, v) in values.iter_mut().enumerate() {
            *v = sums.get(i).copied().unwrap_or(0);
        }
    }
}

/// Applies a multicast filter update from the TX ring (C: `xenvif_mcast_add`,
/// `xenvif_mcast_del`) and returns the status of its response.
pub(crate) fn apply_mcast(
    dev: &Device,
    shared: &VifShared,
    op: Option<kernel::xen::netif::Extra>,
) -> Status {
    use kernel::xen::netif::Extra;
    match op {
        Some(Extra::McastAdd(addr)) => match shared.mcast.lock().add(addr) {
            Ok(()) => Status::Okay,
            Err(_) => {
                if dev::ratelimit() {
                    let name = dev.name().to_str().unwrap_or("vif");
                    pr_err!("{name}: Too many multicast addresses\n");
                }
                Status::Error
            }
        },
        Some(Extra::McastDel(addr)) => {
            shared.mcast.lock().del(addr);
            Status::Okay
        }
        _ => Status::Okay,
    }
}
