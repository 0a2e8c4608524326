import Environments
import Foundation
import Tensors
import XCTest

final class EnvironmentTests: XCTestCase {
    struct Reference: Decodable {
        struct Step: Decodable { let observation: [Double]; let reward: Double; let terminated: Bool; let truncated: Bool }
        struct Case: Decodable { let env: String; let state: [Double]; let actions: [Double]; let steps: [Step] }
        let cases: [Case]
    }

    /// Trajectories of Gymnasium's own Pendulum-v1 and CartPole-v1 from set states under fixed
    /// actions (scripts/make_environment_fixtures.py), replayed here step by step.
    func testPendulumAndCartPoleMatchGymnasium() throws {
        let url = Bundle.module.url(forResource: "gymnasium_reference", withExtension: "json", subdirectory: "Fixtures")!
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        XCTAssertEqual(reference.cases.count, 7)
        var observation = [Float](repeating: 0, count: 4)
        for (index, c) in reference.cases.enumerated() {
            let env: any Environment
            switch c.env {
            case "pendulum":
                let p = Pendulum(); p.setState(theta: c.state[0], thetaDot: c.state[1]); env = p
            default:
                let p = CartPole(); p.setState((c.state[0], c.state[1], c.state[2], c.state[3])); env = p
            }
            for (t, (action, expected)) in zip(c.actions, c.steps).enumerated() {
                var a = Float(action)
                let result = env.step(action: &a, observation: &observation)
                for (i, e) in expected.observation.enumerated() {
                    XCTAssertEqual(Double(observation[i]), e, accuracy: 1e-5 * max(1, abs(e)), "case \(index) \(c.env) step \(t) observation[\(i)]")
                }
                XCTAssertEqual(Double(result.reward), expected.reward, accuracy: 1e-4 * max(1, abs(expected.reward)), "case \(index) step \(t) reward")
                XCTAssertEqual(result.terminated, expected.terminated, "case \(index) step \(t) terminated")
                XCTAssertEqual(result.truncated, expected.truncated, "case \(index) step \(t) truncated")
            }
        }
    }

    func testCheckerPassesEveryBuiltInEnvironment() throws {
        for entry in EnvironmentRegistry.entries {
            if entry.isMultiAgent {
                let env = try EnvironmentRegistry.makeMultiAgent(entry.name)
                XCTAssertEqual(env.name, entry.name)
                XCTAssertNoThrow(try EnvironmentChecker.check(env, episodes: 2), entry.name)
                XCTAssertThrowsError(try EnvironmentRegistry.make(entry.name), "a single-agent trainer is told to use a multi-agent algorithm")
            } else {
                let env = try EnvironmentRegistry.make(entry.name)
                XCTAssertEqual(env.name, entry.name)
                XCTAssertNoThrow(try EnvironmentChecker.check(env, episodes: 2), entry.name)
                XCTAssertNoThrow(try EnvironmentChecker.check(EnvironmentRegistry.makeMultiAgent(entry.name), episodes: 1), "\(entry.name) adapted as one agent")
            }
        }
    }

    /// The checker is not vacuous: it catches broken environments.
    func testCheckerCatchesBrokenEnvironments() {
        final class Broken: Environment {
            enum Fault { case nanObservation, earlyTruncation, ignoresSeed, outOfSpace }
            let fault: Fault
            var steps = 0
            var counter: Float = 0
            init(_ fault: Fault) { self.fault = fault }
            var name: String { "broken" }
            var observationSpace: Space { .box(low: [-1], high: [1]) }
            var actionSpace: Space { .discrete(2) }
            var maxEpisodeSteps: Int { 10 }
            func reset(seed: UInt64?, observation: UnsafeMutablePointer<Float>) {
                steps = 0
                counter += 0.01
                observation[0] = fault == .ignoresSeed ? counter : 0
            }
            func step(action: UnsafePointer<Float>, observation: UnsafeMutablePointer<Float>) -> StepResult {
                steps += 1
                observation[0] = fault == .nanObservation && steps == 3 ? .nan : (fault == .outOfSpace ? 2 : 0)
                return StepResult(reward: 0, truncated: fault == .earlyTruncation ? steps == 5 : steps == 10)
            }
        }
        for (fault, phrase) in [(Broken.Fault.nanObservation, "is nan"), (.earlyTruncation, "truncated before"),
                                (.ignoresSeed, "same seed"), (.outOfSpace, "outside")] {
            XCTAssertThrowsError(try EnvironmentChecker.check(Broken(fault))) { error in
                XCTAssertTrue("\(error)".contains(phrase), "\(fault): \(error)")
            }
        }
    }

