package io.vhostd.vhost.virtio;

import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_AVAIL_ALIGN;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_AVAIL_ELEM_LENGTH_BYTES;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_AVAIL_FLAGS_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_AVAIL_F_NO_INTERRUPT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_AVAIL_IDX_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_AVAIL_RING_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_ADDR_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_ALIGN;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_FLAGS_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_INDIRECT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_WRITE;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_LENGTH_BYTES;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_LEN_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_NEXT_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_USED_ALIGN;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_USED_ELEM_ID_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_USED_ELEM_LENGTH_BYTES;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_USED_ELEM_LEN_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_USED_FLAGS_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_USED_F_NO_NOTIFY;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_USED_IDX_OFFSET;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_USED_RING_OFFSET;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.Objects;

/**
 * The device side of one split virtqueue (virtio 1.2 §2.7) over guest memory.
 *
 * <p>Single owner: one agent thread pops, pushes, publishes and toggles notifications; nothing here is thread-safe.
 * The guest (driver) runs concurrently on other CPUs and everything it writes is untrusted: each ring and
 * descriptor field is read once, every index is wrapped explicitly ({@code & 0xFFFF} for ring counters, {@code &
 * (size - 1)} for slots), chain length is capped, and all accesses go through bounds-checked segments. The rings
 * are sliced once at construction; a new memory table needs a new queue (carry over {@link #lastAvailIdx()} and
 * {@link #usedIdx()}).
 *
 * <p>Indirect descriptors (§2.7.5.3) are accepted only if {@code indirectDesc} (VIRTIO_RING_F_INDIRECT_DESC
 * negotiated); the eight-argument constructor accepts them. Following §2.7.5.3.2 a chain may be zero or more direct
 * descriptors followed by one indirect descriptor. A direct chain is capped at {@link #size()} descriptors, an
 * indirect table at its own entry count, which may not exceed {@link #size()} (§2.7.5.3.1: no chain longer than the
 * queue size).
 *
 * <p>Notification suppression: the caller drives kicks with {@link #disableNotifications()} while it polls and
 * {@link #enableNotifications()} before it sleeps; {@link #pop} never writes {@code avail_event} itself (unlike
 * libvhost-user), so a polling back-end is not kicked for every request.
 *
 * <p>The {@link Virtqueue} positions of a split ring are the u16 ring counters; {@link #vringBase()} is {@link
 * #lastAvailIdx()}.
 */
public final class SplitVirtqueue implements Virtqueue {

    private static final ValueLayout.OfShort LE_U16 =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE_U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Aligned le16 for the ring indexes: coordinates (MemorySegment, long offset). */
    private static final VarHandle LE_U16_ATOMIC =
            ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    private final int queueIndex;
    private final int size;
    private final int mask;
    private final GuestMemory memory;
    private final long descGpa;
    private final long availGpa;
    private final long usedGpa;
    private final boolean eventIdx;
    private final boolean indirectDesc;
    private final int maxSegments;
    private final MemorySegment descTable;
    private final MemorySegment avail;
    private final MemorySegment used;
    private final long usedEventOffset;
    private final long availEventOffset;
    private final long usedRingLengthBytes;

    private int lastAvailIdx;
    /** Last avail->idx read from the guest; entries in [lastAvailIdx, shadowAvailIdx) are known published. */
    private int shadowAvailIdx;

    private int usedIdx;
    private int publishedUsedIdx;
    private int usedFlags;
    private int signalledUsed;
    private boolean signalledUsedValid;

    /**
     * Same as the nine-argument constructor with {@code indirectDesc = true} (indirect tables always accepted).
     *
     * @see #SplitVirtqueue(int, int, GuestMemory, long, long, long, boolean, int, boolean)
     */
    public SplitVirtqueue(
            int queueIndex,
            int size,
            GuestMemory memory,
            long descGpa,
            long availGpa,
            long usedGpa,
            boolean eventIdx,
            int maxSegments) {
        this(queueIndex, size, memory, descGpa, availGpa, usedGpa, eventIdx, maxSegments, true);
    }

