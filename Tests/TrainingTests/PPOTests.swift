@testable import Agents
import Environments
import NeuralNetworks
import Replay
import Tensors
@testable import Training
import TestSupport
import XCTest


/// Observations [step within the episode, copy id]; copy i's episodes last `length` steps and end
/// terminated (odd lengths) or truncated (even lengths).
final class FixedLengthEnvironment: Environment {
    let length: Int, id: Float
    var t = 0
    init(length: Int, id: Int) { self.length = length; self.id = Float(id) }
    var name: String { "fixed-length" }
    var observationSpace: Space { .box(low: [0, 0], high: [100, 100]) }
    var actionSpace: Space { .discrete(2) }
    var maxEpisodeSteps: Int { length }
    func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
        t = 0
        observation[0] = 0; observation[1] = id
    }
    func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
        t += 1
        observation[0] = Float(t); observation[1] = id
        return StepResult(reward: 1, terminated: t == length && length % 2 == 1, truncated: t == length && length % 2 == 0)
    }
}

final class PPOMechanicsTests: XCTestCase {
    /// GAE(λ) and TD(λ) by hand: env 0 is truncated at step 1 (bootstraps from its final value),
    /// env 1 terminates at step 1 (no bootstrap, its final value ignored); both bootstrap from
    /// the last value after step 2.
    func testGAEAndLambdaReturnsMatchHandComputedValues() {
        let T = 3, N = 2
        // Time-major [t * N + n].
        let rewards: [Float] = [1, 1, 2, 2, 3, 3]
        let values: [Float] = [0.5, 0.5, 1.0, 1.0, 1.5, 1.5]
        let terminated: [Float] = [0, 0, 0, 1, 0, 0]
        let truncated: [Float] = [0, 0, 1, 0, 0, 0]
        let finalValues: [Float] = [0, 0, 2.0, 99, 0, 0]
        let lastValues: [Float] = [4, 4]
        var advantages = [Float](repeating: 0, count: T * N), returns = advantages
        ReturnEstimators.generalizedAdvantages(rewards: rewards, values: values, terminated: terminated, truncated: truncated,
                                               finalValues: finalValues, lastValues: lastValues, steps: T, envs: N,
                                               gamma: 0.9, lambda: 0.8, into: &advantages)
        ReturnEstimators.lambdaReturns(rewards: rewards, values: values, terminated: terminated, truncated: truncated,
                                       finalValues: finalValues, lastValues: lastValues, steps: T, envs: N,
                                       gamma: 0.9, lambda: 0.8, into: &returns)
        // Env 0: A2 = 3 + 0.9·4 - 1.5 = 5.1; A1 = 2 + 0.9·2 - 1 = 2.8 (truncated); A0 = 1 + 0.9·1 - 0.5 + 0.72·2.8 = 3.416.
        // Env 1: A1 = 2 - 1 = 1 (terminated); A0 = 1.4 + 0.72·1 = 2.12.
        let expectedAdvantages: [Float] = [3.416, 2.12, 2.8, 1.0, 5.1, 5.1]
        // G2 = 6.6; env 0: G1 = 2 + 0.9·2 = 3.8, G0 = 1 + 0.9(0.2·1 + 0.8·3.8) = 3.916; env 1: G1 = 2, G0 = 1 + 0.9(0.2 + 1.6) = 2.62.
        let expectedReturns: [Float] = [3.916, 2.62, 3.8, 2.0, 6.6, 6.6]
        for i in 0..<(T * N) {
            XCTAssertEqual(advantages[i], expectedAdvantages[i], accuracy: 1e-5, "advantage \(i)")
            XCTAssertEqual(returns[i], expectedReturns[i], accuracy: 1e-5, "return \(i)")
            XCTAssertEqual(returns[i], advantages[i] + values[i], accuracy: 1e-5, "TD(λ) = GAE + V with fixed values")
        }
    }

    /// Advantages as the TD(λ) return minus the value (the return by its recursion) equal GAE(λ)
    /// over rollouts with terminated and truncated ends, to rounding.
    func testLambdaReturnAdvantagesEqualGAE() {
        let T = 40, N = 5
        var rng = RandomGenerator(seed: 8)
        let buffer = RolloutBuffer(steps: T, envs: N, contextWidth: 1, actionWidth: 1, actorStateWidth: 0, criticStateWidth: 0)
        for i in 0..<(T * N) {
            buffer.rewards.data[i] = rng.normal()
            buffer.values.data[i] = rng.normal()
            let u = rng.uniform()
            buffer.terminated.data[i] = u < 0.05 ? 1 : 0
            buffer.truncated.data[i] = u >= 0.05 && u < 0.1 ? 1 : 0
            buffer.finalValues.data[i] = rng.normal()
        }
        for n in 0..<N { buffer.lastValues.data[n] = rng.normal() }
        XCTAssertGreaterThan(buffer.terminated.array.reduce(0, +), 3)
        XCTAssertGreaterThan(buffer.truncated.array.reduce(0, +), 3)
        buffer.computeAdvantagesAndReturns(gamma: 0.97, lambda: 0.9)
        let gae = buffer.advantages.array, returns = buffer.returns.array
        buffer.advantages.zero()
        buffer.computeAdvantagesAndReturns(gamma: 0.97, lambda: 0.9, lambdaReturnAdvantages: true)
        XCTAssertEqual(buffer.returns.array, returns)
        XCTAssertLessThan(maxAbsDifference(buffer.advantages.array, gae), 1e-4)
        for i in 0..<(T * N) { XCTAssertEqual(buffer.advantages.data[i], returns[i] - buffer.values.data[i]) }
    }

