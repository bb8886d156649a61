// SPDX-License-Identifier: GPL-2.0

//! Grant tables.
//!
//! A domain shares its memory page by page with another domain by *granting* it access through
//! an entry of its grant table, named by a [`GrantRef`]. The other domain then maps the page, or
//! asks the hypervisor to copy to or from it. Granting is the only way memory is shared between
//! the frontend and the backend of a device.
//!
//! - [`RefPool`] reserves grant references up front (`gnttab_alloc_grant_references()`), so the
//!   data path never fails to find one; an [`UnusedRef`] is a reference owned and not in use.
//! - [`Grant`] grants access to memory it owns (a [`Page`], or anything [`Grantable`]). It never
//!   lets the memory be reused while the other domain may still access it: [`Grant::end`] gives
//!   the memory back only if access could be ended, and dropping a [`Grant`] the other domain
//!   still maps hands the memory to the grant table code, which frees it once the other domain
//!   let go of it (XSA-396).
//! - [`CopyBatch`] collects grant copy operations between local memory and pages granted by the
//!   other domain, submits them in one hypercall (`gnttab_batch_copy()`), and reports the status
//!   of each operation.
//! - [`RingPages`] (frontend) and [`MappedRing`] (backend) are the memory of a shared ring, for
//!   [`ring`](super::ring).
//! - [`chunks`] and [`count_grants`] split a buffer at Xen page boundaries, one grant per piece.
//!
//! Grant references and grants only exist in a Xen domain: [`RefPool::new`] and
//! [`UnusedRef::alloc`] fail with [`ENODEV`] elsewhere.
//!
//! C header: [`include/xen/grant_table.h`](srctree/include/xen/grant_table.h)

use crate::{
    alloc::Flags,
    bindings,
    device,
    error::to_result,
    page::Page,
    prelude::*,
    sync::aref::ARef,
    xen::{
        ring::RingMemory,
        xenbus,
        DomId,
        PAGE_SIZE, //
    }, //
};
use core::{
    marker::PhantomData,
    mem::ManuallyDrop,
    ptr::NonNull, //
};

/// The number of a grant table entry (`grant_ref_t`), as written in requests and in xenstore.
///
/// It is only a number: owning a reference is [`UnusedRef`], granting access through it is
/// [`Grant`].
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantRef(pub u32);

impl GrantRef {
    /// A reference that is never valid (`INVALID_GRANT_REF`).
    pub const INVALID: GrantRef = GrantRef(u32::MAX);
}

/// A Xen guest frame number (`xen_pfn_t`): the number of a Xen page as the hypervisor knows it.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gfn(pub u64);

/// Whether the other domain may write to granted memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The other domain may only read.
    ReadOnly,
    /// The other domain may read and write.
    ReadWrite,
}

/// Returns an error unless the kernel runs in a Xen domain, where grant tables exist.
fn check_xen() -> Result {
    if super::xen_domain() {
        Ok(())
    } else {
        Err(ENODEV)
    }
}

/// A grant reference owned by this domain and not granting access to anything.
///
/// Dropping it returns it to the grant table (`gnttab_free_grant_reference()`).
///
/// # Invariants
///
/// `self.0` is a grant reference allocated by this domain, owned by `self`, whose entry grants no
/// access.
#[derive(Debug)]
pub struct UnusedRef(u32);

impl UnusedRef {
    /// Allocates one grant reference.
    ///
    /// Fails with [`ENOSPC`] if the grant table is full, [`ENODEV`] outside Xen.
    pub fn alloc() -> Result<Self> {
        let mut pool = RefPool::new(1)?;
        pool.claim()
    }

    /// Returns the number of the reference.
    pub fn gref(&self) -> GrantRef {
        GrantRef(self.0)
    }

    fn into_raw(self) -> u32 {
        ManuallyDrop::new(self).0
    }
}

impl Drop for UnusedRef {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, the reference is owned and grants no access.
        unsafe { bindings::gnttab_free_grant_reference(self.0) };
    }
}

/// Grant references reserved for later use (`gnttab_alloc_grant_references()`).
///
/// Claiming from the pool cannot fail for lack of space in the grant table, only because the pool
/// is empty. The references left in the pool are returned to the grant table when it is dropped.
///
/// # Examples
///
/// ```
/// use kernel::xen::grant::RefPool;
///
/// // Outside Xen there is no grant table.
/// # if !kernel::xen::xen_domain() {
/// assert_eq!(RefPool::new(256).err(), Some(ENODEV));
/// # }
/// ```
///
/// # Invariants
///
/// `head` is the head of a private list (`gnttab_entry()` links) of `available` grant references
/// owned by the pool and granting no access, or `GNTTAB_LIST_END` if `available` is zero.
pub struct RefPool {
    head: bindings::grant_ref_t,
    available: u32,
}

impl RefPool {
    /// Reserves `count` grant references.
    ///
    /// Fails with [`ENOSPC`] if the grant table cannot provide them, with [`ENODEV`] outside Xen.
    pub fn new(count: u16) -> Result<Self> {
        check_xen()?;
        let mut head = 0;
        // SAFETY: `head` is valid for writes.
        to_result(unsafe { bindings::gnttab_alloc_grant_references(count, &mut head) })?;
        // INVARIANT: On success, `head` is a private list of `count` free references.
        Ok(Self {
            head,
            available: count.into(),
        })
    }

    /// Returns the number of references left in the pool.
    pub fn available(&self) -> u32 {
        self.available
    }

    /// Returns whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.available == 0
    }

    /// Takes a reference out of the pool (`gnttab_claim_grant_reference()`).
    ///
    /// Fails with [`ENOSPC`] if the pool is empty.
    pub fn claim(&mut self) -> Result<UnusedRef> {
        if self.available == 0 {
            return Err(ENOSPC);
        }
        // SAFETY: By the type invariants, `head` is the head of a private list of references.
        let gref = unsafe { bindings::gnttab_claim_grant_reference(&mut self.head) };
        let gref = u32::try_from(gref).map_err(|_| ENOSPC)?;
        self.available -= 1;
        // INVARIANT: The reference was in the pool, so it is owned and grants no access.
        Ok(UnusedRef(gref))
    }

    /// Puts an unused reference (back) into the pool (`gnttab_release_grant_reference()`).
    pub fn release(&mut self, gref: UnusedRef) {
        // SAFETY: By the type invariants of `UnusedRef` and `Self`, `gref` is owned and grants no
        // access, and `head` is the head of the pool's private list.
        unsafe { bindings::gnttab_release_grant_reference(&mut self.head, gref.into_raw()) };
        // INVARIANT: The list holds one more reference.
        self.available += 1;
    }
}

impl Drop for RefPool {
    fn drop(&mut self) {
        if self.available != 0 {
            // SAFETY: By the type invariants, `head` is a private list of owned references.
            unsafe { bindings::gnttab_free_grant_references(self.head) };
        }
    }
}

/// Memory that can be granted to another domain: one Xen page, or the first Xen page of a larger
/// kernel page.
///
/// # Safety
///
/// - [`Grantable::gfn`] returns the frame of memory owned by the value, which stays allocated,
///   and is not used for anything else by this kernel, for as long as the value exists.
/// - [`Grantable::into_page_ref`] either returns a page reference covering that frame, which the
///   caller then owns (and releases with `put_page()`), or leaks the memory (the value is never
///   dropped, the memory is never reused).
pub unsafe trait Grantable: Sized {
    /// Returns the frame of the memory.
    fn gfn(&self) -> Gfn;

    /// Gives up the memory while the other domain may still access it.
    ///
    /// Returns a reference to its page for the grant table code to release once the other
    /// domain's access has ended; the default leaks the value instead.
    fn into_page_ref(self) -> Option<NonNull<bindings::page>> {
        core::mem::forget(self);
        None
    }
}

// SAFETY: A `Page` owns an order-0 page (one reference to it) until dropped. The returned page
// reference is the one the `Page` owned: releasing it with `put_page()` frees the page, as
// dropping the `Page` would.
unsafe impl Grantable for Page {
    fn gfn(&self) -> Gfn {
        // SAFETY: `self.as_ptr()` is a valid `struct page`.
        Gfn(unsafe { bindings::xen_page_to_gfn(self.as_ptr()) } as u64)
    }

    fn into_page_ref(self) -> Option<NonNull<bindings::page>> {
        let page = ManuallyDrop::new(self);
        NonNull::new(page.as_ptr())
    }
}

// SAFETY: A `PoolPage` owns an order-0 page of its pool until dropped, and the pool hands it to
// no one else meanwhile. The returned page reference is one of its own, taken before the page
// leaves the pool (`PoolPage::into_page_ref`): releasing it with `put_page()` frees the page.
#[cfg(all(CONFIG_RUST_NETDEV_ABSTRACTIONS, CONFIG_PAGE_POOL))]
unsafe impl Grantable for crate::net::page_pool::PoolPage {
    fn gfn(&self) -> Gfn {
        // SAFETY: `self.as_ptr()` is a valid `struct page`.
        Gfn(unsafe { bindings::xen_page_to_gfn(self.as_ptr()) } as u64)
    }

    fn into_page_ref(self) -> Option<NonNull<bindings::page>> {
        Some(crate::net::page_pool::PoolPage::into_page_ref(self))
    }
}

// SAFETY: A frame owns its buffer (returned with `xdp_return_frame()` when dropped), so the page
// holding its data stays allocated and unused by others while the frame lives. Given up while the
// other domain may still access it, the frame is leaked (the default `into_page_ref`): its memory
// is never returned, never reused.
#[cfg(all(CONFIG_RUST_NETDEV_ABSTRACTIONS, CONFIG_BPF_SYSCALL))]
unsafe impl Grantable for crate::net::xdp::Frame {
    fn gfn(&self) -> Gfn {
        // SAFETY: `page_ptr()` is the valid `struct page` of the frame's data.
        Gfn(unsafe { bindings::xen_page_to_gfn(self.page_ptr()) } as u64)
    }
}

/// Access to memory granted to another domain (`gnttab_grant_foreign_access_ref()`).
///
/// The grant owns the memory: nothing else in this kernel can use it while the other domain
/// may access it.
///
/// - [`Grant::end`] ends the access and gives back the memory and the reference, unless the
///   other domain still maps the memory.
/// - Dropping the grant ends the access too (`gnttab_end_foreign_access()`). If the other domain
///   still maps the memory, it is kept out of reuse until the other domain unmaps it: a page
///   reference is handed to the grant table code, which releases it later (XSA-396).
///
/// # Invariants
///
/// `gref` is a grant reference owned by `self`, whose entry grants domain `domid` access to the
/// frame of `mem`.
pub struct Grant<M: Grantable> {
    gref: u32,
    domid: DomId,
    mem: ManuallyDrop<M>,
}

impl<M: Grantable> Grant<M> {
    /// Grants domain `domid` access to `mem` through `gref`.
    pub fn new(gref: UnusedRef, domid: DomId, mem: M, access: Access) -> Self {
        let gref = gref.into_raw();
        // SAFETY: `gref` is owned and grants no access (type invariant of `UnusedRef`), and the
        // frame of `mem` stays allocated while `mem` lives (safety requirement of `Grantable`).
        unsafe {
            bindings::gnttab_grant_foreign_access_ref(
                gref,
                domid.0,
                mem.gfn().0 as c_ulong,
                c_int::from(access == Access::ReadOnly),
            )
        };
        // INVARIANT: The entry of `gref` now grants `domid` access to the frame of `mem`.
        Self {
            gref,
            domid,
            mem: ManuallyDrop::new(mem),
        }
    }

