//! Exporting a model as a Hugging Face GPT-2 folder (`listings::export`),
//! checked against `transformers` itself without Python: the fixture in
//! `tests/fixtures/gpt2-export` holds what the exporter wrote for a small
//! seeded model and its tokenizer, and what transformers computed from
//! those files (made by its `make_fixture.py`). The exporter must still
//! write exactly those files, and the book's logits and token ids must be
//! transformers' ones.
//!
//! To remake the fixture after a deliberate change of the format, run this
//! file's tests with `HF_EXPORT_FIXTURE=write`, which writes the folders,
//! then `make_fixture.py` with a Python that has torch and transformers.

use std::fs;
use std::path::{Path, PathBuf};

use listings::checkpoint::load_hf_gpt2;
use listings::export::{
    CONFIG_FILE, ExportError, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, hf_tokenizer,
    save_hf_gpt2,
};
use listings::model::{Arch, Gpt, GptConfig, GptParams, Positions};
use listings::rng::{normal, seeded};
use listings::sample::{SampleConfig, generate};
use listings::tokens::{BOOK_PATTERN, CharVocab, TextTokenizer, Tokenizer, train_with_endoftext};
use ndarray::Array2;
use serde_json::Value;

/// The text the fixture's tokenizer is trained on: words, numbers long and
/// short, contractions in both cases, runs of spaces and newlines, CRLF, a
/// tab, accents, CJK, an emoji: every branch of the pre-tokenizer pattern.
const FIXTURE_TEXT: &str = "Once upon a time, in 2024, a small model read 1234567 words. \
It didn't stop; we'll see what they've said.\n\n\
The café served naïve crêpes — “really”?\tYes!  Numbers: 3.14159, 42, 1000000.\r\n\
DON'T SHOUT, THEY'LL HEAR. 日本語のテキスト 🙂🙂\n    indented    code_block(x) = x**2\n\
Once upon a time the small model read the words again, and again, and again.\n";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2-export")
}

/// The fixture's byte-level BPE: trained on [`FIXTURE_TEXT`] with the
/// book's pattern, `<|endoftext|>` last.
fn fixture_tokenizer() -> TextTokenizer {
    TextTokenizer::Bpe(train_with_endoftext(FIXTURE_TEXT, 320))
}

/// The fixture's model: seeded, with every number large enough to matter
/// (LayerNorm gains `1 + 0.1·N`, biases `0.1·N`, embeddings `0.5·N`,
/// weights `N/√in`), so that its logits are far apart and a wrong layout
/// or a missing piece moves them visibly.
fn fixture_model(vocab_size: usize) -> Gpt {
    let config = GptConfig {
        vocab_size,
        block_size: 32,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
    };
    let mut params = GptParams::zeros(&config);
    let mut rng = seeded(2024);
    for (name, mut view) in params.tensors_mut() {
        let fan_in = view.shape()[0] as f32;
        let gain = name.contains("ln_") && name.ends_with(".weight");
        let embedding = name.contains("wte") || name.contains("wpe");
        for v in view.iter_mut() {
            let n = normal(&mut rng, 0.0, 1.0);
            *v = match () {
                _ if gain => 1.0 + 0.1 * n,
                _ if name.ends_with(".bias") => 0.1 * n,
                _ if embedding => 0.5 * n,
                _ => n / fan_in.sqrt(),
            };
        }
    }
    Gpt::from_params(config, params).unwrap()
}

/// A tokenizer made by hand in which a pair of tokens spells a token
/// without being the merge that made it: `b`+`c` make `bc` (256), `a`+`b`
/// make `ab` (257), `ab`+`c` make `abc` (258). In `abcd`, `bc` is merged
/// first; then `a`+`bc` spells `abc`, which the book's encoder (tiktoken's
/// rule) merges, and a BPE that only knew the three merges would not.
fn pairs_tokenizer() -> TextTokenizer {
    let merges = [(98, 99), (97, 98), (257, 99)];
    TextTokenizer::Bpe(Tokenizer::from_merges(&merges, BOOK_PATTERN, &[]).unwrap())
}

/// The fixture's character vocabulary: the characters of [`FIXTURE_TEXT`].
fn fixture_chars() -> TextTokenizer {
    TextTokenizer::Char(CharVocab::from_text(FIXTURE_TEXT).unwrap())
}

