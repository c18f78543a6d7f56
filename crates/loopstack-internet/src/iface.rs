//! The interface table. (Being written: more arrives in this file shortly.)

use std::fmt;

/// An interface's index, as Linux numbers them: `lo` is 1, others follow in order of
/// creation. Stable for the life of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceId(pub u32);

impl InterfaceId {
    /// `lo`, always index 1.
    pub const LOOPBACK: InterfaceId = InterfaceId(1);
}

impl fmt::Display for InterfaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
