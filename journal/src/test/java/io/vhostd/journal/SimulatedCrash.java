package io.vhostd.journal;

/** Thrown by {@link CrashAfter}: the writer "dies" right after a store. */
public final class SimulatedCrash extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** The field whose store was the last one executed. */
    public final String lastField;

    SimulatedCrash(String lastField) {
        super("simulated crash after store of " + lastField, null, false, false);
        this.lastField = lastField;
    }
}
