@testable import Agents
import Environments
import NeuralNetworks
import Replay
import Tensors
@testable import Training
import TestSupport
import XCTest


/// The off-policy trainer around the agent: stored states, seeds, every variant, configuration errors.
final class OffPolicyTrainerTests: XCTestCase {
    /// With stored states, the replay holds exactly the actor and critic states that entered each
    /// step during collection: re-running the networks over the episode gives the same states.
    func testStoredStatesAreThoseRecordedAtCollection() throws {
        var configuration = OffPolicyConfiguration.memoryDefault
        configuration.agent.sampler.initialState = .stored
        configuration.agent.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        configuration.warmupSteps = 1000  // no updates: the weights stay those of collection
        configuration.evaluationEpisodes = 1
        let trainer = try OffPolicyTrainer(configuration: configuration)
        let T = 120
        for _ in 0..<T { try trainer.advance() }
        let agent = trainer.agent, replay = trainer.replay
        XCTAssertEqual(replay.count, T)
        let C = agent.contextWidth
        let context = Tensor(Shape(d0: T, d1: 1, d2: C))
        for t in 0..<T {
            let i = replay.index(t), p = replay.predecessor(i)
            let previousAction: [Float] = p.map { [replay.action($0)[0]] } ?? [0]
            agent.configuration.context.write(observation: replay.observation(i), observationWidth: 1, lastAction: previousAction,
                                              actionWidth: 1, lastReward: p.map { replay.reward($0) } ?? 0, into: context.data + t * C)
        }
        let networks: [(SequenceNetwork, (Int) -> UnsafeMutablePointer<Float>, Int)] =
            [(agent.actor.networks[0], replay.actorState, 0)] + agent.critics.enumerated().map { (i, c) in (c, replay.criticState, i * c.stateWidth) }
        for (network, stored, column) in networks {
            let encoder = try XCTUnwrap(network.encoder)
            encoder.forward(context, initialState: nil, resetMask: nil, resets: .zero, keepActivations: false)
            let H = encoder.stateWidth
            var worst: Float = 0
            for t in 0..<T {
                let recorded = stored(replay.index(t)) + column
                for j in 0..<H {
                    let expected: Float = t == 0 ? 0 : encoder.output.data[(t - 1) * H + j]
                    worst = max(worst, abs(recorded[j] - expected))
                }
            }
            XCTAssertLessThan(worst, 1e-5, "stored states differ from the states that entered each step")
        }
    }

    /// The same seed gives the same metrics, row for row (timing columns aside); another seed does not.
    func testSameSeedSameMetrics() throws {
        func run(seed: UInt64) throws -> [MetricsRow] {
            var c = OffPolicyConfiguration.memoryDefault
            c.steps = 400
            c.warmupSteps = 100
            c.evaluationInterval = 100
            c.evaluationEpisodes = 2
            c.probes = 5
            c.seed = seed
            c.agent.sampler.sequenceLength = 10
            return try OffPolicyTrainer(configuration: c).run()
        }
        func strip(_ rows: [MetricsRow]) -> [[String: Double]] {
            rows.map { $0.values.filter { !MetricsRow.timingColumns.contains($0.key) && !$0.value.isNaN } }
        }
        let a = try run(seed: 4), b = try run(seed: 4), other = try run(seed: 5)
        XCTAssertEqual(a.count, 4)
        XCTAssertEqual(strip(a), strip(b))
        XCTAssertNotEqual(strip(a), strip(other))
    }

