import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import WhaleCore
import WhaleHub

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Downloads models from the Hugging Face Hub into its cache the way huggingface_hub does — the same routes,
/// headers and cache layout — so that a file fetched by either is found by the other.
///
/// Per file: `HEAD {endpoint}/{repo}/resolve/{commit}/{path}` gives the ETag (`X-Linked-Etag` for LFS files:
/// the content's SHA-256) and, for LFS files, a redirect to the storage host; the bytes go to
/// `blobs/<etag>.incomplete`, resumed with a Range request after an interruption and hashed as they arrive;
/// only a complete file whose SHA-256 matches becomes `blobs/<etag>` and is linked into the snapshot.
public final class HubClient: Sendable {
    public let settings: HubSettings
    public let cache: HubCache
    private let http: HTTPClient
    private let progress: PullProgress
    /// Files fetched at once: a few connections fill a link; more only split it.
    private let parallelFiles = 4
    /// Attempts per file before a broken transfer is reported (each resumes where the last stopped).
    private let attempts = 3

    public init(settings: HubSettings, cache: HubCache, progress: PullProgress = PullProgress()) {
        self.settings = settings
        self.cache = cache
        self.progress = progress
        // Redirects are followed by hand: the Authorization header must not reach the storage host.
        http = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(
                redirectConfiguration: .disallow,
                timeout: .init(connect: .seconds(15), read: .seconds(60)),
                decompression: .disabled))
    }

    /// Must be called once the client is no longer needed.
    public func shutdown() async throws { try await http.shutdown() }

    /// Fetches what `reference` needs to run (or, with `include`, the files those globs match) at the commit
    /// its revision names now, and returns the path `whale run` loads: the GGUF file the tag picks or the
    /// snapshot directory. Files already in the cache are linked, not fetched again.
    public func pull(_ reference: ModelReference, include: [String] = []) async throws -> URL {
        if settings.offline {
            if include.isEmpty, let path = try? cache.resolve(reference) { return path }
            throw WhaleError(
                .networkError, field: reference.description,
                "HF_HUB_OFFLINE is set and \(reference.repo) is not in the cache at \(cache.root.path)",
                hint: "unset HF_HUB_OFFLINE to download it; \(cachedSummary())")
        }
        let listing = try await repositoryListing(reference)
        var files = try PullPlan.files(listing, reference: reference, include: include)
        if include.isEmpty, files.contains(PullPlan.safetensorsIndex) {
            // The index names the shards: fetch it first.
            try await fetch([PullPlan.safetensorsIndex], of: reference.repo, listing: listing)
            let index = snapshot(reference.repo, listing).appendingPathComponent(PullPlan.safetensorsIndex)
            files += try PullPlan.shards(index: try Data(contentsOf: index), file: index.path)
                .filter { !files.contains($0) }
        }
        let needed = files.reduce(Int64(0)) {
            $0 + (listing.file($1)?.size ?? 0) - alreadyHave($1, reference.repo, listing)
        }
        try checkFreeSpace(needed, for: reference.repo)
        progress.begin(repo: reference.repo, bytes: needed)
        try await fetch(files, of: reference.repo, listing: listing)
        progress.end()
        try cache.setReference(reference.repo, revision: reference.revision, commit: listing.commit)
        if !include.isEmpty { return snapshot(reference.repo, listing) }
        return try cache.resolve(ModelReference(repo: reference.repo, tag: reference.tag, revision: listing.commit))
    }

    private func snapshot(_ repo: String, _ listing: RepositoryListing) -> URL {
        cache.folder(repo).appendingPathComponent("snapshots").appendingPathComponent(listing.commit)
    }

    /// Bytes of `path` already on disk: the whole file when its blob is there, else a partial download.
    private func alreadyHave(_ path: String, _ repo: String, _ listing: RepositoryListing) -> Int64 {
        guard let file = listing.file(path), let sha256 = file.sha256 else { return 0 }
        if FileManager.default.fileExists(atPath: cache.blob(repo, etag: sha256).path) { return file.size ?? 0 }
        return HubCache.fileSize(cache.incompleteBlob(repo, etag: sha256)) ?? 0
    }

    // MARK: The routes

    /// `GET /api/models/{repo}/revision/{revision}?blobs=true`: the commit and every file with size and SHA-256.
    private func repositoryListing(_ reference: ModelReference) async throws -> RepositoryListing {
        let url =
            "\(settings.endpoint)/api/models/\(reference.repo)/revision/"
            + "\(percentEncoded(reference.revision, keepingSlashes: false))?blobs=true"
        var request = HTTPClientRequest(url: url)
        addHeaders(&request, sendingToken: true)
        let response = try await execute(request)
        guard response.status == .ok else {
            throw statusError(response, repo: reference.repo, revision: reference.revision, file: nil)
        }
        let body = try await collect(response.body, upTo: 64 << 20)
        return try RepositoryListing(modelInfo: Data(body.readableBytesView), repo: reference.repo)
    }

    /// What `HEAD …/resolve/{commit}/{path}` says of a file.
    private struct FileMetadata {
        var etag: String
        var size: Int64?
        /// Where the bytes are: the storage host an LFS file redirects to, else the resolve URL itself.
        var location: String
    }

    private func metadata(_ path: String, of repo: String, commit: String) async throws -> FileMetadata {
        var url = "\(settings.endpoint)/\(repo)/resolve/\(commit)/\(percentEncoded(path, keepingSlashes: true))"
        // Relative redirects (a renamed repository) stay on the Hub; an absolute one is the storage host.
        for _ in 0..<5 {
            var request = HTTPClientRequest(url: url)
            request.method = .HEAD
            addHeaders(&request, sendingToken: true)
            let response = try await execute(request)
            let header = { (name: String) in response.headers.first(name: name) }
            if (300..<400).contains(response.status.code), let location = header("Location"), location.hasPrefix("/") {
                url = settings.endpoint + location
                continue
            }
            guard (200..<400).contains(response.status.code) else {
                throw statusError(response, repo: repo, revision: commit, file: path)
            }
            guard let etag = (header("X-Linked-Etag") ?? header("ETag")).map(normalizedETag), !etag.isEmpty,
                !etag.contains("/"), !etag.hasPrefix(".")
            else {
                throw WhaleError(
                    .missingKey, field: "\(repo)/\(path)", "the Hub sent no usable ETag for the file",
                    hint: "check HF_ENDPOINT points at a Hugging Face Hub")
            }
            let size = (header("X-Linked-Size") ?? header("Content-Length")).flatMap { Int64($0) }
            let isRedirect = (300..<400).contains(response.status.code)
            return FileMetadata(etag: etag, size: size, location: isRedirect ? header("Location") ?? url : url)
        }
        throw WhaleError(
            .networkError, field: "\(repo)/\(path)", "the Hub redirected more than 5 times",
            hint: "check HF_ENDPOINT points at a Hugging Face Hub")
    }

    // MARK: Downloading

    /// Fetches `files`, a few at once, each linked into the snapshot as soon as it is complete and checked.
    private func fetch(_ files: [String], of repo: String, listing: RepositoryListing) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var waiting = files[...]
            for _ in 0..<min(parallelFiles, files.count) {
                let path = waiting.removeFirst()
                group.addTask { try await self.fetchFile(path, of: repo, listing: listing) }
            }
            while try await group.next() != nil {
                if let path = waiting.popFirst() {
                    group.addTask { try await self.fetchFile(path, of: repo, listing: listing) }
                }
            }
        }
    }

    private func fetchFile(_ path: String, of repo: String, listing: RepositoryListing) async throws {
        let metadata = try await metadata(path, of: repo, commit: listing.commit)
        let blob = cache.blob(repo, etag: metadata.etag)
        if FileManager.default.fileExists(atPath: blob.path) {
            try cache.link(repo, commit: listing.commit, path: path, etag: metadata.etag)
            progress.alreadyCached(path)
            return
        }
        // An LFS file's ETag is its SHA-256; the listing says so too. A git file (ETag: its git hash) has none.
        let sha256 = isSHA256(metadata.etag) ? metadata.etag : listing.file(path)?.sha256
        let incomplete = cache.incompleteBlob(repo, etag: metadata.etag)
        try createDirectory(incomplete.deletingLastPathComponent())
        let started = Date()
        var attempt = 1
        var digest: String?
        while true {
            do {
                digest = try await download(
                    metadata.location, to: incomplete, file: path, size: metadata.size, hashing: sha256 != nil)
                break
            } catch is TransferBroke where attempt < attempts {
                attempt += 1
            } catch let error as TransferBroke {
                let have = HubCache.fileSize(incomplete) ?? 0
                throw WhaleError(
                    .networkError, field: "\(repo)/\(path)",
                    "the download stopped after \(formatBytes(have)): \(error.reason)",
                    hint: "run the same command again: it resumes from there")
            }
        }
        let have = HubCache.fileSize(incomplete) ?? 0
        if let size = metadata.size, have != size {
            try? FileManager.default.removeItem(at: incomplete)
            throw WhaleError(
                .truncated, field: "\(repo)/\(path)", "received \(have) bytes, the Hub said \(size)",
                hint: "run the same command again")
        }
        if let sha256, let digest, digest != sha256 {
            try? FileManager.default.removeItem(at: incomplete)
            throw WhaleError(
                .checksumMismatch, field: "\(repo)/\(path)",
                "the downloaded bytes have SHA-256 \(digest), the Hub says \(sha256); nothing was kept",
                hint: "run the same command again; if it persists, the file on the Hub or a proxy is corrupt")
        }
        do {
            if FileManager.default.fileExists(atPath: blob.path) {
                try FileManager.default.removeItem(at: incomplete)  // another pull finished it meanwhile
            } else {
                try FileManager.default.moveItem(at: incomplete, to: blob)
            }
        } catch {
            throw WhaleError(
                .ioError, file: blob.path,
                "cannot move the finished download into place: \(error.localizedDescription)",
                hint: "check the cache folder is writable")
        }
        try cache.link(repo, commit: listing.commit, path: path, etag: metadata.etag)
        progress.finished(path, bytes: have, seconds: Date().timeIntervalSince(started))
    }

    /// A transfer that broke off (connection dropped, timed out): worth resuming.
    private struct TransferBroke: Error {
        var reason: String
    }

    /// Appends the rest of the file at `url` to `incomplete`, from its current size (a Range request), and with
    /// `hashing` returns the whole file's SHA-256 (the part already there hashed first, the rest as it
    /// arrives: no second pass over a large file). Following redirects by hand, the Authorization header
    /// goes only to the Hub itself.
    private func download(_ url: String, to incomplete: URL, file: String, size: Int64?, hashing: Bool)
        async throws -> String?
    {
        var offset = HubCache.fileSize(incomplete) ?? 0
        if let size, offset > size {
            try? FileManager.default.removeItem(at: incomplete)
            offset = 0
        }
        if let size, offset == size, size > 0 { return hashing ? try hashFile(incomplete) : nil }
        var url = url
        var response: HTTPClientResponse?
        for _ in 0..<5 {
            var request = HTTPClientRequest(url: url)
            addHeaders(&request, sendingToken: isHub(url))
            if offset > 0 { request.headers.add(name: "Range", value: "bytes=\(offset)-") }
            let answer: HTTPClientResponse
            do {
                answer = try await http.execute(request, timeout: .hours(24))
            } catch {
                throw TransferBroke(reason: describe(error))
            }
            if (300..<400).contains(answer.status.code), let location = answer.headers.first(name: "Location") {
                url = location.hasPrefix("/") ? origin(of: url) + location : location
                continue
            }
            response = answer
            break
        }
        guard let response else {
            throw WhaleError(
                .networkError, field: file, "more than 5 redirects",
                hint: "check HF_ENDPOINT points at a Hugging Face Hub")
        }
        switch response.status.code {
        case 206:
            break
        case 200:
            offset = 0  // the server ignored the Range (or there was none): from the start
        case 416 where offset > 0:
            // The partial file is not a prefix the server recognizes: start over.
            try? FileManager.default.removeItem(at: incomplete)
            throw TransferBroke(reason: "the server refused to resume (HTTP 416)")
        default:
            throw statusError(response, repo: nil, revision: nil, file: file)
        }
        let descriptor = open(incomplete.path, O_WRONLY | O_CREAT | (offset == 0 ? O_TRUNC : O_APPEND), 0o644)
        guard descriptor >= 0 else {
            throw WhaleError(
                .ioError, file: incomplete.path, "cannot write: \(String(cString: strerror(errno)))",
                hint: "check the cache folder is writable")
        }
        defer { close(descriptor) }
        var hasher: SHA256? = hashing ? (offset > 0 ? try hashPrefix(incomplete) : SHA256()) : nil
        do {
            for try await buffer in response.body {
                try buffer.withUnsafeReadableBytes { bytes in
                    try writeAll(descriptor, bytes, path: incomplete.path)
                    hasher?.update(bytes)
                }
                progress.advance(Int64(buffer.readableBytes))
            }
        } catch let error as WhaleError {
            throw error
        } catch {
            throw TransferBroke(reason: describe(error))
        }
        return hasher?.hexDigest()
    }

    // MARK: Helpers

    private func addHeaders(_ request: inout HTTPClientRequest, sendingToken: Bool) {
        request.headers.add(name: "User-Agent", value: "whale; hf_hub-compatible")
        request.headers.add(name: "Accept-Encoding", value: "identity")
        if sendingToken, let token = settings.token {
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
        }
    }

    private func execute(_ request: HTTPClientRequest) async throws -> HTTPClientResponse {
        do {
            return try await http.execute(request, timeout: .seconds(60))
        } catch {
            throw unreachable(error)
        }
    }

    private func collect(_ body: HTTPClientResponse.Body, upTo limit: Int) async throws -> ByteBuffer {
        do {
            return try await body.collect(upTo: limit)
        } catch {
            throw unreachable(error)
        }
    }

    private func unreachable(_ error: Error) -> WhaleError {
        WhaleError(
            .networkError, field: settings.endpoint, "cannot reach the Hub: \(describe(error))",
            hint: "check the network and HF_ENDPOINT; with HF_HUB_OFFLINE=1 whale uses only the cache, "
                + cachedSummary())
    }

    /// What is cached, for the offline hint.
    private func cachedSummary() -> String {
        let repositories = cache.repositories()
        if repositories.isEmpty { return "which is empty (\(cache.root.path))" }
        return "which has \(repositories.prefix(10).joined(separator: ", "))"
            + (repositories.count > 10 ? " and \(repositories.count - 10) more" : "")
    }

    /// The Hub's answer as an error: its `X-Error-Code` when it sends one, else the status.
    private func statusError(_ response: HTTPClientResponse, repo: String?, revision: String?, file: String?)
        -> WhaleError
    {
        let code = response.headers.first(name: "X-Error-Code")
        let status = Int(response.status.code)
        let repoName = repo ?? "the repository"
        let login = "set HF_TOKEN (or run `huggingface-cli login`)"
        if code == "GatedRepo" {
            return WhaleError(
                .accessDenied, field: repoName, "the repository is gated",
                hint: "accept its licence at \(settings.endpoint)/\(repoName), then \(login)")
        }
        if code == "RepositoryNotFound" || (code == nil && status == 404 && file == nil) {
            return WhaleError(
                .fileNotFound, field: repoName, "no such repository on \(settings.endpoint)",
                hint: settings.token == nil
                    ? "check the name; a private repository needs a token: \(login)"
                    : "check the name, and that your token may read it")
        }
        if code == "RevisionNotFound" {
            return WhaleError(
                .fileNotFound, field: repoName, "no revision \(revision ?? "") in the repository",
                hint: "name a branch, tag or commit that exists, or leave out @REVISION")
        }
        if code == "EntryNotFound" || status == 404 {
            return WhaleError(
                .fileNotFound, field: "\(repoName)/\(file ?? "")", "no such file in the repository",
                hint: "pick files the repository has (`--include`)")
        }
        if status == 401 || status == 403 {
            return WhaleError(
                .accessDenied, field: repoName, "the Hub refused access (HTTP \(status))",
                hint: settings.token == nil
                    ? "a gated or private repository needs a token: \(login); for a gated one accept its licence at "
                        + "\(settings.endpoint)/\(repoName)"
                    : "check that your token may read it and that you accepted its licence at "
                        + "\(settings.endpoint)/\(repoName)")
        }
        return WhaleError(
            .networkError, field: file ?? repoName, "the Hub answered HTTP \(status)",
            hint: status >= 500 ? "the Hub has a problem; try again later" : "check HF_ENDPOINT")
    }

    /// Refuses a pull of `needed` more bytes than the cache's disk has free.
    private func checkFreeSpace(_ needed: Int64, for repo: String) throws {
        try createDirectory(cache.folder(repo))
        var stats = statvfs()
        guard statvfs(cache.root.path, &stats) == 0 else { return }
        let free = Int64(stats.f_bavail) * Int64(stats.f_frsize)
        // A little room to spare: a disk filled to the last byte breaks other programs.
        guard needed + (64 << 20) > free else { return }
        throw WhaleError(
            .diskFull, file: cache.root.path,
            "\(repo) needs \(formatBytes(needed)), the disk has \(formatBytes(free)) free",
            hint: "free some space (`whale list`, `whale rm`), or set HF_HUB_CACHE to a folder on a bigger disk")
    }

    private func isHub(_ url: String) -> Bool { origin(of: url) == origin(of: settings.endpoint) }

    /// `scheme://host:port` of a URL, for same-host checks and relative redirects.
    private func origin(of url: String) -> String {
        guard let parts = URLComponents(string: url), let scheme = parts.scheme, let host = parts.host else {
            return url
        }
        let port = parts.port ?? (scheme == "https" ? 443 : 80)
        return "\(scheme)://\(host):\(port)"
    }
}

