@testable import Agents
import Environments
import NeuralNetworks
import Replay
import Tensors
@testable import Training
import TestSupport
import XCTest

/// A small IPPO or MAPPO run of `rollouts` rollouts (`copies` x `rolloutSteps`), a metrics row after each:
/// the algorithm's defaults with networks of 8, chunks of 8, minibatches of 32 steps, 2 epochs.
func smallMultiAgentPPO(_ algorithm: String, environment: String, copies: Int, rolloutSteps: Int, rollouts: Int) -> PPOTrainingConfiguration {
    var c = PPOTrainingConfiguration.defaults(environment: environment, algorithm: algorithm)
    c.steps = rollouts * copies * rolloutSteps
    c.evaluationInterval = copies * rolloutSteps
    c.evaluationEpisodes = 2
    c.ppo.environments = copies
    c.ppo.rolloutSteps = rolloutSteps
    c.ppo.chunkLength = 8
    c.ppo.minibatchSize = 32
    c.ppo.epochs = 2
    c.ppo.hiddenSize = 8
    c.ppo.headHiddenSizes = [8]
    return c
}

/// IPPO and MAPPO collection: one rollout row per copy and agent, the team's reward, agents that
/// leave early, the central critic's input, action masks, time limits; same seed same run.
final class MultiAgentPPOTests: XCTestCase {
    override class func setUp() {
        super.setUp()
        try? EnvironmentRegistry.register("test-early-finish-team", summary: "two agents, one leaving at its second step") { _ in EarlyFinishTeam() }
    }

    func small(_ algorithm: String, environment: String, seed: UInt64 = 0, configure: (inout PPOTrainingConfiguration) -> Void = { _ in }) throws -> PPOTrainer {
        var c = smallMultiAgentPPO(algorithm, environment: environment, copies: 3, rolloutSteps: 24, rollouts: 3)
        c.seed = seed
        configure(&c)
        return try PPOTrainer(configuration: c)
    }

    /// Agent 1 of the early-finish team acts at its episode's first two steps only: its row ends
    /// (terminated, no bootstrap) at the step it leaves while agent 0's row runs on to the time
    /// limit (truncated, bootstrapped); its later steps are inactive. Every row trains on the
    /// team's reward, or (`sharedReward` off) its own.
    func testAnAgentThatLeavesEarlyEndsItsRow() throws {
        for shared in [true, false] {
            let trainer = try small("ippo", environment: "test-early-finish-team") {
                $0.ppo.sharedReward = shared
                $0.ppo.normalizeRewards = false
                $0.ppo.context = ContextInputs(observation: true, agentID: true)
            }
            try trainer.collect()
            let b = trainer.buffer
            XCTAssertEqual(b.envs, 6, "3 copies x 2 agents")
            var step = [Int](repeating: 0, count: 3), checked = 0
            for t in 0..<b.steps {
                for copy in 0..<3 {
                    if b.isEpisodeStart(t, 2 * copy) { step[copy] = 0 }
                    let s = step[copy], first = 2 * copy, second = first + 1
                    XCTAssertEqual(b.isEpisodeStart(t, first), b.isEpisodeStart(t, second), "a copy's rows start together")
                    XCTAssertTrue(b.isActive(t, first))
                    XCTAssertEqual(b.isActive(t, second), s < 2, "episode step \(s)")
                    XCTAssertEqual(b.isTerminated(t, second), s == 1, "agent 1 leaves at its second step, a terminal step for its row")
                    XCTAssertFalse(b.isTruncated(t, second), "an agent that left is not truncated with its copy")
                    XCTAssertFalse(b.isTerminated(t, first))
                    XCTAssertEqual(b.isTruncated(t, first), s == 4, "agent 0 runs on to the time limit")
                    if s < 2 {
                        let r0 = b.rewards.data[t * b.envs + first], r1 = b.rewards.data[t * b.envs + second]
                        // Each agent's own reward is -|a - 0.5| for its action clipped to [-1, 1]; the team's is their sum.
                        let own = [first, second].map { -abs(min(max(b.action(t, $0)[0], -1), 1) - 0.5) }
                        if shared {
                            XCTAssertEqual(r0, own[0] + own[1], accuracy: 1e-5, "the team's reward")
                            XCTAssertEqual(r1, r0)
                        } else {
                            XCTAssertEqual(r0, own[0], accuracy: 1e-6, "agent 0's own reward")
                            XCTAssertEqual(r1, own[1], accuracy: 1e-6, "agent 1's own reward")
                        }
                        checked += 1
                    }
                    step[copy] += 1
                }
            }
            XCTAssertGreaterThan(checked, 20)
            try trainer.advance()
            XCTAssertTrue(trainer.statistics.policyLoss.isFinite && trainer.statistics.valueLoss.isFinite)
        }
    }

