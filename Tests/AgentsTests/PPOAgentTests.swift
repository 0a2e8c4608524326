@testable import Agents
import Environments
import NeuralNetworks
import Replay
import Tensors
import TestSupport
import XCTest

/// A rollout of random contents: contexts, actions, collected log-probabilities and values near the
/// current policy's (some far outside the clip range), advantages, returns, episode starts, and
/// random stored states.
///
/// Several agents: a central critic's inputs are random too; with action masks each step rules out
/// a random action other than the one taken; with `inactiveFraction` some steps are of agents that
/// had left (`active` 0).
func makeRandomRollout(agent: PPOAgent, steps T: Int, envs N: Int, seed: UInt64, inactiveFraction: Float = 0) -> RolloutBuffer {
    var rng = RandomGenerator(seed: seed)
    let buffer = RolloutBuffer(steps: T, envs: N, contextWidth: agent.contextWidth, actionWidth: agent.actionWidth,
                               actorStateWidth: agent.actorStateWidth, criticStateWidth: agent.criticStateWidth,
                               criticContextWidth: agent.hasCentralCritic ? agent.criticContextWidth : 0, actionMaskWidth: agent.actionMaskWidth)
    for i in 0..<buffer.contexts.count { buffer.contexts.data[i] = rng.normal() }
    if agent.hasCentralCritic { for i in 0..<buffer.criticContexts.count { buffer.criticContexts.data[i] = rng.normal() } }
    buffer.actionMasks.fill(1)
    for t in 0..<T {
        for n in 0..<N {
            if inactiveFraction > 0 && rng.uniform() < inactiveFraction { buffer.active.data[t * N + n] = 0 }
            if let k = agent.discreteActions {
                buffer.action(t, n)[0] = Float(rng.integer(below: k))
                let m = agent.actionMaskWidth
                if m > 0 {
                    let ruledOut = (Int(buffer.action(t, n)[0]) + 1 + rng.integer(below: m - 1)) % m
                    buffer.actionMasks.data[(t * N + n) * m + ruledOut] = 0
                }
            } else {
                for j in 0..<agent.actionWidth { buffer.action(t, n)[j] = rng.normal() }
            }
            let start = t == 0 || rng.uniform() < 0.15
            buffer.episodeStarts.data[t * N + n] = start ? 1 : 0
            for j in 0..<agent.actorStateWidth { buffer.actorState(t, n)[j] = start ? 0 : 0.5 * rng.normal() }
            for j in 0..<agent.criticStateWidth { buffer.criticState(t, n)[j] = start ? 0 : 0.5 * rng.normal() }
            buffer.advantages.data[t * N + n] = rng.normal()
            buffer.returns.data[t * N + n] = rng.normal()
        }
        buffer.commit()
    }
    // Collected log-probabilities and values: the current ones, moved a little (inside the clip
    // range) or a lot (outside it), so both branches of the clipped objectives are exercised.
    let all = Array(0..<(N * agent.chunkCount(steps: T)))
    agent.gather(buffer, windows: all[...], actorStates: buffer.actorStates, criticStates: buffer.criticStates)
    let out = agent.forwardActor(keepActivations: false)
    let values = agent.forwardCritic(keepActivations: false)
    let R = all.count, perRow = agent.chunkCount(steps: T)
    agent.logProbabilities(out, actionAt: { k in
        agent.rolloutIndex(window: k % R, slot: k / R, perRow: perRow, steps: T, envs: N, active: buffer.active.data).map { UnsafePointer(buffer.actions.data + $0 * agent.actionWidth) }
    }, rows: out.shape[0])
    for k in 0..<out.shape[0] {
        guard let i = agent.rolloutIndex(window: k % R, slot: k / R, perRow: perRow, steps: T, envs: N, active: buffer.active.data) else { continue }
        let far = rng.uniform() < 0.3
        buffer.logProbabilities.data[i] = agent.logProbabilityScratch.data[k] + (far ? (rng.uniform() < 0.5 ? 0.6 : -0.6) : rng.uniform(-0.08, 0.08))
        buffer.values.data[i] = values.data[k] + (far ? 0.8 : rng.uniform(-0.05, 0.05))
    }
    return buffer
}

/// The PPO agent alone: its loss's gradient and its chunks.
final class PPOAgentTests: XCTestCase {
    struct Case {
        var label: String
        var actions: Space
        var checksEncoders = true
        /// Several agents sharing the networks: agents, a central critic's global state width, action masks.
        var agents = 1, globalStateWidth = 0, actionMasks = false, inactiveFraction: Float = 0
        var configure: (inout PPOConfiguration) -> Void = { _ in }
    }

