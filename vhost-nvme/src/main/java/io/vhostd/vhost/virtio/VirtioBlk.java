package io.vhostd.vhost.virtio;

/**
 * virtio-blk constants (virtio 1.2 §5.2): request types, status values, feature bits and masks, and the layout of
 * the request header ({@code struct virtio_blk_req}) and of discard / write-zeroes segments.
 *
 * <pre>
 * Request header (struct virtio_blk_req, the device-readable head of every request), 16 bytes:
 *  +---------------------------------------------------------------+
 *  |                          type (le32)                          |  0
 *  +---------------------------------------------------------------+
 *  |                        reserved (le32)                        |  4
 *  +---------------------------------------------------------------+
 *  |                         sector (le64)                         |  8
 *  |                                                               |
 *  +---------------------------------------------------------------+
 *  then u8 data[], then u8 status (the last, device-writable byte)
 *
 * Discard / write-zeroes / secure-erase segment (struct virtio_blk_discard_write_zeroes), 16 bytes:
 *  +---------------------------------------------------------------+
 *  |                         sector (le64)                         |  0
 *  |                                                               |
 *  +---------------------------------------------------------------+
 *  |                       num_sectors (le32)                      |  8
 *  +---------------------------------------------------------------+
 *  |               flags (le32: bit 0 unmap, 31 reserved)          | 12
 *  +---------------------------------------------------------------+
 * </pre>
 */
public final class VirtioBlk {

    // ---- request types (§5.2.6) ----
    /** Read: the device fills {@code data}. */
    public static final int VIRTIO_BLK_T_IN = 0;
    /** Write: the device writes {@code data} to the disk. */
    public static final int VIRTIO_BLK_T_OUT = 1;
    /** Flush the volatile write cache. */
    public static final int VIRTIO_BLK_T_FLUSH = 4;
    /** Get the device ID string (up to {@link #VIRTIO_BLK_ID_BYTES}, NUL padded) into {@code data}. */
    public static final int VIRTIO_BLK_T_GET_ID = 8;
    /** Get {@code struct virtio_blk_lifetime} into {@code data}. */
    public static final int VIRTIO_BLK_T_GET_LIFETIME = 10;
    /** Discard the ranges listed in {@code data}. */
    public static final int VIRTIO_BLK_T_DISCARD = 11;
    /** Write zeroes to the ranges listed in {@code data}. */
    public static final int VIRTIO_BLK_T_WRITE_ZEROES = 13;
    /** Securely erase the ranges listed in {@code data}. */
    public static final int VIRTIO_BLK_T_SECURE_ERASE = 14;

    // ---- status (§5.2.6) ----
    /** Success. */
    public static final int VIRTIO_BLK_S_OK = 0;
    /** Device or driver error. */
    public static final int VIRTIO_BLK_S_IOERR = 1;
    /** Request unsupported by the device. */
    public static final int VIRTIO_BLK_S_UNSUPP = 2;

    // ---- feature bits (§5.2.3) ----
    /** Feature bit: Largest segment is in {@code size_max}. */
    public static final int VIRTIO_BLK_F_SIZE_MAX_BIT = 1;
    /** Feature bit: Most segments per request is in {@code seg_max}. */
    public static final int VIRTIO_BLK_F_SEG_MAX_BIT = 2;
    /** Feature bit: Disk geometry is in {@code geometry}. */
    public static final int VIRTIO_BLK_F_GEOMETRY_BIT = 4;
    /** Feature bit: The device is read-only. */
    public static final int VIRTIO_BLK_F_RO_BIT = 5;
    /** Feature bit: Block size is in {@code blk_size}. */
    public static final int VIRTIO_BLK_F_BLK_SIZE_BIT = 6;
    /** Feature bit: VIRTIO_BLK_T_FLUSH is supported. */
    public static final int VIRTIO_BLK_F_FLUSH_BIT = 9;
    /** Feature bit: Optimal I/O alignment is in {@code topology}. */
    public static final int VIRTIO_BLK_F_TOPOLOGY_BIT = 10;
    /** Feature bit: The driver can toggle the cache mode through {@code writeback}. */
    public static final int VIRTIO_BLK_F_CONFIG_WCE_BIT = 11;
    /** Feature bit: Several request queues, count in {@code num_queues}. */
    public static final int VIRTIO_BLK_F_MQ_BIT = 12;
    /** Feature bit: VIRTIO_BLK_T_DISCARD is supported; limits in {@code max_discard_*}. */
    public static final int VIRTIO_BLK_F_DISCARD_BIT = 13;
    /** Feature bit: VIRTIO_BLK_T_WRITE_ZEROES is supported; limits in {@code max_write_zeroes_*}. */
    public static final int VIRTIO_BLK_F_WRITE_ZEROES_BIT = 14;
    /** Feature bit: VIRTIO_BLK_T_GET_LIFETIME is supported. */
    public static final int VIRTIO_BLK_F_LIFETIME_BIT = 15;
    /** Feature bit: VIRTIO_BLK_T_SECURE_ERASE is supported. */
    public static final int VIRTIO_BLK_F_SECURE_ERASE_BIT = 16;

