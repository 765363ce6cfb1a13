package io.vhostd.shm.virtnvme;

import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.CACHE_LINE_LENGTH;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.CQE_RESULT_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.CQE_SQ_HEAD_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.CQE_STATUS_FIELD_MASK;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.CQE_STATUS_FIELD_SHIFT;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.CQE_STATUS_PHASE_MASK;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.DEPTH_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.INLINE_SEGMENTS;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.INT_LE;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.LENGTH_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.LONG_LE;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.MAGIC;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.MAGIC_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.MAX_QPAIR_ID;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.MAX_SEGMENTS_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.QPAIR_ID_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SEGMENT_LENGTH;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SEGMENT_LENGTH_BYTES_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SEGMENT_REGION_ID_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SEGMENT_REGION_OFFSET_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_FLAGS_DEFINED_MASK;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_FLAG_DEALLOCATE_MASK;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_FLAG_FUA_MASK;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_FLAG_SEGMENTS_INDIRECT_MASK;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_LENGTH;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_LENGTH_BYTES_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_OFFSET_BYTES_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_OPCODE_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_RESERVED_OFFSET;
import static io.vhostd.shm.virtnvme.VirtNvmeDescriptor.SQE_SEGMENTS_OFFSET;

import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.util.Objects;
import org.agrona.SemanticVersion;

/**
 * One VirtNvme queue pair over a shared-memory region laid out by {@link VirtNvmeDescriptor} (normative text:
 * {@code virtnvme-shm/spec/virtnvme.md}). The slave is the <em>submitter</em>: it writes 64-byte SQEs and consumes
 * 16-byte CQEs. The master is the <em>executor</em>: it consumes SQEs, runs them against the bdev, and posts CQEs
 * with an NVMe phase tag.
 *
 * <p>Each process attaches its own instance. An instance carries the private state of both roles (shadow tail,
 * cached head...), but each role's methods must be called from one thread only, and a process uses one role. No
 * method makes a system call or allocates on success: the caller owns the two eventfds and writes one when {@link
 * #publishSubmissions()} or {@link #publishCompletions()} returns true.
 *
 * <p>Everything read from the region was written by the other process and is untrusted: indexes that put a queue
 * more than {@code depth} entries ahead are reported as {@link IllegalStateException} (peer corruption), and {@link
 * Command} bounds-checks every segment access.
 */
public final class VirtNvmeQueuePair {
    private final MemorySegment memory;
    private final int qpairId;
    private final int depth;
    private final int maxSegments;
    private final int slotMask;
    private final int depthShift;
    private final Command command;
    /** The region has the device timestamps section (version 1.1, spec §3.1). */
    private final boolean deviceTimestamps;

    // submitter (slave) state, one thread
    private int sqTail;
    private int sqTailPublished;
    private int sqHeadCached;
    private int cqHead;
    /** Per CID: the SQ index its last {@link #submit} wrote (spec §10.2: resubmission after a master restart). */
    private final int[] cidSqIndex;
    /** Per CID: a private copy of the 64-byte SQE its last {@link #submit} wrote (the slot may be reused). */
    private final MemorySegment sqeCopies;
    /** Per CID: whether this instance submitted it (so {@link #sqeCopies} holds its SQE). */
    private final boolean[] sqeRecorded;

    // executor (master) state, one thread
    private int sqHead;
    private int cqTail;
    private int cqTailPublished;
    private int cqHeadCached;

    private VirtNvmeQueuePair(final MemorySegment memory, final int qpairId, final int depth, final int maxSegments) {
        this.memory = memory;
        this.qpairId = qpairId;
        this.depth = depth;
        this.maxSegments = maxSegments;
        this.slotMask = depth - 1;
        this.depthShift = Integer.numberOfTrailingZeros(depth);
        this.command = new Command(this);
        this.deviceTimestamps = SemanticVersion.minor(VirtNvmeDescriptor.versionAcquire(memory)) >= 1;
        this.cidSqIndex = new int[depth];
        this.sqeRecorded = new boolean[depth];
        this.sqeCopies = MemorySegment.ofArray(new long[depth * (VirtNvmeDescriptor.SQE_LENGTH / Long.BYTES)]);

        sqTail = VirtNvmeDescriptor.sqTailAcquire(memory);
        sqTailPublished = sqTail;
        sqHeadCached = VirtNvmeDescriptor.sqHeadAcquire(memory);
        cqHead = VirtNvmeDescriptor.cqHeadAcquire(memory);

        sqHead = sqHeadCached;
        cqHeadCached = cqHead;
        cqTail = recoverCqTail(cqHeadCached);
        cqTailPublished = cqTail;
    }

