//! Chapter 4's figures: the model's architecture, drawn from its config,
//! and where its parameters sit, drawn from the parameter counts of the
//! book's code.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::style::RGBColor;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::plot::{Axes, Bars, Diagram, PALETTE, bar_chart};
use listings::model::{GptConfig, parameter_breakdown};
use listings::tokens::BOOK_VOCAB_SIZE;

// ANCHOR: table_models
/// The models of chapter 4's parameter table, with the names the chapter
/// gives them: the book's toy and baby models (with the book's vocabulary)
/// and the four sizes of GPT-2.
pub fn table_models() -> [(&'static str, GptConfig); 6] {
    [
        ("toy", GptConfig::toy(BOOK_VOCAB_SIZE)),
        ("baby", GptConfig::baby(BOOK_VOCAB_SIZE)),
        ("GPT-2 small", GptConfig::gpt2()),
        ("GPT-2 medium", GptConfig::gpt2_medium()),
        ("GPT-2 large", GptConfig::gpt2_large()),
        ("GPT-2 XL", GptConfig::gpt2_xl()),
    ]
}
// ANCHOR_END: table_models

// ANCHOR: parameter_shares
/// The share of a model's parameters, in percent, held by its embedding
/// tables (`wte` and `wpe`), its attention layers, its MLPs and its
/// LayerNorms (the blocks' and `ln_f`), in that order. The four add up to 100.
pub fn parameter_shares(config: &GptConfig) -> [f64; 4] {
    let p = parameter_breakdown(config);
    let l = config.n_layer;
    let counts = [
        p.wte + p.wpe,
        l * p.attention_per_layer,
        l * p.mlp_per_layer,
        l * p.layer_norms_per_layer + p.ln_f,
    ];
    counts.map(|n| 100.0 * n as f64 / p.total as f64)
}
// ANCHOR_END: parameter_shares

/// Figure: where the parameters sit, as a share of each model's total, for
/// the toy and baby models and GPT-2's four sizes. The groups are the kinds
/// of parameter, from the smallest share in GPT-2 XL to the largest; the bars
/// in each group are the models, smallest first.
pub fn parameter_share(path: &Path) -> Result<()> {
    let models = table_models();
    let shares: Vec<[f64; 4]> = models.iter().map(|(_, c)| parameter_shares(c)).collect();
    // Indices into `parameter_shares`'s order, and the group labels.
    let kinds = [
        (3, "LayerNorm"),
        (0, "embeddings (wte, wpe)"),
        (1, "attention"),
        (2, "MLP"),
    ];
    let series: Vec<Bars> = models
        .iter()
        .zip(&shares)
        .map(|((name, _), share)| Bars {
            name,
            values: kinds.iter().map(|&(k, _)| share[k]).collect(),
        })
        .collect();
    let groups: Vec<&str> = kinds.iter().map(|&(_, label)| label).collect();
    let axes = Axes {
        title: "Where the parameters sit",
        x_label: "kind of parameter",
        y_label: "share of the model's parameters (%)",
        log_y: false,
        log_x: false,
    };
    bar_chart(path, &axes, &groups, &series)
}

/// The shapes of a GPT's weights and arrays, worked out from its config:
/// what the architecture figure writes in its boxes.
///
/// Weights are `[rows, columns]` as the model stores them. An array of
/// activations leaves out its first axis, the `B` sequences of a batch, and
/// is shown for sequences of the longest length the model takes,
/// `block_size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchitectureShapes {
    /// The token ids, `[T]`.
    pub ids: [usize; 1],
    /// The token embedding table, `[V, C]`.
    pub wte: [usize; 2],
    /// The position embedding table, `[T, C]`.
    pub wpe: [usize; 2],
    /// The residual stream, `[T, C]`.
    pub stream: [usize; 2],
    /// A LayerNorm's weight (and its bias), `[C]`.
    pub layer_norm: [usize; 1],
    /// The weight that makes queries, keys and values, `[C, 3C]`.
    pub c_attn: [usize; 2],
    /// The queries, keys and values side by side, `[T, 3C]`.
    pub qkv: [usize; 2],
    /// The attention weights, one `T × T` table per head, `[H, T, T]`.
    pub att: [usize; 3],
    /// The channels of one head, `C / H`.
    pub head_size: usize,
    /// Attention's output projection, `[C, C]`.
    pub attn_proj: [usize; 2],
    /// The MLP's first layer, `[C, 4C]`.
    pub c_fc: [usize; 2],
    /// The MLP's wide middle, `[T, 4C]`.
    pub fch: [usize; 2],
    /// The MLP's second layer, `[4C, C]`.
    pub mlp_proj: [usize; 2],
    /// The scores for the next token, `[T, V]`.
    pub logits: [usize; 2],
    /// The number of blocks, `L`.
    pub n_layer: usize,
}