    func testMemoryTaskRewardsCountOfLastHBits() {
        let env = MemoryTask(horizon: 4, maxEpisodeSteps: 50)
        var observation: Float = 0
        env.reset(seed: 3, observation: &observation)
        var shown: [Float] = [0, 0, 0, observation]  // the history starts as zeros with a random last bit
        var total = 0
        for t in 1...50 {
            let c = shown.suffix(4).reduce(0, +)
            XCTAssertEqual(Float(env.count), c)
            var perfect = c / 10
            XCTAssertEqual(env.reward(for: 1), -10 * abs(1 - c / 10), accuracy: 1e-5)
            XCTAssertEqual(env.reward(for: 5), env.reward(for: 1))  // actions are clamped to [-1, 1]
            let result = env.step(action: &perfect, observation: &observation)
            XCTAssertEqual(result.reward, 0, accuracy: 1e-5, "remembering the last H bits earns 0")
            XCTAssertFalse(result.terminated)
            XCTAssertEqual(result.truncated, t == 50)
            shown.append(observation)
            total += Int(observation)
        }
        // Ones appear with probability 2/H = 0.5 here.
        XCTAssertGreaterThan(total, 10)
        XCTAssertLessThan(total, 40)
        XCTAssertEqual(MemoryTask().maxEpisodeSteps, 2000)
        XCTAssertEqual(MemoryTask().onProbability, 0.2)
    }

    func testPartialViewsShowTheRightComponents() {
        var full = [Float](repeating: 0, count: 4), part = [Float](repeating: 0, count: 2), one: Float = 0
        let p = Pendulum(), pv = Pendulum(view: .velocity), pp = Pendulum(view: .position)
        p.reset(seed: 5, observation: &full); pv.reset(seed: 5, observation: &one); pp.reset(seed: 5, observation: &part)
        XCTAssertEqual(one, full[2])
        XCTAssertEqual(part, [full[0], full[1]])
        let c = CartPole(), cp = CartPole(view: .position), cv = CartPole(view: .velocity)
        var vel = [Float](repeating: 0, count: 2)
        c.reset(seed: 6, observation: &full); cp.reset(seed: 6, observation: &part); cv.reset(seed: 6, observation: &vel)
        XCTAssertEqual(part, [full[0], full[2]])
        XCTAssertEqual(vel, [full[1], full[3]])
    }

    func testUnknownEnvironmentSuggestsTheNearestName() {
        XCTAssertThrowsError(try EnvironmentRegistry.make("pendulum-velocty")) { error in
            XCTAssertTrue("\(error)".contains("did you mean 'pendulum-velocity'"), "\(error)")
        }
    }
}

final class MemoryEnvironmentTests: XCTestCase {
    /// An agent that remembers the suits shown answers right every time (return 1); one that
    /// guesses gets about -0.5.
    func testRepeatPreviousRewardsTheSuitShownLagStepsAgo() {
        let env = RepeatPrevious()
        var obs = [Float](repeating: 0, count: 4)
        var rng = RandomGenerator(seed: 3)
        var guessed = 0.0
        for episode in 0..<50 {
            env.reset(seed: UInt64(episode), observation: &obs)
            var shown = [obs.firstIndex(of: 1)!]
            var oracle = 0.0, random = 0.0
            let guesser = RepeatPrevious()
            var guessObs = obs
            guesser.reset(seed: UInt64(episode), observation: &guessObs)
            for t in 0..<env.maxEpisodeSteps {
                let answer = [Float(t >= env.lag ? shown[t - env.lag] : 0)]
                let r = env.step(action: answer, observation: &obs)
                oracle += Double(r.reward)
                shown.append(obs.firstIndex(of: 1)!)
                random += Double(guesser.step(action: [Float(rng.integer(below: 4))], observation: &guessObs).reward)
                XCTAssertEqual(r.truncated, t == env.maxEpisodeSteps - 1)
            }
            XCTAssertEqual(oracle, 1, accuracy: 1e-4)
            guessed += random / 50
        }
        XCTAssertEqual(guessed, -0.5, accuracy: 0.1)
    }

