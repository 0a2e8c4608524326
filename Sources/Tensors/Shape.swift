/// The dimensions of a tensor, stored inline (rank at most 4) so that building or comparing
/// shapes never touches the heap.
///
/// ```swift
/// let shape: Shape = [50, 32, 8]   // time, batch, feature
/// shape.count                      // 12_800
/// ```
public struct Shape: Equatable, Hashable, CustomStringConvertible, ExpressibleByArrayLiteral, Sendable {
    /// Number of dimensions, 0 through 4.
    public let rank: Int
    @usableFromInline var d0: Int, d1: Int, d2: Int, d3: Int

    /// Creates a shape from up to four non-negative dimensions.
    public init(_ dimensions: [Int]) {
        precondition(dimensions.count <= 4, "Shape supports rank at most 4, got \(dimensions.count)")
        precondition(dimensions.allSatisfy { $0 >= 0 }, "Shape dimensions must be non-negative: \(dimensions)")
        rank = dimensions.count
        d0 = dimensions.count > 0 ? dimensions[0] : 1
        d1 = dimensions.count > 1 ? dimensions[1] : 1
        d2 = dimensions.count > 2 ? dimensions[2] : 1
        d3 = dimensions.count > 3 ? dimensions[3] : 1
    }

    public init(arrayLiteral elements: Int...) { self.init(elements) }

    /// Rank-1 shape without touching the heap.
    @inlinable public init(d0: Int) { rank = 1; self.d0 = d0; d1 = 1; d2 = 1; d3 = 1 }
    /// Rank-2 shape without touching the heap.
    @inlinable public init(d0: Int, d1: Int) { rank = 2; self.d0 = d0; self.d1 = d1; d2 = 1; d3 = 1 }
    /// Rank-3 shape without touching the heap.
    @inlinable public init(d0: Int, d1: Int, d2: Int) { rank = 3; self.d0 = d0; self.d1 = d1; self.d2 = d2; d3 = 1 }
    /// Rank-4 shape without touching the heap.
    @inlinable public init(d0: Int, d1: Int, d2: Int, d3: Int) { rank = 4; self.d0 = d0; self.d1 = d1; self.d2 = d2; self.d3 = d3 }

    /// Dimension `i` (0-based).
    @inlinable public subscript(i: Int) -> Int {
        precondition(i >= 0 && i < rank, "Shape index \(i) out of range for rank \(rank)")
        switch i {
        case 0: return d0
        case 1: return d1
        case 2: return d2
        default: return d3
        }
    }

    /// Product of all dimensions (1 for rank 0).
    @inlinable public var count: Int { d0 * d1 * d2 * d3 }

    /// The last dimension (1 for rank 0).
    @inlinable public var last: Int { rank == 0 ? 1 : self[rank - 1] }

    /// The product of every dimension but the last: rows when the tensor is seen as a matrix.
    @inlinable public var leadingCount: Int {
        switch rank {
        case 0, 1: return 1
        case 2: return d0
        case 3: return d0 * d1
        default: return d0 * d1 * d2
        }
    }

    /// The dimensions as an array.
    public var dimensions: [Int] { (0..<rank).map { self[$0] } }

    public var description: String { "[" + dimensions.map(String.init).joined(separator: ", ") + "]" }
}

extension Shape {
    /// The same shape with its last dimension replaced (no heap use).
    @inlinable public func replacingLast(with last: Int) -> Shape {
        switch rank {
        case 0, 1: return Shape(d0: last)
        case 2: return Shape(d0: d0, d1: last)
        case 3: return Shape(d0: d0, d1: d1, d2: last)
        default: return Shape(d0: d0, d1: d1, d2: d2, d3: last)
        }
    }
}
