// SPDX-License-Identifier: GPL-2.0

//! Network device statistics: per-queue 64-bit counters and the device totals
//! (`struct rtnl_link_stats64`).
//!
//! Drivers keep a [`QueueStats`] per receive and per transmit queue, updated from the data path
//! without locks, and add them up in [`Operations::get_stats64`].
//!
//! [`Operations::get_stats64`]: super::dev::Operations::get_stats64
//!
//! C header: [`include/uapi/linux/if_link.h`](srctree/include/uapi/linux/if_link.h)

use crate::{
    bindings,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
};

/// A 64-bit event counter that can be updated and read from any context without locks.
///
/// Reads are not synchronised with updates: a reader sees each counter at some recent value, as
/// with `u64_stats_sync` in C.
///
/// # Examples
///
/// ```
/// use kernel::net::stats::Counter;
///
/// let c = Counter::new();
/// c.inc();
/// c.add(41);
/// assert_eq!(c.get(), 42);
/// ```
pub struct Counter(Atomic<u64>);

impl Counter {
    /// Creates a counter at 0.
    pub const fn new() -> Self {
        Self(Atomic::new(0))
    }

    /// Adds `v`, wrapping around at 2^64.
    #[inline]
    pub fn add(&self, v: u64) {
        self.0.add(v, Relaxed);
    }

    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Returns the current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

/// Counters of one receive or transmit queue.
///
/// # Examples
///
/// ```
/// use kernel::net::stats::QueueStats;
///
/// let q = QueueStats::new();
/// q.packet(1500);
/// q.packet(60);
/// q.dropped.inc();
/// assert_eq!(q.packets.get(), 2);
/// assert_eq!(q.bytes.get(), 1560);
/// ```
#[derive(Default)]
pub struct QueueStats {
    /// Packets received or sent.
    pub packets: Counter,
    /// Bytes received or sent.
    pub bytes: Counter,
    /// Packets dropped.
    pub dropped: Counter,
    /// Packets with errors.
    pub errors: Counter,
}

impl QueueStats {
    /// Creates counters at 0.
    pub const fn new() -> Self {
        Self {
            packets: Counter::new(),
            bytes: Counter::new(),
            dropped: Counter::new(),
            errors: Counter::new(),
        }
    }

    /// Counts one packet of `len` bytes.
    #[inline]
    pub fn packet(&self, len: u32) {
        self.packets.inc();
        self.bytes.add(u64::from(len));
    }
}

/// Device statistics being reported (`struct rtnl_link_stats64`).
///
/// # Examples
///
/// ```
/// use kernel::net::stats::{QueueStats, Stats64};
///
/// let rx = QueueStats::new();
/// rx.packet(100);
/// let tx = QueueStats::new();
/// tx.packet(200);
/// tx.errors.inc();
/// let mut s = Stats64::default();
/// s.add_rx(&rx);
/// s.add_tx(&tx);
/// s.add_rx(&rx);
/// assert_eq!(s.rx_packets(), 2);
/// assert_eq!(s.rx_bytes(), 200);
/// assert_eq!(s.tx_bytes(), 200);
/// assert_eq!(s.tx_errors(), 1);
/// ```
#[repr(transparent)]
pub struct Stats64(bindings::rtnl_link_stats64);

impl Default for Stats64 {
    fn default() -> Self {
        // SAFETY: `rtnl_link_stats64` only has integer fields, for which zero is valid.
        Self(unsafe { core::mem::MaybeUninit::zeroed().assume_init() })
    }
}

macro_rules! getters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> u64 {
                self.0.$name
            }
        )*
    };
}

impl Stats64 {
    /// Creates a mutable reference from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must be valid for reads and writes, and not accessed otherwise, for `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::rtnl_link_stats64) -> &'a mut Self {
        // CAST: `Stats64` is a transparent wrapper of `rtnl_link_stats64`.
        // SAFETY: By the safety requirements.
        unsafe { &mut *ptr.cast() }
    }

    /// Adds the counters of a receive queue.
    pub fn add_rx(&mut self, q: &QueueStats) {
        self.0.rx_packets = self.0.rx_packets.wrapping_add(q.packets.get());
        self.0.rx_bytes = self.0.rx_bytes.wrapping_add(q.bytes.get());
        self.0.rx_dropped = self.0.rx_dropped.wrapping_add(q.dropped.get());
        self.0.rx_errors = self.0.rx_errors.wrapping_add(q.errors.get());
    }

    /// Adds the counters of a transmit queue.
    pub fn add_tx(&mut self, q: &QueueStats) {
        self.0.tx_packets = self.0.tx_packets.wrapping_add(q.packets.get());
        self.0.tx_bytes = self.0.tx_bytes.wrapping_add(q.bytes.get());
        self.0.tx_dropped = self.0.tx_dropped.wrapping_add(q.dropped.get());
        self.0.tx_errors = self.0.tx_errors.wrapping_add(q.errors.get());
    }

    getters! {
        /// Returns the number of received packets.
        rx_packets,
        /// Returns the number of received bytes.
        rx_bytes,
        /// Returns the number of dropped received packets.
        rx_dropped,
        /// Returns the number of receive errors.
        rx_errors,
        /// Returns the number of sent packets.
        tx_packets,
        /// Returns the number of sent bytes.
        tx_bytes,
        /// Returns the number of dropped packets to send.
        tx_dropped,
        /// Returns the number of transmit errors.
        tx_errors,
    }
}
