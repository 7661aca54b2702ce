import Foundation
import WhaleCore
import WhaleFormats

/// llama-perplexity's log-probability file (`--kl-divergence-base FILE`), read and written byte for byte as
/// llama.cpp does, so a base file made by either tool measures the other:
///
///     "_logits_"                       8 bytes
///     n_ctx, n_vocab, n_chunk          3 × Int32, little-endian
///     tokens                           n_chunk × n_ctx × Int32: the text, as tokenized (no BOS substitution)
///     per chunk, per scored position   n_ctx − 1 − n_ctx/2 rows of `rowWidth(n_vocab)` UInt16:
///       Float32 scale, Float32 min_log_prob (4 UInt16), then one UInt16 per vocabulary entry,
///       log p(v) ≈ scale × code + min_log_prob (an even count: padded to a multiple of 2)
///
/// A row keeps log-probabilities down to 16 nats below the most likely token (lower ones are code 0) in 65,536
/// steps; llama.cpp's KL divergence treats anything below −16 as zero probability.
public enum LogProbabilityFile {
    public static let magic = Array("_logits_".utf8)
    static let headerBytes = 8 + 3 * 4

    /// UInt16 values per scored position.
    public static func rowWidth(vocabulary: Int) -> Int { 2 * ((vocabulary + 1) / 2) + 4 }

    /// Rows per chunk: every position of the second half but the last (which has no next token).
    public static func rowsPerChunk(contextSize n: Int) -> Int { n - 1 - n / 2 }

    public struct Header: Sendable, Equatable {
        public var contextSize: Int
        public var vocabularySize: Int
        public var chunkCount: Int
        /// The evaluated text: `chunkCount × contextSize` token ids.
        public var tokens: [Int]

        public init(contextSize: Int, vocabularySize: Int, chunkCount: Int, tokens: [Int]) {
            self.contextSize = contextSize
            self.vocabularySize = vocabularySize
            self.chunkCount = chunkCount
            self.tokens = tokens
        }

        /// Bytes of the whole file this header describes.
        var fileBytes: Int {
            let rows = chunkCount * LogProbabilityFile.rowsPerChunk(contextSize: contextSize)
            return LogProbabilityFile.headerBytes + tokens.count * 4
                + rows * LogProbabilityFile.rowWidth(vocabulary: vocabularySize) * 2
        }
    }

    /// Compresses one position's logits into a row (llama-perplexity's `log_softmax` with an output row):
    /// float max and min (the min raised to max − 16), a double sum of float exponentials, codes rounded to
    /// nearest. Returns the negative log-likelihood of `token`.
    @discardableResult
    public static func encode(
        logits: UnsafePointer<Float>, vocabulary: Int, token: Int, into row: UnsafeMutablePointer<UInt16>
    ) -> Double {
        var maxLogit = logits[0]
        var minLogit = logits[0]
        for i in 1..<vocabulary {
            maxLogit = max(maxLogit, logits[i])
            minLogit = min(minLogit, logits[i])
        }
        minLogit = max(minLogit, maxLogit - 16)
        var sumExp = 0.0
        for i in 0..<vocabulary { sumExp += Double(expf(logits[i] - maxLogit)) }
        let logSumExp = Float(log(sumExp))
        let minLogProbability = minLogit - maxLogit - logSumExp
        let scale = (maxLogit - minLogit) / 65535
        UnsafeMutableRawPointer(row).storeBytes(of: scale, as: Float.self)
        UnsafeMutableRawPointer(row + 2).storeBytes(of: minLogProbability, as: Float.self)
        let codes = row + 4
        let width = rowWidth(vocabulary: vocabulary) - 4
        if scale != 0 {
            let inverseScale = 1 / scale
            for i in 0..<vocabulary {
                let code = (inverseScale * (logits[i] - minLogit)).rounded(.toNearestOrEven)
                codes[i] = logits[i] > minLogit ? UInt16(min(max(code, 0), 65535)) : 0
            }
        } else {
            codes.update(repeating: 0, count: vocabulary)
        }
        if width > vocabulary { codes[vocabulary] = 0 }
        return Double(maxLogit + logSumExp - logits[token])
    }

