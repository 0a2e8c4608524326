import Foundation
import Tensors
@testable import Training
import TestSupport
import XCTest

final class TensorBoardTests: XCTestCase {
    func rows() -> [MetricsRow] {
        (1...3).map { k in
            var row = MetricsRow()
            row["step"] = Double(1000 * k)
            row["episodes"] = Double(5 * k)
            row["eval_return_mean"] = -100.5 / Double(k)
            row["critic_loss"] = 0.25 * Double(k)
            row["probe_accuracy"] = .nan
            return row
        }
    }

    /// The framing: every record's length and data carry the masked CRC-32C that TensorFlow's
    /// reader checks (CRC-32C checked against the standard test vector first).
    func testRecordsAreFramedWithMaskedChecksums() throws {
        XCTAssertEqual(crc32c(Data("123456789".utf8)), 0xE306_9283)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-tb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let writer = try TensorBoardWriter(directory: folder)
        for row in rows() { try writer.write(row, columns: MetricsRow.columns) }
        let data = [UInt8](try Data(contentsOf: writer.url))
        var offset = 0, records = 0
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(data[at + $1]) << (8 * UInt32($1)) } }
        while offset < data.count {
            let lengthBytes = Array(data[offset..<offset + 8])
            let length = lengthBytes.enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            XCTAssertEqual(u32(offset + 8), TensorBoardWriter.maskedCRC(lengthBytes))
            let body = Array(data[offset + 12..<offset + 12 + length])
            XCTAssertEqual(u32(offset + 12 + length), TensorBoardWriter.maskedCRC(body))
            offset += 16 + length
            records += 1
        }
        XCTAssertEqual(offset, data.count)
        XCTAssertEqual(records, 4, "the file-version event, then one event per row")
    }

    /// The tensorboard Python package reads our event file back: every scalar at its step, NaN cells
    /// left out (skipped when python3 with tensorboard is absent; .ci/run installs it).
    func testTensorBoardReadsOurEvents() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("rrl-tb-\(UUID().uuidString)")
        let run = try RunFolder(path: folder.path, overwrite: false)
        defer { try? FileManager.default.removeItem(at: folder) }
        try run.startMetrics()
        for row in rows() { try run.append(row) }
        let script = """
        import sys
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        acc = EventAccumulator(sys.argv[1]); acc.Reload()
        tags = sorted(acc.Tags()["scalars"])
        assert tags == ["critic_loss", "episodes", "eval_return_mean"], tags
        got = [(e.step, round(e.value, 4)) for e in acc.Scalars("eval_return_mean")]
        assert got == [(1000, -100.5), (2000, -50.25), (3000, -33.5)], got
        assert [(e.step, e.value) for e in acc.Scalars("critic_loss")] == [(1000, 0.25), (2000, 0.5), (3000, 0.75)]
        print("ok")
        """
        let (status, output) = try runPython(script, arguments: [folder.path])
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("ok"), output)
    }
}
