"""A tiny causal language model with the Hugging Face calling convention, and
word-level text from Python's standard library (no download).

``TinyCausalLM(input_ids, labels=labels)`` returns an object with ``.logits``
``(B, T, n)`` and ``.loss`` (next-token cross-entropy, labels shifted inside,
``-100`` ignored), like ``transformers.AutoModelForCausalLM``; the LM head's
weight *is* the input embedding (tied), as in GPT-2 and Llama-style models
with ``tie_word_embeddings``. Used by ``finetune_lm.py`` and ``hf_style_step.py``.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import math
import pathlib
import re
import sysconfig

import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class CausalLMOutput:
    """What a Hugging Face causal LM returns (the fields used here)."""

    logits: torch.Tensor
    loss: torch.Tensor | None = None


class TinyCausalLM(nn.Module):
    """Pre-norm causal Transformer; ``lm_head.weight`` is ``embed_tokens.weight``."""

    def __init__(self, vocab_size: int, dim: int = 64, layers: int = 2, heads: int = 4, context: int = 32):
        super().__init__()
        self.context = context
        self.embed_tokens = nn.Embedding(vocab_size, dim)
        self.embed_positions = nn.Embedding(context, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab_size, bias=False)
        self.lm_head.weight = self.embed_tokens.weight  # tied
        nn.init.normal_(self.embed_tokens.weight, std=0.02)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> CausalLMOutput:
        T = input_ids.shape[1]
        pos = torch.arange(T, device=input_ids.device)
        x = self.embed_tokens(input_ids) + self.embed_positions(pos)
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=input_ids.device)
        x = self.norm(self.layers(x, mask=mask, is_causal=True))
        logits = self.lm_head(x)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutput(logits=logits, loss=loss)


# --------------------------------------------------------------------------- #
# Text: docstrings of the standard library, split by topic                     #
# --------------------------------------------------------------------------- #
# The fine-tuning domain: the internet, mail and markup modules. Pre-training
# sees every other module's docstrings.
SHIFTED = (
    "email",
    "http",
    "urllib",
    "xml",
    "html",
    "smtplib",
    "imaplib",
    "ftplib",
    "poplib",
    "mailbox",
    "mimetypes",
    "nntplib",
    "xmlrpc",
    "wsgiref",
    "cgi",
    "socketserver",
    "telnetlib",
    "uu",
    "quopri",
    "base64",
    "binascii",
)
SKIP = ("test", "idlelib", "lib2to3", "site-packages", "turtledemo", "tkinter", "ensurepip", "venv")
WORD = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")


def stdlib_docstrings() -> tuple[dict[str, list[str]], str]:
    """Docstrings (module, class, function) of the standard library's .py files,
    keyed by top-level module name; sorted file order, so deterministic."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    out: dict[str, list[str]] = collections.defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(part in SKIP for part in rel):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        top = rel[0].removesuffix(".py")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 40:
                    out[top].append(doc)
    return out, str(root)


def tokenize(text: str) -> list[str]:
    return WORD.findall(text.lower()) + ["<eos>"]


@dataclasses.dataclass
class Corpus:
    vocab: list[str]
    pre_train: torch.Tensor
    pre_heldout: torch.Tensor
    ft_train: torch.Tensor
    ft_heldout: torch.Tensor
    info: str


def build_corpus(vocab_size: int = 2048, ft_train_tokens: int = 60_000) -> Corpus:
    """Word-level ids. The vocabulary is the ``vocab_size - 1`` most frequent
    words of the pre-training text plus ``<unk>``; both domains use it."""
    docs, root = stdlib_docstrings()
    pre = [w for k in sorted(docs) if k not in SHIFTED for doc in docs[k] for w in tokenize(doc)]
    ft = [w for k in sorted(docs) if k in SHIFTED for doc in docs[k] for w in tokenize(doc)]
    counts = collections.Counter(pre)
    vocab = ["<unk>"] + [w for w, _ in counts.most_common(vocab_size - 1)]
    index = {w: i for i, w in enumerate(vocab)}

    def ids(words):
        return torch.tensor([index.get(w, 0) for w in words], dtype=torch.long)

    pre_ids, ft_ids = ids(pre), ids(ft)
    cut = int(0.95 * len(pre_ids))
    # Fine-tuning: the first ft_train_tokens words for training (a small
    # in-domain set), the last 25% held out; the words in between are unused.
    held = int(0.75 * len(ft_ids))
    info = (
        f"docstrings of the standard library at {pathlib.Path(root).name} ({len(docs)} top-level modules); "
        f"pre-training {len(pre_ids):,} words (all but the fine-tuning modules), fine-tuning domain "
        f"{len(ft_ids):,} words ({', '.join(SHIFTED)}); <unk> rate {float((pre_ids == 0).float().mean()):.1%} "
        f"pre-training, {float((ft_ids == 0).float().mean()):.1%} fine-tuning domain"
    )
    return Corpus(vocab, pre_ids[:cut], pre_ids[cut:], ft_ids[: min(ft_train_tokens, held)], ft_ids[held:], info)


def batches(data: torch.Tensor, batch: int, context: int, generator: torch.Generator):
    """Random windows of ``context + 0`` tokens; labels = the window itself
    (the model shifts), as a Hugging Face data collator for causal LM does."""
    while True:
        start = torch.randint(0, len(data) - context, (batch,), generator=generator)
        x = torch.stack([data[s : s + context] for s in start.tolist()])
        yield x, x.clone()


@torch.no_grad()
def evaluate(model: TinyCausalLM, data: torch.Tensor, context: int, max_windows: int = 400) -> dict:
    """Held-out next-word cross-entropy (nats), perplexity, accuracy, and how the
    prediction ``Q`` relates to the target ``P = e_y e_y^T``: mean ``q_y`` and
    mean ``e_y^T Q e_y = sum_j q_j cos^2(e_j, e_y)`` (probability on tokens whose
    embedding is near the target's), plus the effective rank of the head."""
    from matrixinfo import effective_rank

    model.eval()
    n_win = min(max_windows, (len(data) - 1) // context)
    x = data[: n_win * context].reshape(n_win, context)
    ce_sum, correct, count, qy, sim = 0.0, 0, 0, 0.0, 0.0
    E = F.normalize(model.lm_head.weight, dim=1)
    for chunk in x.split(50):
        logits = model(chunk).logits[:, :-1].reshape(-1, E.shape[0])
        y = chunk[:, 1:].reshape(-1)
        logq = logits.log_softmax(-1)
        ce_sum += float(F.nll_loss(logq, y, reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
        q = logq.exp()
        qy += float(q.gather(1, y[:, None]).sum())
        sim += float((q * (E[y] @ E.T).square()).sum())
        count += y.numel()
    model.train()
    ce = ce_sum / count
    gram = E.T @ E / E.shape[0]
    return {
        "ce": ce,
        "ppl": math.exp(ce),
        "acc": 100 * correct / count,
        "q_y": qy / count,
        "eQe": sim / count,
        "erank": float(effective_rank(gram.double())),
    }
