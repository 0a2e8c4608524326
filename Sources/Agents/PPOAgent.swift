import Environments
import Collectives
import Foundation
import Inference
import NeuralNetworks
import Replay
import Tensors

/// What one PPO update (the epochs over one rollout) measured.
public struct PPOStatistics: Equatable, Codable, Sendable {
    public var policyLoss: Float = .nan
    public var valueLoss: Float = .nan
    public var entropy: Float = .nan
    /// Mean over minibatches of the approximate KL to the collecting policy, measured before each step.
    public var approximateKL: Float = .nan
    /// After the update: approximate KL to the collecting policy with the states stored at
    /// collection (stale) and with states recomputed by the updated networks (refreshed).
    public var staleKL: Float = .nan
    public var refreshedKL: Float = .nan
    public var clipFraction: Float = .nan
    public var explainedVariance: Float = .nan
    /// Epochs started (fewer than configured when KL early stopping fired) and gradient steps taken.
    public var epochs = 0
    public var gradientSteps = 0
    public var stoppedEarly = false
    /// The hard KL limit fired and the last step was undone.
    public var restored = false
    public var gradientNorm: Float = .nan
    public var learningRate: Float = .nan
    public var clipRange: Float = .nan

    public init() {}
}

/// Recurrent PPO-Clip for discrete (categorical) and continuous (diagonal Gaussian with a
/// state-independent log standard deviation; actions clipped to [-1, 1] only when sent to the
/// environment) action spaces.
///
/// Actor and critic are `SequenceNetwork`s with their own GRU/LSTM encoders, or one shared encoder
/// feeding both heads, or MLPs. Training cuts each environment's rollout row into chunks of
/// `chunkLength` steps that start from the stored state of their first step; an episode start
/// inside a chunk restarts the state from zeros, so no chunk carries anything across an episode
/// boundary, and padding past the rollout's end is masked out.
///
/// Several agents (IPPO, MAPPO) share the networks, each row one agent of one copy (the agent's id
/// in the context when asked): the rollout has a row per copy and agent, the actor's logits of
/// unavailable actions are masked, steps of agents that left the episode weigh nothing, and with a
/// global state (MAPPO) the critic reads the copy's global state and the agent's id instead of the
/// actor's context.
public final class PPOAgent {
    public let configuration: PPOConfiguration
    public let observationWidth: Int
    /// Floats per stored action (1 for a discrete action index).
    public let actionWidth: Int
    public let discreteActions: Int?
    /// Floats of the previous action in the context (n for a one-hot discrete action).
    public let contextActionWidth: Int
    public let contextWidth: Int
    /// Agents acting per copy (rows of `act` are agent-inner); they share the networks.
    public let agents: Int
    /// Floats of the global state a central critic reads (0: the critic reads the actor's context).
    public let globalStateWidth: Int
    /// Actions per agent in the action masks (0: every action is always available).
    public let actionMaskWidth: Int
    /// Floats of the critic's input: the actor's context, or (central) the global state and the agent's id.
    public let criticContextWidth: Int
    public var hasCentralCritic: Bool { globalStateWidth > 0 }

    public let actor: SequenceNetwork
    /// The critic: its own encoder, or (shared) a head on the actor's features.
    public let critic: SequenceNetwork
    public let logStd: Parameter?
    let optimizer: Adam
    let parameters: [Parameter]
    public var rng: RandomGenerator
    /// Data-parallel training (`mpirun -np N`): every rank holds its own rollout, and each minibatch
    /// is the union of the ranks' minibatches. Advantages are normalised over the union, every loss
    /// is a mean over the union's valid steps, and the gradients are summed over the ranks before the
    /// step, so the weights stay identical everywhere. nil (or one rank): one process.
    public var ranks: (any Communicator)? {
        didSet { ranks = severalRanks(ranks) }
    }
    /// The gradients in one flat buffer (one sum over the ranks per minibatch) and the minibatch's statistics.
    lazy var flatGradients = Tensor(Shape(d0: parameters.reduce(0) { $0 + $1.gradient.count }))
    let reductionScratch = UnsafeMutablePointer<Double>.allocate(capacity: 8)

    public var observationStatistics: RunningMeanStd
    public var returnStatistics: RunningMeanStd
    /// The global state's running statistics (a central critic's input, normalised with the observations).
    public var stateStatistics: RunningMeanStd

    public var actorStateWidth: Int { actor.stateWidth }
    /// The critic's own state width (0 when it shares the actor's encoder or is an MLP).
    public var criticStateWidth: Int { critic.stateWidth }
    public var isShared: Bool { configuration.sharedEncoder }

    // Workspaces, reused.
    let step1Context = Tensor([0])
    let stateScratch = Tensor([0])
    let criticStateScratch = Tensor([0])
    let actingScratch = Tensor([0])
    let chunkContext = Tensor([0])
    let chunkCriticContext = Tensor([0])
    let chunkActionMask = Tensor([0])
    let step1CriticContext = Tensor([0])
    let oneCriticContext = Tensor([0])
    let chunkMask = Tensor([0])
    let chunkActorState = Tensor([0])
    let chunkCriticState = Tensor([0])
    let headGradient = Tensor([0])
    let valueGradient = Tensor([0])
    let logProbabilityScratch = Tensor([0])
    let probabilities = Tensor([0])
    let actingSharedFeatures = Tensor([0])
    let chunkSharedFeatures = Tensor([0])
    let refreshActorState = Tensor([0])
    let refreshCriticState = Tensor([0])
    let truncatedStates = Tensor([0])
    let oneContext = Tensor([0])
    let oneState = Tensor([0])
    let recomputedActorStates = Tensor([0])
    /// The weights and Adam state before the last gradient step (for the hard KL limit).
    let snapshot: ParameterSnapshot
    var windowOrder: [Int] = []
    /// Every chunk in order (the diagnostics evaluate the whole rollout as one batch).
    var allWindows: [Int] = []

