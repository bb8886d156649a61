// SPDX-License-Identifier: GPL-2.0

//! Waiting for work items (`flush_work()`, `flush_delayed_work()`).
//!
//! The kernel crate's [`workqueue`](crate::workqueue) module queues work items but cannot wait for
//! them. A driver whose work items hold references to its objects (an `Arc` given to
//! [`Queue::enqueue`](crate::workqueue::Queue::enqueue)) must wait for them before its module may
//! be unloaded. Flushing is the safe way to do it: a delayed item whose timer is pending is queued
//! at once and run, so the reference it holds is dropped by its `run` function; cancelling it would
//! leak the reference.
//!
//! The backends use it when a frontend disconnects: once their interrupts are gone and their
//! queues are marked disabled, the work items of a queue run one last time and are idle after.
//!
//! # Examples
//!
//! ```
//! use kernel::{prelude::*, sync::Arc, workqueue::{self, Work, WorkItem}};
//! use kernel::{impl_has_work, new_work};
//!
//! #[pin_data]
//! struct Job {
//!     #[pin]
//!     work: Work<Job>,
//! }
//!
//! impl_has_work! { impl HasWork<Self> for Job { self.work } }
//!
//! impl WorkItem for Job {
//!     type Pointer = Arc<Job>;
//!     fn run(_this: Arc<Job>) {}
//! }
//!
//! let job = Arc::pin_init(pin_init!(Job { work <- new_work!("Job::work") }), GFP_KERNEL)?;
//! let _ = workqueue::system_highpri().enqueue(job.clone());
//! kernel::xen::work::flush(&job.work);
//! // The work item ran and dropped its reference.
//! assert!(!kernel::xen::work::flush(&job.work));
//! # Ok::<(), Error>(())
//! ```

use crate::workqueue::{
    DelayedWork,
    Work, //
};

/// Waits until `work` is idle: if it is queued or running, until it has run
/// (`flush_work()`). Returns whether it had to wait.
///
/// Must not be called from the work item itself.
pub fn flush<T: ?Sized, const ID: u64>(work: &Work<T, ID>) -> bool {
    // SAFETY: `work` is a valid, initialised `Work`, so `raw_get` returns a valid pointer to its
    // `struct work_struct`; `flush_work()` may be called on an initialised work item at any time
    // from process context.
    unsafe { bindings::flush_work(Work::raw_get(work)) }
}

/// Runs `dwork` now if its timer is pending, then waits until it is idle
/// (`flush_delayed_work()`). Returns whether it had to wait.
///
/// Must not be called from the work item itself.
pub fn flush_delayed<T: ?Sized, const ID: u64>(dwork: &DelayedWork<T, ID>) -> bool {
    // `DelayedWork` is a transparent wrapper of `struct delayed_work`.
    let ptr = core::ptr::from_ref(dwork)
        .cast::<bindings::delayed_work>()
        .cast_mut();
    // SAFETY: `ptr` points to the initialised `struct delayed_work` of `dwork`, which is valid for
    // the duration of the call; `flush_delayed_work()` may be called on it at any time from process
    // context.
    unsafe { bindings::flush_delayed_work(ptr) }
}
