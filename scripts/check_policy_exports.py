#!/usr/bin/env python3
"""Runs an exported policy (policy.onnx with onnxruntime, policy.safetensors with python/rrl_policy.py)
over a recorded rollout and writes what each gave, for the export tests to compare with rrl.

Usage: check_policy_exports.py DIR FORMAT...   (FORMAT: onnx, torch)

DIR holds rollout.json (sizes) and float32 files written by the tests: observations [T, B, o], rewards
[T, B], starts [T, B] (1 where an episode begins), masks [T, B, n]. Writes FORMAT_actions.bin [T, B,
actionWidth] (discrete: the index as a float) and FORMAT_states.bin [T, B, R] (the recurrent state in
RecurrentRL's layout: per layer h, then c for an LSTM).
"""
import json
import os
import sys

import numpy as np


def main():
    folder, formats = sys.argv[1], sys.argv[2:]
    info = json.load(open(os.path.join(folder, "rollout.json")))
    T, B, o, n = info["steps"], info["rows"], info["observationWidth"], info["maskWidth"]

    def read(name, *shape):
        return np.fromfile(os.path.join(folder, name), dtype=np.float32).reshape(*shape)

    observations, rewards, starts = read("observations.bin", T, B, o), read("rewards.bin", T, B), read("starts.bin", T, B)
    masks = read("masks.bin", T, B, max(n, 1)) if n else None
    agents, layers, hidden, lstm = info["agents"], info["layers"], info["hidden"], info["lstm"]
    R = layers * hidden * (2 if lstm else 1)
    for fmt in formats:
        actions, states = [], []
        if fmt == "onnx":
            import onnxruntime as ort
            session = ort.InferenceSession(os.path.join(folder, "policy.onnx"), providers=["CPUExecutionProvider"])
            names = {i.name for i in session.get_inputs()}
            h = np.zeros((layers, B, hidden), np.float32)
            c = np.zeros((layers, B, hidden), np.float32)
            previous = np.zeros((B, info["previousActionWidth"]), np.float32)
            previous_observation = np.zeros((B, o), np.float32)
            for t in range(T):
                feeds = {"observation": observations[t], "episode_start": starts[t].reshape(B, 1)}
                if "reward" in names:
                    feeds["reward"] = rewards[t].reshape(B, 1)
                if "agent_id" in names:
                    feeds["agent_id"] = np.eye(agents, dtype=np.float32)[np.arange(B) % agents]
                if "h" in names:
                    feeds["h"] = h
                if "c" in names:
                    feeds["c"] = c
                if "previous_action" in names:
                    feeds["previous_action"] = previous
                if "previous_observation" in names:
                    feeds["previous_observation"] = previous_observation
                if "action_mask" in names:
                    feeds["action_mask"] = masks[t]
                out = dict(zip([x.name for x in session.get_outputs()], session.run(None, feeds)))
                if "h_next" in out:
                    h = out["h_next"]
                if "c_next" in out:
                    c = out["c_next"]
                if "previous_action_next" in out:
                    previous = out["previous_action_next"].astype(np.float32)
                if "previous_observation_next" in out:
                    previous_observation = out["previous_observation_next"].astype(np.float32)
                actions.append(out["action"].astype(np.float32).reshape(B, -1))
                rows = [np.concatenate([np.concatenate([h[l, b], c[l, b]]) if lstm else h[l, b] for l in range(layers)]) if layers else np.zeros(0, np.float32)
                        for b in range(B)]
                states.append(np.stack(rows).astype(np.float32))
        elif fmt == "torch":
            import torch
            sys.path.insert(0, folder)
            import rrl_policy
            policy = rrl_policy.load(os.path.join(folder, "policy.safetensors"))
            state = policy.initial_state(B)
            for t in range(T):
                action, state = policy(torch.from_numpy(observations[t]), state, torch.from_numpy(starts[t]),
                                       reward=torch.from_numpy(rewards[t]),
                                       action_mask=torch.from_numpy(masks[t]) if masks is not None else None)
                actions.append(action.float().numpy().reshape(B, -1))
                states.append(state[:, :R].numpy())
        else:
            sys.exit(f"unknown format {fmt}")
        np.stack(actions).astype(np.float32).tofile(os.path.join(folder, f"{fmt}_actions.bin"))
        np.stack(states).astype(np.float32).tofile(os.path.join(folder, f"{fmt}_states.bin"))


if __name__ == "__main__":
    main()
