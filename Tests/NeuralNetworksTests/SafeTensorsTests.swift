import Foundation
import NeuralNetworks
import Tensors
import TestSupport
import XCTest

final class SafeTensorsTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-safetensors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func makeNetwork(seed: UInt64) -> [NamedParameter] {
        var rng = RandomGenerator(seed: seed)
        let gru = GRU(inputSize: 3, hiddenSize: 4, using: &rng)
        let head = Dense(inputSize: 4, outputSize: 2, using: &rng)
        return gru.namedParameters(prefix: "actor.encoder.gru.") + head.namedParameters(prefix: "actor.head.")
    }

    func testRoundTripRestoresEveryWeightExactly() throws {
        let url = directory.appendingPathComponent("weights.safetensors")
        let saved = makeNetwork(seed: 1)
        try SafeTensors.write(saved, metadata: ["format": "pt", "step": "100"], to: url)
        let restored = makeNetwork(seed: 2)
        XCTAssertNotEqual(saved[0].parameter.value.array, restored[0].parameter.value.array)
        try SafeTensors.load(url, into: restored)
        for (a, b) in zip(saved, restored) { XCTAssertEqual(a.parameter.value.array, b.parameter.value.array, a.name) }
        let (tensors, metadata) = try SafeTensors.read(url)
        XCTAssertEqual(metadata["step"], "100")
        XCTAssertEqual(tensors["actor.encoder.gru.weight_ih"]?.shape, [12, 3])
        // Header length is a multiple of 8 (alignment of the data section).
        let data = try Data(contentsOf: url)
        XCTAssertEqual(data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) } % 8, 0)
    }

    func testTruncatedFileGivesClearErrorAtEveryLength() throws {
        let url = directory.appendingPathComponent("weights.safetensors")
        try SafeTensors.write(makeNetwork(seed: 1), to: url)
        let full = try Data(contentsOf: url)
        let cut = directory.appendingPathComponent("cut.safetensors")
        for length in [0, 5, 8, 20, full.count / 2, full.count - 1] {
            try full.prefix(length).write(to: cut)
            XCTAssertThrowsError(try SafeTensors.load(cut, into: makeNetwork(seed: 3)), "length \(length)") { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("truncated") || message.contains("not a valid safetensors"), message)
            }
        }
    }

    func testCorruptAndMismatchedFiles() throws {
        let garbage = directory.appendingPathComponent("garbage.safetensors")
        var bytes = Data([16, 0, 0, 0, 0, 0, 0, 0]); bytes.append(contentsOf: Array("not json at all!".utf8))
        try bytes.write(to: garbage)
        XCTAssertThrowsError(try SafeTensors.read(garbage)) { XCTAssertTrue("\($0)".contains("not JSON")) }

        let huge = directory.appendingPathComponent("huge.safetensors")
        try Data([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 1, 2]).write(to: huge)
        XCTAssertThrowsError(try SafeTensors.read(huge)) { XCTAssertTrue("\($0)".contains("implausible")) }

        XCTAssertThrowsError(try SafeTensors.read(directory.appendingPathComponent("missing.safetensors"))) {
            XCTAssertTrue("\($0)".contains("cannot read"))
        }

        // A file from a network of other sizes: nothing is changed, and the message names the tensor.
        var rng = RandomGenerator(seed: 4)
        let other = GRU(inputSize: 3, hiddenSize: 5, using: &rng)
        let url = directory.appendingPathComponent("other.safetensors")
        try SafeTensors.write(other.namedParameters(prefix: "actor.encoder.gru."), to: url)
        let target = makeNetwork(seed: 5)
        let before = target.map { $0.parameter.value.array }
        XCTAssertThrowsError(try SafeTensors.load(url, into: target)) { XCTAssertTrue("\($0)".contains("has shape [15, 3] but the network expects [12, 3]"), "\($0)") }
        XCTAssertEqual(before, target.map { $0.parameter.value.array })

        let partial = directory.appendingPathComponent("partial.safetensors")
        try SafeTensors.write(Array(makeNetwork(seed: 6).prefix(3)), to: partial)
        XCTAssertThrowsError(try SafeTensors.load(partial, into: makeNetwork(seed: 7))) {
            XCTAssertTrue("\($0)".contains("has no tensor 'actor.encoder.gru.bias_hh'"), "\($0)")
        }
    }

    /// The Python side reads what we write (skipped when python3 with safetensors is absent;
    /// .ci/run installs it).
    func testPythonSafetensorsReadsOurFile() throws {
        let url = directory.appendingPathComponent("for_python.safetensors")
        let t = Tensor([2, 3], values: [1, -2, 3.5, 4, 5, 6.25])
        try SafeTensors.write([("actor.encoder.gru.weight_ih", t)], metadata: ["source": "rrl"], to: url)
        let script = """
        import sys
        from safetensors.numpy import load_file
        from safetensors import safe_open
        d = load_file(sys.argv[1])
        w = d["actor.encoder.gru.weight_ih"]
        assert w.shape == (2, 3) and w.dtype.name == "float32", (w.shape, w.dtype)
        assert w.ravel().tolist() == [1, -2, 3.5, 4, 5, 6.25], w
        with safe_open(sys.argv[1], "np") as f: assert f.metadata() == {"source": "rrl"}
        print("ok")
        """
        let (status, output) = try runPython(script, arguments: [url.path])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("ok"), output)
    }
}