    /// Returns the reference to give to the other domain.
    pub fn gref(&self) -> GrantRef {
        GrantRef(self.gref)
    }

    /// Returns the domain the memory is granted to.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Returns the granted memory.
    ///
    /// The other domain may access it concurrently.
    pub fn mem(&self) -> &M {
        &self.mem
    }

    /// Ends the access (`gnttab_end_foreign_access_ref()`) and returns the reference, for reuse,
    /// and the memory.
    ///
    /// Fails, returning the grant unchanged, if the other domain still maps the memory. A peer
    /// that keeps memory mapped after the protocol says it is done with it is broken: stop using
    /// it, and drop the grant, which keeps the memory out of reuse.
    pub fn end(self) -> core::result::Result<(UnusedRef, M), Self> {
        // SAFETY: By the type invariants, `self.gref` is owned and grants access.
        if unsafe { bindings::gnttab_end_foreign_access_ref(self.gref) } == 0 {
            return Err(self);
        }
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this.mem` is initialised and never used again: `this` is not dropped.
        let mem = unsafe { ManuallyDrop::take(&mut this.mem) };
        // INVARIANT: The access has ended: the reference is owned and grants no access.
        Ok((UnusedRef(this.gref), mem))
    }
}

impl<M: Grantable> Drop for Grant<M> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `self.gref` is owned and grants access.
        if unsafe { bindings::gnttab_try_end_foreign_access(self.gref) } != 0 {
            // The access has ended and the reference has been freed: the memory is ours again.
            //
            // SAFETY: `self.mem` is initialised and not used after this.
            unsafe { ManuallyDrop::drop(&mut self.mem) };
            return;
        }
        // The other domain still maps the memory: hand it to the grant table code, which ends
        // the access, frees the reference and releases the page once it is unmapped. Without a
        // page reference (`NULL`), it takes one on the granted frame itself.
        //
        // SAFETY: `self.mem` is initialised and not used after this.
        let mem = unsafe { ManuallyDrop::take(&mut self.mem) };
        let page = mem
            .into_page_ref()
            .map_or(core::ptr::null_mut(), NonNull::as_ptr);
        // SAFETY: `self.gref` is owned and grants access to the frame of `page` (if not NULL),
        // whose reference we own (safety requirements of `Grantable`); both are handed over.
        unsafe { bindings::gnttab_end_foreign_access(self.gref, page) };
    }
}

/// The most grants one [`GrantedSkb`] takes: a 64 KiB packet spread over 17 Xen pages, plus one
/// for a linear area that starts late in its page (`MAX_XEN_SKB_FRAGS + 1` of the C netfront,
/// and the most slots a netback accepts for one packet).
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
pub const SKB_MAX_GRANTS: usize = 18;

/// One grant of a [`GrantedSkb`]: `len` bytes at `offset` in the Xen page granted by `gref`.
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbGrant {
    /// The reference to put into the request.
    pub gref: GrantRef,
    /// Offset of the data in the granted page.
    pub offset: u16,
    /// Length of the data, at most to the end of the page.
    pub len: u16,
}

/// How a socket buffer would be granted by [`GrantedSkb::new`], as returned by
/// [`GrantedSkb::layout`].
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbLayout {
    /// Number of grants (`xennet_count_skb_slots()`): one per piece of a Xen page of the linear
    /// area and of each fragment.
    pub grants: usize,
    /// Length of the first piece (the start of the linear area up to the end of its page).
    pub first_len: usize,
    /// Whether every fragment is in a page (not device memory, `net_iov`), so it can be granted.
    pub grantable: bool,
    /// What it was computed from: the address of the data, the lengths of the packet and of
    /// its linear area, and the number of fragments.
    of: (usize, u32, u32, usize),
}

#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
impl SkbLayout {
    /// `data` is `skb.data()`, which the caller has at hand.
    fn of(skb: &crate::net::skb::SkBuffRef, data: &[u8]) -> (usize, u32, u32, usize) {
        (
            data.as_ptr() as usize,
            skb.len(),
            data.len() as u32,
            skb.frags().len(),
        )
    }

    /// Returns whether this is still the layout of `skb`: computed from it, and its data not
    /// moved or resized since (as [`SkBuff::linearize`](crate::net::skb::SkBuff::linearize)
    /// does).
    pub fn describes(&self, skb: &crate::net::skb::SkBuffRef) -> bool {
        self.of == Self::of(skb, skb.data())
    }
}

/// A socket buffer whose data is granted read-only to another domain, one grant per piece of a
/// Xen page (the zero-copy transmit path of a frontend: `xennet_make_txreqs()`).
///
/// The grants are of the socket buffer's own memory: the linear area (which may be `kmalloc()`
/// memory sharing its page with other objects; only an untrusted peer makes that a concern, see
/// XSA-403, and such a peer gets copies instead) and the pages of the fragments. The value owns the
/// buffer, so that memory stays allocated, and is not handed back to the network stack, until
/// every grant has ended:
///
/// - [`GrantedSkb::end`] ends one grant, once the other domain has answered the request that
///   carried it, and puts the reference back into the pool; it fails if the other domain still
///   maps the page;
/// - [`GrantedSkb::into_skb`] gives the buffer back once all grants have ended;
/// - dropping the value ends the remaining grants; if the other domain still maps any of them, the
///   buffer is leaked (never freed, so the memory is never reused) together with those references,
///   as a peer that does so is broken. No page reference is taken: `get_page()` is refused for the
///   slab pages a linear area may live in.
///
/// # Examples
///
/// ```
/// use kernel::net::skb::SkBuff;
/// use kernel::xen::grant::GrantedSkb;
///
/// let mut skb = SkBuff::alloc(200, GFP_KERNEL)?;
/// skb.put_data(&[0u8; 100])?;
/// let layout = GrantedSkb::layout(&skb);
/// assert!(layout.grantable);
/// assert!(layout.grants == 1 || layout.grants == 2);
/// assert!(layout.first_len <= 100);
/// assert!(layout.describes(&skb));
/// // A layout is of the buffer as it was: `GrantedSkb::new` computes it again after a change.
/// skb.put_data(&[0u8; 10])?;
/// assert!(!layout.describes(&skb));
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// - For every `i < count` whose bit is set in `live`, `grants[i].gref` is a reference owned by
///   `self` whose entry grants `domid` read-only access to the frame holding bytes
///   `grants[i].offset..+len` of the data of `skb`; references of pieces whose bit is clear were
///   given back.
/// - `count <= SKB_MAX_GRANTS` and `live` has no bit at or above `count`.
/// - `skb` is owned and initialised; its data is not modified through `self`.
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
pub struct GrantedSkb {
    skb: ManuallyDrop<crate::net::skb::SkBuff>,
    domid: DomId,
    grants: [SkbGrant; SKB_MAX_GRANTS],
    count: u8,
    live: u32,
}

#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
impl GrantedSkb {
    /// Returns how [`GrantedSkb::new`] would grant `skb`.
    pub fn layout(skb: &crate::net::skb::SkBuffRef) -> SkbLayout {
        let data = skb.data();
        let head_offset = data.as_ptr() as usize % PAGE_SIZE;
        let mut grants = count_grants(head_offset, data.len());
        let mut grantable = true;
        for frag in skb.frags() {
            grants += count_grants(frag.offset() as usize, frag.size() as usize);
            grantable &= frag.page().is_some();
        }
        SkbLayout {
            grants,
            first_len: data.len().min(PAGE_SIZE - head_offset),
            grantable,
            of: SkbLayout::of(skb, data),
        }
    }

    /// Grants the data of `skb` read-only to `domid`, with references from `pool`.
    ///
    /// `layout` is what [`GrantedSkb::layout`] returned for `skb` (a caller needs it first, to
    /// know how many requests the packet takes); it is computed again if it no longer
    /// [describes](SkbLayout::describes) the buffer.
    ///
    /// Gives the buffer back with [`EMSGSIZE`] if it needs more than [`SKB_MAX_GRANTS`] grants
    /// (linearise it first), [`EOPNOTSUPP`] if a fragment is not in a page, [`ENOSPC`] if the pool
    /// has too few references.
    pub fn new(
        skb: crate::net::skb::SkBuff,
        layout: &SkbLayout,
        domid: DomId,
        pool: &mut RefPool,
    ) -> core::result::Result<Self, (crate::net::skb::SkBuff, Error)> {
        let layout = if layout.describes(&skb) {
            *layout
        } else {
            Self::layout(&skb)
        };
        if !layout.grantable {
            return Err((skb, EOPNOTSUPP));
        }
        if layout.grants > SKB_MAX_GRANTS {
            return Err((skb, EMSGSIZE));
        }
        // Claim every reference first, so that nothing is granted unless all can be.
        let mut refs: [Option<UnusedRef>; SKB_MAX_GRANTS] = [const { None }; SKB_MAX_GRANTS];
        for slot in refs.iter_mut().take(layout.grants) {
            match pool.claim() {
                Ok(r) => *slot = Some(r),
                Err(e) => {
                    for r in refs.iter_mut().filter_map(Option::take) {
                        pool.release(r);
                    }
                    return Err((skb, e));
                }
            }
        }
        let mut this = Self {
            skb: ManuallyDrop::new(skb),
            domid,
            grants: [SkbGrant {
                gref: GrantRef::INVALID,
                offset: 0,
                len: 0,
            }; SKB_MAX_GRANTS],
            count: 0,
            live: 0,
        };
        let mut refs = refs.into_iter().flatten();
        let Self {
            skb,
            grants,
            count,
            live,
            ..
        } = &mut this;
        let mut grant = |gfn: Gfn, offset: usize, len: usize| {
            let i = usize::from(*count);
            let Some(gref) = refs.next() else {
                // Cannot happen: `layout.grants` references were claimed for as many pieces.
                return;
            };
            let gref = gref.into_raw();
            // SAFETY: `gref` is owned and grants no access (type invariant of `UnusedRef`); the
            // frame holds data of the socket buffer, which stays allocated while `this` owns it.
            unsafe {
                bindings::gnttab_grant_foreign_access_ref(gref, domid.0, gfn.0 as c_ulong, 1)
            };
            // INVARIANT: Piece `i` is granted read-only and marked live; at most
            // `layout.grants <= SKB_MAX_GRANTS` pieces are made.
            grants[i] = SkbGrant {
                gref: GrantRef(gref),
                offset: offset as u16,
                len: len as u16,
            };
            *count += 1;
            *live |= 1 << i;
        };

        let data = skb.data();
        let base = data.as_ptr();
        let mut pos = 0;
        for chunk in chunks(base as usize % PAGE_SIZE, data.len()) {
            // SAFETY: `pos < data.len()`, so the address is in the linear area, which is in the
            // kernel's linear mapping.
            let gfn = unsafe { bindings::virt_to_gfn(base.add(pos).cast()) };
            grant(Gfn(gfn as u64), chunk.offset, chunk.len);
            pos += chunk.len;
        }
        for frag in skb.frags() {
            let Some(page) = frag.page() else {
                continue;
            };
            let first = frag.offset() as usize / PAGE_SIZE;
            for chunk in chunks(frag.offset() as usize, frag.size() as usize) {
                // SAFETY: A fragment lies within its (possibly compound) page, whose `struct page`s
                // are contiguous; `first + chunk.page` is the page holding this piece.
                let gfn =
                    unsafe { bindings::xen_page_to_gfn(page.as_ptr().add(first + chunk.page)) };
                grant(Gfn(gfn as u64), chunk.offset, chunk.len);
            }
        }
        Ok(this)
    }

    /// Returns the grants, in the order of the data: the linear area, then each fragment.
    pub fn grants(&self) -> &[SkbGrant] {
        &self.grants[..usize::from(self.count)]
    }

    /// Returns the socket buffer.
    pub fn skb(&self) -> &crate::net::skb::SkBuffRef {
        &self.skb
    }

    /// Returns the domain the data is granted to.
    pub fn domid(&self) -> DomId {
        self.domid
    }

    /// Returns whether grant `index` has not ended yet.
    pub fn is_live(&self, index: usize) -> bool {
        index < usize::from(self.count) && self.live & (1 << index) != 0
    }

    /// Returns whether every grant has ended.
    pub fn is_done(&self) -> bool {
        self.live == 0
    }

    /// Returns the number of grants that have not ended yet.
    pub fn live_count(&self) -> u32 {
        self.live.count_ones()
    }

    /// Ends grant `index` (`gnttab_end_foreign_access_ref()`) and puts its reference back into
    /// `pool`.
    ///
    /// Fails with [`EINVAL`] if there is no such grant or it has already ended, and with
    /// [`EBUSY`] if the other domain still maps the page (the grant stays live: the peer is
    /// broken, stop using it).
    pub fn end(&mut self, index: usize, pool: &mut RefPool) -> Result {
        if !self.is_live(index) {
            return Err(EINVAL);
        }
        let gref = self.grants[index].gref.0;
        // SAFETY: By the type invariants, a live piece's reference is owned and grants access.
        if unsafe { bindings::gnttab_end_foreign_access_ref(gref) } == 0 {
            return Err(EBUSY);
        }
        // INVARIANT: The access has ended; the reference is handed back and the piece is no
        // longer live.
        self.live &= !(1 << index);
        pool.release(UnusedRef(gref));
        Ok(())
    }

    /// Gives the socket buffer back once every grant has ended; returns `self` otherwise.
    // Like `Arc::try_unwrap()`, the failure hands the value back whole: it must not be dropped
    // while the peer may still hold grants to its pages.
    #[allow(clippy::result_large_err)]
    pub fn into_skb(self) -> core::result::Result<crate::net::skb::SkBuff, Self> {
        if self.live != 0 {
            return Err(self);
        }
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this.skb` is initialised and never used again: `this` is not dropped.
        Ok(unsafe { ManuallyDrop::take(&mut this.skb) })
    }
}

#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
impl Drop for GrantedSkb {
    fn drop(&mut self) {
        let mut still_mapped = false;
        for i in 0..usize::from(self.count) {
            if self.live & (1 << i) == 0 {
                continue;
            }
            // SAFETY: By the type invariants, a live piece's reference is owned and grants
            // access. On success the reference is freed.
            if unsafe { bindings::gnttab_try_end_foreign_access(self.grants[i].gref.0) } != 0 {
                self.live &= !(1 << i);
            } else {
                // The reference stays granted, and is never reused.
                still_mapped = true;
            }
        }
        if still_mapped {
            // The other domain may still read the data: the buffer is never freed.
            pr_warn!(
                "xen: grant still in use by domain {}: leaking a socket buffer\n",
                self.domid.0
            );
            return;
        }
        // SAFETY: `self.skb` is initialised and not used after this.
        unsafe { ManuallyDrop::drop(&mut self.skb) };
    }
}

/// A piece of a buffer that lies within one Xen page, as returned by [`chunks`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Index of the Xen page, counted from the page of the start of the buffer's region.
    pub page: usize,
    /// Offset of the piece in its Xen page.
    pub offset: usize,
    /// Length of the piece.
    pub len: usize,
}

/// An iterator over the pieces of a buffer that lie in one Xen page each ([`chunks`]).
pub struct Chunks {
    pos: usize,
    end: usize,
    first_page: usize,
}

impl Iterator for Chunks {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.pos >= self.end {
            return None;
        }
        let offset = self.pos % PAGE_SIZE;
        let len = (PAGE_SIZE - offset).min(self.end - self.pos);
        let chunk = Chunk {
            page: self.pos / PAGE_SIZE - self.first_page,
            offset,
            len,
        };
        self.pos += len;
        Some(chunk)
    }
}

/// Splits the region of `len` bytes at `offset` from the start of a page into pieces that each lie
/// in one Xen page, as `gnttab_foreach_grant_in_range()` does: one grant (or one grant copy) per
/// piece.
///
/// An empty region has no pieces. An offset and a length whose sum overflows are cut at
/// `usize::MAX`.
///
/// # Examples
///
/// ```
/// use kernel::xen::grant::{chunks, Chunk};
///
/// let mut it = chunks(4000, 200);
/// assert_eq!(it.next(), Some(Chunk { page: 0, offset: 4000, len: 96 }));
/// assert_eq!(it.next(), Some(Chunk { page: 1, offset: 0, len: 104 }));
/// assert_eq!(it.next(), None);
/// ```
pub fn chunks(offset: usize, len: usize) -> Chunks {
    Chunks {
        pos: offset,
        end: offset.saturating_add(len),
        first_page: offset / PAGE_SIZE,
    }
}

/// Returns the number of grants the region of `len` bytes at `offset` needs
/// (`gnttab_count_grant()`).
///
/// As in C, an empty region that does not start on a page boundary counts one grant.
///
/// # Examples
///
/// ```
/// use kernel::xen::grant::count_grants;
///
/// assert_eq!(count_grants(0, 4096), 1);
/// assert_eq!(count_grants(4000, 200), 2);
/// assert_eq!(count_grants(8192 + 10, 65536), 17);
/// ```
pub fn count_grants(offset: usize, len: usize) -> usize {
    (offset % PAGE_SIZE).saturating_add(len).div_ceil(PAGE_SIZE)
}

/// Grant copy operations, submitted together (`gnttab_batch_copy()`).
///
/// Each operation copies between local memory, borrowed for `'a`, and a page the other domain
/// granted (by reference). Local memory must be in the kernel's linear mapping (not `vmalloc()` or
/// stack memory) and each operation stays within one Xen page on both sides: split longer copies
/// with [`chunks`].
///
/// After [`CopyBatch::submit`], [`CopyBatch::status`] tells the result of each operation: the
/// other domain may have given a bad reference or offset, which fails that operation only.
///
/// # Examples
///
/// ```
/// use kernel::xen::{grant::{CopyBatch, GrantRef}, DomId};
///
/// let mut header = KBox::new([0u8; 128], GFP_KERNEL)?;
/// let mut batch = CopyBatch::with_capacity(1, GFP_KERNEL)?;
/// // Copy the first 128 bytes of the frontend's buffer (reference 42, offset 100).
/// batch.copy_from_peer(DomId(1), GrantRef(42), 100, &mut header[..])?;
/// assert_eq!(batch.len(), 1);
/// # Ok::<(), Error>(())
/// ```
pub struct CopyBatch<'a> {
    ops: KVec<bindings::gnttab_copy>,
    submitted: bool,
    _mem: PhantomData<&'a mut [u8]>,
}

impl<'a> CopyBatch<'a> {
    /// Creates an empty batch.
    pub fn new() -> Self {
        Self {
            ops: KVec::new(),
            submitted: false,
            _mem: PhantomData,
        }
    }

    /// Creates an empty batch with room for `capacity` operations.
    ///
    /// Operations added beyond the capacity are allocated with `GFP_ATOMIC`, as batches are
    /// usually filled in softirq context: reserve room up front.
    pub fn with_capacity(capacity: usize, flags: Flags) -> Result<Self> {
        Ok(Self {
            ops: KVec::with_capacity(capacity, flags)?,
            submitted: false,
            _mem: PhantomData,
        })
    }

    /// Empties the batch, keeping its allocation, for memory borrowed for another lifetime.
    pub fn reset<'b>(self) -> CopyBatch<'b> {
        let mut ops = self.ops;
        ops.clear();
        CopyBatch {
            ops,
            submitted: false,
            _mem: PhantomData,
        }
    }

    /// Returns the number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Returns whether the batch has no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Returns the frame and offset of local memory, checking that the operation can use it.
    fn local(mem: &[u8]) -> Result<(Gfn, u16)> {
        let addr = mem.as_ptr();
        let offset = addr as usize % PAGE_SIZE;
        if mem.is_empty() || offset + mem.len() > PAGE_SIZE {
            return Err(EINVAL);
        }
        // SAFETY: `virt_addr_valid()` only looks at the address.
        if !unsafe { bindings::virt_addr_valid(addr.cast()) } {
            return Err(EINVAL);
        }
        // SAFETY: `addr` is in the linear mapping (checked above).
        let gfn = unsafe { bindings::virt_to_gfn(addr.cast()) };
        Ok((Gfn(gfn as u64), offset as u16))
    }

    /// Checks the other domain's side of an operation.
    fn remote(offset: u16, len: usize) -> Result {
        if usize::from(offset) + len > PAGE_SIZE {
            return Err(EINVAL);
        }
        Ok(())
    }

    fn push(&mut self, op: bindings::gnttab_copy) -> Result<usize> {
        if self.submitted {
            return Err(EBUSY);
        }
        self.ops.push(op, GFP_ATOMIC)?;
        Ok(self.ops.len() - 1)
    }

    /// Adds an operation that copies `dst.len()` bytes from offset `offset` of the page that
    /// domain `domid` granted with `gref` into `dst` (`GNTCOPY_source_gref`).
    ///
    /// Returns the index of the operation. Fails with [`EINVAL`] if `dst` is empty, not in the
    /// linear mapping, or crosses a Xen page boundary, or if the copy would go past the end of
    /// the granted page; with [`EBUSY`] if the batch was submitted.
    pub fn copy_from_peer(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        dst: &'a mut [u8],
    ) -> Result<usize> {
        Self::remote(offset, dst.len())?;
        let (gfn, dst_offset) = Self::local(dst)?;
        let mut op: bindings::gnttab_copy = pin_init::zeroed();
        op.source.u.ref_ = gref.0;
        op.source.domid = domid.0;
        op.source.offset = offset;
        op.dest.u.gmfn = gfn.0 as bindings::xen_pfn_t;
        op.dest.domid = DomId::SELF.0;
        op.dest.offset = dst_offset;
        op.len = dst.len() as u16;
        op.flags = bindings::GNTCOPY_source_gref as u16;
        self.push(op)
    }

    /// Adds an operation that copies `src` to offset `offset` of the page that domain `domid`
    /// granted with `gref` (`GNTCOPY_dest_gref`).
    ///
    /// Returns the index of the operation. Fails like [`CopyBatch::copy_from_peer`].
    pub fn copy_to_peer(
        &mut self,
        src: &'a [u8],
        domid: DomId,
        gref: GrantRef,
        offset: u16,
    ) -> Result<usize> {
        Self::remote(offset, src.len())?;
        let (gfn, src_offset) = Self::local(src)?;
        let mut op: bindings::gnttab_copy = pin_init::zeroed();
        op.source.u.gmfn = gfn.0 as bindings::xen_pfn_t;
        op.source.domid = DomId::SELF.0;
        op.source.offset = src_offset;
        op.dest.u.ref_ = gref.0;
        op.dest.domid = domid.0;
        op.dest.offset = offset;
        op.len = src.len() as u16;
        op.flags = bindings::GNTCOPY_dest_gref as u16;
        self.push(op)
    }

    /// Adds an operation that copies `len` bytes at `src_offset` of the local page `src` to
    /// offset `offset` of the page that domain `domid` granted with `gref`.
    ///
    /// The page must not be written while the batch lives. Returns the index of the operation.
    /// Fails with [`EINVAL`] if either side would cross a Xen page boundary or `len` is zero.
    pub fn copy_page_to_peer(
        &mut self,
        src: &'a Page,
        src_offset: u16,
        len: usize,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
    ) -> Result<usize> {
        Self::remote(offset, len)?;
        if len == 0 || usize::from(src_offset) + len > PAGE_SIZE {
            return Err(EINVAL);
        }
        let mut op: bindings::gnttab_copy = pin_init::zeroed();
        op.source.u.gmfn = src.gfn().0 as bindings::xen_pfn_t;
        op.source.domid = DomId::SELF.0;
        op.source.offset = src_offset;
        op.dest.u.ref_ = gref.0;
        op.dest.domid = domid.0;
        op.dest.offset = offset;
        op.len = len as u16;
        op.flags = bindings::GNTCOPY_dest_gref as u16;
        self.push(op)
    }

    /// Adds an operation that copies `len` bytes from offset `offset` of the page that domain
    /// `domid` granted with `gref` to offset `dst_offset` of the local page `dst`
    /// (`GNTCOPY_source_gref`).
    ///
    /// The hypervisor writes the page when the batch is submitted, so its content must not be
    /// used while the batch lives ([`Page`] gives no safe access to its content). Several
    /// operations may write to distinct parts of the same page. Returns the index of the
    /// operation. Fails with [`EINVAL`] if either side would cross a Xen page boundary or `len`
    /// is zero, with [`EBUSY`] if the batch was submitted.
    pub fn copy_from_peer_to_page(
        &mut self,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
        dst: &'a Page,
        dst_offset: u16,
        len: usize,
    ) -> Result<usize> {
        Self::remote(offset, len)?;
        if len == 0 || usize::from(dst_offset) + len > PAGE_SIZE {
            return Err(EINVAL);
        }
        let mut op: bindings::gnttab_copy = pin_init::zeroed();
        op.source.u.ref_ = gref.0;
        op.source.domid = domid.0;
        op.source.offset = offset;
        op.dest.u.gmfn = dst.gfn().0 as bindings::xen_pfn_t;
        op.dest.domid = DomId::SELF.0;
        op.dest.offset = dst_offset;
        op.len = len as u16;
        op.flags = bindings::GNTCOPY_source_gref as u16;
        self.push(op)
    }

    /// Adds the operations that copy the next `len` bytes of a socket buffer's data, read through
    /// `src`, to offset `offset` of the page that domain `domid` granted with `gref`
    /// (`GNTCOPY_dest_gref`): the data goes from where it is to the other domain, with no copy
    /// in this domain first (C: `xenvif_rx_copy_add()`).
    ///
    /// One operation per [`SkbPiece`] (split at the Xen page boundaries of the source and at
    /// `len`); a piece of a page mapped from another domain is read through that domain's grant.
    /// The socket buffer is borrowed by `src` for `'a`, so it and the pages of its fragments stay
    /// allocated, and unmodified, until the batch is dropped or [reset](CopyBatch::reset).
    ///
    /// Returns the number of operations added (none if `len` is zero). Fails with [`EINVAL`] if
    /// the copy would go past the end of the granted page or of the data left in `src`, and with
    /// [`EBUSY`] if the batch was submitted: nothing is added then. Fails with [`EOPNOTSUPP`] if
    /// a fragment is not in a page (`net_iov` memory) or [`ENOMEM`]: the operations added
    /// before stay in the batch, and `src` has moved past them.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::net::skb::SkBuff;
    /// use kernel::xen::{grant::{CopyBatch, GrantRef, SkbSource}, DomId, PAGE_SIZE};
    ///
    /// let mut skb = SkBuff::alloc(200, GFP_KERNEL)?;
    /// skb.put_data(&[7u8; 150])?;
    /// let mut src = SkbSource::new(&skb);
    /// let mut batch = CopyBatch::with_capacity(4, GFP_KERNEL)?;
    /// // The first 100 bytes at the end of one granted page, the other 50 into another one.
    /// let end = PAGE_SIZE as u16 - 100;
    /// let n = batch.copy_skb_to_peer(&mut src, 100, DomId(1), GrantRef(8), end)?;
    /// assert!(n >= 1);
    /// assert_eq!(src.remaining(), 50);
    /// // Not past the end of the granted page, not past the end of the packet.
    /// assert_eq!(batch.copy_skb_to_peer(&mut src, 50, DomId(1), GrantRef(9), 4050), Err(EINVAL));
    /// assert_eq!(batch.copy_skb_to_peer(&mut src, 51, DomId(1), GrantRef(9), 0), Err(EINVAL));
    /// batch.copy_skb_to_peer(&mut src, 50, DomId(1), GrantRef(9), 0)?;
    /// assert_eq!(src.remaining(), 0);
    /// # Ok::<(), Error>(())
    /// ```
    #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
    pub fn copy_skb_to_peer(
        &mut self,
        src: &mut SkbSource<'a>,
        len: usize,
        domid: DomId,
        gref: GrantRef,
        offset: u16,
    ) -> Result<usize> {
        Self::remote(offset, len)?;
        if len > src.remaining() {
            return Err(EINVAL);
        }
        if self.submitted {
            return Err(EBUSY);
        }
        let mut done = 0;
        let mut added = 0;
        while done < len {
            // `src` holds at least `len - done` more bytes (checked above): never `None`.
            let piece = src.next_piece(len - done)?.ok_or(EINVAL)?;
            let mut op: bindings::gnttab_copy = pin_init::zeroed();
            op.flags = bindings::GNTCOPY_dest_gref as u16;
            match piece.frame {
                SkbFrame::Local(gfn) => {
                    op.source.u.gmfn = gfn.0 as bindings::xen_pfn_t;
                    op.source.domid = DomId::SELF.0;
                }
                SkbFrame::Foreign(owner, r) => {
                    op.source.u.ref_ = r.0;
                    op.source.domid = owner.0;
                    op.flags |= bindings::GNTCOPY_source_gref as u16;
                }
            }
            op.source.offset = piece.offset;
            op.dest.u.ref_ = gref.0;
            op.dest.domid = domid.0;
            // `offset + done < offset + len <= PAGE_SIZE`: fits.
            op.dest.offset = offset + done as u16;
            op.len = piece.len;
            self.push(op)?;
            done += usize::from(piece.len);
            added += 1;
        }
        Ok(added)
    }

    /// Performs all operations (`gnttab_batch_copy()`).
    ///
    /// The hypervisor retries operations on paged-out frames; each operation then has its final
    /// status. Further operations cannot be added.
    pub fn submit(&mut self) {
        if self.submitted || self.ops.is_empty() {
            self.submitted = true;
            return;
        }
        // SAFETY: `ops` holds `len` initialised operations whose local sides are memory borrowed
        // for `'a` (or a `Page`), in the linear mapping, within one page; the hypervisor writes
        // only to that memory and to the status fields.
        unsafe { bindings::gnttab_batch_copy(self.ops.as_mut_ptr(), self.ops.len() as c_uint) };
        self.submitted = true;
    }

    /// Returns the raw status of operation `index` (`GNTST_*`), if it was submitted.
    pub fn raw_status(&self, index: usize) -> Option<i16> {
        if !self.submitted {
            return None;
        }
        self.ops.get(index).map(|op| op.status)
    }

    /// Returns the result of operation `index`: `Ok` if the copy was done (`GNTST_okay`).
    ///
    /// Fails with [`EINVAL`] if there is no such operation or the batch was not submitted, and
    /// with the error of the failed operation otherwise: [`EACCES`] for a permission problem,
    /// [`EAGAIN`] if the frame stayed paged out, [`EIO`] for anything else the other domain got
    /// wrong (a bad reference, offset or domain).
    pub fn status(&self, index: usize) -> Result {
        status_to_result(self.raw_status(index).ok_or(EINVAL)?)
    }
}

impl Default for CopyBatch<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a piece of a socket buffer's data is, as the source of a grant copy.
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkbFrame {
    /// A frame of this domain.
    Local(Gfn),
    /// A page of another domain (the first field) that this domain mapped through a grant (the
    /// second field), as the fragments of guest transmit data a backend forwards without copying
    /// it (`xen_page_foreign()`): a grant copy reads it through that grant.
    Foreign(DomId, GrantRef),
}

/// A piece of a socket buffer's data that lies within one Xen page, as returned by
/// [`SkbSource::next_piece`].
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkbPiece {
    /// The Xen page.
    pub frame: SkbFrame,
    /// Offset of the piece in the Xen page.
    pub offset: u16,
    /// Length of the piece, at least 1, at most to the end of the Xen page.
    pub len: u16,
}

/// A cursor over the data of a socket buffer, for grant copies that read the data where it is
/// ([`CopyBatch::copy_skb_to_peer`]).
///
/// The data is read in the order of the packet: the linear area, each fragment, then each buffer
/// of the frag list the same way (`skb_walk_frags()`, one level, as C's
/// `xenvif_rx_next_frag()`). It comes in pieces that each lie within one Xen page: the linear
/// area may cross page boundaries, and a fragment may span several pages of a compound page (an
/// order-3 page of the page-fragment allocator, say), each Xen page of which is a separate
/// frame. The linear area is memory of this domain; a fragment's page may be mapped from another
/// domain ([`SkbFrame::Foreign`]).
///
/// The socket buffer is borrowed for `'a`, so a [`CopyBatch`] that copies from it keeps it
/// allocated until the batch is submitted and dropped.
///
/// # Examples
///
/// ```
/// use kernel::net::skb::SkBuff;
/// use kernel::page::Page;
/// use kernel::xen::grant::{SkbFrame, SkbSource};
///
/// let mut skb = SkBuff::alloc(200, GFP_KERNEL)?;
/// skb.put_data(&[1u8; 64])?;
/// // 96 bytes at the end of a page, then 1000 bytes of another page.
/// skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 4000, 96, 4096)?;
/// skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 0, 1000, 4096)?;
/// let mut src = SkbSource::new(&skb);
/// assert_eq!(src.remaining(), 64 + 96 + 1000);
/// // The linear area (`kmalloc()` memory: one piece unless it crosses a page boundary).
/// let mut head = 0;
/// while head < 64 {
///     let p = src.next_piece(64 - head)?.unwrap();
///     assert!(matches!(p.frame, SkbFrame::Local(_)));
///     assert!(usize::from(p.offset) + usize::from(p.len) <= 4096);
///     head += usize::from(p.len);
/// }
/// assert_eq!(head, 64);
/// // At most `max` bytes at a time: the rest of a destination slot.
/// let p = src.next_piece(40)?.unwrap();
/// assert_eq!((p.offset, p.len), (4000, 40));
/// let p = src.next_piece(4096)?.unwrap();
/// assert_eq!((p.offset, p.len), (4040, 56));
/// let p = src.next_piece(4096)?.unwrap();
/// assert_eq!((p.offset, p.len), (0, 1000));
/// assert_eq!(src.next_piece(4096)?, None);
/// assert_eq!(src.remaining(), 0);
/// # Ok::<(), Error>(())
/// ```
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
pub struct SkbSource<'a> {
    /// The buffer being read: the socket buffer or one of its frag list.
    cur: &'a crate::net::skb::SkBuffRef,
    /// The buffers of the frag list not read yet.
    rest: crate::net::skb::FragList<'a>,
    /// The part of `cur` being read: 0 the linear area, `i + 1` fragment `i`.
    part: usize,
    /// Bytes of that part already read.
    pos: usize,
    /// Bytes of the packet left to read.
    left: usize,
}

#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
impl<'a> SkbSource<'a> {
    /// Creates a cursor at the start of the data of `skb`.
    pub fn new(skb: &'a crate::net::skb::SkBuffRef) -> Self {
        Self {
            cur: skb,
            rest: skb.frag_list(),
            part: 0,
            pos: 0,
            left: skb.len() as usize,
        }
    }

    /// Returns the number of bytes left to read (of [`SkBuffRef::len`]).
    ///
    /// [`SkBuffRef::len`]: crate::net::skb::SkBuffRef::len
    pub fn remaining(&self) -> usize {
        self.left
    }

    /// Returns the next piece of at most `max` bytes, and moves past it.
    ///
    /// Returns [`None`] if `max` is zero or all data was read. Fails with [`EOPNOTSUPP`] if a
    /// fragment is not in a page (`net_iov` memory), and with [`EINVAL`] if the parts of the
    /// buffer hold less data than its length says.
    pub fn next_piece(&mut self, max: usize) -> Result<Option<SkbPiece>> {
        loop {
            if self.left == 0 || max == 0 {
                return Ok(None);
            }
            let max = max.min(self.left);
            if self.part == 0 {
                let data = self.cur.data();
                if let Some(rest) = data.get(self.pos..).filter(|r| !r.is_empty()) {
                    let addr = rest.as_ptr();
                    let offset = addr as usize % PAGE_SIZE;
                    let len = rest.len().min(PAGE_SIZE - offset).min(max);
                    // SAFETY: `addr` is in the linear area, which is in the kernel's linear
                    // mapping.
                    let gfn = unsafe { bindings::virt_to_gfn(addr.cast()) };
                    let frame = SkbFrame::Local(Gfn(gfn as u64));
                    return Ok(Some(self.advance(frame, offset, len)));
                }
            } else if let Some(frag) = self.cur.frags().get(self.part - 1) {
                let size = frag.size() as usize;
                if self.pos < size {
                    let page = frag.page().ok_or(EOPNOTSUPP)?;
                    let start = frag.offset() as usize + self.pos;
                    let offset = start % PAGE_SIZE;
                    let len = (size - self.pos).min(PAGE_SIZE - offset).min(max);
                    // SAFETY: A fragment lies within its (possibly compound) page, whose
                    // `struct page`s are contiguous: this is the one holding byte `start`.
                    let sub = unsafe { page.as_ptr().add(start / PAGE_SIZE) };
                    // SAFETY: `sub` is a valid `struct page`.
                    let foreign = unsafe { bindings::xen_page_foreign(sub) };
                    let frame = if foreign.is_null() {
                        // SAFETY: `sub` is a valid `struct page`.
                        SkbFrame::Local(Gfn(unsafe { bindings::xen_page_to_gfn(sub) } as u64))
                    } else {
                        // SAFETY: `foreign` points into `sub`, which stays valid while the
                        // fragment holds its page; the grant table code set it when it mapped
                        // the page and keeps it until the page is unmapped.
                        let f = unsafe { foreign.read() };
                        SkbFrame::Foreign(DomId(f.domid), GrantRef(f.gref))
                    };
                    return Ok(Some(self.advance(frame, offset, len)));
                }
            } else {
                // Past the last fragment: on to the next buffer of the frag list.
                self.cur = self.rest.next().ok_or(EINVAL)?;
                self.part = 0;
                self.pos = 0;
                continue;
            }
            self.part += 1;
            self.pos = 0;
        }
    }

    fn advance(&mut self, frame: SkbFrame, offset: usize, len: usize) -> SkbPiece {
        self.pos += len;
        self.left -= len;
        SkbPiece {
            frame,
            // Both at most `PAGE_SIZE`, which fits.
            offset: offset as u16,
            len: len as u16,
        }
    }
}

/// Converts a grant operation status (`GNTST_*`) to a result.
fn status_to_result(status: i16) -> Result {
    let status = i32::from(status);
    if status == bindings::GNTST_okay as i32 {
        Ok(())
    } else if status == bindings::GNTST_permission_denied {
        Err(EACCES)
    } else if status == bindings::GNTST_eagain {
        Err(EAGAIN)
    } else {
        Err(EIO)
    }
}

/// The state of a slot of [`ForeignPages`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SlotState {
    /// Nothing is mapped at the page.
    Free = 0,
    /// Added to a [`MapBatch`] not submitted yet.
    Mapping = 1,
    /// A grant of the other domain is mapped at the page.
    Mapped = 2,
    /// Mapped, and lent to a socket buffer ([`ZeroCopySkb`](crate::net::skb::ZeroCopySkb)).
    #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
    Lent = 3,
    /// Mapped, and given back by the network stack: ready to be unmapped.
    #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
    Returned = 4,
    /// Being unmapped.
    Unmapping = 5,
    /// Unmapping failed: the page is kept out of use for good (never freed).
    Leaked = 6,
}

impl SlotState {
    fn from_raw(v: u32) -> Self {
        match v {
            0 => Self::Free,
            1 => Self::Mapping,
            2 => Self::Mapped,
            #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
            3 => Self::Lent,
            #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
            4 => Self::Returned,
            5 => Self::Unmapping,
            _ => Self::Leaked,
        }
    }
}

/// The most slots of a [`ForeignPages`] (slot numbers fit in a `u16`).
pub const FOREIGN_PAGES_MAX: usize = 1 << 16;

/// Pages to free with `gnttab_free_pages()`, from a work item: freeing may sleep, and the last
/// reference to [`ForeignPages`] may be dropped in any context (the completion of a zero-copy
/// socket buffer runs in softirq).
#[pin_data]
struct DeferredFree {
    #[pin]
    work: crate::workqueue::Work<DeferredFree>,
    pages: KVec<*mut bindings::page>,
}

// SAFETY: The pages are owned and not used by anything else; freeing them may be done from any
// thread.
unsafe impl Send for DeferredFree {}

crate::impl_has_work! {
    impl HasWork<Self> for DeferredFree { self.work }
}

impl crate::workqueue::WorkItem for DeferredFree {
    type Pointer = Pin<KBox<DeferredFree>>;

