// SPDX-License-Identifier: GPL-2.0

//! The Ethernet device: operations, features and ethtool.

use crate::{
    mcast::{
        McList,
        Mcast, //
    },
    queue::Queue,
};
use kernel::{
    alloc::flags::GFP_ATOMIC,
    net::{
        dev::{
            self,
            Device,
            Features,
            NetdevTx, //
        },
        ethtool,
        napi::Napi,
        skb::{
            DropReason,
            SkBuff, //
        },
        stats::{
            Counter,
            QueueStats,
            QueueStatsRx,
            QueueStatsTx,
            Stats64, //
        },
        xdp::{
            self,
            Bpf,
            BpfCommand,
            Prog,
            XmitFrames, //
        },
    },
    prelude::*,
    str::CString,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Relaxed, //
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
        delay::fsleep,
        Delta, //
    },
    xen::{
        netif::keys,
        xenbus,
        xenstore,
        PAGE_SIZE, //
    },
};

/// What the backend offers (`feature-*` keys in its directory).
#[derive(Clone, Copy, Default)]
pub(crate) struct BackendFeatures {
    pub(crate) sg: bool,
    pub(crate) gso_tcpv4: bool,
    pub(crate) gso_tcpv6: bool,
    pub(crate) ipv6_csum: bool,
    /// Leaves the headroom XDP needs before received packets (`feature-xdp-headroom`).
    pub(crate) xdp_headroom: bool,
}

impl BackendFeatures {
    fn encode(self) -> u32 {
        u32::from(self.sg)
            | u32::from(self.gso_tcpv4) << 1
            | u32::from(self.gso_tcpv6) << 2
            | u32::from(self.ipv6_csum) << 3
            | u32::from(self.xdp_headroom) << 4
    }

    fn decode(v: u32) -> Self {
        Self {
            sg: v & 1 != 0,
            gso_tcpv4: v & 2 != 0,
            gso_tcpv6: v & 4 != 0,
            ipv6_csum: v & 8 != 0,
            xdp_headroom: v & 16 != 0,
        }
    }

    /// Clears the offloads the backend does not accept (`xennet_fix_features`).
    pub(crate) fn fix(self, features: Features) -> Features {
        kernel::xen::netif::PeerFeatures {
            sg: self.sg,
            gso_tcpv4: self.gso_tcpv4,
            gso_tcpv6: self.gso_tcpv6,
            // A backend always accepts partial IPv4 checksums.
            ip_csum: true,
            ipv6_csum: self.ipv6_csum,
        }
        .fix(features)
    }
}

/// Number of queues with their own counters in `ethtool -S`.
const STATS_QUEUES: usize = 8;

/// Ethernet MTU without scatter-gather.
const ETH_DATA_LEN: u32 = kernel::net::dev::ETH_DATA_LEN;

/// Largest MTU with an XDP program: a packet and the XDP headroom in one page.
pub(crate) const XDP_MAX_MTU: u32 = (PAGE_SIZE - xdp::PACKET_HEADROOM) as u32;

/// How long attaching or detaching a program waits for the backend to take the new headroom
/// (the C driver waits forever).
const XDP_RECONFIGURE_TIMEOUT_MS: u32 = 5000;

/// Private data of the net_device.
#[pin_data]
pub(crate) struct NetPriv {
    /// The connected queues (none while disconnected). Interrupt-safe: the transmit path
    /// looks its queue up here, with interrupts disabled under netpoll (netconsole).
    #[pin]
    pub(crate) queues: SpinLockIrq<KVec<Arc<Napi<Queue>>>>,
    backend: Atomic<u32>,
    /// The backend's multicast filter.
    pub(crate) mcast: Arc<Mcast>,
    /// Counters of the queues of earlier connections (reconnects, resume), so that the
    /// device totals never go back.
    old_rx: QueueStats,
    old_tx: QueueStats,
    old_gso_checksum_fixup: Counter,
    /// The xenbus device, to reconnect with another number of queues (`ethtool -L`).
    xdev: ARef<xenbus::Device>,
    /// Queues asked for with `ethtool -L`; 0: as many as `max_queues` allows.
    wanted_queues: Atomic<u32>,
    /// The backend's `multi-queue-max-queues` at the last connect.
    backend_max_queues: Atomic<u32>,
    /// Non-zero while a close started by `ethtool -L` waits to connect again.
    reconnect: Atomic<u32>,
    /// The XDP program, kept across reconnects; each queue has a reference too.
    #[pin]
    xdp_prog: SpinLockBh<Option<Prog>>,
    old_xdp: [Counter; 3],
    /// The backend's directory at the last connect (its `state` answers the XDP handshake).
    #[pin]
    otherend: Mutex<Option<CString>>,
}

