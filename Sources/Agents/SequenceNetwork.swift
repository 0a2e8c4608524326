import Replay
import Inference
import NeuralNetworks
import Tensors

/// What a recurrent encoder sees at each step (RESeL's context): the observation, and optionally
/// the previous action and reward of the episode (zeros at its first step), and, for a network
/// shared by several agents, the agent's id one-hot.
public struct ContextInputs: Codable, Equatable, Sendable {
    public var observation = true
    /// The episode's previous observation (zeros at its first step): RESeL's "last state" input.
    public var lastObservation = false
    public var lastAction = false
    public var lastReward = false
    /// The agent's index one-hot over the agents (for one network shared by all agents).
    public var agentID = false

    public init(observation: Bool = true, lastObservation: Bool = false, lastAction: Bool = false, lastReward: Bool = false, agentID: Bool = false) {
        self.observation = observation
        self.lastObservation = lastObservation
        self.lastAction = lastAction
        self.lastReward = lastReward
        self.agentID = agentID
    }

    enum CodingKeys: String, CodingKey { case observation, lastObservation, lastAction, lastReward, agentID }

    /// Configurations written before the agent id or the previous observation existed read without them.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        observation = try c.decode(Bool.self, forKey: .observation)
        lastObservation = try c.decodeIfPresent(Bool.self, forKey: .lastObservation) ?? false
        lastAction = try c.decode(Bool.self, forKey: .lastAction)
        lastReward = try c.decode(Bool.self, forKey: .lastReward)
        agentID = try c.decodeIfPresent(Bool.self, forKey: .agentID) ?? false
    }

    /// Parses `observation,lastObservation,lastAction,lastReward` (any subset, comma separated).
    public init(parsing text: String) throws {
        observation = false
        let valid = ["observation", "lastObservation", "lastAction", "lastReward", "agentID"]
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            switch part {
            case "observation": observation = true
            case "lastObservation": lastObservation = true
            case "lastAction": lastAction = true
            case "lastReward": lastReward = true
            case "agentID": agentID = true
            default:
                throw ConfigurationError("unknown context input '\(part)'; valid inputs are \(valid.joined(separator: ", ")) (comma separated)")
            }
        }
        if !observation && !lastObservation && !lastAction && !lastReward { throw ConfigurationError("context inputs are empty; give at least 'observation'") }
    }

    public var description: String {
        [observation ? "observation" : nil, lastObservation ? "lastObservation" : nil, lastAction ? "lastAction" : nil,
         lastReward ? "lastReward" : nil, agentID ? "agentID" : nil]
            .compactMap { $0 }.joined(separator: ",")
    }

    /// Floats of one step's context: `o` observation floats, `a` previous-action floats (n for a
    /// one-hot discrete action), and one per agent for the id.
    public func width(observation o: Int, action a: Int, agents: Int = 1) -> Int {
        groups(observation: o, action: a, agents: agents).reduce(0, +)
    }

    /// The widths of the context's inputs in the order `write` writes them (`PolicyManifest.Context.groups`).
    public func groups(observation o: Int, action a: Int, agents: Int = 1) -> [Int] {
        PolicyManifest.Context(self).groups(observationWidth: o, agents: agents, previousActionWidth: a)
    }

    /// Writes one step's context (`width` floats).
    @inline(__always)
    public func write(observation obs: UnsafePointer<Float>, observationWidth o: Int, lastAction act: UnsafePointer<Float>,
                      actionWidth a: Int, lastReward r: Float, into out: UnsafeMutablePointer<Float>) {
        write(observation: obs, observationWidth: o, lastAction: act, actionWidth: a, oneHotOver: nil, lastReward: r, into: out)
    }

    /// Writes one step's context, in the order observation, previous observation, agent id, previous
    /// action, previous reward: the previous action as its floats, or (`oneHotOver: n`, a discrete
    /// action stored as its index) as a one-hot vector of n floats; nil (no previous action or
    /// observation, the episode's first step) writes zeros. With `agentID`, agent `agent` of
    /// `agents` one-hot. The one context writer of every agent.
    @inline(__always)
    public func write(observation obs: UnsafePointer<Float>, observationWidth o: Int, lastObservation previousObservation: UnsafePointer<Float>? = nil,
                      lastAction act: UnsafePointer<Float>?, actionWidth a: Int, oneHotOver n: Int?, lastReward r: Float, agent: Int = 0,
                      agents: Int = 1, into out: UnsafeMutablePointer<Float>) {
        let previous: PolicyManifest.Context.PreviousAction = act.map { n != nil ? .index(Int($0[0])) : .values($0) } ?? .none
        PolicyManifest.Context(self).write(observation: obs, observationWidth: o, previousObservation: previousObservation, agent: agent, agents: agents,
                                           previousAction: previous, previousActionWidth: n ?? a, reward: r, into: out)
    }
}

