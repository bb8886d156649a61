// SPDX-License-Identifier: GPL-2.0

//! Xenbus drivers.
//!
//! Xenbus is the bus of Xen paravirtualised devices. Each device has two ends, in two domains: the
//! *frontend* (in the guest that uses the device) and the *backend* (in the domain that provides
//! it). Each end has a directory in xenstore, with a `state` node through which the two ends
//! negotiate the connection ([`State`]), and the keys the device protocol defines.
//!
//! A driver implements [`Driver`] and registers with [`module_xenbus_frontend_driver!`] or
//! [`module_xenbus_backend_driver!`]. The xenbus core probes it for every device whose type
//! (`vif`, `vbd`, …) is in its [`IdTable`], and calls [`Driver::otherend_changed`] whenever the
//! other end writes its `state` node.
//!
//! The other end is not trusted: the state it writes is parsed strictly (anything that is not a
//! state is [`State::Unknown`]), and what it writes into its other nodes should be read with the
//! range-checked functions of [`xenstore`].
//!
//! C headers: [`include/xen/xenbus.h`](srctree/include/xen/xenbus.h),
//! [`include/xen/interface/io/xenbus.h`](srctree/include/xen/interface/io/xenbus.h)
//!
//! # Examples
//!
//! A frontend driver for `vif` devices:
//!
//! ```
//! use kernel::{
//!     device::Core,
//!     prelude::*,
//!     xen::xenbus::{
//!         self,
//!         DeviceId,
//!         State, //
//!     },
//! };
//!
//! struct SampleDriver;
//!
//! kernel::xenbus_device_table!(
//!     SAMPLE_TABLE,
//!     (),
//!     [(DeviceId::new(c"vif"), ())]
//! );
//!
//! impl xenbus::Driver for SampleDriver {
//!     type IdInfo = ();
//!     type Data<'bound> = ();
//!     const ID_TABLE: xenbus::IdTable<Self::IdInfo> = &SAMPLE_TABLE;
//!
//!     fn probe<'bound>(
//!         dev: &'bound xenbus::Device<Core<'_>>,
//!         _info: &'bound Self::IdInfo,
//!     ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
//!         dev_info!(dev, "probing {:?}\n", dev.nodename());
//!         Ok(())
//!     }
//!
//!     fn otherend_changed<'bound>(
//!         dev: &'bound xenbus::Device<Core<'_>>,
//!         _this: Pin<&Self::Data<'bound>>,
//!         state: State,
//!     ) {
//!         match state {
//!             State::InitWait => {
//!                 if let Err(e) = dev.switch_state(State::Connected) {
//!                     dev.dev_fatal(e, fmt!("connecting to {:?}", dev.otherend()));
//!                 }
//!             }
//!             State::Closing => {
//!                 let _ = dev.switch_state(State::Closed);
//!             }
//!             _ => {}
//!         }
//!     }
//! }
//! ```
//!
//! With, at the top level of a driver module:
//!
//! ```ignore
//! kernel::module_xenbus_frontend_driver! {
//!     type: SampleDriver,
//!     name: "sample_xenbus_frontend",
//!     authors: ["Rust for Linux Contributors"],
//!     description: "Sample xenbus frontend",
//!     license: "GPL",
//!     alias: ["xen:vif"],
//! }
//! ```
//!
//! [`module_xenbus_frontend_driver!`]: crate::module_xenbus_frontend_driver
//! [`module_xenbus_backend_driver!`]: crate::module_xenbus_backend_driver

use crate::{
    bindings,
    device,
    device_id::{
        self,
        RawDeviceId, //
    },
    driver,
    error::{
        from_result,
        to_result, //
    },
    fmt,
    prelude::*,
    sync::aref::AlwaysRefCounted,
    types::Opaque,
    xen::{
        xenstore,
        DomId, //
    },
    ThisModule, //
};
use core::{
    marker::PhantomData,
    mem::offset_of,
    ptr::{
        addr_of_mut,
        NonNull, //
    },
};

/// A uevent action sent with [`Device::uevent`] (`enum kobject_action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Uevent {
    /// The device is ready for use (`KOBJ_ONLINE`): a backend's hotplug scripts set it up.
    Online = bindings::kobject_action_KOBJ_ONLINE,
    /// The device goes away (`KOBJ_OFFLINE`): the hotplug scripts tear it down.
    Offline = bindings::kobject_action_KOBJ_OFFLINE,
}

/// The state of one end of a xenbus device (`enum xenbus_state`), as in its `state` node.
///
/// # Examples
///
/// ```
/// use kernel::xen::xenbus::State;
///
/// // The `state` node of the other end, as read from xenstore.
/// assert_eq!(State::parse(b"4"), Ok(State::Connected));
/// assert_eq!(State::parse(b"9"), Err(EINVAL));
/// assert_eq!(State::parse(b"4x"), Err(EINVAL));
/// assert_eq!(State::try_from(6u32), Ok(State::Closed));
/// assert_eq!(State::try_from(0x8000_0004u32), Err(EINVAL));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum State {
    /// The state could not be read, or is not a state (`XenbusStateUnknown`).
    Unknown = bindings::xenbus_state::XenbusStateUnknown.0,
    /// The device is being set up (`XenbusStateInitialising`).
    Initialising = bindings::xenbus_state::XenbusStateInitialising.0,
    /// Early set-up is done; waiting for information from the other end or from hotplug
    /// scripts (`XenbusStateInitWait`).
    InitWait = bindings::xenbus_state::XenbusStateInitWait.0,
    /// Set up; waiting for the other end to connect (`XenbusStateInitialised`).
    Initialised = bindings::xenbus_state::XenbusStateInitialised.0,
    /// Connected (`XenbusStateConnected`).
    Connected = bindings::xenbus_state::XenbusStateConnected.0,
    /// Being closed, because of an error or an unplug (`XenbusStateClosing`).
    Closing = bindings::xenbus_state::XenbusStateClosing.0,
    /// Closed (`XenbusStateClosed`).
    Closed = bindings::xenbus_state::XenbusStateClosed.0,
    /// Being reconfigured (`XenbusStateReconfiguring`).
    Reconfiguring = bindings::xenbus_state::XenbusStateReconfiguring.0,
    /// Reconfigured (`XenbusStateReconfigured`).
    Reconfigured = bindings::xenbus_state::XenbusStateReconfigured.0,
}

