// SPDX-License-Identifier: GPL-2.0

//! Xen network interface (netif) protocol.
//!
//! The messages a network frontend (netfront) and backend (netback) exchange over their shared
//! rings, with their flags, the xenstore keys of a virtual interface, and the Toeplitz hash of the
//! control ring:
//!
//! - transmit ring (packets from the frontend): request slots hold a [`TxRequest`] or an
//!   [`ExtraInfo`] ([`TxSlot`]), the responses are [`TxResponse`]s;
//! - receive ring (packets to the frontend): the requests are [`RxRequest`]s (empty buffers),
//!   response slots hold an [`RxResponse`] or an [`ExtraInfo`] ([`RxSlot`]);
//! - control ring: [`CtrlRequest`]s and [`CtrlResponse`]s.
//!
//! All messages are plain values copied out of the shared ring: every bit pattern the peer may
//! write is a valid value, and the typed accessors ([`ExtraInfo::decode`], [`RxResponse::data`],
//! the `TryFrom` conversions) check what they return. The layouts are checked against the C
//! definitions at build time.
//!
//! C header: [`include/xen/interface/io/netif.h`](srctree/include/xen/interface/io/netif.h)

use crate::{
    bindings,
    bits::{
        bit_u16,
        bit_u32, //
    },
    impl_flags,
    prelude::*,
    xen::{
        ring::{
            ring_size,
            BackRing,
            FrontRing, //
        },
        PAGE_SIZE,
    },
};
use core::mem::offset_of;

#[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
use crate::net::dev::Features;

/// Number of slots of the transmit ring (`NET_TX_RING_SIZE` in netfront).
pub const TX_RING_SIZE: u32 = ring_size::<TxSlot, TxResponse>(PAGE_SIZE);

/// Number of slots of the receive ring (`NET_RX_RING_SIZE` in netfront).
pub const RX_RING_SIZE: u32 = ring_size::<RxRequest, RxSlot>(PAGE_SIZE);

/// Number of slots of the control ring.
pub const CTRL_RING_SIZE: u32 = ring_size::<CtrlRequest, CtrlResponse>(PAGE_SIZE);

static_assert!(TX_RING_SIZE as usize == bindings::XEN_NETIF_TX_RING_SIZE);
static_assert!(RX_RING_SIZE as usize == bindings::XEN_NETIF_RX_RING_SIZE);
static_assert!(CTRL_RING_SIZE as usize == bindings::XEN_NETIF_CTRL_RING_SIZE);

/// Number of slots a backend must accept for one packet (`XEN_NETIF_NR_SLOTS_MIN`).
pub const NR_SLOTS_MIN: u32 = 18;

/// Largest packet on the transmit ring (`XEN_NETIF_MAX_TX_SIZE`): the size of its first
/// request, which holds the length of the whole packet, is 16 bits.
pub const MAX_TX_SIZE: u32 = 0xffff;

/// Largest headroom a frontend may ask for with the `xdp-headroom` key
/// (`XEN_NETIF_MAX_XDP_HEADROOM`).
pub const MAX_XDP_HEADROOM: u16 = 0x7fff;

static_assert!(NR_SLOTS_MIN == bindings::XEN_NETIF_NR_SLOTS_MIN);
static_assert!(MAX_TX_SIZE == bindings::XEN_NETIF_MAX_TX_SIZE);
static_assert!(MAX_XDP_HEADROOM as u32 == bindings::XEN_NETIF_MAX_XDP_HEADROOM);

/// The frontend end of a transmit ring in memory `M`.
pub type TxFrontRing<M> = FrontRing<TxSlot, TxResponse, M>;

/// The backend end of a transmit ring in memory `M`.
pub type TxBackRing<M> = BackRing<TxSlot, TxResponse, M>;

/// The frontend end of a receive ring in memory `M`.
pub type RxFrontRing<M> = FrontRing<RxRequest, RxSlot, M>;

/// The backend end of a receive ring in memory `M`.
pub type RxBackRing<M> = BackRing<RxRequest, RxSlot, M>;

/// The frontend end of a control ring in memory `M`.
pub type CtrlFrontRing<M> = FrontRing<CtrlRequest, CtrlResponse, M>;

/// The backend end of a control ring in memory `M`.
pub type CtrlBackRing<M> = BackRing<CtrlRequest, CtrlResponse, M>;

/// Checks at build time that a Rust message has the layout of its C definition.
macro_rules! assert_same_layout {
    ($rust:ty, $c:ty, { $($rust_field:ident: $c_field:ident),* $(,)? }) => {
        static_assert!(size_of::<$rust>() == size_of::<$c>());
        static_assert!(align_of::<$rust>() == align_of::<$c>());
        $(static_assert!(offset_of!($rust, $rust_field) == offset_of!($c, $c_field));)*
    };
}

/// The state of a packet's checksum, as far as the protocol can tell it.
///
/// This is what the `csum_blank` and `data_validated` flags of [`TxFlags`] and [`RxFlags`]
/// carry, and what the `ip_summed` field of an `sk_buff` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checksum {
    /// Nothing is known: the receiver must verify the checksum (`CHECKSUM_NONE`).
    None,
    /// The checksum has been verified, or the packet needs none (`data_validated`,
    /// `CHECKSUM_UNNECESSARY`).
    Unnecessary,
    /// The checksum field is blank and must be filled in before the packet leaves the host
    /// (`csum_blank`, `CHECKSUM_PARTIAL`).
    Partial,
}

impl Checksum {
    /// Returns the checksum state of an `sk_buff` with the given `ip_summed` (`CHECKSUM_*`).
    ///
    /// `CHECKSUM_COMPLETE` cannot be expressed by the protocol: it maps to [`Checksum::None`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{bindings, xen::netif::Checksum};
    ///
    /// let partial = Checksum::from_ip_summed(bindings::CHECKSUM_PARTIAL as u8);
    /// assert_eq!(partial, Checksum::Partial);
    /// assert_eq!(partial.ip_summed(), bindings::CHECKSUM_PARTIAL as u8);
    /// ```
    pub fn from_ip_summed(ip_summed: u8) -> Self {
        match u32::from(ip_summed) {
            bindings::CHECKSUM_PARTIAL => Self::Partial,
            bindings::CHECKSUM_UNNECESSARY => Self::Unnecessary,
            _ => Self::None,
        }
    }

    /// Returns the `ip_summed` value (`CHECKSUM_*`) of an `sk_buff` in this state.
    pub fn ip_summed(self) -> u8 {
        let ip_summed = match self {
            Self::None => bindings::CHECKSUM_NONE,
            Self::Unnecessary => bindings::CHECKSUM_UNNECESSARY,
            Self::Partial => bindings::CHECKSUM_PARTIAL,
        };
        // CAST: The `CHECKSUM_*` values are 2-bit values.
        ip_summed as u8
    }
}

impl_flags!(
    /// The flags of a [`TxRequest`] (`XEN_NETTXF_*`).
    ///
    /// Flags this kernel does not know are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xen::netif::{Checksum, TxFlag, TxFlags};
    ///
    /// let flags = TxFlags::from_checksum(Checksum::Partial);
    /// assert!(flags.contains(TxFlag::CsumBlank) && flags.contains(TxFlag::DataValidated));
    /// assert_eq!(flags.checksum(), Checksum::Partial);
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
    pub struct TxFlags(u16);

    /// A flag of a [`TxRequest`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum TxFlag {
        /// The checksum field of the packet is blank (`XEN_NETTXF_csum_blank`).
        CsumBlank = bit_u16(0),
        /// The checksum of the packet has been verified (`XEN_NETTXF_data_validated`).
        DataValidated = bit_u16(1),
        /// More data slots of the same packet follow (`XEN_NETTXF_more_data`).
        MoreData = bit_u16(2),
        /// An [`ExtraInfo`] slot follows (`XEN_NETTXF_extra_info`).
        ExtraInfo = bit_u16(3),
    }
);

static_assert!(TxFlag::CsumBlank as u32 == bindings::XEN_NETTXF_csum_blank);
static_assert!(TxFlag::DataValidated as u32 == bindings::XEN_NETTXF_data_validated);
static_assert!(TxFlag::MoreData as u32 == bindings::XEN_NETTXF_more_data);
static_assert!(TxFlag::ExtraInfo as u32 == bindings::XEN_NETTXF_extra_info);

/// Implements the conversions between [`Checksum`] and the flags `$flags` (with flag type `$flag`,
/// which has `CsumBlank` and `DataValidated`): `from_checksum()` and `checksum()`.
macro_rules! impl_checksum_flags {
    ($flags:ident, $flag:ident) => {
        impl $flags {
            /// Returns the flags that describe `checksum`.
            pub fn from_checksum(checksum: Checksum) -> Self {
                match checksum {
                    Checksum::None => Self::empty(),
                    Checksum::Unnecessary => $flag::DataValidated.into(),
                    Checksum::Partial => $flag::CsumBlank | $flag::DataValidated,
                }
            }

            /// Returns the checksum state the flags describe.
            ///
            /// A blank checksum takes precedence over a validated one, as in the C drivers.
            pub fn checksum(self) -> Checksum {
                if self.contains($flag::CsumBlank) {
                    Checksum::Partial
                } else if self.contains($flag::DataValidated) {
                    Checksum::Unnecessary
                } else {
                    Checksum::None
                }
            }
        }
    };
}

impl_checksum_flags!(TxFlags, TxFlag);

