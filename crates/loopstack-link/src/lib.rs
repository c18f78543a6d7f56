//! # loopstack-link: devices and link middleware
//!
//! The lowest layer of loopstack that knows about time. It defines:
//!
//! - the [`Device`] trait: transmit a [`PacketBuf`], receive a [`PacketBuf`], report
//!   [`DeviceCapabilities`] and [`LinkStats`];
//! - [`Loopback`], the `lo` device: a bounded ring of packet handles, MTU 65536;
//! - on Linux, [`Tun`], a TUN device: IP packets to and from the kernel's own stack, with a
//!   [`TunSignal`] to sleep on until the kernel has one;
//! - middleware that wraps any `Device` and stacks, as smoltcp's `phy` module does:
//!   [`PcapWriter`] (captures that Wireshark opens), [`FaultInjector`] (seeded drop,
//!   duplicate, reorder, delay and corrupt) and [`Tracer`] (one readable line per packet);
//! - the stack's clock, [`Instant`], and its seedable random numbers, [`Rng`], which every
//!   layer above uses so that a run is reproducible from its inputs and its seed.
//!
//! ```
//! use loopstack_buf::{PacketPool, PoolConfig};
//! use loopstack_link::{Device, FaultConfig, FaultInjector, Instant, Loopback};
//!
//! let pool = PacketPool::new(PoolConfig::default()).unwrap();
//! // A lossy `lo`: the fault injector wraps the loopback device.
//! let faults = FaultConfig { drop: 0.5, ..FaultConfig::default() };
//! let mut dev = FaultInjector::new(Loopback::new(), faults, 42).unwrap();
//! let now = Instant::ZERO;
//! for i in 0..100u8 {
//!     dev.transmit(now, pool.alloc_from_slice(&[i]).unwrap()).unwrap();
//! }
//! let mut received = 0;
//! while dev.receive(now).is_some() {
//!     received += 1;
//! }
//! assert_eq!(received + dev.fault_stats().dropped, 100);
//! ```
//!
//! [`PacketBuf`]: loopstack_buf::PacketBuf

mod device;
mod fault;
mod loopback;
mod pcap;
pub mod rand;
pub mod time;
mod trace;
#[cfg(target_os = "linux")]
mod tun;

#[cfg(target_os = "linux")]
pub use self::tun::{Tun, TunConfig, TunError, TunSignal};
pub use device::{
    ChecksumOffload, Device, DeviceCapabilities, LinkStats, Medium, RxSignal, TxError,
};
pub use fault::{FaultConfig, FaultConfigError, FaultDirection, FaultInjector, FaultStats};
pub use loopback::{Loopback, LoopbackConfig, LoopbackConfigError};
pub use pcap::{PcapMode, PcapWriter, LINKTYPE_RAW};
pub use rand::Rng;
pub use time::Instant;
pub use trace::{format_packet, Tracer};