    /// `agents` share the networks; `globalStateWidth` above 0 makes the critic central (it reads
    /// the global state and the agent's id); `actionMaskWidth` above 0 (discrete actions) masks actions.
    public init(configuration: PPOConfiguration, observationSpace: Space, actionSpace: Space, seed: UInt64, agents: Int = 1,
                globalStateWidth: Int = 0, actionMaskWidth: Int = 0) throws {
        try configuration.validate()
        if configuration.context.agentID && agents < 2 {
            throw ConfigurationError("the agent id in the context is for networks shared by several agents; this environment has one agent: drop 'agentID' from the context")
        }
        if globalStateWidth > 0 && configuration.sharedEncoder {
            throw ConfigurationError("a central critic (mappo) reads the global state, so it cannot share the actor's encoder: drop --shared-encoder")
        }
        self.configuration = configuration
        self.agents = agents
        self.globalStateWidth = globalStateWidth
        self.actionMaskWidth = actionMaskWidth
        observationWidth = observationSpace.width
        var rng = RandomGenerator(seed: seed)
        switch actionSpace {
        case .discrete(let n):
            discreteActions = n
            actionWidth = 1
            contextActionWidth = n
            logStd = nil
        case .box(let low, _):
            discreteActions = nil
            actionWidth = low.count
            contextActionWidth = low.count
            let p = Parameter(Shape(d0: low.count))
            p.value.fill(configuration.initialLogStd)
            logStd = p
        }
        contextWidth = configuration.context.width(observation: observationWidth, action: contextActionWidth, agents: agents)
        criticContextWidth = globalStateWidth > 0 ? globalStateWidth + (agents > 1 ? agents : 0) : contextWidth
        let outputs = discreteActions ?? actionWidth
        let c = configuration
        actor = SequenceNetwork(contextWidth: contextWidth, extraWidth: 0, cell: c.network.cell, hiddenSize: c.hiddenSize,
                                layers: c.recurrentLayers, headHiddenSizes: c.headHiddenSizes, outputSize: outputs,
                                activation: c.activation, using: &rng)
        if c.sharedEncoder {
            critic = SequenceNetwork(contextWidth: actor.featureWidth, extraWidth: 0, cell: nil, hiddenSize: 0, layers: 0,
                                     headHiddenSizes: c.headHiddenSizes, outputSize: 1, activation: c.activation, using: &rng)
        } else {
            critic = SequenceNetwork(contextWidth: criticContextWidth, extraWidth: 0, cell: c.network.cell, hiddenSize: c.hiddenSize,
                                     layers: c.recurrentLayers, headHiddenSizes: c.headHiddenSizes, outputSize: 1,
                                     activation: c.activation, using: &rng)
        }
        let all = actor.parameters + (logStd.map { [$0] } ?? []) + critic.parameters
        if let encoderRate = c.encoderGroupLearningRate {
            // The encoders in a group of their own (after the rest, so that the snapshot's order is the optimiser's).
            let encoders = actor.encoderParameters + critic.encoderParameters
            let inEncoders = Set(encoders.map(ObjectIdentifier.init))
            let rest = all.filter { !inEncoders.contains(ObjectIdentifier($0)) }
            parameters = rest + encoders
            optimizer = Adam(groups: [ParameterGroup(name: "heads", parameters: rest, learningRate: c.learningRate),
                                      ParameterGroup(name: "encoders", parameters: encoders, learningRate: encoderRate)],
                             configuration: .init(epsilon: c.adamEpsilon))
        } else {
            parameters = all
            optimizer = Adam(parameters: parameters, learningRate: c.learningRate, configuration: .init(epsilon: c.adamEpsilon))
        }
        snapshot = ParameterSnapshot(of: parameters, optimizer: optimizer)
        self.rng = rng.split()
        observationStatistics = RunningMeanStd(width: observationWidth)
        returnStatistics = RunningMeanStd(width: 1)
        stateStatistics = RunningMeanStd(width: globalStateWidth)
    }

    deinit { reductionScratch.deallocate() }

    /// A CRC-32C of the weights and the normalisers' statistics: equal on every rank of a data-parallel run.
    public func weightsChecksum() -> UInt32 {
        var crc: UInt32 = 0
        func add(_ values: UnsafeRawBufferPointer) { crc = crc32c(values.bindMemory(to: UInt8.self), continuing: crc) }
        for p in parameters { add(UnsafeRawBufferPointer(start: p.value.data, count: p.value.count * 4)) }
        for var statistics in [observationStatistics, returnStatistics, stateStatistics] {
            statistics.mean.withUnsafeBytes(add)
            statistics.variance.withUnsafeBytes(add)
            withUnsafeBytes(of: &statistics.count, add)
        }
        return crc
    }

    /// The name of the first parameter tensor holding a NaN or infinity, or nil when all are finite
    /// (names are built only when one is found).
    public func firstNonFiniteParameter() -> String? {
        guard parameters.contains(where: { !$0.value.isFinite }) else { return nil }
        return namedParameters().first { !$0.parameter.value.isFinite }?.name
    }

    /// Weights by PyTorch-style names.
    public func namedParameters() -> [NamedParameter] {
        var list = actor.namedParameters(prefix: "actor.")
        if let logStd { list.append(("actor.log_std", logStd)) }
        list += critic.namedParameters(prefix: "critic.")
        return list
    }

    // MARK: Context and normalisation