impl NetPriv {
    pub(crate) fn new(
        features: BackendFeatures,
        mcast: Arc<Mcast>,
        xdev: ARef<xenbus::Device>,
    ) -> impl PinInit<Self> {
        pin_init!(Self {
            queues <- new_spinlock_irq!(KVec::new()),
            backend: Atomic::new(features.encode()),
            old_rx: QueueStats::new(),
            old_tx: QueueStats::new(),
            old_gso_checksum_fixup: Counter::new(),
            xdev,
            wanted_queues: Atomic::new(0),
            backend_max_queues: Atomic::new(1),
            reconnect: Atomic::new(0),
            xdp_prog <- new_spinlock_bh!(None),
            old_xdp: [Counter::new(), Counter::new(), Counter::new()],
            otherend <- new_mutex!(None),
            mcast,
        })
    }

    /// The number of queues to connect, given what the backend allows (at least 1).
    pub(crate) fn queues_to_connect(&self, max_queues: u32, backend_max: u32) -> u32 {
        self.backend_max_queues.store(backend_max.max(1), Relaxed);
        match self.wanted_queues.load(Relaxed) {
            0 => max_queues,
            n => n,
        }
        .min(backend_max)
        .max(1)
    }

    /// Returns whether a reconnect started by `ethtool -L` is under way.
    pub(crate) fn is_reconnecting(&self) -> bool {
        self.reconnect.load(Relaxed) != 0
    }

    /// Ends the reconnect started by `ethtool -L`; returns whether one was under way.
    pub(crate) fn end_reconnect(&self) -> bool {
        self.reconnect.xchg(0, Relaxed) != 0
    }

    /// Takes the queues out (under the queue lock: in-flight transmits finish first, later
    /// ones find none) and keeps their counters in the device totals.
    pub(crate) fn take_queues(&self) -> KVec<Arc<Napi<Queue>>> {
        let mut queues = self.queues.lock();
        for q in queues.iter() {
            self.old_rx.absorb(&q.rx_stats);
            self.old_tx.absorb(&q.tx_stats);
            self.old_gso_checksum_fixup
                .add(q.rx_gso_checksum_fixup.get());
            for (old, c) in self
                .old_xdp
                .iter()
                .zip([&q.xdp_drop, &q.xdp_tx, &q.xdp_redirect])
            {
                old.add(c.get());
            }
        }
        core::mem::take(&mut *queues)
    }

    /// A reference to the XDP program, if one is attached.
    pub(crate) fn xdp_prog(&self) -> Option<Prog> {
        self.xdp_prog.lock().clone()
    }

    /// Whether an XDP program is attached.
    pub(crate) fn has_xdp(&self) -> bool {
        self.xdp_prog.lock().is_some()
    }

    /// Attaches, replaces or detaches the XDP program (`xennet_xdp_set`), under RTNL.
    ///
    /// When a program comes or goes while connected, the backend is asked for the new headroom
    /// first: `xdp-headroom` is written, the frontend goes Reconfiguring and waits for the
    /// backend's Reconfigured, at most [`XDP_RECONFIGURE_TIMEOUT_MS`], then goes Connected
    /// again. If the backend does not answer in time, nothing changes and the request fails.
    fn xdp_setup(&self, dev: &Device, bpf: &mut Bpf<'_>) -> Result {
        let prog = bpf.prog();
        if prog.is_some() && dev.mtu() > XDP_MAX_MTU {
            bpf.set_error(c"XDP requires MTU less than 3840");
            return Err(EINVAL);
        }
        if !self.backend().xdp_headroom {
            bpf.set_error(c"backend does not offer XDP headroom (feature-xdp-headroom)");
            return Err(EOPNOTSUPP);
        }
        let on = prog.is_some();
        if on != self.has_xdp() && self.xdev.state() == xenbus::State::Connected {
            if let Err(e) = self.reconfigure_headroom(on) {
                bpf.set_error(c"backend did not acknowledge the XDP headroom change");
                return Err(e);
            }
        }
        let old = core::mem::replace(&mut *self.xdp_prog.lock(), prog.clone());
        drop(old);
        self.for_each_queue(|q| q.set_xdp_prog(prog.clone()));
        Ok(())
    }

