// SPDX-License-Identifier: GPL-2.0

//! Xen paravirtual network device frontend, in Rust.
//!
//! Drop-in replacement for `drivers/net/xen-netfront.c`: binds to xenbus devices of type `vif`
//! in a guest domain. Bring-up stage: the module carries its final name and aliases, the driver
//! itself follows in the frontend issue, so this module does not register with xenbus yet.

#![forbid(unsafe_code)]

use kernel::prelude::*;

module! {
    type: NetFront,
    name: "xen_netfront_rs",
    authors: ["xen-netrs developers"],
    description: "Xen virtual network device frontend (Rust)",
    license: "GPL",
    alias: ["xen:vif"],
}

struct NetFront;

impl kernel::Module for NetFront {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("loaded (bring-up stage: no xenbus driver registered yet)\n");
        Ok(NetFront)
    }
}

impl Drop for NetFront {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
