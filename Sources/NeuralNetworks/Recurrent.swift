import CKernels
import Tensors

/// A recurrent layer run over a whole time-major sequence.
///
/// Shapes: input `[time, batch, inputSize]`; output `[time, batch, hiddenSize]`; the state of
/// one batch row is `stateWidth` floats (GRU: `h`; LSTM: `h` then `c`), so a batch of states is
/// `[batch, stateWidth]` and a stack's state is its layers' states side by side.
///
/// Resets: where `resetMask[t, b] != 0`, the state entering step t is replaced by row b of the
/// initial state (zeros when none is given). The gradient does not flow back across a reset; it
/// goes to the initial state instead, so one call handles episode ends inside a window, several
/// episodes packed in one row, and vector environments ending at different times.
public protocol RecurrentLayer: ParameterContainer {
    var inputSize: Int { get }
    var hiddenSize: Int { get }
    /// Floats of state per batch row.
    var stateWidth: Int { get }
    /// `[time, batch, hiddenSize]`, valid after `forward`.
    var output: Tensor { get }
    /// `[batch, stateWidth]`: the state after the last step.
    var finalState: Tensor { get }
    /// `[time, batch, inputSize]`, valid after `backward`.
    var inputGradient: Tensor { get }
    /// `[batch, stateWidth]`: d(loss)/d(initial state), summed over step 0 and every reset.
    var initialStateGradient: Tensor { get }

    /// Runs the sequence. `initialState` is `batch x stateWidth` (nil: zeros); `resetMask` has
    /// `time * batch` entries (nil: no resets). `resets` says what a reset after step 0 restarts
    /// from: the initial state, or zeros (a new episode in a replayed window or a vector
    /// environment). With `keepActivations` false nothing is kept for a backward pass (burn-in,
    /// acting, evaluation).
    @discardableResult
    func forward(_ input: Tensor, initialState: Matrix?, resetMask: Tensor?, resets: ResetTarget, keepActivations: Bool) -> Tensor

    /// Back-propagates through time. `outputGradient` is `[time, batch, hiddenSize]` (nil: zero);
    /// `finalStateGradient` is `batch x stateWidth` (nil: zero). With `truncation` k > 0 the
    /// gradient carried through the state is cut every k steps (at steps k, 2k, ...).
    func backward(outputGradient: Tensor?, finalStateGradient: Matrix?, truncation: Int, needsInputGradient: Bool)

    /// After a `forward` with `keepActivations`: every step's state, `time * batch` rows (time-major)
    /// written `rowStride` floats apart, from float `column` of each: the state entering the step
    /// (`entering`, resets applied) or the state after it. One sequence pass then hands back what
    /// stepping one step at a time would (refreshing stored states).
    func copyStepStates(entering: Bool, into destination: UnsafeMutablePointer<Float>, rowStride: Int, column: Int)
}

/// Copies `rows` rows of `width` floats from `source` (packed) to rows `rowStride` apart at `destination + column`.
@inline(__always) func copyRows(_ source: UnsafePointer<Float>, rows: Int, width: Int, into destination: UnsafeMutablePointer<Float>,
                                rowStride: Int, column: Int) {
    for r in 0..<rows { copyFloats(destination + r * rowStride + column, from: source + r * width, count: width) }
}

/// What a reset after the first step restarts from.
public enum ResetTarget: Sendable {
    /// The row's initial state (its gradient then collects every restart).
    case initialState
    /// Zeros (no gradient flows anywhere from such a restart).
    case zero
}

extension RecurrentLayer {
    @discardableResult
    public func forward(_ input: Tensor, initialState: Matrix? = nil, resetMask: Tensor? = nil) -> Tensor {
        forward(input, initialState: initialState, resetMask: resetMask, resets: .initialState, keepActivations: true)
    }

    @discardableResult
    public func forward(_ input: Tensor, initialState: Matrix?, resetMask: Tensor?, keepActivations: Bool) -> Tensor {
        forward(input, initialState: initialState, resetMask: resetMask, resets: .initialState, keepActivations: keepActivations)
    }

    public func backward(outputGradient: Tensor?, finalStateGradient: Matrix? = nil, truncation: Int = 0) {
        backward(outputGradient: outputGradient, finalStateGradient: finalStateGradient, truncation: truncation, needsInputGradient: true)
    }
}

