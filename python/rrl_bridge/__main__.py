"""The bridge server: `python3 -m rrl_bridge` (see the package docstring for the protocol)."""
import importlib
import json
import os
import select
import struct
import sys
import traceback

import numpy as np

from . import PROTOCOL

MAKE, RESET, STEP, LIST, CLOSE = 1, 2, 3, 4, 5


F32 = np.dtype(np.float32)


class BridgeError(Exception):
    """A request the bridge cannot serve; its message goes back to Swift as it is."""


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


def import_modules(modules):
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise BridgeError(f"cannot import module '{name}' ({e}); install it (pip install {name.split('.')[0]}) or fix --env-module")


def json_float(x):
    """A bound as JSON allows it: infinite ones as the strings "inf" and "-inf"."""
    x = float(x)
    return x if np.isfinite(x) else ("inf" if x > 0 else "-inf")


def space_spec(space, role):
    """(description, width, encoder) of a space; refuses spaces the bridge cannot flatten.

    Observations flatten as gymnasium.spaces.flatten does: Box and MultiBinary as their values,
    Discrete as a one-hot, MultiDiscrete as concatenated one-hots, Tuple and Dict as their parts'
    flattenings concatenated (a Dict in its own key order). Actions: one Box, one Discrete, or a
    MultiDiscrete(nvec) taken as one Discrete over every combination (index k is the entries of
    numpy.unravel_index(k, nvec), the first entry varying slowest)."""
    import gymnasium.spaces as S
    if isinstance(space, (S.Box, S.MultiBinary)):
        shape = space.shape
        if isinstance(space, S.Box):
            low = np.broadcast_to(space.low, shape).astype(np.float64).ravel()
            high = np.broadcast_to(space.high, shape).astype(np.float64).ravel()
        elif role == "action":
            raise BridgeError(f"the action space {space} (MultiBinary) is not supported: rrl's agents take one Box or one Discrete action")
        else:
            low, high = np.zeros(int(np.prod(shape))), np.ones(int(np.prod(shape)))
        if low.size == 0:
            raise BridgeError(f"the {role} space {space} has no values (shape {shape}); rrl needs at least one")
        spec = {"type": "box", "low": [json_float(x) for x in low], "high": [json_float(x) for x in high]}
        if role == "action" and len(shape) != 1:
            # rrl sends the values flat; they are reshaped to the space's shape before env.step.
            spec["shape"] = list(shape)

        def copy(x, out, shape=shape, space=space):
            a = np.asarray(x, dtype=np.float32)
            if a.shape != shape:
                raise BridgeError(f"the environment returned an observation of shape {a.shape}, but its observation space {space} has shape {shape}; fix the environment or its observation_space")
            out[:] = a.ravel()
        return spec, int(low.size), copy
    if isinstance(space, S.Discrete):
        n, start = int(space.n), int(space.start)
        if n < 1:
            raise BridgeError(f"the {role} space {space} has no values; rrl needs at least one")
        if role == "action":
            # rrl sends 0..n-1; the bridge adds the space's start.
            return {"type": "discrete", "n": n, "start": start}, 1, None
        def one_hot(x, out, n=n, start=start):
            out[:] = 0
            out[int(x) - start] = 1
        return {"type": "box", "low": [0.0] * n, "high": [1.0] * n, "one_hot": [n]}, n, one_hot
    if isinstance(space, S.MultiDiscrete):
        nvec = [int(v) for v in np.asarray(space.nvec).ravel()]
        if role == "action":
            total = int(np.prod(nvec))
            if total > 1 << 16:
                raise BridgeError(f"the action space {space} (MultiDiscrete) has {total} combinations, too many to take as one Discrete action")
            return {"type": "discrete", "n": total, "multi_discrete": nvec}, 1, None
        def one_hots(x, out, nvec=nvec):
            out[:] = 0
            offset = 0
            for v, n in zip(np.asarray(x).ravel(), nvec):
                out[offset + int(v)] = 1
                offset += n
        w = sum(nvec)
        return {"type": "box", "low": [0.0] * w, "high": [1.0] * w, "one_hot": nvec}, w, one_hots
    if isinstance(space, (S.Tuple, S.Dict)) and role == "observation":
        keys = list(space.spaces.keys()) if isinstance(space, S.Dict) else list(range(len(space.spaces)))
        parts = [space_spec(space.spaces[k], role) for k in keys]
        bounds = [0]
        for _, w, _ in parts:
            bounds.append(bounds[-1] + w)
        encoders = [(k, encode, bounds[i], bounds[i + 1]) for i, (k, (_, _, encode)) in enumerate(zip(keys, parts))]
        def concatenated(x, out, encoders=encoders):
            for k, encode, a, b in encoders:
                encode(x[k], out[a:b])
        spec = {"type": "box", "low": sum((p[0]["low"] for p in parts), []), "high": sum((p[0]["high"] for p in parts), [])}
        return spec, bounds[-1], concatenated
    kind = type(space).__name__
    if role == "action":
        raise BridgeError(f"the action space {space} ({kind}) is not supported: rrl's agents take one Box, one Discrete or one MultiDiscrete action")
    raise BridgeError(f"the {role} space {space} ({kind}) is not supported: the bridge flattens Box, Discrete, MultiDiscrete, MultiBinary, Tuple and Dict only (wrap the environment with gymnasium.wrappers.FlattenObservation)")