    fn run(this: Pin<KBox<DeferredFree>>) {
        let n = this.pages.len();
        if n != 0 {
            let ptr = this.pages.as_ptr().cast_mut();
            // SAFETY: The pages were allocated by `gnttab_alloc_pages()`, are not mapped, and are
            // owned by `this` (type invariants of `ForeignPages`, which handed them over); the
            // function may sleep, and a work item runs in process context.
            unsafe { bindings::gnttab_free_pages(n as c_int, ptr) };
        }
    }
}

/// Pages without memory of their own (`gnttab_alloc_pages()`), where pages granted by the other
/// domain are mapped read-only, one per *slot* (the zero-copy mode of a backend).
///
/// Each slot goes through the states of [`SlotState`]: [`ForeignPages::map_batch`] maps grants
/// ([`MapBatch`], `gnttab_map_refs()`, a status per operation); with the network abstractions,
/// [`LendablePages`] lends mapped slots to socket buffers and gets them back from the stack; and
/// [`ForeignPages::unmap`] unmaps what is mapped and not lent (`gnttab_unmap_refs()`, a status per
/// operation). A slot whose unmapping fails cannot be used again safely: it is *leaked*, counted
/// ([`ForeignPages::leaked`]), logged, and its page is never freed (the C driver calls `BUG()`;
/// XSA-361/362/367 are about failures like it).
///
/// Dropping the value unmaps what is still mapped and frees the pages that can be (from a work
/// item: it may happen in any context).
///
/// # Examples
///
/// ```
/// use kernel::xen::grant::ForeignPages;
///
/// // Outside Xen there is no grant table.
/// # if !kernel::xen::xen_domain() {
/// assert_eq!(ForeignPages::new(256).err(), Some(ENODEV));
/// # }
/// ```
///
/// # Invariants
///
/// - `pages` holds `pages.len()` (in `1..=FOREIGN_PAGES_MAX`) pages allocated with
///   `gnttab_alloc_pages()`, owned by `self`; `state` and `handles` have as many entries.
/// - A slot's page has a grant mapped (whose handle is in `handles`) in the states `Mapped`,
///   `Lent`, `Returned` and `Unmapping`, maybe in `Leaked`, and in no other.
/// - `Mapping` and `Unmapping` are held by one [`MapBatch`] or one [`ForeignPages::unmap`] call,
///   which alone writes the slot's handle; a `Lent` slot's page may be read by the stack.
/// - `free` is a work item ready to free the pages, taken when `self` is dropped.
pub struct ForeignPages {
    pages: KVec<*mut bindings::page>,
    state: KVec<crate::sync::atomic::Atomic<u32>>,
    handles: KVec<crate::sync::atomic::Atomic<u32>>,
    leaked: crate::sync::atomic::Atomic<u32>,
    free: Option<Pin<KBox<DeferredFree>>>,
}

// SAFETY: The pages are owned; every slot's state changes atomically and its handle is written
// only by the holder of a transitional state.
unsafe impl Send for ForeignPages {}
// SAFETY: As above.
unsafe impl Sync for ForeignPages {}

impl ForeignPages {
    /// Allocates `count` pages (`gnttab_alloc_pages()`; they take no memory, but ballooned-out
    /// frames or unpopulated address space).
    ///
    /// Fails with [`EINVAL`] for 0 or more than [`FOREIGN_PAGES_MAX`] pages, [`ENODEV`] outside
    /// Xen, and [`ENOMEM`] if the pages cannot be had.
    pub fn new(count: usize) -> Result<Self> {
        check_xen()?;
        if count == 0 || count > FOREIGN_PAGES_MAX {
            return Err(EINVAL);
        }
        let mut state = KVec::with_capacity(count, GFP_KERNEL)?;
        let mut handles = KVec::with_capacity(count, GFP_KERNEL)?;
        for _ in 0..count {
            state.push(
                crate::sync::atomic::Atomic::new(SlotState::Free as u32),
                GFP_KERNEL,
            )?;
            handles.push(crate::sync::atomic::Atomic::new(0), GFP_KERNEL)?;
        }
        let free = KBox::pin_init(
            pin_init!(DeferredFree {
                work <- crate::new_work!("ForeignPages::free"),
                pages: KVec::new(),
            }),
            GFP_KERNEL,
        )?;
        let mut pages = KVec::from_elem(core::ptr::null_mut(), count, GFP_KERNEL)?;
        // SAFETY: `pages` has room for `count` page pointers.
        to_result(unsafe { bindings::gnttab_alloc_pages(count as c_int, pages.as_mut_ptr()) })?;
        // INVARIANT: `count` was checked; on success, the pages are ours and nothing is mapped.
        Ok(Self {
            pages,
            state,
            handles,
            leaked: crate::sync::atomic::Atomic::new(0),
            free: Some(free),
        })
    }

