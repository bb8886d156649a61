// SPDX-License-Identifier: GPL-2.0

//! Socket buffers (`struct sk_buff`) for network device drivers.
//!
//! [`SkBuff`] owns one reference to a socket buffer. It cannot be copied or cloned; it is freed
//! when dropped, with a drop reason (`SKB_DROP_REASON_NOT_SPECIFIED`, or the one given to
//! [`SkBuff::drop_reason`]), and handed to the stack or freed as "consumed" by methods that take
//! it by value ([`SkBuff::consume`], [`SkBuff::napi_consume`], [`SkBuff::netif_receive`],
//! [`PollContext::gro_receive`](super::napi::PollContext::gro_receive)). [`SkBuffRef`] is the
//! borrowed, read-only view every [`SkBuff`] dereferences to.
//!
//! Freeing uses `dev_kfree_skb_any_reason()`, which is safe in hard-irq, softirq and process
//! context, so an [`SkBuff`] may be dropped anywhere.
//!
//! C header: [`include/linux/skbuff.h`](srctree/include/linux/skbuff.h)

use crate::{
    alloc::{
        AllocError,
        Flags, //
    },
    bindings,
    error::to_result,
    net::dev::Device,
    page::{
        BorrowedPage,
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    types::Opaque, //
};
use core::{
    marker::PhantomData,
    mem::ManuallyDrop,
    ops::Deref,
    ptr::NonNull, //
};

/// Length of an Ethernet header (`ETH_HLEN`).
pub const ETH_HLEN: u32 = bindings::ETH_HLEN;

/// Maximum number of page fragments of a socket buffer (`MAX_SKB_FRAGS`).
pub const MAX_FRAGS: usize = bindings::MAX_SKB_FRAGS as usize;

/// Why a socket buffer is dropped (`enum skb_drop_reason`).
///
/// Drop reasons show up in the `kfree_skb` tracepoint and in drop monitors; a driver should use
/// the most precise one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum DropReason {
    /// No specific reason (`SKB_DROP_REASON_NOT_SPECIFIED`).
    NotSpecified = bindings::skb_drop_reason_SKB_DROP_REASON_NOT_SPECIFIED,
    /// The packet is shorter than its headers (`SKB_DROP_REASON_PKT_TOO_SMALL`).
    PktTooSmall = bindings::skb_drop_reason_SKB_DROP_REASON_PKT_TOO_SMALL,
    /// The packet is larger than the device accepts (`SKB_DROP_REASON_PKT_TOO_BIG`).
    PktTooBig = bindings::skb_drop_reason_SKB_DROP_REASON_PKT_TOO_BIG,
    /// Memory allocation failed (`SKB_DROP_REASON_NOMEM`).
    Nomem = bindings::skb_drop_reason_SKB_DROP_REASON_NOMEM,
    /// The device ring is full (`SKB_DROP_REASON_FULL_RING`).
    FullRing = bindings::skb_drop_reason_SKB_DROP_REASON_FULL_RING,
    /// The device is not ready, e.g. not connected to its peer (`SKB_DROP_REASON_DEV_READY`).
    DevReady = bindings::skb_drop_reason_SKB_DROP_REASON_DEV_READY,
    /// The device-level header is invalid (`SKB_DROP_REASON_DEV_HDR`).
    DevHdr = bindings::skb_drop_reason_SKB_DROP_REASON_DEV_HDR,
    /// A header could not be pulled into the linear area (`SKB_DROP_REASON_HDR_TRUNC`).
    HdrTrunc = bindings::skb_drop_reason_SKB_DROP_REASON_HDR_TRUNC,
    /// The packet was in a queue that is being purged (`SKB_DROP_REASON_QUEUE_PURGE`).
    QueuePurge = bindings::skb_drop_reason_SKB_DROP_REASON_QUEUE_PURGE,
}

/// Checksum state of a socket buffer (`skb->ip_summed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// No checksum information (`CHECKSUM_NONE`): the stack verifies or computes it.
    None,
    /// The checksum was verified by the device (`CHECKSUM_UNNECESSARY`).
    Unnecessary,
    /// `skb->csum` holds the checksum of the whole packet (`CHECKSUM_COMPLETE`).
    Complete,
    /// The checksum must still be computed from `csum_start` and stored at `csum_offset`
    /// (`CHECKSUM_PARTIAL`).
    Partial,
}

impl Checksum {
    fn from_raw(v: u8) -> Self {
        match u32::from(v) {
            bindings::CHECKSUM_UNNECESSARY => Self::Unnecessary,
            bindings::CHECKSUM_COMPLETE => Self::Complete,
            bindings::CHECKSUM_PARTIAL => Self::Partial,
            _ => Self::None,
        }
    }
}

/// How a packet was addressed at the link layer (`skb->pkt_type`), as `eth_type_trans()`
/// classifies a frame on the device it was received on. Packets the local stack sends keep
/// [`PacketType::Host`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    /// To this host (`PACKET_HOST`).
    Host,
    /// To the broadcast address (`PACKET_BROADCAST`).
    Broadcast,
    /// To a multicast group (`PACKET_MULTICAST`).
    Multicast,
    /// To another host (`PACKET_OTHERHOST`).
    OtherHost,
    /// Any other `PACKET_*` value (outgoing, loopback, ...).
    Other(u8),
}

impl PacketType {
    fn from_raw(v: u8) -> Self {
        match u32::from(v) {
            bindings::PACKET_HOST => Self::Host,
            bindings::PACKET_BROADCAST => Self::Broadcast,
            bindings::PACKET_MULTICAST => Self::Multicast,
            bindings::PACKET_OTHERHOST => Self::OtherHost,
            _ => Self::Other(v),
        }
    }
}

/// Segmentation offload type of a socket buffer (`skb_shinfo(skb)->gso_type`), a set of
/// `SKB_GSO_*` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GsoType(u32);

impl GsoType {
    /// No segmentation offload.
    pub const NONE: Self = Self(0);
    /// TCP over IPv4 (`SKB_GSO_TCPV4`).
    pub const TCPV4: Self = Self(bindings::SKB_GSO_TCPV4 as u32);
    /// TCP over IPv6 (`SKB_GSO_TCPV6`).
    pub const TCPV6: Self = Self(bindings::SKB_GSO_TCPV6 as u32);
    /// The packet comes from an untrusted source; its GSO fields must be verified
    /// (`SKB_GSO_DODGY`).
    pub const DODGY: Self = Self(bindings::SKB_GSO_DODGY as u32);
    /// TCP with ECN CWR set (`SKB_GSO_TCP_ECN`).
    pub const TCP_ECN: Self = Self(bindings::SKB_GSO_TCP_ECN as u32);
    /// UDP segmentation (`SKB_GSO_UDP_L4`).
    pub const UDP_L4: Self = Self(bindings::SKB_GSO_UDP_L4 as u32);
}

super::dev::impl_bit_set!(GsoType(u32), "`SKB_GSO_*`");

/// Kind of a packet hash (`enum pkt_hash_types`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum HashType {
    /// Undefined type (`PKT_HASH_TYPE_NONE`).
    None = bindings::pkt_hash_types_PKT_HASH_TYPE_NONE,
    /// Hash over layer 2 fields (`PKT_HASH_TYPE_L2`).
    L2 = bindings::pkt_hash_types_PKT_HASH_TYPE_L2,
    /// Hash over IP addresses (`PKT_HASH_TYPE_L3`).
    L3 = bindings::pkt_hash_types_PKT_HASH_TYPE_L3,
    /// Hash over IP addresses and ports (`PKT_HASH_TYPE_L4`).
    L4 = bindings::pkt_hash_types_PKT_HASH_TYPE_L4,
}

/// A page fragment of a socket buffer (`skb_frag_t`).
///
/// # Invariants
///
/// `self.0` is a fragment of a valid socket buffer, within its `nr_frags` first fragments.
#[repr(transparent)]
pub struct Frag(Opaque<bindings::skb_frag_t>);

impl Frag {
    /// Returns the page the fragment data is in, or [`None`] for fragments that are not backed
    /// by a page (`net_iov` memory).
    pub fn page(&self) -> Option<BorrowedPage<'_>> {
        // SAFETY: `self.0` is a valid fragment by the type invariant.
        let page = NonNull::new(unsafe { bindings::skb_frag_page(self.0.get()) })?;
        // SAFETY: The socket buffer holds a reference to the fragment page for as long as the
        // fragment is part of it, which is at least as long as `self` is borrowed.
        Some(unsafe { BorrowedPage::from_raw(page) })
    }

    /// Returns the offset of the fragment data in its page.
    pub fn offset(&self) -> u32 {
        // SAFETY: `self.0` is a valid fragment by the type invariant.
        unsafe { bindings::skb_frag_off(self.0.get()) }
    }

    /// Returns the length of the fragment data.
    pub fn size(&self) -> u32 {
        // SAFETY: `self.0` is a valid fragment by the type invariant.
        unsafe { bindings::skb_frag_size(self.0.get()) }
    }
}

/// The buffers of a socket buffer's frag list, as returned by [`SkBuffRef::frag_list`].
///
/// # Invariants
///
/// `next` is NULL or a buffer of the frag list of a socket buffer borrowed for `'a`.
pub struct FragList<'a> {
    next: *mut bindings::sk_buff,
    _skb: PhantomData<&'a SkBuffRef>,
}

impl<'a> Iterator for FragList<'a> {
    type Item = &'a SkBuffRef;

    fn next(&mut self) -> Option<&'a SkBuffRef> {
        let skb = NonNull::new(self.next)?;
        // SAFETY: By the type invariant, `skb` is on the frag list of a buffer borrowed for `'a`,
        // which owns it and keeps it unmodified while borrowed.
        let skb = unsafe { SkBuffRef::from_raw(skb.as_ptr()) };
        // INVARIANT: The list is linked through `next` and ends with NULL.
        // SAFETY: `skb` is a valid socket buffer.
        self.next = unsafe { (*skb.as_raw()).__bindgen_anon_1.__bindgen_anon_1.next };
        Some(skb)
    }
}

