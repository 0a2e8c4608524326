@testable import Replay
import Tensors
import XCTest

/// Builds a replay whose observations say where they come from: observation = [episode, step in
/// episode], next observation = [episode, step + 1], action = [episode + step / 1000],
/// reward = step, stored states = [episode, step] per state float.
func makeLabelledReplay(episodeLengths: [Int], terminatedEpisodes: Set<Int> = [], capacity: Int = 10_000,
                        openLastEpisode: Bool = false, storeStates: Bool = false) -> EpisodeReplay {
    let layout = ReplayLayout(observationWidth: 2, actionWidth: 1, actorStateWidth: storeStates ? 2 : 0, criticStateWidth: storeStates ? 4 : 0)
    let replay = EpisodeReplay(capacity: capacity, layout: layout)
    for (e, length) in episodeLengths.enumerated() {
        for t in 0..<length {
            let obs: [Float] = [Float(e), Float(t)], next: [Float] = [Float(e), Float(t + 1)]
            let action: [Float] = [Float(e) + Float(t) / 1000]
            let last = t == length - 1 && !(openLastEpisode && e == episodeLengths.count - 1)
            let actorState: [Float] = [Float(e), Float(t)], criticState: [Float] = [Float(e), Float(t), -Float(e), -Float(t)]
            replay.add(observation: obs, action: action, reward: Float(t), nextObservation: next,
                       terminated: last && terminatedEpisodes.contains(e), truncated: last && !terminatedEpisodes.contains(e),
                       actorState: storeStates ? actorState : nil, criticState: storeStates ? criticState : nil)
        }
    }
    return replay
}

