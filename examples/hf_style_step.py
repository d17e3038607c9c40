"""Plugging MatrixLLMLoss into a Hugging Face-style causal-LM training step.

A causal LM in the ``transformers`` convention returns ``out.logits``
``(B, T, n)`` and, given ``labels``, its own next-token cross-entropy: the
labels are the input ids (shifted inside the model), with ``-100`` on positions
to skip (padding, the prompt). Its LM head's weight is the input embedding
(tied). To train with eq. 23 instead, shift and flatten the same way and pass
the head's weight as the token embedding:

.. code-block:: python

    criterion = MatrixLLMLoss(mce_weight=0.1)          # CE + 0.1 * MCE
    out = model(input_ids)                             # no labels: we compute the loss
    n = out.logits.shape[-1]
    loss = criterion(out.logits[:, :-1].reshape(-1, n), labels[:, 1:].reshape(-1),
                     model.get_output_embeddings().weight)

With a real ``transformers`` model the last three lines are the same. Use it
to fine-tune a pre-trained model (the paper's setting); trained from scratch
with gradients into the head, eq. 23 is minimized by a collapsed head (see the
warning on :func:`matrixinfo.functional.matrix_llm_loss`), which
``detach_embedding=True`` avoids. Runs in a few seconds:

    python examples/hf_style_step.py
"""

from __future__ import annotations

import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from tiny_lm import TinyCausalLM

from matrixinfo.losses import MatrixLLMLoss


def make_batch(vocab: int, batch: int = 4, length: int = 16, pad_id: int = 0, seed: int = 0):
    """Random token ids with right padding; labels = ids with -100 on padding
    and on a 4-token prompt, as a collator for supervised fine-tuning writes them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, length), generator=g)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=g)
    pad = torch.arange(length)[None, :] >= lengths[:, None]
    ids[pad] = pad_id
    labels = ids.clone()
    labels[pad] = -100
    labels[:, :4] = -100
    return ids, labels


def training_step(model, criterion, optimizer, input_ids, labels) -> float:
    """One step: the model's logits, the labels shifted as the model would, the tied head."""
    out = model(input_ids)
    n = out.logits.shape[-1]
    loss = criterion(out.logits[:, :-1].reshape(-1, n), labels[:, 1:].reshape(-1), model.get_output_embeddings().weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def main(steps: int = 20, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    vocab = 200
    model = TinyCausalLM(vocab, dim=32, layers=1, heads=2, context=16)
    assert model.get_output_embeddings().weight is model.embed_tokens.weight  # tied
    ids, labels = make_batch(vocab, seed=seed)
    with torch.no_grad():
        own_ce = model(ids, labels=labels).loss.item()
        # mce_weight=0 is exactly the model's own shifted, -100-masked cross-entropy.
        plain = MatrixLLMLoss(mce_weight=0.0)
        out = model(ids)
        same = plain(out.logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1), model.lm_head.weight).item()
    criterion = MatrixLLMLoss(mce_weight=0.1)  # fine-tuning: gradients into the head, as the paper
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = [training_step(model, criterion, optimizer, ids, labels) for _ in range(steps)]
    print(f"model's own CE {own_ce:.4f} = MatrixLLMLoss(mce_weight=0) {same:.4f}")
    print(f"CE + 0.1 MCE over {steps} steps on one batch: {losses[0]:.4f} -> {losses[-1]:.4f}")
    return {"own_ce": own_ce, "mce0": same, "losses": losses}


if __name__ == "__main__":
    main()
