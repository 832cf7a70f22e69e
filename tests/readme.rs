//! The README's Rust example is `listings/examples/readme.rs`, which
//! `cargo test` and clippy compile: the two must say the same thing.

/// The contents of every ```rust block of `markdown`.
fn rust_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
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
