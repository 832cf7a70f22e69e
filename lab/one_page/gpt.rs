//! A complete small GPT on one page: a character-level model of any text,
//! its forward pass, its backward pass written out by hand (no autograd),
//! AdamW and the training loop, on nothing but Rust's standard library:
//!
//! ```text
//! cargo new gpt && cp gpt.rs gpt/src/main.rs && cd gpt
//! cargo run --release -- input.txt 500    # a text file, steps; or no file
//! ```
//!
//! (`RUSTFLAGS="-C target-cpu=native"` makes it faster: `mul_add` becomes one
//! instruction instead of a call.)
//!
//! It is the book's library written again as plain loops over `Vec<f32>`:
//! the same weights for a seed, the same batches, the same arithmetic in
//! the same order, so it prints the library's losses to the bit. Where that
//! meant following the library's order of additions, a comment says so.
//! Shapes: `B` windows of `T` tokens, `C` channels, `nh` heads of
//! `hs = C / nh`, `V` characters; a `(B, T, C)` array is `B·T` rows of `C`.

use std::f32::consts::PI;

/// The model's shape and its training, under nanoGPT's names.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub block_size: usize,   // T: the context, tokens per training window
    pub n_layer: usize,      // transformer blocks
    pub n_head: usize,       // attention heads per block
    pub n_embd: usize,       // C: the width of the residual stream
    pub batch_size: usize,   // B: windows per step
    pub learning_rate: f32,  // the peak, reached after the warm-up
    pub min_lr: f32,         // where the cosine decay ends, at the last step
    pub warmup_iters: usize, // steps of linear warm-up
    pub weight_decay: f32,   // AdamW's pull towards 0, for matrices only
    pub beta1: f32,          // AdamW's decay of the mean of the gradients
    pub beta2: f32,          // and of the mean of their squares
    pub grad_clip: f32,      // the largest gradient norm allowed; 0: no clipping
}

impl Default for Config {
    fn default() -> Self {
        Config {
            block_size: 32,
            n_layer: 2,
            n_head: 4,
            n_embd: 32,
            batch_size: 8,
            learning_rate: 3e-3,
            min_lr: 3e-4,
            warmup_iters: 10,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
        }
    }
}

// ---- Randomness (chapter 0): ChaCha8, drawn as the rand crate draws ---------

/// ChaCha8's output, 16 words at a time: key, block number, words, words used.
struct Rng([u32; 8], u64, [u32; 16], usize);

impl Rng {
    /// rand's `seed_from_u64`: a PCG32 generator turns the seed into the key.
    fn new(mut seed: u64) -> Rng {
        let mut key = [0; 8];
        for k in &mut key {
            seed = seed.wrapping_mul(0x5851_F42D_4C95_7F2D);
            seed = seed.wrapping_add(0xA176_54E4_6FBE_17F3);
            *k = ((((seed >> 18) ^ seed) >> 27) as u32).rotate_right((seed >> 59) as u32);
        }
        Rng(key, 0, [0; 16], 16)
    }

