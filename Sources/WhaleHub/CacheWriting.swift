import Foundation
import WhaleCore

/// Writing the cache exactly as huggingface_hub writes it, so that each finds the other's downloads:
/// content in `blobs/<etag>` (downloads in progress in `blobs/<etag>.incomplete`), each file of a commit a
/// relative symlink `snapshots/<commit>/<path>` → `../../blobs/<etag>` (one more `../` per folder in the
/// path), and `refs/<revision>` holding the commit a branch or tag pointed at when it was fetched.
extension HubCache {
    /// A file's size in bytes; nil when it is not there.
    public static func fileSize(_ url: URL) -> Int64? {
        (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int64) ?? nil
    }

    public func blob(_ repo: String, etag: String) -> URL {
        folder(repo).appendingPathComponent("blobs").appendingPathComponent(etag)
    }

    public func incompleteBlob(_ repo: String, etag: String) -> URL {
        folder(repo).appendingPathComponent("blobs").appendingPathComponent(etag + ".incomplete")
    }

    /// Links `path` of `commit` to its blob, replacing a link that was there.
    public func link(_ repo: String, commit: String, path: String, etag: String) throws {
        let link = folder(repo).appendingPathComponent("snapshots").appendingPathComponent(commit)
            .appendingPathComponent(path)
        let depth = path.split(separator: "/").count - 1
        let target = String(repeating: "../", count: 2 + depth) + "blobs/" + etag
        do {
            try FileManager.default.createDirectory(
                at: link.deletingLastPathComponent(), withIntermediateDirectories: true)
            if (try? FileManager.default.destinationOfSymbolicLink(atPath: link.path)) != nil
                || FileManager.default.fileExists(atPath: link.path)
            {
                try FileManager.default.removeItem(at: link)
            }
            try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: target)
        } catch {
            throw WhaleError(
                .ioError, file: link.path, "cannot link the snapshot file: \(error.localizedDescription)",
                hint: "check the cache folder is writable")
        }
    }

    /// Records that `revision` names `commit` (nothing to record when the revision is the commit itself).
    public func setReference(_ repo: String, revision: String, commit: String) throws {
        guard revision != commit else { return }
        let ref = folder(repo).appendingPathComponent("refs").appendingPathComponent(revision)
        do {
            try FileManager.default.createDirectory(
                at: ref.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(commit.utf8).write(to: ref, options: .atomic)
        } catch {
            throw WhaleError(
                .ioError, file: ref.path, "cannot record the revision: \(error.localizedDescription)",
                hint: "check the cache folder is writable")
        }
    }

    /// Deletes `repo` from the cache, or with `files` only those files of the revision's snapshot and the blobs
    /// no other snapshot links to. Returns the bytes freed.
    @discardableResult
    public func remove(_ repo: String, revision: String = "main", files: [String]? = nil) throws -> Int64 {
        let folder = folder(repo)
        guard FileManager.default.fileExists(atPath: folder.path) else {
            throw WhaleError(
                .fileNotFound, file: folder.path, "\(repo) is not in the Hugging Face cache at \(root.path)",
                hint: "`whale list` shows what is there")
        }
        let blobs = folder.appendingPathComponent("blobs")
        func size(_ url: URL) -> Int64 { Self.fileSize(url) ?? 0 }
        guard let files else {
            let freed = ((try? FileManager.default.contentsOfDirectory(atPath: blobs.path)) ?? []).reduce(Int64(0)) {
                $0 + size(blobs.appendingPathComponent($1))
            }
            try removeItem(folder)
            return freed
        }
        guard let snapshot = snapshot(repo, revision: revision) else {
            throw WhaleError(
                .fileNotFound, file: folder.path, "\(repo) has no snapshot of \(revision) in the cache",
                hint: "`whale list` shows what is there")
        }
        var unlinked = Set<String>()
        for file in files {
            let link = snapshot.appendingPathComponent(file)
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link.path) {
                unlinked.insert((target as NSString).lastPathComponent)
            }
            try removeItem(link)
        }
        // A blob stays while any snapshot still links to it.
        var stillLinked = Set<String>()
        let snapshots = folder.appendingPathComponent("snapshots")
        for commit in (try? FileManager.default.contentsOfDirectory(atPath: snapshots.path)) ?? [] {
            let directory = snapshots.appendingPathComponent(commit)
            guard let walker = FileManager.default.enumerator(atPath: directory.path) else { continue }
            while let path = walker.nextObject() as? String {
                let full = directory.appendingPathComponent(path).path
                if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: full) {
                    stillLinked.insert((target as NSString).lastPathComponent)
                }
            }
        }
        var freed: Int64 = 0
        for etag in unlinked.subtracting(stillLinked) {
            let url = blobs.appendingPathComponent(etag)
            freed += size(url)
            try removeItem(url)
        }
        return freed
    }

    private func removeItem(_ url: URL) throws {
        do {
            try FileManager.default.removeItem(at: url)
        } catch {
            throw WhaleError(
                .ioError, file: url.path, "cannot delete: \(error.localizedDescription)",
                hint: "check the cache folder is writable")
        }
    }
}
