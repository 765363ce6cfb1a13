package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * vhost-user.rst "A vring state description" ({@code struct vhost_vring_state}): {@code SET_VRING_NUM} (ring size),
 * {@code SET_VRING_BASE} / {@code GET_VRING_BASE} (next avail index: for a split ring bits 0-15, bits 16-31
 * reserved), {@code SET_VRING_ENABLE} (0 or 1).
 *
 * @param index the vring index (u32, unsigned)
 * @param num the value (u32, unsigned)
 */
public record VhostUserVringState(int index, int num) implements VhostUserPayload {
    public static final int SIZE_BYTES = 8;
    public static final int INDEX_OFFSET = 0;
    public static final int NUM_OFFSET = 4;

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless the payload is 8 bytes
     */
    public static VhostUserVringState decode(int requestId, MemorySegment payload) {
        Wire.checkSize(requestId, payload, SIZE_BYTES, "vring state");
        return new VhostUserVringState(Wire.u32(payload, INDEX_OFFSET), Wire.u32(payload, NUM_OFFSET));
    }

    @Override
    public int sizeBytes() {
        return SIZE_BYTES;
    }

    @Override
    public void encode(MemorySegment dst) {
        Wire.putU32(dst, INDEX_OFFSET, index);
        Wire.putU32(dst, NUM_OFFSET, num);
    }
}
