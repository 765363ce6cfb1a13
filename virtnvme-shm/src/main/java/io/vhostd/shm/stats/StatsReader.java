package io.vhostd.shm.stats;

import static io.vhostd.shm.stats.StatsDescriptor.BYTE;
import static io.vhostd.shm.stats.StatsDescriptor.DEPTH_CHANGED_NS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.HISTOGRAM_BUCKETS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.HISTOGRAM_SUM_NS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.INT_LE;
import static io.vhostd.shm.stats.StatsDescriptor.LONG_HANDLE;
import static io.vhostd.shm.stats.StatsDescriptor.QUEUE_DEPTH_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.SHORT_LE;
import static io.vhostd.shm.stats.StatsDescriptor.TIME_SEQ_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_DEVICE_COMPLETE_NS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_DEVICE_SUBMIT_NS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_FETCH_NS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_LAST_SEQ_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_LENGTH_BYTES_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_NOTIFY_NS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_OFFSET_BYTES_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_OP_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_QUEUE_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_SEQ_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_STATUS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_SUBMIT_NS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.TRACE_USED_NS_OFFSET;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

/**
 * The reading side of a stats region (the master, spec/stats.md "Reader"): opaque / acquire loads only, never a
 * store into a queue's section, never waits for the writer (a seqlock that stays odd because its writer died is read
 * as it is after {@link #MAX_SEQLOCK_RETRIES}). Works the same after the writer died: the master owns the memory.
 * Safe for concurrent use (it holds no mutable state).
 */
public final class StatsReader {
    /** Retries of a torn counter read before the values are taken as they are. */
    public static final int MAX_SEQLOCK_RETRIES = 1000;

    private final MemorySegment region;
    private final int numQueues;
    private final int traceCapacity;

    public StatsReader(final MemorySegment region) {
        StatsDescriptor.check(region);
        this.region = region;
        this.numQueues = StatsDescriptor.numQueues(region);
        this.traceCapacity = StatsDescriptor.traceCapacity(region);
    }

    public int numQueues() {
        return numQueues;
    }

    public int traceCapacity() {
        return traceCapacity;
    }

    public int flags() {
        return StatsDescriptor.flagsOpaque(region);
    }

    /** Sets or clears a flag ({@link StatsDescriptor#HISTOGRAM_ENABLED_MASK}, ...) that the writers read per batch. */
    public void flag(final int mask, final boolean set) {
        StatsDescriptor.flagsRelease(region, mask, set);
    }

    private long base(final int queue) {
        if (queue < 0 || queue >= numQueues) {
            throw new IndexOutOfBoundsException("queue " + queue + " of " + numQueues);
        }
        return StatsDescriptor.queueOffset(traceCapacity, queue);
    }

    private long load(final long offset) {
        return (long) LONG_HANDLE.getOpaque(region, offset);
    }

    /**
     * Queue {@code queue}'s counters, with io_time and weighted_io_time accrued up to {@code nowNs} while requests are
     * in flight (as Linux does when /proc/diskstats is read).
     */
    public IoCounters counters(final int queue, final long nowNs) {
        final long b = base(queue);
        long depth = 0;
        long changedNs = 0;
        long ioTime = 0;
        long weighted = 0;
        for (int attempt = 0; attempt <= MAX_SEQLOCK_RETRIES; attempt++) {
            final long seq1 = (long) LONG_HANDLE.getAcquire(region, b + TIME_SEQ_OFFSET);
            depth = load(b + QUEUE_DEPTH_OFFSET);
            changedNs = load(b + DEPTH_CHANGED_NS_OFFSET);
            ioTime = load(b + StatsDescriptor.IO_TIME_TICKS_OFFSET);
            weighted = load(b + StatsDescriptor.WEIGHTED_IO_TIME_TICKS_OFFSET);
            // the fields are read before the seq is checked again
            VarHandle.loadLoadFence();
            final long seq2 = (long) LONG_HANDLE.getOpaque(region, b + TIME_SEQ_OFFSET);
            if ((seq1 & 1) == 0 && seq1 == seq2) {
                break;
            }
            Thread.onSpinWait();
        }
        final long elapsedNs = nowNs - changedNs;
        if (depth > 0 && elapsedNs > 0) {
            ioTime += elapsedNs;
            weighted += depth * elapsedNs;
        }
        return new IoCounters(
                load(b + StatsDescriptor.NUM_READ_OPS_OFFSET),
                load(b + StatsDescriptor.BYTES_READ_OFFSET),
                load(b + StatsDescriptor.NUM_WRITE_OPS_OFFSET),
                load(b + StatsDescriptor.BYTES_WRITTEN_OFFSET),
                load(b + StatsDescriptor.NUM_FLUSH_OPS_OFFSET),
                load(b + StatsDescriptor.NUM_UNMAP_OPS_OFFSET),
                load(b + StatsDescriptor.BYTES_UNMAPPED_OFFSET),
                load(b + StatsDescriptor.NUM_WRITE_ZEROES_OPS_OFFSET),
                load(b + StatsDescriptor.BYTES_WRITE_ZEROES_OFFSET),
                load(b + StatsDescriptor.READ_LATENCY_TICKS_OFFSET),
                load(b + StatsDescriptor.WRITE_LATENCY_TICKS_OFFSET),
                load(b + StatsDescriptor.FLUSH_LATENCY_TICKS_OFFSET),
                load(b + StatsDescriptor.UNMAP_LATENCY_TICKS_OFFSET),
                load(b + StatsDescriptor.WRITE_ZEROES_LATENCY_TICKS_OFFSET),
                load(b + StatsDescriptor.IO_ERRORS_OFFSET),
                Math.max(0, depth),
                ioTime,
                weighted);
    }

