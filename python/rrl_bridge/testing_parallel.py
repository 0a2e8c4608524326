"""A small environment with PettingZoo's parallel API, for rrl's tests of the multi-agent bridge
(`--env pz:rrl_bridge.testing_parallel`); it needs gymnasium only, not pettingzoo.

Three agents, "a", "b" and "c", with Discrete(3) actions. At step t (1, 2, ...) agent k observes
[t, its last action, k] ("c": [t, k], two values, padded by the bridge), and receives its action plus
k / 10. "c" terminates at step 2 and leaves `agents`; the others are truncated at step 4. The global
state is [t, sum of the last actions]. Options:
- kind="masked": observations are {"observation": [t, k], "action_mask": [...]} with action t % 3
  unavailable;
- kind="raise": step 3 raises ValueError.
"""
import gymnasium.spaces as S
import numpy as np


class ParallelCounter:
    metadata = {"name": "testing_parallel"}

    def __init__(self, kind="plain"):
        self.kind = kind
        self.possible_agents = ["a", "b", "c"]
        self.agents = []
        self.t, self.last = 0, np.zeros(3, np.float32)
        self.state_space = S.Box(-10.0, 10.0, (2,), np.float32)
        self.max_cycles = 4

    def observation_space(self, agent):
        if self.kind == "masked":
            return S.Dict({"observation": S.Box(-10.0, 10.0, (2,), np.float32), "action_mask": S.MultiBinary(3)})
        return S.Box(-10.0, 10.0, (2 if agent == "c" else 3,), np.float32)

    def action_space(self, agent):
        return S.Discrete(3)

    def _observe(self, agent):
        k = self.possible_agents.index(agent)
        if self.kind == "masked":
            mask = np.ones(3, np.int8)
            mask[self.t % 3] = 0
            return {"observation": np.array([self.t, k], np.float32), "action_mask": mask}
        if agent == "c":
            return np.array([self.t, k], np.float32)
        return np.array([self.t, self.last[k], k], np.float32)

    def state(self):
        return np.array([self.t, self.last.sum()], np.float32)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        self.t, self.last = 0, np.zeros(3, np.float32)
        return {a: self._observe(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        if self.kind == "raise" and self.t == 3:
            raise ValueError("agent b dropped its food (a fault on purpose)")
        rewards, terminations, truncations = {}, {}, {}
        for a in self.agents:
            k = self.possible_agents.index(a)
            self.last[k] = actions[a]
            rewards[a] = float(actions[a]) + k / 10
            terminations[a] = a == "c" and self.t == 2
            truncations[a] = self.t >= 4
        observations = {a: self._observe(a) for a in self.agents}
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return observations, rewards, terminations, truncations, {a: {} for a in observations}

    @property
    def unwrapped(self):
        return self


def parallel_env(**kwargs):
    return ParallelCounter(**kwargs)
