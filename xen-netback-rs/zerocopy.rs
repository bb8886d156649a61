// SPDX-License-Identifier: GPL-2.0

//! Guest TX by grant map (`tx_mode=1`): the C driver's zero-copy mode (C: `xenvif_tx_build_gops`
//! with `gop_map`, `xenvif_fill_frags`, `xenvif_zerocopy_callback`, `xenvif_tx_dealloc_action`,
//! `xenvif_wait_unmap_timeout`).
//!
//! The first [`TX_COPY_LEN`] bytes of a packet are grant-copied into the linear area of its
//! buffer, so that every header the stack parses is in dom0's memory and read once (XSA-423/432);
//! the rest of each request is grant-mapped read-only into a slot of the queue's
//! [`ForeignPages`] and attached as a zero-copy fragment. A request whose page is mapped is
//! answered only once the stack has let go of the buffer and the page is unmapped (the frontend
//! may reuse its grant only then): the zero-copy completion marks the slot returned and schedules
//! the NAPI poll, which unmaps the returned slots and pushes their responses
//! ([`dealloc`]). Zero-size requests are never attached (XSA-448); a packet with more requests
//! than a buffer has fragments is copied instead (the C driver chains a `frag_list` buffer).
//!
//! A failed unmap leaks the slot (counted in the pool, logged) instead of `BUG()`.

use crate::interface::{
    Core,
    Queue, //
};
use kernel::{
    net::{
        skb::ZeroCopy,
        stats::Counter, //
    },
    new_spinlock_irq,
    prelude::*,
    sync::{
        Arc,
        SpinLockIrq, //
    },
    xen::{
        grant::{
            ForeignPages,
            LendablePages,
            ReturnNotify,
            SlotState, //
        },
        netif::{
            Status,
            TxResponse,
            TX_RING_SIZE, //
        },
    },
};

/// Bytes of a mapped packet copied into the linear area (`XEN_NETBACK_TX_COPY_LEN`).
pub(crate) const TX_COPY_LEN: usize = 128;

/// Number of slots of a queue (`MAX_PENDING_REQS`): one per ring entry.
pub(crate) const PENDING: usize = TX_RING_SIZE as usize;

/// What the zero-copy completions of a queue share with it.
#[pin_data]
pub(crate) struct ZcShared {
    /// The queue whose NAPI poll unmaps returned slots; cleared at disconnect, which breaks the
    /// reference cycle queue → pool → here.
    #[pin]
    pub(crate) queue: SpinLockIrq<Option<Arc<Queue>>>,
    /// Zero-copy buffers handed to the stack (`tx_zerocopy_sent`).
    pub(crate) sent: Counter,
    /// ... completed without a copy (`tx_zerocopy_success`) ...
    pub(crate) success: Counter,
    /// ... or after the stack copied them (`tx_zerocopy_fail`).
    pub(crate) fail: Counter,
}

impl ZcShared {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(ZcShared {
                queue <- new_spinlock_irq!(None),
                sent: Counter::new(),
                success: Counter::new(),
                fail: Counter::new(),
            }),
            GFP_KERNEL,
        )
    }
}

/// The zero-copy completion of a queue's buffers (C: `xenvif_zerocopy_callback`).
pub(crate) struct ZcNotify(pub(crate) Arc<ZcShared>);

impl ReturnNotify for ZcNotify {
    fn returned(&self, zerocopy_success: bool) {
        if zerocopy_success {
            self.0.success.inc();
        } else {
            self.0.fail.inc();
        }
        if let Some(q) = self.0.queue.lock().as_ref() {
            q.napi.schedule();
        }
    }
}

/// The mapped pages of a queue and their zero-copy state.
pub(crate) type TxPool = ZeroCopy<LendablePages<ZcNotify>>;

/// The request a slot's mapping belongs to: answered when the slot is unmapped.
#[derive(Clone, Copy, Default)]
pub(crate) struct Pending {
    pub(crate) id: u16,
    /// Null responses to push after it (the extras of the packet's first request).
    pub(crate) extras: u8,
    /// The status to answer with.
    pub(crate) error: bool,
}

/// The map-mode state of a queue, in its [`crate::interface::TxState`].
pub(crate) struct MapState {
    pub(crate) pool: Arc<TxPool>,
    pub(crate) shared: Arc<ZcShared>,
    /// The request of each mapped slot.
    pub(crate) pending: KVec<Pending>,
    /// Free slots (a stack).
    pub(crate) free: KVec<u16>,
    /// Scratch for [`dealloc`].
    pub(crate) scratch: KVec<u16>,
}

