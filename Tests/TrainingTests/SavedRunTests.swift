import Agents
import Environments
import Foundation
import Tensors
@testable import Training
import XCTest

final class SavedRunTests: XCTestCase {
    func temporaryFolder() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("rrl-saved-\(UUID().uuidString)").path
    }

    /// A saved run evaluates to exactly what the trained agent gives on the same episodes (weights
    /// and normalisers read back), and twice the same with the same seed; another seed differs.
    func testEvaluatingASavedRunReproducesTheTrainedAgent() throws {
        // PPO (Gaussian policy, with observation and reward normalisation; continuous returns
        // show any difference in the weights or the normalisers).
        var p = PPOTrainingConfiguration()
        p.environment = "pendulum"
        p.steps = 2 * 8 * 32
        p.evaluationEpisodes = 2
        p.ppo.hiddenSize = 8
        p.ppo.headHiddenSizes = [8]
        p.ppo.epochs = 2
        let ppo = try PPOTrainer(configuration: p)
        try ppo.run()
        let ppoPath = temporaryFolder()
        let ppoFolder = try RunFolder(path: ppoPath, overwrite: false)
        try ppoFolder.writeConfiguration(p)
        try ppoFolder.writeWeights(ppo.namedTensors(), metadata: ppo.normalizerMetadata())

        // SAC (recurrent, full context).
        var s = OffPolicyConfiguration.memoryDefault
        s.environment = "pendulum-velocity"
        s.steps = 300
        s.warmupSteps = 100
        s.evaluationEpisodes = 1
        s.agent.sampler.sequenceLength = 8
        s.agent.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        let sac = try OffPolicyTrainer(configuration: s)
        try sac.run()
        let sacPath = temporaryFolder()
        let sacFolder = try RunFolder(path: sacPath, overwrite: false)
        try sacFolder.writeConfiguration(s)
        try sacFolder.writeWeights(sac.agent.namedParameters(), metadata: [:])
        defer { for path in [ppoPath, sacPath] { try? FileManager.default.removeItem(atPath: path) } }

        for (path, trained, environment) in [(ppoPath, ppo.agent as any RecurrentActor, p.environment),
                                             (sacPath, sac.agent as any RecurrentActor, s.environment)] {
            let saved = try SavedRun(path: path)
            let a = try saved.evaluate(episodes: 3, seed: 7, stochastic: false)
            let b = try saved.evaluate(episodes: 3, seed: 7, stochastic: false)
            let c = try saved.evaluate(episodes: 3, seed: 8, stochastic: false)
            XCTAssertEqual(a.returns, b.returns, "\(path): same seed, same evaluation")
            XCTAssertNotEqual(a.returns, c.returns, "\(path): another seed, other episodes")
            var seeds = RandomGenerator(seed: 7)
            let envs = try (0..<3).map { _ in try EnvironmentRegistry.make(environment) }
            let reference = evaluateSideBySide(trained, environments: envs, seeds: &seeds, deterministic: true)
            XCTAssertEqual(a.returns, reference.returns, "\(path): the saved run acts as the trained agent")
        }
    }

    /// A folder without a run, or with a truncated weights file, gets a clear error.
    func testMissingOrBrokenRunsGiveClearErrors() throws {
        let path = temporaryFolder()
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try SavedRun(path: path)) { XCTAssertTrue("\($0)".contains("no config.json"), "\($0)") }
        var p = PPOTrainingConfiguration()
        p.ppo.hiddenSize = 4
        let folder = try RunFolder(path: path, overwrite: true)
        try folder.writeConfiguration(p)
        XCTAssertThrowsError(try SavedRun(path: path)) { XCTAssertTrue("\($0)".contains("no weights.safetensors"), "\($0)") }
        try Data([1, 2, 3]).write(to: folder.weightsURL)
        XCTAssertThrowsError(try SavedRun(path: path)) { XCTAssertTrue("\($0)".contains("weights.safetensors"), "\($0)") }
    }
}
