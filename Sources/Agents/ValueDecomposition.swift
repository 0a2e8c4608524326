import Foundation
import Environments
import NeuralNetworks
import Replay
import Tensors

/// The workspaces of a VDN or QMIX update (allocated on first use, reused).
final class ValueDecompositionBuffers {
    /// Online Q-values with the unavailable actions ruled out, and the greedy next actions they choose.
    let choosing = Tensor([0]), nextActions = Tensor([0])
    /// Per trained (slot, batch) row: each agent's chosen Q now and at the next slot; Q_tot, V'(t + 1),
    /// the return, d(loss)/d(Q_tot), and d(loss)/d(each agent's chosen Q).
    let chosenQ = Tensor([0]), nextQ = Tensor([0])
    let total = Tensor([0]), nextTotal = Tensor([0]), returns = Tensor([0]), totalGradient = Tensor([0]), qGradient = Tensor([0])
    /// The mixer's states now and at the next slots (scaled).
    let states = Tensor([0]), nextStates = Tensor([0])
    /// d(loss)/d(Q-network outputs), `[(trained + 1) · batch · agents, actions]`.
    let outputGradient = Tensor([0])
}

extension OffPolicyAgent {
    /// One VDN or QMIX update on a batch of L + 1 slots with burn-in B (trained slots B..<L).
    ///
    /// The agent Q-networks (the actor networks, one shared with the agent's id or one per agent)
    /// run over slots 0...L; the mixer makes Q_tot(t) = mix(Q_1(h_1t, a_1t), ..., Q_N(h_Nt, a_Nt); s_t)
    /// from the recorded actions, and the target networks make V'(t + 1) = mix'(Q'_k(h'_k,t+1, a*_k); s_t+1)
    /// with a*_k the online networks' greedy available action (double Q; the targets' own without it).
    /// The loss is the masked mean of (Q_tot(t) - G_t)² with G_t the one-step, n-step or TD(λ) return
    /// of the team reward (`returns`), back-propagated through the mixer and, through time, into the
    /// Q-networks. An agent that finished early contributes Q = 0 from its last step on.
    func valueDecompositionUpdate(_ batch: SequenceBatch) {
        let c = configuration
        observeMixerStates(batch)
        let (loss, meanQ) = valueDecompositionLossAndGradients(batch)
        if let norm = clipOrMeasureGradientNorm(actorAndMixerParameters) { statistics.criticGradientNorm = norm }
        actorOptimizer.step()
        statistics.criticLoss = Float(loss)
        statistics.meanQ = Float(meanQ)
        criticUpdates += 1
        if criticUpdates % c.targetUpdateInterval == 0 { updateTargets() }
    }

