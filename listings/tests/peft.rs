//! The book's LoRA adapters against Hugging Face PEFT's own files.
//!
//! `tests/fixtures/peft/` holds what PEFT 0.21.2 wrote and computed for a
//! tiny GPT-2 (made once by its `make_fixture.py`, in a throwaway Python
//! environment): the base model's weights, PEFT's saved adapter, a
//! hand-written adapter PEFT was shown to load, and the logits of the base,
//! adapted and merged models on one input; and, in `tokens/`, an adapter
//! that also trains two tokens' embedding rows (`trainable_token_indices`).
//! These tests need no Python.

use std::path::{Path, PathBuf};

use listings::finetune::lora::{Lora, LoraConfig, LoraError, Module};
use listings::finetune::peft::{
    CONFIG_FILE, PeftError, TOKENS_TENSOR, WEIGHTS_FILE, load_adapter, save_adapter,
};
use listings::model::{Gpt, GptConfig, GptParams};
use ndarray::{Array2, Array3};
use safetensors::SafeTensors;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap()
}

/// The fixture's model: `GPT2Config(vocab_size=32, n_positions=8, n_embd=16, n_layer=2, n_head=2)`.
fn config() -> GptConfig {
    GptConfig {
        vocab_size: 32,
        block_size: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
    }
}

