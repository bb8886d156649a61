// SPDX-License-Identifier: GPL-2.0

//! Guest RX: packets from dom0 to the frontend (C: `rx.c`), by grant copy into the buffers the
//! frontend posted, from a worker (process context).
//!
//! The device's transmit path only queues packets (bounded in bytes); the worker takes them one
//! by one (never freeing one under the queue lock) with the frontend's requests for them, and
//! keeps them until a batch of about [`BATCH_SLOTS`] slots is gathered. The batch's grant copies
//! then go straight from each packet's linear area and fragments to the frontend's pages, in one
//! hypercall, and the requests are answered once the copies' status is known (C:
//! `xenvif_rx_copy_add`, `xenvif_rx_copy_flush`).

use crate::interface::{
    Core,
    Queue,
    HASH_HEADER_BYTES,
    RX_MAX_PACKET,
    RX_QUEUE_MAX_BYTES, //
};
use kernel::{
    net::skb::{
        Checksum as SkbChecksum,
        GsoType as SkbGso,
        SkBuff,
        SkBuffRef, //
    },
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc, //
    },
    time::{
        Instant,
        Monotonic, //
    },
    xen::{
        grant::{
            GrantRef,
            MappedRing,
            SkbSource, //
        },
        netif::{
            Checksum,
            Extra,
            ExtraInfo,
            Gso,
            GsoType,
            Hash,
            RxBackRing,
            RxFlag,
            RxFlags,
            RxRequest,
            RxResponse,
            RxSlot,
            Status, //
        },
        PAGE_SIZE,
    },
};

/// Most packets sent per run of the worker before it yields.
const MAX_PACKETS_PER_RUN: usize = 256;

/// Data slots gathered before the batch's grant copies are submitted (C: `COPY_BATCH_SIZE`
/// operations): one hypercall for several packets.
pub(crate) const BATCH_SLOTS: usize = 64;

/// Most packets in one batch.
pub(crate) const BATCH_PACKETS: usize = 64;

/// Operations a batch is allocated for: a data slot takes two copies when its data crosses a
/// page boundary of the source, and one more for each part of the packet that ends in it.
pub(crate) const BATCH_OPS: usize = 3 * BATCH_SLOTS;

/// A packet taken from the queue with the frontend's requests for it, waiting in the batch.
pub(crate) struct RxPacket {
    skb: SkBuff,
    len: usize,
    gso: Option<Gso>,
    hash: Option<Hash>,
    csum: Checksum,
    /// Bytes the frontend keeps free at the start of the first slot (XDP).
    headroom: usize,
    /// Slots taken, extras included: the first `need` entries of `reqs`.
    need: usize,
    reqs: [RxRequest; crate::LEGACY_SLOTS_MAX],
}

impl RxPacket {
    fn nr_extras(&self) -> usize {
        usize::from(self.gso.is_some())
            + usize::from(self.hash.is_some())
            + usize::from(self.headroom != 0)
    }

    /// Data slots: every request but the extras' (after the first one: GSO, hash, then XDP, in
    /// the order of their types as in C).
    fn nr_data(&self) -> usize {
        self.need - self.nr_extras()
    }

    /// The request of data slot `i`.
    fn data_req(&self, i: usize) -> RxRequest {
        let slot = if i >= 1 { i + self.nr_extras() } else { i };
        self.reqs[slot.min(crate::LEGACY_SLOTS_MAX - 1)]
    }

    /// Where the data of slot `i` starts: the first one's after the headroom the frontend asked
    /// for.
    fn base(&self, i: usize) -> usize {
        if i == 0 {
            self.headroom
        } else {
            0
        }
    }

