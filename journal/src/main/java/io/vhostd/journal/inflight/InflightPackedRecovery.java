package io.vhostd.journal.inflight;

import java.util.List;

/**
 * What {@link InflightRegionPacked#start} found (spec §9.3).
 *
 * @param fresh the region was uninitialised and has been initialised: nothing to resubmit
 * @param usedIdx the used index (below the queue size)
 * @param usedWrapCounter the used wrap counter
 * @param lastAvailIdx where to fetch next: {@code used_idx} plus the descriptors of the chains in flight, modulo the
 *     queue size
 * @param lastAvailWrapCounter the avail wrap counter that goes with {@code lastAvailIdx}
 * @param resubmit the chains in flight, oldest fetch first
 * @param outcome what happened to an update in progress
 */
public record InflightPackedRecovery(
        boolean fresh,
        int usedIdx,
        boolean usedWrapCounter,
        int lastAvailIdx,
        boolean lastAvailWrapCounter,
        List<InflightChain> resubmit,
        Outcome outcome) {

    /** What recovery did with the {@code old_*} fields. */
    public enum Outcome {
        /** {@code used_idx}/{@code used_wrap_counter} matched their {@code old_*} copies (free_head rolled back). */
        CONSISTENT,
        /** The ring showed the batch as used: the in-progress update was committed ({@code old_* = current}). */
        COMMITTED,
        /** The ring did not show the batch: the in-progress update was rolled back ({@code current = old_*}). */
        ROLLED_BACK
    }

    public InflightPackedRecovery {
        resubmit = List.copyOf(resubmit);
    }
}
