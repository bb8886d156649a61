// SPDX-License-Identifier: GPL-2.0

//! Page pools: receive buffers that are recycled instead of freed (`struct page_pool`).
//!
//! A driver creates a [`PagePool`] for each receive queue and takes its buffers from it
//! ([`PagePool::alloc`]). A buffer given to the stack as a fragment of a socket buffer
//! ([`SkBuff::add_rx_pool_frag`](super::skb::SkBuff::add_rx_pool_frag)) goes back to its pool when
//! the buffer is freed; a [`PoolPage`] the driver drops goes back at once. Pages come back whole
//! (order 0), with whatever was last written into them: only pages the pool takes from the page
//! allocator are prepared with the flags given to [`PagePool::alloc`] (e.g. zeroed).
//!
//! The pool lives until its last page is back: pages may outlive the [`PagePool`] (and the
//! driver), e.g. in socket buffers still queued to a socket.
//!
//! This abstraction covers pools without DMA mapping (`flags` 0), as used by drivers of virtual
//! devices whose buffers are shared with another domain or a hypervisor rather than a device.
//!
//! C headers: [`include/net/page_pool/types.h`](srctree/include/net/page_pool/types.h),
//! [`include/net/page_pool/helpers.h`](srctree/include/net/page_pool/helpers.h)

use crate::{
    alloc::{
        AllocError,
        Flags, //
    },
    bindings,
    error::from_err_ptr,
    net::dev::Device,
    page::{
        BorrowedPage,
        PAGE_SIZE, //
    },
    prelude::*,
};
use core::ptr::NonNull;

/// A pool of order-0 pages for one receive queue (`struct page_pool`).
///
/// # Examples
///
/// ```
/// use kernel::net::{dev::{self, Device, NetdevTx, Options, Registration}, ethtool, skb::SkBuff};
/// use kernel::net::page_pool::PagePool;
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
/// let mut page = pool.alloc(GFP_KERNEL | __GFP_ZERO)?;
/// page.fill_zero();
/// // Back to the pool; the next allocation takes it again, as it was left.
/// drop(page);
/// let page = pool.alloc(GFP_KERNEL)?;
/// // The pool goes away once its pages are back.
/// drop(pool);
/// drop(page);
/// # Ok::<(), Error>(())
/// ```
///
/// # Invariants
///
/// `self.0` is a page pool created by `page_pool_create()` (without DMA mapping) whose creator's
/// reference `self` owns.
pub struct PagePool(NonNull<bindings::page_pool>);

// SAFETY: Allocation from a pool is serialised by its users (see `alloc`); destroying a pool is
// allowed from any thread in process context.
unsafe impl Send for PagePool {}
// SAFETY: `&PagePool` only allows `alloc` and reading the pointer; see `alloc` for its context.
unsafe impl Sync for PagePool {}

impl PagePool {
    /// Creates a pool of order-0 pages for a receive queue of `dev`, keeping up to `size` pages
    /// for recycling (typically the size of the receive ring).
    pub fn new(dev: &Device, size: u32) -> Result<Self> {
        // SAFETY: All-zero is valid for `page_pool_params`: no DMA, no NAPI, no netdev listing.
        let mut params: bindings::page_pool_params = unsafe { core::mem::zeroed() };
        params.__bindgen_anon_1.fast.order = 0;
        params.__bindgen_anon_1.fast.pool_size = size;
        params.__bindgen_anon_1.fast.nid = bindings::NUMA_NO_NODE;
        // SAFETY: `dev.as_raw()` is a valid `net_device`; its embedded `struct device` lives as
        // long as the net device, which the pool only uses for messages while `dev` exists.
        params.__bindgen_anon_1.fast.dev = unsafe { &raw mut (*dev.as_raw()).dev };
        params.__bindgen_anon_1.fast.max_len = PAGE_SIZE as u32;
        // SAFETY: `params` is a valid parameter block; the pool copies it.
        let pool = from_err_ptr(unsafe { bindings::page_pool_create(&params) })?;
        // INVARIANT: `page_pool_create` succeeded without DMA flags; we own its reference.
        NonNull::new(pool).map(Self).ok_or(ENOMEM)
    }