    /**
     * Master: zero-fills and formats a region, then publishes {@link VirtNvmeDescriptor#VERSION} last. Only while no
     * peer uses the region.
     *
     * @param memory native memory, 64-byte aligned, at least {@link VirtNvmeDescriptor#lengthBytes(int, int)} long;
     *     only that prefix is written
     * @param qpairId the qpair id, [0, 65535]: the SQ id in every CQE
     * @param depth entries per queue: a power of two in [2, 4096]; also the number of CIDs
     * @param maxSegments segments per command, [1, 1024]
     * @return the queue pair, both roles at index 0
     * @throws IllegalArgumentException if an argument is out of range or the memory is too short, not native or not
     *     aligned
     */
    public static VirtNvmeQueuePair format(
            final MemorySegment memory, final int qpairId, final int depth, final int maxSegments) {
        final long lengthBytes = VirtNvmeDescriptor.lengthBytes(depth, maxSegments);
        if (qpairId < 0 || qpairId > MAX_QPAIR_ID) {
            throw new IllegalArgumentException("qpairId must be in [0, " + MAX_QPAIR_ID + "]: qpairId=" + qpairId);
        }
        checkMemory(memory);
        if (memory.byteSize() < lengthBytes) {
            throw new IllegalArgumentException("memory too short: byteSize=" + memory.byteSize() + ", lengthBytes="
                    + lengthBytes + " for depth=" + depth + " maxSegments=" + maxSegments);
        }
        memory.asSlice(0, lengthBytes).fill((byte) 0);
        memory.set(LONG_LE, MAGIC_OFFSET, MAGIC);
        memory.set(INT_LE, QPAIR_ID_OFFSET, qpairId);
        memory.set(INT_LE, DEPTH_OFFSET, depth);
        memory.set(INT_LE, MAX_SEGMENTS_OFFSET, maxSegments);
        memory.set(LONG_LE, LENGTH_OFFSET, lengthBytes);
        // release: a peer that acquires a non-zero version sees the zeroed queues and every header field above
        VirtNvmeDescriptor.versionRelease(memory, VirtNvmeDescriptor.VERSION);
        return new VirtNvmeQueuePair(memory, qpairId, depth, maxSegments);
    }

    /**
     * Either side: attaches to a formatted region, e.g. after a restart. The submitter role resumes at the published
     * SQ tail and CQ head; the executor role resumes at the SQ head and finds its CQ tail by scanning from the CQ
     * head for CQEs whose phase tag says "posted" (spec §10.2 "Master crash").
     *
     * @param memory the mapped region: native, 64-byte aligned
     * @return the queue pair
     * @throws IllegalStateException if the region is not ready (version 0), has another major version, the wrong
     *     magic, a depth, max segments or qpair id out of range, or is longer than {@code memory}
     * @throws IllegalArgumentException if the memory is not native or not aligned
     */
    public static VirtNvmeQueuePair attach(final MemorySegment memory) {
        checkMemory(memory);
        VirtNvmeDescriptor.checkVersion(memory);
        VirtNvmeDescriptor.checkLength(memory);
        return new VirtNvmeQueuePair(
                memory,
                VirtNvmeDescriptor.qpairId(memory),
                VirtNvmeDescriptor.depth(memory),
                VirtNvmeDescriptor.maxSegments(memory));
    }

    /** @return the qpair id, [0, 65535] */
    public int qpairId() {
        return qpairId;
    }

    /** @return entries per queue, a power of two; CIDs are below it */
    public int depth() {
        return depth;
    }

    /** @return the most segments one command may name */
    public int maxSegments() {
        return maxSegments;
    }

    /**
     * Submitter: the SQ index the next {@link #submit} writes (the shadow tail). A slave records it per CID so that
     * after a master restart it can tell fetched-but-lost commands (index below the restarted master's {@link
     * #sqHeadIndex()}) from commands still in the SQ (spec §10.2 "Master crash").
     *
     * @return the shadow SQ tail index (u32, wraps)
     */
    public int sqTailIndex() {
        return sqTail;
    }

    /**
     * Submitter: the CQ index of the next CQE to consume.
     *
     * @return the CQ head index (u32, wraps)
     */
    public int cqHeadIndex() {
        return cqHead;
    }

    /**
     * Executor: the SQ index of the next SQE to fetch; right after {@link #attach}, the restarted master's resume
     * point (spec §10.2 "Master crash").
     *
     * @return the SQ head index (u32, wraps)
     */
    public int sqHeadIndex() {
        return sqHead;
    }

    /**
     * Executor: the CQ index the next {@link #postCompletion} writes; right after {@link #attach}, the CQ tail the
     * restarted master recovered from the phase tags (spec §10.2 "Master crash").
     *
     * @return the CQ tail index (u32, wraps)
     */
    public int cqTailIndex() {
        return cqTail;
    }

    // ---------------------------------------------------------------- submitter (slave)

