package io.vhostd.rpc;

import java.util.Optional;

/**
 * The named JSON-RPC error codes vhostd answers with. The first five are JSON-RPC 2.0's own (section 5.1), the rest
 * are server-defined in the range JSON-RPC reserves for servers, -32000 to -32099. Every error response carries the
 * {@link #wireName()} in {@code error.data.name}, so clients can branch on a stable name rather than on the message.
 * The set is mirrored by {@code components.errors} of {@code openrpc.json} (a test keeps the two equal).
 */
public enum RpcErrorCode {
    /** Invalid JSON was received; the server closes the connection after answering (no resync point in a stream). */
    PARSE_ERROR(-32700, "parse_error", "Parse error"),
    /** The JSON sent is not a valid JSON-RPC 2.0 request object. */
    INVALID_REQUEST(-32600, "invalid_request", "Invalid Request"),
    /** The method is not described in {@code openrpc.json} (so not served). */
    METHOD_NOT_FOUND(-32601, "method_not_found", "Method not found"),
    /** The params do not match the method's description. */
    INVALID_PARAMS(-32602, "invalid_params", "Invalid params"),
    /** A fault inside the server; the message says what failed. */
    INTERNAL_ERROR(-32603, "internal_error", "Internal error"),
    /** No bdev has the given name. */
    NO_SUCH_BDEV(-32001, "no_such_bdev", "No such bdev"),
    /** No controller has the given name. */
    NO_SUCH_CONTROLLER(-32002, "no_such_controller", "No such controller"),
    /** The name is already taken by another object of the same kind. */
    NAME_IN_USE(-32003, "name_in_use", "Name in use"),
    /** The bdev is claimed by a controller (or another user) and cannot be claimed or removed. */
    BDEV_BUSY(-32004, "bdev_busy", "Bdev busy"),
    /** The request is valid but asks for something this build does not implement yet. */
    NOT_SUPPORTED(-32005, "not_supported", "Not supported"),
    /** The request exceeds the server's size limit; the server closes the connection after answering. */
    REQUEST_TOO_LARGE(-32006, "request_too_large", "Request too large"),
    /** The caller may not do this. */
    PERMISSION_DENIED(-32007, "permission_denied", "Permission denied"),
    /** The file, block device or NVMe controller named does not exist. */
    NO_SUCH_DEVICE(-32008, "no_such_device", "No such device"),
    /** The device exists but opening, sizing or mapping it failed; the message carries the system's error. */
    DEVICE_ERROR(-32009, "device_error", "Device error"),
    /** The queue-pair arena (sized at start-up by {@code hugepages.arena_size_bytes}) has no room for the request. */
    ARENA_FULL(-32010, "arena_full", "Arena full"),
    /** The serving slave did not take (or release) a controller in time, or refused it; the message says why. */
    SLAVE_ERROR(-32011, "slave_error", "Slave error"),
    /**
     * A slave started for a rolling upgrade announced a control protocol, journal or VirtNvme version the master cannot
     * work with; it was stopped and the serving slave keeps serving.
     */
    SLAVE_INCOMPATIBLE(-32012, "slave_incompatible", "Slave incompatible");

    /** Lowest code of the range JSON-RPC 2.0 reserves for implementation-defined server errors. */
    public static final int SERVER_ERROR_MIN = -32099;

    /** Highest code of the range JSON-RPC 2.0 reserves for implementation-defined server errors. */
    public static final int SERVER_ERROR_MAX = -32000;

    private final int code;
    private final String wireName;
    private final String defaultMessage;

    RpcErrorCode(int code, String wireName, String defaultMessage) {
        this.code = code;
        this.wireName = wireName;
        this.defaultMessage = defaultMessage;
    }

    /** The JSON-RPC {@code error.code}. */
    public int code() {
        return code;
    }

    /** The snake_case name sent in {@code error.data.name}, e.g. {@code no_such_bdev}. */
    public String wireName() {
        return wireName;
    }

    /** Short generic message (JSON-RPC 2.0's own text for the standard codes). */
    public String defaultMessage() {
        return defaultMessage;
    }

    /** True for the codes JSON-RPC 2.0 itself defines (-32700, -32600..-32603). */
    public boolean isStandard() {
        return code < SERVER_ERROR_MIN || code > SERVER_ERROR_MAX;
    }

    /** The constant with this {@code error.code}, if any. */
    public static Optional<RpcErrorCode> fromCode(int code) {
        for (RpcErrorCode c : values()) {
            if (c.code == code) {
                return Optional.of(c);
            }
        }
        return Optional.empty();
    }

    /** The constant with this {@code error.data.name}, if any. */
    public static Optional<RpcErrorCode> fromWireName(String wireName) {
        for (RpcErrorCode c : values()) {
            if (c.wireName.equals(wireName)) {
                return Optional.of(c);
            }
        }
        return Optional.empty();
    }
}