    /// The normalisers' statistics that a weights file keeps, by name (only those in use).
    var normalizerEntries: [(name: String, get: () -> [Double], set: ([Double]) -> Void)] {
        var list: [(name: String, get: () -> [Double], set: ([Double]) -> Void)] = []
        if configuration.normalizeObservations {
            list += [
                ("normalizer.observation.mean", { self.observationStatistics.mean }, { self.observationStatistics.mean = $0 }),
                ("normalizer.observation.var", { self.observationStatistics.variance }, { self.observationStatistics.variance = $0 }),
                ("normalizer.observation.count", { [self.observationStatistics.count] }, { self.observationStatistics.count = $0[0] }),
            ]
            if hasCentralCritic {
                list += [
                    ("normalizer.state.mean", { self.stateStatistics.mean }, { self.stateStatistics.mean = $0 }),
                    ("normalizer.state.var", { self.stateStatistics.variance }, { self.stateStatistics.variance = $0 }),
                    ("normalizer.state.count", { [self.stateStatistics.count] }, { self.stateStatistics.count = $0[0] }),
                ]
            }
        }
        if configuration.normalizeRewards {
            list += [
                ("normalizer.return.var", { self.returnStatistics.variance }, { self.returnStatistics.variance = $0 }),
                ("normalizer.return.count", { [self.returnStatistics.count] }, { self.returnStatistics.count = $0[0] }),
            ]
        }
        return list
    }

    /// The normalisers' statistics as named one-dimensional tensors (Float32), saved next to the weights.
    public func normalizerParameters() -> [NamedParameter] {
        normalizerEntries.map { entry in
            let values = entry.get()
            let p = Parameter(Shape(d0: values.count))
            for (i, v) in values.enumerated() { p.value.data[i] = Float(v) }
            return (entry.name, p)
        }
    }

    /// The same statistics in full (Double) precision, for the weights file's metadata.
    public func normalizerMetadata() -> [String: String] {
        Dictionary(uniqueKeysWithValues: normalizerEntries.map { entry in
            (entry.name, "[" + entry.get().map { "\($0)" }.joined(separator: ",") + "]")
        })
    }

    /// Restores the statistics from tensors loaded into `normalizerParameters()`'s list, in full
    /// precision from `metadata` where it holds them.
    public func restoreNormalizers(_ loaded: [NamedParameter], metadata: [String: String]) {
        for (entry, (_, parameter)) in zip(normalizerEntries, loaded) {
            let n = parameter.value.count
            if let text = metadata[entry.name], let data = text.data(using: .utf8),
               let exact = try? JSONSerialization.jsonObject(with: data) as? [Double], exact.count == n {
                entry.set(exact)
            } else {
                entry.set(parameter.value.array.map(Double.init))
            }
        }
    }

    /// Normalises an observation in place with the running statistics (clipped to ±10).
    public func normalize(observation o: UnsafeMutablePointer<Float>) {
        normalize(o, by: observationStatistics)
    }

    /// Normalises `statistics`' width of values in place by them (when observations are normalised).
    func normalize(_ values: UnsafeMutablePointer<Float>, by statistics: RunningMeanStd) {
        guard configuration.normalizeObservations else { return }
        for j in 0..<statistics.mean.count {
            values[j] = PolicyManifest.Normalizer.normalize(values[j], mean: statistics.mean[j], variance: statistics.variance[j])
        }
    }

    /// The reward scaled by the running deviation of the discounted return (clipped to ±10).
    public func normalize(reward r: Float) -> Float {
        guard configuration.normalizeRewards else { return r }
        return PolicyManifest.Normalizer.normalize(r, mean: 0, variance: returnStatistics.variance[0])
    }

    /// Writes agent `agent`'s step encoder input from a (normalised) observation, the previous
    /// action as stored (an index for discrete actions, one-hot encoded here) and the previous reward.
    public func writeContext(observation: UnsafePointer<Float>, lastObservation: UnsafePointer<Float>?, lastAction: UnsafePointer<Float>?,
                             lastReward: Float, agent: Int, into out: UnsafeMutablePointer<Float>) {
        configuration.context.write(observation: observation, observationWidth: observationWidth, lastObservation: lastObservation, lastAction: lastAction,
                                    actionWidth: actionWidth, oneHotOver: discreteActions, lastReward: lastReward, agent: agent,
                                    agents: agents, into: out)
    }

    /// Normalises a global state in place with the running statistics (as observations are).
    public func normalize(globalState s: UnsafeMutablePointer<Float>) {
        normalize(s, by: stateStatistics)
    }

    /// Writes a central critic's input for agent `agent`: the (normalised) global state, then the
    /// agent's id one-hot (several agents).
    public func writeCriticContext(globalState: UnsafePointer<Float>, agent: Int, into out: UnsafeMutablePointer<Float>) {
        out.update(from: globalState, count: globalStateWidth)
        if agents > 1 {
            (out + globalStateWidth).update(repeating: 0, count: agents)
            out[globalStateWidth + agent] = 1
        }
    }

    // MARK: Acting

    /// One step of the actor for `B` rows of `context` (`[1, B, C]`), advancing `state` (`[B, actorStateWidth]`).
    /// Returns the head's output (`[B, outputs]`), with the logits of actions `actionMasks` (`[B, n]`) rules out masked.
    func actorStep(_ context: Tensor, state: Tensor, actionMasks: UnsafePointer<Float>? = nil) -> Tensor {
        let B = context.shape[1]
        let features = actor.encode(context, initialState: actor.isRecurrent ? state.matrix : nil, resetMask: nil, keepActivations: false)
        if let encoder = actor.encoder { state.data.update(from: encoder.finalState.data, count: B * encoder.stateWidth) }
        if isShared { actingSharedFeatures.resize(features.shape); actingSharedFeatures.copy(from: features) }
        let out = actor.head(features: features, firstRow: 0, rows: B, extra: nil)
        if let actionMasks, let n = discreteActions { Categorical.mask(logits: out.data, rows: B, actions: n, mask: actionMasks) }
        return out
    }

    /// Values of `B` rows of `context`, advancing the critic's `state` (unused when shared: the
    /// features of the actor step just taken are used).
    func criticStep(_ context: Tensor, state: Tensor) -> Tensor {
        let B = context.shape[1]
        if isShared { return critic.head(features: actingSharedFeatures, firstRow: 0, rows: B, extra: nil) }
        let features = critic.encode(context, initialState: critic.isRecurrent ? state.matrix : nil, resetMask: nil, keepActivations: false)
        if let encoder = critic.encoder { state.data.update(from: encoder.finalState.data, count: B * encoder.stateWidth) }
        return critic.head(features: features, firstRow: 0, rows: B, extra: nil)
    }

