"""Reference steps of mpe2 1.1.1's simple_spread_v3 for RecurrentRL's `spread` environment.

Run from the repository root (needs mpe2==1.1.1: pip install mpe2==1.1.1):
    python3 scripts/make_spread_fixtures.py
It writes Tests/EnvironmentsTests/Fixtures/spread_reference.json. Each case sets the agents' and
landmarks' positions and the agents' velocities directly (the reset draws other numbers than
ours), close enough together that agents collide, then steps the parallel API to its 25-step
limit with random discrete or continuous actions, and records every agent's observation and
reward and the truncation flags.
"""
import json
import os

import numpy as np
from mpe2 import simple_spread_v3

rng = np.random.default_rng(20261129)


def short(x):
    """Seven significant digits (observations are float32; the test compares to 1e-5)."""
    return float(f"{float(x):.7g}")

cases = []
for c in range(16):
    n = int(rng.choice([2, 3, 4]))
    continuous = bool(c % 2)
    local_ratio = float(rng.choice([0.5, 0.0, 0.8]))
    env = simple_spread_v3.parallel_env(N=n, local_ratio=local_ratio, max_cycles=25, continuous_actions=continuous)
    env.reset(seed=c)
    world = env.unwrapped.world
    # Crowded starts: agents within 0.5 of the origin collide often.
    agents = rng.uniform(-0.5, 0.5, size=(n, 2))
    velocities = rng.uniform(-0.3, 0.3, size=(n, 2))
    landmarks = rng.uniform(-1, 1, size=(n, 2))
    for a, p, v in zip(world.agents, agents, velocities):
        a.state.p_pos = p.copy()
        a.state.p_vel = v.copy()
    for l, p in zip(world.landmarks, landmarks):
        l.state.p_pos = p.copy()
    steps = []
    for t in range(25):
        if continuous:
            actions = rng.uniform(0, 1, size=(n, 5)).astype(np.float32)
            act = {f"agent_{i}": actions[i] for i in range(n)}
            recorded = [[float(x) for x in a] for a in actions]  # exact float32 values
        else:
            actions = rng.integers(0, 5, size=n)
            act = {f"agent_{i}": int(actions[i]) for i in range(n)}
            recorded = [int(a) for a in actions]
        obs, rewards, terminations, truncations, _ = env.step(act)
        steps.append({"actions": recorded,
                      "observations": [[short(x) for x in obs[f"agent_{i}"]] for i in range(n)],
                      "rewards": [short(rewards[f"agent_{i}"]) for i in range(n)],
                      "terminated": any(terminations.values()), "truncated": any(truncations.values())})
        if any(terminations.values()) or any(truncations.values()):
            break
    cases.append({"agents": n, "continuous": continuous, "local_ratio": local_ratio,
                  "positions": agents.tolist(), "velocities": velocities.tolist(), "landmarks": landmarks.tolist(),
                  "steps": steps})

os.makedirs("Tests/EnvironmentsTests/Fixtures", exist_ok=True)
with open("Tests/EnvironmentsTests/Fixtures/spread_reference.json", "w") as f:
    json.dump({"source": "mpe2 1.1.1 simple_spread_v3 (parallel API)", "cases": cases}, f)
print(len(cases), "cases,", sum(len(c["steps"]) for c in cases), "steps")
