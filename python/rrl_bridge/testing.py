"""Misbehaving environments for rrl's tests of the bridge's failure handling (import this module
with `--env-module rrl_bridge.testing`). Each is a one-dimensional task whose fault comes after a
few steps."""
import os
import time

import gymnasium as gym
import numpy as np


class Faulty(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, fault="none", after=3):
        self.fault, self.after, self.t = fault, after, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t == self.after:
            if self.fault == "raise":
                raise ValueError("the pole fell off the cart (a fault on purpose)")
            if self.fault == "crash":
                os._exit(3)
            if self.fault == "hang":
                time.sleep(3600)
        if self.fault == "print":
            print("chatter from the environment's step")
            os.write(1, b"raw chatter written to file descriptor 1\n")
        return np.zeros(1, np.float32), 1.0, False, self.t >= 10, {}


class TextObservation(gym.Env):
    """A space the bridge cannot flatten (text)."""
    observation_space = gym.spaces.Text(max_length=5)
    action_space = gym.spaces.Discrete(2)


for name, kwargs in [("Raise", {"fault": "raise"}), ("Crash", {"fault": "crash"}), ("Hang", {"fault": "hang"}), ("Print", {"fault": "print"})]:
    gym.register(f"rrl-testing/{name}-v0", entry_point=Faulty, kwargs=kwargs)
gym.register("rrl-testing/TextObservation-v0", entry_point=TextObservation)


class MatrixAction(gym.Env):
    """A Box(2, 2) action: the observation echoes the action it was given, flattened row by row, so a
    test can see that the bridge hands env.step an array of the space's shape."""
    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2, 2), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        if np.shape(action) != (2, 2):
            raise ValueError(f"expected an action of shape (2, 2), got {np.shape(action)}")
        return np.asarray(action, np.float32).ravel(), 0.0, False, False, {}


class WrongShape(gym.Env):
    """Declares Box(4) observations but returns a scalar."""
    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.float32(0.5), {}

    def step(self, action):
        return np.float32(0.5), 0.0, False, False, {}


class Shaped(gym.Env):
    """Spaces given as arguments: empty observations, unbounded actions, huge Discrete actions."""

    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


gym.register("rrl-testing/MatrixAction-v0", entry_point=MatrixAction, max_episode_steps=20)
gym.register("rrl-testing/WrongShape-v0", entry_point=WrongShape, max_episode_steps=20)
gym.register("rrl-testing/EmptyObservation-v0", entry_point=Shaped, max_episode_steps=20,
             kwargs={"observation_space": gym.spaces.Box(-1.0, 1.0, (0,), np.float32), "action_space": gym.spaces.Discrete(2)})
gym.register("rrl-testing/UnboundedAction-v0", entry_point=Shaped, max_episode_steps=20,
             kwargs={"observation_space": gym.spaces.Box(-1.0, 1.0, (3,), np.float32),
                     "action_space": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)})
gym.register("rrl-testing/HugeDiscreteAction-v0", entry_point=Shaped, max_episode_steps=20,
             kwargs={"observation_space": gym.spaces.Box(-1.0, 1.0, (3,), np.float32), "action_space": gym.spaces.Discrete(10 ** 7)})
