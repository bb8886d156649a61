// SPDX-License-Identifier: GPL-2.0

//! Xenstore.
//!
//! Xenstore is the hierarchical key-value store through which Xen domains exchange configuration:
//! the two ends of a xenbus device each have a directory, and read the keys the other end writes.
//!
//! A value written by the other domain (or by its toolstack) is untrusted: the functions here
//! parse it strictly and check its range, so that `0`, numbers that do not fit and garbage are
//! errors the caller sees. `sscanf("%u")`, which the C drivers use through `xenbus_scanf()`,
//! accepts `"12abc"` as 12 and `"-1"` as `UINT_MAX`.
//!
//! - Reads, writes and removals, outside any transaction (the functions of this module) or inside
//!   a [`Transaction`] (the methods of [`Store`]).
//! - [`transaction`] runs a closure in a transaction and retries it when xenstore reports a
//!   conflict (`EAGAIN`); a [`Transaction`] that is dropped without being committed is aborted.
//! - [`Watch`] calls a [`WatchHandler`] when a node changes, and stops watching when dropped. By
//!   default at most one event per watch is queued (the handler re-reads the node): a peer that
//!   rewrites a watched node in a loop cannot make this domain queue unbounded events (XSA-349).
//!
//! Values are given without their terminating NUL, as `&[u8]`.
//!
//! All operations talk to the xenstore daemon and may sleep: call them from process context only.
//! They fail with [`ENODEV`] when the kernel does not run in a Xen domain.
//!
//! C header: [`include/xen/xenbus.h`](srctree/include/xen/xenbus.h)

use crate::{
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    fmt,
    prelude::*,
    str::CString,
    sync::Arc,
    types::Opaque, //
};
use core::{
    marker::PhantomPinned,
    ops::RangeInclusive,
    ptr::NonNull, //
};

/// Parses a decimal number: one or more ASCII digits, nothing else (no sign, spaces, prefix or
/// trailing characters). Leading zeros are allowed.
///
/// Fails with [`EINVAL`] if `value` is not a decimal number, with [`ERANGE`] if the number does
/// not fit in `T`.
///
/// # Examples
///
/// ```
/// use kernel::xen::xenstore::parse_uint;
///
/// assert_eq!(parse_uint::<u32>(b"42"), Ok(42));
/// assert_eq!(parse_uint::<u8>(b"256"), Err(ERANGE));
/// assert_eq!(parse_uint::<u32>(b"12abc"), Err(EINVAL));
/// assert_eq!(parse_uint::<u32>(b"-1"), Err(EINVAL));
/// ```
pub fn parse_uint<T: TryFrom<u64>>(value: &[u8]) -> Result<T> {
    if value.is_empty() {
        return Err(EINVAL);
    }
    let mut number = 0u64;
    let mut overflow = false;
    for &c in value {
        if !c.is_ascii_digit() {
            return Err(EINVAL);
        }
        // Keep checking the remaining characters after an overflow: garbage is `EINVAL`.
        match number
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
        {
            Some(n) => number = n,
            None => overflow = true,
        }
    }
    if overflow {
        return Err(ERANGE);
    }
    T::try_from(number).map_err(|_| ERANGE)
}

/// Parses a decimal number like [`parse_uint`] and checks that it lies in `range`.
///
/// Fails with [`EINVAL`] if `value` is not a decimal number, with [`ERANGE`] if the number is
/// outside `range`.
///
/// # Examples
///
/// ```
/// use kernel::xen::xenstore::parse_in_range;
///
/// // `multi-queue-num-queues` written by a frontend, with at most 8 queues.
/// assert_eq!(parse_in_range(b"4", 1..=8u32), Ok(4));
/// assert_eq!(parse_in_range(b"0", 1..=8u32), Err(ERANGE));
/// assert_eq!(parse_in_range(b"4294967297", 1..=8u32), Err(ERANGE));
/// ```
pub fn parse_in_range<T>(value: &[u8], range: RangeInclusive<T>) -> Result<T>
where
    T: TryFrom<u64> + PartialOrd,
{
    let number = parse_uint::<T>(value)?;
    if !range.contains(&number) {
        return Err(ERANGE);
    }
    Ok(number)
}

