package io.vhostd.shm.stats;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.List;
import org.agrona.SemanticVersion;

/**
 * Layout of one controller's statistics region: the normative text is {@code virtnvme-shm/spec/stats.md}; where this
 * class and the spec disagree, this class is the bug.
 *
 * <p>The region, as a stack of sections (every multi-byte field little endian, every section 64-byte aligned):
 *
 * <pre>
 *  +------------------------------------------+ 0
 *  | Header (master writes; flags at any time)| HEADER_LENGTH = 64
 *  +------------------------------------------+ 64 = queueOffset(0)
 *  | Queue 0:                                 |
 *  |   counter block   (queue thread writes)  | COUNTER_BLOCK_LENGTH = 256 (4 cache lines)
 *  |   histograms      (queue thread writes)  | SEGMENT_COUNT x OP_COUNT x HISTOGRAM_LENGTH, segment-major
 *  |   trace ring      (queue thread writes)  | traceCapacity x TRACE_RECORD_LENGTH
 *  +------------------------------------------+ queueOffset(1) = 64 + queueStride(traceCapacity)
 *  | Queue 1 ...                              |
 *  +------------------------------------------+ lengthBytes(numQueues, traceCapacity)
 * </pre>
 *
 * <p>Header:
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 |                     Magic "VHDSTATS" (u64)                    |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 *  8 |        Version (u32, release-stored LAST; 0 = not ready)      |
 *    +---------------------------------------------------------------+
 * 12 |                   Number of queues (u32)                      |
 *    +---------------------------------------------------------------+
 * 16 |  Flags (u32): bit 0 HISTOGRAM_ENABLED, bit 1 TRACE_ENABLED     |
 *    +---------------------------------------------------------------+
 * 20 |        Trace capacity (u32, records per queue, power of two)  |
 *    +---------------------------------------------------------------+
 * 24 |                Total length in bytes (u64)                    |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * 32 |                Queue stride in bytes (u64)                    |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * 40 |                      Reserved (24 bytes)                      |
 *    +---------------------------------------------------------------+
 * </pre>
 *
 * <p>Counter block (u64 each, in {@link IoCounters} order): 0 num_read_ops, 8 bytes_read, 16 num_write_ops, 24
 * bytes_written, 32 num_flush_ops, 40 num_unmap_ops, 48 bytes_unmapped, 56 num_write_zeroes_ops, 64
 * bytes_write_zeroes, 72 read_latency_ticks, 80 write_latency_ticks, 88 flush_latency_ticks, 96 unmap_latency_ticks,
 * 104 write_zeroes_latency_ticks, 112 io_errors, 120 queue_depth, 128 io_time_ticks, 136 weighted_io_time_ticks, 144
 * depth_changed_ns, 152 time_seq (even when stable), 160 trace_last_seq; 168..255 reserved.
 *
 * <p>Histogram ({@link #HISTOGRAM_LENGTH} bytes): 0 sum_ns, 8..31 reserved, 32 {@link LatencyBuckets#BUCKET_COUNT} u64
 * bucket counts. The count is the sum of the buckets; min and max are the bounds of the outer non-empty buckets (the
 * writer keeps no per-sample extremes: two stores per sample).
 *
 * <p>Trace record ({@link #TRACE_RECORD_LENGTH} bytes): 0 seq (u64, release-stored last; the record of sequence
 * {@code s >= 1} is in slot {@code (s - 1) & (traceCapacity - 1)}), 8 offset_bytes, 16 fetch_ns, 24 submit_ns, 32
 * device_submit_ns, 40 device_complete_ns, 48 used_ns, 56 notify_ns (u64 each), 64 length_bytes (u32), 68 op (u8), 69
 * virtio-blk status (u8), 70 queue (u16), 72..95 reserved.
 */
public final class StatsDescriptor {
    /** "VHDSTATS" read as a little-endian u64. */
    public static final long MAGIC = 0x5354415453444856L;

    /** Major version: a reader refuses a region whose major version differs from its own. */
    public static final int MAJOR_VERSION = 1;
    /** Minor version: additions an older peer may ignore. */
    public static final int MINOR_VERSION = 0;
    /** Patch version: no byte or procedure changes. */
    public static final int PATCH_VERSION = 0;
    /** {@code (major << 16) | (minor << 8) | patch}; 0 in the region means "not ready". */
    public static final int VERSION = SemanticVersion.compose(MAJOR_VERSION, MINOR_VERSION, PATCH_VERSION);