    /// Writes a base file: the header first, then each chunk's rows as they are computed.
    public final class Writer {
        let handle: FileHandle
        let path: String

        public init(path: String, header: Header) throws {
            self.path = path
            guard FileManager.default.createFile(atPath: path, contents: nil),
                let handle = FileHandle(forWritingAtPath: path)
            else {
                throw WhaleError(
                    .ioError, file: path, "cannot create the log-probability file",
                    hint: "check that the directory exists and is writable")
            }
            self.handle = handle
            var bytes = LogProbabilityFile.magic
            for value in [header.contextSize, header.vocabularySize, header.chunkCount] + header.tokens {
                withUnsafeBytes(of: Int32(truncatingIfNeeded: value).littleEndian) { bytes += $0 }
            }
            try write(bytes)
        }

        /// Appends rows (each `rowWidth` UInt16).
        public func append(_ rows: [UInt16]) throws {
            try rows.withUnsafeBytes { try write(Array($0)) }
        }

        public func close() throws {
            do { try handle.close() } catch {
                throw WhaleError(.ioError, file: path, "closing the file failed: \(error)")
            }
        }

        private func write(_ bytes: [UInt8]) throws {
            do { try handle.write(contentsOf: Data(bytes)) } catch {
                throw WhaleError(.ioError, file: path, "writing failed: \(error)", hint: "check free disk space")
            }
        }
    }

    /// Reads a base file, mapped: the header is validated against the file's size before anything else is
    /// read, so a truncated or foreign file is refused up front rather than midway.
    public final class Reader {
        public let header: Header
        let file: MappedFile
        var offset: Int

        public init(path: String) throws {
            file = try MappedFile(path: path)
            let bytes = file.bytes
            func int32(at offset: Int) -> Int {
                Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
            }
            guard bytes.count >= LogProbabilityFile.headerBytes, Array(bytes[0..<8]) == LogProbabilityFile.magic
            else {
                throw WhaleError(
                    .badMagic, file: path, "not a log-probability file (no \"_logits_\" header)",
                    hint: "write one with `whale perplexity MODEL -f TEXT --kl-divergence-base FILE` or "
                        + "llama-perplexity's --kl-divergence-base")
            }
            let contextSize = int32(at: 8)
            let vocabulary = int32(at: 12)
            let chunks = int32(at: 16)
            guard contextSize >= 4, contextSize <= 1 << 22, vocabulary >= 1, vocabulary <= 1 << 24, chunks >= 1,
                chunks <= 1 << 20
            else {
                throw WhaleError(
                    .invalidValue, file: path, field: "header",
                    "context \(contextSize), vocabulary \(vocabulary), chunks \(chunks) are not a valid header")
            }
            let tokenCount = contextSize * chunks
            let tokenEnd = LogProbabilityFile.headerBytes + tokenCount * 4
            guard tokenEnd <= bytes.count else {
                throw WhaleError(
                    .truncated, file: path, field: "tokens",
                    "\(tokenCount) tokens need \(tokenEnd) bytes, the file has \(bytes.count)",
                    hint: "the file is incomplete; write it again")
            }
            var tokens = [Int](repeating: 0, count: tokenCount)
            for i in 0..<tokenCount {
                let id = int32(at: LogProbabilityFile.headerBytes + 4 * i)
                guard id >= 0 && id < vocabulary else {
                    throw WhaleError(
                        .outOfBounds, file: path, field: "tokens[\(i)]",
                        "token id \(id) is outside the vocabulary of \(vocabulary)")
                }
                tokens[i] = id
            }
            header = Header(
                contextSize: contextSize, vocabularySize: vocabulary, chunkCount: chunks, tokens: tokens)
            guard header.fileBytes == bytes.count else {
                throw WhaleError(
                    header.fileBytes > bytes.count ? .truncated : .invalidValue, file: path,
                    "\(chunks) chunks of \(contextSize) tokens over a vocabulary of \(vocabulary) make "
                        + "\(header.fileBytes) bytes, the file has \(bytes.count)",
                    hint: "the file is incomplete or not a llama-perplexity base file; write it again")
            }
            offset = tokenEnd
        }