/// A borrowed socket buffer: read access to its metadata and data.
///
/// [`SkBuff`] dereferences to it, and [`Operations::select_queue`] receives one.
///
/// [`Operations::select_queue`]: super::dev::Operations::select_queue
///
/// # Invariants
///
/// `self.0` is a valid `struct sk_buff`. While `&self` is live, the buffer is only modified
/// through `&self` on the current thread (the type is not `Sync`), and only in fields that no
/// reference returned by its methods covers.
#[repr(transparent)]
pub struct SkBuffRef(Opaque<bindings::sk_buff>);

impl SkBuffRef {
    /// Creates a reference to a socket buffer from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct sk_buff` that nobody modifies, and that stays valid,
    /// for the lifetime `'a`.
    pub unsafe fn from_raw<'a>(ptr: *const bindings::sk_buff) -> &'a Self {
        // CAST: `SkBuffRef` is a transparent wrapper of `Opaque<sk_buff>`, which has the same
        // layout as `sk_buff`.
        // SAFETY: By the safety requirements, `ptr` is valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw pointer to the `struct sk_buff`.
    pub fn as_raw(&self) -> *mut bindings::sk_buff {
        self.0.get()
    }

    fn shinfo(&self) -> *mut bindings::skb_shared_info {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { bindings::skb_shinfo(self.as_raw()) }
    }

    /// Returns the length of the packet data, linear area and fragments (`skb->len`).
    pub fn len(&self) -> u32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { (*self.as_raw()).len }
    }

    /// Returns whether the packet has no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the length of the data in fragments (`skb->data_len`).
    pub fn data_len(&self) -> u32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { (*self.as_raw()).data_len }
    }

    /// Returns the length of the data in the linear area (`skb_headlen()`).
    pub fn headlen(&self) -> u32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { bindings::skb_headlen(self.as_raw()) }
    }

    /// Returns the free space in front of the data (`skb_headroom()`).
    pub fn headroom(&self) -> u32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { bindings::skb_headroom(self.as_raw()) }
    }

    /// Returns the free space after the linear data (`skb_tailroom()`); 0 for a non-linear
    /// buffer.
    pub fn tailroom(&self) -> u32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        let room = unsafe { bindings::skb_tailroom(self.as_raw()) };
        u32::try_from(room).unwrap_or(0)
    }

    /// Returns the true size of the buffer, the memory it accounts for (`skb->truesize`).
    pub fn truesize(&self) -> u32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { (*self.as_raw()).truesize }
    }

    /// Takes the software transmit timestamp the sender asked for, if it did
    /// (`skb_tx_timestamp()`): the time goes to the socket's error queue. A driver calls it in
    /// its transmit function just before it hands the packet to the device, and before the
    /// packet's completion can run.
    pub fn tx_timestamp(&self) {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant; the timestamp is
        // taken from a clone or a new buffer, this one is only read.
        unsafe { bindings::skb_tx_timestamp(self.as_raw()) }
    }

    /// Returns whether part of the data is in fragments (`skb_is_nonlinear()`).
    pub fn is_nonlinear(&self) -> bool {
        self.data_len() != 0
    }

    /// Returns whether the data is shared with a clone (`skb_cloned()`).
    pub fn is_cloned(&self) -> bool {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { bindings::skb_cloned(self.as_raw()) != 0 }
    }

    /// Returns the linear data (`skb->data`, `skb_headlen()` bytes).
    pub fn data(&self) -> &[u8] {
        let skb = self.as_raw();
        // SAFETY: `self.0` is a valid socket buffer by the type invariant; `data` points to
        // `skb_headlen()` initialised bytes, which cannot be modified while `&self` is live
        // (writers need `&mut SkBuff` and an unshared header).
        unsafe { core::slice::from_raw_parts((*skb).data, self.headlen() as usize) }
    }

    /// Returns the page that holds byte `offset` of the linear data, and the offset of that byte
    /// in the page.
    ///
    /// The linear data is physically contiguous but may cross page boundaries; drivers that
    /// share the data page by page (e.g. with Xen grants) call this once per page.
    ///
    /// Returns [`None`] if `offset` is not within the linear data.
    pub fn data_page(&self, offset: u32) -> Option<(BorrowedPage<'_>, usize)> {
        if offset >= self.headlen() {
            return None;
        }
        // SAFETY: `offset < headlen`, so the address is inside the linear data.
        let addr = unsafe { (*self.as_raw()).data.add(offset as usize) };
        // SAFETY: The linear area of a socket buffer is in the kernel's direct mapping.
        let page = NonNull::new(unsafe { bindings::virt_to_page(addr.cast()) })?;
        // SAFETY: The page holds the linear data of the socket buffer, which is not freed while
        // `self` is borrowed.
        let page = unsafe { BorrowedPage::from_raw(page) };
        Some((page, addr as usize & (PAGE_SIZE - 1)))
    }

    /// Copies `buf.len()` bytes of packet data starting at `offset` into `buf`, from the linear
    /// area and the fragments (`skb_copy_bits()`).
    pub fn copy_bits(&self, offset: u32, buf: &mut [u8]) -> Result {
        let len = c_int::try_from(buf.len())?;
        let offset = c_int::try_from(offset)?;
        // SAFETY: `self.0` is a valid socket buffer; `buf` is valid for writes of `len` bytes.
        to_result(unsafe {
            bindings::skb_copy_bits(self.as_raw(), offset, buf.as_mut_ptr().cast(), len)
        })
    }

    /// Copies `len` bytes of packet data starting at `offset` into `page` at `page_offset`
    /// (`skb_copy_bits()` into the mapped page).
    ///
    /// Used to bounce packet data into pages a driver owns (for example to grant them to another
    /// domain). Fails with `EINVAL` if the range is not within the packet or the page.
    pub fn copy_to_page(
        &self,
        offset: u32,
        page: &mut Page,
        page_offset: usize,
        len: usize,
    ) -> Result {
        if page_offset
            .checked_add(len)
            .is_none_or(|end| end > PAGE_SIZE)
        {
            return Err(EINVAL);
        }
        let c_len = c_int::try_from(len)?;
        let c_offset = c_int::try_from(offset)?;
        // SAFETY: `page` is a valid page we have exclusive access to (`&mut`); the mapping is
        // released below before the borrow ends.
        let vaddr = unsafe { bindings::kmap_local_page(page.as_ptr()) };
        // SAFETY: `self.0` is a valid socket buffer; `vaddr + page_offset` is valid for writes of
        // `len` bytes (checked above to stay within the mapped page); `skb_copy_bits()` checks
        // the packet range itself.
        let ret = unsafe {
            bindings::skb_copy_bits(
                self.as_raw(),
                c_offset,
                vaddr.cast::<u8>().add(page_offset).cast(),
                c_len,
            )
        };
        // SAFETY: `vaddr` was returned by `kmap_local_page()` above and is unmapped once.
        unsafe { bindings::kunmap_local(vaddr) };
        to_result(ret)
    }

    /// Copies `len` bytes of packet data starting at `offset` to the start of `page`, and zeroes
    /// the rest of the page.
    ///
    /// For bouncing data into a page that is then shared with another domain (XSA-403): the page
    /// holds the packet data and nothing else, even when it is reused. Fails with `EINVAL` if
    /// `len` exceeds the page or the range is not within the packet (the page is zeroed then).
    pub fn copy_to_page_zero_rest(&self, offset: u32, page: &mut Page, len: usize) -> Result {
        let copied = if len > PAGE_SIZE {
            Err(EINVAL)
        } else {
            self.copy_to_page(offset, page, 0, len)
        };
        let start = if copied.is_ok() { len } else { 0 };
        // SAFETY: `page` is a valid page we have exclusive access to (`&mut`); the mapping is
        // released below before the borrow ends.
        let vaddr = unsafe { bindings::kmap_local_page(page.as_ptr()) };
        // SAFETY: `vaddr + start .. vaddr + PAGE_SIZE` is within the mapped page (`start <=
        // PAGE_SIZE`), which nobody else accesses.
        unsafe { core::ptr::write_bytes(vaddr.cast::<u8>().add(start), 0, PAGE_SIZE - start) };
        // SAFETY: `vaddr` was returned by `kmap_local_page()` above and is unmapped once.
        unsafe { bindings::kunmap_local(vaddr) };
        copied
    }

    /// Returns the page fragments.
    pub fn frags(&self) -> &[Frag] {
        let shinfo = self.shinfo();
        // SAFETY: `shinfo` is valid; `nr_frags <= MAX_SKB_FRAGS` is a socket buffer invariant.
        let nr = usize::from(unsafe { (*shinfo).nr_frags });
        // CAST: `Frag` is a transparent wrapper of `Opaque<skb_frag_t>`.
        // SAFETY: The first `nr` fragments are initialised and live as long as the buffer.
        unsafe { core::slice::from_raw_parts((*shinfo).frags.as_ptr().cast::<Frag>(), nr) }
    }

    /// Returns the buffers chained in the frag list (`skb_walk_frags()`): their data follows
    /// this buffer's linear area and fragments, in order, and counts in [`SkBuffRef::len`].
    pub fn frag_list(&self) -> FragList<'_> {
        FragList {
            // SAFETY: `shinfo()` returns a valid pointer.
            next: unsafe { (*self.shinfo()).frag_list },
            _skb: PhantomData,
        }
    }

    /// Returns the number of page fragments.
    pub fn nr_frags(&self) -> usize {
        // SAFETY: `shinfo()` returns a valid pointer.
        usize::from(unsafe { (*self.shinfo()).nr_frags })
    }

    /// Returns whether segmentation offload is requested (`skb_is_gso()`).
    pub fn is_gso(&self) -> bool {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { bindings::skb_is_gso(self.as_raw()) }
    }

    /// Returns the segment size for segmentation offload (`skb_shinfo(skb)->gso_size`).
    pub fn gso_size(&self) -> u16 {
        // SAFETY: `shinfo()` returns a valid pointer.
        unsafe { (*self.shinfo()).gso_size }
    }

    /// Returns the segmentation offload type (`skb_shinfo(skb)->gso_type`).
    pub fn gso_type(&self) -> GsoType {
        // SAFETY: `shinfo()` returns a valid pointer.
        GsoType(unsafe { (*self.shinfo()).gso_type })
    }

    /// Returns the number of segments (`skb_shinfo(skb)->gso_segs`).
    pub fn gso_segs(&self) -> u16 {
        // SAFETY: `shinfo()` returns a valid pointer.
        unsafe { (*self.shinfo()).gso_segs }
    }

    /// Returns the checksum state (`skb->ip_summed`).
    pub fn ip_summed(&self) -> Checksum {
        // SAFETY: `self.0` is a valid socket buffer; `headers` is the named view of the header
        // fields, which are always initialised.
        Checksum::from_raw(
            unsafe { (*self.as_raw()).__bindgen_anon_4.headers.as_ref() }.ip_summed(),
        )
    }

    /// Returns the offset from `skb->data` where checksumming starts, for
    /// [`Checksum::Partial`] (`skb_checksum_start_offset()`).
    pub fn csum_start_offset(&self) -> i32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { bindings::skb_checksum_start_offset(self.as_raw()) }
    }

    /// Returns the offset from the checksum start where the checksum is stored, for
    /// [`Checksum::Partial`] (`skb->csum_offset`).
    pub fn csum_offset(&self) -> u16 {
        // SAFETY: `self.0` is a valid socket buffer; `csum_offset` is a plain field of the
        // `csum` union, valid to read as an integer.
        unsafe {
            (*self.as_raw())
                .__bindgen_anon_4
                .headers
                .as_ref()
                .__bindgen_anon_1
                .__bindgen_anon_1
                .csum_offset
        }
    }

    /// Returns how the packet was addressed at the link layer (`skb->pkt_type`).
    pub fn pkt_type(&self) -> PacketType {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant; `headers` is the named
        // view of the header fields, which are always initialised.
        let headers = unsafe { (*self.as_raw()).__bindgen_anon_4.headers.as_ref() };
        PacketType::from_raw(headers.pkt_type())
    }

    /// Returns the link-layer protocol (`skb->protocol`, in host byte order, e.g. `0x0800`).
    pub fn protocol(&self) -> u16 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        u16::from_be(unsafe { (*self.as_raw()).__bindgen_anon_4.headers.as_ref().protocol })
    }

    /// Returns the packet hash without computing it (`skb_get_hash_raw()`); 0 if none is set.
    pub fn hash_raw(&self) -> u32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { (*self.as_raw()).__bindgen_anon_4.headers.as_ref().hash }
    }

    /// Returns the flow hash of the packet, computing it from the headers and caching it in the
    /// buffer if none is set yet (`skb_get_hash()`), e.g. to pick a queue.
    pub fn hash(&self) -> u32 {
        // SAFETY: `self.0` is valid; the hash fields it may update are only accessed from this
        // thread (`SkBuffRef` is not `Sync`), and no reference to them is live.
        unsafe { bindings::skb_get_hash(self.as_raw()) }
    }

    /// Returns whether the hash covers the layer 4 ports (`skb->l4_hash`).
    pub fn has_l4_hash(&self) -> bool {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { (*self.as_raw()).__bindgen_anon_4.headers.as_ref().l4_hash() != 0 }
    }

    /// Returns the transmit queue chosen for the packet (`skb_get_queue_mapping()`).
    pub fn queue_mapping(&self) -> u16 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { bindings::skb_get_queue_mapping(self.as_raw()) }
    }

    /// Returns the offset of the network header from `skb->data` (`skb_network_offset()`).
    pub fn network_offset(&self) -> i32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { bindings::skb_network_offset(self.as_raw()) }
    }

    /// Returns the offset of the transport header from `skb->data` (`skb_transport_offset()`).
    pub fn transport_offset(&self) -> i32 {
        // SAFETY: `self.0` is a valid socket buffer by the type invariant.
        unsafe { bindings::skb_transport_offset(self.as_raw()) }
    }
}

