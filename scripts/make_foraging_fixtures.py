"""Reference steps of lbforaging 2.0.0's ForagingEnv for RecurrentRL's `foraging` environment.

Run from the repository root (needs lbforaging==2.0.0: pip install lbforaging==2.0.0):
    python3 scripts/make_foraging_fixtures.py
It writes Tests/EnvironmentsTests/Fixtures/foraging_reference.json. As the package's own tests
do, each case sets the field (food positions and levels), the players' positions and levels and
the step counter directly (the random spawn draws other numbers than ours; its rules are tested
apart), then steps with random actions (invalid ones included) and records every agent's
observation, reward, valid actions and the done flag after each step. A case stops before a step
whose outcome depends on the package's arbitrary order of loading players (one of them next to
two foods).
"""
import json
import os

import numpy as np
from lbforaging.foraging.environment import ForagingEnv

rng = np.random.default_rng(20261129)
cases = []
for c in range(120):
    size = int(rng.choice([5, 6, 8]))
    players = int(rng.integers(2, 4))
    foods = int(rng.integers(1, 4))
    sight = int(rng.choice([1, 2, size]))
    coop = bool(rng.integers(0, 2))
    penalty = float(rng.choice([0.0, 0.1]))
    steps_limit = 50
    env = ForagingEnv(players=players, min_player_level=1, max_player_level=2, min_food_level=1, max_food_level=None,
                      field_size=(size, size), max_num_food=foods, sight=sight, max_episode_steps=steps_limit,
                      force_coop=coop, penalty=penalty)
    env.reset(seed=c)
    # A state set by hand: foods anywhere inside the border, players on free cells, some adjacent.
    field = np.zeros((size, size), np.int32)
    cells = [(r, q) for r in range(1, size - 1) for q in range(1, size - 1)]
    rng.shuffle(cells)
    for (r, q) in cells[:foods]:
        field[r, q] = int(rng.integers(1, 5))
    free = [(r, q) for r in range(size) for q in range(size) if field[r, q] == 0]
    rng.shuffle(free)
    positions, levels = [], []
    for i in range(players):
        if i > 0 and rng.uniform() < 0.5:
            # next to a food, to make loading (alone or together) likely
            nonzero = list(zip(*np.nonzero(field)))
            fr, fq = nonzero[int(rng.integers(0, len(nonzero)))]
            around = [(fr + dr, fq + dq) for dr, dq in [(-1, 0), (1, 0), (0, -1), (0, 1)]]
            around = [p for p in around if 0 <= p[0] < size and 0 <= p[1] < size and field[p] == 0 and p not in positions]
            if around:
                positions.append(tuple(int(x) for x in around[int(rng.integers(0, len(around)))]))
                levels.append(int(rng.integers(1, 3)))
                continue
        p = next(p for p in free if p not in positions)
        positions.append((int(p[0]), int(p[1])))
        levels.append(int(rng.integers(1, 3)))
    env.field = field.copy()
    for pl, pos, lev in zip(env.players, positions, levels):
        pl.position = pos
        pl.level = lev
    start_step = int(rng.integers(0, steps_limit - 6))
    env.current_step = start_step
    env._food_spawned = float(field.sum())
    env._game_over = False
    env._gen_valid_moves()
    first = env._make_gym_obs()
    record = {"size": size, "players": players, "foods": foods, "sight": sight, "coop": coop, "penalty": penalty,
              "steps_limit": steps_limit, "field": field.tolist(), "positions": [list(p) for p in positions], "levels": levels,
              "start_step": start_step, "observations": [[float(x) for x in o] for o in first], "steps": []}
    for t in range(10):
        # Mostly loads and moves toward food, some random (invalid ones become no-ops).
        actions = [int(rng.integers(0, 6)) if rng.uniform() < 0.6 else 5 for _ in range(players)]
        # The package takes loading players from a set, in an arbitrary order, which decides the
        # outcome only when a loading player touches two foods: such steps end the case.
        def foods_around(p):
            r, q = p.position
            return sum(1 for dr, dq in [(-1, 0), (1, 0), (0, -1), (0, 1)]
                       if 0 <= r + dr < size and 0 <= q + dq < size and env.field[r + dr, q + dq] > 0)
        if any(a == 5 and foods_around(p) > 1 for p, a in zip(env.players, actions)):
            break
        obs, rewards, done, truncated, _ = env.step(actions)
        masks = [[1 if a in [x.value for x in env._valid_actions[p]] else 0 for a in range(6)] for p in env.players]
        record["steps"].append({"actions": actions, "observations": [[float(x) for x in o] for o in obs],
                                "rewards": [float(r) for r in rewards], "done": bool(done), "masks": masks})
        if done:
            break
    cases.append(record)

os.makedirs("Tests/EnvironmentsTests/Fixtures", exist_ok=True)
with open("Tests/EnvironmentsTests/Fixtures/foraging_reference.json", "w") as f:
    json.dump({"source": "lbforaging 2.0.0 ForagingEnv", "cases": cases}, f)
print(len(cases), "cases,", sum(len(c["steps"]) for c in cases), "steps")
