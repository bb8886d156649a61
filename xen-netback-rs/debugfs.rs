// SPDX-License-Identifier: GPL-2.0

//! The backend's debugfs files, as C netback's (`xenbus.c` and `xenvif_dump_hash_info` of
//! `hash.c`): `xen-netback/<vif>/io_ring_q<N>` shows the ring indices and state of each queue
//! (writing `kick` to it fakes an event from the frontend), `xen-netback/<vif>/ctrl` the hash
//! configuration the frontend set through its control ring (only with a control ring).
//!
//! Lifetimes: a vif's directory is a [`Scope`] owning references to its queues and shared state;
//! it is dropped first thing at disconnect, which removes the files and waits for the readers and
//! writers in them, before the queues are torn down. The `xen-netback` directory lives from
//! module load to unload; the driver is unregistered (every vif gone) before it is removed.

use crate::{
    hash::HashConfig,
    interface::{
        Queue,
        VifShared, //
    },
};
use kernel::{
    debugfs::{
        Dir,
        Scope, //
    },
    fmt,
    prelude::*,
    str::CString,
    sync::{
        Arc,
        Mutex,
        SetOnce, //
    },
    uaccess::UserSliceReader,
    xen::{
        netif::{
            HashAlgorithm,
            HashTypeFlag, //
        },
        ring::BackRingIndices,
    },
};

/// The `xen-netback` directory (C: `xen_netback_dbg_root`). Set at module load; the directory
/// itself is taken out (and removed) at unload. The cell cannot be freed with the module: its
/// few bytes stay allocated after an unload.
static ROOT: SetOnce<Arc<Mutex<Option<Dir>>>> = SetOnce::new();

/// Creates the `xen-netback` directory (module load).
pub(crate) fn init() -> Result {
    let root = Arc::pin_init(
        kernel::new_mutex!(Some(Dir::new(c"xen-netback"))),
        GFP_KERNEL,
    )?;
    if !ROOT.populate(root) {
        // Only at the first load of this module instance: cannot happen.
        return Err(EBUSY);
    }
    Ok(())
}

/// Removes the `xen-netback` directory (module unload, after the driver is gone).
pub(crate) fn exit() {
    if let Some(root) = ROOT.as_ref() {
        drop(root.lock().take());
    }
}

/// What the files of a vif read.
pub(crate) struct VifDebug {
    queues: KVec<Arc<Queue>>,
    shared: Arc<VifShared>,
}

/// The debugfs directory of a connected vif; dropping it removes the files.
pub(crate) type VifDir = Pin<KBox<Scope<VifDebug>>>;

/// Creates `xen-netback/<ifname>/` with `io_ring_q<N>` for each of `queues` and, if `ctrl`,
/// `ctrl` (C: `xenvif_debugfs_addif`). Diagnostics only: `None` if it cannot be created.
pub(crate) fn add_vif(
    ifname: &str,
    queues: KVec<Arc<Queue>>,
    shared: Arc<VifShared>,
    ctrl: bool,
) -> Option<VifDir> {
    let root = ROOT.as_ref()?.lock();
    let dir = root.as_ref()?;
    let name = CString::try_from_fmt(fmt!("{ifname}")).ok()?;
    let data = VifDebug { queues, shared };
    let scope = dir.scope(data, &name, move |data, d| {
        for (i, q) in data.queues.iter().enumerate() {
            if let Ok(file) = CString::try_from_fmt(fmt!("io_ring_q{i}")) {
                d.read_write_callback_file(&file, q, &show_io_ring, &write_io_ring);
            }
        }
        if ctrl {
            d.read_callback_file(c"ctrl", &data.shared, &show_ctrl);
        }
    });
    KBox::pin_init(scope, GFP_KERNEL).ok()
}

/// The lines C prints for a ring (`xenvif_read_io_ring`): indices, and their distance to the
/// published response producer.
fn show_ring(f: &mut fmt::Formatter<'_>, name: &str, i: &BackRingIndices) -> fmt::Result {
    let d = |x: u32| x.wrapping_sub(i.rsp_prod) as i32;
    writeln!(f, "{name}: nr_ents {}", i.size)?;
    writeln!(
        f,
        "req prod {} ({}) cons {} ({}) event {} ({})",
        i.req_prod,
        d(i.req_prod),
        i.req_cons,
        d(i.req_cons),
        i.req_event,
        d(i.req_event)
    )?;
    writeln!(
        f,
        "rsp prod {} (base) pvt {} ({}) event {} ({})",
        i.rsp_prod,
        i.rsp_prod_pvt,
        d(i.rsp_prod_pvt),
        i.rsp_event,
        d(i.rsp_event)
    )
}

