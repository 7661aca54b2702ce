/// The indices of the `k` largest values, largest first, ties going to the lower index: exactly the first k
/// of every index sorted by (value, −index) descending, found in one pass with a k-entry heap. Sorting a
/// 49k–150k-entry vocabulary for top-k sampling or top logprobs cost milliseconds per token — more than a small
/// model's whole forward pass; this costs one comparison per value against the heap's weakest entry.
@inlinable
public func largestIndices<Value: BinaryFloatingPoint>(_ values: UnsafeBufferPointer<Value>, count k: Int) -> [Int] {
    let k = min(max(k, 0), values.count)
    if k == 0 { return [] }
    /// Ranks a above b: larger value, or the same value at a lower index.
    @inline(__always) func above(_ a: Int, _ b: Int) -> Bool {
        values[a] > values[b] || (values[a] == values[b] && a < b)
    }
    // A heap whose root is the weakest index kept: every parent ranks at most as high as its children.
    var heap = [Int]()
    heap.reserveCapacity(k)
    for index in 0..<values.count {
        if heap.count < k {
            heap.append(index)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard above(heap[parent], heap[child]) else { break }
                heap.swapAt(parent, child)
                child = parent
            }
        } else if above(index, heap[0]) {
            heap[0] = index
            var parent = 0
            while true {
                let left = 2 * parent + 1
                if left >= k { break }
                let right = left + 1
                let weaker = right < k && above(heap[left], heap[right]) ? right : left
                guard above(heap[parent], heap[weaker]) else { break }
                heap.swapAt(parent, weaker)
                parent = weaker
            }
        }
    }
    heap.sort(by: above)
    return heap
}

/// Every index ordered by value, largest first, ties going to the lower index — the order sorting by
/// (value, −index) gives (−0 and +0 count as equal, as there) — by a stable radix sort of the values' bit
/// patterns: three counting passes instead of ~n·log n closure comparisons (sampling without top-k sorts the
/// whole vocabulary for every token).
public func descendingOrder(_ values: UnsafeBufferPointer<Float>) -> [Int] {
    let n = values.count
    // An unsigned key that grows as the value shrinks: the float's bits made order-preserving, inverted.
    var keys = [UInt32](repeating: 0, count: n)
    var order = [Int32](repeating: 0, count: n)
    for i in 0..<n {
        let value = values[i] == 0 ? 0 : values[i]
        let bits = value.bitPattern
        keys[i] = bits & 0x8000_0000 != 0 ? bits : ~(bits | 0x8000_0000)
        order[i] = Int32(i)
    }
    var nextKeys = [UInt32](repeating: 0, count: n)
    var nextOrder = [Int32](repeating: 0, count: n)
    let radixBits = 11
    let buckets = 1 << radixBits
    var counts = [Int](repeating: 0, count: buckets)
    for shift in stride(from: 0, to: 32, by: radixBits) {
        for b in 0..<buckets { counts[b] = 0 }
        for i in 0..<n { counts[Int((keys[i] >> UInt32(shift)) & UInt32(buckets - 1))] += 1 }
        var start = 0
        for b in 0..<buckets {
            let count = counts[b]
            counts[b] = start
            start += count
        }
        for i in 0..<n {
            let bucket = Int((keys[i] >> UInt32(shift)) & UInt32(buckets - 1))
            let slot = counts[bucket]
            counts[bucket] = slot + 1
            nextKeys[slot] = keys[i]
            nextOrder[slot] = order[i]
        }
        swap(&keys, &nextKeys)
        swap(&order, &nextOrder)
    }
    return order.map { Int($0) }
}
