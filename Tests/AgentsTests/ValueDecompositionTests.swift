@testable import Agents
import Environments
import NeuralNetworks
@testable import Replay
import Tensors
import TestSupport
import XCTest

/// VDN and QMIX: the mixers, the returns, and the TD loss's gradients.
final class ValueDecompositionTests: XCTestCase {
    /// QMIX's mixer: finite differences of Σ_r w_r Q_tot(r) with respect to the agents' Q-values and
    /// every hypernetwork parameter.
    func testMonotonicMixerGradientsMatchFiniteDifferences() {
        var rng = RandomGenerator(seed: 3)
        let N = 3, g = 4, R = 3
        let mixer = MonotonicMixer(agents: N, stateWidth: g, embed: 5, hypernetEmbed: 6, using: &rng)
        for p in mixer.parameters { for i in 0..<p.value.count { p.value.data[i] *= 3 } }
        let q = Tensor([R, N]), states = Tensor([R, g]), w = Tensor([R]), out = Tensor([R]), dq = Tensor([R, N])
        for t in [q, w] { for i in 0..<t.count { t.data[i] = rng.normal() } }
        func loss() -> Double {
            mixer.forward(q: q.data, states: states.data, rows: R, into: out.data)
            return weightedSum(out, w)
        }
        // Finite differences are meaningless across a kink (ReLU in the hypernetworks, the absolute
        // values of the mixing weights): draw states that keep every such input well away from zero.
        func preActivations(_ layer: any Layer) -> [Float] {
            let d = layer as! Dense
            return (0..<R).flatMap { r in (0..<d.outputSize).map { j in
                (0..<g).reduce(d.bias.value.data[j]) { $0 + d.weight.value.data[j * g + $1] * states.data[r * g + $1] }
            } }
        }
        func nearAKink() -> Bool {
            let relus = [mixer.hyperW1.layers[0], mixer.hyperW2.layers[0], mixer.value.layers[0]].flatMap(preActivations)
            let weights = [mixer.hyperW1.layers[1], mixer.hyperW2.layers[1]].flatMap { ($0 as! Dense).output.array }
            return (relus + weights).contains { abs($0) < 0.05 }
        }
        var draws = 0
        repeat {
            for i in 0..<states.count { states.data[i] = rng.normal() }
            _ = loss()
            draws += 1
        } while nearAKink() && draws < 10_000
        XCTAssertLessThan(draws, 10_000)
        for p in mixer.parameters { p.zeroGradient() }
        mixer.backward(totalGradient: w.data, qGradient: dq.data)
        let analyticQ = dq.array, parameters = mixer.namedParameters(prefix: "mixer."), analytic = parameters.map(\.parameter.gradient.array)
        GradientChecker().check("dQ_tot/dq", values: q.data, analytic: analyticQ, rng: &rng, loss: loss)
        for ((name, p), a) in zip(parameters, analytic) {
            GradientChecker().check(name, values: p.value.data, analytic: a, rng: &rng, loss: loss)
        }
    }

    /// QMIX is monotonic in every agent's Q: dQ_tot/dq_k ≥ 0 for random states, Q-values and weights.
    func testMonotonicMixerIsMonotonicInEveryAgent() {
        var rng = RandomGenerator(seed: 4)
        let N = 4, g = 3, R = 200
        let mixer = MonotonicMixer(agents: N, stateWidth: g, embed: 8, hypernetEmbed: 8, using: &rng)
        for p in mixer.parameters { for i in 0..<p.value.count { p.value.data[i] = 2 * rng.normal() } }
        let q = Tensor([R, N]), states = Tensor([R, g]), out = Tensor([R]), ones = Tensor([R]), dq = Tensor([R, N])
        for t in [q, states] { for i in 0..<t.count { t.data[i] = 3 * rng.normal() } }
        ones.fill(1)
        mixer.forward(q: q.data, states: states.data, rows: R, into: out.data)
        mixer.backward(totalGradient: ones.data, qGradient: dq.data)
        XCTAssertTrue(dq.array.allSatisfy { $0 >= 0 }, "every dQ_tot/dq_k is non-negative")
        XCTAssertGreaterThan(dq.array.filter { $0 > 0 }.count, R * N / 2, "and most are positive (not a vacuous check)")
        // Raising one agent's Q never lowers Q_tot.
        let before = out.array
        for r in 0..<R { q.data[r * N + r % N] += 0.5 }
        mixer.forward(q: q.data, states: states.data, rows: R, into: out.data)
        for r in 0..<R { XCTAssertGreaterThanOrEqual(out.data[r], before[r] - 1e-5) }
    }

