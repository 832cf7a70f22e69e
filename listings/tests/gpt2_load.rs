//! Chapter 7: loading a Hugging Face GPT-2 directory, checked against
//! `transformers` itself (the fixture in `tests/fixtures/gpt2`, made by its
//! `make_fixture.py`): both on-disk layouts load, give transformers' logits
//! and its greedy continuation, and every bad input gets a named error.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use listings::checkpoint::{HfError, TensorProblem, load_hf_gpt2};
use listings::model::{Gpt, GptConfig};
use listings::sample::{SampleConfig, generate};
use ndarray::Array2;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use tempfile::TempDir;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2")
}

fn expected() -> Value {
    let text = fs::read_to_string(fixture().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// The largest difference between the model's logits and transformers'.
fn max_logit_diff(gpt: &Gpt) -> f32 {
    let expected = expected();
    let input = ids(&expected["input_ids"][0]);
    let idx = Array2::from_shape_vec((1, input.len()), input).unwrap();
    let (logits, _) = gpt.forward(&idx, None).unwrap(); // (1, T, V)
    let want = &expected["logits"][0];
    assert_eq!(logits.shape(), [1, 8, 96]);
    let mut max = 0.0_f32;
    for (t, row) in want.as_array().unwrap().iter().enumerate() {
        for (v, x) in row.as_array().unwrap().iter().enumerate() {
            max = max.max((logits[[0, t, v]] - x.as_f64().unwrap() as f32).abs());
        }
    }
    max
}

fn greedy(gpt: &Gpt) -> Vec<u32> {
    let expected = expected();
    let config = SampleConfig {
        max_new_tokens: expected["max_new_tokens"].as_u64().unwrap() as usize,
        temperature: 0.0,
        top_k: None,
        seed: 0,
    };
    generate(gpt, &ids(&expected["input_ids"][0]), &config).unwrap()
}

#[test]
fn both_layouts_match_transformers() {
    let expected = expected();
    let want = ids(&expected["generated"][0]);
    let config = GptConfig {
        vocab_size: 96,
        block_size: 16,
        n_layer: 2,
        n_head: 3,
        n_embd: 24,
    };
    let mut loaded = Vec::new();
    for layout in ["saved", "hub"] {
        let gpt = load_hf_gpt2(fixture().join(layout)).unwrap();
        assert_eq!(gpt.config(), &config, "{layout}");
        let diff = max_logit_diff(&gpt);
        eprintln!("{layout}: largest logit difference from transformers {diff:e}");
        assert!(diff < 1e-4, "{layout}: logits differ by {diff}");
        assert_eq!(greedy(&gpt), want, "{layout}: greedy tokens");
        loaded.push(gpt);
    }
    // The same weights, whatever the names.
    assert_eq!(loaded[0].params(), loaded[1].params());
}

/// A copy of one fixture layout in a temporary directory, to damage.
fn copy_of(layout: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixture().join(layout)).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Rewrites `dir/model.safetensors`: `edit` gets every tensor (name, dtype,
/// shape, bytes) and changes the list.
fn rewrite(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .iter()
        .map(|(name, t)| {
            (
                name.to_string(),
                t.dtype(),
                t.shape().to_vec(),
                t.data().to_vec(),
            )
        })
        .collect();
    edit(&mut tensors);
    let views: BTreeMap<String, TensorView> = tensors
        .iter()
        .map(|(name, dtype, shape, data)| {
            let view = TensorView::new(*dtype, shape.clone(), data).unwrap();
            (name.clone(), view)
        })
        .collect();
    fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn edit_config(dir: &Path, key: &str, value: Value) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config[key] = value;
    fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

fn f32_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
    values.into_iter().flat_map(f32::to_le_bytes).collect()
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_of("hub");
    rewrite(dir.path(), |t| {
        t.retain(|(name, ..)| name != "h.1.mlp.c_fc.weight")
    });
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    let HfError::Tensors { problems, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        problems,
        &[TensorProblem::Missing {
            name: "transformer.h.1.mlp.c_fc.weight".into(),
            expected: vec![24, 96],
        }]
    );
    let message = err.to_string();
    assert!(
        message.contains("missing transformer.h.1.mlp.c_fc.weight"),
        "{message}"
    );
    assert!(message.contains("[24, 96]"), "{message}");
}

#[test]
fn wrong_shape_names_both_shapes() {
    let dir = copy_of("saved");
    // c_attn stored the nn.Linear way, (out, in), instead of Conv1D's (in, out).
    rewrite(dir.path(), |t| {
        let c_attn = t
            .iter_mut()
            .find(|(n, ..)| n == "transformer.h.0.attn.c_attn.weight");
        c_attn.unwrap().2 = vec![72, 24];
    });
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, HfError::Tensors { .. }), "{message}");
    assert!(
        message.contains(
            "transformer.h.0.attn.c_attn.weight has shape [72, 24] but the config implies [24, 72]"
        ),
        "{message}"
    );
}

#[test]
fn unknown_tensor_is_named_but_buffers_are_not() {
    let dir = copy_of("hub");
    rewrite(dir.path(), |t| {
        t.push((
            "score.weight".into(),
            Dtype::F32,
            vec![2, 24],
            f32_bytes([0.0; 48]),
        ));
        t.push((
            "h.0.attn.masked_bias".into(),
            Dtype::F32,
            vec![],
            f32_bytes([-1e4]),
        ));
    });
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    let HfError::Tensors { problems, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        problems,
        &[TensorProblem::Unknown {
            name: "score.weight".into(),
            shape: vec![2, 24],
        }]
    );
}

#[test]
fn unsupported_activation_is_refused() {
    let dir = copy_of("saved");
    edit_config(dir.path(), "activation_function", "relu".into());
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    assert!(
        matches!(&err, HfError::Activation { found } if found == "relu"),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("unsupported activation_function \"relu\""),
        "{message}"
    );
    assert!(message.contains("gelu_new"), "{message}");
    // gelu_pytorch_tanh is the same function under another name.
    edit_config(
        dir.path(),
        "activation_function",
        "gelu_pytorch_tanh".into(),
    );
    load_hf_gpt2(dir.path()).unwrap();
}

#[test]
fn other_layer_norm_epsilon_is_refused() {
    let dir = copy_of("saved");
    edit_config(dir.path(), "layer_norm_epsilon", 1e-6.into());
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    assert!(matches!(err, HfError::LayerNormEps { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("unsupported layer_norm_epsilon 0.000001"),
        "{err}"
    );
}

#[test]
fn missing_config_and_weights_are_named() {
    let dir = copy_of("saved");
    fs::remove_file(dir.path().join("config.json")).unwrap();
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    assert!(matches!(err, HfError::NoConfig { .. }), "{err}");
    assert!(err.to_string().contains("has no config.json"), "{err}");

    let dir = copy_of("saved");
    fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    assert!(matches!(err, HfError::NoWeights { .. }), "{err}");
    assert!(
        err.to_string().contains("has no model.safetensors"),
        "{err}"
    );
}

#[test]
fn config_missing_a_size_is_named() {
    let dir = copy_of("saved");
    let path = dir.path().join("config.json");
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("n_head");
    fs::write(&path, config.to_string()).unwrap();
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    assert!(matches!(err, HfError::BadConfig { .. }), "{err}");
    assert!(err.to_string().contains("missing field `n_head`"), "{err}");
}

#[test]
fn lm_head_equal_to_wte_is_accepted_different_is_refused() {
    let dir = copy_of("saved");
    let wte = |t: &Vec<(String, Dtype, Vec<usize>, Vec<u8>)>| {
        t.iter()
            .find(|(n, ..)| n == "transformer.wte.weight")
            .unwrap()
            .clone()
    };
    rewrite(dir.path(), |t| {
        let (_, dtype, shape, data) = wte(t);
        t.push(("lm_head.weight".into(), dtype, shape, data));
    });
    let gpt = load_hf_gpt2(dir.path()).unwrap();
    assert!(max_logit_diff(&gpt) < 1e-4);

    rewrite(dir.path(), |t| {
        let head = t.iter_mut().find(|(n, ..)| n == "lm_head.weight").unwrap();
        head.3[..4].copy_from_slice(&0.25_f32.to_le_bytes());
    });
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    assert!(matches!(err, HfError::UntiedLmHead { .. }), "{err}");
    assert!(
        err.to_string().contains("the book's model ties them"),
        "{err}"
    );
}

#[test]
fn bf16_weights_are_converted() {
    let dir = copy_of("hub");
    // Every F32 tensor to bfloat16 (its top 16 bits, rounding towards zero).
    rewrite(dir.path(), |t| {
        for (_, dtype, _, data) in t.iter_mut() {
            *dtype = Dtype::BF16;
            *data = data.chunks_exact(4).flat_map(|b| [b[2], b[3]]).collect();
        }
    });
    let gpt = load_hf_gpt2(dir.path()).unwrap();
    let exact = load_hf_gpt2(fixture().join("hub")).unwrap();
    for (a, b) in gpt.params().wte.iter().zip(exact.params().wte.iter()) {
        assert_eq!(a.to_bits(), b.to_bits() & 0xffff_0000);
    }
    // bfloat16 keeps about 3 significant digits: close, not equal.
    assert!(max_logit_diff(&gpt) < 0.5);
}

#[test]
fn integer_tensor_is_refused() {
    let dir = copy_of("saved");
    rewrite(dir.path(), |t| {
        let ln = t
            .iter_mut()
            .find(|(n, ..)| n == "transformer.ln_f.bias")
            .unwrap();
        ln.1 = Dtype::I32;
    });
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    assert!(matches!(err, HfError::Dtype { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("transformer.ln_f.bias has dtype I32"),
        "{err}"
    );
}

#[test]
fn config_far_larger_than_the_weights_is_refused_before_allocating() {
    let dir = copy_of("saved");
    edit_config(dir.path(), "n_layer", 1_000_000_000.into());
    let err = load_hf_gpt2(dir.path()).unwrap_err();
    assert!(matches!(err, HfError::BadConfig { .. }), "{err}");
    assert!(
        err.to_string().contains("holds only 17184 numbers"),
        "{err}"
    );
}
