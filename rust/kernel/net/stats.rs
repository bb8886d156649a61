// SPDX-License-Identifier: GPL-2.0

//! Network device statistics: per-queue 64-bit counters and the device totals
//! (`struct rtnl_link_stats64`).
//!
//! Drivers keep a [`QueueStats`] per receive and per transmit queue, updated from the data path
//! without locks, and add them up in [`Operations::get_stats64`].
//!
//! The same counters answer the per-queue statistics of netdev netlink (`qstats`, see
//! [`Operations::get_queue_stats_rx`]) through [`QueueStatsRx`] and [`QueueStatsTx`].
//!
//! [`Operations::get_stats64`]: super::dev::Operations::get_stats64
//! [`Operations::get_queue_stats_rx`]: super::dev::Operations::get_queue_stats_rx
//!
//! C headers: [`include/uapi/linux/if_link.h`](srctree/include/uapi/linux/if_link.h),
//! [`include/net/netdev_queues.h`](srctree/include/net/netdev_queues.h)

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

    /// Adds the counters of `other`, e.g. of a queue that goes away, so that device totals
    /// never decrease.
    ///
    /// ```
    /// use kernel::net::stats::QueueStats;
    ///
    /// let (old, q) = (QueueStats::new(), QueueStats::new());
    /// q.packet(100);
    /// q.errors.inc();
    /// old.absorb(&q);
    /// old.absorb(&q);
    /// assert_eq!((old.packets.get(), old.bytes.get(), old.errors.get()), (2, 200, 2));
    /// ```
    pub fn absorb(&self, other: &QueueStats) {
        self.packets.add(other.packets.get());
        self.bytes.add(other.bytes.get());
        self.dropped.add(other.dropped.get());
        self.errors.add(other.errors.get());
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

/// Adds `v` to a `netdev_queue_stats_*` field, where all-ones means "not reported" (the core
/// fills the structures with `0xff` before asking the driver).
fn qstat_add(field: &mut u64, v: u64) {
    *field = if *field == u64::MAX {
        v
    } else {
        field.wrapping_add(v)
    };
}

/// Statistics of one receive queue being reported to netdev netlink
/// (`struct netdev_queue_stats_rx`).
///
/// The core starts with every field "not reported"; a driver reports the fields it counts.
/// Reporting a field adds to what was reported before, so a driver can sum several sources.
///
/// # Examples
///
/// ```
/// use kernel::net::stats::{QueueStats, QueueStatsRx};
///
/// let q = QueueStats::new();
/// q.packet(1000);
/// q.packet(500);
/// let mut rx = QueueStatsRx::unreported();
/// assert_eq!(rx.packets(), None);
/// rx.add(&q);
/// rx.add(&q);
/// assert_eq!(rx.packets(), Some(4));
/// assert_eq!(rx.bytes(), Some(3000));
/// ```
#[repr(transparent)]
pub struct QueueStatsRx(bindings::netdev_queue_stats_rx);

/// Statistics of one transmit queue being reported to netdev netlink
/// (`struct netdev_queue_stats_tx`).
///
/// As [`QueueStatsRx`].
///
/// # Examples
///
/// ```
/// use kernel::net::stats::QueueStatsTx;
///
/// let mut tx = QueueStatsTx::unreported();
/// tx.add_counts(0, 0);
/// assert_eq!(tx.packets(), Some(0));
/// tx.add_counts(3, 180);
/// assert_eq!((tx.packets(), tx.bytes()), (Some(3), Some(180)));
/// ```
#[repr(transparent)]
pub struct QueueStatsTx(bindings::netdev_queue_stats_tx);

macro_rules! queue_stats_impl {
    ($name:ident, $raw:ty) => {
        impl $name {
            /// Returns statistics with every field "not reported", as the core passes them.
            pub fn unreported() -> Self {
                let mut raw = core::mem::MaybeUninit::<$raw>::uninit();
                // SAFETY: `raw` is valid for writes of one structure, which only has `u64`
                // fields: all-ones bytes initialise every field.
                Self(unsafe {
                    core::ptr::write_bytes(raw.as_mut_ptr(), 0xff, 1);
                    raw.assume_init()
                })
            }

            /// Creates a mutable reference from a raw pointer.
            ///
            /// # Safety
            ///
            /// `ptr` must be valid for reads and writes, and not accessed otherwise, for `'a`.
            pub unsafe fn from_raw<'a>(ptr: *mut $raw) -> &'a mut Self {
                // CAST: `Self` is a transparent wrapper of the C structure.
                // SAFETY: By the safety requirements.
                unsafe { &mut *ptr.cast() }
            }

            /// Reports `packets` packets of `bytes` bytes in total, in addition to what was
            /// reported before.
            pub fn add_counts(&mut self, packets: u64, bytes: u64) {
                qstat_add(&mut self.0.packets, packets);
                qstat_add(&mut self.0.bytes, bytes);
            }

            /// Reports the packets and bytes of `q`, in addition to what was reported before.
            pub fn add(&mut self, q: &QueueStats) {
                self.add_counts(q.packets.get(), q.bytes.get());
            }

            /// Reports the packets and bytes of a queue, or zero for a queue that has no
            /// counters now (e.g. it is not connected).
            pub fn add_queue(&mut self, q: Option<&QueueStats>) {
                match q {
                    Some(q) => self.add(q),
                    None => self.add_counts(0, 0),
                }
            }

            /// Returns the reported packet count, if any.
            pub fn packets(&self) -> Option<u64> {
                Some(self.0.packets).filter(|&v| v != u64::MAX)
            }

            /// Returns the reported byte count, if any.
            pub fn bytes(&self) -> Option<u64> {
                Some(self.0.bytes).filter(|&v| v != u64::MAX)
            }
        }
    };
}

queue_stats_impl!(QueueStatsRx, bindings::netdev_queue_stats_rx);
queue_stats_impl!(QueueStatsTx, bindings::netdev_queue_stats_tx);