impl_flags!(
    /// The flags of an [`RxResponse`] (`XEN_NETRXF_*`).
    ///
    /// Flags this kernel does not know are kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xen::netif::{Checksum, RxFlag, RxFlags};
    ///
    /// let flags = RxFlags::from_checksum(Checksum::Unnecessary);
    /// assert_eq!(flags, RxFlag::DataValidated.into());
    /// assert_eq!(flags.checksum(), Checksum::Unnecessary);
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
    pub struct RxFlags(u16);

    /// A flag of an [`RxResponse`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum RxFlag {
        /// The checksum of the packet has been verified (`XEN_NETRXF_data_validated`).
        DataValidated = bit_u16(0),
        /// The checksum field of the packet is blank (`XEN_NETRXF_csum_blank`).
        CsumBlank = bit_u16(1),
        /// More data slots of the same packet follow (`XEN_NETRXF_more_data`).
        MoreData = bit_u16(2),
        /// An [`ExtraInfo`] slot follows (`XEN_NETRXF_extra_info`).
        ExtraInfo = bit_u16(3),
        /// Obsolete: a GSO prefix slot precedes the packet (`XEN_NETRXF_gso_prefix`).
        GsoPrefix = bit_u16(4),
    }
);

static_assert!(RxFlag::DataValidated as u32 == bindings::XEN_NETRXF_data_validated);
static_assert!(RxFlag::CsumBlank as u32 == bindings::XEN_NETRXF_csum_blank);
static_assert!(RxFlag::MoreData as u32 == bindings::XEN_NETRXF_more_data);
static_assert!(RxFlag::ExtraInfo as u32 == bindings::XEN_NETRXF_extra_info);
static_assert!(RxFlag::GsoPrefix as u32 == bindings::XEN_NETRXF_gso_prefix);

impl_checksum_flags!(RxFlags, RxFlag);

/// The status of a [`TxResponse`] (`XEN_NETIF_RSP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i16)]
pub enum Status {
    /// The packet was dropped (`XEN_NETIF_RSP_DROPPED`).
    Dropped = -2,
    /// The packet was malformed (`XEN_NETIF_RSP_ERROR`).
    Error = -1,
    /// The packet was sent (`XEN_NETIF_RSP_OKAY`).
    Okay = 0,
    /// The response answers an [`ExtraInfo`] slot (`XEN_NETIF_RSP_NULL`).
    Null = 1,
}

static_assert!(Status::Dropped as i32 == bindings::XEN_NETIF_RSP_DROPPED);
static_assert!(Status::Error as i32 == bindings::XEN_NETIF_RSP_ERROR);
static_assert!(Status::Okay as i32 == bindings::XEN_NETIF_RSP_OKAY as i32);
static_assert!(Status::Null as i32 == bindings::XEN_NETIF_RSP_NULL as i32);

impl TryFrom<i16> for Status {
    type Error = Error;

    fn try_from(status: i16) -> Result<Self> {
        match status {
            -2 => Ok(Self::Dropped),
            -1 => Ok(Self::Error),
            0 => Ok(Self::Okay),
            1 => Ok(Self::Null),
            _ => Err(EINVAL),
        }
    }
}

/// A request of the transmit ring: one slot of a packet (`struct xen_netif_tx_request`).
///
/// The first slot of a packet holds the size of the whole packet; the others the size of their
/// own data. An [`ExtraInfo`] slot follows a request with [`TxFlag::ExtraInfo`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct TxRequest {
    /// Grant reference of the page with the data.
    pub gref: u32,
    /// Offset of the data in the page.
    pub offset: u16,
    /// Flags.
    pub flags: TxFlags,
    /// Identifier, echoed in the response.
    pub id: u16,
    /// Size of the data (of the whole packet, in its first slot).
    pub size: u16,
}

assert_same_layout!(TxRequest, bindings::xen_netif_tx_request, {
    gref: gref,
    offset: offset,
    flags: flags,
    id: id,
    size: size,
});

/// A response of the transmit ring (`struct xen_netif_tx_response`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct TxResponse {
    /// Identifier of the request.
    pub id: u16,
    /// A [`Status`] (`XEN_NETIF_RSP_*`).
    pub status: i16,
}

assert_same_layout!(TxResponse, bindings::xen_netif_tx_response, {
    id: id,
    status: status,
});

/// A request of the receive ring: an empty buffer for the backend to fill
/// (`struct xen_netif_rx_request`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct RxRequest {
    /// Identifier, echoed in the response.
    pub id: u16,
    pad: u16,
    /// Grant reference of the page to receive into.
    pub gref: u32,
}

assert_same_layout!(RxRequest, bindings::xen_netif_rx_request, {
    id: id,
    pad: pad,
    gref: gref,
});

impl RxRequest {
    /// Returns a request to receive into the page granted with `gref`.
    pub fn new(id: u16, gref: u32) -> Self {
        Self { id, pad: 0, gref }
    }
}

/// A response of the receive ring: one slot of a received packet
/// (`struct xen_netif_rx_response`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct RxResponse {
    /// Identifier of the request.
    pub id: u16,
    /// Offset of the data in the page.
    pub offset: u16,
    /// Flags.
    pub flags: RxFlags,
    /// Size of the data if not negative, else a [`Status`].
    pub status: i16,
}

assert_same_layout!(RxResponse, bindings::xen_netif_rx_response, {
    id: id,
    offset: offset,
    flags: flags,
    status: status,
});

impl RxResponse {
    /// Returns the offset and size of the data in the page.
    ///
    /// Fails with [`EINVAL`] if the status is an error or the data does not fit in the page.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xen::netif::RxResponse;
    ///
    /// let rsp = RxResponse { offset: 4000, status: 96, ..Default::default() };
    /// assert_eq!(rsp.data(), Ok((4000, 96)));
    /// let rsp = RxResponse { offset: 4000, status: 97, ..Default::default() };
    /// assert_eq!(rsp.data(), Err(EINVAL));
    /// let rsp = RxResponse { status: -1, ..Default::default() };
    /// assert_eq!(rsp.data(), Err(EINVAL));
    /// ```
    pub fn data(&self) -> Result<(usize, usize)> {
        let offset = usize::from(self.offset);
        let size = usize::try_from(self.status).map_err(|_| EINVAL)?;
        if offset + size > PAGE_SIZE {
            return Err(EINVAL);
        }
        Ok((offset, size))
    }
}

/// The kind of segmentation offload of a packet (`XEN_NETIF_GSO_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum GsoType {
    /// TCP over IPv4 (`XEN_NETIF_GSO_TYPE_TCPV4`).
    TcpV4 = 1,
    /// TCP over IPv6 (`XEN_NETIF_GSO_TYPE_TCPV6`).
    TcpV6 = 2,
}

static_assert!(GsoType::TcpV4 as u32 == bindings::XEN_NETIF_GSO_TYPE_TCPV4);
static_assert!(GsoType::TcpV6 as u32 == bindings::XEN_NETIF_GSO_TYPE_TCPV6);

impl TryFrom<u8> for GsoType {
    type Error = Error;

    fn try_from(value: u8) -> Result<Self> {
        match value {
            1 => Ok(Self::TcpV4),
            2 => Ok(Self::TcpV6),
            _ => Err(EINVAL),
        }
    }
}

impl GsoType {
    /// Returns the kind of offload of an `sk_buff` with the given `gso_type` (`SKB_GSO_*`), or
    /// [`None`] if the protocol cannot express it.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{bindings, xen::netif::GsoType};
    ///
    /// let gso_type = bindings::SKB_GSO_TCPV6 | bindings::SKB_GSO_TCP_ECN;
    /// assert_eq!(GsoType::from_skb_gso_type(gso_type as u32), Some(GsoType::TcpV6));
    /// assert_eq!(GsoType::from_skb_gso_type(bindings::SKB_GSO_UDP_L4 as u32), None);
    /// ```
    pub fn from_skb_gso_type(gso_type: u32) -> Option<Self> {
        if gso_type & bindings::SKB_GSO_TCPV6 as u32 != 0 {
            Some(Self::TcpV6)
        } else if gso_type & bindings::SKB_GSO_TCPV4 as u32 != 0 {
            Some(Self::TcpV4)
        } else {
            None
        }
    }

    /// Returns the `gso_type` (`SKB_GSO_*`) of an `sk_buff` received from the peer with this
    /// offload.
    ///
    /// The value includes `SKB_GSO_DODGY`: the headers come from the other domain and must be
    /// checked by the stack before the packet is segmented.
    pub fn skb_gso_type(self) -> u32 {
        let gso_type = match self {
            Self::TcpV4 => bindings::SKB_GSO_TCPV4,
            Self::TcpV6 => bindings::SKB_GSO_TCPV6,
        };
        (gso_type | bindings::SKB_GSO_DODGY) as u32
    }
}

/// Segmentation offload of a packet: the content of an [`Extra::Gso`] slot.
///
/// # Invariants
///
/// `size` is not zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gso {
    size: u16,
    type_: GsoType,
}

impl Gso {
    /// Returns the offload of a packet to be cut into segments of `size` bytes of payload.
    ///
    /// Fails with [`EINVAL`] if `size` is zero.
    pub fn new(size: u16, type_: GsoType) -> Result<Self> {
        if size == 0 {
            return Err(EINVAL);
        }
        // INVARIANT: `size` is not zero.
        Ok(Self { size, type_ })
    }

    /// Returns the size of the payload of a segment (`gso_size`), never zero.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Returns the kind of offload.
    pub fn type_(&self) -> GsoType {
        self.type_
    }
}

/// A hash type: the headers a packet hash covers (`_XEN_NETIF_CTRL_HASH_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HashType {
    /// The IPv4 addresses.
    Ipv4 = 0,
    /// The IPv4 addresses and the TCP ports.
    Ipv4Tcp = 1,
    /// The IPv6 addresses.
    Ipv6 = 2,
    /// The IPv6 addresses and the TCP ports.
    Ipv6Tcp = 3,
}

