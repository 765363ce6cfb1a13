package io.vhostd.shm.stats;

import static io.vhostd.shm.stats.StatsDescriptor.BYTE;
import static io.vhostd.shm.stats.StatsDescriptor.BYTES_OFFSETS;
import static io.vhostd.shm.stats.StatsDescriptor.DEPTH_CHANGED_NS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.HISTOGRAM_BUCKETS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.HISTOGRAM_SUM_NS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.INT_LE;
import static io.vhostd.shm.stats.StatsDescriptor.IO_ERRORS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.IO_TIME_TICKS_OFFSET;
import static io.vhostd.shm.stats.StatsDescriptor.LATENCY_OFFSETS;
import static io.vhostd.shm.stats.StatsDescriptor.LONG_HANDLE;
import static io.vhostd.shm.stats.StatsDescriptor.LONG_LE;
import static io.vhostd.shm.stats.StatsDescriptor.OPS_OFFSETS;
import static io.vhostd.shm.stats.StatsDescriptor.OP_COUNT;
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
import static io.vhostd.shm.stats.StatsDescriptor.WEIGHTED_IO_TIME_TICKS_OFFSET;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

/**
 * The single writer of one queue's section of a stats region (spec/stats.md "Writer"): the queue's data-path thread.
 * Counters of completed requests are gathered in plain fields during a poll batch ({@link #completed}) and added to
 * the region once per batch ({@link #published}), with opaque stores (x86: plain moves) so that a reader in another
 * process sees them without any fence on this side. No allocation after construction; not thread-safe.
 */
public final class QueueStatsWriter {
    private final MemorySegment region;
    private final MemorySegment queue;
    private final int queueIndex;
    private final int traceCapacity;

    private final long[] batchOps = new long[OP_COUNT];
    private final long[] batchBytes = new long[OP_COUNT];
    private final long[] batchLatencyNs = new long[OP_COUNT];
    private long batchErrors;
    private int batchCompleted;

    private QueueStatsWriter(final MemorySegment region, final int queueIndex) {
        StatsDescriptor.check(region);
        if (queueIndex < 0 || queueIndex >= StatsDescriptor.numQueues(region)) {
            throw new IllegalArgumentException("queue " + queueIndex + " not in a stats region of "
                    + StatsDescriptor.numQueues(region) + " queue(s)");
        }
        this.region = region;
        this.traceCapacity = StatsDescriptor.traceCapacity(region);
        this.queue = region.asSlice(
                StatsDescriptor.queueOffset(traceCapacity, queueIndex), StatsDescriptor.queueStride(traceCapacity));
        this.queueIndex = queueIndex;
    }

    /** The writer of queue {@code queueIndex} of a formatted region (checked: {@link StatsDescriptor#check}). */
    public static QueueStatsWriter attach(final MemorySegment region, final int queueIndex) {
        return new QueueStatsWriter(region, queueIndex);
    }

    public int queueIndex() {
        return queueIndex;
    }

    /** The flags word ({@link StatsDescriptor#HISTOGRAM_ENABLED_MASK}, ...): read it once per poll batch. */
    public int flags() {
        return StatsDescriptor.flagsOpaque(region);
    }

    /**
     * The queue starts (again): requests a previous writer (a dead slave) left counted in queue_depth are dropped
     * from it, their time so far accrued; a seqlock it left odd is closed.
     */
    public void resetDepth(final long nowNs) {
        final long seq = queue.get(LONG_LE, TIME_SEQ_OFFSET);
        if ((seq & 1) != 0) {
            // a writer died inside an update: the fields are whatever it stored; even again so readers take them
            LONG_HANDLE.setRelease(queue, (long) TIME_SEQ_OFFSET, seq + 1);
        }
        changeDepth(nowNs, -queue.get(LONG_LE, QUEUE_DEPTH_OFFSET));
    }

    /** {@code count} requests were taken from the guest ring at {@code nowNs}: queue_depth grows. */
    public void fetched(final int count, final long nowNs) {
        if (count != 0) {
            changeDepth(nowNs, count);
        }
    }

    /**
     * A request completed in this batch (its used element is pushed, not yet published): counted by {@link
     * #published}.
     *
     * @param op {@code StatsDescriptor.OP_*}, or {@link StatsDescriptor#OP_NONE} (only its error counts)
     * @param bytes data bytes (read, written, unmapped or zeroed)
     * @param latencyNs guest ring fetch → used publish
     * @param error its virtio-blk status is not OK
     */
    public void completed(final int op, final long bytes, final long latencyNs, final boolean error) {
        batchCompleted++;
        if (error) {
            batchErrors++;
        }
        if (op >= 0 && op < OP_COUNT) {
            batchOps[op]++;
            batchBytes[op] += bytes;
            batchLatencyNs[op] += latencyNs;
        }
    }

    /**
     * The batch's used elements were published at {@code nowNs}: adds the batch's counters to the region and lowers
     * queue_depth by the requests of the batch.
     */
    public void published(final long nowNs) {
        if (batchCompleted == 0) {
            return;
        }
        for (int op = 0; op < OP_COUNT; op++) {
            if (batchOps[op] != 0) {
                add(OPS_OFFSETS[op], batchOps[op]);
                if (BYTES_OFFSETS[op] >= 0) {
                    add(BYTES_OFFSETS[op], batchBytes[op]);
                }
                add(LATENCY_OFFSETS[op], batchLatencyNs[op]);
                batchOps[op] = 0;
                batchBytes[op] = 0;
                batchLatencyNs[op] = 0;
            }
        }
        if (batchErrors != 0) {
            add(IO_ERRORS_OFFSET, batchErrors);
            batchErrors = 0;
        }
        changeDepth(nowNs, -batchCompleted);
        batchCompleted = 0;
    }

