// SPDX-License-Identifier: GPL-2.0

//! Ethtool operations of a network device (`struct ethtool_ops`).
//!
//! Implemented next to [`dev::Operations`](super::dev::Operations) by the driver's private data
//! type. Without callbacks a device still reports its link from the carrier
//! (`ethtool_op_get_link()`) and software timestamping (`ethtool_op_get_ts_info()`).
//!
//! C header: [`include/linux/ethtool.h`](srctree/include/linux/ethtool.h)

use crate::{
    bindings,
    error::{
        from_result,
        VTABLE_DEFAULT_ERROR, //
    },
    net::dev::{
        Adapter as DevAdapter,
        Device, //
    },
    prelude::*, //
};
use core::marker::PhantomData;

/// Length of an ethtool string, including the terminating NUL (`ETH_GSTRING_LEN`).
pub const GSTRING_LEN: usize = bindings::ETH_GSTRING_LEN as usize;

/// Copies `src` into the fixed-size C string `dst`, truncating and NUL-terminating it.
fn copy_cstr(dst: &mut [c_char], src: &CStr) {
    let Some(max) = dst.len().checked_sub(1) else {
        return;
    };
    let bytes = src.to_bytes();
    let n = bytes.len().min(max);
    for (d, s) in dst.iter_mut().zip(&bytes[..n]) {
        *d = *s as c_char;
    }
    for d in &mut dst[n..] {
        *d = 0;
    }
}

/// Driver information reported by `ethtool -i` (`struct ethtool_drvinfo`).
#[repr(transparent)]
pub struct DrvInfo(bindings::ethtool_drvinfo);

impl DrvInfo {
    /// Sets the driver name.
    pub fn set_driver(&mut self, name: &CStr) {
        copy_cstr(&mut self.0.driver, name);
    }

    /// Sets the driver version.
    pub fn set_version(&mut self, version: &CStr) {
        copy_cstr(&mut self.0.version, version);
    }

    /// Sets the firmware version.
    pub fn set_fw_version(&mut self, version: &CStr) {
        copy_cstr(&mut self.0.fw_version, version);
    }

    /// Sets the bus information, e.g. the bus device name.
    pub fn set_bus_info(&mut self, bus_info: &CStr) {
        copy_cstr(&mut self.0.bus_info, bus_info);
    }
}

/// Channel (queue) counts reported by `ethtool -l` (`struct ethtool_channels`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Channels {
    /// Maximum number of receive-only channels.
    pub max_rx: u32,
    /// Maximum number of transmit-only channels.
    pub max_tx: u32,
    /// Maximum number of combined (receive and transmit) channels.
    pub max_combined: u32,
    /// Current number of receive-only channels.
    pub rx_count: u32,
    /// Current number of transmit-only channels.
    pub tx_count: u32,
    /// Current number of combined channels.
    pub combined_count: u32,
}

/// Ring sizes reported by `ethtool -g` (`struct ethtool_ringparam`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingParam {
    /// Maximum number of receive ring entries.
    pub rx_max_pending: u32,
    /// Maximum number of transmit ring entries.
    pub tx_max_pending: u32,
    /// Current number of receive ring entries.
    pub rx_pending: u32,
    /// Current number of transmit ring entries.
    pub tx_pending: u32,
}

