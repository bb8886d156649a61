// SPDX-License-Identifier: GPL-2.0

//! The control ring (beyond the C driver, which has none): Toeplitz RSS towards a backend that
//! offers `feature-ctrl-ring`.
//!
//! Requests are rare (once per connection) and sent one at a time from process context: the
//! sender polls for the answer, with a bound on the wait. Every response is checked against its
//! request (id, type, a known status: [`CtrlResponse::check`]); a backend that breaks the
//! protocol or does not answer loses the control ring, RSS stays off and the data rings keep
//! working.
//!
//! [`CtrlResponse::check`]: kernel::xen::netif::CtrlResponse::check

use kernel::{
    device::Core,
    prelude::*,
    str::CString,
    time::{
        delay::fsleep,
        Delta, //
    },
    xen::{
        evtchn::{
            Eoi,
            Handler,
            Registration,
            UnboundPort, //
        },
        grant::RingPages,
        netif::{
            CtrlArg,
            CtrlFrontRing,
            CtrlRequest,
            CtrlType,
            HashAlgorithm,
            HashTypeFlag, //
        },
        xenbus,
        DomId, //
    },
};

/// Length of the Toeplitz key we set (`XEN_NETBK_MAX_HASH_KEY_SIZE`, the Microsoft RSS key size).
pub(crate) const KEY_LEN: usize = 40;

/// Most entries of the mapping table we set (the C backend's maximum).
pub(crate) const MAX_MAPPING: u32 = 128;

/// How long the backend may take to answer a request.
const TIMEOUT_MS: u32 = 2000;

/// The hash types we ask for: IPv4 and IPv6, with and without the TCP ports.
pub(crate) const WANTED_TYPES: u32 = HashTypeFlag::Ipv4 as u32
    | HashTypeFlag::Ipv4Tcp as u32
    | HashTypeFlag::Ipv6 as u32
    | HashTypeFlag::Ipv6Tcp as u32;

/// The control ring's event channel: the sender polls, events need nothing more than the EOI.
pub(crate) struct CtrlIrq;

impl Handler for CtrlIrq {
    fn handle(&self) -> Eoi {
        Eoi::Done
    }
}

/// The hash types to set from what the backend says it supports (`GET_HASH_FLAGS`): unknown
/// bits are ignored.
pub(crate) fn hash_types(supported: u32) -> Result<u32> {
    match supported & WANTED_TYPES {
        0 => Err(EOPNOTSUPP),
        t => Ok(t),
    }
}

/// The size of the mapping table from the backend's maximum (`GET_HASH_MAPPING_SIZE`).
pub(crate) fn mapping_size(max: u32) -> u32 {
    max.min(MAX_MAPPING)
}

/// The mapping table: entry `i` is queue `i % num_queues`, in native byte order.
pub(crate) fn mapping_table(size: u32, num_queues: u32, out: &mut [u8]) -> Result<usize> {
    let n = size as usize;
    if num_queues == 0 || n * 4 > out.len() {
        return Err(EINVAL);
    }
    for i in 0..n {
        let q = (i as u32) % num_queues;
        out[i * 4..i * 4 + 4].copy_from_slice(&q.to_ne_bytes());
    }
    Ok(n * 4)
}

/// A connected control ring.
pub(crate) struct CtrlRing {
    domid: DomId,
    ring: CtrlFrontRing<RingPages>,
    evt: Pin<KBox<Registration<CtrlIrq>>>,
    next_id: u16,
    broken: bool,
}

impl CtrlRing {
    /// Allocates the ring and its event channel; returns it with the ring reference and the port
    /// to write into xenstore (`ctrl-ring-ref`, `event-channel-ctrl`).
    pub(crate) fn new(dev: &xenbus::Device<Core<'_>>, ifname: &str) -> Result<(Self, u32, u32)> {
        let pages = RingPages::setup(dev, 1)?;
        let gref = pages.grefs()[0].0;
        let ring = CtrlFrontRing::new(pages)?;
        let port = UnboundPort::alloc(dev)?;
        let port_nr = port.port().0;
        let evt = KBox::pin_init(
            Registration::bind(
                port,
                CString::try_from_fmt(fmt!("{ifname}-ctrl"))?,
                Ok::<_, Error>(CtrlIrq),
            ),
            GFP_KERNEL,
        )?;
        Ok((
            Self {
                domid: dev.otherend_id(),
                ring,
                evt,
                next_id: 0,
                broken: false,
            },
            gref,
            port_nr,
        ))
    }