    /// The handshake of [`NetPriv::xdp_setup`].
    fn reconfigure_headroom(&self, on: bool) -> Result {
        let node = self.xdev.nodename();
        let headroom = |on| if on { xdp::PACKET_HEADROOM } else { 0 };
        // Written before the state change the backend reacts to (C writes it after).
        xenstore::write_fmt(node, keys::XDP_HEADROOM, fmt!("{}", headroom(on)))?;
        self.xdev.switch_state(xenbus::State::Reconfiguring)?;
        let otherend = self.otherend.lock();
        let backend_state = || {
            otherend
                .as_ref()
                .and_then(|dir| xenstore::read(dir, c"state").ok())
                .and_then(|v| xenbus::State::parse(v.as_bytes()).ok())
        };
        let mut waited = 0;
        let acked = loop {
            if backend_state() == Some(xenbus::State::Reconfigured) {
                break true;
            }
            if waited >= XDP_RECONFIGURE_TIMEOUT_MS {
                break false;
            }
            fsleep(Delta::from_millis(20));
            waited += 20;
        };
        drop(otherend);
        if !acked {
            // Back to the headroom of the program we keep; a late backend sees it again at its
            // next reconfiguration or connection.
            let _ = xenstore::write_fmt(node, keys::XDP_HEADROOM, fmt!("{}", headroom(!on)));
        }
        let connected = self.xdev.switch_state(xenbus::State::Connected);
        if !acked {
            pr_warn!(
                "{:?}: backend did not answer the XDP reconfiguration\n",
                self.xdev.nodename()
            );
            return Err(ETIMEDOUT);
        }
        connected
    }

    /// Records the backend's directory (at connect).
    pub(crate) fn set_otherend(&self, dir: CString) {
        *self.otherend.lock() = Some(dir);
    }

    pub(crate) fn set_backend(&self, features: BackendFeatures) {
        self.backend.store(features.encode(), Relaxed);
    }

    fn backend(&self) -> BackendFeatures {
        BackendFeatures::decode(self.backend.load(Relaxed))
    }

    /// Runs `f` on each queue, in process context (`f` may sleep: the queues are referenced
    /// outside the lock; the last reference may be dropped here, which sleeps too).
    fn for_each_queue(&self, f: impl Fn(&Napi<Queue>)) {
        let queues: KVec<Arc<Napi<Queue>>> = {
            let guard = self.queues.lock();
            let mut v = KVec::new();
            for q in guard.iter() {
                if v.push(q.clone(), GFP_ATOMIC).is_err() {
                    break;
                }
            }
            v
        };
        for q in queues.iter() {
            f(q);
        }
    }

    /// Runs `f` on queue `index` under the queue lock, without taking a reference, so that a
    /// disconnect (which takes the queues out under the same lock) waits for `f` and a queue is
    /// never freed in atomic context.
    fn with_queue<R>(&self, index: usize, f: impl FnOnce(Option<&Napi<Queue>>) -> R) -> R {
        let guard = self.queues.lock();
        f(guard.get(index).map(|q| &**q))
    }

    /// Runs `f` on the RX and TX counters of every queue and of the earlier queues, under the
    /// queue lock (any context).
    fn with_queues_and_old(&self, mut f: impl FnMut(&QueueStats, &QueueStats)) {
        let guard = self.queues.lock();
        f(&self.old_rx, &self.old_tx);
        for q in guard.iter() {
            f(&q.rx_stats, &q.tx_stats);
        }
    }
}

// The receive-buffer attributes of the C driver (`/sys/class/net/<dev>/rxbuf_*`): fixed at the
// ring size since the buffers stopped being configurable; writes of a number are ignored.
kernel::fixed_attributes!(
    RXBUF_ATTRIBUTES,
    [
        (rxbuf_min, crate::queue::RX_RING as u64),
        (rxbuf_max, crate::queue::RX_RING as u64),
        (rxbuf_cur, crate::queue::RX_RING as u64),
    ]
);

/// The device's own sysfs attributes.
pub(crate) fn attributes() -> &'static kernel::net::dev::AttributeGroup {
    &RXBUF_ATTRIBUTES
}

/// Features on by default (`xennet_create_dev`).
pub(crate) fn default_features() -> Features {
    Features::IP_CSUM | Features::RXCSUM | Features::GSO_ROBUST | hw_features()
}

/// Features the user may toggle.
pub(crate) fn hw_features() -> Features {
    Features::SG | Features::IPV6_CSUM | Features::TSO | Features::TSO6
}

#[vtable]
impl dev::Operations for NetPriv {
    fn open(dev: &Device, this: Pin<&Self>) -> Result {
        this.for_each_queue(|q| {
            q.enable();
            // Consume whatever arrived while down, and any EOI left pending.
            q.schedule();
        });
        dev.start_all_queues();
        Ok(())
    }

