#!/usr/bin/env python3
"""sb3-contrib's RecurrentPPO on cartpole without velocities, with rl-zoo's settings for
CartPoleNoVel-v1 and the evaluation protocol of scripts/ppo-steadiness.sh: 10 deterministic
episodes every 10k steps with the observation statistics frozen. Prints one line per seed: the
seed, then every evaluation's mean return (the last is the final one).

Usage: sb3_cartpole_position.py SEED...   (needs: pip install sb3-contrib gymnasium)
"""
import sys

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize


class PositionOnly(gym.ObservationWrapper):
    """CartPole-v1 showing the cart position and the pole angle only (rl-zoo's CartPoleNoVel)."""

    def __init__(self, env):
        super().__init__(env)
        high = env.observation_space.high[[0, 2]]
        self.observation_space = gym.spaces.Box(-high, high, dtype=np.float32)

    def observation(self, observation):
        return observation[[0, 2]].astype(np.float32)


def make():
    return PositionOnly(gym.make("CartPole-v1"))


def linear(start):
    return lambda progress_remaining: progress_remaining * start


def evaluate(model, train_env, seed, episodes=10):
    env = VecNormalize(make_vec_env(make, n_envs=1, seed=seed), training=False, norm_reward=False)
    env.obs_rms = train_env.obs_rms  # the statistics as they are now, not updated while evaluating
    returns = []
    for _ in range(episodes):
        observation, state, start, done, total = env.reset(), None, np.ones((1,), dtype=bool), False, 0.0
        while not done:
            action, state = model.predict(observation, state=state, episode_start=start, deterministic=True)
            observation, reward, dones, _ = env.step(action)
            total += float(reward[0])
            done, start = bool(dones[0]), dones
        returns.append(total)
    return float(np.mean(returns))


class Evaluations(BaseCallback):
    def __init__(self, every, seed):
        super().__init__()
        self.every, self.seed, self.next, self.results = every, seed, every, []

    def _on_step(self):
        if self.num_timesteps >= self.next:
            self.next += self.every
            self.results.append(evaluate(self.model, self.model.get_env(), 10_000 + self.seed + len(self.results)))
        return True


def main():
    torch.set_num_threads(1)
    for seed in [int(s) for s in sys.argv[1:]]:
        env = VecNormalize(make_vec_env(make, n_envs=8, seed=seed), norm_obs=True, norm_reward=True)
        model = RecurrentPPO("MlpLstmPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                             learning_rate=linear(1e-3), clip_range=linear(0.2), seed=seed, device="cpu",
                             policy_kwargs=dict(ortho_init=False, activation_fn=nn.ReLU, lstm_hidden_size=64, enable_critic_lstm=True,
                                                net_arch=dict(pi=[64], vf=[64])))
        callback = Evaluations(10_000, seed)
        model.learn(100_000, callback=callback)
        print(seed, " ".join(f"{r:.1f}" for r in callback.results), flush=True)


if __name__ == "__main__":
    main()
