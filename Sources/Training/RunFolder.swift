import Foundation
import NeuralNetworks

/// A run's folder: `config.json` (the resolved configuration), `metrics.csv` (a header row, then
/// one row per evaluation, appended as they come), the same rows as TensorBoard events
/// (`events.out.tfevents.*.rrl`), `checkpoints/` and `weights.safetensors` (written at the end).
///
/// This type is the one place that decides what rrl may write and delete in a folder: it deletes
/// only files it names as its own (checkpoints `checkpoints/step-N.ckpt`, its event files, the
/// temporary files of interrupted writes), never anything else. A folder is one of:
/// - new or empty: the run is written there;
/// - an rrl run (its `config.json` is an rrl configuration): refused unless `overwrite`, or unless
///   it holds no results yet (a run that failed at start-up, which is simply started again);
/// - anything else that is not empty: refused, so that rrl never mixes its files with another
///   tool's or replaces a file it did not write.
///
/// While a run trains, the folder is locked (`.rrl-lock`, an advisory `flock`): a second `rrl train`
/// or `--resume` on the same folder is refused with the holder's process id. Whole-file writes are
/// atomic (temporary file, sync, rename); appended rows end at a row boundary even on a full disk.
public final class RunFolder {
    public let url: URL
    public var configurationURL: URL { url.appendingPathComponent("config.json") }
    public var metricsURL: URL { url.appendingPathComponent("metrics.csv") }
    public var weightsURL: URL { url.appendingPathComponent("weights.safetensors") }
    public var checkpointsURL: URL { url.appendingPathComponent("checkpoints") }
    var lockURL: URL { url.appendingPathComponent(".rrl-lock") }
    private var metrics: AppendFile?
    private var columns = MetricsRow.columns
    private var lock: Int32 = -1
    public private(set) var tensorBoard: TensorBoardWriter?

