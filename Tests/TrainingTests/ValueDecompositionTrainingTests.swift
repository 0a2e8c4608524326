import Agents
import Environments
import Foundation
import Replay
import Tensors
@testable import Training
import XCTest

/// A small VDN or QMIX run on `environment`: the defaults with a short warm-up, GRU 8, batches of 4
/// windows of 7 slots, one update per 4 steps.
func smallValueDecompositionRun(_ algorithm: OffPolicyAlgorithm, environment: String) -> OffPolicyConfiguration {
    var c = OffPolicyConfiguration.defaults(algorithm: algorithm, environment: environment)
    c.warmupSteps = 100
    c.agent.hiddenSize = 8
    c.agent.batchSize = 4
    c.agent.criticUpdateInterval = 4
    c.agent.sampler.sequenceLength = 7
    return c
}

/// VDN and QMIX through the off-policy trainer: the metrics they log, same seed same run, and a
/// short learning check on the cooperative memory task.
final class ValueDecompositionTrainingTests: XCTestCase {
    func small(_ algorithm: OffPolicyAlgorithm, environment: String = "team-recall", steps: Int = 600, seed: UInt64 = 0) -> OffPolicyConfiguration {
        var c = smallValueDecompositionRun(algorithm, environment: environment)
        c.steps = steps
        c.seed = seed
        c.evaluationInterval = 200
        c.evaluationEpisodes = 3
        c.agent.headHiddenSizes = [16]
        c.agent.valueDecomposition!.epsilonAnnealSteps = 300
        return c
    }

    /// Rows carry the updates made (one per 4 steps after the warm-up) and ε on its schedule; same
    /// seed, same metrics; another seed, other metrics.
    func testMetricsAndSameSeedSameRun() throws {
        for algorithm in [OffPolicyAlgorithm.vdn, .qmix] {
            func rows(_ seed: UInt64) throws -> [[Double]] {
                try OffPolicyTrainer(configuration: small(algorithm, seed: seed)).run().map { row in
                    MetricsRow.valueDecompositionColumns.filter { !MetricsRow.timingColumns.contains($0) }.map { row[$0] ?? .nan }
                }
            }
            let a = try rows(3), b = try rows(3), d = try rows(4)
            XCTAssertEqual(a.description, b.description, "\(algorithm)")
            XCTAssertNotEqual(a.description, d.description, "\(algorithm)")
            let columns = MetricsRow.valueDecompositionColumns
            let updates = columns.firstIndex(of: "updates")!, epsilon = columns.firstIndex(of: "epsilon")!, step = columns.firstIndex(of: "step")!
            for row in a {
                XCTAssertEqual(row[updates], Double((Int(row[step]) - 100) / 4 + 1), "\(algorithm): one update per 4 steps from step 100")
                XCTAssertEqual(row[epsilon], Double(max(1 - 0.95 * row[step] / 300, 0.05)), accuracy: 1e-6, "\(algorithm): ε on its schedule")
                XCTAssertTrue(row[columns.firstIndex(of: "critic_loss")!].isFinite)
            }
        }
    }

    /// A saved VDN or QMIX run is a greedy policy: its manifest says so, and `rrl evaluate`'s policy
    /// acts the largest Q-value of the training agent, sampled or not.
    func testTheSavedPolicyIsGreedy() throws {
        let trainer = try OffPolicyTrainer(configuration: small(.qmix, environment: "foraging", steps: 300))
        try trainer.run()
        let manifest = trainer.agent.policyManifest(actionSpace: trainer.environments.actionSpace)
        XCTAssertEqual(manifest.distribution, .greedy)
        XCTAssertEqual(manifest.actions.count, 6)
    }

    /// Recurrent VDN solves team-recall (each agent must name the cue it saw five steps earlier;
    /// guessing scores 0.25) within 20k steps, recurrent QMIX is far above guessing, and a
    /// feed-forward VDN agent stays at guessing. Measured over seeds 0-4 at 20k steps (release build,
    /// the defaults): VDN 1.0 on every seed; QMIX 0.85, 0.83, 0.85, 1.0, 0.30 (its mixer sees the cues
    /// in the global state, and it learns more slowly); a feed-forward VDN 0.2-0.33 at 40k steps.
    /// (Fails when the agents' states, the windows, the returns or the mixer's gradient are broken.)
    func testRecurrentAgentsSolveTeamRecallAndFeedForwardOnesCannot() throws {
        #if DEBUG
        throw XCTSkip("learning checks run in release builds (swift test -c release)")
        #else
        func train(_ algorithm: OffPolicyAlgorithm, _ network: NetworkKind) throws -> Double {
            var c = OffPolicyConfiguration.defaults(algorithm: algorithm, environment: "team-recall")
            c.steps = 20_000
            c.seed = 1
            c.evaluationInterval = c.steps
            c.evaluationEpisodes = 20
            c.agent.sampler.sequenceLength = 7
            if network == .mlp { c.agent.useMLP() }
            return try XCTUnwrap(try OffPolicyTrainer(configuration: c).run().last?["eval_return_mean"])
        }
        XCTAssertGreaterThan(try train(.vdn, .gru), 0.9, "recurrent VDN on team-recall")
        XCTAssertGreaterThan(try train(.qmix, .gru), 0.5, "recurrent QMIX on team-recall: at least twice guessing")
        XCTAssertLessThan(try train(.vdn, .mlp), 0.45, "a feed-forward agent cannot remember its cue (guessing: 0.25)")
        #endif
    }
}
