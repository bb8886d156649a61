// SPDX-License-Identifier: GPL-2.0

//! Guest RX: packets from dom0 to the frontend (C: `rx.c`), by grant copy into the buffers the
//! frontend posted, from a worker (process context).
//!
//! The device's transmit path only queues packets (bounded in bytes); the worker takes them one
//! by one (never freeing one under the queue lock), copies each into a local buffer, then
//! grant-copies that into the frontend's pages in one batch.

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
            CopyBatch,
            GrantRef, //
        },
        netif::{
            Checksum,
            Extra,
            ExtraInfo,
            Gso,
            GsoType,
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
    if rx.stalled && matches!(rx.ring.unconsumed_requests(), Ok(n) if n > 0) {
        // The frontend posts buffers again (C: `xenvif_rx_queue_ready`).
        set_stalled(core, dev, &mut rx, false);
    }
    let mut sent = 0;
    let mut notify = false;
    let mut fatal = None;
    let mut short = false;
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

        // Gather the packet; the buffer is freed here, with no lock but the worker's.
        let state = &mut *rx;
        if skb.copy_bits(0, &mut state.buf[..len]).is_err() {
            core.to_guest.dropped.inc();
            drop(skb);
            continue;
        }
        skb.consume();

        // Take the requests (each read once).
        let mut reqs = [RxRequest::default(); crate::LEGACY_SLOTS_MAX];
        let mut n = 0;
        match state.ring.requests() {
            Ok(it) => {
                for req in it.take(need) {
                    reqs[n] = req;
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

        // Data slots: every request but the extras' (after the first one: GSO, hash, then
        // XDP, in the order of their types as in C).
        let nr_extras =
            usize::from(gso.is_some()) + usize::from(hash.is_some()) + usize::from(headroom != 0);
        let data_slot = |i: usize| if i >= 1 { i + nr_extras } else { i };
        let nr_data = need - nr_extras;
        // The first slot's data starts after the headroom the frontend asked for.
        let base = |i: usize| if i == 0 { headroom } else { 0 };
        let mut ok = true;
        {
            let mut batch = CopyBatch::new();
            let mut rest: &[u8] = &state.buf[..len];
            for i in 0..nr_data {
                let req = reqs[data_slot(i)];
                let (mut cur, r) = rest.split_at(rest.len().min(PAGE_SIZE - base(i)));
                rest = r;
                let mut offset = base(i) as u16;
                while !cur.is_empty() {
                    let room = PAGE_SIZE - (cur.as_ptr() as usize % PAGE_SIZE);
                    let k = room.min(cur.len());
                    let (a, b) = cur.split_at(k);
                    if batch
                        .copy_to_peer(a, core.domid, GrantRef(req.gref), offset)
                        .is_err()
                    {
                        ok = false;
                    }
                    offset += k as u16;
                    cur = b;
                }
            }
            batch.submit();
            if (0..batch.len()).any(|i| batch.status(i).is_err()) {
                ok = false;
            }
        }

        // Responses.
        let mut remaining = len;
        for i in 0..nr_data {
            let req = reqs[data_slot(i)];
            let size = remaining.min(PAGE_SIZE - base(i));
            remaining -= size;
            let mut flags = if i == 0 {
                RxFlags::from_checksum(csum)
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
            let _ = state.ring.push_response(RxSlot::from(RxResponse {
                id: req.id,
                offset: base(i) as u16,
                flags,
                status,
            }));
            if i == 0 {
                if let Some(gso) = gso {
                    let extra = ExtraInfo::new(Extra::Gso(gso))
                        .with_more(hash.is_some() || headroom != 0);
                    let _ = state.ring.push_response(RxSlot::from(extra));
                }
                if let Some(hash) = hash {
                    let extra = ExtraInfo::new(Extra::Hash(hash)).with_more(headroom != 0);
                    let _ = state.ring.push_response(RxSlot::from(extra));
                }
                if headroom != 0 {
                    let extra = ExtraInfo::new(Extra::Xdp {
                        headroom: headroom as u16,
                    });
                    let _ = state.ring.push_response(RxSlot::from(extra));
                }
            }
        }
        if ok {
            core.to_guest.packet(len as u32);
        } else {
            core.to_guest.dropped.inc();
        }
        sent += 1;
        notify |= state.ring.push_responses_and_check_notify();
    }
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