    /// 32 random bits. A block of constants, key and block number, mixed by
    /// 8 rounds of add, rotate and xor, then added to itself: 16 words.
    fn next_u32(&mut self) -> u32 {
        let Rng(key, block, words, used) = self;
        if *used == 16 {
            let mut s = [0; 16]; // "expand 32-byte k", the key, the block number, 0
            s[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
            s[4..12].copy_from_slice(key);
            (s[12], s[13], *block) = (*block as u32, (*block >> 32) as u32, *block + 1);
            let mut x = s;
            for round in 0..8 {
                for i in 0..4 {
                    // Columns (0, 4, 8, 12)... then diagonals (0, 5, 10, 15)...
                    let at = |k: usize| 4 * k + (i + k * (round % 2)) % 4;
                    let (a, b, c, d) = (at(0), at(1), at(2), at(3));
                    for (r1, r2) in [(16, 12), (8, 7)] {
                        x[a] = x[a].wrapping_add(x[b]);
                        x[d] = (x[d] ^ x[a]).rotate_left(r1);
                        x[c] = x[c].wrapping_add(x[d]);
                        x[b] = (x[b] ^ x[c]).rotate_left(r2);
                    }
                }
            }
            (0..16).for_each(|i| words[i] = x[i].wrapping_add(s[i]));
            *used = 0;
        }
        *used += 1;
        words[*used - 1]
    }

    /// A number in [0, 1) from the top 53 bits of 64, as rand's `random::<f64>()`.
    fn uniform(&mut self) -> f64 {
        let bits = self.next_u32() as u64 | (self.next_u32() as u64) << 32;
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A normal number by the Box-Muller transform, in f64 as the library does.
    fn normal(&mut self, std: f32) -> f32 {
        let u1 = 1.0 - self.uniform(); // in (0, 1], so its logarithm is finite
        let u2 = self.uniform();
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        std * z as f32
    }

    /// A whole number in `0..=n` as rand's `random_range(0..=n)` draws it: the
    /// high half of 32 random bits times `n + 1`, corrected by a second draw
    /// when the low half says it could be biased.
    fn up_to(&mut self, n: usize) -> usize {
        let range = n as u64 + 1; // below 2^32, as rand's 32-bit path needs
        let product = self.next_u32() as u64 * range;
        let (mut result, low) = (product >> 32, product as u32);
        if low > (range as u32).wrapping_neg() {
            let high = ((self.next_u32() as u64 * range) >> 32) as u32;
            result += low.checked_add(high).is_none() as u64;
        }
        result as usize
    }
}

// ---- The parameters (chapter 4) ---------------------------------------------

/// A weight and a bias: a linear layer's (`w` is `(in, out)`, as GPT-2
/// stores it; `b` is `(out)`) or a LayerNorm's scale and shift (`(C)` each).
#[derive(Clone)]
pub struct Layer {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

/// One transformer block's layers, in the order it uses them.
#[derive(Clone)]
pub struct Block {
    pub ln1: Layer,  // LayerNorm before attention
    pub qkv: Layer,  // (C, 3C): each token's query, key and value
    pub proj: Layer, // (C, C): the heads' outputs back into the stream
    pub ln2: Layer,  // LayerNorm before the MLP
    pub fc: Layer,   // (C, 4C): the MLP widens
    pub out: Layer,  // (4C, C): and narrows back
}

/// Every weight of the model; the output layer is `wte` again (tied).
#[derive(Clone)]
pub struct Params {
    pub wte: Vec<f32>, // (V, C): a vector per token
    pub wpe: Vec<f32>, // (T, C): a vector per position
    pub blocks: Vec<Block>,
    pub lnf: Layer, // the final LayerNorm
}

impl Params {
    /// GPT-2's initialisation, drawn in this order: weights normal with
    /// standard deviation 0.02 (`0.02 / √(2·n_layer)` for the two that
    /// write into the residual stream), biases 0, LayerNorms the identity.
    pub fn new(vocab_size: usize, cfg: &Config, seed: u64) -> Params {
        let (c, mut rng) = (cfg.n_embd, Rng::new(seed));
        let mut randn = |n: usize, std: f32| (0..n).map(|_| rng.normal(std)).collect();
        let (wte, wpe) = (randn(vocab_size * c, 0.02), randn(cfg.block_size * c, 0.02));
        let residual = 0.02 / (2.0 * cfg.n_layer as f32).sqrt();
        let mut linear = |n_in: usize, n_out: usize, std: f32| {
            let (w, b) = (randn(n_in * n_out, std), vec![0.0; n_out]);
            Layer { w, b }
        };
        let norm = || Layer {
            w: vec![1.0; c],
            b: vec![0.0; c],
        };
        let block = |_| Block {
            ln1: norm(),
            qkv: linear(c, 3 * c, 0.02),
            proj: linear(c, c, residual),
            ln2: norm(),
            fc: linear(c, 4 * c, 0.02),
            out: linear(4 * c, c, residual),
        };
        let (blocks, lnf) = ((0..cfg.n_layer).map(block).collect(), norm());
        Params {
            wte,
            wpe,
            blocks,
            lnf,
        }
    }

    /// Every tensor, in the library's order, and whether it is a matrix
    /// (AdamW's weight decay is for matrices only).
    pub fn tensors(&mut self) -> Vec<(&mut Vec<f32>, bool)> {
        let mut layers = vec![];
        for b in &mut self.blocks {
            layers.extend([(&mut b.ln1, false), (&mut b.qkv, true), (&mut b.proj, true)]);
            layers.extend([(&mut b.ln2, false), (&mut b.fc, true), (&mut b.out, true)]);
        }
        layers.push((&mut self.lnf, false));
        let mut all = vec![(&mut self.wte, true), (&mut self.wpe, true)];
        for (layer, matrix) in layers {
            all.extend([(&mut layer.w, matrix), (&mut layer.b, false)]);
        }
        all
    }
}

// ---- The arithmetic, in the library's order ---------------------------------

/// `Σ xs` as the library adds (so that it can use vector instructions): in
/// 16 interleaved partial sums, then those in order, then the tail.
fn sum16(mut xs: impl ExactSizeIterator<Item = f32>) -> f32 {
    let mut lanes = [0.0f32; 16];
    for _ in 0..xs.len() / 16 {
        for lane in &mut lanes {
            *lane += xs.next().unwrap();
        }
    }
    lanes.iter().sum::<f32>() + xs.sum::<f32>()
}

/// `e^x` as the library computes it: with `x = n·ln 2 + r`, `e^x` is `2^n`
/// (written into the float's exponent bits) times `e^r` (its Taylor series).
fn exp(x: f32) -> f32 {
    if x < -87.3 {
        return 0.0; // too small for an f32
    }
    if x > 88.7 {
        return f32::INFINITY; // too large
    }
    let shifted = x * std::f32::consts::LOG2_E + 12_582_912.0; // rounds x / ln 2
    let n = shifted - 12_582_912.0;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let r4 = 1.0 / 24.0 + r * (1.0 / 120.0 + r / 720.0);
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * r4)));
    p * f32::from_bits(shifted.to_bits().wrapping_sub(0x4B40_0000 - 127) << 23)
}

