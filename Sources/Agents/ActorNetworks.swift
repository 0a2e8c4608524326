import NeuralNetworks
import Tensors

/// The actor of an off-policy agent: one network shared by every agent (each agent's id in its
/// context), or one network per agent. Batches are agent-inner (row r belongs to agent r % agents)
/// either way; with one network per agent, agent k's rows (k, k + agents, k + 2 · agents, ...) are
/// gathered into a batch of their own, run through network k, and the results put back in place,
/// so that callers see the same `[time, batch · agents, ...]` tensors as with one shared network.
///
/// With one network every call goes straight to it (nothing is copied).
public final class ActorNetworks {
    public let networks: [SequenceNetwork]
    /// Rows per group of agents (the agents of one episode step).
    public let agents: Int
    public var isShared: Bool { networks.count == 1 }

    // Per network: its rows' inputs, reset masks, features and gradients (kept until its backward).
    private let inputs: [Tensor], masks: [Tensor], groupFeatures: [Tensor], gradients: [Tensor]
    // Put back together: features, final states and head outputs.
    private let features = Tensor([0]), finalStates = Tensor([0]), outputs = Tensor([0])

    /// One network (`perAgent` false) or one per agent, each made by `make` in turn.
    public init(agents: Int, perAgent: Bool, make: () -> SequenceNetwork) {
        self.agents = agents
        let count = perAgent ? agents : 1
        networks = (0..<count).map { _ in make() }
        inputs = (0..<count).map { _ in Tensor([0]) }
        masks = (0..<count).map { _ in Tensor([0]) }
        groupFeatures = (0..<count).map { _ in Tensor([0]) }
        gradients = (0..<count).map { _ in Tensor([0]) }
    }

    public var stateWidth: Int { networks[0].stateWidth }
    public var isRecurrent: Bool { networks[0].isRecurrent }
    public var featureWidth: Int { networks[0].featureWidth }
    public var parameters: [Parameter] { networks.flatMap(\.parameters) }
    public var encoderParameters: [Parameter] { networks.flatMap(\.encoderParameters) }
    public var headParameters: [Parameter] { networks.flatMap(\.headParameters) }

    /// `prefix` + the network's names (one network), or `prefix` + `agentK.` + them.
    public func namedParameters(prefix: String) -> [NamedParameter] {
        if isShared { return networks[0].namedParameters(prefix: prefix) }
        return networks.enumerated().flatMap { $0.element.namedParameters(prefix: prefix + "agent\($0.offset).") }
    }

    /// Copies agent k's rows of `source` (rows of `width` floats, agent-inner) into `out` (`shape`).
    private func gather(_ source: UnsafePointer<Float>, rows: Int, width: Int, agent k: Int, into out: Tensor, shape: Shape) {
        out.resize(shape)
        let N = agents, dst = out.data
        for j in 0..<(rows / N) { (dst + j * width).update(from: source + (j * N + k) * width, count: width) }
    }

    /// Puts agent k's rows (`rows / agents` of them in `source`) back in place in `out`.
    private func scatter(_ source: UnsafePointer<Float>, rows: Int, width: Int, agent k: Int, into out: UnsafeMutablePointer<Float>) {
        let N = agents
        for j in 0..<(rows / N) { (out + (j * N + k) * width).update(from: source + j * width, count: width) }
    }

    /// Agent k's rows of a states matrix, as a view.
    private func stateRows(_ state: Matrix?, agent k: Int) -> Matrix? {
        state.map { Matrix($0.base + k * $0.stride, rows: $0.rows / agents, columns: $0.columns, stride: $0.stride * agents) }
    }

    /// The encoders over `context` (`[slots, rows, contextWidth]`): the features `[slots · rows, featureWidth]`.
    public func encode(_ context: Tensor, initialState: Matrix?, resetMask: Tensor?, keepActivations: Bool) -> Tensor {
        if isShared || !isRecurrent { return networks[0].encode(context, initialState: initialState, resetMask: resetMask, keepActivations: keepActivations) }
        return perNetwork(context, resetMask: resetMask) { k, input, mask in
            networks[k].encode(input, initialState: stateRows(initialState, agent: k), resetMask: mask, keepActivations: keepActivations)
        }
    }

