@testable import Environments
import Foundation
import Tensors
import XCTest

/// `spread` against mpe2 1.1.1's simple_spread_v3, step for step from states set by hand
/// (scripts/make_spread_fixtures.py), and its partially observable variant.
final class SpreadTests: XCTestCase {
    struct Reference: Decodable {
        struct Step: Decodable {
            enum Actions: Decodable {
                case discrete([Int]), continuous([[Float]])
                init(from decoder: Decoder) throws {
                    let c = try decoder.singleValueContainer()
                    if let d = try? c.decode([Int].self) { self = .discrete(d) } else { self = .continuous(try c.decode([[Float]].self)) }
                }
                var floats: [Float] {
                    switch self {
                    case .discrete(let a): return a.map(Float.init)
                    case .continuous(let a): return a.flatMap { $0 }
                    }
                }
            }
            var actions: Actions; var observations: [[Float]]; var rewards: [Float]; var terminated: Bool; var truncated: Bool
        }
        struct Case: Decodable {
            var agents: Int, continuous: Bool, local_ratio: Double
            var positions: [[Double]], velocities: [[Double]], landmarks: [[Double]], steps: [Step]
        }
        var cases: [Case]
    }

    func testMatchesMPE2StepForStep() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "spread_reference", withExtension: "json", subdirectory: "Fixtures"))
        let reference = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: url))
        XCTAssertGreaterThanOrEqual(reference.cases.count, 16)
        var collisions = 0, worst: Float = 0
        for (index, c) in reference.cases.enumerated() {
            let env = Spread(agents: c.agents, continuous: c.continuous, localRatio: c.local_ratio)
            env.setState(positions: c.positions.flatMap { $0 }, velocities: c.velocities.flatMap { $0 }, landmarks: c.landmarks.flatMap { $0 })
            let w = 4 + 2 * c.agents + 4 * (c.agents - 1)
            var obs = [Float](repeating: 0, count: c.agents * w), rewards = [Float](repeating: 0, count: c.agents)
            var active = [Bool](repeating: false, count: c.agents)
            for (t, step) in c.steps.enumerated() {
                let result = env.step(actions: step.actions.floats, observations: &obs, rewards: &rewards, active: &active)
                for (x, y) in zip(obs, step.observations.flatMap { $0 }) {
                    worst = max(worst, abs(x - y))
                    XCTAssertEqual(x, y, accuracy: 1e-5 + abs(y) * 1e-5, "case \(index) step \(t): observation")
                }
                for (x, y) in zip(rewards, step.rewards) { XCTAssertEqual(x, y, accuracy: 1e-5 + abs(y) * 1e-5, "case \(index) step \(t): reward") }
                XCTAssertEqual(result.terminated, step.terminated, "case \(index) step \(t)")
                XCTAssertEqual(result.truncated, step.truncated, "case \(index) step \(t)")
                // Agents' rewards differ only by their collision penalties.
                if c.local_ratio > 0 && Set(step.rewards).count > 1 { collisions += 1 }
            }
            XCTAssertEqual(c.steps.count, 25, "the package truncates after 25 steps")
        }
        // The crowded starts make agents collide (contact forces and the local penalty are exercised).
        XCTAssertGreaterThan(collisions, 5)
        print("spread: largest observation difference from mpe2 \(worst)")
    }

    /// The partially observable variant hides what is farther than its radius; the global state
    /// sees everything; the reset draws positions in [-1, 1] and zero velocities.
    func testRadiusHidesFarThings() {
        let env = Spread(agents: 2, radius: 0.5)
        env.setState(positions: [0, 0, 0.3, 0], velocities: [0, 0, 0, 0], landmarks: [0.2, 0.2, 2, 2])
        var obs = [Float](repeating: 9, count: 2 * 12), state = [Float](repeating: 9, count: 24)
        env.observe(&obs)
        XCTAssertEqual(Array(obs[4..<8]), [0.2, 0.2, 0, 0], "the near landmark is seen, the far one reads (0, 0)")
        XCTAssertEqual(Array(obs[8..<10]), [0.3, 0], "the near agent is seen")
        env.globalState(into: &state)
        XCTAssertEqual(Array(state[4..<8]), [0.2, 0.2, 2, 2], "the global state sees everything")
        env.reset(seed: 3, observations: &obs)
        XCTAssertTrue(env.positions.allSatisfy { (-1...1).contains($0) } && env.velocities.allSatisfy { $0 == 0 })
    }
}
