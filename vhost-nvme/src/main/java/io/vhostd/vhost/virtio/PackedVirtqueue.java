package io.vhostd.vhost.virtio;

import static io.vhostd.vhost.virtio.PackedRingDescriptor.PVIRTQ_DESC_ADDR_OFFSET;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.PVIRTQ_DESC_ALIGN;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.PVIRTQ_DESC_FLAGS_OFFSET;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.PVIRTQ_DESC_ID_OFFSET;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.PVIRTQ_DESC_LENGTH_BYTES;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.PVIRTQ_DESC_LEN_OFFSET;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.PVIRTQ_EVENT_SUPPRESS_ALIGN;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.PVIRTQ_EVENT_SUPPRESS_LENGTH_BYTES;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.RING_EVENT_FLAGS_DESC;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.RING_EVENT_FLAGS_DISABLE;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.RING_EVENT_FLAGS_ENABLE;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.RING_EVENT_FLAGS_MASK;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.RING_EVENT_OFFSET_MASK;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.RING_EVENT_WRAP_MASK;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_AVAIL;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_INDIRECT;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_USED;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_WRITE;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VRING_BASE_OFFSET_MASK;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VRING_BASE_USED_SHIFT;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VRING_BASE_WRAP_MASK;

import io.vhostd.journal.inflight.InflightDesc;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Objects;

/**
 * The device side of one packed virtqueue (virtio 1.2 §2.8) over guest memory.
 *
 * <p>Single owner, like {@link SplitVirtqueue}: one agent thread pops, pushes, publishes and toggles notifications.
 * The guest writes the descriptor ring concurrently and everything it writes is untrusted: each descriptor field is
 * read once, offsets wrap explicitly at {@link #size()} (not necessarily a power of two), a chain is capped at the
 * queue size, and every access goes through bounds-checked segments.
 *
 * <p>Device state: the next available offset and the Driver Ring Wrap Counter it expects (initially 0 and 1), and the
 * next used offset with the Device Ring Wrap Counter (initially 0 and 1, §2.8.1). A descriptor is available when its
 * AVAIL flag equals the expected wrap counter and its USED flag differs from it.
 *
 * <p>Pop: the first descriptor's flags are read with acquire (the driver makes it available last, after the rest of
 * the chain, §2.8.6); the chain runs through the ring while VIRTQ_DESC_F_NEXT is set; the buffer id is the last
 * descriptor's (§2.8.6). Validation matches the split ring's, with the same {@link ChainError} codes, plus: an
 * indirect descriptor must be a chain of its own (INDIRECT with NEXT, or inside a NEXT-linked list: {@link
 * ChainError#NEXT_AND_INDIRECT}); a buffer id &gt;= size gives {@link ChainError#DESC_OUT_OF_RANGE} with {@code
 * head() == -1}. A chain error does not stop the walk: the rest of the chain is still consumed, so that the next pop
 * starts at the next chain, and its last descriptor (the last ring descriptor, or the last entry of the table that is
 * the whole chain) is handed to {@link DescriptorChain#lastByteLocated()} for the status byte. What breaks the ring itself (a later descriptor of the chain not available, a chain with
 * no end within {@link #size()} descriptors) throws {@link IllegalStateException} and consumes nothing.
 *
 * <p>Used descriptors: {@link #pushUsed} writes id and len at the next used offset and advances by the chain's
 * descriptor count; {@link #publishUsed()} stores the flags of the batch, the first entry last with release, so the
 * driver sees the whole batch at once (as DPDK's shadow used ring).
 *
 * <p>Notifications (§2.8.10): the device writes its Device Area as one 32-bit store (ENABLE / DISABLE, or with EVENT_IDX
 * DESC at the next available offset); it reads the Driver Area as one 32-bit load.
 */
public final class PackedVirtqueue implements Virtqueue {

    private static final ValueLayout.OfShort LE_U16 =
            ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt LE_U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Aligned le16 descriptor flags: coordinates (MemorySegment, long offset). */
    private static final VarHandle LE_U16_ATOMIC =
            ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();
    /** Aligned le32 event suppression structure (desc in the low half, flags in the high half). */
    private static final VarHandle LE_U32_ATOMIC =
            ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    private final int queueIndex;
    private final int size;
    private final GuestMemory memory;
    private final long descGpa;
    private final long driverEventGpa;
    private final long deviceEventGpa;
    private final boolean eventIdx;
    private final boolean indirectDesc;
    private final int maxSegments;
    private final MemorySegment ring;
    private final MemorySegment driverEvent;
    private final MemorySegment deviceEvent;