    /**
     * Submitter: writes one SQE at the shadow SQ tail; the master sees it after {@link #publishSubmissions()}. The
     * segments are the first {@code segmentCount} entries of the three arrays: inline in the SQE when there are at
     * most {@link VirtNvmeDescriptor#INLINE_SEGMENTS}, else in the CID's indirect table (flag {@link
     * VirtNvmeDescriptor#SQE_FLAG_SEGMENTS_INDIRECT_MASK} is set here, whatever {@code flags} says).
     *
     * <p>The caller allocates CIDs below {@link #depth()} and does not reuse one before its completion has been
     * consumed ({@link #pollCompletions(CompletionHandler)} returned), so neither queue can overflow.
     *
     * @param opcode one of {@link VirtNvmeOpcodes}, [0, 255] (not checked further: the master answers
     *     INVALID_OPCODE)
     * @param flags {@link VirtNvmeDescriptor#SQE_FLAG_FUA_MASK}, {@link VirtNvmeDescriptor#SQE_FLAG_DEALLOCATE_MASK}
     *     (WRITE_ZEROES) or 0
     * @param cid command id, [0, depth)
     * @param nsid volume id (u32)
     * @param offsetBytes byte offset in the bdev (u64)
     * @param lengthBytes bytes to transfer or the range length (u32)
     * @param segmentCount [0, maxSegments]
     * @param regionIds memory region id of each segment (u32)
     * @param regionOffsets byte offset within the region of each segment (u64)
     * @param segmentLengths length in bytes of each segment (u32)
     * @return true if written, false if the SQ is full (depth entries between the master's SQ head and the tail)
     * @throws IllegalArgumentException if opcode, flags, cid or segmentCount is out of range, or an array is shorter
     *     than segmentCount
     * @throws IllegalStateException if the master's SQ head is more than depth behind the tail (peer corruption)
     */
    public boolean submit(
            final int opcode,
            final int flags,
            final int cid,
            final int nsid,
            final long offsetBytes,
            final int lengthBytes,
            final int segmentCount,
            final int[] regionIds,
            final long[] regionOffsets,
            final int[] segmentLengths) {
        if (opcode < 0 || opcode > 0xFF) {
            throw new IllegalArgumentException("opcode must be a u8: opcode=" + opcode);
        }
        if ((flags & ~SQE_FLAGS_DEFINED_MASK) != 0) {
            throw new IllegalArgumentException("undefined SQE flag bits: flags=0x" + Integer.toHexString(flags));
        }
        if (cid < 0 || cid >= depth) {
            throw new IllegalArgumentException("cid must be in [0, depth): cid=" + cid + ", depth=" + depth);
        }
        if (segmentCount < 0 || segmentCount > maxSegments) {
            throw new IllegalArgumentException("segmentCount must be in [0, maxSegments]: segmentCount=" + segmentCount
                    + ", maxSegments=" + maxSegments);
        }
        if (regionIds.length < segmentCount
                || regionOffsets.length < segmentCount
                || segmentLengths.length < segmentCount) {
            throw new IllegalArgumentException("segment arrays shorter than segmentCount=" + segmentCount);
        }
        if (!sqHasRoom()) {
            return false;
        }

        final boolean indirect = segmentCount > INLINE_SEGMENTS;
        final int sqeFlags = (flags & (SQE_FLAG_FUA_MASK | SQE_FLAG_DEALLOCATE_MASK))
                | (indirect ? SQE_FLAG_SEGMENTS_INDIRECT_MASK : 0);
        final long sqe = VirtNvmeDescriptor.sqeOffset(sqTail & slotMask);
        // bytes 0..7: opcode, flags, cid, nsid; bytes 16..23: lengthBytes, segmentCount, reserved u16 = 0;
        // bytes 24..31: the rest of the reserved range = 0 (a reused slot must not carry stale bytes)
        memory.set(
                LONG_LE,
                sqe + SQE_OPCODE_OFFSET,
                (opcode & 0xFFL) | ((long) sqeFlags << 8) | ((long) cid << 16) | ((long) nsid << 32));
        memory.set(LONG_LE, sqe + SQE_OFFSET_BYTES_OFFSET, offsetBytes);
        memory.set(LONG_LE, sqe + SQE_LENGTH_BYTES_OFFSET, (lengthBytes & 0xFFFF_FFFFL) | ((long) segmentCount << 32));
        memory.set(LONG_LE, sqe + SQE_RESERVED_OFFSET + 2, 0L);
        if (indirect) {
            for (int i = 0; i < segmentCount; i++) {
                writeSegment(
                        VirtNvmeDescriptor.indirectSegmentOffset(depth, maxSegments, cid, i),
                        regionIds[i],
                        segmentLengths[i],
                        regionOffsets[i]);
            }
            for (int i = 0; i < INLINE_SEGMENTS; i++) {
                writeSegment(sqe + SQE_SEGMENTS_OFFSET + (long) i * SEGMENT_LENGTH, 0, 0, 0L);
            }
        } else {
            for (int i = 0; i < INLINE_SEGMENTS; i++) {
                final long segment = sqe + SQE_SEGMENTS_OFFSET + (long) i * SEGMENT_LENGTH;
                if (i < segmentCount) {
                    writeSegment(segment, regionIds[i], segmentLengths[i], regionOffsets[i]);
                } else {
                    writeSegment(segment, 0, 0, 0L);
                }
            }
        }
        recordSubmission(cid, sqe, sqTail);
        sqTail++;
        return true;
    }

    /**
     * Submitter: whether the SQ has a free slot at the shadow tail (re-reading the master's SQ head only when the
     * cached one says full).
     *
     * @throws IllegalStateException if the master's SQ head is more than depth behind the tail (peer corruption)
     */
    private boolean sqHasRoom() {
        if (sqTail - sqHeadCached < depth) {
            return true;
        }
        sqHeadCached = VirtNvmeDescriptor.sqHeadAcquire(memory);
        final int used = sqTail - sqHeadCached;
        if (Integer.compareUnsigned(used, depth) > 0) {
            throw new IllegalStateException("VirtNvme qpair " + qpairId + ": SQ head "
                    + Integer.toUnsignedString(sqHeadCached) + " is more than depth=" + depth + " behind tail "
                    + Integer.toUnsignedString(sqTail) + " (peer corruption)");
        }
        return used < depth;
    }