/// [`ArchitectureShapes`] of a model with this config; an error if the
/// config is one no model can have (see [`GptConfig::validate`]).
pub fn architecture_shapes(config: &GptConfig) -> Result<ArchitectureShapes> {
    config.validate().map_err(|e| anyhow!("{e}"))?;
    let GptConfig {
        vocab_size: v,
        block_size: t,
        n_layer,
        n_head: h,
        n_embd: c,
    } = *config;
    Ok(ArchitectureShapes {
        ids: [t],
        wte: [v, c],
        wpe: [t, c],
        stream: [t, c],
        layer_norm: [c],
        c_attn: [c, 3 * c],
        qkv: [t, 3 * c],
        att: [h, t, t],
        head_size: config.head_size(),
        attn_proj: [c, c],
        c_fc: [c, 4 * c],
        fch: [t, 4 * c],
        mlp_proj: [4 * c, c],
        logits: [t, v],
        n_layer,
    })
}

/// A weight's shape as the figure writes it: `(64, 192)`.
fn weight(dims: &[usize]) -> String {
    let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
    format!("({})", dims.join(", "))
}

/// An array of activations as the figure writes it, the batch first:
/// `(B, 64, 192)`.
fn batched(dims: &[usize]) -> String {
    let dims: Vec<String> = dims.iter().map(usize::to_string).collect();
    format!("(B, {})", dims.join(", "))
}

