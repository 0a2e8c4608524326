import NeuralNetworks
import Replay

/// The off-policy algorithms.
public enum OffPolicyAlgorithm: String, Codable, CaseIterable, Sendable {
    /// Every off-policy algorithm's name, in order (for messages that list them).
    public static var names: [String] { allCases.map(\.rawValue) }

    /// Soft actor-critic: a tanh-Gaussian policy for continuous actions, a categorical policy for
    /// discrete ones; learned temperature.
    case sac
    /// Twin delayed DDPG: deterministic policy, target smoothing, delayed actor updates.
    case td3
    /// Multi-agent SAC: one decentralised (recurrent) actor shared by the agents, centralised
    /// critics per agent, a temperature per agent; with one agent, exactly SAC.
    case masac
    /// Value decomposition networks (Sunehag et al. 2018): recurrent agent Q-networks whose chosen
    /// Q-values add up to the team's Q.
    case vdn
    /// QMIX (Rashid et al. 2018): the agents' chosen Q-values mixed monotonically by a network whose
    /// weights are made from the global state by hypernetworks.
    case qmix

    /// SAC or MASAC (a stochastic policy with a learned temperature).
    public var isSoft: Bool { self == .sac || self == .masac }
    /// VDN or QMIX: agent Q-networks and a mixer, no actor or critics.
    public var isValueDecomposition: Bool { self == .vdn || self == .qmix }
    /// Trains several agents per step (MASAC, VDN, QMIX).
    public var isMultiAgent: Bool { self == .masac || isValueDecomposition }
}

/// The options of VDN and QMIX: the mixer, ε-greedy exploration and the return each step regresses on.
public struct ValueDecompositionConfiguration: Codable, Equatable, Sendable {
    /// QMIX: width of the mixing layer.
    public var mixingEmbed = 32
    /// QMIX: hidden width of the hypernetworks that make the mixing weights.
    public var hypernetEmbed = 64
    /// ε-greedy: ε falls linearly from `epsilonStart` to `epsilonFinish` over `epsilonAnnealSteps`
    /// environment steps (counted from the run's start).
    public var epsilonStart: Float = 1
    public var epsilonFinish: Float = 0.05
    public var epsilonAnnealSteps = 50_000
    /// TD(λ) returns (nil: n-step returns).
    public var lambda: Float? = nil
    /// n of the n-step returns (1: one-step TD), when `lambda` is nil.
    public var nSteps = 1
    /// Double Q-learning: the online networks choose the next actions, the targets value them.
    public var doubleQ = true
    /// QMIX: the mixer sees each entry of the state divided by the largest magnitude it has had in the
    /// states trained on so far, so every entry lies in [-1, 1] (the range of SMAC's states, for which
    /// QMIX was designed). The hypernetworks make the mixing weights from the state, and a state of
    /// large entries (positions on a grid) gives weights that amplify the overestimation of the agents'
    /// maxima: measured on foraging 8x8 (one seed, 20k steps), the mean Q_tot rose to 15 with raw
    /// states and to 2.7 with standardised ones (unit variance), and was 0.39 scaled, while no episode
    /// returns more than 1.
    public var scaleMixerState = true

    public init() {}

