//! The README's Rust example is `listings/examples/readme.rs`, which
//! `cargo test` and clippy compile: the two must say the same thing.

#[path = "harness/markdown.rs"]
#[allow(dead_code)] // the harness's markdown reader; this test needs its fences only
mod markdown;

/// The contents of every Rust block of `text`.
fn rust_blocks(text: &str) -> Vec<String> {
    let fences = markdown::fences(text).expect("README.md's fences are closed");
    (fences.into_iter())
        .filter(|f| markdown::is_rust(&f.info))
        .map(|f| f.body)
        .collect()
}

#[test]
fn the_readme_example_is_the_compiled_one() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let example = std::fs::read_to_string("listings/examples/readme.rs").unwrap();
    // The example file starts with a comment saying what it is; the code follows.
    let code = example
        .split_once("\n\n")
        .map(|(_, code)| code)
        .expect("a comment, a blank line, then the code");
    let blocks = rust_blocks(&readme);
    assert_eq!(blocks.len(), 1, "the README has one Rust example");
    assert_eq!(
        blocks[0], code,
        "README.md's example and listings/examples/readme.rs differ"
    );
}

#[test]
fn rust_blocks_are_found_and_only_they() {
    let text = "a\n```sh\nls\n```\n```rust\nfn main() {}\n```\n";
    assert_eq!(rust_blocks(text), ["fn main() {}\n"]);
}
