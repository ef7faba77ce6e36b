"""Off-policy estimators: what a target policy would have earned, from logs of another.

One module per family, one interface (:class:`~policies.ope.base.Estimator`): an estimator is a
dataclass of its parameters whose ``estimate(data, rng)`` returns an
:class:`~policies.ope.base.Estimate` with a percentile-bootstrap interval and weight diagnostics.

- :mod:`policies.ope.item_level` — single decisions: IPS, SNIPS, DM, DR, SNDR, Switch-DR;
- :mod:`policies.ope.slate_level` — slates: standard, independent and reward-interaction IPS,
  pseudoinverse, and their self-normalized forms;
- :mod:`policies.ope.diagnostics` — effective sample size, clipping share, support check.
"""

from policies.ope.base import Estimate, Estimator
from policies.ope.item_level import DM, DR, IPS, SNDR, SNIPS, BanditData, SwitchDR
from policies.ope.slate_level import (
    PseudoInverse,
    SelfNormalizedPseudoInverse,
    SelfNormalizedSlateIndependentIPS,
    SelfNormalizedSlateRewardInteractionIPS,
    SelfNormalizedSlateStandardIPS,
    SlateData,
    SlateGamma,
    SlateIndependentIPS,
    SlateRewardInteractionIPS,
    SlateStandardIPS,
)

__all__ = [
    "DM",
    "DR",
    "IPS",
    "SNDR",
    "SNIPS",
    "BanditData",
    "Estimate",
    "Estimator",
    "PseudoInverse",
    "SelfNormalizedPseudoInverse",
    "SelfNormalizedSlateIndependentIPS",
    "SelfNormalizedSlateRewardInteractionIPS",
    "SelfNormalizedSlateStandardIPS",
    "SlateData",
    "SlateGamma",
    "SlateIndependentIPS",
    "SlateRewardInteractionIPS",
    "SlateStandardIPS",
    "SwitchDR",
]