impl State {
    /// Parses the value of a `state` node.
    ///
    /// Fails with [`EINVAL`] if the value is not the decimal number of a state.
    pub fn parse(value: &[u8]) -> Result<Self> {
        Self::try_from(xenstore::parse_uint::<u32>(value).map_err(|_| EINVAL)?)
    }

    /// Returns the name of the state, as `xenbus_strstate()` does.
    pub fn name(self) -> &'static CStr {
        match self {
            Self::Unknown => c"Unknown",
            Self::Initialising => c"Initialising",
            Self::InitWait => c"InitWait",
            Self::Initialised => c"Initialised",
            Self::Connected => c"Connected",
            Self::Closing => c"Closing",
            Self::Closed => c"Closed",
            Self::Reconfiguring => c"Reconfiguring",
            Self::Reconfigured => c"Reconfigured",
        }
    }

    /// Converts a state received from C, which the other end may have set to any number.
    ///
    /// A number that is not a state is [`State::Unknown`], as for a node that cannot be read.
    fn from_raw(state: bindings::xenbus_state) -> Self {
        Self::try_from(state.0).unwrap_or(Self::Unknown)
    }

    fn into_raw(self) -> bindings::xenbus_state {
        bindings::xenbus_state(self as u32)
    }
}

impl TryFrom<u32> for State {
    type Error = Error;

    fn try_from(value: u32) -> Result<Self> {
        Ok(match value {
            0 => Self::Unknown,
            1 => Self::Initialising,
            2 => Self::InitWait,
            3 => Self::Initialised,
            4 => Self::Connected,
            5 => Self::Closing,
            6 => Self::Closed,
            7 => Self::Reconfiguring,
            8 => Self::Reconfigured,
            _ => return Err(EINVAL),
        })
    }
}

impl From<State> for u32 {
    fn from(state: State) -> Self {
        state as u32
    }
}

impl core::fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().to_str().unwrap_or("Invalid"))
    }
}

/// The identifier of a type of xenbus device (`struct xenbus_device_id`), such as `vif`.
///
/// The device type is the name of the directory of the device in xenstore
/// (`device/<type>/<id>` for frontends, `backend/<type>/<domid>/<id>` for backends).
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct DeviceId(bindings::xenbus_device_id);

impl DeviceId {
    /// Maximum length of a device type, without its terminating NUL.
    pub const MAX_LEN: usize = 31;

    /// Creates a new device id for the device type `devicetype`.
    ///
    /// # Panics
    ///
    /// Panics (at build time when used in a constant, as in an [`IdTable`]) if `devicetype` is
    /// empty or longer than [`DeviceId::MAX_LEN`].
    pub const fn new(devicetype: &CStr) -> Self {
        let bytes = devicetype.to_bytes();
        assert!(!bytes.is_empty(), "empty xenbus device type");
        assert!(bytes.len() <= Self::MAX_LEN, "xenbus device type too long");

        let mut id: bindings::xenbus_device_id = pin_init::zeroed();
        let mut i = 0;
        while i < bytes.len() {
            id.devicetype[i] = bytes[i];
            i += 1;
        }
        Self(id)
    }

    /// Returns the device type, without its terminating NUL.
    pub fn devicetype(&self) -> &[u8] {
        let raw = &self.0.devicetype;
        let len = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        &raw[..len]
    }
}

// SAFETY: `DeviceId` is a `#[repr(transparent)]` wrapper of `struct xenbus_device_id` and does
// not add additional invariants, so it's safe to transmute to `RawType`.
unsafe impl RawDeviceId for DeviceId {
    type RawType = bindings::xenbus_device_id;
}

/// A table of the device types a driver handles, with the information the driver wants for each
/// ([`Driver::IdInfo`]).
///
/// `struct xenbus_device_id` has no `driver_data` field: the information is kept next to the
/// zero-terminated array the C code matches against, and found by the position of the matching
/// entry. Create tables with [`xenbus_device_table!`](crate::xenbus_device_table).
///
/// # Invariants
///
/// `ids` holds exactly `N` ids followed by a zeroed sentinel, and `info[i]` belongs to `ids[i]`.
#[repr(C)]
pub struct IdArray<U: 'static, const N: usize> {
    ids: device_id::IdArray<DeviceId, (), N>,
    info: [&'static U; N],
}

impl<U: 'static, const N: usize> IdArray<U, N> {
    /// Creates a table from device ids and their information.
    pub const fn new(ids: [DeviceId; N], info: [&'static U; N]) -> Self {
        Self {
            ids: device_id::IdArray::new_without_index(ids),
            info,
        }
    }
}

mod private {
    pub trait Sealed {}
}

impl<U: 'static, const N: usize> private::Sealed for IdArray<U, N> {}