/// Ethtool operations, implemented by the private data type of a network device.
#[vtable]
pub trait Operations: Sized + Send + Sync {
    /// Names of the driver statistics reported by `ethtool -S`, at most [`GSTRING_LEN`] - 1
    /// bytes each; [`Operations::get_stats`] fills in one value per name.
    const STATS: &'static [&'static CStr] = &[];

    /// Fills in driver information (`get_drvinfo`).
    fn get_drvinfo(_dev: &Device, _this: Pin<&Self>, _info: &mut DrvInfo) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Returns whether the link is up (`get_link`). Without it, the carrier state is reported.
    fn get_link(_dev: &Device, _this: Pin<&Self>) -> bool {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Fills in one value per name of [`Operations::STATS`] (`get_ethtool_stats`).
    fn get_stats(_dev: &Device, _this: Pin<&Self>, _values: &mut [u64]) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports the channel counts (`get_channels`).
    fn get_channels(_dev: &Device, _this: Pin<&Self>, _channels: &mut Channels) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Changes the channel counts (`set_channels`, `ethtool -L`); called with RTNL held.
    ///
    /// The ethtool core has checked the request against the maxima [`Operations::get_channels`]
    /// reports, and that it leaves at least one receive and one transmit channel.
    fn set_channels(_dev: &Device, _this: Pin<&Self>, _channels: &Channels) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports the ring sizes (`get_ringparam`).
    fn get_ringparam(_dev: &Device, _this: Pin<&Self>, _ring: &mut RingParam) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// Returns the ethtool operations table for `T`.
pub(crate) fn ops_table<T: Operations + super::dev::Operations>() -> &'static bindings::ethtool_ops
{
    &Adapter::<T>::ETHTOOL_OPS
}

struct Adapter<T>(PhantomData<T>);

impl<T: Operations + super::dev::Operations> Adapter<T> {
    /// # Safety
    ///
    /// Only called by ethtool, as the `ethtool_ops` callback of a device created by
    /// [`Registration<T>`](super::dev::Registration).
    unsafe extern "C" fn get_drvinfo_callback(
        dev: *mut bindings::net_device,
        info: *mut bindings::ethtool_drvinfo,
    ) {
        // SAFETY: Ethtool calls this for a device whose operations `Registration<T>` installed.
        let (d, this) = unsafe { DevAdapter::<T>::args(dev) };
        // CAST: `DrvInfo` is a transparent wrapper of `ethtool_drvinfo`.
        // SAFETY: `info` is valid and exclusively ours during the call.
        let info = unsafe { &mut *info.cast::<DrvInfo>() };
        T::get_drvinfo(d, this, info);
    }

    /// # Safety
    ///
    /// Only called by ethtool, as the `ethtool_ops` callback of a device created by
    /// [`Registration<T>`](super::dev::Registration).
    unsafe extern "C" fn get_link_callback(dev: *mut bindings::net_device) -> u32 {
        // SAFETY: Ethtool calls this for a device whose operations `Registration<T>` installed.
        let (d, this) = unsafe { DevAdapter::<T>::args(dev) };
        u32::from(T::get_link(d, this))
    }

    /// # Safety
    ///
    /// Only called by ethtool, as the `ethtool_ops` callback of a device created by
    /// [`Registration<T>`](super::dev::Registration).
    unsafe extern "C" fn get_sset_count_callback(
        _dev: *mut bindings::net_device,
        sset: c_int,
    ) -> c_int {
        if sset == bindings::ethtool_stringset_ETH_SS_STATS as c_int {
            T::STATS.len() as c_int
        } else {
            EOPNOTSUPP.to_errno()
        }
    }

    /// # Safety
    ///
    /// Only called by ethtool, as the `ethtool_ops` callback of a device created by
    /// [`Registration<T>`](super::dev::Registration).
    unsafe extern "C" fn get_strings_callback(
        _dev: *mut bindings::net_device,
        sset: u32,
        data: *mut u8,
    ) {
        if sset != bindings::ethtool_stringset_ETH_SS_STATS {
            return;
        }
        // SAFETY: Ethtool passes a buffer of `get_sset_count()` strings of `ETH_GSTRING_LEN`
        // bytes each.
        let buf = unsafe {
            core::slice::from_raw_parts_mut(data.cast::<c_char>(), T::STATS.len() * GSTRING_LEN)
        };
        for (slot, name) in buf.chunks_exact_mut(GSTRING_LEN).zip(T::STATS) {
            copy_cstr(slot, name);
        }
    }

    /// # Safety
    ///
    /// Only called by ethtool, as the `ethtool_ops` callback of a device created by
    /// [`Registration<T>`](super::dev::Registration).
    unsafe extern "C" fn get_ethtool_stats_callback(
        dev: *mut bindings::net_device,
        _stats: *mut bindings::ethtool_stats,
        data: *mut u64,
    ) {
        // SAFETY: Ethtool calls this for a device whose operations `Registration<T>` installed.
        let (d, this) = unsafe { DevAdapter::<T>::args(dev) };
        // SAFETY: Ethtool passes a buffer of `get_sset_count(ETH_SS_STATS)` values.
        let values = unsafe { core::slice::from_raw_parts_mut(data, T::STATS.len()) };
        values.fill(0);
        T::get_stats(d, this, values);
    }

    /// # Safety
    ///
    /// Only called by ethtool, as the `ethtool_ops` callback of a device created by
    /// [`Registration<T>`](super::dev::Registration).
    unsafe extern "C" fn get_channels_callback(
        dev: *mut bindings::net_device,
        ch: *mut bindings::ethtool_channels,
    ) {
        // SAFETY: Ethtool calls this for a device whose operations `Registration<T>` installed.
        let (d, this) = unsafe { DevAdapter::<T>::args(dev) };
        let mut c = Channels::default();
        T::get_channels(d, this, &mut c);
        // SAFETY: `ch` is valid and exclusively ours during the call.
        let ch = unsafe { &mut *ch };
        ch.max_rx = c.max_rx;
        ch.max_tx = c.max_tx;
        ch.max_combined = c.max_combined;
        ch.rx_count = c.rx_count;
        ch.tx_count = c.tx_count;
        ch.combined_count = c.combined_count;
    }

    /// # Safety
    ///
    /// Only called by ethtool, as the `ethtool_ops` callback of a device created by
    /// [`Registration<T>`](super::dev::Registration).
    unsafe extern "C" fn set_channels_callback(
        dev: *mut bindings::net_device,
        ch: *mut bindings::ethtool_channels,
    ) -> c_int {
        // SAFETY: Ethtool calls this for a device whose operations `Registration<T>` installed,
        // with a valid request that it does not change during the call.
        let ((d, this), ch) = unsafe { (DevAdapter::<T>::args(dev), &*ch) };
        let c = Channels {
            max_rx: ch.max_rx,
            max_tx: ch.max_tx,
            max_combined: ch.max_combined,
            rx_count: ch.rx_count,
            tx_count: ch.tx_count,
            combined_count: ch.combined_count,
        };
        from_result(|| T::set_channels(d, this, &c).map(|()| 0))
    }

    /// # Safety
    ///
    /// Only called by ethtool, as the `ethtool_ops` callback of a device created by
    /// [`Registration<T>`](super::dev::Registration).
    unsafe extern "C" fn get_ringparam_callback(
        dev: *mut bindings::net_device,
        ring: *mut bindings::ethtool_ringparam,
        _kring: *mut bindings::kernel_ethtool_ringparam,
        _extack: *mut bindings::netlink_ext_ack,
    ) {
        // SAFETY: Ethtool calls this for a device whose operations `Registration<T>` installed.
        let (d, this) = unsafe { DevAdapter::<T>::args(dev) };
        let mut r = RingParam::default();
        T::get_ringparam(d, this, &mut r);
        // SAFETY: `ring` is valid and exclusively ours during the call.
        let ring = unsafe { &mut *ring };
        ring.rx_max_pending = r.rx_max_pending;
        ring.tx_max_pending = r.tx_max_pending;
        ring.rx_pending = r.rx_pending;
        ring.tx_pending = r.tx_pending;
    }

    const ETHTOOL_OPS: bindings::ethtool_ops = bindings::ethtool_ops {
        get_drvinfo: if T::HAS_GET_DRVINFO {
            Some(Self::get_drvinfo_callback)
        } else {
            None
        },
        get_link: if T::HAS_GET_LINK {
            Some(Self::get_link_callback)
        } else {
            Some(bindings::ethtool_op_get_link)
        },
        get_sset_count: if T::HAS_GET_STATS {
            Some(Self::get_sset_count_callback)
        } else {
            None
        },
        get_strings: if T::HAS_GET_STATS {
            Some(Self::get_strings_callback)
        } else {
            None
        },
        get_ethtool_stats: if T::HAS_GET_STATS {
            Some(Self::get_ethtool_stats_callback)
        } else {
            None
        },
        get_channels: if T::HAS_GET_CHANNELS {
            Some(Self::get_channels_callback)
        } else {
            None
        },
        set_channels: if T::HAS_SET_CHANNELS {
            Some(Self::set_channels_callback)
        } else {
            None
        },
        get_ringparam: if T::HAS_GET_RINGPARAM {
            Some(Self::get_ringparam_callback)
        } else {
            None
        },
        get_ts_info: Some(bindings::ethtool_op_get_ts_info),
        // SAFETY: All other members are function pointers or plain data, for which zero is
        // "absent".
        ..unsafe { core::mem::MaybeUninit::<bindings::ethtool_ops>::zeroed().assume_init() }
    };
}