/// An owned socket buffer.
///
/// Dropping an `SkBuff` frees it as dropped with [`DropReason::NotSpecified`]; use
/// [`SkBuff::consume`] for a packet that was handled successfully, and [`SkBuff::drop_reason`]
/// to give a precise reason.
///
/// # Invariants
///
/// `ptr` points to a valid `struct sk_buff` and `self` owns one reference to it.
///
/// # Examples
///
/// ```
/// use kernel::net::skb::SkBuff;
///
/// let mut skb = SkBuff::alloc(128, GFP_KERNEL)?;
/// skb.reserve(16)?;
/// skb.put_data(&[1, 2, 3, 4])?;
/// skb.push_data(&[0xaa, 0xbb])?;
/// assert_eq!(skb.data(), &[0xaa, 0xbb, 1, 2, 3, 4]);
/// skb.pull(2)?;
/// assert_eq!(skb.len(), 4);
/// assert_eq!(skb.headroom(), 16);
/// // Pulling more than the linear data is an error, not a crash.
/// assert!(skb.pull(5).is_err());
/// skb.consume();
/// # Ok::<(), Error>(())
/// ```
pub struct SkBuff {
    ptr: NonNull<bindings::sk_buff>,
}

// SAFETY: A socket buffer that is owned may be handed to and freed on any CPU.
unsafe impl Send for SkBuff {}

impl SkBuff {
    /// Allocates a socket buffer with `size` bytes of linear data space (`alloc_skb()`).
    pub fn alloc(size: u32, flags: Flags) -> Result<Self, AllocError> {
        // SAFETY: `alloc_skb` has no preconditions.
        let ptr = unsafe { bindings::alloc_skb(size, flags.as_raw()) };
        // INVARIANT: A newly allocated socket buffer has one reference, owned by us.
        Ok(Self {
            ptr: NonNull::new(ptr).ok_or(AllocError)?,
        })
    }

    /// Allocates a receive buffer of `len` bytes for `dev`, with the standard headroom
    /// (`netdev_alloc_skb()`, `GFP_ATOMIC`).
    pub fn netdev_alloc(dev: &Device, len: u32) -> Result<Self, AllocError> {
        // SAFETY: `dev` is a valid network device.
        let ptr = unsafe { bindings::netdev_alloc_skb(dev.as_raw(), len) };
        // INVARIANT: A newly allocated socket buffer has one reference, owned by us.
        Ok(Self {
            ptr: NonNull::new(ptr).ok_or(AllocError)?,
        })
    }

    /// Creates an owned socket buffer from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid `struct sk_buff` and the caller must own a reference to it,
    /// which is transferred to the returned object.
    pub unsafe fn from_raw(ptr: NonNull<bindings::sk_buff>) -> Self {
        // INVARIANT: By the safety requirements.
        Self { ptr }
    }

    /// Consumes the object and returns the raw pointer and the reference it owned.
    pub fn into_raw(self) -> NonNull<bindings::sk_buff> {
        ManuallyDrop::new(self).ptr
    }

    /// Frees the buffer as consumed: the packet was handled successfully
    /// (`dev_consume_skb_any()`).
    pub fn consume(self) {
        let ptr = self.into_raw();
        // SAFETY: We own a reference to a valid socket buffer; `dev_kfree_skb_any_reason` can be
        // called in any context.
        unsafe {
            bindings::dev_kfree_skb_any_reason(ptr.as_ptr(), bindings::skb_drop_reason_SKB_CONSUMED)
        };
    }

    /// Frees the buffer as dropped for `reason` (`dev_kfree_skb_any_reason()`).
    pub fn drop_reason(self, reason: DropReason) {
        let ptr = self.into_raw();
        // SAFETY: We own a reference to a valid socket buffer; `dev_kfree_skb_any_reason` can be
        // called in any context.
        unsafe { bindings::dev_kfree_skb_any_reason(ptr.as_ptr(), reason as u32) };
    }

    /// Frees the buffer as consumed from a NAPI poll (`napi_consume_skb()`).
    ///
    /// `budget` is the NAPI budget of the current poll, or 0 outside a NAPI poll (for example
    /// under netpoll). Inside a poll prefer
    /// [`PollContext::consume`](super::napi::PollContext::consume), which passes the right
    /// budget.
    pub fn napi_consume(self, budget: u32) {
        let ptr = self.into_raw();
        let budget = c_int::try_from(budget).unwrap_or(c_int::MAX);
        // SAFETY: We own a reference to a valid socket buffer; with a nonzero budget the caller
        // states it runs in a NAPI poll (softirq), where `napi_consume_skb` may use the per-CPU
        // cache; with 0 it falls back to `dev_consume_skb_any`.
        unsafe { bindings::napi_consume_skb(ptr.as_ptr(), budget) };
    }

    /// Hands the packet to the network stack (`netif_receive_skb()`).
    ///
    /// Returns `false` if the stack dropped it (`NET_RX_DROP`).
    pub fn netif_receive(self) -> bool {
        let ptr = self.into_raw();
        // SAFETY: We own a reference to a valid socket buffer, which we pass to the stack.
        unsafe { bindings::netif_receive_skb(ptr.as_ptr()) == bindings::NET_RX_SUCCESS as c_int }
    }

    /// Returns a mutable reference to the `sk_buff` when nothing else can observe it.
    fn raw(&mut self) -> *mut bindings::sk_buff {
        self.ptr.as_ptr()
    }

    /// Reserves `len` bytes of headroom in an empty buffer (`skb_reserve()`).
    ///
    /// Fails with `EINVAL` if the buffer has data or less than `len` bytes of tailroom.
    pub fn reserve(&mut self, len: u32) -> Result {
        if !self.is_empty() || len > self.tailroom() {
            return Err(EINVAL);
        }
        let len = c_int::try_from(len)?;
        // SAFETY: We own the buffer; it is empty and has at least `len` bytes of tailroom.
        unsafe { bindings::skb_reserve(self.raw(), len) };
        Ok(())
    }

    /// Extends the linear data by `len` zeroed bytes at the end (`skb_put_zero()`) and returns
    /// them for writing.
    ///
    /// Fails with `ENOSPC` if the tailroom is too small (where `skb_put()` would panic).
    pub fn put_zero(&mut self, len: u32) -> Result<&mut [u8]> {
        if self.is_nonlinear() || len > self.tailroom() {
            return Err(ENOSPC);
        }
        // SAFETY: We own the buffer, which is linear and has `len` bytes of tailroom.
        let p = unsafe { bindings::skb_put(self.raw(), len) }.cast::<u8>();
        // SAFETY: `skb_put` returned the start of `len` bytes that now belong to the data.
        unsafe { core::ptr::write_bytes(p, 0, len as usize) };
        // SAFETY: The bytes are initialised and exclusively ours while `self` is borrowed.
        Ok(unsafe { core::slice::from_raw_parts_mut(p, len as usize) })
    }

