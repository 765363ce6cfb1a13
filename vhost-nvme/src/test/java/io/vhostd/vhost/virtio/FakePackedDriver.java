package io.vhostd.vhost.virtio;

import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_AVAIL;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_INDIRECT;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_USED;
import static io.vhostd.vhost.virtio.PackedRingDescriptor.VIRTQ_DESC_F_WRITE;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * A packed-ring guest driver for tests (virtio 1.2 §2.8 "Supplying Buffers to The Device", "Receiving Used Buffers"),
 * on the memory of a {@link FakeGuest}: the descriptor ring where the split table would be, the Driver Area at the
 * split avail ring's address, the Device Area at the split used ring's address. Single-threaded: the device runs in
 * the same thread, so plain accesses are enough.
 */
final class FakePackedDriver {

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    final FakeGuest g;
    final int size;
    final long ringGpa;
    final long driverAreaGpa;
    final long deviceAreaGpa;
    /** Descriptors per outstanding buffer id (the driver's "sgs[id]"), -1 if free. */
    final int[] descriptorsOf;

    int nextAvail;
    boolean availWrap = true;
    int nextUsed;
    boolean usedWrap = true;
    int freeDescriptors;
    private int nextId;

    FakePackedDriver(FakeGuest g) {
        this.g = g;
        this.size = g.size;
        this.ringGpa = g.descGpa;
        this.driverAreaGpa = g.availGpa;
        this.deviceAreaGpa = g.usedGpa;
        this.descriptorsOf = new int[size];
        java.util.Arrays.fill(descriptorsOf, -1);
        this.freeDescriptors = size;
    }

    PackedVirtqueue queue(boolean eventIdx, int maxSegments) {
        return queue(eventIdx, maxSegments, true);
    }

    PackedVirtqueue queue(boolean eventIdx, int maxSegments, boolean indirect) {
        return new PackedVirtqueue(
                0, size, g.memory(), ringGpa, driverAreaGpa, deviceAreaGpa, eventIdx, maxSegments, indirect);
    }

    MemorySegment desc(int offset) {
        return g.at(ringGpa + 16L * offset, 16);
    }

    /** AVAIL = wrap, USED = !wrap: "available" in the lap of {@code wrap}. */
    static int availFlags(boolean wrap) {
        return (wrap ? VIRTQ_DESC_F_AVAIL : 0) | (wrap ? 0 : VIRTQ_DESC_F_USED);
    }

    void writeDesc(int offset, long addr, int len, int id, int flags) {
        MemorySegment d = desc(offset);
        d.set(U64, 0, addr);
        d.set(U32, 8, len);
        d.set(U16, 12, (short) id);
        d.set(U16, 14, (short) flags);
    }

    int takeId() {
        for (int i = 0; i < size; i++) {
            int id = (nextId + i) % size;
            if (descriptorsOf[id] < 0) {
                nextId = (id + 1) % size;
                return id;
            }
        }
        throw new IllegalStateException("test bug: no free buffer id");
    }

    /**
     * Makes a direct chain available (§2.8 "Supplying Buffers to The Device"): the descriptors after the first, then the first's flags last. The id
     * goes only in the last descriptor; the others get 0xFFFF (the device must take the last one's).
     */
    int add(FakeGuest.Buf... bufs) {
        int id = takeId();
        addWithId(id, bufs);
        return id;
    }

    void addWithId(int id, FakeGuest.Buf... bufs) {
        if (bufs.length > freeDescriptors) {
            throw new IllegalStateException("test bug: ring full");
        }
        int first = nextAvail;
        int firstFlags = 0;
        for (int i = 0; i < bufs.length; i++) {
            boolean last = i == bufs.length - 1;
            int flags = (bufs[i].writable() ? VIRTQ_DESC_F_WRITE : 0)
                    | (last ? 0 : VIRTQ_DESC_F_NEXT)
                    | availFlags(availWrap);
            if (i == 0) {
                firstFlags = flags;
                writeDesc(nextAvail, bufs[i].gpa(), bufs[i].len(), last ? id : 0xFFFF, 0);
                // keep the first descriptor unavailable until the rest is written
                desc(nextAvail).set(U16, 14, (short) availFlags(!availWrap));
            } else {
                writeDesc(nextAvail, bufs[i].gpa(), bufs[i].len(), last ? id : 0xFFFF, flags);
            }
            advanceAvail();
        }
        descriptorsOf[id] = bufs.length;
        freeDescriptors -= bufs.length;
        desc(first).set(U16, 14, (short) firstFlags);
    }

