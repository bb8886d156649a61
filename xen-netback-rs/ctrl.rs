// SPDX-License-Identifier: GPL-2.0

//! The control ring (C: `xenvif_connect_ctrl`, `xenvif_ctrl_action`, `xenvif_ctrl_irq_fn`).
//!
//! The event handler only hands the work to a worker (process context), which copies each
//! request once, answers it ([`crate::hash::HashConfig::process`]) and then does the late EOI of
//! the event channel, flagged spurious when the event found no request (XSA-332). A frontend
//! that moves its producer index out of range loses its control ring (the channel stays
//! masked); its data rings keep working.

use crate::interface::{
    NotifySlot,
    VifShared, //
};
use kernel::{
    new_mutex,
    new_work, //
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        new_spinlock_bh,
        Arc,
        Mutex,
        SpinLockBh, //
    },
    workqueue::{
        self,
        Work,
        WorkItem, //
    },
    xen::{
        evtchn::{
            Eoi,
            Handler,
            Notifier, //
        },
        grant::{
            CopyBatch,
            GrantRef,
            MappedRing, //
        },
        netif::{
            CtrlBackRing,
            CtrlRequest, //
        },
        DomId,
        PAGE_SIZE, //
    },
};

/// Requests answered per round before the responses are published.
const BATCH: usize = 16;

/// Requests answered per run of the worker: a frontend that keeps posting cannot hold it.
const MAX_PER_RUN: usize = 256;

/// What the worker uses.
struct CtrlState {
    /// `None` once the ring is unmapped (disconnect).
    ring: Option<CtrlBackRing<MappedRing>>,
    /// A page-aligned page of the linear mapping, where granted pages are copied.
    scratch: KVec<u8>,
}

/// A connected control ring.
#[pin_data]
pub(crate) struct Ctrl {
    domid: DomId,
    shared: Arc<VifShared>,
    #[pin]
    state: Mutex<CtrlState>,
    #[pin]
    /// The notification side of the event channel (the worker may run as soon as the channel
    /// is bound, before [`Self::start`] publishes it).
    notify: SpinLockBh<NotifySlot>,
    /// Non-zero while the event channel waits for its late EOI from the worker.
    eoi: Atomic<u32>,
    /// Non-zero once the ring is not served any more (disconnect, or a broken frontend).
    disabled: Atomic<u32>,
    #[pin]
    work: Work<Ctrl>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Ctrl { self.work }
}

impl WorkItem for Ctrl {
    type Pointer = Arc<Ctrl>;

    fn run(this: Arc<Ctrl>) {
        this.action();
    }
}

/// The handler of the control event channel.
pub(crate) struct CtrlIrq(pub(crate) Arc<Ctrl>);

impl Handler for CtrlIrq {
    fn handle(&self) -> Eoi {
        if self.0.disabled.load(Relaxed) != 0 {
            return Eoi::Deferred;
        }
        self.0.eoi.store(1, Relaxed);
        self.0.kick();
        Eoi::Deferred
    }
}

impl Ctrl {
    pub(crate) fn new(
        domid: DomId,
        shared: Arc<VifShared>,
        ring: CtrlBackRing<MappedRing>,
    ) -> Result<Arc<Self>> {
        let scratch = KVec::from_elem(0u8, PAGE_SIZE, GFP_KERNEL)?;
        if scratch.as_ptr() as usize % PAGE_SIZE != 0 {
            // kmalloc() aligns power-of-two sizes; never seen otherwise.
            return Err(ENOMEM);
        }
        Arc::pin_init(
            pin_init!(Ctrl {
                domid,
                shared,
                state <- new_mutex!(CtrlState {
                    ring: Some(ring),
                    scratch,
                }),
                notify <- new_spinlock_bh!(NotifySlot::default()),
                eoi: Atomic::new(0),
                disabled: Atomic::new(0),
                work <- new_work!("xen_netback_rs::ctrl"),
            }),
            GFP_KERNEL,
        )
    }

