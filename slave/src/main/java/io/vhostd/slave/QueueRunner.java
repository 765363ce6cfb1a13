package io.vhostd.slave;

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
    /** Whether the session journal tracks this queue (a split ring whose size fits the journal's slots). */
    boolean journaled;
    /** Heads pushed to the used ring since the last publication: the next completion batch (journal.md §6.2). */
    final int[] usedBatch;

    int usedBatchCount;
    /** Requests a replacement slave re-reads by head and resubmits before fetching (journal.md §7.4), in order. */
    int[] replayHeads = new int[0];

    int replayNext;

    boolean stopping;
    CompletableFuture<Integer> stopped;

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