    /// Appends `data` to the linear data (`skb_put_data()`).
    ///
    /// Fails with `ENOSPC` if the tailroom is too small.
    pub fn put_data(&mut self, data: &[u8]) -> Result {
        self.put_zero(u32::try_from(data.len())?)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Prepends `data` to the linear data, using headroom (`skb_push()`).
    ///
    /// Fails with `ENOSPC` if the headroom is too small (where `skb_push()` would panic).
    pub fn push_data(&mut self, data: &[u8]) -> Result {
        let len = u32::try_from(data.len())?;
        if len > self.headroom() {
            return Err(ENOSPC);
        }
        // SAFETY: We own the buffer, which has `len` bytes of headroom.
        let p = unsafe { bindings::skb_push(self.raw(), len) }.cast::<u8>();
        // SAFETY: `p` is the start of `len` bytes that now belong to the linear data.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// Removes `len` bytes from the start of the linear data (`skb_pull()`).
    ///
    /// Fails with `EINVAL` if the linear data is shorter than `len` bytes; use
    /// [`SkBuff::may_pull`] first to move data from fragments into the linear area.
    pub fn pull(&mut self, len: u32) -> Result {
        if len > self.headlen() {
            return Err(EINVAL);
        }
        // SAFETY: We own the buffer, whose linear data has at least `len` bytes.
        let p = unsafe { bindings::skb_pull(self.raw(), len) };
        if p.is_null() {
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Makes sure the first `len` bytes of the packet are in the linear area, moving them from
    /// the fragments if needed (`pskb_may_pull()`).
    ///
    /// Returns `false` if the packet is shorter than `len` or memory ran out.
    pub fn may_pull(&mut self, len: u32) -> bool {
        // SAFETY: We own the buffer.
        unsafe { bindings::pskb_may_pull(self.raw(), len) }
    }

    /// Moves all fragment data into the linear area (`skb_linearize()`).
    pub fn linearize(&mut self) -> Result {
        // SAFETY: We own the buffer.
        to_result(unsafe { bindings::skb_linearize(self.raw()) })
    }

    /// Returns the linear data for writing.
    ///
    /// Fails with `EBUSY` if the header is shared with a clone (`skb_header_cloned()`), since
    /// writing would change the clone's data too.
    pub fn data_mut(&mut self) -> Result<&mut [u8]> {
        let skb = self.raw();
        // SAFETY: We own the buffer.
        if unsafe { bindings::skb_header_cloned(skb) } != 0 {
            return Err(EBUSY);
        }
        let len = self.headlen() as usize;
        // SAFETY: The linear data is `len` initialised bytes, not shared with clones, and
        // exclusively ours while `self` is mutably borrowed.
        Ok(unsafe { core::slice::from_raw_parts_mut((*skb).data, len) })
    }

    /// Appends `size` bytes at `offset` in `page` as a new fragment (`skb_add_rx_frag()`).
    ///
    /// The buffer takes over the page; `truesize` is the memory the fragment accounts for (at
    /// least `size`, usually the page size). Fails with `EINVAL` if the range is not in the page
    /// or `size` is 0, and with `ENOSPC` if the buffer already has [`MAX_FRAGS`] fragments; the
    /// page is freed then.
    pub fn add_rx_frag(&mut self, page: Page, offset: u32, size: u32, truesize: u32) -> Result {
        let i = self.next_rx_frag(offset, size, truesize)?;
        let page = ManuallyDrop::new(page);
        // SAFETY: `i` and the range were just checked; the page reference we owned is
        // transferred to the buffer, which drops it when freed.
        unsafe { self.set_rx_frag(i, page.as_ptr(), offset, size, truesize) };
        Ok(())
    }

    /// Adds `size` bytes at `offset` of `page`, a page of a page pool, as the next fragment, as
    /// [`SkBuff::add_rx_frag`] does, and marks the buffer for recycling
    /// (`skb_mark_for_recycle()`): freeing the buffer gives its pool pages back to their pools
    /// (and releases its other pages as usual). The page goes back to its pool on error.
    #[cfg(CONFIG_PAGE_POOL)]
    pub fn add_rx_pool_frag(
        &mut self,
        page: crate::net::page_pool::PoolPage,
        offset: u32,
        size: u32,
        truesize: u32,
    ) -> Result {
        let i = self.next_rx_frag(offset, size, truesize)?;
        let page = page.into_raw();
        // SAFETY: `i` and the range were just checked; the page's pool reference we owned is
        // transferred to the buffer.
        unsafe { self.set_rx_frag(i, page.as_ptr(), offset, size, truesize) };
        // SAFETY: We own the buffer. Marked, freeing it returns its pool pages to their pools
        // (`napi_pp_put_page()` tells pool pages from others, which are released as usual).
        unsafe { bindings::skb_mark_for_recycle(self.raw()) };
        Ok(())
    }

    /// The index of the next fragment for `size` bytes at `offset` of a page accounted as
    /// `truesize`, if the range is in the page, not empty, and a fragment slot is free.
    fn next_rx_frag(&self, offset: u32, size: u32, truesize: u32) -> Result<usize> {
        let end = offset.checked_add(size).ok_or(EINVAL)?;
        if size == 0 || end as usize > PAGE_SIZE || truesize < size {
            return Err(EINVAL);
        }
        let i = self.nr_frags();
        if i >= MAX_FRAGS {
            return Err(ENOSPC);
        }
        Ok(i)
    }

    /// Puts `size` bytes at `offset` of `page` into fragment slot `i` (`skb_add_rx_frag()`).
    ///
    /// # Safety
    ///
    /// `i` and the range were returned and checked by [`Self::next_rx_frag`], with no fragment
    /// added since; the caller gives the buffer a reference to `page` it owned.
    unsafe fn set_rx_frag(
        &mut self,
        i: usize,
        page: *mut bindings::page,
        offset: u32,
        size: u32,
        truesize: u32,
    ) {
        // SAFETY: We own the buffer; `i` is its next free fragment slot and the range is in the
        // page (safety requirements); the page reference becomes the buffer's.
        unsafe {
            bindings::skb_add_rx_frag(
                self.raw(),
                i as c_int,
                page,
                offset as c_int,
                size as c_int,
                truesize,
            )
        }
    }

    /// Sets the segmentation offload metadata (`gso_size`, `gso_type`; `gso_segs` is reset so
    /// the stack recomputes it).
    pub fn set_gso(&mut self, size: u16, gso_type: GsoType) {
        let shinfo = self.shinfo();
        // SAFETY: We own the buffer, so nothing else accesses its shared info.
        unsafe {
            (*shinfo).gso_size = size;
            (*shinfo).gso_type = gso_type.0;
            (*shinfo).gso_segs = 0;
        }
    }

    /// Sets the number of segments (`skb_shinfo(skb)->gso_segs`), e.g. computed from the
    /// payload length and [`SkBuffRef::gso_size`] for a packet from an untrusted source.
    pub fn set_gso_segs(&mut self, segs: u16) {
        let shinfo = self.shinfo();
        // SAFETY: We own the buffer, so nothing else accesses its shared info.
        unsafe { (*shinfo).gso_segs = segs };
    }

    /// Marks the checksum as needing to be computed from `start` (offset from `skb->data`) and
    /// stored at `offset` from there (`skb_partial_csum_set()`).
    ///
    /// Fails with `EINVAL` if the range is not within the linear data.
    pub fn set_partial_checksum(&mut self, start: u16, offset: u16) -> Result {
        // SAFETY: We own the buffer; `skb_partial_csum_set` checks the range.
        if unsafe { bindings::skb_partial_csum_set(self.raw(), start, offset) } {
            Ok(())
        } else {
            Err(EINVAL)
        }
    }

    /// Sets the checksum state to [`Checksum::None`] or [`Checksum::Unnecessary`].
    ///
    /// Use [`SkBuff::set_partial_checksum`] or [`SkBuff::checksum_setup`] for
    /// [`Checksum::Partial`]. Fails with `EINVAL` for the other states.
    pub fn set_ip_summed(&mut self, state: Checksum) -> Result {
        let v = match state {
            Checksum::None => bindings::CHECKSUM_NONE,
            Checksum::Unnecessary => bindings::CHECKSUM_UNNECESSARY,
            _ => return Err(EINVAL),
        };
        let skb = self.raw();
        // SAFETY: We own the buffer, so nothing else accesses its fields.
        unsafe {
            (*skb)
                .__bindgen_anon_4
                .headers
                .as_mut()
                .set_ip_summed(v as u8)
        };
        Ok(())
    }

    /// Sets up `csum_start` and `csum_offset` from the IPv4 or IPv6 and TCP or UDP headers of a
    /// packet whose transport checksum is partial (`skb_checksum_setup()`).
    ///
    /// With `recalculate`, the pseudo-header checksum is also written into the transport header.
    /// `skb->protocol` and the network header must be set (see [`SkBuff::eth_type_trans`]).
    pub fn checksum_setup(&mut self, recalculate: bool) -> Result {
        // SAFETY: We own the buffer.
        to_result(unsafe { bindings::skb_checksum_setup(self.raw(), recalculate) })
    }

    /// Sets the packet hash (`skb_set_hash()`).
    pub fn set_hash(&mut self, hash: u32, kind: HashType) {
        // SAFETY: We own the buffer.
        unsafe { bindings::skb_set_hash(self.raw(), hash, kind as u32) };
    }

    /// Sets the link-layer protocol (`skb->protocol`), given in host byte order.
    pub fn set_protocol(&mut self, protocol: u16) {
        let skb = self.raw();
        // SAFETY: We own the buffer, so nothing else accesses its fields.
        unsafe { (*skb).__bindgen_anon_4.headers.as_mut().protocol = protocol.to_be() };
    }

    /// Sets the transmit queue (`skb_set_queue_mapping()`).
    pub fn set_queue_mapping(&mut self, queue: u16) {
        // SAFETY: We own the buffer.
        unsafe { bindings::skb_set_queue_mapping(self.raw(), queue) };
    }

    /// Sets the MAC header at the current data position (`skb_reset_mac_header()`).
    pub fn reset_mac_header(&mut self) {
        // SAFETY: We own the buffer.
        unsafe { bindings::skb_reset_mac_header(self.raw()) };
    }

    /// Sets the network header at the current data position (`skb_reset_network_header()`).
    pub fn reset_network_header(&mut self) {
        // SAFETY: We own the buffer.
        unsafe { bindings::skb_reset_network_header(self.raw()) };
    }

    /// Sets the transport header at the current data position
    /// (`skb_reset_transport_header()`).
    pub fn reset_transport_header(&mut self) {
        // SAFETY: We own the buffer.
        unsafe { bindings::skb_reset_transport_header(self.raw()) };
    }

    /// Prepares a received Ethernet frame for the stack (`eth_type_trans()`): sets `skb->dev`,
    /// the MAC header, the packet type and `skb->protocol`, and pulls the Ethernet header.
    ///
    /// Returns the protocol in host byte order. Fails with `EINVAL` (and leaves the buffer
    /// unchanged) if the packet is shorter than an Ethernet header.
    pub fn eth_type_trans(&mut self, dev: &Device) -> Result<u16> {
        if !self.may_pull(ETH_HLEN) {
            return Err(EINVAL);
        }
        let skb = self.raw();
        // SAFETY: We own the buffer, whose linear area holds an Ethernet header; `dev` is valid.
        let proto = unsafe { bindings::eth_type_trans(skb, dev.as_raw()) };
        // SAFETY: We own the buffer, so nothing else accesses its fields. `eth_type_trans()`
        // only returns the protocol; storing it is the caller's job (as in C).
        unsafe { (*skb).__bindgen_anon_4.headers.as_mut().protocol = proto };
        Ok(u16::from_be(proto))
    }
}

impl Deref for SkBuff {
    type Target = SkBuffRef;

    fn deref(&self) -> &SkBuffRef {
        // SAFETY: `ptr` is valid by the type invariant; modifications need `&mut self`.
        unsafe { SkBuffRef::from_raw(self.ptr.as_ptr()) }
    }
}

impl Drop for SkBuff {
    fn drop(&mut self) {
        // SAFETY: We own a reference to a valid socket buffer; `dev_kfree_skb_any_reason` can be
        // called in any context.
        unsafe {
            bindings::dev_kfree_skb_any_reason(
                self.ptr.as_ptr(),
                bindings::skb_drop_reason_SKB_DROP_REASON_NOT_SPECIFIED,
            )
        };
    }
}

/// An owned FIFO of socket buffers, linked through the buffers themselves (`skb->next`), with
/// its length in packets and bytes.
///
/// It does no locking and no allocation: keep it in a lock (e.g. a
/// [`SpinLockBh`](crate::sync::SpinLockBh)) when several contexts use it. Dropping the list
/// frees the buffers still in it with [`DropReason::QueuePurge`].
///
/// # Invariants
///
/// `head` is null and `len == 0`, or `head` starts a chain of `len` socket buffers linked by
/// `next` and ending at `tail`, whose `next` is null. The list owns one reference to each
/// buffer; `bytes` is the sum of their `len`.
///
/// # Examples
///
/// ```
/// use kernel::net::skb::{SkBuff, SkBuffList};
///
/// let mut q = SkBuffList::new();
/// for n in 1..=3u8 {
///     let mut skb = SkBuff::alloc(64, GFP_KERNEL)?;
///     skb.put_data(&[n; 10])?;
///     q.push_back(skb);
/// }
/// assert_eq!((q.len(), q.bytes()), (3, 30));
/// assert_eq!(q.front().map(|s| s.data()[0]), Some(1));
/// let first = q.pop_front().ok_or(EINVAL)?;
/// assert_eq!(first.data()[0], 1);
/// first.consume();
/// assert_eq!((q.len(), q.bytes()), (2, 20));
/// // The remaining two are freed with `DropReason::QueuePurge`.
/// drop(q);
/// # Ok::<(), Error>(())
/// ```
pub struct SkBuffList {
    head: *mut bindings::sk_buff,
    tail: *mut bindings::sk_buff,
    len: usize,
    bytes: usize,
}

// SAFETY: The list owns its buffers, which may be handed to and freed on any CPU.
unsafe impl Send for SkBuffList {}

impl SkBuffList {
    /// Creates an empty list.
    pub const fn new() -> Self {
        Self {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
            len: 0,
            bytes: 0,
        }
    }

    /// Returns the number of buffers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the total length of the buffers (the sum of [`SkBuffRef::len`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends a buffer.
    pub fn push_back(&mut self, skb: SkBuff) {
        let len = skb.len() as usize;
        let skb = skb.into_raw().as_ptr();
        // SAFETY: We own `skb` (from `into_raw`); its `next` pointer is free for the owner's use.
        unsafe { (*skb).__bindgen_anon_1.__bindgen_anon_1.next = core::ptr::null_mut() };
        if self.tail.is_null() {
            self.head = skb;
        } else {
            // SAFETY: `tail` is the last buffer of the list, which we own.
            unsafe { (*self.tail).__bindgen_anon_1.__bindgen_anon_1.next = skb };
        }
        // INVARIANT: `skb` is linked at the end and accounted for.
        self.tail = skb;
        self.len += 1;
        self.bytes += len;
    }

    /// Removes and returns the first buffer.
    pub fn pop_front(&mut self) -> Option<SkBuff> {
        let skb = NonNull::new(self.head)?;
        // SAFETY: `head` is the first buffer of the list, which we own.
        unsafe {
            let raw = skb.as_ptr();
            self.head = (*raw).__bindgen_anon_1.__bindgen_anon_1.next;
            // Hand it out unlinked (`skb_mark_not_on_list()`).
            (*raw).__bindgen_anon_1.__bindgen_anon_1.next = core::ptr::null_mut();
        }
        if self.head.is_null() {
            self.tail = core::ptr::null_mut();
        }
        // SAFETY: The list owned a reference to the buffer, which is transferred to the caller.
        let skb = unsafe { SkBuff::from_raw(skb) };
        // INVARIANT: The buffer is unlinked and no longer accounted for.
        self.len -= 1;
        self.bytes -= skb.len() as usize;
        Some(skb)
    }

    /// Returns the first buffer without removing it.
    pub fn front(&self) -> Option<&SkBuffRef> {
        if self.head.is_null() {
            return None;
        }
        // SAFETY: `head` is a valid buffer owned by the list; it can only be modified through
        // `&mut self`.
        Some(unsafe { SkBuffRef::from_raw(self.head) })
    }
}

impl Default for SkBuffList {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SkBuffList {
    fn drop(&mut self) {
        while let Some(skb) = self.pop_front() {
            skb.drop_reason(DropReason::QueuePurge);
        }
    }
}

/// Pages that zero-copy socket buffers ([`ZeroCopySkb`]) point to without owning them, owned by a
/// driver that must know when the network stack has let go of them.
///
/// The pages are numbered *slots* `0..count()`. A slot is *lent* to one socket buffer at a time:
/// [`ZeroCopyPages::lend`] when it becomes a fragment, [`ZeroCopyPages::give_back`] when the stack
/// no longer references it. In between the stack may read the page (the data is not copied: a
/// backend maps the frontend's page there) and the owner must not reuse or free it.
///
/// # Safety
///
/// - [`ZeroCopyPages::page`] returns, for every `slot < count()`, the same valid `struct page`
///   for as long as the value lives, with a page reference held by the value, whose content may be
///   read while the slot is lent.
/// - [`ZeroCopyPages::lend`] returns `true` only for a slot that is not lent, and then considers
///   it lent until [`ZeroCopyPages::give_back`] is called for it.
pub unsafe trait ZeroCopyPages: Send + Sync {
    /// Returns the number of slots.
    fn count(&self) -> usize;

    /// Returns the page of `slot` (`slot < count()`).
    fn page(&self, slot: usize) -> NonNull<bindings::page>;

    /// Marks `slot` lent to a socket buffer; returns `false`, lending nothing, if it cannot be
    /// (already lent, out of range, or not ready in the owner's terms).
    fn lend(&self, slot: usize) -> bool;

    /// The stack no longer references the page of `slot`: it freed the buffer or copied its
    /// fragments into memory of its own.
    ///
    /// Called in any context (softirq, or with interrupts off): must not sleep or take locks
    /// that are not IRQ-safe.
    fn give_back(&self, slot: usize);

    /// Called once per buffer, after [`ZeroCopyPages::give_back`] for each of its slots, in the
    /// same context; `zerocopy_success` is `false` if the stack had to copy the fragments.
    fn complete(&self, zerocopy_success: bool);
}

/// The `struct ubuf_info_msgzc` of one slot, and the [`ZeroCopy`] it belongs to.
///
/// `repr(C)` with the `ubuf_info_msgzc` (whose first member is the `ubuf_info`) first, so that the
/// `struct ubuf_info *` the stack passes to the callback is also a pointer to the ticket.
#[repr(C)]
struct Ticket {
    ubuf: Opaque<bindings::ubuf_info_msgzc>,
    owner: Opaque<*const c_void>,
}

/// The zero-copy state of a set of [`ZeroCopyPages`]: one `ubuf_info` per slot, whose completion
/// callback (`ubuf_info_ops::complete`) hands the slots back to the owner.
///
/// It lives in an [`Arc`](crate::sync::Arc); every buffer in flight (built by [`ZeroCopySkb`] and not completed yet)
/// holds a reference to it, so the pages and the callback state outlive every buffer that points
/// to them, whatever the owner does. [`ZeroCopy::in_flight`] tells the owner how many there are:
/// wait for 0 before tearing the pages down (it cannot be forced: the stack may hold a buffer for
/// a long time, e.g. in a socket's receive queue).
///
/// # Invariants
///
/// - `tickets.len() == pages.count()` and at most `u16::MAX + 1`; the `owner` of every ticket
///   points to this value (inside its `Arc`), set once at creation.
/// - The `ubuf_info` of a ticket is written only by the [`ZeroCopySkb`] that lent its slot, and
///   read by the callback after the stack let go of the buffer.
pub struct ZeroCopy<P: ZeroCopyPages> {
    tickets: KVec<Ticket>,
    in_flight: crate::sync::atomic::Atomic<u32>,
    pages: P,
}

// SAFETY: The tickets are only accessed as described in the type invariants (one writer, then
// one reader after a hand-over through the stack); `P` is `Send + Sync`.
unsafe impl<P: ZeroCopyPages> Send for ZeroCopy<P> {}
// SAFETY: As above.
unsafe impl<P: ZeroCopyPages> Sync for ZeroCopy<P> {}

impl<P: ZeroCopyPages> ZeroCopy<P> {
    const OPS: bindings::ubuf_info_ops = bindings::ubuf_info_ops {
        complete: Some(Self::complete_callback),
        link_skb: None,
    };

    /// Creates the zero-copy state of `pages`.
    ///
    /// Fails with [`EINVAL`] for more than 65536 slots.
    pub fn new(pages: P, flags: Flags) -> Result<crate::sync::Arc<Self>> {
        let n = pages.count();
        if n > usize::from(u16::MAX) + 1 {
            return Err(EINVAL);
        }
        let mut tickets = KVec::with_capacity(n, flags)?;
        for _ in 0..n {
            tickets.push(
                Ticket {
                    ubuf: Opaque::zeroed(),
                    owner: Opaque::new(core::ptr::null()),
                },
                flags,
            )?;
        }
        let this = crate::sync::Arc::new(
            Self {
                tickets,
                in_flight: crate::sync::atomic::Atomic::new(0),
                pages,
            },
            flags,
        )?;
        let ptr = crate::sync::Arc::as_ptr(&this).cast::<c_void>();
        for t in this.tickets.iter() {
            // INVARIANT: Every ticket points to the value in the `Arc`, which never moves.
            // SAFETY: Nothing else has access to the tickets yet.
            unsafe { *t.owner.get() = ptr };
        }
        Ok(this)
    }

    /// Returns the pages.
    pub fn pages(&self) -> &P {
        &self.pages
    }

    /// Returns the number of buffers in flight: built and not completed yet.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(crate::sync::atomic::Acquire)
    }

    /// The completion callback (`ubuf_info_ops::complete`) of every ticket of this type.
    ///
    /// # Safety
    ///
    /// `uarg` is the `ubuf_info` of a ticket of a [`ZeroCopy<P>`], installed by
    /// [`ZeroCopySkb::finish`], whose buffer the stack has let go of; called once per buffer.
    unsafe extern "C" fn complete_callback(
        _skb: *mut bindings::sk_buff,
        uarg: *mut bindings::ubuf_info,
        zerocopy_success: bool,
    ) {
        let ticket = uarg.cast::<Ticket>();
        // SAFETY: By the safety requirements `uarg` is the first member of a `Ticket`
        // (`repr(C)`), whose `owner` was set at creation and is never written again.
        let owner = unsafe { *(*ticket).owner.get() }.cast::<Self>();
        // SAFETY: The buffer held a reference to the `Arc` (taken in `finish`), released below:
        // the value is alive.
        let this = unsafe { &*owner };
        let mut msgzc = uarg.cast::<bindings::ubuf_info_msgzc>();
        loop {
            // SAFETY: `msgzc` is the `ubuf_info_msgzc` of a ticket of this buffer (the first, or
            // one chained through `ctx` by `ZeroCopySkb::add_frag`); its slot is still lent, so
            // no one writes it. Read both fields before giving the slot back.
            let (slot, next) = unsafe {
                let v = (*msgzc).__bindgen_anon_1.__bindgen_anon_1;
                (v.desc, v.ctx)
            };
            this.pages.give_back(slot);
            if next.is_null() {
                break;
            }
            msgzc = next.cast();
        }
        this.pages.complete(zerocopy_success);
        this.in_flight.fetch_sub(1, crate::sync::atomic::Release);
        // SAFETY: The reference taken by `ZeroCopySkb::finish` for this buffer (`Arc::into_raw`).
        drop(unsafe { crate::sync::Arc::from_raw(owner) });
    }

    /// Returns the `ubuf_info_msgzc` of `slot`.
    fn msgzc(&self, slot: usize) -> *mut bindings::ubuf_info_msgzc {
        self.tickets[slot].ubuf.get()
    }
}

/// A socket buffer being given fragments that point to [`ZeroCopyPages`] slots (C: netback's
/// `xenvif_fill_frags()` and `xenvif_skb_zerocopy_prepare()`).
///
/// [`ZeroCopySkb::finish`] installs the `ubuf_info` of the first slot with the
/// `SKBFL_ZEROCOPY_ENABLE` flag and returns the buffer: from then on the stack calls back when it
/// no longer references the fragments (freeing the buffer, or copying them with
/// `skb_copy_ubufs()` before handing it to a consumer that may keep it). Until then nothing else
/// can see the buffer; dropping a [`ZeroCopySkb`] finishes it and frees the buffer, so every lent
/// slot is always given back.
///
/// # Invariants
///
/// `skb` and `zc` are owned (initialised until [`ZeroCopySkb::finish`] or the drop takes them). `first`
/// is the first slot lent to the buffer (`None`: none), `last` the last; every slot
/// lent to it is a fragment of it, holding a page reference of its own, and the `ctx` of each
/// slot's ticket points to the next slot's ticket (null for `last`).
///
/// # Examples
///
/// See the KUnit test `zerocopy_frags` of this module, which builds one on ordinary pages.
pub struct ZeroCopySkb<P: ZeroCopyPages> {
    skb: ManuallyDrop<SkBuff>,
    zc: ManuallyDrop<crate::sync::Arc<ZeroCopy<P>>>,
    first: Option<u16>,
    last: u16,
}

impl<P: ZeroCopyPages> ZeroCopySkb<P> {
    /// Starts giving zero-copy fragments to `skb`.
    ///
    /// Fails, giving the buffer back, with [`EBUSY`] if it already has a zero-copy `ubuf_info`.
    // The buffer is given back whole on failure, like `Arc::try_unwrap()`.
    #[allow(clippy::result_large_err)]
    pub fn new(
        mut skb: SkBuff,
        zc: &crate::sync::Arc<ZeroCopy<P>>,
    ) -> core::result::Result<Self, (SkBuff, Error)> {
        // SAFETY: We own the buffer.
        if unsafe { bindings::skb_zcopy(skb.raw()) } {
            return Err((skb, EBUSY));
        }
        Ok(Self {
            skb: ManuallyDrop::new(skb),
            zc: ManuallyDrop::new(zc.clone()),
            first: None,
            last: 0,
        })
    }

    /// Returns the buffer.
    pub fn skb(&self) -> &SkBuffRef {
        &self.skb
    }

    /// Adds bytes `offset..offset + size` of the page of `slot` as the next fragment, lending the
    /// slot ([`ZeroCopyPages::lend`]).
    ///
    /// Fails with [`EINVAL`] for an empty or out-of-page range or a bad slot, [`ENOSPC`] if the
    /// buffer has [`MAX_FRAGS`] fragments, [`EBUSY`] if the owner refuses to lend the slot.
    pub fn add_frag(&mut self, slot: usize, offset: u32, size: u32) -> Result {
        let end = offset.checked_add(size).ok_or(EINVAL)?;
        if size == 0 || end as usize > PAGE_SIZE || slot >= self.zc.tickets.len() {
            return Err(EINVAL);
        }
        let i = self.skb.nr_frags();
        if i >= MAX_FRAGS {
            return Err(ENOSPC);
        }
        if !self.zc.pages.lend(slot) {
            return Err(EBUSY);
        }
        let page = self.zc.pages.page(slot);
        let msgzc = self.zc.msgzc(slot);
        // SAFETY: The slot is lent to us (just above), so we are the only writer of its ticket.
        unsafe {
            let v = &mut (*msgzc).__bindgen_anon_1.__bindgen_anon_1;
            v.desc = slot as c_ulong;
            v.ctx = core::ptr::null_mut();
        }
        if let Some(_first) = self.first {
            let prev = self.zc.msgzc(usize::from(self.last));
            // SAFETY: `last` is lent to us too (type invariant).
            unsafe { (*prev).__bindgen_anon_1.__bindgen_anon_1.ctx = msgzc.cast() };
        } else {
            self.first = Some(slot as u16);
        }
        self.last = slot as u16;
        // SAFETY: `page` is valid while the slot is lent (safety requirements of
        // `ZeroCopyPages`); the buffer gets a reference of its own, which the stack drops.
        unsafe { bindings::get_page(page.as_ptr()) };
        // INVARIANT: The slot is a fragment holding its own page reference, chained after `last`.
        // SAFETY: We own the buffer; `i` is its next free fragment; the range is in the page.
        unsafe {
            bindings::skb_add_rx_frag(
                self.skb.raw(),
                i as c_int,
                page.as_ptr(),
                offset as c_int,
                size as c_int,
                size,
            )
        };
        Ok(())
    }

    /// Returns whether a slot was lent to the buffer.
    pub fn has_frags(&self) -> bool {
        self.first.is_some()
    }

    /// Arms the completion of the lent slots and returns the buffer, to hand to the stack.
    ///
    /// Do it last, right before handing the buffer over (C: "otherwise someone might think this
    /// packet already left netback, and do a `skb_copy_ubufs`").
    pub fn finish(self) -> SkBuff {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again, nor dropped.
        unsafe { this.arm() }
    }

    /// Installs the `ubuf_info` of the first slot (if any) and returns the buffer.
    ///
    /// # Safety
    ///
    /// Called at most once; `self.skb` and `self.zc` are not used after.
    unsafe fn arm(&mut self) -> SkBuff {
        // SAFETY: By the safety requirements, `self.skb` is initialised and not used again.
        let mut skb = unsafe { ManuallyDrop::take(&mut self.skb) };
        // SAFETY: By the safety requirements, `self.zc` is initialised and not used again.
        let zc = unsafe { ManuallyDrop::take(&mut self.zc) };
        let Some(first) = self.first else {
            return skb;
        };
        let msgzc = zc.msgzc(usize::from(first));
        // SAFETY: `first` is lent to us: we are the only writer of its ticket. Its `ubuf_info` is
        // set up as netback's: our ops, one reference, `SKBFL_ZEROCOPY_ENABLE` (copied into the
        // buffer's flags by `skb_zcopy_init()`).
        unsafe {
            let ubuf = &raw mut (*msgzc).ubuf;
            (*ubuf).ops = &ZeroCopy::<P>::OPS;
            bindings::refcount_set(&raw mut (*ubuf).refcnt, 1);
            (*ubuf).flags = bindings::SKBFL_ZEROCOPY_ENABLE as u8;
        }
        zc.in_flight.fetch_add(1, crate::sync::atomic::Relaxed);
        // The buffer's reference to `zc`, released by the callback.
        let _ = crate::sync::Arc::into_raw(zc);
        // SAFETY: We own the buffer, which has no `ubuf_info` yet (checked in `new`); the ticket
        // stays valid until the callback, as the buffer holds a reference to its `ZeroCopy`.
        unsafe { bindings::skb_zcopy_init(skb.raw(), msgzc.cast()) };
        skb
    }
}

impl<P: ZeroCopyPages> Drop for ZeroCopySkb<P> {
    fn drop(&mut self) {
        // SAFETY: Called once, and `self` is not used after.
        unsafe { self.arm() }.drop_reason(DropReason::NotSpecified);
    }
}

#[kunit_tests(rust_skbuff)]
mod tests {
    use super::*;
    use crate::page::Page;

    /// Returns the reference count of a socket buffer (`refcount_read(&skb->users)`).
    fn users(skb: &SkBuffRef) -> i32 {
        // SAFETY: `skb` is valid; the counter is an aligned `int` only modified atomically.
        unsafe { core::ptr::addr_of!((*skb.as_raw()).users.refs.counter).read_volatile() }
    }

    /// Takes an extra reference (`skb_get()`), so that the test can observe a free.
    fn hold(skb: &SkBuff) -> NonNull<bindings::sk_buff> {
        // SAFETY: `skb` is valid; the new reference is returned to the caller.
        unsafe { bindings::refcount_inc(core::ptr::addr_of_mut!((*skb.as_raw()).users)) };
        NonNull::new(skb.as_raw()).unwrap()
    }

    /// Builds an Ethernet + IPv4 + TCP frame with `payload` bytes of payload.
    fn tcp4_frame(payload: usize) -> KVec<u8> {
        let mut f = KVec::new();
        let total = 20 + 20 + payload;
        // Ethernet: dst, src, type IPv4.
        f.extend_from_slice(
            &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00],
            GFP_KERNEL,
        )
        .unwrap();
        // IPv4: version 4, IHL 5, total length, TTL 64, protocol TCP, 10.0.0.1 -> 10.0.0.2.
        f.extend_from_slice(
            &[
                0x45,
                0,
                (total >> 8) as u8,
                total as u8,
                0,
                0,
                0x40,
                0,
                64,
                6,
                0,
                0,
                10,
                0,
                0,
                1,
                10,
                0,
                0,
                2,
            ],
            GFP_KERNEL,
        )
        .unwrap();
        // TCP: ports 1000 -> 2000, data offset 5, flags ACK, checksum 0.
        f.extend_from_slice(
            &[
                0x03, 0xe8, 0x07, 0xd0, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0,
            ],
            GFP_KERNEL,
        )
        .unwrap();
        for i in 0..payload {
            f.push(i as u8, GFP_KERNEL).unwrap();
        }
        f
    }

    /// Ones' complement sum of the TCP/IPv4 pseudo header, folded (not inverted).
    fn pseudo_sum(tcp_len: u32) -> u16 {
        let mut sum: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + tcp_len;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn linear_ops() -> Result {
        let mut skb = SkBuff::alloc(256, GFP_KERNEL)?;
        assert!(skb.is_empty());
        let room = skb.tailroom();
        assert!(room >= 256);
        skb.reserve(32)?;
        assert_eq!(skb.headroom(), 32);
        assert_eq!(skb.tailroom(), room - 32);
        // Reserving on a buffer with data is refused.
        skb.put_data(&[1, 2, 3])?;
        assert!(skb.reserve(1).is_err());
        // Too much data for the tailroom: refused, buffer unchanged.
        let tail = skb.tailroom();
        assert_eq!(skb.put_zero(tail + 1).err(), Some(ENOSPC));
        assert_eq!(skb.len(), 3);
        let z = skb.put_zero(2)?;
        assert_eq!(z, &[0, 0]);
        z[1] = 9;
        assert_eq!(skb.data(), &[1, 2, 3, 0, 9]);
        // Headroom: 32 bytes, pushing 33 is refused.
        let big = [0u8; 33];
        assert_eq!(skb.push_data(&big).err(), Some(ENOSPC));
        skb.push_data(&[7, 8])?;
        assert_eq!(skb.data(), &[7, 8, 1, 2, 3, 0, 9]);
        assert_eq!(skb.headroom(), 30);
        assert_eq!(skb.pull(8).err(), Some(EINVAL));
        skb.pull(2)?;
        assert_eq!(skb.data(), &[1, 2, 3, 0, 9]);
        skb.data_mut()?[0] = 42;
        assert_eq!(skb.data()[0], 42);
        assert!(!skb.is_nonlinear());
        assert!(!skb.is_cloned());
        let (page, off) = skb.data_page(1).ok_or(EINVAL)?;
        // SAFETY: `data` points into the linear area, in the direct mapping.
        let expected = unsafe { bindings::virt_to_page((*skb.as_raw()).data.add(1).cast()) };
        assert_eq!(page.as_ptr(), expected);
        // SAFETY: As above.
        let addr = unsafe { (*skb.as_raw()).data.add(1) } as usize;
        assert_eq!(off, addr % PAGE_SIZE);
        assert!(skb.data_page(5).is_none());
        skb.consume();
        Ok(())
    }

    #[test]
    fn bounce_copy_zeroes_the_rest() -> Result {
        let mut full = SkBuff::alloc(PAGE_SIZE as u32, GFP_KERNEL)?;
        full.put_data(&[0xffu8; PAGE_SIZE])?;
        let mut page = Page::alloc_page(GFP_KERNEL)?;
        full.copy_to_page(0, &mut page, 0, PAGE_SIZE)?;
        let mut skb = SkBuff::alloc(128, GFP_KERNEL)?;
        skb.put_data(&[0x11u8; 100])?;
        skb.copy_to_page_zero_rest(10, &mut page, 90)?;
        let mut back = KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?;
        // SAFETY: `back` is valid for writes of `PAGE_SIZE` bytes; nobody else uses `page`.
        unsafe { page.read_raw(back.as_mut_ptr(), 0, PAGE_SIZE)? };
        assert!(back[..90].iter().all(|&b| b == 0x11));
        assert!(back[90..].iter().all(|&b| b == 0));
        // Out of range: refused, and the page holds nothing at all.
        assert!(skb.copy_to_page_zero_rest(50, &mut page, 90).is_err());
        assert_eq!(
            skb.copy_to_page_zero_rest(0, &mut page, PAGE_SIZE + 1),
            Err(EINVAL)
        );
        // SAFETY: As above.
        unsafe { page.read_raw(back.as_mut_ptr(), 0, PAGE_SIZE)? };
        assert!(back.iter().all(|&b| b == 0));
        Ok(())
    }

    #[test]
    fn frags_with_pages() -> Result {
        let mut skb = SkBuff::alloc(64, GFP_KERNEL)?;
        skb.put_data(&[0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9])?;
        let page = Page::alloc_page(GFP_KERNEL)?;
        let pattern: [u8; 200] = core::array::from_fn(|i| i as u8);
        // SAFETY: `pattern` is valid for reads of 200 bytes; 100 + 200 <= PAGE_SIZE.
        unsafe { page.write_raw(pattern.as_ptr(), 100, 200)? };
        let page_ptr = page.as_ptr();
        skb.add_rx_frag(page, 100, 200, PAGE_SIZE as u32)?;
        assert_eq!(skb.len(), 210);
        assert_eq!(skb.data_len(), 200);
        assert_eq!(skb.headlen(), 10);
        assert!(skb.is_nonlinear());
        assert_eq!(skb.tailroom(), 0);
        assert_eq!(skb.nr_frags(), 1);
        let f = &skb.frags()[0];
        assert_eq!((f.offset(), f.size()), (100, 200));
        assert_eq!(f.page().ok_or(EINVAL)?.as_ptr(), page_ptr);

        // Copy across the linear area and the fragment.
        let mut buf = [0u8; 8];
        skb.copy_bits(6, &mut buf)?;
        assert_eq!(buf, [0xa6, 0xa7, 0xa8, 0xa9, 0, 1, 2, 3]);
        assert!(skb.copy_bits(205, &mut buf).is_err());

        // Invalid fragments are refused and do not change the buffer.
        assert_eq!(
            skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 0, 0, 4096)
                .err(),
            Some(EINVAL)
        );
        assert_eq!(
            skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 4000, 200, 4096)
                .err(),
            Some(EINVAL)
        );
        assert_eq!(
            skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 0, 10, 5)
                .err(),
            Some(EINVAL)
        );
        assert_eq!(skb.len(), 210);

        // Appending to a non-linear buffer's linear area is refused.
        assert!(skb.put_data(&[1]).is_err());

        // Pull 50 bytes into the linear area.
        assert!(skb.may_pull(50));
        assert_eq!(skb.headlen(), 50);
        assert_eq!(skb.data()[10..14], [0, 1, 2, 3]);
        assert_eq!((skb.frags()[0].offset(), skb.frags()[0].size()), (140, 160));
        assert!(!skb.may_pull(211));

        // Fill up the fragment slots.
        while skb.nr_frags() < MAX_FRAGS {
            skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 0, 16, 4096)?;
        }
        assert_eq!(
            skb.add_rx_frag(Page::alloc_page(GFP_KERNEL)?, 0, 16, 4096)
                .err(),
            Some(ENOSPC)
        );
        let len = skb.len();
        assert_eq!(len, 210 + 16 * (MAX_FRAGS as u32 - 1));

        skb.linearize()?;
        assert_eq!(skb.nr_frags(), 0);
        assert_eq!(skb.headlen(), len);
        assert_eq!(skb.data()[10..14], [0, 1, 2, 3]);
        assert_eq!(skb.data()[209], 199);
        skb.consume();
        Ok(())
    }

