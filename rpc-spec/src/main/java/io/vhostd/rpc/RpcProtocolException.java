package io.vhostd.rpc;

import java.io.IOException;
import java.io.Serial;

/**
 * The peer broke the JSON-RPC 2.0 protocol or the framing (malformed JSON, a response that is not a response object,
 * an id that matches no request, the connection closed before the response). The connection is unusable afterwards.
 */
public final class RpcProtocolException extends IOException {
    @Serial
    private static final long serialVersionUID = 1L;

    public RpcProtocolException(String message) {
        super(message);
    }

    public RpcProtocolException(String message, Throwable cause) {
        super(message, cause);
    }
}