/// The base model, read by name from PEFT's `base.safetensors`.
fn base() -> Gpt {
    let bytes = std::fs::read(fixture().join("base.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut params = GptParams::zeros(&config());
    for (name, mut tensor) in params.tensors_mut() {
        let view = file
            .tensor(&name)
            .unwrap_or_else(|_| panic!("{name} is in the file"));
        assert_eq!(view.shape(), tensor.shape(), "{name}");
        for (x, b) in tensor.iter_mut().zip(view.data().chunks_exact(4)) {
            *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    assert_eq!(
        file.names().len(),
        params.tensors().len(),
        "no tensor left unread"
    );
    Gpt::from_params(config(), params).unwrap()
}

/// The fixture's input, `[[3, 1, 4, 1, 5, 9, 2, 6]]`.
const INPUT_IDS: [u32; 8] = [3, 1, 4, 1, 5, 9, 2, 6];
/// The token adapter's second input, `[[31, 5, 4, 1, 5, 9, 31, 6]]`: both
/// trainable tokens as inputs too.
const TOKENS_INPUT_IDS: [u32; 8] = [31, 5, 4, 1, 5, 9, 31, 6];

fn logits(gpt: &Gpt) -> Array3<f32> {
    logits_of(gpt, &INPUT_IDS)
}

fn logits_of(gpt: &Gpt, ids: &[u32; 8]) -> Array3<f32> {
    let idx = Array2::from_shape_vec((1, 8), ids.to_vec()).unwrap();
    gpt.forward(&idx, None).unwrap().0
}

fn largest_difference(ours: &Array3<f32>, theirs: &Value) -> f32 {
    let theirs: Vec<f32> = (theirs.as_array().unwrap().iter())
        .flat_map(|b| b.as_array().unwrap().iter())
        .flat_map(|t| t.as_array().unwrap().iter())
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(theirs.len(), ours.len());
    (ours.iter().zip(&theirs)).fold(0.0, |m, (a, b)| m.max((a - b).abs()))
}

#[test]
fn the_base_model_computes_what_transformers_computes() {
    let diff = largest_difference(&logits(&base()), &expected()["logits_base"]);
    println!("base logits: largest difference from transformers' {diff:.2e}");
    assert!(
        diff < 1e-4,
        "largest difference from transformers' logits: {diff}"
    );
}

#[test]
fn peft_s_adapter_loads_and_merged_gives_peft_s_logits() {
    let base = base();
    for dir in [fixture(), fixture().join("minimal")] {
        let lora = load_adapter(&dir, &base).unwrap();
        assert_eq!((lora.config.r, lora.config.alpha), (2, 4.0));
        assert!(lora.config.trainable_tokens.is_empty());
        let adapted: Vec<_> = lora.layers.iter().map(|l| (l.block, l.module)).collect();
        assert_eq!(adapted, [(0, Module::AttnCAttn), (1, Module::AttnCAttn)]);
        let merged = Gpt::from_params(config(), lora.merged(base.params())).unwrap();
        let ours = logits(&merged);
        for key in ["logits_adapter", "logits_merged"] {
            let diff = largest_difference(&ours, &expected()[key]);
            println!(
                "{}: largest difference from PEFT's {key} {diff:.2e}",
                dir.display()
            );
            assert!(
                diff < 1e-4,
                "{}: largest difference from PEFT's {key}: {diff}",
                dir.display()
            );
        }
        // And the adapter matters: the base model's logits are far away.
        assert!(largest_difference(&ours, &expected()["logits_base"]) > 1.0);
    }
}

#[test]
fn what_we_save_is_what_peft_saved() {
    let base = base();
    let lora = load_adapter(&fixture(), &base).unwrap();
    let out = std::env::temp_dir().join(format!("peft-roundtrip-{}", std::process::id()));
    save_adapter(&out, &lora, &base, Some("base.safetensors")).unwrap();
    assert_eq!(load_adapter(&out, &base).unwrap(), lora);

    same_as_peft_s(&out, &fixture());
    std::fs::remove_dir_all(out).unwrap();
}

/// The adapter in `out` has the tensor names, shapes and numbers of PEFT's
/// in `peft`, and the config values PEFT needs.
fn same_as_peft_s(out: &Path, peft: &Path) {
    let read = |dir: &Path| std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let (ours, theirs) = (read(out), read(peft));
    let (ours, theirs) = (
        SafeTensors::deserialize(&ours).unwrap(),
        SafeTensors::deserialize(&theirs).unwrap(),
    );
    let mut names = ours.names();
    names.sort();
    let mut peft_names = theirs.names();
    peft_names.sort();
    assert_eq!(names, peft_names);
    for name in names {
        let (a, b) = (ours.tensor(name).unwrap(), theirs.tensor(name).unwrap());
        assert_eq!((a.shape(), a.data()), (b.shape(), b.data()), "{name}");
    }
    // Every key PEFT needs, with PEFT's values, and the ones it guesses if missing.
    let config = |dir: &Path| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(CONFIG_FILE)).unwrap()).unwrap()
    };
    let (ours, theirs) = (config(out), config(peft));
    for key in [
        "peft_type",
        "r",
        "lora_alpha",
        "target_modules",
        "fan_in_fan_out",
        "task_type",
        "bias",
        "trainable_token_indices",
    ] {
        match (ours[key].as_f64(), theirs[key].as_f64()) {
            (Some(a), Some(b)) => assert_eq!(a, b, "{key}"), // 4.0 and 4 are the same alpha
            _ => assert_eq!(ours[key], theirs[key], "{key}"),
        }
    }
}

/// A copy of PEFT's adapter with `edit` applied to its config, in a
/// folder of its own.
fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    edited_from(&fixture(), name, edit)
}

/// A copy of the adapter in `from` with `edit` applied to its config, in a
/// folder of its own.
fn edited_from(from: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peft-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(from.join(WEIGHTS_FILE), dir.join(WEIGHTS_FILE)).unwrap();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(from.join(CONFIG_FILE)).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dir.join(CONFIG_FILE), config.to_string()).unwrap();
    dir
}

#[test]
fn an_adapter_for_another_base_is_refused_by_name() {
    let wider = GptConfig {
        n_embd: 32,
        ..config()
    };
    let err = load_adapter(&fixture(), &Gpt::new(wider, 0).unwrap()).unwrap_err();
    let PeftError::Lora(LoraError::Shape {
        tensor,
        found,
        expected,
    }) = &err
    else {
        panic!("{err}")
    };
    assert_eq!(
        tensor,
        "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"
    );
    assert_eq!(
        (found.as_slice(), expected.as_slice()),
        (&[2, 16][..], &[2, 32][..])
    );
    assert!(
        err.to_string().contains("lora_A.weight has shape [2, 16]"),
        "{err}"
    );

    let shallower = GptConfig {
        n_layer: 1,
        ..config()
    };
    let err = load_adapter(&fixture(), &Gpt::new(shallower, 0).unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("adapts block 1, but the base model has 1 blocks"),
        "{err}"
    );
}

