package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * vhost-user.rst "Single memory region description" ({@code VhostUserMemRegMsg} in QEMU): a 64-bit padding, then one
 * {@link VhostUserMemoryRegion}; the payload of {@code VHOST_USER_ADD_MEM_REG} (with one fd) and {@code
 * VHOST_USER_REM_MEM_REG}. The 48-byte form with Xen fields ({@code VHOST_USER_PROTOCOL_F_XEN_MMAP}) is not accepted:
 * this back-end does not offer that feature.
 *
 * @param padding the padding as received (ignored)
 * @param region the region
 */
public record VhostUserMemRegMsg(long padding, VhostUserMemoryRegion region) implements VhostUserPayload {
    public static final int SIZE_BYTES = 8 + VhostUserMemoryRegion.SIZE_BYTES;
    public static final int REGION_OFFSET = 8;

    /** A message with zero padding. */
    public static VhostUserMemRegMsg of(VhostUserMemoryRegion region) {
        return new VhostUserMemRegMsg(0, region);
    }

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless 40 bytes of a valid region
     */
    public static VhostUserMemRegMsg decode(int requestId, MemorySegment payload) {
        Wire.checkSize(requestId, payload, SIZE_BYTES, "single memory region");
        return new VhostUserMemRegMsg(
                Wire.u64(payload, 0), VhostUserMemoryRegion.decodeAt(requestId, payload, REGION_OFFSET));
    }

    @Override
    public int sizeBytes() {
        return SIZE_BYTES;
    }

    @Override
    public void encode(MemorySegment dst) {
        Wire.putU64(dst, 0, padding);
        region.encodeAt(dst, REGION_OFFSET);
    }
}
