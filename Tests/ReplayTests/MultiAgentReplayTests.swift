@testable import Replay
import Foundation
import Tensors
import XCTest

/// Per-agent columns (`[step, agent, feature]`) and the global-state column of the replay.
final class MultiAgentReplayTests: XCTestCase {
    static let layout = ReplayLayout(observationWidth: 2, actionWidth: 1, actorStateWidth: 3, criticStateWidth: 2,
                                     agents: 3, globalStateWidth: 4)

    /// A value that names its episode, step, agent and feature, so that any misplaced float shows.
    static func code(_ episode: Int, _ step: Int, _ agent: Int, _ feature: Int, column: Float) -> Float {
        column * 10_000 + Float(episode * 1000 + step * 10 + agent) + Float(feature) / 10
    }

    /// Fills a replay with `episodes` episodes of `length` steps (the last one left open when `open`).
    static func fill(_ replay: EpisodeReplay, episodes: Int, length: Int, open: Bool = false) {
        let l = replay.layout, n = l.agents
        for e in 0..<episodes {
            for t in 0..<length {
                func block(_ width: Int, _ column: Float, step: Int) -> [Float] {
                    (0..<n).flatMap { k in (0..<width).map { code(e, step, k, $0, column: column) } }
                }
                let global = (0..<l.globalStateWidth).map { code(e, t, 9, $0, column: 6) }
                let nextGlobal = (0..<l.globalStateWidth).map { code(e, t + 1, 9, $0, column: 6) }
                let last = t == length - 1 && !(open && e == episodes - 1)
                // In odd episodes the last agent leaves at step 1 (the episode going on).
                let leaves = e % 2 == 1 && n > 1
                let active = (0..<n).map { k -> Float in leaves && k == n - 1 && t > 1 ? 0 : 1 }
                let finished = (0..<n).map { k -> Float in leaves && k == n - 1 && t == 1 ? 1 : 0 }
                replay.add(observations: block(l.observationWidth, 1, step: t), actions: block(l.actionWidth, 2, step: t),
                           rewards: block(1, 3, step: t), nextObservations: block(l.observationWidth, 1, step: t + 1),
                           terminated: last, truncated: false, actorStates: block(l.actorStateWidth, 4, step: t),
                           criticState: (0..<l.criticStateWidth).map { code(e, t, 8, $0, column: 5) },
                           globalState: global, nextGlobalState: nextGlobal, active: active, finished: finished)
            }
        }
    }

    /// In a sampled batch, agent k's observation, action, reward, previous action and stored state
    /// all belong to agent k and to the same step; the global state is the step's, and the next one
    /// at the bootstrap slot.
    func testPerAgentDataLinesUpInBatches() throws {
        let l = Self.layout, n = l.agents
        let replay = EpisodeReplay(capacity: 64, layout: l)
        Self.fill(replay, episodes: 4, length: 7)
        var c = SamplerConfiguration()
        c.sequenceLength = 5
        c.initialState = .stored
        let sampler = SequenceSampler(configuration: c, batchSize: 6, layout: l, seed: 4)
        var checkedBootstrap = 0
        for _ in 0..<20 {
            let b = sampler.sample(from: replay)
            XCTAssertEqual(b.observations.shape.dimensions, [6, 6, n * l.observationWidth])
            XCTAssertEqual(b.rewards.shape.dimensions, [6, 6, n])
            XCTAssertEqual(b.initialActorState.shape.dimensions, [6, n * l.actorStateWidth])
            for row in 0..<6 {
                let first = b.stepIndices[row]
                XCTAssertGreaterThanOrEqual(first, 0)
                // The stored actor states entering the window's first step, agent by agent.
                let e = Int(replay.observation(first)[0]) / 1000 % 10, t0 = Int(replay.observation(first)[0]) / 10 % 100
                for k in 0..<n {
                    for f in 0..<l.actorStateWidth {
                        XCTAssertEqual(b.initialActorState.data[row * n * l.actorStateWidth + k * l.actorStateWidth + f],
                                       Self.code(e, t0, k, f, column: 4))
                    }
                }
                for s in 0..<b.slots {
                    let slot = s * 6 + row
                    let i = b.stepIndices[slot]
                    if i < 0 {
                        // A bootstrap slot right after a step: the next observation and next global state.
                        guard s > 0, b.stepIndices[slot - 6] >= 0 else { continue }
                        let t = Int(b.observations.data[slot * n * l.observationWidth]) / 10 % 100
                        let before = Int(b.observations.data[(slot - 6) * n * l.observationWidth]) / 10 % 100
                        XCTAssertEqual(t, before + 1)
                        for f in 0..<l.globalStateWidth {
                            XCTAssertEqual(b.globalStates.data[slot * l.globalStateWidth + f], Self.code(e, t, 9, f, column: 6))
                        }
                        // Who is still in the episode after the step.
                        for k in 0..<n { XCTAssertEqual(b.agentActive.data[slot * n + k], e % 2 == 1 && k == n - 1 && t > 1 ? 0 : 1) }
                        checkedBootstrap += 1
                        continue
                    }
                    let t = Int(replay.observation(i)[0]) / 10 % 100
                    for k in 0..<n {
                        for f in 0..<l.observationWidth {
                            XCTAssertEqual(b.observations.data[(slot * n + k) * l.observationWidth + f], Self.code(e, t, k, f, column: 1))
                        }
                        XCTAssertEqual(b.actions.data[slot * n + k], Self.code(e, t, k, 0, column: 2))
                        XCTAssertEqual(b.rewards.data[slot * n + k], Self.code(e, t, k, 0, column: 3))
                        XCTAssertEqual(b.agentActive.data[slot * n + k], e % 2 == 1 && k == n - 1 && t > 1 ? 0 : 1)
                        XCTAssertEqual(b.agentFinished.data[slot * n + k], e % 2 == 1 && k == n - 1 && t == 1 ? 1 : 0)
                        if t > 0 {
                            XCTAssertEqual(b.previousActions.data[slot * n + k], Self.code(e, t - 1, k, 0, column: 2))
                            XCTAssertEqual(b.previousRewards.data[slot * n + k], Self.code(e, t - 1, k, 0, column: 3))
                        }
                    }
                    for f in 0..<l.globalStateWidth {
                        XCTAssertEqual(b.globalStates.data[slot * l.globalStateWidth + f], Self.code(e, t, 9, f, column: 6))
                    }
                }
            }
        }
        XCTAssertGreaterThan(checkedBootstrap, 0)
    }

