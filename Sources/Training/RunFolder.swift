import Foundation
import NeuralNetworks

/// A run's folder: `config.json` (the resolved configuration), `metrics.csv` (a header row, then
/// one row per evaluation, appended as they come) and `weights.safetensors` (written at the end).
/// Whole-file writes are atomic (temporary file, sync, rename).
public final class RunFolder {
    public let url: URL
    public var configurationURL: URL { url.appendingPathComponent("config.json") }
    public var metricsURL: URL { url.appendingPathComponent("metrics.csv") }
    public var weightsURL: URL { url.appendingPathComponent("weights.safetensors") }
    private var metrics: FileHandle?
    private var columns = MetricsRow.columns

    /// Creates the folder. An existing folder that already holds a run is refused unless
    /// `overwrite` is set, so that no results are lost by accident.
    public init(path: String, overwrite: Bool) throws {
        url = URL(fileURLWithPath: path, isDirectory: true)
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw TrainingError("run folder '\(path)' exists and is a file; choose another --run-dir")
            }
            let holdsRun = ["metrics.csv", "config.json", "weights.safetensors"].contains {
                fm.fileExists(atPath: url.appendingPathComponent($0).path)
            }
            if holdsRun && !overwrite {
                throw TrainingError("run folder '\(path)' already holds a run; choose another --run-dir, or pass --overwrite to replace it")
            }
        }
        do {
            try fm.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw TrainingError("cannot create run folder '\(path)': \(error.localizedDescription)")
        }
    }

    deinit { try? metrics?.close() }

    public func writeConfiguration<C: Encodable>(_ configuration: C) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(configuration), to: configurationURL)
    }

    /// Starts `metrics.csv` with its header row.
    public func startMetrics(columns: [String] = MetricsRow.columns) throws {
        self.columns = columns
        try writeAtomically(Data((columns.joined(separator: ",") + "\n").utf8), to: metricsURL)
        metrics = try FileHandle(forWritingTo: metricsURL)
        try metrics?.seekToEnd()
    }

    /// Appends a row and flushes it to disk.
    public func append(_ row: MetricsRow) throws {
        guard let metrics else { throw TrainingError("metrics.csv was not started") }
        try metrics.write(contentsOf: Data((row.csv(columns: columns) + "\n").utf8))
        try metrics.synchronize()
    }

    public func writeWeights(_ parameters: [NamedParameter], metadata: [String: String]) throws {
        try SafeTensors.write(parameters, metadata: metadata, to: weightsURL)
    }
}
