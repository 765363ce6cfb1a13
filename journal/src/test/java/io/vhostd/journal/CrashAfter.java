package io.vhostd.journal;

import java.util.ArrayList;
import java.util.List;

/**
 * A fault point: counts stores and throws {@link SimulatedCrash} right after the Nth one, so that the region is left
 * exactly as a writer that died at that instruction leaves it. Records the fields stored since the last {@link
 * #mark()}.
 */
public final class CrashAfter implements StoreObserver {
    private final long crashAt;
    private long stores;
    private final List<String> sinceMark = new ArrayList<>();

    /**
     * @param crashAt crash after this many stores; {@link Long#MAX_VALUE} for never
     */
    public CrashAfter(long crashAt) {
        this.crashAt = crashAt;
    }

    /** An observer that never crashes and only counts. */
    public static CrashAfter never() {
        return new CrashAfter(Long.MAX_VALUE);
    }

    @Override
    public void afterStore(String field) {
        stores++;
        sinceMark.add(field);
        if (stores == crashAt) {
            throw new SimulatedCrash(field);
        }
    }

    /** Stores observed so far. */
    public long stores() {
        return stores;
    }

    /** Starts recording a new operation's stores. */
    public void mark() {
        sinceMark.clear();
    }

    /**
     * @param field a field name
     * @return whether it was stored since the last {@link #mark()}
     */
    public boolean storedSinceMark(String field) {
        return sinceMark.contains(field);
    }
}
