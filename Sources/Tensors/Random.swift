import CKernels

/// A small, fast, seedable random generator (xoshiro256**, seeded through SplitMix64).
///
/// One seed fixes a whole run: every component takes its generator by `inout`, and the four
/// words of `state` can be saved and restored to continue a stream exactly.
///
/// ```swift
/// var rng = RandomGenerator(seed: 42)
/// let u = rng.uniform()          // [0, 1)
/// let z = rng.normal()           // standard normal
/// ```
public struct RandomGenerator: RandomNumberGenerator, Codable, Equatable, Sendable {
    /// The generator's full state.
    public var state: [UInt64] {
        get { [s0, s1, s2, s3] }
        set {
            precondition(newValue.count == 4 && newValue.contains { $0 != 0 }, "RandomGenerator state needs four words, not all zero")
            s0 = newValue[0]; s1 = newValue[1]; s2 = newValue[2]; s3 = newValue[3]
        }
    }
    @usableFromInline var s0: UInt64, s1: UInt64, s2: UInt64, s3: UInt64

    /// A generator whose whole stream is fixed by `seed`.
    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitMix(); s1 = splitMix(); s2 = splitMix(); s3 = splitMix()
    }

    @inlinable @inline(__always)
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// A new generator for a sub-component, derived from this one's stream.
    public mutating func split() -> RandomGenerator { RandomGenerator(seed: next()) }

    /// Uniform in [0, 1) with 24 random bits.
    @inlinable public mutating func uniform() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// Uniform in [low, high).
    @inlinable public mutating func uniform(_ low: Float, _ high: Float) -> Float { low + (high - low) * uniform() }

    /// Uniform in [0, 1) with 53 random bits.
    @inlinable public mutating func uniformDouble() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal (Box-Muller; one draw per call, nothing cached, so `state` is the whole state).
    @inlinable public mutating func normal() -> Float {
        let u1 = 1.0 - uniformDouble()  // (0, 1]
        let u2 = uniformDouble()
        return Float((-2.0 * _log(u1)).squareRoot() * _cos(2.0 * Double.pi * u2))
    }

    /// `count` standard normal floats by Box-Muller, vectorised (`rrl_box_muller`): the same two
    /// uniform draws per value as `normal()`, so the generator ends where as many `normal()` calls
    /// leave it, but not the same values (the arithmetic is in Float, with CKernels' log and cos).
    public mutating func fillNormal(_ out: UnsafeMutablePointer<Float>, count: Int) {
        let chunk = 64
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * chunk) { buffer in
            let u1 = buffer.baseAddress!, u2 = u1 + chunk
            var i = 0
            while i < count {
                let k = min(chunk, count - i)
                for q in 0..<k {
                    u1[q] = Float(1.0 - uniformDouble())  // (0, 1]
                    u2[q] = Float(uniformDouble())
                }
                rrl_box_muller(k, u1, u2, out + i)
                i += k
            }
        }
    }

    /// Normal with the given mean and standard deviation.
    @inlinable public mutating func normal(mean: Float, standardDeviation: Float) -> Float {
        mean + standardDeviation * normal()
    }

    /// Uniform integer in 0..<upperBound.
    @inlinable public mutating func integer(below upperBound: Int) -> Int { Int.random(in: 0..<upperBound, using: &self) }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@usableFromInline func _log(_ x: Double) -> Double { log(x) }
@usableFromInline func _cos(_ x: Double) -> Double { cos(x) }

extension Tensor {
    /// A tensor with elements uniform in [low, high).
    public static func uniform(_ shape: Shape, low: Float, high: Float, using rng: inout RandomGenerator) -> Tensor {
        let t = Tensor(shape)
        for i in 0..<t.count { t.data[i] = rng.uniform(low, high) }
        return t
    }

    /// A tensor with normal elements.
    public static func normal(_ shape: Shape, mean: Float = 0, standardDeviation: Float = 1, using rng: inout RandomGenerator) -> Tensor {
        let t = Tensor(shape)
        for i in 0..<t.count { t.data[i] = rng.normal(mean: mean, standardDeviation: standardDeviation) }
        return t
    }
}