/// `W/"abc"` → `abc`: huggingface_hub's normalization of an ETag.
func normalizedETag(_ etag: String) -> String {
    var text = etag.trimmingCharacters(in: .whitespaces)
    if text.hasPrefix("W/") { text.removeFirst(2) }
    return text.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
}

func isSHA256(_ text: String) -> Bool { text.count == 64 && text.allSatisfy(\.isHexDigit) }

/// huggingface_hub's `quote`: everything but unreserved characters (and `/` in a file path) percent-encoded.
func percentEncoded(_ text: String, keepingSlashes: Bool) -> String {
    var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
    if keepingSlashes { allowed.insert("/") }
    return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
}

func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}

private func describe(_ error: Error) -> String {
    if let error = error as? HTTPClientError { return "\(error)" }
    return String(describing: error)
}

private func createDirectory(_ url: URL) throws {
    do {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    } catch {
        throw WhaleError(
            .ioError, file: url.path, "cannot create the folder: \(error.localizedDescription)",
            hint: "check the cache folder is writable, or set HF_HUB_CACHE")
    }
}

private func hashFile(_ url: URL) throws -> String { try hashPrefix(url).hexDigest() }

/// The hash state after a file's bytes, read in 4 MiB pieces.
private func hashPrefix(_ url: URL) throws -> SHA256 {
    guard let handle = try? FileHandle(forReadingFrom: url) else {
        throw WhaleError(.ioError, file: url.path, "cannot read the downloaded file")
    }
    defer { try? handle.close() }
    var hasher = SHA256()
    while let chunk = try handle.read(upToCount: 4 << 20), !chunk.isEmpty {
        chunk.withUnsafeBytes { hasher.update($0) }
    }
    return hasher
}

/// `write` until every byte is out; a full disk is a `diskFull` error.
private func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws {
    var offset = 0
    while offset < bytes.count {
        let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0 {
            if errno == EINTR { continue }
            if errno == ENOSPC {
                throw WhaleError(
                    .diskFull, file: path, "no space left on the disk",
                    hint: "free some space and run the same command again: it resumes")
            }
            throw WhaleError(.ioError, file: path, "cannot write: \(String(cString: strerror(errno)))")
        }
        offset += written
    }
}