    /// Every algorithm, network and switch combination runs end to end and logs finite losses.
    func testEveryVariantTrains() throws {
        var variants: [(String, OffPolicyConfiguration)] = []
        func add(_ label: String, algorithm: OffPolicyAlgorithm = .sac, env: String = "memory", _ configure: (inout OffPolicyConfiguration) -> Void) {
            var c = OffPolicyConfiguration.defaults(algorithm: algorithm, environment: env)
            c.steps = 240
            c.warmupSteps = 80
            c.evaluationInterval = 120
            c.evaluationEpisodes = 2
            c.probes = 3
            configure(&c)
            variants.append((label, c))
        }
        add("memory GRU stored+burnIn") { $0.agent.sampler.initialState = .storedBurnIn; $0.agent.sampler.burnIn = 10 }
        add("memory LSTM x2 full context", algorithm: .td3) {
            $0.agent.network = .lstm; $0.agent.recurrentLayers = 2
            $0.agent.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        }
        add("pendulum MLP", env: "pendulum") { _ in }
        add("pendulum TD3 MLP", algorithm: .td3, env: "pendulum") { _ in }
        add("pendulum-velocity GRU, whole episodes", env: "pendulum-velocity") {
            $0.agent.network = .gru; $0.agent.sampler.sequenceLength = 200; $0.agent.sampler.alwaysStartAtEpisodeStart = true
            $0.agent.batchSize = 2; $0.agent.encoderLearningRate = 1e-5; $0.agent.maxGradientNorm = 1
        }
        add("cartpole-velocity discrete GRU", env: "cartpole-velocity") {
            $0.agent.network = .gru; $0.agent.sampler.sequenceLength = 16; $0.agent.batchSize = 8; $0.agent.sampler.maskNonFinal = true
        }
        add("cartpole MLP discrete", env: "cartpole") { _ in }
        add("pendulum-velocity GRU, the RESeL preset at small sizes", env: "pendulum-velocity") {
            $0.applyRESeL(episodeLimit: 200)
            $0.warmupSteps = 80
            $0.agent.hiddenSize = 12
            $0.agent.headHiddenSizes = [16, 16]
            $0.agent.contextEncoder = ContextEncoderLayout(inputEmbedding: 8, before: [16], after: 8, projection: 8)
            $0.agent.batchSize = 2
        }
        for (label, c) in variants {
            let rows = try OffPolicyTrainer(configuration: c).run()
            XCTAssertEqual(rows.count, 2, label)
            var keys = ["critic_loss", "actor_loss", "eval_return_mean"]
            if c.agent.network != .mlp { keys += ["actor_encoder_grad_norm", "amplification_mean", "amplification_t1"] }
            for key in keys {
                XCTAssertTrue(rows.last?[key]?.isFinite ?? false, "\(label): \(key) = \(String(describing: rows.last?[key]))")
            }
        }
    }

    /// The RESeL preset: its released POMDP settings, whole episodes packed into rows as long as the
    /// longest episode, about 2000 valid steps per batch.
    func testTheRESeLPreset() throws {
        for (limit, rows) in [(200, 10), (500, 4), (1000, 2), (3000, 1)] {
            var c = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "pendulum-velocity")
            c.applyRESeL(episodeLimit: limit)
            XCTAssertNoThrow(try c.validate())
            let a = c.agent
            XCTAssertEqual(a.sampler.sequenceLength, limit)
            XCTAssertEqual(a.batchSize, rows)
            XCTAssertEqual(a.sampler.packEpisodes, true)
            XCTAssertEqual(a.sampler.initialState, .zero)
            XCTAssertEqual([a.criticCount, a.criticHeads, a.targetSubset], [1, 8, 2])
            XCTAssertEqual(a.actorQ, .mean)
            XCTAssertEqual(a.clampTargets, true)
            XCTAssertEqual([a.actorLearningRate, a.criticLearningRate, a.encoderLearningRate, a.temperatureLearningRate], [3e-4, 1e-3, 1e-5, 1e-4])
            XCTAssertEqual(a.contextEncoder, ContextEncoderLayout(inputEmbedding: 128, before: [256], after: 128, projection: 128))
            XCTAssertEqual(a.hiddenSize, 256)
            XCTAssertEqual(a.headHiddenSizes, [256, 256])
            XCTAssertEqual(a.activation, .elu)
            XCTAssertEqual(a.actorUpdateInterval, 2)
            XCTAssertEqual(c.warmupSteps, 5000)
        }
    }

    func testConfigurationErrorsAreClear() {
        var c = AgentConfiguration()
        c.network = .mlp
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("MLP agent has no recurrent state"), "\($0)") }
        c = AgentConfiguration()
        c.algorithm = .td3
        XCTAssertThrowsError(try OffPolicyAgent(configuration: c, observationSpace: .box(low: [0], high: [1]), actionSpace: .discrete(2), seed: 0)) {
            XCTAssertTrue("\($0)".contains("TD3 needs continuous actions"), "\($0)")
        }
        var t = OffPolicyConfiguration()
        t.environment = "pendulm"
        XCTAssertThrowsError(try t.validate()) { XCTAssertTrue("\($0)".contains("did you mean 'pendulum'"), "\($0)") }
    }
}
