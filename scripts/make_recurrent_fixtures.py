"""Reference outputs and gradients of torch.nn.GRU / torch.nn.LSTM for RecurrentRL's tests.

Run from the repository root (needs torch and safetensors: pip install 'torch==2.13.0+cpu' safetensors):
    python3 scripts/make_recurrent_fixtures.py
It writes Tests/NeuralNetworksTests/Fixtures/recurrent_reference.safetensors.

Weights and inputs are drawn in float32, then everything is computed in float64, so the
reference is exact to float32 rounding. The loss is
    L = sum(output * output_weights) + sum(h_n * h_weights) [+ sum(c_n * c_weights)]
so that dL/doutput and dL/dh_n are the random weights, and every gradient is exercised.
"""
import os

import torch
from safetensors.torch import save_file

torch.manual_seed(20261121)
out = {}


def case(tag, kind, input_size, hidden_size, num_layers, time, batch):
    cls = torch.nn.GRU if kind == "gru" else torch.nn.LSTM
    net32 = cls(input_size, hidden_size, num_layers=num_layers)  # time-major, PyTorch's own init
    net = cls(input_size, hidden_size, num_layers=num_layers).double()
    net.load_state_dict({k: v.double() for k, v in net32.state_dict().items()})
    x = torch.randn(time, batch, input_size).double().requires_grad_()
    h0 = (0.5 * torch.randn(num_layers, batch, hidden_size)).double().requires_grad_()
    ow = torch.randn(time, batch, hidden_size).double()
    hw = torch.randn(num_layers, batch, hidden_size).double()
    if kind == "gru":
        y, hn = net(x, h0)
        loss = (y * ow).sum() + (hn * hw).sum()
        loss.backward()
    else:
        c0 = (0.5 * torch.randn(num_layers, batch, hidden_size)).double().requires_grad_()
        cw = torch.randn(num_layers, batch, hidden_size).double()
        y, (hn, cn) = net(x, (h0, c0))
        loss = (y * ow).sum() + (hn * hw).sum() + (cn * cw).sum()
        loss.backward()
        out[f"{tag}.c0"] = c0.detach()
        out[f"{tag}.c_n"] = cn.detach()
        out[f"{tag}.c_weights"] = cw
        out[f"{tag}.grad.c0"] = c0.grad
    for name, p in net.named_parameters():
        out[f"{tag}.{name}"] = p.detach()
        out[f"{tag}.grad.{name}"] = p.grad
    out[f"{tag}.input"] = x.detach()
    out[f"{tag}.h0"] = h0.detach()
    out[f"{tag}.output"] = y.detach()
    out[f"{tag}.h_n"] = hn.detach()
    out[f"{tag}.output_weights"] = ow
    out[f"{tag}.h_weights"] = hw
    out[f"{tag}.grad.input"] = x.grad
    out[f"{tag}.grad.h0"] = h0.grad
    out[f"{tag}.loss"] = loss.detach().reshape(1)


case("gru1", "gru", 5, 7, 1, 6, 3)
case("gru2", "gru", 4, 9, 2, 11, 2)
case("gru_b1t1", "gru", 3, 4, 1, 1, 1)
case("lstm1", "lstm", 5, 7, 1, 6, 3)
case("lstm2", "lstm", 4, 9, 2, 11, 2)
case("lstm_b1t1", "lstm", 3, 4, 1, 1, 1)

path = os.path.join("Tests", "NeuralNetworksTests", "Fixtures", "recurrent_reference.safetensors")
save_file({k: v.float().contiguous() for k, v in out.items()}, path, metadata={"generator": "scripts/make_recurrent_fixtures.py", "torch": torch.__version__})
print(f"wrote {len(out)} tensors to {path}")