    /// Where the packet's data goes: for each data slot, its index, where the data starts in
    /// the slot and how many bytes it gets (the copies and the responses both follow this).
    fn slots(&self) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        let mut remaining = self.len;
        (0..self.nr_data()).map(move |i| {
            let base = self.base(i);
            let size = remaining.min(PAGE_SIZE - base);
            remaining -= size;
            (i, base, size)
        })
    }

    /// Writes the responses to the packet's requests: its data slots, with the extras after the
    /// first one; an error in each data slot if the copies failed.
    fn respond(&self, ring: &mut RxBackRing<MappedRing>, ok: bool) {
        let nr_data = self.nr_data();
        let nr_extras = self.nr_extras();
        for (i, base, size) in self.slots() {
            let req = self.data_req(i);
            let mut flags = if i == 0 {
                RxFlags::from_checksum(self.csum)
            } else {
                RxFlags::empty()
            };
            if i + 1 < nr_data {
                flags |= RxFlag::MoreData;
            }
            if i == 0 && nr_extras != 0 {
                flags |= RxFlag::ExtraInfo;
            }
            let status = if ok {
                size as i16
            } else {
                Status::Error as i16
            };
            let _ = ring.push_response(RxSlot::from(RxResponse {
                id: req.id,
                offset: base as u16,
                flags,
                status,
            }));
            if i == 0 {
                if let Some(gso) = self.gso {
                    let extra = ExtraInfo::new(Extra::Gso(gso))
                        .with_more(self.hash.is_some() || self.headroom != 0);
                    let _ = ring.push_response(RxSlot::from(extra));
                }
                if let Some(hash) = self.hash {
                    let extra = ExtraInfo::new(Extra::Hash(hash)).with_more(self.headroom != 0);
                    let _ = ring.push_response(RxSlot::from(extra));
                }
                if self.headroom != 0 {
                    let extra = ExtraInfo::new(Extra::Xdp {
                        headroom: self.headroom as u16,
                    });
                    let _ = ring.push_response(RxSlot::from(extra));
                }
            }
        }
    }
}

/// Sends the packets of the batch: grant-copies them from where their data is into the
/// frontend's buffers, all in one hypercall, then answers their requests, notifies the frontend
/// if it asked for it (at once, so that it works on the batch while the next one is copied), and
/// frees the packets (C: `xenvif_rx_copy_flush`).
fn flush(core: &Core, state: &mut crate::interface::RxState) {
    if state.pending.is_empty() {
        return;
    }
    let crate::interface::RxState {
        ring,
        pending,
        copy,
        ..
    } = state;
    // Each packet's operations (`start..end` of the batch), and whether they could be added.
    let mut ops = [(0u16, 0u16, false); BATCH_PACKETS];
    {
        // The batch borrows the packets until it is reset.
        let mut batch = core::mem::take(copy).reset();
        for (pkt, ops) in pending.iter().zip(ops.iter_mut()) {
            let start = batch.len();
            let mut src = SkbSource::new(&pkt.skb);
            let mut ok = true;
            for (i, base, size) in pkt.slots() {
                let gref = GrantRef(pkt.data_req(i).gref);
                if batch
                    .copy_skb_to_peer(&mut src, size, core.domid, gref, base as u16)
                    .is_err()
                {
                    ok = false;
                    break;
                }
            }
            *ops = (start as u16, batch.len() as u16, ok);
        }
        batch.submit();
        for op in ops.iter_mut().take(pending.len()) {
            op.2 &= (usize::from(op.0)..usize::from(op.1)).all(|i| batch.status(i).is_ok());
        }
        *copy = batch.reset();
    }
    for (pkt, &(_, _, ok)) in pending.iter().zip(ops.iter()) {
        pkt.respond(ring, ok);
    }
    if ring.push_responses_and_check_notify() {
        core.notify_rx();
    }
    // Freed here, with no lock but the worker's.
    for (pkt, &(_, _, ok)) in pending.drain_all().zip(ops.iter()) {
        if ok {
            core.to_guest.packet(pkt.len as u32);
            pkt.skb.consume();
        } else {
            core.to_guest.dropped.inc();
            drop(pkt);
        }
    }
}

