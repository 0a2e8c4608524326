import Foundation
import Inference
import NeuralNetworks
import Tensors

/// The deterministic policy as one self-contained C header: the weights as constant arrays and a
/// plain C99 step function (no allocation, no dependency beyond `<math.h>` and `<string.h>`), for
/// microcontrollers and any language with a C interface.
///
/// ```c
/// #include "policy.h"
/// float state[RRL_POLICY_STATE_WIDTH] = {0}, action[RRL_POLICY_ACTION_WIDTH];
/// rrl_policy_step(observation, reward, episode_start, 0, NULL, state, action);
/// ```
///
/// The state holds the same floats as the Swift library's (`Policy`): the recurrent state per
/// layer (h, then c for an LSTM), then the previous action as the network sees it. The weights are
/// stored transposed so that every product is a loop compilers vectorise as written (`-O2` and up;
/// `-O3 -march=native` uses the machine's widest vectors and FMA).
public enum CExport {
    public static func header(of policy: Policy) -> String {
        precondition(policy.manifest.context.observation || !policy.manifest.context.holdsLastObservation,
                     "a context with the previous observation holds the current one too")
        let m = policy.manifest, o = m.observationWidth, C = m.network.inputWidth, R = policy.recurrentStateWidth
        let P = policy.previousActionWidth, S = policy.stateWidth, discrete = m.actions.count
        let A = discrete == nil ? m.actions.width : 1
        var arrays: [String] = []
        func array(_ name: String, _ values: [Float]) -> String {
            arrays.append("static const float rrl_policy_\(name)[\(max(values.count, 1))] = {\n" + lines(values.map(literal)) + "\n};")
            return "rrl_policy_\(name)"
        }
        func doubles(_ name: String, _ values: [Double]) -> String {
            arrays.append("static const double rrl_policy_\(name)[\(max(values.count, 1))] = {\n" + lines(values.map { String(format: "%.17g", $0) }) + "\n};")
            return "rrl_policy_\(name)"
        }
        var body: [String] = []
        body.append("    RRL_POLICY_ALIGNED float x[\(max(C, 1))];")
        body.append("    int k = 0;")
        body.append("    if (episode_start) memset(state, 0, sizeof(float) * \(max(S, 1)));")
        if m.context.observation {
            if let n = m.observationNormalizer, let mean = n.mean {
                let meanName = doubles("observation_mean", mean), stdName = doubles("observation_std", n.variance.map { ($0 + 1e-8).squareRoot() })
                body.append("    for (int j = 0; j < \(o); j++) { double v = ((double)observation[j] - \(meanName)[j]) / \(stdName)[j]; x[k++] = (float)(v < -10 ? -10 : v > 10 ? 10 : v); }")
            } else {
                body.append("    for (int j = 0; j < \(o); j++) x[k++] = observation[j];")
            }
        }
        // The previous observation (as the network saw it), kept in the state after the previous action.
        if m.context.holdsLastObservation { body.append("    for (int j = 0; j < \(o); j++) x[k++] = state[\(R + P) + j];") }
        if m.context.agentID { body.append("    for (int j = 0; j < \(m.agents); j++) x[k++] = j == agent % \(m.agents) ? 1.0f : 0.0f;") }
        if P > 0 { body.append("    for (int j = 0; j < \(P); j++) x[k++] = state[\(R) + j];") }
        if m.context.lastReward {
            if let n = m.rewardNormalizer {
                body.append("    { double v = episode_start ? 0.0 : (double)reward / \(String(format: "%.17g", (n.variance[0] + 1e-8).squareRoot())); x[k++] = (float)(v < -10 ? -10 : v > 10 ? 10 : v); }")
            } else {
                body.append("    x[k++] = episode_start ? 0.0f : reward;")
            }
        }
        // The current observation becomes the next step's previous one.
        if m.context.holdsLastObservation { body.append("    memcpy(state + \(R + P), x, sizeof(float) * \(o));") }
        // Each network is a function of its own: (context x, state) -> outputs.
        var functions: [String] = []
        for (k, network) in policy.networks.enumerated() {
            var net: [String] = ["    (void)state;"]
            var input = "x", width = C
            // A dense layer from `from` (`inputs` floats) into a new array named `name`; returns the name.
            func dense(_ layer: Dense, _ name: String, from: String, inputs: Int) -> String {
                let W = array("n\(k)_\(name)_weight_t", layer.weight.value.transposedValues), b = array("n\(k)_\(name)_bias", layer.bias.value.array)
                let out = layer.outputSize
                net.append("    RRL_POLICY_ALIGNED float \(name)[\(out)];")
                net.append("    memcpy(\(name), \(b), sizeof \(name));")
                net.append("    for (int j = 0; j < \(inputs); j++) { const float u = \(from)[j]; const float *w = \(W) + j * \(out); for (int i = 0; i < \(out); i++) \(name)[i] += w[i] * u; }")
                activate(layer.activation, name, count: out)
                return name
            }
            func activate(_ activation: Activation, _ name: String, count: Int) {
                guard activation != .identity else { return }
                net.append("    for (int i = 0; i < \(count); i++) {")
                net.append("        float v = \(name)[i];")
                switch activation {
                case .identity: break
                case .relu: net.append("        \(name)[i] = v > 0 ? v : 0;")
                case .tanh: net.append("        \(name)[i] = rrl_policy_tanh(v);")
                case .sigmoid: net.append("        \(name)[i] = rrl_policy_sigmoid(v);")
                case .elu: net.append("        \(name)[i] = v > 0 ? v : expm1f(v);")
                }
                net.append("    }")
            }
            var stack = network.encoder as? RecurrentStack
            let contextEncoder = network.encoder as? ContextEncoder
            if let contextEncoder {
                // RESeL's context encoder: each input group embedded, side by side, the dense layers, then the recurrence.
                let E = contextEncoder.layout.inputEmbedding, G = contextEncoder.groups.count
                net.append("    RRL_POLICY_ALIGNED float embedded[\(E * G)];")
                var column = 0
                for (g, w) in contextEncoder.groups.enumerated() {
                    let e = dense(contextEncoder.embeddings[g], "embedding\(g)", from: "(\(input) + \(column))", inputs: w)
                    net.append("    memcpy(embedded + \(g * E), \(e), sizeof(float) * \(E));")
                    column += w
                }
                input = "embedded"; width = E * G
                for (i, layer) in contextEncoder.before.enumerated() {
                    input = dense(layer, "before\(i)", from: input, inputs: width)
                    width = layer.outputSize
                }
                stack = contextEncoder.recurrent
            }
            if let encoder = stack {
                let H = encoder.hiddenSize
                var column = 0
                for (l, layer) in encoder.layers.enumerated() {
                    let lstm = layer is LSTM
                    let w: GateWeights = lstm ? (layer as! LSTM).weights : (layer as! GRU).weights
                    let G = (lstm ? 4 : 3) * H, I = layer.inputSize
                    // Weights stored transposed ([input][gate]): the products run as axpy loops over the
                    // gates, which compilers vectorise without reassociating sums.
                    let wih = array("n\(k)_l\(l)_weight_ih_t", w.weightIH.value.transposedValues), whh = array("n\(k)_l\(l)_weight_hh_t", w.weightHH.value.transposedValues)
                    let bih = array("n\(k)_l\(l)_bias_ih", w.biasIH.value.array), bhh = array("n\(k)_l\(l)_bias_hh", w.biasHH.value.array)
                    net.append("    /* layer \(l): \(lstm ? "LSTM" : "GRU") \(I) -> \(H) (PyTorch's gates and formulas) */")
                    net.append("    RRL_POLICY_ALIGNED float gi\(l)[\(G)], gh\(l)[\(G)], y\(l)[\(H)];")
                    net.append("    float *h\(l) = state + \(column);")
                    net.append("    memcpy(gi\(l), \(bih), sizeof gi\(l));")
                    net.append("    memcpy(gh\(l), \(bhh), sizeof gh\(l));")
                    net.append("    for (int j = 0; j < \(I); j++) { const float v = \(input)[j]; const float *w = \(wih) + j * \(G); for (int g = 0; g < \(G); g++) gi\(l)[g] += w[g] * v; }")
                    net.append("    for (int j = 0; j < \(H); j++) { const float v = h\(l)[j]; const float *w = \(whh) + j * \(G); for (int g = 0; g < \(G); g++) gh\(l)[g] += w[g] * v; }")
                    if lstm {
                        net.append("    float *c\(l) = state + \(column + H);")
                        net.append("    for (int j = 0; j < \(H); j++) {")
                        net.append("        float i = rrl_policy_sigmoid(gi\(l)[j] + gh\(l)[j]), f = rrl_policy_sigmoid(gi\(l)[\(H) + j] + gh\(l)[\(H) + j]);")
                        net.append("        float g = rrl_policy_tanh(gi\(l)[\(2 * H) + j] + gh\(l)[\(2 * H) + j]), o = rrl_policy_sigmoid(gi\(l)[\(3 * H) + j] + gh\(l)[\(3 * H) + j]);")
                        net.append("        c\(l)[j] = f * c\(l)[j] + i * g;")
                        net.append("        y\(l)[j] = o * rrl_policy_tanh(c\(l)[j]);")
                        net.append("    }")
                        column += 2 * H
                    } else {
                        net.append("    for (int j = 0; j < \(H); j++) {")
                        net.append("        float r = rrl_policy_sigmoid(gi\(l)[j] + gh\(l)[j]), z = rrl_policy_sigmoid(gi\(l)[\(H) + j] + gh\(l)[\(H) + j]);")
                        net.append("        float n = rrl_policy_tanh(gi\(l)[\(2 * H) + j] + r * gh\(l)[\(2 * H) + j]);")
                        net.append("        y\(l)[j] = n + z * (h\(l)[j] - n);")
                        net.append("    }")
                        column += H
                    }
                    net.append("    memcpy(h\(l), y\(l), sizeof(float) * \(H));")
                    input = "y\(l)"
                    width = H
                }
            }
            if let contextEncoder {
                // Its activation, the layer after it, and the projection of the observation beside.
                let A = contextEncoder.layout.after, P = contextEncoder.projection == nil ? 0 : contextEncoder.layout.projection
                net.append("    RRL_POLICY_ALIGNED float activated[\(width)];")
                net.append("    memcpy(activated, \(input), sizeof activated);")
                activate(contextEncoder.activation, "activated", count: width)
                let after = dense(contextEncoder.afterLayer, "after", from: "activated", inputs: width)
                net.append("    RRL_POLICY_ALIGNED float features[\(A + P)];")
                net.append("    memcpy(features, \(after), sizeof(float) * \(A));")
                if let projection = contextEncoder.projection {
                    let q = dense(projection, "projection", from: "x", inputs: contextEncoder.groups[0])
                    net.append("    memcpy(features + \(A), \(q), sizeof(float) * \(P));")
                }
                input = "features"; width = A + P
            }
            for (d, layer) in network.head.layers.enumerated() {
                let out = (layer as! Dense).outputSize
                input = dense(layer as! Dense, "d\(d)", from: input, inputs: width)
                width = out
            }
            net.append("    memcpy(out, \(input), sizeof(float) * \(width));")
            functions.append("static inline void rrl_policy_network\(k)(const float *x, float *state, float *out) {\n" + net.joined(separator: "\n") + "\n}")
        }
        let W = m.network.outputWidth, N = policy.networks.count
        body.append("    float out[\(W)];")
        if N == 1 {
            body.append("    rrl_policy_network0(x, state, out);")
        } else {
            body.append("    switch (agent % \(N)) {")
            for k in 0..<N { body.append("    case \(k): rrl_policy_network\(k)(x, state, out); break;") }
            body.append("    default: break;")
            body.append("    }")
        }
        let out = "out"
        if let n = discrete {
            body.append("    int best = -1;")
            body.append("    for (int j = 0; j < \(n); j++) if ((!action_mask || action_mask[j] != 0) && (best < 0 || \(out)[j] > \(out)[best])) best = j;")
            body.append("    if (best < 0) best = 0;")
            if P > 0 { body.append("    for (int j = 0; j < \(n); j++) state[\(R) + j] = j == best ? 1.0f : 0.0f;") }
            body.append("    action[0] = (float)best;")
        } else {
            let low = array("action_low", m.actions.low!), high = array("action_high", m.actions.high!)
            body.append("    float a[\(A)];")
            switch m.distribution {
            case .tanhGaussian: body.append("    for (int j = 0; j < \(A); j++) a[j] = rrl_policy_tanh(\(out)[j]);")
            case .deterministic: body.append("    for (int j = 0; j < \(A); j++) a[j] = \(out)[j] < -1 ? -1 : \(out)[j] > 1 ? 1 : \(out)[j];")
            default: body.append("    for (int j = 0; j < \(A); j++) a[j] = \(out)[j];")
            }
            if P > 0 { body.append("    for (int j = 0; j < \(A); j++) state[\(R) + j] = a[j];") }
            body.append("    for (int j = 0; j < \(A); j++) {")
            body.append("        float u = a[j] < -1 ? -1 : a[j] > 1 ? 1 : a[j];")
            body.append("        float v = \(low)[j] + (u + 1) * 0.5f * (\(high)[j] - \(low)[j]);")
            body.append("        action[j] = v < \(low)[j] ? \(low)[j] : v > \(high)[j] ? \(high)[j] : v;")
            body.append("    }")
        }
        let description = "\(m.algorithm) policy: \(m.network.cell.map { "\($0.rawValue.uppercased()) \(m.network.layers)x\(m.network.hiddenSize)" } ?? "MLP"), head \(m.network.headHiddenSizes), \(discrete.map { "\($0) discrete actions" } ?? "\(A) continuous actions")"
        return """
        /* policy.h: generated by `rrl export --format c`. \(description).
         * Deterministic actions; plain C99, no allocation.
         *
         * rrl_policy_step(observation, reward, episode_start, agent, action_mask, state, action):
         *   observation    RRL_POLICY_OBSERVATION_WIDTH floats
         *   reward         the reward received for the previous action (used only when the policy's context holds it)
         *   episode_start  nonzero at an episode's first observation (the state then starts from zeros)
         *   agent          the agent's index (policies shared by several agents; else 0)
         *   action_mask    RRL_POLICY_ACTIONS floats, 1 where an action is available, or NULL (discrete policies; else ignored)
         *   state          RRL_POLICY_STATE_WIDTH floats carried from step to step (zeros to begin)
         *   action         RRL_POLICY_ACTION_WIDTH floats written: the environment's action (a discrete index as a float)
         */
        #ifndef RRL_POLICY_H
        #define RRL_POLICY_H
        #include <math.h>
        #include <string.h>

        #define RRL_POLICY_OBSERVATION_WIDTH \(o)
        #define RRL_POLICY_ACTION_WIDTH \(m.actions.width)
        #define RRL_POLICY_ACTIONS \(discrete ?? A)
        #define RRL_POLICY_STATE_WIDTH \(max(S, 1))
        #define RRL_POLICY_AGENTS \(m.agents)

        \(arrays.joined(separator: "\n"))

        /* The step's arrays start on cache lines (64 bytes) where the compiler can say so: vector loads
         * and stores then never straddle two lines, whatever the stack's address. */
        #if defined(__GNUC__)
        #define RRL_POLICY_ALIGNED __attribute__((aligned(64)))
        #else
        #define RRL_POLICY_ALIGNED
        #endif

        /* c ? a : b. GCC does not vectorise loops with float conditionals while it assumes floating-point
         * operations may trap (its default), unless the target has AVX-512's masks: elsewhere the choice is
         * made with bit masks. */
        static inline float rrl_policy_select(int c, float a, float b) {
        #if defined(__AVX512F__)
            return c ? a : b;
        #else
            unsigned ua, ub, mask = 0u - (unsigned)(c != 0);
            float r;
            memcpy(&ua, &a, sizeof ua);
            memcpy(&ub, &b, sizeof ub);
            ua = (ua & mask) | (ub & ~mask);
            memcpy(&r, &ua, sizeof r);
            return r;
        #endif
        }

        /* exp, sigmoid and tanh as RecurrentRL's own kernels compute them (Cephes' expf scheme: x = n ln2 + r,
         * a degree-6 polynomial for exp(r), 2^n built in the exponent bits; tanh from exp(-2|x|), an odd
         * polynomial below 0.3), branch-free so that compilers vectorise the loops that call them. */
        static inline float rrl_policy_exp(float x) {
            x = rrl_policy_select(x < -88.3762626647949f, -88.3762626647949f, rrl_policy_select(x > 88.3762626647949f, 88.3762626647949f, x));
            float fx = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
            float r = x - fx * 0.693359375f;
            r = r - fx * -2.12194440e-4f;
            float p = 1.9875691500e-4f;
            p = p * r + 1.3981999507e-3f;
            p = p * r + 8.3334519073e-3f;
            p = p * r + 4.1665795894e-2f;
            p = p * r + 1.6666665459e-1f;
            p = p * r + 5.0000001201e-1f;
            p = p * (r * r) + (r + 1.0f);
            int n = (int)fx, n1 = n >> 1, n2 = n - n1;
            int b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
            float s1, s2;
            memcpy(&s1, &b1, sizeof s1);
            memcpy(&s2, &b2, sizeof s2);
            return p * s1 * s2;
        }
        static inline float rrl_policy_sigmoid(float v) { return 1.0f / (1.0f + rrl_policy_exp(-v)); }
        static inline float rrl_policy_tanh(float v) {
            float a = rrl_policy_select(v < 0, -v, v), t = rrl_policy_exp(-2.0f * a), big = (1.0f - t) / (1.0f + t), a2 = a * a;
            float p = 3.59212803657248102e-3f;
            p = p * a2 - 8.86323552990219657e-3f;
            p = p * a2 + 2.18694885361552028e-2f;
            p = p * a2 - 5.39682539682539683e-2f;
            p = p * a2 + 1.33333333333333333e-1f;
            p = p * a2 - 3.33333333333333333e-1f;
            float small = p * a2 * a + a, y = rrl_policy_select(a < 0.3f, small, big);
            return rrl_policy_select(v < 0, -y, y);
        }

        \(functions.joined(separator: "\n\n"))

        static inline void rrl_policy_step(const float *observation, float reward, int episode_start, int agent, const float *action_mask,
                                           float *state, float *action) {
            (void)reward; (void)agent; (void)action_mask;
        \(body.joined(separator: "\n"))
        }

        #endif

        """
    }

    static func literal(_ v: Float) -> String {
        if v.isNaN { return "NAN" }
        if v.isInfinite { return v > 0 ? "INFINITY" : "-INFINITY" }
        return String(format: "%.9ef", v)
    }

    static func lines(_ items: [String]) -> String {
        stride(from: 0, to: items.count, by: 8).map { "    " + items[$0..<min($0 + 8, items.count)].joined(separator: ", ") + "," }.joined(separator: "\n")
    }
}
