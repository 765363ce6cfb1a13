package io.vhostd.master.stats;

/**
 * A latency histogram of one bdev, segment and op, merged over its controllers and queues (spec/stats.md
 * "Histograms"). Only non-empty buckets are listed.
 *
 * @param segment {@code fetch_to_submit}, {@code submit_to_device}, {@code device}, {@code device_to_used},
 *     {@code used_to_notify} or {@code total}
 * @param op {@code read}, {@code write}, {@code flush}, {@code unmap} or {@code write_zeroes}
 * @param count samples
 * @param sumTicks sum of the samples, ns
 * @param bucketHighTicks each bucket's inclusive upper bound, ns, ascending
 * @param bucketCounts each bucket's samples (not cumulative), same length as {@code bucketHighTicks}
 */
public record HistogramSnapshot(
        String segment, String op, long count, long sumTicks, long[] bucketHighTicks, long[] bucketCounts) {}