    /**
     * @param queueIndex the virtqueue's index (for messages)
     * @param size queue size, a power of two in [1, 32768]
     * @param memory guest memory
     * @param descGpa guest physical address of the descriptor table, 16-byte aligned
     * @param availGpa guest physical address of the available ring, 2-byte aligned
     * @param usedGpa guest physical address of the used ring, 4-byte aligned
     * @param eventIdx VIRTIO_RING_F_EVENT_IDX negotiated
     * @param maxSegments cap on a chain's segments (descriptors after translation; a descriptor crossing a region
     *     boundary becomes 2 segments), &gt;= 1
     * @param indirectDesc VIRTIO_RING_F_INDIRECT_DESC negotiated: accept indirect tables
     * @throws IllegalArgumentException if the size is not a power of two in [1, 32768], a ring is misaligned or not
     *     inside one region, or {@code maxSegments < 1}
     */
    public SplitVirtqueue(
            int queueIndex,
            int size,
            GuestMemory memory,
            long descGpa,
            long availGpa,
            long usedGpa,
            boolean eventIdx,
            int maxSegments,
            boolean indirectDesc) {
        Objects.requireNonNull(memory, "memory");
        if (!SplitRingDescriptor.isValidQueueSize(size)) {
            throw new IllegalArgumentException(
                    "vq " + queueIndex + ": size " + size + " is not a power of two in [1, 32768]");
        }
        if (maxSegments < 1) {
            throw new IllegalArgumentException("vq " + queueIndex + ": maxSegments must be >= 1, got " + maxSegments);
        }
        this.queueIndex = queueIndex;
        this.size = size;
        this.mask = size - 1;
        this.memory = memory;
        this.descGpa = descGpa;
        this.availGpa = availGpa;
        this.usedGpa = usedGpa;
        this.eventIdx = eventIdx;
        this.indirectDesc = indirectDesc;
        this.maxSegments = maxSegments;
        this.usedEventOffset = SplitRingDescriptor.usedEventOffset(size);
        this.availEventOffset = SplitRingDescriptor.availEventOffset(size);
        this.usedRingLengthBytes = SplitRingDescriptor.usedRingLengthBytes(size, eventIdx);
        // virtio 1.2 §2.7 "Virtqueue Part / Alignment": desc 16, avail 2, used 4 (atomic index access relies on it)
        this.descTable =
                ring("descriptor table", descGpa, VIRTQ_DESC_ALIGN, SplitRingDescriptor.descTableLengthBytes(size));
        this.avail = ring(
                "available ring",
                availGpa,
                VIRTQ_AVAIL_ALIGN,
                SplitRingDescriptor.availRingLengthBytes(size, eventIdx));
        this.used = ring("used ring", usedGpa, VIRTQ_USED_ALIGN, usedRingLengthBytes);
    }

    private MemorySegment ring(String what, long gpa, int align, long lengthBytes) {
        if ((gpa & (align - 1)) != 0) {
            throw new IllegalArgumentException("vq " + queueIndex + ": " + what + " at 0x" + Long.toHexString(gpa)
                    + " is not " + align + "-byte aligned");
        }
        MemorySegment slice = memory.slice(gpa, lengthBytes);
        if (slice == null) {
            throw new IllegalArgumentException("vq " + queueIndex + ": " + what + " [0x" + Long.toHexString(gpa) + ", +"
                    + lengthBytes + ") is not inside one guest memory region");
        }
        if ((slice.address() & (align - 1)) != 0) {
            throw new IllegalArgumentException(
                    "vq " + queueIndex + ": " + what + " mapping is not " + align + "-byte aligned");
        }
        return slice;
    }

    @Override
    public int queueIndex() {
        return queueIndex;
    }

    @Override
    public int size() {
        return size;
    }

