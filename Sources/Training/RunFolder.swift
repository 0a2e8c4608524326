import Foundation
import NeuralNetworks

/// A run's folder: `config.json` (the resolved configuration), `metrics.csv` (a header row, then
/// one row per evaluation, appended as they come), the same rows as TensorBoard events
/// (`events.out.tfevents.*`), `checkpoints/` and `weights.safetensors` (written at the end).
/// Whole-file writes are atomic (temporary file, sync, rename).
public final class RunFolder {
    public let url: URL
    public var configurationURL: URL { url.appendingPathComponent("config.json") }
    public var metricsURL: URL { url.appendingPathComponent("metrics.csv") }
    public var weightsURL: URL { url.appendingPathComponent("weights.safetensors") }
    public var checkpointsURL: URL { url.appendingPathComponent("checkpoints") }
    private var metrics: FileHandle?
    private var columns = MetricsRow.columns
    public private(set) var tensorBoard: TensorBoardWriter?

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
        // A replaced run leaves nothing behind that a resume or TensorBoard could pick up.
        try? fm.removeItem(at: checkpointsURL)
        removeEventFiles()
    }

    /// Opens an existing run folder to continue its run.
    public init(resuming path: String) throws {
        url = URL(fileURLWithPath: path, isDirectory: true)
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path) else {
            throw TrainingError("'\(path)' is not a run folder (it has no config.json); pass the folder that `rrl train` wrote")
        }
    }

    func removeEventFiles() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        for name in names where name.hasPrefix("events.out.tfevents.") {
            try? FileManager.default.removeItem(at: url.appendingPathComponent(name))
        }
    }

    deinit { try? metrics?.close() }

    public func writeConfiguration<C: Encodable>(_ configuration: C) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(configuration), to: configurationURL)
    }

    /// Starts `metrics.csv` with its header row, and a TensorBoard event file.
    public func startMetrics(columns: [String] = MetricsRow.columns) throws {
        try resumeMetrics(columns: columns, keeping: [])
    }

    /// Continues a stopped run's metrics: `metrics.csv` is rewritten (atomically) with the rows
    /// that its checkpoint had written, the rows after it are dropped (the resumed run writes them
    /// again), and the TensorBoard events are written anew from the kept rows.
    @discardableResult
    public func resumeMetrics(columns: [String], keepingRows count: Int) throws -> [MetricsRow] {
        let text = (try? String(contentsOf: metricsURL, encoding: .utf8)) ?? ""
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard let header = lines.first, header == columns.joined(separator: ",") else {
            throw TrainingError("\(metricsURL.path) does not have the header of this run's metrics; was the file replaced?")
        }
        lines.removeFirst()
        guard lines.count >= count else {
            throw TrainingError("\(metricsURL.path) holds \(lines.count) rows but the checkpoint had written \(count); the file was cut short")
        }
        let kept = lines.prefix(count).map { line -> MetricsRow in
            var row = MetricsRow()
            for (c, cell) in zip(columns, line.split(separator: ",", omittingEmptySubsequences: false)) {
                row[c] = Double(cell) ?? .nan
            }
            return row
        }
        try resumeMetrics(columns: columns, keeping: kept)
        return kept
    }

    private func resumeMetrics(columns: [String], keeping rows: [MetricsRow]) throws {
        self.columns = columns
        let text = ([columns.joined(separator: ",")] + rows.map { $0.csv(columns: columns) }).joined(separator: "\n") + "\n"
        try writeAtomically(Data(text.utf8), to: metricsURL)
        metrics = try FileHandle(forWritingTo: metricsURL)
        try metrics?.seekToEnd()
        removeEventFiles()
        tensorBoard = try TensorBoardWriter(directory: url)
        for row in rows { try tensorBoard?.write(row, columns: columns) }
    }

    /// Appends a row (to `metrics.csv` and the TensorBoard events) and flushes it to disk.
    public func append(_ row: MetricsRow) throws {
        guard let metrics else { throw TrainingError("metrics.csv was not started") }
        try metrics.write(contentsOf: Data((row.csv(columns: columns) + "\n").utf8))
        try metrics.synchronize()
        try tensorBoard?.write(row, columns: columns)
    }

    public func writeWeights(_ parameters: [NamedParameter], metadata: [String: String]) throws {
        try SafeTensors.write(parameters, metadata: metadata, to: weightsURL)
    }
}