final class SamplerTests: XCTestCase {
    /// Walks every row of a batch and checks the invariants of DESIGN §4 against the labelled replay.
    func checkInvariants(_ batch: SequenceBatch, replay: EpisodeReplay, configuration c: SamplerConfiguration,
                         file: StaticString = #filePath, line: UInt = #line) {
        let B = batch.batchSize, L = c.sequenceLength
        func obs(_ s: Int, _ b: Int) -> (Int, Int) {
            let k = s * B + b
            return (Int(batch.observations.data[k * 2]), Int(batch.observations.data[k * 2 + 1]))
        }
        for b in 0..<B {
            XCTAssertEqual(batch.resetMask[0, b], 1, "row \(b) must start with a reset", file: file, line: line)
            var s = 0
            var windows = 0
            while s < L {
                let i0 = batch.stepIndices[s * B + b]
                if i0 < 0 { break }  // padding
                XCTAssertEqual(batch.resetMask[s, b], 1, "a window starts with a reset (slot \(s))", file: file, line: line)
                windows += 1
                if c.alwaysStartAtEpisodeStart { XCTAssertTrue(replay.isFirstStep(i0), "window must start at an episode start", file: file, line: line) }
                if c.initialState.usesStoredStates {
                    XCTAssertEqual(windows, 1, "stored states: one window per row", file: file, line: line)
                    XCTAssertEqual(batch.initialActorState[b, 0], replay.actorState(i0)[0], file: file, line: line)
                    XCTAssertEqual(batch.initialActorState[b, 1], replay.actorState(i0)[1], "initial actor state is the stored one", file: file, line: line)
                    for j in 0..<4 { XCTAssertEqual(batch.initialCriticState[b, j], replay.criticState(i0)[j], file: file, line: line) }
                }
                let (episode, firstStep) = obs(s, b)
                var n = 0
                while s + n < L + 1, batch.stepIndices[(s + n) * B + b] >= 0 {
                    let k = (s + n) * B + b, i = batch.stepIndices[k]
                    XCTAssertEqual(obs(s + n, b).0, episode, "window crossed into another episode", file: file, line: line)
                    XCTAssertEqual(obs(s + n, b).1, firstStep + n, "steps of a window are consecutive", file: file, line: line)
                    if n > 0 { XCTAssertEqual(batch.resetMask[s + n, b], 0, "no reset inside a window", file: file, line: line) }
                    XCTAssertEqual(batch.validMask.data[k], s + n >= c.burnIn ? 1 : 0, "valid = trained step outside burn-in", file: file, line: line)
                    XCTAssertEqual(batch.actions.data[k], replay.action(i)[0], file: file, line: line)
                    XCTAssertEqual(batch.rewards.data[k], Float(firstStep + n), file: file, line: line)
                    XCTAssertEqual(batch.terminated.data[k], replay.terminated(i) ? 1 : 0, file: file, line: line)
                    // Context: the previous step of the same episode, zeros at its first step.
                    let t = firstStep + n
                    XCTAssertEqual(batch.previousRewards.data[k], t == 0 ? 0 : Float(t - 1), file: file, line: line)
                    XCTAssertEqual(batch.previousActions.data[k], t == 0 ? 0 : Float(episode) + Float(t - 1) / 1000, file: file, line: line)
                    XCTAssertEqual(batch.previousObservations.data[k * 2], t == 0 ? 0 : Float(episode), file: file, line: line)
                    XCTAssertEqual(batch.previousObservations.data[k * 2 + 1], t == 0 ? 0 : Float(t - 1), "the previous observation", file: file, line: line)
                    n += 1
                }
                XCTAssertLessThanOrEqual(s + n, L, "a step in the last slot leaves no bootstrap slot", file: file, line: line)
                let lastK = (s + n - 1) * B + b, last = batch.stepIndices[lastK]
                // The window ends at an episode end, the newest step, its drawn length or the row end.
                if replay.successor(last) != nil && !replay.endsEpisode(last) && !c.randomSequenceLength {
                    XCTAssertTrue(n == L - s, "a fixed-length window stopped early at slot \(s + n)", file: file, line: line)
                }
                for j in 0..<n {
                    let k = (s + j) * B + b
                    let expected: Float = j == n - 1 ? batch.validMask.data[k] : 0
                    XCTAssertEqual(batch.finalStepMask.data[k], expected, "final-step mask marks the last trained step only", file: file, line: line)
                }
                // The bootstrap slot holds the last step's next observation, no mask, no reset.
                let boot = obs(s + n, b)
                XCTAssertEqual(boot.0, episode, file: file, line: line)
                XCTAssertEqual(boot.1, firstStep + n, "bootstrap slot holds the next observation", file: file, line: line)
                XCTAssertEqual(batch.validMask[s + n, b], 0, file: file, line: line)
                XCTAssertEqual(batch.finalStepMask[s + n, b], 0, file: file, line: line)
                XCTAssertEqual(batch.resetMask[s + n, b], 0, "the bootstrap slot continues the window's state", file: file, line: line)
                XCTAssertEqual(batch.previousRewards[s + n, b], Float(firstStep + n - 1), "bootstrap context is the last step", file: file, line: line)
                XCTAssertEqual(batch.previousObservations[s + n, b, 1], Float(firstStep + n - 1), "its previous observation is the last step's", file: file, line: line)
                s += n + 1
            }
            for t in 0...L where batch.stepIndices[t * B + b] < 0 {
                XCTAssertEqual(batch.validMask[t, b], 0, "bootstrap and padding slots are never trained", file: file, line: line)
                XCTAssertEqual(batch.finalStepMask[t, b], 0, file: file, line: line)
            }
        }
    }

