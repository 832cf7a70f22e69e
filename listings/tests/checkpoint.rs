//! Checkpoints: round trips, Hugging Face's GPT-2 layout, atomic writes, and
//! a clear error for every way a file can be wrong.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use listings::checkpoint::{Checkpoint, CheckpointError, FORMAT, TensorProblem, load, save};
use listings::model::{Gpt, GptConfig, GptParams};
use listings::optim::{AdamW, AdamWConfig, Param};
use listings::rng::{randn, seeded};
use listings::tokens::{CharVocab, TextTokenizer};
use ndarray::Array2;
use safetensors::SafeTensors;
use serde_json::json;

const TEXT: &str = "first citizen: before we proceed any further, hear me speak.\n";

fn tokenizer() -> TextTokenizer {
    TextTokenizer::Char(CharVocab::from_text(TEXT).unwrap())
}

fn tiny_config(vocab_size: usize) -> GptConfig {
    GptConfig {
        vocab_size,
        block_size: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 8,
    }
}

/// A tiny model and an AdamW that has taken two steps on random gradients,
/// so that every number of its state is different from its start.
fn trained_pair() -> (Gpt, AdamW) {
    let tok = tokenizer();
    let mut gpt = Gpt::new(tiny_config(tok.vocab_size()), 7).unwrap();
    let mut opt = AdamW::new(AdamWConfig::default());
    let mut rng = seeded(11);
    for _ in 0..2 {
        let grads: Vec<Vec<f32>> = gpt
            .params()
            .tensors()
            .iter()
            .map(|(_, t)| randn(t.len(), 0.1, &mut rng).to_vec())
            .collect();
        let mut params: Vec<Param> = gpt
            .params_mut()
            .tensors_mut()
            .into_iter()
            .zip(&grads)
            .map(|((_, value), grad)| Param {
                decay: value.ndim() == 2,
                value: value.into_slice().unwrap(),
                grad,
            })
            .collect();
        opt.step(&mut params);
    }
    (gpt, opt)
}

fn hparams() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("learning_rate".into(), "0.001".into()),
        ("batch_size".into(), "12".into()),
    ])
}

fn saved(dir: &Path) -> PathBuf {
    let (gpt, opt) = trained_pair();
    let path = dir.join("ckpt.safetensors");
    save(&path, &gpt, &tokenizer(), Some(&opt), 2, &hparams()).unwrap();
    path
}

fn load_err(path: &Path) -> CheckpointError {
    load(path).expect_err("the checkpoint should not load")
}

/// One tensor of a file: name, dtype (as safetensors spells it), shape, bytes.
type RawTensor = (String, String, Vec<usize>, Vec<u8>);

/// A file's tensors, in file order, and its metadata.
fn read_raw(path: &Path) -> (Vec<RawTensor>, HashMap<String, String>) {
    let bytes = fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let tensors = header
        .offset_keys()
        .into_iter()
        .map(|name| {
            let t = file.tensor(&name).unwrap();
            let dtype = serde_json::to_value(t.dtype()).unwrap();
            let dtype = dtype.as_str().unwrap().to_string();
            (name, dtype, t.shape().to_vec(), t.data().to_vec())
        })
        .collect();
    (tensors, header.metadata().clone().unwrap_or_default())
}

