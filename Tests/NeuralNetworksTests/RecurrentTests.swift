import NeuralNetworks
import Tensors
import TestSupport
import XCTest

final class RecurrentTests: XCTestCase {
    let checker = GradientChecker()

    /// Gradient check of a recurrent layer for inputs, weights and initial state, with a reset
    /// mask and a final-state gradient.
    func checkRecurrent(_ layer: any RecurrentLayer, time T: Int, batch B: Int, resets: Bool, seed: UInt64) {
        var rng = RandomGenerator(seed: seed)
        let x = Tensor.normal([T, B, layer.inputSize], using: &rng)
        let h0 = Tensor.normal([B, layer.stateWidth], mean: 0, standardDeviation: 0.5, using: &rng)
        let wOut = Tensor.normal([T, B, layer.hiddenSize], using: &rng)
        let wState = Tensor.normal([B, layer.stateWidth], using: &rng)
        var mask: Tensor?
        if resets {
            let m = Tensor([T, B])
            for i in 0..<(T * B) where rng.uniform() < 0.25 { m.data[i] = 1 }
            mask = m
        }
        func loss() -> Double {
            layer.forward(x, initialState: h0.matrix, resetMask: mask, keepActivations: false)
            return weightedSum(layer.output, wOut) + weightedSum(layer.finalState, wState)
        }
        layer.forward(x, initialState: h0.matrix, resetMask: mask)
        layer.zeroGradients()
        layer.backward(outputGradient: wOut, finalStateGradient: wState.matrix)
        let label = "\(type(of: layer)) T=\(T) B=\(B) resets=\(resets)"
        checker.check("\(label) input", values: x.data, analytic: layer.inputGradient.array, rng: &rng, loss: loss)
        checker.check("\(label) initial state", values: h0.data, analytic: layer.initialStateGradient.array, rng: &rng, loss: loss)
        for (name, p) in layer.namedParameters(prefix: "") {
            checker.check("\(label) \(name)", values: p.value.data, analytic: p.gradient.array, rng: &rng, loss: loss)
        }
    }

    func testGRUAndLSTMGradientsOverShapesAndSeeds() {
        var seed: UInt64 = 100
        for cell in CellKind.allCases {
            for (T, B, I, H) in [(1, 1, 3, 4), (5, 1, 2, 3), (1, 4, 3, 5), (7, 3, 4, 6)] {
                for resets in [false, true] {
                    seed += 1
                    var rng = RandomGenerator(seed: seed)
                    checkRecurrent(cell.makeLayer(inputSize: I, hiddenSize: H, using: &rng), time: T, batch: B, resets: resets, seed: seed)
                }
            }
        }
    }

    func testStackOfGRUAndLSTM() {
        var rng = RandomGenerator(seed: 77)
        let stack = RecurrentStack([GRU(inputSize: 3, hiddenSize: 5, using: &rng), LSTM(inputSize: 5, hiddenSize: 4, using: &rng)])
        XCTAssertEqual(stack.stateWidth, 5 + 8)
        checkRecurrent(stack, time: 6, batch: 2, resets: true, seed: 78)
    }

    /// A whole model: Dense(tanh) -> GRU -> LSTM -> Dense -> masked MSE, checked for every
    /// parameter, the input sequence and the initial state.
    func testWholeMultiLayerRecurrentModel() {
        var rng = RandomGenerator(seed: 5)
        let (T, B, I) = (8, 3, 4)
        let pre = Dense(inputSize: I, outputSize: 6, activation: .tanh, using: &rng)
        let core = RecurrentStack([GRU(inputSize: 6, hiddenSize: 5, using: &rng), LSTM(inputSize: 5, hiddenSize: 5, using: &rng)])
        let head = Sequential.mlp(inputSize: 5, hiddenSizes: [7], outputSize: 2, activation: .elu, using: &rng)
        let x = Tensor.normal([T, B, I], using: &rng)
        let h0 = Tensor.normal([B, core.stateWidth], mean: 0, standardDeviation: 0.3, using: &rng)
        let target = Tensor.normal([T, B, 2], using: &rng)
        let mask = Tensor([T, B]), valid = Tensor([T * B])
        for i in 0..<(T * B) {
            mask.data[i] = rng.uniform() < 0.2 ? 1 : 0
            valid.data[i] = rng.uniform() < 0.8 ? 1 : 0
        }
        let gradient = Tensor([0])
        func run() -> Float {
            let features = pre.forward(x)
            core.forward(features, initialState: h0.matrix, resetMask: mask)
            let y = head.forward(core.output)
            return Loss.meanSquaredError(prediction: y, target: target, mask: valid, gradient: gradient)
        }
        _ = run()
        for p in pre.parameters + core.parameters + head.parameters { p.zeroGradient() }
        let dFeatures = head.backward(gradient)
        core.backward(outputGradient: dFeatures, finalStateGradient: nil, truncation: 0, needsInputGradient: true)
        let dx = pre.backward(core.inputGradient).array
        let dh0 = core.initialStateGradient.array
        let loss = { Double(run()) }
        checker.check("model input", values: x.data, analytic: dx, rng: &rng, loss: loss)
        checker.check("model initial state", values: h0.data, analytic: dh0, rng: &rng, loss: loss)
        let named = pre.namedParameters(prefix: "pre.") + core.namedParameters(prefix: "core.") + head.namedParameters(prefix: "head.")
        XCTAssertTrue(named.map(\.name).contains("core.weight_hh_l1"))
        for (name, p) in named {
            checker.check("model \(name)", values: p.value.data, analytic: p.gradient.array, rng: &rng, loss: loss)
        }
    }