class Server:
    def __init__(self):
        self.envs = []

    def make(self, request):
        import gymnasium as gym
        import_modules(request.get("modules", []))
        name, count = request["env"], int(request["count"])
        kwargs = request.get("kwargs", {})
        try:
            self.envs = [gym.make(name, **kwargs) for _ in range(count)]
        except gym.error.Error as e:
            known = sorted(gym.registry.keys())
            close = [k for k in known if name.lower().split("-v")[0] in k.lower()][:8]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise BridgeError(f"unknown environment '{name}' ({e}){hint}; `rrl list --python` shows the {len(known)} registered ones")
        env = self.envs[0]
        obs_spec, self.w, self.encode = space_spec(env.observation_space, "observation")
        act_spec, self.a, _ = space_spec(env.action_space, "action")
        self.discrete_action = act_spec["type"] == "discrete"
        self.action_nvec, self.action_start = act_spec.get("multi_discrete"), act_spec.get("start", 0)
        self.action_shape = tuple(act_spec["shape"]) if "shape" in act_spec else None
        self.n = count
        self.obs = np.zeros((count, self.w), dtype=np.float32)
        # Step replies: rows are sent as bytes; a plain Box observation (its float32 values are the
        # flattened observation) as it comes, without copying through the encoder.
        self.row = np.zeros(self.w, dtype=np.float32)
        self.zero_row = self.row.tobytes()
        self.plain = isinstance(env.observation_space, gym.spaces.Box)
        self.reward_format, self.action_format = f"<{count}f", f"<{count * self.a}f"
        limit = env.spec.max_episode_steps if env.spec is not None else None
        return json.dumps({"protocol": PROTOCOL, "agents": 1, "observation": obs_spec, "action": act_spec,
                           "observation_width": self.w, "action_width": self.a,
                           "max_episode_steps": int(limit) if limit else 0}).encode()

    def reset(self, payload):
        has_seed, seed = struct.unpack("<BQ", payload)
        for i, env in enumerate(self.envs):
            o, _ = env.reset(seed=(seed + i) % 2**64 if has_seed else None)
            self.encode(o, self.obs[i])
        return self.obs.tobytes()

    def step(self, payload):
        if self.action_nvec is not None:
            nvec = self.action_nvec
            actions = [np.array(np.unravel_index(int(x), nvec), dtype=np.int64) for x in struct.unpack(self.action_format, payload)]
        elif self.discrete_action:
            start = self.action_start
            actions = [int(x) + start for x in struct.unpack(self.action_format, payload)]
        else:
            actions = np.frombuffer(payload, dtype=np.float32).reshape(self.n, self.a)
            if self.action_shape is not None:
                actions = [a.reshape(self.action_shape) for a in actions]
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