/// The interface of [`IdArray`] that does not depend on the number of entries.
///
/// This trait is sealed: [`IdArray`] is its only implementation, so the C code can rely on
/// [`IdTableOps::as_ptr`].
pub trait IdTableOps<U: 'static>: Sync + private::Sealed {
    /// Returns the zero-terminated array of `struct xenbus_device_id` for the C code.
    fn as_ptr(&self) -> *const bindings::xenbus_device_id;

    /// Returns the number of entries.
    fn len(&self) -> usize;

    /// Returns whether the table has no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the information of entry `index`, if it exists.
    fn info(&self, index: usize) -> Option<&'static U>;

    /// Returns the device id of entry `index`, if it exists.
    fn id(&self, index: usize) -> Option<&DeviceId> {
        if index >= self.len() {
            return None;
        }
        // SAFETY: `as_ptr()` points to an array of at least `len()` ids, `index < len()`, and
        // `DeviceId` is a transparent wrapper of `struct xenbus_device_id`.
        Some(unsafe { &*self.as_ptr().add(index).cast::<DeviceId>() })
    }

    /// Returns the index of the entry for device type `devicetype`, as the xenbus core matches
    /// devices against drivers (`match_device()`): the first entry with exactly that type.
    fn find(&self, devicetype: &[u8]) -> Option<usize> {
        (0..self.len()).find(|&i| self.id(i).is_some_and(|id| id.devicetype() == devicetype))
    }

    /// Returns the index of the entry `id` points to, if it points to one of this table.
    fn index_of(&self, id: *const bindings::xenbus_device_id) -> Option<usize> {
        let size = core::mem::size_of::<bindings::xenbus_device_id>();
        let offset = (id as usize).checked_sub(self.as_ptr() as usize)?;
        if offset % size != 0 || offset / size >= self.len() {
            return None;
        }
        Some(offset / size)
    }
}

impl<U: 'static + Sync, const N: usize> IdTableOps<U> for IdArray<U, N> {
    fn as_ptr(&self) -> *const bindings::xenbus_device_id {
        device_id::IdTable::as_ptr(&self.ids)
    }

    fn len(&self) -> usize {
        N
    }

    fn info(&self, index: usize) -> Option<&'static U> {
        self.info.get(index).copied()
    }
}

/// The table of device types of a xenbus driver.
pub type IdTable<T> = &'static dyn IdTableOps<T>;

/// Creates a xenbus device table ([`IdArray`]).
///
/// Xenbus has no module device table support in `modpost`: give the module its aliases
/// (`xen:<type>` for frontends, `xen-backend:<type>` for backends) with `alias:` in
/// [`module!`](crate::prelude::module).
///
/// # Examples
///
/// ```
/// use kernel::xen::xenbus::{
///     DeviceId,
///     IdTableOps, //
/// };
///
/// kernel::xenbus_device_table!(
///     TABLE,
///     u32,
///     [(DeviceId::new(c"vif"), 1), (DeviceId::new(c"vbd"), 2)]
/// );
///
/// assert_eq!(TABLE.find(b"vbd"), Some(1));
/// assert_eq!(TABLE.info(1), Some(&2));
/// assert_eq!(TABLE.find(b"vscsi"), None);
/// ```
#[macro_export]
macro_rules! xenbus_device_table {
    ($table_name:ident, $id_info_type:ty, [$(($id:expr, $info:expr $(,)?)),* $(,)?]) => {
        static $table_name: $crate::xen::xenbus::IdArray<
            $id_info_type,
            { <[$crate::xen::xenbus::DeviceId]>::len(&[$($id,)*]) },
        > = $crate::xen::xenbus::IdArray::new([$($id,)*], [$(&$info,)*]);
    };
}

/// The xenbus driver trait.
///
/// Drivers must implement this trait in order to get a xenbus driver registered, as a frontend
/// with [`module_xenbus_frontend_driver!`] or a backend with [`module_xenbus_backend_driver!`].
///
/// The driver is named after the first device type of its table (as C xenbus drivers are), so a
/// Rust and a C driver for the same device type cannot be registered at the same time.
///
/// [`module_xenbus_frontend_driver!`]: crate::module_xenbus_frontend_driver
/// [`module_xenbus_backend_driver!`]: crate::module_xenbus_backend_driver
pub trait Driver {
    /// The type holding information about each device type supported by the driver.
    type IdInfo: 'static + Sync;

    /// The type of the driver's bus device private data.
    type Data<'bound>: Send + 'bound;

    /// The table of device types supported by the driver.
    const ID_TABLE: IdTable<Self::IdInfo>;

    /// Whether the driver may be unbound and bound again without closing the device
    /// (`allow_rebind`).
    ///
    /// Backends that can be restarted while their frontends stay connected set this. Otherwise
    /// the xenbus core switches the device to [`State::Closed`] when the driver is unbound.
    const ALLOW_REBIND: bool = false;

    /// Whether the boot may go on without waiting for this driver's devices to connect
    /// (`not_essential`, frontends only).
    const NOT_ESSENTIAL: bool = false;

    /// Xenbus driver probe.
    ///
    /// Called when a device of a type in [`Driver::ID_TABLE`] appears. The other end's details
    /// ([`Device::otherend`], [`Device::otherend_id`]) have been read; its state is watched only
    /// once `probe` has succeeded.
    fn probe<'bound>(
        dev: &'bound Device<device::Core<'_>>,
        id_info: &'bound Self::IdInfo,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound;

