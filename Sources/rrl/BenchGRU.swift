import ArgumentParser
import CKernels
import RecurrentRL

struct BenchGRU: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gru",
        abstract: "Time per recurrent forward + BPTT, against the FMA peak measured in the same run.",
        discussion: """
        FLOPs are counted as matrix-multiply FLOPs only (2 per multiply-add): forward input and
        recurrent products, and in backward the state gradient per step plus the batched weight
        and input gradients. Pointwise gate arithmetic is not counted, so the fraction of peak
        understates the work done.
        """
    )
    @OptionGroup var options: BenchOptions
    @Option(help: "Batch size.") var batch = 32
    @Option(help: "Input features.") var input = 8
    @Option(help: "Hidden units.") var hidden = 64
    @Option(help: "Sequence length.") var steps = 50
    @Option(help: "Cell: gru or lstm (both when omitted).") var cell: CellKind?

    func validate() throws {
        guard batch > 0, input > 0, hidden > 0, steps > 0 else { throw ValidationError("--batch, --input, --hidden and --steps must be positive") }
    }

    func run() throws {
        let peak = rrl_measure_fma_peak_gflops(options.peakSeconds)
        let (T, B, I, H) = (steps, batch, input, hidden)
        var cases: [[String: Any]] = []
        if !options.json {
            print("FMA peak (one thread, measured now): \(String(format: "%.1f", peak)) GFLOP/s")
            print("cell   T   B   I   H   forward+BPTT (ms)  GFLOP/s  % of peak   forward only, no activations (ms)")
        }
        for kind in cell.map({ [$0] }) ?? CellKind.allCases {
            var rng = RandomGenerator(seed: 1)
            let layer = kind.makeLayer(inputSize: I, hiddenSize: H, using: &rng)
            let gates = kind == .gru ? 3 * H : 4 * H
            let x = Tensor.normal([T, B, I], using: &rng)
            let dY = Tensor.normal([T, B, H], using: &rng)
            let train = fastestRun(seconds: options.seconds) {
                layer.forward(x, initialState: nil, resetMask: nil, keepActivations: true)
                layer.backward(outputGradient: dY, finalStateGradient: nil, truncation: 0, needsInputGradient: true)
            }
            let inference = fastestRun(seconds: options.seconds) {
                layer.forward(x, initialState: nil, resetMask: nil, keepActivations: false)
            }
            let forwardFlops = 2.0 * Double(T * B * gates * (I + H))
            let backwardFlops = 2.0 * Double(T * B * gates * H) * 2 + 2.0 * Double(T * B * gates * I) * 2
            let gflops = (forwardFlops + backwardFlops) / train * 1e-9
            cases.append(["cell": kind.rawValue, "time": T, "batch": B, "input": I, "hidden": H, "seconds": train,
                          "gflops": gflops, "fraction_of_peak": gflops / peak, "forward_only_seconds": inference])
            if !options.json {
                print(kind.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0) + String(format: " %3d %3d %3d %3d %14.3f %12.1f %9.1f%% %18.3f", T, B, I, H,
                             train * 1e3, gflops, 100 * gflops / peak, inference * 1e3))
            }
        }
        if options.json { try printJSON(["benchmark": "gru", "peak_gflops": peak, "cases": cases]) }
    }
}

extension CellKind: ExpressibleByArgument {}
