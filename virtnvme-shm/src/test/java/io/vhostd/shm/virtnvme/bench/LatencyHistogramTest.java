package io.vhostd.shm.virtnvme.bench;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class LatencyHistogramTest {
    @Test
    void shouldReturnExactPercentilesWhenValuesAreBelowLinearLimit() {
        LatencyHistogram h = new LatencyHistogram();
        for (int v = 1; v <= 1000; v++) {
            h.record(v);
        }
        assertEquals(1000, h.totalCount());
        assertEquals(500, h.valueAtFractionNs(0.50));
        assertEquals(990, h.valueAtFractionNs(0.99));
        assertEquals(999, h.valueAtFractionNs(0.999));
        assertEquals(1000, h.valueAtFractionNs(1.0));
        assertEquals(1000, h.maxNs());
    }

    @Test
    void shouldStayWithinOnePermilleWhenValuesAreLarge() {
        for (long v = LatencyHistogram.LINEAR_LIMIT_NS; v < Long.MAX_VALUE / 3; v = v * 3 + 7) {
            LatencyHistogram h = new LatencyHistogram();
            h.record(v);
            h.record(v + 1);
            long p50 = h.valueAtFractionNs(0.5);
            assertTrue(p50 <= v && v - p50 <= v / 1024, "v=" + v + " p50=" + p50);
        }
    }

    @Test
    void shouldMapEveryIndexBackToItsLowerBoundWhenRoundTripping() {
        for (int i = 0; i < LatencyHistogram.index(Long.MAX_VALUE); i += 97) {
            assertEquals(i, LatencyHistogram.index(LatencyHistogram.lowerBoundNs(i)));
        }
        assertEquals(0, LatencyHistogram.index(0));
    }

    @Test
    void shouldCountNegativeAsZeroAndForgetWhenReset() {
        LatencyHistogram h = new LatencyHistogram();
        h.record(-5);
        assertEquals(0, h.valueAtFractionNs(0.5));
        h.reset();
        assertEquals(0, h.totalCount());
        assertEquals(0, h.valueAtFractionNs(0.5));
        assertEquals(0, h.maxNs());
    }
}