    fn stop(dev: &Device, this: Pin<&Self>) -> Result {
        dev.stop_all_queues();
        this.for_each_queue(|q| q.disable());
        Ok(())
    }

    fn start_xmit(dev: &Device, this: Pin<&Self>, skb: SkBuff) -> NetdevTx {
        let index = usize::from(skb.queue_mapping());
        this.with_queue(index, |q| {
            let Some(q) = q else {
                skb.drop_reason(DropReason::DevReady);
                return NetdevTx::Ok;
            };
            match q.xmit(dev, skb) {
                Ok(()) => NetdevTx::Ok,
                Err(skb) => NetdevTx::Busy(skb),
            }
        })
    }

    fn change_mtu(dev: &Device, this: Pin<&Self>, new_mtu: u32) -> Result {
        if new_mtu > XDP_MAX_MTU && this.has_xdp() {
            // Beyond the C driver, which lets the MTU grow under a program.
            return Err(EINVAL);
        }
        let max = if dev.features().contains(Features::SG) && this.backend().sg {
            dev.max_mtu()
        } else {
            ETH_DATA_LEN
        };
        if new_mtu > max {
            return Err(EINVAL);
        }
        Ok(())
    }

    fn fix_features(dev: &Device, this: Pin<&Self>, features: Features) -> Features {
        let _ = dev;
        this.backend().fix(features)
    }

    fn set_features(dev: &Device, _this: Pin<&Self>, features: Features) -> Result {
        if !features.contains(Features::SG) && dev.mtu() > ETH_DATA_LEN {
            // The C driver drops the MTU to 1500 here; we refuse instead of changing it
            // behind the user's back.
            return Err(EINVAL);
        }
        Ok(())
    }

    fn set_rx_mode(_dev: &Device, this: Pin<&Self>, mode: &dev::RxMode<'_>) {
        this.mcast.set_wanted(McList::from_mode(mode));
    }

    fn bpf(dev: &Device, this: Pin<&Self>, bpf: &mut Bpf<'_>) -> Result {
        if this.with_queue(0, |q| q.is_some_and(|q| q.is_broken())) {
            return Err(ENODEV);
        }
        match bpf.command() {
            BpfCommand::SetupProg => this.xdp_setup(dev, bpf),
            BpfCommand::Other(_) => Err(EINVAL),
        }
    }

    fn xdp_xmit(dev: &Device, this: Pin<&Self>, frames: &mut XmitFrames<'_>) -> Result {
        let n = dev.real_num_tx_queues().max(1);
        let index = kernel::cpu::CpuId::current().as_u32() % n;
        this.with_queue(index as usize, |q| {
            let Some(q) = q else {
                return Err(ENETDOWN);
            };
            if q.is_broken() {
                return Err(ENODEV);
            }
            q.xdp_xmit(dev, || frames.take());
            Ok(())
        })
    }

    fn get_stats64(_dev: &Device, this: Pin<&Self>, stats: &mut Stats64) {
        // Under the queue lock, as `take_queues`: every packet is counted exactly once.
        this.with_queues_and_old(|rx, tx| {
            stats.add_rx(rx);
            stats.add_tx(tx);
        });
    }

    // Beyond the C driver: per-queue statistics (netdev netlink `qstats`).
    fn get_queue_stats_rx(_dev: &Device, this: Pin<&Self>, index: u32, rx: &mut QueueStatsRx) {
        this.with_queue(index as usize, |q| rx.add_queue(q.map(|q| &q.rx_stats)));
    }

    fn get_queue_stats_tx(_dev: &Device, this: Pin<&Self>, index: u32, tx: &mut QueueStatsTx) {
        this.with_queue(index as usize, |q| tx.add_queue(q.map(|q| &q.tx_stats)));
    }

    fn get_base_stats(
        _dev: &Device,
        this: Pin<&Self>,
        rx: &mut QueueStatsRx,
        tx: &mut QueueStatsTx,
    ) {
        rx.add(&this.old_rx);
        tx.add(&this.old_tx);
    }
}

