@testable import Agents
import Collectives
import Environments
import Foundation
import NeuralNetworks
import Replay
import Tensors
@testable import Training
import XCTest

/// Data-parallel PPO with ranks that are threads (`ThreadGroup`): the same code as under mpirun,
/// checked against one process on the concatenated data.
final class DataParallelTests: XCTestCase {
    func configuration(_ configure: (inout PPOTrainingConfiguration) -> Void = { _ in }) -> PPOTrainingConfiguration {
        var c = PPOTrainingConfiguration()
        c.environment = "pendulum-velocity"
        c.seed = 7
        c.steps = 2 * 3 * 2 * 64
        c.evaluationEpisodes = 1
        c.evaluationInterval = 100_000
        c.ppo.network = .gru
        c.ppo.hiddenSize = 8
        c.ppo.headHiddenSizes = [8]
        c.ppo.environments = 3
        c.ppo.rolloutSteps = 64
        c.ppo.chunkLength = 16
        c.ppo.epochs = 2
        c.ppo.context = ContextInputs(observation: true, lastAction: true, lastReward: true)
        configure(&c)
        return c
    }

    /// Runs `body(rank, communicator)` on every rank of a group of `size` threads; returns the results by rank.
    func onRanks<T>(_ size: Int, _ body: @escaping (Int, any Communicator) throws -> T) throws -> [T] {
        let group = ThreadGroup(size: size)
        let results = Results<T>(count: size)
        group.run { member in
            do { results.set(member.rank, .success(try body(member.rank, member))) } catch { results.set(member.rank, .failure(error)) }
        }
        return try results.values.map { try $0!.get() }
    }

    /// The sums are the same bits on every rank; broadcast, gather and scatter deliver what was sent.
    func testThreadGroupCollectives() throws {
        let out = try onRanks(3) { rank, ranks -> ([Float], Data, [Data]?, Data, [Int]) in
            var values: [Float] = [Float(rank) + 0.1, 1e-8, Float(rank * rank)]
            values.withUnsafeMutableBufferPointer { ranks.sum($0.baseAddress!, count: 3) }
            let b = ranks.broadcast(Data("from \(rank)".utf8), root: 1)
            let g = ranks.gather(Data([UInt8(rank)]))
            let s = ranks.scatter(rank == 0 ? (0..<3).map { Data(repeating: UInt8($0), count: $0 + 1) } : nil)
            return (values, b, g, s, ranks.ranksDiffering(from: rank == 2 ? 9 : 4))
        }
        for (rank, (values, b, g, s, differing)) in out.enumerated() {
            XCTAssertEqual(values, out[0].0, "rank \(rank): the same sum everywhere")
            XCTAssertEqual(values[2], 5)
            XCTAssertEqual(b, Data("from 1".utf8))
            XCTAssertEqual(g, rank == 0 ? [Data([0]), Data([1]), Data([2])] : nil)
            XCTAssertEqual(s, Data(repeating: UInt8(rank), count: rank + 1))
            XCTAssertEqual(differing, [2])
        }
    }

    /// Two ranks, each updating on its own rollout with the gradients summed, take the same step as
    /// one process updating on both rollouts as one (the minibatch is the union of the ranks'; two
    /// epochs of one minibatch, so the data and the order of the steps are the same).
    func testRanksTakeTheStepOfOneProcessOnTheConcatenatedRollouts() throws {
        let c = configuration { $0.ppo.minibatchSize = 1 << 16 }
        let ranked = try onRanks(2) { _, ranks -> (PPOTrainer, PPOStatistics) in
            let trainer = try PPOTrainer(configuration: c, ranks: ranks)
            try trainer.collect()
            return (trainer, trainer.agent.update(trainer.buffer, progressRemaining: 1, diagnostics: false))
        }
        let one = try PPOTrainer(configuration: c)
        let parts = ranked.map(\.0.buffer), N = parts[0].envs, T = parts[0].steps
        XCTAssertNotEqual(parts[0].contexts.array, parts[1].contexts.array, "the ranks collect from their own copies")
        let b = one.buffer, joined = RolloutBuffer(steps: T, envs: 2 * N, contextWidth: b.contextWidth, actionWidth: b.actionWidth,
                                                  actorStateWidth: b.actorStateWidth, criticStateWidth: b.criticStateWidth)
        let fields: [(RolloutBuffer) -> Tensor] = [\.contexts, \.actions, \.logProbabilities, \.values, \.advantages, \.returns, \.active,
                                                   \.episodeStarts, \.actorStates, \.criticStates, \.collectedActorStates, \.collectedCriticStates]
        for field in fields {
            let target = field(joined), w = target.count / (T * 2 * N)
            for (r, part) in parts.enumerated() {
                let source = field(part)
                XCTAssertEqual(source.count, T * N * w)
                for t in 0..<T { (target.data + (t * 2 * N + r * N) * w).update(from: source.data + t * N * w, count: N * w) }
            }
        }
        let reference = one.agent.update(joined, progressRemaining: 1, diagnostics: false)
        let weights = one.agent.namedParameters()
        for (rank, (trainer, statistics)) in ranked.enumerated() {
            for ((name, p), (_, q)) in zip(weights, trainer.agent.namedParameters()) {
                let difference = zip(p.value.array, q.value.array).map { abs($0 - $1) }.max() ?? 0
                XCTAssertLessThan(difference, 2e-6, "rank \(rank): \(name)")
            }
            XCTAssertEqual(statistics.gradientSteps, reference.gradientSteps)
            XCTAssertEqual(statistics.policyLoss, reference.policyLoss, accuracy: 1e-5 * max(1, abs(reference.policyLoss)))
            XCTAssertEqual(statistics.valueLoss, reference.valueLoss, accuracy: 1e-4 * max(1, abs(reference.valueLoss)))
            XCTAssertEqual(statistics.gradientNorm, reference.gradientNorm, accuracy: 1e-4 * max(1, reference.gradientNorm))
        }
        // The weights moved: the check above compares steps, not two untouched copies.
        let initial = try PPOTrainer(configuration: c).agent.namedParameters()
        XCTAssertTrue(zip(initial, weights).contains { $0.parameter.value.array != $1.parameter.value.array })
    }