    /// MAPPO's critic reads the copy's global state (normalised) and the agent's id; the actor its
    /// own observation and id; the stored masks are the environment's, and no sampled action is
    /// ruled out by them.
    func testMAPPOCriticReadsTheGlobalStateAndActionsRespectMasks() throws {
        let trainer = try small("mappo", environment: "foraging-8x8-2p-2f-coop") { $0.ppo.normalizeObservations = false }
        let agent = trainer.agent, b = trainer.buffer
        let g = trainer.environments.globalStateWidth, M = 2, Cc = agent.criticContextWidth, m = b.actionMaskWidth
        XCTAssertTrue(agent.hasCentralCritic)
        XCTAssertEqual(Cc, g + M)
        XCTAssertEqual(m, 6)
        // The first step's inputs are the environments' own (before any step).
        var expected = [Float](repeating: 0, count: trainer.environments.count * g)
        for i in 0..<trainer.environments.count { for j in 0..<g { expected[i * g + j] = trainer.environments.globalState(i)[j] } }
        let masks = Array(UnsafeBufferPointer(start: trainer.environments.actionMask(0), count: 3 * M * m))
        try trainer.collect()
        for n in 0..<b.envs {
            let row = Array(UnsafeBufferPointer(start: b.criticContexts.data + n * Cc, count: Cc))
            XCTAssertEqual(Array(row[0..<g]), Array(expected[(n / M) * g..<(n / M + 1) * g]), "row \(n): the copy's global state")
            XCTAssertEqual(Array(row[g...]), (0..<M).map { $0 == n % M ? 1 : 0 }, "row \(n): the agent's id")
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: b.actionMasks.data, count: 3 * M * m)), masks)
        var ruledOut = 0
        for t in 0..<b.steps {
            for n in 0..<b.envs {
                let mask = b.actionMasks.data + (t * b.envs + n) * m
                XCTAssertEqual(mask[Int(b.action(t, n)[0])], 1, "step \(t), row \(n): the action taken is available")
                ruledOut += (0..<m).filter { mask[$0] == 0 }.count
            }
        }
        XCTAssertGreaterThan(ruledOut, b.steps, "foraging rules actions out")
        try trainer.advance()
        XCTAssertTrue(trainer.statistics.policyLoss.isFinite && trainer.statistics.valueLoss.isFinite)
    }

    /// With time limits taken as terminal, a time-out ends the row without a bootstrap; by default
    /// it is a truncation that bootstraps from the last observation's value.
    func testTimeLimitsAreTruncationsUnlessAskedOtherwise() throws {
        for terminal in [false, true] {
            let trainer = try small("ippo", environment: "test-early-finish-team") {
                $0.ppo.timeLimitsTerminal = terminal
                $0.ppo.context = ContextInputs(observation: true, agentID: true)
            }
            try trainer.collect()
            let b = trainer.buffer
            var timeOuts = 0
            for t in 0..<b.steps where t + 1 < b.steps && b.isEpisodeStart(t + 1, 0) {
                XCTAssertEqual(b.isTruncated(t, 0), !terminal)
                XCTAssertEqual(b.isTerminated(t, 0), terminal)
                if !terminal { XCTAssertNotEqual(b.finalValues.data[t * b.envs], 0, "bootstrapped from the last observation's value") }
                timeOuts += 1
            }
            XCTAssertGreaterThan(timeOuts, 2)
        }
    }

    /// With unchanged weights, refreshing MAPPO's rollout (the central critic on its own inputs,
    /// time-outs bootstrapped from the last global state) recomputes what collection stored.
    func testRefreshingMAPPOWithUnchangedWeightsReproducesCollection() throws {
        let trainer = try small("mappo", environment: "foraging-8x8-2p-2f-coop") { $0.ppo.rolloutSteps = 64 }
        try trainer.collect()
        let b = trainer.buffer
        XCTAssertGreaterThan(b.truncated.array.reduce(0, +), 0, "the rollout holds time-outs")
        let kept = [b.actorStates, b.criticStates, b.values, b.finalValues, b.lastValues, b.advantages, b.returns].map(\.array)
        trainer.agent.refresh(b)
        let now = [b.actorStates, b.criticStates, b.values, b.finalValues, b.lastValues, b.advantages, b.returns].map(\.array)
        for (name, (a, c)) in zip(["actor states", "critic states", "values", "final values", "last values", "advantages", "returns"], zip(kept, now)) {
            XCTAssertLessThan(maxAbsDifference(a, c), 1e-5, name)
        }
    }

    /// The same seed gives the same metrics rows (timing aside); another seed differs.
    func testSameSeedSameMetrics() throws {
        for algorithm in ["ippo", "mappo"] {
            func rows(_ seed: UInt64) throws -> [MetricsRow] {
                // (NaN where nothing was measured yet, e.g. the training return before an episode ended, compares as itself.)
                try small(algorithm, environment: "foraging-8x8-2p-2f-coop", seed: seed).run().map { row in
                    var r = row
                    for c in MetricsRow.timingColumns { r[c] = nil }
                    for c in MetricsRow.ppoColumns where r[c]?.isNaN == true { r[c] = -12345 }
                    return r
                }
            }
            let a = try rows(1), b = try rows(1), c = try rows(2)
            XCTAssertEqual(a.count, 3, algorithm)
            XCTAssertEqual(a, b, algorithm)
            XCTAssertNotEqual(a, c, algorithm)
        }
    }

    /// Clear errors: MAPPO on an environment without a global state, the agent's id with one agent.
    func testMisconfigurationsAreClearErrors() throws {
        XCTAssertThrowsError(try small("mappo", environment: "test-early-finish-team")) { error in
            XCTAssertTrue("\(error)".contains("has none; train ippo"), "\(error)")
        }
        XCTAssertThrowsError(try small("ippo", environment: "cartpole-position")) { error in
            XCTAssertTrue("\(error)".contains("drop 'agentID'"), "\(error)")
        }
        var c = PPOTrainingConfiguration.defaults(environment: "cartpole-position")
        c.ppo.context.agentID = true
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("ppo trains one agent"), "\($0)") }
    }

    /// Recurrent MAPPO and IPPO solve team-recall (each agent must name the cue it saw five steps
    /// earlier; guessing scores 0.25) within 60k steps, and a feed-forward MAPPO stays near guessing.
    /// Measured over seeds 0-4 at 60k steps (release build, the defaults, 20 evaluation episodes):
    /// MAPPO and IPPO 1.0 on every seed (MAPPO 0.75-1.0 at 20k, 1.0 from 40k); a feed-forward MAPPO
    /// 0.28, 0.30, 0.28 (seeds 0-2). (Fails when the rows' states, the chunks, the agents' ids or
    /// the central critic's input are broken.)
    func testRecurrentAgentsSolveTeamRecallAndFeedForwardOnesCannot() throws {
        #if DEBUG
        throw XCTSkip("learning checks run in release builds (swift test -c release)")
        #else
        func train(_ algorithm: String, _ network: NetworkKind) throws -> Double {
            var c = PPOTrainingConfiguration.defaults(environment: "team-recall", algorithm: algorithm)
            c.steps = 60_000
            c.seed = 1
            c.evaluationInterval = c.steps
            c.evaluationEpisodes = 20
            c.ppo.network = network
            return try XCTUnwrap(try PPOTrainer(configuration: c).run().last?["eval_return_mean"])
        }
        XCTAssertGreaterThan(try train("mappo", .gru), 0.9, "recurrent MAPPO on team-recall")
        XCTAssertGreaterThan(try train("ippo", .gru), 0.9, "recurrent IPPO on team-recall")
        XCTAssertLessThan(try train("mappo", .mlp), 0.45, "a feed-forward agent cannot remember its cue (guessing: 0.25)")
        #endif
    }
}
