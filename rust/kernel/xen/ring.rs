// SPDX-License-Identifier: GPL-2.0

//! Xen shared I/O rings.
//!
//! A shared ring is memory (usually one page) shared by two domains. The *frontend* produces
//! requests and consumes responses; the *backend* consumes requests and produces responses. Both
//! kinds of message use the same array of slots: the response to a request takes a slot that
//! held an already consumed request. Each side publishes how far it has produced in the ring
//! header (`req_prod`, `rsp_prod`) and says from which index on it wants to be notified
//! (`req_event`, `rsp_event`).
//!
//! This is the protocol of `ring.h` written in Rust (not a wrapper of its macros), hardened
//! against a peer that may write anything into the shared memory at any time:
//!
//! - A slot is copied out of the shared memory exactly once, into a private value. The ring
//!   never hands out references into shared memory, and taking a message moves the consumer index
//!   past its slot, so the slot cannot be read again (no double fetch, XSA-155).
//! - A producer index written by the peer is read once per use (like `READ_ONCE()`) and checked
//!   before any slot is read: an index behind the consumer index, or further ahead of it than the
//!   peer may produce, is a [`ProtocolError`] the caller can act on (mark the device broken,
//!   disable the interface). Nothing in this module panics on what the peer writes.
//! - This end's own indices are kept privately and never read back from shared memory.
//! - The barriers are the `virt_*()` ones, which stay real barriers on `!CONFIG_SMP` kernels.
//! - Index arithmetic wraps around at 2^32, as the protocol defines.
//!
//! The memory of a ring is anything that implements [`RingMemory`]: a page granted to the
//! other domain, a page mapped from it, or (in tests) an ordinary allocation.
//!
//! C header: [`include/xen/interface/io/ring.h`](srctree/include/xen/interface/io/ring.h)
//!
//! # Examples
//!
//! Both ends of a ring on one page of ordinary memory:
//!
//! ```
//! use core::ptr::NonNull;
//! use kernel::{
//!     types::Opaque,
//!     xen::ring::{
//!         BackRing,
//!         FrontRing,
//!         RingMemory, //
//!     },
//! };
//!
//! #[repr(C, align(4096))]
//! #[derive(Zeroable)]
//! struct Page(Opaque<[u8; 4096]>);
//!
//! // SAFETY: The pointer is that of the page, valid for 4096 bytes for as long as the reference
//! // is, and its contents are only accessed through the rings.
//! unsafe impl RingMemory for &Page {
//!     fn as_ptr(&self) -> NonNull<u8> {
//!         NonNull::from(&self.0).cast()
//!     }
//!
//!     fn size(&self) -> usize {
//!         4096
//!     }
//! }
//!
//! let page = KBox::<Page>::zeroed(GFP_KERNEL)?;
//! let mut front = FrontRing::<u64, u32, _>::new(&*page)?;
//! let mut back = BackRing::<u64, u32, _>::attach(&*page)?;
//!
//! front.push_request(0x1234_5678_9abc_def0)?;
//! let notify = front.push_requests_and_check_notify();
//! assert!(notify);
//!
//! let mut answers = KVec::new();
//! for request in back.requests()? {
//!     answers.push(request as u32, GFP_KERNEL)?;
//! }
//! for answer in answers {
//!     back.push_response(answer)?;
//! }
//! back.push_responses_and_check_notify();
//!
//! assert_eq!(front.responses()?.next(), Some(0x9abc_def0));
//! assert!(!front.final_check_for_responses()?);
//! # Ok::<(), Error>(())
//! ```

use crate::{
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
    xen::{
        virt_mb,
        virt_rmb,
        virt_wmb, //
    },
};
use core::{
    iter::FusedIterator,
    marker::PhantomData,
    ptr::NonNull, //
};

/// A ring index (`RING_IDX`).
///
/// Indices run freely and wrap around at 2^32; index `i` uses slot `i % size` of a ring with
/// `size` slots.
pub type RingIdx = u32;

/// Size of the header of a shared ring; the slots start at this offset.
pub const HEADER_SIZE: usize = 64;

/// The header of a shared ring (`struct *_sring` without its slots).
///
/// All fields are atomics: the other domain may write them at any time.
#[repr(C)]
struct Header {
    req_prod: Atomic<RingIdx>,
    req_event: Atomic<RingIdx>,
    rsp_prod: Atomic<RingIdx>,
    rsp_event: Atomic<RingIdx>,
    pad: [Atomic<u32>; 12],
}

static_assert!(size_of::<Header>() == HEADER_SIZE);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Returns the alignment a ring with requests `Req` and responses `Rsp` needs.
const fn ring_align<Req, Rsp>() -> usize {
    max(
        align_of::<Header>(),
        max(align_of::<Req>(), align_of::<Rsp>()),
    )
}

/// Returns the size of one slot of a ring with requests `Req` and responses `Rsp`.
///
/// A slot holds either a request or a response, like the C `union *_sring_entry`: its size is
/// that of the larger one, rounded up to the alignment of both.
pub const fn slot_size<Req, Rsp>() -> usize {
    max(size_of::<Req>(), size_of::<Rsp>())
        .next_multiple_of(max(align_of::<Req>(), align_of::<Rsp>()))
}

/// Returns the number of slots of a ring with requests `Req` and responses `Rsp` in `bytes` bytes
/// of memory (`__CONST_RING_SIZE()`).
///
/// This is the largest power of two of slots that fits after the header, or 0 if not even one
/// slot fits.
///
/// # Examples
///
/// ```
/// use kernel::xen::ring::ring_size;
///
/// // (4096 - 64) / 8 = 504 slots fit, rounded down to a power of two.
/// assert_eq!(ring_size::<u64, u32>(4096), 256);
/// assert_eq!(ring_size::<u64, u32>(64 + 8), 1);
/// assert_eq!(ring_size::<u64, u32>(64), 0);
/// ```
pub const fn ring_size<Req, Rsp>(bytes: usize) -> u32 {
    let slot = slot_size::<Req, Rsp>();
    if slot == 0 || bytes < HEADER_SIZE {
        return 0;
    }
    let slots = (bytes - HEADER_SIZE) / slot;
    if slots == 0 {
        return 0;
    }
    // Index arithmetic needs the ring to be at most half the index space.
    let log2 = usize::BITS - 1 - slots.leading_zeros();
    if log2 > 31 {
        1 << 31
    } else {
        1 << log2
    }
}

