import Foundation

/// The state of a training run, gathered for a checkpoint: float arrays (weights, optimiser
/// moments, replay contents) stored as raw Float32, and small structured values (counters, random
/// generator states, running statistics) stored as JSON, which round-trips every Float and Double
/// exactly.
///
/// The bytes are a safetensors file (F32 and U8 entries), so Python's `safetensors` can open a
/// checkpoint; the metadata carries a format tag and a CRC-32C of the data section, so a file that
/// was cut short or damaged is detected before anything is restored from it.
public final class StateArchive {
    struct Entry {
        var dtype: String
        var shape: [Int]
        var bytes: Data
    }
    var entries: [String: Entry] = [:]
    public var metadata: [String: String] = [:]

    public init() {}

    /// The format tag written into every checkpoint. Version 2 adds a CRC-32C of the header
    /// (`header_crc32c`); version 1 files (data checksum only) are still read.
    public static let format = "rrl-checkpoint-2"
    static let readableFormats: Set<String> = ["rrl-checkpoint-1", "rrl-checkpoint-2"]

    /// The header's checksum field as it is written before the checksum is known: the CRC-32C
    /// covers the 8 length bytes and the header with these eight zeros, then replaces them (hex).
    static let headerChecksumKey = Array("\"header_crc32c\":\"".utf8)
    static let headerChecksumPlaceholder = "00000000"

    /// The CRC-32C of a header (with its 8 length bytes), its checksum digits read as zeros.
    static func headerChecksum(length: Data, header: Data, digitsAt offset: Int) -> UInt32 {
        var copy = length + header
        for i in 0..<8 { copy[8 + offset + i] = UInt8(ascii: "0") }
        return crc32c(copy)
    }

    /// Where the checksum's digits start in `header`, if it has one.
    static func headerChecksumDigits(in header: Data) -> Int? {
        let key = headerChecksumKey
        let bytes = [UInt8](header)
        guard bytes.count >= key.count + 8 else { return nil }
        for i in 0...(bytes.count - key.count - 8) where bytes[i] == key[0] && Array(bytes[i..<(i + key.count)]) == key {
            return i + key.count
        }
        return nil
    }

    /// Stores `count` floats.
    public func put(_ name: String, floats: UnsafePointer<Float>, count: Int) {
        entries[name] = Entry(dtype: "F32", shape: [count], bytes: Data(bytes: floats, count: count * 4))
    }

    /// Stores a tensor's values (its shape is checked when it is read back).
    public func put(_ name: String, _ tensor: Tensor) {
        entries[name] = Entry(dtype: "F32", shape: tensor.shape.dimensions, bytes: Data(bytes: tensor.data, count: tensor.count * 4))
    }

    /// Stores raw bytes (e.g. another archive's).
    public func put(_ name: String, bytes: Data) {
        entries[name] = Entry(dtype: "U8", shape: [bytes.count], bytes: bytes)
    }

    /// Stores any Codable value as JSON (non-finite numbers included).
    public func put<T: Encodable>(_ name: String, value: T) {
        let encoder = JSONEncoder()
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        encoder.outputFormatting = [.sortedKeys]
        // Encoding plain values (numbers, arrays, structs of them) cannot fail.
        let data = try! encoder.encode([value])
        entries[name] = Entry(dtype: "U8", shape: [data.count], bytes: data)
    }

    /// The file's bytes.
    public func encode() -> Data {
        var body = Data()
        var header: [String: Any] = [:]
        for name in entries.keys.sorted() {
            let e = entries[name]!
            let begin = body.count
            body.append(e.bytes)
            header[name] = ["dtype": e.dtype, "shape": e.shape, "data_offsets": [begin, body.count]] as [String: Any]
        }
        var meta = metadata
        meta["format"] = StateArchive.format
        meta["crc32c"] = String(crc32c(body))
        meta["data_bytes"] = String(body.count)
        meta["header_crc32c"] = StateArchive.headerChecksumPlaceholder
        header["__metadata__"] = meta
        var headerData = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while headerData.count % 8 != 0 { headerData.append(0x20) }
        var length = UInt64(headerData.count).littleEndian
        let lengthData = withUnsafeBytes(of: &length) { Data($0) }
        let digits = StateArchive.headerChecksumDigits(in: headerData)!
        let checksum = StateArchive.headerChecksum(length: lengthData, header: headerData, digitsAt: digits)
        headerData.replaceSubrange(digits..<(digits + 8), with: Array(String(format: "%08x", checksum).utf8))
        var out = Data(capacity: 8 + headerData.count + body.count)
        out.append(lengthData)
        out.append(headerData)
        out.append(body)
        return out
    }
}

/// A damaged, truncated or mismatched checkpoint; the message says which file and what is wrong.
public struct StateArchiveError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reads back what a `StateArchive` wrote, after checking the format tag, the lengths and the
/// checksum of the whole data section.
public final class StateArchiveReader {
    public let path: String
    public let metadata: [String: String]
    let header: [String: [String: Any]]
    let body: Data