/// GELU, GPT-2's tanh form: `0.5·x·(1 + tanh(u)) = x / (1 + e^(-2u))`.
fn gelu(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044715 * x * x * x); // √(2/π)·(x + 0.044715·x³)
    x / (1.0 + exp(-2.0 * u))
}

/// GELU's slope: with `s = 1 / (1 + e^(-2u))`, `gelu(x) = x·s`, so `s + x·s'`.
fn gelu_grad(x: f32) -> f32 {
    let u = 0.797_884_6 * (x + 0.044715 * x * x * x);
    let du = 0.797_884_6 * (1.0 + 3.0 * 0.044715 * x * x);
    let s = 1.0 / (1.0 + exp(-2.0 * u));
    s + x * 2.0 * s * (1.0 - s) * du
}

/// A matrix inside a slice: `Mat(data, rows, cols, rs, cs)` has element
/// `(i, j)` at `data[i·rs + j·cs]`. A transpose swaps the strides; a head's
/// columns are a matrix that starts at an offset.
#[derive(Clone, Copy)]
struct Mat<'a>(&'a [f32], usize, usize, usize, usize);

/// The whole of `data` as rows of `cols` numbers.
fn mat(data: &[f32], cols: usize) -> Mat<'_> {
    Mat(data, data.len() / cols, cols, cols, 1)
}