/// Parses a boolean node, such as `feature-sg`: `0` is false and any other number is true, as
/// the C drivers read them.
///
/// Fails with [`EINVAL`] if `value` is not a decimal number. A number too large for 64 bits is
/// still true.
///
/// # Examples
///
/// ```
/// use kernel::xen::xenstore::parse_bool;
///
/// assert_eq!(parse_bool(b"1"), Ok(true));
/// assert_eq!(parse_bool(b"0"), Ok(false));
/// assert_eq!(parse_bool(b"yes"), Err(EINVAL));
/// ```
pub fn parse_bool(value: &[u8]) -> Result<bool> {
    match parse_uint::<u64>(value) {
        Ok(number) => Ok(number != 0),
        Err(e) if e == ERANGE => Ok(true),
        Err(e) => Err(e),
    }
}

/// Parses an Ethernet address, such as the `mac` node: six bytes of one or two hexadecimal digits
/// each, separated by colons.
///
/// Fails with [`EINVAL`] for anything else. The address is not checked further (it may be zero,
/// or multicast).
///
/// # Examples
///
/// ```
/// use kernel::xen::xenstore::parse_mac;
///
/// assert_eq!(parse_mac(b"00:16:3e:0a:Bc:1"), Ok([0x00, 0x16, 0x3e, 0x0a, 0xbc, 0x01]));
/// assert_eq!(parse_mac(b"00:16:3e:0a:bc"), Err(EINVAL));
/// assert_eq!(parse_mac(b"00:16:3e:0a:bc:100"), Err(EINVAL));
/// ```
pub fn parse_mac(value: &[u8]) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = value.split(|&c| c == b':');
    for byte in &mut mac {
        let part = parts.next().ok_or(EINVAL)?;
        if part.is_empty() || part.len() > 2 {
            return Err(EINVAL);
        }
        for &c in part {
            let digit = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                b'A'..=b'F' => c - b'A' + 10,
                _ => return Err(EINVAL),
            };
            *byte = (*byte << 4) | digit;
        }
    }
    if parts.next().is_some() {
        return Err(EINVAL);
    }
    Ok(mac)
}

/// Joins a directory and a node name into a path, as the xenstore functions do: `dir/node`, or
/// `dir` if `node` is empty.
///
/// # Examples
///
/// ```
/// use kernel::xen::xenstore::join;
///
/// assert_eq!(&*join(c"device/vif/0", c"state")?, c"device/vif/0/state");
/// assert_eq!(&*join(c"device/vif/0", c"")?, c"device/vif/0");
/// # Ok::<(), Error>(())
/// ```
pub fn join(dir: &CStr, node: &CStr) -> Result<CString> {
    let (dir, node) = (dir.to_bytes(), node.to_bytes());
    let mut path = KVec::with_capacity(dir.len() + node.len() + 2, GFP_KERNEL)?;
    path.extend_from_slice(dir, GFP_KERNEL)?;
    if !node.is_empty() {
        path.push(b'/', GFP_KERNEL)?;
        path.extend_from_slice(node, GFP_KERNEL)?;
    }
    path.push(0, GFP_KERNEL)?;
    // Neither part holds a NUL, so the only one is the last byte.
    let path = CStr::from_bytes_with_nul(&path).map_err(|_| EINVAL)?;
    Ok(CString::try_from(path)?)
}

/// Returns an error unless the kernel runs in a Xen domain, where xenstore exists.
fn check_xen() -> Result {
    if super::xen_domain() {
        Ok(())
    } else {
        Err(ENODEV)
    }
}

/// The value of a xenstore node, as read.
///
/// # Invariants
///
/// `ptr` points to a buffer allocated with `kmalloc()` by the xenstore code, owned by this value,
/// of at least `len + 1` bytes, the first `len` of which are initialised.
pub struct Value {
    ptr: NonNull<u8>,
    len: usize,
}

impl Value {
    /// Returns the value, without the terminating NUL xenstore adds.
    ///
    /// The value may contain anything the writer put in it, including NULs.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: By the type invariants, `ptr` is valid for reads of `len` initialised bytes for
        // as long as `self` lives.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `ptr` was allocated with `kmalloc()` and is owned.
        unsafe { bindings::kfree(self.ptr.as_ptr().cast()) };
    }
}

// SAFETY: `Value` owns plain bytes, which can be freed from any thread.
unsafe impl Send for Value {}

