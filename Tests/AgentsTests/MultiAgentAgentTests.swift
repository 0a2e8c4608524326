@testable import Agents
import Environments
import NeuralNetworks
import Replay
import Tensors
import TestSupport
import XCTest

/// A multi-agent replay of random episodes (some terminated): every agent's observation, action,
/// reward and stored state, and a global state. `earlyFinish`: the last agent leaves every episode of
/// 4 steps or more at its second step (inactive afterwards, with reward 0).
func makeRandomMultiAgentReplay(layout: ReplayLayout, episodes: [Int], actions: Space, seed: UInt64,
                                earlyFinish: Bool = false) -> EpisodeReplay {
    var rng = RandomGenerator(seed: seed)
    let replay = EpisodeReplay(capacity: 10_000, layout: layout)
    let N = layout.agents
    func normals(_ n: Int, _ scale: Float = 1) -> [Float] { (0..<n).map { _ in scale * rng.normal() } }
    for (e, length) in episodes.enumerated() {
        for t in 0..<length {
            var action = [Float](repeating: 0, count: layout.actionFloats)
            for k in 0..<N {
                switch actions {
                case .discrete(let n): action[k] = Float(rng.integer(below: n))
                case .box: for j in 0..<layout.actionWidth { action[k * layout.actionWidth + j] = rng.uniform(-1, 1) }
                }
            }
            // Masks (when stored): each action available with probability 1/2, the recorded one always, at least one per agent.
            func masks(including recorded: [Float]?) -> [Float] {
                let m = layout.actionMaskWidth
                var mask = [Float](repeating: 0, count: max(N * m, 1))
                for k in 0..<N where m > 0 {
                    for j in 0..<m { mask[k * m + j] = rng.uniform() < 0.5 ? 1 : 0 }
                    mask[k * m + (recorded.map { Int($0[k]) } ?? rng.integer(below: m))] = 1
                }
                return mask
            }
            let last = t == length - 1
            var active = [Float](repeating: 1, count: N), finished = [Float](repeating: 0, count: N)
            var rewards = normals(N)
            if earlyFinish && length >= 4 {
                if t == 1 { finished[N - 1] = 1 }
                if t > 1 { active[N - 1] = 0; rewards[N - 1] = 0 }
            }
            replay.add(observations: normals(layout.observationFloats), actions: action, rewards: rewards,
                       nextObservations: normals(layout.observationFloats), terminated: last && e % 2 == 0, truncated: last && e % 2 == 1,
                       actorStates: normals(max(layout.actorStateFloats, 1), 0.5), criticState: normals(max(layout.criticStateWidth, 1), 0.5),
                       globalState: normals(max(layout.globalStateWidth, 1)), nextGlobalState: normals(max(layout.globalStateWidth, 1)),
                       actionMask: masks(including: action), nextActionMask: masks(including: nil), active: active, finished: finished)
        }
    }
    return replay
}

/// MASAC's losses: their gradients against finite differences, and what its critics see.
final class MultiAgentAgentTests: XCTestCase {
    struct Case {
        var label: String
        var network: NetworkKind
        var actions: Space
        var globalState = 0
        var checksEncoders = true
        /// Discrete actions masked (random masks stored in the replay).
        var masked = false
        /// The last agent leaves most episodes early (`makeRandomMultiAgentReplay`).
        var earlyFinish = false
        var configure: (inout AgentConfiguration) -> Void = { _ in }
    }

