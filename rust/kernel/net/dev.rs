// SPDX-License-Identifier: GPL-2.0

//! Network devices (`struct net_device`).
//!
//! A driver implements [`Operations`] (and [`ethtool::Operations`]) on its private data type and
//! creates a [`Registration`]: the private data lives in the `net_device` allocation
//! (`netdev_priv()`), is initialised in place with pin-init before the device is registered, and
//! is dropped after the device is unregistered.
//!
//! # Examples
//!
//! A device that counts and frees what it is asked to send, written without `unsafe`:
//!
//! ```
//! use kernel::net::{
//!     dev::{self, Device, NetdevTx, Options, Registration},
//!     ethtool,
//!     skb::SkBuff,
//!     stats::{QueueStats, Stats64},
//! };
//!
//! struct Sink {
//!     tx: QueueStats,
//! }
//!
//! #[vtable]
//! impl dev::Operations for Sink {
//!     fn start_xmit(_dev: &Device, this: Pin<&Self>, skb: SkBuff) -> NetdevTx {
//!         this.tx.packet(skb.len());
//!         skb.consume();
//!         NetdevTx::Ok
//!     }
//!
//!     fn get_stats64(_dev: &Device, this: Pin<&Self>, stats: &mut Stats64) {
//!         stats.add_tx(&this.tx);
//!     }
//! }
//!
//! #[vtable]
//! impl ethtool::Operations for Sink {
//!     const STATS: &'static [&'static CStr] = &[c"tx_packets"];
//!
//!     fn get_stats(_dev: &Device, this: Pin<&Self>, values: &mut [u64]) {
//!         values[0] = this.tx.packets.get();
//!     }
//! }
//!
//! let mut opts = Options::new();
//! opts.name = c"sink%d";
//! let reg = Registration::new(&opts, Sink { tx: QueueStats::new() })?;
//! assert!(reg.device().name().to_bytes().starts_with(b"sink"));
//! assert_eq!(reg.data().tx.packets.get(), 0);
//! // Unregisters and frees the device.
//! drop(reg);
//! # Ok::<(), Error>(())
//! ```
//!
//! C headers: [`include/linux/netdevice.h`](srctree/include/linux/netdevice.h),
//! [`include/linux/etherdevice.h`](srctree/include/linux/etherdevice.h)

