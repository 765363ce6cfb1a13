package io.vhostd.shm.stats;

/**
 * A latency histogram merged on the reading side from any number of queues' histograms (same bucket layout: {@link
 * LatencyBuckets}). Not thread-safe; one per query.
 */
public final class HistogramAccumulator {
    private final long[] buckets = new long[LatencyBuckets.BUCKET_COUNT];
    private long count;
    private long sumNs;
    private long minNs = Long.MAX_VALUE;
    private long maxNs;

    /** Adds one sample (tests, and merging by hand). */
    public void record(final long valueNs) {
        final long value = Math.max(0, valueNs);
        buckets[LatencyBuckets.bucketIndex(value)]++;
        count++;
        sumNs += value;
        minNs = Math.min(minNs, value);
        maxNs = Math.max(maxNs, value);
    }

    void add(final long addCount, final long addSumNs, final long addMinNs, final long addMaxNs, final long[] add) {
        if (addCount == 0) {
            return;
        }
        count += addCount;
        sumNs += addSumNs;
        minNs = Math.min(minNs, addMinNs);
        maxNs = Math.max(maxNs, addMaxNs);
        for (int i = 0; i < buckets.length; i++) {
            buckets[i] += add[i];
        }
    }

    /** Adds another accumulator's samples. */
    public void add(final HistogramAccumulator other) {
        add(other.count, other.sumNs, other.minNs, other.maxNs, other.buckets);
    }

    /**
     * Removes a baseline taken earlier from the same histograms (reader-side reset). Min and max are narrowed to the
     * bounds of the buckets that still hold samples (the exact extremes of the window are not kept).
     */
    public void subtract(final HistogramAccumulator baseline) {
        if (baseline.count == 0) {
            return;
        }
        count = Math.max(0, count - baseline.count);
        sumNs = Math.max(0, sumNs - baseline.sumNs);
        int first = -1;
        int last = -1;
        for (int i = 0; i < buckets.length; i++) {
            buckets[i] = Math.max(0, buckets[i] - baseline.buckets[i]);
            if (buckets[i] > 0) {
                first = first < 0 ? i : first;
                last = i;
            }
        }
        if (count == 0 || first < 0) {
            count = 0;
            sumNs = 0;
            minNs = Long.MAX_VALUE;
            maxNs = 0;
            return;
        }
        minNs = Math.max(minNs, LatencyBuckets.bucketLowNs(first));
        maxNs = Math.min(maxNs, LatencyBuckets.bucketHighNs(last));
    }

    public long count() {
        return count;
    }

    public long sumNs() {
        return sumNs;
    }

    /** The smallest sample, 0 when empty. */
    public long minNs() {
        return count == 0 ? 0 : minNs;
    }

    public long maxNs() {
        return maxNs;
    }

    /** Samples in bucket {@code index} (not cumulative). */
    public long bucketCount(final int index) {
        return buckets[index];
    }

    /**
     * The value at quantile {@code q} (0..1]: the upper bound of the bucket holding the sample of rank
     * {@code ceil(q * count)}, capped at the largest sample (HdrHistogram's "highest equivalent value"); 0 when empty.
     */
    public long percentileNs(final double q) {
        if (count == 0) {
            return 0;
        }
        final long rank = Math.max(1, (long) Math.ceil(q * count));
        long seen = 0;
        for (int i = 0; i < buckets.length; i++) {
            seen += buckets[i];
            if (seen >= rank) {
                return Math.max(minNs(), Math.min(maxNs, LatencyBuckets.bucketHighNs(i)));
            }
        }
        return maxNs;
    }
}
