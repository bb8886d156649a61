// SPDX-License-Identifier: GPL-2.0

//! XDP: eBPF programs run by a driver on received buffers, before any `sk_buff` exists.
//!
//! A driver that supports native XDP
//! - registers an [`RxqInfo`] for each receive queue, which tells the stack how the queue's
//!   buffers are returned (here: whole order-0 pages of the queue's [`PagePool`],
//!   `MEM_TYPE_PAGE_POOL`);
//! - takes the program from [`Bpf`] in [`Operations::bpf`](super::dev::Operations::bpf) and keeps
//!   references to it ([`Prog`]);
//! - runs it on each single-buffer packet with [`RxqInfo::run`], which consumes the page and
//!   says what became of it ([`Verdict`]): given back (pass, drop) or handed on (a [`Frame`] to
//!   transmit, or redirected, to be flushed with [`flush`] before the NAPI poll ends);
//! - transmits frames of its own (`XDP_TX`) and of other devices
//!   ([`Operations::xdp_xmit`](super::dev::Operations::xdp_xmit), taking them from
//!   [`XmitFrames`]): dropping a [`Frame`] returns its memory to its owner.
//!
//! Page ownership moves with the values: a page is either a [`PoolPage`] of the driver or the
//! memory of exactly one [`Frame`] (or of the redirect code), never both, so no error path can free
//! it twice or keep using it after it was handed on (XSA-405).
//!
//! C headers: [`include/net/xdp.h`](srctree/include/net/xdp.h),
//! [`include/linux/filter.h`](srctree/include/linux/filter.h),
//! [`include/linux/bpf.h`](srctree/include/linux/bpf.h)

use crate::{
    bindings,
    error::to_result,
    net::dev::Device,
    net::page_pool::{
        PagePool,
        PoolPage, //
    },
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::aref::ARef,
    types::Opaque, //
};
use core::ptr::NonNull;

/// Headroom XDP programs expect before the packet data (`XDP_PACKET_HEADROOM`).
pub const PACKET_HEADROOM: usize = bindings::XDP_PACKET_HEADROOM as usize;

/// What a program decided for a packet (`enum xdp_action`).
///
/// # Examples
///
/// ```
/// use kernel::net::xdp::Action;
///
/// assert_eq!(Action::from_raw(1), Some(Action::Drop));
/// assert_eq!(Action::from_raw(4), Some(Action::Redirect));
/// // Values a program may return but no driver knows.
/// assert_eq!(Action::from_raw(5), None);
/// assert_eq!(Action::Pass as u32, 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    /// The program failed (`XDP_ABORTED`): drop, and trace the exception.
    Aborted = bindings::xdp_action_XDP_ABORTED,
    /// Drop the packet (`XDP_DROP`).
    Drop = bindings::xdp_action_XDP_DROP,
    /// Give the packet to the stack (`XDP_PASS`).
    Pass = bindings::xdp_action_XDP_PASS,
    /// Send the packet back out of the device it came from (`XDP_TX`).
    Tx = bindings::xdp_action_XDP_TX,
    /// Send the packet where the program's redirect helper said (`XDP_REDIRECT`).
    Redirect = bindings::xdp_action_XDP_REDIRECT,
}

impl Action {
    /// The action of `raw`, [`None`] for a value no driver knows.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            bindings::xdp_action_XDP_ABORTED => Self::Aborted,
            bindings::xdp_action_XDP_DROP => Self::Drop,
            bindings::xdp_action_XDP_PASS => Self::Pass,
            bindings::xdp_action_XDP_TX => Self::Tx,
            bindings::xdp_action_XDP_REDIRECT => Self::Redirect,
            _ => return None,
        })
    }
}

/// XDP features a device advertises (`NETDEV_XDP_ACT_*`, `dev->xdp_features`).
///
/// # Examples
///
/// ```
/// use kernel::net::xdp::Features;
///
/// let f = Features::BASIC | Features::REDIRECT | Features::NDO_XMIT;
/// assert_eq!(f.bits(), 7);
/// assert!(f.contains(Features::REDIRECT));
/// assert!(!Features::NONE.contains(Features::BASIC));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features(u32);

impl Features {
    /// No XDP.
    pub const NONE: Self = Self(0);
    /// `XDP_ABORTED`, `XDP_DROP`, `XDP_PASS` and `XDP_TX` (`NETDEV_XDP_ACT_BASIC`).
    pub const BASIC: Self = Self(bindings::netdev_xdp_act_NETDEV_XDP_ACT_BASIC);
    /// `XDP_REDIRECT` (`NETDEV_XDP_ACT_REDIRECT`).
    pub const REDIRECT: Self = Self(bindings::netdev_xdp_act_NETDEV_XDP_ACT_REDIRECT);
    /// Frames from other devices through `ndo_xdp_xmit` (`NETDEV_XDP_ACT_NDO_XMIT`).
    pub const NDO_XMIT: Self = Self(bindings::netdev_xdp_act_NETDEV_XDP_ACT_NDO_XMIT);

