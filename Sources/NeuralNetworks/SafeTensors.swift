import Foundation
import Tensors

/// Reading and writing weights in the safetensors format (readable by Python's `safetensors`
/// and PyTorch): an 8-byte little-endian header length, a JSON header mapping each name to
/// `{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}` (plus optional
/// `"__metadata__"` of strings), then the raw little-endian data.
///
/// Files are written atomically: to a temporary file in the same folder, flushed to disk, then
/// renamed over the destination, so a crash never leaves a half-written file in its place.
public enum SafeTensors {
    /// What can go wrong reading a weights file; each message says what is wrong and what to do.
    public enum FileError: Error, CustomStringConvertible, Equatable {
        case unreadable(path: String, reason: String)
        case truncated(path: String, detail: String)
        case corruptHeader(path: String, detail: String)
        case unsupportedDType(path: String, name: String, dtype: String)
        case missingTensor(path: String, name: String, available: [String])
        case shapeMismatch(path: String, name: String, expected: [Int], found: [Int])
        case unexpectedTensors(path: String, names: [String])

        public var description: String {
            switch self {
            case let .unreadable(path, reason):
                return "cannot read weights file \(path): \(reason)"
            case let .truncated(path, detail):
                return "weights file \(path) is truncated (\(detail)); it was probably cut off while being written or copied: use an earlier checkpoint or re-export it"
            case let .corruptHeader(path, detail):
                return "weights file \(path) is not a valid safetensors file (\(detail)); check that the path points at a .safetensors file written by rrl, PyTorch or the safetensors library"
            case let .unsupportedDType(path, name, dtype):
                return "weights file \(path): tensor '\(name)' has dtype \(dtype), but only F32 is supported; convert it with `tensor.float()` before saving"
            case let .missingTensor(path, name, available):
                let near = available.min { editDistance($0, name) < editDistance($1, name) }
                return "weights file \(path) has no tensor '\(name)'" + (near.map { "; the closest name is '\($0)'" } ?? "") + " (it holds \(available.count) tensors); was it saved from a network of a different architecture?"
            case let .shapeMismatch(path, name, expected, found):
                return "weights file \(path): tensor '\(name)' has shape \(found) but the network expects \(expected); the file was saved from a network with other sizes"
            case let .unexpectedTensors(path, names):
                return "weights file \(path) holds tensors the network does not have: \(names.prefix(5).joined(separator: ", "))\(names.count > 5 ? ", ..." : ""); pass `strict: false` to ignore them"
            }
        }
    }

