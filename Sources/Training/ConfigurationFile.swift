import Agents
import Environments
import Foundation
import NeuralNetworks
import Replay
import Tensors

/// A run's whole configuration, off-policy or PPO.
public enum RunConfiguration: Equatable {
    case offPolicy(OffPolicyConfiguration)
    case ppo(PPOTrainingConfiguration)

    public var algorithm: String {
        switch self {
        case .offPolicy(let c): return c.agent.algorithm.rawValue
        case .ppo(let c): return c.algorithm
        }
    }

    public var environment: String {
        switch self {
        case .offPolicy(let c): return c.environment
        case .ppo(let c): return c.environment
        }
    }
}

extension PPOTrainingConfiguration {
    /// Defaults for `rrl train ppo --env NAME`: rl-zoo's RecurrentPPO settings with value clipping
    /// 0.2, which holds its result more often at no cost (README, "Holding the result"); evaluated
    /// every 5000 steps. `--preset rl-zoo` (`PPOConfiguration.applyRLZoo`) gives rl-zoo's exactly.
    /// For `ippo` and `mappo`: networks shared by the agents with the agent's id in the
    /// context (GRU 64, heads of 64), 16 copies × 64 steps per rollout in chunks of 16, 4 epochs of
    /// 4 minibatches, lr 5e-4 and clip range 0.2 held constant, γ 0.99, λ 0.95, entropy bonus 0.01,
    /// the team's reward for every agent; 100 evaluation episodes every 50,000 steps.
    public static func defaults(environment: String, algorithm: String = "ppo") -> PPOTrainingConfiguration {
        var c = PPOTrainingConfiguration()
        c.algorithm = algorithm
        c.environment = environment
        c.evaluationInterval = 5000
        c.ppo.valueClipRange = 0.2
        if c.isMultiAgent {
            var p = PPOConfiguration()
            p.network = .gru
            p.hiddenSize = 64
            p.headHiddenSizes = [64]
            p.context = ContextInputs(observation: true, agentID: true)
            p.environments = 16
            p.rolloutSteps = 64
            p.chunkLength = 16
            p.minibatchSize = 16 * 64 * 2 / 4
            p.epochs = 4
            p.learningRate = 5e-4
            p.annealLearningRate = false
            p.annealClipRange = false
            p.gamma = 0.99
            p.gaeLambda = 0.95
            p.entropyCoefficient = 0.01
            c.ppo = p
            c.evaluationInterval = 50_000
            c.evaluationEpisodes = 100
        }
        return c
    }
}

/// Configuration files: JSON holding any subset of a run's options, in the shape of the
/// `config.json` a run folder holds (so a run's own file reproduces it). Keys left out take the
/// defaults of the algorithm and environment. Everything is checked before any work starts: an
/// unknown key (with the nearest valid one), a value of the wrong type, a value out of range, or an
/// option of another algorithm is an error that names the key.
///
/// ```json
/// {"algorithm": "ppo", "environment": "goal-cycle", "steps": 500000,
///  "ppo": {"network": "gru", "refreshStates": true, "rolloutSteps": 128, "chunkLength": 16}}
/// ```
public enum ConfigurationFile {
    /// Reads and checks a configuration file. `algorithm` (from the command line) must agree with
    /// the file's when both say one. `presetting` (a `--preset`) changes the defaults before the
    /// file's keys apply, so that the file's own settings win over the recipe's; it receives the
    /// defaults with the file's environment, options and modules.
    public static func load(path: String, algorithm: String? = nil,
                            presetting: ((inout RunConfiguration) throws -> Void)? = nil) throws -> RunConfiguration {
        guard !path.isEmpty else { throw ConfigurationError("--config needs a file's path (got an empty one)") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ConfigurationError("config file \(path) does not exist; give the path of a JSON file (a run's config.json will do)")
        }
        if isDirectory.boolValue {
            let inside = URL(fileURLWithPath: path).appendingPathComponent("config.json").path
            let hint = FileManager.default.fileExists(atPath: inside) ? "; did you mean \(inside)?" : ""
            throw ConfigurationError("config file \(path) is a folder, not a JSON file\(hint)")
        }
        let kind = (try? FileManager.default.attributesOfItem(atPath: path)[.type]) as? FileAttributeType
        guard kind == .typeRegular || kind == .typeSymbolicLink else {
            throw ConfigurationError("config file \(path) is not a regular file; give the path of a JSON file (a run's config.json will do)")
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ConfigurationError("cannot read config file \(path): \((error as NSError).localizedFailureReason ?? "unreadable"); check its permissions")
        }
        return try parse(data, source: path, algorithm: algorithm, presetting: presetting)
    }