    /// The raw flags.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for Features {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A reference to a loaded BPF program (`struct bpf_prog`).
///
/// Cloning takes another reference (`bpf_prog_inc()`), dropping releases one (`bpf_prog_put()`,
/// in any context: the last one frees the program after an RCU grace period).
///
/// # Invariants
///
/// `self.0` points to a valid `struct bpf_prog` of which `self` owns one reference.
pub struct Prog(NonNull<bindings::bpf_prog>);

// SAFETY: The reference count of a program is atomic and the program is immutable once loaded:
// a reference can be used and released on any thread.
unsafe impl Send for Prog {}
// SAFETY: As above; `&Prog` only runs the program or reads immutable fields.
unsafe impl Sync for Prog {}

impl Prog {
    /// Takes a new reference to the program `ptr`; [`None`] if `ptr` is NULL.
    ///
    /// # Safety
    ///
    /// `ptr` is NULL or points to a program the caller holds a reference to for the duration of
    /// the call.
    pub unsafe fn get(ptr: *mut bindings::bpf_prog) -> Option<Self> {
        let ptr = NonNull::new(ptr)?;
        // SAFETY: `ptr` is a valid program with a reference held (safety requirements).
        unsafe { bindings::bpf_prog_inc(ptr.as_ptr()) };
        // INVARIANT: We took the reference that `self` owns.
        Some(Self(ptr))
    }

    /// Returns the raw pointer to the program.
    pub fn as_raw(&self) -> *mut bindings::bpf_prog {
        self.0.as_ptr()
    }

    /// Whether the program handles multi-buffer packets (`SEC("xdp.frags")`).
    pub fn has_frags(&self) -> bool {
        // SAFETY: `self.0` is valid (type invariant) and a loaded program has its `aux`.
        unsafe { (*(*self.0.as_ptr()).aux).xdp_has_frags }
    }
}

impl Clone for Prog {
    fn clone(&self) -> Self {
        // SAFETY: `self` owns a reference, so the program is valid.
        unsafe { bindings::bpf_prog_inc(self.0.as_ptr()) };
        // INVARIANT: The new value owns the reference just taken.
        Self(self.0)
    }
}

impl Drop for Prog {
    fn drop(&mut self) {
        // SAFETY: `self` owns a reference (type invariant), released here once.
        unsafe { bindings::bpf_prog_put(self.0.as_ptr()) };
    }
}

/// The `ndo_bpf` request (`struct netdev_bpf`) given to
/// [`Operations::bpf`](super::dev::Operations::bpf).
///
/// # Invariants
///
/// `raw` points to a valid `struct netdev_bpf` for the lifetime `'a`, whose `prog` and `extack`
/// are valid (or NULL) when the command is `XDP_SETUP_PROG` or `XDP_SETUP_PROG_HW`.
pub struct Bpf<'a> {
    raw: &'a mut bindings::netdev_bpf,
}

/// Commands of `ndo_bpf` a driver tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BpfCommand {
    /// Attach, replace or (without a program) detach the native program (`XDP_SETUP_PROG`).
    SetupProg,
    /// Anything else (offload, AF_XDP pools): refuse with `EINVAL` unless supported.
    Other(u32),
}

impl<'a> Bpf<'a> {
    /// Wraps a `struct netdev_bpf`.
    ///
    /// # Safety
    ///
    /// `raw` must be valid for the lifetime `'a` and its `prog` and `extack` valid or NULL for
    /// the program commands, as the stack passes it to `ndo_bpf`.
    pub unsafe fn from_raw(raw: *mut bindings::netdev_bpf) -> Self {
        // SAFETY: By the safety requirements, `raw` is valid and not aliased for `'a`.
        let raw = unsafe { &mut *raw };
        // INVARIANT: By the safety requirements.
        Self { raw }
    }

    /// The command.
    pub fn command(&self) -> BpfCommand {
        match self.raw.command {
            bindings::bpf_netdev_command_XDP_SETUP_PROG => BpfCommand::SetupProg,
            other => BpfCommand::Other(other),
        }
    }

    fn is_prog_command(&self) -> bool {
        matches!(
            self.raw.command,
            bindings::bpf_netdev_command_XDP_SETUP_PROG
                | bindings::bpf_netdev_command_XDP_SETUP_PROG_HW
        )
    }

    /// A new reference to the program to attach; [`None`] to detach, or for other commands.
    pub fn prog(&self) -> Option<Prog> {
        if !self.is_prog_command() {
            return None;
        }
        // SAFETY: For the program commands the first member of the union is the active one
        // (type invariant).
        let ptr = unsafe { self.raw.__bindgen_anon_1.__bindgen_anon_1.prog };
        // SAFETY: The stack holds a reference to the program during `ndo_bpf` (type invariant:
        // valid or NULL).
        unsafe { Prog::get(ptr) }
    }

