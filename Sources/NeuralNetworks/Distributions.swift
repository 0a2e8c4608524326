import CKernels
import Foundation
import Tensors

/// log(2π) / 2, the constant of a Gaussian log-density.
let halfLogTwoPi = Float(0.5 * log(2 * Double.pi))

/// The tanh-squashed Gaussian policy of SAC, on actions normalised to [-1, 1].
///
/// The head emits `[mean | log std]` per row (2A floats); with noise ε ~ N(0, 1),
/// u = mean + std·ε, a = tanh(u), and
/// log π(a) = Σ_j [-ε_j²/2 - log std_j - log(2π)/2 - log(1 - tanh²(u_j))],
/// with log(1 - tanh²(u)) = 2 (log 2 - u - softplus(-2u)) for numerical stability.
/// The log std is clamped to [-20, 2] (as Stable-Baselines3); outside that range its gradient is zero.
/// The arithmetic runs in CKernels (`rrl_tanh_gaussian`), vectorised.
public enum TanhGaussian {
    /// The log std's clamp (the kernels' TG_LOG_STD_MIN and TG_LOG_STD_MAX in vecmath.c).
    public static let logStdMin: Float = -20, logStdMax: Float = 2

    /// Draws noise (`rows x A`), then writes actions and log-probabilities.
    public static func sample(parameters: UnsafePointer<Float>, rows: Int, actionWidth A: Int,
                              noise: UnsafeMutablePointer<Float>, actions: UnsafeMutablePointer<Float>,
                              logProbabilities: UnsafeMutablePointer<Float>, rng: inout RandomGenerator) {
        rng.fillNormal(noise, count: rows * A)
        evaluate(parameters: parameters, rows: rows, actionWidth: A, noise: noise, actions: actions, logProbabilities: logProbabilities)
    }

    /// Actions and log-probabilities for given noise.
    public static func evaluate(parameters: UnsafePointer<Float>, rows: Int, actionWidth A: Int,
                                noise: UnsafePointer<Float>, actions: UnsafeMutablePointer<Float>,
                                logProbabilities: UnsafeMutablePointer<Float>) {
        rrl_tanh_gaussian(rows, A, parameters, noise, actions, logProbabilities)
    }

    /// The deterministic action tanh(mean).
    public static func mode(parameters: UnsafePointer<Float>, rows: Int, actionWidth A: Int, actions: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            for j in 0..<A { actions[r * A + j] = Foundation.tanh(parameters[r * 2 * A + j]) }
        }
    }

    /// d(loss)/d(parameters) from d(loss)/d(action) (`rows x A`, may be nil) and d(loss)/d(log π)
    /// (`rows`), with the noise held fixed (the reparameterisation trick).
    public static func backward(parameters: UnsafePointer<Float>, rows: Int, actionWidth A: Int,
                                noise: UnsafePointer<Float>, actions: UnsafePointer<Float>,
                                actionGradient: UnsafePointer<Float>?, logProbabilityGradient: UnsafePointer<Float>,
                                into gradient: UnsafeMutablePointer<Float>) {
        rrl_tanh_gaussian_backward(rows, A, parameters, noise, actions, actionGradient, logProbabilityGradient, gradient)
    }
}

/// A diagonal Gaussian policy with a state-independent log standard deviation (continuous PPO):
/// the head emits the mean per row (A floats), `logStd` holds one value per action dimension, and
/// log π(a) = Σ_j [-z_j²/2 - log std_j - log(2π)/2] with z_j = (a_j - mean_j) / std_j.
public enum DiagonalGaussian {
    /// Draws actions mean + std·ε (the mean itself when `deterministic`), writing log π of each row when asked.
    public static func sample(means: UnsafePointer<Float>, logStd s: UnsafePointer<Float>, rows: Int, actionWidth A: Int,
                              deterministic: Bool, actions: UnsafeMutablePointer<Float>,
                              logProbabilities: UnsafeMutablePointer<Float>?, rng: inout RandomGenerator) {
        for r in 0..<rows {
            var logp: Float = 0
            for j in 0..<A {
                let e: Float = deterministic ? 0 : rng.normal()
                actions[r * A + j] = means[r * A + j] + Foundation.exp(s[j]) * e
                logp += -0.5 * e * e - s[j] - halfLogTwoPi
            }
            logProbabilities?[r] = logp
        }
    }

    /// log π(action) for one row.
    @inline(__always)
    public static func logProbability(mean: UnsafePointer<Float>, logStd s: UnsafePointer<Float>, actionWidth A: Int,
                                      action a: UnsafePointer<Float>) -> Float {
        var logp: Float = 0
        for j in 0..<A {
            let z = (a[j] - mean[j]) * Foundation.exp(-s[j])
            logp += -0.5 * z * z - s[j] - halfLogTwoPi
        }
        return logp
    }

    /// The entropy of action dimension j: log std_j + 1/2 + log(2π)/2 (the policy's is their sum).
    @inline(__always)
    public static func entropy(logStd: Float) -> Float { logStd + 0.5 + halfLogTwoPi }