/// Writes a safetensors file by hand, with the tensors' data in the order
/// given (the safetensors crate always sorts them by name).
fn write_raw(path: &Path, tensors: &[RawTensor], metadata: Option<&HashMap<String, String>>) {
    let mut header = serde_json::Map::new();
    if let Some(metadata) = metadata {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0;
    for (name, dtype, shape, data) in tensors {
        let end = offset + data.len();
        header.insert(
            name.clone(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&header).unwrap();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    for (_, _, _, data) in tensors {
        bytes.extend(data);
    }
    fs::write(path, bytes).unwrap();
}

/// Rewrites a saved checkpoint after `change` edits its tensors or metadata.
fn tamper(
    path: &Path,
    change: impl FnOnce(&mut Vec<RawTensor>, &mut HashMap<String, String>),
) -> PathBuf {
    let (mut tensors, mut meta) = read_raw(path);
    change(&mut tensors, &mut meta);
    let out = path.with_file_name("tampered.safetensors");
    write_raw(&out, &tensors, Some(&meta));
    out
}

fn same_logits(a: &Gpt, b: &Gpt) {
    let idx = Array2::from_shape_fn((2, 8), |(i, j)| ((i * 5 + j * 3) % 20) as u32);
    let (la, _) = a.forward(&idx, None).unwrap();
    let (lb, _) = b.forward(&idx, None).unwrap();
    let bits = |l: &ndarray::Array3<f32>| l.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&la), bits(&lb), "logits differ after the round trip");
}

#[test]
fn round_trip_keeps_the_model_bit_for_bit_and_the_optimiser_state() {
    let dir = tempfile::tempdir().unwrap();
    let (gpt, opt) = trained_pair();
    let path = dir.path().join("ckpt.safetensors");
    save(&path, &gpt, &tokenizer(), Some(&opt), 2, &hparams()).unwrap();
    let ckpt = load(&path).unwrap();
    assert_eq!(ckpt.gpt.config(), gpt.config());
    assert_eq!(ckpt.gpt.params(), gpt.params());
    same_logits(&ckpt.gpt, &gpt);
    let back = ckpt.optimizer.as_ref().expect("optimiser state was saved");
    assert_eq!(back.config, opt.config);
    assert_eq!(back.t, 2);
    assert_eq!(back.m, opt.m);
    assert_eq!(back.v, opt.v);
    assert_eq!(ckpt.step, 2);
    assert_eq!(ckpt.hparams, hparams());
    assert_eq!(
        ckpt.tokenizer.to_text().unwrap(),
        tokenizer().to_text().unwrap()
    );
    // Saving what was loaded writes the same bytes.
    let again = dir.path().join("again.safetensors");
    ckpt.save(&again).unwrap();
    assert_eq!(fs::read(&path).unwrap(), fs::read(&again).unwrap());
}

#[test]
fn without_optimiser_or_before_its_first_step() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tokenizer();
    let gpt = Gpt::new(tiny_config(tok.vocab_size()), 1).unwrap();
    let path = dir.path().join("a.safetensors");
    save(&path, &gpt, &tok, None, 0, &BTreeMap::new()).unwrap();
    let ckpt = load(&path).unwrap();
    assert!(ckpt.optimizer.is_none() && ckpt.hparams.is_empty());
    let fresh = AdamW::new(AdamWConfig {
        lr: 3e-4,
        ..Default::default()
    });
    save(&path, &gpt, &tok, Some(&fresh), 0, &BTreeMap::new()).unwrap();
    let back = load(&path).unwrap().optimizer.unwrap();
    assert_eq!((back.t, back.config.lr), (0, 3e-4));
    assert!(back.m.is_empty() && back.v.is_empty());
}

#[test]
fn a_bpe_tokenizer_round_trips_too() {
    let dir = tempfile::tempdir().unwrap();
    let bpe = listings::tokens::train_with_endoftext(TEXT, 270);
    let tok = TextTokenizer::Bpe(bpe);
    let gpt = Gpt::new(tiny_config(tok.vocab_size()), 1).unwrap();
    let path = dir.path().join("bpe.safetensors");
    save(&path, &gpt, &tok, None, 5, &BTreeMap::new()).unwrap();
    let ckpt = load(&path).unwrap();
    assert_eq!(ckpt.tokenizer.kind(), "bpe");
    assert_eq!(
        ckpt.tokenizer.encode(TEXT).unwrap(),
        tok.encode(TEXT).unwrap()
    );
}