// SAFETY: `Value` only gives shared access to plain bytes.
unsafe impl Sync for Value {}

mod private {
    pub trait Sealed {}
}

/// Xenstore operations, inside a [`Transaction`] or outside any ([`NoTransaction`]).
///
/// Every method takes the directory and the name of the node separately (`dir/node`), as the C
/// functions do; `node` may be empty to designate `dir` itself.
///
/// The `read_*` methods parse values strictly (see [`parse_uint`]): they fail with [`ENOENT`] if
/// the node does not exist, [`EINVAL`] if its value is not a number, and [`ERANGE`] if it is out
/// of range. The `*_or` variants return a default instead of [`ENOENT`] only.
pub trait Store: private::Sealed {
    /// Returns the transaction the operations run in.
    #[doc(hidden)]
    fn raw_transaction(&self) -> bindings::xenbus_transaction;

    /// Reads a node (`xenbus_read()`).
    fn read(&self, dir: &CStr, node: &CStr) -> Result<Value> {
        check_xen()?;
        let mut len: c_uint = 0;
        // SAFETY: `dir` and `node` are NUL-terminated strings and `len` is valid for writes.
        let ptr = unsafe {
            bindings::xenbus_read(
                self.raw_transaction(),
                dir.as_char_ptr(),
                node.as_char_ptr(),
                &mut len,
            )
        };
        let ptr = from_err_ptr(ptr)?;
        // INVARIANT: On success `xenbus_read()` returns a `kmalloc()` buffer of `len` bytes
        // followed by a NUL, which the caller owns.
        Ok(Value {
            ptr: NonNull::new(ptr.cast()).ok_or(ENOMEM)?,
            len: len as usize,
        })
    }

    /// Reads an unsigned decimal number.
    fn read_uint<T: TryFrom<u64>>(&self, dir: &CStr, node: &CStr) -> Result<T> {
        parse_uint(self.read(dir, node)?.as_bytes())
    }

    /// Reads an unsigned decimal number in `range`.
    fn read_in_range<T>(&self, dir: &CStr, node: &CStr, range: RangeInclusive<T>) -> Result<T>
    where
        T: TryFrom<u64> + PartialOrd,
    {
        parse_in_range(self.read(dir, node)?.as_bytes(), range)
    }

    /// Reads an unsigned decimal number, or returns `default` if the node does not exist.
    fn read_uint_or<T: TryFrom<u64>>(&self, dir: &CStr, node: &CStr, default: T) -> Result<T> {
        match self.read(dir, node) {
            Ok(value) => parse_uint(value.as_bytes()),
            Err(e) if e == ENOENT => Ok(default),
            Err(e) => Err(e),
        }
    }

    /// Reads a boolean ([`parse_bool`]), or returns `default` if the node does not exist.
    ///
    /// This is how optional `feature-*` nodes are read.
    fn read_bool_or(&self, dir: &CStr, node: &CStr, default: bool) -> Result<bool> {
        match self.read(dir, node) {
            Ok(value) => parse_bool(value.as_bytes()),
            Err(e) if e == ENOENT => Ok(default),
            Err(e) => Err(e),
        }
    }

    /// Returns whether a node exists (`xenbus_exists()`).
    fn exists(&self, dir: &CStr, node: &CStr) -> bool {
        if check_xen().is_err() {
            return false;
        }
        // SAFETY: `dir` and `node` are NUL-terminated strings.
        unsafe {
            bindings::xenbus_exists(
                self.raw_transaction(),
                dir.as_char_ptr(),
                node.as_char_ptr(),
            ) != 0
        }
    }

    /// Writes `value` into a node, creating it if needed (`xenbus_write()`).
    fn write(&self, dir: &CStr, node: &CStr, value: &CStr) -> Result {
        check_xen()?;
        // SAFETY: `dir`, `node` and `value` are NUL-terminated strings.
        to_result(unsafe {
            bindings::xenbus_write(
                self.raw_transaction(),
                dir.as_char_ptr(),
                node.as_char_ptr(),
                value.as_char_ptr(),
            )
        })
    }

