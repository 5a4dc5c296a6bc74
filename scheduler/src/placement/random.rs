//! A small per-thread pseudo-random source (xorshift64*) for picks, instance ids and retry
//! jitter. Placement needs cheap, independent streams per scheduler, not cryptography.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // RandomState is seeded from the OS once per process and varies per instance.
    let s = RandomState::new().hash_one(std::thread::current().id());
    s | 1
}

/// The next pseudo-random number of this thread's stream (picks and instance ids).
pub fn next_u64() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A number in `0..n` (`n > 0`); the modulo bias is irrelevant at these sizes.
pub(crate) fn below(n: u64) -> u64 {
    next_u64() % n.max(1)
}