    /// Publishes the notification side of the event channel, sends the notification that was
    /// due before, if one was, then looks at the ring once (for requests, and for an event that
    /// came before the notifier was there).
    pub(crate) fn start(self: &Arc<Self>, notifier: Notifier) {
        let missed = self.notify.lock().publish(notifier);
        if let Some(n) = missed {
            n.notify();
        }
        self.kick();
    }

    fn kick(self: &Arc<Self>) {
        // Fails only if already queued, which is as good.
        let _ = workqueue::system().enqueue(self.clone());
    }

    /// Stops serving the ring (the event channel is unbound by the caller first), waits for the
    /// worker and unmaps the ring.
    pub(crate) fn stop(&self) {
        self.disabled.store(1, Relaxed);
        *self.notify.lock() = NotifySlot::default();
        kernel::xen::work::flush(&self.work);
        let ring = self.state.lock().ring.take();
        drop(ring);
    }

    /// Copies `buf.len()` bytes from the start of the page the frontend granted with `gref`.
    fn copy_from_grant(domid: DomId, scratch: &mut [u8], gref: GrantRef, buf: &mut [u8]) -> Result {
        if buf.len() > scratch.len() {
            return Err(EINVAL);
        }
        let len = buf.len();
        {
            let mut batch = CopyBatch::new();
            batch.copy_from_peer(domid, gref, 0, &mut scratch[..len])?;
            batch.submit();
            batch.status(0)?;
        }
        buf.copy_from_slice(&scratch[..len]);
        Ok(())
    }

    /// The worker (C: `xenvif_ctrl_action`).
    fn action(self: &Arc<Self>) {
        if self.disabled.load(Relaxed) != 0 {
            return;
        }
        let mut found = false;
        let mut broken = None;
        let mut notify = false;
        let mut done = 0;
        let mut more = false;
        {
            let mut guard = self.state.lock();
            let st = &mut *guard;
            let Some(ring) = st.ring.as_mut() else {
                return;
            };
            loop {
                if done >= MAX_PER_RUN {
                    // Yield; the next run looks again (and does the EOI).
                    more = true;
                    break;
                }
                let mut reqs = [CtrlRequest::default(); BATCH];
                let mut n = 0;
                match ring.requests() {
                    Ok(it) => {
                        for r in it.take(BATCH) {
                            reqs[n] = r;
                            n += 1;
                        }
                    }
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
                if n == 0 {
                    match ring.final_check_for_requests() {
                        Ok(true) => continue,
                        Ok(false) => break,
                        Err(e) => {
                            broken = Some(e);
                            break;
                        }
                    }
                }
                found = true;
                done += n;
                let num_queues = self.shared.num_queues.load(Relaxed);
                for req in &reqs[..n] {
                    // Worked on a copy: the lock is not held across the grant copies.
                    let mut cfg = self.shared.hash.lock().clone();
                    let scratch = &mut st.scratch[..];
                    let rsp = cfg.process(req, num_queues, |gref, buf| {
                        Self::copy_from_grant(self.domid, scratch, gref, buf)
                    });
                    self.shared.set_hash(cfg);
                    // A slot is free for each request taken.
                    let _ = ring.push_response(rsp);
                }
                notify |= ring.push_responses_and_check_notify();
            }
        }
        // One look at the slot serves the notification and the EOI below.
        let notifier = {
            let mut g = self.notify.lock();
            if notify {
                g.due()
            } else {
                g.get()
            }
        };
        if notify {
            if let Some(n) = notifier {
                n.notify();
            }
        }
        if let Some(e) = broken {
            self.disabled.store(1, Relaxed);
            pr_err!(
                "vif{}: control ring: Impossible number of requests. req_prod {}, req_cons {}\n",
                self.domid.0,
                e.prod,
                e.cons
            );
            // The event channel stays masked.
            return;
        }
        if more {
            self.kick();
            return;
        }
        if self.eoi.xchg(0, Relaxed) != 0 {
            match notifier {
                Some(n) => n.lateeoi(!found),
                // An event before `start`: EOI'd by the run `start` schedules.
                None => self.eoi.store(1, Relaxed),
            }
        }
    }
}
