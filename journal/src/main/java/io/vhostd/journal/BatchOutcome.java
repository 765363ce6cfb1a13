package io.vhostd.journal;

/** What recovery did with a completion batch the writer's death interrupted (spec §7.3). */
public enum BatchOutcome {
    /** No batch was in progress. */
    NONE,
    /** The batch was published to the guest: its requests are completed and its used index is the queue's. */
    ROLLED_FORWARD,
    /** The batch was not published: its requests stay in flight and will be executed again. */
    ROLLED_BACK
}
