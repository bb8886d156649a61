// SPDX-License-Identifier: GPL-2.0

//! The `vif<domid>.<handle>` network device and its queues (C: `interface.c`).

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
            SkBuff,
            SkBuffList, //
        },
        stats::{
            Counter,
            QueueStats,
            Stats64, //
        },
    },
    new_work,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        new_mutex,
        new_spinlock,
        new_spinlock_bh,
        Arc,
        Mutex,
        SpinLock,
        SpinLockBh, //
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
        grant::MappedRing,
        netif::{
            RxBackRing,
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

/// The guest-TX state of a queue, used by its NAPI poll only.
pub(crate) struct TxState {
    pub(crate) ring: TxBackRing<MappedRing>,
    /// The packets of a poll (kept to avoid an allocation per poll).
    pub(crate) pkts: KVec<crate::tx::Packet>,
    /// The buffers of the packets of a poll.
    pub(crate) skbs: KVec<Option<SkBuff>>,
    /// The page fragments of the packets of a poll.
    pub(crate) pages: KVec<kernel::page::Page>,
}

/// The guest-RX state of a queue, used by its worker only.
pub(crate) struct RxState {
    pub(crate) ring: RxBackRing<MappedRing>,
    /// Where a packet is gathered before it is grant-copied to the frontend.
    pub(crate) buf: KVec<u8>,
    /// Since when the head packet waits for buffers of the frontend.
    pub(crate) stalled_since: Option<Instant<Monotonic>>,
}

/// The notification sides of the event channels of a queue.
#[derive(Clone, Copy, Default)]
pub(crate) struct Notifiers {
    pub(crate) tx: Option<Notifier>,
    pub(crate) rx: Option<Notifier>,
}

/// The state of a queue shared by its NAPI poll, its worker and the device operations.
#[pin_data]
pub(crate) struct Core {
    pub(crate) index: u16,
    pub(crate) domid: DomId,
    pub(crate) fe: FrontendFeatures,
    #[pin]
    pub(crate) tx: SpinLock<TxState>,
    #[pin]
    pub(crate) rx: Mutex<RxState>,
    /// Packets waiting to be sent to the frontend.
    #[pin]
    pub(crate) rxq: SpinLockBh<SkBuffList>,
    #[pin]
    pub(crate) notify: SpinLockBh<Notifiers>,
    /// Non-zero once the frontend misbehaved: the queue serves it no more.
    pub(crate) disabled: Atomic<u32>,
    /// Packets from the frontend (the device receives them).
    pub(crate) from_guest: QueueStats,
    /// Packets to the frontend (the device transmits them).
    pub(crate) to_guest: QueueStats,
    pub(crate) gso_checksum_fixup: Counter,
}

impl Core {
    pub(crate) fn is_disabled(&self) -> bool {
        self.disabled.load(Relaxed) != 0
    }

    pub(crate) fn notify_tx(&self) {
        let n = self.notify.lock().tx;
        if let Some(n) = n {
            n.notify();
        }
    }

    pub(crate) fn notify_rx(&self) {
        let n = self.notify.lock().rx;
        if let Some(n) = n {
            n.notify();
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
}

kernel::impl_has_work! {
    impl HasWork<Self> for Queue { self.work }
}

kernel::impl_has_delayed_work! {
    impl HasDelayedWork<Self, 1> for Queue { self.retry }
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
    pub(crate) fn new(
        dev: &Device,
        index: u16,
        domid: DomId,
        fe: FrontendFeatures,
        tx_ring: TxBackRing<MappedRing>,
        rx_ring: RxBackRing<MappedRing>,
    ) -> Result<Arc<Self>> {
        let buf = KVec::from_elem(0u8, RX_MAX_PACKET, GFP_KERNEL)?;
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
                        tx <- new_spinlock!(TxState {
                            ring: tx_ring,
                            pkts,
                            skbs,
                            pages,
                        }),
                        rx <- new_mutex!(RxState {
                            ring: rx_ring,
                            buf,
                            stalled_since: None,
                        }),
                        rxq <- new_spinlock_bh!(SkBuffList::new()),
                        notify <- new_spinlock_bh!(Notifiers::default()),
                        disabled: Atomic::new(0),
                        from_guest: QueueStats::new(),
                        to_guest: QueueStats::new(),
                        gso_checksum_fixup: Counter::new(),
                    })
                ),
                work <- new_work!("xen_netback_rs::rx"),
                retry <- kernel::new_delayed_work!("xen_netback_rs::rx_retry"),
            }? Error),
            GFP_KERNEL,
        )
    }

    /// Schedules the guest-RX worker.
    pub(crate) fn kick_rx(self: &Arc<Self>) {
        // Fails only if already queued, which is as good.
        let _ = workqueue::system().enqueue::<_, 0>(self.clone());
    }

    /// Schedules the guest-RX worker in a few milliseconds: the frontend had too few buffers
    /// for the head packet and does not notify when it posts more.
    pub(crate) fn kick_rx_later(self: &Arc<Self>, msecs: u32) {
        let _ = workqueue::system().enqueue_delayed::<_, 1>(self.clone(), msecs_to_jiffies(msecs));
    }
}

/// The private data of a `vif` network device.
#[pin_data]
pub(crate) struct Vif {
    pub(crate) domid: DomId,
    /// The connected queues; empty while the frontend is not connected.
    #[pin]
    pub(crate) queues: SpinLockBh<KVec<Arc<Queue>>>,
    /// The [`FrontendFeatures`] of the connected frontend, as bits.
    pub(crate) fe: Atomic<u32>,
}

impl Vif {
    pub(crate) fn new(domid: DomId) -> impl PinInit<Self> {
        pin_init!(Vif {
            domid,
            queues <- new_spinlock_bh!(KVec::new()),
            fe: Atomic::new(0),
        })
    }

    fn for_each_queue(&self, mut f: impl FnMut(&Core)) {
        let queues = self.queues.lock();
        for q in queues.iter() {
            f(&q.napi);
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
        let outcome = {
            let queues = this.queues.lock();
            match queues.get(usize::from(index)) {
                Some(q) if !q.napi.is_disabled() && skb.len() as usize <= RX_MAX_PACKET => {
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

    fn get_stats64(_dev: &Device, this: Pin<&Self>, stats: &mut Stats64) {
        this.for_each_queue(|c| {
            stats.add_rx(&c.from_guest);
            stats.add_tx(&c.to_guest);
        });
    }

    fn fix_features(_dev: &Device, this: Pin<&Self>, features: Features) -> Features {
        FrontendFeatures::from_bits(this.fe.load(Relaxed)).fix(features)
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
        let mut fixup = 0;
        this.for_each_queue(|c| fixup += c.gso_checksum_fixup.get());
        for v in values.iter_mut() {
            *v = 0;
        }
        if let Some(v) = values.get_mut(0) {
            *v = fixup;
        }
    }
}
