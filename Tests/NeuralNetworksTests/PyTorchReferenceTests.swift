import Foundation
import NeuralNetworks
import Tensors
import XCTest

/// GRU/LSTM outputs and gradients against `torch.nn.GRU`/`torch.nn.LSTM` for the same weights
/// and inputs. Fixtures: `scripts/make_recurrent_fixtures.py` (computed in float64, stored as
/// float32; written with Python's safetensors, so reading them also checks interoperability).
final class PyTorchReferenceTests: XCTestCase {
    static let fixtures: [String: Tensor] = {
        let url = Bundle.module.url(forResource: "recurrent_reference", withExtension: "safetensors", subdirectory: "Fixtures")!
        return try! SafeTensors.read(url).tensors
    }()

    /// Relative agreement: every element within 1e-5 of the reference, relative to the larger of
    /// its own magnitude and the tensor's mean magnitude (so entries that happen to be near zero
    /// are judged on the tensor's scale, not their own).
    func assertClose(_ mine: [Float], _ reference: Tensor, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(mine.count, reference.count, label, file: file, line: line)
        let ref = reference.array
        let scale = ref.reduce(0) { $0 + abs($1) } / Float(max(ref.count, 1))
        var worst: Float = 0
        for (a, b) in zip(mine, ref) { worst = max(worst, abs(a - b) / max(abs(b), scale)) }
        XCTAssertLessThanOrEqual(worst, 1e-5, "\(label): worst relative difference \(worst)", file: file, line: line)
    }

    func run(tag: String, cell: CellKind, layers L: Int) {
        let f = Self.fixtures
        func t(_ name: String) -> Tensor {
            guard let x = f["\(tag).\(name)"] else { fatalError("fixture \(tag).\(name) missing") }
            return x
        }
        let x = t("input")
        let (B, I) = (x.shape[1], x.shape[2])
        let H = t("h0").shape[2]
        var rng = RandomGenerator(seed: 0)
        let stack = RecurrentStack(cell: cell, inputSize: I, hiddenSize: H, layers: L, using: &rng)
        // Same names as torch.nn.GRU/LSTM's state_dict.
        for (name, p) in stack.namedParameters(prefix: "") { p.value.copy(from: t(name)) }
        // PyTorch keeps h0 as [layers, B, H] (and c0 alike); ours is one [B, stateWidth] row per batch element.
        let W = stack.stateWidth
        let h0 = Tensor([B, W]), stateWeights = Tensor([B, W])
        let width = cell == .gru ? H : 2 * H
        for l in 0..<L {
            for b in 0..<B {
                for j in 0..<H {
                    h0[b, l * width + j] = t("h0")[l, b, j]
                    stateWeights[b, l * width + j] = t("h_weights")[l, b, j]
                    if cell == .lstm {
                        h0[b, l * width + H + j] = t("c0")[l, b, j]
                        stateWeights[b, l * width + H + j] = t("c_weights")[l, b, j]
                    }
                }
            }
        }
        stack.forward(x, initialState: h0.matrix)
        assertClose(stack.output.array, t("output"), "\(tag) output")
        var hn: [Float] = [], cn: [Float] = [], dh0: [Float] = [], dc0: [Float] = []
        stack.zeroGradients()
        stack.backward(outputGradient: t("output_weights"), finalStateGradient: stateWeights.matrix)
        for l in 0..<L {
            for b in 0..<B {
                for j in 0..<H {
                    hn.append(stack.finalState[b, l * width + j])
                    dh0.append(stack.initialStateGradient[b, l * width + j])
                    if cell == .lstm {
                        cn.append(stack.finalState[b, l * width + H + j])
                        dc0.append(stack.initialStateGradient[b, l * width + H + j])
                    }
                }
            }
        }
        assertClose(hn, t("h_n"), "\(tag) h_n")
        assertClose(stack.inputGradient.array, t("grad.input"), "\(tag) d input")
        assertClose(dh0, t("grad.h0"), "\(tag) d h0")
        if cell == .lstm {
            assertClose(cn, t("c_n"), "\(tag) c_n")
            assertClose(dc0, t("grad.c0"), "\(tag) d c0")
        }
        for (name, p) in stack.namedParameters(prefix: "") {
            assertClose(p.gradient.array, t("grad.\(name)"), "\(tag) d \(name)")
        }
    }

    func testGRUMatchesPyTorch() {
        run(tag: "gru1", cell: .gru, layers: 1)
        run(tag: "gru2", cell: .gru, layers: 2)
        run(tag: "gru_b1t1", cell: .gru, layers: 1)
    }

    func testLSTMMatchesPyTorch() {
        run(tag: "lstm1", cell: .lstm, layers: 1)
        run(tag: "lstm2", cell: .lstm, layers: 2)
        run(tag: "lstm_b1t1", cell: .lstm, layers: 1)
    }
}
