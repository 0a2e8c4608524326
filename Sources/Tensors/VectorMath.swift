import CKernels

/// Vectorised elementwise functions over raw Float32 memory (AVX2 when available).
/// `output` may equal `input`.
public enum VectorMath {
    @inlinable public static func exp(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int) {
        rrl_vexp(count, input, output)
    }
    @inlinable public static func tanh(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int) {
        rrl_vtanh(count, input, output)
    }
    @inlinable public static func sigmoid(_ input: UnsafePointer<Float>, _ output: UnsafeMutablePointer<Float>, count: Int) {
        rrl_vsigmoid(count, input, output)
    }
}

/// Clocks for benchmarks and progress lines.
public enum Clock {
    /// Monotonic wall time in seconds.
    public static var now: Double { rrl_now_seconds() }
    /// This process's CPU time (user + system) in seconds.
    public static var processCPU: Double { rrl_process_cpu_seconds() }
}