fn expected() -> Value {
    let path = fixture().join("expected.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    let array = value
        .as_array()
        .unwrap_or_else(|| panic!("not ids: {value}"));
    array.iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

/// Compares the files of `dir` with the fixture folder `name` byte for
/// byte; with `HF_EXPORT_FIXTURE=write`, replaces the fixture's files.
fn same_files(dir: &Path, name: &str) {
    let want_dir = fixture().join(name);
    if std::env::var("HF_EXPORT_FIXTURE").as_deref() == Ok("write") {
        let _ = fs::remove_dir_all(&want_dir);
        fs::create_dir_all(&want_dir).unwrap();
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), want_dir.join(entry.file_name())).unwrap();
        }
        eprintln!("wrote {}; now run make_fixture.py", want_dir.display());
        return;
    }
    let mut found: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    found.sort();
    let mut want: Vec<_> = fs::read_dir(&want_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    want.sort();
    assert_eq!(found, want, "the files written");
    for name in found {
        let (a, b) = (dir.join(&name), want_dir.join(&name));
        assert!(
            fs::read(&a).unwrap() == fs::read(&b).unwrap(),
            "{} differs from {}: the export format changed, and the fixture was checked \
             with transformers for the old one; remake it (see this file's documentation)",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn export_writes_the_files_transformers_was_checked_on() {
    let tokenizer = fixture_tokenizer();
    let gpt = fixture_model(tokenizer.vocab_size());
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("model");
    let files = save_hf_gpt2(&dir, &gpt, Some(&tokenizer)).unwrap();
    assert_eq!(
        files,
        [
            CONFIG_FILE,
            WEIGHTS_FILE,
            TOKENIZER_FILE,
            TOKENIZER_CONFIG_FILE
        ]
    );
    same_files(&dir, "model");

    for (name, tokenizer) in [("chars", fixture_chars()), ("pairs", pairs_tokenizer())] {
        let dir = temp.path().join(name);
        let (json, config) = hf_tokenizer(&tokenizer, 32);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(TOKENIZER_FILE), json).unwrap();
        let config = serde_json::to_string_pretty(&config).unwrap() + "\n";
        fs::write(dir.join(TOKENIZER_CONFIG_FILE), config).unwrap();
        same_files(&dir, name);
    }
}

/// The largest difference between the book's logits and transformers' on
/// the fixture's input, and whether every position's top token agrees.
#[test]
fn book_logits_are_transformers_logits() {
    let expected = expected();
    let tokenizer = fixture_tokenizer();
    let gpt = fixture_model(tokenizer.vocab_size());
    let input = ids(&expected["input_ids"]);
    let t = input.len();
    let idx = Array2::from_shape_vec((1, t), input.clone()).unwrap();
    let (logits, _) = gpt.forward(&idx, None).unwrap(); // (1, T, V)
    let want = expected["logits"].as_array().unwrap();
    assert_eq!(want.len(), t);
    let mut max = 0.0_f32;
    for (p, row) in want.iter().enumerate() {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), gpt.config().vocab_size);
        for (v, x) in row.iter().enumerate() {
            max = max.max((logits[[0, p, v]] - x.as_f64().unwrap() as f32).abs());
        }
    }
    eprintln!("largest logit difference from transformers: {max:.1e}");
    assert!(max < 1e-4, "logits differ from transformers' by {max}");
    let argmax: Vec<u32> = (0..t)
        .map(|p| {
            let row = logits.slice(ndarray::s![0, p, ..]);
            let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1));
            best.unwrap().0 as u32
        })
        .collect();
    assert_eq!(argmax, ids(&expected["argmax"]));
    // Greedy decoding continues the prompt as transformers' generate does.
    let config = SampleConfig {
        max_new_tokens: expected["max_new_tokens"].as_u64().unwrap() as usize,
        temperature: 0.0,
        top_k: None,
        seed: 0,
    };
    let greedy = generate(&gpt, &input, &config).unwrap();
    assert_eq!(greedy, ids(&expected["generated"]));
}