    static let cases: [Case] = [
        Case(label: "MASAC discrete GRU, global state, stored states, full context", network: .gru, actions: .discrete(3), globalState: 5) {
            $0.sampler.initialState = .stored
            $0.context = ContextInputs(observation: true, lastAction: true, lastReward: true, agentID: true)
        },
        Case(label: "MASAC continuous GRU, joint observation, targets from slot 1", network: .gru, actions: .box(low: [-1, -1], high: [1, 1])) {
            $0.sampler.includeFirstStepInTargets = false
            $0.context = ContextInputs(observation: true, agentID: true)
        },
        Case(label: "MASAC continuous LSTM, global state, final steps only", network: .lstm, actions: .box(low: [-1], high: [1]), globalState: 4) {
            $0.sampler.maskNonFinal = true
            $0.sampler.initialState = .stored
            $0.context = ContextInputs(observation: true, lastAction: true, agentID: true)
        },
        Case(label: "MASAC discrete MLP", network: .mlp, actions: .discrete(4)) {
            $0.sampler.sequenceLength = 1
            $0.context = ContextInputs(observation: true, agentID: true)
        },
        Case(label: "MASAC independent critics, continuous GRU", network: .gru, actions: .box(low: [-1], high: [1]), globalState: 3) {
            $0.criticInput = .independent
            $0.context = ContextInputs(observation: true, lastAction: true, agentID: true)
        },
        Case(label: "MASAC independent critics, discrete LSTM", network: .lstm, actions: .discrete(3)) {
            $0.criticInput = .independent
            $0.sampler.initialState = .stored
            $0.context = ContextInputs(observation: true, agentID: true)
        },
        Case(label: "MASAC continuous GRU, stored+burnIn (heads only)", network: .gru, actions: .box(low: [-1], high: [1]), globalState: 3,
             checksEncoders: false) {
            $0.sampler.initialState = .storedBurnIn
            $0.sampler.burnIn = 2
            $0.context = ContextInputs(observation: true, agentID: true)
        },
        // (Other agents' actions drawn from the current policy make the loss jump wherever a draw flips
        // under the finite-difference step, so these cases take them from the replay.)
        Case(label: "MASAC one actor per agent, discrete GRU, stored states", network: .gru, actions: .discrete(3), globalState: 4) {
            $0.actorPerAgent = true
            $0.sampler.initialState = .stored
            $0.context = ContextInputs(observation: true, lastAction: true)
        },
        Case(label: "MASAC one actor per agent, continuous LSTM, targets from slot 1", network: .lstm, actions: .box(low: [-1, -1], high: [1, 1])) {
            $0.actorPerAgent = true
            $0.sampler.includeFirstStepInTargets = false
        },
        Case(label: "MASAC one actor per agent, discrete MLP", network: .mlp, actions: .discrete(4)) {
            $0.actorPerAgent = true
            $0.sampler.sequenceLength = 1
        },
        Case(label: "MASAC agent-specific critics, continuous GRU, last action", network: .gru, actions: .box(low: [-1], high: [1]), globalState: 3) {
            $0.criticInput = .agentSpecific
            $0.context = ContextInputs(observation: true, lastAction: true, agentID: true)
        },
        Case(label: "MASAC discrete GRU, action masks", network: .gru, actions: .discrete(4), globalState: 3, masked: true) {
            $0.sampler.initialState = .stored
            $0.context = ContextInputs(observation: true, lastAction: true, agentID: true)
        },
        Case(label: "MASAC discrete GRU, an agent finishing early, stored states", network: .gru, actions: .discrete(3), globalState: 4,
             earlyFinish: true) {
            $0.sampler.initialState = .stored
            $0.context = ContextInputs(observation: true, agentID: true)
        },
        Case(label: "MASAC continuous LSTM, an agent finishing early, joint observation", network: .lstm, actions: .box(low: [-1, -1], high: [1, 1]),
             earlyFinish: true) {
            $0.context = ContextInputs(observation: true, lastAction: true, agentID: true)
        },
        // Recurrent actors beside MLP critics (the critics read each step's global state or joint
        // observation alone; the stored states are the actor's only).
        Case(label: "MASAC discrete GRU actors, MLP critics, global state, stored states", network: .gru, actions: .discrete(3), globalState: 5) {
            $0.criticNetwork = .mlp
            $0.sampler.initialState = .stored
            $0.context = ContextInputs(observation: true, lastAction: true, agentID: true)
        },
        Case(label: "MASAC continuous LSTM actors, MLP critics, joint observation, targets from slot 1", network: .lstm,
             actions: .box(low: [-1, -1], high: [1, 1])) {
            $0.criticNetwork = .mlp
            $0.sampler.includeFirstStepInTargets = false
            $0.context = ContextInputs(observation: true, agentID: true)
        },
    ]

