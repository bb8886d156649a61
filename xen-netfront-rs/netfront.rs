// SPDX-License-Identifier: GPL-2.0

//! Xen paravirtual network device frontend, in Rust.
//!
//! Drop-in replacement for `drivers/net/xen-netfront.c`: binds to xenbus devices of type `vif`
//! in a guest domain, negotiates with the backend through xenstore, shares one TX and one RX
//! ring per queue and registers an Ethernet device.
//!
//! Differences from the C driver so far: TX data is always bounced into pages owned
//! by the driver (what the C driver does only for an untrusted backend), so the backend never
//! sees any other kernel memory (XSA-403 by construction).

#![forbid(unsafe_code)]

mod netdev;
mod queue;
mod xenbus;

kernel::module_xenbus_frontend_driver! {
    type: xenbus::NetFront,
    name: "xen_netfront_rs",
    authors: ["xen-netrs developers"],
    description: "Xen virtual network device frontend (Rust)",
    license: "GPL",
    alias: ["xen:vif"],
    params: {
        max_queues: u32 {
            default: 8,
            description: "Maximum number of queues per virtual interface",
        },
    },
}
