// SPDX-License-Identifier: GPL-2.0

//! Xen network interface (netif) protocol.
//!
//! C header: [`include/xen/interface/io/netif.h`](srctree/include/xen/interface/io/netif.h)