    /// Writes a formatted value into a node (`xenbus_printf()`).
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{prelude::*, xen::xenstore::{self, Store}};
    ///
    /// fn advertise(nodename: &CStr, queues: u32) -> Result {
    ///     xenstore::transaction(|t| {
    ///         t.write_fmt(nodename, c"multi-queue-num-queues", fmt!("{queues}"))?;
    ///         t.write(nodename, c"request-rx-copy", c"1")
    ///     })
    /// }
    /// ```
    fn write_fmt(&self, dir: &CStr, node: &CStr, args: fmt::Arguments<'_>) -> Result {
        self.write(dir, node, &CString::try_from_fmt(args)?)
    }

    /// Removes a node, which must have no children (`xenbus_rm()`).
    fn rm(&self, dir: &CStr, node: &CStr) -> Result {
        check_xen()?;
        // SAFETY: `dir` and `node` are NUL-terminated strings.
        to_result(unsafe {
            bindings::xenbus_rm(
                self.raw_transaction(),
                dir.as_char_ptr(),
                node.as_char_ptr(),
            )
        })
    }
}

/// Xenstore operations outside any transaction (`XBT_NIL`).
///
/// The functions of this module ([`read()`], [`write()`], …) use it.
pub struct NoTransaction;

impl private::Sealed for NoTransaction {}

impl Store for NoTransaction {
    fn raw_transaction(&self) -> bindings::xenbus_transaction {
        bindings::xenbus_transaction { id: 0 }
    }
}

/// Reads a node outside any transaction ([`Store::read`]).
pub fn read(dir: &CStr, node: &CStr) -> Result<Value> {
    NoTransaction.read(dir, node)
}

/// Reads an unsigned number outside any transaction ([`Store::read_uint`]).
pub fn read_uint<T: TryFrom<u64>>(dir: &CStr, node: &CStr) -> Result<T> {
    NoTransaction.read_uint(dir, node)
}

/// Reads an unsigned number in `range` outside any transaction ([`Store::read_in_range`]).
pub fn read_in_range<T>(dir: &CStr, node: &CStr, range: RangeInclusive<T>) -> Result<T>
where
    T: TryFrom<u64> + PartialOrd,
{
    NoTransaction.read_in_range(dir, node, range)
}

/// Reads an optional unsigned number outside any transaction ([`Store::read_uint_or`]).
pub fn read_uint_or<T: TryFrom<u64>>(dir: &CStr, node: &CStr, default: T) -> Result<T> {
    NoTransaction.read_uint_or(dir, node, default)
}

/// Reads an optional boolean outside any transaction ([`Store::read_bool_or`]).
pub fn read_bool_or(dir: &CStr, node: &CStr, default: bool) -> Result<bool> {
    NoTransaction.read_bool_or(dir, node, default)
}

/// Returns whether a node exists, outside any transaction ([`Store::exists`]).
pub fn exists(dir: &CStr, node: &CStr) -> bool {
    NoTransaction.exists(dir, node)
}

/// Writes a node outside any transaction ([`Store::write`]).
pub fn write(dir: &CStr, node: &CStr, value: &CStr) -> Result {
    NoTransaction.write(dir, node, value)
}

/// Writes a formatted value outside any transaction ([`Store::write_fmt`]).
pub fn write_fmt(dir: &CStr, node: &CStr, args: fmt::Arguments<'_>) -> Result {
    NoTransaction.write_fmt(dir, node, args)
}

/// Removes a node outside any transaction ([`Store::rm`]).
pub fn rm(dir: &CStr, node: &CStr) -> Result {
    NoTransaction.rm(dir, node)
}

/// A xenstore transaction.
///
/// Operations in a transaction see a snapshot of the store and take effect together when it is
/// committed. If another domain changed what the transaction used, committing fails with
/// [`EAGAIN`] and the whole transaction must be redone: [`transaction`] does that.
///
/// Dropping a transaction that was not committed aborts it.
///
/// # Invariants
///
/// `raw` is a transaction started with `xenbus_transaction_start()` and not ended yet.
pub struct Transaction {
    raw: bindings::xenbus_transaction,
}

impl Transaction {
    /// Starts a transaction (`xenbus_transaction_start()`).
    pub fn start() -> Result<Self> {
        check_xen()?;
        let mut raw = bindings::xenbus_transaction { id: 0 };
        // SAFETY: `raw` is valid for writes.
        to_result(unsafe { bindings::xenbus_transaction_start(&mut raw) })?;
        // INVARIANT: The transaction was started and has not been ended.
        Ok(Self { raw })
    }