impl MapState {
    pub(crate) fn new(shared: Arc<ZcShared>) -> Result<Self> {
        let pages = ForeignPages::new(PENDING)?;
        let pool = ZeroCopy::new(
            LendablePages {
                pages,
                notify: ZcNotify(shared.clone()),
            },
            GFP_KERNEL,
        )?;
        let pending = KVec::from_elem(Pending::default(), PENDING, GFP_KERNEL)?;
        let mut free = KVec::with_capacity(PENDING, GFP_KERNEL)?;
        for i in (0..PENDING).rev() {
            free.push(i as u16, GFP_KERNEL)?;
        }
        let scratch = KVec::with_capacity(PENDING, GFP_KERNEL)?;
        Ok(Self {
            pool,
            shared,
            pending,
            free,
            scratch,
        })
    }

    pub(crate) fn pages(&self) -> &ForeignPages {
        &self.pool.pages().pages
    }

    /// Number of free slots.
    pub(crate) fn nr_free(&self) -> usize {
        self.free.len()
    }
}

/// Pushes the response of a slot's request (and the null responses of its extras).
pub(crate) fn respond_pending(
    ring: &mut kernel::xen::netif::TxBackRing<kernel::xen::grant::MappedRing>,
    p: Pending,
) {
    let status = if p.error { Status::Error } else { Status::Okay };
    let _ = ring.push_response(TxResponse {
        id: p.id,
        status: status as i16,
    });
    for _ in 0..p.extras {
        let _ = ring.push_response(TxResponse {
            id: 0,
            status: Status::Null as i16,
        });
    }
}

/// Unmaps `slots` and answers their requests (unless `answer` is false: the rings are going
/// away); a slot whose unmapping failed is leaked, its request answered with an error.
pub(crate) fn unmap_and_answer(
    ring: &mut kernel::xen::netif::TxBackRing<kernel::xen::grant::MappedRing>,
    ms: &mut MapState,
    slots: &[u16],
    answer: bool,
) {
    let MapState {
        pool,
        pending,
        free,
        ..
    } = ms;
    pool.pages().pages.unmap(slots, |slot, res| {
        let mut p = pending.get(slot).copied().unwrap_or_default();
        match res {
            Ok(()) => {
                let _ = free.push(slot as u16, GFP_ATOMIC);
            }
            // Leaked (`EIO`): answered, never reused.
            Err(e) if e == EIO => p.error = true,
            // Not mapped or lent: not ours to answer now.
            Err(_) => return,
        }
        if answer {
            respond_pending(ring, p);
        }
    });
}

/// Unmaps the slots the stack gave back and answers their requests (C:
/// `xenvif_tx_dealloc_action`). Returns the number of slots handled.
pub(crate) fn dealloc(
    ring: &mut kernel::xen::netif::TxBackRing<kernel::xen::grant::MappedRing>,
    ms: &mut MapState,
    answer: bool,
) -> usize {
    let mut scratch = core::mem::take(&mut ms.scratch);
    scratch.clear();
    let pages = ms.pages();
    for slot in 0..pages.len() {
        if pages.state(slot) == Some(SlotState::Returned) {
            let _ = scratch.push(slot as u16, GFP_ATOMIC);
        }
    }
    let n = scratch.len();
    if n != 0 {
        unmap_and_answer(ring, ms, &scratch, answer);
    }
    ms.scratch = scratch;
    n
}

/// Tears the map mode of a disconnected queue down (NAPI disabled, no interrupts): waits until
/// the stack has given back every buffer (C: `xenvif_wait_unmap_timeout`, warning every 10 s), as
/// the module's code must stay until the last completion, unmapping returned slots as they come
/// back so the frontend's pages are released early, then drops the pool (which unmaps what is
/// left and frees the pages).
pub(crate) fn teardown(core: &Core, name: &str) {
    let Some(mut ms) = core.tx.lock().map.take() else {
        return;
    };
    *ms.shared.queue.lock() = None;
    let mut waited = 0u32;
    loop {
        {
            let mut tx = core.tx.lock();
            dealloc(&mut tx.ring, &mut ms, false);
        }
        if ms.pool.in_flight() == 0 {
            break;
        }
        kernel::time::delay::fsleep(kernel::time::Delta::from_millis(100));
        waited += 1;
        if waited % 100 == 0 {
            pr_warn!(
                "{name}: {} packets still held by the stack after {} s: their pages stay granted\n",
                ms.pool.in_flight(),
                waited / 10
            );
        }
    }
    let leaked = ms.pages().leaked();
    if leaked != 0 {
        pr_err!("{name}: {leaked} mapped pages could not be unmapped and were leaked\n");
    }
    drop(ms);
}
