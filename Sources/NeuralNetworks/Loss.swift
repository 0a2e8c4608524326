import Tensors

/// Losses that return their value and write d(loss)/d(prediction).
///
/// A `mask` (one float per row of the prediction, 0 or 1, e.g. a sequence batch's valid-step
/// mask flattened to `[time * batch]`) excludes rows; the mean is over unmasked rows.
public enum Loss {
    /// mean over unmasked elements of (prediction - target)^2.
    public static func meanSquaredError(prediction: Tensor, target: Tensor, mask: Tensor? = nil, gradient: Tensor) -> Float {
        elementwise(prediction: prediction, target: target, mask: mask, gradient: gradient) { d in (d * d, 2 * d) }
    }

    /// Huber loss with threshold `delta`: 0.5 d^2 for |d| <= delta, delta (|d| - 0.5 delta) beyond.
    public static func huber(prediction: Tensor, target: Tensor, delta: Float = 1, mask: Tensor? = nil, gradient: Tensor) -> Float {
        elementwise(prediction: prediction, target: target, mask: mask, gradient: gradient) { d in
            let a = abs(d)
            return a <= delta ? (0.5 * d * d, d) : (delta * (a - 0.5 * delta), d > 0 ? delta : -delta)
        }
    }

    @inline(__always)
    private static func elementwise(prediction: Tensor, target: Tensor, mask: Tensor?, gradient: Tensor,
                                    _ f: (Float) -> (value: Float, derivative: Float)) -> Float {
        precondition(prediction.shape == target.shape, "loss: prediction \(prediction.shape) and target \(target.shape) differ")
        let rows = prediction.shape.leadingCount, cols = prediction.shape.last
        if let mask { precondition(mask.count == rows, "loss: mask needs one entry per row (\(rows)), got \(mask.count)") }
        gradient.resize(prediction.shape)
        var active = 0
        if let mask { for r in 0..<rows where mask.data[r] != 0 { active += 1 } } else { active = rows }
        let scale = active == 0 ? 0 : 1 / Float(active * cols)
        var total: Float = 0
        for r in 0..<rows {
            let m: Float = mask.map { $0.data[r] } ?? 1
            for j in 0..<cols {
                let i = r * cols + j
                if m == 0 { gradient.data[i] = 0; continue }
                let (v, dv) = f(prediction.data[i] - target.data[i])
                total += m * v
                gradient.data[i] = m * dv * scale
            }
        }
        return total * scale
    }
}
