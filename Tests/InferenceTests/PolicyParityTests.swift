import Agents
import AllocationCounter
import Environments
import Foundation
import Inference
import NeuralNetworks
import Tensors
import XCTest

/// A policy of every kind, as a training agent holds it: the agent (the reference: rrl's own acting
/// path), its weights file's tensors and manifest.
struct PolicyCase {
    var label: String
    var actor: any RecurrentActor
    var parameters: [NamedParameter]
    var manifest: PolicyManifest
    var actionSpace: Space
    var observationWidth: Int
    var masked = false
}

/// Randomised weights of a new agent (every parameter perturbed, so that biases and gates matter).
func perturb(_ parameters: [NamedParameter], seed: UInt64) {
    var rng = RandomGenerator(seed: seed)
    for (_, p) in parameters { for i in 0..<p.value.count { p.value.data[i] += 0.3 * rng.normal() } }
}

func offPolicyCase(_ label: String, algorithm: OffPolicyAlgorithm = .sac, network: NetworkKind, layers: Int = 1, actions: Space,
                   context: ContextInputs, agents: Int = 1, masked: Bool = false, perAgent: Bool = false, head: [Int] = [8],
                   contextEncoder: ContextEncoderLayout? = nil, seed: UInt64) throws -> PolicyCase {
    var c = AgentConfiguration()
    c.algorithm = algorithm
    c.network = network
    c.recurrentLayers = layers
    c.hiddenSize = 6
    c.headHiddenSizes = head
    c.context = context
    if perAgent { c.actorPerAgent = true }
    if let contextEncoder {
        c.contextEncoder = contextEncoder
        c.activation = .elu
    }
    if network == .mlp { c.sampler.sequenceLength = 1 }
    let n: Int = { if case .discrete(let n) = actions { return n } else { return 0 } }()
    let agent = try OffPolicyAgent(configuration: c, observationSpace: .box(low: [-9, -9, -9], high: [9, 9, 9]), actionSpace: actions, seed: seed,
                                   agents: agents, actionMaskWidth: masked ? n : 0)
    perturb(agent.namedParameters(), seed: seed + 1)
    let manifest = agent.policyManifest(actionSpace: actions)
    return PolicyCase(label: label, actor: agent, parameters: agent.namedParameters(), manifest: manifest, actionSpace: actions,
                      observationWidth: 3, masked: masked)
}

func ppoCase(_ label: String, network: NetworkKind, actions: Space, context: ContextInputs, seed: UInt64) throws -> PolicyCase {
    var c = PPOConfiguration()
    c.network = network
    c.hiddenSize = 6
    c.headHiddenSizes = [8, 5]
    c.activation = .tanh
    c.context = context
    let agent = try PPOAgent(configuration: c, observationSpace: .box(low: [-9, -9, -9], high: [9, 9, 9]), actionSpace: actions, seed: seed)
    perturb(agent.namedParameters(), seed: seed + 1)
    // Normalisers that matter: means and deviations away from 0 and 1.
    agent.observationStatistics.mean = [0.5, -1, 2]
    agent.observationStatistics.variance = [4, 0.25, 9]
    agent.returnStatistics.variance = [2.5]
    return PolicyCase(label: label, actor: agent, parameters: agent.namedParameters(), manifest: agent.policyManifest(actionSpace: actions),
                      actionSpace: actions, observationWidth: 3)
}

/// Writes a case's weights file (tensors and manifest) and loads it back as a `Policy`.
func loadPolicy(_ c: PolicyCase) throws -> Policy {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-policy-\(UUID().uuidString).safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    var parameters = c.parameters
    if let ppo = c.actor as? PPOAgent { parameters += ppo.normalizerParameters() }
    try SafeTensors.write(parameters, metadata: c.manifest.metadata, to: url)
    return try Policy(contentsOf: url)
}

