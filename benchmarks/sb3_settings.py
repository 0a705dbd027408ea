"""sb3-contrib's TRPO at the settings benchmarks/compare_sb3.py matches (no trpo_tf import, so a
fresh process that times sb3-contrib end to end does not pay for TensorFlow)."""

from __future__ import annotations

from typing import Any


# The update's settings both comparisons match (sb3-contrib's names); compare_sb3.py's MATCHED and
# atari.py's trpo_tf configs are the same numbers in TRPOConfig's names.
UPDATE = dict(batch_size=128, gamma=0.99, gae_lambda=0.95, cg_damping=0.1, line_search_shrinking_factor=0.8,
              line_search_max_iter=10, n_critic_updates=10, target_kl=0.01, learning_rate=1e-3, device="cpu")


def sb3_model(env_id: str, n_envs: int = 1, subprocesses: bool = False) -> Any:
    """sb3-contrib's TRPO at the matched settings, 2048 steps per iteration over ``n_envs`` environments."""
    import torch
    from sb3_contrib import TRPO as SB3TRPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    env = make_vec_env(env_id, n_envs=n_envs, seed=0, vec_env_cls=SubprocVecEnv if subprocesses else DummyVecEnv)
    return SB3TRPO("MlpPolicy", env, n_steps=2048 // n_envs, cg_max_steps=15, seed=0, **UPDATE,
                   policy_kwargs=dict(net_arch=dict(pi=[64, 64], vf=[64, 64]), activation_fn=torch.nn.Tanh))
