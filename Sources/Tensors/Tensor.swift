import CKernels

/// A dense, row-major Float32 tensor that owns its storage.
///
/// Storage is allocated once and reused: `resize(_:)` keeps the allocation whenever the new
/// shape fits, so layers and optimisers can hold their workspaces across training steps with no
/// heap traffic. Sequences are time-major, `[time, batch, feature]`.
///
/// ```swift
/// let x = Tensor([2, 3], values: [1, 2, 3, 4, 5, 6])
/// x[1, 2]            // 6
/// x.matrix.transposed  // a 3 x 2 strided view of the same memory
/// ```
public final class Tensor {
    // The three stored properties change only in `resize` (never under an access held across a
    // call), so they are declared without Swift's dynamic exclusivity checks. Measured on a pendulum
    // SAC run (`perf record`: `swift_beginAccess`, `AccessSet::insert`): 3.3% of the time before,
    // 1.8% after. Reads from other modules still show checks (the sampler's copy loop ran twice as
    // long without its local pointers), so hot loops there keep taking `data` once.

    /// The current shape.
    @exclusivity(unchecked) public private(set) var shape: Shape
    /// Number of floats the storage can hold without reallocating.
    @exclusivity(unchecked) public private(set) var capacity: Int
    /// The first element; valid for `capacity` floats.
    @exclusivity(unchecked) public private(set) var data: UnsafeMutablePointer<Float>

    /// A zero-filled tensor.
    public init(_ shape: Shape) {
        self.shape = shape
        capacity = Swift.max(shape.count, 1)
        data = .allocate(capacity: capacity)
        data.initialize(repeating: 0, count: capacity)
    }

    /// A tensor holding `values` (row-major); `values.count` must equal `shape.count`.
    public convenience init(_ shape: Shape, values: [Float]) {
        precondition(values.count == shape.count, "Tensor of shape \(shape) needs \(shape.count) values, got \(values.count)")
        self.init(shape)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    /// A copy of another tensor.
    public convenience init(copying other: Tensor) {
        self.init(other.shape)
        data.update(from: other.data, count: other.count)
    }

    deinit { data.deallocate() }

    /// Number of elements.
    @inlinable public var count: Int { shape.count }

    /// Changes the shape, reallocating only when the new shape needs more room than `capacity`.
    /// Contents are kept when the storage is kept (new room is zero-filled).
    public func resize(_ newShape: Shape) {
        if newShape == shape { return }
        let needed = newShape.count
        if needed > capacity {
            let fresh = UnsafeMutablePointer<Float>.allocate(capacity: needed)
            fresh.initialize(repeating: 0, count: needed)
            fresh.update(from: data, count: shape.count)
            data.deallocate()
            data = fresh
            capacity = needed
        }
        shape = newShape
    }

    /// Sets every element to `value`.
    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    /// Sets every element to zero.
    public func zero() { data.update(repeating: 0, count: count) }

    /// Copies `other`'s shape and contents.
    public func copy(from other: Tensor) {
        resize(other.shape)
        data.update(from: other.data, count: other.count)
    }

    /// The elements as an array (for tests and I/O, not hot loops).
    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    /// Element access by full index (for tests and I/O, not hot loops).
    public subscript(indices: Int...) -> Float {
        get { data[flatIndex(indices)] }
        set { data[flatIndex(indices)] = newValue }
    }

    private func flatIndex(_ indices: [Int]) -> Int {
        precondition(indices.count == shape.rank, "Index \(indices) does not match shape \(shape)")
        var flat = 0
        for (axis, index) in indices.enumerated() {
            precondition(index >= 0 && index < shape[axis], "Index \(indices) out of range for shape \(shape)")
            flat = flat * shape[axis] + index
        }
        return flat
    }

    /// The tensor seen as a matrix: rows = product of all but the last dimension, columns = last.
    @inlinable public var matrix: Matrix {
        Matrix(data, rows: shape.leadingCount, columns: shape.last, stride: shape.last)
    }

    /// Pointer to row `index` of the leading dimension (for a `[time, batch, feature]` sequence,
    /// `slice(t)` is step t's `[batch, feature]` block).
    @inlinable public func slice(_ index: Int) -> UnsafeMutablePointer<Float> {
        data + index * (count / Swift.max(shape[0], 1))
    }

    /// Sum of squares of all elements.
    public func sumOfSquares() -> Float {
        var s: Float = 0
        for i in 0..<count { s += data[i] * data[i] }
        return s
    }

    /// True when no element is NaN or infinite.
    public var isFinite: Bool { rrl_all_finite(count, data) != 0 }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let preview = (0..<Swift.min(count, 8)).map { String(data[$0]) }.joined(separator: ", ")
        return "Tensor\(shape)(\(preview)\(count > 8 ? ", ..." : ""))"
    }
}

extension Tensor {
    /// The values of a `[rows, columns]` tensor (its first dimension by the rest) column by column,
    /// as a `[columns, rows]` array: a weight matrix transposed for one-row products and exports.
    public var transposedValues: [Float] {
        let rows = shape[0], columns = count / max(rows, 1), v = array
        return (0..<columns).flatMap { c in (0..<rows).map { v[$0 * columns + c] } }
    }
}

/// Copies `count` floats from `source` to `destination` (which must not overlap); a few floats
/// are moved inline rather than through a call to memmove.
@inlinable @inline(__always)
public func copyFloats(_ destination: UnsafeMutablePointer<Float>, from source: UnsafePointer<Float>, count: Int) {
    rrl_copy_floats(destination, source, count)
}

/// Asks for the cache line holding `address` ahead of its reads (a hint: no effect on results).
@inlinable @inline(__always)
public func prefetch(_ address: UnsafeRawPointer) {
    rrl_prefetch(address)
}