/// A network that maps a sequence of contexts to per-step outputs: an optional recurrent encoder
/// (GRU or LSTM stack) followed by an MLP head. The head sees the encoder's features and, for a
/// critic, the action (`extraWidth` floats), so the action never enters the recurrence and any
/// action can be evaluated at any step without changing the history.
///
/// Without an encoder (an MLP agent) the features are the context itself.
///
/// A critic may have several heads on one encoder (an ensemble of Q-functions sharing the
/// encoder, as RESeL's): every head sees the same input, each has its own weights.
public final class SequenceNetwork: ParameterContainer {
    public let contextWidth: Int
    public let extraWidth: Int
    /// The recurrent encoder: a GRU/LSTM stack, or RESeL's context encoder around one.
    public let encoder: (any RecurrentLayer)?
    /// The heads (one, or an ensemble on the same features).
    public let heads: [Sequential]
    /// The first (for most networks the only) head.
    public var head: Sequential { heads[0] }
    /// A linear map of the extra input (a critic's action) that the heads read instead of it (RESeL's
    /// action encoder; shared by the heads), or nil.
    public let extraProjection: Dense?
    /// The extra input and the gradient of its projection, reused.
    let extraInput = Tensor([0]), projectedGradient = Tensor([0])
    /// The features of the last window pass (`encode(window:...)`), valid until the next pass.
    public private(set) var lastWindowFeatures = Tensor([0])

    /// `[rows, features + extra]`, reused.
    let headInput = Tensor([0])
    /// d(loss)/d(features) of the last head backward, `[rows, features]`.
    public let featureGradient = Tensor([0])
    /// d(loss)/d(extra input) of the last head backward, `[rows, extraWidth]`.
    public let extraGradient = Tensor([0])
    /// Workspaces of a training pass (the encoder refers to them until its backward).
    let trainingInput = Tensor([0])
    let trainingResetMask = Tensor([0])
    let trainingStartState = Tensor([0])

    public init(contextWidth: Int, extraWidth: Int, cell: CellKind?, hiddenSize: Int, layers: Int,
                headHiddenSizes: [Int], outputSize: Int, activation: Activation, outputActivation: Activation = .identity,
                heads headCount: Int = 1, contextEncoder: (layout: ContextEncoderLayout, groups: [Int])? = nil, extraProjection: Int = 0,
                using rng: inout RandomGenerator) {
        self.contextWidth = contextWidth
        self.extraWidth = extraWidth
        self.extraProjection = extraProjection > 0 && extraWidth > 0 ? Dense(inputSize: extraWidth, outputSize: extraProjection, using: &rng) : nil
        if let cell, let contextEncoder {
            precondition(contextEncoder.groups.reduce(0, +) == contextWidth, "the context encoder's input groups must cover the context")
            encoder = ContextEncoder(groups: contextEncoder.groups, layout: contextEncoder.layout, cell: cell, hiddenSize: hiddenSize,
                                     layers: layers, activation: activation, using: &rng)
        } else if let cell {
            encoder = RecurrentStack(cell: cell, inputSize: contextWidth, hiddenSize: hiddenSize, layers: layers, using: &rng)
        } else {
            encoder = nil
        }
        let features = encoder?.hiddenSize ?? contextWidth
        let extraInputs = self.extraProjection?.outputSize ?? extraWidth
        heads = (0..<max(headCount, 1)).map { _ in
            Sequential.mlp(inputSize: features + extraInputs, hiddenSizes: headHiddenSizes, outputSize: outputSize,
                           activation: activation, outputActivation: outputActivation, using: &rng)
        }
    }

    public var featureWidth: Int { encoder?.hiddenSize ?? contextWidth }
    public var stateWidth: Int { encoder?.stateWidth ?? 0 }
    public var isRecurrent: Bool { encoder != nil }

    /// `encoder.*`, `extra_projection.*` and `head.*` (an ensemble: `head0.*`, `head1.*`, ...).
    public func namedParameters(prefix: String) -> [NamedParameter] {
        let named = heads.count == 1 ? head.namedParameters(prefix: prefix + "head.")
            : heads.enumerated().flatMap { $0.element.namedParameters(prefix: prefix + "head\($0.offset).") }
        return (encoder?.namedParameters(prefix: prefix + "encoder.") ?? []) + (extraProjection?.namedParameters(prefix: prefix + "extra_projection.") ?? [])
            + named
    }

