import Foundation

/// A run folder as a report sees it: its configuration (flattened to dotted keys) and its metrics.
public struct RunRecord {
    public let path: String
    /// config.json flattened: `ppo.learningRate` -> `0.001` (values as JSON text).
    public let configuration: [String: String]
    public let columns: [String]
    /// One row per evaluation; NaN where a cell is empty.
    public let rows: [[String: Double]]

    public init(path: String, configuration: [String: String], columns: [String], rows: [[String: Double]]) {
        self.path = path
        self.configuration = configuration
        self.columns = columns
        self.rows = rows
    }

    /// Reads `config.json` and `metrics.csv` from a run folder.
    public init(path: String) throws {
        let folder = URL(fileURLWithPath: path, isDirectory: true)
        let configURL = folder.appendingPathComponent("config.json"), metricsURL = folder.appendingPathComponent("metrics.csv")
        guard let configData = try? Data(contentsOf: configURL) else {
            throw ReportError("\(path) is not a run folder: it has no readable config.json (pass folders written by `rrl train`)")
        }
        guard let object = try? JSONSerialization.jsonObject(with: configData) as? [String: Any] else {
            throw ReportError("\(configURL.path) is not a JSON object")
        }
        guard let text = try? String(contentsOf: metricsURL, encoding: .utf8) else {
            throw ReportError("\(path) has no readable metrics.csv (was the run started?)")
        }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard !lines.isEmpty else { throw ReportError("\(metricsURL.path) is empty") }
        let columns = lines.removeFirst().split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        let rows = lines.map { line -> [String: Double] in
            var row: [String: Double] = [:]
            for (c, cell) in zip(columns, line.split(separator: ",", omittingEmptySubsequences: false)) { row[c] = Double(cell) ?? .nan }
            return row
        }
        self.init(path: path, configuration: flattenConfiguration(object), columns: columns, rows: rows)
    }

    /// The configuration without what differs between seeds of one experiment.
    var experimentKey: [String: String] {
        configuration.filter { !RunRecord.perRunKeys.contains($0.key) }
    }

    static let perRunKeys: Set<String> = ["seed", "checkpointInterval"]

    /// Where a configuration names its algorithm (PPO's at the top, off-policy ones' in `agent`).
    static let algorithmKeys: Set<String> = ["algorithm", "agent.algorithm"]

    /// The algorithm a (flattened) configuration names.
    static func algorithm(_ key: [String: String]) -> String {
        displayValue(key["agent.algorithm"] ?? key["algorithm"])
    }

    /// The run's environment, as its configuration names it.
    public var environment: String { displayValue(configuration["environment"]) }

    public var name: String { URL(fileURLWithPath: path).lastPathComponent }
}

/// A run folder or metric a report cannot use, with what is wrong.
public struct ReportError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Runs that share a configuration (all but the seed): one curve, mean ± standard error over them.
public struct RunGroup {
    public let runs: [RunRecord]
    /// What sets this group apart from the others ("ppo.refreshStates=true"), or the algorithm and
    /// environment when there is one group.
    public var label: String

    public var seeds: [String] { runs.map { $0.configuration["seed"] ?? "?" } }

    /// Mean and standard error of `metric` over the runs at each step that any run has (NaN cells
    /// skipped; the standard error is 0 for a single value).
    public func curve(_ metric: String, x: String = "step") -> [(x: Double, mean: Double, standardError: Double, count: Int)] {
        var byX: [Double: [Double]] = [:]
        for run in runs {
            for row in run.rows {
                guard let xv = row[x], !xv.isNaN, let v = row[metric], !v.isNaN else { continue }
                byX[xv, default: []].append(v)
            }
        }
        return byX.keys.sorted().map { xv in
            let values = byX[xv]!
            let (mean, se) = meanAndStandardError(values)
            return (xv, mean, se, values.count)
        }
    }

    /// The final value of `metric` in each run (its last row where the cell is set).
    public func finals(_ metric: String) -> [Double] {
        runs.compactMap { run in run.rows.last(where: { !($0[metric] ?? .nan).isNaN })?[metric] }
    }
}

/// Mean and standard error of the mean (sample standard deviation / √n; 0 for n < 2).
public func meanAndStandardError(_ values: [Double]) -> (mean: Double, standardError: Double) {
    guard !values.isEmpty else { return (.nan, .nan) }
    let n = Double(values.count)
    let mean = values.reduce(0, +) / n
    guard values.count > 1 else { return (mean, 0) }
    let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)
    return (mean, (variance / n).squareRoot())
}