    /// Called when the other end changed its `state` node.
    ///
    /// `state` is the state the other end wrote; a value that is not a state, or a node that
    /// cannot be read, is [`State::Unknown`]. Several changes may be reported as one, and the
    /// same state may be reported more than once.
    ///
    /// Runs in the xenwatch thread, in process context. It is not called under the device lock,
    /// but the xenbus core never calls it concurrently with [`Driver::probe`], [`Driver::unbind`]
    /// or [`Driver::resume`], nor with any other watch callback.
    fn otherend_changed<'bound>(
        dev: &'bound Device<device::Core<'_>>,
        this: Pin<&Self::Data<'bound>>,
        state: State,
    );

    /// Whether the device is to be unregistered once [`Driver::otherend_changed`] has handled
    /// `state`. Implementing this callback is optional (default: never).
    ///
    /// C backends unregister their device themselves from `otherend_changed` when the frontend is
    /// closed and the toolstack has set the device offline (netback, blkback:
    /// `device_unregister()`), so that the device, and what the driver made for it (a network
    /// device), is gone before the toolstack removes the device's xenstore directory; otherwise
    /// the xenbus core removes it later, when it sees the directory go ("device forcefully
    /// removed from xenstore"). Here the xenbus abstraction unregisters the device after
    /// `otherend_changed` returned, when this returns `true`; neither `dev` nor `this` may be used
    /// after that, which the callback structure guarantees.
    fn unregister_after<'bound>(
        dev: &'bound Device<device::Core<'_>>,
        this: Pin<&Self::Data<'bound>>,
        state: State,
    ) -> bool {
        let _ = (dev, this, state);
        false
    }

    /// Xenbus driver unbind.
    ///
    /// Called when a [`Device`] is unbound from its bound [`Driver`]. The other end's state is no
    /// longer watched at this point. Implementing this callback is optional.
    ///
    /// Release operations for driver resources should otherwise be performed in `Drop`.
    fn unbind<'bound>(dev: &'bound Device<device::Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        let _ = (dev, this);
    }

    /// Called before the domain is suspended (saved or migrated). Implementing this callback is
    /// optional. Errors are only logged by the xenbus core.
    fn suspend<'bound>(
        dev: &'bound Device<device::Core<'_>>,
        this: Pin<&Self::Data<'bound>>,
    ) -> Result {
        let _ = (dev, this);
        Ok(())
    }

    /// Called after the domain was resumed, possibly on another host with another backend.
    ///
    /// The other end's details have been read again and the device is back in
    /// [`State::Initialising`]: the driver must disconnect from the old other end (its grants,
    /// event channels and mappings are gone) and connect again as after probe. Implementing this
    /// callback is optional.
    fn resume<'bound>(
        dev: &'bound Device<device::Core<'_>>,
        this: Pin<&Self::Data<'bound>>,
    ) -> Result {
        let _ = (dev, this);
        Ok(())
    }
}

/// The callbacks shared by [`FrontendAdapter`] and [`BackendAdapter`].
struct Callbacks<T: Driver>(PhantomData<T>);

