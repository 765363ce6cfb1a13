package io.vhostd.vhost.virtio;

import static io.vhostd.vhost.virtio.FakeGuest.Buf.r;
import static io.vhostd.vhost.virtio.FakeGuest.Buf.w;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_IOERR;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_OK;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_DISCARD;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_FLUSH;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_GET_ID;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_IN;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_OUT;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_WRITE_ZEROES;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.function.Function;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

@Timeout(10)
class VirtioBlkRequestTest {

    private static final int QUEUE_SIZE = 256;
    private static final long SECTOR = 0x1234_5678_9ABCL;

    /** Pops the one available chain and parses it. */
    private static VirtioBlkRequest popAndParse(FakeGuest g, boolean expectWellFormed) {
        SplitVirtqueue q = g.queue(false, 256);
        DescriptorChain chain = new DescriptorChain(256);
        int rc = q.pop(chain);
        assertTrue(rc == SplitVirtqueue.POP_OK || rc == SplitVirtqueue.POP_MALFORMED);
        VirtioBlkRequest req = new VirtioBlkRequest(256);
        assertEquals(expectWellFormed, req.parse(chain, g.memory()), req.toString());
        return req;
    }

    @ParameterizedTest(name = "type {0}, {1} data segments")
    @CsvSource({
        "0, 1", "0, 3", "0, 128", "1, 1", "1, 3", "1, 128", "8, 1", "8, 3", "4, 0", "4, 1",
    })
    void shouldParseRequestWhenEachPartHasItsOwnDescriptor(int type, int dataSegments) {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            boolean writable = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;
            int segLen = type == VIRTIO_BLK_T_GET_ID ? 20 : 512;
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, type, type == VIRTIO_BLK_T_FLUSH ? 0 : SECTOR);
            FakeGuest.Buf[] bufs = new FakeGuest.Buf[dataSegments + 2];
            bufs[0] = r(hdr, 16);
            long[] data = new long[dataSegments];
            for (int i = 0; i < dataSegments; i++) {
                data[i] = g.alloc(segLen);
                bufs[i + 1] = writable ? w(data[i], segLen) : r(data[i], segLen);
            }
            long status = g.alloc(1);
            bufs[dataSegments + 1] = w(status, 1);
            int head = g.addChain(bufs);

            VirtioBlkRequest req = popAndParse(g, true);