    /// Sets the message the user sees with the error (`NL_SET_ERR_MSG`); for program commands.
    pub fn set_error(&mut self, msg: &'static CStr) {
        if !self.is_prog_command() {
            return;
        }
        // SAFETY: For the program commands the first member of the union is the active one.
        let extack = unsafe { self.raw.__bindgen_anon_1.__bindgen_anon_1.extack };
        if !extack.is_null() {
            // SAFETY: `extack` is valid (type invariant); `msg` outlives it ('static).
            unsafe { (*extack)._msg = msg.as_char_ptr() };
        }
    }
}

/// What became of a buffer a program ran on ([`RxqInfo::run`]).
pub enum Verdict {
    /// `XDP_PASS`: the page is the driver's again; the packet is `len` bytes at `offset`, where
    /// the program left it (it may move the start and the end).
    Pass {
        /// The page.
        page: PoolPage,
        /// Start of the packet in the page.
        offset: usize,
        /// Length of the packet.
        len: usize,
    },
    /// The packet is dropped, the page is the driver's again: `XDP_DROP`, `XDP_ABORTED`, an
    /// unknown action (warned about once), or an `XDP_TX`/`XDP_REDIRECT` that could not be done
    /// (traced as an exception). `action` is what the program returned, if known.
    Drop {
        /// The page.
        page: PoolPage,
        /// The program's action.
        action: Option<Action>,
    },
    /// `XDP_TX`: send this frame out of the device; dropping it gives the page back to its pool.
    Tx(Frame),
    /// `XDP_REDIRECT` accepted: the page now belongs to the redirect code. Call [`flush`] before
    /// the NAPI poll ends.
    Redirected,
}

/// Receive-queue information for XDP (`struct xdp_rxq_info`), registered for one queue of a
/// device with the page-pool memory model (`MEM_TYPE_PAGE_POOL`: a returned buffer goes back to
/// the pool of its page).
///
/// # Examples
///
/// ```
/// use kernel::net::{dev::{self, Device, NetdevTx, Options, Registration}, ethtool, skb::SkBuff};
/// use kernel::net::{page_pool::PagePool, xdp::RxqInfo};
///
/// struct Null;
/// #[vtable]
/// impl dev::Operations for Null {
///     fn start_xmit(_: &Device, _: Pin<&Self>, skb: SkBuff) -> NetdevTx {
///         skb.consume();
///         NetdevTx::Ok
///     }
/// }
/// #[vtable]
/// impl ethtool::Operations for Null {}
///
/// let reg = Registration::new(&Options::new(), Null)?;
/// let pool = PagePool::new(reg.device(), 256)?;
/// let rxq = KBox::pin_init(RxqInfo::new(reg.device(), 0, 0, pool), GFP_KERNEL)?;
/// assert_eq!(rxq.queue_index(), 0);
/// let page = rxq.pool().alloc(GFP_KERNEL)?;
/// // Unregisters the queue information, then the device; the pool goes once its page is back.
/// drop(rxq);
/// drop(reg);
/// drop(page);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `raw` is registered (`xdp_rxq_info_reg()`) for device `dev` with `MEM_TYPE_PAGE_POOL` and
/// `pool`, of which the registration holds a reference of its own (`page_pool_use_xdp_mem()`,
/// dropped by `xdp_rxq_info_unreg()`).
#[pin_data(PinnedDrop)]
pub struct RxqInfo {
    #[pin]
    raw: Opaque<bindings::xdp_rxq_info>,
    dev: ARef<Device>,
    pool: PagePool,
}

// SAFETY: The registration is plain data read by the stack; unregistering is allowed on any
// thread.
unsafe impl Send for RxqInfo {}
// SAFETY: `&RxqInfo` only reads the registration and runs programs with it, which the stack does
// concurrently on any CPU for the same queue information.
unsafe impl Sync for RxqInfo {}