    private int availOffset;
    private boolean availWrap = true;
    private int usedOffset;
    private boolean usedWrap = true;

    /** Used entries whose id and len are written but whose flags wait for {@link #publishUsed()}. */
    private final int[] pendingOffset;

    private final short[] pendingFlags;
    private int pendingCount;

    /** Positions modulo 2 * size: {@link #position}. */
    private int publishedUsedPosition;

    private int signalledUsedPosition;
    private boolean signalledUsedValid;

    /**
     * @param queueIndex the virtqueue's index (for messages)
     * @param size queue size, 1..32768 (no power-of-two requirement, §2.8.10.1)
     * @param memory guest memory
     * @param descGpa guest physical address of the descriptor ring, 16-byte aligned
     * @param driverEventGpa guest physical address of the Driver Area (driver event suppression), 4-byte aligned
     * @param deviceEventGpa guest physical address of the Device Area (device event suppression), 4-byte aligned
     * @param eventIdx VIRTIO_RING_F_EVENT_IDX negotiated
     * @param maxSegments cap on a chain's segments, &gt;= 1
     * @param indirectDesc VIRTIO_RING_F_INDIRECT_DESC negotiated: accept indirect tables
     * @throws IllegalArgumentException if the size is outside [1, 32768], a part is misaligned or not inside one
     *     region, or {@code maxSegments < 1}
     */
    public PackedVirtqueue(
            int queueIndex,
            int size,
            GuestMemory memory,
            long descGpa,
            long driverEventGpa,
            long deviceEventGpa,
            boolean eventIdx,
            int maxSegments,
            boolean indirectDesc) {
        Objects.requireNonNull(memory, "memory");
        if (!PackedRingDescriptor.isValidQueueSize(size)) {
            throw new IllegalArgumentException("vq " + queueIndex + ": packed size " + size + " is not in [1, 32768]");
        }
        if (maxSegments < 1) {
            throw new IllegalArgumentException("vq " + queueIndex + ": maxSegments must be >= 1, got " + maxSegments);
        }
        this.queueIndex = queueIndex;
        this.size = size;
        this.memory = memory;
        this.descGpa = descGpa;
        this.driverEventGpa = driverEventGpa;
        this.deviceEventGpa = deviceEventGpa;
        this.eventIdx = eventIdx;
        this.indirectDesc = indirectDesc;
        this.maxSegments = maxSegments;
        // virtio 1.2 §2.8.10.1 "Structure Size and Alignment": ring 16, event suppression 4 (atomic access relies on
        // it)
        this.ring = part("descriptor ring", descGpa, PVIRTQ_DESC_ALIGN, PackedRingDescriptor.descRingLengthBytes(size));
        this.driverEvent =
                part("driver area", driverEventGpa, PVIRTQ_EVENT_SUPPRESS_ALIGN, PVIRTQ_EVENT_SUPPRESS_LENGTH_BYTES);
        this.deviceEvent =
                part("device area", deviceEventGpa, PVIRTQ_EVENT_SUPPRESS_ALIGN, PVIRTQ_EVENT_SUPPRESS_LENGTH_BYTES);
        this.pendingOffset = new int[size];
        this.pendingFlags = new short[size];
    }