    /// Options left out of a configuration file take their defaults.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ValueDecompositionConfiguration()
        mixingEmbed = try c.decodeIfPresent(Int.self, forKey: .mixingEmbed) ?? d.mixingEmbed
        hypernetEmbed = try c.decodeIfPresent(Int.self, forKey: .hypernetEmbed) ?? d.hypernetEmbed
        epsilonStart = try c.decodeIfPresent(Float.self, forKey: .epsilonStart) ?? d.epsilonStart
        epsilonFinish = try c.decodeIfPresent(Float.self, forKey: .epsilonFinish) ?? d.epsilonFinish
        epsilonAnnealSteps = try c.decodeIfPresent(Int.self, forKey: .epsilonAnnealSteps) ?? d.epsilonAnnealSteps
        lambda = try c.decodeIfPresent(Float.self, forKey: .lambda)
        nSteps = try c.decodeIfPresent(Int.self, forKey: .nSteps) ?? d.nSteps
        doubleQ = try c.decodeIfPresent(Bool.self, forKey: .doubleQ) ?? d.doubleQ
        scaleMixerState = try c.decodeIfPresent(Bool.self, forKey: .scaleMixerState) ?? d.scaleMixerState
    }

    /// ε after `step` environment steps.
    public func epsilon(atStep step: Int) -> Float {
        guard epsilonAnnealSteps > 0 else { return epsilonFinish }
        let f = min(Float(step) / Float(epsilonAnnealSteps), 1)
        return epsilonStart + f * (epsilonFinish - epsilonStart)
    }

    public func validate() throws {
        func fail(_ m: String) throws { throw ConfigurationError(m) }
        if mixingEmbed < 1 || hypernetEmbed < 1 { try fail("the mixing and hypernetwork widths must be at least 1 (got \(mixingEmbed), \(hypernetEmbed))") }
        try checkUpperBound("mixing width", mixingEmbed, SizeLimit.width)
        try checkUpperBound("hypernetwork width", hypernetEmbed, SizeLimit.width)
        try checkFinite([("epsilon start", epsilonStart), ("epsilon finish", epsilonFinish), ("lambda", lambda ?? 0)])
        for (name, v) in [("epsilon start", epsilonStart), ("epsilon finish", epsilonFinish)] where !(v >= 0 && v <= 1) {
            try fail("\(name) must be in [0, 1] (got \(v))")
        }
        if epsilonAnnealSteps < 0 { try fail("the epsilon anneal steps must be 0 or more (got \(epsilonAnnealSteps))") }
        if let l = lambda, !(l >= 0 && l <= 1) { try fail("lambda must be in [0, 1] (got \(l))") }
        if nSteps < 1 { try fail("n-step returns need n of at least 1 (got \(nSteps))") }
        if lambda != nil && nSteps != 1 { try fail("choose TD(lambda) or n-step returns, not both: drop --lambda or --n-step") }
    }
}

/// What a multi-agent critic sees besides the agent's id and the actions.
public enum CriticInput: String, Codable, CaseIterable, Sendable {
    /// The environment's global state (when it has one).
    case globalState
    /// Every agent's observation side by side.
    case jointObservation
    /// The agent's own observation, then the global state (the joint observation when there is
    /// none): an agent-specific global state, as MAPPO's best-performing critic input.
    case agentSpecific
    /// Only the agent's own context and action: independent learners (independent SAC with shared
    /// weights), the baseline that centralised critics are measured against.
    case independent
}

/// What an actor maximises over several Q-functions.
public enum ActorQ: String, Codable, CaseIterable, Sendable {
    /// The smallest (SAC's clipped double Q).
    case minimum
    /// Their mean (REDQ, RESeL).
    case mean
}

/// Where the other agents' actions come from when a multi-agent actor is updated.
public enum OtherAgentsActions: String, Codable, CaseIterable, Sendable {
    /// As recorded in the replay.
    case replay
    /// Drawn from the other agents' current policies.
    case currentPolicy
}

/// The network type of actor and critics.
public enum NetworkKind: String, Codable, CaseIterable, Sendable {
    case mlp, gru, lstm

    /// Floats of one row's recurrent state: h per layer (LSTM: h and c); none for an MLP.
    public func stateWidth(hiddenSize: Int, layers: Int) -> Int {
        switch self {
        case .mlp: return 0
        case .gru: return hiddenSize * layers
        case .lstm: return 2 * hiddenSize * layers
        }
    }

    public var cell: CellKind? {
        switch self {
        case .mlp: return nil
        case .gru: return .gru
        case .lstm: return .lstm
        }
    }
}