    /** Always false: a split ring. */
    @Override
    public boolean packed() {
        return false;
    }

    @Override
    public boolean eventIdx() {
        return eventIdx;
    }

    @Override
    public boolean indirectDesc() {
        return indirectDesc;
    }

    @Override
    public int maxSegments() {
        return maxSegments;
    }

    @Override
    public GuestMemory memory() {
        return memory;
    }

    @Override
    public long descGpa() {
        return descGpa;
    }

    /** Guest physical address of the available ring. */
    public long availGpa() {
        return availGpa;
    }

    /** Next avail ring counter to take (u16, wrapping). */
    @Override
    public int lastAvailIdx() {
        return lastAvailIdx;
    }

    /**
     * Sets the next avail ring counter to take ({@code VHOST_USER_SET_VRING_BASE}, recovery); the guest's
     * avail->idx is re-read on the next pop. Only the low 16 bits are used.
     */
    @Override
    public void lastAvailIdx(int idx) {
        lastAvailIdx = idx & 0xFFFF;
        shadowAvailIdx = lastAvailIdx;
    }

    /** Shadow used idx: the next used ring counter {@link #pushUsed} writes (u16, wrapping). */
    @Override
    public int usedIdx() {
        return usedIdx;
    }

    /**
     * Sets the shadow used idx (recovery); it is also taken as published, and the next {@link #needsNotification()}
     * with EVENT_IDX answers true (as libvhost-user's {@code signalled_used_valid = false}). Only the low 16 bits
     * are used.
     */
    @Override
    public void usedIdx(int idx) {
        usedIdx = idx & 0xFFFF;
        publishedUsedIdx = usedIdx;
        signalledUsedValid = false;
    }

    /** {@link #lastAvailIdx()}: vhost-user.rst "A vring descriptor index for split virtqueues". */
    @Override
    public int vringBase() {
        return lastAvailIdx;
    }

    /**
     * Next avail index = {@code base}; used idx = used->idx as the guest memory holds it (vhost-user.rst
     * SET_VRING_BASE: "the device is supposed to read the next index in the Used Ring").
     *
     * @throws IllegalArgumentException if bits 16-31 are set (reserved for split rings)
     */
    @Override
    public void vringBase(int base) {
        if ((base & ~0xFFFF) != 0) {
            throw new IllegalArgumentException(
                    "vq " + queueIndex + ": base 0x" + Integer.toHexString(base) + " has reserved bits 16-31 set");
        }
        lastAvailIdx(base);
        usedIdx(usedIdxInRingAcquire());
    }

    /** Reads the guest's avail->idx with acquire semantics (u16). */
    public int availIdxAcquire() {
        // acquire: ring entries and descriptors the guest wrote before this idx are read after it
        return (short) LE_U16_ATOMIC.getAcquire(avail, (long) VIRTQ_AVAIL_IDX_OFFSET) & 0xFFFF;
    }

    /** Reads used->idx as the guest sees it (u16), e.g. to check a restored used idx against the ring. */
    public int usedIdxInRingAcquire() {
        // acquire: pairs with our own release store; read for recovery checks only
        return (short) LE_U16_ATOMIC.getAcquire(used, (long) VIRTQ_USED_IDX_OFFSET) & 0xFFFF;
    }

    /**
     * Is there an avail entry not yet taken? Reads avail->idx (acquire) only if every entry known so far was taken.
     *
     * @throws IllegalStateException if avail->idx is more than {@link #size()} ahead of {@link #lastAvailIdx()}
     */
    @Override
    public boolean hasAvail() {
        return lastAvailIdx != shadowAvailIdx || refreshAvailIdx();
    }

    private boolean refreshAvailIdx() {
        int availIdx = availIdxAcquire();
        int pending = (availIdx - lastAvailIdx) & 0xFFFF;
        // libvhost-user virtqueue_num_heads: "Guest moved used index from %u to %u"
        if (pending > size) {
            throw new IllegalStateException("vq " + queueIndex + ": avail->idx " + availIdx + " is " + pending
                    + " entries ahead of last_avail_idx " + lastAvailIdx + ", queue size " + size);
        }
        shadowAvailIdx = availIdx;
        return pending != 0;
    }