/// Shared bookkeeping of GRU and LSTM: shapes, the state entering each step, and where the
/// state gradient goes at resets and truncation points.
struct SequenceGeometry {
    var time = 0, batch = 0
    var resetMask: UnsafeMutablePointer<Float>?
    var resets = ResetTarget.initialState

    mutating func set(input: Tensor, inputSize: Int, resetMask: Tensor?, resets: ResetTarget, layer: String) {
        self.resets = resets
        precondition(input.shape.rank == 3 && input.shape[2] == inputSize,
                     "\(layer) expects input [time, batch, \(inputSize)], got \(input.shape)")
        time = input.shape[0]
        batch = input.shape[1]
        if let resetMask {
            precondition(resetMask.count == time * batch, "\(layer): reset mask needs time*batch = \(time * batch) entries, got \(resetMask.count)")
        }
        self.resetMask = resetMask?.data
    }

    /// True when row b restarts from the initial state at step t.
    @inline(__always) func restarts(_ t: Int, _ b: Int) -> Bool {
        t == 0 || (resetMask.map { $0[t * batch + b] != 0 } ?? false)
    }

    /// True when any row restarts at step t.
    @inline(__always) func anyRestart(_ t: Int) -> Bool {
        if t == 0 { return true }
        guard let mask = resetMask else { return false }
        for b in 0..<batch where mask[t * batch + b] != 0 { return true }
        return false
    }

    /// Overwrites the rows of `states` (`batch x width`) that restart at step t with columns
    /// `column..<column + width` of the initial state (zeros when there is none).
    func restartRows(at t: Int, from initialState: Matrix?, column: Int, width: Int, into states: UnsafeMutablePointer<Float>) {
        guard anyRestart(t) else { return }
        let source = t == 0 || resets == .initialState ? initialState : nil
        for b in 0..<batch where restarts(t, b) {
            copyStateRow(source, row: b, column: column, width: width, into: states + b * width)
        }
    }

    /// Loads columns `column..<column + width` of a state gradient (zeros when nil) into `batch x width`.
    func loadStateGradient(_ gradient: Matrix?, column: Int, width: Int, into out: UnsafeMutablePointer<Float>) {
        for b in 0..<batch { copyStateRow(gradient, row: b, column: column, width: width, into: out + b * width) }
    }

    /// The gradient of the state entering step t (`batch x width`): rows that restarted from the
    /// initial state send it to columns `column..<column + width` of `initialStateGradient`; it is
    /// cleared at every restart, and at
    /// truncation points (steps k, 2k, ...), so nothing flows further back.
    func routeStateGradient(at t: Int, truncation: Int, gradient: UnsafeMutablePointer<Float>, width: Int,
                            into initialStateGradient: Tensor, column: Int) {
        let cut = truncation > 0 && t % truncation == 0
        let stride = initialStateGradient.shape.last
        for b in 0..<batch {
            let row = gradient + b * width
            let restarted = restarts(t, b)
            if restarted && (t == 0 || resets == .initialState) {
                let destination = initialStateGradient.data + b * stride + column
                for j in 0..<width { destination[j] += row[j] }
            }
            if restarted || cut { row.update(repeating: 0, count: width) }
        }
    }
}

/// The parameters of a GRU or LSTM layer in PyTorch's layout (`weight_ih` `[G, I]`, `weight_hh`
/// `[G, H]`, `bias_ih` and `bias_hh` `[G]`, with G = 3H or 4H gate rows), and the products that
/// involve them.
public struct GateWeights {
    public let weightIH: Parameter, weightHH: Parameter, biasIH: Parameter, biasHH: Parameter
    /// W_hh^T, refreshed at the start of every forward pass.
    let transposedHH = Tensor([0])

    /// Every weight and bias uniform in ±1/sqrt(hiddenSize), as PyTorch.
    init(gates: Int, inputSize: Int, hiddenSize: Int, using rng: inout RandomGenerator) {
        let k = 1 / Float(hiddenSize).squareRoot()
        weightIH = Parameter([gates, inputSize], uniformBound: k, using: &rng)
        weightHH = Parameter([gates, hiddenSize], uniformBound: k, using: &rng)
        biasIH = Parameter([gates], uniformBound: k, using: &rng)
        biasHH = Parameter([gates], uniformBound: k, using: &rng)
    }