    /// Actions (stored form) from the actor head's output `out` for `B` rows: the mode, or samples
    /// with their log-probabilities written when `logProbabilities` is given.
    func chooseActions(_ out: Tensor, rows B: Int, deterministic: Bool, actions: UnsafeMutablePointer<Float>,
                       logProbabilities: UnsafeMutablePointer<Float>?) {
        if let n = discreteActions {
            if deterministic {
                Categorical.mode(logits: out.data, rows: B, actions: n, into: actions)
                return
            }
            actingScratch.resize(Shape(d0: 2 * B * n))
            let p = actingScratch.data, lp = actingScratch.data + B * n
            Categorical.probabilities(logits: out.data, rows: B, actions: n, probabilities: p, logProbabilities: lp)
            Categorical.sample(probabilities: p, rows: B, actions: n, into: actions, rng: &rng)
            if let logProbabilities { for r in 0..<B { logProbabilities[r] = lp[r * n + Int(actions[r])] } }
        } else {
            DiagonalGaussian.sample(means: out.data, logStd: logStd!.value.data, rows: B, actionWidth: actionWidth,
                                    deterministic: deterministic, actions: actions, logProbabilities: logProbabilities, rng: &rng)
        }
    }

    /// Collects one step for `B` rows: samples actions (stored form; among those `actionMasks` allows)
    /// and writes their log-probabilities and values; advances both states. `criticContext` is a
    /// central critic's input (nil: the critic reads `context`).
    public func act(context: Tensor, criticContext: Tensor? = nil, actorState: Tensor, criticState: Tensor,
                    actionMasks: UnsafePointer<Float>? = nil, actions: UnsafeMutablePointer<Float>,
                    logProbabilities: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>) {
        let B = context.shape[1]
        chooseActions(actorStep(context, state: actorState, actionMasks: actionMasks), rows: B, deterministic: false, actions: actions,
                      logProbabilities: logProbabilities)
        let v = criticStep(criticContext ?? context, state: criticState)
        for r in 0..<B { values[r] = v.data[r] }
    }

    /// Deterministic (mode) or sampled actions for evaluation; advances the actor's state.
    public func act(context: Tensor, state: Tensor, deterministic: Bool, actionMasks: UnsafePointer<Float>?, actions: UnsafeMutablePointer<Float>) {
        chooseActions(actorStep(context, state: state, actionMasks: actionMasks), rows: context.shape[1], deterministic: deterministic,
                      actions: actions, logProbabilities: nil)
    }

    /// Values of `B` rows of `context` (a central critic: of `criticContext`) from the given states,
    /// leaving the states untouched (bootstrap values of truncated episodes and of the step after a rollout).
    public func values(context: Tensor, criticContext: Tensor? = nil, actorState: Tensor, criticState: Tensor, into out: UnsafeMutablePointer<Float>) {
        let B = context.shape[1]
        if isShared {
            stateScratch.resize(actorState.shape)
            stateScratch.copy(from: actorState)
            _ = actorStep(context, state: stateScratch)
        } else {
            criticStateScratch.resize(criticState.shape)
            criticStateScratch.copy(from: criticState)
        }
        let v = criticStep(criticContext ?? context, state: criticStateScratch)
        for r in 0..<B { out[r] = v.data[r] }
    }

    // MARK: Refreshing

    /// Runs the actor (and, with `critic`, the critic) over the whole rollout with the current
    /// weights in one sequence pass each, from the states stored at its first step, restarting at
    /// episode starts. Writes the actor states entering every step into `actorStates`; with `critic`,
    /// also the buffer's critic states and, with `values`, the buffer's values and the critic's
    /// (shared: actor's) state after every step into `truncatedStates` (read for the bootstrap values
    /// of truncated steps). Leaves the states entering the step after the rollout in
    /// `refreshActorState` and `refreshCriticState`.
    func stepThroughRollout(_ buffer: RolloutBuffer, actorStates: Tensor, critic withCritic: Bool, values withValues: Bool = true) {
        let T = buffer.steps, N = buffer.envs, Sa = actorStateWidth, Sc = criticStateWidth
        let aState = refreshActorState, cState = refreshCriticState
        actorStates.resize(buffer.actorStates.shape)
        aState.resize(Shape(d0: N, d1: max(Sa, 1)))
        cState.resize(Shape(d0: N, d1: max(Sc, 1)))
        let S = isShared ? Sa : Sc
        let after = withCritic && withValues
        if after { truncatedStates.resize(Shape(d0: T, d1: N, d2: max(S, 1))) }
        // One pass of a network over the rollout: the states entering each step into `states`, the
        // states after each step into `truncatedStates` (when `after`), the final state into `final`.
        func pass(_ network: SequenceNetwork, input: Tensor, start: Tensor, states: Tensor, width: Int, after: Bool, final: Tensor) -> Tensor {
            guard let encoder = network.encoder else { return input }
            // The collected states entering the rollout's first step: `start`'s first N rows.
            let initial = Matrix(start.data, rows: N, columns: width, stride: width)
            let features = encoder.forward(input, initialState: initial, resetMask: buffer.episodeStarts, resets: .zero, keepActivations: true)
            encoder.copyStepStates(entering: true, into: states.data, rowStride: width, column: 0)
            if after { encoder.copyStepStates(entering: false, into: truncatedStates.data, rowStride: width, column: 0) }
            final.data.update(from: encoder.finalState.data, count: N * width)
            return features
        }
        cState.data.update(from: buffer.collectedCriticStates.data, count: N * Sc)
        let actorFeatures = pass(actor, input: buffer.contexts, start: buffer.collectedActorStates, states: actorStates, width: Sa,
                                 after: after && isShared, final: aState)
        if withCritic {
            let features = isShared ? actorFeatures
                : pass(critic, input: hasCentralCritic ? buffer.criticContexts : buffer.contexts, start: buffer.collectedCriticStates,
                       states: buffer.criticStates, width: Sc, after: after, final: cState)
            if withValues {
                let v = critic.head(features: features, firstRow: 0, rows: T * N, extra: nil)
                buffer.values.data.update(from: v.data, count: T * N)
            }
        }
        for n in 0..<N where buffer.lastEpisodeStarts.data[n] != 0 {
            (aState.data + n * Sa).update(repeating: 0, count: Sa)
            (cState.data + n * Sc).update(repeating: 0, count: Sc)
        }
    }

