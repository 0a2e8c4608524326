"""Multi-agent environments for the bridge: PettingZoo's parallel API (`pz:MODULE`, e.g.
`pz:mpe2.simple_spread_v3`, made by MODULE.parallel_env(**kwargs)) and Gymnasium environments whose
spaces are a Tuple with one entry per agent (`gym:ID`, e.g. lbforaging's Foraging-8x8-2p-2f-v3).

One bridge process serves one copy; the copy is reset by rrl (never automatically), so rrl decides
how finished copies wait. Agents are numbered in the environment's order (PettingZoo's
`possible_agents`, a Tuple's entries). Every agent must have the same action space; observations
of different widths are padded with zeros to the widest.
"""
import importlib

import numpy as np

from .spaces import BridgeError, action_decoder, import_modules, make_gym, space_spec


def _common_action_space(spaces, name):
    first = spaces[0]
    for k, space in enumerate(spaces[1:], 1):
        if space != first:
            raise BridgeError(f"{name}: agent {k}'s action space {space} differs from agent 0's {first}; rrl's multi-agent "
                              f"learners share one action space (pad or wrap the environment so that every agent has the same)")
    return first


def _observation_parts(spaces, name):
    """(spec padded to the widest, width, [(encode, width)], masks n or 0) over the agents' observation
    spaces. A Dict space with an "action_mask" entry (PettingZoo's convention) is taken as its
    "observation" entry plus an action mask."""
    import gymnasium.spaces as S
    encoders, specs, mask_keys = [], [], []
    for space in spaces:
        if isinstance(space, S.Dict) and "action_mask" in space.spaces and "observation" in space.spaces:
            spec, w, encode = space_spec(space.spaces["observation"], "observation")
            mask_keys.append(True)
        else:
            spec, w, encode = space_spec(space, "observation")
            mask_keys.append(False)
        specs.append(spec)
        encoders.append((encode, w))
    if any(mask_keys) and not all(mask_keys):
        raise BridgeError(f"{name}: some agents' observations carry an action mask and others do not")
    width = max(w for _, w in encoders)
    low, high = [], []
    for spec, (_, w) in zip(specs, encoders):
        low.append(spec["low"] + [0.0] * (width - w))
        high.append(spec["high"] + [0.0] * (width - w))
    # The padded space covers every agent's: the loosest bound of each position.
    def loosest(values, pick):
        numeric = [(-np.inf if v == "-inf" else np.inf if v == "inf" else v) for v in values]
        x = pick(numeric)
        return x if np.isfinite(x) else ("inf" if x > 0 else "-inf")
    spec = {"type": "box", "low": [loosest(c, min) for c in zip(*low)], "high": [loosest(c, max) for c in zip(*high)]}
    return spec, width, encoders, all(mask_keys)


