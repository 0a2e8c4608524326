import ArgumentParser
import CKernels
import Foundation
import RecurrentRL

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure kernels and layers (release builds only give meaningful figures).",
        subcommands: [BenchGEMM.self, BenchGRU.self, BenchSAC.self, BenchTD3.self, BenchMemory.self, BenchRESeL.self, BenchPPO.self, BenchVDN.self, BenchQMIX.self, BenchIPPO.self, BenchMAPPO.self, BenchBridge.self, BenchPolicy.self, BenchMPI.self]
    )
}

/// Options shared by every benchmark.
struct BenchOptions: ParsableArguments {
    @Flag(help: "Print one JSON object instead of a table.") var json = false
    @Option(help: "Seconds spent measuring each case (the best of many repeats is kept).") var seconds: Double = 0.5
    @Option(help: "Seconds spent measuring the FMA peak.") var peakSeconds: Double = 0.5

    func validate() throws {
        guard seconds > 0, peakSeconds > 0 else { throw ValidationError("--seconds and --peak-seconds must be positive") }
    }
}

/// Runs `body` repeatedly for about `seconds` and returns the fastest single run, in seconds.
/// The machine is shared: interruptions only ever make a run slower, so the minimum is the
/// least noisy estimate of the code's own cost.
func fastestRun(seconds: Double, _ body: () -> Void) -> Double {
    body()  // warm-up: workspaces, caches, page faults
    var best = Double.infinity
    let start = Clock.now
    var runs = 0
    while runs < 3 || Clock.now - start < seconds {
        let t0 = Clock.now
        body()
        best = min(best, Clock.now - t0)
        runs += 1
    }
    return best
}

/// Prints one JSON object; NaN values (not representable in JSON) become null.
func printJSON(_ object: [String: Any]) throws {
    let clean = object.mapValues { ($0 as? Double).map { $0.isNaN ? NSNull() : $0 as Any } ?? $0 }
    let data = try JSONSerialization.data(withJSONObject: clean, options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

struct BenchGEMM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "GFLOP/s of C = A*B per shape, against the FMA peak measured in the same run."
    )
    @OptionGroup var options: BenchOptions
    @Option(help: "Shapes as M,N,K separated by spaces or semicolons (default: the reference set).")
    var shapes: String = "256,256,256;200,768,256;256,64,64;32,192,64;4,192,64;1024,1024,1024"
    @Option(help: "Kernel path: auto, packed-avx2, packed-portable, small-avx2, small-portable, openblas.")
    var path: String = "auto"

    func validate() throws {
        guard GEMMPath.allCases.contains(where: { $0.name == path }) else {
            throw ValidationError("unknown --path '\(path)'; choose one of \(GEMMPath.allCases.map(\.name).joined(separator: ", "))")
        }
        _ = try parsedShapes()
    }

    func parsedShapes() throws -> [(Int, Int, Int)] {
        var parsed: [(Int, Int, Int)] = []
        for item in shapes.split(whereSeparator: { $0 == ";" || $0 == " " }) {
            let dims = item.split(separator: ",").compactMap { Int($0) }
            guard dims.count == 3, dims.allSatisfy({ $0 > 0 }) else {
                throw ValidationError("shape '\(item)' is not M,N,K with positive integers")
            }
            parsed.append((dims[0], dims[1], dims[2]))
        }
        return parsed
    }

    func run() throws {
        let gemmPath = GEMMPath.allCases.first { $0.name == path }!
        let parsed = try parsedShapes()
        let peak = rrl_measure_fma_peak_gflops(options.peakSeconds)
        var rng = RandomGenerator(seed: 1)
        var cases: [[String: Any]] = []
        if !options.json {
            print("FMA peak (one thread, measured now): \(String(format: "%.1f", peak)) GFLOP/s; AVX2/FMA kernels: \(cpuHasAVX2FMA ? "yes" : "no"); path: \(gemmPath.name)")
            print("    M     N     K   time (us)   GFLOP/s   % of peak")
        }
        for (m, n, k) in parsed {
            let a = Tensor.uniform([m, k], low: -1, high: 1, using: &rng)
            let b = Tensor.uniform([k, n], low: -1, high: 1, using: &rng)
            let c = Tensor([m, n])
            let time = fastestRun(seconds: options.seconds) { gemm(a.matrix, b.matrix, into: c.matrix, path: gemmPath) }
            let gflops = 2.0 * Double(m * n * k) / time * 1e-9
            cases.append(["m": m, "n": n, "k": k, "seconds": time, "gflops": gflops, "fraction_of_peak": gflops / peak])
            if !options.json {
                print(String(format: "%5d %5d %5d %11.2f %9.1f %10.1f%%", m, n, k, time * 1e6, gflops, 100 * gflops / peak))
            }
        }
        if options.json {
            try printJSON(["benchmark": "gemm", "peak_gflops": peak, "path": gemmPath.name, "avx2_fma": cpuHasAVX2FMA, "cases": cases])
        }
    }
}
