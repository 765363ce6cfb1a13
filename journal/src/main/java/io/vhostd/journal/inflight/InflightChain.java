package io.vhostd.journal.inflight;

import java.util.List;

/**
 * A packed-ring request to resubmit: the chain of descriptor copies whose head entry is in flight.
 *
 * @param headEntry the region entry of the chain's head (what {@link InflightRegionPacked#batchBegin} takes)
 * @param counter the head's {@code counter}: the fetch order
 * @param descriptors the chain's descriptors in ring order ({@code num} of them)
 */
public record InflightChain(int headEntry, long counter, List<InflightDesc> descriptors) {

    public InflightChain {
        descriptors = List.copyOf(descriptors);
    }
}