    /// Creates the folder, or takes over an existing one by the rules above.
    public init(path: String, overwrite: Bool) throws {
        guard !path.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw TrainingError("the run folder's path is empty; give a folder name with --run-dir (e.g. runs/my-run)")
        }
        url = URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw TrainingError("run folder '\(path)' exists and is a file; choose another --run-dir")
            }
            let names = ((try? fm.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
            if !names.isEmpty {
                // Left by an rrl run that stopped before writing its configuration: its lock, temporary files.
                let leftovers = names.allSatisfy { $0 == ".rrl-lock" || ($0.hasPrefix(".") && $0.contains(".tmp-")) }
                guard RunFolder.isRun(url) || leftovers else {
                    let shown = names.prefix(4).joined(separator: ", ") + (names.count > 4 ? ", ... (\(names.count) entries)" : "")
                    throw TrainingError("run folder '\(path)' is not empty and holds no rrl run (it has \(shown)); rrl writes a run only into a new or empty folder, or over an earlier rrl run: choose another --run-dir (e.g. a subfolder)")
                }
                if RunFolder.holdsResults(url) && !overwrite {
                    throw TrainingError("run folder '\(path)' already holds a run; choose another --run-dir, continue it with `rrl train --resume \(path)`, or pass --overwrite to replace it")
                }
            }
        }
        do {
            try fm.createDirectory(at: url, withIntermediateDirectories: true)
        } catch {
            throw TrainingError("cannot create run folder '\(path)': \((error as NSError).localizedFailureReason ?? error.localizedDescription); choose a folder you can write to")
        }
        try takeLock()
        // A replaced run leaves nothing behind that a resume or TensorBoard could pick up; only
        // rrl's own files go.
        removeOwnFiles()
    }

    /// Opens an existing run folder to continue its run.
    public init(resuming path: String) throws {
        guard !path.isEmpty else { throw TrainingError("--resume needs a run folder's path") }
        url = URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
        guard FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path) else {
            throw TrainingError("'\(path)' is not a run folder (it has no config.json); pass the folder that `rrl train` wrote")
        }
        try takeLock()
        removeTemporaryFiles()
    }

    /// The folder of a run that another process writes (rank 0 of a data-parallel run): its paths
    /// only; nothing is read, written or locked.
    init(writtenElsewhere path: String) {
        url = URL(fileURLWithPath: path, isDirectory: true).standardizedFileURL
    }

    deinit {
        if lock >= 0 { close(lock) }
    }

    /// Whether `folder` holds an rrl run: a `config.json` that is a JSON object naming an algorithm
    /// and an environment (as every configuration rrl writes does).
    static func isRun(_ folder: URL) -> Bool {
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("config.json")),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
        return object["environment"] is String && (object["algorithm"] is String || (object["agent"] as? [String: Any])?["algorithm"] is String)
    }

    /// Whether a run folder holds anything worth keeping: a metrics row, a checkpoint or weights.
    static func holdsResults(_ folder: URL) -> Bool {
        let fm = FileManager.default
        if fm.fileExists(atPath: folder.appendingPathComponent("weights.safetensors").path) { return true }
        if !CheckpointStore(directory: folder.appendingPathComponent("checkpoints")).list().isEmpty { return true }
        if let text = try? String(contentsOf: folder.appendingPathComponent("metrics.csv"), encoding: .utf8),
           text.split(separator: "\n").count > 1 { return true }
        return false
    }

    /// Takes the folder's lock (held until this object goes away), or says who holds it.
    private func takeLock() throws {
        let fd = open(lockURL.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw FileWriteError(path: lockURL.path, role: "run folder's lock file", reason: String(cString: strerror(errno)), code: errno)
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &buffer, buffer.count)
            close(fd)
            let holder = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            throw TrainingError("run folder '\(url.path)' is in use by another rrl process (pid \(holder)); wait for it to finish or stop it (kill -INT \(holder)) first")
        }
        let text = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = text.withCString { pwrite(fd, $0, strlen($0), 0) }
        lock = fd
    }

    /// Removes rrl's checkpoints and event files and the temporary files of interrupted writes.
    private func removeOwnFiles() {
        let fm = FileManager.default
        for checkpoint in CheckpointStore(directory: checkpointsURL).list() { try? fm.removeItem(at: checkpoint.url) }
        removeTemporaryFiles()
        removeEventFiles()
    }

    /// Removes the temporary files of rrl's interrupted writes: checkpoints, config.json,
    /// metrics.csv and the weights (nothing else, whatever its name).
    func removeTemporaryFiles() {
        removeStaleTemporaryFiles(in: checkpointsURL) { $0.hasPrefix("step-") && $0.hasSuffix(".ckpt") }
        removeStaleTemporaryFiles(in: url) { ["config.json", "metrics.csv", "weights.safetensors"].contains($0) }
    }

    func removeEventFiles() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
        for name in names where name.hasPrefix("events.out.tfevents.") && name.hasSuffix(TensorBoardWriter.suffix) {
            try? FileManager.default.removeItem(at: url.appendingPathComponent(name))
        }
    }

    public func writeConfiguration<C: Encodable>(_ configuration: C) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(configuration), to: configurationURL, role: "run configuration")
    }

    /// Starts `metrics.csv` with its header row, and a TensorBoard event file.
    public func startMetrics(columns: [String] = MetricsRow.columns) throws {
        try resumeMetrics(columns: columns, keeping: [])
    }

    /// Reads and checks the first `count` rows of `metrics.csv` without changing anything: a wrong
    /// header, a row that is not `columns.count` numbers, or fewer rows than `count` is an error
    /// naming the file and the line.
    public func readMetrics(columns: [String], rows count: Int) throws -> [MetricsRow] {
        let text: String
        do { text = try String(contentsOf: metricsURL, encoding: .utf8) } catch {
            throw TrainingError("cannot read \(metricsURL.path) (\((error as NSError).localizedFailureReason ?? "unreadable")); a resumed run needs the metrics its checkpoint had written")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        // The header of this run's metrics, or of an earlier version's (some of today's columns, the
        // step among them): its rows are read by its own header and rewritten with today's columns.
        let headerColumns = lines.first.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } ?? []
        let known = Set(columns)
        guard headerColumns == columns || (headerColumns.first == "step" && Set(headerColumns).count == headerColumns.count
                                           && headerColumns.allSatisfy(known.contains)) else {
            throw TrainingError("\(metricsURL.path) does not have the header of this run's metrics; was the file replaced? Restore it, or start a new run with --config \(configurationURL.path)")
        }
        let columns = headerColumns
        var rows: [MetricsRow] = []
        var previousStep = -1.0
        for (index, line) in lines.dropFirst().enumerated() where rows.count < count {
            let number = index + 2
            func bad(_ what: String) -> TrainingError {
                TrainingError("\(metricsURL.path), line \(number): \(what); nothing was changed. Fix or delete that line (the resumed run writes the rows after its checkpoint again), then resume")
            }
            let cells = line.split(separator: ",", omittingEmptySubsequences: false)
            guard cells.count == columns.count else { throw bad("\(cells.count) cells where the header has \(columns.count)") }
            var row = MetricsRow()
            for (column, cell) in zip(columns, cells) {
                if cell.isEmpty { row[column] = .nan; continue }
                guard let value = Double(cell), value.isFinite else { throw bad("'\(cell)' in column \(column) is not a finite number") }
                row[column] = value
            }
            guard let step = row["step"], step.isFinite, step >= 0, step == step.rounded(), step < 1e15, step > previousStep else {
                throw bad("the step '\(cells[0])' is not a whole number above the previous row's")
            }
            previousStep = step
            rows.append(row)
        }
        guard rows.count >= count else {
            throw TrainingError("\(metricsURL.path) holds \(rows.count) rows but the checkpoint had written \(count); the file was cut short. Restore it, or start the run again")
        }
        return rows
    }

    /// Continues a stopped run's metrics: `metrics.csv` is rewritten (atomically) with `rows` (those its
    /// checkpoint had written, as `readMetrics` checked them); the rows after them are dropped (the
    /// resumed run writes them again), and the TensorBoard events are written anew from the kept rows.
    public func resumeMetrics(columns: [String], keeping rows: [MetricsRow]) throws {
        self.columns = columns
        let text = ([columns.joined(separator: ",")] + rows.map { $0.csv(columns: columns) }).joined(separator: "\n") + "\n"
        try writeAtomically(Data(text.utf8), to: metricsURL, role: "metrics log")
        metrics = try AppendFile(url: metricsURL, role: "metrics log", create: false)
        removeEventFiles()
        tensorBoard = try TensorBoardWriter(directory: url)
        for row in rows { try tensorBoard?.write(row, columns: columns) }
    }

    /// Appends a row (to `metrics.csv` and the TensorBoard events), flushed to disk.
    public func append(_ row: MetricsRow) throws {
        guard let metrics else { throw TrainingError("metrics.csv was not started") }
        try metrics.append(Data((row.csv(columns: columns) + "\n").utf8))
        try tensorBoard?.write(row, columns: columns)
    }

    public func writeWeights(_ parameters: [NamedParameter], metadata: [String: String]) throws {
        try SafeTensors.write(parameters, metadata: metadata, to: weightsURL)
    }
}