    func testEveryConfigurationKeepsTheInvariants() throws {
        let lengths = [7, 30, 1, 12, 55, 3, 20, 9]
        let terminated: Set<Int> = [1, 3, 5]
        var configurations: [SamplerConfiguration] = []
        for mode in InitialStateMode.allCases {
            for burnIn in [0, 4] where !(mode == .storedBurnIn && burnIn == 0) {
                for random in [false, true] {
                    for start in [false, true] {
                        var c = SamplerConfiguration()
                        c.sequenceLength = 16
                        c.burnIn = burnIn
                        c.initialState = mode
                        c.randomSequenceLength = random
                        c.alwaysStartAtEpisodeStart = start
                        try c.validate()
                        configurations.append(c)
                    }
                }
            }
        }
        XCTAssertEqual(configurations.count, 20)
        for open in [false, true] {
            let replay = makeLabelledReplay(episodeLengths: lengths, terminatedEpisodes: terminated, openLastEpisode: open, storeStates: true)
            for (n, c) in configurations.enumerated() {
                let sampler = SequenceSampler(configuration: c, batchSize: 6, layout: replay.layout, seed: UInt64(n))
                for _ in 0..<40 { checkInvariants(sampler.sample(from: replay), replay: replay, configuration: c) }
            }
        }
    }

    /// Windows of the whole episode length with episode starts: each window is one whole episode.
    func testFullEpisodesArePackedWithResets() {
        let replay = makeLabelledReplay(episodeLengths: [5, 8, 3, 8])
        var c = SamplerConfiguration()
        c.sequenceLength = 8
        c.alwaysStartAtEpisodeStart = true
        let sampler = SequenceSampler(configuration: c, batchSize: 5, layout: replay.layout, seed: 3)
        for _ in 0..<30 {
            let batch = sampler.sample(from: replay)
            checkInvariants(batch, replay: replay, configuration: c)
            for b in 0..<5 {
                // The first window is a whole episode (or fills the row): it starts at step 0.
                XCTAssertEqual(batch.observations[0, b, 1], 0)
            }
        }
    }

