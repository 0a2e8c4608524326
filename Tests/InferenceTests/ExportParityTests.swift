import Agents
import Environments
import Foundation
import Inference
import NeuralNetworks
import PolicyExport
import Tensors
import XCTest

/// The exports against rrl: for every kind of policy, the same recorded rollout (3 copies times the
/// agents, 400 steps, over 100 episodes, random observations, rewards, masks and episode
/// starts) run through the C header (compiled with cc), the ONNX model (onnxruntime) and the PyTorch
/// module (python/rrl_policy.py) gives rrl's actions and recurrent states within 1e-5 (discrete
/// actions exactly). Tools that are missing skip their part, unless RRL_REQUIRE_EXPORT_CHECKS is set
/// (as `.ci/run` does), which makes a missing tool a failure.
final class ExportParityTests: XCTestCase {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let required = ProcessInfo.processInfo.environment["RRL_REQUIRE_EXPORT_CHECKS"] != nil

    /// Runs a program; returns its exit status and output (standard output, then standard error).
    func run(_ arguments: [String]) -> (status: Int32, output: String) {
        let errorURL = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-export-\(UUID().uuidString).err")
        defer { try? FileManager.default.removeItem(at: errorURL) }
        guard let child = try? ChildProcess(arguments: arguments, stderrPath: errorURL.path) else { return (-1, "cannot start \(arguments[0])") }
        child.closeInput()
        let output = child.readOutput()
        let exit = child.waitForExit()
        let all = output + ((try? String(contentsOf: errorURL, encoding: .utf8)) ?? "")
        guard exit.hasPrefix("exited with status "), let status = Int32(exit.dropFirst("exited with status ".count)) else { return (-1, all + exit) }
        return (status, all)
    }

    /// Whether a tool is there; when it is not, a skip note (or, when required, a failure).
    func available(_ check: [String], _ what: String) -> Bool {
        if run(check).status == 0 { return true }
        if Self.required { XCTFail("\(what) is missing, and RRL_REQUIRE_EXPORT_CHECKS is set") } else { print("skipping the \(what) checks: not installed") }
        return false
    }

    func testExportsActAsRRLDoes() throws {
        let cc = available(["cc", "--version"], "C compiler (cc)")
        let onnx = available(["python3", "-c", "import onnxruntime, numpy"], "onnxruntime")
        let torch = available(["python3", "-c", "import torch, safetensors, numpy"], "PyTorch")
        var checked = 0
        for (k, c) in try PolicyParityTests.cases().enumerated() {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-export-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let policy = try loadPolicy(c)
            let rollout = Rollout(c, steps: 400, seed: 100 + UInt64(k))
            try rollout.write(to: folder, policy: policy)
            try Data(ONNXExport.model(of: policy)).write(to: folder.appendingPathComponent("policy.onnx"))
            try Data(CExport.header(of: policy).utf8).write(to: folder.appendingPathComponent("policy.h"))
            try SafeTensors.write(policy.namedTensors, metadata: policy.manifest.metadata, to: folder.appendingPathComponent("policy.safetensors"))
            try FileManager.default.copyItem(at: Self.repository.appendingPathComponent("python/rrl_policy.py"), to: folder.appendingPathComponent("rrl_policy.py"))
            func compare(_ runtime: String) throws {
                let actions = try Rollout.read(folder.appendingPathComponent("\(runtime)_actions.bin"))
                let states = try Rollout.read(folder.appendingPathComponent("\(runtime)_states.bin"))
                rollout.check(actions: actions, states: states, label: "\(c.label) (\(runtime))")
                checked += 1
            }
            if cc {
                try Data(Self.driver(rollout).utf8).write(to: folder.appendingPathComponent("driver.c"))
                let binary = folder.appendingPathComponent("driver").path
                let build = run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-o", binary,
                                 folder.appendingPathComponent("driver.c").path, "-lm"])
                XCTAssertEqual(build.status, 0, "\(c.label): the C header does not compile: \(build.output)")
                if build.status == 0 {
                    let result = run([binary, folder.path])
                    XCTAssertEqual(result.status, 0, "\(c.label): \(result.output)")
                    try compare("c")
                }
            }
            let formats = (onnx ? ["onnx"] : []) + (torch ? ["torch"] : [])
            if !formats.isEmpty {
                let result = run(["python3", Self.repository.appendingPathComponent("scripts/check_policy_exports.py").path, folder.path] + formats)
                XCTAssertEqual(result.status, 0, "\(c.label): \(result.output)")
                if result.status == 0 { for f in formats { try compare(f) } }
            }
        }
        if !(cc || onnx || torch) { throw XCTSkip("no C compiler, onnxruntime or PyTorch here") }
        XCTAssertGreaterThan(checked, 0)
    }

    /// A C program that runs policy.h over the rollout's files in its folder and writes c_actions.bin and c_states.bin.
    static func driver(_ r: Rollout) -> String {
        """
        #include <stdio.h>
        #include <stdlib.h>
        #include "policy.h"

        static float *load(const char *folder, const char *name, size_t count) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", folder, name);
            FILE *f = fopen(path, "rb");
            float *p = malloc(sizeof(float) * (count ? count : 1));
            if (!f || !p || fread(p, sizeof(float), count, f) != count) { fprintf(stderr, "cannot read %s\\n", path); exit(1); }
            fclose(f);
            return p;
        }

        int main(int argc, char **argv) {
            const int T = \(r.steps), B = \(r.rows), O = \(r.observationWidth), N = \(r.maskWidth), R = \(r.stateWidth), A = RRL_POLICY_ACTION_WIDTH;
            if (argc < 2) return 2;
            float *observations = load(argv[1], "observations.bin", (size_t)T * B * O);
            float *rewards = load(argv[1], "rewards.bin", (size_t)T * B);
            float *starts = load(argv[1], "starts.bin", (size_t)T * B);
            float *masks = N ? load(argv[1], "masks.bin", (size_t)T * B * N) : NULL;
            float *state = calloc((size_t)B * RRL_POLICY_STATE_WIDTH, sizeof(float));
            char path[4096];
            snprintf(path, sizeof path, "%s/c_actions.bin", argv[1]);
            FILE *actions = fopen(path, "wb");
            snprintf(path, sizeof path, "%s/c_states.bin", argv[1]);
            FILE *states = fopen(path, "wb");
            if (!actions || !states || !state) return 1;
            for (int t = 0; t < T; t++) {
                for (int b = 0; b < B; b++) {
                    size_t i = (size_t)t * B + b;
                    float action[RRL_POLICY_ACTION_WIDTH];
                    rrl_policy_step(observations + i * O, rewards[i], starts[i] != 0, b % RRL_POLICY_AGENTS, masks ? masks + i * N : NULL,
                                    state + (size_t)b * RRL_POLICY_STATE_WIDTH, action);
                    fwrite(action, sizeof(float), A, actions);
                    fwrite(state + (size_t)b * RRL_POLICY_STATE_WIDTH, sizeof(float), R, states);
                }
            }
            fclose(actions);
            fclose(states);
            return 0;
        }

        """
    }
}
