"""A RecurrentRL policy as a torch.nn.Module, built from the manifest in its weights file.

    import rrl_policy
    policy = rrl_policy.load("policy.safetensors")        # `rrl export RUN --format torch`, or a run's weights.safetensors
    state = policy.initial_state(batch=1)
    action, state = policy(observation, state, episode_start)   # one step; see Policy.forward

The step is the one RecurrentRL's manifest describes (PolicyManifest in Sources/Inference): at an
episode's start the state and the previous action are zeros and the reward 0; the observation (and
the previous reward) are normalised when the manifest holds normalisers; the network's input is the
observation, the agent's id one-hot, the previous action (one-hot when discrete) and the previous
reward; PyTorch's GRU/LSTM then the head MLP; the deterministic action (tanh of the mean, the clipped
output, the mean, or the best logit) mapped onto the environment's bounds. Actions are deterministic.

The state is a [batch, state_width] tensor laid out as RecurrentRL's: per recurrent layer h (then c for
an LSTM), then the previous action as the network sees it, then (when the context holds it) the
previous observation as the network saw it. RESeL's context encoder is built when the manifest has one. Policies with one network per agent run
row r (or agent[r]) through its agent's network.
"""
import json

import torch
from safetensors import safe_open

METADATA_KEY = "rrl.policy"


def load(path):
    """The policy in a RecurrentRL weights file (its manifest and tensors)."""
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        if METADATA_KEY not in metadata:
            raise ValueError(f"{path} holds no RecurrentRL policy manifest; write one with `rrl export RUN --format torch`")
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    return Policy(json.loads(metadata[METADATA_KEY]), tensors)


_ACTIVATIONS = {
    "identity": lambda x: x,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": torch.nn.functional.elu,
}


