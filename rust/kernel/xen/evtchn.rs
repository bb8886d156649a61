// SPDX-License-Identifier: GPL-2.0

//! Event channels.
//!
//! An event channel connects two domains: each end has a *port*, and notifying one end raises an
//! interrupt in the other. The frontend of a device allocates an unbound port for the backend
//! ([`UnboundPort::alloc`]) and publishes its number in xenstore; the backend reads the number and
//! binds its end to it ([`Registration::bind_interdomain`]).
//!
//! Handlers are bound with *late EOI* (`*_lateeoi()`): the event channel stays masked after an
//! event until the handler, or the code it hands the work to, signals the end of the work
//! ([`Eoi`], [`Registration::lateeoi`]). A peer that sends events faster than they are handled
//! therefore cannot keep this domain busy, and events that found no work are reported as
//! spurious, which makes the event channel code delay the next EOI (XSA-332, XSA-391).
//!
//! C header: [`include/xen/events.h`](srctree/include/xen/events.h)

use crate::{
    bindings,
    device,
    error::to_result,
    prelude::*,
    str::CString,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Relaxed, //
        },
    },
    xen::xenbus, //
};
use core::marker::PhantomPinned;

/// The number of an event channel port (`evtchn_port_t`), as written in xenstore.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port(pub u32);

/// An event channel port allocated for the other end of a device and not bound yet
/// (`xenbus_alloc_evtchn()`).
///
/// Dropping it closes it (`xenbus_free_evtchn()`); binding it with [`Registration::bind`] hands it
/// over to the registration.
///
/// # Invariants
///
/// `port` is an unbound port of this domain, allocated for the other end of `dev` and owned by
/// `self`.
pub struct UnboundPort {
    dev: ARef<xenbus::Device>,
    port: u32,
}

impl UnboundPort {
    /// Allocates a port the other end of `dev` can bind to.
    ///
    /// On failure, the xenbus core also reports the error in xenstore and closes the device.
    pub fn alloc(dev: &xenbus::Device<device::Core<'_>>) -> Result<Self> {
        let mut port = 0;
        // SAFETY: `dev` is a valid xenbus device and `port` is valid for writes.
        to_result(unsafe { bindings::xenbus_alloc_evtchn(dev.as_raw(), &mut port) })?;
        // INVARIANT: On success, `port` is an unbound port for the other end.
        Ok(Self {
            dev: dev.into(),
            port,
        })
    }

    /// Returns the number of the port, to write into xenstore (`event-channel`).
    pub fn port(&self) -> Port {
        Port(self.port)
    }

    /// Gives up the port without closing it.
    fn into_raw(self) -> u32 {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: `this.dev` is initialised and never used again; dropping it releases the
        // device reference `self` held.
        drop(unsafe { core::ptr::read(&this.dev) });
        this.port
    }
}

impl Drop for UnboundPort {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the port is owned and unbound.
        let _ = unsafe { bindings::xenbus_free_evtchn(self.dev.as_raw(), self.port) };
    }
}

/// What an event channel handler tells the event channel code after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eoi {
    /// The event found work, which is done: unmask the event channel now
    /// (`xen_irq_lateeoi(irq, 0)`).
    Done,
    /// The event found no work: unmask the event channel, possibly after a delay if this keeps
    /// happening (`xen_irq_lateeoi(irq, XEN_EOI_FLAG_SPURIOUS)`).
    Spurious,
    /// The work was handed over (for example to NAPI), which will call
    /// [`Registration::lateeoi`] when it is done. The event channel stays masked until then.
    ///
    /// Also what a handler returns for a peer it no longer serves (a broken device): the event
    /// channel then stays masked.
    Deferred,
}

/// The handler of the events of an event channel.
pub trait Handler: Send + Sync {
    /// Called in hard interrupt context for each event, with the event channel masked.
    ///
    /// The return value says when to unmask it.
    fn handle(&self) -> Eoi;
}

/// An event channel bound to an interrupt handler with late EOI.
///
/// Dropping the registration frees the interrupt (waiting for a running handler) and closes the
/// event channel (`unbind_from_irqhandler()`); this sleeps, so drop it in process context.
///
/// # Examples
///
/// ```
/// use kernel::{
///     prelude::*,
///     sync::atomic::{Atomic, Relaxed},
///     xen::evtchn::{Eoi, Handler},
/// };
///
/// struct Queue {
///     events: Atomic<u64>,
/// }
///
/// impl Handler for Queue {
///     fn handle(&self) -> Eoi {
///         self.events.add(1u64, Relaxed);
///         // Look at the ring; say whether there was something to do.
///         Eoi::Spurious
///     }
/// }
/// ```
///
/// # Invariants
///
/// Once initialised, `irq` is an interrupt bound to an event channel with late EOI, whose handler
/// was requested with `self` as cookie and `name` as name; `dev` is the xenbus device the binding
/// accounts events to, if any.
#[pin_data(PinnedDrop)]
pub struct Registration<T: Handler> {
    irq: Atomic<u32>,
    name: CString,
    dev: Option<ARef<xenbus::Device>>,
    #[pin]
    handler: T,
    #[pin]
    _pin: PhantomPinned,
}