    /// Counting the ranks shown answers every query right (return 1).
    func testCountRecallRewardsTheCountOfTheQueriedRank() {
        let env = CountRecall()
        var obs = [Float](repeating: 0, count: 26)
        for episode in 0..<20 {
            env.reset(seed: UInt64(episode), observation: &obs)
            var counts = [Int](repeating: 0, count: 13)
            var total = 0.0
            for _ in 0..<env.maxEpisodeSteps {
                counts[obs[0..<13].firstIndex(of: 1)!] += 1
                let query = obs[13..<26].firstIndex(of: 1)! - 13
                XCTAssertGreaterThan(counts[query], 0, "queries are about ranks already dealt")
                XCTAssertEqual(counts[query], env.answer)
                total += Double(env.step(action: [Float(counts[query] - 1)], observation: &obs).reward)
            }
            XCTAssertEqual(total, 1, accuracy: 1e-4)
        }
    }

    /// The egocentric view shows the cell ahead and the agent's own cell; the right goal pays +1
    /// and moves the target on, a wrong one costs the penalty.
    func testGoalCycleViewAndRewards() {
        let env = GoalCycle()
        let v = env.view, half = v / 2
        var obs = [Float](repeating: 0, count: 3 * v * v)
        var rng = RandomGenerator(seed: 9)
        var right = 0, wrong = 0
        for episode in 0..<20 {
            env.reset(seed: UInt64(episode), observation: &obs)
            for _ in 0..<env.maxEpisodeSteps {
                let (dx, dy) = [(0, -1), (1, 0), (0, 1), (-1, 0)][env.direction]
                let ahead = env.cell(env.x + dx, env.y + dy)
                XCTAssertEqual(obs[((v - 2) * v + half) * 3 + ahead], 1, "the cell ahead")
                XCTAssertEqual(obs[((v - 1) * v + half) * 3 + env.cell(env.x, env.y)], 1, "the agent's own cell")
                let target = env.goals[env.next], next = env.next
                let action = Float(rng.integer(below: 3))
                let r = env.step(action: [action], observation: &obs)
                if env.x == target.x && env.y == target.y && r.reward != 0 {
                    XCTAssertEqual(r.reward, 1); XCTAssertEqual(env.next, (next + 1) % env.goalCount); right += 1
                } else if r.reward != 0 {
                    XCTAssertEqual(r.reward, -env.penalty); XCTAssertEqual(env.next, next); wrong += 1
                }
            }
        }
        XCTAssertGreaterThan(right, 0)
        XCTAssertGreaterThan(wrong, 0)
    }
}