    /**
     * Takes the next avail entry and translates its chain into {@code chain}.
     *
     * <p>avail->idx is read with acquire (once, when every entry known so far was taken); the ring entry and every
     * descriptor field are read once. The entry is consumed whatever the outcome ({@link #lastAvailIdx()} moves on).
     *
     * @param chain reused result; its capacity and {@link #maxSegments()} both cap the segments
     * @return {@link #POP_EMPTY}; {@link #POP_OK}; or {@link #POP_MALFORMED}: {@code chain.error() != 0},
     *     {@code chain.head()} is the head index (the caller completes it with an error status if it can), the
     *     segments of the descriptors translated before the error are kept, and {@link
     *     DescriptorChain#lastByteLocated()} says whether the chain's last byte was found (not for {@link
     *     ChainError#LOOP}, {@link ChainError#DESC_OUT_OF_RANGE} or {@link ChainError#BAD_INDIRECT_TABLE}, nor when the
     *     rest of the chain runs into one of those); an avail ring entry (head) &gt;= size
     *     gives {@code head() == -1} and {@link ChainError#DESC_OUT_OF_RANGE} (nothing can be pushed for it)
     * @throws IllegalStateException if avail->idx is more than {@link #size()} ahead of {@link #lastAvailIdx()}: a
     *     broken guest, the caller marks the queue broken
     */
    @Override
    public int pop(DescriptorChain chain) {
        if (!hasAvail()) {
            return POP_EMPTY;
        }
        int slot = lastAvailIdx & mask;
        int head = avail.get(LE_U16, VIRTQ_AVAIL_RING_OFFSET + (long) VIRTQ_AVAIL_ELEM_LENGTH_BYTES * slot) & 0xFFFF;
        lastAvailIdx = (lastAvailIdx + 1) & 0xFFFF;
        if (head >= size) {
            chain.reset(-1);
            chain.fail(ChainError.DESC_OUT_OF_RANGE);
            return POP_MALFORMED;
        }
        chain.reset(head);
        int error = walk(chain, head);
        if (error != ChainError.OK) {
            chain.fail(error);
            return POP_MALFORMED;
        }
        return POP_OK;
    }

    /**
     * Translates the chain that starts at descriptor {@code head} into {@code chain} without consuming an avail entry:
     * a replacement back-end re-reads a request the journal holds in flight (journal.md §7.4). The guest cannot reuse
     * a head before its used element is published (virtio 1.2 §2.7.13.2), so the descriptors are still the request's.
     * Every descriptor is validated as in {@link #pop}.
     *
     * @param head the head descriptor index, untrusted (from the journal)
     * @param chain reused result
     * @return {@link #POP_OK} or {@link #POP_MALFORMED} ({@code chain.error() != 0})
     */
    public int popHead(int head, DescriptorChain chain) {
        if (head < 0 || head >= size) {
            chain.reset(-1);
            chain.fail(ChainError.DESC_OUT_OF_RANGE);
            return POP_MALFORMED;
        }
        chain.reset(head);
        int error = walk(chain, head);
        if (error != ChainError.OK) {
            chain.fail(error);
            return POP_MALFORMED;
        }
        return POP_OK;
    }

