package io.vhostd.slave;

import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.vhost.virtio.GuestMemory;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import java.util.concurrent.CompletableFuture;

/**
 * The state of one started virtqueue on the controller's data-path thread: the guest ring, its VirtNvme queue pair,
 * and per CID (= head descriptor index) what completing it needs. Touched only by {@link ControllerAgent}'s thread.
 */
final class QueueRunner {
    final int index;
    final SplitVirtqueue vq;
    final GuestMemory memory;
    final int kickFd;
    final int callFd;
    final VirtNvmeQueuePair qp;
    final int sqEventFd;
    final int cqEventFd;
    /** Guest physical address of the status byte of the request with this CID. */
    final long[] statusGpa;
    /** Bytes the device wrote into the request's buffers, including the status byte (used element len). */
    final int[] usedLengthBytes;
    /** Whether a CID is in flight (a guest re-using a head that is still in flight is caught here). */
    final boolean[] inflight;

    int inflightCount;
    boolean usedPending;
    boolean stopping;
    CompletableFuture<Integer> stopped;

    QueueRunner(
            int index,
            SplitVirtqueue vq,
            GuestMemory memory,
            int kickFd,
            int callFd,
            VirtNvmeQueuePair qp,
            int sqEventFd,
            int cqEventFd) {
        this.index = index;
        this.vq = vq;
        this.memory = memory;
        this.kickFd = kickFd;
        this.callFd = callFd;
        this.qp = qp;
        this.sqEventFd = sqEventFd;
        this.cqEventFd = cqEventFd;
        this.statusGpa = new long[vq.size()];
        this.usedLengthBytes = new int[vq.size()];
        this.inflight = new boolean[vq.size()];
    }
}
