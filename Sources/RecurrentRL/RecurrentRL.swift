@_exported import Tensors
@_exported import NeuralNetworks
@_exported import Environments