impl RxqInfo {
    /// Registers receive queue `queue_index` of `dev` (NAPI id `napi_id`, 0 if unknown), whose
    /// buffers come from `pool` (see [`RxqInfo::pool`]).
    pub fn new(
        dev: &Device,
        queue_index: u32,
        napi_id: u32,
        pool: PagePool,
    ) -> impl PinInit<Self, Error> + '_ {
        let raw_pool = pool.as_raw();
        try_pin_init!(Self {
            raw <- Opaque::try_ffi_init(move |slot: *mut bindings::xdp_rxq_info| {
                // SAFETY: `slot` is valid for writes of a `struct xdp_rxq_info`; all-zero is its
                // unused state, which registration expects.
                unsafe { core::ptr::write_bytes(slot, 0, 1) };
                // SAFETY: `slot` is a zeroed `xdp_rxq_info`, `dev` a valid device.
                to_result(unsafe {
                    bindings::__xdp_rxq_info_reg(slot, dev.as_raw(), queue_index, napi_id, 0)
                })?;
                // SAFETY: `slot` is registered; `raw_pool` is the live page pool `pool` (owned by
                // this initialiser until it is stored or dropped), of which the registration
                // takes a reference of its own.
                let ret = to_result(unsafe {
                    bindings::xdp_rxq_info_reg_mem_model(
                        slot,
                        bindings::xdp_mem_type_MEM_TYPE_PAGE_POOL,
                        raw_pool.cast(),
                    )
                });
                if ret.is_err() {
                    // SAFETY: `slot` is registered and not used after this.
                    unsafe { bindings::xdp_rxq_info_unreg(slot) };
                }
                ret
            }),
            dev: dev.into(),
            pool,
        }? Error)
    }

    /// The page pool of the queue's buffers: pages to run programs on ([`RxqInfo::run`]) come
    /// from it.
    pub fn pool(&self) -> &PagePool {
        &self.pool
    }

    /// The queue index it was registered with.
    pub fn queue_index(&self) -> u32 {
        // SAFETY: `raw` is initialised (type invariant); the field does not change.
        unsafe { (*self.raw.get()).queue_index }
    }

    /// Runs `prog` on the `len` bytes at `headroom` in `page` (`bpf_prog_run_xdp()` over a
    /// buffer of the whole page, `xdp_init_buff()` + `xdp_prepare_buff()`), and acts on its
    /// verdict as the C drivers do: `XDP_TX` converts the buffer into a [`Frame`]
    /// (`xdp_convert_buff_to_frame()`), `XDP_REDIRECT` calls `xdp_do_redirect()`, failures and
    /// `XDP_ABORTED` are traced (`trace_xdp_exception()`), unknown actions warned about
    /// (`bpf_warn_invalid_xdp_action()`) and dropped.
    ///
    /// The page comes from a page pool, normally the queue's [`pool`](RxqInfo::pool); a frame
    /// goes back to the pool of its page. Fails with [`EINVAL`], giving the page back, if the
    /// data does not fit the page. Call from the NAPI poll of the queue (softirq context).
    pub fn run(
        &self,
        prog: &Prog,
        page: PoolPage,
        headroom: usize,
        len: usize,
    ) -> core::result::Result<Verdict, (PoolPage, Error)> {
        if headroom.checked_add(len).is_none_or(|end| end > PAGE_SIZE) {
            return Err((page, EINVAL));
        }
        // SAFETY: `page` is an order-0 page we own (pool pages are in the direct map); its kernel
        // address is valid for PAGE_SIZE bytes.
        let start = unsafe { bindings::page_address(page.as_ptr()) }.cast::<u8>();
        let mut buff = core::mem::MaybeUninit::<bindings::xdp_buff>::zeroed();
        let xdp = buff.as_mut_ptr();
        // SAFETY: `xdp` is a valid, zeroed `xdp_buff`; `self.raw` is registered and outlives the
        // buffer; `start` spans the page of `PAGE_SIZE` bytes and `headroom + len` is within it.
        unsafe {
            bindings::xdp_init_buff(xdp, PAGE_SIZE as u32, self.raw.get());
            bindings::xdp_prepare_buff(xdp, start, headroom as c_int, len as c_int, false);
        }
        // SAFETY: `prog` is a valid program; `xdp` a prepared buffer whose memory we own. The
        // program may write the page between `data_hard_start` and `xdp_data_hard_end()`.
        let raw_act = unsafe { bindings::bpf_prog_run_xdp(prog.as_raw(), xdp) };
        let dev = self.dev.as_raw();
        // SAFETY: `xdp` is still valid.
        let (data, data_end, hard_end) = unsafe {
            (
                (*xdp).data as usize,
                (*xdp).data_end as usize,
                bindings::xdp_data_hard_end(xdp) as usize,
            )
        };
        let base = start as usize;
        // The helpers keep data and data_end within the buffer; check anyway before trusting
        // them for the page geometry.
        let geometry_ok = base <= data && data <= data_end && data_end <= base + PAGE_SIZE;
        let exception = |act: u32| {
            // SAFETY: `dev` and `prog` are valid; the tracepoint only reads them.
            unsafe { bindings::trace_xdp_exception(dev, prog.as_raw(), act) };
        };
        let action = Action::from_raw(raw_act);
        let verdict = match action {
            Some(Action::Pass) if geometry_ok => Verdict::Pass {
                page,
                offset: data - base,
                len: data_end - data,
            },
            Some(Action::Tx) if geometry_ok && data_end <= hard_end => {
                // SAFETY: `xdp` is a valid buffer of the registered queue (not an AF_XDP one).
                match NonNull::new(unsafe { bindings::xdp_convert_buff_to_frame(xdp) }) {
                    Some(frame) => {
                        // The frame now owns the page's pool reference (returned to the pool,
                        // `MEM_TYPE_PAGE_POOL`).
                        let _ = page.into_raw();
                        // INVARIANT: We own the frame and its page reference.
                        Verdict::Tx(Frame(frame))
                    }
                    None => {
                        exception(raw_act);
                        Verdict::Drop { page, action }
                    }
                }
            }
            Some(Action::Redirect) if geometry_ok && data_end <= hard_end => {
                // SAFETY: `dev` is the device of the queue, `xdp` a valid buffer, `prog` the
                // program that set up the redirect; on success the redirect code owns the page.
                let err = unsafe { bindings::xdp_do_redirect(dev, xdp, prog.as_raw()) };
                if err == 0 {
                    let _ = page.into_raw();
                    Verdict::Redirected
                } else {
                    exception(raw_act);
                    Verdict::Drop { page, action }
                }
            }
            Some(Action::Drop) => Verdict::Drop { page, action },
            Some(_) => {
                // XDP_ABORTED, or TX/REDIRECT/PASS with a buffer we cannot use.
                exception(raw_act);
                Verdict::Drop { page, action }
            }
            None => {
                // SAFETY: `dev` and `prog` are valid.
                unsafe { bindings::bpf_warn_invalid_xdp_action(dev, prog.as_raw(), raw_act) };
                Verdict::Drop { page, action }
            }
        };
        Ok(verdict)
    }
}