    /// Ends the transaction, applying its changes (`xenbus_transaction_end(t, false)`).
    ///
    /// Fails with [`EAGAIN`] if the transaction conflicted with another change: nothing was
    /// applied and the transaction should be redone from the start.
    pub fn commit(self) -> Result {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: By the type invariants the transaction has not been ended; it is ended here
        // and `this` is not dropped.
        to_result(unsafe { bindings::xenbus_transaction_end(this.raw, false) })
    }

    /// Ends the transaction, discarding its changes (`xenbus_transaction_end(t, true)`).
    pub fn abort(self) {
        drop(self);
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        // SAFETY: By the type invariants the transaction has not been ended.
        let _ = unsafe { bindings::xenbus_transaction_end(self.raw, true) };
    }
}

impl private::Sealed for Transaction {}

impl Store for Transaction {
    fn raw_transaction(&self) -> bindings::xenbus_transaction {
        self.raw
    }
}

/// How many times [`transaction`] starts a transaction again after a conflict.
///
/// The C drivers retry without limit; a peer that keeps changing the nodes a transaction reads
/// could then keep this domain busy forever.
pub const TRANSACTION_RETRIES: u32 = 64;

/// Runs `f` in a transaction and commits it, starting again when the commit conflicts with
/// another change ([`EAGAIN`]), at most [`TRANSACTION_RETRIES`] times.
///
/// If `f` fails, the transaction is aborted and its error returned. `f` may run several times: it
/// must not have effects outside the transaction that it cannot repeat.
///
/// # Examples
///
/// ```
/// use kernel::{prelude::*, xen::xenstore::{self, Store}};
///
/// // Outside Xen, there is no xenstore.
/// # if !kernel::xen::xen_domain() {
/// assert_eq!(xenstore::transaction(|t| t.write(c"device/vif/0", c"feature-sg", c"1")), Err(ENODEV));
/// # }
/// ```
pub fn transaction<R>(mut f: impl FnMut(&Transaction) -> Result<R>) -> Result<R> {
    retry(TRANSACTION_RETRIES, || {
        let t = Transaction::start()?;
        let result = f(&t)?;
        t.commit()?;
        Ok(result)
    })
}

/// Runs `attempt` until it returns anything but `Err(EAGAIN)`, at most `1 + retries` times.
fn retry<R>(retries: u32, mut attempt: impl FnMut() -> Result<R>) -> Result<R> {
    let mut left = retries;
    loop {
        match attempt() {
            Err(e) if e == EAGAIN && left > 0 => left -= 1,
            result => return result,
        }
    }
}

/// Handles the changes of a node watched with a [`Watch`].
pub trait WatchHandler: Send + Sync {
    /// Called when the watched node, or a node below it, changed (including when the watch is
    /// registered).
    ///
    /// `path` is the node that changed. Events may be coalesced (see [`Watch`]): re-read what is
    /// needed, and do not rely on being called once per change.
    ///
    /// Runs in the xenwatch thread, in process context, one callback at a time for all watches
    /// of the system. It must not wait for other watch callbacks or for xenbus driver callbacks.
    fn changed(&self, path: &CStr);
}