    /// Through whole updates (several minibatches, normalisers on) the ranks keep identical weights and
    /// statistics, which hold every rank's observations; the same seed gives the same run.
    func testRanksStayIdenticalAndRunsRepeat() throws {
        let c = configuration { $0.ppo.minibatchSize = 64 }
        func train() throws -> [(UInt32, Double, [Float])] {
            try onRanks(3) { _, ranks in
                let trainer = try PPOTrainer(configuration: c, ranks: ranks)
                for _ in 0..<3 { try trainer.advance() }
                return (trainer.agent.weightsChecksum(), trainer.agent.observationStatistics.count, trainer.buffer.contexts.array)
            }
        }
        let a = try train(), b = try train()
        XCTAssertEqual(Set(a.map(\.0)).count, 1, "every rank holds the same weights and statistics")
        XCTAssertEqual(a.map(\.0), b.map(\.0), "the same seed, the same run")
        XCTAssertNotEqual(a[0].2, a[1].2)
        XCTAssertNotEqual(a[1].2, a[2].2)
        // Each rank saw 3 copies x 64 steps per rollout, plus the first observations: all of them are counted.
        XCTAssertEqual(a[0].1, 1e-4 + 3 * (3 + 3 * 3 * 64), accuracy: 1e-6)
        let single = try PPOTrainer(configuration: c)
        for _ in 0..<3 { try single.advance() }
        XCTAssertEqual(single.step * 3, (try onRanks(3) { _, ranks -> Int in
            let t = try PPOTrainer(configuration: c, ranks: ranks)
            for _ in 0..<3 { try t.advance() }
            return t.step
        })[0], "steps count every rank's")
    }

    /// Normalisers merged across ranks equal statistics of all the values folded in one place.
    func testStatisticsMergedAcrossRanksEqualOnePlace() throws {
        let rows = (0..<3).map { r in (0..<(5 + r) * 2).map { Float(sin(Double($0 * 7 + r))) * Float(r + 1) } }
        var start = RunningMeanStd(width: 2)
        start.update([1, 2, 3, 4], rows: 2)
        let merged = try onRanks(3) { rank, ranks -> RunningMeanStd in
            var s = start
            s.update(rows[rank], rows: rows[rank].count / 2)
            s.combineAcrossRanks(ranks, since: start)
            return s
        }
        var all = start
        let everything = rows.flatMap { $0 }
        all.update(everything, rows: everything.count / 2)
        for s in merged {
            XCTAssertEqual(s.count, all.count, accuracy: 1e-9)
            for j in 0..<2 {
                XCTAssertEqual(s.mean[j], all.mean[j], accuracy: 1e-9)
                XCTAssertEqual(s.variance[j], all.variance[j], accuracy: 1e-9)
            }
            XCTAssertEqual(s, merged[0])
        }
    }
}

/// Results written by the ranks' threads.
final class Results<T>: @unchecked Sendable {
    let lock = NSLock()
    var values: [Result<T, Error>?]
    init(count: Int) { values = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ value: Result<T, Error>) { lock.lock(); values[i] = value; lock.unlock() }
}
