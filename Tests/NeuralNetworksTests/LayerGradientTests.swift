import NeuralNetworks
import Tensors
import TestSupport
import XCTest

final class LayerGradientTests: XCTestCase {
    let checker = GradientChecker()

    func testDenseEveryActivation() {
        for (seed, shape) in [(1, [4, 5] as [Int]), (2, [1, 3]), (3, [3, 2, 6])] {
            for activation in Activation.allCases {
                var rng = RandomGenerator(seed: UInt64(seed * 31 + activation.hashValue & 7))
                let inputSize = shape.last!
                let layer = Dense(inputSize: inputSize, outputSize: 4, activation: activation, using: &rng)
                var x = Tensor.normal(Shape(shape), using: &rng)
                if activation == .relu {
                    // Finite differences are meaningless across ReLU's kink: draw inputs whose
                    // pre-activations stay well away from zero under the perturbations.
                    let probe = Dense(inputSize: inputSize, outputSize: 4, using: &rng)
                    copyParameters(from: layer.parameters, to: probe.parameters)
                    while probe.forward(x).array.contains(where: { abs($0) < 0.1 }) { x = Tensor.normal(Shape(shape), using: &rng) }
                }
                let w = Tensor.normal(Shape(shape).replacingLast(with: 4), using: &rng)
                layer.forward(x)
                layer.zeroGradients()
                let dx = layer.backward(w).array
                let loss = { weightedSum(layer.forward(x), w) }
                let label = "Dense(\(activation)) shape \(shape)"
                checker.check("\(label) input", values: x.data, analytic: dx, rng: &rng, loss: loss)
                checker.check("\(label) weight", values: layer.weight.value.data, analytic: layer.weight.gradient.array, rng: &rng, loss: loss)
                checker.check("\(label) bias", values: layer.bias.value.data, analytic: layer.bias.gradient.array, rng: &rng, loss: loss)
            }
        }
    }

    func testLayerNorm() {
        for (seed, shape) in [(4, [5, 6] as [Int]), (5, [1, 3]), (6, [2, 3, 8])] {
            var rng = RandomGenerator(seed: UInt64(seed))
            let layer = LayerNorm(features: shape.last!)
            for i in 0..<layer.weight.value.count {
                layer.weight.value.data[i] = rng.uniform(0.5, 1.5)
                layer.bias.value.data[i] = rng.uniform(-0.5, 0.5)
            }
            let x = Tensor.normal(Shape(shape), using: &rng)
            let w = Tensor.normal(Shape(shape), using: &rng)
            layer.forward(x)
            layer.zeroGradients()
            let dx = layer.backward(w).array
            let loss = { weightedSum(layer.forward(x), w) }
            checker.check("LayerNorm \(shape) input", values: x.data, analytic: dx, rng: &rng, loss: loss)
            checker.check("LayerNorm \(shape) weight", values: layer.weight.value.data, analytic: layer.weight.gradient.array, rng: &rng, loss: loss)
            checker.check("LayerNorm \(shape) bias", values: layer.bias.value.data, analytic: layer.bias.gradient.array, rng: &rng, loss: loss)
        }
    }

    func testLayerNormNormalises() {
        let layer = LayerNorm(features: 4)
        let y = layer.forward(Tensor([1, 4], values: [1, 2, 3, 4]))
        let mean = y.array.reduce(0, +) / 4
        let variance = y.array.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 4
        XCTAssertEqual(mean, 0, accuracy: 1e-6)
        XCTAssertEqual(variance, 1, accuracy: 1e-3)
    }

