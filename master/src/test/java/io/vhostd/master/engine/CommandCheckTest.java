package io.vhostd.master.engine;

import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_DATASET_MANAGEMENT;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_FLUSH;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_READ;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_WRITE;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES;
import static io.vhostd.shm.virtnvme.VirtNvmeStatus.INVALID_FIELD;
import static io.vhostd.shm.virtnvme.VirtNvmeStatus.INVALID_OPCODE;
import static io.vhostd.shm.virtnvme.VirtNvmeStatus.LBA_OUT_OF_RANGE;
import static io.vhostd.shm.virtnvme.VirtNvmeStatus.SUCCESS;
import static io.vhostd.shm.virtnvme.VirtNvmeStatus.WRITE_FAULT;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@link CommandCheck} on commands that went through a real VirtNvme queue pair (formatted in an {@link Arena}
 * segment, submitted, fetched by {@code pollSubmissions}), against a {@link RegionTable} whose region is memory this
 * process allocated ({@link RegionTable#registerSegment}). Pure Java: no system call.
 */
@Timeout(10)
class CommandCheckTest {
    private static final int NSID = 1;
    private static final int REGION_ID = 5;
    private static final int UNKNOWN_REGION_ID = 6;
    private static final int REGION_BYTES = 64 * 1024;
    private static final long BDEV_BYTES = 1024 * 1024;
    private static final int DEPTH = 8;
    private static final int MAX_SEGMENTS = 64;
    private static final int CID = 3;
    private static final int QPAIR_ID = 9;
    private static final ValueLayout.OfShort U16_LE = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Arena arena = Arena.ofConfined();
    private final RegionTable regions = new RegionTable();
    private final long[] addresses = new long[MAX_SEGMENTS];
    private final long[] lengths = new long[MAX_SEGMENTS];
    private MemorySegment region;
    private MemorySegment qpMemory;
    private VirtNvmeQueuePair qp;

    /** One data segment as the slave names it. */
    record Seg(int regionId, long regionOffset, int lengthBytes) {}

    /** An SQE to submit, and what to corrupt in it afterwards (as a faulty slave would). */
    record Sqe(int opcode, int nsid, long offsetBytes, int lengthBytes, List<Seg> segs, Corruption corruption) {}

    /** A raw rewrite of the submitted SQE in shared memory. */
    @FunctionalInterface
    interface Corruption {
        void apply(MemorySegment qpMemory, long sqeOffset);
    }

    /** One row of the table. */
    record Case(String name, boolean readOnly, Sqe sqe, int expectedStatus) {
        @Override
        public String toString() {
            return name + " -> " + VirtNvmeStatus.name(expectedStatus);
        }
    }

    @BeforeEach
    void setUp() {
        region = arena.allocate(REGION_BYTES, 4096);
        regions.registerSegment(REGION_ID, region);
        qpMemory = arena.allocate(VirtNvmeDescriptor.lengthBytes(DEPTH, MAX_SEGMENTS), 64);
        qp = VirtNvmeQueuePair.format(qpMemory, QPAIR_ID, DEPTH, MAX_SEGMENTS);
    }

    @AfterEach
    void tearDown() {
        regions.close();
        arena.close();
    }

    private static Sqe sqe(int opcode, long offsetBytes, int lengthBytes, Seg... segs) {
        return new Sqe(opcode, NSID, offsetBytes, lengthBytes, List.of(segs), null);
    }

    private static Seg seg(long regionOffset, int lengthBytes) {
        return new Seg(REGION_ID, regionOffset, lengthBytes);
    }

    private static Seg[] sectors(int count) {
        Seg[] segs = new Seg[count];
        for (int i = 0; i < count; i++) {
            // every other sector: the segments are not contiguous in the region
            segs[i] = seg(1024L * i, 512);
        }
        return segs;
    }

    private static Case ok(String name, Sqe sqe) {
        return new Case(name, false, sqe, SUCCESS);
    }

    private static Case bad(String name, Sqe sqe, int status) {
        return new Case(name, false, sqe, status);
    }

    private static Case readOnly(String name, Sqe sqe, int status) {
        return new Case(name, true, sqe, status);
    }

    static Stream<Case> cases() {
        List<Case> cases = new ArrayList<>();
        // good commands
        cases.add(ok("read, one segment", sqe(NVME_OPC_READ, 4096, 4096, seg(0, 4096))));
        cases.add(ok("write, two segments", sqe(NVME_OPC_WRITE, 8192, 4096, seg(0, 512), seg(8192, 3584))));
        cases.add(ok("read, 40 indirect segments", sqe(NVME_OPC_READ, 0, 40 * 512, sectors(40))));
        cases.add(ok("write, 64 indirect segments", sqe(NVME_OPC_WRITE, 0, 64 * 512, sectors(64))));
        cases.add(ok("read of the last sector", sqe(NVME_OPC_READ, BDEV_BYTES - 512, 512, seg(0, 512))));
        cases.add(ok("read of the whole bdev", sqe(NVME_OPC_READ, 0, (int) BDEV_BYTES, wholeRegion(16))));
        cases.add(ok("segment ending at the region end", sqe(NVME_OPC_READ, 0, 512, seg(REGION_BYTES - 512, 512))));
        cases.add(ok("flush", sqe(NVME_OPC_FLUSH, 0, 0)));
        cases.add(ok("flush ignores offset and length", sqe(NVME_OPC_FLUSH, 3, 7)));
        cases.add(ok("write zeroes", sqe(NVME_OPC_WRITE_ZEROES, 0, 65536)));
        cases.add(ok("write zeroes up to the end", sqe(NVME_OPC_WRITE_ZEROES, 512, (int) BDEV_BYTES - 512)));
        cases.add(ok("discard", sqe(NVME_OPC_DATASET_MANAGEMENT, 4096, 8192)));
        // volume
        cases.add(
                bad("wrong nsid", new Sqe(NVME_OPC_READ, NSID + 1, 0, 512, List.of(seg(0, 512)), null), INVALID_FIELD));
        // opcode
        cases.add(bad("unknown opcode 0x7f", sqe(0x7F, 0, 512, seg(0, 512)), INVALID_OPCODE));
        cases.add(bad("NVMe compare (0x05) is not in version 1", sqe(0x05, 0, 512, seg(0, 512)), INVALID_OPCODE));
        cases.add(bad("unknown opcode 0xff without segments", sqe(0xFF, 0, 0), INVALID_OPCODE));
        // alignment and length
        cases.add(bad("read offset not 512-aligned", sqe(NVME_OPC_READ, 100, 512, seg(0, 512)), INVALID_FIELD));
        cases.add(bad("write length not a multiple of 512", sqe(NVME_OPC_WRITE, 0, 1000, seg(0, 1000)), INVALID_FIELD));
        cases.add(bad("write length 0", sqe(NVME_OPC_WRITE, 0, 0, seg(0, 0)), INVALID_FIELD));
        cases.add(bad("read without segments", sqe(NVME_OPC_READ, 0, 512), INVALID_FIELD));
        cases.add(bad("write zeroes length 0", sqe(NVME_OPC_WRITE_ZEROES, 0, 0), INVALID_FIELD));
        cases.add(bad("discard offset not 512-aligned", sqe(NVME_OPC_DATASET_MANAGEMENT, 511, 512), INVALID_FIELD));
        // range against the bdev
        cases.add(bad("read at the bdev end", sqe(NVME_OPC_READ, BDEV_BYTES, 512, seg(0, 512)), LBA_OUT_OF_RANGE));
        cases.add(bad(
                "read across the bdev end",
                sqe(NVME_OPC_READ, BDEV_BYTES - 512, 1024, seg(0, 1024)),
                LBA_OUT_OF_RANGE));
        cases.add(bad(
                "offset + length overflows near Long.MAX_VALUE",
                sqe(NVME_OPC_WRITE, Long.MAX_VALUE - 511, 1024, seg(0, 1024)),
                LBA_OUT_OF_RANGE));
        cases.add(bad(
                "offset at or beyond 2^63 (u64, negative as long)",
                sqe(NVME_OPC_READ, -512L, 1024, seg(0, 1024)),
                LBA_OUT_OF_RANGE));
        cases.add(bad(
                "write zeroes length u32 max, past the end",
                sqe(NVME_OPC_WRITE_ZEROES, 0, 0xFFFF_FE00),
                LBA_OUT_OF_RANGE));
        cases.add(bad(
                "discard offset + length overflows",
                sqe(NVME_OPC_DATASET_MANAGEMENT, Long.MAX_VALUE - 511, 4096),
                LBA_OUT_OF_RANGE));
        // segments against the region table
        cases.add(bad(
                "segment region unknown",
                sqe(NVME_OPC_READ, 0, 512, new Seg(UNKNOWN_REGION_ID, 0, 512)),
                INVALID_FIELD));
        cases.add(bad(
                "second segment's region unknown",
                sqe(NVME_OPC_WRITE, 0, 1024, seg(0, 512), new Seg(UNKNOWN_REGION_ID, 0, 512)),
                INVALID_FIELD));
        cases.add(bad(
                "segment beyond the region end",
                sqe(NVME_OPC_READ, 0, 1024, seg(REGION_BYTES - 512, 1024)),
                INVALID_FIELD));
        cases.add(bad(
                "segment starting at the region end",
                sqe(NVME_OPC_READ, 0, 512, seg(REGION_BYTES, 512)),
                INVALID_FIELD));
        cases.add(bad(
                "segment offset + length overflows near Long.MAX_VALUE",
                sqe(NVME_OPC_READ, 0, 512, seg(Long.MAX_VALUE, 512)),
                INVALID_FIELD));
        cases.add(bad(
                "segment offset at or beyond 2^63 (u64, negative as long)",
                sqe(NVME_OPC_READ, 0, 1024, seg(-512L, 1024)),
                INVALID_FIELD));
        cases.add(bad(
                "indirect segment beyond the region end",
                sqe(NVME_OPC_WRITE, 0, 3 * 512, seg(0, 512), seg(1024, 512), seg(REGION_BYTES, 512)),
                INVALID_FIELD));
        cases.add(bad(
                "sum of segments below the length",
                sqe(NVME_OPC_READ, 0, 4096, seg(0, 512), seg(1024, 512)),
                INVALID_FIELD));
        cases.add(bad(
                "sum of segments above the length",
                sqe(NVME_OPC_WRITE, 0, 512, seg(0, 512), seg(1024, 512)),
                INVALID_FIELD));
        cases.add(bad("flush with a segment", sqe(NVME_OPC_FLUSH, 0, 512, seg(0, 512)), INVALID_FIELD));
        cases.add(bad("write zeroes with a segment", sqe(NVME_OPC_WRITE_ZEROES, 0, 512, seg(0, 512)), INVALID_FIELD));
        // SQE syntax rewritten by a faulty slave after submit
        cases.add(bad(
                "inline segment count above 2 without the indirect flag",
                new Sqe(
                        NVME_OPC_READ,
                        NSID,
                        0,
                        1024,
                        List.of(seg(0, 512), seg(1024, 512)),
                        (m, sqe) -> m.set(U16_LE, sqe + VirtNvmeDescriptor.SQE_SEGMENT_COUNT_OFFSET, (short) 3)),
                INVALID_FIELD));
        cases.add(bad(
                "indirect segment count above maxSegments",
                new Sqe(
                        NVME_OPC_READ,
                        NSID,
                        0,
                        3 * 512,
                        List.of(sectors(3)),
                        (m, sqe) -> m.set(
                                U16_LE, sqe + VirtNvmeDescriptor.SQE_SEGMENT_COUNT_OFFSET, (short) (MAX_SEGMENTS + 1))),
                INVALID_FIELD));
        cases.add(bad(
                "reserved flag bit set",
                new Sqe(
                        NVME_OPC_READ,
                        NSID,
                        0,
                        512,
                        List.of(seg(0, 512)),
                        (m, sqe) ->
                                m.set(ValueLayout.JAVA_BYTE, sqe + VirtNvmeDescriptor.SQE_FLAGS_OFFSET, (byte) 0x80)),
                INVALID_FIELD));
        // read-only bdev
        cases.add(readOnly("write to a read-only bdev", sqe(NVME_OPC_WRITE, 0, 512, seg(0, 512)), WRITE_FAULT));
        cases.add(readOnly("write zeroes to a read-only bdev", sqe(NVME_OPC_WRITE_ZEROES, 0, 512), WRITE_FAULT));
        cases.add(readOnly("discard on a read-only bdev", sqe(NVME_OPC_DATASET_MANAGEMENT, 0, 512), WRITE_FAULT));
        cases.add(readOnly("read from a read-only bdev", sqe(NVME_OPC_READ, 0, 512, seg(0, 512)), SUCCESS));
        cases.add(readOnly("flush of a read-only bdev", sqe(NVME_OPC_FLUSH, 0, 0), SUCCESS));
        return cases.stream();
    }

    /** {@code count} segments, each the whole region (a read may fill the same buffer twice). */
    private static Seg[] wholeRegion(int count) {
        Seg[] segs = new Seg[count];
        for (int i = 0; i < count; i++) {
            segs[i] = seg(0, REGION_BYTES);
        }
        return segs;
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void shouldAnswerExpectedStatusWhenCommandChecked(Case c) {
        Bdev bdev = bdev(c.readOnly());

        int status = submitAndCheck(c.sqe(), bdev);

        assertEquals(
                VirtNvmeStatus.name(c.expectedStatus()),
                VirtNvmeStatus.name(status),
                c.name() + ": status field 0x" + Integer.toHexString(status));
    }

    @Test
    void shouldResolveEachSegmentToItsAddressWhenCommandIsGood() {
        Seg[] segs = {seg(0, 512), seg(8192, 1024), seg(REGION_BYTES - 512, 512)};

        int status = submitAndCheck(sqe(NVME_OPC_WRITE, 4096, 2048, segs), bdev(false));

        assertEquals(SUCCESS, status);
        for (int i = 0; i < segs.length; i++) {
            assertEquals(region.address() + segs[i].regionOffset(), addresses[i], "address of segment " + i);
            assertEquals(segs[i].lengthBytes(), lengths[i], "length of segment " + i);
        }
    }

    @Test
    void shouldAnswerInvalidFieldWhenMoreSegmentsThanTheEngineResolves() {
        long[] twoAddresses = new long[2];
        long[] twoLengths = new long[2];
        int[] status = {-1};
        submit(sqe(NVME_OPC_READ, 0, 3 * 512, sectors(3)));

        qp.pollSubmissions(
                command ->
                        status[0] = CommandCheck.check(command, bdev(false), NSID, regions, twoAddresses, twoLengths),
                1);

        assertEquals(INVALID_FIELD, status[0]);
    }

    @Test
    void shouldAnswerInvalidFieldWhenRegionWasUnregistered() {
        assertTrue(regions.unregister(REGION_ID));
        assertNull(regions.lookup(REGION_ID));
        assertFalse(regions.unregister(REGION_ID), "second unregister");

        int status = submitAndCheck(sqe(NVME_OPC_READ, 0, 512, seg(0, 512)), bdev(false));

        assertEquals(INVALID_FIELD, status);
        // the table does not own a registered segment: the memory is still usable
        region.set(ValueLayout.JAVA_LONG, 0, 42L);
        assertEquals(42L, region.get(ValueLayout.JAVA_LONG, 0));
    }

    @Test
    void shouldRefuseSegmentRegionWhenIdInUseOrMemoryNotNative() {
        assertThrows(IllegalArgumentException.class, () -> regions.registerSegment(REGION_ID, region));
        assertThrows(
                IllegalArgumentException.class,
                () -> regions.registerSegment(UNKNOWN_REGION_ID, MemorySegment.ofArray(new byte[512])));
        assertThrows(
                IllegalArgumentException.class, () -> regions.registerSegment(UNKNOWN_REGION_ID, region.asSlice(0, 0)));
        assertEquals(1, regions.size());
        assertSame(region, regions.lookup(REGION_ID));
    }

    private static Bdev bdev(boolean readOnly) {
        return new Bdev("b0", "file", "/nonexistent", -1, BDEV_BYTES, 512, readOnly, false);
    }

    private int submitAndCheck(Sqe sqe, Bdev bdev) {
        submit(sqe);
        int[] status = {-1};
        int fetched = qp.pollSubmissions(
                command -> status[0] = CommandCheck.check(command, bdev, NSID, regions, addresses, lengths), 1);
        assertEquals(1, fetched, "SQEs fetched");
        return status[0];
    }

    private void submit(Sqe sqe) {
        int n = sqe.segs().size();
        int[] regionIds = new int[n];
        long[] regionOffsets = new long[n];
        int[] segmentLengths = new int[n];
        for (int i = 0; i < n; i++) {
            regionIds[i] = sqe.segs().get(i).regionId();
            regionOffsets[i] = sqe.segs().get(i).regionOffset();
            segmentLengths[i] = sqe.segs().get(i).lengthBytes();
        }
        long sqeOffset = VirtNvmeDescriptor.sqeOffset(qp.sqTailIndex() & (DEPTH - 1));
        assertTrue(qp.submit(
                sqe.opcode(),
                0,
                CID,
                sqe.nsid(),
                sqe.offsetBytes(),
                sqe.lengthBytes(),
                n,
                regionIds,
                regionOffsets,
                segmentLengths));
        if (sqe.corruption() != null) {
            sqe.corruption().apply(qpMemory, sqeOffset);
        }
        qp.publishSubmissions();
    }
}