    /// VDN's Q_tot is exactly the sum, and passes the gradient unchanged to every agent.
    func testSumMixerIsTheExactSum() {
        let mixer = SumMixer(agents: 3)
        let q: [Float] = [0.25, -1.5, 2, 1e-3, 7, -7], dy: [Float] = [0.5, -2]
        var out = [Float](repeating: 0, count: 2), dq = [Float](repeating: 0, count: 6)
        mixer.forward(q: q, states: nil, rows: 2, into: &out)
        XCTAssertEqual(out, [0.25 - 1.5 + 2, 1e-3 + 7 - 7])
        mixer.backward(totalGradient: dy, qGradient: &dq)
        XCTAssertEqual(dq, [0.5, 0.5, 0.5, -2, -2, -2])
    }

    struct Case {
        var label: String
        var algorithm: OffPolicyAlgorithm
        var network: NetworkKind
        var globalState = 0
        var masked = false
        var earlyFinish = false
        var configure: (inout AgentConfiguration) -> Void = { _ in }
    }

    static let cases: [Case] = [
        Case(label: "VDN GRU, shared with ids, one-step", algorithm: .vdn, network: .gru) {
            $0.context = ContextInputs(observation: true, agentID: true)
        },
        Case(label: "QMIX GRU, global state, TD(λ), masks", algorithm: .qmix, network: .gru, globalState: 4, masked: true) {
            $0.context = ContextInputs(observation: true, lastAction: true, agentID: true)
            $0.valueDecomposition!.lambda = 0.7
        },
        Case(label: "QMIX LSTM, joint observation, stored states, 3-step", algorithm: .qmix, network: .lstm) {
            $0.sampler.initialState = .stored
            $0.context = ContextInputs(observation: true, agentID: true)
            $0.valueDecomposition!.nSteps = 3
        },
        Case(label: "VDN one network per agent, stored+burnIn (heads only)", algorithm: .vdn, network: .gru, globalState: 3) {
            $0.actorPerAgent = true
            $0.sampler.initialState = .storedBurnIn
            $0.sampler.burnIn = 2
        },
        Case(label: "QMIX GRU, an agent finishing early, TD(λ)", algorithm: .qmix, network: .gru, globalState: 4, earlyFinish: true) {
            $0.context = ContextInputs(observation: true, agentID: true)
            $0.valueDecomposition!.lambda = 0.5
        },
        Case(label: "VDN MLP", algorithm: .vdn, network: .mlp) {
            $0.sampler.sequenceLength = 1
            $0.context = ContextInputs(observation: true, agentID: true)
        },
    ]

    func makeAgent(_ c: Case, agents: Int = 3, seed: UInt64 = 1) throws -> (OffPolicyAgent, EpisodeReplay, SequenceSampler) {
        var configuration = AgentConfiguration()
        configuration.algorithm = c.algorithm
        configuration.network = c.network
        configuration.hiddenSize = 5
        configuration.headHiddenSizes = [6]
        configuration.activation = .tanh  // smooth, for finite differences
        configuration.batchSize = 3
        configuration.sampler.sequenceLength = 6
        configuration.gamma = 0.9
        configuration.valueDecomposition = ValueDecompositionConfiguration()
        configuration.valueDecomposition!.mixingEmbed = 4
        configuration.valueDecomposition!.hypernetEmbed = 5
        // (The online networks' greedy next actions would make the loss jump wherever an argmax flips
        // under the finite-difference step; the targets' own choice keeps it smooth.)
        configuration.valueDecomposition!.doubleQ = false
        c.configure(&configuration)
        let agent = try OffPolicyAgent(configuration: configuration, observationSpace: .box(low: [-5, -5], high: [5, 5]),
                                       actionSpace: .discrete(4), seed: seed, agents: agents, globalStateWidth: c.globalState,
                                       actionMaskWidth: c.masked ? 4 : 0)
        let replay = makeRandomMultiAgentReplay(layout: agent.replayLayout, episodes: [4, 9, 2, 12, 6], actions: .discrete(4), seed: seed + 10,
                                                earlyFinish: c.earlyFinish)
        let sampler = SequenceSampler(configuration: configuration.sampler, batchSize: 3, layout: agent.replayLayout, seed: seed + 20)
        return (agent, replay, sampler)
    }