/// The inference library against rrl's acting path, policy by policy.
final class PolicyParityTests: XCTestCase {
    static func cases() throws -> [PolicyCase] {
        let box = Space.box(low: [-2, 0], high: [2, 1])
        return [
            try offPolicyCase("SAC GRU, previous action and reward", network: .gru, actions: box,
                              context: ContextInputs(observation: true, lastAction: true, lastReward: true), seed: 1),
            try offPolicyCase("SAC MLP", network: .mlp, actions: box, context: ContextInputs(), head: [8, 8], seed: 2),
            try offPolicyCase("TD3 LSTM, 2 layers, previous action", algorithm: .td3, network: .lstm, layers: 2, actions: box,
                              context: ContextInputs(observation: true, lastAction: true), seed: 3),
            try offPolicyCase("discrete SAC GRU 2 layers, previous action one-hot and reward", network: .gru, layers: 2, actions: .discrete(4),
                              context: ContextInputs(observation: true, lastAction: true, lastReward: true), seed: 4),
            try offPolicyCase("discrete SAC LSTM", network: .lstm, actions: .discrete(3), context: ContextInputs(), seed: 5),
            try offPolicyCase("TD3 GRU, previous observation and action", algorithm: .td3, network: .gru, actions: box,
                              context: ContextInputs(observation: true, lastObservation: true, lastAction: true), seed: 16),
            try offPolicyCase("SAC GRU with RESeL's context encoder, previous observation, action and reward", network: .gru, actions: box,
                              context: ContextInputs(observation: true, lastObservation: true, lastAction: true, lastReward: true),
                              contextEncoder: ContextEncoderLayout(inputEmbedding: 4, before: [7], after: 5, projection: 3), seed: 14),
            try offPolicyCase("discrete SAC LSTM with RESeL's context encoder (no projection), previous action one-hot", network: .lstm,
                              actions: .discrete(4), context: ContextInputs(observation: true, lastAction: true),
                              contextEncoder: ContextEncoderLayout(inputEmbedding: 3, before: [6, 5], after: 4, projection: 0), seed: 15),
            try offPolicyCase("MASAC GRU, 3 agents with ids, action masks", algorithm: .masac, network: .gru, actions: .discrete(5),
                              context: ContextInputs(observation: true, lastAction: true, agentID: true), agents: 3, masked: true, seed: 6),
            try offPolicyCase("MASAC one GRU per agent (2 layers), 3 agents, action masks", algorithm: .masac, network: .gru, layers: 2,
                              actions: .discrete(4), context: ContextInputs(observation: true, lastAction: true), agents: 3, masked: true,
                              perAgent: true, seed: 10),
            try offPolicyCase("MASAC one LSTM per agent, 2 agents, continuous, previous action and reward", algorithm: .masac, network: .lstm,
                              actions: box, context: ContextInputs(observation: true, lastAction: true, lastReward: true, agentID: true), agents: 2,
                              perAgent: true, seed: 11),
            try offPolicyCase("QMIX GRU (greedy Q-values), 3 agents with ids, previous action, action masks", algorithm: .qmix, network: .gru,
                              actions: .discrete(5), context: ContextInputs(observation: true, lastAction: true, agentID: true), agents: 3,
                              masked: true, seed: 12),
            try offPolicyCase("VDN one LSTM per agent (greedy Q-values), 2 agents", algorithm: .vdn, network: .lstm, actions: .discrete(3),
                              context: ContextInputs(observation: true), agents: 2, perAgent: true, seed: 13),
            try ppoCase("PPO LSTM continuous, normalised observations and rewards", network: .lstm, actions: box,
                        context: ContextInputs(observation: true, lastAction: true, lastReward: true), seed: 7),
            try ppoCase("PPO GRU discrete", network: .gru, actions: .discrete(3), context: ContextInputs(observation: true, lastAction: true), seed: 8),
            try ppoCase("PPO MLP continuous", network: .mlp, actions: box, context: ContextInputs(), seed: 9),
        ]
    }

