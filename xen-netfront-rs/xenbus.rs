// SPDX-License-Identifier: GPL-2.0

//! The xenbus side: probe, negotiation with the backend, the state machine and teardown.

use crate::{
    ctrl::CtrlRing,
    mcast::Mcast,
    netdev::{
        self,
        BackendFeatures,
        NetPriv, //
    },
    queue::{
        Channels,
        Evtchn,
        Irq,
        Queue,
        Rings, //
    },
};
use kernel::{
    device::Core,
    net::{
        dev::{
            self as netdev_api,
            RtnlGuard, //
        },
        napi::{
            Napi,
            QueueLink,
            QueueType, //
        },
        xdp::{
            self,
            Features, //
        },
    },
    prelude::*,
    str::CString,
    sync::{
        new_mutex,
        Arc,
        Mutex, //
    },
    time::{
        delay::fsleep,
        Delta, //
    },
    xen::{
        evtchn::{
            Registration,
            UnboundPort, //
        },
        grant::RingPages,
        netif::keys,
        xenbus::{
            self as xb,
            DeviceId,
            State, //
        },
        xenstore::{
            self,
            Store, //
        },
    },
};

/// The driver.
pub(crate) struct NetFront;

kernel::xenbus_device_table!(NETFRONT_TABLE, (), [(DeviceId::new(c"vif"), ())]);

/// Largest MTU with scatter-gather (`XEN_NETIF_MAX_TX_SIZE`).
const MAX_MTU: u32 = 65535;

/// Largest GSO packet: the protocol's 16-bit size (`XEN_NETIF_MAX_TX_SIZE`). TCP keeps its
/// packets `MAX_TCP_HEADER` below it, so they are as large as with the C driver (which keeps the
/// default 65536); bigger ones (forwarded) are segmented by the stack, where C drops them.
const TSO_MAX_SIZE: u32 = 0xffff;

/// Default number of queues when `max_queues` is 0 (`MAX_QUEUES_DEFAULT`).
const MAX_QUEUES_DEFAULT: u32 = 8;

/// Bound on an explicit `max_queues` (the C driver has none; a netdev with thousands of queues
/// would only fail to allocate).
const MAX_QUEUES_LIMIT: u32 = 256;

/// The `max_queues` module parameter as in C: 0 (the default) means `min(8, CPUs)`; any other
/// value is used as given (the backend's `multi-queue-max-queues` bounds it further).
fn max_queues() -> u32 {
    match crate::module_parameters::max_queues.value() {
        0 => MAX_QUEUES_DEFAULT.min(kernel::cpu::nr_cpu_ids()).max(1),
        n => n.min(MAX_QUEUES_LIMIT),
    }
}

/// Connection state of one device, changed in process context only.
struct Inner {
    netdev: Option<KBox<netdev_api::Registration<NetPriv>>>,
    queues: KVec<Arc<Napi<Queue>>>,
    /// The control ring, if the backend offers one (`feature-ctrl-ring`).
    ctrl: Option<CtrlRing>,
    /// RSS was set up on the control ring for this connection (or it failed).
    rss_tried: bool,
    /// The multicast filter (also held by the netdev), flushed when the netdev goes.
    mcast: Option<Arc<Mcast>>,
    /// The backend filters multicast for us on request, changeable while connected.
    mcast_dynamic: bool,
    /// Each queue's RX and TX queue of the netdev linked to its NAPI context (netdev netlink).
    links: KVec<QueueLink<Napi<Queue>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        disconnect(self);
        // The netdev goes last: NAPI holds a reference to it.
        self.netdev.take();
        if let Some(m) = self.mcast.take() {
            // Nothing may stay queued when the module goes.
            m.disconnect();
        }
    }
}

/// Per-device data.
#[pin_data]
pub(crate) struct FrontData {
    #[pin]
    inner: Mutex<Inner>,
}

/// Stops and frees the queues; the netdev stays registered (as over suspend/resume in C).
fn disconnect(inner: &mut Inner) {
    // Unbinds its event channel and ends the grant of its ring.
    drop(inner.ctrl.take());
    inner.rss_tried = false;
    if let Some(m) = inner.mcast.as_ref() {
        m.disconnect();
    }
    if !inner.links.is_empty() {
        let rtnl = RtnlGuard::lock();
        for link in inner.links.drain_all() {
            link.unlink(&rtnl);
        }
    }
    if inner.queues.is_empty() {
        return;
    }
    if let Some(reg) = inner.netdev.as_ref() {
        let dev = reg.device();
        dev.carrier_off();
        dev.stop_all_queues();
        // Polls stopped first, so that the counters the device keeps are final.
        for queue in inner.queues.iter() {
            queue.disable();
        }
        let taken = reg.data().take_queues();
        drop(taken);
    }
    for queue in inner.queues.iter() {
        queue.disable();
        // Unbind the event channel outside the lock; this breaks the reference cycle
        // queue -> event channel -> handler -> queue.
        let evt = queue.evtchn.lock().take();
        drop(evt);
    }
    inner.queues.clear();
}

