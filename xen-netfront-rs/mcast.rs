// SPDX-License-Identifier: GPL-2.0

//! Multicast filtering by the backend (beyond the C driver, which leaves the backend flooding
//! every multicast packet to the guest).
//!
//! The device's multicast list (`ndo_set_rx_mode`, atomic context) is recorded and a worker
//! brings the backend's filter in line: `MCAST_ADD`/`MCAST_DEL` extras on queue 0's TX ring
//! for the difference, then `request-multicast-control` in xenstore (`feature-dynamic-multicast-
//! control`). Filtering is off while the device is promiscuous, receives all multicast, or has
//! more addresses than the backend keeps.

use crate::queue::Queue;
use kernel::{
    net::{
        dev::RxMode,
        napi::Napi, //
    },
    new_mutex,
    new_work, //
    prelude::*,
    str::CString,
    sync::{
        new_spinlock_bh,
        Arc,
        Mutex,
        SpinLockBh, //
    },
    time::{
        delay::fsleep,
        Delta, //
    },
    workqueue::{
        self,
        Work,
        WorkItem, //
    },
    xen::{
        netif::{
            keys,
            Extra, //
        },
        xenstore,
    },
};

/// Most addresses a backend keeps (`XEN_NETBK_MCAST_MAX`): beyond, filtering is off.
pub(crate) const MCAST_MAX: usize = 64;

/// A multicast filter.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct McList {
    addrs: [[u8; 6]; MCAST_MAX],
    n: usize,
    /// Every multicast packet is wanted: no filtering.
    pub(crate) all: bool,
}

impl McList {
    pub(crate) const fn new() -> Self {
        Self {
            addrs: [[0; 6]; MCAST_MAX],
            n: 0,
            all: false,
        }
    }

    /// Adds `addr` once; too many addresses mean no filtering.
    pub(crate) fn add(&mut self, addr: &[u8; 6]) {
        if self.contains(addr) {
            return;
        }
        if self.n == MCAST_MAX {
            self.all = true;
            return;
        }
        self.addrs[self.n] = *addr;
        self.n += 1;
    }

    pub(crate) fn contains(&self, addr: &[u8; 6]) -> bool {
        self.addrs[..self.n].contains(addr)
    }

    pub(crate) fn addrs(&self) -> &[[u8; 6]] {
        &self.addrs[..self.n]
    }

    /// The filter of a device.
    pub(crate) fn from_mode(mode: &RxMode<'_>) -> Self {
        let mut l = Self::new();
        l.all = mode.promisc() || mode.allmulti();
        mode.for_each_mc(|a| l.add(a));
        l
    }

    /// The updates that turn filter `self` into `new`: deletions first, then additions.
    pub(crate) fn diff(&self, new: &Self, mut f: impl FnMut(Extra) -> Result) -> Result {
        for a in self.addrs() {
            if !new.contains(a) {
                f(Extra::McastDel(*a))?;
            }
        }
        for a in new.addrs() {
            if !self.contains(a) {
                f(Extra::McastAdd(*a))?;
            }
        }
        Ok(())
    }
}

/// Where the updates go while connected to a backend with dynamic multicast control.
struct Target {
    node: CString,
    queue: Arc<Napi<Queue>>,
}

struct Synced {
    target: Option<Target>,
    /// What the backend's filter holds.
    sent: McList,
    /// `request-multicast-control` is 1.
    filtering: bool,
}

/// The multicast state of a device.
#[pin_data]
pub(crate) struct Mcast {
    /// What the device wants (set from `ndo_set_rx_mode`).
    #[pin]
    want: SpinLockBh<McList>,
    #[pin]
    synced: Mutex<Synced>,
    #[pin]
    work: Work<Mcast>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Mcast { self.work }
}

impl WorkItem for Mcast {
    type Pointer = Arc<Mcast>;

    fn run(this: Arc<Mcast>) {
        this.sync();
    }
}