    /// The TD loss of a batch and the mean Q_tot over its trained steps; fills the gradients of the
    /// Q-networks and the mixer (`valueDecompositionUpdate`).
    func valueDecompositionLossAndGradients(_ batch: SequenceBatch) -> (loss: Double, meanQ: Double) {
        guard let mixer, let mixerTarget, let actorTarget, let n = discreteActions else { preconditionFailure("not a value-decomposition agent") }
        let c = configuration, o = c.valueDecompositionOptions, buffers = decomposition
        buildContext(batch)
        let S = batch.slots, L = S - 1, Bn = c.sampler.burnIn, B = batch.batchSize, N = agents, RB = B * N, T = L - Bn
        let resetMask = rowResetMask(batch)

        // Online Q over the trained slots and the bootstrap slot after them, with activations.
        actorOptimizer.zeroGradients()  // (the Q-networks' and the mixer's)
        let features = actor.encode(window: context, resetMask: resetMask, slots: 0..<S, burnIn: Bn, initialState: storedActorState(batch),
                                    keepActivations: true)
        let q = actor.head(features: features, firstRow: 0, rows: (T + 1) * RB)
        // The next actions: greedy among the available ones, by the online networks (double Q) or the targets.
        let targetFeatures = actorTarget.encode(context, initialState: storedActorState(batch), resetMask: resetMask, keepActivations: false)
        let targetQ = actorTarget.head(features: targetFeatures, firstRow: (Bn + 1) * RB, rows: T * RB)
        buffers.choosing.resize(Shape(d0: T * RB, d1: n))
        buffers.choosing.data.update(from: o.doubleQ ? q.data + RB * n : targetQ.data, count: T * RB * n)
        maskPolicy(buffers.choosing, rows: T * RB, batch: batch, firstRow: (Bn + 1) * RB)
        buffers.nextActions.resize(Shape(d0: T * RB))
        Categorical.mode(logits: buffers.choosing.data, rows: T * RB, actions: n, into: buffers.nextActions.data)

        // Each agent's chosen Q now and its Q' at the next slot (0 where the agent is not in the episode).
        let active = activity(batch, fromSlot: Bn)
        let actions = batch.actions.data + Bn * RB
        for t in [buffers.chosenQ, buffers.nextQ] { t.resize(Shape(d0: T * B, d1: N)) }
        let chosen = buffers.chosenQ.data, next = buffers.nextQ.data, best = buffers.nextActions.data
        for r in 0..<(T * RB) {
            let now = active?[r] ?? 1, then = active?[r + RB] ?? 1
            chosen[r] = now * q.data[r * n + Int(actions[r])]
            next[r] = then * targetQ.data[r * n + Int(best[r])]
        }

        // Mixed: Q_tot at the trained slots, V' at the next ones, each under its slot's state.
        for t in [buffers.total, buffers.nextTotal, buffers.returns, buffers.totalGradient] { t.resize(Shape(d0: T * B)) }
        mixer.forward(q: chosen, states: mixerStates(batch, fromSlot: Bn, into: buffers.states), rows: T * B, into: buffers.total.data)
        mixerTarget.forward(q: next, states: mixerStates(batch, fromSlot: Bn + 1, into: buffers.nextStates), rows: T * B,
                            into: buffers.nextTotal.data)
        returns(batch, into: buffers.returns.data)

        // Masked mean squared error, and its gradient back through the mixer into each chosen Q.
        let mask = batch.lossMask(maskNonFinal: c.sampler.maskNonFinal).data + Bn * B
        var count: Float = 0
        for r in 0..<(T * B) { count += mask[r] }
        let total = buffers.total.data, G = buffers.returns.data, dTotal = buffers.totalGradient.data
        var loss: Double = 0, meanQ: Double = 0
        for r in 0..<(T * B) {
            let w = count > 0 ? mask[r] / count : 0, d = total[r] - G[r]
            loss += Double(w * d * d)
            meanQ += Double(w * total[r])
            dTotal[r] = 2 * w * d
        }
        buffers.qGradient.resize(Shape(d0: T * B, d1: N))
        mixer.backward(totalGradient: dTotal, qGradient: buffers.qGradient.data)
        let gradient = buffers.outputGradient
        gradient.resize(Shape(d0: (T + 1) * RB, d1: n))
        gradient.zero()
        for r in 0..<(T * RB) { gradient.data[r * n + Int(actions[r])] = buffers.qGradient.data[r] * (active?[r] ?? 1) }
        actor.backward(window: gradient, slots: T + 1, batch: RB, truncation: c.truncation)
        if measuresGradientNorms { statistics.encoderGradientNorm = actorEncoderParameters.isEmpty ? .nan : gradientNorm(actorEncoderParameters) }
        return (loss, meanQ)
    }

    /// The states the mixer sees for the `(L - burnIn) · batch` rows from slot `s` on: the global
    /// state, or every agent's observation side by side, scaled (`scaleMixerState`) into `out`; nil
    /// for VDN.
    func mixerStates(_ batch: SequenceBatch, fromSlot s: Int, into out: Tensor) -> UnsafePointer<Float>? {
        guard let raw = rawMixerStates(batch, fromSlot: s) else { return nil }
        guard let scale = mixerStateScale else { return raw }
        let w = scale.count, rows = (batch.slots - 1 - configuration.sampler.burnIn) * batch.batchSize
        out.resize(Shape(d0: rows, d1: w))
        for j in 0..<w {
            // (An entry that has always been 0, or that is new beyond the largest seen, stays within [-1, 1].)
            let inverse: Float = scale[j] > 0 ? 1 / scale[j] : 0
            for r in 0..<rows { out.data[r * w + j] = min(max(raw[r * w + j] * inverse, -1), 1) }
        }
        return UnsafePointer(out.data)
    }

