package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** Field access for payload codecs: native byte order (vhost-user.rst "All numbers are in the machine native byte order"), any alignment. */
final class Wire {
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED;

    private Wire() {}

    static int u16(MemorySegment src, long offset) {
        return Short.toUnsignedInt(src.get(U16, offset));
    }

    static int u32(MemorySegment src, long offset) {
        return src.get(U32, offset);
    }

    static long u64(MemorySegment src, long offset) {
        return src.get(U64, offset);
    }

    static void putU16(MemorySegment dst, long offset, int value) {
        dst.set(U16, offset, (short) value);
    }

    static void putU32(MemorySegment dst, long offset, int value) {
        dst.set(U32, offset, value);
    }

    static void putU64(MemorySegment dst, long offset, long value) {
        dst.set(U64, offset, value);
    }

    /** Throws unless the payload is exactly {@code expectedBytes} long. */
    static void checkSize(int requestId, MemorySegment payload, long expectedBytes, String what) {
        if (payload.byteSize() != expectedBytes) {
            throw new VhostUserProtocolException(
                    requestId, what + " payload must be " + expectedBytes + " bytes, got " + payload.byteSize());
        }
    }

    /** Does {@code start + length} pass 2^64 (both unsigned)? */
    static boolean overflows(long start, long length) {
        return Long.compareUnsigned(start + length, start) < 0;
    }

    static String hex(long value) {
        return "0x" + Long.toHexString(value);
    }

    /** A u32 in hex, unsigned. */
    static String hex(int value) {
        return "0x" + Integer.toHexString(value);
    }
}