    private int walk(DescriptorChain chain, int head) {
        int limit = Math.min(maxSegments, chain.capacity());
        MemorySegment table = descTable;
        long tableOffset = 0;
        int max = size;
        int count = 0;
        boolean inIndirect = false;
        int i = head;
        while (true) {
            // cap the chain: more descriptors than the table holds means a cycle through next
            if (++count > max) {
                return ChainError.LOOP;
            }
            chain.countDescriptor(!inIndirect);
            long d = tableOffset + (long) VIRTQ_DESC_LENGTH_BYTES * i;
            // read each untrusted field exactly once; the guest may rewrite the descriptor meanwhile
            long addr = table.get(LE_U64, d + VIRTQ_DESC_ADDR_OFFSET);
            long len = Integer.toUnsignedLong(table.get(LE_U32, d + VIRTQ_DESC_LEN_OFFSET));
            int flags = table.get(LE_U16, d + VIRTQ_DESC_FLAGS_OFFSET) & 0xFFFF;
            int next = table.get(LE_U16, d + VIRTQ_DESC_NEXT_OFFSET) & 0xFFFF;
            if ((flags & VIRTQ_DESC_F_INDIRECT) != 0) {
                if (!indirectDesc) {
                    // the table is never read (locateLastDescriptor only follows a NEXT)
                    locateLastDescriptor(chain, table, tableOffset, max, count, inIndirect, addr, len, flags, next);
                    return ChainError.INDIRECT_NOT_NEGOTIATED;
                }
                // §2.7.5.3.1: only one table per descriptor
                if (inIndirect) {
                    locateLastDescriptor(chain, table, tableOffset, max, count, true, addr, len, flags, next);
                    return ChainError.NESTED_INDIRECT;
                }
                // §2.7.5.3.1: the driver MUST NOT set both INDIRECT and NEXT
                if ((flags & VIRTQ_DESC_F_NEXT) != 0) {
                    locateLastDescriptor(chain, table, tableOffset, max, count, false, addr, len, flags, next);
                    return ChainError.NEXT_AND_INDIRECT;
                }
                // whole entries only, at most queue size of them (§2.7.5.3.1: no chain longer than the queue)
                int region = IndirectTable.region(memory, addr, len, VIRTQ_DESC_LENGTH_BYTES, size);
                if (region < 0) {
                    return ChainError.BAD_INDIRECT_TABLE;
                }
                // §2.7.5.3.2: the WRITE flag of the descriptor that refers to a table is ignored
                GuestMemoryRegion r = memory.region(region);
                table = r.mapping();
                tableOffset = addr - r.guestPhysAddr();
                max = (int) (len / VIRTQ_DESC_LENGTH_BYTES);
                count = 0;
                inIndirect = true;
                chain.markIndirect();
                i = 0;
                continue;
            }
            int error;
            boolean writable = (flags & VIRTQ_DESC_F_WRITE) != 0;
            if (len == 0) {
                // QEMU / libvhost-user virtqueue_map_desc: "zero sized buffers are not allowed"
                error = ChainError.ZERO_LENGTH;
            } else if (!writable && chain.hasWritable()) {
                // §2.7.4.2: device-writable elements after all device-readable ones
                error = ChainError.WRITABLE_BEFORE_READABLE;
            } else {
                error = chain.addBuffer(memory, addr, len, writable, limit);
            }
            if (error != ChainError.OK) {
                // the chain's structure is intact so far: find its last descriptor (the status byte) for the answer
                locateLastDescriptor(chain, table, tableOffset, max, count, inIndirect, addr, len, flags, next);
                return error;
            }
            if ((flags & VIRTQ_DESC_F_NEXT) == 0) {
                return ChainError.OK;
            }
            if (next >= max) {
                return ChainError.DESC_OUT_OF_RANGE;
            }
            i = next;
        }
    }

