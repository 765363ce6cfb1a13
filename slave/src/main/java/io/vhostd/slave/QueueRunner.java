package io.vhostd.slave;

import io.vhostd.journal.inflight.InflightChain;
import io.vhostd.journal.inflight.InflightRegionPacked;
import io.vhostd.journal.inflight.InflightRegionSplit;
import io.vhostd.shm.stats.QueueStatsWriter;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.vhost.virtio.GuestMemory;
import io.vhostd.vhost.virtio.Virtqueue;
import java.util.Arrays;
import java.util.concurrent.CompletableFuture;

/**
 * The state of one started virtqueue on the controller's data-path thread: the guest ring (split or packed), its
 * VirtNvme queue pair, what completing each request needs, and the VirtNvme CIDs. Touched only by {@link
 * ControllerAgent}'s thread.
 *
 * <p>Requests are indexed by the id the used ring returns ({@link io.vhostd.vhost.virtio.DescriptorChain#head()}:
 * split head index, packed buffer id; both &lt; ring size). A request becomes one or more VirtNvme commands (a
 * multi-segment DISCARD / WRITE_ZEROES fans out; a write-through OUT is followed by a FLUSH), so CIDs are allocated
 * separately, from a free stack of the queue pair's depth; {@link #cidRequest} maps a CID back to its request. No
 * allocation after construction.
 */
final class QueueRunner {
    final int index;
    final Virtqueue vq;
    final GuestMemory memory;
    final int kickFd;
    final int callFd;
    final VirtNvmeQueuePair qp;
    final int sqEventFd;
    final int cqEventFd;
    /** Virtio features negotiated (DISCARD, WRITE_ZEROES, FLUSH, CONFIG_WCE decide what requests do). */
    final long features;

    // ---- per request, indexed by id (< vq.size()) ----
    /** Where the request's status byte is: index of its region in {@link #memory} and offset in that region. */
    final int[] statusRegion;

    final long[] statusOffset;
    /** Bytes the device wrote into the request's buffers on success, status byte included (used element len). */
    final int[] usedLengthBytes;
    /** Ring descriptors of the request's chain (what a packed used descriptor skips). */
    final int[] ringDescriptors;
    /** Whether an id is in flight (a guest re-using an id that is still in flight is caught here). */
    final boolean[] inflight;
    /** VirtNvme commands of the request not completed yet (plus one while its commands are being submitted). */
    final int[] pendingCommands;
    /** VIRTIO_BLK_S_* the request completes with: OK until a command fails. */
    final byte[] requestStatus;
    /** Write-through: a FLUSH must follow once the request's commands completed, before it completes. */
    final boolean[] flushAfter;

    // ---- per CID, < qp.depth() ----
    /** The request (id) a CID works for, or -1 when the CID is free. */
    final int[] cidRequest;
    /** Free CIDs (a stack). */
    final int[] freeCids;

    int freeCidCount;

    /** Requests whose commands completed and whose FLUSH goes out after the completion poll (FIFO of ids). */
    final int[] flushQueue;

    int flushHead;
    int flushCount;

    /** Requests in flight (taken from the ring, used element not pushed yet). */
    int inflightCount;

    boolean usedPending;

    // ---- session journal (issue #4): slot = head index ----
    /** Whether the session journal tracks this queue (split: slot = head; packed: cells, journal.md §6.5). */
    boolean journaled;
    /** Heads pushed to the used ring since the last publication: the next completion batch (journal.md §6.2). */
    final int[] usedBatch;

    int usedBatchCount;
    /**
     * The queue's vhost-user inflight region (INFLIGHT_SHMFD, split rings), or null: each fetched head is marked before
     * it is processed, and each completion batch is cleared in two phases around the used-ring publication.
     */
    InflightRegionSplit inflightRegion;

    /**
     * The packed ring's inflight region, or null: each fetched chain's ring descriptors are copied into it, and each
     * completion batch returns the chains by head entry.
     */
    InflightRegionPacked packedRegion;

    /** Packed region: the head entry of the chain each id was fetched as, -1 when the id is not in the region. */
    final int[] packedEntry;

    /** Packed region: the head entries of {@link #usedBatch}. */
    final int[] usedEntries;

    /** Packed chains a reconnected session resubmits (descriptor copies) before fetching, in order. */
    InflightChain[] replayChains = new InflightChain[0];

    int replayChainNext;