    // ---- reserved (device-independent) feature bits (§6) ----
    /** Feature bit: Legacy: notify when the avail ring runs empty. */
    public static final int VIRTIO_F_NOTIFY_ON_EMPTY_BIT = 24;
    /** Feature bit: Indirect descriptor tables (§2.7.5.3). */
    public static final int VIRTIO_RING_F_INDIRECT_DESC_BIT = 28;
    /** Feature bit: {@code used_event} / {@code avail_event} notification suppression (§2.7.7, §2.7.10). */
    public static final int VIRTIO_RING_F_EVENT_IDX_BIT = 29;
    /** Feature bit: Virtio 1.x (little-endian, non-legacy) device. */
    public static final int VIRTIO_F_VERSION_1_BIT = 32;
    /** Feature bit: Buffers are addressed through a platform IOMMU. */
    public static final int VIRTIO_F_ACCESS_PLATFORM_BIT = 33;
    /** Feature bit: Packed virtqueue layout (§2.8). */
    public static final int VIRTIO_F_RING_PACKED_BIT = 34;
    /** Feature bit: Buffers are used in the order they are made available. */
    public static final int VIRTIO_F_IN_ORDER_BIT = 35;

    /** Mask of {@link #VIRTIO_BLK_F_SIZE_MAX_BIT}. */
    public static final long VIRTIO_BLK_F_SIZE_MAX_MASK = 1L << VIRTIO_BLK_F_SIZE_MAX_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_SEG_MAX_BIT}. */
    public static final long VIRTIO_BLK_F_SEG_MAX_MASK = 1L << VIRTIO_BLK_F_SEG_MAX_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_GEOMETRY_BIT}. */
    public static final long VIRTIO_BLK_F_GEOMETRY_MASK = 1L << VIRTIO_BLK_F_GEOMETRY_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_RO_BIT}. */
    public static final long VIRTIO_BLK_F_RO_MASK = 1L << VIRTIO_BLK_F_RO_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_BLK_SIZE_BIT}. */
    public static final long VIRTIO_BLK_F_BLK_SIZE_MASK = 1L << VIRTIO_BLK_F_BLK_SIZE_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_FLUSH_BIT}. */
    public static final long VIRTIO_BLK_F_FLUSH_MASK = 1L << VIRTIO_BLK_F_FLUSH_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_TOPOLOGY_BIT}. */
    public static final long VIRTIO_BLK_F_TOPOLOGY_MASK = 1L << VIRTIO_BLK_F_TOPOLOGY_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_CONFIG_WCE_BIT}. */
    public static final long VIRTIO_BLK_F_CONFIG_WCE_MASK = 1L << VIRTIO_BLK_F_CONFIG_WCE_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_MQ_BIT}. */
    public static final long VIRTIO_BLK_F_MQ_MASK = 1L << VIRTIO_BLK_F_MQ_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_DISCARD_BIT}. */
    public static final long VIRTIO_BLK_F_DISCARD_MASK = 1L << VIRTIO_BLK_F_DISCARD_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_WRITE_ZEROES_BIT}. */
    public static final long VIRTIO_BLK_F_WRITE_ZEROES_MASK = 1L << VIRTIO_BLK_F_WRITE_ZEROES_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_LIFETIME_BIT}. */
    public static final long VIRTIO_BLK_F_LIFETIME_MASK = 1L << VIRTIO_BLK_F_LIFETIME_BIT;
    /** Mask of {@link #VIRTIO_BLK_F_SECURE_ERASE_BIT}. */
    public static final long VIRTIO_BLK_F_SECURE_ERASE_MASK = 1L << VIRTIO_BLK_F_SECURE_ERASE_BIT;
    /** Mask of {@link #VIRTIO_F_NOTIFY_ON_EMPTY_BIT}. */
    public static final long VIRTIO_F_NOTIFY_ON_EMPTY_MASK = 1L << VIRTIO_F_NOTIFY_ON_EMPTY_BIT;
    /** Mask of {@link #VIRTIO_RING_F_INDIRECT_DESC_BIT}. */
    public static final long VIRTIO_RING_F_INDIRECT_DESC_MASK = 1L << VIRTIO_RING_F_INDIRECT_DESC_BIT;
    /** Mask of {@link #VIRTIO_RING_F_EVENT_IDX_BIT}. */
    public static final long VIRTIO_RING_F_EVENT_IDX_MASK = 1L << VIRTIO_RING_F_EVENT_IDX_BIT;
    /** Mask of {@link #VIRTIO_F_VERSION_1_BIT}. */
    public static final long VIRTIO_F_VERSION_1_MASK = 1L << VIRTIO_F_VERSION_1_BIT;
    /** Mask of {@link #VIRTIO_F_ACCESS_PLATFORM_BIT}. */
    public static final long VIRTIO_F_ACCESS_PLATFORM_MASK = 1L << VIRTIO_F_ACCESS_PLATFORM_BIT;
    /** Mask of {@link #VIRTIO_F_RING_PACKED_BIT}. */
    public static final long VIRTIO_F_RING_PACKED_MASK = 1L << VIRTIO_F_RING_PACKED_BIT;
    /** Mask of {@link #VIRTIO_F_IN_ORDER_BIT}. */
    public static final long VIRTIO_F_IN_ORDER_MASK = 1L << VIRTIO_F_IN_ORDER_BIT;

    // ---- sizes and layouts ----
    /** Length of the GET_ID string (NUL padded, no terminator at 20 bytes). */
    public static final int VIRTIO_BLK_ID_BYTES = 20;
    /** Protocol sector: {@code sector} and capacity are always in 512-byte units (§5.2.5). */
    public static final int SECTOR_SIZE = 512;
    /** log2 of {@link #SECTOR_SIZE}. */
    public static final int SECTOR_SHIFT = 9;

    /** Size of the request header. */
    public static final int VIRTIO_BLK_OUTHDR_LENGTH_BYTES = 16;
    /** {@code type}, le32. */
    public static final int VIRTIO_BLK_OUTHDR_TYPE_OFFSET = 0;
    /** {@code reserved}, le32. */
    public static final int VIRTIO_BLK_OUTHDR_RESERVED_OFFSET = 4;
    /** {@code sector}, le64. */
    public static final int VIRTIO_BLK_OUTHDR_SECTOR_OFFSET = 8;
    /** Size of the status tail. */
    public static final int VIRTIO_BLK_STATUS_LENGTH_BYTES = 1;

    /** Size of one discard / write-zeroes / secure-erase segment. */
    public static final int VIRTIO_BLK_DISCARD_WRITE_ZEROES_LENGTH_BYTES = 16;
    /** {@code sector}, le64. */
    public static final int VIRTIO_BLK_DISCARD_WRITE_ZEROES_SECTOR_OFFSET = 0;
    /** {@code num_sectors}, le32. */
    public static final int VIRTIO_BLK_DISCARD_WRITE_ZEROES_NUM_SECTORS_OFFSET = 8;
    /** {@code flags}, le32. */
    public static final int VIRTIO_BLK_DISCARD_WRITE_ZEROES_FLAGS_OFFSET = 12;
    /** {@code flags.unmap}: write zeroes may deallocate (must be 0 for discard). */
    public static final int VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;
    /** {@code flags.reserved}: bits 1-31; a request with any of them set is VIRTIO_BLK_S_UNSUPP (§5.2.6.2). */
    public static final int VIRTIO_BLK_DISCARD_WRITE_ZEROES_FLAGS_RESERVED_MASK = ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;

    private VirtioBlk() {}

    /** The request type's spec name ({@code "VIRTIO_BLK_T_IN"}), or {@code "UNKNOWN(type)"}. */
    public static String typeName(int type) {
        return switch (type) {
            case VIRTIO_BLK_T_IN -> "VIRTIO_BLK_T_IN";
            case VIRTIO_BLK_T_OUT -> "VIRTIO_BLK_T_OUT";
            case VIRTIO_BLK_T_FLUSH -> "VIRTIO_BLK_T_FLUSH";
            case VIRTIO_BLK_T_GET_ID -> "VIRTIO_BLK_T_GET_ID";
            case VIRTIO_BLK_T_GET_LIFETIME -> "VIRTIO_BLK_T_GET_LIFETIME";
            case VIRTIO_BLK_T_DISCARD -> "VIRTIO_BLK_T_DISCARD";
            case VIRTIO_BLK_T_WRITE_ZEROES -> "VIRTIO_BLK_T_WRITE_ZEROES";
            case VIRTIO_BLK_T_SECURE_ERASE -> "VIRTIO_BLK_T_SECURE_ERASE";
            default -> "UNKNOWN(" + Integer.toUnsignedString(type) + ")";
        };
    }

    /**
     * The status one discard or write-zeroes segment ({@code struct virtio_blk_discard_write_zeroes}) deserves before
     * anything is executed, checked in QEMU's order ({@code virtio_blk_handle_discard_write_zeroes}): more sectors
     * than the limit, a range outside the disk or not aligned to the logical block: VIRTIO_BLK_S_IOERR (a driver
     * error, §5.2.6.1); then a reserved flag, or unmap on a discard: VIRTIO_BLK_S_UNSUPP (§5.2.6.2 "MUST").
     *
     * @param type {@link #VIRTIO_BLK_T_DISCARD} or {@link #VIRTIO_BLK_T_WRITE_ZEROES}
     * @param sector first sector (512-byte units, unsigned)
     * @param numSectors sector count (u32, as a non-negative long)
     * @param flags the segment's flags (u32)
     * @param capacitySectors the disk's size in sectors
     * @param maxSectors {@code max_discard_sectors} or {@code max_write_zeroes_sectors}
     * @param alignmentSectors the logical block in sectors (a power of two): sector and count must be multiples
     * @return {@link #VIRTIO_BLK_S_OK}, {@link #VIRTIO_BLK_S_IOERR} or {@link #VIRTIO_BLK_S_UNSUPP}
     */
    public static int checkDiscardWriteZeroes(
            int type,
            long sector,
            long numSectors,
            int flags,
            long capacitySectors,
            long maxSectors,
            int alignmentSectors) {
        if (numSectors > maxSectors) {
            return VIRTIO_BLK_S_IOERR;
        }
        // untrusted: overflow-safe form of sector + numSectors <= capacity, sector unsigned
        if (Long.compareUnsigned(sector, capacitySectors) > 0 || numSectors > capacitySectors - sector) {
            return VIRTIO_BLK_S_IOERR;
        }
        if (((sector | numSectors) & (alignmentSectors - 1)) != 0) {
            return VIRTIO_BLK_S_IOERR;
        }
        if ((flags & VIRTIO_BLK_DISCARD_WRITE_ZEROES_FLAGS_RESERVED_MASK) != 0) {
            return VIRTIO_BLK_S_UNSUPP;
        }
        if (type == VIRTIO_BLK_T_DISCARD && (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0) {
            return VIRTIO_BLK_S_UNSUPP;
        }
        return VIRTIO_BLK_S_OK;
    }

    /** Does a request of {@code type} carry device-writable data (the device fills it)? */
    public static boolean dataDeviceWritable(int type) {
        return type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID || type == VIRTIO_BLK_T_GET_LIFETIME;
    }

    /** Does a request of {@code type} carry device-readable data (the driver fills it)? */
    public static boolean dataDeviceReadable(int type) {
        return type == VIRTIO_BLK_T_OUT
                || type == VIRTIO_BLK_T_DISCARD
                || type == VIRTIO_BLK_T_WRITE_ZEROES
                || type == VIRTIO_BLK_T_SECURE_ERASE;
    }
}
