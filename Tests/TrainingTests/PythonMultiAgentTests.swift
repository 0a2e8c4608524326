import Agents
import Environments
import Foundation
import Tensors
import TestSupport
@testable import Training
import XCTest

/// Multi-agent Python environments through the bridge: PettingZoo's parallel API (a small test
/// environment in rrl_bridge, needing only gymnasium), and lbforaging's Tuple-space Gymnasium
/// environments, against our own `foraging` (when lbforaging is installed; .ci/run installs it).
extension PythonBridgeTests {
    static let parallel = EnvironmentSpec("pz:rrl_bridge.testing_parallel")

    /// Spaces, padding, rewards, the global state, agents that finish early and the episode's end,
    /// exactly as the Python environment gives them (see python/rrl_bridge/testing_parallel.py).
    func testPettingZooParallelEnvironmentThroughTheBridge() throws {
        let env = try PythonMultiAgentEnvironment(spec: Self.parallel)
        XCTAssertEqual(env.name, "pz:rrl_bridge.testing_parallel")
        XCTAssertEqual(env.agents, 3)
        XCTAssertEqual(env.observationSpace.width, 3, "agent c's two values are padded to the widest")
        XCTAssertEqual(env.actionSpace, .discrete(3))
        XCTAssertEqual(env.globalStateWidth, 2)
        XCTAssertEqual(env.maxEpisodeSteps, 4)
        XCTAssertFalse(env.hasActionMasks)
        var observations = [Float](repeating: -1, count: 9), rewards = [Float](repeating: -1, count: 3)
        var active = [Bool](repeating: false, count: 3), state = [Float](repeating: -1, count: 2)
        try env.reset(seed: 7, observations: &observations)
        XCTAssertEqual(observations, [0, 0, 0, 0, 0, 1, 0, 2, 0])
        let actions: [Float] = [1, 2, 0]
        var results: [MultiAgentStepResult] = []
        for t in 1...4 {
            results.append(try env.step(actions: actions, observations: &observations, rewards: &rewards, active: &active))
            env.globalState(into: &state)
            XCTAssertEqual(state, [Float(t), 3])
            XCTAssertEqual(Array(observations[0..<6]), [Float(t), 1, 0, Float(t), 2, 1])
            // Agent c terminated at step 2: its last observation stays, its reward is 0 after.
            XCTAssertEqual(Array(observations[6..<9]), [Float(min(t, 2)), 2, 0])
            XCTAssertEqual(rewards, [1, 2.1, t <= 2 ? 0.2 : 0])
            XCTAssertEqual(active, [t < 4, t < 4, t < 2])
        }
        XCTAssertEqual(results.map(\.done), [false, false, false, true])
        XCTAssertTrue(results[3].truncated && !results[3].terminated, "a truncated agent makes the episode truncated")
        // A new episode after the end.
        try env.reset(seed: nil, observations: &observations)
        XCTAssertEqual(observations, [0, 0, 0, 0, 0, 1, 0, 2, 0])

        // Action masks from {"observation", "action_mask"} observations.
        let masked = try PythonMultiAgentEnvironment(spec: EnvironmentSpec(Self.parallel.name, options: ["kind": "masked"]))
        XCTAssertTrue(masked.hasActionMasks)
        XCTAssertEqual(masked.observationSpace.width, 2)
        var mask = [Float](repeating: -1, count: 9)
        try masked.reset(seed: 0, observations: &observations)
        masked.availableActions(into: &mask)
        XCTAssertEqual(mask, [0, 1, 1, 0, 1, 1, 0, 1, 1])
        _ = try masked.step(actions: actions, observations: &observations, rewards: &rewards, active: &active)
        masked.availableActions(into: &mask)
        XCTAssertEqual(mask, [1, 0, 1, 1, 0, 1, 1, 0, 1])
        XCTAssertNoThrow(try EnvironmentChecker.check(masked))

        // A Python exception is an error with its message; so are unknown modules and single-agent algorithms.
        let faulty = try PythonMultiAgentEnvironment(spec: EnvironmentSpec(Self.parallel.name, options: ["kind": "raise"]))
        try faulty.reset(seed: 0, observations: &observations)
        _ = try faulty.step(actions: actions, observations: &observations, rewards: &rewards, active: &active)
        _ = try faulty.step(actions: actions, observations: &observations, rewards: &rewards, active: &active)
        XCTAssertThrowsError(try faulty.step(actions: actions, observations: &observations, rewards: &rewards, active: &active)) {
            XCTAssertTrue("\($0)".contains("agent b dropped its food"), "\($0)")
        }
        XCTAssertThrowsError(try PythonMultiAgentEnvironment(spec: EnvironmentSpec("pz:no_such_module_here"))) {
            XCTAssertTrue("\($0)".contains("cannot import the PettingZoo environment module 'no_such_module_here'"), "\($0)")
        }
        var sac = OffPolicyConfiguration.defaults(algorithm: .sac, environment: Self.parallel.name)
        sac.steps = 100
        sac.warmupSteps = 10
        XCTAssertThrowsError(try sac.validate()) { XCTAssertTrue("\($0)".contains("use masac"), "\($0)") }
    }

