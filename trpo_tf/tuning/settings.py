"""What one tuning run is: the study it feeds and the objective its trials measure (picklable, for ``--jobs``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from trpo_tf.config import TRPOConfig
from trpo_tf.tuning.space import Space, describe

CONFIG_ATTR = "config"  # a trial's user attributes: its full TRPOConfig (a dict) ...
SEED_RETURNS_ATTR = "seed_returns"  # ... the final evaluation of each seed ...
WORKER_ATTR = "worker"  # ... and the process that ran it, "host:pid"


@dataclasses.dataclass(frozen=True)
class Tuning:
    """A tuning run, as :func:`trpo_tf.tune` resolved it from its arguments.

    A trial's config is ``base`` (the environment's preset, else nothing: TRPOConfig's defaults),
    then the values it samples from ``space``, then ``fixed`` (``--set``), then ``n_workers`` =
    ``workers`` when given. It trains one agent per seed 0 … ``seeds``-1 for ``timesteps`` steps,
    evaluating it (``eval_episodes`` deterministic episodes) at ``evaluations`` evenly spaced points
    of each run.
    """

    env_id: str
    trials: int
    timesteps: int
    storage: str
    study: str
    out: str
    seeds: int
    space: Space
    base: Mapping[str, Any]
    fixed: Mapping[str, Any]
    workers: int | None
    heartbeat: int
    evaluations: int
    eval_episodes: int

    def config(self, sampled: Mapping[str, Any]) -> TRPOConfig:
        """The full config of a trial that sampled ``sampled`` (ConfigError when TRPOConfig refuses it)."""
        workers = {} if self.workers is None else {"n_workers": self.workers}
        return TRPOConfig.from_dict({**self.base, **sampled, **self.fixed, **workers})

    def record(self) -> dict[str, Any]:
        """What a study remembers of the objective, as plain JSON data: a later command that would measure
        trials otherwise (another environment, budget, seeds, evaluation or fixed values) is refused."""
        record = {"env_id": self.env_id, "timesteps": self.timesteps, "seeds": self.seeds,
                  "evaluations": self.evaluations, "eval_episodes": self.eval_episodes, "fixed": dict(self.fixed)}
        return json.loads(json.dumps(record))

    def describe_space(self) -> dict[str, str]:
        """The searched space, one line per key (see :func:`~trpo_tf.tuning.space.describe`)."""
        return describe(self.space)
