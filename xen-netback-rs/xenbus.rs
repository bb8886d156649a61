// SPDX-License-Identifier: GPL-2.0

//! The xenbus backend: negotiation, state machine, hotplug-status (C: `xenbus.c`).

use crate::ctrl::{
    Ctrl,
    CtrlIrq, //
};
use crate::interface::{
    FrontendFeatures,
    Queue,
    Vif,
    VifShared, //
};
use kernel::{
    device::Core,
    net::{
        dev::{
            self,
            Features,
            Options,
            RtnlGuard, //
        },
        napi::{
            Napi,
            QueueLink,
            QueueType, //
        },
    },
    new_mutex,
    prelude::*,
    str::CString,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        Mutex, //
    },
    xen::{
        evtchn::{
            Eoi,
            Handler,
            Port,
            Registration, //
        },
        grant::{
            GrantRef,
            MappedRing, //
        },
        netif::{
            keys,
            CtrlBackRing,
            RxBackRing,
            TxBackRing, //
        },
        xenbus::{
            self,
            DeviceId,
            State, //
        },
        xenstore::{
            self,
            Store,
            Watch,
            WatchHandler, //
        },
        DomId,
    },
};

/// The C backend's device address for every vif (the guest's own is in xenstore).
const VIF_MAC: [u8; 6] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff];

/// Largest MTU with scatter-gather (`ETH_MAX_MTU - VLAN_ETH_HLEN`).
const MAX_MTU_SG: u32 = 65535 - 18;

kernel::xenbus_device_table!(VIF_TABLE, (), [(DeviceId::new(c"vif"), ())]);

/// The xenbus backend driver for `vif` devices.
pub(crate) struct NetBack;

/// State shared with the hotplug-status watch.
struct Shared {
    dev: ARef<xenbus::Device>,
    /// The hotplug script reported `connected`.
    hotplug_ok: Atomic<u32>,
    /// The rings are connected: switch to Connected once the hotplug script is done.
    want_connected: Atomic<u32>,
}

impl Shared {
    fn maybe_connected(&self) {
        if self.hotplug_ok.load(Relaxed) != 0 && self.want_connected.load(Relaxed) != 0 {
            let _ = self.dev.switch_state(State::Connected);
        }
    }
}

/// The `rate` watch (C: `xen_net_rate_changed`).
struct RateWatch {
    dev: ARef<xenbus::Device>,
    vif: Arc<VifShared>,
}

/// Parses `rate` as the C backend does: "<bytes>,<usecs>", two decimal numbers
/// (C: `xen_net_read_rate`). `None`: no limit.
pub(crate) fn parse_rate(v: &[u8]) -> Option<(u64, u64)> {
    let comma = v.iter().position(|&c| c == b',')?;
    let (b, u) = (&v[..comma], &v[comma + 1..]);
    let num = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        s.iter().try_fold(0u64, |acc, &c| {
            acc.checked_mul(10)?.checked_add(u64::from(c - b'0'))
        })
    };
    Some((num(b)?, num(u)?))
}

impl RateWatch {
    /// Reads `rate` and hands it to the queues.
    fn update(&self) {
        let (bytes, usec) = match xenstore::read(self.dev.nodename(), c"rate") {
            // Absent: no limit.
            Err(_) => (u64::MAX, 0),
            Ok(v) => parse_rate(v.as_bytes()).unwrap_or_else(|| {
                pr_warn!("Failed to parse network rate limit. Traffic unlimited.\n");
                (u64::MAX, 0)
            }),
        };
        self.vif.set_rate(bytes, usec);
    }
}

impl WatchHandler for RateWatch {
    fn changed(&self, _path: &CStr) {
        self.update();
    }
}

impl WatchHandler for Shared {
    fn changed(&self, _path: &CStr) {
        // Written by the toolstack's script in dom0; still only compared, never trusted.
        let ok = matches!(
            xenstore::read(self.dev.nodename(), keys::HOTPLUG_STATUS),
            Ok(v) if v.as_bytes() == b"connected"
        );
        if ok {
            self.hotplug_ok.store(1, Relaxed);
            self.maybe_connected();
        }
    }
}

/// Event channel handlers of a queue.
struct TxIrq(Arc<Queue>);
struct RxIrq(Arc<Queue>);
struct TxRxIrq(Arc<Queue>);