impl Mat<'_> {
    fn t(self) -> Self {
        Mat(self.0, self.2, self.1, self.4, self.3)
    }
}

/// `out = alpha·a·b`, or `out += alpha·a·b` with `add`; `out`'s rows are
/// `ldo` apart. Each sum is a chain of fused multiply-adds restarted every
/// 256 terms: how matrixmultiply, the library's matrix product, adds on a
/// CPU with fused multiply-add instructions.
fn matmul(out: &mut [f32], ldo: usize, a: Mat, b: Mat, alpha: f32, add: bool) {
    let (Mat(a, m, k, ars, acs), Mat(b, _, n, brs, bcs)) = (a, b);
    for i in 0..m {
        for j in 0..n {
            let mut sum = if add { out[i * ldo + j] } else { 0.0 };
            for start in (0..k).step_by(256) {
                let mut ab = 0.0f32;
                for p in start..k.min(start + 256) {
                    ab = a[i * ars + p * acs].mul_add(b[p * brs + j * bcs], ab);
                }
                sum += alpha * ab;
            }
            out[i * ldo + j] = sum;
        }
    }
}

// ---- The layers and their backward passes (chapters 2 to 5) -----------------

/// A LayerNorm's output, with each row's mean and `1/√(var + 1e-5)`.
struct Norm {
    out: Vec<f32>,
    mean: Vec<f32>,
    rstd: Vec<f32>,
}

/// Each row of `x` to mean 0 and variance 1, then scaled and shifted.
fn layernorm(x: &[f32], p: &Layer) -> Norm {
    let c = p.w.len();
    let (out, mean, rstd) = (vec![0.0; x.len()], vec![], vec![]);
    let mut n = Norm { out, mean, rstd };
    for (x, y) in x.chunks(c).zip(n.out.chunks_mut(c)) {
        let mean = sum16(x.iter().copied()) / c as f32;
        let var = sum16(x.iter().map(|v| (v - mean) * (v - mean))) / c as f32;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for (((y, x), w), b) in y.iter_mut().zip(x).zip(&p.w).zip(&p.b) {
            *y = (x - mean) * rstd * w + b;
        }
        n.mean.push(mean);
        n.rstd.push(rstd);
    }
    n
}

/// LayerNorm backward, adding into `dx` and `g`. With `x̂ = (x - mean)·rstd`:
/// `dx += rstd·(dy·w - mean(dy·w) - x̂·mean(dy·w·x̂))`.
fn layernorm_backward(dx: &mut [f32], g: &mut Layer, dy: &[f32], x: &[f32], p: &Layer, n: &Norm) {
    let (c, w) = (p.w.len(), &p.w);
    let rows = dx.chunks_mut(c).zip(dy.chunks(c)).zip(x.chunks(c));
    for (((dx, dy), x), (&mean, &rstd)) in rows.zip(n.mean.iter().zip(&n.rstd)) {
        let dy_w = sum16(dy.iter().zip(w).map(|(dy, w)| dy * w)) / c as f32;
        let terms = dy.iter().zip(w).zip(x);
        let dy_w_xhat = sum16(terms.map(|((dy, w), x)| dy * w * (x - mean))) * rstd / c as f32;
        for i in 0..c {
            let xhat = (x[i] - mean) * rstd;
            g.b[i] += dy[i];
            g.w[i] += dy[i] * xhat;
            dx[i] += rstd * (dy[i] * w[i] - dy_w - xhat * dy_w_xhat);
        }
    }
}

/// A linear layer on every row: `x·W + b`.
fn linear(x: &[f32], p: &Layer) -> Vec<f32> {
    let (n_out, n_in) = (p.b.len(), p.w.len() / p.b.len());
    let mut out: Vec<f32> = x.chunks(n_in).flat_map(|_| p.b.clone()).collect();
    matmul(&mut out, n_out, mat(x, n_in), mat(&p.w, n_out), 1.0, true);
    out
}