/// Hugging Face's GPT-2 names and shapes, written out from its scheme.
fn hugging_face_gpt2_layout(c: &GptConfig) -> Vec<(String, Vec<usize>)> {
    let (v, t, n) = (c.vocab_size, c.block_size, c.n_embd);
    let mut out = vec![
        ("transformer.wte.weight".to_string(), vec![v, n]),
        ("transformer.wpe.weight".to_string(), vec![t, n]),
    ];
    for i in 0..c.n_layer {
        let h = |rest: &str, shape: Vec<usize>| (format!("transformer.h.{i}.{rest}"), shape);
        out.extend([
            h("ln_1.weight", vec![n]),
            h("ln_1.bias", vec![n]),
            h("attn.c_attn.weight", vec![n, 3 * n]),
            h("attn.c_attn.bias", vec![3 * n]),
            h("attn.c_proj.weight", vec![n, n]),
            h("attn.c_proj.bias", vec![n]),
            h("ln_2.weight", vec![n]),
            h("ln_2.bias", vec![n]),
            h("mlp.c_fc.weight", vec![n, 4 * n]),
            h("mlp.c_fc.bias", vec![4 * n]),
            h("mlp.c_proj.weight", vec![4 * n, n]),
            h("mlp.c_proj.bias", vec![n]),
        ]);
    }
    out.push(("transformer.ln_f.weight".into(), vec![n]));
    out.push(("transformer.ln_f.bias".into(), vec![n]));
    out
}

#[test]
fn the_layout_is_hugging_faces_gpt2() {
    let config = GptConfig::baby(65);
    let expected = hugging_face_gpt2_layout(&config);
    let specs: Vec<(String, Vec<usize>)> = GptParams::specs(&config)
        .into_iter()
        .map(|s| (s.name, s.shape))
        .collect();
    assert_eq!(specs, expected);

    // And the file holds exactly these, as F32, without lm_head (tied).
    let dir = tempfile::tempdir().unwrap();
    let tok = TextTokenizer::Char(
        CharVocab::from_chars(&(' '..='~').take(65).collect::<Vec<_>>()).unwrap(),
    );
    let gpt = Gpt::new(config, 0).unwrap();
    let path = dir.path().join("baby.safetensors");
    save(&path, &gpt, &tok, None, 0, &BTreeMap::new()).unwrap();
    let (tensors, meta) = read_raw(&path);
    let mut found: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|(name, dtype, shape, _)| {
            assert_eq!(dtype, "F32", "{name}");
            (name.clone(), shape.clone())
        })
        .collect();
    let mut expected = expected;
    found.sort();
    expected.sort();
    assert_eq!(found, expected);
    // Weights are stored as the model holds them: Conv1D's (in, out).
    let c_fc = tensors
        .iter()
        .find(|t| t.0 == "transformer.h.3.mlp.c_fc.weight")
        .unwrap();
    let first = f32::from_le_bytes(c_fc.3[..4].try_into().unwrap());
    let second = f32::from_le_bytes(c_fc.3[4..8].try_into().unwrap());
    let w = &gpt.params().h[3].mlp.c_fc.weight; // (C, 4C)
    assert_eq!((first, second), (w[[0, 0]], w[[0, 1]]));

    let mut keys: Vec<&str> = meta.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "format",
            "listings.config",
            "listings.format",
            "listings.step",
            "listings.tokenizer"
        ]
    );
    assert_eq!(meta["format"], "pt");
    assert_eq!(meta["listings.format"], FORMAT);
    assert_eq!(
        meta["listings.config"],
        r#"{"vocab_size":65,"block_size":64,"n_layer":4,"n_head":4,"n_embd":128}"#
    );
    assert_eq!(meta["listings.step"], "0");
}

#[test]
fn optimiser_tensors_are_named_after_pytorchs_adamw_state() {
    let dir = tempfile::tempdir().unwrap();
    let (tensors, meta) = read_raw(&saved(dir.path()));
    let names: Vec<&str> = tensors.iter().map(|t| t.0.as_str()).collect();
    assert!(names.contains(&"optimizer.exp_avg.transformer.h.1.attn.c_attn.weight"));
    assert!(names.contains(&"optimizer.exp_avg_sq.transformer.wte.weight"));
    assert_eq!(names.len(), 3 * (2 + 2 * 12 + 2));
    let opt: serde_json::Value = serde_json::from_str(&meta["listings.optimizer"]).unwrap();
    assert_eq!(opt["kind"], "AdamW");
    assert_eq!(opt["t"], 2);
    assert_eq!(opt["moments"], true);
    let hp: serde_json::Value = serde_json::from_str(&meta["listings.hparams"]).unwrap();
    assert_eq!(hp["batch_size"], "12");
}

