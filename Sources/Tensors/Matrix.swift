import CKernels

/// A strided, possibly transposed, view of row-major Float32 memory.
///
/// Element (i, j) is `base[i * stride + j]`, or `base[j * stride + i]` when `isTransposed`.
/// Views do not own memory: the tensor they come from must outlive them.
public struct Matrix {
    public var base: UnsafeMutablePointer<Float>
    /// Logical rows and columns (after transposition).
    public var rows: Int
    public var columns: Int
    /// Distance in floats between consecutive rows of the underlying storage.
    public var stride: Int
    public var isTransposed: Bool

    @inlinable
    public init(_ base: UnsafeMutablePointer<Float>, rows: Int, columns: Int, stride: Int, isTransposed: Bool = false) {
        self.base = base
        self.rows = rows
        self.columns = columns
        self.stride = stride
        self.isTransposed = isTransposed
    }

    /// The transpose: the same memory, rows and columns swapped.
    @inlinable public var transposed: Matrix {
        Matrix(base, rows: columns, columns: rows, stride: stride, isTransposed: !isTransposed)
    }

    /// Columns `range` of a non-transposed view.
    @inlinable public func columns(_ range: Range<Int>) -> Matrix {
        precondition(!isTransposed, "column slices of transposed views are not supported")
        return Matrix(base + range.lowerBound, rows: rows, columns: range.count, stride: stride)
    }

    /// Rows `range` of a non-transposed view.
    @inlinable public func rows(_ range: Range<Int>) -> Matrix {
        precondition(!isTransposed, "row slices of transposed views are not supported")
        return Matrix(base + range.lowerBound * stride, rows: range.count, columns: columns, stride: stride)
    }

    @inlinable public subscript(i: Int, j: Int) -> Float {
        get { isTransposed ? base[j * stride + i] : base[i * stride + j] }
        nonmutating set {
            if isTransposed { base[j * stride + i] = newValue } else { base[i * stride + j] = newValue }
        }
    }
}

/// Which implementation a matrix product uses; `.automatic` picks the fastest one available.
public enum GEMMPath: Int, CaseIterable, Sendable {
    case automatic = 0
    case packedPortable = 1
    case packedAVX2 = 2
    case smallPortable = 3
    case smallAVX2 = 4
    case naive = 5
    case openBLAS = 6

    /// A short name for benchmark output.
    public var name: String {
        switch self {
        case .automatic: return "auto"
        case .packedPortable: return "packed-portable"
        case .packedAVX2: return "packed-avx2"
        case .smallPortable: return "small-portable"
        case .smallAVX2: return "small-avx2"
        case .naive: return "naive"
        case .openBLAS: return "openblas"
        }
    }
}

/// C = alpha * A * B + beta * C.
///
/// A is m x k and B is k x n (either may be a transposed view); C is m x n and must not be
/// transposed. With `beta == 0`, C is only written. Products run a blocked kernel with AVX2/FMA
/// micro-kernels chosen at run time (about 90-95% of the machine's FMA peak at 100x64x64), with B
/// packed only when that pays; products of at most 8 rows take an unpacked path of their own,
/// except, with AVX2, those of 4-8 rows with B not transposed and k within one block (the blocked kernel).
@inlinable
public func gemm(_ a: Matrix, _ b: Matrix, into c: Matrix, alpha: Float = 1, beta: Float = 0, path: GEMMPath = .automatic) {
    checkProductShapes(a, b, c)
    rrl_sgemm_path(rrl_gemm_path(rawValue: UInt32(path.rawValue)), a.isTransposed ? 1 : 0, b.isTransposed ? 1 : 0,
                   c.rows, c.columns, a.columns, alpha, a.base, a.stride, b.base, b.stride, beta, c.base, c.stride)
}

/// The shapes of C = A * B agree, and C is not a transposed view.
@inlinable @inline(__always)
func checkProductShapes(_ a: Matrix, _ b: Matrix, _ c: Matrix) {
    precondition(a.columns == b.rows && a.rows == c.rows && b.columns == c.columns,
                 "gemm shapes do not agree: [\(a.rows)x\(a.columns)] * [\(b.rows)x\(b.columns)] -> [\(c.rows)x\(c.columns)]")
    precondition(!c.isTransposed, "gemm output must not be a transposed view")
}

/// C = A * B + bias, every row of C getting `bias` (C's column count of floats), in the product's
/// last store where the blocked kernel runs: the same bits as filling C's rows with the bias and
/// `gemm(a, b, into: c, beta: 1)`.
@inlinable
public func gemm(_ a: Matrix, _ b: Matrix, bias: UnsafePointer<Float>, into c: Matrix) {
    checkProductShapes(a, b, c)
    rrl_sgemm_bias(a.isTransposed ? 1 : 0, b.isTransposed ? 1 : 0, c.rows, c.columns, a.columns, a.base, a.stride,
                   b.base, b.stride, bias, c.base, c.stride)
}

/// C = A * B masked by a ReLU's output: C[i][j] = (A B)[i][j] * (mask[i][j] > 0 ? 1 : 0), the
/// gradient through the ReLU whose output `mask` is (m x n, laid out as C: row stride `c.stride`).
/// The same bits as `gemm(a, b, into: c)` followed by ReLU's backward pass, in one pass where the
/// blocked kernel runs (the mask enters its last store).
@inlinable
public func gemmMaskedByReLU(_ a: Matrix, _ b: Matrix, mask: UnsafePointer<Float>, into c: Matrix) {
    checkProductShapes(a, b, c)
    rrl_sgemm_relu_masked(a.isTransposed ? 1 : 0, b.isTransposed ? 1 : 0, c.rows, c.columns, a.columns, a.base, a.stride,
                          b.base, b.stride, mask, c.base, c.stride)
}

/// True when the AVX2/FMA kernels are in use on this CPU.
public var cpuHasAVX2FMA: Bool { rrl_cpu_has_avx2_fma() != 0 }

/// y = x w^T + bias for every row of x, then ReLU when `relu`: a dense layer's forward pass as one
/// product whose last store adds the bias and applies ReLU. x is m x k, w is n x k (PyTorch's
/// weight layout), y is m x n, none of them transposed; `bias` holds n floats. The result has the
/// same bits as filling y's rows with the bias, `gemm(x, w.transposed, into: y, beta: 1)` and a
/// ReLU pass.
@inlinable
public func affine(_ x: Matrix, weight w: Matrix, bias: UnsafePointer<Float>, relu: Bool = false, into y: Matrix) {
    precondition(!x.isTransposed && !w.isTransposed && !y.isTransposed, "affine takes views that are not transposed")
    precondition(x.columns == w.columns && x.rows == y.rows && w.rows == y.columns,
                 "affine shapes do not agree: [\(x.rows)x\(x.columns)] * [\(w.rows)x\(w.columns)]^T -> [\(y.rows)x\(y.columns)]")
    rrl_dense_forward(y.rows, y.columns, x.columns, x.base, x.stride, w.base, w.stride, bias, relu ? 1 : 0, y.base, y.stride)
}