    /// The TD loss's gradients with respect to every Q-network parameter (and VDN's, QMIX's agents
    /// through the mixer) against finite differences.
    func testLossGradientsMatchFiniteDifferences() throws {
        for c in ValueDecompositionTests.cases {
            let (agent, replay, sampler) = try makeAgent(c)
            let batch = sampler.sample(from: replay)
            func loss() -> Double { agent.valueDecompositionLossAndGradients(batch).loss }
            _ = loss()
            let parameters = agent.actor.namedParameters(prefix: "actor.")
            let gradients = parameters.map(\.parameter.gradient.array)
            XCTAssertGreaterThan(gradients.flatMap { $0 }.map(abs).max() ?? 0, 1e-4, "\(c.label): not a vacuous check")
            var rng = RandomGenerator(seed: 9)
            let headsOnly = c.label.contains("heads only")
            for ((name, p), analytic) in zip(parameters, gradients) where !headsOnly || !name.contains(".encoder.") {
                GradientChecker(maxEntries: 10).check("\(c.label): \(name)", values: p.value.data, analytic: analytic, rng: &rng, loss: loss)
            }
        }
    }

    /// A two-agent VDN agent with γ = 1/2 and the options given.
    func smallAgent(_ configure: (inout AgentConfiguration) -> Void = { _ in }) throws -> OffPolicyAgent {
        var c = AgentConfiguration()
        c.algorithm = .vdn
        c.hiddenSize = 4
        c.headHiddenSizes = [4]
        c.gamma = 0.5
        c.sampler.sequenceLength = 4
        c.sampler.alwaysStartAtEpisodeStart = true
        c.valueDecomposition = ValueDecompositionConfiguration()
        configure(&c)
        return try OffPolicyAgent(configuration: c, observationSpace: .box(low: [-1], high: [1]), actionSpace: .discrete(2), seed: 1, agents: 2)
    }

    /// The returns of one 3-step episode whose team rewards are 1, 2, 3 (each split over two agents),
    /// with V'(t + 1) = 10, 20, 30, ended by a terminal state or a time-out.
    func returnsOfOneEpisode(_ agent: OffPolicyAgent, terminated: Bool) -> [Float] {
        let replay = EpisodeReplay(capacity: 10, layout: agent.replayLayout)
        for t in 0..<3 {
            let r = Float(t + 1)
            replay.add(observations: [0.1, 0.2], actions: [0, 1], rewards: [0.25 * r, 0.75 * r], nextObservations: [0.3, 0.4],
                       terminated: terminated && t == 2, truncated: !terminated && t == 2)
        }
        let sampler = SequenceSampler(configuration: agent.configuration.sampler, batchSize: 1, layout: agent.replayLayout, seed: 0)
        let batch = sampler.sample(from: replay)
        agent.decomposition.nextTotal.resize(Shape(d0: 3))
        agent.decomposition.nextTotal.data.update(from: [10, 20, 30], count: 3)
        var G = [Float](repeating: .nan, count: 3)
        agent.returns(batch, into: &G)
        return G
    }

