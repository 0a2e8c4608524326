"""Spaces as the bridge flattens them, and the errors it reports (shared by the single- and
multi-agent servers)."""
import importlib
import struct

import numpy as np


class BridgeError(Exception):
    """A request the bridge cannot serve; its message goes back to Swift as it is."""


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


def make_gym(name, kwargs):
    """gym.make(name, **kwargs), or an error naming similar registered ids."""
    import gymnasium as gym
    try:
        return gym.make(name, **kwargs)
    except gym.error.Error as e:
        known = sorted(gym.registry.keys())
        close = [k for k in known if name.lower().split("-v")[0] in k.lower()][:8]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise BridgeError(f"unknown environment '{name}' ({e}){hint}; `rrl list --python` shows the {len(known)} registered ones")


def action_decoder(spec, width, count):
    """How `count` of rrl's flat float32 actions (`width` floats each, as bytes) become the
    environment's: a Discrete index plus the space's start, a MultiDiscrete combination unravelled,
    a Box row (reshaped to the space's shape when it has one). Returns a function of the bytes that
    gives the list of actions."""
    nvec, start = spec.get("multi_discrete"), spec.get("start", 0)
    shape = tuple(spec["shape"]) if "shape" in spec else None
    if spec["type"] == "discrete":
        layout = f"<{count}f"
        if nvec is not None:
            return lambda payload: [np.array(np.unravel_index(int(x), nvec), dtype=np.int64) for x in struct.unpack(layout, payload)]
        return lambda payload: [int(x) + start for x in struct.unpack(layout, payload)]
    if shape is not None:
        return lambda payload: [row.reshape(shape) for row in np.frombuffer(payload, dtype=np.float32).reshape(count, width)]
    return lambda payload: np.frombuffer(payload, dtype=np.float32).reshape(count, width)
