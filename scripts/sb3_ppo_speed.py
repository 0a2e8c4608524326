#!/usr/bin/env python3
"""Times sb3-contrib's RecurrentPPO on the workload of `rrl bench ppo`: cartpole without velocities,
rl-zoo's settings (8 copies x 32 steps, minibatch 256, 20 epochs, LSTM 64 in actor and critic),
100,096 steps, torch on one thread, no evaluation. Prints the process CPU seconds, to put beside
`rrl bench ppo`'s CPU seconds from runs alternated with this one in the same minutes.

Usage: sb3_ppo_speed.py [SEED]   (needs: pip install sb3-contrib gymnasium)
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from sb3_cartpole_position import linear, make  # noqa: E402
from sb3_contrib import RecurrentPPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402


def main():
    torch.set_num_threads(1)
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    env = VecNormalize(make_vec_env(make, n_envs=8, seed=seed), norm_obs=True, norm_reward=True)
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                         learning_rate=linear(1e-3), clip_range=linear(0.2), seed=seed, device="cpu",
                         policy_kwargs=dict(ortho_init=False, activation_fn=nn.ReLU, lstm_hidden_size=64, enable_critic_lstm=True,
                                            net_arch=dict(pi=[64], vf=[64])))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    model.learn(100_096)
    print(f"sb3-contrib RecurrentPPO: {time.process_time() - cpu0:.1f} CPU s, {time.perf_counter() - wall0:.1f} wall s, 100096 steps",
          flush=True)


if __name__ == "__main__":
    main()