static_assert!(HashType::Ipv4 as u32 == bindings::_XEN_NETIF_CTRL_HASH_TYPE_IPV4);
static_assert!(HashType::Ipv4Tcp as u32 == bindings::_XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
static_assert!(HashType::Ipv6 as u32 == bindings::_XEN_NETIF_CTRL_HASH_TYPE_IPV6);
static_assert!(HashType::Ipv6Tcp as u32 == bindings::_XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);

impl TryFrom<u8> for HashType {
    type Error = Error;

    fn try_from(value: u8) -> Result<Self> {
        match value {
            0 => Ok(Self::Ipv4),
            1 => Ok(Self::Ipv4Tcp),
            2 => Ok(Self::Ipv6),
            3 => Ok(Self::Ipv6Tcp),
            _ => Err(EINVAL),
        }
    }
}

impl HashType {
    /// Returns the set of hash types that holds only this one.
    pub fn as_set(self) -> HashTypes {
        match self {
            Self::Ipv4 => HashTypeFlag::Ipv4.into(),
            Self::Ipv4Tcp => HashTypeFlag::Ipv4Tcp.into(),
            Self::Ipv6 => HashTypeFlag::Ipv6.into(),
            Self::Ipv6Tcp => HashTypeFlag::Ipv6Tcp.into(),
        }
    }
}

impl_flags!(
    /// A set of hash types (`XEN_NETIF_CTRL_HASH_TYPE_*`), as in the hash flags of the control
    /// ring.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct HashTypes(u32);

    /// A hash type in a [`HashTypes`] set.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum HashTypeFlag {
        /// The IPv4 addresses (`XEN_NETIF_CTRL_HASH_TYPE_IPV4`).
        Ipv4 = bit_u32(0),
        /// The IPv4 addresses and the TCP ports (`XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP`).
        Ipv4Tcp = bit_u32(1),
        /// The IPv6 addresses (`XEN_NETIF_CTRL_HASH_TYPE_IPV6`).
        Ipv6 = bit_u32(2),
        /// The IPv6 addresses and the TCP ports (`XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP`).
        Ipv6Tcp = bit_u32(3),
    }
);

static_assert!(HashTypeFlag::Ipv4 as u32 == bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV4);
static_assert!(HashTypeFlag::Ipv4Tcp as u32 == bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP);
static_assert!(HashTypeFlag::Ipv6 as u32 == bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV6);
static_assert!(HashTypeFlag::Ipv6Tcp as u32 == bindings::XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP);

/// A hash algorithm (`XEN_NETIF_CTRL_HASH_ALGORITHM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HashAlgorithm {
    /// No hashing (`XEN_NETIF_CTRL_HASH_ALGORITHM_NONE`).
    None = 0,
    /// The Toeplitz hash (`XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ`), see [`toeplitz_hash`].
    Toeplitz = 1,
}

static_assert!(HashAlgorithm::None as u32 == bindings::XEN_NETIF_CTRL_HASH_ALGORITHM_NONE);
static_assert!(HashAlgorithm::Toeplitz as u32 == bindings::XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ);

impl TryFrom<u32> for HashAlgorithm {
    type Error = Error;

    fn try_from(value: u32) -> Result<Self> {
        match value {
            0 => Ok(Self::None),
            1 => Ok(Self::Toeplitz),
            _ => Err(EINVAL),
        }
    }
}

/// The hash of a packet: the content of an [`Extra::Hash`] slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hash {
    /// The headers the hash covers.
    pub type_: HashType,
    /// The algorithm.
    pub algorithm: HashAlgorithm,
    /// The hash value.
    pub value: u32,
}

/// The decoded content of an [`ExtraInfo`] slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extra {
    /// Segmentation offload of the packet (`XEN_NETIF_EXTRA_TYPE_GSO`).
    Gso(Gso),
    /// Add an Ethernet address to the multicast filter (`XEN_NETIF_EXTRA_TYPE_MCAST_ADD`).
    McastAdd([u8; 6]),
    /// Remove an Ethernet address from the multicast filter (`XEN_NETIF_EXTRA_TYPE_MCAST_DEL`).
    McastDel([u8; 6]),
    /// Hash of the packet (`XEN_NETIF_EXTRA_TYPE_HASH`).
    Hash(Hash),
    /// Headroom before the packet data, for XDP (`XEN_NETIF_EXTRA_TYPE_XDP`).
    Xdp {
        /// The headroom in bytes, at most [`MAX_XDP_HEADROOM`].
        headroom: u16,
    },
}

impl Extra {
    /// Returns the type of the extra (`XEN_NETIF_EXTRA_TYPE_*`).
    pub fn type_(&self) -> u8 {
        match self {
            Self::Gso(_) => 1,
            Self::McastAdd(_) => 2,
            Self::McastDel(_) => 3,
            Self::Hash(_) => 4,
            Self::Xdp { .. } => 5,
        }
    }
}

/// Number of extra-info types, `XEN_NETIF_EXTRA_TYPE_NONE` (never used) included
/// (`XEN_NETIF_EXTRA_TYPE_MAX`).
pub const EXTRA_TYPE_MAX: u8 = 6;

static_assert!(bindings::XEN_NETIF_EXTRA_TYPE_GSO == 1);
static_assert!(bindings::XEN_NETIF_EXTRA_TYPE_MCAST_ADD == 2);
static_assert!(bindings::XEN_NETIF_EXTRA_TYPE_MCAST_DEL == 3);
static_assert!(bindings::XEN_NETIF_EXTRA_TYPE_HASH == 4);
static_assert!(bindings::XEN_NETIF_EXTRA_TYPE_XDP == 5);
static_assert!(EXTRA_TYPE_MAX as u32 == bindings::XEN_NETIF_EXTRA_TYPE_MAX);

/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info slot follows.
const EXTRA_FLAG_MORE: u8 = 1 << 0;

static_assert!(EXTRA_FLAG_MORE as u32 == bindings::XEN_NETIF_EXTRA_FLAG_MORE);

/// An extra-info slot, in the transmit ring after a request with [`TxFlag::ExtraInfo`], in the
/// receive ring after a response with [`RxFlag::ExtraInfo`] (`struct xen_netif_extra_info`).
///
/// The content is raw as the peer wrote it; [`ExtraInfo::decode`] checks and decodes it.
///
/// # Examples
///
/// ```
/// use kernel::xen::netif::{Extra, ExtraInfo, Gso, GsoType};
///
/// let gso = Extra::Gso(Gso::new(1448, GsoType::TcpV4)?);
/// let slot = ExtraInfo::new(gso).with_more(true);
/// assert!(slot.more());
/// assert_eq!(slot.decode(), Ok(gso));
///
/// // What a hostile peer may write.
/// assert_eq!(ExtraInfo { type_: 0, ..slot }.decode(), Err(EINVAL));
/// assert_eq!(ExtraInfo { type_: 6, ..slot }.decode(), Err(EINVAL));
/// assert_eq!(ExtraInfo { data: [0; 6], ..slot }.decode(), Err(EINVAL));
/// # Ok::<(), Error>(())
/// ```
#[repr(C, align(2))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct ExtraInfo {
    /// The type of the extra (`XEN_NETIF_EXTRA_TYPE_*`).
    pub type_: u8,
    /// Flags (`XEN_NETIF_EXTRA_FLAG_*`).
    pub flags: u8,
    /// The content, in the layout of the C union `u` (native byte order).
    pub data: [u8; 6],
}

assert_same_layout!(ExtraInfo, bindings::xen_netif_extra_info, {
    type_: type_,
    flags: flags,
    data: u,
});

impl ExtraInfo {
    /// Returns the slot of an extra, with no flags.
    pub fn new(extra: Extra) -> Self {
        let mut data = [0u8; 6];
        match extra {
            Extra::Gso(gso) => {
                data[0..2].copy_from_slice(&gso.size.to_ne_bytes());
                data[2] = gso.type_ as u8;
                // `pad` and `features` (none are defined) stay zero.
            }
            Extra::McastAdd(addr) | Extra::McastDel(addr) => data = addr,
            Extra::Hash(hash) => {
                data[0] = hash.type_ as u8;
                data[1] = hash.algorithm as u8;
                data[2..6].copy_from_slice(&hash.value.to_ne_bytes());
            }
            Extra::Xdp { headroom } => data[0..2].copy_from_slice(&headroom.to_ne_bytes()),
        }
        Self {
            type_: extra.type_(),
            flags: 0,
            data,
        }
    }

    /// Returns the slot with the flag that says whether another extra-info slot follows.
    pub fn with_more(self, more: bool) -> Self {
        let flags = if more {
            self.flags | EXTRA_FLAG_MORE
        } else {
            self.flags & !EXTRA_FLAG_MORE
        };
        Self { flags, ..self }
    }

    /// Returns whether another extra-info slot follows (`XEN_NETIF_EXTRA_FLAG_MORE`).
    pub fn more(&self) -> bool {
        self.flags & EXTRA_FLAG_MORE != 0
    }

    /// Checks and decodes the content of the slot.
    ///
    /// Fails with [`EINVAL`] for an unknown type, a GSO extra with a zero size or an unknown
    /// offload, a hash extra with an unknown type or algorithm, or an XDP headroom above
    /// [`MAX_XDP_HEADROOM`].
    pub fn decode(&self) -> Result<Extra> {
        self.check().map_err(|_| EINVAL)
    }

