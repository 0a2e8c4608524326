import Foundation
import Environments
import NeuralNetworks
import Replay
import Tensors

/// What the last updates measured (for the metrics log).
public struct UpdateStatistics: Equatable, Codable, Sendable {
    public var criticLoss: Float = .nan
    public var actorLoss: Float = .nan
    public var temperature: Float = .nan
    /// Mean of -log π over the trained steps (SAC).
    public var entropy: Float = .nan
    /// Mean Q over the trained steps.
    public var meanQ: Float = .nan
    public var criticGradientNorm: Float = .nan
    public var actorGradientNorm: Float = .nan
    public var encoderGradientNorm: Float = .nan
    /// The actor's recurrent encoder's share of the actor gradient (before clipping).
    public var actorEncoderGradientNorm: Float = .nan

    public init() {}

    enum CodingKeys: String, CodingKey {
        case criticLoss, actorLoss, temperature, entropy, meanQ, criticGradientNorm, actorGradientNorm, encoderGradientNorm, actorEncoderGradientNorm
    }

    /// Checkpoints written before a statistic existed read without it.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        criticLoss = try c.decode(Float.self, forKey: .criticLoss)
        actorLoss = try c.decode(Float.self, forKey: .actorLoss)
        temperature = try c.decode(Float.self, forKey: .temperature)
        entropy = try c.decode(Float.self, forKey: .entropy)
        meanQ = try c.decode(Float.self, forKey: .meanQ)
        criticGradientNorm = try c.decode(Float.self, forKey: .criticGradientNorm)
        actorGradientNorm = try c.decode(Float.self, forKey: .actorGradientNorm)
        encoderGradientNorm = try c.decode(Float.self, forKey: .encoderGradientNorm)
        actorEncoderGradientNorm = try c.decodeIfPresent(Float.self, forKey: .actorEncoderGradientNorm) ?? .nan
    }
}

/// Recurrent (or MLP) SAC, discrete SAC, TD3, MASAC, VDN and QMIX, trained from `SequenceBatch`es.
///
/// Actor and critics are `SequenceNetwork`s with their own encoders; the critics' heads take the
/// action, so every trained step t has Q(h_t, a) for any a. One update on a batch of L + 1 slots
/// with burn-in B trains on the current slots B..<L:
///
/// - critics: y_t = r_t + γ (1 - terminated_t) (min_i Q'_i(h'_{t+1}, a') - α log π(a'|h_{t+1})) with
///   a' drawn from the current actor (TD3: the target actor plus clipped noise) at slot t + 1, where
///   h' is the target critics' state (starting at slot 0 with `includeFirstStepInTargets`, else at
///   slot 1); the loss is the masked mean of (Q_i(h_t, a_t) - y_t)² per critic.
/// - actor (every `actorUpdateInterval` critic updates): the masked mean of α log π(a|h_t) -
///   min_i Q_i(h_t, a) with a = the actor's reparameterised action (TD3: -Q_1(h_t, μ(h_t))),
///   back-propagated through time into the actor's encoder.
///
/// The Q-functions are every critic's heads (`criticHeads` > 1: an ensemble on each critic's
/// encoder, each head regressing on the same targets). The target's minimum may run over a subset
/// of them drawn at random each update (`targetSubset`, REDQ), the SAC actor may take their mean
/// instead of their minimum (`actorQ`), and V(next) may be clamped to the range of the targets seen
/// so far (`clampTargets`): RESeL's choices.
///
/// The mask is `validMask`, or `finalStepMask` with `maskNonFinal`. Burn-in slots run without
/// gradient and warm the state from zeros or the stored state.
///
/// Several agents (MASAC): one actor shared by all agents (rows agent-inner, `[time, batch ·
/// agents, feature]`, each agent's id one-hot in its context), and centralised critics Q_k(s, a_k,
/// a_-k) per agent k: they see the global state (or the joint observation) with the agent's id,
/// and take the agent's own action with the others' (continuous), or give Q for each of the agent's
/// actions with the others' one-hot (discrete). Each agent has its own reward and temperature; the
/// targets draw every agent's a' from the current actor; the actor update moves only the agent's
/// own action, the others' coming from the replay or the current actor (`otherAgentsActions`).
/// With one agent every step is single-agent SAC's, to the bit.
///
/// VDN and QMIX (`valueDecompositionUpdate`): the actor networks are the agents' Q-networks, acting
/// ε-greedily (`EpsilonGreedy`); there are no critics, and a `Mixer` makes the team's Q.
public final class OffPolicyAgent {
    public let configuration: AgentConfiguration
    /// Agents per environment step (1: single-agent SAC and TD3).
    public let agents: Int
    /// Floats of the global state the critics see (0: they see the joint observation).
    public let globalStateWidth: Int
    /// Floats of one step's critic input (the actor's context when both are the same).
    public let criticContextWidth: Int
    /// The critics read the actor's context (one agent with nothing central to add, or independent critics).
    public let sharesContext: Bool
    /// Each agent's critic sees only its own context and action (independent learners sharing weights).
    public let independentCritics: Bool
    /// Each agent's critic input starts with the agent's own observation (`agentSpecific`).
    public let agentSpecificCritics: Bool
    public let observationWidth: Int
    /// Floats per action (1 for discrete actions, which are stored as an index).
    public let actionWidth: Int
    /// n for discrete actions, nil for continuous ones.
    public let discreteActions: Int?
    /// n when the environment masks unavailable discrete actions (stored in the replay and applied to
    /// the policy in acting, in the targets and in the actor update), else 0.
    public let actionMaskWidth: Int
    public let contextWidth: Int

