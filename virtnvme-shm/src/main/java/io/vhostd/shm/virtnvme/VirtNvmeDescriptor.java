package io.vhostd.shm.virtnvme;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import org.agrona.SemanticVersion;

/**
 * Layout of one VirtNvme queue pair in shared memory: the normative text is {@code virtnvme-shm/spec/virtnvme.md};
 * where this class and the spec disagree, this class is the bug.
 *
 * <p>The region holds no pointers, only offsets and ids, because the slave and the master map it at different
 * addresses. Every multi-byte field is little endian. Indexes (SQ tail, SQ head, CQ head, the event indexes) are
 * unsigned 32-bit counters that count up forever and wrap at 2<sup>32</sup>; the slot of index {@code i} is
 * {@code i & (depth - 1)}.
 *
 * <p>The region, as a stack of sections (every section starts on a 64-byte cache line):
 *
 * <pre>
 *  +------------------------------------------+ 0
 *  | Header (written by the master)           | HEADER_LENGTH = 64
 *  +------------------------------------------+ 64    SQ_TAIL_OFFSET
 *  | SQ tail doorbell        (slave writes)   | one cache line, u32 at its start
 *  +------------------------------------------+ 128   SQ_HEAD_OFFSET
 *  | SQ head                 (master writes)  | one cache line, u32 at its start
 *  +------------------------------------------+ 192   SQ_EVENT_INDEX_OFFSET
 *  | SQ event index          (master writes)  | one cache line, u32 at its start
 *  +------------------------------------------+ 256   CQ_HEAD_OFFSET
 *  | CQ head doorbell        (slave writes)   | one cache line, u32 at its start
 *  +------------------------------------------+ 320   CQ_EVENT_INDEX_OFFSET
 *  | CQ event index          (slave writes)   | one cache line, u32 at its start
 *  +------------------------------------------+ 384   SQ_OFFSET
 *  | SQ: depth x 64-byte SQE (slave writes)   |
 *  +------------------------------------------+ cqOffset(depth) = 384 + 64 * depth
 *  | CQ: depth x 16-byte CQE (master writes)  |
 *  +------------------------------------------+ segmentTablesOffset(depth) = align64(cqOffset + 16 * depth)
 *  | indirect segment tables (slave writes):  |
 *  | depth x maxSegments x 16-byte segment,   |
 *  | the table of CID c starts at             |
 *  | segmentTablesOffset + c * maxSegments*16 |
 *  +------------------------------------------+ cidTimestampsOffset(depth, maxSegments) = align64(end of tables)
 *  | device timestamps (master writes, 1.1):  |
 *  | depth x 16 bytes, CID c at               |
 *  | cidTimestampsOffset + c * 16: u64 device |
 *  | submit ns, u64 device complete ns        |
 *  +------------------------------------------+ lengthBytes(depth, maxSegments) = align64(end of timestamps)
 * </pre>
 *
 * <p>The header (bytes in address order; the rest of the cache line is reserved and zero):
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 |                     Magic "VIRTNVQP" (u64)                    |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 *  8 |        Version (u32, release-stored LAST; 0 = not ready)      |
 *    +---------------------------------------------------------------+
 * 12 |                  Qpair id (u32, 0..65535)                     |
 *    +---------------------------------------------------------------+
 * 16 |             Depth (u32, power of two, 2..4096)                |
 *    +---------------------------------------------------------------+
 * 20 |               Max segments per command (u32)                  |
 *    +---------------------------------------------------------------+
 * 24 |                Total length in bytes (u64)                    |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * 32 |                      Reserved (32 bytes)                      |
 *    ...                                                           ...
 *    +---------------------------------------------------------------+
 * </pre>
 *
 * <p>A submission queue entry (SQE), 64 bytes:
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 |    Opcode     |     Flags     |           CID (u16)           |
 *    +---------------+---------------+-------------------------------+
 *  4 |                    NSID (u32, volume id)                      |
 *    +---------------------------------------------------------------+
 *  8 |            Offset in the bdev in bytes (u64)                  |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * 16 |                    Length in bytes (u32)                      |
 *    +-------------------------------+-------------------------------+
 * 20 |      Segment count (u16)      |       Reserved (u16)          |
 *    +-------------------------------+-------------------------------+
 * 24 |                      Reserved (u64)                           |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * 32 |               Inline segment 0 (16 bytes, below)              |
 *    ...                                                           ...
 *    +---------------------------------------------------------------+
 * 48 |               Inline segment 1 (16 bytes, below)              |
 *    ...                                                           ...
 *    +---------------------------------------------------------------+
 * </pre>
 *
 * <p>A segment (inline in the SQE, or one entry of a CID's indirect table), 16 bytes:
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 |                 Memory region id (u32)                        |
 *    +---------------------------------------------------------------+
 *  4 |                    Length in bytes (u32)                      |
 *    +---------------------------------------------------------------+
 *  8 |            Offset within the region in bytes (u64)            |
 *    |                                                               |
 *    +---------------------------------------------------------------+
 * </pre>
 *
 * <p>A completion queue entry (CQE), 16 bytes; bytes 12..15 are one 32-bit release store, made after the rest:
 *
 * <pre>
 *     0                   1                   2                   3
 *     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *  0 |              Result (u32, bytes transferred)                  |
 *    +---------------------------------------------------------------+
 *  4 |                        Reserved (u32)                         |
 *    +-------------------------------+-------------------------------+
 *  8 |   SQ head (u16, low bits)     |        SQ id (u16)            |
 *    +-------------------------------+-------------------------------+
 * 12 |           CID (u16)           | Status: P bit 0, SF bits 1..15|
 *    +-------------------------------+-------------------------------+
 * </pre>
 *
 * <p>P is the phase tag, bit 0 of the status (bit 16 of the little-endian u32 at byte 12); SF is the 15-bit NVMe
 * status field, {@code (SCT << 8) | SC} (see {@link VirtNvmeStatus}).
 */
