import Tensors

/// The built-in environments by name.
public enum EnvironmentRegistry {
    /// A built-in environment: its name, a one-line description, and how to make one.
    public struct Entry: Sendable {
        public let name: String
        public let summary: String
        public let make: @Sendable () -> any Environment
    }

    /// Every built-in environment, in the order `rrl list` shows them.
    public static let entries: [Entry] = [
        Entry(name: "memory", summary: "count the ones among the last 10 bits shown (needs memory; 2000 steps)") { MemoryTask() },
        Entry(name: "pendulum", summary: "Gymnasium Pendulum-v1: swing up and balance (200 steps)") { Pendulum(view: .full) },
        Entry(name: "pendulum-position", summary: "Pendulum showing only cos θ and sin θ (velocity hidden)") { Pendulum(view: .position) },
        Entry(name: "pendulum-velocity", summary: "Pendulum showing only θ̇ (angle hidden)") { Pendulum(view: .velocity) },
        Entry(name: "cartpole", summary: "Gymnasium CartPole-v1: balance a pole on a cart (500 steps)") { CartPole(view: .full) },
        Entry(name: "cartpole-position", summary: "CartPole showing only x and θ (velocities hidden)") { CartPole(view: .position) },
        Entry(name: "cartpole-velocity", summary: "CartPole showing only ẋ and θ̇ (positions hidden)") { CartPole(view: .velocity) },
        Entry(name: "repeat-previous", summary: "POPGym-style: name the suit of the card dealt 4 steps ago (52 steps)") { RepeatPrevious() },
        Entry(name: "count-recall", summary: "POPGym-style: how many cards of the queried rank were dealt so far (52 steps)") { CountRecall() },
        Entry(name: "goal-cycle", summary: "gridworld, 5x5 egocentric view: visit 3 look-alike goals in a hidden cyclic order (200 steps)") { GoalCycle() },
    ]

    public static var names: [String] { entries.map(\.name) }

    /// A new environment, or an error naming the valid choices (and the closest one).
    public static func make(_ name: String) throws -> any Environment {
        if let entry = entries.first(where: { $0.name == name }) { return entry.make() }
        let nearest = names.min { editDistance($0, name) < editDistance($1, name) }!
        throw EnvironmentError(environment: name, message: "unknown environment; did you mean '\(nearest)'? Available: \(names.joined(separator: ", "))")
    }
}

/// Checks that an environment keeps its contract (after Gymnasium's and SB3's env checkers):
/// observations of the right width, inside the observation space and finite; finite rewards;
/// truncation exactly at `maxEpisodeSteps` unless terminated earlier; the same seed giving the
/// same episode; and random actions from the action space accepted.
public enum EnvironmentChecker {
    /// Returns nothing when the environment passes; otherwise throws with the first problem.
    public static func check(_ env: any Environment, episodes: Int = 3, seed: UInt64 = 0) throws {
        let obsWidth = env.observationSpace.width, actWidth = env.actionSpace.width
        func fail(_ message: String) -> EnvironmentError { EnvironmentError(environment: env.name, message: message) }
        guard obsWidth > 0, actWidth > 0 else { throw fail("observation and action spaces must be non-empty") }
        guard env.maxEpisodeSteps > 0 else { throw fail("maxEpisodeSteps must be positive") }
        let observation = UnsafeMutablePointer<Float>.allocate(capacity: obsWidth + 1)
        let action = UnsafeMutablePointer<Float>.allocate(capacity: actWidth)
        defer { observation.deallocate(); action.deallocate() }

        func episode(seed: UInt64, actions: inout RandomGenerator) throws -> [Float] {
            var trace: [Float] = []
            observation[obsWidth] = 12345  // sentinel: nothing may be written past the width
            env.reset(seed: seed, observation: observation)
            try verify(step: 0)
            trace += Array(UnsafeBufferPointer(start: observation, count: obsWidth))
            for t in 1...env.maxEpisodeSteps {
                env.actionSpace.sample(into: action, using: &actions)
                let result = env.step(action: action, observation: observation)
                try verify(step: t)
                guard result.reward.isFinite else { throw fail("step \(t) returned reward \(result.reward)") }
                trace += Array(UnsafeBufferPointer(start: observation, count: obsWidth)) + [result.reward]
                if result.terminated && result.truncated { throw fail("step \(t) is both terminated and truncated") }
                if result.truncated && t != env.maxEpisodeSteps { throw fail("step \(t) truncated before the limit \(env.maxEpisodeSteps)") }
                if result.done { return trace }
            }
            throw fail("episode ran past maxEpisodeSteps = \(env.maxEpisodeSteps) without truncation")
        }

        func verify(step t: Int) throws {
            guard observation[obsWidth] == 12345 else { throw fail("step \(t) wrote past the observation width \(obsWidth)") }
            for i in 0..<obsWidth where !observation[i].isFinite {
                throw fail("step \(t): observation[\(i)] is \(observation[i])")
            }
            guard env.observationSpace.contains(observation) else {
                throw fail("step \(t): observation \(Array(UnsafeBufferPointer(start: observation, count: obsWidth))) is outside \(env.observationSpace)")
            }
        }

        for e in 0..<episodes {
            let episodeSeed = seed &+ UInt64(e)
            var actionsA = RandomGenerator(seed: 1000 &+ UInt64(e)), actionsB = actionsA
            let first = try episode(seed: episodeSeed, actions: &actionsA)
            let second = try episode(seed: episodeSeed, actions: &actionsB)
            guard first == second else { throw fail("the same seed and actions gave different episodes: reset(seed:) must fix the randomness") }
        }
    }
}
