import Foundation
import Tensors

/// Options for making an environment, as `key=value` text (from `--env-option` or a configuration
/// file's `environmentOptions`). A maker reads them with `int`, `float` or `string`; `EnvironmentRegistry`
/// refuses keys the environment does not declare, and a value that does not parse or is out of range
/// is an error that names it.
public struct EnvironmentOptions: Sendable {
    public let environment: String
    public let values: [String: String]

    public init(environment: String, values: [String: String] = [:]) {
        self.environment = environment
        self.values = values
    }

    func fail(_ key: String, _ what: String) -> EnvironmentError {
        EnvironmentError(environment: environment, message: "option \(key)=\(values[key] ?? "") \(what)")
    }

    /// A whole number in `range` (the default when the option is not given).
    public func int(_ key: String, default value: Int, in range: ClosedRange<Int>) throws -> Int {
        guard let text = values[key] else { return value }
        guard let v = Int(text) else { throw fail(key, "is not a whole number") }
        guard range.contains(v) else { throw fail(key, "must be in \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    /// A finite number in `range`.
    public func float(_ key: String, default value: Float, in range: ClosedRange<Float>) throws -> Float {
        guard let text = values[key] else { return value }
        guard let v = Float(text), v.isFinite else { throw fail(key, "is not a finite number") }
        guard range.contains(v) else { throw fail(key, "must be in \(range.lowerBound)...\(range.upperBound)") }
        return v
    }

    /// A string option.
    public func string(_ key: String, default value: String) -> String { values[key] ?? value }
}

/// The environments by name: the built-in ones, and any a library user registers.
///
/// ```swift
/// EnvironmentRegistry.register("light-switch", summary: "remember which light was on",
///                              options: ["delay": "steps between cue and choice (default 5)"]) { options in
///     LightSwitch(delay: try options.int("delay", default: 5, in: 1...100))
/// }
/// // then: OffPolicyConfiguration.defaults(algorithm: .sac, environment: "light-switch"), or
/// // `--env light-switch --env-option delay=8` in a program that registered it
/// ```
public enum EnvironmentRegistry {
    /// An environment: its name, a one-line description, its options (name: meaning), and how to
    /// make one from its options.
    public struct Entry: Sendable {
        public let name: String
        public let summary: String
        public let options: [String: String]
        /// Makes a single-agent environment (for a multi-agent one: an error that says so).
        public let make: @Sendable (EnvironmentOptions) throws -> any Environment
        /// Makes a multi-agent environment (nil for single-agent ones, which multi-agent training adapts as one agent).
        public let makeMultiAgent: (@Sendable (EnvironmentOptions) throws -> any MultiAgentEnvironment)?

        public init(name: String, summary: String, options: [String: String] = [:],
                    make: @escaping @Sendable (EnvironmentOptions) throws -> any Environment) {
            self.name = name
            self.summary = summary
            self.options = options
            self.make = make
            makeMultiAgent = nil
        }

        /// A multi-agent environment.
        public init(name: String, summary: String, options: [String: String] = [:],
                    makeMultiAgent: @escaping @Sendable (EnvironmentOptions) throws -> any MultiAgentEnvironment) {
            self.name = name
            self.summary = summary
            self.options = options
            self.makeMultiAgent = makeMultiAgent
            make = { options in
                let env = try makeMultiAgent(options)
                throw EnvironmentError(environment: name, message: "has \(env.agents) agents; train it with a multi-agent algorithm (masac)")
            }
        }

        public var isMultiAgent: Bool { makeMultiAgent != nil }
    }

    static let steps = "episode length limit"

    /// An environment whose only option is its episode length limit (`steps`, default `limit`).
    static func limited(_ name: String, _ summary: String, _ limit: Int, make: @escaping @Sendable (Int) -> any Environment) -> Entry {
        Entry(name: name, summary: summary, options: ["steps": steps + " (default \(limit))"]) {
            make(try $0.int("steps", default: limit, in: 1...10_000_000))
        }
    }

    /// The built-in environments, in the order `rrl list` shows them.
    public static let builtIn: [Entry] = [
        Entry(name: "memory", summary: "count the ones among the last 10 bits shown (needs memory; 2000 steps)",
              options: ["horizon": "how many of the last bits to count (default 10)", "steps": steps + " (default 2000)"]) {
            MemoryTask(horizon: try $0.int("horizon", default: 10, in: 1...1000), maxEpisodeSteps: try $0.int("steps", default: 2000, in: 1...10_000_000))
        },
        limited("pendulum", "Gymnasium Pendulum-v1: swing up and balance (200 steps)", 200) { Pendulum(view: .full, maxEpisodeSteps: $0) },
        limited("pendulum-position", "Pendulum showing only cos θ and sin θ (velocity hidden)", 200) { Pendulum(view: .position, maxEpisodeSteps: $0) },
        limited("pendulum-velocity", "Pendulum showing only θ̇ (angle hidden)", 200) { Pendulum(view: .velocity, maxEpisodeSteps: $0) },
        Entry(name: "pendulum-random-mass", summary: "Pendulum whose mass and gravity are drawn anew each episode and never shown (200 steps)",
              options: ["mass-low": "the mass's range, low end (default 0.5)", "mass-high": "high end (default 2)",
                        "gravity-low": "gravity's range, low end (default 5)", "gravity-high": "high end (default 15)",
                        "steps": steps + " (default 200)"]) { o in
            let mass = (try o.float("mass-low", default: 0.5, in: 0.01...100), try o.float("mass-high", default: 2, in: 0.01...100))
            let gravity = (try o.float("gravity-low", default: 5, in: 0...100), try o.float("gravity-high", default: 15, in: 0...100))
            guard mass.0 <= mass.1 else { throw o.fail("mass-low", "must not exceed mass-high (\(mass.1))") }
            guard gravity.0 <= gravity.1 else { throw o.fail("gravity-low", "must not exceed gravity-high (\(gravity.1))") }
            return Pendulum(view: .full, maxEpisodeSteps: try o.int("steps", default: 200, in: 1...10_000_000),
                            massRange: Double(mass.0)...Double(mass.1), gravityRange: Double(gravity.0)...Double(gravity.1))
        },
        limited("cartpole", "Gymnasium CartPole-v1: balance a pole on a cart (500 steps)", 500) { CartPole(view: .full, maxEpisodeSteps: $0) },
        limited("cartpole-position", "CartPole showing only x and θ (velocities hidden)", 500) { CartPole(view: .position, maxEpisodeSteps: $0) },
        limited("cartpole-velocity", "CartPole showing only ẋ and θ̇ (positions hidden)", 500) { CartPole(view: .velocity, maxEpisodeSteps: $0) },
        Entry(name: "repeat-previous", summary: "POPGym-style: name the suit of the card dealt 4 steps ago (52 steps)",
              options: ["lag": "how many cards back to name (default 4)", "decks": "decks in the shoe (default 1)"]) {
            RepeatPrevious(lag: try $0.int("lag", default: 4, in: 1...51), decks: try $0.int("decks", default: 1, in: 1...100))
        },
        Entry(name: "count-recall", summary: "POPGym-style: how many cards of the queried rank were dealt so far (52 steps)",
              options: ["decks": "decks in the shoe (default 1)"]) {
            CountRecall(decks: try $0.int("decks", default: 1, in: 1...100))
        },
        Entry(name: "t-maze", summary: "passive T-maze: walk a corridor, then turn to the arm shown at the first step only (needs memory)",
              options: ["length": "the corridor's length (default 50)", "penalty": "cost of a step that does not walk on (default 1/length)",
                        "steps": "the task's horizon, a terminal end (default length + 1)",
                        "continuous": "1: four scores in [-1, 1], the highest one's move taken (default 0: 4 discrete actions)"]) { o in
            let length = try o.int("length", default: 50, in: 1...1_000_000)
            return TMaze(length: length, penalty: try o.float("penalty", default: 1 / Float(length), in: 0...100),
                         maxEpisodeSteps: try o.int("steps", default: length + 1, in: 1...10_000_000),
                         continuousActions: try o.int("continuous", default: 0, in: 0...1) == 1)
        },
        Entry(name: "goal-cycle", summary: "gridworld, 5x5 egocentric view: visit 3 look-alike goals in a hidden cyclic order (200 steps)",
              options: ["size": "the grid's side (default 5)", "goals": "goals in the cycle (default 3)", "view": "the odd side of the egocentric view (default 5)",
                        "penalty": "reward for a wrong goal, negated (default 0.25)", "obstacles": "wall tiles inside the room (default 0)",
                        "steps": steps + " (default 200)"]) { o in
            let size = try o.int("size", default: 5, in: 3...64)
            let view = try o.int("view", default: 5, in: 1...63)
            guard view % 2 == 1 else { throw o.fail("view", "must be odd") }
            let goals = try o.int("goals", default: 3, in: 2...(size * size - 2))
            return GoalCycle(size: size, goals: goals, view: view,
                             penalty: try o.float("penalty", default: 0.25, in: 0...1000), maxEpisodeSteps: try o.int("steps", default: 200, in: 1...10_000_000),
                             obstacles: try o.int("obstacles", default: 0, in: 0...(size * size - goals - 2)))
        },
        Entry(name: "team-recall", summary: "multi-agent memory: each agent names the private cue it saw before a delay (memoryless best 1/cues)",
              options: ["agents": "agents in the team (default 2)", "cues": "cue values (default 4)", "delay": "blank steps between cue and recall (default 5)",
                        "reward": "team (every agent gets the fraction right, default) or own (1 for naming one's own cue)"]) { o in
            let reward = o.string("reward", default: "team")
            guard reward == "team" || reward == "own" else { throw o.fail("reward", "must be team or own") }
            return TeamRecall(agents: try o.int("agents", default: 2, in: 1...64), cues: try o.int("cues", default: 4, in: 2...64),
                              delay: try o.int("delay", default: 5, in: 0...10_000), teamReward: reward == "team")
        },
        Entry(name: "foraging", summary: "level-based foraging (lbforaging 2.0.0): load foods whose level needs the players' summed levels (50 steps)",
              options: ["size": "the field's side (default 8)", "players": "players (default 2)", "foods": "foods (default 2)",
                        "sight": "cells seen around each player (default: the whole field; 2 for the -2s variants)",
                        "coop": "1: every food needs all players (default 0)", "penalty": "cost of a failed load (default 0)",
                        "steps": steps + " (default 50)"]) { o in
            let size = try o.int("size", default: 8, in: 3...64)
            return Foraging(size: size, players: try o.int("players", default: 2, in: 1...16), foods: try o.int("foods", default: 2, in: 1...32),
                            sight: try o.int("sight", default: size, in: 1...64), coop: try o.int("coop", default: 0, in: 0...1) == 1,
                            penalty: try o.float("penalty", default: 0, in: 0...100), maxEpisodeSteps: try o.int("steps", default: 50, in: 1...10_000_000))
        },
        Entry(name: "spread", summary: "MPE simple_spread_v3 (mpe2 1.1.1): agents cover landmarks without colliding (25 steps)",
              options: ["agents": "agents and landmarks (default 3)", "continuous": "1: continuous actions in [0, 1]^5 (default 0: 5 discrete)",
                        "local": "weight of the collision penalty against the shared distance reward (default 0.5)",
                        "radius": "partially observable: landmarks and agents farther away read as (0, 0) (default: all seen)",
                        "steps": steps + " (default 25)"]) { o in
            let radius = try o.float("radius", default: 0, in: 0...100)
            return Spread(agents: try o.int("agents", default: 3, in: 1...32), continuous: try o.int("continuous", default: 0, in: 0...1) == 1,
                          localRatio: Double(try o.float("local", default: 0.5, in: 0...1)), maxEpisodeSteps: try o.int("steps", default: 25, in: 1...10_000_000),
                          radius: o.values["radius"] == nil ? nil : Double(radius))
        },
    ]

    nonisolated(unsafe) static var registered: [Entry] = []
    static let lock = NSLock()

    /// Every environment: the built-in ones, then those registered, in order.
    public static var entries: [Entry] {
        lock.lock()
        defer { lock.unlock() }
        return builtIn + registered
    }

    public static var names: [String] { entries.map(\.name) }

    /// Registers an environment under `name` (replacing an earlier registration of that name; a
    /// built-in name or a `gym:` one cannot be taken). Register it before a run is made or resumed:
    /// runs refer to environments by name.
    public static func register(_ name: String, summary: String = "", options: [String: String] = [:],
                                make: @escaping @Sendable (EnvironmentOptions) throws -> any Environment) throws {
        try insert(Entry(name: name, summary: summary, options: options, make: make))
    }

    static func checkOptions(_ entry: Entry, _ options: [String: String]) throws {
        for key in options.keys.sorted() where entry.options[key] == nil {
            let known = entry.options.keys.sorted()
            throw EnvironmentError(environment: entry.name, message: "unknown option '\(key)'; " + (known.isEmpty ? "this environment has no options" : "its options are " + known.map { "\($0) (\(entry.options[$0]!))" }.joined(separator: ", ")))
        }
    }

    /// Registers a multi-agent environment under `name` (trained with masac), as `register` does.
    public static func register(_ name: String, summary: String = "", options: [String: String] = [:],
                                makeMultiAgent: @escaping @Sendable (EnvironmentOptions) throws -> any MultiAgentEnvironment) throws {
        try insert(Entry(name: name, summary: summary, options: options, makeMultiAgent: makeMultiAgent))
    }

    static func insert(_ entry: Entry) throws {
        let name = entry.name
        guard !name.isEmpty, !name.hasPrefix("gym:"), !builtIn.contains(where: { $0.name == name }) else {
            throw EnvironmentError(environment: name, message: "cannot register under this name: it is empty, starts with gym:, or is a built-in environment's")
        }
        lock.lock()
        defer { lock.unlock() }
        registered.removeAll { $0.name == name }
        registered.append(entry)
    }

    /// A named variant: a name that stands for an entry with options. lbforaging's names, such as
    /// `foraging-2s-8x8-2p-2f-coop` (sight 2, an 8 x 8 field, 2 players, 2 foods, cooperative), are
    /// `foraging` with those options; options given as well override the name's.
    public static func resolve(_ name: String, options: [String: String] = [:]) -> (name: String, options: [String: String]) {
        let parts = name.split(separator: "-").map(String.init)
        guard parts.first == "foraging", parts.count >= 4 else { return (name, options) }
        var rest = Array(parts.dropFirst()), values: [String: String] = [:]
        if let sight = rest.first, sight.hasSuffix("s"), let n = Int(sight.dropLast()) { values["sight"] = "\(n)"; rest.removeFirst() }
        if rest.last == "coop" { values["coop"] = "1"; rest.removeLast() }
        guard rest.count == 3, rest[1].hasSuffix("p"), rest[2].hasSuffix("f"),
              let players = Int(rest[1].dropLast()), let foods = Int(rest[2].dropLast()) else { return (name, options) }
        let sides = rest[0].split(separator: "x").map(String.init)
        guard sides.count == 2, sides[0] == sides[1], let size = Int(sides[0]) else { return (name, options) }
        values["size"] = "\(size)"
        values["players"] = "\(players)"
        values["foods"] = "\(foods)"
        return ("foraging", values.merging(options) { $1 })
    }

    /// Whether `name` is a registered environment or a named variant of one.
    public static func isKnown(_ name: String) -> Bool { names.contains(resolve(name).name) }

    /// A new environment with `options`, or an error naming the valid choices (the closest one first)
    /// or the options this environment has.
    public static func make(_ name: String, options: [String: String] = [:]) throws -> any Environment {
        let (name, options) = resolve(name, options: options)
        guard let entry = entries.first(where: { $0.name == name }) else {
            let all = names
            let nearest = all.min { editDistance($0, name) < editDistance($1, name) }!
            throw EnvironmentError(environment: name, message: "unknown environment; did you mean '\(nearest)'? Available: \(all.joined(separator: ", "))")
        }
        try checkOptions(entry, options)
        return try entry.make(EnvironmentOptions(environment: name, values: options))
    }

    /// A new multi-agent environment: a multi-agent entry's, or a single-agent one adapted as one agent.
    public static func makeMultiAgent(_ name: String, options: [String: String] = [:]) throws -> any MultiAgentEnvironment {
        let (name, options) = resolve(name, options: options)
        if let entry = entries.first(where: { $0.name == name }), let maker = entry.makeMultiAgent {
            try checkOptions(entry, options)
            return try maker(EnvironmentOptions(environment: name, values: options))
        }
        return SingleAgentAdapter(try make(name, options: options))  // make names the valid choices of an unknown name
    }
}

/// Which environment a run uses: a registered name (built-in or a library user's), `gym:ID` (a
/// Gymnasium environment through the bridge) or `pz:MODULE` (a PettingZoo parallel one, multi-agent),
/// its options, and the Python modules a Python one needs.
public struct EnvironmentSpec: Equatable, Sendable {
    public var name: String
    /// `key=value` options: the environment's own (see `EnvironmentRegistry`), or `gym.make`'s keyword
    /// arguments for a Python one (values parsed as JSON where they can be, else strings).
    public var options: [String: String]
    public var modules: [String]

    public init(_ name: String, options: [String: String] = [:], modules: [String] = []) {
        self.name = name
        self.options = options
        self.modules = modules
    }

    /// Served by a Python bridge: `gym:ID` or `pz:MODULE`.
    public var isPython: Bool { name.hasPrefix("gym:") || name.hasPrefix("pz:") }
    /// A PettingZoo parallel environment (`pz:MODULE`): multi-agent by its name.
    public var isPettingZoo: Bool { name.hasPrefix("pz:") }

    /// A new copy of a registered environment (a Python one is made by `makeVector`).
    public func make() throws -> any Environment {
        guard !isPython else { throw EnvironmentError(environment: name, message: "a Python environment runs in a bridge; make it with makeVector(count:)") }
        return try EnvironmentRegistry.make(name, options: options)
    }

    /// A new multi-agent environment (a single-agent one adapted as one agent; a Python one served
    /// by a bridge process of its own).
    public func makeMultiAgent() throws -> any MultiAgentEnvironment {
        if isPython { return try PythonMultiAgentEnvironment(spec: self) }
        return try EnvironmentRegistry.makeMultiAgent(name, options: options)
    }

    /// Whether the name is a registered multi-agent environment or a PettingZoo one (a `gym:` one is
    /// known to be multi-agent only once its bridge describes it).
    public var isMultiAgent: Bool {
        if isPettingZoo { return true }
        let resolved = EnvironmentRegistry.resolve(name).name
        return EnvironmentRegistry.entries.first { $0.name == resolved }?.isMultiAgent ?? false
    }

    /// How a bridge makes a Python one: its modules and `gym.make`'s keyword arguments.
    public var bridgeOptions: PythonBridge.Options {
        var options = PythonBridge.Options(modules: modules)
        options.keywordArguments = self.options
        return options
    }

    /// `count` copies stepped together: built-in or registered ones, or a bridge serving a Python one.
    public func makeVector(count: Int) throws -> VectorEnvironment {
        if isPettingZoo {
            throw EnvironmentError(environment: name, message: "a PettingZoo environment has several agents; train it with masac (rrl train masac --env \(name))")
        }
        return try VectorEnvironment(spec: self, count: count)
    }

    /// Checks the name and the options (a Python environment is checked when its bridge starts).
    public func validate() throws {
        if !isPython { _ = try makeMultiAgent() }
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

extension EnvironmentChecker {
    /// The same contract for a multi-agent environment, per agent: observations of the right width,
    /// finite and inside the space; finite rewards; a finite global state; action masks of 0s and
    /// 1s leaving every active agent an action; truncation exactly at `maxEpisodeSteps` unless
    /// terminated earlier; the same seed and actions giving the same episode.
    public static func check(_ env: any MultiAgentEnvironment, episodes: Int = 3, seed: UInt64 = 0) throws {
        let N = env.agents, o = env.observationSpace.width, a = env.actionSpace.width, g = env.globalStateWidth
        func fail(_ message: String) -> EnvironmentError { EnvironmentError(environment: env.name, message: message) }
        guard N >= 1 else { throw fail("a multi-agent environment needs at least one agent") }
        guard o > 0, a > 0 else { throw fail("observation and action spaces must be non-empty") }
        guard env.maxEpisodeSteps > 0 else { throw fail("maxEpisodeSteps must be positive") }
        let n: Int
        if case .discrete(let count) = env.actionSpace { n = count } else { n = 0 }
        var observations = [Float](repeating: 0, count: N * o + 1), actions = [Float](repeating: 0, count: N * a)
        var rewards = [Float](repeating: 0, count: N + 1), active = [Bool](repeating: true, count: N)
        var state = [Float](repeating: 0, count: g + 1), mask = [Float](repeating: 1, count: max(N * n, 1))

        func verify(step t: Int) throws {
            guard observations[N * o] == 12345, state[g] == 12345 else { throw fail("step \(t) wrote past the observations or the global state") }
            for i in 0..<N {
                try observations.withUnsafeBufferPointer { p in
                    let row = p.baseAddress! + i * o
                    for j in 0..<o where !row[j].isFinite { throw fail("step \(t): agent \(i) observation[\(j)] is \(row[j])") }
                    guard env.observationSpace.contains(row) else { throw fail("step \(t): agent \(i) observation is outside \(env.observationSpace)") }
                }
            }
            env.globalState(into: &state)
            for j in 0..<g where !state[j].isFinite { throw fail("step \(t): global state[\(j)] is \(state[j])") }
            if n > 0 {
                env.availableActions(into: &mask)
                for i in 0..<N {
                    let row = mask[(i * n)..<(i * n + n)]
                    guard row.allSatisfy({ $0 == 0 || $0 == 1 }) else { throw fail("step \(t): agent \(i) action mask holds values other than 0 and 1") }
                    guard !active[i] || row.contains(1) else { throw fail("step \(t): active agent \(i) has no available action") }
                }
            }
        }

        func episode(seed: UInt64, rng: inout RandomGenerator) throws -> [Float] {
            var trace: [Float] = []
            observations[N * o] = 12345
            state[g] = 12345
            for i in 0..<N { active[i] = true }
            try env.reset(seed: seed, observations: &observations)
            try verify(step: 0)
            trace += observations[0..<(N * o)]
            for t in 1...env.maxEpisodeSteps {
                for i in 0..<N {
                    actions.withUnsafeMutableBufferPointer { p in env.actionSpace.sample(into: p.baseAddress! + i * a, using: &rng) }
                    if n > 0 && mask[i * n + Int(actions[i])] == 0 { actions[i] = Float(mask[(i * n)..<(i * n + n)].firstIndex(of: 1)! - i * n) }
                }
                rewards[N] = 12345
                let result = try env.step(actions: actions, observations: &observations, rewards: &rewards, active: &active)
                guard rewards[N] == 12345 else { throw fail("step \(t) wrote past the rewards") }
                try verify(step: t)
                for i in 0..<N where !rewards[i].isFinite { throw fail("step \(t): agent \(i) reward is \(rewards[i])") }
                trace += observations[0..<(N * o)] + rewards[0..<N] + state[0..<g]
                if result.terminated && result.truncated { throw fail("step \(t) is both terminated and truncated") }
                if result.truncated && t != env.maxEpisodeSteps { throw fail("step \(t) truncated before the limit \(env.maxEpisodeSteps)") }
                if result.done { return trace }
            }
            throw fail("episode ran past maxEpisodeSteps = \(env.maxEpisodeSteps) without ending")
        }

        for e in 0..<episodes {
            var a = RandomGenerator(seed: 1000 &+ UInt64(e)), b = a
            let first = try episode(seed: seed &+ UInt64(e), rng: &a)
            let second = try episode(seed: seed &+ UInt64(e), rng: &b)
            guard first == second else { throw fail("the same seed and actions gave different episodes: reset(seed:) must fix the randomness") }
        }
    }
}
