import Agents
import Environments
import Foundation
import NeuralNetworks
import Tensors
@testable import Training
import XCTest

final class CheckpointTests: XCTestCase {
    struct Stop: Error {}

    func temporaryFolder() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("rrl-ckpt-\(UUID().uuidString)")
    }

    /// The rows of an uninterrupted run, and of the same run stopped after `stopAt` steps (a
    /// checkpoint written, the trainer thrown away) and resumed in a fresh trainer.
    func uninterruptedAndResumed(_ make: () throws -> any TrainingSession, stopAt: Int,
                                 file: StaticString = #filePath, line: UInt = #line) throws -> ([MetricsRow], [MetricsRow], any TrainingSession, any TrainingSession) {
        let full = try make()
        let reference = try full.run(onRow: { _ in }, afterStep: { _ in }, onProgress: { _ in })

        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = CheckpointStore(directory: folder)
        let first = try make()
        var rows: [MetricsRow] = []
        XCTAssertThrowsError(try first.run(onRow: { rows.append($0) }, afterStep: { _ in
            if first.step >= stopAt {
                try store.write(first)
                throw Stop()
            }
        }, onProgress: { _ in }), file: file, line: line)
        XCTAssertLessThan(first.step, first.totalSteps, "the stop came before the end", file: file, line: line)
        let resumed = try make()
        guard let archive = try store.latest() else { XCTFail("no checkpoint", file: file, line: line); throw Stop() }
        try resumed.restore(from: archive, prefix: "")
        XCTAssertEqual(resumed.step, first.step, file: file, line: line)
        XCTAssertEqual(resumed.loop.rows, rows.count, file: file, line: line)
        rows += try resumed.run(onRow: { _ in }, afterStep: { _ in }, onProgress: { _ in })
        return (reference, rows, full, resumed)
    }

    func assertSameRows(_ a: [MetricsRow], _ b: [MetricsRow], columns: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, "row count", file: file, line: line)
        XCTAssertGreaterThanOrEqual(a.count, 3, file: file, line: line)
        for (i, (x, y)) in zip(a, b).enumerated() {
            for c in columns where !MetricsRow.timingColumns.contains(c) {
                let u = x[c] ?? .nan, v = y[c] ?? .nan
                XCTAssertTrue(u == v || (u.isNaN && v.isNaN), "row \(i) (step \(x["step"] ?? -1)), \(c): \(u) uninterrupted, \(v) resumed",
                              file: file, line: line)
            }
        }
    }

    func assertSameWeights(_ a: any TrainingSession, _ b: any TrainingSession, file: StaticString = #filePath, line: UInt = #line) {
        let wa = a.exportedWeights().tensors, wb = b.exportedWeights().tensors
        XCTAssertEqual(wa.map(\.name), wb.map(\.name), file: file, line: line)
        for (x, y) in zip(wa, wb) { XCTAssertEqual(x.parameter.value.array, y.parameter.value.array, x.name, file: file, line: line) }
    }

    /// Recurrent SAC with stored states, burn-in and the full context on pendulum-velocity (episodes
    /// end inside the run, the replay holds states, the temperature learns), on `copies` copies.
    func recurrentSAC(copies: Int, steps: Int, replayCapacity: Int) -> OffPolicyConfiguration {
        var c = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "pendulum-velocity")
        if copies > 1 { c.environments = copies }
        c.steps = steps
        c.warmupSteps = 100 * copies
        c.evaluationInterval = 150 * copies
        c.evaluationEpisodes = 2
        c.agent.network = .gru
        c.agent.hiddenSize = 8
        c.agent.headHiddenSizes = [16]
        c.agent.batchSize = 4
        c.agent.sampler.sequenceLength = 12
        c.agent.sampler.burnIn = 4
        c.agent.sampler.initialState = .storedBurnIn
        c.agent.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        c.agent.replayCapacity = replayCapacity
        return c
    }

    /// One copy, stopped at step 350 and resumed: the metrics (every non-timing column) and the final
    /// weights equal those of a run that never stopped; whole episodes are evicted before the stop.
    func testRecurrentSACResumesExactly() throws {
        let c = recurrentSAC(copies: 1, steps: 700, replayCapacity: 330)
        let (reference, resumed, a, b) = try uninterruptedAndResumed({ try OffPolicyTrainer(configuration: c) }, stopAt: 350)
        assertSameRows(reference, resumed, columns: MetricsRow.columns)
        assertSameWeights(a, b)
    }

    /// Three copies stepped together (one replay ring each, several updates per pass), stopped
    /// between passes and resumed: the same; each copy's ring evicts whole episodes before the stop.
    /// With RESeL's parts too: the previous observation in the context (each copy's is checkpointed),
    /// the context encoder, a critic ensemble with a drawn target subset, and clamped targets (whose
    /// range is checkpointed); every diagnostic column (the amplification among them) resumes exactly.
    func testRecurrentSACOnSeveralCopiesResumesExactly() throws {
        var c = recurrentSAC(copies: 3, steps: 1500, replayCapacity: 990)
        c.agent.context = ContextInputs(observation: true, lastObservation: true, lastAction: true, lastReward: true)
        c.agent.contextEncoder = ContextEncoderLayout(inputEmbedding: 4, before: [8], after: 6, projection: 4)
        c.agent.criticCount = 1
        c.agent.criticHeads = 3
        c.agent.targetSubset = 2
        c.agent.clampTargets = true
        let (reference, resumed, a, b) = try uninterruptedAndResumed({ try OffPolicyTrainer(configuration: c) }, stopAt: 1100)
        assertSameRows(reference, resumed, columns: a.metricsColumns)
        XCTAssertTrue(a.metricsColumns.contains("amplification_t8"))
        assertSameWeights(a, b)
    }

    /// MASAC on team-recall with two copies, stored states and the global state, stopped and resumed:
    /// the same metrics and weights as a run that never stopped; with GRU critics and with MLP critics
    /// beside the GRU actor.
    func testMASACResumesExactly() throws {
        for critic in [nil, NetworkKind.mlp] { try checkMASACResumesExactly(criticNetwork: critic) }
    }

    func checkMASACResumesExactly(criticNetwork: NetworkKind?) throws {
        var c = OffPolicyConfiguration.defaults(algorithm: .masac, environment: "team-recall")
        c.agent.criticNetwork = criticNetwork
        c.environments = 2
        c.steps = 900
        c.warmupSteps = 100
        c.evaluationInterval = 200
        c.evaluationEpisodes = 2
        c.agent.hiddenSize = 8
        c.agent.headHiddenSizes = [16]
        c.agent.batchSize = 4
        c.agent.sampler.sequenceLength = 7
        c.agent.sampler.initialState = .stored
        c.agent.replayCapacity = 400
        let (reference, resumed, a, b) = try uninterruptedAndResumed({ try OffPolicyTrainer(configuration: c) }, stopAt: 451)
        assertSameRows(reference, resumed, columns: MetricsRow.columns)
        assertSameWeights(a, b)
    }

    /// QMIX on foraging (masks, the global state scaled by its largest magnitudes so far, TD(λ)) with two
    /// copies and stored states, and VDN with one network per agent, stopped and resumed: the same
    /// metrics and weights as runs that never stopped.
    func testValueDecompositionResumesExactly() throws {
        for algorithm in [OffPolicyAlgorithm.qmix, .vdn] {
            var c = smallValueDecompositionRun(algorithm, environment: algorithm == .qmix ? "foraging" : "team-recall")
            c.environments = 2
            c.steps = 800
            c.evaluationInterval = 200
            c.evaluationEpisodes = 2
            c.agent.headHiddenSizes = [16]
            c.agent.sampler.initialState = .stored
            c.agent.replayCapacity = 400
            c.agent.valueDecomposition!.lambda = 0.6
            c.agent.actorPerAgent = algorithm == .vdn
            let (reference, resumed, a, b) = try uninterruptedAndResumed({ try OffPolicyTrainer(configuration: c) }, stopAt: 451)
            assertSameRows(reference, resumed, columns: MetricsRow.valueDecompositionColumns)
            assertSameWeights(a, b)
        }
    }

    /// TD3 (target actor, delayed updates, exploration noise) with an LSTM and zero-state windows on
    /// the memory task (with its probe), with a replay small enough to wrap around before the stop
    /// (its ring is saved oldest first and restored from index 0).
    func testTD3ResumesExactly() throws {
        var c = OffPolicyConfiguration.defaults(algorithm: .td3, environment: "memory")
        c.steps = 500
        c.warmupSteps = 100
        c.evaluationInterval = 100
        c.evaluationEpisodes = 1
        c.probes = 4
        c.agent.network = .lstm
        c.agent.hiddenSize = 6
        c.agent.sampler.sequenceLength = 10
        c.agent.replayCapacity = 150
        let (reference, resumed, a, b) = try uninterruptedAndResumed({ try OffPolicyTrainer(configuration: c) }, stopAt: 233)
        assertSameRows(reference, resumed, columns: MetricsRow.columns)
        assertSameWeights(a, b)
    }

    /// Recurrent PPO (LSTM, normalised observations and rewards, annealed rates, refreshing) on
    /// cartpole-position, and a shared GRU on count-recall: stopped between updates and resumed.
    func testPPOResumesExactly() throws {
        var c = PPOTrainingConfiguration()
        c.steps = 6 * 8 * 16
        c.evaluationInterval = 8 * 16
        c.evaluationEpisodes = 2
        c.ppo.rolloutSteps = 16
        c.ppo.chunkLength = 8
        c.ppo.minibatchSize = 32
        c.ppo.epochs = 2
        c.ppo.hiddenSize = 8
        c.ppo.headHiddenSizes = [8]
        c.ppo.refreshStates = true
        var (reference, resumed, a, b) = try uninterruptedAndResumed({ try PPOTrainer(configuration: c) }, stopAt: 3 * 8 * 16)
        assertSameRows(reference, resumed, columns: MetricsRow.ppoColumns)
        assertSameWeights(a, b)

        c.environment = "count-recall"
        c.ppo.network = .gru
        c.ppo.sharedEncoder = true
        c.ppo.refreshStates = false
        c.ppo.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        (reference, resumed, a, b) = try uninterruptedAndResumed({ try PPOTrainer(configuration: c) }, stopAt: 2 * 8 * 16)
        assertSameRows(reference, resumed, columns: MetricsRow.ppoColumns)
        assertSameWeights(a, b)
    }

    /// MAPPO (GRU actor and central critic, masks, normalised observations, states and rewards) on
    /// cooperative foraging, and IPPO with refreshing on team-recall: stopped between updates and resumed.
    func testMultiAgentPPOResumesExactly() throws {
        for (algorithm, environment) in [("mappo", "foraging-8x8-2p-2f-coop"), ("ippo", "team-recall")] {
            var c = smallMultiAgentPPO(algorithm, environment: environment, copies: 4, rolloutSteps: 16, rollouts: 5)
            c.ppo.refreshStates = algorithm == "ippo"
            let (reference, resumed, a, b) = try uninterruptedAndResumed({ try PPOTrainer(configuration: c) }, stopAt: 2 * 4 * 16)
            assertSameRows(reference, resumed, columns: MetricsRow.ppoColumns)
            assertSameWeights(a, b)
        }
    }

    func smallPPO() -> PPOTrainingConfiguration {
        var c = PPOTrainingConfiguration()
        c.steps = 2 * 4 * 8
        c.evaluationEpisodes = 1
        c.ppo.environments = 4
        c.ppo.rolloutSteps = 8
        c.ppo.chunkLength = 8
        c.ppo.minibatchSize = 16
        c.ppo.epochs = 1
        c.ppo.hiddenSize = 4
        c.ppo.headHiddenSizes = [4]
        return c
    }

    /// A crash in the middle of writing a checkpoint leaves the previous one in place and loadable;
    /// a newest checkpoint that was cut short, or damaged, is a clear error naming the intact
    /// previous one, which still restores.
    func testInterruptedOrDamagedCheckpointKeepsThePreviousOne() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = CheckpointStore(directory: folder)
        let trainer = try PPOTrainer(configuration: smallPPO())
        try trainer.advance()
        try store.write(trainer)
        try trainer.advance()
        let archive = StateArchive()
        try trainer.save(to: archive, prefix: "")
        let data = archive.encode()

        // A crash half-way through the write: only a temporary file is left; the previous checkpoint is the latest.
        XCTAssertThrowsError(try store.write(data, step: trainer.step, crashAfter: data.count / 2))
        XCTAssertEqual(store.list().map(\.step), [32])
        XCTAssertEqual(try store.latest()?.metadata["step"], "32")

        // A truncated newest file (as a copy cut off by a full disk would leave): a clear error.
        let truncatedURL = store.url(step: trainer.step)
        try data.prefix(data.count - 100).write(to: truncatedURL)
        XCTAssertThrowsError(try store.latest()) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("cut off"), message)
            XCTAssertTrue(message.contains("previous checkpoint (step 32) is intact"), message)
        }
        // One flipped byte in the data: the checksum catches it.
        var damaged = data
        damaged[damaged.count - 10] ^= 0x40
        try damaged.write(to: truncatedURL)
        XCTAssertThrowsError(try store.latest()) { error in
            XCTAssertTrue("\(error)".contains("checksum"), "\(error)")
        }
        // The previous checkpoint restores a fresh trainer.
        let fresh = try PPOTrainer(configuration: smallPPO())
        try fresh.restore(from: StateArchiveReader(url: store.url(step: 32)), prefix: "")
        XCTAssertEqual(fresh.step, 32)
        XCTAssertEqual(fresh.agent.namedParameters().map { $0.parameter.value.array }.count, trainer.agent.namedParameters().count)
    }

    /// Only the newest `keep` checkpoints stay; a checkpoint from another configuration is refused.
    func testCheckpointsArePrunedAndMustMatchTheConfiguration() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = CheckpointStore(directory: folder, keep: 2)
        let trainer = try PPOTrainer(configuration: smallPPO())
        for _ in 0..<3 {
            try trainer.advance()
            try store.write(trainer)
        }
        XCTAssertEqual(store.list().map(\.step), [64, 96])
        var other = smallPPO()
        other.ppo.learningRate = 5e-4
        let mismatched = try PPOTrainer(configuration: other)
        XCTAssertThrowsError(try mismatched.restore(from: XCTUnwrap(store.latest()), prefix: "")) { error in
            XCTAssertTrue("\(error)".contains("another configuration"), "\(error)")
        }
        // A longer step budget is allowed (training on from a finished run).
        var longer = smallPPO()
        longer.steps *= 4
        XCTAssertNoThrow(try PPOTrainer(configuration: longer).restore(from: XCTUnwrap(store.latest()), prefix: ""))
    }
}