    /**
     * Submitter: takes over the records of commands another submitter put in this SQ and that are still outstanding
     * (issue #4: the commands a rolling upgrade carries from the old slave to the new one), so that {@link
     * #resubmit} can send them again after a master restart (spec §10.2). For each CID in {@code cids}, the newest of
     * the last depth SQ slots before the tail whose SQE has that CID and {@code nsid} is its command's (a CID is
     * submitted again only after it completed, so an older SQE with it is older than the window): its 64 bytes become
     * this instance's copy and its index the CID's SQ index. One pass over the SQ, newest first. The slots are peer
     * memory: only the CID and namespace are matched, and the copy is what the master fetched, so a resubmission
     * repeats the same command.
     *
     * @param cids outstanding CIDs, each in [0, depth)
     * @param nsid the namespace the submitter uses (non-zero: a never-written slot holds 0)
     * @return how many were found; one not found had its slot overwritten since (it was submitted depth or more
     *     commands before the tail), and {@link #resubmit} refuses it as before
     * @throws IndexOutOfBoundsException if a CID is out of range
     */
    public int adoptSubmissions(final int[] cids, final int nsid) {
        final boolean[] wanted = new boolean[depth];
        int distinct = 0;
        for (final int cid : cids) {
            Objects.checkIndex(cid, depth);
            if (!wanted[cid]) {
                wanted[cid] = true;
                distinct++;
            }
        }
        if (nsid == 0) {
            return 0;
        }
        int left = distinct;
        for (int back = 1; back <= depth && left > 0; back++) {
            final int index = sqTail - back;
            final long sqe = VirtNvmeDescriptor.sqeOffset(index & slotMask);
            final long word = memory.get(LONG_LE, sqe + SQE_OPCODE_OFFSET);
            final int cid = (int) ((word >>> 16) & 0xFFFF);
            if (cid < depth && wanted[cid] && (int) (word >>> 32) == nsid) {
                wanted[cid] = false;
                left--;
                recordSubmission(cid, sqe, index);
            }
        }
        if (left > 0) {
            // older than every slot: the master fetched it long ago (at most depth SQEs wait in the SQ), so after a
            // master restart it counts as lost, and resubmit refuses it (no copy)
            for (final int cid : cids) {
                if (wanted[cid]) {
                    cidSqIndex[cid] = sqTail - depth - 1;
                    sqeRecorded[cid] = false;
                }
            }
        }
        return distinct - left;
    }

    /**
     * Submitter: the SQE at {@code sqe}, written at SQ index {@code index}, is {@code cid}'s: a private copy for a
     * resubmission after a master restart (the slot is the master's to let us reuse).
     */
    private void recordSubmission(final int cid, final long sqe, final int index) {
        MemorySegment.copy(
                memory, sqe, sqeCopies, (long) cid * VirtNvmeDescriptor.SQE_LENGTH, VirtNvmeDescriptor.SQE_LENGTH);
        cidSqIndex[cid] = index;
        sqeRecorded[cid] = true;
    }

    /**
     * Submitter: the SQ index at which {@code cid} was last submitted ({@link #submit} or {@link #resubmit}). After a
     * master restart, an outstanding CID whose index is below the restarted master's SQ head was fetched by the dead
     * master and will never complete (spec §10.2 "Slave, on a master restart").
     *
     * @param cid [0, depth)
     * @return the SQ index (u32, wraps; compare with {@code (int) (index - head) < 0})
     * @throws IndexOutOfBoundsException if {@code cid} is out of range
     */
    public int submittedSqIndex(final int cid) {
        Objects.checkIndex(cid, depth);
        return cidSqIndex[cid];
    }

    /**
     * Submitter: writes the SQE that {@code cid} was last submitted with again, at the shadow SQ tail (spec §10.2: a
     * command the dead master fetched but never completed). Its indirect segment table is still in place: the CID is
     * outstanding, so nobody rewrote it. Published by the next {@link #publishSubmissions()}.
     *
     * @param cid an outstanding CID, [0, depth)
     * @return true if written, false if the SQ is full
     * @throws IndexOutOfBoundsException if {@code cid} is out of range
     * @throws IllegalStateException if this instance never submitted {@code cid} (nothing to resubmit), or the
     *     master's SQ head is more than depth behind the tail (peer corruption)
     */
    public boolean resubmit(final int cid) {
        Objects.checkIndex(cid, depth);
        if (!sqeRecorded[cid]) {
            throw new IllegalStateException("VirtNvme qpair " + qpairId + ": cid " + cid + " was not submitted here");
        }
        if (!sqHasRoom()) {
            return false;
        }
        final long sqe = VirtNvmeDescriptor.sqeOffset(sqTail & slotMask);
        MemorySegment.copy(
                sqeCopies, (long) cid * VirtNvmeDescriptor.SQE_LENGTH, memory, sqe, VirtNvmeDescriptor.SQE_LENGTH);
        cidSqIndex[cid] = sqTail;
        sqTail++;
        return true;
    }

    /**
     * Submitter: makes the SQEs written since the last call visible to the master by release-storing the SQ tail.
     *
     * @return true if the master must be woken (write its eventfd): it armed its SQ event index at an index this
     *     publication passed (virtio {@code vring_need_event}); false if nothing was new or the master is busy
     */
    public boolean publishSubmissions() {
        if (sqTail == sqTailPublished) {
            return false;
        }
        final int oldTail = sqTailPublished;
        // release: the SQEs and indirect tables written by submit() are visible before the new tail
        VirtNvmeDescriptor.sqTailRelease(memory, sqTail);
        sqTailPublished = sqTail;
        // Dekker with armSubmissionWakeup(): our tail store must be globally visible before we load its event index
        VarHandle.fullFence();
        final int eventIndex = VirtNvmeDescriptor.sqEventIndexAcquire(memory);
        return VirtNvmeDescriptor.needEvent(eventIndex, sqTail, oldTail);
    }