    /// Returns the number of slots.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Returns whether there are no slots (never: at least one is allocated).
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Returns the number of slots leaked because they could not be unmapped.
    pub fn leaked(&self) -> u32 {
        self.leaked.load(crate::sync::atomic::Relaxed)
    }

    /// Returns the state of `slot` (`None` if there is no such slot).
    pub fn state(&self, slot: usize) -> Option<SlotState> {
        self.state
            .get(slot)
            .map(|s| SlotState::from_raw(s.load(crate::sync::atomic::Acquire)))
    }

    /// Moves `slot` from state `from` to `to`, if it is in `from`.
    fn transition(&self, slot: usize, from: SlotState, to: SlotState) -> bool {
        use crate::sync::atomic::Full;
        self.state
            .get(slot)
            .is_some_and(|s| s.cmpxchg(from as u32, to as u32, Full).is_ok())
    }

    fn set_state(&self, slot: usize, to: SlotState) {
        if let Some(s) = self.state.get(slot) {
            s.store(to as u32, crate::sync::atomic::Release);
        }
    }

    /// Returns the address of the page of `slot` in the kernel's linear mapping (netback's
    /// `idx_to_kaddr()`), where the grant is mapped.
    fn kaddr(&self, slot: usize) -> u64 {
        // SAFETY: By the type invariants, the page pointer is valid.
        let pfn = unsafe { bindings::page_to_pfn(self.pages[slot]) };
        // SAFETY: `pfn_to_kaddr()` only computes an address.
        (unsafe { bindings::pfn_to_kaddr(pfn) }) as u64
    }

