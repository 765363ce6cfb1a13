package io.vhostd.journal.inflight;

import java.util.List;

/**
 * What {@link InflightRegionSplit#start} found (spec §9.2).
 *
 * @param fresh the region was uninitialised ({@code version} 0) and has been initialised: nothing to resubmit
 * @param usedIdx the used index the region holds now (equal to the ring's {@code used->idx})
 * @param lastAvailIdx where to fetch next: {@code used_idx + inflight count} (u16), as libvhost-user computes it
 * @param resubmit the heads in flight, oldest fetch first
 * @param clearedBatchSize size of a torn last batch whose heads were cleared ({@code used->idx - used_idx}), or 0
 */
public record InflightSplitRecovery(
        boolean fresh, int usedIdx, int lastAvailIdx, List<InflightHead> resubmit, int clearedBatchSize) {

    public InflightSplitRecovery {
        resubmit = List.copyOf(resubmit);
    }
}