    func namedParameters(prefix: String) -> [NamedParameter] {
        [(prefix + "weight_ih", weightIH), (prefix + "weight_hh", weightHH), (prefix + "bias_ih", biasIH), (prefix + "bias_hh", biasHH)]
    }

    /// gates = x W_ih^T + b_ih for every row of the sequence at once (`[time * batch, G]`).
    func inputProducts(_ input: Tensor, into gates: Tensor) {
        affine(input.matrix, weight: weightIH.value.matrix, bias: biasIH.value.data, into: gates.matrix)
    }

    /// Passes of more than one step multiply by a copy of W_hh^T; for one step (acting) the copy
    /// would cost as much as the product.
    @inline(__always) static func usesCopy(steps: Int) -> Bool { steps > 1 }

    /// Copies W_hh^T (`[H, G]`) for the steps of one forward pass: with B not transposed, the
    /// small-batch product keeps whole rows of gates in registers instead of reducing dot products.
    func prepareHiddenProducts(steps: Int) {
        guard GateWeights.usesCopy(steps: steps) else { return }
        let g = weightHH.shape[0], hidden = weightHH.shape[1]
        transposedHH.resize(Shape(d0: hidden, d1: g))
        rrl_transpose(g, hidden, weightHH.value.data, hidden, transposedHH.data, g)
    }

    /// out = h W_hh^T + b_hh for one step (`h` is `batch x H`, `out` is `[batch, G]`), from the
    /// copy made by `prepareHiddenProducts(steps:)` for a pass of `steps` steps when there is one.
    func hiddenProducts(_ h: UnsafeMutablePointer<Float>, steps: Int, into out: Tensor) {
        let hidden = weightHH.shape[1], batch = out.shape[0]
        let right = GateWeights.usesCopy(steps: steps) ? transposedHH.matrix : weightHH.value.matrix.transposed
        gemm(Matrix(h, rows: batch, columns: hidden, stride: hidden), right, bias: biasHH.value.data, into: out.matrix)
    }

    /// The time-independent part of backward, batched over all steps: weight and bias gradients
    /// from the gate gradients (`[time * batch, G]`; GRU's input and hidden gate gradients differ,
    /// LSTM's are one tensor), and optionally d(input).
    func accumulateGradients(inputGates: Tensor, hiddenGates: Tensor, previousHidden: Tensor, input: Tensor,
                             inputGradient: Tensor, needsInputGradient: Bool) {
        let rows = input.shape.leadingCount, g = weightIH.shape[0], inputSize = weightIH.shape[1]
        gemm(hiddenGates.matrix.transposed, previousHidden.matrix, into: weightHH.gradient.matrix, beta: 1)
        accumulateColumnSums(hiddenGates.data, rows: rows, width: g, into: biasHH.gradient.data)
        let x = Matrix(input.data, rows: rows, columns: inputSize, stride: inputSize)
        gemm(inputGates.matrix.transposed, x, into: weightIH.gradient.matrix, beta: 1)
        accumulateColumnSums(inputGates.data, rows: rows, width: g, into: biasIH.gradient.data)
        if needsInputGradient {
            gemm(inputGates.matrix, weightIH.value.matrix, into: Matrix(inputGradient.data, rows: rows, columns: inputSize, stride: inputSize))
        }
    }
}

// MARK: - GRU

/// A gated recurrent unit with PyTorch's equations, gate order (r, z, n) and weight layout:
///
///     r = σ(W_ir x + b_ir + W_hr h + b_hr)
///     z = σ(W_iz x + b_iz + W_hz h + b_hz)
///     n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
///     h' = (1 - z) ⊙ n + z ⊙ h
///
/// `weight_ih` is `[3H, I]`, `weight_hh` `[3H, H]`, `bias_ih` and `bias_hh` `[3H]`, so weights
/// can be exchanged with `torch.nn.GRU`. The input products of all steps are one matrix product;
/// only `h W_hh^T` runs per step. Cost per step: 2·B·3H·H FLOPs forward, twice that backward.
public final class GRU: RecurrentLayer {
    public let inputSize: Int
    public let hiddenSize: Int
    public var stateWidth: Int { hiddenSize }
    public let weights: GateWeights

    public let output = Tensor([0, 0, 0])
    public let finalState = Tensor([0, 0])
    public let inputGradient = Tensor([0, 0, 0])
    public let initialStateGradient = Tensor([0, 0])