    func testLossesWithAndWithoutMask() {
        var rng = RandomGenerator(seed: 9)
        let prediction = Tensor.normal([6, 3], using: &rng)
        let target = Tensor.normal([6, 3], using: &rng)
        let mask = Tensor([6], values: [1, 0, 1, 1, 0, 1])
        let gradient = Tensor([0])
        for useMask in [false, true] {
            for kind in ["mse", "huber"] {
                let m = useMask ? mask : nil
                func loss() -> Double {
                    let g = Tensor([0])
                    return Double(kind == "mse" ? Loss.meanSquaredError(prediction: prediction, target: target, mask: m, gradient: g)
                                                : Loss.huber(prediction: prediction, target: target, delta: 0.7, mask: m, gradient: g))
                }
                _ = kind == "mse" ? Loss.meanSquaredError(prediction: prediction, target: target, mask: m, gradient: gradient)
                                  : Loss.huber(prediction: prediction, target: target, delta: 0.7, mask: m, gradient: gradient)
                checker.check("\(kind) mask=\(useMask)", values: prediction.data, analytic: gradient.array, rng: &rng, loss: loss)
            }
        }
        // Hand-computed value: masked rows do not count.
        let p = Tensor([2, 1], values: [1, 5]), t = Tensor([2, 1], values: [0, 0])
        XCTAssertEqual(Loss.meanSquaredError(prediction: p, target: t, mask: Tensor([2], values: [1, 0]), gradient: gradient), 1)
        XCTAssertEqual(Loss.meanSquaredError(prediction: p, target: t, gradient: gradient), 13)
        XCTAssertEqual(gradient.array, [1, 5])
    }

    func testSequentialMLP() {
        var rng = RandomGenerator(seed: 12)
        let mlp = Sequential.mlp(inputSize: 5, hiddenSizes: [8, 6], outputSize: 3, activation: .elu, outputActivation: .tanh, layerNorm: true, using: &rng)
        XCTAssertEqual(mlp.namedParameters(prefix: "actor.").map(\.name).prefix(4), ["actor.0.weight", "actor.0.bias", "actor.1.weight", "actor.1.bias"])
        let x = Tensor.normal([4, 5], using: &rng), w = Tensor.normal([4, 3], using: &rng)
        mlp.forward(x)
        mlp.zeroGradients()
        let dx = mlp.backward(w).array
        let loss = { weightedSum(mlp.forward(x), w) }
        checker.check("MLP input", values: x.data, analytic: dx, rng: &rng, loss: loss)
        for (name, p) in mlp.namedParameters(prefix: "") {
            checker.check("MLP \(name)", values: p.value.data, analytic: p.gradient.array, rng: &rng, loss: loss)
        }
    }
    /// A chain of ReLU layers: Sequential applies each ReLU's backward inside the product of the layer
    /// above (one pass less); its gradients have the bits of the layers' own backward passes, one by
    /// one (whose gradients `testDenseEveryActivation` checks by finite differences; across a chain
    /// of ReLUs over many rows, differences of float32 losses cross kinks too often to be a check).
    func testReLUChainBackwardFusedKeepsBitsAndGradients() {
        var rng = RandomGenerator(seed: 13)
        for (hidden, rows) in [([16, 16, 16], 100), ([9, 5], 7), ([64], 3)] {
            let mlp = Sequential.mlp(inputSize: 5, hiddenSizes: hidden, outputSize: 3, activation: .relu, using: &rng)
            let x = Tensor.normal([rows, 5], using: &rng), w = Tensor.normal([rows, 3], using: &rng)
            mlp.forward(x)
            mlp.zeroGradients()
            let dx = mlp.backward(w).array
            let fused = mlp.namedParameters(prefix: "").map { $0.parameter.gradient.array }
            // The same chain, each layer's own backward (its ReLU as a separate pass).
            mlp.zeroGradients()
            var g = w
            for layer in mlp.layers.reversed() { g = Tensor(copying: layer.backward(g)) }
            XCTAssertEqual(dx.map(\.bitPattern), g.array.map(\.bitPattern), "input gradient, hidden \(hidden)")
            for ((name, p), f) in zip(mlp.namedParameters(prefix: ""), fused) {
                XCTAssertEqual(f.map(\.bitPattern), p.gradient.array.map(\.bitPattern), "\(name), hidden \(hidden)")
            }
        }
    }
}
