import NeuralNetworks
import Tensors
import XCTest

final class OptimizerTests: XCTestCase {
    /// Two Adam steps on one scalar, against values worked out by hand:
    /// lr = 0.1, g1 = 0.5, g2 = -1, θ0 = 1.
    /// Step 1: m = 0.05, v = 0.00025; m̂ = 0.5, v̂ = 0.25; θ1 = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.9.
    /// Step 2: m = 0.045 - 0.1 = -0.055, v = 0.00024975 + 0.001 = 0.00124975;
    ///         m̂ = -0.055 / 0.19 = -0.289473684, v̂ = 0.00124975 / 0.001999 = 0.625187594;
    ///         θ2 = 0.9 + 0.1 * 0.289473684 / 0.790687292 = 0.936610...
    func testAdamMatchesHandComputedSteps() {
        let p = Parameter([1])
        p.value.data[0] = 1
        let adam = Adam(parameters: [p], learningRate: 0.1)
        p.gradient.data[0] = 0.5
        adam.step()
        XCTAssertEqual(p.value.data[0], 0.9, accuracy: 1e-6)
        p.gradient.data[0] = -1
        adam.step()
        XCTAssertEqual(p.value.data[0], 0.936610, accuracy: 2e-6)
        XCTAssertEqual(adam.stepCount, 2)
    }

    /// AdamW: θ ← θ(1 - lr·λ) before the Adam step; Adam's L2 decay adds λθ to the gradient instead.
    func testWeightDecayVariants() {
        // AdamW, lr 0.1, λ 0.5, g = 0.5, θ0 = 1: θ = 1 * (1 - 0.05) - 0.1 * 1 = 0.85 (first step moves by lr·sign).
        let p = Parameter([1]); p.value.data[0] = 1; p.gradient.data[0] = 0.5
        let adamW = Adam(parameters: [p], learningRate: 0.1, configuration: .init(weightDecay: 0.5, decoupledWeightDecay: true))
        adamW.step()
        XCTAssertEqual(p.value.data[0], 0.85, accuracy: 1e-6)
        // Adam + L2, same numbers: g' = 0.5 + 0.5 = 1; first step moves by lr: θ = 0.9.
        let q = Parameter([1]); q.value.data[0] = 1; q.gradient.data[0] = 0.5
        let adam = Adam(parameters: [q], learningRate: 0.1, configuration: .init(weightDecay: 0.5))
        adam.step()
        XCTAssertEqual(q.value.data[0], 0.9, accuracy: 1e-6)
        // With g = -0.2 and λ = 0.5 the L2 term flips the effective gradient's sign (-0.2 + 0.5 > 0).
        let r = Parameter([1]); r.value.data[0] = 1; r.gradient.data[0] = -0.2
        Adam(parameters: [r], learningRate: 0.1, configuration: .init(weightDecay: 0.5)).step()
        XCTAssertEqual(r.value.data[0], 0.9, accuracy: 1e-6)
        XCTAssertEqual(Adam.Configuration.adamW.weightDecay, 0.01)
    }

    func testPerGroupLearningRates() {
        let encoder = Parameter([3]), head = Parameter([2]), frozen = Parameter([2])
        for p in [encoder, head, frozen] { p.value.fill(1); p.gradient.fill(1) }
        let adam = Adam(groups: [
            ParameterGroup(name: "encoder", parameters: [encoder], learningRate: 0.001),
            ParameterGroup(name: "head", parameters: [head], learningRate: 0.03),
            ParameterGroup(name: "frozen", parameters: [frozen], learningRate: 0),
        ])
        adam.step()
        // The first Adam step moves each weight by its group's learning rate.
        for i in 0..<3 { XCTAssertEqual(encoder.value.data[i], 1 - 0.001, accuracy: 1e-7) }
        for i in 0..<2 { XCTAssertEqual(head.value.data[i], 1 - 0.03, accuracy: 1e-7) }
        XCTAssertEqual(frozen.value.array, [1, 1])
        adam.setLearningRate(0.5, group: 2)
        adam.step()
        XCTAssertLessThan(frozen.value.data[0], 0.6)
    }

    func testGlobalNormClippingAndPolyak() {
        let a = Parameter([2]), b = Parameter([1])
        a.gradient.data[0] = 3; a.gradient.data[1] = 0; b.gradient.data[0] = 4   // norm 5
        let norm = clipGradientNorm([a, b], maxNorm: 1)
        XCTAssertEqual(norm, 5, accuracy: 1e-6)
        XCTAssertEqual(a.gradient.data[0], 0.6, accuracy: 1e-6)
        XCTAssertEqual(b.gradient.data[0], 0.8, accuracy: 1e-6)
        XCTAssertEqual(gradientNorm([a, b]), 1, accuracy: 1e-5)
        XCTAssertEqual(clipGradientNorm([a, b], maxNorm: 10), 1, accuracy: 1e-5)   // below the limit: unchanged
        XCTAssertEqual(a.gradient.data[0], 0.6, accuracy: 1e-6)

        let target = Parameter([2]), source = Parameter([2])
        source.value.fill(10)
        polyakUpdate(target: [target], source: [source], tau: 0.005)
        XCTAssertEqual(target.value.data[1], 0.05, accuracy: 1e-6)
        copyParameters(from: [source], to: [target])
        XCTAssertEqual(target.value.array, [10, 10])
    }
}