#[test]
fn what_peft_would_misread_is_refused() {
    // PEFT reads a missing lora_alpha as 8 and gives wrong logits silently.
    let dir = edited("no-alpha", |c| {
        c.as_object_mut().unwrap().remove("lora_alpha");
    });
    let err = load_adapter(&dir, &base()).unwrap_err().to_string();
    assert!(
        err.ends_with("no lora_alpha (PEFT would silently use 8)"),
        "{err}"
    );
    let dir = edited("rank", |c| c["r"] = 4.into());
    let err = load_adapter(&dir, &base()).unwrap_err().to_string();
    assert!(
        err.contains("has shape [2, 16], but the base model's layer needs [4, 16]"),
        "{err}"
    );
    let dir = edited("prefix", |c| c["peft_type"] = "PREFIX_TUNING".into());
    let err = load_adapter(&dir, &base()).unwrap_err().to_string();
    assert!(err.contains("only LORA adapters load here"), "{err}");
    let missing = std::env::temp_dir().join("peft-no-such-adapter");
    let err = load_adapter(&missing, &base()).unwrap_err().to_string();
    assert!(err.contains("adapter_config.json"), "{err}");
}

// ---------------------------------------------------------------- trainable tokens

fn tokens_fixture() -> PathBuf {
    fixture().join("tokens")
}

#[test]
fn peft_s_token_adapter_loads_and_merged_gives_peft_s_logits() {
    let (base, expected) = (base(), expected());
    let expected = &expected["tokens"];
    let lora = load_adapter(&tokens_fixture(), &base).unwrap();
    assert_eq!((lora.config.r, lora.config.alpha), (2, 4.0));
    assert_eq!(lora.config.trainable_tokens, [5, 31]);
    assert_eq!(lora.token_delta.shape(), [2, 16]);
    let adapted: Vec<_> = lora.layers.iter().map(|l| (l.block, l.module)).collect();
    assert_eq!(adapted, [(0, Module::AttnCAttn), (1, Module::AttnCAttn)]);

    // PEFT's tensor holds the new rows; merged, ours are the same numbers.
    let merged = Gpt::from_params(config(), lora.merged(base.params())).unwrap();
    for (i, &id) in [5, 31].iter().enumerate() {
        let theirs: Vec<f32> = (expected["rows_adapter"][i].as_array().unwrap().iter())
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(merged.params().wte.row(id).to_vec(), theirs, "token {id}");
    }

    for (ids, keys) in [
        (&INPUT_IDS, ["logits_adapter", "logits_merged"]),
        (
            &TOKENS_INPUT_IDS,
            ["logits_adapter_tokens_input", "logits_merged_tokens_input"],
        ),
    ] {
        let ours = logits_of(&merged, ids);
        for key in keys {
            let diff = largest_difference(&ours, &expected[key]);
            println!("tokens/: largest difference from PEFT's {key} {diff:.2e}");
            assert!(diff < 1e-4, "largest difference from PEFT's {key}: {diff}");
        }
    }
    // And the tokens matter: without them the logits are far away, at the
    // input (token 31 in) and at the output (its logit, through the tied lm_head).
    let mut without = lora.clone();
    without.config.trainable_tokens.clear();
    without.token_delta = Array2::zeros((0, 16));
    let without = Gpt::from_params(config(), without.merged(base.params())).unwrap();
    for (ids, key) in [
        (&INPUT_IDS, "logits_adapter"),
        (&TOKENS_INPUT_IDS, "logits_adapter_tokens_input"),
    ] {
        let diff = largest_difference(&logits_of(&without, ids), &expected[key]);
        assert!(diff > 1.0, "{key}: {diff}");
    }
}

