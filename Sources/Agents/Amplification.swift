import Foundation
import NeuralNetworks
import Replay
import Tensors

extension OffPolicyAgent {
    /// How far one actor update of the recurrent encoder moves the policy along replayed windows,
    /// as a function of the step index in the window: RESeL's measure of why a recurrent encoder
    /// wants a slower learning rate than the layers around it. A small weight change in a recurrent
    /// network compounds along the sequence, so with a fast encoder the change grows with the step
    /// index; with a slow one it stays small and flat.
    ///
    /// The update is the real one (the actor's loss on `batch`, one step of its optimiser with
    /// every group's learning rate); only the encoder's part of it is kept for the measurement (the
    /// head is put back), so the curve is what the encoder's step does to the policy, and zero for
    /// an encoder whose learning rate is zero. Then every weight, the optimiser's moments and the
    /// random generator are put back: measuring changes nothing in training.
    ///
    /// Returns, for each step index t of the windows (counted from each window's first step), the
    /// mean over the windows long enough of the distance between the policy before and after
    /// (`policyDistance`: KL for discrete actions, the mean absolute change of the deterministic
    /// action for continuous ones); nil for an MLP actor or VDN and QMIX.
    public func amplification(_ batch: SequenceBatch) -> [Double]? {
        guard objective != nil, actor.isRecurrent else { return nil }
        let rows = prepare(batch)
        let L = batch.slots - 1, B = batch.batchSize, N = agents, R = B * N
        let before = Tensor([0]), after = Tensor([0])
        func policy(into out: Tensor) {
            let features = actor.encode(window: context, resetMask: rowResetMask(batch), slots: 0..<L, burnIn: 0,
                                        initialState: storedActorState(batch), keepActivations: false)
            let head = actor.head(features: features, firstRow: 0, rows: L * R)
            maskPolicy(head, rows: L * R, batch: batch, firstRow: 0)
            out.copy(from: head)
        }
        policy(into: before)

        let parameters = actorParameters, values = parameters.map(\.value.array)
        let moments = actorOptimizer.snapshot(), savedRNG = rng
        _ = actorLossAndGradients(batch, rows: rows)
        actorOptimizer.step()
        let encoder = Set(actor.encoderParameters.map(ObjectIdentifier.init))
        for (p, v) in zip(parameters, values) where !encoder.contains(ObjectIdentifier(p)) { p.value.data.update(from: v, count: v.count) }
        policy(into: after)
        for (p, v) in zip(parameters, values) { p.value.data.update(from: v, count: v.count) }
        actorOptimizer.restore(moments)
        rng = savedRNG

        // Each step slot's index in its window (windows restart at resets; bootstrap and padding slots are skipped).
        let width = before.shape[1]
        var sums = [Double](repeating: 0, count: L), counts = [Int](repeating: 0, count: L)
        for b in 0..<B {
            var start = 0
            for s in 0..<L where batch.stepIndices[s * B + b] >= 0 {
                if batch.resetMask.data[s * B + b] != 0 { start = s }
                for k in 0..<N {
                    let row = s * R + b * N + k
                    if N > 1 && batch.agentActive.data[row] == 0 { continue }
                    sums[s - start] += policyDistance(before.data + row * width, after.data + row * width)
                    counts[s - start] += 1
                }
            }
        }
        let used = counts.lastIndex { $0 > 0 }.map { $0 + 1 } ?? 0
        return (0..<used).map { counts[$0] > 0 ? sums[$0] / Double(counts[$0]) : .nan }
    }
}
