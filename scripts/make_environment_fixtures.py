"""Reference trajectories of Gymnasium's Pendulum-v1 and CartPole-v1 for RecurrentRL's tests.

Run from the repository root (needs gymnasium: pip install gymnasium):
    python3 scripts/make_environment_fixtures.py
It writes Tests/EnvironmentsTests/Fixtures/gymnasium_reference.json: for each case the
initial physical state (set directly, since Gymnasium's reset RNG differs from ours), the
actions taken, and the observation, reward, terminated and truncated flags of every step.
"""
import json
import os

import gymnasium as gym
import numpy as np

rng = np.random.default_rng(20261121)
cases = []

for c in range(3):
    env = gym.make("Pendulum-v1")
    env.reset(seed=c)
    state = np.array([rng.uniform(-np.pi, np.pi), rng.uniform(-1, 1)])
    env.unwrapped.state = state.copy()
    actions = rng.uniform(-3, 3, size=200).astype(np.float32)  # beyond the limits too: clipping is tested
    steps = []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(np.array([a], dtype=np.float32))
        steps.append({"observation": [float(x) for x in obs], "reward": float(reward),
                      "terminated": bool(terminated), "truncated": bool(truncated)})
    cases.append({"env": "pendulum", "state": [float(x) for x in state],
                  "actions": [float(a) for a in actions], "steps": steps})

for c in range(4):
    env = gym.make("CartPole-v1")
    env.reset(seed=c)
    state = rng.uniform(-0.05, 0.05, size=4)
    env.unwrapped.state = state.copy()
    steps, actions = [], []
    # A mostly alternating policy keeps the pole up for a while; random flips end episodes at different times.
    for t in range(500):
        a = int((t % 2 == 0) != (rng.uniform() < 0.2 * c))
        obs, reward, terminated, truncated, _ = env.step(a)
        actions.append(a)
        steps.append({"observation": [float(x) for x in obs], "reward": float(reward),
                      "terminated": bool(terminated), "truncated": bool(truncated)})
        if terminated or truncated:
            break
    cases.append({"env": "cartpole", "state": [float(x) for x in state], "actions": actions, "steps": steps})

path = os.path.join("Tests", "EnvironmentsTests", "Fixtures", "gymnasium_reference.json")
with open(path, "w") as f:
    json.dump({"gymnasium": gym.__version__, "cases": cases}, f)
print(f"wrote {len(cases)} cases to {path}: " + ", ".join(f"{c['env']} {len(c['steps'])} steps" for c in cases))