    /// The window pass (`SequenceNetwork.encode(window:...)`) of each network over its agents' rows.
    public func encode(window context: Tensor, resetMask: Tensor, slots: Range<Int>, burnIn: Int, initialState: Matrix?,
                       keepActivations: Bool) -> Tensor {
        if isShared || !isRecurrent {
            return networks[0].encode(window: context, resetMask: resetMask, slots: slots, burnIn: burnIn, initialState: initialState,
                                      keepActivations: keepActivations)
        }
        return perNetwork(context, resetMask: resetMask) { k, input, mask in
            networks[k].encode(window: input, resetMask: mask!, slots: slots, burnIn: burnIn, initialState: stateRows(initialState, agent: k),
                               keepActivations: keepActivations)
        }
    }

    /// Runs `body` for each network on its agents' rows of `context` and `resetMask`, and puts the
    /// features (and the encoders' final states) back together.
    private func perNetwork(_ context: Tensor, resetMask: Tensor?, _ body: (Int, Tensor, Tensor?) -> Tensor) -> Tensor {
        let S = context.shape[0], R = context.shape[1], C = context.shape[2], N = agents, F = featureWidth, W = stateWidth
        for k in 0..<N {
            gather(context.data, rows: S * R, width: C, agent: k, into: inputs[k], shape: Shape(d0: S, d1: R / N, d2: C))
            if let resetMask { gather(resetMask.data, rows: S * R, width: 1, agent: k, into: masks[k], shape: Shape(d0: S, d1: R / N)) }
            let f = body(k, inputs[k], resetMask == nil ? nil : masks[k])
            let slots = f.count / max(F * R / N, 1)
            if k == 0 {
                features.resize(Shape(d0: slots, d1: R, d2: F))
                finalStates.resize(Shape(d0: R, d1: max(W, 1)))
            }
            scatter(f.data, rows: slots * R, width: F, agent: k, into: features.data)
            if let encoder = networks[k].encoder { scatter(encoder.finalState.data, rows: R, width: W, agent: k, into: finalStates.data) }
        }
        return features
    }

    /// The encoders' states after the last step of the last `encode`, one row per input row.
    public var finalState: UnsafePointer<Float>? {
        guard let encoder = networks[0].encoder else { return nil }
        return UnsafePointer(isShared ? encoder.finalState.data : finalStates.data)
    }

    /// The heads over `rows` rows of `features` from row `firstRow` (a multiple of `agents`).
    public func head(features: Tensor, firstRow: Int, rows: Int) -> Tensor {
        if isShared { return networks[0].head(features: features, firstRow: firstRow, rows: rows, extra: nil) }
        precondition(firstRow % agents == 0 && rows % agents == 0, "per-agent heads take whole groups of agents")
        let N = agents, F = featureWidth
        for k in 0..<N {
            gather(features.data + firstRow * F, rows: rows, width: F, agent: k, into: groupFeatures[k], shape: Shape(d0: rows / N, d1: F))
            let out = networks[k].head(features: groupFeatures[k], firstRow: 0, rows: rows / N, extra: nil)
            if k == 0 { outputs.resize(Shape(d0: rows, d1: out.shape[1])) }
            scatter(out.data, rows: rows, width: out.shape[1], agent: k, into: outputs.data)
        }
        return outputs
    }

    /// Back-propagates `outputGradient` (`[slots · batch, outputs]`, agent-inner) through each
    /// network's head and encoder (`SequenceNetwork.backward(window:...)`).
    public func backward(window outputGradient: Tensor, slots: Int, batch: Int, truncation: Int) {
        if isShared { return networks[0].backward(window: outputGradient, slots: slots, batch: batch, truncation: truncation) }
        let N = agents, rows = outputGradient.shape[0], P = outputGradient.shape[1]
        for k in 0..<N {
            gather(outputGradient.data, rows: rows, width: P, agent: k, into: gradients[k], shape: Shape(d0: rows / N, d1: P))
            networks[k].backward(window: gradients[k], slots: slots, batch: batch / N, truncation: truncation)
        }
    }
}