public final class VirtNvmeDescriptor {
    /** "VIRTNVQP" read as a little-endian u64. */
    public static final long MAGIC = 0x5051564E54524956L;

    /** Major version: a reader refuses a region whose major version differs from its own. */
    public static final int MAJOR_VERSION = 1;

    /** Minor version: additions that a peer with a lower minor version may ignore. */
    public static final int MINOR_VERSION = 1;

    /** Patch version: no layout change. */
    public static final int PATCH_VERSION = 0;

    /** Version stored in the header: {@code (major << 16) | (minor << 8) | patch}; 0 means "not ready". */
    public static final int VERSION = SemanticVersion.compose(MAJOR_VERSION, MINOR_VERSION, PATCH_VERSION);

    /** A cache line: every section and every doorbell starts on one. */
    public static final int CACHE_LINE_LENGTH = 64;

    /** Offset of the magic number (u64). */
    public static final int MAGIC_OFFSET = 0;

    /** Offset of the version (u32), release-stored last by the master. */
    public static final int VERSION_OFFSET = 8;

    /** Offset of the qpair id (u32; the SQ id of every CQE, so at most 65535). */
    public static final int QPAIR_ID_OFFSET = 12;

    /** Offset of the depth (u32): entries in the SQ, entries in the CQ, and the number of CIDs. */
    public static final int DEPTH_OFFSET = 16;

    /** Offset of the maximum segment count per command (u32). */
    public static final int MAX_SEGMENTS_OFFSET = 20;

    /** Offset of the total length of the region in bytes (u64). */
    public static final int LENGTH_OFFSET = 24;

    /** Length of the header, one cache line. */
    public static final int HEADER_LENGTH = 64;

    /** Offset of the SQ tail doorbell (u32, own cache line): the slave release-stores it after writing SQEs. */
    public static final int SQ_TAIL_OFFSET = 64;

    /** Offset of the SQ head (u32, own cache line): the master release-stores it after it has copied SQEs. */
    public static final int SQ_HEAD_OFFSET = 128;

    /** Offset of the SQ event index (u32, own cache line): the master stores it before it sleeps. */
    public static final int SQ_EVENT_INDEX_OFFSET = 192;

