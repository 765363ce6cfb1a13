package io.vhostd.journal.inflight;

/**
 * A split-ring request to resubmit: a head descriptor index whose {@code DescStateSplit.inflight} is 1.
 *
 * @param head the head descriptor index
 * @param counter its {@code counter}: the fetch order
 */
public record InflightHead(int head, long counter) {}
