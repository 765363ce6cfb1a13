package io.vhostd.vhost.virtio;

import static io.vhostd.vhost.virtio.FakeGuest.Buf.r;
import static io.vhostd.vhost.virtio.FakeGuest.Buf.w;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_IOERR;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_OK;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_UNSUPP;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_DISCARD;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_WRITE_ZEROES;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** DISCARD / WRITE_ZEROES segments (virtio 1.2 §5.2.6): reading them from guest memory and checking each one. */
@Timeout(10)
class DiscardWriteZeroesTest {

    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private static byte[] segments(long[][] ranges) {
        byte[] bytes = new byte[16 * ranges.length];
        MemorySegment m = MemorySegment.ofArray(bytes);
        for (int i = 0; i < ranges.length; i++) {
            m.set(U64, 16L * i, ranges[i][0]);
            m.set(U32, 16L * i + 8, (int) ranges[i][1]);
            m.set(U32, 16L * i + 12, (int) ranges[i][2]);
        }
        return bytes;
    }

    private static VirtioBlkRequest parse(FakeGuest g) {
        DescriptorChain chain = new DescriptorChain(16);
        assertEquals(Virtqueue.POP_OK, g.queue(false, 16).pop(chain));
        VirtioBlkRequest req = new VirtioBlkRequest(16);
        assertTrue(req.parse(chain, g.memory()), req.toString());
        return req;
    }

    @Test
    void shouldReadEverySegmentWhenDataIsOneBuffer() {
        try (FakeGuest g = new FakeGuest(16, false)) {
            long[][] ranges = {{8, 16, 0}, {0xFFFF_FFFF_0000L, 0xFFFF_FFFFL, 1}, {1024, 8, 0x8000_0001L}};
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_WRITE_ZEROES, 0);
            long data = g.alloc(48);
            g.write(data, segments(ranges));
            g.addChain(r(hdr, 16), r(data, 48), w(g.alloc(1), 1));

            VirtioBlkRequest req = parse(g);

            assertEquals(3, req.rangeCount());
            for (int i = 0; i < 3; i++) {
                req.readRange(g.memory(), i);
                assertEquals(ranges[i][0], req.rangeSector(), "sector " + i);
                assertEquals(ranges[i][1], req.rangeNumSectors(), "num_sectors " + i);
                assertEquals((int) ranges[i][2], req.rangeFlags(), "flags " + i);
            }
            assertThrows(IndexOutOfBoundsException.class, () -> req.readRange(g.memory(), 3));
            assertThrows(IndexOutOfBoundsException.class, () -> req.readRange(g.memory(), -1));
        }
    }

    @Test
    void shouldGatherSegmentWhenItSpansBuffersAndRegions() {
        try (FakeGuest g = new FakeGuest(16, true)) {
            long[][] ranges = {{0x0102_0304_0506_0708L, 0x1112_1314L, 0x2122_2324}, {77, 5, 1}};
            byte[] bytes = segments(ranges);
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_DISCARD, 0);
            // 5 bytes at the end of region 0, 19 elsewhere in region 0, the last 8 in region 1: both segments span
            // buffers
            long a = FakeGuest.REGION1_GPA - 5;
            long b = g.alloc(19);
            long c = FakeGuest.REGION1_GPA + 0x100;
            g.write(a, java.util.Arrays.copyOfRange(bytes, 0, 5));
            g.write(b, java.util.Arrays.copyOfRange(bytes, 5, 24));
            g.write(c, java.util.Arrays.copyOfRange(bytes, 24, 32));
            g.addChain(r(hdr, 16), r(a, 5), r(b, 19), r(c, 8), w(g.alloc(1), 1));

            VirtioBlkRequest req = parse(g);

            assertEquals(2, req.rangeCount());
            for (int i = 0; i < 2; i++) {
                req.readRange(g.memory(), i);
                assertEquals(ranges[i][0], req.rangeSector());
                assertEquals(ranges[i][1], req.rangeNumSectors());
                assertEquals((int) ranges[i][2], req.rangeFlags());
            }
        }
    }

    @ParameterizedTest(name = "{0}: type {1} sector {2} count {3} flags {4} -> {5}")
    @CsvSource({
        "plain discard, 11, 0, 8, 0, 0",
        "plain write zeroes, 13, 0, 8, 0, 0",
        "write zeroes with unmap, 13, 8, 8, 1, 0",
        "discard with unmap (§5.2.6.2 MUST UNSUPP), 11, 8, 8, 1, 2",
        "reserved flag bit 1, 13, 8, 8, 2, 2",
        "reserved flag bit 31, 11, 8, 8, -2147483648, 2",
        "more sectors than the limit, 13, 0, 2049, 0, 1",
        "more sectors than the limit beats a reserved flag, 13, 0, 2049, 2, 1",
        "last sectors of the disk, 11, 1016, 8, 0, 0",
        "one sector past the end, 11, 1016, 16, 0, 1",
        "sector at the end, 11, 1024, 8, 0, 1",
        "zero sectors at the end, 11, 1024, 0, 0, 0",
        "sector 2^64 - 8 (unsigned), 11, -8, 8, 0, 1",
        "sector not aligned to the logical block, 13, 4, 8, 0, 1",
        "count not aligned to the logical block, 13, 8, 12, 0, 1",
    })
    void shouldAnswerStatusPerSpecWhenSegmentChecked(
            String name, int type, long sector, long count, int flags, int expected) {
        // 1024 sectors, limit 2048 sectors, 4 KiB logical blocks (8 sectors)
        assertEquals(expected, VirtioBlk.checkDiscardWriteZeroes(type, sector, count, flags, 1024, 2048, 8), name);
    }

    @Test
    void shouldKeepStatusConstantsAsTheSpecNumbersThem() {
        assertEquals(0, VIRTIO_BLK_S_OK);
        assertEquals(1, VIRTIO_BLK_S_IOERR);
        assertEquals(2, VIRTIO_BLK_S_UNSUPP);
        assertEquals(0xFFFF_FFFE, VirtioBlk.VIRTIO_BLK_DISCARD_WRITE_ZEROES_FLAGS_RESERVED_MASK);
    }
}