#[test]
fn tensors_are_found_by_name_whatever_their_order_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let reordered = tamper(&path, |tensors, _| tensors.reverse());
    assert_ne!(read_raw(&reordered).0[0].0, read_raw(&path).0[0].0);
    let (a, b) = (load(&path).unwrap(), load(&reordered).unwrap());
    assert_eq!(a.gpt.params(), b.gpt.params());
    assert_eq!(a.optimizer.unwrap().v, b.optimizer.unwrap().v);
}

#[test]
fn a_missing_file_says_so_and_how_to_make_one() {
    let err = load_err(Path::new("/no/such/dir/ckpt.safetensors"));
    assert!(matches!(err, CheckpointError::Missing { .. }));
    assert_eq!(
        err.to_string(),
        "there is no checkpoint at /no/such/dir/ckpt.safetensors; check the path, or train one \
         with `listings train --data FILE --out /no/such/dir/ckpt.safetensors`"
    );
}

#[test]
fn files_that_are_not_safetensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    fs::write(&text, "these are not the weights you are looking for").unwrap();
    let err = load_err(&text);
    assert!(
        matches!(err, CheckpointError::NotSafetensors { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("is not a safetensors file"),
        "{err}"
    );
    let tiny = dir.path().join("tiny");
    fs::write(&tiny, [1, 2, 3]).unwrap();
    let err = load_err(&tiny);
    assert!(
        err.to_string().contains("3 bytes, fewer than the 8"),
        "{err}"
    );
    let folder = load_err(dir.path());
    assert!(matches!(folder, CheckpointError::Read { .. }), "{folder}");
}

#[test]
fn a_truncated_file_gives_its_expected_and_real_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let bytes = fs::read(&path).unwrap();
    for cut in [bytes.len() - 100, 200, 12] {
        let short = dir.path().join("short.safetensors");
        fs::write(&short, &bytes[..cut]).unwrap();
        match load_err(&short) {
            CheckpointError::Truncated {
                expected, found, ..
            } => {
                assert_eq!(found, cut as u64);
                assert!(expected > found);
            }
            other => panic!("cut at {cut}: {other}"),
        }
    }
    let short = dir.path().join("short.safetensors");
    fs::write(&short, &bytes[..bytes.len() - 100]).unwrap();
    let message = load_err(&short).to_string();
    assert!(
        message.contains(&format!(
            "is truncated or damaged: its header describes {} bytes but the file has {}",
            bytes.len(),
            bytes.len() - 100
        )),
        "{message}"
    );
}

#[test]
fn a_safetensors_file_without_our_metadata_is_not_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (tensors, _) = read_raw(&saved(dir.path()));
    let bare = dir.path().join("bare.safetensors");
    write_raw(&bare, &tensors, None);
    let err = load_err(&bare);
    assert!(matches!(err, CheckpointError::NotACheckpoint { .. }));
    assert!(
        err.to_string()
            .contains("not a listings checkpoint: its metadata has no `listings.format` entry"),
        "{err}"
    );
}

#[test]
fn another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = tamper(&saved(dir.path()), |_, meta| {
        meta.insert("listings.format".into(), "listings-gpt 2".into());
    });
    let err = load_err(&path);
    assert!(
        err.to_string().contains(
            "is a checkpoint in format \"listings-gpt 2\", but this code reads \"listings-gpt 1\""
        ),
        "{err}"
    );
}