    /** Offset of the CQ head doorbell (u32, own cache line): the slave release-stores it after consuming CQEs. */
    public static final int CQ_HEAD_OFFSET = 256;

    /** Offset of the CQ event index (u32, own cache line): the slave stores it before it sleeps. */
    public static final int CQ_EVENT_INDEX_OFFSET = 320;

    /** Offset of the SQ, the first entry of {@code depth} SQEs. */
    public static final int SQ_OFFSET = 384;

    /** Length of a submission queue entry. */
    public static final int SQE_LENGTH = 64;

    /** Length of a completion queue entry. */
    public static final int CQE_LENGTH = 16;

    /** Length of a segment, inline or in an indirect table. */
    public static final int SEGMENT_LENGTH = 16;

    /** Segments that fit in the SQE itself. */
    public static final int INLINE_SEGMENTS = 2;

    /** Smallest depth. */
    public static final int MIN_DEPTH = 2;

    /** Largest depth (the CID is a u16, and a larger queue only adds latency). */
    public static final int MAX_DEPTH = 4096;

    /** Smallest value of max segments. */
    public static final int MIN_MAX_SEGMENTS = 1;

    /** Largest value of max segments (caps the tables at 64 MiB for the largest depth). */
    public static final int MAX_MAX_SEGMENTS = 1024;

    /** Largest qpair id (it is the CQE's u16 SQ id). */
    public static final int MAX_QPAIR_ID = 0xFFFF;

    /** SQE: opcode (u8), one of {@link VirtNvmeOpcodes}. */
    public static final int SQE_OPCODE_OFFSET = 0;

    /**
     * SQE: flags (u8), {@link #SQE_FLAG_SEGMENTS_INDIRECT_MASK}, {@link #SQE_FLAG_FUA_MASK} and {@link
     * #SQE_FLAG_DEALLOCATE_MASK}.
     */
    public static final int SQE_FLAGS_OFFSET = 1;

    /** SQE: command id (u16), below depth. */
    public static final int SQE_CID_OFFSET = 2;

    /** SQE: namespace id (u32), the volume id. */
    public static final int SQE_NSID_OFFSET = 4;

    /** SQE: byte offset in the bdev (u64). */
    public static final int SQE_OFFSET_BYTES_OFFSET = 8;

    /** SQE: length of the transfer or range in bytes (u32). */
    public static final int SQE_LENGTH_BYTES_OFFSET = 16;

    /** SQE: number of segments (u16). */
    public static final int SQE_SEGMENT_COUNT_OFFSET = 20;

    /** SQE: reserved, zero (10 bytes: 22..31). */
    public static final int SQE_RESERVED_OFFSET = 22;

    /** SQE: the inline segments, {@link #INLINE_SEGMENTS} of {@link #SEGMENT_LENGTH} bytes. */
    public static final int SQE_SEGMENTS_OFFSET = 32;

    /** SQE flag bit: the segments are in the CID's indirect table, not inline. */
    public static final int SQE_FLAG_SEGMENTS_INDIRECT_BIT = 0;

    /** Mask of {@link #SQE_FLAG_SEGMENTS_INDIRECT_BIT}. */
    public static final int SQE_FLAG_SEGMENTS_INDIRECT_MASK = 1 << SQE_FLAG_SEGMENTS_INDIRECT_BIT;

    /** SQE flag bit: force unit access (the write is durable when it completes). */
    public static final int SQE_FLAG_FUA_BIT = 1;

    /** Mask of {@link #SQE_FLAG_FUA_BIT}. */
    public static final int SQE_FLAG_FUA_MASK = 1 << SQE_FLAG_FUA_BIT;

    /**
     * SQE flag bit, WRITE_ZEROES only: the device may deallocate the range instead of writing zeroes (NVMe Write Zeroes
     * DEAC, virtio-blk VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP); the range reads back as zeroes either way.
     */
    public static final int SQE_FLAG_DEALLOCATE_BIT = 2;

    /** Mask of {@link #SQE_FLAG_DEALLOCATE_BIT}. */
    public static final int SQE_FLAG_DEALLOCATE_MASK = 1 << SQE_FLAG_DEALLOCATE_BIT;