        /// The next chunk's rows (`rowsPerChunk × rowWidth` UInt16).
        public func nextChunk() -> UnsafeBufferPointer<UInt16> {
            let count =
                LogProbabilityFile.rowsPerChunk(contextSize: header.contextSize)
                * LogProbabilityFile.rowWidth(vocabulary: header.vocabularySize)
            let raw = file.bytes(at: offset, count: count * 2)
            offset += count * 2
            // Rows start at an even offset (header and tokens are multiples of 4 bytes) of a page-aligned mapping.
            return raw.bindMemory(to: UInt16.self)
        }
    }
}

/// KL divergence of a model's next-token distributions from a base file's, with llama-perplexity's
/// statistics (`kl_divergence_result`, the same float and double steps) and report.
public struct KLDivergenceStatistics: Sendable {
    var sumNLL = 0.0
    var sumNLL2 = 0.0
    var sumBaseNLL = 0.0
    var sumBaseNLL2 = 0.0
    var sumNLLBaseNLL = 0.0
    var sumKLD = 0.0
    var sumKLD2 = 0.0
    var sumPDiff = 0.0
    var sumPDiff2 = 0.0
    var sumPDiff4 = 0.0
    var maxPDiff: Float = 0
    var sameTopCount = 0
    public private(set) var count = 0
    /// Per position, in evaluation order.
    public private(set) var kldValues: [Float] = []
    public private(set) var pDiffValues: [Float] = []

    public init() {}

    /// Adds one position: the model's logits against the base row, `token` the next token of the text.
    public mutating func add(
        logits: UnsafePointer<Float>, vocabulary: Int, base row: UnsafePointer<UInt16>, token: Int
    ) {
        var maxLogit = logits[0]
        var top = 0
        for i in 1..<vocabulary where logits[i] > maxLogit {
            maxLogit = logits[i]
            top = i
        }
        var sumExp = 0.0
        for i in 0..<vocabulary { sumExp += Double(expf(logits[i] - maxLogit)) }
        let logSumExp = Float(log(sumExp))
        let scale = UnsafeRawPointer(row).loadUnaligned(as: Float.self)
        let minLogProbability = UnsafeRawPointer(row + 2).loadUnaligned(as: Float.self)
        let codes = row + 4

        let nll: Float = maxLogit + logSumExp - logits[token]
        sumNLL += Double(nll)
        sumNLL2 += Double(nll * nll)
        let baseNLL: Float = -(scale * Float(codes[token]) + minLogProbability)
        sumBaseNLL += Double(baseNLL)
        sumBaseNLL2 += Double(baseNLL * baseNLL)
        sumNLLBaseNLL += Double(nll * baseNLL)

        let logNormalizer = maxLogit + logSumExp
        var kld = 0.0
        var baseTop = -1
        var baseTopLogProbability: Float = 0
        for i in 0..<vocabulary {
            let baseLogProbability: Float = scale * Float(codes[i]) + minLogProbability
            if i == 0 || baseLogProbability > baseTopLogProbability {
                baseTopLogProbability = baseLogProbability
                baseTop = i
            }
            if baseLogProbability > -16 {
                let baseProbability = expf(baseLogProbability)
                let logRatio: Float = baseLogProbability - logits[i] + logNormalizer
                kld += Double(baseProbability * logRatio)
            }
        }
        sumKLD += kld
        sumKLD2 += kld * kld
        count += 1
        if top == baseTop { sameTopCount += 1 }

        let pDiff: Float = expf(-nll) - expf(-baseNLL)
        sumPDiff += Double(pDiff)
        let pDiff2 = Double(pDiff * pDiff)
        sumPDiff2 += pDiff2
        sumPDiff4 += pDiff2 * pDiff2
        maxPDiff = max(maxPDiff, abs(pDiff))
        kldValues.append(Float(kld))
        pDiffValues.append(pDiff)
    }