/// Linear backward: returns `dx = dy·Wᵀ`; adds `xᵀ·dy` into `g.w` and the
/// sum of `dy`'s rows into `g.b`.
fn linear_backward(g: &mut Layer, dy: &[f32], x: &[f32], p: &Layer) -> Vec<f32> {
    let (n_out, n_in) = (p.b.len(), p.w.len() / p.b.len());
    let mut dx = vec![0.0; x.len()];
    let (dy, x, w) = (mat(dy, n_out), mat(x, n_in), mat(&p.w, n_out));
    matmul(&mut dx, n_in, dy, w.t(), 1.0, false);
    matmul(&mut g.w, n_out, x.t(), dy, 1.0, true);
    for row in dy.0.chunks(n_out) {
        g.b.iter_mut().zip(row).for_each(|(b, dy)| *b += dy);
    }
    dx
}

/// Causal self-attention, head by head: scores `q·kᵀ/√hs`, a softmax over
/// the positions up to each one, the weighted average of the values.
/// Returns the heads' outputs side by side, `(B, T, C)`, and the weights,
/// `(B, nh, T, T)`.
fn attention(qkv: &[f32], cfg: &Config) -> (Vec<f32>, Vec<f32>) {
    let (t, c, nh) = (cfg.block_size, cfg.n_embd, cfg.n_head);
    let (hs, b) = (c / nh, qkv.len() / (t * 3 * c));
    let scale = 1.0 / (hs as f32).sqrt();
    let (mut out, mut att) = (vec![0.0; b * t * c], vec![0.0; b * nh * t * t]);
    for (s, att) in att.chunks_mut(nh * t * t).enumerate() {
        let head = |at: usize| Mat(&qkv[s * t * 3 * c + at..], t, hs, 3 * c, 1);
        for (h, p) in att.chunks_mut(t * t).enumerate() {
            let (q, k, v) = (head(h * hs), head(c + h * hs), head(2 * c + h * hs));
            matmul(p, t, q, k.t(), scale, false);
            for (i, row) in p.chunks_mut(t).enumerate() {
                let (seen, future) = row.split_at_mut(i + 1);
                let max = seen.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                seen.iter_mut().for_each(|x| *x = exp(*x - max));
                let inv_sum = 1.0 / sum16(seen.iter().copied());
                seen.iter_mut().for_each(|x| *x *= inv_sum);
                future.fill(0.0);
            }
            matmul(&mut out[s * t * c + h * hs..], c, mat(p, t), v, 1.0, false);
        }
    }
    (out, att)
}

/// Attention backward: the gradient of `qkv` from `dy`, its output's. Per
/// head: `dP = dY·Vᵀ`, `dV = Pᵀ·dY`; through the softmax, row by row,
/// `dS = P·(dP - Σ P·dP)`; then `dQ = dS·K/√hs` and `dK = dSᵀ·Q/√hs`.
fn attention_backward(dy: &[f32], qkv: &[f32], att: &[f32], cfg: &Config) -> Vec<f32> {
    let (t, c, nh) = (cfg.block_size, cfg.n_embd, cfg.n_head);
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    let (mut dqkv, mut ds) = (vec![0.0; qkv.len()], vec![0.0; t * t]);
    for (s, dqkv) in dqkv.chunks_mut(t * 3 * c).enumerate() {
        let head = |at: usize| Mat(&qkv[s * t * 3 * c + at..], t, hs, 3 * c, 1);
        for h in 0..nh {
            let (q, k, v) = (h * hs, c + h * hs, 2 * c + h * hs); // the head's columns
            let p = mat(&att[(s * nh + h) * t * t..][..t * t], t);
            let dy = Mat(&dy[s * t * c + h * hs..], t, hs, c, 1);
            matmul(&mut ds, t, dy, head(v).t(), 1.0, false);
            matmul(&mut dqkv[v..], 3 * c, p.t(), dy, 1.0, false);
            for (i, (ds, p)) in ds.chunks_mut(t).zip(p.0.chunks(t)).enumerate() {
                let (seen, future) = ds.split_at_mut(i + 1);
                let dot = sum16(seen.iter().zip(p).map(|(dp, p)| dp * p));
                for (ds, p) in seen.iter_mut().zip(p) {
                    *ds = p * (*ds - dot);
                }
                future.fill(0.0);
            }
            let ds = mat(&ds, t);
            matmul(&mut dqkv[q..], 3 * c, ds, head(k), scale, false);
            matmul(&mut dqkv[k..], 3 * c, ds.t(), head(q), scale, false);
        }
    }
    dqkv
}