    /// One actor network shared by the agents, or one per agent (`actorPerAgent`).
    public let actor: ActorNetworks
    public let actorTarget: ActorNetworks?
    public let critics: [SequenceNetwork]
    public let criticTargets: [SequenceNetwork]
    /// Q-heads per critic (an ensemble on each critic's encoder); Q-function k is head k % heads of critic k / heads.
    public let headsPerCritic: Int
    /// Q-functions in all (critics × heads).
    public var qFunctionCount: Int { critics.count * headsPerCritic }
    /// With `clampTargets`: the range bootstrap values are clamped to (nil until the first batch).
    public internal(set) var targetRange: ClosedRange<Float>?
    /// log α per agent.
    public let logTemperature: Parameter
    public let targetEntropy: Float

    let actorOptimizer: Adam
    let criticOptimizer: Adam
    let temperatureOptimizer: Adam
    let actorParameters: [Parameter]
    let actorEncoderParameters: [Parameter]
    let criticParameters: [Parameter]
    let criticEncoderParameters: [Parameter]
    let criticParameterLists: [[Parameter]]
    let criticTargetParameterLists: [[Parameter]]
    /// The actor's target, then the mixer's (VDN, QMIX).
    let actorTargetParameters: [Parameter]
    let mixerParameters: [Parameter]
    /// What the actor's optimiser trains: the actor's parameters, then the mixer's (VDN, QMIX).
    let actorAndMixerParameters: [Parameter]
    /// Every parameter, targets included, in one list (checked for non-finite values after each update).
    let everyParameter: [Parameter]

    public var rng: RandomGenerator
    public internal(set) var criticUpdates = 0
    public internal(set) var actorUpdates = 0
    public internal(set) var statistics = UpdateStatistics()
    /// Measure gradient norms in the next updates (diagnostics; clipping measures them anyway).
    public var measuresGradientNorms = true

    /// The algorithm's half of the update: SAC, discrete SAC or TD3 (nil for VDN and QMIX).
    public let objective: OffPolicyObjective?
    /// How actions are chosen from the acting network: the objective's policy, or ε-greedy (VDN, QMIX).
    public let policy: ActionChoice
    /// VDN and QMIX: the mixer of the agents' chosen Q-values and its target copy.
    public let mixer: Mixer?, mixerTarget: Mixer?

    // Workspaces (allocated on first use, reused).
    let context = Tensor([0])
    let criticContext = Tensor([0])
    /// `[slots, batch · agents]`: the batch's reset mask for every agent's row (several agents).
    let agentResetMask = Tensor([0])
    /// Critic head extras assembled from several agents' actions: recorded, next, policy.
    let recordedExtra = Tensor([0]), nextExtra = Tensor([0]), policyExtra = Tensor([0])
    /// Discrete a' (several agents: the others' actions in the target critics' input), and the
    /// others' actions drawn from the current actor for the actor update.
    let sampledNext = Tensor([0]), currentActions = Tensor([0]), currentProbabilities = Tensor([0])
    /// d Q / d(own action) of several agents' critics (the first columns of the head's extra gradient).
    let ownActionGradient = Tensor([0])
    /// Staleness measurement: the episodes' pasts followed by the windows, and the heads' outputs.
    let stalenessContext = Tensor([0]), stalenessCriticContext = Tensor([0]), stalenessMask = Tensor([0])
    let stalenessUsed = Tensor([0]), stalenessRecomputed = Tensor([0])
    /// Refreshing the replay's stored states: one step of every kept episode, and the states.
    let refreshContext = Tensor([0]), refreshCriticContext = Tensor([0]), refreshActorState = Tensor([0]), refreshCriticState = Tensor([0])
    /// Per agent: α (0 for TD3) and Σ weight · entropy of the last actor update.
    let temperatureValues: Tensor
    let agentEntropies: UnsafeMutablePointer<Double>
    /// Per agent: the trained rows of the last batch (masked steps and early-finished agents left out).
    let agentRows: UnsafeMutablePointer<Double>
    let contextPart = Tensor([0])
    let maskPart = Tensor([0])
    let lossMask = Tensor([0])
    let targetMin = Tensor([0])
    /// The Q-functions of this update's target (a random subset, `targetSubset`): a shuffled order and membership.
    var targetOrder: [Int] = [], targetMembers: [Bool] = []
    /// The critics the actor update's `CriticsAtTrainedSlots` has already encoded (their heads share the features).
    var encodedInActorUpdate: [Bool] = []
    let targets = Tensor([0])
    let qGradient = Tensor([0])
    let parameterGradient = Tensor([0])
    let weights = Tensor([0])
    let decomposition = ValueDecompositionBuffers()
    /// QMIX with `scaleMixerState`: each state entry's largest magnitude in the states trained on so far.
    public internal(set) var mixerStateScale: [Float]?
    /// How the agents' rewards make the team's reward (VDN and QMIX learn the team's Q).
    public let teamReturn: TeamReturn

