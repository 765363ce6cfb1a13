package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * vhost-user.rst "Virtio device config space" ({@code VhostUserConfig}), the payload of {@code VHOST_USER_GET_CONFIG}
 * (request and reply) and {@code VHOST_USER_SET_CONFIG}: offset (u32), size (u32), flags (u32), then {@code size}
 * bytes of config space. A {@code GET_CONFIG} request carries {@code size} bytes too (QEMU sends zeros).
 *
 * @param offset offset in the device config space
 * @param size number of config bytes, 1 .. {@link #VHOST_USER_MAX_CONFIG_SIZE}
 * @param flags {@link #VHOST_SET_CONFIG_TYPE_FRONTEND} or {@link #VHOST_SET_CONFIG_TYPE_MIGRATION}
 * @param payload the {@code size} config bytes (copied in and out)
 */
public record VhostUserConfig(int offset, int size, int flags, byte[] payload) implements VhostUserPayload {
    /** offset, size, flags: 12 bytes before the config bytes. */
    public static final int HEADER_SIZE_BYTES = 12;

    /** The largest config access QEMU makes ({@code VHOST_USER_MAX_CONFIG_SIZE}); more is rejected. */
    public static final int VHOST_USER_MAX_CONFIG_SIZE = 256;

    /** flags value 0: "Vhost front-end messages used for writable fields". */
    public static final int VHOST_SET_CONFIG_TYPE_FRONTEND = 0;

    /** flags value 1: "Vhost front-end messages used for live migration". */
    public static final int VHOST_SET_CONFIG_TYPE_MIGRATION = 1;

    /** @throws IllegalArgumentException if {@code payload} is not {@code size} bytes */
    public VhostUserConfig {
        payload = payload.clone();
        if (payload.length != size) {
            throw new IllegalArgumentException("config size " + size + " but " + payload.length + " payload bytes");
        }
    }

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless the size is {@code 12 + size}, {@code 1 <= size <= 256}, {@code
     *     offset + size} fits 32 bits and flags is 0 or 1
     */
    public static VhostUserConfig decode(int requestId, MemorySegment payload) {
        if (payload.byteSize() < HEADER_SIZE_BYTES) {
            throw new VhostUserProtocolException(
                    requestId, "config payload of " + payload.byteSize() + " bytes is shorter than its header");
        }
        int offset = Wire.u32(payload, 0);
        int size = Wire.u32(payload, 4);
        int flags = Wire.u32(payload, 8);
        if (size <= 0 || size > VHOST_USER_MAX_CONFIG_SIZE) {
            throw new VhostUserProtocolException(
                    requestId,
                    "config size " + Integer.toUnsignedString(size) + " outside 1.." + VHOST_USER_MAX_CONFIG_SIZE);
        }
        Wire.checkSize(requestId, payload, HEADER_SIZE_BYTES + (long) size, "config of " + size + " bytes:");
        if (Integer.toUnsignedLong(offset) + size > 0xFFFF_FFFFL) {
            throw new VhostUserProtocolException(
                    requestId, "config window passes 2^32: offset " + Integer.toUnsignedString(offset));
        }
        if (flags != VHOST_SET_CONFIG_TYPE_FRONTEND && flags != VHOST_SET_CONFIG_TYPE_MIGRATION) {
            throw new VhostUserProtocolException(requestId, "unknown config flags " + Wire.hex(flags));
        }
        byte[] bytes = payload.asSlice(HEADER_SIZE_BYTES, size).toArray(ValueLayout.JAVA_BYTE);
        return new VhostUserConfig(offset, size, flags, bytes);
    }

    /** A copy of the config bytes. */
    @Override
    public byte[] payload() {
        return payload.clone();
    }

    @Override
    public int sizeBytes() {
        return HEADER_SIZE_BYTES + size;
    }

    @Override
    public void encode(MemorySegment dst) {
        Wire.putU32(dst, 0, offset);
        Wire.putU32(dst, 4, size);
        Wire.putU32(dst, 8, flags);
        MemorySegment.copy(payload, 0, dst, ValueLayout.JAVA_BYTE, HEADER_SIZE_BYTES, size);
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof VhostUserConfig c
                && offset == c.offset
                && size == c.size
                && flags == c.flags
                && Arrays.equals(payload, c.payload);
    }

    @Override
    public int hashCode() {
        return 31 * (31 * (31 * offset + size) + flags) + Arrays.hashCode(payload);
    }

    @Override
    public String toString() {
        return "VhostUserConfig[offset=" + Integer.toUnsignedString(offset) + ", size=" + size + ", flags=" + flags
                + "]";
    }
}
