//! `listings sample` through the generation loop, and `listings sample` and
//! `eval` on a Hugging Face GPT-2 directory (`--model`), run as a user
//! would: the tiny random GPT-2 of `tests/fixtures/gpt2` (vocabulary 96,
//! context 16), which transformers itself made and ran.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{listings, refused, text};
use listings::checkpoint::hf::load_hf_gpt2;
use listings::checkpoint::save;
use listings::model::{Gpt, GptConfig};
use listings::tokens::{ENDOFTEXT, Encoding, TextTokenizer, train_with_endoftext};
use listings::train::batches::evaluate_text;

/// The fixture's two layouts: `save_pretrained`'s and the hub's.
const LAYOUTS: [&str; 2] = ["saved", "hub"];

/// r50k_base encodes this to the fixture's input ids (single bytes, all
/// below the model's 96).
const PROMPT: &str = "$/0}bDzp";

fn fixture(layout: &str) -> String {
    format!(
        "{}/tests/fixtures/gpt2/{layout}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// `expected.json`: the fixture's input ids, and transformers' greedy
/// `generate` from them (the input ids, then 8 new tokens).
fn expected() -> (Vec<u32>, Vec<u32>) {
    let path = format!(
        "{}/tests/fixtures/gpt2/expected.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let json: serde_json::Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v[0].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let (input, generated) = (ids(&json["input_ids"]), ids(&json["generated"]));
    assert_eq!(generated[..input.len()], input[..]);
    (input.clone(), generated[input.len()..].to_vec())
}

/// Runs a command that must succeed; returns (stdout, stderr).
fn ran(args: &[&str]) -> (String, String) {
    let out = listings(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    (stdout, stderr)
}

/// Runs a command that must be refused: exit code 1, nothing on stdout;
/// returns stderr.
fn fails(args: &[&str]) -> String {
    let out = listings(args);
    let stderr = refused(&out);
    assert!(
        out.stdout.is_empty(),
        "{args:?} wrote {:?}",
        text(&out.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

/// `sample --model` on a layout with `PROMPT` and `extra` flags.
fn sample_args<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["sample", "--model", dir, "--prompt", PROMPT];
    args.extend_from_slice(extra);
    args
}

#[test]
fn greedy_decoding_of_both_layouts_gives_transformers_tokens() {
    let (input, new) = expected();
    let r50k = Encoding::R50kBase.tokenizer().unwrap();
    assert_eq!(
        r50k.encode(PROMPT),
        input,
        "the prompt is the fixture's input"
    );
    let want = format!("{PROMPT}{}\n", r50k.decode(&new).unwrap());
    for layout in LAYOUTS {
        let dir = fixture(layout);
        let greedy = ["--temperature", "0", "--max-new-tokens", "8"];
        let (cached, stderr) = ran(&sample_args(&dir, &greedy));
        assert_eq!(cached, want, "{layout}");
        // The statistics line.
        assert!(
            stderr.starts_with("8 new tokens; prefill: 8 tokens at ")
                && stderr.contains(" tokens/s; decode: 7 tokens at ")
                && stderr.ends_with(" tokens/s; KV cache; weights f32\n"),
            "{stderr}"
        );
        // Recomputing the context every pass: the same tokens.
        let mut flags = greedy.to_vec();
        flags.push("--no-kv-cache");
        let (uncached, stderr) = ran(&sample_args(&dir, &flags));
        assert_eq!(uncached, want, "{layout}");
        assert!(stderr.contains("; no KV cache"), "{stderr}");
        // One beam is greedy decoding too.
        let (beam, stderr) = ran(&sample_args(
            &dir,
            &["--beams", "1", "--max-new-tokens", "8"],
        ));
        assert_eq!(beam, want, "{layout}");
        assert!(
            stderr.starts_with("8 new tokens (the best of 1 beam, log-probability -"),
            "{stderr}"
        );
    }
}

#[test]
fn the_cache_changes_nothing_when_sampling_either() {
    let dir = fixture("saved");
    // 8 new tokens fill the context of 16: no sliding, so the same draws.
    for seed in ["1", "2", "3"] {
        let flags = ["--temperature", "1.2", "--top-p", "0.9", "--seed", seed];
        let mut new = vec!["--max-new-tokens", "8"];
        new.extend_from_slice(&flags);
        let (cached, _) = ran(&sample_args(&dir, &new));
        new.push("--no-kv-cache");
        let (uncached, _) = ran(&sample_args(&dir, &new));
        assert_eq!(cached, uncached, "seed {seed}");
        assert!(
            cached.starts_with(PROMPT) && cached.chars().count() == PROMPT.len() + 8 + 1,
            "{cached:?}"
        );
    }
}

#[test]
fn every_weight_format_runs() {
    let dir = fixture("hub");
    for format in ["f32", "int8"] {
        let (out, stderr) = ran(&sample_args(
            &dir,
            &["--quantize", format, "--max-new-tokens", "30"],
        ));
        // 30 new tokens slide past the context of 16.
        assert!(
            out.starts_with(PROMPT) && out.chars().count() == PROMPT.len() + 30 + 1,
            "{format}: {out:?}"
        );
        assert!(stderr.starts_with("30 new tokens; "), "{stderr}");
        assert!(stderr.contains(&format!("weights {format}")), "{stderr}");
    }
    // The fixture is 24 wide: rows of 24 are not whole blocks of 32.
    for format in ["q8_0", "q4_0"] {
        let err = fails(&sample_args(&dir, &["--quantize", format]));
        assert!(err.contains("24 is not a multiple of 32"), "{err}");
    }
    // A model 32 wide runs in every format.
    let (_dir, path) = ends_at_once();
    for format in ["f32", "int8", "q8_0", "q4_0"] {
        let args = [
            "sample",
            "--checkpoint",
            path.to_str().unwrap(),
            "--prompt",
            "the cat",
            "--quantize",
            format,
            "--max-new-tokens",
            "5",
            "--ignore-end-token",
        ];
        let (out, stderr) = ran(&args);
        assert!(out.starts_with("the cat"), "{format}: {out:?}");
        assert!(stderr.contains(&format!("weights {format}")), "{stderr}");
    }
}

#[test]
fn a_stop_text_ends_the_text_and_is_not_printed() {
    let dir = fixture("saved");
    // The greedy continuation is "???????>": "?>" spans its last two tokens.
    let (out, stderr) = ran(&sample_args(
        &dir,
        &[
            "--temperature",
            "0",
            "--max-new-tokens",
            "20",
            "--stop",
            "?>",
        ],
    ));
    assert_eq!(out, format!("{PROMPT}??????\n"));
    assert!(
        stderr.starts_with("8 new tokens (stopped at --stop \"?>\"); "),
        "{stderr}"
    );
    // The first of several stop texts to appear wins; the prompt does not count.
    let (out, _) = ran(&sample_args(
        &dir,
        &[
            "--temperature",
            "0",
            "--stop",
            ">",
            "--stop",
            "??",
            "--stop",
            "$",
        ],
    ));
    assert_eq!(out, format!("{PROMPT}\n"));
}

#[test]
fn a_prompt_longer_than_the_context_keeps_its_end_with_a_warning() {
    let dir = fixture("saved");
    let long = PROMPT.repeat(3); // 24 tokens, for a context of 16
    let (out, stderr) = ran(&[
        "sample",
        "--model",
        &dir,
        "--prompt",
        &long,
        "--max-new-tokens",
        "4",
        "--temperature",
        "0",
    ]);
    assert!(
        stderr.starts_with(
            "warning: the prompt has 24 tokens, the model sees at most 16: keeping its last 16\n"
        ),
        "{stderr}"
    );
    // The whole prompt is printed, then what the model makes of its end.
    let (end, _) = ran(&[
        "sample",
        "--model",
        &dir,
        "--prompt",
        &long[8..],
        "--max-new-tokens",
        "4",
        "--temperature",
        "0",
    ]);
    assert_eq!(out, format!("{}{}", &long[..8], end));
}

#[test]
fn text_is_written_as_it_is_drawn() {
    // A million tokens would take a while: the reader takes the first few
    // and closes the pipe, and the command stops there, successfully.
    let mut child = Command::new(env!("CARGO_BIN_EXE_listings"))
        .args(sample_args(
            &fixture("saved"),
            &["--max-new-tokens", "1000000"],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < PROMPT.len() + 5 {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "the command ended early");
        got.extend_from_slice(&buf[..n]);
    }
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(got.starts_with(PROMPT.as_bytes()));
    assert!(stderr.contains("(standard output closed)"), "{stderr}");
    let made: usize = stderr.split(' ').next().unwrap().parse().unwrap();
    assert!(made < 1_000_000, "{stderr}");
}

/// A folder of files named `names`, each holding a few bytes, and `config.json`
/// copied from the fixture if it is among them.
fn model_dir(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let from = Path::new(&fixture("saved")).join(name);
        if from.exists() {
            fs::copy(&from, dir.path().join(name)).unwrap();
        } else {
            fs::write(dir.path().join(name), b"not a model").unwrap();
        }
    }
    dir
}

#[test]
fn bad_flags_are_refused_before_the_model_is_read() {
    let nowhere = "/no/such/model/dir";
    for (flags, message) in [
        (
            vec!["--temperature", "-1"],
            "temperature -1 is not allowed: use 0 for greedy decoding",
        ),
        (
            vec!["--temperature", "NaN"],
            "temperature NaN is not allowed",
        ),
        (vec!["--top-p", "0"], "top-p 0 is outside (0, 1]"),
        (vec!["--top-p", "1.5"], "top-p 1.5 is outside (0, 1]"),
        (vec!["--top-k", "0"], "top-k 0 keeps no token"),
        (
            vec!["--repetition-penalty", "0"],
            "repetition penalty 0 is not allowed",
        ),
        (
            vec!["--repetition-penalty", "-1.2"],
            "repetition penalty -1.2 is not allowed",
        ),
        (
            vec!["--max-new-tokens", "0"],
            "--max-new-tokens 0 asks for no text",
        ),
        (vec!["--prompt", ""], "the prompt is empty"),
        (
            vec!["--stop", ""],
            "--stop \"\" would stop before the first token",
        ),
        (vec!["--beams", "0"], "--beams 0 keeps no continuation"),
        (
            vec!["--beams", "2", "--temperature", "0.7"],
            "--temperature 0.7 does not apply to --beams: beam search draws nothing at random",
        ),
        (
            vec!["--beams", "2", "--top-p", "0.9"],
            "--top-p does not apply to --beams",
        ),
        (
            vec!["--beams", "2", "--seed", "3"],
            "--seed does not apply to --beams",
        ),
        (
            vec!["--beams", "2", "--no-kv-cache"],
            "--no-kv-cache does not apply to --beams",
        ),
    ] {
        let mut args = vec!["sample", "--model", nowhere];
        args.extend_from_slice(&flags);
        let err = fails(&args);
        assert!(
            err.starts_with("error: ") && err.contains(message),
            "{flags:?}: {err}"
        );
    }
    // Greedy beam search with the flags' neutral values is fine.
    let dir = fixture("saved");
    ran(&sample_args(
        &dir,
        &[
            "--beams",
            "2",
            "--temperature",
            "0",
            "--max-new-tokens",
            "3",
        ],
    ));
}

#[test]
fn bad_model_directories_and_prompts_say_what_is_wrong() {
    let err = fails(&["sample", "--model", "/no/such/model/dir"]);
    assert!(
        err.contains("--model /no/such/model/dir: there is no such directory"),
        "{err}"
    );
    let file = format!("{}/config.json", fixture("saved"));
    let err = fails(&["sample", "--model", &file]);
    assert!(err.contains("is a file, not a directory"), "{err}");
    let no_config = model_dir(&["model.safetensors"]);
    let err = fails(&["sample", "--model", no_config.path().to_str().unwrap()]);
    assert!(err.contains("has no config.json"), "{err}");
    let no_weights = model_dir(&["config.json"]);
    let err = fails(&["sample", "--model", no_weights.path().to_str().unwrap()]);
    assert!(
        err.contains("has no model.safetensors; only single-file safetensors weights are read"),
        "{err}"
    );
    let pickle = model_dir(&["config.json", "pytorch_model.bin"]);
    let err = fails(&["sample", "--model", pickle.path().to_str().unwrap()]);
    assert!(
        err.contains(
            "holds pytorch_model.bin but no model.safetensors: only safetensors weights are read"
        ) && err.contains("save_pretrained"),
        "{err}"
    );
    // Exactly one of --model and --checkpoint.
    let both = refused(&listings(&["sample", "--model", "a", "--checkpoint", "b"]));
    assert!(both.contains("cannot be used with"), "{both}");
    let neither = refused(&listings(&["sample", "--prompt", "x"]));
    assert!(
        neither.contains("--checkpoint <CHECKPOINT>|--model <DIR>"),
        "{neither}"
    );

    // "hello" is one r50k token, 31373: not in a vocabulary of 96.
    let dir = fixture("hub");
    let err = fails(&["sample", "--model", &dir, "--prompt", "hello"]);
    assert!(
        err.contains(
            "cannot continue the prompt: token id 31373 is outside the model's vocabulary of 96"
        ),
        "{err}"
    );
    // Beam search does not slide: a prompt filling the context is refused.
    let err = fails(&[
        "sample",
        "--model",
        &dir,
        "--prompt",
        &PROMPT.repeat(2),
        "--beams",
        "2",
    ]);
    assert!(
        err.contains("the prompt fills the model's whole context of 16 tokens"),
        "{err}"
    );
}

#[test]
fn eval_reads_a_model_directory_with_gpt2s_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data.txt");
    let text40 = PROMPT.repeat(5); // 40 tokens: 2 windows of 17
    fs::write(&data, &text40).unwrap();
    let r50k = TextTokenizer::Bpe(Encoding::R50kBase.tokenizer().unwrap());
    let mut printed = Vec::new();
    for layout in LAYOUTS {
        let (out, _) = ran(&[
            "eval",
            "--model",
            &fixture(layout),
            "--data",
            data.to_str().unwrap(),
        ]);
        let gpt = load_hf_gpt2(fixture(layout)).unwrap();
        let want = evaluate_text(&gpt, &r50k, &text40).unwrap();
        assert_eq!(out, format!("{want}\n"));
        assert!(out.ends_with(" over 2 windows of 17 tokens\n"), "{out}");
        printed.push(out);
    }
    assert_eq!(
        printed[0], printed[1],
        "the two layouts hold the same model"
    );
    let err = fails(&["eval", "--model", "/no/such/dir", "--data", "x.txt"]);
    assert!(err.contains("there is no such directory"), "{err}");
}

/// A checkpoint with a BPE tokenizer that has `<|endoftext|>`, and a model
/// whose likeliest token is always that one.
fn ends_at_once() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let tok = train_with_endoftext("the cat sat on the mat; the cat ate", 260);
    let end = tok
        .special_tokens()
        .iter()
        .find(|(name, _)| name == ENDOFTEXT)
        .unwrap()
        .1;
    let tok = TextTokenizer::Bpe(tok);
    let config = GptConfig {
        vocab_size: tok.vocab_size(),
        block_size: 8,
        n_layer: 1,
        n_head: 2,
        n_embd: 32,
    };
    let (config, mut params) = Gpt::new(config, 1).unwrap().into_parts();
    // ln_f's output is its bias alone, 10 times the end token's embedding:
    // the logit of the end token is 10 |e|², every other one e · wte_j.
    params.ln_f.weight.fill(0.0);
    let e = params.wte.row(end as usize).to_owned();
    params.ln_f.bias.assign(&(&e * 10.0));
    let gpt = Gpt::from_params(config, params).unwrap();
    let path = dir.path().join("ends.safetensors");
    save(&path, &gpt, &tok, None, 0, &BTreeMap::new()).unwrap();
    (dir, path)
}

#[test]
fn the_end_token_ends_the_text_unless_ignored() {
    let (_dir, path) = ends_at_once();
    let ckpt = path.to_str().unwrap();
    let args = [
        "sample",
        "--checkpoint",
        ckpt,
        "--prompt",
        "the cat",
        "--temperature",
        "0",
    ];
    let (out, stderr) = ran(&args);
    assert_eq!(out, "the cat\n", "the end token is not printed");
    assert!(
        stderr.starts_with("1 new token (stopped at <|endoftext|>); prefill: "),
        "{stderr}"
    );
    let mut more = args.to_vec();
    more.extend(["--ignore-end-token", "--max-new-tokens", "3"]);
    let (out, stderr) = ran(&more);
    assert_eq!(out, "the cat<|endoftext|><|endoftext|><|endoftext|>\n");
    assert!(stderr.starts_with("3 new tokens; "), "{stderr}");
}