// Split event channels: late EOI from the code that did the work (the NAPI poll for TX, the
// worker for RX), flagged spurious when the event found none (XSA-332). A disabled queue leaves
// its channels masked.
impl Handler for TxIrq {
    fn handle(&self) -> Eoi {
        if self.0.napi.is_disabled() {
            return Eoi::Deferred;
        }
        self.0.napi.tx_eoi.store(1, Relaxed);
        self.0.napi.schedule();
        Eoi::Deferred
    }
}

impl Handler for RxIrq {
    fn handle(&self) -> Eoi {
        if self.0.napi.is_disabled() {
            return Eoi::Deferred;
        }
        self.0.napi.rx_eoi.store(1, Relaxed);
        self.0.kick_rx();
        Eoi::Deferred
    }
}

impl Handler for TxRxIrq {
    fn handle(&self) -> Eoi {
        if self.0.napi.is_disabled() {
            return Eoi::Deferred;
        }
        self.0.napi.schedule();
        self.0.kick_rx();
        Eoi::Done
    }
}

/// The event channel bindings of a queue, held until it is disconnected.
enum Irqs {
    Split {
        _tx: Pin<KBox<Registration<TxIrq>>>,
        _rx: Pin<KBox<Registration<RxIrq>>>,
    },
    Single {
        _txrx: Pin<KBox<Registration<TxRxIrq>>>,
    },
}

struct QueueConn {
    queue: Arc<Queue>,
    irqs: Option<Irqs>,
    /// The netdev's RX queue linked to the NAPI context that serves it (netdev netlink).
    link: Option<QueueLink<Queue>>,
}

/// A connected control ring and its event channel.
struct CtrlConn {
    ctrl: Arc<Ctrl>,
    irq: Option<Pin<KBox<Registration<CtrlIrq>>>>,
}

/// The `request-multicast-control` watch (C: `xen_mcast_ctrl_changed`).
struct McastWatch {
    fe: CString,
    vif: Arc<VifShared>,
}

impl WatchHandler for McastWatch {
    fn changed(&self, _path: &CStr) {
        // Re-read (events are coalesced, XSA-349); garbage counts as off.
        let on = xenstore::read_uint_or::<u64>(&self.fe, keys::REQUEST_MULTICAST_CONTROL, 0)
            .is_ok_and(|v| v != 0);
        self.vif.multicast_control.store(u32::from(on), Relaxed);
    }
}

struct Inner {
    /// Boxed: the registration is not `Unpin`, the lock guard must give `&mut Inner`.
    netdev: KBox<dev::Registration<Vif>>,
    conns: KVec<QueueConn>,
    vif: Arc<VifShared>,
    ctrl: Option<CtrlConn>,
    mcast_watch: Option<Pin<KBox<Watch<McastWatch>>>>,
    /// `xen-netback/<vif>/` in debugfs while connected.
    debugfs: Option<crate::debugfs::VifDir>,
}

impl Inner {
    fn vif(&self) -> Pin<&Vif> {
        self.netdev.data()
    }

    /// Stops serving the control ring and the multicast filter (C: `xenvif_disconnect_ctrl`,
    /// `xen_unregister_watchers`, `xenvif_mcast_addr_list_free`).
    fn disconnect_ctrl(&mut self) {
        drop(self.mcast_watch.take());
        if let Some(mut c) = self.ctrl.take() {
            // Frees the interrupt (waits for a running handler) and closes the channel.
            drop(c.irq.take());
            c.ctrl.stop();
        }
        self.vif.reset_ctrl();
    }

