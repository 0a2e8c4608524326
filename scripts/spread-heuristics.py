#!/usr/bin/env python3
"""Hand-written reference policies on mpe2's simple_spread_v3, the scale for spread's returns.

Each agent steers towards a landmark with a proportional controller on its position and velocity
(the discrete action closest to the wanted force, or the force itself with continuous actions):
  still       no agent moves
  random      uniform random actions
  nearest     every agent heads for the landmark nearest to it (no coordination: agents share landmarks)
  assignment  the agents head for the landmarks of the assignment with the least total distance,
              recomputed each step (what a coordinated team does)
The return is the team's, as rrl reports it: the sum over agents of their rewards over the episode.

Usage: python3 scripts/spread-heuristics.py [--agents N] [--local R] [--episodes E] [--continuous] [--gain G]
"""
import argparse
import itertools

import numpy as np
from mpe2 import simple_spread_v3

MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], dtype=float)  # mpe2's discrete actions


def targets(world, mode):
    agents, landmarks = world.agents, world.landmarks
    if mode == "nearest":
        return [min(landmarks, key=lambda l: np.sum((l.state.p_pos - a.state.p_pos) ** 2)) for a in agents]
    n = len(agents)
    best = min(itertools.permutations(range(n)),
               key=lambda p: sum(np.linalg.norm(agents[i].state.p_pos - landmarks[p[i]].state.p_pos) for i in range(n)))
    return [landmarks[best[i]] for i in range(n)]


def act(env, mode, gain, continuous):
    names = env.agents
    if mode == "random":
        return {a: env.action_space(a).sample() for a in names}
    if mode == "still":
        return {a: (np.zeros(5, dtype=np.float32) if continuous else 0) for a in names}
    world = env.unwrapped.world
    actions = {}
    for name, agent, landmark in zip(names, world.agents, targets(world, mode)):
        force = gain * (landmark.state.p_pos - agent.state.p_pos) - agent.state.p_vel
        if continuous:  # mpe2: u = (a[2] - a[1], a[4] - a[3])
            a = np.zeros(5, dtype=np.float32)
            a[2], a[1] = max(force[0], 0), max(-force[0], 0)
            a[4], a[3] = max(force[1], 0), max(-force[1], 0)
            actions[name] = np.clip(a, 0, 1)
        else:
            actions[name] = int(np.argmin(np.sum((MOVES - force) ** 2, axis=1)))
    return actions


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--local", type=float, default=0.5, help="local ratio (rrl's --env-option local=R)")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--continuous", action="store_true")
    parser.add_argument("--gain", type=float, default=3.0)
    args = parser.parse_args()
    env = simple_spread_v3.parallel_env(N=args.agents, local_ratio=args.local, max_cycles=25,
                                        continuous_actions=args.continuous)
    print(f"simple_spread_v3, {args.agents} agents, local ratio {args.local}, {'continuous' if args.continuous else 'discrete'} actions, "
          f"{args.episodes} episodes (seeds 0..{args.episodes - 1}): team return mean ± standard error")
    for mode in ["still", "random", "nearest", "assignment"]:
        returns = []
        for episode in range(args.episodes):
            env.reset(seed=episode)
            env.action_space(env.agents[0]).seed(episode)
            total = 0.0
            while env.agents:
                _, rewards, _, _, _ = env.step(act(env, mode, args.gain, args.continuous))
                total += sum(rewards.values())
            returns.append(total)
        print(f"  {mode:<11} {np.mean(returns):7.1f} ± {np.std(returns) / np.sqrt(len(returns)):.1f}")


if __name__ == "__main__":
    main()