    /** Every flag bit version 1 defines; the others are reserved and zero. */
    public static final int SQE_FLAGS_DEFINED_MASK =
            SQE_FLAG_SEGMENTS_INDIRECT_MASK | SQE_FLAG_FUA_MASK | SQE_FLAG_DEALLOCATE_MASK;

    /** Segment: memory region id (u32). */
    public static final int SEGMENT_REGION_ID_OFFSET = 0;

    /** Segment: length in bytes (u32). */
    public static final int SEGMENT_LENGTH_BYTES_OFFSET = 4;

    /** Segment: offset within the memory region in bytes (u64). */
    public static final int SEGMENT_REGION_OFFSET_OFFSET = 8;

    /** CQE: command-specific result (u32): bytes transferred. */
    public static final int CQE_RESULT_OFFSET = 0;

    /** CQE: reserved, zero (u32). */
    public static final int CQE_RESERVED_OFFSET = 4;

    /** CQE: low 16 bits of the SQ head index when the CQE was written (u16). */
    public static final int CQE_SQ_HEAD_OFFSET = 8;

    /** CQE: SQ id (u16), the qpair id. */
    public static final int CQE_SQ_ID_OFFSET = 10;

    /** CQE: command id (u16); with the status, the one release-stored u32. */
    public static final int CQE_CID_OFFSET = 12;

    /** CQE: status (u16) = {@code (statusField << 1) | phase}. */
    public static final int CQE_STATUS_OFFSET = 14;

    /** Status bit: the phase tag. */
    public static final int CQE_STATUS_PHASE_BIT = 0;

    /** Mask of {@link #CQE_STATUS_PHASE_BIT}. */
    public static final int CQE_STATUS_PHASE_MASK = 1 << CQE_STATUS_PHASE_BIT;

    /** Shift of the 15-bit NVMe status field within the status. */
    public static final int CQE_STATUS_FIELD_SHIFT = 1;

    /** Mask of the status field once shifted down. */
    public static final int CQE_STATUS_FIELD_MASK = 0x7FFF;

    /** Device timestamps of one CID (version 1.1, spec §3.1): two u64 CLOCK_MONOTONIC ns. */
    public static final int CID_TIMESTAMPS_LENGTH = 16;

    /** Device timestamps: when the master took the CID's SQE to the device (io_uring submission), ns. */
    public static final int CID_DEVICE_SUBMIT_NS_OFFSET = 0;

    /** Device timestamps: when the device completed the CID's command (its io_uring CQE), ns. */
    public static final int CID_DEVICE_COMPLETE_NS_OFFSET = 8;

    static final ValueLayout.OfByte BYTE = ValueLayout.JAVA_BYTE;
    static final ValueLayout.OfShort SHORT_LE = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt INT_LE = ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong LONG_LE = ValueLayout.JAVA_LONG.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Coordinates (MemorySegment, long offset). */
    private static final VarHandle INT_HANDLE = INT_LE.varHandle();

    private VirtNvmeDescriptor() {}

    /**
     * Offset of the CQ.
     *
     * @param depth entries per queue, already validated
     * @return byte offset of the first CQE
     */
    public static long cqOffset(final int depth) {
        return SQ_OFFSET + (long) depth * SQE_LENGTH;
    }

    /**
     * Offset of the indirect segment tables.
     *
     * @param depth entries per queue, already validated
     * @return byte offset of the table of CID 0, a multiple of 64
     */
    public static long segmentTablesOffset(final int depth) {
        return alignCacheLine(cqOffset(depth) + (long) depth * CQE_LENGTH);
    }