    #[test]
    fn checksum_partial() -> Result {
        let frame = tcp4_frame(100);
        let mut skb = SkBuff::alloc(256, GFP_KERNEL)?;
        skb.put_data(&frame)?;
        assert_eq!(skb.ip_summed(), Checksum::None);
        skb.reset_mac_header();
        skb.pull(ETH_HLEN)?;
        skb.set_protocol(0x0800);
        assert_eq!(skb.protocol(), 0x0800);
        skb.reset_network_header();
        assert_eq!(skb.network_offset(), 0);
        skb.checksum_setup(true)?;
        assert_eq!(skb.ip_summed(), Checksum::Partial);
        assert_eq!(skb.csum_start_offset(), 20);
        assert_eq!(skb.csum_offset(), 16);
        assert_eq!(skb.transport_offset(), 20);
        let check = u16::from_be_bytes([skb.data()[36], skb.data()[37]]);
        assert_eq!(check, pseudo_sum(120));

        // Set by hand; the range must be inside the linear data.
        let mut skb2 = SkBuff::alloc(256, GFP_KERNEL)?;
        skb2.put_data(&frame[14..])?;
        assert!(skb2.set_partial_checksum(200, 16).is_err());
        skb2.set_partial_checksum(20, 16)?;
        assert_eq!(skb2.ip_summed(), Checksum::Partial);
        assert_eq!((skb2.csum_start_offset(), skb2.csum_offset()), (20, 16));
        skb2.set_ip_summed(Checksum::Unnecessary)?;
        assert_eq!(skb2.ip_summed(), Checksum::Unnecessary);
        assert!(skb2.set_ip_summed(Checksum::Partial).is_err());

        // A transport protocol without checksum offload (ICMP) is rejected.
        let mut bad = SkBuff::alloc(256, GFP_KERNEL)?;
        let mut f = frame;
        f[14 + 9] = 1;
        bad.put_data(&f[14..])?;
        bad.set_protocol(0x0800);
        bad.reset_network_header();
        assert!(bad.checksum_setup(true).is_err());
        bad.drop_reason(DropReason::HdrTrunc);
        skb.consume();
        skb2.consume();
        Ok(())
    }

