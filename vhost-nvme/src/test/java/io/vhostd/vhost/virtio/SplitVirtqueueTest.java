package io.vhostd.vhost.virtio;

import static io.vhostd.vhost.virtio.FakeGuest.Buf.r;
import static io.vhostd.vhost.virtio.FakeGuest.Buf.w;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_INDIRECT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_WRITE;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.function.Consumer;
import java.util.function.ToLongFunction;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

@Timeout(10)
class SplitVirtqueueTest {

    private static final int SIZE = 16;
    private static final long UNMAPPED_GPA = 0x4000_0000L;

    // ---- hostile chains: every one is POP_MALFORMED with an exact error, and pop writes nothing ----

    /** A hostile case: what the guest writes, the expected error, the expected head. */
    record Hostile(String name, Consumer<FakeGuest> guest, int error, int head, int maxSegments) {
        Hostile(String name, Consumer<FakeGuest> guest, int error, int head) {
            this(name, guest, error, head, 64);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Arguments> hostileChains() {
        return Stream.of(
                        new Hostile(
                                "loop: next points back",
                                g -> {
                                    long b = g.alloc(64);
                                    g.writeDesc(0, b, 16, VIRTQ_DESC_F_NEXT, 1);
                                    g.writeDesc(1, b + 16, 16, VIRTQ_DESC_F_NEXT, 0);
                                    g.publish(0);
                                },
                                ChainError.LOOP,
                                0),
                        new Hostile(
                                "chain longer than queue: self loop",
                                g -> {
                                    g.writeDesc(3, g.alloc(16), 16, VIRTQ_DESC_F_NEXT, 3);
                                    g.publish(3);
                                },
                                ChainError.LOOP,
                                3),
                        new Hostile(
                                "chain longer than an indirect table: last entry points back",
                                g -> {
                                    long b = g.alloc(16);
                                    long t = g.writeIndirectTable(r(b, 1), r(b, 1), r(b, 1));
                                    g.writeDesc(g.at(t, 48), 2, b, 1, VIRTQ_DESC_F_NEXT, 0);
                                    g.writeDesc(2, t, 48, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(2);
                                },
                                ChainError.LOOP,
                                2),
                        new Hostile(
                                "next index >= queue size",
                                g -> {
                                    g.writeDesc(0, g.alloc(16), 16, VIRTQ_DESC_F_NEXT, SIZE);
                                    g.publish(0);
                                },
                                ChainError.DESC_OUT_OF_RANGE,
                                0),
                        new Hostile(
                                "avail ring head >= queue size",
                                g -> g.publish(SIZE),
                                ChainError.DESC_OUT_OF_RANGE,
                                -1),
                        new Hostile("avail ring head 0xFFFF", g -> g.publish(0xFFFF), ChainError.DESC_OUT_OF_RANGE, -1),
                        new Hostile(
                                "indirect next >= table length",
                                g -> {
                                    long b = g.alloc(16);
                                    long t = g.writeIndirectTable(r(b, 4), w(b + 4, 4));
                                    g.writeDesc(g.at(t, 32), 1, b + 4, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
                                    g.writeDesc(5, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(5);
                                },
                                ChainError.DESC_OUT_OF_RANGE,
                                5),
                        new Hostile(
                                "address outside every region",
                                g -> g.addChain(r(UNMAPPED_GPA, 16)),
                                ChainError.ADDRESS_NOT_MAPPED,
                                0),
                        new Hostile(
                                "address below every region",
                                g -> g.addChain(r(0x1000, 16)),
                                ChainError.ADDRESS_NOT_MAPPED,
                                0),
                        new Hostile(
                                "buffer runs past the last region",
                                g -> g.addChain(w(FakeGuest.END_GPA - 8, 16)),
                                ChainError.ADDRESS_NOT_MAPPED,
                                0),
                        new Hostile(
                                "addr + len overflows 2^64",
                                g -> g.addChain(r(0xFFFFFFFFFFFFF000L, 0x2000)),
                                ChainError.LENGTH_OVERFLOW,
                                0),
                        new Hostile(
                                "buffer ending at 2^64 is unmapped, not an overflow",
                                g -> g.addChain(r(0xFFFFFFFFFFFFF000L, 0x1000)),
                                ChainError.ADDRESS_NOT_MAPPED,
                                0),
                        new Hostile(
                                "indirect inside indirect",
                                g -> {
                                    long inner = g.writeIndirectTable(r(g.alloc(16), 16));
                                    long outer = g.alloc(16);
                                    g.writeDesc(g.at(outer, 16), 0, inner, 16, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.writeDesc(0, outer, 16, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                },
                                ChainError.NESTED_INDIRECT,
                                0),
                        new Hostile(
                                "indirect table len 0",
                                g -> {
                                    g.writeDesc(0, g.alloc(16), 0, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                },
                                ChainError.BAD_INDIRECT_TABLE,
                                0),
                        new Hostile(
                                "indirect table len not a multiple of 16",
                                g -> {
                                    g.writeDesc(0, g.alloc(32), 24, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                },
                                ChainError.BAD_INDIRECT_TABLE,
                                0),
                        new Hostile(
                                "indirect table outside every region",
                                g -> {
                                    g.writeDesc(0, UNMAPPED_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                },
                                ChainError.BAD_INDIRECT_TABLE,
                                0),
                        new Hostile(
                                "indirect table straddles two regions",
                                g -> {
                                    g.writeDesc(0, FakeGuest.REGION1_GPA - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                },
                                ChainError.BAD_INDIRECT_TABLE,
                                0),
                        new Hostile(
                                "indirect table with more entries than the queue size",
                                g -> {
                                    g.writeDesc(0, g.alloc(16 * (SIZE + 1)), 16 * (SIZE + 1), VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                },
                                ChainError.BAD_INDIRECT_TABLE,
                                0),
                        new Hostile(
                                "indirect table len 0xFFFFFFF0 at the top of the address space",
                                g -> {
                                    g.writeDesc(0, 0xFFFFFFFFFFFFFF00L, 0xFFFFFFF0, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                },
                                ChainError.BAD_INDIRECT_TABLE,
                                0),
                        new Hostile(
                                "NEXT and INDIRECT together",
                                g -> {
                                    long t = g.writeIndirectTable(r(g.alloc(16), 16));
                                    g.writeDesc(0, t, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
                                    g.writeDesc(1, g.alloc(16), 16, VIRTQ_DESC_F_WRITE, 0);
                                    g.publish(0);
                                },
                                ChainError.NEXT_AND_INDIRECT,
                                0),
                        new Hostile(
                                "zero-length buffer",
                                g -> g.addChain(r(g.alloc(16), 16), r(g.alloc(16), 0)),
                                ChainError.ZERO_LENGTH,
                                0),
                        new Hostile(
                                "readable descriptor after a writable one",
                                g -> g.addChain(r(g.alloc(16), 16), w(g.alloc(16), 16), r(g.alloc(16), 16)),
                                ChainError.WRITABLE_BEFORE_READABLE,
                                0),
                        new Hostile(
                                "readable descriptor after a writable one inside an indirect table",
                                g -> g.addIndirectChain(w(g.alloc(16), 16), r(g.alloc(16), 16)),
                                ChainError.WRITABLE_BEFORE_READABLE,
                                0),
                        new Hostile(
                                "more segments than maxSegments",
                                g -> g.addChain(
                                        r(g.alloc(8), 8),
                                        r(g.alloc(8), 8),
                                        r(g.alloc(8), 8),
                                        r(g.alloc(8), 8),
                                        w(g.alloc(8), 8)),
                                ChainError.TOO_MANY_SEGMENTS,
                                0,
                                4),
                        new Hostile(
                                "region crossing makes one descriptor too many segments",
                                g -> g.addChain(
                                        r(g.alloc(8), 8),
                                        r(g.alloc(8), 8),
                                        r(g.alloc(8), 8),
                                        w(FakeGuest.REGION1_GPA - 8, 16)),
                                ChainError.TOO_MANY_SEGMENTS,
                                0,
                                4))
                .map(Arguments::of);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("hostileChains")
    void shouldRejectChainWithExactErrorAndWriteNothingWhenGuestIsHostile(Hostile c) {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            c.guest().accept(g);
            SplitVirtqueue q = g.queue(false, c.maxSegments());
            DescriptorChain chain = new DescriptorChain(64);
            byte[] before = g.snapshot();

            int rc = q.pop(chain);

            assertEquals(SplitVirtqueue.POP_MALFORMED, rc, c.name());
            assertEquals(ChainError.name(c.error()), chain.errorName(), c.name());
            assertEquals(c.error(), chain.error());
            assertEquals(c.head(), chain.head());
            assertEquals(1, q.lastAvailIdx(), "the entry is consumed");
            assertArrayEquals(before, g.snapshot(), "pop wrote guest memory");
            assertEquals(SplitVirtqueue.POP_EMPTY, q.pop(chain));
        }
    }

    // ---- malformed but walkable chains: the last descriptor (virtio-blk's status byte) is located, or not ----

    /** A malformed chain: what the guest writes (returns the expected last byte's gpa, or -1), the expected error. */
    record LastByte(String name, ToLongFunction<FakeGuest> guest, int error, int maxSegments) {
        LastByte(String name, ToLongFunction<FakeGuest> guest, int error) {
            this(name, guest, error, 64);
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Arguments> malformedChainsLastByte() {
        return Stream.of(
                        new LastByte(
                                "data outside guest memory, status after it",
                                g -> {
                                    long st = g.alloc(1);
                                    g.addChain(r(g.alloc(16), 16), r(UNMAPPED_GPA, 512), w(st, 1));
                                    return st;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "writable data translated, writable data unmapped, status after it",
                                g -> {
                                    long st = g.alloc(1);
                                    g.addChain(
                                            r(g.alloc(16), 16), w(g.alloc(512), 512), w(UNMAPPED_GPA, 512), w(st, 1));
                                    return st;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "addr + len overflows 2^64, status after it",
                                g -> {
                                    long st = g.alloc(1);
                                    g.addChain(r(g.alloc(16), 16), r(0xFFFFFFFFFFFFF000L, 0x2000), w(st, 1));
                                    return st;
                                },
                                ChainError.LENGTH_OVERFLOW),
                        new LastByte(
                                "zero-length data, status after it",
                                g -> {
                                    long st = g.alloc(1);
                                    g.addChain(r(g.alloc(16), 16), r(g.alloc(16), 0), w(st, 1));
                                    return st;
                                },
                                ChainError.ZERO_LENGTH),
                        new LastByte(
                                "readable after writable, status after it",
                                g -> {
                                    long st = g.alloc(16);
                                    g.addChain(r(g.alloc(16), 16), w(g.alloc(16), 16), r(g.alloc(16), 16), w(st, 16));
                                    return st + 15;
                                },
                                ChainError.WRITABLE_BEFORE_READABLE),
                        new LastByte(
                                "too many segments, status after them",
                                g -> {
                                    long st = g.alloc(1);
                                    g.addChain(r(g.alloc(16), 16), r(g.alloc(8), 8), r(g.alloc(8), 8), w(st, 1));
                                    return st;
                                },
                                ChainError.TOO_MANY_SEGMENTS,
                                2),
                        new LastByte(
                                "NEXT and INDIRECT together: the table is ignored, next is followed",
                                g -> {
                                    long st = g.alloc(16);
                                    long t = g.writeIndirectTable(r(g.alloc(16), 16));
                                    g.writeDesc(0, t, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
                                    g.writeDesc(1, st, 16, VIRTQ_DESC_F_WRITE, 0);
                                    g.publish(0);
                                    return st + 15;
                                },
                                ChainError.NEXT_AND_INDIRECT),
                        new LastByte(
                                "indirect inside indirect with NEXT, status later in the same table",
                                g -> {
                                    long st = g.alloc(1);
                                    long inner = g.writeIndirectTable(w(g.alloc(16), 16));
                                    long t = g.writeIndirectTable(r(g.alloc(16), 16), r(g.alloc(16), 16), w(st, 1));
                                    g.writeDesc(
                                            g.at(t, 48), 1, inner, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 2);
                                    g.writeDesc(0, t, 48, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                    return st;
                                },
                                ChainError.NESTED_INDIRECT),
                        new LastByte(
                                "unmapped buffer in an indirect table, status its last entry",
                                g -> {
                                    long st = g.alloc(1);
                                    g.addIndirectChain(r(g.alloc(16), 16), r(UNMAPPED_GPA, 512), w(st, 1));
                                    return st;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "error in the direct part, status in the trailing indirect table",
                                g -> {
                                    long st = g.alloc(1);
                                    long t = g.writeIndirectTable(r(g.alloc(16), 16), w(st, 1));
                                    g.writeDesc(0, UNMAPPED_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
                                    g.writeDesc(1, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                    return st;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "status starts below guest memory, its last byte is inside",
                                g -> {
                                    g.addChain(r(g.alloc(16), 16), w(FakeGuest.REGION0_GPA - 8, 16));
                                    return FakeGuest.REGION0_GPA + 7;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "status outside guest memory",
                                g -> {
                                    g.addChain(r(g.alloc(16), 16), r(UNMAPPED_GPA, 512), w(UNMAPPED_GPA, 1));
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "status runs past the last region",
                                g -> {
                                    g.addChain(r(g.alloc(16), 16), w(FakeGuest.END_GPA - 8, 16));
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "status addr + len overflows 2^64",
                                g -> {
                                    g.addChain(r(g.alloc(16), 16), w(0xFFFFFFFFFFFFFFF0L, 0x20));
                                    return -1;
                                },
                                ChainError.LENGTH_OVERFLOW),
                        new LastByte(
                                "last descriptor readable",
                                g -> {
                                    g.addChain(r(g.alloc(16), 16), r(UNMAPPED_GPA, 16), r(g.alloc(1), 1));
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "last descriptor zero-length",
                                g -> {
                                    g.addChain(r(g.alloc(16), 16), r(UNMAPPED_GPA, 16), w(g.alloc(1), 0));
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "loop after the error",
                                g -> {
                                    g.writeDesc(0, UNMAPPED_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
                                    g.writeDesc(1, g.alloc(1), 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
                                    g.publish(0);
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "next >= queue size after the error",
                                g -> {
                                    g.writeDesc(0, UNMAPPED_GPA, 16, VIRTQ_DESC_F_NEXT, SIZE);
                                    g.publish(0);
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "next >= table entries after the error",
                                g -> {
                                    long t = g.writeIndirectTable(r(UNMAPPED_GPA, 16), w(g.alloc(1), 1));
                                    g.writeDesc(g.at(t, 32), 0, UNMAPPED_GPA, 16, VIRTQ_DESC_F_NEXT, 2);
                                    g.writeDesc(0, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "bad indirect table after the error",
                                g -> {
                                    g.writeDesc(0, UNMAPPED_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
                                    g.writeDesc(1, UNMAPPED_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "chain ends in a table inside a table",
                                g -> {
                                    long inner = g.writeIndirectTable(w(g.alloc(1), 1));
                                    long t = g.writeIndirectTable(r(UNMAPPED_GPA, 16), r(g.alloc(16), 16));
                                    g.writeDesc(g.at(t, 32), 1, inner, 16, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.writeDesc(0, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
                                    g.publish(0);
                                    return -1;
                                },
                                ChainError.ADDRESS_NOT_MAPPED),
                        new LastByte(
                                "loop: writable chain cycles",
                                g -> {
                                    long b = g.alloc(32);
                                    g.writeDesc(0, b, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
                                    g.writeDesc(1, b + 16, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
                                    g.publish(0);
                                    return -1;
                                },
                                ChainError.LOOP))
                .map(Arguments::of);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("malformedChainsLastByte")
    void shouldLocateLastByteOnlyWhenMalformedChainIsStillWalkable(LastByte c) {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            long expected = c.guest().applyAsLong(g);
            SplitVirtqueue q = g.queue(false, c.maxSegments());
            DescriptorChain chain = new DescriptorChain(64);
            byte[] before = g.snapshot();

            assertEquals(SplitVirtqueue.POP_MALFORMED, q.pop(chain), c.name());

            assertEquals(ChainError.name(c.error()), chain.errorName(), c.name());
            assertArrayEquals(before, g.snapshot(), "pop wrote guest memory");
            assertEquals(expected >= 0, chain.lastByteLocated(), c.name());
            if (expected >= 0) {
                assertEquals(expected, chain.lastByteGpa());
                GuestMemoryRegion region = g.memory().region(chain.lastByteRegionIndex());
                assertEquals(expected, region.guestPhysAddr() + chain.lastByteRegionOffset());
            } else {
                assertEquals(-1, chain.lastByteRegionIndex());
            }
        }
    }

    @Test
    void shouldLocateLastByteAfterIndirectDescriptorWithNextWhenIndirectNotNegotiated() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            long st = g.alloc(1);
            long t = g.writeIndirectTable(r(g.alloc(16), 16));
            g.writeDesc(0, t, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
            g.writeDesc(1, st, 1, VIRTQ_DESC_F_WRITE, 0);
            g.publish(0);
            SplitVirtqueue q =
                    new SplitVirtqueue(0, SIZE, g.memory(), g.descGpa, g.availGpa, g.usedGpa, false, 64, false);
            DescriptorChain chain = new DescriptorChain(64);

            assertEquals(SplitVirtqueue.POP_MALFORMED, q.pop(chain));
            assertEquals(ChainError.INDIRECT_NOT_NEGOTIATED, chain.error());
            assertTrue(chain.lastByteLocated());
            assertEquals(st, chain.lastByteGpa());

            // a chain that ends in the table: descriptors 0 and 1 are free again for the fake driver
            g.addIndirectChain(r(g.alloc(16), 16), w(g.alloc(1), 1));
            assertEquals(SplitVirtqueue.POP_MALFORMED, q.pop(chain));
            assertEquals(ChainError.INDIRECT_NOT_NEGOTIATED, chain.error());
            assertFalse(chain.lastByteLocated(), "a table not negotiated is not read");
        }
    }

    @Test
    void shouldClearLastByteWhenNextChainIsWellFormed() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            g.addChain(r(g.alloc(16), 16), r(UNMAPPED_GPA, 16), w(g.alloc(1), 1));
            g.addChain(r(g.alloc(16), 16), w(g.alloc(1), 1));
            SplitVirtqueue q = g.queue(false, 64);
            DescriptorChain chain = new DescriptorChain(64);

            assertEquals(SplitVirtqueue.POP_MALFORMED, q.pop(chain));
            assertTrue(chain.lastByteLocated());
            assertEquals(SplitVirtqueue.POP_OK, q.pop(chain));
            assertFalse(chain.lastByteLocated());
            assertEquals(-1, chain.lastByteRegionIndex());
        }
    }

    @Test
    void shouldKeepSegmentsParsedBeforeErrorWhenChainIsMalformed() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            long hdr = g.alloc(16);
            long status = g.alloc(1);
            g.writeDesc(0, hdr, 16, VIRTQ_DESC_F_NEXT, 1);
            g.writeDesc(1, status, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
            g.publish(0);
            DescriptorChain chain = new DescriptorChain(64);

            assertEquals(SplitVirtqueue.POP_MALFORMED, g.queue(false, 64).pop(chain));

            assertEquals(ChainError.WRITABLE_BEFORE_READABLE, chain.error());
            assertEquals(2, chain.segmentCount());
            assertEquals(status, chain.gpa(1));
            assertTrue(chain.deviceWritable(1));
        }
    }

    @ParameterizedTest(name = "maxSegments {0}")
    @CsvSource({"3, TOO_MANY_SEGMENTS", "64, ADDRESS_NOT_MAPPED"})
    void shouldDropHalfTranslatedBufferWhenItFails(int maxSegments, String error) {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            long hdr = g.alloc(16);
            // crosses region 0 -> region 1 (3rd segment) and, for the second case, runs past region 1
            long len = maxSegments == 3 ? 0x200 : FakeGuest.REGION_SIZE + 0x200;
            g.addChain(r(hdr, 16), w(g.alloc(8), 8), w(FakeGuest.REGION1_GPA - 0x100, (int) len));
            DescriptorChain chain = new DescriptorChain(64);

            assertEquals(
                    SplitVirtqueue.POP_MALFORMED, g.queue(false, maxSegments).pop(chain));

            assertEquals(error, chain.errorName());
            assertEquals(2, chain.segmentCount(), "nothing of the failed buffer is kept");
            assertEquals(16, chain.readableBytes());
            assertEquals(8, chain.writableBytes());
        }
    }

    @Test
    void shouldReportLoopWhenWritableChainCycles() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            long b = g.alloc(32);
            g.writeDesc(0, b, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
            g.writeDesc(1, b + 16, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
            g.publish(0);
            DescriptorChain chain = new DescriptorChain(64);

            assertEquals(SplitVirtqueue.POP_MALFORMED, g.queue(false, 64).pop(chain));

            assertEquals(ChainError.LOOP, chain.error());
            assertEquals(SIZE, chain.segmentCount(), "segments kept up to the cap");
        }
    }

    @Test
    void shouldRejectIndirectWhenNotNegotiated() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            g.addIndirectChain(r(g.alloc(16), 16), w(g.alloc(1), 1));
            SplitVirtqueue q =
                    new SplitVirtqueue(0, SIZE, g.memory(), g.descGpa, g.availGpa, g.usedGpa, false, 64, false);
            DescriptorChain chain = new DescriptorChain(64);

            assertEquals(SplitVirtqueue.POP_MALFORMED, q.pop(chain));

            assertEquals(ChainError.INDIRECT_NOT_NEGOTIATED, chain.error());
            assertFalse(q.indirectDesc());
        }
    }

    @Test
    void shouldThrowAndWriteNothingWhenAvailIdxJumpsMoreThanSizeAhead() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            SplitVirtqueue q = g.queue(false, 64);
            g.availIdx(SIZE + 1);
            byte[] before = g.snapshot();

            assertThrows(IllegalStateException.class, () -> q.pop(new DescriptorChain(4)));
            assertThrows(IllegalStateException.class, q::hasAvail);

            assertArrayEquals(before, g.snapshot());
            assertEquals(0, q.lastAvailIdx());
        }
    }

    @Test
    void shouldAcceptAvailIdxExactlySizeAheadWhenRingIsFull() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            for (int i = 0; i < SIZE; i++) {
                g.addChain(w(g.alloc(8), 8));
            }
            SplitVirtqueue q = g.queue(false, 64);
            DescriptorChain chain = new DescriptorChain(4);
            for (int i = 0; i < SIZE; i++) {
                assertEquals(SplitVirtqueue.POP_OK, q.pop(chain));
                assertEquals(i, chain.head());
            }
            assertEquals(SplitVirtqueue.POP_EMPTY, q.pop(chain));
        }
    }

    // ---- good paths ----

    @Test
    void shouldReturnEmptyWhenNothingAvailable() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            SplitVirtqueue q = g.queue(false, 64);

            assertFalse(q.hasAvail());
            assertEquals(SplitVirtqueue.POP_EMPTY, q.pop(new DescriptorChain(4)));
            assertEquals(0, q.lastAvailIdx());
        }
    }

    @ParameterizedTest(name = "{0} segments")
    @CsvSource({"1", "3", "128"})
    void shouldTranslateDirectChainWhenSegmentsGiven(int segments) {
        try (FakeGuest g = new FakeGuest(256, false)) {
            FakeGuest.Buf[] bufs = new FakeGuest.Buf[segments];
            for (int i = 0; i < segments; i++) {
                int len = 16 + i;
                bufs[i] = i < segments / 2 ? r(g.alloc(len), len) : w(g.alloc(len), len);
            }
            int head = g.addChain(bufs);
            SplitVirtqueue q = g.queue(false, 256);
            DescriptorChain chain = new DescriptorChain(256);

            assertTrue(q.hasAvail());
            assertEquals(SplitVirtqueue.POP_OK, q.pop(chain));

            assertChainMatches(bufs, chain, head);
            assertFalse(chain.indirect());
            assertEquals(segments, chain.descriptorCount());
        }
    }

    @ParameterizedTest(name = "{0} segments")
    @CsvSource({"1", "3", "128"})
    void shouldTranslateIndirectChainWhenSegmentsGiven(int segments) {
        try (FakeGuest g = new FakeGuest(256, false)) {
            FakeGuest.Buf[] bufs = new FakeGuest.Buf[segments];
            for (int i = 0; i < segments; i++) {
                int len = 512;
                bufs[i] = i == 0 ? r(g.alloc(len), len) : w(g.alloc(len), len);
            }
            int head = g.addIndirectChain(bufs);
            DescriptorChain chain = new DescriptorChain(256);

            assertEquals(SplitVirtqueue.POP_OK, g.queue(false, 256).pop(chain));

            assertChainMatches(bufs, chain, head);
            assertTrue(chain.indirect());
            assertEquals(segments + 1, chain.descriptorCount());
        }
    }

    @Test
    void shouldFollowDirectDescriptorsIntoTrailingIndirectTable() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            long hdr = g.alloc(16);
            long data = g.alloc(4096);
            long status = g.alloc(1);
            long table = g.writeIndirectTable(w(data, 4096), w(status, 1));
            g.writeDesc(7, hdr, 16, VIRTQ_DESC_F_NEXT, 9);
            // §2.7.5.3.2: the WRITE flag of the descriptor that refers to the table is ignored
            g.writeDesc(9, table, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
            g.publish(7);
            DescriptorChain chain = new DescriptorChain(8);

            assertEquals(SplitVirtqueue.POP_OK, g.queue(false, 8).pop(chain));

            assertChainMatches(new FakeGuest.Buf[] {r(hdr, 16), w(data, 4096), w(status, 1)}, chain, 7);
            assertTrue(chain.indirect());
        }
    }

    @Test
    void shouldSplitBufferWhenItCrossesTwoRegions() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            long start = FakeGuest.REGION1_GPA - 0x100;
            g.addChain(r(g.alloc(16), 16), w(start, 0x300));
            DescriptorChain chain = new DescriptorChain(8);

            assertEquals(SplitVirtqueue.POP_OK, g.queue(false, 8).pop(chain));

            assertEquals(3, chain.segmentCount());
            assertEquals(FakeGuest.REGION0_ID, chain.regionId(1));
            assertEquals(0, chain.regionIndex(1));
            assertEquals(FakeGuest.REGION_SIZE - 0x100, chain.regionOffset(1));
            assertEquals(0x100, chain.lengthBytes(1));
            assertEquals(FakeGuest.REGION1_ID, chain.regionId(2));
            assertEquals(1, chain.regionIndex(2));
            assertEquals(0, chain.regionOffset(2));
            assertEquals(FakeGuest.REGION1_GPA, chain.gpa(2));
            assertEquals(0x200, chain.lengthBytes(2));
            assertEquals(0x300, chain.writableBytes());
            assertEquals(16, chain.readableBytes());
        }
    }

    @Test
    void shouldMakeUsedElementsVisibleOnlyWhenPublished() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            int h0 = g.addChain(r(g.alloc(16), 16), w(g.alloc(1), 1));
            int h1 = g.addChain(r(g.alloc(16), 16), w(g.alloc(512), 512), w(g.alloc(1), 1));
            SplitVirtqueue q = g.queue(false, 8);
            DescriptorChain chain = new DescriptorChain(8);
            assertEquals(SplitVirtqueue.POP_OK, q.pop(chain));
            assertEquals(SplitVirtqueue.POP_OK, q.pop(chain));

            q.pushUsed(h1, 513);
            q.pushUsed(h0, 1);

            assertEquals(0, g.usedIdx());
            assertEquals(2, q.usedIdx());
            q.publishUsed();
            assertEquals(2, g.usedIdx());
            assertEquals(2, q.usedIdxInRingAcquire());
            assertEquals(h1, g.usedId(0));
            assertEquals(513, g.usedLen(0));
            assertEquals(h0, g.usedId(1));
            assertEquals(1, g.usedLen(1));
        }
    }

    @Test
    void shouldRejectPushOfHeadOutsideQueue() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            SplitVirtqueue q = g.queue(false, 8);
            assertThrows(IllegalArgumentException.class, () -> q.pushUsed(SIZE, 0));
            assertThrows(IllegalArgumentException.class, () -> q.pushUsed(-1, 0));
        }
    }

    @Test
    void shouldWrapU16IndexesWhenStartingAt65530() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            SplitVirtqueue q = g.queue(false, 8);
            q.lastAvailIdx(65530);
            q.usedIdx(65530);
            g.availIdx(65530);
            DescriptorChain chain = new DescriptorChain(8);
            int rounds = 12;
            int[] heads = new int[rounds];
            for (int i = 0; i < rounds; i++) {
                heads[i] = g.addChain(r(g.alloc(16), 16), w(g.alloc(1), 1));
            }
            assertEquals((65530 + rounds) & 0xFFFF, g.availIdx());

            for (int i = 0; i < rounds; i++) {
                assertEquals(SplitVirtqueue.POP_OK, q.pop(chain), "pop " + i);
                assertEquals(heads[i], chain.head());
                q.pushUsed(chain.head(), i);
            }
            assertEquals(SplitVirtqueue.POP_EMPTY, q.pop(chain));
            q.publishUsed();

            assertEquals(6, q.lastAvailIdx());
            assertEquals(6, q.usedIdx());
            assertEquals(6, g.usedIdx());
            for (int i = 0; i < rounds; i++) {
                assertEquals(heads[i], g.usedId(65530 + i));
                assertEquals(i, g.usedLen(65530 + i));
            }
        }
    }

    // ---- notifications ----

    @Test
    void shouldToggleNoNotifyFlagWhenEventIdxNotNegotiated() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            SplitVirtqueue q = g.queue(false, 8);

            q.disableNotifications();
            assertEquals(SplitRingDescriptor.VIRTQ_USED_F_NO_NOTIFY, g.usedFlags());
            assertFalse(q.enableNotifications(), "nothing pending");
            assertEquals(0, g.usedFlags());

            q.disableNotifications();
            g.addChain(w(g.alloc(1), 1));
            assertTrue(q.enableNotifications(), "arrived while kicks were off");
        }
    }

    @Test
    void shouldWriteAvailEventWhenEventIdxNegotiated() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            SplitVirtqueue q = g.queue(true, 8);
            q.lastAvailIdx(65535);
            g.availIdx(65535);

            assertFalse(q.enableNotifications());
            assertEquals(65535, g.availEvent());
            assertEquals(0, g.usedFlags(), "flags untouched with EVENT_IDX");

            g.addChain(w(g.alloc(1), 1));
            q.disableNotifications();
            assertEquals(65535, g.availEvent(), "disable writes nothing with EVENT_IDX");
            assertTrue(q.enableNotifications());
            assertEquals(SplitVirtqueue.POP_OK, q.pop(new DescriptorChain(2)));
            assertFalse(q.enableNotifications());
            assertEquals(0, g.availEvent());
        }
    }

    @ParameterizedTest(name = "avail flags {0} -> notify {1}")
    @CsvSource({"0, true", "1, false", "2, true", "3, false"})
    void shouldFollowNoInterruptFlagWhenEventIdxNotNegotiated(int availFlags, boolean notify) {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            SplitVirtqueue q = g.queue(false, 8);
            g.availFlags(availFlags);
            q.pushUsed(0, 0);
            q.publishUsed();

            assertEquals(notify, q.needsNotification());
        }
    }

    @Test
    void shouldNotifyOnlyWhenUsedIdxPassesUsedEventWhenEventIdxNegotiated() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            SplitVirtqueue q = g.queue(true, 8);
            g.usedEvent(5);

            publish(q, 1);
            assertTrue(q.needsNotification(), "first check always notifies (signalled_used_valid false)");
            publish(q, 2); // used idx 1 -> 3, used_event 5 not crossed
            assertFalse(q.needsNotification());
            publish(q, 2); // 3 -> 5: entry 5 not yet written
            assertFalse(q.needsNotification());
            publish(q, 1); // 5 -> 6: crossed
            assertTrue(q.needsNotification());
            assertFalse(q.needsNotification(), "no progress since the last check");
            g.usedEvent(6);
            publish(q, 3); // 6 -> 9
            assertTrue(q.needsNotification());
            q.usedIdx(9);
            assertTrue(q.needsNotification(), "usedIdx(int) invalidates the last signalled index");
        }
    }

    private static void publish(SplitVirtqueue q, int n) {
        for (int i = 0; i < n; i++) {
            q.pushUsed(0, 0);
        }
        q.publishUsed();
    }

    @ParameterizedTest(name = "vring_need_event({0}, {1}, {2}) = {3}")
    @CsvSource({
        "0, 1, 0, true",
        "0, 2, 1, false",
        "1, 2, 0, true",
        "4, 5, 0, true",
        "5, 5, 0, false",
        "0, 1, 1, false",
        "65535, 1, 65534, true",
        "65535, 0, 65535, true",
        "10, 3, 65520, false",
        "65525, 3, 65520, true",
        "2, 3, 65520, true",
        "3, 3, 65520, false",
    })
    void shouldMatchVringNeedEventWhenIndexesGiven(int event, int newIdx, int oldIdx, boolean expected) {
        assertEquals(expected, SplitVirtqueue.vringNeedEvent(event, newIdx, oldIdx));
    }

    // ---- construction ----

    @Test
    void shouldRejectQueueWhenSizeOrRingsInvalid() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            GuestMemory m = g.memory();
            long d = g.descGpa;
            long a = g.availGpa;
            long u = g.usedGpa;
            for (int size : new int[] {0, 3, 24, 65536, -1}) {
                assertThrows(
                        IllegalArgumentException.class,
                        () -> new SplitVirtqueue(0, size, m, d, a, u, false, 8),
                        "size " + size);
            }
            assertThrows(IllegalArgumentException.class, () -> new SplitVirtqueue(0, SIZE, m, d + 8, a, u, false, 8));
            assertThrows(IllegalArgumentException.class, () -> new SplitVirtqueue(0, SIZE, m, d, a + 1, u, false, 8));
            assertThrows(IllegalArgumentException.class, () -> new SplitVirtqueue(0, SIZE, m, d, a, u + 2, false, 8));
            assertThrows(
                    IllegalArgumentException.class,
                    () -> new SplitVirtqueue(0, SIZE, m, d, a, FakeGuest.END_GPA - 16, false, 8));
            assertThrows(
                    IllegalArgumentException.class, () -> new SplitVirtqueue(0, SIZE, m, UNMAPPED_GPA, a, u, false, 8));
            assertThrows(
                    IllegalArgumentException.class,
                    () -> new SplitVirtqueue(0, SIZE, m, d, FakeGuest.REGION1_GPA - 8, u, false, 8),
                    "avail ring straddles two regions");
            assertThrows(IllegalArgumentException.class, () -> new SplitVirtqueue(0, SIZE, m, d, a, u, false, 0));
        }
    }

    @Test
    void shouldAcceptLargestQueueSize() {
        try (FakeGuest g = new FakeGuest(SIZE, true)) {
            long base = FakeGuest.REGION0_GPA;
            SplitVirtqueue q = new SplitVirtqueue(
                    3, 32768, g.memory(), base, base + 16 * 32768, base + 16 * 32768 + 65540, true, 8);

            assertEquals(32768, q.size());
            assertEquals(3, q.queueIndex());
            assertEquals(base + 16 * 32768 + 65540, q.usedRingGpa());
            assertEquals(6 + 8 * 32768 + 0L, q.usedRingLengthBytes());
        }
    }

    @Test
    void shouldReportUsedRingRangeForDirtyLogging() {
        try (FakeGuest g = new FakeGuest(SIZE, false)) {
            assertEquals(g.usedGpa, g.queue(false, 8).usedRingGpa());
            assertEquals(4 + 8 * SIZE, g.queue(false, 8).usedRingLengthBytes());
            assertEquals(6 + 8 * SIZE, g.queue(true, 8).usedRingLengthBytes());
        }
    }

    static void assertChainMatches(FakeGuest.Buf[] bufs, DescriptorChain chain, int head) {
        assertEquals(ChainError.OK, chain.error(), chain.errorName());
        assertEquals(head, chain.head());
        assertEquals(bufs.length, chain.segmentCount());
        long readable = 0;
        long writable = 0;
        for (int i = 0; i < bufs.length; i++) {
            assertEquals(bufs[i].gpa(), chain.gpa(i), "gpa " + i);
            assertEquals(bufs[i].len(), chain.lengthBytes(i), "len " + i);
            assertEquals(bufs[i].writable(), chain.deviceWritable(i), "writable " + i);
            assertEquals(bufs[i].gpa() - FakeGuest.REGION0_GPA, chain.regionOffset(i));
            assertEquals(FakeGuest.REGION0_ID, chain.regionId(i));
            if (bufs[i].writable()) {
                writable += bufs[i].len();
            } else {
                readable += bufs[i].len();
            }
        }
        assertEquals(readable, chain.readableBytes());
        assertEquals(writable, chain.writableBytes());
    }
}