/// Draws the architecture of a GPT with this config as boxes and arrows,
/// from the token ids at the top to the logits at the bottom: the
/// embeddings, one block (with the number of blocks), `ln_f` and the tied
/// output layer. Each box holds the shapes of its weights, and the arrays
/// between boxes are labelled with theirs, all worked out from `config` by
/// [`architecture_shapes`].
pub fn architecture(path: &Path, config: &GptConfig) -> Result<()> {
    let s = architecture_shapes(config)?;
    let grey = RGBColor(96, 96, 96);
    let [embedding, attention, mlp, norm] = [PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[3]];
    // The main column of boxes, the residual bypasses on its left, and the
    // tied-weights line further left.
    let (cx, width) = (420, 380);
    let (bypass, tied) = (195, 125);
    let d = Diagram::new(path, (760, 1016), "A GPT's forward pass, with its shapes")?;
    d.text(
        &format!("{config:?}"),
        (380, 46),
        Pos::new(HPos::Center, VPos::Top),
    )?;
    let label = |text: &str, y: i32| d.text(text, (cx + 12, y), Pos::new(HPos::Left, VPos::Center));

    // Token ids, the two tables, their sum.
    let ids = format!(
        "{}: up to {} ids per sequence, each below {}",
        batched(&s.ids),
        s.ids[0],
        s.wte[0]
    );
    d.boxed((cx, 103), (width, 46), &["token ids", &ids], grey)?;
    let wte = weight(&s.wte);
    let wpe = weight(&s.wpe);
    let positions = format!("positions 0 to {}", s.wpe[0] - 1);
    for (x, lines, looks_up) in [
        (cx - 100, ["wte: a row per token", wte.as_str()], "ids"),
        (
            cx + 100,
            ["wpe: a row per position", wpe.as_str()],
            &positions,
        ),
    ] {
        d.arrow(&[(x, 126), (x, 156)])?;
        d.text(looks_up, (x + 8, 141), Pos::new(HPos::Left, VPos::Center))?;
        d.boxed((x, 179), (190, 46), &lines, embedding)?;
    }
    d.plus((cx, 232))?;
    d.arrow(&[(cx - 100, 202), (cx - 100, 232), (cx - 11, 232)])?;
    d.arrow(&[(cx + 100, 202), (cx + 100, 232), (cx + 11, 232)])?;
    d.arrow(&[(cx, 243), (cx, 322)])?;
    label(&format!("x: (B, T, C) = {}", batched(&s.stream)), 262)?;

    // One block, drawn once, repeated n_layer times.
    d.group((165, 275), (655, 772), grey)?;
    d.text(
        &format!("block, × {} (n_layer)", s.n_layer),
        (175, 283),
        Pos::new(HPos::Left, VPos::Top),
    )?;
    let ln = format!("weight and bias {}", weight(&s.layer_norm));
    let head = format!(
        "causal self-attention: {} heads of {}",
        s.att[0], s.head_size
    );
    let c_attn = format!("c_attn {} → q, k, v {}", weight(&s.c_attn), batched(&s.qkv));
    let att = format!("attention weights {}", batched(&s.att));
    let attn_proj = format!("c_proj {} → {}", weight(&s.attn_proj), batched(&s.stream));
    let c_fc = format!("c_fc {} → GELU → {}", weight(&s.c_fc), batched(&s.fch));
    let mlp_proj = format!("c_proj {} → {}", weight(&s.mlp_proj), batched(&s.stream));
    // Each half of the block: a split of the stream, a LayerNorm, a layer,
    // and the sum of its output with the stream that bypassed it.
    let halves = [
        (
            300,
            "ln_1: LayerNorm",
            vec![head.as_str(), &c_attn, &att, &attn_proj],
            attention,
            515,
        ),
        (
            546,
            "ln_2: LayerNorm",
            vec!["MLP", &c_fc, &mlp_proj],
            mlp,
            747,
        ),
    ];
    for (split, ln_name, lines, colour, sum) in halves {
        let ln_top = split + 22;
        let ln_bottom = ln_top + 46;
        d.boxed((cx, ln_top + 23), (width, 46), &[ln_name, &ln], norm)?;
        let height = 18 * lines.len() as i32 + 18;
        let (top, bottom) = (ln_bottom + 22, ln_bottom + 22 + height);
        d.arrow(&[(cx, ln_bottom), (cx, top)])?;
        d.boxed((cx, (top + bottom) / 2), (width, height), &lines, colour)?;
        d.arrow(&[(cx, bottom), (cx, sum - 11)])?;
        d.arrow(&[(cx, split), (bypass, split), (bypass, sum), (cx - 11, sum)])?;
        d.dot((cx, split))?;
        d.text_up("residual", (bypass - 12, (split + sum) / 2))?;
        d.plus((cx, sum))?;
    }
    d.arrow(&[(cx, 526), (cx, 568)])?;
    d.arrow(&[(cx, 758), (cx, 810)])?;
    label(&batched(&s.stream), 790)?;

    // The end: ln_f, the tied output layer, the logits.
    d.boxed((cx, 833), (width, 46), &["ln_f: LayerNorm", &ln], norm)?;
    d.arrow(&[(cx, 856), (cx, 880)])?;
    let head_shape = format!(
        "{} = wte transposed, no weights of its own",
        weight(&[s.wte[1], s.wte[0]])
    );
    d.boxed((cx, 903), (width, 46), &["lm_head", &head_shape], embedding)?;
    d.arrow(&[(cx, 926), (cx, 950)])?;
    let logits = format!(
        "{}: a score for each of {} tokens",
        batched(&s.logits),
        s.logits[1]
    );
    d.boxed((cx, 973), (width, 46), &["logits", &logits], grey)?;
    d.dashed(
        &[
            (cx - 195, 179),
            (tied, 179),
            (tied, 903),
            (cx - width / 2, 903),
        ],
        embedding,
    )?;
    d.text_up("tied: lm_head reuses wte's array", (tied - 12, 540))?;
    d.finish()
}