    /// Re-runs the networks over the whole rollout with the current weights, from the states stored
    /// at its first step: rewrites the states entering every step and, with `refreshAdvantages`, the
    /// values, the bootstrap values (truncated steps and the step after the rollout) and then the
    /// advantages and returns.
    public func refresh(_ buffer: RolloutBuffer) {
        let T = buffer.steps, N = buffer.envs, C = contextWidth, Sa = actorStateWidth, Sc = criticStateWidth
        stepThroughRollout(buffer, actorStates: buffer.actorStates, critic: true, values: configuration.refreshAdvantages)
        guard configuration.refreshAdvantages else { return }
        // Bootstrap values of truncated steps, from the state after the step.
        let S = isShared ? Sa : Sc, Cc = criticContextWidth
        let one = oneContext, s1 = oneState, oneCritic = hasCentralCritic ? oneCriticContext : nil
        one.resize(Shape(d0: 1, d1: 1, d2: C))
        oneCritic?.resize(Shape(d0: 1, d1: 1, d2: Cc))
        s1.resize(Shape(d0: 1, d1: max(S, 1)))
        for t in 0..<T {
            for n in 0..<N where buffer.isTruncated(t, n) {
                one.data.update(from: buffer.finalContexts.data + (t * N + n) * C, count: C)
                oneCritic?.data.update(from: buffer.finalCriticContexts.data + (t * N + n) * Cc, count: Cc)
                s1.data.update(from: truncatedStates.data + (t * N + n) * S, count: S)
                values(context: one, criticContext: oneCritic, actorState: s1, criticState: s1, into: buffer.finalValues.data + t * N + n)
            }
        }
        // The step after the rollout.
        buffer.lastActorStates.data.update(from: refreshActorState.data, count: N * Sa)
        buffer.lastCriticStates.data.update(from: refreshCriticState.data, count: N * Sc)
        step1Context.resize(Shape(d0: 1, d1: N, d2: C))
        step1Context.data.update(from: buffer.lastContexts.data, count: N * C)
        let lastCritic = hasCentralCritic ? step1CriticContext : nil
        lastCritic?.resize(Shape(d0: 1, d1: N, d2: Cc))
        lastCritic?.data.update(from: buffer.lastCriticContexts.data, count: N * Cc)
        values(context: step1Context, criticContext: lastCritic, actorState: refreshActorState, criticState: refreshCriticState,
               into: buffer.lastValues.data)
        computeAdvantagesAndReturns(buffer)
    }

    /// The rollout's returns and advantages, as configured.
    public func computeAdvantagesAndReturns(_ buffer: RolloutBuffer) {
        buffer.computeAdvantagesAndReturns(gamma: configuration.gamma, lambda: configuration.gaeLambda,
                                           lambdaReturnAdvantages: configuration.advantageEstimator == .lambdaReturn)
    }

    // MARK: Chunks

    /// Chunks per environment row and in all.
    public func chunkCount(steps T: Int) -> Int { (T + configuration.chunkLength - 1) / configuration.chunkLength }

    /// Gathers chunks `windows` (index = env * chunksPerRow + chunk) into `[L, R, ...]` workspaces;
    /// states from `actorStates`/`criticStates` (the buffer's current or collected ones).
    func gather(_ buffer: RolloutBuffer, windows: ArraySlice<Int>, actorStates: Tensor, criticStates: Tensor) {
        let L = configuration.chunkLength, R = windows.count, N = buffer.envs, T = buffer.steps, C = contextWidth
        let Sa = actorStateWidth, Sc = criticStateWidth, perRow = chunkCount(steps: T)
        chunkContext.resize(Shape(d0: L, d1: R, d2: C))
        let Cc = criticContextWidth, m = actionMaskWidth, central = hasCentralCritic
        if central { chunkCriticContext.resize(Shape(d0: L, d1: R, d2: Cc)) }
        if m > 0 { chunkActionMask.resize(Shape(d0: L, d1: R, d2: m)) }
        chunkMask.resize(Shape(d0: L, d1: R))
        chunkActorState.resize(Shape(d0: R, d1: max(Sa, 1)))
        chunkCriticState.resize(Shape(d0: R, d1: max(Sc, 1)))
        for (r, w) in windows.enumerated() {
            let n = w / perRow, t0 = (w % perRow) * L
            (chunkActorState.data + r * Sa).update(from: actorStates.data + (t0 * N + n) * Sa, count: Sa)
            (chunkCriticState.data + r * Sc).update(from: criticStates.data + (t0 * N + n) * Sc, count: Sc)
            for l in 0..<L {
                let t = t0 + l, k = l * R + r
                if t < T {
                    (chunkContext.data + k * C).update(from: buffer.contexts.data + (t * N + n) * C, count: C)
                    if central { (chunkCriticContext.data + k * Cc).update(from: buffer.criticContexts.data + (t * N + n) * Cc, count: Cc) }
                    if m > 0 { (chunkActionMask.data + k * m).update(from: buffer.actionMasks.data + (t * N + n) * m, count: m) }
                    chunkMask.data[k] = l > 0 && buffer.isEpisodeStart(t, n) ? 1 : 0
                } else {
                    (chunkContext.data + k * C).update(repeating: 0, count: C)
                    if central { (chunkCriticContext.data + k * Cc).update(repeating: 0, count: Cc) }
                    if m > 0 { (chunkActionMask.data + k * m).update(repeating: 1, count: m) }
                    chunkMask.data[k] = 0
                }
            }
        }
    }

