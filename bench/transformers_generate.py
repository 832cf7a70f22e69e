"""GPT-2 small's shape in Hugging Face transformers, writing greedily with
and without the KV cache: the twin of `listings/examples/bench_infer.rs`'s
GPT-2 run, for a same-machine comparison.

The model is `GPT2LMHeadModel(GPT2Config())`, GPT-2 small (12 layers,
768 wide, 1,024 tokens of context, 124M parameters), with the random
weights of `torch.manual_seed(1337)`, in f32, on 2 threads
(`torch.set_num_threads(2)`). The prompt is random tokens, `--context`
(1,024) minus `--new` (64) of them, so that prompt and new tokens fill the
context. After one warm-up generation it times
`model.generate(prompt, do_sample=False, use_cache=..., max_new_tokens=N,
min_new_tokens=N)`: `--new` tokens with the cache (`--reps` runs, default
3), `--uncached-new` (8) without it (one run: each uncached pass recomputes
the whole context, so a few tokens measure it as well). A logits processor
notes the time each pass's logits arrive, which splits each run as
bench_infer's `Generation` does:

- prefill: from the call to the first pass's logits (the forward pass on
  the whole prompt), in prompt tokens per second, the median over all runs;
- decode: from there to the end, the N - 1 later tokens, one pass each, in
  tokens per second (median over the cached runs).

It prints bench_infer's lines for that shape, with the versions.

    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch transformers
    /tmp/hf/bin/python bench/transformers_generate.py
    /tmp/hf/bin/python bench/transformers_generate.py --quick

It is not part of the book's build or tests, which never need Python.
"""

import argparse
import time

import statistics

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessor, LogitsProcessorList


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown (no /proc/cpuinfo)"


def tokens(n):
    return f"{n} token{'' if n == 1 else 's'}"


def rate(x):
    """A speed with three significant digits or more: 15952, 33.8, 0.291."""
    decimals = 0 if x >= 100 else 1 if x >= 10 else 2 if x >= 1 else 3
    return f"{x:.{decimals}f}"


class Stamp(LogitsProcessor):
    """Notes when each forward pass's logits arrive; changes nothing."""

    def __init__(self):
        self.times = []

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        return scores


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--context", type=int, default=1024, help="prompt plus new tokens")
    p.add_argument("--new", type=int, default=64, help="new tokens with the cache")
    p.add_argument("--uncached-new", type=int, default=8, help="new tokens without the cache")
    p.add_argument("--reps", type=int, default=3, help="runs with the cache")
    p.add_argument("--quick", action="store_true", help="context 128, 8 and 2 new tokens, 1 run")
    args = p.parse_args()
    if args.quick:
        args.context, args.new, args.uncached_new, args.reps = 128, 8, 2, 1
    if args.new < 2 or args.uncached_new < 2:
        p.error("--new and --uncached-new must be at least 2: the first token is the prefill's")
    if not args.new < args.context <= 1024:
        p.error("--context must be at most GPT-2's 1024 and more than --new")
    if args.reps < 1:
        p.error("--reps must be at least 1")

    torch.set_num_threads(2)
    torch.manual_seed(1337)
    print(f"CPU: {cpu_model()}; threads: {torch.get_num_threads()} (torch.set_num_threads(2))")
    start = time.perf_counter()
    config = GPT2Config()
    model = GPT2LMHeadModel(config).eval()
    made = time.perf_counter() - start
    n_params = model.num_parameters()
    print(
        f"GPT-2 124M shape: {config.n_layer} layers, {config.n_head} heads, n_embd "
        f"{config.n_embd}, vocab {config.vocab_size}, context {config.n_positions}; "
        f"{n_params:,} parameters, random (made in {made:.1f} s)"
    )
    prompt_len = args.context - args.new
    runs = "one run each" if args.reps == 1 else f"medians of {args.reps} cached runs, one uncached"
    print(
        f"  a random prompt of {prompt_len} tokens in one pass, then greedy decoding: "
        f"{args.new} new tokens with the KV cache, {args.uncached_new} without; {runs}"
    )
    prompt = torch.randint(
        0, config.vocab_size, (1, prompt_len), generator=torch.Generator().manual_seed(7)
    )
    mask = torch.ones_like(prompt)

    def generate(n, use_cache):
        """Seconds of the prefill (to the first logits) and of the rest."""
        stamp = Stamp()
        start = time.perf_counter()
        out = model.generate(
            prompt,
            attention_mask=mask,
            do_sample=False,
            use_cache=use_cache,
            max_new_tokens=n,
            min_new_tokens=n,
            pad_token_id=config.eos_token_id,
            logits_processor=LogitsProcessorList([stamp]),
        )
        end = time.perf_counter()
        assert out.shape[1] == prompt_len + n and len(stamp.times) == n
        return stamp.times[0] - start, end - stamp.times[0]

    with torch.inference_mode():
        generate(2, True)  # warm-up
        runs = [generate(args.new, True) for _ in range(args.reps)]
        uncached_prefill, uncached_decode = generate(args.uncached_new, False)
    prefill = statistics.median([prompt_len / p for p, _ in runs] + [prompt_len / uncached_prefill])
    cached = statistics.median([(args.new - 1) / d for _, d in runs])
    uncached = (args.uncached_new - 1) / uncached_decode
    attention = getattr(model.config, "_attn_implementation", "?")
    print(
        f"  f32 (PyTorch {torch.__version__}, transformers {transformers.__version__}, "
        f"{attention} attention): weights {n_params * 4 / 1e6:.1f} MB; prefill "
        f"{tokens(prompt_len)} at {rate(prefill)} tokens/s; decode with KV cache "
        f"{tokens(args.new - 1)} at {rate(cached)} tokens/s; without "
        f"{tokens(args.uncached_new - 1)} at {rate(uncached)} tokens/s; cached/uncached decode "
        f"{rate(cached / uncached)}x"
    )


if __name__ == "__main__":
    main()