    /**
     * Error path of {@link #walk}: the descriptor ({@code addr}, {@code len}, {@code flags}, {@code next}), the
     * {@code count}-th walked in its table, made the chain malformed but not unwalkable. Follows the remaining {@code
     * next} links without translating, with the walk's own guards (a link &gt;= the table's entries or more descriptors
     * than it holds ends the search: nothing located). A descriptor with both INDIRECT and NEXT is passed through next
     * (its table ignored); a chain that ends in a table enters it only under the walk's checks, and one that ends in a
     * table inside a table is not followed. The chain's last descriptor goes to {@link
     * DescriptorChain#lastDescriptor}. Each descriptor field is read once; nothing is allocated or written.
     */
    private void locateLastDescriptor(
            DescriptorChain chain,
            MemorySegment table,
            long tableOffset,
            int max,
            int count,
            boolean inIndirect,
            long addr,
            long len,
            int flags,
            int next) {
        while (true) {
            // a descriptor that refers to a table and has NEXT: the table is ignored, the chain goes on through next
            if ((flags & VIRTQ_DESC_F_INDIRECT) != 0 && (flags & VIRTQ_DESC_F_NEXT) == 0) {
                // the chain ends in a table: followed only under the walk's own checks (§2.7.5.3.1), never a table
                // inside a table; it goes on at entry 0
                if (inIndirect || !indirectDesc) {
                    return;
                }
                int region = IndirectTable.region(memory, addr, len, VIRTQ_DESC_LENGTH_BYTES, size);
                if (region < 0) {
                    return;
                }
                GuestMemoryRegion r = memory.region(region);
                table = r.mapping();
                tableOffset = addr - r.guestPhysAddr();
                max = (int) (len / VIRTQ_DESC_LENGTH_BYTES);
                count = 0;
                inIndirect = true;
                next = 0;
            } else if ((flags & VIRTQ_DESC_F_NEXT) == 0) {
                chain.lastDescriptor(memory, addr, len, (flags & VIRTQ_DESC_F_WRITE) != 0);
                return;
            }
            // untrusted next, as in walk: in range of this table, and no more descriptors than it holds (a cycle)
            if (next >= max || ++count > max) {
                return;
            }
            long d = tableOffset + (long) VIRTQ_DESC_LENGTH_BYTES * next;
            addr = table.get(LE_U64, d + VIRTQ_DESC_ADDR_OFFSET);
            len = Integer.toUnsignedLong(table.get(LE_U32, d + VIRTQ_DESC_LEN_OFFSET));
            flags = table.get(LE_U16, d + VIRTQ_DESC_FLAGS_OFFSET) & 0xFFFF;
            next = table.get(LE_U16, d + VIRTQ_DESC_NEXT_OFFSET) & 0xFFFF;
        }
    }

    /**
     * Writes one used element at the shadow used idx; the guest does not see it until {@link #publishUsed()}.
     *
     * @param head head index of the completed chain, in [0, size)
     * @param writtenBytes bytes written into the chain's device-writable buffers (u32)
     * @throws IllegalArgumentException if {@code head} is out of range (a caller bug, not a guest error)
     */
    public void pushUsed(int head, int writtenBytes) {
        pushUsed(head, writtenBytes, 1);
    }

    /** {@link #pushUsed(int, int)}; {@code descriptorCount} is not used by a split ring. */
    @Override
    public void pushUsed(int head, int writtenBytes, int descriptorCount) {
        if (head < 0 || head >= size) {
            throw new IllegalArgumentException("vq " + queueIndex + ": used id " + head + " out of [0, " + size + ")");
        }
        long e = VIRTQ_USED_RING_OFFSET + (long) VIRTQ_USED_ELEM_LENGTH_BYTES * (usedIdx & mask);
        used.set(LE_U32, e + VIRTQ_USED_ELEM_ID_OFFSET, head);
        used.set(LE_U32, e + VIRTQ_USED_ELEM_LEN_OFFSET, writtenBytes);
        usedIdx = (usedIdx + 1) & 0xFFFF;
    }

    /** Release-stores used->idx = shadow used idx, making every pushed element visible to the guest. */
    @Override
    public void publishUsed() {
        // release: used elements (and the data/status written into the buffers) before idx (§2.7.8.2: len before idx)
        LE_U16_ATOMIC.setRelease(used, (long) VIRTQ_USED_IDX_OFFSET, (short) usedIdx);
        publishedUsedIdx = usedIdx;
    }

