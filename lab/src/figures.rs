//! Every figure of the book, and the run that draws it.
//!
//! `cargo xtask figures` (or `cargo run --release -p lab -- [NAME...]`)
//! draws them into `src/figures/`.

use std::path::Path;

use anyhow::Result;

/// One figure of the book: the file it is written to, and the run that
/// draws it.
pub struct Figure {
    /// The SVG file name under `src/figures/`.
    pub file: &'static str,
    /// What it shows, in a few words.
    pub what: &'static str,
    /// Runs the experiment and writes the SVG to the given path.
    pub draw: fn(&Path) -> Result<()>,
}

/// Every figure of the book, in chapter order.
pub fn all() -> Vec<Figure> {
    vec![
        Figure {
            file: "tokens-compression.svg",
            what: "chapter 1: bytes per token against vocabulary size, the book's BPE",
            draw: crate::tokens::compression,
        },
        Figure {
            file: "tokens-languages.svg",
            what: "chapter 1: tokens for the same sentences in eleven languages, three encodings",
            draw: crate::tokens::languages,
        },
        Figure {
            file: "embeddings-projection.svg",
            what: "chapter 2: the book model's embeddings of 37 words in six categories, projected to 2-D",
            draw: crate::embeddings::projection_figure,
        },
        Figure {
            file: "embeddings-positions.svg",
            what: "chapter 2: cosine similarity between the book model's 64 learned position vectors",
            draw: crate::embeddings::positions_figure,
        },
        Figure {
            file: "attention-map-block0-head3.svg",
            what: "chapter 3: block 0, head 3 of the trained book model on a sentence of the corpus",
            draw: crate::attention::map_block0_head3,
        },
        Figure {
            file: "attention-map-block0-head0.svg",
            what: "chapter 3: block 0, head 0 of the trained book model on a sentence of the corpus",
            draw: crate::attention::map_block0_head0,
        },
        Figure {
            file: "attention-map-block1-head2.svg",
            what: "chapter 3: block 1, head 2 of the trained book model on a sentence of the corpus",
            draw: crate::attention::map_block1_head2,
        },
        Figure {
            file: "attention-cost.svg",
            what: "chapter 3: time of attention and of the toy model's forward pass against sequence length",
            draw: crate::attention::attention_cost,
        },
        Figure {
            file: "transformer-architecture.svg",
            what: "chapter 4: the book model's architecture, boxes and arrows with the shapes its config gives",
            draw: crate::transformer::architecture_figure,
        },
        Figure {
            file: "transformer-parameters.svg",
            what: "chapter 4: the share of parameters in embeddings, attention, MLP and LayerNorm, toy model to GPT-2 XL",
            draw: crate::transformer::parameter_share,
        },
        Figure {
            file: "training-loss.svg",
            what: "chapter 5: the book model's training and validation loss, step by step",
            draw: crate::training::loss_curve,
        },
        Figure {
            file: "training-lr.svg",
            what: "chapter 5: the learning rate of every step of the book model's run",
            draw: crate::training::lr_schedule,
        },
        Figure {
            file: "training-optimizers.svg",
            what: "chapter 5: the toy model's loss with SGD, momentum and AdamW",
            draw: crate::training::optimizers,
        },
        Figure {
            file: "training-overfitting.svg",
            what: "chapter 5: training and validation loss of a model trained on 2,000 tokens",
            draw: crate::training::overfitting,
        },
        Figure {
            file: "finetune-scratch.svg",
            what: "chapter 6: test-answer loss while tuning, from the book model and from fresh weights",
            draw: crate::finetuning::scratch_figure,
        },
        Figure {
            file: "finetune-classifier.svg",
            what: "chapter 6: the region classifier's accuracy against labelled towns",
            draw: crate::finetuning::classifier_figure,
        },
        Figure {
            file: "finetune-dpo.svg",
            what: "chapter 6: DPO's reward margin step by step, at two values of beta",
            draw: crate::finetuning::dpo_figure,
        },
        Figure {
            file: "inference-distribution.svg",
            what: "chapter 7: the book model's next-token probabilities under temperature and top-p",
            draw: crate::inference::distribution_figure,
        },
        Figure {
            file: "inference-kv-cache.svg",
            what: "chapter 7: time per new token with and without the KV cache, GPT-2 small's shape (timed)",
            draw: crate::inference::kv_figure,
        },
        Figure {
            file: "inference-speculative.svg",
            what: "chapter 7: speculative decoding's tokens per target pass, measured and predicted",
            draw: crate::inference::speculative_figure,
        },
        Figure {
            file: "inference-batching.svg",
            what: "chapter 7: decode throughput against the batch size (timed)",
            draw: crate::inference::batching_figure,
        },
        Figure {
            file: "limits-reliability.svg",
            what: "chapter 8: the book model's reliability diagram, before and after temperature scaling",
            draw: crate::limits::facts::reliability_figure,
        },
        Figure {
            file: "limits-lengths.svg",
            what: "chapter 8: exact sums by the numbers' length, in three notations",
            draw: crate::limits::lengths::length_figure,
        },
        Figure {
            file: "limits-context-wall.svg",
            what: "chapter 8: held-out loss by position past the training length, for five kinds of position",
            draw: crate::limits::context::context_wall_figure,
        },
        Figure {
            file: "limits-recall.svg",
            what: "chapter 8: recall of a value from a list of pairs, by the queried pair's position",
            draw: crate::limits::context::recall_figure,
        },
        Figure {
            file: "limits-induction.svg",
            what: "chapter 8: loss on the first pass and on the repeats while attention-only models train",
            draw: crate::limits::induction::induction_figure,
        },
        Figure {
            file: "limits-induction-head.svg",
            what: "chapter 8: the attention weights of an induction head on a repeated run of random tokens",
            draw: crate::limits::induction::induction_pattern_figure,
        },
        Figure {
            file: "scaling-isoflop.svg",
            what: "chapter 9: held-out loss against parameters at three compute budgets, L(N, D) fitted",
            draw: crate::scaling::laws::isoflop_figure,
        },
        Figure {
            file: "scaling-fit.svg",
            what: "chapter 9: the compute-optimal loss of each budget against its size, L(N) fitted",
            draw: crate::scaling::laws::fit_figure,
        },
        Figure {
            file: "precision-loss.svg",
            what: "chapter 9: the toy model's loss in fp32, bf16 and fp16, without and with loss scaling",
            draw: crate::scaling::precision::loss_figure,
        },
    ]
}