    func makeAgent(_ c: Case, agents: Int = 3, seed: UInt64 = 1) throws -> (OffPolicyAgent, EpisodeReplay, SequenceSampler) {
        var configuration = AgentConfiguration()
        configuration.algorithm = .masac
        configuration.network = c.network
        configuration.hiddenSize = 5
        configuration.headHiddenSizes = [6]
        configuration.activation = .tanh  // smooth, for finite differences
        configuration.batchSize = 3
        configuration.sampler.sequenceLength = 6
        configuration.gamma = 0.9
        configuration.initialTemperature = 0.7
        c.configure(&configuration)
        let agent = try OffPolicyAgent(configuration: configuration, observationSpace: .box(low: [-5, -5], high: [5, 5]),
                                       actionSpace: c.actions, seed: seed, agents: agents, globalStateWidth: c.globalState,
                                       actionMaskWidth: { if case .discrete(let n) = c.actions, c.masked { return n } else { return 0 } }())
        // Different temperatures per agent, so that a row given another agent's would show.
        for k in 0..<agents { agent.logTemperature.value.data[k] = Float(k) * 0.3 - 0.4 }
        let replay = makeRandomMultiAgentReplay(layout: agent.replayLayout, episodes: [4, 9, 2, 12, 6], actions: c.actions, seed: seed + 10,
                                                earlyFinish: c.earlyFinish)
        let sampler = SequenceSampler(configuration: configuration.sampler, batchSize: 3, layout: agent.replayLayout, seed: seed + 20)
        return (agent, replay, sampler)
    }

    /// One actor per agent: agent k's rows go through network k alone, exactly as that network run
    /// by itself on those rows (actions, states and the window pass), and no other network's weights
    /// change them.
    func testOneActorPerAgentRunsEachAgentThroughItsOwnNetwork() throws {
        for network in [NetworkKind.gru, .lstm, .mlp] {
            var c = Self.cases[network == .mlp ? 9 : 7]
            c.network = network
            if network == .lstm { c.configure = { $0.actorPerAgent = true; $0.sampler.initialState = .stored } }
            let (agent, replay, sampler) = try makeAgent(c)
            XCTAssertEqual(agent.actor.networks.count, 3)
            XCTAssertEqual(Set(agent.namedParameters().map(\.name).filter { $0.hasPrefix("actor.") }.map { $0.split(separator: ".")[1] }),
                           ["agent0", "agent1", "agent2"])
            let batch = sampler.sample(from: replay)
            let rows = agent.prepare(batch)
            let combined = agent.encodeCurrentActor(batch, keepActivations: false)
            let out = agent.actor.head(features: combined, firstRow: 0, rows: rows).array
            let R = batch.batchSize * 3, L = batch.slots - 1, C = agent.contextWidth, P = out.count / rows
            for k in 0..<3 {
                // Network k alone on agent k's rows of the window.
                let alone = agent.actor.networks[k]
                let context = Tensor(Shape(d0: L + 1, d1: batch.batchSize, d2: C)), mask = Tensor(Shape(d0: L + 1, d1: batch.batchSize))
                for s in 0..<(L + 1) {
                    for b in 0..<batch.batchSize {
                        (context.data + (s * batch.batchSize + b) * C).update(from: agent.context.data + ((s * R) + b * 3 + k) * C, count: C)
                        mask.data[s * batch.batchSize + b] = agent.rowResetMask(batch).data[s * R + b * 3 + k]
                    }
                }
                let state = agent.storedActorState(batch).map {
                    Matrix($0.base + k * $0.stride, rows: batch.batchSize, columns: $0.columns, stride: 3 * $0.stride)
                }
                let features = alone.encode(window: context, resetMask: mask, slots: 0..<L, burnIn: 0, initialState: state, keepActivations: false)
                let own = alone.head(features: features, firstRow: 0, rows: rows / 3, extra: nil).array
                for j in 0..<(rows / 3) {
                    XCTAssertEqual(Array(out[((j * 3 + k) * P)..<((j * 3 + k + 1) * P)]), Array(own[(j * P)..<((j + 1) * P)]), "\(network) agent \(k) row \(j)")
                }
            }
            // Changing agent 1's network changes only agent 1's rows.
            for p in agent.actor.networks[1].parameters { for i in 0..<p.value.count { p.value.data[i] += 0.25 } }
            let changed = agent.actor.head(features: agent.encodeCurrentActor(batch, keepActivations: false), firstRow: 0, rows: rows).array
            for r in 0..<rows {
                let same = Array(out[(r * P)..<((r + 1) * P)]) == Array(changed[(r * P)..<((r + 1) * P)])
                XCTAssertEqual(same, r % 3 != 1, "\(network) row \(r)")
            }
        }
    }