    /// Packed episodes: every window is a whole episode from its first step to its end, several to
    /// a row, never cut at the row's end (the episode that does not fit starts the next row), and
    /// an episode longer than the row is trained on its first L steps.
    func testPackedEpisodesAreWholeAndNeverCutAtTheRowEnd() {
        let lengths = [5, 8, 3, 8, 2, 14]
        let replay = makeLabelledReplay(episodeLengths: lengths, terminatedEpisodes: [0, 2])
        var c = SamplerConfiguration()
        c.sequenceLength = 12
        c.packEpisodes = true
        XCTAssertNoThrow(try c.validate())
        let B = 4, L = c.sequenceLength
        let sampler = SequenceSampler(configuration: c, batchSize: B, layout: replay.layout, seed: 5)
        var episodesSeen = Set<Int>(), rowsWithSeveral = 0, longSeen = false
        for _ in 0..<60 {
            let batch = sampler.sample(from: replay)
            checkInvariants(batch, replay: replay, configuration: c)
            for b in 0..<B {
                var s = 0, windows = 0
                while s < L, batch.stepIndices[s * B + b] >= 0 {
                    let episode = Int(batch.observations[s, b, 0])
                    XCTAssertEqual(batch.observations[s, b, 1], 0, "a packed window starts at its episode's first step")
                    var n = 0
                    while s + n < L + 1, batch.stepIndices[(s + n) * B + b] >= 0 { n += 1 }
                    XCTAssertEqual(n, min(lengths[episode], L), "episode \(episode) whole (or its first L steps)")
                    if lengths[episode] > L { longSeen = true }
                    episodesSeen.insert(episode)
                    windows += 1
                    s += n + 1
                }
                if windows > 1 { rowsWithSeveral += 1 }
                // The row ended because the next episode (the next row's first) did not fit.
                if b + 1 < B {
                    let nextEpisode = Int(batch.observations[0, b + 1, 0])
                    XCTAssertGreaterThan(s + min(lengths[nextEpisode], L), L, "row \(b) had room for episode \(nextEpisode)")
                }
                // Padding: no valid step after the last window.
                for t in s..<(L + 1) { XCTAssertEqual(batch.validMask[t, b], 0) }
            }
        }
        XCTAssertEqual(episodesSeen, Set(0..<lengths.count), "every episode is drawn")
        XCTAssertGreaterThan(rowsWithSeveral, 0, "short episodes share rows")
        XCTAssertTrue(longSeen)
        c.burnIn = 2
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("packed episodes")) }
        c.burnIn = 0
        c.initialState = .stored
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("zero state")) }
    }

    func testRandomLengthsFollowTheNominalProbability() {
        var c = SamplerConfiguration()
        c.sequenceLength = 10
        c.randomSequenceLength = true
        c.nominalLengthProbability = 0.3
        let sampler = SequenceSampler(configuration: c, batchSize: 1, layout: ReplayLayout(observationWidth: 1, actionWidth: 1), seed: 9)
        var counts = [Int](repeating: 0, count: 11)
        let draws = 100_000
        for _ in 0..<draws { counts[sampler.drawLength()] += 1 }
        XCTAssertEqual(counts[0], 0)
        XCTAssertEqual(Double(counts[10]) / Double(draws), 0.3, accuracy: 0.01, "nominal length with probability p")
        for length in 1...9 {
            XCTAssertEqual(Double(counts[length]) / Double(draws), 0.7 / 9, accuracy: 0.006, "length \(length) uniform over [1, L-1]")
        }
        c.randomSequenceLength = false
        let fixed = SequenceSampler(configuration: c, batchSize: 1, layout: ReplayLayout(observationWidth: 1, actionWidth: 1), seed: 9)
        for _ in 0..<100 { XCTAssertEqual(fixed.drawLength(), 10) }
    }

    func testReplayEvictsWholeEpisodes() {
        let replay = makeLabelledReplay(episodeLengths: [4, 6, 5, 7], capacity: 12)
        // 22 steps into 12 slots: episodes 0 and 1 (10 steps) are gone, 2 and 3 (12 steps) stay.
        XCTAssertEqual(replay.count, 12)
        XCTAssertEqual(replay.observation(replay.index(0))[0], 2)
        XCTAssertEqual(replay.observation(replay.index(0))[1], 0)
        XCTAssertEqual(replay.episodeStarts.count, 2)
        for s in replay.episodeStarts { XCTAssertTrue(replay.isFirstStep(s)) }
        // One more step starts an episode and evicts the whole of episode 2, not only its first step.
        replay.add(observation: [9, 0], action: [0], reward: 0, nextObservation: [9, 1], terminated: false, truncated: false)
        XCTAssertEqual(replay.count, 8)
        XCTAssertEqual(replay.observation(replay.index(0))[0], 3)
        XCTAssertEqual(replay.episodeStarts.count, 2)
        XCTAssertEqual(replay.totalSteps, 23)
        // An episode longer than the ring keeps its newest steps, and its oldest kept step counts as its start.
        let long = makeLabelledReplay(episodeLengths: [30], capacity: 10, openLastEpisode: true)
        XCTAssertEqual(long.count, 10)
        XCTAssertEqual(long.observation(long.index(0))[1], 20)
        XCTAssertEqual(long.episodeStarts, [long.index(0)])
        XCTAssertTrue(long.isFirstStep(long.index(0)))
    }

    func testValidationMessages() {
        var c = SamplerConfiguration()
        c.initialState = .storedBurnIn
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("burn-in")) }
        c = SamplerConfiguration()
        c.burnIn = 50
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("burn-in must be in 0..<")) }
        c = SamplerConfiguration()
        c.nominalLengthProbability = 1.5
        XCTAssertThrowsError(try c.validate())
    }
}

/// A replay for several environment copies: steps of three copies arrive interleaved, each copy's
/// episodes stay contiguous in its own ring, eviction is per ring, sampled windows never mix copies
/// or episodes, and a checkpoint restores every ring.
final class MultiCopyReplayTests: XCTestCase {
    func fill(_ replay: EpisodeReplay, steps: Int, lengths: [Int]) {
        var t = [Int](repeating: 0, count: replay.copies)
        for k in 0..<steps {
            for c in 0..<replay.copies {
                t[c] += 1
                let done = t[c] % lengths[c] == 0
                // observation: (copy, time in episode), action: the global step
                replay.add(copy: c, observation: [Float(c), Float(t[c] % lengths[c])], action: [Float(k)], reward: Float(c),
                           nextObservation: [Float(c), Float(t[c] % lengths[c] + 1)], terminated: done, truncated: false)
            }
        }
    }

