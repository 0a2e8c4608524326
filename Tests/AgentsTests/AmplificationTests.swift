@testable import Agents
import Environments
import NeuralNetworks
import Replay
import Tensors
import XCTest

/// The encoder's amplification: what one actor update of the recurrent encoder does to the policy
/// along replayed windows, step by step.
final class AmplificationTests: XCTestCase {
    func makeAgent(encoderLearningRate: Float, actions: Space) throws -> (OffPolicyAgent, SequenceBatch) {
        let (agent, replay, sampler) = try smallRecurrentAgent(actions: actions, episodes: [14, 20, 16, 13]) {
            $0.hiddenSize = 8
            $0.headHiddenSizes = [32]
            $0.sampler.sequenceLength = 12
            $0.sampler.alwaysStartAtEpisodeStart = true
            $0.actorLearningRate = 1e-3
            $0.encoderLearningRate = encoderLearningRate
        }
        return (agent, sampler.sample(from: replay))
    }

    func testAnEncoderThatDoesNotLearnDoesNotAmplify() throws {
        for actions in [Space.box(low: [-1, -1], high: [1, 1]), .discrete(3)] {
            let (agent, batch) = try makeAgent(encoderLearningRate: 1e-2, actions: actions)
            XCTAssertEqual(agent.actorOptimizer.groups[1].name, "actor.encoder")
            let fast = try XCTUnwrap(agent.amplification(batch))
            XCTAssertEqual(fast.count, 12, "one value per step index of the windows")
            XCTAssertTrue(fast.allSatisfy { $0.isFinite && $0 > 0 }, "\(actions): a learning encoder moves the policy at every step: \(fast)")
            agent.actorOptimizer.setLearningRate(0, group: 1)
            let still = try XCTUnwrap(agent.amplification(batch))
            XCTAssertEqual(still, [Double](repeating: 0, count: 12), "\(actions): an encoder at learning rate 0 moves nothing")
        }
    }

    /// Measuring puts everything back: an agent that measured and then updated holds the same
    /// weights, optimiser state and random generator as one that only updated.
    func testMeasuringChangesNothingInTraining() throws {
        let (measured, batch) = try makeAgent(encoderLearningRate: 1e-3, actions: .box(low: [-1], high: [1]))
        let (plain, _) = try makeAgent(encoderLearningRate: 1e-3, actions: .box(low: [-1], high: [1]))
        for _ in 0..<3 {
            _ = measured.amplification(batch)
            measured.update(batch)
            plain.update(batch)
        }
        for ((name, a), (_, b)) in zip(measured.namedParameters() + measured.targetNamedParameters(),
                                       plain.namedParameters() + plain.targetNamedParameters()) {
            XCTAssertEqual(a.value.array, b.value.array, name)
        }
        for (a, b) in zip(measured.actorOptimizer.firstMoments + measured.actorOptimizer.secondMoments,
                          plain.actorOptimizer.firstMoments + plain.actorOptimizer.secondMoments) {
            XCTAssertEqual(a.array, b.array)
        }
        XCTAssertEqual(measured.actorOptimizer.stepCount, plain.actorOptimizer.stepCount)
        var r1 = measured.rng, r2 = plain.rng
        XCTAssertEqual(r1.uniform(), r2.uniform())
    }
}