    static let cases: [Case] = [
        Case(label: "discrete LSTM, separate encoders", actions: .discrete(3)),
        Case(label: "continuous GRU, shared encoder, value clipping, entropy bonus, full context", actions: .box(low: [-1, -1], high: [1, 1])) {
            $0.network = .gru
            $0.sharedEncoder = true
            $0.valueClipRange = 0.2
            $0.entropyCoefficient = 0.05
            $0.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        },
        Case(label: "discrete GRU x2, padded chunks, entropy bonus", actions: .discrete(2)) {
            $0.network = .gru
            $0.recurrentLayers = 2
            $0.chunkLength = 4
            $0.minibatchSize = 12
            $0.entropyCoefficient = 0.1
        },
        Case(label: "continuous MLP", actions: .box(low: [-2], high: [2])) {
            $0.network = .mlp
            $0.chunkLength = 1
            $0.minibatchSize = 8
        },
        Case(label: "continuous LSTM, truncated BPTT (heads only)", actions: .box(low: [-1], high: [1]), checksEncoders: false) {
            $0.truncation = 2
        },
        Case(label: "MAPPO: discrete GRU, central critic, agent ids, action masks, agents that left", actions: .discrete(4),
             agents: 3, globalStateWidth: 5, actionMasks: true, inactiveFraction: 0.2) {
            $0.network = .gru
            $0.entropyCoefficient = 0.05
            $0.context = ContextInputs(observation: true, agentID: true)
        },
        Case(label: "IPPO: discrete LSTM, agent ids, action masks", actions: .discrete(3), agents: 2, actionMasks: true) {
            $0.context = ContextInputs(observation: true, lastAction: true, agentID: true)
        },
    ]

    func makeAgent(_ c: Case, seed: UInt64 = 1) throws -> PPOAgent {
        var p = PPOConfiguration()
        p.hiddenSize = 5
        p.headHiddenSizes = [6]
        p.activation = .tanh  // smooth, for finite differences
        p.chunkLength = 7
        p.minibatchSize = 21
        p.entropyCoefficient = 0
        c.configure(&p)
        var masks = 0
        if c.actionMasks, case .discrete(let n) = c.actions { masks = n }
        return try PPOAgent(configuration: p, observationSpace: .box(low: [-5, -5, -5], high: [5, 5, 5]), actionSpace: c.actions, seed: seed,
                            agents: c.agents, globalStateWidth: c.globalStateWidth, actionMaskWidth: masks)
    }

    /// The whole PPO loss (clipped surrogate, value loss with or without clipping, entropy bonus)
    /// has the gradient of finite differences for every parameter tensor, through the heads,
    /// the resets inside chunks and BPTT.
    func testLossGradientsMatchFiniteDifferences() throws {
        for c in PPOAgentTests.cases {
            let agent = try makeAgent(c)
            let T = 10, N = 3
            let buffer = makeRandomRollout(agent: agent, steps: T, envs: N, seed: 7, inactiveFraction: c.inactiveFraction)
            let windows = Array(0..<(N * agent.chunkCount(steps: T)))[...]
            let p = agent.configuration
            func loss() -> Double {
                let r = agent.lossAndGradients(buffer, windows: windows, clipRange: 0.2)
                return r.policyLoss + Double(p.valueCoefficient) * r.valueLoss - Double(p.entropyCoefficient) * r.entropy
            }
            agent.optimizer.zeroGradients()
            let r = agent.lossAndGradients(buffer, windows: windows, clipRange: 0.2)
            XCTAssertGreaterThan(r.clipFraction, 0.1, "\(c.label): some ratios are outside the clip range")
            XCTAssertLessThan(r.clipFraction, 0.9, "\(c.label): some ratios are inside the clip range")
            let parameters = agent.namedParameters()
            let gradients = parameters.map(\.parameter.gradient.array)
            var rng = RandomGenerator(seed: 3)
            for ((name, parameter), analytic) in zip(parameters, gradients) where c.checksEncoders || !name.contains(".encoder.") {
                XCTAssertTrue(analytic.contains { $0 != 0 }, "\(c.label): \(name) gets no gradient")
                GradientChecker(maxEntries: 12).check("\(c.label): \(name)", values: parameter.value.data, analytic: analytic, rng: &rng) {
                    loss()
                }
            }
        }
    }

