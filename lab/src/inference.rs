//! Chapter 7's experiments: the book model writing text, and what each
//! inference technique changes (the tokens, the distribution, the time, the
//! memory), measured.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use listings::corpus::corpus;
use listings::infer::decode::{Decoder, Logits, Segment};
use listings::infer::generate::{GenerateConfig, beam_search, generate};
use listings::infer::quant::Format;
use listings::infer::sampler::{Sampler, Sampling};
use listings::infer::speculative::speculative_generate;
use listings::model::{Gpt, GptConfig, GptParams};
use listings::rng::{RngExt, seeded};
use listings::tokens::TextTokenizer;
use listings::train::batches::{TRAIN_FRACTION, TokenData};

use crate::book_model::{BookModel, shared_book_model};

/// The book model, shared by the chapter's blocks.
pub fn book() -> anyhow::Result<&'static BookModel> {
    shared_book_model().map_err(anyhow::Error::msg)
}

// ANCHOR: prompts
/// The beginnings the chapter's samples continue: stories, facts and tasks,
/// as the corpus has them.
pub const PROMPTS: [&str; 8] = [
    "Once upon a time",
    "Tom and Mia went to the",
    "One rainy morning,",
    "The main trade of",
    "\"It is mine!\" said",
    "Everyone began to",
    "Q: What is 3 + 4?\nA:",
    "Gran brought a",
];
// ANCHOR_END: prompts

/// [`PROMPTS`], encoded.
pub fn prompt_ids(tokenizer: &TextTokenizer) -> anyhow::Result<Vec<Vec<u32>>> {
    PROMPTS
        .iter()
        .map(|p| tokenizer.encode(p).context("encoding a prompt"))
        .collect()
}

/// Every word of the corpus (runs of letters), lower-cased.
pub fn corpus_words() -> &'static HashSet<String> {
    static WORDS: OnceLock<HashSet<String>> = OnceLock::new();
    WORDS.get_or_init(|| words(&corpus()).collect())
}

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

// ANCHOR: text_stats
/// What a set of samples looks like, in numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct TextStats {
    /// Distinct token pairs over all pairs, per sample, averaged: 1 when
    /// nothing repeats, low when the text goes round in circles.
    pub distinct_2: f64,
    /// The share of 4-token sequences that already occurred earlier in the
    /// same sample.
    pub repeated_4: f64,
    /// The share of words (runs of letters) that occur nowhere in the corpus.
    pub non_words: f64,
    /// Samples that end in a loop ([`find_loop`]).
    pub loops: usize,
}

/// [`TextStats`] of the new tokens of several samples.
pub fn text_stats(samples: &[Vec<u32>], tokenizer: &TextTokenizer) -> TextStats {
    let n = samples.len().max(1) as f64;
    let mut stats = TextStats {
        distinct_2: 0.0,
        repeated_4: 0.0,
        non_words: 0.0,
        loops: 0,
    };
    let (mut words_all, mut words_new) = (0usize, 0usize);
    for s in samples {
        let pairs: Vec<_> = s.windows(2).collect();
        let distinct: HashSet<_> = pairs.iter().collect();
        stats.distinct_2 += distinct.len() as f64 / pairs.len().max(1) as f64 / n;
        let mut seen = HashSet::new();
        let fours: Vec<_> = s.windows(4).collect();
        let repeats = fours.iter().filter(|w| !seen.insert(**w)).count();
        stats.repeated_4 += repeats as f64 / fours.len().max(1) as f64 / n;
        for w in words(&tokenizer.decode_lossy(s)) {
            words_all += 1;
            words_new += usize::from(!corpus_words().contains(&w));
        }
        stats.loops += usize::from(find_loop(s).is_some());
    }
    stats.non_words = words_new as f64 / words_all.max(1) as f64;
    stats
}
// ANCHOR_END: text_stats

// ANCHOR: find_loop
/// Where a text ends in a loop: the first token of the shortest block of
/// 1 to 32 tokens that repeats, back to back, at least three times at the
/// end of `tokens`, and its length. `None` if there is no such block.
pub fn find_loop(tokens: &[u32]) -> Option<(usize, usize)> {
    (1..=32).find_map(|period| {
        let n = tokens.len();
        let mut start = n.checked_sub(period)?;
        while start >= period && tokens[start - period..start] == tokens[start..start + period] {
            start -= period;
        }
        ((n - start) / period >= 3).then_some((start, period))
    })
}
// ANCHOR_END: find_loop

/// The new tokens of one sample per prompt and seed.
pub fn samples(
    decoder: &Decoder,
    prompts: &[Vec<u32>],
    sampling: Sampling,
    seeds: u64,
    new_tokens: usize,
) -> anyhow::Result<Vec<Vec<u32>>> {
    let mut out = Vec::new();
    for prompt in prompts {
        for seed in 0..seeds {
            let config = GenerateConfig {
                max_new_tokens: new_tokens,
                sampling: Sampling { seed, ..sampling },
                ..GenerateConfig::default()
            };
            out.push(generate(decoder, prompt, &config, |_| true)?.tokens);
        }
    }
    Ok(out)
}

