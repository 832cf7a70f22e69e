//! Seeded randomness: the same numbers on every run, every machine.
//!
//! The book uses one generator, ChaCha8 from `rand`'s `chacha` feature. Its
//! output for a given seed is fixed by its specification, unlike `StdRng` or
//! `SmallRng`, whose algorithms may change between `rand` releases. So a
//! seed written in the book gives the numbers printed in the book.

use ndarray::{Array, ShapeBuilder};
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

// ANCHOR: normal
/// One sample from the normal distribution with the given mean and standard
/// deviation, by the Box-Muller transform: two uniform numbers in, one
/// normal number out.
///
/// ```
/// use listings::rng::{normal, seeded};
/// let mut rng = seeded(0);
/// let xs: Vec<f32> = (0..10_000).map(|_| normal(&mut rng, 0.0, 1.0)).collect();
/// let mean = xs.iter().sum::<f32>() / xs.len() as f32;
/// assert!(mean.abs() < 0.05);
/// ```
pub fn normal(rng: &mut ChaCha8Rng, mean: f32, std: f32) -> f32 {
    // u1 in (0, 1], so its logarithm is finite.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    mean + std * z as f32
}
// ANCHOR_END: normal

// ANCHOR: randn
/// An array of the given shape filled with normal samples (mean 0, standard
/// deviation `std`), in row-major order: the same seed gives the same array.
///
/// ```
/// use listings::rng::{randn, seeded};
/// let w = randn((3, 4), 0.02, &mut seeded(1));
/// assert_eq!(w.shape(), &[3, 4]);
/// ```
pub fn randn<Sh>(shape: Sh, std: f32, rng: &mut ChaCha8Rng) -> Array<f32, Sh::Dim>
where
    Sh: ShapeBuilder,
{
    Array::from_shape_simple_fn(shape, || normal(rng, 0.0, std))
}
// ANCHOR_END: randn

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_other_seed_other_numbers() {
        let a = randn((4, 5), 1.0, &mut seeded(7));
        let b = randn((4, 5), 1.0, &mut seeded(7));
        let c = randn((4, 5), 1.0, &mut seeded(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn normal_samples_have_the_asked_mean_and_std() {
        let mut rng = seeded(3);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| normal(&mut rng, 2.0, 0.5) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 2.0).abs() < 0.01, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.01, "std {}", var.sqrt());
        assert!(xs.iter().all(|x| x.is_finite()));
    }
}
