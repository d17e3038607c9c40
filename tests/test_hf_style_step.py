"""examples/hf_style_step.py and examples/tiny_lm.py: the Hugging Face-style
step (logits, -100 labels, tied head) runs, and MatrixLLMLoss with
mce_weight=0 is the model's own shifted cross-entropy."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hf_style_step_runs_and_mce_weight_zero_is_the_models_cross_entropy():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = _load("hf_style_step").main(steps=5)
    finally:
        torch.set_num_threads(threads)
    # float32 logits; the two cross-entropies reduce in different orders.
    assert abs(result["own_ce"] - result["mce0"]) < 1e-5 * result["own_ce"]
    assert all(torch.isfinite(torch.tensor(result["losses"])))
    assert result["losses"][-1] < result["losses"][0]


def test_tiny_lm_labels_are_shifted_and_minus_100_is_skipped():
    tiny_lm = _load("tiny_lm")
    torch.manual_seed(0)
    model = tiny_lm.TinyCausalLM(50, dim=16, layers=1, heads=2, context=8)
    ids = torch.randint(0, 50, (2, 8))
    labels = ids.clone()
    labels[0, 5:] = -100
    out = model(ids, labels=labels)
    assert out.logits.shape == (2, 8, 50)
    assert model.lm_head.weight is model.embed_tokens.weight
    # An independent transcription: positions t predict token t + 1, masked ones skipped.
    terms = [
        F.cross_entropy(out.logits[b, t], ids[b, t + 1]) for b in range(2) for t in range(7) if labels[b, t + 1] != -100
    ]
    assert abs(out.loss.item() - torch.stack(terms).mean().item()) < 1e-5