    /// `dLogp` · d(log π(action))/d(mean, log std) for one row: writes the mean's gradient (A floats)
    /// and adds to the log std's gradient, together with `logStdGradientOffset` per dimension
    /// (an entropy bonus's gradient, for instance).
    @inline(__always)
    public static func backward(mean: UnsafePointer<Float>, logStd s: UnsafePointer<Float>, actionWidth A: Int,
                                action a: UnsafePointer<Float>, logProbabilityGradient dLogp: Float,
                                meanGradient: UnsafeMutablePointer<Float>, logStdGradient: UnsafeMutablePointer<Float>,
                                logStdGradientOffset: Float = 0) {
        for j in 0..<A {
            let inverseVariance = Foundation.exp(-2 * s[j])
            let diff = a[j] - mean[j]
            meanGradient[j] = dLogp * diff * inverseVariance
            logStdGradient[j] += dLogp * (diff * diff * inverseVariance - 1) + logStdGradientOffset
        }
    }
}

/// A categorical policy over `n` actions from logits (discrete SAC and PPO).
public enum Categorical {
    /// Writes probabilities and log-probabilities (`rows x n`) from logits.
    public static func probabilities(logits: UnsafePointer<Float>, rows: Int, actions n: Int,
                                     probabilities: UnsafeMutablePointer<Float>, logProbabilities: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let l = logits + r * n, p = probabilities + r * n, lp = logProbabilities + r * n
            var m = -Float.infinity
            for j in 0..<n { m = max(m, l[j]) }
            var s: Float = 0
            for j in 0..<n { s += Foundation.exp(l[j] - m) }
            let logZ = m + Foundation.log(s)
            for j in 0..<n {
                lp[j] = l[j] - logZ
                p[j] = Foundation.exp(lp[j])
            }
        }
    }

    /// An action drawn uniformly among the `n` for which `isAvailable` holds (one draw of `rng`), or
    /// nil when none is: random warm-up actions under masks, ε-greedy exploration.
    @inline(__always)
    public static func uniform(amongAvailable n: Int, rng: inout RandomGenerator, isAvailable: (Int) -> Bool) -> Int? {
        var available = 0
        for j in 0..<n where isAvailable(j) { available += 1 }
        var k = rng.integer(below: max(available, 1))
        for j in 0..<n where isAvailable(j) {
            if k == 0 { return j }
            k -= 1
        }
        return nil
    }

    /// Samples one action per row.
    public static func sample(probabilities: UnsafePointer<Float>, rows: Int, actions n: Int,
                              into out: UnsafeMutablePointer<Float>, rng: inout RandomGenerator) {
        for r in 0..<rows {
            let u = rng.uniform()
            var c: Float = 0
            // Past the rounded total: the last action with a positive probability (never a masked one).
            var chosen = n - 1
            while chosen > 0 && probabilities[r * n + chosen] == 0 { chosen -= 1 }
            for j in 0..<n {
                c += probabilities[r * n + j]
                if u < c { chosen = j; break }
            }
            out[r] = Float(chosen)
        }
    }

    /// The logit of an action a row may not take, after `mask`: its probability is exactly 0 (and its
    /// log-probability finite, so 0 · log π stays 0 in every sum over actions).
    public static let maskedLogit: Float = -1e9

    /// Sets the logits of unavailable actions (`mask` 0, `[rows, n]`) to `maskedLogit`.
    @inline(__always)
    public static func mask(logits: UnsafeMutablePointer<Float>, rows: Int, actions n: Int, mask: UnsafePointer<Float>) {
        for j in 0..<(rows * n) where mask[j] == 0 { logits[j] = maskedLogit }
    }

    /// The entropy -Σ_j p_j log p_j of one row.
    @inline(__always)
    public static func entropy(probabilities p: UnsafePointer<Float>, logProbabilities lp: UnsafePointer<Float>, actions n: Int) -> Float {
        var h: Float = 0
        for j in 0..<n { h -= p[j] * lp[j] }
        return h
    }

    /// d/d(logits) of one row's `dLogp` · log π(chosen) - `entropyScale` · H, where H is the row's
    /// entropy (`entropy`, as `entropy(probabilities:logProbabilities:actions:)` gives it):
    /// dLogp (1[j = chosen] - p_j) + entropyScale · p_j (log p_j + H).
    @inline(__always)
    public static func backward(probabilities p: UnsafePointer<Float>, logProbabilities lp: UnsafePointer<Float>, actions n: Int,
                                chosen: Int, logProbabilityGradient dLogp: Float, entropy h: Float, entropyScale: Float,
                                into g: UnsafeMutablePointer<Float>) {
        for j in 0..<n { g[j] = dLogp * ((j == chosen ? 1 : 0) - p[j]) + entropyScale * p[j] * (lp[j] + h) }
    }

    /// The most probable action per row.
    public static func mode(logits: UnsafePointer<Float>, rows: Int, actions n: Int, into out: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            var best = 0
            for j in 1..<max(n, 1) where logits[r * n + j] > logits[r * n + best] { best = j }
            out[r] = Float(best)
        }
    }
}
