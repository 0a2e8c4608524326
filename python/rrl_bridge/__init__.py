"""rrl_bridge: serves Gymnasium-style environments to RecurrentRL (`rrl`) over a child process's
standard input and output.

The Swift side starts `python3 -m rrl_bridge` and speaks a small binary protocol (little-endian):

    request:  u32 length | u8 opcode | payload            (length counts opcode + payload)
    reply:    u32 length | u8 status | payload            (status 0: ok, 1: error, payload = message)

    MAKE  (1): JSON {"env": id, "count": N, "modules": [...], "kwargs": {...}}
               -> JSON {"protocol": 1, "agents": 1, "observation": space, "action": space,
                        "observation_width": w, "action_width": a, "max_episode_steps": k}
    RESET (2): u8 has_seed | u64 seed     (copy i is reset with seed + i)
               -> f32[N * w] observations
    STEP  (3): f32[N * a] actions          (one message steps all N copies)
               -> f32[N * w] observations (a copy whose episode ended is already reset)
                  f32[N * w] final observations (the last one of an ended episode; zeros otherwise)
                  f32[N] rewards | u8[N] flags (bit 0 terminated, bit 1 truncated)
    LIST  (4): JSON {"modules": [...]}  -> JSON ["CartPole-v1", ...]
    CLOSE (5): -> empty

Space descriptions give Box bounds as numbers, infinite ones as the strings "inf" and "-inf".
Flattening (observations, as gymnasium.spaces.flatten does): Box and MultiBinary -> their values
as float32 (row-major); Discrete(n) -> one-hot of n; MultiDiscrete(nvec) -> the one-hots of its
entries, concatenated; Tuple and Dict -> their parts' flattenings, concatenated (a Dict in its own
key order). Actions: Box -> floats; Discrete(n) -> one float holding the index 0..n-1 (the bridge
adds the space's start); MultiDiscrete(nvec) -> one Discrete over all combinations, index k being
numpy.unravel_index(k, nvec) (first entry slowest; at most 65,536 combinations). Other spaces are
refused with a message saying which and why.
Multi-agent environments (MAKE with "multi_agent": true and "count": 1; see multiagent.py): "env"
is `pz:MODULE` (PettingZoo's parallel API, made by MODULE.parallel_env(**kwargs)) or `gym:ID` (a
Gymnasium environment whose spaces are Tuples, one entry per agent; any other as one agent). With
M agents, observation width w (the widest agent's; narrower ones padded with zeros), global state
width g (PettingZoo's state(), 0 without one) and n action-mask entries per agent (0 without masks):

    MAKE       -> JSON {..., "agents": M, "global_state_width": g, "action_masks": bool, "agent_names": [...]}
    RESET (2): u8 has_seed | u64 seed  -> f32[M * w] observations | f32[g] state | f32[M * n] masks
    STEP  (3): f32[M * a] actions      -> the same three, then f32[M] rewards | u8[M] active |
               u8 flags (bit 0 terminated, bit 1 truncated); the copy is never reset by itself.

Only the standard library and numpy are used here; the environments need their own packages
(`pip install gymnasium popgym`, `pip install mpe2 lbforaging`).
"""

PROTOCOL = 1
