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
}

/// Recurrent (or MLP) SAC, discrete SAC and TD3, trained from `SequenceBatch`es.
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
/// The mask is `validMask`, or `finalStepMask` with `maskNonFinal`. Burn-in slots run without
/// gradient and warm the state from zeros or the stored state.
public final class OffPolicyAgent {
    public let configuration: AgentConfiguration
    public let observationWidth: Int
    /// Floats per action (1 for discrete actions, which are stored as an index).
    public let actionWidth: Int
    /// n for discrete actions, nil for continuous ones.
    public let discreteActions: Int?
    public let contextWidth: Int

    public let actor: SequenceNetwork
    public let actorTarget: SequenceNetwork?
    public let critics: [SequenceNetwork]
    public let criticTargets: [SequenceNetwork]
    public let logTemperature = Parameter([1])
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
    let actorTargetParameters: [Parameter]
    /// Every parameter, targets included, in one list (checked for non-finite values after each update).
    let everyParameter: [Parameter]

    public var rng: RandomGenerator
    public internal(set) var criticUpdates = 0
    public internal(set) var actorUpdates = 0
    public internal(set) var statistics = UpdateStatistics()
    /// Measure gradient norms in the next updates (diagnostics; clipping measures them anyway).
    public var measuresGradientNorms = true

    /// The algorithm's half of the update: SAC, discrete SAC or TD3.
    public let objective: OffPolicyObjective

    // Workspaces (allocated on first use, reused).
    let context = Tensor([0])
    let contextPart = Tensor([0])
    let maskPart = Tensor([0])
    let lossMask = Tensor([0])
    let targetMin = Tensor([0])
    let targets = Tensor([0])
    let qGradient = Tensor([0])
    let parameterGradient = Tensor([0])
    let weights = Tensor([0])

    public init(configuration: AgentConfiguration, observationSpace: Space, actionSpace: Space, seed: UInt64) throws {
        try configuration.validate()
        self.configuration = configuration
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
        let c = configuration
        // A discrete previous action enters the context one-hot (its index has no order).
        let contextWidth = c.context.width(observation: observationWidth, action: discreteActions ?? actionWidth)
        self.contextWidth = contextWidth
        let discreteActions = self.discreteActions
        var rng = RandomGenerator(seed: seed)
        let A = actionWidth
        if let n = discreteActions {
            objective = DiscreteSoftActorCriticObjective(actions: n)
        } else if c.algorithm == .sac {
            objective = SoftActorCriticObjective(actionWidth: A)
        } else {
            objective = TD3Objective(actionWidth: A, explorationNoise: c.explorationNoise, policyNoise: c.policyNoise, noiseClip: c.noiseClip)
        }
        let actorOutputs = objective.policyOutputs
        let actorOutputActivation: Activation = c.algorithm == .td3 ? .tanh : .identity
        func makeActor(_ rng: inout RandomGenerator) -> SequenceNetwork {
            SequenceNetwork(contextWidth: contextWidth, extraWidth: 0, cell: c.network.cell, hiddenSize: c.hiddenSize,
                            layers: c.recurrentLayers, headHiddenSizes: c.headHiddenSizes, outputSize: actorOutputs,
                            activation: c.activation, outputActivation: actorOutputActivation, using: &rng)
        }
        func makeCritic(_ rng: inout RandomGenerator) -> SequenceNetwork {
            // Discrete: Q for every action from the features; continuous: Q(features, action).
            SequenceNetwork(contextWidth: contextWidth, extraWidth: discreteActions == nil ? A : 0, cell: c.network.cell,
                            hiddenSize: c.hiddenSize, layers: c.recurrentLayers, headHiddenSizes: c.headHiddenSizes,
                            outputSize: discreteActions ?? 1, activation: c.activation, using: &rng)
        }
        actor = makeActor(&rng)
        critics = (0..<c.criticCount).map { _ in makeCritic(&rng) }
        criticTargets = (0..<c.criticCount).map { _ in makeCritic(&rng) }
        for (t, s) in zip(criticTargets, critics) { copyParameters(from: s.parameters, to: t.parameters) }
        if c.algorithm == .td3 {
            let target = makeActor(&rng)
            copyParameters(from: actor.parameters, to: target.parameters)
            actorTarget = target
        } else {
            actorTarget = nil
        }
        self.rng = rng.split()
        logTemperature.value.data[0] = Foundation.log(c.initialTemperature)
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
        actorTargetParameters = actorTarget?.parameters ?? []
        everyParameter = actorParameters + criticParameters + [logTemperature] + actorTargetParameters + criticTargetParameterLists.flatMap { $0 }
        func groups(_ network: [SequenceNetwork], learningRate: Float, name: String) -> [ParameterGroup] {
            var g = [ParameterGroup(name: name + ".head", parameters: network.flatMap(\.headParameters), learningRate: learningRate)]
            let encoders = network.flatMap(\.encoderParameters)
            if !encoders.isEmpty {
                g.append(ParameterGroup(name: name + ".encoder", parameters: encoders, learningRate: c.encoderLearningRate ?? learningRate))
            }
            return g
        }
        actorOptimizer = Adam(groups: groups([actor], learningRate: c.actorLearningRate, name: "actor"))
        criticOptimizer = Adam(groups: groups(critics, learningRate: c.criticLearningRate, name: "critic"))
        temperatureOptimizer = Adam(parameters: [logTemperature], learningRate: c.temperatureLearningRate)
    }