    #[test]
    fn gso_hash_queue() -> Result {
        let mut skb = SkBuff::alloc(128, GFP_KERNEL)?;
        assert!(!skb.is_gso());
        skb.set_gso(1448, GsoType::TCPV4 | GsoType::DODGY);
        assert!(skb.is_gso());
        assert_eq!(skb.gso_size(), 1448);
        assert!(skb.gso_type().contains(GsoType::TCPV4));
        assert!(!skb.gso_type().intersects(GsoType::TCPV6));
        assert_eq!(skb.gso_segs(), 0);
        skb.set_gso_segs(3);
        assert_eq!(skb.gso_segs(), 3);
        skb.set_hash(0xdead_beef, HashType::L4);
        assert_eq!(skb.hash_raw(), 0xdead_beef);
        assert!(skb.has_l4_hash());
        assert_eq!(skb.hash(), 0xdead_beef);
        skb.set_queue_mapping(3);
        assert_eq!(skb.queue_mapping(), 3);
        Ok(())
    }

    #[test]
    fn free_paths() -> Result {
        // Each way of giving up an `SkBuff` releases exactly its one reference.
        for how in 0..5 {
            let skb = SkBuff::alloc(64, GFP_KERNEL)?;
            let extra = hold(&skb);
            assert_eq!(users(&skb), 2);
            match how {
                0 => drop(skb),
                1 => skb.consume(),
                2 => skb.drop_reason(DropReason::FullRing),
                3 => skb.napi_consume(0),
                _ => {
                    let raw = skb.into_raw();
                    // SAFETY: `into_raw` gave us the reference back.
                    unsafe { SkBuff::from_raw(raw) }.consume();
                }
            }
            // SAFETY: `extra` is the reference taken by `hold`.
            let skb = unsafe { SkBuff::from_raw(extra) };
            assert_eq!(users(&skb), 1);
            skb.consume();
        }
        Ok(())
    }

