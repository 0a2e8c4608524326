import CKernels
import Foundation
import Tensors

/// Pointwise nonlinearities. Backward passes use the stored *output*, so no pre-activation
/// copy is kept.
public enum Activation: String, CaseIterable, Codable, Sendable {
    case identity, tanh, relu, elu, sigmoid

    /// y = f(x) over `count` floats, in place allowed.
    public func apply(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .identity:
            if UnsafePointer(y) != x { y.update(from: x, count: count) }
        case .tanh: VectorMath.tanh(x, y, count: count)
        case .sigmoid: VectorMath.sigmoid(x, y, count: count)
        case .relu: rrl_relu(count, x, y)
        case .elu: rrl_velu(count, x, y)
        }
    }

    /// dx = dy * f'(x), written from the output y = f(x); `dx` may equal `dy`.
    public func backward(output y: UnsafePointer<Float>, outputGradient dy: UnsafePointer<Float>,
                         inputGradient dx: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .identity:
            if UnsafePointer(dx) != dy { dx.update(from: dy, count: count) }
        case .tanh: rrl_tanh_backward(count, y, dy, dx)
        case .sigmoid: rrl_sigmoid_backward(count, y, dy, dx)
        case .relu: rrl_relu_backward(count, y, dy, dx)
        case .elu: for i in 0..<count { dx[i] = y[i] > 0 ? dy[i] : dy[i] * (y[i] + 1) }
        }
    }
}