#[pinned_drop]
impl PinnedDrop for RxqInfo {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `raw` is registered (type invariant) and no buffer refers to it any more: the
        // buffers of `run` live only during the call.
        unsafe { bindings::xdp_rxq_info_unreg(self.raw.get()) };
    }
}

/// Sends the packets redirected during this NAPI poll (`xdp_do_flush()`); call before the poll
/// ends if any [`Verdict::Redirected`] was seen.
pub fn flush() {
    // SAFETY: Called in the NAPI poll (softirq), where redirects are queued per CPU.
    unsafe { bindings::xdp_do_flush() };
}

/// An XDP frame (`struct xdp_frame`) to transmit: a single buffer in one page, with its memory
/// model. Dropping it returns the memory to its owner (`xdp_return_frame()`).
///
/// # Invariants
///
/// `self.0` points to a valid frame owned by `self`.
pub struct Frame(NonNull<bindings::xdp_frame>);

// SAFETY: A frame may be returned on any CPU (`xdp_return_frame()` handles every memory model
// from any context).
unsafe impl Send for Frame {}
// SAFETY: `&Frame` only reads the frame.
unsafe impl Sync for Frame {}

impl Frame {
    /// Length of the packet.
    pub fn len(&self) -> usize {
        // SAFETY: `self.0` is valid (type invariant).
        unsafe { (*self.0.as_ptr()).len as usize }
    }

    /// Whether the packet is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the frame has fragments beyond its first buffer (multi-buffer).
    pub fn has_frags(&self) -> bool {
        // SAFETY: `self.0` is valid.
        unsafe { bindings::xdp_frame_has_frags(self.0.as_ptr()) }
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: `self.0` is valid.
        unsafe { (*self.0.as_ptr()).data.cast() }
    }

    /// Offset of the packet data in its (kernel) page.
    pub fn offset_in_page(&self) -> usize {
        self.data() as usize % PAGE_SIZE
    }

    /// Whether the packet lies within one page (the first piece is granted or copied per page).
    pub fn in_one_page(&self) -> bool {
        self.offset_in_page() + self.len() <= PAGE_SIZE
    }

    /// The page holding the start of the packet data.
    pub fn page_ptr(&self) -> *mut bindings::page {
        // SAFETY: The data of a frame is in the kernel's direct map.
        unsafe { bindings::virt_to_page(self.data().cast::<core::ffi::c_void>()) }
    }

    /// Copies the packet (it must lie in one page) to the start of `page` and zeroes the rest of
    /// it, so that nothing else of this kernel is in the page.
    pub fn copy_to_page_zero_rest(&self, page: &mut Page) -> Result {
        if !self.in_one_page() {
            return Err(EINVAL);
        }
        let len = self.len();
        // SAFETY: The frame's data is valid for `len` bytes (checked to be in one page).
        unsafe { page.write_raw(self.data(), 0, len)? };
        // SAFETY: `page` is ours; `len <= PAGE_SIZE`.
        unsafe { page.fill_zero_raw(len, PAGE_SIZE - len) }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // SAFETY: We own the frame (type invariant); it is not used after this.
        unsafe { bindings::xdp_return_frame(self.0.as_ptr()) };
    }
}

/// The frames of one `ndo_xdp_xmit` call, given to
/// [`Operations::xdp_xmit`](super::dev::Operations::xdp_xmit).
///
/// The driver takes frames in order with [`XmitFrames::take`]; a taken frame is the driver's
/// (sent, or dropped, which returns it). The caller returns the frames not taken.
pub struct XmitFrames<'a> {
    frames: &'a [*mut bindings::xdp_frame],
    taken: usize,
    flush: bool,
}

