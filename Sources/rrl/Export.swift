import ArgumentParser
import Foundation
import PolicyExport
import RecurrentRL

/// What `rrl export` writes.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
    case onnx, c, torch, weights

    /// The file this format is named by (torch writes rrl_policy.py beside it).
    var fileName: String {
        switch self {
        case .onnx: "policy.onnx"
        case .c: "policy.h"
        case .torch, .weights: "policy.safetensors"
        }
    }

    var fileExtension: String { URL(fileURLWithPath: fileName).pathExtension }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Export a trained run's policy: ONNX, a C header, a PyTorch module, or a policy-only weights file.",
        discussion: """
        onnx: policy.onnx (one step per call: observation, episode_start, and as the policy needs them reward, agent_id, h, c, previous_action, previous_observation; outputs action and the next state).
        c: policy.h (weights and a plain C99 step function, no allocation).
        torch: policy.safetensors and rrl_policy.py (`rrl_policy.load("policy.safetensors")` gives a torch.nn.Module).
        weights: policy.safetensors, the actor's weights with the manifest that describes them (for the Swift Inference library, and runs written before manifests).
        --output is a folder, or a file name with the format's extension (my-policy.onnx, my-policy.h, my-policy.safetensors; torch's rrl_policy.py goes beside it).
        Every format acts deterministically and matches rrl within 1e-5. Existing files are kept unless --overwrite is given.
        """)
    @Argument(help: "Run folder (made by `rrl train`).") var runDirectory: String
    @Option(help: "onnx, c, torch or weights.") var format: ExportFormat
    @Option(help: "Folder to write into (default: the run folder), or the file, named with the format's extension.") var output: String?
    @Flag(help: "Replace files this command wrote before.") var overwrite = false

    func run() throws {
        let (folder, fileName) = try destination()
        let saved = try SavedRun(path: runDirectory)
        let policy = saved.policy
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        func target(_ name: String) throws -> URL {
            let url = folder.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: url.path) && !overwrite {
                throw ValidationError("\(url.path) exists; give --overwrite to replace it, or --output another folder")
            }
            return url
        }
        let url = try target(fileName)
        var written: [URL] = []
        switch format {
        case .onnx:
            try writeAtomically(Data(ONNXExport.model(of: policy)), to: url, role: "ONNX model")
        case .c:
            try writeAtomically(Data(CExport.header(of: policy).utf8), to: url, role: "C header")
        case .weights, .torch:
            if format == .torch {
                guard let python = PythonBridge.pythonFolder(containing: "rrl_policy.py") else {
                    throw TrainingError("cannot find rrl_policy.py (python/rrl_policy.py in the repository); run from the repository, or set RRL_BRIDGE_PATH to the folder that holds it")
                }
                // The module is the same for every policy: one already there with the same text
                // serves (several policies exported into one folder), another one is kept.
                let source = try Data(contentsOf: URL(fileURLWithPath: python + "/rrl_policy.py"))
                let existing = folder.appendingPathComponent("rrl_policy.py")
                if (try? Data(contentsOf: existing)) != source {
                    let module = try target("rrl_policy.py")
                    try writeAtomically(source, to: module, role: "PyTorch module")
                    written.append(module)
                }
            }
            try SafeTensors.write(policy.namedTensors, metadata: policy.manifest.metadata, to: url)
        }
        written.append(url)
        print("wrote " + written.map(\.path).joined(separator: ", "))
    }

    /// The folder to write into and the main file's name: `--output` with the format's extension
    /// names the file (unless a folder of that name exists, as earlier versions made); another
    /// format's extension is a mistake worth stopping for (it would become a folder of that name);
    /// anything else is a folder.
    func destination() throws -> (folder: URL, fileName: String) {
        guard let output else { return (URL(fileURLWithPath: runDirectory, isDirectory: true), format.fileName) }
        let url = URL(fileURLWithPath: output), ext = url.pathExtension.lowercased()
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder)
        if exists && isFolder.boolValue { return (url, format.fileName) }
        if ext == format.fileExtension { return (url.deletingLastPathComponent(), url.lastPathComponent) }
        let others = ExportFormat.allCases.filter { $0.fileExtension == ext || ($0 == .torch && ext == "py") }
        if !others.isEmpty {
            throw ValidationError("--output \(output): a .\(ext) file is what --format \(others.map(\.rawValue).joined(separator: " or ")) writes; for --format \(format.rawValue) give a folder or a name ending in .\(format.fileExtension)")
        }
        if exists {
            throw ValidationError("--output \(output) is a file, not a folder; give a folder, or a name ending in .\(format.fileExtension)")
        }
        return (URL(fileURLWithPath: output, isDirectory: true), format.fileName)
    }
}