    public static func parse(_ data: Data, source: String, algorithm: String? = nil,
                             presetting: ((inout RunConfiguration) throws -> Void)? = nil) throws -> RunConfiguration {
        func fail(_ message: String) -> ConfigurationError { ConfigurationError("config file \(source): \(message)") }
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data) } catch {
            let detail = ((error as NSError).userInfo["NSDebugDescription"] as? String).map { " (\($0))" } ?? ""
            throw fail("not valid JSON\(detail); a config file is a JSON object such as {\"algorithm\": \"sac\", \"steps\": 50000}")
        }
        guard var object = json as? [String: Any] else { throw fail("the top level must be a JSON object of options") }

        // Which algorithm: the file's top-level "algorithm", else agent.algorithm, else the command line's, else sac.
        let agentAlgorithm = (object["agent"] as? [String: Any])?["algorithm"]
        var named: String?
        for (key, value) in [("algorithm", object["algorithm"]), ("agent.algorithm", agentAlgorithm)] {
            guard let value else { continue }
            guard let text = value as? String, ["sac", "td3", "masac", "vdn", "qmix", "ppo", "ippo", "mappo"].contains(text) else {
                throw fail("'\(key)' must be one of sac, td3, masac, vdn, qmix, ppo, ippo, mappo (got \(describe(value)))")
            }
            if let named, named != text { throw fail("'algorithm' says \(named) but 'agent.algorithm' says \(text)") }
            named = text
        }
        if let algorithm, let named, algorithm != named {
            throw fail("the file is for \(named) but the command line asks for \(algorithm); drop one of the two")
        }
        let chosen = named ?? algorithm ?? "sac"
        let environment: String
        if let value = object["environment"] {
            guard let text = value as? String else { throw fail("'environment' must be a string (got \(describe(value)))") }
            environment = text
        } else {
            environment = chosen == "ppo" ? "cartpole-position" : ["masac", "vdn", "qmix", "ippo", "mappo"].contains(chosen) ? "team-recall" : "memory"
        }
        if !EnvironmentSpec(environment).isPython {
            // The environment's options are checked with the rest (validate); its name first.
            guard EnvironmentRegistry.isKnown(environment) else {
                do { _ = try EnvironmentRegistry.make(environment) } catch { throw fail("\(error)") }
                throw fail("unknown environment '\(environment)'")
            }
        }

        // The file's keys over the defaults (first changed by `presetting`, which sees the file's
        // environment), then the whole configuration checked.
        func resolved<C: Codable & EnvironmentConfiguring>(_ object: [String: Any], over defaults: C, schema: [String: Kind],
                                                           other: ([String: Kind], String), as wrap: (C) -> RunConfiguration,
                                                           validate: (C) throws -> Void) throws -> RunConfiguration {
            var defaults = defaults
            if let presetting {
                let file: C = try merge(object, over: defaults, schema: schema, other: other, fail: fail)
                var preset = wrap(defaults.withEnvironment(of: file))
                try presetting(&preset)
                switch preset {
                case .ppo(let changed as C), .offPolicy(let changed as C): defaults = changed
                default: preconditionFailure("a preset keeps the kind of configuration")
                }
            }
            let c: C = try merge(object, over: defaults, schema: schema, other: other, fail: fail)
            do {
                try validate(c)
                try OptionScope.check(wrap(c), given: changedKeys(object, from: defaults).map { ($0, "'\($0)'") })
            } catch let error as ConfigurationError { throw fail(error.message) }
            return wrap(c)
        }
        if PPOTrainingConfiguration.algorithms.contains(chosen) {
            return try resolved(object, over: PPOTrainingConfiguration.defaults(environment: environment, algorithm: chosen), schema: ppoSchema,
                                other: (offPolicySchema, OffPolicyAlgorithm.names.dropLast().joined(separator: ", ") + " or " + OffPolicyAlgorithm.names.last!), as: RunConfiguration.ppo, validate: { try $0.validate() })
        }
        object["algorithm"] = nil
        return try resolved(object, over: OffPolicyConfiguration.defaults(algorithm: OffPolicyAlgorithm(rawValue: chosen) ?? .sac, environment: environment),
                            schema: offPolicySchema, other: (ppoSchema, "ppo"), as: RunConfiguration.offPolicy, validate: { try $0.validate() })
    }

    /// The keys of `object` (dotted, leaves only) whose values differ from those of `defaults`:
    /// the options a file really sets (a run's own config.json repeats every default).
    static func changedKeys<C: Encodable>(_ object: [String: Any], from defaults: C) -> [String] {
        let base = (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(defaults))) as? [String: Any] ?? [:]
        func same(_ a: Any?, _ b: Any) -> Bool {
            guard let a else { return b is NSNull }
            if let x = a as? NSNumber, let y = b as? NSNumber, !isBool(x), !isBool(y) { return Float(x.doubleValue) == Float(y.doubleValue) }
            return (a as? NSObject)?.isEqual(b) ?? false
        }
        func walk(_ node: [String: Any], _ base: [String: Any], _ path: String) -> [String] {
            node.keys.sorted().flatMap { key -> [String] in
                let full = path.isEmpty ? key : path + "." + key
                if let child = node[key] as? [String: Any] { return walk(child, base[key] as? [String: Any] ?? [:], full) }
                return same(base[key], node[key]!) ? [] : [full]
            }
        }
        return walk(object, base, "")
    }

    /// What a key holds, read off the configuration's stored properties (so that no option can be
    /// missing from the checks).
    indirect enum Kind {
        case whole, number, flag, list, strings, stringMap, name([String]), object([String: Kind]), other
    }

    static func kind(of value: Any) -> Kind {
        var v = value
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            // An unset optional: its wrapped type tells the kind.
            if let child = mirror.children.first { v = child.value } else {
                if let names = (value as? any OptionalNamedCases)?.caseNames { return .name(names) }
                let t = "\(type(of: value))"
                if t.contains("Array<String>") { return .strings }
                if t.contains("Dictionary<String, String>") { return .stringMap }
                if t.contains("Float") || t.contains("Double") { return .number }
                if t.contains("Int") { return .whole }
                return .other
            }
        }
        switch v {
        case is Bool: return .flag
        case is Int, is UInt64: return .whole
        case is Float, is Double: return .number
        case is [Int], is [Float]: return .list
        case is [String]: return .strings
        case is [String: String]: return .stringMap
        default: break
        }
        if let e = v as? any CaseIterable, let all = type(of: e).allCases as? [any RawRepresentable] {
            return .name(all.compactMap { $0.rawValue as? String })
        }
        if v is String { return .name([]) }
        let inner = Mirror(reflecting: v)
        if inner.displayStyle == .struct {
            var fields: [String: Kind] = [:]
            for child in inner.children { if let label = child.label { fields[label] = kind(of: child.value) } }
            return .object(fields)
        }
        return .other
    }

    static func schema(_ value: Any) -> [String: Kind] {
        guard case .object(let fields) = kind(of: value) else { return [:] }
        return fields
    }

    /// (With every optional group set, so that its fields are checked too.)
    static let offPolicySchema = schema({
        var c = OffPolicyConfiguration()
        c.agent.valueDecomposition = ValueDecompositionConfiguration()
        c.agent.contextEncoder = ContextEncoderLayout()
        return c
    }())
    static let ppoSchema = schema(PPOTrainingConfiguration())

    static func isBool(_ value: Any) -> Bool { (value as? NSNumber).map { String(cString: $0.objCType) == "c" } ?? (value is Bool) }

    static func describe(_ value: Any) -> String {
        if value is NSNull { return "null" }
        if let s = value as? String { return "\"\(s)\"" }
        if let n = value as? NSNumber {
            return String(cString: n.objCType) == "c" ? (n.boolValue ? "true" : "false") : "\(n)"
        }
        if let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]) {
            return String(decoding: data, as: UTF8.self)
        }
        return "\(value)"
    }

    /// Checks every key of `object` against `schema`, merges it over `defaults`, and decodes.
    static func merge<C: Codable>(_ object: [String: Any], over defaults: C, schema: [String: Kind], other: ([String: Kind], String),
                                  fail: (String) -> ConfigurationError) throws -> C {
        func check(_ node: [String: Any], _ schemaNode: [String: Kind], otherNode: [String: Kind]?, path: String) throws {
            for key in node.keys.sorted() {
                let value = node[key]!
                let full = path.isEmpty ? key : path + "." + key
                guard let expected = schemaNode[key] else {
                    if otherNode?[key] != nil {
                        throw fail("'\(full)' applies only to \(other.1), not to this run's algorithm; remove it, or set \"algorithm\" to \(other.1)")
                    }
                    let near = schemaNode.keys.min { editDistance($0.lowercased(), key.lowercased()) < editDistance($1.lowercased(), key.lowercased()) }
                    var message = "unknown key '\(full)'"
                    if let near, editDistance(near.lowercased(), key.lowercased()) <= max(3, key.count / 3) {
                        message += "; did you mean '\(path.isEmpty ? near : path + "." + near)'?"
                    } else {
                        message += "; valid keys\(path.isEmpty ? "" : " in '\(path)'") are \(schemaNode.keys.sorted().joined(separator: ", "))"
                    }
                    throw fail(message)
                }
                let number = value as? NSNumber, isFlag = isBool(value)
                switch expected {
                case .object(let fields):
                    guard let given = value as? [String: Any] else { throw fail("'\(full)' must be an object of options (got \(describe(value)))") }
                    var otherFields: [String: Kind]?
                    if case .object(let o)? = otherNode?[key] { otherFields = o }
                    try check(given, fields, otherNode: otherFields, path: full)
                case .whole:
                    guard let number, !isFlag, number.doubleValue == number.doubleValue.rounded() else {
                        throw fail("'\(full)' must be a whole number (got \(describe(value)))")
                    }
                    guard abs(number.doubleValue) < 9e18 else { throw fail("'\(full)' is too large (got \(describe(value)))") }
                    if key == "seed" && number.doubleValue < 0 { throw fail("'\(full)' must be 0 or more (got \(describe(value)))") }
                case .stringMap:
                    guard let map = value as? [String: Any], map.values.allSatisfy({ $0 is String }) else {
                        throw fail("'\(full)' must be an object of strings, such as {\"horizon\": \"6\"} (got \(describe(value)))")
                    }
                case .strings:
                    guard let list = value as? [Any], list.allSatisfy({ $0 is String }) else {
                        throw fail("'\(full)' must be a list of strings (got \(describe(value)))")
                    }
                case .number:
                    guard let number, !isFlag else { throw fail("'\(full)' must be a number (got \(describe(value)))") }
                    guard abs(number.doubleValue) <= Double(Float.greatestFiniteMagnitude) else { throw fail("'\(full)' is too large for a 32-bit float (got \(describe(value)))") }
                case .flag:
                    guard isFlag else { throw fail("'\(full)' must be true or false (got \(describe(value)))") }
                case .list:
                    guard let list = value as? [Any], list.allSatisfy({ ($0 as? NSNumber) != nil && !isBool($0) }) else {
                        throw fail("'\(full)' must be a list of numbers (got \(describe(value)))")
                    }
                case .name(let options):
                    guard let text = value as? String else { throw fail("'\(full)' must be a string (got \(describe(value)))") }
                    if !options.isEmpty && !options.contains(text) {
                        throw fail("'\(full)' must be one of \(options.joined(separator: ", ")) (got \(describe(value)))")
                    }
                case .other:
                    break
                }
            }
        }
        try check(object, schema, otherNode: other.0, path: "")

        var merged = try! JSONSerialization.jsonObject(with: JSONEncoder().encode(defaults)) as! [String: Any]
        func overlay(_ base: inout [String: Any], _ top: [String: Any]) {
            for (k, v) in top {
                if let t = v as? [String: Any], var b = base[k] as? [String: Any] {
                    overlay(&b, t)
                    base[k] = b
                } else {
                    base[k] = v
                }
            }
        }
        overlay(&merged, object)
        let data = try! JSONSerialization.data(withJSONObject: merged)
        do {
            return try JSONDecoder().decode(C.self, from: data)
        } catch {
            // The checks above catch every kind of mistake first; this is a last resort.
            throw fail("cannot be read as a configuration: \(error)")
        }
    }
}

/// An optional whose wrapped type is an enum of names (so an unset one still tells its choices).
protocol OptionalNamedCases { var caseNames: [String] { get } }
extension Optional: OptionalNamedCases where Wrapped: CaseIterable & RawRepresentable, Wrapped.RawValue == String {
    var caseNames: [String] { Wrapped.allCases.map(\.rawValue) }
}
