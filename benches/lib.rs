//! Shared fixtures for loopstack's criterion benchmarks (`benches/*.rs`).
//!
//! Run them with `cargo bench -p loopstack-benches`; `cargo test --benches` runs each once
//! as a smoke test (that is what CI does: it never judges a timing).

use loopstack_buf::{PacketBuf, PacketPool, PoolConfig};

pub mod sidebyside;

/// A pool with the default layout.
pub fn default_pool() -> PacketPool {
    PacketPool::new(PoolConfig::default()).expect("the default pool config is valid")
}

/// The bytes of an IPv4/UDP packet from 127.0.0.1:49152 to 127.0.0.1:7 carrying `payload`
/// bytes, with correct checksums: what the link layer sees for a small datagram.
pub fn udp_packet_bytes(payload: usize) -> Vec<u8> {
    let data = vec![0x42u8; payload];
    let builder = etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64).udp(49152, 7);
    let mut out = Vec::with_capacity(builder.size(payload));
    builder
        .write(&mut out, &data)
        .expect("writing into a Vec cannot fail");
    out
}

/// A pooled copy of `bytes`.
pub fn pooled(pool: &PacketPool, bytes: &[u8]) -> PacketBuf {
    pool.alloc_from_slice(bytes).expect("the pool has room")
}