/// A watch on a xenstore node (`struct xenbus_watch`).
///
/// Calls the [`WatchHandler`] when the node or one of the nodes below it changes. Dropping the
/// watch unregisters it; once the drop has returned, the handler is not called any more (unless
/// the watch is dropped by its own handler, which is allowed).
///
/// At most `max_pending` events are queued for the watch; further changes are dropped until the
/// handler has run. [`Watch::new`] queues at most one: the handler re-reads the nodes it needs,
/// which is what a watch on a node the other end can write needs, so that the other end cannot
/// make this domain queue events without limit (XSA-349).
///
/// # Examples
///
/// ```
/// use kernel::{
///     prelude::*,
///     str::CString,
///     sync::Arc,
///     xen::xenstore::{self, Watch, WatchHandler},
/// };
///
/// struct HotplugStatus;
///
/// impl WatchHandler for HotplugStatus {
///     fn changed(&self, path: &CStr) {
///         if let Ok(value) = xenstore::read(path, c"") {
///             pr_info!("{:?} is now {:?}\n", path, value.as_bytes());
///         }
///     }
/// }
///
/// fn watch(nodename: &CStr) -> Result<Pin<KBox<Watch<HotplugStatus>>>> {
///     let path = xenstore::join(nodename, c"hotplug-status")?;
///     KBox::pin_init(Watch::new(path, Arc::new(HotplugStatus, GFP_KERNEL)?), GFP_KERNEL)
/// }
///
/// // Outside Xen, there is nothing to watch.
/// # if !kernel::xen::xen_domain() {
/// assert_eq!(watch(c"backend/vif/1/0").err(), Some(ENODEV));
/// # }
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `watch` is registered with `register_xenbus_watch()`, with `node` pointing into `path`,
/// `will_handle` and `callback` set to this type's callbacks.
#[pin_data(PinnedDrop)]
pub struct Watch<T: WatchHandler> {
    #[pin]
    watch: Opaque<bindings::xenbus_watch>,
    path: CString,
    max_pending: u32,
    handler: Arc<T>,
    #[pin]
    _pin: PhantomPinned,
}

impl<T: WatchHandler + 'static> Watch<T> {
    /// Watches `path`, queueing at most one event at a time.
    pub fn new(path: CString, handler: Arc<T>) -> impl PinInit<Self, Error> {
        Self::with_max_pending(path, 1, handler)
    }

    /// Watches `path`, queueing at most `max_pending` events at a time (at least one).
    ///
    /// Only for nodes no other domain can write: a bound does not help against a peer that
    /// produces events as fast as they are handled, so keep it small.
    pub fn with_max_pending(
        path: CString,
        max_pending: u32,
        handler: Arc<T>,
    ) -> impl PinInit<Self, Error> {
        let node = path.as_char_ptr();
        try_pin_init!(&this in Self {
            watch <- Opaque::ffi_init(|slot: *mut bindings::xenbus_watch| {
                let mut watch: bindings::xenbus_watch = pin_init::zeroed();
                watch.node = node;
                watch.will_handle = Some(Self::will_handle_callback);
                watch.callback = Some(Self::callback);
                // SAFETY: `slot` is valid for writes.
                unsafe { slot.write(watch) };
            }),
            path,
            max_pending: max_pending.max(1),
            handler,
            _pin: PhantomPinned,
            _: {
                check_xen()?;
                // SAFETY: `this` points to the pinned `Self` being initialised; all its fields are
                // initialised.
                let watch = unsafe { (*this.as_ptr()).watch.get() };
                // INVARIANT: On success the watch is registered; `node` points into `path`, whose
                // buffer does not move with `Self`.
                //
                // SAFETY: `watch` is a fully initialised `struct xenbus_watch` that stays valid and
                // pinned until `PinnedDrop::drop` unregisters it. The callbacks may run as soon as
                // it is registered: everything they use is initialised.
                to_result(unsafe { bindings::register_xenbus_watch(watch) })?;
            },
        })
    }

    /// Returns the watched path.
    pub fn path(&self) -> &CStr {
        &self.path
    }

    /// Returns the handler.
    pub fn handler(&self) -> &Arc<T> {
        &self.handler
    }

    /// # Safety
    ///
    /// `watch` must point to the `watch` field of a registered `Watch<T>`.
    unsafe fn from_raw<'a>(watch: *mut bindings::xenbus_watch) -> &'a Self {
        let watch = Opaque::cast_from(watch);
        // SAFETY: By the safety requirements, `watch` is the `watch` field of a `Self`.
        let this = unsafe { crate::container_of!(watch, Self, watch) };
        // SAFETY: A registered `Watch<T>` is valid until it is unregistered, which waits for
        // running callbacks (other than one of the current thread's).
        unsafe { &*this }
    }

    /// Decides whether to queue an event; called with xenstore's watch lock held.
    ///
    /// # Safety
    ///
    /// Only for use as the `will_handle` callback of the `watch` field of a `Watch<T>`: `watch`
    /// must point to the `watch` field of a registered `Watch<T>`.
    unsafe extern "C" fn will_handle_callback(
        watch: *mut bindings::xenbus_watch,
        _path: *const c_char,
        _token: *const c_char,
    ) -> bool {
        // SAFETY: The xenbus core calls `will_handle` of registered watches only, with their
        // address.
        let this = unsafe { Self::from_raw(watch) };
        // SAFETY: `watch` is valid; `nr_pending` is an integer the xenbus core updates under
        // its event lock, read once here as the C `will_handle` callbacks do.
        let pending = unsafe { core::ptr::read_volatile(&raw const (*watch).nr_pending) };
        pending < this.max_pending
    }

    /// Passes an event to the handler; called from the xenwatch thread.
    ///
    /// # Safety
    ///
    /// Only for use as the `callback` of the `watch` field of a `Watch<T>`: `watch` must point
    /// to the `watch` field of a registered `Watch<T>`, and `path` to a NUL-terminated string
    /// valid for the duration of the call.
    unsafe extern "C" fn callback(
        watch: *mut bindings::xenbus_watch,
        path: *const c_char,
        _token: *const c_char,
    ) {
        // SAFETY: The xenbus core calls `callback` of registered watches only, with their
        // address, from the xenwatch thread.
        let this = unsafe { Self::from_raw(watch) };
        // Keep the handler alive on its own: the handler may drop this watch.
        let handler = this.handler.clone();
        // SAFETY: The xenbus core passes the NUL-terminated path of the event, valid during the
        // callback.
        let path = unsafe { CStr::from_char_ptr(path) };
        handler.changed(path);
    }
}

