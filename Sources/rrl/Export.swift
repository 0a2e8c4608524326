import ArgumentParser
import Foundation
import PolicyExport
import RecurrentRL

/// What `rrl export` writes.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
    case onnx, c, torch, weights
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a trained run's policy: ONNX, a C header, a PyTorch module, or a policy-only weights file.",
        discussion: """
        onnx: policy.onnx (one step per call: observation, episode_start, and as the policy needs them reward, agent_id, h, c, previous_action, previous_observation; outputs action and the next state).
        c: policy.h (weights and a plain C99 step function, no allocation).
        torch: policy.safetensors and rrl_policy.py (`rrl_policy.load("policy.safetensors")` gives a torch.nn.Module).
        weights: policy.safetensors, the actor's weights with the manifest that describes them (for the Swift Inference library, and runs written before manifests).
        Every format acts deterministically and matches rrl within 1e-5. Existing files are kept unless --overwrite is given.
        """)
    @Argument(help: "Run folder (made by `rrl train`).") var runDirectory: String
    @Option(help: "onnx, c, torch or weights.") var format: ExportFormat
    @Option(help: "Folder to write into (default: the run folder).") var output: String?
    @Flag(help: "Replace files this command wrote before.") var overwrite = false

    func run() throws {
        let saved = try SavedRun(path: runDirectory)
        let policy = saved.policy
        let folder = URL(fileURLWithPath: output ?? runDirectory, isDirectory: true)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        func target(_ name: String) throws -> URL {
            let url = folder.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) && !overwrite {
                throw ValidationError("\(url.path) exists; give --overwrite to replace it, or --output another folder")
            }
            return url
        }
        var written: [URL] = []
        switch format {
        case .onnx:
            let url = try target("policy.onnx")
            try writeAtomically(Data(ONNXExport.model(of: policy)), to: url, role: "ONNX model")
            written.append(url)
        case .c:
            let url = try target("policy.h")
            try writeAtomically(Data(CExport.header(of: policy).utf8), to: url, role: "C header")
            written.append(url)
        case .weights, .torch:
            let url = try target("policy.safetensors")
            if format == .torch {
                guard let python = PythonBridge.pythonFolder(containing: "rrl_policy.py") else {
                    throw TrainingError("cannot find rrl_policy.py (python/rrl_policy.py in the repository); run from the repository, or set RRL_BRIDGE_PATH to the folder that holds it")
                }
                let module = try target("rrl_policy.py")
                try writeAtomically(try Data(contentsOf: URL(fileURLWithPath: python + "/rrl_policy.py")), to: module, role: "PyTorch module")
                written.append(module)
            }
            try SafeTensors.write(policy.namedTensors, metadata: policy.manifest.metadata, to: url)
            written.append(url)
        }
        print("wrote " + written.map(\.path).joined(separator: ", "))
    }
}
