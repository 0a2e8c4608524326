import CKernels
import Tensors
import XCTest

final class GEMMTests: XCTestCase {
    /// Double-precision reference computed here, independent of the C kernels.
    private func reference(_ a: Matrix, _ b: Matrix, _ c0: [Float], alpha: Float, beta: Float) -> [Float] {
        var out = [Float](repeating: 0, count: a.rows * b.columns)
        for i in 0..<a.rows {
            for j in 0..<b.columns {
                var s = 0.0
                for p in 0..<a.columns { s += Double(a[i, p]) * Double(b[p, j]) }
                let prior = beta == 0 ? 0 : Double(beta) * Double(c0[i * b.columns + j])
                out[i * b.columns + j] = Float(Double(alpha) * s + prior)
            }
        }
        return out
    }

    private func check(m: Int, n: Int, k: Int, transA: Bool, transB: Bool, alpha: Float, beta: Float,
                       path: GEMMPath, rng: inout RandomGenerator, file: StaticString = #filePath, line: UInt = #line) {
        // Storage with padding in the leading dimension, so strides differ from widths.
        let aRows = transA ? k : m, aCols = transA ? m : k
        let bRows = transB ? n : k, bCols = transB ? k : n
        let lda = aCols + 3, ldb = bCols + 1, ldc = n + 2
        let aStore = Tensor.uniform([aRows, lda], low: -1, high: 1, using: &rng)
        let bStore = Tensor.uniform([bRows, ldb], low: -1, high: 1, using: &rng)
        let cStore = Tensor.uniform([m, ldc], low: -1, high: 1, using: &rng)
        if beta == 0 { for i in 0..<m { cStore.data[i * ldc] = .nan } }  // beta == 0 must not read C
        var a = Matrix(aStore.data, rows: aRows, columns: aCols, stride: lda)
        if transA { a = a.transposed }
        var b = Matrix(bStore.data, rows: bRows, columns: bCols, stride: ldb)
        if transB { b = b.transposed }
        let c = Matrix(cStore.data, rows: m, columns: n, stride: ldc)
        var c0 = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { c0[i * n + j] = c[i, j] } }
        let padding = (0..<m).map { cStore.data[$0 * ldc + n] }
        let expected = reference(a, b, c0, alpha: alpha, beta: beta)
        gemm(a, b, into: c, alpha: alpha, beta: beta, path: path)
        var worst: Float = 0
        for i in 0..<m {
            for j in 0..<n {
                let e = expected[i * n + j]
                let err = abs(c[i, j] - e) / (1 + abs(e))
                if !(err <= worst) { worst = err.isNaN ? .infinity : err }
            }
            XCTAssertEqual(cStore.data[i * ldc + n], padding[i], "gemm wrote past row end", file: file, line: line)
        }
        let tolerance: Float = 2e-6 * Float(k).squareRoot() + 1e-6
        XCTAssertLessThanOrEqual(worst, tolerance,
                                 "path \(path.name) m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) alpha=\(alpha) beta=\(beta)",
                                 file: file, line: line)
    }

    func testEveryPathAgreesWithReferenceOnOddShapes() {
        var rng = RandomGenerator(seed: 7)
        let sizes = [1, 3, 17, 33, 257]
        let paths: [GEMMPath] = [.automatic, .packedPortable, .packedAVX2, .smallPortable, .smallAVX2]
        for path in paths {
            for m in sizes {
                // The small paths are for few rows; still correct for any m, but keep the test quick.
                if (path == .smallPortable || path == .smallAVX2) && m > 33 { continue }
                for n in [1, 3, 17, 33, 257] where m * n <= 257 * 33 {
                    for k in [1, 3, 17, 257] {
                        for transA in [false, true] {
                            for transB in [false, true] {
                                check(m: m, n: n, k: k, transA: transA, transB: transB, alpha: 1, beta: 0, path: path, rng: &rng)
                            }
                        }
                    }
                }
            }
        }
    }

    func testAlphaBetaAndBlockBoundaries() {
        var rng = RandomGenerator(seed: 11)
        // k = 300 crosses the 256-deep k block; n = 530 crosses the 512-wide n block.
        for path in [GEMMPath.automatic, .packedPortable, .packedAVX2, .smallAVX2, .smallPortable] {
            for (m, n, k) in [(7, 530, 300), (13, 40, 300), (2, 9, 5), (6, 16, 8), (12, 32, 1)] {
                for (alpha, beta) in [(Float(1), Float(1)), (0.5, -2), (-1.5, 0)] {
                    for transA in [false, true] {
                        for transB in [false, true] {
                            check(m: m, n: n, k: k, transA: transA, transB: transB, alpha: alpha, beta: beta, path: path, rng: &rng)
                        }
                    }
                }
            }
        }
    }

    /// Products of 4-8 rows with B not transposed now run the blocked kernels; with alpha 1 and beta 0
    /// or 1 (the library's only uses) every element is the same FMA chain as on the small path, so
    /// the bits must not change.
    func testFewRowProductsKeepTheSmallPathsBits() throws {
        try XCTSkipUnless(cpuHasAVX2FMA, "the paths differ only with AVX2")
        var rng = RandomGenerator(seed: 17)
        for m in 4...8 {
            for (n, k) in [(48, 16), (16, 48), (256, 64), (64, 256), (30, 10), (3, 64)] {
                for transA in [false, true] {
                    for beta: Float in [0, 1] {
                        let a = Tensor.uniform(transA ? [k, m] : [m, k], low: -1, high: 1, using: &rng)
                        let b = Tensor.uniform([k, n], low: -1, high: 1, using: &rng)
                        let c0 = Tensor.uniform([m, n], low: -1, high: 1, using: &rng)
                        let viaAuto = Tensor(copying: c0), viaSmall = Tensor(copying: c0)
                        let am = transA ? a.matrix.transposed : a.matrix
                        gemm(am, b.matrix, into: viaAuto.matrix, beta: beta)
                        gemm(am, b.matrix, into: viaSmall.matrix, beta: beta, path: .smallAVX2)
                        XCTAssertEqual(viaAuto.array.map(\.bitPattern), viaSmall.array.map(\.bitPattern),
                                       "m=\(m) n=\(n) k=\(k) transA=\(transA) beta=\(beta)")
                    }
                }
            }
        }
    }

    /// The transposed copy of W_hh a recurrent pass multiplies by: 8x8 register blocks and edges.
    func testTransposeOddShapes() {
        var rng = RandomGenerator(seed: 5)
        for (rows, cols) in [(1, 1), (8, 8), (9, 17), (64, 16), (192, 64), (13, 3)] {
            let src = Tensor.uniform([rows, cols + 2], low: -1, high: 1, using: &rng)
            let dst = Tensor([cols, rows + 1])
            rrl_transpose(rows, cols, src.data, cols + 2, dst.data, rows + 1)
            for i in 0..<rows {
                for j in 0..<cols {
                    XCTAssertEqual(dst.data[j * (rows + 1) + i], src.data[i * (cols + 2) + j], "\(rows)x\(cols) at \(i), \(j)")
                }
            }
            for j in 0..<cols { XCTAssertEqual(dst.data[j * (rows + 1) + rows], 0, "wrote past a row") }
        }
    }

    /// A column's bits do not depend on how many columns are computed beside it: the last 1-4
    /// columns of A B^T (rows in vector lanes) and the 8-wide tail give what the 16-wide kernel gives.
    func testNarrowColumnsKeepTheWideKernelsBits() throws {
        try XCTSkipUnless(cpuHasAVX2FMA, "the kernels differ only with AVX2")
        var rng = RandomGenerator(seed: 23)
        for m in [9, 16, 100, 130] {
            for k in [3, 64, 300] {
                for (transA, transB) in [(false, true), (false, false), (true, false), (true, true)] {
                    let aStore = Tensor.uniform(transA ? [k, m] : [m, k], low: -1, high: 1, using: &rng)
                    let aView = transA ? aStore.matrix.transposed : aStore.matrix
                    let w16 = Tensor.uniform([16, k], low: -1, high: 1, using: &rng)  // B^T: 16 rows of k
                    let bias = Tensor.uniform([16], low: -1, high: 1, using: &rng)
                    let b16 = Tensor([k, 16])
                    for p in 0..<k { for j in 0..<16 { b16.data[p * 16 + j] = w16.data[j * k + p] } }
                    for beta: Float in [0, 1] {
                        let c0 = Tensor.uniform([m, 16], low: -1, high: 1, using: &rng)
                        let wide = Tensor(copying: c0)
                        gemm(aView, transB ? w16.matrix.transposed : b16.matrix, into: wide.matrix, beta: beta)
                        for n in [1, 2, 3, 4, 7] {
                            let narrow = Tensor(copying: c0)
                            let bn = transB ? Matrix(w16.data, rows: n, columns: k, stride: k).transposed
                                            : Matrix(b16.data, rows: k, columns: n, stride: 16)
                            gemm(aView, bn, into: Matrix(narrow.data, rows: m, columns: n, stride: 16), beta: beta)
                            for i in 0..<m {
                                for j in 0..<n where narrow.data[i * 16 + j].bitPattern != wide.data[i * 16 + j].bitPattern {
                                    XCTFail("m=\(m) n=\(n) k=\(k) transA=\(transA) transB=\(transB) beta=\(beta): C[\(i)][\(j)] \(narrow.data[i * 16 + j]) against \(wide.data[i * 16 + j])")
                                }
                            }
                        }
                    }
                    // The fused layer: bias and ReLU on the narrow columns as on the wide ones.
                    guard !transA else { continue }
                    let a = aStore
                    let wideOut = Tensor([m, 16])
                    affine(a.matrix, weight: w16.matrix, bias: bias.data, relu: true, into: wideOut.matrix)
                    for n in [1, 3, 4] {
                        let out = Tensor([m, n])
                        affine(a.matrix, weight: Matrix(w16.data, rows: n, columns: k, stride: k), bias: bias.data, relu: true, into: out.matrix)
                        for i in 0..<m {
                            for j in 0..<n where out.data[i * n + j].bitPattern != wideOut.data[i * 16 + j].bitPattern {
                                XCTFail("affine m=\(m) n=\(n) k=\(k): y[\(i)][\(j)] \(out.data[i * n + j]) against \(wideOut.data[i * 16 + j])")
                            }
                        }
                    }
                }
            }
        }
    }

    /// A product with the bias in its last store has the bits of the rows filled with the bias and a
    /// product accumulated onto them (beta 1), on every path: 1-8 rows (a recurrent step over a small
    /// batch, the small kernels), transposed operands, 1-4 and 5-8 last columns, k blocks beyond 256.
    func testProductWithBiasEqualsBiasThenAccumulatedProductBitForBit() {
        var rng = RandomGenerator(seed: 37)
        for (m, n, k) in [(1, 48, 16), (4, 48, 16), (4, 192, 64), (8, 16, 48), (9, 3, 64), (100, 64, 64), (100, 1, 64),
                          (37, 21, 300), (13, 530, 20)] {
            for (transA, transB) in [(false, false), (false, true), (true, false), (true, true)] {
                let aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n
                let aStore = Tensor.uniform([aRows, aCols + 2], low: -1, high: 1, using: &rng)
                let bStore = Tensor.uniform([bRows, bCols + 1], low: -1, high: 1, using: &rng)
                var a = Matrix(aStore.data, rows: aRows, columns: aCols, stride: aCols + 2)
                if transA { a = a.transposed }
                var b = Matrix(bStore.data, rows: bRows, columns: bCols, stride: bCols + 1)
                if transB { b = b.transposed }
                let bias = Tensor.uniform([n], low: -1, high: 1, using: &rng)
                let ld = n + 3
                let fused = Tensor([m, ld]), steps = Tensor([m, ld])
                for i in 0..<(m * ld) { fused.data[i] = 7; steps.data[i] = 7 }  // padding stays
                gemm(a, b, bias: bias.data, into: Matrix(fused.data, rows: m, columns: n, stride: ld))
                for i in 0..<m { for j in 0..<n { steps.data[i * ld + j] = bias.data[j] } }
                gemm(a, b, into: Matrix(steps.data, rows: m, columns: n, stride: ld), beta: 1)
                for i in 0..<(m * ld) where fused.data[i].bitPattern != steps.data[i].bitPattern {
                    XCTFail("m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB): element \(i) is \(fused.data[i]), bias then product give \(steps.data[i])")
                    break
                }
            }
        }
    }

    /// Products of 4-8 rows (a recurrent step over a small batch) give the same bits with AVX-512's
    /// few-row tiles as with the AVX2 kernels: every store kind (plain, accumulated, bias, bias and
    /// ReLU, ReLU mask), widths across 64-column tiles with partial vectors, transposed A.
    func testFewRowProductsAreTheSameWithAVX512() throws {
        guard rrl_cpu_has_avx512f() != 0 else { throw XCTSkip("this CPU has no AVX-512") }
        defer { rrl_set_allow_avx512(1) }
        var rng = RandomGenerator(seed: 43)
        for (m, n, k) in [(4, 48, 16), (4, 16, 48), (5, 192, 64), (8, 150, 33), (6, 7, 1), (7, 200, 256)] {
            for transA in [false, true] {
                let aStore = Tensor.uniform(transA ? [k, m + 1] : [m, k + 1], low: -1, high: 1, using: &rng)
                var a = transA ? Matrix(aStore.data, rows: k, columns: m, stride: m + 1) : Matrix(aStore.data, rows: m, columns: k, stride: k + 1)
                if transA { a = a.transposed }
                let bStore = Tensor.uniform([k, n + 2], low: -1, high: 1, using: &rng)
                let b = Matrix(bStore.data, rows: k, columns: n, stride: n + 2)
                let bias = Tensor.uniform([n], low: -1, high: 1, using: &rng)
                let mask = Tensor.uniform([m, n + 3], low: -1, high: 1, using: &rng)
                let start = Tensor.uniform([m, n + 3], low: -1, high: 1, using: &rng)
                func product(_ kind: Int) -> [UInt32] {
                    let c = Tensor(copying: start), cm = Matrix(c.data, rows: m, columns: n, stride: n + 3)
                    switch kind {
                    case 0: gemm(a, b, into: cm)
                    case 1: gemm(a, b, into: cm, beta: 1)
                    case 2: gemm(a, b, bias: bias.data, into: cm)
                    case 3: gemmMaskedByReLU(a, b, mask: mask.data, into: cm)
                    default: gemm(a, b, into: cm, alpha: 0.5, beta: 2)
                    }
                    return (0..<(m * (n + 3))).map { c.data[$0].bitPattern }
                }
                for kind in 0..<5 {
                    rrl_set_allow_avx512(0)
                    let avx2 = product(kind)
                    rrl_set_allow_avx512(1)
                    if let i = zip(product(kind), avx2).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
                        XCTFail("m=\(m) n=\(n) k=\(k) transA=\(transA) kind=\(kind): element \(i) differs from the AVX2 kernels'")
                    }
                }
            }
        }
    }

    func testZeroDepthScalesC() {
        let c = Tensor([2, 2], values: [1, 2, 3, 4])
        let a = Tensor([2, 0]), b = Tensor([0, 2])
        gemm(a.matrix, b.matrix, into: c.matrix, alpha: 1, beta: 3)
        XCTAssertEqual(c.array, [3, 6, 9, 12])
        gemm(a.matrix, b.matrix, into: c.matrix, alpha: 1, beta: 0)
        XCTAssertEqual(c.array, [0, 0, 0, 0])
    }

    func testNaivePathMatchesReference() {
        var rng = RandomGenerator(seed: 3)
        check(m: 5, n: 7, k: 9, transA: true, transB: false, alpha: 2, beta: 0.5, path: .naive, rng: &rng)
    }
}