    /// Decodes the slot like [`ExtraInfo::decode`], saying why it is invalid.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xen::netif::{ExtraInfo, InvalidExtra};
    ///
    /// let gso = |size: u16, type_: u8| {
    ///     let s = size.to_ne_bytes();
    ///     ExtraInfo { type_: 1, flags: 0, data: [s[0], s[1], type_, 0, 0, 0] }
    /// };
    /// assert!(gso(1448, 1).check().is_ok());
    /// assert_eq!(gso(0, 1).check(), Err(InvalidExtra::GsoSizeZero));
    /// assert_eq!(gso(1448, 7).check(), Err(InvalidExtra::GsoType(7)));
    /// assert_eq!(ExtraInfo { type_: 9, ..gso(1448, 1) }.check(), Err(InvalidExtra::Type(9)));
    /// ```
    pub fn check(&self) -> core::result::Result<Extra, InvalidExtra> {
        let d = &self.data;
        match self.type_ {
            1 => {
                let type_ = GsoType::try_from(d[2]).map_err(|_| InvalidExtra::GsoType(d[2]))?;
                let gso = Gso::new(u16::from_ne_bytes([d[0], d[1]]), type_)
                    .map_err(|_| InvalidExtra::GsoSizeZero)?;
                Ok(Extra::Gso(gso))
            }
            2 => Ok(Extra::McastAdd(*d)),
            3 => Ok(Extra::McastDel(*d)),
            4 => Ok(Extra::Hash(Hash {
                type_: HashType::try_from(d[0]).map_err(|_| InvalidExtra::Content(4))?,
                algorithm: HashAlgorithm::try_from(u32::from(d[1]))
                    .map_err(|_| InvalidExtra::Content(4))?,
                value: u32::from_ne_bytes([d[2], d[3], d[4], d[5]]),
            })),
            5 => {
                let headroom = u16::from_ne_bytes([d[0], d[1]]);
                if headroom > MAX_XDP_HEADROOM {
                    return Err(InvalidExtra::Content(5));
                }
                Ok(Extra::Xdp { headroom })
            }
            t => Err(InvalidExtra::Type(t)),
        }
    }
}

/// Why an [`ExtraInfo`] slot is invalid ([`ExtraInfo::check`]).
///
/// It displays as the C drivers log it (`xennet_get_extras()`, `xennet_set_skb_gso()`), so that
/// administrators' log monitoring keeps working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidExtra {
    /// The type is 0 or not below [`EXTRA_TYPE_MAX`].
    Type(u8),
    /// A GSO extra with a segment size of 0.
    GsoSizeZero,
    /// A GSO extra with an unknown GSO type.
    GsoType(u8),
    /// An extra of this known type with content out of range.
    Content(u8),
}

impl core::fmt::Display for InvalidExtra {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Type(t) => write!(f, "Invalid extra type: {t}"),
            Self::GsoSizeZero => write!(f, "GSO size must not be zero"),
            Self::GsoType(t) => write!(f, "Bad GSO type {t}"),
            Self::Content(t) => write!(f, "Invalid content of extra type {t}"),
        }
    }
}

impl From<Extra> for ExtraInfo {
    fn from(extra: Extra) -> Self {
        Self::new(extra)
    }
}

/// A request slot of the transmit ring: it holds a [`TxRequest`] or an [`ExtraInfo`].
///
/// Which one the slot holds follows from the slot before it: an [`ExtraInfo`] follows a request
/// with [`TxFlag::ExtraInfo`], or an extra with [`ExtraInfo::more`].
///
/// # Examples
///
/// ```
/// use kernel::xen::netif::{Checksum, TxFlags, TxRequest, TxSlot};
///
/// let req = TxRequest {
///     gref: 7,
///     size: 60,
///     flags: TxFlags::from_checksum(Checksum::Partial),
///     ..Default::default()
/// };
/// assert_eq!(TxSlot::from(req).request(), req);
/// ```
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct TxSlot {
    head: [u8; 8],
    tail: [u8; 4],
}

static_assert!(size_of::<TxSlot>() == size_of::<TxRequest>());
static_assert!(align_of::<TxSlot>() == align_of::<TxRequest>());

impl TxSlot {
    /// Returns the slot as a request.
    pub fn request(&self) -> TxRequest {
        zerocopy::transmute!(*self)
    }

    /// Returns the slot as an extra-info slot.
    pub fn extra(&self) -> ExtraInfo {
        zerocopy::transmute!(self.head)
    }
}

impl From<TxRequest> for TxSlot {
    fn from(req: TxRequest) -> Self {
        zerocopy::transmute!(req)
    }
}

impl From<ExtraInfo> for TxSlot {
    fn from(extra: ExtraInfo) -> Self {
        Self {
            head: zerocopy::transmute!(extra),
            tail: [0; 4],
        }
    }
}

/// A response slot of the receive ring: it holds an [`RxResponse`] or an [`ExtraInfo`].
///
/// Which one the slot holds follows from the slot before it: an [`ExtraInfo`] follows a response
/// with [`RxFlag::ExtraInfo`], or an extra with [`ExtraInfo::more`].
#[repr(C, align(2))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct RxSlot([u8; 8]);

static_assert!(size_of::<RxSlot>() == size_of::<RxResponse>());
static_assert!(size_of::<RxSlot>() == size_of::<ExtraInfo>());

impl RxSlot {
    /// Returns the slot as a response.
    pub fn response(&self) -> RxResponse {
        zerocopy::transmute!(*self)
    }

    /// Returns the slot as an extra-info slot.
    pub fn extra(&self) -> ExtraInfo {
        zerocopy::transmute!(*self)
    }
}

impl From<RxResponse> for RxSlot {
    fn from(rsp: RxResponse) -> Self {
        zerocopy::transmute!(rsp)
    }
}

impl From<ExtraInfo> for RxSlot {
    fn from(extra: ExtraInfo) -> Self {
        zerocopy::transmute!(extra)
    }
}

/// The operation of a [`CtrlRequest`] (`XEN_NETIF_CTRL_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum CtrlType {
    /// Never used (`XEN_NETIF_CTRL_TYPE_INVALID`).
    Invalid = 0,
    /// Get the supported hash types (`XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS`).
    GetHashFlags = 1,
    /// Set the hash types to use (`XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS`).
    SetHashFlags = 2,
    /// Set the hash key, from a granted page (`XEN_NETIF_CTRL_TYPE_SET_HASH_KEY`).
    SetHashKey = 3,
    /// Get the maximum size of the queue mapping table
    /// (`XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE`).
    GetHashMappingSize = 4,
    /// Set the size of the queue mapping table (`XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE`).
    SetHashMappingSize = 5,
    /// Set entries of the queue mapping table, from a granted page
    /// (`XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING`).
    SetHashMapping = 6,
    /// Set the hash algorithm (`XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM`).
    SetHashAlgorithm = 7,
}

static_assert!(CtrlType::Invalid as u32 == bindings::XEN_NETIF_CTRL_TYPE_INVALID);
static_assert!(CtrlType::GetHashFlags as u32 == bindings::XEN_NETIF_CTRL_TYPE_GET_HASH_FLAGS);
static_assert!(CtrlType::SetHashFlags as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_FLAGS);
static_assert!(CtrlType::SetHashKey as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_KEY);
static_assert!(
    CtrlType::GetHashMappingSize as u32 == bindings::XEN_NETIF_CTRL_TYPE_GET_HASH_MAPPING_SIZE
);
static_assert!(
    CtrlType::SetHashMappingSize as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING_SIZE
);
static_assert!(CtrlType::SetHashMapping as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_MAPPING);
static_assert!(
    CtrlType::SetHashAlgorithm as u32 == bindings::XEN_NETIF_CTRL_TYPE_SET_HASH_ALGORITHM
);

impl TryFrom<u16> for CtrlType {
    type Error = Error;

    fn try_from(value: u16) -> Result<Self> {
        match value {
            0 => Ok(Self::Invalid),
            1 => Ok(Self::GetHashFlags),
            2 => Ok(Self::SetHashFlags),
            3 => Ok(Self::SetHashKey),
            4 => Ok(Self::GetHashMappingSize),
            5 => Ok(Self::SetHashMappingSize),
            6 => Ok(Self::SetHashMapping),
            7 => Ok(Self::SetHashAlgorithm),
            _ => Err(EINVAL),
        }
    }
}

/// The status of a [`CtrlResponse`] (`XEN_NETIF_CTRL_STATUS_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum CtrlStatus {
    /// Done (`XEN_NETIF_CTRL_STATUS_SUCCESS`).
    Success = 0,
    /// Unknown operation (`XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED`).
    NotSupported = 1,
    /// A parameter is out of range (`XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER`).
    InvalidParameter = 2,
    /// A buffer is too small (`XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW`).
    BufferOverflow = 3,
}

static_assert!(CtrlStatus::Success as u32 == bindings::XEN_NETIF_CTRL_STATUS_SUCCESS);
static_assert!(CtrlStatus::NotSupported as u32 == bindings::XEN_NETIF_CTRL_STATUS_NOT_SUPPORTED);
static_assert!(
    CtrlStatus::InvalidParameter as u32 == bindings::XEN_NETIF_CTRL_STATUS_INVALID_PARAMETER
);
static_assert!(
    CtrlStatus::BufferOverflow as u32 == bindings::XEN_NETIF_CTRL_STATUS_BUFFER_OVERFLOW
);

impl TryFrom<u32> for CtrlStatus {
    type Error = Error;