/// Returns whether a producer that moved its index from `old` to `new` must notify the consumer,
/// which asked to be notified once the index passes `event` (`RING_PUSH_*_AND_CHECK_NOTIFY()`).
///
/// This is the case if `event` lies in `old + 1 ..= new`, modulo 2^32.
const fn need_notify(old: RingIdx, new: RingIdx, event: RingIdx) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// A snapshot of the indices of a back ring, for diagnostics (what C netback's debugfs file
/// `io_ring_q<N>` shows).
///
/// The indices published in the shared page are read once each, without ordering: the other
/// domain may change them at any time, and they are not checked. Do not use them to access the
/// ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackRingIndices {
    /// The number of slots of the ring.
    pub size: u32,
    /// The request producer index the frontend published (`sring->req_prod`).
    pub req_prod: RingIdx,
    /// The index at which the frontend notifies the backend of new requests (`req_event`).
    pub req_event: RingIdx,
    /// The response producer index the backend published (`sring->rsp_prod`).
    pub rsp_prod: RingIdx,
    /// The index at which the backend notifies the frontend of new responses (`rsp_event`).
    pub rsp_event: RingIdx,
    /// The index of the next request the backend consumes (`req_cons`).
    pub req_cons: RingIdx,
    /// The index the backend writes its next response to (`rsp_prod_pvt`).
    pub rsp_prod_pvt: RingIdx,
}

/// The other domain broke the ring protocol.
///
/// It published a producer index that is behind this end's consumer index, or further ahead of
/// it than it may produce (more messages than the ring holds, or responses to requests that were
/// never published). The ring cannot be used any more: stop using it and report the device as
/// broken. Converts to [`EIO`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// The producer index the other domain published.
    pub prod: RingIdx,
    /// The consumer index of this end.
    pub cons: RingIdx,
}

impl From<ProtocolError> for Error {
    fn from(_: ProtocolError) -> Self {
        EIO
    }
}

/// Memory that holds a shared ring, such as a page granted to or mapped from another domain.
///
/// # Safety
///
/// For as long as a value of the implementing type exists:
///
/// - [`RingMemory::as_ptr`] always returns the same pointer and [`RingMemory::size`] always the
///   same size, and the memory is valid for reads and writes of that many bytes;
/// - in this kernel, the memory is accessed only through the ring types of this module (never
///   through Rust references); the other domain may read and write it at any time.
pub unsafe trait RingMemory {
    /// Returns the address of the memory.
    fn as_ptr(&self) -> NonNull<u8>;

    /// Returns the size of the memory in bytes.
    fn size(&self) -> usize;
}

/// A shared ring in memory `M`, with requests `Req` and responses `Rsp`.
///
/// # Invariants
///
/// - `size` is a power of two and not zero.
/// - `mem` holds the header and `size` slots of `slot_size::<Req, Rsp>()` bytes, and is aligned
///   to `ring_align::<Req, Rsp>()`.
struct Shared<Req, Rsp, M> {
    mem: M,
    size: u32,
    _messages: PhantomData<fn(Req) -> Rsp>,
}

impl<Req, Rsp, M> Shared<Req, Rsp, M>
where
    Req: FromBytes + IntoBytes,
    Rsp: FromBytes + IntoBytes,
    M: RingMemory,
{
    /// The size of a slot, `slot_size::<Req, Rsp>()`.
    ///
    /// An associated constant, so that it is computed at build time: calls of the `const fn`s at
    /// run time are not always inlined, and would leave panic paths (division by zero, overflow)
    /// behind.
    const SLOT_SIZE: usize = slot_size::<Req, Rsp>();

    /// The mask of the address bits that must be zero for the memory to be aligned to
    /// `ring_align::<Req, Rsp>()` (a power of two, like all alignments).
    const ALIGN_MASK: usize = ring_align::<Req, Rsp>() - 1;

    fn new(mem: M) -> Result<Self> {
        // The slots start at `HEADER_SIZE`, which must keep them aligned.
        const_assert!(HEADER_SIZE % ring_align::<Req, Rsp>() == 0);

        let size = ring_size::<Req, Rsp>(mem.size());
        if size == 0 || mem.as_ptr().addr().get() & Self::ALIGN_MASK != 0 {
            return Err(EINVAL);
        }

        // INVARIANT: `ring_size()` returns a power of two of slots that fit after the header, and
        // the alignment was just checked.
        Ok(Self {
            mem,
            size,
            _messages: PhantomData,
        })
    }

    fn header(&self) -> &Header {
        // CAST: By the type invariants, `mem` holds a `Header` at its start and is aligned for it.
        let header = self.mem.as_ptr().as_ptr().cast::<Header>();
        // SAFETY: The header is valid for as long as `self.mem` is (`RingMemory`). All its fields
        // are atomics, so a shared reference to it allows the accesses of the other domain, and all
        // accesses from this kernel go through atomics too.
        unsafe { &*header }
    }

    /// Returns a pointer to the slot of index `idx`, valid for one `T`.
    fn slot<T>(&self, idx: RingIdx) -> *mut T {
        const_assert!(size_of::<T>() <= slot_size::<Req, Rsp>());
        const_assert!(align_of::<T>() <= ring_align::<Req, Rsp>());

        // By the type invariants, `size` is not zero and `mem` holds the header and `size` slots:
        // the offset of slot `idx % size` does not overflow. Wrapping arithmetic says so to the
        // compiler, which leaves no overflow check (a panic path) behind.
        let slot = (idx & self.size.wrapping_sub(1)) as usize;
        // By the type invariants, the slot lies within `self.mem` and is aligned for `T` (checked
        // above), so the pointer is valid for one `T`.
        self.mem
            .as_ptr()
            .as_ptr()
            .wrapping_add(HEADER_SIZE.wrapping_add(slot.wrapping_mul(Self::SLOT_SIZE)))
            .cast::<T>()
    }

    /// Copies the message out of the slot of index `idx`.
    fn read<T: FromBytes>(&self, idx: RingIdx) -> T {
        // SAFETY: `slot()` is valid for one `T`; the volatile read is one copy even if the peer
        // writes concurrently (as `RING_COPY_*()`, allowed by LKMM); any bytes are a valid `T:
        // FromBytes`.
        unsafe { self.slot::<T>(idx).read_volatile() }
    }

    /// Copies `value` into the slot of index `idx`.
    fn write<T: IntoBytes>(&self, idx: RingIdx, value: T) {
        // SAFETY: `slot()` is valid for one `T`; a volatile write racing the peer is allowed by
        // LKMM; `T: IntoBytes` writes no uninitialised padding to the other domain.
        unsafe { self.slot::<T>(idx).write_volatile(value) };
    }
}

/// The frontend end of a shared ring: it produces requests `Req` and consumes responses `Rsp`.
///
/// Requests are written with [`FrontRing::push_request`] and published with
/// [`FrontRing::push_requests_and_check_notify`]; responses are taken with
/// [`FrontRing::responses`].
///
/// # Invariants
///
/// - `req_prod_pvt - rsp_cons <= shared.size` (modulo 2^32): at most a ring's worth of requests
///   is in flight.
/// - `req_prod - rsp_cons <= req_prod_pvt - rsp_cons` (modulo 2^32): the published request
///   producer index lies between the response consumer index and the private one.
pub struct FrontRing<Req, Rsp, M> {
    shared: Shared<Req, Rsp, M>,
    req_prod_pvt: RingIdx,
    req_prod: RingIdx,
    rsp_cons: RingIdx,
}

