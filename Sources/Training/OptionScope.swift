import Agents
import Environments
import Replay
import Foundation

/// Which options apply to which runs: the one place that decides it, used by the command line (for
/// the options given) and by configuration files (for the keys set to other than their default).
/// An option that would be silently ignored (a TD3 noise on a SAC run, an encoder learning rate on
/// an MLP, memory probes on another task) is an error that names it and says what it applies to.
public enum OptionScope {
    /// One option (by its configuration-file key), what it applies to, and the test.
    public struct Rule: Sendable {
        public let key: String
        public let appliesTo: String
        let applies: @Sendable (RunConfiguration) -> Bool
    }

    static func offPolicy(_ c: RunConfiguration) -> OffPolicyConfiguration? {
        if case .offPolicy(let o) = c { return o }
        return nil
    }

    static func ppo(_ c: RunConfiguration) -> PPOTrainingConfiguration? {
        if case .ppo(let p) = c { return p }
        return nil
    }

    static func rule(_ key: String, _ appliesTo: String, _ applies: @escaping @Sendable (RunConfiguration) -> Bool) -> Rule {
        Rule(key: key, appliesTo: appliesTo, applies: applies)
    }

    /// Whether an environment has continuous actions (a Python one is checked when it starts).
    static func hasContinuousActions(_ spec: EnvironmentSpec) -> Bool {
        guard !spec.isPython, let env = try? spec.makeMultiAgent() else { return true }
        if case .discrete = env.actionSpace { return false }
        return true
    }

    /// Whether an environment offers memory probes (the memory task does).
    static func offersProbes(_ spec: EnvironmentSpec) -> Bool {
        guard !spec.isPython, let env = try? spec.make() else { return false }
        return env is MemoryProbing
    }

    public static let rules: [Rule] = {
        var rules: [Rule] = []
        for key in ["policyNoise", "noiseClip", "explorationNoise"] {
            rules.append(rule("agent.\(key)", "td3") { offPolicy($0)?.agent.algorithm == .td3 })
        }
        for key in ["learnTemperature", "targetEntropy", "temperatureLearningRate", "initialTemperature", "actorQ"] {
            rules.append(rule("agent.\(key)", "sac and masac") { offPolicy($0)?.agent.algorithm.isSoft ?? false })
        }
        rules.append(rule("agent.targetUpdateInterval", "sac, masac, vdn and qmix") {
            offPolicy($0).map { $0.agent.algorithm.isSoft || $0.agent.algorithm.isValueDecomposition } ?? false
        })
        for key in ["agent.criticInput", "agent.otherAgentsActions"] {
            rules.append(rule(key, "masac") { offPolicy($0)?.agent.algorithm == .masac })
        }
        for key in ["agent.actorPerAgent", "resetMode"] {
            rules.append(rule(key, "masac, vdn and qmix") { offPolicy($0)?.agent.algorithm.isMultiAgent ?? false })
        }
        for key in ["criticLearningRate", "criticCount", "criticNetwork", "actorUpdateInterval", "criticHeads", "targetSubset", "clampTargets"] {
            rules.append(rule("agent.\(key)", "sac, td3 and masac (vdn and qmix have no critics: their Q-networks learn at --actor-lr)") {
                offPolicy($0).map { !$0.agent.algorithm.isValueDecomposition } ?? false
            })
        }
        for key in ["epsilonStart", "epsilonFinish", "epsilonAnnealSteps", "lambda", "nSteps", "doubleQ"] {
            rules.append(rule("agent.valueDecomposition.\(key)", "vdn and qmix") { offPolicy($0)?.agent.algorithm.isValueDecomposition ?? false })
        }
        for key in ["mixingEmbed", "hypernetEmbed", "scaleMixerState"] {
            rules.append(rule("agent.valueDecomposition.\(key)", "qmix") { offPolicy($0)?.agent.algorithm == .qmix })
        }
        for key in ["encoderLearningRate", "truncation", "recurrentLayers", "sampler.burnIn", "sampler.initialState", "hiddenSize"] {
            rules.append(rule("agent.\(key)", "recurrent networks (--network gru or lstm; an MLP's widths are --head-hidden)") {
                offPolicy($0).map { $0.agent.network != .mlp } ?? false
            })
        }
        rules.append(rule("agent.refreshStoredStatesInterval", "runs with stored states (--initial-state stored or stored+burnIn)") {
            offPolicy($0).map { $0.agent.sampler.initialState.usesStoredStates && $0.agent.network != .mlp } ?? false
        })
        for key in ["probes", "probeLength"] {
            rules.append(rule(key, "environments with memory probes (--env memory)") { offPolicy($0).map { offersProbes($0.environmentSpec) } ?? false })
        }
        for key in ["truncation", "recurrentLayers", "hiddenSize", "refreshStates", "refreshInterval", "refreshAdvantages", "encoderLearningRate"] {
            rules.append(rule("ppo.\(key)", "recurrent networks (--network gru or lstm; an MLP's widths are --head-hidden)") {
                ppo($0).map { $0.ppo.network != .mlp } ?? false
            })
        }
        for key in ["refreshInterval", "refreshAdvantages"] {
            rules.append(rule("ppo.\(key)", "runs that refresh states (--refresh)") { ppo($0)?.ppo.refreshStates ?? false })
        }
        rules.append(rule("ppo.sharedReward", "ippo and mappo") { ppo($0)?.isMultiAgent ?? false })
        rules.append(rule("ppo.initialLogStd", "continuous actions (a Gaussian policy)") { ppo($0).map { hasContinuousActions($0.environmentSpec) } ?? false })
        return rules
    }()

    /// The options among `given` (configuration-file keys, with the name to show: a flag or the
    /// key) that do not apply to `configuration`, as one error naming each and what it applies to.
    public static func check(_ configuration: RunConfiguration, given: [(key: String, name: String)]) throws {
        var problems: [String] = []
        for (key, name) in given {
            for rule in rules where rule.key == key && !rule.applies(configuration) {
                problems.append("\(name) applies only to \(rule.appliesTo)")
            }
        }
        guard !problems.isEmpty else { return }
        throw ConfigurationError(problems.joined(separator: "; ") + "; this run is \(configuration.algorithm)\(describe(configuration)): remove \(problems.count == 1 ? "it" : "them")")
    }

    static func describe(_ configuration: RunConfiguration) -> String {
        switch configuration {
        case .offPolicy(let c): return " (\(c.agent.network.rawValue)) on \(c.environment)"
        case .ppo(let c): return " (\(c.ppo.network.rawValue)) on \(c.environment)"
        }
    }
}