    /// The rollout index (t * N + n) of chunk slot k = l * R + r, or nil for padding and for steps of
    /// an agent that had left the episode (`active` 0): neither weighs anything.
    @inline(__always) func rolloutIndex(window w: Int, slot l: Int, perRow: Int, steps T: Int, envs N: Int, active: UnsafePointer<Float>) -> Int? {
        let L = configuration.chunkLength, n = w / perRow, t = (w % perRow) * L + l
        return t < T && active[t * N + n] != 0 ? t * N + n : nil
    }

    /// Runs the actor over the gathered chunks (keeping activations when training); returns the head output `[L·R, outputs]`.
    func forwardActor(keepActivations: Bool) -> Tensor {
        let rows = chunkContext.shape[0] * chunkContext.shape[1]
        let features = actor.encode(window: chunkContext, resetMask: chunkMask, slots: 0..<chunkContext.shape[0], burnIn: 0,
                                    initialState: actor.isRecurrent ? chunkActorState.matrix : nil, keepActivations: keepActivations)
        let out = actor.head(features: features, firstRow: 0, rows: rows, extra: nil)
        if actionMaskWidth > 0, let n = discreteActions { Categorical.mask(logits: out.data, rows: rows, actions: n, mask: chunkActionMask.data) }
        if isShared { chunkSharedFeatures.resize(features.shape); chunkSharedFeatures.copy(from: features) }
        return out
    }

    func forwardCritic(keepActivations: Bool) -> Tensor {
        let rows = chunkContext.shape[0] * chunkContext.shape[1]
        if isShared { return critic.head(features: chunkSharedFeatures, firstRow: 0, rows: rows, extra: nil) }
        let features = critic.encode(window: hasCentralCritic ? chunkCriticContext : chunkContext, resetMask: chunkMask,
                                     slots: 0..<chunkContext.shape[0], burnIn: 0,
                                     initialState: critic.isRecurrent ? chunkCriticState.matrix : nil, keepActivations: keepActivations)
        return critic.head(features: features, firstRow: 0, rows: rows, extra: nil)
    }

    /// Log-probabilities of the stored actions under the head output `out` (`[rows, outputs]`),
    /// written to `logProbabilityScratch`; also fills `probabilities` (discrete: probabilities then log-probabilities).
    func logProbabilities(_ out: Tensor, actionAt: (Int) -> UnsafePointer<Float>?, rows: Int) {
        logProbabilityScratch.resize(Shape(d0: rows))
        if let n = discreteActions {
            probabilities.resize(Shape(d0: 2 * rows * n))
            let p = probabilities.data, lp = probabilities.data + rows * n
            Categorical.probabilities(logits: out.data, rows: rows, actions: n, probabilities: p, logProbabilities: lp)
            for k in 0..<rows { logProbabilityScratch.data[k] = actionAt(k).map { lp[k * n + Int($0[0])] } ?? 0 }
        } else {
            let A = actionWidth, s = logStd!.value.data
            for k in 0..<rows {
                logProbabilityScratch.data[k] = actionAt(k).map {
                    DiagonalGaussian.logProbability(mean: out.data + k * A, logStd: s, actionWidth: A, action: $0)
                } ?? 0
            }
        }
    }

    /// Approximate KL (Schulman's estimator, mean of (r - 1) - log r) between the collecting policy
    /// and the current one over the whole rollout, with states taken from `actorStates`.
    public func approximateKL(_ buffer: RolloutBuffer, actorStates: Tensor) -> Float {
        let T = buffer.steps, N = buffer.envs, perRow = chunkCount(steps: T), W = N * perRow
        if allWindows.count != W { allWindows = Array(0..<W) }
        gather(buffer, windows: allWindows[...], actorStates: actorStates, criticStates: buffer.criticStates)
        let out = forwardActor(keepActivations: false)
        let rows = out.shape[0]
        let R = W
        logProbabilities(out, actionAt: { k in
            self.rolloutIndex(window: k % R, slot: k / R, perRow: perRow, steps: T, envs: N, active: buffer.active.data).map { UnsafePointer(buffer.actions.data + $0 * self.actionWidth) }
        }, rows: rows)
        var sum = 0.0, count = 0
        for k in 0..<rows {
            guard let i = rolloutIndex(window: k % R, slot: k / R, perRow: perRow, steps: T, envs: N, active: buffer.active.data) else { continue }
            let logRatio = Double(logProbabilityScratch.data[k] - buffer.logProbabilities.data[i])
            sum += Foundation.exp(logRatio) - 1 - logRatio
            count += 1
        }
        return Float(sum / Double(max(count, 1)))
    }

    // MARK: Update

    struct MinibatchResult {
        var policyLoss: Double = 0, valueLoss: Double = 0, entropy: Double = 0, approximateKL: Double = 0, clipFraction: Double = 0
    }