/// The GSO extra to send with a packet, if the frontend takes that kind of offload.
pub(crate) fn gso_for(
    fe: &crate::interface::FrontendFeatures,
    is_gso: bool,
    size: u16,
    kind: SkbGso,
) -> Option<Gso> {
    if !is_gso {
        return None;
    }
    let t = if kind.intersects(SkbGso::TCPV4) && fe.gso_tcpv4 {
        GsoType::TcpV4
    } else if kind.intersects(SkbGso::TCPV6) && fe.gso_tcpv6 {
        GsoType::TcpV6
    } else {
        return None;
    };
    Gso::new(size, t).ok()
}

/// Number of ring slots a packet of `len` bytes takes: one per page of data, the first one
/// starting after `headroom` bytes, one for a GSO extra, one for the XDP extra (if `headroom`).
pub(crate) fn slots_needed(len: usize, gso: bool, headroom: usize) -> usize {
    let first = PAGE_SIZE - headroom.min(PAGE_SIZE / 2);
    let data = if len <= first {
        1
    } else {
        1 + (len - first).div_ceil(PAGE_SIZE)
    };
    data + usize::from(gso) + usize::from(headroom != 0)
}

fn packet_info(core: &Core, skb: &SkBuffRef) -> (usize, Option<Gso>, Checksum) {
    let gso = gso_for(&core.fe, skb.is_gso(), skb.gso_size(), skb.gso_type());
    let csum = match skb.ip_summed() {
        SkbChecksum::Partial => Checksum::Partial,
        SkbChecksum::Unnecessary => Checksum::Unnecessary,
        _ => Checksum::None,
    };
    (skb.len() as usize, gso, csum)
}