    /// Writes named tensors (sorted by name in the file) and string metadata, atomically.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to url: URL) throws {
        let data = encode(tensors, metadata: metadata)
        try writeAtomically(data, to: url, role: "weights file")
    }

    /// Writes the values of named parameters.
    public static func write(_ parameters: [NamedParameter], metadata: [String: String] = [:], to url: URL) throws {
        try write(parameters.map { ($0.name, $0.parameter.value) }, metadata: metadata, to: url)
    }

    /// The file's bytes.
    public static func encode(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:]) -> Data {
        let sorted = tensors.sorted { $0.name < $1.name }
        var entries: [String] = []
        var offset = 0
        if !metadata.isEmpty {
            let fields = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            entries.append("\"__metadata__\":{\(fields.joined(separator: ","))}")
        }
        for (name, tensor) in sorted {
            let bytes = tensor.count * 4
            entries.append("\(jsonString(name)):{\"dtype\":\"F32\",\"shape\":[\(tensor.shape.dimensions.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var header = Array(("{" + entries.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(0x20) }  // pad with spaces to 8-byte alignment
        var data = Data(capacity: 8 + header.count + offset)
        var length = UInt64(header.count).littleEndian
        withUnsafeBytes(of: &length) { data.append(contentsOf: $0) }
        data.append(contentsOf: header)
        for (_, tensor) in sorted {
            for i in 0..<tensor.count {
                var bits = tensor.data[i].bitPattern.littleEndian
                withUnsafeBytes(of: &bits) { data.append(contentsOf: $0) }
            }
        }
        return data
    }

    /// Reads every tensor of a file. Throws `FileError` for a missing, truncated or corrupt file.
    public static func read(_ url: URL) throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FileError.unreadable(path: url.path, reason: (error as NSError).localizedDescription)
        }
        return try decode(data, path: url.path)
    }

    /// Parses a file's bytes.
    public static func decode(_ data: Data, path: String = "<memory>") throws -> (tensors: [String: Tensor], metadata: [String: String]) {
        guard data.count >= 8 else { throw FileError.truncated(path: path, detail: "\(data.count) bytes, fewer than the 8-byte header length") }
        let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(data.count - 8) else {
            if headerLength > 100_000_000 {
                throw FileError.corruptHeader(path: path, detail: "declared header length \(headerLength) bytes is implausible")
            }
            throw FileError.truncated(path: path, detail: "header of \(headerLength) bytes declared, only \(data.count - 8) bytes follow")
        }
        let headerData = data.subdata(in: 8..<(8 + Int(headerLength)))
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: headerData) } catch {
            throw FileError.corruptHeader(path: path, detail: "header is not JSON")
        }
        guard let header = json as? [String: Any] else { throw FileError.corruptHeader(path: path, detail: "header is not a JSON object") }
        let body = data.subdata(in: (8 + Int(headerLength))..<data.count)
        var tensors: [String: Tensor] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw FileError.corruptHeader(path: path, detail: "__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw FileError.corruptHeader(path: path, detail: "metadata value of '\(k)' is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shapeValues = entry["shape"] as? [Any], let offsets = entry["data_offsets"] as? [Any], offsets.count == 2
            else { throw FileError.corruptHeader(path: path, detail: "entry '\(name)' lacks dtype, shape or data_offsets") }
            guard dtype == "F32" else { throw FileError.unsupportedDType(path: path, name: name, dtype: dtype) }
            let shape = shapeValues.compactMap { ($0 as? NSNumber)?.intValue }
            let bounds = offsets.compactMap { ($0 as? NSNumber)?.intValue }
            guard shape.count == shapeValues.count, shape.allSatisfy({ $0 >= 0 }), shape.count <= 4, bounds.count == 2 else {
                throw FileError.corruptHeader(path: path, detail: "entry '\(name)' has a malformed shape or offsets (rank above 4 is not supported)")
            }
            let count = shape.reduce(1, *)
            guard bounds[0] >= 0, bounds[1] >= bounds[0], bounds[1] - bounds[0] == count * 4 else {
                throw FileError.corruptHeader(path: path, detail: "entry '\(name)' has offsets \(bounds) that do not match shape \(shape)")
            }
            guard bounds[1] <= body.count else {
                throw FileError.truncated(path: path, detail: "tensor '\(name)' ends at byte \(bounds[1]) of the data section, which has only \(body.count)")
            }
            let tensor = Tensor(Shape(shape))
            body.withUnsafeBytes { raw in
                for i in 0..<count {
                    let bits = raw.loadUnaligned(fromByteOffset: bounds[0] + 4 * i, as: UInt32.self)
                    tensor.data[i] = Float(bitPattern: UInt32(littleEndian: bits))
                }
            }
            tensors[name] = tensor
        }
        return (tensors, metadata)
    }

    /// Loads a file into named parameters, checking every name and shape before changing any
    /// value. With `strict`, tensors in the file that the network lacks are an error too.
    public static func load(_ url: URL, into parameters: [NamedParameter], strict: Bool = true) throws {
        try assign(try read(url).tensors, path: url.path, into: parameters, strict: strict)
    }

    /// `load` for tensors already read (with `read`) from the file at `path`.
    public static func assign(_ tensors: [String: Tensor], path: String, into parameters: [NamedParameter], strict: Bool = true) throws {
        for (name, parameter) in parameters {
            guard let t = tensors[name] else {
                throw FileError.missingTensor(path: path, name: name, available: tensors.keys.sorted())
            }
            guard t.shape == parameter.shape else {
                throw FileError.shapeMismatch(path: path, name: name, expected: parameter.shape.dimensions, found: t.shape.dimensions)
            }
        }
        if strict {
            let known = Set(parameters.map(\.name))
            let extra = tensors.keys.filter { !known.contains($0) }.sorted()
            if !extra.isEmpty { throw FileError.unexpectedTensors(path: path, names: extra) }
        }
        for (name, parameter) in parameters { parameter.value.copy(from: tensors[name]!) }
    }

    private static func jsonString(_ s: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
        let text = String(decoding: data, as: UTF8.self)
        return String(text.dropFirst().dropLast())
    }
}
