package io.vhostd.vhost.virtio;

/**
 * Why a virtio-blk request was rejected ({@link VirtioBlkRequest#error()}). 0 means well-formed; the others are
 * guest (driver) errors against virtio 1.2 §5.2.6, answered with VIRTIO_BLK_S_IOERR when a status byte was found.
 */
public final class VirtioBlkRequestError {

    /** Well-formed. */
    public static final int OK = 0;
    /** The descriptor chain itself is malformed ({@link DescriptorChain#error()} says why). */
    public static final int CHAIN_MALFORMED = 1;
    /** Fewer than 16 header bytes before the status byte. */
    public static final int HEADER_TRUNCATED = 2;
    /** The 16-byte header is (partly) in a device-writable buffer. */
    public static final int HEADER_NOT_READABLE = 3;
    /** The last byte of the chain is not device-writable (or the chain is empty): no status byte. */
    public static final int STATUS_NOT_WRITABLE = 4;
    /** IN / GET_ID / GET_LIFETIME data in a device-readable buffer. */
    public static final int DATA_NOT_WRITABLE = 5;
    /** OUT / DISCARD / WRITE_ZEROES / SECURE_ERASE data in a device-writable buffer. */
    public static final int DATA_NOT_READABLE = 6;
    /** IN / OUT data not a multiple of 512, or DISCARD / WRITE_ZEROES / SECURE_ERASE data not a non-zero multiple of 16. */
    public static final int DATA_LENGTH_INVALID = 7;
    /** More data segments than the request can hold. */
    public static final int TOO_MANY_SEGMENTS = 8;

    private static final String[] NAMES = {
        "OK",
        "CHAIN_MALFORMED",
        "HEADER_TRUNCATED",
        "HEADER_NOT_READABLE",
        "STATUS_NOT_WRITABLE",
        "DATA_NOT_WRITABLE",
        "DATA_NOT_READABLE",
        "DATA_LENGTH_INVALID",
        "TOO_MANY_SEGMENTS",
    };

    private VirtioBlkRequestError() {}

    /** The constant's name, or {@code "UNKNOWN(code)"}. */
    public static String name(int code) {
        return code >= 0 && code < NAMES.length ? NAMES[code] : "UNKNOWN(" + code + ")";
    }
}
