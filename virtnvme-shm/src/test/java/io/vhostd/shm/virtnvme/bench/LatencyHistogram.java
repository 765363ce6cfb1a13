package io.vhostd.shm.virtnvme.bench;

import java.util.Arrays;

/**
 * A preallocated log-linear histogram of nanosecond values, so that recording allocates nothing and costs a few
 * instructions: values below {@value #LINEAR_LIMIT_NS} ns are counted exactly, larger ones in 1024 buckets per power of
 * two (relative error below 0.1 %), as HdrHistogram does with 3 significant digits. One writer thread; read after the
 * writer has finished (the caller orders the two, e.g. with {@link Thread#join()}).
 */
final class LatencyHistogram {
    /** Sub-buckets per power of two: 2^10, so a bucket is at most 1/1024 of its value wide. */
    private static final int SUB_BUCKET_BITS = 10;

    private static final int SUB_BUCKET_COUNT = 1 << SUB_BUCKET_BITS;
    /** Values below this many nanoseconds have a bucket each. */
    static final int LINEAR_LIMIT_NS = 2 << SUB_BUCKET_BITS;

    private static final int FIRST_LOG_EXPONENT = SUB_BUCKET_BITS + 1;
    private static final int LAST_EXPONENT = 62;

    private final long[] counts =
            new long[LINEAR_LIMIT_NS + (LAST_EXPONENT - FIRST_LOG_EXPONENT + 1) * SUB_BUCKET_COUNT];
    private long totalCount;
    private long maxNs;

    /** Counts one value; a negative value counts as 0. */
    void record(final long valueNs) {
        final long v = Math.max(0, valueNs);
        counts[index(v)]++;
        totalCount++;
        if (v > maxNs) {
            maxNs = v;
        }
    }

    /** Forgets every value. */
    void reset() {
        Arrays.fill(counts, 0);
        totalCount = 0;
        maxNs = 0;
    }

    /** @return the number of values recorded */
    long totalCount() {
        return totalCount;
    }

    /** @return the largest value recorded, exactly; 0 when empty */
    long maxNs() {
        return maxNs;
    }

    /**
     * @param fraction in (0, 1], e.g. 0.999 for p99.9
     * @return the smallest bucket value v such that at least {@code fraction} of the values are at most v's bucket (the
     *     bucket's lower bound, exact below {@link #LINEAR_LIMIT_NS}); 0 when empty
     */
    long valueAtFractionNs(final double fraction) {
        if (totalCount == 0) {
            return 0;
        }
        final long rank = Math.max(1, (long) Math.ceil(fraction * totalCount));
        long seen = 0;
        for (int i = 0; i < counts.length; i++) {
            seen += counts[i];
            if (seen >= rank) {
                return Math.min(lowerBoundNs(i), maxNs);
            }
        }
        return maxNs;
    }

    static int index(final long valueNs) {
        if (valueNs < LINEAR_LIMIT_NS) {
            return (int) valueNs;
        }
        final int exponent = 63 - Long.numberOfLeadingZeros(valueNs);
        final int subBucket = (int) (valueNs >>> (exponent - SUB_BUCKET_BITS)) & (SUB_BUCKET_COUNT - 1);
        return LINEAR_LIMIT_NS + (exponent - FIRST_LOG_EXPONENT) * SUB_BUCKET_COUNT + subBucket;
    }

    static long lowerBoundNs(final int index) {
        if (index < LINEAR_LIMIT_NS) {
            return index;
        }
        final int k = index - LINEAR_LIMIT_NS;
        final int exponent = k / SUB_BUCKET_COUNT + FIRST_LOG_EXPONENT;
        final long mantissa = SUB_BUCKET_COUNT + (k % SUB_BUCKET_COUNT);
        return mantissa << (exponent - SUB_BUCKET_BITS);
    }
}