    /** Requests a replacement slave re-reads by head and resubmits before fetching (journal.md §7.4), in order. */
    int[] replayHeads = new int[0];

    int replayNext;

    /**
     * Rolling upgrade (issue #4): requests the previous slave left with commands at the device, taken over when the
     * data path takes this queue ({@link ControllerAgent#startQueue}); null otherwise.
     */
    io.vhostd.shm.control.ControlMessage.CarriedQueue carried;

    /** Rolling upgrade of a packed ring: buffer id → the carried chain's journal copies (journal.md §6.5), or null. */
    InflightChain[] carriedChains;

    boolean stopping;
    CompletableFuture<Integer> stopped;

    // ---- statistics (issue #5, virtnvme-shm/spec/stats.md): per request id, written only with a stats region ----
    /** This queue's section of the controller's stats region, or null (no region: nothing is counted). */
    QueueStatsWriter stats;
    /** The region's flags word, read once per {@code process} call. */
    int statsFlags;
    /** The current poll batch's fetch time (one clock reading per batch), 0 until the batch took a request. */
    long batchFetchNs;

    final long[] fetchNs;
    final long[] submitNs;
    final long[] deviceSubmitNs;
    final long[] deviceCompleteNs;
    /** {@code StatsDescriptor.OP_*} of the request, or OP_NONE. */
    final byte[] statsOp;

    final long[] statsBytes;
    final long[] statsOffsetBytes;
    /** Requests taken in this {@code process} call (their submit time and the queue-depth change). */
    final int[] fetchedHeads;

    int fetchedCount;
    /** Requests pushed to the used ring since the last publication (counted when it is published). */
    final int[] doneHeads;

    int doneCount;

    /**
     * @throws IllegalArgumentException if the queue pair cannot hold the commands of one request ({@link
     *     ControllerAgent#MAX_COMMANDS_PER_REQUEST})
     */
    QueueRunner(
            int index,
            Virtqueue vq,
            GuestMemory memory,
            int kickFd,
            int callFd,
            VirtNvmeQueuePair qp,
            int sqEventFd,
            int cqEventFd,
            long features) {
        if (qp.depth() < ControllerAgent.MAX_COMMANDS_PER_REQUEST) {
            throw new IllegalArgumentException("queue " + index + ": VirtNvme queue depth " + qp.depth()
                    + " is below the " + ControllerAgent.MAX_COMMANDS_PER_REQUEST + " commands one request may need");
        }
        this.index = index;
        this.vq = vq;
        this.memory = memory;
        this.kickFd = kickFd;
        this.callFd = callFd;
        this.qp = qp;
        this.sqEventFd = sqEventFd;
        this.cqEventFd = cqEventFd;
        this.features = features;
        int size = vq.size();
        this.statusRegion = new int[size];
        this.statusOffset = new long[size];
        this.usedLengthBytes = new int[size];
        this.ringDescriptors = new int[size];
        this.inflight = new boolean[size];
        this.pendingCommands = new int[size];
        this.requestStatus = new byte[size];
        this.flushAfter = new boolean[size];
        this.flushQueue = new int[size];
        this.usedBatch = new int[size];
        this.packedEntry = new int[size];
        Arrays.fill(packedEntry, -1);
        this.usedEntries = new int[size];
        this.fetchNs = new long[size];
        this.submitNs = new long[size];
        this.deviceSubmitNs = new long[size];
        this.deviceCompleteNs = new long[size];
        this.statsOp = new byte[size];
        this.statsBytes = new long[size];
        this.statsOffsetBytes = new long[size];
        this.fetchedHeads = new int[size];
        this.doneHeads = new int[size];
        int depth = qp.depth();
        this.cidRequest = new int[depth];
        Arrays.fill(cidRequest, -1);
        this.freeCids = new int[depth];
        // pop order 0, 1, 2, ...: CIDs are reused from the top of the stack
        for (int i = 0; i < depth; i++) {
            freeCids[i] = depth - 1 - i;
        }
        this.freeCidCount = depth;
    }

    /** With every feature the block device offers ({@link BlkDevice#FEATURES}) negotiated. */
    QueueRunner(
            int index,
            Virtqueue vq,
            GuestMemory memory,
            int kickFd,
            int callFd,
            VirtNvmeQueuePair qp,
            int sqEventFd,
            int cqEventFd) {
        this(index, vq, memory, kickFd, callFd, qp, sqEventFd, cqEventFd, BlkDevice.FEATURES);
    }
}
