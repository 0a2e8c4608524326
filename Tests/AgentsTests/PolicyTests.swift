@testable import Agents
import Foundation
import NeuralNetworks
import Tensors
import TestSupport
import XCTest

/// The policy distributions every algorithm shares, and parameter snapshots.
final class PolicyTests: XCTestCase {
    /// The diagonal Gaussian's log-density is the normal density's (computed here in Double from
    /// its definition), sampling reports the log-density of what it drew, the mode is the mean, and
    /// the entropy agrees with a Monte Carlo estimate of -E[log π].
    func testDiagonalGaussianDensitySamplingAndEntropy() {
        let A = 3, rows = 4
        var rng = RandomGenerator(seed: 3)
        let means = (0..<(rows * A)).map { _ in rng.uniform(-1, 1) }
        let logStd: [Float] = [-0.7, 0.1, 0.5]
        var actions = [Float](repeating: 0, count: rows * A), logp = [Float](repeating: 0, count: rows)
        DiagonalGaussian.sample(means: means, logStd: logStd, rows: rows, actionWidth: A, deterministic: false, actions: &actions,
                                logProbabilities: &logp, rng: &rng)
        for r in 0..<rows {
            var expected = 0.0
            for j in 0..<A {
                let sd = exp(Double(logStd[j])), z = (Double(actions[r * A + j]) - Double(means[r * A + j])) / sd
                expected += -0.5 * z * z - log(sd) - 0.5 * log(2 * Double.pi)
            }
            let computed = means.withUnsafeBufferPointer { m in
                actions.withUnsafeBufferPointer { a in
                    DiagonalGaussian.logProbability(mean: m.baseAddress! + r * A, logStd: logStd, actionWidth: A, action: a.baseAddress! + r * A)
                }
            }
            XCTAssertEqual(Double(computed), expected, accuracy: 1e-4)
            XCTAssertEqual(Double(logp[r]), expected, accuracy: 1e-4, "sampling reports the density of its draw")
        }
        DiagonalGaussian.sample(means: means, logStd: logStd, rows: rows, actionWidth: A, deterministic: true, actions: &actions,
                                logProbabilities: nil, rng: &rng)
        XCTAssertEqual(actions, means)
        // Entropy: Σ_j H_j against -E[log π] over many draws.
        let n = 40_000
        var draws = [Float](repeating: 0, count: n * A), drawLogp = [Float](repeating: 0, count: n)
        let mean = [Float](repeating: 0.3, count: n * A)
        DiagonalGaussian.sample(means: mean, logStd: logStd, rows: n, actionWidth: A, deterministic: false, actions: &draws,
                                logProbabilities: &drawLogp, rng: &rng)
        let monteCarlo = -drawLogp.reduce(0.0) { $0 + Double($1) } / Double(n)
        let entropy = logStd.reduce(0.0) { $0 + Double(DiagonalGaussian.entropy(logStd: $1)) }
        XCTAssertEqual(monteCarlo, entropy, accuracy: 0.03)
    }

    /// The diagonal Gaussian's gradient of log π with respect to the mean and the log std (with an
    /// added offset) agrees with finite differences.
    func testDiagonalGaussianGradientMatchesFiniteDifferences() {
        let A = 2
        // Pointers, not arrays: the checker changes entries while the loss reads them.
        let mean = Tensor([A]), logStd = Tensor([A])
        mean.data[0] = 0.2; mean.data[1] = -0.4
        logStd.data[0] = -0.3; logStd.data[1] = 0.4
        let action: [Float] = [0.9, -1.3]
        var meanGradient = [Float](repeating: 0, count: A), logStdGradient = [Float](repeating: 0, count: A)
        let dLogp: Float = -1.7, offset: Float = 0.25
        DiagonalGaussian.backward(mean: mean.data, logStd: logStd.data, actionWidth: A, action: action, logProbabilityGradient: dLogp,
                                  meanGradient: &meanGradient, logStdGradient: &logStdGradient, logStdGradientOffset: offset)
        // The loss whose gradient that is: dLogp · log π + offset · Σ log std.
        func loss() -> Double {
            Double(dLogp * DiagonalGaussian.logProbability(mean: mean.data, logStd: logStd.data, actionWidth: A, action: action))
                + Double(offset) * Double(logStd.data[0] + logStd.data[1])
        }
        var rng = RandomGenerator(seed: 1)
        GradientChecker().check("mean", values: mean.data, analytic: meanGradient, rng: &rng, loss: loss)
        GradientChecker().check("log std", values: logStd.data, analytic: logStdGradient, rng: &rng, loss: loss)
    }

