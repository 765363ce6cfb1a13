package io.vhostd.master;

/**
 * A slave said hello with a control protocol, journal or VirtNvme version this master cannot work with (issue #4
 * rolling upgrade); the slave was stopped before it received anything.
 */
public final class SlaveIncompatibleException extends IllegalStateException {
    private static final long serialVersionUID = 1L;

    public SlaveIncompatibleException(String message) {
        super(message);
    }
}
