package io.vhostd.rpc;

import java.io.Serial;
import java.util.Objects;

/**
 * A JSON-RPC error: thrown by a method handler to answer with {@link #error()}, and by {@link RpcClient#call} when the
 * server answered with an error response.
 */
public final class RpcException extends Exception {
    @Serial
    private static final long serialVersionUID = 1L;

    private final transient RpcError error;

    public RpcException(RpcError error) {
        super(describe(error));
        this.error = error;
    }

    /** Shorthand for {@code new RpcException(RpcError.of(code, message))}. */
    public RpcException(RpcErrorCode code, String message) {
        this(RpcError.of(code, message));
    }

    /** The error object sent (or received). */
    public RpcError error() {
        return error;
    }

    private static String describe(RpcError error) {
        Objects.requireNonNull(error, "error");
        return error.name() + " (" + error.code() + "): " + error.message();
    }
}
