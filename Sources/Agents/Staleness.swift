import Foundation
import NeuralNetworks
import Replay
import Tensors

/// How far the recurrent states an off-policy update starts its windows from are from the states
/// the current networks would have there (R2D2's measure of stale stored states, extended to every
/// strategy): for each window of a batch, the state the update uses (zeros or the stored state,
/// then the burn-in) against the state recomputed by the current network over the episode from its
/// first step, compared at the window's first and last trained step.
///
/// - Q: |Q(used) - Q(recomputed)| of the first critic at the recorded action, over the mean |Q|
///   of the recomputed values (0: no staleness).
/// - Policy: discrete, KL(π(used) ‖ π(recomputed)); continuous, the mean absolute difference of
///   the deterministic actions (tanh of the mean for SAC, the action for TD3).
///
/// Zero when the weights have not changed since collection and the update starts from stored
/// states (the stored ones are then the recomputed ones); large for zero starts in the middle of
/// episodes whose past matters.
public struct Staleness: Equatable, Sendable {
    public var qFirst: Float = .nan, qLast: Float = .nan
    public var policyFirst: Float = .nan, policyLast: Float = .nan
    public init() {}
}

extension OffPolicyAgent {
    /// Episode steps before a window's first step that are replayed to recompute its state (longer
    /// pasts are cut: the recomputation then starts that many steps back).
    public static let stalenessHorizon = 256

    /// The staleness of `batch` (sampled from `replay`), measured with the current weights. Uses the
    /// update's workspaces (the next update rebuilds them) and no random numbers, so measuring does
    /// not change training. Nil for an MLP actor.
    public func staleness(_ batch: SequenceBatch, replay: EpisodeReplay) -> Staleness? {
        guard actor.isRecurrent else { return nil }
        let rows = prepare(batch)
        let B = batch.batchSize, N = agents, R = B * N, L = batch.slots - 1, Bn = configuration.sampler.burnIn
        let a = actionWidth
        // Each batch row's first window: its past in the episode and its last trained slot.
        var pasts: [[Int]] = [], lastSlot: [Int] = []
        for b in 0..<B {
            var past: [Int] = []
            var i = batch.stepIndices[b]
            while past.count < OffPolicyAgent.stalenessHorizon, i >= 0, let p = replay.predecessor(i) {
                past.append(p)
                i = p
            }
            pasts.append(past.reversed())
            var last = Bn
            for s in Bn..<L where batch.validMask.data[s * B + b] != 0 {
                if s > Bn && batch.resetMask.data[s * B + b] != 0 { break }
                last = s
            }
            lastSlot.append(last)
        }
        let P = pasts.map(\.count).max() ?? 0
        // The past (right-aligned, starting from zeros) followed by the window, for the actor and
        // (unless they share its input) the critics.
        let C = contextWidth, Cc = criticContextWidth
        stalenessContext.resize(Shape(d0: P + L, d1: R, d2: C))
        stalenessContext.zero()
        stalenessCriticContext.resize(Shape(d0: P + L, d1: R, d2: Cc))
        stalenessCriticContext.zero()
        stalenessMask.resize(Shape(d0: P + L, d1: R))
        stalenessMask.zero()
        let actorPast = stalenessContext.data, criticPast = stalenessCriticContext.data, mask = stalenessMask.data
        for b in 0..<B {
            let past = pasts[b], first = P - past.count
            for (j, step) in past.enumerated() {
                let row = (first + j) * R + b * N, previous = replay.predecessor(step)
                writeStepContexts(observations: replay.observation(step), previousObservations: previous.map { UnsafePointer(replay.observation($0)) },
                                  globalState: replay.globalState(step), previousActions: previous.map { UnsafePointer(replay.action($0)) },
                                  previousRewards: previous.map { UnsafePointer(replay.rewards($0)) },
                                  actor: actorPast + row * C, critic: criticPast + row * Cc)
            }
            for k in 0..<N { mask[first * R + b * N + k] = 1 }
            for s in 0..<L {
                let row = b * N, to = (P + s) * R + row, from = s * R + row
                (actorPast + to * C).update(from: context.data + from * C, count: N * C)
                if !sharesContext { (criticPast + to * Cc).update(from: criticContext.data + from * Cc, count: N * Cc) }
                if s > 0 && batch.resetMask.data[s * B + b] != 0 { for k in 0..<N { mask[to + k] = 1 } }
            }
        }
        // Rows of the trained view: first trained slot and each row's last one.
        func trainedRow(_ s: Int, _ r: Int) -> Int { (s - Bn) * R + r }
        var result = Staleness()

        // Policy: the head on the used features and on the recomputed ones.
        let used = encodeCurrentActor(batch, keepActivations: false)
        stalenessUsed.copy(from: actor.head(features: used, firstRow: 0, rows: rows))
        let recomputed = actor.encode(stalenessContext, initialState: nil, resetMask: stalenessMask, keepActivations: false)
        stalenessRecomputed.copy(from: actor.head(features: recomputed, firstRow: (P + Bn) * R, rows: rows))
        maskPolicy(stalenessUsed, rows: rows, batch: batch, firstRow: Bn * R)
        maskPolicy(stalenessRecomputed, rows: rows, batch: batch, firstRow: Bn * R)
        let outputs = stalenessUsed.shape[1]
        func policyGap(_ row: Int) -> Double {
            policyDistance(stalenessUsed.data + row * outputs, stalenessRecomputed.data + row * outputs)
        }
        var first = 0.0, last = 0.0
        for b in 0..<B {
            for k in 0..<N {
                first += policyGap(trainedRow(Bn, b * N + k))
                last += policyGap(trainedRow(lastSlot[b], b * N + k))
            }
        }
        result.policyFirst = Float(first / Double(R))
        result.policyLast = Float(last / Double(R))

        // Q of the first critic at the recorded actions.
        let critic = critics[0]
        if critic.isRecurrent {
            let recorded = batch.actions.data + Bn * R * a
            let extra = criticExtra(recorded, active: activity(batch, fromSlot: Bn), rows: rows, into: recordedExtra)
            let usedFeatures = encodeCurrent(critic, batch: batch, initialState: criticStateColumns(batch.initialCriticState, critic: 0),
                                             keepActivations: false)
            stalenessUsed.copy(from: critic.head(features: usedFeatures, firstRow: 0, rows: rows, extra: extra))
            let input = sharesContext ? stalenessContext : stalenessCriticContext
            let features = critic.encode(input, initialState: nil, resetMask: stalenessMask, keepActivations: false)
            stalenessRecomputed.copy(from: critic.head(features: features, firstRow: (P + Bn) * R, rows: rows, extra: extra))
            let width = discreteActions ?? 1
            func q(_ t: Tensor, _ row: Int) -> Float { t.data[discreteActions == nil ? row : row * width + Int(recorded[row * a])] }
            var gapFirst = 0.0, gapLast = 0.0, scale = 0.0
            for b in 0..<B {
                for k in 0..<N {
                    let f = trainedRow(Bn, b * N + k), l = trainedRow(lastSlot[b], b * N + k)
                    gapFirst += Double(abs(q(stalenessUsed, f) - q(stalenessRecomputed, f)))
                    gapLast += Double(abs(q(stalenessUsed, l) - q(stalenessRecomputed, l)))
                    scale += Double(abs(q(stalenessRecomputed, f)) + abs(q(stalenessRecomputed, l))) / 2
                }
            }
            scale = max(scale / Double(R), 1e-6)
            result.qFirst = Float(gapFirst / Double(R) / scale)
            result.qLast = Float(gapLast / Double(R) / scale)
        }
        return result
    }

