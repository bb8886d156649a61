// SPDX-License-Identifier: GPL-2.0

//! Xen paravirtual network device frontend, in Rust.
//!
//! Drop-in replacement for `drivers/net/xen-netfront.c`: binds to xenbus devices of type `vif`
//! in a guest domain, negotiates with the backend through xenstore, shares one TX and one RX
//! ring per queue and registers an Ethernet device.
//!
//! TX data is granted to the backend in place, read-only, one grant per 4 KiB piece of each
//! packet; an untrusted backend (`trusted=0`, or the device's xenstore key `trusted` = 0) gets
//! copies in pages of the driver instead, so that it never sees other kernel memory (XSA-403).
//!
//! Beyond the C driver: towards a backend that offers a control ring, Toeplitz RSS is set up
//! over the queues ([`ctrl`]) and the backend's hash of each received packet becomes its skb
//! hash; the backend filters multicast for the addresses the device listens to ([`mcast`]).

#![forbid(unsafe_code)]

mod ctrl;
mod mcast;
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
            default: 0,
            description: "Maximum number of queues per virtual interface",
        },
        trusted: bool {
            default: true,
            description: "Is the backend trusted",
        },
    },
}