    // (Read at every time step: without dynamic exclusivity checks.)
    @exclusivity(unchecked) private var geometry = SequenceGeometry()
    @exclusivity(unchecked) private var input: Tensor?
    @exclusivity(unchecked) private var hasActivations = false
    /// `[time * batch, 3H]`: input products, then the activated gates (r, z, n).
    private let gates = Tensor([0, 0])
    /// `[time * batch, H]`: W_hn h + b_hn at each step (needed for dr).
    private let hiddenCandidate = Tensor([0, 0])
    /// `[time * batch, H]`: the state that entered each step.
    private let previousStates = Tensor([0, 0])
    private let stepHidden = Tensor([0, 0])   // [batch, 3H]
    private let stepState = Tensor([0, 0])    // [batch, H] (no-gradient forward)
    private let inputGateGradient = Tensor([0, 0])   // [time * batch, 3H]
    private let hiddenGateGradient = Tensor([0, 0])  // [time * batch, 3H]
    private let stateGradient = Tensor([0, 0])       // [batch, H]
    private let previousStateGradient = Tensor([0, 0])

    /// Every weight and bias uniform in ±1/sqrt(hiddenSize), as PyTorch.
    public init(inputSize: Int, hiddenSize: Int, using rng: inout RandomGenerator) {
        precondition(inputSize > 0 && hiddenSize > 0, "GRU sizes must be positive")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        weights = GateWeights(gates: 3 * hiddenSize, inputSize: inputSize, hiddenSize: hiddenSize, using: &rng)
    }

    public func namedParameters(prefix: String) -> [NamedParameter] { weights.namedParameters(prefix: prefix) }

    @discardableResult
    public func forward(_ input: Tensor, initialState: Matrix?, resetMask: Tensor?, resets: ResetTarget, keepActivations: Bool) -> Tensor {
        geometry.set(input: input, inputSize: inputSize, resetMask: resetMask, resets: resets, layer: "GRU")
        let T = geometry.time, B = geometry.batch, H = hiddenSize, G = 3 * H
        if let s = initialState { precondition(s.rows == B && s.columns == H && !s.isTransposed, "GRU initial state must be [\(B), \(H)]") }
        self.input = input
        hasActivations = keepActivations
        output.resize(Shape(d0: T, d1: B, d2: H))
        finalState.resize(Shape(d0: B, d1: H))
        gates.resize(Shape(d0: T * B, d1: G))
        stepHidden.resize(Shape(d0: B, d1: G))
        if keepActivations {
            hiddenCandidate.resize(Shape(d0: T * B, d1: H))
            previousStates.resize(Shape(d0: T * B, d1: H))
        } else {
            stepState.resize(Shape(d0: B, d1: H))
        }
        weights.inputProducts(input, into: gates)  // all steps at once: [T*B, I] x [I, 3H]
        weights.prepareHiddenProducts(steps: T)
        // Storage read once (each read of a tensor's storage from this module is checked for
        // exclusive access, and the loop runs once per time step).
        let out = output.data, gateData = gates.data, stepData = stepHidden.data
        let previous = (keepActivations ? previousStates : stepState).data, candidate = keepActivations ? hiddenCandidate.data : nil
        for t in 0..<T {
            // The state entering step t (kept activations: step t's rows; otherwise one step's buffer):
            // the previous output, or the initial state where a row restarts.
            let at = keepActivations ? t * B * H : 0, hp = previous + at
            if t > 0 { hp.update(from: out + (t - 1) * B * H, count: B * H) }
            geometry.restartRows(at: t, from: initialState, column: 0, width: H, into: hp)
            weights.hiddenProducts(hp, steps: T, into: stepHidden)
            // r = σ(gi_r + gh_r), z = σ(gi_z + gh_z), n = tanh(gi_n + r gh_n), h = n + z (h_prev - n);
            // the gates keep r, z, n, and the hidden candidate W_hn h + b_hn, for backward.
            rrl_gru_train_rows(B, H, gateData + t * B * G, stepData, hp, out + t * B * H, candidate.map { $0 + at })
        }
        if T > 0 {
            finalState.data.update(from: output.data + (T - 1) * B * H, count: B * H)
        } else {
            for b in 0..<B { copyStateRow(initialState, row: b, column: 0, width: H, into: finalState.data + b * H) }
        }
        return output
    }