    /// A copy whose episode ends is reset alone: the others keep counting, the ended one shows its
    /// final observation in `finalObservations` and starts again from 0.
    func testVectorEnvironmentResetsOnlyTheCopyThatEnded() throws {
        let vector = VectorEnvironment([FixedLengthEnvironment(length: 2, id: 0), FixedLengthEnvironment(length: 3, id: 1),
                                        FixedLengthEnvironment(length: 5, id: 2)])
        try vector.reset(seed: 0)
        let actions = [Float](repeating: 0, count: 3)
        var counters = [0, 0, 0]
        let lengths = [2, 3, 5]
        for _ in 0..<12 {
            try vector.step(actions)
            for i in 0..<3 {
                counters[i] += 1
                let ended = counters[i] == lengths[i]
                XCTAssertEqual(vector.episodeStarts[i], ended)
                XCTAssertEqual(vector.terminated[i], ended && lengths[i] % 2 == 1)
                XCTAssertEqual(vector.truncated[i], ended && lengths[i] % 2 == 0)
                if ended {
                    XCTAssertEqual(vector.finalObservation(i)[0], Float(lengths[i]))
                    counters[i] = 0
                }
                XCTAssertEqual(vector.observation(i)[0], Float(counters[i]), "copy \(i) shows its own step count")
                XCTAssertEqual(vector.observation(i)[1], Float(i))
            }
        }
        var finished = 0
        vector.drainFinishedEpisodes { _, _ in finished += 1 }
        XCTAssertEqual(finished, 6 + 4 + 2)
    }

    /// An action outside the space names the environment, the copy and the step.
    func testVectorEnvironmentRefusesActionsOutsideTheSpace() throws {
        let vector = VectorEnvironment([FixedLengthEnvironment(length: 2, id: 0)])
        try vector.reset(seed: 0)
        XCTAssertThrowsError(try vector.step([5])) { error in
            XCTAssertTrue("\(error)".contains("fixed-length") && "\(error)".contains("outside the action space"), "\(error)")
        }
    }