    /// Copies reset together wait for each other with a Python environment too, and a checkpointed
    /// MASAC run on it resumes with new episodes, the same way twice.
    func testMASACOnAPettingZooEnvironmentResumesWithNewEpisodes() throws {
        let vector = try MultiAgentVectorEnvironment(spec: Self.parallel, count: 2, mode: .resetTogether)
        try vector.reset(seed: 1)
        let actions = [Float](repeating: 1, count: 6)
        for _ in 0..<4 { try vector.step(actions) }
        XCTAssertEqual(vector.episodeLengths, [0, 0], "both copies ended at step 4 and were reset together")
        XCTAssertEqual(vector.totalSteps, 8)

        func make() throws -> OffPolicyTrainer {
            var c = OffPolicyConfiguration.defaults(algorithm: .masac, environment: Self.parallel.name)
            c.steps = 240
            c.warmupSteps = 40
            c.evaluationInterval = 120
            c.evaluationEpisodes = 5  // more than the evaluation's Python copies: run in rounds
            c.environments = 2
            c.resetMode = .resetTogether
            c.agent.hiddenSize = 8
            c.agent.headHiddenSizes = [16]
            c.agent.batchSize = 4
            c.agent.sampler.sequenceLength = 4
            return try OffPolicyTrainer(configuration: c)
        }
        let first = try stoppedAndResumedTwice(make, stopAt: { $0.step == 102 },  // 3 steps into the copies' episodes
                                               weights: { $0.agent.namedParameters().map { $0.parameter.value.array } }) { resumed in
            XCTAssertEqual(resumed.environments.episodeLengths, [0, 0], "new episodes")
            XCTAssertEqual(resumed.actorState.array.map { abs($0) }.max(), 0, "the actors start the new episodes from zeros")
        }
        XCTAssertEqual(first.environments.episodeLengths, [3, 3])
    }

    /// lbforaging's own environment through the bridge: 2 agents, 6 actions, the same observation
    /// space as our `foraging` (which is matched step for step against it by ForagingTests), its
    /// 50-step limit, and food rewards in [0, 1].
    func testLBForagingThroughTheBridge() throws {
        let (status, output) = try runPython("import lbforaging; print('ok')", arguments: [])
        if status != 0 { throw XCTSkip("lbforaging is not installed: \(output)") }
        let env = try PythonMultiAgentEnvironment(spec: EnvironmentSpec("gym:Foraging-8x8-2p-2f-v3", modules: ["lbforaging"]))
        XCTAssertEqual(env.agents, 2)
        XCTAssertEqual(env.actionSpace, .discrete(6))
        XCTAssertEqual(env.maxEpisodeSteps, 50)
        let ours = try EnvironmentRegistry.makeMultiAgent("foraging")
        XCTAssertEqual(env.observationSpace, ours.observationSpace)
        var observations = [Float](repeating: 0, count: 24), rewards = [Float](repeating: 0, count: 2), active = [true, true]
        try env.reset(seed: 3, observations: &observations)
        XCTAssertTrue(ours.observationSpace.contains(observations) && ours.observationSpace.contains(Array(observations[12...])))
        var actions = RandomGenerator(seed: 5)
        var steps = 0, result = MultiAgentStepResult()
        while !result.done {
            let a: [Float] = [Float(actions.next() % 6), Float(actions.next() % 6)]
            result = try env.step(actions: a, observations: &observations, rewards: &rewards, active: &active)
            steps += 1
            XCTAssertTrue(rewards.allSatisfy { $0 >= 0 && $0 <= 1 }, "\(rewards)")
            XCTAssertTrue(ours.observationSpace.contains(observations))
        }
        XCTAssertTrue(result.terminated != result.truncated)
        XCTAssertEqual(steps == 50, result.truncated, "truncated exactly at the limit")
    }
}