    /// Chunk outputs equal those of the actor run step by step over the same episode piece alone:
    /// nothing flows across an episode start inside a chunk, and a chunk starting mid-episode
    /// starts from the stored state.
    func testChunksNeverCrossEpisodeBoundaries() throws {
        var p = PPOConfiguration()
        p.network = .lstm
        p.hiddenSize = 6
        p.headHiddenSizes = [5]
        p.chunkLength = 5
        p.minibatchSize = 10
        let agent = try PPOAgent(configuration: p, observationSpace: .box(low: [-9, -9], high: [9, 9]), actionSpace: .discrete(3), seed: 2)
        let T = 12, N = 3
        let buffer = makeRandomRollout(agent: agent, steps: T, envs: N, seed: 11)
        let perRow = agent.chunkCount(steps: T), W = N * perRow
        let all = Array(0..<W)
        agent.gather(buffer, windows: all[...], actorStates: buffer.actorStates, criticStates: buffer.criticStates)
        let out = Tensor(copying: agent.forwardActor(keepActivations: false))
        let C = agent.contextWidth, Sa = agent.actorStateWidth
        let context = Tensor(Shape(d0: 1, d1: 1, d2: C)), state = Tensor(Shape(d0: 1, d1: Sa))
        var worst: Float = 0
        var starts = 0
        for w in 0..<W {
            let n = w / perRow, t0 = (w % perRow) * p.chunkLength
            for t in t0..<min(t0 + p.chunkLength, T) {
                if t == t0 {
                    state.data.update(from: buffer.actorState(t, n), count: Sa)
                } else if buffer.isEpisodeStart(t, n) {
                    state.zero()
                    starts += 1
                }
                context.data.update(from: buffer.context(t, n), count: C)
                let logits = agent.actorStep(context, state: state)
                let k = (t - t0) * W + w
                for j in 0..<3 { worst = max(worst, abs(logits.data[j] - out.data[k * 3 + j])) }
            }
        }
        XCTAssertGreaterThan(starts, 2, "the rollout has episode starts inside chunks")
        XCTAssertLessThan(worst, 1e-5)
    }

    /// Steps of agents that had left the episode weigh nothing: changing what is stored at them
    /// (action, collected log-probability and value, advantage, return) changes no loss and no
    /// gradient, while changing an active step's advantage does.
    func testStepsOfAgentsThatLeftWeighNothing() throws {
        let c = PPOAgentTests.cases.first { $0.inactiveFraction > 0 }!
        let agent = try makeAgent(c)
        let T = 10, N = 3
        let buffer = makeRandomRollout(agent: agent, steps: T, envs: N, seed: 9, inactiveFraction: c.inactiveFraction)
        let windows = Array(0..<(N * agent.chunkCount(steps: T)))[...]
        func run() -> (PPOAgent.MinibatchResult, [[Float]]) {
            agent.optimizer.zeroGradients()
            let r = agent.lossAndGradients(buffer, windows: windows, clipRange: 0.2)
            return (r, agent.namedParameters().map(\.parameter.gradient.array))
        }
        let (before, gradients) = run()
        var rng = RandomGenerator(seed: 4), changed = 0
        for i in 0..<(T * N) where buffer.active.data[i] == 0 {
            buffer.actions.data[i] = Float((Int(buffer.actions.data[i]) + 1) % 4)
            buffer.logProbabilities.data[i] += 3
            buffer.values.data[i] = rng.normal()
            buffer.advantages.data[i] = 10 * rng.normal()
            buffer.returns.data[i] = 10 * rng.normal()
            changed += 1
        }
        XCTAssertGreaterThan(changed, 3)
        let (after, gradientsAfter) = run()
        XCTAssertEqual(before.policyLoss, after.policyLoss)
        XCTAssertEqual(before.valueLoss, after.valueLoss)
        XCTAssertEqual(before.entropy, after.entropy)
        XCTAssertEqual(gradients, gradientsAfter)
        let active = (0..<(T * N)).first { buffer.active.data[$0] != 0 }!
        buffer.advantages.data[active] += 5
        XCTAssertNotEqual(run().0.policyLoss, before.policyLoss, "an active step's advantage counts")
    }