    /**
     * After {@link #publishUsed()}: must the device notify the driver (signal the call eventfd)?
     *
     * <p>With EVENT_IDX (§2.7.10): {@code vring_need_event(used_event, new, old)} where {@code new} is the published
     * used idx and {@code old} the one at the previous check; the first check after construction or {@link
     * #usedIdx(int)} answers true. Without: true unless avail->flags has VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.7).
     */
    @Override
    public boolean needsNotification() {
        // full fence, store-load: our used->idx store must be visible before we read used_event / flags; otherwise
        // the guest may read the old idx, go to sleep, and we read its stale event and skip the interrupt
        VarHandle.fullFence();
        if (!eventIdx) {
            return (avail.get(LE_U16, VIRTQ_AVAIL_FLAGS_OFFSET) & VIRTQ_AVAIL_F_NO_INTERRUPT) == 0;
        }
        int usedEvent = avail.get(LE_U16, usedEventOffset) & 0xFFFF;
        boolean valid = signalledUsedValid;
        int old = signalledUsed;
        signalledUsedValid = true;
        signalledUsed = publishedUsedIdx;
        return !valid || vringNeedEvent(usedEvent, publishedUsedIdx, old);
    }

    /**
     * {@code vring_need_event} (virtio 1.2 §2.7.10, Linux {@code virtio_ring.h}): has the counter moved from {@code
     * oldIdx} to {@code newIdx} across {@code eventIdx}, i.e. is {@code eventIdx} in {@code [oldIdx, newIdx)} mod
     * 2^16?
     */
    public static boolean vringNeedEvent(int eventIdx, int newIdx, int oldIdx) {
        return ((newIdx - eventIdx - 1) & 0xFFFF) < ((newIdx - oldIdx) & 0xFFFF);
    }

    /**
     * Enables guest kicks: with EVENT_IDX writes avail_event = {@link #lastAvailIdx()} (§2.7.10), else clears
     * VIRTQ_USED_F_NO_NOTIFY in used->flags (§2.7.7).
     *
     * @return true if avail entries are pending (arrived before the guest could see the change): the caller must
     *     not sleep
     * @throws IllegalStateException as {@link #hasAvail()}
     */
    @Override
    public boolean enableNotifications() {
        if (eventIdx) {
            used.set(LE_U16, availEventOffset, (short) lastAvailIdx);
        } else {
            usedFlags &= ~VIRTQ_USED_F_NO_NOTIFY;
            used.set(LE_U16, VIRTQ_USED_FLAGS_OFFSET, (short) usedFlags);
        }
        // full fence, store-load: avail_event / flags must be visible before we re-read avail->idx; else a guest that
        // added a buffer after our last read still saw kicks disabled, did not kick, and we would sleep on it
        VarHandle.fullFence();
        return lastAvailIdx != shadowAvailIdx || refreshAvailIdx();
    }

    /**
     * Disables guest kicks while the caller polls: without EVENT_IDX sets VIRTQ_USED_F_NO_NOTIFY. With EVENT_IDX
     * nothing is written: avail_event stays at the value {@link #enableNotifications()} wrote, which the guest has
     * passed or will pass with at most one more kick.
     */
    @Override
    public void disableNotifications() {
        if (!eventIdx) {
            usedFlags |= VIRTQ_USED_F_NO_NOTIFY;
            used.set(LE_U16, VIRTQ_USED_FLAGS_OFFSET, (short) usedFlags);
        }
    }

    /** Guest physical address of the used ring (for dirty logging). */
    public long usedRingGpa() {
        return usedGpa;
    }

    /** Length of the used ring, {@code avail_event} included with EVENT_IDX (for dirty logging). */
    public long usedRingLengthBytes() {
        return usedRingLengthBytes;
    }

    @Override
    public String toString() {
        return "SplitVirtqueue[" + queueIndex + ", size=" + size + ", lastAvailIdx=" + lastAvailIdx + ", usedIdx="
                + usedIdx + ", eventIdx=" + eventIdx + "]";
    }
}
