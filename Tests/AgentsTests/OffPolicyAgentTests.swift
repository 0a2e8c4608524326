@testable import Agents
import Environments
import NeuralNetworks
import Replay
import Tensors
import TestSupport
import XCTest

/// A replay of random episodes (some terminated) with random stored states.
func makeRandomReplay(layout: ReplayLayout, episodes: [Int], actions: Space, seed: UInt64) -> EpisodeReplay {
    var rng = RandomGenerator(seed: seed)
    let replay = EpisodeReplay(capacity: 10_000, layout: layout)
    let o = layout.observationWidth
    for (e, length) in episodes.enumerated() {
        for t in 0..<length {
            let obs = (0..<o).map { _ in rng.normal() }, next = (0..<o).map { _ in rng.normal() }
            var action = [Float](repeating: 0, count: layout.actionWidth)
            switch actions {
            case .discrete(let n): action[0] = Float(rng.integer(below: n))
            case .box: for j in action.indices { action[j] = rng.uniform(-1, 1) }
            }
            let actorState = (0..<max(layout.actorStateWidth, 1)).map { _ in 0.5 * rng.normal() }
            let criticState = (0..<max(layout.criticStateWidth, 1)).map { _ in 0.5 * rng.normal() }
            let last = t == length - 1
            replay.add(observation: obs, action: action, reward: rng.normal(), nextObservation: next,
                       terminated: last && e % 2 == 0, truncated: last && e % 2 == 1,
                       actorState: actorState, criticState: criticState)
        }
    }
    return replay
}

/// A small recurrent agent (GRU 5, heads [6], batch 3, windows of 6, a 2-float observation) as
/// `configure` changes it, with a replay of random episodes and a sampler for it.
func smallRecurrentAgent(actions: Space, episodes: [Int] = [4, 9, 2, 12, 6], configure: (inout AgentConfiguration) -> Void = { _ in })
    throws -> (agent: OffPolicyAgent, replay: EpisodeReplay, sampler: SequenceSampler) {
    var configuration = AgentConfiguration()
    configuration.network = .gru
    configuration.hiddenSize = 5
    configuration.headHiddenSizes = [6]
    configuration.batchSize = 3
    configuration.sampler.sequenceLength = 6
    configure(&configuration)
    let agent = try OffPolicyAgent(configuration: configuration, observationSpace: .box(low: [-5, -5], high: [5, 5]), actionSpace: actions, seed: 4)
    let replay = makeRandomReplay(layout: agent.replayLayout, episodes: episodes, actions: actions, seed: 8)
    let sampler = SequenceSampler(configuration: configuration.sampler, batchSize: configuration.batchSize, layout: agent.replayLayout, seed: 2)
    return (agent, replay, sampler)
}

/// The off-policy agent alone: its losses' gradients, its targets, its context.
final class OffPolicyAgentTests: XCTestCase {
    struct Case {
        var label: String
        var algorithm: OffPolicyAlgorithm
        var network: NetworkKind
        var actions: Space
        var checksEncoders = true
        var configure: (inout AgentConfiguration) -> Void = { _ in }
    }