    public func copyStepStates(entering: Bool, into destination: UnsafeMutablePointer<Float>, rowStride: Int, column: Int) {
        precondition(hasActivations, "GRU.copyStepStates needs a preceding forward with keepActivations")
        let rows = geometry.time * geometry.batch, H = hiddenSize
        copyRows((entering ? previousStates : output).data, rows: rows, width: H, into: destination, rowStride: rowStride, column: column)
    }

    public func backward(outputGradient: Tensor?, finalStateGradient: Matrix?, truncation: Int, needsInputGradient: Bool) {
        guard let input, hasActivations else { preconditionFailure("GRU.backward needs a preceding forward with keepActivations") }
        let T = geometry.time, B = geometry.batch, H = hiddenSize, G = 3 * H
        if let dY = outputGradient { precondition(dY.shape == output.shape, "GRU output gradient must be \(output.shape), got \(dY.shape)") }
        inputGateGradient.resize(Shape(d0: T * B, d1: G))
        hiddenGateGradient.resize(Shape(d0: T * B, d1: G))
        stateGradient.resize(Shape(d0: B, d1: H))
        previousStateGradient.resize(Shape(d0: B, d1: H))
        initialStateGradient.resize(Shape(d0: B, d1: H))
        initialStateGradient.zero()
        inputGradient.resize(input.shape)

        var dh = stateGradient.data, dhp = previousStateGradient.data
        geometry.loadStateGradient(finalStateGradient, column: 0, width: H, into: dh)
        let whh = weights.weightHH.value.matrix
        // Storage read once, as in forward.
        let dYData = outputGradient?.data, gateData = gates.data, candidate = hiddenCandidate.data, previous = previousStates.data
        let dGi = inputGateGradient.data, dGh = hiddenGateGradient.data
        var t = T - 1
        while t >= 0 {
            if let dYData {
                let src = dYData + t * B * H
                for i in 0..<(B * H) { dh[i] += src[i] }
            }
            for b in 0..<B {
                // dn = dh (1 - z), dz = dh (h_prev - n), dh_prev = dh z; through the activations:
                // dan = dn (1 - n²), daz = dz z (1 - z), dar = dan (W_hn h + b_hn) r (1 - r);
                // the hidden n gate's gradient is dan r.
                let row = t * B + b
                rrl_gru_backward_row(H, gateData + row * G, candidate + row * H, previous + row * H,
                                     dh + b * H, dhp + b * H, dGi + row * G, dGh + row * G)
            }
            // dh_prev += dGh[t] W_hh: [B, 3H] x [3H, H].
            gemm(Matrix(dGh + t * B * G, rows: B, columns: G, stride: G), whh,
                 into: Matrix(dhp, rows: B, columns: H, stride: H), beta: 1)
            geometry.routeStateGradient(at: t, truncation: truncation, gradient: dhp, width: H, into: initialStateGradient, column: 0)
            swap(&dh, &dhp)
            t -= 1
        }
        weights.accumulateGradients(inputGates: inputGateGradient, hiddenGates: hiddenGateGradient, previousHidden: previousStates,
                                    input: input, inputGradient: inputGradient, needsInputGradient: needsInputGradient)
    }
}

// MARK: - LSTM

/// A long short-term memory layer with PyTorch's equations, gate order (i, f, g, o) and weights:
///
///     i = σ(W_ii x + b_ii + W_hi h + b_hi),  f = σ(...),  g = tanh(...),  o = σ(...)
///     c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')
///
/// `weight_ih` is `[4H, I]`, `weight_hh` `[4H, H]`, biases `[4H]`. The state of a batch row is
/// `[h | c]` (2H floats).
public final class LSTM: RecurrentLayer {
    public let inputSize: Int
    public let hiddenSize: Int
    public var stateWidth: Int { 2 * hiddenSize }
    public let weights: GateWeights

    public let output = Tensor([0, 0, 0])
    public let finalState = Tensor([0, 0])
    public let inputGradient = Tensor([0, 0, 0])
    public let initialStateGradient = Tensor([0, 0])