    /** Called by {@link #pollCompletions(CompletionHandler)} for each CQE. */
    @FunctionalInterface
    public interface CompletionHandler {
        /**
         * @param cid the command id the master completed (from peer memory: check it against your own table)
         * @param statusField NVMe status field, {@link VirtNvmeStatus}
         * @param result bytes transferred (u32)
         */
        void onCompletion(int cid, int statusField, int result);
    }

    /**
     * Submitter: consumes every CQE whose phase tag says "posted" (at most depth per call), calls the handler for
     * each in CQ order, then release-stores the CQ head. A CID becomes reusable when this method returns. If the
     * handler throws, the CQEs handled so far, including the one that threw, count as consumed.
     *
     * @param handler called once per CQE
     * @return number of CQEs consumed
     */
    public int pollCompletions(final CompletionHandler handler) {
        int consumed = 0;
        try {
            while (consumed < depth) {
                final int index = cqHead + consumed;
                final long cqe = VirtNvmeDescriptor.cqeOffset(depth, index & slotMask);
                // acquire: once the phase tag matches, the rest of the CQE (result) is visible
                final int cidStatus = VirtNvmeDescriptor.cqeCidStatusAcquire(memory, cqe);
                if (phaseOf(cidStatus) != expectedPhase(index)) {
                    break;
                }
                final int result = memory.get(INT_LE, cqe + CQE_RESULT_OFFSET);
                consumed++;
                handler.onCompletion(
                        cidStatus & 0xFFFF,
                        (cidStatus >>> (16 + CQE_STATUS_FIELD_SHIFT)) & CQE_STATUS_FIELD_MASK,
                        result);
            }
        } finally {
            if (consumed > 0) {
                cqHead += consumed;
                // release: our reads of the consumed CQEs happen before the master may overwrite their slots
                VirtNvmeDescriptor.cqHeadRelease(memory, cqHead);
            }
        }
        return consumed;
    }

    /**
     * Submitter, before it sleeps on its eventfd: stores the CQ event index = CQ head ("wake me when a CQE is posted
     * at this index"), then looks once more.
     *
     * @return true if a CQE is already posted: do not sleep, poll
     */
    public boolean armCompletionWakeup() {
        VirtNvmeDescriptor.cqEventIndexRelease(memory, cqHead);
        // Dekker with publishCompletions(): the event index store must be visible before we load the phase tag
        VarHandle.fullFence();
        return isCqePosted(cqHead);
    }

    // ---------------------------------------------------------------- executor (master)

    /**
     * View of the SQE being handled by {@link #pollSubmissions(SubmissionHandler, int)}, valid only inside the handler
     * call. Before calling the handler the executor copies the 64-byte SQE out of shared memory into this object and
     * releases the SQ head past it (spec §6.4), so every field and the inline segments are read from that private
     * copy and stay the same however the peer rewrites the slot. Indirect segments are read from the
     * CID's table in shared memory on each call: the table is the slave's until it has consumed the completion, so
     * only a faulty slave changes it. Everything is untrusted: call {@link #validate()} first and answer its status;
     * every segment access is bounds-checked again.
     */
    public static final class Command {
        private final VirtNvmeQueuePair qp;
        // private copy of the SQE, 8-byte aligned (backed by a long[]): no per-command allocation
        private final MemorySegment sqe = MemorySegment.ofArray(new long[SQE_LENGTH / Long.BYTES]);
        private int opcode;
        private int flags;
        private int cid;
        private int nsid;
        private long offsetBytes;
        private int lengthBytes;
        private int segmentCount;

        private Command(final VirtNvmeQueuePair qp) {
            this.qp = qp;
        }

        private void copyFrom(final long sqeOffset) {
            MemorySegment.copy(qp.memory, sqeOffset, sqe, 0, SQE_LENGTH);
            final long dword01 = sqe.get(LONG_LE, SQE_OPCODE_OFFSET);
            opcode = (int) dword01 & 0xFF;
            flags = (int) (dword01 >>> 8) & 0xFF;
            cid = (int) (dword01 >>> 16) & 0xFFFF;
            nsid = (int) (dword01 >>> 32);
            offsetBytes = sqe.get(LONG_LE, SQE_OFFSET_BYTES_OFFSET);
            final long dword45 = sqe.get(LONG_LE, SQE_LENGTH_BYTES_OFFSET);
            lengthBytes = (int) dword45;
            segmentCount = (int) (dword45 >>> 32) & 0xFFFF;
        }

        /** @return the opcode (u8), see {@link VirtNvmeOpcodes} */
        public int opcode() {
            return opcode;
        }

        /** @return the flags (u8), {@link VirtNvmeDescriptor#SQE_FLAG_FUA_MASK} and the indirect bit */
        public int flags() {
            return flags;
        }

        /** @return true if the FUA flag is set */
        public boolean isFua() {
            return (flags & SQE_FLAG_FUA_MASK) != 0;
        }

        /** @return true if the DEALLOCATE flag is set (WRITE_ZEROES may deallocate the range) */
        public boolean isDeallocate() {
            return (flags & SQE_FLAG_DEALLOCATE_MASK) != 0;
        }

