package io.vhostd.shm.stats;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The writer and reader of a stats region on an arena segment, with an explicit clock (no sleeps). */
@Timeout(10)
class QueueStatsWriterTest {
    private static final int CAPACITY = 8;
    private final Arena arena = Arena.ofConfined();
    private MemorySegment region;
    private QueueStatsWriter q0;
    private QueueStatsWriter q1;
    private StatsReader reader;

    @BeforeEach
    void format() {
        region = arena.allocate(StatsDescriptor.lengthBytes(2, CAPACITY), 64);
        StatsDescriptor.format(region, 2, CAPACITY);
        q0 = QueueStatsWriter.attach(region, 0);
        q1 = QueueStatsWriter.attach(region, 1);
        reader = new StatsReader(region);
    }

    @AfterEach
    void close() {
        arena.close();
    }

    @Test
    void shouldCountOpsBytesLatencyAndErrorsWhenBatchPublished() {
        q0.fetched(4, 1_000);
        q0.completed(StatsDescriptor.OP_READ, 4096, 500, false);
        q0.completed(StatsDescriptor.OP_WRITE, 8192, 700, true);
        q0.completed(StatsDescriptor.OP_UNMAP, 1 << 20, 100, false);
        q0.completed(StatsDescriptor.OP_NONE, 0, 10, true);
        // not visible before the batch is published
        assertEquals(0, reader.counters(0, 1_400).numReadOps());
        q0.published(1_500);
        IoCounters c = reader.counters(0, 1_500);
        assertEquals(1, c.numReadOps());
        assertEquals(4096, c.bytesRead());
        assertEquals(500, c.readLatencyTicks());
        assertEquals(1, c.numWriteOps());
        assertEquals(8192, c.bytesWritten());
        assertEquals(700, c.writeLatencyTicks());
        assertEquals(1, c.numUnmapOps());
        assertEquals(1 << 20, c.bytesUnmapped());
        assertEquals(2, c.ioErrors());
        assertEquals(0, c.queueDepth());
        assertEquals(0, reader.counters(1, 1_500).numReadOps());
    }

    @Test
    void shouldAccrueIoTimeAndWeightedTimeWhenDepthChanges() {
        q0.fetched(2, 1_000); // depth 2 from t=1000
        q0.completed(StatsDescriptor.OP_READ, 512, 300, false);
        q0.published(1_300); // depth 1 from t=1300: io 300, weighted 600
        IoCounters atPublish = reader.counters(0, 1_300);
        assertEquals(1, atPublish.queueDepth());
        assertEquals(300, atPublish.ioTimeTicks());
        assertEquals(600, atPublish.weightedIoTimeTicks());
        // the reader accrues the time since the last change while requests are in flight
        IoCounters later = reader.counters(0, 1_500);
        assertEquals(500, later.ioTimeTicks());
        assertEquals(800, later.weightedIoTimeTicks());
        q0.completed(StatsDescriptor.OP_READ, 512, 700, false);
        q0.published(1_700); // idle from t=1700: io 700, weighted 1000
        IoCounters idle = reader.counters(0, 9_999);
        assertEquals(0, idle.queueDepth());
        assertEquals(700, idle.ioTimeTicks());
        assertEquals(1_000, idle.weightedIoTimeTicks());
    }

    @Test
    void shouldDropLeftoverDepthWhenNewWriterStartsTheQueue() {
        q0.fetched(3, 1_000);
        // the slave dies; a new one attaches and starts the queue at t=2000
        QueueStatsWriter next = QueueStatsWriter.attach(region, 0);
        next.resetDepth(2_000);
        IoCounters c = reader.counters(0, 5_000);
        assertEquals(0, c.queueDepth());
        assertEquals(1_000, c.ioTimeTicks());
        assertEquals(3_000, c.weightedIoTimeTicks());
    }