    /// Takes a page from the pool, or from the page allocator with `flags` if the pool has none
    /// to recycle (`page_pool_alloc_pages()`).
    ///
    /// Recycled pages are not cleared: they hold what their last user left in them. Call it from
    /// one context at a time for a pool (e.g. the receive queue's NAPI poll, or under the lock
    /// that protects its ring), as the C API requires.
    pub fn alloc(&self, flags: Flags) -> Result<PoolPage, AllocError> {
        // SAFETY: `self.0` is a live pool (type invariant); allocations of a pool are serialised
        // by its user, as documented above.
        let page = unsafe { bindings::page_pool_alloc_pages(self.0.as_ptr(), flags.as_raw()) };
        let page = NonNull::new(page).ok_or(AllocError)?;
        // INVARIANT: The pool handed us the only reference to a page of `self.0`.
        Ok(PoolPage { page, pool: self.0 })
    }

    /// Returns the raw pointer to the pool, e.g. to register it as a memory model.
    pub fn as_raw(&self) -> *mut bindings::page_pool {
        self.0.as_ptr()
    }
}

impl Drop for PagePool {
    fn drop(&mut self) {
        // SAFETY: We own the creator's reference (type invariant). The pool itself is freed once
        // every other user and every page is gone (pages may still be out).
        unsafe { bindings::page_pool_destroy(self.0.as_ptr()) };
    }
}

/// An order-0 page of a [`PagePool`], owned: dropping it gives it back to the pool
/// (`page_pool_put_full_page()`).
///
/// Must not be dropped in hard interrupt context.
///
/// # Invariants
///
/// `page` is a page of pool `pool` of which `self` owns the only pool reference (`pp_ref_count`
/// 1); `pool` is live while the page is out (the pool waits for its pages before it goes away).
pub struct PoolPage {
    page: NonNull<bindings::page>,
    pool: NonNull<bindings::page_pool>,
}

// SAFETY: A page may be returned to its pool from any CPU (`page_pool_put_full_page()` without
// direct recycling goes through the pool's locked ring).
unsafe impl Send for PoolPage {}
// SAFETY: `&PoolPage` gives only the pointer and the address of the page.
unsafe impl Sync for PoolPage {}

impl PoolPage {
    /// Returns the raw pointer to the page.
    pub fn as_ptr(&self) -> *mut bindings::page {
        self.page.as_ptr()
    }

    /// Returns the page, borrowed, for reading and writing its contents.
    pub fn page(&self) -> BorrowedPage<'_> {
        // SAFETY: `self.page` is a valid page for as long as `self` is borrowed.
        unsafe { BorrowedPage::from_raw(self.page) }
    }

    /// Clears the whole page.
    pub fn fill_zero(&mut self) {
        // SAFETY: We own the page exclusively (`&mut self`), so nothing accesses it concurrently;
        // the range is the page.
        let _ = unsafe { self.page().fill_zero_raw(0, PAGE_SIZE) };
    }

    /// Gives up the page, returning the pointer to it with the pool reference the caller now
    /// owns (to pass it to a socket buffer marked for recycling, for example).
    pub fn into_raw(self) -> NonNull<bindings::page> {
        let me = core::mem::ManuallyDrop::new(self);
        me.page
    }

    /// Takes a page reference of its own on the page and gives the page back to its pool, which
    /// releases it from its bookkeeping because of that reference (`page_pool_return_page()`):
    /// the page becomes an ordinary page the caller owns one reference of (`put_page()` frees it).
    ///
    /// For memory that must outlive the pool's control, e.g. a page another domain still maps.
    pub fn into_page_ref(self) -> NonNull<bindings::page> {
        let page = self.page;
        // SAFETY: `page` is valid; the extra reference keeps it allocated after the pool lets it
        // go.
        unsafe { bindings::get_page(page.as_ptr()) };
        // Back to the pool: with a page count above one it is not recycled but released.
        drop(self);
        page
    }
}

impl Drop for PoolPage {
    fn drop(&mut self) {
        // SAFETY: We own the page's pool reference and the pool is live (type invariant); no
        // direct recycling, so any non-hard-IRQ context is fine.
        unsafe { bindings::page_pool_put_full_page(self.pool.as_ptr(), self.page.as_ptr(), false) };
    }
}

#[kunit_tests(rust_page_pool)]
mod tests {
    use super::*;
    use crate::{
        alloc::flags::{__GFP_ZERO, GFP_KERNEL},
        net::{
            dev::{self, NetdevTx, Options, Registration},
            ethtool,
            skb::SkBuff,
        },
        page::Page,
    };

    /// Pages the test pools keep for recycling.
    const POOL: usize = 1024;

    struct Null;

