// SPDX-License-Identifier: GPL-2.0

//! NAPI: interrupt-mitigated polling of a network device queue (`struct napi_struct`).
//!
//! A [`Napi<T>`] embeds the driver's per-queue data `T`; the stack calls [`Poller::poll`] in
//! softirq context after [`Napi::schedule`], typically from the queue's interrupt handler. The
//! poll gets a [`PollContext`] to hand packets to GRO, free transmitted packets and complete the
//! poll. A [`QueueLink`] tells netdev netlink which context serves which device queue.
//!
//! C header: [`include/linux/netdevice.h`](srctree/include/linux/netdevice.h)

use crate::{
    alloc::AllocError,
    bindings,
    net::{
        dev::{
            Device,
            Rtnl, //
        },
        skb::SkBuff, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        new_mutex,
        Arc,
        Mutex, //
    },
    types::Opaque, //
};
use core::{
    cell::Cell,
    ops::Deref, //
};

/// Default NAPI weight: the most packets one poll may process (`NAPI_POLL_WEIGHT`).
pub const POLL_WEIGHT: u32 = bindings::NAPI_POLL_WEIGHT;

/// The poll function of a [`Napi<T>`], implemented by the per-queue data `T`.
pub trait Poller: Sized + Send + Sync {
    /// Processes at most `budget` received packets and returns how many were processed
    /// (`poll` of `struct napi_struct`); runs in softirq context.
    ///
    /// Reclaiming transmitted packets does not count against the budget. When less than
    /// `budget` packets were processed the poll should call [`PollContext::complete_done`] and
    /// re-enable the device interrupt; `budget` may be 0 (netpoll), then only transmit
    /// completions may be processed.
    fn poll(ctx: &PollContext<'_, Self>, budget: u32) -> u32;
}

/// A NAPI context (`struct napi_struct`) of a network device, with the queue data `T`.
///
/// A `Napi` holds a reference to its device: drop it before the device's
/// [`Registration`](super::dev::Registration), otherwise unregistering waits for it forever.
/// Dropping it disables it if needed and removes it from the device (`netif_napi_del()`), which
/// may sleep.
///
/// # Invariants
///
/// `napi` was added to `dev` with `netif_napi_add_weight()` and `poll_callback`, and is
/// removed only in `drop`. `enabled` is `true` exactly when `napi` is enabled.
#[pin_data(PinnedDrop)]
pub struct Napi<T: Poller> {
    #[pin]
    napi: Opaque<bindings::napi_struct>,
    #[pin]
    enabled: Mutex<bool>,
    dev: ARef<Device>,
    #[pin]
    data: T,
}

// SAFETY: The NAPI functions used through `&Napi` can be called from any thread, and `T: Sync`.
unsafe impl<T: Poller> Sync for Napi<T> {}
// SAFETY: A `Napi` can be dropped from any thread in process context, and `T: Send`.
unsafe impl<T: Poller> Send for Napi<T> {}

impl<T: Poller> Napi<T> {
    /// Creates a NAPI context for `dev` around the queue data `data` (`netif_napi_add()`,
    /// default weight). It starts disabled.
    pub fn new<E>(dev: &Device, data: impl PinInit<T, E>) -> impl PinInit<Self, Error>
    where
        Error: From<E>,
    {
        let dev = ARef::from(dev);
        try_pin_init!(Self {
            napi <- Opaque::zeroed(),
            enabled <- new_mutex!(false),
            dev,
            data <- data,
        }? Error)
        .pin_chain(|this| {
            // SAFETY: `this.napi` is a zeroed, pinned `napi_struct` that lives until `drop`,
            // which removes it; `this.dev` is a valid device.
            unsafe {
                bindings::netif_napi_add_weight(
                    this.dev.as_raw(),
                    this.napi.get(),
                    Some(Self::poll_callback),
                    POLL_WEIGHT as c_int,
                )
            };
            Ok(())
        })
    }

    /// Returns the device this NAPI context belongs to.
    pub fn device(&self) -> &Device {
        &self.dev
    }

    /// Returns the queue data.
    pub fn data(self: Pin<&Self>) -> Pin<&T> {
        // SAFETY: `data` is structurally pinned.
        unsafe { self.map_unchecked(|s| &s.data) }
    }