/// transformers' tokenizer, read from the exported `tokenizer.json`, gives
/// the book's ids and decodes them back to the text.
#[test]
fn book_token_ids_are_transformers_token_ids() {
    let expected = expected();
    let TextTokenizer::Bpe(bpe) = fixture_tokenizer() else {
        unreachable!()
    };
    let prompt = expected["prompt"].as_str().unwrap();
    assert_eq!(bpe.encode(prompt), ids(&expected["input_ids"]));
    let texts = expected["texts"].as_array().unwrap();
    assert!(texts.len() >= 8);
    for case in texts {
        let text = case["text"].as_str().unwrap();
        assert_eq!(bpe.encode(text), ids(&case["ids"]), "{text:?}");
        assert_eq!(case["decoded"].as_str(), Some(text), "{text:?}");
    }
    // transformers reads <|endoftext|> in a text as the special token.
    let special = &expected["special"];
    let text = special["text"].as_str().unwrap();
    assert_eq!(bpe.encode_with_special(text), ids(&special["ids"]));
    assert_ne!(bpe.encode(text), ids(&special["ids"]));

    let chars = fixture_chars();
    for case in expected["char_texts"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(chars.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
        assert_eq!(case["decoded"].as_str(), Some(text), "{text:?}");
    }

    let pairs = pairs_tokenizer();
    assert_eq!(pairs.encode("abcd").unwrap(), [258, 100]);
    for case in expected["pair_texts"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(pairs.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
    }
}

/// The fixture's tokenizer has pairs that spell a token without being the
/// merge that made it, so the test above checks that they are merged too.
#[test]
fn fixture_tokenizer_has_extra_pairs() {
    let TextTokenizer::Bpe(bpe) = fixture_tokenizer() else {
        unreachable!()
    };
    let merges = bpe.merges().unwrap().len();
    let json: Value = serde_json::from_str(&hf_tokenizer(&fixture_tokenizer(), 32).0).unwrap();
    let pairs = json["model"]["merges"].as_array().unwrap().len();
    eprintln!("{merges} merges, {pairs} pairs that spell a token");
    assert!(pairs > merges, "{pairs} pairs, {merges} merges");
    check_vocab(&bpe, &json);
}

/// Every ordinary token is in the file's vocabulary with its id.
fn check_vocab(bpe: &Tokenizer, json: &Value) {
    let vocab = json["model"]["vocab"].as_object().unwrap();
    assert_eq!(vocab.len(), bpe.vocab_size());
    let mut seen: Vec<u32> = vocab.values().map(|v| v.as_u64().unwrap() as u32).collect();
    seen.sort();
    assert_eq!(seen, (0..bpe.vocab_size() as u32).collect::<Vec<_>>());
}

#[test]
fn save_then_load_gives_the_same_parameters() {
    let temp = tempfile::tempdir().unwrap();
    let tokenizer = fixture_tokenizer();
    let models = [
        fixture_model(tokenizer.vocab_size()),
        Gpt::new(GptConfig::toy(tokenizer.vocab_size()), 5).unwrap(),
    ];
    for (i, gpt) in models.iter().enumerate() {
        let dir = temp.path().join(format!("m{i}"));
        save_hf_gpt2(&dir, gpt, Some(&tokenizer)).unwrap();
        let back = load_hf_gpt2(&dir).unwrap();
        assert_eq!(back.config(), gpt.config());
        assert_eq!(back.arch(), &Arch::default());
        for ((name, a), (_, b)) in back
            .params()
            .tensors()
            .into_iter()
            .zip(gpt.params().tensors())
        {
            let same = a
                .iter()
                .zip(b.iter())
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{name} changed on the way");
        }
    }
}

#[test]
fn config_is_gpt2s() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("m");
    let tokenizer = fixture_tokenizer();
    let gpt = fixture_model(tokenizer.vocab_size());
    save_hf_gpt2(&dir, &gpt, Some(&tokenizer)).unwrap();
    let config: Value =
        serde_json::from_str(&fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(config["model_type"], "gpt2");
    assert_eq!(config["architectures"][0], "GPT2LMHeadModel");
    assert_eq!(config["activation_function"], "gelu_new");
    assert_eq!(config["layer_norm_epsilon"].as_f64(), Some(1e-5));
    assert_eq!(config["n_positions"], 32);
    assert_eq!(config["n_inner"], Value::Null);
    assert_eq!(config["tie_word_embeddings"], true);
    let end = tokenizer.vocab_size() as u64 - 1; // <|endoftext|> is last
    assert_eq!(config["eos_token_id"].as_u64(), Some(end));
    for key in ["attn_pdrop", "embd_pdrop", "resid_pdrop"] {
        assert_eq!(config[key].as_f64(), Some(0.0), "{key}");
    }
    // Without a tokenizer: no token ids, and only the model's two files.
    let dir = temp.path().join("bare");
    assert_eq!(
        save_hf_gpt2(&dir, &gpt, None).unwrap(),
        [CONFIG_FILE, WEIGHTS_FILE]
    );
    let config: Value =
        serde_json::from_str(&fs::read_to_string(dir.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(config["eos_token_id"], Value::Null);
    assert!(!dir.join(TOKENIZER_FILE).exists());
}

#[test]
fn other_architectures_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let config = GptConfig::toy(20);
    let archs = [
        Arch::with_positions(Positions::Rope),
        Arch::with_positions(Positions::Alibi),
        Arch::with_positions(Positions::Sinusoidal),
        Arch::with_positions(Positions::None),
        Arch {
            mlp: false,
            ..Arch::default()
        },
    ];
    for arch in archs {
        let gpt = Gpt::with_arch(config, arch, 0).unwrap();
        let dir = temp.path().join("m");
        let err = save_hf_gpt2(&dir, &gpt, None).unwrap_err();
        assert!(matches!(err, ExportError::Arch { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&arch.to_string()), "{message}");
        assert!(message.contains("only GPT-2's architecture"), "{message}");
        assert!(!dir.exists(), "nothing is written");
    }
}

/// The names in a folder, hidden ones included, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_folder_with_files_is_refused_an_empty_one_is_filled() {
    let temp = tempfile::tempdir().unwrap();
    let gpt = Gpt::new(GptConfig::toy(20), 0).unwrap();
    let dir = temp.path().join("m");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("notes.txt"), "mine").unwrap();
    let err = save_hf_gpt2(&dir, &gpt, None).unwrap_err();
    assert!(matches!(err, ExportError::NotEmpty { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("is not empty (it holds \"notes.txt\")")
    );
    assert_eq!(listing(&dir), ["notes.txt"]);
    assert_eq!(listing(temp.path()), ["m"], "no temporary folder left");

    fs::remove_file(dir.join("notes.txt")).unwrap();
    save_hf_gpt2(&dir, &gpt, None).unwrap();
    assert_eq!(listing(&dir), [CONFIG_FILE, WEIGHTS_FILE]);
    assert_eq!(listing(temp.path()), ["m"]);
    // A second export onto the first is refused: nothing is replaced.
    let err = save_hf_gpt2(&dir, &gpt, None).unwrap_err();
    assert!(matches!(err, ExportError::NotEmpty { .. }), "{err}");
}

#[test]
fn a_file_or_a_missing_parent_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let gpt = Gpt::new(GptConfig::toy(20), 0).unwrap();
    let file = temp.path().join("model");
    fs::write(&file, "not a folder").unwrap();
    let err = save_hf_gpt2(&file, &gpt, None).unwrap_err();
    assert!(matches!(err, ExportError::NotAFolder { .. }), "{err}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "not a folder");

    let deep = temp.path().join("no/such/folder");
    let err = save_hf_gpt2(&deep, &gpt, None).unwrap_err();
    assert!(matches!(err, ExportError::Write { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("cannot write"), "{message}");
    assert!(message.contains("nothing was written there"), "{message}");
}

#[cfg(unix)]
#[test]
fn an_unwritable_parent_is_an_error_and_leaves_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let parent = temp.path().join("locked");
    fs::create_dir(&parent).unwrap();
    fs::set_permissions(&parent, fs::Permissions::from_mode(0o555)).unwrap();
    if fs::write(parent.join("probe"), "").is_ok() {
        eprintln!("running as root: permissions are not enforced, skipping");
        return;
    }
    let gpt = Gpt::new(GptConfig::toy(20), 0).unwrap();
    let err = save_hf_gpt2(parent.join("m"), &gpt, None).unwrap_err();
    assert!(matches!(err, ExportError::Write { .. }), "{err}");
    assert!(err.to_string().contains("ermission denied"), "{err}");
    assert!(listing(&parent).is_empty());
}

#[test]
fn a_tokenizer_of_another_size_or_nan_weights_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let tokenizer = fixture_tokenizer();
    let gpt = Gpt::new(GptConfig::toy(tokenizer.vocab_size() + 1), 0).unwrap();
    let dir = temp.path().join("m");
    let err = save_hf_gpt2(&dir, &gpt, Some(&tokenizer)).unwrap_err();
    assert!(matches!(err, ExportError::VocabMismatch { .. }), "{err}");
    assert!(!dir.exists());

    let mut gpt = Gpt::new(GptConfig::toy(20), 0).unwrap();
    gpt.params_mut().h[1].mlp.c_fc.weight[[0, 3]] = f32::NAN;
    let err = save_hf_gpt2(&dir, &gpt, None).unwrap_err();
    assert!(matches!(err, ExportError::NonFinite { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("transformer.h.1.mlp.c_fc.weight holds 1 values"),
        "{err}"
    );
    assert!(!dir.exists());
}