    /// Starts a batch of map operations, with room for `capacity` of them.
    pub fn map_batch(&self, capacity: usize, flags: Flags) -> Result<MapBatch<'_>> {
        Ok(MapBatch {
            pool: self,
            ops: KVec::with_capacity(capacity, flags)?,
            pages: KVec::with_capacity(capacity, flags)?,
            slots: KVec::with_capacity(capacity, flags)?,
            submitted: false,
            failed: false,
        })
    }

    /// Unmaps the grants mapped at `slots` (`gnttab_unmap_refs()`), and calls `done` with each
    /// slot and its result, in order.
    ///
    /// A slot must be mapped and not lent ([`SlotState::Mapped`] or [`SlotState::Returned`]):
    /// others are left alone and reported with [`EBUSY`] (lent) or [`EINVAL`]. A slot whose
    /// unmapping fails is leaked ([`SlotState::Leaked`], reported with [`EIO`]); the others are
    /// [`SlotState::Free`] again. Does not sleep (operations are submitted in batches of 16 from
    /// the stack).
    pub fn unmap(&self, slots: &[u16], mut done: impl FnMut(usize, Result)) {
        const CHUNK: usize = 16;
        for chunk in slots.chunks(CHUNK) {
            let mut ops = [bindings::gnttab_unmap_grant_ref::default(); CHUNK];
            let mut pages = [core::ptr::null_mut(); CHUNK];
            let mut which = [0usize; CHUNK];
            let mut n = 0;
            for &slot in chunk {
                let slot = usize::from(slot);
                let taken = self.transition(slot, SlotState::Mapped, SlotState::Unmapping);
                #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
                let taken =
                    taken || self.transition(slot, SlotState::Returned, SlotState::Unmapping);
                if !taken {
                    let busy = {
                        #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
                        {
                            self.state(slot) == Some(SlotState::Lent)
                        }
                        #[cfg(not(CONFIG_RUST_NETDEV_ABSTRACTIONS))]
                        {
                            false
                        }
                    };
                    done(slot, Err(if busy { EBUSY } else { EINVAL }));
                    continue;
                }
                let handle = self.handles[slot].load(crate::sync::atomic::Relaxed);
                // SAFETY: `ops[n]` is valid for writes; the address is the one the grant was
                // mapped at, `handle` the handle the map returned (type invariants).
                unsafe {
                    bindings::gnttab_set_unmap_op(
                        &mut ops[n],
                        self.kaddr(slot),
                        bindings::GNTMAP_host_map,
                        handle,
                    )
                };
                // Not set by a hypervisor that fails the whole call.
                ops[n].status = bindings::GNTST_general_error as i16;
                pages[n] = self.pages[slot];
                which[n] = slot;
                n += 1;
            }
            if n == 0 {
                continue;
            }
            // SAFETY: `ops` and `pages` hold `n` initialised entries for slots we hold in
            // `Unmapping`, whose pages are not lent: nothing reads them.
            let ret = unsafe {
                bindings::gnttab_unmap_refs(
                    ops.as_mut_ptr(),
                    core::ptr::null_mut(),
                    pages.as_mut_ptr(),
                    n as c_uint,
                )
            };
            for i in 0..n {
                let slot = which[i];
                if ret == 0 && i32::from(ops[i].status) == bindings::GNTST_okay as i32 {
                    // INVARIANT: Nothing is mapped at the page any more.
                    self.set_state(slot, SlotState::Free);
                    done(slot, Ok(()));
                } else {
                    // INVARIANT: The page may still be mapped: it is never used again.
                    self.set_state(slot, SlotState::Leaked);
                    self.leaked.fetch_add(1, crate::sync::atomic::Relaxed);
                    pr_err!(
                        "xen: grant unmap failed (ret {}, status {}, handle {:#x}): page leaked\n",
                        ret,
                        ops[i].status,
                        ops[i].handle
                    );
                    done(slot, Err(EIO));
                }
            }
        }
    }
}