/// Figure: the architecture of the book's model
/// ([`crate::book_model::book_model_config`]), with its shapes.
pub fn architecture_figure(path: &Path) -> Result<()> {
    architecture(path, &crate::book_model::book_model_config())
}

#[cfg(test)]
mod tests {
    use super::*;
    use listings::model::{Activations, GptParams};

    #[test]
    fn the_architecture_shows_the_shapes_its_config_gives() {
        let toy = GptConfig::toy(BOOK_VOCAB_SIZE);
        let baby = GptConfig::baby(BOOK_VOCAB_SIZE);
        let dir = std::env::temp_dir().join(format!("lab-architecture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut drawings = Vec::new();
        for (name, config) in [("toy", toy), ("baby", baby)] {
            // The shapes agree with the tensors and arrays the model allocates.
            let s = architecture_shapes(&config).unwrap();
            let specs = GptParams::specs(&config);
            let weight_of = |name: &str| {
                let spec = specs.iter().find(|p| p.name == name).unwrap();
                spec.shape.clone()
            };
            assert_eq!(weight_of("transformer.wte.weight"), s.wte);
            assert_eq!(weight_of("transformer.wpe.weight"), s.wpe);
            assert_eq!(weight_of("transformer.h.0.ln_1.weight"), s.layer_norm);
            assert_eq!(weight_of("transformer.h.0.attn.c_attn.weight"), s.c_attn);
            assert_eq!(weight_of("transformer.h.0.attn.c_proj.weight"), s.attn_proj);
            assert_eq!(weight_of("transformer.h.0.mlp.c_fc.weight"), s.c_fc);
            assert_eq!(weight_of("transformer.h.0.mlp.c_proj.weight"), s.mlp_proj);
            let (b, t) = (2, config.block_size);
            let acts = Activations::new(&config, b, t);
            let batch = |dims: &[usize]| [&[b][..], dims].concat();
            assert_eq!(acts.encoded.shape(), batch(&s.stream));
            assert_eq!(acts.layers[0].qkv.shape(), batch(&s.qkv));
            assert_eq!(acts.layers[0].att.shape(), batch(&s.att));
            assert_eq!(acts.layers[0].fch.shape(), batch(&s.fch));
            assert_eq!(acts.logits.shape(), batch(&s.logits));
            assert_eq!(acts.layers.len(), s.n_layer);
            let path = dir.join(format!("{name}.svg"));
            architecture(&path, &config).unwrap();
            drawings.push(std::fs::read_to_string(&path).unwrap());
        }
        // And the drawing shows them, for each config its own.
        let toy_shapes = [
            "(2048, 64)",
            "(64, 192)",
            "(B, 64, 192)",
            "(B, 4, 64, 64)",
            "(64, 256)",
            "(256, 64)",
            "(64, 2048)",
            "(B, 64, 2048)",
            "block, × 2",
            "4 heads of 16",
        ];
        let baby_shapes = [
            "(2048, 128)",
            "(128, 384)",
            "(B, 64, 384)",
            "(B, 4, 64, 64)",
            "(128, 512)",
            "(512, 128)",
            "(128, 2048)",
            "(B, 64, 2048)",
            "block, × 4",
            "4 heads of 32",
        ];
        for shape in toy_shapes {
            assert!(drawings[0].contains(shape), "toy: no {shape}");
        }
        for shape in baby_shapes {
            assert!(drawings[1].contains(shape), "baby: no {shape}");
        }
        for shape in ["(64, 192)", "(64, 256)", "block, × 2"] {
            assert!(!drawings[1].contains(shape), "baby shows the toy's {shape}");
        }
        let odd = GptConfig { n_embd: 90, ..toy };
        assert!(architecture(&dir.join("odd.svg"), &odd).is_err());
    }

    #[test]
    fn shares_add_up_to_one_hundred_and_mlp_is_twice_attention() {
        for (name, config) in table_models() {
            let s = parameter_shares(&config);
            assert!((s.iter().sum::<f64>() - 100.0).abs() < 1e-9, "{name}");
            // 8C² + 5C against 4C² + 4C: close to two to one.
            assert!((s[2] / s[1] - 2.0).abs() < 0.05, "{name}");
        }
    }
}