    /**
     * Length of a queue pair region.
     *
     * @param depth entries per queue: a power of two in [{@link #MIN_DEPTH}, {@link #MAX_DEPTH}]
     * @param maxSegments segments per command: [{@link #MIN_MAX_SEGMENTS}, {@link #MAX_MAX_SEGMENTS}]
     * @return length in bytes, a multiple of 64
     * @throws IllegalArgumentException if depth or maxSegments is out of range
     */
    public static long lengthBytes(final int depth, final int maxSegments) {
        if (!isValidDepth(depth)) {
            throw new IllegalArgumentException(
                    "depth must be a power of two in [" + MIN_DEPTH + ", " + MAX_DEPTH + "]: depth=" + depth);
        }
        if (!isValidMaxSegments(maxSegments)) {
            throw new IllegalArgumentException("maxSegments must be in [" + MIN_MAX_SEGMENTS + ", " + MAX_MAX_SEGMENTS
                    + "]: maxSegments=" + maxSegments);
        }
        return alignCacheLine(cidTimestampsOffset(depth, maxSegments) + (long) depth * CID_TIMESTAMPS_LENGTH);
    }

    /**
     * Where the device timestamps start (spec §3.1): after the indirect segment tables, on a cache line.
     *
     * @param depth queue depth (not checked here)
     * @param maxSegments segments per command (not checked here)
     */
    public static long cidTimestampsOffset(final int depth, final int maxSegments) {
        return alignCacheLine(segmentTablesOffset(depth) + (long) depth * maxSegments * SEGMENT_LENGTH);
    }

    /**
     * Offset of the SQE in a slot.
     *
     * @param slot {@code index & (depth - 1)}
     * @return byte offset of the SQE
     */
    public static long sqeOffset(final int slot) {
        return SQ_OFFSET + (long) slot * SQE_LENGTH;
    }

    /**
     * Offset of the CQE in a slot.
     *
     * @param depth entries per queue
     * @param slot {@code index & (depth - 1)}
     * @return byte offset of the CQE
     */
    public static long cqeOffset(final int depth, final int slot) {
        return cqOffset(depth) + (long) slot * CQE_LENGTH;
    }

    /**
     * Offset of one entry of a CID's indirect segment table.
     *
     * @param depth entries per queue
     * @param maxSegments segments per command
     * @param cid command id, below depth
     * @param segment index in the table, below maxSegments
     * @return byte offset of the segment
     */
    public static long indirectSegmentOffset(final int depth, final int maxSegments, final int cid, final int segment) {
        return segmentTablesOffset(depth) + ((long) cid * maxSegments + segment) * SEGMENT_LENGTH;
    }

    /**
     * Checks that a region is published and speaks this major version, and that it carries the magic number.
     *
     * @param qp the mapped region
     * @throws IllegalStateException if the region is shorter than the header, the version is 0 (not ready) or of
     *     another major version, or the magic number is wrong; the message names what was found and expected
     */
    public static void checkVersion(final MemorySegment qp) {
        if (qp.byteSize() < HEADER_LENGTH) {
            throw new IllegalStateException("VirtNvme qpair region shorter than its header: found byteSize="
                    + qp.byteSize() + ", expected at least " + HEADER_LENGTH);
        }
        final int version = versionAcquire(qp);
        if (version == 0) {
            throw new IllegalStateException(
                    "VirtNvme qpair not ready: found version=0, expected " + SemanticVersion.toString(VERSION));
        }
        if (SemanticVersion.major(version) != MAJOR_VERSION) {
            throw new IllegalStateException("VirtNvme qpair version mismatch: found "
                    + SemanticVersion.toString(version) + ", expected major " + MAJOR_VERSION + " ("
                    + SemanticVersion.toString(VERSION) + ")");
        }
        final long magic = magic(qp);
        if (magic != MAGIC) {
            throw new IllegalStateException("VirtNvme qpair magic mismatch: found 0x" + Long.toHexString(magic)
                    + ", expected 0x" + Long.toHexString(MAGIC));
        }
    }