    /** Every section starts on a cache line. */
    public static final int CACHE_LINE_LENGTH = 64;

    /** Header: magic (u64). */
    public static final int MAGIC_OFFSET = 0;
    /** Header: version (u32, release-stored last). */
    public static final int VERSION_OFFSET = 8;
    /** Header: number of queues (u32). */
    public static final int NUM_QUEUES_OFFSET = 12;
    /** Header: flags (u32, {@code *_ENABLED_MASK}). */
    public static final int FLAGS_OFFSET = 16;
    /** Header: trace records per queue (u32, power of two). */
    public static final int TRACE_CAPACITY_OFFSET = 20;
    /** Header: region length (u64). */
    public static final int LENGTH_OFFSET = 24;
    /** Header: bytes per queue section (u64). */
    public static final int QUEUE_STRIDE_OFFSET = 32;
    /** Header length; queue 0 starts here. */
    public static final int HEADER_LENGTH = 64;

    /** Flags: the data path records latency histograms. */
    public static final int HISTOGRAM_ENABLED_BIT = 0;

    /** Mask of {@link #HISTOGRAM_ENABLED_BIT}. */
    public static final int HISTOGRAM_ENABLED_MASK = 1 << HISTOGRAM_ENABLED_BIT;
    /** Flags: the data path writes trace records. */
    public static final int TRACE_ENABLED_BIT = 1;

    /** Mask of {@link #TRACE_ENABLED_BIT}. */
    public static final int TRACE_ENABLED_MASK = 1 << TRACE_ENABLED_BIT;

    // ---- counter block, relative to queueOffset(q) ----
    /** Counter block: byte offset of num_read_ops (u64). */
    public static final int NUM_READ_OPS_OFFSET = 0;
    /** Counter block: byte offset of bytes_read (u64). */
    public static final int BYTES_READ_OFFSET = 8;
    /** Counter block: byte offset of num_write_ops (u64). */
    public static final int NUM_WRITE_OPS_OFFSET = 16;
    /** Counter block: byte offset of bytes_written (u64). */
    public static final int BYTES_WRITTEN_OFFSET = 24;
    /** Counter block: byte offset of num_flush_ops (u64). */
    public static final int NUM_FLUSH_OPS_OFFSET = 32;
    /** Counter block: byte offset of num_unmap_ops (u64). */
    public static final int NUM_UNMAP_OPS_OFFSET = 40;
    /** Counter block: byte offset of bytes_unmapped (u64). */
    public static final int BYTES_UNMAPPED_OFFSET = 48;
    /** Counter block: byte offset of num_write_zeroes_ops (u64). */
    public static final int NUM_WRITE_ZEROES_OPS_OFFSET = 56;
    /** Counter block: byte offset of bytes_write_zeroes (u64). */
    public static final int BYTES_WRITE_ZEROES_OFFSET = 64;
    /** Counter block: byte offset of read_latency_ticks (u64). */
    public static final int READ_LATENCY_TICKS_OFFSET = 72;
    /** Counter block: byte offset of write_latency_ticks (u64). */
    public static final int WRITE_LATENCY_TICKS_OFFSET = 80;
    /** Counter block: byte offset of flush_latency_ticks (u64). */
    public static final int FLUSH_LATENCY_TICKS_OFFSET = 88;
    /** Counter block: byte offset of unmap_latency_ticks (u64). */
    public static final int UNMAP_LATENCY_TICKS_OFFSET = 96;
    /** Counter block: byte offset of write_zeroes_latency_ticks (u64). */
    public static final int WRITE_ZEROES_LATENCY_TICKS_OFFSET = 104;
    /** Counter block: byte offset of io_errors (u64). */
    public static final int IO_ERRORS_OFFSET = 112;
    /** Counter block: byte offset of queue_depth (u64). */
    public static final int QUEUE_DEPTH_OFFSET = 120;
    /** Counter block: byte offset of io_time_ticks (u64). */
    public static final int IO_TIME_TICKS_OFFSET = 128;
    /** Counter block: byte offset of weighted_io_time_ticks (u64). */
    public static final int WEIGHTED_IO_TIME_TICKS_OFFSET = 136;
    /** CLOCK_MONOTONIC ns of the last queue-depth change (io_time accrues from here while depth &gt; 0). */
    public static final int DEPTH_CHANGED_NS_OFFSET = 144;
    /** Seqlock over queue_depth, io_time, weighted_io_time, depth_changed_ns: odd while the writer updates them. */
    public static final int TIME_SEQ_OFFSET = 152;
    /** Sequence of the last trace record written (0: none). */
    public static final int TRACE_LAST_SEQ_OFFSET = 160;