    /// Mean and its standard error, as llama-perplexity computes them.
    static func meanAndUncertainty(_ sum: Double, _ sum2: Double, _ count: Int) -> (Double, Double) {
        guard count >= 1 else { return (0, 0) }
        let mean = sum / Double(count)
        let variance = sum2 / Double(count) - mean * mean
        return (mean, variance > 0 && count > 10 ? (variance / Double(count - 1)).squareRoot() : 0)
    }

    static func covariance(_ a: Double, _ b: Double, _ ab: Double, _ count: Int) -> Double {
        guard count >= 10 else { return 0 }
        let n = Double(count)
        return (ab / n - (a / n) * (b / n)) / (n - 1)
    }

    public var perplexity: (value: Double, uncertainty: Double) {
        let (mean, error) = Self.meanAndUncertainty(sumNLL, sumNLL2, count)
        return (exp(mean), exp(mean) * error)
    }
    public var basePerplexity: (value: Double, uncertainty: Double) {
        let (mean, error) = Self.meanAndUncertainty(sumBaseNLL, sumBaseNLL2, count)
        return (exp(mean), exp(mean) * error)
    }
    public var meanKLD: (value: Double, uncertainty: Double) { Self.meanAndUncertainty(sumKLD, sumKLD2, count) }
    /// Root mean square of p(token) − p_base(token).
    public var rmsProbabilityDifference: (value: Double, uncertainty: Double) {
        let (mse, error) = Self.meanAndUncertainty(sumPDiff2, sumPDiff4, count)
        let rms = mse.squareRoot()
        return (rms, 0.5 / rms * error)
    }
    /// How often the model's most likely token is the base's.
    public var sameTop: (value: Double, uncertainty: Double) {
        let p = Double(sameTopCount) / Double(max(count, 1))
        return (p, count > 1 ? (p * (1 - p) / Double(count - 1)).squareRoot() : 0)
    }

    var logRatio: (value: Double, uncertainty: Double, covariance: Double) {
        let q = Self.meanAndUncertainty(sumNLL, sumNLL2, count)
        let base = Self.meanAndUncertainty(sumBaseNLL, sumBaseNLL2, count)
        let covariance = Self.covariance(sumNLL, sumBaseNLL, sumNLLBaseNLL, count)
        let uncertainty = (q.1 * q.1 + base.1 * base.1 - 2 * covariance).squareRoot()
        return (q.0 - base.0, uncertainty, covariance)
    }

    /// llama-perplexity's line after each chunk.
    public func chunkLine(_ chunk: Int) -> String {
        let ppl = perplexity
        let ratio = logRatio
        let kld = meanKLD
        let rms = rmsProbabilityDifference
        let top = sameTop
        return String(format: "%4d    %9.4f ± %9.4f", chunk + 1, ppl.value, ppl.uncertainty)
            + String(format: "    %10.5f ± %10.5f", ratio.value, ratio.uncertainty)
            + String(format: "    %10.5f ± %10.5f", kld.value, kld.uncertainty)
            + String(format: "    %6.3f ± %6.3f %%", 100 * rms.value, 100 * rms.uncertainty)
            + String(format: "    %6.3f ± %6.3f %%", 100 * top.value, 100 * top.uncertainty)
    }

    public static let chunkHeader =
        "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS"
        + "            Same top p"

    /// Linear interpolation between sorted values, as llama-perplexity's `percentile`.
    static func percentile(_ sorted: [Float], _ fraction: Float) -> Float {
        if fraction <= 0 { return sorted[0] }
        if fraction >= 1 { return sorted[sorted.count - 1] }
        var p = fraction * Float(sorted.count - 1)
        let index = Int(p)
        p -= Float(index)
        return (1 - p) * sorted[index] + p * sorted[min(index + 1, sorted.count - 1)]
    }

    static func median(_ sorted: [Float]) -> Float {
        let n = sorted.count
        return n % 2 == 0 ? 0.5 * (sorted[n / 2] + sorted[n / 2 - 1]) : sorted[n / 2]
    }

