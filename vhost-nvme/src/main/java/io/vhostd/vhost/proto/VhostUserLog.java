package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * vhost-user.rst "Log description" ({@code VhostUserLog}), the payload of {@code VHOST_USER_SET_LOG_BASE}: the dirty
 * log is {@code mmapSize} bytes at {@code mmapOffset} of the fd that comes with it.
 *
 * @param mmapSize log length in bytes, &gt; 0
 * @param mmapOffset where the log starts in the fd
 */
public record VhostUserLog(long mmapSize, long mmapOffset) implements VhostUserPayload {
    public static final int SIZE_BYTES = 16;

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless 16 bytes, size &gt; 0 and offset + size within 2^63
     */
    public static VhostUserLog decode(int requestId, MemorySegment payload) {
        Wire.checkSize(requestId, payload, SIZE_BYTES, "log");
        VhostUserLog log = new VhostUserLog(Wire.u64(payload, 0), Wire.u64(payload, 8));
        if (log.mmapSize <= 0 || log.mmapOffset < 0 || log.mmapOffset + log.mmapSize < 0) {
            throw new VhostUserProtocolException(requestId, "invalid log area " + log);
        }
        return log;
    }

    @Override
    public int sizeBytes() {
        return SIZE_BYTES;
    }

    @Override
    public void encode(MemorySegment dst) {
        Wire.putU64(dst, 0, mmapSize);
        Wire.putU64(dst, 8, mmapOffset);
    }
}