    public var temperature: Float { Foundation.exp(logTemperature.value.data[0]) }

    /// Named parameters for a weights file: `actor.*`, `critic0.*`, ..., `log_temperature`.
    public func namedParameters() -> [NamedParameter] {
        var all = actor.namedParameters(prefix: "actor.")
        for (i, c) in critics.enumerated() { all += c.namedParameters(prefix: "critic\(i).") }
        if configuration.algorithm == .sac { all.append(("log_temperature", logTemperature)) }
        return all
    }

    /// Named parameters of the target networks and the optimiser-free state (for checkpoints).
    public func targetNamedParameters() -> [NamedParameter] {
        var all: [NamedParameter] = []
        for (i, c) in criticTargets.enumerated() { all += c.namedParameters(prefix: "critic_target\(i).") }
        if let actorTarget { all += actorTarget.namedParameters(prefix: "actor_target.") }
        return all
    }

    /// The replay layout this agent needs (stored states only when the sampler uses them).
    public var replayLayout: ReplayLayout {
        let stored = configuration.sampler.initialState.usesStoredStates
        return ReplayLayout(observationWidth: observationWidth, actionWidth: actionWidth,
                            actorStateWidth: stored ? actor.stateWidth : 0,
                            criticStateWidth: stored ? critics.reduce(0) { $0 + $1.stateWidth } : 0)
    }

    // MARK: Acting

    /// One step of `E` parallel episodes: `context` is `[1, E, contextWidth]`, `state` `[E, actor.stateWidth]`
    /// (updated in place). Writes `E x actionWidth` normalised actions (discrete: indices).
    public func act(context: Tensor, state: Tensor, deterministic: Bool, actions: UnsafeMutablePointer<Float>) {
        let E = context.shape[1]
        let features = actor.encode(context, initialState: actor.isRecurrent ? state.matrix : nil, resetMask: nil, keepActivations: false)
        if let encoder = actor.encoder { state.data.update(from: encoder.finalState.data, count: E * encoder.stateWidth) }
        let out = actor.head(features: features, firstRow: 0, rows: E, extra: nil)
        objective.act(policyOutput: out, rows: E, deterministic: deterministic, actions: actions, rng: &rng)
    }

