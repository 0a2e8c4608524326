import Tensors

/// The sizes of RESeL's context encoder (Luo et al. 2024, as its released code builds it).
public struct ContextEncoderLayout: Codable, Equatable, Sendable {
    /// Width of the linear embedding of each context input (the observation, the agent's id, the
    /// previous action, the previous reward), side by side.
    public var inputEmbedding = 128
    /// Dense layers, with the network's activation, between the embeddings and the recurrence.
    public var before: [Int] = [256]
    /// A linear layer after the recurrence, whose output goes through the activation first.
    public var after = 128
    /// Width of a linear projection of the step's observation next to the encoder's output (the
    /// head sees both), and of a critic's action before its heads (RESeL's state and action
    /// encoders); 0: none.
    public var projection = 128

    public init(inputEmbedding: Int = 128, before: [Int] = [256], after: Int = 128, projection: Int = 128) {
        self.inputEmbedding = inputEmbedding
        self.before = before
        self.after = after
        self.projection = projection
    }

    enum CodingKeys: String, CodingKey { case inputEmbedding, before, after, projection }

    /// Sizes left out of a configuration take RESeL's.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ContextEncoderLayout()
        inputEmbedding = try c.decodeIfPresent(Int.self, forKey: .inputEmbedding) ?? d.inputEmbedding
        before = try c.decodeIfPresent([Int].self, forKey: .before) ?? d.before
        after = try c.decodeIfPresent(Int.self, forKey: .after) ?? d.after
        projection = try c.decodeIfPresent(Int.self, forKey: .projection) ?? d.projection
    }

    /// Checks the sizes; the message says what is wrong.
    public func validate() throws {
        func fail(_ m: String) throws { throw ContextEncoderError(m) }
        if inputEmbedding < 1 { try fail("the context encoder's input embedding must be at least 1 wide (got \(inputEmbedding))") }
        if after < 1 { try fail("the context encoder's output layer must be at least 1 wide (got \(after))") }
        if projection < 0 { try fail("the context encoder's observation projection must be 0 (none) or wider (got \(projection))") }
        if before.contains(where: { $0 < 1 }) { try fail("the context encoder's dense layers must be at least 1 wide (got \(before))") }
        for w in [inputEmbedding, after, projection] + before where w > 16_384 {
            try fail("the context encoder's widths must be at most 16384 (got \(w))")
        }
        if before.count > 64 { try fail("the context encoder has at most 64 dense layers before its recurrence (got \(before.count))") }
    }
}

/// A context encoder's sizes that cannot be used.
public struct ContextEncoderError: Error, CustomStringConvertible {
    public let description: String
    init(_ message: String) { description = message }
}

/// RESeL's context encoder as one recurrent layer: each group of input columns (one context input)
/// embedded linearly, the embeddings side by side; dense layers with `activation`; a GRU/LSTM
/// stack whose output goes through `activation`; a linear layer; and, next to its output, a linear
/// projection of the first group (the step's observation). Input `[time, batch, Σ groups]`, output
/// `[time, batch, after + projection]`, state the stack's.
///
/// `recurrentParameters` (the dense layers, the stack and the layer after it) are RESeL's "context
/// encoder", which learns at its own (slow) rate; the embeddings and the projection learn with the
/// head.
public final class ContextEncoder: RecurrentLayer {
    public let groups: [Int]
    public let layout: ContextEncoderLayout
    public let activation: Activation
    public let embeddings: [Dense]
    public let before: [Dense]
    public let recurrent: RecurrentStack
    public let afterLayer: Dense
    public let projection: Dense?

    public var inputSize: Int { groups.reduce(0, +) }
    /// Floats of output per step: the layer after the recurrence, then the projection.
    public var hiddenSize: Int { layout.after + (projection == nil ? 0 : layout.projection) }
    public var stateWidth: Int { recurrent.stateWidth }
    public var finalState: Tensor { recurrent.finalState }
    public var initialStateGradient: Tensor { recurrent.initialStateGradient }
    public let output = Tensor([0, 0, 0])
    public let inputGradient = Tensor([0, 0, 0])

    // Workspaces: each group's columns, the embeddings side by side, the activated recurrent output,
    // and the gradients split back.
    private let groupInputs: [Tensor]
    private let embedded = Tensor([0, 0, 0]), activated = Tensor([0, 0, 0])
    private let recurrentGradient = Tensor([0, 0, 0])
    private let afterGradient = Tensor([0, 0]), projectionGradient = Tensor([0, 0]), groupGradient = Tensor([0, 0])
    private var inputShape = Shape(d0: 0, d1: 0, d2: 0)

    public init(groups: [Int], layout: ContextEncoderLayout, cell: CellKind, hiddenSize: Int, layers: Int, activation: Activation,
                using rng: inout RandomGenerator) {
        precondition(!groups.isEmpty && groups.allSatisfy { $0 > 0 }, "a context encoder needs input groups of positive width")
        self.groups = groups
        self.layout = layout
        self.activation = activation
        let E = layout.inputEmbedding
        embeddings = groups.map { Dense(inputSize: $0, outputSize: E, using: &rng) }
        var width = E * groups.count
        var dense: [Dense] = []
        for w in layout.before {
            dense.append(Dense(inputSize: width, outputSize: w, activation: activation, using: &rng))
            width = w
        }
        before = dense
        recurrent = RecurrentStack(cell: cell, inputSize: width, hiddenSize: hiddenSize, layers: layers, using: &rng)
        afterLayer = Dense(inputSize: hiddenSize, outputSize: layout.after, using: &rng)
        projection = layout.projection > 0 ? Dense(inputSize: groups[0], outputSize: layout.projection, using: &rng) : nil
        groupInputs = groups.map { _ in Tensor([0, 0]) }
    }