impl<Req, Rsp, M> FrontRing<Req, Rsp, M>
where
    Req: FromBytes + IntoBytes,
    Rsp: FromBytes + IntoBytes,
    M: RingMemory,
{
    /// Initialises a shared ring in `mem` and attaches the frontend to it
    /// (`XEN_FRONT_RING_INIT()`).
    ///
    /// Fails with [`EINVAL`] if `mem` is too small for one slot or not aligned for the messages.
    pub fn new(mem: M) -> Result<Self> {
        Self::new_at(mem, 0)
    }

    /// Like [`FrontRing::new`], with all indices starting at `start` instead of 0.
    fn new_at(mem: M, start: RingIdx) -> Result<Self> {
        let shared = Shared::new(mem)?;
        let header = shared.header();
        header.req_prod.store(start, Relaxed);
        header.rsp_prod.store(start, Relaxed);
        header.req_event.store(start.wrapping_add(1), Relaxed);
        header.rsp_event.store(start.wrapping_add(1), Relaxed);
        for pad in &header.pad {
            pad.store(0, Relaxed);
        }

        // INVARIANT: Nothing is in flight.
        Ok(Self {
            shared,
            req_prod_pvt: start,
            req_prod: start,
            rsp_cons: start,
        })
    }

    /// Returns the number of slots of the ring (`RING_SIZE()`).
    pub fn size(&self) -> u32 {
        self.shared.size
    }

    /// Returns the memory of the ring.
    pub fn memory(&self) -> &M {
        &self.shared.mem
    }

    /// Returns the index the next request will be written to.
    pub fn req_prod_pvt(&self) -> RingIdx {
        self.req_prod_pvt
    }

    /// Returns the index of the next response to consume.
    pub fn rsp_cons(&self) -> RingIdx {
        self.rsp_cons
    }

    /// Returns the number of requests that can be written before the ring is full
    /// (`RING_FREE_REQUESTS()`).
    pub fn free_requests(&self) -> u32 {
        // By the type invariants, this does not underflow.
        self.size() - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Returns whether every slot is taken by a request in flight (`RING_FULL()`).
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Writes `req` to the next free slot.
    ///
    /// The request is not visible to the backend until it is published with
    /// [`FrontRing::push_requests_and_check_notify`] or [`FrontRing::push_requests`].
    ///
    /// Fails with [`ENOSPC`] if the ring is full.
    pub fn push_request(&mut self, req: Req) -> Result {
        if self.is_full() {
            return Err(ENOSPC);
        }
        self.shared.write(self.req_prod_pvt, req);
        // INVARIANT: The ring was not full, so at most a ring's worth of requests is in flight.
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the requests written so far (`RING_PUSH_REQUESTS()`).
    pub fn push_requests(&mut self) {
        // The backend must see the requests before the producer index that covers them.
        virt_wmb();
        self.shared
            .header()
            .req_prod
            .store(self.req_prod_pvt, Relaxed);
        // INVARIANT: `req_prod` moves up to `req_prod_pvt`.
        self.req_prod = self.req_prod_pvt;
    }

    /// Publishes the requests written so far and returns whether the backend must be notified
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY()`).
    ///
    /// The backend must be notified if it asked for it (with `req_event`) at an index among the
    /// newly published requests.
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        let old = self.req_prod;
        let new = self.req_prod_pvt;
        self.push_requests();
        // The backend must see the new requests before we look at `req_event`.
        virt_mb();
        need_notify(old, new, self.shared.header().req_event.load(Relaxed))
    }

    /// Reads and checks the response producer index.
    fn rsp_prod(&self) -> Result<RingIdx, ProtocolError> {
        let prod = self.shared.header().rsp_prod.load(Relaxed);
        // Responses may only answer published requests; this also catches a producer index that
        // went backwards (`RING_RESPONSE_PROD_OVERFLOW()`, and more).
        if prod.wrapping_sub(self.rsp_cons) > self.req_prod.wrapping_sub(self.rsp_cons) {
            return Err(ProtocolError {
                prod,
                cons: self.rsp_cons,
            });
        }
        Ok(prod)
    }

    /// Returns the number of responses published and not consumed yet
    /// (`XEN_RING_NR_UNCONSUMED_RESPONSES()`).
    pub fn unconsumed_responses(&self) -> Result<u32, ProtocolError> {
        Ok(self.rsp_prod()?.wrapping_sub(self.rsp_cons))
    }

    /// Returns the responses published so far, to be taken one at a time.
    ///
    /// The response producer index is read once, here. Each response is copied out of the ring
    /// as it is taken, and the consumer index moves past it.
    pub fn responses(&mut self) -> Result<Responses<'_, Req, Rsp, M>, ProtocolError> {
        let prod = self.rsp_prod()?;
        // Read the responses only after the producer index that covers them.
        virt_rmb();
        // INVARIANT: `rsp_prod()` checked `prod`.
        Ok(Responses { ring: self, prod })
    }

    /// Returns whether there are unconsumed responses; if not, asks the backend for a
    /// notification when the next one is published (`RING_FINAL_CHECK_FOR_RESPONSES()`).
    ///
    /// Call this after taking all responses, before waiting for the next notification.
    pub fn final_check_for_responses(&mut self) -> Result<bool, ProtocolError> {
        self.final_check_for_responses_after(1)
    }

    /// As [`Self::final_check_for_responses`], but asks for the notification only when the
    /// `n`-th next response is published: for a frontend that knows no earlier response can be
    /// of use (none of its requests in flight can complete with fewer).
    ///
    /// `n` is bounded by the requests published and not answered yet (a backend that answers
    /// every request reaches it) and is at least one. Returns `true` if there are responses
    /// already, fewer than `n` perhaps: they are to be taken now.
    pub fn final_check_for_responses_after(&mut self, n: u32) -> Result<bool, ProtocolError> {
        if self.unconsumed_responses()? != 0 {
            return Ok(true);
        }
        let n = n.clamp(1, self.req_prod.wrapping_sub(self.rsp_cons).max(1));
        let header = self.shared.header();
        header
            .rsp_event
            .store(self.rsp_cons.wrapping_add(n), Relaxed);
        // The backend must see `rsp_event` before we look at its producer index again.
        virt_mb();
        Ok(self.unconsumed_responses()? != 0)
    }
}

/// The responses published by the backend of a [`FrontRing`], taken one at a time.
///
/// Returned by [`FrontRing::responses`]. Each response is copied out of the shared ring once,
/// when it is taken, and the ring's consumer index moves past it.
///
/// # Invariants
///
/// `prod - ring.rsp_cons <= ring.req_prod - ring.rsp_cons` (modulo 2^32): the responses up to
/// `prod` answer published requests.
pub struct Responses<'a, Req, Rsp, M> {
    ring: &'a mut FrontRing<Req, Rsp, M>,
    prod: RingIdx,
}

impl<Req, Rsp, M> Iterator for Responses<'_, Req, Rsp, M>
where
    Req: FromBytes + IntoBytes,
    Rsp: FromBytes + IntoBytes,
    M: RingMemory,
{
    type Item = Rsp;

    fn next(&mut self) -> Option<Rsp> {
        let ring = &mut *self.ring;
        if ring.rsp_cons == self.prod {
            return None;
        }
        let rsp = ring.shared.read(ring.rsp_cons);
        // INVARIANT: `rsp_cons` moves towards `prod`, which does not pass `req_prod`.
        ring.rsp_cons = ring.rsp_cons.wrapping_add(1);
        Some(rsp)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.prod.wrapping_sub(self.ring.rsp_cons) as usize;
        (len, Some(len))
    }
}

impl<Req, Rsp, M> ExactSizeIterator for Responses<'_, Req, Rsp, M>
where
    Req: FromBytes + IntoBytes,
    Rsp: FromBytes + IntoBytes,
    M: RingMemory,
{
}

impl<Req, Rsp, M> FusedIterator for Responses<'_, Req, Rsp, M>
where
    Req: FromBytes + IntoBytes,
    Rsp: FromBytes + IntoBytes,
    M: RingMemory,
{
}

/// The backend end of a shared ring: it consumes requests `Req` and produces responses `Rsp`.
///
/// Requests are taken with [`BackRing::requests`]; responses are written with
/// [`BackRing::push_response`] and published with [`BackRing::push_responses_and_check_notify`].
///
/// # Invariants
///
/// - `req_cons - rsp_prod_pvt <= shared.size` (modulo 2^32): at most a ring's worth of requests
///   has been taken and not answered yet.
/// - `rsp_prod` is the response producer index published last.
pub struct BackRing<Req, Rsp, M> {
    shared: Shared<Req, Rsp, M>,
    rsp_prod_pvt: RingIdx,
    rsp_prod: RingIdx,
    req_cons: RingIdx,
}

impl<Req, Rsp, M> BackRing<Req, Rsp, M>
where
    Req: FromBytes + IntoBytes,
    Rsp: FromBytes + IntoBytes,
    M: RingMemory,
{
    /// Attaches the backend to the shared ring the frontend initialised in `mem`
    /// (`BACK_RING_ATTACH()` at the published response producer index).
    ///
    /// Fails with [`EINVAL`] if `mem` is too small for one slot or not aligned for the messages,
    /// and with [`EIO`] if the frontend published more requests than the ring holds.
    pub fn attach(mem: M) -> Result<Self> {
        let shared = Shared::new(mem)?;
        let header = shared.header();
        let rsp_prod = header.rsp_prod.load(Relaxed);
        let req_prod = header.req_prod.load(Relaxed);
        if req_prod.wrapping_sub(rsp_prod) > shared.size {
            return Err(EIO);
        }

        // INVARIANT: Nothing has been taken.
        Ok(Self {
            shared,
            rsp_prod_pvt: rsp_prod,
            rsp_prod,
            req_cons: rsp_prod,
        })
    }

    /// Returns the number of slots of the ring (`RING_SIZE()`).
    pub fn size(&self) -> u32 {
        self.shared.size
    }

    /// Returns the memory of the ring.
    pub fn memory(&self) -> &M {
        &self.shared.mem
    }

    /// Returns the index of the next request to consume.
    pub fn req_cons(&self) -> RingIdx {
        self.req_cons
    }

    /// Returns the index the next response will be written to.
    pub fn rsp_prod_pvt(&self) -> RingIdx {
        self.rsp_prod_pvt
    }

    /// Returns a snapshot of the indices of the ring, for diagnostics.
    pub fn indices(&self) -> BackRingIndices {
        let header = self.shared.header();
        BackRingIndices {
            size: self.shared.size,
            req_prod: header.req_prod.load(Relaxed),
            req_event: header.req_event.load(Relaxed),
            rsp_prod: header.rsp_prod.load(Relaxed),
            rsp_event: header.rsp_event.load(Relaxed),
            req_cons: self.req_cons,
            rsp_prod_pvt: self.rsp_prod_pvt,
        }
    }

    /// Reads and checks the request producer index.
    fn req_prod(&self) -> Result<RingIdx, ProtocolError> {
        let prod = self.shared.header().req_prod.load(Relaxed);
        // The frontend cannot have more requests in flight than the ring has slots
        // (`RING_REQUEST_PROD_OVERFLOW()`), nor move its producer index behind ours.
        let in_flight = prod.wrapping_sub(self.rsp_prod_pvt);
        if in_flight > self.size() || prod.wrapping_sub(self.req_cons) > in_flight {
            return Err(ProtocolError {
                prod,
                cons: self.req_cons,
            });
        }
        Ok(prod)
    }

    /// Returns the number of requests published and not consumed yet
    /// (`XEN_RING_NR_UNCONSUMED_REQUESTS()`).
    pub fn unconsumed_requests(&self) -> Result<u32, ProtocolError> {
        Ok(self.req_prod()?.wrapping_sub(self.req_cons))
    }

    /// Returns the requests published so far, to be taken one at a time.
    ///
    /// The request producer index is read once, here. Each request is copied out of the ring as
    /// it is taken, and the consumer index moves past it.
    pub fn requests(&mut self) -> Result<Requests<'_, Req, Rsp, M>, ProtocolError> {
        let prod = self.req_prod()?;
        // Read the requests only after the producer index that covers them.
        virt_rmb();
        // INVARIANT: `req_prod()` checked `prod`.
        Ok(Requests { ring: self, prod })
    }

    /// Writes `rsp` to the next response slot.
    ///
    /// The response is not visible to the frontend until it is published with
    /// [`BackRing::push_responses_and_check_notify`] or [`BackRing::push_responses`].
    ///
    /// Fails with [`ENOSPC`] if every request taken has been answered already: a response slot
    /// is only free once its request was taken.
    pub fn push_response(&mut self, rsp: Rsp) -> Result {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(ENOSPC);
        }
        self.shared.write(self.rsp_prod_pvt, rsp);
        // INVARIANT: `rsp_prod_pvt` moves towards `req_cons`, which it does not pass.
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the responses written so far (`RING_PUSH_RESPONSES()`).
    pub fn push_responses(&mut self) {
        // The frontend must see the responses before the producer index that covers them.
        virt_wmb();
        self.shared
            .header()
            .rsp_prod
            .store(self.rsp_prod_pvt, Relaxed);
        self.rsp_prod = self.rsp_prod_pvt;
    }

    /// Publishes the responses written so far and returns whether the frontend must be notified
    /// (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY()`).
    ///
    /// The frontend must be notified if it asked for it (with `rsp_event`) at an index among the
    /// newly published responses.
    pub fn push_responses_and_check_notify(&mut self) -> bool {
        let old = self.rsp_prod;
        let new = self.rsp_prod_pvt;
        self.push_responses();
        // The frontend must see the new responses before we look at `rsp_event`.
        virt_mb();
        need_notify(old, new, self.shared.header().rsp_event.load(Relaxed))
    }

    /// Returns whether there are unconsumed requests; if not, asks the frontend for a
    /// notification when the next one is published (`RING_FINAL_CHECK_FOR_REQUESTS()`).
    ///
    /// Call this after taking all requests, before waiting for the next notification.
    pub fn final_check_for_requests(&mut self) -> Result<bool, ProtocolError> {
        if self.unconsumed_requests()? != 0 {
            return Ok(true);
        }
        let header = self.shared.header();
        header
            .req_event
            .store(self.req_cons.wrapping_add(1), Relaxed);
        // The frontend must see `req_event` before we look at its producer index again.
        virt_mb();
        Ok(self.unconsumed_requests()? != 0)
    }

    /// Returns whether at least `needed` requests are unconsumed; if not, asks the frontend for a
    /// notification when it publishes the next one.
    ///
    /// This is the check netback does before it takes the slots of a whole packet
    /// (`xenvif_rx_ring_slots_available()`). The check is repeated while the frontend moves its
    /// producer index, at most a ring's worth of times: the frontend cannot make it spin forever.
    pub fn final_check_for_requests_at_least(
        &mut self,
        needed: u32,
    ) -> Result<bool, ProtocolError> {
        for _ in 0..self.size() {
            let prod = self.req_prod()?;
            if prod.wrapping_sub(self.req_cons) >= needed {
                return Ok(true);
            }
            let header = self.shared.header();
            header.req_event.store(prod.wrapping_add(1), Relaxed);
            // The frontend must see `req_event` before we look at its producer index again.
            virt_mb();
            if header.req_prod.load(Relaxed) == prod {
                return Ok(false);
            }
        }
        Ok(false)
    }
}

/// The requests published by the frontend of a [`BackRing`], taken one at a time.
///
/// Returned by [`BackRing::requests`]. Each request is copied out of the shared ring once, when
/// it is taken, and the ring's consumer index moves past it.
///
/// # Invariants
///
/// `prod - ring.rsp_prod_pvt <= ring.size()` and `prod` is at or after `ring.req_cons` (modulo
/// 2^32): taking the requests up to `prod` keeps at most a ring's worth unanswered.
pub struct Requests<'a, Req, Rsp, M> {
    ring: &'a mut BackRing<Req, Rsp, M>,
    prod: RingIdx,
}

