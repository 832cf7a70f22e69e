#!/usr/bin/env python3
"""Load the book model's Hugging Face folder with transformers and compare.

`cargo xtask check-hf` runs this after `lab hf-export DIR`, which wrote

    DIR/model/     the book model and its tokenizer, as `listings export --hf` writes them
    DIR/book.json  what the book's own code computes: the prompt's token ids, the
                   logits at every position, the greedy continuation, and the
                   held-out tenth of the corpus with its token ids

Usage: python check_hf.py DIR. It prints a few lines the book quotes and exits
non-zero if transformers warns while loading, if a token id differs, if the
greedy continuations differ, or if a logit differs by 1e-4 or more.
"""

import json
import os
import sys
import warnings

import tokenizers
import torch
import transformers
from transformers import AutoTokenizer, GPT2LMHeadModel, GPT2TokenizerFast

TOLERANCE = 1e-4


def quiet_load(loader, folder):
    """Loads with `loader`, failing on any warning transformers logs or raises."""
    messages = []

    class Keep(transformers.logging.logging.Handler):
        def emit(self, record):
            if record.levelno >= transformers.logging.WARNING:
                messages.append(record.getMessage())

    handler = Keep()
    logger = transformers.logging.get_logger()
    logger.addHandler(handler)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        loaded = loader(folder)
    logger.removeHandler(handler)
    messages += [str(w.message) for w in warned]
    if messages:
        sys.exit(f"loading {folder} warned: {messages}")
    return loaded


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b)) if len(a) != len(b) else None


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check_hf.py DIR (written by `lab hf-export DIR`)")
    root = sys.argv[1]
    folder = os.path.join(root, "model")
    with open(os.path.join(root, "book.json")) as f:
        book = json.load(f)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_warning()
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__}")

    # ANCHOR: load
    model = quiet_load(GPT2LMHeadModel.from_pretrained, folder)
    model.eval()
    tok = quiet_load(AutoTokenizer.from_pretrained, folder)
    # ANCHOR_END: load
    c = model.config
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"loaded {type(model).__name__} (n_layer {c.n_layer}, n_head {c.n_head}, n_embd {c.n_embd}, "
        f"{n_params:,} parameters) and {type(tok).__name__} ({len(tok):,} tokens)"
    )
    failed = []

    # The tokenizer, on text the model never trained on.
    text, want = book["heldout_text"], book["heldout_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # longer than the context: only tokenizing
        transformers.logging.set_verbosity_error()
        ids = tok.encode(text)
        gpt2_fast = GPT2TokenizerFast.from_pretrained(folder).encode(text)
        transformers.logging.set_verbosity_warning()
    same = ids == want
    print(
        f"tokenizer on the held-out text ({len(text):,} characters): {len(ids):,} tokens, "
        + ("the book's ids exactly" if same else f"first difference at token {first_difference(ids, want)}")
    )
    if not same:
        failed.append("token ids")
    differ = first_difference(gpt2_fast, want)
    if differ is not None:
        print(
            f"  (GPT2TokenizerFast, which cuts text with GPT-2's own pattern: {len(gpt2_fast):,} "
            f"tokens, the first different at token {differ})"
        )
    if tok.decode(ids) != text:
        failed.append("decoding")
        print("decoding the ids does not give the text back")

    # The logits, at every position of the prompt.
    prompt, input_ids = book["prompt"], book["input_ids"]
    if tok.encode(prompt) != input_ids:
        failed.append("prompt ids")
    # ANCHOR: logits
    with torch.no_grad():
        logits = model(torch.tensor([input_ids])).logits[0]  # (T, V)
    ours = torch.tensor(book["logits"])
    diff = (logits - ours).abs().max().item()
    # ANCHOR_END: logits
    t, v = logits.shape
    print(f"prompt {prompt!r}: {t} tokens {input_ids}")
    print(f"largest |logit difference| over {t} positions x {v:,} tokens: {diff:.1e}")
    if not diff < TOLERANCE:
        failed.append("logits")
    theirs_top, ours_top = logits[-1].argmax().item(), ours[-1].argmax().item()
    print(
        f"top next token: book {tok.decode([ours_top])!r} (id {ours_top}, logit {ours[-1, ours_top]:.3f}), "
        f"transformers {tok.decode([theirs_top])!r} (id {theirs_top}, logit {logits[-1, theirs_top]:.3f})"
    )
    if theirs_top != ours_top:
        failed.append("top token")

    # Greedy decoding, both ways: the likeliest token, again and again (a
    # plain loop, as the book's; generate() would stop at <|endoftext|>).
    new = len(book["generated"]) - len(input_ids)
    generated = list(input_ids)
    with torch.no_grad():
        for _ in range(new):
            generated.append(model(torch.tensor([generated])).logits[0, -1].argmax().item())
    same = generated == book["generated"]
    print(
        f"greedy, {new} new tokens: transformers {tok.decode(generated)!r}, "
        + ("the book's exactly" if same else f"book {book['generated_text']!r}")
    )
    if not same:
        failed.append("greedy continuation")

    if failed:
        sys.exit("FAILED: " + ", ".join(failed))
    print("transformers computes what the book computes")


if __name__ == "__main__":
    main()