    fn try_from(value: u32) -> Result<Self> {
        match value {
            0 => Ok(Self::Success),
            1 => Ok(Self::NotSupported),
            2 => Ok(Self::InvalidParameter),
            3 => Ok(Self::BufferOverflow),
            _ => Err(EINVAL),
        }
    }
}

/// A request of the control ring (`struct xen_netif_ctrl_request`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct CtrlRequest {
    /// Identifier, echoed in the response.
    pub id: u16,
    /// The operation, a [`CtrlType`].
    pub type_: u16,
    /// Parameters of the operation.
    pub data: [u32; 3],
}

assert_same_layout!(CtrlRequest, bindings::xen_netif_ctrl_request, {
    id: id,
    type_: type_,
    data: data,
});

/// A response of the control ring (`struct xen_netif_ctrl_response`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes)]
pub struct CtrlResponse {
    /// Identifier of the request.
    pub id: u16,
    /// The operation of the request.
    pub type_: u16,
    /// A [`CtrlStatus`].
    pub status: u32,
    /// Result of the operation.
    pub data: u32,
}

impl CtrlResponse {
    /// Checks the response to `req`, as a frontend must (the backend may write anything), and
    /// returns its data.
    ///
    /// Fails with [`EPROTO`] if the response does not answer `req` (another id or type) or has an
    /// unknown status, and with the error of its status otherwise: [`EOPNOTSUPP`] for
    /// [`CtrlStatus::NotSupported`], [`EINVAL`] for [`CtrlStatus::InvalidParameter`], [`ENOBUFS`]
    /// for [`CtrlStatus::BufferOverflow`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::xen::netif::{CtrlRequest, CtrlResponse, CtrlType};
    ///
    /// let req = CtrlRequest { id: 3, type_: CtrlType::GetHashFlags as u16, data: [0; 3] };
    /// let ok = CtrlResponse { id: 3, type_: req.type_, status: 0, data: 0xf };
    /// assert_eq!(ok.check(&req), Ok(0xf));
    /// assert_eq!(CtrlResponse { id: 4, ..ok }.check(&req), Err(EPROTO));
    /// assert_eq!(CtrlResponse { type_: 2, ..ok }.check(&req), Err(EPROTO));
    /// assert_eq!(CtrlResponse { status: 1, ..ok }.check(&req), Err(EOPNOTSUPP));
    /// assert_eq!(CtrlResponse { status: 2, ..ok }.check(&req), Err(EINVAL));
    /// assert_eq!(CtrlResponse { status: 3, ..ok }.check(&req), Err(ENOBUFS));
    /// assert_eq!(CtrlResponse { status: 4, ..ok }.check(&req), Err(EPROTO));
    /// assert_eq!(CtrlResponse { status: u32::MAX, ..ok }.check(&req), Err(EPROTO));
    /// ```
    pub fn check(&self, req: &CtrlRequest) -> Result<u32> {
        if self.id != req.id || self.type_ != req.type_ {
            return Err(EPROTO);
        }
        match CtrlStatus::try_from(self.status) {
            Ok(CtrlStatus::Success) => Ok(self.data),
            Ok(CtrlStatus::NotSupported) => Err(EOPNOTSUPP),
            Ok(CtrlStatus::InvalidParameter) => Err(EINVAL),
            Ok(CtrlStatus::BufferOverflow) => Err(ENOBUFS),
            Err(_) => Err(EPROTO),
        }
    }
}

assert_same_layout!(CtrlResponse, bindings::xen_netif_ctrl_response, {
    id: id,
    type_: type_,
    status: status,
    data: data,
});

/// The argument of a control request that the backend reads from a granted page: the Toeplitz
/// key of [`CtrlType::SetHashKey`] or the table of [`CtrlType::SetHashMapping`].
///
/// The bytes are copied into a fresh page of ours, granted read-only to the backend; dropping the
/// value ends the grant (the page stays out of reuse while the backend still maps it).
///
/// # Examples
///
/// ```
/// use kernel::xen::{netif::CtrlArg, DomId};
///
/// // At most a page.
/// assert_eq!(CtrlArg::new(DomId(0), &[0u8; 4097]).err(), Some(EINVAL));
/// // Outside Xen there is no grant table.
/// # if !kernel::xen::xen_domain() {
/// assert!(CtrlArg::new(DomId(0), &[1, 2, 3]).is_err());
/// # }
/// ```
pub struct CtrlArg {
    grant: crate::xen::grant::Grant<crate::page::Page>,
}

impl CtrlArg {
    /// Copies `data` (at most a page) to the start of a new page and grants it read-only to
    /// domain `domid`.
    pub fn new(domid: crate::xen::DomId, data: &[u8]) -> Result<Self> {
        use crate::xen::grant::{
            Access,
            Grant,
            UnusedRef, //
        };
        if data.len() > PAGE_SIZE {
            return Err(EINVAL);
        }
        let gref = UnusedRef::alloc()?;
        let page = crate::page::Page::alloc_page(GFP_KERNEL | crate::alloc::flags::__GFP_ZERO)?;
        // SAFETY: `page` was just allocated and is not shared with anything yet; `data` is valid
        // for reads of `data.len()` bytes, which fit in the page (checked above).
        unsafe { page.write_raw(data.as_ptr(), 0, data.len())? };
        Ok(Self {
            grant: Grant::new(gref, domid, page, Access::ReadOnly),
        })
    }

    /// Returns the reference to put into the request.
    pub fn gref(&self) -> crate::xen::grant::GrantRef {
        self.grant.gref()
    }
}

/// Returns the Toeplitz hash of `buf` with `key` (`xen_netif_toeplitz_hash()`).
///
/// Key bytes past the end of `key` count as zero.
///
/// # Examples
///
/// The IPv4 example of the Microsoft RSS specification: source 66.9.149.187, destination
/// 161.142.100.80.
///
/// ```
/// use kernel::xen::netif::toeplitz_hash;
///
/// const KEY: [u8; 40] = [
///     0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
///     0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
///     0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
/// ];
/// let addrs = [66, 9, 149, 187, 161, 142, 100, 80];
/// assert_eq!(toeplitz_hash(&KEY, &addrs), 0x323e8fc2);
/// ```
pub fn toeplitz_hash(key: &[u8], buf: &[u8]) -> u32 {
    let key_byte = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));

    // The 64 key bits that line up with the next input byte, most significant first.
    let mut prefix = (0..8).fold(0u64, |prefix, i| (prefix << 8) | key_byte(i));
    let mut hash = 0u64;
    for (i, &byte) in buf.iter().enumerate() {
        let mut byte = byte;
        for _ in 0..8 {
            if byte & 0x80 != 0 {
                hash ^= prefix;
            }
            prefix <<= 1;
            byte <<= 1;
        }
        prefix |= key_byte(i + 8);
    }
    // The valid part of the hash is in the upper 32 bits.
    (hash >> 32) as u32
}

/// The offloads the peer of a virtual network interface accepts, as it announced them in its
/// `feature-*` nodes.
///
/// Neither end may turn on an offload of its own device that the peer cannot handle: a frontend
/// sends only what its backend accepts, a backend passes on to its frontend only what that
/// frontend can receive. [`PeerFeatures::fix`] clears the others from the features of the device
/// (`xennet_fix_features()` in netfront, `xenvif_fix_features()` in netback).
///
/// The two ends announce IPv4 checksum offload differently: a backend always accepts packets
/// with a partial IPv4 checksum, a frontend says when it cannot receive them
/// (`feature-no-csum-offload`). [`PeerFeatures::of_backend`] and [`PeerFeatures::of_frontend`]
/// read the nodes of either peer with their meaning.
///
/// # Examples
///
/// ```
/// # #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
/// # {
/// use kernel::{
///     net::dev::Features,
///     xen::netif::{
///         keys,
///         PeerFeatures, //
///     },
/// };
///
/// // A backend that only announced `feature-sg`.
/// let backend = PeerFeatures::of_backend(|key| Ok(key == keys::FEATURE_SG))?;
/// let fixed = backend.fix(Features::SG | Features::TSO | Features::IP_CSUM | Features::IPV6_CSUM);
/// assert_eq!(fixed.bits(), (Features::SG | Features::IP_CSUM).bits());
/// # }
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerFeatures {
    /// Packets in several slots (`feature-sg`).
    pub sg: bool,
    /// TCPv4 segmentation offload (`feature-gso-tcpv4`).
    pub gso_tcpv4: bool,
    /// TCPv6 segmentation offload (`feature-gso-tcpv6`).
    pub gso_tcpv6: bool,
    /// Packets with a partial IPv4 checksum (a backend always; a frontend unless
    /// `feature-no-csum-offload`).
    pub ip_csum: bool,
    /// Packets with a partial IPv6 checksum (`feature-ipv6-csum-offload`).
    pub ipv6_csum: bool,
}