fn read_backend_features(dev: &xb::Device<Core<'_>>) -> Result<BackendFeatures> {
    let be = dev.otherend();
    if !xenstore::read_bool_or(be, keys::FEATURE_RX_COPY, false)? {
        dev_err!(dev, "backend does not support copying receive path\n");
        return Err(ENODEV);
    }
    Ok(BackendFeatures {
        sg: xenstore::read_bool_or(be, keys::FEATURE_SG, false)?,
        gso_tcpv4: xenstore::read_bool_or(be, keys::FEATURE_GSO_TCPV4, false)?,
        gso_tcpv6: xenstore::read_bool_or(be, keys::FEATURE_GSO_TCPV6, false)?,
        ipv6_csum: xenstore::read_bool_or(be, keys::FEATURE_IPV6_CSUM_OFFLOAD, false)?,
        xdp_headroom: xenstore::read_bool_or(be, keys::FEATURE_XDP_HEADROOM, false)?,
    })
}

fn read_mac(dev: &xb::Device<Core<'_>>) -> Result<[u8; 6]> {
    let value = xenstore::read(dev.nodename(), c"mac")?;
    xenstore::parse_mac(value.as_bytes())
}

/// Removes a node in a transaction if it exists.
fn rm_stale(t: &xenstore::Transaction, dir: &CStr, node: &CStr) -> Result {
    match t.rm(dir, node) {
        Err(e) if e == ENOENT => Ok(()),
        r => r,
    }
}

