//! A host: the `lo` device (with whatever middleware the command line asked for) and the
//! internet layer above it, run to completion on each step.
//!
//! This is the small ancestor of the full `Stack` that the socket layer brings: it shows the
//! poll loop's shape. Take a packet off the device, let the internet layer decide, repeat
//! until the device is quiet; then let timers run.

use loopstack_buf::{PacketBuf, PacketPool};
use loopstack_internet::iface::InterfaceId;
use loopstack_internet::layer::{Delivery, Internet, InternetConfig, Links};
use loopstack_link::{Device, DeviceCapabilities, Instant, TxError};

/// The devices of a host, by interface index. Today only `lo`.
pub struct HostLinks {
    /// The `lo` device, possibly wrapped in middleware.
    pub lo: Box<dyn Device>,
}

impl Links for HostLinks {
    fn capabilities(&self, iface: InterfaceId) -> Option<DeviceCapabilities> {
        (iface == InterfaceId::LOOPBACK).then(|| self.lo.capabilities())
    }

    fn transmit(
        &mut self,
        now: Instant,
        iface: InterfaceId,
        packet: PacketBuf,
    ) -> Result<(), TxError> {
        if iface == InterfaceId::LOOPBACK {
            self.lo.transmit(now, packet)
        } else {
            // No other device exists: the packet is dropped like one sent to a missing NIC.
            Err(TxError::Io(std::io::ErrorKind::NotFound))
        }
    }
}

/// `lo` plus the internet layer.
pub struct Host {
    /// The internet layer.
    pub ip: Internet,
    /// The devices.
    pub links: HostLinks,
    /// The buffer pool every layer draws from.
    pub pool: PacketPool,
}

impl Host {
    /// A host on `lo`, which may be a plain `Loopback` or one wrapped in middleware.
    pub fn new(pool: PacketPool, lo: Box<dyn Device>) -> Self {
        Host {
            ip: Internet::new(pool.clone(), InternetConfig::default()),
            links: HostLinks { lo },
            pool,
        }
    }

    /// Runs the host until nothing more is due at `now`: every packet on `lo` goes through
    /// the internet layer (which may send more, answered in the same loop), then timers.
    /// Returns what was delivered for transport, which nobody listens to yet.
    pub fn poll(&mut self, now: Instant) -> Vec<Delivery> {
        let mut delivered = Vec::new();
        while let Some(packet) = self.links.lo.receive(now) {
            if let Some(d) = self
                .ip
                .receive(now, InterfaceId::LOOPBACK, packet, &mut self.links)
            {
                delivered.push(d);
            }
        }
        self.ip.poll(now, &mut self.links);
        delivered
    }

    /// The next time [`poll`](Self::poll) has work, if any.
    pub fn poll_at(&self) -> Option<Instant> {
        match (self.links.lo.poll_at(), self.ip.poll_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