    /// Advances the critics' states by one step (for storing them in the replay): `state` is
    /// `[E, total critic state width]`, critic i's columns side by side.
    public func advanceCriticStates(context: Tensor, state: Tensor) {
        let E = context.shape[1]
        let total = critics.reduce(0) { $0 + $1.stateWidth }
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

    /// Builds the encoders' inputs for every slot of the batch.
    func buildContext(_ batch: SequenceBatch) {
        let S = batch.slots, B = batch.batchSize, o = observationWidth, a = actionWidth, C = contextWidth
        context.resize(Shape(d0: S, d1: B, d2: C))
        let ctx = configuration.context
        for k in 0..<(S * B) {
            ctx.write(observation: batch.observations.data + k * o, observationWidth: o,
                      lastAction: batch.hasPreviousAction.data[k] != 0 ? batch.previousActions.data + k * a : nil, actionWidth: a,
                      oneHotOver: discreteActions, lastReward: batch.previousRewards.data[k], into: context.data + k * C)
        }
    }

    /// Critic i's columns of a `[batch, total critic state width]` tensor.
    func criticStateColumns(_ states: Tensor, critic i: Int) -> Matrix? {
        guard critics[i].isRecurrent, configuration.sampler.initialState.usesStoredStates else { return nil }
        let total = states.shape[1]
        let column = critics[0..<i].reduce(0) { $0 + $1.stateWidth }
        return Matrix(states.data + column, rows: states.shape[0], columns: critics[i].stateWidth, stride: total)
    }

    /// Runs `network`'s encoder over the current slots 0..<L of the batch, the first `burnIn` of
    /// them without activations, and returns the features of the trained slots burnIn..<L.
    func encodeCurrent(_ network: SequenceNetwork, batch: SequenceBatch, initialState: Matrix?, keepActivations: Bool) -> Tensor {
        network.encode(window: context, resetMask: batch.resetMask, slots: 0..<(batch.slots - 1), burnIn: configuration.sampler.burnIn,
                       initialState: initialState, keepActivations: keepActivations)
    }

    /// One critic update, then (every `actorUpdateInterval` critic updates) an actor and
    /// temperature update and the target updates.
    public func update(_ batch: SequenceBatch) {
        let rows = prepare(batch)
        let c = configuration
        let (criticLoss, meanQ) = criticLossAndGradients(batch, rows: rows)
        statistics.criticLoss = Float(criticLoss)
        statistics.meanQ = Float(meanQ)
        if measuresGradientNorms {
            statistics.encoderGradientNorm = criticEncoderParameters.isEmpty ? .nan : gradientNorm(criticEncoderParameters)
        }
        if c.maxGradientNorm > 0 {
            statistics.criticGradientNorm = clipGradientNorm(criticParameters, maxNorm: c.maxGradientNorm)
        } else if measuresGradientNorms {
            statistics.criticGradientNorm = gradientNorm(criticParameters)
        }
        criticOptimizer.step()
        criticUpdates += 1
        if criticUpdates % configuration.actorUpdateInterval == 0 {
            let (actorLoss, entropy) = actorLossAndGradients(batch, rows: rows)
            if c.maxGradientNorm > 0 {
                statistics.actorGradientNorm = clipGradientNorm(actorParameters, maxNorm: c.maxGradientNorm)
            } else if measuresGradientNorms {
                statistics.actorGradientNorm = gradientNorm(actorParameters)
            }
            actorOptimizer.step()
            statistics.actorLoss = Float(actorLoss)
            if c.algorithm == .sac {
                statistics.entropy = Float(entropy)
                if c.learnTemperature {
                    // d/d(log α) of -log α (log π + H*) averaged: -(E[log π] + H*) = entropy - H*.
                    logTemperature.gradient.data[0] = Float(entropy) - targetEntropy
                    temperatureOptimizer.step()
                }
                statistics.temperature = temperature
            }
            actorUpdates += 1
            if configuration.algorithm == .td3 { updateTargets() }
        }
        if configuration.algorithm == .sac && criticUpdates % configuration.targetUpdateInterval == 0 { updateTargets() }
    }

    /// Builds the context inputs and the loss weights (mask / number of masked steps) of a batch;
    /// returns the number of trained rows, (L - burnIn) · batch.
    func prepare(_ batch: SequenceBatch) -> Int {
        buildContext(batch)
        let L = batch.slots - 1, Bn = configuration.sampler.burnIn, B = batch.batchSize
        copySlots(batch.lossMask(maskNonFinal: configuration.sampler.maskNonFinal), Bn..<L, into: lossMask)
        let rows = (L - Bn) * B
        lossMask.resize(Shape(d0: rows))
        var active: Float = 0
        for r in 0..<rows { active += lossMask.data[r] }
        weights.resize(Shape(d0: rows))
        let scale: Float = active > 0 ? 1 / active : 0
        for r in 0..<rows { weights.data[r] = lossMask.data[r] * scale }
        return rows
    }

    func updateTargets() {
        for (t, s) in zip(criticTargetParameterLists, criticParameterLists) { polyakUpdate(target: t, source: s, tau: configuration.tau) }
        if actorTarget != nil { polyakUpdate(target: actorTargetParameters, source: actorParameters, tau: configuration.tau) }
    }

    /// The critics' loss (summed over critics) and mean Q; fills the critics' gradients.
    func criticLossAndGradients(_ batch: SequenceBatch, rows: Int) -> (loss: Double, meanQ: Double) {
        let c = configuration, L = batch.slots - 1, Bn = c.sampler.burnIn, B = batch.batchSize, A = actionWidth
        let alpha = c.algorithm == .sac ? temperature : 0
        let nextRow = (Bn + 1) * B  // first row of the next view of the trained slots

        // a' at slots Bn+1...L from the current actor (TD3: the target actor).
        let policy = actorTarget ?? actor
        let actorFeatures = policy.encode(context, initialState: storedActorState(batch), resetMask: batch.resetMask, keepActivations: false)
        let out = policy.head(features: actorFeatures, firstRow: nextRow, rows: rows, extra: nil)
        let nextActions = objective.drawNextActions(policyOutput: out, rows: rows, rng: &rng)

        // Target critics: the minimum over critics at each next slot.
        let width = discreteActions ?? 1
        targetMin.resize(Shape(d0: rows, d1: width))
        for (i, target) in criticTargets.enumerated() {
            let features: Tensor
            let firstRow: Int
            if c.sampler.includeFirstStepInTargets || !target.isRecurrent {
                features = target.encode(context, initialState: criticStateColumns(batch.initialCriticState, critic: i),
                                         resetMask: batch.resetMask, keepActivations: false)
                firstRow = nextRow
            } else {
                copySlots(context, 1..<(L + 1), into: contextPart)
                copySlots(batch.resetMask, 1..<(L + 1), into: maskPart)
                features = target.encode(contextPart, initialState: criticStateColumns(batch.targetInitialCriticState, critic: i),
                                         resetMask: maskPart, keepActivations: false)
                firstRow = Bn * B
            }
            let q = target.head(features: features, firstRow: firstRow, rows: rows, extra: nextActions)
            if i == 0 { targetMin.copy(from: q) } else { for j in 0..<(rows * width) { targetMin.data[j] = min(targetMin.data[j], q.data[j]) } }
        }
        // y = r + γ (1 - terminated) V(next).
        targets.resize(Shape(d0: rows, d1: 1))
        for r in 0..<rows {
            let v = objective.nextValue(row: r, minimumQ: targetMin.data + r * width, temperature: alpha)
            let k = Bn * B + r
            targets.data[r] = batch.rewards.data[k] + c.gamma * (1 - batch.terminated.data[k]) * v
        }

        // Online critics: masked squared error of Q(h_t, a_t), back-propagated through time.
        criticOptimizer.zeroGradients()
        var loss: Double = 0, meanQ: Double = 0
        for (i, critic) in critics.enumerated() {
            let features = encodeCurrent(critic, batch: batch, initialState: criticStateColumns(batch.initialCriticState, critic: i),
                                         keepActivations: true)
            let recorded = batch.actions.data + Bn * B * A
            let q = critic.head(features: features, firstRow: 0, rows: rows, extra: discreteActions == nil ? recorded : nil)
            qGradient.resize(Shape(d0: rows, d1: width))
            qGradient.zero()
            for r in 0..<rows where weights.data[r] != 0 {
                let j = discreteActions == nil ? r : r * width + Int(recorded[r])
                let d = q.data[j] - targets.data[r]
                loss += Double(weights.data[r] * d * d)
                meanQ += Double(weights.data[r] * q.data[j]) / Double(critics.count)
                qGradient.data[j] = 2 * weights.data[r] * d
            }
            backward(critic, outputGradient: qGradient, trainedSlots: L - Bn, batch: B)
        }
        return (loss, meanQ)
    }

    /// Head then encoder backward of a network whose last `encodeCurrent` kept activations.
    func backward(_ network: SequenceNetwork, outputGradient: Tensor, trainedSlots T: Int, batch B: Int) {
        network.backward(window: outputGradient, slots: T, batch: B, truncation: configuration.truncation)
    }

    func storedActorState(_ batch: SequenceBatch) -> Matrix? {
        actor.isRecurrent && configuration.sampler.initialState.usesStoredStates ? batch.initialActorState.matrix : nil
    }

    /// The actor's loss and the policy entropy; fills the actor's gradients (the critics only pass
    /// dQ/da through, their gradients stay untouched).
    func actorLossAndGradients(_ batch: SequenceBatch, rows: Int) -> (loss: Double, entropy: Double) {
        let c = configuration, L = batch.slots - 1, Bn = c.sampler.burnIn, B = batch.batchSize
        actorOptimizer.zeroGradients()
        let features = encodeCurrent(actor, batch: batch, initialState: storedActorState(batch), keepActivations: true)
        let out = actor.head(features: features, firstRow: 0, rows: rows, extra: nil)
        parameterGradient.resize(out.shape)
        let (loss, entropy) = objective.actorLoss(policyOutput: out, rows: rows, weights: weights.data,
                                                  temperature: c.algorithm == .sac ? temperature : 0,
                                                  critics: CriticsAtTrainedSlots(agent: self, batch: batch, rows: rows),
                                                  gradient: parameterGradient, rng: &rng)
        backward(actor, outputGradient: parameterGradient, trainedSlots: L - Bn, batch: B)
        return (loss, entropy)
    }
}

/// The online critics over the current batch's trained slots, without gradient into their encoders.
struct CriticsAtTrainedSlots: CriticView {
    unowned let agent: OffPolicyAgent
    let batch: SequenceBatch
    let rows: Int