    @Test
    void shouldMergeHistogramsOfQueuesWhenRead() {
        q0.recordLatency(StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, 48_000);
        q0.recordLatency(StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, 49_000);
        q1.recordLatency(StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, 53_000);
        q1.recordLatency(StatsDescriptor.SEGMENT_DEVICE, StatsDescriptor.OP_WRITE, 7);
        HistogramAccumulator h = new HistogramAccumulator();
        reader.addHistogram(0, StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, h);
        reader.addHistogram(1, StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, h);
        assertEquals(3, h.count());
        assertEquals(150_000, h.sumNs());
        // the bounds of the outer non-empty buckets
        assertEquals(47_104, h.minNs());
        assertEquals(53_247, h.maxNs());
        assertEquals(2, h.bucketCount(LatencyBuckets.bucketIndex(48_000)));
        assertEquals(49_151, h.percentileNs(0.5));
        assertEquals(53_247, h.percentileNs(0.99));
        HistogramAccumulator other = new HistogramAccumulator();
        reader.addHistogram(1, StatsDescriptor.SEGMENT_DEVICE, StatsDescriptor.OP_WRITE, other);
        assertEquals(1, other.count());
        assertEquals(7, other.percentileNs(0.5));
    }

    @Test
    void shouldSubtractBaselineWhenHistogramRestarted() {
        q0.recordLatency(StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, 100);
        HistogramAccumulator baseline = new HistogramAccumulator();
        reader.addHistogram(0, StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, baseline);
        q0.recordLatency(StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, 5_000);
        HistogramAccumulator now = new HistogramAccumulator();
        reader.addHistogram(0, StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, now);
        now.subtract(baseline);
        assertEquals(1, now.count());
        assertEquals(5_000, now.sumNs());
        assertEquals(LatencyBuckets.bucketLowNs(LatencyBuckets.bucketIndex(5_000)), now.minNs());
        assertEquals(5_119, now.maxNs());
    }

    @Test
    void shouldReadTraceRecordsInOrderAndDetectOverwrittenOnes() {
        for (int i = 1; i <= CAPACITY + 3; i++) {
            q1.trace(
                    StatsDescriptor.OP_WRITE, 0, 4096L * i, 4096, 10L * i, 11L * i, 12L * i, 13L * i, 14L * i, 15L * i);
        }
        assertEquals(CAPACITY + 3, reader.traceLastSeq(1));
        assertEquals(0, reader.traceLastSeq(0));
        // the first three were overwritten by records 9..11
        assertNull(reader.traceEvent(1, 1));
        assertNull(reader.traceEvent(1, 3));
        TraceEvent e = reader.traceEvent(1, 4);
        assertNotNull(e);
        assertEquals(new TraceEvent(4, 1, StatsDescriptor.OP_WRITE, 0, 16_384, 4096, 40, 44, 48, 52, 56, 60), e);
        assertEquals(4096L * 11, reader.traceEvent(1, 11).offsetBytes());
        // not written yet
        assertNull(reader.traceEvent(1, 12));
    }

    @Test
    void shouldSeeTornTraceRecordWhenWriterDiedMidRecord() {
        q0.trace(StatsDescriptor.OP_READ, 0, 0, 512, 1, 2, 3, 4, 5, 6);
        // a writer that died after invalidating the slot of seq 1 + CAPACITY, before its release store
        long slot = StatsDescriptor.queueOffset(CAPACITY, 0) + StatsDescriptor.traceRecordOffset(CAPACITY, 1);
        region.set(StatsDescriptor.LONG_LE, slot + StatsDescriptor.TRACE_SEQ_OFFSET, 0L);
        assertNull(reader.traceEvent(0, 1));
    }

    @Test
    void shouldSwitchFlagsWhenReaderSetsThem() {
        assertEquals(0, q0.flags());
        reader.flag(StatsDescriptor.HISTOGRAM_ENABLED_MASK, true);
        reader.flag(StatsDescriptor.TRACE_ENABLED_MASK, true);
        assertEquals(3, q0.flags());
        reader.flag(StatsDescriptor.HISTOGRAM_ENABLED_MASK, false);
        assertEquals(StatsDescriptor.TRACE_ENABLED_MASK, q1.flags());
    }

    @Test
    void shouldRefuseQueueWhenOutsideRegion() {
        assertThrows(IllegalArgumentException.class, () -> QueueStatsWriter.attach(region, 2));
        assertThrows(IndexOutOfBoundsException.class, () -> reader.counters(2, 0));
    }
}