/// The environments whose hidden information a memory must carry: the passive T-maze and the
/// pendulum with hidden dynamics.
final class HiddenInformationTests: XCTestCase {
    /// The cue shows at the first step only; walking right all the way then turning to the cued arm
    /// earns 1 in exactly length + 1 steps; the other arm earns 0; any other move in the corridor
    /// costs the penalty; standing still runs into the horizon, which ends the episode (terminal).
    func testTMazeRewardsTheCuedArmAndChargesDetours() throws {
        let L = 6
        for seed: UInt64 in 0..<8 {
            for remember in [true, false] {
                let env = TMaze(length: L)
                var o: [Float] = [0, 0]
                env.reset(seed: seed, observation: &o)
                let cue = o[0]
                XCTAssertEqual(abs(cue), 1)
                XCTAssertEqual(o[1], 0)
                var total: Float = 0, steps = 0
                var action: Float = 0
                for _ in 0..<L {
                    let r = env.step(action: &action, observation: &o)
                    XCTAssertEqual(o[0], 0, "the cue shows at the first step only")
                    XCTAssertFalse(r.terminated || r.truncated)
                    total += r.reward; steps += 1
                }
                XCTAssertEqual(o[1], 1, "at the junction")
                action = (cue > 0) == remember ? 2 : 3
                let r = env.step(action: &action, observation: &o)
                XCTAssertTrue(r.terminated)
                total += r.reward; steps += 1
                XCTAssertEqual(total, remember ? 1 : 0)
                XCTAssertEqual(steps, L + 1)
            }
        }
        let env = TMaze(length: L)
        var o: [Float] = [0, 0], up: Float = 2, left: Float = 1
        env.reset(seed: 1, observation: &o)
        XCTAssertEqual(env.step(action: &up, observation: &o).reward, -1 / Float(L), "turning in the corridor costs the penalty")
        XCTAssertEqual(env.position, 0)
        XCTAssertEqual(env.step(action: &left, observation: &o).reward, -1 / Float(L))
        var last = StepResult(reward: 0, terminated: false, truncated: false)
        for _ in 0..<(L - 1) { last = env.step(action: &up, observation: &o) }
        XCTAssertTrue(last.terminated && !last.truncated, "the episode ends after length + 1 steps, its horizon: a terminal end")
        // Both arms are goals about equally often.
        var ups = 0
        for seed: UInt64 in 0..<200 { env.reset(seed: seed, observation: &o); if o[0] > 0 { ups += 1 } }
        XCTAssertGreaterThan(ups, 70)
        XCTAssertLessThan(ups, 130)
        XCTAssertEqual(try EnvironmentRegistry.make("t-maze", options: ["length": "20"]).maxEpisodeSteps, 21)
    }

    /// The continuous-action T-maze takes the move with the highest of four scores: the same
    /// episode as the discrete one when each step's scores put its action first.
    func testContinuousTMazeTakesTheHighestScoresMove() throws {
        let L = 5
        let continuous = try XCTUnwrap(try EnvironmentRegistry.make("t-maze", options: ["length": "\(L)", "continuous": "1"]) as? TMaze)
        XCTAssertEqual(continuous.actionSpace, .box(low: [-1, -1, -1, -1], high: [1, 1, 1, 1]))
        XCTAssertThrowsError(try EnvironmentRegistry.make("t-maze", options: ["continuous": "2"]))
        let discrete = TMaze(length: L)
        var generator = RandomGenerator(seed: 3)
        for seed: UInt64 in 0..<6 {
            var a: [Float] = [0, 0], b: [Float] = [0, 0]
            discrete.reset(seed: seed, observation: &a)
            continuous.reset(seed: seed, observation: &b)
            XCTAssertEqual(a, b)
            for t in 0...L {
                // Mostly "right", sometimes another move; at the junction a turn.
                var move = generator.uniform() < 0.8 ? 0 : Int(generator.uniform() * 4) % 4
                if t == L { move = seed % 2 == 0 ? 2 : 3 }
                var scores = (0..<4).map { _ in Float(generator.uniform()) * 1.8 - 1 }
                scores[move] = 0.95
                var action = Float(move)
                let r = discrete.step(action: &action, observation: &a)
                let s = scores.withUnsafeBufferPointer { continuous.step(action: $0.baseAddress!, observation: &b) }
                XCTAssertEqual(r, s)
                XCTAssertEqual(a, b)
                XCTAssertEqual(discrete.position, continuous.position)
                if r.terminated { break }
            }
        }
        // A tie goes to the first move.
        var o: [Float] = [0, 0], tie: [Float] = [0.5, 0.5, 0.5, 0.5]
        continuous.reset(seed: 0, observation: &o)
        _ = continuous.step(action: &tie, observation: &o)
        XCTAssertEqual(continuous.position, 1)
    }