impl<Req, Rsp, M> Iterator for Requests<'_, Req, Rsp, M>
where
    Req: FromBytes + IntoBytes,
    Rsp: FromBytes + IntoBytes,
    M: RingMemory,
{
    type Item = Req;

    fn next(&mut self) -> Option<Req> {
        let ring = &mut *self.ring;
        if ring.req_cons == self.prod {
            return None;
        }
        let req = ring.shared.read(ring.req_cons);
        // INVARIANT: `req_cons` moves towards `prod`, which is at most a ring's worth ahead of
        // `rsp_prod_pvt`.
        ring.req_cons = ring.req_cons.wrapping_add(1);
        Some(req)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.prod.wrapping_sub(self.ring.req_cons) as usize;
        (len, Some(len))
    }
}

impl<Req, Rsp, M> ExactSizeIterator for Requests<'_, Req, Rsp, M>
where
    Req: FromBytes + IntoBytes,
    Rsp: FromBytes + IntoBytes,
    M: RingMemory,
{
}

impl<Req, Rsp, M> FusedIterator for Requests<'_, Req, Rsp, M>
where
    Req: FromBytes + IntoBytes,
    Rsp: FromBytes + IntoBytes,
    M: RingMemory,
{
}

/// Ring memory in ordinary memory, for the KUnit tests of the Xen abstractions.
///
/// The tests play the other domain: they write the shared memory behind the rings' backs.
#[cfg(CONFIG_RUST_XEN_KUNIT_TEST)]
pub(crate) mod testing {
    use super::*;
    use crate::{
        sync::atomic::{
            atomic_load,
            atomic_store, //
        },
        types::Opaque,
    };