/// Connects to a backend in InitWait (`xennet_connect` + `talk_to_netback`).
fn connect(dev: &xb::Device<Core<'_>>, inner: &mut Inner) -> Result {
    let features = read_backend_features(dev)?;
    let mac = read_mac(dev).inspect_err(|_| dev_err!(dev, "reading mac address\n"))?;

    // A reconnect (after resume or a backend restart) starts from scratch.
    disconnect(inner);

    if inner.netdev.is_none() {
        let mut opts = netdev_api::Options::new();
        opts.tx_queues = max_queues();
        opts.rx_queues = max_queues();
        opts.features = netdev::default_features();
        opts.hw_features = netdev::hw_features();
        opts.max_mtu = MAX_MTU;
        opts.mac = Some(mac);
        opts.tso_max_size = TSO_MAX_SIZE;
        opts.attributes = Some(netdev::attributes());
        let mcast = Mcast::new()?;
        inner.mcast = Some(mcast.clone());
        inner.netdev = Some(KBox::new(
            netdev_api::Registration::new(&opts, NetPriv::new(features, mcast, dev.into()))?,
            GFP_KERNEL,
        )?);
    }
    let Some(reg) = inner.netdev.as_ref() else {
        return Err(EINVAL);
    };
    let ndev = reg.device();
    reg.data().set_backend(features);
    reg.data()
        .set_otherend(CString::try_from_fmt(fmt!("{}", dev.otherend().to_str()?))?);
    {
        let rtnl = RtnlGuard::lock();
        ndev.update_features(&rtnl);
        // As C, whatever the backend offers (attaching checks it).
        ndev.set_xdp_features(
            &rtnl,
            Features::BASIC | Features::REDIRECT | Features::NDO_XMIT,
        );
    }

    let domid = dev.otherend_id();
    // XSA-403: an untrusted backend gets copies of the TX data in pages of ours, never the
    // pages the packets live in (the `trusted` parameter, or this device's `trusted` key).
    let bounce = !crate::module_parameters::trusted.value()
        || xenstore::read_uint_or::<u32>(dev.nodename(), c"trusted", 1).map_or(true, |v| v == 0);
    if bounce {
        dev_info!(dev, "bouncing all TX data: backend not trusted\n");
    }
    let be_max = xenstore::read_uint_or::<u32>(dev.otherend(), keys::MULTI_QUEUE_MAX_QUEUES, 1)?;
    let num_queues = reg
        .data()
        .queues_to_connect(max_queues(), be_max)
        .min(ndev.num_tx_queues());
    {
        let rtnl = RtnlGuard::lock();
        ndev.set_real_num_tx_queues(&rtnl, num_queues)?;
        ndev.set_real_num_rx_queues(&rtnl, num_queues)?;
    }

    let ifname = ndev.name().to_str().unwrap_or("vif");
    let split = xenstore::read_bool_or(dev.otherend(), keys::FEATURE_SPLIT_EVENT_CHANNELS, false)?;
    // Per queue: the ring references and the event channel ports (TX, and RX if split).
    let mut keys_of: KVec<(u32, u32, u32, Option<u32>)> = KVec::new();
    for index in 0..num_queues {
        let tx_ring = RingPages::setup(dev, 1)?;
        let rx_ring = RingPages::setup(dev, 1)?;
        let queue = Arc::pin_init(
            Napi::new(
                ndev,
                Queue::new(
                    ndev,
                    domid,
                    index as u16,
                    bounce,
                    tx_ring,
                    rx_ring,
                    reg.data().xdp_prog(),
                )?,
            ),
            GFP_KERNEL,
        )?;
        // Named as C names them: "<ifname>-q<N>", or "-tx"/"-rx" after it when split.
        let bind = |rings: Rings, suffix: &str| -> Result<(Pin<KBox<Evtchn>>, u32)> {
            let port = UnboundPort::alloc(dev)?;
            let nr = port.port().0;
            let name = CString::try_from_fmt(fmt!("{ifname}-q{index}{suffix}"))?;
            let irq = Irq {
                queue: queue.clone(),
                rings,
            };
            let evt = KBox::pin_init(
                Registration::bind(port, name, Ok::<_, Error>(irq)),
                GFP_KERNEL,
            )?;
            Ok((evt, nr))
        };
        let (channels, tx_port, rx_port) = if split {
            let (tx, tx_port) = bind(Rings::Tx, "-tx")?;
            let (rx, rx_port) = bind(Rings::Rx, "-rx")?;
            (Channels { tx, rx: Some(rx) }, tx_port, Some(rx_port))
        } else {
            let (tx, port) = bind(Rings::Both, "")?;
            (Channels { tx, rx: None }, port, None)
        };
        *queue.evtchn.lock() = Some(channels);
        // From here on `disconnect` undoes everything.
        inner.queues.push(queue.clone(), GFP_KERNEL)?;
        queue.refill_rx();
        let (tx_ref, rx_ref) = queue.ring_refs();
        keys_of.push((tx_ref, rx_ref, tx_port, rx_port), GFP_KERNEL)?;
    }

    // The control ring, towards a backend that offers one (the C driver has none).
    let mut ctrl_keys = None;
    if xenstore::read_bool_or(dev.otherend(), keys::FEATURE_CTRL_RING, false).unwrap_or(false) {
        match CtrlRing::new(dev, ifname) {
            Ok((ring, gref, port)) => {
                inner.ctrl = Some(ring);
                ctrl_keys = Some((gref, port));
            }
            Err(e) => dev_warn!(dev, "no control ring ({e:?}): RSS stays off\n"),
        }
    }

    let be_bool = |key| xenstore::read_bool_or(dev.otherend(), key, false).unwrap_or(false);
    let mcast_dynamic = be_bool(keys::FEATURE_MULTICAST_CONTROL)
        && be_bool(keys::FEATURE_DYNAMIC_MULTICAST_CONTROL);
    inner.mcast_dynamic = mcast_dynamic;

    let node = dev.nodename();
    let multi = xenstore::exists(dev.otherend(), keys::MULTI_QUEUE_MAX_QUEUES);
    xenstore::transaction(|t| {
        if multi {
            t.write_fmt(node, keys::MULTI_QUEUE_NUM_QUEUES, fmt!("{}", num_queues))?;
        }
        for (index, &(tx_ref, rx_ref, tx_port, rx_port)) in keys_of.iter().enumerate() {
            let queue_dir;
            let dir = if num_queues == 1 {
                node
            } else {
                queue_dir = CString::try_from_fmt(fmt!("{}/queue-{}", node.to_str()?, index))?;
                &queue_dir
            };
            t.write_fmt(dir, keys::TX_RING_REF, fmt!("{}", tx_ref))?;
            t.write_fmt(dir, keys::RX_RING_REF, fmt!("{}", rx_ref))?;
            // The keys of the other layout, left by an earlier connection, go: a backend
            // looks for the split keys first (C netback `connect_data_rings`).
            match rx_port {
                None => {
                    rm_stale(t, dir, keys::EVENT_CHANNEL_TX)?;
                    rm_stale(t, dir, keys::EVENT_CHANNEL_RX)?;
                    t.write_fmt(dir, keys::EVENT_CHANNEL, fmt!("{}", tx_port))?;
                }
                Some(rx_port) => {
                    rm_stale(t, dir, keys::EVENT_CHANNEL)?;
                    t.write_fmt(dir, keys::EVENT_CHANNEL_TX, fmt!("{}", tx_port))?;
                    t.write_fmt(dir, keys::EVENT_CHANNEL_RX, fmt!("{}", rx_port))?;
                }
            }
        }
        if mcast_dynamic {
            // Off until the worker has told the backend our addresses.
            t.write(node, keys::REQUEST_MULTICAST_CONTROL, c"0")?;
        }
        if let Some((gref, port)) = ctrl_keys {
            t.write_fmt(node, keys::CTRL_RING_REF, fmt!("{}", gref))?;
            t.write_fmt(node, keys::EVENT_CHANNEL_CTRL, fmt!("{}", port))?;
        }
        if features.xdp_headroom {
            // The headroom the program needs, or none (`talk_to_netback_xdp`).
            let headroom = if reg.data().has_xdp() {
                xdp::PACKET_HEADROOM
            } else {
                0
            };
            t.write_fmt(node, keys::XDP_HEADROOM, fmt!("{}", headroom))?;
        }
        t.write(node, keys::REQUEST_RX_COPY, c"1")?;
        t.write(node, keys::FEATURE_RX_NOTIFY, c"1")?;
        t.write(node, keys::FEATURE_SG, c"1")?;
        t.write(node, keys::FEATURE_GSO_TCPV4, c"1")?;
        t.write(node, keys::FEATURE_GSO_TCPV6, c"1")?;
        t.write(node, keys::FEATURE_IPV6_CSUM_OFFLOAD, c"1")?;
        Ok(())
    })
    .inspect_err(|_| dev_err!(dev, "writing xenstore keys\n"))?;

    let mut published = KVec::with_capacity(inner.queues.len(), GFP_KERNEL)?;
    for q in inner.queues.iter() {
        published.push(q.clone(), GFP_KERNEL)?;
    }
    {
        let rtnl = RtnlGuard::lock();
        let data = reg.data();
        // The program as of now (attaching and detaching hold RTNL too).
        for q in published.iter() {
            q.set_xdp_prog(data.xdp_prog());
        }
        // The old (empty) list is dropped under the lock, which is fine.
        *data.queues.lock() = published;
        // Beyond the C driver: netdev netlink shows which NAPI context serves which queue
        // (one context per RX/TX ring pair).
        fn own(n: &Napi<Queue>) -> &Napi<Queue> {
            n
        }
        for (index, q) in inner.queues.iter().enumerate() {
            for kind in [QueueType::Rx, QueueType::Tx] {
                let link = QueueLink::new(&rtnl, q.clone(), own, kind, index as u32)?;
                inner.links.push(link, GFP_KERNEL)?;
            }
        }
        if ndev.is_running() {
            for q in inner.queues.iter() {
                q.enable();
                q.schedule();
            }
        }
        ndev.carrier_on();
        if ndev.is_running() {
            ndev.wake_all_queues();
        }
    }
    Ok(())
}