    /// Masked actions: never chosen (sampled or deterministic), no probability in the targets or the
    /// actor's loss, so their logits get no gradient.
    func testMaskedActionsAreNeverChosenNorLearned() throws {
        let c = Self.cases.first { $0.masked }!
        XCTAssertTrue(c.masked)
        let (agent, replay, sampler) = try makeAgent(c)
        XCTAssertEqual(agent.replayLayout.actionMaskWidth, 4)
        // Acting: 3 episodes of 3 agents, each row with its own mask.
        let E = 9, C = agent.contextWidth
        let context = Tensor(Shape(d0: 1, d1: E, d2: C)), state = Tensor(Shape(d0: E, d1: agent.actorStateWidth))
        var rng = RandomGenerator(seed: 3)
        var mask = [Float](repeating: 0, count: E * 4), actions = [Float](repeating: 0, count: E)
        for trial in 0..<200 {
            for j in 0..<(E * C) { context.data[j] = rng.normal() }
            for r in 0..<E { for j in 0..<4 { mask[r * 4 + j] = rng.uniform() < 0.4 ? 1 : 0 }; mask[r * 4 + rng.integer(below: 4)] = 1 }
            agent.act(context: context, state: state, deterministic: trial % 2 == 0, actionMasks: mask, actions: &actions)
            for r in 0..<E { XCTAssertEqual(mask[r * 4 + Int(actions[r])], 1, "trial \(trial) row \(r) chose a masked action") }
        }
        // Updates: the actor's logit gradient is 0 at masked actions of trained rows.
        let batch = sampler.sample(from: replay)
        let rows = agent.prepare(batch)
        _ = agent.actorLossAndGradients(batch, rows: rows)
        let Bn = agent.configuration.sampler.burnIn, RB = batch.batchSize * 3
        var masked = 0
        for r in 0..<rows {
            for j in 0..<4 where batch.actionMasks.data[(Bn * RB + r) * 4 + j] == 0 {
                XCTAssertEqual(agent.parameterGradient.data[r * 4 + j], 0, "row \(r) action \(j)")
                masked += 1
            }
        }
        XCTAssertGreaterThan(masked, 10)
    }

    /// The critics' loss over every agent's rows (centralised input, own and others' actions, per-agent
    /// rewards and temperatures) has the gradient of finite differences.
    func testCriticGradientsMatchFiniteDifferences() throws {
        for c in MultiAgentAgentTests.cases {
            let (agent, replay, sampler) = try makeAgent(c)
            let batch = sampler.sample(from: replay)
            XCTAssertEqual(agent.prepare(batch), 3 * 3 * (agent.configuration.sampler.sequenceLength - agent.configuration.sampler.burnIn), c.label)
            checkLossGradients(agent, batch: batch, actor: false, label: c.label, checksEncoders: c.checksEncoders, maxEntries: 10)
        }
    }