    /// An agent for `agents` agents per step (1: SAC or TD3; more: MASAC) whose environment has a
    /// global state of `globalStateWidth` floats (0: none).
    public init(configuration: AgentConfiguration, observationSpace: Space, actionSpace: Space, seed: UInt64,
                agents: Int = 1, globalStateWidth: Int = 0, actionMaskWidth: Int = 0, teamReturn: TeamReturn = .sum) throws {
        try configuration.validate()
        guard agents >= 1 else { throw ConfigurationError("an agent needs at least one agent per step (got \(agents))") }
        if agents > 1 && !configuration.algorithm.isMultiAgent {
            throw ConfigurationError("this environment has \(agents) agents; \(configuration.algorithm.rawValue) trains one: use masac, vdn or qmix")
        }
        let valueDecomposition = configuration.algorithm.isValueDecomposition
        self.configuration = configuration
        self.agents = agents
        self.teamReturn = teamReturn
        let independent = configuration.criticInput == .independent
        let usesGlobalState = globalStateWidth > 0 && configuration.criticInput != .jointObservation && !independent
        self.globalStateWidth = usesGlobalState ? globalStateWidth : 0
        observationWidth = observationSpace.width
        switch actionSpace {
        case .box(let low, _):
            actionWidth = low.count
            discreteActions = nil
        case .discrete(let n):
            actionWidth = 1
            discreteActions = n
            if configuration.algorithm == .td3 {
                throw ConfigurationError("TD3 needs continuous actions; this environment has \(n) discrete actions: use sac")
            }
        }
        if valueDecomposition && discreteActions == nil {
            throw ConfigurationError("\(configuration.algorithm.rawValue) learns Q-values of discrete actions; this action space is \(actionSpace): use masac for continuous actions")
        }
        guard actionMaskWidth == 0 || actionMaskWidth == discreteActions else {
            throw ConfigurationError("action masks of \(actionMaskWidth) entries need \(actionMaskWidth) discrete actions; this action space is \(actionSpace)")
        }
        self.actionMaskWidth = actionMaskWidth
        let c = configuration
        // A discrete previous action enters the context one-hot (its index has no order).
        let contextWidth = c.context.width(observation: observationWidth, action: discreteActions ?? actionWidth, agents: agents)
        self.contextWidth = contextWidth
        // Critics: the central input (global state or joint observation), the agent's id, the previous
        // joint action and the agent's previous reward; with one agent and nothing central, the actor's context.
        sharesContext = (agents == 1 && !usesGlobalState && !c.context.agentID) || independent || valueDecomposition
        independentCritics = independent
        agentSpecificCritics = c.criticInput == .agentSpecific && !sharesContext
        let central = (usesGlobalState ? globalStateWidth : agents * observationWidth) + (agentSpecificCritics ? observationWidth : 0)
        let criticContextWidth = sharesContext ? contextWidth
            : central + (agents > 1 ? agents : 0) + (c.context.lastAction ? agents * (discreteActions ?? actionWidth) : 0) + (c.context.lastReward ? 1 : 0)
        self.criticContextWidth = criticContextWidth
        // Continuous: the agent's own action then the others'; discrete: the others' one-hot.
        let others = independent ? 1 : agents
        let criticExtraWidth = discreteActions == nil ? others * actionWidth : (others - 1) * (discreteActions ?? 0)
        let discreteActions = self.discreteActions
        var rng = RandomGenerator(seed: seed)
        let A = actionWidth
        let objective: OffPolicyObjective?
        if valueDecomposition {
            objective = nil
        } else if let n = discreteActions {
            objective = DiscreteSoftActorCriticObjective(actions: n, actorQ: c.actorQ ?? .minimum)
        } else if c.algorithm.isSoft {
            objective = SoftActorCriticObjective(actionWidth: A, actorQ: c.actorQ ?? .minimum)
        } else {
            objective = TD3Objective(actionWidth: A, explorationNoise: c.explorationNoise, policyNoise: c.policyNoise, noiseClip: c.noiseClip)
        }
        self.objective = objective
        policy = objective ?? EpsilonGreedy(actions: discreteActions ?? 0)
        let actorOutputs = policy.policyOutputs
        // RESeL's context encoder embeds each context input (single-agent: the critics read the actor's context).
        let inputGroups = c.context.groups(observation: observationSpace.width, action: discreteActions ?? A)
        let contextEncoder = c.contextEncoder.map { (layout: $0, groups: inputGroups) }
        let actorOutputActivation: Activation = c.algorithm == .td3 ? .tanh : .identity
        func makeActor(_ rng: inout RandomGenerator) -> SequenceNetwork {
            SequenceNetwork(contextWidth: contextWidth, extraWidth: 0, cell: c.network.cell, hiddenSize: c.hiddenSize,
                            layers: c.recurrentLayers, headHiddenSizes: c.headHiddenSizes, outputSize: actorOutputs,
                            activation: c.activation, outputActivation: actorOutputActivation, contextEncoder: contextEncoder, using: &rng)
        }
        func makeCritic(_ rng: inout RandomGenerator) -> SequenceNetwork {
            // Discrete: Q for every action from the features; continuous: Q(features, action).
            SequenceNetwork(contextWidth: criticContextWidth, extraWidth: criticExtraWidth, cell: c.criticNetworkKind.cell,
                            hiddenSize: c.hiddenSize, layers: c.recurrentLayers, headHiddenSizes: c.headHiddenSizes,
                            outputSize: discreteActions ?? 1, activation: c.activation, heads: c.criticHeads ?? 1,
                            contextEncoder: contextEncoder, extraProjection: c.contextEncoder?.projection ?? 0, using: &rng)
        }
        let perAgent = c.actorPerAgent == true
        actor = ActorNetworks(agents: agents, perAgent: perAgent) { makeActor(&rng) }
        let criticCount = valueDecomposition ? 0 : c.criticCount
        headsPerCritic = c.criticHeads ?? 1
        critics = (0..<criticCount).map { _ in makeCritic(&rng) }
        criticTargets = (0..<criticCount).map { _ in makeCritic(&rng) }
        for (t, s) in zip(criticTargets, critics) { copyParameters(from: s.parameters, to: t.parameters) }
        if c.algorithm == .td3 || valueDecomposition {
            let target = ActorNetworks(agents: agents, perAgent: perAgent) { makeActor(&rng) }
            copyParameters(from: actor.parameters, to: target.parameters)
            actorTarget = target
        } else {
            actorTarget = nil
        }
        // VDN sums; QMIX mixes under the global state (the joint observation when there is none).
        func makeMixer(_ rng: inout RandomGenerator) -> Mixer? {
            switch c.algorithm {
            case .vdn: return SumMixer(agents: agents)
            case .qmix:
                let o = c.valueDecompositionOptions
                return MonotonicMixer(agents: agents, stateWidth: usesGlobalState ? globalStateWidth : agents * observationSpace.width,
                                      embed: o.mixingEmbed, hypernetEmbed: o.hypernetEmbed, using: &rng)
            default: return nil
            }
        }
        mixer = makeMixer(&rng)
        mixerTarget = makeMixer(&rng)
        if let mixer, mixer.stateWidth > 0, c.valueDecompositionOptions.scaleMixerState {
            mixerStateScale = [Float](repeating: 0, count: mixer.stateWidth)
        }
        if let mixer, let mixerTarget { copyParameters(from: mixer.parameters, to: mixerTarget.parameters) }
        self.rng = rng.split()
        logTemperature = Parameter([agents])
        logTemperature.value.fill(Foundation.log(c.initialTemperature))
        temperatureValues = Tensor([agents])
        agentEntropies = .allocate(capacity: agents)
        agentEntropies.initialize(repeating: 0, count: agents)
        agentRows = .allocate(capacity: agents)
        agentRows.initialize(repeating: 0, count: agents)
        if let given = c.targetEntropy {
            targetEntropy = given
        } else if let n = discreteActions {
            targetEntropy = 0.98 * Foundation.log(Float(n))
        } else {
            targetEntropy = -Float(A)
        }

        actorParameters = actor.parameters
        actorEncoderParameters = actor.encoderParameters
        criticParameterLists = critics.map(\.parameters)
        criticTargetParameterLists = criticTargets.map(\.parameters)
        criticParameters = criticParameterLists.flatMap { $0 }
        criticEncoderParameters = critics.flatMap(\.encoderParameters)
        actorTargetParameters = (actorTarget?.parameters ?? []) + (mixerTarget?.parameters ?? [])
        mixerParameters = mixer?.parameters ?? []
        actorAndMixerParameters = actorParameters + mixerParameters
        everyParameter = actorParameters + mixerParameters + criticParameters + [logTemperature] + actorTargetParameters
            + criticTargetParameterLists.flatMap { $0 }
        func groups(_ network: [SequenceNetwork], learningRate: Float, name: String) -> [ParameterGroup] {
            var g = [ParameterGroup(name: name + ".head", parameters: network.flatMap(\.headParameters), learningRate: learningRate)]
            let encoders = network.flatMap(\.encoderParameters)
            if !encoders.isEmpty {
                g.append(ParameterGroup(name: name + ".encoder", parameters: encoders, learningRate: c.encoderLearningRate ?? learningRate))
            }
            return g
        }
        var actorGroups = groups(actor.networks, learningRate: c.actorLearningRate, name: "actor")
        if !mixerParameters.isEmpty { actorGroups.append(ParameterGroup(name: "mixer", parameters: mixerParameters, learningRate: c.actorLearningRate)) }
        actorOptimizer = Adam(groups: actorGroups)
        criticOptimizer = Adam(groups: groups(critics, learningRate: c.criticLearningRate, name: "critic"))
        temperatureOptimizer = Adam(parameters: [logTemperature], learningRate: c.temperatureLearningRate)
    }

