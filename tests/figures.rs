//! Every figure the book shows exists, and every figure file is shown.
//!
//! Figures are SVG files in `src/figures/`, drawn by `listings` code from a
//! real run; a chapter shows one with `<img src="figures/NAME.svg">`.

use std::collections::BTreeSet;
use std::path::Path;

fn referenced() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir("src").unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("figures/") {
            let rest = &text[i + "figures/".len()..];
            let end = rest.find(['"', ')', '\'', ' ']).unwrap_or(rest.len());
            names.insert(rest[..end].to_string());
        }
    }
    names
}

#[test]
fn every_figure_shown_exists_and_every_figure_file_is_shown() {
    let shown = referenced();
    for name in &shown {
        let path = Path::new("src/figures").join(name);
        let svg = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "the book shows {}, which cannot be read: {e}",
                path.display()
            )
        });
        assert!(
            svg.contains("<svg"),
            "{} is not an SVG file",
            path.display()
        );
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir("src/figures")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let unused: Vec<_> = on_disk.difference(&shown).collect();
    assert!(
        unused.is_empty(),
        "figure files no chapter shows: {unused:?}"
    );
}
