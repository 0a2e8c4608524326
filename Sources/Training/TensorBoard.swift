import Foundation
import NeuralNetworks
import Tensors

/// TensorBoard event files (`events.out.tfevents.*`): TFRecord framing (length, masked CRC-32C of
/// the length, an `Event` protocol buffer, masked CRC-32C of it) around events whose summaries hold
/// one scalar per metrics column. Written by hand: the two message types need a few lines of
/// protocol-buffer encoding, not a dependency.
public final class TensorBoardWriter {
    public let url: URL
    private let file: AppendFile

    /// The suffix of the event files rrl writes: a run folder removes only event files with it.
    public static let suffix = ".rrl"

    /// Starts a new event file in `directory` (`events.out.tfevents.TIME.HOST.PID.rrl`).
    public init(directory: URL, wallTime: Double = Date().timeIntervalSince1970) throws {
        let host = ProcessInfo.processInfo.hostName.filter { $0.isLetter || $0.isNumber || $0 == "-" }
        url = directory.appendingPathComponent("events.out.tfevents.\(Int(wallTime)).\(host.isEmpty ? "rrl" : host).\(getpid())\(Self.suffix)")
        file = try AppendFile(url: url, role: "TensorBoard event file", create: true)
        var event = ProtobufWriter()
        event.double(1, wallTime)
        event.string(3, "brain.Event:2")
        try write(record: event.bytes)
    }

    /// Writes one event with the row's values (NaN cells left out) at its step, and flushes it.
    public func write(_ row: MetricsRow, columns: [String], wallTime: Double = Date().timeIntervalSince1970) throws {
        var summary = ProtobufWriter()
        for column in columns where column != "step" {
            guard let v = row[column], !v.isNaN else { continue }
            var value = ProtobufWriter()
            value.string(1, column)
            value.float(2, Float(v))
            summary.message(1, value)
        }
        var event = ProtobufWriter()
        event.double(1, wallTime)
        let step = row["step"] ?? 0
        event.unsigned(2, step.isFinite && step > 0 && step < 9e18 ? UInt64(step) : 0)
        event.message(5, summary)
        try write(record: event.bytes)
    }

    private func write(record: [UInt8]) throws {
        var out: [UInt8] = []
        out.reserveCapacity(record.count + 16)
        let length = UInt64(record.count)
        let lengthBytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * $0)) }
        out += lengthBytes
        out += TensorBoardWriter.littleEndian(TensorBoardWriter.maskedCRC(lengthBytes))
        out += record
        out += TensorBoardWriter.littleEndian(TensorBoardWriter.maskedCRC(record))
        try file.append(out)
    }

    static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
        let c = bytes.withUnsafeBufferPointer { crc32c($0) }
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }

    static func littleEndian(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}