    /// A NaN observation or an infinite reward from a copy is an error naming the environment, the
    /// copy and the episode step (training never sees the value).
    func testVectorEnvironmentRefusesNonFiniteObservationsAndRewards() throws {
        final class Faulty: Environment {
            let badObservation: Bool
            var t = 0
            init(badObservation: Bool) { self.badObservation = badObservation }
            var name: String { "faulty" }
            var observationSpace: Space { .box(low: [-10], high: [10]) }
            var actionSpace: Space { .discrete(2) }
            var maxEpisodeSteps: Int { 20 }
            func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) { t = 0; observation[0] = 0 }
            func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
                t += 1
                observation[0] = badObservation && t == 3 ? .nan : 0
                return StepResult(reward: !badObservation && t == 4 ? .infinity : 0, truncated: t == 20)
            }
        }
        for (bad, phrase) in [(true, "copy 1, episode step 3: observation[0] is nan"), (false, "copy 1, episode step 4: reward is inf")] {
            let vector = VectorEnvironment([FixedLengthEnvironment(length: 50, id: 0), Faulty(badObservation: bad)])
            try vector.reset(seed: 0)
            XCTAssertThrowsError(try (0..<5).forEach { _ in try vector.step([0, 1]) }) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("environment 'faulty'") && message.contains(phrase), message)
            }
        }
    }

    func makeTrainer(environment: String = "pendulum-velocity", seed: UInt64 = 4, configure: (inout PPOTrainingConfiguration) -> Void = { _ in }) throws -> PPOTrainer {
        var c = PPOTrainingConfiguration()
        c.environment = environment
        c.seed = seed
        c.steps = 3 * 4 * 230
        c.evaluationEpisodes = 2
        c.evaluationInterval = 1000
        c.ppo.network = .gru
        c.ppo.hiddenSize = 8
        c.ppo.headHiddenSizes = [8]
        c.ppo.environments = 3
        c.ppo.rolloutSteps = 230  // longer than an episode: truncations inside the rollout
        c.ppo.chunkLength = 16
        c.ppo.minibatchSize = 64
        c.ppo.epochs = 2
        c.ppo.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        configure(&c)
        return try PPOTrainer(configuration: c)
    }

    /// With unchanged weights, refreshing re-computes exactly what collection stored: the states
    /// entering every step (each copy's own, reset only at its episode starts), the values, the
    /// bootstrap values of truncated steps and of the step after the rollout, and the advantages.
    func testRefreshingWithUnchangedWeightsReproducesStoredStates() throws {
        for shared in [false, true] {
            let trainer = try makeTrainer { $0.ppo.sharedEncoder = shared; $0.ppo.network = shared ? .lstm : .gru }
            try trainer.collect()
            let b = trainer.buffer
            XCTAssertGreaterThan(b.truncated.array.reduce(0, +), 0, "the rollout holds truncated steps")
            let kept = [b.actorStates, b.criticStates, b.values, b.finalValues, b.lastValues, b.lastActorStates, b.advantages, b.returns].map(\.array)
            XCTAssertTrue(b.actorStates.array.contains { $0 != 0 })
            trainer.agent.refresh(b)
            let now = [b.actorStates, b.criticStates, b.values, b.finalValues, b.lastValues, b.lastActorStates, b.advantages, b.returns].map(\.array)
            let names = ["actor states", "critic states", "values", "final values", "last values", "last actor states", "advantages", "returns"]
            for (name, (a, c)) in zip(names, zip(kept, now)) {
                XCTAssertLessThan(maxAbsDifference(a, c), 1e-5, "shared \(shared): \(name)")
            }
            // Episode starts hold zero states; a copy's state is zero only there.
            let N = b.envs, Sa = b.actorStateWidth
            for t in 0..<b.steps {
                for n in 0..<N {
                    let zero = (0..<Sa).allSatisfy { b.actorState(t, n)[$0] == 0 }
                    XCTAssertEqual(zero, b.isEpisodeStart(t, n), "t \(t), copy \(n)")
                }
            }
        }
    }

    /// `refreshAdvantages` false rewrites the states as a full refresh does and leaves the values,
    /// bootstrap values, advantages and returns of collection; a full refresh with changed weights
    /// rewrites them.
    func testRefreshingStatesOnlyKeepsTheCollectedAdvantages() throws {
        var states: [[Float]] = []
        for advantages in [false, true] {
            let trainer = try makeTrainer { $0.ppo.refreshStates = true; $0.ppo.refreshAdvantages = advantages }
            try trainer.collect()
            let b = trainer.buffer
            func kept() -> [[Float]] { [b.values, b.finalValues, b.lastValues, b.advantages, b.returns].map(\.array) }
            let collected = kept(), collectedStates = b.actorStates.array
            var rng = RandomGenerator(seed: 9)
            for p in trainer.agent.namedParameters() {
                for i in 0..<p.parameter.value.count { p.parameter.value.data[i] += 0.05 * rng.normal() }
            }
            trainer.agent.refresh(b)
            XCTAssertGreaterThan(maxAbsDifference(collectedStates, b.actorStates.array), 1e-3, "the states are rewritten")
            states.append(b.actorStates.array + b.criticStates.array)
            let names = ["values", "final values", "last values", "advantages", "returns"]
            for (name, (a, c)) in zip(names, zip(collected, kept())) {
                if advantages {
                    XCTAssertGreaterThan(maxAbsDifference(a, c), 1e-3, "a full refresh rewrites the \(name)")
                } else {
                    XCTAssertEqual(a, c, "a states-only refresh keeps the \(name)")
                }
            }
        }
        XCTAssertEqual(states[0], states[1], "both refreshes give the same states")
    }

    /// The same seed gives the same metrics rows (timing aside); another seed differs.
    func testSameSeedSameMetrics() throws {
        func rows(_ seed: UInt64) throws -> [MetricsRow] {
            let trainer = try makeTrainer(environment: "cartpole-position", seed: seed) {
                $0.steps = 3 * 230 * 3
                $0.evaluationInterval = 600
            }
            return try trainer.run().map { row in
                var r = row
                for c in MetricsRow.timingColumns { r[c] = nil }
                return r
            }
        }
        let a = try rows(1), b = try rows(1), c = try rows(2)
        XCTAssertEqual(a.count, 3)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }

    /// KL early stopping ends the epochs early; the hard limit undoes the step that crossed it.
    func testKLEarlyStoppingAndHardLimit() throws {
        let early = try makeTrainer { $0.ppo.targetKL = 1e-6; $0.ppo.epochs = 10 }
        try early.advance()
        XCTAssertTrue(early.statistics.stoppedEarly)
        XCTAssertLessThan(early.statistics.epochs, 10)
        XCTAssertGreaterThan(early.statistics.gradientSteps, 0)

        let hard = try makeTrainer { $0.ppo.klHardLimit = 1e-6; $0.ppo.epochs = 10 }
        let before = hard.agent.namedParameters().map(\.parameter.value.array)
        try hard.advance()
        XCTAssertTrue(hard.statistics.restored)
        XCTAssertEqual(hard.statistics.gradientSteps, 1, "one step was taken, then undone")
        let after = hard.agent.namedParameters().map(\.parameter.value.array)
        XCTAssertEqual(before, after, "the weights from before the update are back")

        let free = try makeTrainer { $0.ppo.epochs = 10 }
        try free.advance()
        XCTAssertFalse(free.statistics.stoppedEarly)
        XCTAssertEqual(free.statistics.epochs, 10)
    }
}