    /// Enables polling (`napi_enable()`); does nothing if already enabled. May sleep.
    pub fn enable(&self) {
        let mut enabled = self.enabled.lock();
        if !*enabled {
            // SAFETY: `napi` was added and is disabled (type invariant); `enabled` serialises
            // enable and disable.
            unsafe { bindings::napi_enable(self.napi.get()) };
            *enabled = true;
        }
    }

    /// Disables polling, waiting for a running poll to finish (`napi_disable()`); does nothing
    /// if already disabled. May sleep.
    pub fn disable(&self) {
        let mut enabled = self.enabled.lock();
        if *enabled {
            // SAFETY: `napi` was added and is enabled (type invariant).
            unsafe { bindings::napi_disable(self.napi.get()) };
            *enabled = false;
        }
    }

    /// Schedules a poll (`napi_schedule()`) unless one is already scheduled or polling is
    /// disabled; returns whether it scheduled one. Can be called from any context, usually
    /// from an interrupt handler.
    pub fn schedule(&self) -> bool {
        // SAFETY: `napi` was added (type invariant); `napi_schedule` does nothing for a
        // disabled context.
        unsafe { bindings::napi_schedule(self.napi.get()) }
    }

    /// # Safety
    ///
    /// Only called by the stack, as the poll function of a context added in [`Napi::new`].
    unsafe extern "C" fn poll_callback(napi: *mut bindings::napi_struct, budget: c_int) -> c_int {
        // SAFETY: The stack calls the poll function of a NAPI context added in `new`, which is
        // the `napi` field of a pinned `Napi<T>` that lives until it is removed.
        let this = unsafe {
            &*crate::container_of!(napi.cast::<Opaque<bindings::napi_struct>>(), Self, napi)
        };
        let budget = u32::try_from(budget).unwrap_or(0);
        let ctx = PollContext {
            napi: this,
            budget,
            completed: Cell::new(false),
        };
        let done = T::poll(&ctx, budget).min(budget);
        // The stack must not see a completed poll that used its whole budget.
        let done = if ctx.completed.get() && budget > 0 {
            done.min(budget - 1)
        } else {
            done
        };
        done as c_int
    }
}

impl<T: Poller> Deref for Napi<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

#[pinned_drop]
impl<T: Poller> PinnedDrop for Napi<T> {
    fn drop(self: Pin<&mut Self>) {
        self.disable();
        // SAFETY: `napi` was added in `new` and is disabled now; after `netif_napi_del` (which
        // waits for an RCU grace period) the stack no longer references it.
        unsafe { bindings::netif_napi_del(self.napi.get()) };
    }
}

/// The kind of a device queue (`enum netdev_queue_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum QueueType {
    /// A receive queue (`NETDEV_QUEUE_TYPE_RX`).
    Rx = bindings::netdev_queue_type_NETDEV_QUEUE_TYPE_RX,
    /// A transmit queue (`NETDEV_QUEUE_TYPE_TX`).
    Tx = bindings::netdev_queue_type_NETDEV_QUEUE_TYPE_TX,
}

/// The link from a device queue to the NAPI context that serves it (`netif_queue_set_napi()`),
/// as netdev netlink reports it (`napi-id` of `queue-get`).
///
/// The link keeps the owner `O` of the NAPI context alive (an [`Arc`] of the context itself, or
/// of the structure that embeds it), so the queue never points at a freed context. Remove it
/// with [`QueueLink::unlink`] under RTNL before the context goes away; a link dropped without
/// that cannot take RTNL (the drop may run with it held) and leaks the owner with a warning,
/// which then keeps the device from unregistering.
///
/// Only for devices whose operations run under RTNL (not the per-device instance lock), as
/// those of [`Registration`](super::dev::Registration).
///
/// # Invariants
///
/// While `owner` is `Some`, queue `index` of type `kind` of `dev` points at a NAPI context of
/// `dev` inside `*owner`.
pub struct QueueLink<O: Send + Sync> {
    owner: Option<Arc<O>>,
    dev: ARef<Device>,
    kind: QueueType,
    index: u32,
}