class MultiAgentCopy:
    """One copy of a multi-agent environment, behind one interface for both APIs."""

    def __init__(self, name, modules, kwargs):
        import_modules(modules)
        self.name = name
        if name.startswith("pz:"):
            module_name = name[3:]
            try:
                module = importlib.import_module(module_name)
            except ImportError as e:
                raise BridgeError(f"cannot import the PettingZoo environment module '{module_name}' ({e}); pz:MODULE names a module "
                                  f"with parallel_env(), e.g. pz:mpe2.simple_spread_v3 (pip install mpe2)")
            if not hasattr(module, "parallel_env"):
                raise BridgeError(f"module '{module_name}' has no parallel_env(); pz:MODULE must name a PettingZoo environment module")
            self.env = module.parallel_env(**kwargs)
            self.pettingzoo = True
            self.names = list(self.env.possible_agents)
            observation_spaces = [self.env.observation_space(a) for a in self.names]
            action_spaces = [self.env.action_space(a) for a in self.names]
            limit = getattr(self.env.unwrapped, "max_cycles", None) or getattr(self.env.unwrapped, "max_episode_steps", None)
        else:
            import gymnasium.spaces as S
            self.env = make_gym(name[4:], kwargs)
            self.pettingzoo = False
            if not (isinstance(self.env.action_space, S.Tuple) and isinstance(self.env.observation_space, S.Tuple)
                    and len(self.env.action_space.spaces) == len(self.env.observation_space.spaces)):
                # A single-agent environment: one agent.
                observation_spaces, action_spaces = [self.env.observation_space], [self.env.action_space]
                self.single = True
            else:
                observation_spaces, action_spaces = list(self.env.observation_space.spaces), list(self.env.action_space.spaces)
                self.single = False
            self.names = list(range(len(action_spaces)))
            limit = (self.env.spec.max_episode_steps if self.env.spec is not None else None) \
                or getattr(self.env.unwrapped, "_max_episode_steps", None) or getattr(self.env.unwrapped, "max_episode_steps", None)
        self.agents = len(self.names)
        if self.agents < 1:
            raise BridgeError(f"{name} has no agents")
        self.obs_spec, self.w, self.encoders, self.masked = _observation_parts(observation_spaces, name)
        self.act_spec, self.a, _ = space_spec(_common_action_space(action_spaces, name), "action")
        if self.masked and self.act_spec["type"] != "discrete":
            raise BridgeError(f"{name}: action masks need discrete actions")
        self.n = self.act_spec.get("n", 0)
        self.decode_actions = action_decoder(self.act_spec, self.a, self.agents)
        self.g = 0
        if self.pettingzoo and getattr(self.env, "state_space", None) is not None:
            try:
                self.state_encode = space_spec(self.env.state_space, "observation")
                self.g = self.state_encode[1]
            except (NotImplementedError, AttributeError, BridgeError):
                self.g = 0
        self.limit = int(limit) if limit else 0
        self.obs = np.zeros((self.agents, self.w), dtype=np.float32)
        self.state = np.zeros(self.g, dtype=np.float32)
        self.masks = np.ones((self.agents, self.n if self.masked else 0), dtype=np.float32)
        self.rewards = np.zeros(self.agents, dtype=np.float32)
        self.active = np.ones(self.agents, dtype=np.uint8)

    def describe(self, protocol):
        return {"protocol": protocol, "agents": self.agents, "observation": self.obs_spec, "action": self.act_spec,
                "observation_width": self.w, "action_width": self.a, "global_state_width": self.g,
                "action_masks": self.masked, "max_episode_steps": self.limit, "agent_names": [str(a) for a in self.names]}

    def _write_observation(self, k, o):
        encode, w = self.encoders[k]
        if self.masked:
            self.masks[k] = np.asarray(o["action_mask"], dtype=np.float32).ravel()[:self.n]
            o = o["observation"]
        row = self.obs[k]
        row[w:] = 0
        encode(o, row[:w])

    def _write_all(self, observations):
        if self.pettingzoo:
            for k, a in enumerate(self.names):
                if a in observations:
                    self._write_observation(k, observations[a])
        elif self.single:
            self._write_observation(0, observations)
        else:
            for k in range(self.agents):
                self._write_observation(k, observations[k])
        if self.g:
            self.state_encode[2](self.env.state(), self.state)

    def _reply(self, extra=b""):
        return self.obs.tobytes() + self.state.tobytes() + self.masks.tobytes() + extra

    def reset(self, seed):
        observations, _ = self.env.reset(seed=seed)
        self.active[:] = 1
        self._write_all(observations)
        return self._reply()

    def step(self, payload):
        actions = self.decode_actions(payload)
        self.rewards[:] = 0
        if self.pettingzoo:
            alive = list(self.env.agents)
            index = {a: k for k, a in enumerate(self.names)}
            observations, rewards, terminations, truncations, _ = self.env.step({a: actions[index[a]] for a in alive})
            for a, r in rewards.items():
                if a in index:
                    self.rewards[index[a]] = r
            still = set(self.env.agents)
            for a in alive:
                if a not in still or terminations.get(a, False) or truncations.get(a, False):
                    self.active[index[a]] = 0
            ended = not self.active.any()
            # The episode's end: terminated when no agent's was a truncation.
            truncated = ended and any(truncations.get(a, False) for a in alive)
            terminated = ended and not truncated
        else:
            if self.single:
                observations, reward, terminated, truncated, _ = self.env.step(actions[0])
                self.rewards[0] = reward
            else:
                observations, rewards, terminated, truncated, _ = self.env.step(tuple(actions))
                rewards = np.asarray(rewards, dtype=np.float32).ravel()
                if rewards.size == 1:
                    rewards = np.repeat(rewards, self.agents)
                if rewards.size != self.agents:
                    raise BridgeError(f"{self.name} returned {rewards.size} rewards for {self.agents} agents")
                self.rewards[:] = rewards
            terminated, truncated = bool(np.all(terminated)), bool(np.all(truncated))
            if terminated:
                truncated = False
        self._write_all(observations)
        flags = (1 if terminated else 0) | (2 if truncated else 0)
        return self._reply(self.rewards.tobytes() + self.active.tobytes() + bytes([flags]))
