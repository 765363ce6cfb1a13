package io.vhostd.slave;

import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_INDIRECT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_WRITE;

import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.vhost.virtio.GuestMemory;
import io.vhostd.vhost.virtio.GuestMemoryRegion;
import io.vhostd.vhost.virtio.PackedRingDescriptor;
import io.vhostd.vhost.virtio.PackedVirtqueue;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.List;

/**
 * A small guest driver for tests of the slave's data path, after vhost-nvme's test {@code FakeGuest}: guest memory
 * is one region in a memfd (so the master's {@code RegionTable} can map it too), split and packed virtqueues are laid
 * out in it, chains are added and published with release stores (the device runs on another thread), used elements
 * are read with acquire loads.
 */
final class TestGuest implements AutoCloseable {
    /** Guest physical address of the region's first byte (not 0: translation is exercised). */
    static final long REGION_GPA = 0x4000_0000L;
    /** Front-end virtual address of the region (unused by the data path). */
    static final long REGION_UVA = 0x7f00_0000_0000L;

    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Aligned le16 ring index, for acquire / release: coordinates (MemorySegment, long offset). */
    private static final VarHandle U16_ATOMIC =
            ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    /** One buffer of a chain. */
    record Buf(long gpa, int len, boolean writable) {
        static Buf r(long gpa, int len) {
            return new Buf(gpa, len, false);
        }

        static Buf w(long gpa, int len) {
            return new Buf(gpa, len, true);
        }
    }

    private final Arena arena = Arena.ofShared();
    private final int fd;
    private final long sizeBytes;
    private final MemorySegment mapping;
    private final GuestMemory memory;
    private long next;

    /**
     * @param regionId the region id the slave names the region by in VirtNvme commands
     * @param sizeBytes the region's size, a multiple of 4096
     */
    TestGuest(int regionId, long sizeBytes) {
        this.sizeBytes = sizeBytes;
        fd = Memfd.memfd_create("test-guest", Memfd.MFD_CLOEXEC);
        Unistd.ftruncate(fd, sizeBytes);
        mapping = Mman.mmap(sizeBytes, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, fd, 0, arena);
        memory = new GuestMemory(
                List.of(new GuestMemoryRegion(regionId, REGION_GPA, sizeBytes, REGION_UVA, 0, fd, mapping)));
        next = REGION_GPA;
    }

    /** The region's memfd (the test passes a dup to the master's region table). */
    int fd() {
        return fd;
    }

    long sizeBytes() {
        return sizeBytes;
    }

    GuestMemory memory() {
        return memory;
    }

    /** Allocates {@code len} bytes aligned to {@code align} (a power of two). */
    long alloc(long len, long align) {
        long gpa = (next + align - 1) & -align;
        next = gpa + len;
        if (next > REGION_GPA + sizeBytes) {
            throw new IllegalStateException("test bug: guest memory full");
        }
        return gpa;
    }

    MemorySegment at(long gpa, long len) {
        return mapping.asSlice(gpa - REGION_GPA, len);
    }

    void write(long gpa, byte[] bytes) {
        MemorySegment.copy(bytes, 0, mapping, ValueLayout.JAVA_BYTE, gpa - REGION_GPA, bytes.length);
    }

    byte[] read(long gpa, int len) {
        return at(gpa, len).toArray(ValueLayout.JAVA_BYTE);
    }

    byte readByte(long gpa) {
        return mapping.get(ValueLayout.JAVA_BYTE, gpa - REGION_GPA);
    }

    void writeByte(long gpa, byte value) {
        mapping.set(ValueLayout.JAVA_BYTE, gpa - REGION_GPA, value);
    }

    /** Writes a virtio-blk request header ({@code struct virtio_blk_outhdr}): type, reserved, sector. */
    void writeBlkHeader(long gpa, int type, long sector) {
        MemorySegment h = at(gpa, 16);
        h.set(U32, 0, type);
        h.set(U32, 4, 0);
        h.set(U64, 8, sector);
    }

    /** Lays out a split virtqueue of {@code size} entries (with room for the event-idx fields). */
    Ring ring(int queueIndex, int size) {
        return new Ring(queueIndex, size);
    }