/// The next-token distribution after `prompt` with `sampling`'s filters:
/// `(token text, probability)` for the `top` likeliest, and how many tokens
/// keep any probability at all.
pub fn next_token_distribution(
    decoder: &Decoder,
    tokenizer: &TextTokenizer,
    prompt: &str,
    sampling: Sampling,
    top: usize,
) -> anyhow::Result<(Vec<(String, f32)>, usize)> {
    let ids = tokenizer.encode(prompt)?;
    let logits = decoder.logits_uncached(&ids)?;
    let mut probs = Vec::new();
    Sampler::new(sampling)?.probabilities(&logits, &ids, &mut probs);
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    let kept = probs.iter().filter(|&&p| p > 0.0).count();
    let rows = order[..top]
        .iter()
        .map(|&id| (tokenizer.decode_lossy(&[id as u32]), probs[id]))
        .collect();
    Ok((rows, kept))
}

/// The log-probability per token of `tokens` after `prompt`, under the model.
pub fn log_prob_per_token(
    decoder: &Decoder,
    prompt: &[u32],
    tokens: &[u32],
) -> anyhow::Result<f64> {
    let all: Vec<u32> = prompt.iter().chain(tokens).copied().collect();
    let block = decoder.config().block_size;
    let mut total = 0.0;
    // Windows of the model's context, each token scored after its window.
    let mut cache = decoder.new_cache();
    let mut start = 0;
    for t in prompt.len()..all.len() {
        if t - start > block {
            start = t - block / 2;
            cache.clear();
        }
        let feed = &all[start + cache.len()..t];
        let logits = decoder.forward(
            &mut [Segment {
                cache: &mut cache,
                tokens: feed,
            }],
            Logits::Last,
        )?;
        let row = logits.row(0);
        let max = row.fold(f32::NEG_INFINITY, |m, &l| m.max(l));
        let z: f64 = row.iter().map(|&l| f64::from(l - max).exp()).sum();
        total += f64::from(row[all[t] as usize] - max) - z.ln();
    }
    Ok(total / tokens.len().max(1) as f64)
}

/// Beam search of each width on every prompt: the best beams' tokens.
pub fn beams(
    decoder: &Decoder,
    prompts: &[Vec<u32>],
    width: usize,
    new_tokens: usize,
) -> anyhow::Result<Vec<Vec<u32>>> {
    prompts
        .iter()
        .map(|p| {
            Ok(beam_search(decoder, p, width, new_tokens, &[])?
                .swap_remove(0)
                .tokens)
        })
        .collect()
}

/// The book corpus's validation tokens (its last 10%, as in chapter 5).
pub fn val_tokens(tokenizer: &TextTokenizer, block_size: usize) -> anyhow::Result<Vec<u32>> {
    let data = TokenData::from_text(&corpus(), tokenizer)?;
    Ok(data.split(TRAIN_FRACTION, block_size)?.val.ids().to_vec())
}

// ANCHOR: window_loss
/// The mean cross-entropy of `decoder` over windows of `block_size + 1`
/// tokens (as chapter 5's `mean_window_loss`), at most `max_windows` of
/// them, 16 windows to a forward pass.
pub fn window_loss(decoder: &Decoder, tokens: &[u32], max_windows: usize) -> anyhow::Result<f64> {
    let t = decoder.config().block_size;
    let windows: Vec<&[u32]> = tokens.chunks_exact(t + 1).take(max_windows).collect();
    let mut total = 0.0;
    for group in windows.chunks(16) {
        let mut caches: Vec<_> = group.iter().map(|_| decoder.new_cache()).collect();
        let mut segments: Vec<Segment<'_>> = caches
            .iter_mut()
            .zip(group)
            .map(|(cache, w)| Segment {
                cache,
                tokens: &w[..t],
            })
            .collect();
        let logits = decoder.forward(&mut segments, Logits::All)?; // (16·T, V)
        let targets = group.iter().flat_map(|w| &w[1..]);
        for (row, &target) in logits.rows().into_iter().zip(targets) {
            let max = row.fold(f32::NEG_INFINITY, |m, &l| m.max(l));
            let z: f64 = row.iter().map(|&l| f64::from(l - max).exp()).sum();
            total += z.ln() - f64::from(row[target as usize] - max);
        }
    }
    Ok(total / (windows.len() * t) as f64)
}
// ANCHOR_END: window_loss

/// The share of greedy tokens that equal `reference`'s, position by
/// position, over [`PROMPTS`]; and how many of the continuations are
/// identical throughout.
pub fn greedy_agreement(
    decoder: &Decoder,
    reference: &Decoder,
    prompts: &[Vec<u32>],
    new_tokens: usize,
) -> anyhow::Result<(f64, usize)> {
    let a = samples(decoder, prompts, Sampling::greedy(), 1, new_tokens)?;
    let b = samples(reference, prompts, Sampling::greedy(), 1, new_tokens)?;
    let same: usize = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.iter().zip(y).filter(|(p, q)| p == q).count())
        .sum();
    let whole = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    Ok((same as f64 / (prompts.len() * new_tokens) as f64, whole))
}

