//! The harness's rules, tested directly: how stated outputs are compared,
//! and how markdown is read (fences, includes, hidden lines, wrapping).

#[path = "harness/compare.rs"]
mod compare;
#[path = "harness/markdown.rs"]
mod markdown;

use compare::{line_matches, mutants, output_matches};
use std::path::Path;

#[test]
fn decimals_match_within_one_unit_of_the_last_written_digit() {
    assert!(line_matches("0.125", "0.125"));
    assert!(line_matches("0.125", "0.124"));
    assert!(line_matches("0.125", "0.126"));
    assert!(line_matches("0.125", "0.12549"));
    assert!(!line_matches("0.125", "0.127"));
    assert!(!line_matches("0.125", "0.123"));
    assert!(line_matches("1.5", "1.4"));
    assert!(!line_matches("1.5", "1.3"));
    assert!(line_matches("-0.000", "0.000"));
    assert!(line_matches("-2.50", "-2.51"));
    assert!(!line_matches("-2.50", "2.50"));
    // The unit follows the exponent.
    assert!(line_matches("1.5e-3", "1.6e-3"));
    assert!(line_matches("1.5e-3", "0.0014"));
    assert!(!line_matches("1.5e-3", "1.7e-3"));
    // Inside text, and several per line.
    assert!(line_matches("loss 2.31, acc 0.50", "loss 2.32, acc 0.49"));
    assert!(!line_matches("loss 2.31, acc 0.50", "loss 2.32, acc 0.47"));
    assert!(line_matches("[0.10, -0.20]", "[0.11, -0.21]"));
}

#[test]
fn integers_and_text_match_exactly() {
    assert!(!line_matches("42", "43"));
    assert!(!line_matches("42", "41"));
    assert!(!line_matches("step 10", "step 11"));
    assert!(!line_matches("shape [2, 3]", "shape [3, 3]"));
    assert!(!line_matches("ch00", "ch01"));
    assert!(!line_matches("hello", "hallo"));
    assert!(!line_matches("a b", "a  b"));
    // Version-like numbers and numbers glued to words are text.
    assert!(!line_matches("v1.2.3", "v1.2.4"));
    assert!(!line_matches("x1.5", "x1.6"));
    assert!(!line_matches("1.2.3", "1.3.3"));
    // Trailing whitespace does not count; leading whitespace does.
    assert!(line_matches("abc", "abc   "));
    assert!(!line_matches("abc", " abc"));
    // A decimal does not match a non-number.
    assert!(!line_matches("0.5", "NaN"));
}

#[test]
fn ellipsis_in_a_line_matches_any_text_in_that_line_only() {
    assert!(line_matches("took ... ms", "took 12.5 ms"));
    assert!(line_matches("took ... ms", "took  ms"));
    assert!(!line_matches("took ... ms", "took 12 s"));
    assert!(line_matches("...end", "the end"));
    assert!(line_matches("start...", "start and more"));
    assert!(line_matches("a...b...c", "a1b2c"));
    assert!(!line_matches("a...b...c", "a1c2b"));
    assert!(!output_matches("a...b", "a\nb"));
}

#[test]
fn ellipsis_line_matches_any_lines_including_none() {
    assert!(output_matches("a\n...\nd", "a\nb\nc\nd"));
    assert!(output_matches("a\n...\nd", "a\nd"));
    assert!(output_matches("...", ""));
    assert!(output_matches("...", "x\ny"));
    assert!(output_matches("a\n...", "a\nb\nc"));
    assert!(!output_matches("a\n...\nd", "a\nb\nc"));
    assert!(!output_matches("a\n...\nd", "b\nd"));
    // The lines after `...` must still all be there, in order.
    assert!(!output_matches("...\nc\nd", "a\nd\nc"));
}

#[test]
fn lines_must_all_be_there_and_no_more() {
    assert!(output_matches("a\nb", "a\nb\n"));
    assert!(output_matches("a\nb\n\n", "a\nb"));
    assert!(!output_matches("a\nb", "a"));
    assert!(!output_matches("a", "a\nb"));
    assert!(!output_matches("a\nb", "b\na"));
    assert!(!output_matches("a\n\nb", "a\nb"));
    assert!(!output_matches("", "a"));
}

#[test]
fn every_mutant_of_an_output_fails_against_it() {
    let out = "loss 2.3026 at step 0\nshape [12, 64, 128]\nthe cat sat";
    let ms = mutants(out);
    // 5 + 1 + 2 + 2 + 3 digits, 7 words.
    assert_eq!(ms.len(), 13 + 7);
    for (m, what) in ms {
        assert!(!output_matches(&m, out), "{what} still matches");
    }
}

#[test]
fn the_diff_shows_only_real_differences() {
    // A tolerated number and lines absorbed by `...` are not differences.
    let d = compare::diff("loss 0.125\n...\nend\nextra", "loss 0.126\nx\ny\nend");
    assert_eq!(d, " loss 0.126\n x\n y\n end\n-extra\n");
    let d = compare::diff("a\nb", "a\nc");
    assert_eq!(d, " a\n-b\n+c\n");
}

#[test]
fn fixture_directives_are_read_from_the_comment_before_a_fence() {
    let md = "<!-- harness: must-fail does not match -->\n```rust\nlet x = 1;\n```\n";
    let s = markdown::snippets("x.md", Path::new("x.md"), md).unwrap();
    assert_eq!(s[0].directive.as_deref(), Some("must-fail does not match"));
}