    /// For every kind of policy, 3 environment copies side by side (times the agents) over 400 steps
    /// with random observations, rewards, masks and episode starts (about 40 episodes per copy, over 100 in all): the
    /// policy loaded from the weights file alone gives the actions rrl sends to the environment and
    /// the recurrent states rrl carries, within 1e-5 (discrete actions exactly).
    func testThePolicyActsAsRRLDoes() throws {
        for c in try Self.cases() {
            let policy = try loadPolicy(c)
            XCTAssertEqual(policy.recurrentStateWidth, c.actor.actorStateWidth, c.label)
            let rollout = Rollout(c, steps: 400, seed: 99)
            XCTAssertGreaterThanOrEqual(rollout.episodeStarts, 100, c.label)
            let B = rollout.rows, S = policy.stateWidth, R = rollout.stateWidth, ea = rollout.actionWidth
            var state = policy.initialState(batch: B), actions = [Float](repeating: 0, count: B * ea)
            var got = [Float](), gotStates = [Float]()
            for t in 0..<rollout.steps {
                let starts = (0..<B).map { rollout.starts[t * B + $0] != 0 }
                starts.withUnsafeBufferPointer { s in
                    policy.act(observations: Array(rollout.observations[(t * B * rollout.observationWidth)...]), rewards: Array(rollout.rewards[(t * B)...]),
                               episodeStarts: s.baseAddress, actionMasks: c.masked ? Array(rollout.masks[(t * B * rollout.maskWidth)...]) : nil,
                               state: &state, batch: B, actions: &actions)
                }
                got += actions
                for r in 0..<B { gotStates += state[(r * S)..<(r * S + R)] }
            }
            rollout.check(actions: got, states: gotStates, label: "\(c.label) (Swift inference)")
        }
    }

    /// The policy loaded from its file serves as an agent's actor (`RecurrentActor`: evaluation and
    /// `rrl evaluate` use it): through rrl's own acting path it acts exactly as the training agent.
    func testThePolicyServesAsTheAgentsActor() throws {
        for c in try Self.cases() {
            var asActor = c
            asActor.actor = try loadPolicy(c)
            let agent = Rollout(c, steps: 200, seed: 5), policy = Rollout(asActor, steps: 200, seed: 5)
            XCTAssertEqual(agent.actions, policy.actions, c.label)
            XCTAssertEqual(agent.states, policy.states, c.label)
        }
    }

    /// After the first call has sized its workspaces, acting allocates nothing.
    func testActingAllocatesNothing() throws {
        for c in try Self.cases() {
            let policy = try loadPolicy(c)
            let B = 4 * c.actor.agents
            var state = policy.initialState(batch: B)
            let observations = [Float](repeating: 0.5, count: B * c.observationWidth), rewards = [Float](repeating: 1, count: B)
            var actions = [Float](repeating: 0, count: B * policy.actionWidth)
            let starts = [Bool](repeating: false, count: B), masks = [Float](repeating: 1, count: B * 8)
            func step() {
                observations.withUnsafeBufferPointer { o in
                    rewards.withUnsafeBufferPointer { r in
                        starts.withUnsafeBufferPointer { s in
                            masks.withUnsafeBufferPointer { m in
                                state.withUnsafeMutableBufferPointer { st in
                                    actions.withUnsafeMutableBufferPointer { out in
                                        policy.act(observations: o.baseAddress!, rewards: r.baseAddress, episodeStarts: s.baseAddress,
                                                   actionMasks: c.masked ? m.baseAddress : nil, state: st.baseAddress!, batch: B, actions: out.baseAddress!)
                                        policy.act(observations: o.baseAddress!, rewards: r.baseAddress, episodeStarts: s.baseAddress,
                                                   actionMasks: c.masked ? m.baseAddress : nil, state: st.baseAddress!, batch: B, deterministic: false,
                                                   actions: out.baseAddress!)
                                    }
                                }
                            }
                        }
                    }
                }
            }
            step()
            rrl_allocation_counting_start()
            for _ in 0..<3 { step() }
            let allocations = rrl_allocation_counting_stop()
            XCTAssertEqual(allocations, 0, "\(c.label): acting allocated \(allocations) times after warm-up")
        }
    }

