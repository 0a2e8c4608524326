import Tensors
import XCTest

/// Central finite differences in Float32, compared with an analytic gradient.
///
/// The loss is accumulated in Double and is linear in the outputs with random weights, so the
/// rounding error of a difference quotient is about 1e-7·|L|/eps and the truncation error
/// eps²·|f'''|; with eps = 5e-3 both stay near 1e-4, far below the size of a real mistake.
public struct GradientChecker {
    public var epsilon: Float = 5e-3
    public var relativeTolerance: Float = 1e-2
    public var absoluteTolerance: Float = 5e-4
    /// At most this many entries per tensor are checked (chosen at random), to keep tests quick.
    public var maxEntries = 48

    public init(maxEntries: Int = 48) { self.maxEntries = maxEntries }

    public func check(_ label: String, values: UnsafeMutablePointer<Float>, analytic: [Float], rng: inout RandomGenerator,
               file: StaticString = #filePath, line: UInt = #line, loss: () -> Double) {
        let count = analytic.count
        var indices = Array(0..<count)
        if count > maxEntries {
            indices.shuffle(using: &rng)
            indices = Array(indices.prefix(maxEntries))
        }
        var failures = 0
        var worst = ""
        for i in indices {
            let saved = values[i]
            values[i] = saved + epsilon
            let plus = loss()
            values[i] = saved - epsilon
            let minus = loss()
            values[i] = saved
            let numeric = Float((plus - minus) / (2 * Double(epsilon)))
            let error = abs(numeric - analytic[i])
            let allowed = absoluteTolerance + relativeTolerance * max(abs(numeric), abs(analytic[i]))
            if !(error <= allowed) {
                failures += 1
                if worst.isEmpty { worst = "entry \(i): numeric \(numeric), analytic \(analytic[i])" }
            }
        }
        XCTAssertEqual(failures, 0, "\(label): \(failures) of \(indices.count) entries disagree with finite differences, e.g. \(worst)", file: file, line: line)
    }
}

/// sum(x * w) in Double: a loss whose gradient with respect to x is w.
public func weightedSum(_ x: Tensor, _ w: Tensor) -> Double {
    precondition(x.count == w.count)
    var s = 0.0
    for i in 0..<x.count { s += Double(x.data[i]) * Double(w.data[i]) }
    return s
}

/// max |a - b| over all elements.
public func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "sizes differ: \(a.count) vs \(b.count)")
    return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
}