    /** One ring descriptor referring to an indirect table of {@code bufs}; returns the id. */
    int addIndirect(FakeGuest.Buf... bufs) {
        long table = g.alloc(16 * bufs.length);
        MemorySegment t = g.at(table, 16L * bufs.length);
        for (int i = 0; i < bufs.length; i++) {
            t.set(U64, 16L * i, bufs[i].gpa());
            t.set(U32, 16L * i + 8, bufs[i].len());
            t.set(U16, 16L * i + 12, (short) 0x7777);
            t.set(U16, 16L * i + 14, (short) (bufs[i].writable() ? VIRTQ_DESC_F_WRITE : 0));
        }
        return addRaw(table, 16 * bufs.length, VIRTQ_DESC_F_INDIRECT);
    }

    /** Writes an indirect table of raw entries (addr, len, flags); returns its guest physical address. */
    long rawTable(long[][] entries) {
        long table = g.alloc(16 * entries.length);
        MemorySegment t = g.at(table, 16L * entries.length);
        for (int i = 0; i < entries.length; i++) {
            t.set(U64, 16L * i, entries[i][0]);
            t.set(U32, 16L * i + 8, (int) entries[i][1]);
            t.set(U16, 16L * i + 14, (short) entries[i][2]);
        }
        return table;
    }

    /** One ring descriptor with these fields (and the lap's AVAIL/USED bits) made available; returns its id. */
    int addRaw(long addr, int len, int flags) {
        int id = takeId();
        writeDesc(nextAvail, addr, len, id, flags | availFlags(availWrap));
        descriptorsOf[id] = 1;
        freeDescriptors--;
        advanceAvail();
        return id;
    }

    private void advanceAvail() {
        if (++nextAvail == size) {
            nextAvail = 0;
            availWrap = !availWrap;
        }
    }

    /** Is the descriptor at the driver's next used offset used (§2.8.1)? */
    boolean hasUsed() {
        int flags = desc(nextUsed).get(U16, 14) & 0xFFFF;
        return ((flags & VIRTQ_DESC_F_USED) != 0) == usedWrap && ((flags & VIRTQ_DESC_F_AVAIL) != 0) == usedWrap;
    }

    /** A used element as the driver sees it. */
    record Used(int id, int len, int flags) {}

    /** Takes the next used element and skips the chain's descriptors (§2.8 "Receiving Used Buffers From The Device"). */
    Used takeUsed() {
        if (!hasUsed()) {
            throw new AssertionError("no used descriptor at " + nextUsed + " (wrap " + usedWrap + ")");
        }
        MemorySegment d = desc(nextUsed);
        Used u = new Used(d.get(U16, 12) & 0xFFFF, d.get(U32, 8), d.get(U16, 14) & 0xFFFF);
        int sgs = descriptorsOf[u.id()];
        if (sgs < 0) {
            throw new AssertionError("id " + u.id() + " used but not outstanding");
        }
        descriptorsOf[u.id()] = -1;
        freeDescriptors += sgs;
        nextUsed += sgs;
        if (nextUsed >= size) {
            nextUsed -= size;
            usedWrap = !usedWrap;
        }
        return u;
    }

    /** Writes the Driver Area: flags and, for DESC, the event offset and wrap counter. */
    void driverEvent(int flags, int offset, boolean wrap) {
        MemorySegment m = g.at(driverAreaGpa, 4);
        m.set(U16, 0, (short) (offset | (wrap ? 0x8000 : 0)));
        m.set(U16, 2, (short) flags);
    }

    int deviceEventFlags() {
        return g.at(deviceAreaGpa, 4).get(U16, 2) & 0xFFFF;
    }

    int deviceEventDesc() {
        return g.at(deviceAreaGpa, 4).get(U16, 0) & 0xFFFF;
    }
}