/// Groups runs by configuration (seed aside), in the order they were given, and labels each group
/// by the settings where the groups differ. When the groups run different algorithms (whose
/// configurations have different options), a group is labelled by its algorithm and the settings
/// that differ between groups of that same algorithm; `differences` then holds the algorithm and
/// the options every group sets that differ, and `specific` the options only some algorithms have.
/// Settings that make a label longer than `longLabel` characters (recipes that differ in many
/// options) give way to the groups' folder names when those tell the groups apart (`folderNames`);
/// the report's table of differences still lists every setting.
public func groupRuns(_ runs: [RunRecord], longLabel: Int = 60) -> (groups: [RunGroup], differences: [String], specific: [String]) {
    var keys: [[String: String]] = []
    var members: [[RunRecord]] = []
    for run in runs {
        if let i = keys.firstIndex(of: run.experimentKey) { members[i].append(run) } else {
            keys.append(run.experimentKey)
            members.append([run])
        }
    }
    func differing(_ keys: [[String: String]]) -> [String] {
        Set(keys.flatMap(\.keys)).filter { k in Set(keys.map { $0[k] ?? "(unset)" }).count > 1 }.sorted()
    }
    let differences = differing(keys)
    let algorithms = keys.map(RunRecord.algorithm)
    let mixed = Set(algorithms).count > 1
    var groups = zip(keys, members).enumerated().map { i, pair -> RunGroup in
        let (key, runs) = pair
        let label: String
        if differences.isEmpty {
            label = [RunRecord.algorithm(key), displayValue(key["environment"])].joined(separator: " on ")
        } else if mixed {
            let sameAlgorithm = keys.enumerated().filter { algorithms[$0.offset] == algorithms[i] }.map(\.element)
            let own = differing(sameAlgorithm).filter { !RunRecord.algorithmKeys.contains($0) }
            label = ([algorithms[i]] + own.map { "\($0)=\(displayValue(key[$0]))" }).joined(separator: ", ")
        } else {
            label = differences.map { "\($0)=\(displayValue(key[$0]))" }.joined(separator: ", ")
        }
        return RunGroup(runs: runs, label: label)
    }
    if groups.contains(where: { $0.label.count > longLabel }), let names = folderNames(members) {
        for i in groups.indices { groups[i].label = names[i] }
    }
    guard mixed else { return (groups, differences, []) }
    // With several algorithms: the options every group sets apart from those only some have.
    let shared = differences.filter { k in keys.allSatisfy { $0[k] != nil } }
    let specific = differences.filter { k in !shared.contains(k) && !RunRecord.algorithmKeys.contains(k) }
    return (groups, ["algorithm"] + shared.filter { !RunRecord.algorithmKeys.contains($0) }, specific)
}

/// A name for each group of runs from its folders: the folder its runs share, each run's without a
/// seed suffix (`runs/mlp/seed0` is `runs/mlp`, `runs/sac-pendulum-seed0` is `runs/sac-pendulum`),
/// less the part every group's has in common (`mlp`, `gru`; `sweeps/a/mlp`
/// and `sweeps/b/mlp` are `a/mlp` and `b/mlp`). Nil when the names would not tell the groups apart.
func folderNames(_ members: [[RunRecord]]) -> [String]? {
    func commonPrefix(_ lists: [[String]]) -> [String] {
        guard var prefix = lists.first else { return [] }
        for list in lists.dropFirst() {
            prefix = Array(zip(prefix, list).prefix(while: { $0.0 == $0.1 }).map(\.0))
        }
        return prefix
    }
    func withoutSeed(_ path: String) -> [String] {
        var own = URL(fileURLWithPath: path).standardizedFileURL.pathComponents
        if let last = own.last, let range = last.range(of: #"(^|[-_])seed[0-9]+$"#, options: .regularExpression) {
            let stem = String(last[..<range.lowerBound])
            if stem.isEmpty { own.removeLast() } else { own[own.count - 1] = stem }
        }
        return own
    }
    let folders = members.map { runs in commonPrefix(runs.map { withoutSeed($0.path) }) }
    let shared = commonPrefix(folders).count
    let names = folders.map { $0.dropFirst(shared).joined(separator: "/") }
    guard !names.contains(""), Set(names).count == names.count else { return nil }
    return names
}

/// A configuration's JSON object flattened to dotted keys (`ppo.learningRate`) and values as JSON
/// text (`0.001`, `"gru"`, `[64]`).
public func flattenConfiguration(_ object: [String: Any]) -> [String: String] {
    var out: [String: String] = [:]
    func walk(_ value: Any, _ key: String) {
        if let dict = value as? [String: Any] {
            for (k, v) in dict { walk(v, key.isEmpty ? k : key + "." + k) }
        } else if let data = try? JSONSerialization.data(withJSONObject: value, options: [.fragmentsAllowed, .withoutEscapingSlashes]) {
            out[key] = String(decoding: data, as: UTF8.self)
        }
    }
    walk(object, "")
    return out
}

/// An Encodable configuration flattened the same way.
public func flattenConfiguration<C: Encodable>(_ configuration: C) -> [String: String] {
    guard let data = try? JSONEncoder().encode(configuration),
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return [:] }
    return flattenConfiguration(object)
}