impl xb::Driver for NetFront {
    type IdInfo = ();
    type Data<'bound> = FrontData;
    const ID_TABLE: xb::IdTable<Self::IdInfo> = &NETFRONT_TABLE;

    fn probe<'bound>(
        dev: &'bound xb::Device<Core<'_>>,
        _info: &'bound Self::IdInfo,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        // As `xennet_create_dev`: announce ourselves and give a closed backend (e.g. after our
        // previous instance closed it) time to come back to InitWait before the state watch
        // starts, so that its Closed is not taken for a close request.
        for _ in 0..3 {
            let _ = dev.switch_state(State::Initialising);
            if wait_backend(dev, |s| s != State::Closed && s != State::Unknown, 5000) {
                break;
            }
        }
        try_pin_init!(FrontData {
            inner <- new_mutex!(Inner {
                netdev: None,
                queues: KVec::new(),
                ctrl: None,
                rss_tried: false,
                mcast: None,
                mcast_dynamic: false,
                links: KVec::new(),
            }),
        }? Error)
    }

    fn otherend_changed<'bound>(
        dev: &'bound xb::Device<Core<'_>>,
        this: Pin<&Self::Data<'bound>>,
        state: State,
    ) {
        match state {
            State::InitWait => {
                if dev.state() != State::Initialising {
                    return;
                }
                let mut inner = this.inner.lock();
                if let Err(e) = connect(dev, &mut inner) {
                    disconnect(&mut inner);
                    dev.dev_fatal(e, fmt!("connecting to {:?}", dev.otherend()));
                    return;
                }
                if let Err(e) = dev.switch_state(State::Connected) {
                    dev.dev_fatal(e, fmt!("switching to Connected"));
                }
            }
            State::Connected => {
                let mut inner = this.inner.lock();
                // The backend connects the control ring when it connects: RSS now, once.
                if !inner.rss_tried {
                    inner.rss_tried = true;
                    let num_queues = inner.queues.len() as u32;
                    if let Some(ctrl) = inner.ctrl.as_mut() {
                        match ctrl.setup_rss(num_queues) {
                            Ok((types, size)) => dev_info!(
                                dev,
                                "RSS: Toeplitz, hash types {types:#x}, {size} mapping entries over {num_queues} queues\n"
                            ),
                            Err(e) => dev_warn!(dev, "RSS setup failed ({e:?}): RSS stays off\n"),
                        }
                    }
                }
                // The multicast filter, through queue 0, once the backend is connected.
                if inner.mcast_dynamic {
                    if let (Some(m), Some(q)) = (inner.mcast.as_ref(), inner.queues.first()) {
                        if let Ok(node) =
                            CString::try_from_fmt(fmt!("{}", dev.nodename().to_str().unwrap_or("")))
                        {
                            m.connect(node, q.clone());
                        }
                    }
                }
                // Gratuitous ARP once the backend is on its bridge.
                if let Some(reg) = inner.netdev.as_ref() {
                    reg.device().notify_peers();
                }
            }
            State::Closing | State::Closed if with_priv(&this, NetPriv::is_reconnecting) => {
                // `ethtool -L`: close, and start over once the backend is closed too (it
                // answers our Initialising with InitWait, then `connect` runs as usual).
                let mut inner = this.inner.lock();
                disconnect(&mut inner);
                drop(inner);
                let _ = dev.switch_state(State::Closed);
                if dev.read_otherend_state() == State::Closed
                    && with_priv(&this, NetPriv::end_reconnect)
                {
                    let _ = dev.switch_state(State::Initialising);
                }
            }
            State::Closed if dev.state() == State::Closed => {}
            State::Closing | State::Closed => {
                dev.frontend_closed();
            }
            _ => {}
        }
    }

    fn unbind<'bound>(dev: &'bound xb::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        bus_close(dev);
        let mut inner = this.inner.lock();
        disconnect(&mut inner);
    }

    fn resume<'bound>(dev: &'bound xb::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) -> Result {
        let _ = dev;
        let mut inner = this.inner.lock();
        disconnect(&mut inner);
        Ok(())
    }
}