    /// How far apart two policy outputs (head rows) are: for discrete actions KL(π(u) ‖ π(v)); for
    /// continuous ones the mean absolute difference of the deterministic actions (tanh of the mean
    /// for SAC, the action for TD3).
    func policyDistance(_ u: UnsafePointer<Float>, _ v: UnsafePointer<Float>) -> Double {
        if let n = discreteActions {
            // In double precision (in single precision the sum's rounding left small negative values), and at least 0.
            var mu = -Double.infinity, mv = -Double.infinity
            for j in 0..<n { mu = max(mu, Double(u[j])); mv = max(mv, Double(v[j])) }
            var su = 0.0, sv = 0.0
            for j in 0..<n { su += Foundation.exp(Double(u[j]) - mu); sv += Foundation.exp(Double(v[j]) - mv) }
            var kl = 0.0
            for j in 0..<n {
                let lu = Double(u[j]) - mu - Foundation.log(su), lv = Double(v[j]) - mv - Foundation.log(sv)
                kl += Foundation.exp(lu) * (lu - lv)
            }
            return max(kl, 0)
        }
        let a = actionWidth, soft = configuration.algorithm.isSoft
        var d = 0.0
        for j in 0..<a {
            let x = soft ? Foundation.tanh(u[j]) : u[j], y = soft ? Foundation.tanh(v[j]) : v[j]
            d += Double(abs(x - y))
        }
        return d / Double(a)
    }
}
