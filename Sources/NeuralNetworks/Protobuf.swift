/// The protocol-buffer wire format, written directly (enough for TensorBoard's event files and ONNX
/// models): varint, 32- and 64-bit and length-delimited fields, packed repeated numbers. Keeps the
/// package free of a protobuf dependency.
public struct ProtobufWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func key(_ field: Int, wireType: Int) { varint(UInt64(field << 3 | wireType)) }

    /// An int64/int32/enum field (negative numbers as ten-byte two's complement, as protobuf does).
    public mutating func int(_ field: Int, _ value: Int) {
        key(field, wireType: 0)
        varint(UInt64(bitPattern: Int64(value)))
    }

    /// An unsigned varint field (uint64).
    public mutating func unsigned(_ field: Int, _ value: UInt64) {
        key(field, wireType: 0)
        varint(value)
    }

    public mutating func double(_ field: Int, _ value: Double) {
        key(field, wireType: 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    public mutating func float(_ field: Int, _ value: Float) {
        key(field, wireType: 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes += $0 }
    }

    public mutating func data(_ field: Int, _ payload: [UInt8]) {
        key(field, wireType: 2)
        varint(UInt64(payload.count))
        bytes += payload
    }

    public mutating func string(_ field: Int, _ text: String) { data(field, Array(text.utf8)) }

    /// An embedded message written before.
    public mutating func message(_ field: Int, _ inner: ProtobufWriter) { data(field, inner.bytes) }

    /// An embedded message.
    public mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        build(&inner)
        data(field, inner.bytes)
    }

    /// A packed repeated int64 field.
    public mutating func packedInts(_ field: Int, _ values: [Int]) {
        var inner = ProtobufWriter()
        for v in values { inner.varint(UInt64(bitPattern: Int64(v))) }
        data(field, inner.bytes)
    }
}