#[test]
fn fences_attributes_and_stated_outputs_are_read_as_written() {
    let md = "Text\n\n```rust\nprintln!(\"hi\");\n```\n\n```output\nhi\n```\n\n\
              ```rust,no_run\nloop {}\n```\n\n```text\nnot output\n```\n\n\
              - a list item\n\n  ```rust,compile_fail,E0308\n  let x: u8 = \"\";\n  ```\n";
    let s = markdown::snippets("x.md", Path::new("x.md"), md).unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!(
        (s[0].line, s[0].expected.clone()),
        (3, Some((7, "hi\n".to_string())))
    );
    assert!(s[1].attrs.no_run && s[1].expected.is_none());
    assert!(s[2].attrs.compile_fail);
    assert_eq!(s[2].attrs.error_codes, ["E0308"]);
    assert_eq!(s[2].code, "let x: u8 = \"\";\n");
}

#[test]
fn mistakes_in_the_markdown_are_errors_naming_the_line() {
    let cases = [
        (
            "```\nfn main() {}\n```\n",
            "x.md:1: fence without a language",
        ),
        (
            "```rust,no-run\n```\n",
            "x.md:1: unknown attribute `no-run`",
        ),
        (
            "Words.\n\n```output\nhi\n```\n",
            "x.md:3: an ```output block must directly follow",
        ),
        (
            "```rust\n```\n\nWords.\n\n```output\nhi\n```\n",
            "x.md:6: an ```output block",
        ),
        (
            "```rust,ignore\nlet x = 1;\n```\n",
            "x.md:1: `ignore` is allowed only",
        ),
        (
            "```rust\nuse listings::rng;\n```\n",
            "x.md:1: the snippet uses `listings`",
        ),
        (
            "```rust\n{{#include nowhere.rs}}\n```\n",
            "x.md:1: cannot read",
        ),
        (
            "```rust\nlet x = 1;\n",
            "x.md: line 1: code fence is never closed",
        ),
    ];
    for (md, want) in cases {
        let err = markdown::snippets("x.md", Path::new("x.md"), md).unwrap_err();
        assert!(err.starts_with(want), "{err:?} should start with {want:?}");
    }
}

#[test]
fn includes_follow_mdbook_ranges_and_anchors() {
    let dir = std::env::temp_dir().join(format!("harness-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("f.rs"),
        "l1\n// ANCHOR: a\nl3\n// ANCHOR: b\nl5\n// ANCHOR_END: b\nl7\n// ANCHOR_END: a\nl9\n",
    )
    .unwrap();
    let inc = |arg: &str| markdown::expand_includes(arg, &dir, 0).unwrap();
    assert_eq!(inc("{{#include f.rs:a}}"), "l3\nl5\nl7");
    assert_eq!(inc("{{#include f.rs:b}}"), "l5");
    assert_eq!(inc("{{#include f.rs:3}}"), "l3");
    assert_eq!(inc("{{#include f.rs:3:5}}"), "l3\n// ANCHOR: b\nl5");
    assert_eq!(inc("{{#include f.rs::2}}"), "l1\n// ANCHOR: a");
    assert_eq!(inc("{{#include f.rs:8:}}"), "// ANCHOR_END: a\nl9");
    assert_eq!(
        inc("{{#rustdoc_include f.rs:b}}"),
        "# l1\n# l3\nl5\n# l7\n# l9"
    );
    assert_eq!(
        inc("{{#rustdoc_include f.rs:2:3}}")
            .lines()
            .filter(|l| !l.starts_with("# "))
            .count(),
        2
    );
    assert_eq!(inc("\\{{#include f.rs}}"), "{{#include f.rs}}");
    assert!(
        markdown::expand_includes("{{#include f.rs:zz}}", &dir, 0)
            .unwrap_err()
            .contains("no `ANCHOR: zz`")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hidden_lines_are_compiled_but_not_shown() {
    let code =
        "# use std::fmt;\n#\nlet x = 1;\n    # indented hidden\n## not hidden\n#[derive(Debug)]\n";
    assert_eq!(
        markdown::show_hidden(code),
        "use std::fmt;\n\nlet x = 1;\nindented hidden\n# not hidden\n#[derive(Debug)]\n"
    );
    assert_eq!(
        markdown::visible(code),
        "let x = 1;\n# not hidden\n#[derive(Debug)]\n"
    );
}

#[test]
fn snippets_are_wrapped_as_rustdoc_wraps_them() {
    let snip = |code: &str| markdown::Snippet {
        file: "x.md".into(),
        line: 1,
        attrs: Default::default(),
        code: code.into(),
        expected: None,
        directive: None,
    };
    let p = markdown::program(&snip(
        "#![allow(unused)]\nextern crate listings;\nlet x = 1;\n",
    ));
    assert!(p.contains("#![allow(unused)]\nextern crate listings;\nfn main() {\nlet x = 1;\n}"));
    let p = markdown::program(&snip("fn main() {\n    run();\n}\n"));
    assert!(!p.contains("fn main() {\nfn main"));
    let p = markdown::program(&snip(
        "let n: u8 = \"1\".parse()?;\nOk::<(), std::num::ParseIntError>(())\n",
    ));
    assert!(p.contains("fn _inner() -> ::core::result::Result<(), impl ::core::fmt::Debug>"));
    assert!(markdown::has_main("pub fn main() -> Result<(), E> {}"));
    assert!(!markdown::has_main("fn main_loop() {}"));
    assert!(!markdown::has_main("fn domain() {}"));
}