impl<'a> XmitFrames<'a> {
    /// Wraps the array of an `ndo_xdp_xmit` call.
    ///
    /// # Safety
    ///
    /// Every non-NULL pointer of `frames` is a valid frame whose ownership passes to whoever
    /// takes it from the returned value; the caller frees only the ones not taken (the first
    /// [`XmitFrames::taken`] entries are taken).
    pub unsafe fn from_raw(frames: &'a [*mut bindings::xdp_frame], flush: bool) -> Self {
        Self {
            frames,
            taken: 0,
            flush,
        }
    }

    /// Number of frames not taken yet.
    pub fn remaining(&self) -> usize {
        self.frames.len() - self.taken
    }

    /// Number of frames taken.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// Whether the caller asked for the ring to be kicked now (`XDP_XMIT_FLUSH`).
    pub fn flush(&self) -> bool {
        self.flush
    }

    /// Takes the next frame.
    pub fn take(&mut self) -> Option<Frame> {
        while let Some(&raw) = self.frames.get(self.taken) {
            self.taken += 1;
            if let Some(ptr) = NonNull::new(raw) {
                // INVARIANT: Ownership passes to us (safety requirements of `from_raw`).
                return Some(Frame(ptr));
            }
        }
        None
    }
}

#[kunit_tests(rust_xdp)]
mod tests {
    use super::*;
    use crate::{
        alloc::flags::{
            __GFP_ZERO, //
            GFP_ATOMIC,
        },
        net::{
            dev::{
                self,
                NetdevTx,
                Options,
                Registration, //
            },
            ethtool,
            skb::SkBuff,
            stats::Counter,
        },
        sync::{
            new_spinlock_bh,
            SpinLockBh, //
        },
    };

    /// A classic BPF program of one instruction, `ret #k` (`bpf_prog_create()`): converted to
    /// eBPF it returns `k` without reading its context, so it runs as an XDP program too.
    struct ConstProg(*mut bindings::bpf_prog);

    impl ConstProg {
        fn new(k: u32) -> Result<Self> {
            let mut insn = bindings::sock_filter {
                code: (bindings::BPF_RET | bindings::BPF_K) as u16,
                jt: 0,
                jf: 0,
                k,
            };
            let mut fprog = bindings::sock_fprog_kern {
                len: 1,
                filter: &mut insn,
            };
            let mut prog = core::ptr::null_mut();
            // SAFETY: `fprog` describes one valid instruction; the filter is copied.
            to_result(unsafe { bindings::bpf_prog_create(&mut prog, &mut fprog) })?;
            // A created program starts without references (only loaded ones start with one):
            // give it the one `ConstProg` owns, so that `Prog` references can come and go.
            // SAFETY: `prog` is a new program no one else knows of yet.
            unsafe { (*(*prog).aux).refcnt.counter = 1 };
            Ok(Self(prog))
        }

        fn prog(&self) -> Result<Prog> {
            // SAFETY: `self.0` is a program we hold the creation reference of.
            unsafe { Prog::get(self.0) }.ok_or(EINVAL)
        }
    }

    impl Drop for ConstProg {
        fn drop(&mut self) {
            // SAFETY: We own the last reference (every `Prog` is gone): this frees the program.
            unsafe { bindings::bpf_prog_put(self.0) };
        }
    }

    #[pin_data]
    struct XdpNet {
        #[pin]
        prog: SpinLockBh<Option<Prog>>,
        setups: Counter,
        xmitted: Counter,
    }

    #[vtable]
    impl dev::Operations for XdpNet {
        fn start_xmit(_: &Device, _: Pin<&Self>, skb: SkBuff) -> NetdevTx {
            skb.consume();
            NetdevTx::Ok
        }

        fn bpf(_: &Device, this: Pin<&Self>, bpf: &mut Bpf<'_>) -> Result {
            match bpf.command() {
                BpfCommand::SetupProg => {
                    this.setups.inc();
                    let new = bpf.prog();
                    if new.as_ref().is_some_and(Prog::has_frags) {
                        bpf.set_error(c"no multi-buffer XDP");
                        return Err(EOPNOTSUPP);
                    }
                    let old = core::mem::replace(&mut *this.prog.lock(), new);
                    drop(old);
                    Ok(())
                }
                BpfCommand::Other(_) => Err(EINVAL),
            }
        }

        fn xdp_xmit(_: &Device, this: Pin<&Self>, frames: &mut XmitFrames<'_>) -> Result {
            // Takes (and drops: returns) at most two frames.
            for _ in 0..2 {
                let Some(frame) = frames.take() else { break };
                this.xmitted.add(frame.len() as u64);
            }
            Ok(())
        }
    }

    #[vtable]
    impl ethtool::Operations for XdpNet {}

    fn xdp_net() -> impl PinInit<XdpNet> {
        pin_init!(XdpNet {
            prog <- new_spinlock_bh!(None),
            setups: Counter::new(),
            xmitted: Counter::new(),
        })
    }

