import CKernels
import Foundation
import Tensors
import XCTest

final class VectorMathTests: XCTestCase {
    override func tearDown() { rrl_set_force_portable(0) }

    /// exp, tanh, sigmoid and ELU against libm in double precision, on both implementations,
    /// over a dense grid including the extremes and lengths that are not multiples of 8.
    func testAgainstLibmOnBothPaths() {
        var xs: [Float] = stride(from: -30, through: 30, by: 0.0137).map { Float($0) }
        xs += [0, -0, 1e-8, -1e-8, 1e-3, 0.29999, 0.3, 0.30001, -0.3, 88, -88, 100, -100, 87.5, -87.5]
        let n = xs.count
        var y = [Float](repeating: 0, count: n)
        for portable in [0, 1] {
            rrl_set_force_portable(Int32(portable))
            func check(_ name: String, _ f: (Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void,
                       _ reference: (Double) -> Double, relative: Double, absolute: Double) {
                xs.withUnsafeBufferPointer { x in y.withUnsafeMutableBufferPointer { out in f(n, x.baseAddress!, out.baseAddress!) } }
                var worst = 0.0, at: Float = 0
                for (x, v) in zip(xs, y) {
                    let r = reference(Double(x))
                    guard r.isFinite, abs(r) < Double(Float.greatestFiniteMagnitude) else { continue }
                    let e = abs(Double(v) - r) / max(abs(r), absolute / relative)
                    if e > worst { worst = e; at = x }
                }
                XCTAssertLessThanOrEqual(worst, relative, "\(name) portable=\(portable): worst relative error \(worst) at x = \(at)")
            }
            check("exp", { rrl_vexp($0, $1, $2) }, { Foundation.exp($0) }, relative: 4e-7, absolute: 1e-37)
            check("tanh", { rrl_vtanh($0, $1, $2) }, { Foundation.tanh($0) }, relative: 4e-7, absolute: 1e-37)
            check("sigmoid", { rrl_vsigmoid($0, $1, $2) }, { 1 / (1 + Foundation.exp(-$0)) }, relative: 6e-7, absolute: 1e-37)
            check("elu", { rrl_velu($0, $1, $2) }, { $0 > 0 ? $0 : Foundation.expm1($0) }, relative: 4e-7, absolute: 1e-37)
        }
        // Saturation is exact where it should be.
        var big: [Float] = [30, -30, 200, -200]
        rrl_vtanh(4, big, &big)
        XCTAssertEqual(big, [1, -1, 1, -1])
    }

    func testRandomGeneratorIsReproducibleAndRestorable() {
        var a = RandomGenerator(seed: 42), b = RandomGenerator(seed: 42)
        XCTAssertEqual((0..<5).map { _ in a.next() }, (0..<5).map { _ in b.next() })
        var c = RandomGenerator(seed: 1)
        let saved = a.state
        let expected = (0..<3).map { _ in a.normal() }
        c.state = saved
        XCTAssertEqual((0..<3).map { _ in c.normal() }, expected)
        // Normal draws have the right moments.
        var r = RandomGenerator(seed: 9)
        let draws = (0..<20000).map { _ in Double(r.normal()) }
        let mean = draws.reduce(0, +) / Double(draws.count)
        let variance = draws.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(draws.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
        let u = (0..<20000).map { _ in r.uniform() }
        XCTAssertTrue(u.allSatisfy { $0 >= 0 && $0 < 1 })
        XCTAssertEqual(Double(u.reduce(0, +)) / 20000, 0.5, accuracy: 0.01)
    }

    /// Batched normal draws: each value is Box-Muller's formula on the uniforms `normal()` would draw,
    /// within float rounding (against the formula in double), on both paths; the generator ends
    /// where `normal()` calls would leave it; the draws have a standard normal's moments and tails.
    func testFillNormalFollowsBoxMullerOnBothPaths() {
        for portable in [Int32(0), 1] {
            rrl_set_force_portable(portable)
            let n = 100_003
            var rng = RandomGenerator(seed: 17), replay = rng
            var z = [Float](repeating: 0, count: n)
            z.withUnsafeMutableBufferPointer { rng.fillNormal($0.baseAddress!, count: n) }
            var worst = 0.0
            for i in 0..<n {
                let u1 = Double(Float(1.0 - replay.uniformDouble())), u2 = Double(Float(replay.uniformDouble()))
                let reference = (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
                worst = max(worst, abs(Double(z[i]) - reference) / (1 + abs(reference)))
            }
            // (libm's cosf takes 2 pi u2 rounded to float; the vector path reduces u2 in turns first.)
            XCTAssertLessThan(worst, portable == 1 ? 2e-6 : 2.5e-7, "portable=\(portable)")
            XCTAssertEqual(rng, replay, "the generator ends where the uniform draws leave it")
            let values = z.map(Double.init)
            let mean = values.reduce(0, +) / Double(n)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
            let kurtosis = values.map { pow($0 - mean, 4) }.reduce(0, +) / Double(n) / (variance * variance)
            XCTAssertEqual(mean, 0, accuracy: 0.01, "portable=\(portable)")
            XCTAssertEqual(variance, 1, accuracy: 0.015, "portable=\(portable)")
            XCTAssertEqual(kurtosis, 3, accuracy: 0.1, "portable=\(portable)")
            // Beyond 2 and 3 standard deviations: 4.55% and 0.27% of draws.
            XCTAssertEqual(Double(z.filter { abs($0) > 2 }.count) / Double(n), 0.0455, accuracy: 0.004, "portable=\(portable)")
            XCTAssertEqual(Double(z.filter { abs($0) > 3 }.count) / Double(n), 0.0027, accuracy: 0.0008, "portable=\(portable)")
        }
    }

    func testTensorResizeKeepsStorageWhenItFits() {
        let t = Tensor([4, 8])
        let before = t.data
        t.resize([2, 8])
        XCTAssertEqual(t.data, before)
        XCTAssertEqual(t.count, 16)
        t.resize([5, 8])
        XCTAssertEqual(t.count, 40)
        XCTAssertEqual(t.capacity, 40)
        XCTAssertEqual(Shape([3, 4, 5]).leadingCount, 12)
        XCTAssertEqual(Shape([3, 4, 5]).replacingLast(with: 2), [3, 4, 2])
    }

    /// One-row products with packed weights (the inference library's acting path) against a plain
    /// double-precision sum, on both paths, for widths around the 64 and 8 blocks, with and without bias.
    func testOneRowProductsOnBothPaths() {
        var rng = RandomGenerator(seed: 7)
        for portable in [0, 1] {
            rrl_set_force_portable(Int32(portable))
            for (input, output) in [(1, 1), (3, 192), (64, 192), (64, 64), (64, 2), (5, 71), (9, 130), (17, 8), (130, 7)] {
                let w = (0..<(input * output)).map { _ in rng.normal() }, bias = (0..<output).map { _ in rng.normal() }
                let x = (0..<input).map { _ in rng.normal() }
                var packed = [Float](repeating: 0, count: input * output), y = [Float](repeating: 0, count: output)
                rrl_affine_pack(input, output, w, &packed)
                XCTAssertEqual(packed.sorted(), w.sorted(), "packing keeps every weight once")
                for withBias in [true, false] {
                    if withBias { rrl_affine_rows(1, input, output, packed, bias, x, &y, 0) } else { rrl_affine_rows(1, input, output, packed, nil, x, &y, 0) }
                    for o in 0..<output {
                        var reference = withBias ? Double(bias[o]) : 0
                        for j in 0..<input { reference += Double(w[o * input + j]) * Double(x[j]) }
                        XCTAssertEqual(Double(y[o]), reference, accuracy: 1e-4 * (1 + abs(reference)), "portable=\(portable), \(input)x\(output), output \(o)")
                    }
                }
            }
        }
        rrl_set_force_portable(0)
    }

    /// ReLU in the one-row product's last store gives the bits of the product followed by rrl_relu,
    /// on the portable, AVX2 and AVX-512 paths and in every part of the kernels (blocks of 64 and 8,
    /// the last outputs); zero crossings included (the values are centred on 0).
    func testOneRowProductsWithReLU() {
        var rng = RandomGenerator(seed: 12)
        defer { rrl_set_force_portable(0); rrl_set_allow_avx512(1) }
        for (portable, avx512) in [(Int32(1), Int32(0)), (0, 0), (0, 1)] {
            rrl_set_force_portable(portable)
            rrl_set_allow_avx512(avx512)
            var negatives = 0, positives = 0
            for (input, output) in [(3, 192), (64, 64), (64, 2), (5, 71), (9, 130), (130, 7)] {
                let w = (0..<(input * output)).map { _ in rng.normal() }, bias = (0..<output).map { _ in rng.normal() }
                let x = (0..<input).map { _ in rng.normal() }
                var packed = [Float](repeating: 0, count: input * output), fused = [Float](repeating: 0, count: output), apart = fused
                rrl_affine_pack(input, output, w, &packed)
                rrl_affine_rows(1, input, output, packed, bias, x, &fused, 1)
                rrl_affine_rows(1, input, output, packed, bias, x, &apart, 0)
                negatives += apart.filter { $0 < 0 }.count
                positives += apart.filter { $0 > 0 }.count
                rrl_relu(output, apart, &apart)
                XCTAssertEqual(fused.map(\.bitPattern), apart.map(\.bitPattern), "portable=\(portable) avx512=\(avx512) \(input)x\(output)")
            }
            XCTAssertTrue(negatives > 50 && positives > 50, "both signs are tested (\(negatives) negative, \(positives) positive)")
        }
    }

    /// One row's GRU and LSTM cell updates on both paths against PyTorch's formulas in double
    /// precision, for widths with and without a tail of fewer than 8.
    func testOneRowCellsOnBothPaths() {
        var rng = RandomGenerator(seed: 11)
        func sigmoid(_ v: Double) -> Double { 1 / (1 + Foundation.exp(-v)) }
        defer { rrl_set_force_portable(0) }
        for portable in [0, 1] {
            rrl_set_force_portable(Int32(portable))
            for H in [1, 5, 8, 13, 64] {
                let gi = (0..<(4 * H)).map { _ in 2 * rng.normal() }, gh = (0..<(4 * H)).map { _ in 2 * rng.normal() }
                let h0 = (0..<H).map { _ in rng.normal() }, c0 = (0..<H).map { _ in rng.normal() }
                var h = h0
                rrl_gru_row(H, gi, gh, &h)
                for j in 0..<H {
                    let r = sigmoid(Double(gi[j] + gh[j])), z = sigmoid(Double(gi[H + j] + gh[H + j]))
                    let n = Foundation.tanh(Double(gi[2 * H + j]) + r * Double(gh[2 * H + j]))
                    XCTAssertEqual(Double(h[j]), n + z * (Double(h0[j]) - n), accuracy: 1e-5, "GRU, portable=\(portable), H \(H), unit \(j)")
                }
                var hl = h0, c = c0
                rrl_lstm_row(H, gi, gh, &hl, &c)
                for j in 0..<H {
                    let i = sigmoid(Double(gi[j] + gh[j])), f = sigmoid(Double(gi[H + j] + gh[H + j]))
                    let g = Foundation.tanh(Double(gi[2 * H + j] + gh[2 * H + j])), o = sigmoid(Double(gi[3 * H + j] + gh[3 * H + j]))
                    let cell = f * Double(c0[j]) + i * g
                    XCTAssertEqual(Double(c[j]), cell, accuracy: 1e-5, "LSTM cell, portable=\(portable), H \(H), unit \(j)")
                    XCTAssertEqual(Double(hl[j]), o * Foundation.tanh(cell), accuracy: 1e-5, "LSTM h, portable=\(portable), H \(H), unit \(j)")
                }
            }
        }
    }

    /// With AVX-512 the one-row products add each output's terms in the same order as with AVX2:
    /// the same bits, for widths that take the paired and single blocks of 64, the blocks of 8 and the rest.
    func testOneRowProductsAreTheSameWithAVX512() throws {
        guard rrl_cpu_has_avx512f() != 0 else { throw XCTSkip("this CPU has no AVX-512") }
        var rng = RandomGenerator(seed: 8)
        defer { rrl_set_allow_avx512(1) }
        for (input, output) in [(3, 192), (64, 192), (64, 64), (67, 256), (7, 328), (64, 2), (130, 135)] {
            let w = (0..<(input * output)).map { _ in rng.normal() }, bias = (0..<output).map { _ in rng.normal() }
            let x = (0..<input).map { _ in rng.normal() }
            var packed = [Float](repeating: 0, count: input * output), wide = [Float](repeating: 0, count: output), narrow = wide
            rrl_affine_pack(input, output, w, &packed)
            rrl_set_allow_avx512(1)
            rrl_affine_rows(1, input, output, packed, bias, x, &wide, 0)
            rrl_set_allow_avx512(0)
            rrl_affine_rows(1, input, output, packed, bias, x, &narrow, 0)
            XCTAssertEqual(wide, narrow, "\(input)x\(output)")
        }
    }

    /// The cells' row steps, acting and training, give the same bits with AVX-512's 16 lanes as with
    /// AVX2's 8: widths below one vector, with a partial last vector, and past a block of 64 units.
    func testCellRowsAreTheSameWithAVX512() throws {
        guard rrl_cpu_has_avx512f() != 0 else { throw XCTSkip("this CPU has no AVX-512") }
        var rng = RandomGenerator(seed: 9)
        defer { rrl_set_allow_avx512(1) }
        func values(_ n: Int) -> [Float] { (0..<n).map { _ in 3 * rng.normal() } }
        for H in [1, 5, 8, 13, 16, 37, 64, 70, 130] {
            let gi = values(4 * H), gh = values(4 * H), h0 = values(H), c0 = values(H)
            var results: [[[UInt32]]] = []
            for allow in [Int32(1), 0] {
                rrl_set_allow_avx512(allow)
                var h = h0, hl = h0, c = c0
                rrl_gru_row(H, gi, gh, &h)
                rrl_lstm_row(H, gi, gh, &hl, &c)
                var g = Array(gi[0..<(3 * H)]), th = [Float](repeating: 0, count: H)
                rrl_gru_train_rows(1, H, &g, gh, h0, &th, nil)
                var lg = gi, lc = [Float](repeating: 0, count: H), ltc = lc, lh = lc
                rrl_lstm_train_rows(1, H, &lg, gh, c0, &lc, &ltc, &lh)
                results.append([h, hl, c, g, th, lg, lc, ltc, lh].map { $0.map(\.bitPattern) })
            }
            for (k, name) in ["GRU h", "LSTM h", "LSTM c", "GRU training gates", "GRU training h", "LSTM training gates",
                              "LSTM training c", "LSTM training tanh(c)", "LSTM training h"].enumerated() {
                XCTAssertEqual(results[0][k], results[1][k], "\(name), H \(H)")
            }
        }
    }
}


final class FiniteCheckTests: XCTestCase {
    /// Tensor.isFinite (the guard run over every parameter after every update) finds one NaN or
    /// infinity at any position: inside the four-vector blocks, in the scalar tail, first and last;
    /// the largest finite values and subnormals pass. Both kernel paths.
    func testEveryPositionAndKind() {
        defer { rrl_set_force_portable(0) }
        for portable in [Int32(0), 1] {
            rrl_set_force_portable(portable)
            for n in [1, 7, 32, 33, 70, 100] {
                let t = Tensor([n])
                for i in 0..<n { t.data[i] = i % 2 == 0 ? .greatestFiniteMagnitude : -.leastNonzeroMagnitude }
                XCTAssertTrue(t.isFinite, "n=\(n) portable=\(portable)")
                for i in 0..<n {
                    for bad in [Float.nan, .infinity, -.infinity, -Float.nan] {
                        let kept = t.data[i]
                        t.data[i] = bad
                        XCTAssertFalse(t.isFinite, "n=\(n) position \(i) value \(bad) portable=\(portable)")
                        t.data[i] = kept
                    }
                }
            }
        }
    }
}

final class CellBackwardKernelTests: XCTestCase {
    /// The GRU and LSTM backward steps in C give, bit for bit, what the Swift formulas they replaced
    /// give (written out here in the same order), on both paths and for widths with a scalar tail.
    func testSameBitsAsTheSwiftFormulas() {
        defer { rrl_set_force_portable(0) }
        var rng = RandomGenerator(seed: 41)
        func values(_ n: Int) -> [Float] { (0..<n).map { _ in rng.uniform(-1, 1) } }
        for portable in [Int32(0), 1] {
            rrl_set_force_portable(portable)
            for H in [1, 3, 8, 13, 16, 21] {
                // GRU: gates r, z, n (σ, σ, tanh outputs in (-1, 1) are enough for bit equality).
                let g = values(3 * H), ghn = values(H), hprev = values(H), dh = values(H)
                var dhp = [Float](repeating: 0, count: H), dgi = [Float](repeating: 0, count: 3 * H), dgh = dgi
                rrl_gru_backward_row(H, g, ghn, hprev, dh, &dhp, &dgi, &dgh)
                for j in 0..<H {
                    let r = g[j], z = g[H + j], n = g[2 * H + j], d = dh[j]
                    let dn = d * (1 - z), dz = d * (hprev[j] - n)
                    let dan = dn * (1 - n * n), daz = dz * z * (1 - z), dar = dan * ghn[j] * r * (1 - r)
                    let expected: [(Float, Float)] = [(dhp[j], d * z), (dgi[j], dar), (dgi[H + j], daz), (dgi[2 * H + j], dan),
                                                      (dgh[j], dar), (dgh[H + j], daz), (dgh[2 * H + j], dan * r)]
                    for (k, (got, want)) in expected.enumerated() {
                        XCTAssertEqual(got.bitPattern, want.bitPattern, "GRU H=\(H) unit \(j) output \(k) portable=\(portable)")
                    }
                }
                // LSTM: gates i, f, g, o, tanh(c), previous cell.
                let lg = values(4 * H), tc = values(H), cprev = values(H), ldh = values(H), dc = values(H)
                var dcp = [Float](repeating: 0, count: H), da = [Float](repeating: 0, count: 4 * H)
                rrl_lstm_backward_row(H, lg, tc, cprev, ldh, dc, &dcp, &da)
                for j in 0..<H {
                    let i = lg[j], f = lg[H + j], gg = lg[2 * H + j], o = lg[3 * H + j]
                    let dO = ldh[j] * tc[j], dC = dc[j] + ldh[j] * o * (1 - tc[j] * tc[j])
                    let dI = dC * gg, dG = dC * i, dF = dC * cprev[j]
                    let expected: [(Float, Float)] = [(dcp[j], dC * f), (da[j], dI * i * (1 - i)), (da[H + j], dF * f * (1 - f)),
                                                      (da[2 * H + j], dG * (1 - gg * gg)), (da[3 * H + j], dO * o * (1 - o))]
                    for (k, (got, want)) in expected.enumerated() {
                        XCTAssertEqual(got.bitPattern, want.bitPattern, "LSTM H=\(H) unit \(j) output \(k) portable=\(portable)")
                    }
                }
            }
        }
    }
}

extension CellBackwardKernelTests {
    /// A time step's rows in one call give, bit for bit, what one call per row gives: every path,
    /// widths with a partial vector, and row counts past a block of rows (8 KB of gates); the LSTM
    /// also with its cell updated in place (c the same array as c_prev).
    func testTrainingRowsInOneCallAreRowByRow() {
        defer { rrl_set_force_portable(0); rrl_set_allow_avx512(1) }
        var rng = RandomGenerator(seed: 44)
        func values(_ n: Int) -> [Float] { (0..<n).map { _ in rng.uniform(-3, 3) } }
        for (portable, avx512) in [(Int32(1), Int32(0)), (0, 0), (0, 1)] {
            rrl_set_force_portable(portable)
            rrl_set_allow_avx512(avx512)
            for (H, rows) in [(1, 3), (5, 7), (16, 50), (37, 4), (130, 9)] {
                let label = "H=\(H) rows=\(rows) portable=\(portable) avx512=\(avx512)"
                let gi = values(3 * H * rows), gh = values(3 * H * rows), hprev = values(H * rows)
                var g = gi, h = [Float](repeating: 0, count: H * rows), hn = h
                rrl_gru_train_rows(rows, H, &g, gh, hprev, &h, &hn)
                var eg = gi, eh = [Float](repeating: 0, count: H * rows)
                for b in 0..<rows {
                    eg.withUnsafeMutableBufferPointer { pg in
                        eh.withUnsafeMutableBufferPointer { ph in
                            rrl_gru_train_rows(1, H, pg.baseAddress! + b * 3 * H, Array(gh[(b * 3 * H)...]), Array(hprev[(b * H)...]), ph.baseAddress! + b * H, nil)
                        }
                    }
                }
                XCTAssertEqual(g.map(\.bitPattern), eg.map(\.bitPattern), "GRU gates " + label)
                XCTAssertEqual(h.map(\.bitPattern), eh.map(\.bitPattern), "GRU h " + label)
                // The n gate's hidden product, kept for backward: row b's gh[2H ..< 3H].
                var en: [Float] = []
                for b in 0..<rows {
                    let first: Int = b * 3 * H + 2 * H
                    en += gh[first..<(first + H)]
                }
                XCTAssertEqual(hn.map(\.bitPattern), en.map(\.bitPattern), "GRU hidden n product " + label)

                let li = values(4 * H * rows), lh = values(4 * H * rows), c0 = values(H * rows)
                var lg = li, c = c0, tc = [Float](repeating: 0, count: H * rows), hl = tc
                c.withUnsafeMutableBufferPointer { cell in  // in place, as the layer's stepping does
                    rrl_lstm_train_rows(rows, H, &lg, lh, cell.baseAddress!, cell.baseAddress!, &tc, &hl)
                }
                var elg = li, ec = c0, etc = tc, ehl = tc
                for b in 0..<rows {
                    var one = Array(elg[(b * 4 * H)..<((b + 1) * 4 * H)]), cell = [Float](repeating: 0, count: H), t = cell, hh = cell
                    rrl_lstm_train_rows(1, H, &one, Array(lh[(b * 4 * H)...]), Array(c0[(b * H)...]), &cell, &t, &hh)
                    elg.replaceSubrange((b * 4 * H)..<((b + 1) * 4 * H), with: one)
                    ec.replaceSubrange((b * H)..<((b + 1) * H), with: cell)
                    etc.replaceSubrange((b * H)..<((b + 1) * H), with: t)
                    ehl.replaceSubrange((b * H)..<((b + 1) * H), with: hh)
                }
                XCTAssertEqual(lg.map(\.bitPattern), elg.map(\.bitPattern), "LSTM gates " + label)
                XCTAssertEqual(c.map(\.bitPattern), ec.map(\.bitPattern), "LSTM c " + label)
                XCTAssertEqual(tc.map(\.bitPattern), etc.map(\.bitPattern), "LSTM tanh(c) " + label)
                XCTAssertEqual(hl.map(\.bitPattern), ehl.map(\.bitPattern), "LSTM h " + label)
            }
        }
    }

    /// The training rows of GRU and LSTM give the bits of the Swift loops and vector kernels they
    /// replaced (written out here as they were), on both paths and for widths with a partial vector.
    func testTrainingRowsKeepTheStepwiseBits() {
        defer { rrl_set_force_portable(0) }
        var rng = RandomGenerator(seed: 43)
        func values(_ n: Int) -> [Float] { (0..<n).map { _ in rng.uniform(-3, 3) } }
        for portable in [Int32(0), 1] {
            rrl_set_force_portable(portable)
            for H in [1, 3, 10, 13, 16] {
                let gi = values(3 * H), gh = values(3 * H), hprev = values(H)
                var g = gi, h = [Float](repeating: 0, count: H)
                rrl_gru_train_rows(1, H, &g, gh, hprev, &h, nil)
                var e = gi, eh = [Float](repeating: 0, count: H)
                for j in 0..<(2 * H) { e[j] += gh[j] }
                e.withUnsafeMutableBufferPointer { p in
                    VectorMath.sigmoid(p.baseAddress!, p.baseAddress!, count: 2 * H)
                    for j in 0..<H { p[2 * H + j] += p[j] * gh[2 * H + j] }
                    VectorMath.tanh(p.baseAddress! + 2 * H, p.baseAddress! + 2 * H, count: H)
                }
                for j in 0..<H { eh[j] = e[2 * H + j] + e[H + j] * (hprev[j] - e[2 * H + j]) }
                XCTAssertEqual(g.map(\.bitPattern), e.map(\.bitPattern), "GRU gates H=\(H) portable=\(portable)")
                XCTAssertEqual(h.map(\.bitPattern), eh.map(\.bitPattern), "GRU h H=\(H) portable=\(portable)")

                let li = values(4 * H), lh = values(4 * H), cprev = values(H)
                var lg = li, c = [Float](repeating: 0, count: H), tc = c, hl = c
                rrl_lstm_train_rows(1, H, &lg, lh, cprev, &c, &tc, &hl)
                var le = li, ec = [Float](repeating: 0, count: H), etc = ec, ehl = ec
                for j in 0..<(4 * H) { le[j] += lh[j] }
                le.withUnsafeMutableBufferPointer { p in
                    let b = p.baseAddress!
                    VectorMath.sigmoid(b, b, count: 2 * H)
                    VectorMath.tanh(b + 2 * H, b + 2 * H, count: H)
                    VectorMath.sigmoid(b + 3 * H, b + 3 * H, count: H)
                }
                for j in 0..<H { ec[j] = le[H + j] * cprev[j] + le[j] * le[2 * H + j] }
                ec.withUnsafeBufferPointer { src in etc.withUnsafeMutableBufferPointer { VectorMath.tanh(src.baseAddress!, $0.baseAddress!, count: H) } }
                for j in 0..<H { ehl[j] = le[3 * H + j] * etc[j] }
                XCTAssertEqual(lg.map(\.bitPattern), le.map(\.bitPattern), "LSTM gates H=\(H) portable=\(portable)")
                XCTAssertEqual(c.map(\.bitPattern), ec.map(\.bitPattern), "LSTM c H=\(H) portable=\(portable)")
                XCTAssertEqual(tc.map(\.bitPattern), etc.map(\.bitPattern), "LSTM tanh(c) H=\(H) portable=\(portable)")
                XCTAssertEqual(hl.map(\.bitPattern), ehl.map(\.bitPattern), "LSTM h H=\(H) portable=\(portable)")
            }
        }
    }
}

extension FiniteCheckTests {
    /// Column sums (the bias gradients) add each row in order, as a row-by-row loop does: same bits.
    func testColumnSumsAddRowsInOrder() {
        defer { rrl_set_force_portable(0) }
        var rng = RandomGenerator(seed: 47)
        for portable in [Int32(0), 1] {
            rrl_set_force_portable(portable)
            for (rows, width) in [(1, 1), (100, 64), (37, 7), (5, 33), (256, 256), (3, 70)] {
                let x = (0..<(rows * width)).map { _ in rng.uniform(-100, 100) }
                let start = (0..<width).map { _ in rng.uniform(-1, 1) }
                var sum = start, expected = start
                rrl_add_column_sums(rows, width, x, &sum)
                for r in 0..<rows { for j in 0..<width { expected[j] += x[r * width + j] } }
                XCTAssertEqual(sum.map(\.bitPattern), expected.map(\.bitPattern), "\(rows)x\(width) portable=\(portable)")
            }
        }
    }
}