        /** @return true if the segments are in the CID's indirect table */
        public boolean isSegmentsIndirect() {
            return (flags & SQE_FLAG_SEGMENTS_INDIRECT_MASK) != 0;
        }

        /** @return the command id (u16; below depth only if {@link #validate()} said so) */
        public int cid() {
            return cid;
        }

        /** @return the volume id (u32, use {@link Integer#toUnsignedLong(int)}) */
        public int nsid() {
            return nsid;
        }

        /** @return the byte offset in the bdev (u64: negative means beyond 2^63, out of range) */
        public long offsetBytes() {
            return offsetBytes;
        }

        /** @return the length in bytes (u32, use {@link Integer#toUnsignedLong(int)}) */
        public int lengthBytes() {
            return lengthBytes;
        }

        /** @return the segment count (u16, unchecked; the segment accessors check it) */
        public int segmentCount() {
            return segmentCount;
        }

        /**
         * @param i segment index, [0, segmentCount)
         * @return the memory region id of segment i (u32)
         * @throws IndexOutOfBoundsException if i is not below the segment count
         * @throws IllegalStateException if the peer wrote a segment count or CID out of range
         */
        public int segmentRegionId(final int i) {
            final long offset = segmentOffset(i);
            return segmentMemory().get(INT_LE, offset + SEGMENT_REGION_ID_OFFSET);
        }

        /**
         * @param i segment index, [0, segmentCount)
         * @return the byte offset of segment i within its region (u64)
         * @throws IndexOutOfBoundsException if i is not below the segment count
         * @throws IllegalStateException if the peer wrote a segment count or CID out of range
         */
        public long segmentRegionOffset(final int i) {
            final long offset = segmentOffset(i);
            return segmentMemory().get(LONG_LE, offset + SEGMENT_REGION_OFFSET_OFFSET);
        }

        /**
         * @param i segment index, [0, segmentCount)
         * @return the length in bytes of segment i (u32)
         * @throws IndexOutOfBoundsException if i is not below the segment count
         * @throws IllegalStateException if the peer wrote a segment count or CID out of range
         */
        public int segmentLengthBytes(final int i) {
            final long offset = segmentOffset(i);
            return segmentMemory().get(INT_LE, offset + SEGMENT_LENGTH_BYTES_OFFSET);
        }

        /**
         * Checks the syntax of the command (spec §9.1): opcode defined, no undefined flag bit (DEALLOCATE only on
         * WRITE_ZEROES), CID below depth,
         * segment count within the inline or indirect limit, for READ and WRITE at least one segment and segment
         * lengths that add up to the length, for the other opcodes no segment. Range checks against the volume and
         * the memory regions are the caller's (spec §9.2).
         *
         * @return {@link VirtNvmeStatus#SUCCESS}, {@link VirtNvmeStatus#INVALID_OPCODE} or {@link
         *     VirtNvmeStatus#INVALID_FIELD}
         */
        public int validate() {
            if (!VirtNvmeOpcodes.isDefined(opcode)) {
                return VirtNvmeStatus.INVALID_OPCODE;
            }
            if ((flags & ~SQE_FLAGS_DEFINED_MASK) != 0 || cid >= qp.depth || segmentCount > segmentLimit()) {
                return VirtNvmeStatus.INVALID_FIELD;
            }
            if ((flags & SQE_FLAG_DEALLOCATE_MASK) != 0 && opcode != VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES) {
                return VirtNvmeStatus.INVALID_FIELD;
            }
            if (opcode == VirtNvmeOpcodes.NVME_OPC_READ || opcode == VirtNvmeOpcodes.NVME_OPC_WRITE) {
                if (segmentCount == 0) {
                    return VirtNvmeStatus.INVALID_FIELD;
                }
                long sumBytes = 0;
                for (int i = 0; i < segmentCount; i++) {
                    sumBytes += Integer.toUnsignedLong(segmentLengthBytes(i));
                }
                if (sumBytes != Integer.toUnsignedLong(lengthBytes)) {
                    return VirtNvmeStatus.INVALID_FIELD;
                }
            } else if (segmentCount != 0) {
                return VirtNvmeStatus.INVALID_FIELD;
            }
            return VirtNvmeStatus.SUCCESS;
        }

        private int segmentLimit() {
            return isSegmentsIndirect() ? qp.maxSegments : Math.min(INLINE_SEGMENTS, qp.maxSegments);
        }

        /** @return the private SQE copy for inline segments, the shared region for the indirect table */
        private MemorySegment segmentMemory() {
            return isSegmentsIndirect() ? qp.memory : sqe;
        }

        /** @return offset of segment i within {@link #segmentMemory()} */
        private long segmentOffset(final int i) {
            // untrusted: the peer wrote segmentCount, flags and cid; bound every segment access by them
            if (segmentCount > segmentLimit()) {
                throw new IllegalStateException("VirtNvme qpair " + qp.qpairId + " cid " + cid + ": segmentCount="
                        + segmentCount + " exceeds " + (isSegmentsIndirect() ? "maxSegments=" : "inline limit=")
                        + segmentLimit() + " (peer wrote an invalid SQE)");
            }
            Objects.checkIndex(i, segmentCount);
            if (!isSegmentsIndirect()) {
                return SQE_SEGMENTS_OFFSET + (long) i * SEGMENT_LENGTH;
            }
            if (cid >= qp.depth) {
                throw new IllegalStateException("VirtNvme qpair " + qp.qpairId + ": indirect cid=" + cid
                        + " not below depth=" + qp.depth + " (peer wrote an invalid SQE)");
            }
            return VirtNvmeDescriptor.indirectSegmentOffset(qp.depth, qp.maxSegments, cid, i);
        }
    }