    deinit {
        agentEntropies.deallocate()
        agentRows.deallocate()
    }

    /// The (first agent's) temperature α.
    public var temperature: Float { Foundation.exp(logTemperature.value.data[0]) }

    /// Fills `temperatureValues` with each agent's α (0 for TD3).
    func currentTemperatures() -> AgentTemperatures {
        for k in 0..<agents { temperatureValues.data[k] = configuration.algorithm.isSoft ? Foundation.exp(logTemperature.value.data[k]) : 0 }
        return AgentTemperatures(count: agents, values: temperatureValues.data, entropies: agentEntropies)
    }

    /// Named parameters for a weights file: `actor.*`, `critic0.*`, ..., `log_temperature`.
    public func namedParameters() -> [NamedParameter] {
        var all = actor.namedParameters(prefix: "actor.")
        all += mixer?.namedParameters(prefix: "mixer.") ?? []
        for (i, c) in critics.enumerated() { all += c.namedParameters(prefix: "critic\(i).") }
        if configuration.algorithm.isSoft { all.append(("log_temperature", logTemperature)) }
        return all
    }

    /// Named parameters of the target networks and the optimiser-free state (for checkpoints).
    public func targetNamedParameters() -> [NamedParameter] {
        var all: [NamedParameter] = []
        for (i, c) in criticTargets.enumerated() { all += c.namedParameters(prefix: "critic_target\(i).") }
        if let actorTarget { all += actorTarget.namedParameters(prefix: "actor_target.") }
        all += mixerTarget?.namedParameters(prefix: "mixer_target.") ?? []
        return all
    }

    /// The replay layout this agent needs (stored states only when the sampler uses them).
    public var replayLayout: ReplayLayout {
        let stored = configuration.sampler.initialState.usesStoredStates
        return ReplayLayout(observationWidth: observationWidth, actionWidth: actionWidth,
                            actorStateWidth: stored ? actor.stateWidth : 0,
                            criticStateWidth: stored ? agents * criticStateWidth : 0, agents: agents, globalStateWidth: globalStateWidth,
                            actionMaskWidth: actionMaskWidth)
    }

    // MARK: Acting

    /// One step of `E` parallel episodes: `context` is `[1, E, contextWidth]`, `state` `[E, actor.stateWidth]`
    /// (updated in place). Writes `E x actionWidth` normalised actions (discrete: indices).
    public func act(context: Tensor, state: Tensor, deterministic: Bool, actionMasks: UnsafePointer<Float>?, actions: UnsafeMutablePointer<Float>) {
        let E = context.shape[1]
        let features = actor.encode(context, initialState: actor.isRecurrent ? state.matrix : nil, resetMask: nil, keepActivations: false)
        if let final = actor.finalState { state.data.update(from: final, count: E * actor.stateWidth) }
        let out = actor.head(features: features, firstRow: 0, rows: E)
        if let actionMasks, let n = discreteActions { Categorical.mask(logits: out.data, rows: E, actions: n, mask: actionMasks) }
        policy.act(policyOutput: out, rows: E, deterministic: deterministic, actions: actions, rng: &rng)
    }

