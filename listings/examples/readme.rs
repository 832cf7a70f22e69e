//! The example of the README's "Use the listings in your own project", word for
//! word (`tests/readme.rs` checks that they stay the same), so that it is
//! compiled with everything else.

use listings::rng::{randn, seeded};

fn main() {
    let w = randn((2, 3), 0.02, &mut seeded(42));
    println!("{w:.4}");
}