    /// Burn-in and truncated BPTT cut gradients on purpose (the burn-in state and the state
    /// every k steps are constants for the update), so finite differences of the full loss only
    /// match their heads; the encoders are checked in the other cases.
    static let cases: [Case] = [
        Case(label: "SAC GRU, stored states, targets from slot 1, full context", algorithm: .sac, network: .gru,
             actions: .box(low: [-1, -1], high: [1, 1])) {
            $0.sampler.initialState = .stored
            $0.sampler.includeFirstStepInTargets = false
            $0.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        },
        Case(label: "SAC LSTM x2, zero state, random lengths, final steps only", algorithm: .sac, network: .lstm, actions: .box(low: [-1], high: [1])) {
            $0.recurrentLayers = 2
            $0.sampler.randomSequenceLength = true
            $0.sampler.maskNonFinal = true
        },
        Case(label: "TD3 GRU", algorithm: .td3, network: .gru, actions: .box(low: [-1], high: [1])),
        Case(label: "discrete SAC GRU, episode starts", algorithm: .sac, network: .gru, actions: .discrete(3)) {
            $0.sampler.alwaysStartAtEpisodeStart = true
        },
        Case(label: "SAC MLP", algorithm: .sac, network: .mlp, actions: .box(low: [-1], high: [1])) {
            $0.sampler.sequenceLength = 1
        },
        Case(label: "SAC GRU, stored+burnIn (heads only)", algorithm: .sac, network: .gru, actions: .box(low: [-1], high: [1]),
             checksEncoders: false) {
            $0.sampler.initialState = .storedBurnIn
            $0.sampler.burnIn = 2
        },
        Case(label: "SAC GRU, one critic with 3 heads, target subset 2, the actor on their mean", algorithm: .sac, network: .gru,
             actions: .box(low: [-1, -1], high: [1, 1])) {
            $0.criticCount = 1
            $0.criticHeads = 3
            $0.targetSubset = 2
            $0.actorQ = .mean
        },
        Case(label: "discrete SAC LSTM, 2 critics x 2 heads, target subset 3, the actor on their mean", algorithm: .sac, network: .lstm,
             actions: .discrete(3)) {
            $0.criticHeads = 2
            $0.targetSubset = 3
            $0.actorQ = .mean
        },
        Case(label: "SAC GRU with RESeL's context encoder, previous observation, action and reward, 2 heads, the actor on their mean", algorithm: .sac,
             network: .gru, actions: .box(low: [-1, -1], high: [1, 1])) {
            $0.contextEncoder = ContextEncoderLayout(inputEmbedding: 3, before: [4], after: 3, projection: 2)
            $0.context = ContextInputs(observation: true, lastObservation: true, lastAction: true, lastReward: true)
            $0.criticCount = 1
            $0.criticHeads = 2
            $0.actorQ = .mean
        },
        Case(label: "discrete SAC LSTM with RESeL's context encoder (two dense layers, no projection)", algorithm: .sac, network: .lstm,
             actions: .discrete(3)) {
            $0.contextEncoder = ContextEncoderLayout(inputEmbedding: 2, before: [4, 3], after: 3, projection: 0)
            $0.context = ContextInputs(observation: true, lastAction: true)
        },
        Case(label: "TD3 LSTM, burn-in from zeros, truncated BPTT (heads only)", algorithm: .td3, network: .lstm,
             actions: .box(low: [-1], high: [1]), checksEncoders: false) {
            $0.sampler.burnIn = 3
            $0.truncation = 2
        },
    ]

    func makeAgent(_ c: Case, seed: UInt64 = 1) throws -> (OffPolicyAgent, EpisodeReplay, SequenceSampler) {
        var configuration = AgentConfiguration()
        configuration.algorithm = c.algorithm
        configuration.network = c.network
        configuration.hiddenSize = 5
        configuration.headHiddenSizes = [6]
        configuration.activation = .tanh  // smooth, for finite differences
        configuration.batchSize = 3
        configuration.sampler.sequenceLength = 7
        configuration.gamma = 0.9
        c.configure(&configuration)
        let agent = try OffPolicyAgent(configuration: configuration, observationSpace: .box(low: [-5, -5, -5], high: [5, 5, 5]),
                                       actionSpace: c.actions, seed: seed)
        let replay = makeRandomReplay(layout: agent.replayLayout, episodes: [4, 9, 2, 12, 6], actions: c.actions, seed: seed + 10)
        let sampler = SequenceSampler(configuration: configuration.sampler, batchSize: 3, layout: agent.replayLayout, seed: seed + 20)
        return (agent, replay, sampler)
    }

