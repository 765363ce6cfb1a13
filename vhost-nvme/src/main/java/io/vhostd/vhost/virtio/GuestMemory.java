package io.vhostd.vhost.virtio;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;

/**
 * The guest's memory as a set of non-overlapping {@link GuestMemoryRegion}s (the vhost-user memory table).
 *
 * <p>Immutable and safe to share between threads: a new memory table ({@code VHOST_USER_SET_MEM_TABLE}, {@code
 * VHOST_USER_ADD_MEM_REG}) builds a new instance. Region indexes ({@link #region(int)}) are positions in the list
 * given to the constructor. Guest physical and front-end virtual addresses are unsigned 64-bit values; every lookup
 * answers -1 or {@code null} for anything outside the regions, including ranges whose end passes 2^64.
 *
 * <p>Lookups by guest physical address are a binary search over the regions sorted by address and allocate nothing.
 */
public final class GuestMemory {

    private static final GuestMemory EMPTY = new GuestMemory(List.of());

    private final GuestMemoryRegion[] regions;
    private final List<GuestMemoryRegion> regionList;
    /** Region indexes sorted by guest physical address (unsigned). */
    private final int[] byGpa;
    /** {@code startGpa[k]} = guest physical address of region {@code byGpa[k]}. */
    private final long[] startGpa;

    /**
     * @param regions the regions; the list order defines region indexes
     * @throws IllegalArgumentException if two regions overlap in guest physical or front-end virtual address space,
     *     or two regions share a {@code regionId}
     */
    public GuestMemory(List<GuestMemoryRegion> regions) {
        this.regions = regions.toArray(new GuestMemoryRegion[0]);
        this.regionList = List.of(this.regions);
        int n = this.regions.length;
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        Arrays.sort(
                order,
                (a, b) -> Long.compareUnsigned(this.regions[a].guestPhysAddr(), this.regions[b].guestPhysAddr()));
        byGpa = new int[n];
        startGpa = new long[n];
        for (int k = 0; k < n; k++) {
            byGpa[k] = order[k];
            startGpa[k] = this.regions[order[k]].guestPhysAddr();
        }
        for (int k = 1; k < n; k++) {
            GuestMemoryRegion prev = this.regions[byGpa[k - 1]];
            GuestMemoryRegion cur = this.regions[byGpa[k]];
            if (Long.compareUnsigned(cur.guestPhysAddr(), prev.lastGpa()) <= 0) {
                throw new IllegalArgumentException("regions " + prev.regionId() + " and " + cur.regionId()
                        + " overlap in guest physical address space");
            }
        }
        for (int i = 0; i < n; i++) {
            for (int j = i + 1; j < n; j++) {
                GuestMemoryRegion a = this.regions[i];
                GuestMemoryRegion b = this.regions[j];
                if (a.regionId() == b.regionId()) {
                    throw new IllegalArgumentException(
                            "regions " + i + " and " + j + " share regionId " + a.regionId());
                }
                boolean disjoint = Long.compareUnsigned(a.lastUserAddr(), b.userAddr()) < 0
                        || Long.compareUnsigned(b.lastUserAddr(), a.userAddr()) < 0;
                if (!disjoint) {
                    throw new IllegalArgumentException("regions " + a.regionId() + " and " + b.regionId()
                            + " overlap in front-end virtual address space");
                }
            }
        }
    }

    /** A memory table without regions (before {@code VHOST_USER_SET_MEM_TABLE}). */
    public static GuestMemory empty() {
        return EMPTY;
    }

    /** Number of regions. */
    public int regionCount() {
        return regions.length;
    }

    /** The region at {@code index} (list order of the constructor). */
    public GuestMemoryRegion region(int index) {
        return regions[index];
    }

    /** The regions in index order (unmodifiable). */
    public List<GuestMemoryRegion> regions() {
        return regionList;
    }

    /**
     * Index of the region that holds the byte at {@code gpa}, or -1.
     *
     * @param gpa guest physical address, unsigned
     */
    public int regionIndexContaining(long gpa) {
        int lo = 0;
        int hi = startGpa.length - 1;
        int candidate = -1;
        // last region whose start <= gpa (unsigned)
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (Long.compareUnsigned(startGpa[mid], gpa) <= 0) {
                candidate = mid;
                lo = mid + 1;
            } else {
                hi = mid - 1;
            }
        }
        if (candidate < 0) {
            return -1;
        }
        int index = byGpa[candidate];
        return regions[index].containsGpa(gpa) ? index : -1;
    }

    /**
     * Index of the region holding all of {@code [gpa, gpa + lengthBytes)}, or -1 (also for {@code lengthBytes < 0}
     * and for a range whose end passes 2^64). A zero-length range is held by the region that holds {@code gpa}.
     *
     * @param gpa guest physical address, unsigned
     * @param lengthBytes length of the range
     */
    public int findRegion(long gpa, long lengthBytes) {
        if (lengthBytes < 0) {
            return -1;
        }
        int index = regionIndexContaining(gpa);
        if (index < 0) {
            return -1;
        }
        GuestMemoryRegion r = regions[index];
        long offset = gpa - r.guestPhysAddr();
        // offset < size here, so size - offset cannot underflow; this also rejects ends past 2^64
        return lengthBytes <= r.sizeBytes() - offset ? index : -1;
    }

    /**
     * Translates a front-end virtual address ({@code VHOST_USER_SET_VRING_ADDR}) to a guest physical address.
     *
     * @param uva front-end virtual address, unsigned
     * @param lengthBytes length of the range that must lie in one region
     * @return the guest physical address, or -1 if {@code [uva, uva + lengthBytes)} is not inside one region
     */
    public long uvaToGpa(long uva, long lengthBytes) {
        if (lengthBytes < 0) {
            return -1;
        }
        for (GuestMemoryRegion r : regions) {
            long offset = uva - r.userAddr();
            if (Long.compareUnsigned(offset, r.sizeBytes()) < 0 && lengthBytes <= r.sizeBytes() - offset) {
                return r.guestPhysAddr() + offset;
            }
        }
        return -1;
    }

    /**
     * A slice of guest memory, or {@code null} if {@code [gpa, gpa + lengthBytes)} is not inside one region.
     * Allocates a segment: not for per-I/O use.
     */
    public MemorySegment slice(long gpa, long lengthBytes) {
        int index = findRegion(gpa, lengthBytes);
        if (index < 0) {
            return null;
        }
        GuestMemoryRegion r = regions[index];
        return r.mapping().asSlice(gpa - r.guestPhysAddr(), lengthBytes);
    }

    @Override
    public String toString() {
        StringBuilder sb = new StringBuilder("GuestMemory[");
        for (int i = 0; i < regions.length; i++) {
            GuestMemoryRegion r = regions[i];
            if (i > 0) {
                sb.append(", ");
            }
            sb.append('#')
                    .append(r.regionId())
                    .append(" gpa=0x")
                    .append(Long.toHexString(r.guestPhysAddr()))
                    .append(" size=0x")
                    .append(Long.toHexString(r.sizeBytes()));
        }
        return sb.append(']').toString();
    }
}