            assertEquals(VirtioBlkRequestError.OK, req.error(), req.errorName());
            assertEquals(head, req.head());
            assertEquals(type, req.type());
            assertEquals(type == VIRTIO_BLK_T_FLUSH ? 0 : SECTOR, req.sector());
            assertEquals(dataSegments, req.dataSegmentCount());
            assertEquals((long) dataSegments * segLen, req.dataLengthBytes());
            for (int i = 0; i < dataSegments; i++) {
                assertEquals(data[i], req.dataGpa(i));
                assertEquals(data[i] - FakeGuest.REGION0_GPA, req.dataRegionOffset(i));
                assertEquals(0, req.dataRegionIndex(i));
                assertEquals(FakeGuest.REGION0_ID, req.dataRegionId(i));
                assertEquals(segLen, req.dataLengthBytes(i));
                assertEquals(writable, req.dataDeviceWritable(i));
            }
            assertTrue(req.hasStatus());
            assertEquals(status, req.statusGpa());
            assertEquals(status - FakeGuest.REGION0_GPA, req.statusRegionOffset());
        }
    }

    @Test
    void shouldSplitDescriptorWhenHeaderSharesItWithData() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long buf = g.alloc(16 + 1024);
            g.writeBlkHeader(buf, VIRTIO_BLK_T_OUT, 7);
            long status = g.alloc(1);
            g.addChain(r(buf, 16 + 1024), w(status, 1));

            VirtioBlkRequest req = popAndParse(g, true);

            assertEquals(VIRTIO_BLK_T_OUT, req.type());
            assertEquals(7, req.sector());
            assertEquals(1, req.dataSegmentCount());
            assertEquals(buf + 16, req.dataGpa(0));
            assertEquals(buf + 16 - FakeGuest.REGION0_GPA, req.dataRegionOffset(0));
            assertEquals(1024, req.dataLengthBytes(0));
            assertEquals(status, req.statusGpa());
        }
    }

    @Test
    void shouldSplitDescriptorWhenDataSharesItWithStatus() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_IN, 3);
            long buf = g.alloc(4096 + 1);
            g.addChain(r(hdr, 16), w(buf, 4096 + 1));

            VirtioBlkRequest req = popAndParse(g, true);

            assertEquals(1, req.dataSegmentCount());
            assertEquals(buf, req.dataGpa(0));
            assertEquals(4096, req.dataLengthBytes(0));
            assertEquals(buf + 4096, req.statusGpa());
        }
    }

    @Test
    void shouldReadHeaderWhenItSpansDescriptors() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long a = g.alloc(16);
            long b = g.alloc(16);
            long c = g.alloc(16 + 512);
            byte[] header = new byte[16];
            header[0] = VIRTIO_BLK_T_OUT;
            for (int i = 0; i < 8; i++) {
                header[8 + i] = (byte) (0x11 * (i + 1));
            }
            g.write(a, Arrays.copyOfRange(header, 0, 3));
            g.write(b, Arrays.copyOfRange(header, 3, 9));
            g.write(c, Arrays.copyOfRange(header, 9, 16));
            long status = g.alloc(1);
            g.addChain(r(a, 3), r(b, 6), r(c, 7 + 512), w(status, 1));

            VirtioBlkRequest req = popAndParse(g, true);

            assertEquals(VIRTIO_BLK_T_OUT, req.type());
            assertEquals(0x8877665544332211L, req.sector());
            assertEquals(1, req.dataSegmentCount());
            assertEquals(c + 7, req.dataGpa(0));
            assertEquals(512, req.dataLengthBytes(0));
        }
    }

    @Test
    void shouldParseRequestWhenWholeRequestIsOneIndirectTable() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_IN, 9);
            FakeGuest.Buf[] bufs = new FakeGuest.Buf[130];
            bufs[0] = r(hdr, 16);
            for (int i = 1; i <= 128; i++) {
                bufs[i] = w(g.alloc(512), 512);
            }
            long status = g.alloc(1);
            bufs[129] = w(status, 1);
            int head = g.addIndirectChain(bufs);

            VirtioBlkRequest req = popAndParse(g, true);

            assertEquals(head, req.head());
            assertEquals(128, req.dataSegmentCount());
            assertEquals(128 * 512, req.dataLengthBytes());
            assertEquals(status, req.statusGpa());
        }
    }

    @Test
    void shouldSplitDataWhenBufferCrossesTwoRegions() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, true)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_IN, 0);
            long data = FakeGuest.REGION1_GPA - 1024;
            long status = g.alloc1(1);
            g.addChain(r(hdr, 16), w(data, 4096), w(status, 1));

            VirtioBlkRequest req = popAndParse(g, true);

            assertEquals(2, req.dataSegmentCount());
            assertEquals(FakeGuest.REGION0_ID, req.dataRegionId(0));
            assertEquals(FakeGuest.REGION_SIZE - 1024, req.dataRegionOffset(0));
            assertEquals(1024, req.dataLengthBytes(0));
            assertEquals(FakeGuest.REGION1_ID, req.dataRegionId(1));
            assertEquals(1, req.dataRegionIndex(1));
            assertEquals(0, req.dataRegionOffset(1));
            assertEquals(3072, req.dataLengthBytes(1));
            assertEquals(1, req.statusRegionIndex());
        }
    }

    @Test
    void shouldWriteOnlyStatusByteWhenStatusWritten() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, true)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_IN, 0);
            long status = g.alloc(1);
            g.addChain(r(hdr, 16), w(g.alloc(512), 512), w(status, 1));
            VirtioBlkRequest req = popAndParse(g, true);
            byte[] expected = g.snapshot();
            expected[g.snapshotIndex(status)] = VIRTIO_BLK_S_IOERR;

            req.writeStatus(g.memory(), VIRTIO_BLK_S_IOERR);

            assertArrayEquals(expected, g.snapshot());
        }
    }

    @Test
    void shouldWriteIdIntoDataSegmentsWhenGetIdAnswered() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_GET_ID, 0);
            long a = g.alloc(8);
            long b = g.alloc(12);
            long status = g.alloc(1);
            g.addChain(r(hdr, 16), w(a, 8), w(b, 12), w(status, 1));
            VirtioBlkRequest req = popAndParse(g, true);
            byte[] id = Arrays.copyOf("vhostd-serial-0123456789".getBytes(StandardCharsets.US_ASCII), 24);
            byte[] expected = g.snapshot();
            System.arraycopy(id, 0, expected, g.snapshotIndex(a), 8);
            System.arraycopy(id, 8, expected, g.snapshotIndex(b), 12);
            expected[g.snapshotIndex(status)] = VIRTIO_BLK_S_OK;

            assertEquals(20, req.writeData(g.memory(), id));
            req.writeStatus(g.memory(), VIRTIO_BLK_S_OK);

            assertArrayEquals(expected, g.snapshot(), "only the 20 id bytes and the status changed");
        }
    }

    @Test
    void shouldCheckSectorRangeAgainstCapacity() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_OUT, 100);
            g.addChain(r(hdr, 16), r(g.alloc(1024), 1024), w(g.alloc(1), 1));
            VirtioBlkRequest req = popAndParse(g, true);

            assertTrue(req.sectorRangeWithin(102));
            assertTrue(req.sectorRangeWithin(1000));
            assertFalse(req.sectorRangeWithin(101));
            assertFalse(req.sectorRangeWithin(50));
        }
    }

    @Test
    void shouldRejectSectorRangeWhenSectorIsHuge() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_IN, -1L);
            g.addChain(r(hdr, 16), w(g.alloc(512), 512), w(g.alloc(1), 1));
            VirtioBlkRequest req = popAndParse(g, true);

            assertEquals(-1L, req.sector());
            assertFalse(req.sectorRangeWithin(Long.MAX_VALUE));
        }
    }

    @Test
    void shouldAcceptUnknownTypeSoCallerCanAnswerUnsupp() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, 0x7777, 0);
            g.addChain(r(hdr, 16), w(g.alloc(1), 1));

            VirtioBlkRequest req = popAndParse(g, true);

            assertEquals(0x7777, req.type());
            assertTrue(req.hasStatus());
        }
    }

    // ---- hostile requests ----

    /** A hostile request: builds the chain and returns the status gpa (or -1), then the expected outcome. */
    record Hostile(String name, Function<FakeGuest, Long> guest, int error, boolean hasStatus) {
        @Override
        public String toString() {
            return name;
        }
    }

    private static long header(FakeGuest g, int type) {
        long hdr = g.alloc(16);
        g.writeBlkHeader(hdr, type, 0);
        return hdr;
    }

    static Stream<Arguments> hostileRequests() {
        return Stream.of(
                        new Hostile(
                                "header in a writable descriptor",
                                g -> {
                                    long status = g.alloc(1);
                                    g.addChain(w(header(g, VIRTIO_BLK_T_IN), 16), w(g.alloc(512), 512), w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.HEADER_NOT_READABLE,
                                true),
                        new Hostile(
                                "header half writable",
                                g -> {
                                    long hdr = header(g, VIRTIO_BLK_T_IN);
                                    long status = g.alloc(1);
                                    g.addChain(r(hdr, 8), w(hdr + 8, 8), w(g.alloc(512), 512), w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.HEADER_NOT_READABLE,
                                true),
                        new Hostile(
                                "header shorter than 16 bytes",
                                g -> {
                                    long status = g.alloc(1);
                                    g.addChain(r(header(g, VIRTIO_BLK_T_FLUSH), 8), w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.HEADER_TRUNCATED,
                                true),
                        new Hostile(
                                "status in a readable descriptor",
                                g -> {
                                    g.addChain(
                                            r(header(g, VIRTIO_BLK_T_OUT), 16), r(g.alloc(512), 512), r(g.alloc(1), 1));
                                    return -1L;
                                },
                                VirtioBlkRequestError.STATUS_NOT_WRITABLE,
                                false),
                        new Hostile(
                                "status missing: one readable descriptor",
                                g -> {
                                    g.addChain(r(header(g, VIRTIO_BLK_T_FLUSH), 16));
                                    return -1L;
                                },
                                VirtioBlkRequestError.STATUS_NOT_WRITABLE,
                                false),
                        new Hostile(
                                "IN with a readable data buffer",
                                g -> {
                                    long status = g.alloc(1);
                                    g.addChain(r(header(g, VIRTIO_BLK_T_IN), 16), r(g.alloc(512), 512), w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.DATA_NOT_WRITABLE,
                                true),
                        new Hostile(
                                "GET_ID with data in the header descriptor",
                                g -> {
                                    long hdr = g.alloc(16 + 20);
                                    g.writeBlkHeader(hdr, VIRTIO_BLK_T_GET_ID, 0);
                                    long status = g.alloc(1);
                                    g.addChain(r(hdr, 36), w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.DATA_NOT_WRITABLE,
                                true),
                        new Hostile(
                                "OUT with a writable data buffer",
                                g -> {
                                    long status = g.alloc(1);
                                    g.addChain(r(header(g, VIRTIO_BLK_T_OUT), 16), w(g.alloc(512), 512), w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.DATA_NOT_READABLE,
                                true),
                        new Hostile(
                                "OUT with data sharing the status descriptor",
                                g -> {
                                    long buf = g.alloc(513);
                                    g.addChain(r(header(g, VIRTIO_BLK_T_OUT), 16), w(buf, 513));
                                    return buf + 512;
                                },
                                VirtioBlkRequestError.DATA_NOT_READABLE,
                                true),
                        new Hostile(
                                "IN with data not a multiple of 512",
                                g -> {
                                    long status = g.alloc(1);
                                    g.addChain(r(header(g, VIRTIO_BLK_T_IN), 16), w(g.alloc(511), 511), w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.DATA_LENGTH_INVALID,
                                true),
                        new Hostile(
                                "DISCARD without segments",
                                g -> {
                                    long status = g.alloc(1);
                                    g.addChain(r(header(g, VIRTIO_BLK_T_DISCARD), 16), w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.DATA_LENGTH_INVALID,
                                true),
                        new Hostile(
                                "WRITE_ZEROES with a partial segment",
                                g -> {
                                    long status = g.alloc(1);
                                    g.addChain(
                                            r(header(g, VIRTIO_BLK_T_WRITE_ZEROES), 16),
                                            r(g.alloc(24), 24),
                                            w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.DATA_LENGTH_INVALID,
                                true),
                        new Hostile(
                                "malformed chain whose last descriptor is readable: the writable one before is no status",
                                g -> {
                                    g.addChain(r(header(g, VIRTIO_BLK_T_IN), 16), w(g.alloc(1), 1), r(g.alloc(16), 16));
                                    return -1L;
                                },
                                VirtioBlkRequestError.CHAIN_MALFORMED,
                                false),
                        new Hostile(
                                "malformed chain: data outside guest memory, status reachable",
                                g -> {
                                    long status = g.alloc(1);
                                    g.addChain(r(header(g, VIRTIO_BLK_T_OUT), 16), r(0x4000_0000L, 512), w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.CHAIN_MALFORMED,
                                true),
                        new Hostile(
                                "malformed chain: the last segment translated is data, the status is found after it",
                                g -> {
                                    long status = g.alloc(1);
                                    g.addChain(
                                            r(header(g, VIRTIO_BLK_T_IN), 16),
                                            w(g.alloc(512), 512),
                                            w(0x4000_0000L, 512),
                                            w(status, 1));
                                    return status;
                                },
                                VirtioBlkRequestError.CHAIN_MALFORMED,
                                true),
                        new Hostile(
                                "malformed chain: indirect inside indirect, status in the same table",
                                g -> {
                                    long status = g.alloc(1);
                                    long inner = g.writeIndirectTable(r(g.alloc(16), 16));
                                    long table = g.writeIndirectTable(
                                            r(header(g, VIRTIO_BLK_T_IN), 16), r(g.alloc(16), 16), w(status, 1));
                                    g.writeDesc(
                                            g.at(table, 48),
                                            1,
                                            inner,
                                            16,
                                            SplitRingDescriptor.VIRTQ_DESC_F_INDIRECT
                                                    | SplitRingDescriptor.VIRTQ_DESC_F_NEXT,
                                            2);
                                    g.writeDesc(0, table, 48, SplitRingDescriptor.VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                    return status;
                                },
                                VirtioBlkRequestError.CHAIN_MALFORMED,
                                true),
                        new Hostile(
                                "malformed chain: status outside guest memory",
                                g -> {
                                    g.addChain(r(header(g, VIRTIO_BLK_T_IN), 16), w(0x4000_0000L, 1));
                                    return -1L;
                                },
                                VirtioBlkRequestError.CHAIN_MALFORMED,
                                false),
                        new Hostile(
                                "malformed chain with nothing translated",
                                g -> {
                                    g.addChain(r(0x4000_0000L, 16));
                                    return -1L;
                                },
                                VirtioBlkRequestError.CHAIN_MALFORMED,
                                false))
                .map(Arguments::of);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("hostileRequests")
    void shouldRejectRequestAndWriteOnlyStatusWhenGuestIsHostile(Hostile c) {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, true)) {
            long status = c.guest().apply(g);
            SplitVirtqueue q = g.queue(false, 256);
            DescriptorChain chain = new DescriptorChain(256);
            q.pop(chain);
            VirtioBlkRequest req = new VirtioBlkRequest(256);
            byte[] expected = g.snapshot();
            if (c.hasStatus()) {
                expected[g.snapshotIndex(status)] = VIRTIO_BLK_S_IOERR;
            }

            assertFalse(req.parse(chain, g.memory()), c.name());
            req.writeStatus(g.memory(), VIRTIO_BLK_S_IOERR);

            assertEquals(VirtioBlkRequestError.name(c.error()), req.errorName(), c.name());
            assertEquals(c.error(), req.error());
            assertEquals(c.hasStatus(), req.hasStatus());
            if (c.hasStatus()) {
                assertEquals(status, req.statusGpa());
            }
            assertArrayEquals(expected, g.snapshot(), "only the status byte may change");
        }
    }

    @Test
    void shouldRejectRequestWhenMoreDataSegmentsThanCapacity() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_OUT, 0);
            g.addChain(r(hdr, 16), r(g.alloc(512), 512), r(g.alloc(512), 512), r(g.alloc(512), 512), w(g.alloc(1), 1));
            DescriptorChain chain = new DescriptorChain(8);
            g.queue(false, 8).pop(chain);
            VirtioBlkRequest req = new VirtioBlkRequest(2);

            assertFalse(req.parse(chain, g.memory()));

            assertEquals(VirtioBlkRequestError.TOO_MANY_SEGMENTS, req.error());
            assertTrue(req.hasStatus());
        }
    }

    @Test
    void shouldResetPreviousResultWhenReused() {
        try (FakeGuest g = new FakeGuest(QUEUE_SIZE, false)) {
            long hdr = g.alloc(16);
            g.writeBlkHeader(hdr, VIRTIO_BLK_T_IN, 5);
            g.addChain(r(hdr, 16), w(g.alloc(512), 512), w(g.alloc(1), 1));
            g.addChain(r(g.alloc(16), 16));
            SplitVirtqueue q = g.queue(false, 8);
            DescriptorChain chain = new DescriptorChain(8);
            VirtioBlkRequest req = new VirtioBlkRequest(8);
            q.pop(chain);
            assertTrue(req.parse(chain, g.memory()));

            q.pop(chain);
            assertFalse(req.parse(chain, g.memory()));

            assertEquals(VirtioBlkRequestError.STATUS_NOT_WRITABLE, req.error());
            assertEquals(0, req.dataSegmentCount());
            assertEquals(0, req.dataLengthBytes());
            assertEquals(-1, req.type());
            assertFalse(req.hasStatus());
        }
    }
}