    /// The critic loss's gradient, through heads, burn-in, resets, stored states and BPTT, agrees
    /// with finite differences for every critic parameter tensor.
    func testCriticGradientsMatchFiniteDifferences() throws {
        for c in OffPolicyAgentTests.cases {
            let (agent, replay, sampler) = try makeAgent(c)
            checkLossGradients(agent, batch: sampler.sample(from: replay), actor: false, label: c.label, checksEncoders: c.checksEncoders)
        }
    }

    /// The actor loss's gradient (reparameterised tanh-Gaussian, categorical, or deterministic
    /// TD3 policy, through the critics' heads and the actor's BPTT) agrees with finite differences.
    func testActorGradientsMatchFiniteDifferences() throws {
        for c in OffPolicyAgentTests.cases {
            let (agent, replay, sampler) = try makeAgent(c)
            checkLossGradients(agent, batch: sampler.sample(from: replay), actor: true, label: c.label, checksEncoders: c.checksEncoders)
        }
    }

    /// A terminated step's target is its reward; a truncated one adds γ times the next value.
    func testTerminatedAndTruncatedBootstrapDifferently() throws {
        for terminated in [true, false] {
            var configuration = AgentConfiguration()
            configuration.network = .gru
            configuration.batchSize = 2
            configuration.sampler.sequenceLength = 3
            configuration.gamma = 0.9
            let agent = try OffPolicyAgent(configuration: configuration, observationSpace: .box(low: [-1], high: [1]),
                                           actionSpace: .box(low: [-1], high: [1]), seed: 3)
            let replay = EpisodeReplay(capacity: 10, layout: agent.replayLayout)
            replay.add(observation: [0.3], action: [0.1], reward: 2.5, nextObservation: [0.7], terminated: terminated, truncated: !terminated)
            let sampler = SequenceSampler(configuration: configuration.sampler, batchSize: 2, layout: agent.replayLayout, seed: 1)
            let batch = sampler.sample(from: replay)
            let rows = agent.prepare(batch)
            _ = agent.criticLossAndGradients(batch, rows: rows)
            // Row 0 of the trained slots is the step (slot 0) of batch row 0.
            let sac = try XCTUnwrap(agent.objective as? SoftActorCriticObjective)
            let next = agent.targetMin.data[0] - agent.temperature * sac.nextLogProbabilities.data[0]
            XCTAssertNotEqual(next, 0)
            if terminated {
                XCTAssertEqual(agent.targets.data[0], 2.5, "terminated: no bootstrap")
            } else {
                XCTAssertEqual(agent.targets.data[0], 2.5 + 0.9 * next, accuracy: 1e-5, "truncated: bootstrap from the next observation")
            }
        }
    }