final class NonFiniteGuardTests: XCTestCase {
    /// A parameter that turns NaN stops training at once with a message naming the step and the
    /// parameter group; the checkpoint written before stays loadable.
    func testANonFiniteParameterStopsTrainingNamingItsGroup() throws {
        var c = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "pendulum")
        c.warmupSteps = 20
        c.agent.batchSize = 8
        let trainer = try OffPolicyTrainer(configuration: c)
        for _ in 0..<30 { try trainer.advance() }
        trainer.agent.actor.networks[0].head.parameters[2].value.data[3] = .infinity
        XCTAssertThrowsError(try trainer.advance()) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("parameter actor.head.") && message.contains("(group actor head)"), message)
            XCTAssertTrue(message.contains("at step 31"), message)
        }

        var p = PPOTrainingConfiguration()
        p.ppo.environments = 2
        p.ppo.rolloutSteps = 8
        p.ppo.chunkLength = 8
        p.ppo.minibatchSize = 8
        p.ppo.epochs = 1
        let ppo = try PPOTrainer(configuration: p)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-nan-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = CheckpointStore(directory: folder)
        try ppo.advance()
        try store.write(ppo)
        ppo.agent.actor.encoder!.parameters[0].value.data[0] = .nan
        XCTAssertThrowsError(try ppo.advance()) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("actor.encoder.") && message.contains("(group actor encoder)"), message)
            XCTAssertTrue(message.contains("at step 32"), message)
        }
        let fresh = try PPOTrainer(configuration: p)
        try fresh.restore(from: XCTUnwrap(store.latest()), prefix: "")
        XCTAssertNil(fresh.agent.firstNonFiniteParameter())
        XCTAssertEqual(fresh.step, 16)
    }
}

