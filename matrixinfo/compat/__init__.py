"""Drop-in replacements that keep another library's names, signatures and values.

:mod:`matrixinfo.compat.lightly` has lightly's ``BarlowTwinsLoss``,
``VICRegLoss``, ``NTXentLoss``, ``NegativeCosineSimilarity`` and
``EMPSSLLoss``: changing ``from lightly.loss import X`` to
``from matrixinfo.compat.lightly import X`` changes nothing else in a training
script. The main API (:mod:`matrixinfo.losses`) keeps its own names and the
authors' defaults; see :doc:`/coming_from_lightly`.
"""

__all__: list[str] = []