    /// A discrete previous action enters the context one-hot (its index has no order), and "no
    /// previous action" at an episode's first step is all zeros, not action 0: in replayed windows,
    /// in acting, and in the trainer.
    func testADiscretePreviousActionIsOneHot() throws {
        var configuration = AgentConfiguration()
        configuration.network = .gru
        configuration.batchSize = 1
        configuration.sampler.sequenceLength = 4
        configuration.sampler.alwaysStartAtEpisodeStart = true
        configuration.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        let agent = try OffPolicyAgent(configuration: configuration, observationSpace: .box(low: [-1], high: [1]),
                                       actionSpace: .discrete(3), seed: 3)
        XCTAssertEqual(agent.contextWidth, 1 + 3 + 1)
        let replay = EpisodeReplay(capacity: 10, layout: agent.replayLayout)
        for (t, a) in [0, 2, 1, 2].enumerated() {
            replay.add(observation: [Float(t) / 10], action: [Float(a)], reward: Float(t), nextObservation: [Float(t + 1) / 10],
                       terminated: t == 3, truncated: false)
        }
        let sampler = SequenceSampler(configuration: configuration.sampler, batchSize: 1, layout: agent.replayLayout, seed: 1)
        let batch = sampler.sample(from: replay)
        agent.buildContext(batch)
        func slot(_ s: Int) -> [Float] { Array(UnsafeBufferPointer(start: agent.context.data + s * 5, count: 5)) }
        XCTAssertEqual(slot(0), [0, 0, 0, 0, 0], "the first step: no previous action, no previous reward")
        XCTAssertEqual(slot(1), [0.1, 1, 0, 0, 0], "previous action 0 is one-hot [1, 0, 0]")
        XCTAssertEqual(slot(2), [0.2, 0, 0, 1, 1])
        XCTAssertEqual(slot(3), [0.3, 0, 1, 0, 2])
        XCTAssertEqual(slot(4), [0.4, 0, 0, 1, 3], "the bootstrap slot sees the last action")
        var out = [Float](repeating: 9, count: 5)
        agent.writeContext(observation: [0.5], lastAction: nil, lastReward: 0, into: &out)
        XCTAssertEqual(out, [0.5, 0, 0, 0, 0])
        agent.writeContext(observation: [0.5], lastAction: [1], lastReward: -1, into: &out)
        XCTAssertEqual(out, [0.5, 0, 1, 0, -1])
    }
    /// Whole episodes packed several to a row give the losses and gradients of the same episodes
    /// one to a row: a reset restarts the state from zeros, padding is masked, and the losses are
    /// means over the valid steps.
    func testPackedRowsGiveTheLossesOfSeparateRows() throws {
        func losses(sequenceLength: Int, batchSize: Int) throws -> (critic: Double, actor: Double, gradients: [[Float]]) {
            let (agent, replay, sampler) = try smallRecurrentAgent(actions: .discrete(3), episodes: [3, 3, 3, 3, 3]) {
                $0.batchSize = batchSize
                $0.sampler.sequenceLength = sequenceLength
                $0.sampler.packEpisodes = true
            }
            let batch = sampler.sample(from: replay)
            var valid: Float = 0
            for k in 0..<batch.validMask.count { valid += batch.validMask.data[k] }
            XCTAssertEqual(valid, 12, "four whole episodes of three steps")
            let rows = agent.prepare(batch)
            let critic = agent.criticLossAndGradients(batch, rows: rows).loss
            let actor = agent.actorLossAndGradients(batch, rows: rows).loss
            let gradients = (agent.criticParameters + agent.actorParameters).map { Array(UnsafeBufferPointer(start: $0.gradient.data, count: $0.gradient.count)) }
            return (critic, actor, gradients)
        }
        let packed = try losses(sequenceLength: 7, batchSize: 2)  // two episodes (3 steps + a bootstrap slot each) per row
        let separate = try losses(sequenceLength: 3, batchSize: 4)  // one per row
        XCTAssertEqual(packed.critic, separate.critic, accuracy: 1e-5 * abs(separate.critic))
        XCTAssertEqual(packed.actor, separate.actor, accuracy: 1e-5 * max(abs(separate.actor), 1e-3))
        XCTAssertNotEqual(separate.critic, 0)
        for (p, q) in zip(packed.gradients, separate.gradients) {
            for (a, b) in zip(p, q) { XCTAssertEqual(a, b, accuracy: 1e-5 + 1e-4 * abs(b)) }
        }
    }
    /// An ensemble's target is the minimum over the Q-functions drawn for the update, a fresh subset
    /// of the asked size each time, every Q-function drawn in turn.
    func testTheEnsembleTargetIsTheMinimumOverTheDrawnSubset() throws {
        let (agent, replay, sampler) = try smallRecurrentAgent(actions: .discrete(3)) {
            $0.criticCount = 2
            $0.criticHeads = 3
            $0.targetSubset = 2
        }
        XCTAssertEqual(agent.qFunctionCount, 6)
        XCTAssertEqual(agent.critics[0].heads.count, 3)
        XCTAssertTrue(agent.namedParameters().contains { $0.name.hasPrefix("critic1.head2.") })
        var drawn = [Int](repeating: 0, count: 6)
        for _ in 0..<40 {
            let batch = sampler.sample(from: replay)
            let rows = agent.prepare(batch)
            _ = agent.criticLossAndGradients(batch, rows: rows)
            let members = (0..<6).filter { agent.targetMembers[$0] }
            XCTAssertEqual(members.count, 2)
            for k in members { drawn[k] += 1 }
            // Every head of the target critics over the next slots, then the minimum over the members.
            let RB = batch.batchSize, nextRow = RB
            var expected = [Float](repeating: .infinity, count: rows * 3)
            for k in members {
                let target = agent.criticTargets[k / 3]
                let features = target.encode(agent.context, initialState: nil, resetMask: batch.resetMask, keepActivations: false)
                let q = target.head(features: features, firstRow: nextRow, rows: rows, extra: nil, index: k % 3)
                for j in 0..<(rows * 3) { expected[j] = min(expected[j], q.data[j]) }
            }
            XCTAssertEqual(Array(UnsafeBufferPointer(start: agent.targetMin.data, count: rows * 3)), expected)
        }
        XCTAssertTrue(drawn.allSatisfy { $0 > 4 }, "every Q-function is drawn: \(drawn)")
    }

