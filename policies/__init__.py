"""Everything the platform decides: scorers (ALS, popularity, random, oracle), slate selection
with exact propensities, and the serving policy that composes them.

Policies see logs (as :class:`policies.interactions.Interactions`) and item metadata only — never
ground truth. The one exception is the oracle reference, which ``sim`` hands an explicit truth
callback and which is flagged ``uses_ground_truth``.
"""

from policies.interactions import Interactions
from policies.policy import PolicyConfig, ServingPolicy, SlateBatch, build_policy

__all__ = ["Interactions", "PolicyConfig", "ServingPolicy", "SlateBatch", "build_policy"]