    /** Called by {@link #pollSubmissions(SubmissionHandler, int)} for each SQE. */
    @FunctionalInterface
    public interface SubmissionHandler {
        /** @param command the SQE, valid only during this call */
        void onSubmission(Command command);
    }

    /**
     * Executor: consumes up to {@code max} SQEs between the SQ head and the (acquired) SQ tail, in SQ order: for each,
     * copies the SQE into the {@link Command}, release-stores the SQ head past it (the slave may reuse the slot from
     * then on), then calls the handler. Because the head passes an SQE before its completion can be posted, a slave
     * with at most depth commands outstanding never finds the SQ full. If the handler throws, the SQE it was given
     * counts as consumed.
     *
     * @param handler called once per SQE with the command
     * @param max most SQEs to consume, at least 0
     * @return number of SQEs consumed
     * @throws IllegalStateException if the SQ tail is more than depth ahead of the SQ head (peer corruption)
     * @throws IllegalArgumentException if max is negative
     */
    public int pollSubmissions(final SubmissionHandler handler, final int max) {
        if (max < 0) {
            throw new IllegalArgumentException("max must be at least 0: max=" + max);
        }
        // acquire: the SQEs below the tail (and their indirect tables) are visible
        final int tail = VirtNvmeDescriptor.sqTailAcquire(memory);
        final int available = tail - sqHead;
        if (Integer.compareUnsigned(available, depth) > 0) {
            throw new IllegalStateException("VirtNvme qpair " + qpairId + ": SQ tail "
                    + Integer.toUnsignedString(tail) + " is more than depth=" + depth + " ahead of head "
                    + Integer.toUnsignedString(sqHead) + " (peer corruption)");
        }
        final int batch = Math.min(available, max);
        for (int i = 0; i < batch; i++) {
            command.copyFrom(VirtNvmeDescriptor.sqeOffset(sqHead & slotMask));
            sqHead++;
            // release: our copy of the SQE is complete before the slave may overwrite its slot
            VirtNvmeDescriptor.sqHeadRelease(memory, sqHead);
            handler.onSubmission(command);
        }
        return batch;
    }

    /**
     * Executor: posts one CQE at the CQ tail with the phase tag of this pass over the CQ and sqHead = the current SQ
     * head. It is visible at once (its last four bytes are one release store); {@link #publishCompletions()} decides
     * whether to wake the slave.
     *
     * @param cid command id (u16), normally the command's
     * @param statusField NVMe status field, [0, 0x7FFF], see {@link VirtNvmeStatus}
     * @param result bytes transferred (u32)
     * @return true if posted, false if the CQ is full (the slave has not consumed depth CQEs yet)
     * @throws IllegalArgumentException if cid or statusField is out of range
     * @throws IllegalStateException if the slave's CQ head is ahead of the CQ tail (peer corruption)
     */
    public boolean postCompletion(final int cid, final int statusField, final int result) {
        if (cid < 0 || cid > 0xFFFF) {
            throw new IllegalArgumentException("cid must be a u16: cid=" + cid);
        }
        if (statusField < 0 || statusField > CQE_STATUS_FIELD_MASK) {
            throw new IllegalArgumentException(
                    "statusField must be 15 bits: statusField=0x" + Integer.toHexString(statusField));
        }
        if (cqTail - cqHeadCached >= depth) {
            cqHeadCached = VirtNvmeDescriptor.cqHeadAcquire(memory);
            final int used = cqTail - cqHeadCached;
            if (Integer.compareUnsigned(used, depth) > 0) {
                throw new IllegalStateException("VirtNvme qpair " + qpairId + ": CQ head "
                        + Integer.toUnsignedString(cqHeadCached) + " is not within depth=" + depth + " of tail "
                        + Integer.toUnsignedString(cqTail) + " (peer corruption)");
            }
            if (used == depth) {
                return false;
            }
        }
        final long cqe = VirtNvmeDescriptor.cqeOffset(depth, cqTail & slotMask);
        // result u32 + reserved u32, then sqHead u16 + sqId u16
        memory.set(LONG_LE, cqe + CQE_RESULT_OFFSET, result & 0xFFFF_FFFFL);
        memory.set(INT_LE, cqe + CQE_SQ_HEAD_OFFSET, (sqHead & 0xFFFF) | (qpairId << 16));
        final int status = (statusField << CQE_STATUS_FIELD_SHIFT) | expectedPhase(cqTail);
        // release: result, sqHead and sqId are visible before the phase tag that says "posted"
        VirtNvmeDescriptor.cqeCidStatusRelease(memory, cqe, cid | (status << 16));
        cqTail++;
        return true;
    }

    /**
     * Executor: records when CID {@code cid}'s command went to the device (spec §3.1). A plain store: the CQE's
     * release store that follows publishes it.
     */
    public void deviceSubmitNs(final int cid, final long nowNs) {
        final long at = cidTimestamp(cid);
        if (at >= 0) {
            memory.set(LONG_LE, at + VirtNvmeDescriptor.CID_DEVICE_SUBMIT_NS_OFFSET, nowNs);
        }
    }