/// Every option of an off-policy agent. Defaults are the `memory` configuration of the issue
/// (recurrent SAC, GRU 16, windows of 50, batch 4).
public struct AgentConfiguration: Codable, Equatable, Sendable {
    public var algorithm: OffPolicyAlgorithm = .sac
    public var network: NetworkKind = .gru
    /// The critics' network when it differs from the actor's (nil: `network`): an MLP critic over a
    /// Markov input (a global state that holds everything) beside recurrent actors.
    public var criticNetwork: NetworkKind? = nil
    /// Recurrent layers per encoder.
    public var recurrentLayers = 1
    /// Width of the recurrent state (h) of each encoder layer.
    public var hiddenSize = 16
    /// Hidden layer widths of the MLP heads (after the encoder, or on the observation for MLP agents).
    public var headHiddenSizes: [Int] = [32]
    public var activation: Activation = .relu
    public var context = ContextInputs()
    public var sampler = SamplerConfiguration()
    /// Windows per batch (MLP agents: transitions per batch).
    public var batchSize = 4
    public var replayCapacity = 100_000
    public var gamma: Float = 0.99
    /// Polyak rate of the target networks.
    public var tau: Float = 0.005
    public var actorLearningRate: Float = 1e-4
    public var criticLearningRate: Float = 1e-3
    /// Learning rate of the recurrent encoders (RESeL: about 1/30 of the MLP rate); nil: as their network.
    public var encoderLearningRate: Float? = nil
    public var temperatureLearningRate: Float = 1e-3
    public var initialTemperature: Float = 1
    public var learnTemperature = true
    /// SAC's target entropy; nil: -(action dimensions) for continuous, 0.98·log(n) for n discrete actions.
    public var targetEntropy: Float? = nil
    public var criticCount = 2
    /// Environment steps per critic update.
    public var criticUpdateInterval = 1
    /// Critic updates per actor (and, for TD3, target) update.
    public var actorUpdateInterval = 1
    /// Critic updates per target update (SAC).
    public var targetUpdateInterval = 1
    /// Global gradient-norm clip per network (0: off).
    public var maxGradientNorm: Float = 0
    /// Truncated BPTT: cut the state gradient every k steps (0: through the whole window).
    public var truncation = 0
    /// TD3: std of the target smoothing noise, its clip, and the exploration noise.
    public var policyNoise: Float = 0.2
    public var noiseClip: Float = 0.5
    public var explorationNoise: Float = 0.1
    /// Refreshed stored states: every this many critic updates, rewrite the replay's stored states
    /// with the current networks (nil or 0: never; applies to runs with stored states).
    public var refreshStoredStatesInterval: Int? = nil
    /// MASAC: the centralised critics see the global state (nil: when the environment has one) or the joint observation.
    public var criticInput: CriticInput? = nil
    /// MASAC: the other agents' actions in the actor update (nil: from the replay).
    public var otherAgentsActions: OtherAgentsActions? = nil
    /// MASAC: one actor network per agent (true) instead of one shared by all agents (nil or false).
    public var actorPerAgent: Bool? = nil
    /// VDN and QMIX: the mixer, exploration and returns (nil: the defaults).
    public var valueDecomposition: ValueDecompositionConfiguration? = nil
    /// Q-heads per critic on its one encoder (RESeL: one critic with 8 heads; nil: 1). Every head is
    /// a Q-function: the critics' loss sums over them all.
    public var criticHeads: Int? = nil
    /// The bootstrap target takes the minimum over this many Q-functions (critics × heads) drawn
    /// at random for each update, REDQ's in-target minimisation (RESeL: 2 of 8; nil: over all).
    public var targetSubset: Int? = nil
    /// What the SAC actor maximises over the Q-functions: their minimum (nil) or their mean (RESeL, REDQ).
    public var actorQ: ActorQ? = nil
    /// Clamp each bootstrap value to the range of the values seen so far (RESeL's guard against
    /// diverging targets): the range starts at the first batch's values and widens with each
    /// batch's; for continuous actions its ends also drift towards each batch's minimum and
    /// maximum by 0.1% per update, so that it can narrow again. nil or false: off.
    public var clampTargets: Bool? = nil
    /// RESeL's context encoder around the recurrent stack (nil: the stack alone): each context input
    /// embedded linearly, dense layers, the stack (`hiddenSize`, `recurrentLayers`), a linear layer,
    /// and a projection of the observation next to it; the dense layers, the stack and the layer
    /// after it learn at `encoderLearningRate`, the embeddings and the projection with the head.
    public var contextEncoder: ContextEncoderLayout? = nil