    /// Sets the exploration for acting after `step` environment steps (VDN, QMIX: ε of the schedule).
    public func setExploration(atStep step: Int) {
        if let greedy = policy as? EpsilonGreedy { greedy.epsilon = configuration.valueDecompositionOptions.epsilon(atStep: step) }
    }

    /// Floats of one row's critic states, all critics side by side.
    public var criticStateWidth: Int { critics.reduce(0) { $0 + $1.stateWidth } }

    /// Advances the critics' states by one step (for storing them in the replay): `context` is the
    /// critics' input `[1, E, criticContextWidth]` (the actor's context when they share it), `state`
    /// `[E, criticStateWidth]`, critic i's columns side by side.
    public func advanceCriticStates(context: Tensor, state: Tensor) {
        let E = context.shape[1]
        let total = criticStateWidth
        var column = 0
        for critic in critics {
            guard let encoder = critic.encoder else { continue }
            let w = encoder.stateWidth
            let slice = Matrix(state.data + column, rows: E, columns: w, stride: total)
            encoder.forward(context, initialState: slice, resetMask: nil, resets: .zero, keepActivations: false)
            for e in 0..<E { (state.data + e * total + column).update(from: encoder.finalState.data + e * w, count: w) }
            column += w
        }
    }

    // MARK: Updates

    /// Builds the encoders' inputs for every slot of the batch: the actor's (one row per agent) and,
    /// unless they share it, the critics'.
    func buildContext(_ batch: SequenceBatch) {
        let S = batch.slots, B = batch.batchSize, N = agents, o = observationWidth, a = actionWidth, g = globalStateWidth
        let C = contextWidth, Cc = criticContextWidth
        context.resize(Shape(d0: S, d1: B * N, d2: C))
        if !sharesContext { criticContext.resize(Shape(d0: S, d1: B * N, d2: Cc)) }
        // Pointers read once (each read of a tensor's storage is checked for exclusive access).
        let observations = batch.observations.data, previousActions = batch.previousActions.data, globalStates = batch.globalStates.data
        let previousRewards = batch.previousRewards.data, hasPrevious = batch.hasPreviousAction.data
        let previousObservations = batch.previousObservations.data
        let actorOut = context.data, criticOut = sharesContext ? nil : criticContext.data
        for k in 0..<(S * B) {
            writeStepContexts(observations: observations + k * N * o,
                              previousObservations: hasPrevious[k] != 0 ? previousObservations + k * N * o : nil, globalState: globalStates + k * g,
                              previousActions: hasPrevious[k] != 0 ? previousActions + k * N * a : nil, previousRewards: previousRewards + k * N,
                              actor: actorOut + k * N * C, critic: criticOut.map { $0 + k * N * Cc })
        }
        if N > 1 {
            agentResetMask.resize(Shape(d0: S, d1: B * N))
            for k in 0..<(S * B) { for j in 0..<N { agentResetMask.data[k * N + j] = batch.resetMask.data[k] } }
        }
    }

    /// Critic i's columns of a `[batch, agents · criticStateWidth]` tensor, one row per agent.
    func criticStateColumns(_ states: Tensor, critic i: Int) -> Matrix? {
        guard critics[i].isRecurrent, configuration.sampler.initialState.usesStoredStates else { return nil }
        let total = criticStateWidth
        let column = critics[0..<i].reduce(0) { $0 + $1.stateWidth }
        return Matrix(states.data + column, rows: states.shape[0] * agents, columns: critics[i].stateWidth, stride: total)
    }

    /// Runs `network`'s encoder over the current slots 0..<L of the batch (the actor's context, or the
    /// critics' input for a critic), the first `burnIn` of them without activations, and returns the
    /// features of the trained slots burnIn..<L.
    func encodeCurrent(_ network: SequenceNetwork, batch: SequenceBatch, initialState: Matrix?, keepActivations: Bool) -> Tensor {
        network.encode(window: criticInput, resetMask: rowResetMask(batch), slots: 0..<(batch.slots - 1),
                       burnIn: configuration.sampler.burnIn, initialState: initialState, keepActivations: keepActivations)
    }

    /// The same for the actor over its context, from the stored states when the sampler uses them.
    func encodeCurrentActor(_ batch: SequenceBatch, keepActivations: Bool) -> Tensor {
        actor.encode(window: context, resetMask: rowResetMask(batch), slots: 0..<(batch.slots - 1),
                     burnIn: configuration.sampler.burnIn, initialState: storedActorState(batch), keepActivations: keepActivations)
    }