/// The book model with only its first `n_layer` blocks: a smaller model
/// for free, to use as a draft.
pub fn first_blocks(gpt: &Gpt, n_layer: usize) -> anyhow::Result<Gpt> {
    let config = GptConfig {
        n_layer,
        ..*gpt.config()
    };
    let p = gpt.params();
    let params = GptParams {
        h: p.h[..n_layer].to_vec(),
        ..p.clone()
    };
    Ok(Gpt::from_params(config, params)?)
}

/// One row of the speculative decoding table.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeculativeRow {
    /// Guesses per round.
    pub guesses: usize,
    /// The share of guesses accepted.
    pub acceptance: f64,
    /// New tokens per target pass, measured.
    pub tokens_per_pass: f64,
    /// New tokens per target pass that the acceptance rate predicts if
    /// guesses were accepted independently: `(1 - a^(g+1)) / (1 - a)` a
    /// round, except in the last rounds of a text, which guess fewer
    /// ([`expected_rounds`]).
    pub predicted: f64,
    /// The same prediction with `g` guesses in every round, the last ones
    /// included: `(1 - a^(g+1)) / (1 - a)`.
    pub untruncated: f64,
}

// ANCHOR: speculative_rows
/// Speculative decoding of every prompt with each number of guesses.
pub fn speculative_rows(
    target: &Decoder,
    draft: &Decoder,
    prompts: &[Vec<u32>],
    guesses: &[usize],
    sampling: Sampling,
    new_tokens: usize,
) -> anyhow::Result<Vec<SpeculativeRow>> {
    guesses
        .iter()
        .map(|&g| {
            let (mut checked, mut accepted, mut rounds, mut tokens) = (0, 0, 0, 0);
            for (i, prompt) in prompts.iter().enumerate() {
                let s = Sampling {
                    seed: i as u64,
                    ..sampling
                };
                let (out, stats) = speculative_generate(target, draft, prompt, new_tokens, g, s)?;
                checked += stats.accepted + stats.rejected;
                accepted += stats.accepted;
                (rounds, tokens) = (rounds + stats.rounds, tokens + out.len());
            }
            let a = accepted as f64 / checked.max(1) as f64;
            Ok(SpeculativeRow {
                guesses: g,
                acceptance: a,
                tokens_per_pass: tokens as f64 / rounds as f64,
                predicted: new_tokens as f64 / expected_rounds(a, g, new_tokens),
                untruncated: (0..=g).map(|i| a.powi(i as i32)).sum(), // (1 - a^(g+1)) / (1 - a)
            })
        })
        .collect()
}
// ANCHOR_END: speculative_rows

/// The target passes expected to write `n` tokens with up to `g` guesses a
/// round, each accepted with probability `a` independently of the others,
/// a round guessing no more than the tokens left less one, as
/// `speculative_generate` does. A round that accepts `k` guesses writes
/// `k + 1` tokens (the last from the target), so with `rounds[m]` the
/// passes for `m` tokens left, `rounds[m] = 1 + Σ_k P(k) rounds[m - k - 1]`.
pub fn expected_rounds(a: f64, g: usize, n: usize) -> f64 {
    let mut rounds = vec![0.0; n + 1];
    for left in 1..=n {
        let g = g.min(left - 1);
        let mut expected = 1.0;
        for k in 0..=g {
            // k accepted, then a rejection; or all g accepted.
            let p = if k < g {
                a.powi(k as i32) * (1.0 - a)
            } else {
                a.powi(g as i32)
            };
            expected += p * rounds[left - k - 1];
        }
        rounds[left] = expected;
    }
    rounds[n]
}

/// Milliseconds per new token at each context length, with the cache and
/// without, for a model of `config`'s shape with random weights: `(context,
/// cached ms, uncached ms)`. Timed here and now, so different on every run.
pub fn kv_timings(
    config: GptConfig,
    contexts: &[usize],
    tokens: usize,
) -> anyhow::Result<Vec<(usize, f64, f64)>> {
    let decoder = Decoder::new(&Gpt::new(config, 0)?, Format::F32)?;
    let mut rng = seeded(1);
    let mut out = Vec::new();
    for &context in contexts {
        let prompt: Vec<u32> = (0..context - tokens)
            .map(|_| rng.random_range(0..config.vocab_size as u32))
            .collect();
        let mut cache = decoder.new_cache();
        decoder.forward(
            &mut [Segment {
                cache: &mut cache,
                tokens: &prompt,
            }],
            Logits::Last,
        )?;
        let start = Instant::now();
        for i in 0..tokens {
            decoder.forward(
                &mut [Segment {
                    cache: &mut cache,
                    tokens: &[i as u32],
                }],
                Logits::Last,
            )?;
        }
        let cached = start.elapsed().as_secs_f64() * 1e3 / tokens as f64;
        let start = Instant::now();
        let reps = 2;
        for _ in 0..reps {
            decoder.logits_uncached(&prompt)?;
        }
        let uncached = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
        out.push((context, cached, uncached));
    }
    Ok(out)
}

