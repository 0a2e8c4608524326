import CKernels
import Foundation
import NeuralNetworks
import Tensors
import XCTest

final class DistributionTests: XCTestCase {
    override func tearDown() { rrl_set_force_portable(0) }

    /// The tanh-squashed Gaussian's actions, log-probabilities and gradients against the same formulas
    /// in double precision, on the vector and the portable path: means and noise that push u far into
    /// tanh's saturation on both sides, log stds inside and outside the clamp, 1-3 actions per row and
    /// row counts that are not multiples of 8.
    func testTanhGaussianAgainstDoublePrecisionOnBothPaths() {
        var rng = RandomGenerator(seed: 41)
        for portable in [Int32(0), 1] {
            rrl_set_force_portable(portable)
            for (rows, A) in [(37, 1), (5, 2), (13, 3), (1, 1)] {
                let n = rows * A
                var params = [Float](repeating: 0, count: rows * 2 * A), noise = [Float](repeating: 0, count: n)
                for r in 0..<rows {
                    for j in 0..<A {
                        params[r * 2 * A + j] = rng.uniform(-1, 1) * (r % 3 == 0 ? 30 : 2)
                        params[r * 2 * A + A + j] = rng.uniform(-25, 5)
                        noise[r * A + j] = rng.normal()
                    }
                }
                if n > 3 { params[A] = -20; params[2 * A + A] = 2; params[0] = 0 }  // clamp edges, u = 0 possible
                var actions = [Float](repeating: 0, count: n), logp = [Float](repeating: 0, count: rows)
                TanhGaussian.evaluate(parameters: params, rows: rows, actionWidth: A, noise: noise, actions: &actions,
                                      logProbabilities: &logp)
                let da = (0..<n).map { _ in rng.uniform(-1, 1) }, dlogp = (0..<rows).map { _ in rng.uniform(-1, 1) }
                var gradient = [Float](repeating: 0, count: rows * 2 * A)
                TanhGaussian.backward(parameters: params, rows: rows, actionWidth: A, noise: noise, actions: actions,
                                      actionGradient: da, logProbabilityGradient: dlogp, into: &gradient)
                for r in 0..<rows {
                    var reference = 0.0, scale = 0.0
                    for j in 0..<A {
                        let raw = Double(params[r * 2 * A + A + j]), e = Double(noise[r * A + j])
                        let logStd = min(max(raw, -20), 2), std = Foundation.exp(logStd)
                        let u = Double(params[r * 2 * A + j]) + std * e
                        let a = Foundation.tanh(u)
                        let softplus = max(-2 * u, 0) + Foundation.log1p(Foundation.exp(-2 * abs(u)))
                        reference += -e * e / 2 - logStd - 0.5 * Foundation.log(2 * Double.pi) - 2 * (Foundation.log(2) - u - softplus)
                        scale += e * e / 2 + abs(logStd) + 1 + 2 * (1 + abs(u) + softplus)
                        let label = "portable=\(portable) rows=\(rows) A=\(A) r=\(r) j=\(j) u=\(u)"
                        XCTAssertEqual(Double(actions[r * A + j]), a, accuracy: 4e-7 * max(abs(a), 1e-30) + 1e-37, label)
                        // Gradients from the float action (as the kernel), in double.
                        let af = Double(actions[r * A + j]), dl = Double(dlogp[r])
                        let du = Double(da[r * A + j]) * (1 - af * af) + dl * 2 * af
                        let inside = raw >= -20 && raw <= 2
                        XCTAssertEqual(Double(gradient[r * 2 * A + j]), du, accuracy: 1e-6 * (abs(du) + 1), label)
                        let dls = inside ? du * std * e - dl : 0
                        XCTAssertEqual(Double(gradient[r * 2 * A + A + j]), dls, accuracy: 2e-6 * (abs(du * std * e) + abs(dl) + 1e-30), label)
                    }
                    XCTAssertEqual(Double(logp[r]), reference, accuracy: 4e-7 * scale, "portable=\(portable) rows=\(rows) A=\(A) r=\(r)")
                }
            }
        }
    }
}