    /// Ordinary pages lent to zero-copy buffers, counting the callbacks.
    struct TestPages {
        pages: KVec<Page>,
        lent: KVec<crate::sync::atomic::Atomic<u32>>,
        given_back: crate::sync::atomic::Atomic<u32>,
        completed: crate::sync::atomic::Atomic<u32>,
        copied: crate::sync::atomic::Atomic<u32>,
    }

    // SAFETY: The pages are owned (one reference each) for the life of the value; `lend` only
    // succeeds for a slot not lent, until `give_back`.
    unsafe impl ZeroCopyPages for TestPages {
        fn count(&self) -> usize {
            self.pages.len()
        }
        fn page(&self, slot: usize) -> NonNull<bindings::page> {
            NonNull::new(self.pages[slot].as_ptr()).unwrap()
        }
        fn lend(&self, slot: usize) -> bool {
            use crate::sync::atomic::Relaxed;
            slot < self.lent.len() && self.lent[slot].cmpxchg(0, 1, Relaxed).is_ok()
        }
        fn give_back(&self, slot: usize) {
            use crate::sync::atomic::Relaxed;
            assert_eq!(self.lent[slot].xchg(0, Relaxed), 1);
            self.given_back.fetch_add(1, Relaxed);
        }
        fn complete(&self, zerocopy_success: bool) {
            use crate::sync::atomic::Relaxed;
            self.completed.fetch_add(1, Relaxed);
            if !zerocopy_success {
                self.copied.fetch_add(1, Relaxed);
            }
        }
    }