use crate::{
    bindings,
    error::{
        from_result,
        to_result,
        VTABLE_DEFAULT_ERROR, //
    },
    net::{
        ethtool,
        skb::{
            SkBuff,
            SkBuffRef, //
        },
        stats::{
            QueueStatsRx,
            QueueStatsTx,
            Stats64, //
        },
    },
    prelude::*,
    sync::aref::AlwaysRefCounted,
    types::Opaque, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

#[cfg(CONFIG_BPF_SYSCALL)]
use crate::net::xdp;

/// Length of an Ethernet (MAC) address (`ETH_ALEN`).
pub const ETH_ALEN: usize = bindings::ETH_ALEN as usize;

/// Default MTU of an Ethernet device (`ETH_DATA_LEN`).
pub const ETH_DATA_LEN: u32 = bindings::ETH_DATA_LEN;

/// Returns `true` if a networking message may be logged now (`net_ratelimit()`): the rate limit
/// the C drivers use for messages a peer or the network can provoke at will.
pub fn ratelimit() -> bool {
    // SAFETY: `net_ratelimit()` has no preconditions and may be called in any context.
    unsafe { bindings::net_ratelimit() != 0 }
}

/// Minimum MTU of an Ethernet device (`ETH_MIN_MTU`).
pub const ETH_MIN_MTU: u32 = bindings::ETH_MIN_MTU;

/// Maximum length of a device name, including the terminating NUL (`IFNAMSIZ`).
pub const IFNAMSIZ: usize = bindings::IFNAMSIZ as usize;

/// Offload features of a network device (`netdev_features_t`, the `NETIF_F_*` flags).
///
/// # Examples
///
/// ```
/// use kernel::net::dev::Features;
///
/// let f = Features::SG | Features::TSO | Features::IP_CSUM;
/// assert!(f.contains(Features::SG | Features::TSO));
/// assert!(!f.contains(Features::TSO6));
/// let f = f & !Features::TSO;
/// assert!(!f.intersects(Features::TSO));
/// assert_eq!(f.bits(), (Features::SG | Features::IP_CSUM).bits());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Features(u64);

macro_rules! features {
    ($($(#[$doc:meta])* $name:ident = $bit:ident,)*) => {
        impl Features {
            $(
                $(#[$doc])*
                pub const $name: Self = Self(1u64 << bindings::$bit);
            )*
        }
    };
}

features! {
    /// Scatter/gather I/O (`NETIF_F_SG`).
    SG = NETIF_F_SG_BIT,
    /// Checksumming of TCP/UDP over IPv4 (`NETIF_F_IP_CSUM`).
    IP_CSUM = NETIF_F_IP_CSUM_BIT,
    /// Checksumming of TCP/UDP over IPv6 (`NETIF_F_IPV6_CSUM`).
    IPV6_CSUM = NETIF_F_IPV6_CSUM_BIT,
    /// Checksumming of all packets (`NETIF_F_HW_CSUM`).
    HW_CSUM = NETIF_F_HW_CSUM_BIT,
    /// Receive checksum offload (`NETIF_F_RXCSUM`).
    RXCSUM = NETIF_F_RXCSUM_BIT,
    /// TCP segmentation offload over IPv4 (`NETIF_F_TSO`).
    TSO = NETIF_F_TSO_BIT,
    /// TCP segmentation offload over IPv6 (`NETIF_F_TSO6`).
    TSO6 = NETIF_F_TSO6_BIT,
    /// TCP ECN segmentation offload (`NETIF_F_TSO_ECN`).
    TSO_ECN = NETIF_F_TSO_ECN_BIT,
    /// The device accepts GSO packets from untrusted sources (`NETIF_F_GSO_ROBUST`).
    GSO_ROBUST = NETIF_F_GSO_ROBUST_BIT,
    /// Generic receive offload (`NETIF_F_GRO`).
    GRO = NETIF_F_GRO_BIT,
    /// Frag lists on transmit (`NETIF_F_FRAGLIST`).
    FRAGLIST = NETIF_F_FRAGLIST_BIT,
    /// Memory in high memory is fine for DMA (`NETIF_F_HIGHDMA`).
    HIGHDMA = NETIF_F_HIGHDMA_BIT,
    /// Receive hashing offload (`NETIF_F_RXHASH`).
    RXHASH = NETIF_F_RXHASH_BIT,
}

impl Features {
    /// No features.
    pub const NONE: Self = Self(0);
}

/// Implements the operations of a set of bits `$name`, a tuple struct around an integer `$int`
/// (such as [`Features`] or [`GsoType`](super::skb::GsoType)): `bits()`, `from_bits()`,
/// `contains()`, `intersects()` and the `|`, `&`, `!`, `|=` and `&=` operators. `$c_name` names
/// the C type or constants of the bits, for the documentation.
macro_rules! impl_bit_set {
    ($name:ident($int:ty), $c_name:literal) => {
        impl $name {
            #[doc = concat!("Returns the raw ", $c_name, " bits.")]
            pub const fn bits(self) -> $int {
                self.0
            }

            #[doc = concat!("Creates a value from raw ", $c_name, " bits.")]
            pub const fn from_bits(bits: $int) -> Self {
                Self(bits)
            }

            /// Returns whether all bits of `other` are set in `self`.
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// Returns whether `self` and `other` have a bit in common.
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                Self(self.0 | rhs.0)
            }
        }

        impl core::ops::BitAnd for $name {
            type Output = Self;
            fn bitand(self, rhs: Self) -> Self {
                Self(self.0 & rhs.0)
            }
        }

        impl core::ops::Not for $name {
            type Output = Self;
            fn not(self) -> Self {
                Self(!self.0)
            }
        }

        impl core::ops::BitOrAssign for $name {
            fn bitor_assign(&mut self, rhs: Self) {
                self.0 |= rhs.0;
            }
        }

        impl core::ops::BitAndAssign for $name {
            fn bitand_assign(&mut self, rhs: Self) {
                self.0 &= rhs.0;
            }
        }
    };
}
pub(crate) use impl_bit_set;

impl_bit_set!(Features(u64), "`netdev_features_t`");

/// Proof that the caller holds the RTNL lock (`rtnl_lock()`).
///
/// Only references exist: from [`RtnlGuard`], which takes the lock.
///
/// # Invariants
///
/// The RTNL lock is held while a reference to a value of this type exists: values are only
/// created in an [`RtnlGuard`], which holds the lock for as long as it lives.
pub struct Rtnl(PhantomData<*mut ()>);

/// Holds the RTNL lock (`rtnl_lock()`) until dropped.
///
/// # Invariants
///
/// The current thread holds the RTNL lock, taken by [`RtnlGuard::lock`], until the guard is
/// dropped.
///
/// # Examples
///
/// ```
/// use kernel::net::dev::RtnlGuard;
///
/// let rtnl = RtnlGuard::lock();
/// drop(rtnl);
/// ```
pub struct RtnlGuard {
    rtnl: Rtnl,
}

impl RtnlGuard {
    /// Takes the RTNL lock; may sleep.
    pub fn lock() -> Self {
        // SAFETY: `rtnl_lock` has no preconditions besides process context, which sleeping
        // functions in Rust assume.
        unsafe { bindings::rtnl_lock() };
        // INVARIANT: The lock was just taken; it is released only when the guard is dropped.
        Self {
            rtnl: Rtnl(PhantomData),
        }
    }
}

impl core::ops::Deref for RtnlGuard {
    type Target = Rtnl;

    fn deref(&self) -> &Rtnl {
        &self.rtnl
    }
}

impl Drop for RtnlGuard {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the current thread holds the RTNL lock.
        unsafe { bindings::rtnl_unlock() };
    }
}

/// A network device (`struct net_device`).
///
/// Driver callbacks receive a `&Device`; [`ARef<Device>`](crate::sync::aref::ARef) keeps a device alive (`dev_hold()`).
///
/// # Invariants
///
/// `self.0` is a valid `struct net_device`, allocated with `alloc_netdev_mqs()` or a variant.
#[repr(transparent)]
pub struct Device(Opaque<bindings::net_device>);

// SAFETY: The methods of `Device` are thread safe: they call C functions that can be called from
// any thread, or read fields with single (racy but allowed by the C side) loads.
unsafe impl Send for Device {}
// SAFETY: As above.
unsafe impl Sync for Device {}

// SAFETY: `dev_hold` and `dev_put` manage the device reference count; the device is not freed
// while a reference is held.
unsafe impl AlwaysRefCounted for Device {
    fn inc_ref(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::dev_hold(self.as_raw()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // CAST: `Device` is a transparent wrapper of `Opaque<net_device>`.
        // SAFETY: The caller owns a reference to a valid device.
        unsafe { bindings::dev_put(obj.cast::<bindings::net_device>().as_ptr()) };
    }
}

impl Device {
    /// Creates a reference to a network device from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct net_device` for the lifetime `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::net_device) -> &'a Self {
        // CAST: `Device` is a transparent wrapper of `Opaque<net_device>`.
        // SAFETY: By the safety requirements.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw pointer to the `struct net_device`.
    pub fn as_raw(&self) -> *mut bindings::net_device {
        self.0.get()
    }

    /// Returns the device name, e.g. `eth0`.
    ///
    /// A name containing `%d` before registration is replaced by the registered name.
    pub fn name(&self) -> &CStr {
        // SAFETY: `name` is a NUL-terminated array of `IFNAMSIZ` bytes in a valid device.
        let name = unsafe { &*core::ptr::addr_of!((*self.as_raw()).name) };
        // CAST: `c_char` and `u8` have the same layout.
        // SAFETY: `name` is valid for `IFNAMSIZ` bytes.
        let bytes = unsafe { core::slice::from_raw_parts(name.as_ptr().cast::<u8>(), IFNAMSIZ) };
        CStr::from_bytes_until_nul(bytes).unwrap_or(c"")
    }

    /// Turns the carrier on: the link is up (`netif_carrier_on()`).
    pub fn carrier_on(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_carrier_on(self.as_raw()) };
    }

    /// Turns the carrier off: the link is down (`netif_carrier_off()`).
    pub fn carrier_off(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_carrier_off(self.as_raw()) };
    }

    /// Returns whether the carrier is on (`netif_carrier_ok()`).
    pub fn carrier_ok(&self) -> bool {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_carrier_ok(self.as_raw()) }
    }

    /// Returns whether the device is up (`netif_running()`).
    pub fn is_running(&self) -> bool {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_running(self.as_raw()) }
    }

    /// Marks the device as removed from the system, stopping its transmit queues
    /// (`netif_device_detach()`).
    pub fn detach(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_device_detach(self.as_raw()) };
    }

    /// Marks the device as present again and wakes its queues (`netif_device_attach()`).
    pub fn attach(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_device_attach(self.as_raw()) };
    }

    /// Returns the MTU (`READ_ONCE(dev->mtu)`).
    pub fn mtu(&self) -> u32 {
        // SAFETY: `mtu` is an aligned `unsigned int` in a valid device; the volatile read is
        // `READ_ONCE()`.
        unsafe { core::ptr::addr_of!((*self.as_raw()).mtu).read_volatile() }
    }

    /// Returns the minimum MTU.
    pub fn min_mtu(&self) -> u32 {
        // SAFETY: `min_mtu` is a field of a valid device, set before registration.
        unsafe { (*self.as_raw()).min_mtu }
    }

    /// Returns the maximum MTU.
    pub fn max_mtu(&self) -> u32 {
        // SAFETY: `max_mtu` is a field of a valid device, written only under RTNL.
        unsafe { core::ptr::addr_of!((*self.as_raw()).max_mtu).read_volatile() }
    }

    /// Sets the maximum MTU; the caller holds RTNL.
    pub fn set_max_mtu(&self, _rtnl: &Rtnl, max_mtu: u32) {
        // SAFETY: `max_mtu` is a field of a valid device, written under RTNL.
        unsafe { core::ptr::addr_of_mut!((*self.as_raw()).max_mtu).write_volatile(max_mtu) };
    }

    /// Returns the active features (`dev->features`).
    pub fn features(&self) -> Features {
        // SAFETY: `features` is a field of a valid device; the volatile read is `READ_ONCE()`.
        Features(unsafe { core::ptr::addr_of!((*self.as_raw()).features).read_volatile() })
    }

    /// Returns the features the user may toggle (`dev->hw_features`).
    pub fn hw_features(&self) -> Features {
        // SAFETY: `hw_features` is a field of a valid device.
        Features(unsafe { core::ptr::addr_of!((*self.as_raw()).hw_features).read_volatile() })
    }

    /// Recomputes the active features through [`Operations::fix_features`] and applies them
    /// (`netdev_update_features()`); the caller holds RTNL.
    pub fn update_features(&self, _rtnl: &Rtnl) {
        // SAFETY: `self.0` is valid and RTNL is held.
        unsafe { bindings::netdev_update_features(self.as_raw()) };
    }

    /// Sets the XDP features the device advertises (`xdp_set_features_flag()`, which notifies
    /// netlink listeners); the caller holds RTNL.
    #[cfg(CONFIG_BPF_SYSCALL)]
    pub fn set_xdp_features(&self, _rtnl: &Rtnl, features: super::xdp::Features) {
        // SAFETY: `self.0` is valid and RTNL is held, as the notifier needs.
        unsafe { bindings::xdp_set_features_flag(self.as_raw(), features.bits()) };
    }

    /// Returns the MAC address.
    pub fn mac_addr(&self) -> [u8; ETH_ALEN] {
        let mut addr = [0u8; ETH_ALEN];
        // SAFETY: `dev_addr` of a valid device points to at least `ETH_ALEN` bytes for an
        // Ethernet device, which `Registration` creates.
        unsafe {
            let p = (*self.as_raw()).dev_addr;
            if !p.is_null() {
                core::ptr::copy_nonoverlapping(p, addr.as_mut_ptr(), ETH_ALEN);
            }
        }
        addr
    }

    /// Sets the MAC address (`eth_hw_addr_set()`); the caller holds RTNL.
    pub fn set_mac_addr(&self, _rtnl: &Rtnl, addr: &[u8; ETH_ALEN]) {
        // SAFETY: `self.0` is valid, RTNL is held, `addr` has `ETH_ALEN` bytes.
        unsafe { bindings::eth_hw_addr_set(self.as_raw(), addr.as_ptr()) };
    }

    /// Returns the number of allocated transmit queues (`dev->num_tx_queues`).
    pub fn num_tx_queues(&self) -> u32 {
        // SAFETY: `num_tx_queues` is set at allocation and never changes.
        unsafe { (*self.as_raw()).num_tx_queues }
    }

    /// Returns the number of transmit queues in use (`dev->real_num_tx_queues`).
    pub fn real_num_tx_queues(&self) -> u32 {
        // SAFETY: `real_num_tx_queues` is a field of a valid device.
        unsafe { core::ptr::addr_of!((*self.as_raw()).real_num_tx_queues).read_volatile() }
    }

    /// Returns the number of receive queues in use (`dev->real_num_rx_queues`).
    pub fn real_num_rx_queues(&self) -> u32 {
        // SAFETY: `real_num_rx_queues` is a field of a valid device.
        unsafe { core::ptr::addr_of!((*self.as_raw()).real_num_rx_queues).read_volatile() }
    }

    /// Sets the number of transmit queues in use (`netif_set_real_num_tx_queues()`); at most
    /// [`Device::num_tx_queues`]. The caller holds RTNL.
    pub fn set_real_num_tx_queues(&self, _rtnl: &Rtnl, count: u32) -> Result {
        if count == 0 || count > self.num_tx_queues() {
            return Err(EINVAL);
        }
        // SAFETY: `self.0` is valid and RTNL is held.
        to_result(unsafe { bindings::netif_set_real_num_tx_queues(self.as_raw(), count) })
    }

    /// Sets the number of receive queues in use (`netif_set_real_num_rx_queues()`). The caller
    /// holds RTNL.
    pub fn set_real_num_rx_queues(&self, _rtnl: &Rtnl, count: u32) -> Result {
        if count == 0 {
            return Err(EINVAL);
        }
        // SAFETY: `self.0` is valid and RTNL is held; the C function checks the upper bound.
        to_result(unsafe { bindings::netif_set_real_num_rx_queues(self.as_raw(), count) })
    }

    /// Returns transmit queue `index`, or [`None`] if it is not allocated.
    pub fn tx_queue(&self, index: u32) -> Option<&TxQueue> {
        if index >= self.num_tx_queues() {
            return None;
        }
        // SAFETY: `index < num_tx_queues`, so the queue exists.
        let q = unsafe { bindings::netdev_get_tx_queue(self.as_raw(), index) };
        // SAFETY: The queues live as long as the device.
        Some(unsafe { TxQueue::from_raw(q) })
    }

    /// Stops all transmit queues (`netif_tx_stop_all_queues()`).
    pub fn stop_all_queues(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_tx_stop_all_queues(self.as_raw()) };
    }

    /// Wakes all transmit queues (`netif_tx_wake_all_queues()`).
    pub fn wake_all_queues(&self) {
        for i in 0..self.num_tx_queues() {
            if let Some(q) = self.tx_queue(i) {
                q.wake();
            }
        }
    }

    /// Starts all transmit queues without scheduling them (`netif_tx_start_all_queues()`).
    pub fn start_all_queues(&self) {
        for i in 0..self.num_tx_queues() {
            if let Some(q) = self.tx_queue(i) {
                q.start();
            }
        }
    }

    /// Announces the device to its neighbours, e.g. gratuitous ARP after a migration
    /// (`netdev_notify_peers()`). Takes RTNL: do not call it with RTNL held.
    pub fn notify_peers(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netdev_notify_peers(self.as_raw()) };
    }
}

/// A transmit queue of a network device (`struct netdev_queue`).
///
/// # Invariants
///
/// `self.0` is a valid transmit queue of a valid device.
#[repr(transparent)]
pub struct TxQueue(Opaque<bindings::netdev_queue>);