    /// One critic update, then (every `actorUpdateInterval` critic updates) an actor and
    /// temperature update and the target updates.
    public func update(_ batch: SequenceBatch) {
        if mixer != nil { return valueDecompositionUpdate(batch) }
        let rows = prepare(batch)
        let c = configuration
        let (criticLoss, meanQ) = criticLossAndGradients(batch, rows: rows)
        statistics.criticLoss = Float(criticLoss)
        statistics.meanQ = Float(meanQ)
        if measuresGradientNorms {
            statistics.encoderGradientNorm = criticEncoderParameters.isEmpty ? .nan : gradientNorm(criticEncoderParameters)
        }
        if let norm = clipOrMeasureGradientNorm(criticParameters) { statistics.criticGradientNorm = norm }
        criticOptimizer.step()
        criticUpdates += 1
        if criticUpdates % configuration.actorUpdateInterval == 0 {
            let (actorLoss, entropy) = actorLossAndGradients(batch, rows: rows)
            if measuresGradientNorms && actor.isRecurrent { statistics.actorEncoderGradientNorm = gradientNorm(actorEncoderParameters) }
            if let norm = clipOrMeasureGradientNorm(actorParameters) { statistics.actorGradientNorm = norm }
            actorOptimizer.step()
            statistics.actorLoss = Float(actorLoss)
            if c.algorithm.isSoft {
                statistics.entropy = Float(entropy)
                if c.learnTemperature {
                    // d/d(log α_k) of -log α_k (log π + H*) averaged over agent k's rows: entropy_k - H*
                    // (agent k's rows carry agentRows[k] / Σ agentRows of the weights; none: no change).
                    var total: Double = 0
                    for k in 0..<agents { total += agentRows[k] }
                    for k in 0..<agents {
                        logTemperature.gradient.data[k] = agentRows[k] > 0 ? Float(total / agentRows[k] * agentEntropies[k]) - targetEntropy : 0
                    }
                    temperatureOptimizer.step()
                }
                if agents == 1 {
                    statistics.temperature = temperature
                } else {
                    var sum: Float = 0
                    for k in 0..<agents { sum += Foundation.exp(logTemperature.value.data[k]) }
                    statistics.temperature = sum / Float(agents)
                }
            }
            actorUpdates += 1
            if configuration.algorithm == .td3 { updateTargets() }
        }
        if configuration.algorithm.isSoft && criticUpdates % configuration.targetUpdateInterval == 0 { updateTargets() }
    }

    /// The gradient norm of `parameters` before clipping, clipped to `maxGradientNorm` when one is set,
    /// else measured when `measuresGradientNorms` (nil: not measured).
    func clipOrMeasureGradientNorm(_ parameters: [Parameter]) -> Float? {
        if configuration.maxGradientNorm > 0 { return clipGradientNorm(parameters, maxNorm: configuration.maxGradientNorm) }
        return measuresGradientNorms ? gradientNorm(parameters) : nil
    }

    /// Builds the context inputs and the loss weights (mask / number of masked rows) of a batch;
    /// returns the number of trained rows, (L - burnIn) · batch · agents.
    func prepare(_ batch: SequenceBatch) -> Int {
        buildContext(batch)
        let L = batch.slots - 1, Bn = configuration.sampler.burnIn, B = batch.batchSize, N = agents
        copySlots(batch.lossMask(maskNonFinal: configuration.sampler.maskNonFinal), Bn..<L, into: lossMask)
        let steps = (L - Bn) * B
        lossMask.resize(Shape(d0: steps))
        let rows = steps * N
        weights.resize(Shape(d0: rows))
        // An agent that finished before its episode did has no loss at its later steps.
        let active = activity(batch, fromSlot: Bn)
        for k in 0..<N { agentRows[k] = 0 }
        for r in 0..<rows { agentRows[r % N] += Double(lossMask.data[r / N] * (active?[r] ?? 1)) }
        var total: Double = 0
        for k in 0..<N { total += agentRows[k] }
        let scale: Float = total > 0 ? 1 / Float(total) : 0
        for r in 0..<rows { weights.data[r] = lossMask.data[r / N] * (active?[r] ?? 1) * scale }
        return rows
    }

    /// Several agents: each row's activity (1: the agent is in its episode) from slot `s` of the batch on,
    /// rows agent-inner; nil with one agent (always active).
    func activity(_ batch: SequenceBatch, fromSlot s: Int) -> UnsafePointer<Float>? {
        agents > 1 ? UnsafePointer(batch.agentActive.data + s * batch.batchSize * agents) : nil
    }

    func updateTargets() {
        for (t, s) in zip(criticTargetParameterLists, criticParameterLists) { polyakUpdate(target: t, source: s, tau: configuration.tau) }
        if actorTarget != nil { polyakUpdate(target: actorTargetParameters, source: actorAndMixerParameters, tau: configuration.tau) }
    }

