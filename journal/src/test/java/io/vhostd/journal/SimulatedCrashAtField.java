package io.vhostd.journal;

/** A fault point that kills the writer right after the Nth store of one named field. */
public final class SimulatedCrashAtField implements StoreObserver {
    private final String field;
    private int remaining;

    /**
     * @param field the field name, as the writer reports it
     * @param occurrence crash after its occurrence number {@code occurrence} (1 = the first)
     */
    public SimulatedCrashAtField(String field, int occurrence) {
        this.field = field;
        this.remaining = occurrence;
    }

    @Override
    public void afterStore(String stored) {
        if (stored.equals(field) && --remaining == 0) {
            throw new SimulatedCrash(stored);
        }
    }
}