#[test]
fn bad_metadata_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let huge = r#"{"vocab_size":30,"block_size":8,"n_layer":2000000,"n_head":2,"n_embd":8000000}"#;
    let cases: [(&str, Option<&str>, &str); 7] = [
        (
            "listings.config",
            Some("{\"vocab_size\": 3}"),
            "missing field",
        ),
        (
            "listings.config",
            Some(huge),
            "it implies 1536000208000320000000 parameters but the file holds only 6072 numbers",
        ),
        (
            "listings.config",
            Some(r#"{"vocab_size":30,"block_size":8,"n_layer":2,"n_head":3,"n_embd":8}"#),
            "not divisible by n_head = 3",
        ),
        ("listings.tokenizer", Some("words\nabc"), "found \"words\""),
        ("listings.tokenizer", None, "it is missing"),
        ("listings.step", Some("-1"), "\"-1\": invalid digit"),
        ("listings.optimizer", Some("{}"), "missing field"),
    ];
    for (key, value, expected) in cases {
        let bad = tamper(&path, |_, meta| match value {
            Some(value) => drop(meta.insert(key.into(), value.into())),
            None => drop(meta.remove(key)),
        });
        let err = load_err(&bad);
        let message = err.to_string();
        assert!(
            matches!(err, CheckpointError::BadMetadata { key: k, .. } if k == key),
            "{message}"
        );
        assert!(
            message.contains(&format!("metadata entry `{key}` is invalid")),
            "{message}"
        );
        assert!(message.contains(expected), "{key}: {message}");
    }
}

#[test]
fn missing_unknown_misshapen_and_non_f32_tensors_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = tamper(&saved(dir.path()), |tensors, _| {
        tensors.retain(|t| t.0 != "transformer.h.1.ln_2.bias");
        tensors.push(("lm_head.weight".into(), "F32".into(), vec![1], vec![0; 4]));
        let wpe = tensors
            .iter_mut()
            .find(|t| t.0 == "transformer.wpe.weight")
            .unwrap();
        wpe.2 = vec![4, 16]; // same bytes, other shape
        let ln = tensors
            .iter_mut()
            .find(|t| t.0 == "transformer.ln_f.weight")
            .unwrap();
        ln.1 = "I32".into();
    });
    let CheckpointError::Tensors { problems, .. } = load_err(&path) else {
        panic!("expected a tensor error");
    };
    assert_eq!(
        problems,
        [
            TensorProblem::Shape {
                name: "transformer.wpe.weight".into(),
                expected: vec![8, 8],
                found: vec![4, 16]
            },
            TensorProblem::Missing {
                name: "transformer.h.1.ln_2.bias".into(),
                expected: vec![8]
            },
            TensorProblem::Dtype {
                name: "transformer.ln_f.weight".into(),
                found: "I32".into()
            },
            TensorProblem::Unknown {
                name: "lm_head.weight".into(),
                shape: vec![1]
            },
        ]
    );
    let message = load_err(&path).to_string();
    assert!(message.contains("does not hold the tensors its config implies (vocab_size 25, block_size 8, n_layer 2, n_head 2, n_embd 8):\n"), "{message}");
    for line in [
        "  transformer.wpe.weight has shape [4, 16] but the config implies [8, 8]",
        "  missing transformer.h.1.ln_2.bias (expected F32 [8])",
        "  transformer.ln_f.weight has dtype I32 but must be F32",
        "  unknown tensor lm_head.weight [1]: no parameter of this model has that name",
    ] {
        assert!(message.contains(line), "{message}");
    }
}

#[test]
fn missing_optimiser_tensors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = tamper(&saved(dir.path()), |tensors, _| {
        tensors.retain(|t| !t.0.starts_with("optimizer.exp_avg_sq."));
    });
    let CheckpointError::Tensors { problems, .. } = load_err(&path) else {
        panic!("expected a tensor error");
    };
    assert_eq!(problems.len(), 28);
    assert!(matches!(&problems[0], TensorProblem::Missing { name, .. }
        if name == "optimizer.exp_avg_sq.transformer.wte.weight"));
}

#[test]
fn saving_refuses_inconsistent_state_and_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let before = fs::read(&path).unwrap();
    let (gpt, mut opt) = trained_pair();
    opt.m.pop();
    let err = save(&path, &gpt, &tokenizer(), Some(&opt), 3, &BTreeMap::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the optimiser's state does not match the model: it has 27 m tensors but the model has \
         28 parameter tensors; step the optimiser over GptParams::tensors() in order"
    );
    let big =
        TextTokenizer::Char(CharVocab::from_text("abcdefghijklmnopqrstuvwxyz0123456789").unwrap());
    let err = save(&path, &gpt, &big, None, 3, &BTreeMap::new()).unwrap_err();
    assert!(matches!(
        err,
        CheckpointError::VocabMismatch {
            tokenizer: 36,
            model: 25
        }
    ));
    assert_eq!(fs::read(&path).unwrap(), before);
}