impl TxQueue {
    /// # Safety
    ///
    /// `ptr` must point to a valid transmit queue for the lifetime `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::netdev_queue) -> &'a Self {
        // CAST: `TxQueue` is a transparent wrapper of `Opaque<netdev_queue>`.
        // SAFETY: By the safety requirements.
        unsafe { &*ptr.cast() }
    }

    /// Stops the queue: the stack stops calling [`Operations::start_xmit`] for it
    /// (`netif_tx_stop_queue()`).
    pub fn stop(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_tx_stop_queue(self.0.get()) };
    }

    /// Allows transmission on the queue without scheduling it (`netif_tx_start_queue()`).
    pub fn start(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_tx_start_queue(self.0.get()) };
    }

    /// Allows transmission on a stopped queue and schedules it (`netif_tx_wake_queue()`).
    pub fn wake(&self) {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_tx_wake_queue(self.0.get()) };
    }

    /// Returns whether the queue is stopped (`netif_tx_queue_stopped()`).
    pub fn is_stopped(&self) -> bool {
        // SAFETY: `self.0` is valid by the type invariant.
        unsafe { bindings::netif_tx_queue_stopped(self.0.get()) }
    }
}

/// Length of the system's RSS key (`NETDEV_RSS_KEY_LEN`).
pub const RSS_KEY_LEN: usize = bindings::NETDEV_RSS_KEY_LEN as usize;

/// Fills `key` with the start of the system's RSS key (`netdev_rss_key_fill()`): random, chosen
/// once per boot and shared by the devices that use it, as drivers do for their default key.
///
/// Fails with [`EINVAL`] if `key` is longer than [`RSS_KEY_LEN`].
///
/// # Examples
///
/// ```
/// # #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
/// # {
/// use kernel::net::dev::{rss_key_fill, RSS_KEY_LEN};
///
/// let (mut a, mut b) = ([0u8; 40], [0u8; 40]);
/// rss_key_fill(&mut a)?;
/// rss_key_fill(&mut b)?;
/// assert_eq!(a, b);
/// assert_ne!(a, [0u8; 40]);
/// assert_eq!(rss_key_fill(&mut [0u8; RSS_KEY_LEN + 1]), Err(EINVAL));
/// # }
/// # Ok::<(), Error>(())
/// ```
pub fn rss_key_fill(key: &mut [u8]) -> Result {
    if key.len() > RSS_KEY_LEN {
        return Err(EINVAL);
    }
    // SAFETY: `key` is valid for writes of `key.len()` bytes, at most the size of the system key
    // (checked above, the function BUG()s beyond).
    unsafe { bindings::netdev_rss_key_fill(key.as_mut_ptr().cast(), key.len()) };
    Ok(())
}

/// The receive filter of a device, as [`Operations::set_rx_mode`] sees it: its flags and its
/// multicast address list, which the stack keeps locked during the call
/// (`netif_addr_lock_bh()`).
///
/// # Invariants
///
/// The address lists of `dev` are locked (`netif_addr_lock_bh()`) for as long as the value
/// exists.
pub struct RxMode<'a> {
    dev: &'a Device,
}

impl RxMode<'_> {
    fn flags(&self) -> u32 {
        // SAFETY: `self.dev` is a valid device (`Device` invariant); `flags` is a plain field the
        // stack changes under RTNL or the address lock, which is held (type invariant).
        unsafe { (*self.dev.as_raw()).flags }
    }

    /// Whether the device receives every packet (`IFF_PROMISC`).
    pub fn promisc(&self) -> bool {
        self.flags() & bindings::net_device_flags_IFF_PROMISC != 0
    }

    /// Whether the device receives every multicast packet (`IFF_ALLMULTI`).
    pub fn allmulti(&self) -> bool {
        self.flags() & bindings::net_device_flags_IFF_ALLMULTI != 0
    }

    /// Returns the number of multicast addresses of the device (`netdev_mc_count()`).
    pub fn mc_count(&self) -> usize {
        // SAFETY: `self.dev` is valid and its address lists are locked (type invariant).
        let count = unsafe { (*self.dev.as_raw()).mc.count };
        usize::try_from(count).unwrap_or(0)
    }

    /// Calls `f` with each multicast address of the device, in list order
    /// (`netdev_for_each_mc_addr()`).
    pub fn for_each_mc(&self, mut f: impl FnMut(&[u8; ETH_ALEN])) {
        // SAFETY: `self.dev` is a valid device; only the address of a field is taken.
        let head = unsafe { &raw mut (*self.dev.as_raw()).mc.list };
        // SAFETY: The multicast list is locked (type invariant); `head` is its head.
        let mut pos = unsafe { (*head).next };
        while !pos.is_null() && pos != head {
            let mut addr = [0u8; ETH_ALEN];
            // SAFETY: `pos` is an entry of the locked list other than its head: the `list` field
            // of a live `netdev_hw_addr`, whose address has room for `MAX_ADDR_LEN` bytes.
            let next = unsafe {
                let ha = crate::container_of!(pos, bindings::netdev_hw_addr, list);
                let bytes: &[u8; 32] = &(*ha).addr;
                addr.copy_from_slice(&bytes[..ETH_ALEN]);
                (*pos).next
            };
            f(&addr);
            pos = next;
        }
    }
}

/// Result of [`Operations::start_xmit`] (`netdev_tx_t`).
pub enum NetdevTx {
    /// The driver took the packet: it queued it to the device, or freed it (`NETDEV_TX_OK`).
    Ok,
    /// The driver cannot take the packet now and gives it back to the stack, which requeues it
    /// (`NETDEV_TX_BUSY`). The queue should be stopped before returning this.
    Busy(SkBuff),
}