    /**
     * Adds one sample to the histogram of {@code segment} × {@code op} (only while histograms are enabled): its bucket
     * and the sum, two opaque stores.
     */
    public void recordLatency(final int segment, final int op, final long valueNs) {
        final long value = Math.max(0, valueNs);
        final long base = StatsDescriptor.histogramOffset(segment, op);
        final long bucket = base + HISTOGRAM_BUCKETS_OFFSET + (long) LatencyBuckets.bucketIndex(value) * Long.BYTES;
        add(bucket, 1);
        add(base + HISTOGRAM_SUM_NS_OFFSET, value);
    }

    /**
     * Appends a trace record (only while tracing is enabled); overwrites the oldest when the ring is full (the writer
     * never waits for a reader). Timestamps not taken are 0.
     */
    public void trace(
            final int op,
            final int status,
            final long offsetBytes,
            final int lengthBytes,
            final long fetchNs,
            final long submitNs,
            final long deviceSubmitNs,
            final long deviceCompleteNs,
            final long usedNs,
            final long notifyNs) {
        final long seq = queue.get(LONG_LE, TRACE_LAST_SEQ_OFFSET) + 1;
        final long record = StatsDescriptor.traceRecordOffset(traceCapacity, seq);
        LONG_HANDLE.setOpaque(queue, record + TRACE_SEQ_OFFSET, 0L);
        // the invalidated seq is visible before any field changes: a reader of the old record sees it torn
        VarHandle.storeStoreFence();
        queue.set(LONG_LE, record + TRACE_OFFSET_BYTES_OFFSET, offsetBytes);
        queue.set(LONG_LE, record + TRACE_FETCH_NS_OFFSET, fetchNs);
        queue.set(LONG_LE, record + TRACE_SUBMIT_NS_OFFSET, submitNs);
        queue.set(LONG_LE, record + TRACE_DEVICE_SUBMIT_NS_OFFSET, deviceSubmitNs);
        queue.set(LONG_LE, record + TRACE_DEVICE_COMPLETE_NS_OFFSET, deviceCompleteNs);
        queue.set(LONG_LE, record + TRACE_USED_NS_OFFSET, usedNs);
        queue.set(LONG_LE, record + TRACE_NOTIFY_NS_OFFSET, notifyNs);
        queue.set(INT_LE, record + TRACE_LENGTH_BYTES_OFFSET, lengthBytes);
        queue.set(BYTE, record + TRACE_OP_OFFSET, (byte) op);
        queue.set(BYTE, record + TRACE_STATUS_OFFSET, (byte) status);
        queue.set(SHORT_LE, record + TRACE_QUEUE_OFFSET, (short) queueIndex);
        // release: a reader that sees this seq sees the fields above
        LONG_HANDLE.setRelease(queue, record + TRACE_SEQ_OFFSET, seq);
        // release: a reader that sees the last seq finds its record complete
        LONG_HANDLE.setRelease(queue, (long) TRACE_LAST_SEQ_OFFSET, seq);
    }

    /** Seqlock-protected update of queue_depth and the diskstats times (spec/stats.md "Queue depth and times"). */
    private void changeDepth(final long nowNs, final long delta) {
        final long seq = queue.get(LONG_LE, TIME_SEQ_OFFSET);
        LONG_HANDLE.setOpaque(queue, (long) TIME_SEQ_OFFSET, seq + 1);
        // odd seq visible before the fields change: a reader that overlaps retries
        VarHandle.storeStoreFence();
        final long depth = queue.get(LONG_LE, QUEUE_DEPTH_OFFSET);
        final long elapsedNs = nowNs - queue.get(LONG_LE, DEPTH_CHANGED_NS_OFFSET);
        if (depth > 0 && elapsedNs > 0) {
            LONG_HANDLE.setOpaque(
                    queue, (long) IO_TIME_TICKS_OFFSET, queue.get(LONG_LE, IO_TIME_TICKS_OFFSET) + elapsedNs);
            LONG_HANDLE.setOpaque(
                    queue,
                    (long) WEIGHTED_IO_TIME_TICKS_OFFSET,
                    queue.get(LONG_LE, WEIGHTED_IO_TIME_TICKS_OFFSET) + depth * elapsedNs);
        }
        LONG_HANDLE.setOpaque(queue, (long) QUEUE_DEPTH_OFFSET, Math.max(0, depth + delta));
        LONG_HANDLE.setOpaque(queue, (long) DEPTH_CHANGED_NS_OFFSET, nowNs);
        // release: the fields above are visible before the seq says they are stable
        LONG_HANDLE.setRelease(queue, (long) TIME_SEQ_OFFSET, seq + 2);
    }

    private void add(final long offset, final long delta) {
        LONG_HANDLE.setOpaque(queue, offset, queue.get(LONG_LE, offset) + delta);
    }
}