impl Mcast {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Mcast {
                want <- new_spinlock_bh!(McList {
                    all: true,
                    ..McList::new()
                }),
                synced <- new_mutex!(Synced {
                    target: None,
                    sent: McList::new(),
                    filtering: false,
                }),
                work <- new_work!("xen_netfront_rs::mcast"),
            }),
            GFP_KERNEL,
        )
    }

    /// Records the device's filter (atomic context) and schedules the update.
    pub(crate) fn set_wanted(self: &Arc<Self>, list: McList) {
        *self.want.lock() = list;
        let _ = workqueue::system().enqueue(self.clone());
    }

    /// Starts filtering through `queue` for the device at xenstore node `node` (connected).
    pub(crate) fn connect(self: &Arc<Self>, node: CString, queue: Arc<Napi<Queue>>) {
        {
            let mut s = self.synced.lock();
            s.target = Some(Target { node, queue });
            s.sent = McList::new();
            s.filtering = false;
        }
        let _ = workqueue::system().enqueue(self.clone());
    }

    /// Stops (disconnect); the backend forgets its filter.
    pub(crate) fn disconnect(&self) {
        {
            let mut s = self.synced.lock();
            s.target = None;
            s.filtering = false;
        }
        kernel::xen::work::flush(&self.work);
    }

    fn write_control(node: &CStr, on: bool) -> Result {
        xenstore::write(
            node,
            keys::REQUEST_MULTICAST_CONTROL,
            if on { c"1" } else { c"0" },
        )
    }

    /// The worker: brings the backend's filter in line with the device's.
    fn sync(&self) {
        let want = *self.want.lock();
        let mut guard = self.synced.lock();
        let s = &mut *guard;
        let Some(target) = s.target.as_ref() else {
            return;
        };
        if want.all {
            if s.filtering && Self::write_control(&target.node, false).is_ok() {
                s.filtering = false;
            }
            return;
        }
        let mut sent = s.sent;
        let queue = &target.queue;
        let result = s.sent.diff(&want, |op| {
            // The ring may be full for a while: wait for room (bounded).
            let mut tries = 0;
            loop {
                match queue.send_mcast(op) {
                    Err(e) if e == EBUSY && tries < 100 => {
                        tries += 1;
                        fsleep(Delta::from_millis(10));
                    }
                    Err(e) => return Err(e),
                    Ok(()) => break,
                }
            }
            match op {
                Extra::McastAdd(a) => sent.add(&a),
                Extra::McastDel(a) => {
                    let mut rest = McList::new();
                    for b in sent.addrs() {
                        if *b != a {
                            rest.add(b);
                        }
                    }
                    sent = rest;
                }
                _ => {}
            }
            Ok(())
        });
        s.sent = sent;
        if result.is_err() {
            // Filtering would drop what the backend was not told about: leave it off.
            if s.filtering && Self::write_control(&target.node, false).is_ok() {
                s.filtering = false;
            }
            return;
        }
        if !s.filtering && Self::write_control(&target.node, true).is_ok() {
            s.filtering = true;
        }
    }
}

#[kunit_tests(xen_netfront_rs_mcast)]
mod tests {
    use super::*;

    #[test]
    fn filter_updates() {
        let a = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
        let b = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x02];
        let c = [0x33, 0x33, 0x00, 0x00, 0x00, 0x01];
        let mut old = McList::new();
        old.add(&a);
        old.add(&b);
        old.add(&a);
        assert_eq!(old.addrs().len(), 2);
        let mut new = McList::new();
        new.add(&b);
        new.add(&c);
        let mut ops = KVec::new();
        old.diff(&new, |op| {
            ops.push(op, GFP_KERNEL)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(&ops[..], &[Extra::McastDel(a), Extra::McastAdd(c)]);
        // Too many addresses: no filtering.
        let mut big = McList::new();
        for i in 0..=MCAST_MAX {
            big.add(&[1, 0, 0x5e, 0, 0, i as u8]);
        }
        assert!(big.all);
        assert_eq!(big.addrs().len(), MCAST_MAX);
    }
}