impl<T: Driver + 'static> Callbacks<T> {
    /// Fills in the fields of a `struct xenbus_driver` before registration.
    ///
    /// # Safety
    ///
    /// `xdrv` must be valid for writes and not registered.
    unsafe fn fill(xdrv: *mut bindings::xenbus_driver) {
        // SAFETY: By the safety requirements, `xdrv` is valid for writes.
        unsafe {
            // A NULL name makes the xenbus core name the driver after its first device type.
            (*xdrv).name = core::ptr::null();
            (*xdrv).ids = T::ID_TABLE.as_ptr();
            (*xdrv).allow_rebind = T::ALLOW_REBIND;
            (*xdrv).not_essential = T::NOT_ESSENTIAL;
            (*xdrv).probe = Some(Self::probe_callback);
            (*xdrv).otherend_changed = Some(Self::otherend_changed_callback);
            (*xdrv).remove = Some(Self::remove_callback);
            (*xdrv).suspend = Some(Self::suspend_callback);
            (*xdrv).resume = Some(Self::resume_callback);
        }
    }

    extern "C" fn probe_callback(
        xdev: *mut bindings::xenbus_device,
        id: *const bindings::xenbus_device_id,
    ) -> c_int {
        // INVARIANT: `xdev` is valid for the duration of `probe_callback()`.
        //
        // SAFETY: The xenbus core only ever calls the probe callback with a valid pointer to a
        // `struct xenbus_device`, with the device lock held.
        let dev = unsafe { &*xdev.cast::<Device<device::CoreInternal<'_>>>() };

        from_result(|| {
            // `id` is the entry of `T::ID_TABLE` that matched the device.
            let index = T::ID_TABLE.index_of(id).ok_or(ENODEV)?;
            let info = T::ID_TABLE.info(index).ok_or(ENODEV)?;
            let data = T::probe(dev, info);

            dev.as_ref().set_drvdata(data)?;
            Ok(0)
        })
    }

    extern "C" fn otherend_changed_callback(
        xdev: *mut bindings::xenbus_device,
        state: bindings::xenbus_state,
    ) {
        let unregister = {
            // INVARIANT: `xdev` is valid for the duration of `otherend_changed_callback()`, until
            // the device is unregistered below (after `dev` went out of scope).
            //
            // SAFETY: The xenbus core calls this, in the xenwatch thread (a core context), only
            // with a valid `struct xenbus_device` bound to this driver: its watch exists from probe
            // to remove and is re-registered around resume.
            let dev = unsafe { &*xdev.cast::<Device<device::CoreInternal<'_>>>() };

            // SAFETY: The device is bound (see above), hence `probe_callback` stored a
            // `Pin<KBox<T::Data<'_>>>` with `Device::set_drvdata()`.
            let data = unsafe { dev.as_ref().drvdata_borrow::<T::Data<'_>>() };

            let state = State::from_raw(state);
            T::otherend_changed(dev, data, state);
            T::unregister_after(dev, data, state)
        };
        if unregister {
            // SAFETY: `xdev` is valid and registered; nothing derived from it is left or used after
            // this call (which may free it). C backends unregister from `otherend_changed` in
            // xenwatch too.
            unsafe { bindings::device_unregister(&raw mut (*xdev).dev) };
        }
    }

    extern "C" fn remove_callback(xdev: *mut bindings::xenbus_device) {
        // INVARIANT: `xdev` is valid for the duration of `remove_callback()`.
        //
        // SAFETY: The xenbus core only ever calls the remove callback with a valid pointer to a
        // `struct xenbus_device`.
        let dev = unsafe { &*xdev.cast::<Device<device::CoreInternal<'_>>>() };

        // SAFETY: `remove_callback` is only ever called after a successful call to
        // `probe_callback`, hence it's guaranteed that `Device::set_drvdata()` has been called
        // and stored a `Pin<KBox<T::Data<'_>>>`.
        let data = unsafe { dev.as_ref().drvdata_borrow::<T::Data<'_>>() };

        T::unbind(dev, data);
    }

    extern "C" fn suspend_callback(xdev: *mut bindings::xenbus_device) -> c_int {
        // INVARIANT: `xdev` is valid for the duration of `suspend_callback()`.
        //
        // SAFETY: The xenbus core only calls this callback with a valid pointer to a
        // `struct xenbus_device` bound to this driver, from the PM callbacks of the device.
        let dev = unsafe { &*xdev.cast::<Device<device::CoreInternal<'_>>>() };

        // SAFETY: The device is bound to this driver, hence `probe_callback` stored a
        // `Pin<KBox<T::Data<'_>>>` with `Device::set_drvdata()`.
        let data = unsafe { dev.as_ref().drvdata_borrow::<T::Data<'_>>() };

        from_result(|| T::suspend(dev, data).map(|()| 0))
    }

    extern "C" fn resume_callback(xdev: *mut bindings::xenbus_device) -> c_int {
        // INVARIANT: `xdev` is valid for the duration of `resume_callback()`.
        //
        // SAFETY: The xenbus core only calls this callback with a valid pointer to a
        // `struct xenbus_device` bound to this driver, after reading the other end's details
        // again and before watching its state again.
        let dev = unsafe { &*xdev.cast::<Device<device::CoreInternal<'_>>>() };

        // SAFETY: The device is bound to this driver, hence `probe_callback` stored a
        // `Pin<KBox<T::Data<'_>>>` with `Device::set_drvdata()`.
        let data = unsafe { dev.as_ref().drvdata_borrow::<T::Data<'_>>() };

        from_result(|| T::resume(dev, data).map(|()| 0))
    }
}

/// An adapter for the registration of xenbus frontend drivers.
pub struct FrontendAdapter<T: Driver>(T);

// SAFETY:
// - `bindings::xenbus_driver` is a C type declared as `repr(C)`.
// - `T::Data` is the type of the driver's device private data.
// - `struct xenbus_driver` embeds a `struct device_driver`.
// - `DEVICE_DRIVER_OFFSET` is the correct byte offset to the embedded `struct device_driver`.
unsafe impl<T: Driver> driver::DriverLayout for FrontendAdapter<T> {
    type DriverType = bindings::xenbus_driver;
    type DriverData<'bound> = T::Data<'bound>;
    const DEVICE_DRIVER_OFFSET: usize = offset_of!(Self::DriverType, driver);
}

// SAFETY: A call to `unregister` for a given instance of `DriverType` is guaranteed to be valid if
// a preceding call to `register` has been successful.
unsafe impl<T: Driver + 'static> driver::RegistrationOps for FrontendAdapter<T> {
    unsafe fn register(
        xdrv: &Opaque<Self::DriverType>,
        name: &'static CStr,
        module: &'static ThisModule,
    ) -> Result {
        // Outside Xen there is no xenbus to register with; refuse like the C frontends do.
        if !super::xen_domain() {
            return Err(ENODEV);
        }

        // SAFETY: `xdrv` is valid and not registered yet.
        unsafe { Callbacks::<T>::fill(xdrv.get()) };

        // SAFETY: `xdrv` is guaranteed to be a valid `DriverType` that stays pinned until
        // `unregister`.
        to_result(unsafe {
            bindings::__xenbus_register_frontend(xdrv.get(), module.as_ptr(), name.as_char_ptr())
        })
    }

    unsafe fn unregister(xdrv: &Opaque<Self::DriverType>) {
        // SAFETY: `xdrv` is guaranteed to be a valid, registered `DriverType`.
        unsafe { bindings::xenbus_unregister_driver(xdrv.get()) }
    }
}

/// An adapter for the registration of xenbus backend drivers.
#[cfg(CONFIG_XEN_BACKEND)]
pub struct BackendAdapter<T: Driver>(T);

// SAFETY:
// - `bindings::xenbus_driver` is a C type declared as `repr(C)`.
// - `T::Data` is the type of the driver's device private data.
// - `struct xenbus_driver` embeds a `struct device_driver`.
// - `DEVICE_DRIVER_OFFSET` is the correct byte offset to the embedded `struct device_driver`.
#[cfg(CONFIG_XEN_BACKEND)]
unsafe impl<T: Driver> driver::DriverLayout for BackendAdapter<T> {
    type DriverType = bindings::xenbus_driver;
    type DriverData<'bound> = T::Data<'bound>;
    const DEVICE_DRIVER_OFFSET: usize = offset_of!(Self::DriverType, driver);
}

// SAFETY: A call to `unregister` for a given instance of `DriverType` is guaranteed to be valid if
// a preceding call to `register` has been successful.
#[cfg(CONFIG_XEN_BACKEND)]
unsafe impl<T: Driver + 'static> driver::RegistrationOps for BackendAdapter<T> {
    unsafe fn register(
        xdrv: &Opaque<Self::DriverType>,
        name: &'static CStr,
        module: &'static ThisModule,
    ) -> Result {
        // SAFETY: `xdrv` is valid and not registered yet.
        unsafe { Callbacks::<T>::fill(xdrv.get()) };

        // SAFETY: `xdrv` is guaranteed to be a valid `DriverType` that stays pinned until
        // `unregister`.
        to_result(unsafe {
            bindings::__xenbus_register_backend(xdrv.get(), module.as_ptr(), name.as_char_ptr())
        })
    }

    unsafe fn unregister(xdrv: &Opaque<Self::DriverType>) {
        // SAFETY: `xdrv` is guaranteed to be a valid, registered `DriverType`.
        unsafe { bindings::xenbus_unregister_driver(xdrv.get()) }
    }
}

/// Declares a kernel module that exposes a single xenbus frontend driver.
///
/// The module should have the alias `xen:<device type>` for each device type it handles.
///
/// # Examples
///
/// ```ignore
/// kernel::module_xenbus_frontend_driver! {
///     type: MyDriver,
///     name: "xen_netfront_rs",
///     authors: ["Rust for Linux Contributors"],
///     description: "Xen virtual network device frontend",
///     license: "GPL",
///     alias: ["xen:vif"],
/// }
/// ```
#[macro_export]
macro_rules! module_xenbus_frontend_driver {
    ($($f:tt)*) => {
        $crate::module_driver!(<T>, $crate::xen::xenbus::FrontendAdapter<T>, { $($f)* });
    };
}

/// Declares a kernel module that exposes a single xenbus backend driver.
///
/// The module should have the alias `xen-backend:<device type>` for each device type it handles.
///
/// # Examples
///
/// ```ignore
/// kernel::module_xenbus_backend_driver! {
///     type: MyDriver,
///     name: "xen_netback_rs",
///     authors: ["Rust for Linux Contributors"],
///     description: "Xen network device backend",
///     license: "GPL",
///     alias: ["xen-backend:vif"],
/// }
/// ```
#[cfg(CONFIG_XEN_BACKEND)]
#[macro_export]
macro_rules! module_xenbus_backend_driver {
    ($($f:tt)*) => {
        $crate::module_driver!(<T>, $crate::xen::xenbus::BackendAdapter<T>, { $($f)* });
    };
}

/// A xenbus device (`struct xenbus_device`).
///
/// This structure represents the Rust abstraction for a C `struct xenbus_device`. The
/// implementation abstracts the usage of an already existing C `struct xenbus_device` within
/// Rust code that we get passed from the C side.
///
/// Methods that use the other end's details ([`Device::otherend`], [`Device::otherend_id`] and
/// what is built on them: event channels, ring grants and mappings) are only available in the
/// callbacks of [`Driver`] (`Device<Core>`): the xenbus core replaces those details on resume.
/// A driver that needs them elsewhere keeps a copy, which it renews in [`Driver::resume`].
///
/// # Invariants
///
/// A [`Device`] instance represents a valid `struct xenbus_device` created by the C portion of the
/// kernel.
#[repr(transparent)]
pub struct Device<Ctx: device::DeviceContext = device::Normal>(
    Opaque<bindings::xenbus_device>,
    PhantomData<Ctx>,
);

impl<Ctx: device::DeviceContext> Device<Ctx> {
    pub(crate) fn as_raw(&self) -> *mut bindings::xenbus_device {
        self.0.get()
    }

    /// Returns the xenstore path of this end of the device, such as `device/vif/0` (frontend) or
    /// `backend/vif/1/0` (backend).
    pub fn nodename(&self) -> &CStr {
        // SAFETY: By the type invariant `self.as_raw()` is a valid `struct xenbus_device`, whose
        // `nodename` is a NUL-terminated string set at creation and freed with the device.
        unsafe { CStr::from_char_ptr((*self.as_raw()).nodename) }
    }

    /// Returns the type of the device, such as `vif`.
    pub fn devicetype(&self) -> &CStr {
        // SAFETY: By the type invariant `self.as_raw()` is a valid `struct xenbus_device`, whose
        // `devicetype` is a NUL-terminated string set at creation and freed with the device.
        unsafe { CStr::from_char_ptr((*self.as_raw()).devicetype) }
    }
}

impl<'a> Device<device::Core<'a>> {
    /// Returns the xenstore path of the other end of the device.
    ///
    /// The other end may write anything into the nodes under it.
    pub fn otherend(&self) -> &CStr {
        // SAFETY: By the type invariant `self.as_raw()` is a valid `struct xenbus_device`; in a
        // core context the xenbus core does not write `otherend` concurrently (see below).
        let otherend = unsafe { (*self.as_raw()).otherend };
        if otherend.is_null() {
            // Not expected in a core context; an empty path reads nothing.
            return c"";
        }
        // SAFETY: In a bound driver's callbacks a non-NULL `otherend` is a valid C string; the core
        // frees or replaces it only after remove or before resume, with its watch unregistered.
        unsafe { CStr::from_char_ptr(otherend) }
    }

    /// Returns the domain of the other end of the device.
    ///
    /// An id that is not a domain id (which the toolstack should never write) is
    /// [`DomId::INVALID`].
    pub fn otherend_id(&self) -> DomId {
        // SAFETY: By the type invariant `self.as_raw()` is a valid `struct xenbus_device`; the
        // xenbus core only writes `otherend_id` before probe and resume (see `otherend()`).
        let id = unsafe { (*self.as_raw()).otherend_id };
        u16::try_from(id).map(DomId).unwrap_or(DomId::INVALID)
    }

    /// Reads the state of the other end from its `state` node (`xenbus_read_driver_state()`).
    ///
    /// A missing node, or a value that is not a state, is [`State::Unknown`].
    pub fn read_otherend_state(&self) -> State {
        let value = match xenstore::read(self.otherend(), c"state") {
            Ok(value) => value,
            Err(_) => return State::Unknown,
        };
        State::parse(value.as_bytes()).unwrap_or(State::Unknown)
    }
}

impl<Ctx: device::DeviceContext> Device<Ctx> {
    /// Returns the state of this end, as last switched to (`dev->state`).
    pub fn state(&self) -> State {
        // SAFETY: By the type invariant `self.as_raw()` is a valid `struct xenbus_device`. The
        // state is an integer the xenbus core updates in `xenbus_switch_state()`; it is read once.
        let state = unsafe { core::ptr::read_volatile(&raw const (*self.as_raw()).state) };
        State::from_raw(state)
    }

    /// Switches this end to `state`, by writing it into its `state` node
    /// (`xenbus_switch_state()`).
    ///
    /// Available in any device context: a backend switches to [`State::Connected`] from a
    /// xenstore watch (for example once the toolstack's hotplug script reported success), which
    /// does not run in a driver callback. Only xenstore and `dev->state` are touched, so this is
    /// sound for any valid device; drivers call it only while they own the device, i.e. from
    /// state they drop in their unbind path.
    ///
    /// Does nothing if this end is already in `state`, or if the device's directory vanished. If
    /// the state cannot be written, the xenbus core reports the error in xenstore and tries to
    /// switch to [`State::Closing`]: the error is not returned.
    pub fn switch_state(&self, state: State) -> Result {
        // SAFETY: By the type invariant `self.as_raw()` is a valid `struct xenbus_device`.
        to_result(unsafe { bindings::xenbus_switch_state(self.as_raw(), state.into_raw()) })
    }
}

impl Device<device::Bound> {
    /// Reports an error: logs it and writes it into the device's `error` node in xenstore, where
    /// the toolstack can see it (`xenbus_dev_error()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{prelude::*, xen::xenbus};
    ///
    /// fn report(dev: &xenbus::Device<kernel::device::Bound>, queue: u32) {
    ///     dev.dev_error(ENOMEM, fmt!("allocating queue {queue}"));
    /// }
    /// ```
    pub fn dev_error(&self, err: Error, args: fmt::Arguments<'_>) {
        // SAFETY: By the type invariant `self.as_raw()` is a valid `struct xenbus_device`. The
        // format string is NUL-terminated, and "%pA" takes a pointer to `fmt::Arguments`.
        unsafe {
            bindings::xenbus_dev_error(
                self.as_raw(),
                err.to_errno(),
                c"%pA".as_char_ptr(),
                core::ptr::from_ref(&args).cast::<c_void>(),
            )
        }
    }

    /// Reports a fatal error like [`Device::dev_error`], then switches this end to
    /// [`State::Closing`] (`xenbus_dev_fatal()`).
    pub fn dev_fatal(&self, err: Error, args: fmt::Arguments<'_>) {
        // SAFETY: As in `dev_error()`.
        unsafe {
            bindings::xenbus_dev_fatal(
                self.as_raw(),
                err.to_errno(),
                c"%pA".as_char_ptr(),
                core::ptr::from_ref(&args).cast::<c_void>(),
            )
        }
    }

    /// Returns whether the toolstack wants the device online: the `online` node of this end is a
    /// non-zero number (`xenbus_dev_is_online()`, backends).
    pub fn is_online(&self) -> bool {
        matches!(
            xenstore::read_bool_or(self.nodename(), c"online", false),
            Ok(true)
        )
    }

    /// Sends a uevent for this device with `vars` (`NAME=value` each) added to the bus's own
    /// variables (`kobject_uevent_env()`), e.g. for the toolstack's udev rules that run the
    /// hotplug scripts of a backend.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{prelude::*, xen::xenbus};
    ///
    /// fn online(dev: &xenbus::Device<kernel::device::Bound>, vif: &CStr) -> Result {
    ///     dev.uevent(xenbus::Uevent::Online, &[c"script=/etc/xen/scripts/vif-bridge", vif])
    /// }
    /// ```
    pub fn uevent(&self, action: Uevent, vars: &[&CStr]) -> Result {
        let mut envp = KVec::with_capacity(vars.len() + 1, GFP_KERNEL)?;
        for v in vars {
            envp.push(v.as_char_ptr().cast_mut(), GFP_KERNEL)?;
        }
        envp.push(core::ptr::null_mut(), GFP_KERNEL)?;
        // SAFETY: By the type invariant `self.as_raw()` is a valid `struct xenbus_device`, whose
        // kobject is initialised while it is bound. `envp` is a NULL-terminated array of
        // NUL-terminated strings that outlive the call; `kobject_uevent_env()` only reads them.
        to_result(unsafe {
            bindings::kobject_uevent_env(
                &raw mut (*self.as_raw()).dev.kobj,
                action as bindings::kobject_action,
                envp.as_mut_ptr(),
            )
        })
    }

    /// Switches this end to [`State::Closed`] and signals the shutdown code, which waits for it
    /// (`xenbus_frontend_closed()`, for frontends whose backend closed).
    pub fn frontend_closed(&self) {
        // SAFETY: By the type invariant `self.as_raw()` is a valid `struct xenbus_device`.
        unsafe { bindings::xenbus_frontend_closed(self.as_raw()) };
    }
}

// SAFETY: `xenbus::Device` is a transparent wrapper of `struct xenbus_device`.
// The offset is guaranteed to point to a valid device field inside `xenbus::Device`.
unsafe impl<Ctx: device::DeviceContext> device::AsBusDevice<Ctx> for Device<Ctx> {
    const OFFSET: usize = offset_of!(bindings::xenbus_device, dev);
}

// SAFETY: `Device` is a transparent wrapper of a type that doesn't depend on `Device`'s generic
// argument.
kernel::impl_device_context_deref!(unsafe { Device });
kernel::impl_device_context_into_aref!(Device);

// SAFETY: Instances of `Device` are always reference-counted.
unsafe impl AlwaysRefCounted for Device {
    fn inc_ref(&self) {
        // SAFETY: The existence of a shared reference guarantees that the refcount is non-zero.
        unsafe { bindings::get_device(self.as_ref().as_raw()) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // CAST: `Self` a transparent wrapper of `bindings::xenbus_device`.
        let xdev: *mut bindings::xenbus_device = obj.cast().as_ptr();

        // SAFETY: By the type invariant of `Self`, `xdev` is a pointer to a valid
        // `struct xenbus_device`.
        let dev = unsafe { addr_of_mut!((*xdev).dev) };

        // SAFETY: The safety requirements guarantee that the refcount is non-zero.
        unsafe { bindings::put_device(dev) }
    }
}

impl<Ctx: device::DeviceContext> AsRef<device::Device<Ctx>> for Device<Ctx> {
    fn as_ref(&self) -> &device::Device<Ctx> {
        // SAFETY: By the type invariant of `Self`, `self.as_raw()` is a pointer to a valid
        // `struct xenbus_device`.
        let dev = unsafe { addr_of_mut!((*self.as_raw()).dev) };

        // SAFETY: `dev` points to a valid `struct device`.
        unsafe { device::Device::from_raw(dev) }
    }
}

// SAFETY: A `Device` is always reference-counted and can be released from any thread.
unsafe impl Send for Device {}

// SAFETY: `Device` can be shared among threads because all methods of `Device`
// (i.e. `Device<Normal>) are thread safe.
unsafe impl Sync for Device {}

// SAFETY: Same as `Device<Normal>` -- the underlying `struct xenbus_device` is the same;
// `Bound` is a zero-sized type-state marker that does not affect thread safety.
unsafe impl Sync for Device<device::Bound> {}

#[cfg(CONFIG_RUST_XEN_KUNIT_TEST)]
#[macros::kunit_tests(rust_xen_xenbus)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        for value in 0..=8u32 {
            let state = State::try_from(value);
            assert_eq!(state.map(u32::from), Ok(value));
        }
        for value in [9, 0x100, 0x8000_0004, u32::MAX] {
            assert_eq!(State::try_from(value), Err(EINVAL));
        }
        assert_eq!(State::parse(b"0"), Ok(State::Unknown));
        assert_eq!(State::parse(b"8"), Ok(State::Reconfigured));
        assert_eq!(State::parse(b"004"), Ok(State::Connected));
        let garbage: [&[u8]; 7] = [b"", b"-1", b"9", b"4294967300", b" 4", b"4\n", b"Connected"];
        for value in garbage {
            assert_eq!(State::parse(value), Err(EINVAL));
        }
        assert_eq!(State::Closed.name(), c"Closed");
        assert!(State::Initialised < State::Connected);
    }

    #[test]
    fn states_from_c() {
        // What the C callback passes is whatever `%d` parsed from the other end's node.
        assert_eq!(
            State::from_raw(bindings::xenbus_state::XenbusStateConnected),
            State::Connected
        );
        assert_eq!(State::from_raw(bindings::xenbus_state(9)), State::Unknown);
        assert_eq!(
            State::from_raw(bindings::xenbus_state(u32::MAX)),
            State::Unknown
        );
        assert_eq!(
            State::Closing.into_raw(),
            bindings::xenbus_state::XenbusStateClosing
        );
    }

    #[test]
    fn device_ids() {
        let id = DeviceId::new(c"vif");
        assert_eq!(id.devicetype(), b"vif");
        let long = DeviceId::new(c"0123456789012345678901234567890");
        assert_eq!(long.devicetype().len(), DeviceId::MAX_LEN);
        // The raw id keeps its terminating NUL.
        assert_eq!(long.0.devicetype[DeviceId::MAX_LEN], 0);
    }

    kernel::xenbus_device_table!(
        TEST_TABLE,
        u32,
        [
            (DeviceId::new(c"vif"), 10),
            (DeviceId::new(c"vbd"), 20),
            (DeviceId::new(c"vif"), 30),
        ]
    );

    #[test]
    fn id_table() {
        let table: IdTable<u32> = &TEST_TABLE;
        assert_eq!(table.len(), 3);
        assert_eq!(table.find(b"vif"), Some(0));
        assert_eq!(table.find(b"vbd"), Some(1));
        assert_eq!(table.find(b"vi"), None);
        assert_eq!(table.find(b"vifs"), None);
        assert_eq!(table.find(b""), None);
        assert_eq!(table.info(1), Some(&20));
        assert_eq!(table.info(3), None);

        // The C array is zero-terminated, as `match_device()` expects.
        let raw = table.as_ptr();
        // SAFETY: The table has 3 entries and a sentinel.
        let sentinel = unsafe { &*raw.add(3) };
        assert!(sentinel.devicetype.iter().all(|&c| c == 0));

        // Mapping the entry the C code matched back to its information.
        for i in 0..3 {
            // SAFETY: `i` is within the table.
            let entry = unsafe { raw.add(i) };
            assert_eq!(table.index_of(entry), Some(i));
        }
        // SAFETY: One past the last entry is still within the allocation (the sentinel).
        assert_eq!(table.index_of(unsafe { raw.add(3) }), None);
        assert_eq!(table.index_of(core::ptr::null()), None);
        assert_eq!(
            table.index_of(raw.cast::<u8>().wrapping_add(1).cast()),
            None
        );
    }
}
