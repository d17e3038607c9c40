"""Which loss is trained how (the authors' recipes), the networks, and the loss of one batch of views."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from matrixinfo import losses
from matrixinfo.functional import byol_loss


# How each loss is trained:
#   "ema"       online network (encoder, projector, predictor) against an EMA teacher (encoder,
#               projector) run under no_grad; symmetrized, 0.5 * (L(p1, t2) + L(p2, t1)), as the
#               Matrix-SSL, MEC and BYOL authors do.
#   "stopgrad"  SimSiam: one network with a predictor, the other branch detached.
#   "joint"     one network for both views, L(z1, z2).
#   "multiview" EMP-SSL: L(z_1, ..., z_n) over n views of each image.
@dataclass(frozen=True)
class Method:
    cls: str  # the class in matrixinfo.losses, built with its defaults (the authors' settings)
    scheme: str  # "ema", "stopgrad", "joint" or "multiview", see above
    about: str
    views: int = 2
    # Weight of an added alignment term, BYOL's 2 - 2 cos(z1, z2), for the pure uniformity losses
    # (TCR, uniformity-MCE/MKL): the "uniformity + alignment" recipe of Wang & Isola that the
    # paper's section 5.2 generalizes. 50 is a round number, not tuned.
    align: float = 0.0
    knob: str | None = None  # the loss's own weight or temperature, swept by the experiments
    options: dict = field(default_factory=dict)  # constructor arguments beyond the class defaults


# The authors' recipes, under their command-line names. A loss of matrixinfo.losses without a recipe
# here still gets one (see _default_recipe): METHODS is derived from matrixinfo.losses.__all__.
RECIPES = {
    "matrix-ssl": Method("MatrixSSLLoss", "ema", "Matrix-SSL (eq. 22), EMA teacher + predictor", knob="gamma"),
    "matrix-kl-uniformity": Method(
        "MatrixKLUniformityLoss", "ema", "Matrix-KL uniformity (eq. 20), EMA teacher + predictor", knob="mu"
    ),
    "matrix-kl-alignment": Method(
        "MatrixKLAlignmentLoss", "ema", "Matrix-KL alignment (eq. 21), EMA teacher + predictor", knob="mu"
    ),
    "mec": Method("MECLoss", "ema", "MEC (eq. 8), EMA teacher + predictor, lam warm-up", knob="eps"),
    "byol": Method("BYOLLoss", "ema", "BYOL (eq. 3), EMA teacher + predictor"),
    "simsiam": Method("NegativeCosineSimilarityLoss", "stopgrad", "SimSiam (eq. 2), stop-gradient + predictor"),
    "barlow-twins": Method("BarlowTwinsLoss", "joint", "Barlow Twins (eq. 4)", knob="lambda_param"),
    "vicreg": Method("VICRegLoss", "joint", "VICReg (eq. 5)", knob="lambda_param"),
    "simclr": Method("SimCLRLoss", "joint", "SimCLR's NT-Xent (eq. 1)", knob="temperature"),
    "spectral": Method("SpectralContrastiveLoss", "joint", "spectral contrastive loss", knob="mu"),
    "corinfomax": Method("CorInfoMaxLoss", "joint", "CorInfoMax (eq. 7)", knob="alpha"),
    "tcr": Method("TCRLoss", "joint", "TCR (eq. 6) + 50 x alignment", align=50.0, knob="eps"),
    "uniformity-mce": Method(
        "UniformityMCELoss", "joint", "uniformity-MCE (eq. 16) + 50 x alignment", align=50.0, knob="lam"
    ),
    "uniformity-mkl": Method(
        "UniformityMKLLoss", "joint", "uniformity-MKL (eq. 17) + 50 x alignment", align=50.0, knob="lam"
    ),
    "emp-tcr": Method(
        "EMPTCRLoss", "multiview", "EMP-TCR (eq. 9) + 50 x alignment, 4 views", views=4, align=50.0, knob="eps"
    ),
    "emp-ssl": Method(
        "EMPSSLLoss", "multiview", "EMP-SSL (TCR + invariance), 4 views", views=4, knob="invariance_weight"
    ),
}


def _default_recipe(cls_name: str) -> tuple[str, Method]:
    """A loss without a recipe: its class defaults, one network for both views, ``L(z1, z2)``."""
    stem = cls_name[: -len("Loss")] if cls_name.endswith("Loss") else cls_name
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", stem).lower()  # EMPTCRLoss: emp-tcr
    return name, Method(cls_name, "joint", f"{stem} (class defaults, no recipe)")


def _methods() -> dict[str, Method]:
    by_class = {m.cls: (name, m) for name, m in RECIPES.items()}
    embedding_losses = [n for n in losses.__all__ if getattr(losses, n).inputs in ("pair", "views")]
    ordered = [by_class[n] for n in by_class if n in embedding_losses]  # the recipes' order first
    ordered += [_default_recipe(n) for n in embedding_losses if n not in by_class]
    return dict(ordered)


METHODS = _methods()


def available_losses() -> list[str]:
    """CLI names whose loss class this matrixinfo provides."""
    return [name for name, m in METHODS.items() if m.cls in losses.__all__]


def build_criterion(name: str, dim: int, **overrides) -> nn.Module:
    """The loss with its class defaults (the authors' settings), ``Method.options`` and ``overrides``."""
    method = METHODS[name]
    return getattr(losses, method.cls).make(dim, **{**method.options, **overrides})  # dim only if it needs it


def default_knob(name: str, dim: int) -> float | None:
    """The value of the loss's own knob in the recipe: its class default (``options`` aside); the
    uniformity losses' ``lam=None`` means 1/d."""
    method = METHODS[name]
    if method.knob is None:
        return None
    if method.knob in method.options:
        return float(method.options[method.knob])
    import inspect

    value = inspect.signature(getattr(losses, method.cls)).parameters[method.knob].default
    return 1.0 / dim if value is None else float(value)


def mec_lam_scale(epoch: int, epochs: int) -> float:
    """MEC's documented warm-up: lam starts at lam/8 and rises linearly to lam over the first
    10 epochs of the authors' 100 (the same tenth of a shorter run)."""
    ramp = max(1.0, epochs / 10)
    return min(1.0, 1 / 8 + (1 - 1 / 8) * epoch / ramp)


def mlp(sizes: list[int], last_bn: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(a, b, bias=last and not last_bn))
        if not last or last_bn:
            layers.append(nn.BatchNorm1d(b))
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def encoder(dataset: str) -> tuple[nn.Module, int]:
    """The backbone whose frozen features are evaluated, and its output width."""
    if dataset == "digits":
        return nn.Sequential(nn.Flatten(), mlp([64, 512, 256], last_bn=True), nn.ReLU(inplace=True)), 256
    if dataset == "mnist1d":

        def block1d(cin, cout, stride):
            return [nn.Conv1d(cin, cout, 5, stride, 2, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]

        # (N, 1, 40) -> (N, 32, 10) -> flattened: 320 features that keep where along the signal they are.
        convs = block1d(1, 32, 1) + block1d(32, 64, 2) + block1d(64, 32, 2)
        return nn.Sequential(*convs, nn.Flatten()), 320

    def block(cin, cout, stride):
        return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    convs = block(3, 32, 1) + block(32, 64, 2) + block(64, 128, 2) + block(128, 256, 2)
    return nn.Sequential(*convs, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 256


class Siamese(nn.Module):
    """Encoder + projector, a predictor for the ema and stopgrad schemes, an EMA teacher for ema."""

    def __init__(self, dataset: str, dim: int, scheme: str):
        super().__init__()
        self.backbone, width = encoder(dataset)
        self.projector = mlp([width, 512, dim])
        self.predictor = mlp([dim, max(16, dim // 4), dim]) if scheme in ("ema", "stopgrad") else None
        self.teacher = None
        if scheme == "ema":
            self.teacher = copy.deepcopy(nn.Sequential(self.backbone, self.projector))
            self.teacher.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))

    def online_parameters(self):
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.")]

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        online = nn.Sequential(self.backbone, self.projector)
        for t, o in zip(self.teacher.parameters(), online.parameters()):
            t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
        for t, o in zip(self.teacher.buffers(), online.buffers()):
            t.copy_(o)


def compute_loss(model: Siamese, criterion: nn.Module, method: Method, views: list[torch.Tensor]) -> torch.Tensor:
    if method.scheme == "ema":
        p1, p2 = (model.predictor(model(v)) for v in views)
        with torch.no_grad():
            t1, t2 = (model.teacher(v) for v in views)
        return 0.5 * (criterion(p1, t2) + criterion(p2, t1))
    if method.scheme == "stopgrad":
        z1, z2 = (model(v) for v in views)
        p1, p2 = model.predictor(z1), model.predictor(z2)
        return 0.5 * (criterion(p1, z2.detach()) + criterion(p2, z1.detach()))
    zs = [model(v) for v in views]
    loss = criterion(*zs)
    if method.align:
        pairs = list(zip(zs[:-1], zs[1:]))  # consecutive views: one pair with two views
        loss = loss + method.align * sum(byol_loss(a, b) for a, b in pairs) / len(pairs)
    return loss
