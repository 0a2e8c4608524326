import ArgumentParser
import CKernels
import Foundation
import PolicyExport
import RecurrentRL

/// Actions per second of one policy at batch 1 in every runtime it ships to, measured in the same
/// run on this machine: the Swift inference library, the C header (compiled here with cc), and, when
/// Python has them, onnxruntime and PyTorch on the exported model.
struct BenchPolicy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Actions per second of a recurrent policy at batch 1: Swift inference library, C header, onnxruntime, PyTorch (same run).")
    @OptionGroup var options: BenchOptions
    @Option(help: "gru or lstm.") var network: NetworkKind = .gru
    @Option(help: "Hidden units of the recurrent layer.") var hidden: Int = 64
    @Option(help: "Hidden layers of the head, comma separated.") var head: String = "64,64"
    @Option(help: "Observation floats.") var observation: Int = 3
    @Option(help: "Steps per timed block.") var steps: Int = 2000
    @Option(parsing: .unconditional, help: "C compiler flag sets to measure, separated by ';' (-mavx2 -mfma: the instructions the Swift kernels use; -march=native may add AVX-512).") var cflags: String = "-O2;-O3 -mavx2 -mfma;-O3 -march=native"

    func run() throws {
        guard hidden > 0, observation > 0, steps > 0 else { throw ValidationError("--hidden, --observation and --steps must be positive") }
        let headSizes = try head.split(separator: ",").map { s -> Int in
            guard let v = Int(s.trimmingCharacters(in: .whitespaces)), v > 0 else { throw ValidationError("--head takes positive sizes separated by commas (got '\(head)')") }
            return v
        }
        var c = AgentConfiguration()
        c.network = network
        c.hiddenSize = hidden
        c.headHiddenSizes = headSizes
        let space = Space.box(low: [-2], high: [2])
        let agent = try OffPolicyAgent(configuration: c, observationSpace: .box(low: [Float](repeating: -1, count: observation), high: [Float](repeating: 1, count: observation)),
                                       actionSpace: space, seed: 1)
        let manifest = agent.policyManifest(actionSpace: space)
        let policy = try Policy(manifest: manifest, tensors: Dictionary(agent.namedParameters().map { ($0.name, $0.parameter.value) }) { a, _ in a })
        let peak = rrl_measure_fma_peak_gflops(options.peakSeconds)
        // Multiply-adds of one step (the encoder's input and hidden products, and the head), as flops.
        let gates = (network == .lstm ? 4 : 3) * hidden
        var flops = 2 * gates * (policy.manifest.network.inputWidth + hidden), width = hidden
        for h in headSizes + [policy.manifest.network.outputWidth] { flops += 2 * width * h; width = h }

        var results: [(String, Double?)] = []
        // Swift: the pointer API, one row, the state carried; with AVX-512 (when the CPU has it) and with AVX2 only.
        func swiftRate() -> Double {
            var obs = [Float](repeating: 0.3, count: observation), state = policy.initialState(), action: [Float] = [0], reward: Float = 0
            var start = false
            let time = obs.withUnsafeMutableBufferPointer { o in
                state.withUnsafeMutableBufferPointer { s in
                    action.withUnsafeMutableBufferPointer { a in
                        fastestRun(seconds: options.seconds) {
                            for t in 0..<steps {
                                o[0] = Float(t % 7) * 0.1
                                policy.act(observations: o.baseAddress!, rewards: &reward, episodeStarts: &start, state: s.baseAddress!, batch: 1,
                                           actions: a.baseAddress!)
                            }
                        }
                    }
                }
            }
            return Double(steps) / time
        }
        if rrl_cpu_has_avx512f() != 0 {
            results.append(("Swift inference library (AVX-512)", swiftRate()))
            rrl_set_allow_avx512(0)
            results.append(("Swift inference library (AVX2)", swiftRate()))
            rrl_set_allow_avx512(1)
        } else {
            results.append(("Swift inference library (AVX2)", swiftRate()))
        }

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-bench-policy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data(CExport.header(of: policy).utf8).write(to: folder.appendingPathComponent("policy.h"))
        try Data(cBench.utf8).write(to: folder.appendingPathComponent("bench.c"))
        let binary = folder.appendingPathComponent("bench").path
        for set in cflags.split(separator: ";") {
            let flags = set.split(separator: " ").map(String.init)
            if run(["cc"] + flags + ["-std=c99", "-o", binary, folder.appendingPathComponent("bench.c").path, "-lm"]).status == 0 {
                let out = run([binary, "\(steps)", "\(options.seconds)"])
                results.append(("C header (cc \(set))", out.status == 0 ? Double(out.output.trimmingCharacters(in: .whitespacesAndNewlines)) : nil))
            } else {
                results.append(("C header (cc \(set))", nil))
            }
        }
        try Data(ONNXExport.model(of: policy)).write(to: folder.appendingPathComponent("policy.onnx"))
        try SafeTensors.write(policy.namedTensors, metadata: manifest.metadata, to: folder.appendingPathComponent("policy.safetensors"))
        var pythonNote = ""
        if let python = PythonBridge.pythonFolder(containing: "rrl_policy.py") {
            let out = run(["python3", "-c", pythonBench, folder.path, python, "\(steps)", "\(options.seconds)", "\(observation)"])
            let figures = out.output.split(separator: "\n").compactMap { line -> (String, Double?)? in
                let parts = line.split(separator: " ")
                guard parts.count == 2 else { return nil }
                return (String(parts[0]), Double(parts[1]))
            }
            results.append(("onnxruntime", figures.first { $0.0 == "onnxruntime" }?.1 ?? nil))
            results.append(("PyTorch", figures.first { $0.0 == "torch" }?.1 ?? nil))
            if figures.isEmpty { pythonNote = out.output }
        }

        if options.json {
            var cases: [[String: Any]] = []
            for (name, rate) in results { cases.append(["runtime": name, "actions_per_second": rate ?? Double.nan]) }
            try printJSON(["benchmark": "policy", "network": network.rawValue, "hidden": hidden, "head": headSizes, "flops_per_action": flops,
                           "peak_gflops": peak, "cases": cases])
            return
        }
        print("\(network.rawValue.uppercased())-\(hidden) policy, head \(headSizes), \(observation) observation floats, batch 1: \(flops) flops per action")
        let avx512 = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").contains("avx512f")
        print("FMA peak (one thread, measured now, AVX2): \(String(format: "%.1f", peak)) GFLOP/s; this CPU \(avx512 ? "has" : "has no") AVX-512 (which -march=native may use)")
        print("runtime                              actions/s   us/action   % of peak")
        for (name, rate) in results {
            guard let rate, rate > 0 else { print(name.padding(toLength: 34, withPad: " ", startingAt: 0) + "   (not available here)"); continue }
            print(name.padding(toLength: 34, withPad: " ", startingAt: 0)
                  + String(format: " %11.0f %11.3f %10.1f%%", rate, 1e6 / rate, 100 * rate * Double(flops) / (peak * 1e9)))
        }
        if !pythonNote.isEmpty { print("(onnxruntime/PyTorch: \(pythonNote.prefix(200)))") }
    }

    func run(_ arguments: [String]) -> (status: Int32, output: String) {
        guard let child = try? ChildProcess(arguments: arguments) else { return (-1, "") }
        child.closeInput()
        let output = child.readOutput()
        let exit = child.waitForExit()
        return (exit == "exited with status 0" ? 0 : 1, output)
    }

    /// Times blocks of steps of rrl_policy_step (argv: steps per block, seconds); prints actions per second.
    var cBench: String {
        """
        #define _POSIX_C_SOURCE 199309L
        #include <stdio.h>
        #include <stdlib.h>
        #include <time.h>
        #include "policy.h"
        static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
        int main(int argc, char **argv) {
            int steps = atoi(argv[1]); double seconds = atof(argv[2]);
            float observation[RRL_POLICY_OBSERVATION_WIDTH] = {0}, state[RRL_POLICY_STATE_WIDTH] = {0}, action[RRL_POLICY_ACTION_WIDTH];
            double best = 1e30, start = now(); int runs = 0; volatile float sink = 0;
            while (runs < 3 || now() - start < seconds) {
                double t0 = now();
                for (int t = 0; t < steps; t++) {
                    observation[0] = (float)(t % 7) * 0.1f;
                    rrl_policy_step(observation, 0.0f, 0, 0, NULL, state, action);
                }
                double t1 = now() - t0;
                if (t1 < best) best = t1;
                sink += action[0]; runs++;
            }
            printf("%.1f\\n", steps / best);
            return 0;
        }

        """
    }

    /// Times batch-1 steps of the ONNX model (onnxruntime, one thread) and the PyTorch module (one thread).
    var pythonBench: String {
        """
        import sys, time, os
        folder, python, steps, seconds, o = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
        def fastest(body):
            body(); best = float('inf'); start = time.perf_counter(); runs = 0
            while runs < 3 or time.perf_counter() - start < seconds:
                t0 = time.perf_counter(); body(); best = min(best, time.perf_counter() - t0); runs += 1
            return best
        try:
            import numpy as np, onnxruntime as ort
            so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
            s = ort.InferenceSession(os.path.join(folder, 'policy.onnx'), so, providers=['CPUExecutionProvider'])
            feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32) for i in s.get_inputs()}
            n = max(1, steps // 10)
            def run_onnx():
                for t in range(n): s.run(None, feeds)
            print('onnxruntime', n / fastest(run_onnx))
        except Exception as e:
            print('onnxruntime-error', repr(e).replace(' ', '_'))
        try:
            import torch
            torch.set_num_threads(1)
            sys.path.insert(0, python)
            import rrl_policy
            p = rrl_policy.load(os.path.join(folder, 'policy.safetensors'))
            x = torch.zeros(1, o); st = p.initial_state(1); start = torch.zeros(1)
            n = max(1, steps // 10)
            def run_torch():
                global st
                for t in range(n): _, st = p(x, st, start)
            print('torch', n / fastest(run_torch))
        except Exception as e:
            print('torch-error', repr(e).replace(' ', '_'))
        """
    }
}