impl Drop for ForeignPages {
    fn drop(&mut self) {
        let mut mapped = KVec::<u16>::new();
        for slot in 0..self.len() {
            match self.state(slot) {
                Some(SlotState::Free) | Some(SlotState::Leaked) => {}
                Some(SlotState::Mapped) => {
                    if mapped.push(slot as u16, GFP_ATOMIC).is_err() {
                        self.set_state(slot, SlotState::Leaked);
                    }
                }
                #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
                Some(SlotState::Returned) => {
                    if mapped.push(slot as u16, GFP_ATOMIC).is_err() {
                        self.set_state(slot, SlotState::Leaked);
                    }
                }
                // Cannot happen: a batch or a socket buffer holding a slot keeps `self` alive.
                _ => self.set_state(slot, SlotState::Leaked),
            }
        }
        self.unmap(&mapped, |_, _| {});
        // Hand the pages that can be freed to the work item; the others are leaked.
        let Some(mut free) = self.free.take() else {
            return;
        };
        let mut pages = core::mem::take(&mut self.pages);
        let mut kept = 0;
        for slot in 0..pages.len() {
            if self.state(slot) == Some(SlotState::Free) {
                pages[kept] = pages[slot];
                kept += 1;
            }
        }
        pages.truncate(kept);
        if kept != self.state.len() {
            pr_warn!(
                "xen: {} foreign pages not freed (still mapped)\n",
                self.state.len() - kept
            );
        }
        *free.as_mut().project().pages = pages;
        // A boxed work item cannot be queued already: this cannot fail.
        crate::workqueue::system().enqueue(free);
    }
}

/// A batch of grant map operations at slots of a [`ForeignPages`] (`gnttab_map_refs()`).
///
/// Each added slot goes from [`SlotState::Free`] to [`SlotState::Mapping`] and, once submitted,
/// to [`SlotState::Mapped`] if its operation succeeded, or back to [`SlotState::Free`].
/// Dropping a batch that was not submitted frees its slots again.
pub struct MapBatch<'a> {
    pool: &'a ForeignPages,
    ops: KVec<bindings::gnttab_map_grant_ref>,
    pages: KVec<*mut bindings::page>,
    slots: KVec<u16>,
    submitted: bool,
    failed: bool,
}

impl MapBatch<'_> {
    /// Adds the read-only mapping of the page domain `domid` granted with `gref` at `slot`
    /// (`GNTMAP_host_map | GNTMAP_readonly`). Returns the index of the operation.
    ///
    /// Fails with [`EBUSY`] if the slot is not free or the batch was submitted, [`EINVAL`] if
    /// there is no such slot, and [`ENOMEM`] if the batch is full and cannot grow.
    pub fn add(&mut self, slot: usize, domid: DomId, gref: GrantRef) -> Result<usize> {
        if self.submitted {
            return Err(EBUSY);
        }
        if slot >= self.pool.len() {
            return Err(EINVAL);
        }
        if !self
            .pool
            .transition(slot, SlotState::Free, SlotState::Mapping)
        {
            return Err(EBUSY);
        }
        let mut op = bindings::gnttab_map_grant_ref::default();
        // SAFETY: `op` is valid for writes; the address is the slot's page, which we hold.
        unsafe {
            bindings::gnttab_set_map_op(
                &mut op,
                self.pool.kaddr(slot),
                bindings::GNTMAP_host_map | bindings::GNTMAP_readonly,
                gref.0,
                domid.0,
            )
        };
        let pushed = self.ops.push(op, GFP_ATOMIC).is_ok()
            && self.pages.push(self.pool.pages[slot], GFP_ATOMIC).is_ok()
            && self.slots.push(slot as u16, GFP_ATOMIC).is_ok();
        if !pushed {
            self.ops.truncate(self.slots.len());
            self.pages.truncate(self.slots.len());
            self.pool.set_state(slot, SlotState::Free);
            return Err(ENOMEM);
        }
        Ok(self.slots.len() - 1)
    }

    /// Returns the number of operations.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Returns whether the batch has no operation.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Maps all (`gnttab_map_refs()`). Each slot is then [`SlotState::Mapped`] or free again,
    /// as [`MapBatch::status`] tells.
    ///
    /// If the call as a whole fails, operations the hypervisor did are still mapped but reported
    /// failed: unmap their slots ([`ForeignPages::unmap`]).
    pub fn submit(&mut self) {
        if self.submitted {
            return;
        }
        self.submitted = true;
        if self.ops.is_empty() {
            return;
        }
        for op in self.ops.iter_mut() {
            // Left as is by a hypervisor that fails the whole call.
            op.status = bindings::GNTST_general_error as i16;
        }
        // SAFETY: `ops` and `pages` hold `len` initialised entries for slots we hold in
        // `Mapping`: nothing else uses their pages. May sleep only on `GNTST_eagain` (paged-out
        // frames of a paging guest), as for the C driver.
        let ret = unsafe {
            bindings::gnttab_map_refs(
                self.ops.as_mut_ptr(),
                core::ptr::null_mut(),
                self.pages.as_mut_ptr(),
                self.ops.len() as c_uint,
            )
        };
        self.failed = ret != 0;
        for (op, &slot) in self.ops.iter().zip(self.slots.iter()) {
            let slot = usize::from(slot);
            if i32::from(op.status) == bindings::GNTST_okay as i32 {
                self.pool.handles[slot].store(op.handle, crate::sync::atomic::Relaxed);
                // INVARIANT: The grant is mapped at the page, with this handle.
                self.pool.set_state(slot, SlotState::Mapped);
            } else {
                // INVARIANT: Nothing was mapped.
                self.pool.set_state(slot, SlotState::Free);
            }
        }
    }

    /// Returns the result of operation `index`: `Ok` if the grant is mapped at its slot.
    ///
    /// Fails with [`EINVAL`] if there is no such operation or the batch was not submitted, and
    /// as [`CopyBatch::status`] for a failed operation ([`EIO`] if the call as a whole failed).
    pub fn status(&self, index: usize) -> Result {
        if !self.submitted {
            return Err(EINVAL);
        }
        let op = self.ops.get(index).ok_or(EINVAL)?;
        status_to_result(op.status)?;
        if self.failed {
            return Err(EIO);
        }
        Ok(())
    }
}