    public init() {}

    /// An MLP agent: it learns from single transitions drawn anywhere in an episode (windows of one
    /// step, no burn-in, zero states, fixed length).
    public mutating func useMLP() {
        network = .mlp
        sampler.sequenceLength = 1
        sampler.burnIn = 0
        sampler.randomSequenceLength = false
        sampler.initialState = .zero
        sampler.alwaysStartAtEpisodeStart = false
    }

    /// The critics' network in force.
    public var criticNetworkKind: NetworkKind { criticNetwork ?? network }

    /// Q-functions in all: critics × heads.
    public var qFunctionCount: Int { criticCount * (criticHeads ?? 1) }

    /// The value-decomposition options in force.
    public var valueDecompositionOptions: ValueDecompositionConfiguration { valueDecomposition ?? ValueDecompositionConfiguration() }

    /// Checks every option; throws a message that says what is wrong and what to do.
    public func validate() throws {
        func fail(_ m: String) throws { throw ConfigurationError(m) }
        try sampler.validate()
        try validateNetworkSizes(recurrentLayers: recurrentLayers, hiddenSize: hiddenSize, headHiddenSizes: headHiddenSizes)
        if batchSize < 1 { try fail("batch size must be at least 1 (got \(batchSize))") }
        if let k = refreshStoredStatesInterval, k < 0 { try fail("the stored-state refresh interval must be 0 (off) or positive (got \(k))") }
        if context.agentID && !algorithm.isMultiAgent {
            try fail("the agent id in the context is for networks shared by several agents; this algorithm trains one agent: drop 'agentID' from the context")
        }
        if context.lastObservation && algorithm.isMultiAgent {
            try fail("the previous observation as a context input is for sac and td3 for now; drop 'lastObservation' from the context")
        }
        if actorPerAgent == true && !algorithm.isMultiAgent {
            try fail("one actor per agent is for several agents (masac, vdn, qmix); this algorithm trains one agent: remove --actor-per-agent")
        }
        if algorithm.isValueDecomposition { try valueDecompositionOptions.validate() }
        if replayCapacity < 1 { try fail("replay capacity must be at least 1 (got \(replayCapacity))") }
        if !(gamma >= 0 && gamma <= 1) { try fail("gamma must be in [0, 1] (got \(gamma))") }
        if !(tau > 0 && tau <= 1) { try fail("tau must be in (0, 1] (got \(tau))") }
        for (name, lr) in [("actor", actorLearningRate), ("critic", criticLearningRate), ("temperature", temperatureLearningRate)]
        where !(lr > 0 && lr.isFinite) {
            try fail("\(name) learning rate must be positive (got \(lr))")
        }
        if let e = encoderLearningRate, !(e > 0 && e.isFinite) { try fail("encoder learning rate must be positive (got \(e))") }
        if !(initialTemperature > 0) { try fail("initial temperature must be positive (got \(initialTemperature))") }
        if criticCount < 1 { try fail("critic count must be at least 1 (got \(criticCount))") }
        if let h = criticHeads {
            if h < 1 { try fail("critic heads must be at least 1 (got \(h))") }
            try checkUpperBound("critic heads", h, SizeLimit.critics)
        }
        if let m = targetSubset, !(1...qFunctionCount).contains(m) {
            try fail("the target subset must hold 1 to \(qFunctionCount) Q-functions (critics × heads); got \(m)")
        }
        if let layout = contextEncoder {
            do { try layout.validate() } catch { try fail("\(error)") }
            if network == .mlp { try fail("the context encoder is built around a recurrent stack: use --network gru or lstm") }
            if layout.projection > 0 && !context.observation {
                try fail("the context encoder projects the observation, which the context leaves out: add 'observation' to the context, or set its projection to 0")
            }
            if algorithm.isMultiAgent { try fail("the context encoder is for sac and td3 for now; \(algorithm.rawValue) uses the plain recurrent encoder") }
        }
        if algorithm.isValueDecomposition && (criticHeads != nil || targetSubset != nil || actorQ != nil || clampTargets != nil) {
            try fail("critic heads, target subsets, the actor's Q and clamped targets are SAC/TD3/MASAC options; \(algorithm.rawValue) has no critics")
        }
        try checkUpperBound("batch size", batchSize, SizeLimit.batch)
        try checkUpperBound("replay capacity", replayCapacity, SizeLimit.replay)
        try checkUpperBound("critic count", criticCount, SizeLimit.critics)
        for (name, v) in [("critic update interval", criticUpdateInterval), ("actor update interval", actorUpdateInterval),
                          ("target update interval", targetUpdateInterval)] where v < 1 {
            try fail("\(name) must be at least 1 (got \(v))")
        }
        try checkFinite([("gamma", gamma), ("tau", tau), ("initial temperature", initialTemperature), ("target entropy", targetEntropy ?? 0),
                         ("max gradient norm", maxGradientNorm), ("policy noise", policyNoise), ("noise clip", noiseClip),
                         ("exploration noise", explorationNoise)])
        for (name, v) in [("policy noise", policyNoise), ("noise clip", noiseClip), ("exploration noise", explorationNoise)] where v < 0 {
            try fail("\(name) must be 0 or more (got \(v))")
        }
        if maxGradientNorm < 0 { try fail("max gradient norm must be 0 (off) or positive (got \(maxGradientNorm))") }
        if truncation < 0 { try fail("truncation must be 0 (off) or positive (got \(truncation))") }
        if sampler.sequenceLength == 1 && sampler.alwaysStartAtEpisodeStart {
            try fail("windows of one step that all start at an episode's first step train on nothing else: let them start anywhere (--no-start-at-episode-start, or alwaysStartAtEpisodeStart false in the configuration file)")
        }
        if let critic = criticNetwork, critic != network {
            if algorithm.isValueDecomposition { try fail("\(algorithm.rawValue) has no critics: remove --critic-network") }
            if network == .mlp {
                try fail("a recurrent critic needs windows longer than the MLP actor's single transitions: use --network gru or lstm for the actor too, or --critic-network mlp")
            }
            if contextEncoder != nil { try fail("the context encoder is built into actor and critics alike: remove --critic-network, or the context encoder") }
        }
        if network == .mlp {
            if sampler.sequenceLength != 1 || sampler.burnIn != 0 || sampler.initialState != .zero {
                try fail("an MLP agent has no recurrent state: use sequence length 1, no burn-in and initial state 'zero' (or choose --network gru|lstm)")
            }
        }
    }
}

/// The sizes every recurrent-encoder-plus-head network shares: at least 1, at most the library's bounds.
func validateNetworkSizes(recurrentLayers: Int, hiddenSize: Int, headHiddenSizes: [Int]) throws {
    if recurrentLayers < 1 { throw ConfigurationError("recurrent layers must be at least 1 (got \(recurrentLayers))") }
    if hiddenSize < 1 { throw ConfigurationError("hidden size must be at least 1 (got \(hiddenSize))") }
    if headHiddenSizes.contains(where: { $0 < 1 }) { throw ConfigurationError("head hidden sizes must be positive (got \(headHiddenSizes))") }
    try checkUpperBound("recurrent layers", recurrentLayers, SizeLimit.layers)
    try checkUpperBound("hidden size", hiddenSize, SizeLimit.width)
    try checkUpperBound("the number of head layers", headHiddenSizes.count, SizeLimit.listLength)
    for width in headHiddenSizes { try checkUpperBound("head hidden size", width, SizeLimit.width) }
}
