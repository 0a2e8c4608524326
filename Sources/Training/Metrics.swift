import Foundation

/// Training stopped because something produced a value it cannot use.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// One row of the metrics log.
public struct MetricsRow: Equatable, Sendable {
    /// The columns of an off-policy (SAC, TD3) run.
    public static let columns = ["step", "episodes", "train_return_mean", "eval_return_mean", "eval_return_std", "probe_accuracy",
                                 "critic_loss", "actor_loss", "temperature", "entropy", "mean_q",
                                 "critic_grad_norm", "actor_grad_norm", "encoder_grad_norm",
                                 "staleness_q_first", "staleness_q_last", "staleness_policy_first", "staleness_policy_last",
                                 "wall_seconds", "steps_per_second"]
    /// The columns of a VDN or QMIX run: the TD loss of the mixed Q (`critic_loss`), its gradient norm
    /// over the Q-networks and the mixer (`critic_grad_norm`), the mean mixed Q, the updates made so
    /// far and the exploration ε.
    public static let valueDecompositionColumns = ["step", "episodes", "updates", "train_return_mean", "eval_return_mean", "eval_return_std",
                                                   "critic_loss", "mean_q", "critic_grad_norm", "encoder_grad_norm", "epsilon",
                                                   "wall_seconds", "steps_per_second"]
    /// The columns of a PPO run: per-update statistics of the last update before the row, among them
    /// the approximate KL to the collecting policy with stale (collected) and refreshed states.
    public static let ppoColumns = ["step", "episodes", "updates", "train_return_mean", "eval_return_mean", "eval_return_std",
                                    "policy_loss", "value_loss", "entropy", "approx_kl", "kl_stale", "kl_refreshed",
                                    "clip_fraction", "epochs", "gradient_steps", "explained_variance", "learning_rate",
                                    "clip_range", "grad_norm", "wall_seconds", "steps_per_second"]
    /// The step indices (1-based, in a window) at which the encoder's amplification is logged: the powers of two up to L.
    public static func amplificationSteps(sequenceLength L: Int) -> [Int] {
        var steps: [Int] = [], t = 1
        while t <= L {
            steps.append(t)
            t *= 2
        }
        return steps
    }

    /// The columns of an off-policy run with a recurrent actor: `columns` with the actor encoder's
    /// gradient norm and its amplification (the mean over the window's steps, and at steps 1, 2, 4, ...).
    public static func withRecurrentActorDiagnostics(sequenceLength L: Int) -> [String] {
        let diagnostics = ["actor_encoder_grad_norm", "amplification_mean"] + amplificationSteps(sequenceLength: L).map { "amplification_t\($0)" }
        let timing = columns.filter(timingColumns.contains)
        return columns.filter { !timingColumns.contains($0) } + diagnostics + timing
    }

    /// Columns that depend on the machine's speed, not on the seed.
    public static let timingColumns: Set<String> = ["wall_seconds", "steps_per_second"]
    public var values: [String: Double] = [:]

    public subscript(_ column: String) -> Double? {
        get { values[column] }
        set { values[column] = newValue }
    }

    /// The row as CSV in `columns`' order (an empty cell where a value does not apply).
    public func csv(columns: [String]) -> String {
        columns.map { c in values[c].map { v in v.isNaN ? "" : formatNumber(v) } ?? "" }.joined(separator: ",")
    }
}

func formatNumber(_ v: Double) -> String {
    if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
    return String(format: "%.6g", v)
}

/// What the progress display shows.
public struct Progress: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var stepsPerSecond: Double
    public var lastEvaluation: Double?
    public var lastProbe: Double?
    public var secondsLeft: Double
}