impl<T: Handler + 'static> Registration<T> {
    /// Binds the unbound `port` to `handler` (`bind_evtchn_to_irqhandler_lateeoi()`, frontends).
    ///
    /// `name` appears in `/proc/interrupts`. Once bound, the port is owned by the registration
    /// and closed when it is dropped. If binding fails, the port is not closed here: the C code
    /// may already have closed it, and closing it again could close a port allocated meanwhile
    /// for something else. (If `handler` fails to initialise, the port is closed.)
    pub fn bind(
        port: UnboundPort,
        name: CString,
        handler: impl PinInit<T, Error>,
    ) -> impl PinInit<Self, Error> {
        let name_ptr = name.as_char_ptr();
        try_pin_init!(&this in Self {
            irq: Atomic::new(0),
            name,
            dev: None,
            handler <- handler,
            _pin: PhantomPinned,
            _: {
                let port = port.into_raw();
                // SAFETY: `port` is an unbound port we own; `this` is the cookie of `Self`, whose
                // fields are all initialised, and which stays pinned until `PinnedDrop::drop`
                // unbinds it; `name_ptr` points into `name`, which lives as long.
                let irq = unsafe {
                    bindings::bind_evtchn_to_irqhandler_lateeoi(
                        port,
                        Some(handle_callback::<T>),
                        0,
                        name_ptr,
                        this.as_ptr().cast(),
                    )
                };
                let irq = u32::try_from(irq).map_err(|_| Error::from_errno(irq))?;
                // SAFETY: `this` points to the pinned, initialised `Self`.
                unsafe { (*this.as_ptr()).irq.store(irq, Relaxed) };
            },
        })
    }
}

#[cfg(CONFIG_XEN_BACKEND)]
impl<T: Handler + 'static> Registration<T> {
    /// Binds a new port to port `remote` of the other end of `dev`, and the new port to
    /// `handler` (`bind_interdomain_evtchn_to_irqhandler_lateeoi()`, backends).
    ///
    /// `remote` comes from the other end (through xenstore): binding fails if it is not an
    /// unbound port the other end allocated for this domain. Events and spurious events are
    /// accounted to `dev` (`/sys/bus/xen-backend/devices/*/xenbus/`).
    pub fn bind_interdomain(
        dev: &xenbus::Device<device::Core<'_>>,
        remote: Port,
        name: CString,
        handler: impl PinInit<T, Error>,
    ) -> impl PinInit<Self, Error> {
        let name_ptr = name.as_char_ptr();
        let xdev = dev.as_raw();
        let dev: ARef<xenbus::Device> = dev.into();
        try_pin_init!(&this in Self {
            irq: Atomic::new(0),
            name,
            dev: Some(dev),
            handler <- handler,
            _pin: PhantomPinned,
            _: {
                // SAFETY: `xdev` is kept alive by `dev` while bound; `this` (the cookie) is fully
                // initialised and pinned until `PinnedDrop::drop` unbinds it; `name_ptr` points
                // into `name`, which lives as long.
                let irq = unsafe {
                    bindings::bind_interdomain_evtchn_to_irqhandler_lateeoi(
                        xdev,
                        remote.0,
                        Some(handle_callback::<T>),
                        0,
                        name_ptr,
                        this.as_ptr().cast(),
                    )
                };
                let irq = u32::try_from(irq).map_err(|_| Error::from_errno(irq))?;
                // SAFETY: `this` points to the pinned, initialised `Self`.
                unsafe { (*this.as_ptr()).irq.store(irq, Relaxed) };
            },
        })
    }
}

/// A handle that notifies the other end through the event channel of a [`Registration`].
///
/// Lets code that cannot hold the registration itself (such as the data the registration's own
/// handler refers to) send notifications. Notifying after the registration was dropped does
/// nothing harmful: `notify_remote_via_irq()` ignores an interrupt that is not bound to an event
/// channel, and may at worst send a spurious event on a later binding of the same interrupt;
/// drop notifiers together with the registration.
#[derive(Clone, Copy, Debug)]
pub struct Notifier {
    irq: u32,
}

impl Notifier {
    /// Notifies the other end (`notify_remote_via_irq()`). May be called from any context.
    pub fn notify(&self) {
        // SAFETY: `notify_remote_via_irq()` looks the event channel of `irq` up and does nothing
        // if there is none; it may be called with any interrupt number, in any context.
        unsafe { bindings::notify_remote_via_irq(self.irq as c_int) };
    }