    /// Sends one request and waits for its answer.
    fn request(&mut self, type_: CtrlType, data: [u32; 3]) -> Result<u32> {
        if self.broken {
            return Err(EIO);
        }
        let req = CtrlRequest {
            id: self.next_id,
            type_: type_ as u16,
            data,
        };
        self.next_id = self.next_id.wrapping_add(1);
        self.ring.push_request(req)?;
        if self.ring.push_requests_and_check_notify() {
            self.evt.notifier().notify();
        }
        let mut waited = 0;
        loop {
            let rsp = match self.ring.responses() {
                Err(_) => {
                    self.broken = true;
                    return Err(EPROTO);
                }
                Ok(mut it) => it.next(),
            };
            if let Some(rsp) = rsp {
                let r = rsp.check(&req);
                if r == Err(EPROTO) {
                    self.broken = true;
                }
                return r;
            }
            if waited >= TIMEOUT_MS {
                self.broken = true;
                return Err(ETIMEDOUT);
            }
            fsleep(Delta::from_millis(2));
            waited += 2;
        }
    }

    /// Sets up Toeplitz RSS over `num_queues` queues: algorithm, key, hash types, mapping table.
    /// Returns the hash types set and the size of the table.
    pub(crate) fn setup_rss(&mut self, num_queues: u32) -> Result<(u32, u32)> {
        self.request(
            CtrlType::SetHashAlgorithm,
            [HashAlgorithm::Toeplitz as u32, 0, 0],
        )?;
        let types = hash_types(self.request(CtrlType::GetHashFlags, [0; 3])?)?;
        let mut key = [0u8; KEY_LEN];
        kernel::net::dev::rss_key_fill(&mut key)?;
        let arg = CtrlArg::new(self.domid, &key)?;
        self.request(CtrlType::SetHashKey, [arg.gref().0, KEY_LEN as u32, 0])?;
        drop(arg);
        self.request(CtrlType::SetHashFlags, [types, 0, 0])?;
        let size = mapping_size(self.request(CtrlType::GetHashMappingSize, [0; 3])?);
        self.request(CtrlType::SetHashMappingSize, [size, 0, 0])?;
        if size != 0 {
            let mut table = [0u8; MAX_MAPPING as usize * 4];
            let len = mapping_table(size, num_queues, &mut table)?;
            let arg = CtrlArg::new(self.domid, &table[..len])?;
            self.request(CtrlType::SetHashMapping, [arg.gref().0, size, 0])?;
        }
        Ok((types, size))
    }
}

#[kunit_tests(xen_netfront_rs_ctrl)]
mod tests {
    use super::*;

    #[test]
    fn rss_parameters() {
        assert_eq!(hash_types(0xf), Ok(0xf));
        assert_eq!(hash_types(0xffff_ffff), Ok(0xf));
        assert_eq!(hash_types(0x2), Ok(0x2));
        assert_eq!(hash_types(0x30), Err(EOPNOTSUPP));
        assert_eq!(mapping_size(0), 0);
        assert_eq!(mapping_size(64), 64);
        assert_eq!(mapping_size(u32::MAX), MAX_MAPPING);
        let mut t = [0u8; 512];
        assert_eq!(mapping_table(8, 3, &mut t), Ok(32));
        let q: KVec<u32> = {
            let mut v = KVec::new();
            for c in t[..32].chunks_exact(4) {
                v.push(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]), GFP_KERNEL)
                    .unwrap();
            }
            v
        };
        assert_eq!(&q[..], &[0, 1, 2, 0, 1, 2, 0, 1]);
        assert_eq!(mapping_table(8, 0, &mut t), Err(EINVAL));
        assert_eq!(mapping_table(129, 1, &mut t), Err(EINVAL));
    }
}