/// Metrics written by an earlier version (a header with some of today's columns) are read by their
/// own header and rewritten with today's columns when a run resumes; a header with a column today's
/// runs do not have is still an error.
final class MetricsUpgradeTests: XCTestCase {
    func testAnEarlierVersionsMetricsAreReadAndRewrittenWithTodaysColumns() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-metrics-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let folder = try RunFolder(path: path, overwrite: false)
        try folder.writeConfiguration(["steps": 1])
        try ("step,episodes,eval_return_mean\n1000,5,-3.5\n2000,9,\n").write(to: folder.metricsURL, atomically: true, encoding: .utf8)
        let today = MetricsRow.withRecurrentActorDiagnostics(sequenceLength: 4)
        let rows = try folder.readMetrics(columns: today, rows: 2)
        XCTAssertEqual(rows.map { $0["step"] }, [1000, 2000])
        XCTAssertEqual(rows[0]["eval_return_mean"], -3.5)
        XCTAssertTrue(rows[1]["eval_return_mean"]?.isNaN ?? false)
        try folder.resumeMetrics(columns: today, keeping: rows)
        let text = try String(contentsOf: folder.metricsURL, encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines[0], today.joined(separator: ","))
        XCTAssertEqual(lines.count, 3)
        XCTAssertTrue(lines[1].hasPrefix("1000,5,"))
        // A column this version does not write: not an earlier version of these metrics.
        try ("step,episodes,surprise\n1000,5,1\n").write(to: folder.metricsURL, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try folder.readMetrics(columns: today, rows: 1)) { XCTAssertTrue("\($0)".contains("does not have the header")) }
    }
}