    /// The categorical entropy is -Σ p log p of the softmax (in Double), and is log n for equal logits.
    func testCategoricalEntropy() {
        let n = 4
        let logits: [Float] = [0.5, -1, 2, 0, 0, 0, 0, 0]
        var p = [Float](repeating: 0, count: 2 * n), lp = [Float](repeating: 0, count: 2 * n)
        Categorical.probabilities(logits: logits, rows: 2, actions: n, probabilities: &p, logProbabilities: &lp)
        let z = logits[0..<n].reduce(0.0) { $0 + exp(Double($1)) }
        let expected = -logits[0..<n].reduce(0.0) { let q = exp(Double($1)) / z; return $0 + q * log(q) }
        XCTAssertEqual(Double(Categorical.entropy(probabilities: p, logProbabilities: lp, actions: n)), expected, accuracy: 1e-5)
        let uniform = p.withUnsafeBufferPointer { pp in
            lp.withUnsafeBufferPointer { l in Categorical.entropy(probabilities: pp.baseAddress! + n, logProbabilities: l.baseAddress! + n, actions: n) }
        }
        XCTAssertEqual(uniform, log(Float(n)), accuracy: 1e-6)
    }

    /// A snapshot puts back the values, the Adam moments and the step count exactly; before any
    /// snapshot (or after `invalidate`), restoring changes nothing.
    func testParameterSnapshotRestoresValuesAndOptimizerState() {
        var rng = RandomGenerator(seed: 5)
        let parameters = [Parameter([3, 2]), Parameter([4])]
        for p in parameters { for i in 0..<p.value.count { p.value.data[i] = rng.normal() } }
        let adam = Adam(parameters: parameters, learningRate: 0.1)
        func step() {
            for p in parameters { for i in 0..<p.value.count { p.gradient.data[i] = rng.normal() } }
            adam.step()
        }
        step()
        let snapshot = ParameterSnapshot(of: parameters, optimizer: adam)
        XCTAssertFalse(snapshot.restore(), "nothing to restore yet")
        snapshot.take()
        let values = parameters.map(\.value.array), first = adam.firstMoments.map(\.array), second = adam.secondMoments.map(\.array)
        step()
        step()
        XCTAssertNotEqual(parameters[0].value.array, values[0])
        XCTAssertTrue(snapshot.restore())
        XCTAssertEqual(parameters.map(\.value.array), values)
        XCTAssertEqual(adam.firstMoments.map(\.array), first)
        XCTAssertEqual(adam.secondMoments.map(\.array), second)
        XCTAssertEqual(adam.stepCount, 1)
        snapshot.invalidate()
        step()
        let moved = parameters.map(\.value.array)
        XCTAssertFalse(snapshot.restore())
        XCTAssertEqual(parameters.map(\.value.array), moved)
    }
}

/// The one context writer: observation, agent id, previous action (one-hot when discrete), previous reward.
final class ContextInputsTests: XCTestCase {
    func testTheContextHoldsTheAgentIDOneHot() throws {
        let c = try ContextInputs(parsing: "observation,agentID,lastAction,lastReward")
        XCTAssertEqual(c.width(observation: 2, action: 3, agents: 4), 2 + 4 + 3 + 1)
        var out = [Float](repeating: 9, count: 10)
        c.write(observation: [0.5, -0.5], observationWidth: 2, lastAction: [2], actionWidth: 1, oneHotOver: 3, lastReward: 0.25,
                agent: 1, agents: 4, into: &out)
        XCTAssertEqual(out, [0.5, -0.5, 0, 1, 0, 0, 0, 0, 1, 0.25])
        c.write(observation: [0.5, -0.5], observationWidth: 2, lastAction: nil, actionWidth: 1, oneHotOver: 3, lastReward: 0,
                agent: 3, agents: 4, into: &out)
        XCTAssertEqual(out, [0.5, -0.5, 0, 0, 0, 1, 0, 0, 0, 0])
        XCTAssertEqual(c.description, "observation,lastAction,lastReward,agentID")
    }

    /// Configurations written before the agent id existed decode without it; the switch round-trips.
    func testEarlierContextsDecode() throws {
        let old = #"{"lastAction":true,"lastReward":false,"observation":true}"#
        let decoded = try JSONDecoder().decode(ContextInputs.self, from: Data(old.utf8))
        XCTAssertEqual(decoded, ContextInputs(observation: true, lastAction: true))
        let withID = ContextInputs(observation: true, agentID: true)
        XCTAssertEqual(try JSONDecoder().decode(ContextInputs.self, from: JSONEncoder().encode(withID)), withID)
        XCTAssertThrowsError(try { var a = AgentConfiguration(); a.context.agentID = true; try a.validate() }())
    }
}
