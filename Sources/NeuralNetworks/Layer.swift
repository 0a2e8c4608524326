import Tensors

/// A differentiable map from `[..., inputSize]` to `[..., outputSize]`, applied row by row
/// (a `[time, batch, feature]` sequence is just `time * batch` rows).
///
/// A layer owns its output and input-gradient tensors and reuses them: the tensor returned by
/// `forward` stays valid until the next `forward`, and `backward` must follow the `forward`
/// whose activations it uses, with the input of that call left unchanged in between.
public protocol Layer: ParameterContainer {
    var inputSize: Int { get }
    var outputSize: Int { get }
    /// Runs the layer; keeps what `backward` needs.
    func forward(_ input: Tensor) -> Tensor
    /// Accumulates parameter gradients (unless `needsParameterGradients` is false: a network used
    /// only to pass a gradient through, like a critic in an actor update) and returns
    /// d(loss)/d(input) (left unfilled when `needsInputGradient` is false: the first layer).
    func backward(_ outputGradient: Tensor, needsInputGradient: Bool, needsParameterGradients: Bool) -> Tensor
}

extension Layer {
    @discardableResult
    public func backward(_ outputGradient: Tensor) -> Tensor {
        backward(outputGradient, needsInputGradient: true, needsParameterGradients: true)
    }

    /// (Two arguments, not a default for the requirement's third: a default there would let a layer
    /// without its own `backward` compile, and call itself forever.)
    @discardableResult
    public func backward(_ outputGradient: Tensor, needsInputGradient: Bool) -> Tensor {
        backward(outputGradient, needsInputGradient: needsInputGradient, needsParameterGradients: true)
    }
}

/// A fully connected layer: y = f(x W^T + b), with PyTorch's layout (`weight` is `[output, input]`).
public final class Dense: Layer {
    public let inputSize: Int
    public let outputSize: Int
    public let activation: Activation
    /// `[outputSize, inputSize]`.
    public let weight: Parameter
    /// `[outputSize]`.
    public let bias: Parameter

    public let output = Tensor([0])
    public let inputGradient = Tensor([0])
    private let preActivationGradient = Tensor([0])
    /// The last forward pass's input, for backward (no dynamic exclusivity check: used on every pass).
    @exclusivity(unchecked) private var input: Tensor?

    /// Weights and biases uniform in ±1/sqrt(inputSize), as PyTorch's `nn.Linear`.
    public init(inputSize: Int, outputSize: Int, activation: Activation = .identity, using rng: inout RandomGenerator) {
        precondition(inputSize > 0 && outputSize > 0, "Dense sizes must be positive")
        self.inputSize = inputSize
        self.outputSize = outputSize
        self.activation = activation
        let bound = 1 / Float(inputSize).squareRoot()
        weight = Parameter([outputSize, inputSize], uniformBound: bound, using: &rng)
        bias = Parameter([outputSize], uniformBound: bound, using: &rng)
    }

    public func namedParameters(prefix: String) -> [NamedParameter] {
        [(prefix + "weight", weight), (prefix + "bias", bias)]
    }

    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.shape.last == inputSize, "Dense expects last dimension \(inputSize), got input \(input.shape)")
        self.input = input
        output.resize(input.shape.replacingLast(with: outputSize))
        affine(input.matrix, weight: weight.value.matrix, bias: bias.value.data, relu: activation == .relu, into: output.matrix)
        if activation != .relu { activation.apply(output.data, output.data, count: output.count) }
        return output
    }

    public func backward(_ outputGradient: Tensor, needsInputGradient: Bool, needsParameterGradients: Bool = true) -> Tensor {
        backward(outputGradient, needsInputGradient: needsInputGradient, needsParameterGradients: needsParameterGradients,
                 gradientIsPreActivation: false, inputFromReLU: false)
    }

    /// `backward`, for a chain of layers (`Sequential`): `gradientIsPreActivation` says the gradient
    /// already went through this layer's activation (the layer above applied it), and `inputFromReLU`
    /// that this layer's input is the output of a ReLU, whose backward pass then enters the product
    /// of the input gradient (one pass less over it; the same bits).
    public func backward(_ outputGradient: Tensor, needsInputGradient: Bool, needsParameterGradients: Bool,
                         gradientIsPreActivation: Bool, inputFromReLU: Bool) -> Tensor {
        guard let input else { preconditionFailure("Dense.backward called before forward") }
        precondition(outputGradient.shape == output.shape, "Dense.backward expects gradient of shape \(output.shape), got \(outputGradient.shape)")
        var dz = outputGradient
        if activation != .identity && !gradientIsPreActivation {
            preActivationGradient.resize(output.shape)
            activation.backward(output: output.data, outputGradient: outputGradient.data,
                                inputGradient: preActivationGradient.data, count: output.count)
            dz = preActivationGradient
        }
        if needsParameterGradients {
            gemm(dz.matrix.transposed, input.matrix, into: weight.gradient.matrix, beta: 1)
            accumulateColumnSums(dz.data, rows: dz.shape.leadingCount, width: outputSize, into: bias.gradient.data)
        }
        inputGradient.resize(input.shape)
        if needsInputGradient {
            if inputFromReLU {
                gemmMaskedByReLU(dz.matrix, weight.value.matrix, mask: input.data, into: inputGradient.matrix)
            } else {
                gemm(dz.matrix, weight.value.matrix, into: inputGradient.matrix)
            }
        }
        return inputGradient
    }
}

