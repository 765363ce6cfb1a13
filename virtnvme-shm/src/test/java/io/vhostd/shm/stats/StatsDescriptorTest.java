package io.vhostd.shm.stats;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** Pins every offset and size of spec/stats.md with literal numbers. */
@Timeout(10)
class StatsDescriptorTest {
    private final Arena arena = Arena.ofConfined();

    @AfterEach
    void close() {
        arena.close();
    }

    @Test
    void shouldPinHeaderOffsetsWhenVersion1() {
        assertEquals(0, StatsDescriptor.MAGIC_OFFSET);
        assertEquals(8, StatsDescriptor.VERSION_OFFSET);
        assertEquals(12, StatsDescriptor.NUM_QUEUES_OFFSET);
        assertEquals(16, StatsDescriptor.FLAGS_OFFSET);
        assertEquals(20, StatsDescriptor.TRACE_CAPACITY_OFFSET);
        assertEquals(24, StatsDescriptor.LENGTH_OFFSET);
        assertEquals(32, StatsDescriptor.QUEUE_STRIDE_OFFSET);
        assertEquals(64, StatsDescriptor.HEADER_LENGTH);
        assertEquals(0x0001_0000, StatsDescriptor.VERSION);
        assertEquals(0x5354415453444856L, StatsDescriptor.MAGIC);
        assertEquals(1, StatsDescriptor.HISTOGRAM_ENABLED_MASK);
        assertEquals(2, StatsDescriptor.TRACE_ENABLED_MASK);
    }

    @Test
    void shouldPinCounterBlockOffsetsWhenVersion1() {
        int[] offsets = {
            StatsDescriptor.NUM_READ_OPS_OFFSET,
            StatsDescriptor.BYTES_READ_OFFSET,
            StatsDescriptor.NUM_WRITE_OPS_OFFSET,
            StatsDescriptor.BYTES_WRITTEN_OFFSET,
            StatsDescriptor.NUM_FLUSH_OPS_OFFSET,
            StatsDescriptor.NUM_UNMAP_OPS_OFFSET,
            StatsDescriptor.BYTES_UNMAPPED_OFFSET,
            StatsDescriptor.NUM_WRITE_ZEROES_OPS_OFFSET,
            StatsDescriptor.BYTES_WRITE_ZEROES_OFFSET,
            StatsDescriptor.READ_LATENCY_TICKS_OFFSET,
            StatsDescriptor.WRITE_LATENCY_TICKS_OFFSET,
            StatsDescriptor.FLUSH_LATENCY_TICKS_OFFSET,
            StatsDescriptor.UNMAP_LATENCY_TICKS_OFFSET,
            StatsDescriptor.WRITE_ZEROES_LATENCY_TICKS_OFFSET,
            StatsDescriptor.IO_ERRORS_OFFSET,
            StatsDescriptor.QUEUE_DEPTH_OFFSET,
            StatsDescriptor.IO_TIME_TICKS_OFFSET,
            StatsDescriptor.WEIGHTED_IO_TIME_TICKS_OFFSET,
            StatsDescriptor.DEPTH_CHANGED_NS_OFFSET,
            StatsDescriptor.TIME_SEQ_OFFSET,
            StatsDescriptor.TRACE_LAST_SEQ_OFFSET
        };
        for (int i = 0; i < offsets.length; i++) {
            assertEquals(8 * i, offsets[i], "field " + i);
        }
        assertEquals(256, StatsDescriptor.COUNTER_BLOCK_LENGTH);
    }

    @Test
    void shouldPinHistogramAndTraceLayoutWhenVersion1() {
        assertEquals(592, LatencyBuckets.BUCKET_COUNT);
        assertEquals(4800, StatsDescriptor.HISTOGRAM_LENGTH);
        assertEquals(256, StatsDescriptor.HISTOGRAMS_OFFSET);
        assertEquals(144_000, StatsDescriptor.HISTOGRAMS_LENGTH);
        assertEquals(144_256, StatsDescriptor.TRACE_OFFSET);
        assertEquals(96, StatsDescriptor.TRACE_RECORD_LENGTH);
        assertEquals(256 + (2 * 5 + 3) * 4800, StatsDescriptor.histogramOffset(2, 3));
        assertEquals(64, StatsDescriptor.TRACE_LENGTH_BYTES_OFFSET);
        assertEquals(68, StatsDescriptor.TRACE_OP_OFFSET);
        assertEquals(69, StatsDescriptor.TRACE_STATUS_OFFSET);
        assertEquals(70, StatsDescriptor.TRACE_QUEUE_OFFSET);
        // 144256 + 4096 * 96 = 537472
        assertEquals(537_472, StatsDescriptor.queueStride(4096));
        assertEquals(64 + 2 * 537_472, StatsDescriptor.lengthBytes(2, 4096));
        assertEquals(64 + 537_472, StatsDescriptor.queueOffset(4096, 1));
        assertEquals(144_256, StatsDescriptor.traceRecordOffset(4096, 1));
        assertEquals(144_256 + 95 * 96, StatsDescriptor.traceRecordOffset(4096, 4096 + 96));
    }

    @Test
    void shouldRefuseRegionWhenNotFormattedOrTooShort() {
        MemorySegment region = arena.allocate(StatsDescriptor.lengthBytes(1, 4), 64);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> StatsDescriptor.check(region));
        assertEquals("stats region not ready: version=0", e.getMessage());
        StatsDescriptor.format(region, 1, 4);
        StatsDescriptor.check(region);
        assertThrows(
                IllegalStateException.class, () -> StatsDescriptor.check(region.asSlice(0, region.byteSize() - 64)));
        assertThrows(IllegalArgumentException.class, () -> StatsDescriptor.format(region, 2, 4));
        assertThrows(IllegalArgumentException.class, () -> StatsDescriptor.lengthBytes(1, 3));
    }
}
