package io.vhostd.journal;

/**
 * Reads, from guest memory, how far the guest can see the used side of a queue whose completion batch was interrupted
 * by the writer's death (spec §7.3): recovery compares the answer with the journal's committed used index and the
 * index the interrupted batch would have published, and rolls the batch back or forward. Guest memory is untrusted: an
 * answer that is neither is refused with a {@link JournalException}.
 */
@FunctionalInterface
public interface GuestUsedIndex {

    /**
     * Called once per queue that has an interrupted completion batch, never for the others.
     *
     * @param queueIndex the virtqueue
     * @param vring the queue's recovered ring configuration (addresses are guest physical addresses)
     * @param committedUsedIdx the used index the journal committed before the batch
     * @param pendingUsedIdx the used index the interrupted batch publishes
     * @return the used index as the guest sees it: for a split ring {@code used->idx} (u16); for a packed ring or an
     *     NVMe CQ, whose index is not stored in guest memory, {@code pendingUsedIdx} if the batch's first used entry is
     *     visible to the guest and {@code committedUsedIdx} if it is not
     */
    int read(int queueIndex, VringConfig vring, int committedUsedIdx, int pendingUsedIdx);
}