/// Tokens per second of one decode step of `batch` sequences at once, each
/// with `context` tokens cached, for a model of `config`'s shape: the
/// median step of at least `steps` (more for small batches, whose steps are
/// short and noisier).
pub fn batch_throughput(
    config: GptConfig,
    batches: &[usize],
    context: usize,
    steps: usize,
) -> anyhow::Result<Vec<(usize, f64)>> {
    let decoder = Decoder::new(&Gpt::new(config, 0)?, Format::F32)?;
    let prompt: Vec<u32> = (0..context as u32)
        .map(|i| i % config.vocab_size as u32)
        .collect();
    let mut out = Vec::new();
    for &b in batches {
        let mut caches: Vec<_> = (0..b).map(|_| decoder.new_cache()).collect();
        for cache in &mut caches {
            decoder.forward(
                &mut [Segment {
                    cache,
                    tokens: &prompt,
                }],
                Logits::Last,
            )?;
        }
        let next = vec![1_u32];
        let mut times = Vec::new();
        for _ in 0..steps.max(64 / b) {
            let mut segments: Vec<_> = caches
                .iter_mut()
                .map(|cache| Segment {
                    cache,
                    tokens: &next,
                })
                .collect();
            let start = Instant::now();
            decoder.forward(&mut segments, Logits::Last)?;
            times.push(start.elapsed().as_secs_f64());
            for cache in &mut caches {
                cache.truncate(context);
            }
        }
        times.sort_by(f64::total_cmp);
        out.push((b, b as f64 / times[times.len() / 2]));
    }
    Ok(out)
}

/// One request to a simulated server.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Request {
    /// When it arrives, in milliseconds.
    pub arrival: f64,
    /// Its prompt's tokens.
    pub prompt: usize,
    /// The tokens it will generate before its end token.
    pub output: usize,
}

// ANCHOR: requests
/// `n` requests arriving at random (a Poisson process of `per_second`
/// requests a second on average), with prompts of 16 to 256 tokens and
/// outputs of mostly short, sometimes long lengths: 16 plus an exponential
/// number with mean 100, at most 512.
pub fn requests(n: usize, per_second: f64, seed: u64) -> Vec<Request> {
    let mut rng = seeded(seed);
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            t += -(1.0 - rng.random::<f64>()).ln() / per_second * 1e3;
            let output = 16 + (-(1.0 - rng.random::<f64>()).ln() * 100.0) as usize;
            Request {
                arrival: t,
                prompt: rng.random_range(16..=256),
                output: output.min(512),
            }
        })
        .collect()
}
// ANCHOR_END: requests

/// What one engine step costs: `fixed_ms` per decode step whatever the
/// batch (reading the weights), `per_sequence_ms` for each sequence in it,
/// `prefill_ms_per_token` for each prompt token admitted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCost {
    /// Milliseconds per decode step, whatever the batch.
    pub fixed_ms: f64,
    /// Milliseconds per sequence per decode step.
    pub per_sequence_ms: f64,
    /// Milliseconds per prompt token.
    pub prefill_ms_per_token: f64,
}

/// How the simulated server batches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// Take up to the batch size of waiting requests, run them until the
    /// longest is done, return them together, start again.
    Static,
    /// Every step, admit waiting requests into free places of the batch;
    /// a finished request leaves at once.
    Continuous,
}

/// What a simulated run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    /// Generated tokens per second, over the whole run.
    pub tokens_per_second: f64,
    /// Median time from arrival to the last token, seconds.
    pub p50_s: f64,
    /// 95th percentile of the same, seconds.
    pub p95_s: f64,
    /// Batch places doing useful work, averaged over steps.
    pub busy_share: f64,
    /// KV-cache positions reserved when each request reserves its prompt
    /// plus the longest output allowed (`max_output`), averaged over steps.
    pub reserved_positions: f64,
    /// KV-cache positions reserved in pages of 16, averaged over steps.
    pub paged_positions: f64,
    /// KV-cache positions holding a token, averaged over steps.
    pub used_positions: f64,
}