    // (Read at every time step: without dynamic exclusivity checks.)
    @exclusivity(unchecked) private var geometry = SequenceGeometry()
    @exclusivity(unchecked) private var input: Tensor?
    @exclusivity(unchecked) private var hasActivations = false
    /// `[time * batch, 4H]`: input products, then the activated gates (i, f, g, o).
    private let gates = Tensor([0, 0])
    private let cells = Tensor([0, 0])            // [time * batch, H]: c after each step
    private let cellTanh = Tensor([0, 0])         // [time * batch, H]: tanh(c)
    private let previousHidden = Tensor([0, 0])   // [time * batch, H]
    private let previousCells = Tensor([0, 0])    // [time * batch, H]
    private let stepHidden = Tensor([0, 0])       // [batch, 4H]
    private let stepH = Tensor([0, 0])            // [batch, H] (no-gradient forward)
    private let stepC = Tensor([0, 0])            // [batch, H]
    private let stepTanh = Tensor([0, 0])         // [batch, H]
    private let gateGradient = Tensor([0, 0])     // [time * batch, 4H]
    private let hGradient = Tensor([0, 0]), cGradient = Tensor([0, 0])
    private let hPrevGradient = Tensor([0, 0]), cPrevGradient = Tensor([0, 0])

    /// Every weight and bias uniform in ±1/sqrt(hiddenSize), as PyTorch.
    public init(inputSize: Int, hiddenSize: Int, using rng: inout RandomGenerator) {
        precondition(inputSize > 0 && hiddenSize > 0, "LSTM sizes must be positive")
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        weights = GateWeights(gates: 4 * hiddenSize, inputSize: inputSize, hiddenSize: hiddenSize, using: &rng)
    }

    public func namedParameters(prefix: String) -> [NamedParameter] { weights.namedParameters(prefix: prefix) }

    @discardableResult
    public func forward(_ input: Tensor, initialState: Matrix?, resetMask: Tensor?, resets: ResetTarget, keepActivations: Bool) -> Tensor {
        geometry.set(input: input, inputSize: inputSize, resetMask: resetMask, resets: resets, layer: "LSTM")
        let T = geometry.time, B = geometry.batch, H = hiddenSize, G = 4 * H
        if let s = initialState { precondition(s.rows == B && s.columns == 2 * H && !s.isTransposed, "LSTM initial state must be [\(B), \(2 * H)]") }
        self.input = input
        hasActivations = keepActivations
        output.resize(Shape(d0: T, d1: B, d2: H))
        finalState.resize(Shape(d0: B, d1: 2 * H))
        gates.resize(Shape(d0: T * B, d1: G))
        stepHidden.resize(Shape(d0: B, d1: G))
        if keepActivations {
            let shape = Shape(d0: T * B, d1: H)
            cells.resize(shape); cellTanh.resize(shape); previousHidden.resize(shape); previousCells.resize(shape)
        } else {
            let shape = Shape(d0: B, d1: H)
            stepH.resize(shape); stepC.resize(shape); stepTanh.resize(shape)
        }
        weights.inputProducts(input, into: gates)  // all steps at once: [T*B, I] x [I, 4H]
        weights.prepareHiddenProducts(steps: T)
        // Storage read once, as in GRU.forward.
        let out = output.data, gateData = gates.data, stepData = stepHidden.data
        let hidden = (keepActivations ? previousHidden : stepH).data, cellsIn = (keepActivations ? previousCells : stepC).data
        let cellsOut = (keepActivations ? cells : stepC).data, tanhs = (keepActivations ? cellTanh : stepTanh).data
        for t in 0..<T {
            // Kept activations: step t's rows; otherwise one step's buffers, c' overwriting c row by
            // row after use.
            let at = keepActivations ? t * B * H : 0
            let hp = hidden + at, cp = cellsIn + at, cNew = cellsOut + at, tanhC = tanhs + at
            if t > 0 {
                hp.update(from: out + (t - 1) * B * H, count: B * H)
                if keepActivations { cp.update(from: cellsOut + (t - 1) * B * H, count: B * H) }
            }
            geometry.restartRows(at: t, from: initialState, column: 0, width: H, into: hp)
            geometry.restartRows(at: t, from: initialState, column: H, width: H, into: cp)
            weights.hiddenProducts(hp, steps: T, into: stepHidden)
            // i, f, o = σ(gi + gh), g = tanh(gi + gh), c = f c_prev + i g, h = o tanh(c); the gates keep
            // i, f, g, o for backward.
            rrl_lstm_train_rows(B, H, gateData + t * B * G, stepData, cp, cNew, tanhC, out + t * B * H)
        }
        for b in 0..<B {
            let row = finalState.data + b * 2 * H
            if T > 0 {
                row.update(from: output.data + ((T - 1) * B + b) * H, count: H)
                let lastC = keepActivations ? cells.data + ((T - 1) * B + b) * H : stepC.data + b * H
                (row + H).update(from: lastC, count: H)
            } else {
                copyStateRow(initialState, row: b, column: 0, width: 2 * H, into: row)
            }
        }
        return output
    }

