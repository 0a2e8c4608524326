@testable import Agents
import Replay
import Tensors
import TestSupport

/// Checks the off-policy agent's critic loss (`actor` false: every critic's parameters) or actor
/// loss (`actor` true) on `batch` against finite differences, each loss run with the same random
/// numbers; encoders are skipped when `checksEncoders` is false (burn-in and truncation cut their
/// gradients on purpose).
func checkLossGradients(_ agent: OffPolicyAgent, batch: SequenceBatch, actor: Bool, label: String, checksEncoders: Bool,
                        maxEntries: Int = 12) {
    let rows = agent.prepare(batch)
    let noise = agent.rng
    func loss() -> Double {
        agent.rng = noise
        return actor ? agent.actorLossAndGradients(batch, rows: rows).loss : agent.criticLossAndGradients(batch, rows: rows).loss
    }
    _ = loss()
    // Every analytic gradient is read before any check re-runs the loss.
    let parameters = actor ? agent.actor.namedParameters(prefix: "actor.")
        : agent.critics.enumerated().flatMap { $0.element.namedParameters(prefix: "critic\($0.offset).") }
    let gradients = parameters.map(\.parameter.gradient.array)
    var rng = RandomGenerator(seed: actor ? 6 : 5)
    for ((name, p), analytic) in zip(parameters, gradients) where checksEncoders || !name.contains(".encoder.") {
        GradientChecker(maxEntries: maxEntries).check("\(label): \(name)", values: p.value.data, analytic: analytic, rng: &rng, loss: loss)
    }
}
