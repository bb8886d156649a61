// SPDX-License-Identifier: GPL-2.0

//! Xen paravirtual network device backend, in Rust.
//!
//! Drop-in replacement for `drivers/net/xen-netback/`: binds to xenbus backend devices of type
//! `vif` in the driver domain and creates one `vif<domid>.<handle>` network device per frontend
//! network interface.
//!
//! - [`xenbus`]: the xenbus backend (negotiation keys, state machine, hotplug-status watch);
//! - [`interface`]: the network device and its queues;
//! - [`tx`]: guest TX (frontend to dom0), map-free by default: every slot is grant-copied;
//! - [`zerocopy`]: guest TX by grant map (`tx_mode=1`), as the C driver;
//! - [`rx`]: guest RX (dom0 to frontend), grant copy from a worker;
//! - [`ctrl`]: the control ring; [`hash`]: its Toeplitz hash configuration and the multicast
//!   filter.
//!
//! The frontend is not trusted: each ring entry is copied once and validated, every index and
//! length is bounded, xenstore values are range-checked. A misbehaving frontend only disables
//! its own vif.

#![forbid(unsafe_code)]

use kernel::{
    driver,
    prelude::*,
    xen::xenbus::BackendAdapter, //
};

mod ctrl;
mod debugfs;
mod hash;
mod interface;
mod rx;
mod tx;
mod xenbus;
mod zerocopy;

/// Number of slots a packet may always use (`XEN_NETBK_LEGACY_SLOTS_MAX`).
pub(crate) const LEGACY_SLOTS_MAX: usize = kernel::xen::netif::NR_SLOTS_MIN as usize;

/// Default of `fatal_skb_slots` (C: `FATAL_SKB_SLOTS_DEFAULT`).
pub(crate) const FATAL_SKB_SLOTS: usize = 20;

/// Largest accepted `fatal_skb_slots` (bounds what a packet's requests take in memory).
pub(crate) const FATAL_SKB_SLOTS_MAX: usize = 32;

/// Default number of queues (C: `MAX_QUEUES_DEFAULT`).
const MAX_QUEUES_DEFAULT: u32 = 8;

/// A TX packet with this many slots or more is fatal (`fatal_skb_slots`, at least 18).
pub(crate) fn fatal_skb_slots() -> usize {
    (module_parameters::fatal_skb_slots.value() as usize)
        .clamp(LEGACY_SLOTS_MAX, FATAL_SKB_SLOTS_MAX)
}

/// Whether guest TX maps the frontend's pages (`tx_mode=1`) instead of copying them; read at
/// connect.
pub(crate) fn tx_mode_map() -> bool {
    module_parameters::tx_mode.value() == 1
}

/// Whether split event channels are advertised (`separate_tx_rx_irq`).
pub(crate) fn separate_tx_rx_irq() -> bool {
    module_parameters::separate_tx_rx_irq.value()
}

/// Age after which the packets queued for a frontend that posts no buffers are dropped
/// (`rx_drain_timeout_msecs`).
pub(crate) fn rx_drain_timeout_msecs() -> u32 {
    module_parameters::rx_drain_timeout_msecs.value().max(1)
}

/// Time without progress after which a frontend that has queued packets waiting and notifies
/// when it posts buffers is considered stalled: the carrier goes off until it posts again
/// (`rx_stall_timeout_msecs`, XSA-392).
pub(crate) fn rx_stall_timeout_msecs() -> u32 {
    module_parameters::rx_stall_timeout_msecs.value().max(1)
}

/// Entries of each vif's cache of Toeplitz hashes (`hash_cache_size`; 0: no cache), read when
/// the vif is created, at most `hash::HASH_CACHE_MAX`.
pub(crate) fn hash_cache_size() -> usize {
    module_parameters::hash_cache_size.value() as usize
}

/// Whether `feature-xdp-headroom` is offered (`provides_xdp_headroom`).
pub(crate) fn provides_xdp_headroom() -> bool {
    module_parameters::provides_xdp_headroom.value()
}

/// Most queues a frontend may ask for (`max_queues`; 0: the number of CPUs, at most 8).
pub(crate) fn max_queues() -> u32 {
    match module_parameters::max_queues.value() {
        0 => kernel::cpu::nr_cpu_ids().clamp(1, MAX_QUEUES_DEFAULT),
        n => n.min(64),
    }
}

struct NetBackModule {
    /// The xenbus driver; `None` outside Xen, where there is nothing to serve (the module still
    /// loads, so that its KUnit suites run in a plain VM).
    _driver: Option<Pin<KBox<driver::Registration<BackendAdapter<xenbus::NetBack>>>>>,
}

impl kernel::Module for NetBackModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        if !kernel::xen::xen_domain() {
            pr_info!("not running on Xen: no vif backend\n");
            return Ok(Self { _driver: None });
        }
        debugfs::init()?;
        let driver = match KBox::pin_init(
            driver::Registration::new(<Self as kernel::ModuleMetadata>::NAME, module),
            GFP_KERNEL,
        ) {
            Ok(d) => d,
            Err(e) => {
                debugfs::exit();
                return Err(e);
            }
        };
        Ok(Self {
            _driver: Some(driver),
        })
    }
}

impl Drop for NetBackModule {
    fn drop(&mut self) {
        // Every vif, and its debugfs directory, is gone with the driver; then the root goes.
        drop(self._driver.take());
        debugfs::exit();
    }
}

module! {
    type: NetBackModule,
    name: "xen_netback_rs",
    authors: ["xen-netrs developers"],
    description: "Xen network device backend (Rust)",
    license: "GPL",
    alias: ["xen-backend:vif"],
    params: {
        separate_tx_rx_irq: bool {
            default: true,
            description: "Advertise separate TX and RX event channels",
        },
        max_queues: u32 {
            default: 0,
            description: "Maximum number of queues per virtual interface (0: CPUs, at most 8)",
        },
        rx_drain_timeout_msecs: u32 {
            default: 10000,
            description: "Age at which the packets queued for a stalled frontend are dropped (ms)",
        },
        fatal_skb_slots: u32 {
            default: 20,
            description: "Number of TX slots that is fatal for a packet (18 to 32)",
        },
        rx_stall_timeout_msecs: u32 {
            default: 60000,
            description: "Time without progress after which a frontend is considered stalled (ms)",
        },
        provides_xdp_headroom: bool {
            default: true,
            description: "Offer frontends a headroom before received packets (feature-xdp-headroom)",
        },
        tx_mode: u32 {
            default: 0,
            description: "Guest TX: 0 grant-copies every packet, 1 grant-maps all but the first 128 bytes (zero-copy, as the C driver; no C equivalent)",
        },
        hash_cache_size: u32 {
            default: 64,
            description: "Number of flows in the hash cache",
        },
    },
}
