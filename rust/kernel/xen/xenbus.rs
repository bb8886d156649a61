// SPDX-License-Identifier: GPL-2.0

//! Xenbus.
//!
//! The bus of Xen paravirtualised devices: each end of a device (frontend and backend) has a
//! directory in xenstore, with a `state` node through which the two ends negotiate the
//! connection.
//!
//! C headers: [`include/xen/xenbus.h`](srctree/include/xen/xenbus.h),
//! [`include/xen/interface/io/xenbus.h`](srctree/include/xen/interface/io/xenbus.h)

use crate::{
    bindings,
    prelude::*,
    xen::xenstore, //
};

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
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum State {
    /// The state could not be read (`XenbusStateUnknown`).
    Unknown = 0,
    /// The device is being set up (`XenbusStateInitialising`).
    Initialising = 1,
    /// Early set-up is done; waiting for information from the other end or from hotplug
    /// scripts (`XenbusStateInitWait`).
    InitWait = 2,
    /// Set up; waiting for the other end to connect (`XenbusStateInitialised`).
    Initialised = 3,
    /// Connected (`XenbusStateConnected`).
    Connected = 4,
    /// Being closed, because of an error or an unplug (`XenbusStateClosing`).
    Closing = 5,
    /// Closed (`XenbusStateClosed`).
    Closed = 6,
    /// Being reconfigured (`XenbusStateReconfiguring`).
    Reconfiguring = 7,
    /// Reconfigured (`XenbusStateReconfigured`).
    Reconfigured = 8,
}

static_assert!(State::Unknown as u32 == bindings::xenbus_state_XenbusStateUnknown);
static_assert!(State::Initialising as u32 == bindings::xenbus_state_XenbusStateInitialising);
static_assert!(State::InitWait as u32 == bindings::xenbus_state_XenbusStateInitWait);
static_assert!(State::Initialised as u32 == bindings::xenbus_state_XenbusStateInitialised);
static_assert!(State::Connected as u32 == bindings::xenbus_state_XenbusStateConnected);
static_assert!(State::Closing as u32 == bindings::xenbus_state_XenbusStateClosing);
static_assert!(State::Closed as u32 == bindings::xenbus_state_XenbusStateClosed);
static_assert!(State::Reconfiguring as u32 == bindings::xenbus_state_XenbusStateReconfiguring);
static_assert!(State::Reconfigured as u32 == bindings::xenbus_state_XenbusStateReconfigured);

impl State {
    /// Parses the value of a `state` node.
    ///
    /// Fails with [`EINVAL`] if the value is not the number of a state.
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
}

impl TryFrom<u32> for State {
    type Error = Error;

    fn try_from(value: u32) -> Result<Self> {
        match value {
            0 => Ok(Self::Unknown),
            1 => Ok(Self::Initialising),
            2 => Ok(Self::InitWait),
            3 => Ok(Self::Initialised),
            4 => Ok(Self::Connected),
            5 => Ok(Self::Closing),
            6 => Ok(Self::Closed),
            7 => Ok(Self::Reconfiguring),
            8 => Ok(Self::Reconfigured),
            _ => Err(EINVAL),
        }
    }
}

impl From<State> for u32 {
    fn from(state: State) -> Self {
        state as u32
    }
}

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
        for value in [9, 0x100, u32::MAX] {
            assert_eq!(State::try_from(value), Err(EINVAL));
        }
        assert_eq!(State::parse(b"0"), Ok(State::Unknown));
        assert_eq!(State::parse(b"8"), Ok(State::Reconfigured));
        assert_eq!(State::parse(b"004"), Ok(State::Connected));
        let garbage: [&[u8]; 6] = [b"", b"-1", b"9", b"4294967300", b" 4", b"Connected"];
        for value in garbage {
            assert_eq!(State::parse(value), Err(EINVAL));
        }
        assert_eq!(State::Closed.name(), c"Closed");
        assert!(State::Initialised < State::Connected);
    }
}