impl Drop for MapBatch<'_> {
    fn drop(&mut self) {
        if !self.submitted {
            for &slot in self.slots.iter() {
                self.pool.set_state(usize::from(slot), SlotState::Free);
            }
        }
    }
}

/// Told when the network stack gives back slots of [`LendablePages`].
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
pub trait ReturnNotify: Send + Sync {
    /// A zero-copy socket buffer was completed: its slots are [`SlotState::Returned`] and may be
    /// unmapped. Called in any context (softirq, interrupts off): must not sleep; scheduling NAPI
    /// or a work item is fine. `zerocopy_success` is `false` if the stack copied the data.
    fn returned(&self, zerocopy_success: bool);
}

/// [`ForeignPages`] whose mapped slots can be lent to zero-copy socket buffers
/// ([`ZeroCopy`](crate::net::skb::ZeroCopy), [`ZeroCopySkb`](crate::net::skb::ZeroCopySkb)):
/// only a [`SlotState::Mapped`] slot is lent, and the stack gives it back as
/// [`SlotState::Returned`], for [`ForeignPages::unmap`].
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
pub struct LendablePages<N: ReturnNotify> {
    /// The pages.
    pub pages: ForeignPages,
    /// Who is told.
    pub notify: N,
}

// SAFETY: A slot's page is valid and owned by `pages` while it lives; a lent slot stays mapped
// (it cannot be unmapped while `Lent`). `lend` only succeeds for a `Mapped` slot, which it makes
// `Lent` until `give_back`.
#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
unsafe impl<N: ReturnNotify> crate::net::skb::ZeroCopyPages for LendablePages<N> {
    fn count(&self) -> usize {
        self.pages.len()
    }

    fn page(&self, slot: usize) -> NonNull<bindings::page> {
        // A valid page pointer by the type invariants of `ForeignPages` (never null).
        NonNull::new(self.pages.pages[slot]).unwrap_or(NonNull::dangling())
    }

    fn lend(&self, slot: usize) -> bool {
        self.pages
            .transition(slot, SlotState::Mapped, SlotState::Lent)
    }

    fn give_back(&self, slot: usize) {
        self.pages
            .transition(slot, SlotState::Lent, SlotState::Returned);
    }

    fn complete(&self, zerocopy_success: bool) {
        self.notify.returned(zerocopy_success);
    }
}

/// The maximum number of pages of a shared ring (`XENBUS_MAX_RING_GRANTS`).
pub const MAX_RING_PAGES: usize = bindings::XENBUS_MAX_RING_GRANTS as usize;

/// Returns `nr_pages`, the number of pages of a ring, which the type invariants of [`RingPages`]
/// and [`MappedRing`] keep at most [`MAX_RING_PAGES`].
///
/// Bounding it here lets the compiler see that the ring's size cannot overflow and that its
/// references are in bounds: the callers have no panic path.
#[inline]
fn ring_pages(nr_pages: usize) -> usize {
    nr_pages.min(MAX_RING_PAGES)
}

/// The memory of a shared ring, allocated by a frontend and granted to the backend
/// (`xenbus_setup_ring()`).
///
/// The pages are zeroed and granted read-write to the other end of the device; their references
/// ([`RingPages::grefs`]) go into xenstore. Dropping the value ends the grants and frees the pages,
/// which stay out of reuse until the backend unmaps them (`xenbus_teardown_ring()`).
///
/// # Invariants
///
/// `nr_pages` is in `1..=MAX_RING_PAGES`. `vaddr` is the start of `nr_pages` Xen pages allocated
/// with `alloc_pages_exact()` and owned by `self`, whose frames are granted through
/// `grefs[..nr_pages]`; the memory is only accessed through [`RingMemory`].
pub struct RingPages {
    vaddr: NonNull<c_void>,
    nr_pages: usize,
    grefs: [GrantRef; MAX_RING_PAGES],
}

impl RingPages {
    /// Allocates, zeroes and grants `nr_pages` pages to the other end of `dev`.
    ///
    /// Fails with [`EINVAL`] for 0 or more than [`MAX_RING_PAGES`] pages, and with the error of
    /// the allocation or of the grant otherwise (which the xenbus core also reports in xenstore).
    pub fn setup(dev: &xenbus::Device<device::Core<'_>>, nr_pages: usize) -> Result<Self> {
        if nr_pages == 0 || nr_pages > MAX_RING_PAGES {
            return Err(EINVAL);
        }
        let mut vaddr: *mut c_void = core::ptr::null_mut();
        let mut grefs = [GrantRef::INVALID; MAX_RING_PAGES];
        // SAFETY: `dev` is a valid xenbus device, `vaddr` is valid for writes and `grefs` for
        // `nr_pages` references (`GrantRef` is a transparent `grant_ref_t`).
        to_result(unsafe {
            bindings::xenbus_setup_ring(
                dev.as_raw(),
                GFP_KERNEL.as_raw(),
                &mut vaddr,
                nr_pages as c_uint,
                grefs.as_mut_ptr().cast(),
            )
        })?;
        // INVARIANT: `nr_pages` was checked above; on success, `vaddr` is the zeroed, granted ring
        // memory.
        Ok(Self {
            vaddr: NonNull::new(vaddr).ok_or(ENOMEM)?,
            nr_pages,
            grefs,
        })
    }

    /// Returns the references of the pages, to write into xenstore (`ring-ref`, or
    /// `ring-ref<N>` for rings of several pages).
    pub fn grefs(&self) -> &[GrantRef] {
        &self.grefs[..ring_pages(self.nr_pages)]
    }
}

impl Drop for RingPages {
    fn drop(&mut self) {
        let mut vaddr = self.vaddr.as_ptr();
        // SAFETY: By the type invariants, `vaddr` and `grefs` are the memory and the grants of a
        // ring set up by `xenbus_setup_ring()`, owned by `self`.
        unsafe {
            bindings::xenbus_teardown_ring(
                &mut vaddr,
                self.nr_pages as c_uint,
                self.grefs.as_mut_ptr().cast(),
            )
        };
    }
}

// SAFETY: `as_ptr()` and `size()` are constant; the memory is valid for `size()` bytes while
// `self` lives and is only accessed through the ring types (type invariant).
unsafe impl RingMemory for RingPages {
    fn as_ptr(&self) -> NonNull<u8> {
        self.vaddr.cast()
    }

    fn size(&self) -> usize {
        ring_pages(self.nr_pages) * PAGE_SIZE
    }
}

// SAFETY: The memory is owned; the grant and free functions may be called from any thread.
unsafe impl Send for RingPages {}

// SAFETY: `&RingPages` gives access to the references and the address only.
unsafe impl Sync for RingPages {}

/// The memory of a shared ring granted by a frontend, mapped by a backend
/// (`xenbus_map_ring_valloc()`).
///
/// The references come from the frontend (through xenstore) and are not trusted: mapping fails
/// if they are not valid grants of that domain. Dropping the value unmaps the memory
/// (`xenbus_unmap_ring_vfree()`), which may sleep: drop it in process context.
///
/// # Invariants
///
/// `nr_pages` is in `1..=MAX_RING_PAGES`. `vaddr` is the start of `nr_pages` Xen pages mapped by
/// `xenbus_map_ring_valloc()` for `dev`; the memory is only accessed through [`RingMemory`].
pub struct MappedRing {
    dev: ARef<xenbus::Device>,
    vaddr: NonNull<c_void>,
    nr_pages: usize,
}

impl MappedRing {
    /// Maps the pages the other end of `dev` granted with `grefs`.
    ///
    /// Fails with [`EINVAL`] for no or more than [`MAX_RING_PAGES`] references, and with the error
    /// of the mapping otherwise (which the xenbus core also reports in xenstore).
    pub fn map(dev: &xenbus::Device<device::Core<'_>>, grefs: &[GrantRef]) -> Result<Self> {
        if grefs.is_empty() || grefs.len() > MAX_RING_PAGES {
            return Err(EINVAL);
        }
        let mut refs = [GrantRef::INVALID; MAX_RING_PAGES];
        refs[..grefs.len()].copy_from_slice(grefs);
        let mut vaddr: *mut c_void = core::ptr::null_mut();
        // SAFETY: `dev` is a valid xenbus device, `refs` holds `grefs.len()` references
        // (`GrantRef` is a transparent `grant_ref_t`), `vaddr` is valid for writes.
        to_result(unsafe {
            bindings::xenbus_map_ring_valloc(
                dev.as_raw(),
                refs.as_mut_ptr().cast(),
                grefs.len() as c_uint,
                &mut vaddr,
            )
        })?;
        // INVARIANT: The number of references was checked above; on success, `vaddr` is the mapped
        // memory.
        Ok(Self {
            dev: dev.into(),
            vaddr: NonNull::new(vaddr).ok_or(ENOMEM)?,
            nr_pages: grefs.len(),
        })
    }
}

impl Drop for MappedRing {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `vaddr` was mapped by `xenbus_map_ring_valloc()` for
        // `dev`. On failure the xenbus core reports the error and leaves the memory mapped.
        let _ =
            unsafe { bindings::xenbus_unmap_ring_vfree(self.dev.as_raw(), self.vaddr.as_ptr()) };
    }
}

// SAFETY: `as_ptr()` and `size()` are constant; the memory is valid for `size()` bytes while
// `self` lives and is only accessed through the ring types (type invariant).
unsafe impl RingMemory for MappedRing {
    fn as_ptr(&self) -> NonNull<u8> {
        self.vaddr.cast()
    }

    fn size(&self) -> usize {
        ring_pages(self.nr_pages) * PAGE_SIZE
    }
}

// SAFETY: The mapping is owned; unmapping may be done from any (sleepable) thread.
unsafe impl Send for MappedRing {}

// SAFETY: `&MappedRing` gives access to the address only.
unsafe impl Sync for MappedRing {}

#[cfg(CONFIG_RUST_XEN_KUNIT_TEST)]
#[macros::kunit_tests(rust_xen_grant)]
mod tests {
    use super::*;

