package io.vhostd.master.registry;

import java.io.Serial;

/** Why a bdev could not be created, deleted or claimed; {@link #reason()} maps onto the RPC error names. */
public final class BdevException extends Exception {
    @Serial
    private static final long serialVersionUID = 1L;

    /** The kinds of failure. */
    public enum Reason {
        /** The parameters are wrong (RPC {@code invalid_params}). */
        INVALID,
        /** No bdev has this name ({@code no_such_bdev}). */
        NO_SUCH_BDEV,
        /** A bdev with this name exists ({@code name_in_use}). */
        NAME_IN_USE,
        /** A controller (or another bdev on the same file) uses it ({@code bdev_busy}). */
        BUSY,
        /** The file, block device or NVMe controller named does not exist ({@code no_such_device}). */
        NO_SUCH_DEVICE,
        /** Opening, sizing or mapping the device failed ({@code device_error}). */
        DEVICE_ERROR
    }

    private final Reason reason;

    public BdevException(Reason reason, String message) {
        super(message);
        this.reason = reason;
    }

    public BdevException(Reason reason, String message, Throwable cause) {
        super(message, cause);
        this.reason = reason;
    }

    public Reason reason() {
        return reason;
    }
}
