package io.vhostd.vhost.virtio;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

@Timeout(10)
class GuestMemoryTest {

    private final Arena arena = Arena.ofConfined();

    @AfterEach
    void close() {
        arena.close();
    }

    private GuestMemoryRegion region(int id, long gpa, long size, long uva) {
        return new GuestMemoryRegion(id, gpa, size, uva, 0, -1, arena.allocate(size));
    }

    /** Regions listed out of GPA order: index 0 = [0x20000, +0x1000), index 1 = [0x10000, +0x1000). */
    private GuestMemory twoRegions() {
        return new GuestMemory(
                List.of(region(1, 0x20000, 0x1000, 0x7000_0000L), region(2, 0x10000, 0x1000, 0x6000_0000L)));
    }

    @ParameterizedTest(name = "findRegion(0x{0}, {1}) = {2}")
    @CsvSource({
        "10000, 1, 1",
        "10000, 4096, 1",
        "10fff, 1, 1",
        "10fff, 2, -1",
        "11000, 1, -1",
        "fff, 1, -1",
        "20000, 4096, 0",
        "20800, 2048, 0",
        "20800, 2049, -1",
        "20000, 0, 0",
        "21000, 0, -1",
        "20000, -1, -1",
        "ffffffffffffffff, 2, -1",
    })
    void shouldFindRegionHoldingWholeRangeWhenRangeGiven(String gpaHex, long length, int expected) {
        assertEquals(expected, twoRegions().findRegion(Long.parseUnsignedLong(gpaHex, 16), length));
    }

    @Test
    void shouldTranslateUvaToGpaWhenRangeInOneRegion() {
        GuestMemory m = twoRegions();

        assertEquals(0x20010, m.uvaToGpa(0x7000_0010L, 16));
        assertEquals(0x10000, m.uvaToGpa(0x6000_0000L, 0x1000));
        assertEquals(-1, m.uvaToGpa(0x6000_0000L, 0x1001));
        assertEquals(-1, m.uvaToGpa(0x5FFF_FFFFL, 1));
        assertEquals(-1, m.uvaToGpa(0x7000_0000L, -1));
    }

    @Test
    void shouldSliceGuestMemoryWhenRangeMapped() {
        GuestMemory m = twoRegions();
        MemorySegment s = m.slice(0x10ff0, 16);

        assertNotNull(s);
        assertEquals(16, s.byteSize());
        assertEquals(m.region(1).mapping().address() + 0xff0, s.address());
        assertNull(m.slice(0x10ff0, 17));
        assertNull(m.slice(0x30000, 1));
    }

    @Test
    void shouldExposeRegionsInListOrder() {
        GuestMemory m = twoRegions();

        assertEquals(2, m.regionCount());
        assertEquals(1, m.region(0).regionId());
        assertEquals(2, m.regions().get(1).regionId());
        assertEquals(1, m.regionIndexContaining(0x10000));
        assertEquals(-1, m.regionIndexContaining(0x1ffff));
        assertEquals(0, GuestMemory.empty().regionCount());
        assertEquals(-1, GuestMemory.empty().findRegion(0, 1));
    }

    @Test
    void shouldRejectMemoryTableWhenRegionsOverlap() {
        assertThrows(
                IllegalArgumentException.class,
                () -> new GuestMemory(
                        List.of(region(1, 0x10000, 0x2000, 0x1000_0000L), region(2, 0x11000, 0x1000, 0x2000_0000L))),
                "GPA overlap");
        assertThrows(
                IllegalArgumentException.class,
                () -> new GuestMemory(
                        List.of(region(1, 0x10000, 0x1000, 0x1000_0000L), region(2, 0x20000, 0x1000, 0x1000_0800L))),
                "UVA overlap");
        assertThrows(
                IllegalArgumentException.class,
                () -> new GuestMemory(
                        List.of(region(1, 0x10000, 0x1000, 0x1000_0000L), region(1, 0x20000, 0x1000, 0x2000_0000L))),
                "duplicate regionId");
    }

    @Test
    void shouldAcceptAdjacentRegions() {
        GuestMemory m = new GuestMemory(
                List.of(region(1, 0x10000, 0x1000, 0x1000_0000L), region(2, 0x11000, 0x1000, 0x1000_1000L)));

        assertEquals(0, m.findRegion(0x10fff, 1));
        assertEquals(1, m.findRegion(0x11000, 1));
        assertEquals(-1, m.findRegion(0x10fff, 2), "a range across two regions is not in one region");
    }

    @Test
    void shouldRejectRegionWhenSizeOrAddressesInvalid() {
        MemorySegment page = arena.allocate(0x1000);
        assertThrows(
                IllegalArgumentException.class,
                () -> new GuestMemoryRegion(1, 0xFFFF_FFFF_FFFF_F800L, 0x1000, 0, 0, -1, page),
                "GPA overflow");
        assertThrows(
                IllegalArgumentException.class,
                () -> new GuestMemoryRegion(1, 0, 0x1000, 0xFFFF_FFFF_FFFF_F001L, 0, -1, page),
                "UVA overflow");
        assertThrows(IllegalArgumentException.class, () -> new GuestMemoryRegion(1, 0, 0x800, 0, 0, -1, page));
        assertThrows(
                IllegalArgumentException.class, () -> new GuestMemoryRegion(1, 0, 0, 0, 0, -1, page.asSlice(0, 0)));
        GuestMemoryRegion top = new GuestMemoryRegion(1, 0xFFFF_FFFF_FFFF_F000L, 0x1000, 0, 0, -1, page);
        assertEquals(0, new GuestMemory(List.of(top)).findRegion(0xFFFF_FFFF_FFFF_FFFFL, 1), "last byte of 2^64");
    }
}