    fn page_count(zc: &ZeroCopy<TestPages>, slot: usize) -> i32 {
        // SAFETY: The page is owned by the test pages.
        unsafe { bindings::page_count(zc.pages().page(slot).as_ptr()) }
    }

    #[test]
    fn zerocopy_frags() -> Result {
        use crate::sync::atomic::{Atomic, Relaxed};
        let mut pages = KVec::new();
        let mut lent = KVec::new();
        for _ in 0..4 {
            pages.push(
                Page::alloc_page(GFP_KERNEL | crate::alloc::flags::__GFP_ZERO)?,
                GFP_KERNEL,
            )?;
            lent.push(Atomic::new(0), GFP_KERNEL)?;
        }
        let zc = ZeroCopy::new(
            TestPages {
                pages,
                lent,
                given_back: Atomic::new(0),
                completed: Atomic::new(0),
                copied: Atomic::new(0),
            },
            GFP_KERNEL,
        )?;
        let tp = zc.pages();

        // Freed by the stack: one completion, every slot given back, page references balanced.
        let mut skb = SkBuff::alloc(128, GFP_KERNEL)?;
        skb.put_data(&[7u8; 64])?;
        let mut z = ZeroCopySkb::new(skb, &zc).map_err(|(_, e)| e)?;
        assert!(!z.has_frags());
        z.add_frag(1, 100, 200)?;
        z.add_frag(3, 0, PAGE_SIZE as u32)?;
        assert_eq!(z.add_frag(1, 0, 10), Err(EBUSY));
        assert_eq!(z.add_frag(9, 0, 10), Err(EINVAL));
        assert_eq!(z.add_frag(2, 4000, 200), Err(EINVAL));
        assert_eq!(z.add_frag(2, 0, 0), Err(EINVAL));
        assert_eq!(page_count(&zc, 1), 2);
        let skb = z.finish();
        assert_eq!(skb.len() as usize, 64 + 200 + PAGE_SIZE);
        assert_eq!(skb.nr_frags(), 2);
        assert_eq!(zc.in_flight(), 1);
        assert_eq!(tp.completed.load(Relaxed), 0);
        // Another buffer cannot be made zero-copy twice.
        drop(skb);
        assert_eq!(zc.in_flight(), 0);
        assert_eq!(tp.completed.load(Relaxed), 1);
        assert_eq!(tp.copied.load(Relaxed), 0);
        assert_eq!(tp.given_back.load(Relaxed), 2);
        assert_eq!(page_count(&zc, 1), 1);
        assert_eq!(page_count(&zc, 3), 1);

        // Copied by the stack (`skb_copy_ubufs()`): completed at once, unsuccessfully; freeing
        // the buffer later calls back no more.
        let mut z = ZeroCopySkb::new(SkBuff::alloc(64, GFP_KERNEL)?, &zc).map_err(|(_, e)| e)?;
        z.add_frag(0, 0, 1000)?;
        z.add_frag(1, 10, 20)?;
        let mut skb = z.finish();
        // SAFETY: We own the buffer.
        let orphaned = unsafe { bindings::skb_orphan_frags(skb.raw(), GFP_KERNEL.as_raw()) };
        assert_eq!(orphaned, 0);
        assert_eq!(tp.completed.load(Relaxed), 2);
        assert_eq!(tp.copied.load(Relaxed), 1);
        assert_eq!(tp.given_back.load(Relaxed), 4);
        assert_eq!(zc.in_flight(), 0);
        assert_eq!(page_count(&zc, 0), 1);
        assert_eq!(skb.len(), 1020);
        let pool_page = zc.pages().page(0).as_ptr();
        assert!(skb
            .frags()
            .iter()
            .all(|f| f.page().map(|p| p.as_ptr()) != Some(pool_page)));
        // The slots may be lent again at once.
        let mut z = ZeroCopySkb::new(SkBuff::alloc(64, GFP_KERNEL)?, &zc).map_err(|(_, e)| e)?;
        z.add_frag(0, 0, 1)?;
        // A buffer that already is zero-copy is refused.
        let skb2 = z.finish();
        let skb2 = match ZeroCopySkb::new(skb2, &zc) {
            Err((skb, e)) => {
                assert_eq!(e, EBUSY);
                skb
            }
            Ok(_) => return Err(EINVAL),
        };
        drop(skb2);
        drop(skb);
        assert_eq!(tp.completed.load(Relaxed), 3);

        // Dropped before it was finished: the slots are given back too.
        let mut z = ZeroCopySkb::new(SkBuff::alloc(64, GFP_KERNEL)?, &zc).map_err(|(_, e)| e)?;
        z.add_frag(2, 0, 1)?;
        drop(z);
        assert_eq!(tp.completed.load(Relaxed), 4);
        assert_eq!(tp.lent.iter().map(|l| l.load(Relaxed)).sum::<u32>(), 0);
        assert_eq!(zc.in_flight(), 0);
        // Nothing lent, nothing in flight: finishing is a no-op.
        let skb = ZeroCopySkb::new(SkBuff::alloc(64, GFP_KERNEL)?, &zc)
            .map_err(|(_, e)| e)?
            .finish();
        skb.consume();
        assert_eq!(tp.completed.load(Relaxed), 4);
        Ok(())
    }
}