    /**
     * Checks the geometry in the header (untrusted: the peer wrote it) and that the mapping covers the region. Call
     * after {@link #checkVersion(MemorySegment)}, whose acquire load makes the header visible.
     *
     * @param qp the mapped region
     * @throws IllegalStateException if depth, max segments or the qpair id are out of range, the stored length
     *     disagrees with the geometry, or the mapping is shorter than the stored length
     */
    public static void checkLength(final MemorySegment qp) {
        final int depth = depth(qp);
        final int maxSegments = maxSegments(qp);
        final int qpairId = qpairId(qp);
        if (!isValidDepth(depth)) {
            throw new IllegalStateException(
                    "VirtNvme qpair depth invalid: found depth=" + Integer.toUnsignedString(depth)
                            + ", expected a power of two in [" + MIN_DEPTH + ", " + MAX_DEPTH + "]");
        }
        if (!isValidMaxSegments(maxSegments)) {
            throw new IllegalStateException("VirtNvme qpair maxSegments invalid: found maxSegments="
                    + Integer.toUnsignedString(maxSegments) + ", expected [" + MIN_MAX_SEGMENTS + ", "
                    + MAX_MAX_SEGMENTS + "]");
        }
        if (qpairId < 0 || qpairId > MAX_QPAIR_ID) {
            throw new IllegalStateException("VirtNvme qpair id invalid: found qpairId="
                    + Integer.toUnsignedString(qpairId) + ", expected [0, " + MAX_QPAIR_ID + "]");
        }
        // §3.1: a 1.0 region (an older master) has no device timestamps and is shorter
        final long expectedLength = SemanticVersion.minor(versionAcquire(qp)) == 0
                ? cidTimestampsOffset(depth, maxSegments)
                : lengthBytes(depth, maxSegments);
        final long storedLength = length(qp);
        if (storedLength != expectedLength) {
            throw new IllegalStateException("VirtNvme qpair length mismatch: found length=" + storedLength
                    + ", expected " + expectedLength + " for depth=" + depth + " maxSegments=" + maxSegments);
        }
        if (qp.byteSize() < expectedLength) {
            throw new IllegalStateException("VirtNvme qpair mapping too short: found byteSize=" + qp.byteSize()
                    + ", expected at least " + expectedLength);
        }
    }

    /**
     * The version, with acquire semantics: a non-zero value makes every header field the master wrote before it
     * visible.
     *
     * @param qp the mapped region
     * @return the stored version, 0 if not ready
     */
    public static int versionAcquire(final MemorySegment qp) {
        return (int) INT_HANDLE.getAcquire(qp, (long) VERSION_OFFSET);
    }

    /**
     * Publishes the version, with release semantics: the master calls it after every other header field.
     *
     * @param qp the mapped region
     * @param version the version to publish
     */
    public static void versionRelease(final MemorySegment qp, final int version) {
        INT_HANDLE.setRelease(qp, (long) VERSION_OFFSET, version);
    }