    /// The critics' loss (summed over critics) and mean Q; fills the critics' gradients.
    func criticLossAndGradients(_ batch: SequenceBatch, rows: Int) -> (loss: Double, meanQ: Double) {
        let c = configuration, L = batch.slots - 1, Bn = c.sampler.burnIn, N = agents, RB = batch.batchSize * N, A = actionWidth
        let temperatures = currentTemperatures(), objective = self.objective!
        let nextRow = (Bn + 1) * RB  // first row of the next view of the trained slots
        let resetMask = rowResetMask(batch), input = criticInput

        // a' at slots Bn+1...L from the current actor (TD3: the target actor), for every agent.
        let policy = actorTarget ?? actor
        let actorFeatures = policy.encode(context, initialState: storedActorState(batch), resetMask: resetMask, keepActivations: false)
        let out = policy.head(features: actorFeatures, firstRow: nextRow, rows: rows)
        maskPolicy(out, rows: rows, batch: batch, firstRow: nextRow)
        var nextActions = objective.drawNextActions(policyOutput: out, rows: rows, rng: &rng)
        if N > 1, !independentCritics, let n = discreteActions, let discrete = objective as? DiscreteSoftActorCriticObjective {
            // The other agents' a' enter the target critics' input as actions drawn from their policies.
            sampledNext.resize(Shape(d0: rows))
            Categorical.sample(probabilities: discrete.nextProbabilities.data, rows: rows, actions: n, into: sampledNext.data, rng: &rng)
            nextActions = UnsafePointer(sampledNext.data)
        }
        let nextInput = nextActions.flatMap { criticExtra($0, active: activity(batch, fromSlot: Bn + 1), rows: rows, into: nextExtra) }

        // Target critics: the minimum over the Q-functions (or a random subset of them) at each next slot.
        let width = discreteActions ?? 1, H = headsPerCritic
        let subset = drawTargetSubset()
        targetMin.resize(Shape(d0: rows, d1: width))
        var first = true
        for (i, target) in criticTargets.enumerated() where (0..<H).contains(where: { subset[i * H + $0] }) {
            let features: Tensor
            let firstRow: Int
            if c.sampler.includeFirstStepInTargets || !target.isRecurrent {
                features = target.encode(input, initialState: criticStateColumns(batch.initialCriticState, critic: i),
                                         resetMask: resetMask, keepActivations: false)
                firstRow = nextRow
            } else {
                copySlots(input, 1..<(L + 1), into: contextPart)
                copySlots(resetMask, 1..<(L + 1), into: maskPart)
                features = target.encode(contextPart, initialState: criticStateColumns(batch.targetInitialCriticState, critic: i),
                                         resetMask: maskPart, keepActivations: false)
                firstRow = Bn * RB
            }
            for j in 0..<H where subset[i * H + j] {
                let q = target.head(features: features, firstRow: firstRow, rows: rows, extra: nextInput, index: j)
                if first { targetMin.copy(from: q) } else { for k in 0..<(rows * width) { targetMin.data[k] = min(targetMin.data[k], q.data[k]) } }
                first = false
            }
        }
        // y = r + γ (1 - terminated) V(next), each agent with its own reward and temperature (V clamped with `clampTargets`).
        targets.resize(Shape(d0: rows, d1: 1))
        // Storage as plain pointers in the row loops (each read of a class property is a dynamic exclusivity check).
        let y = targets.data, minimumQ = targetMin.data
        for r in 0..<rows {
            y[r] = objective.nextValue(row: r, minimumQ: minimumQ + r * width, temperature: temperatures.values[temperatures.agent(ofRow: r)])
        }
        let clamps = c.clampTargets == true
        if clamps && targetRange == nil { targetRange = trainedRange(of: targets) }  // the first batch's bootstrap values
        let range = clamps ? targetRange : nil
        let agentFinished = batch.agentFinished.data, rewards = batch.rewards.data, terminated = batch.terminated.data
        for r in 0..<rows {
            var v = y[r]
            if let range { v = min(max(v, range.lowerBound), range.upperBound) }
            let k = Bn * RB + r
            // An agent that finished at this step while the episode went on has no future either.
            let finished = N > 1 ? agentFinished[k] : 0
            y[r] = rewards[k] + c.gamma * (1 - terminated[k / N]) * (1 - finished) * v
        }
        if clamps { widenTargetRange() }

        // Online critics: masked squared error of Q(h_t, a_t), back-propagated through time.
        criticOptimizer.zeroGradients()
        var loss: Double = 0, meanQ: Double = 0
        let recorded = batch.actions.data + Bn * RB * A
        let recordedInput = criticExtra(recorded, active: activity(batch, fromSlot: Bn), rows: rows, into: recordedExtra)
        let share = 1 / Double(qFunctionCount)
        for (i, critic) in critics.enumerated() {
            let features = encodeCurrent(critic, batch: batch, initialState: criticStateColumns(batch.initialCriticState, critic: i),
                                         keepActivations: true)
            // Every head regresses on the targets; their feature gradients add up in the shared encoder.
            for j in 0..<headsPerCritic {
                let q = critic.head(features: features, firstRow: 0, rows: rows, extra: recordedInput, index: j)
                qGradient.resize(Shape(d0: rows, d1: width))
                qGradient.zero()
                let w = weights.data, qs = q.data, dq = qGradient.data, discrete = discreteActions != nil
                for r in 0..<rows where w[r] != 0 {
                    let k = discrete ? r * width + Int(recorded[r]) : r
                    let d = qs[k] - y[r]
                    loss += Double(w[r] * d * d)
                    meanQ += Double(w[r] * qs[k]) * share
                    dq[k] = 2 * w[r] * d
                }
                critic.headBackward(qGradient, needsFeatureGradient: critic.isRecurrent, needsExtraGradient: false, index: j, accumulating: j > 0)
            }
            critic.encoderBackward(slots: L - Bn, batch: RB, truncation: c.truncation)
        }
        return (loss, meanQ)
    }

    /// Which Q-functions make this update's target: all, or (`targetSubset` m) m of them drawn at random.
    func drawTargetSubset() -> [Bool] {
        let count = qFunctionCount
        if targetMembers.count != count {
            targetOrder = Array(0..<count)
            targetMembers = [Bool](repeating: true, count: count)
        }
        guard let m = configuration.targetSubset, m < count else { return targetMembers }
        // The first m places of a partial Fisher-Yates shuffle of 0..<count (drawn afresh: no state between updates).
        for k in 0..<count { targetOrder[k] = k }
        for k in 0..<m { targetOrder.swapAt(k, k + rng.integer(below: count - k)) }
        for k in 0..<count { targetMembers[k] = false }
        for k in 0..<m { targetMembers[targetOrder[k]] = true }
        return targetMembers
    }

    /// The smallest and largest of `values` (one per row) over the trained rows, or nil when none is trained.
    func trainedRange(of values: Tensor) -> ClosedRange<Float>? {
        var low = Float.infinity, high = -Float.infinity
        for r in 0..<values.count where weights.data[r] != 0 {
            low = min(low, values.data[r])
            high = max(high, values.data[r])
        }
        return low <= high ? low...high : nil
    }

    /// `clampTargets`: widens the range to this batch's targets y (the trained rows'), and for
    /// continuous actions moves its ends 0.1% of the way towards the batch's minimum and maximum.
    func widenTargetRange() {
        guard let batch = trainedRange(of: targets), let range = targetRange else { return }
        var lower = min(range.lowerBound, batch.lowerBound), upper = max(range.upperBound, batch.upperBound)
        if discreteActions == nil {
            let decay: Float = 1 - 1e-3
            lower = decay * lower + (1 - decay) * batch.lowerBound
            upper = decay * upper + (1 - decay) * batch.upperBound
        }
        targetRange = lower...upper
    }