    /**
     * Adds queue {@code queue}'s histogram of {@code segment} × {@code op} to {@code into}: its count is the sum of its
     * buckets, its min and max the bounds of its outer non-empty buckets (spec/stats.md §3.3).
     */
    public void addHistogram(final int queue, final int segment, final int op, final HistogramAccumulator into) {
        final long h = base(queue) + StatsDescriptor.histogramOffset(segment, op);
        final long[] buckets = new long[LatencyBuckets.BUCKET_COUNT];
        long count = 0;
        int first = -1;
        int last = -1;
        for (int i = 0; i < buckets.length; i++) {
            buckets[i] = Math.max(0, load(h + HISTOGRAM_BUCKETS_OFFSET + (long) i * Long.BYTES));
            if (buckets[i] > 0) {
                count += buckets[i];
                first = first < 0 ? i : first;
                last = i;
            }
        }
        if (count == 0) {
            return;
        }
        into.add(
                count,
                load(h + HISTOGRAM_SUM_NS_OFFSET),
                LatencyBuckets.bucketLowNs(first),
                LatencyBuckets.bucketHighNs(last),
                buckets);
    }

    /** Sequence of the last trace record queue {@code queue} wrote (0: none). */
    public long traceLastSeq(final int queue) {
        return (long) LONG_HANDLE.getAcquire(region, base(queue) + TRACE_LAST_SEQ_OFFSET);
    }

    /**
     * The trace record of sequence {@code seq} of queue {@code queue}, or null if it was overwritten (or is being
     * written) by a later record: its slot's seq is checked before and after the fields are read.
     */
    public TraceEvent traceEvent(final int queue, final long seq) {
        if (seq < 1) {
            return null;
        }
        final long r = base(queue) + StatsDescriptor.traceRecordOffset(traceCapacity, seq);
        final long seq1 = (long) LONG_HANDLE.getAcquire(region, r + TRACE_SEQ_OFFSET);
        if (seq1 != seq) {
            return null;
        }
        final TraceEvent event = new TraceEvent(
                seq,
                Short.toUnsignedInt(region.get(SHORT_LE, r + TRACE_QUEUE_OFFSET)),
                Byte.toUnsignedInt(region.get(BYTE, r + TRACE_OP_OFFSET)),
                Byte.toUnsignedInt(region.get(BYTE, r + TRACE_STATUS_OFFSET)),
                region.get(StatsDescriptor.LONG_LE, r + TRACE_OFFSET_BYTES_OFFSET),
                region.get(INT_LE, r + TRACE_LENGTH_BYTES_OFFSET),
                region.get(StatsDescriptor.LONG_LE, r + TRACE_FETCH_NS_OFFSET),
                region.get(StatsDescriptor.LONG_LE, r + TRACE_SUBMIT_NS_OFFSET),
                region.get(StatsDescriptor.LONG_LE, r + TRACE_DEVICE_SUBMIT_NS_OFFSET),
                region.get(StatsDescriptor.LONG_LE, r + TRACE_DEVICE_COMPLETE_NS_OFFSET),
                region.get(StatsDescriptor.LONG_LE, r + TRACE_USED_NS_OFFSET),
                region.get(StatsDescriptor.LONG_LE, r + TRACE_NOTIFY_NS_OFFSET));
        // the fields are read before the seq is checked again: a writer that overwrote the slot meanwhile changed it
        VarHandle.loadLoadFence();
        final long seq2 = (long) LONG_HANDLE.getOpaque(region, r + TRACE_SEQ_OFFSET);
        return seq2 == seq ? event : null;
    }
}