    /// The actor's loss (each row moving only its own agent's action, the others' from the replay)
    /// has the gradient of finite differences; each agent's entropy is the mean over its own rows.
    func testActorGradientsMatchFiniteDifferences() throws {
        for c in MultiAgentAgentTests.cases {
            let (agent, replay, sampler) = try makeAgent(c)
            let batch = sampler.sample(from: replay)
            checkLossGradients(agent, batch: batch, actor: true, label: c.label, checksEncoders: c.checksEncoders, maxEntries: 10)
            // The per-agent sums, scaled by the agents, average to the whole batch's entropy.
            let rows = agent.prepare(batch)
            let (_, entropy) = agent.actorLossAndGradients(batch, rows: rows)
            let perAgent = (0..<3).map { agent.agentEntropies[$0] }
            XCTAssertEqual(perAgent.reduce(0, +), entropy, accuracy: 1e-9 + abs(entropy) * 1e-9, c.label)
        }
    }

    /// Agent k's centralised critic sees the joint action: changing another agent's recorded action
    /// changes agent k's Q, and changing the global state changes it too.
    func testTheCentralisedCriticSeesTheJointActionAndTheGlobalState() throws {
        for c in [MultiAgentAgentTests.cases[0], MultiAgentAgentTests.cases[2]] {
            let (agent, replay, sampler) = try makeAgent(c)
            let batch = sampler.sample(from: replay)
            let rows = agent.prepare(batch)
            func q() -> [Float] {
                let critic = agent.critics[0]
                let f = agent.encodeCurrent(critic, batch: batch, initialState: agent.criticStateColumns(batch.initialCriticState, critic: 0),
                                            keepActivations: false)
                let recorded = batch.actions.data + agent.configuration.sampler.burnIn * batch.batchSize * 3 * agent.actionWidth
                let extra = agent.criticExtra(recorded, active: batch.agentActive.data + agent.configuration.sampler.burnIn * batch.batchSize * 3,
                                              rows: rows, into: agent.recordedExtra)
                return critic.head(features: f, firstRow: 0, rows: rows, extra: extra).array
            }
            let before = q()
            // Agent 2's action at batch row 0, first trained slot: agent 0's Q there must move.
            let slot = agent.configuration.sampler.burnIn, k = slot * batch.batchSize * 3 + 2
            let width = agent.discreteActions ?? 1
            switch c.actions {
            case .discrete(let n): batch.actions.data[k] = Float((Int(batch.actions.data[k]) + 1) % n)
            case .box: batch.actions.data[k * agent.actionWidth] = -batch.actions.data[k * agent.actionWidth] + 0.5
            }
            let after = q()
            let row0 = slot * 0 + 0  // trained row of (slot, batch row 0, agent 0)
            XCTAssertNotEqual(Array(before[(row0 * width)..<(row0 * width + width)]), Array(after[(row0 * width)..<(row0 * width + width)]), c.label)
            // Agent 2's own Q at that step moves too in the continuous case (its own action); agent 1's
            // Q at another batch row does not.
            let other = (1 * 3 + 1) * width
            XCTAssertEqual(Array(before[other..<(other + width)]), Array(after[other..<(other + width)]), c.label)
            // The global state.
            batch.globalStates.data[slot * batch.batchSize * agent.globalStateWidth] += 1
            _ = agent.prepare(batch)
            let moved = q()
            XCTAssertNotEqual(Array(after[0..<width]), Array(moved[0..<width]), "\(c.label): the global state enters the critic")
        }
    }