    /// Stops serving the frontend (C: `xenvif_disconnect_data`).
    fn disconnect(&mut self) {
        // The files go first: removing them waits for their readers and writers, which use the
        // queues (C: `xenvif_debugfs_delif` in `backend_disconnect`).
        drop(self.debugfs.take());
        self.disconnect_ctrl();
        if self.conns.is_empty() {
            return;
        }
        {
            let rtnl = RtnlGuard::lock();
            for c in self.conns.iter_mut() {
                if let Some(link) = c.link.take() {
                    link.unlink(&rtnl);
                }
            }
        }
        self.netdev.device().carrier_off();
        // Packets counted after this (the last polls, the packets dropped below) are not in
        // the device totals.
        let old = self.vif().take_queues();
        drop(old);
        for mut c in self.conns.drain_all() {
            c.queue.napi.disabled.store(1, Relaxed);
            // Frees the interrupts (waits for running handlers) and closes the channels.
            drop(c.irqs.take());
            *c.queue.napi.notify.lock() = Default::default();
            c.queue.napi.disable();
            *c.queue.napi.zc.queue.lock() = None;
            // Drops queued packets, unmaps the rings (possibly later, in the worker).
            c.queue.kick_rx();
            *c.queue.napi.me.lock() = None;
            // Nothing may stay queued when the module goes.
            c.queue.flush_work();
            // Map mode: waits until the stack gave back every mapped page.
            let name = self.netdev.device().name().to_str().unwrap_or("vif");
            crate::zerocopy::teardown(&c.queue.napi, name);
        }
        self.vif.stalled.store(0, Relaxed);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// The private data of a bound `vif` backend device.
pub(crate) struct Backend {
    hotplug: Pin<KBox<Watch<Shared>>>,
    rate: Pin<KBox<Watch<RateWatch>>>,
    inner: Pin<KBox<Mutex<Inner>>>,
    shared: Arc<Shared>,
    /// `script=<hotplug script>` (when the toolstack names one) and `vif=<netdev>`: the
    /// variables of the online and offline uevents (C: `netback_uevent`).
    uevent_vars: KVec<CString>,
}

impl Backend {
    /// Sends the online or offline uevent, with which udev-driven toolstacks run the vif
    /// hotplug scripts (C: `kobject_uevent()` in `backend_create_xenvif` and `netback_remove`).
    fn uevent(&self, dev: &xenbus::Device<Core<'_>>, action: xenbus::Uevent) {
        let mut vars = KVec::new();
        for v in self.uevent_vars.iter() {
            if vars.push(&**v, GFP_KERNEL).is_err() {
                return;
            }
        }
        if let Err(e) = dev.uevent(action, &vars) {
            dev_warn!(dev, "sending the {:?} uevent: {:?}\n", action, e);
        }
    }
}

/// The uevent variables of a backend: its hotplug script, if any, and the netdev's name.
fn uevent_vars(nodename: &CStr, ifname: &CStr) -> Result<KVec<CString>> {
    let mut vars = KVec::new();
    if let Ok(script) = xenstore::read(nodename, c"script") {
        if let Ok(script) = core::str::from_utf8(script.as_bytes()) {
            vars.push(CString::try_from_fmt(fmt!("script={script}"))?, GFP_KERNEL)?;
        }
    }
    let ifname = ifname.to_str()?;
    vars.push(CString::try_from_fmt(fmt!("vif={ifname}"))?, GFP_KERNEL)?;
    Ok(vars)
}

/// Reads a frontend boolean feature; garbage counts as absent.
fn fe_bool(dir: &CStr, key: &CStr, default: bool) -> bool {
    xenstore::read_bool_or(dir, key, default).unwrap_or(default)
}

fn read_features(fe: &CStr) -> FrontendFeatures {
    FrontendFeatures {
        sg: fe_bool(fe, keys::FEATURE_SG, false),
        gso_tcpv4: fe_bool(fe, keys::FEATURE_GSO_TCPV4, false),
        gso_tcpv6: fe_bool(fe, keys::FEATURE_GSO_TCPV6, false),
        ip_csum: !fe_bool(fe, keys::FEATURE_NO_CSUM_OFFLOAD, false),
        ipv6_csum: fe_bool(fe, keys::FEATURE_IPV6_CSUM_OFFLOAD, false),
        rx_notify: fe_bool(fe, keys::FEATURE_RX_NOTIFY, false),
    }
}

/// Reads the frontend's `xdp-headroom` (0 if absent, garbage, or the feature is not offered);
/// more than half a page is refused (C clamps to `XEN_NETIF_MAX_XDP_HEADROOM` only, which leaves no
/// room for data in the first slot).
fn read_xdp_headroom(dev: &xenbus::Device<Core<'_>>) -> u32 {
    if !crate::provides_xdp_headroom() {
        return 0;
    }
    match xenstore::read_uint_or::<u32>(dev.otherend(), keys::XDP_HEADROOM, 0) {
        Ok(h) if h as usize <= kernel::xen::PAGE_SIZE / 2 => h,
        Ok(h) => {
            dev.dev_error(EINVAL, fmt!("xdp-headroom {h} too large, ignored"));
            0
        }
        Err(_) => 0,
    }
}

/// Writes what this backend offers (C: `netback_probe`).
fn write_features(dir: &CStr) -> Result {
    xenstore::transaction(|t| {
        t.write(dir, keys::FEATURE_SG, c"1")?;
        t.write(dir, keys::FEATURE_GSO_TCPV4, c"1")?;
        t.write(dir, keys::FEATURE_GSO_TCPV6, c"1")?;
        t.write(dir, keys::FEATURE_IPV6_CSUM_OFFLOAD, c"1")?;
        t.write(dir, keys::FEATURE_RX_COPY, c"1")?;
        t.write(dir, keys::FEATURE_RX_FLIP, c"0")?;
        t.write(
            dir,
            keys::FEATURE_SPLIT_EVENT_CHANNELS,
            if crate::separate_tx_rx_irq() {
                c"1"
            } else {
                c"0"
            },
        )?;
        t.write_fmt(
            dir,
            keys::MULTI_QUEUE_MAX_QUEUES,
            fmt!("{}", crate::max_queues()),
        )?;
        // The multicast filter, which the frontend may turn on and off while connected.
        t.write(dir, keys::FEATURE_MULTICAST_CONTROL, c"1")?;
        t.write(dir, keys::FEATURE_DYNAMIC_MULTICAST_CONTROL, c"1")?;
        t.write(dir, keys::FEATURE_CTRL_RING, c"1")?;
        t.write(
            dir,
            keys::FEATURE_XDP_HEADROOM,
            if crate::provides_xdp_headroom() {
                c"1"
            } else {
                c"0"
            },
        )?;
        Ok(())
    })
}

impl NetBack {
    fn setup(dev: &xenbus::Device<Core<'_>>) -> Result<Backend> {
        let nodename = dev.nodename();
        let domid = dev.otherend_id();
        let handle: u32 = xenstore::read_uint(nodename, keys::HANDLE)?;

        write_features(nodename).inspect_err(|e| {
            dev.dev_fatal(*e, fmt!("writing features"));
        })?;

        let name = CString::try_from_fmt(fmt!("vif{}.{}", domid.0, handle))?;
        let opts = Options {
            name: &name,
            tx_queues: crate::max_queues(),
            rx_queues: crate::max_queues(),
            features: Features::SG
                | Features::IP_CSUM
                | Features::IPV6_CSUM
                | Features::TSO
                | Features::TSO6
                | Features::FRAGLIST
                | Features::RXCSUM,
            hw_features: Features::SG
                | Features::IP_CSUM
                | Features::IPV6_CSUM
                | Features::TSO
                | Features::TSO6
                | Features::FRAGLIST,
            mtu: dev::ETH_DATA_LEN,
            min_mtu: dev::ETH_MIN_MTU,
            max_mtu: MAX_MTU_SG,
            mac: Some(VIF_MAC),
            // Keep the core's limit, as the C backend does.
            tso_max_size: 0,
            attributes: None,
        };
        let vif = VifShared::new()?;
        let netdev = dev::Registration::new(&opts, Vif::new(domid, vif.clone()))?;
        netdev.device().carrier_off();

        let shared = Arc::new(
            Shared {
                dev: dev.into(),
                hotplug_ok: Atomic::new(0),
                want_connected: Atomic::new(0),
            },
            GFP_KERNEL,
        )?;
        let inner = KBox::pin_init(
            new_mutex!(Inner {
                netdev: KBox::new(netdev, GFP_KERNEL)?,
                conns: KVec::new(),
                vif: vif.clone(),
                ctrl: None,
                mcast_watch: None,
                debugfs: None,
            }),
            GFP_KERNEL,
        )?;
        let path = xenstore::join(nodename, keys::HOTPLUG_STATUS)?;
        let hotplug = KBox::pin_init(Watch::new(path, shared.clone()), GFP_KERNEL)?;
        // Registering the watch reads the limit once.
        let rate = Arc::new(
            RateWatch {
                dev: dev.into(),
                vif,
            },
            GFP_KERNEL,
        )?;
        rate.update();
        let path = xenstore::join(nodename, c"rate")?;
        let rate = KBox::pin_init(Watch::new(path, rate), GFP_KERNEL)?;

        let backend = Backend {
            hotplug,
            rate,
            inner,
            shared,
            uevent_vars: uevent_vars(nodename, &name)?,
        };
        // The vif exists: its hotplug scripts may run.
        backend.uevent(dev, xenbus::Uevent::Online);
        dev.switch_state(State::InitWait)?;
        Ok(backend)
    }

    /// Connects the rings of the frontend (C: `connect`, `connect_data_rings`).
    fn connect(dev: &xenbus::Device<Core<'_>>, inner: &mut Inner) -> Result {
        let fe = dev.otherend();
        let domid: DomId = dev.otherend_id();

        let rx_copy: u32 = xenstore::read_uint_or(fe, keys::REQUEST_RX_COPY, 0).unwrap_or(0);
        if rx_copy != 1 {
            dev.dev_fatal(EOPNOTSUPP, fmt!("frontend does not request rx-copy"));
            return Err(EOPNOTSUPP);
        }
        let features = read_features(fe);
        inner
            .vif
            .xdp_headroom
            .store(read_xdp_headroom(dev), Relaxed);
        let max = crate::max_queues();
        let num_queues: u32 = match xenstore::read(fe, keys::MULTI_QUEUE_NUM_QUEUES) {
            // Absent: a frontend without multi-queue support.
            Err(_) => 1,
            Ok(v) => match xenstore::parse_uint::<u64>(v.as_bytes()) {
                Ok(n) if n >= 1 && n <= u64::from(max) => n as u32,
                Ok(n) => {
                    dev.dev_fatal(
                        EINVAL,
                        fmt!("guest requested {n} queues, exceeding the maximum of {max}."),
                    );
                    return Err(EINVAL);
                }
                Err(e) => {
                    dev.dev_fatal(e, fmt!("reading {}/multi-queue-num-queues", fe.to_str()?));
                    return Err(e);
                }
            },
        };

        let ifname = CString::try_from_fmt(fmt!(
            "{}",
            inner.netdev.device().name().to_str().unwrap_or("vif")
        ))?;
        let ifname = ifname.to_str().unwrap_or("vif");
        let fe_str = fe.to_str()?;

        // The control ring first, as C does; its mapping entries are bounded by `num_queues`.
        inner.vif.num_queues.store(num_queues, Relaxed);
        if let Err(e) = Self::connect_ctrl(dev, inner, domid, ifname) {
            dev.dev_fatal(e, fmt!("connecting control ring"));
            return Err(e);
        }
        // The multicast filter: read now, then on each change (C: `read_xenbus_vif_flags`,
        // `xen_register_mcast_ctrl_watch`).
        let mcast = Arc::new(
            McastWatch {
                fe: CString::try_from_fmt(fmt!("{fe_str}"))?,
                vif: inner.vif.clone(),
            },
            GFP_KERNEL,
        )?;
        mcast.changed(c"");
        let path = xenstore::join(fe, keys::REQUEST_MULTICAST_CONTROL)?;
        match KBox::pin_init(Watch::new(path, mcast), GFP_KERNEL) {
            Ok(w) => inner.mcast_watch = Some(w),
            // As C: the filter then keeps the value read at connect.
            Err(_) => pr_warn!("{ifname}: failed to watch request-multicast-control\n"),
        }
        let mut conns = KVec::with_capacity(num_queues as usize, GFP_KERNEL)?;
        for q in 0..num_queues {
            let dir = if num_queues == 1 {
                CString::try_from_fmt(fmt!("{fe_str}"))?
            } else {
                CString::try_from_fmt(fmt!("{fe_str}/queue-{q}"))?
            };
            // `connect_queue` reports its errors.
            let conn = Self::connect_queue(dev, inner, &dir, q as u16, domid, features, ifname)?;
            conns.push(conn, GFP_KERNEL)?;
        }

        // Publish the queues to the device.
        let mut shared = KVec::with_capacity(conns.len(), GFP_KERNEL)?;
        for c in conns.iter() {
            shared.push(c.queue.clone(), GFP_KERNEL)?;
        }
        inner.conns = conns;
        let ndev = inner.netdev.device();
        inner.vif().fe.store(features.to_bits(), Relaxed);
        {
            let rtnl = RtnlGuard::lock();
            let _ = ndev.set_real_num_tx_queues(&rtnl, num_queues);
            let _ = ndev.set_real_num_rx_queues(&rtnl, num_queues);
            ndev.set_max_mtu(
                &rtnl,
                if features.sg {
                    MAX_MTU_SG
                } else {
                    dev::ETH_DATA_LEN
                },
            );
            ndev.update_features(&rtnl);
            // Beyond the C driver: netdev netlink shows the NAPI context of each RX queue
            // (what the frontend transmits). Informational: a failure is not fatal.
            fn own(q: &Queue) -> &Napi<crate::interface::Core> {
                &q.napi
            }
            for (index, c) in inner.conns.iter_mut().enumerate() {
                let index = index as u32;
                c.link = QueueLink::new(&rtnl, c.queue.clone(), own, QueueType::Rx, index).ok();
            }
        }
        for c in inner.conns.iter() {
            *c.queue.napi.me.lock() = Some(c.queue.clone());
            // The completions of zero-copy buffers schedule the poll (both cycles are broken at
            // disconnect).
            *c.queue.napi.zc.queue.lock() = Some(c.queue.clone());
        }
        // Diagnostics: not fatal if it cannot be created (C: `xenvif_debugfs_addif`).
        let mut debug = KVec::with_capacity(shared.len(), GFP_KERNEL)?;
        for q in shared.iter() {
            debug.push(q.clone(), GFP_KERNEL)?;
        }
        *inner.vif().queues.lock() = shared;
        inner.debugfs =
            crate::debugfs::add_vif(ifname, debug, inner.vif.clone(), inner.ctrl.is_some());
        ndev.carrier_on();
        ndev.wake_all_queues();
        for c in inner.conns.iter() {
            c.queue.napi.schedule();
            c.queue.kick_rx();
        }
        Ok(())
    }

    /// Connects the frontend's control ring, if it has one (C: `connect_ctrl_ring`,
    /// `xenvif_connect_ctrl`).
    fn connect_ctrl(
        dev: &xenbus::Device<Core<'_>>,
        inner: &mut Inner,
        domid: DomId,
        ifname: &str,
    ) -> Result {
        let fe = dev.otherend();
        // Absent or not a number: the frontend has no control ring (C: `xenbus_scanf` fails).
        let ring_ref = match xenstore::read(fe, keys::CTRL_RING_REF) {
            Err(_) => return Ok(()),
            Ok(v) => match xenstore::parse_uint::<u32>(v.as_bytes()) {
                Ok(r) => r,
                Err(_) => return Ok(()),
            },
        };
        let port = match xenstore::read_in_range(fe, keys::EVENT_CHANNEL_CTRL, 1..=u32::MAX) {
            Ok(p) => Port(p),
            Err(e) => {
                dev.dev_fatal(e, fmt!("reading {}/event-channel-ctrl", fe.to_str()?));
                return Err(e);
            }
        };
        let connected = (|| -> Result<CtrlConn> {
            let ring = CtrlBackRing::attach(MappedRing::map(dev, &[GrantRef(ring_ref)])?)?;
            let ctrl = Ctrl::new(domid, inner.vif.clone(), ring)?;
            let irq = KBox::pin_init(
                Registration::bind_interdomain(
                    dev,
                    port,
                    CString::try_from_fmt(fmt!("{ifname}-ctrl"))?,
                    Ok::<_, Error>(CtrlIrq(ctrl.clone())),
                ),
                GFP_KERNEL,
            );
            match irq {
                Ok(irq) => {
                    ctrl.start(irq.notifier());
                    Ok(CtrlConn {
                        ctrl,
                        irq: Some(irq),
                    })
                }
                Err(e) => {
                    ctrl.stop();
                    Err(e)
                }
            }
        })();
        match connected {
            Ok(c) => {
                inner.ctrl = Some(c);
                Ok(())
            }
            Err(e) => {
                dev.dev_fatal(e, fmt!("mapping shared-frame {ring_ref} port {}", port.0));
                Err(e)
            }
        }
    }

    fn connect_queue(
        dev: &xenbus::Device<Core<'_>>,
        inner: &Inner,
        dir: &CStr,
        index: u16,
        domid: DomId,
        features: FrontendFeatures,
        ifname: &str,
    ) -> Result<QueueConn> {
        let dir_str = dir.to_str()?;
        let read_ref = |key: &CStr| -> Result<u32> {
            xenstore::read_uint(dir, key).inspect_err(|e| {
                dev.dev_fatal(*e, fmt!("reading {dir_str}/ring-ref"));
            })
        };
        let tx_ref = read_ref(keys::TX_RING_REF)?;
        let rx_ref = read_ref(keys::RX_RING_REF)?;
        let port = |key: &CStr| -> Result<Port> {
            match xenstore::read_in_range(dir, key, 1..=u32::MAX) {
                Ok(p) => Ok(Port(p)),
                Err(e) => {
                    dev.dev_fatal(e, fmt!("reading {dir_str}/{}", key.to_str()?));
                    Err(e)
                }
            }
        };
        let split = crate::separate_tx_rx_irq() && xenstore::exists(dir, keys::EVENT_CHANNEL_TX);
        let ports = if split {
            (
                port(keys::EVENT_CHANNEL_TX)?,
                Some(port(keys::EVENT_CHANNEL_RX)?),
            )
        } else {
            (port(keys::EVENT_CHANNEL)?, None)
        };
        let report = |e: Error| {
            dev.dev_fatal(
                e,
                fmt!(
                    "mapping shared-frames {tx_ref}/{rx_ref} port tx {} rx {}",
                    ports.0 .0,
                    ports.1.map_or(ports.0 .0, |p| p.0)
                ),
            );
            e
        };
        Self::map_and_bind(
            dev, inner, index, domid, features, ifname, tx_ref, rx_ref, ports,
        )
        .map_err(report)
    }

    #[allow(clippy::too_many_arguments)]
    fn map_and_bind(
        dev: &xenbus::Device<Core<'_>>,
        inner: &Inner,
        index: u16,
        domid: DomId,
        features: FrontendFeatures,
        ifname: &str,
        tx_ref: u32,
        rx_ref: u32,
        ports: (Port, Option<Port>),
    ) -> Result<QueueConn> {
        let tx = TxBackRing::attach(MappedRing::map(dev, &[GrantRef(tx_ref)])?)?;
        let rx = RxBackRing::attach(MappedRing::map(dev, &[GrantRef(rx_ref)])?)?;
        let zc = crate::zerocopy::ZcShared::new()?;
        let map = if crate::tx_mode_map() {
            match crate::zerocopy::MapState::new(zc.clone()) {
                Ok(m) => Some(m),
                Err(e) => {
                    pr_warn!(
                        "{ifname}: queue {index}: no pages to map guest TX ({e:?}): copying\n"
                    );
                    None
                }
            }
        } else {
            None
        };
        let queue = Queue::new(
            inner.netdev.device(),
            index,
            domid,
            features,
            tx,
            rx,
            inner.vif.clone(),
            zc,
            map,
        )?;
        queue.napi.enable();

        let irqs = match ports {
            (tx_port, Some(rx_port)) => {
                let tx = KBox::pin_init(
                    Registration::bind_interdomain(
                        dev,
                        tx_port,
                        CString::try_from_fmt(fmt!("{ifname}-q{index}-tx"))?,
                        Ok::<_, Error>(TxIrq(queue.clone())),
                    ),
                    GFP_KERNEL,
                );
                let tx = match tx {
                    Ok(tx) => tx,
                    Err(e) => {
                        queue.napi.disabled.store(1, Relaxed);
                        queue.napi.disable();
                        return Err(e);
                    }
                };
                let rx = KBox::pin_init(
                    Registration::bind_interdomain(
                        dev,
                        rx_port,
                        CString::try_from_fmt(fmt!("{ifname}-q{index}-rx"))?,
                        Ok::<_, Error>(RxIrq(queue.clone())),
                    ),
                    GFP_KERNEL,
                );
                let rx = match rx {
                    Ok(rx) => rx,
                    Err(e) => {
                        drop(tx);
                        queue.napi.disabled.store(1, Relaxed);
                        queue.napi.disable();
                        return Err(e);
                    }
                };
                queue.napi.publish_notifiers(tx.notifier(), rx.notifier());
                Irqs::Split { _tx: tx, _rx: rx }
            }
            (port, None) => {
                let r = KBox::pin_init(
                    Registration::bind_interdomain(
                        dev,
                        port,
                        CString::try_from_fmt(fmt!("{ifname}-q{index}"))?,
                        Ok::<_, Error>(TxRxIrq(queue.clone())),
                    ),
                    GFP_KERNEL,
                );
                let r = match r {
                    Ok(r) => r,
                    Err(e) => {
                        queue.napi.disabled.store(1, Relaxed);
                        queue.napi.disable();
                        return Err(e);
                    }
                };
                queue.napi.publish_notifiers(r.notifier(), r.notifier());
                Irqs::Single { _txrx: r }
            }
        };
        Ok(QueueConn {
            queue,
            irqs: Some(irqs),
            link: None,
        })
    }

    /// Takes the frontend's `xdp-headroom` while connected, and the device features that
    /// depend on it: always when it reconfigures, else only if it changed.
    fn read_frontend_xdp(dev: &xenbus::Device<Core<'_>>, this: &Backend, reconfiguring: bool) {
        let inner = this.inner.lock();
        if !reconfiguring && inner.conns.is_empty() {
            // Not connected: connecting reads it.
            return;
        }
        let headroom = read_xdp_headroom(dev);
        if inner.vif.xdp_headroom.xchg(headroom, Relaxed) != headroom || reconfiguring {
            let rtnl = RtnlGuard::lock();
            inner.netdev.device().update_features(&rtnl);
        }
    }

    /// Goes to `target` the way the C backend's `set_backend_state` does.
    fn set_state(dev: &xenbus::Device<Core<'_>>, this: &Backend, target: State) {
        let mut inner = this.inner.lock();
        match target {
            State::InitWait => {
                if dev.state() == State::Connected || !inner.conns.is_empty() {
                    this.shared.want_connected.store(0, Relaxed);
                    inner.disconnect();
                    let _ = dev.switch_state(State::Closing);
                    let _ = dev.switch_state(State::Closed);
                }
                let _ = dev.switch_state(State::InitWait);
            }
            State::Connected => {
                if !inner.conns.is_empty() {
                    return;
                }
                if dev.state() == State::Closed {
                    let _ = dev.switch_state(State::InitWait);
                }
                if Self::connect(dev, &mut inner).is_ok() {
                    this.shared.want_connected.store(1, Relaxed);
                    this.shared.maybe_connected();
                } else {
                    inner.disconnect_ctrl();
                }
            }
            State::Closing => {
                this.shared.want_connected.store(0, Relaxed);
                inner.disconnect();
                let _ = dev.switch_state(State::Closing);
            }
            _ => {
                this.shared.want_connected.store(0, Relaxed);
                inner.disconnect();
                if dev.state() != State::Closing && dev.state() != State::Closed {
                    let _ = dev.switch_state(State::Closing);
                }
                let _ = dev.switch_state(State::Closed);
            }
        }
    }
}

impl xenbus::Driver for NetBack {
    type IdInfo = ();
    type Data<'bound> = Backend;
    const ID_TABLE: xenbus::IdTable<Self::IdInfo> = &VIF_TABLE;
    const ALLOW_REBIND: bool = true;

    fn probe<'bound>(
        dev: &'bound xenbus::Device<Core<'_>>,
        _id_info: &'bound Self::IdInfo,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        Self::setup(dev)
    }

    fn otherend_changed<'bound>(
        dev: &'bound xenbus::Device<Core<'_>>,
        this: Pin<&Self::Data<'bound>>,
        state: State,
    ) {
        match state {
            State::Initialising => {
                if dev.state() == State::Closed || !this.inner.lock().conns.is_empty() {
                    Self::set_state(dev, &this, State::InitWait);
                }
            }
            State::Initialised | State::InitWait => {}
            State::Connected => {
                // Back from a reconfiguration we may not have seen: xenbus reads the state
                // when its watch fires, and the C netfront switches to Reconfiguring before it
                // writes `xdp-headroom`, then goes on at once if we are still Reconfigured from
                // its previous change (as C, we stay so). A change seen only as Connected, or
                // read before the frontend wrote it, is taken now (the C netback misses it:
                // the frontend then looks for its packets 256 bytes off).
                Self::read_frontend_xdp(dev, &this, false);
                Self::set_state(dev, &this, State::Connected)
            }
            State::Reconfiguring => {
                // The frontend changed its XDP headroom (C: `read_xenbus_frontend_xdp`).
                Self::read_frontend_xdp(dev, &this, true);
                let _ = dev.switch_state(State::Reconfigured);
            }
            State::Closing => Self::set_state(dev, &this, State::Closing),
            State::Closed => Self::set_state(dev, &this, State::Closed),
            State::Unknown => {
                // The node is gone (the frontend went away), or holds something that is no
                // state at all.
                match xenstore::read_uint::<u64>(dev.otherend(), c"state") {
                    Ok(v) if v != 0 => {
                        dev.dev_fatal(EINVAL, fmt!("saw state {v} at frontend"));
                        this.inner.lock().disconnect();
                    }
                    _ => Self::set_state(dev, &this, State::Closed),
                }
            }
            _ => dev.dev_fatal(EINVAL, fmt!("saw state {} at frontend", u32::from(state))),
        }
    }

    fn unregister_after<'bound>(
        dev: &'bound xenbus::Device<Core<'_>>,
        _this: Pin<&Self::Data<'bound>>,
        state: State,
    ) -> bool {
        // C: `frontend_changed` unregisters the device when the frontend is Closed and the
        // toolstack set the device offline (detach), or when the frontend's node is gone: the vif
        // is gone before `xl network-detach` returns.
        match state {
            State::Closed => !dev.is_online(),
            State::Unknown => !matches!(
                xenstore::read_uint::<u64>(dev.otherend(), c"state"),
                Ok(v) if v != 0
            ),
            _ => false,
        }
    }

    fn unbind<'bound>(dev: &'bound xenbus::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        let _ = (&this.hotplug, &this.rate);
        // As C (`netback_remove`): the hotplug status goes first, so that a later backend in
        // this directory waits for its own hotplug script.
        let _ = xenstore::rm(dev.nodename(), keys::HOTPLUG_STATUS);
        this.uevent(dev, xenbus::Uevent::Offline);
        this.inner.lock().disconnect();
    }
}
