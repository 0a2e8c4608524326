@testable import Environments
import Tensors
import XCTest

/// The multi-agent protocol, its vector environment's two reset modes, and team-recall.
final class MultiAgentEnvironmentTests: XCTestCase {
    /// Two team-recall copies whose episodes last 3 and 5 steps.
    func makeVector(_ mode: MultiAgentVectorEnvironment.ResetMode) throws -> MultiAgentVectorEnvironment {
        let v = MultiAgentVectorEnvironment([TeamRecall(agents: 2, cues: 3, delay: 1), TeamRecall(agents: 2, cues: 3, delay: 3)], mode: mode)
        try v.reset(seed: 7)
        return v
    }

    /// Reset each copy alone: the copy that ended starts its next episode at once (marked in
    /// `episodeStarts`, its last observations kept in `finalObservations`); the other runs on.
    func testResetEachCopyRestartsOnlyTheCopyThatEnded() throws {
        let v = try makeVector(.resetEachCopy)
        let actions = [Float](repeating: 0, count: 4)
        try v.step(actions)
        try v.step(actions)
        let secondBefore = Array(UnsafeBufferPointer(start: v.observation(1), count: 8))
        try v.step(actions)  // copy 0's recall step
        XCTAssertEqual(v.terminated, [true, false])
        XCTAssertEqual(v.episodeStarts, [true, false])
        XCTAssertEqual(v.running, [true, true])
        let cue0 = (v.copies[0] as! TeamRecall).cue
        // The next episode's first observation shows its cue; the final one was blank (after recall).
        XCTAssertEqual(v.observation(0)[cue0[0]], 1)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: v.finalObservation(0), count: 8)), [Float](repeating: 0, count: 8))
        XCTAssertEqual(Array(UnsafeBufferPointer(start: v.observation(1), count: 8)), secondBefore, "copy 1 is still blank, mid-episode")
        try v.step(actions)
        XCTAssertEqual(v.episodeStarts, [false, false])
        try v.step(actions)  // copy 1's recall step
        XCTAssertEqual(v.terminated, [false, true])
        XCTAssertEqual(v.episodeStarts, [false, true])
        var lengths: [Int] = []
        v.drainFinishedEpisodes { _, length in lengths.append(length) }
        XCTAssertEqual(lengths, [3, 5])
    }

    /// Reset together: a copy that ended stops (not stepped: its rows never change, its rewards are 0,
    /// even an invalid action of it is ignored) until all have ended; then every copy restarts.
    func testResetTogetherHoldsFinishedCopiesUntilAllEnd() throws {
        let v = try makeVector(.resetTogether)
        var actions = [Float](repeating: 0, count: 4)
        for _ in 0..<3 { try v.step(actions) }
        XCTAssertEqual(v.running, [false, true])
        XCTAssertEqual(v.episodeStarts, [false, false])
        let held = Array(UnsafeBufferPointer(start: v.observation(0), count: 8))
        let inner = v.copies[0] as! TeamRecall
        let t = inner.t
        actions[0] = 99  // outside the space, but copy 0 is stopped
        actions[1] = -5
        try v.step(actions)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: v.observation(0), count: 8)), held, "a stopped copy's observations never change")
        XCTAssertEqual(inner.t, t, "a stopped copy is not stepped")
        XCTAssertEqual(v.running, [false, true])
        try v.step(actions)  // copy 1's recall step: its rewards count, copy 0's are 0
        XCTAssertEqual(v.rewards.data[0], 0)
        XCTAssertEqual(v.rewards.data[1], 0)
        XCTAssertEqual(v.terminated, [true, true])
        XCTAssertEqual(inner.t, 0, "all ended: all restart together")
        XCTAssertEqual(v.running, [true, true])
        XCTAssertEqual(v.episodeStarts, [true, true])
        XCTAssertEqual(v.totalSteps, 3 + 5)
        actions[0] = 99
        XCTAssertThrowsError(try v.step(actions)) { XCTAssertTrue("\($0)".contains("copy 0, agent 0"), "\($0)") }
    }

    /// Team-recall's rewards: only at the recall step, team or own, and the memoryless ceiling 1/cues
    /// (an agent that always names cue 0 is right a quarter of the time with 4 cues).
    func testTeamRecallRewards() {
        for team in [true, false] {
            let env = TeamRecall(agents: 3, cues: 4, delay: 2, teamReward: team)
            var obs = [Float](repeating: 0, count: 15), rewards = [Float](repeating: 0, count: 3), active = [Bool](repeating: false, count: 3)
            var total = 0.0
            let episodes = 4000
            for e in 0..<episodes {
                env.reset(seed: UInt64(e), observations: &obs)
                let cue = env.cue
                for k in 0..<3 { XCTAssertEqual(obs[k * 5 + cue[k]], 1) }
                // Agents 0 and 1 remember, agent 2 always names 0.
                let answer: [Float] = [Float(cue[0]), Float(cue[1]), 0]
                for t in 0..<4 {
                    let result = env.step(actions: answer, observations: &obs, rewards: &rewards, active: &active)
                    XCTAssertEqual(active, [true, true, true])
                    if t < 3 {
                        XCTAssertEqual(rewards, [0, 0, 0])
                        XCTAssertFalse(result.done)
                        XCTAssertEqual(obs.reduce(0, +), t == 2 ? 3 : 0, "blank, then the recall flag for each agent")
                    } else {
                        XCTAssertTrue(result.terminated)
                        let right: Float = cue[2] == 0 ? 3 : 2
                        XCTAssertEqual(rewards, team ? [right / 3, right / 3, right / 3] : [1, 1, cue[2] == 0 ? 1 : 0])
                        total += Double(rewards.reduce(0, +)) / 3
                    }
                }
            }
            XCTAssertEqual(total / Double(episodes), (2 + 0.25) / 3, accuracy: 0.02)
        }
    }

    /// A single-agent environment adapted as one agent steps exactly as itself.
    func testSingleAgentAdapterStepsAsTheEnvironment() throws {
        let a = try EnvironmentRegistry.make("pendulum-velocity"), b = try EnvironmentRegistry.makeMultiAgent("pendulum-velocity")
        XCTAssertEqual(b.agents, 1)
        var oa: Float = 0, ob: Float = 0, r: Float = 0, active = false
        a.reset(seed: 3, observation: &oa)
        try b.reset(seed: 3, observations: &ob)
        XCTAssertEqual(oa, ob)
        for t in 0..<200 {
            let u: Float = Float(t % 5) - 2
            let x = a.step(action: [u], observation: &oa)
            let y = try b.step(actions: [u], observations: &ob, rewards: &r, active: &active)
            XCTAssertEqual(oa, ob)
            XCTAssertEqual(x.reward, r)
            XCTAssertEqual(x.terminated, y.terminated)
            XCTAssertEqual(x.truncated, y.truncated)
        }
        XCTAssertThrowsError(try EnvironmentRegistry.makeMultiAgent("team-recall", options: ["cues": "1"]))
        XCTAssertThrowsError(try EnvironmentRegistry.makeMultiAgent("team-recall", options: ["colour": "red"])) {
            XCTAssertTrue("\($0)".contains("unknown option 'colour'"), "\($0)")
        }
    }
}