    /// A multi-agent replay restored from a checkpoint holds the same steps and draws the same
    /// windows; a checkpoint without global states is refused with a message, not misread.
    func testCheckpointRoundTripAndRefusals() throws {
        let l = Self.layout
        let replay = EpisodeReplay(capacity: 30, layout: l, copies: 2)
        Self.fill(replay, episodes: 5, length: 4, open: true)
        let archive = StateArchive()
        try replay.save(to: archive, prefix: "replay.")
        let data = archive.encode()
        let restored = EpisodeReplay(capacity: 30, layout: l, copies: 2)
        try restored.restore(from: StateArchiveReader(data: data, path: "memory"), prefix: "replay.")
        var c = SamplerConfiguration()
        c.sequenceLength = 3
        let a = SequenceSampler(configuration: c, batchSize: 4, layout: l, seed: 2)
        let b = SequenceSampler(configuration: c, batchSize: 4, layout: l, seed: 2)
        for _ in 0..<5 {
            let x = a.sample(from: replay), y = b.sample(from: restored)
            for (p, q) in [(x.observations, y.observations), (x.actions, y.actions), (x.rewards, y.rewards), (x.globalStates, y.globalStates),
                           (x.initialActorState, y.initialActorState), (x.agentActive, y.agentActive), (x.agentFinished, y.agentFinished)] {
                XCTAssertEqual(p.array, q.array)
            }
        }
        // The same steps without the global-state column (as a run without global states writes them).
        var plain = l
        plain.globalStateWidth = 0
        let withoutGlobal = EpisodeReplay(capacity: 30, layout: plain, copies: 2)
        Self.fill(withoutGlobal, episodes: 2, length: 4)
        let archive2 = StateArchive()
        try withoutGlobal.save(to: archive2, prefix: "replay.")
        XCTAssertThrowsError(try restored.restore(from: StateArchiveReader(data: archive2.encode(), path: "old.ckpt"), prefix: "replay.")) {
            XCTAssertTrue("\($0)".contains("no global states"), "\($0)")
        }
        // Fewer agents: the sizes disagree, said as such.
        var twoAgents = l
        twoAgents.agents = 2
        let other = EpisodeReplay(capacity: 30, layout: twoAgents, copies: 2)
        XCTAssertThrowsError(try other.restore(from: StateArchiveReader(data: data, path: "three.ckpt"), prefix: "replay.")) {
            XCTAssertTrue("\($0)".contains("other sizes"), "\($0)")
        }
    }

    /// A layout saved before the multi-agent columns existed reads as one agent without global state.
    func testEarlierLayoutsDecodeAsSingleAgent() throws {
        let old = #"{"observationWidth":3,"actionWidth":1,"actorStateWidth":8,"criticStateWidth":16}"#
        let layout = try JSONDecoder().decode(ReplayLayout.self, from: Data(old.utf8))
        XCTAssertEqual(layout, ReplayLayout(observationWidth: 3, actionWidth: 1, actorStateWidth: 8, criticStateWidth: 16))
        XCTAssertEqual(layout.agents, 1)
        XCTAssertEqual(layout.globalStateWidth, 0)
        XCTAssertThrowsError(try ReplayLayout(observationWidth: 1, actionWidth: 1, agents: 0).validate())
    }
}