    /** Counter block length: 4 cache lines; the histograms follow. */
    public static final int COUNTER_BLOCK_LENGTH = 256;

    // ---- ops and segments ----
    /** Op: virtio-blk IN. */
    public static final int OP_READ = 0;
    /** Op: virtio-blk OUT. */
    public static final int OP_WRITE = 1;
    /** Op: virtio-blk FLUSH. */
    public static final int OP_FLUSH = 2;
    /** Op: virtio-blk DISCARD. */
    public static final int OP_UNMAP = 3;
    /** Op: virtio-blk WRITE_ZEROES. */
    public static final int OP_WRITE_ZEROES = 4;
    /** Number of ops (histograms per segment). */
    public static final int OP_COUNT = 5;
    /** Not an I/O op (GET_ID, malformed or unsupported requests): counted only as an error if it failed. */
    public static final int OP_NONE = 0xFF;

    /** RPC names of the ops, by op number. */
    public static final List<String> OP_NAMES = List.of("read", "write", "flush", "unmap", "write_zeroes");

    /** Segment: guest avail ring fetch to the VirtNvme SQ tail store. */
    public static final int SEGMENT_FETCH_TO_SUBMIT = 0;
    /** Segment: SQ tail store to the master taking the SQE to the device. */
    public static final int SEGMENT_SUBMIT_TO_DEVICE = 1;
    /** Segment: device submission to device completion. */
    public static final int SEGMENT_DEVICE = 2;
    /** Segment: device completion to used-ring publish. */
    public static final int SEGMENT_DEVICE_TO_USED = 3;
    /** Segment: used-ring publish to the call eventfd written or suppressed. */
    public static final int SEGMENT_USED_TO_NOTIFY = 4;
    /** Segment: fetch to notify. */
    public static final int SEGMENT_TOTAL = 5;
    /** Number of segments. */
    public static final int SEGMENT_COUNT = 6;

    /** RPC names of the segments, by segment number. */
    public static final List<String> SEGMENT_NAMES =
            List.of("fetch_to_submit", "submit_to_device", "device", "device_to_used", "used_to_notify", "total");

    /** The ops counter of each op. */
    static final int[] OPS_OFFSETS = {
        NUM_READ_OPS_OFFSET,
        NUM_WRITE_OPS_OFFSET,
        NUM_FLUSH_OPS_OFFSET,
        NUM_UNMAP_OPS_OFFSET,
        NUM_WRITE_ZEROES_OPS_OFFSET
    };
    /** The bytes counter of each op (flush: none, -1). */
    static final int[] BYTES_OFFSETS = {
        BYTES_READ_OFFSET, BYTES_WRITTEN_OFFSET, -1, BYTES_UNMAPPED_OFFSET, BYTES_WRITE_ZEROES_OFFSET
    };
    /** The latency counter of each op. */
    static final int[] LATENCY_OFFSETS = {
        READ_LATENCY_TICKS_OFFSET,
        WRITE_LATENCY_TICKS_OFFSET,
        FLUSH_LATENCY_TICKS_OFFSET,
        UNMAP_LATENCY_TICKS_OFFSET,
        WRITE_ZEROES_LATENCY_TICKS_OFFSET
    };

    // ---- histogram ----
    /** Histogram: sum of the samples, ns (u64). */
    public static final int HISTOGRAM_SUM_NS_OFFSET = 0;
    /** Histogram: the bucket counts (u64 each). */
    public static final int HISTOGRAM_BUCKETS_OFFSET = 32;
    /** 32 + 592 * 8 = 4768, rounded up to a cache line: 4800. */
    public static final int HISTOGRAM_LENGTH =
            alignCacheLine(HISTOGRAM_BUCKETS_OFFSET + LatencyBuckets.BUCKET_COUNT * Long.BYTES);

    /** Queue section: where the histograms start. */
    public static final int HISTOGRAMS_OFFSET = COUNTER_BLOCK_LENGTH;
    /** Queue section: bytes of all histograms. */
    public static final int HISTOGRAMS_LENGTH = SEGMENT_COUNT * OP_COUNT * HISTOGRAM_LENGTH;