// ANCHOR: simulate
/// Serves `requests` with at most `batch` sequences per step, each step
/// costing what `cost` says, and measures throughput, latency and the
/// KV-cache memory that two ways of reserving it would hold.
pub fn simulate(
    requests: &[Request],
    cost: StepCost,
    batch: usize,
    scheduler: Scheduler,
    max_output: usize,
) -> Served {
    struct Live {
        request: usize,
        done: usize,
    }
    let (mut now, mut next) = (0.0_f64, 0); // the clock; the next request to arrive
    let mut waiting: std::collections::VecDeque<usize> = Default::default();
    let mut live: Vec<Live> = Vec::new();
    let mut finished: Vec<Option<f64>> = vec![None; requests.len()];
    let (mut steps, mut busy, mut tokens) = (0usize, 0usize, 0usize);
    let (mut reserved, mut paged, mut used) = (0.0, 0.0, 0.0);
    let mut pending_return: Vec<usize> = Vec::new(); // static: returned when the batch ends
    while finished.contains(&None) {
        while next < requests.len() && requests[next].arrival <= now {
            waiting.push_back(next);
            next += 1;
        }
        let admit = match scheduler {
            Scheduler::Continuous => true,
            Scheduler::Static => live.is_empty(),
        };
        if admit {
            while live.len() < batch && !waiting.is_empty() {
                let r = waiting.pop_front().unwrap();
                now += cost.prefill_ms_per_token * requests[r].prompt as f64;
                live.push(Live {
                    request: r,
                    done: 0,
                });
            }
        }
        if live.is_empty() {
            now = now.max(requests[next].arrival); // idle until the next arrival
            continue;
        }
        // One decode step. A static batch computes every place, finished or not.
        let working = live
            .iter()
            .filter(|l| l.done < requests[l.request].output)
            .count();
        let computed = if scheduler == Scheduler::Static {
            live.len()
        } else {
            working
        };
        now += cost.fixed_ms + cost.per_sequence_ms * computed as f64;
        steps += 1;
        busy += working;
        for l in &mut live {
            let r = requests[l.request];
            if l.done < r.output {
                l.done += 1;
                tokens += 1;
            }
            let length = r.prompt + l.done;
            used += length as f64;
            paged += (length.div_ceil(16) * 16) as f64;
            reserved += (r.prompt + max_output) as f64;
        }
        match scheduler {
            Scheduler::Continuous => live.retain(|l| {
                let over = l.done == requests[l.request].output;
                if over {
                    finished[l.request] = Some(now);
                }
                !over
            }),
            Scheduler::Static => {
                if live.iter().all(|l| l.done == requests[l.request].output) {
                    pending_return.extend(live.drain(..).map(|l| l.request));
                    for r in pending_return.drain(..) {
                        finished[r] = Some(now);
                    }
                }
            }
        }
    }
    let mut latency: Vec<f64> = requests
        .iter()
        .zip(&finished)
        .map(|(r, f)| (f.expect("every request finishes") - r.arrival) / 1e3)
        .collect();
    latency.sort_by(f64::total_cmp);
    let pick = |q: f64| latency[((latency.len() - 1) as f64 * q).round() as usize];
    let per_step = |x: f64| x / steps as f64;
    Served {
        tokens_per_second: tokens as f64 / (now / 1e3),
        p50_s: pick(0.5),
        p95_s: pick(0.95),
        busy_share: busy as f64 / (steps * batch) as f64,
        reserved_positions: per_step(reserved),
        paged_positions: per_step(paged),
        used_positions: per_step(used),
    }
}
// ANCHOR_END: simulate

/// The prompt of the next-token figure: an open choice of adjective.
pub const DISTRIBUTION_PROMPT: &str = "Once upon a time, there was a";

/// Figure: the book model's next-token probabilities after
/// [`DISTRIBUTION_PROMPT`], for its 12 likeliest tokens, at three
/// temperatures and with top-p 0.9.
pub fn distribution_figure(path: &std::path::Path) -> anyhow::Result<()> {
    use crate::plot::{Axes, Bars, bar_chart_with_legend};
    let book = book()?;
    let decoder = Decoder::new(&book.gpt, Format::F32)?;
    let s = Sampling::default();
    let settings = [
        (
            "temperature 0.7",
            Sampling {
                temperature: 0.7,
                ..s
            },
        ),
        ("temperature 1", s),
        (
            "temperature 1.5",
            Sampling {
                temperature: 1.5,
                ..s
            },
        ),
        (
            "temperature 1, top-p 0.9",
            Sampling {
                top_p: Some(0.9),
                ..s
            },
        ),
    ];
    let (order, _) =
        next_token_distribution(&decoder, &book.tokenizer, DISTRIBUTION_PROMPT, s, 12)?;
    let labels: Vec<String> = order
        .iter()
        .map(|(t, _)| format!("\"{}\"", t.trim()))
        .collect();
    let mut series = Vec::new();
    for (name, sampling) in settings {
        let (rows, _) =
            next_token_distribution(&decoder, &book.tokenizer, DISTRIBUTION_PROMPT, sampling, 12)?;
        // The same tokens in the same order: the order of the likeliest does not change.
        let values = order
            .iter()
            .map(|(t, _)| {
                rows.iter()
                    .find(|(u, _)| u == t)
                    .map_or(0.0, |(_, p)| f64::from(*p))
            })
            .collect();
        series.push(Bars { name, values });
    }
    let groups: Vec<&str> = labels.iter().map(String::as_str).collect();
    let axes = Axes {
        title: "The next token after \"Once upon a time, there was a\"",
        x_label: "the 12 likeliest next tokens",
        y_label: "probability",
        log_y: false,
        log_x: false,
    };
    bar_chart_with_legend(
        path,
        &axes,
        &groups,
        &series,
        plotters::prelude::SeriesLabelPosition::UpperRight,
    )
}