    #[test]
    fn actions() {
        for (raw, act) in [
            (0, Action::Aborted),
            (1, Action::Drop),
            (2, Action::Pass),
            (3, Action::Tx),
            (4, Action::Redirect),
        ] {
            assert_eq!(Action::from_raw(raw), Some(act));
            assert_eq!(act as u32, raw);
        }
        assert_eq!(Action::from_raw(5), None);
        assert_eq!(Action::from_raw(u32::MAX), None);
        assert_eq!(PACKET_HEADROOM, 256);
    }

    /// Runs real programs on a buffer of a registered queue and checks what becomes of the page.
    #[test]
    fn run_programs() -> Result {
        let reg = Registration::new(&Options::new(), xdp_net())?;
        let pool = PagePool::new(reg.device(), 64)?;
        let rxq = KBox::pin_init(RxqInfo::new(reg.device(), 0, 0, pool), GFP_KERNEL)?;
        let page = || rxq.pool().alloc(GFP_ATOMIC | __GFP_ZERO);

        let pass = ConstProg::new(bindings::xdp_action_XDP_PASS)?;
        let drop_prog = ConstProg::new(bindings::xdp_action_XDP_DROP)?;
        let aborted = ConstProg::new(bindings::xdp_action_XDP_ABORTED)?;
        let tx = ConstProg::new(bindings::xdp_action_XDP_TX)?;
        let bogus = ConstProg::new(77)?;
        let (pass, drop_prog, aborted, tx, bogus) = (
            pass.prog()?,
            drop_prog.prog()?,
            aborted.prog()?,
            tx.prog()?,
            bogus.prog()?,
        );

        // Programs run with migration (here: bottom halves) disabled, as in a NAPI poll.
        let bh_lock = KBox::pin_init(new_spinlock_bh!(()), GFP_KERNEL)?;
        let bh = bh_lock.lock();

        // PASS keeps the geometry (the program does not move data).
        let v = rxq.run(&pass, page()?, PACKET_HEADROOM, 60);
        assert!(matches!(
            v,
            Ok(Verdict::Pass {
                offset: PACKET_HEADROOM,
                len: 60,
                ..
            })
        ));
        let v = rxq.run(&drop_prog, page()?, PACKET_HEADROOM, 60);
        assert!(matches!(
            v,
            Ok(Verdict::Drop {
                action: Some(Action::Drop),
                ..
            })
        ));
        let v = rxq.run(&aborted, page()?, PACKET_HEADROOM, 60);
        assert!(matches!(
            v,
            Ok(Verdict::Drop {
                action: Some(Action::Aborted),
                ..
            })
        ));
        // An unknown action is warned about and dropped.
        let v = rxq.run(&bogus, page()?, PACKET_HEADROOM, 60);
        assert!(matches!(v, Ok(Verdict::Drop { action: None, .. })));
        // TX: the page becomes a frame with the packet where it was.
        let v = rxq.run(&tx, page()?, PACKET_HEADROOM, 100);
        assert!(matches!(v, Ok(Verdict::Tx(_))));
        if let Ok(Verdict::Tx(frame)) = v {
            assert_eq!(frame.len(), 100);
            assert_eq!(frame.offset_in_page(), PACKET_HEADROOM);
            assert!(frame.in_one_page() && !frame.has_frags());
            let mut copy = Page::alloc_page(GFP_ATOMIC | __GFP_ZERO)?;
            assert!(frame.copy_to_page_zero_rest(&mut copy).is_ok());
            // Dropping the frame returns the page to the pool.
            drop(frame);
        }
        // Without room for the frame header in the headroom, TX fails and drops.
        let v = rxq.run(&tx, page()?, 0, 100);
        assert!(matches!(
            v,
            Ok(Verdict::Drop {
                action: Some(Action::Tx),
                ..
            })
        ));
        // Data beyond the page is refused before the program runs.
        assert!(rxq.run(&pass, page()?, PACKET_HEADROOM, PAGE_SIZE).is_err());
        assert!(rxq.run(&pass, page()?, PAGE_SIZE + 1, 0).is_err());
        assert!(rxq.run(&pass, page()?, 0, PAGE_SIZE).is_ok());
        drop(bh);

        // Program references: clones and drops balance (the creator's reference remains).
        let q = pass.clone();
        assert_eq!(pass.as_raw(), q.as_raw());
        assert!(!pass.has_frags());
        drop((pass, q, drop_prog, aborted, tx, bogus));
        drop(rxq);
        drop(reg);
        Ok(())
    }