#[test]
fn what_we_save_with_tokens_is_what_peft_saved() {
    let base = base();
    let lora = load_adapter(&tokens_fixture(), &base).unwrap();
    let out = std::env::temp_dir().join(format!("peft-tokens-roundtrip-{}", std::process::id()));
    save_adapter(&out, &lora, &base, None).unwrap();
    // Exactly: base + (rows - base) gives back PEFT's rows for these numbers.
    assert_eq!(load_adapter(&out, &base).unwrap(), lora);
    same_as_peft_s(&out, &tokens_fixture());
    let config: Value =
        serde_json::from_slice(&std::fs::read(out.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(
        config["trainable_token_indices"],
        serde_json::json!([5, 31])
    );
    std::fs::remove_dir_all(out).unwrap();

    // Without tokens the key is null, as PEFT writes it.
    let out = std::env::temp_dir().join(format!("peft-no-tokens-{}", std::process::id()));
    save_adapter(&out, &load_adapter(&fixture(), &base).unwrap(), &base, None).unwrap();
    let config: Value =
        serde_json::from_slice(&std::fs::read(out.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(config["trainable_token_indices"], Value::Null);
    std::fs::remove_dir_all(out).unwrap();
}

/// PEFT's token adapter with its token tensor replaced by `rows` (shape
/// `shape`), in a folder of its own.
fn with_token_rows(name: &str, shape: &[usize], rows: &[f32]) -> PathBuf {
    let dir = edited_from(&tokens_fixture(), name, |_| {});
    let bytes = std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let new: Vec<u8> = rows.iter().flat_map(|x| x.to_le_bytes()).collect();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = (file.names().into_iter())
        .map(|name| {
            let view = file.tensor(name).unwrap();
            let view = match name == TOKENS_TENSOR {
                true => safetensors::tensor::TensorView::new(view.dtype(), shape.to_vec(), &new)
                    .unwrap(),
                false => view,
            };
            (name.to_string(), view)
        })
        .collect();
    let out = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(dir.join(WEIGHTS_FILE), out).unwrap();
    dir
}

#[test]
fn token_adapters_that_do_not_fit_are_refused_by_name() {
    let base = base();
    let tokens = |name: &str, ids: Value| {
        let dir = edited_from(&tokens_fixture(), name, |c| {
            c["trainable_token_indices"] = ids;
        });
        load_adapter(&dir, &base)
    };
    let shape = |err: PeftError| match err {
        PeftError::Lora(LoraError::Shape {
            tensor,
            found,
            expected,
        }) => (tensor, found, expected),
        err => panic!("{err}"),
    };
    // Rows too short for the model's width.
    let dir = with_token_rows("short-rows", &[2, 8], &[0.5; 16]);
    let err = load_adapter(&dir, &base).unwrap_err();
    println!("{err}");
    let expected = (TOKENS_TENSOR.to_string(), vec![2, 8], vec![2, 16]);
    assert_eq!(shape(err), expected);
    // More ids than rows.
    let err = tokens("three-ids", serde_json::json!([5, 31, 7])).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "trainable_tokens_delta has shape [2, 16], but the base model's layer needs [3, 16]"
        ),
        "{err}"
    );
    // An id outside the vocabulary.
    let err = tokens("outside", serde_json::json!([5, 32])).unwrap_err();
    assert!(
        matches!(
            err,
            PeftError::Lora(LoraError::NoSuchToken {
                id: 32,
                vocab_size: 32
            })
        ),
        "{err}"
    );
    // A token twice.
    let err = tokens("twice", serde_json::json!([5, 5])).unwrap_err();
    assert!(
        matches!(err, PeftError::Lora(LoraError::RepeatedToken { id: 5 })),
        "{err}"
    );
    // Not ids.
    let err = tokens("not-ids", serde_json::json!([5, -1])).unwrap_err();
    assert!(
        err.to_string().contains("holds -1, not a token id"),
        "{err}"
    );
    // Rows PEFT would load silently without the tokens, and tokens without rows.
    let err = tokens("no-ids", Value::Null).unwrap_err();
    assert!(
        err.to_string()
            .contains("lists no trainable_token_indices (PEFT would load the adapter without them"),
        "{err}"
    );
    let err = load_adapter(
        &edited("no-rows", |c| {
            c["trainable_token_indices"] = serde_json::json!([5, 31])
        }),
        &base,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("but there is no {TOKENS_TENSOR}")),
        "{err}"
    );
    // PEFT's other spelling, a map from module to ids: wte (and a tied
    // lm_head with the same ids) reads as the list does; lm_head rows of
    // their own the tied model cannot hold.
    let want = load_adapter(&tokens_fixture(), &base).unwrap();
    for ids in [
        serde_json::json!({"wte": [5, 31]}),
        serde_json::json!({"transformer.wte": [5, 31]}),
        serde_json::json!({"wte": [5, 31], "lm_head": [5, 31]}),
    ] {
        assert_eq!(tokens("map", ids).unwrap(), want);
    }
    for ids in [
        serde_json::json!({"lm_head": [5, 31]}),
        serde_json::json!({"wte": [5, 31], "lm_head": [5]}),
    ] {
        let err = tokens("map", ids.clone()).unwrap_err();
        assert!(matches!(err, PeftError::Config { .. }), "{ids}: {err}");
    }

    // What does not fit is not saved either.
    let out = std::env::temp_dir().join(format!("peft-bad-save-{}", std::process::id()));
    let mut bad = want.clone();
    bad.config.trainable_tokens = vec![5, 32];
    let err = save_adapter(&out, &bad, &base, None).unwrap_err();
    assert!(
        matches!(err, PeftError::Lora(LoraError::NoSuchToken { id: 32, .. })),
        "{err}"
    );
    let mut bad = want.clone();
    bad.token_delta = Array2::zeros((2, 8));
    let err = save_adapter(&out, &bad, &base, None).unwrap_err();
    assert_eq!(
        shape(err),
        (TOKENS_TENSOR.to_string(), vec![2, 8], vec![2, 16])
    );
    assert!(!out.exists(), "nothing written");
}

/// An adapter with trainable tokens made here, saved and loaded back. With
/// `PEFT_FROM_RUST=<folder>` set, the adapter stays in that folder with
/// `rust_logits.json` (the merged model's logits on both inputs), for
/// `tests/fixtures/peft/check_from_rust.py` to load it with PEFT and compare.
#[test]
fn an_adapter_with_tokens_we_save_loads_back() {
    let base = base();
    let lora_config = LoraConfig {
        r: 2,
        alpha: 4.0,
        target_modules: vec!["c_attn".into(), "mlp.c_proj".into()],
        trainable_tokens: vec![31, 5, 20],
    };
    let mut lora = Lora::new(&config(), lora_config, 7).unwrap();
    let mut rng = listings::rng::seeded(8);
    for l in &mut lora.layers {
        l.lora.b = listings::rng::randn(l.lora.b.raw_dim(), 0.5, &mut rng);
    }
    lora.token_delta = listings::rng::randn((3, 16), 0.5, &mut rng);
    let merged = Gpt::from_params(config(), lora.merged(base.params())).unwrap();

    let keep = std::env::var_os("PEFT_FROM_RUST").map(PathBuf::from);
    let out = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("peft-from-rust-{}", std::process::id()))
    });
    save_adapter(&out, &lora, &base, Some("base.safetensors")).unwrap();
    let back = load_adapter(&out, &base).unwrap();
    assert_eq!((&back.config, &back.layers), (&lora.config, &lora.layers));
    let back = Gpt::from_params(config(), back.merged(base.params())).unwrap();
    let mut logits = serde_json::Map::new();
    for (name, ids) in [
        ("input_ids", &INPUT_IDS),
        ("tokens_input_ids", &TOKENS_INPUT_IDS),
    ] {
        let (ours, again) = (logits_of(&merged, ids), logits_of(&back, ids));
        let diff = (ours.iter().zip(&again)).fold(0.0_f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff < 1e-5,
            "{name}: saved and loaded back, the logits moved by {diff}"
        );
        logits.insert(name.into(), serde_json::json!([ids]));
        logits.insert(
            format!("logits_{name}"),
            serde_json::json!(ours.into_raw_vec_and_offset().0),
        );
    }
    match keep {
        Some(dir) => {
            let text = serde_json::to_string(&Value::Object(logits)).unwrap();
            std::fs::write(dir.join("rust_logits.json"), text).unwrap();
            println!("kept the adapter in {}", dir.display());
        }
        None => std::fs::remove_dir_all(out).unwrap(),
    }
}