    /// A reset at step s makes the sequence exactly two independent runs from the initial state.
    func testResetEqualsTwoSeparateHalves() {
        for cell in CellKind.allCases {
            var rng = RandomGenerator(seed: 21)
            let (T, B, I, H, s) = (9, 2, 3, 4, 4)
            let layer = RecurrentStack(cell: cell, inputSize: I, hiddenSize: H, layers: 2, using: &rng)
            let W = layer.stateWidth
            let x = Tensor.normal([T, B, I], using: &rng)
            let h0 = Tensor.normal([B, W], using: &rng)
            let dY = Tensor.normal([T, B, H], using: &rng)
            let dFinal = Tensor.normal([B, W], using: &rng)
            let mask = Tensor([T, B])
            for b in 0..<B { mask[s, b] = 1 }

            layer.forward(x, initialState: h0.matrix, resetMask: mask)
            layer.zeroGradients()
            layer.backward(outputGradient: dY, finalStateGradient: dFinal.matrix)
            let fullOutput = layer.output.array, fullFinal = layer.finalState.array
            let fullDx = layer.inputGradient.array, fullDh0 = layer.initialStateGradient.array
            let fullGrads = layer.parameters.map(\.gradient.array)

            func part(_ range: Range<Int>) -> Tensor {
                let t = Tensor([range.count, B, I]); t.data.update(from: x.data + range.lowerBound * B * I, count: range.count * B * I); return t
            }
            func partGrad(_ range: Range<Int>) -> Tensor {
                let t = Tensor([range.count, B, H]); t.data.update(from: dY.data + range.lowerBound * B * H, count: range.count * B * H); return t
            }
            layer.zeroGradients()
            layer.forward(part(0..<s), initialState: h0.matrix)
            let firstOutput = layer.output.array
            layer.backward(outputGradient: partGrad(0..<s))  // no gradient into the final state: the reset cut it
            let firstDx = layer.inputGradient.array, firstDh0 = layer.initialStateGradient.array
            layer.forward(part(s..<T), initialState: h0.matrix)
            let secondOutput = layer.output.array, secondFinal = layer.finalState.array
            layer.backward(outputGradient: partGrad(s..<T), finalStateGradient: dFinal.matrix)
            let secondDx = layer.inputGradient.array, secondDh0 = layer.initialStateGradient.array

            XCTAssertEqual(fullOutput, firstOutput + secondOutput, "\(cell) outputs")
            XCTAssertEqual(fullFinal, secondFinal, "\(cell) final state")
            XCTAssertLessThan(maxAbsDifference(fullDx, firstDx + secondDx), 1e-6, "\(cell) input gradient")
            XCTAssertLessThan(maxAbsDifference(fullDh0, zip(firstDh0, secondDh0).map { $0 + $1 }), 1e-5, "\(cell) initial-state gradient")
            for (full, p) in zip(fullGrads, layer.parameters) {
                XCTAssertLessThan(maxAbsDifference(full, p.gradient.array), 1e-5, "\(cell) weight gradient")
            }
        }
    }

    /// With `resets: .zero`, a reset at step s restarts from zeros: the second half equals a run from
    /// a zero state, and only step 0 sends gradient to the initial state.
    func testResetToZeroEqualsFreshStart() {
        for cell in CellKind.allCases {
            var rng = RandomGenerator(seed: 22)
            let (T, B, I, H, s) = (8, 3, 2, 4, 3)
            let layer = RecurrentStack(cell: cell, inputSize: I, hiddenSize: H, layers: 2, using: &rng)
            let W = layer.stateWidth
            let x = Tensor.normal([T, B, I], using: &rng)
            let h0 = Tensor.normal([B, W], using: &rng)
            let dY = Tensor.normal([T, B, H], using: &rng)
            let mask = Tensor([T, B])
            mask[s, 1] = 1  // only row 1 restarts
            layer.forward(x, initialState: h0.matrix, resetMask: mask, resets: .zero, keepActivations: true)
            layer.zeroGradients()
            layer.backward(outputGradient: dY, finalStateGradient: nil, truncation: 0, needsInputGradient: true)
            let output = layer.output.array, dh0 = layer.initialStateGradient.array
            // Row 1 from step s on equals a run of its own from zeros.
            let tail = Tensor([T - s, 1, I])
            for t in s..<T { for i in 0..<I { tail[t - s, 0, i] = x[t, 1, i] } }
            let fresh = RecurrentStack(cell: cell, inputSize: I, hiddenSize: H, layers: 2, using: &rng)
            copyParameters(from: layer.parameters, to: fresh.parameters)
            fresh.forward(tail, initialState: nil, resetMask: nil, keepActivations: false)
            for t in s..<T { for j in 0..<H { XCTAssertEqual(output[(t * B + 1) * H + j], fresh.output[t - s, 0, j], "\(cell) step \(t)") } }
            // The initial-state gradient of row 1 only comes from steps before s: finite differences agree.
            let checker = GradientChecker()
            checker.check("\(cell) initial state, zero resets", values: h0.data, analytic: dh0, rng: &rng) {
                layer.forward(x, initialState: h0.matrix, resetMask: mask, resets: .zero, keepActivations: false)
                return weightedSum(layer.output, dY)
            }
        }
    }