/// `io_ring_q<N>`: C's format for the rings, then this driver's own state of the queue.
fn show_io_ring(q: &Arc<Queue>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let core = &q.napi;
    // Copied under the locks, printed without them.
    let (tx, held, credit, pending) = {
        let tx = core.tx.lock();
        let pending = tx
            .map
            .as_ref()
            .map(|ms| ms.pending.len().saturating_sub(ms.free.len()));
        (
            tx.ring.indices(),
            tx.held.is_some(),
            tx.credit.describe(),
            pending,
        )
    };
    let (rx, rx_stalled, runs, waits, progress) = {
        let rx = core.rx.lock();
        (
            rx.ring.indices(),
            rx.stalled,
            rx.runs,
            rx.stalled_since.map(|t| t.elapsed().as_millis()),
            rx.last_progress.elapsed().as_millis(),
        )
    };
    let rxq = core.rxq.lock().len();
    writeln!(f, "Queue {}", core.index)?;
    show_ring(f, "TX", &tx)?;
    if let Some(n) = pending {
        writeln!(f, "nr_pending_reqs {n}")?;
    }
    writeln!(f)?;
    show_ring(f, "RX", &rx)?;
    writeln!(f)?;
    let (bytes, usec, remaining) = credit;
    writeln!(
        f,
        "disabled: {} TX held: {}",
        u32::from(core.is_disabled()),
        u32::from(held)
    )?;
    writeln!(f, "Credit credit: {bytes}, usec: {usec}")?;
    writeln!(f, "remaining: {remaining}")?;
    writeln!(f)?;
    writeln!(
        f,
        "Rx internal queue: pkts {rxq} {}",
        if rx_stalled { "stalled" } else { "running" }
    )?;
    match waits {
        Some(ms) => writeln!(
            f,
            "Rx worker runs {runs}; head packet waits for buffers since {ms} ms; last progress {progress} ms ago"
        )?,
        None => writeln!(f, "Rx worker runs {runs}; last progress {progress} ms ago")?,
    }
    writeln!(
        f,
        "from guest: packets {} bytes {}; to guest: packets {} bytes {}",
        core.from_guest.packets.get(),
        core.from_guest.bytes.get(),
        core.to_guest.packets.get(),
        core.to_guest.bytes.get()
    )
}

/// Writing `kick` to `io_ring_q<N>` does what an event on the queue's channels does (C:
/// `xenvif_write_io_ring` calls `xenvif_interrupt`): the TX ring is polled and the RX worker
/// runs. No EOI is owed for it. Anything else is refused.
fn write_io_ring(q: &Arc<Queue>, reader: &mut UserSliceReader) -> Result {
    const KICK: &[u8] = b"kick";
    // As C: at most 31 bytes, compared on the length of `kick`.
    let len = reader.len();
    if len >= 32 {
        return Err(ENOSPC);
    }
    let mut buf = [0u8; 32];
    reader.read_slice(&mut buf[..len])?;
    if !buf[..len].starts_with(KICK) {
        pr_warn!(
            "Unknown command to io_ring_q{}. Available: kick\n",
            q.napi.index
        );
        return Err(EINVAL);
    }
    if q.napi.is_disabled() {
        return Ok(());
    }
    {
        // With bottom halves off, so that the poll runs when they are enabled again.
        let _bh = q.napi.notify.lock();
        q.napi.schedule();
    }
    q.kick_rx();
    Ok(())
}

/// `ctrl`: the hash state, in C's format (`xenvif_dump_hash_info`), then the hash cache.
fn show_ctrl(shared: &Arc<VifShared>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let cfg: HashConfig = shared.hash.lock().clone();
    let (cached, capacity) = {
        let c = shared.hash_cache.lock();
        (c.len(), c.capacity())
    };
    match cfg.alg {
        HashAlgorithm::Toeplitz => writeln!(f, "Hash Algorithm: TOEPLITZ")?,
        HashAlgorithm::None => {
            writeln!(f, "Hash Algorithm: NONE")?;
            return Ok(());
        }
    }
    if cfg.flags != 0 {
        writeln!(f, "\nHash Flags:")?;
        for (flag, name) in [
            (HashTypeFlag::Ipv4, "IPv4"),
            (HashTypeFlag::Ipv4Tcp, "IPv4 + TCP"),
            (HashTypeFlag::Ipv6, "IPv6"),
            (HashTypeFlag::Ipv6Tcp, "IPv6 + TCP"),
        ] {
            if cfg.flags & flag as u32 != 0 {
                writeln!(f, "- {name}")?;
            }
        }
    }
    writeln!(f, "\nHash Key:")?;
    for (n, chunk) in cfg.key.chunks(8).enumerate() {
        let first = n * 8;
        write!(f, "[{first:2} - {:2}]: ", first + chunk.len() - 1)?;
        for b in chunk {
            write!(f, "{b:02x} ")?;
        }
        writeln!(f)?;
    }
    let size = cfg.size.min(cfg.mapping.len());
    if size != 0 {
        writeln!(f, "\nHash Mapping:")?;
        for (n, chunk) in cfg.mapping[..size].chunks(8).enumerate() {
            let first = n * 8;
            write!(f, "[{first:4} - {:4}]: ", first + chunk.len() - 1)?;
            for q in chunk {
                write!(f, "{q:4} ")?;
            }
            writeln!(f)?;
        }
    }
    writeln!(f, "\nHash Cache: {cached} of {capacity} entries")
}