    /// Rules out the unavailable actions (stored masks) of `rows` policy outputs, the first at row
    /// `firstRow` of the batch's `[slots · batch · agents]` rows.
    func maskPolicy(_ out: Tensor, rows: Int, batch: SequenceBatch, firstRow: Int) {
        guard actionMaskWidth > 0 else { return }
        let n = actionMaskWidth
        Categorical.mask(logits: out.data, rows: rows, actions: n, mask: batch.actionMasks.data + firstRow * n)
    }

    /// The stored actor states entering each window, one row per agent.
    func storedActorState(_ batch: SequenceBatch) -> Matrix? {
        guard actor.isRecurrent && configuration.sampler.initialState.usesStoredStates else { return nil }
        return Matrix(batch.initialActorState.data, rows: batch.batchSize * agents, columns: actor.stateWidth, stride: actor.stateWidth)
    }

    /// The actor's loss and the policy entropy; fills the actor's gradients (the critics only pass
    /// dQ/da through, their gradients stay untouched).
    func actorLossAndGradients(_ batch: SequenceBatch, rows: Int) -> (loss: Double, entropy: Double) {
        let c = configuration, L = batch.slots - 1, Bn = c.sampler.burnIn, RB = batch.batchSize * agents, objective = self.objective!
        actorOptimizer.zeroGradients()
        let features = encodeCurrentActor(batch, keepActivations: true)
        let out = actor.head(features: features, firstRow: 0, rows: rows)
        maskPolicy(out, rows: rows, batch: batch, firstRow: Bn * RB)
        parameterGradient.resize(out.shape)
        // The other agents' actions: recorded, or (several agents, `currentPolicy`) drawn from the current actor.
        var others = UnsafePointer(batch.actions.data + Bn * RB * actionWidth)
        if agents > 1 && c.otherAgentsActions == .currentPolicy {
            currentActions.resize(Shape(d0: rows, d1: actionWidth))
            if let n = discreteActions {
                currentProbabilities.resize(Shape(d0: 2 * rows * n))
                Categorical.probabilities(logits: out.data, rows: rows, actions: n, probabilities: currentProbabilities.data,
                                          logProbabilities: currentProbabilities.data + rows * n)
                Categorical.sample(probabilities: currentProbabilities.data, rows: rows, actions: n, into: currentActions.data, rng: &rng)
            } else {
                objective.act(policyOutput: out, rows: rows, deterministic: false, actions: currentActions.data, rng: &rng)
            }
            others = UnsafePointer(currentActions.data)
        }
        if encodedInActorUpdate.count != critics.count { encodedInActorUpdate = [Bool](repeating: false, count: critics.count) }
        for i in 0..<critics.count { encodedInActorUpdate[i] = false }
        let (loss, entropy) = objective.actorLoss(policyOutput: out, rows: rows, weights: weights.data, agents: currentTemperatures(),
                                                  critics: CriticsAtTrainedSlots(agent: self, batch: batch, rows: rows, others: others),
                                                  gradient: parameterGradient, rng: &rng)
        actor.backward(window: parameterGradient, slots: L - Bn, batch: RB, truncation: c.truncation)
        return (loss, entropy)
    }
}

/// The online critics over the current batch's trained slots, without gradient into their encoders.
/// With several agents each row's critic input holds the row's own action (the one the actor moves)
/// and the other agents' actions from `others`.
struct CriticsAtTrainedSlots: CriticView {
    unowned let agent: OffPolicyAgent
    let batch: SequenceBatch
    let rows: Int
    let others: UnsafePointer<Float>

    var count: Int { agent.qFunctionCount }

    func q(_ k: Int, actions: UnsafePointer<Float>?) -> Tensor {
        let H = agent.headsPerCritic, i = k / H, critic = agent.critics[i]
        // The heads of one critic share its features: encoded once per actor update.
        let f: Tensor
        if agent.encodedInActorUpdate[i] {
            f = critic.lastWindowFeatures
        } else {
            f = agent.encodeCurrent(critic, batch: batch, initialState: agent.criticStateColumns(batch.initialCriticState, critic: i),
                                    keepActivations: false)
            agent.encodedInActorUpdate[i] = true
        }
        let extra = agent.agents == 1 ? actions : agent.criticExtra(others, own: actions, active: agent.activity(batch, fromSlot: agent.configuration.sampler.burnIn),
                                                                          rows: rows, into: agent.policyExtra)
        return critic.head(features: f, firstRow: 0, rows: rows, extra: extra, index: k % H)
    }

    func actionGradient(_ k: Int, qGradient: Tensor) -> Tensor {
        // The critic's head still holds its activations for these actions.
        let H = agent.headsPerCritic, critic = agent.critics[k / H]
        critic.headBackward(qGradient, needsFeatureGradient: false, needsExtraGradient: true, needsParameterGradients: false, index: k % H)
        guard agent.agents > 1 else { return critic.extraGradient }
        // Only the row's own action (the first columns) belongs to the actor being trained.
        let A = agent.actionWidth, w = critic.extraWidth, g = agent.ownActionGradient
        g.resize(Shape(d0: rows, d1: A))
        for r in 0..<rows { copyFloats(g.data + r * A, from: critic.extraGradient.data + r * w, count: A) }
        return g
    }
}

extension OffPolicyAgent: RecurrentActor {
    public var actorStateWidth: Int { actor.stateWidth }
    public func prepare(observation: UnsafeMutablePointer<Float>) {}
    public func prepare(reward: Float) -> Float { reward }
    public func writeContext(observation: UnsafePointer<Float>, lastObservation: UnsafePointer<Float>?, lastAction: UnsafePointer<Float>?,
                             lastReward: Float, agent: Int, into out: UnsafeMutablePointer<Float>) {
        configuration.context.write(observation: observation, observationWidth: observationWidth, lastObservation: lastObservation, lastAction: lastAction,
                                    actionWidth: actionWidth, oneHotOver: discreteActions, lastReward: lastReward, agent: agent,
                                    agents: agents, into: out)
    }
}