    /// The batch's states for the mixer from slot `s` on, as stored; nil for VDN.
    func rawMixerStates(_ batch: SequenceBatch, fromSlot s: Int) -> UnsafePointer<Float>? {
        guard let mixer, mixer.stateWidth > 0 else { return nil }
        let B = batch.batchSize
        return globalStateWidth > 0 ? UnsafePointer(batch.globalStates.data + s * B * globalStateWidth)
            : UnsafePointer(batch.observations.data + s * B * agents * observationWidth)
    }

    /// Widens the mixer's state scale to the states of the batch's trained steps.
    func observeMixerStates(_ batch: SequenceBatch) {
        guard let w = mixerStateScale?.count, let raw = rawMixerStates(batch, fromSlot: configuration.sampler.burnIn) else { return }
        let B = batch.batchSize, first = configuration.sampler.burnIn * B
        for r in 0..<((batch.slots - 1) * B - first) where batch.validMask.data[first + r] != 0 {
            for j in 0..<w { mixerStateScale![j] = max(mixerStateScale![j], abs(raw[r * w + j])) }
        }
    }

    /// G_t at the trained slots (`(L - burnIn) · batch`, slot-major) from the team rewards and the
    /// targets' V'(t + 1) in `decomposition.nextTotal`: one-step r_t + γ (1 - d_t) V'(t + 1), n-step,
    /// or TD(λ) by the recursion G_t = r_t + γ (1 - d_t) ((1 - λ) V'(t + 1) + λ G_{t+1}) (Daley and
    /// Amato 2019, Eq. 3), where the last step of a window (an episode's end or the window's cut)
    /// bootstraps fully: G_t = r_t + γ (1 - d_t) V'(t + 1), which is 0 after a terminal step and the
    /// value of the last observation after a time-out.
    func returns(_ batch: SequenceBatch, into G: UnsafeMutablePointer<Float>) {
        let c = configuration, o = c.valueDecompositionOptions, γ = c.gamma
        let S = batch.slots, L = S - 1, Bn = c.sampler.burnIn, B = batch.batchSize, N = agents
        let V = decomposition.nextTotal.data, rewards = batch.rewards.data, terminated = batch.terminated.data
        let steps = batch.stepIndices, resets = batch.resetMask.data
        func isStep(_ s: Int, _ b: Int) -> Bool { s < L && steps[s * B + b] >= 0 }
        func reward(_ s: Int, _ b: Int) -> Float { Float(teamReturn.of(rewards + (s * B + b) * N, agents: N)) }
        /// Slot s + 1 continues slot s's window (not its bootstrap slot).
        func continues(_ s: Int, _ b: Int) -> Bool { isStep(s + 1, b) && resets[(s + 1) * B + b] == 0 }
        for b in 0..<B {
            var t = L - Bn - 1
            while t >= 0 {
                let s = Bn + t, r = t * B + b
                defer { t -= 1 }
                guard isStep(s, b) else { G[r] = 0; continue }
                let notDone = 1 - terminated[s * B + b]
                if let λ = o.lambda, continues(s, b) {
                    G[r] = reward(s, b) + γ * notDone * ((1 - λ) * V[r] + λ * G[r + B])
                } else if o.lambda == nil && o.nSteps > 1 {
                    // Σ_{j<m} γ^j r_{t+j} + γ^m (1 - d) V'(t + m), m = n or the steps left in the window.
                    var sum: Float = 0, discount: Float = 1, j = 0
                    while true {
                        let sj = s + j
                        sum += discount * reward(sj, b)
                        discount *= γ
                        j += 1
                        if j == o.nSteps || !continues(sj, b) {
                            sum += discount * (1 - terminated[sj * B + b]) * V[(t + j - 1) * B + b]
                            break
                        }
                    }
                    G[r] = sum
                } else {
                    G[r] = reward(s, b) + γ * notDone * V[r]
                }
            }
        }
    }
}