    /** Lays out a packed virtqueue of {@code size} entries (any size in 1..32768). */
    PackedRing packedRing(int queueIndex, int size) {
        return new PackedRing(queueIndex, size);
    }

    @Override
    public void close() {
        arena.close();
        Unistd.close(fd);
    }

    /** One split virtqueue, driven as a guest driver drives it. */
    final class Ring {
        final int queueIndex;
        final int size;
        final long descGpa;
        final long availGpa;
        final long usedGpa;
        private int nextDesc;
        private int availIdx;

        private Ring(int queueIndex, int size) {
            this.queueIndex = queueIndex;
            this.size = size;
            descGpa = alloc(16L * size, 4096);
            availGpa = alloc(6 + 2L * size, 4096);
            usedGpa = alloc(6 + 8L * size, 4096);
        }

        /** The device side of this ring over the guest memory. */
        SplitVirtqueue queue(boolean eventIdx, int maxSegments) {
            return new SplitVirtqueue(queueIndex, size, memory, descGpa, availGpa, usedGpa, eventIdx, maxSegments);
        }

        void writeDesc(MemorySegment table, int index, long addr, int len, int flags, int next) {
            long d = 16L * index;
            table.set(U64, d, addr);
            table.set(U32, d + 8, len);
            table.set(U16, d + 12, (short) flags);
            table.set(U16, d + 14, (short) next);
        }

        /** Writes descriptor {@code index} of this ring's table. */
        void writeDesc(int index, long addr, int len, int flags, int next) {
            writeDesc(at(descGpa, 16L * size), index, addr, len, flags, next);
        }

        /** Takes the next descriptor index, round robin (a test keeps fewer than size in flight). */
        int takeDesc() {
            int d = nextDesc;
            nextDesc = (nextDesc + 1) % size;
            return d;
        }

        /** Writes a direct chain and makes it available; returns its head. */
        int addChain(Buf... bufs) {
            int[] idx = new int[bufs.length];
            for (int i = 0; i < bufs.length; i++) {
                idx[i] = takeDesc();
            }
            for (int i = 0; i < bufs.length; i++) {
                boolean more = i + 1 < bufs.length;
                int flags = (bufs[i].writable() ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0);
                writeDesc(idx[i], bufs[i].gpa(), bufs[i].len(), flags, more ? idx[i + 1] : 0);
            }
            publish(idx[0]);
            return idx[0];
        }

        /** Writes an indirect table of {@code bufs} and a one-descriptor chain naming it; returns its head. */
        int addIndirectChain(Buf... bufs) {
            long table = alloc(16L * bufs.length, 16);
            MemorySegment t = at(table, 16L * bufs.length);
            for (int i = 0; i < bufs.length; i++) {
                boolean more = i + 1 < bufs.length;
                int flags = (bufs[i].writable() ? VIRTQ_DESC_F_WRITE : 0) | (more ? VIRTQ_DESC_F_NEXT : 0);
                writeDesc(t, i, bufs[i].gpa(), bufs[i].len(), flags, more ? i + 1 : 0);
            }
            int head = takeDesc();
            writeDesc(head, table, 16 * bufs.length, VIRTQ_DESC_F_INDIRECT, 0);
            publish(head);
            return head;
        }

        /** Puts {@code head} in the next avail slot and release-stores avail->idx. */
        void publish(int head) {
            MemorySegment avail = at(availGpa, 6 + 2L * size);
            avail.set(U16, 4 + 2L * (availIdx & (size - 1)), (short) head);
            availIdx = (availIdx + 1) & 0xFFFF;
            // release: the descriptors and the ring entry are visible before the new idx (virtio §2.7.13)
            U16_ATOMIC.setRelease(avail, 2L, (short) availIdx);
        }

        /** Release-stores avail->idx as a (possibly broken) driver would. */
        void availIdx(int idx) {
            availIdx = idx & 0xFFFF;
            U16_ATOMIC.setRelease(at(availGpa, 4), 2L, (short) availIdx);
        }

        int availIdx() {
            return availIdx;
        }