/// The names of the files in `dir`.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_failed_write_leaves_no_trace_and_damages_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (gpt, opt) = trained_pair();
    // The target is a folder: the rename fails, the folder is untouched.
    let folder = dir.path().join("ckpt.safetensors");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("keep"), "x").unwrap();
    let err = save(&folder, &gpt, &tokenizer(), Some(&opt), 1, &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, CheckpointError::Write { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("any checkpoint already there is unchanged")
    );
    assert_eq!(listing(dir.path()), ["ckpt.safetensors"]);
    assert_eq!(listing(&folder), ["keep"]);
    // The folder does not exist: nothing is written anywhere.
    let nowhere = dir.path().join("missing").join("ckpt.safetensors");
    assert!(save(&nowhere, &gpt, &tokenizer(), None, 1, &BTreeMap::new()).is_err());
    assert_eq!(listing(dir.path()), ["ckpt.safetensors"]);
}

/// Asserts that a save failed as it should: a [`CheckpointError::Write`],
/// the old checkpoint at `path` still `before` to the byte, and no file left
/// beside it in its folder (no temporary file).
fn assert_failed_cleanly(result: Result<(), CheckpointError>, path: &Path, before: &[u8]) {
    assert!(
        matches!(result, Err(CheckpointError::Write { .. })),
        "{result:?}"
    );
    assert_eq!(
        fs::read(path).unwrap(),
        before,
        "the old checkpoint changed"
    );
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(listing(path.parent().unwrap()), [name]);
}

#[cfg(unix)]
#[test]
fn saving_where_no_file_can_be_created_fails_and_keeps_the_old_checkpoint() {
    use std::os::unix::fs::PermissionsExt;
    let (gpt, _) = trained_pair();
    let save_again = |path: &Path| save(path, &gpt, &tokenizer(), None, 9, &BTreeMap::new());

    // A checkpoint with the longest name a file may have (255 bytes, on
    // Linux and macOS file systems): its temporary file, whose name adds a
    // dot, the process id and a counter, cannot be created. No user can get
    // round that, root included, so this half runs everywhere. (For the
    // same reason `save` cannot write it: it is saved under a short name,
    // then renamed.)
    let dir = tempfile::tempdir().unwrap();
    let longest = format!("{}.safetensors", "c".repeat(255 - ".safetensors".len()));
    let path = dir.path().join(longest);
    fs::rename(saved(dir.path()), &path).unwrap();
    let before = fs::read(&path).unwrap();
    assert_failed_cleanly(save_again(&path), &path, &before);

    // A read-only folder: the same failure, met more often, but root may
    // write into any folder, so this half is only checked for other users.
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let before = fs::read(&path).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o555)).unwrap();
    let probe = fs::write(dir.path().join("probe"), "x");
    let result = save_again(&path);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    if probe.is_err() {
        assert_failed_cleanly(result, &path, &before);
    }
}

#[test]
fn a_successful_save_replaces_the_old_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = saved(dir.path());
    let tok = tokenizer();
    let other = Gpt::new(tiny_config(tok.vocab_size()), 99).unwrap();
    let checkpoint = Checkpoint {
        gpt: other.clone(),
        tokenizer: tok,
        optimizer: None,
        step: 10,
        hparams: BTreeMap::new(),
    };
    checkpoint.save(&path).unwrap();
    assert_eq!(listing(dir.path()), ["ckpt.safetensors"]);
    let back = load(&path).unwrap();
    assert_eq!(back.gpt.params(), other.params());
    assert!(back.optimizer.is_none());
    assert_eq!(back.step, 10);
    assert!(format!("{back:?}").contains("step: 10"));
}