    /// TD(λ) by the recursion, by hand (γ = λ = 1/2): after a terminal step nothing is bootstrapped,
    /// after a time-out the value of the last observation is; one-step and n-step returns too.
    func testReturnsAgainstHandComputedValues() throws {
        let lambda = try smallAgent { $0.valueDecomposition!.lambda = 0.5 }
        // Terminated: G2 = 3; G1 = 2 + ½(½·20 + ½·3) = 7.75; G0 = 1 + ½(½·10 + ½·7.75) = 5.4375.
        XCTAssertEqual(returnsOfOneEpisode(lambda, terminated: true), [5.4375, 7.75, 3])
        // Truncated: G2 = 3 + ½·30 = 18; G1 = 2 + ½(10 + 9) = 11.5; G0 = 1 + ½(5 + 5.75) = 6.375.
        XCTAssertEqual(returnsOfOneEpisode(lambda, terminated: false), [6.375, 11.5, 18])
        let oneStep = try smallAgent()
        XCTAssertEqual(returnsOfOneEpisode(oneStep, terminated: true), [1 + 5, 2 + 10, 3])
        XCTAssertEqual(returnsOfOneEpisode(oneStep, terminated: false), [1 + 5, 2 + 10, 3 + 15])
        let twoStep = try smallAgent { $0.valueDecomposition!.nSteps = 2 }
        // G0 = 1 + ½·2 + ¼·20; G1 = 2 + ½·3 (+ ¼·30 after a time-out); G2 = 3 (+ ½·30).
        XCTAssertEqual(returnsOfOneEpisode(twoStep, terminated: true), [7, 3.5, 3])
        XCTAssertEqual(returnsOfOneEpisode(twoStep, terminated: false), [7, 11, 18])
        // The benchmark convention: a time-out is terminal.
        let convention = try smallAgent { $0.valueDecomposition!.lambda = 0.5; $0.sampler.timeLimitsTerminal = true }
        XCTAssertEqual(returnsOfOneEpisode(convention, terminated: false), [5.4375, 7.75, 3])
    }

    /// On random batches (episodes ended by terminal states and time-outs, windows cut by their
    /// length, several windows per row), the recursion's TD(λ) equals the λ-weighted average of the
    /// n-step returns up to the window's end, and n-step returns stop at it: no return crosses from
    /// one window (or episode) into the next.
    func testReturnsEqualTheWeightedAverageOfNStepReturns() throws {
        for (seed, lambda, n) in [(1, Float(0.8), 1), (2, Float(0), 1), (3, Float(1), 1), (4, nil, 3), (5, nil, 1)] as [(UInt64, Float?, Int)] {
            let agent = try smallAgent {
                $0.sampler.sequenceLength = 7
                $0.sampler.alwaysStartAtEpisodeStart = false
                $0.sampler.randomSequenceLength = true
                $0.sampler.burnIn = seed == 4 ? 2 : 0
                $0.gamma = 0.9
                $0.valueDecomposition!.lambda = lambda
                $0.valueDecomposition!.nSteps = n
            }
            let replay = makeRandomMultiAgentReplay(layout: agent.replayLayout, episodes: [4, 9, 2, 12, 6, 1, 3], actions: .discrete(2), seed: seed)
            let sampler = SequenceSampler(configuration: agent.configuration.sampler, batchSize: 5, layout: agent.replayLayout, seed: seed)
            let batch = sampler.sample(from: replay)
            let B = 5, L = 7, Bn = agent.configuration.sampler.burnIn, T = L - Bn, γ: Float = 0.9
            var rng = RandomGenerator(seed: seed)
            agent.decomposition.nextTotal.resize(Shape(d0: T * B))
            for i in 0..<(T * B) { agent.decomposition.nextTotal.data[i] = rng.normal() }
            let V = agent.decomposition.nextTotal.array
            var G = [Float](repeating: .nan, count: T * B)
            agent.returns(batch, into: &G)
            var checked = 0, multiStep = 0
            for b in 0..<B {
                for t in 0..<T {
                    let s = Bn + t
                    guard batch.stepIndices[s * B + b] >= 0 else { continue }
                    // The steps that follow in the same window: the replay's successor, in the next slot, with no reset.
                    var H = 1
                    while s + H < L, let i = Optional(batch.stepIndices[(s + H - 1) * B + b]), !replay.endsEpisode(i),
                          let next = replay.successor(i), batch.stepIndices[(s + H) * B + b] == next, batch.resetMask.data[(s + H) * B + b] == 0 {
                        H += 1
                    }
                    func reward(_ j: Int) -> Float { batch.rewards.data[((s + j) * B + b) * 2] + batch.rewards.data[((s + j) * B + b) * 2 + 1] }
                    func nStep(_ m: Int) -> Float {
                        var g: Float = 0, d: Float = 1
                        for j in 0..<m { g += d * reward(j); d *= γ }
                        let done = replay.terminated(batch.stepIndices[(s + m - 1) * B + b])
                        return g + (done ? 0 : d * V[(t + m - 1) * B + b])
                    }
                    let expected: Float
                    if let λ = lambda {
                        var weighted: Float = 0, w: Float = 1
                        for m in 1..<H { weighted += (1 - λ) * w * nStep(m); w *= λ }
                        expected = weighted + w * nStep(H)
                    } else {
                        expected = nStep(min(n, H))
                    }
                    XCTAssertEqual(G[t * B + b], expected, accuracy: 1e-4 * (1 + abs(expected)), "seed \(seed), row \(b), step \(t)")
                    checked += 1
                    if H > 1 { multiStep += 1 }
                }
            }
            XCTAssertGreaterThan(checked, 10)
            XCTAssertGreaterThan(multiStep, 3, "the windows have several steps (not a vacuous check)")
        }
    }

