@_exported import Tensors
@_exported import NeuralNetworks
@_exported import Environments
@_exported import Replay
@_exported import Agents
@_exported import Training
@_exported import Reports
@_exported import Inference