        /** Sets avail->flags (VIRTQ_AVAIL_F_NO_INTERRUPT). */
        void availFlags(int flags) {
            at(availGpa, 2).set(U16, 0, (short) flags);
            // the device reads the flags after its used idx store (full fence there); order ours before our next load
            VarHandle.fullFence();
        }

        /** Sets used_event (EVENT_IDX): notify me once used->idx passes this index. */
        void usedEvent(int idx) {
            at(availGpa + 4 + 2L * size, 2).set(U16, 0, (short) idx);
            // Dekker with the device's needsNotification(): our used_event store before our next used->idx load
            VarHandle.fullFence();
        }

        /** used->idx, acquire: the used elements below it (and the data and status bytes) are visible. */
        int usedIdx() {
            return (short) U16_ATOMIC.getAcquire(at(usedGpa, 4), 2L) & 0xFFFF;
        }

        /** {@code id} of the used element at ring counter {@code idx}. */
        int usedId(int idx) {
            return at(usedGpa + 4 + 8L * (idx & (size - 1)), 8).get(U32, 0);
        }

        /** {@code len} of the used element at ring counter {@code idx}. */
        int usedLen(int idx) {
            return at(usedGpa + 4 + 8L * (idx & (size - 1)), 8).get(U32, 4);
        }
    }

    /**
     * One packed virtqueue, driven as Linux's virtio_ring drives it (virtio 1.2 §2.8): a chain's descriptors are
     * written with the lap's AVAIL/USED flags, the first one's flags last with a release store; the buffer id goes in
     * the last descriptor; used descriptors are found by their flags (acquire) at the driver's next used offset.
     */
    final class PackedRing {
        /** A used element as the driver took it. */
        record Used(int id, int len, int flags) {}

        private static final VarHandle U32_ATOMIC =
                ValueLayout.JAVA_INT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

        final int queueIndex;
        final int size;
        final long ringGpa;
        final long driverAreaGpa;
        final long deviceAreaGpa;
        /** Ring descriptors of each outstanding id, -1 when the id is free. */
        private final int[] descriptorsOf;

        private int nextAvail;
        private boolean availWrap = true;
        private int nextUsed;
        private boolean usedWrap = true;
        private int freeDescriptors;
        private int nextId;

        private PackedRing(int queueIndex, int size) {
            this.queueIndex = queueIndex;
            this.size = size;
            ringGpa = alloc(16L * size, 4096);
            driverAreaGpa = alloc(4, 4096);
            deviceAreaGpa = alloc(4, 4096);
            descriptorsOf = new int[size];
            java.util.Arrays.fill(descriptorsOf, -1);
            freeDescriptors = size;
        }

        /** The device side of this ring over the guest memory, at the initial position. */
        PackedVirtqueue queue(boolean eventIdx, int maxSegments) {
            return new PackedVirtqueue(
                    queueIndex, size, memory, ringGpa, driverAreaGpa, deviceAreaGpa, eventIdx, maxSegments, true);
        }

        private MemorySegment desc(int offset) {
            return at(ringGpa + 16L * offset, 16);
        }

        private int availFlags(boolean wrap) {
            return wrap ? PackedRingDescriptor.VIRTQ_DESC_F_AVAIL : PackedRingDescriptor.VIRTQ_DESC_F_USED;
        }

        int freeDescriptors() {
            return freeDescriptors;
        }

        private int takeId() {
            for (int i = 0; i < size; i++) {
                int id = (nextId + i) % size;
                if (descriptorsOf[id] < 0) {
                    nextId = (id + 1) % size;
                    return id;
                }
            }
            throw new IllegalStateException("test bug: no free buffer id");
        }