    /// The actor's update moves only the actor: no gradient reaches any critic weight (the critics'
    /// encoders included), with one head or an ensemble; and each parameter group moves at its own rate.
    func testTheActorUpdateLeavesTheCriticsAloneAndGroupsLearnAtTheirRates() throws {
        for heads in [1, 4] {
            let (agent, replay, sampler) = try smallRecurrentAgent(actions: .box(low: [-1], high: [1])) {
                $0.hiddenSize = 16
                $0.headHiddenSizes = [32]
                $0.criticCount = 1
                $0.criticHeads = heads
                $0.actorQ = .mean
                $0.actorLearningRate = 1e-3
                $0.encoderLearningRate = 1e-5
            }
            let batch = sampler.sample(from: replay)
            let rows = agent.prepare(batch)
            for p in agent.criticParameters { p.gradient.zero() }
            _ = agent.actorLossAndGradients(batch, rows: rows)
            for p in agent.criticParameters { XCTAssertTrue(p.gradient.array.allSatisfy { $0 == 0 }, "\(heads) heads: a critic weight got an actor gradient") }
            XCTAssertTrue(agent.actor.encoderParameters.contains { $0.gradient.array.contains { $0 != 0 } })
            // One Adam step: every weight moves by about its group's learning rate (Adam's first step is lr · sign(g)).
            let before = agent.actorParameters.map(\.value.array)
            agent.actorOptimizer.step()
            let encoders = Set(agent.actor.encoderParameters.map { ObjectIdentifier($0) })
            for (p, old) in zip(agent.actorParameters, before) {
                let lr: Float = encoders.contains(ObjectIdentifier(p)) ? 1e-5 : 1e-3
                let moved = zip(p.value.array, old).map { abs($0 - $1) }.max() ?? 0
                XCTAssertEqual(moved, lr, accuracy: lr * 0.01, "\(heads) heads: a weight moved by \(moved), its group's rate is \(lr)")
            }
        }
    }

