package io.vhostd.journal;

/**
 * A configured virtqueue as the journal's committed configuration holds it (spec §5.3).
 *
 * @param queueIndex the virtqueue's index
 * @param vring its ring configuration
 * @param started the queue was started ({@code VHOST_USER_SET_VRING_KICK}) and not stopped since ({@code
 *     VHOST_USER_GET_VRING_BASE}); only a started queue has requests in flight
 * @param enabled {@code VHOST_USER_SET_VRING_ENABLE} with 1 (vhost-user.rst "Ring states")
 * @param startLastAvailIdx the last avail index the queue started at ({@code VHOST_USER_SET_VRING_BASE})
 * @param startUsedIdx the used index the queue started at (read from the ring when it started)
 * @param startFetchSeq the queue's fetch sequence when it started (spec §6.4): fetches after the start have larger
 *     sequences
 * @param startBatchSeq the queue's applied batch sequence when it started
 */
public record QueueConfig(
        int queueIndex,
        VringConfig vring,
        boolean started,
        boolean enabled,
        int startLastAvailIdx,
        int startUsedIdx,
        long startFetchSeq,
        int startBatchSeq) {}
