//! `PageAlignedLarge` as a real global allocator: large blocks start on a page, small ones
//! are the system's, and growing or shrinking a block across the threshold keeps its bytes.

use loopstack_testkit::{PageAlignedLarge, LARGE};

#[global_allocator]
static GLOBAL: PageAlignedLarge = PageAlignedLarge;

const PAGE: usize = 4096;

fn offset(v: &[u8]) -> usize {
    v.as_ptr() as usize % PAGE
}

#[test]
fn large_blocks_start_on_a_page() {
    // Several at once, so that they cannot all be one lucky block reused.
    let blocks: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; LARGE + i * 13]).collect();
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(offset(b), 0, "block {i} of {} bytes", b.len());
        assert!(b.iter().all(|&x| x == i as u8));
    }
    let zeroed = vec![0u8; 3 * LARGE];
    assert_eq!(offset(&zeroed), 0);
    assert!(zeroed.iter().all(|&x| x == 0));
}

#[test]
fn small_blocks_keep_their_own_alignment() {
    let small: Vec<Vec<u8>> = (1..64).map(|n| vec![0u8; n * 16]).collect();
    // The system allocator packs them: not every one on a page.
    assert!(small.iter().any(|b| offset(b) != 0));
    // And a type's own alignment is kept, above the threshold too.
    let words = vec![0u64; LARGE / 8];
    assert_eq!(words.as_ptr() as usize % PAGE, 0);
    let small_words: Box<[u64]> = Box::new([7, 8, 9]);
    assert_eq!(
        small_words.as_ptr() as usize % std::mem::align_of::<u64>(),
        0
    );
}

#[test]
fn growing_and_shrinking_across_the_threshold_keeps_the_bytes() {
    let mut v: Vec<u8> = (0..100u8).collect();
    v.reserve_exact(LARGE);
    assert_eq!(offset(&v), 0, "grown past the threshold");
    assert_eq!(v, (0..100u8).collect::<Vec<_>>());
    v.extend((0..LARGE).map(|i| (i % 251) as u8));
    v.truncate(50);
    v.shrink_to_fit();
    assert_eq!(v, (0..50u8).collect::<Vec<_>>());
    // Large to larger, page-aligned both times.
    let mut w = vec![9u8; LARGE];
    w.reserve_exact(4 * LARGE);
    assert_eq!(offset(&w), 0);
    assert!(w.iter().all(|&x| x == 9));
}
