package io.vhostd.journal;

/**
 * Called by the journal writers ({@link SessionJournal}, {@link io.vhostd.journal.inflight.InflightRegionSplit},
 * {@link io.vhostd.journal.inflight.InflightRegionPacked}) after each store to shared memory, in program order. The
 * crash tests install an observer that throws after the Nth store, which leaves the region exactly as a writer that
 * died at that instruction would (spec {@code journal/spec/journal.md} §8). Production uses {@link #NONE}.
 *
 * <p>The argument is a string constant naming the field just stored (no allocation): it lets a test tell on which side
 * of a commit store it stopped.
 */
@FunctionalInterface
public interface StoreObserver {

    /** Observes nothing. */
    StoreObserver NONE = field -> {};

    /**
     * @param field the name of the field just stored, a constant such as {@code "fetch.commit"}
     */
    void afterStore(String field);
}
