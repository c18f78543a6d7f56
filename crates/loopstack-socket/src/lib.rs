//! Application sockets for loopstack, and the [`Stack`] that owns one instance of every
//! layer.
//!
//! Poll mode: a simulator or a benchmark owns a [`Stack`], calls [`Stack::poll`] with its
//! own clock, and drives sockets through their handles. Nothing here reads the wall clock,
//! starts a thread, or depends on hash order.

pub mod stack;

pub use stack::{Stack, StackConfig, StackError};