/// Layer normalisation over the last dimension, with a learned scale (`weight`) and shift (`bias`).
public final class LayerNorm: Layer {
    public let inputSize: Int
    public var outputSize: Int { inputSize }
    public let epsilon: Float
    public let weight: Parameter
    public let bias: Parameter

    public let output = Tensor([0])
    public let inputGradient = Tensor([0])
    private let normalized = Tensor([0])
    private let inverseStandardDeviation = Tensor([0])

    public init(features: Int, epsilon: Float = 1e-5) {
        precondition(features > 0, "LayerNorm needs at least one feature")
        inputSize = features
        self.epsilon = epsilon
        weight = Parameter([features])
        weight.value.fill(1)
        bias = Parameter([features])
    }

    public func namedParameters(prefix: String) -> [NamedParameter] {
        [(prefix + "weight", weight), (prefix + "bias", bias)]
    }

    public func forward(_ input: Tensor) -> Tensor {
        precondition(input.shape.last == inputSize, "LayerNorm expects last dimension \(inputSize), got \(input.shape)")
        output.resize(input.shape)
        normalized.resize(input.shape)
        let rows = input.shape.leadingCount, n = inputSize
        inverseStandardDeviation.resize(Shape(d0: rows))
        let g = weight.value.data, b = bias.value.data
        for r in 0..<rows {
            let x = input.data + r * n, xh = normalized.data + r * n, y = output.data + r * n
            var mean: Float = 0
            for j in 0..<n { mean += x[j] }
            mean /= Float(n)
            var variance: Float = 0
            for j in 0..<n { let d = x[j] - mean; variance += d * d }
            variance /= Float(n)
            let rstd = 1 / (variance + epsilon).squareRoot()
            inverseStandardDeviation.data[r] = rstd
            for j in 0..<n {
                xh[j] = (x[j] - mean) * rstd
                y[j] = xh[j] * g[j] + b[j]
            }
        }
        return output
    }

    public func backward(_ outputGradient: Tensor, needsInputGradient: Bool, needsParameterGradients: Bool = true) -> Tensor {
        precondition(outputGradient.shape == output.shape, "LayerNorm.backward expects gradient of shape \(output.shape)")
        inputGradient.resize(output.shape)
        let rows = output.shape.leadingCount, n = inputSize
        let g = weight.value.data, dg = weight.gradient.data, db = bias.gradient.data
        for r in 0..<rows {
            let dy = outputGradient.data + r * n, xh = normalized.data + r * n, dx = inputGradient.data + r * n
            var meanD: Float = 0, meanDX: Float = 0
            for j in 0..<n {
                if needsParameterGradients {
                    dg[j] += dy[j] * xh[j]
                    db[j] += dy[j]
                }
                let d = dy[j] * g[j]
                meanD += d
                meanDX += d * xh[j]
            }
            guard needsInputGradient else { continue }
            meanD /= Float(n)
            meanDX /= Float(n)
            let rstd = inverseStandardDeviation.data[r]
            for j in 0..<n { dx[j] = rstd * (dy[j] * g[j] - meanD - xh[j] * meanDX) }
        }
        return inputGradient
    }
}

