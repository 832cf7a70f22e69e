//! Seeded randomness: the same numbers on every run, every machine.
//!
//! The book uses one generator, ChaCha8 from `rand`'s `chacha` feature. Its
//! output for a given seed is fixed by its specification, unlike `StdRng` or
//! `SmallRng`, whose algorithms may change between `rand` releases. So a
//! seed written in the book gives the numbers printed in the book.

pub use rand::RngExt;
use rand::SeedableRng;
pub use rand::rngs::ChaCha8Rng;

// ANCHOR: seeded
/// A ChaCha8 generator started from `seed`.
///
/// ```
/// use listings::rng::{seeded, RngExt};
/// let a: f32 = seeded(42).random();
/// let b: f32 = seeded(42).random();
/// assert_eq!(a, b);
/// ```
pub fn seeded(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}
// ANCHOR_END: seeded
