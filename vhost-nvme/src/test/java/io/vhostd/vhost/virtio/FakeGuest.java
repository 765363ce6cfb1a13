package io.vhostd.vhost.virtio;

import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_INDIRECT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_WRITE;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * A tiny guest driver for tests: lays out a split virtqueue and buffers in guest memory made of one or two regions
 * (contiguous in guest physical address space, not in the backing), adds chains, reads used elements.
 *
 * <p>Backing layout: {@code guard | region 0 | guard | region 1 | guard}; the guards hold a pattern so that a test
 * can check that nothing outside the regions was written ({@link #snapshot()}).
 */
final class FakeGuest implements AutoCloseable {

    static final long REGION0_GPA = 0x10_0000;
    static final long REGION_SIZE = 0x10_0000;
    static final long REGION1_GPA = REGION0_GPA + REGION_SIZE;
    static final long END_GPA = REGION1_GPA + REGION_SIZE;
    static final int REGION0_ID = 10;
    static final int REGION1_ID = 11;
    static final long REGION0_UVA = 0x7f00_0000_0000L;
    static final long REGION1_UVA = 0x7f00_1000_0000L;
    private static final long GUARD = 0x1000;
    private static final long REGION0_BACKING = GUARD;
    private static final long REGION1_BACKING = GUARD + REGION_SIZE + GUARD;
    private static final byte GUARD_PATTERN = (byte) 0xA5;

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** One buffer of a chain, as the driver describes it. */
    record Buf(long gpa, int len, boolean writable) {
        static Buf r(long gpa, int len) {
            return new Buf(gpa, len, false);
        }

        static Buf w(long gpa, int len) {
            return new Buf(gpa, len, true);
        }
    }

    private final Arena arena = Arena.ofConfined();
    private final MemorySegment backing;
    private final GuestMemory memory;
    final int size;
    final long descGpa;
    final long availGpa;
    final long usedGpa;
    private long next0;
    private long next1;
    private int nextDesc;
    private int availIdx;

    FakeGuest(int size, boolean twoRegions) {
        this.size = size;
        backing = arena.allocate(REGION1_BACKING + REGION_SIZE + GUARD, 4096);
        backing.fill(GUARD_PATTERN);
        backing.asSlice(REGION0_BACKING, REGION_SIZE).fill((byte) 0);
        backing.asSlice(REGION1_BACKING, REGION_SIZE).fill((byte) 0);
        List<GuestMemoryRegion> regions = new ArrayList<>();
        regions.add(new GuestMemoryRegion(
                REGION0_ID,
                REGION0_GPA,
                REGION_SIZE,
                REGION0_UVA,
                0,
                -1,
                backing.asSlice(REGION0_BACKING, REGION_SIZE)));
        if (twoRegions) {
            regions.add(new GuestMemoryRegion(
                    REGION1_ID,
                    REGION1_GPA,
                    REGION_SIZE,
                    REGION1_UVA,
                    0,
                    -1,
                    backing.asSlice(REGION1_BACKING, REGION_SIZE)));
        }
        memory = new GuestMemory(regions);
        descGpa = REGION0_GPA;
        availGpa = descGpa + 16L * size;
        usedGpa = align(availGpa + 6 + 2L * size, 4096);
        next0 = align(usedGpa + 6 + 8L * size, 4096);
        next1 = REGION1_GPA;
    }

    static long align(long v, long a) {
        return (v + a - 1) & -a;
    }

    GuestMemory memory() {
        return memory;
    }

    SplitVirtqueue queue(boolean eventIdx, int maxSegments) {
        return new SplitVirtqueue(0, size, memory, descGpa, availGpa, usedGpa, eventIdx, maxSegments);
    }

    /** Allocates {@code len} bytes in region 0 (16-byte aligned). */
    long alloc(int len) {
        long gpa = next0;
        next0 = align(next0 + len, 16);
        if (next0 > REGION1_GPA) {
            throw new IllegalStateException("region 0 full");
        }
        return gpa;
    }

    /** Allocates {@code len} bytes in region 1 (16-byte aligned). */
    long alloc1(int len) {
        long gpa = next1;
        next1 = align(next1 + len, 16);
        return gpa;
    }

    private long backingOffset(long gpa, long len) {
        if (gpa >= REGION0_GPA && gpa + len <= REGION1_GPA) {
            return REGION0_BACKING + (gpa - REGION0_GPA);
        }
        if (gpa >= REGION1_GPA && gpa + len <= END_GPA) {
            return REGION1_BACKING + (gpa - REGION1_GPA);
        }
        throw new IllegalArgumentException("test bug: 0x" + Long.toHexString(gpa) + "+" + len + " not in one region");
    }

    MemorySegment at(long gpa, long len) {
        return backing.asSlice(backingOffset(gpa, len), len);
    }

    /** Writes bytes, splitting across the region boundary if needed. */
    void write(long gpa, byte[] bytes) {
        for (int i = 0; i < bytes.length; i++) {
            at(gpa + i, 1).set(ValueLayout.JAVA_BYTE, 0, bytes[i]);
        }
    }

    byte[] read(long gpa, int len) {
        byte[] out = new byte[len];
        for (int i = 0; i < len; i++) {
            out[i] = at(gpa + i, 1).get(ValueLayout.JAVA_BYTE, 0);
        }
        return out;
    }

    byte readByte(long gpa) {
        return at(gpa, 1).get(ValueLayout.JAVA_BYTE, 0);
    }

    /** Writes a virtio-blk request header ({@code struct virtio_blk_req} head). */
    void writeBlkHeader(long gpa, int type, long sector) {
        byte[] h = new byte[16];
        MemorySegment m = MemorySegment.ofArray(h);
        m.set(U32, 0, type);
        m.set(U32, 4, 0);
        m.set(U64, 8, sector);
        write(gpa, h);
    }

    void writeDesc(MemorySegment table, int index, long addr, int len, int flags, int next) {
        long d = 16L * index;
        table.set(U64, d, addr);
        table.set(U32, d + 8, len);
        table.set(U16, d + 12, (short) flags);
        table.set(U16, d + 14, (short) next);
    }

    /** Writes descriptor {@code index} of the queue's table. */
    void writeDesc(int index, long addr, int len, int flags, int next) {
        writeDesc(at(descGpa, 16L * size), index, addr, len, flags, next);
    }

    private int takeDesc() {
        int d = nextDesc;
        nextDesc = (nextDesc + 1) % size;
        return d;
    }

    /** Adds a direct chain and makes it available; returns its head. */
    int addChain(Buf... bufs) {
        int head = writeChain(bufs);
        publish(head);
        return head;
    }

    /** Writes a direct chain into the descriptor table without making it available; returns its head. */
    int writeChain(Buf... bufs) {
        int[] idx = new int[bufs.length];
        for (int i = 0; i < bufs.length; i++) {
            idx[i] = takeDesc();
        }
        for (int i = 0; i < bufs.length; i++) {
            boolean more = i + 1 < bufs.length;
            int flags = (bufs[i].writable() ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0);
            writeDesc(idx[i], bufs[i].gpa(), bufs[i].len(), flags, more ? idx[i + 1] : 0);
        }
        return idx[0];
    }

    /** Writes an indirect table in guest memory holding {@code bufs}; returns its guest physical address. */
    long writeIndirectTable(Buf... bufs) {
        long table = alloc(16 * bufs.length);
        MemorySegment t = at(table, 16L * bufs.length);
        for (int i = 0; i < bufs.length; i++) {
            boolean more = i + 1 < bufs.length;
            int flags = (bufs[i].writable() ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0);
            writeDesc(t, i, bufs[i].gpa(), bufs[i].len(), flags, more ? i + 1 : 0);
        }
        return table;
    }

    /** Adds a chain of one indirect descriptor referring to a table of {@code bufs}; returns its head. */
    int addIndirectChain(Buf... bufs) {
        long table = writeIndirectTable(bufs);
        int head = takeDesc();
        writeDesc(head, table, 16 * bufs.length, VIRTQ_DESC_F_INDIRECT, 0);
        publish(head);
        return head;
    }

    /** Puts {@code head} in the next avail ring slot and publishes avail->idx. */
    void publish(int head) {
        MemorySegment avail = at(availGpa, 6 + 2L * size);
        avail.set(U16, 4 + 2L * (availIdx & (size - 1)), (short) head);
        availIdx = (availIdx + 1) & 0xFFFF;
        avail.set(U16, 2, (short) availIdx);
    }

    /** Sets the driver's avail idx (both the shadow and avail->idx in memory). */
    void availIdx(int idx) {
        availIdx = idx & 0xFFFF;
        at(availGpa, 4).set(U16, 2, (short) availIdx);
    }

    int availIdx() {
        return availIdx;
    }

    void availFlags(int flags) {
        at(availGpa, 2).set(U16, 0, (short) flags);
    }

    void usedEvent(int idx) {
        at(availGpa + 4 + 2L * size, 2).set(U16, 0, (short) idx);
    }

    int usedIdx() {
        return at(usedGpa, 4).get(U16, 2) & 0xFFFF;
    }

    int usedFlags() {
        return at(usedGpa, 2).get(U16, 0) & 0xFFFF;
    }

    int availEvent() {
        return at(usedGpa + 4 + 8L * size, 2).get(U16, 0) & 0xFFFF;
    }

    /** {@code id} of used element at ring counter {@code idx}. */
    int usedId(int idx) {
        return at(usedGpa + 4 + 8L * (idx & (size - 1)), 8).get(U32, 0);
    }

    /** {@code len} of used element at ring counter {@code idx}. */
    int usedLen(int idx) {
        return at(usedGpa + 4 + 8L * (idx & (size - 1)), 8).get(U32, 4);
    }

    /** A copy of the whole backing: guards and both regions. */
    byte[] snapshot() {
        return backing.toArray(ValueLayout.JAVA_BYTE);
    }

    /** Index in {@link #snapshot()} of guest physical address {@code gpa}. */
    int snapshotIndex(long gpa) {
        return (int) backingOffset(gpa, 1);
    }

    @Override
    public void close() {
        arena.close();
    }
}
