import AllocationCounter
import Agents
import Environments
import Tensors
@testable import Training
import XCTest

/// Once shapes are known, the training loops' steps allocate nothing (DESIGN §8): an off-policy
/// step (act, store, sample a sequence batch, update critics, actor and temperature) and a PPO
/// update. Counted as in AllocationTests (every heap allocation of the calling thread).
final class TrainingAllocationTests: XCTestCase {
    override func setUpWithError() throws {
        guard rrl_allocation_counting_available() != 0 else { throw XCTSkip("allocation counting needs glibc") }
        #if DEBUG
        throw XCTSkip("allocation-free training steps are a property of optimised builds: run `swift test -c release`")
        #endif
    }

    func countAllocations(_ body: () throws -> Void) rethrows -> Int {
        rrl_allocation_counting_start()
        try body()
        return rrl_allocation_counting_stop()
    }

    /// Recurrent SAC with stored states and burn-in, and TD3 with an LSTM: after the first
    /// updates, 300 further steps (episode ends included) allocate nothing. (Before, the
    /// non-finite check built an array of parameter lists after every update, and the lists of
    /// recent returns and of the replay's episodes grew on episode ends.)
    func testOffPolicyStepsAllocateNothing() throws {
        for algorithm in [OffPolicyAlgorithm.sac, .td3] {
            var c = OffPolicyConfiguration.defaults(algorithm: algorithm, environment: "pendulum-velocity")
            c.steps = 2000
            c.warmupSteps = 100
            c.agent.network = algorithm == .sac ? .gru : .lstm
            c.agent.hiddenSize = 16
            c.agent.headHiddenSizes = [32]
            c.agent.batchSize = 8
            c.agent.sampler.sequenceLength = 24
            c.agent.sampler.burnIn = 8
            c.agent.sampler.initialState = algorithm == .sac ? .storedBurnIn : .zero
            c.agent.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
            if algorithm == .td3 { c.environments = 4 }  // several copies: one batched act, one ring each
            let trainer = try OffPolicyTrainer(configuration: c)
            for _ in 0..<500 { try trainer.advance() }
            let episodes = trainer.episodes
            let allocations = try countAllocations { for _ in 0..<300 { try trainer.advance() } }
            XCTAssertGreaterThan(trainer.episodes, episodes, "episodes ended inside the counted steps")
            XCTAssertEqual(allocations, 0, "\(algorithm): 300 steps after warm-up allocated \(allocations) times")
        }
    }

    /// MASAC on team-recall with three copies reset together (waiting copies held), stored states and
    /// the global state in recurrent critics, discrete and continuous others' actions from the current
    /// policy, one shared actor or one per agent: 300 steps after the first updates allocate nothing.
    func testMASACStepsAllocateNothing() throws {
        for perAgent in [false, true] { try checkMASACStepsAllocateNothing(actorPerAgent: perAgent) }
    }

    func checkMASACStepsAllocateNothing(actorPerAgent: Bool) throws {
        var c = OffPolicyConfiguration.defaults(algorithm: .masac, environment: "team-recall")
        c.agent.actorPerAgent = actorPerAgent
        c.environmentOptions = ["agents": "3"]
        c.environments = 3
        c.resetMode = .resetTogether
        c.warmupSteps = 100
        c.agent.hiddenSize = 8
        c.agent.batchSize = 4
        c.agent.sampler.sequenceLength = 7
        c.agent.sampler.initialState = .stored
        c.agent.otherAgentsActions = .currentPolicy
        c.agent.context = ContextInputs(observation: true, lastAction: true, lastReward: true, agentID: true)
        let trainer = try OffPolicyTrainer(configuration: c)
        for _ in 0..<300 { try trainer.advance() }
        let episodes = trainer.episodes
        let allocations = try countAllocations { for _ in 0..<300 { try trainer.advance() } }
        XCTAssertGreaterThan(trainer.episodes, episodes, "episodes ended inside the counted steps")
        XCTAssertEqual(allocations, 0, "masac (one actor per agent: \(actorPerAgent)): 300 steps after warm-up allocated \(allocations) times")
    }

    /// VDN and QMIX (the mixer on the global state, TD(λ), two copies; foraging's action masks): 300
    /// steps after the first updates allocate nothing.
    func testValueDecompositionStepsAllocateNothing() throws {
        for (algorithm, environment) in [(OffPolicyAlgorithm.qmix, "team-recall"), (.vdn, "team-recall"), (.qmix, "foraging")] {
            var c = OffPolicyConfiguration.defaults(algorithm: algorithm, environment: environment)
            c.environments = 2
            c.warmupSteps = 100
            c.agent.hiddenSize = 8
            c.agent.batchSize = 4
            c.agent.criticUpdateInterval = 4
            c.agent.sampler.sequenceLength = 7
            c.agent.valueDecomposition!.lambda = 0.8
            let trainer = try OffPolicyTrainer(configuration: c)
            for _ in 0..<300 { try trainer.advance() }
            let allocations = try countAllocations { for _ in 0..<300 { try trainer.advance() } }
            XCTAssertGreaterThan(trainer.agent.criticUpdates, 100)
            XCTAssertEqual(allocations, 0, "\(algorithm) on \(environment): 300 steps after warm-up allocated \(allocations) times")
        }
    }

    /// Recurrent PPO (LSTM, refreshed states, normalised observations): after a first rollout and
    /// update, collecting another rollout and updating on it allocate nothing.
    func testPPORolloutAndUpdateAllocateNothing() throws {
        var c = PPOTrainingConfiguration.defaults(environment: "cartpole-position")
        c.ppo.environments = 4
        c.ppo.rolloutSteps = 32
        c.ppo.minibatchSize = 32
        c.ppo.epochs = 2
        c.ppo.hiddenSize = 16
        c.ppo.headHiddenSizes = [16]
        c.ppo.refreshStates = true
        try assertRolloutAndUpdateAllocateNothing(try PPOTrainer(configuration: c), "recurrent PPO")
    }

    /// Two rollouts and updates to warm up, then one more, counted.
    func assertRolloutAndUpdateAllocateNothing(_ trainer: PPOTrainer, _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        for _ in 0..<2 {
            try trainer.collect()
            _ = trainer.agent.update(trainer.buffer, progressRemaining: 0.5)
        }
        let allocations = try countAllocations {
            try trainer.collect()
            _ = trainer.agent.update(trainer.buffer, progressRemaining: 0.5)
        }
        XCTAssertEqual(allocations, 0, "\(label): a rollout and update after warm-up allocated \(allocations) times", file: file, line: line)
    }

    /// MAPPO (central critic, masks, refreshing) and IPPO on cooperative foraging: after a first
    /// rollout and update, collecting another rollout (truncations included) and updating allocate nothing.
    func testMultiAgentPPORolloutAndUpdateAllocateNothing() throws {
        for algorithm in ["mappo", "ippo"] {
            var c = smallMultiAgentPPO(algorithm, environment: "foraging-8x8-2p-2f-coop", copies: 4, rolloutSteps: 64, rollouts: 1)
            c.ppo.refreshStates = algorithm == "mappo"
            let trainer = try PPOTrainer(configuration: c)
            try assertRolloutAndUpdateAllocateNothing(trainer, algorithm)
            XCTAssertGreaterThan(trainer.buffer.truncated.array.reduce(0, +), 0, "the rollout holds time-outs")
        }
    }
}