    /// Masked actions have probability exactly 0: never sampled when acting, no share of the
    /// entropy, and no gradient through their logits.
    func testMaskedActionsAreNeverTakenAndCarryNoGradient() throws {
        let c = PPOAgentTests.cases.first { $0.actionMasks && $0.agents == 3 }!
        let agent = try makeAgent(c)
        let B = 64, n = 4
        var rng = RandomGenerator(seed: 5)
        let context = Tensor(Shape(d0: 1, d1: B, d2: agent.contextWidth))
        for i in 0..<context.count { context.data[i] = rng.normal() }
        let masks = Tensor(Shape(d0: B, d1: n))
        masks.fill(1)
        for r in 0..<B { masks.data[r * n + rng.integer(below: n)] = 0; masks.data[r * n + rng.integer(below: n)] = 0 }
        let state = Tensor(Shape(d0: B, d1: agent.actorStateWidth)), critic = Tensor(Shape(d0: B, d1: agent.criticStateWidth))
        let criticContext = Tensor(Shape(d0: 1, d1: B, d2: agent.criticContextWidth))
        var actions = [Float](repeating: 0, count: B), logp = actions, values = actions
        for _ in 0..<20 {
            agent.act(context: context, criticContext: criticContext, actorState: state, criticState: critic, actionMasks: masks.data,
                      actions: &actions, logProbabilities: &logp, values: &values)
            for r in 0..<B { XCTAssertEqual(masks.data[r * n + Int(actions[r])], 1, "row \(r) took a masked action") }
            agent.act(context: context, state: state, deterministic: true, actionMasks: masks.data, actions: &actions)
            for r in 0..<B { XCTAssertEqual(masks.data[r * n + Int(actions[r])], 1, "row \(r): the mode is an available action") }
        }
        // Training: the head's gradient at masked logits is 0.
        let T = 10, N = 3
        let buffer = makeRandomRollout(agent: agent, steps: T, envs: N, seed: 3)
        let windows = Array(0..<(N * agent.chunkCount(steps: T)))[...]
        agent.optimizer.zeroGradients()
        _ = agent.lossAndGradients(buffer, windows: windows, clipRange: 0.2)
        let perRow = agent.chunkCount(steps: T), R = windows.count
        var maskedLogits = 0
        for k in 0..<agent.headGradient.shape[0] {
            guard let i = agent.rolloutIndex(window: k % R, slot: k / R, perRow: perRow, steps: T, envs: N, active: buffer.active.data) else { continue }
            for j in 0..<n where buffer.actionMasks.data[i * n + j] == 0 {
                XCTAssertEqual(agent.headGradient.data[k * n + j], 0)
                XCTAssertEqual(agent.probabilities.data[k * n + j], 0)
                maskedLogits += 1
            }
        }
        XCTAssertGreaterThan(maskedLogits, 10)
    }

    /// With an encoder learning rate the recurrent encoders are their own Adam group: on the first
    /// step (the same weights and gradients) the heads move exactly as with one rate, and the
    /// encoders move a tenth as far at a tenth of the rate.
    func testTheEncodersLearnAtTheirOwnRate() throws {
        func firstStep(encoderRate: Float) throws -> (heads: [Float], encoders: [Float]) {
            var p = PPOConfiguration()
            p.network = .gru
            p.hiddenSize = 5
            p.headHiddenSizes = [6]
            p.chunkLength = 5
            p.minibatchSize = 10
            p.learningRate = 1e-3
            p.encoderLearningRate = encoderRate
            let agent = try PPOAgent(configuration: p, observationSpace: .box(low: [-5, -5, -5], high: [5, 5, 5]), actionSpace: .discrete(3), seed: 1)
            let buffer = makeRandomRollout(agent: agent, steps: 10, envs: 2, seed: 7)
            let before = agent.namedParameters().map(\.parameter.value.array)
            agent.optimizer.zeroGradients()
            _ = agent.lossAndGradients(buffer, windows: Array(0..<(2 * agent.chunkCount(steps: 10)))[...], clipRange: 0.2)
            agent.optimizer.step()
            var heads: [Float] = [], encoders: [Float] = []
            for ((name, parameter), old) in zip(agent.namedParameters(), before) {
                let moved = zip(parameter.value.array, old).map { $0 - $1 }
                if name.contains(".encoder.") { encoders += moved } else { heads += moved }
            }
            return (heads, encoders)
        }
        let same = try firstStep(encoderRate: 1e-3), slow = try firstStep(encoderRate: 1e-4)
        XCTAssertEqual(same.heads, slow.heads)
        XCTAssertGreaterThan(same.encoders.map(abs).max()!, 1e-4)
        for (a, b) in zip(same.encoders, slow.encoders) { XCTAssertEqual(b, a / 10, accuracy: 1e-3 * abs(a) + 1e-9) }
    }
}