final class AffineTests: XCTestCase {
    /// The fused dense forward pass gives the bits of the three passes it replaces: rows filled with
    /// the bias, a product accumulated onto them (beta 1), ReLU. Shapes cover the few-row path, every
    /// tail of the 16- and 8-wide panels, k blocks beyond 256 and the 512-wide column blocks.
    func testAffineEqualsBiasProductAndReLUBitForBit() {
        var rng = RandomGenerator(seed: 29)
        for (m, n, k) in [(1, 5, 3), (8, 64, 64), (9, 1, 64), (100, 64, 64), (100, 1, 64), (100, 4, 3), (37, 17, 300),
                          (13, 530, 20), (25, 24, 257), (100, 9, 512), (7, 100, 1)] {
            let x = Tensor.uniform([m, k + 2], low: -1, high: 1, using: &rng)
            let w = Tensor.uniform([n, k + 1], low: -1, high: 1, using: &rng)
            let bias = Tensor.uniform([n], low: -1, high: 1, using: &rng)
            let xm = Matrix(x.data, rows: m, columns: k, stride: k + 2), wm = Matrix(w.data, rows: n, columns: k, stride: k + 1)
            for relu in [false, true] {
                let fused = Tensor.uniform([m, n + 3], low: -1, high: 1, using: &rng), steps = Tensor([m, n + 3])
                for i in 0..<m { for j in 0..<(n + 3) { steps.data[i * (n + 3) + j] = fused.data[i * (n + 3) + j] } }
                affine(xm, weight: wm, bias: bias.data, relu: relu, into: Matrix(fused.data, rows: m, columns: n, stride: n + 3))
                for i in 0..<m { for j in 0..<n { steps.data[i * (n + 3) + j] = bias.data[j] } }
                gemm(xm, wm.transposed, into: Matrix(steps.data, rows: m, columns: n, stride: n + 3), beta: 1)
                if relu { for i in 0..<m { for j in 0..<n { steps.data[i * (n + 3) + j] = max(steps.data[i * (n + 3) + j], 0) } } }
                for i in 0..<(m * (n + 3)) where fused.data[i].bitPattern != steps.data[i].bitPattern {
                    XCTFail("m=\(m) n=\(n) k=\(k) relu=\(relu): element \(i) is \(fused.data[i]), the three passes give \(steps.data[i])")
                    break
                }
            }
        }
    }
    /// The product masked by a ReLU's output (a gradient through that ReLU) has the bits of the product
    /// followed by ReLU's backward pass, on every path: few rows, 1-4 and 5-8 last columns, wide panels,
    /// several k blocks, transposed operands, and the portable kernels; a mask of ReLU outputs (zeros
    /// included), NaN and infinities in the product's inputs.
    func testReLUMaskedProductEqualsProductThenReLUBackwardBitForBit() {
        var rng = RandomGenerator(seed: 31)
        defer { rrl_set_force_portable(0) }
        for portable in [Int32(0), 1] {
            rrl_set_force_portable(portable)
            for (m, n, k) in [(1, 5, 3), (6, 64, 64), (8, 64, 64), (9, 1, 64), (100, 64, 64), (100, 3, 64), (100, 4, 3),
                              (37, 17, 300), (13, 530, 20), (25, 24, 257), (100, 9, 512), (7, 100, 1), (64, 256, 256)] {
                for (transA, transB) in [(false, false), (true, false), (false, true)] {
                    let label = "m=\(m) n=\(n) k=\(k) tA=\(transA) tB=\(transB) portable=\(portable)"
                    let aRows = transA ? k : m, aCols = transA ? m : k, bRows = transB ? n : k, bCols = transB ? k : n
                    let aStore = Tensor.uniform([aRows, aCols + 2], low: -1, high: 1, using: &rng)
                    let bStore = Tensor.uniform([bRows, bCols + 1], low: -1, high: 1, using: &rng)
                    if m * n > 40 { aStore.data[3] = .nan; bStore.data[5] = .infinity }
                    var a = Matrix(aStore.data, rows: aRows, columns: aCols, stride: aCols + 2)
                    if transA { a = a.transposed }
                    var b = Matrix(bStore.data, rows: bRows, columns: bCols, stride: bCols + 1)
                    if transB { b = b.transposed }
                    let ld = n + 3
                    let mask = Tensor.uniform([m, ld], low: -1, high: 1, using: &rng)
                    for i in 0..<(m * ld) { mask.data[i] = max(mask.data[i], 0) }  // a ReLU's output
                    let fused = Tensor([m, ld]), steps = Tensor([m, ld])
                    for i in 0..<(m * ld) { fused.data[i] = 7; steps.data[i] = 7 }  // padding stays
                    gemmMaskedByReLU(a, b, mask: mask.data, into: Matrix(fused.data, rows: m, columns: n, stride: ld))
                    gemm(a, b, into: Matrix(steps.data, rows: m, columns: n, stride: ld))
                    for i in 0..<m { rrl_relu_backward(n, mask.data + i * ld, steps.data + i * ld, steps.data + i * ld) }
                    for i in 0..<(m * ld) where fused.data[i].bitPattern != steps.data[i].bitPattern {
                        XCTFail("\(label): element \(i) is \(fused.data[i]), the product then ReLU's backward give \(steps.data[i])")
                        break
                    }
                }
            }
        }
    }
}
