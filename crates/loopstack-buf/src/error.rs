//! Error types of the buffer pool.

use thiserror::Error;

/// Why [`PacketPool::alloc`](crate::PacketPool::alloc) could not hand out a buffer.
///
/// Both are back-pressure, not bugs: the caller drops the packet and counts it, or reports
/// `WouldBlock` to the application.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// Every buffer of the size class that fits the request is in use.
    #[error(
        "packet buffer pool exhausted: all {count} buffers of the {capacity}-byte class are in use"
    )]
    Exhausted {
        /// Packet capacity of the exhausted class, in bytes.
        capacity: usize,
        /// Number of buffers in that class.
        count: usize,
    },
    /// No size class is large enough for the request.
    #[error("a {requested}-byte packet does not fit any buffer class (the largest holds {largest} bytes)")]
    TooLarge {
        /// Bytes asked for.
        requested: usize,
        /// Packet capacity of the largest class.
        largest: usize,
    },
}

/// Why an edit of a [`PacketBuf`](crate::PacketBuf) was refused. The buffer is unchanged.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BufError {
    /// Not enough headroom in front of the packet to prepend `needed` bytes.
    #[error("cannot prepend {needed} bytes: only {available} bytes of headroom left")]
    NoHeadroom {
        /// Bytes asked for.
        needed: usize,
        /// Headroom left.
        available: usize,
    },
    /// Not enough room behind the packet to append `needed` bytes.
    #[error("cannot append {needed} bytes: only {available} bytes of tailroom left")]
    NoTailroom {
        /// Bytes asked for.
        needed: usize,
        /// Tailroom left.
        available: usize,
    },
    /// The packet is shorter than the number of bytes to strip.
    #[error("cannot strip {needed} bytes from a {len}-byte packet")]
    TooShort {
        /// Bytes asked for.
        needed: usize,
        /// Current packet length.
        len: usize,
    },
    /// [`attach`](crate::PacketBuf::attach) was asked for a range outside the block, or for
    /// a second fragment.
    #[error("cannot attach the fragment: a fragment is already attached or the range is outside the block")]
    FragmentRefused,
}

/// Why a [`PoolConfig`](crate::PoolConfig) was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A pool needs at least one size class.
    #[error("a packet pool needs at least one size class")]
    NoClasses,
    /// Size classes must be listed smallest first, each strictly larger than the one before.
    #[error(
        "size classes must be in strictly increasing order of capacity ({previous} then {next})"
    )]
    UnorderedClasses {
        /// Capacity of the earlier class.
        previous: usize,
        /// Capacity of the class after it.
        next: usize,
    },
    /// A class with no buffers or no capacity is useless and almost certainly a mistake.
    #[error("size class {index} is empty (capacity {capacity}, count {count})")]
    EmptyClass {
        /// Position of the class in the list.
        index: usize,
        /// Its capacity.
        capacity: usize,
        /// Its buffer count.
        count: usize,
    },
    /// The configuration would need more memory than the address space can hold.
    #[error("the pool configuration overflows the address space")]
    TooBig,
}