/// The numbers of guesses the speculative figure tries.
pub const GUESSES: [usize; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// Figure: tokens per target pass against the number of guesses, measured
/// and predicted from the acceptance rate (with the texts' short last
/// rounds, and without), with the book model's first block as the draft.
pub fn speculative_figure(path: &std::path::Path) -> anyhow::Result<()> {
    use crate::plot::{Axes, Series, line_chart_with_legend};
    let book = book()?;
    let target = Decoder::new(&book.gpt, Format::F32)?;
    let draft = Decoder::new(&first_blocks(&book.gpt, 1)?, Format::F32)?;
    let prompts = prompt_ids(&book.tokenizer)?;
    let rows = speculative_rows(&target, &draft, &prompts, &GUESSES, Sampling::default(), 48)?;
    let points =
        |f: fn(&SpeculativeRow) -> f64| rows.iter().map(|r| (r.guesses as f64, f(r))).collect();
    let series = [
        Series {
            name: "measured",
            points: points(|r| r.tokens_per_pass),
        },
        Series {
            name: "predicted from a, the last rounds guessing fewer",
            points: points(|r| r.predicted),
        },
        Series {
            name: "(1 - a^(g+1)) / (1 - a): g guesses every round",
            points: points(|r| r.untruncated),
        },
        Series {
            name: "every guess accepted: g + 1",
            points: points(|r| r.guesses as f64 + 1.0),
        },
    ];
    let axes = Axes {
        title: "Speculative decoding: a one-block draft for the two-block book model",
        x_label: "guesses per round g",
        y_label: "new tokens per pass of the book model",
        log_y: false,
        log_x: false,
    };
    line_chart_with_legend(
        path,
        &axes,
        &series,
        plotters::prelude::SeriesLabelPosition::UpperLeft,
    )
}

/// The context lengths of the KV-cache figure.
pub const KV_CONTEXTS: [usize; 5] = [64, 128, 256, 512, 1024];

/// Figure: milliseconds per new token with and without the KV cache against
/// the context length, for GPT-2 small's shape (random weights). Timed
/// while drawing; prints the times it plots.
pub fn kv_figure(path: &std::path::Path) -> anyhow::Result<()> {
    use crate::plot::{Axes, Series, line_chart_with_legend};
    let rows = kv_timings(GptConfig::gpt2(), &KV_CONTEXTS, 8)?;
    for (c, cached, uncached) in &rows {
        println!(
            "context {c:>5}: cached {cached:>8.2} ms, uncached {uncached:>9.2} ms, x{:.0}",
            uncached / cached
        );
    }
    let series = [
        Series {
            name: "without the cache: the whole context again",
            points: rows.iter().map(|r| (r.0 as f64, r.2)).collect(),
        },
        Series {
            name: "with the KV cache: one position",
            points: rows.iter().map(|r| (r.0 as f64, r.1)).collect(),
        },
    ];
    let axes = Axes {
        title: "One new token of GPT-2 small (124M), two CPU cores",
        x_label: "context length (tokens)",
        y_label: "time per new token (ms)",
        log_y: true,
        log_x: true,
    };
    line_chart_with_legend(
        path,
        &axes,
        &series,
        plotters::prelude::SeriesLabelPosition::UpperLeft,
    )
}

/// The batch sizes of the batching figure.
pub const BATCHES: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// Figure: decode throughput against the batch size, for GPT-2 small's
/// shape and the book model's. Timed while drawing; prints what it plots.
pub fn batching_figure(path: &std::path::Path) -> anyhow::Result<()> {
    use crate::plot::{Axes, Series, line_chart_with_legend};
    let gpt2 = batch_throughput(GptConfig::gpt2(), &BATCHES, 256, 4)?;
    let toy = batch_throughput(crate::book_model::book_model_config(), &BATCHES, 32, 200)?;
    for ((b, a), (_, t)) in gpt2.iter().zip(&toy) {
        println!(
            "batch {b:>3}: GPT-2 small {a:>9.1} tokens/s ({:.1} ms a step), book model {t:>9.0} tokens/s",
            *b as f64 / a * 1e3
        );
    }
    // The serving simulation's costs: a straight line through GPT-2 small's
    // step times, and the time of a prompt's prefill per token.
    let points: Vec<(f64, f64)> = gpt2
        .iter()
        .map(|&(b, t)| (b as f64, b as f64 / t * 1e3))
        .collect();
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let slope = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>()
        / points.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
    let decoder = Decoder::new(&Gpt::new(GptConfig::gpt2(), 0)?, Format::F32)?;
    let prompt: Vec<u32> = (0..256).collect();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        decoder.logits_uncached(&prompt)?;
        best = best.min(start.elapsed().as_secs_f64() * 1e3 / 256.0);
    }
    println!(
        "GPT-2 small: a step costs {:.1} ms + {slope:.2} ms a sequence; a prefill {best:.2} ms a token",
        my - slope * mx
    );
    let series = [
        Series {
            name: "GPT-2 small (124M), 256 tokens cached each",
            points: gpt2.iter().map(|&(b, t)| (b as f64, t)).collect(),
        },
        Series {
            name: "the book model, 32 tokens cached each",
            points: toy.iter().map(|&(b, t)| (b as f64, t)).collect(),
        },
    ];
    let axes = Axes {
        title: "Decoding many sequences at once",
        x_label: "sequences per step (batch size)",
        y_label: "new tokens per second",
        log_y: true,
        log_x: true,
    };
    line_chart_with_legend(
        path,
        &axes,
        &series,
        plotters::prelude::SeriesLabelPosition::UpperLeft,
    )
}