    /// `criticNetwork` builds the critics apart from the actor: MLP critics beside a recurrent actor
    /// read each step's input directly and keep no state (the replay stores the actor's alone).
    func testMLPCriticsBesideRecurrentActors() throws {
        let c = MultiAgentAgentTests.cases.first { $0.label.hasPrefix("MASAC discrete GRU actors, MLP critics") }!
        let (agent, _, _) = try makeAgent(c)
        XCTAssertTrue(agent.actor.isRecurrent)
        XCTAssertTrue(agent.critics.allSatisfy { !$0.isRecurrent } && agent.criticTargets.allSatisfy { !$0.isRecurrent })
        XCTAssertEqual(agent.criticStateWidth, 0)
        XCTAssertEqual(agent.replayLayout.criticStateWidth, 0)
        XCTAssertGreaterThan(agent.replayLayout.actorStateFloats, 0)
        XCTAssertEqual(agent.critics[0].featureWidth, agent.criticContextWidth)
    }

    /// Independent critics see only their own agent: its context and its action, nothing of the others.
    func testIndependentCriticsSeeOnlyTheirOwnAgent() throws {
        let c = MultiAgentAgentTests.cases.first { $0.label.hasPrefix("MASAC independent critics, continuous") }!
        let (agent, _, _) = try makeAgent(c)
        XCTAssertTrue(agent.sharesContext)
        XCTAssertEqual(agent.globalStateWidth, 0)
        XCTAssertEqual(agent.critics[0].contextWidth, agent.contextWidth)
        XCTAssertEqual(agent.critics[0].extraWidth, agent.actionWidth)
        XCTAssertEqual(agent.replayLayout.globalStateWidth, 0)
    }

    /// An agent that left its episode early (the last one, at its second step): its later rows weigh
    /// nothing in either loss and the others' critics see no action of it there; its target at the
    /// step it left is its reward alone. Changing what it was recorded doing after it left (its
    /// rewards; its actions and observations where no other agent's input holds them) changes no loss
    /// and no gradient, while the same change at a step where it was active does.
    func testAnAgentThatFinishedEarlyHasNoLossAndNoFuture() throws {
        for c in MultiAgentAgentTests.cases where c.earlyFinish {
            let (agent, replay, sampler) = try makeAgent(c)
            let N = 3, o = 2, a = agent.actionWidth, samplerStart = sampler.rng, agentStart = agent.rng
            func run() -> (batch: SequenceBatch, rows: Int, values: [[Float]]) {
                sampler.rng = samplerStart
                let batch = sampler.sample(from: replay)
                agent.rng = agentStart
                let rows = agent.prepare(batch)
                let (criticLoss, _) = agent.criticLossAndGradients(batch, rows: rows)
                let (actorLoss, _) = agent.actorLossAndGradients(batch, rows: rows)
                var values = [[Float(criticLoss), Float(actorLoss)]]
                values += agent.critics.flatMap(\.parameters).map(\.gradient.array) + agent.actor.parameters.map(\.gradient.array)
                return (batch, rows, values)
            }
            let (batch, rows, before) = run()
            let RB = batch.batchSize * N, first = agent.configuration.sampler.burnIn * RB
            var inactiveRows = 0, finishes = 0, total: Float = 0
            for r in 0..<rows {
                total += agent.weights.data[r]
                if batch.validMask.data[(first + r) / N] != 0 && batch.agentActive.data[first + r] == 0 {
                    inactiveRows += 1
                    XCTAssertEqual(agent.weights.data[r], 0, "\(c.label): an inactive row weighs nothing")
                }
                if batch.agentFinished.data[first + r] != 0 {
                    finishes += 1
                    XCTAssertEqual(agent.targets.data[r], batch.rewards.data[first + r], "\(c.label): no future after the agent's own end")
                }
            }
            XCTAssertEqual(total, 1, accuracy: 1e-5)
            XCTAssertGreaterThan(inactiveRows, 3, "\(c.label): the check is not vacuous")
            XCTAssertGreaterThan(finishes, 0, "\(c.label): the check is not vacuous")
            // What the finished agent was recorded doing after it left.
            let changesActions = !agent.configuration.context.lastAction, changesObservations = agent.globalStateWidth > 0
            func perturb(whereActive active: Bool) {
                for offset in 0..<replay.count {
                    let i = replay.index(offset)
                    guard (replay.activity(i)[N - 1] != 0) == active else { continue }
                    replay.rewards(i)[N - 1] += 0.7
                    if changesActions {
                        if let n = agent.discreteActions { replay.action(i)[(N - 1) * a] = Float((Int(replay.action(i)[(N - 1) * a]) + 1) % n) }
                        else { replay.action(i)[(N - 1) * a] *= -0.5 }
                    }
                    if changesObservations { replay.observation(i)[(N - 1) * o] += 1 }
                }
            }
            perturb(whereActive: false)
            XCTAssertEqual(run().values, before, "\(c.label): an agent's steps after it left change nothing")
            perturb(whereActive: true)
            XCTAssertNotEqual(run().values, before, "\(c.label): its active steps do")
        }
    }