#[pinned_drop]
impl<T: WatchHandler> PinnedDrop for Watch<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants, the watch is registered. `unregister_xenbus_watch()`
        // discards queued events and waits for a running callback, unless called from the
        // xenwatch thread itself.
        unsafe { bindings::unregister_xenbus_watch(self.watch.get()) };
    }
}

// SAFETY: The C watch is only used by the xenbus core, which does not care about the thread the
// watch is dropped from; the handler is `Send + Sync`.
unsafe impl<T: WatchHandler> Send for Watch<T> {}

// SAFETY: `&Watch` only gives access to the path and the handler, which are `Sync`.
unsafe impl<T: WatchHandler> Sync for Watch<T> {}

#[cfg(CONFIG_RUST_XEN_KUNIT_TEST)]
#[macros::kunit_tests(rust_xen_xenstore)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_uint::<u32>(b"0"), Ok(0));
        assert_eq!(parse_uint::<u32>(b"007"), Ok(7));
        assert_eq!(parse_uint::<u32>(b"4294967295"), Ok(u32::MAX));
        assert_eq!(parse_uint::<u32>(b"4294967296"), Err(ERANGE));
        assert_eq!(parse_uint::<u64>(b"4294967296"), Ok(1 << 32));
        assert_eq!(parse_uint::<u64>(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_uint::<u64>(b"18446744073709551616"), Err(ERANGE));
        assert_eq!(
            parse_uint::<u64>(b"99999999999999999999999999999"),
            Err(ERANGE)
        );
        assert_eq!(parse_uint::<u16>(b"65536"), Err(ERANGE));
        assert_eq!(parse_uint::<u8>(b"255"), Ok(255));
        let zeros = [b'0'; 100];
        assert_eq!(parse_uint::<u8>(&zeros), Ok(0));
    }

    #[test]
    fn numbers_garbage() {
        let garbage: [&[u8]; 14] = [
            b"", b"-1", b"+1", b" 1", b"1 ", b"1\n", b"1\0", b"0x10", b"12abc", b"1.5", b"\xff",
            b"one", b"1e3", b"\x001",
        ];
        for value in garbage {
            assert_eq!(parse_uint::<u32>(value), Err(EINVAL));
        }
        // Garbage after an overflow is still garbage.
        assert_eq!(parse_uint::<u8>(b"99999999999999999999999x"), Err(EINVAL));
    }

    #[test]
    fn in_range() {
        assert_eq!(parse_in_range(b"1", 1..=8u32), Ok(1));
        assert_eq!(parse_in_range(b"8", 1..=8u32), Ok(8));
        assert_eq!(parse_in_range(b"0", 1..=8u32), Err(ERANGE));
        assert_eq!(parse_in_range(b"9", 1..=8u32), Err(ERANGE));
        assert_eq!(parse_in_range(b"4294967296", 1..=8u32), Err(ERANGE));
        assert_eq!(parse_in_range(b"x", 1..=8u32), Err(EINVAL));
        assert_eq!(parse_in_range(b"32767", 0..=0x7fffu16), Ok(0x7fff));
        assert_eq!(parse_in_range(b"32768", 0..=0x7fffu16), Err(ERANGE));
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool(b"0"), Ok(false));
        assert_eq!(parse_bool(b"00"), Ok(false));
        assert_eq!(parse_bool(b"1"), Ok(true));
        assert_eq!(parse_bool(b"2"), Ok(true));
        assert_eq!(parse_bool(b"99999999999999999999999"), Ok(true));
        assert_eq!(parse_bool(b""), Err(EINVAL));
        assert_eq!(parse_bool(b"true"), Err(EINVAL));
        assert_eq!(parse_bool(b"1 "), Err(EINVAL));
    }

    #[test]
    fn mac_addresses() {
        assert_eq!(
            parse_mac(b"00:16:3e:5f:a0:ff"),
            Ok([0x00, 0x16, 0x3e, 0x5f, 0xa0, 0xff])
        );
        assert_eq!(parse_mac(b"0:1:2:3:4:5"), Ok([0, 1, 2, 3, 4, 5]));
        assert_eq!(parse_mac(b"FF:FF:FF:FF:FF:FF"), Ok([0xff; 6]));
        let garbage: [&[u8]; 11] = [
            b"",
            b":::::",
            b"00:16:3e:5f:a0",
            b"00:16:3e:5f:a0:",
            b"00:16:3e:5f:a0:ff:",
            b"00:16:3e:5f:a0:ff:00",
            b"000:16:3e:5f:a0:ff",
            b"00:16:3e:5f:a0:fff",
            b"0g:16:3e:5f:a0:ff",
            b"00-16-3e-5f-a0-ff",
            b" 00:16:3e:5f:a0:ff",
        ];
        for value in garbage {
            assert_eq!(parse_mac(value), Err(EINVAL));
        }
    }

    #[test]
    fn paths() -> Result {
        assert_eq!(&*join(c"device/vif/0", c"state")?, c"device/vif/0/state");
        assert_eq!(&*join(c"backend/vif/1/0", c"")?, c"backend/vif/1/0");
        assert_eq!(
            &*join(c"device/vif/0", c"queue-1/tx-ring-ref")?,
            c"device/vif/0/queue-1/tx-ring-ref"
        );
        // Bytes that are not UTF-8 are kept as they are.
        assert_eq!(join(c"a", c"\xff")?.to_bytes(), b"a/\xff");
        Ok(())
    }

    #[test]
    fn retries() {
        // Succeeds at once.
        let mut calls = 0;
        assert_eq!(
            retry(3, || {
                calls += 1;
                Ok(7)
            }),
            Ok(7)
        );
        assert_eq!(calls, 1);

        // Conflicts twice, then commits.
        let mut calls = 0;
        let result = retry(3, || {
            calls += 1;
            if calls < 3 {
                Err(EAGAIN)
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result, Ok(3));

        // A peer that always conflicts: gives up after the retries, with `EAGAIN`.
        let mut calls = 0;
        assert_eq!(
            retry::<()>(3, || {
                calls += 1;
                Err(EAGAIN)
            }),
            Err(EAGAIN)
        );
        assert_eq!(calls, 4);

        // Other errors are not retried.
        let mut calls = 0;
        assert_eq!(
            retry::<()>(3, || {
                calls += 1;
                Err(ENOENT)
            }),
            Err(ENOENT)
        );
        assert_eq!(calls, 1);
    }

    #[test]
    fn without_xen() {
        if crate::xen::xen_domain() {
            return;
        }
        assert_eq!(read(c"device/vif/0", c"state").err(), Some(ENODEV));
        assert_eq!(read_uint::<u32>(c"device/vif/0", c"state"), Err(ENODEV));
        assert_eq!(
            read_bool_or(c"device/vif/0", c"feature-sg", true),
            Err(ENODEV)
        );
        assert!(!exists(c"device/vif/0", c""));
        assert_eq!(write(c"device/vif/0", c"state", c"1"), Err(ENODEV));
        assert_eq!(Transaction::start().err(), Some(ENODEV));
        assert_eq!(transaction(|_| Ok(())), Err(ENODEV));
    }
}