    /// Forward, losses and gradients (accumulated into the parameters' gradients) on the chunks
    /// `windows`, with states from the buffer. Returns the losses and the approximate KL of the
    /// weights before this step.
    func lossAndGradients(_ buffer: RolloutBuffer, windows: ArraySlice<Int>, clipRange: Float) -> MinibatchResult {
        let c = configuration, T = buffer.steps, N = buffer.envs, perRow = chunkCount(steps: T)
        gather(buffer, windows: windows, actorStates: buffer.actorStates, criticStates: buffer.criticStates)
        let R = windows.count, L = c.chunkLength, rows = L * R
        let out = forwardActor(keepActivations: true)
        let v = forwardCritic(keepActivations: true)
        let base = windows.startIndex
        @inline(__always) func index(_ k: Int) -> Int? {
            rolloutIndex(window: windows[base + k % R], slot: k / R, perRow: perRow, steps: T, envs: N, active: buffer.active.data)
        }
        logProbabilities(out, actionAt: { k in index(k).map { UnsafePointer(buffer.actions.data + $0 * self.actionWidth) } }, rows: rows)

        // Advantage normalisation over the minibatch's valid steps (unbiased deviation, as torch.std).
        // With several ranks: over the union of the ranks' minibatches.
        var valid = 0, mean = 0.0, squares = 0.0
        for k in 0..<rows { if let i = index(k) { valid += 1; mean += Double(buffer.advantages.data[i]) } }
        if let ranks {
            (reductionScratch[0], reductionScratch[1]) = (Double(valid), mean)
            ranks.sum(reductionScratch, count: 2)
            (valid, mean) = (Int(reductionScratch[0]), reductionScratch[1])
        }
        mean /= Double(max(valid, 1))
        for k in 0..<rows { if let i = index(k) { let d = Double(buffer.advantages.data[i]) - mean; squares += d * d } }
        if let ranks { squares = ranks.sum(squares) }
        let deviation = valid > 1 ? (squares / Double(valid - 1)).squareRoot() : 1
        let V = Float(max(valid, 1))

        var result = MinibatchResult()
        let outputs = discreteActions ?? actionWidth
        headGradient.resize(Shape(d0: rows, d1: outputs))
        headGradient.zero()
        valueGradient.resize(Shape(d0: rows, d1: 1))
        valueGradient.zero()
        // d(loss)/d(log π) per row.
        for k in 0..<rows {
            guard let i = index(k) else { continue }
            var advantage = buffer.advantages.data[i]
            if c.normalizeAdvantages { advantage = Float((Double(advantage) - mean) / (deviation + 1e-8)) }
            let logRatio = logProbabilityScratch.data[k] - buffer.logProbabilities.data[i]
            let ratio = Foundation.exp(logRatio)
            let clipped = min(max(ratio, 1 - clipRange), 1 + clipRange)
            let unclippedObjective = ratio * advantage, clippedObjective = clipped * advantage
            result.policyLoss -= Double(min(unclippedObjective, clippedObjective))
            result.approximateKL += Double(ratio - 1 - logRatio)
            if abs(ratio - 1) > clipRange { result.clipFraction += 1 }
            // The gradient flows through the unclipped term when it is the smaller one.
            let dLogp: Float = unclippedObjective <= clippedObjective ? -advantage * ratio / V : 0
            headGradient.data[k * outputs] = dLogp  // stash; expanded below
            // Value loss.
            let value = v.data[k], target = buffer.returns.data[i]
            var dValue = 2 * (value - target)
            var loss = (value - target) * (value - target)
            if c.valueClipRange > 0 {
                let old = buffer.values.data[i]
                let delta = value - old
                let clippedValue = old + min(max(delta, -c.valueClipRange), c.valueClipRange)
                let clippedLoss = (clippedValue - target) * (clippedValue - target)
                if clippedLoss > loss {
                    loss = clippedLoss
                    dValue = abs(delta) < c.valueClipRange ? 2 * (clippedValue - target) : 0
                }
            }
            result.valueLoss += Double(loss)
            valueGradient.data[k] = c.valueCoefficient * dValue / V
        }
        // Policy-head gradient from d/d(log π) and the entropy bonus.
        if let n = discreteActions {
            let p = probabilities.data, lp = probabilities.data + rows * n
            for k in 0..<rows {
                guard let i = index(k) else { continue }
                let dLogp = headGradient.data[k * n]
                let chosen = Int(buffer.actions.data[i * actionWidth])
                let h = Categorical.entropy(probabilities: p + k * n, logProbabilities: lp + k * n, actions: n)
                result.entropy += Double(h)
                // The entropy bonus -β H, averaged over valid rows.
                Categorical.backward(probabilities: p + k * n, logProbabilities: lp + k * n, actions: n, chosen: chosen,
                                     logProbabilityGradient: dLogp, entropy: h, entropyScale: c.entropyCoefficient / V,
                                     into: headGradient.data + k * n)
            }
        } else {
            let A = actionWidth, s = logStd!.value.data, gs = logStd!.gradient.data
            for k in 0..<rows {
                guard let i = index(k) else { continue }
                let dLogp = headGradient.data[k * A]
                // The entropy bonus -β Σ_j log std_j (+ constants) adds -β / V to each log std's gradient.
                DiagonalGaussian.backward(mean: out.data + k * A, logStd: s, actionWidth: A, action: buffer.actions.data + i * A,
                                          logProbabilityGradient: dLogp, meanGradient: headGradient.data + k * A, logStdGradient: gs,
                                          logStdGradientOffset: -(c.entropyCoefficient / V))
                for j in 0..<A { result.entropy += Double(DiagonalGaussian.entropy(logStd: s[j])) }
            }
        }
        // Backward: heads, then encoders (BPTT within each chunk; truncated when asked). A shared
        // encoder gets the value head's feature gradient too.
        if isShared {
            critic.headBackward(valueGradient, needsFeatureGradient: true, needsExtraGradient: false)
            actor.backward(window: headGradient, slots: L, batch: R, truncation: c.truncation, sharedFeatureGradient: critic.featureGradient)
        } else {
            actor.backward(window: headGradient, slots: L, batch: R, truncation: c.truncation)
            critic.backward(window: valueGradient, slots: L, batch: R, truncation: c.truncation)
        }
        let scale = 1 / Double(max(valid, 1))
        result.policyLoss *= scale
        result.valueLoss *= scale
        result.entropy *= scale
        result.approximateKL *= scale
        result.clipFraction *= scale
        return result
    }

    /// Sums the gradients and the minibatch's statistics (each already divided by the union's valid
    /// steps) over the ranks: the union's gradient and means, the same on every rank.
    func sumOverRanks(_ r: MinibatchResult) -> MinibatchResult {
        guard let ranks else { return r }
        var at = flatGradients.data
        for p in parameters {
            at.update(from: p.gradient.data, count: p.gradient.count)
            at += p.gradient.count
        }
        ranks.sum(flatGradients.data, count: flatGradients.count)
        at = flatGradients.data
        for p in parameters {
            p.gradient.data.update(from: at, count: p.gradient.count)
            at += p.gradient.count
        }
        let s = reductionScratch
        (s[0], s[1], s[2], s[3], s[4]) = (r.policyLoss, r.valueLoss, r.entropy, r.approximateKL, r.clipFraction)
        ranks.sum(s, count: 5)
        return MinibatchResult(policyLoss: s[0], valueLoss: s[1], entropy: s[2], approximateKL: s[3], clipFraction: s[4])
    }

