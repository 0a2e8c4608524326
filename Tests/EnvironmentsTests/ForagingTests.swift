@testable import Environments
import Foundation
import Tensors
import XCTest

/// `foraging` against lbforaging 2.0.0, step for step from states set by hand
/// (scripts/make_foraging_fixtures.py), and its spawn rules.
final class ForagingTests: XCTestCase {
    struct Reference: Decodable {
        struct Step: Decodable { var actions: [Int]; var observations: [[Float]]; var rewards: [Float]; var done: Bool; var masks: [[Int]] }
        struct Case: Decodable {
            var size: Int, players: Int, foods: Int, sight: Int, coop: Bool, penalty: Float, steps_limit: Int
            var field: [[Int]], positions: [[Int]], levels: [Int], start_step: Int, observations: [[Float]], steps: [Step]
        }
        var cases: [Case]
    }

    func testMatchesLBForagingStepForStep() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "foraging_reference", withExtension: "json", subdirectory: "Fixtures"))
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        XCTAssertGreaterThanOrEqual(reference.cases.count, 100)
        var loads = 0, failedLoads = 0, ends = 0
        for (index, c) in reference.cases.enumerated() {
            let env = Foraging(size: c.size, players: c.players, foods: c.foods, sight: c.sight, coop: c.coop, penalty: c.penalty,
                               maxEpisodeSteps: c.steps_limit)
            env.setState(field: c.field.flatMap { $0 }, positions: c.positions.map { (row: $0[0], column: $0[1]) }, levels: c.levels,
                         step: c.start_step)
            let w = 3 * (c.foods + c.players)
            var obs = [Float](repeating: 0, count: c.players * w), rewards = [Float](repeating: 0, count: c.players)
            var active = [Bool](repeating: false, count: c.players), mask = [Float](repeating: 0, count: c.players * 6)
            env.observe(&obs)
            XCTAssertEqual(obs, c.observations.flatMap { $0 }, "case \(index): first observations")
            for (t, step) in c.steps.enumerated() {
                let result = env.step(actions: step.actions.map(Float.init), observations: &obs, rewards: &rewards, active: &active)
                XCTAssertEqual(obs, step.observations.flatMap { $0 }, "case \(index) step \(t): observations")
                for (x, y) in zip(rewards, step.rewards) { XCTAssertEqual(x, y, accuracy: 1e-6, "case \(index) step \(t): rewards \(rewards) vs \(step.rewards)") }
                XCTAssertEqual(result.done, step.done, "case \(index) step \(t): done")
                env.availableActions(into: &mask)
                XCTAssertEqual(mask.map(Int.init), step.masks.flatMap { $0 }, "case \(index) step \(t): valid actions")
                if step.rewards.contains(where: { $0 > 0 }) { loads += 1 }
                if step.rewards.contains(where: { $0 < 0 }) { failedLoads += 1 }
                if step.done { ends += 1 }
            }
        }
        // The fixtures exercise what matters: loads alone and together, failed loads, episode ends.
        XCTAssertGreaterThan(loads, 30)
        XCTAssertGreaterThan(failedLoads, 5)
        XCTAssertGreaterThan(ends, 5)
    }

    /// lbforaging's names are variants of `foraging`: sight, size, players, foods and coop from the
    /// name, options given as well override them; other names are left alone.
    func testNamedVariants() throws {
        let (name, options) = EnvironmentRegistry.resolve("foraging-2s-8x8-2p-2f-coop")
        XCTAssertEqual(name, "foraging")
        XCTAssertEqual(options, ["sight": "2", "size": "8", "players": "2", "foods": "2", "coop": "1"])
        XCTAssertEqual(EnvironmentRegistry.resolve("foraging-10x10-3p-3f", options: ["foods": "4"]).options,
                       ["size": "10", "players": "3", "foods": "4"])
        let env = try XCTUnwrap(EnvironmentRegistry.makeMultiAgent("foraging-2s-8x8-3p-2f-coop") as? Foraging)
        XCTAssertEqual([env.sight, env.size, env.players, env.foods], [2, 8, 3, 2])
        XCTAssertTrue(env.coop)
        XCTAssertTrue(EnvironmentSpec("foraging-5x5-2p-1f").isMultiAgent)
        XCTAssertTrue(EnvironmentRegistry.isKnown("foraging-5x5-2p-1f"))
        XCTAssertEqual(EnvironmentRegistry.resolve("foraging-8x7-2p-2f").name, "foraging-8x7-2p-2f", "a non-square field is not a variant")
        XCTAssertFalse(EnvironmentRegistry.isKnown("foraging-8x7-2p-2f"))
        XCTAssertEqual(EnvironmentRegistry.resolve("pendulum").name, "pendulum")
    }

    /// The text view shows foods with their levels and players with their letters and levels.
    func testTextView() {
        let env = Foraging(size: 3, players: 2, foods: 1)
        var field = [Int](repeating: 0, count: 9)
        field[4] = 3
        env.setState(field: field, positions: [(row: 0, column: 1), (row: 2, column: 2)], levels: [1, 2], step: 0)
        XCTAssertEqual(env.render(), " . A1  . \n . *3  . \n .  . B2 ")
        XCTAssertEqual(env.describe(action: [5]), "load")
    }

    /// The spawn keeps the package's rules: players on distinct free cells with levels in range,
    /// foods never on the border nor near each other, coop foods at the sum of the levels, and the
    /// normaliser is the levels spawned; every food loaded earns the team 1 in all.
    func testSpawnRulesAndRewardsAddUpToOne() {
        for coop in [false, true] {
            let env = Foraging(size: 8, players: 3, foods: 3, coop: coop)
            var obs = [Float](repeating: 0, count: 3 * 18)
            for seed in 0..<300 {
                env.reset(seed: UInt64(seed), observations: &obs)
                let cells = env.positions.map { $0.row * 8 + $0.column }
                XCTAssertEqual(Set(cells).count, 3)
                XCTAssertTrue(env.levels.allSatisfy { (1...2).contains($0) })
                var foods: [(Int, Int)] = []
                for r in 0..<8 { for c in 0..<8 where env.field[r * 8 + c] > 0 { foods.append((r, c)) } }
                XCTAssertFalse(foods.isEmpty)
                for (r, c) in foods {
                    XCTAssertTrue((1...6).contains(r) && (1...6).contains(c), "no food on the border")
                    XCTAssertFalse(cells.contains(r * 8 + c))
                    let level = env.field[r * 8 + c]
                    if coop { XCTAssertEqual(level, env.levels.reduce(0, +)) } else { XCTAssertTrue((1...env.levels.reduce(0, +)).contains(level)) }
                }
                for (a, b) in foods.indices.flatMap({ i in foods.indices.filter { $0 > i }.map { (foods[i], foods[$0]) } }) {
                    let dr = abs(a.0 - b.0), dc = abs(a.1 - b.1)
                    XCTAssertFalse(max(dr, dc) <= 1 || (dr == 0 && dc == 2) || (dc == 0 && dr == 2), "foods \(a) and \(b) too close")
                }
                XCTAssertEqual(env.foodSpawned, Float(env.field.reduce(0, +)))
            }
        }
        // One player of level 2 and one food of level 2 next to it: loading earns exactly 1 and ends the episode.
        let env = Foraging(size: 5, players: 1, foods: 1)
        var field = [Int](repeating: 0, count: 25)
        field[2 * 5 + 2] = 2
        env.setState(field: field, positions: [(row: 2, column: 1)], levels: [2], step: 0)
        var obs = [Float](repeating: 0, count: 6), reward: [Float] = [0], active = [false]
        let result = env.step(actions: [5], observations: &obs, rewards: &reward, active: &active)
        XCTAssertEqual(reward, [1])
        XCTAssertTrue(result.terminated && !result.truncated)
        // The step limit truncates (the package calls both done).
        env.setState(field: field, positions: [(row: 0, column: 0)], levels: [2], step: 49)
        let last = env.step(actions: [0], observations: &obs, rewards: &reward, active: &active)
        XCTAssertTrue(last.truncated && !last.terminated)
    }
}
