package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * The {@code u64} payload of {@code VHOST_USER_SET_VRING_KICK}, {@code _CALL} and {@code _ERR}: "Bits (0-7) of the
 * payload contain the vring index. Bit 8 is the invalid FD flag." Bits 9-63 are not defined and must be 0.
 *
 * @param index the vring index, 0 .. 255
 * @param noFd {@code VHOST_USER_VRING_NOFD_MASK}: no fd in the ancillary data (poll instead of waiting for events)
 */
public record VhostUserVringFd(int index, boolean noFd) implements VhostUserPayload {
    public static final int SIZE_BYTES = 8;
    public static final int VHOST_USER_VRING_IDX_MASK = 0xff;
    public static final int VHOST_USER_VRING_NOFD_BIT = 8;
    public static final long VHOST_USER_VRING_NOFD_MASK = 1L << VHOST_USER_VRING_NOFD_BIT;

    /** @throws IllegalArgumentException if {@code index} does not fit 8 bits */
    public VhostUserVringFd {
        if ((index & ~VHOST_USER_VRING_IDX_MASK) != 0) {
            throw new IllegalArgumentException("vring index must fit 8 bits: " + index);
        }
    }

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless the payload is 8 bytes with bits 9-63 clear
     */
    public static VhostUserVringFd decode(int requestId, MemorySegment payload) {
        Wire.checkSize(requestId, payload, SIZE_BYTES, "vring fd u64");
        long value = Wire.u64(payload, 0);
        if ((value & ~(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK)) != 0) {
            throw new VhostUserProtocolException(requestId, "undefined bits set in vring fd u64 " + Wire.hex(value));
        }
        return new VhostUserVringFd(
                (int) (value & VHOST_USER_VRING_IDX_MASK), (value & VHOST_USER_VRING_NOFD_MASK) != 0);
    }

    /** The u64 as sent on the wire. */
    public long value() {
        return index | (noFd ? VHOST_USER_VRING_NOFD_MASK : 0);
    }

    @Override
    public int sizeBytes() {
        return SIZE_BYTES;
    }

    @Override
    public void encode(MemorySegment dst) {
        Wire.putU64(dst, 0, value());
    }
}
