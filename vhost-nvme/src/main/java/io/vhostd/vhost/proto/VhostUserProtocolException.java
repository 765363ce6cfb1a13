package io.vhostd.vhost.proto;

/**
 * A front-end message broke the vhost-user protocol: bad payload syntax, an fd missing or too many, a request that is
 * not legal in the connection's state. The dispatcher answers it with the protocol's failure reply (where the request
 * has one) and keeps serving.
 */
public final class VhostUserProtocolException extends RuntimeException {
    private final int requestId;
    private final String reason;

    /**
     * @param requestId the {@code request} field of the offending message (any value, also an unknown id)
     * @param reason what is wrong, for the log
     */
    public VhostUserProtocolException(int requestId, String reason) {
        super(VhostUserRequest.nameOf(requestId) + ": " + reason);
        this.requestId = requestId;
        this.reason = reason;
    }

    /**
     * @param requestId the {@code request} field of the offending message
     * @param reason what is wrong, for the log
     * @param cause the failure underneath (an {@code ErrnoException} from mmap, an exception from the device)
     */
    public VhostUserProtocolException(int requestId, String reason, Throwable cause) {
        super(VhostUserRequest.nameOf(requestId) + ": " + reason, cause);
        this.requestId = requestId;
        this.reason = reason;
    }

    /** The {@code request} field of the offending message. */
    public int requestId() {
        return requestId;
    }

    /** What is wrong, without the request name. */
    public String reason() {
        return reason;
    }
}
