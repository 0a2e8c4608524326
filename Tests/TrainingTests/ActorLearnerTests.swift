@testable import Agents
import Collectives
import Environments
import Foundation
import Replay
import Tensors
@testable import Training
import XCTest

/// Actor-learner off-policy training with ranks that are threads: rank 0 learns, the others act.
final class ActorLearnerTests: XCTestCase {
    /// Discrete SAC with a GRU and stored states on cartpole-position: episodes of uneven lengths.
    func configuration() -> OffPolicyConfiguration {
        var c = OffPolicyConfiguration.defaults(algorithm: .sac, environment: "cartpole-position")
        c.steps = 1200
        c.warmupSteps = 200
        c.evaluationInterval = 400
        c.evaluationEpisodes = 2
        c.environments = 2
        c.agent.network = .gru
        c.agent.hiddenSize = 8
        c.agent.headHiddenSizes = [8]
        c.agent.batchSize = 4
        c.agent.sampler.sequenceLength = 8
        c.agent.sampler.initialState = .stored
        return c
    }

    /// Trains with a learner and `actors` actors; returns the learner's trainer, its rows, and the actors' trainers.
    func train(actors: Int) throws -> (OffPolicyTrainer, [MetricsRow], [OffPolicyTrainer]) {
        let c = configuration()
        let group = ThreadGroup(size: actors + 1)
        let results = Results<(OffPolicyTrainer, [MetricsRow])>(count: actors + 1)
        group.run { member in
            do {
                let trainer = try OffPolicyTrainer(configuration: c, ranks: member)
                var rows: [MetricsRow] = []
                if member.rank == 0 {
                    rows = try trainer.run()
                    trainer.stopActors()
                } else {
                    try trainer.runAsActor()
                }
                results.set(member.rank, .success((trainer, rows)))
            } catch {
                results.set(member.rank, .failure(error))
            }
        }
        let all = try results.values.map { try $0!.get() }
        return (all[0].0, all[0].1, all.dropFirst().map(\.0))
    }

    /// Every step the actors took reaches the learner's replay once, in order, in the ring of its
    /// actor's copy: within an episode each step starts where the one before ended, each finished
    /// episode is there whole, and the counts agree with the actors' own.
    func testNoEpisodeIsLostOrDuplicated() throws {
        let (learner, rows, actors) = try train(actors: 2)
        let replay = learner.replay, copies = learner.copies
        XCTAssertEqual(rows.count, 3)
        XCTAssertEqual(replay.copies, 2 * copies)
        XCTAssertEqual(replay.totalSteps, learner.step, "every step received is stored")
        XCTAssertGreaterThanOrEqual(learner.step, 1200)
        XCTAssertEqual(learner.episodes, actors.reduce(0) { $0 + $1.episodes }, "the learner counts every actor's finished episodes")
        var lengths: [Int] = [], length = [Int](repeating: 0, count: replay.copies), previous = [Int?](repeating: nil, count: replay.copies)
        let o = replay.layout.observationFloats
        for offset in 0..<replay.count {
            let i = replay.index(offset), ring = replay.copy(of: i)
            if let p = previous[ring] {
                XCTAssertEqual(replay.isFirstStep(i), replay.endsEpisode(p), "ring \(ring), step \(length[ring])")
                if !replay.isFirstStep(i) {
                    XCTAssertEqual(Array(UnsafeBufferPointer(start: replay.nextObservation(p), count: o)),
                                   Array(UnsafeBufferPointer(start: replay.observation(i), count: o)), "ring \(ring): a step continues the one before")
                }
            } else {
                XCTAssertTrue(replay.isFirstStep(i), "ring \(ring) starts with an episode's first step")
            }
            previous[ring] = i
            length[ring] += 1
            if replay.endsEpisode(i) { lengths.append(length[ring]); length[ring] = 0 }
        }
        for ring in 0..<replay.copies {
            XCTAssertEqual(replay.isEpisodeOpen(copy: ring), actors[ring / copies].store.isEpisodeOpen(copy: ring % copies), "ring \(ring)")
        }
        XCTAssertEqual(lengths.count, learner.episodes, "every finished episode is stored whole")
        XCTAssertGreaterThan(Set(lengths).count, 3, "episodes of uneven lengths")
        // The actors acted with the learner's weights: after the last answer they hold what it sent.
        let age = rows.last?["acting_weights_age"] ?? .nan
        XCTAssertEqual(age, Double(2 * copies), "the weights an actor acts with are one round old: the updates for 2 actors x \(copies) copies' steps")
    }

    /// The rounds are taken in rank order, so the same seed gives the same run.
    func testSameSeedSameRun() throws {
        func strip(_ rows: [MetricsRow]) -> [MetricsRow] {
            // (NaN, the absent probe accuracy, is never equal to itself.)
            rows.map { var r = $0; for c in MetricsRow.timingColumns { r[c] = nil }; r["probe_accuracy"] = nil; return r }
        }
        let a = try train(actors: 2), b = try train(actors: 2)
        XCTAssertEqual(strip(a.1), strip(b.1))
        XCTAssertEqual(a.0.agent.namedParameters().map(\.parameter.value.array), b.0.agent.namedParameters().map(\.parameter.value.array))
    }
}