// ---- The model: forward pass and loss, backward pass (chapters 4 and 5) -----

/// What one block's forward pass keeps for its backward pass.
struct Acts {
    ln1: Norm,
    qkv: Vec<f32>,
    att: Vec<f32>,
    atty: Vec<f32>,
    res2: Vec<f32>, // the residual stream after attention
    ln2: Norm,
    fch: Vec<f32>,
    fch_gelu: Vec<f32>,
    res3: Vec<f32>, // and after the MLP: the block's output
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(a, b)| a + b).collect()
}

/// A pre-LN block, as GPT-2's: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
fn block_forward(p: &Block, x: &[f32], cfg: &Config) -> Acts {
    let ln1 = layernorm(x, &p.ln1);
    let qkv = linear(&ln1.out, &p.qkv);
    let (atty, att) = attention(&qkv, cfg);
    let res2 = add(x, &linear(&atty, &p.proj));
    let ln2 = layernorm(&res2, &p.ln2);
    let fch = linear(&ln2.out, &p.fc);
    let fch_gelu: Vec<f32> = fch.iter().map(|&x| gelu(x)).collect();
    let res3 = add(&res2, &linear(&fch_gelu, &p.out));
    Acts {
        ln1,
        qkv,
        att,
        atty,
        res2,
        ln2,
        fch,
        fch_gelu,
        res3,
    }
}

/// The block's backward pass: its layers' in reverse. `dx` holds the
/// gradient of the block's output on the way in, of its input on the way
/// out: the residual stream hands its gradient to both branches.
fn block_backward(dx: &mut [f32], g: &mut Block, p: &Block, a: &Acts, x: &[f32], cfg: &Config) {
    let mut dfch = linear_backward(&mut g.out, dx, &a.fch_gelu, &p.out); // of fch_gelu
    for (d, &x) in dfch.iter_mut().zip(&a.fch) {
        *d *= gelu_grad(x); // and through GELU, of fch
    }
    let dln2 = linear_backward(&mut g.fc, &dfch, &a.ln2.out, &p.fc);
    layernorm_backward(dx, &mut g.ln2, &dln2, &a.res2, &p.ln2, &a.ln2);
    let datty = linear_backward(&mut g.proj, dx, &a.atty, &p.proj);
    let dqkv = attention_backward(&datty, &a.qkv, &a.att, cfg);
    let dln1 = linear_backward(&mut g.qkv, &dqkv, &a.ln1.out, &p.qkv);
    layernorm_backward(dx, &mut g.ln1, &dln1, x, &p.ln1, &a.ln1);
}

/// The mean of the losses, added as the library's array crate (ndarray)
/// adds: 8 interleaved sums, paired 0+4, 1+5, 2+6, 3+7, then the tail.
fn mean(xs: &[f32]) -> f32 {
    let (mut p, chunks) = ([0.0f32; 8], xs.chunks_exact(8));
    let tail = chunks.remainder();
    chunks.for_each(|x| p.iter_mut().zip(x).for_each(|(p, x)| *p += x));
    let sum = (0..4).fold(0.0, |acc, i| acc + (p[i] + p[i + 4]));
    tail.iter().fold(sum, |acc, x| acc + x) / xs.len() as f32
}