    /// A file without a manifest, with a damaged one, or with a missing tensor is refused with a
    /// message that says what to do.
    func testBadFilesAreRefusedWithAMessage() throws {
        let c = try Self.cases()[0]
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-policy-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(c.parameters, metadata: [:], to: url)
        XCTAssertThrowsError(try Policy(contentsOf: url)) { XCTAssertTrue("\($0)".contains("holds no policy manifest"), "\($0)") }
        try SafeTensors.write(c.parameters, metadata: [PolicyManifest.metadataKey: "{\"version\": 1"], to: url)
        XCTAssertThrowsError(try Policy(contentsOf: url)) { XCTAssertTrue("\($0)".contains("cannot be read"), "\($0)") }
        var wrong = c.manifest
        wrong.network.inputWidth += 1
        try SafeTensors.write(c.parameters, metadata: wrong.metadata, to: url)
        XCTAssertThrowsError(try Policy(contentsOf: url)) { XCTAssertTrue("\($0)".contains("its context needs"), "\($0)") }
        try SafeTensors.write(Array(c.parameters.dropFirst()), metadata: c.manifest.metadata, to: url)
        XCTAssertThrowsError(try Policy(contentsOf: url)) { XCTAssertTrue("\($0)".contains(c.parameters[0].name), "\($0)") }
    }
}

/// A recorded rollout of rrl's own acting path: `rows` rows (3 copies times the agents) over `steps`
/// steps of random observations, rewards, masks and episode starts, with the actions rrl sends to the
/// environment and the recurrent states it carries. Exports are checked against it.
struct Rollout {
    let steps: Int, rows: Int, observationWidth: Int, actionWidth: Int, maskWidth: Int, stateWidth: Int
    var observations: [Float] = [], rewards: [Float] = [], starts: [Float] = [], masks: [Float] = []
    var actions: [Float] = [], states: [Float] = []
    var episodeStarts = 0
    let discrete: Bool

    init(_ c: PolicyCase, steps T: Int, seed: UInt64) {
        let actor = c.actor, N = actor.agents, B = 3 * N, o = c.observationWidth, a = actor.actionWidth
        let n: Int = { if case .discrete(let n) = c.actionSpace, c.masked { return n } else { return 0 } }()
        steps = T; rows = B; observationWidth = o; actionWidth = c.actionSpace.width; maskWidth = n; stateWidth = actor.actorStateWidth
        if case .discrete = c.actionSpace { discrete = true } else { discrete = false }
        let Sa = max(actor.actorStateWidth, 1), ea = actionWidth
        let context = Tensor(Shape(d0: 1, d1: B, d2: actor.contextWidth)), agentState = Tensor(Shape(d0: B, d1: Sa))
        var previous = [Float](repeating: 0, count: B * a), chosen = [Float](repeating: 0, count: B * a)
        var previousObservations = [Float](repeating: 0, count: B * o), preparedObservations = [Float](repeating: 0, count: B * o)
        var started = [Bool](repeating: true, count: B), expected = [Float](repeating: 0, count: B * ea)
        var mask = [Float](repeating: 1, count: max(B * n, 1))
        var rng = RandomGenerator(seed: seed)
        for step in 0..<T {
            for copy in 0..<3 where step == 0 || rng.uniform() < 0.1 {
                for k in 0..<N { started[copy * N + k] = true }
                episodeStarts += 1
            }
            let x = (0..<(B * o)).map { _ in 2 * rng.normal() }, r = (0..<B).map { _ in rng.normal() }
            for row in 0..<B where n > 0 {
                for j in 0..<n { mask[row * n + j] = rng.uniform() < 0.6 ? 1 : 0 }
                mask[row * n + rng.integer(below: n)] = 1
            }
            observations += x; rewards += r; starts += started.map { $0 ? 1 : 0 }
            if n > 0 { masks += mask }
            // rrl's path: the agent's context writer and actor, then the trainers' action mapping.
            for row in 0..<B {
                if started[row] { (agentState.data + row * Sa).update(repeating: 0, count: Sa) }
                var prepared = Array(x[(row * o)..<(row * o + o)])
                prepared.withUnsafeMutableBufferPointer { actor.prepare(observation: $0.baseAddress!) }
                previous.withUnsafeBufferPointer { p in
                    previousObservations.withUnsafeBufferPointer { po in
                        actor.writeContext(observation: prepared, lastObservation: started[row] ? nil : po.baseAddress! + row * o,
                                           lastAction: started[row] ? nil : p.baseAddress! + row * a,
                                           lastReward: started[row] ? 0 : actor.prepare(reward: r[row]), agent: row % N,
                                           into: context.data + row * actor.contextWidth)
                    }
                }
                preparedObservations.replaceSubrange((row * o)..<(row * o + o), with: prepared)
            }
            previousObservations = preparedObservations
            mask.withUnsafeBufferPointer { m in
                chosen.withUnsafeMutableBufferPointer {
                    actor.act(context: context, state: agentState, deterministic: true, actionMasks: n > 0 ? m.baseAddress : nil, actions: $0.baseAddress!)
                }
            }
            for row in 0..<B {
                switch c.actionSpace {
                case .discrete: expected[row] = chosen[row]
                case .box(let low, let high):
                    chosen.withUnsafeBufferPointer { p in
                        expected.withUnsafeMutableBufferPointer { PolicyManifest.Actions.mapToBounds(p.baseAddress! + row * a, low: low, high: high, into: $0.baseAddress! + row * ea) }
                    }
                }
                states += (0..<actor.actorStateWidth).map { agentState.data[row * Sa + $0] }
            }
            actions += expected
            previous = chosen
            for row in 0..<B { started[row] = false }
        }
    }

