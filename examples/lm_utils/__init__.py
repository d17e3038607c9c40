"""The machinery of ``char_lm.py``: text, model, training and evaluation, descriptions."""

from __future__ import annotations

import torch

from .model import Block, CharTransformer
from .text import N_BLOCKS, OTHER, VAL_EVERY, VOCAB, Corpus, decode, encode, load_stdlib_text, split, stdlib_dir
from .train import LOSSES, Config, batch_starts, build_criterion, evaluate, head_effective_rank, lr_at, train, windows

__all__ = [
    "ABOUT",
    "Block",
    "CharTransformer",
    "Config",
    "Corpus",
    "LOSSES",
    "N_BLOCKS",
    "OTHER",
    "VAL_EVERY",
    "VOCAB",
    "batch_starts",
    "build_criterion",
    "decode",
    "describe_corpus",
    "describe_mce",
    "describe_setup",
    "encode",
    "evaluate",
    "head_effective_rank",
    "load_stdlib_text",
    "lr_at",
    "split",
    "stdlib_dir",
    "train",
    "windows",
]

ABOUT = {
    "ce": "cross-entropy (`F.cross_entropy`)",
    "ce+mce": "cross-entropy + MCE (eq. 23), gradients to the logits and the LM head",
    "ce+mce-detached": "the same, no MCE gradient into the LM head (it shapes only the predictions)",
}


def describe_corpus(corpus: Corpus, train_ids: torch.Tensor, val_ids: torch.Tensor) -> str:
    other = int((torch.cat([train_ids, val_ids]) == OTHER).sum())
    return (
        f"the first {len(corpus.text):,} characters of the standard library of Python {corpus.python} "
        f"({len(corpus.files)} top-level .py files in sorted order, {corpus.files[0]} to {corpus.files[-1]}; "
        f"{other:,} of them outside the vocabulary, read as <other>): {train_ids.numel():,} training and "
        f"{val_ids.numel():,} held-out characters ({N_BLOCKS} contiguous blocks, every {VAL_EVERY}th held out)"
    )


def describe_setup(cfg: Config) -> str:
    params = sum(
        p.numel()
        for p in CharTransformer(len(VOCAB), cfg.dim, cfg.layers, cfg.heads, cfg.context, cfg.tied).parameters()
    )
    return (
        f"causal Transformer, {cfg.layers} layers, width {cfg.dim}, {cfg.heads} heads, context {cfg.context}, "
        f"{'tied' if cfg.tied else 'untied'} LM head, {params:,} parameters, vocabulary {len(VOCAB)}; "
        f"{cfg.steps} steps of batch {cfg.batch_size} x {cfg.context} characters, AdamW (lr {cfg.lr}, "
        f"weight decay {cfg.weight_decay}, 10% warm-up then cosine to lr/10), gradient clipping at 1"
    )


def describe_mce(cfg: Config) -> str:
    how = f'method="topk", top_k={cfg.top_k}, rank={cfg.rank}' if cfg.method == "topk" else 'method="exact"'
    return f"MatrixLLMLoss(mce_weight={cfg.mce_weight}, {how}) on the LM head's weight, every predicted character"
