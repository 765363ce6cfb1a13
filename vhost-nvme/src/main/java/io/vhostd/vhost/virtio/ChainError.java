package io.vhostd.vhost.virtio;

/**
 * Why a descriptor chain was rejected ({@link DescriptorChain#error()}). 0 means the chain is well-formed; every
 * other code is a guest (driver) error against virtio 1.2 §2.7.
 */
public final class ChainError {

    /** The chain is well-formed. */
    public static final int OK = 0;
    /** A {@code next} field, or an avail ring entry (head), is &gt;= the queue size (or the indirect table length). */
    public static final int DESC_OUT_OF_RANGE = 1;
    /** More descriptors than the queue size (direct) or than the indirect table holds: a cycle through {@code next}. */
    public static final int LOOP = 2;
    /** The chain needs more segments (descriptors after translation) than the cap. */
    public static final int TOO_MANY_SEGMENTS = 3;
    /** A buffer is not entirely inside guest memory regions. */
    public static final int ADDRESS_NOT_MAPPED = 4;
    /** {@code addr + len} passes 2^64, or the chain totals more than 2^32 bytes (§2.7.5 driver requirement). */
    public static final int LENGTH_OVERFLOW = 5;
    /** VIRTQ_DESC_F_INDIRECT inside an indirect table (§2.7.5.3.1). */
    public static final int NESTED_INDIRECT = 6;
    /** Indirect table length is 0, not a multiple of 16, more than queue size entries, or not inside one region. */
    public static final int BAD_INDIRECT_TABLE = 7;
    /** A device-readable descriptor after a device-writable one (§2.7.4.2 driver requirement). */
    public static final int WRITABLE_BEFORE_READABLE = 8;
    /** Both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT set (§2.7.5.3.1). */
    public static final int NEXT_AND_INDIRECT = 9;
    /** A buffer descriptor with {@code len} 0 (rejected as QEMU and libvhost-user do: "zero sized buffers"). */
    public static final int ZERO_LENGTH = 10;
    /** VIRTQ_DESC_F_INDIRECT while VIRTIO_RING_F_INDIRECT_DESC was not negotiated. */
    public static final int INDIRECT_NOT_NEGOTIATED = 11;

    private static final String[] NAMES = {
        "OK",
        "DESC_OUT_OF_RANGE",
        "LOOP",
        "TOO_MANY_SEGMENTS",
        "ADDRESS_NOT_MAPPED",
        "LENGTH_OVERFLOW",
        "NESTED_INDIRECT",
        "BAD_INDIRECT_TABLE",
        "WRITABLE_BEFORE_READABLE",
        "NEXT_AND_INDIRECT",
        "ZERO_LENGTH",
        "INDIRECT_NOT_NEGOTIATED",
    };

    private ChainError() {}

    /** The constant's name, or {@code "UNKNOWN(code)"}. */
    public static String name(int code) {
        return code >= 0 && code < NAMES.length ? NAMES[code] : "UNKNOWN(" + code + ")";
    }
}
