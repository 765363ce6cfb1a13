package io.vhostd.vhost.virtio;

/**
 * Layout of the split virtqueue structures in guest memory (virtio 1.2 §2.7). All fields little endian.
 *
 * <pre>
 * Descriptor table entry (struct virtq_desc), 16 bytes, table aligned to 16:
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +---------------------------------------------------------------+
 *  |                          addr (le64)                          |  0
 *  |                                                               |
 *  +---------------------------------------------------------------+
 *  |                          len (le32)                           |  8
 *  +-------------------------------+-------------------------------+
 *  |         flags (le16)          |          next (le16)          | 12
 *  +-------------------------------+-------------------------------+
 *
 * Available ring (struct virtq_avail), 6 + 2 * size bytes, aligned to 2:
 *  +-------------------------------+-------------------------------+
 *  |         flags (le16)          |           idx (le16)          |  0
 *  +-------------------------------+-------------------------------+
 *  |        ring[0] (le16)         |        ring[1] (le16)   ...   |  4
 *  +-------------------------------+-------------------------------+
 *  |   used_event (le16, EVENT_IDX)|                                  4 + 2 * size
 *  +-------------------------------+
 *
 * Used ring (struct virtq_used), 6 + 8 * size bytes, aligned to 4:
 *  +-------------------------------+-------------------------------+
 *  |         flags (le16)          |           idx (le16)          |  0
 *  +-------------------------------+-------------------------------+
 *  |                      ring[0].id (le32)                        |  4
 *  +---------------------------------------------------------------+
 *  |                      ring[0].len (le32)                       |  8
 *  +---------------------------------------------------------------+
 *  |                             ...                               |
 *  +-------------------------------+-------------------------------+
 *  |  avail_event (le16, EVENT_IDX)|                                  4 + 8 * size
 *  +-------------------------------+
 * </pre>
 *
 * Without VIRTIO_RING_F_EVENT_IDX the trailing {@code used_event} / {@code avail_event} fields are not accessed and
 * need not be mapped (QEMU sizes the rings without them).
 */
public final class SplitRingDescriptor {

    /** Size of one descriptor table entry. */
    public static final int VIRTQ_DESC_LENGTH_BYTES = 16;
    /** {@code addr}: guest physical address of the buffer, le64. */
    public static final int VIRTQ_DESC_ADDR_OFFSET = 0;
    /** {@code len}: length of the buffer in bytes, le32. */
    public static final int VIRTQ_DESC_LEN_OFFSET = 8;
    /** {@code flags}, le16. */
    public static final int VIRTQ_DESC_FLAGS_OFFSET = 12;
    /** {@code next}: index of the next descriptor if VIRTQ_DESC_F_NEXT, le16. */
    public static final int VIRTQ_DESC_NEXT_OFFSET = 14;
    /** The buffer continues via {@code next}. */
    public static final int VIRTQ_DESC_F_NEXT = 1;
    /** The buffer is device write-only (otherwise device read-only). */
    public static final int VIRTQ_DESC_F_WRITE = 2;
    /** The buffer holds a table of indirect descriptors. */
    public static final int VIRTQ_DESC_F_INDIRECT = 4;
    /** Required alignment of the descriptor table. */
    public static final int VIRTQ_DESC_ALIGN = 16;

    /** {@code flags} of the available ring, le16. */
    public static final int VIRTQ_AVAIL_FLAGS_OFFSET = 0;
    /** {@code idx} of the available ring, le16: where the driver puts the next entry (mod size). */
    public static final int VIRTQ_AVAIL_IDX_OFFSET = 2;
    /** {@code ring[0]} of the available ring; entry i at {@code 4 + 2 * i}. */
    public static final int VIRTQ_AVAIL_RING_OFFSET = 4;
    /** Size of one available ring entry (a head descriptor index). */
    public static final int VIRTQ_AVAIL_ELEM_LENGTH_BYTES = 2;
    /** The driver asks not to be interrupted (without EVENT_IDX). */
    public static final int VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
    /** Required alignment of the available ring. */
    public static final int VIRTQ_AVAIL_ALIGN = 2;

    /** {@code flags} of the used ring, le16. */
    public static final int VIRTQ_USED_FLAGS_OFFSET = 0;
    /** {@code idx} of the used ring, le16: where the device puts the next entry (mod size). */
    public static final int VIRTQ_USED_IDX_OFFSET = 2;
    /** {@code ring[0]} of the used ring; element i at {@code 4 + 8 * i}. */
    public static final int VIRTQ_USED_RING_OFFSET = 4;
    /** Size of one used element (struct virtq_used_elem). */
    public static final int VIRTQ_USED_ELEM_LENGTH_BYTES = 8;
    /** {@code id} of a used element: head index of the chain, le32. */
    public static final int VIRTQ_USED_ELEM_ID_OFFSET = 0;
    /** {@code len} of a used element: bytes written into the chain's device-writable buffers, le32. */
    public static final int VIRTQ_USED_ELEM_LEN_OFFSET = 4;
    /** The device asks not to be kicked (without EVENT_IDX). */
    public static final int VIRTQ_USED_F_NO_NOTIFY = 1;
    /** Required alignment of the used ring. */
    public static final int VIRTQ_USED_ALIGN = 4;

    /** Largest queue size (§2.7: "The maximum Queue Size value is 32768"). */
    public static final int MAX_QUEUE_SIZE = 32768;

    private SplitRingDescriptor() {}

    /** Bytes of the descriptor table for {@code size} entries. */
    public static long descTableLengthBytes(int size) {
        return (long) VIRTQ_DESC_LENGTH_BYTES * size;
    }

    /** Bytes of the available ring, with {@code used_event} if {@code eventIdx}. */
    public static long availRingLengthBytes(int size, boolean eventIdx) {
        return VIRTQ_AVAIL_RING_OFFSET + (long) VIRTQ_AVAIL_ELEM_LENGTH_BYTES * size + (eventIdx ? 2 : 0);
    }

    /** Bytes of the used ring, with {@code avail_event} if {@code eventIdx}. */
    public static long usedRingLengthBytes(int size, boolean eventIdx) {
        return VIRTQ_USED_RING_OFFSET + (long) VIRTQ_USED_ELEM_LENGTH_BYTES * size + (eventIdx ? 2 : 0);
    }

    /** Offset of {@code used_event} in the available ring. */
    public static long usedEventOffset(int size) {
        return VIRTQ_AVAIL_RING_OFFSET + (long) VIRTQ_AVAIL_ELEM_LENGTH_BYTES * size;
    }

    /** Offset of {@code avail_event} in the used ring. */
    public static long availEventOffset(int size) {
        return VIRTQ_USED_RING_OFFSET + (long) VIRTQ_USED_ELEM_LENGTH_BYTES * size;
    }

    /** Is {@code size} a valid split queue size (a power of two in [1, 32768])? */
    public static boolean isValidQueueSize(int size) {
        return size >= 1 && size <= MAX_QUEUE_SIZE && Integer.bitCount(size) == 1;
    }
}
