"""The bridge server: `python3 -m rrl_bridge` (see the package docstring for the protocol)."""
import json
import os
import select
import struct
import sys
import traceback

import numpy as np

from . import PROTOCOL
from .multiagent import MultiAgentCopy
from .spaces import BridgeError, action_decoder, import_modules, make_gym, space_spec

MAKE, RESET, STEP, LIST, CLOSE = 1, 2, 3, 4, 5


F32 = np.dtype(np.float32)


class Reader:
    """Reads requests from a file descriptor, taking all that is available at once, and polling
    briefly before blocking (a request usually follows the reply within microseconds, sooner than a
    sleeping process is woken)."""

    def __init__(self, fd):
        self.fd, self.buffer = fd, bytearray()
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def read_exact(self, n):
        spins = 0
        while len(self.buffer) < n:
            if spins < 2000:
                spins += 1
                if not self.poller.poll(0):
                    continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data


class Server:
    def __init__(self):
        self.envs = []
        self.multi = None

    def make(self, request):
        name, count = request["env"], int(request["count"])
        kwargs = request.get("kwargs", {})
        if request.get("multi_agent", False):
            if count != 1:
                raise BridgeError("a multi-agent bridge serves one copy")
            self.multi = MultiAgentCopy(name, request.get("modules", []), kwargs)
            return json.dumps(self.multi.describe(PROTOCOL)).encode()
        if name.startswith("pz:"):
            raise BridgeError(f"{name} is a PettingZoo (multi-agent) environment; train it with masac")
        name = name[4:] if name.startswith("gym:") else name
        import gymnasium as gym
        import_modules(request.get("modules", []))
        self.envs = [make_gym(name, kwargs) for _ in range(count)]
        env = self.envs[0]
        if isinstance(env.action_space, gym.spaces.Tuple) and isinstance(env.observation_space, gym.spaces.Tuple):
            agents = len(env.action_space.spaces)
            raise BridgeError(f"{name} has {agents} agents (its spaces are Tuples, one entry per agent); train it with masac")
        obs_spec, self.w, self.encode = space_spec(env.observation_space, "observation")
        act_spec, self.a, _ = space_spec(env.action_space, "action")
        self.decode_actions = action_decoder(act_spec, self.a, count)
        self.n = count
        self.obs = np.zeros((count, self.w), dtype=np.float32)
        # Step replies: rows are sent as bytes; a plain Box observation (its float32 values are the
        # flattened observation) as it comes, without copying through the encoder.
        self.row = np.zeros(self.w, dtype=np.float32)
        self.zero_row = self.row.tobytes()
        self.plain = isinstance(env.observation_space, gym.spaces.Box)
        self.reward_format = f"<{count}f"
        limit = env.spec.max_episode_steps if env.spec is not None else None
        return json.dumps({"protocol": PROTOCOL, "agents": 1, "observation": obs_spec, "action": act_spec,
                           "observation_width": self.w, "action_width": self.a,
                           "max_episode_steps": int(limit) if limit else 0}).encode()

    def reset(self, payload):
        has_seed, seed = struct.unpack("<BQ", payload)
        if self.multi is not None:
            return self.multi.reset(seed if has_seed else None)
        for i, env in enumerate(self.envs):
            o, _ = env.reset(seed=(seed + i) % 2**64 if has_seed else None)
            self.encode(o, self.obs[i])
        return self.obs.tobytes()

    def step(self, payload):
        if self.multi is not None:
            return self.multi.step(payload)
        actions = self.decode_actions(payload)
        n, w, encode, row, f32 = self.n, self.w, self.encode, self.row, F32
        observations, finals, rewards, flags = [b""] * n, [self.zero_row] * n, [0.0] * n, bytearray(n)
        for i, env in enumerate(self.envs):
            o, r, terminated, truncated, _ = env.step(actions[i])
            rewards[i] = r
            if terminated or truncated:
                flags[i] = (1 if terminated else 0) | (2 if truncated else 0)
                # A float32 vector of the right size is sent as it is; anything else goes through the encoder.
                if isinstance(o, np.ndarray) and o.dtype is f32 and o.size == w and self.plain:
                    finals[i] = o.tobytes()
                else:
                    encode(o, row)
                    finals[i] = row.tobytes()
                o, _ = env.reset()
            if isinstance(o, np.ndarray) and o.dtype is f32 and o.size == w and self.plain:
                observations[i] = o.tobytes()
            else:
                encode(o, row)
                observations[i] = row.tobytes()
        return b"".join(observations + finals + [struct.pack(self.reward_format, *rewards), bytes(flags)])

    def list(self, request):
        import gymnasium as gym
        import_modules(request.get("modules", []))
        return json.dumps(sorted(gym.registry.keys())).encode()


def main():
    # The protocol gets its own copy of stdout; file descriptor 1 then points to stderr, so that
    # whatever the environments print (from Python or from C) never enters the protocol's stream.
    reader, out = Reader(sys.stdin.fileno()), os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(data):
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]

    server = Server()
    while True:
        header = reader.read_exact(4)
        if header is None:
            return
        (length,) = struct.unpack("<I", header)
        message = reader.read_exact(length)
        if message is None:
            return
        opcode, payload = message[0], message[1:]
        try:
            if opcode == MAKE:
                reply = server.make(json.loads(payload))
            elif opcode == RESET:
                reply = server.reset(payload)
            elif opcode == STEP:
                reply = server.step(payload)
            elif opcode == LIST:
                reply = server.list(json.loads(payload))
            elif opcode == CLOSE:
                send(struct.pack("<IB", 1, 0))
                return
            else:
                raise BridgeError(f"unknown request {opcode}")
            status = 0
        except BridgeError as e:
            status, reply = 1, str(e).encode()
        except Exception as e:  # an exception inside the environment: its message and where it came from
            tb = traceback.extract_tb(e.__traceback__)
            where = f" (at {tb[-1].filename}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
            status, reply = 1, f"{type(e).__name__}: {e}{where}".encode()
        send(struct.pack("<IB", len(reply) + 1, status) + reply)


if __name__ == "__main__":
    main()