    /**
     * Executor: records when the device completed CID {@code cid}'s command (spec §3.1), before {@link
     * #postCompletion}; a plain store published by the CQE's release store.
     */
    public void deviceCompleteNs(final int cid, final long nowNs) {
        final long at = cidTimestamp(cid);
        if (at >= 0) {
            memory.set(LONG_LE, at + VirtNvmeDescriptor.CID_DEVICE_COMPLETE_NS_OFFSET, nowNs);
        }
    }

    /**
     * Submitter, from {@link CompletionHandler#onCompletion} of {@code cid}: when the master took the command to the
     * device (0 if it did not say). Untrusted (the master's clock reading): only for statistics.
     */
    public long deviceSubmitNs(final int cid) {
        final long at = cidTimestamp(cid);
        return at < 0 ? 0 : memory.get(LONG_LE, at + VirtNvmeDescriptor.CID_DEVICE_SUBMIT_NS_OFFSET);
    }

    /** Submitter, from {@link CompletionHandler#onCompletion} of {@code cid}: when the device completed it. */
    public long deviceCompleteNs(final int cid) {
        final long at = cidTimestamp(cid);
        return at < 0 ? 0 : memory.get(LONG_LE, at + VirtNvmeDescriptor.CID_DEVICE_COMPLETE_NS_OFFSET);
    }

    private long cidTimestamp(final int cid) {
        if (cid < 0 || cid >= depth) {
            throw new IllegalArgumentException("cid must be below depth " + depth + ": cid=" + cid);
        }
        if (!deviceTimestamps) {
            return -1;
        }
        return VirtNvmeDescriptor.cidTimestampsOffset(depth, maxSegments)
                + (long) cid * VirtNvmeDescriptor.CID_TIMESTAMPS_LENGTH;
    }

    /**
     * Executor: the CQEs posted since the last call are already visible; decides whether the slave must be woken.
     *
     * @return true if the slave must be woken (write its eventfd): it armed its CQ event index at an index posted
     *     since the last call (virtio {@code vring_need_event}); false if nothing was posted or the slave is busy
     */
    public boolean publishCompletions() {
        if (cqTail == cqTailPublished) {
            return false;
        }
        final int oldTail = cqTailPublished;
        cqTailPublished = cqTail;
        // Dekker with armCompletionWakeup(): the CQE phase-tag stores must be globally visible before we load the
        // event index
        VarHandle.fullFence();
        final int eventIndex = VirtNvmeDescriptor.cqEventIndexAcquire(memory);
        return VirtNvmeDescriptor.needEvent(eventIndex, cqTail, oldTail);
    }

    /**
     * Executor, before it sleeps on its eventfd: stores the SQ event index = SQ head ("wake me when the tail passes
     * this index"), then looks once more.
     *
     * @return true if submissions are already pending: do not sleep, poll
     */
    public boolean armSubmissionWakeup() {
        VirtNvmeDescriptor.sqEventIndexRelease(memory, sqHead);
        // Dekker with publishSubmissions(): the event index store must be visible before we load the tail
        VarHandle.fullFence();
        return VirtNvmeDescriptor.sqTailAcquire(memory) != sqHead;
    }

    /**
     * Executor: a hint for batching and statistics.
     *
     * @return SQ tail (acquired now) minus SQ head, unsigned 32-bit arithmetic; more than depth means peer corruption,
     *     which {@link #pollSubmissions(SubmissionHandler, int)} reports
     */
    public int submissionsPending() {
        return VirtNvmeDescriptor.sqTailAcquire(memory) - sqHead;
    }

    private void writeSegment(final long offset, final int regionId, final int lengthBytes, final long regionOffset) {
        memory.set(LONG_LE, offset + SEGMENT_REGION_ID_OFFSET, (regionId & 0xFFFF_FFFFL) | ((long) lengthBytes << 32));
        memory.set(LONG_LE, offset + SEGMENT_REGION_OFFSET_OFFSET, regionOffset);
    }

    private int recoverCqTail(final int head) {
        int tail = head;
        // spec §10.2 "Master crash": the CQEs posted but not yet consumed carry the phase tag of their pass
        for (int i = 0; i < depth && isCqePosted(tail); i++) {
            tail++;
        }
        return tail;
    }

    private boolean isCqePosted(final int index) {
        final long cqe = VirtNvmeDescriptor.cqeOffset(depth, index & slotMask);
        return phaseOf(VirtNvmeDescriptor.cqeCidStatusAcquire(memory, cqe)) == expectedPhase(index);
    }

    /** NVMe: the first pass over the CQ posts phase 1 (the memory starts zeroed), the next 0, and so on. */
    private int expectedPhase(final int index) {
        return ((index >>> depthShift) & 1) ^ 1;
    }

    private static int phaseOf(final int cidStatus) {
        return (cidStatus >>> 16) & CQE_STATUS_PHASE_MASK;
    }

    private static void checkMemory(final MemorySegment memory) {
        if (!memory.isNative()) {
            throw new IllegalArgumentException("VirtNvme qpair memory must be native (mapped shared memory)");
        }
        if ((memory.address() & (CACHE_LINE_LENGTH - 1)) != 0) {
            throw new IllegalArgumentException(
                    "VirtNvme qpair memory must be 64-byte aligned: address=0x" + Long.toHexString(memory.address()));
        }
    }
}
