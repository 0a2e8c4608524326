import Tensors

/// A trainable tensor and its gradient, of the same shape.
///
/// Layers accumulate into `gradient` during backward passes (`+=`), so several backward passes
/// (an actor loss through two critics, say) add up until an optimiser step; call
/// `zeroGradient()` (or the optimiser's `zeroGradients()`) between steps.
public final class Parameter {
    /// Weights, e.g. `[3 * hidden, input]` for a GRU's `weight_ih`.
    public let value: Tensor
    /// d(loss)/d(value), same shape as `value`.
    public let gradient: Tensor

    public init(_ shape: Shape) {
        value = Tensor(shape)
        gradient = Tensor(shape)
    }

    /// A parameter with entries uniform in [-bound, bound) (PyTorch's default for Linear, GRU, LSTM).
    public convenience init(_ shape: Shape, uniformBound bound: Float, using rng: inout RandomGenerator) {
        self.init(shape)
        for i in 0..<value.count { value.data[i] = rng.uniform(-bound, bound) }
    }

    @inlinable public var shape: Shape { value.shape }

    public func zeroGradient() { gradient.zero() }
}

/// A parameter with its dotted name, e.g. `actor.encoder.gru.weight_ih`.
public typealias NamedParameter = (name: String, parameter: Parameter)

/// Anything with parameters: layers, containers, whole networks.
public protocol ParameterContainer: AnyObject {
    /// Parameters with names that start with `prefix` (e.g. `"critic."`), in a fixed order.
    func namedParameters(prefix: String) -> [NamedParameter]
}

extension ParameterContainer {
    /// All parameters in a fixed order.
    public var parameters: [Parameter] { namedParameters(prefix: "").map(\.parameter) }
    public func zeroGradients() { for p in parameters { p.zeroGradient() } }
    /// Total number of trainable scalars.
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.value.count } }
}