/// A pointwise activation as a layer of its own.
public final class ActivationLayer: Layer {
    public let inputSize: Int
    public var outputSize: Int { inputSize }
    public let activation: Activation
    public let output = Tensor([0])
    public let inputGradient = Tensor([0])

    public init(_ activation: Activation, size: Int) {
        self.activation = activation
        inputSize = size
    }

    public func namedParameters(prefix: String) -> [NamedParameter] { [] }

    public func forward(_ input: Tensor) -> Tensor {
        output.resize(input.shape)
        activation.apply(input.data, output.data, count: input.count)
        return output
    }

    public func backward(_ outputGradient: Tensor, needsInputGradient: Bool, needsParameterGradients: Bool = true) -> Tensor {
        inputGradient.resize(output.shape)
        if needsInputGradient {
            activation.backward(output: output.data, outputGradient: outputGradient.data, inputGradient: inputGradient.data, count: output.count)
        }
        return inputGradient
    }
}

/// Layers applied one after the other. Parameter names follow PyTorch's `nn.Sequential`:
/// `0.weight`, `0.bias`, `1.weight`, ...
public final class Sequential: Layer {
    public let layers: [any Layer]
    /// The Dense layers (nil for others), for `backward`: a Dense layer fed by a Dense layer with ReLU
    /// applies that ReLU's backward to the input gradient it computes, and the layer below skips it.
    private let dense: [Dense?]

    public init(_ layers: [any Layer]) {
        precondition(!layers.isEmpty, "Sequential needs at least one layer")
        for (a, b) in zip(layers, layers.dropFirst()) {
            precondition(a.outputSize == b.inputSize, "Sequential: a layer of output \(a.outputSize) feeds one of input \(b.inputSize)")
        }
        self.layers = layers
        dense = layers.map { $0 as? Dense }
    }

    /// A multilayer perceptron: Dense layers with `activation` between them (optionally each
    /// followed by LayerNorm before the activation), and `outputActivation` at the end.
    public static func mlp(inputSize: Int, hiddenSizes: [Int], outputSize: Int, activation: Activation = .relu,
                           outputActivation: Activation = .identity, layerNorm: Bool = false,
                           using rng: inout RandomGenerator) -> Sequential {
        var layers: [any Layer] = []
        var width = inputSize
        for h in hiddenSizes {
            if layerNorm {
                layers.append(Dense(inputSize: width, outputSize: h, using: &rng))
                layers.append(LayerNorm(features: h))
                layers.append(ActivationLayer(activation, size: h))
            } else {
                layers.append(Dense(inputSize: width, outputSize: h, activation: activation, using: &rng))
            }
            width = h
        }
        layers.append(Dense(inputSize: width, outputSize: outputSize, activation: outputActivation, using: &rng))
        return Sequential(layers)
    }

    public var inputSize: Int { layers[0].inputSize }
    public var outputSize: Int { layers[layers.count - 1].outputSize }

    public func namedParameters(prefix: String) -> [NamedParameter] {
        layers.enumerated().flatMap { $0.element.namedParameters(prefix: prefix + "\($0.offset).") }
    }

    public func forward(_ input: Tensor) -> Tensor {
        var x = input
        for layer in layers { x = layer.forward(x) }
        return x
    }

    public func backward(_ outputGradient: Tensor, needsInputGradient: Bool, needsParameterGradients: Bool = true) -> Tensor {
        var g = outputGradient
        var i = layers.count - 1
        var preActivation = false  // g already went through layer i's activation
        while i >= 0 {
            let needsInput = i > 0 || needsInputGradient
            if let layer = dense[i] {
                let inputFromReLU = i > 0 && dense[i - 1]?.activation == .relu
                g = layer.backward(g, needsInputGradient: needsInput, needsParameterGradients: needsParameterGradients,
                                   gradientIsPreActivation: preActivation, inputFromReLU: inputFromReLU)
                preActivation = inputFromReLU
            } else {
                g = layers[i].backward(g, needsInputGradient: needsInput, needsParameterGradients: needsParameterGradients)
                preActivation = false
            }
            i -= 1
        }
        return g
    }
}