    public init(data: Data, path: String) throws {
        self.path = path
        func fail(_ what: String) -> StateArchiveError {
            StateArchiveError("checkpoint \(path) is unusable: \(what)")
        }
        guard data.count >= 8 else { throw fail("\(data.count) bytes, too short to hold a header (the file was cut off)") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(data.count - 8) else {
            throw fail("its header says \(headerLength) bytes but only \(data.count - 8) follow (the file was cut off)")
        }
        let start = 8 + Int(headerLength)
        let headerData = data.subdata(in: 8..<start)
        if let digits = StateArchive.headerChecksumDigits(in: headerData) {
            let text = String(decoding: headerData.subdata(in: digits..<(digits + 8)), as: UTF8.self)
            let computed = StateArchive.headerChecksum(length: data.prefix(8), header: headerData, digitsAt: digits)
            guard UInt32(text, radix: 16) == computed else { throw fail("the checksum of its header does not match (the file is damaged)") }
        }
        guard let json = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any],
              let meta = json["__metadata__"] as? [String: String]
        else { throw fail("its header is not valid JSON with metadata (the file is damaged or is not a checkpoint)") }
        guard let format = meta["format"], StateArchive.readableFormats.contains(format) else {
            throw fail("format '\(meta["format"] ?? "none")', expected '\(StateArchive.format)' (not an rrl checkpoint, or from another version)")
        }
        if format != "rrl-checkpoint-1" && meta["header_crc32c"] == nil {
            throw fail("its header has lost its checksum (the file is damaged)")
        }
        let body = data.subdata(in: start..<data.count)
        guard let declared = meta["data_bytes"].flatMap(Int.init), let checksum = meta["crc32c"].flatMap(UInt32.init) else {
            throw fail("its metadata lacks the data length or checksum")
        }
        guard body.count == declared else {
            throw fail("\(body.count) data bytes where \(declared) were written (the file was cut off or appended to)")
        }
        guard crc32c(body) == checksum else { throw fail("the checksum of its data does not match (the file is damaged)") }
        var entries: [String: [String: Any]] = [:]
        for (k, v) in json where k != "__metadata__" {
            guard let e = v as? [String: Any] else { throw fail("entry '\(k)' is malformed") }
            entries[k] = e
        }
        header = entries
        metadata = meta
        self.body = body
    }

    public convenience init(url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw StateArchiveError("cannot read checkpoint \(url.path): \((error as NSError).localizedDescription)")
        }
        try self.init(data: data, path: url.path)
    }

    /// True when the archive holds `name`.
    public func contains(_ name: String) -> Bool { header[name] != nil }

    func entry(_ name: String, dtype: String) throws -> (range: Range<Int>, shape: [Int]) {
        guard let e = header[name] else {
            throw StateArchiveError("checkpoint \(path) has no '\(name)'; it was written by a run with another configuration (or another version of rrl)")
        }
        guard e["dtype"] as? String == dtype, let shape = (e["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
              let offsets = (e["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }), offsets.count == 2,
              offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= body.count
        else { throw StateArchiveError("checkpoint \(path): entry '\(name)' is malformed") }
        return (offsets[0]..<offsets[1], shape)
    }

    /// Reads `count` floats into `destination`; the stored count must match.
    public func floats(_ name: String, into destination: UnsafeMutablePointer<Float>, count: Int) throws {
        let (range, _) = try entry(name, dtype: "F32")
        guard range.count == count * 4 else {
            throw StateArchiveError("checkpoint \(path): '\(name)' holds \(range.count / 4) values, this run expects \(count); it was written by a run with other sizes")
        }
        body.withUnsafeBytes { raw in
            UnsafeMutableRawPointer(destination).copyMemory(from: raw.baseAddress! + range.lowerBound, byteCount: range.count)
        }
    }

    /// Reads a tensor's values; the stored shape must equal the tensor's.
    public func read(_ name: String, into tensor: Tensor) throws {
        let (_, shape) = try entry(name, dtype: "F32")
        guard shape == tensor.shape.dimensions else {
            throw StateArchiveError("checkpoint \(path): '\(name)' has shape \(shape), this run expects \(tensor.shape.dimensions); it was written by a run with other sizes")
        }
        try floats(name, into: tensor.data, count: tensor.count)
    }

    /// Reads bytes stored with `put(_:bytes:)`.
    public func bytes(_ name: String) throws -> Data {
        body.subdata(in: try entry(name, dtype: "U8").range)
    }

    /// Reads a value stored with `put(_:value:)`.
    public func value<T: Decodable>(_ name: String, as type: T.Type = T.self) throws -> T {
        let (range, _) = try entry(name, dtype: "U8")
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            return try decoder.decode([T].self, from: body.subdata(in: range))[0]
        } catch {
            throw StateArchiveError("checkpoint \(path): '\(name)' cannot be read as \(T.self) (\(error))")
        }
    }
}

/// Something whose whole state can be saved into a checkpoint and restored from one, so that a
/// resumed run continues exactly.
public protocol Checkpointable: AnyObject {
    func save(to archive: StateArchive, prefix: String) throws
    func restore(from archive: StateArchiveReader, prefix: String) throws
}

private let crc32cTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    return c
}

/// CRC-32C (Castagnoli), as TFRecord files and checkpoints use.
public func crc32c(_ data: Data) -> UInt32 {
    data.withUnsafeBytes { raw in crc32c(raw.bindMemory(to: UInt8.self)) }
}

/// `continuing`: the CRC of the bytes before these, so that pieces give the CRC of the whole.
public func crc32c(_ bytes: UnsafeBufferPointer<UInt8>, continuing previous: UInt32 = 0) -> UInt32 {
    var c: UInt32 = ~previous
    crc32cTable.withUnsafeBufferPointer { table in
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    }
    return c ^ 0xFFFF_FFFF
}
