"""The baby GPT of `listings/examples/bench_train.rs`, in PyTorch, for a
same-machine comparison.

The model and the run are the ones nanoGPT trains on a CPU (4 layers,
4 heads, n_embd 128, block 64, batch 12, no dropout; AdamW with lr 1e-3,
beta2 0.99, weight decay 0.1 on 2-D tensors; 100 warm-up steps, cosine to
1e-4 at step 2000; gradients clipped to norm 1), with the book's GPT-2
layout (biases everywhere, lm_head tied to wte, GPT-2's initialisation);
--no-bias drops the biases, as nanoGPT does by default.
It prints what bench_train prints: ms per iteration (median and mean
after 10 warm-up steps), tokens per second, peak RSS, and with --eval the
mean loss over 200 random batches of each split.

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch numpy
    /tmp/torch/bin/python bench/pytorch_baby_gpt.py FILE --iters 2000 --eval

It is not part of the book's build or tests, which never need Python.
"""

import argparse
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

B, T, WARMUP, EVAL_BATCHES = 12, 64, 10, 200
N_LAYER, N_HEAD, N_EMBD = 4, 4, 128


class Block(nn.Module):
    def __init__(self, bias):
        super().__init__()
        self.ln_1 = nn.LayerNorm(N_EMBD, bias=bias)
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD, bias=bias)
        self.attn_proj = nn.Linear(N_EMBD, N_EMBD, bias=bias)
        self.ln_2 = nn.LayerNorm(N_EMBD, bias=bias)
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD, bias=bias)
        self.mlp_proj = nn.Linear(4 * N_EMBD, N_EMBD, bias=bias)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(N_EMBD, dim=2)
        heads = lambda z: z.view(b, t, N_HEAD, c // N_HEAD).transpose(1, 2)
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        h = F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")
        return x + self.mlp_proj(h)


class Gpt(nn.Module):
    def __init__(self, vocab_size, bias=True):
        super().__init__()
        self.wte = nn.Embedding(vocab_size, N_EMBD)
        self.wpe = nn.Embedding(T, N_EMBD)
        self.h = nn.ModuleList(Block(bias) for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(N_EMBD, bias=bias)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * N_LAYER))
            elif p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            elif "ln" not in name:
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        pos = torch.arange(idx.shape[1])
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # lm_head tied to wte
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def cosine_lr(it, lr=1e-3, min_lr=1e-4, warmup=100, decay=2000):
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / (decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def batch(data, gen):
    ix = torch.randint(len(data) - T, (B,), generator=gen)
    x = torch.stack([data[i : i + T] for i in ix])
    y = torch.stack([data[i + 1 : i + 1 + T] for i in ix])
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--iters", type=int, default=WARMUP + 200)
    ap.add_argument("--eval", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--no-bias", action="store_true",
                    help="no biases in the linear layers and LayerNorms (nanoGPT's default)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text = open(args.file, encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([index[c] for c in text], dtype=torch.long)
    split = len(data) * 9 // 10
    train, val = data[:split], data[split:]
    model = Gpt(len(chars), bias=not args.no_bias)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{sum(p.numel() for p in params)} parameters")
    gen = torch.Generator().manual_seed(args.seed)
    times = []
    start_run = time.perf_counter()
    for it in range(args.iters):
        x, y = batch(train, gen)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(it)
        start = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        took = time.perf_counter() - start
        if it >= WARMUP:
            times.append(took)
        if it % 100 == 0 or it + 1 == args.iters:
            print(f"iter {it}: loss {loss.item():.4f}, time {took * 1e3:.2f} ms")
    run_time = time.perf_counter() - start_run
    mean = statistics.mean(times)
    print(f"{len(times)} timed steps: median {statistics.median(times) * 1e3:.2f} ms/iter, "
          f"mean {mean * 1e3:.2f} ms/iter, fastest {min(times) * 1e3:.2f} ms; "
          f"{B * T / mean:.0f} tokens/s (from the mean)")
    print(f"{args.iters} training steps in {run_time:.1f} s")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the training run (ru_maxrss): {rss:.1f} MB")
    if args.eval:
        model.eval()
        with torch.no_grad():
            for name, split_data in [("train", train), ("val", val)]:
                losses = [model(*batch(split_data, gen)).item() for _ in range(EVAL_BATCHES)]
                print(f"{name} loss over {EVAL_BATCHES} batches: {statistics.mean(losses):.4f}")


if __name__ == "__main__":
    main()
