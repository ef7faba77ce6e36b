"""The reranking stage: reorders (or rescores) the retrieved candidates before selection.

Identity today; objectives and constraints (multi-objective ranking) plug in here as
:class:`Reranker` subclasses with a config node in ``configs/policy/rerank/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from policies.components import Component
from policies.models import Retrieval
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

    def rerank_serving(
        self, ctx: SelectionContext, retrieval: Retrieval, state: Any
    ) -> tuple[SelectionContext, Retrieval]:
        """The serving stage's call: a reranker with runtime ``state`` (``initial_state``; the
        constrained reranker's multipliers) may also permute the logged ``retrieval``."""
        return self.rerank(ctx), retrieval

    def check_policy(self, slate_size: int, selector: Any, scorer: Any) -> None:
        """Cross-checks with the rest of the policy (``PolicyConfig``); raise naming the key."""

    def check_world(self, n_items: int, n_creators: int) -> None:
        """Cross-checks with the catalog (``world.n_items`` and its number of creators)."""

    def initial_state(self, items: Any, n_items: int, slate_size: int) -> Any:
        """Runtime state the serving policy keeps (part of the simulation state); None: none."""
        return None


@dataclass(frozen=True)
class Identity(Reranker):
    """Keep the retrieval order."""

    name: ClassVar[str] = "identity"

    def rerank(self, ctx: SelectionContext) -> SelectionContext:
        return ctx