// ANCHOR: flops
/// Multiply-adds times two (floating-point operations) to compute the
/// logits of one new token after `context - 1` others: with the KV cache,
/// that one position; without it, every position of the context again.
/// Counts the weight matrices (`2` per weight per position, `lm_head` for
/// the last position only) and attention (`4 · C` per block for each pair
/// of a position and one it looks at); LayerNorm, GELU and softmax are a
/// rounding error beside them.
pub fn flops_per_new_token(config: &GptConfig, context: usize, cached: bool) -> u64 {
    let (c, l, v) = (
        config.n_embd as u64,
        config.n_layer as u64,
        config.vocab_size as u64,
    );
    let per_position = 2 * 12 * c * c * l; // c_attn 3C², attn.c_proj C², c_fc 4C², mlp.c_proj 4C²
    let attention = |p: u64| 4 * c * l * p; // position p looks at p positions
    let lm_head = 2 * v * c;
    let context = context as u64;
    if cached {
        per_position + attention(context) + lm_head
    } else {
        context * per_position + (1..=context).map(attention).sum::<u64>() + lm_head
    }
}
// ANCHOR_END: flops

/// How one weight matrix of a model fares in each format.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantErrors {
    /// The tensor's Hugging Face name.
    pub name: String,
    /// Its largest weight in magnitude, in standard deviations of its weights.
    pub outlier: f64,
    /// Root-mean-square error of int8 (one scale per tensor), in standard deviations.
    pub int8: f64,
    /// The same for Q8_0 (one scale per 32 weights).
    pub q8_0: f64,
    /// The same for Q4_0.
    pub q4_0: f64,
}

/// [`QuantErrors`] of every weight matrix of `gpt` (`wte` and each block's four).
pub fn quant_errors(gpt: &Gpt) -> anyhow::Result<Vec<QuantErrors>> {
    use listings::infer::quant::WeightMatrix;
    let mut out = Vec::new();
    for (name, tensor) in gpt.params().tensors() {
        if tensor.ndim() != 2 || name.contains("wpe") {
            continue;
        }
        let w = tensor.into_dimensionality::<ndarray::Ix2>()?;
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let std = (w
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        let absmax = w.iter().fold(0.0_f32, |m, &x| m.max(x.abs()));
        let rms = |format: Format| -> anyhow::Result<f64> {
            let back = WeightMatrix::from_rows(w.view(), format)?.dequantize();
            let se: f64 = back
                .iter()
                .zip(w.iter())
                .map(|(&a, &b)| f64::from(a - b).powi(2))
                .sum();
            Ok((se / n).sqrt() / std)
        };
        out.push(QuantErrors {
            name,
            outlier: f64::from(absmax) / std,
            int8: rms(Format::Int8)?,
            q8_0: rms(Format::Q8_0)?,
            q4_0: rms(Format::Q4_0)?,
        });
    }
    Ok(out)
}

/// The first position where two token lists differ (the shorter's length
/// if one is the start of the other), `None` if they are equal.
pub fn first_difference(a: &[u32], b: &[u32]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

/// What [`hf_fixture_check`] found.
#[derive(Clone, Debug, PartialEq)]
pub struct HfCheck {
    /// The loaded model's blocks.
    pub n_layer: usize,
    /// Its width.
    pub n_embd: usize,
    /// The largest difference between its logits and transformers'.
    pub max_logit_diff: f32,
    /// Whether its greedy continuation is transformers'.
    pub same_greedy: bool,
}

// ANCHOR: hf_fixture_check
/// Loads the tiny GPT-2 that `transformers` wrote (`listings/tests/fixtures/gpt2`,
/// in the `layout` `"saved"` or `"hub"`), runs it on the fixture's input,
/// and compares with the logits and greedy tokens `transformers` stored.
pub fn hf_fixture_check(layout: &str) -> anyhow::Result<HfCheck> {
    use listings::checkpoint::hf::load_hf_gpt2;
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../listings/tests/fixtures/gpt2");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json"))?)?;
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_u64())
            .map(|x| x as u32)
            .collect()
    };
    let gpt = load_hf_gpt2(dir.join(layout))?;
    let decoder = Decoder::new(&gpt, Format::F32)?;
    let input = ids(&expected["input_ids"][0]);
    let mut cache = decoder.new_cache();
    let logits = decoder.forward(
        &mut [Segment {
            cache: &mut cache,
            tokens: &input,
        }],
        Logits::All,
    )?; // (T, V)
    let mut max_logit_diff = 0.0_f32;
    for (row, want) in logits
        .rows()
        .into_iter()
        .zip(expected["logits"][0].as_array().into_iter().flatten())
    {
        for (&x, w) in row.iter().zip(want.as_array().into_iter().flatten()) {
            max_logit_diff = max_logit_diff.max((x - w.as_f64().unwrap_or(f64::NAN) as f32).abs());
        }
    }
    let config = GenerateConfig {
        max_new_tokens: expected["max_new_tokens"].as_u64().unwrap_or(0) as usize,
        sampling: Sampling::greedy(),
        ..GenerateConfig::default()
    };
    let new = generate(&decoder, &input, &config, |_| true)?.tokens;
    let greedy: Vec<u32> = input.iter().chain(&new).copied().collect();
    Ok(HfCheck {
        n_layer: gpt.config().n_layer,
        n_embd: gpt.config().n_embd,
        max_logit_diff,
        same_greedy: greedy == ids(&expected["generated"][0]),
    })
}
// ANCHOR_END: hf_fixture_check