impl PeerFeatures {
    /// Returns the offloads a backend announced; `key(node)` reads its boolean node `node`
    /// (absent: `false`), for example with [`xenstore::read_bool_or`](super::xenstore::read_bool_or).
    pub fn of_backend(mut key: impl FnMut(&'static CStr) -> Result<bool>) -> Result<Self> {
        Ok(Self {
            sg: key(keys::FEATURE_SG)?,
            gso_tcpv4: key(keys::FEATURE_GSO_TCPV4)?,
            gso_tcpv6: key(keys::FEATURE_GSO_TCPV6)?,
            ip_csum: true,
            ipv6_csum: key(keys::FEATURE_IPV6_CSUM_OFFLOAD)?,
        })
    }

    /// Returns the offloads a frontend announced; `key(node)` reads its boolean node `node`
    /// (absent: `false`).
    pub fn of_frontend(mut key: impl FnMut(&'static CStr) -> Result<bool>) -> Result<Self> {
        Ok(Self {
            sg: key(keys::FEATURE_SG)?,
            gso_tcpv4: key(keys::FEATURE_GSO_TCPV4)?,
            gso_tcpv6: key(keys::FEATURE_GSO_TCPV6)?,
            ip_csum: !key(keys::FEATURE_NO_CSUM_OFFLOAD)?,
            ipv6_csum: key(keys::FEATURE_IPV6_CSUM_OFFLOAD)?,
        })
    }

    /// Returns `features` without the offloads the peer does not accept.
    ///
    /// Features that have nothing to do with the peer (such as receive checksumming) are kept.
    #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
    pub fn fix(self, features: Features) -> Features {
        let mut refused = Features::NONE;
        for (accepted, feature) in [
            (self.sg, Features::SG),
            (self.gso_tcpv4, Features::TSO),
            (self.gso_tcpv6, Features::TSO6),
            (self.ip_csum, Features::IP_CSUM),
            (self.ipv6_csum, Features::IPV6_CSUM),
        ] {
            if !accepted {
                refused |= feature;
            }
        }
        features & !refused
    }
}

/// Names of the xenstore nodes of a virtual network interface.
///
/// The backend writes the `feature-*` nodes and `multi-queue-max-queues` under its own directory;
/// the frontend writes the others under its directory (the ring and event-channel nodes under
/// `queue-N/` when it uses several queues). Values written by the peer are untrusted: range-check
/// every number, zero included.
pub mod keys {
    use crate::prelude::*;

    /// Backend: accepts packets in several slots.
    pub const FEATURE_SG: &CStr = c"feature-sg";
    /// Backend: accepts TCPv4 segmentation offload; frontend: can receive it.
    pub const FEATURE_GSO_TCPV4: &CStr = c"feature-gso-tcpv4";
    /// Backend: accepts TCPv6 segmentation offload; frontend: can receive it.
    pub const FEATURE_GSO_TCPV6: &CStr = c"feature-gso-tcpv6";
    /// Backend: accepts packets with a blank IPv6 checksum; frontend: can receive them.
    pub const FEATURE_IPV6_CSUM_OFFLOAD: &CStr = c"feature-ipv6-csum-offload";
    /// Frontend: cannot receive packets with a blank IPv4 checksum.
    pub const FEATURE_NO_CSUM_OFFLOAD: &CStr = c"feature-no-csum-offload";
    /// Backend: can copy received packets into frontend pages.
    pub const FEATURE_RX_COPY: &CStr = c"feature-rx-copy";
    /// Backend: can flip pages (obsolete).
    pub const FEATURE_RX_FLIP: &CStr = c"feature-rx-flip";
    /// Frontend: sends notifications for new receive requests.
    pub const FEATURE_RX_NOTIFY: &CStr = c"feature-rx-notify";
    /// Backend: can filter multicast with the addresses in extras.
    pub const FEATURE_MULTICAST_CONTROL: &CStr = c"feature-multicast-control";
    /// Backend: can switch multicast filtering on and off while connected.
    pub const FEATURE_DYNAMIC_MULTICAST_CONTROL: &CStr = c"feature-dynamic-multicast-control";
    /// Backend: supports separate event channels for transmit and receive.
    pub const FEATURE_SPLIT_EVENT_CHANNELS: &CStr = c"feature-split-event-channels";
    /// Backend: supports a control ring.
    pub const FEATURE_CTRL_RING: &CStr = c"feature-ctrl-ring";
    /// Backend: supports an XDP headroom.
    pub const FEATURE_XDP_HEADROOM: &CStr = c"feature-xdp-headroom";
    /// Backend: the largest number of queues it supports.
    pub const MULTI_QUEUE_MAX_QUEUES: &CStr = c"multi-queue-max-queues";
    /// Frontend: the number of queues it uses.
    pub const MULTI_QUEUE_NUM_QUEUES: &CStr = c"multi-queue-num-queues";
    /// Frontend: asks the backend to filter multicast.
    pub const REQUEST_MULTICAST_CONTROL: &CStr = c"request-multicast-control";
    /// Frontend: asks the backend to copy received packets (always set).
    pub const REQUEST_RX_COPY: &CStr = c"request-rx-copy";
    /// Frontend: grant reference of the transmit ring.
    pub const TX_RING_REF: &CStr = c"tx-ring-ref";
    /// Frontend: grant reference of the receive ring.
    pub const RX_RING_REF: &CStr = c"rx-ring-ref";
    /// Frontend: grant reference of the control ring.
    pub const CTRL_RING_REF: &CStr = c"ctrl-ring-ref";
    /// Frontend: event channel shared by both rings.
    pub const EVENT_CHANNEL: &CStr = c"event-channel";
    /// Frontend: event channel of the transmit ring (split event channels).
    pub const EVENT_CHANNEL_TX: &CStr = c"event-channel-tx";
    /// Frontend: event channel of the receive ring (split event channels).
    pub const EVENT_CHANNEL_RX: &CStr = c"event-channel-rx";
    /// Frontend: event channel of the control ring.
    pub const EVENT_CHANNEL_CTRL: &CStr = c"event-channel-ctrl";
    /// Frontend: headroom it wants before received data for XDP, at most
    /// [`MAX_XDP_HEADROOM`](super::MAX_XDP_HEADROOM).
    pub const XDP_HEADROOM: &CStr = c"xdp-headroom";
    /// Toolstack: the Ethernet address of the interface.
    pub const MAC: &CStr = c"mac";
    /// Toolstack: the number of the interface in its domain.
    pub const HANDLE: &CStr = c"handle";
    /// Toolstack: the hotplug script of the backend.
    pub const SCRIPT: &CStr = c"script";
    /// Hotplug script: `connected` once the backend interface is set up.
    pub const HOTPLUG_STATUS: &CStr = c"hotplug-status";
}

#[cfg(CONFIG_RUST_XEN_KUNIT_TEST)]
#[macros::kunit_tests(rust_xen_netif)]
mod tests {
    use super::*;
    use crate::xen::ring::{
        testing::{
            Mem,
            Page, //
        },
        HEADER_SIZE,
    };

    /// Returns the bytes of a C extra-info slot.
    fn c_bytes(c: bindings::xen_netif_extra_info) -> [u8; 8] {
        // SAFETY: `struct xen_netif_extra_info` is 8 bytes without padding (two `u8` and a union
        // of 6-byte members), so all its bytes are initialised.
        unsafe { core::mem::transmute::<bindings::xen_netif_extra_info, [u8; 8]>(c) }
    }

    fn bytes(extra: ExtraInfo) -> [u8; 8] {
        zerocopy::transmute!(extra)
    }

    #[test]
    fn ring_sizes() {
        assert_eq!(TX_RING_SIZE, 256);
        assert_eq!(RX_RING_SIZE, 256);
        assert_eq!(CTRL_RING_SIZE, 128);
        assert_eq!(size_of::<TxSlot>(), 12);
        assert_eq!(size_of::<RxSlot>(), 8);
    }

    #[test]
    fn layouts() {
        assert_eq!(
            size_of::<TxRequest>(),
            size_of::<bindings::xen_netif_tx_request>()
        );
        assert_eq!(
            size_of::<TxResponse>(),
            size_of::<bindings::xen_netif_tx_response>()
        );
        assert_eq!(
            size_of::<RxRequest>(),
            size_of::<bindings::xen_netif_rx_request>()
        );
        assert_eq!(
            size_of::<RxResponse>(),
            size_of::<bindings::xen_netif_rx_response>()
        );
        assert_eq!(
            size_of::<ExtraInfo>(),
            size_of::<bindings::xen_netif_extra_info>()
        );
        assert_eq!(
            size_of::<CtrlRequest>(),
            size_of::<bindings::xen_netif_ctrl_request>()
        );
        assert_eq!(
            size_of::<CtrlResponse>(),
            size_of::<bindings::xen_netif_ctrl_response>()
        );
        assert_eq!(
            offset_of!(TxRequest, size),
            offset_of!(bindings::xen_netif_tx_request, size)
        );
        assert_eq!(
            offset_of!(RxResponse, status),
            offset_of!(bindings::xen_netif_rx_response, status)
        );
        assert_eq!(
            offset_of!(CtrlResponse, data),
            offset_of!(bindings::xen_netif_ctrl_response, data)
        );
    }

    #[test]
    fn extra_layouts() -> Result {
        // Each kind of extra, encoded in Rust and in C.
        let mut c = bindings::xen_netif_extra_info {
            type_: bindings::XEN_NETIF_EXTRA_TYPE_GSO as u8,
            flags: bindings::XEN_NETIF_EXTRA_FLAG_MORE as u8,
            ..Default::default()
        };
        c.u.gso = bindings::xen_netif_extra_info__bindgen_ty_1__bindgen_ty_1 {
            size: 1448,
            type_: bindings::XEN_NETIF_GSO_TYPE_TCPV6 as u8,
            pad: 0,
            features: 0,
        };
        let gso = ExtraInfo::new(Extra::Gso(Gso::new(1448, GsoType::TcpV6)?)).with_more(true);
        assert_eq!(bytes(gso), c_bytes(c));

        let addr = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
        let mut c = bindings::xen_netif_extra_info {
            type_: bindings::XEN_NETIF_EXTRA_TYPE_MCAST_DEL as u8,
            ..Default::default()
        };
        c.u.mcast = bindings::xen_netif_extra_info__bindgen_ty_1__bindgen_ty_2 { addr };
        assert_eq!(bytes(ExtraInfo::new(Extra::McastDel(addr))), c_bytes(c));

        let mut c = bindings::xen_netif_extra_info {
            type_: bindings::XEN_NETIF_EXTRA_TYPE_HASH as u8,
            ..Default::default()
        };
        c.u.hash = bindings::xen_netif_extra_info__bindgen_ty_1__bindgen_ty_3 {
            type_: bindings::_XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP as u8,
            algorithm: bindings::XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ as u8,
            value: 0x1234_5678_u32.to_ne_bytes(),
        };
        let hash = Extra::Hash(Hash {
            type_: HashType::Ipv6Tcp,
            algorithm: HashAlgorithm::Toeplitz,
            value: 0x1234_5678,
        });
        assert_eq!(bytes(ExtraInfo::new(hash)), c_bytes(c));

        let mut c = bindings::xen_netif_extra_info {
            type_: bindings::XEN_NETIF_EXTRA_TYPE_XDP as u8,
            ..Default::default()
        };
        c.u.xdp = bindings::xen_netif_extra_info__bindgen_ty_1__bindgen_ty_4 {
            headroom: 256,
            pad: [0; 2],
        };
        let xdp = ExtraInfo::new(Extra::Xdp { headroom: 256 });
        assert_eq!(bytes(xdp), c_bytes(c));
        Ok(())
    }

    #[test]
    fn extra_round_trip() -> Result {
        let extras = [
            Extra::Gso(Gso::new(1, GsoType::TcpV4)?),
            Extra::Gso(Gso::new(u16::MAX, GsoType::TcpV6)?),
            Extra::McastAdd([0x33, 0x33, 0, 0, 0, 1]),
            Extra::McastDel([0xff; 6]),
            Extra::Hash(Hash {
                type_: HashType::Ipv4,
                algorithm: HashAlgorithm::None,
                value: u32::MAX,
            }),
            Extra::Xdp { headroom: 0 },
            Extra::Xdp {
                headroom: MAX_XDP_HEADROOM,
            },
        ];
        for extra in extras {
            for more in [false, true] {
                let slot = ExtraInfo::new(extra).with_more(more);
                assert_eq!(slot.more(), more);
                assert_eq!(slot.decode(), Ok(extra));
                assert_eq!(ExtraInfo::from(extra), ExtraInfo::new(extra));
                // Through the slots of both rings.
                assert_eq!(TxSlot::from(slot).extra(), slot);
                assert_eq!(RxSlot::from(slot).extra(), slot);
            }
        }
        // Unknown flags are kept.
        let slot = ExtraInfo {
            flags: 0xfe,
            ..ExtraInfo::new(extras[0])
        };
        assert!(!slot.more());
        assert_eq!(slot.with_more(true).flags, 0xff);
        assert_eq!(slot.with_more(true).with_more(false).flags, 0xfe);
        Ok(())
    }

    #[test]
    fn hostile_extras() -> Result {
        let gso = ExtraInfo::new(Extra::Gso(Gso::new(1448, GsoType::TcpV4)?));
        // Unknown types, `XEN_NETIF_EXTRA_TYPE_NONE` included.
        for type_ in [0, EXTRA_TYPE_MAX, 0x80, u8::MAX] {
            assert_eq!(ExtraInfo { type_, ..gso }.decode(), Err(EINVAL));
        }
        // GSO with a zero size or an unknown offload.
        let mut data = gso.data;
        data[0..2].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(ExtraInfo { data, ..gso }.decode(), Err(EINVAL));
        for type_ in [0, 3, u8::MAX] {
            let mut data = gso.data;
            data[2] = type_;
            assert_eq!(ExtraInfo { data, ..gso }.decode(), Err(EINVAL));
        }
        assert_eq!(Gso::new(0, GsoType::TcpV4), Err(EINVAL));
        // Hash with an unknown type or algorithm.
        let hash = ExtraInfo::new(Extra::Hash(Hash {
            type_: HashType::Ipv4Tcp,
            algorithm: HashAlgorithm::Toeplitz,
            value: 1,
        }));
        let mut data = hash.data;
        data[0] = 4;
        assert_eq!(ExtraInfo { data, ..hash }.decode(), Err(EINVAL));
        let mut data = hash.data;
        data[1] = 2;
        assert_eq!(ExtraInfo { data, ..hash }.decode(), Err(EINVAL));
        // XDP headroom above the maximum.
        let xdp = ExtraInfo::new(Extra::Xdp { headroom: 0 });
        for headroom in [MAX_XDP_HEADROOM + 1, u16::MAX] {
            let mut data = xdp.data;
            data[0..2].copy_from_slice(&headroom.to_ne_bytes());
            assert_eq!(ExtraInfo { data, ..xdp }.decode(), Err(EINVAL));
        }
        Ok(())
    }

    #[test]
    fn checksum_flags() {
        for checksum in [Checksum::None, Checksum::Unnecessary, Checksum::Partial] {
            assert_eq!(TxFlags::from_checksum(checksum).checksum(), checksum);
            assert_eq!(RxFlags::from_checksum(checksum).checksum(), checksum);
            assert_eq!(Checksum::from_ip_summed(checksum.ip_summed()), checksum);
        }
        assert_eq!(u16::from(TxFlags::from_checksum(Checksum::Partial)), 0b11);
        assert_eq!(u16::from(RxFlags::from_checksum(Checksum::Partial)), 0b11);
        assert_eq!(
            u16::from(TxFlags::from_checksum(Checksum::Unnecessary)),
            0b10
        );
        assert_eq!(
            u16::from(RxFlags::from_checksum(Checksum::Unnecessary)),
            0b01
        );
        assert_eq!(
            Checksum::from_ip_summed(bindings::CHECKSUM_COMPLETE as u8),
            Checksum::None
        );

        // A blank checksum wins over a validated one; other flags do not matter.
        let tx: TxFlags = zerocopy::transmute!(0xfff1_u16);
        assert_eq!(tx.checksum(), Checksum::Partial);
        assert!(tx.contains(TxFlag::CsumBlank) && !tx.contains(TxFlag::DataValidated));
        assert_eq!(u16::from(tx), 0xfff1);
        let rx: RxFlags = zerocopy::transmute!(0xfff2_u16);
        assert_eq!(rx.checksum(), Checksum::Partial);
        let rx: RxFlags = zerocopy::transmute!(0xfffd_u16);
        assert_eq!(rx.checksum(), Checksum::Unnecessary);
        let tx: TxFlags = zerocopy::transmute!(0xfffc_u16);
        assert_eq!(tx.checksum(), Checksum::None);
    }

    #[test]
    fn gso_translation() {
        let v4 = bindings::SKB_GSO_TCPV4 as u32;
        let v6 = bindings::SKB_GSO_TCPV6 as u32;
        let ecn = bindings::SKB_GSO_TCP_ECN as u32;
        let dodgy = bindings::SKB_GSO_DODGY as u32;
        assert_eq!(GsoType::from_skb_gso_type(v4), Some(GsoType::TcpV4));
        assert_eq!(
            GsoType::from_skb_gso_type(v4 | ecn | dodgy),
            Some(GsoType::TcpV4)
        );
        assert_eq!(GsoType::from_skb_gso_type(v6), Some(GsoType::TcpV6));
        assert_eq!(GsoType::from_skb_gso_type(v6 | ecn), Some(GsoType::TcpV6));
        assert_eq!(GsoType::from_skb_gso_type(0), None);
        assert_eq!(
            GsoType::from_skb_gso_type(bindings::SKB_GSO_UDP_L4 as u32),
            None
        );
        assert_eq!(GsoType::TcpV4.skb_gso_type(), v4 | dodgy);
        assert_eq!(GsoType::TcpV6.skb_gso_type(), v6 | dodgy);
        for gso in [GsoType::TcpV4, GsoType::TcpV6] {
            assert_eq!(GsoType::from_skb_gso_type(gso.skb_gso_type()), Some(gso));
            assert_eq!(GsoType::try_from(gso as u8), Ok(gso));
        }
        for value in [0, 3, u8::MAX] {
            assert_eq!(GsoType::try_from(value), Err(EINVAL));
        }
    }

    #[test]
    fn statuses() {
        for status in [Status::Dropped, Status::Error, Status::Okay, Status::Null] {
            assert_eq!(Status::try_from(status as i16), Ok(status));
        }
        for value in [-3, 2, i16::MIN, i16::MAX] {
            assert_eq!(Status::try_from(value), Err(EINVAL));
        }
        for value in 0..=7u16 {
            assert_eq!(CtrlType::try_from(value).map(|t| t as u16), Ok(value));
        }
        assert_eq!(CtrlType::try_from(8u16), Err(EINVAL));
        for value in 0..=3u32 {
            assert_eq!(CtrlStatus::try_from(value).map(|s| s as u32), Ok(value));
        }
        assert_eq!(CtrlStatus::try_from(4u32), Err(EINVAL));
        assert_eq!(HashAlgorithm::try_from(2u32), Err(EINVAL));
        for value in 0..=3u8 {
            let type_ = HashType::try_from(value);
            assert_eq!(type_.map(|t| u32::from(t.as_set())), Ok(1u32 << value));
        }
        assert_eq!(HashType::try_from(4u8), Err(EINVAL));
    }

    #[test]
    fn rx_response_data() {
        let rsp = |offset, status| RxResponse {
            offset,
            status,
            ..Default::default()
        };
        assert_eq!(rsp(0, 0).data(), Ok((0, 0)));
        assert_eq!(rsp(0, 4096).data(), Ok((0, 4096)));
        assert_eq!(rsp(4096, 0).data(), Ok((4096, 0)));
        assert_eq!(rsp(1, 4096).data(), Err(EINVAL));
        assert_eq!(rsp(4097, 0).data(), Err(EINVAL));
        assert_eq!(rsp(u16::MAX, i16::MAX).data(), Err(EINVAL));
        assert_eq!(rsp(0, -1).data(), Err(EINVAL));
        assert_eq!(rsp(0, i16::MIN).data(), Err(EINVAL));
    }

    #[test]
    fn toeplitz() {
        // The examples of the Microsoft RSS specification ("Verifying the RSS hash calculation").
        const KEY: [u8; 40] = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        // Source 66.9.149.187:2794, destination 161.142.100.80:1766.
        let v4 = [66, 9, 149, 187, 161, 142, 100, 80, 0x0a, 0xea, 0x06, 0xe6];
        assert_eq!(toeplitz_hash(&KEY, &v4[..8]), 0x323e8fc2);
        assert_eq!(toeplitz_hash(&KEY, &v4), 0x51ccc178);
        // Source [3ffe:2501:200:1fff::7]:2794, destination [3ffe:2501:200:3::1]:1766.
        let v6 = [
            0x3f, 0xfe, 0x25, 0x01, 0x02, 0x00, 0x1f, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x07, 0x3f, 0xfe,
            0x25, 0x01, 0x02, 0x00, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x0a, 0xea, 0x06, 0xe6,
        ];
        assert_eq!(toeplitz_hash(&KEY, &v6[..32]), 0x2cc18cd5);
        assert_eq!(toeplitz_hash(&KEY, &v6), 0x40207d3d);
        // A short or empty key counts as zero bits.
        assert_eq!(toeplitz_hash(&[], &v4), 0);
        assert_eq!(toeplitz_hash(&KEY, &[]), 0);
        assert_eq!(toeplitz_hash(&KEY[..4], &[0x80]), 0x6d5a56da);
    }

    #[test]
    fn tx_ring_packet() -> Result {
        // A packet with GSO through a transmit ring on a page: a request, then its extra.
        let page = Page::new()?;
        let mem = Mem::new(&page, 0, 4096);
        let mut front = TxFrontRing::new(mem)?;
        let mut back = TxBackRing::attach(mem)?;
        assert_eq!(front.size(), TX_RING_SIZE);

        let first = TxRequest {
            gref: 42,
            offset: 64,
            flags: TxFlags::from_checksum(Checksum::Partial) | TxFlag::ExtraInfo,
            id: 3,
            size: 9000,
        };
        let gso = Extra::Gso(Gso::new(1448, GsoType::TcpV4)?);
        front.push_request(first.into())?;
        front.push_request(ExtraInfo::new(gso).into())?;
        assert!(front.push_requests_and_check_notify());

        // The request lies in slot 0 as C lays it out.
        let c = bindings::xen_netif_tx_request {
            gref: 42,
            offset: 64,
            flags: (bindings::XEN_NETTXF_csum_blank
                | bindings::XEN_NETTXF_data_validated
                | bindings::XEN_NETTXF_extra_info) as u16,
            id: 3,
            size: 9000,
        };
        let mut requests = back.requests()?;
        let req = requests.next().ok_or(EINVAL)?.request();
        let ours: [u8; 12] = zerocopy::transmute!(req);
        // SAFETY: `struct xen_netif_tx_request` is 12 bytes without padding.
        let theirs = unsafe { core::mem::transmute::<bindings::xen_netif_tx_request, [u8; 12]>(c) };
        assert_eq!(ours, theirs);
        assert_eq!(req, first);
        assert!(req.flags.contains(TxFlag::ExtraInfo));
        let extra = requests.next().ok_or(EINVAL)?.extra();
        assert_eq!(extra.decode(), Ok(gso));
        assert_eq!(requests.next(), None);

        // One response per slot; the extra's is `XEN_NETIF_RSP_NULL`.
        back.push_response(TxResponse {
            id: 3,
            status: Status::Okay as i16,
        })?;
        back.push_response(TxResponse {
            id: 0,
            status: Status::Null as i16,
        })?;
        assert!(back.push_responses_and_check_notify());
        let mut responses = front.responses()?;
        assert_eq!(
            responses.next().map(|r| Status::try_from(r.status)),
            Some(Ok(Status::Okay))
        );
        assert_eq!(
            responses.next().map(|r| Status::try_from(r.status)),
            Some(Ok(Status::Null))
        );
        assert_eq!(responses.next(), None);
        Ok(())
    }

    #[test]
    fn rx_ring_packet() -> Result {
        // A received packet with an extra: a response, then the extra in the next response slot.
        let page = Page::new()?;
        let mem = Mem::new(&page, 0, 4096);
        let mut front = RxFrontRing::new(mem)?;
        let mut back = RxBackRing::attach(mem)?;
        assert_eq!(front.size(), RX_RING_SIZE);

        for id in 0..2 {
            front.push_request(RxRequest::new(id, 100 + u32::from(id)))?;
        }
        front.push_requests();
        let mut requests = back.requests()?;
        assert_eq!(requests.next(), Some(RxRequest::new(0, 100)));
        assert_eq!(requests.next(), Some(RxRequest::new(1, 101)));

        let rsp = RxResponse {
            id: 0,
            offset: 0,
            flags: RxFlags::from_checksum(Checksum::Unnecessary) | RxFlag::ExtraInfo,
            status: 1514,
        };
        let gso = Extra::Gso(Gso::new(1448, GsoType::TcpV6)?);
        back.push_response(rsp.into())?;
        back.push_response(ExtraInfo::new(gso).into())?;
        back.push_responses();

        // The peer rewrites the first response slot once it was taken: the copy stays.
        let mut responses = front.responses()?;
        let first = responses.next().ok_or(EINVAL)?.response();
        mem.write(HEADER_SIZE, RxSlot::default());
        assert_eq!(first, rsp);
        assert_eq!(first.data(), Ok((0, 1514)));
        assert_eq!(first.flags.checksum(), Checksum::Unnecessary);
        assert!(first.flags.contains(RxFlag::ExtraInfo));
        let extra = responses.next().ok_or(EINVAL)?.extra();
        assert_eq!(extra.decode(), Ok(gso));
        assert_eq!(responses.next(), None);
        Ok(())
    }

    /// A peer that accepts every offload.
    const EVERYTHING: PeerFeatures = PeerFeatures {
        sg: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
        ip_csum: true,
        ipv6_csum: true,
    };

    /// Reads nodes from `set`, the nodes the peer set to 1, as `xenstore::read_bool_or()` would.
    fn nodes<'a>(set: &'a [&'static CStr]) -> impl FnMut(&'static CStr) -> Result<bool> + 'a {
        move |key| Ok(set.contains(&key))
    }

    #[test]
    fn peer_features_from_nodes() -> Result {
        let all = [
            keys::FEATURE_SG,
            keys::FEATURE_GSO_TCPV4,
            keys::FEATURE_GSO_TCPV6,
            keys::FEATURE_IPV6_CSUM_OFFLOAD,
        ];
        assert_eq!(PeerFeatures::of_backend(nodes(&all))?, EVERYTHING);
        assert_eq!(PeerFeatures::of_frontend(nodes(&all))?, EVERYTHING);

        // A backend accepts partial IPv4 checksums whatever it wrote; a frontend that wrote
        // nothing receives them, one that wrote `feature-no-csum-offload` does not.
        let ip_csum_only = PeerFeatures {
            ip_csum: true,
            ..Default::default()
        };
        assert_eq!(PeerFeatures::of_backend(nodes(&[]))?, ip_csum_only);
        assert_eq!(PeerFeatures::of_frontend(nodes(&[]))?, ip_csum_only);
        let no_csum = [keys::FEATURE_NO_CSUM_OFFLOAD];
        assert_eq!(PeerFeatures::of_backend(nodes(&no_csum))?, ip_csum_only);
        assert_eq!(
            PeerFeatures::of_frontend(nodes(&no_csum))?,
            PeerFeatures::default()
        );

        // A node that cannot be read fails the whole read.
        assert_eq!(PeerFeatures::of_backend(|_| Err(EINVAL)), Err(EINVAL));
        assert_eq!(PeerFeatures::of_frontend(|_| Err(EINVAL)), Err(EINVAL));
        Ok(())
    }

    #[cfg(CONFIG_RUST_NETDEV_ABSTRACTIONS)]
    #[test]
    fn peer_features_fix() {
        let offloads =
            Features::SG | Features::TSO | Features::TSO6 | Features::IP_CSUM | Features::IPV6_CSUM;
        let others = Features::RXCSUM | Features::GSO_ROBUST;
        let all = offloads | others;

        assert_eq!(EVERYTHING.fix(all).bits(), all.bits());
        assert_eq!(PeerFeatures::default().fix(all).bits(), others.bits());
        // Nothing is turned on that was off.
        assert_eq!(EVERYTHING.fix(others).bits(), others.bits());

        for (peer, kept) in [
            (
                PeerFeatures {
                    sg: true,
                    ..Default::default()
                },
                Features::SG,
            ),
            (
                PeerFeatures {
                    gso_tcpv4: true,
                    ..Default::default()
                },
                Features::TSO,
            ),
            (
                PeerFeatures {
                    gso_tcpv6: true,
                    ..Default::default()
                },
                Features::TSO6,
            ),
            (
                PeerFeatures {
                    ip_csum: true,
                    ..Default::default()
                },
                Features::IP_CSUM,
            ),
            (
                PeerFeatures {
                    ipv6_csum: true,
                    ..Default::default()
                },
                Features::IPV6_CSUM,
            ),
        ] {
            assert_eq!(peer.fix(all).bits(), (others | kept).bits());
        }
    }
}