    /// Burn-in slots only warm the state: the rewards and actions recorded there change neither the
    /// loss nor any gradient.
    func testBurnInStepsCarryNoLoss() throws {
        let c = ValueDecompositionTests.cases.first { $0.label.contains("burnIn") }!
        let (agent, replay, sampler) = try makeAgent(c)
        let batch = sampler.sample(from: replay)
        func run() -> [[Float]] {
            let loss = agent.valueDecompositionLossAndGradients(batch).loss
            return [[Float(loss)]] + (agent.actor.parameters + agent.mixerParameters).map(\.gradient.array)
        }
        let before = run()
        let Bn = agent.configuration.sampler.burnIn, RB = batch.batchSize * agent.agents
        XCTAssertEqual(Bn, 2)
        for k in 0..<(Bn * RB) {
            batch.rewards.data[k] += 5
            batch.actions.data[k] = Float((Int(batch.actions.data[k]) + 1) % 4)
        }
        XCTAssertEqual(run(), before)
        batch.rewards.data[Bn * RB] += 5
        XCTAssertNotEqual(run(), before, "a trained step's reward does change the loss")
    }

    /// QMIX's mixer sees each state entry divided by its largest magnitude in the states trained on so
    /// far: within [-1, 1], reaching ±1 in every entry that is not always 0; VDN sees no state.
    func testTheMixerSeesTheStateScaledToItsLargestMagnitude() throws {
        let c = ValueDecompositionTests.cases.first { $0.label.hasPrefix("QMIX GRU, global state") }!
        let (agent, replay, sampler) = try makeAgent(c)
        let batch = sampler.sample(from: replay)
        XCTAssertEqual(agent.mixerStateScale, [0, 0, 0, 0])
        agent.observeMixerStates(batch)
        let scale = try XCTUnwrap(agent.mixerStateScale), g = 4, B = batch.batchSize, rows = 6 * B
        let states = try XCTUnwrap(agent.mixerStates(batch, fromSlot: 0, into: agent.decomposition.states))
        for j in 0..<g {
            var largest: Float = 0
            for r in 0..<rows where batch.validMask.data[r] != 0 {
                let raw = batch.globalStates.data[r * g + j]
                XCTAssertEqual(states[r * g + j], raw / scale[j], accuracy: 1e-6)
                largest = max(largest, abs(states[r * g + j]))
            }
            XCTAssertEqual(largest, 1, accuracy: 1e-6, "entry \(j) reaches ±1 at its largest")
        }
        let (vdn, _, _) = try makeAgent(ValueDecompositionTests.cases[0])
        XCTAssertNil(vdn.mixerStates(batch, fromSlot: 0, into: vdn.decomposition.states))
    }
}
