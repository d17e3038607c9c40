"""The text of ``char_lm.py``: the Python standard library's own source, a 98-symbol vocabulary,
and a split into training and held-out blocks that share no window."""

from __future__ import annotations

import os
import platform
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

# Vocabulary: tab, newline, the 95 printable ASCII characters, and OTHER for
# everything else (non-ASCII letters in docstrings, form feeds, ...): 98 symbols.
VOCAB = ["\t", "\n", *map(chr, range(32, 127)), "<other>"]
OTHER = len(VOCAB) - 1
N_BLOCKS, VAL_EVERY = 40, 10  # 40 contiguous blocks, blocks 9, 19, 29, 39 held out


def stdlib_dir() -> Path:
    """The standard library's source folder of the running Python (``os.py`` lives there)."""
    candidates = [sysconfig.get_paths().get("stdlib"), os.path.dirname(os.__file__)]
    for c in candidates:
        if c and (Path(c) / "os.py").is_file():
            return Path(c)
    raise FileNotFoundError(
        "could not find the Python standard library's source files (no os.py next to "
        "sysconfig's 'stdlib' path or the os module); this Python may ship only bytecode"
    )


@dataclass
class Corpus:
    text: str
    files: list[str]  # names of the files read, in order (relative to the standard library folder)
    python: str


def load_stdlib_text(chars: int) -> Corpus:
    """The first ``chars`` characters of the standard library's top-level ``*.py``
    files, in sorted file-name order, each followed by a blank line."""
    root = stdlib_dir()
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    parts, used, total = [], [], 0
    for path in files:
        if total >= chars:
            break
        text = path.read_text(encoding="utf-8", errors="replace") + "\n\n"
        parts.append(text)
        used.append(path.name)
        total += len(text)
    text = "".join(parts)[:chars]
    if len(text) < chars:
        raise ValueError(
            f"the standard library's top-level .py files hold {len(text)} characters, fewer than --chars {chars}"
        )
    return Corpus(text, used, platform.python_version())


def encode(text: str) -> torch.Tensor:
    """Character ids (int64) in the 98-symbol vocabulary."""
    codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
    table = torch.full((128,), OTHER, dtype=torch.long)
    for i, ch in enumerate(VOCAB[:-1]):
        table[ord(ch)] = i
    return torch.where(codes < 128, table[codes.clamp(0, 127)], torch.full_like(codes, OTHER))


def decode(ids) -> str:
    return "".join(VOCAB[i] if i != OTHER else "\ufffd" for i in ids)


def split(ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Train and validation ids: ``N_BLOCKS`` contiguous blocks, every ``VAL_EVERY``-th held out.
    Each split is its blocks concatenated; windows never mix the two splits."""
    size = ids.numel() // N_BLOCKS
    if size < 2 * (context + 1):
        raise ValueError(
            f"{ids.numel()} characters make blocks of {size}: too short for a context of {context} "
            f"(raise --chars to at least {N_BLOCKS * 2 * (context + 1)})"
        )
    blocks = ids[: size * N_BLOCKS].view(N_BLOCKS, size)
    held_out = torch.arange(N_BLOCKS) % VAL_EVERY == VAL_EVERY - 1
    return blocks[~held_out].reshape(-1), blocks[held_out].reshape(-1)
