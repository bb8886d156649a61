// SPDX-License-Identifier: GPL-2.0

//! Xen support.
//!
//! Building blocks for drivers that talk to another Xen domain through shared memory:
//!
//! - [`ring`]: the shared-ring protocol (requests and responses in a shared page), hardened
//!   against a peer that writes anything into the shared page at any time;
//! - [`netif`]: the network interface protocol (the messages of the netfront/netback rings,
//!   their flags and the xenstore keys);
//! - [`xenbus`]: xenbus drivers and devices;
//! - [`xenstore`]: reads (range-checked), writes, transactions and watches of xenstore;
//! - [`grant`]: grant references, grants of local memory, grant copies and ring pages;
//! - [`evtchn`]: event channels and their interrupt handlers (with late EOI).
//!
//! C headers: [`include/xen/interface/io/ring.h`](srctree/include/xen/interface/io/ring.h),
//! [`include/xen/interface/io/netif.h`](srctree/include/xen/interface/io/netif.h).

pub mod evtchn;
pub mod grant;
pub mod netif;
pub mod ring;
pub mod work;
pub mod xenbus;
pub mod xenstore;

/// The id of a Xen domain (`domid_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomId(pub u16);

impl DomId {
    /// The domain itself (`DOMID_SELF`).
    pub const SELF: DomId = DomId(bindings::DOMID_SELF as u16);

    /// No domain (`DOMID_INVALID`).
    pub const INVALID: DomId = DomId(bindings::DOMID_INVALID as u16);
}

/// Returns whether the kernel runs in a Xen domain (`xen_domain()`).
///
/// # Examples
///
/// ```
/// if !kernel::xen::xen_domain() {
///     pr_info!("not running on Xen\n");
/// }
/// ```
#[inline]
pub fn xen_domain() -> bool {
    // SAFETY: `xen_domain()` only reads the domain type, set at boot.
    unsafe { bindings::xen_domain() }
}

/// Size of a Xen page, the unit of sharing between domains (`XEN_PAGE_SIZE`).
///
/// Xen pages are always 4 KiB, whatever the kernel's own page size is.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;

/// Shift of a Xen page (`XEN_PAGE_SHIFT`).
pub const PAGE_SHIFT: usize = 12;

/// Full memory barrier for memory shared with another domain (`virt_mb()`).
///
/// Orders all preceding loads and stores against all following ones, as seen by the other domain.
/// Unlike [`smp_mb`](crate::sync::barrier::smp_mb), it stays a real barrier on kernels built
/// without `CONFIG_SMP`: the other domain runs on another (virtual) CPU anyway.
///
/// # Examples
///
/// ```
/// use kernel::xen::virt_mb;
///
/// virt_mb();
/// ```
#[inline]
pub fn virt_mb() {
    // SAFETY: `virt_mb()` has no preconditions.
    unsafe { bindings::virt_mb() };
}

/// Read memory barrier for memory shared with another domain (`virt_rmb()`).
///
/// Orders preceding loads against following loads.
///
/// # Examples
///
/// ```
/// use kernel::xen::virt_rmb;
///
/// virt_rmb();
/// ```
#[inline]
pub fn virt_rmb() {
    // SAFETY: `virt_rmb()` has no preconditions.
    unsafe { bindings::virt_rmb() };
}

/// Write memory barrier for memory shared with another domain (`virt_wmb()`).
///
/// Orders preceding stores against following stores.
///
/// # Examples
///
/// ```
/// use kernel::xen::virt_wmb;
///
/// virt_wmb();
/// ```
#[inline]
pub fn virt_wmb() {
    // SAFETY: `virt_wmb()` has no preconditions.
    unsafe { bindings::virt_wmb() };
}