    /**
     * @param qp the mapped region
     * @return the magic number
     */
    public static long magic(final MemorySegment qp) {
        return qp.get(LONG_LE, MAGIC_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @return the qpair id (untrusted until {@link #checkLength(MemorySegment)})
     */
    public static int qpairId(final MemorySegment qp) {
        return qp.get(INT_LE, QPAIR_ID_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @return the depth (untrusted until {@link #checkLength(MemorySegment)})
     */
    public static int depth(final MemorySegment qp) {
        return qp.get(INT_LE, DEPTH_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @return the max segments per command (untrusted until {@link #checkLength(MemorySegment)})
     */
    public static int maxSegments(final MemorySegment qp) {
        return qp.get(INT_LE, MAX_SEGMENTS_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @return the stored total length in bytes
     */
    public static long length(final MemorySegment qp) {
        return qp.get(LONG_LE, LENGTH_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @return the SQ tail index, acquire: the SQEs below it are visible
     */
    public static int sqTailAcquire(final MemorySegment qp) {
        return (int) INT_HANDLE.getAcquire(qp, (long) SQ_TAIL_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @param tail the new SQ tail index, release: the SQEs (and indirect tables) below it were written first
     */
    public static void sqTailRelease(final MemorySegment qp, final int tail) {
        INT_HANDLE.setRelease(qp, (long) SQ_TAIL_OFFSET, tail);
    }

    /**
     * @param qp the mapped region
     * @return the SQ head index, acquire: the master is done reading the SQEs below it
     */
    public static int sqHeadAcquire(final MemorySegment qp) {
        return (int) INT_HANDLE.getAcquire(qp, (long) SQ_HEAD_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @param head the new SQ head index, release: the reads of the SQEs below it happened first
     */
    public static void sqHeadRelease(final MemorySegment qp, final int head) {
        INT_HANDLE.setRelease(qp, (long) SQ_HEAD_OFFSET, head);
    }

    /**
     * @param qp the mapped region
     * @return the SQ event index, acquire
     */
    public static int sqEventIndexAcquire(final MemorySegment qp) {
        return (int) INT_HANDLE.getAcquire(qp, (long) SQ_EVENT_INDEX_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @param eventIndex "wake me when the SQ tail passes this index", release
     */
    public static void sqEventIndexRelease(final MemorySegment qp, final int eventIndex) {
        INT_HANDLE.setRelease(qp, (long) SQ_EVENT_INDEX_OFFSET, eventIndex);
    }

    /**
     * @param qp the mapped region
     * @return the CQ head index, acquire: the slave is done reading the CQEs below it
     */
    public static int cqHeadAcquire(final MemorySegment qp) {
        return (int) INT_HANDLE.getAcquire(qp, (long) CQ_HEAD_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @param head the new CQ head index, release: the reads of the CQEs below it happened first
     */
    public static void cqHeadRelease(final MemorySegment qp, final int head) {
        INT_HANDLE.setRelease(qp, (long) CQ_HEAD_OFFSET, head);
    }

    /**
     * @param qp the mapped region
     * @return the CQ event index, acquire
     */
    public static int cqEventIndexAcquire(final MemorySegment qp) {
        return (int) INT_HANDLE.getAcquire(qp, (long) CQ_EVENT_INDEX_OFFSET);
    }

    /**
     * @param qp the mapped region
     * @param eventIndex "wake me when the CQE at this index is posted", release
     */
    public static void cqEventIndexRelease(final MemorySegment qp, final int eventIndex) {
        INT_HANDLE.setRelease(qp, (long) CQ_EVENT_INDEX_OFFSET, eventIndex);
    }

    /**
     * The CQE's last four bytes (CID in bits 0..15, status in bits 16..31), acquire: when the phase tag matches, the
     * rest of the CQE is visible.
     *
     * @param qp the mapped region
     * @param cqeOffset offset of the CQE
     * @return the u32 at {@code cqeOffset + 12}
     */
    public static int cqeCidStatusAcquire(final MemorySegment qp, final long cqeOffset) {
        return (int) INT_HANDLE.getAcquire(qp, cqeOffset + CQE_CID_OFFSET);
    }

    /**
     * Publishes a CQE by storing its last four bytes, release: the rest of the CQE was written first.
     *
     * @param qp the mapped region
     * @param cqeOffset offset of the CQE
     * @param cidStatus CID in bits 0..15, status in bits 16..31
     */
    public static void cqeCidStatusRelease(final MemorySegment qp, final long cqeOffset, final int cidStatus) {
        INT_HANDLE.setRelease(qp, cqeOffset + CQE_CID_OFFSET, cidStatus);
    }

    /**
     * virtio's {@code vring_need_event(event_idx, new_idx, old)} over unsigned 32-bit indexes: true if moving an
     * index from {@code oldIndex} to {@code newIndex} passed {@code eventIndex}, i.e. eventIndex is in
     * [oldIndex, newIndex) modulo 2<sup>32</sup>.
     *
     * @param eventIndex the sleeper's event index
     * @param newIndex the index just published
     * @param oldIndex the index published before it
     * @return true if the sleeper must be woken
     */
    public static boolean needEvent(final int eventIndex, final int newIndex, final int oldIndex) {
        return Integer.compareUnsigned(newIndex - eventIndex - 1, newIndex - oldIndex) < 0;
    }

    static boolean isValidDepth(final int depth) {
        return depth >= MIN_DEPTH && depth <= MAX_DEPTH && Integer.bitCount(depth) == 1;
    }

    static boolean isValidMaxSegments(final int maxSegments) {
        return maxSegments >= MIN_MAX_SEGMENTS && maxSegments <= MAX_MAX_SEGMENTS;
    }

    private static long alignCacheLine(final long offset) {
        return (offset + CACHE_LINE_LENGTH - 1) & -CACHE_LINE_LENGTH;
    }
}
