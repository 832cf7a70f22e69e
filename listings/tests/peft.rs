//! The book's LoRA adapters against Hugging Face PEFT's own files.
//!
//! `tests/fixtures/peft/` holds what PEFT 0.21.2 wrote and computed for a
//! tiny GPT-2 (made once by its `make_fixture.py`, in a throwaway Python
//! environment): the base model's weights, PEFT's saved adapter, a
//! hand-written adapter PEFT was shown to load, and the logits of the base,
//! adapted and merged models on one input. These tests need no Python.

use std::path::{Path, PathBuf};

use listings::finetune::lora::{LoraError, Module};
use listings::finetune::peft::{CONFIG_FILE, PeftError, WEIGHTS_FILE, load_adapter, save_adapter};
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

fn logits(gpt: &Gpt) -> Array3<f32> {
    let ids = [3_u32, 1, 4, 1, 5, 9, 2, 6];
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
        let lora = load_adapter(&dir, &config()).unwrap();
        assert_eq!((lora.config.r, lora.config.alpha), (2, 4.0));
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
    let lora = load_adapter(&fixture(), &config()).unwrap();
    let out = std::env::temp_dir().join(format!("peft-roundtrip-{}", std::process::id()));
    save_adapter(&out, &lora, Some("base.safetensors")).unwrap();
    assert_eq!(load_adapter(&out, &config()).unwrap(), lora);

    // The same tensor names, shapes and numbers as PEFT's file.
    let read = |dir: &Path| std::fs::read(dir.join(WEIGHTS_FILE)).unwrap();
    let (ours, theirs) = (read(&out), read(&fixture()));
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
    let (ours, theirs) = (config(&out), config(&fixture()));
    for key in [
        "peft_type",
        "r",
        "lora_alpha",
        "target_modules",
        "fan_in_fan_out",
        "task_type",
        "bias",
    ] {
        match (ours[key].as_f64(), theirs[key].as_f64()) {
            (Some(a), Some(b)) => assert_eq!(a, b, "{key}"), // 4.0 and 4 are the same alpha
            _ => assert_eq!(ours[key], theirs[key], "{key}"),
        }
    }
    std::fs::remove_dir_all(out).unwrap();
}

/// A copy of PEFT's adapter with `edit` applied to its config, in a
/// folder of its own.
fn edited(name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("peft-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture().join(WEIGHTS_FILE), dir.join(WEIGHTS_FILE)).unwrap();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(fixture().join(CONFIG_FILE)).unwrap()).unwrap();
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
    let err = load_adapter(&fixture(), &wider).unwrap_err();
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
    let err = load_adapter(&fixture(), &shallower).unwrap_err();
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
    let err = load_adapter(&dir, &config()).unwrap_err().to_string();
    assert!(
        err.ends_with("no lora_alpha (PEFT would silently use 8)"),
        "{err}"
    );
    let dir = edited("rank", |c| c["r"] = 4.into());
    let err = load_adapter(&dir, &config()).unwrap_err().to_string();
    assert!(
        err.contains("has shape [2, 16], but the base model's layer needs [4, 16]"),
        "{err}"
    );
    let dir = edited("prefix", |c| c["peft_type"] = "PREFIX_TUNING".into());
    let err = load_adapter(&dir, &config()).unwrap_err().to_string();
    assert!(err.contains("only LORA adapters load here"), "{err}");
    let missing = std::env::temp_dir().join("peft-no-such-adapter");
    let err = load_adapter(&missing, &config()).unwrap_err().to_string();
    assert!(err.contains("adapter_config.json"), "{err}");
}