    var count: Int { agent.critics.count }

    func q(_ i: Int, actions: UnsafePointer<Float>?) -> Tensor {
        let critic = agent.critics[i]
        let f = agent.encodeCurrent(critic, batch: batch, initialState: agent.criticStateColumns(batch.initialCriticState, critic: i),
                                    keepActivations: false)
        return critic.head(features: f, firstRow: 0, rows: rows, extra: actions)
    }

    func actionGradient(_ i: Int, qGradient: Tensor) -> Tensor {
        // The critic's head still holds its activations for these actions.
        agent.critics[i].headBackward(qGradient, needsFeatureGradient: false, needsExtraGradient: true, needsParameterGradients: false)
        return agent.critics[i].extraGradient
    }
}

extension OffPolicyAgent: RecurrentActor {
    public var actorStateWidth: Int { actor.stateWidth }
    public func prepare(observation: UnsafeMutablePointer<Float>) {}
    public func prepare(reward: Float) -> Float { reward }
    public func writeContext(observation: UnsafePointer<Float>, lastAction: UnsafePointer<Float>?, lastReward: Float,
                             into out: UnsafeMutablePointer<Float>) {
        configuration.context.write(observation: observation, observationWidth: observationWidth, lastAction: lastAction,
                                    actionWidth: actionWidth, oneHotOver: discreteActions, lastReward: lastReward, into: out)
    }
}
