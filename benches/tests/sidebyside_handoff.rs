//! The two-thread limit (`benches/sidebyside/handoff.rs`) moves chunks whole and in order,
//! however many at a time (its reader checks each chunk's number and last byte, and a
//! transfer panics if one was wrong), and dropping it stops its reader thread (the drop
//! joins it). A yardstick that lost or reordered chunks would mislead the blocking row.

use loopstack_benches::sidebyside::handoff::handoff;
use loopstack_benches::sidebyside::Bulk;

#[test]
fn handoff_moves_every_chunk_in_order() {
    let mut h = handoff();
    // One chunk, fewer than the slots, more than the slots, and a benchmark iteration.
    for chunks in [1, 2, 3, 16, 0, 257] {
        h.transfer(chunks);
    }
    drop(h);
    // A second one after the first is gone: nothing of the first stays in the way.
    handoff().transfer(16);
}
