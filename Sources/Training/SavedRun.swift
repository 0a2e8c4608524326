import Agents
import Environments
import Foundation
import Inference
import NeuralNetworks
import Tensors

/// A finished run read back from its folder: the resolved configuration (`config.json`) and the
/// trained actor with its weights (and, for PPO, its normalisers) from `weights.safetensors`.
public final class SavedRun {
    public let url: URL
    public let environment: String
    public let algorithm: String
    /// What acts: the policy rebuilt from the weights file by the inference library.
    public let policy: Policy
    /// The policy, as evaluation runs actors.
    public var actor: any RecurrentActor { policy }
    /// The environment with its options and Python modules.
    public let spec: EnvironmentSpec
    /// Whether the run's environment is served as a multi-agent one (masac, vdn, qmix, ippo, mappo).
    public let multiAgent: Bool

    public init(path: String) throws {
        url = URL(fileURLWithPath: path, isDirectory: true)
        let configURL = url.appendingPathComponent("config.json"), weightsURL = url.appendingPathComponent("weights.safetensors")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw TrainingError("'\(path)' holds no config.json; give the folder of a run made by `rrl train`")
        }
        guard FileManager.default.fileExists(atPath: weightsURL.path) else {
            let checkpoints = CheckpointStore(directory: url.appendingPathComponent("checkpoints")).list()
            if let last = checkpoints.last {
                throw TrainingError("'\(path)' holds no weights.safetensors yet: its run stopped at step \(last.step) before writing them; continue it with `rrl train --resume \(path)` (it writes the weights when it stops or ends)")
            }
            throw TrainingError("'\(path)' holds no weights.safetensors and no checkpoint (the run stopped before its first checkpoint); train it again with `rrl train --config \(configURL.path) --overwrite --run-dir \(path)`")
        }
        let data: Data
        do { data = try Data(contentsOf: configURL) } catch {
            throw TrainingError("cannot read \(configURL.path) (\((error as NSError).localizedFailureReason ?? "unreadable")); give the folder of a run made by `rrl train`")
        }
        let top: [String: Any]
        do {
            top = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        } catch {
            throw TrainingError("\(configURL.path) is not valid JSON (\(error.localizedDescription)); restore it from the run or train again")
        }
        func decode<T: Decodable>(_ type: T.Type) throws -> T {
            do {
                return try JSONDecoder().decode(type, from: data)
            } catch {
                throw TrainingError("\(configURL.path) does not describe a run this version can read (\(error)); train again")
            }
        }
        // The manifest is made from the run's configuration (so runs written before manifests have one).
        let parameters: [NamedParameter], manifest: PolicyManifest, weights: [NamedParameter]
        if let name = top["algorithm"] as? String, PPOTrainingConfiguration.algorithms.contains(name) {
            let c = try decode(PPOTrainingConfiguration.self)
            try c.validate()
            spec = c.environmentSpec
            multiAgent = c.isMultiAgent
            let agent: PPOAgent, actionSpace: Space
            if multiAgent {
                let env = try spec.makeMultiAgent()
                agent = try PPOAgent(configuration: c.ppo, observationSpace: env.observationSpace, actionSpace: env.actionSpace, seed: c.seed,
                                     agents: env.agents, globalStateWidth: c.hasCentralCritic ? env.globalStateWidth : 0,
                                     actionMaskWidth: env.actionMaskWidth)
                actionSpace = env.actionSpace
            } else {
                let spaces = try SavedRun.spaces(of: spec)
                agent = try PPOAgent(configuration: c.ppo, observationSpace: spaces.0, actionSpace: spaces.1, seed: c.seed)
                actionSpace = spaces.1
            }
            let normalizers = agent.normalizerParameters()
            let file = try SafeTensors.read(weightsURL)
            try SafeTensors.assign(file.tensors, path: weightsURL.path, into: agent.namedParameters() + normalizers)
            agent.restoreNormalizers(normalizers, metadata: file.metadata)
            parameters = agent.namedParameters()
            manifest = agent.policyManifest(actionSpace: actionSpace, algorithm: c.algorithm)
            weights = parameters + normalizers
            environment = c.environment
            algorithm = c.algorithm
        } else {
            let c = try decode(OffPolicyConfiguration.self)
            try c.validate()
            spec = c.environmentSpec
            multiAgent = c.isMultiAgent
            let agent: OffPolicyAgent, actionSpace: Space
            if multiAgent {
                let env = try spec.makeMultiAgent()
                agent = try OffPolicyAgent(configuration: c.agent, observationSpace: env.observationSpace, actionSpace: env.actionSpace, seed: c.seed,
                                           agents: env.agents, globalStateWidth: env.globalStateWidth, actionMaskWidth: env.actionMaskWidth)
                actionSpace = env.actionSpace
            } else {
                let spaces = try SavedRun.spaces(of: spec)
                agent = try OffPolicyAgent(configuration: c.agent, observationSpace: spaces.0, actionSpace: spaces.1, seed: c.seed)
                actionSpace = spaces.1
            }
            parameters = agent.namedParameters()
            manifest = agent.policyManifest(actionSpace: actionSpace)
            weights = parameters
            try SafeTensors.load(weightsURL, into: parameters)
            environment = c.environment
            algorithm = c.agent.algorithm.rawValue
        }
        if let bad = parameters.first(where: { !$0.parameter.value.isFinite }) {
            throw TrainingError("\(weightsURL.path): parameter \(bad.name) holds NaN or infinite values (the run diverged); these weights cannot act. Train again, e.g. with smaller learning rates or --max-grad-norm")
        }
        do {
            policy = try Policy(manifest: manifest, tensors: Dictionary(weights.map { ($0.name, $0.parameter.value) }) { a, _ in a },
                                path: weightsURL.path)
        } catch let error as PolicyError {
            throw TrainingError(error.description)
        }
    }

    /// The observation and action spaces of an environment (a Python one asked of a one-copy bridge).
    static func spaces(of spec: EnvironmentSpec) throws -> (Space, Space) {
        let vector = try spec.makeVector(count: 1)
        return (vector.observationSpace, vector.actionSpace)
    }

    /// Returns of `episodes` episodes run side by side (environment e reset with the e-th seed drawn
    /// from `seed`), with deterministic or sampled actions.
    public func evaluate(episodes: Int, seed: UInt64, stochastic: Bool) throws -> (returns: [Double], mean: Double, std: Double) {
        guard episodes >= 1 else { throw TrainingError("--episodes must be at least 1 (got \(episodes))") }
        var seeds = RandomGenerator(seed: seed)
        let result = try EvaluationEnvironments(spec: spec, episodes: episodes, multiAgent: multiAgent)
            .run(actor, seeds: &seeds, deterministic: !stochastic)
        let (mean, std) = result.summary
        return (result.returns, mean, std)
    }

    /// One episode step by step as text (environments with a text view: goal-cycle, foraging; with
    /// several agents each agent's action is named, A first).
    public func renderEpisode(seed: UInt64, stochastic: Bool, maxSteps: Int = 50) throws -> String {
        guard maxSteps >= 1 else { throw TrainingError("--render-steps must be at least 1 (got \(maxSteps))") }
        let env = try spec.isPython ? nil : spec.makeMultiAgent()
        let view = ((env as? SingleAgentAdapter)?.environment as? TextRendering) ?? (env as? TextRendering)
        guard let env, let view else {
            throw TrainingError("environment '\(environment)' has no text view; --render works for environments with one, such as goal-cycle and foraging")
        }
        let N = env.agents, o = env.observationSpace.width, w = env.actionSpace.width
        var seeds = RandomGenerator(seed: seed)
        let episodes = SideBySideEpisodes(count: 1, observationWidth: o, actor: actor, actionMaskWidth: env.actionMaskWidth)
        try env.reset(seed: seeds.next(), observations: episodes.observation(0))
        for k in 0..<N { actor.prepare(observation: episodes.observation(0) + k * o) }
        episodes.readActionMasks(0, from: env)
        var text = "step 0\n" + view.render() + "\n"
        var total = 0.0
        for t in 1...min(maxSteps, env.maxEpisodeSteps) {
            episodes.act(actor, deterministic: !stochastic)
            let (r, gained) = try episodes.step(0, in: env, actor: actor)
            total += gained
            let actions = (0..<N).map { k in view.describe(action: episodes.environmentActions.data + k * w) }
            let named = N == 1 ? actions[0] : actions.enumerated().map { "\(String(UnicodeScalar(UInt8(65 + $0.offset % 26)))) \($0.element)" }.joined(separator: ", ")
            text += "step \(t): \(named), reward \(N == 1 ? "\(episodes.stepRewards.data[0])" : String(format: "%.3f", gained)), return \(String(format: "%.2f", total))\n" + view.render() + "\n"
            if r.done { break }
        }
        return text
    }
}
