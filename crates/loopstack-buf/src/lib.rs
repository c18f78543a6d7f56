//! # loopstack-buf: the shared packet buffer pool
//!
//! Every packet in loopstack lives in one [`PacketBuf`] from the moment the sender's bytes are
//! copied in until the receiver copies them out. The buffer comes from a [`PacketPool`] of
//! buffers allocated once, up front; dropping the handle (on any thread) gives the memory back.
//!
//! ```text
//!  storage: [ headroom ............ | packet bytes ........ | tailroom ......... ]
//!            0                      start                   end                 capacity
//!
//!  send:    payload copied in at `start`; UDP prepends 8 bytes, IP prepends 20 or 40,
//!           each into the headroom, so nothing is ever shifted or copied again.
//!  receive: IP strips its header from the front, UDP strips its header, the socket
//!           copies the payload out, and the drop returns the storage to the pool.
//! ```
//!
//! Buffers come in size classes, so a 64-byte ACK does not pin a 64 KiB buffer while a full
//! 65536-byte loopback packet, or the largest reassembled IPv6 packet (40 + 65535 bytes),
//! still fits in one buffer, headroom included. The pool's memory is fixed when it is built
//! ([`PoolConfig::total_bytes`]); when a class runs out, allocation returns
//! [`PoolError::Exhausted`] at once: it never blocks, never grows, never panics.
//!
//! A layer that both receives packets and sends them (UDP, TCP) keeps a [`PoolCache`] in
//! front of the pool: a small, bounded stock of free buffers that it refills with the
//! packets it has read and takes its sends from, so that a steady exchange never takes the
//! pool's lock. The pool's counters include every stock ([`ClassStats::stocked`]).
//!
//! ```
//! use loopstack_buf::{PacketPool, PoolConfig};
//!
//! let pool = PacketPool::new(PoolConfig::default()).unwrap();
//! let mut buf = pool.alloc_from_slice(b"hello").unwrap();   // the one copy in
//! buf.prepend_slice(&[0xAA; 8]).unwrap();                     // a "header", in place
//! assert_eq!(buf.len(), 13);
//! buf.strip_front(8).unwrap();                                // the receiver strips it
//! assert_eq!(buf.as_slice(), b"hello");
//! assert_eq!(pool.stats().in_use(), 1);
//! drop(buf);                                                  // back to the pool
//! assert_eq!(pool.stats().in_use(), 0);
//! ```

mod buf;
mod cache;
mod error;
mod pool;

pub use buf::PacketBuf;
pub use cache::{PoolCache, MAX_STOCK};
pub use error::{BufError, ConfigError, PoolError};
pub use pool::{ClassStats, PacketPool, PoolConfig, PoolStats, SizeClass};