/// The forward and backward passes on windows `x` with targets `y` (`B·T`
/// token ids each): returns the mean cross-entropy, and adds every
/// parameter's gradient into `g`.
fn forward_backward(p: &Params, g: &mut Params, x: &[usize], y: &[usize], cfg: &Config) -> f32 {
    let (t, c, bt) = (cfg.block_size, cfg.n_embd, x.len());
    let v = p.wte.len() / c;
    // Embeddings: each token's vector plus its position's.
    let mut x0 = vec![0.0; bt * c];
    for (i, (&token, row)) in x.iter().zip(x0.chunks_mut(c)).enumerate() {
        let (te, pe) = (&p.wte[token * c..], &p.wpe[i % t * c..]);
        for ((x, e), p) in row.iter_mut().zip(te).zip(pe) {
            *x = e + p;
        }
    }
    let mut acts: Vec<Acts> = vec![];
    for block in &p.blocks {
        let input = acts.last().map_or(&x0, |a| &a.res3);
        let a = block_forward(block, input, cfg);
        acts.push(a);
    }
    let last = acts.last().map_or(&x0, |a| &a.res3);
    let lnf = layernorm(last, &p.lnf);
    let (wte, lnf_out, mut logits) = (mat(&p.wte, c), mat(&lnf.out, c), vec![0.0; bt * v]);
    matmul(&mut logits, v, lnf_out, wte.t(), 1.0, false); // a score for every token
    // The loss, -ln softmax(z)[target], and its gradient, (softmax(z) - 1) / (B·T)
    // with the 1 at the target only: z is turned into its gradient in place.
    let (mut losses, scale) = (vec![], 1.0 / bt as f32);
    for (z, &target) in logits.chunks_mut(v).zip(y) {
        let max = z.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let z_target = z[target];
        z.iter_mut().for_each(|z| *z = exp(*z - max));
        let sum = sum16(z.iter().copied());
        losses.push(max + sum.ln() - z_target);
        z.iter_mut().for_each(|z| *z *= scale / sum);
        z[target] -= scale;
    }
    // Backward, from the output layer down to the embeddings.
    let (dlogits, mut dlnf) = (mat(&logits, v), vec![0.0; bt * c]);
    matmul(&mut dlnf, c, dlogits, wte, 1.0, false);
    matmul(&mut g.wte, c, dlogits.t(), lnf_out, 1.0, true);
    let mut dx = vec![0.0; bt * c];
    layernorm_backward(&mut dx, &mut g.lnf, &dlnf, last, &p.lnf, &lnf);
    for l in (0..p.blocks.len()).rev() {
        let x = if l == 0 { &x0 } else { &acts[l - 1].res3 };
        block_backward(&mut dx, &mut g.blocks[l], &p.blocks[l], &acts[l], x, cfg);
    }
    for (i, (&token, d)) in x.iter().zip(dx.chunks(c)).enumerate() {
        let (te, pe) = (&mut g.wte[token * c..], &mut g.wpe[i % t * c..]);
        for ((te, pe), d) in te.iter_mut().zip(pe.iter_mut()).zip(d) {
            (*te, *pe) = (*te + d, *pe + d);
        }
    }
    mean(&losses)
}

// ---- Training (chapter 5) ---------------------------------------------------