    public func namedParameters(prefix: String) -> [NamedParameter] {
        var all: [NamedParameter] = []
        for (k, e) in embeddings.enumerated() { all += e.namedParameters(prefix: prefix + "embedding\(k).") }
        for (k, d) in before.enumerated() { all += d.namedParameters(prefix: prefix + "before\(k).") }
        all += recurrent.namedParameters(prefix: prefix + "rnn.")
        all += afterLayer.namedParameters(prefix: prefix + "after.")
        all += projection?.namedParameters(prefix: prefix + "projection.") ?? []
        return all
    }

    /// The dense layers, the recurrent stack and the layer after it (RESeL's context encoder).
    public var recurrentParameters: [Parameter] {
        before.flatMap(\.parameters) + recurrent.parameters + afterLayer.parameters
    }

    /// The input embeddings and the observation projection (they learn with the head).
    public var inputParameters: [Parameter] {
        embeddings.flatMap(\.parameters) + (projection?.parameters ?? [])
    }

    public func copyStepStates(entering: Bool, into destination: UnsafeMutablePointer<Float>, rowStride: Int, column: Int) {
        recurrent.copyStepStates(entering: entering, into: destination, rowStride: rowStride, column: column)
    }

    @discardableResult
    public func forward(_ input: Tensor, initialState: Matrix?, resetMask: Tensor?, resets: ResetTarget, keepActivations: Bool) -> Tensor {
        precondition(input.shape.rank == 3 && input.shape[2] == inputSize, "ContextEncoder expects [time, batch, \(inputSize)], got \(input.shape)")
        inputShape = input.shape
        let T = input.shape[0], B = input.shape[1], rows = T * B, I = inputSize, E = layout.inputEmbedding, G = groups.count
        embedded.resize(Shape(d0: T, d1: B, d2: E * G))
        var column = 0
        for (g, w) in groups.enumerated() {
            let x = groupInputs[g]
            x.resize(Shape(d0: rows, d1: w))
            for r in 0..<rows { copyFloats(x.data + r * w, from: input.data + r * I + column, count: w) }
            let e = embeddings[g].forward(x)
            for r in 0..<rows { copyFloats(embedded.data + r * E * G + g * E, from: e.data + r * E, count: E) }
            column += w
        }
        var x = embedded
        for layer in before { x = layer.forward(x) }
        let h = recurrent.forward(x, initialState: initialState, resetMask: resetMask, resets: resets, keepActivations: keepActivations)
        activated.resize(h.shape)
        activation.apply(h.data, activated.data, count: h.count)
        let a = afterLayer.forward(activated)
        let A = layout.after, W = hiddenSize
        output.resize(Shape(d0: T, d1: B, d2: W))
        for r in 0..<rows { copyFloats(output.data + r * W, from: a.data + r * A, count: A) }
        if let projection {
            let p = projection.forward(groupInputs[0]), P = layout.projection
            for r in 0..<rows { copyFloats(output.data + r * W + A, from: p.data + r * P, count: P) }
        }
        return output
    }

    public func backward(outputGradient: Tensor?, finalStateGradient: Matrix?, truncation: Int, needsInputGradient: Bool) {
        let T = inputShape[0], B = inputShape[1], rows = T * B, A = layout.after, W = hiddenSize, E = layout.inputEmbedding, G = groups.count
        // The layer after the recurrence and the activation (a missing output gradient is zero).
        afterGradient.resize(Shape(d0: T, d1: B, d2: A))
        afterGradient.zero()
        if let outputGradient { for r in 0..<rows { copyFloats(afterGradient.data + r * A, from: outputGradient.data + r * W, count: A) } }
        let dActivated = afterLayer.backward(afterGradient, needsInputGradient: true)
        recurrentGradient.resize(dActivated.shape)
        activation.backward(output: activated.data, outputGradient: dActivated.data, inputGradient: recurrentGradient.data, count: dActivated.count)
        recurrent.backward(outputGradient: recurrentGradient, finalStateGradient: finalStateGradient, truncation: truncation, needsInputGradient: true)
        var embeddedGradient = recurrent.inputGradient
        for layer in before.reversed() { embeddedGradient = layer.backward(embeddedGradient, needsInputGradient: true) }
        // Each embedding, and the projection of the observation (the first group).
        inputGradient.resize(inputShape)
        let I = inputSize
        var column = 0
        for (k, w) in groups.enumerated() {
            groupGradient.resize(Shape(d0: rows, d1: E))
            for r in 0..<rows { copyFloats(groupGradient.data + r * E, from: embeddedGradient.data + r * E * G + k * E, count: E) }
            let dx = embeddings[k].backward(groupGradient, needsInputGradient: needsInputGradient)
            if needsInputGradient { for r in 0..<rows { copyFloats(inputGradient.data + r * I + column, from: dx.data + r * w, count: w) } }
            column += w
        }
        if let projection {
            let P = layout.projection
            projectionGradient.resize(Shape(d0: rows, d1: P))
            projectionGradient.zero()
            if let outputGradient { for r in 0..<rows { copyFloats(projectionGradient.data + r * P, from: outputGradient.data + r * W + A, count: P) } }
            let dx = projection.backward(projectionGradient, needsInputGradient: needsInputGradient)
            if needsInputGradient { for r in 0..<rows { for j in 0..<groups[0] { inputGradient.data[r * I + j] += dx.data[r * groups[0] + j] } } }
        }
    }
}