    /// What learns at the encoder's rate: the recurrent stack (RESeL's context encoder: its dense
    /// layers, the stack and the layer after it).
    public var encoderParameters: [Parameter] {
        if let contextEncoder = encoder as? ContextEncoder { return contextEncoder.recurrentParameters }
        return encoder?.parameters ?? []
    }
    /// What learns at the network's rate: the heads (and RESeL's input embeddings and observation projection).
    public var headParameters: [Parameter] {
        ((encoder as? ContextEncoder)?.inputParameters ?? []) + (extraProjection?.parameters ?? []) + heads.flatMap(\.parameters)
    }

    /// Runs the encoder over `context` (`[time, batch, contextWidth]`); returns the features
    /// `[time, batch, featureWidth]` (the context itself without an encoder). Resets after the first
    /// step restart from zeros.
    @discardableResult
    public func encode(_ context: Tensor, initialState: Matrix?, resetMask: Tensor?, keepActivations: Bool) -> Tensor {
        guard let encoder else { return context }
        return encoder.forward(context, initialState: initialState, resetMask: resetMask, resets: .zero, keepActivations: keepActivations)
    }

    /// The sequence-window pass every learner trains through. Runs the encoder over time slots
    /// `slots` of `context` (`[time, batch, contextWidth]`, resets from `resetMask` `[time, batch]`),
    /// starting from `initialState` (zeros when nil): the first `burnIn` of those slots only warm the
    /// state up (no activations kept, so no gradient, R2D2's burn-in), then the rest run with
    /// activations when `keepActivations`. Returns the features of the trained slots
    /// `slots.lowerBound + burnIn ..< slots.upperBound`, `[trained, batch, featureWidth]`.
    ///
    /// A window whose first trained slot is an episode start restarts from zeros there; otherwise
    /// the trained part continues from the burned-in state.
    public func encode(window context: Tensor, resetMask: Tensor, slots: Range<Int>, burnIn: Int, initialState: Matrix?,
                       keepActivations: Bool) -> Tensor {
        let features = windowFeatures(context, resetMask: resetMask, slots: slots, burnIn: burnIn, initialState: initialState,
                                      keepActivations: keepActivations)
        lastWindowFeatures = features
        return features
    }

    func windowFeatures(_ context: Tensor, resetMask: Tensor, slots: Range<Int>, burnIn: Int, initialState: Matrix?,
                        keepActivations: Bool) -> Tensor {
        let B = context.shape[1], trained = (slots.lowerBound + burnIn)..<slots.upperBound
        // The whole tensor without burn-in: no copy needed.
        if slots == 0..<context.shape[0] && burnIn == 0 {
            return encode(context, initialState: initialState, resetMask: resetMask, keepActivations: keepActivations)
        }
        // The network's own workspaces: its encoder keeps references to them until its backward.
        let input = trainingInput, mask = trainingResetMask, startState = trainingStartState
        guard let encoder else {
            copySlots(context, trained, into: input)
            return input
        }
        var start = initialState
        if burnIn > 0 {
            let warm = slots.lowerBound..<trained.lowerBound
            copySlots(context, warm, into: input)
            copySlots(resetMask, warm, into: mask)
            encoder.forward(input, initialState: initialState, resetMask: mask, resets: .zero, keepActivations: false)
            startState.copy(from: encoder.finalState)
            let w = encoder.stateWidth
            for b in 0..<B where resetMask.data[trained.lowerBound * B + b] != 0 { (startState.data + b * w).update(repeating: 0, count: w) }
            start = startState.matrix
        }
        copySlots(context, trained, into: input)
        copySlots(resetMask, trained, into: mask)
        if burnIn > 0 { for b in 0..<B { mask.data[b] = 0 } }  // the first trained slot continues from the burned-in state
        return encoder.forward(input, initialState: start, resetMask: mask, resets: .zero, keepActivations: keepActivations)
    }

    /// Back-propagates `outputGradient` (`[trained · batch, outputs]`) through the head and, through
    /// time, the encoder of the last window pass that kept activations (`slots` trained slots of
    /// `batch` rows; the state's gradient cut every `truncation` steps when positive).
    /// `sharedFeatureGradient` adds the feature gradient of another head on the same features
    /// (PPO's critic head on a shared encoder).
    public func backward(window outputGradient: Tensor, slots: Int, batch: Int, truncation: Int, sharedFeatureGradient: Tensor? = nil) {
        headBackward(outputGradient, needsFeatureGradient: isRecurrent, needsExtraGradient: false)
        encoderBackward(slots: slots, batch: batch, truncation: truncation, sharedFeatureGradient: sharedFeatureGradient)
    }