    private MemorySegment part(String what, long gpa, int align, long lengthBytes) {
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

    /** Always true: a packed ring. */
    @Override
    public boolean packed() {
        return true;
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

    /** Guest physical address of the Driver Area (driver event suppression). */
    public long driverEventGpa() {
        return driverEventGpa;
    }

    /** Guest physical address of the Device Area (device event suppression). */
    public long deviceEventGpa() {
        return deviceEventGpa;
    }

    /** {@code availOffset | availWrap << 15}. */
    @Override
    public int lastAvailIdx() {
        return PackedRingDescriptor.encodeIndex(availOffset, availWrap);
    }

    /**
     * @param idx {@code offset | wrap << 15} (bits 16-31 ignored)
     * @throws IllegalArgumentException if the offset is &gt;= size
     */
    @Override
    public void lastAvailIdx(int idx) {
        int offset = checkOffset("avail", idx);
        availOffset = offset;
        availWrap = (idx & VRING_BASE_WRAP_MASK) != 0;
    }

    /** {@code usedOffset | usedWrap << 15}. */
    @Override
    public int usedIdx() {
        return PackedRingDescriptor.encodeIndex(usedOffset, usedWrap);
    }

    /**
     * @param idx {@code offset | wrap << 15} (bits 16-31 ignored)
     * @throws IllegalArgumentException if the offset is &gt;= size, or used entries are pending
     */
    @Override
    public void usedIdx(int idx) {
        int offset = checkOffset("used", idx);
        if (pendingCount != 0) {
            throw new IllegalArgumentException("vq " + queueIndex + ": used idx set with unpublished used entries");
        }
        usedOffset = offset;
        usedWrap = (idx & VRING_BASE_WRAP_MASK) != 0;
        publishedUsedPosition = position(usedOffset, usedWrap);
        signalledUsedValid = false;
    }

    private int checkOffset(String what, int idx) {
        int offset = idx & VRING_BASE_OFFSET_MASK;
        if (offset >= size) {
            throw new IllegalArgumentException(
                    "vq " + queueIndex + ": " + what + " offset " + offset + " >= queue size " + size);
        }
        return offset;
    }

    @Override
    public int vringBase() {
        return lastAvailIdx() | usedIdx() << VRING_BASE_USED_SHIFT;
    }

    /**
     * @param base vhost-user.rst "Vring descriptor indices for packed virtqueues": avail offset (bits 0-14) and wrap
     *     counter (15), used offset (16-30) and wrap counter (31)
     * @throws IllegalArgumentException if an offset is &gt;= size
     */
    @Override
    public void vringBase(int base) {
        int avail = base & 0xFFFF;
        int used = base >>> VRING_BASE_USED_SHIFT;
        checkOffset("avail", avail);
        checkOffset("used", used);
        lastAvailIdx(avail);
        usedIdx(used);
    }

    /** A used or available position as a count modulo 2 * size: lap with wrap counter 1, then lap with 0. */
    private int position(int offset, boolean wrap) {
        return wrap ? offset : size + offset;
    }

    private static boolean isAvailable(int flags, boolean wrap) {
        // §2.8.1: available = AVAIL matches the driver's wrap counter and USED does not
        return ((flags & VIRTQ_DESC_F_AVAIL) != 0) == wrap && ((flags & VIRTQ_DESC_F_USED) != 0) != wrap;
    }

    private int flagsAcquire(int offset) {
        // acquire: the driver writes addr/len/id (and the rest of the chain) before the flags that make them available
        return (short) LE_U16_ATOMIC.getAcquire(
                        ring, (long) PVIRTQ_DESC_LENGTH_BYTES * offset + PVIRTQ_DESC_FLAGS_OFFSET)
                & 0xFFFF;
    }

    /** Is the descriptor at the next available offset available? One acquire load; never throws. */
    @Override
    public boolean hasAvail() {
        return isAvailable(flagsAcquire(availOffset), availWrap);
    }

    /**
     * Takes the next available chain and translates it into {@code chain}.
     *
     * @throws IllegalStateException if a later descriptor of the chain is not available (§2.8.6: the driver makes the
     *     first one available after the rest) or the chain has no end within {@link #size()} descriptors: the ring is
     *     broken, nothing is consumed
     */
    @Override
    public int pop(DescriptorChain chain) {
        int headFlags = flagsAcquire(availOffset);
        if (!isAvailable(headFlags, availWrap)) {
            return POP_EMPTY;
        }
        chain.reset(-1);
        int limit = Math.min(maxSegments, chain.capacity());
        int error = ChainError.OK;
        int offset = availOffset;
        boolean wrap = availWrap;
        int flags = headFlags;
        int id;
        int count = 0;
        long addr;
        long len;
        while (true) {
            long d = (long) PVIRTQ_DESC_LENGTH_BYTES * offset;
            if (count > 0) {
                // plain read: ordered after the head's acquire, and the driver wrote it before the head's flags
                flags = ring.get(LE_U16, d + PVIRTQ_DESC_FLAGS_OFFSET) & 0xFFFF;
                // §2.8.6 "Note: all flags ... must be set/cleared correctly in all descriptors in the list": a stale
                // descriptor here means the chain's end is unknown; consuming on would desynchronise the ring
                if (!isAvailable(flags, wrap)) {
                    throw new IllegalStateException("vq " + queueIndex + ": descriptor " + offset + " of the chain at "
                            + availOffset + " is not available (flags 0x" + Integer.toHexString(flags) + ")");
                }
            }
            // read each untrusted field exactly once; the guest may rewrite the descriptor meanwhile
            addr = ring.get(LE_U64, d + PVIRTQ_DESC_ADDR_OFFSET);
            len = Integer.toUnsignedLong(ring.get(LE_U32, d + PVIRTQ_DESC_LEN_OFFSET));
            id = ring.get(LE_U16, d + PVIRTQ_DESC_ID_OFFSET) & 0xFFFF;
            count++;
            chain.countDescriptor(true);
            if (error == ChainError.OK) {
                // after an error the rest of the chain is still walked (its end and id), but not translated
                error = descriptor(chain, addr, len, flags, count == 1, limit);
            }
            if (++offset == size) {
                offset = 0;
                wrap = !wrap;
            }
            if ((flags & VIRTQ_DESC_F_NEXT) == 0) {
                break;
            }
            // §2.8 "Driver Requirements: Scatter-Gather Support": no list longer than the Queue Size; no end in sight
            if (count == size) {
                throw new IllegalStateException("vq " + queueIndex + ": chain at " + availOffset + " has no end within "
                        + size + " descriptors");
            }
        }
        availOffset = offset;
        availWrap = wrap;
        // the buffer id is in the last descriptor (§2.8.6); ids index per-request state, so they must be < size
        if (id >= size) {
            chain.fail(ChainError.DESC_OUT_OF_RANGE);
            return POP_MALFORMED;
        }
        chain.head(id);
        if (error != ChainError.OK) {
            // the walk read the chain's last ring descriptor (addr, len, flags): its status byte for the answer
            locateLastDescriptor(chain, addr, len, flags, count == 1);
            chain.fail(error);
            return POP_MALFORMED;
        }
        return POP_OK;
    }

    /**
     * The {@code addr} of the ring descriptor at {@code offset}, as the guest wrote it (for the inflight region's
     * descriptor copies; untrusted).
     *
     * @throws IndexOutOfBoundsException if the offset is outside the ring
     */
    public long ringDescAddr(int offset) {
        return ring.get(LE_U64, ringDesc(offset) + PVIRTQ_DESC_ADDR_OFFSET);
    }

    /** The {@code len} (u32) of the ring descriptor at {@code offset} ({@link #ringDescAddr}). */
    public int ringDescLen(int offset) {
        return ring.get(LE_U32, ringDesc(offset) + PVIRTQ_DESC_LEN_OFFSET);
    }

    /** The {@code id} (u16) of the ring descriptor at {@code offset} ({@link #ringDescAddr}). */
    public int ringDescId(int offset) {
        return ring.get(LE_U16, ringDesc(offset) + PVIRTQ_DESC_ID_OFFSET) & 0xFFFF;
    }

    /** The {@code flags} (u16) of the ring descriptor at {@code offset}, one acquire load ({@link #ringDescAddr}). */
    public int ringDescFlags(int offset) {
        ringDesc(offset);
        return flagsAcquire(offset);
    }

    private long ringDesc(int offset) {
        if (offset < 0 || offset >= size) {
            throw new IndexOutOfBoundsException("vq " + queueIndex + ": ring offset " + offset + " of " + size);
        }
        return (long) PVIRTQ_DESC_LENGTH_BYTES * offset;
    }

    /**
     * Translates a chain from descriptor copies (the inflight region's, vhost-user.rst "Inflight I/O tracking": a
     * request a dead back-end left in flight), as {@link #pop} would have translated the same descriptors from the
     * ring. The ring positions do not move. The copies are untrusted: every check of {@link #pop} applies.
     *
     * @param copies the chain's descriptors in ring order
     * @param chain reused result
     * @return {@link #POP_OK} or {@link #POP_MALFORMED} ({@code chain.head()} is the id, or -1 if out of range)
     */
    public int popCopies(List<InflightDesc> copies, DescriptorChain chain) {
        chain.reset(-1);
        if (copies.isEmpty() || copies.size() > size) {
            chain.fail(ChainError.DESC_OUT_OF_RANGE);
            return POP_MALFORMED;
        }
        int limit = Math.min(maxSegments, chain.capacity());
        int error = ChainError.OK;
        for (int k = 0; k < copies.size(); k++) {
            InflightDesc d = copies.get(k);
            chain.countDescriptor(true);
            if (error != ChainError.OK) {
                continue;
            }
            if (((d.flags() & VIRTQ_DESC_F_NEXT) == 0) != (k == copies.size() - 1)) {
                // the copies end where NEXT says, and nowhere else
                error = ChainError.DESC_OUT_OF_RANGE;
                continue;
            }
            error = descriptor(chain, d.addr(), Integer.toUnsignedLong(d.len()), d.flags(), k == 0, limit);
        }
        // the buffer id is in the last descriptor (§2.8.6)
        int id = copies.getLast().id();
        if (id >= size) {
            chain.fail(ChainError.DESC_OUT_OF_RANGE);
            return POP_MALFORMED;
        }
        chain.head(id);
        if (error != ChainError.OK) {
            // the copies end where NEXT says (checked again: the loop stopped checking at the error), else the chain's
            // end is unknown
            int last = copies.size() - 1;
            for (int k = 0; k <= last; k++) {
                if (((copies.get(k).flags() & VIRTQ_DESC_F_NEXT) == 0) != (k == last)) {
                    chain.fail(error);
                    return POP_MALFORMED;
                }
            }
            InflightDesc d = copies.get(last);
            locateLastDescriptor(chain, d.addr(), Integer.toUnsignedLong(d.len()), d.flags(), last == 0);
            chain.fail(error);
            return POP_MALFORMED;
        }
        return POP_OK;
    }

    /**
     * Error path of {@link #pop} and {@link #popCopies}: finds the last descriptor of a malformed chain whose last ring
     * descriptor is ({@code addr}, {@code len}, {@code flags}) and hands it to {@link DescriptorChain#lastDescriptor}.
     * A buffer is the last descriptor itself; an indirect descriptor that is the whole chain ({@code only}) refers to a
     * table whose last entry is the chain's last descriptor, if the table passes {@link #descriptor}'s checks and that
     * entry is not itself a table (§2.8.7: NEXT is ignored in a table, so its last entry ends it). Anything else (an
     * indirect descriptor inside a list, a bad table) locates nothing. Reads the one table entry once; allocates
     * nothing, writes nothing.
     */
    private void locateLastDescriptor(DescriptorChain chain, long addr, long len, int flags, boolean only) {
        if ((flags & VIRTQ_DESC_F_INDIRECT) == 0) {
            chain.lastDescriptor(memory, addr, len, (flags & VIRTQ_DESC_F_WRITE) != 0);
            return;
        }
        if (!indirectDesc || !only) {
            return;
        }
        int region = IndirectTable.region(memory, addr, len, PVIRTQ_DESC_LENGTH_BYTES, size);
        if (region < 0) {
            return;
        }
        GuestMemoryRegion r = memory.region(region);
        long d = addr - r.guestPhysAddr() + len - PVIRTQ_DESC_LENGTH_BYTES;
        MemorySegment table = r.mapping();
        long entryAddr = table.get(LE_U64, d + PVIRTQ_DESC_ADDR_OFFSET);
        long entryLen = Integer.toUnsignedLong(table.get(LE_U32, d + PVIRTQ_DESC_LEN_OFFSET));
        int entryFlags = table.get(LE_U16, d + PVIRTQ_DESC_FLAGS_OFFSET) & 0xFFFF;
        if ((entryFlags & VIRTQ_DESC_F_INDIRECT) != 0) {
            return;
        }
        chain.lastDescriptor(memory, entryAddr, entryLen, (entryFlags & VIRTQ_DESC_F_WRITE) != 0);
    }

    /** Translates one ring descriptor: a buffer, or an indirect table (only as a chain of its own). */
    private int descriptor(DescriptorChain chain, long addr, long len, int flags, boolean first, int limit) {
        if ((flags & VIRTQ_DESC_F_INDIRECT) == 0) {
            return buffer(chain, addr, len, (flags & VIRTQ_DESC_F_WRITE) != 0, limit);
        }
        if (!indirectDesc) {
            return ChainError.INDIRECT_NOT_NEGOTIATED;
        }
        // §2.8 "Driver Requirements: Indirect Descriptors": "A driver MUST NOT write direct descriptors with
        // DESC_F_INDIRECT set in a scatter-gather list linked by VIRTQ_DESC_F_NEXT": an indirect descriptor is the
        // chain
        if (!first || (flags & VIRTQ_DESC_F_NEXT) != 0) {
            return ChainError.NEXT_AND_INDIRECT;
        }
        // whole entries only, at most queue size of them (no list longer than the queue size)
        int region = IndirectTable.region(memory, addr, len, PVIRTQ_DESC_LENGTH_BYTES, size);
        if (region < 0) {
            return ChainError.BAD_INDIRECT_TABLE;
        }
        chain.markIndirect();
        // §2.8.7: the WRITE flag of the descriptor that refers to a table is ignored
        GuestMemoryRegion r = memory.region(region);
        MemorySegment table = r.mapping();
        long base = addr - r.guestPhysAddr();
        int entries = (int) (len / PVIRTQ_DESC_LENGTH_BYTES);
        for (int i = 0; i < entries; i++) {
            long d = base + (long) PVIRTQ_DESC_LENGTH_BYTES * i;
            long entryAddr = table.get(LE_U64, d + PVIRTQ_DESC_ADDR_OFFSET);
            long entryLen = Integer.toUnsignedLong(table.get(LE_U32, d + PVIRTQ_DESC_LEN_OFFSET));
            int entryFlags = table.get(LE_U16, d + PVIRTQ_DESC_FLAGS_OFFSET) & 0xFFFF;
            chain.countDescriptor(false);
            // §2.8.7: WRITE is the only valid flag in a table; NEXT, AVAIL, USED and the id are ignored, but a table
            // inside a table is refused as on a split ring
            if ((entryFlags & VIRTQ_DESC_F_INDIRECT) != 0) {
                return ChainError.NESTED_INDIRECT;
            }
            int error = buffer(chain, entryAddr, entryLen, (entryFlags & VIRTQ_DESC_F_WRITE) != 0, limit);
            if (error != ChainError.OK) {
                return error;
            }
        }
        return ChainError.OK;
    }

    private int buffer(DescriptorChain chain, long addr, long len, boolean writable, int limit) {
        // as QEMU / libvhost-user virtqueue_map_desc: "zero sized buffers are not allowed"
        if (len == 0) {
            return ChainError.ZERO_LENGTH;
        }
        // §2.8 "Driver Requirements: Scatter-Gather Support": device-writable elements after device-readable ones
        if (!writable && chain.hasWritable()) {
            return ChainError.WRITABLE_BEFORE_READABLE;
        }
        return chain.addBuffer(memory, addr, len, writable, limit);
    }

    @Override
    public void pushUsed(int id, int writtenBytes, int descriptorCount) {
        if (id < 0 || id >= size) {
            throw new IllegalArgumentException("vq " + queueIndex + ": used id " + id + " out of [0, " + size + ")");
        }
        if (descriptorCount < 1 || descriptorCount > size) {
            throw new IllegalArgumentException(
                    "vq " + queueIndex + ": descriptor count " + descriptorCount + " out of [1, " + size + "]");
        }
        if (pendingCount == size) {
            throw new IllegalStateException("vq " + queueIndex + ": more than " + size + " unpublished used entries");
        }
        long d = (long) PVIRTQ_DESC_LENGTH_BYTES * usedOffset;
        ring.set(LE_U16, d + PVIRTQ_DESC_ID_OFFSET, (short) id);
        ring.set(LE_U32, d + PVIRTQ_DESC_LEN_OFFSET, writtenBytes);
        // §2.8.1: a used descriptor has AVAIL and USED both equal to the Device Ring Wrap Counter; §2.8.3: WRITE says
        // the device wrote into the buffer (len is reserved otherwise)
        int flags =
                (usedWrap ? VIRTQ_DESC_F_AVAIL | VIRTQ_DESC_F_USED : 0) | (writtenBytes != 0 ? VIRTQ_DESC_F_WRITE : 0);
        pendingOffset[pendingCount] = usedOffset;
        pendingFlags[pendingCount] = (short) flags;
        pendingCount++;
        // §2.8.6: the device skips forward by the number of descriptors in the chain
        usedOffset += descriptorCount;
        if (usedOffset >= size) {
            usedOffset -= size;
            usedWrap = !usedWrap;
        }
    }

    @Override
    public void publishUsed() {
        int n = pendingCount;
        if (n == 0) {
            return;
        }
        // release fence: the id/len of every pending entry, and the data and status written into the buffers, before
        // any of the flags stores below (the driver reads the rest of a used descriptor after its flags)
        VarHandle.releaseFence();
        for (int i = n - 1; i >= 1; i--) {
            ring.set(
                    LE_U16,
                    (long) PVIRTQ_DESC_LENGTH_BYTES * pendingOffset[i] + PVIRTQ_DESC_FLAGS_OFFSET,
                    pendingFlags[i]);
        }
        // release: the first entry of the batch last, so the driver (which polls only its next used offset) sees the
        // whole batch at once
        LE_U16_ATOMIC.setRelease(
                ring, (long) PVIRTQ_DESC_LENGTH_BYTES * pendingOffset[0] + PVIRTQ_DESC_FLAGS_OFFSET, pendingFlags[0]);
        pendingCount = 0;
        publishedUsedPosition = position(usedOffset, usedWrap);
    }

    /**
     * After {@link #publishUsed()}: must the device notify the driver? The Driver Area says ENABLE (yes), DISABLE (no),
     * or with EVENT_IDX DESC: yes if the used position passed the event offset/wrap since the previous check (as
     * DPDK's {@code vhost_vring_call_packed}; the first check after construction or {@link #usedIdx(int)} answers
     * true). An event offset &gt;= size answers true (a lost interrupt is worse than a spurious one).
     */
    @Override
    public boolean needsNotification() {
        // full fence, store-load: our used flags must be visible before we read the driver's event suppression;
        // otherwise the driver may miss the new used entry, enable events and sleep, while we read its stale DISABLE
        VarHandle.fullFence();
        int word = (int) LE_U32_ATOMIC.getAcquire(driverEvent, 0L);
        int flags = (word >>> 16) & RING_EVENT_FLAGS_MASK;
        if (!eventIdx) {
            return flags != RING_EVENT_FLAGS_DISABLE;
        }
        boolean valid = signalledUsedValid;
        int old = signalledUsedPosition;
        signalledUsedValid = true;
        signalledUsedPosition = publishedUsedPosition;
        if (flags != RING_EVENT_FLAGS_DESC) {
            return flags != RING_EVENT_FLAGS_DISABLE;
        }
        if (!valid) {
            return true;
        }
        int offWrap = word & 0xFFFF;
        int off = offWrap & RING_EVENT_OFFSET_MASK;
        if (off >= size) {
            return true;
        }
        int event = position(off, (offWrap & RING_EVENT_WRAP_MASK) != 0);
        int twoLaps = 2 * size;
        int now = publishedUsedPosition;
        // vring_need_event over positions modulo 2 * size: is the event position in [old, now)?
        return Math.floorMod(now - event - 1, twoLaps) < Math.floorMod(now - old, twoLaps);
    }

    /**
     * Enables guest kicks: with EVENT_IDX, Device Area = DESC at the next available offset and wrap counter (a kick
     * when that descriptor is made available), else ENABLE. One 32-bit store (the driver reads the structure as one).
     */
    @Override
    public boolean enableNotifications() {
        int word = eventIdx
                ? RING_EVENT_FLAGS_DESC << 16 | PackedRingDescriptor.encodeIndex(availOffset, availWrap)
                : RING_EVENT_FLAGS_ENABLE << 16;
        LE_U32_ATOMIC.set(deviceEvent, 0L, word);
        // full fence, store-load: the Device Area must be visible before we look at the next descriptor again; else a
        // driver that made one available after our last look still saw DISABLE, did not kick, and we would sleep on it
        VarHandle.fullFence();
        return hasAvail();
    }

    /** Disables guest kicks while the caller polls: Device Area = DISABLE. */
    @Override
    public void disableNotifications() {
        LE_U32_ATOMIC.set(deviceEvent, 0L, RING_EVENT_FLAGS_DISABLE << 16);
    }

    @Override
    public String toString() {
        return "PackedVirtqueue[" + queueIndex + ", size=" + size + ", avail=" + availOffset + "/" + (availWrap ? 1 : 0)
                + ", used=" + usedOffset + "/" + (usedWrap ? 1 : 0) + ", eventIdx=" + eventIdx + "]";
    }
}