    #[vtable]
    impl dev::Operations for Null {
        fn start_xmit(_: &Device, _: Pin<&Self>, skb: SkBuff) -> NetdevTx {
            skb.consume();
            NetdevTx::Ok
        }
    }

    #[vtable]
    impl ethtool::Operations for Null {}

    fn first_byte(page: &PoolPage) -> u8 {
        let mut b = 0u8;
        // SAFETY: We own the page; nothing writes it meanwhile; one byte into `b`.
        let _ = unsafe { page.page().read_raw(&mut b, 0, 1) };
        b
    }

    fn set_first_byte(page: &mut PoolPage, v: u8) {
        // SAFETY: We own the page exclusively; one byte from `v`.
        let _ = unsafe { page.page().write_raw(&v, 0, 1) };
    }

    /// Takes pages from `pool` until `raw` comes back, holding the others meanwhile. The pool
    /// hands out what is in its cache, then what was given back in that order (its ring, of
    /// [`POOL`] pages): more than both hold is enough.
    fn find(pool: &PagePool, raw: *mut bindings::page) -> Result<Option<PoolPage>> {
        let mut held = KVec::new();
        for _ in 0..2 * POOL {
            let page = pool.alloc(GFP_KERNEL)?;
            if page.as_ptr() == raw {
                return Ok(Some(page));
            }
            held.push(page, GFP_KERNEL)?;
        }
        Ok(None)
    }

    /// A page given back is handed out again, as it was left (no clearing).
    #[test]
    fn recycles() -> Result {
        let reg = Registration::new(&Options::new(), Null)?;
        let pool = PagePool::new(reg.device(), POOL as u32)?;
        let mut page = pool.alloc(GFP_KERNEL | __GFP_ZERO)?;
        assert_eq!(first_byte(&page), 0);
        set_first_byte(&mut page, 0xa5);
        let raw = page.as_ptr();
        drop(page);
        let again = find(&pool, raw)?;
        assert!(again.is_some());
        if let Some(mut again) = again {
            assert_eq!(first_byte(&again), 0xa5);
            again.fill_zero();
            assert_eq!(first_byte(&again), 0);
        }
        drop(pool);
        drop(reg);
        Ok(())
    }

    /// A page given to a socket buffer goes back to the pool when the buffer is freed; the
    /// buffer's other pages are freed as usual.
    #[test]
    fn skb_returns_pages() -> Result {
        let reg = Registration::new(&Options::new(), Null)?;
        let pool = PagePool::new(reg.device(), POOL as u32)?;
        let mut page = pool.alloc(GFP_KERNEL | __GFP_ZERO)?;
        set_first_byte(&mut page, 0x5a);
        let raw = page.as_ptr();
        let mut skb = SkBuff::alloc(128, GFP_KERNEL)?;
        skb.add_rx_pool_frag(page, 0, 100, PAGE_SIZE as u32)?;
        skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 0, 10, PAGE_SIZE as u32)?;
        assert_eq!(skb.len(), 110);
        // A bad range gives the page back to the pool at once.
        let spare = pool.alloc(GFP_KERNEL)?;
        let spare_raw = spare.as_ptr();
        assert!(skb
            .add_rx_pool_frag(spare, 4000, 100, PAGE_SIZE as u32)
            .is_err());
        assert!(find(&pool, spare_raw)?.is_some());
        // Not back before the buffer is freed.
        assert!(find(&pool, raw)?.is_none());
        skb.consume();
        let again = find(&pool, raw)?;
        assert!(again.as_ref().is_some_and(|p| first_byte(p) == 0x5a));
        drop(again);
        drop(pool);
        drop(reg);
        Ok(())
    }

    /// A page released from the pool with its own reference is not handed out again.
    #[test]
    fn page_ref_leaves_the_pool() -> Result {
        let reg = Registration::new(&Options::new(), Null)?;
        let pool = PagePool::new(reg.device(), POOL as u32)?;
        let page = pool.alloc(GFP_KERNEL)?;
        let raw = page.into_page_ref();
        assert!(find(&pool, raw.as_ptr())?.is_none());
        // SAFETY: We own the reference `into_page_ref` returned.
        unsafe { bindings::put_page(raw.as_ptr()) };
        // Pages outlive the pool handle: the pool waits for them.
        let other = pool.alloc(GFP_KERNEL)?;
        drop(pool);
        drop(other);
        drop(reg);
        Ok(())
    }
}