    func testCopiesKeepTheirEpisodesApart() throws {
        let replay = EpisodeReplay(capacity: 90, layout: ReplayLayout(observationWidth: 2, actionWidth: 1), copies: 3)
        fill(replay, steps: 50, lengths: [7, 5, 11])
        XCTAssertEqual(replay.ringCapacity, 30)
        XCTAssertLessThanOrEqual(replay.count, 90)
        // Every kept step's successor and predecessor stay in its copy.
        for k in 0..<replay.count {
            let i = replay.index(k), c = replay.copy(of: i)
            XCTAssertEqual(replay.observation(i)[0], Float(c))
            if let s = replay.successor(i) { XCTAssertEqual(replay.copy(of: s), c) }
            if let p = replay.predecessor(i) {
                XCTAssertEqual(replay.copy(of: p), c)
                XCTAssertEqual(replay.episode(p), replay.episode(i))
            }
        }
        // Each ring starts with a whole episode (eviction drops whole episodes) and its episode starts are first steps.
        XCTAssertEqual(replay.episodeStarts.count, replay.episodeCount)
        for s in replay.episodeStarts { XCTAssertTrue(replay.isFirstStep(s)) }
        for k in 0..<replay.episodeCount { XCTAssertEqual(replay.episodeStart(k), replay.episodeStarts[k]) }

        var configuration = SamplerConfiguration()
        configuration.sequenceLength = 6
        let sampler = SequenceSampler(configuration: configuration, batchSize: 64, layout: replay.layout, seed: 3)
        var seen = Set<Int>()
        for _ in 0..<20 {
            let batch = sampler.sample(from: replay)
            for row in 0..<64 {
                var copy: Float?, episode: Int?
                for slot in 0..<batch.slots {
                    if batch.resetMask.data[slot * 64 + row] != 0 { episode = nil; copy = nil }
                    let i = batch.stepIndices[slot * 64 + row]
                    guard i >= 0 else { continue }
                    let c = replay.observation(i)[0]
                    XCTAssertTrue(copy == nil || copy == c, "a window mixed copies without a reset")
                    copy = c
                    if let episode { XCTAssertEqual(replay.episode(i), episode, "a window crossed episodes without a reset") }
                    episode = replay.episode(i)
                    seen.insert(Int(c))
                }
            }
        }
        XCTAssertEqual(seen, [0, 1, 2], "every copy's steps are drawn")

        // A checkpoint restores every ring: the same windows are drawn after it.
        let archive = StateArchive()
        try replay.save(to: archive, prefix: "replay.")
        let reader = try StateArchiveReader(data: archive.encode(), path: "memory")
        let restored = EpisodeReplay(capacity: 90, layout: replay.layout, copies: 3)
        try restored.restore(from: reader, prefix: "replay.")
        XCTAssertEqual(restored.count, replay.count)
        XCTAssertEqual(restored.episodeCount, replay.episodeCount)
        let a = SequenceSampler(configuration: configuration, batchSize: 16, layout: replay.layout, seed: 9)
        let b = SequenceSampler(configuration: configuration, batchSize: 16, layout: replay.layout, seed: 9)
        let x = a.sample(from: replay), y = b.sample(from: restored)
        XCTAssertEqual(x.observations.array, y.observations.array)
        XCTAssertEqual(x.actions.array, y.actions.array)
        XCTAssertEqual(x.resetMask.array, y.resetMask.array)
        // Both go on alike.
        fill(replay, steps: 13, lengths: [7, 5, 11])
        fill(restored, steps: 13, lengths: [7, 5, 11])
        XCTAssertEqual(restored.count, replay.count)
    }
}