impl<O: Send + Sync> QueueLink<O> {
    /// Links queue `index` of type `kind` to the NAPI context `napi_of(&owner)`.
    ///
    /// Fails with `EINVAL` if the device has no such queue in use.
    pub fn new<T: Poller>(
        _rtnl: &Rtnl,
        owner: Arc<O>,
        napi_of: fn(&O) -> &Napi<T>,
        kind: QueueType,
        index: u32,
    ) -> Result<Self> {
        let napi = napi_of(&owner);
        let dev = napi.dev.clone();
        let in_use = match kind {
            QueueType::Rx => dev.real_num_rx_queues(),
            QueueType::Tx => dev.real_num_tx_queues(),
        };
        if index >= in_use {
            return Err(EINVAL);
        }
        // SAFETY: `dev` is a registered device (it has a NAPI context added, see `Napi`) with
        // more than `index` queues of type `kind`; RTNL is held, as the function requires; the
        // context lives as long as `owner`, which the returned link keeps.
        unsafe {
            bindings::netif_queue_set_napi(dev.as_raw(), index, kind as u32, napi.napi.get())
        };
        // INVARIANT: The queue points at the context now, and `owner` is kept.
        Ok(Self {
            owner: Some(owner),
            dev,
            kind,
            index,
        })
    }

    /// Removes the link and releases the owner.
    pub fn unlink(mut self, _rtnl: &Rtnl) {
        // SAFETY: Queue `index` of type `kind` exists (it was linked in `new`; queues are never
        // freed before the device); RTNL is held.
        unsafe {
            bindings::netif_queue_set_napi(
                self.dev.as_raw(),
                self.index,
                self.kind as u32,
                core::ptr::null_mut(),
            )
        };
        self.owner = None;
    }

    /// Returns the index of the linked queue.
    pub fn index(&self) -> u32 {
        self.index
    }
}

impl<O: Send + Sync> Drop for QueueLink<O> {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            pr_warn!(
                "{}: queue {} dropped without unlinking its NAPI context: leaked\n",
                self.dev.name().to_str().unwrap_or("?"),
                self.index
            );
            // The queue still points into `owner`: it must never be freed.
            core::mem::forget(owner);
        }
    }
}

/// What a [`Poller::poll`] may do with its NAPI context; only exists during a poll.
pub struct PollContext<'a, T: Poller> {
    napi: &'a Napi<T>,
    budget: u32,
    completed: Cell<bool>,
}

impl<'a, T: Poller> PollContext<'a, T> {
    /// Returns the NAPI context being polled.
    pub fn napi(&self) -> &'a Napi<T> {
        self.napi
    }

    /// Returns the device being polled.
    pub fn device(&self) -> &'a Device {
        &self.napi.dev
    }

    /// Hands a received packet to generic receive offload (`napi_gro_receive()`).
    pub fn gro_receive(&self, skb: SkBuff) {
        let skb = skb.into_raw();
        // SAFETY: We are in the poll of `napi`, where GRO may be used; ownership of `skb` is
        // passed to the stack.
        unsafe { bindings::napi_gro_receive(self.napi.napi.get(), skb.as_ptr()) };
    }

    /// Allocates a receive buffer of `len` bytes from the NAPI cache (`napi_alloc_skb()`).
    pub fn alloc_skb(&self, len: u32) -> Result<SkBuff, AllocError> {
        // SAFETY: We are in the poll of `napi`, in softirq context.
        let skb = unsafe { bindings::napi_alloc_skb(self.napi.napi.get(), len) };
        let skb = core::ptr::NonNull::new(skb).ok_or(AllocError)?;
        // SAFETY: A newly allocated buffer with one reference, which we own.
        Ok(unsafe { SkBuff::from_raw(skb) })
    }

    /// Frees a transmitted packet (`napi_consume_skb()` with the poll budget).
    pub fn consume(&self, skb: SkBuff) {
        skb.napi_consume(self.budget);
    }

    /// Completes the poll after `work_done` packets (`napi_complete_done()`).
    ///
    /// Returns `false` if the poll must not re-enable the interrupt: the context is being
    /// rescheduled, or `work_done` reached the budget (then the poll is not completed and the
    /// stack polls again).
    pub fn complete_done(&self, work_done: u32) -> bool {
        if work_done >= self.budget {
            return false;
        }
        self.completed.set(true);
        // SAFETY: We are in the poll of `napi` and processed less than the budget.
        unsafe { bindings::napi_complete_done(self.napi.napi.get(), work_done as c_int) }
    }
}

impl<T: Poller> Deref for PollContext<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.napi.data
    }
}