    // ---- trace ----
    /** Queue section: where the trace ring starts. */
    public static final int TRACE_OFFSET = HISTOGRAMS_OFFSET + HISTOGRAMS_LENGTH;
    /** Bytes of one trace record. */
    public static final int TRACE_RECORD_LENGTH = 96;
    /** Trace record: byte offset of seq (see the class comment). */
    public static final int TRACE_SEQ_OFFSET = 0;
    /** Trace record: byte offset of offset_bytes (see the class comment). */
    public static final int TRACE_OFFSET_BYTES_OFFSET = 8;
    /** Trace record: byte offset of fetch_ns (see the class comment). */
    public static final int TRACE_FETCH_NS_OFFSET = 16;
    /** Trace record: byte offset of submit_ns (see the class comment). */
    public static final int TRACE_SUBMIT_NS_OFFSET = 24;
    /** Trace record: byte offset of device_submit_ns (see the class comment). */
    public static final int TRACE_DEVICE_SUBMIT_NS_OFFSET = 32;
    /** Trace record: byte offset of device_complete_ns (see the class comment). */
    public static final int TRACE_DEVICE_COMPLETE_NS_OFFSET = 40;
    /** Trace record: byte offset of used_ns (see the class comment). */
    public static final int TRACE_USED_NS_OFFSET = 48;
    /** Trace record: byte offset of notify_ns (see the class comment). */
    public static final int TRACE_NOTIFY_NS_OFFSET = 56;
    /** Trace record: byte offset of length_bytes (see the class comment). */
    public static final int TRACE_LENGTH_BYTES_OFFSET = 64;
    /** Trace record: byte offset of op (see the class comment). */
    public static final int TRACE_OP_OFFSET = 68;
    /** Trace record: byte offset of status (see the class comment). */
    public static final int TRACE_STATUS_OFFSET = 69;
    /** Trace record: byte offset of queue (see the class comment). */
    public static final int TRACE_QUEUE_OFFSET = 70;

    /** Smallest trace capacity. */
    public static final int MIN_TRACE_CAPACITY = 2;
    /** Largest trace capacity. */
    public static final int MAX_TRACE_CAPACITY = 1 << 20;
    /** Most queues per region. */
    public static final int MAX_QUEUES = 1024;

    static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfByte BYTE = ValueLayout.JAVA_BYTE;
    static final VarHandle LONG_HANDLE = LONG_LE.varHandle();
    static final VarHandle INT_HANDLE = INT_LE.varHandle();

    private StatsDescriptor() {}

    /** Bytes of one queue's section: counter block, histograms, trace ring, rounded up to a cache line. */
    public static long queueStride(final int traceCapacity) {
        checkTraceCapacity(traceCapacity);
        return alignCacheLine(TRACE_OFFSET + (long) traceCapacity * TRACE_RECORD_LENGTH);
    }

    /** Where queue {@code queue}'s section starts. */
    public static long queueOffset(final int traceCapacity, final int queue) {
        return HEADER_LENGTH + (long) queue * queueStride(traceCapacity);
    }

    /** Bytes of a region for {@code numQueues} queues. */
    public static long lengthBytes(final int numQueues, final int traceCapacity) {
        if (numQueues < 1 || numQueues > MAX_QUEUES) {
            throw new IllegalArgumentException("numQueues must be in [1, " + MAX_QUEUES + "]: " + numQueues);
        }
        return HEADER_LENGTH + numQueues * queueStride(traceCapacity);
    }

    /** Offset, within a queue's section, of the histogram of {@code segment} and {@code op}. */
    public static long histogramOffset(final int segment, final int op) {
        return HISTOGRAMS_OFFSET + (long) (segment * OP_COUNT + op) * HISTOGRAM_LENGTH;
    }

    /** Offset, within a queue's section, of the trace record of sequence {@code seq >= 1}. */
    public static long traceRecordOffset(final int traceCapacity, final long seq) {
        return TRACE_OFFSET + ((seq - 1) & (traceCapacity - 1)) * TRACE_RECORD_LENGTH;
    }

    /**
     * Formats a zero-filled region (spec/stats.md "Formatting"): header fields, then the version with a release store.
     * Every counter, histogram and trace slot starts at zero (a fresh memfd is zero-filled).
     */
    public static void format(final MemorySegment region, final int numQueues, final int traceCapacity) {
        final long length = lengthBytes(numQueues, traceCapacity);
        if (region.byteSize() < length) {
            throw new IllegalArgumentException(
                    "stats region too short: " + region.byteSize() + " bytes, need " + length);
        }
        region.set(LONG_LE, MAGIC_OFFSET, MAGIC);
        region.set(INT_LE, NUM_QUEUES_OFFSET, numQueues);
        region.set(INT_LE, FLAGS_OFFSET, 0);
        region.set(INT_LE, TRACE_CAPACITY_OFFSET, traceCapacity);
        region.set(LONG_LE, LENGTH_OFFSET, length);
        region.set(LONG_LE, QUEUE_STRIDE_OFFSET, queueStride(traceCapacity));
        // release: a reader that sees the version sees every header field above
        INT_HANDLE.setRelease(region, (long) VERSION_OFFSET, VERSION);
    }