/// Trains a model on `text` for `steps` steps, its weights and its batches
/// both seeded with `seed`; calls `log(step, loss)` after every step.
/// Returns the trained weights and every step's loss.
pub fn train(
    text: &str,
    cfg: &Config,
    steps: usize,
    seed: u64,
    mut log: impl FnMut(usize, f32),
) -> (Params, Vec<f32>) {
    // Tokens: the text's distinct characters, sorted; a character's id is its place.
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    let id = |ch| chars.binary_search(&ch).unwrap();
    let ids: Vec<usize> = text.chars().map(id).collect();
    let (t, b) = (cfg.block_size, cfg.batch_size);
    let data = &ids[..(ids.len() as f64 * 0.9) as usize]; // the first 90%; the rest validates
    assert!(ids.len() - data.len() > t, "the text is too short");
    let mut params = Params::new(chars.len(), cfg, seed);
    let zero = |p: &mut Params| p.tensors().into_iter().for_each(|(t, _)| t.fill(0.0));
    let mut grads = params.clone();
    zero(&mut grads);
    let (mut m, mut v) = (grads.clone(), grads.clone()); // AdamW's running means
    let (mut rng, mut losses) = (Rng::new(seed), vec![]);
    for step in 0..steps {
        // A batch: B random windows of T tokens, and the same shifted by one.
        let (mut x, mut y) = (vec![], vec![]);
        for _ in 0..b {
            let i = rng.up_to(data.len() - t - 1);
            x.extend(&data[i..i + t]);
            y.extend(&data[i + 1..i + t + 1]);
        }
        zero(&mut grads);
        let loss = forward_backward(&params, &mut grads, &x, &y, cfg);
        // Clip the gradients' global norm (its sum of squares in f64).
        let mut gs = grads.tensors();
        let mut sum_sq = 0.0;
        for (g, _) in &gs {
            sum_sq += g.iter().map(|&x| x as f64 * x as f64).sum::<f64>();
        }
        let clip = cfg.grad_clip / (sum_sq.sqrt() as f32 + 1e-6);
        if cfg.grad_clip > 0.0 && clip < 1.0 {
            for (g, _) in &mut gs {
                g.iter_mut().for_each(|g| *g *= clip);
            }
        }
        // The learning rate: linear warm-up, then a cosine decay to min_lr.
        let (lr0, warmup) = (cfg.learning_rate, cfg.warmup_iters);
        let lr = if step < warmup {
            lr0 * (step + 1) as f32 / (warmup + 1) as f32
        } else {
            let ratio = (step - warmup) as f32 / (steps - warmup).max(1) as f32;
            cfg.min_lr + 0.5 * (1.0 + (PI * ratio).cos()) * (lr0 - cfg.min_lr)
        };
        // AdamW: running means of g and g², corrected for starting at 0; a
        // step of lr·m̂/(√v̂ + ε); and matrices shrunk towards 0 on the side.
        let (b1, b2, n) = (cfg.beta1, cfg.beta2, step as i32 + 1);
        let (bc1, bc2) = (1.0 - b1.powi(n), 1.0 - b2.powi(n));
        let moments = m.tensors().into_iter().zip(v.tensors());
        let tensors = params.tensors().into_iter().zip(gs).zip(moments);
        for (((w, matrix), (g, _)), ((m, _), (v, _))) in tensors {
            let decay = if matrix { cfg.weight_decay } else { 0.0 };
            let (shrink, mv) = (1.0 - lr * decay, m.iter_mut().zip(v.iter_mut()));
            for ((w, g), (m, v)) in w.iter_mut().zip(g.iter()).zip(mv) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *w = *w * shrink - lr * (*m / bc1) / ((*v / bc2).sqrt() + 1e-8);
            }
        }
        log(step, loss);
        losses.push(loss);
    }
    (params, losses)
}

#[allow(dead_code)] // the book's tests use this file as a module, without `main`
fn main() {
    let mut args = std::env::args().skip(1);
    let text = match args.next() {
        Some(path) => std::fs::read_to_string(&path).expect("a readable text file"),
        None => "The cat sat on the mat. The dog sat on the log. \n".repeat(40),
    };
    let steps = args.next().map_or(500, |s| s.parse().unwrap());
    train(&text, &Config::default(), steps, 1337, |step, loss| {
        if step % 25 == 0 || step == steps - 1 {
            println!("step {step:4}: loss {loss:.4}");
        }
    });
}