    /// A page of ordinary memory.
    #[repr(C, align(4096))]
    #[derive(Zeroable)]
    pub(crate) struct Page(Opaque<[u8; 4096]>);

    impl Page {
        /// Allocates a zeroed page.
        pub(crate) fn new() -> Result<KBox<Self>> {
            Ok(KBox::<Self>::zeroed(GFP_KERNEL)?)
        }
    }

    /// Ring memory in part of a [`Page`].
    ///
    /// # Invariants
    ///
    /// `offset + size <= 4096`.
    #[derive(Clone, Copy)]
    pub(crate) struct Mem<'a> {
        page: &'a Page,
        offset: usize,
        size: usize,
    }

    // SAFETY: By the type invariants, the `size` bytes at `offset` lie in the page, which is valid
    // for as long as the reference is. Its contents are only accessed through the rings and
    // through `Mem::poke()`, `Mem::peek()` and `Mem::write()`, which play the other domain.
    unsafe impl RingMemory for Mem<'_> {
        fn as_ptr(&self) -> NonNull<u8> {
            let page = NonNull::from(&self.page.0).cast::<u8>();
            // SAFETY: By the type invariants, `offset` lies within the page.
            unsafe { page.add(self.offset) }
        }

        fn size(&self) -> usize {
            self.size
        }
    }

    /// Offsets of the header fields.
    pub(crate) const REQ_PROD: usize = 0;
    pub(crate) const REQ_EVENT: usize = 4;
    pub(crate) const RSP_PROD: usize = 8;
    pub(crate) const RSP_EVENT: usize = 12;

    impl<'a> Mem<'a> {
        /// The `size` bytes at `offset` in `page`.
        ///
        /// # Panics
        ///
        /// Panics if they do not fit in the page.
        pub(crate) fn new(page: &'a Page, offset: usize, size: usize) -> Self {
            assert!(offset <= 4096 && size <= 4096 - offset);
            // INVARIANT: Checked above.
            Self { page, offset, size }
        }

        /// Returns a pointer to a `T` at `offset` in the ring memory.
        ///
        /// # Panics
        ///
        /// Panics if the `T` is out of bounds or not aligned.
        fn at<T>(&self, offset: usize) -> *mut T {
            assert!(offset <= self.size && size_of::<T>() <= self.size - offset);
            let ptr = self.as_ptr().as_ptr().wrapping_add(offset).cast::<T>();
            assert!(ptr.is_aligned());
            ptr
        }

        /// Writes `value` to the header field at `offset`, as the other domain.
        pub(crate) fn poke(&self, offset: usize, value: u32) {
            // SAFETY: `at()` returns a valid and aligned pointer; all other accesses to the ring
            // header are atomic.
            unsafe { atomic_store(self.at::<u32>(offset), value, Relaxed) };
        }

        /// Reads the header field at `offset`, as the other domain.
        pub(crate) fn peek(&self, offset: usize) -> u32 {
            // SAFETY: `at()` returns a valid and aligned pointer; all other accesses to the ring
            // header are atomic.
            unsafe { atomic_load(self.at::<u32>(offset), Relaxed) }
        }

        /// Writes `value` at `offset`, as the other domain.
        pub(crate) fn write<T: IntoBytes>(&self, offset: usize, value: T) {
            // SAFETY: `at()` returns a valid and aligned pointer; the rings access slots with
            // volatile copies only.
            unsafe { self.at::<T>(offset).write_volatile(value) };
        }
    }
}

