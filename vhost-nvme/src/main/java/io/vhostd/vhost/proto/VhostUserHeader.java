package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * The 12-byte header of every vhost-user message ({@code VhostUserHeader} in QEMU), vhost-user.rst "Header".
 *
 * <pre>
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 * |                        request (u32)                          |  0
 * +---------------------------------------------------------+-+-+-+
 * |             flags (u32): reserved, must be 0            |N|R|V|  4   V = version (bits 0-1, 0x1)
 * +---------------------------------------------------------+-+-+-+      R = REPLY (bit 2), N = NEED_REPLY (bit 3)
 * |                     size (u32): payload bytes             |  8
 * +---------------------------------------------------------------+
 * </pre>
 *
 * @param request the message id ({@link VhostUserRequest#id()}; unknown ids are kept as they came)
 * @param flags version and reply bits
 * @param sizeBytes payload length, 0 .. 2^32 - 1 (the wire's u32, unsigned)
 */
public record VhostUserHeader(int request, int flags, long sizeBytes) {
    public static final int SIZE_BYTES = 12;
    public static final int REQUEST_OFFSET = 0;
    public static final int FLAGS_OFFSET = 4;
    public static final int SIZE_OFFSET = 8;

    /** The protocol version this back-end speaks, in flags bits 0-1. */
    public static final int VHOST_USER_VERSION = 0x1;

    public static final int VHOST_USER_VERSION_MASK = 0x3;
    public static final int VHOST_USER_REPLY_BIT = 2;
    public static final int VHOST_USER_REPLY_MASK = 1 << VHOST_USER_REPLY_BIT;
    public static final int VHOST_USER_NEED_REPLY_BIT = 3;
    public static final int VHOST_USER_NEED_REPLY_MASK = 1 << VHOST_USER_NEED_REPLY_BIT;

    /** Flag bits the specification does not define. */
    public static final int VHOST_USER_RESERVED_FLAGS_MASK =
            ~(VHOST_USER_VERSION_MASK | VHOST_USER_REPLY_MASK | VHOST_USER_NEED_REPLY_MASK);

    private static final long U32_MAX = 0xFFFF_FFFFL;

    /** @throws IllegalArgumentException if {@code sizeBytes} does not fit the wire's u32 */
    public VhostUserHeader {
        if (sizeBytes < 0 || sizeBytes > U32_MAX) {
            throw new IllegalArgumentException("size must fit a u32: " + sizeBytes);
        }
    }

    /** A request header, version 1, with {@code NEED_REPLY} if asked. */
    public static VhostUserHeader request(int request, boolean needReply, long sizeBytes) {
        return new VhostUserHeader(
                request, VHOST_USER_VERSION | (needReply ? VHOST_USER_NEED_REPLY_MASK : 0), sizeBytes);
    }

    /** A reply header: version 1 and {@code REPLY}, as every back-end reply must carry. */
    public static VhostUserHeader reply(int request, long sizeBytes) {
        return new VhostUserHeader(request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, sizeBytes);
    }

    /** Reads a header from the first {@link #SIZE_BYTES} of {@code src}; any values are accepted. */
    public static VhostUserHeader decode(MemorySegment src) {
        return new VhostUserHeader(
                Wire.u32(src, REQUEST_OFFSET),
                Wire.u32(src, FLAGS_OFFSET),
                Integer.toUnsignedLong(Wire.u32(src, SIZE_OFFSET)));
    }

    /** Writes the header to the first {@link #SIZE_BYTES} of {@code dst}. */
    public void encode(MemorySegment dst) {
        Wire.putU32(dst, REQUEST_OFFSET, request);
        Wire.putU32(dst, FLAGS_OFFSET, flags);
        Wire.putU32(dst, SIZE_OFFSET, (int) sizeBytes);
    }

    /** Flags bits 0-1. */
    public int version() {
        return flags & VHOST_USER_VERSION_MASK;
    }

    /** Is the {@code REPLY} flag set? */
    public boolean isReply() {
        return (flags & VHOST_USER_REPLY_MASK) != 0;
    }

    /** Is the {@code NEED_REPLY} flag set (vhost-user.rst "REPLY_ACK")? */
    public boolean needReply() {
        return (flags & VHOST_USER_NEED_REPLY_MASK) != 0;
    }

    /**
     * Checks what a front-end request header must be: version 1, no {@code REPLY} flag, no reserved flag bits.
     *
     * @throws VhostUserProtocolException naming the request otherwise
     */
    public void checkRequest() {
        if (version() != VHOST_USER_VERSION) {
            throw new VhostUserProtocolException(request, "unsupported protocol version " + version());
        }
        if (isReply()) {
            throw new VhostUserProtocolException(request, "REPLY flag set on a front-end request");
        }
        if ((flags & VHOST_USER_RESERVED_FLAGS_MASK) != 0) {
            throw new VhostUserProtocolException(request, "reserved flag bits set: " + Wire.hex(flags));
        }
    }
}
