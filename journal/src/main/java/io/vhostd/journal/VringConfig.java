package io.vhostd.journal;

/**
 * The configuration of one virtqueue as the journal keeps it (spec §5.3): what {@code VHOST_USER_SET_VRING_NUM} and
 * {@code VHOST_USER_SET_VRING_ADDR} said, with the ring addresses already translated to guest physical addresses, and
 * how the journal tracks the queue's requests.
 *
 * @param size queue size: 1..32768, a power of two for a split ring (virtio 1.2 §2.7), any for a packed ring (§2.8)
 * @param packed VIRTIO_F_RING_PACKED: a packed ring
 * @param descGpa descriptor table (split) or descriptor ring (packed), 16-byte aligned
 * @param availGpa available ring (split, 2-byte aligned) or driver event suppression area (packed, 4-byte aligned)
 * @param usedGpa used ring (split, 4-byte aligned) or device event suppression area (packed, 4-byte aligned)
 * @param logGuestAddr {@code log_guest_addr} of {@code VHOST_USER_SET_VRING_ADDR}, for dirty logging of the used ring
 * @param addrFlags {@code flags} of {@code VHOST_USER_SET_VRING_ADDR} (bit 0: {@code VHOST_VRING_F_LOG})
 * @param slotCount journal slots of the queue, 1..32768 and at most the journal's max slots: one per request that can
 *     be in flight at once (the queue size for a virtqueue, whose slot is the head index)
 * @param entryCopies the journal keeps a copy of each fetched entry (an NVMe SQ, whose slots the guest may reuse as
 *     soon as the head moves); needs a journal formatted with 64-byte entries
 * @throws IllegalArgumentException if a value is out of range or an address misaligned
 */
public record VringConfig(
        int size,
        boolean packed,
        long descGpa,
        long availGpa,
        long usedGpa,
        long logGuestAddr,
        int addrFlags,
        int slotCount,
        boolean entryCopies) {

    /** Largest queue size (virtio 1.2 §2.7 and §2.8: "Queue Size ... maximum 32768"). */
    public static final int MAX_QUEUE_SIZE = 32768;

    public VringConfig {
        if (size < 1 || size > MAX_QUEUE_SIZE || (!packed && Integer.bitCount(size) != 1)) {
            throw new IllegalArgumentException("queue size " + size + " invalid: expected "
                    + (packed ? "1.." + MAX_QUEUE_SIZE : "a power of two in [1, " + MAX_QUEUE_SIZE + "]"));
        }
        if (slotCount < 1 || slotCount > MAX_QUEUE_SIZE) {
            throw new IllegalArgumentException("slot count " + slotCount + " invalid: expected 1.." + MAX_QUEUE_SIZE);
        }
        // virtio 1.2 §2.7 / §2.8 alignment: descriptors 16; split avail 2, used 4; packed event areas 4
        checkAlignment("descriptor table", descGpa, 16);
        checkAlignment(packed ? "driver area" : "available ring", availGpa, packed ? 4 : 2);
        checkAlignment(packed ? "device area" : "used ring", usedGpa, 4);
    }

    private static void checkAlignment(String what, long gpa, int alignment) {
        if ((gpa & (alignment - 1)) != 0) {
            throw new IllegalArgumentException(
                    what + " at 0x" + Long.toHexString(gpa) + " is not " + alignment + "-byte aligned");
        }
    }

    /** Length in bytes of the descriptor table (split) or ring (packed): 16 per entry. */
    public long descLengthBytes() {
        return 16L * size;
    }

    /** Length in bytes of the available ring with {@code used_event} (split), or of the driver area (packed). */
    public long availLengthBytes() {
        return packed ? 4 : 6 + 2L * size;
    }

    /** Length in bytes of the used ring with {@code avail_event} (split), or of the device area (packed). */
    public long usedLengthBytes() {
        return packed ? 4 : 6 + 8L * size;
    }
}