    static let upperPercentiles: [(String, Float)] = [("99.9", 0.999), ("99.0", 0.99), ("95.0", 0.95), ("90.0", 0.9)]
    static let lowerPercentiles: [(String, Float)] = [("10.0", 0.1), (" 5.0", 0.05), (" 1.0", 0.01), (" 0.1", 0.001)]

    /// llama-perplexity's closing statistics, label for label (it prints none for fewer than 100 positions).
    public func report() -> [String] {
        guard count >= 100 else { return [] }
        var lines: [String] = ["====== Perplexity statistics ======"]
        let ppl = perplexity
        let base = basePerplexity
        let q = Self.meanAndUncertainty(sumNLL, sumNLL2, count)
        let b = Self.meanAndUncertainty(sumBaseNLL, sumBaseNLL2, count)
        let ratio = logRatio
        lines.append(String(format: "Mean PPL(Q)                   : %10.6f ± %10.6f", ppl.value, ppl.uncertainty))
        lines.append(String(format: "Mean PPL(base)                : %10.6f ± %10.6f", base.value, base.uncertainty))
        lines.append(String(format: "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%", 100 * ratio.covariance / (q.1 * b.1)))
        lines.append(String(format: "Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f", ratio.value, ratio.uncertainty))
        let pplRatio = exp(ratio.value)
        lines.append(
            String(format: "Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f", pplRatio, pplRatio * ratio.uncertainty))
        let pplCovariance = ppl.value * base.value * ratio.covariance
        let difference = ppl.value - base.value
        let differenceError =
            (ppl.uncertainty * ppl.uncertainty + base.uncertainty * base.uncertainty
            - 2 * pplCovariance).squareRoot()
        lines.append(String(format: "Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f", difference, differenceError))
        lines.append("")

        lines.append("====== KL divergence statistics ======")
        let kld = meanKLD
        let kls = kldValues.sorted()
        lines.append(String(format: "Mean    KLD: %10.6f ± %10.6f", kld.value, kld.uncertainty))
        lines.append(String(format: "Maximum KLD: %10.6f", kls[kls.count - 1]))
        for (label, fraction) in Self.upperPercentiles {
            lines.append("\(label)%   KLD: " + String(format: "%10.6f", Self.percentile(kls, fraction)))
        }
        lines.append(String(format: "Median  KLD: %10.6f", Self.median(kls)))
        for (label, fraction) in Self.lowerPercentiles {
            lines.append("\(label)%   KLD: " + String(format: "%10.6f", Self.percentile(kls, fraction)))
        }
        lines.append(String(format: "Minimum KLD: %10.6f", kls[0]))
        lines.append("")

        lines.append("====== Token probability statistics ======")
        let pDiff = Self.meanAndUncertainty(sumPDiff, sumPDiff2, count)
        let ps = pDiffValues.sorted()
        lines.append(String(format: "Mean    Δp: %6.3f ± %5.3f %%", 100 * pDiff.0, 100 * pDiff.1))
        lines.append(String(format: "Maximum Δp: %6.3f%%", 100 * ps[ps.count - 1]))
        for (label, fraction) in Self.upperPercentiles + [("75.0", 0.75)] {
            lines.append("\(label)%   Δp: " + String(format: "%6.3f%%", 100 * Self.percentile(ps, fraction)))
        }
        lines.append(String(format: "Median  Δp: %6.3f%%", 100 * Self.median(ps)))
        for (label, fraction) in [("25.0", 0.25)] + Self.lowerPercentiles {
            lines.append("\(label)%   Δp: " + String(format: "%6.3f%%", 100 * Self.percentile(ps, fraction)))
        }
        lines.append(String(format: "Minimum Δp: %6.3f%%", 100 * ps[0]))
        let rms = rmsProbabilityDifference
        lines.append(String(format: "RMS Δp    : %6.3f ± %5.3f %%", 100 * rms.value, 100 * rms.uncertainty))
        let top = sameTop
        lines.append(String(format: "Same top p: %6.3f ± %5.3f %%", 100 * top.value, 100 * top.uncertainty))
        return lines
    }
}
