package io.vhostd.vhost.backend;

import io.vhostd.journal.inflight.InflightChain;
import io.vhostd.journal.inflight.InflightHead;
import io.vhostd.journal.inflight.InflightPackedRecovery;
import io.vhostd.journal.inflight.InflightRegionPacked;
import io.vhostd.journal.inflight.InflightRegionSplit;
import io.vhostd.journal.inflight.InflightSplitRecovery;
import java.util.List;

/**
 * A ring's inflight region as the back-end hands it to the device when the ring starts
 * ({@code VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD}, vhost-user.rst "Inflight I/O tracking"): the writer the data path
 * runs per request and what the region's recovery found. Exactly one of {@link #split} and {@link #packed} is set.
 *
 * <p>Split: {@link InflightRegionSplit#fetched} before a head is processed, {@link InflightRegionSplit#batchBegin} /
 * {@link InflightRegionSplit#batchEnd} around each used-index store. Packed: {@link
 * InflightRegionPacked#descriptorFetched} per ring descriptor of a chain (it returns the chain's head entry), {@link
 * InflightRegionPacked#batchBegin} / {@link InflightRegionPacked#batchEnd} with head entries around each publication.
 *
 * @param split the split region's writer, already started, or null
 * @param recovery what {@link InflightRegionSplit#start} returned, or null
 * @param packed the packed region's writer, already started, or null
 * @param packedRecovery what {@link InflightRegionPacked#start} returned, or null
 * @param reconnected the buffer came back from the front-end ({@code VHOST_USER_SET_INFLIGHT_FD}): the ring was
 *     positioned from the region and the device must resubmit what it holds in flight; false for a buffer this
 *     back-end created or a restored session's (whose own journal says what to replay)
 */
public record VringInflight(
        InflightRegionSplit split,
        InflightSplitRecovery recovery,
        InflightRegionPacked packed,
        InflightPackedRecovery packedRecovery,
        boolean reconnected) {

    public VringInflight {
        if ((split == null) == (packed == null)
                || (split == null) != (recovery == null)
                || (packed == null) != (packedRecovery == null)) {
            throw new IllegalArgumentException("exactly one of a split and a packed region, each with its recovery");
        }
    }

    /** A split ring's region. */
    public static VringInflight ofSplit(
            InflightRegionSplit split, InflightSplitRecovery recovery, boolean reconnected) {
        return new VringInflight(split, recovery, null, null, reconnected);
    }

    /** A packed ring's region. */
    public static VringInflight ofPacked(
            InflightRegionPacked packed, InflightPackedRecovery recovery, boolean reconnected) {
        return new VringInflight(null, null, packed, recovery, reconnected);
    }

    /** Split: the heads to resubmit after a reconnect, oldest fetch (lowest counter) first; empty otherwise. */
    public List<InflightHead> resubmit() {
        return reconnected && recovery != null ? recovery.resubmit() : List.of();
    }

    /** Packed: the chains to resubmit after a reconnect (descriptor copies), oldest fetch first; empty otherwise. */
    public List<InflightChain> resubmitChains() {
        return reconnected && packedRecovery != null ? packedRecovery.resubmit() : List.of();
    }
}