    /// `ndo_bpf` and `ndo_xdp_xmit` through the device's operations table.
    #[test]
    fn ndo_bpf_and_xmit() -> Result {
        let reg = Registration::new(&Options::new(), xdp_net())?;
        let dev = reg.device();
        let raw = dev.as_raw();
        // SAFETY: `raw` is a registered device.
        let (ops, features) = unsafe { ((*raw).netdev_ops, (*raw).xdp_features) };
        assert_eq!(features, 0);
        {
            let rtnl = dev::RtnlGuard::lock();
            dev.set_xdp_features(
                &rtnl,
                Features::BASIC | Features::REDIRECT | Features::NDO_XMIT,
            );
        }
        // SAFETY: As above.
        let features = unsafe { (*raw).xdp_features };
        assert_eq!(features, 7);
        {
            let rtnl = dev::RtnlGuard::lock();
            dev.set_xdp_features(&rtnl, Features::NONE);
        }
        // SAFETY: As above.
        let features = unsafe { (*raw).xdp_features };
        assert_eq!(features, 0);

        // SAFETY: `ops` is the device's operations table, valid while it is registered.
        let (ndo_bpf, ndo_xmit) = unsafe { ((*ops).ndo_bpf, (*ops).ndo_xdp_xmit) };
        assert!(ndo_bpf.is_some() && ndo_xmit.is_some());
        let (Some(ndo_bpf), Some(ndo_xmit)) = (ndo_bpf, ndo_xmit) else {
            return Err(EINVAL);
        };
        let cp = ConstProg::new(bindings::xdp_action_XDP_DROP)?;
        let setup = |prog| bindings::netdev_bpf__bindgen_ty_1__bindgen_ty_1 {
            flags: 0,
            prog,
            extack: core::ptr::null_mut(),
        };
        // SAFETY: All-zero is a valid `netdev_bpf`.
        let mut cmd: bindings::netdev_bpf = unsafe { core::mem::zeroed() };
        cmd.command = bindings::bpf_netdev_command_XDP_SETUP_PROG;
        cmd.__bindgen_anon_1.__bindgen_anon_1 = setup(cp.0);
        let ret = {
            let _rtnl = dev::RtnlGuard::lock();
            // SAFETY: A valid request for a registered device, under RTNL as the stack calls it.
            unsafe { ndo_bpf(raw, &mut cmd) }
        };
        assert_eq!(ret, 0);
        assert_eq!(reg.data().setups.get(), 1);
        assert!(reg.data().prog.lock().is_some());
        // Detach.
        cmd.__bindgen_anon_1.__bindgen_anon_1 = setup(core::ptr::null_mut());
        let ret = {
            let _rtnl = dev::RtnlGuard::lock();
            // SAFETY: As above.
            unsafe { ndo_bpf(raw, &mut cmd) }
        };
        assert_eq!(ret, 0);
        assert!(reg.data().prog.lock().is_none());
        // Other commands are refused.
        cmd.command = bindings::bpf_netdev_command_XDP_SETUP_PROG_HW + 100;
        // SAFETY: As above; the driver looks at nothing but the command.
        let ret = unsafe { ndo_bpf(raw, &mut cmd) };
        assert_eq!(ret, EINVAL.to_errno());

        // Bad flags are refused before the driver sees the frames.
        let mut none: [*mut bindings::xdp_frame; 0] = [];
        // SAFETY: An empty array.
        let ret = unsafe { ndo_xmit(raw, 0, none.as_mut_ptr(), 0x100) };
        assert_eq!(ret, EINVAL.to_errno());

        // Three frames from XDP_TX of a queue: the driver takes two, the third is ours again.
        let rxq = KBox::pin_init(RxqInfo::new(dev, 0, 0, PagePool::new(dev, 64)?), GFP_KERNEL)?;
        let tx = ConstProg::new(bindings::xdp_action_XDP_TX)?;
        let txp = tx.prog()?;
        let mut raws: KVec<*mut bindings::xdp_frame> = KVec::with_capacity(3, GFP_KERNEL)?;
        let bh_lock = KBox::pin_init(new_spinlock_bh!(()), GFP_KERNEL)?;
        let bh = bh_lock.lock();
        for len in [60usize, 70, 80] {
            let page = rxq.pool().alloc(GFP_ATOMIC | __GFP_ZERO)?;
            if let Ok(Verdict::Tx(f)) = rxq.run(&txp, page, PACKET_HEADROOM, len) {
                let f = core::mem::ManuallyDrop::new(f);
                raws.push(f.0.as_ptr(), GFP_ATOMIC)?;
            }
        }
        drop(bh);
        assert_eq!(raws.len(), 3);
        if raws.len() != 3 {
            return Err(EINVAL);
        }
        // SAFETY: Three valid frames whose ownership passes to the device.
        let ret = unsafe { ndo_xmit(raw, 3, raws.as_mut_ptr(), bindings::XDP_XMIT_FLUSH) };
        assert_eq!(ret, 2);
        assert_eq!(reg.data().xmitted.get(), 130);
        // SAFETY: The frame not taken is ours to return.
        unsafe { bindings::xdp_return_frame(raws[2]) };
        drop(txp);
        drop(rxq);
        drop(reg);
        Ok(())
    }
}