#[vtable]
impl ethtool::Operations for NetPriv {
    /// The C driver's counter, then (beyond it) the packets received by each of the first
    /// [`STATS_QUEUES`] queues, which shows how RSS spreads the flows.
    const STATS: &'static [&'static CStr] = &[
        c"rx_gso_checksum_fixup",
        c"rx_queue_0_packets",
        c"rx_queue_1_packets",
        c"rx_queue_2_packets",
        c"rx_queue_3_packets",
        c"rx_queue_4_packets",
        c"rx_queue_5_packets",
        c"rx_queue_6_packets",
        c"rx_queue_7_packets",
        c"rx_xdp_drop",
        c"rx_xdp_tx",
        c"rx_xdp_redirect",
    ];

    fn get_drvinfo(_dev: &Device, _this: Pin<&Self>, info: &mut ethtool::DrvInfo) {
        info.set_driver(c"vif");
    }

    fn get_link(dev: &Device, _this: Pin<&Self>) -> bool {
        dev.carrier_ok()
    }

    fn get_channels(dev: &Device, this: Pin<&Self>, channels: &mut ethtool::Channels) {
        channels.max_combined = dev
            .num_tx_queues()
            .min(this.backend_max_queues.load(Relaxed));
        channels.combined_count = dev.real_num_tx_queues();
    }

    // Beyond the C driver: `ethtool -L <dev> combined N` closes the connection and connects
    // again with N queues (the backend goes back to InitWait, as after a module reload).
    fn set_channels(dev: &Device, this: Pin<&Self>, channels: &ethtool::Channels) -> Result {
        let n = channels.combined_count;
        if channels.rx_count != 0 || channels.tx_count != 0 || n == 0 {
            return Err(EINVAL);
        }
        if n == dev.real_num_tx_queues() {
            return Ok(());
        }
        if this.xdev.state() != xenbus::State::Connected || this.is_reconnecting() {
            return Err(EBUSY);
        }
        this.wanted_queues.store(n, Relaxed);
        this.reconnect.store(1, Relaxed);
        this.xdev.switch_state(xenbus::State::Closing)
    }

    fn get_ringparam(_dev: &Device, _this: Pin<&Self>, ring: &mut ethtool::RingParam) {
        ring.rx_max_pending = crate::queue::RX_RING as u32;
        ring.tx_max_pending = crate::queue::TX_RING as u32;
        ring.rx_pending = crate::queue::RX_RING as u32;
        ring.tx_pending = crate::queue::TX_RING as u32;
    }

    fn get_stats(_dev: &Device, this: Pin<&Self>, values: &mut [u64]) {
        for v in values.iter_mut() {
            *v = 0;
        }
        // Under the queue lock, as `take_queues`.
        let queues = this.queues.lock();
        let mut sum = this.old_gso_checksum_fixup.get();
        let mut xdp = [0u64; 3];
        for (x, old) in xdp.iter_mut().zip(this.old_xdp.iter()) {
            *x = old.get();
        }
        for (index, q) in queues.iter().enumerate() {
            sum += q.rx_gso_checksum_fixup.get();
            for (x, c) in xdp
                .iter_mut()
                .zip([&q.xdp_drop, &q.xdp_tx, &q.xdp_redirect])
            {
                *x += c.get();
            }
            if index < STATS_QUEUES {
                if let Some(v) = values.get_mut(1 + index) {
                    *v = q.rx_stats.packets.get();
                }
            }
        }
        if let Some(v) = values.first_mut() {
            *v = sum;
        }
        for (i, x) in xdp.into_iter().enumerate() {
            if let Some(v) = values.get_mut(1 + STATS_QUEUES + i) {
                *v = x;
            }
        }
    }
}

#[kernel::macros::kunit_tests(xen_netfront_rs_features)]
mod tests {
    use super::*;

    #[test]
    fn backend_features_clear_offloads() {
        let all = default_features();
        let none = BackendFeatures::default();
        let fixed = none.fix(all);
        assert!(!fixed.intersects(hw_features()));
        assert!(fixed.contains(Features::IP_CSUM | Features::RXCSUM));

        let sg_only = BackendFeatures {
            sg: true,
            ..Default::default()
        };
        let fixed = sg_only.fix(all);
        assert!(fixed.contains(Features::SG));
        assert!(!fixed.intersects(Features::TSO | Features::TSO6 | Features::IPV6_CSUM));

        let full = BackendFeatures {
            sg: true,
            gso_tcpv4: true,
            gso_tcpv6: true,
            ipv6_csum: true,
            xdp_headroom: true,
        };
        assert!(BackendFeatures::decode(full.encode()).xdp_headroom);
        assert!(!BackendFeatures::decode(BackendFeatures::default().encode()).xdp_headroom);
        assert_eq!(XDP_MAX_MTU, 3840);
        assert_eq!(full.fix(all), all);
        assert_eq!(BackendFeatures::decode(full.encode()).fix(all), all);
    }
}
