package io.vhostd.shm.stats;

/**
 * The log-linear bucket layout of every latency histogram (spec/stats.md "Histograms"), the same in every region so
 * that histograms of queues, controllers and bdevs merge by adding bucket counts. Values are nanoseconds. Values below
 * {@code 2^SUB_BUCKET_BITS} have a bucket each; above, every power of two {@code [2^e, 2^(e+1))} is cut into {@code
 * 2^SUB_BUCKET_BITS} equal sub-buckets (relative error below 1/16). Values at or above {@code 2^MAX_EXPONENT} ns
 * (about 18 minutes) land in the last bucket.
 */
public final class LatencyBuckets {
    /** Sub-buckets per power of two: 2^4 = 16. */
    public static final int SUB_BUCKET_BITS = 4;

    /** Sub-buckets per power of two. */
    public static final int SUB_BUCKETS = 1 << SUB_BUCKET_BITS;

    /** Values {@code >= 2^MAX_EXPONENT} ns share the last bucket. */
    public static final int MAX_EXPONENT = 40;

    /** Buckets per histogram: 16 exact ones, then 16 per power of two from 2^4 to 2^39. */
    public static final int BUCKET_COUNT = SUB_BUCKETS + (MAX_EXPONENT - SUB_BUCKET_BITS) * SUB_BUCKETS;

    private LatencyBuckets() {}

    /** The bucket of {@code valueNs}; negative values (a clock that went backwards between processes) count as 0. */
    public static int bucketIndex(final long valueNs) {
        if (valueNs < SUB_BUCKETS) {
            return valueNs < 0 ? 0 : (int) valueNs;
        }
        final int exponent = 63 - Long.numberOfLeadingZeros(valueNs);
        if (exponent >= MAX_EXPONENT) {
            return BUCKET_COUNT - 1;
        }
        final int mantissa = (int) (valueNs >>> (exponent - SUB_BUCKET_BITS)) & (SUB_BUCKETS - 1);
        return (exponent - SUB_BUCKET_BITS + 1) * SUB_BUCKETS + mantissa;
    }

    /** The smallest value of bucket {@code index}, ns. */
    public static long bucketLowNs(final int index) {
        if (index < SUB_BUCKETS) {
            return index;
        }
        final int exponent = index / SUB_BUCKETS + SUB_BUCKET_BITS - 1;
        final long mantissa = index % SUB_BUCKETS;
        return (SUB_BUCKETS + mantissa) << (exponent - SUB_BUCKET_BITS);
    }

    /** The largest value of bucket {@code index}, ns (the last bucket: {@code Long.MAX_VALUE}). */
    public static long bucketHighNs(final int index) {
        if (index == BUCKET_COUNT - 1) {
            return Long.MAX_VALUE;
        }
        return bucketLowNs(index + 1) - 1;
    }
}
