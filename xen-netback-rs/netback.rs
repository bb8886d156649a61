// SPDX-License-Identifier: GPL-2.0

//! Xen paravirtual network device backend, in Rust.
//!
//! Drop-in replacement for `drivers/net/xen-netback/`: binds to xenbus backend devices of type
//! `vif` in the driver domain. Bring-up stage: the module carries its final name and aliases,
//! the driver itself follows in the backend issue, so this module does not register with xenbus
//! yet.

#![forbid(unsafe_code)]

use kernel::prelude::*;

module! {
    type: NetBack,
    name: "xen_netback_rs",
    authors: ["xen-netrs developers"],
    description: "Xen network device backend (Rust)",
    license: "GPL",
    alias: ["xen-backend:vif"],
}

struct NetBack;

impl kernel::Module for NetBack {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("loaded (bring-up stage: no xenbus driver registered yet)\n");
        Ok(NetBack)
    }
}

impl Drop for NetBack {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
