package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;

/**
 * vhost-user.rst "A vring address description" ({@code struct vhost_vring_addr}), {@code VHOST_USER_SET_VRING_ADDR}.
 * Without {@code VIRTIO_F_IOMMU_PLATFORM} the three ring addresses are front-end virtual addresses (translated with
 * the memory table's {@code userspace_addr}); {@code logGuestAddr} is a guest physical address.
 *
 * <pre>
 *  0        4        8                16               24               32               40
 * +--------+--------+----------------+----------------+----------------+----------------+
 * | index  | flags  | descriptor     | used           | available      | log            |
 * +--------+--------+----------------+----------------+----------------+----------------+
 * </pre>
 *
 * @param index the vring index (u32)
 * @param flags {@link VhostUserFeature#VHOST_VRING_F_LOG_MASK} or 0
 * @param descUserAddr descriptor table, 16-byte aligned (virtio 1.2 §2.7 "Alignment")
 * @param usedUserAddr used ring, 4-byte aligned
 * @param availUserAddr available ring, 2-byte aligned
 * @param logGuestAddr where writes to the used ring are logged (with {@code VHOST_VRING_F_LOG})
 */
public record VhostUserVringAddr(
        int index, int flags, long descUserAddr, long usedUserAddr, long availUserAddr, long logGuestAddr)
        implements VhostUserPayload {
    public static final int SIZE_BYTES = 40;
    public static final int INDEX_OFFSET = 0;
    public static final int FLAGS_OFFSET = 4;
    public static final int DESC_OFFSET = 8;
    public static final int USED_OFFSET = 16;
    public static final int AVAIL_OFFSET = 24;
    public static final int LOG_OFFSET = 32;

    /** virtio 1.2 §2.7 "Alignment" (split virtqueue): descriptor table 16, available ring 2, used ring 4. */
    public static final int DESC_ALIGN_BYTES = 16;

    public static final int AVAIL_ALIGN_BYTES = 2;
    public static final int USED_ALIGN_BYTES = 4;

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless 40 bytes, known flags only, and aligned ring addresses
     */
    public static VhostUserVringAddr decode(int requestId, MemorySegment payload) {
        Wire.checkSize(requestId, payload, SIZE_BYTES, "vring address");
        VhostUserVringAddr addr = new VhostUserVringAddr(
                Wire.u32(payload, INDEX_OFFSET),
                Wire.u32(payload, FLAGS_OFFSET),
                Wire.u64(payload, DESC_OFFSET),
                Wire.u64(payload, USED_OFFSET),
                Wire.u64(payload, AVAIL_OFFSET),
                Wire.u64(payload, LOG_OFFSET));
        if ((addr.flags & ~VhostUserFeature.VHOST_VRING_F_LOG_MASK) != 0) {
            throw new VhostUserProtocolException(requestId, "unknown vring flags " + Wire.hex(addr.flags));
        }
        // a misaligned ring cannot be a virtio ring; the ring code relies on natural alignment of its fields
        if ((addr.descUserAddr & (DESC_ALIGN_BYTES - 1)) != 0
                || (addr.availUserAddr & (AVAIL_ALIGN_BYTES - 1)) != 0
                || (addr.usedUserAddr & (USED_ALIGN_BYTES - 1)) != 0) {
            throw new VhostUserProtocolException(requestId, "misaligned ring address in " + addr);
        }
        return addr;
    }

    /** Is {@code VHOST_VRING_F_LOG} set? */
    public boolean logUsed() {
        return (flags & VhostUserFeature.VHOST_VRING_F_LOG_MASK) != 0;
    }

    @Override
    public int sizeBytes() {
        return SIZE_BYTES;
    }

    @Override
    public void encode(MemorySegment dst) {
        Wire.putU32(dst, INDEX_OFFSET, index);
        Wire.putU32(dst, FLAGS_OFFSET, flags);
        Wire.putU64(dst, DESC_OFFSET, descUserAddr);
        Wire.putU64(dst, USED_OFFSET, usedUserAddr);
        Wire.putU64(dst, AVAIL_OFFSET, availUserAddr);
        Wire.putU64(dst, LOG_OFFSET, logGuestAddr);
    }

    @Override
    public String toString() {
        return "VhostUserVringAddr[index=" + Integer.toUnsignedString(index) + ", flags=" + Wire.hex(flags)
                + ", desc=" + Wire.hex(descUserAddr) + ", used=" + Wire.hex(usedUserAddr) + ", avail="
                + Wire.hex(availUserAddr) + ", log=" + Wire.hex(logGuestAddr) + "]";
    }
}
