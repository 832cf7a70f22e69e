//! The on-disk cache gives back exactly what was put in, trains only when
//! it must, and survives a damaged file.

use std::cell::Cell;
use std::path::PathBuf;

use lab::book_model::{BookModel, Snapshot, load_book_model, save_book_model};
use lab::cache::{cached_in, key};
use listings::model::{Gpt, GptConfig};
use listings::tokens::{CharVocab, TextTokenizer};
use listings::train::run::{History, TrainConfig};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lab-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small model with random weights and a history of awkward numbers.
fn model() -> BookModel {
    let tokenizer = TextTokenizer::Char(CharVocab::from_text("abc def\n").unwrap());
    let config = GptConfig {
        vocab_size: tokenizer.vocab_size(),
        block_size: 8,
        n_layer: 1,
        n_head: 2,
        n_embd: 8,
    };
    let history = History {
        evals: vec![
            (0, 2.0794415, 2.0794418),
            (5, 0.1 + 0.2, f32::MIN_POSITIVE / 3.0),
        ],
        losses: vec![2.1, 1.0 / 3.0, 1e-30, f32::MAX, 0.0],
        lrs: vec![3e-3, 2.999_999_9e-3, 1e-45, 0.1, 7.0],
        step_ms: 1_234.567_890_123,
    };
    BookModel {
        gpt: Gpt::new(config, 3).unwrap(),
        tokenizer,
        history,
        config: TrainConfig::baby(),
        snapshots: vec![
            Snapshot {
                step: 0,
                val_loss: 2.0794418,
                text: "Once \"upon\"\n\ta time \u{fffd} {}: \\".to_string(),
            },
            Snapshot {
                step: 5,
                val_loss: f32::MIN_POSITIVE / 3.0,
                text: String::new(),
            },
            Snapshot {
                step: 12, // after 5 in step order, before it as text
                val_loss: 0.1 + 0.2,
                text: "snapshot.text.3".to_string(),
            },
        ],
    }
}

fn bits(m: &BookModel) -> Vec<(String, Vec<u32>)> {
    m.gpt
        .params()
        .tensors()
        .into_iter()
        .map(|(name, values)| (name, values.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

#[test]
fn a_saved_book_model_loads_back_to_the_bit() {
    let dir = temp_dir("round-trip");
    let path = dir.join("m");
    let m = model();
    save_book_model(&m, &path).unwrap();
    let back = load_book_model(&path, m.config).unwrap();
    assert_eq!(bits(&back), bits(&m));
    assert_eq!(back.history, m.history);
    assert_eq!(back.snapshots, m.snapshots);
    assert_eq!(back.history.step_ms.to_bits(), m.history.step_ms.to_bits());
    assert_eq!(back.tokenizer.to_text(), m.tokenizer.to_text());
    assert_eq!(back.config, m.config);
}

#[test]
fn trains_once_then_reads_and_retrains_a_damaged_file() {
    let dir = temp_dir("once");
    let trained = Cell::new(0);
    let get = || {
        cached_in(
            &dir,
            "tiny",
            save_book_model,
            |p| load_book_model(p, TrainConfig::baby()),
            || {
                trained.set(trained.get() + 1);
                Ok(model())
            },
        )
        .unwrap()
    };
    let first = get();
    let second = get();
    assert_eq!(trained.get(), 1, "the second call reads the file");
    assert_eq!(bits(&second), bits(&first));
    std::fs::write(dir.join("tiny"), b"not a checkpoint").unwrap();
    let third = get();
    assert_eq!(trained.get(), 2, "a damaged file is trained again");
    assert_eq!(bits(&third), bits(&first));
    get();
    assert_eq!(trained.get(), 2, "and replaced");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["tiny"], "no temporary files left behind");
}

#[test]
fn keys_change_with_the_settings_and_name() {
    let a = key("book-model", &["book_model.rs"], "lr 3e-3");
    assert_eq!(a, key("book-model", &["book_model.rs"], "lr 3e-3"));
    assert_ne!(a, key("book-model", &["book_model.rs"], "lr 1e-3"));
    assert_ne!(
        a,
        key("book-model", &["book_model.rs", "cache.rs"], "lr 3e-3")
    );
    assert!(a.starts_with("book-model-"));
}
