@_exported import Tensors
@_exported import NeuralNetworks
