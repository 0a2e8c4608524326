import Foundation
import NeuralNetworks

/// A file written by appending whole records (a metrics row, a TensorBoard event), each flushed to
/// disk. A record that cannot be written in full (a full disk) is cut off again, so the file always
/// ends at a record boundary, and the failure is a `FileWriteError` naming the file by its role.
final class AppendFile {
    let url: URL
    let role: String
    private let fd: Int32
    private var length: off_t

    /// Opens `url` for appending, creating it empty when `create` is set.
    init(url: URL, role: String, create: Bool) throws {
        self.url = url
        self.role = role
        let flags = O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0)
        fd = open(url.path, flags, 0o644)
        guard fd >= 0 else {
            let code = errno
            throw FileWriteError(path: url.path, role: role, reason: String(cString: strerror(code)), code: code)
        }
        length = lseek(fd, 0, SEEK_END)
    }

    deinit { close(fd) }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        var code = writeAll(fd, bytes)
        if code == 0 && fsync(fd) != 0 { code = errno }
        guard code == 0 else {
            // Cut the partial record off, so the file still ends at a record boundary.
            _ = ftruncate(fd, length)
            _ = lseek(fd, length, SEEK_SET)
            throw FileWriteError(path: url.path, role: role, reason: String(cString: strerror(code)), code: code)
        }
        length += off_t(bytes.count)
    }

    func append(_ data: Data) throws { try data.withUnsafeBytes { try append($0) } }
    func append(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try append($0) } }
}
