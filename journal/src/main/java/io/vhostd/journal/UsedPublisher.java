package io.vhostd.journal;

/**
 * Makes a completion batch visible to the guest: between the two phases of {@link SessionJournal#requestsCompleted}
 * the caller writes the used elements (already pushed) and release-stores the ring's used index (split:
 * {@code used->idx}; packed: the first used descriptor's flags; NVMe: the CQEs' phase tags), then signals the guest if
 * it wants to. Implementations are allocated once, not per batch.
 */
@FunctionalInterface
public interface UsedPublisher {

    /**
     * @param queueIndex the virtqueue whose batch is published
     */
    void publishUsed(int queueIndex);
}
