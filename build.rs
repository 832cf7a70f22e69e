//! Turns every Rust block of the book into a module of one test binary.
//!
//! For each ```rust block in `src/**/*.md` (and in the harness's own fixtures,
//! `tests/fixtures/*.md`), this writes a source file to `OUT_DIR/snippets/`
//! whose name carries the markdown file and line, and a registry,
//! `OUT_DIR/snippets.rs`, that `tests/book.rs` includes: one entry per block
//! with its stated output and, when it is to be compiled, the function that
//! runs it. Compiling all snippets as one binary is what keeps the harness
//! fast: one `rustc` invocation instead of one per snippet.
//!
//! Set `BOOK_HARNESS_EXTRA=DIR` to add the markdown files of another folder
//! (used by `cargo xtask bench-harness` to time the harness on generated
//! snippets).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[path = "tests/harness/markdown.rs"]
#[allow(dead_code)]
mod markdown;

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            markdown_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "md") {
            out.push(p);
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=tests/fixtures");
    println!("cargo:rerun-if-changed=listings/src");
    println!("cargo:rerun-if-changed=listings/examples");
    println!("cargo:rerun-if-changed=lab/src");
    println!("cargo:rerun-if-env-changed=BOOK_HARNESS_EXTRA");

    let mut files = Vec::new();
    markdown_files(&root.join("src"), &mut files);
    markdown_files(&root.join("tests/fixtures"), &mut files);
    if let Ok(extra) = std::env::var("BOOK_HARNESS_EXTRA") {
        println!("cargo:rerun-if-changed={extra}");
        markdown_files(Path::new(&extra), &mut files);
    }

    let snippet_dir = out_dir.join("snippets");
    std::fs::create_dir_all(&snippet_dir).unwrap();
    let mut written = std::collections::BTreeSet::new();

    let mut modules = String::new();
    let mut table = String::from("pub static SNIPPETS: &[Snippet] = &[\n");
    let mut n = 0usize;
    for path in files {
        let display = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| fail(&format!("cannot read {display}: {e}")));
        let snippets = markdown::snippets(&display, &path, &text).unwrap_or_else(|e| fail(&e));
        let is_fixture = display.starts_with("tests/fixtures/");
        for s in snippets {
            if s.directive.is_some() && !is_fixture {
                fail(&format!(
                    "{display}:{}: `<!-- harness: ... -->` directives are for tests/fixtures only",
                    s.line
                ));
            }
            let mode = if s.attrs.ignore {
                "Ignore"
            } else if s.attrs.compile_fail {
                "CompileFail"
            } else if s.attrs.no_run {
                "NoRun"
            } else if s.attrs.should_panic {
                "ShouldPanic"
            } else {
                "Run"
            };
            let program = markdown::program(&s);
            let module = format!("s{n:04}");
            let compiled = !(s.attrs.ignore || s.attrs.compile_fail);
            if compiled {
                let slug: String = display
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '-' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                let file = snippet_dir.join(format!("{module}_{slug}_line{}.rs", s.line));
                write_if_changed(&file, &program);
                written.insert(file.clone());
                let _ = writeln!(
                    modules,
                    "#[path = {:?}]\nmod {module};",
                    file.to_string_lossy()
                );
            }
            let run = if compiled {
                format!("Some({module}::__book_snippet)")
            } else {
                "None".into()
            };
            let _ = writeln!(
                table,
                "    Snippet {{ file: {:?}, line: {}, mode: Mode::{mode}, expected: {:?}, \
                 run: {run}, directive: {:?}, program: {:?}, error_codes: &{:?} }},",
                display, s.line, s.expected, s.directive, program, s.attrs.error_codes
            );
            n += 1;
        }
    }
    table.push_str("];\n");
    write_if_changed(&out_dir.join("snippets.rs"), &format!("{modules}\n{table}"));
    // Files of blocks that no longer exist.
    for entry in std::fs::read_dir(&snippet_dir).unwrap().flatten() {
        if !written.contains(&entry.path()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Leaves a file alone when its content is unchanged, so that rustc's
/// incremental cache keeps the snippets that were not edited.
fn write_if_changed(path: &Path, content: &str) {
    if std::fs::read_to_string(path).ok().as_deref() != Some(content) {
        std::fs::write(path, content).unwrap();
    }
}
