package io.vhostd.journal;

import java.util.List;

/**
 * The recovered state of one started virtqueue (spec §7).
 *
 * @param queueIndex the virtqueue's index
 * @param lastAvailIdx the avail index to fetch from next (split: u16; packed: index | wrap counter &lt;&lt; 15; NVMe SQ:
 *     the SQ head)
 * @param usedIdx the used index to push at next (split: u16; packed: index | wrap counter &lt;&lt; 15; NVMe CQ: the CQ
 *     tail as the writer encodes it)
 * @param inflight the requests in flight, oldest fetch first
 * @param interruptedBatch what happened to a completion batch in progress when the writer died
 * @param tornFetchSlot the slot of a fetch that was in progress and is discarded (its avail entry is fetched again),
 *     or -1
 */
public record RecoveredQueue(
        int queueIndex,
        int lastAvailIdx,
        int usedIdx,
        List<InflightRequest> inflight,
        BatchOutcome interruptedBatch,
        int tornFetchSlot) {

    public RecoveredQueue {
        inflight = List.copyOf(inflight);
    }
}