    /// Agent-specific critics: agent k's critic input is its own observation, then the global state,
    /// its id and the previous joint action.
    func testAgentSpecificCriticsSeeTheirOwnObservationFirst() throws {
        let c = MultiAgentAgentTests.cases.first { $0.label.hasPrefix("MASAC agent-specific critics") }!
        let (agent, replay, sampler) = try makeAgent(c)
        XCTAssertFalse(agent.sharesContext)
        XCTAssertEqual(agent.criticContextWidth, 2 + 3 + 3 + 3 * 1)
        let batch = sampler.sample(from: replay)
        _ = agent.prepare(batch)
        let B = batch.batchSize, Cc = agent.criticContextWidth
        for s in 0..<batch.slots {
            for b in 0..<B {
                for k in 0..<3 {
                    let row = agent.criticContext.data + ((s * B + b) * 3 + k) * Cc
                    let observation = batch.observations.data + ((s * B + b) * 3 + k) * 2
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: row, count: 2)), Array(UnsafeBufferPointer(start: observation, count: 2)))
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: row + 2, count: 3)),
                                   Array(UnsafeBufferPointer(start: batch.globalStates.data + (s * B + b) * 3, count: 3)))
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: row + 5, count: 3)), (0..<3).map { $0 == k ? Float(1) : 0 })
                }
            }
        }
    }

    /// With one agent, MASAC's agent is SAC's: the same parameters from the same seed, and the same
    /// losses and gradients on the same batch.
    func testOneAgentMASACIsSAC() throws {
        for actions in [Space.box(low: [-1], high: [1]), .discrete(3)] {
            var configuration = AgentConfiguration()
            configuration.network = .gru
            configuration.hiddenSize = 5
            configuration.batchSize = 3
            configuration.sampler.sequenceLength = 5
            configuration.sampler.initialState = .stored
            configuration.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
            let sac = try OffPolicyAgent(configuration: configuration, observationSpace: .box(low: [-5, -5], high: [5, 5]), actionSpace: actions, seed: 3)
            configuration.algorithm = .masac
            let masac = try OffPolicyAgent(configuration: configuration, observationSpace: .box(low: [-5, -5], high: [5, 5]), actionSpace: actions, seed: 3)
            let replay = makeRandomMultiAgentReplay(layout: sac.replayLayout, episodes: [5, 7, 3], actions: actions, seed: 8)
            XCTAssertEqual(sac.replayLayout, masac.replayLayout)
            let sampler = SequenceSampler(configuration: configuration.sampler, batchSize: 3, layout: sac.replayLayout, seed: 4)
            let batch = sampler.sample(from: replay)
            for _ in 0..<3 {
                sac.update(batch)
                masac.update(batch)
                XCTAssertEqual(sac.statistics, masac.statistics)
            }
            XCTAssertEqual(sac.namedParameters().map(\.parameter.value.array), masac.namedParameters().map(\.parameter.value.array))
        }
    }
}
