package io.vhostd.shm.stats;

/**
 * One trace record as read back (spec/stats.md "Trace ring"). Timestamps are CLOCK_MONOTONIC ns, 0 when not taken.
 *
 * @param seq the record's sequence in its queue's ring (1, 2, ...)
 * @param queue the queue (virtqueue index)
 * @param op {@code StatsDescriptor.OP_*} or {@link StatsDescriptor#OP_NONE}
 * @param status the virtio-blk status byte the request completed with (VIRTIO_BLK_S_*)
 * @param offsetBytes where in the bdev (the first range of a DISCARD / WRITE_ZEROES)
 * @param lengthBytes data bytes
 * @param fetchNs guest avail ring fetch
 * @param submitNs VirtNvme SQE published
 * @param deviceSubmitNs the master took the SQE to the device
 * @param deviceCompleteNs the device completed it
 * @param usedNs used-ring publish
 * @param notifyNs call eventfd written or suppressed
 */
public record TraceEvent(
        long seq,
        int queue,
        int op,
        int status,
        long offsetBytes,
        int lengthBytes,
        long fetchNs,
        long submitNs,
        long deviceSubmitNs,
        long deviceCompleteNs,
        long usedNs,
        long notifyNs) {}