    /// Checks another runtime's actions and recurrent states (same layout) against rrl's.
    func check(actions got: [Float], states gotStates: [Float], label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(got.count, actions.count, "\(label): actions", file: file, line: line)
        XCTAssertEqual(gotStates.count, states.count, "\(label): states", file: file, line: line)
        guard got.count == actions.count, gotStates.count == states.count else { return }
        var worst: Float = 0, mismatches = 0
        for (u, v) in zip(got, actions) {
            if discrete { if u != v { mismatches += 1 } } else { worst = max(worst, abs(u - v)) }
        }
        for (u, v) in zip(gotStates, states) { worst = max(worst, abs(u - v)) }
        XCTAssertEqual(mismatches, 0, "\(label): discrete actions differ", file: file, line: line)
        XCTAssertLessThanOrEqual(worst, 1e-5, label, file: file, line: line)
    }

    /// Writes the rollout's inputs (float32 files and `rollout.json`) for the C driver and the Python check.
    func write(to folder: URL, policy: Policy) throws {
        func floats(_ name: String, _ values: [Float]) throws {
            try values.withUnsafeBufferPointer { try Data(buffer: $0).write(to: folder.appendingPathComponent(name)) }
        }
        try floats("observations.bin", observations)
        try floats("rewards.bin", rewards)
        try floats("starts.bin", starts)
        try floats("masks.bin", maskWidth > 0 ? masks : [0])
        // (A context encoder's recurrent state is its stack's.)
        let encoder = (policy.encoder as? ContextEncoder)?.recurrent ?? policy.encoder as? RecurrentStack
        let info: [String: Any] = [
            "steps": steps, "rows": rows, "observationWidth": observationWidth, "maskWidth": maskWidth, "agents": policy.manifest.agents,
            "layers": encoder?.layers.count ?? 0, "hidden": encoder?.hiddenSize ?? 0, "lstm": policy.manifest.network.cell == .lstm,
            "previousActionWidth": policy.previousActionWidth, "actionWidth": actionWidth, "stateWidth": policy.stateWidth,
        ]
        try JSONSerialization.data(withJSONObject: info).write(to: folder.appendingPathComponent("rollout.json"))
    }

    /// Reads a float32 file written by another runtime.
    static func read(_ url: URL) throws -> [Float] {
        let data = try Data(contentsOf: url)
        return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
}