    public func copyStepStates(entering: Bool, into destination: UnsafeMutablePointer<Float>, rowStride: Int, column: Int) {
        precondition(hasActivations, "LSTM.copyStepStates needs a preceding forward with keepActivations")
        let rows = geometry.time * geometry.batch, H = hiddenSize
        copyRows((entering ? previousHidden : output).data, rows: rows, width: H, into: destination, rowStride: rowStride, column: column)
        copyRows((entering ? previousCells : cells).data, rows: rows, width: H, into: destination, rowStride: rowStride, column: column + H)
    }

    public func backward(outputGradient: Tensor?, finalStateGradient: Matrix?, truncation: Int, needsInputGradient: Bool) {
        guard let input, hasActivations else { preconditionFailure("LSTM.backward needs a preceding forward with keepActivations") }
        let T = geometry.time, B = geometry.batch, H = hiddenSize, G = 4 * H
        if let dY = outputGradient { precondition(dY.shape == output.shape, "LSTM output gradient must be \(output.shape), got \(dY.shape)") }
        gateGradient.resize(Shape(d0: T * B, d1: G))
        let stateShape = Shape(d0: B, d1: H)
        hGradient.resize(stateShape); cGradient.resize(stateShape); hPrevGradient.resize(stateShape); cPrevGradient.resize(stateShape)
        initialStateGradient.resize(Shape(d0: B, d1: 2 * H))
        initialStateGradient.zero()
        inputGradient.resize(input.shape)

        var dh = hGradient.data, dc = cGradient.data, dhp = hPrevGradient.data, dcp = cPrevGradient.data
        geometry.loadStateGradient(finalStateGradient, column: 0, width: H, into: dh)
        geometry.loadStateGradient(finalStateGradient, column: H, width: H, into: dc)
        let whh = weights.weightHH.value.matrix
        // Storage read once, as in forward.
        let dYData = outputGradient?.data, gateData = gates.data, tanhs = cellTanh.data, cellsIn = previousCells.data
        let dG = gateGradient.data
        var t = T - 1
        while t >= 0 {
            if let dYData {
                let src = dYData + t * B * H
                for k in 0..<(B * H) { dh[k] += src[k] }
            }
            for b in 0..<B {
                // dO = dh tanh(c), dC = dc + dh o (1 - tanh²(c)), dc_prev = dC f; the gates' gradients
                // through σ and tanh: dC g i (1 - i), dC c_prev f (1 - f), dC i (1 - g²), dO o (1 - o).
                let row = t * B + b
                rrl_lstm_backward_row(H, gateData + row * G, tanhs + row * H, cellsIn + row * H,
                                      dh + b * H, dc + b * H, dcp + b * H, dG + row * G)
            }
            gemm(Matrix(dG + t * B * G, rows: B, columns: G, stride: G), whh,
                 into: Matrix(dhp, rows: B, columns: H, stride: H))
            geometry.routeStateGradient(at: t, truncation: truncation, gradient: dhp, width: H, into: initialStateGradient, column: 0)
            geometry.routeStateGradient(at: t, truncation: truncation, gradient: dcp, width: H, into: initialStateGradient, column: H)
            swap(&dh, &dhp)
            swap(&dc, &dcp)
            t -= 1
        }
        weights.accumulateGradients(inputGates: gateGradient, hiddenGates: gateGradient, previousHidden: previousHidden,
                                    input: input, inputGradient: inputGradient, needsInputGradient: needsInputGradient)
    }
}

// MARK: - Stack

/// Recurrent layers run one after the other (layer l+1 reads layer l's output sequence), with
/// the layers' states side by side in one `[batch, stateWidth]` row per batch element.
/// Parameter names follow `torch.nn.GRU(num_layers:)`'s suffixes: `weight_ih_l0`, `weight_ih_l1`, ...
public final class RecurrentStack: RecurrentLayer {
    public let layers: [any RecurrentLayer]
    public let stateWidth: Int
    public let finalState = Tensor([0, 0])
    public let initialStateGradient = Tensor([0, 0])