/// The worker: sends queued packets while the frontend has buffers for them.
pub(crate) fn rx_action(queue: &Arc<Queue>) {
    let core: &Core = &queue.napi;
    let dev = queue.napi.device();
    if core.is_disabled() {
        // Drop what is queued, outside the lock.
        loop {
            let skb = core.rxq.lock().pop_front();
            match skb {
                Some(skb) => drop(skb),
                None => break,
            }
        }
        return;
    }

    let mut rx = core.rx.lock();
    rx.runs = rx.runs.wrapping_add(1);
    if rx.stalled && matches!(rx.ring.unconsumed_requests(), Ok(n) if n > 0) {
        // The frontend posts buffers again (C: `xenvif_rx_queue_ready`).
        set_stalled(core, dev, &mut rx, false);
    }
    let mut sent = 0;
    let mut notify = false;
    let mut fatal = None;
    let mut short = false;
    let mut slots = 0;
    while sent < MAX_PACKETS_PER_RUN {
        // Look at the head packet: does the frontend have room for it?
        let mut hdr = [0u8; HASH_HEADER_BYTES];
        let head = {
            let rxq = core.rxq.lock();
            rxq.front().map(|skb| {
                let info = packet_info(core, skb);
                let n = info.0.min(HASH_HEADER_BYTES);
                let n = if skb.copy_bits(0, &mut hdr[..n]).is_ok() {
                    n
                } else {
                    0
                };
                (info, n)
            })
        };
        let Some(((len, gso, csum), hdr_len)) = head else {
            break;
        };
        // Bounded when it is read from xenstore (at most half a page).
        let headroom = (core.shared.xdp_headroom.load(Relaxed) as usize).min(PAGE_SIZE / 2);
        let mut need = slots_needed(len, gso.is_some(), headroom);
        // The hash, if the frontend enabled hashing and it fits in the slots the frontend
        // must accept (C: `sw_hash`, set by `xenvif_select_queue`).
        let hash = core.shared.hash_of(&hdr[..hdr_len]);
        let hash = hash.filter(|_| need < crate::LEGACY_SLOTS_MAX);
        need += usize::from(hash.is_some());
        if len > RX_MAX_PACKET || need > crate::LEGACY_SLOTS_MAX {
            let skb = core.rxq.lock().pop_front();
            core.to_guest.dropped.inc();
            drop(skb);
            continue;
        }
        let avail = match rx.ring.unconsumed_requests() {
            Ok(n) => n as usize,
            Err(_) => {
                fatal = Some("RX producer index out of range");
                break;
            }
        };
        if avail < need {
            // Ask the frontend to notify us when it posts more, and look again.
            match rx.ring.final_check_for_requests_at_least(need as u32) {
                Ok(true) => continue,
                Ok(false) => {
                    short = true;
                    break;
                }
                Err(_) => {
                    fatal = Some("RX producer index out of range");
                    break;
                }
            }
        }

        let (skb, wake) = {
            let mut rxq = core.rxq.lock();
            let skb = rxq.pop_front();
            (skb, rxq.bytes() < RX_QUEUE_MAX_BYTES / 2)
        };
        let Some(skb) = skb else { break };
        rx.stalled_since = None;
        rx.last_progress = Instant::<Monotonic>::now();
        if rx.stalled {
            set_stalled(core, dev, &mut rx, false);
        }
        if wake {
            if let Some(txq) = dev.tx_queue(u32::from(core.index)) {
                if txq.is_stopped() {
                    txq.wake();
                }
            }
        }
        if skb.len() as usize != len {
            core.to_guest.dropped.inc();
            drop(skb);
            continue;
        }

        // Take the requests (each read once).
        let state = &mut *rx;
        let mut pkt = RxPacket {
            skb,
            len,
            gso,
            hash,
            csum,
            headroom,
            need,
            reqs: [RxRequest::default(); crate::LEGACY_SLOTS_MAX],
        };
        let mut n = 0;
        match state.ring.requests() {
            Ok(it) => {
                for (req, slot) in it.take(need).zip(pkt.reqs.iter_mut()) {
                    *slot = req;
                    n += 1;
                }
            }
            Err(_) => {
                fatal = Some("RX producer index out of range");
                break;
            }
        }
        if n != need {
            fatal = Some("RX requests vanished");
            break;
        }
        sent += 1;
        slots += pkt.nr_data();
        // Flushed when full before, so there is room.
        if let Err(e) = state.pending.push_within_capacity(pkt) {
            // Cannot happen; answered at once then, with an error.
            let pkt = e.0;
            flush(core, state);
            pkt.respond(&mut state.ring, false);
            core.to_guest.dropped.inc();
            notify |= state.ring.push_responses_and_check_notify();
            continue;
        }
        if state.pending.len() >= BATCH_PACKETS || slots >= BATCH_SLOTS {
            flush(core, state);
            slots = 0;
        }
    }
    // The packets taken so far are sent even if the frontend misbehaved since: their requests
    // were valid.
    flush(core, &mut rx);
    let more = sent == MAX_PACKETS_PER_RUN;
    // A frontend that leaves the head packet waiting too long loses what is queued for it
    // (C: `rx_drain_timeout_msecs`).
    let mut drain = false;
    let mut wait_ms = crate::interface::RX_RETRY_MSECS;
    if short && fatal.is_none() {
        let timeout = crate::rx_drain_timeout_msecs();
        match rx.stalled_since {
            None => rx.stalled_since = Some(Instant::<Monotonic>::now()),
            Some(since) if since.elapsed().as_millis() >= i64::from(timeout) => {
                rx.stalled_since = None;
                drain = true;
            }
            Some(_) => {}
        }
        if core.fe.rx_notify {
            // Notified when buffers come; otherwise drained after the timeout.
            wait_ms = timeout;
            // No progress for that long: stalled (C: `xenvif_rx_queue_stalled`; only for
            // frontends that notify, as in C).
            let stall = crate::rx_stall_timeout_msecs();
            if !rx.stalled && rx.last_progress.elapsed().as_millis() >= i64::from(stall) {
                set_stalled(core, dev, &mut rx, true);
            }
            if !rx.stalled {
                wait_ms = wait_ms.min(stall);
            }
        }
    }
    drop(rx);
    if notify {
        core.notify_rx();
    }
    if let Some(what) = fatal {
        core.fatal(dev, fmt!("{what}"));
        return;
    }
    if !more {
        // The RX event (buffers posted) was handled; spurious if there was nothing to send.
        core.eoi_rx(sent == 0 && !short);
    }
    if drain {
        loop {
            // One at a time: never free a packet under the queue lock (XSA-424).
            let skb = core.rxq.lock().pop_front();
            let Some(skb) = skb else { break };
            core.to_guest.dropped.inc();
            drop(skb);
        }
        if let Some(txq) = dev.tx_queue(u32::from(core.index)) {
            txq.wake();
        }
    }
    if more {
        queue.kick_rx();
    } else if short && !drain {
        queue.kick_rx_later(wait_ms);
    }
}

