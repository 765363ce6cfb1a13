package io.vhostd.journal;

/**
 * A journal or inflight region that recovery refuses: another major version, not published, too short, or content a
 * correct writer cannot have left (the region came from a dead peer and is untrusted). The message names the region,
 * the queue, the field, what was found and what was expected.
 */
public final class JournalException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    /**
     * @param message what was refused and why
     */
    public JournalException(String message) {
        super(message);
    }
}