/// `f` of the netdev's private data, `false` without a netdev (`ethtool -L` reconnects).
fn with_priv(this: &Pin<&FrontData>, f: fn(&NetPriv) -> bool) -> bool {
    let inner = this.inner.lock();
    inner.netdev.as_ref().is_some_and(|reg| f(&reg.data()))
}

/// Waits up to `timeout_ms` for the backend to reach a state `ok` accepts.
fn wait_backend(dev: &xb::Device<Core<'_>>, ok: impl Fn(State) -> bool, timeout_ms: u32) -> bool {
    let mut waited = 0;
    loop {
        if ok(dev.read_otherend_state()) {
            return true;
        }
        if waited >= timeout_ms {
            return false;
        }
        fsleep(Delta::from_millis(20));
        waited += 20;
    }
}

/// Orderly close on removal (`xennet_bus_close`): Closing, then Closed, 5 s each at most.
fn bus_close(dev: &xb::Device<Core<'_>>) {
    if dev.state() == State::Closed || dev.read_otherend_state() == State::Closed {
        return;
    }
    let _ = dev.switch_state(State::Closing);
    if !wait_backend(
        dev,
        |s| matches!(s, State::Closing | State::Closed | State::Unknown),
        5000,
    ) {
        dev_warn!(dev, "timeout closing device\n");
    }
    let _ = dev.switch_state(State::Closed);
    if !wait_backend(dev, |s| matches!(s, State::Closed | State::Unknown), 5000) {
        dev_warn!(dev, "timeout closing device\n");
    }
}