    /// Back-propagates `featureGradient` (what the heads' backward left there) through time, the
    /// encoder of the last window pass that kept activations (as `backward(window:...)`).
    public func encoderBackward(slots: Int, batch: Int, truncation: Int, sharedFeatureGradient: Tensor? = nil) {
        guard let encoder else { return }
        featureGradient.resize(Shape(d0: slots, d1: batch, d2: featureWidth))
        if let shared = sharedFeatureGradient {
            let f = featureGradient.data, g = shared.data
            for i in 0..<featureGradient.count { f[i] += g[i] }
        }
        encoder.backward(outputGradient: featureGradient, finalStateGradient: nil, truncation: truncation, needsInputGradient: false)
    }

    /// Head `index` over `rows` rows of `features` starting at row `firstRow`, with `extra` (`rows x extraWidth`) appended.
    @discardableResult
    public func head(features: Tensor, firstRow: Int, rows: Int, extra: UnsafePointer<Float>?, index: Int = 0) -> Tensor {
        var extra = extra, e = extraWidth
        if let extraProjection {
            // The heads read the projection of the extra input.
            extraInput.resize(Shape(d0: rows, d1: extraWidth))
            if let extra { extraInput.data.update(from: extra, count: rows * extraWidth) } else { extraInput.zero() }
            extra = UnsafePointer(extraProjection.forward(extraInput).data)
            e = extraProjection.outputSize
        }
        let f = featureWidth, w = f + e
        headInput.resize(Shape(d0: rows, d1: w))
        let src = features.data + firstRow * f
        for r in 0..<rows {
            let dst = headInput.data + r * w
            copyFloats(dst, from: src + r * f, count: f)
            if e > 0, let extra { copyFloats(dst + f, from: extra + r * e, count: e) }
        }
        return heads[index].forward(headInput)
    }

    /// Back-propagates through head `index`; fills `featureGradient` (or, `accumulating`, adds to
    /// it: the heads of an ensemble share the features) and `extraGradient` when asked. Without
    /// `needsParameterGradients` the head only passes the gradient on (a critic in an actor update)
    /// and its weights' gradients are left untouched.
    public func headBackward(_ outputGradient: Tensor, needsFeatureGradient: Bool, needsExtraGradient: Bool,
                             needsParameterGradients: Bool = true, index: Int = 0, accumulating: Bool = false) {
        // The extra input's projection learns with the head: its gradient is needed whenever the head's is.
        let projects = extraProjection != nil && (needsExtraGradient || needsParameterGradients)
        let needsInput = needsFeatureGradient || (needsExtraGradient && extraWidth > 0) || projects
        let g = heads[index].backward(outputGradient, needsInputGradient: needsInput, needsParameterGradients: needsParameterGradients)
        let e = extraProjection?.outputSize ?? extraWidth
        let rows = g.shape.leadingCount, f = featureWidth, w = f + e
        if needsFeatureGradient && accumulating {
            precondition(featureGradient.count == rows * f, "accumulating a feature gradient of another shape")
            let fg = featureGradient.data
            for r in 0..<rows { for j in 0..<f { fg[r * f + j] += g.data[r * w + j] } }
        } else if needsFeatureGradient {
            featureGradient.resize(Shape(d0: rows, d1: f))
            for r in 0..<rows { copyFloats(featureGradient.data + r * f, from: g.data + r * w, count: f) }
        }
        if let extraProjection, projects {
            projectedGradient.resize(Shape(d0: rows, d1: e))
            for r in 0..<rows { copyFloats(projectedGradient.data + r * e, from: g.data + r * w + f, count: e) }
            let dx = extraProjection.backward(projectedGradient, needsInputGradient: needsExtraGradient, needsParameterGradients: needsParameterGradients)
            if needsExtraGradient { extraGradient.resize(Shape(d0: rows, d1: extraWidth)); extraGradient.copy(from: dx) }
        } else if needsExtraGradient && extraWidth > 0 {
            extraGradient.resize(Shape(d0: rows, d1: extraWidth))
            for r in 0..<rows { copyFloats(extraGradient.data + r * extraWidth, from: g.data + r * w + f, count: extraWidth) }
        }
    }
}

/// Copies slots `range` of a time-major tensor `[slots, batch, width]` into `out` (`[range.count, batch, width]`).
@inline(__always)
public func copySlots(_ source: Tensor, _ range: Range<Int>, into out: Tensor) {
    let b = source.shape[1], w = source.shape.rank == 3 ? source.shape[2] : 1
    if source.shape.rank == 3 {
        out.resize(Shape(d0: range.count, d1: b, d2: w))
    } else {
        out.resize(Shape(d0: range.count, d1: b))
    }
    out.data.update(from: source.data + range.lowerBound * b * w, count: range.count * b * w)
}
