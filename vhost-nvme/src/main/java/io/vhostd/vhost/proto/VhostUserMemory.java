package io.vhostd.vhost.proto;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * vhost-user.rst "Multiple Memory regions description" ({@code VhostUserMemory}), the payload of {@code
 * VHOST_USER_SET_MEM_TABLE}: {@code nregions} (u32), padding (u32), then {@code nregions} regions of 32 bytes. QEMU
 * sends only the regions in use, so the payload is exactly {@code 8 + 32 × nregions} bytes; one fd per region
 * travels in the ancillary data.
 *
 * @param nregions number of regions, 1 .. {@link #VHOST_MEMORY_BASELINE_NREGIONS}
 * @param regions the regions, in the order of the fds
 */
public record VhostUserMemory(int nregions, List<VhostUserMemoryRegion> regions) implements VhostUserPayload {
    /** Regions one {@code SET_MEM_TABLE} can carry (QEMU's {@code VHOST_MEMORY_BASELINE_NREGIONS}). */
    public static final int VHOST_MEMORY_BASELINE_NREGIONS = 8;

    public static final int NREGIONS_OFFSET = 0;
    public static final int REGIONS_OFFSET = 8;

    /** Largest payload: 8 + 8 × 32 = 264 bytes. */
    public static final int MAX_SIZE_BYTES =
            REGIONS_OFFSET + VHOST_MEMORY_BASELINE_NREGIONS * VhostUserMemoryRegion.SIZE_BYTES;

    /** @throws IllegalArgumentException if {@code nregions} differs from the list's size */
    public VhostUserMemory {
        regions = List.copyOf(regions);
        if (nregions != regions.size()) {
            throw new IllegalArgumentException("nregions " + nregions + " but " + regions.size() + " regions");
        }
    }

    /** A memory table of the given regions. */
    public static VhostUserMemory of(List<VhostUserMemoryRegion> regions) {
        return new VhostUserMemory(regions.size(), regions);
    }

    /**
     * @param requestId for the error
     * @param payload exactly the payload bytes
     * @throws VhostUserProtocolException unless {@code 1 <= nregions <= 8}, the size is {@code 8 + 32 × nregions}
     *     and every region is valid ({@link VhostUserMemoryRegion#decodeAt})
     */
    public static VhostUserMemory decode(int requestId, MemorySegment payload) {
        if (payload.byteSize() < REGIONS_OFFSET) {
            throw new VhostUserProtocolException(
                    requestId, "memory table payload of " + payload.byteSize() + " bytes is shorter than its header");
        }
        int nregions = Wire.u32(payload, NREGIONS_OFFSET);
        if (nregions < 1 || nregions > VHOST_MEMORY_BASELINE_NREGIONS) {
            throw new VhostUserProtocolException(
                    requestId,
                    "nregions " + Integer.toUnsignedString(nregions) + " outside 1.." + VHOST_MEMORY_BASELINE_NREGIONS);
        }
        Wire.checkSize(
                requestId,
                payload,
                REGIONS_OFFSET + (long) nregions * VhostUserMemoryRegion.SIZE_BYTES,
                "memory table of " + nregions + " regions:");
        List<VhostUserMemoryRegion> regions = new ArrayList<>(nregions);
        for (int i = 0; i < nregions; i++) {
            regions.add(VhostUserMemoryRegion.decodeAt(
                    requestId, payload, REGIONS_OFFSET + (long) i * VhostUserMemoryRegion.SIZE_BYTES));
        }
        return new VhostUserMemory(nregions, regions);
    }

    @Override
    public int sizeBytes() {
        return REGIONS_OFFSET + nregions * VhostUserMemoryRegion.SIZE_BYTES;
    }

    @Override
    public void encode(MemorySegment dst) {
        Wire.putU32(dst, NREGIONS_OFFSET, nregions);
        Wire.putU32(dst, NREGIONS_OFFSET + 4, 0);
        for (int i = 0; i < nregions; i++) {
            regions.get(i).encodeAt(dst, REGIONS_OFFSET + (long) i * VhostUserMemoryRegion.SIZE_BYTES);
        }
    }
}