    /// The hidden-dynamics pendulum draws a mass and gravity per episode from its ranges; with the
    /// ones Pendulum-v1 uses it moves exactly as Pendulum-v1 does; a heavier pendulum turns less
    /// for the same torque.
    func testPendulumRandomMassDrawsHiddenDynamics() throws {
        let env = try XCTUnwrap(try EnvironmentRegistry.make("pendulum-random-mass") as? Pendulum)
        var o: [Float] = [0, 0, 0]
        var masses: Set<Double> = [], gravities: Set<Double> = []
        for seed: UInt64 in 0..<20 {
            env.reset(seed: seed, observation: &o)
            XCTAssertTrue((0.5...2).contains(env.mass) && (5...15).contains(env.gravity))
            masses.insert(env.mass); gravities.insert(env.gravity)
        }
        XCTAssertEqual(masses.count, 20)
        XCTAssertEqual(gravities.count, 20)
        // With m = 1 and g = 10, the same trajectory as Pendulum-v1.
        let fixed = Pendulum(massRange: 1...1, gravityRange: 10...10), plain = Pendulum()
        var a: [Float] = [0, 0, 0], b: [Float] = [0, 0, 0], u: Float = 1.3
        fixed.reset(seed: 3, observation: &a); plain.reset(seed: 3, observation: &b)
        fixed.setState(theta: 0.5, thetaDot: 0.1); plain.setState(theta: 0.5, thetaDot: 0.1)
        for _ in 0..<50 {
            let ra = fixed.step(action: &u, observation: &a), rb = plain.step(action: &u, observation: &b)
            XCTAssertEqual(a, b)
            XCTAssertEqual(ra.reward, rb.reward)
        }
        // Heavier: the torque's effect is smaller (gravity off, from rest).
        let light = Pendulum(massRange: 0.5...0.5, gravityRange: 0...0), heavy = Pendulum(massRange: 2...2, gravityRange: 0...0)
        light.reset(seed: 0, observation: &a); heavy.reset(seed: 0, observation: &b)
        light.setState(theta: 0, thetaDot: 0); heavy.setState(theta: 0, thetaDot: 0)
        _ = light.step(action: &u, observation: &a); _ = heavy.step(action: &u, observation: &b)
        XCTAssertEqual(a[2], 4 * b[2], accuracy: 1e-6)
    }
}

final class GoalCycleObstacleTests: XCTestCase {
    /// Obstacles are walls inside the room, drawn each episode apart from the goals and the start so
    /// that every goal stays reachable; the view shows them as walls and moving into one is blocked.
    func testObstaclesAreWallsThatLeaveEveryGoalReachable() throws {
        let env = try XCTUnwrap(try EnvironmentRegistry.make("goal-cycle", options: ["size": "7", "goals": "4", "obstacles": "10"]) as? GoalCycle)
        var o = [Float](repeating: 0, count: env.observationSpace.width)
        var layouts: Set<[Int]> = [], blocked = 0
        for seed: UInt64 in 0..<40 {
            env.reset(seed: seed, observation: &o)
            XCTAssertEqual(env.obstacles.count, 10)
            XCTAssertTrue(env.goalsReachable())
            for g in env.goals { XCTAssertFalse(env.obstacles.contains(g.y * 7 + g.x)) }
            XCTAssertFalse(env.obstacles.contains(env.y * 7 + env.x))
            for c in env.obstacles { XCTAssertEqual(env.cell(c % 7, c / 7), 1) }
            layouts.insert(env.obstacles.sorted())
            // Walk forward: a step into a wall (an obstacle or the room's edge) leaves the agent where it was.
            var forward: Float = 2
            for _ in 0..<8 {
                let (dx, dy) = GoalCycle.forward[env.direction]
                let ahead = env.cell(env.x + dx, env.y + dy), before = (env.x, env.y)
                _ = env.step(action: &forward, observation: &o)
                if ahead == 1 {
                    XCTAssertTrue(env.x == before.0 && env.y == before.1)
                    if env.obstacles.contains((before.1 + dy) * 7 + before.0 + dx) { blocked += 1 }
                }
            }
        }
        XCTAssertGreaterThan(layouts.count, 30, "drawn anew each episode")
        XCTAssertGreaterThan(blocked, 5)
        // Without obstacles, the same episodes as before they existed (the default draws nothing more).
        let plain = GoalCycle(), none = GoalCycle(obstacles: 0)
        var a = [Float](repeating: 0, count: plain.observationSpace.width), b = a
        plain.reset(seed: 9, observation: &a); none.reset(seed: 9, observation: &b)
        XCTAssertEqual(a, b)
        XCTAssertTrue(none.obstacles.isEmpty)
    }
}