    /// The PPO update over a full rollout whose advantages and returns are computed:
    /// `epochs` passes over shuffled minibatches of chunks, with refreshing, KL early stopping and
    /// the hard KL limit as configured. `progressRemaining` (1 → 0 over the run) anneals the learning
    /// rate and the clip range. `diagnostics` adds the stale and refreshed KL after the update.
    public func update(_ buffer: RolloutBuffer, progressRemaining: Float, diagnostics: Bool = true) -> PPOStatistics {
        let c = configuration
        var stats = PPOStatistics()
        let annealing = c.annealLearningRate ? max(progressRemaining, 0) : 1
        let lr = c.learningRate * annealing
        let clip = c.clipRange * (c.annealClipRange ? max(progressRemaining, 0) : 1)
        optimizer.setLearningRate(lr, group: 0)
        if let encoderRate = c.encoderGroupLearningRate { optimizer.setLearningRate(encoderRate * annealing, group: 1) }
        stats.learningRate = lr
        stats.clipRange = clip
        let W = buffer.envs * chunkCount(steps: buffer.steps)
        let perBatch = min(max(c.minibatchSize / c.chunkLength, 1), W)
        if windowOrder.count != W { windowOrder = Array(0..<W) }
        var sums = MinibatchResult(), minibatches = 0, norms = 0.0
        var stop = false
        snapshot.invalidate()
        for epoch in 0..<c.epochs {
            stats.epochs = epoch + 1
            if c.refreshStates { refresh(buffer) }
            // A fresh permutation of the windows from the sorted order (so that it depends on the
            // random generator alone, and a resumed run draws the same one).
            for i in 0..<W { windowOrder[i] = i }
            for i in stride(from: W - 1, to: 0, by: -1) { windowOrder.swapAt(i, rng.integer(below: i + 1)) }
            var start = 0, inEpoch = 0
            while start < W {
                if c.refreshStates && c.refreshInterval > 0 && inEpoch > 0 && inEpoch % c.refreshInterval == 0 { refresh(buffer) }
                let windows = windowOrder[start..<min(start + perBatch, W)]
                start += perBatch
                inEpoch += 1
                optimizer.zeroGradients()
                var r = lossAndGradients(buffer, windows: windows, clipRange: clip)
                if ranks != nil { r = sumOverRanks(r) }
                if c.klHardLimit > 0 && r.approximateKL > Double(c.klHardLimit) {
                    stats.restored = snapshot.restore()
                    stop = true
                    break
                }
                if c.targetKL > 0 && r.approximateKL > 1.5 * Double(c.targetKL) {
                    stop = true
                    break
                }
                sums.policyLoss += r.policyLoss
                sums.valueLoss += r.valueLoss
                sums.entropy += r.entropy
                sums.approximateKL += r.approximateKL
                sums.clipFraction += r.clipFraction
                minibatches += 1
                if c.klHardLimit > 0 { snapshot.take() }
                let norm = c.maxGradientNorm > 0 ? clipGradientNorm(parameters, maxNorm: c.maxGradientNorm) : gradientNorm(parameters)
                norms += Double(norm)
                optimizer.step()
                stats.gradientSteps += 1
            }
            if stop { break }
        }
        stats.stoppedEarly = stop
        if minibatches > 0 {
            let m = Double(minibatches)
            stats.policyLoss = Float(sums.policyLoss / m)
            stats.valueLoss = Float(sums.valueLoss / m)
            stats.entropy = Float(sums.entropy / m)
            stats.approximateKL = Float(sums.approximateKL / m)
            stats.clipFraction = Float(sums.clipFraction / m)
            stats.gradientNorm = Float(norms / m)
        }
        stats.explainedVariance = explainedVariance(buffer)
        if diagnostics {
            stats.staleKL = approximateKL(buffer, actorStates: buffer.collectedActorStates)
            if actor.isRecurrent {
                // States recomputed by the updated actor (the buffer is left as it was).
                recomputeActorStates(buffer, into: recomputedActorStates)
                stats.refreshedKL = approximateKL(buffer, actorStates: recomputedActorStates)
            } else {
                stats.refreshedKL = stats.staleKL
            }
        }
        return stats
    }

    /// The actor's states entering each step, recomputed with the current weights from the
    /// collected state at the rollout's start (for the refreshed-KL diagnostic).
    public func recomputeActorStates(_ buffer: RolloutBuffer, into states: Tensor) {
        stepThroughRollout(buffer, actorStates: states, critic: false)
    }

    /// 1 - Var(returns - values) / Var(returns) over the rollout's active steps (values as stored).
    func explainedVariance(_ buffer: RolloutBuffer) -> Float {
        let n = buffer.steps * buffer.envs, active = buffer.active.data
        var mr = 0.0, md = 0.0, count = 0.0
        for i in 0..<n where active[i] != 0 {
            mr += Double(buffer.returns.data[i]); md += Double(buffer.returns.data[i] - buffer.values.data[i]); count += 1
        }
        mr /= count; md /= count
        var vr = 0.0, vd = 0.0
        for i in 0..<n where active[i] != 0 {
            let r = Double(buffer.returns.data[i]) - mr, d = Double(buffer.returns.data[i] - buffer.values.data[i]) - md
            vr += r * r; vd += d * d
        }
        return vr == 0 ? .nan : Float(1 - vd / vr)
    }
}

extension PPOAgent: RecurrentActor {
    public func prepare(observation: UnsafeMutablePointer<Float>) { normalize(observation: observation) }
    public func prepare(reward: Float) -> Float { normalize(reward: reward) }
}