/// Marks the queue stalled or ready; the carrier is off while any queue of the vif is stalled
/// (C: `xenvif_queue_carrier_off`, `xenvif_queue_carrier_on`).
fn set_stalled(
    core: &Core,
    dev: &kernel::net::dev::Device,
    rx: &mut crate::interface::RxState,
    stalled: bool,
) {
    if rx.stalled == stalled {
        return;
    }
    rx.stalled = stalled;
    let name = dev.name().to_str().unwrap_or("vif");
    if stalled {
        if core.shared.stalled.fetch_add(1, Relaxed) == 0 {
            dev.carrier_off();
        }
        pr_err!("{name}: Guest Rx stalled\n");
    } else {
        rx.last_progress = Instant::<Monotonic>::now();
        if core.shared.stalled.fetch_sub(1, Relaxed) == 1 && !core.is_disabled() {
            dev.carrier_on();
        }
        pr_err!("{name}: Guest Rx ready\n");
    }
}

#[kunit_tests(xen_netback_rs_rx)]
mod tests {
    use super::*;
    use crate::interface::FrontendFeatures;

    #[test]
    fn slots() {
        assert_eq!(slots_needed(0, false, 0), 1);
        assert_eq!(slots_needed(60, false, 0), 1);
        assert_eq!(slots_needed(4096, false, 0), 1);
        assert_eq!(slots_needed(4097, false, 0), 2);
        assert_eq!(slots_needed(65535, true, 0), 17);
        // The largest packet sent still fits in the slots a frontend must accept.
        assert!(slots_needed(RX_MAX_PACKET, true, 0) <= crate::LEGACY_SLOTS_MAX);
        // XDP headroom: the first slot holds less, one more slot for the extra.
        assert_eq!(slots_needed(60, false, 256), 2);
        assert_eq!(slots_needed(3840, false, 256), 2);
        assert_eq!(slots_needed(3841, false, 256), 3);
        assert_eq!(slots_needed(3841, true, 256), 4);
        // Without TSO (the vif drops it while a headroom is set) the largest frame still fits.
        assert!(slots_needed(65535, false, 256) <= crate::LEGACY_SLOTS_MAX);
        // An absurd headroom counts as half a page.
        assert_eq!(slots_needed(2048, false, 5000), 2);
    }

    #[test]
    fn gso_translation() {
        let all = FrontendFeatures {
            gso_tcpv4: true,
            gso_tcpv6: true,
            ..Default::default()
        };
        let none = FrontendFeatures::default();
        let g = gso_for(&all, true, 1448, SkbGso::TCPV4 | SkbGso::DODGY).unwrap();
        assert_eq!((g.size(), g.type_()), (1448, GsoType::TcpV4));
        let g = gso_for(&all, true, 1428, SkbGso::TCPV6).unwrap();
        assert_eq!(g.type_(), GsoType::TcpV6);
        assert!(gso_for(&all, false, 1448, SkbGso::TCPV4).is_none());
        assert!(gso_for(&none, true, 1448, SkbGso::TCPV4).is_none());
        assert!(gso_for(&all, true, 0, SkbGso::TCPV4).is_none());
        assert!(gso_for(&all, true, 1448, SkbGso::UDP_L4).is_none());
    }
}
