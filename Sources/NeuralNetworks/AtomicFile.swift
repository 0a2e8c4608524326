import Foundation

/// A file that could not be written: which file, what it is for, why, and what to do.
public struct FileWriteError: Error, CustomStringConvertible, Equatable {
    public let path: String
    /// What the file is (`"checkpoint"`, `"metrics log"`, `"weights file"`, ...).
    public let role: String
    public let reason: String
    /// The `errno` of the failure (`ENOSPC` for a full disk), 0 when unknown.
    public let code: Int32

    public init(path: String, role: String, reason: String, code: Int32 = 0) {
        self.path = path
        self.role = role
        self.reason = reason
        self.code = code
    }

    public var description: String {
        var text = "cannot write the \(role) \(path): \(reason)"
        switch code {
        case ENOSPC, EDQUOT: text += " (the disk is full: free some space, or write to another disk)"
        case EACCES, EPERM, EROFS: text += " (no permission to write there: choose a folder you can write to)"
        case ENOENT, ENOTDIR: text += " (its folder does not exist)"
        case EISDIR: text += " (a folder has that name: choose a file name)"
        default: break
        }
        return text
    }
}

/// Writes `data` to `url` atomically: a temporary file in the same folder, fsync, rename, fsync of
/// the folder. A crash leaves either the old file or the new one, never a mix; a failure removes
/// the temporary file and throws a `FileWriteError` naming the file by `role`.
public func writeAtomically(_ data: Data, to url: URL, role: String) throws {
    let directory = url.deletingLastPathComponent()
    func failure(_ code: Int32) -> FileWriteError {
        FileWriteError(path: url.path, role: role, reason: String(cString: strerror(code)), code: code)
    }
    if url.path.isEmpty || url.hasDirectoryPath && url.lastPathComponent.isEmpty { throw failure(EISDIR) }
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue { throw failure(EISDIR) }
    let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw failure(errno) }
    var code = data.withUnsafeBytes { writeAll(fd, $0) }
    if code == 0 && fsync(fd) != 0 { code = errno }
    if close(fd) != 0 && code == 0 { code = errno }
    if code == 0 && rename(temporary.path, url.path) != 0 { code = errno }
    guard code == 0 else {
        unlink(temporary.path)
        throw failure(code)
    }
    // Make the rename itself durable.
    let dfd = open(directory.path, O_RDONLY | O_CLOEXEC)
    if dfd >= 0 { fsync(dfd); close(dfd) }
}

/// Writes every byte to `fd` (retrying short writes); returns 0, or the `errno` of the failure.
public func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Int32 {
    var offset = 0
    while offset < bytes.count {
        let n = Foundation.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return n < 0 ? errno : ENOSPC }
        offset += n
    }
    return 0
}

/// Removes the temporary files that interrupted atomic writes of `writeAtomically` left in
/// `directory` (`.NAME.tmp-PID-N`) for files named as `isOwn` accepts, except those of processes
/// still running. Returns how many were removed.
@discardableResult
public func removeStaleTemporaryFiles(in directory: URL, of isOwn: (String) -> Bool) -> Int {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
    var removed = 0
    for name in names where name.hasPrefix(".") {
        guard let range = name.range(of: ".tmp-"), isOwn(String(name[name.index(after: name.startIndex)..<range.lowerBound])) else { continue }
        if let pid = Int32(name[range.upperBound...].prefix { $0.isNumber }), pid == getpid() || kill(pid, 0) == 0 || errno == EPERM {
            continue  // a writer that is still running
        }
        if (try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))) != nil { removed += 1 }
    }
    return removed
}
