package io.vhostd.journal;

import java.util.Arrays;
import java.util.HexFormat;

/**
 * A request the journal holds in flight: fetched from the guest, not known to be completed. Recovery returns them in
 * fetch order; the new slave resubmits them in that order (spec §7.4).
 *
 * @param slot the journal slot (the head descriptor index of a virtqueue)
 * @param fetchSeq the fetch sequence number (u48, spec §6.1): its order is the fetch order
 * @param entry the copy of the fetched 64-byte entry for a queue with entry copies, else an empty array
 */
public record InflightRequest(int slot, long fetchSeq, byte[] entry) {

    public InflightRequest {
        entry = entry.clone();
    }

    @Override
    public byte[] entry() {
        return entry.clone();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof InflightRequest r
                && r.slot == slot
                && r.fetchSeq == fetchSeq
                && Arrays.equals(r.entry, entry);
    }

    @Override
    public int hashCode() {
        return (31 * Integer.hashCode(slot) + Long.hashCode(fetchSeq)) * 31 + Arrays.hashCode(entry);
    }

    @Override
    public String toString() {
        return "InflightRequest[slot=" + slot + ", fetchSeq=" + fetchSeq
                + (entry.length == 0 ? "" : ", entry=" + HexFormat.of().formatHex(entry)) + "]";
    }
}
