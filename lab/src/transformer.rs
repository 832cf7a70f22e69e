//! Chapter 4's figure, drawn from the parameter counts of the book's code.

use std::path::Path;

use anyhow::Result;

use crate::plot::{Axes, Bars, bar_chart};
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

#[cfg(test)]
mod tests {
    use super::*;

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
