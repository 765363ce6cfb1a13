package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * vhost-user.rst "A single 64-bit integer": features, protocol features, status, and the {@code REPLY_ACK} status
 * (0 success, non-zero failure).
 *
 * @param value the u64 (unsigned)
 */
public record VhostUserU64(long value) implements VhostUserPayload {
    public static final int SIZE_BYTES = 8;

    /** The {@code REPLY_ACK} payload for success. */
    public static final VhostUserU64 ACK_SUCCESS = new VhostUserU64(0);

    /** The {@code REPLY_ACK} payload for failure (any non-zero value; 1 as libvhost-user and rust-vmm send). */
    public static final VhostUserU64 ACK_FAILURE = new VhostUserU64(1);

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless the payload is 8 bytes
     */
    public static VhostUserU64 decode(int requestId, MemorySegment payload) {
        Wire.checkSize(requestId, payload, SIZE_BYTES, "u64");
        return new VhostUserU64(Wire.u64(payload, 0));
    }

    @Override
    public int sizeBytes() {
        return SIZE_BYTES;
    }

    @Override
    public void encode(MemorySegment dst) {
        Wire.putU64(dst, 0, value);
    }
}
