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