    /**
     * Checks a mapped region written by the other process (untrusted): magic, major version, queue count, trace
     * capacity and length against the mapping.
     *
     * @throws IllegalStateException naming the field that is wrong
     */
    public static void check(final MemorySegment region) {
        if (region.byteSize() < HEADER_LENGTH) {
            throw new IllegalStateException("stats region shorter than its header: " + region.byteSize() + " bytes");
        }
        final int version = (int) INT_HANDLE.getAcquire(region, (long) VERSION_OFFSET);
        if (version == 0) {
            throw new IllegalStateException("stats region not ready: version=0");
        }
        if (SemanticVersion.major(version) != MAJOR_VERSION) {
            throw new IllegalStateException("stats region version mismatch: found " + SemanticVersion.toString(version)
                    + ", expected major " + MAJOR_VERSION);
        }
        final long magic = region.get(LONG_LE, MAGIC_OFFSET);
        if (magic != MAGIC) {
            throw new IllegalStateException("stats region magic mismatch: found 0x" + Long.toHexString(magic));
        }
        final int numQueues = numQueues(region);
        final int capacity = traceCapacity(region);
        if (numQueues < 1 || numQueues > MAX_QUEUES) {
            throw new IllegalStateException("stats region numQueues invalid: " + Integer.toUnsignedString(numQueues));
        }
        if (!isValidTraceCapacity(capacity)) {
            throw new IllegalStateException(
                    "stats region traceCapacity invalid: " + Integer.toUnsignedString(capacity));
        }
        final long expected = lengthBytes(numQueues, capacity);
        if (region.get(LONG_LE, LENGTH_OFFSET) != expected || region.byteSize() < expected) {
            throw new IllegalStateException("stats region length mismatch: header says "
                    + region.get(LONG_LE, LENGTH_OFFSET) + ", mapping " + region.byteSize() + ", expected " + expected);
        }
        if (region.get(LONG_LE, QUEUE_STRIDE_OFFSET) != queueStride(capacity)) {
            throw new IllegalStateException("stats region queue stride mismatch");
        }
    }

    public static int numQueues(final MemorySegment region) {
        return region.get(INT_LE, NUM_QUEUES_OFFSET);
    }

    public static int traceCapacity(final MemorySegment region) {
        return region.get(INT_LE, TRACE_CAPACITY_OFFSET);
    }

    /** The flags word; the data path reads it once per poll batch (opaque: no ordering needed, just a fresh value). */
    public static int flagsOpaque(final MemorySegment region) {
        return (int) INT_HANDLE.getOpaque(region, (long) FLAGS_OFFSET);
    }

    /** Sets or clears {@code mask} in the flags word (the master only; the RPC threads serialize on the caller). */
    public static synchronized void flagsRelease(final MemorySegment region, final int mask, final boolean set) {
        final int old = (int) INT_HANDLE.getAcquire(region, (long) FLAGS_OFFSET);
        // release: nothing to publish before it, but keeps the store from being hoisted above earlier resets
        INT_HANDLE.setRelease(region, (long) FLAGS_OFFSET, set ? old | mask : old & ~mask);
    }

    public static boolean isValidTraceCapacity(final int capacity) {
        return capacity >= MIN_TRACE_CAPACITY && capacity <= MAX_TRACE_CAPACITY && Integer.bitCount(capacity) == 1;
    }

    private static void checkTraceCapacity(final int capacity) {
        if (!isValidTraceCapacity(capacity)) {
            throw new IllegalArgumentException("traceCapacity must be a power of two in [" + MIN_TRACE_CAPACITY + ", "
                    + MAX_TRACE_CAPACITY + "]: " + capacity);
        }
    }

    private static int alignCacheLine(final int offset) {
        return (offset + CACHE_LINE_LENGTH - 1) & -CACHE_LINE_LENGTH;
    }

    private static long alignCacheLine(final long offset) {
        return (offset + CACHE_LINE_LENGTH - 1) & -CACHE_LINE_LENGTH;
    }
}