#[cfg(CONFIG_RUST_XEN_KUNIT_TEST)]
#[macros::kunit_tests(rust_xen_ring)]
mod tests {
    use super::{
        testing::*,
        *, //
    };

    type Front<'a> = FrontRing<u64, u32, Mem<'a>>;
    type Back<'a> = BackRing<u64, u32, Mem<'a>>;

    /// Memory for a ring of `slots` slots, at `offset` in `page`.
    fn mem(page: &Page, offset: usize, slots: usize) -> Mem<'_> {
        Mem::new(page, offset, HEADER_SIZE + slots * 8)
    }

    /// Returns the offset of slot `i`.
    fn slot(i: usize) -> usize {
        HEADER_SIZE + i * 8
    }

    /// Takes all published requests.
    fn take_requests(back: &mut Back<'_>) -> Result<KVec<u64>> {
        let mut taken = KVec::new();
        for req in back.requests()? {
            taken.push(req, GFP_KERNEL)?;
        }
        Ok(taken)
    }

    /// Takes all published responses.
    fn take_responses(front: &mut Front<'_>) -> Result<KVec<u32>> {
        let mut taken = KVec::new();
        for rsp in front.responses()? {
            taken.push(rsp, GFP_KERNEL)?;
        }
        Ok(taken)
    }

    #[test]
    fn sizes() {
        assert_eq!(slot_size::<u64, u32>(), 8);
        assert_eq!(slot_size::<u32, u64>(), 8);
        assert_eq!(slot_size::<[u16; 3], u32>(), 8);
        assert_eq!(slot_size::<[u8; 12], u16>(), 12);
        assert_eq!(ring_size::<u64, u32>(4096), 256);
        assert_eq!(ring_size::<u64, u32>(2 * 4096), 512);
        assert_eq!(ring_size::<u64, u32>(HEADER_SIZE + 3 * 8), 2);
        assert_eq!(ring_size::<u64, u32>(HEADER_SIZE + 7), 0);
        assert_eq!(ring_size::<u64, u32>(0), 0);
        assert_eq!(ring_size::<u8, u8>(usize::MAX), 1 << 31);
    }

    #[test]
    fn memory_is_checked() -> Result {
        let page = Page::new()?;
        // Too small for one slot.
        let small = Mem::new(&page, 0, HEADER_SIZE + 7);
        assert_eq!(Front::new(small).err(), Some(EINVAL));
        assert_eq!(Back::attach(small).err(), Some(EINVAL));
        // Not aligned for the `u64` requests.
        let misaligned = mem(&page, 4, 4);
        assert_eq!(Front::new(misaligned).err(), Some(EINVAL));
        assert_eq!(Back::attach(misaligned).err(), Some(EINVAL));
        Ok(())
    }

    #[test]
    fn notify_decision() {
        // The consumer asked to be notified at index 1 (the initial `req_event`).
        assert!(need_notify(0, 1, 1));
        assert!(need_notify(0, 5, 3));
        assert!(need_notify(0, 5, 5));
        // It asked for an index that was published before, or not published yet.
        assert!(!need_notify(1, 2, 1));
        assert!(!need_notify(0, 5, 6));
        // Nothing new was published.
        assert!(!need_notify(5, 5, 5));
        assert!(!need_notify(5, 5, 6));
        // Across the wrap at 2^32.
        assert!(need_notify(u32::MAX - 1, 2, u32::MAX));
        assert!(need_notify(u32::MAX - 1, 2, 0));
        assert!(need_notify(u32::MAX - 1, 2, 2));
        assert!(!need_notify(u32::MAX - 1, 2, u32::MAX - 1));
        assert!(!need_notify(u32::MAX - 1, 2, 3));
    }

    #[test]
    fn round_trip() -> Result {
        let page = Page::new()?;
        let mem = mem(&page, 0, 4);
        let mut front = Front::new(mem)?;
        let mut back = Back::attach(mem)?;
        assert_eq!(front.size(), 4);
        assert_eq!(back.size(), 4);
        assert_eq!(mem.peek(REQ_EVENT), 1);
        assert_eq!(mem.peek(RSP_EVENT), 1);

        // Written requests are invisible until published.
        front.push_request(10)?;
        front.push_request(11)?;
        assert_eq!(front.free_requests(), 2);
        assert_eq!(back.unconsumed_requests()?, 0);
        // The backend asked for a notification at index 1 (`SHARED_RING_INIT()`).
        assert!(front.push_requests_and_check_notify());
        assert_eq!(mem.peek(REQ_PROD), 2);
        // It did not ask again: no notification for the next request.
        front.push_request(12)?;
        assert!(!front.push_requests_and_check_notify());

        assert_eq!(back.unconsumed_requests()?, 3);
        assert_eq!(back.requests()?.len(), 3);
        assert_eq!(take_requests(&mut back)?, [10, 11, 12]);
        assert_eq!(back.req_cons(), 3);

        // The final check re-arms the notification for the next request.
        assert!(!back.final_check_for_requests()?);
        assert_eq!(mem.peek(REQ_EVENT), 4);
        front.push_request(13)?;
        assert!(front.push_requests_and_check_notify());
        assert!(back.final_check_for_requests()?);
        assert_eq!(take_requests(&mut back)?, [13]);

        // Responses, the other way round.
        for rsp in [20, 21, 22] {
            back.push_response(rsp)?;
        }
        assert_eq!(front.unconsumed_responses()?, 0);
        assert!(back.push_responses_and_check_notify());
        assert_eq!(take_responses(&mut front)?, [20, 21, 22]);
        assert!(!front.final_check_for_responses()?);
        assert_eq!(mem.peek(RSP_EVENT), 4);
        back.push_response(23)?;
        // Every request taken has been answered.
        assert_eq!(back.push_response(24), Err(ENOSPC));
        assert!(back.push_responses_and_check_notify());
        assert!(front.final_check_for_responses()?);
        assert_eq!(take_responses(&mut front)?, [23]);
        assert_eq!(front.free_requests(), 4);
        // What a diagnostic dump shows.
        let i = back.indices();
        assert_eq!((i.size, i.req_prod, i.req_cons), (4, 4, 4));
        assert_eq!((i.rsp_prod, i.rsp_prod_pvt), (4, 4));
        assert_eq!((i.req_event, i.rsp_event), (4, 4));
        front.push_request(14)?;
        front.push_requests();
        assert_eq!(back.indices().req_prod, 5);
        assert_eq!(back.indices().req_cons, 4);
        Ok(())
    }

    #[test]
    fn full_ring() -> Result {
        let page = Page::new()?;
        let mem = mem(&page, 0, 4);
        let mut front = Front::new(mem)?;
        let mut back = Back::attach(mem)?;

        for req in 0..4 {
            front.push_request(req)?;
        }
        assert!(front.is_full());
        assert_eq!(front.push_request(4), Err(ENOSPC));
        front.push_requests();

        // Taking requests frees no slot; consuming their responses does.
        assert_eq!(take_requests(&mut back)?, [0, 1, 2, 3]);
        assert!(front.is_full());
        back.push_response(0)?;
        back.push_responses();
        assert!(front.is_full());
        assert_eq!(take_responses(&mut front)?, [0]);
        assert_eq!(front.free_requests(), 1);
        front.push_request(4)?;
        assert!(front.is_full());
        Ok(())
    }

    #[test]
    fn wrap_at_2_32() -> Result {
        let page = Page::new()?;
        let mem = mem(&page, 0, 4);
        let start = u32::MAX - 5;
        let mut front = Front::new_at(mem, start)?;
        let mut back = Back::attach(mem)?;
        assert_eq!(back.req_cons(), start);

        let mut next: u64 = 0;
        for round in 0..40u32 {
            assert!(!back.final_check_for_requests()?);
            for _ in 0..3 {
                front.push_request(next)?;
                next += 1;
            }
            assert!(front.push_requests_and_check_notify());
            let taken = take_requests(&mut back)?;
            assert_eq!(taken, [next - 3, next - 2, next - 1]);

            assert!(!front.final_check_for_responses()?);
            for req in taken {
                back.push_response(req as u32 * 2)?;
            }
            assert!(back.push_responses_and_check_notify());
            let expected = (next as u32 - 3) * 2;
            assert_eq!(
                take_responses(&mut front)?,
                [expected, expected + 2, expected + 4]
            );

            let idx = start.wrapping_add(3 * (round + 1));
            assert_eq!(front.req_prod_pvt(), idx);
            assert_eq!(front.rsp_cons(), idx);
            assert_eq!(back.req_cons(), idx);
            assert_eq!(back.rsp_prod_pvt(), idx);
            assert_eq!(mem.peek(REQ_PROD), idx);
            assert_eq!(mem.peek(RSP_PROD), idx);
        }
        // The indices went past 2^32.
        assert!(front.req_prod_pvt() < start);
        Ok(())
    }

    #[test]
    fn hostile_request_producer() -> Result {
        let page = Page::new()?;
        let mem = mem(&page, 0, 4);
        let mut front = Front::new_at(mem, u32::MAX - 1)?;
        let mut back = Back::attach(mem)?;
        let cons = back.req_cons();

        // More requests than the ring holds.
        let prod = cons.wrapping_add(5);
        mem.poke(REQ_PROD, prod);
        let err = ProtocolError { prod, cons };
        assert_eq!(back.requests().err(), Some(err));
        assert_eq!(back.unconsumed_requests(), Err(err));
        assert_eq!(back.final_check_for_requests(), Err(err));
        assert_eq!(Back::attach(mem).err(), Some(EIO));
        assert_eq!(back.req_cons(), cons);

        // A ring's worth is fine.
        mem.poke(REQ_PROD, cons.wrapping_add(4));
        assert_eq!(back.unconsumed_requests()?, 4);

        // The producer index goes backwards, behind the requests taken.
        for req in 0..2 {
            front.push_request(req)?;
        }
        front.push_requests();
        assert_eq!(take_requests(&mut back)?, [0, 1]);
        let cons = back.req_cons();
        let prod = cons.wrapping_sub(1);
        mem.poke(REQ_PROD, prod);
        assert_eq!(back.requests().err(), Some(ProtocolError { prod, cons }));

        // With two requests taken and not answered, three more would be too many.
        let prod = cons.wrapping_add(3);
        mem.poke(REQ_PROD, prod);
        assert_eq!(back.requests().err(), Some(ProtocolError { prod, cons }));
        mem.poke(REQ_PROD, cons.wrapping_add(2));
        assert_eq!(back.unconsumed_requests()?, 2);

        // Far away in the index space.
        let prod = cons.wrapping_add(0x8000_0000);
        mem.poke(REQ_PROD, prod);
        assert_eq!(back.requests().err(), Some(ProtocolError { prod, cons }));

        // Nothing was taken by the failed attempts.
        assert_eq!(back.req_cons(), cons);
        Ok(())
    }

    #[test]
    fn hostile_response_producer() -> Result {
        let page = Page::new()?;
        let mem = mem(&page, 0, 4);
        let mut front = Front::new_at(mem, u32::MAX)?;
        let cons = front.rsp_cons();

        // Responses without requests.
        let prod = cons.wrapping_add(1);
        mem.poke(RSP_PROD, prod);
        let err = ProtocolError { prod, cons };
        assert_eq!(front.responses().err(), Some(err));
        assert_eq!(front.unconsumed_responses(), Err(err));
        assert_eq!(front.final_check_for_responses(), Err(err));

        // Responses to requests written but not published.
        front.push_request(0)?;
        front.push_request(1)?;
        assert_eq!(front.responses().err(), Some(err));
        front.push_requests();
        assert_eq!(front.unconsumed_responses()?, 1);

        // More responses than requests published.
        let prod = cons.wrapping_add(3);
        mem.poke(RSP_PROD, prod);
        assert_eq!(front.responses().err(), Some(ProtocolError { prod, cons }));

        // Backwards.
        let prod = cons.wrapping_sub(1);
        mem.poke(RSP_PROD, prod);
        assert_eq!(front.responses().err(), Some(ProtocolError { prod, cons }));

        // Far away in the index space.
        let prod = cons.wrapping_add(0x8000_0000);
        mem.poke(RSP_PROD, prod);
        assert_eq!(front.responses().err(), Some(ProtocolError { prod, cons }));

        // Nothing was taken by the failed attempts.
        assert_eq!(front.rsp_cons(), cons);
        mem.poke(RSP_PROD, cons.wrapping_add(2));
        assert_eq!(front.unconsumed_responses()?, 2);
        Ok(())
    }

    #[test]
    fn copy_once() -> Result {
        let page = Page::new()?;
        let mem = mem(&page, 0, 4);
        let mut front = Front::new(mem)?;
        let mut back = Back::attach(mem)?;

        front.push_request(1)?;
        front.push_request(2)?;
        front.push_requests();

        let mut requests = back.requests()?;
        let first = requests.next();
        // The frontend rewrites the slot after it was read: the copy does not change, and the
        // slot is not read again.
        mem.write(slot(0), 0xbad_u64);
        assert_eq!(first, Some(1));
        assert_eq!(requests.next(), Some(2));
        mem.write(slot(1), 0xbad_u64);
        assert_eq!(requests.next(), None);
        assert_eq!(back.requests()?.next(), None);
        assert_eq!(back.req_cons(), 2);

        // The same for responses.
        back.push_response(10)?;
        back.push_response(20)?;
        back.push_responses();
        let mut responses = front.responses()?;
        let first = responses.next();
        mem.write(slot(0), 0xbad_u64);
        assert_eq!(first, Some(10));
        assert_eq!(responses.next(), Some(20));
        assert_eq!(responses.next(), None);
        assert_eq!(front.responses()?.next(), None);
        assert_eq!(front.rsp_cons(), 2);
        Ok(())
    }

    #[test]
    fn final_check_at_least() -> Result {
        let page = Page::new()?;
        let mem = mem(&page, 0, 4);
        let mut front = Front::new(mem)?;
        let mut back = Back::attach(mem)?;

        front.push_request(0)?;
        front.push_requests();
        // One request is there, two are needed: ask for a notification at the next one.
        assert!(!back.final_check_for_requests_at_least(2)?);
        assert_eq!(mem.peek(REQ_EVENT), 2);
        front.push_request(1)?;
        assert!(front.push_requests_and_check_notify());
        assert!(back.final_check_for_requests_at_least(2)?);
        assert!(back.final_check_for_requests_at_least(0)?);
        assert!(!back.final_check_for_requests_at_least(3)?);

        // A hostile producer index is reported.
        let cons = back.req_cons();
        mem.poke(REQ_PROD, cons.wrapping_sub(1));
        assert_eq!(
            back.final_check_for_requests_at_least(1),
            Err(ProtocolError {
                prod: cons.wrapping_sub(1),
                cons
            })
        );
        Ok(())
    }

    #[test]
    fn final_check_after() -> Result {
        let page = Page::new()?;
        let mem = mem(&page, 0, 4);
        let mut front = Front::new(mem)?;
        let mut back = Back::attach(mem)?;

        for req in [0, 1, 2] {
            front.push_request(req)?;
        }
        front.push_requests();
        assert_eq!(take_requests(&mut back)?, [0, 1, 2]);
        back.push_response(10)?;
        back.push_responses();
        // A response is there: taken first, whatever the frontend waits for.
        assert!(front.final_check_for_responses_after(2)?);
        assert_eq!(take_responses(&mut front)?, [10]);
        // Two requests in flight: a notification at the second response, not the first.
        assert!(!front.final_check_for_responses_after(2)?);
        assert_eq!(mem.peek(RSP_EVENT), 3);
        back.push_response(11)?;
        assert!(!back.push_responses_and_check_notify());
        back.push_response(12)?;
        assert!(back.push_responses_and_check_notify());
        assert_eq!(take_responses(&mut front)?, [11, 12]);
        // Never further than the requests in flight, never less than one ahead.
        front.push_request(3)?;
        front.push_requests();
        assert!(!front.final_check_for_responses_after(10)?);
        assert_eq!(mem.peek(RSP_EVENT), 4);
        assert!(!front.final_check_for_responses_after(0)?);
        assert_eq!(mem.peek(RSP_EVENT), 4);
        Ok(())
    }

    /// A deterministic pseudo-random sequence (a 64-bit LCG).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 32) as u32
        }
    }

    #[test]
    fn hostile_fuzz() -> Result {
        // Both ends run while the "other domain" scribbles over the header and the slots. Whatever
        // it writes, no operation panics (arithmetic overflow checks included) and neither end
        // ends up with more than a ring's worth in flight.
        let page = Page::new()?;
        let mem = mem(&page, 0, 4);
        let mut rng = Lcg(0x5eed);
        let mut front = Front::new_at(mem, u32::MAX - 100)?;
        let mut back = Back::attach(mem)?;
        let mut protocol_errors = 0u32;
        for _ in 0..20000 {
            let r = rng.next();
            let near = |idx: RingIdx| idx.wrapping_add(r >> 24).wrapping_sub(8);
            match r % 13 {
                0 | 1 => {
                    let _ = front.push_request(u64::from(r));
                }
                2 => {
                    front.push_requests_and_check_notify();
                }
                3 | 4 => match back.requests() {
                    Ok(mut requests) => {
                        requests.next();
                    }
                    Err(_) => protocol_errors += 1,
                },
                5 => {
                    let _ = back.push_response(r);
                }
                6 => {
                    back.push_responses_and_check_notify();
                }
                7 | 8 => match front.responses() {
                    Ok(mut responses) => {
                        responses.next();
                    }
                    Err(_) => protocol_errors += 1,
                },
                9 => {
                    let _ = front.final_check_for_responses();
                }
                10 => {
                    let _ = back.final_check_for_requests_at_least(r % 6);
                }
                // The other domain at work.
                11 => match (r >> 4) % 4 {
                    0 => mem.poke(REQ_PROD, near(back.req_cons())),
                    1 => mem.poke(RSP_PROD, near(front.rsp_cons())),
                    2 => mem.poke(REQ_EVENT, rng.next()),
                    _ => mem.poke(RSP_EVENT, rng.next()),
                },
                _ => mem.write(slot((r as usize >> 4) % 4), u64::from(rng.next())),
            }
            assert!(front.req_prod_pvt().wrapping_sub(front.rsp_cons()) <= front.size());
            assert!(front.free_requests() <= front.size());
            assert!(back.req_cons().wrapping_sub(back.rsp_prod_pvt()) <= back.size());
            if let Ok(n) = front.unconsumed_responses() {
                assert!(n <= front.size());
            }
            if let Ok(n) = back.unconsumed_requests() {
                assert!(n <= back.size());
            }
        }
        // The other domain did break the protocol now and then, and was caught.
        assert!(protocol_errors > 0);
        Ok(())
    }
}
