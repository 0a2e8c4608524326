import CKernels
import Tensors

// Row-wise helpers shared by the layers (all on raw row-major memory).

/// Copies `width` floats of row b of `state` (columns from `column`) into `destination`, or zeros.
@inline(__always)
func copyStateRow(_ state: Matrix?, row b: Int, column: Int, width: Int, into destination: UnsafeMutablePointer<Float>) {
    if let state {
        destination.update(from: state.base + b * state.stride + column, count: width)
    } else {
        destination.update(repeating: 0, count: width)
    }
}

/// Adds the column sums of a `rows x width` block to `sum` (row by row, in order).
@inline(__always)
func accumulateColumnSums(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, into sum: UnsafeMutablePointer<Float>) {
    rrl_add_column_sums(rows, width, x, sum)
}