    public init(_ layers: [any RecurrentLayer]) {
        precondition(!layers.isEmpty, "RecurrentStack needs at least one layer")
        for (a, b) in zip(layers, layers.dropFirst()) {
            precondition(a.hiddenSize == b.inputSize, "RecurrentStack: a layer of hidden size \(a.hiddenSize) feeds one of input \(b.inputSize)")
        }
        self.layers = layers
        stateWidth = layers.reduce(0) { $0 + $1.stateWidth }
    }

    /// `count` GRU or LSTM layers of the same hidden size.
    public convenience init(cell: CellKind, inputSize: Int, hiddenSize: Int, layers count: Int, using rng: inout RandomGenerator) {
        precondition(count > 0, "a recurrent stack needs at least one layer")
        var layers: [any RecurrentLayer] = []
        for l in 0..<count {
            layers.append(cell.makeLayer(inputSize: l == 0 ? inputSize : hiddenSize, hiddenSize: hiddenSize, using: &rng))
        }
        self.init(layers)
    }

    public var inputSize: Int { layers[0].inputSize }
    public var hiddenSize: Int { layers[layers.count - 1].hiddenSize }
    public var output: Tensor { layers[layers.count - 1].output }
    public var inputGradient: Tensor { layers[0].inputGradient }

    public func namedParameters(prefix: String) -> [NamedParameter] {
        layers.enumerated().flatMap { l, layer in
            layer.namedParameters(prefix: "").map { (prefix + $0.name + "_l\(l)", $0.parameter) }
        }
    }

    @discardableResult
    public func forward(_ input: Tensor, initialState: Matrix?, resetMask: Tensor?, resets: ResetTarget, keepActivations: Bool) -> Tensor {
        let B = input.shape.rank == 3 ? input.shape[1] : 0
        finalState.resize(Shape(d0: B, d1: stateWidth))
        var x = input, column = 0
        for layer in layers {
            let slice = initialState.map { $0.columns(column..<(column + layer.stateWidth)) }
            x = layer.forward(x, initialState: slice, resetMask: resetMask, resets: resets, keepActivations: keepActivations)
            for b in 0..<B {
                (finalState.data + b * stateWidth + column).update(from: layer.finalState.data + b * layer.stateWidth, count: layer.stateWidth)
            }
            column += layer.stateWidth
        }
        return x
    }

    public func copyStepStates(entering: Bool, into destination: UnsafeMutablePointer<Float>, rowStride: Int, column: Int) {
        var at = column
        for layer in layers {
            layer.copyStepStates(entering: entering, into: destination, rowStride: rowStride, column: at)
            at += layer.stateWidth
        }
    }

    public func backward(outputGradient: Tensor?, finalStateGradient: Matrix?, truncation: Int, needsInputGradient: Bool) {
        let B = finalState.shape[0]
        initialStateGradient.resize(Shape(d0: B, d1: stateWidth))
        var column = stateWidth
        var gradient = outputGradient
        var l = layers.count - 1
        while l >= 0 {
            let layer = layers[l]
            column -= layer.stateWidth
            let slice = finalStateGradient.map { $0.columns(column..<(column + layer.stateWidth)) }
            layer.backward(outputGradient: gradient, finalStateGradient: slice, truncation: truncation,
                           needsInputGradient: l > 0 || needsInputGradient)
            for b in 0..<B {
                (initialStateGradient.data + b * stateWidth + column).update(from: layer.initialStateGradient.data + b * layer.stateWidth, count: layer.stateWidth)
            }
            gradient = layer.inputGradient
            l -= 1
        }
    }
}

/// Which recurrent cell a network uses.
public enum CellKind: String, CaseIterable, Codable, Sendable {
    case gru, lstm

    /// A new layer of this kind.
    public func makeLayer(inputSize: Int, hiddenSize: Int, using rng: inout RandomGenerator) -> any RecurrentLayer {
        switch self {
        case .gru: return GRU(inputSize: inputSize, hiddenSize: hiddenSize, using: &rng)
        case .lstm: return LSTM(inputSize: inputSize, hiddenSize: hiddenSize, using: &rng)
        }
    }
}