    /// A range of bytes (offset, length) and the chunks (page, offset, length) it splits into.
    type SplitCase = (usize, usize, &'static [(usize, usize, usize)]);

    #[test]
    fn chunk_split() {
        let all: [SplitCase; 7] = [
            (0, 0, &[]),
            (0, 1, &[(0, 0, 1)]),
            (0, 4096, &[(0, 0, 4096)]),
            (0, 4097, &[(0, 0, 4096), (1, 0, 1)]),
            (4095, 2, &[(0, 4095, 1), (1, 0, 1)]),
            (8192 + 100, 4096, &[(0, 100, 3996), (1, 0, 100)]),
            (
                10,
                3 * 4096,
                &[(0, 10, 4086), (1, 0, 4096), (2, 0, 4096), (3, 0, 10)],
            ),
        ];
        for (offset, len, expected) in all {
            let mut n = 0;
            for (chunk, &(page, off, l)) in chunks(offset, len).zip(expected.iter()) {
                assert_eq!(
                    chunk,
                    Chunk {
                        page,
                        offset: off,
                        len: l
                    }
                );
                n += 1;
            }
            assert_eq!(n, expected.len());
            assert_eq!(chunks(offset, len).count(), expected.len());
            assert_eq!(chunks(offset, len).map(|c| c.len).sum::<usize>(), len);
        }
        // Saturates instead of overflowing.
        assert!(chunks(usize::MAX - 10, 100).all(|c| c.len <= PAGE_SIZE));
    }

    #[test]
    fn grant_count() {
        for offset in [0, 1, 100, 4095, 4096, 5000] {
            for len in [1, 2, 100, 4095, 4096, 4097, 65535, 65536] {
                assert_eq!(count_grants(offset, len), chunks(offset, len).count());
            }
        }
        // Same as C for empty regions.
        assert_eq!(count_grants(0, 0), 0);
        assert_eq!(count_grants(100, 0), 1);
        // The largest packet (64 KiB - 1) at the worst offset needs 17 grants.
        assert_eq!(count_grants(4095, 65535), 17);
    }

    #[test]
    fn copy_batch_checks() -> Result {
        let mut buf = KBox::new([0u8; 256], GFP_KERNEL)?;
        let (bad, good) = buf.split_at_mut(128);
        let mut empty = KBox::new([0u8; 64], GFP_KERNEL)?;
        let src = KBox::new([1u8; 64], GFP_KERNEL)?;
        let mut batch = CopyBatch::with_capacity(4, GFP_KERNEL)?;

        // The other domain's side must stay within its page.
        assert_eq!(
            batch.copy_from_peer(DomId(1), GrantRef(8), 4096 - 127, bad),
            Err(EINVAL)
        );
        assert_eq!(
            batch.copy_to_peer(&src[..], DomId(1), GrantRef(8), 4090),
            Err(EINVAL)
        );
        // Empty local memory.
        assert_eq!(
            batch.copy_from_peer(DomId(1), GrantRef(8), 0, &mut empty[..0]),
            Err(EINVAL)
        );
        assert!(batch.is_empty());

        // Valid operations are recorded as given.
        assert_eq!(
            batch.copy_from_peer(DomId(3), GrantRef(8), 4096 - 128, good),
            Ok(0)
        );
        assert_eq!(
            batch.copy_to_peer(&src[..], DomId(3), GrantRef(9), 17),
            Ok(1)
        );
        let op = &batch.ops[0];
        assert_eq!(op.flags, bindings::GNTCOPY_source_gref as u16);
        // SAFETY: This operation's source is a reference.
        assert_eq!(unsafe { op.source.u.ref_ }, 8);
        assert_eq!(
            (op.source.domid, op.source.offset, op.len),
            (3, 4096 - 128, 128)
        );
        assert_eq!(op.dest.domid, DomId::SELF.0);
        let op = &batch.ops[1];
        assert_eq!(op.flags, bindings::GNTCOPY_dest_gref as u16);
        // SAFETY: This operation's destination is a reference.
        assert_eq!(unsafe { op.dest.u.ref_ }, 9);
        assert_eq!((op.dest.domid, op.dest.offset, op.len), (3, 17, 64));

        // No status before submission.
        assert_eq!(batch.status(0), Err(EINVAL));
        assert_eq!(batch.raw_status(0), None);
        Ok(())
    }

    #[test]
    fn copy_batch_rejects_vmalloc() -> Result {
        // vmalloc memory is not in the linear mapping: its frame cannot be computed.
        let mut buf = VBox::new([0u8; 64], GFP_KERNEL)?;
        let mut batch = CopyBatch::new();
        assert_eq!(
            batch.copy_from_peer(DomId(1), GrantRef(1), 0, &mut buf[..]),
            Err(EINVAL)
        );
        Ok(())
    }

    #[test]
    fn copy_batch_rejects_page_crossing() -> Result {
        let mut buf = KBox::new([0u8; 2 * 4096], GFP_KERNEL)?;
        let start = PAGE_SIZE - buf.as_ptr() as usize % PAGE_SIZE;
        let mut batch = CopyBatch::new();
        // Crosses the page boundary at `start` by one byte each way.
        let crossing = &mut buf[start - 1..start + 1];
        assert_eq!(
            batch.copy_from_peer(DomId(1), GrantRef(1), 0, crossing),
            Err(EINVAL)
        );
        Ok(())
    }

    #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
    #[test]
    fn skb_layout() -> Result {
        use crate::net::skb::SkBuff;

        let mut skb = SkBuff::alloc(200, GFP_KERNEL)?;
        skb.put_data(&[0u8; 100])?;
        let head_offset = skb.data().as_ptr() as usize % PAGE_SIZE;
        let head = count_grants(head_offset, 100);
        let layout = GrantedSkb::layout(&skb);
        assert_eq!(layout.grants, head);
        assert_eq!(layout.first_len, 100.min(PAGE_SIZE - head_offset));
        assert!(layout.grantable);

        // One piece per fragment within a page; one more for a fragment crossing none.
        skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 100, 3996, PAGE_SIZE as u32)?;
        skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 4000, 96, PAGE_SIZE as u32)?;
        skb.add_rx_frag(
            Page::alloc_page(GFP_KERNEL)?,
            0,
            PAGE_SIZE as u32,
            PAGE_SIZE as u32,
        )?;
        let layout = GrantedSkb::layout(&skb);
        assert_eq!(layout.grants, head + 3);
        assert!(layout.grantable);
        assert!(layout.grants <= SKB_MAX_GRANTS);

        // An empty linear area gives a first piece too short for an Ethernet header.
        let skb = SkBuff::alloc(64, GFP_KERNEL)?;
        assert_eq!(GrantedSkb::layout(&skb).first_len, 0);
        Ok(())
    }

    /// Pieces of a fragment in an order-3 compound page, and of the frag list, as
    /// `SkbSource` and `CopyBatch::copy_skb_to_peer` split them.
    #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
    #[test]
    fn skb_source_split() -> Result {
        use crate::net::skb::SkBuff;

        let mut skb = SkBuff::alloc(256, GFP_KERNEL)?;
        skb.put_data(&[1u8; 100])?;
        let comp = 1 << bindings::___GFP_COMP_BIT;
        // SAFETY: Allocating has no requirement; the result is checked below.
        let page = unsafe { bindings::alloc_pages(GFP_KERNEL.as_raw() | comp, 3) };
        if page.is_null() {
            return Err(ENOMEM);
        }
        // 10000 bytes from byte 4000 of the compound page: in its Xen pages 0 to 3.
        // SAFETY: `skb` is owned and has no fragment yet; the page reference is handed over to
        // it; bytes 4000..14000 are within the 32 KiB page.
        unsafe { bindings::skb_add_rx_frag(skb.as_raw(), 0, page, 4000, 10000, 8 * 4096) };
        let mut tail = SkBuff::alloc(64, GFP_KERNEL)?;
        tail.put_data(&[2u8; 30])?;
        let tail = tail.into_raw().as_ptr();
        // SAFETY: `skb` is owned and has no frag list; it takes over `tail` (freed with it) and
        // its length, as `skb_append_pagefrags()` callers do.
        unsafe {
            (*bindings::skb_shinfo(skb.as_raw())).frag_list = tail;
            (*skb.as_raw()).len += 30;
            (*skb.as_raw()).data_len += 30;
        }
        let gfn = |i: usize| {
            // SAFETY: `page` is the head page of the compound page the fragment holds, `i < 8`.
            Gfn(unsafe { bindings::xen_page_to_gfn(page.add(i)) } as u64)
        };

        let mut src = SkbSource::new(&skb);
        assert_eq!(src.remaining(), 100 + 10000 + 30);
        let mut head = 0;
        while head < 100 {
            head += usize::from(src.next_piece(100 - head)?.ok_or(EINVAL)?.len);
        }
        // Destination slots of 4096 bytes, the first one 200 bytes short: the copies end at
        // every source and destination Xen page boundary.
        let mut batch = CopyBatch::with_capacity(8, GFP_KERNEL)?;
        assert_eq!(
            batch.copy_skb_to_peer(&mut src, 3896, DomId(1), GrantRef(5), 200),
            Ok(2)
        );
        assert_eq!(
            batch.copy_skb_to_peer(&mut src, 4096, DomId(1), GrantRef(6), 0),
            Ok(2)
        );
        assert_eq!(
            batch.copy_skb_to_peer(&mut src, 2038, DomId(1), GrantRef(7), 0),
            Ok(3)
        );
        assert_eq!(src.remaining(), 0);
        assert_eq!(src.next_piece(4096), Ok(None));
        let expected = [
            // (source frame, source offset, destination ref, destination offset, length)
            (gfn(0), 4000, 5, 200, 96),
            (gfn(1), 0, 5, 296, 3800),
            (gfn(1), 3800, 6, 0, 296),
            (gfn(2), 0, 6, 296, 3800),
            (gfn(2), 3800, 7, 0, 296),
            (gfn(3), 0, 7, 296, 1712),
        ];
        for (op, &(frame, so, r, d, l)) in batch.ops.iter().zip(expected.iter()) {
            assert_eq!(op.flags, bindings::GNTCOPY_dest_gref as u16);
            // SAFETY: These operations' sources are frames and destinations references.
            let (sf, dr) = unsafe { (op.source.u.gmfn, op.dest.u.ref_) };
            assert_eq!(
                (Gfn(sf as u64), op.source.offset, op.source.domid),
                (frame, so, DomId::SELF.0)
            );
            assert_eq!((dr, op.dest.offset, op.dest.domid, op.len), (r, d, 1, l));
        }
        // The last operation reads the linear area of the frag list's buffer.
        let op = &batch.ops[6];
        assert_eq!((op.dest.offset, op.len), (296 + 1712, 30));
        assert_eq!(batch.len(), 7);

        // A buffer whose parts hold less than its length.
        // SAFETY: The frag list's buffer is still there; only the lengths are changed (the
        // linear area keeps its length: `skb_headlen()` is `len - data_len`).
        unsafe {
            (*skb.as_raw()).len += 1;
            (*skb.as_raw()).data_len += 1;
        }
        let mut src = SkbSource::new(&skb);
        let mut n = 0;
        let err = loop {
            match src.next_piece(4096) {
                Ok(Some(p)) => n += usize::from(p.len),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        assert_eq!((n, err), (10130, Err(EINVAL)));
        // SAFETY: Restores the lengths the parts hold.
        unsafe {
            (*skb.as_raw()).len -= 1;
            (*skb.as_raw()).data_len -= 1;
        }
        Ok(())
    }

    #[test]
    fn slot_states() {
        for s in [
            SlotState::Free,
            SlotState::Mapping,
            SlotState::Mapped,
            SlotState::Unmapping,
            SlotState::Leaked,
        ] {
            assert_eq!(SlotState::from_raw(s as u32), s);
        }
        #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
        for s in [SlotState::Lent, SlotState::Returned] {
            assert_eq!(SlotState::from_raw(s as u32), s);
        }
        // Anything unknown is treated as leaked: never reused.
        assert_eq!(SlotState::from_raw(77), SlotState::Leaked);
    }

    #[test]
    fn statuses() {
        assert_eq!(status_to_result(0), Ok(()));
        assert_eq!(status_to_result(-8), Err(EACCES));
        assert_eq!(status_to_result(-12), Err(EAGAIN));
        for status in [-1, -3, -10, -13, -100, 1, i16::MIN] {
            assert_eq!(status_to_result(status), Err(EIO));
        }
    }

    #[test]
    fn without_xen() {
        if crate::xen::xen_domain() {
            return;
        }
        assert_eq!(RefPool::new(16).err(), Some(ENODEV));
        assert_eq!(UnusedRef::alloc().err(), Some(ENODEV));
        assert_eq!(ForeignPages::new(256).err(), Some(ENODEV));
    }
}
