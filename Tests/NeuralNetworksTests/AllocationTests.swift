import AllocationCounter
import NeuralNetworks
import Tensors
import XCTest

/// Once shapes are known, a forward, backward and optimiser update allocate nothing: workspaces
/// are sized on the first call and reused. Checked by counting every malloc/calloc/realloc/
/// aligned allocation made by the calling thread (see Tests/AllocationCounter) around three
/// whole steps after a warm-up step.
final class AllocationTests: XCTestCase {
    func testTrainingStepAllocatesNothingOnceShapesAreKnown() throws {
        guard rrl_allocation_counting_available() != 0 else { throw XCTSkip("allocation counting needs glibc") }
        #if DEBUG
        // Unoptimised builds box each element when iterating an array of existentials (the
        // unspecialised IndexingIterator allocates); the claim is about optimised builds, which
        // is how the README's test command runs this suite.
        throw XCTSkip("allocation-free training steps are a property of optimised builds: run `swift test -c release`")
        #endif
        var rng = RandomGenerator(seed: 1)
        let (T, B, I) = (16, 8, 5)
        let pre = Dense(inputSize: I, outputSize: 16, activation: .tanh, using: &rng)
        let norm = LayerNorm(features: 16)
        let core = RecurrentStack([GRU(inputSize: 16, hiddenSize: 32, using: &rng), LSTM(inputSize: 32, hiddenSize: 24, using: &rng)])
        let head = Sequential.mlp(inputSize: 24, hiddenSizes: [32], outputSize: 2, activation: .elu, using: &rng)
        let target = Parameter([2, 32])  // a stand-in target copy for Polyak averaging
        let parameters = pre.parameters + norm.parameters + core.parameters + head.parameters
        let adam = Adam(groups: [
            ParameterGroup(name: "encoder", parameters: core.parameters, learningRate: 1e-4),
            ParameterGroup(name: "mlp", parameters: pre.parameters + norm.parameters + head.parameters, learningRate: 3e-3),
        ], configuration: .adamW)
        let x = Tensor.normal([T, B, I], using: &rng), y = Tensor.normal([T, B, 2], using: &rng)
        let h0 = Tensor([B, core.stateWidth]), mask = Tensor([T, B]), valid = Tensor([T * B])
        valid.fill(1); mask[5, 3] = 1
        let gradient = Tensor([0])
        let burnIn = Tensor([4, B, 16])
        let targetParameters = [target], sourceParameters = [head.layers[1].parameters[0]]

        func step() {
            core.forward(burnIn, initialState: h0.matrix, resetMask: nil, keepActivations: false)  // burn-in, no gradient
            let features = norm.forward(pre.forward(x))
            core.forward(features, initialState: h0.matrix, resetMask: mask, keepActivations: true)
            let prediction = head.forward(core.output)
            _ = Loss.meanSquaredError(prediction: prediction, target: y, mask: valid, gradient: gradient)
            adam.zeroGradients()
            let dh = head.backward(gradient)
            core.backward(outputGradient: dh, finalStateGradient: nil, truncation: 5, needsInputGradient: true)
            pre.backward(norm.backward(core.inputGradient), needsInputGradient: false)
            clipGradientNorm(parameters, maxNorm: 1)
            adam.step()
            polyakUpdate(target: targetParameters, source: sourceParameters, tau: 0.005)
        }
        step()  // sizes every workspace
        rrl_allocation_counting_start()
        for _ in 0..<3 { step() }
        let allocations = rrl_allocation_counting_stop()
        XCTAssertEqual(allocations, 0, "a training step allocated \(allocations) times after warm-up")

        // The counter itself works: a new tensor allocates.
        rrl_allocation_counting_start()
        let fresh = Tensor([1000])
        let counted = rrl_allocation_counting_stop()
        XCTAssertGreaterThan(counted, 0)
        XCTAssertEqual(fresh.count, 1000)
    }
}