class Policy(torch.nn.Module):
    def __init__(self, manifest, tensors):
        super().__init__()
        if manifest.get("version", 0) > 1:
            raise ValueError(f"policy manifest version {manifest['version']} is newer than this module's (1)")
        self.manifest = manifest
        net = manifest["network"]
        self.cell = net.get("cell")
        self.hidden = net["hiddenSize"]
        self.layers = net["layers"] if self.cell else 0
        # One network shared by the agents, or one per agent (agent k's tensors under "agentK.").
        self.count = manifest.get("networks") or 1
        self.rnns = torch.nn.ModuleList()
        self.heads = torch.nn.ModuleList()
        # RESeL's context encoder: each input group embedded, dense layers, the recurrence, the
        # activation, a linear layer, and a projection of the observation beside it.
        self.context_encoder = net.get("contextEncoder")
        self.encoders = torch.nn.ModuleList()
        context = manifest["context"]
        actions = manifest["actions"]
        discrete = actions.get("count")
        previous = (discrete or len(actions["low"])) if context["lastAction"] else 0
        o = manifest["observationWidth"]
        self.groups = [w for w in [o if context["observation"] else 0, o if context.get("lastObservation") else 0,
                                   manifest["agents"] if context["agentID"] else 0, previous, 1 if context["lastReward"] else 0] if w > 0]

        def linear_from(name, width_in, width_out):
            linear = torch.nn.Linear(width_in, width_out)
            linear.weight.data.copy_(tensors[name + ".weight"])
            linear.bias.data.copy_(tensors[name + ".bias"])
            return linear

        for k in range(self.count):
            prefix = net["parameterPrefix"] + (f"agent{k}." if self.count > 1 else "")
            rnn_input, rnn_prefix = net["inputWidth"], prefix + "encoder."
            if self.context_encoder:
                ce, parts = self.context_encoder, torch.nn.ModuleDict()
                E = ce["inputEmbedding"]
                parts["embeddings"] = torch.nn.ModuleList(
                    [linear_from(f"{prefix}encoder.embedding{g}", w, E) for g, w in enumerate(self.groups)])
                width, before = E * len(self.groups), torch.nn.ModuleList()
                for i, out in enumerate(ce["before"]):
                    before.append(linear_from(f"{prefix}encoder.before{i}", width, out))
                    width = out
                parts["before"] = before
                parts["after"] = linear_from(f"{prefix}encoder.after", self.hidden, ce["after"])
                if ce["projection"] > 0:
                    parts["projection"] = linear_from(f"{prefix}encoder.projection", self.groups[0], ce["projection"])
                self.encoders.append(parts)
                rnn_input, rnn_prefix = width, prefix + "encoder.rnn."
            if self.cell:
                kind = torch.nn.GRU if self.cell == "gru" else torch.nn.LSTM
                rnn = kind(rnn_input, self.hidden, self.layers)
                for name, parameter in rnn.named_parameters():
                    parameter.data.copy_(tensors[rnn_prefix + name])
                self.rnns.append(rnn)
            linears = torch.nn.ModuleList()
            width = self.hidden if self.cell else net["inputWidth"]
            if self.context_encoder:
                width = self.context_encoder["after"] + self.context_encoder["projection"]
            for i, out in enumerate(net["headHiddenSizes"] + [net["outputWidth"]]):
                linear = torch.nn.Linear(width, out)
                linear.weight.data.copy_(tensors[f"{prefix}head.{i}.weight"])
                linear.bias.data.copy_(tensors[f"{prefix}head.{i}.bias"])
                linears.append(linear)
                width = out
            self.heads.append(linears)
        self.activation = _ACTIVATIONS[net["activation"]]
        self.output_activation = _ACTIVATIONS[net["outputActivation"]]
        actions = manifest["actions"]
        self.discrete = actions.get("count")
        self.action_width = 1 if self.discrete else len(actions["low"])
        if not self.discrete:
            self.register_buffer("low", torch.tensor(actions["low"], dtype=torch.float32))
            self.register_buffer("high", torch.tensor(actions["high"], dtype=torch.float32))
        context = manifest["context"]
        self.previous_width = (self.discrete or self.action_width) if context["lastAction"] else 0
        self.recurrent_width = self.layers * self.hidden * (2 if self.cell == "lstm" else 1)
        # The previous observation (as the network saw it) follows the previous action in the state.
        self.previous_observation_width = manifest["observationWidth"] if context.get("lastObservation") else 0
        self.state_width = self.recurrent_width + self.previous_width + self.previous_observation_width

    def initial_state(self, batch=1):
        return torch.zeros(batch, self.state_width)

    @torch.no_grad()
    def forward(self, observation, state, episode_start, reward=None, agent=None, action_mask=None):
        """One step of `batch` rows: observation [batch, observationWidth]; state [batch, state_width];
        episode_start [batch] (true where an episode begins at this observation); reward [batch] (for the
        previous action; policies whose context holds it); agent [batch] agent indices (policies shared by
        several agents; default row % agents); action_mask [batch, n] (1: available; discrete policies).
        Returns the environment's action ([batch, actionWidth] floats, or [batch] int64 indices) and the next state."""
        m, context = self.manifest, self.manifest["context"]
        batch = observation.shape[0]
        keep = 1.0 - torch.as_tensor(episode_start, dtype=torch.float32).reshape(batch, 1)
        state = state * keep
        parts = []
        if context["observation"]:
            x = observation.float()
            normalizer = m.get("observationNormalizer")
            if normalizer:
                mean = torch.tensor(normalizer["mean"], dtype=torch.float64)
                std = torch.sqrt(torch.tensor(normalizer["variance"], dtype=torch.float64) + 1e-8)
                x = ((x.double() - mean) / std).clamp(-10, 10).float()
            parts.append(x)
        r0 = self.recurrent_width
        if self.previous_observation_width:
            p0 = r0 + self.previous_width
            parts.append(state[:, p0:p0 + self.previous_observation_width])
        agents = m["agents"]
        index = (torch.arange(batch) % agents if agent is None else torch.as_tensor(agent)).long()
        if context["agentID"]:
            parts.append(torch.nn.functional.one_hot(index, agents).float())
        if self.previous_width:
            parts.append(state[:, r0:r0 + self.previous_width])
        if context["lastReward"]:
            r = torch.zeros(batch) if reward is None else torch.as_tensor(reward, dtype=torch.float32).reshape(batch)
            normalizer = m.get("rewardNormalizer")
            if normalizer:
                r = (r.double() / (normalizer["variance"][0] + 1e-8) ** 0.5).clamp(-10, 10).float()
            parts.append(r.reshape(batch, 1) * keep)
        context = torch.cat(parts, dim=1)
        next_state = state.clone()
        if self.previous_observation_width:
            p0 = r0 + self.previous_width
            next_state[:, p0:p0 + self.previous_observation_width] = parts[0]
        outputs = []
        for k in range(self.count):
            x = context
            if self.context_encoder:
                ce, column, embedded = self.encoders[k], 0, []
                for g, w in enumerate(self.groups):
                    embedded.append(ce["embeddings"][g](context[:, column:column + w]))
                    column += w
                x = torch.cat(embedded, dim=1)
                for linear in ce["before"]:
                    x = self.activation(linear(x))
            if self.cell:
                per = self.hidden * (2 if self.cell == "lstm" else 1)
                layers = state[:, :r0].reshape(batch, self.layers, per).transpose(0, 1)
                h0 = layers[:, :, :self.hidden].contiguous()
                if self.cell == "lstm":
                    c0 = layers[:, :, self.hidden:].contiguous()
                    y, (h, c) = self.rnns[k](x.unsqueeze(0), (h0, c0))
                    nxt = torch.cat([h, c], dim=2)
                else:
                    y, h = self.rnns[k](x.unsqueeze(0), h0)
                    nxt = h
                rows = index % self.count == k
                next_state[rows, :r0] = nxt.transpose(0, 1).reshape(batch, r0)[rows]
                x = y[0]
            if self.context_encoder:
                features = [ce["after"](self.activation(x))]
                if "projection" in ce:
                    features.append(ce["projection"](context[:, :self.groups[0]]))
                x = torch.cat(features, dim=1)
            linears = self.heads[k]
            for i, linear in enumerate(linears):
                x = linear(x)
                x = self.activation(x) if i < len(linears) - 1 else self.output_activation(x)
            outputs.append(x)
        # Each row takes its own agent's network's outputs.
        x = torch.stack(outputs)[index % self.count, torch.arange(batch)]
        distribution = m["distribution"]
        if self.discrete:
            if action_mask is not None:
                x = torch.where(torch.as_tensor(action_mask) == 0, torch.full_like(x, -1e9), x)
            index = x.argmax(dim=1)
            if self.previous_width:
                next_state[:, r0:r0 + self.previous_width] = torch.nn.functional.one_hot(index, self.discrete).float()
            return index, next_state
        a = x[:, :self.action_width]
        if distribution == "tanhGaussian":
            a = torch.tanh(a)
        elif distribution == "deterministic":
            a = a.clamp(-1, 1)
        if self.previous_width:
            next_state[:, r0:r0 + self.previous_width] = a
        mapped = self.low + (a.clamp(-1, 1) + 1) * 0.5 * (self.high - self.low)
        return torch.minimum(torch.maximum(mapped, self.low), self.high), next_state