/// Operations of a network device (`struct net_device_ops`), implemented by the driver's private
/// data type.
///
/// Every callback receives the device and the pinned private data. [`Operations::start_xmit`]
/// is mandatory; the others are optional.
#[vtable]
pub trait Operations: Sized + Send + Sync {
    /// Brings the device up (`ndo_open`); called with RTNL held.
    fn open(_dev: &Device, _this: Pin<&Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Brings the device down (`ndo_stop`); called with RTNL held.
    fn stop(_dev: &Device, _this: Pin<&Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Transmits `skb` on queue [`SkBuffRef::queue_mapping`] (`ndo_start_xmit`); called in
    /// softirq context with the queue's transmit lock held.
    fn start_xmit(dev: &Device, this: Pin<&Self>, skb: SkBuff) -> NetdevTx;

    /// Validates a new MTU and prepares for it (`ndo_change_mtu`); the new MTU is within the
    /// device limits and becomes active when this returns `Ok`. Called with RTNL held.
    fn change_mtu(_dev: &Device, _this: Pin<&Self>, _new_mtu: u32) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Adjusts requested features to what the device can do now (`ndo_fix_features`); called
    /// with RTNL held.
    fn fix_features(_dev: &Device, _this: Pin<&Self>, _features: Features) -> Features {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Applies a change of features (`ndo_set_features`); called with RTNL held before
    /// `dev->features` is updated.
    fn set_features(_dev: &Device, _this: Pin<&Self>, _features: Features) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Fills in the device statistics (`ndo_get_stats64`); may be called in any context.
    fn get_stats64(_dev: &Device, _this: Pin<&Self>, _stats: &mut Stats64) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Picks the transmit queue for `skb` (`ndo_select_queue`); out-of-range values are
    /// capped by the stack.
    fn select_queue(_dev: &Device, _this: Pin<&Self>, _skb: &SkBuffRef) -> u16 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Checks a new MAC address before it is set (`ndo_set_mac_address`); called with RTNL
    /// held. Without this callback the address is set with `eth_mac_addr()`.
    fn set_mac_address(_dev: &Device, _this: Pin<&Self>, _addr: &[u8; ETH_ALEN]) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Updates the receive filter from `mode` (`ndo_set_rx_mode`): called in atomic context,
    /// with the address lists locked; must not sleep.
    fn set_rx_mode(_dev: &Device, _this: Pin<&Self>, _mode: &RxMode<'_>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles a transmit timeout on queue `txqueue` (`ndo_tx_timeout`).
    fn tx_timeout(_dev: &Device, _this: Pin<&Self>, _txqueue: u32) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles a BPF request (`ndo_bpf`), for native XDP: [`xdp::BpfCommand::SetupProg`]
    /// attaches, replaces or (without a program) detaches the program; refuse what the device
    /// cannot do with [`EINVAL`] or [`EOPNOTSUPP`] and a message
    /// ([`xdp::Bpf::set_error`]). Called with RTNL held.
    #[cfg(CONFIG_BPF_SYSCALL)]
    fn bpf(_dev: &Device, _this: Pin<&Self>, _bpf: &mut xdp::Bpf<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Transmits XDP frames of other devices, or redirected to this one (`ndo_xdp_xmit`);
    /// called in softirq context. The driver takes the frames it sends (or drops) in order
    /// from `frames`; the caller returns the rest. An error with no frame taken is returned to
    /// the caller as is.
    #[cfg(CONFIG_BPF_SYSCALL)]
    fn xdp_xmit(_dev: &Device, _this: Pin<&Self>, _frames: &mut xdp::XmitFrames<'_>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports the statistics of receive queue `index`, below `real_num_rx_queues`
    /// (`get_queue_stats_rx` of `struct netdev_stat_ops`, netdev netlink `qstats`); called with
    /// RTNL or the device instance lock held.
    ///
    /// A device reports per-queue statistics when it implements [`Operations::get_base_stats`]
    /// and this or [`Operations::get_queue_stats_tx`]. The sum over the queues in use plus the
    /// base statistics must equal what [`Operations::get_stats64`] reports, and must never
    /// decrease, also when queues are removed or the device goes down.
    fn get_queue_stats_rx(
        _dev: &Device,
        _this: Pin<&Self>,
        _index: u32,
        _stats: &mut QueueStatsRx,
    ) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports the statistics of transmit queue `index`, below `real_num_tx_queues`
    /// (`get_queue_stats_tx`); as [`Operations::get_queue_stats_rx`].
    fn get_queue_stats_tx(
        _dev: &Device,
        _this: Pin<&Self>,
        _index: u32,
        _stats: &mut QueueStatsTx,
    ) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports what the queues in use do not count: the counters of queues that no longer
    /// exist, and events of no queue (`get_base_stats`). Every field the queues report must be
    /// reported here too, at 0 if nothing is left over.
    fn get_base_stats(
        _dev: &Device,
        _this: Pin<&Self>,
        _rx: &mut QueueStatsRx,
        _tx: &mut QueueStatsTx,
    ) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// A numeric sysfs attribute of a network device kept for old tools: it always reads as the same
/// value, and a write of a number is accepted (from a caller with `CAP_NET_ADMIN`) and ignored.
///
/// Such attributes are grouped with [`fixed_attributes!`](crate::fixed_attributes).
///
/// # Invariants
///
/// `attr` has `show_fixed` and `store_fixed` as callbacks, and a `'static` name.
#[repr(C)]
pub struct FixedAttribute {
    attr: bindings::device_attribute,
    value: u64,
}

// SAFETY: A `FixedAttribute` is never changed after its creation; sysfs only reads it.
unsafe impl Sync for FixedAttribute {}

impl FixedAttribute {
    /// Creates an attribute `name` (mode 0644) that reads as `value`.
    // `struct attribute` has more members with `CONFIG_DEBUG_LOCK_ALLOC`, not otherwise.
    #[allow(clippy::needless_update)]
    pub const fn new(name: &'static CStr, value: u64) -> Self {
        // INVARIANT: The callbacks are ours and the name is `'static`.
        Self {
            attr: bindings::device_attribute {
                attr: bindings::attribute {
                    name: crate::str::as_char_ptr_in_const_context(name),
                    mode: 0o644,
                    // SAFETY: The other members (lockdep keys) are plain data, zero when unused.
                    ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
                },
                __bindgen_anon_1: bindings::device_attribute__bindgen_ty_1 {
                    show: Some(Self::show_fixed),
                },
                __bindgen_anon_2: bindings::device_attribute__bindgen_ty_2 {
                    store: Some(Self::store_fixed),
                },
            },
            value,
        }
    }

    /// Returns the value the attribute reads as.
    pub const fn value(&self) -> u64 {
        self.value
    }

    /// # Safety
    ///
    /// Only called by sysfs, with the `device_attribute` of a [`FixedAttribute`] and a buffer of
    /// `PAGE_SIZE` bytes.
    unsafe extern "C" fn show_fixed(
        _dev: *mut bindings::device,
        attr: *mut bindings::device_attribute,
        buf: *mut c_char,
    ) -> isize {
        // SAFETY: By the type invariant, only the `attr` of a `FixedAttribute` has this callback.
        let this = unsafe { &*crate::container_of!(attr, Self, attr) };
        // SAFETY: `buf` is a sysfs buffer of `PAGE_SIZE` bytes; the format takes one `u64`.
        unsafe { bindings::sysfs_emit(buf, c"%llu\n".as_char_ptr(), this.value) as isize }
    }

    /// # Safety
    ///
    /// Only called by sysfs, with a buffer of `count` bytes.
    unsafe extern "C" fn store_fixed(
        _dev: *mut bindings::device,
        _attr: *mut bindings::device_attribute,
        buf: *const c_char,
        count: usize,
    ) -> isize {
        // SAFETY: `capable()` only looks at the current task.
        if !unsafe { bindings::capable(bindings::CAP_NET_ADMIN as c_int) } {
            return EPERM.to_errno() as isize;
        }
        // SAFETY: sysfs passes `count` readable bytes.
        let input = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) };
        match parse_number_prefix(input) {
            true => count as isize,
            false => EBADMSG.to_errno() as isize,
        }
    }
}

/// Whether `simple_strtoul(buf, &end, 0)` reads a number at the start of `input` (`end != buf`),
/// which is what the C drivers' legacy attributes accept: it skips no blanks and takes no sign,
/// and any leading digit is a number (`0x` with no hexadecimal digit reads as the `0`).
fn parse_number_prefix(input: &[u8]) -> bool {
    input.first().is_some_and(u8::is_ascii_digit)
}

/// A null-terminated list of [`FixedAttribute`]s (`struct attribute **`); the last entry must
/// be [`None`].
#[repr(transparent)]
pub struct AttributeList<const N: usize>([Option<&'static FixedAttribute>; N]);

impl<const N: usize> AttributeList<N> {
    /// Creates the list; fails to build if the last entry is not [`None`].
    pub const fn new(attrs: [Option<&'static FixedAttribute>; N]) -> Self {
        assert!(
            N > 0 && attrs[N - 1].is_none(),
            "the list must end with None"
        );
        Self(attrs)
    }
}

/// A group of device-specific sysfs attributes (`struct attribute_group`), for
/// [`Options::attributes`].
///
/// # Invariants
///
/// The group's `attrs` is a null-terminated `'static` [`AttributeList`].
#[repr(transparent)]
pub struct AttributeGroup(bindings::attribute_group);

// SAFETY: The group and what it points to are `'static` and never changed.
unsafe impl Sync for AttributeGroup {}

impl AttributeGroup {
    /// Creates an unnamed group (the attributes appear in the device's directory).
    pub const fn new<const N: usize>(list: &'static AttributeList<N>) -> Self {
        // CAST: `Option<&FixedAttribute>` is a nullable pointer to a `#[repr(C)]` structure whose
        // first member is a `device_attribute`, whose first member is the `attribute`.
        let attrs = core::ptr::from_ref(&list.0)
            .cast::<*mut bindings::attribute>()
            .cast_mut();
        // INVARIANT: `attrs` is a null-terminated `'static` list (`AttributeList::new`).
        Self(bindings::attribute_group {
            __bindgen_anon_2: bindings::attribute_group__bindgen_ty_2 { attrs },
            // SAFETY: The other members are pointers and callbacks, absent when zero.
            ..unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
        })
    }
}

/// Declares a `static` [`AttributeGroup`] of [`FixedAttribute`]s, named as the identifiers.
///
/// # Examples
///
/// ```
/// // The legacy receive-buffer attributes of xen-netfront, fixed at the ring size.
/// kernel::fixed_attributes!(RXBUF, [(rxbuf_min, 256), (rxbuf_max, 256), (rxbuf_cur, 256)]);
/// let mut opts = kernel::net::dev::Options::new();
/// opts.attributes = Some(&RXBUF);
/// ```
#[macro_export]
macro_rules! fixed_attributes {
    ($group:ident, [$(($name:ident, $value:expr)),+ $(,)?]) => {
        static $group: $crate::net::dev::AttributeGroup = {
            $(
                #[allow(non_upper_case_globals)]
                static $name: $crate::net::dev::FixedAttribute =
                    $crate::net::dev::FixedAttribute::new(
                        $crate::c_str!(::core::stringify!($name)),
                        $value,
                    );
            )+
            static LIST: $crate::net::dev::AttributeList<
                { [$(::core::stringify!($name)),+].len() + 1 },
            > = $crate::net::dev::AttributeList::new([$(Some(&$name),)+ None]);
            $crate::net::dev::AttributeGroup::new(&LIST)
        };
    };
}

/// Parameters of a new network device, for [`Registration::new`].
pub struct Options<'a> {
    /// Name or name pattern, e.g. `c"eth%d"`.
    pub name: &'a CStr,
    /// Number of transmit queues to allocate (at least 1).
    pub tx_queues: u32,
    /// Number of receive queues to allocate (at least 1).
    pub rx_queues: u32,
    /// Active features at registration.
    pub features: Features,
    /// Features the user may toggle.
    pub hw_features: Features,
    /// Initial MTU.
    pub mtu: u32,
    /// Minimum MTU.
    pub min_mtu: u32,
    /// Maximum MTU.
    pub max_mtu: u32,
    /// MAC address; a random one if [`None`].
    pub mac: Option<[u8; ETH_ALEN]>,
    /// Largest segmentation offload packet the device accepts (`netif_set_tso_max_size()`);
    /// `0` keeps the stack's default.
    pub tso_max_size: u32,
    /// Device-specific sysfs attributes (`sysfs_groups[0]`), e.g. made with
    /// [`fixed_attributes!`](crate::fixed_attributes).
    pub attributes: Option<&'static AttributeGroup>,
}

impl Options<'_> {
    /// Default options for an Ethernet device: name `eth%d`, one queue each way, no features,
    /// MTU 1500 (68..=1500), random MAC address.
    pub const fn new() -> Self {
        Self {
            name: c"eth%d",
            tx_queues: 1,
            rx_queues: 1,
            features: Features::NONE,
            hw_features: Features::NONE,
            mtu: ETH_DATA_LEN,
            min_mtu: ETH_MIN_MTU,
            max_mtu: ETH_DATA_LEN,
            mac: None,
            tso_max_size: 0,
            attributes: None,
        }
    }
}

impl Default for Options<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// A registered Ethernet network device with private data `T`.
///
/// Dropping the registration unregisters the device (`unregister_netdev()`, which waits until
/// nothing uses it any more: drop every
/// [`ARef<Device>`](crate::sync::aref::ARef) and [`Napi`](super::napi::Napi) of the
/// device first), drops the private data and frees the device.
///
/// # Invariants
///
/// `dev` is a registered Ethernet device allocated by [`Registration::new`], with
/// the operations of `Adapter<T>`, whose private area holds an initialised, pinned `T`.
pub struct Registration<T: Operations + ethtool::Operations> {
    dev: NonNull<bindings::net_device>,
    _p: PhantomData<T>,
}

// SAFETY: The registration can be dropped on any thread (in process context); `T` is `Send`.
unsafe impl<T: Operations + ethtool::Operations> Send for Registration<T> {}
// SAFETY: `&Registration` only gives access to `&Device`, which is `Sync`, and `Pin<&T>`, with
// `T: Sync`.
unsafe impl<T: Operations + ethtool::Operations> Sync for Registration<T> {}

impl<T: Operations + ethtool::Operations> Registration<T> {
    /// Allocates an Ethernet device (`alloc_etherdev_mqs()`), initialises the private data in
    /// it with `init`, and registers it (`register_netdev()`).
    ///
    /// Takes RTNL: do not call it with RTNL held.
    pub fn new<E>(opts: &Options<'_>, init: impl PinInit<T, E>) -> Result<Self>
    where
        Error: From<E>,
    {
        const {
            assert!(core::mem::align_of::<T>() <= bindings::NETDEV_ALIGN as usize);
        }
        let name = opts.name.to_bytes_with_nul();
        if name.len() > IFNAMSIZ || opts.tx_queues == 0 || opts.rx_queues == 0 {
            return Err(EINVAL);
        }
        if opts.min_mtu > opts.mtu || opts.mtu > opts.max_mtu {
            return Err(EINVAL);
        }
        let priv_size = c_int::try_from(core::mem::size_of::<T>())?;

        // SAFETY: `alloc_etherdev_mqs` has no preconditions.
        let dev =
            unsafe { bindings::alloc_etherdev_mqs(priv_size, opts.tx_queues, opts.rx_queues) };
        let dev = NonNull::new(dev).ok_or(ENOMEM)?;
        let raw = dev.as_ptr();

        // SAFETY: `raw` is a valid, unregistered device that we own; nothing else accesses it.
        unsafe {
            let dst = core::ptr::addr_of_mut!((*raw).name).cast::<u8>();
            core::ptr::copy_nonoverlapping(name.as_ptr(), dst, name.len());
            (*raw).features = opts.features.0;
            (*raw).hw_features = opts.hw_features.0;
            (*raw).mtu = opts.mtu;
            (*raw).min_mtu = opts.min_mtu;
            (*raw).max_mtu = opts.max_mtu;
            match &opts.mac {
                Some(mac) => bindings::eth_hw_addr_set(raw, mac.as_ptr()),
                None => bindings::eth_hw_addr_random(raw),
            }
            if opts.tso_max_size != 0 {
                bindings::netif_set_tso_max_size(raw, opts.tso_max_size);
            }
        }

        // SAFETY: `raw` is valid; its private area is `size_of::<T>()` bytes, aligned to
        // `NETDEV_ALIGN` (checked above to be enough for `T`).
        let priv_ptr = unsafe { bindings::netdev_priv(raw) }.cast::<T>();
        // SAFETY: `priv_ptr` is valid for writes of a `T` and stays pinned in the device
        // allocation until the device is freed.
        if let Err(e) = unsafe { init.__init(priv_ptr) } {
            // SAFETY: The device is not registered; we own it.
            unsafe { bindings::free_netdev(raw) };
            return Err(e.into());
        }

        // SAFETY: The device is not registered yet, so nothing reads the operation pointers.
        // The tables are `'static`.
        unsafe {
            (*raw).netdev_ops = &Adapter::<T>::NETDEV_OPS;
            (*raw).ethtool_ops = ethtool::ops_table::<T>();
            if Adapter::<T>::HAS_STAT_OPS {
                (*raw).stat_ops = &Adapter::<T>::STAT_OPS;
            }
            // The first slot is the device-specific one (`netdev_register_kobject()`).
            if let Some(group) = opts.attributes {
                (*raw).sysfs_groups[0] = &group.0;
            }
        }

        // SAFETY: `raw` is a valid, fully set-up device.
        if let Err(e) = to_result(unsafe { bindings::register_netdev(raw) }) {
            // SAFETY: Registration failed, so no callback can run any more; `priv_ptr` holds an
            // initialised `T`, and we own the unregistered device.
            unsafe {
                core::ptr::drop_in_place(priv_ptr);
                bindings::free_netdev(raw);
            }
            return Err(e);
        }
        // INVARIANT: The device is registered with `Adapter<T>`'s operations and the private
        // data is initialised.
        Ok(Self {
            dev,
            _p: PhantomData,
        })
    }

    /// Returns the device.
    pub fn device(&self) -> &Device {
        // SAFETY: `dev` is valid while `self` lives.
        unsafe { Device::from_raw(self.dev.as_ptr()) }
    }

    /// Returns the private data.
    pub fn data(&self) -> Pin<&T> {
        // SAFETY: The private data is an initialised `T` by the type invariant.
        unsafe { Adapter::<T>::data(self.dev.as_ptr()) }
    }
}

impl<T: Operations + ethtool::Operations> Drop for Registration<T> {
    fn drop(&mut self) {
        let raw = self.dev.as_ptr();
        // SAFETY: The device is registered by the type invariant. `unregister_netdev` returns
        // once no callback runs and no reference is left, so the private data can be dropped
        // and the device freed afterwards.
        unsafe {
            bindings::unregister_netdev(raw);
            core::ptr::drop_in_place(bindings::netdev_priv(raw).cast::<T>());
            bindings::free_netdev(raw);
        }
    }
}

/// Glue between [`Operations`] and `struct net_device_ops`.
pub(crate) struct Adapter<T>(PhantomData<T>);

impl<T: Operations> Adapter<T> {
    /// # Safety
    ///
    /// `dev` must be a device created by [`Registration<T>`] that is not yet freed.
    pub(crate) unsafe fn data<'a>(dev: *mut bindings::net_device) -> Pin<&'a T> {
        // SAFETY: By the safety requirements, the private area holds an initialised, pinned `T`.
        unsafe { Pin::new_unchecked(&*bindings::netdev_priv(dev).cast::<T>()) }
    }

    /// # Safety
    ///
    /// `dev` must be a device created by [`Registration<T>`] that is not yet freed.
    pub(crate) unsafe fn args<'a>(dev: *mut bindings::net_device) -> (&'a Device, Pin<&'a T>) {
        // SAFETY: By the safety requirements.
        unsafe { (Device::from_raw(dev), Self::data(dev)) }
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn open_callback(dev: *mut bindings::net_device) -> c_int {
        from_result(|| {
            // SAFETY: The stack calls `ndo_open` with a device whose operations we installed.
            let (d, this) = unsafe { Self::args(dev) };
            T::open(d, this)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn stop_callback(dev: *mut bindings::net_device) -> c_int {
        from_result(|| {
            // SAFETY: The stack calls `ndo_stop` with a device whose operations we installed.
            let (d, this) = unsafe { Self::args(dev) };
            T::stop(d, this)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn start_xmit_callback(
        skb: *mut bindings::sk_buff,
        dev: *mut bindings::net_device,
    ) -> bindings::netdev_tx_t {
        // SAFETY: The stack calls `ndo_start_xmit` with a device whose operations we installed.
        let (d, this) = unsafe { Self::args(dev) };
        // SAFETY: The stack passes a valid socket buffer and its ownership to `ndo_start_xmit`
        // (unless `NETDEV_TX_BUSY` is returned, see below).
        let skb = unsafe { SkBuff::from_raw(NonNull::new_unchecked(skb)) };
        match T::start_xmit(d, this, skb) {
            NetdevTx::Ok => bindings::netdev_tx_NETDEV_TX_OK,
            NetdevTx::Busy(skb) => {
                // The stack keeps ownership of a buffer for which `NETDEV_TX_BUSY` is returned.
                let _ = skb.into_raw();
                bindings::netdev_tx_NETDEV_TX_BUSY
            }
        }
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn change_mtu_callback(
        dev: *mut bindings::net_device,
        new_mtu: c_int,
    ) -> c_int {
        from_result(|| {
            // SAFETY: The stack calls `ndo_change_mtu` with a device whose operations we
            // installed.
            let (d, this) = unsafe { Self::args(dev) };
            let new_mtu = u32::try_from(new_mtu)?;
            T::change_mtu(d, this, new_mtu)?;
            // SAFETY: `ndo_change_mtu` sets the new MTU itself (`WRITE_ONCE(dev->mtu, ..)`);
            // RTNL is held.
            unsafe { core::ptr::addr_of_mut!((*dev).mtu).write_volatile(new_mtu) };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn fix_features_callback(
        dev: *mut bindings::net_device,
        features: bindings::netdev_features_t,
    ) -> bindings::netdev_features_t {
        // SAFETY: The stack calls `ndo_fix_features` with a device whose operations we
        // installed.
        let (d, this) = unsafe { Self::args(dev) };
        T::fix_features(d, this, Features(features)).0
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn set_features_callback(
        dev: *mut bindings::net_device,
        features: bindings::netdev_features_t,
    ) -> c_int {
        from_result(|| {
            // SAFETY: The stack calls `ndo_set_features` with a device whose operations we
            // installed.
            let (d, this) = unsafe { Self::args(dev) };
            T::set_features(d, this, Features(features))?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn get_stats64_callback(
        dev: *mut bindings::net_device,
        storage: *mut bindings::rtnl_link_stats64,
    ) {
        // SAFETY: The stack calls `ndo_get_stats64` with a device whose operations we installed.
        let (d, this) = unsafe { Self::args(dev) };
        // SAFETY: `storage` is valid and exclusively ours for the duration of the call.
        let stats = unsafe { Stats64::from_raw(storage) };
        T::get_stats64(d, this, stats);
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn select_queue_callback(
        dev: *mut bindings::net_device,
        skb: *mut bindings::sk_buff,
        _sb_dev: *mut bindings::net_device,
    ) -> u16 {
        // SAFETY: The stack calls `ndo_select_queue` with a device whose operations we
        // installed.
        let (d, this) = unsafe { Self::args(dev) };
        // SAFETY: The stack owns `skb` and does not modify it during the call.
        let skb = unsafe { SkBuffRef::from_raw(skb) };
        T::select_queue(d, this, skb)
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn set_mac_address_callback(
        dev: *mut bindings::net_device,
        addr: *mut c_void,
    ) -> c_int {
        from_result(|| {
            // SAFETY: `eth_prepare_mac_addr_change` checks that `addr` (a `struct sockaddr`)
            // holds a valid Ethernet address and that the device allows the change.
            to_result(unsafe { bindings::eth_prepare_mac_addr_change(dev, addr) })?;
            // SAFETY: The stack calls `ndo_set_mac_address` with a device whose operations we
            // installed.
            let (d, this) = unsafe { Self::args(dev) };
            // SAFETY: `addr` points to a `struct sockaddr`, whose `sa_data` holds the address.
            let mac = unsafe {
                &*core::ptr::addr_of!((*addr.cast::<bindings::sockaddr>()).sa_data)
                    .cast::<[u8; ETH_ALEN]>()
            };
            T::set_mac_address(d, this, mac)?;
            // SAFETY: As above; RTNL is held.
            unsafe { bindings::eth_commit_mac_addr_change(dev, addr) };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    #[cfg(CONFIG_BPF_SYSCALL)]
    unsafe extern "C" fn bpf_callback(
        dev: *mut bindings::net_device,
        bpf: *mut bindings::netdev_bpf,
    ) -> c_int {
        from_result(|| {
            // SAFETY: The stack calls `ndo_bpf` with a device whose operations we installed and
            // a valid request, under RTNL.
            let ((d, this), mut bpf) = unsafe { (Self::args(dev), xdp::Bpf::from_raw(bpf)) };
            T::bpf(d, this, &mut bpf)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    #[cfg(CONFIG_BPF_SYSCALL)]
    unsafe extern "C" fn xdp_xmit_callback(
        dev: *mut bindings::net_device,
        n: c_int,
        frames: *mut *mut bindings::xdp_frame,
        flags: u32,
    ) -> c_int {
        if flags & !bindings::XDP_XMIT_FLAGS_MASK != 0 {
            return EINVAL.to_errno();
        }
        let n = usize::try_from(n).unwrap_or(0);
        if n == 0 || frames.is_null() {
            return 0;
        }
        // SAFETY: The stack calls `ndo_xdp_xmit` with a device whose operations we installed,
        // and `n` frames it hands over; the ones we do not take (counted in the return value)
        // it frees itself.
        let ((d, this), raw) = unsafe { (Self::args(dev), core::slice::from_raw_parts(frames, n)) };
        // SAFETY: As above: the frames pass to whoever takes them.
        let mut xf =
            unsafe { xdp::XmitFrames::from_raw(raw, flags & bindings::XDP_XMIT_FLUSH != 0) };
        match T::xdp_xmit(d, this, &mut xf) {
            Err(e) if xf.taken() == 0 => e.to_errno(),
            _ => xf.taken() as c_int,
        }
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn tx_timeout_callback(dev: *mut bindings::net_device, txqueue: c_uint) {
        // SAFETY: The stack calls `ndo_tx_timeout` with a device whose operations we installed.
        let (d, this) = unsafe { Self::args(dev) };
        T::tx_timeout(d, this, txqueue);
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `net_device_ops` callback of a device created by
    /// [`Registration<T>`].
    unsafe extern "C" fn set_rx_mode_callback(dev: *mut bindings::net_device) {
        // SAFETY: The stack calls `ndo_set_rx_mode` with a device whose operations we installed.
        let (d, this) = unsafe { Self::args(dev) };
        // INVARIANT: the stack calls `ndo_set_rx_mode` with the address lists locked
        // (`__dev_set_rx_mode()` under `netif_addr_lock_bh()`).
        let mode = RxMode { dev: d };
        T::set_rx_mode(d, this, &mode);
    }

    /// # Safety
    ///
    /// Only called by the stack, as the `netdev_stat_ops` callback of a device created by
    /// [`Registration<T>`], with valid statistics to fill in.
    unsafe extern "C" fn get_queue_stats_rx_callback(
        dev: *mut bindings::net_device,
        index: c_int,
        stats: *mut bindings::netdev_queue_stats_rx,
    ) {
        // SAFETY: The stack calls `get_queue_stats_rx` with a device whose operations we
        // installed and statistics that nothing else accesses during the call.
        let ((d, this), stats) = unsafe { (Self::args(dev), QueueStatsRx::from_raw(stats)) };
        if let Ok(index) = u32::try_from(index) {
            T::get_queue_stats_rx(d, this, index, stats);
        }
    }

    /// # Safety
    ///
    /// As [`Self::get_queue_stats_rx_callback`].
    unsafe extern "C" fn get_queue_stats_tx_callback(
        dev: *mut bindings::net_device,
        index: c_int,
        stats: *mut bindings::netdev_queue_stats_tx,
    ) {
        // SAFETY: As in `get_queue_stats_rx_callback`.
        let ((d, this), stats) = unsafe { (Self::args(dev), QueueStatsTx::from_raw(stats)) };
        if let Ok(index) = u32::try_from(index) {
            T::get_queue_stats_tx(d, this, index, stats);
        }
    }

    /// # Safety
    ///
    /// As [`Self::get_queue_stats_rx_callback`].
    unsafe extern "C" fn get_base_stats_callback(
        dev: *mut bindings::net_device,
        rx: *mut bindings::netdev_queue_stats_rx,
        tx: *mut bindings::netdev_queue_stats_tx,
    ) {
        // SAFETY: As in `get_queue_stats_rx_callback`; `rx` and `tx` are distinct structures.
        let ((d, this), rx, tx) = unsafe {
            (
                Self::args(dev),
                QueueStatsRx::from_raw(rx),
                QueueStatsTx::from_raw(tx),
            )
        };
        T::get_base_stats(d, this, rx, tx);
    }

    /// Whether the device reports per-queue statistics (see [`Operations::get_base_stats`]).
    const HAS_STAT_OPS: bool =
        T::HAS_GET_BASE_STATS && (T::HAS_GET_QUEUE_STATS_RX || T::HAS_GET_QUEUE_STATS_TX);

    const STAT_OPS: bindings::netdev_stat_ops = bindings::netdev_stat_ops {
        get_queue_stats_rx: if T::HAS_GET_QUEUE_STATS_RX {
            Some(Self::get_queue_stats_rx_callback)
        } else {
            None
        },
        get_queue_stats_tx: if T::HAS_GET_QUEUE_STATS_TX {
            Some(Self::get_queue_stats_tx_callback)
        } else {
            None
        },
        get_base_stats: Some(Self::get_base_stats_callback),
    };

    const NETDEV_OPS: bindings::net_device_ops = bindings::net_device_ops {
        ndo_open: if T::HAS_OPEN {
            Some(Self::open_callback)
        } else {
            None
        },
        ndo_stop: if T::HAS_STOP {
            Some(Self::stop_callback)
        } else {
            None
        },
        ndo_start_xmit: Some(Self::start_xmit_callback),
        ndo_change_mtu: if T::HAS_CHANGE_MTU {
            Some(Self::change_mtu_callback)
        } else {
            None
        },
        ndo_fix_features: if T::HAS_FIX_FEATURES {
            Some(Self::fix_features_callback)
        } else {
            None
        },
        ndo_set_features: if T::HAS_SET_FEATURES {
            Some(Self::set_features_callback)
        } else {
            None
        },
        ndo_get_stats64: if T::HAS_GET_STATS64 {
            Some(Self::get_stats64_callback)
        } else {
            None
        },
        ndo_select_queue: if T::HAS_SELECT_QUEUE {
            Some(Self::select_queue_callback)
        } else {
            None
        },
        ndo_set_mac_address: if T::HAS_SET_MAC_ADDRESS {
            Some(Self::set_mac_address_callback)
        } else {
            Some(bindings::eth_mac_addr)
        },
        ndo_validate_addr: Some(bindings::eth_validate_addr),
        ndo_tx_timeout: if T::HAS_TX_TIMEOUT {
            Some(Self::tx_timeout_callback)
        } else {
            None
        },
        ndo_set_rx_mode: if T::HAS_SET_RX_MODE {
            Some(Self::set_rx_mode_callback)
        } else {
            None
        },
        #[cfg(CONFIG_BPF_SYSCALL)]
        ndo_bpf: if T::HAS_BPF {
            Some(Self::bpf_callback)
        } else {
            None
        },
        #[cfg(CONFIG_BPF_SYSCALL)]
        ndo_xdp_xmit: if T::HAS_XDP_XMIT {
            Some(Self::xdp_xmit_callback)
        } else {
            None
        },
        // SAFETY: All other members are function pointers or plain data, for which zero is
        // "absent".
        ..unsafe { core::mem::MaybeUninit::<bindings::net_device_ops>::zeroed().assume_init() }
    };
}

#[kunit_tests(rust_netdev)]
mod tests {
    use super::*;
    use crate::{
        net::{
            napi::{
                Napi,
                PollContext,
                Poller,
                QueueLink,
                QueueType, //
            },
            stats::{
                Counter,
                QueueStats, //
            },
        },
        sync::{
            new_spinlock_bh,
            SpinLockBh, //
        },
        time::{
            delay::fsleep,
            Delta, //
        },
    };
    use core::ptr::null_mut;

    #[pin_data]
    struct TestNet {
        opens: Counter,
        stops: Counter,
        mtu_changes: Counter,
        fixes: Counter,
        tx: QueueStats,
        ours: Counter,
        channel_sets: Counter,
        #[pin]
        last_queue: SpinLockBh<u16>,
        /// What `set_rx_mode` saw last: the number of multicast addresses, the last one,
        /// whether all multicast is on.
        #[pin]
        rx_mode: SpinLockBh<(usize, [u8; ETH_ALEN], bool)>,
    }

    fn test_net() -> impl PinInit<TestNet> {
        pin_init!(TestNet {
            opens: Counter::new(),
            stops: Counter::new(),
            mtu_changes: Counter::new(),
            fixes: Counter::new(),
            tx: QueueStats::new(),
            ours: Counter::new(),
            channel_sets: Counter::new(),
            last_queue <- new_spinlock_bh!(u16::MAX),
            rx_mode <- new_spinlock_bh!((0, [0; ETH_ALEN], false)),
        })
    }

    #[vtable]
    impl Operations for TestNet {
        fn open(dev: &Device, this: Pin<&Self>) -> Result {
            this.opens.inc();
            dev.start_all_queues();
            Ok(())
        }

        fn stop(dev: &Device, this: Pin<&Self>) -> Result {
            this.stops.inc();
            dev.stop_all_queues();
            Ok(())
        }

        fn start_xmit(_dev: &Device, this: Pin<&Self>, skb: SkBuff) -> NetdevTx {
            this.tx.packet(skb.len());
            // Count the test's own frames (ethertype 0x88b5) apart from what the stack sends
            // by itself (e.g. IPv6 neighbour discovery).
            if skb.data().get(12..14) == Some(&[0x88, 0xb5]) {
                this.ours.inc();
                *this.last_queue.lock() = skb.queue_mapping();
            }
            skb.consume();
            NetdevTx::Ok
        }

        fn change_mtu(_dev: &Device, this: Pin<&Self>, new_mtu: u32) -> Result {
            if new_mtu == 1234 {
                return Err(EINVAL);
            }
            this.mtu_changes.inc();
            Ok(())
        }

        fn fix_features(_dev: &Device, this: Pin<&Self>, features: Features) -> Features {
            this.fixes.inc();
            features & !Features::TSO
        }

        fn get_stats64(_dev: &Device, this: Pin<&Self>, stats: &mut Stats64) {
            stats.add_tx(&this.tx);
        }

        fn select_queue(_dev: &Device, _this: Pin<&Self>, _skb: &SkBuffRef) -> u16 {
            1
        }

        fn set_rx_mode(_dev: &Device, this: Pin<&Self>, mode: &RxMode<'_>) {
            let mut n = 0;
            let mut last = [0; ETH_ALEN];
            mode.for_each_mc(|a| {
                n += 1;
                last = *a;
            });
            assert_eq!(n, mode.mc_count());
            *this.rx_mode.lock() = (n, last, mode.allmulti());
        }

        // Everything is sent on queue 1 (`select_queue`), nothing is received.
        fn get_queue_stats_rx(_: &Device, _: Pin<&Self>, _: u32, rx: &mut QueueStatsRx) {
            rx.add_counts(0, 0);
        }

        fn get_queue_stats_tx(_: &Device, this: Pin<&Self>, index: u32, tx: &mut QueueStatsTx) {
            match index {
                1 => tx.add(&this.tx),
                _ => tx.add_counts(0, 0),
            }
        }

        fn get_base_stats(_: &Device, _: Pin<&Self>, rx: &mut QueueStatsRx, tx: &mut QueueStatsTx) {
            rx.add_counts(0, 0);
            tx.add_counts(0, 0);
        }
    }

    #[vtable]
    impl ethtool::Operations for TestNet {
        const STATS: &'static [&'static CStr] = &[c"tx_packets", c"opens"];

        fn get_drvinfo(_dev: &Device, _this: Pin<&Self>, info: &mut ethtool::DrvInfo) {
            info.set_driver(c"rust_netdev_test");
        }

        fn get_stats(_dev: &Device, this: Pin<&Self>, values: &mut [u64]) {
            values[0] = this.tx.packets.get();
            values[1] = this.opens.get();
        }

        fn get_channels(dev: &Device, _this: Pin<&Self>, ch: &mut ethtool::Channels) {
            ch.max_combined = dev.num_tx_queues();
            ch.combined_count = dev.real_num_tx_queues();
        }

        fn set_channels(_dev: &Device, this: Pin<&Self>, ch: &ethtool::Channels) -> Result {
            if ch.rx_count != 0 || ch.tx_count != 0 {
                return Err(EOPNOTSUPP);
            }
            this.channel_sets.add(ch.combined_count.into());
            Ok(())
        }
    }

    fn frame(dst: &[u8; ETH_ALEN], len: usize) -> Result<KVec<u8>> {
        let mut f = KVec::new();
        f.extend_from_slice(dst, GFP_KERNEL)?;
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5], GFP_KERNEL)?;
        while f.len() < len {
            f.push(0x5a, GFP_KERNEL)?;
        }
        Ok(f)
    }

    #[test]
    fn register_open_xmit_close() -> Result {
        let mac = [2, 0, 0, 0, 0, 0x42];
        let opts = Options {
            name: c"rsnet%d",
            tx_queues: 4,
            rx_queues: 4,
            features: Features::SG | Features::IP_CSUM,
            hw_features: Features::SG | Features::IP_CSUM | Features::TSO,
            mtu: 1500,
            min_mtu: ETH_MIN_MTU,
            max_mtu: 9000,
            mac: Some(mac),
            tso_max_size: 0,
            attributes: None,
        };
        let reg = Registration::new(&opts, test_net())?;
        let dev = reg.device();
        let data = reg.data();
        let name = dev.name().to_bytes();
        assert!(name.starts_with(b"rsnet"));
        assert!(!name.contains(&b'%'));
        assert_eq!(dev.mac_addr(), mac);
        assert_eq!((dev.mtu(), dev.min_mtu(), dev.max_mtu()), (1500, 68, 9000));
        assert!(dev.features().contains(Features::SG | Features::IP_CSUM));
        assert!(!dev.features().intersects(Features::TSO));
        assert!(dev.hw_features().contains(Features::TSO));
        assert_eq!(dev.num_tx_queues(), 4);
        // Registration computes the features through `fix_features`.
        assert!(data.fixes.get() >= 1);

        dev.carrier_off();
        assert!(!dev.carrier_ok());
        dev.carrier_on();
        assert!(dev.carrier_ok());

        {
            let rtnl = RtnlGuard::lock();
            dev.set_real_num_tx_queues(&rtnl, 2)?;
            assert_eq!(dev.set_real_num_tx_queues(&rtnl, 5).err(), Some(EINVAL));
            assert_eq!(dev.set_real_num_tx_queues(&rtnl, 0).err(), Some(EINVAL));
            dev.set_real_num_rx_queues(&rtnl, 2)?;

            // MTU changes through the stack: limits are checked by the core, then by the driver.
            // SAFETY: `dev` is a registered device and RTNL is held.
            assert_eq!(unsafe { bindings::dev_set_mtu(dev.as_raw(), 9000) }, 0);
            assert_eq!(dev.mtu(), 9000);
            // SAFETY: As above.
            assert!(unsafe { bindings::dev_set_mtu(dev.as_raw(), 9001) } < 0);
            // SAFETY: As above.
            let ret = unsafe { bindings::dev_set_mtu(dev.as_raw(), 1234) };
            assert_eq!(ret, EINVAL.to_errno());
            assert_eq!(dev.mtu(), 9000);
            assert_eq!(data.mtu_changes.get(), 1);

            let fixes = data.fixes.get();
            dev.update_features(&rtnl);
            assert!(data.fixes.get() > fixes);

            // SAFETY: As above.
            assert_eq!(unsafe { bindings::dev_open(dev.as_raw(), null_mut()) }, 0);
        }
        assert!(dev.is_running());
        assert_eq!(data.opens.get(), 1);
        assert_eq!(dev.real_num_tx_queues(), 2);
        assert_eq!(dev.real_num_rx_queues(), 2);

        let q = dev.tx_queue(1).ok_or(EINVAL)?;
        q.stop();
        assert!(q.is_stopped());
        q.wake();
        assert!(!q.is_stopped());
        assert!(dev.tx_queue(4).is_none());

        // Transmit through the stack: `select_queue` picks queue 1, `start_xmit` gets the skb.
        let mut skb = SkBuff::alloc(128, GFP_KERNEL)?;
        skb.put_data(&frame(&[0xff; ETH_ALEN], 64)?)?;
        let raw = skb.into_raw().as_ptr();
        // SAFETY: `raw` is a valid socket buffer that we own; its ownership goes to the stack.
        let ret = unsafe {
            (*raw)
                .__bindgen_anon_1
                .__bindgen_anon_1
                .__bindgen_anon_1
                .dev = dev.as_raw();
            bindings::__dev_queue_xmit(raw, null_mut())
        };
        assert_eq!(ret, 0);
        assert_eq!(data.ours.get(), 1);
        assert!(data.tx.bytes.get() >= 64);
        assert_eq!(*data.last_queue.lock(), 1);

        // Statistics through the stack.
        let mut storage = Stats64::default();
        // SAFETY: `dev` is registered; `storage` is valid for writes.
        unsafe { bindings::dev_get_stats(dev.as_raw(), (&raw mut storage).cast()) };
        assert!(storage.tx_packets() >= 1);
        assert_eq!(storage.tx_bytes(), data.tx.bytes.get());

        // Per-queue statistics, summed by the core as for netdev netlink `qstats-get`: they
        // match the device totals.
        let (mut rx_sum, mut tx_sum) = (QueueStatsRx::unreported(), QueueStatsTx::unreported());
        {
            let _rtnl = RtnlGuard::lock();
            // SAFETY: `dev` is registered and RTNL is held; the sums are valid for writes.
            unsafe {
                let ops = &*(*dev.as_raw()).stat_ops;
                let base = ops.get_base_stats.ok_or(EINVAL)?;
                base(
                    dev.as_raw(),
                    (&raw mut rx_sum).cast(),
                    (&raw mut tx_sum).cast(),
                );
                bindings::netdev_stat_queue_sum(
                    dev.as_raw(),
                    0,
                    2,
                    (&raw mut rx_sum).cast(),
                    0,
                    2,
                    (&raw mut tx_sum).cast(),
                );
            }
        }
        assert_eq!(tx_sum.packets(), Some(data.tx.packets.get()));
        assert_eq!(tx_sum.bytes(), Some(storage.tx_bytes()));
        assert_eq!((rx_sum.packets(), rx_sum.bytes()), (Some(0), Some(0)));

        // Ethtool through the operations table, as the ethtool core calls it: with RTNL held.
        let rtnl = RtnlGuard::lock();
        // SAFETY: `Registration` installed a `'static` table.
        let ops = unsafe { &*(*dev.as_raw()).ethtool_ops };
        let ss = bindings::ethtool_stringset_ETH_SS_STATS;
        let d = dev.as_raw();
        let count = ops.get_sset_count.ok_or(EINVAL)?;
        // SAFETY: The callbacks get a registered device and valid buffers, as from ethtool.
        assert_eq!(unsafe { count(d, ss as c_int) }, 2);
        let mut strings = [0u8; 2 * ethtool::GSTRING_LEN];
        let get_strings = ops.get_strings.ok_or(EINVAL)?;
        // SAFETY: As above.
        unsafe { get_strings(d, ss, strings.as_mut_ptr()) };
        assert_eq!(&strings[..11], b"tx_packets\0");
        assert_eq!(&strings[32..38], b"opens\0");
        let mut values = [u64::MAX; 2];
        let get_stats = ops.get_ethtool_stats.ok_or(EINVAL)?;
        // SAFETY: As above.
        unsafe { get_stats(d, null_mut(), values.as_mut_ptr()) };
        assert_eq!(values, [data.tx.packets.get(), 1]);
        // SAFETY: `ethtool_drvinfo` only has integer fields.
        let mut info: bindings::ethtool_drvinfo =
            unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
        let get_drvinfo = ops.get_drvinfo.ok_or(EINVAL)?;
        // SAFETY: As above.
        unsafe { get_drvinfo(d, &mut info) };
        assert_eq!(&info.driver[..17], b"rust_netdev_test\0");
        let get_link = ops.get_link.ok_or(EINVAL)?;
        // SAFETY: As above.
        assert_eq!(unsafe { get_link(d) }, 1);
        // SAFETY: `ethtool_channels` only has integer fields.
        let mut ch: bindings::ethtool_channels =
            unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
        let get_channels = ops.get_channels.ok_or(EINVAL)?;
        // SAFETY: As above.
        unsafe { get_channels(d, &mut ch) };
        assert_eq!((ch.max_combined, ch.combined_count), (4, 2));
        let set_channels = ops.set_channels.ok_or(EINVAL)?;
        ch.combined_count = 3;
        // SAFETY: As above.
        assert_eq!(unsafe { set_channels(d, &mut ch) }, 0);
        assert_eq!(data.channel_sets.get(), 3);
        ch.rx_count = 1;
        // SAFETY: As above.
        assert_eq!(unsafe { set_channels(d, &mut ch) }, EOPNOTSUPP.to_errno());
        assert!(ops.get_ringparam.is_none());
        drop(rtnl);

        {
            // The receive filter: multicast addresses and all-multicast reach `set_rx_mode`.
            let _rtnl = RtnlGuard::lock();
            let group = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x7b];
            let before = data.rx_mode.lock().0;
            // SAFETY: `dev` is registered and RTNL is held; `group` is 6 bytes.
            let added = unsafe { bindings::dev_mc_add(dev.as_raw(), group.as_ptr()) };
            assert_eq!(added, 0);
            let (n, last, allmulti) = *data.rx_mode.lock();
            assert_eq!((n, last, allmulti), (before + 1, group, false));
            // SAFETY: As above.
            assert_eq!(unsafe { bindings::dev_set_allmulti(dev.as_raw(), 1) }, 0);
            assert!(data.rx_mode.lock().2);
            // SAFETY: As above.
            assert_eq!(unsafe { bindings::dev_set_allmulti(dev.as_raw(), -1) }, 0);
            // SAFETY: As above.
            let deleted = unsafe { bindings::dev_mc_del(dev.as_raw(), group.as_ptr()) };
            assert_eq!(deleted, 0);
            let (n, _, allmulti) = *data.rx_mode.lock();
            assert_eq!((n, allmulti), (before, false));
        }

        {
            let _rtnl = RtnlGuard::lock();
            // SAFETY: `dev` is registered and RTNL is held.
            unsafe { bindings::dev_close(dev.as_raw()) };
        }
        assert!(!dev.is_running());
        assert_eq!(data.stops.get(), 1);
        drop(reg);
        Ok(())
    }

    crate::fixed_attributes!(TEST_ATTRS, [(rxbuf_min, 256), (rxbuf_cur, 7)]);

    #[test]
    fn fixed_attributes() -> Result {
        for ok in [&b"12"[..], b"0x1f\n", b"0x", b"7abc"] {
            assert!(parse_number_prefix(ok));
        }
        for bad in [&b""[..], b"abc", b"-1", b"+7", b" 12"] {
            assert!(!parse_number_prefix(bad));
        }

        let mut opts = Options::new();
        opts.name = c"rsattr%d";
        opts.attributes = Some(&TEST_ATTRS);
        let reg = Registration::new(&opts, test_net())?;
        let raw = reg.device().as_raw();
        // A page-aligned buffer, as sysfs gives (kmalloc aligns power-of-two sizes naturally).
        let mut page = KVec::<u8>::with_capacity(4096, GFP_KERNEL)?;
        let buf = page.as_mut_ptr();
        // SAFETY: The device is registered with our group in its first slot, whose list holds
        // two `FixedAttribute`s and a NULL.
        let (second, third, name, mode) = unsafe {
            let attrs = (*(*raw).sysfs_groups[0]).__bindgen_anon_2.attrs;
            let second = (*attrs.add(1)).cast::<bindings::device_attribute>();
            let name = CStr::from_char_ptr((*second).attr.name);
            (second, *attrs.add(2), name, (*second).attr.mode)
        };
        assert!(third.is_null());
        assert_eq!((name, mode), (c"rxbuf_cur", 0o644));
        // SAFETY: `second` is a `FixedAttribute`'s, with both callbacks.
        let (show, store) = unsafe {
            (
                (*second).__bindgen_anon_1.show,
                (*second).__bindgen_anon_2.store,
            )
        };
        let (show, store) = (show.ok_or(EINVAL)?, store.ok_or(EINVAL)?);
        // SAFETY: `raw` is a valid device.
        let dev = unsafe { &raw mut (*raw).dev };
        // SAFETY: As sysfs calls it: the device, its attribute, a page-aligned page.
        let shown = unsafe { show(dev, second, buf) };
        assert_eq!(shown, 2);
        // SAFETY: `show` wrote 2 bytes into `buf`.
        let text = unsafe { core::slice::from_raw_parts(buf, 2) };
        assert_eq!(text, b"7\n");
        // SAFETY: As sysfs calls it: the device, its attribute, `count` readable bytes.
        let stored = unsafe { store(dev, second, b"12\n".as_ptr(), 3) };
        assert_eq!(stored, 3);
        // SAFETY: As above.
        let bad = unsafe { store(dev, second, b"x".as_ptr(), 1) };
        assert_eq!(bad, EBADMSG.to_errno() as isize);
        // SAFETY: As the first `show` call. The value is still the fixed one.
        let again = unsafe { show(dev, second, buf) };
        assert_eq!(again, 2);
        drop(reg);
        Ok(())
    }

    #[test]
    fn bad_options() -> Result {
        let mut opts = Options::new();
        opts.name = c"name-much-too-long%d";
        assert_eq!(Registration::new(&opts, test_net()).err(), Some(EINVAL));
        let mut opts = Options::new();
        opts.mtu = 9000;
        assert_eq!(Registration::new(&opts, test_net()).err(), Some(EINVAL));
        // A failing private data initialiser fails the registration.
        // SAFETY: The closure fails without touching the slot.
        let fail = unsafe { pin_init::pin_init_from_closure(|_slot: *mut TestNet| Err(ENODEV)) };
        assert_eq!(Registration::new(&Options::new(), fail).err(), Some(ENODEV));
        Ok(())
    }

    struct RxQueue {
        polls: Counter,
        rx: QueueStats,
    }

    impl Poller for RxQueue {
        fn poll(ctx: &PollContext<'_, Self>, budget: u32) -> u32 {
            ctx.polls.inc();
            if budget == 0 {
                return 0;
            }
            let dev = ctx.device();
            // No sleeping allocation here: this runs in softirq context.
            let mut f = [0x5au8; 60];
            f[..ETH_ALEN].copy_from_slice(&dev.mac_addr());
            f[ETH_ALEN..ETH_ALEN + 8].copy_from_slice(&[2, 0, 0, 0, 0, 1, 0x88, 0xb5]);
            if let Ok(mut skb) = ctx.alloc_skb(60) {
                // The stack sees the protocol only if `skb->protocol` was set.
                if skb.put_data(&f).is_ok()
                    && skb.eth_type_trans(dev) == Ok(0x88b5)
                    && skb.protocol() == 0x88b5
                {
                    ctx.rx.packet(skb.len());
                    ctx.gro_receive(skb);
                }
            }
            // Completing with the whole budget used is refused.
            if ctx.complete_done(budget) {
                return budget;
            }
            ctx.complete_done(1);
            1
        }
    }

    #[test]
    fn napi_poll() -> Result {
        let mut opts = Options::new();
        opts.name = c"rsnapi%d";
        let reg = Registration::new(&opts, test_net())?;
        let napi = crate::sync::Arc::pin_init(
            Napi::new(
                reg.device(),
                RxQueue {
                    polls: Counter::new(),
                    rx: QueueStats::new(),
                },
            ),
            GFP_KERNEL,
        )?;

        // Queue links, as netdev netlink reports them.
        {
            let rtnl = RtnlGuard::lock();
            fn own(n: &Napi<RxQueue>) -> &Napi<RxQueue> {
                n
            }
            let bad = QueueLink::new(&rtnl, napi.clone(), own, QueueType::Rx, 1);
            assert_eq!(bad.err(), Some(EINVAL));
            let rx = QueueLink::new(&rtnl, napi.clone(), own, QueueType::Rx, 0)?;
            let tx = QueueLink::new(&rtnl, napi.clone(), own, QueueType::Tx, 0)?;
            let raw = reg.device().as_raw();
            // SAFETY: `raw` is registered with one queue of each type; RTNL is held.
            let (rxq, txq) = unsafe { ((*(*raw)._rx).napi, (*(*raw)._tx).napi) };
            assert!(!rxq.is_null() && rxq == txq);
            // SAFETY: The queue points at a live context (the link keeps it).
            assert_eq!(unsafe { (*rxq).dev }, raw);
            assert_eq!(rx.index(), 0);
            rx.unlink(&rtnl);
            tx.unlink(&rtnl);
            // SAFETY: As above.
            let (rxq, txq) = unsafe { ((*(*raw)._rx).napi, (*(*raw)._tx).napi) };
            assert!(rxq.is_null() && txq.is_null());
        }
        // A disabled context cannot be scheduled.
        assert!(!napi.schedule());
        napi.enable();
        napi.enable();
        assert!(napi.schedule());
        let mut waited = 0;
        while napi.polls.get() == 0 && waited < 200 {
            fsleep(Delta::from_millis(10));
            waited += 1;
        }
        assert!(napi.polls.get() >= 1);
        napi.disable();
        napi.disable();
        // The schedule attempt while disabled may have caused one more poll.
        let polls = napi.polls.get();
        assert!(polls <= 2);
        assert_eq!(napi.rx.packets.get(), polls);
        // `eth_type_trans` pulled the Ethernet header.
        assert_eq!(
            napi.rx.bytes.get(),
            polls * (60 - u64::from(crate::net::skb::ETH_HLEN))
        );
        assert!(!napi.schedule());
        drop(napi);
        drop(reg);
        Ok(())
    }

    #[test]
    fn eth_type_trans_pkt_type() -> Result {
        use crate::net::skb::PacketType;
        let mac = [2, 0, 0, 0, 0, 0x43];
        let mut opts = Options::new();
        opts.name = c"rspkt%d";
        opts.mac = Some(mac);
        let reg = Registration::new(&opts, test_net())?;
        let cases = [
            (mac, PacketType::Host),
            ([0xff; ETH_ALEN], PacketType::Broadcast),
            ([0x01, 0x00, 0x5e, 1, 2, 3], PacketType::Multicast),
            ([0x33, 0x33, 0, 0, 0, 1], PacketType::Multicast),
            ([2, 0, 0, 0, 0, 0x44], PacketType::OtherHost),
        ];
        for (dst, want) in cases {
            let mut skb = SkBuff::alloc(64, GFP_KERNEL)?;
            skb.put_data(&dst)?;
            skb.put_data(&[2, 0, 0, 0, 0, 1, 0x08, 0x00])?;
            skb.put_zero(46)?;
            // A new buffer counts as sent by this host.
            assert_eq!(skb.pkt_type(), PacketType::Host);
            assert_eq!(skb.eth_type_trans(reg.device())?, 0x0800);
            assert_eq!(skb.pkt_type(), want);
            assert_eq!(skb.len(), 46);
            skb.consume();
        }
        // Shorter than an Ethernet header: refused, the buffer is left alone.
        let mut skb = SkBuff::alloc(64, GFP_KERNEL)?;
        skb.put_data(&[0xff; 10])?;
        assert_eq!(skb.eth_type_trans(reg.device()).err(), Some(EINVAL));
        assert_eq!((skb.len(), skb.pkt_type()), (10, PacketType::Host));
        skb.consume();
        drop(reg);
        Ok(())
    }
}