    /// Clamped targets: the first batch's bootstrap values make the range, which then holds every
    /// later value inside it and widens to each batch's targets; a checkpoint keeps it.
    func testClampedTargetsStayInTheRangeSeenSoFar() throws {
        let (agent, replay, sampler) = try smallRecurrentAgent(actions: .discrete(3)) {
            $0.hiddenSize = 16
            $0.headHiddenSizes = [32]
            $0.clampTargets = true
        }
        let gamma = agent.configuration.gamma
        XCTAssertNil(agent.targetRange)
        var previous: ClosedRange<Float>? = nil
        for step in 0..<30 {
            let batch = sampler.sample(from: replay)
            let rows = agent.prepare(batch)
            // The range the values of this update are clamped to (the first update makes it from its own values).
            _ = agent.criticLossAndGradients(batch, rows: rows)
            let range = try XCTUnwrap(agent.targetRange)
            if let previous {
                // Discrete actions: the range only widens.
                XCTAssertLessThanOrEqual(range.lowerBound, previous.lowerBound)
                XCTAssertGreaterThanOrEqual(range.upperBound, previous.upperBound)
            }
            // Every target is r + γ (1 - d) v with v inside the range in force during the update.
            let inForce = previous ?? range
            let Bn = 0, RB = batch.batchSize
            for r in 0..<rows where agent.weights.data[r] != 0 {
                let k = Bn * RB + r
                let discount = gamma * (1 - batch.terminated.data[k])
                guard discount > 0 else { continue }
                let v = (agent.targets.data[r] - batch.rewards.data[k]) / discount
                XCTAssertGreaterThanOrEqual(v, inForce.lowerBound - 1e-4, "update \(step), row \(r)")
                XCTAssertLessThanOrEqual(v, inForce.upperBound + 1e-4, "update \(step), row \(r)")
            }
            previous = range
            agent.update(batch)
            previous = agent.targetRange
        }
        XCTAssertLessThan(try XCTUnwrap(agent.targetRange).lowerBound, try XCTUnwrap(agent.targetRange).upperBound)
    }
    /// RESeL's context encoder: its dense layers, stack and output layer learn at the encoder's rate,
    /// the input embeddings and the observation projection with the head; the names say which is which.
    func testTheContextEncodersPartsLearnAtTheirRates() throws {
        var configuration = AgentConfiguration()
        configuration.network = .gru
        configuration.hiddenSize = 6
        configuration.contextEncoder = ContextEncoderLayout(inputEmbedding: 4, before: [5], after: 3, projection: 2)
        configuration.context = ContextInputs(observation: true, lastAction: true)
        configuration.encoderLearningRate = 1e-5
        let agent = try OffPolicyAgent(configuration: configuration, observationSpace: .box(low: [-5, -5], high: [5, 5]),
                                       actionSpace: .box(low: [-1], high: [1]), seed: 4)
        let names = Dictionary(agent.namedParameters().map { (ObjectIdentifier($0.parameter), $0.name) }) { a, _ in a }
        for (optimizer, network) in [(agent.actorOptimizer, "actor"), (agent.criticOptimizer, "critic")] {
            let groups = Dictionary(optimizer.groups.map { ($0.name, $0) }) { a, _ in a }
            let encoder = try XCTUnwrap(groups["\(network).encoder"]), head = try XCTUnwrap(groups["\(network).head"])
            XCTAssertEqual(encoder.learningRate, 1e-5)
            let encoderNames = encoder.parameters.compactMap { names[ObjectIdentifier($0)] }
            let headNames = head.parameters.compactMap { names[ObjectIdentifier($0)] }
            XCTAssertFalse(encoderNames.isEmpty)
            for name in encoderNames {
                XCTAssertTrue(name.contains(".encoder.before0.") || name.contains(".encoder.rnn.") || name.contains(".encoder.after."), name)
            }
            XCTAssertTrue(headNames.contains { $0.contains(".encoder.embedding1.") }, "the previous action's embedding learns with the head")
            XCTAssertTrue(headNames.contains { $0.contains(".encoder.projection.") })
            if network == "critic" { XCTAssertTrue(headNames.contains { $0.contains(".extra_projection.") }, "the critic's action projection learns with the head") }
            XCTAssertTrue(headNames.contains { $0.contains(".head.") || $0.contains(".head0.") })
        }
        XCTAssertEqual(agent.actor.networks[0].featureWidth, 3 + 2, "the head reads the output layer and the projection")
    }
}