    /// Signals the end of the work of an event for which the handler returned
    /// [`Eoi::Deferred`] (`xen_irq_lateeoi()`), from the code the work was handed to (a NAPI
    /// poll, a worker); see [`Registration::lateeoi`]. May be called from any context.
    ///
    /// Like [`Notifier::notify`], harmless after the registration was dropped.
    pub fn lateeoi(&self, spurious: bool) {
        eoi(self.irq, if spurious { Eoi::Spurious } else { Eoi::Done });
    }
}

impl<T: Handler> Registration<T> {
    /// Returns the handler.
    pub fn handler(&self) -> &T {
        &self.handler
    }

    /// Returns the interrupt number.
    pub fn irq(&self) -> u32 {
        self.irq.load(Relaxed)
    }

    /// Returns the name of the interrupt.
    pub fn name(&self) -> &CStr {
        &self.name
    }

    /// Notifies the other end (`notify_remote_via_irq()`).
    ///
    /// May be called from any context. Does nothing if the event channel is closed (after a
    /// suspend).
    pub fn notify(&self) {
        // SAFETY: By the type invariants, `irq` is bound to an event channel.
        unsafe { bindings::notify_remote_via_irq(self.irq() as c_int) };
    }

    /// Signals the end of the work of an event for which the handler returned
    /// [`Eoi::Deferred`] (`xen_irq_lateeoi()`): unmasks the event channel.
    ///
    /// `spurious` says that the event found no work. May be called from any context; calling it
    /// when the event channel is not masked for a late EOI does nothing.
    pub fn lateeoi(&self, spurious: bool) {
        eoi(self.irq(), if spurious { Eoi::Spurious } else { Eoi::Done });
    }

    /// Returns a [`Notifier`] for this event channel.
    pub fn notifier(&self) -> Notifier {
        Notifier { irq: self.irq() }
    }

    /// Waits for a running handler to return (`synchronize_irq()`).
    pub fn synchronize(&self) {
        // SAFETY: By the type invariants, `irq` is a requested interrupt.
        unsafe { bindings::synchronize_irq(self.irq()) };
    }
}

#[pinned_drop]
impl<T: Handler> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        let irq = self.irq();
        // SAFETY: `irq` was bound with `self` as cookie (type invariant); unbinding waits for a
        // running handler and closes the channel, so no reference to `self` remains after it;
        // `dev`, dropped later, outlives the binding.
        unsafe {
            bindings::unbind_from_irqhandler(
                irq,
                core::ptr::from_ref::<Self>(&*self).cast_mut().cast(),
            )
        };
    }
}

// SAFETY: The registration may be dropped (unbound) from any thread; the handler is `Send`.
unsafe impl<T: Handler> Send for Registration<T> {}

// SAFETY: `&Registration` gives access to `&T` (`T: Sync`), and to functions that may be called
// from any context.
unsafe impl<T: Handler> Sync for Registration<T> {}

/// Returns the flags of the late EOI `what` asks for, if any.
fn eoi_flags(what: Eoi) -> Option<c_uint> {
    match what {
        Eoi::Done => Some(0),
        Eoi::Spurious => Some(bindings::XEN_EOI_FLAG_SPURIOUS),
        Eoi::Deferred => None,
    }
}

/// Signals a late EOI on `irq` as `what` says.
fn eoi(irq: u32, what: Eoi) {
    if let Some(flags) = eoi_flags(what) {
        // SAFETY: `xen_irq_lateeoi()` ignores interrupts that are not bound to an event channel.
        unsafe { bindings::xen_irq_lateeoi(irq, flags) };
    }
}

/// # Safety
///
/// Only for use as the handler of an interrupt requested with a pointer to a `Registration<T>`
/// as cookie.
unsafe extern "C" fn handle_callback<T: Handler>(
    irq: c_int,
    ptr: *mut c_void,
) -> bindings::irqreturn_t {
    // SAFETY: `ptr` is the cookie given at binding time: a pinned, initialised
    // `Registration<T>`, valid until the interrupt is freed, which waits for this handler.
    let registration = unsafe { &*ptr.cast_const().cast::<Registration<T>>() };
    let irq = irq as u32;
    // The binding function may not have returned yet: make the number visible to code this
    // handler defers work to, which may call `lateeoi()`.
    registration.irq.store(irq, Relaxed);
    eoi(irq, registration.handler.handle());
    // Xen event channels are never shared: an event is always for this handler.
    bindings::irqreturn::IRQ_HANDLED
}

#[cfg(CONFIG_RUST_XEN_KUNIT_TEST)]
#[macros::kunit_tests(rust_xen_evtchn)]
mod tests {
    use super::*;

    #[test]
    fn eoi_kinds() {
        assert_eq!(eoi_flags(Eoi::Done), Some(0));
        // The flag that makes the event channel code count the event as spurious and delay
        // the next EOI when this repeats.
        assert_eq!(eoi_flags(Eoi::Spurious), Some(1));
        assert_eq!(eoi_flags(Eoi::Deferred), None);
    }
}