        /** Makes a direct chain available; returns its buffer id. */
        int addChain(Buf... bufs) {
            if (bufs.length > freeDescriptors) {
                throw new IllegalStateException("test bug: ring full");
            }
            int id = takeId();
            int first = nextAvail;
            int firstFlags = 0;
            for (int i = 0; i < bufs.length; i++) {
                boolean last = i == bufs.length - 1;
                int flags = (bufs[i].writable() ? VIRTQ_DESC_F_WRITE : 0)
                        | (last ? 0 : VIRTQ_DESC_F_NEXT)
                        | availFlags(availWrap);
                MemorySegment d = desc(nextAvail);
                d.set(U64, 0, bufs[i].gpa());
                d.set(U32, 8, bufs[i].len());
                d.set(U16, 12, (short) (last ? id : 0));
                if (i == 0) {
                    firstFlags = flags;
                } else {
                    d.set(U16, 14, (short) flags);
                }
                if (++nextAvail == size) {
                    nextAvail = 0;
                    availWrap = !availWrap;
                }
            }
            descriptorsOf[id] = bufs.length;
            freeDescriptors -= bufs.length;
            // release: the rest of the chain (and the buffers) before the first descriptor's flags (§2.8.6)
            U16_ATOMIC.setRelease(desc(first), 14L, (short) firstFlags);
            return id;
        }

        /** One ring descriptor naming an indirect table of {@code bufs}; returns its buffer id. */
        int addIndirectChain(Buf... bufs) {
            long table = alloc(16L * bufs.length, 16);
            MemorySegment t = at(table, 16L * bufs.length);
            for (int i = 0; i < bufs.length; i++) {
                t.set(U64, 16L * i, bufs[i].gpa());
                t.set(U32, 16L * i + 8, bufs[i].len());
                t.set(U16, 16L * i + 12, (short) 0);
                t.set(U16, 16L * i + 14, (short) (bufs[i].writable() ? VIRTQ_DESC_F_WRITE : 0));
            }
            int id = takeId();
            MemorySegment d = desc(nextAvail);
            d.set(U64, 0, table);
            d.set(U32, 8, 16 * bufs.length);
            d.set(U16, 12, (short) id);
            int flags = VIRTQ_DESC_F_INDIRECT | availFlags(availWrap);
            descriptorsOf[id] = 1;
            freeDescriptors--;
            if (++nextAvail == size) {
                nextAvail = 0;
                availWrap = !availWrap;
            }
            // release: the table and the descriptor's other fields before its flags
            U16_ATOMIC.setRelease(d, 14L, (short) flags);
            return id;
        }

        /** Takes the next used element if the device has published one, else null (§2.8 "Receiving Used Buffers"). */
        Used pollUsed() {
            MemorySegment d = desc(nextUsed);
            // acquire: id and len (and the buffers the device wrote) after the flags that say "used"
            int flags = (short) U16_ATOMIC.getAcquire(d, 14L) & 0xFFFF;
            boolean used = (flags & PackedRingDescriptor.VIRTQ_DESC_F_USED) != 0;
            boolean avail = (flags & PackedRingDescriptor.VIRTQ_DESC_F_AVAIL) != 0;
            if (used != usedWrap || avail != usedWrap) {
                return null;
            }
            Used u = new Used(d.get(U16, 12) & 0xFFFF, d.get(U32, 8), flags);
            int descriptors = descriptorsOf[u.id()];
            if (descriptors < 0) {
                throw new AssertionError("id " + u.id() + " used but not outstanding");
            }
            descriptorsOf[u.id()] = -1;
            freeDescriptors += descriptors;
            nextUsed += descriptors;
            if (nextUsed >= size) {
                nextUsed -= size;
                usedWrap = !usedWrap;
            }
            return u;
        }

        /**
         * Asks for a used-buffer notification when the next used descriptor is written (EVENT_IDX: DESC at the next
         * used offset and wrap counter; without: ENABLE), one 32-bit store as Linux makes it.
         */
        void enableUsedNotification(boolean eventIdx) {
            int word = eventIdx
                    ? PackedRingDescriptor.RING_EVENT_FLAGS_DESC << 16
                            | PackedRingDescriptor.encodeIndex(nextUsed, usedWrap)
                    : PackedRingDescriptor.RING_EVENT_FLAGS_ENABLE << 16;
            U32_ATOMIC.setVolatile(at(driverAreaGpa, 4), 0L, word);
            // Dekker with the device's needsNotification(): our event store before our next look at the used flags
            VarHandle.fullFence();
        }
    }
}
