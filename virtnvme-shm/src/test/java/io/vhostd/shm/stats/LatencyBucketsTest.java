package io.vhostd.shm.stats;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

@Timeout(10)
class LatencyBucketsTest {

    @ParameterizedTest
    @CsvSource({
        // value, index, low, high
        "0,     0,   0,     0",
        "15,    15,  15,    15",
        "16,    16,  16,    16",
        "31,    31,  31,    31",
        "32,    32,  32,    33",
        "33,    32,  32,    33",
        "48000, 199, 47104, 49151",
        "1000000, 270, 983040, 1015807",
    })
    void shouldMapValueToBucketWhenGiven(long value, int index, long low, long high) {
        assertEquals(index, LatencyBuckets.bucketIndex(value));
        assertEquals(low, LatencyBuckets.bucketLowNs(index));
        assertEquals(high, LatencyBuckets.bucketHighNs(index));
    }

    @Test
    void shouldCoverEveryValueWithContiguousBucketsWhenWalked() {
        for (int i = 0; i < LatencyBuckets.BUCKET_COUNT - 1; i++) {
            long low = LatencyBuckets.bucketLowNs(i);
            long high = LatencyBuckets.bucketHighNs(i);
            assertEquals(high + 1, LatencyBuckets.bucketLowNs(i + 1), "bucket " + i);
            assertEquals(i, LatencyBuckets.bucketIndex(low));
            assertEquals(i, LatencyBuckets.bucketIndex(high));
            // relative width below 1/16 above the exact range
            assertTrue(low < 16 || (high - low + 1) * 16 <= low, "bucket " + i);
        }
    }

    @Test
    void shouldClampWhenValueNegativeOrHuge() {
        assertEquals(0, LatencyBuckets.bucketIndex(-5));
        assertEquals(LatencyBuckets.BUCKET_COUNT - 1, LatencyBuckets.bucketIndex(Long.MAX_VALUE));
        assertEquals(LatencyBuckets.BUCKET_COUNT - 1, LatencyBuckets.bucketIndex(1L << 40));
        assertEquals(Long.MAX_VALUE, LatencyBuckets.bucketHighNs(LatencyBuckets.BUCKET_COUNT - 1));
    }
}
