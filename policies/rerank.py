"""The reranking stage: reorders (or rescores) the retrieved candidates before selection.

Identity today; objectives and constraints (multi-objective ranking) plug in here as
:class:`Reranker` subclasses with a config node in ``configs/policy/rerank/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from policies.components import Component
from policies.selection import SelectionContext


class Reranker(Component):
    """Base of every reranker: ``rerank(ctx)`` returns the context the selector sees, with its
    ``candidates`` (and ``scores``) reordered best first."""

    group: ClassVar[str] = "rerank"
    # Trains a model from the log at every fit (``build(ctx, seed)`` makes its runtime trainer,
    # whose fitted model is deployed with the scorer's; policies.learned_rerank).
    learns: ClassVar[bool] = False

    def rerank(self, ctx: SelectionContext) -> SelectionContext:
        raise NotImplementedError


@dataclass(frozen=True)
class Identity(Reranker):
    """Keep the retrieval order."""

    name: ClassVar[str] = "identity"

    def rerank(self, ctx: SelectionContext) -> SelectionContext:
        return ctx