// ANCHOR: draw_margin
/// How close the draw of new token `at` came to choosing another token: the
/// distance between the sampler's uniform number and the nearest boundary
/// between two tokens' shares of [0, 1), in the distribution the uncached
/// loop computes after `prompt` and `tokens[..at]` (the last `block_size`
/// of them).
pub fn draw_margin(
    decoder: &Decoder,
    sampling: Sampling,
    prompt: &[u32],
    tokens: &[u32],
    at: usize,
) -> anyhow::Result<f32> {
    let ids: Vec<u32> = prompt.iter().chain(&tokens[..at]).copied().collect();
    let window = &ids[ids.len().saturating_sub(decoder.config().block_size)..];
    let logits = decoder.logits_uncached(window)?;
    let mut sampler = Sampler::new(sampling)?;
    let u = (0..=at).map(|_| sampler.uniform()).last().unwrap_or(0.0); // one number a draw
    let mut probs = Vec::new();
    sampler.probabilities(&logits, &ids, &mut probs);
    let mut cumulative = 0.0;
    Ok(probs.iter().fold(f32::INFINITY, |near, &p| {
        cumulative += p;
        near.min((cumulative - u).abs())
    }))
}
// ANCHOR_END: draw_margin

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_rounds_at_the_edges_and_for_long_texts() {
        // Nothing accepted: one token a round. Everything accepted: g + 1
        // a round, the last round writing what is left.
        assert_eq!(expected_rounds(0.0, 4, 48), 48.0);
        assert_eq!(expected_rounds(1.0, 4, 48), 10.0);
        assert_eq!(expected_rounds(1.0, 8, 48), 6.0);
        // Over a long text the cut-short last rounds stop mattering.
        let (a, g) = (0.8_f64, 4);
        let formula = (1.0 - a.powi(g as i32 + 1)) / (1.0 - a);
        let long = 100_000.0 / expected_rounds(a, g, 100_000);
        assert!((long - formula).abs() < 1e-3, "{long} vs {formula}");
        assert!(48.0 / expected_rounds(a, g, 48) < formula);
    }

    #[test]
    fn loops_are_found_at_the_end_only() {
        assert_eq!(find_loop(&[9, 1, 2, 1, 2, 1, 2]), Some((1, 2)));
        assert_eq!(find_loop(&[1, 2, 1, 2, 9]), None); // not at the end
        assert_eq!(find_loop(&[5, 5, 5]), Some((0, 1)));
        assert_eq!(find_loop(&[1, 2, 3, 1, 2, 3]), None); // twice is not a loop
        assert_eq!(find_loop(&[]), None);
    }

    #[test]
    fn first_difference_and_distinct_pairs() {
        assert_eq!(first_difference(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_difference(&[1, 2, 3], &[1, 4, 3]), Some(1));
        assert_eq!(first_difference(&[1, 2], &[1, 2, 3]), Some(2));
    }

    #[test]
    fn flops_without_the_cache_grow_with_the_context() {
        let config = GptConfig::gpt2();
        // One position: nothing to save.
        assert_eq!(
            flops_per_new_token(&config, 1, true),
            flops_per_new_token(&config, 1, false)
        );
        let (a, b) = (
            flops_per_new_token(&config, 512, false),
            flops_per_new_token(&config, 1024, false),
        );
        assert!(b > 2 * a); // more than linear: attention is quadratic
        // 2 per weight per position, the matrices of GPT-2 small and its lm_head.
        let weights = 12 * 12 * 768 * 768 + 50257 * 768;
        assert_eq!(flops_per_new_token(&config, 0, true), 2 * weights as u64);
    }

    #[test]
    fn every_request_is_served_and_continuous_batching_is_never_slower_here() {
        let load = requests(60, 2.0, 3);
        let cost = StepCost {
            fixed_ms: 30.0,
            per_sequence_ms: 4.0,
            prefill_ms_per_token: 1.5,
        };
        for scheduler in [Scheduler::Static, Scheduler::Continuous] {
            let s = simulate(&load, cost, 8, scheduler, 512);
            assert!(s.p50_s <= s.p95_s && s.p50_s > 0.0);
            assert!(
                s.used_positions <= s.paged_positions && s.paged_positions <= s.reserved_positions
            );
            assert!(s.tokens_per_second > 0.0 && s.busy_share <= 1.0, "{s:?}");
        }
        let stat = simulate(&load, cost, 8, Scheduler::Static, 512);
        let cont = simulate(&load, cost, 8, Scheduler::Continuous, 512);
        assert!(cont.tokens_per_second >= stat.tokens_per_second);
        assert!(cont.p50_s <= stat.p50_s);
    }
}
