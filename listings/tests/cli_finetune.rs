//! `listings finetune` and `listings merge-lora`: what each method writes,
//! the merge checked bit for bit against the library's, and every bad input
//! refused with a message naming what is wrong, exit code 1, and `--out`
//! left as it was.

mod common;
use common::{interrupted, listing, listings, refused, text};

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use listings::checkpoint::{self, Checkpoint};
use listings::finetune::peft::{CONFIG_FILE, PREFIX, WEIGHTS_FILE, load_adapter};
use listings::model::{Gpt, GptConfig};
use listings::tokens::{CharVocab, TextTokenizer, train_with_endoftext};
use ndarray::Array2;
use safetensors::SafeTensors;
use serde_json::{Value, json};

/// A command that succeeded: its standard output.
fn ran(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        text(&output.stderr),
        text(&output.stdout)
    );
    text(&output.stdout)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// What the model is asked and answers.
fn qa(i: usize) -> (String, String, String) {
    let (a, b) = (i % 7, i % 5);
    (
        format!("what is {a} plus {b}?"),
        format!("it is {}.", a + b),
        format!("it is {}.", a + b + 1),
    )
}

/// A folder with a small base model (random weights; a BPE tokenizer with
/// <|endoftext|>, 300 ids, trained on text like the records), instruction
/// records and preference records.
struct Setup {
    dir: tempfile::TempDir,
    base: PathBuf,
    chat: PathBuf,
    pref: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut corpus = String::new();
        for i in 0..200 {
            let (q, a, _) = qa(i);
            corpus.push_str(&format!("User: {q}\nAssistant: {a}\n"));
        }
        let tokenizer = TextTokenizer::Bpe(train_with_endoftext(&corpus, 300));
        let base = dir.path().join("base.safetensors");
        save_base(&base, tokenizer, 16);
        let chat = write_jsonl(
            dir.path(),
            "chat.jsonl",
            (0..24).map(|i| {
                let (q, a, _) = qa(i);
                json!({"prompt": q, "response": a})
            }),
        );
        let pref = write_jsonl(
            dir.path(),
            "pref.jsonl",
            (0..24).map(|i| {
                let (q, a, b) = qa(i);
                json!({"prompt": q, "chosen": a, "rejected": b})
            }),
        );
        Setup {
            dir,
            base,
            chat,
            pref,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn names(&self) -> Vec<String> {
        listing(self.dir.path())
    }

    /// `listings finetune --base BASE --data DATA --method METHOD --out OUT`
    /// with a short run, then `extra` (which may replace the run's flags).
    fn finetune(&self, data: &Path, method: &str, out: &Path, extra: &[&str]) -> Output {
        let mut args = vec!["finetune", "--base", s(&self.base), "--data", s(data)];
        args.extend(["--method", method, "--out", s(out)]);
        for (flag, value) in [
            ("--steps", "6"),
            ("--batch-size", "4"),
            ("--log-interval", "2"),
        ] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend(extra);
        listings(&args)
    }
}

/// A random 2-block model of width `n_embd`, context 32, saved at `path`.
fn save_base(path: &Path, tokenizer: TextTokenizer, n_embd: usize) {
    save_model(path, tokenizer, n_embd, 32);
}

fn save_model(path: &Path, tokenizer: TextTokenizer, n_embd: usize, block_size: usize) {
    let config = GptConfig {
        vocab_size: tokenizer.vocab_size(),
        block_size,
        n_layer: 2,
        n_head: 2,
        n_embd,
    };
    let gpt = Gpt::new(config, 7).unwrap();
    checkpoint::save(path, &gpt, &tokenizer, None, 100, &BTreeMap::new()).unwrap();
}

fn write_jsonl(dir: &Path, name: &str, records: impl Iterator<Item = Value>) -> PathBuf {
    let lines: Vec<String> = records.map(|r| r.to_string()).collect();
    let path = dir.join(name);
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn load(path: &Path) -> Checkpoint {
    checkpoint::load(path).unwrap()
}

/// The logits of a few tokens.
fn logits(gpt: &Gpt) -> ndarray::Array3<f32> {
    let idx = Array2::from_shape_vec((1, 6), vec![3_u32, 1, 4, 1, 5, 9]).unwrap();
    gpt.forward(&idx, None).unwrap().0
}

#[test]
fn lora_writes_a_peft_adapter_and_merge_lora_folds_it_in_bit_for_bit() {
    let setup = Setup::new();
    let adapter = setup.path("adapter");
    let extra = ["--rank", "4", "--target-modules", "c_attn,mlp.c_proj"];
    let stdout = ran(&setup.finetune(&setup.chat, "lora", &adapter, &extra));
    for line in [
        "24 instruction records from ",
        "training LoRA adapters (rank 4, alpha 16, 4 layers: c_attn, mlp.c_proj)",
        "step 0: loss ",
        "step 4: loss ",
        "step 5: loss ",
        "mean loss on the data: ",
        "saved the LoRA adapter to ",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in\n{stdout}");
    }
    assert_eq!(listing(&adapter), [CONFIG_FILE, WEIGHTS_FILE]);
    let config: Value =
        serde_json::from_slice(&fs::read(adapter.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(config["lora_alpha"], 16.0);
    assert_eq!(config["target_modules"], json!(["c_attn", "mlp.c_proj"]));
    assert_eq!(config["base_model_name_or_path"], s(&setup.base));
    let bytes = fs::read(adapter.join(WEIGHTS_FILE)).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let names = tensors.names();
    assert_eq!(names.len(), 8, "{names:?}"); // A and B, 2 layers, 2 blocks
    assert!(names.iter().all(|n| n.starts_with(PREFIX)), "{names:?}");
    assert!(names.contains(&"base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight"));

    let merged = setup.path("merged.safetensors");
    let run = listings(&[
        "merge-lora",
        "--base",
        s(&setup.base),
        "--adapter",
        s(&adapter),
        "--out",
        s(&merged),
    ]);
    let stdout = ran(&run);
    assert!(
        stdout.contains("merged 4 adapted layers (attn.c_attn, mlp.c_proj; rank 4, alpha 16")
            && stdout.contains("saved the merged model to "),
        "{stdout}"
    );
    // The file holds exactly what the library merges, and runs the same.
    let base = load(&setup.base);
    let lora = load_adapter(&adapter, &base.gpt).unwrap();
    let expected = Gpt::from_params(*base.gpt.config(), lora.merged(base.gpt.params())).unwrap();
    let got = load(&merged);
    assert!(got.gpt.params() == expected.params(), "not bit for bit");
    assert!(got.gpt.params() != base.gpt.params(), "the adapter trained");
    assert_eq!(logits(&got.gpt), logits(&expected));
    assert_eq!(
        got.tokenizer.to_text().unwrap(),
        base.tokenizer.to_text().unwrap()
    );
    assert!(got.optimizer.is_none());
    assert_eq!(
        setup.names(),
        [
            "adapter",
            "base.safetensors",
            "chat.jsonl",
            "merged.safetensors",
            "pref.jsonl"
        ]
    );
}

#[test]
fn lora_can_train_the_end_token_s_row_and_saves_it_as_peft_does() {
    let setup = Setup::new();
    let adapter = setup.path("adapter");
    let extra = ["--rank", "2", "--train-end-token"];
    let stdout = ran(&setup.finetune(&setup.chat, "lora", &adapter, &extra));
    assert!(
        stdout.contains(
            "(rank 2, alpha 16, 2 layers: c_attn), and the embedding row of <|endoftext|>"
        ),
        "{stdout}"
    );
    let base = load(&setup.base);
    let eot = listings::finetune::chat::end_of_turn(&base.tokenizer).unwrap();
    let config: Value =
        serde_json::from_slice(&fs::read(adapter.join(CONFIG_FILE)).unwrap()).unwrap();
    assert_eq!(config["trainable_token_indices"], json!([eot]));
    let lora = load_adapter(&adapter, &base.gpt).unwrap();
    assert_eq!(lora.config.trainable_tokens, [eot]);
    assert!(
        lora.token_delta.iter().any(|&d| d != 0.0),
        "the row trained"
    );
    // Only with LoRA, and only with the end token.
    let out = setup.path("out");
    let refused_full = refused(&setup.finetune(&setup.chat, "full", &out, &["--train-end-token"]));
    assert!(
        refused_full.contains("--train-end-token applies only to LoRA"),
        "{refused_full}"
    );
    // A step count too large to allocate anything by is not a crash: this
    // run diverges at its first step and says so.
    let huge = ["--steps", "18446744073709551615", "--learning-rate", "1e9"];
    let diverged = refused(&setup.finetune(&setup.chat, "lora", &out, &huge));
    assert!(diverged.contains("diverged"), "{diverged}");
    let both = ["--train-end-token", "--no-end-token"];
    let refused_both = refused(&setup.finetune(&setup.chat, "lora", &out, &both));
    assert!(
        refused_both.contains("cannot go with --no-end-token"),
        "{refused_both}"
    );
    assert!(!out.exists());
}

#[test]
fn full_and_last_block_write_checkpoints_that_load_and_sample() {
    let setup = Setup::new();
    let base = load(&setup.base);
    let full = setup.path("full.safetensors");
    let stdout = ran(&setup.finetune(&setup.chat, "full", &full, &[]));
    assert!(stdout.contains("training every weight: "), "{stdout}");
    assert!(
        stdout.contains("saved the fine-tuned model to "),
        "{stdout}"
    );
    let tuned = load(&full);
    assert_eq!(tuned.gpt.config(), base.gpt.config());
    assert_eq!(
        tuned.tokenizer.to_text().unwrap(),
        base.tokenizer.to_text().unwrap()
    );
    assert_eq!(tuned.step, 106);
    assert_eq!(tuned.hparams["finetune_method"], "full");
    assert!(tuned.gpt.params().wte != base.gpt.params().wte);
    let sample = listings(&[
        "sample",
        "--checkpoint",
        s(&full),
        "--prompt",
        "User: what is 1 plus 2?\\nAssistant:",
        "--max-new-tokens",
        "5",
    ]);
    assert!(ran(&sample).starts_with("User: what is 1 plus 2?\nAssistant:"));

    // The last block alone: the embeddings and the first block are the
    // base's, bit for bit.
    let last = setup.path("last.safetensors");
    let stdout = ran(&setup.finetune(&setup.chat, "last-block", &last, &["--loss-on", "all"]));
    assert!(
        stdout.contains("training the last block and ln_f: ")
            && stdout.contains("on the loss on every token"),
        "{stdout}"
    );
    let (p, b) = (load(&last).gpt.params().clone(), base.gpt.params());
    assert!(p.wte == b.wte && p.wpe == b.wpe && p.h[0] == b.h[0]);
    assert!(p.h[1] != b.h[1] && p.ln_f != b.ln_f);
}

#[test]
fn dpo_starts_at_ln_2_and_writes_a_checkpoint_or_an_adapter() {
    let setup = Setup::new();
    let out = setup.path("dpo.safetensors");
    let stdout = ran(&setup.finetune(&setup.pref, "dpo", &out, &["--beta", "0.5"]));
    let first = stdout.lines().find(|l| l.starts_with("step 0: ")).unwrap();
    let loss: f32 = first["step 0: loss ".len()..]
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((loss - std::f32::consts::LN_2).abs() < 1e-3, "{first}");
    assert!(first.contains("margin 0.0000, accuracy "), "{first}");
    assert!(stdout.contains("24 preference pairs from "), "{stdout}");
    assert!(stdout.contains("on DPO (beta 0.5)"), "{stdout}");
    let tuned = load(&out);
    assert_eq!(tuned.hparams["finetune_objective"], "dpo");
    assert!(tuned.gpt.params() != load(&setup.base).gpt.params());

    let adapter = setup.path("dpo-adapter");
    let extra = ["--dpo-base", "lora", "--rank", "2"];
    let stdout = ran(&setup.finetune(&setup.pref, "dpo", &adapter, &extra));
    assert!(stdout.contains("step 0: loss 0.6931"), "{stdout}");
    assert_eq!(listing(&adapter), [CONFIG_FILE, WEIGHTS_FILE]);
    assert_eq!(
        load_adapter(&adapter, &load(&setup.base).gpt)
            .unwrap()
            .config
            .r,
        2
    );
}

#[test]
fn bad_records_are_refused_naming_the_line() {
    let setup = Setup::new();
    let out = setup.path("out.safetensors");
    let data = setup.path("bad.jsonl");
    let ok = r#"{"prompt": "what is 1 plus 1?", "response": "it is 2."}"#;
    for (content, want) in [
        (
            format!("{ok}\n\n{{\"prompt\": \"a\", \"response\": \"b\"\n"),
            "bad.jsonl: line 3: not a JSON object: EOF while parsing an object",
        ),
        (
            format!("{ok}\n{{\"prompt\": \"a\"}}\n"),
            "bad.jsonl: line 2: missing field `response`",
        ),
        (
            format!("{ok}\n{{\"prompt\": \"a\", \"response\": \" \"}}\n"),
            "line 2: `response` is empty",
        ),
        (
            format!("{ok}\n\"just text\"\n"),
            "line 2: invalid type: string \"just text\", expected struct Instruction",
        ),
        ("\n\n".to_string(), "the data has no records"),
    ] {
        fs::write(&data, content).unwrap();
        let stderr = refused(&setup.finetune(&data, "full", &out, &[]));
        assert!(stderr.contains(want), "{want:?}: {stderr}");
    }
    // Records of the other kind: the error says which kind they are.
    let stderr = refused(&setup.finetune(&setup.chat, "dpo", &out, &[]));
    assert!(
        stderr.contains("chat.jsonl: line 1: unknown field `response`")
            && stderr.contains("these are instruction records (prompt, response), and --method dpo needs preference records"),
        "{stderr}"
    );
    let stderr = refused(&setup.finetune(&setup.pref, "lora", &setup.path("a"), &[]));
    assert!(
        stderr.contains("line 1: unknown field `chosen`")
            && stderr.contains("these are preference records (prompt, chosen, rejected): train on them with --method dpo"),
        "{stderr}"
    );
    // A preference record with a field missing.
    fs::write(&data, r#"{"prompt": "a", "chosen": "b"}"#).unwrap();
    let stderr = refused(&setup.finetune(&data, "dpo", &out, &[]));
    assert!(
        stderr.contains("line 1: missing field `rejected`"),
        "{stderr}"
    );
    assert!(!out.exists());
    assert!(!setup.names().iter().any(|n| n.starts_with('.') || n == "a"));
}

#[test]
fn a_record_longer_than_the_context_is_refused_not_truncated() {
    let setup = Setup::new();
    let out = setup.path("out.safetensors");
    let long = "it is ".repeat(40);
    let data = write_jsonl(
        setup.dir.path(),
        "long.jsonl",
        [
            json!({"prompt": "hi", "response": "ok"}),
            json!({"prompt": "hi", "response": long}),
        ]
        .into_iter(),
    );
    // Blank lines are skipped, so record 2 is on line 2 here ...
    let stderr = refused(&setup.finetune(&data, "full", &out, &[]));
    assert!(
        stderr.contains("long.jsonl, line 2: record 2 is ")
            && stderr.contains(
                "tokens long in the chat template, but the model reads at most 33 (its block \
                 size plus the one token it predicts)"
            ),
        "{stderr}"
    );
    // ... and on line 3 here.
    let content = fs::read_to_string(&data).unwrap().replace('\n', "\n\n");
    fs::write(&data, content).unwrap();
    let stderr = refused(&setup.finetune(&data, "lora", &setup.path("a"), &[]));
    assert!(stderr.contains("line 3: record 2 is "), "{stderr}");
    let pairs = write_jsonl(
        setup.dir.path(),
        "longpref.jsonl",
        [json!({"prompt": "hi", "chosen": "ok", "rejected": long})].into_iter(),
    );
    let stderr = refused(&setup.finetune(&pairs, "dpo", &out, &[]));
    assert!(
        stderr.contains("longpref.jsonl, line 1: record 1 is ")
            && stderr.ends_with("(with its rejected response)\n"),
        "{stderr}"
    );
    assert!(!out.exists() && !setup.path("a").exists());
}

#[test]
fn a_missing_or_unreadable_base_is_refused() {
    let setup = Setup::new();
    let out = setup.path("out.safetensors");
    let run = |base: &Path| {
        listings(&[
            "finetune",
            "--base",
            s(base),
            "--data",
            s(&setup.chat),
            "--method",
            "full",
            "--out",
            s(&out),
        ])
    };
    let stderr = refused(&run(&setup.path("nothing.safetensors")));
    assert!(
        stderr.contains("--base: there is no checkpoint at ")
            && stderr.contains("nothing.safetensors"),
        "{stderr}"
    );
    let stderr = refused(&run(&setup.chat));
    assert!(
        stderr.contains("--base: ") && stderr.contains("chat.jsonl is not a safetensors file"),
        "{stderr}"
    );
    let stderr = refused(&listings(&[
        "merge-lora",
        "--base",
        s(&setup.path("nothing.safetensors")),
        "--adapter",
        s(&setup.path("adapter")),
        "--out",
        s(&out),
    ]));
    assert!(
        stderr.contains("--base: there is no checkpoint at "),
        "{stderr}"
    );
    assert!(!out.exists());
}

#[test]
fn a_character_level_base_has_no_end_token() {
    let setup = Setup::new();
    // A character vocabulary with every character of the records.
    let mut chars = String::new();
    for i in 0..24 {
        let (q, a, b) = qa(i);
        chars.push_str(&format!("User: {q}\nAssistant: {a}{b}"));
    }
    let char_base = setup.path("char.safetensors");
    let vocab = CharVocab::from_text(&chars).unwrap();
    save_model(&char_base, TextTokenizer::Char(vocab), 16, 64);
    let out = setup.path("out.safetensors");
    let mut args = vec![
        "finetune",
        "--base",
        s(&char_base),
        "--data",
        s(&setup.chat),
    ];
    args.extend(["--method", "full", "--out", s(&out), "--steps", "2"]);
    let stderr = refused(&listings(&args));
    assert!(
        stderr.contains(
            "char.safetensors: the tokenizer has no <|endoftext|> token to end a response with"
        ) && stderr.contains("or add --no-end-token"),
        "{stderr}"
    );
    assert!(!out.exists());
    // Without the end token it trains; a character outside the vocabulary
    // is named with its line.
    args.push("--no-end-token");
    ran(&listings(&args));
    assert!(load(&out).tokenizer.kind() == "char");
    let odd = write_jsonl(
        setup.dir.path(),
        "odd.jsonl",
        [json!({"prompt": "what is Z?", "response": "it is 1."})].into_iter(),
    );
    let odd_out = setup.path("odd.safetensors");
    args[4] = s(&odd);
    args[8] = s(&odd_out);
    let stderr = refused(&listings(&args));
    assert!(
        stderr.contains("odd.jsonl, line 1: record 1: character 'Z'"),
        "{stderr}"
    );
    assert!(!odd_out.exists());
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    let setup = Setup::new();
    let out = setup.path("out");
    for (method, extra, want) in [
        (
            "lora",
            &["--rank", "0"][..],
            "--rank 0: LoRA rank r must be at least 1",
        ),
        (
            "lora",
            &["--target-modules", "c_attn,c_fcc"],
            "--target-modules c_attn,c_fcc: no layer of the model is called \"c_fcc\": GPT-2's \
             linear layers are c_attn, c_proj and c_fc",
        ),
        (
            "lora",
            &["--alpha", "0"],
            "--alpha 0: lora_alpha must be a finite number above 0",
        ),
        (
            "full",
            &["--learning-rate", "-1e-3"],
            "--learning-rate -0.001: the learning rate must be a finite number above 0",
        ),
        (
            "full",
            &["--learning-rate", "NaN"],
            "--learning-rate NaN: the learning rate must be",
        ),
        (
            "full",
            &["--grad-clip", "-1"],
            "--grad-clip -1: the clip must be a finite number >= 0",
        ),
        (
            "full",
            &["--steps", "0"],
            "--steps 0: there is nothing to train",
        ),
        (
            "full",
            &["--batch-size", "0"],
            "--batch-size 0: a step needs",
        ),
        (
            "dpo",
            &["--beta", "-0.1"],
            "--beta -0.1: DPO's beta must be",
        ),
        (
            "full",
            &["--rank", "4"],
            "--rank applies only to LoRA: --method lora, or --method dpo --dpo-base lora",
        ),
        (
            "dpo",
            &["--target-modules", "c_fc"],
            "--target-modules applies only to LoRA",
        ),
        (
            "lora",
            &["--beta", "0.2"],
            "--beta is DPO's: it applies only to --method dpo",
        ),
        (
            "dpo",
            &["--loss-on", "all"],
            "--loss-on applies to instruction tuning",
        ),
        (
            "full",
            &["--dpo-base", "lora"],
            "--dpo-base applies only to --method dpo",
        ),
        ("sgd", &[], "invalid value 'sgd' for '--method <METHOD>'"),
        (
            "full",
            &["--loss-on", "prompt"],
            "invalid value 'prompt' for '--loss-on",
        ),
    ] {
        let data = if method == "dpo" {
            &setup.pref
        } else {
            &setup.chat
        };
        let stderr = refused(&setup.finetune(data, method, &out, extra));
        assert!(stderr.contains(want), "{method} {extra:?}: {stderr}");
    }
    assert_eq!(
        setup.names(),
        ["base.safetensors", "chat.jsonl", "pref.jsonl"]
    );
}

#[test]
fn merge_lora_refuses_an_adapter_for_another_base() {
    let setup = Setup::new();
    let adapter = setup.path("adapter");
    ran(&setup.finetune(&setup.chat, "lora", &adapter, &[]));
    // A base of another width, with the same tokenizer.
    let wide = setup.path("wide.safetensors");
    save_base(&wide, load(&setup.base).tokenizer, 32);
    // --out holds a checkpoint of that base, which --overwrite may replace:
    // after the refusal it is still what it was.
    let out = setup.path("merged.safetensors");
    fs::copy(&wide, &out).unwrap();
    let before = fs::read(&out).unwrap();
    let merge = |base: &Path, adapter: &Path| {
        listings(&[
            "merge-lora",
            "--base",
            s(base),
            "--adapter",
            s(adapter),
            "--out",
            s(&out),
            "--overwrite",
        ])
    };
    let stderr = refused(&merge(&wide, &adapter));
    assert!(
        stderr.contains("adapter: the adapter does not fit the base model: ")
            && stderr.contains(
                "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight has shape [8, 16], \
                 but the base model's layer needs [8, 32]"
            ),
        "{stderr}"
    );
    let stderr = refused(&merge(&wide, &setup.path("no-adapter")));
    assert!(
        stderr.contains("no-adapter: there is no folder there"),
        "{stderr}"
    );
    // A damaged adapter: the weights file names itself.
    fs::write(adapter.join(WEIGHTS_FILE), b"not safetensors").unwrap();
    let stderr = refused(&merge(&wide, &adapter));
    assert!(
        stderr.contains("adapter_model.safetensors: not a safetensors file"),
        "{stderr}"
    );
    assert_eq!(fs::read(&out).unwrap(), before);
    assert!(!setup.names().iter().any(|n| n.starts_with('.')));
}

#[test]
fn a_diverging_run_writes_nothing_and_keeps_what_out_held() {
    let setup = Setup::new();
    let huge = ["--learning-rate", "1e9"];
    for (method, data, out) in [
        ("full", &setup.chat, setup.path("full.safetensors")),
        ("lora", &setup.chat, setup.path("adapter")),
        ("dpo", &setup.pref, setup.path("dpo.safetensors")),
    ] {
        let stderr = refused(&setup.finetune(data, method, &out, &huge));
        assert!(
            stderr.contains("training has diverged")
                && stderr.contains("nothing was written: ")
                && stderr.contains("was not created"),
            "{method}: {stderr}"
        );
        assert!(!out.exists(), "{method}");
    }
    // With --overwrite, what --out held is untouched by a failed run.
    let full = setup.path("full.safetensors");
    ran(&setup.finetune(&setup.chat, "full", &full, &[]));
    let adapter = setup.path("adapter");
    ran(&setup.finetune(&setup.chat, "lora", &adapter, &[]));
    let (held, held_adapter) = (
        fs::read(&full).unwrap(),
        fs::read(adapter.join(WEIGHTS_FILE)).unwrap(),
    );
    let mut args = huge.to_vec();
    args.push("--overwrite");
    for (method, out) in [("full", &full), ("lora", &adapter)] {
        let stderr = refused(&setup.finetune(&setup.chat, method, out, &args));
        assert!(
            stderr.contains("training has diverged") && stderr.ends_with("is unchanged\n"),
            "{stderr}"
        );
    }
    assert_eq!(fs::read(&full).unwrap(), held);
    assert_eq!(fs::read(adapter.join(WEIGHTS_FILE)).unwrap(), held_adapter);
    assert_eq!(
        setup.names(),
        [
            "adapter",
            "base.safetensors",
            "chat.jsonl",
            "full.safetensors",
            "pref.jsonl"
        ]
    );
}

#[test]
fn out_follows_the_same_policy_as_train() {
    let setup = Setup::new();
    let chat = &setup.chat;
    // Never an input.
    let stderr = refused(&setup.finetune(chat, "full", &setup.base, &["--overwrite"]));
    assert!(stderr.contains("is the same file as --base"), "{stderr}");
    let stderr = refused(&setup.finetune(chat, "full", chat, &["--overwrite"]));
    assert!(stderr.contains("is the same file as --data"), "{stderr}");
    let stderr = refused(&setup.finetune(chat, "lora", setup.dir.path(), &["--overwrite"]));
    assert!(stderr.contains("holds --base "), "{stderr}");
    // A file that is not a checkpoint is never replaced.
    let notes = setup.path("notes.txt");
    fs::write(&notes, "mine").unwrap();
    let stderr = refused(&setup.finetune(chat, "full", &notes, &["--overwrite"]));
    assert!(
        stderr.contains("exists and is not a checkpoint this program can read"),
        "{stderr}"
    );
    // A checkpoint only with --overwrite, and only one of the base's model.
    let full = setup.path("full.safetensors");
    ran(&setup.finetune(chat, "full", &full, &[]));
    let stderr = refused(&setup.finetune(chat, "full", &full, &[]));
    assert!(
        stderr.contains("already holds a checkpoint (step 106, model 2-2-16 with ")
            && stderr.contains(" bpe tokens); add --overwrite to replace it"),
        "{stderr}"
    );
    let first = fs::read(&full).unwrap();
    ran(&setup.finetune(chat, "full", &full, &["--overwrite", "--seed", "2"]));
    assert_ne!(fs::read(&full).unwrap(), first);
    let wide = setup.path("wide.safetensors");
    save_base(&wide, load(&setup.base).tokenizer, 32);
    let stderr = refused(&setup.finetune(chat, "full", &wide, &["--overwrite"]));
    assert!(
        stderr.contains("holds a different model (step 100, model 2-2-32"),
        "{stderr}"
    );
    // An adapter is a folder: never a file; a folder of other files is
    // never written into; an empty folder is used; an adapter's folder is
    // replaced whole, only with --overwrite.
    let stderr = refused(&setup.finetune(chat, "lora", &full, &["--overwrite"]));
    assert!(
        stderr.contains("is a file, but this command writes a folder"),
        "{stderr}"
    );
    let stderr = refused(&setup.finetune(chat, "full", &setup.path("missing/out"), &[]));
    assert!(
        stderr.contains("the folder ") && stderr.contains("does not exist"),
        "{stderr}"
    );
    let other = setup.path("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("keep.txt"), "mine").unwrap();
    let stderr = refused(&setup.finetune(chat, "lora", &other, &["--overwrite"]));
    assert!(
        stderr.contains("is a folder holding files that are not an adapter (keep.txt)"),
        "{stderr}"
    );
    assert_eq!(listing(&other), ["keep.txt"]);
    let adapter = setup.path("adapter");
    fs::create_dir(&adapter).unwrap();
    ran(&setup.finetune(chat, "lora", &adapter, &[]));
    let stderr = refused(&setup.finetune(chat, "lora", &adapter, &[]));
    assert!(
        stderr.contains("already holds an adapter; add --overwrite"),
        "{stderr}"
    );
    let config = fs::read_to_string(adapter.join(CONFIG_FILE)).unwrap();
    ran(&setup.finetune(chat, "lora", &adapter, &["--overwrite", "--rank", "2"]));
    assert_ne!(
        fs::read_to_string(adapter.join(CONFIG_FILE)).unwrap(),
        config
    );
    assert_eq!(listing(&adapter), [CONFIG_FILE, WEIGHTS_FILE]);
    // No lock, temporary file or folder is left behind.
    assert_eq!(
        setup.names(),
        [
            "adapter",
            "base.safetensors",
            "chat.jsonl",
            "full.safetensors",
            "notes.txt",
            "other",
            "pref.jsonl",
            "wide.safetensors"
        ]
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_between_steps_and_writes_nothing() {
    let setup = Setup::new();
    let adapter = setup.path("adapter");
    let args = [
        "finetune",
        "--base",
        s(&setup.base),
        "--data",
        s(&setup.chat),
        "--method",
        "lora",
        "--out",
        s(&adapter),
        "--steps",
        "1000000",
        "--log-interval",
        "1",
    ];
    let done = interrupted(&args, "step 5:");
    let stderr = text(&done.stderr);
    assert_eq!(done.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted at step ")
            && stderr.contains("nothing was written: ")
            && stderr.contains("adapter was not created"),
        "{stderr}"
    );
    assert_eq!(
        setup.names(),
        ["base.safetensors", "chat.jsonl", "pref.jsonl"]
    );
}

#[test]
fn temporary_folders_of_a_killed_save_are_removed_and_merge_lora_keeps_out() {
    let setup = Setup::new();
    // As a run killed while saving leaves it: `.NAME.PID.tmp`, from a
    // process that no longer runs (no pid is that large on Linux).
    let stale = setup.path(".adapter.4194999999.tmp");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join(WEIGHTS_FILE), vec![0u8; 512]).unwrap();
    let adapter = setup.path("adapter");
    let stdout = ran(&setup.finetune(&setup.chat, "lora", &adapter, &[]));
    assert!(
        stdout.contains("removed .adapter.4194999999.tmp (512 bytes), left by an interrupted save"),
        "{stdout}"
    );
    assert_eq!(
        setup.names(),
        ["adapter", "base.safetensors", "chat.jsonl", "pref.jsonl"]
    );
    // merge-lora keeps an existing checkpoint without --overwrite.
    let merged = setup.path("merged.safetensors");
    fs::copy(&setup.base, &merged).unwrap();
    let stderr = refused(&listings(&[
        "merge-lora",
        "--base",
        s(&setup.base),
        "--adapter",
        s(&adapter),
        "--out",
        s(&merged),
    ]));
    assert!(
        stderr.contains("already holds a checkpoint (step 100, model 2-2-16")
            && stderr.contains("add --overwrite to replace it"),
        "{stderr}"
    );
    assert_eq!(fs::read(&merged).unwrap(), fs::read(&setup.base).unwrap());
}