    /// Truncated BPTT with k: the same weight gradients as running each k-step chunk on its own,
    /// starting from the carried state held constant.
    func testTruncatedBPTTEqualsDetachedChunks() {
        for cell in CellKind.allCases {
            var rng = RandomGenerator(seed: 33)
            let (T, B, I, H, k) = (10, 2, 3, 4, 3)
            let layer = cell.makeLayer(inputSize: I, hiddenSize: H, using: &rng)
            let W = layer.stateWidth
            let x = Tensor.normal([T, B, I], using: &rng)
            let dY = Tensor.normal([T, B, H], using: &rng)
            layer.forward(x)
            layer.zeroGradients()
            layer.backward(outputGradient: dY, finalStateGradient: nil, truncation: k)
            let truncatedGrads = layer.parameters.map(\.gradient.array)
            let truncatedDx = layer.inputGradient.array
            let carried = layer.output.array
            // Chunk c starts from the state after step c*k - 1 of the full run (as a constant).
            layer.forward(x, initialState: nil, resetMask: nil, keepActivations: false)
            var states: [[Float]] = [[Float](repeating: 0, count: B * W)]
            var start = k
            while start < T {
                let prefix = Tensor([start, B, I]); prefix.data.update(from: x.data, count: start * B * I)
                layer.forward(prefix, initialState: nil, resetMask: nil, keepActivations: false)
                states.append(layer.finalState.array)
                start += k
            }
            layer.zeroGradients()
            var chunkDx: [Float] = []
            var chunkOutput: [Float] = []
            for (c, state) in states.enumerated() {
                let lo = c * k, hi = min(T, lo + k)
                let xc = Tensor([hi - lo, B, I]); xc.data.update(from: x.data + lo * B * I, count: (hi - lo) * B * I)
                let dc = Tensor([hi - lo, B, H]); dc.data.update(from: dY.data + lo * B * H, count: (hi - lo) * B * H)
                let h = Tensor([B, W], values: state)
                layer.forward(xc, initialState: h.matrix)
                chunkOutput += layer.output.array
                layer.backward(outputGradient: dc)
                chunkDx += layer.inputGradient.array
            }
            XCTAssertLessThan(maxAbsDifference(carried, chunkOutput), 1e-6, "\(cell): chunks see the carried state")
            XCTAssertLessThan(maxAbsDifference(truncatedDx, chunkDx), 1e-5, "\(cell) input gradient")
            for (t, p) in zip(truncatedGrads, layer.parameters) {
                XCTAssertLessThan(maxAbsDifference(t, p.gradient.array), 1e-5, "\(cell) weight gradient")
            }
            // And truncation really changes the gradient (the test would be vacuous otherwise).
            layer.forward(x)
            layer.zeroGradients()
            layer.backward(outputGradient: dY)
            XCTAssertGreaterThan(maxAbsDifference(truncatedGrads[1], layer.parameters[1].gradient.array), 1e-4)
        }
    }

    func testForwardWithoutActivationsMatchesTrainingForward() {
        for cell in CellKind.allCases {
            var rng = RandomGenerator(seed: 44)
            let layer = RecurrentStack(cell: cell, inputSize: 3, hiddenSize: 6, layers: 2, using: &rng)
            let x = Tensor.normal([7, 4, 3], using: &rng)
            let h0 = Tensor.normal([4, layer.stateWidth], using: &rng)
            let mask = Tensor([7, 4]); mask[3, 1] = 1; mask[5, 0] = 1
            layer.forward(x, initialState: h0.matrix, resetMask: mask, keepActivations: true)
            let a = layer.output.array, af = layer.finalState.array
            layer.forward(x, initialState: h0.matrix, resetMask: mask, keepActivations: false)
            XCTAssertEqual(a, layer.output.array)
            XCTAssertEqual(af, layer.finalState.array)
            // Step by step, carrying the final state (rows that reset take h0 instead), as when acting.
            let state = Tensor(copying: h0)
            var stepped: [Float] = []
            for t in 0..<7 {
                let xt = Tensor([1, 4, 3]); xt.data.update(from: x.data + t * 12, count: 12)
                for b in 0..<4 where mask[t, b] != 0 { for j in 0..<layer.stateWidth { state[b, j] = h0[b, j] } }
                layer.forward(xt, initialState: state.matrix, resetMask: nil, keepActivations: false)
                stepped += layer.output.array
                state.copy(from: layer.finalState)
            }
            XCTAssertEqual(a, stepped)
        }
    }
}
