package io.vhostd.vhost.virtio;

/**
 * Layout of the packed virtqueue structures in guest memory (virtio 1.2 §2.8). All fields little endian.
 *
 * <pre>
 * Descriptor ring entry (struct pvirtq_desc), 16 bytes, ring aligned to 16, 16 * size bytes:
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +---------------------------------------------------------------+
 *  |                          addr (le64)                          |  0
 *  |                                                               |
 *  +---------------------------------------------------------------+
 *  |                          len (le32)                           |  8
 *  +-------------------------------+-------------------------------+
 *  |           id (le16)           |         flags (le16)          | 12
 *  +-------------------------------+-------------------------------+
 *  flags: NEXT 0x1, WRITE 0x2, INDIRECT 0x4, AVAIL 0x80, USED 0x8000
 *
 * Event suppression (struct pvirtq_event_suppress), 4 bytes, aligned to 4; the Driver Area (written by the driver,
 * read by the device) and the Device Area (written by the device, read by the driver) each hold one:
 *  +-------------------------------+-------------------------------+
 *  | desc: off (bits 0-14),        | flags (le16): bits 0-1        |  0
 *  |       wrap (bit 15)    (le16) |   ENABLE 0, DISABLE 1, DESC 2 |
 *  +-------------------------------+-------------------------------+
 * </pre>
 *
 * vhost-user names the three parts as for a split ring: {@code VHOST_USER_SET_VRING_ADDR}'s descriptor address is the
 * descriptor ring, its "available" address the Driver Area and its "used" address the Device Area.
 */
public final class PackedRingDescriptor {

    /** Size of one descriptor ring entry. */
    public static final int PVIRTQ_DESC_LENGTH_BYTES = 16;
    /** {@code addr}: guest physical address of the buffer (or indirect table), le64. */
    public static final int PVIRTQ_DESC_ADDR_OFFSET = 0;
    /** {@code len}: buffer length in bytes (available) or bytes written (used), le32. */
    public static final int PVIRTQ_DESC_LEN_OFFSET = 8;
    /** {@code id}: buffer id, le16 (valid in the last descriptor of a chain). */
    public static final int PVIRTQ_DESC_ID_OFFSET = 12;
    /** {@code flags}, le16. */
    public static final int PVIRTQ_DESC_FLAGS_OFFSET = 14;

    /** The buffer continues in the next descriptor of the ring. */
    public static final int VIRTQ_DESC_F_NEXT = 1;
    /** Device write-only buffer (available); the device wrote into the buffer (used). */
    public static final int VIRTQ_DESC_F_WRITE = 2;
    /** The buffer holds a table of indirect descriptors. */
    public static final int VIRTQ_DESC_F_INDIRECT = 4;
    /** Bit number of {@link #VIRTQ_DESC_F_AVAIL}. */
    public static final int VIRTQ_DESC_F_AVAIL_BIT = 7;
    /** Bit number of {@link #VIRTQ_DESC_F_USED}. */
    public static final int VIRTQ_DESC_F_USED_BIT = 15;
    /** Set by the driver to its ring wrap counter when it makes a descriptor available. */
    public static final int VIRTQ_DESC_F_AVAIL = 1 << VIRTQ_DESC_F_AVAIL_BIT;
    /** Set by the device to its ring wrap counter when it marks a descriptor used. */
    public static final int VIRTQ_DESC_F_USED = 1 << VIRTQ_DESC_F_USED_BIT;
    /** Required alignment of the descriptor ring. */
    public static final int PVIRTQ_DESC_ALIGN = 16;

    /** Size of one event suppression structure. */
    public static final int PVIRTQ_EVENT_SUPPRESS_LENGTH_BYTES = 4;
    /** {@code desc}: event offset (bits 0-14) and wrap counter (bit 15), le16. */
    public static final int PVIRTQ_EVENT_SUPPRESS_DESC_OFFSET = 0;
    /** {@code flags}: {@code RING_EVENT_FLAGS_*} in bits 0-1, le16. */
    public static final int PVIRTQ_EVENT_SUPPRESS_FLAGS_OFFSET = 2;
    /** Required alignment of the Driver Area and the Device Area. */
    public static final int PVIRTQ_EVENT_SUPPRESS_ALIGN = 4;
    /** Bit number of the wrap counter in {@code desc}. */
    public static final int RING_EVENT_WRAP_BIT = 15;
    /** Mask of the offset in {@code desc}. */
    public static final int RING_EVENT_OFFSET_MASK = (1 << RING_EVENT_WRAP_BIT) - 1;
    /** Mask of the wrap counter in {@code desc}. */
    public static final int RING_EVENT_WRAP_MASK = 1 << RING_EVENT_WRAP_BIT;
    /** Mask of the event flags in {@code flags}. */
    public static final int RING_EVENT_FLAGS_MASK = 0x3;
    /** Event flags: notify on every event. */
    public static final int RING_EVENT_FLAGS_ENABLE = 0x0;
    /** Event flags: no events. */
    public static final int RING_EVENT_FLAGS_DISABLE = 0x1;
    /** Event flags: notify when the descriptor at {@code desc} is made available / used (VIRTIO_RING_F_EVENT_IDX). */
    public static final int RING_EVENT_FLAGS_DESC = 0x2;

    /** Largest queue size (§2.8: "Packed virtqueues support up to 2^15 entries each"). */
    public static final int MAX_QUEUE_SIZE = 32768;

    /**
     * vhost-user.rst "Vring descriptor indices for packed virtqueues": bit 15 of each 16-bit half of {@code
     * SET/GET_VRING_BASE}'s {@code num} is the wrap counter, bits 0-14 the ring offset.
     */
    public static final int VRING_BASE_WRAP_BIT = 15;
    /** Mask of {@link #VRING_BASE_WRAP_BIT}. */
    public static final int VRING_BASE_WRAP_MASK = 1 << VRING_BASE_WRAP_BIT;
    /** Mask of the ring offset in each half of the vring base. */
    public static final int VRING_BASE_OFFSET_MASK = VRING_BASE_WRAP_MASK - 1;
    /** Shift of the used half (device ring offset and wrap counter) in the vring base. */
    public static final int VRING_BASE_USED_SHIFT = 16;
    /** The vring base of a fresh ring: both offsets 0, both wrap counters 1 (§2.8.1 "initialized to 1"). */
    public static final int VRING_BASE_INITIAL = VRING_BASE_WRAP_MASK | (VRING_BASE_WRAP_MASK << VRING_BASE_USED_SHIFT);

    private PackedRingDescriptor() {}

    /** Bytes of the descriptor ring for {@code size} entries. */
    public static long descRingLengthBytes(int size) {
        return (long) PVIRTQ_DESC_LENGTH_BYTES * size;
    }

    /** Is {@code size} a valid packed queue size (1..32768, no power-of-two requirement, §2.8.10.1)? */
    public static boolean isValidQueueSize(int size) {
        return size >= 1 && size <= MAX_QUEUE_SIZE;
    }

    /** One half of a vring base: {@code offset | wrap << 15}. */
    public static int encodeIndex(int offset, boolean wrap) {
        return offset | (wrap ? VRING_BASE_WRAP_MASK : 0);
    }
}
